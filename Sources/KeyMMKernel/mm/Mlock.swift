// mlock(2), mlock2(2), munlock(2), mlockall(2), munlockall(2) and population (mm/mlock.c,
// __mm_populate in mm/gup.c): VM_LOCKED / VM_LOCKONFAULT set per range with vma_modify
// (so locking splits and unlocking re-merges), locked_vm accounting, RLIMIT_MEMLOCK unless
// CAP_IPC_LOCK, and faulting the pages in afterwards.
//
// Invariants: mm.lockedVM equals the pages of VM_LOCKED VMAs (mlockall(MCL_FUTURE) adds
// VM_LOCKED to later mappings through mm.defFlags); special and droppable VMAs are never
// locked.
import KeyMMBase

extension Kernel {
    /// mlock(2).
    public func mlock(_ pid: ProcessID, addr: VirtAddr, length: UInt64) -> Result<Void, Errno> {
        machine.clock.charge(.syscall)
        guard let task = tasks[pid] else { return .failure(.ESRCH) }
        return doMlock(task, addr, length, .locked)
    }

    /// mlock2(2).
    public func mlock2(_ pid: ProcessID, addr: VirtAddr, length: UInt64, flags: MlockFlags) -> Result<Void, Errno> {
        machine.clock.charge(.syscall)
        guard let task = tasks[pid] else { return .failure(.ESRCH) }
        if !flags.subtracting(.onFault).isEmpty { return .failure(.EINVAL) }
        var vmFlags: VMFlags = .locked
        if flags.contains(.onFault) { vmFlags.insert(.lockOnFault) }
        return doMlock(task, addr, length, vmFlags)
    }

    /// munlock(2).
    public func munlock(_ pid: ProcessID, addr: VirtAddr, length: UInt64) -> Result<Void, Errno> {
        machine.clock.charge(.syscall)
        guard let task = tasks[pid] else { return .failure(.ESRCH) }
        let (start, len) = mlockRange(addr, length)
        if let e = applyVMALockFlags(task, start, len, []) { return .failure(e) }
        return .success(())
    }

    /// mlockall(2).
    public func mlockall(_ pid: ProcessID, flags: MCLFlags) -> Result<Void, Errno> {
        machine.clock.charge(.syscall)
        guard let task = tasks[pid] else { return .failure(.ESRCH) }
        let valid: MCLFlags = [.current, .future, .onFault]
        if flags.isEmpty || !flags.subtracting(valid).isEmpty || flags == .onFault { return .failure(.EINVAL) }
        if !canDoMlock(task) { return .failure(.EPERM) }
        let mm = task.mm
        let limit = task.rlimitMemlock >> pageShift
        guard !flags.contains(.current) || mm.totalVM <= limit || task.cred.capable(.ipcLock) else {
            return .failure(.ENOMEM)
        }
        applyMlockallFlags(task, flags)
        if flags.contains(.current) {
            mmPopulate(task, VirtAddr(0), taskSize, ignoreErrors: true)
        }
        return .success(())
    }

    /// munlockall(2).
    public func munlockall(_ pid: ProcessID) -> Result<Void, Errno> {
        machine.clock.charge(.syscall)
        guard let task = tasks[pid] else { return .failure(.ESRCH) }
        applyMlockallFlags(task, [])
        return .success(())
    }

    // MARK: internals

    /// can_do_mlock(): a non-zero RLIMIT_MEMLOCK or CAP_IPC_LOCK.
    func canDoMlock(_ task: TaskStruct) -> Bool {
        task.rlimitMemlock != 0 || task.cred.capable(.ipcLock)
    }

    /// mlock_future_ok(): may `bytes` more be locked (only checked for VM_LOCKED)?
    func mlockFutureOK(_ task: TaskStruct, _ flags: VMFlags, _ bytes: UInt64) -> Bool {
        if !flags.contains(.locked) || task.cred.capable(.ipcLock) { return true }
        let locked = (bytes >> pageShift) &+ task.mm.lockedVM
        return locked <= task.rlimitMemlock >> pageShift
    }

    /// The range mlock/munlock act on: start rounded down, length rounded up to pages.
    func mlockRange(_ addr: VirtAddr, _ length: UInt64) -> (VirtAddr, UInt64) {
        let off = UInt64(addr.pageOffset)
        let len = (length &+ off &+ UInt64(pageSize - 1)) & ~UInt64(pageSize - 1)
        return (addr.pageDown, len)
    }

    /// do_mlock().
    func doMlock(_ task: TaskStruct, _ addr: VirtAddr, _ length: UInt64, _ flags: VMFlags) -> Result<Void, Errno> {
        if !canDoMlock(task) { return .failure(.EPERM) }
        let (start, len) = mlockRange(addr, length)
        let mm = task.mm
        let limit = task.rlimitMemlock >> pageShift
        var locked = (len >> pageShift) &+ mm.lockedVM
        let capable = task.cred.capable(.ipcLock)
        if locked > limit && !capable {
            locked &-= countMlockedPages(mm, start, len)
        }
        guard locked <= limit || capable else { return .failure(.ENOMEM) }
        if let e = applyVMALockFlags(task, start, len, flags) { return .failure(e) }
        if let e = mmPopulate(task, start, len, ignoreErrors: false) {
            // __mlock_posix_error_return()
            if e == .EFAULT { return .failure(.ENOMEM) }
            if e == .ENOMEM { return .failure(.EAGAIN) }
            return .failure(e)
        }
        return .success(())
    }

