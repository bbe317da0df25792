// From a parsed trace line to a call on the kernel model: argument decoding (with the
// place of any bad argument), the ids a trace dictates (child pids, fds, key serials,
// pin handles, mapping addresses), and the model's outcome.
//
// Owns: the table of calls the model executes, the trace-pid -> task binding, and the
// placement rule of the contract: an address a trace recorded for mmap/mremap/brk is
// where the model puts the mapping.
//
// Invariant: a Linux system call the model does not model returns nil (counted, never
// guessed); a name that is no Linux system call and no model call is a TraceError (with a
// "did you mean"); a call it models never traps on its arguments: every bad argument is a
// TraceError at the argument's column.
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
    case setuid, setgid, setreuid, setregid, setresuid, setresgid, setfsuid, setfsgid, setgroups
    case capset, capget, prctl
    case mseal, memfd_create, ftruncate, truncate
    case ioctl, enclave_read, enclave_write, sgx_mm_list, sgx_epc_free, sgx_reclaim
    case sgx_walk_begin, sgx_walk_end, sgx_tamper

    static let byName: [String: ModeledCall] = Dictionary(uniqueKeysWithValues: allCases.map { ($0.rawValue, $0) })
    /// The model-only calls (no Linux system call has these names), for messages.
    static let modelOnly = allCases.map(\.rawValue).filter { !LinuxNames.isSyscall($0) }

    /// A name that is neither a Linux system call nor a model call: the located error, with
    /// the closest known name as a hint (`munmpa` -> munmap, `wbinvdd` -> wbinvd).
    static func unknownCallError(_ line: SyscallLine) -> TraceError {
        let hint = closestName(to: line.name, among: allCases.map(\.rawValue))
            ?? closestName(to: line.name, among: LinuxNames.syscalls)
        let what = "unknown call \(line.name): neither an x86-64 Linux system call nor a model-only call"
        if let hint { return TraceError(location: line.location, message: what + " (did you mean \(hint)?)") }
        return TraceError(location: line.location, message: what + "; model-only calls are "
                          + modelOnly.joined(separator: ", ") + " (docs/scenario-format.md)")
    }
}

/// Executes trace lines on a kernel.
struct SyscallDispatcher {
    /// Children of clone3 calls whose flags the log did not show, and the thread group that
    /// created each (ThreadInference.swift).
    var assumedClones: [ProcessID: ProcessID] = [:]
    /// What replay learned about each address space's exec-time layout (ExecLayout.swift).
    var layouts: [ObjectIdentifier: ExecLayoutNotes] = [:]
    /// Regions replay assumed the exec built (the log shows no call that made them).
    var inferred: [InferredRegion] = []
    /// Set when the last call's outcome was taken from the log (`learn`), not computed.
    var learnedLast = false

    /// The recorded error of a call whose answer lies outside the model (the host's files, an
    /// execve's PATH search): taken as the truth, marked learned so the runner counts it apart
    /// from reproduced results.
    mutating func learn(_ line: SyscallLine, _ errnoName: String) -> CallOutcome {
        learnedLast = true
        return .error(Errno(name: errnoName) ?? .ENOENT)
    }
    /// Set once a call has run in some task.
    var started = false

