// `perf trace -F all --syscalls` lines, turned into the same events as strace lines.
//
//      0.432 ( 0.027 ms): true/5347 mmap(len: 8192, prot: READ|WRITE, flags: PRIVATE|ANONYMOUS) = 0x7efd41178000
//          ? (         ): sh/15067  ... [continued]: clone())                                  =
//      0.562 ( 0.000 ms): true/5152 minfault [_start+0x0] => /usr/lib/ld-linux-x86-64.so.2@0x1ab70 (d.)
//
// Owns: perf's line layout, and the normalization of perf's named, prefix-less arguments
// (`prot: READ|WRITE`, omitted zero arguments) into strace's positional form
// (`PROT_READ|PROT_WRITE`, `NULL`, `0`, `-1` for an anonymous mmap's fd) for the calls the model
// executes. Other calls keep perf's `name: value` arguments as `.named` values.
// Invariants: timestamps become seconds; a line ending in `...` is an unfinished call, and
// `... [continued]: NAME())` its resumed half.

extension LineParser {
    /// Positional argument names (as perf prints them) and the constant prefix of each position.
    static let perfSignatures: [String: [(String, String?)]] = [
        "mmap": [("addr", nil), ("len", nil), ("prot", "PROT_"), ("flags", "MAP_"), ("fd", nil), ("off", nil)],
        "munmap": [("addr", nil), ("len", nil)],
        "mprotect": [("start", nil), ("len", nil), ("prot", "PROT_")],
        "pkey_mprotect": [("start", nil), ("len", nil), ("prot", "PROT_"), ("pkey", nil)],
        "pkey_alloc": [("flags", nil), ("init_val", "PKEY_")],
        "pkey_free": [("pkey", nil)],
        "mremap": [("addr", nil), ("old_len", nil), ("new_len", nil), ("flags", "MREMAP_"), ("new_addr", nil)],
        "madvise": [("start", nil), ("len_in", nil), ("behavior", "MADV_")],
        "brk": [("brk", nil)],
        "mlock": [("start", nil), ("len", nil)],
        "mlock2": [("start", nil), ("len", nil), ("flags", "MLOCK_")],
        "munlock": [("start", nil), ("len", nil)],
        "mlockall": [("flags", "MCL_")],
        "munlockall": [],
        "msync": [("start", nil), ("len", nil), ("flags", "MS_")],
        "openat": [("dfd", "AT_FD"), ("filename", nil), ("flags", "O_"), ("mode", nil)],
        "close": [("fd", nil)],
        "newfstatat": [("dfd", "AT_FD"), ("filename", nil), ("statbuf", nil), ("flag", nil)],
        "fstat": [("fd", nil), ("statbuf", nil)],
        "execve": [("filename", nil), ("argv", nil), ("envp", nil)],
        "exit": [("error_code", nil)],
        "exit_group": [("error_code", nil)],
        "clone": [("clone_flags", "CLONE_"), ("newsp", nil), ("parent_tidptr", nil), ("child_tidptr", nil), ("tls", nil)],
        "clone3": [("uargs", nil), ("size", nil)],
        "fork": [],
        "vfork": [],
        "wait4": [("upid", nil), ("stat_addr", nil), ("options", "W"), ("ru", nil)],
        "mbind": [("start", nil), ("len", nil), ("mode", "MPOL_"), ("nmask", nil), ("maxnode", nil), ("flags", "MPOL_MF_")],
        "set_mempolicy": [("mode", "MPOL_"), ("nmask", nil), ("maxnode", nil)],
        "migrate_pages": [("pid", nil), ("maxnode", nil), ("old_nodes", nil), ("new_nodes", nil)],
        "move_pages": [("pid", nil), ("nr_pages", nil), ("pages", nil), ("nodes", nil), ("status", nil), ("flags", "MPOL_MF_")],
        "add_key": [("_type", nil), ("_description", nil), ("_payload", nil), ("plen", nil), ("ringid", "KEY_SPEC_")],
        "keyctl": [("option", "KEYCTL_"), ("arg2", nil), ("arg3", nil), ("arg4", nil), ("arg5", nil)],
        "mseal": [("start", nil), ("len", nil), ("flags", nil)],
        "memfd_create": [("uname", nil), ("flags", "MFD_")],
        "ftruncate": [("fd", nil), ("length", nil)],
        "truncate": [("path", nil), ("length", nil)],
        "setuid": [("uid", nil)],
        "setgid": [("gid", nil)],
        "setfsuid": [("uid", nil)],
        "setfsgid": [("gid", nil)],
        "setreuid": [("ruid", nil), ("euid", nil)],
        "setregid": [("rgid", nil), ("egid", nil)],
        "setresuid": [("ruid", nil), ("euid", nil), ("suid", nil)],
        "setresgid": [("rgid", nil), ("egid", nil), ("sgid", nil)],
        "setgroups": [("gidsetsize", nil), ("grouplist", nil)],
        "prctl": [("option", "PR_"), ("arg2", nil), ("arg3", nil), ("arg4", nil), ("arg5", nil)],
    ]

