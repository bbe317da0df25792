// What a call actually returned in the model, how it compares with the result a trace
// recorded, and how it prints in strace's syntax (for --trace and divergence reports).
//
// Invariant: `matches(_:)` is the single definition of "reproduced": numbers compare by
// 64-bit pattern (so `-1`, `0xffff...` and negative fds agree), errors by errno name,
// strings by bytes (a recorded string strace truncated compares as a prefix), signals
// by name. A recorded `?` or no result is no expectation.
import KeyMMBase
import KeyMMTrace

/// The model's result of one call.
public enum CallOutcome: Sendable, Hashable {
    /// A number (a count, an fd, a pid, a pkey, a serial).
    case value(Int64)
    /// An address (printed in hex).
    case address(UInt64)
    /// `-1 ERRNO`.
    case error(Errno)
    /// A string (mem_read, phys_read).
    case bytes([UInt8])
    /// A signal instead of a result (mem_write to an unmapped address: SIGSEGV).
    case signal(String)
    /// The call does not return (exit, exit_group, a successful execve's old image).
    case noReturn

    /// Whether the recorded result is reproduced.
    public func matches(_ recorded: TraceResult) -> Bool {
        switch recorded {
        case .none, .unknown, .unfinished:
            return true
        case .errno(let name, _):
            if case .error(let e) = self { return e.name == name }
            return false
        case .signal(let name):
            if case .signal(let s) = self { return s == name }
            return false
        case .value(let v):
            if let s = v.unnamed.string {
                guard case .bytes(let b) = self else { return false }
                return s.truncated ? b.starts(with: s.bytes) : b == s.bytes
            }
            guard let i = v.integer else { return true }   // a form the model does not compare
            switch self {
            case .value(let n): return UInt64(bitPattern: n) == i.bitPattern
            case .address(let a): return a == i.bitPattern
            default: return false
            }
        }
    }

    /// The result in strace syntax: `3`, `0x7f0000000000`, `-1 ENOMEM (Cannot allocate memory)`.
    public var straceText: String {
        switch self {
        case .value(let n): return String(n)
        case .address(let a): return "0x" + String(a, radix: 16)
        case .error(let e): return "-1 \(e.name) (\(e.message))"
        case .bytes(let b): return TraceValue.string(TraceString(bytes: b)).description
        case .signal(let s): return s
        case .noReturn: return "?"
        }
    }
}

extension TraceResult {
    /// The recorded result as strace printed it (for divergence reports).
    public var straceText: String {
        switch self {
        case .none: return "(none)"
        case .unknown: return "?"
        case .unfinished: return "<unfinished ...>"
        case .signal(let s): return s
        case .errno(let name, let text): return "-1 \(name)" + (text.map { " (\($0))" } ?? "")
        case .value(let v): return v.description
        }
    }
}
