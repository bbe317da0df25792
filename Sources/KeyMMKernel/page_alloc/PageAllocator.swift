// PageAllocator: alloc_pages()/free_pages() over the buddy allocator, with the MKTME KeyID
// handling of the selected policy (EncryptedPages.swift), struct page accessors, page
// poisoning (PagePoisoning.swift), compaction and migration (Compaction.swift) and the
// consistency checker (PageAllocVerify.swift).
//
// Invariants: every frame is in exactly one of: a free block (list or virtual tail), an
// allocated block (its head has PageState.allocated and the allocation order), a compaction
// target isolated from the lists, or a leaked hardware-poisoned block. Under every policy but
// `none`, each 4 KiB page with a non-zero KeyID that is allocated holds exactly one KeyID
// reference. Bad calls (invalid PFN, double free, ...) never crash: they are recorded in
// `anomalies` (and reported by verify()) and the call does nothing.
import KeyMMBase
import KeyMMHardware
import KeyMMKeys

/// The page allocator (mm/page_alloc.c) with MKTME's KeyID-aware preparation of pages.
public final class PageAllocator {
    /// The hardware: flushes, zeroing and copies go through it, and its clock is charged.
    public let machine: Machine
    /// The KeyID flush policy.
    public let policy: AllocatorPolicy
    /// The per-KeyID reference counts (nil: not tracked).
    public let keyidRefs: KeyIDReferences?
    /// Free-page poisoning (CONFIG_PAGE_POISONING + page_poison=1).
    public let poisoning: Bool
    /// The node `allocPages(node: nil)` tries first (the node of the CPU the model runs on).
    public var localNode: NodeID = NodeID(0)
    /// Migration callback the VM core provides: move every mapping of the first page (PTEs,
    /// rmap) to the second, which already holds a copy of the contents and the source's KeyID.
    /// Return false if the page cannot be unmapped (e.g. pinned); nothing is then changed.
    public var migratePage: ((PFN, PFN) -> Bool)?
    /// The seeded bugs this allocator was built with (the kernel's `KernelConfig.bugs`).
    public let bugs: InjectedBugs
    /// Problems found so far (bad frees, poison corruption, misuse); verify() includes them.
    public private(set) var anomalies: [String] = []

    let buddy: BuddyAllocator
    let store: PageMetadataStore
    let clock: CostClock
    let maxKeyID: UInt16
    /// One page of scratch space (poisoning, verification).
    let scratchPage: OwnedBuffer<UInt8>
    /// Poisoned pages found modified at allocation.
    public internal(set) var poisonCorruptions = 0
    /// `per-keyid` policy: one list per (node, KeyID) of freed order-0 pages (PerKeyIDLists.swift).
    let keyidLists: OwnedBuffer<FreeArea>
    let keyidListCount: Int
    /// Pages currently on the per-KeyID lists.
    var keyidListed = 0

    /// Builds the allocator for `machine`'s memory, every frame free.
    public init(machine: Machine, policy: AllocatorPolicy, keyidRefs: KeyIDReferences?, poisoning: Bool = false,
                bugs: InjectedBugs = []) {
        self.machine = machine
        self.bugs = bugs
        self.policy = policy
        self.keyidRefs = keyidRefs
        self.poisoning = poisoning
        self.clock = machine.clock
        self.maxKeyID = machine.config.maxKeyID
        buddy = BuddyAllocator(frameCount: machine.config.frameCount, nodes: machine.config.nodes)
        store = buddy.store
        scratchPage = OwnedBuffer(repeating: 0, count: pageSize)
        keyidListCount = policy == .perKeyID ? machine.config.nodes * (Int(machine.config.maxKeyID) + 1) : 1
        keyidLists = OwnedBuffer(repeating: FreeArea(), count: keyidListCount)
    }

    func anomaly(_ text: String) {
        if anomalies.count < 10_000 { anomalies.append(text) }
    }

    // MARK: alloc_pages / free_pages

