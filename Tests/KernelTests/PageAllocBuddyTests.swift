// Buddy allocator: exact split/merge, list discipline, zones and node fallback, OOM,
// determinism, struct page accessors.
import Testing
import KeyMMBase
import KeyMMHardware
import KeyMMKeys
@testable import KeyMMKernel

@Suite("PageAlloc buddy")
struct PageAllocBuddyTests {
    @Test func bootStateIsAllMaxOrderBlocksAndNothingMaterialized() throws {
        let (pa, _) = try makePageAllocator()
        #expect(pa.totalFrames == 16384)
        #expect(pa.freeFrames == 16384)
        #expect(pa.buddyCounts == [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 16])
        #expect(pa.materializedSections == 0)
        #expect(pa.buddyinfo == ["Node 0, zone    DMA32 0 0 0 0 0 0 0 0 0 0 16"])
        #expect(pa.verify().isEmpty)
    }

    @Test func splitTakesLowHalvesAndQueuesUpperHalves() throws {
        let (pa, _) = try makePageAllocator(policy: .none)
        let a = pa.allocPages(order: .base, keyid: .tme, gfp: [])
        #expect(a == PFN(0))
        // expand() left one free block of each order 0..9 (1, 2, 4, ..., 512) and 15 max blocks.
        #expect(pa.buddyCounts == [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 15])
        #expect(pa.freeListsForTest()[0].prefix(10).map { $0 } == (0..<10).map { [UInt64(1) << UInt64($0)] })
        #expect(pa.allocPages(order: .base, keyid: .tme, gfp: []) == PFN(1))
        #expect(pa.allocPages(order: PageOrder(1), keyid: .tme, gfp: []) == PFN(2))
        // Orders 0 and 1 are empty: block 4 (order 2) splits into 4 (returned), 5 (order 0), 6 (order 1).
        #expect(pa.allocPages(order: .base, keyid: .tme, gfp: []) == PFN(4))
        #expect(pa.freeListsForTest()[0][0] == [5])
        #expect(pa.freeListsForTest()[0][1] == [6])
        #expect(pa.allocPages(order: .base, keyid: .tme, gfp: []) == PFN(5))
        #expect(pa.allocationOrder(PFN(2)) == PageOrder(1))
        #expect(pa.verify().isEmpty)
    }

    @Test func freeMergesBackToTheBootState() throws {
        let (pa, _) = try makePageAllocator(policy: .none)
        let initial = pa.freeListsForTest()
        var rng = PageAllocRNG(seed: 42)
        var blocks: [(PFN, PageOrder)] = []
        for _ in 0..<300 {
            let o = PageOrder(UInt8(Int.random(in: 0...5, using: &rng)))
            if let p = pa.allocPages(order: o, keyid: .tme, gfp: []) { blocks.append((p, o)) }
        }
        #expect(blocks.count == 300)
        #expect(pa.verify().isEmpty)
        let used = blocks.reduce(0) { $0 + $1.1.pages }
        #expect(pa.freeFrames == 16384 - used)
        blocks.shuffle(using: &rng)
        for (p, o) in blocks { pa.freePages(p, order: o) }
        #expect(pa.freeFrames == 16384)
        #expect(pa.buddyCounts == [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 16])
        // Same blocks; the order-10 list may differ only in which blocks are explicit vs virtual.
        #expect(pa.freeListsForTest()[0][0..<10] == initial[0][0..<10])
        #expect(pa.verify().isEmpty)
    }

    @Test func freedPagesComeBackLIFO() throws {
        let (pa, _) = try makePageAllocator(policy: .none)
        let p = (0..<4).compactMap { _ in pa.allocPages(order: .base, keyid: .tme, gfp: []) }
        #expect(p == [PFN(0), PFN(1), PFN(2), PFN(3)])
        pa.freePages(PFN(0), order: .base)
        pa.freePages(PFN(2), order: .base)
        #expect(pa.freeListsForTest()[0][0] == [2, 0])
        #expect(pa.allocPages(order: .base, keyid: .tme, gfp: []) == PFN(2))
        #expect(pa.allocPages(order: .base, keyid: .tme, gfp: []) == PFN(0))
    }

