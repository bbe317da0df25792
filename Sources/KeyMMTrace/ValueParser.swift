// Argument values: integers, NULL, constants and their `|` unions, strace's arithmetic
// (`1<<20`, `8192*1024`, `21<<MAP_HUGE_SHIFT`), strings, [arrays], {structures},
// name=value, function forms (`makedev(8, 1)`), `IN => OUT`, `...`, `-y` fd decorations.
//
// Owns: the expression grammar of one value (precedence climbing, C precedence).
// Invariants: nesting is bounded by `LineParser.maxDepth` (no stack overflow on `[[[[...`);
// `|` chains flatten into one `.union`; integer `* + - << >>` of two integers fold to `.int`.

extension LineParser {
    /// Binding strength of binary operators (higher binds tighter), as in C.
    @inline(__always)
    static func precedence(_ op: TraceOperator?) -> Int {
        switch op {
        case .multiply: 10
        case .add, .subtract: 9
        case .shiftLeft, .shiftRight: 8
        case .equal, .notEqual: 6
        case .bitAnd: 5
        case nil: 4 // `|`: a union
        case .logicalAnd: 3
        case .logicalOr: 2
        case .alternative: 1
        default: 0
        }
    }

    /// The binary operator at pos, if any: (operator or nil for `|`, length).
    @inline(__always)
    func peekBinaryOperator(afterBlank: Bool) -> (op: TraceOperator?, length: Int)? {
        guard pos < end else { return nil }
        let c = base[pos], d = peek(1)
        switch c {
        case 0x7c: return d == 0x7c ? (.logicalOr, 2) : (nil, 1)
        case 0x26: return d == 0x26 ? (.logicalAnd, 2) : (.bitAnd, 1)
        case 0x3c: return d == 0x3c ? (.shiftLeft, 2) : nil
        case 0x3e: return d == 0x3e ? (.shiftRight, 2) : nil
        case 0x3d: return d == 0x3d ? (.equal, 2) : nil
        case 0x21: return d == 0x3d ? (.notEqual, 2) : nil
        case 0x2a: return (.multiply, 1)
        case 0x2b: return (.add, 1)
        case 0x2d: return (.subtract, 1)
        case 0x6f: // strace's "A or B" (ioctl alternatives)
            return afterBlank && d == 0x72 && LineParser.isBlank(peek(2)) ? (.alternative, 2) : nil
        default: return nil
        }
    }

    /// `,` `)` `]` `}`: bytes that end a value (no operator can follow).
    @inline(__always)
    static func isListEnd(_ c: UInt8) -> Bool {
        c == 0x2c || c == 0x29 || c == 0x5d || c == 0x7d
    }

    /// value := expression [ '=>' value ]
    mutating func parseValue(depth: Int) throws(TraceError) -> TraceValue {
        if depth >= Self.maxDepth {
            throw error("values nested deeper than \(Self.maxDepth) levels")
        }
        let lhs = try parseExpression(minPrecedence: 1, depth: depth)
        if pos < end, Self.isListEnd(base[pos]) { return lhs } // fast path: nothing can follow
        let save = pos
        try skipBlanksAndComments()
        if pos + 1 < end, base[pos] == 0x3d, base[pos + 1] == 0x3e {
            pos += 2
            try skipBlanksAndComments()
            let rhs = try parseValue(depth: depth + 1)
            return .changed(lhs, rhs)
        }
        pos = save
        return lhs
    }

