// MKTME policies: exact flushes, zeroings and KeyID switches per scripted alloc/free sequence,
// KeyID reference balance (including a THP split and freed as 4K pages), the cache-coherence
// reason for the flush, khugepaged's prep, and page poisoning.
import Testing
import KeyMMBase
import KeyMMHardware
import KeyMMKeys
@testable import KeyMMKernel

/// (flushed lines, zeroed pages, KeyID switches) so far.
private func tally(_ pa: PageAllocator) -> (flushed: UInt64, zeroed: UInt64, switches: UInt64) {
    let c = pa.machine.clock
    return (c.count(of: .clflushLine), c.count(of: .zeroPage), c.value(of: .keyidSwitches))
}

private let k1 = KeyID(1), k2 = KeyID(2)

@Suite("PageAlloc policies")
struct PageAllocPolicyTests {
    @Test func integratedFlushesOnlyWhenTheKeyIDChanges() throws {
        let (pa, refs) = try makePageAllocator(policy: .integrated)
        let p = try #require(pa.allocPages(order: .base, keyid: k1, gfp: .zero))
        #expect(tally(pa) == (64, 1, 1))                 // fresh page: KeyID 0 -> 1, flushed through 0
        #expect(pa.pageKeyID(p) == k1)
        #expect(refs.count(k1) == 1)
        pa.freePages(p, order: .base)
        #expect(tally(pa) == (64, 1, 1))                 // free: nothing, the page keeps KeyID 1
        #expect(pa.pageKeyID(p) == k1)
        #expect(refs.count(k1) == 0)
        #expect(pa.allocPages(order: .base, keyid: k1, gfp: .zero) == p)
        #expect(tally(pa) == (64, 2, 1))                 // same KeyID again: no flush
        pa.freePages(p, order: .base)
        #expect(pa.allocPages(order: .base, keyid: k2, gfp: .zero) == p)
        #expect(tally(pa) == (128, 3, 2))                // KeyID 1 -> 2: flushed through 1
        pa.freePages(p, order: .base)
        #expect(pa.allocPages(order: .base, keyid: .tme, gfp: .zero) == p)
        #expect(tally(pa) == (192, 4, 3))                // back to KeyID 0 also flushes
        pa.freePages(p, order: .base)
        #expect(pa.verify().isEmpty)
    }

    @Test func wrapperFlushesOnEveryAllocAndFreeOfAnEncryptedPage() throws {
        let (pa, refs) = try makePageAllocator(policy: .wrapper)
        let p = try #require(pa.allocPages(order: .base, keyid: k1, gfp: .zero))
        #expect(tally(pa) == (64, 2, 1))                 // zero through 0, flush, set, zero through 1
        #expect(refs.count(k1) == 1)
        pa.freePages(p, order: .base)
        #expect(tally(pa) == (128, 2, 2))                // flush through 1, back to KeyID 0
        #expect(pa.pageKeyID(p) == .tme)
        #expect(refs.count(k1) == 0)
        #expect(pa.allocPages(order: .base, keyid: k1, gfp: .zero) == p)
        pa.freePages(p, order: .base)
        #expect(tally(pa) == (256, 4, 4))                // the same KeyID again costs the same
        // An unencrypted page costs one zeroing and no flush.
        #expect(pa.allocPages(order: .base, keyid: .tme, gfp: .zero) == p)
        pa.freePages(p, order: .base)
        #expect(tally(pa) == (256, 5, 4))
        #expect(pa.verify().isEmpty)
    }

    @Test func eagerFlushesOnAllocAndFreeButZeroesOnce() throws {
        let (pa, refs) = try makePageAllocator(policy: .eager)
        let p = try #require(pa.allocPages(order: .base, keyid: k1, gfp: .zero))
        #expect(tally(pa) == (64, 1, 1))
        pa.freePages(p, order: .base)
        #expect(tally(pa) == (128, 1, 2))
        #expect(pa.pageKeyID(p) == .tme)
        #expect(pa.allocPages(order: .base, keyid: k1, gfp: .zero) == p)
        pa.freePages(p, order: .base)
        #expect(tally(pa) == (256, 2, 4))
        #expect(refs.count(k1) == 0)
        #expect(pa.verify().isEmpty)
    }

