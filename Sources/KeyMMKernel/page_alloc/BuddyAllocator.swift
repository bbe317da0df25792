// The binary buddy allocator: zones per NUMA node (ZONE_DMA32 below 4 GiB, ZONE_NORMAL above),
// free lists per order 0...MAX_PAGE_ORDER, __rmqueue_smallest + expand() for allocation and
// __free_one_page() merging for free. KeyID-unaware: MKTME handling lives in PageAllocator.
//
// Determinism and list discipline (as mm/page_alloc.c): allocation takes the head of the
// smallest non-empty list; expand() puts the upper halves on the list heads; a freed block is
// added at the head (LIFO, list_add) unless buddy_merge_likely() says its order+1 buddy is
// free, then at the tail. Boot frees every block to the tail in address order (FPI_TO_TAIL),
// so the lowest addresses come out first.
//
// Sparse boot: a zone's whole MAX_PAGE_ORDER blocks are not put on the order-10 list at boot;
// they form a "virtual tail" [virtNext, virtEnd) that logically follows the explicit order-10
// list (they would be at its tail, in address order). Taking one advances virtNext and
// materializes its section's metadata; nothing walks untouched memory.
//
// Invariants (checked by `verify`): every list entry is a PageBuddy head of its order, inside
// its zone, naturally aligned; counts match lists; no free block's buddy of the same order is
// free (they would have merged); zone.freePages = sum over orders of count << order + virtual.
import KeyMMBase

/// ZONE_DMA32 or ZONE_NORMAL.
enum ZoneType: UInt8, Sendable {
    case dma32 = 0
    case normal = 1
    var name: String { self == .dma32 ? "DMA32" : "Normal" }
}

/// One zone: a contiguous frame range of one node.
struct Zone {
    let node: UInt8
    let type: ZoneType
    let start: UInt64
    let end: UInt64
    /// Untouched MAX_PAGE_ORDER blocks still free: [virtNext, virtEnd).
    var virtNext: UInt64
    let virtEnd: UInt64
    /// Free frames (lists + virtual tail + nothing else).
    var freePages: Int
    var present: Int { Int(end - start) }
    var virtualBlocks: Int { Int((virtEnd - virtNext) >> UInt64(maxPageOrder)) }
    func contains(_ pfn: UInt64) -> Bool { pfn >= start && pfn < end }
    func isVirtualFree(_ pfn: UInt64) -> Bool { pfn >= virtNext && pfn < virtEnd }
}

/// One free list (struct free_area, single migratetype).
struct FreeArea {
    var head: UInt64 = BuddyAllocator.nilLink
    var tail: UInt64 = BuddyAllocator.nilLink
    var count: Int = 0
}

/// Zones, free lists, split and merge.
final class BuddyAllocator {
    static let nilLink = UInt64.max
    static let orders = Int(maxPageOrder) + 1
    /// The 4 GiB boundary between ZONE_DMA32 and ZONE_NORMAL, in frames.
    static let dma32LimitPFN: UInt64 = (4 << 30) >> pageShift

    let store: PageMetadataStore
    /// The zones, node-major (node 0's DMA32 and Normal, node 1's, ...). Flat storage: no
    /// dynamic exclusivity checks on the hot path.
    let zones: OwnedBuffer<Zone>
    let zoneCount: Int
    /// zoneCount * orders free areas; index zone * orders + order.
    let areas: OwnedBuffer<FreeArea>
    let nodeCount: Int
    /// Per node: indices of its zones, lowest first.
    let zonesOfNode: [[Int]]
    /// Per node: the fallback zonelist (local zones high to low, then next nodes, then lower nodes).
    let zonelists: [[Int]]
    /// The zonelists flattened: node n's list is zonelistFlat[n * zoneCount ..< (n + 1) * zoneCount].
    let zonelistFlat: OwnedBuffer<Int>
    /// Index of each node's first zone.
    let nodeFirstZone: OwnedBuffer<Int>
    let framesPerNode: UInt64

    var zoneIndices: Range<Int> { 0..<zoneCount }

