// The seam between the scenario runner and the invariant checker: a parsed trace line becomes
// the checker's CheckedCall (kind, pid, range, bytes written) and the model's CallOutcome its
// CheckedOutcome. ScenarioRunner calls these around every modeled call when its checker is on
// (RunOptions.checker, default on for `keymm run`, `keymm replay`, tests and the fuzzer).
//
// Invariant: nothing here executes anything; decoding failures just leave a field nil (the
// dispatcher reports bad arguments itself).
import KeyMMBase
import KeyMMChecker
import KeyMMKernel
import KeyMMTrace

extension ScenarioRunner {
    /// The checker's view of a call about to run.
    static func checkedCall(_ line: SyscallLine, index: Int) -> CheckedCall {
        let pid = ProcessID(line.pid ?? 1)
        let site = CallSite(file: line.location.file, line: line.location.line,
                            call: (line.pid.map { "\($0) " } ?? "") + callText(line), index: index)
        func u64(_ i: Int) -> UInt64? {
            guard i < line.args.count else { return nil }
            return try? TraceArgument(value: line.args[i], index: i, call: line.name, location: line.location).asUInt64()
        }
        var call = CheckedCall(site: site, pid: pid)
        switch line.name {
        case "mprotect", "pkey_mprotect":
            call.kind = .protectionChange
        case "encrypt_mprotect":
            call.kind = .keyIDChange
        case "mmap":
            call.kind = .map
        case "mremap", "execve", "brk":
            call.kind = .remap
        case "mem_write":
            call.kind = .memWrite
            if line.args.count > 1 {
                call.written = try? TraceArgument(value: line.args[1], index: 1, call: line.name, location: line.location).asBytes()
            }
        case "mem_read":
            call.kind = .memRead
        default:
            call.kind = .other
        }
        switch call.kind {
        case .protectionChange, .keyIDChange, .memRead:
            call.address = u64(0).map { VirtAddr($0) }
            call.length = u64(1)
        case .map:
            call.address = u64(0).map { VirtAddr($0) }
            call.length = u64(1)
        case .memWrite:
            call.address = u64(0).map { VirtAddr($0) }
            call.length = call.written.map { UInt64($0.count) }
        default:
            break
        }
        return call
    }

    /// The checker's view of a call's outcome.
    static func checkedOutcome(_ outcome: CallOutcome) -> CheckedOutcome {
        switch outcome {
        case .value(let n): .success(value: UInt64(bitPattern: n))
        case .address(let a): .success(value: a)
        case .bytes(let b): .bytes(b)
        case .error, .signal, .noReturn: .failed
        }
    }

    /// Whether the dispatcher models a call of this name (so the checker runs around it).
    static func isModeled(_ name: String) -> Bool { ModeledCall.byName[name] != nil || CVMCall.byName[name] != nil }
}
