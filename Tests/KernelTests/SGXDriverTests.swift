// The SGX driver (Sources/KeyMMKernel/sgx) through the kernel's API: the EPC allocator's rules and
// watermarks, both mm-tracking designs and their lifetimes, the mmu_notifier facility at mm
// teardown, SRCU grace periods, the reclaimer's round trips and IPIs, the device's absence
// without an EPC. The syscall-level behaviour is in scenarios/sgx (SGXScenarioTests).
import Testing
import KeyMMBase
import KeyMMHardware
@testable import KeyMMKernel

@Suite struct SGXDriverTests {
    static let base: UInt64 = 0x7f00_0000_0000

    func kernel(epc: ByteCount = .kib(512), tracking: SGXMMTracking = .notifier, bugs: InjectedBugs = []) throws -> (Kernel, TaskStruct) {
        var mc = MachineConfig()
        mc.memory = .mib(64)
        mc.cacheSize = .kib(256)
        mc.epc = epc
        var kc = KernelConfig()
        kc.sgxMMTracking = tracking
        kc.bugs = bugs
        let k = try Kernel(machine: try Machine(config: mc), config: kc)
        return (k, k.spawn(pid: ProcessID(1)))
    }

    /// An initialized enclave of `pages` RW pages at `base`, mapped; returns its fd.
    @discardableResult
    func build(_ k: Kernel, _ t: TaskStruct, pages: Int, size: UInt64 = 0x100000, map: Bool = true) throws -> Int32 {
        let fd = try k.openat(t.pid, path: "/dev/sgx_enclave", flags: OpenFlags(rawValue: 2)).get()
        try k.sgxIoctl(t, fd: fd, .create(size: size, base: Self.base, attributes: 0x4)).get()
        try k.sgxIoctl(t, fd: fd, .addPages(src: nil, offset: 0, length: UInt64(pages) << 12, secinfo: 0x203, flags: 0)).get()
        try k.sgxIoctl(t, fd: fd, .initialize).get()
        if map {
            _ = try k.mmap(t.pid, addr: VirtAddr(Self.base), length: UInt64(pages) << 12, prot: [.read, .write],
                           flags: [.shared, .fixed], fd: fd, offset: 0).get()
        }
        return fd
    }

    @Test func noEPCNoDevice() throws {
        var mc = MachineConfig()
        mc.memory = .mib(16)
        let k = try Kernel(machine: try Machine(config: mc), config: KernelConfig())
        let t = k.spawn(pid: ProcessID(1))
        #expect(k.sgx == nil)
        #expect(k.openat(t.pid, path: "/dev/sgx_enclave", flags: OpenFlags(rawValue: 2)) == .failure(.ENOENT))
        #expect(k.sgxEPCFree() == 0)
    }

    @Test func allocatorErrorsAndWatermarks() throws {
        let (k, t) = try kernel(epc: .kib(512))               // 128 pages
        let d = try #require(k.sgx)
        // Everything free, nothing reclaimable: ENOMEM; a caller that may not reclaim: EBUSY once
        // something is on the active list.
        #expect(d.epc.freeCount == 128)
        var held: [EPCPage] = []
        while let p = try? d.allocEPCPage(.allocating, reclaim: true).get() { held.append(p) }
        #expect(held.count == 128)
        #expect(d.allocEPCPage(.allocating, reclaim: true) == .failure(.ENOMEM))
        for p in held { d.freeEPCPage(p) }
        // An enclave of 100 pages leaves 26 free: below SGX_NR_LOW_PAGES, ksgxd was woken, and it
        // reclaimed until SGX_NR_HIGH_PAGES (64) were free.
        try build(k, t, pages: 100, map: false)
        #expect(d.epc.freeCount >= SGXReclaimConstants.nrHighPages)
        #expect(d.ksgxdPasses > 0)
        #expect(d.allocEPCPage(.allocating, reclaim: false).map { _ in 0 } == .success(0))
    }

