// Random operation sequences under every policy, with verify() at checkpoints: the free lists,
// frame coverage, KeyID-0 pools and KeyID references stay consistent whatever the mix of
// allocations (orders 0-10, compound or not, KeyIDs 0-3), frees, get/put, splits, migrations
// and compactions, and everything returns to the boot state at the end.
import Testing
import KeyMMBase
import KeyMMHardware
import KeyMMKeys
@testable import KeyMMKernel

@Suite("PageAlloc stress")
struct PageAllocStressTests {
    @Test(arguments: AllocatorPolicy.allCases)
    func randomOperationsKeepTheAllocatorConsistent(policy: AllocatorPolicy) throws {
        let (pa, refs) = try makePageAllocator(policy: policy, nodes: 2, poisoning: policy == .integrated)
        var live: [PFN] = []                     // one entry per reference held (heads)
        pa.migratePage = { old, new in
            for i in live.indices where live[i] == old { live[i] = new }
            return true
        }
        var rng = PageAllocRNG(seed: 0x5eed + UInt64(policy.rawValue.count))
        for step in 1...1000 {
            switch Int.random(in: 0..<100, using: &rng) {
            case 0..<55:
                let r = Int.random(in: 0..<100, using: &rng)
                let o = PageOrder(UInt8(r < 80 ? 0 : r < 99 ? Int.random(in: 1...4, using: &rng) : Int.random(in: 9...10, using: &rng)))
                let k = KeyID(UInt16(Int.random(in: 0...3, using: &rng)))
                var gfp: GFPFlags = Bool.random(using: &rng) ? .highUserMovable : .kernel
                if o.rawValue > 0 && Bool.random(using: &rng) { gfp.insert(.compound) }
                if o.rawValue < 9 && Int.random(in: 0..<4, using: &rng) == 0 { gfp.insert(.zero) }
                let node = Bool.random(using: &rng) ? nil : NodeID(UInt8(Int.random(in: 0...1, using: &rng)))
                if let p = pa.allocPages(order: o, keyid: k, node: node, gfp: gfp) { live.append(p) }
            case 55..<85 where !live.isEmpty:
                let p = live.remove(at: Int.random(in: 0..<live.count, using: &rng))
                pa.putPage(p)
            case 85..<90 where !live.isEmpty:
                let i = Int.random(in: 0..<live.count, using: &rng)
                let head = live[i]
                if let o = pa.allocationOrder(head), o.rawValue > 0 {
                    // Every reference on the block becomes a reference on each 4K page.
                    let refsHeld = live.filter { $0 == head }.count
                    #expect(Int(pa.refcount(head)) == refsHeld)
                    pa.splitPage(head)
                    live.removeAll { $0 == head }
                    for _ in 0..<refsHeld { live += (0..<o.pages).map { head.advanced(by: $0) } }
                }
            case 90..<95 where !live.isEmpty:
                let i = Int.random(in: 0..<live.count, using: &rng)
                if pa.flags(live[i]).contains(.movable) {
                    _ = pa.migrate(live[i], to: NodeID(UInt8(Int.random(in: 0...1, using: &rng))))
                }
            case 95..<97:
                _ = pa.compact(order: .pmd, node: nil)
            case 97..<100 where !live.isEmpty:
                let p = live[Int.random(in: 0..<live.count, using: &rng)]
                pa.getPage(p)
                live.append(p)
            default:
                break
            }
            if step % 250 == 0 { #expect(pa.verify().isEmpty, "step \(step)") }
        }
        #expect(pa.verify().isEmpty)
        for p in live { pa.putPage(p) }
        #expect(pa.verify().isEmpty)
        #expect(pa.freeFrames == pa.totalFrames)
        for k in 1...3 { #expect(refs.count(KeyID(UInt16(k))) == 0) }
        pa.drainKeyIDLists()
        #expect(pa.buddyCounts == [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 16])
    }
}