    /// Precedence climbing over binary operators; `|` chains become one `.union`.
    mutating func parseExpression(minPrecedence: Int, depth: Int) throws(TraceError) -> TraceValue {
        var lhs = try parseUnary(depth: depth)
        if pos < end, Self.isListEnd(base[pos]) { return lhs } // fast path: a lone operand
        var unionParts: [TraceValue]? = nil
        var chain = 0
        while true {
            let save = pos
            try skipBlanksAndComments()
            guard let (op, length) = peekBinaryOperator(afterBlank: pos > save) else { pos = save; break }
            let prec = Self.precedence(op)
            if prec < minPrecedence { pos = save; break }
            pos += length
            try skipBlanksAndComments()
            if atEnd {
                throw error("expected an operand after '\(op?.spelling ?? "|")'; \(AcceptedForms.argument)")
            }
            let rhs = try parseExpression(minPrecedence: prec + 1, depth: depth + 1)
            if let op {
                if let parts = unionParts { lhs = .union(parts); unionParts = nil }
                lhs = Self.fold(op, lhs, rhs)
                if case .binary = lhs {
                    // Each unfolded operator nests the tree one level deeper on the left.
                    chain += 1
                    if depth + chain >= Self.maxDepth {
                        throw error("expression with more than \(Self.maxDepth) operators")
                    }
                }
            } else {
                if unionParts == nil {
                    unionParts = []
                    unionParts!.reserveCapacity(4)
                    unionParts!.append(lhs)
                }
                unionParts!.append(rhs)
            }
        }
        if let parts = unionParts { return .union(parts) }
        return lhs
    }

    /// Folds integer arithmetic; keeps anything else as `.binary`.
    static func fold(_ op: TraceOperator, _ l: TraceValue, _ r: TraceValue) -> TraceValue {
        guard case .int(let a) = l, case .int(let b) = r, let x = a.int64Value, let y = b.int64Value else {
            return .binary(op, l, r)
        }
        var result: Int64?
        switch op {
        case .multiply: let (v, o) = x.multipliedReportingOverflow(by: y); result = o ? nil : v
        case .add: let (v, o) = x.addingReportingOverflow(y); result = o ? nil : v
        case .subtract: let (v, o) = x.subtractingReportingOverflow(y); result = o ? nil : v
        case .shiftLeft:
            if y >= 0 && y < 64 && x >= 0 {
                let v = UInt64(x) << UInt64(y)
                if v >> UInt64(y) == UInt64(x) {
                    return .int(TraceInteger(magnitude: v, radix: a.radix))
                }
            }
        case .shiftRight:
            if y >= 0 && y < 64 { result = x >> y }
        default: break
        }
        guard let result else { return .binary(op, l, r) }
        return .int(TraceInteger(magnitude: result.magnitude, isNegative: result < 0, radix: a.radix))
    }

    /// Prefix operators: `~`, `!`, `&`, and `-` before a number.
    mutating func parseUnary(depth: Int) throws(TraceError) -> TraceValue {
        guard pos < end else {
            throw error("unexpected end of line: expected an argument; \(AcceptedForms.argument)")
        }
        let c = base[pos]
        var op: TraceOperator?
        switch c {
        case 0x7e: op = .complement
        case 0x21: op = .not
        case 0x26: op = .addressOf
        case 0x2d:
            if Self.isDigit(peek(1)) {
                pos += 1
                return try parseNumber(negative: true, start: pos - 1)
            }
            throw error("expected a digit after '-'; \(AcceptedForms.number)")
        default:
            return try parsePrimary(depth: depth)
        }
        if depth + 1 >= Self.maxDepth { throw error("values nested deeper than \(Self.maxDepth) levels") }
        pos += 1
        skipBlanks()
        return .unary(op!, try parseUnary(depth: depth + 1))
    }

    /// One primary value.
    mutating func parsePrimary(depth: Int) throws(TraceError) -> TraceValue {
        let c = base[pos]
        if Self.isDigit(c) { return try parseNumber(negative: false, start: pos) }
        switch c {
        case 0x22:
            return .string(try scanString())
        case 0x5b:
            let (elements, truncated) = try parseList(close: 0x5d, what: "array", depth: depth + 1)
            return .array(elements, truncated: truncated)
        case 0x7b:
            let (elements, truncated) = try parseList(close: 0x7d, what: "structure", depth: depth + 1)
            return .structure(elements, truncated: truncated)
        case 0x2e where hasPrefix("..."):
            pos += 3
            return .elided
        default:
            break
        }
        guard let start = scanIdentifier() else {
            throw error("expected an argument, found \(found()); \(AcceptedForms.argument)")
        }
        let n = pos - start
        if pos < end {
            let next = base[pos]
            if next == 0x28 { // NAME(...)
                let name = identifier(start, pos)
                let (args, _) = try parseList(close: 0x29, what: "argument list of \(name)", depth: depth + 1)
                return .call(name, args)
            }
            if next == 0x3d, peek(1) != 0x3d, peek(1) != 0x3e { // name=value
                let name = identifier(start, pos)
                pos += 1
                skipBlanks()
                return .named(name, try parseValue(depth: depth + 1))
            }
        }
        if n == 4, base[start] == 0x4e, base[start + 1] == 0x55, base[start + 2] == 0x4c, base[start + 3] == 0x4c {
            return .null
        }
        let symbol = identifier(start, pos)
        if pos < end, base[pos] == 0x3c, peek(1) != 0x3c, !hasPrefix("<unfinished") {
            _ = try scanDecoration() // strace -y: AT_FDCWD</current/dir>; the directory is not kept
        }
        return .symbol(symbol)
    }