    @Test(arguments: SGXMMTracking.allCases)
    func oversubscribedEPCRoundTripsEveryPage(_ tracking: SGXMMTracking) throws {
        let (k, t) = try kernel(epc: .kib(512), tracking: tracking)   // 128 pages, enclave 256
        try build(k, t, pages: 256)
        for i in 0..<256 {
            #expect(k.enclaveWrite(t, VirtAddr(Self.base + UInt64(i) << 12 + 100), Array("page \(i)".utf8)) == .ok(("page \(i)").utf8.count))
        }
        for round in 0..<3 {
            for i in stride(from: round, to: 256, by: 1) {
                let want = Array("page \(i)".utf8)
                #expect(k.enclaveRead(t, VirtAddr(Self.base + UInt64(i) << 12 + 100), want.count) == .ok(want), "round \(round) page \(i)")
            }
            _ = k.sgxReclaim(64)
        }
        let d = try #require(k.sgx)
        #expect(d.pagesWrittenBack > 256)
        #expect(k.machine.clock.count(of: .sgxELDU) > 256)
        #expect(d.anomalies.isEmpty, "\(d.anomalies.map(\.detail))")
    }

    @Test func aThreadInsideIsKickedOutByAnIPI() throws {
        let (k, t) = try kernel()
        try build(k, t, pages: 4)
        #expect(k.enclaveWrite(t, VirtAddr(Self.base), [1, 2, 3]) == .ok(3))   // the thread stays inside
        #expect(k.machine.sgx?.threadsInside(try #require(k.sgx?.enclaves.values.first?.eid)) == [1])
        #expect(k.sgxReclaim(4) == 4)
        #expect(k.machine.clock.count(of: .sgxIPI) == 1)
        #expect((k.machine.clock.snapshot["sgx_not_tracked"] ?? 0) >= 2)
        #expect(k.enclaveRead(t, VirtAddr(Self.base), 3) == .ok([1, 2, 3]))
    }

    @Test func notifierKeepsAStaleEntryUntilExitAndReleaseFreesIt() throws {
        let (k, t) = try kernel(tracking: .notifier)
        let fd = try build(k, t, pages: 4)
        let child = try k.fork(t.pid).get()
        #expect(k.sgxMMListCount(t, fd: fd) == .success(2))
        #expect(k.task(child)!.mm.mmuNotifiers.count == 1)
        _ = k.munmap(child, addr: VirtAddr(Self.base), length: 4 << 12)
        #expect(k.sgxMMListCount(t, fd: fd) == .success(2))          // stale
        let frees = k.machine.clock.snapshot["sgx_encl_mm_frees"] ?? 0
        k.exit(child)                                                 // exit_mmap -> .release
        #expect(k.sgxMMListCount(t, fd: fd) == .success(1))
        #expect(k.machine.clock.snapshot["sgx_encl_mm_frees"] == frees + 1)
    }

    @Test func vmaRefcountDropsTheEntryWithTheLastVMA() throws {
        let (k, t) = try kernel(tracking: .vmaRefcount)
        let fd = try build(k, t, pages: 4)
        let child = try k.fork(t.pid).get()
        #expect(k.sgxMMListCount(t, fd: fd) == .success(2))
        _ = k.munmap(child, addr: VirtAddr(Self.base), length: 2 << 12)   // one VMA left in the child
        #expect(k.sgxMMListCount(t, fd: fd) == .success(2))
        _ = k.munmap(child, addr: VirtAddr(Self.base + 0x2000), length: 2 << 12)
        #expect(k.sgxMMListCount(t, fd: fd) == .success(1))
        #expect(k.task(child)!.mm.mmuNotifiers.isEmpty)
    }

    @Test(arguments: SGXMMTracking.allCases)
    func theEnclaveLivesAsLongAsItsFile(_ tracking: SGXMMTracking) throws {
        let (k, t) = try kernel(tracking: tracking)
        let fd = try build(k, t, pages: 8)
        let free = k.sgxEPCFree()
        _ = k.close(t.pid, fd: fd)
        #expect(k.sgx?.enclaves.count == 1)                           // the VMA holds the file
        _ = k.munmap(t.pid, addr: VirtAddr(Self.base), length: 8 << 12)
        #expect(k.sgx?.enclaves.isEmpty == true)
        #expect(k.sgxEPCFree() == free + 8 + 2)                       // pages, SECS, VA page
        #expect(t.mm.mmuNotifiers.isEmpty)                            // sgx_release unregistered it
    }

