// The `vmas` workload: the cost of mprotect and munmap in a process with 1k, 10k, 100k and 1M VMAs
// (quick: 1k and 10k), to show the VMA tree keeps them logarithmic (issue 3: 1M costs at most 2x 1k).
//
// For each N: a fresh kernel with vm.max_map_count raised to N + 1024; N one-page anonymous
// MAP_FIXED mappings with alternating protections (PROT_READ|PROT_WRITE, PROT_READ) so none merge;
// then a measured batch of operation pairs on VMAs picked in the middle by a seeded xorshift:
// even pairs mprotect a VMA to its neighbours' protection (a three-way merge) and back (a split
// into three); odd pairs munmap it and map it again (MAP_FIXED). Each pair returns to the same
// layout, so every pair sees N VMAs. Host time is thread CPU time; modeled cycles come from the
// cost clock (vma_op, syscall, pte/TLB charges).
//
// One row (policy `all`: the allocator policy plays no part). Extras per N (`1k`, `10k`, `100k`,
// `1m`): `ns_per_op_N` (host ns per pair), `cycles_per_op_N` (modeled), `vmas_N` (VMAs when
// measured); and `ratio_ns_1m_vs_1k` (or the largest N measured vs 1k), `ratio_cycles_..`.
// modeled_cycles / counters: the measured batches of every N summed.
//
// Invariant: modeled values depend only on config and costs (fixed N list, fixed seeded picks).
import Foundation
import KeyMMBase
import KeyMMHardware
import KeyMMKernel

/// mprotect/munmap cost against the number of VMAs.
public struct VMAsWorkload: BenchWorkload {
    public init() {}
    public var name: String { "vmas" }
    public var summary: String { "mprotect (merge+split) and munmap+mmap cost with 1k, 10k, 100k, 1M VMAs" }
    public var policyIndependent: Bool { true }

    static func counts(quick: Bool) -> [Int] { quick ? [1_000, 10_000] : [1_000, 10_000, 100_000, 1_000_000] }
    static func operations(quick: Bool) -> Int { quick ? 2_000 : 20_000 }

    static func label(_ n: Int) -> String {
        n >= 1_000_000 ? "\(n / 1_000_000)m" : n >= 1_000 ? "\(n / 1_000)k" : String(n)
    }

    public func run(_ context: BenchContext) throws -> BenchResult {
        let wall0 = BenchHost.wallSeconds()
        var extra: [String: JSONValue] = [:]
        var totalCycles: UInt64 = 0
        var counters: [String: UInt64] = [:]
        var perN: [(n: Int, ns: Double, cycles: Double)] = []
        let ops = Self.operations(quick: context.quick)
        for n in Self.counts(quick: context.quick) {
            var ctx = context
            ctx.policy = nil
            let bk = try BenchKernel(ctx) { c in
                c.kernel.maxMapCount = max(c.kernel.maxMapCount, n + 1024)
                c.machine.memory = .mib(64)
                c.machine.cacheSize = .mib(1)
                c.kernel.overcommitPages = UInt64(n) * 2 + 65536
            }
            let k = bk.kernel
            let task = k.spawn()
            let pid = task.pid
            let base: UInt64 = 0x1000_0000_0000
            let page = UInt64(pageSize)
            let rw: Prot = [.read, .write]
            let ro: Prot = .read
            for i in 0..<n {
                let r = k.mmap(pid, addr: VirtAddr(base + UInt64(i) * page), length: page, prot: i % 2 == 0 ? rw : ro,
                               flags: [.private, .anonymous, .fixed])
                guard case .success = r else { throw BenchWorkloadError("vmas: mmap \(i) of \(n) failed: \(r)") }
            }
            let vmas = task.mm.mapCount
            var rng: UInt64 = 0x9E37_79B9_7F4A_7C15 ^ UInt64(n)
            let start = bk.mark()
            let t0 = BenchHost.threadCPUSeconds()
            for op in 0..<ops {
                rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17
                let i = Int(rng % UInt64(max(n - 2, 1))) + 1
                let a = VirtAddr(base + UInt64(i) * page)
                let isRW = i % 2 == 0
                if op % 2 == 0 {
                    _ = k.mprotect(pid, addr: a, length: page, prot: isRW ? ro : rw)
                    _ = k.mprotect(pid, addr: a, length: page, prot: isRW ? rw : ro)
                } else {
                    _ = k.munmap(pid, addr: a, length: page)
                    _ = k.mmap(pid, addr: a, length: page, prot: isRW ? rw : ro, flags: [.private, .anonymous, .fixed])
                }
            }
            let cpu = BenchHost.threadCPUSeconds() - t0
            let d = bk.delta(since: start)
            guard task.mm.mapCount == vmas else { throw BenchWorkloadError("vmas: layout changed (\(vmas) -> \(task.mm.mapCount) VMAs)") }
            totalCycles &+= d.cycles
            for (key, v) in d.counters { counters[key, default: 0] &+= v }
            let ns = cpu * 1e9 / Double(ops)
            let cyc = Double(d.cycles) / Double(ops)
            let l = Self.label(n)
            extra["ns_per_op_\(l)"] = .double(benchRound(ns, 1))
            extra["cycles_per_op_\(l)"] = .double(benchRound(cyc, 1))
            extra["vmas_\(l)"] = .int(Int64(vmas))
            perN.append((n, ns, cyc))
            k.exit(pid)
        }
        if let first = perN.first, let last = perN.last, perN.count > 1 {
            let l = Self.label(last.n) + "_vs_" + Self.label(first.n)
            extra["ratio_ns_\(l)"] = .double(benchRound(last.ns / first.ns))
            extra["ratio_cycles_\(l)"] = .double(benchRound(last.cycles / first.cycles))
        }
        extra["operations_per_n"] = .int(Int64(ops))
        extra["timing"] = .string("thread CPU time per operation pair (mprotect there and back, or munmap + mmap)")
        let row = BenchRow(workload: name, policy: "all", modeledCycles: totalCycles, counters: counters,
                           wallSeconds: BenchHost.wallSeconds() - wall0, extra: extra)
        return BenchResult(row: row)
    }
}