    @Test func noneIgnoresKeyIDs() throws {
        let (pa, refs) = try makePageAllocator(policy: .none)
        let p = try #require(pa.allocPages(order: PageOrder(2), keyid: k1, gfp: .zero))
        #expect(pa.pageKeyID(p) == .tme)
        #expect(refs.count(k1) == 0)
        pa.freePages(p, order: PageOrder(2))
        #expect(tally(pa) == (0, 4, 0))
        #expect(pa.verify().isEmpty)
    }

    @Test(arguments: [AllocatorPolicy.wrapper, .integrated, .eager, .perKeyID])
    func keyIDReferencesArePerFourKiB(policy: AllocatorPolicy) throws {
        let (pa, refs) = try makePageAllocator(policy: policy)
        let block = try #require(pa.allocPages(order: PageOrder(3), keyid: KeyID(5), gfp: []))
        #expect(refs.count(KeyID(5)) == 8)
        pa.freePages(block, order: PageOrder(3))
        #expect(refs.count(KeyID(5)) == 0)
        // A THP split and freed as 4K pages balances (docs/sources.md, seed 000).
        let thp = try #require(pa.allocPages(order: .pmd, keyid: KeyID(3), gfp: .transHuge))
        #expect(refs.count(KeyID(3)) == 512)
        pa.splitPage(thp)
        for i in 0..<100 { pa.putPage(thp.advanced(by: i)) }
        #expect(refs.count(KeyID(3)) == 412)
        #expect(pa.verify().isEmpty)
        for i in 100..<512 { pa.putPage(thp.advanced(by: i)) }
        #expect(refs.count(KeyID(3)) == 0)
        #expect(pa.freeFrames == pa.totalFrames)
        #expect(pa.verify().isEmpty)
    }

    @Test func verifyCatchesAMissingReference() throws {
        let (pa, refs) = try makePageAllocator(policy: .integrated)
        _ = try #require(pa.allocPages(order: PageOrder(1), keyid: KeyID(4), gfp: []))
        refs.put(KeyID(4), 1)
        #expect(pa.verify().contains { $0.contains("2 allocated pages but only 1 references") })
    }

    /// The reason for the flush: without it a dirty line of the old KeyID could later be written
    /// back over the new KeyID's data. With every policy the new owner reads exactly what it wrote.
    @Test(arguments: AllocatorPolicy.allCases)
    func reusedPageReadsBackThroughTheNewKeyID(policy: AllocatorPolicy) throws {
        let (pa, _) = try makePageAllocator(policy: policy)
        let m = pa.machine
        let p = try #require(pa.allocPages(order: .base, keyid: k1, gfp: .zero))
        m.write(p.physAddr, keyid: pa.pageKeyID(p), bytes: Array(repeating: 0x5a, count: pageSize))
        pa.freePages(p, order: .base)
        pa.drainKeyIDLists()                             // per-keyid: make the page reachable for KeyID 2
        let q = try #require(pa.allocPages(order: .base, keyid: k2, gfp: .zero))
        #expect(q == p)
        m.write(q.physAddr, keyid: pa.pageKeyID(q), bytes: Array("tenant two".utf8))
        m.wbinvd()
        let back = m.read(q.physAddr, keyid: pa.pageKeyID(q), count: pageSize)
        #expect(Array(back.prefix(10)) == Array("tenant two".utf8))
        #expect(back.dropFirst(10).allSatisfy { $0 == 0 })
        #expect(m.clock.value(of: .lostLines) == 0)
    }

    @Test func khugepagedPrepMovesReferencesToTheVMAKeyID() throws {
        let (pa, refs) = try makePageAllocator(policy: .integrated)
        let thp = try #require(pa.allocPages(order: .pmd, keyid: .tme, gfp: .transHuge))
        #expect(refs.count(k2) == 0)
        let before = tally(pa)
        pa.prepEncryptedPage(thp, order: .pmd, keyid: k2, zero: false)
        #expect(tally(pa).switches - before.switches == 512)
        #expect(tally(pa).flushed - before.flushed == 512 * 64)
        #expect(refs.count(k2) == 512)
        #expect(pa.pageKeyID(thp.advanced(by: 511)) == k2)
        pa.freePages(thp, order: .pmd)
        #expect(refs.count(k2) == 0)
        #expect(pa.verify().isEmpty)
    }