    /// The outcome of `line` on `kernel`, or nil if the model does not model the call.
    mutating func execute(_ line: SyscallLine, on kernel: Kernel, lenient: Bool) throws(TraceError) -> CallOutcome? {
        if let cvmCall = CVMCall.byName[line.name] {   // TDX and SEV host calls (CVMCalls.swift)
            if kernel.tasks.isEmpty { kernel.spawn(pid: ProcessID(line.pid ?? 1), cred: .root) }
            var a = Arguments(line: line)
            return try executeCVM(cvmCall, a: &a, line: line, kernel: kernel)
        }
        guard let call = ModeledCall.byName[line.name] else {
            // A misspelled confidential-VM call names the calls (CVMCalls.swift).
            if CVMCall.prefixes.contains(where: { line.name.hasPrefix($0) }), !LinuxNames.isSyscall(line.name) {
                throw TraceError(location: line.location, message: "unknown confidential-VM call \(line.name); the calls are \(CVMCall.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            // A real system call the model does not model is counted (never guessed); any
            // other name is a misspelling or a made-up call, and nothing may vanish silently.
            guard LinuxNames.isSyscall(line.name) else { throw ModeledCall.unknownCallError(line) }
            return nil
        }
        let pid = ProcessID(line.pid ?? 1)
        // A call that never completed because its task was ended (a thread in a call when another
        // ran exit_group): the task is gone, and no new process may be made up for it.
        if line.result == .unfinished, kernel.task(pid) == nil, started { return nil }
        let task: TaskStruct
        if let t = kernel.task(pid) {
            task = t
        } else if kernel.tasks.isEmpty || lenient {
            task = kernel.spawn(pid: pid, cred: .root)
        } else {
            throw TraceError(location: line.location, message: "process \(pid) was never started: a process starts at the file's first line or as the result of fork/vfork/clone")
        }
        learnedLast = false
        started = true
        var a = Arguments(line: line)
        kernel.sgxAsyncExit(task.pid)   // a thread inside an enclave left it to make this call (sgx/EnclaveAccess.swift)
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
            let kernelPlaced = addr.rawValue == 0 && !flags.contains(.fixed)
            // The contract: a recorded address places the mapping there.
            if let want = recordedAddress, !flags.contains(.fixed), want != addr.rawValue {
                addr = VirtAddr(want)
                flags.insert(.fixedNoReplace)
            }
            let r = kernel.mmap(pid, addr: addr, length: length, prot: prot, flags: flags, fd: fd, offset: offset)
            if lenient, kernelPlaced, case .success(let at) = r { noteKernelPlacedMapping(task.mm, addr: at.rawValue, length: length) }
            return Self.outcome(r)
        case .munmap:
            return Self.outcome(kernel.munmap(pid, addr: VirtAddr(try a.u64(0)), length: try a.u64(1)))
        case .mseal:
            return Self.outcome(kernel.mseal(pid, addr: VirtAddr(try a.u64(0)), length: try a.u64(1),
                                             flags: a.count > 2 ? try a.u64(2) : 0))
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
            let now = kernel.brk(pid, requested).rawValue
            if lenient, requested.rawValue == 0 { noteHeapStart(task.mm, now) }
            return .address(now)
        case .fork, .vfork, .clone, .clone3:
            let child = line.result.int64Value.flatMap { $0 > 0 ? ProcessID(Int32(truncatingIfNeeded: $0)) : nil }
            let r: Result<ProcessID, Errno>
            switch call {
            case .fork: r = kernel.fork(pid, childPid: child)
            case .vfork: r = kernel.vfork(pid, childPid: child)
            case .clone: r = kernel.clone(pid, flags: CloneFlags(cloneArgument: try a.cloneFlags()), childPid: child)
            default:
                if let flags = try a.clone3Flags() {
                    r = kernel.clone(pid, flags: flags, childPid: child)
                } else {
                    // perf trace prints clone3's argument structure as a pointer: see ThreadInference.swift.
                    r = kernel.clone(pid, flags: Self.assumedClone3Flags, childPid: child)
                    if case .success(let c) = r { noteAssumedClone(child: c, creator: task) }
                }
            }
            return Self.outcome(r.map { Int64($0.rawValue) })
        case .execve:
            // A failed execve leaves the image alone; the trace says which happened.
            if let name = line.result.errnoName { return learn(line, name) }
            endAssumedThreads(of: task, kernel: kernel)
            return Self.outcome(kernel.execve(pid))
        case .exit:
            kernel.exit(pid, code: a.count > 0 ? (try? a.i32(0)) ?? 0 : 0)
            return .noReturn
        case .exit_group:
            endAssumedThreads(of: task, kernel: kernel)
            kernel.exitGroup(pid, code: a.count > 0 ? (try? a.i32(0)) ?? 0 : 0)
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

    /// clone3's flags: strace prints the clone_args structure `{flags=CLONE_VM|..., ...}` (with
    /// `=> {parent_tid=[N]}` after it); nil when the log shows no flags field (perf prints a pointer).
    func clone3Flags() throws(TraceError) -> CloneFlags? {
        guard count > 0, let f = line.args[0].field("flags") else { return nil }
        return CloneFlags(rawValue: try TraceArgument(value: f, index: 0, call: line.name, location: line.location(ofArgument: 0)).asUInt64([.clone]))
    }

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
