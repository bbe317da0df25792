// Transparent huge pages for anonymous memory: the PMD fault (huge page or huge zero page),
// write faults on huge PMDs, split_huge_pmd (the new PTEs take the KeyID/encryption and
// cacheability bits from the source PMD, docs/sources.md, seed 003), and collapse (khugepaged and
// MADV_COLLAPSE: the huge page is allocated with KeyID 0, then prep_encrypted_page applies
// the VMA's KeyID before the copy, as the MKTME series does).
//
// Invariants: a huge PMD maps a naturally aligned order-9 block that lies wholly inside one
// VMA; an anonymous THP mapped by a PMD holds one reference and one mapcount on its head
// (the "entire" mapping); the huge zero page holds neither (special); splitting a PMD
// splits the folio at once (the model runs the deferred split immediately), leaving 512
// order-0 pages, each with one reference and one mapcount.
import KeyMMBase
import KeyMMHardware

/// /sys/kernel/mm/transparent_hugepage/khugepaged/max_ptes_none (default HPAGE_PMD_NR - 1).
public let khugepagedMaxPtesNone = 511
/// khugepaged/max_ptes_shared (default HPAGE_PMD_NR / 2).
public let khugepagedMaxPtesShared = 256

/// The outcome of one collapse attempt (enum scan_result, abridged).
public enum CollapseResult: Sendable, Equatable {
    case succeed, pmdMapped, pmdNull, exceedNonePTE, exceedSharedPTE, pteNonPresent,
         pageNotAnon, pageCount, lackReferencedPage, allocHugePageFail
}

extension Kernel {
    // MARK: eligibility

    /// Whether the THP setting and the VMA's flags allow huge pages (hugepage_vma_check).
    func thpModeAllows(_ f: VMFlags) -> Bool {
        if f.contains(.noHugePage) || f.contains(.hugeTLB) || !f.isDisjoint(with: .special) { return false }
        switch config.thp {
        case .never: return false
        case .madvise: return f.contains(.hugePage)
        case .always: return true
        }
    }

    /// Whether a fault at `addr` may map a huge PMD: an anonymous private VMA that the THP
    /// setting allows and that covers the whole aligned 2 MiB around `addr`.
    func thpEligible(_ vma: VMA, _ addr: VirtAddr) -> Bool {
        guard vma.isAnonymous, !vma.vmFlags.contains(.shared), thpModeAllows(vma.vmFlags) else { return false }
        let h = addr.rawValue & ~pmdMask
        return h >= vma.vmStart.rawValue && h &+ pmdSize <= vma.vmEnd.rawValue
    }

    /// The huge zero page: an order-9 KeyID-0 zeroed block, allocated once.
    func hugeZeroPage() -> PFN? {
        if let z = pgtable.hugeZeroPFN { return z }
        if pgtable.hugeZeroFailed { return nil }
        guard let pfn = allocator.allocPages(order: .pmd, keyid: .tme, node: nil,
                                             gfp: GFPFlags.transHugeLight.union(.zero)) else {
            pgtable.hugeZeroFailed = true
            return nil
        }
        allocator.setFlags(pfn, [.reserved, .zeroPage])
        pgtable.hugeZeroPFN = pfn
        pgtable.thpZeroPageAlloc &+= 1
        return pfn
    }

    @inlinable func isHugeZeroPFN(_ pfn: PFN) -> Bool { pgtable.hugeZeroPFN == pfn }

    /// mk_huge_pmd(page, vm_page_prot) for a fresh anonymous THP: young, dirty, writable if VM_WRITE.
    func mkAnonHugePMD(_ pfn: PFN, _ vma: VMA, keyid: KeyID) -> PTE {
        var f = vma.vmPageProt.flags.rawValue | PTEFlags.accessed.rawValue | PTEFlags.dirty.rawValue
        if vma.vmFlags.contains(.write) { f |= PTEFlags.rw.rawValue }
        return PTE(hugePFN: pfn, prot: PageProt(flags: PTEFlags(rawValue: f), keyid: keyid), layout: layout)
    }

    // MARK: faults

