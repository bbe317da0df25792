// The `sgx` workload: seed 004's trade-off measured under both mm-tracking designs side by side.
// One row per case and design, each a bench unit of its own (`variants`): the row's workload is
// `sgx/CASE` and its policy column names the
// SGX design (`notifier` / `vma-refcount`, `+plain` for sgx-vma-flags=plain, `+2019` for
// vm-close-merge=2019); the allocator policy does not matter here (rows have no ratio).
//
// Cases (docs/reproductions.md, "Seed 004"):
// - regions: a long-lived process maps a 2 MiB enclave in 64 regions of 8 pages and flips one page
//   of each region read-only and back (guard pages), then forks and the child exits: VMAs per mm,
//   merges, the modeled cost of the VMA work and of fork + exit (dup_mmap and teardown walk VMAs).
// - handoff: a long-lived builder daemon builds 16 enclaves of 64 pages, maps each to check it,
//   unmaps it and hands it to a long-lived worker (fork, the daemon closes its fd); the workers run
//   their enclaves under EPC pressure (epc=1M, 4x oversubscribed). Stale encl_mms (on mm_list
//   without a mapping), how long they lived (modeled cycles from the daemon's munmap until freed,
//   at its exit), their memory (96 bytes each: kmalloc-96 for struct sgx_encl_mm), and mms walked
//   per page the reclaimer wrote back.
// - reclaim-Nmm (N = 1, 8, 64) and reclaim-64mm-stale: one 2 MiB enclave mapped by N processes (a
//   parent and N-1 forked children; in -stale half of them unmap it but live on), EPC oversubscribed
//   2x (epc=1M), 4096 accesses round robin from inside: reclaim cost per page written back (the
//   reclaimer's ENCLS, IPIs, mm_list walks and LRU scans, in modeled cycles) and mms walked per page.
//
// A task that makes a system call has left the enclave it was running in (`sgxAsyncExit`, as the
// scenario runner does before every call); between its enclave accesses a task stays inside, so
// the reclaimer's ETRACK and IPIs have threads to wait for.
//
// Invariant: modeled results depend only on the configuration and costs (the seed fixes the keys).
import Foundation
import KeyMMBase
import KeyMMHardware
import KeyMMKernel

public struct SGXWorkload: BenchWorkload {
    public init() {}
    public var name: String { "sgx" }
    public var summary: String { "seed 004: enclave VMAs per mm, stale encl_mms of a builder hand-off, reclaim cost with 1/8/64 mms, per mm-tracking design" }
    public var policyIndependent: Bool { true }

    /// One design configuration.
    struct Design {
        var tracking: SGXMMTracking
        var flags: SGXVMAFlags = .special
        var rule: CloseMergeRule = .linux618
        var label: String {
            tracking.rawValue + (flags == .plain ? "+plain" : "") + (rule == .linux2019 ? "+2019" : "")
        }
    }

    static let base: UInt64 = 0x7f00_0000_0000

    /// One row's work: a case under one design.
    enum Case {
        case regions(Design), handoff(Design), reclaim(Design, mms: Int, staleHalf: Bool)
        var id: String {
            switch self {
            case .regions(let d): "regions/\(d.label)"
            case .handoff(let d): "handoff/\(d.label)"
            case .reclaim(let d, let n, let stale): "reclaim-\(n)mm\(stale ? "-stale" : "")/\(d.label)"
            }
        }
    }

    /// Every row, in the order the bench runs them (each a unit of its own: shards split them).
    static func cases(quick: Bool) -> [Case] {
        let both = [Design(tracking: .notifier), Design(tracking: .vmaRefcount)]
        let regionDesigns = both + [Design(tracking: .notifier, flags: .plain), Design(tracking: .vmaRefcount, flags: .plain),
                                    Design(tracking: .vmaRefcount, flags: .plain, rule: .linux2019)]
        var cases: [Case] = regionDesigns.map { .regions($0) } + both.map { .handoff($0) }
        for n in quick ? [1, 8] : [1, 8, 64] {
            cases += both.map { .reclaim($0, mms: n, staleHalf: false) }
        }
        if !quick { cases += both.map { .reclaim($0, mms: 64, staleHalf: true) } }
        return cases
    }

