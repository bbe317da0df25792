// change_protection(): mprotect / pkey_mprotect rewriting the entries of a range with a
// new protection. Each entry keeps its frame and the _PAGE_CHG_MASK bits — the KeyID /
// encryption bits included (docs/sources.md, seed 003: a vvar-like VMA may hold a PTE whose encryption
// differs from vm_page_prot) — and takes the new permission and pkey bits.
//
// Invariants: entries are changed in place, never removed; a huge PMD wholly inside the
// range is modified as a PMD, one cut by the range is split first; the TLB is flushed (once
// for the range) when any present entry changed in a way x86's pte_needs_flush() flags.
import KeyMMBase

extension Kernel {
    /// change_protection() for [start, end) ∩ vma with `newProt` (the VMA's new vm_page_prot).
    public func changeProtection(_ mm: MM, _ vma: VMA, _ start: VirtAddr, _ end: VirtAddr, _ newProt: PageProt) {
        let s = max(start, vma.vmStart), e = min(end, vma.vmEnd)
        guard s < e else { return }
        let pt = mm.pageTable
        let preFix = config.bugs.contains(.mprotectDropsKeyID)   // seeded bug
        var needFlush = false
        var updates = 0
        pt.forEachPMD(s, e) { ps, a, next in
            var pmd = pt.raw(ps)
            if pmd == 0 { return }
            if pmd & PTEFlags.pse.rawValue != 0 {
                let h = a & ~pmdMask
                if a == h && next == h &+ pmdSize {
                    let old = PTE(raw: pmd)
                    let new = old.modifiedHuge(newProt, layout: layout)
                    if new != old {
                        pt.set(ps, new)
                        updates += 1
                        if pteNeedsFlush(old, new) { needFlush = true }
                    }
                    return
                }
                splitHugePMD(mm, vma, pmdSlot: ps, haddr: VirtAddr(h))
                pmd = pt.raw(ps)
            }
            guard PageTable.isTable(pmd) else { return }
            let base = pt.pteTableBase(pmd)
            var v = a
            while v < next {
                let slot = base | PageTable.pteIndex(v)
                let old = pt[slot]
                if old.mapsFrame {
                    let new = preFix ? old.modifiedDroppingEncryption(newProt, layout: layout)
                                     : old.modified(newProt, layout: layout)
                    if new != old {
                        pt.set(slot, new)
                        updates += 1
                        if pteNeedsFlush(old, new) { needFlush = true }
                    }
                }
                v &+= UInt64(pageSize)
            }
        }
        if updates > 0 { machine.clock.charge(.pteUpdate, updates) }
        if needFlush { flushTLBRange(mm, s, e) }
    }

    /// x86 pte_needs_flush(): a present entry whose frame / KeyID changed, whose
    /// flush-on-change bits (RW, US, PWT, PCD, PSE/PAT, G, PAT_LARGE, pkey, NX) changed, or
    /// that lost D or P (A is ignored).
    func pteNeedsFlush(_ old: PTE, _ new: PTE) -> Bool {
        guard old.isPresent else { return false }
        let addr = layout.pfnMask | layout.encryptionMask
        if (old.raw ^ new.raw) & addr != 0 { return true }
        let onChange: PTEFlags = [.rw, .user, .pwt, .pcd, .pse, .global, .patLarge, .pkeyMask, .nx]
        let diff = (old.raw ^ new.raw) & ~addr
        if diff & onChange.rawValue != 0 { return true }
        let onClear: PTEFlags = [.dirty, .present]
        return diff & old.raw & onClear.rawValue != 0
    }
}