    /// do_huge_pmd_anonymous_page(): nil means fall back to 4 KiB pages.
    func doHugePMDAnonymousPage(_ mm: MM, _ vma: VMA, _ addr: VirtAddr, _ pmdSlot: Int, write: Bool) -> FaultResult? {
        let haddr = VirtAddr(addr.rawValue & ~pmdMask)
        // vmf_anon_prepare() runs before the read/write split: even a read gets an anon_vma.
        guard let anon = anonVMA(for: vma, in: mm) else { return .oom }
        let pt = mm.pageTable
        if !write && config.thpUseZeroPage {
            guard let hz = hugeZeroPage() else { return nil }
            // mk_zero_pmd(): never encrypted, read-only, special.
            var f = vma.vmPageProt.flags.rawValue & ~PTEFlags.rw.rawValue
            f |= PTEFlags.special.rawValue
            pt.set(pmdSlot, PTE(hugePFN: hz, prot: PageProt(flags: PTEFlags(rawValue: f), keyid: .tme), layout: layout))
            machine.clock.charge(.pteUpdate)
            return .ok
        }
        guard let pfn = allocAnonFolioPMD(vma, haddr, anon: anon) else { return nil }
        pt.set(pmdSlot, mkAnonHugePMD(pfn, vma, keyid: allocator.pageKeyID(pfn)))
        machine.clock.charge(.pteUpdate)
        return .ok
    }

    /// vma_alloc_anon_folio_pmd(): a zeroed order-9 anonymous folio with the VMA's KeyID and
    /// its rmap (mapcount 1), or nil (counted as a fallback). GFP_TRANSHUGE (direct
    /// compaction) for VM_HUGEPAGE VMAs, GFP_TRANSHUGE_LIGHT otherwise (defrag=madvise).
    func allocAnonFolioPMD(_ vma: VMA, _ haddr: VirtAddr, anon: UInt64) -> PFN? {
        var gfp = vma.vmFlags.contains(.hugePage) ? GFPFlags.transHuge : GFPFlags.transHugeLight
        gfp.insert(.zero)
        guard let pfn = allocator.allocPages(order: .pmd, keyid: userPageKeyID(vma), node: policyNode(vma, haddr, order: .pmd), gfp: gfp) else {
            pgtable.thpFaultFallback &+= 1
            return nil
        }
        allocator.setMapping(pfn, mapping: anon, index: vma.pageIndex(of: haddr))
        allocator.setFlags(pfn, [.anon, .swapBacked, .uptodate])
        allocator.incMapcount(pfn)
        pgtable.thpFaultAlloc &+= 1
        return pfn
    }

    /// A fault on an existing huge PMD. nil: the PMD was split, continue at the PTE level.
    func hugePMDFault(_ mm: MM, _ vma: VMA, _ addr: VirtAddr, _ pmdSlot: Int, write: Bool) -> FaultResult? {
        let pt = mm.pageTable
        let pmd = pt[pmdSlot]
        if pmd.isProtNone {
            pt.set(pmdSlot, pmd.modifiedHuge(vma.vmPageProt, layout: layout))
            machine.clock.charge(.pteUpdate)
            return .ok
        }
        if !write || pmd.isWritable {
            pt.setBits(pmdSlot, PTEFlags.accessed.rawValue | (write ? PTEFlags.dirty.rawValue : 0))
            return .ok
        }
        // do_huge_pmd_wp_page(): reuse an exclusive THP, otherwise split and COW 4 KiB pages.
        let head = pmd.hugePFN(layout)
        let haddr = VirtAddr(addr.rawValue & ~pmdMask)
        if isHugeZeroPFN(head), thpEligible(vma, addr), let anon = anonVMA(for: vma, in: mm),
           let pfn = allocAnonFolioPMD(vma, haddr, anon: anon) {
            // do_huge_zero_wp_pmd() (Linux 6.13+): the huge zero page is replaced by a THP.
            pt.set(pmdSlot, .none)
            flushTLBRange(mm, haddr, haddr.advanced(by: pmdSize))
            pt.set(pmdSlot, mkAnonHugePMD(pfn, vma, keyid: allocator.pageKeyID(pfn)))
            machine.clock.charge(.pteUpdate)
            return .ok
        }
        if !isHugeZeroPFN(head) && !pmd.isSpecial {
            let f = allocator.flags(head)
            if f.contains(.anon) && allocator.mapcount(head) == 1 && allocator.refcount(head) == 1 {
                pt.set(pmdSlot, PTE(raw: pmd.raw | PTEFlags([.rw, .dirty, .accessed]).rawValue))
                machine.clock.charge(.pteUpdate)
                return .ok
            }
        }
        splitHugePMD(mm, vma, pmdSlot: pmdSlot, haddr: haddr)
        return nil
    }

    // MARK: split

    /// split_huge_pmd(): if a huge PMD maps `address`, replaces it with 512 PTEs (called when
    /// a VMA boundary, mprotect or munmap cuts the huge page).
    public func splitHugePMD(_ mm: MM, _ vma: VMA, at address: VirtAddr) {
        let pt = mm.pageTable
        guard let ps = pt.pmdSlot(address), pt.raw(ps) & PTEFlags.pse.rawValue != 0 else { return }
        splitHugePMD(mm, vma, pmdSlot: ps, haddr: VirtAddr(address.rawValue & ~pmdMask))
    }