    /// A perf trace line; pos is at `(` after the time (or at `?`).
    mutating func parsePerfLine(timestamp: Double?) throws(TraceError) -> ParsedLine {
        if timestamp == nil { pos += 1; skipBlanks() } // "?"
        guard peek() == 0x28 else { throw error("expected '(' with the duration in a perf trace line, found \(found())") }
        pos += 1
        skipBlanks()
        let duration = scanSeconds().map { $0 / 1000 }
        while pos < end, base[pos] != 0x29 { pos += 1 }
        guard hasPrefix("):") else { throw error("expected '):' after the duration in a perf trace line, found \(found())") }
        pos += 2
        skipBlanks()
        // COMM/PID: the first '/' followed by digits and a blank.
        var pid: Int32?
        var j = pos
        while j < end {
            if base[j] == 0x2f {
                var k = j + 1
                while k < end, Self.isDigit(base[k]) { k += 1 }
                if k > j + 1, k < end, Self.isBlank(base[k]) {
                    pos = j + 1
                    pid = try parsePID(what: "perf's COMM/PID")
                    break
                }
            }
            j += 1
        }
        guard pid != nil else { throw error("expected COMM/PID in a perf trace line, found \(found())") }
        skipBlanks()
        let col = pos + 1
        if hasPrefix("minfault") || hasPrefix("majfault") {
            return try parsePerfFault(pid: pid, timestamp: timestamp, column: col)
        }
        if hasPrefix("... [continued]:") {
            pos += 16
            skipBlanks()
            guard let s = scanIdentifier() else { throw error("expected a call name after '[continued]:', found \(found())") }
            let name = text(s, pos)
            callName = name
            while pos < end, base[pos] != 0x3d { pos += 1 } // the arguments were on the first half
            var part = ResumedPart(pid: pid, name: name, arrow: nil, args: [], result: .none, detail: nil,
                                   location: location(column: col), duration: duration, unfinished: false,
                                   mayStandAlone: true)
            try parsePerfResult(&part.result, &part.detail)
            return .resumed(part)
        }
        guard let s = scanIdentifier() else { throw error("expected a call NAME(ARGS) in a perf trace line, found \(found())") }
        let name = text(s, pos)
        callName = name
        guard peek() == 0x28 else { throw error("expected '(' after the call name \(name), found \(found())") }
        pos += 1
        let named = try parsePerfArguments()
        var part = CallPart(line: SyscallLine(pid: pid, name: name, args: Self.normalizePerf(name, named),
                                              location: location(column: col), timestamp: timestamp,
                                              duration: duration),
                            unfinished: false)
        skipBlanks()
        if hasPrefix("...") { part.unfinished = true; return .call(part) }
        try parsePerfResult(&part.line.result, &part.line.resultDetail)
        return .call(part)
    }

    /// perf's `name: value, ...` up to `)` (consumed), as `.named` values.
    mutating func parsePerfArguments() throws(TraceError) -> [TraceValue] {
        var args: [TraceValue] = []
        skipBlanks()
        if peek() == 0x29 { pos += 1; return args }
        while true {
            guard let s = scanIdentifier() else {
                throw error("expected 'name: value' in the arguments of \(callName) (perf trace form), found \(found())")
            }
            let name = text(s, pos)
            guard peek() == 0x3a else {
                throw error("expected ':' after the argument name \(name) of \(callName) (perf trace form), found \(found())")
            }
            pos += 1
            skipBlanks()
            args.append(.named(name, try parseValue(depth: 1)))
            skipBlanks()
            // perf decorates a pid argument with the task's comm: `pid: 14422 (node)`.
            if peek() == 0x28 { _ = try scanParenthesized(); skipBlanks() }
            switch peek() {
            case 0x29: pos += 1; return args
            case 0x2c: pos += 1; skipBlanks()
            default:
                throw error("expected ',' or ')' after argument \(args.count) of \(callName), found \(found()); "
                            + AcceptedForms.argument)
            }
        }
    }

    /// ` = VALUE [anything]`; perf prints nothing for some zero results (`wait4(...) = `).
    mutating func parsePerfResult(_ result: inout TraceResult, _ detail: inout String?) throws(TraceError) {
        skipBlanks()
        if atEnd { return }
        guard peek() == 0x3d else { throw error("expected ' = RESULT' in a perf trace line, found \(found())") }
        pos += 1
        skipBlanks()
        if atEnd { result = .value(.int(TraceInteger(0))); return }
        if peek() == 0x3f { pos += 1; result = .unknown }
        else if Self.isDigit(peek()) || (peek() == 0x2d && Self.isDigit(peek(1))) {
            let negative = peek() == 0x2d
            let start = pos
            if negative { pos += 1 }
            result = .value(try parseNumber(negative: negative, start: start))
            skipBlanks()
            if negative, peek() == 0x45, let e = scanIdentifier() {
                let name = try errnoName(e)
                skipBlanks()
                result = .errno(name, text: peek() == 0x28 ? try scanParenthesized() : nil)
            }
        } else if let s = scanIdentifier() {
            result = .value(.symbol(text(s, pos))) // perf's decoded results: fcntl(cmd: GETFD) = CLOEXEC
        } else {
            throw error("expected a result after '=' in \(callName), found \(found()); \(AcceptedForms.result)")
        }
        skipBlanks()
        if !atEnd {
            var d = text(pos, end)
            if d.hasPrefix("("), d.hasSuffix(")") { d = String(d.dropFirst().dropLast()) }
            detail = d
            pos = end
        }
    }