    @Test func srcuDefersTheFreeUntilTheWalkerLeaves() throws {
        let (k, t) = try kernel(tracking: .notifier)
        let fd = try build(k, t, pages: 1)
        let child = try k.fork(t.pid).get()
        let h = try k.sgxWalkBegin(t, fd: fd).get()
        let d = try #require(k.sgx)
        let e = try #require(d.enclaves.values.first)
        #expect(e.srcu.activeReaders == 1)
        k.exit(child)
        #expect(k.sgxMMListCount(t, fd: fd) == .success(1))          // off the list at once
        #expect(e.mmHead?.freed == false && e.srcu.pendingWork == 1)  // the walker stands on it: not freed
        #expect(k.sgxWalkEnd(h) == .success(2))
        #expect(e.srcu.pendingWork == 0 && d.anomalies.isEmpty)
        // The seeded bug frees it at once: the walker steps on freed memory.
        let (k2, t2) = try kernel(tracking: .notifier, bugs: .sgxReleaseWithoutSRCUSync)
        let fd2 = try build(k2, t2, pages: 1)
        let c2 = try k2.fork(t2.pid).get()
        let h2 = try k2.sgxWalkBegin(t2, fd: fd2).get()
        k2.exit(c2)
        _ = k2.sgxWalkEnd(h2)
        #expect(k2.sgx?.anomalies.first?.kind == .srcuUseAfterFree)
    }

    /// The model's own cycles (encl_mm <-> mmu_notifier <-> mm, an enclave's pending SRCU work, a
    /// thread inside) do not keep a dropped kernel alive (SGXDriver.breakReferenceCycles): fuzz and
    /// bench runs build thousands of kernels, and a leak here grows their memory with every one.
    @Test(arguments: SGXMMTracking.allCases)
    func aDroppedKernelIsFreedWithItsEnclaves(_ tracking: SGXMMTracking) throws {
        weak var kernel: Kernel?
        weak var machine: Machine?
        weak var mm: MM?
        weak var enclave: SGXEnclave?
        do {
            let (k, t) = try self.kernel(tracking: tracking)
            let fd = try build(k, t, pages: 4)
            let child = try k.fork(t.pid).get()
            _ = k.munmap(child, addr: VirtAddr(Self.base), length: 2 << 12)   // stale under notifier
            _ = try k.sgxWalkBegin(t, fd: fd).get()                            // a walker that never leaves
            k.exit(child)                                                       // its free waits for the walker
            _ = k.enclaveWrite(t, VirtAddr(Self.base), [1, 2, 3])              // a thread inside
            #expect(k.sgx?.enclaves.count == 1)
            kernel = k
            machine = k.machine
            mm = t.mm
            enclave = k.sgx?.enclaves.values.first
        }
        #expect(kernel == nil, "the kernel must be freed when its last user drops it")
        #expect(machine == nil && mm == nil && enclave == nil)
    }

    @Test func mmuNotifierReleaseRunsOnceAtTeardown() throws {
        final class Ops: MMUNotifierOps {
            var released = 0, freed = 0
            func release(_ s: MMUNotifier, _ mm: MM) { released += 1 }
            func freeNotifier(_ s: MMUNotifier) { freed += 1 }
        }
        let (k, t) = try kernel()
        let child = try k.fork(t.pid).get()
        let ops = Ops()
        let a = MMUNotifier(ops: ops), b = MMUNotifier(ops: ops)
        let mm = k.task(child)!.mm
        #expect(k.mmuNotifierRegister(a, mm) == nil)
        #expect(k.mmuNotifierRegister(b, mm) == nil)
        #expect(k.mmuNotifierRegister(a, mm) == .EINVAL)
        k.mmuNotifierUnregister(b, mm)                                // calls .release once
        #expect(ops.released == 1)
        k.exit(child)                                                 // .release of a only
        #expect(ops.released == 2 && mm.mmuNotifiers.isEmpty && mm.tornDown)
        k.mmuNotifierPut(a)
        #expect(ops.freed == 1)
    }

    @Test func srcuGracePeriodsWaitForOlderReadersOnly() {
        let s = SRCUStruct()
        var ran: [Int] = []
        let r1 = s.readLock()
        s.synchronize { ran.append(1) }
        let r2 = s.readLock()                                          // a later reader does not delay it
        s.readUnlock(r1)
        #expect(ran == [1])
        s.synchronize { ran.append(2) }
        #expect(ran == [1])
        s.readUnlock(r2)
        #expect(ran == [1, 2])
        s.readUnlock(r2)
        #expect(s.anomalies.count == 1)
    }
}