    /// __split_huge_pmd_locked() + the immediate folio split.
    func splitHugePMD(_ mm: MM, _ vma: VMA, pmdSlot: Int, haddr: VirtAddr) {
        let pt = mm.pageTable
        // docs/sources.md, seed 003: the 4 KiB entries take their encryption bits from the source PMD; the seeded
        // bug builds them from vm_page_prot (the huge zero PMD's entries too).
        let fromVMAProt = config.bugs.contains(.splitFromVMPageProt)   // seeded bug
        let pmd = pt[pmdSlot]
        let head = pmd.hugePFN(layout)
        pt.set(pmdSlot, .none)                     // pmdp_invalidate
        let base = pt.allocPTETable(under: pmdSlot) << 9
        if isHugeZeroPFN(head) {
            // __split_huge_zero_page_pmd(): 512 entries of the 4 KiB zero page.
            if let z = zeroPage() {
                var prot = vma.vmPageProt
                if pmd.isProtNone { prot = PageProt(flags: PTEFlags(rawValue: pmd.raw & ~(PTEFlags.pse.rawValue | layout.pfnMask | layout.encryptionMask))) }
                var e = PTE.zeroPage(z, prot: prot, layout: layout)
                if fromVMAProt { e = e.with(keyid: vma.keyid, layout: layout) }
                for i in 0..<hpagePMDNr { pt.set(base + i, e) }
            }
        } else {
            for i in 0..<hpagePMDNr {
                let e = fromVMAProt ? pmd.splitEntryFromVMAProt(index: i, vmPageProt: vma.vmPageProt, layout: layout)
                                    : pmd.splitEntry(index: i, vmPageProt: vma.vmPageProt, layout: layout)
                pt.set(base + i, e)
            }
            if !pmd.isSpecial && allocator.compoundOrder(head) == .pmd {
                let refs = allocator.refcount(head)
                allocator.splitPage(head)
                for i in 1..<hpagePMDNr {
                    let p = head.advanced(by: i)
                    allocator.incMapcount(p)
                    // Extra references stay on the head page only (gup_pin splits a huge
                    // PMD before pinning, so a pinned THP is not expected here).
                    if refs > 1 {
                        for _ in 1..<refs { allocator.putPage(p) }
                        allocator.clearFlags(p, .pinned)
                    }
                }
            }
        }
        machine.clock.charge(.pteUpdate, hpagePMDNr)
        pgtable.thpSplitPMD &+= 1
        flushTLBRange(mm, haddr, haddr.advanced(by: pmdSize))
    }

    // MARK: collapse

    /// khugepaged_scan(): one pass over every mm (pid order) collapsing each aligned 2 MiB of
    /// an eligible VMA that the khugepaged rules allow (max_ptes_none 511, max_ptes_shared
    /// 256, at least one referenced page, no swap/PROT_NONE entries, no pinned pages).
    /// Returns the number of huge pages made.
    @discardableResult
    public func khugepagedScan() -> Int {
        var made = 0
        for (_, mm) in distinctMMs {
            for vma in mm.allVMAs where vma.isAnonymous && !vma.vmFlags.contains(.shared) && thpModeAllows(vma.vmFlags) {
                var h = (vma.vmStart.rawValue &+ pmdMask) & ~pmdMask
                while h &+ pmdSize <= vma.vmEnd.rawValue {
                    if collapseRange(mm, vma, VirtAddr(h), khugepaged: true) == .succeed { made += 1 }
                    h &+= pmdSize
                }
            }
        }
        return made
    }

    /// MADV_COLLAPSE over [start, end) of one VMA (madvise_collapse): independent of the THP
    /// setting, no max_ptes_none / referenced limits. EINVAL for a VMA that cannot hold THPs,
    /// ENOMEM when no huge page could be allocated, EAGAIN for busy (pinned) pages.
    public func collapseHugePages(_ mm: MM, _ vma: VMA, _ start: VirtAddr, _ end: VirtAddr) -> Errno? {
        let f = vma.vmFlags
        guard vma.isAnonymous, !f.contains(.shared), !f.contains(.noHugePage), !f.contains(.hugeTLB),
              f.isDisjoint(with: .special) else { return .EINVAL }
        let hstart = (max(start, vma.vmStart).rawValue &+ pmdMask) & ~pmdMask
        let hend = min(end, vma.vmEnd).rawValue & ~pmdMask
        var h = hstart
        var last: CollapseResult = .succeed
        var thps: UInt64 = 0
        while h < hend {
            let r = collapseRange(mm, vma, VirtAddr(h), khugepaged: false)
            switch r {
            case .succeed, .pmdMapped: thps += 1
            case .pmdNull, .pteNonPresent, .lackReferencedPage, .pageCount, .pageNotAnon: last = r
            default: last = r; h = hend; continue
            }
            h &+= pmdSize
        }
        if hend <= hstart || thps == (hend - hstart) / pmdSize { return nil }
        switch last {
        case .allocHugePageFail: return .ENOMEM
        case .exceedNonePTE: return .EBUSY
        case .pageCount: return .EAGAIN
        default: return .EINVAL
        }
    }