    /// alloc_pages(): a block of 2^order frames on `node` (nil = `localNode` first, then the
    /// other nodes), prepared for `keyid` per the policy: flushed through its old KeyID if that
    /// differs, page_keyid set, then zeroed through the new KeyID if `gfp` has `.zero`; takes
    /// 1 << order references on a non-zero KeyID. With `.directReclaim` and order > 0 a failed
    /// allocation runs compaction once and retries. Returns nil when out of memory.
    public func allocPages(order: PageOrder, keyid: KeyID, node: NodeID? = nil, gfp: GFPFlags) -> PFN? {
        guard order.rawValue <= maxPageOrder else {
            anomaly("alloc_pages: order \(order.rawValue) > MAX_PAGE_ORDER")
            return nil
        }
        let k = policy == .none ? KeyID.tme : keyid
        guard k.rawValue <= maxKeyID else {
            anomaly("alloc_pages: \(k) is beyond the hardware's KeyIDs (max \(maxKeyID))")
            return nil
        }
        guard let pfn = rmqueuePerKeyID(order: Int(order.rawValue), keyid: k, node: node, gfp: gfp)
                ?? rmqueue(order: Int(order.rawValue), node: node, gfp: gfp) else { return nil }
        postAllocHook(pfn, order: Int(order.rawValue), gfp: gfp)
        prepNewPage(pfn, order: Int(order.rawValue), keyid: k, zero: gfp.contains(.zero))
        return PFN(pfn)
    }

    /// Takes a block from the zonelist (charging one buddy allocation), compacting once if allowed.
    func rmqueue(order: Int, node: NodeID?, gfp: GFPFlags) -> UInt64? {
        clock.charge(.buddyAlloc)
        if let pfn = rmqueueZonelist(order: order, node: node, gfp: gfp) { return pfn }
        if keyidListed > 0 {
            // drain_all_pages(): give the per-KeyID lists back to the buddy and retry.
            drainKeyIDLists()
            if let pfn = rmqueueZonelist(order: order, node: node, gfp: gfp) { return pfn }
        }
        if order > 0 && gfp.contains(.directReclaim) && migratePage != nil {
            if compact(order: PageOrder(UInt8(order)), node: gfp.contains(.thisNode) ? (node ?? localNode) : nil) {
                return rmqueueZonelist(order: order, node: node, gfp: gfp)
            }
        }
        return nil
    }

    func rmqueueZonelist(order: Int, node: NodeID?, gfp: GFPFlags) -> UInt64? {
        let preferred = Int((node ?? localNode).rawValue)
        guard preferred < buddy.nodeCount else {
            anomaly("alloc_pages: \(node ?? localNode) does not exist")
            return nil
        }
        let list = preferred * buddy.zoneCount
        for i in 0..<buddy.zoneCount {
            let z = buddy.zonelistFlat[list + i]
            let zone = buddy.zones[z]
            if gfp.contains(.thisNode) && Int(zone.node) != preferred { continue }
            if gfp.contains(.dma32) && zone.type != .dma32 { continue }
            if let pfn = buddy.rmqueue(z, order) {
                clock.count(.pagesAllocated, 1 << order)
                return pfn
            }
        }
        return nil
    }

    /// post_alloc_hook + prep_compound_page: fresh metadata for the block's frames.
    func postAllocHook(_ pfn: UInt64, order: Int, gfp: GFPFlags) {
        let n = 1 << order
        let head = pfn
        let compound = gfp.contains(.compound) && order > 0
        let baseFlags: UInt32 = gfp.contains(.movable) ? PageFlags.movable.rawValue : 0
        for i in 0..<n {
            let p = head + UInt64(i)
            if poisoning && store[p].state & PageState.poisoned != 0 { checkPoison(p) }
            store[p].reset(flags: baseFlags)
            if compound && i > 0 {
                store[p].flags |= PageFlags.tail.rawValue
                store[p].order = UInt8(order)
            }
        }
        store[head].refcount = 1
        store[head].order = UInt8(order)
        store[head].state = PageState.allocated
        if compound { store[head].flags |= PageFlags.head.rawValue }
    }

    /// free_pages(): drops one reference on the block's head; when it reaches zero the block is
    /// freed: free_encrypted_page per policy, 1 << order KeyID references dropped, poisoned if
    /// enabled, returned to the buddy lists (merging). `order` must be the allocation order.
    public func freePages(_ pfn: PFN, order: PageOrder) {
        guard let head = allocatedHead(pfn.rawValue, "free_pages") else { return }
        let m = head
        if Int(store[m].order) != Int(order.rawValue) {
            anomaly("free_pages: \(pfn) was allocated with order \(store[m].order), freed with order \(order.rawValue)")
        }
        store[m].refcount -= 1
        if store[m].refcount <= 0 { freeBlock(head) }
    }

    /// The head of the allocated block starting at `pfn`, or nil (recorded as an anomaly).
    func allocatedHead(_ pfn: UInt64, _ what: String) -> UInt64? {
        guard store.isValid(pfn) else {
            anomaly("\(what): \(PFN(pfn)) is beyond memory")
            return nil
        }
        let m = store.peek(pfn)
        guard m.state & PageState.allocated != 0 else {
            anomaly("\(what): \(PFN(pfn)) is not the head of an allocated block (double free or tail page)")
            return nil
        }
        return pfn
    }

