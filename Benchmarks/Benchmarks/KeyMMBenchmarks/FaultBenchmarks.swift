// fault/*: first-touch write faults on anonymous memory through the whole kernel model, with the
// public calls the `faults` bench workload (KeyMMWorkloads/Bench/FaultsWorkload.swift) makes.
//
// Per sample (outside the measurement): mmap(NULL, 1000 pages, PROT_NONE, MAP_PRIVATE|MAP_ANONYMOUS)
// and encrypt_mprotect(PROT_READ|PROT_WRITE) with an "mktme" type=cpu key the process added
// (`fault/... (encrypted anon)`, default policy `integrated`), or plain mprotect with MKTME off
// (`fault/... (plain anon, policy none)`). Measured: the write to each of the 1,000 pages, each a
// first-touch fault (alloc_pages_vma with the VMA's KeyID, prep_encrypted_page, zeroing through
// the KeyID, the PTE; dirty lines evicted from the modeled cache go through the real AES-XTS
// engine). After the measurement: munmap. One operation = one fault.
//
// The eviction and flush paths:
//   fault/... (encrypted anon, 1 MiB cache: evicting)   every fault's clear_page evicts 64 dirty
//                                  lines of an earlier page and writes them back through the engine
//   fault/... (encrypted anon, policy wrapper)         the flushing policy: 128 clflush'd dirty
//                                  lines per fault (flush on alloc and free) with the default cache
import Benchmark
import KeyMM

/// A kernel with one process (and its mktme key, unless MKTME is off).
final class FaultFixture {
    let kernel: Kernel
    let task: TaskStruct
    let serial: KeySerial?
    static let pages = 1000
    var length: UInt64 { UInt64(Self.pages * pageSize) }

    init(policy: AllocatorPolicy, cache: ByteCount? = nil) throws {
        var mc = MachineConfig()
        if let cache { mc.cacheSize = cache }
        let machine = try Machine(config: mc)
        var kc = KernelConfig()
        kc.policy = policy
        kernel = try Kernel(machine: machine, config: kc)
        task = kernel.spawn()
        if policy == .none {
            serial = nil
        } else {
            switch kernel.addKey(task.pid, type: "mktme", description: "bench", payload: "type=cpu algorithm=aes-xts-128",
                                 keyring: .userKeyring) {
            case .success(let s): serial = s
            case .failure(let e): throw HardwareError("fault benchmark: add_key failed: \(e)")
            }
        }
    }

    /// mmap + (encrypt_)mprotect of a fresh, untouched region.
    func prepare() -> VirtAddr? {
        guard case .success(let a) = kernel.mmap(task.pid, addr: VirtAddr(0), length: length, prot: .none,
                                                 flags: [.private, .anonymous]) else { return nil }
        let r: Result<Void, Errno>
        if let serial {
            r = kernel.encryptMprotect(task.pid, addr: a, length: length, prot: [.read, .write], serial: serial)
        } else {
            r = kernel.mprotect(task.pid, addr: a, length: length, prot: [.read, .write])
        }
        guard case .success = r else { return nil }
        return a
    }

    deinit { kernel.exit(task.pid) }
}

func registerFaultBenchmarks() {
    let variants: [(String, AllocatorPolicy, ByteCount?)] = [
        ("fault/first-touch write (encrypted anon)", .integrated, nil),
        ("fault/first-touch write (plain anon, policy none)", .none, nil),
        ("fault/first-touch write (encrypted anon, 1 MiB cache: evicting)", .integrated, .mib(1)),
        ("fault/first-touch write (encrypted anon, policy wrapper)", .wrapper, nil),
    ]
    for (name, policy, cache) in variants {
        let box = FixtureBox<FaultFixture>()
        Benchmark(name, configuration: perOperation(3)) { b in
            guard let f = box.value, let a = f.prepare() else { return b.error("fault fixture: mmap/mprotect failed") }
            var faults = 0
            measure(b) { faults = f.kernel.memTouch(f.task, a, f.length, [.write]) }
            _ = f.kernel.munmap(f.task.pid, addr: a, length: f.length)
            if faults != FaultFixture.pages { b.error("touched \(faults) of \(FaultFixture.pages) pages") }
        } setup: {
            box.value = try FaultFixture(policy: policy, cache: cache)
        } teardown: {
            box.value = nil
        }
    }
}
