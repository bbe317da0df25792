// Page migration and memory compaction (mm/migrate.c, mm/compaction.c), simplified but
// deterministic. The new page always gets the SOURCE page's KeyID (the series' rule for
// migration, NUMA balancing and compaction), prepared through the policy like any allocation.
//
// Migration of one allocated block: the allocator copies each frame through the source's KeyID
// (machine.copyPage), calls the VM core's `migratePage(old, new)` to move every mapping (PTEs,
// rmap); on success it moves the metadata (flags, refcount, mapcount, mapping, index) to the
// new block and frees the old one through the normal free path (policy flush, references,
// poisoning, buddy merge). If the callback refuses, the new block is freed and nothing changed.
//
// Compaction of a zone for `order` (the two-scanner model of compact_zone):
// - the migrate scanner walks pageblocks (512 frames) upwards from the zone start; a pageblock
//   is a migration source only if every allocated block in it is an order-0 page with
//   PageMovable and none of pinned/locked/reserved/zero-page/hwpoison (async compaction's
//   "suitable source"); otherwise it is skipped whole, since it could never become free;
// - the free scanner walks pageblocks downwards from the zone end, taking their free blocks off
//   the lists and splitting them into order-0 targets (isolate_freepages_block), used lowest
//   first;
// - it stops when the scanners meet or a free block of `order` exists; unused targets go back
//   to the free lists (merging).
// Only order-0 pages are migrated (compound pages in a pageblock make it unsuitable).
//
// Invariants: after compact() returns no frame is left isolated; KeyID references balance
// (the target takes 1 per 4 KiB at prep, the freed source drops them).
import KeyMMBase
import KeyMMHardware

extension PageAllocator {
    /// Pageblock size in frames (pageblock_order = 9 on x86-64).
    static let pageblockFrames: UInt64 = 1 << 9

    /// A block for migrating `source` (its whole allocated block): same order and compound
    /// shape, the source's KeyID (prepared per policy, not zeroed), on `node` (__GFP_THISNODE)
    /// or anywhere, local node first, when nil.
    public func allocPageForMigration(source: PFN, node: NodeID?) -> PFN? {
        let h = compoundHead(source)
        guard let order = allocationOrder(h) else {
            anomaly("alloc_migration_target: \(source) is not an allocated page")
            return nil
        }
        var gfp: GFPFlags = .highUserMovable
        if flags(h).contains(.head) { gfp.insert(.compound) }
        if node != nil { gfp.insert(.thisNode) }
        let bug = bugs.contains(.migrateDropsKeyID)   // seeded bug
        return allocPages(order: order, keyid: bug ? .tme : pageKeyID(h), node: node, gfp: gfp)
    }

    /// migrate_pages() of one page: moves the allocated block holding `source` to a new block on
    /// `node` (nil: anywhere). Needs `migratePage`. Returns the new head, or nil when no memory
    /// or the VM core refused (then nothing changed).
    public func migrate(_ source: PFN, to node: NodeID?) -> PFN? {
        guard migratePage != nil else {
            anomaly("migrate: no migratePage callback installed")
            return nil
        }
        guard let src = allocatedHead(compoundHead(source).rawValue, "migrate") else { return nil }
        guard let dst = allocPageForMigration(source: PFN(src), node: node) else { return nil }
        if moveBlock(src, to: dst.rawValue) { return dst }
        freeBlock(dst.rawValue)
        return nil
    }

    /// Copies, remaps (callback), moves metadata, frees the source. False if the callback refused.
    func moveBlock(_ src: UInt64, to dst: UInt64) -> Bool {
        guard let callback = migratePage else { return false }
        let sp = src, dp = dst
        let n = 1 << Int(store[sp].order)
        for i in 0..<n {
            let k = KeyID(store[sp + UInt64(i)].keyid)
            machine.copyPage(from: PFN(src + UInt64(i)), srcKeyID: k, to: PFN(dst + UInt64(i)), dstKeyID: k)
        }
        guard callback(PFN(src), PFN(dst)) else { return false }
        let owned = PageFlags.allocatorOwned.rawValue
        for i in 0..<n {
            let s = sp + UInt64(i), d = dp + UInt64(i)
            store[d].flags = (store[d].flags & owned) | (store[s].flags & ~owned)
            store[d].mapcount = store[s].mapcount
            store[d].mapping = store[s].mapping
            store[d].index = store[s].index
            store[s].flags &= owned
            store[s].mapcount = 0
        }
        store[dp].refcount = store[sp].refcount
        store[sp].refcount = 1
        freeBlock(src)
        clock.count(.migratedPages, n)
        return true
    }

