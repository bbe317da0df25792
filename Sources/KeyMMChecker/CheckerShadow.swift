// CheckerShadow: what the invariant checker remembers of the model between calls — every mapped
// entry of every live mm (decoded), the census derived from them (entries and special entries
// per frame, a reverse map frame -> entries), each frame's allocation state and page_keyid, the
// KeyID page counts, the references held outside page tables (pins, page cache) and each mm's
// VMA layout — so that after a call it can re-check only what the call touched
// (KeyMMHardware/TouchLog.swift, docs/invariants.md "Incremental checking").
//
// Two ways to bring it up to date: `rebuild()` walks everything (the full sweep); `apply(log)`
// replays the touch log (re-reads the entries in the touched VA ranges, the touched frames' struct
// pages, the references if they changed) and collects what must be re-checked: entries whose
// entry, frame or VMA changed (`recheck`), frames whose accounting inputs changed
// (`accountingFrames`), frames whose cache lines may now be stale (`cacheFrames`), zero-page lines
// (`zeroLines`) and VMA ranges (`layoutRanges`).
//
// Invariants: after either update the shadow equals what a full walk of the model gives (the full
// sweep checks this: `InvariantChecker.shadowMismatches`); nothing here changes the model; the
// census counts exactly what the full sweep counts (zero-page entries not at all, special
// entries as exempt frames, a huge entry on its first frame).
import KeyMMBase
import KeyMMHardware
import KeyMMKernel

/// A mapped entry as the shadow keeps it: decoded fields packed in one word (0: nothing mapped).
enum ShadowEntry {
    static let valid: UInt64 = 1 << 63
    /// vm_normal_page() gives no struct page (zero pages, raw PFNs).
    static let special: UInt64 = 1 << 62
    /// The zero page or the huge zero page (and its frames).
    static let zero: UInt64 = 1 << 61
    static let keyidShift: UInt64 = 40
    static let pfnMask: UInt64 = (1 << 40) - 1
}

/// One mm as the checker last saw it.
struct MMShadow {
    var mm: MM?
    /// The touch-log owner id of its page table and VMA tree (0: none).
    var owner: UInt32
    /// The lowest pid using it (what reports name).
    var pid: ProcessID
    /// 2 MiB region (VA >> 21) -> block of `CheckerShadow.blocks` (512 PTEs, then the huge entry).
    var regions: [UInt64: Int32] = [:]
    /// Its VMAs in address order (range, KeyID, normal), as of the last layout check.
    var layout: [VMAKeyRange] = []
}

/// An entry of one mm slot: its VA | 1 for a huge entry.
struct FarEntry: Hashable {
    var slot: Int32
    var tag: UInt64
}

/// A set of frames (each once, in insertion order) for one call's work lists.
struct FrameSet {
    private var bits: FrameBitmap
    private(set) var list: [UInt64] = []
    init(frames: Int) { bits = FrameBitmap(frames: frames) }
    mutating func insert(_ f: UInt64) {
        guard !bits.contains(f) else { return }
        bits.insert(f)
        list.append(f)
    }
    mutating func removeAll() {
        for f in list { bits.remove(f) }
        list.removeAll(keepingCapacity: true)
    }
}

/// The checker's memory of the model (see the file comment).
final class CheckerShadow {
    let kernel: Kernel
    let frameCount: Int
    static let regionWords = 513
    static let hugeSlot = 512

    // The mms.
    var mms: [MMShadow] = []
    var freeSlots: [Int] = []
    var slotOfMM: [ObjectIdentifier: Int] = [:]
    var slotOfOwner: [UInt32: Int] = [:]
    /// Live slots in pid order (the order the full sweep visits mms).
    var order: [Int] = []
    /// pid -> mm identity, as last seen (to notice fork, exit, execve cheaply).
    var taskMMs: [ProcessID: ObjectIdentifier] = [:]

    // Entries: blocks of 513 words.
    var blocks: [UInt64] = []
    var blockUsed: [Int32] = []
    var freeBlocks: [Int32] = []

