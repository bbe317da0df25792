// The page allocator's consistency checker (for tests and the invariant checker) and block
// iteration. verify() walks the free lists and every materialized frame, so it costs
// O(touched memory): call it at checkpoints, not per operation.
//
// Checked: list links and counts; each list entry is a PageBuddy head of that order, aligned,
// inside its zone; no free block has a free buddy of the same order (missed merge); every frame
// of a zone is covered by exactly one free, allocated or leaked block (or the untouched virtual
// tail); zone free counts; compound heads/tails; KeyIDs (0 under `none`; free frames 0 under
// wrapper/eager); each KeyID's reference count covers its allocated 4 KiB pages; plus every
// anomaly recorded so far (bad frees, poison corruption).
import KeyMMBase
import KeyMMKeys

extension PageAllocator {
    /// Calls `body` for each allocated block (head, allocation order), in PFN order.
    public func forEachAllocatedBlock(_ body: (PFN, PageOrder) -> Void) {
        for z in buddy.zoneIndices {
            let zone = buddy.zones[z]
            var p = zone.start
            while p < zone.end {
                if zone.isVirtualFree(p) { p = zone.virtEnd; continue }
                guard store.isMaterialized(p) else { p += 1; continue }
                let m = store.peek(p)
                if m.state & PageState.allocated != 0 { body(PFN(p), PageOrder(m.order)) }
                if m.flags & PageFlags.buddy.rawValue != 0 || m.state & (PageState.allocated | PageState.leaked) != 0 {
                    p += UInt64(1) << UInt64(m.order)
                } else {
                    p += 1
                }
            }
        }
    }

    /// Empty when free lists, flags and counts are consistent; otherwise one line per problem.
    public func verify() -> [String] {
        var out = anomalies
        var listHeads = 0
        for z in buddy.zoneIndices {
            let zone = buddy.zones[z]
            let label = "zone \(zone.type.name) of node \(zone.node)"
            var free = zone.virtualBlocks << Int(maxPageOrder)
            if zone.virtNext > zone.virtEnd || (zone.virtEnd - zone.virtNext) & (UInt64(1) << UInt64(maxPageOrder) - 1) != 0 {
                out.append("\(label): virtual tail [\(zone.virtNext), \(zone.virtEnd)) is malformed")
            }
            for o in 0...Int(maxPageOrder) {
                let a = buddy.areas[buddy.areaIndex(z, o)]
                var p = a.head, prev = BuddyAllocator.nilLink, n = 0
                while p != BuddyAllocator.nilLink {
                    guard n <= zone.present, zone.contains(p), store.isMaterialized(p) else {
                        out.append("\(label) order \(o): list broken at \(PFN(p))")
                        break
                    }
                    let m = store.peek(p)
                    if m.flags & PageFlags.buddy.rawValue == 0 || Int(m.order) != o {
                        out.append("\(label) order \(o): \(PFN(p)) is on the list but not a free block of that order")
                    }
                    if p & (UInt64(1) << UInt64(o) - 1) != 0 { out.append("\(label) order \(o): \(PFN(p)) is misaligned") }
                    if zone.isVirtualFree(p) { out.append("\(label) order \(o): \(PFN(p)) is also in the virtual tail") }
                    if m.index != prev { out.append("\(label) order \(o): \(PFN(p)) has a wrong prev link") }
                    if o < Int(maxPageOrder) && buddy.isFreeBlock(z, p ^ (UInt64(1) << UInt64(o)), o) {
                        out.append("\(label) order \(o): \(PFN(p)) and its buddy are both free (missed merge)")
                    }
                    prev = p
                    p = m.mapping
                    n += 1
                }
                if n != a.count { out.append("\(label) order \(o): count \(a.count) but \(n) blocks on the list") }
                if a.tail != prev { out.append("\(label) order \(o): tail pointer is wrong") }
                free += n << o
                listHeads += n
            }
            if free != zone.freePages { out.append("\(label): free count \(zone.freePages) but lists hold \(free)") }
        }
        out += verifyFrames(listHeads: listHeads)
        return out
    }

    private func verifyFrames(listHeads: Int) -> [String] {
        var out: [String] = []
        var buddyHeads = 0, keyidListedSeen = 0
        var pagesPerKeyID = [Int](repeating: 0, count: Int(maxKeyID) + 1)
        for z in buddy.zoneIndices {
            let zone = buddy.zones[z]
            var p = zone.start
            while p < zone.end {
                if zone.isVirtualFree(p) { p = zone.virtEnd; continue }
                guard store.isMaterialized(p) else {
                    out.append("\(PFN(p)): in use but its section has no metadata")
                    p = (p | UInt64(PageMetadataStore.sectionFrames - 1)) + 1
                    continue
                }
                let m = store.peek(p)
                let n = UInt64(1) << UInt64(m.order)
                if p & (n - 1) != 0 || p + n > zone.end {
                    out.append("\(PFN(p)): block of order \(m.order) is misaligned or crosses its zone")
                    p += 1
                    continue
                }
                if m.flags & PageFlags.buddy.rawValue != 0 {
                    buddyHeads += 1
                    for i in 0..<n {
                        let k = store.peek(p + i).keyid
                        if k != 0 && policy.poolIsKeyIDZero {
                            out.append("\(PFN(p + i)): free frame has \(KeyID(k)) under policy \(policy.rawValue)")
                            break
                        }
                    }
                    p += n
                } else if m.state & PageState.allocated != 0 {
                    let compound = m.flags & PageFlags.head.rawValue != 0
                    if m.refcount <= 0 { out.append("\(PFN(p)): allocated with refcount \(m.refcount)") }
                    for i in 0..<n {
                        let t = store.peek(p + i)
                        if i > 0 && compound && (t.flags & PageFlags.tail.rawValue == 0 || t.order != m.order) {
                            out.append("\(PFN(p + i)): tail of a compound order-\(m.order) page without PageTail")
                        }
                        if i > 0 && t.state & PageState.allocated != 0 { out.append("\(PFN(p + i)): allocated inside another block") }
                        if policy == .none && t.keyid != 0 { out.append("\(PFN(p + i)): \(KeyID(t.keyid)) under policy none") }
                        if Int(t.keyid) < pagesPerKeyID.count { pagesPerKeyID[Int(t.keyid)] += 1 }
                    }
                    p += n
                } else if m.state & PageState.leaked != 0 {
                    p += n
                } else if m.state & PageState.keyidListed != 0 {
                    keyidListedSeen += 1
                    p += 1
                } else if m.state & PageState.isolated != 0 {
                    out.append("\(PFN(p)): left isolated by compaction")
                    p += 1
                } else {
                    out.append("\(PFN(p)): neither free nor allocated")
                    p += 1
                }
            }
        }
        if buddyHeads != listHeads { out.append("\(buddyHeads) PageBuddy heads but \(listHeads) blocks on the lists") }
        if keyidListedSeen != keyidListed { out.append("\(keyidListedSeen) frames marked per-KeyID-listed but the lists hold \(keyidListed)") }
        out += verifyKeyIDLists()
        if let refs = keyidRefs, policy != .none {
            for k in 1..<pagesPerKeyID.count where pagesPerKeyID[k] > refs.count(KeyID(UInt16(k))) {
                out.append("\(KeyID(UInt16(k))): \(pagesPerKeyID[k]) allocated pages but only \(refs.count(KeyID(UInt16(k)))) references")
            }
        }
        return out
    }
}