    /// free_pages_prepare + free_encrypted_page + __free_one_page for an allocated block.
    func freeBlock(_ pfn: UInt64) {
        let head = pfn
        let order = Int(store[head].order)
        let n = 1 << order
        if store[head].flags & PageFlags.reserved.rawValue != 0 {
            anomaly("bad page: freeing reserved \(PFN(pfn)); not freed")
            store[head].refcount = 1
            return
        }
        var hwPoisoned = false
        for i in 0..<n {
            let p = head + UInt64(i)
            let f = PageFlags(rawValue: store[p].flags).subtracting(.clearedAtFree)
            if store[p].mapcount != 0 {
                anomaly("bad page: \(PFN(pfn + UInt64(i))) freed with mapcount \(store[p].mapcount)")
            }
            if !f.isDisjoint(with: .checkAtFree) {
                anomaly("bad page: \(PFN(pfn + UInt64(i))) freed with flags \(f.intersection(.checkAtFree))")
            }
            if f.contains(.hwPoison) { hwPoisoned = true }
            store[p].reset()
        }
        freeEncryptedPages(pfn, count: n)
        if hwPoisoned {
            // A memory error: the frames are taken out of use for good (as memory_failure does).
            store[head].state = PageState.leaked
            store[head].order = UInt8(order)
            return
        }
        if poisoning { poisonPages(pfn, count: n) }
        clock.charge(.buddyFree)
        clock.count(.pagesFreed, n)
        if policy == .perKeyID && order == 0 && store[head].keyid != 0 {
            addToKeyIDList(pfn)
            return
        }
        buddy.freeOne(pfn, order, zone: buddy.zoneIndex(of: pfn))
    }

    // MARK: struct page access

    /// page_keyid(): the KeyID the frame was last prepared with (page_ext->keyid).
    public func pageKeyID(_ pfn: PFN) -> KeyID { KeyID(store.peek(pfn.rawValue).keyid) }

    /// page_ref_count() of the frame's compound head (folio_ref_count).
    public func refcount(_ pfn: PFN) -> Int32 { store.peek(compoundHead(pfn).rawValue).refcount }

    /// get_page(): one more reference on the block (on the compound head for a tail).
    public func getPage(_ pfn: PFN) {
        let h = compoundHead(pfn).rawValue
        guard store.isValid(h), store.peek(h).refcount > 0 else {
            anomaly("get_page: \(pfn) has no references (free page?)")
            return
        }
        store[h].refcount += 1
    }

    /// put_page(): drops a reference; the whole block (via its head) is freed at zero.
    public func putPage(_ pfn: PFN) {
        let h = compoundHead(pfn).rawValue
        guard allocatedHead(h, "put_page") != nil else { return }
        let m = h
        store[m].refcount -= 1
        if store[m].refcount <= 0 { freeBlock(h) }
    }

    /// Page-table mappings of this frame.
    public func mapcount(_ pfn: PFN) -> Int32 { store.peek(pfn.rawValue).mapcount }

    /// One more page-table mapping of this frame.
    public func incMapcount(_ pfn: PFN) {
        guard store.isValid(pfn.rawValue) else { return anomaly("incMapcount: \(pfn) is beyond memory") }
        store[pfn.rawValue].mapcount += 1
    }

    /// One page-table mapping fewer.
    public func decMapcount(_ pfn: PFN) {
        guard store.isValid(pfn.rawValue), store.peek(pfn.rawValue).mapcount > 0 else {
            return anomaly("decMapcount: \(pfn) has no mappings")
        }
        store[pfn.rawValue].mapcount -= 1
    }

    /// The frame's flags.
    public func flags(_ pfn: PFN) -> PageFlags { PageFlags(rawValue: store.peek(pfn.rawValue).flags) }

    /// Sets flags (allocator-owned ones — buddy, head, tail — are ignored).
    public func setFlags(_ pfn: PFN, _ f: PageFlags) {
        guard store.isValid(pfn.rawValue) else { return anomaly("setFlags: \(pfn) is beyond memory") }
        store[pfn.rawValue].flags |= f.subtracting(.allocatorOwned).rawValue
    }

    /// Clears flags (allocator-owned ones are ignored).
    public func clearFlags(_ pfn: PFN, _ f: PageFlags) {
        guard store.isValid(pfn.rawValue) else { return anomaly("clearFlags: \(pfn) is beyond memory") }
        store[pfn.rawValue].flags &= ~f.subtracting(.allocatorOwned).rawValue
    }

