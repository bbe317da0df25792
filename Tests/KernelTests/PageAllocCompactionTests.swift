// Compaction and migration: an order-9 block made by migrating movable pages, the source's
// KeyID kept, references balanced, unmovable pages respected, refusals undone; and the sparse
// metadata of a 64 GiB machine.
import Testing
import KeyMMBase
import KeyMMHardware
import KeyMMKeys
@testable import KeyMMKernel

/// Fills a 64 MiB machine with order-0 movable pages (KeyID i % 3 under MKTME policies), each
/// tagged with mapping = its original PFN, then frees every odd page: 8192 free frames, no
/// free block above order 0.
private func fragmented(_ policy: AllocatorPolicy) throws -> (PageAllocator, KeyIDReferences, [PFN]) {
    let (pa, refs) = try makePageAllocator(policy: policy)
    var kept: [PFN] = []
    for i in 0..<16384 {
        let p = try #require(pa.allocPages(order: .base, keyid: KeyID(UInt16(i % 3)), gfp: .highUserMovable))
        #expect(p == PFN(UInt64(i)))
        pa.setMapping(p, mapping: p.rawValue, index: 0)
    }
    for i in 0..<16384 {
        if i & 1 == 0 { kept.append(PFN(UInt64(i))) } else { pa.freePages(PFN(UInt64(i)), order: .base) }
    }
    #expect(pa.buddyCounts == [8192, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])
    return (pa, refs, kept)
}

@Suite("PageAlloc compaction")
struct PageAllocCompactionTests {
    @Test func compactionMakesAnOrder9BlockKeepingKeyIDs() throws {
        let (pa, refs, _) = try fragmented(.integrated)
        var moves: [(PFN, PFN)] = []
        pa.migratePage = { old, new in
            #expect(pa.pageKeyID(new) == pa.pageKeyID(old))    // the source's KeyID (the series' rule)
            moves.append((old, new))
            return true
        }
        #expect(pa.compact(order: .pmd, node: nil))
        #expect(pa.freeBlocks(order: .pmd) + pa.freeBlocks(order: .max) >= 1)
        // The first pageblock (256 used pages) moved to the top of the zone.
        #expect(moves.count == 256)
        #expect(moves.allSatisfy { $0.0.rawValue < 512 && $0.1.rawValue >= 16384 - 512 })
        for (old, new) in moves {
            #expect(pa.mapping(new) == old.rawValue)
            #expect(pa.refcount(new) == 1)
            #expect(pa.pageKeyID(new) == KeyID(UInt16(old.rawValue % 3)))
        }
        #expect(pa.machine.clock.value(of: .migratedPages) == 256)
        #expect(pa.freeFrames == 8192)
        // References: one per allocated 4K page of each KeyID.
        var perKey = [0, 0, 0]
        pa.forEachAllocatedBlock { p, _ in perKey[Int(pa.pageKeyID(p).rawValue)] += 1 }
        #expect(refs.count(KeyID(1)) == perKey[1])
        #expect(refs.count(KeyID(2)) == perKey[2])
        #expect(pa.verify().isEmpty)
    }

    @Test func unmovablePagesMakeAPageblockUnsuitable() throws {
        let (pa, _, kept) = try fragmented(.none)
        pa.setFlags(kept[0], .pinned)                     // pins pageblock 0
        var moved: [PFN] = []
        pa.migratePage = { old, _ in moved.append(old); return true }
        #expect(pa.compact(order: .pmd, node: NodeID(0)))
        #expect(moved.count == 256)
        #expect(moved.allSatisfy { $0.rawValue >= 512 && $0.rawValue < 1024 })
        pa.clearFlags(kept[0], .pinned)
        #expect(pa.verify().isEmpty)
    }

    @Test func refusedMigrationChangesNothing() throws {
        let (pa, refs, _) = try fragmented(.eager)
        let before = (pa.buddyCounts, refs.count(KeyID(1)), refs.count(KeyID(2)))
        pa.migratePage = { _, _ in false }
        #expect(!pa.compact(order: .pmd, node: nil))
        #expect(pa.buddyCounts == before.0)
        #expect(refs.count(KeyID(1)) == before.1)
        #expect(refs.count(KeyID(2)) == before.2)
        #expect(pa.verify().isEmpty)
        // A THP allocation with direct reclaim compacts, and fails cleanly when nothing moves.
        #expect(pa.allocPages(order: .pmd, keyid: KeyID(1), gfp: .transHuge) == nil)
        pa.migratePage = { _, _ in true }
        let thp = try #require(pa.allocPages(order: .pmd, keyid: KeyID(1), gfp: .transHuge))
        #expect(pa.compoundOrder(thp) == .pmd)
        #expect(pa.verify().isEmpty)
    }

    @Test func migrationToAnotherNodeKeepsTheKeyID() throws {
        let (pa, refs) = try makePageAllocator(policy: .eager, nodes: 2)
        let p = try #require(pa.allocPages(order: .base, keyid: KeyID(7), node: NodeID(0), gfp: .highUserMovable))
        pa.machine.write(p.physAddr, keyid: KeyID(7), bytes: Array("payload".utf8))
        pa.setMapping(p, mapping: 42, index: 3)
        pa.migratePage = { _, _ in true }
        let q = try #require(pa.migrate(p, to: NodeID(1)))
        #expect(pa.node(of: q) == NodeID(1))
        #expect(pa.pageKeyID(q) == KeyID(7))
        #expect(pa.mapping(q) == 42 && pa.index(q) == 3)
        #expect(pa.machine.read(q.physAddr, keyid: KeyID(7), count: 7) == Array("payload".utf8))
        #expect(refs.count(KeyID(7)) == 1)
        #expect(pa.pageKeyID(p) == .tme)                 // eager: the freed source went back to KeyID 0
        #expect(pa.verify().isEmpty)
    }

    @Test func sparseMetadataAt64GiB() throws {
        var c = MachineConfig()
        c.memory = .gib(64)
        c.cacheSize = .mib(1)
        let m = try Machine(config: c)
        let pa = PageAllocator(machine: m, policy: .integrated, keyidRefs: nil)
        #expect(pa.totalFrames == 16 << 20)
        #expect(pa.materializedSections == 0)
        #expect(pa.metadataBytes == 512 * 8)             // the section table only
        // 1 GiB in THPs (no zeroing, so the test stays fast).
        for _ in 0..<512 { _ = try #require(pa.allocPages(order: .pmd, keyid: .tme, gfp: .transHugeLight)) }
        #expect(pa.materializedSections == 8)
        let bytesPerFrame = Double(pa.metadataBytes) / Double(pa.totalFrames)
        print("page metadata at 64 GiB with 1 GiB allocated: \(pa.metadataBytes) bytes = \(bytesPerFrame) bytes/frame")
        #expect(bytesPerFrame < 0.6)
        #expect(MemoryLayout<PageMeta>.stride == 32)
        #expect(pa.freeFrames == (63 << 30) >> 12)
        #expect(pa.verify().isEmpty)
    }
}
