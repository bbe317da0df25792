// The structure of one line: prefixes (PID, timestamps, -i addresses), calls with their
// argument lists and results, `<unfinished ...>` / `<... NAME resumed>` halves, `+++` exit
// lines, `---` signal lines, comments and `#@ set` directives.
//
// Owns: `ParsedLine` and `LineParser.parseLine()`.
// Invariants: a line parses to exactly one `ParsedLine` or one located `TraceError`;
// strace's names for system calls it does not know (`syscall_0x1b2` / `syscall_434`,
// `syscall_0x1ce` / `syscall_462`) are renamed (`encrypt_mprotect`, `mseal`) here and nowhere else.

/// A call (or the unfinished first half of one) as one line shows it.
struct CallPart {
    var line: SyscallLine
    /// True for `NAME(ARGS <unfinished ...>` without a following `) = RESULT`.
    var unfinished: Bool
}

/// The second half of a call: `<... NAME resumed>REST) = RESULT`.
struct ResumedPart {
    var pid: Int32?
    var name: String
    /// `=> VALUE` continuing the last argument of the unfinished half (clone3's out-structure).
    var arrow: TraceValue?
    var args: [TraceValue]
    var result: TraceResult
    var detail: String?
    var location: SourceLocation
    var duration: Double?
    /// True when the resumed half is itself `<unfinished ...>` again.
    var unfinished: Bool
    /// perf trace's `[continued]` line: without a first half (the call began before tracing did,
    /// like the traced program's own execve) it stands alone, with no arguments.
    var mayStandAlone: Bool = false
}

/// What one line says.
enum ParsedLine {
    case nothing
    case call(CallPart)
    case resumed(ResumedPart)
    case event(TraceEvent)
}

/// Calls that create a process or thread (their child's lines may precede their result).
@inline(__always)
func isProcessCreation(_ name: String) -> Bool {
    // Quick reject on length and first byte before comparing strings (called for every call).
    let n = name.utf8.count
    guard n >= 4 && n <= 6, let c = name.utf8.first, c == 0x63 || c == 0x66 || c == 0x76 else { return false }
    return name == "clone" || name == "clone3" || name == "fork" || name == "vfork"
}

extension LineParser {
    /// How strace 6.1 prints system calls it has no name for: 434 is the MKTME series'
    /// encrypt_mprotect, 462 is mseal (Linux 6.10, newer than that strace).
    static let unknownSyscallNames: [String: String] = [
        "syscall_0x1b2": "encrypt_mprotect", "syscall_434": "encrypt_mprotect",
        "syscall_0x1ce": "mseal", "syscall_462": "mseal",
    ]

    /// Parses the whole line.
    mutating func parseLine() throws(TraceError) -> ParsedLine {
        skipBlanks()
        guard pos < end else { return .nothing }
        let first = base[pos]
        if first == 0x23 { // '#'
            if peek(1) == 0x40 { return try parseDirective() }
            return .nothing
        }
        if first == 0x73, hasPrefix("strace: ") { return .nothing } // strace's own chatter on stderr

        // [pid N] or a leading PID (strace -f -o FILE writes "1234  ").
        var pid: Int32?
        if first == 0x5b, hasPrefix("[pid") {
            pos += 4
            skipBlanks()
            pid = try parsePID(what: "'[pid N]'")
            skipBlanks()
            guard peek() == 0x5d else { throw error("expected ']' to close '[pid N]', found \(found())") }
            pos += 1
            skipBlanks()
        } else if Self.isDigit(first) {
            var j = pos
            while j < end, Self.isDigit(base[j]) { j += 1 }
            if j < end, Self.isBlank(base[j]) {
                pid = try parsePID(what: "the leading PID")
                skipBlanks()
            }
        }

        // -t / -tt / -ttt / -r timestamp.
        var timestamp: Double?
        if pos < end, Self.isDigit(base[pos]) {
            timestamp = try parseTimestamp()
            skipBlanks()
        } else if pid == nil, pos < end, base[pos] == 0x3f, peek(1) == 0x20 {
            return try parsePerfLine(timestamp: nil) // perf trace: "? (         ): comm/pid ..."
        }
        if let timestamp, pid == nil, peek() == 0x28 {
            return try parsePerfLine(timestamp: timestamp / 1000) // perf trace: "0.123 ( 0.004 ms): ..."
        }

        // -i: [00007f0123456789]
        if peek() == 0x5b, Self.isHexDigit(peek(1)) {
            var j = pos + 1
            while j < end, Self.isHexDigit(base[j]) { j += 1 }
            if j < end, base[j] == 0x5d { pos = j + 1; skipBlanks() }
        }

        guard pos < end else {
            throw error("expected a call after the PID or timestamp; \(AcceptedForms.line)")
        }
        switch base[pos] {
        case 0x2b where hasPrefix("+++"): return try parseExitLine(pid: pid)
        case 0x2d where hasPrefix("---"): return try parseSignalLine(pid: pid)
        case 0x3c where hasPrefix("<..."): return try parseResumed(pid: pid)
        case 0x3f where hasPrefix("????"): return .nothing // "????( <detached ...>"
        default: return try parseCall(pid: pid, timestamp: timestamp)
        }
    }

