// Process lifetime: fork/vfork/clone (dup_mm + dup_mmap), execve (a fresh mm), exit and
// exit_group (mmput + exit_mmap).
//
// dup_mmap: VM_DONTCOPY VMAs are not copied; VM_WIPEONFORK VMAs are copied without pages
// and without an anon_vma; every other VMA gets anon_vma_fork (its own anon_vma whose
// parent is the source's, so the child's chain is not singular) and copy_page_range
// (COW). Locks are not inherited (VM_LOCKED cleared, locked_vm 0, def_flags cleared except
// VM_NOHUGEPAGE); pkeys, brk and the mmap layout are.
//
// Invariants: an mm is torn down exactly once, when its last user (mm_users) goes;
// every VMA's KeyID reference and anon_vma links are dropped then.
import KeyMMBase

extension Kernel {
    /// fork(2): the child's pid.
    public func fork(_ pid: ProcessID, childPid: ProcessID? = nil) -> Result<ProcessID, Errno> {
        machine.clock.charge(.syscall)
        guard let parent = tasks[pid] else { return .failure(.ESRCH) }
        if let c = childPid, tasks[c] != nil { return .failure(.EAGAIN) }
        let mm = dupMM(parent)
        let child = TaskStruct(pid: childPid ?? allocatePid(), mm: mm, cred: parent.cred, pkru: parent.pkru,
                               files: copyFiles(parent.files), parent: parent.pid)
        child.rlimitMemlock = parent.rlimitMemlock
        if child.pid.rawValue >= nextPid { nextPid = child.pid.rawValue &+ 1 }
        tasks[child.pid] = child
        keysFork(parent: parent.pid, child: child.pid)   // mktme/KeySyscalls.swift
        return .success(child.pid)
    }

    /// clone(2) without CLONE_VM behaves as fork; with CLONE_VM (0x100) the child shares the mm.
    public func clone(_ pid: ProcessID, flags: UInt64 = 0, childPid: ProcessID? = nil) -> Result<ProcessID, Errno> {
        if flags & 0x100 != 0 { return vfork(pid, childPid: childPid) }
        return fork(pid, childPid: childPid)
    }

    /// vfork(2): the child shares the parent's mm until it execs or exits.
    public func vfork(_ pid: ProcessID, childPid: ProcessID? = nil) -> Result<ProcessID, Errno> {
        machine.clock.charge(.syscall)
        guard let parent = tasks[pid] else { return .failure(.ESRCH) }
        if let c = childPid, tasks[c] != nil { return .failure(.EAGAIN) }
        parent.mm.users += 1
        let child = TaskStruct(pid: childPid ?? allocatePid(), mm: parent.mm, cred: parent.cred, pkru: parent.pkru,
                               files: copyFiles(parent.files), parent: parent.pid)
        child.rlimitMemlock = parent.rlimitMemlock
        if child.pid.rawValue >= nextPid { nextPid = child.pid.rawValue &+ 1 }
        tasks[child.pid] = child
        keysFork(parent: parent.pid, child: child.pid)   // mktme/KeySyscalls.swift
        return .success(child.pid)
    }

    /// execve(2): the task gets a fresh, empty address space (the model does not load an
    /// image) and the initial PKRU.
    public func execve(_ pid: ProcessID) -> Result<Void, Errno> {
        machine.clock.charge(.syscall)
        guard let task = tasks[pid] else { return .failure(.ESRCH) }
        let old = task.mm
        task.mm = makeMM()
        task.pkru = 0x5555_5554
        mmput(old)
        keysExec(pid)                                    // mktme/KeySyscalls.swift
        return .success(())
    }

    /// exit(2) / exit_group(2): the task goes away with its mm (if it was the last user).
    public func exit(_ pid: ProcessID, code: Int32 = 0) {
        machine.clock.charge(.syscall)
        guard let task = tasks[pid] else { return }
        task.exitCode = code
        tasks[pid] = nil
        sgxThreadExits(pid)                              // sgx/EnclaveAccess.swift: the thread leaves any enclave
        mmput(task.mm)
        exitFiles(task)                                  // mm/CharDevice.swift: exit_files after exit_mm
        keysExit(pid)                                    // mktme/KeySyscalls.swift
    }

    /// exit_group(2).
    public func exitGroup(_ pid: ProcessID, code: Int32 = 0) { exit(pid, code: code) }

    /// mmput(): drop a user; the last one runs exit_mmap.
    func mmput(_ mm: MM) {
        mm.users -= 1
        if mm.users <= 0 { exitMmap(mm) }
    }

    /// exit_mmap(): mmu_notifier .release first, then unmap and free every VMA and the page tables.
    func exitMmap(_ mm: MM) {
        mmuNotifierRelease(mm)                           // mm/MMUNotifier.swift
        mm.tornDown = true
        let all = mm.allVMAs
        for v in all { glueZap(mm, v, v.vmStart, v.vmEnd) }
        mm.vmas.removeAll()
        for v in all { freeVMA(v, mm: mm) }
        glueFreePageTables(mm)
        mm.totalVM = 0
        mm.lockedVM = 0
        mm.dataVM = 0
        mm.execVM = 0
        mm.stackVM = 0
        mm.committedPages = 0
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