    /// `minfault [ip] => 0xADDR (flags)` or `=> MAP@0xOFFSET (flags)`.
    mutating func parsePerfFault(pid: Int32?, timestamp: Double?, column: Int) throws(TraceError) -> ParsedLine {
        let kind: PageFault.Kind = base[pos] == 0x6d && base[pos + 1] == 0x69 ? .minor : .major
        pos += 8
        skipBlanks()
        var ip = ""
        if peek() == 0x5b {
            let s = pos + 1
            // The symbol may hold brackets itself (`[node::RealEnvStore::Get[abi:cxx11]+0x0]`).
            var depth = 0
            while pos < end {
                if base[pos] == 0x5b { depth += 1 } else if base[pos] == 0x5d { depth -= 1; if depth == 0 { break } }
                pos += 1
            }
            ip = text(s, pos)
            pos = min(pos + 1, end)
            skipBlanks()
        }
        guard hasPrefix("=>") else { throw error("expected '=>' and the faulting address in a perf fault line, found \(found())") }
        pos += 2
        skipBlanks()
        // The target ends at the last " (" (the flags), or at the end.
        var targetEnd = end
        var flags = ""
        if end > pos, base[end - 1] == 0x29 {
            var k = end - 1
            while k > pos, base[k] != 0x28 { k -= 1 }
            if k > pos, base[k] == 0x28 {
                flags = text(k + 1, end - 1)
                targetEnd = k
                while targetEnd > pos, Self.isBlank(base[targetEnd - 1]) { targetEnd -= 1 }
            }
        }
        var fault = PageFault(pid: pid, kind: kind, address: nil, map: nil, mapOffset: nil, flags: flags, ip: ip,
                              location: location(column: column), timestamp: timestamp)
        let targetStart = pos
        var at = -1
        var k = targetEnd - 1
        while k > targetStart { if base[k] == 0x40 { at = k; break }; k -= 1 }
        func hexValue(_ from: Int, _ to: Int) -> UInt64? {
            guard to - from > 2, base[from] == 0x30, base[from + 1] | 0x20 == 0x78 else { return nil }
            var v: UInt64 = 0
            for i in (from + 2)..<to {
                guard Self.isHexDigit(base[i]), v >> 60 == 0 else { return nil }
                let c = base[i]
                v = v << 4 | UInt64(c &- 0x30 < 10 ? c &- 0x30 : (c | 0x20) &- 0x61 &+ 10)
            }
            return v
        }
        if at >= 0 {
            fault.map = text(targetStart, at)
            fault.mapOffset = hexValue(at + 1, targetEnd)
        } else {
            fault.address = hexValue(targetStart, targetEnd)
        }
        if fault.address == nil && fault.mapOffset == nil {
            throw error("expected 0xADDRESS or MAP@0xOFFSET after '=>' in a perf fault line", column: targetStart + 1)
        }
        pos = end
        return .event(.fault(fault))
    }

    /// perf's `name: value` arguments -> strace's positional arguments for the model's calls.
    static func normalizePerf(_ name: String, _ named: [TraceValue]) -> [TraceValue] {
        guard let signature = perfSignatures[name] else { return named }
        var byName: [String: TraceValue] = [:]
        var positional: [TraceValue] = []
        for v in named {
            if case .named(let n, let value) = v { byName[n] = value } else { positional.append(v) }
        }
        var out: [TraceValue] = []
        out.reserveCapacity(signature.count)
        for (i, (argName, prefix)) in signature.enumerated() {
            var value = byName[argName] ?? (i < positional.count ? positional[i] : .int(TraceInteger(0)))
            if let prefix { value = prefixed(value, prefix) }
            if byName[argName] == nil, name == "mmap" {
                if argName == "addr" { value = .null }
                if argName == "fd", case .union(let parts)? = out.count > 3 ? out[3] : nil,
                   parts.contains(.symbol("MAP_ANONYMOUS")) {
                    value = .int(TraceInteger(-1))
                } else if argName == "fd", out.count > 3, out[3] == .symbol("MAP_ANONYMOUS") {
                    value = .int(TraceInteger(-1))
                }
            }
            out.append(value)
        }
        return out
    }

    /// `READ|WRITE` -> `PROT_READ|PROT_WRITE` (perf drops the family prefix).
    static func prefixed(_ v: TraceValue, _ prefix: String) -> TraceValue {
        switch v {
        case .symbol(let s):
            if s.hasPrefix(prefix) { return v }
            if prefix == "AT_FD" && s == "CWD" { return .symbol("AT_FDCWD") }
            return .symbol(prefix + s)
        case .union(let parts): return .union(parts.map { prefixed($0, prefix) })
        default: return v
        }
    }
}
