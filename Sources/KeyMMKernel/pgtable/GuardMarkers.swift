// Guard regions at the page-table level (mm/madvise.c, MADV_GUARD_INSTALL / _REMOVE, Linux
// 6.13+): a guard page is a PTE marker (PTE_MARKER_GUARD), not a page. Installing zaps
// whatever is mapped in the range (huge PMDs are split or dropped) but keeps markers already
// there, then puts a marker in every entry; removing clears only markers.
//
// Invariants: a marker holds no frame and no swap slot; an access to it is SIGSEGV
// (SEGV_MAPERR, Fault.swift); get_user_pages over it fails (EFAULT); fork copies markers
// (VM_MAYBE_GUARD makes copy_page_range copy the VMA), mremap moves them, mprotect keeps
// them, MADV_DONTNEED/FREE keep them, munmap and exit drop them.
import KeyMMBase

extension Kernel {
    /// madvise_guard_install()'s page-table part for [start, end) ∩ vma.
    func installGuardMarkers(_ mm: MM, _ vma: VMA, _ start: VirtAddr, _ end: VirtAddr) -> Errno? {
        let s = max(start, vma.vmStart), e = min(end, vma.vmEnd)
        guard s < e else { return nil }
        zapPageRange(mm, vma, s, e, dropMarkers: false)
        let pt = mm.pageTable
        var a = s
        var updates = 0
        while a < e {
            guard let slot = pt.allocPTESlot(a) else { return .ENOMEM }
            if !pt[slot].isGuardMarker {
                pt.set(slot, .guardMarker)
                updates += 1
            }
            a = a.advanced(by: UInt64(pageSize))
        }
        if updates > 0 { machine.clock.charge(.pteUpdate, updates) }
        return nil
    }

    /// madvise_guard_remove()'s page-table part: clears the markers of [start, end) ∩ vma.
    func removeGuardMarkers(_ mm: MM, _ vma: VMA, _ start: VirtAddr, _ end: VirtAddr) {
        let s = max(start, vma.vmStart), e = min(end, vma.vmEnd)
        guard s < e else { return }
        let pt = mm.pageTable
        var a = s
        var updates = 0
        while a < e {
            if let slot = pt.pteSlot(a), pt[slot].isGuardMarker {
                pt.set(slot, .none)
                updates += 1
            }
            a = a.advanced(by: UInt64(pageSize))
        }
        if updates > 0 { machine.clock.charge(.pteUpdate, updates) }
    }
}
