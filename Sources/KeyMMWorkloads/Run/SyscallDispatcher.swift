// From a parsed trace line to a call on the kernel model: argument decoding (with the
// place of any bad argument), the ids a trace dictates (child pids, fds, key serials,
// pin handles, mapping addresses), and the model's outcome.
//
// Owns: the table of calls the model executes, the trace-pid -> task binding, and the
// placement rule of the contract: an address a trace recorded for mmap/mremap/brk is
// where the model puts the mapping.
//
// Invariant: a call the model does not model returns nil (counted, never guessed); a
// call it models never traps on its arguments: every bad argument is a TraceError at
// the argument's column.
import KeyMMBase
import KeyMMHardware
import KeyMMKernel
import KeyMMKeys
import KeyMMTrace

/// Every call the model executes, by the name a trace uses.
enum ModeledCall: String, CaseIterable {
    case mmap, munmap, mprotect, pkey_alloc, pkey_free, pkey_mprotect, encrypt_mprotect
    case mremap, madvise, mlock, mlock2, munlock, mlockall, munlockall, brk
    case fork, vfork, clone, clone3, execve, exit, exit_group
    case add_key, keyctl
    case openat, open, close, fstat, newfstatat
    case mem_write, mem_read, mem_touch, virt_to_phys, phys_read, wbinvd, clflush
    case gup_pin, gup_unpin, ksm_scan, khugepaged_scan, reclaim, numa_balance, file_create
    case migrate_pages, move_pages, mbind, set_mempolicy
    case nanosleep, clock_nanosleep, vvar_map, hugetlb_map

    static let byName: [String: ModeledCall] = Dictionary(uniqueKeysWithValues: allCases.map { ($0.rawValue, $0) })
    /// Names of the model-only calls: a misspelling of one is an input error, not a skipped call.
    static let modelOnlyPrefixes = ["mem_", "phys_", "virt_", "gup_", "ksm_", "khugepaged_", "file_", "numa_", "vvar_", "hugetlb_"]
}

/// Executes trace lines on a kernel.
struct SyscallDispatcher {
    /// Open fds the trace named that the model maps to its own files (replay of real logs).
    var fdPaths: [Int32: [Int32: String]] = [:]
    /// Regions replay assumed the exec built (the log shows no call that made them).
    var inferred: [InferredRegion] = []

