// copy_page_range(): fork copying one VMA's entries into the child's page tables.
//
// Rules (mm/memory.c): VM_WIPEONFORK → the child gets nothing; a VMA with neither an
// anon_vma nor VM_PFNMAP/VM_MIXEDMAP/VM_MAYBE_GUARD is not copied (the child refaults from
// the page cache); guard markers are copied as they are; in a COW mapping (private, may-write) writable entries are write-protected in
// parent and child, so the first write in either copies (do_wp_page); shared mappings share
// the entries (the child's are clean); child entries start old (not accessed). A pinned
// anonymous page (FOLL_PIN) is copied for the child at once (copy_present_page), so the
// pinned frame stays the parent's. KeyIDs are inherited: shared frames keep their entries'
// KeyID bits, copied pages get the child VMA's KeyID (the same as the parent's).
//
// Model simplification: an anonymous THP in a COW mapping is split (in the parent) before
// copying, so parent and child share 4 KiB entries; Linux shares the PMD until the first
// write, then splits the writer's mapping (do_huge_pmd_wp_page falls back to 4 KiB COW).
import KeyMMBase

extension Kernel {
    /// copy_page_range() for fork: `srcVMA` of `src` into `dstVMA` (same range) of `dst`.
    public func copyPageRange(dst: MM, src: MM, dstVMA: VMA, srcVMA: VMA) {
        let f = srcVMA.vmFlags
        if f.contains(.wipeOnFork) { return }
        if f.isDisjoint(with: [.pfnMap, .mixedMap, .maybeGuard]) && srcVMA.anonVMA == nil { return }
        let cow = f.contains(.mayWrite) && !f.contains(.shared)
        let spt = src.pageTable, dpt = dst.pageTable
        var wrprotected = false
        var updates = 0
        spt.forEachPMD(srcVMA.vmStart, srcVMA.vmEnd) { ps, a, next in
            var pmd = spt.raw(ps)
            if pmd == 0 { return }
            if pmd & PTEFlags.pse.rawValue != 0 {
                let entry = PTE(raw: pmd)
                let h = a & ~pmdMask
                if entry.isSpecial || isHugeZeroPFN(entry.hugePFN(layout)) || !cow {
                    // copy_huge_pmd(): the huge zero page (or a shared THP) is shared as it is.
                    if !entry.isSpecial && !isHugeZeroPFN(entry.hugePFN(layout)) {
                        allocator.getPage(entry.hugePFN(layout))
                        allocator.incMapcount(entry.hugePFN(layout))
                    }
                    dpt.set(dpt.allocPMDSlot(VirtAddr(h)), PTE(raw: f.contains(.shared) ? entry.cleaned.madeOld.raw : entry.madeOld.raw))
                    updates += 1
                    return
                }
                splitHugePMD(src, srcVMA, pmdSlot: ps, haddr: VirtAddr(h))
                pmd = spt.raw(ps)
            }
            guard PageTable.isTable(pmd) else { return }
            let base = spt.pteTableBase(pmd)
            var v = a
            while v < next {
                let slot = base | PageTable.pteIndex(v)
                var e = spt[slot]
                if !e.isNone {
                    if copyOnePTE(dst, dstVMA, srcVMA, spt, dpt, slot, &e, VirtAddr(v), cow: cow) { wrprotected = true }
                    updates += 1
                }
                v &+= UInt64(pageSize)
            }
        }
        if updates > 0 { machine.clock.charge(.pteUpdate, updates) }
        // The parent's write-protected entries must leave its TLB (dup_mmap's flush).
        if wrprotected { flushTLBRange(src, srcVMA.vmStart, srcVMA.vmEnd) }
    }

    /// copy_pte_range's step for one non-none entry; true if the parent's entry was write-protected.
    private func copyOnePTE(_ dst: MM, _ dstVMA: VMA, _ srcVMA: VMA, _ spt: PageTable, _ dpt: PageTable,
                            _ slot: Int, _ e: inout PTE, _ addr: VirtAddr, cow: Bool) -> Bool {
        guard let dslot = dpt.allocPTESlot(addr) else { return false }
        if e.isSwap {
            if let swp = SwapEntry(e) { pgtable.swapEntryDuplicated?(swp) }
            dpt.set(dslot, e)
            return false
        }
        if !e.isSpecial {
            let page = e.pfn(layout)
            let flags = allocator.flags(page)
            if cow && flags.contains(.anon) && flags.contains(.pinned),
               let copied = copyPinnedPageForChild(dst, dstVMA, page, e, addr) {
                dpt.set(dslot, copied)
                return false
            }
            allocator.getPage(page)
            allocator.incMapcount(page)
        }
        var wrprotected = false
        if cow && e.isWritable {
            e = e.writeProtected
            spt.set(slot, e)
            wrprotected = e.isPresent
        }
        if srcVMA.vmFlags.contains(.shared) { e = e.cleaned }
        dpt.set(dslot, e.madeOld)
        return wrprotected
    }

    /// copy_present_page(): the child's own copy of a pinned anonymous page (nil: no memory,
    /// then the page is shared like any other).
    private func copyPinnedPageForChild(_ dst: MM, _ dstVMA: VMA, _ page: PFN, _ e: PTE, _ addr: VirtAddr) -> PTE? {
        guard let anon = anonVMA(for: dstVMA, in: dst),
              let new = allocUserPages(dstVMA, addr, order: .base, zero: false) else { return nil }
        let k = allocator.pageKeyID(new)
        machine.copyPage(from: page, srcKeyID: e.keyid(layout), to: new, dstKeyID: k)
        allocator.setMapping(new, mapping: anon, index: dstVMA.pageIndex(of: addr))
        allocator.setFlags(new, [.anon, .swapBacked, .uptodate])
        allocator.incMapcount(new)
        return mkAnonPTE(new, dstVMA, keyid: k)
    }
}