    /// count_mm_mlocked_page_nr(): pages of [start, start+len) already locked.
    func countMlockedPages(_ mm: MM, _ start: VirtAddr, _ len: UInt64) -> UInt64 {
        let end = start.advanced(by: len)
        var n: UInt64 = 0
        for v in mm.vmas.from(start) {
            if v.vmStart >= end { break }
            guard v.vmFlags.contains(.locked) else { continue }
            let s = max(v.vmStart, start), e = min(v.vmEnd, end)
            n &+= e.distance(from: s) >> pageShift
        }
        return n
    }

    /// apply_vma_lock_flags(): set the lock bits on every VMA of [start, start+len);
    /// ENOMEM for a hole (after changing the VMAs before it).
    func applyVMALockFlags(_ task: TaskStruct, _ start: VirtAddr, _ len: UInt64, _ flags: VMFlags) -> Errno? {
        let mm = task.mm
        let (end, overflow) = start.rawValue.addingReportingOverflow(len)
        if overflow { return .EINVAL }
        if end == start.rawValue { return nil }
        guard var vma = mm.vma(containing: start) else { return .ENOMEM }
        var prev = mm.prev(of: vma)
        if start > vma.vmStart { prev = vma }
        var nstart = start
        var tmp = vma.vmStart
        while true {
            if vma.vmStart != tmp { return .ENOMEM }
            var newFlags = vma.vmFlags.subtracting(VMFlags.lockedMask)
            newFlags.formUnion(flags)
            tmp = min(vma.vmEnd, VirtAddr(end))
            switch mlockFixup(task, vma, &prev, nstart, tmp, newFlags) {
            case .failure(let e): return e
            case .success(let v): vma = v
            }
            tmp = vma.vmEnd
            nstart = tmp
            if tmp.rawValue >= end { break }
            guard let next = mm.next(of: vma), next.vmStart.rawValue < end else { break }
            vma = next
        }
        if tmp.rawValue < end { return .ENOMEM }
        return nil
    }

    /// mlock_fixup(): change the lock bits of [start, end) of `vma` and account locked_vm.
    func mlockFixup(_ task: TaskStruct, _ vma: VMA, _ prev: inout VMA?, _ start: VirtAddr, _ end: VirtAddr,
                    _ newFlags: VMFlags) -> Result<VMA, Errno> {
        let mm = task.mm
        let oldFlags = vma.vmFlags
        if newFlags == oldFlags || !vma.vmFlags.isDisjoint(with: .special) || vma.vmFlags.contains(.droppable)
            || vma.vmFlags.contains(.hugeTLB) {
            prev = vma
            return .success(vma)
        }
        switch vmaModifyFlags(mm, prev: prev, vma, start, end, newFlags) {
        case .failure(let e):
            prev = vma
            return .failure(e)
        case .success(let v):
            let pages = end.distance(from: start) >> pageShift
            if !newFlags.contains(.locked) {
                mm.lockedVM = mm.lockedVM >= pages ? mm.lockedVM - pages : 0
            } else if !oldFlags.contains(.locked) {
                mm.lockedVM &+= pages
            }
            v.vmFlags = newFlags.union(v.vmFlags.intersection(.sticky))   // a merge's sticky flags stay
            prev = v
            return .success(v)
        }
    }

    /// apply_mlockall_flags().
    func applyMlockallFlags(_ task: TaskStruct, _ flags: MCLFlags) {
        let mm = task.mm
        mm.defFlags.subtract(VMFlags.lockedMask)
        if flags.contains(.future) {
            mm.defFlags.insert(.locked)
            if flags.contains(.onFault) { mm.defFlags.insert(.lockOnFault) }
            if !flags.contains(.current) { return }
        }
        var toAdd: VMFlags = []
        if flags.contains(.current) {
            toAdd.insert(.locked)
            if flags.contains(.onFault) { toAdd.insert(.lockOnFault) }
        }
        var prev: VMA? = nil
        var cur = mm.vmas.first.vma
        while let vma = cur {
            var newFlags = vma.vmFlags.subtracting(VMFlags.lockedMask)
            newFlags.formUnion(toAdd)
            var done = vma
            switch mlockFixup(task, vma, &prev, vma.vmStart, vma.vmEnd, newFlags) {
            case .success(let v): done = v
            case .failure: prev = vma
            }
            cur = mm.next(of: done)
        }
    }

    /// __mm_populate(): fault in [start, start+len) VMA by VMA (skipping VM_IO/VM_PFNMAP).
    /// With `ignoreErrors` (mm_populate) failures move on to the next VMA.
    @discardableResult
    func mmPopulate(_ task: TaskStruct, _ start: VirtAddr, _ len: UInt64, ignoreErrors: Bool) -> Errno? {
        let mm = task.mm
        let end = VirtAddr(start.rawValue &+ len)
        var nstart = start
        var vma: VMA? = nil
        while nstart < end {
            if let v = vma, nstart < v.vmEnd {
                // still inside
            } else {
                vma = firstIntersecting(mm, vma.map { $0.vmEnd } ?? nstart, end)
            }
            guard let v = vma else { break }
            let nend = min(end, v.vmEnd)
            if !v.vmFlags.isDisjoint(with: [.io, .pfnMap]) { nstart = nend; continue }
            if nstart < v.vmStart { nstart = v.vmStart }
            if let e = populateVMAPageRange(task, v, nstart, nend), !ignoreErrors {
                return e
            }
            nstart = nend
        }
        return nil
    }
}