    @Test func buddyMergeLikelyQueuesAtTheTail() throws {
        let (pa, _) = try makePageAllocator(policy: .none)
        for i in 0..<8 { #expect(pa.allocPages(order: .base, keyid: .tme, gfp: []) == PFN(UInt64(i))) }
        pa.freePages(PFN(5), order: .base)
        pa.freePages(PFN(2), order: .base)
        pa.freePages(PFN(3), order: .base)          // merges with 2 into an order-1 block at 2
        #expect(pa.freeListsForTest()[0][1] == [2])
        #expect(pa.freeListsForTest()[0][0] == [5])
        // 0's buddy (1) is in use, but the order-1 buddy of {0,1} (block 2) is free: to the tail.
        pa.freePages(PFN(0), order: .base)
        #expect(pa.freeListsForTest()[0][0] == [5, 0])
        #expect(pa.allocPages(order: .base, keyid: .tme, gfp: []) == PFN(5))
        #expect(pa.verify().isEmpty)
    }

    @Test func nodesFallBackInOrderAndThisNodeDoesNot() throws {
        let (pa, _) = try makePageAllocator(policy: .none, memory: .mib(64), nodes: 2)
        #expect(pa.freeFrames(node: NodeID(0)) == 8192)
        #expect(pa.freeFrames(node: NodeID(1)) == 8192)
        #expect(pa.node(of: PFN(8192)) == NodeID(1))
        for i in 0..<8 {
            let p = pa.allocPages(order: .max, keyid: .tme, node: NodeID(1), gfp: [])
            #expect(p == PFN(8192 + UInt64(i) * 1024))
        }
        #expect(pa.freeFrames(node: NodeID(1)) == 0)
        #expect(pa.allocPages(order: .base, keyid: .tme, node: NodeID(1), gfp: .thisNode) == nil)
        let fallback = pa.allocPages(order: .base, keyid: .tme, node: NodeID(1), gfp: [])
        #expect(fallback == PFN(0))
        pa.localNode = NodeID(1)
        #expect(pa.allocPages(order: .base, keyid: .tme, node: nil, gfp: []) == PFN(1))
        #expect(pa.verify().isEmpty)
    }

    @Test func zonesSplitAtFourGiBAndDMA32IsTheFallback() throws {
        let (pa, _) = try makePageAllocator(policy: .none, memory: .gib(8))
        #expect(pa.buddyinfo.count == 2)
        #expect(pa.buddyinfo[1].hasPrefix("Node 0, zone   Normal "))
        // GFP_HIGHUSER: ZONE_NORMAL first.
        #expect(pa.allocPages(order: .base, keyid: .tme, gfp: .highUser) == PFN(1 << 20))
        #expect(pa.allocPages(order: .base, keyid: .tme, gfp: [.dma32]) == PFN(0))
        // Exhaust NORMAL: the next allocation falls back to DMA32.
        for _ in 0..<1023 { _ = pa.allocPages(order: .max, keyid: .tme, gfp: []) }
        let low = pa.allocPages(order: .max, keyid: .tme, gfp: [])
        #expect(low != nil && low!.rawValue < 1 << 20)
        #expect(pa.verify().isEmpty)
    }

    @Test func outOfMemoryReturnsNil() throws {
        let (pa, _) = try makePageAllocator(policy: .none)
        for _ in 0..<16 { #expect(pa.allocPages(order: .max, keyid: .tme, gfp: []) != nil) }
        #expect(pa.freeFrames == 0)
        #expect(pa.allocPages(order: .base, keyid: .tme, gfp: []) == nil)
        #expect(pa.allocPages(order: PageOrder(11), keyid: .tme, gfp: []) == nil)
        #expect(pa.verify() == ["alloc_pages: order 11 > MAX_PAGE_ORDER"])
    }

    @Test func sameSequenceGivesSameResults() throws {
        func run() throws -> ([UInt64], [String], UInt64) {
            let (pa, _) = try makePageAllocator(policy: .integrated)
            var rng = PageAllocRNG(seed: 7)
            var live: [(PFN, PageOrder)] = []
            var out: [UInt64] = []
            for _ in 0..<400 {
                if !live.isEmpty && Int.random(in: 0..<3, using: &rng) == 0 {
                    let i = Int.random(in: 0..<live.count, using: &rng)
                    pa.freePages(live[i].0, order: live[i].1)
                    live.remove(at: i)
                } else {
                    let o = PageOrder(UInt8(Int.random(in: 0...3, using: &rng)))
                    let k = KeyID(UInt16(Int.random(in: 0...3, using: &rng)))
                    if let p = pa.allocPages(order: o, keyid: k, gfp: .zero) { live.append((p, o)); out.append(p.rawValue) }
                }
            }
            return (out, pa.buddyinfo, pa.machine.clock.cycles)
        }
        let a = try run(), b = try run()
        #expect(a.0 == b.0)
        #expect(a.1 == b.1)
        #expect(a.2 == b.2)
    }

    @Test func structPageAccessors() throws {
        let (pa, _) = try makePageAllocator(policy: .none)
        let thp = try #require(pa.allocPages(order: .pmd, keyid: .tme, gfp: .transHuge))
        #expect(pa.compoundOrder(thp) == .pmd)
        #expect(pa.compoundHead(thp.advanced(by: 300)) == thp)
        #expect(pa.flags(thp).contains(.head))
        #expect(pa.flags(thp.advanced(by: 1)).contains(.tail))
        #expect(pa.flags(thp).contains(.movable))
        pa.setMapping(thp, mapping: 77, index: 1000)
        #expect(pa.mapping(thp.advanced(by: 5)) == 77)
        #expect(pa.index(thp.advanced(by: 5)) == 1005)
        pa.getPage(thp.advanced(by: 7))                 // folio reference
        #expect(pa.refcount(thp) == 2)
        pa.setFlags(thp, [.anon, .buddy])               // buddy is allocator-owned: ignored
        #expect(pa.flags(thp).contains(.anon))
        #expect(!pa.flags(thp).contains(.buddy))
        pa.incMapcount(thp)
        #expect(pa.mapcount(thp) == 1)
        pa.decMapcount(thp)
        pa.putPage(thp.advanced(by: 3))
        #expect(pa.refcount(thp) == 1)
        #expect(pa.freeFrames == 16384 - 512)
        pa.putPage(thp)                                 // last reference: the whole block is freed
        #expect(pa.freeFrames == 16384)
        #expect(pa.verify().isEmpty)
        pa.putPage(thp)                                 // double free: recorded, not crashing
        #expect(pa.verify().count == 1)
    }

    @Test func splitPageGivesIndependentBasePages() throws {
        let (pa, _) = try makePageAllocator(policy: .none)
        let thp = try #require(pa.allocPages(order: .pmd, keyid: .tme, gfp: .transHuge))
        pa.setFlags(thp, .anon)
        pa.setMapping(thp, mapping: 9, index: 64)
        pa.splitPage(thp)
        #expect(pa.compoundOrder(thp) == .base)
        #expect(pa.compoundHead(thp.advanced(by: 3)) == thp.advanced(by: 3))
        #expect(pa.refcount(thp.advanced(by: 3)) == 1)
        #expect(pa.index(thp.advanced(by: 3)) == 67)
        #expect(pa.flags(thp.advanced(by: 3)).contains(.anon))
        #expect(pa.verify().isEmpty)
        for i in 0..<512 { pa.putPage(thp.advanced(by: i)) }
        #expect(pa.freeFrames == 16384)
        #expect(pa.buddyCounts[10] == 16)
        #expect(pa.verify().isEmpty)
    }

    @Test func badFreesAreReportedNotCrashing() throws {
        let (pa, _) = try makePageAllocator(policy: .none)
        let p = try #require(pa.allocPages(order: .base, keyid: .tme, gfp: []))
        pa.incMapcount(p)
        pa.freePages(p, order: .base)
        #expect(pa.verify().contains { $0.contains("mapcount 1") })
        pa.freePages(PFN(1 << 40), order: .base)
        #expect(pa.verify().contains { $0.contains("beyond memory") })
        // The final put takes a page off the LRU itself (__page_cache_release); PG_locked is a bug.
        let q = try #require(pa.allocPages(order: .base, keyid: .tme, gfp: []))
        pa.setFlags(q, [.lru, .active, .mlocked])
        let before = pa.verify().count
        pa.putPage(q)
        #expect(pa.verify().count == before)
        #expect(pa.flags(q) == .buddy)
        let r = try #require(pa.allocPages(order: .base, keyid: .tme, gfp: []))
        pa.setFlags(r, .locked)
        pa.putPage(r)
        #expect(pa.verify().contains { $0.contains("freed with flags locked") })
        // A hardware-poisoned page is taken out of use for good (memory_failure).
        let h = try #require(pa.allocPages(order: .base, keyid: .tme, gfp: []))
        pa.setFlags(h, .hwPoison)
        let free = pa.freeFrames
        pa.putPage(h)
        #expect(pa.freeFrames == free)
        #expect(pa.allocPages(order: .base, keyid: .tme, gfp: []) != h)
    }
}