    /// Whether zone z has a free block of at least `order`.
    func hasFreeBlock(_ z: Int, _ order: Int) -> Bool {
        for o in order...Int(maxPageOrder) where buddy.freeCount(z, o) > 0 { return true }
        return false
    }

    /// compact_zone for `order` on `node`'s zones (nil: every zone, local node first), until one
    /// has a free block of `order`. Needs the `migratePage` callback to move anything.
    public func compact(order: PageOrder, node: NodeID?) -> Bool {
        let o = Int(min(order.rawValue, maxPageOrder))
        drainKeyIDLists()                      // drain_all_pages(), as direct compaction does
        let zonesToTry: [Int]
        if let node {
            guard Int(node.rawValue) < buddy.nodeCount else { return false }
            zonesToTry = buddy.zonesOfNode[Int(node.rawValue)].reversed()
        } else {
            zonesToTry = buddy.zonelists[min(Int(localNode.rawValue), buddy.nodeCount - 1)]
        }
        for z in zonesToTry where compactZone(z, o) { return true }
        return false
    }

    /// Can compaction move this allocated block?
    func isMigrationCandidate(_ m: PageMeta) -> Bool {
        guard m.order == 0 else { return false }
        let f = PageFlags(rawValue: m.flags)
        return f.contains(.movable) && f.isDisjoint(with: [.pinned, .locked, .reserved, .zeroPage, .hwPoison, .head])
    }

    func compactZone(_ z: Int, _ order: Int) -> Bool {
        if hasFreeBlock(z, order) { return true }
        guard migratePage != nil else { return false }
        let zone = buddy.zones[z]
        let pb = PageAllocator.pageblockFrames
        var migratePFN = (zone.start + pb - 1) & ~(pb - 1)
        var freePFN = (zone.end & ~(pb - 1))      // exclusive top of the next pageblock to scan
        var targets: [UInt64] = []
        var nextTarget = 0
        var candidates: [UInt64] = []
        defer {
            // release_freepages(): unused targets return to the lists.
            for i in nextTarget..<targets.count {
                let t = targets[i]
                store[t].state = 0
                buddy.freeOne(t, 0, zone: z)
            }
        }
        while migratePFN + pb <= freePFN {
            candidates.removeAll(keepingCapacity: true)
            var suitable = true
            var p = migratePFN
            let end = migratePFN + pb
            while p < end && suitable {
                let m = store.peek(p)
                if m.flags & PageFlags.buddy.rawValue != 0 {
                    p += UInt64(1) << UInt64(m.order)
                } else if m.state & PageState.allocated != 0 {
                    if isMigrationCandidate(m) { candidates.append(p) } else { suitable = false }
                    p += UInt64(1) << UInt64(m.order)
                } else {
                    suitable = false      // leaked, isolated, or unmaterialized (virtual) frames
                }
            }
            if suitable {
                for c in candidates {
                    if nextTarget == targets.count {
                        // isolate_freepages(): the free scanner takes the next pageblock down.
                        while nextTarget == targets.count && freePFN - pb > migratePFN {
                            freePFN -= pb
                            isolateFreePages(z, freePFN, freePFN + pb, into: &targets)
                        }
                        if nextTarget == targets.count { break }
                    }
                    let t = targets[nextTarget]
                    nextTarget += 1
                    let src = store.peek(c)
                    postAllocHook(t, order: 0, gfp: .movable)
                    prepNewPage(t, order: 0, keyid: KeyID(src.keyid), zero: false)
                    if !moveBlock(c, to: t) { freeBlock(t) }
                }
            }
            migratePFN += pb
            if hasFreeBlock(z, order) { return true }
        }
        return hasFreeBlock(z, order)
    }

    /// isolate_freepages_block(): takes every free block in [lo, hi) off the lists as order-0 targets.
    func isolateFreePages(_ z: Int, _ lo: UInt64, _ hi: UInt64, into targets: inout [UInt64]) {
        var p = lo
        while p < hi {
            guard store.isMaterialized(p) else { return }
            let m = store.peek(p)
            if m.flags & PageFlags.buddy.rawValue != 0 {
                let o = Int(m.order)
                buddy.takeFreeBlock(z, p, o)
                for i in 0..<(UInt64(1) << UInt64(o)) {
                    store[p + i].state = PageState.isolated
                    targets.append(p + i)
                }
                p += UInt64(1) << UInt64(o)
            } else if m.state & PageState.allocated != 0 || m.state & PageState.leaked != 0 {
                p += UInt64(1) << UInt64(m.order)
            } else {
                p += 1
            }
        }
    }
}
