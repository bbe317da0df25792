// Trace lines that change a process's credentials (KeyMMKernel/cred/SetID.swift): the set*id
// family, setgroups, capset/capget and prctl(PR_SET_KEEPCAPS / PR_GET_KEEPCAPS), as strace
// prints them (`capset({version=_LINUX_CAPABILITY_VERSION_3, pid=0}, {effective=1<<CAP_SETUID|...,
// permitted=..., inheritable=0}) = 0`, `setgroups(2, [4, 5]) = 0`).
//
// Invariant: a prctl option the model does not model is not modeled (nil), never guessed;
// capget compares only its return value (the structure it fills is not compared); in replay,
// a line that shows only pointers (perf trace's capset, setgroups) is not modeled.
import KeyMMBase
import KeyMMKernel
import KeyMMTrace

extension SyscallDispatcher {
    mutating func executeCredentials(_ call: ModeledCall, a: inout Arguments, line: SyscallLine,
                                     task: TaskStruct, kernel: Kernel, lenient: Bool) throws(TraceError) -> CallOutcome? {
        let pid = task.pid
        func id(_ i: Int) throws(TraceError) -> UInt32 { UInt32(truncatingIfNeeded: try a.i64(i)) }
        switch call {
        case .setuid: return Self.outcome(kernel.setuid(pid, try id(0)))
        case .setgid: return Self.outcome(kernel.setgid(pid, try id(0)))
        case .setreuid: return Self.outcome(kernel.setreuid(pid, ruid: try id(0), euid: try id(1)))
        case .setregid: return Self.outcome(kernel.setregid(pid, rgid: try id(0), egid: try id(1)))
        case .setresuid: return Self.outcome(kernel.setresuid(pid, ruid: try id(0), euid: try id(1), suid: try id(2)))
        case .setresgid: return Self.outcome(kernel.setresgid(pid, rgid: try id(0), egid: try id(1), sgid: try id(2)))
        case .setfsuid: return Self.outcome(kernel.setfsuid(pid, try id(0)))
        case .setfsgid: return Self.outcome(kernel.setfsgid(pid, try id(0)))
        case .setgroups:
            let n = try a.i64(0)
            var groups: [UInt32] = []
            if n > 0 {
                let arg = try a.arg(1)
                // perf trace prints the list as a pointer: the groups are not known.
                if lenient, arg.value.unnamed.integer != nil { return nil }
                guard case .array(let elements, let truncated) = arg.value.unnamed, !truncated, elements.count == n else {
                    throw TraceError(location: line.location(ofArgument: 1), message: "setgroups(N, [GID, ...]): the list must have N group ids (strace prints them all)")
                }
                for e in elements {
                    groups.append(UInt32(truncatingIfNeeded: try TraceArgument(value: e, index: 1, call: line.name, location: arg.location).asUInt64()))
                }
            } else if n < 0 {
                return .error(.EINVAL)
            }
            return Self.outcome(kernel.setgroups(pid, groups))
        case .capset:
            let header = try a.arg(0)
            if lenient, header.value.unnamed.integer != nil { return nil }   // perf: pointers only
            let version = UInt32(truncatingIfNeeded: try header.field("version").asUInt64([.capability]))
            let target = try header.field("pid").asInt32()
            let data = try a.arg(1)
            func set(_ name: String) throws(TraceError) -> CapabilitySet {
                CapabilitySet(rawValue: try data.field(name).asUInt64([.capability]))
            }
            let caps = CapabilityData(effective: try set("effective"), permitted: try set("permitted"),
                                      inheritable: try set("inheritable"))
            return Self.outcome(kernel.capset(pid, version: version, target: target, caps))
        case .capget:
            let header = try a.arg(0)
            if lenient, header.value.unnamed.integer != nil { return nil }
            let version = UInt32(truncatingIfNeeded: try header.field("version").asUInt64([.capability]))
            let target = try header.field("pid").asInt32()
            return Self.outcome(kernel.capget(pid, version: version, target: target).map { _ in () })
        case .prctl:
            switch try a.i64(0, [.prctl]) {
            case 8: return Self.outcome(kernel.setKeepCaps(pid, a.count > 1 ? try a.u64(1) : 0))   // PR_SET_KEEPCAPS
            case 7: return Self.outcome(kernel.keepCaps(pid))                                      // PR_GET_KEEPCAPS
            default: return nil
            }
        default:
            return nil
        }
    }
}