    /// The outcome of `line` on `kernel`, or nil if the model does not model the call.
    mutating func execute(_ line: SyscallLine, on kernel: Kernel, lenient: Bool) throws(TraceError) -> CallOutcome? {
        if let cvmCall = CVMCall.byName[line.name] {   // TDX and SEV host calls (CVMCalls.swift)
            if kernel.tasks.isEmpty { kernel.spawn(pid: ProcessID(line.pid ?? 1), cred: .root) }
            var a = Arguments(line: line)
            return try executeCVM(cvmCall, a: &a, line: line, kernel: kernel)
        }
        guard let call = ModeledCall.byName[line.name] else {
            if !lenient, CVMCall.prefixes.contains(where: { line.name.hasPrefix($0) }) {
                throw TraceError(location: line.location, message: "unknown confidential-VM call \(line.name); the calls are \(CVMCall.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            if !lenient, ModeledCall.modelOnlyPrefixes.contains(where: { line.name.hasPrefix($0) }) {
                throw TraceError(location: line.location, message: "unknown model-only call \(line.name); model-only calls are \(ModeledCall.allCases.map(\.rawValue).filter { n in ModeledCall.modelOnlyPrefixes.contains { n.hasPrefix($0) } }.joined(separator: ", "))")
            }
            return nil
        }
        let pid = ProcessID(line.pid ?? 1)
        let task: TaskStruct
        if let t = kernel.task(pid) {
            task = t
        } else if kernel.tasks.isEmpty || lenient {
            task = kernel.spawn(pid: pid, cred: .root)
        } else {
            throw TraceError(location: line.location, message: "process \(pid) was never started: a process starts at the file's first line or as the result of fork/vfork/clone")
        }
        var a = Arguments(line: line)
        if lenient { try inferExecRegions(call, a: a, line: line, task: task, kernel: kernel) }
        return try execute(call, a: &a, line: line, task: task, kernel: kernel, lenient: lenient)
    }

    /// Ends a task (exit lines of strace, `+++ exited +++`).
    func exitTask(_ kernel: Kernel, _ pid: ProcessID) {
        kernel.exit(pid, code: 0)
    }

    private mutating func execute(_ call: ModeledCall, a: inout Arguments, line: SyscallLine,
                                  task: TaskStruct, kernel: Kernel, lenient: Bool) throws(TraceError) -> CallOutcome? {
        let pid = task.pid
        let recordedAddress = line.result.uint64Value.flatMap { line.result.errnoName == nil ? $0 : nil }
        switch call {
        case .mmap:
            var addr = VirtAddr(try a.u64(0))
            let length = try a.u64(1)
            let prot = Prot(rawValue: UInt32(truncatingIfNeeded: try a.u64(2, [.prot])))
            var flags = MapFlags(rawValue: UInt32(truncatingIfNeeded: try a.u64(3, [.map])))
            let fd = a.count > 4 ? try a.i32(4) : -1
            let offset = a.count > 5 ? try a.u64(5) : 0
            // The contract: a recorded address places the mapping there.
            if let want = recordedAddress, !flags.contains(.fixed), want != addr.rawValue {
                addr = VirtAddr(want)
                flags.insert(.fixedNoReplace)
            }
            return Self.outcome(kernel.mmap(pid, addr: addr, length: length, prot: prot, flags: flags, fd: fd, offset: offset))
        case .munmap:
            return Self.outcome(kernel.munmap(pid, addr: VirtAddr(try a.u64(0)), length: try a.u64(1)))
        case .mprotect:
            return Self.outcome(kernel.mprotect(pid, addr: VirtAddr(try a.u64(0)), length: try a.u64(1),
                                                prot: Prot(rawValue: UInt32(truncatingIfNeeded: try a.u64(2, [.prot])))))
        case .pkey_mprotect:
            return Self.outcome(kernel.pkeyMprotect(pid, addr: VirtAddr(try a.u64(0)), length: try a.u64(1),
                                                    prot: Prot(rawValue: UInt32(truncatingIfNeeded: try a.u64(2, [.prot]))),
                                                    pkey: Int(try a.i32(3))))
        case .pkey_alloc:
            return Self.outcome(kernel.pkeyAlloc(pid, flags: try a.u64(0), initVal: a.count > 1 ? try a.u64(1, [.pkey]) : 0))
        case .pkey_free:
            return Self.outcome(kernel.pkeyFree(pid, pkey: Int(try a.i32(0))))
        case .mremap:
            let old = VirtAddr(try a.u64(0))
            let oldLen = try a.u64(1)
            let newLen = try a.u64(2)
            var flags = MremapFlags(rawValue: UInt32(truncatingIfNeeded: try a.u64(3, [.mremap])))
            var newAddr = VirtAddr(a.count > 4 ? try a.u64(4) : 0)
            if let want = recordedAddress, want != old.rawValue, flags.contains(.mayMove), !flags.contains(.fixed) {
                flags.insert(.fixed)
                newAddr = VirtAddr(want)
            }
            return Self.outcome(kernel.mremap(pid, oldAddr: old, oldLength: oldLen, newLength: newLen, flags: flags, newAddr: newAddr))
        case .madvise:
            return Self.outcome(kernel.madvise(pid, addr: VirtAddr(try a.u64(0)), length: try a.u64(1),
                                               advice: MAdvice(Int32(truncatingIfNeeded: try a.i64(2, [.madv])))))
        case .mlock:
            return Self.outcome(kernel.mlock(pid, addr: VirtAddr(try a.u64(0)), length: try a.u64(1)))
        case .mlock2:
            return Self.outcome(kernel.mlock2(pid, addr: VirtAddr(try a.u64(0)), length: try a.u64(1),
                                              flags: MlockFlags(rawValue: UInt32(truncatingIfNeeded: a.count > 2 ? try a.u64(2, [.mlock]) : 0))))
        case .munlock:
            return Self.outcome(kernel.munlock(pid, addr: VirtAddr(try a.u64(0)), length: try a.u64(1)))
        case .mlockall:
            return Self.outcome(kernel.mlockall(pid, flags: MCLFlags(rawValue: UInt32(truncatingIfNeeded: try a.u64(0, [.mcl])))))
        case .munlockall:
            return Self.outcome(kernel.munlockall(pid))
        case .brk:
            let requested = VirtAddr(try a.u64(0))
            if requested.rawValue == 0, let want = recordedAddress, task.mm.brk == task.mm.startBrk,
               task.mm.startBrk.rawValue != want {
                kernel.setBrkBase(pid, VirtAddr(want))
            }
            return .address(kernel.brk(pid, requested).rawValue)
        case .fork, .vfork, .clone, .clone3:
            let child = line.result.int64Value.flatMap { $0 > 0 ? ProcessID(Int32(truncatingIfNeeded: $0)) : nil }
            let r: Result<ProcessID, Errno>
            switch call {
            case .vfork: r = kernel.vfork(pid, childPid: child)
            case .clone: r = kernel.clone(pid, flags: try a.cloneFlags(), childPid: child)
            default: r = kernel.fork(pid, childPid: child)
            }
            if case .success(let c) = r { fdPaths[c.rawValue] = fdPaths[pid.rawValue] }
            return Self.outcome(r.map { Int64($0.rawValue) })
        case .execve:
            // A failed execve leaves the image alone; the trace says which happened.
            if line.result.errnoName != nil { return Self.outcome(Result<Void, Errno>.failure(Errno(name: line.result.errnoName ?? "") ?? .ENOENT)) }
            return Self.outcome(kernel.execve(pid))
        case .exit, .exit_group:
            kernel.exit(pid, code: a.count > 0 ? (try? a.i32(0)) ?? 0 : 0)
            return .noReturn
        default:
            return try executeMore(call, a: &a, line: line, task: task, kernel: kernel, lenient: lenient)
        }
    }

    static func outcome(_ r: Result<VirtAddr, Errno>) -> CallOutcome {
        switch r {
        case .success(let v): .address(v.rawValue)
        case .failure(let e): .error(e)
        }
    }

    static func outcome(_ r: Result<Void, Errno>) -> CallOutcome {
        switch r {
        case .success: .value(0)
        case .failure(let e): .error(e)
        }
    }

    static func outcome(_ r: Result<Int, Errno>) -> CallOutcome {
        switch r {
        case .success(let v): .value(Int64(v))
        case .failure(let e): .error(e)
        }
    }

    static func outcome(_ r: Result<Int64, Errno>) -> CallOutcome {
        switch r {
        case .success(let v): .value(v)
        case .failure(let e): .error(e)
        }
    }
}

/// A line's arguments with located decoding.
struct Arguments {
    let line: SyscallLine
    init(line: SyscallLine) { self.line = line }
    var count: Int { line.args.count }