    mutating func parsePID(what: String) throws(TraceError) -> Int32 {
        let start = pos
        var v: Int64 = 0
        while pos < end, Self.isDigit(base[pos]) {
            v = v * 10 + Int64(base[pos] &- 0x30)
            if v > Int64(Int32.max) {
                throw error("PID in \(what) is larger than \(Int32.max)", column: start + 1)
            }
            pos += 1
        }
        if pos == start { throw error("expected a PID number in \(what), found \(found())") }
        return Int32(v)
    }

    /// `10:21:33`, `10:21:33.123456` (seconds since midnight) or `1700000000.123456`.
    /// Whole seconds are summed as integers; the fraction is added once.
    mutating func parseTimestamp() throws(TraceError) -> Double {
        let start = pos
        var whole: UInt64 = 0
        var parts = 0
        while true {
            var field: UInt64 = 0
            let fieldStart = pos
            while pos < end, Self.isDigit(base[pos]), pos - fieldStart < 18 {
                field = field * 10 + UInt64(base[pos] &- 0x30)
                pos += 1
            }
            if pos == fieldStart {
                throw error("malformed timestamp '\(text(start, pos))'; timestamps are 10:21:33, 10:21:33.123456 or 1700000000.123456",
                            column: start + 1)
            }
            whole = whole &* 60 &+ field
            parts += 1
            if parts < 3, pos < end, base[pos] == 0x3a { pos += 1; continue }
            break
        }
        let seconds = Double(whole) + scanFraction()
        guard pos < end, Self.isBlank(base[pos]) else {
            throw error("expected a blank after the timestamp '\(text(start, pos))', found \(found()); \(AcceptedForms.line)")
        }
        return seconds
    }

    /// `NAME(ARGS)[ = RESULT]`, or the unfinished half `NAME(ARGS <unfinished ...>`.
    mutating func parseCall(pid: Int32?, timestamp: Double?) throws(TraceError) -> ParsedLine {
        let callColumn = pos + 1
        guard let nameStart = scanIdentifier() else {
            throw error("expected a call NAME(ARGS), found \(found()); \(AcceptedForms.line)")
        }
        var name = identifier(nameStart, pos)
        var spelled: String?
        if let known = Self.unknownSyscallNames[name] {
            spelled = name
            name = known
        }
        callName = name
        skipBlanks()
        guard peek() == 0x28 else {
            throw error("expected '(' after the call name \(name), found \(found()); \(AcceptedForms.line)")
        }
        pos += 1
        var part = CallPart(line: SyscallLine(pid: pid, name: name, spelledName: spelled, args: [],
                                              location: location(column: callColumn), timestamp: timestamp),
                            unfinished: false)
        part.line.args.reserveCapacity(6)
        let open = try parseArguments(into: &part.line.args, columns: &part.line.argumentColumns, first: true)
        if open {
            skipBlanks()
            if atEnd { part.unfinished = true; return .call(part) }
            guard peek() == 0x29 else {
                throw error("expected end of line or ')' after '<unfinished ...>', found \(found())")
            }
            pos += 1
        }
        try parseResult(into: &part.line.result, detail: &part.line.resultDetail, duration: &part.line.duration)
        return .call(part)
    }