    // The census.
    /// Entries mapping each frame (not zero pages, not special entries; a huge entry on its first frame).
    var uses: [Int32]
    /// Special entries (raw PFNs other than the zero pages) covering each frame: exempt frames.
    var special: [Int32]
    /// Entries mapping frames beyond memory.
    var farUses: [UInt64: Int32] = [:]
    /// Special entries mapping frames beyond the OS's memory (the EPC, whose pages SGXChecks.swift
    /// checks against the driver after every call): (slot, VA | 1 for a huge entry) -> PFN.
    var farSpecial: [FarEntry: UInt64] = [:]
    /// Reverse map: per frame, a list of (mm slot, VA | 1 for a huge entry) nodes.
    var rmapHead: [Int32]
    var nodeSlot: [Int32] = []
    var nodeVA: [UInt64] = []
    var nodeNext: [Int32] = []
    var freeNodes: [Int32] = []

    // Frames.
    /// Per frame: allocated (bit 31), PG_ksm (bit 30), page_keyid (low 16 bits).
    var frameState: [UInt32]
    var allocated: FrameBitmap
    /// Allocated 4 KiB frames per page_keyid, VMAs per KeyID (non-zero KeyIDs, distinct mms).
    var pagesPerKeyID: [Int]
    var vmasPerKeyID: [Int]
    /// References held outside page tables: gup pins and the page cache, per frame.
    var extra: [UInt64: Int] = [:]
    /// The zero pages the census was built with (a change forces a rebuild).
    var zero: PFN?
    var hugeZero: PFN?
    /// Whether the shadow describes the model at all (false until the first rebuild).
    var built = false

    // One call's work lists (filled by apply/rebuild, consumed by the checks).
    var recheck: [(slot: Int32, va: UInt64)] = []
    var accountingFrames: FrameSet
    var cacheFrames: FrameSet
    var zeroLines: [UInt64] = []
    /// Zero-page lines written back to DRAM during the call (their DRAM is re-examined).
    var zeroWrittenBack: [UInt64] = []
    /// Zero-page lines whose DRAM does not decrypt to zeros through KeyID 0: evicting their
    /// cached KeyID-0 copy changes what the zero page reads as.
    var zeroSuspect: Set<UInt64> = []
    /// VA ranges whose VMAs changed (owner = mm slot), for the layout check.
    var layoutRanges: [TouchRange] = []
    /// Slots whose every entry must be re-checked (new mm, or its reporting pid changed).
    var wholeSlots: [Int] = []
    /// The set of live mms (or a task's mm) changed during the call.
    var mmsChanged = false
    /// The kernel's `taskSetVersion` when the mms were last synced.
    var taskSetVersion: UInt64 = .max
    /// Frames whose last cache check found a stale line (an eviction may reveal another).
    var staleFrames: Set<UInt64> = []

    static let allocatedBit: UInt32 = 1 << 31
    static let ksmBit: UInt32 = 1 << 30

    init(kernel: Kernel) {
        self.kernel = kernel
        frameCount = kernel.machine.frameCount
        uses = [Int32](repeating: 0, count: frameCount)
        special = [Int32](repeating: 0, count: frameCount)
        rmapHead = [Int32](repeating: -1, count: frameCount)
        frameState = [UInt32](repeating: 0, count: frameCount)
        allocated = FrameBitmap(frames: frameCount)
        let keyids = Int(kernel.machine.config.maxKeyID) + 1
        pagesPerKeyID = [Int](repeating: 0, count: keyids)
        vmasPerKeyID = [Int](repeating: 0, count: keyids)
        accountingFrames = FrameSet(frames: frameCount)
        cacheFrames = FrameSet(frames: frameCount)
    }

    /// Forgets one call's work lists.
    func clearWork() {
        recheck.removeAll(keepingCapacity: true)
        accountingFrames.removeAll()
        cacheFrames.removeAll()
        zeroLines.removeAll(keepingCapacity: true)
        zeroWrittenBack.removeAll(keepingCapacity: true)
        layoutRanges.removeAll(keepingCapacity: true)
        wholeSlots.removeAll(keepingCapacity: true)
        mmsChanged = false
    }

    // MARK: classification

    /// The shadow word of an entry as the walker decodes it.
    func code(_ e: PageWalkEntry) -> UInt64 {
        let pfn = e.pfn
        var c = ShadowEntry.valid | (UInt64(e.keyid.rawValue) << ShadowEntry.keyidShift) | (pfn.rawValue & ShadowEntry.pfnMask)
        if isZeroFrame(pfn, huge: e.isHuge) { c |= ShadowEntry.zero }
        if e.isSpecial { c |= ShadowEntry.special }
        return c
    }

