// The byte-level scanner under the line parser: one line as an unsafe byte span and a position.
//
// Owns: `LineParser`'s storage and its lexical helpers (blanks, /* comments */, identifiers,
// integers in every radix, strace C strings with escapes and `...` truncation, timestamps).
// Invariants: works on UInt8, never on Character; every loop advances `pos` or exits, so no
// input can hang it; reads never go past `end` (`peek` returns 0 there); nothing force-unwraps.

/// Parses one line of a trace. Lives only as long as the line's bytes.
struct LineParser {
    let base: UnsafePointer<UInt8>
    let end: Int
    var pos: Int = 0
    let file: String
    let line: Int
    /// The call being parsed (for messages).
    var callName: String = ""
    /// Maximum nesting of [ { ( and prefix operators.
    static let maxDepth = 64

    init(base: UnsafePointer<UInt8>, count: Int, file: String, line: Int) {
        self.base = base
        var e = count
        // Trailing blanks and a CR (CRLF files) carry no meaning.
        while e > 0, base[e - 1] == 0x20 || base[e - 1] == 0x09 || base[e - 1] == 0x0d { e -= 1 }
        self.end = e
        self.file = file
        self.line = line
    }

    // MARK: positions and errors

    @inline(__always) var atEnd: Bool { pos >= end }
    @inline(__always) func peek() -> UInt8 { pos < end ? base[pos] : 0 }
    @inline(__always) func peek(_ offset: Int) -> UInt8 { pos + offset < end ? base[pos + offset] : 0 }

    var column: Int { pos + 1 }

    func location(column: Int) -> SourceLocation {
        SourceLocation(file: file, line: line, column: column)
    }

    func error(_ message: String, column: Int? = nil) -> TraceError {
        TraceError(location: location(column: column ?? (min(pos, end) + 1)), message: message)
    }

    /// What is at `pos`, for "found ..." in messages.
    func found() -> String {
        atEnd ? "end of line" : describeByte(base[pos])
    }

    /// True if the bytes at `pos` are `literal` (ASCII).
    @inline(__always)
    func hasPrefix(_ literal: StaticString) -> Bool {
        let n = literal.utf8CodeUnitCount
        if pos + n > end { return false }
        let p = literal.utf8Start
        for i in 0..<n where base[pos + i] != p[i] { return false }
        return true
    }

    /// The identifier `[from, to)` (ASCII by construction) as a string.
    @inline(__always)
    func identifier(_ from: Int, _ to: Int) -> String {
        String(decoding: UnsafeBufferPointer(start: base + from, count: to - from), as: UTF8.self)
    }

    func text(_ from: Int, _ to: Int) -> String {
        let lo = max(0, min(from, end)), hi = max(lo, min(to, end))
        return String(decoding: UnsafeBufferPointer(start: base + lo, count: hi - lo), as: UTF8.self)
    }

    // MARK: character classes

    @inline(__always) static func isDigit(_ c: UInt8) -> Bool { c &- 0x30 < 10 }
    @inline(__always) static func isHexDigit(_ c: UInt8) -> Bool {
        c &- 0x30 < 10 || (c | 0x20) &- 0x61 < 6
    }
    @inline(__always) static func isIdentStart(_ c: UInt8) -> Bool {
        (c | 0x20) &- 0x61 < 26 || c == 0x5f
    }
    @inline(__always) static func isIdent(_ c: UInt8) -> Bool {
        (c | 0x20) &- 0x61 < 26 || c == 0x5f || c &- 0x30 < 10
    }
    @inline(__always) static func isBlank(_ c: UInt8) -> Bool { c == 0x20 || c == 0x09 }

    // MARK: blanks and comments

    @inline(__always)
    mutating func skipBlanks() {
        while pos < end, base[pos] == 0x20 || base[pos] == 0x09 { pos += 1 }
    }

    /// Skips blanks and strace's `/* ... */` annotations (`0x7ffd... /* 39 vars */`).
    @inline(__always)
    mutating func skipBlanksAndComments() throws(TraceError) {
        skipBlanks()
        while pos + 1 < end, base[pos] == 0x2f, base[pos + 1] == 0x2a {
            let start = pos
            pos += 2
            while true {
                if pos + 1 >= end {
                    pos = end
                    throw error("unterminated comment: '/*' has no closing '*/' on this line", column: start + 1)
                }
                if base[pos] == 0x2a && base[pos + 1] == 0x2f { pos += 2; break }
                pos += 1
            }
            skipBlanks()
        }
    }