    public func variants(quick: Bool) -> [String] { Self.cases(quick: quick).map(\.id) }

    /// Runs the case `context.variant` names (the first case when it is nil).
    public func run(_ context: BenchContext) throws -> BenchResult {
        let all = Self.cases(quick: context.quick)
        guard let c = context.variant.map({ v in all.first { $0.id == v } }) ?? all.first else {
            throw BenchWorkloadError("sgx: no case \(context.variant ?? "")")
        }
        switch c {
        case .regions(let d): return try regions(context, d)
        case .handoff(let d): return try handoff(context, d)
        case .reclaim(let d, let n, let stale): return try reclaim(context, d, mms: n, staleHalf: stale)
        }
    }

    /// Every case's row, in order (what `keymm bench sgx` prints).
    func runRows(_ context: BenchContext) throws -> [BenchResult] {
        try variants(quick: context.quick).map { v in var c = context; c.variant = v; return try run(c) }
    }

    // MARK: helpers

    func kernel(_ context: BenchContext, _ d: Design, epc: ByteCount) throws -> BenchKernel {
        try BenchKernel(context) { c in
            c.machine.epc = epc
            c.kernel.sgxMMTracking = d.tracking
            c.kernel.sgxVMAFlags = d.flags
            c.kernel.closeMergeRule = d.rule
        }
    }

    func must<T>(_ r: Result<T, Errno>, _ what: String) throws -> T {
        switch r {
        case .success(let v): return v
        case .failure(let e): throw BenchWorkloadError("sgx: \(what) failed with \(e.name)")
        }
    }

    /// open + CREATE + ADD_PAGES (RW) + INIT of an enclave at `base`.
    func build(_ k: Kernel, _ t: TaskStruct, base: UInt64, size: UInt64, pages: Int) throws -> Int32 {
        let fd = try must(k.openat(t.pid, path: "/dev/sgx_enclave", flags: OpenFlags(rawValue: 2)), "open")
        try must(k.sgxIoctl(t, fd: fd, .create(size: size, base: base, attributes: 0x4)), "CREATE")
        try must(k.sgxIoctl(t, fd: fd, .addPages(src: nil, offset: 0, length: UInt64(pages) << pageShift,
                                                   secinfo: 0x203, flags: 0)), "ADD_PAGES")
        try must(k.sgxIoctl(t, fd: fd, .initialize), "INIT")
        return fd
    }

    func enclaveVMAs(_ mm: MM) -> Int { mm.allVMAs.filter { $0.vmOps is SGXVMOps }.count }

    func row(_ name: String, _ d: Design, _ bk: BenchKernel, _ start: ClockMark, _ wall0: Double,
             _ extra: [String: JSONValue]) -> BenchResult {
        let (cycles, counters) = bk.delta(since: start)
        return BenchResult(row: BenchRow(workload: "sgx/\(name)", policy: d.label, modeledCycles: cycles,
                                         counters: counters.filter { $0.value != 0 },
                                         wallSeconds: BenchHost.wallSeconds() - wall0, extra: extra))
    }

    // MARK: regions