    /// hpage_collapse_scan_pmd + collapse_huge_page for the 2 MiB at `haddr`.
    func collapseRange(_ mm: MM, _ vma: VMA, _ haddr: VirtAddr, khugepaged: Bool) -> CollapseResult {
        let pt = mm.pageTable
        // hpage_collapse_scan_pmd(): read the 512 entries (a read-only walk) before touching anything.
        var none = 0, shared = 0, referenced = 0
        var refused: CollapseResult? = nil
        PageWalk.walk(of: vma, in: mm, from: haddr, to: haddr.advanced(by: pmdSize), visit: .all,
                      hole: { _, _, _ in refused = .pmdNull; return .stop }) { w, _ in
            if w.isHuge { refused = .pmdMapped; return .stop }
            let e = w.pte
            if e.isNone || (e.isPresent && e.isSpecial && isZeroPFN(e.pfn(layout))) {
                none += 1
                if khugepaged && none > khugepagedMaxPtesNone { refused = .exceedNonePTE; return .stop }
                return .proceed
            }
            guard e.isPresent else { refused = .pteNonPresent; return .stop }
            guard !e.isSpecial else { refused = .pageNotAnon; return .stop }
            let page = e.pfn(layout)
            let f = allocator.flags(page)
            guard f.contains(.anon), !f.contains(.ksm), allocator.compoundHead(page) == page else { refused = .pageNotAnon; return .stop }
            let mc = allocator.mapcount(page)
            if mc > 1 {
                shared += 1
                if khugepaged && shared > khugepagedMaxPtesShared { refused = .exceedSharedPTE; return .stop }
            }
            if allocator.refcount(page) != mc || f.contains(.pinned) { refused = .pageCount; return .stop }
            if e.isAccessed || f.contains(.referenced) { referenced += 1 }
            return .proceed
        }
        if let refused { return refused }
        guard let ps = pt.pmdSlot(haddr) else { return .pmdNull }
        let base = pt.pteTableBase(pt.raw(ps))
        if khugepaged && referenced == 0 { return .lackReferencedPage }
        guard let anon = anonVMA(for: vma, in: mm) else { return .allocHugePageFail }
        // The series: allocate with KeyID 0, then prep_encrypted_page() with the VMA's KeyID.
        var gfp = GFPFlags.transHuge
        gfp.insert(.compound)
        guard let new = allocator.allocPages(order: .pmd, keyid: .tme, node: policyNode(vma, haddr, order: .pmd), gfp: gfp) else {
            return .allocHugePageFail
        }
        let keyid = userPageKeyID(vma)   // mktme/SME.swift: the VMA's KeyID (C-bit under SME)
        if !config.bugs.contains(.khugepagedSkipsPrep) {   // seeded bug
            allocator.prepEncryptedPage(new, order: .pmd, keyid: keyid, zero: false)
        }
        let newKeyID = allocator.pageKeyID(new)
        for i in 0..<hpagePMDNr {
            let e = pt[base + i]
            let dst = new.advanced(by: i)
            if e.isNone || e.isSpecial {
                machine.clearPage(dst, keyid: newKeyID)
            } else {
                machine.copyPage(from: e.pfn(layout), srcKeyID: e.keyid(layout), to: dst, dstKeyID: newKeyID)
            }
        }
        // Unmap the old PTEs, then install the PMD (pmdp_collapse_flush).
        let table = base >> 9
        for i in 0..<hpagePMDNr {
            let e = pt[base + i]
            pt.set(base + i, .none)
            if e.isPresent && !e.isSpecial {
                let page = e.pfn(layout)
                if e.isDirty { allocator.setFlags(page, .dirty) }
                allocator.decMapcount(page)
                allocator.putPage(page)
            }
        }
        pt.freeTable(table, parentSlot: ps)
        flushTLBRange(mm, haddr, haddr.advanced(by: pmdSize))
        allocator.setMapping(new, mapping: anon, index: vma.pageIndex(of: haddr))
        allocator.setFlags(new, [.anon, .swapBacked, .uptodate])
        allocator.incMapcount(new)
        pt.set(ps, mkAnonHugePMD(new, vma, keyid: newKeyID))
        machine.clock.charge(.pteUpdate)
        pgtable.thpCollapseAlloc &+= 1
        return .succeed
    }
}
