// The whole-page fast paths (CachePageFastPath.swift) against the per-line path they replace: two
// identical machines run the same random mix of page zeroing, page and range flushes, loads,
// stores, copies and WBINVDs; one has an observer attached (the per-line path), the other none
// (the fast paths). Every tag, set record, MRU way, line, counter, cycle and DRAM byte must agree.
import Testing
import KeyMMBase
@testable import KeyMMHardware
#if canImport(Glibc)
import Glibc
#endif

@Suite struct CachePageFastPathTests {
    static func same<T>(_ a: borrowing OwnedBuffer<T>, _ b: borrowing OwnedBuffer<T>) -> Bool {
        unsafe (a.byteCount == b.byteCount && memcmp(a.raw(), b.raw(), a.byteCount) == 0)
    }

    static func sameState(_ a: Machine, _ b: Machine, frames: Int, dram: Bool) -> Bool {
        let x = a.cache, y = b.cache
        guard same(x.tags, y.tags), same(x.records, y.records), same(x.head, y.head), same(x.data, y.data) else { return false }
        guard x.validLines == y.validLines, a.clock.cycles == b.clock.cycles, a.clock.snapshot == b.clock.snapshot else { return false }
        return !dram || a.physRead(PhysAddr(0), count: frames * pageSize) == b.physRead(PhysAddr(0), count: frames * pageSize)
    }

    @Test("Fast and per-line paths leave the same cache, clock and DRAM",
          arguments: [(32, 1), (32, 3), (32, 16), (24, 4), (8, 20), (64, 2), (96, 3), (128, 4), (64, 16)])
    func fastPathEqualsPerLinePath(sets: Int, ways: Int) throws {
        let size = ByteCount(UInt64(64 * sets * ways))
        let fast = try smallMachine(cache: size, ways: ways)
        let slow = try smallMachine(cache: size, ways: ways)
        for m in [fast, slow] { for k: UInt16 in 1...3 { CacheTests.keyed(m, k) } }
        final class Count { var events = 0 }
        let seen = Count()
        slow.cache.observer = { _ in seen.events += 1 }
        let frames = 12   // 768 lines: several times every cache above, so pages evict pages
        var g = SeededGenerator(seed: UInt64(sets * 100 + ways))
        for step in 0..<1500 {
            let pfn = PFN(g.next() % UInt64(frames)), k = KeyID(UInt16(g.next() % 4))
            let op = g.next() % 16
            let off = Int(g.next() % UInt64(pageSize))
            let len = Int(g.next() % 300) + 1
            for m in [fast, slow] {
                switch op {
                case 0..<5: m.clearPage(pfn, keyid: k)
                case 5..<8: m.flushPage(pfn, keyid: k)
                case 8: m.clflush(PhysAddr(pfn.rawValue << 12 + UInt64(off)), keyid: k, length: len * 20)
                case 9..<11: m.write(PhysAddr(pfn.rawValue << 12 + UInt64(off)), keyid: k, bytes: [UInt8](repeating: UInt8(step & 0xFF), count: len))
                case 11..<13: _ = m.read(PhysAddr(pfn.rawValue << 12 + UInt64(off)), keyid: k, count: len)
                case 13: m.copyPage(from: pfn, srcKeyID: k, to: PFN((pfn.rawValue + 1) % UInt64(frames)), dstKeyID: KeyID(1))
                case 14: m.cache.invalidateCoherently(pfn, keyid: k)
                default: if step % 5 == 0 { m.wbinvd() } else { m.clearPage(pfn, keyid: k) }
                }
            }
            try #require(Self.sameState(fast, slow, frames: frames + 1, dram: step % 16 == 0 || step == 1499), "sets \(sets) ways \(ways) step \(step) op \(op)")
        }
        #expect(seen.events > 0)
        #expect(fast.clock.value(of: .evictions) > 0)
        #expect(fast.clock.count(of: .writeBack) > 0)
    }
}