    /// `<... NAME resumed>REST) = RESULT`.
    mutating func parseResumed(pid: Int32?) throws(TraceError) -> ParsedLine {
        let col = pos + 1
        pos += 4
        skipBlanks()
        guard let nameStart = scanIdentifier() else {
            throw error("expected a call name after '<...' (strace writes '<... NAME resumed>'), found \(found())")
        }
        var name = identifier(nameStart, pos)
        if let known = Self.unknownSyscallNames[name] { name = known }
        callName = name
        skipBlanks()
        guard hasPrefix("resumed>") else {
            throw error("expected 'resumed>' after '<... \(name)' (strace writes '<... NAME resumed>'), found \(found())")
        }
        pos += 8
        var part = ResumedPart(pid: pid, name: name, arrow: nil, args: [], result: .none, detail: nil,
                               location: location(column: col), duration: nil, unfinished: false)
        try skipBlanksAndComments()
        if pos + 1 < end, base[pos] == 0x3d, base[pos + 1] == 0x3e {
            pos += 2
            try skipBlanksAndComments()
            part.arrow = try parseValue(depth: 0)
            try skipBlanksAndComments()
        }
        if peek() == 0x2c { pos += 1 }
        var columns = SIMD8<UInt16>.zero
        let open = try parseArguments(into: &part.args, columns: &columns, first: true)
        if open {
            skipBlanks()
            if atEnd { part.unfinished = true; return .resumed(part) }
            guard peek() == 0x29 else {
                throw error("expected end of line or ')' after '<unfinished ...>', found \(found())")
            }
            pos += 1
        }
        try parseResult(into: &part.result, detail: &part.detail, duration: &part.duration)
        return .resumed(part)
    }

    /// Arguments up to ')' (consumed). Returns true if the list ended with `<unfinished ...>` instead.
    mutating func parseArguments(into args: inout [TraceValue], columns: inout SIMD8<UInt16>,
                                 first: Bool) throws(TraceError) -> Bool {
        try skipBlanksAndComments()
        if peek() == 0x29 { pos += 1; return false }
        while true {
            if hasPrefix("<unfinished ...>") { pos += 16; return true }
            if atEnd {
                throw error("expected ')' to close the argument list of \(callName); \(AcceptedForms.argument)")
            }
            if args.count < 8 { columns[args.count] = pos < 0xffff ? UInt16(pos + 1) : 0 }
            args.append(try parseArgument())
            try skipBlanksAndComments()
            guard pos < end else {
                throw error("expected ')' to close the argument list of \(callName); \(AcceptedForms.argument)")
            }
            switch base[pos] {
            case 0x29:
                pos += 1
                return false
            case 0x2c:
                pos += 1
                try skipBlanksAndComments()
                if peek() == 0x29 {
                    throw error("expected an argument after ',' in the argument list of \(callName); \(AcceptedForms.argument)")
                }
            case 0x3c where hasPrefix("<unfinished ...>"):
                pos += 16
                return true
            default:
                throw error("expected ',' or ')' after argument \(args.count) of \(callName), found \(found()); "
                            + AcceptedForms.argument)
            }
        }
    }

    /// One argument. Fast path for the common lone integer, constant or NULL followed by `,` or
    /// `)`; anything else (or more) is re-parsed from the same place by the full value grammar.
    @inline(__always)
    mutating func parseArgument() throws(TraceError) -> TraceValue {
        let start = pos
        let c = base[pos]
        if Self.isDigit(c) {
            let v = try parseNumber(negative: false, start: start)
            if pos < end, Self.isListEnd(base[pos]) { return v }
            pos = start
        } else if c == 0x2d, Self.isDigit(peek(1)) {
            pos += 1
            let v = try parseNumber(negative: true, start: start)
            if pos < end, Self.isListEnd(base[pos]) { return v }
            pos = start
        } else if Self.isIdentStart(c) {
            pos += 1
            while pos < end, Self.isIdent(base[pos]) { pos += 1 }
            if pos < end, base[pos] == 0x2c || base[pos] == 0x29 {
                if pos - start == 4, c == 0x4e, base[start + 1] == 0x55, base[start + 2] == 0x4c, base[start + 3] == 0x4c {
                    return .null
                }
                return .symbol(identifier(start, pos))
            }
            pos = start
        }
        return try parseValue(depth: 0)
    }

