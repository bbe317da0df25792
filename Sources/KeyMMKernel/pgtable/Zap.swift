// Removing mappings: zap_page_range (munmap, MADV_DONTNEED, encrypt_mprotect's KeyID
// change), free_pgtables for a whole mm (exit/exec), and the shared per-entry release.
//
// Invariants: every page whose mapping is removed loses exactly the reference and mapcount
// its entry held (pages are freed through the allocator when the last reference goes); a
// dirty PTE marks its page-cache page dirty before it goes (so shared writes reach the file);
// every TLB that may cache a removed present entry is flushed before zap returns.
import KeyMMBase

extension Kernel {
    /// zap_page_range_single(): unmaps every page of [start, end) ∩ vma. Huge PMDs partly in
    /// the range are split first. PTE tables left empty and wholly inside the range are freed.
    /// Guard markers go only with `dropMarkers` (unmap, exit: ZAP_FLAG_DROP_MARKER); an
    /// ordinary zap (MADV_DONTNEED, MADV_REMOVE, truncation, guard install) keeps them.
    public func zapPageRange(_ mm: MM, _ vma: VMA, _ start: VirtAddr, _ end: VirtAddr, dropMarkers: Bool = true) {
        let s = max(start, vma.vmStart), e = min(end, vma.vmEnd)
        guard s < e else { return }
        let pt = mm.pageTable
        var removedPresent = false
        var updates = 0
        pt.forEachPMD(s, e) { ps, a, next in
            var pmd = pt.raw(ps)
            if pmd == 0 { return }
            if pmd & PTEFlags.pse.rawValue != 0 {
                let h = a & ~pmdMask
                if a == h && next == h &+ pmdSize {
                    pt.set(ps, .none)
                    releaseHugeEntry(PTE(raw: pmd))
                    removedPresent = true
                    updates += 1
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
                let entry = pt[slot]
                if !entry.isNone && (dropMarkers || !entry.isMarker) {
                    pt.set(slot, .none)
                    if releaseEntry(entry) { removedPresent = true }
                    updates += 1
                }
                v &+= UInt64(pageSize)
            }
            if a & pmdMask == 0 && next == a &+ pmdSize && pt.usedEntries(table: base >> 9) == 0 {
                pt.freeTable(base >> 9, parentSlot: ps)
            }
        }
        if updates > 0 { machine.clock.charge(.pteUpdate, updates) }
        if removedPresent { flushTLBRange(mm, s, e) }
    }

    /// Releases what a removed 4 KiB entry held; true if it was present (may be in a TLB).
    func releaseEntry(_ entry: PTE) -> Bool {
        if entry.mapsFrame {
            if !entry.isSpecial {
                let page = entry.pfn(layout)
                if entry.isDirty && allocator.mapping(page) & PageCache.fileMappingBit != 0 { markPageDirty(page) }
                allocator.decMapcount(page)
                allocator.putPage(page)
            }
            return entry.isPresent
        }
        if let swp = SwapEntry(entry) { pgtable.swapEntryFreed?(swp) }
        return false
    }

    /// Releases what a removed huge PMD held (nothing for the huge zero page).
    func releaseHugeEntry(_ entry: PTE) {
        guard entry.mapsFrame, !entry.isSpecial else { return }
        let head = entry.hugePFN(layout)
        if isHugeZeroPFN(head) { return }
        allocator.decMapcount(head)
        allocator.putPage(head)
    }

    /// free_pgtables() for the whole mm (exit_mmap, exec): releases every page still mapped
    /// and every table; the TLB is flushed.
    public func freePageTables(_ mm: MM) {
        let pt = mm.pageTable
        var released = 0
        for g in 0..<256 {                                   // the user half of the PGD
            let ge = pt.raw(g)
            guard ge & 1 != 0 else { continue }
            let pud = pt.child(ge) << 9
            for u in 0..<ptrsPerTable {
                let ue = pt.raw(pud + u)
                guard ue & 1 != 0 else { continue }
                let pmdBase = pt.child(ue) << 9
                for m in 0..<ptrsPerTable {
                    let me = pt.raw(pmdBase + m)
                    if me == 0 { continue }
                    if me & PTEFlags.pse.rawValue != 0 {
                        releaseHugeEntry(PTE(raw: me))
                        released += 1
                        continue
                    }
                    guard me & 1 != 0 else { continue }
                    let base = pt.child(me) << 9
                    guard pt.usedEntries(table: base >> 9) > 0 else { continue }
                    for i in 0..<ptrsPerTable {
                        let e = pt[base + i]
                        if !e.isNone { _ = releaseEntry(e); released += 1 }
                    }
                }
            }
        }
        if released > 0 { machine.clock.charge(.pteUpdate, released) }
        pt.reset()
        machine.clock.charge(.tlbFlush)
    }
}
