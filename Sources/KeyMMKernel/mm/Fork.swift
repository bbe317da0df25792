// Process and thread lifetime: clone/clone3/fork/vfork (copy_process with copy_mm and
// copy_files), execve (de_thread, then a fresh mm), exit and exit_group (mmput).
//
// copy_mm: with CLONE_VM the child runs in the parent's mm (mmget: threads are
// CLONE_VM|CLONE_THREAD, vfork and posix_spawn are CLONE_VM|CLONE_VFORK); without it the child
// gets dup_mm's copy (dup_mmap below). copy_files: CLONE_FILES shares the fd table, otherwise
// it is copied. CLONE_THREAD puts the child in the parent's thread group (same tgid), and
// requires CLONE_SIGHAND, which requires CLONE_VM (copy_process's EINVAL checks).
//
// dup_mmap: VM_DONTCOPY VMAs are not copied; VM_WIPEONFORK VMAs are copied without pages
// and without an anon_vma; every other VMA gets anon_vma_fork (its own anon_vma whose
// parent is the source's, so the child's chain is not singular) and copy_page_range
// (COW). Locks are not inherited (VM_LOCKED cleared, locked_vm 0, def_flags cleared except
// VM_NOHUGEPAGE); pkeys, brk and the mmap layout are.
//
// Invariants: every live task holds one mm_users reference on its mm (mm/MMLifetime.swift);
// an mm is torn down exactly once, when its last user exits or execs; exit_group and execve
// end every other thread of the group first; tgid is the pid of a live or exiting leader.
import KeyMMBase

/// clone(2)/clone3(2) flags (CLONE_*, include/uapi/linux/sched.h). The low byte of clone(2)'s
/// flags is the exit signal (CSIGNAL), not a flag: `init(cloneArgument:)` strips it.
public struct CloneFlags: OptionSet, Hashable, Sendable {
    public var rawValue: UInt64
    @inlinable public init(rawValue: UInt64) { self.rawValue = rawValue }
    /// clone(2)'s flags argument without its exit signal (CSIGNAL, 0xff).
    @inlinable public init(cloneArgument: UInt64) { self.rawValue = cloneArgument & ~0xff }
    public static let vm = CloneFlags(rawValue: 0x100)
    public static let fs = CloneFlags(rawValue: 0x200)
    public static let files = CloneFlags(rawValue: 0x400)
    public static let sighand = CloneFlags(rawValue: 0x800)
    public static let vfork = CloneFlags(rawValue: 0x4000)
    public static let parent = CloneFlags(rawValue: 0x8000)
    public static let thread = CloneFlags(rawValue: 0x10000)
    public static let newNS = CloneFlags(rawValue: 0x20000)
    public static let sysvsem = CloneFlags(rawValue: 0x40000)
    public static let newUser = CloneFlags(rawValue: 0x1000_0000)
    /// What glibc's pthread_create passes (besides SETTLS and the TID bookkeeping flags).
    public static let pthread: CloneFlags = [.vm, .fs, .files, .sighand, .thread, .sysvsem]
    /// What glibc's posix_spawn passes (and vfork(2) means).
    public static let spawn: CloneFlags = [.vm, .vfork]
}

extension Kernel {
    /// fork(2): clone with no sharing; the child's pid.
    public func fork(_ pid: ProcessID, childPid: ProcessID? = nil) -> Result<ProcessID, Errno> {
        clone(pid, flags: [], childPid: childPid)
    }

    /// vfork(2): clone(CLONE_VM|CLONE_VFORK): the child runs in the parent's mm until it
    /// execs or exits (the parent is suspended meanwhile, which the model needs not do: the
    /// trace orders the calls).
    public func vfork(_ pid: ProcessID, childPid: ProcessID? = nil) -> Result<ProcessID, Errno> {
        clone(pid, flags: .spawn, childPid: childPid)
    }

    /// clone(2) / clone3(2) (kernel_clone → copy_process): a new task sharing with `pid` what
    /// `flags` say. `childPid` is the id a trace recorded (EAGAIN if taken).
    public func clone(_ pid: ProcessID, flags: CloneFlags, childPid: ProcessID? = nil) -> Result<ProcessID, Errno> {
        machine.clock.charge(.syscall)
        guard let parent = tasks[pid] else { return .failure(.ESRCH) }
        // copy_process's consistency checks.
        if flags.isSuperset(of: [.newNS, .fs]) || flags.isSuperset(of: [.newUser, .fs]) { return .failure(.EINVAL) }
        if flags.contains(.thread) && !flags.contains(.sighand) { return .failure(.EINVAL) }
        if flags.contains(.sighand) && !flags.contains(.vm) { return .failure(.EINVAL) }
        if let c = childPid, tasks[c] != nil { return .failure(.EAGAIN) }
        let mm: MM
        if flags.contains(.vm) {                                  // copy_mm
            mmget(parent.mm)
            mm = parent.mm
        } else {
            mm = dupMM(parent)
        }
        let files = flags.contains(.files) ? parent.files : copyFiles(parent.files)   // copy_files
        let id = childPid ?? allocatePid()
        // CLONE_THREAD and CLONE_PARENT: the child's parent is the caller's parent.
        let parentID = flags.contains(.thread) || flags.contains(.parent) ? parent.parent : parent.pid
        let child = TaskStruct(pid: id, mm: mm, cred: parent.cred, pkru: parent.pkru, files: files, parent: parentID)
        if flags.contains(.thread) { child.tgid = parent.tgid }
        child.rlimitMemlock = parent.rlimitMemlock
        if child.pid.rawValue >= nextPid { nextPid = child.pid.rawValue &+ 1 }
        tasks[child.pid] = child
        // A thread shares its process's keyrings; a new process gets copy_creds' set.
        if !flags.contains(.thread) { keysFork(parent: parent.pid, child: child.pid) }   // mktme/KeySyscalls.swift
        return .success(child.pid)
    }

