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
        let p = pfn
        let node = Int(machine.config.node(of: PFN(pfn)).rawValue)
        let list = keyidListIndex(node: node, keyid: store[p].keyid)
        store[p].state |= PageState.keyidListed
        store[p].mapping = keyidLists[list].head
        store[p].index = BuddyAllocator.nilLink
        if keyidLists[list].head != BuddyAllocator.nilLink { store[keyidLists[list].head].index = pfn } else { keyidLists[list].tail = pfn }
        keyidLists[list].head = pfn
        keyidLists[list].count += 1
        keyidListed += 1
        if keyidLists[list].count > PageAllocator.keyidListHigh {
            for _ in 0..<PageAllocator.keyidListBatch { spillOldest(list) }
        }
    }

    /// Takes `pfn` off its list (it must be on `list`).
    private func unlinkKeyIDListed(_ list: Int, _ pfn: UInt64) {
        let p = pfn
        let next = store[p].mapping, prev = store[p].index
        if prev != BuddyAllocator.nilLink { store[prev].mapping = next } else { keyidLists[list].head = next }
        if next != BuddyAllocator.nilLink { store[next].index = prev } else { keyidLists[list].tail = prev }
        keyidLists[list].count -= 1
        keyidListed -= 1
        store[p].state &= ~PageState.keyidListed
        store[p].mapping = 0
        store[p].index = 0
    }

    /// Returns a list's oldest page to the buddy lists (it keeps its KeyID, as under `integrated`).
    private func spillOldest(_ list: Int) {
        let pfn = keyidLists[list].tail
        guard pfn != BuddyAllocator.nilLink else { return }
        unlinkKeyIDListed(list, pfn)
        buddy.freeOne(pfn, 0, zone: buddy.zoneIndex(of: pfn))
    }

    /// drain_all_pages(): every listed page back to the buddy lists.
    func drainKeyIDLists() {
        guard keyidListed > 0 else { return }
        for i in 0..<keyidListCount {
            while keyidLists[i].count > 0 { spillOldest(i) }
        }
    }

    /// An order-0 page last used with `keyid` from the preferred node's list, or nil.
    func rmqueuePerKeyID(order: Int, keyid: KeyID, node: NodeID?, gfp: GFPFlags) -> UInt64? {
        guard policy == .perKeyID, order == 0, keyid.rawValue != 0, !gfp.contains(.dma32) else { return nil }
        let n = Int((node ?? localNode).rawValue)
        guard n < machine.config.nodes else { return nil }
        let list = keyidListIndex(node: n, keyid: keyid.rawValue)
        let pfn = keyidLists[list].head
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