    // MARK: identifiers

    /// Scans `[A-Za-z_][A-Za-z0-9_]*` at pos; returns its start, or nil if none.
    @inline(__always)
    mutating func scanIdentifier() -> Int? {
        guard pos < end, Self.isIdentStart(base[pos]) else { return nil }
        let start = pos
        pos += 1
        while pos < end, Self.isIdent(base[pos]) { pos += 1 }
        return start
    }

    // MARK: integers

    /// Parses an unsigned integer literal at pos (decimal, 0x hex, 0 octal). Returns nil for the
    /// value when it does not fit 64 bits (the caller keeps the text). Decimal fractions (`0.5`)
    /// are reported as `fraction`.
    mutating func scanInteger() throws(TraceError) -> (value: UInt64?, radix: TraceInteger.Radix, fraction: Bool) {
        let start = pos
        var value: UInt64 = 0
        var overflow = false
        if base[pos] == 0x30, pos + 1 < end, base[pos + 1] | 0x20 == 0x78 {
            pos += 2
            let digitsStart = pos
            while pos < end, Self.isHexDigit(base[pos]) {
                let c = base[pos]
                let d = c &- 0x30 < 10 ? c &- 0x30 : (c | 0x20) &- 0x61 &+ 10
                if value >> 60 != 0 { overflow = true }
                value = value &<< 4 | UInt64(d)
                pos += 1
            }
            if pos == digitsStart {
                throw error("expected hex digits after '0x'; \(AcceptedForms.number)", column: start + 1)
            }
            try checkNumberEnd(start)
            return (overflow ? nil : value, .hex, false)
        }
        if base[pos] == 0x30, pos + 1 < end, Self.isDigit(base[pos + 1]) {
            pos += 1
            while pos < end, Self.isDigit(base[pos]) {
                let d = base[pos] &- 0x30
                if d > 7 {
                    throw error("invalid digit '\(d)' in octal number (a leading 0 means octal: 0644); \(AcceptedForms.number)")
                }
                if value >> 61 != 0 { overflow = true }
                value = value &<< 3 | UInt64(d)
                pos += 1
            }
            try checkNumberEnd(start)
            return (overflow ? nil : value, .octal, false)
        }
        while pos < end, Self.isDigit(base[pos]) {
            let (m, o1) = value.multipliedReportingOverflow(by: 10)
            let (a, o2) = m.addingReportingOverflow(UInt64(base[pos] &- 0x30))
            if o1 || o2 { overflow = true }
            value = a
            pos += 1
        }
        if pos + 1 < end, base[pos] == 0x2e, Self.isDigit(base[pos + 1]) {
            pos += 1
            while pos < end, Self.isDigit(base[pos]) { pos += 1 }
            try checkNumberEnd(start)
            return (nil, .decimal, true)
        }
        try checkNumberEnd(start)
        return (overflow ? nil : value, .decimal, false)
    }

    /// A number must not run into an identifier (`12abc`).
    @inline(__always)
    func checkNumberEnd(_ start: Int) throws(TraceError) {
        if pos < end, Self.isIdent(base[pos]) {
            throw error("invalid character \(describeByte(base[pos])) in number '\(text(start, pos + 1))'; \(AcceptedForms.number)")
        }
    }

    /// A decimal number with optional fraction (`10.25`, `0.000012`) as a Double, for timestamps.
    mutating func scanSeconds() -> Double? {
        guard pos < end, Self.isDigit(base[pos]) else { return nil }
        var whole: UInt64 = 0
        while pos < end, Self.isDigit(base[pos]) {
            whole = whole &* 10 &+ UInt64(base[pos] &- 0x30)
            pos += 1
        }
        return Double(whole) + scanFraction()
    }

