// PageWalk: the one read-only page-table walker (the idea of mm/pagewalk.c: walk_page_range()
// with a struct mm_walk_ops). Every read of an mm's entries over a range goes through it: the
// smaps accounting, migration and NUMA balancing, the KSM and khugepaged scans, reclaim's scan,
// and the invariant checker (KeyMMChecker), which sees only the decoded `PageWalkEntry`.
//
// A walk descends PGD → PUD → PMD → PTE over [start, end) (user addresses), skips tables with
// no entry, and reports, in address order:
//   - `entry(e, vma)` for each huge (2 MiB) PMD leaf and each PTE the `visit` filter lets
//     through (mapped: present or PROT_NONE; nonNone: also swap entries; all: also none PTEs
//     inside an existing PTE table);
//   - `hole(start, end, vma)` for each part of the range where no PTE table exists (a none
//     PGD/PUD/PMD entry: the kernel's pte_hole).
// A callback returns `.stop` to end the walk (the kernel's non-zero return). The VMA handed to
// a callback: the one walked (`walk(of:)`), the one covering the entry in a whole-mm walk
// (`walkAll`, ptdump-like: entries outside every VMA come with nil), or nil (`walk(in:)`).
//
// Invariants: nothing here changes the model (no entry, accessed/dirty bit, TLB, LRU or cost
// changes) — writers (zap, change_protection, copy_page_range, move_page_tables, collapse) keep
// their own loops, as in Linux; iteration is in ascending address order; a huge entry is
// reported once, at its 2 MiB-aligned address, even when the range starts inside it.
// Everything is @inlinable so a walk specializes into its caller (the checker runs one after
// every fuzz call).
import KeyMMBase

/// One entry a walk visits, decoded.
package struct PageWalkEntry {
    /// The entry itself (kernel code only; other modules read the decoded fields).
    @usableFromInline let pte: PTE
    @usableFromInline let layout: PTELayout
    /// The first address the entry maps: 4 KiB aligned, or 2 MiB aligned for a huge leaf.
    package let address: VirtAddr
    /// A huge (2 MiB) PMD leaf.
    package let isHuge: Bool

    @inlinable init(pte: PTE, layout: PTELayout, address: VirtAddr, isHuge: Bool) {
        self.pte = pte
        self.layout = layout
        self.address = address
        self.isHuge = isHuge
    }

    /// The frame mapped (the first frame of the 2 MiB block for a huge leaf).
    @inlinable package var pfn: PFN { isHuge ? pte.hugePFN(layout) : pte.pfn(layout) }
    /// The 4 KiB frame that maps `va` (an address inside the entry).
    @inlinable package func pfn(at va: VirtAddr) -> PFN {
        isHuge ? pte.hugePFN(layout).advanced(by: Int((va.rawValue & pmdMask) >> pageShift)) : pte.pfn(layout)
    }
    /// The KeyID (or SME C-bit as KeyID 1) in the entry's encryption bits.
    @inlinable package var keyid: KeyID { pte.keyid(layout) }
    /// Bytes mapped: 4 KiB, or 2 MiB for a huge leaf.
    @inlinable package var size: UInt64 { isHuge ? pmdSize : UInt64(pageSize) }
    /// 4 KiB pages mapped (1, or HPAGE_PMD_NR).
    @inlinable package var pages: Int { isHuge ? hpagePMDNr : 1 }
    /// One past the last address the entry maps.
    @inlinable package var end: VirtAddr { address.advanced(by: size) }
    @inlinable package var isNone: Bool { pte.isNone }
    @inlinable package var isPresent: Bool { pte.isPresent }
    /// Present or PROT_NONE: the entry holds a frame.
    @inlinable package var mapsFrame: Bool { pte.mapsFrame }
    @inlinable package var isSwap: Bool { pte.isSwap }
    /// A PTE marker (a guard region's), not a swap entry although it is encoded as one.
    @inlinable package var isMarker: Bool { pte.isMarker }
    /// A special entry (zero pages, raw PFNs): vm_normal_page() gives no struct page for it.
    @inlinable package var isSpecial: Bool { pte.isSpecial }
    @inlinable package var isWritable: Bool { pte.isWritable }
    @inlinable package var isDirty: Bool { pte.isDirty }
    @inlinable package var isAccessed: Bool { pte.isAccessed }
}