    @Test(arguments: AllocatorPolicy.allCases)
    func poisoningDetectsAWriteAfterFree(policy: AllocatorPolicy) throws {
        let (pa, _) = try makePageAllocator(policy: policy, poisoning: true)
        let m = pa.machine
        // A clean cycle: no report.
        let p = try #require(pa.allocPages(order: .base, keyid: k1, gfp: .zero))
        pa.freePages(p, order: .base)
        #expect(m.read(p.physAddr, keyid: pa.pageKeyID(p), count: 16) == Array(repeating: pagePoisonByte, count: 16))
        #expect(pa.allocPages(order: .base, keyid: k1, gfp: .zero) == p)
        #expect(pa.verify().isEmpty)
        pa.freePages(p, order: .base)
        // A stray write through the freed page's KeyID (a stale mapping) is caught at the next allocation.
        m.write(p.physAddr.advanced(by: 100), keyid: pa.pageKeyID(p), bytes: [1, 2, 3])
        #expect(pa.allocPages(order: .base, keyid: k1, gfp: []) == p)
        let report = pa.verify()
        #expect(report.count == 1)
        #expect(report.first?.contains("3 byte(s) changed while free, first at offset 100") == true)
        #expect(pa.poisonCorruptions == 1)
    }

    @Test func perKeyIDListsAvoidTheFlushWhenTenantsAlternate() throws {
        let (pa, refs) = try makePageAllocator(policy: .perKeyID)
        let (ia, _) = try makePageAllocator(policy: .integrated)
        for i in 0..<10 {
            for a in [pa, ia] {
                let p = try #require(a.allocPages(order: .base, keyid: i % 2 == 0 ? k1 : k2, gfp: .zero))
                a.freePages(p, order: .base)
            }
        }
        #expect(tally(pa) == (128, 10, 2))               // two first uses, then each KeyID reuses its own page
        #expect(tally(ia) == (640, 10, 10))              // integrated: the LIFO page always has the other KeyID
        #expect(refs.count(k1) == 0 && refs.count(k2) == 0)
        #expect(pa.freeFrames == pa.totalFrames)
        #expect(pa.verify().isEmpty)
    }

    @Test func perKeyIDListsAreBoundedAndDrainedUnderPressure() throws {
        let (pa, _) = try makePageAllocator(policy: .perKeyID)
        let pages = (0..<300).compactMap { _ in pa.allocPages(order: .base, keyid: k1, gfp: []) }
        for p in pages { pa.freePages(p, order: .base) }
        #expect(pa.keyidListed == 300 - PageAllocator.keyidListBatch)
        #expect(pa.freeFrames == pa.totalFrames)
        #expect(pa.verify().isEmpty)
        // The KeyID-0 allocation and a max-order block come from the buddy; when the buddy runs
        // dry the lists are drained.
        var blocks: [PFN] = []
        while let b = pa.allocPages(order: .max, keyid: .tme, gfp: []) { blocks.append(b) }
        #expect(pa.keyidListed == 0)
        #expect(blocks.count == 16)
        #expect(pa.freeFrames == 0)
        for b in blocks { pa.freePages(b, order: .max) }
        #expect(pa.verify().isEmpty)
    }

    @Test func poisoningIsOffByDefault() throws {
        let (pa, _) = try makePageAllocator(policy: .eager)
        let p = try #require(pa.allocPages(order: .base, keyid: .tme, gfp: []))
        pa.freePages(p, order: .base)
        pa.machine.write(p.physAddr, keyid: .tme, bytes: [9])
        _ = pa.allocPages(order: .base, keyid: .tme, gfp: [])
        #expect(pa.verify().isEmpty)
    }
}