    func arg(_ i: Int) throws(TraceError) -> TraceArgument {
        guard i < line.args.count else {
            throw TraceError(location: line.location, message: "\(line.name) needs at least \(i + 1) arguments, the line has \(line.args.count)")
        }
        return TraceArgument(value: line.args[i], index: i, call: line.name, location: line.location(ofArgument: i))
    }
    func u64(_ i: Int, _ families: [TraceConstantFamily] = []) throws(TraceError) -> UInt64 { try arg(i).asUInt64(families) }
    func i64(_ i: Int, _ families: [TraceConstantFamily] = []) throws(TraceError) -> Int64 { try arg(i).asInt64(families) }
    func i32(_ i: Int, _ families: [TraceConstantFamily] = []) throws(TraceError) -> Int32 { try arg(i).asInt32(families) }
    func string(_ i: Int) throws(TraceError) -> String { try arg(i).asString() }
    func bytes(_ i: Int) throws(TraceError) -> [UInt8] { try arg(i).asBytes() }

    /// clone's flags: strace prints `flags=CLONE_VM|...|SIGCHLD` as a named argument.
    func cloneFlags() throws(TraceError) -> UInt64 {
        for (i, v) in line.args.enumerated() {
            if case .named("flags", let f) = v {
                return try TraceArgument(value: f, index: i, call: line.name, location: line.location(ofArgument: i)).asUInt64([.clone, .signal])
            }
        }
        return count > 0 ? try u64(0, [.clone, .signal]) : 0
    }
}