    /// Whether an entry maps a zero page (the same rule as the full sweep's).
    func isZeroFrame(_ pfn: PFN, huge: Bool) -> Bool {
        let z = kernel.pgtable.zeroPFN, hz = kernel.pgtable.hugeZeroPFN
        if huge { return pfn == hz }
        return pfn == z || (hz.map { pfn >= $0 && pfn.rawValue < $0.rawValue &+ UInt64(hpagePMDNr) } ?? false)
    }

    /// Whether a frame is mapped by a special entry (exempt from the KeyID and cache rules).
    @inline(__always) func isExempt(_ f: UInt64) -> Bool { f < UInt64(frameCount) && special[Int(f)] > 0 }

    /// Whether a frame belongs to a zero page.
    func inZeroPage(_ f: UInt64) -> Bool {
        if let z = zero, z.rawValue == f { return true }
        if let hz = hugeZero, f >= hz.rawValue && f < hz.rawValue &+ UInt64(hpagePMDNr) { return true }
        return false
    }

    /// The state the entry, accounting and cache rules read from a frame's struct page: 0 for a
    /// frame that is not allocated (no rule reads a free frame's page_keyid or flags).
    func liveFrameState(_ f: UInt64) -> UInt32 {
        guard allocatedBlock(containing: f) != nil else { return 0 }
        let alloc = kernel.allocator
        let pfn = PFN(f)
        var s = UInt32(alloc.pageKeyID(pfn).rawValue) | CheckerShadow.allocatedBit
        if alloc.flags(pfn).contains(.ksm) { s |= CheckerShadow.ksmBit }
        return s
    }

    /// The allocated block holding frame `f` (head, order), found from its aligned heads.
    func allocatedBlock(containing f: UInt64) -> (head: UInt64, order: PageOrder)? {
        let alloc = kernel.allocator
        for o in 0...UInt64(maxPageOrder) {
            let h = f & ~((UInt64(1) << o) - 1)
            if let order = alloc.allocationOrder(PFN(h)), f - h < UInt64(order.pages) { return (h, order) }
        }
        return nil
    }

    // MARK: entries and census

    @inline(__always) func slotWord(_ block: Int32, _ i: Int) -> Int { Int(block) * CheckerShadow.regionWords + i }

    /// The shadow word at `va` (a huge entry at its 2 MiB address) of an mm slot.
    func entryCode(_ slot: Int, _ va: UInt64, huge: Bool) -> UInt64 {
        guard let b = mms[slot].regions[va >> 21] else { return 0 }
        return blocks[slotWord(b, huge ? CheckerShadow.hugeSlot : Int((va >> 12) & 511))]
    }

    /// Stores a shadow word (allocating or freeing the region's block) and updates the census.
    func store(_ slot: Int, _ va: UInt64, huge: Bool, _ new: UInt64) {
        let key = va >> 21
        var block = mms[slot].regions[key]
        let i = huge ? CheckerShadow.hugeSlot : Int((va >> 12) & 511)
        let old = block.map { blocks[slotWord($0, i)] } ?? 0
        guard old != new else { return }
        if block == nil {
            let b: Int32
            if let f = freeBlocks.popLast() { b = f } else {
                b = Int32(blockUsed.count)
                blocks.append(contentsOf: repeatElement(0, count: CheckerShadow.regionWords))
                blockUsed.append(0)
            }
            mms[slot].regions[key] = b
            block = b
        }
        let b = block!
        blocks[slotWord(b, i)] = new
        if old == 0 { blockUsed[Int(b)] += 1 }
        if new == 0 {
            blockUsed[Int(b)] -= 1
            if blockUsed[Int(b)] == 0 {
                mms[slot].regions[key] = nil
                freeBlocks.append(b)
            }
        }
        if old != 0 { census(slot, va, huge: huge, old, add: false) }
        if new != 0 { census(slot, va, huge: huge, new, add: true) }
    }

