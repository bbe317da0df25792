// The VMA B+tree: random insertions and removals checked against a sorted reference, every
// lookup (find_vma, vma_lookup, find_vma_prev, prev/next, range iteration) against a
// linear scan, and the structural invariants after every step.
import Testing
import KeyMMBase
@testable import KeyMMKernel

@Suite struct VMATreeTests {
    /// A VMA of `pages` pages at page `p` (just the range matters here).
    func vma(_ p: UInt64, _ pages: UInt64 = 1) -> VMA {
        VMA(start: VirtAddr(p << 12), end: VirtAddr((p + pages) << 12), pgoff: p, flags: [.read],
            pageProt: PageProt(vmFlags: [.read]))
    }

    func reference(find addr: UInt64, in sorted: [VMA]) -> VMA? {
        sorted.first { $0.vmEnd.rawValue > addr }
    }

    @Test func randomInsertRemoveMatchesReference() {
        let tree = VMATree()
        var present: [UInt64: VMA] = [:]          // start page -> VMA (2-page slots, 1-2 pages long)
        var rng = DiffRNG(seed: 42)
        for step in 0..<6000 {
            let slot = UInt64(rng.int(3000)) * 2
            if let v = present[slot] {
                #expect(tree.remove(v))
                present[slot] = nil
            } else {
                let v = vma(slot, UInt64(1 + rng.int(2)))
                tree.insert(v)
                present[slot] = v
            }
            if step % 500 == 0 || step < 200 {
                #expect(tree.check() == nil)
            }
        }
        #expect(tree.check() == nil)
        #expect(tree.count == present.count)
        let sorted = present.values.sorted { $0.vmStart < $1.vmStart }
        #expect(Array(tree).map(\.vmStart) == sorted.map(\.vmStart))
        for _ in 0..<3000 {
            let addr = UInt64(rng.int(6100 << 12))
            let want = reference(find: addr, in: sorted)
            #expect(tree.findVMA(VirtAddr(addr)) === want)
            let containing = want.flatMap { $0.vmStart.rawValue <= addr ? $0 : nil }
            #expect(tree.lookup(VirtAddr(addr)) === containing)
            let (v, prev) = tree.findVMAPrev(VirtAddr(addr))
            #expect(v === want)
            let wantPrev = sorted.last { $0.vmEnd.rawValue <= (want?.vmStart.rawValue ?? UInt64.max) && $0 !== want }
            #expect(prev === wantPrev)
        }
        // prev/next of every element.
        for (i, v) in sorted.enumerated() {
            #expect(tree.prev(of: v) === (i > 0 ? sorted[i - 1] : nil))
            #expect(tree.next(of: v) === (i + 1 < sorted.count ? sorted[i + 1] : nil))
        }
        // Range iteration.
        let lo = VirtAddr(1000 << 12), hi = VirtAddr(2000 << 12)
        #expect(tree.vmas(in: lo, hi).map(\.vmStart) == sorted.filter { $0.vmEnd > lo && $0.vmStart < hi }.map(\.vmStart))
    }

    @Test func removingEverythingLeavesAnEmptyTree() {
        let tree = VMATree()
        let all = (0..<5000).map { vma(UInt64($0) * 3) }
        for v in all { tree.insert(v) }
        #expect(tree.check() == nil)
        for v in all.reversed() where v.vmStart.rawValue % 2 == 0 { #expect(tree.remove(v)) }
        #expect(tree.check() == nil)
        for v in all where v.vmStart.rawValue % 2 != 0 { #expect(tree.remove(v)) }
        #expect(tree.isEmpty)
        #expect(tree.first.vma == nil && tree.last.vma == nil)
        #expect(tree.findVMA(VirtAddr(0)) == nil)
        #expect(!tree.remove(all[0]))
    }

    @Test func adjustKeepsTheTreeConsistent() throws {
        let k = try makeVMAKernel()
        let mm = k.spawn().mm
        let a = linkVMA(k, mm, 10, 20, pgoff: 10)
        linkVMA(k, mm, 30, 40, pgoff: 30)
        mm.adjust(a, start: VirtAddr(5 << 12), end: VirtAddr(25 << 12), pgoff: 5)
        #expect(mm.vmas.check() == nil)
        #expect(mm.findVMA(VirtAddr(6 << 12)) === a)
        #expect(mm.vma(containing: VirtAddr(24 << 12)) === a)
        #expect(mm.vma(containing: VirtAddr(26 << 12)) == nil)
    }

    /// The tree holds one reference per VMA in it (manual retain/release of its slots): every
    /// VMA it dropped (remove, replace, removeAll, deinit) is freed, none too early.
    @Test func slotsHoldExactlyOneReference() {
        weak var removed: VMA?
        weak var replaced: VMA?
        weak var cleared: VMA?
        weak var kept: VMA?
        var tree: VMATree? = VMATree()
        do {
            let all = (0..<300).map { vma(UInt64($0) * 2) }
            for v in all { tree?.insert(v) }
            removed = all[10]
            replaced = all[20]
            kept = all[30]
            #expect(tree?.remove(all[10]) == true)
            tree?.replace(all[20], with: vma(40))
        }
        #expect(removed == nil)
        #expect(replaced == nil)
        #expect(kept != nil && kept?.vmStart == VirtAddr(60 << 12))
        #expect(tree?.check() == nil)
        #expect(tree?.lookup(VirtAddr(40 << 12))?.vmEnd == VirtAddr(41 << 12))
        do {
            let v = vma(10_000)
            cleared = v
            tree?.insert(v)
        }
        #expect(cleared != nil)
        tree?.removeAll()
        #expect(cleared == nil && kept == nil)
        #expect(tree?.isEmpty == true && tree?.check() == nil)
        do {
            let v = vma(5)
            kept = v
            tree?.insert(v)
        }
        tree = nil
        #expect(kept == nil)
    }

    /// Sequential insertion (mmap placing bottom-up or top-down) leaves nodes nearly full, so
    /// 100k VMAs need four levels of fan-out 32 (half-full nodes would need five).
    @Test func sequentialInsertionBuildsFullNodes() {
        for descending in [false, true] {
            let tree = VMATree()
            let n: UInt64 = 100_000
            for i in 0..<n { tree.insert(vma(descending ? (n - i) * 2 : i * 2)) }
            #expect(tree.check() == nil)
            #expect(tree.height == 4)
            #expect(tree.findVMA(VirtAddr(3 << 12))?.vmStart == VirtAddr(4 << 12))
        }
    }
}
