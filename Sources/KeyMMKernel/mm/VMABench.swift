// VMA scaling measurement (`keymm bench vmas`): the cost of mprotect and munmap on an
// address space with N VMAs, to show the VMA tree keeps them O(log n).
//
// The address space is N one-page anonymous VMAs with alternating protections (so none
// merge). One operation is a pair that returns to the same layout: mprotect a VMA to its
// neighbours' protection (a three-way merge) and back (a split into three), or munmap a VMA
// and map it again. This measures the simulator itself, so it reads the host's clock; the
// model's own (modeled) time is reported alongside from the cost clock.
import Foundation
import KeyMMBase
import KeyMMHardware

/// CPU time of the calling thread in nanoseconds (not affected by other processes' turns).
func threadCPUNanoseconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
    return Double(ts.tv_sec) * 1e9 + Double(ts.tv_nsec)
}

/// One row of the VMA scaling measurement.
public struct VMAScalingResult: Sendable {
    /// VMAs requested.
    public let count: Int
    /// VMAs actually in the address space when measuring.
    public let vmas: Int
    /// Host CPU nanoseconds per operation pair (mprotect there and back, or munmap + mmap).
    public let nsPerOp: Double
    /// Modeled cycles per operation pair.
    public let modeledCyclesPerOp: Double
}

/// Measures mprotect/munmap cost with each of `vmaCounts` VMAs in one process. The address
/// spaces are built first; then `rounds` rounds alternate between them, each running
/// operations/rounds operation pairs, and the fastest round of each counts (the minimum is
/// what the code costs; slower rounds measured other processes sharing the CPU). Time is the
/// thread's CPU time, so waiting for the CPU does not count.
public func vmaScalingBenchmark(vmaCounts: [Int], operations: Int = 20_000, rounds: Int = 5) -> [VMAScalingResult] {
    struct Setup { let n: Int; let machine: Machine; let kernel: Kernel; let pid: ProcessID; var rng: UInt64; var best: Double; var cycles: Double }
    let base: UInt64 = 0x1000_0000_0000
    let page = UInt64(pageSize)
    var setups: [Setup] = []
    for n in vmaCounts {
        var mc = MachineConfig()
        mc.memory = .mib(16)
        mc.cacheSize = .mib(1)
        var kc = KernelConfig()
        kc.maxMapCount = max(65530, n + 16)
        guard let machine = try? Machine(config: mc), let k = try? Kernel(machine: machine, config: kc) else { continue }
        let task = k.spawn()
        let rw: VMFlags = [.read, .write, .mayRead, .mayWrite, .mayExec, .account]
        let ro: VMFlags = [.read, .mayRead, .mayWrite, .mayExec]
        for i in 0..<n {
            let a = base + UInt64(i) * page
            let v = k.vmAreaAlloc(start: VirtAddr(a), end: VirtAddr(a + page), pgoff: a >> pageShift,
                                  flags: i % 2 == 0 ? rw : ro)
            task.mm.vmas.insert(v)
        }
        task.mm.totalVM = UInt64(n)
        setups.append(Setup(n: n, machine: machine, kernel: k, pid: task.pid,
                            rng: 0x9E37_79B9_7F4A_7C15 ^ UInt64(n), best: .infinity, cycles: 0))
    }
    let perRound = max(operations / max(rounds, 1), 1)
    for _ in 0..<max(rounds, 1) {
        for s in setups.indices {
            let k = setups[s].kernel, pid = setups[s].pid, n = setups[s].n
            var rng = setups[s].rng
            let cycles0 = setups[s].machine.clock.cycles
            let start = threadCPUNanoseconds()
            for op in 0..<perRound {
                rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17
                let i = Int(rng % UInt64(max(n - 2, 1))) + 1
                let a = VirtAddr(base + UInt64(i) * page)
                let isRW = i % 2 == 0
                if op % 2 == 0 {
                    _ = k.mprotect(pid, addr: a, length: page, prot: isRW ? .read : [.read, .write])
                    _ = k.mprotect(pid, addr: a, length: page, prot: isRW ? [.read, .write] : .read)
                } else {
                    _ = k.munmap(pid, addr: a, length: page)
                    _ = k.mmap(pid, addr: a, length: page, prot: isRW ? [.read, .write] : .read,
                               flags: [.private, .anonymous, .fixed])
                }
            }
            let ns = threadCPUNanoseconds() - start
            setups[s].rng = rng
            setups[s].best = min(setups[s].best, ns / Double(perRound))
            setups[s].cycles = Double(setups[s].machine.clock.cycles - cycles0) / Double(perRound)
        }
    }
    var out: [VMAScalingResult] = []
    for s in setups {
        out.append(VMAScalingResult(count: s.n, vmas: s.kernel.tasks[s.pid]?.mm.mapCount ?? 0, nsPerOp: s.best,
                                    modeledCyclesPerOp: s.cycles))
        s.kernel.exit(s.pid)
    }
    return out
}
