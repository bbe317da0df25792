// KSM (mm/ksm.c) as the MKTME series left it: "mm/ksm: Do not merge pages with different
// KeyIDs" — identical contents are not enough, the pages' KeyIDs must be equal too (a KSM page
// is one frame, readable only through one KeyID; merging across KeyIDs would hand one tenant's
// frame to another's key). Seed 002 (docs/sources.md) calls KSM one of the "weirdo interactions".
//
// ksm_scan(): one pass of ksmd over every MADV_MERGEABLE anonymous VMA of every mm (pid order,
// VMA order, address order). Each mapped 4 KiB anonymous page that is exclusive to its
// mappings (no pins or other extra references) is read by the kernel through its KeyID's
// direct-map alias, then looked up by (KeyID, contents): first in the stable tree (KSM pages),
// then in this pass's unstable tree. A match in the stable tree maps the KSM page instead (the
// PTE write-protected; the old page's mapping reference dropped); a match in the unstable tree
// turns the earlier page into a KSM page (PG_ksm, its PTE write-protected, into the stable
// tree) and maps it here. Equal contents under different KeyIDs are counted
// (`ksmKeyIDMismatches`) and never merged. A write to a KSM page faults and copies (do_wp_page
// never reuses a KSM page); MADV_UNMERGEABLE breaks every KSM page of the range the same way.
//
// Model simplifications (docs/mktme.md): no checksum-stability gate (Linux waits one scan for a
// page's checksum to settle before it enters the unstable tree), huge PMDs are skipped, the
// zero page is never used for merging (use_zero_pages=0, the default).
//
// Invariants: a KSM page is mapped only by write-protected PTEs; every stable-tree entry is
// re-verified (PG_ksm, KeyID, contents) before use.
import KeyMMBase

extension Kernel {
    /// ksm_scan(): one full pass; returns the number of PTEs merged onto KSM pages.
    @discardableResult
    package func ksmScan() -> Int {
        var merged = 0
        var unstable: [KSMKey: (mm: MM, addr: VirtAddr, pfn: PFN)] = [:]
        // Contents seen (keyed with KeyID 0: the contents alone) -> the KeyIDs they were seen under.
        var contentsSeen: [KSMKey: Set<KeyID>] = [:]
        for key in mktme.ksmStable.keys { contentsSeen[KSMKey(keyid: .tme, contents: key.contents), default: []].insert(key.keyid) }
        for (_, mm) in distinctMMs {
            for vma in mm.allVMAs where vma.vmFlags.contains(.mergeable) && vma.isAnonymous && vmaKSMCompatible(vma) {
                var addrs: [VirtAddr] = []
                PageWalk.forEachEntry(of: vma, in: mm) { e in
                    if !e.isHuge && e.isPresent && !e.isSpecial { addrs.append(e.address) }
                }
                for a in addrs {
                    guard let slot = mm.pageTable.pteSlot(a) else { continue }
                    let pte = mm.pageTable[slot]
                    guard pte.isPresent, !pte.isSpecial else { continue }
                    let page = pte.pfn(layout)
                    let f = allocator.flags(page)
                    guard f.contains(.anon), !f.contains(.pinned), allocator.compoundHead(page) == page,
                          allocator.compoundOrder(page) == .base else { continue }
                    if f.contains(.ksm) { continue }                       // already merged
                    guard allocator.refcount(page) == allocator.mapcount(page) else { continue }
                    machine.clock.charge(.ksmCompare)
                    let keyid = allocator.pageKeyID(page)
                    let bug = config.bugs.contains(.ksmAcrossKeyIDs)   // seeded bug: contents only
                    let key = KSMKey(keyid: bug ? .tme : keyid, contents: kernelRead(page, count: pageSize))
                    if let stable = ksmStableLookup(key) {
                        ksmReplacePTE(mm, vma, a, slot, with: stable)
                        merged += 1
                        continue
                    }
                    if let other = unstable[key], other.pfn != page, ksmStillMapped(other.mm, other.addr, other.pfn) {
                        unstable[key] = nil
                        ksmMakeStable(other.mm, other.addr, other.pfn, key)
                        ksmReplacePTE(mm, vma, a, slot, with: other.pfn)
                        merged += 1
                        continue
                    }
                    // Same contents under another KeyID: the series refuses to merge them.
                    let seenKey = KSMKey(keyid: .tme, contents: key.contents)
                    if let ks = contentsSeen[seenKey], !ks.subtracting([keyid]).isEmpty { mktme.ksmKeyIDMismatches &+= 1 }
                    contentsSeen[seenKey, default: []].insert(keyid)
                    unstable[key] = (mm, a, page)
                }
            }
        }
        mktme.ksmPagesMerged &+= UInt64(merged)
        return merged
    }