    func regions(_ context: BenchContext, _ d: Design) throws -> BenchResult {
        let wall0 = BenchHost.wallSeconds()
        let bk = try kernel(context, d, epc: .mib(32))
        let k = bk.kernel
        let t = k.spawn()
        let regions = 64, per = 8
        let fd = try build(k, t, base: Self.base, size: 0x200000, pages: regions * per)
        let start = bk.mark()
        for r in 0..<regions {
            let off = UInt64(r * per) << pageShift
            _ = try must(k.mmap(t.pid, addr: VirtAddr(Self.base + off), length: UInt64(per) << pageShift, prot: [.read, .write],
                                flags: [.shared, .fixed], fd: fd, offset: off), "mmap")
        }
        let afterMap = enclaveVMAs(t.mm)
        for r in 0..<regions {
            let guardPage = VirtAddr(Self.base + (UInt64(r * per + per - 1) << pageShift))
            _ = k.mprotect(t.pid, addr: guardPage, length: UInt64(pageSize), prot: .read)
            _ = k.mprotect(t.pid, addr: guardPage, length: UInt64(pageSize), prot: [.read, .write])
        }
        let afterGuards = enclaveVMAs(t.mm)
        let vmaWork = bk.delta(since: start).cycles
        let f0 = bk.mark()
        let child = try must(k.fork(t.pid), "fork")
        k.exit(child)
        let forkExit = bk.delta(since: f0).cycles
        var extra: [String: JSONValue] = [
            "enclave_vmas_after_mapping": .int(Int64(afterMap)),
            "enclave_vmas_per_mm": .int(Int64(afterGuards)),
            "vma_bytes_est": .int(Int64(afterGuards * 192)),
            "vma_work_cycles": .int(Int64(vmaWork)),
            "fork_exit_cycles": .int(Int64(forkExit)),
        ]
        extra["encl_mm_entries"] = .int(Int64(k.sgx?.enclaves.values.first?.mmList.filter(\.listed).count ?? 0))
        return row("regions", d, bk, start, wall0, extra)
    }

    // MARK: handoff

    func handoff(_ context: BenchContext, _ d: Design) throws -> BenchResult {
        let wall0 = BenchHost.wallSeconds()
        let bk = try kernel(context, d, epc: .mib(1))
        let k = bk.kernel
        let daemon = k.spawn()
        let enclaves = 16, pages = 64
        let start = bk.mark()
        var workers: [(TaskStruct, UInt64)] = []
        var unmappedAt: [UInt64] = []
        for i in 0..<enclaves {
            let base = Self.base + UInt64(i) * 0x100000
            let fd = try build(k, daemon, base: base, size: 0x100000, pages: pages)
            let len = UInt64(pages) << pageShift
            _ = try must(k.mmap(daemon.pid, addr: VirtAddr(base), length: len, prot: [.read, .write], flags: [.shared, .fixed], fd: fd), "mmap")
            _ = k.enclaveWrite(daemon, VirtAddr(base), Array("built \(i)".utf8))
            k.sgxAsyncExit(daemon.pid)   // the daemon's thread leaves the enclave to make its next call
            _ = k.munmap(daemon.pid, addr: VirtAddr(base), length: len)
            unmappedAt.append(k.machine.clock.cycles)
            let w = try must(k.fork(daemon.pid), "fork")
            _ = k.close(daemon.pid, fd: fd)
            let wt = k.task(w)!
            _ = try must(k.mmap(w, addr: VirtAddr(base), length: len, prot: [.read, .write], flags: [.shared, .fixed], fd: fd), "worker mmap")
            workers.append((wt, base))
        }
        // The workers run their enclaves (EPC 4x oversubscribed: the reclaimer walks every mm_list).
        let drv = k.sgx!
        let visits0 = drv.reclaimMMVisits, written0 = drv.pagesWrittenBack
        let rounds = context.quick ? 2 : 8
        for r in 0..<rounds {
            for (wt, base) in workers {
                for p in stride(from: r % 4, to: pages, by: 4) {
                    _ = k.enclaveWrite(wt, VirtAddr(base + UInt64(p) << pageShift + 64), [UInt8(truncatingIfNeeded: r)])
                }
            }
        }
        let stale = drv.enclaves.values.reduce(0) { acc, e in
            acc + e.mmList.filter { $0.listed && $0.mm === daemon.mm }.count
        }
        let visits = drv.reclaimMMVisits - visits0, written = drv.pagesWrittenBack - written0
        // The daemon exits: its stale entries (notifier) go now.
        let exitAt = k.machine.clock.cycles
        for (wt, _) in workers { k.sgxAsyncExit(wt.pid) }
        k.exit(daemon.pid)
        let lifetimes = unmappedAt.map { exitAt &- $0 }
        let meanLifetime = stale == 0 ? 0 : lifetimes.reduce(0, +) / UInt64(lifetimes.count)
        let extra: [String: JSONValue] = [
            "enclaves": .int(Int64(enclaves)),
            "stale_encl_mms": .int(Int64(stale)),
            "stale_encl_mm_bytes": .int(Int64(stale * 96)),
            "stale_lifetime_cycles_mean": .int(Int64(meanLifetime)),
            "pages_written_back": .int(Int64(written)),
            "mm_walks_per_page": .double(benchRound(written == 0 ? 0 : Double(visits) / Double(written))),
        ]
        return row("handoff", d, bk, start, wall0, extra)
    }