    /// Builds zones for nodes splitting `frameCount` evenly and frees every frame.
    init(frameCount: Int, nodes: Int) {
        let n = max(nodes, 1)
        store = PageMetadataStore(frameCount: frameCount)
        nodeCount = n
        framesPerNode = UInt64(max(frameCount, 0) / n)
        var zoneList: [Zone] = []
        var ofNode: [[Int]] = Array(repeating: [], count: n)
        for node in 0..<n {
            let lo = UInt64(node) * framesPerNode
            let hi = node == n - 1 ? UInt64(max(frameCount, 0)) : lo + framesPerNode
            let limit = BuddyAllocator.dma32LimitPFN
            for (type, lower, upper) in [(ZoneType.dma32, lo, min(hi, limit)), (ZoneType.normal, max(lo, limit), hi)] where lower < upper {
                let range = lower..<upper
                let mask = UInt64(1) << UInt64(maxPageOrder) - 1
                let aStart = (range.lowerBound + mask) & ~mask
                let aEnd = range.upperBound & ~mask
                let hasVirt = aStart < aEnd
                ofNode[node].append(zoneList.count)
                zoneList.append(Zone(node: UInt8(node), type: type, start: range.lowerBound, end: range.upperBound,
                                     virtNext: hasVirt ? aStart : range.upperBound, virtEnd: hasVirt ? aEnd : range.upperBound,
                                     freePages: hasVirt ? Int(aEnd - aStart) : 0))
            }
        }
        zoneCount = zoneList.count
        zones = OwnedBuffer(zoneList)
        areas = OwnedBuffer(repeating: FreeArea(), count: max(zoneCount, 1) * BuddyAllocator.orders)
        var lists: [[Int]] = []
        for node in 0..<n {
            var list: [Int] = []
            for other in Array(node..<n) + Array(0..<node) { list += ofNode[other].reversed() }
            lists.append(list)
        }
        zonesOfNode = ofNode
        zonelists = lists
        zonelistFlat = OwnedBuffer(lists.flatMap { $0 })
        nodeFirstZone = OwnedBuffer(ofNode.map { $0.first ?? 0 })
        // Boot: the unaligned fragments (only when a zone is not a whole number of 4 MiB
        // blocks) are freed as maximal aligned blocks, to the tail, in address order.
        for z in 0..<zoneCount {
            let zone = zones[z]
            if zone.virtNext == zone.end && zone.virtEnd == zone.end {
                bootFree(z, zone.start..<zone.end)
            } else {
                bootFree(z, zone.start..<zone.virtNext)
                bootFree(z, zone.virtEnd..<zone.end)
            }
        }
    }

    private func bootFree(_ z: Int, _ range: Range<UInt64>) {
        var p = range.lowerBound
        while p < range.upperBound {
            var o = min(Int(maxPageOrder), p == 0 ? Int(maxPageOrder) : p.trailingZeroBitCount)
            while o > 0 && p + (UInt64(1) << UInt64(o)) > range.upperBound { o -= 1 }
            addToFreeList(z, p, o, tail: true)
            zones[z].freePages += 1 << o
            p += UInt64(1) << UInt64(o)
        }
    }

    // MARK: lookup

    /// The zone index holding a valid frame.
    func zoneIndex(of pfn: UInt64) -> Int {
        let node = framesPerNode == 0 ? 0 : min(Int(pfn / framesPerNode), nodeCount - 1)
        // Zones are node-major and a node's zones are contiguous: start at the node's first.
        var z = nodeFirstZone[node]
        while z < zoneCount {
            if zones[z].contains(pfn) { return z }
            z += 1
        }
        for z in 0..<zoneCount where zones[z].contains(pfn) { return z }
        return 0
    }

    /// The index in `areas` of zone z's free area of `order`.
    func areaIndex(_ z: Int, _ order: Int) -> Int { z * BuddyAllocator.orders + order }

    /// Free blocks of `order` in zone z (the virtual tail counts at MAX_PAGE_ORDER).
    func freeCount(_ z: Int, _ order: Int) -> Int {
        areas[areaIndex(z, order)].count + (order == Int(maxPageOrder) ? zones[z].virtualBlocks : 0)
    }

    /// Whether `pfn` heads a free block of exactly `order` in zone z (page_is_buddy).
    func isFreeBlock(_ z: Int, _ pfn: UInt64, _ order: Int) -> Bool {
        let zone = zones[z]
        guard zone.contains(pfn) else { return false }
        if order == Int(maxPageOrder) && zone.isVirtualFree(pfn) { return true }
        guard store.isMaterialized(pfn) else { return false }
        let m = store[pfn]
        return m.flags & PageFlags.buddy.rawValue != 0 && Int(m.order) == order
    }

    // MARK: free lists