    /// Counts (or uncounts) one entry in the census; marks the frames whose inputs changed.
    func census(_ slot: Int, _ va: UInt64, huge: Bool, _ c: UInt64, add: Bool) {
        if c & ShadowEntry.zero != 0 { return }
        let pfn = c & ShadowEntry.pfnMask
        let d: Int32 = add ? 1 : -1
        if c & ShadowEntry.special != 0 {
            if pfn >= UInt64(frameCount) {
                let key = FarEntry(slot: Int32(slot), tag: va | (huge ? 1 : 0))
                if add { farSpecial[key] = pfn } else { farSpecial[key] = nil }
                return
            }
            for i in 0..<UInt64(huge ? hpagePMDNr : 1) {
                let f = pfn &+ i
                guard f < UInt64(frameCount) else { break }
                let before = special[Int(f)]
                special[Int(f)] = before + d
                if (before == 0) != (before + d == 0) { cacheFrames.insert(f) }
            }
            return
        }
        guard pfn < UInt64(frameCount) else {
            let n = (farUses[pfn] ?? 0) + d
            farUses[pfn] = n == 0 ? nil : n
            return
        }
        uses[Int(pfn)] += d
        accountingFrames.insert(pfn)
        let tag = va | (huge ? 1 : 0)
        if add {
            let n: Int32
            if let f = freeNodes.popLast() { n = f } else {
                n = Int32(nodeSlot.count)
                nodeSlot.append(0); nodeVA.append(0); nodeNext.append(-1)
            }
            nodeSlot[Int(n)] = Int32(slot)
            nodeVA[Int(n)] = tag
            nodeNext[Int(n)] = rmapHead[Int(pfn)]
            rmapHead[Int(pfn)] = n
        } else {
            var prev: Int32 = -1
            var n = rmapHead[Int(pfn)]
            while n >= 0 {
                if nodeSlot[Int(n)] == Int32(slot) && nodeVA[Int(n)] == tag {
                    if prev < 0 { rmapHead[Int(pfn)] = nodeNext[Int(n)] } else { nodeNext[Int(prev)] = nodeNext[Int(n)] }
                    freeNodes.append(n)
                    break
                }
                prev = n
                n = nodeNext[Int(n)]
            }
        }
    }

    /// The entries mapping frame `f` (huge entries at their 2 MiB address), as (slot, VA, huge).
    func mappers(of f: UInt64) -> [(slot: Int, va: UInt64, huge: Bool)] {
        guard f < UInt64(frameCount) else { return [] }
        var out: [(slot: Int, va: UInt64, huge: Bool)] = []
        var n = rmapHead[Int(f)]
        while n >= 0 {
            out.append((Int(nodeSlot[Int(n)]), nodeVA[Int(n)] & ~1, nodeVA[Int(n)] & 1 != 0))
            n = nodeNext[Int(n)]
        }
        return out
    }

    /// The first mapper in the full sweep's order (pid, then VA): what reports name.
    func firstMapper(of f: UInt64) -> (pid: ProcessID, va: UInt64)? {
        var best: (pid: ProcessID, va: UInt64)?
        for m in mappers(of: f) {
            let p = mms[m.slot].pid
            if best == nil || p < best!.pid || (p == best!.pid && m.va < best!.va) { best = (p, m.va) }
        }
        return best
    }

    /// Re-reads `[start, end)` of an mm slot's page table into the shadow; entries that changed
    /// (and are still mapped) go on the re-check list.
    func refresh(_ slot: Int, _ start: UInt64, _ end: UInt64) {
        guard let mm = mms[slot].mm else { return }
        let s = start & ~UInt64(pageSize - 1)
        // The shadow's entries in the range, in walk order (VA; a huge entry before the PTEs of
        // its region): each is either seen again by the walk or removed.
        let old = entries(slot, s, end)
        var i = 0
        PageWalk.forEachEntry(in: mm, from: VirtAddr(s), to: VirtAddr(end)) { e in
            let va = e.address.rawValue
            let key = va << 1 | (e.isHuge ? 0 : 1)
            while i < old.count && old[i] < key {
                store(slot, old[i] >> 1, huge: old[i] & 1 == 0, 0)
                i += 1
            }
            if i < old.count && old[i] == key { i += 1 }
            let c = code(e)
            if entryCode(slot, va, huge: e.isHuge) != c {
                store(slot, va, huge: e.isHuge, c)
                recheck.append((Int32(slot), va))
            }
        }
        while i < old.count {
            store(slot, old[i] >> 1, huge: old[i] & 1 == 0, 0)
            i += 1
        }
    }