    /// A stable-tree page for `key`, if it is still a KSM page with that KeyID and contents.
    func ksmStableLookup(_ key: KSMKey) -> PFN? {
        guard let pfn = mktme.ksmStable[key] else { return nil }
        let f = allocator.flags(pfn)
        if f.contains(.ksm), allocator.refcount(pfn) > 0, allocator.pageKeyID(pfn) == key.keyid,
           kernelRead(pfn, count: pageSize) == key.contents {
            return pfn
        }
        mktme.ksmStable[key] = nil   // stale: the KSM page was freed or reused
        return nil
    }

    func ksmStillMapped(_ mm: MM, _ addr: VirtAddr, _ pfn: PFN) -> Bool {
        guard let slot = mm.pageTable.pteSlot(addr) else { return false }
        let e = mm.pageTable[slot]
        return e.isPresent && !e.isSpecial && e.pfn(layout) == pfn
    }

    /// try_to_merge_one_page() for the first page: write-protect its PTE, PG_ksm, stable tree.
    func ksmMakeStable(_ mm: MM, _ addr: VirtAddr, _ pfn: PFN, _ key: KSMKey) {
        if let slot = mm.pageTable.pteSlot(addr) {
            let e = mm.pageTable[slot]
            if e.isDirty { allocator.setFlags(pfn, .dirty) }
            if e.isWritable {
                mm.pageTable.set(slot, e.writeProtected)
                machine.clock.charge(.pteUpdate)
                flushTLBRange(mm, addr, addr.advanced(by: UInt64(pageSize)))
            }
        }
        allocator.setFlags(pfn, .ksm)
        mktme.ksmStable[key] = pfn
    }

    /// replace_page(): the PTE at `addr` maps the KSM page `ksm` (write-protected, same
    /// permission bits, the KSM page's KeyID — equal to the old page's by construction).
    func ksmReplacePTE(_ mm: MM, _ vma: VMA, _ addr: VirtAddr, _ slot: Int, with ksm: PFN) {
        let pt = mm.pageTable
        let old = pt[slot]
        let oldPage = old.pfn(layout)
        allocator.getPage(ksm)
        allocator.incMapcount(ksm)
        pt.set(slot, old.with(pfn: ksm, layout: layout).writeProtected)
        machine.clock.charge(.pteUpdate)
        flushTLBRange(mm, addr, addr.advanced(by: UInt64(pageSize)))
        if old.isDirty { allocator.setFlags(ksm, .dirty) }
        allocator.decMapcount(oldPage)
        allocator.putPage(oldPage)
    }

    /// unmerge_ksm_pages() for MADV_UNMERGEABLE over [start, end) of `vma`: every PTE mapping a
    /// KSM page gets a private copy (break_ksm: the COW path, through the VMA's KeyID).
    /// Called by mm/Madvise.swift before VM_MERGEABLE is cleared. ENOMEM if a copy fails.
    func ksmUnmergePages(_ mm: MM, _ vma: VMA, _ start: VirtAddr, _ end: VirtAddr) -> Errno? {
        var addrs: [VirtAddr] = []
        PageWalk.forEachEntry(of: vma, in: mm, from: start, to: end) { e in
            if !e.isHuge && e.isPresent && !e.isSpecial && self.allocator.flags(e.pfn).contains(.ksm) {
                addrs.append(e.address)
            }
        }
        for a in addrs {
            guard let slot = mm.pageTable.pteSlot(a) else { continue }
            let e = mm.pageTable[slot]
            if wpPageCopy(mm, vma, a, slot, e, from: e.pfn(layout)) == .oom { return .ENOMEM }
        }
        return nil
    }
}