    /// The errno name scanned from `start` to `pos`; a name Linux does not have is an error at
    /// its column (with the closest errno as a hint), never a result that silently diverges.
    func errnoName(_ start: Int) throws(TraceError) -> String {
        let name = identifier(start, pos)
        guard LinuxNames.isErrno(name) else {
            let hint = closestName(to: name, among: LinuxNames.errnos).map { " (did you mean \($0)?)" } ?? ""
            throw error("unknown errno \(name) in the result of \(callName)\(hint); an error result is -1 ERRNO (text) "
                        + "with a Linux errno name (ENOENT, ENOMEM, EINVAL, EACCES, ...)", column: start + 1)
        }
        return name
    }

    /// `[ = RESULT [(detail)]] [<duration>] [# comment]` up to the end of the line.
    mutating func parseResult(into result: inout TraceResult, detail: inout String?,
                              duration: inout Double?) throws(TraceError) {
        skipBlanks()
        if atEnd { return }
        if base[pos] == 0x3d {
            pos += 1
            skipBlanks()
            guard pos < end else {
                throw error("expected a result after '=' in \(callName); \(AcceptedForms.result)")
            }
            let c = base[pos]
            if c == 0x3f {
                pos += 1
                result = .unknown
                skipBlanks()
                if peek() == 0x45, let s = scanIdentifier() { // ? ERESTARTSYS (To be restarted ...)
                    let name = try errnoName(s)
                    skipBlanks()
                    result = .errno(name, text: peek() == 0x28 ? try scanParenthesized() : nil)
                }
            } else if Self.isDigit(c) || (c == 0x2d && Self.isDigit(peek(1))) {
                let negative = c == 0x2d
                let start = pos
                if negative { pos += 1 }
                let v = try parseNumber(negative: negative, start: start)
                result = .value(v)
                if negative {
                    let save = pos
                    skipBlanks()
                    if peek() == 0x45, let s = scanIdentifier() { // -1 ENOMEM (Cannot allocate memory)
                        let name = try errnoName(s)
                        skipBlanks()
                        result = .errno(name, text: peek() == 0x28 ? try scanParenthesized() : nil)
                    } else {
                        pos = save
                    }
                }
            } else if c == 0x22 {
                result = .value(.string(try scanString()))
            } else if let s = scanIdentifier() {
                let name = text(s, pos)
                guard name.utf8.count > 3, name.hasPrefix("SIG") else {
                    throw error("unexpected '\(name)' as the result of \(callName); \(AcceptedForms.result)",
                                column: s + 1)
                }
                result = .signal(name)
            } else {
                throw error("expected a result after '=' in \(callName), found \(found()); \(AcceptedForms.result)")
            }
            skipBlanks()
            if peek() == 0x28 { detail = try scanParenthesized() }
            skipBlanks()
        }
        if peek() == 0x3c { // -T duration <0.000012>
            let open = pos
            pos += 1
            duration = scanSeconds()
            if duration == nil {
                while pos < end, base[pos] != 0x3e { pos += 1 } // <unavailable>
            }
            guard peek() == 0x3e else {
                throw error("expected '>' to close the duration (strace -T writes <0.000012>)", column: open + 1)
            }
            pos += 1
            skipBlanks()
        }
        if atEnd || base[pos] == 0x23 { return }
        if result == .none {
            throw error("expected ' = RESULT' or end of line after the arguments of \(callName), found \(found()); "
                        + AcceptedForms.result)
        }
        throw error("unexpected \(found()) after the result of \(callName); a line ends after RESULT, "
                    + "an optional (detail), an optional <duration> and an optional # comment")
    }

    /// `( ... )` with nesting and quoted strings; returns the inside text.
    mutating func scanParenthesized() throws(TraceError) -> String {
        let open = pos
        pos += 1
        var depth = 1
        while pos < end {
            let c = base[pos]
            if c == 0x22 { // skip a quoted string
                pos += 1
                while pos < end, base[pos] != 0x22 { pos += base[pos] == 0x5c ? 2 : 1 }
                pos = min(pos + 1, end)
                continue
            }
            if c == 0x28 { depth += 1 } else if c == 0x29 {
                depth -= 1
                if depth == 0 {
                    let s = text(open + 1, pos)
                    pos += 1
                    return s
                }
            }
            pos += 1
        }
        throw error("expected ')' to close the '(' opened at column \(open + 1)", column: open + 1)
    }