    /// `.DIGITS` at pos as a fraction (0 when there is none). The digits are read as an integer
    /// and divided once (correctly rounded), so `.000012` reads as the literal 0.000012.
    @inline(__always)
    mutating func scanFraction() -> Double {
        guard pos < end, base[pos] == 0x2e else { return 0 }
        pos += 1
        var fraction: UInt64 = 0
        var digits = 0
        while pos < end, Self.isDigit(base[pos]) {
            if digits < 18 {
                fraction = fraction * 10 + UInt64(base[pos] &- 0x30)
                digits += 1
            }
            pos += 1
        }
        return digits > 0 ? Double(fraction) / Self.powersOfTen[digits] : 0
    }

    static let powersOfTen: [Double] = (0...18).map { n in (0..<n).reduce(1.0) { a, _ in a * 10 } }

    // MARK: strings

    /// Parses a C string at pos (`"..."` with strace escapes), with `...` truncation after it.
    mutating func scanString() throws(TraceError) -> TraceString {
        let open = pos
        pos += 1
        // Fast path: no escapes before the closing quote.
        var i = pos
        while i < end, base[i] != 0x22, base[i] != 0x5c { i += 1 }
        var bytes: [UInt8]
        if i < end, base[i] == 0x22 {
            bytes = Array(UnsafeBufferPointer(start: base + pos, count: i - pos))
            pos = i + 1
        } else {
            bytes = Array(UnsafeBufferPointer(start: base + pos, count: i - pos))
            pos = i
            while true {
                guard pos < end else {
                    throw error("unterminated string starting at column \(open + 1): no closing '\"' on this line; "
                                + "strings are \"...\" with escapes \\n \\t \\r \\\" \\\\ \\xHH \\ooo",
                                column: open + 1)
                }
                let c = base[pos]
                if c == 0x22 { pos += 1; break }
                if c != 0x5c { bytes.append(c); pos += 1; continue }
                bytes.append(try scanEscape())
            }
        }
        var truncated = false
        if hasPrefix("...") { truncated = true; pos += 3 }
        return TraceString(bytes: bytes, truncated: truncated)
    }

    /// Decodes one escape at pos (pos is at the backslash).
    private mutating func scanEscape() throws(TraceError) -> UInt8 {
        let at = pos
        pos += 1
        guard pos < end else {
            throw error("unterminated string: a '\\' ends the line; strings end with '\"'", column: at + 1)
        }
        let e = base[pos]
        pos += 1
        switch e {
        case UInt8(ascii: "n"): return 0x0a
        case UInt8(ascii: "t"): return 0x09
        case UInt8(ascii: "r"): return 0x0d
        case UInt8(ascii: "v"): return 0x0b
        case UInt8(ascii: "f"): return 0x0c
        case UInt8(ascii: "a"): return 0x07
        case UInt8(ascii: "b"): return 0x08
        case UInt8(ascii: "e"): return 0x1b
        case 0x5c, 0x22, 0x27, 0x3f: return e
        case UInt8(ascii: "x"):
            var v: UInt32 = 0
            var n = 0
            while n < 2, pos < end, Self.isHexDigit(base[pos]) {
                let c = base[pos]
                v = v << 4 | UInt32(c &- 0x30 < 10 ? c &- 0x30 : (c | 0x20) &- 0x61 &+ 10)
                pos += 1
                n += 1
            }
            if n == 0 { throw error("expected hex digits after '\\x' in string (\\x41 is 'A')", column: at + 1) }
            return UInt8(v)
        case 0x30...0x37:
            var v = UInt32(e &- 0x30)
            var n = 1
            while n < 3, pos < end, base[pos] &- 0x30 < 8 {
                v = v << 3 | UInt32(base[pos] &- 0x30)
                pos += 1
                n += 1
            }
            if v > 255 { throw error("octal escape '\\\(String(v, radix: 8))' is larger than a byte (\\377)", column: at + 1) }
            return UInt8(v)
        default:
            throw error("unknown escape '\\\(e >= 0x20 && e < 0x7f ? String(UnicodeScalar(e)) : "?")' in string; "
                        + "escapes are \\n \\t \\r \\v \\f \\a \\b \\e \\\" \\\\ \\' \\? \\xHH and octal \\ooo", column: at + 1)
        }
    }
}