/// The walker (walk_page_range and friends).
package enum PageWalk {
    /// Which PTE-level entries reach the `entry` callback (huge leaves: any that maps a frame,
    /// or any non-none one under `.nonNone` / `.all`).
    package enum Visit: Sendable {
        /// Present or PROT_NONE entries (the usual read: what maps a frame).
        case mapped
        /// Every non-none entry (swap entries too).
        case nonNone
        /// Every entry of an existing PTE table, none entries included.
        case all
    }

    /// What a callback tells the walker.
    package enum Next: Sendable {
        case proceed
        case stop
    }

    /// The core walk over `[start, end)` of `mm`'s page table, with no VMA (callers pair
    /// entries with VMAs). Returns false if a callback stopped it.
    @inlinable @discardableResult
    package static func walkTables(_ mm: MM, _ start: VirtAddr, _ end: VirtAddr, visit: Visit,
                                   hole: (_ start: VirtAddr, _ end: VirtAddr) -> Next,
                                   entry: (PageWalkEntry) -> Next) -> Bool {
        let s = start.rawValue
        let e = min(end.rawValue, userAddressLimit &+ UInt64(pageSize))
        guard s < e else { return true }
        let pt = mm.pageTable
        let layout = pt.layout
        let pse = PTEFlags.pse.rawValue
        let pudSize: UInt64 = 1 << 30, pgdSize: UInt64 = 1 << 39
        var a = s
        while a < e {
            // PGD
            let gNext = min((a | (pgdSize - 1)) &+ 1, e)
            let ge = pt.storage[PageTable.pgdIndex(a)]
            if ge & 1 == 0 {
                if hole(VirtAddr(a), VirtAddr(gNext)) == .stop { return false }
                a = gNext
                continue
            }
            let pud = pt.child(ge) << 9
            while a < gNext {
                // PUD
                let uNext = min((a | (pudSize - 1)) &+ 1, gNext)
                let ue = pt.storage[pud | PageTable.pudIndex(a)]
                if ue & 1 == 0 {
                    if hole(VirtAddr(a), VirtAddr(uNext)) == .stop { return false }
                    a = uNext
                    continue
                }
                let pmdTable = pt.child(ue)
                if pt.used[pmdTable] == 0 {
                    if hole(VirtAddr(a), VirtAddr(uNext)) == .stop { return false }
                    a = uNext
                    continue
                }
                let pmdBase = pmdTable << 9
                while a < uNext {
                    // PMD
                    let mNext = min((a | pmdMask) &+ 1, uNext)
                    let me = pt.storage[pmdBase | PageTable.pmdIndex(a)]
                    if me & pse != 0 {
                        let leaf = PTE(raw: me)
                        if leaf.mapsFrame || visit != .mapped {
                            let w = PageWalkEntry(pte: leaf, layout: layout, address: VirtAddr(a & ~pmdMask), isHuge: true)
                            if entry(w) == .stop { return false }
                        }
                        a = mNext
                        continue
                    }
                    guard me & 1 != 0 else {
                        if hole(VirtAddr(a), VirtAddr(mNext)) == .stop { return false }
                        a = mNext
                        continue
                    }
                    let table = pt.child(me)
                    if pt.used[table] == 0 && visit != .all { a = mNext; continue }
                    let base = table << 9
                    // PTE
                    var v = a & ~UInt64(pageSize - 1)
                    while v < mNext {
                        let raw = pt.storage[base | PageTable.pteIndex(v)]
                        let leaf = PTE(raw: raw)
                        let wanted: Bool
                        switch visit {
                        case .mapped: wanted = leaf.mapsFrame
                        case .nonNone: wanted = raw != 0
                        case .all: wanted = true
                        }
                        if wanted {
                            if entry(PageWalkEntry(pte: leaf, layout: layout, address: VirtAddr(v), isHuge: false)) == .stop { return false }
                        }
                        v &+= UInt64(pageSize)
                    }
                    a = mNext
                }
            }
        }
        return true
    }

    /// walk_page_vma(): the entries of `vma` (or of `[start, end)` inside it), each with `vma`.
    @inlinable @discardableResult
    package static func walk(of vma: VMA, in mm: MM, from start: VirtAddr? = nil, to end: VirtAddr? = nil,
                             visit: Visit = .mapped,
                             hole: (_ start: VirtAddr, _ end: VirtAddr, _ vma: VMA) -> Next = { _, _, _ in .proceed },
                             entry: (PageWalkEntry, VMA) -> Next) -> Bool {
        let s = max(start ?? vma.vmStart, vma.vmStart), e = min(end ?? vma.vmEnd, vma.vmEnd)
        return walkTables(mm, s, e, visit: visit, hole: { hole($0, $1, vma) }, entry: { entry($0, vma) })
    }

    /// The entries of `vma` (or of `[start, end)` inside it) that `visit` selects, in address order.
    @inlinable
    package static func forEachEntry(of vma: VMA, in mm: MM, from start: VirtAddr? = nil, to end: VirtAddr? = nil,
                                     visit: Visit = .mapped, _ body: (PageWalkEntry) -> Void) {
        walk(of: vma, in: mm, from: start, to: end, visit: visit) { e, _ in body(e); return .proceed }
    }

    /// The mapped entries of `[start, end)` of `mm`, whatever VMA covers them (walk_page_range_novma).
    @inlinable
    package static func forEachEntry(in mm: MM, from start: VirtAddr, to end: VirtAddr, _ body: (PageWalkEntry) -> Void) {
        walkTables(mm, start, end, visit: .mapped, hole: { _, _ in .proceed }) { e in body(e); return .proceed }
    }

    /// Every mapped entry of `mm`'s user address space with the VMA that covers its first
    /// address (nil: no VMA does — a stray entry), as ptdump walks. `vmas` are `mm`'s VMAs in
    /// address order (`mm.allVMAs`; passed in because callers usually hold them already).
    @inlinable
    package static func forEachEntry(in mm: MM, vmas: [VMA], _ body: (PageWalkEntry, VMA?) -> Void) {
        var cursor = 0
        walkTables(mm, VirtAddr(0), VirtAddr(userAddressLimit &+ UInt64(pageSize)), visit: .mapped,
                   hole: { _, _ in .proceed }) { e in
            let va = e.address.rawValue
            while cursor < vmas.count && vmas[cursor].vmEnd.rawValue <= va { cursor += 1 }
            body(e, cursor < vmas.count && vmas[cursor].vmStart.rawValue <= va ? vmas[cursor] : nil)
            return .proceed
        }
    }

    /// follow_page's lookup: the non-none entry (a PTE, or the huge PMD leaf) that covers `va`.
    @inlinable
    package static func entry(in mm: MM, at va: VirtAddr) -> PageWalkEntry? {
        let pt = mm.pageTable
        switch pt.walk(va) {
        case .none:
            return nil
        case .huge(let ps):
            let e = pt[ps]
            return PageWalkEntry(pte: e, layout: pt.layout, address: VirtAddr(va.rawValue & ~pmdMask), isHuge: true)
        case .pte(_, let slot):
            let e = pt[slot]
            guard !e.isNone else { return nil }
            return PageWalkEntry(pte: e, layout: pt.layout, address: va.pageDown, isHuge: false)
        }
    }
}