    /// page->mapping (anon_vma id or inode id); a compound tail reads its head's (folio->mapping).
    public func mapping(_ pfn: PFN) -> UInt64 { store.peek(compoundHead(pfn).rawValue).mapping }

    /// page->index; a compound tail reads its head's index plus its offset.
    public func index(_ pfn: PFN) -> UInt64 {
        let h = compoundHead(pfn)
        return store.peek(h.rawValue).index &+ (pfn.rawValue - h.rawValue)
    }

    /// Sets the rmap owner and page index (on a compound tail: the head's, index minus offset).
    public func setMapping(_ pfn: PFN, mapping: UInt64, index: UInt64) {
        guard store.isValid(pfn.rawValue) else { return anomaly("setMapping: \(pfn) is beyond memory") }
        let h = compoundHead(pfn)
        let p = h.rawValue
        store[p].mapping = mapping
        store[p].index = index &- (pfn.rawValue - h.rawValue)
    }

    /// The NUMA node holding the frame.
    public func node(of pfn: PFN) -> NodeID { machine.config.node(of: pfn) }

    /// compound_head(): the first frame of the compound block holding `pfn` (itself otherwise).
    public func compoundHead(_ pfn: PFN) -> PFN {
        let m = store.peek(pfn.rawValue)
        guard m.flags & PageFlags.tail.rawValue != 0 else { return pfn }
        return PFN(pfn.rawValue & ~(UInt64(1) << UInt64(m.order) - 1))
    }

    /// compound_order() of a head (0 for a non-compound page).
    public func compoundOrder(_ head: PFN) -> PageOrder {
        let m = store.peek(head.rawValue)
        return m.flags & PageFlags.head.rawValue != 0 ? PageOrder(m.order) : .base
    }

    /// The order a block was allocated with (compound or not), nil if `pfn` heads no allocated block.
    public func allocationOrder(_ pfn: PFN) -> PageOrder? {
        let m = store.peek(pfn.rawValue)
        return m.state & PageState.allocated != 0 ? PageOrder(m.order) : nil
    }

    /// split_huge_page / split_page: turns an allocated block into order-0 pages. Each page
    /// gets the head's flags (minus head/tail), refcount and mapping, index = head's + offset;
    /// KeyID references are already per 4 KiB, so freeing the pieces balances them.
    public func splitPage(_ head: PFN) {
        guard let h = allocatedHead(head.rawValue, "split_page") else { return }
        let hp = h
        let n = 1 << Int(store[hp].order)
        let flags = store[hp].flags & ~PageFlags.allocatorOwned.rawValue
        let ref = store[hp].refcount, mapping = store[hp].mapping, index = store[hp].index
        for i in 0..<n {
            let p = hp + UInt64(i)
            store[p].flags = flags
            store[p].order = 0
            store[p].state = PageState.allocated
            store[p].refcount = ref
            store[p].mapping = mapping
            store[p].index = index &+ UInt64(i)
        }
    }

    // MARK: accounting

    /// Frames currently free.
    public var freeFrames: Int { buddy.freeFrames + keyidListed }
    /// Frames of DRAM.
    public var totalFrames: Int { store.frameCount }
    /// Free frames of one node.
    public func freeFrames(node: NodeID) -> Int { buddy.freeFrames(node: Int(node.rawValue)) + keyidListedFrames(node: node) }
    /// Host bytes spent on frame metadata (section table + materialized sections).
    public var metadataBytes: Int { store.totalBytes }
    /// Memory sections (32768 frames) whose metadata has been materialized.
    public var materializedSections: Int { store.materializedSections }
    /// Free blocks of `order` across every zone (nr_free of /proc/buddyinfo, summed).
    public func freeBlocks(order: PageOrder) -> Int {
        buddy.zoneIndices.reduce(0) { $0 + buddy.freeCount($1, Int(order.rawValue)) }
    }
    /// /proc/buddyinfo lines: `Node 0, zone   Normal   n0 n1 ... n10`.
    public var buddyinfo: [String] {
        buddy.zoneIndices.map { z in
            let zone = buddy.zones[z]
            let counts = (0...Int(maxPageOrder)).map { String(buddy.freeCount(z, $0)) }
            let name = zone.type.name
            return "Node \(zone.node), zone " + String(repeating: " ", count: max(0, 8 - name.count)) + name + " " + counts.joined(separator: " ")
        }
    }
}