    /// The shadow's mapped entries of a slot inside `[s, e)` as sorted keys VA << 1 | (0 huge, 1 PTE).
    func entries(_ slot: Int, _ s: UInt64, _ e: UInt64) -> [UInt64] {
        var out: [UInt64] = []
        let firstRegion = s >> 21, lastRegion = (e &- 1) >> 21
        var regions: [(UInt64, Int32)] = []
        if lastRegion &- firstRegion < UInt64(mms[slot].regions.count) {
            var r = firstRegion
            while r <= lastRegion {
                if let b = mms[slot].regions[r] { regions.append((r, b)) }
                r &+= 1
            }
        } else {
            for (r, b) in mms[slot].regions where r >= firstRegion && r <= lastRegion { regions.append((r, b)) }
            regions.sort { $0.0 < $1.0 }
        }
        for (r, b) in regions {
            let base = r << 21
            if blocks[slotWord(b, CheckerShadow.hugeSlot)] != 0 && base < e && base &+ pmdSize > s { out.append(base << 1) }
            let lo = max(s, base), hi = min(e, base &+ pmdSize)
            guard lo < hi else { continue }
            var i = Int((lo - base) >> 12)
            let last = Int((hi &- 1 &- base) >> 12)
            while i <= last {
                if blocks[slotWord(b, i)] != 0 { out.append((base &+ UInt64(i) << 12) << 1 | 1) }
                i += 1
            }
        }
        return out
    }

    /// Removes every entry of a slot from the shadow.
    func dropEntries(_ slot: Int) {
        for k in entries(slot, 0, userAddressLimit &+ UInt64(pageSize)) { store(slot, k >> 1, huge: k & 1 == 0, 0) }
    }

    /// The entries that map EPC pages, in the full sweep's order (pid, then address), with the
    /// VMA covering each (what SGXChecks.swift checks against the driver).
    func epcLeaves() -> [EPCLeaf] {
        guard !farSpecial.isEmpty, let unit = kernel.machine.sgx else { return [] }
        var out: [EPCLeaf] = []
        for (key, pfn) in farSpecial {
            let slot = Int(key.slot)
            guard let mm = mms[slot].mm, let page = unit.page(of: PFN(pfn)) else { continue }
            let va = VirtAddr(key.tag & ~1)
            out.append(EPCLeaf(pid: mms[slot].pid, va: va, page: page, vma: mm.vma(containing: va)))
        }
        out.sort { $0.pid != $1.pid ? $0.pid < $1.pid : $0.va < $1.va }
        return out
    }

    // MARK: frames

    /// Re-reads a frame's struct page; returns the old state if the entry rules' inputs changed.
    @discardableResult
    func refreshFrame(_ f: UInt64) -> Bool {
        guard f < UInt64(frameCount) else { return false }
        let old = frameState[Int(f)]
        let new = liveFrameState(f)
        accountingFrames.insert(f)
        guard old != new else { return false }
        frameState[Int(f)] = new
        let wasAlloc = old & CheckerShadow.allocatedBit != 0, isAlloc = new & CheckerShadow.allocatedBit != 0
        if wasAlloc { allocated.remove(f) }
        if isAlloc { allocated.insert(f) }
        if wasAlloc, Int(old & 0xFFFF) < pagesPerKeyID.count { pagesPerKeyID[Int(old & 0xFFFF)] -= 1 }
        if isAlloc, Int(new & 0xFFFF) < pagesPerKeyID.count { pagesPerKeyID[Int(new & 0xFFFF)] += 1 }
        cacheFrames.insert(f)
        return true
    }

    /// The references pins and the page cache hold, per frame (what the full sweep counts).
    func liveExtra() -> [UInt64: Int] {
        var extra: [UInt64: Int] = [:]
        for h in kernel.mktme.pinHandles {
            for f in kernel.mktme.pinnedFrames(handle: h) ?? [] { extra[f.rawValue, default: 0] += 1 }
        }
        for space in kernel.pageCache.allMappings {
            for f in space.pages.values { extra[f.rawValue, default: 0] += 1 }
        }
        return extra
    }

    // MARK: mms

