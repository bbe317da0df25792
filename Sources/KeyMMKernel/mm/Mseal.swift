// mseal(2) (mm/mseal.c, Linux 6.10+, as reworked in 6.17): seal a range's VMAs (VM_SEALED) so
// that their mapping can no longer change. A sealed VMA refuses, with EPERM:
// - mprotect / pkey_mprotect / encrypt_mprotect (mprotect_fixup, VMA by VMA: VMAs before the
//   sealed one keep their change, measured);
// - munmap, and MAP_FIXED or MREMAP_FIXED over it (vms_gather_munmap_vmas: nothing changes);
// - mremap of it (check_prep_vma);
// - madvise that discards data (FREE, DONTNEED, DONTNEED_LOCKED, REMOVE, DONTFORK,
//   WIPEONFORK, GUARD_INSTALL) on an anonymous VMA the process cannot write (Madvise.swift).
// Flag changes that discard nothing (mlock, other madvise) still split and merge sealed VMAs;
// VM_SEALED is an ordinary flag for merging (sealed and unsealed never merge); fork copies it.
//
// Invariant: a failed mseal changes nothing (flags EINVAL, unaligned start EINVAL, a hole in
// the range ENOMEM are all checked before the first VMA is touched).
import KeyMMBase

extension Kernel {
    /// mseal(2): flags must be 0; the start page aligned; the length is rounded up to pages
    /// (0: success, nothing done); every page of the range must be mapped (ENOMEM).
    public func mseal(_ pid: ProcessID, addr start: VirtAddr, length: UInt64, flags: UInt64) -> Result<Void, Errno> {
        machine.clock.charge(.syscall)
        guard let task = tasks[pid] else { return .failure(.ESRCH) }
        if flags != 0 { return .failure(.EINVAL) }
        if !start.isPageAligned { return .failure(.EINVAL) }
        let len = pageAlignUp(length) ?? 0
        if length != 0 && len == 0 { return .failure(.EINVAL) }
        let (endRaw, overflow) = start.rawValue.addingReportingOverflow(len)
        if overflow { return .failure(.EINVAL) }
        if endRaw == start.rawValue { return .success(()) }
        let end = VirtAddr(endRaw)
        let mm = task.mm
        // range_contains_unmapped()
        var covered = start
        for v in mm.vmas.vmas(in: start, end) {
            if v.vmStart > covered { return .failure(.ENOMEM) }
            covered = v.vmEnd
        }
        if covered < end { return .failure(.ENOMEM) }
        // mseal_apply()
        var (found, prev) = mm.findVMAPrev(start)
        if let v = found, start > v.vmStart { prev = v }
        var vma = found
        var curStart = start
        while let v = vma, v.vmStart < end {
            let curEnd = min(v.vmEnd, end)
            var done = v
            if !v.vmFlags.contains(.sealed) {
                let newFlags = v.vmFlags.union(.sealed)
                switch vmaModifyFlags(mm, prev: prev, v, curStart, curEnd, newFlags) {
                case .failure(let e): return .failure(e)
                case .success(let m):
                    m.vmFlags = newFlags.union(m.vmFlags.intersection(.sticky))
                    done = m
                }
            }
            prev = done
            // A merge may have taken in the next VMA too (sealing up to a sealed neighbour).
            curStart = min(done.vmEnd, end)
            vma = mm.next(of: done)
        }
        return .success(())
    }
}
