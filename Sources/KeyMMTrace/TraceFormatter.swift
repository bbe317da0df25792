// Printing values, results, calls and events back in the input syntax (strace's).
//
// Owns: `description` of `TraceValue`, `TraceResult`, `SyscallLine`, `TraceEvent`.
// Invariant: parsing what is printed gives back an equal value (round trip), which the
// property tests check; strings are escaped the way strace escapes them (\n, \t, octal).

extension TraceValue: CustomStringConvertible {
    /// The value in strace syntax.
    public var description: String {
        var out = ""
        write(to: &out)
        return out
    }

    func write(to out: inout String) {
        switch self {
        case .int(let i): i.write(to: &out)
        case .symbol(let s): out += s
        case .union(let parts):
            for (n, p) in parts.enumerated() {
                if n > 0 { out += "|" }
                p.write(to: &out)
            }
        case .string(let s): s.write(to: &out)
        case .array(let e, let t): Self.writeList(e, t, "[", "]", to: &out)
        case .structure(let e, let t): Self.writeList(e, t, "{", "}", to: &out)
        case .named(let n, let v):
            out += n
            out += "="
            v.write(to: &out)
        case .binary(let op, let l, let r):
            l.write(to: &out)
            switch op {
            case .logicalAnd, .logicalOr, .equal, .notEqual, .alternative: out += " \(op.spelling) "
            default: out += op.spelling
            }
            r.write(to: &out)
        case .unary(let op, let v):
            out += op.spelling
            v.write(to: &out)
        case .changed(let a, let b):
            a.write(to: &out)
            out += " => "
            b.write(to: &out)
        case .call(let n, let args): Self.writeList(args, false, n + "(", ")", to: &out)
        case .fd(let i, let path):
            i.write(to: &out)
            out += "<" + path + ">"
        case .null: out += "NULL"
        case .elided: out += "..."
        case .raw(let s): out += s
        }
    }

    static func writeList(_ e: [TraceValue], _ truncated: Bool, _ open: String, _ close: String, to out: inout String) {
        out += open
        for (n, v) in e.enumerated() {
            if n > 0 { out += ", " }
            v.write(to: &out)
        }
        if truncated { out += e.isEmpty ? "..." : ", ..." }
        out += close
    }
}

extension TraceInteger: CustomStringConvertible {
    /// `-1`, `0x7f0000000000`, `0644`.
    public var description: String {
        var s = ""
        write(to: &s)
        return s
    }

    func write(to out: inout String) {
        if isNegative { out += "-" }
        switch radix {
        case .decimal: out += String(magnitude)
        case .hex: out += "0x" + String(magnitude, radix: 16)
        case .octal: out += magnitude == 0 ? "0" : "0" + String(magnitude, radix: 8)
        }
    }
}

extension TraceString: CustomStringConvertible {
    /// The string quoted with strace's escapes, `...` after it when truncated.
    public var description: String {
        var s = ""
        write(to: &s)
        return s
    }

    func write(to out: inout String) {
        var bytes: [UInt8] = [0x22]
        bytes.reserveCapacity(self.bytes.count + 8)
        for (i, c) in self.bytes.enumerated() {
            switch c {
            case 0x22: bytes += [0x5c, 0x22]
            case 0x5c: bytes += [0x5c, 0x5c]
            case 0x0a: bytes += [0x5c, 0x6e]
            case 0x09: bytes += [0x5c, 0x74]
            case 0x0d: bytes += [0x5c, 0x72]
            case 0x0b: bytes += [0x5c, 0x76]
            case 0x0c: bytes += [0x5c, 0x66]
            case 0x20..<0x7f: bytes.append(c)
            default:
                // Octal, shortest unless a digit follows (then three digits), as strace does.
                let nextIsDigit = i + 1 < self.bytes.count && self.bytes[i + 1] &- 0x30 < 10
                bytes.append(0x5c)
                if nextIsDigit || c >= 0o100 { bytes.append(0x30 + (c >> 6)) }
                if nextIsDigit || c >= 0o10 { bytes.append(0x30 + ((c >> 3) & 7)) }
                bytes.append(0x30 + (c & 7))
            }
        }
        bytes.append(0x22)
        out += String(decoding: bytes, as: UTF8.self)
        if truncated { out += "..." }
    }
}

