// brk(2) (mm/mmap.c SYSCALL brk + do_brk_flags): the heap VMA grows by expanding the
// previous brk VMA when it matches (vma_merge_new_range in expand-only mode) or by a new
// anonymous VMA, and shrinks by munmap. Failures return the old break, never an errno.
//
// Invariants: mm.brk is changed only on success; the heap is [start_brk, PAGE_ALIGN(brk));
// it is shown as [heap] in /proc/PID/maps.
import KeyMMBase

extension Kernel {
    /// brk(2): the new break, or the old one on failure.
    public func brk(_ pid: ProcessID, _ requested: VirtAddr) -> VirtAddr {
        machine.clock.charge(.syscall)
        guard let task = tasks[pid] else { return VirtAddr(0) }
        return doBrk(task, requested)
    }

    /// Sets where the heap starts (exec does this; a replayed trace learns it from the first
    /// brk(NULL)). Only allowed while the heap is empty.
    package func setBrkBase(_ pid: ProcessID, _ base: VirtAddr) {
        guard let mm = tasks[pid]?.mm, mm.brk == mm.startBrk else { return }
        mm.startBrk = base
        mm.brk = base
    }

    func doBrk(_ task: TaskStruct, _ brk: VirtAddr) -> VirtAddr {
        let mm = task.mm
        let origbrk = mm.brk
        if brk < mm.startBrk { return origbrk }
        guard let newbrkRaw = pageAlignUp(brk.rawValue), let oldbrkRaw = pageAlignUp(mm.brk.rawValue) else {
            return origbrk
        }
        let newbrk = VirtAddr(newbrkRaw), oldbrk = VirtAddr(oldbrkRaw)
        if oldbrk == newbrk {
            mm.brk = brk
            return brk
        }
        if brk <= mm.brk {
            // Always allow shrinking; the range must belong to the brk VMA.
            guard let brkvma = firstIntersecting(mm, newbrk, oldbrk), brkvma.vmStart < oldbrk else { return origbrk }
            mm.brk = brk
            switch gatherMunmapVMAs(mm, brkvma, newbrk, oldbrk) {
            case .failure:
                mm.brk = origbrk
                return origbrk
            case .success(let list):
                completeMunmap(mm, list)
            }
            return brk
        }
        // check_brk_limits()
        let len = newbrk.distance(from: oldbrk)
        if len > taskSize || oldbrk.rawValue > taskSize - len { return origbrk }
        if !mlockFutureOK(task, mm.defFlags, len) { return origbrk }
        // Keep one page and the stack guard gap free below the next VMA.
        if let next = firstIntersecting(mm, oldbrk, VirtAddr(newbrk.rawValue &+ UInt64(pageSize) &+ stackGuardGap)),
           newbrk.rawValue &+ UInt64(pageSize) > vmStartGap(next) {
            return origbrk
        }
        var brkvma = mm.findVMAPrev(oldbrk).prev
        if let v = brkvma, v.vmEnd <= mm.startBrk { brkvma = nil }
        if !doBrkFlags(task, brkvma, oldbrk, len) { return origbrk }
        mm.brk = brk
        if mm.defFlags.contains(.locked) {
            mmPopulate(task, oldbrk, len, ignoreErrors: true)
        }
        return brk
    }

    /// do_brk_flags(): extend the brk VMA or create a new anonymous one.
    func doBrkFlags(_ task: TaskStruct, _ vma: VMA?, _ addr: VirtAddr, _ len: UInt64) -> Bool {
        let mm = task.mm
        var flags: VMFlags = [.read, .write, .mayRead, .mayWrite, .mayExec, .account]
        flags.formUnion(mm.defFlags)
        if mm.mapCount > config.maxMapCount { return false }
        if !vmEnoughMemory(len >> pageShift) { return false }
        var result: VMA? = nil
        if let v = vma, v.vmEnd == addr {
            var vmg = VMAMergeState(start: addr, end: addr.advanced(by: len), flags: flags,
                                    pgoff: addr.pageNumber, file: nil, keyid: encryptAnonKeyID)
            vmg.prev = v
            vmg.justExpand = true
            result = vmaMergeNewRange(mm, &vmg)
        }
        if result == nil {
            let new = vmAreaAlloc(start: addr, end: addr.advanced(by: len), pgoff: addr.pageNumber, flags: flags,
                                  keyid: encryptAnonKeyID)   // encrypt-anon (mktme/EncryptAnon.swift)
            mm.vmas.insert(new)
            result = new
        }
        mm.committedPages &+= len >> pageShift
        mm.totalVM &+= len >> pageShift
        mm.dataVM &+= len >> pageShift
        if flags.contains(.locked) { mm.lockedVM &+= len >> pageShift }
        if config.softDirty { result?.vmFlags.insert(.softDirty) }
        machine.clock.charge(.vmaOp)
        return true
    }
}