    /// The live threads of `task`'s thread group other than `task`, in pid order.
    package func otherThreads(of task: TaskStruct) -> [TaskStruct] {
        tasks.values.filter { $0.tgid == task.tgid && $0 !== task }.sorted { $0.pid < $1.pid }
    }

    /// execve(2): de_thread (every other thread of the group exits; a non-leader takes the
    /// leader's pid), then exec_mmap: a fresh, empty address space (the model does not load an
    /// image) and the initial PKRU; the old mm loses this user. The fd table stops being shared
    /// (unshare_files).
    public func execve(_ pid: ProcessID) -> Result<Void, Errno> {
        machine.clock.charge(.syscall)
        guard let task = tasks[pid] else { return .failure(.ESRCH) }
        for other in otherThreads(of: task) { releaseTask(other, code: 0) }     // de_thread
        if task.pid != task.tgid {
            tasks[task.pid] = nil
            task.pid = task.tgid
            tasks[task.pid] = task
        }
        if tasks.values.contains(where: { $0 !== task && $0.files === task.files }) {
            task.files = copyFiles(task.files)           // unshare_files: only a shared table is copied
        }
        let old = task.mm
        task.mm = makeMM()
        taskSetVersion &+= 1
        task.pkru = 0x5555_5554
        mmput(old)
        credsExec(task)                                  // cred/SetID.swift
        keysExec(task.pid)                               // mktme/KeySyscalls.swift
        return .success(())
    }

    /// exit(2): this thread goes; its mm loses a user (exit_mm) and is torn down if it was
    /// the last. The process's keyrings go with its last thread.
    public func exit(_ pid: ProcessID, code: Int32 = 0) {
        machine.clock.charge(.syscall)
        guard let task = tasks[pid] else { return }
        releaseTask(task, code: code)
    }

    /// exit_group(2): every thread of the caller's group exits (zap_other_threads), then the caller.
    public func exitGroup(_ pid: ProcessID, code: Int32 = 0) {
        machine.clock.charge(.syscall)
        guard let task = tasks[pid] else { return }
        for other in otherThreads(of: task) { releaseTask(other, code: code) }
        releaseTask(task, code: code)
    }

    /// do_exit() for one task: off the task list, mmput.
    package func releaseTask(_ task: TaskStruct, code: Int32) {
        task.exitCode = code
        tasks[task.pid] = nil
        sgxThreadExits(task.pid)                         // sgx/EnclaveAccess.swift: the thread leaves any enclave
        mmput(task.mm)
        exitFiles(task)                                  // mm/Files.swift: exit_files after exit_mm
        if !tasks.values.contains(where: { $0.tgid == task.tgid }) {
            keysExit(task.tgid)                          // mktme/KeySyscalls.swift
        }
    }

    /// dup_mm() + dup_mmap(): the child's copy of `parent`'s address space.
    func dupMM(_ parent: TaskStruct) -> MM {
        let old = parent.mm
        let mm = makeMM()
        mm.startBrk = old.startBrk
        mm.brk = old.brk
        mm.mmapBase = old.mmapBase
        mm.taskSize = old.taskSize
        mm.startStack = old.startStack
        mm.defFlags = old.defFlags.intersection(.noHugePage)
        mm.pkeyAllocationMap = old.pkeyAllocationMap
        mm.executeOnlyPkey = old.executeOnlyPkey
        mm.totalVM = old.totalVM
        mm.dataVM = old.dataVM
        mm.execVM = old.execVM
        mm.stackVM = old.stackVM
        for src in old.vmas {
            if src.vmFlags.contains(.dontCopy) {
                vmStatAccount(mm, src.vmFlags, -Int64(src.pages))
                continue
            }
            if src.vmFlags.contains(.account) { mm.committedPages &+= src.pages }
            let tmp = vmAreaDup(src)
            if tmp.vmFlags.contains(.wipeOnFork) {
                tmp.anonVMA = nil
            } else {
                anonVMAFork(tmp, parent: src)
            }
            tmp.vmFlags.subtract(VMFlags.lockedMask)
            mm.vmas.insert(tmp)
            tmp.vmOps?.open(tmp, mm: mm)
            if !tmp.vmFlags.contains(.wipeOnFork) {
                glueCopyPageRange(dst: mm, src: old, dstVMA: tmp, srcVMA: src)
            }
        }
        return mm
    }
}