/// Seconds with six decimals (`1700000000.123456`, `0.000012`) without Foundation.
func formatSeconds(_ s: Double) -> String {
    guard s.isFinite, s >= 0 else { return "0.000000" }
    guard s < 1e12 else { return String(describing: s) } // beyond any real timestamp; never traps
    let micros = UInt64((s * 1_000_000).rounded())
    let frac = String(micros % 1_000_000)
    return "\(micros / 1_000_000)." + String(repeating: "0", count: 6 - frac.count) + frac
}

extension TraceResult: CustomStringConvertible {
    /// What follows ` = ` (empty for `.none`): `0x7f...`, `-1 ENOMEM (Cannot allocate memory)`, `?`, `SIGSEGV`.
    public var description: String {
        switch self {
        case .none: ""
        case .value(let v): v.description
        case .errno(let name, let text): "-1 \(name)" + (text.map { " (\($0))" } ?? "")
        case .unknown, .unfinished: "?"
        case .signal(let s): s
        }
    }
}

extension SyscallLine: CustomStringConvertible {
    /// The call in the input syntax: `PID NAME(ARGS) = RESULT (detail) <duration>`.
    public var description: String { formatted() }

    /// The call in the input syntax; `withPID: false` leaves the PID out, `result` overrides the
    /// recorded result (for echoing the model's actual result in `--trace`).
    public func formatted(withPID: Bool = true, withTiming: Bool = true, result: TraceResult? = nil) -> String {
        var out = ""
        if withPID, let pid { out += "\(pid) " }
        if withTiming, let timestamp { out += formatSeconds(timestamp) + " " }
        out += spelledName ?? name
        let r = result ?? self.result
        TraceValue.writeList(args, false, "(", "", to: &out)
        if r == .unfinished {
            out += args.isEmpty ? "<unfinished ...>" : " <unfinished ...>"
            return out
        }
        out += ")"
        if r != .none { out += " = " + r.description }
        if let resultDetail, result == nil { out += " (" + resultDetail + ")" }
        if withTiming, let duration { out += " <" + formatSeconds(duration) + ">" }
        return out
    }
}

extension TraceEvent: CustomStringConvertible {
    /// The event in the input syntax (faults in perf trace's syntax).
    public var description: String {
        func prefix(_ pid: Int32?) -> String { pid.map { "\($0) " } ?? "" }
        switch self {
        case .call(let c): return c.description
        case .exited(let pid, let code, _): return prefix(pid) + "+++ exited with \(code) +++"
        case .killed(let pid, let sig, let core, _):
            return prefix(pid) + "+++ killed by \(sig)" + (core ? " (core dumped)" : "") + " +++"
        case .signal(let pid, let name, let info, _):
            return prefix(pid) + "--- \(name)" + (info.map { " \($0)" } ?? "") + " ---"
        case .superseded(let pid, let by, _): return prefix(pid) + "+++ superseded by execve in pid \(by) +++"
        case .set(let key, let value, _): return "#@ set \(key)=\(value)"
        case .fault(let f):
            let time = f.timestamp.map { formatSeconds($0 * 1000) } ?? "?"
            let target = f.address.map { "0x" + String($0, radix: 16) }
                ?? ((f.map ?? "") + "@0x" + String(f.mapOffset ?? 0, radix: 16))
            return "\(time) ( 0.000 ms): ?/\(f.pid ?? 0) \(f.kind.rawValue) [\(f.ip)] => \(target) (\(f.flags))"
        }
    }
}
