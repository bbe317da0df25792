// move_page_tables(): mremap moving a range's entries to a new address. Entries move as
// they are (frame, KeyID, rights, A/D); the pages keep their rmap index because the new
// VMA's vm_pgoff is chosen so that linear_page_index() is unchanged (copy_vma's job).
//
// Invariants: afterwards no entry remains in the old range, each moved entry sits at
// newStart + (its old offset), and the old range is flushed from the TLB if anything
// present moved. A huge PMD moves whole when both addresses are PMD aligned and the rest of
// the length covers it (move_huge_pmd); otherwise it is split first.
import KeyMMBase

extension Kernel {
    /// move_page_tables() for `length` bytes from `oldStart` (in `from`) to `newStart` (in `to`).
    /// The destination range must be empty (mremap unmapped it); ranges must not overlap.
    package func movePageTables(_ mm: MM, from: VMA, oldStart: VirtAddr, to: VMA, newStart: VirtAddr, length: UInt64) {
        guard length > 0 else { return }
        let pt = mm.pageTable
        var off: UInt64 = 0
        var movedPresent = false
        var updates = 0
        while off < length {
            let old = oldStart.advanced(by: off)
            let new = newStart.advanced(by: off)
            let pmdEnd = min(((old.rawValue | pmdMask) &+ 1) &- oldStart.rawValue, length)
            guard let ps = pt.pmdSlot(old), pt.raw(ps) != 0 else { off = pmdEnd; continue }
            let pmd = pt.raw(ps)
            if pmd & PTEFlags.pse.rawValue != 0 {
                if old.rawValue & pmdMask == 0 && new.rawValue & pmdMask == 0 && length - off >= pmdSize {
                    let nps = pt.allocPMDSlot(new)
                    if pt.raw(nps) == 0 {
                        pt.set(nps, PTE(raw: pmd))
                        pt.set(ps, .none)
                        movedPresent = movedPresent || PTE(raw: pmd).isPresent
                        updates += 1
                        off &+= pmdSize
                        continue
                    }
                }
                splitHugePMD(mm, from, pmdSlot: ps, haddr: VirtAddr(old.rawValue & ~pmdMask))
            }
            while off < pmdEnd {
                let o = oldStart.advanced(by: off)
                if let oslot = pt.pteSlot(o) {
                    let e = pt[oslot]
                    if !e.isNone {
                        let n = newStart.advanced(by: off)
                        var nslot = pt.allocPTESlot(n)
                        if nslot == nil {
                            splitHugePMD(mm, to, at: n)
                            nslot = pt.allocPTESlot(n)
                        }
                        if let nslot {
                            if !pt[nslot].isNone { _ = releaseEntry(pt[nslot]) }
                            pt.set(nslot, e)
                            pt.set(oslot, .none)
                            movedPresent = movedPresent || e.isPresent
                            updates += 1
                        }
                    }
                }
                off &+= UInt64(pageSize)
            }
        }
        if updates > 0 { machine.clock.charge(.pteUpdate, updates) }
        if movedPresent { flushTLBRange(mm, oldStart, oldStart.advanced(by: length)) }
        pt.freeEmptyTables(oldStart, oldStart.advanced(by: length))
    }
}