    // MARK: reclaim with N mms

    func reclaim(_ context: BenchContext, _ d: Design, mms: Int, staleHalf: Bool) throws -> BenchResult {
        let wall0 = BenchHost.wallSeconds()
        let bk = try kernel(context, d, epc: .mib(1))
        let k = bk.kernel
        let parent = k.spawn()
        let pages = 512
        let fd = try build(k, parent, base: Self.base, size: 0x200000, pages: pages)
        let len = UInt64(pages) << pageShift
        _ = try must(k.mmap(parent.pid, addr: VirtAddr(Self.base), length: len, prot: [.read, .write], flags: [.shared, .fixed], fd: fd), "mmap")
        var tasks = [parent]
        for _ in 1..<mms { tasks.append(k.task(try must(k.fork(parent.pid), "fork"))!) }
        var active = tasks
        if staleHalf {
            for t in tasks.suffix(mms / 2) {
                k.sgxAsyncExit(t.pid)
                _ = k.munmap(t.pid, addr: VirtAddr(Self.base), length: len)
            }
            active = Array(tasks.prefix(mms - mms / 2))
        }
        let drv = k.sgx!
        let prof = k.machine.clock.profile
        let start = bk.mark()
        let visits0 = drv.reclaimMMVisits, written0 = drv.pagesWrittenBack
        let accesses = context.quick ? 1024 : 4096
        var g = SeededGenerator(seed: 4)
        for i in 0..<accesses {
            let t = active[i % active.count]
            let page = Int(g.next() % UInt64(pages))
            _ = k.enclaveWrite(t, VirtAddr(Self.base + UInt64(page) << pageShift + 8), [UInt8(truncatingIfNeeded: i)])
        }
        let (_, c) = bk.delta(since: start)
        let written = drv.pagesWrittenBack - written0
        let visits = drv.reclaimMMVisits - visits0
        let reclaimEvents: [CostEvent] = [.sgxEBLOCK, .sgxETRACK, .sgxEWB, .sgxIPI, .sgxMMWalk, .lruScan]
        let reclaimCycles = reclaimEvents.reduce(UInt64(0)) { $0 + (c[$1.counterName] ?? 0) * prof[$1] }
        let extra: [String: JSONValue] = [
            "mms": .int(Int64(mms)),
            "mms_on_mm_list": .int(Int64(drv.enclaves.values.first?.mmList.filter(\.listed).count ?? 0)),
            "pages_written_back": .int(Int64(written)),
            "reclaim_cycles_per_page": .int(written == 0 ? 0 : Int64(reclaimCycles / UInt64(written))),
            "mm_walks_per_page": .double(benchRound(written == 0 ? 0 : Double(visits) / Double(written))),
            "ipis_per_page": .double(benchRound(written == 0 ? 0 : Double(c["sgx_ipis"] ?? 0) / Double(written))),
        ]
        return row(staleHalf ? "reclaim-\(mms)mm-stale" : "reclaim-\(mms)mm", d, bk, start, wall0, extra)
    }
}