    /// Brings the mm slots in line with the live tasks: new mms get a slot (their entries read
    /// and all re-checked), dead ones are dropped (their entries uncounted), a changed lowest
    /// pid re-checks the mm's entries. Cheap when nothing changed (one look per task).
    func syncMMs() {
        guard kernel.taskSetVersion != taskSetVersion else { return }
        taskSetVersion = kernel.taskSetVersion
        let tasks = kernel.tasks
        var same = tasks.count == taskMMs.count
        if same {
            for (pid, t) in tasks where taskMMs[pid] != ObjectIdentifier(t.mm) { same = false; break }
        }
        guard !same else { return }
        mmsChanged = true
        taskMMs = [:]
        var live: [(pid: ProcessID, mm: MM)] = []
        var seen = Set<ObjectIdentifier>()
        for pid in tasks.keys.sorted() {
            guard let t = tasks[pid] else { continue }
            taskMMs[pid] = ObjectIdentifier(t.mm)
            if seen.insert(ObjectIdentifier(t.mm)).inserted { live.append((pid, t.mm)) }
        }
        // Dead mms.
        for slot in order where !seen.contains(ObjectIdentifier(mms[slot].mm!)) {
            if built { dropEntries(slot) }
            for v in mms[slot].layout where v.keyid != 0 && Int(v.keyid) < vmasPerKeyID.count { vmasPerKeyID[Int(v.keyid)] -= 1 }
            slotOfMM[ObjectIdentifier(mms[slot].mm!)] = nil
            if mms[slot].owner != 0 { slotOfOwner[mms[slot].owner] = nil }
            mms[slot] = MMShadow(mm: nil, owner: 0, pid: ProcessID(0))
            freeSlots.append(slot)
        }
        order = []
        for (pid, mm) in live {
            if let slot = slotOfMM[ObjectIdentifier(mm)] {
                if mms[slot].pid != pid { mms[slot].pid = pid; wholeSlots.append(slot) }
                order.append(slot)
                continue
            }
            let shadow = MMShadow(mm: mm, owner: mm.touchID, pid: pid)
            let slot: Int
            if let s = freeSlots.popLast() { slot = s; mms[s] = shadow } else { slot = mms.count; mms.append(shadow) }
            slotOfMM[ObjectIdentifier(mm)] = slot
            if mm.touchID != 0 { slotOfOwner[mm.touchID] = slot }
            order.append(slot)
            // A new mm: its layout is what it is now (nothing to compare with), its entries are read.
            mms[slot].layout = CheckerShadow.layout(of: mm)
            for v in mms[slot].layout where v.keyid != 0 && Int(v.keyid) < vmasPerKeyID.count { vmasPerKeyID[Int(v.keyid)] += 1 }
            if built { refresh(slot, 0, userAddressLimit &+ UInt64(pageSize)); wholeSlots.append(slot) }
        }
    }

    /// An mm's VMAs as the layout check compares them.
    static func layout(of mm: MM) -> [VMAKeyRange] {
        var out: [VMAKeyRange] = []
        out.reserveCapacity(mm.mapCount)
        for v in mm.vmas { out.append(VMAKeyRange(v)) }
        return out
    }

    // MARK: the two updates

    /// Rebuilds everything from the model (the full sweep). Returns the work done (entries +
    /// frames) for the adaptive schedule.
    func rebuild() -> Int {
        syncMMs()
        var work = 0
        // Entries.
        for slot in order { mms[slot].regions = [:] }
        blocks.removeAll(keepingCapacity: true)
        blockUsed.removeAll(keepingCapacity: true)
        freeBlocks.removeAll(keepingCapacity: true)
        uses = [Int32](repeating: 0, count: frameCount)
        special = [Int32](repeating: 0, count: frameCount)
        rmapHead = [Int32](repeating: -1, count: frameCount)
        frameState = [UInt32](repeating: 0, count: frameCount)
        farUses = [:]
        farSpecial = [:]
        nodeSlot.removeAll(keepingCapacity: true); nodeVA.removeAll(keepingCapacity: true)
        nodeNext.removeAll(keepingCapacity: true); freeNodes.removeAll(keepingCapacity: true)
        zero = kernel.pgtable.zeroPFN
        hugeZero = kernel.pgtable.hugeZeroPFN
        for slot in order {
            guard let mm = mms[slot].mm else { continue }
            PageWalk.forEachEntry(in: mm, from: VirtAddr(0), to: VirtAddr(userAddressLimit &+ UInt64(pageSize))) { e in
                store(slot, e.address.rawValue, huge: e.isHuge, code(e))
                work += 1
            }
        }
        // Frames.
        allocated.clear()
        for k in pagesPerKeyID.indices { pagesPerKeyID[k] = 0 }
        let alloc = kernel.allocator
        alloc.forEachAllocatedBlock { head, order in
            for i in 0..<order.pages {
                let f = head.rawValue &+ UInt64(i)
                guard f < UInt64(frameCount) else { break }
                allocated.insert(f)
                var s = UInt32(alloc.pageKeyID(PFN(f)).rawValue) | CheckerShadow.allocatedBit
                if alloc.flags(PFN(f)).contains(.ksm) { s |= CheckerShadow.ksmBit }
                frameState[Int(f)] = s
                if Int(s & 0xFFFF) < pagesPerKeyID.count { pagesPerKeyID[Int(s & 0xFFFF)] += 1 }
            }
            work += order.pages
        }
        extra = liveExtra()
        built = true
        return work
    }

