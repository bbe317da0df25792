// vma/*: the VMA tree at 1k and 100k VMAs.
//
// Fixture: a process with N one-page anonymous MAP_FIXED mappings with alternating protections
// (PROT_READ|PROT_WRITE, PROT_READ) so none merge (as VMAsWorkload, `keymm bench vmas`).
//   vma/find_vma N          find_vma at an address inside a VMA picked by a seeded xorshift
//   vma/mprotect split+merge N
//                           one operation = a pair: mprotect a middle VMA to its neighbours'
//                           protection (a three-way merge) and back (a split into three), so
//                           every pair sees N VMAs
import Benchmark
import KeyMM

/// A process with `count` unmergeable one-page VMAs.
final class VMAFixture {
    let kernel: Kernel
    let task: TaskStruct
    let count: Int
    static let base: UInt64 = 0x1000_0000_0000
    var rng: UInt64

    init(count: Int) throws {
        var mc = MachineConfig()
        mc.memory = .mib(64)
        mc.cacheSize = .mib(1)
        var kc = KernelConfig()
        kc.maxMapCount = max(kc.maxMapCount, count + 1024)
        kc.overcommitPages = UInt64(count) * 2 + 65536
        kernel = try Kernel(machine: try Machine(config: mc), config: kc)
        task = kernel.spawn()
        self.count = count
        rng = 0x9E37_79B9_7F4A_7C15 ^ UInt64(count)
        let page = UInt64(pageSize)
        for i in 0..<count {
            let r = kernel.mmap(task.pid, addr: VirtAddr(Self.base + UInt64(i) * page), length: page,
                                prot: i % 2 == 0 ? [.read, .write] : .read, flags: [.private, .anonymous, .fixed])
            guard case .success = r else { throw HardwareError("vma benchmark: mmap \(i) of \(count) failed") }
        }
        guard task.mm.mapCount == count else { throw HardwareError("vma benchmark: \(task.mm.mapCount) VMAs, want \(count)") }
    }

    /// A VMA index in 1..<count-1 (it has both neighbours).
    @inline(__always) func pick() -> Int { Int(xorshift(&rng) % UInt64(max(count - 2, 1))) + 1 }

    deinit { kernel.exit(task.pid) }
}

func registerVMABenchmarks() {
    for (label, n) in [("1k", 1_000), ("100k", 100_000)] {
        let box = FixtureBox<VMAFixture>()
        Benchmark("vma/find_vma \(label) VMAs", configuration: perOperation()) { b in
            guard let f = box.value else { return b.error("no VMA fixture") }
            let mm = f.task.mm
            let page = UInt64(pageSize)
            measure(b) {
                for _ in b.scaledIterations {
                    let i = f.pick()
                    blackHole(mm.findVMA(VirtAddr(VMAFixture.base + UInt64(i) * page + 123)))
                }
            }
        } setup: {
            box.value = try VMAFixture(count: n)
        } teardown: {
            box.value = nil
        }

        let box2 = FixtureBox<VMAFixture>()
        Benchmark("vma/mprotect split+merge \(label) VMAs", configuration: perOperation()) { b in
            guard let f = box2.value else { return b.error("no VMA fixture") }
            let k = f.kernel, pid = f.task.pid
            let page = UInt64(pageSize)
            measure(b) {
                for _ in b.scaledIterations {
                    let i = f.pick()
                    let a = VirtAddr(VMAFixture.base + UInt64(i) * page)
                    let isRW = i % 2 == 0
                    blackHole(k.mprotect(pid, addr: a, length: page, prot: isRW ? .read : [.read, .write]))
                    blackHole(k.mprotect(pid, addr: a, length: page, prot: isRW ? [.read, .write] : .read))
                }
            }
        } setup: {
            box2.value = try VMAFixture(count: n)
        } teardown: {
            if let f = box2.value, f.task.mm.mapCount != f.count {
                print("vma/mprotect split+merge \(label): layout changed to \(f.task.mm.mapCount) VMAs")
            }
            box2.value = nil
        }
    }
}
