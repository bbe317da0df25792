// checker/*: the invariant checker's full sweep (what `keymm fuzz` runs after every call): every
// mm's page tables through the kernel's read-only page walk, every allocated frame, the KeyID
// counts, the cache and the allocator's self-check.
//
// Fixture (setup, outside the measurement): 4 processes (one forked), each with 16 anonymous
// regions of 256 pages, half encrypted with the process's "mktme" key, every page written
// (about 16k mapped PTEs, some shared copy-on-write), plus one 4 MiB THP-eligible region per
// process. Measured: one `fullCheck()` (one sweep); it must find nothing. One operation = one sweep.
import Benchmark
import KeyMM

final class CheckerFixture {
    let kernel: Kernel
    let checker: InvariantChecker

    init() throws {
        let machine = try Machine(config: MachineConfig())
        var kc = KernelConfig()
        kc.thp = .always
        kernel = try Kernel(machine: machine, config: kc)
        checker = InvariantChecker(kernel: kernel)
        let first = kernel.spawn()
        var tasks = [first]
        for _ in 0..<2 { tasks.append(kernel.spawn()) }
        for (n, t) in tasks.enumerated() {
            guard case .success(let serial) = kernel.addKey(t.pid, type: "mktme", description: "bench\(n)",
                                                            payload: "type=cpu algorithm=aes-xts-128", keyring: .userKeyring) else {
                throw HardwareError("checker benchmark: add_key failed")
            }
            for r in 0..<16 {
                let len = UInt64(256 * pageSize)
                guard case .success(let a) = kernel.mmap(t.pid, addr: VirtAddr(0), length: len, prot: .none,
                                                         flags: [.private, .anonymous]) else { throw HardwareError("checker benchmark: mmap failed") }
                let ok: Bool
                if r % 2 == 0 {
                    if case .success = kernel.encryptMprotect(t.pid, addr: a, length: len, prot: [.read, .write], serial: serial) { ok = true } else { ok = false }
                } else {
                    if case .success = kernel.mprotect(t.pid, addr: a, length: len, prot: [.read, .write]) { ok = true } else { ok = false }
                }
                guard ok else { throw HardwareError("checker benchmark: mprotect failed") }
                _ = kernel.memTouch(t, a, len, [.write])
            }
            let huge = UInt64(4 << 20)
            if case .success(let h) = kernel.mmap(t.pid, addr: VirtAddr(0), length: huge, prot: [.read, .write],
                                                  flags: [.private, .anonymous]) {
                _ = kernel.memTouch(t, h, huge, [.write])
            }
        }
        _ = kernel.fork(first.pid)
        _ = checker.fullCheck()
    }
}

func registerCheckerBenchmarks() {
    let box = FixtureBox<CheckerFixture>()
    var config = Benchmark.defaultConfiguration   // one sweep per sample (no .kilo scaling)
    config.maxDuration = .seconds(2)
    Benchmark("checker/full sweep (4 mms, ~16k PTEs + THPs)", configuration: config) { b in
        guard let f = box.value else { return b.error("checker fixture missing") }
        var found = 0
        measure(b) { found = f.checker.fullCheck().count }
        if found != 0 { b.error("the sweep found \(found) violations") }
    } setup: {
        box.value = try CheckerFixture()
    } teardown: {
        box.value = nil
    }
}