    /// `+++ exited with N +++`, `+++ killed by SIGX [(core dumped)] +++`, `+++ superseded by execve in pid N +++`.
    mutating func parseExitLine(pid: Int32?) throws(TraceError) -> ParsedLine {
        let col = pos + 1
        pos += 3
        skipBlanks()
        let loc = location(column: col)
        let event: TraceEvent
        if hasPrefix("exited with ") {
            pos += 12
            skipBlanks()
            let negative = peek() == 0x2d
            if negative { pos += 1 }
            guard Self.isDigit(peek()) else { throw error("expected an exit code after 'exited with', found \(found())") }
            let (v, _, fraction) = try scanInteger()
            guard let v, !fraction, v <= UInt64(Int32.max) else {
                throw error("exit code out of range; '+++ exited with N +++' takes 0..255")
            }
            event = .exited(pid: pid, code: negative ? -Int32(v) : Int32(v), location: loc)
        } else if hasPrefix("killed by ") {
            pos += 10
            skipBlanks()
            guard let s = scanIdentifier() else { throw error("expected a signal name after 'killed by', found \(found())") }
            let name = text(s, pos)
            skipBlanks()
            var core = false
            if hasPrefix("(core dumped)") { core = true; pos += 13; skipBlanks() }
            event = .killed(pid: pid, signal: name, coreDumped: core, location: loc)
        } else if hasPrefix("superseded by execve in pid ") {
            pos += 28
            let by = try parsePID(what: "'superseded by execve in pid N'")
            event = .superseded(pid: pid, by: by, location: loc)
        } else {
            throw error("expected 'exited with N', 'killed by SIGNAL' or 'superseded by execve in pid N' after '+++', found \(found())")
        }
        skipBlanks()
        guard hasPrefix("+++") else { throw error("expected '+++' at the end of the line, found \(found())") }
        pos += 3
        skipBlanks()
        guard atEnd else { throw error("unexpected \(found()) after the closing '+++'") }
        return .event(event)
    }

    /// `--- SIGSEGV {si_signo=SIGSEGV, ...} ---`; `--- stopped by SIGSTOP ---` is ignored.
    mutating func parseSignalLine(pid: Int32?) throws(TraceError) -> ParsedLine {
        let col = pos + 1
        pos += 3
        skipBlanks()
        if hasPrefix("stopped by ") { return .nothing }
        guard let s = scanIdentifier() else {
            throw error("expected a signal name after '---' (strace writes '--- SIGSEGV {...} ---'), found \(found())")
        }
        let name = text(s, pos)
        skipBlanks()
        var info: TraceValue?
        if peek() == 0x7b {
            let (fields, truncated) = try parseList(close: 0x7d, what: "signal information", depth: 1)
            info = .structure(fields, truncated: truncated)
        } else if peek() == 0x28 { // old strace: --- SIGSEGV (Segmentation fault) @ 0 (0) ---
            while pos + 2 < end, !hasPrefix("---") { pos += 1 }
        }
        skipBlanks()
        guard hasPrefix("---") else { throw error("expected '---' at the end of the signal line, found \(found())") }
        pos += 3
        skipBlanks()
        guard atEnd else { throw error("unexpected \(found()) after the closing '---'") }
        return .event(.signal(pid: pid, name: name, info: info, location: location(column: col)))
    }

    /// `#@ set KEY=VALUE`.
    mutating func parseDirective() throws(TraceError) -> ParsedLine {
        let col = pos + 1
        pos += 2
        skipBlanks()
        guard hasPrefix("set"), pos + 3 < end, Self.isBlank(base[pos + 3]) else {
            throw error("unknown directive; the accepted directive is '#@ set KEY=VALUE'")
        }
        pos += 3
        skipBlanks()
        let keyStart = pos
        while pos < end, base[pos] != 0x3d, !Self.isBlank(base[pos]) { pos += 1 }
        let key = text(keyStart, pos)
        skipBlanks()
        guard !key.isEmpty, peek() == 0x3d else {
            throw error("expected KEY=VALUE after '#@ set' (e.g. '#@ set memory=4G'), found \(found())")
        }
        pos += 1
        skipBlanks()
        let value = text(pos, end)
        guard !value.isEmpty else { throw error("expected a value after '\(key)=' in '#@ set KEY=VALUE'") }
        pos = end
        return .event(.set(key: key, value: value, location: location(column: col)))
    }
}
