// The `per-keyid` policy's lists (beyond the series; docs/policies.md): freed order-0 pages with
// a non-zero KeyID go to a list per (node, KeyID), like a per-CPU pageset keyed by KeyID, instead
// of the buddy lists; an order-0 allocation for that KeyID on that node takes the most recently
// freed one (LIFO), whose cache lines need no flush. Everything else behaves as `integrated`
// (pages keep their KeyID in the buddy lists; prep flushes only when the KeyID differs).
//
// Bounds and pressure: a list holding more than `keyidListHigh` pages returns its
// `keyidListBatch` oldest pages to the buddy (free_pcppages_bulk); a failed buddy allocation
// and compaction drain every list first (drain_all_pages).
//
// Invariants: a listed page is order 0, free (refcount 0, PageState.keyidListed, no PageBuddy),
// its KeyID is the list's KeyID and its node the list's node; `keyidListed` is the total.
import KeyMMBase

extension PageAllocator {
    /// Pages a per-KeyID list may hold before it spills to the buddy lists (per node and KeyID).
    public static let keyidListHigh = 256
    /// Pages returned to the buddy lists when a list exceeds `keyidListHigh`.
    public static let keyidListBatch = 64

    func keyidListIndex(node: Int, keyid: UInt16) -> Int { node * (Int(maxKeyID) + 1) + Int(keyid) }

    /// Pages on the per-KeyID lists of one node.
    func keyidListedFrames(node: NodeID) -> Int {
        guard policy == .perKeyID, Int(node.rawValue) < machine.config.nodes else { return 0 }
        var n = 0
        for k in 0...Int(maxKeyID) { n += keyidLists[keyidListIndex(node: Int(node.rawValue), keyid: UInt16(k))].count }
        return n
    }

    /// Pushes a freed order-0 page on its (node, KeyID) list, spilling the oldest if over the bound.
    func addToKeyIDList(_ pfn: UInt64) {
        let p = store.page(pfn)
        let node = Int(machine.config.node(of: PFN(pfn)).rawValue)
        let list = keyidLists + keyidListIndex(node: node, keyid: p.pointee.keyid)
        p.pointee.state |= PageState.keyidListed
        p.pointee.mapping = list.pointee.head
        p.pointee.index = BuddyAllocator.nilLink
        if list.pointee.head != BuddyAllocator.nilLink { store.page(list.pointee.head).pointee.index = pfn } else { list.pointee.tail = pfn }
        list.pointee.head = pfn
        list.pointee.count += 1
        keyidListed += 1
        if list.pointee.count > PageAllocator.keyidListHigh {
            for _ in 0..<PageAllocator.keyidListBatch { spillOldest(list) }
        }
    }

    /// Takes `pfn` off its list (it must be on `list`).
    private func unlinkKeyIDListed(_ list: UnsafeMutablePointer<FreeArea>, _ pfn: UInt64) {
        let p = store.page(pfn)
        let next = p.pointee.mapping, prev = p.pointee.index
        if prev != BuddyAllocator.nilLink { store.page(prev).pointee.mapping = next } else { list.pointee.head = next }
        if next != BuddyAllocator.nilLink { store.page(next).pointee.index = prev } else { list.pointee.tail = prev }
        list.pointee.count -= 1
        keyidListed -= 1
        p.pointee.state &= ~PageState.keyidListed
        p.pointee.mapping = 0
        p.pointee.index = 0
    }

    /// Returns a list's oldest page to the buddy lists (it keeps its KeyID, as under `integrated`).
    private func spillOldest(_ list: UnsafeMutablePointer<FreeArea>) {
        let pfn = list.pointee.tail
        guard pfn != BuddyAllocator.nilLink else { return }
        unlinkKeyIDListed(list, pfn)
        buddy.freeOne(pfn, 0, zone: buddy.zoneIndex(of: pfn))
    }

    /// drain_all_pages(): every listed page back to the buddy lists.
    func drainKeyIDLists() {
        guard keyidListed > 0 else { return }
        for i in 0..<keyidListCount {
            while keyidLists[i].count > 0 { spillOldest(keyidLists + i) }
        }
    }

    /// An order-0 page last used with `keyid` from the preferred node's list, or nil.
    func rmqueuePerKeyID(order: Int, keyid: KeyID, node: NodeID?, gfp: GFPFlags) -> UInt64? {
        guard policy == .perKeyID, order == 0, keyid.rawValue != 0, !gfp.contains(.dma32) else { return nil }
        let n = Int((node ?? localNode).rawValue)
        guard n < machine.config.nodes else { return nil }
        let list = keyidLists + keyidListIndex(node: n, keyid: keyid.rawValue)
        let pfn = list.pointee.head
        guard pfn != BuddyAllocator.nilLink else { return nil }
        unlinkKeyIDListed(list, pfn)
        clock.charge(.buddyAlloc)
        clock.count(.pagesAllocated)
        return pfn
    }

    /// verify(): list structure and membership.
    func verifyKeyIDLists() -> [String] {
        guard policy == .perKeyID else { return [] }
        var out: [String] = []
        var total = 0
        for node in 0..<machine.config.nodes {
            for k in 0...Int(maxKeyID) {
                let list = keyidLists[keyidListIndex(node: node, keyid: UInt16(k))]
                var p = list.head, prev = BuddyAllocator.nilLink, n = 0
                while p != BuddyAllocator.nilLink {
                    guard n <= list.count, store.isValid(p) else { out.append("per-KeyID list (node \(node), KeyID \(k)) is broken"); break }
                    let m = store.peek(p)
                    if m.state & PageState.keyidListed == 0 || Int(m.keyid) != k || m.index != prev
                        || Int(machine.config.node(of: PFN(p)).rawValue) != node || m.flags & PageFlags.buddy.rawValue != 0 {
                        out.append("\(PFN(p)): wrong entry on the per-KeyID list (node \(node), KeyID \(k))")
                    }
                    prev = p
                    p = m.mapping
                    n += 1
                }
                if n != list.count { out.append("per-KeyID list (node \(node), KeyID \(k)): count \(list.count) but \(n) pages") }
                total += n
            }
        }
        if total != keyidListed { out.append("per-KeyID lists hold \(total) pages but the total says \(keyidListed)") }
        return out
    }
}