    func addToFreeList(_ z: Int, _ pfn: UInt64, _ order: Int, tail: Bool) {
        let a = areaIndex(z, order)
        let p = pfn
        store[p].flags |= PageFlags.buddy.rawValue
        store[p].order = UInt8(order)
        if tail {
            store[p].mapping = BuddyAllocator.nilLink
            store[p].index = areas[a].tail
            if areas[a].tail != BuddyAllocator.nilLink { store[areas[a].tail].mapping = pfn } else { areas[a].head = pfn }
            areas[a].tail = pfn
        } else {
            store[p].mapping = areas[a].head
            store[p].index = BuddyAllocator.nilLink
            if areas[a].head != BuddyAllocator.nilLink { store[areas[a].head].index = pfn } else { areas[a].tail = pfn }
            areas[a].head = pfn
        }
        areas[a].count += 1
    }

    func removeFromFreeList(_ z: Int, _ pfn: UInt64, _ order: Int) {
        let a = areaIndex(z, order)
        let p = pfn
        let next = store[p].mapping, prev = store[p].index
        if prev != BuddyAllocator.nilLink { store[prev].mapping = next } else { areas[a].head = next }
        if next != BuddyAllocator.nilLink { store[next].index = prev } else { areas[a].tail = prev }
        areas[a].count -= 1
        store[p].flags &= ~PageFlags.buddy.rawValue
        store[p].order = 0
        store[p].mapping = 0
        store[p].index = 0
    }

    /// Takes the first untouched MAX_PAGE_ORDER block of zone z, materializing its section.
    private func popVirtual(_ z: Int) -> UInt64 {
        let pfn = zones[z].virtNext
        zones[z].virtNext += UInt64(1) << UInt64(maxPageOrder)
        store.materialize(section: Int(pfn >> UInt64(PageMetadataStore.sectionShift)))
        return pfn
    }

    // MARK: allocation and free

    /// __rmqueue_smallest + expand(): a block of `order` from zone z, or nil.
    func rmqueue(_ z: Int, _ order: Int) -> UInt64? {
        guard zones[z].freePages >= 1 << order else { return nil }
        for o in order...Int(maxPageOrder) {
            let a = areaIndex(z, o)
            var pfn: UInt64
            if areas[a].count > 0 {
                pfn = areas[a].head
                removeFromFreeList(z, pfn, o)
            } else if o == Int(maxPageOrder) && zones[z].virtNext < zones[z].virtEnd {
                pfn = popVirtual(z)
            } else {
                continue
            }
            // expand(): keep the low half, free the high half at each level.
            var high = o
            while high > order {
                high -= 1
                addToFreeList(z, pfn + (UInt64(1) << UInt64(high)), high, tail: false)
            }
            zones[z].freePages -= 1 << order
            return pfn
        }
        return nil
    }

    /// __free_one_page(): merges with free buddies and adds the result to its list.
    func freeOne(_ pfnIn: UInt64, _ orderIn: Int, zone z: Int) {
        var pfn = pfnIn, order = orderIn
        zones[z].freePages += 1 << orderIn
        var buddyPFN = pfn ^ (UInt64(1) << UInt64(order))
        while order < Int(maxPageOrder) {
            buddyPFN = pfn ^ (UInt64(1) << UInt64(order))
            guard isFreeBlock(z, buddyPFN, order) else { break }
            removeFromFreeList(z, buddyPFN, order)
            pfn &= buddyPFN
            order += 1
        }
        // buddy_merge_likely(): if the order+1 buddy of the combined block is free, go to the tail.
        var toTail = false
        if order < Int(maxPageOrder) - 1 {
            let higher = buddyPFN & pfn
            let higherBuddy = higher ^ (UInt64(1) << UInt64(order + 1))
            toTail = isFreeBlock(z, higherBuddy, order + 1)
        }
        addToFreeList(z, pfn, order, tail: toTail)
    }

    /// Takes a specific free block of `order` off its list (compaction's free scanner).
    func takeFreeBlock(_ z: Int, _ pfn: UInt64, _ order: Int) {
        removeFromFreeList(z, pfn, order)
        zones[z].freePages -= 1 << order
    }

    /// Total free frames.
    var freeFrames: Int {
        var n = 0
        for z in 0..<zoneCount { n += zones[z].freePages }
        return n
    }

    /// Free frames of one node.
    func freeFrames(node: Int) -> Int {
        guard node >= 0 && node < nodeCount else { return 0 }
        return zonesOfNode[node].reduce(0) { $0 + zones[$1].freePages }
    }
}