    /// Replays the touch log; fills the work lists. Returns false when only a rebuild can bring
    /// the shadow up to date (the zero pages moved).
    func apply(_ log: TouchLog) -> Bool {
        guard built else { return false }
        let z = kernel.pgtable.zeroPFN, hz = kernel.pgtable.hugeZeroPFN
        // Zero pages made during the call: their zeroing is their creation, not a store to a zero
        // page (the full sweep, which has no log of stores, does not see it either).
        var appeared: [Range<UInt64>] = []
        if z != zero || hz != hugeZero {
            // A zero page appearing for the first time: only entries mapping its frames change
            // class (none older than this call, as the frames were just allocated). A zero page
            // that moves would change the class of entries the shadow cannot find: rebuild.
            guard zero == nil || z == zero, hugeZero == nil || hz == hugeZero else { return false }
            if zero == nil, let z { appeared.append(z.rawValue..<z.rawValue &+ 1) }
            if hugeZero == nil, let hz { appeared.append(hz.rawValue..<hz.rawValue &+ UInt64(hpagePMDNr)) }
            zero = z
            hugeZero = hz
            var frames: [UInt64] = []
            if let z { frames.append(z.rawValue) }
            if let hz { frames.append(contentsOf: (0..<UInt64(hpagePMDNr)).map { hz.rawValue &+ $0 }) }
            for f in frames where f < UInt64(frameCount) && uses[Int(f)] > 0 {
                for m in mappers(of: f) { refresh(m.slot, m.va, m.va &+ (m.huge ? pmdSize : UInt64(pageSize))) }
            }
        }
        syncMMs()
        // Entries.
        for r in log.entries {
            guard let slot = slotOfOwner[r.owner], mms[slot].mm != nil else { continue }
            refresh(slot, r.start, r.end)
        }
        // Frames.
        for f32 in log.frames {
            let f = UInt64(f32)
            let old = frameState[Int(f)]
            guard refreshFrame(f) else { continue }
            // The entry rules read page_keyid, PG_ksm and allocation: re-check the entries that map
            // the frame, and the huge entries whose subpage it is.
            _ = old
            if uses[Int(f)] > 0 { for m in mappers(of: f) { recheck.append((Int32(m.slot), m.va)) } }
            do {
                let head = f & ~UInt64(hpagePMDNr - 1)
                if head != f && uses[Int(head)] > 0 {
                    for m in mappers(of: head) where m.huge { recheck.append((Int32(m.slot), m.va)) }
                }
            }
        }
        // References outside page tables.
        if log.referencesChanged {
            let now = liveExtra()
            for (f, n) in now where extra[f] != n { accountingFrames.insert(f) }
            for (f, _) in extra where now[f] == nil { accountingFrames.insert(f) }
            extra = now
        }
        // VMA ranges, per slot.
        for r in log.vmas {
            guard let slot = slotOfOwner[r.owner], mms[slot].mm != nil else { continue }
            layoutRanges.append(TouchRange(owner: UInt32(slot), start: r.start, end: r.end))
        }
        // CPU accesses: lines of a frame used through a KeyID other than its page_keyid may be
        // stale; writes to the zero pages may change what they read as.
        for a in log.accesses {
            var f = a.firstLine >> 6
            let lastFrame = (a.firstLine &+ UInt64(a.lines) &- 1) >> 6
            while f <= lastFrame {
                if f < UInt64(frameCount) && UInt16(truncatingIfNeeded: frameState[Int(f)]) != a.keyid { cacheFrames.insert(f) }
                if a.write && inZeroPage(f) && !appeared.contains(where: { $0.contains(f) }) {
                    let lo = max(a.firstLine, f << 6), hi = min(a.firstLine &+ UInt64(a.lines), (f &+ 1) << 6)
                    for l in lo..<hi { zeroLines.append(l) }
                }
                f &+= 1
            }
        }
        return true
    }
}