    /// An integer (pos after any '-'), with strace `-y` decoration `3</path>`.
    mutating func parseNumber(negative: Bool, start: Int) throws(TraceError) -> TraceValue {
        let (value, radix, fraction) = try scanInteger()
        guard let value, !fraction else { return .raw(text(start, pos)) }
        if negative && value > 1 << 63 { return .raw(text(start, pos)) }
        let int = TraceInteger(magnitude: value, isNegative: negative, radix: radix)
        if pos < end, base[pos] == 0x3c, peek(1) != 0x3c, !hasPrefix("<unfinished") {
            return .fd(int, try scanDecoration())
        }
        return .int(int)
    }

    /// `<...>` after an fd (strace -y / -yy); `>` inside `[...]` does not close it (`<TCP:[a->b]>`).
    mutating func scanDecoration() throws(TraceError) -> String {
        let open = pos
        pos += 1
        var brackets = 0
        while pos < end {
            let c = base[pos]
            if c == 0x5b { brackets += 1 } else if c == 0x5d { brackets -= 1 } else if c == 0x3e && brackets <= 0 {
                let s = text(open + 1, pos)
                pos += 1
                return s
            }
            pos += 1
        }
        throw error("unterminated fd decoration: '<' after a number needs a closing '>' (strace -y prints 3</path>)",
                    column: open + 1)
    }

    /// Elements of `[...]`, `{...}` or `NAME(...)` up to `close`; a lone `...` marks truncation.
    /// Arrays also accept strace's space-separated sets (`[CHLD INT]`).
    mutating func parseList(close: UInt8, what: String, depth: Int) throws(TraceError) -> ([TraceValue], Bool) {
        if depth >= Self.maxDepth { throw error("values nested deeper than \(Self.maxDepth) levels") }
        let open = pos
        pos += 1
        var elements: [TraceValue] = []
        var truncated = false
        try skipBlanksAndComments()
        if pos < end, base[pos] == close { pos += 1; return (elements, false) }
        let closeText = close == 0x5d ? "']'" : close == 0x7d ? "'}'" : "')'"
        while true {
            if atEnd {
                throw error("expected \(closeText) to close the \(what) opened at column \(open + 1); \(AcceptedForms.argument)")
            }
            if hasPrefix("..."), pos + 3 >= end || base[pos + 3] == close || base[pos + 3] == 0x2c
                || Self.isBlank(base[pos + 3]) {
                pos += 3
                truncated = true
            } else {
                if elements.capacity == 0 { elements.reserveCapacity(4) }
                elements.append(try parseValue(depth: depth))
            }
            try skipBlanksAndComments()
            guard pos < end else {
                throw error("expected \(closeText) to close the \(what) opened at column \(open + 1); \(AcceptedForms.argument)")
            }
            let c = base[pos]
            if c == close { pos += 1; return (elements, truncated) }
            if c == 0x2c {
                pos += 1
                try skipBlanksAndComments()
                if pos < end, base[pos] == close {
                    throw error("expected a value after ',' in the \(what); \(AcceptedForms.argument)")
                }
                continue
            }
            if close == 0x5d, pos > 0, Self.isBlank(base[pos - 1]) { continue } // `[CHLD INT]`
            throw error("expected ',' or \(closeText) in the \(what) opened at column \(open + 1), found \(found()); "
                        + AcceptedForms.argument)
        }
    }
}
