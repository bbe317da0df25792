// The `cvm-churn` workload: confidential VMs created, populated, converted and destroyed at
// KeyID/ASID exhaustion — what an operator packing TDs or SNP guests on a host pays for the key
// lifecycle (docs/tdx-sev.md, docs/reproductions.md "Confidential-VM churn").
//
// TDX: keyid-bits=6 with tdx-keyids=8 (the global KeyID and 7 guest KeyIDs). tdx_enable is
// measured on its own (TDMRs, PAMT from the allocator and its initialization, WBINVD, the global
// key per package). Then `vms` TD lifecycles: create (when the KeyIDs are exhausted the oldest TD
// is destroyed first), 16 pages added before finalize and 16 after, one line written per page,
// 4 pages converted to shared and back; the phases are priced apart, under 1, 2 and 4 packages
// (key configuration and TDH.PHYMEM.CACHE.WB run per package).
// SEV-SNP: encryption=sme, sev-asids=16, min-sev-asid=9 (SNP ASIDs 1...8), `vms` guest lifecycles
// the same way, rolling (the oldest guest is destroyed when creation finds no ASID) or in waves
// (every guest is destroyed then), under KVM's lazy recycling and under a flush at every free.
//
// The row is the default variant (TDX with the configured packages, SEV lazy); the extras carry
// the comparisons. Invariant: modeled results depend only on config and costs.
import Foundation
import KeyMMBase
import KeyMMHardware
import KeyMMKernel

/// Confidential VMs churned at KeyID/ASID exhaustion.
public struct CVMChurnWorkload: BenchWorkload {
    public init() {}
    public var name: String { "cvm-churn" }
    public var summary: String { "TDs and SNP guests created, populated, converted, destroyed at KeyID/ASID exhaustion: per-package teardown, PAMT, lazy vs eager ASID recycling" }
    public var policyIndependent: Bool { true }

    static let pagesBefore = 16, pagesAfter = 16, converted = 4

    struct Phases {
        var create: UInt64 = 0, populate: UInt64 = 0, convert: UInt64 = 0, destroy: UInt64 = 0
        var total: UInt64 { create + populate + convert + destroy }
        var counters: [String: UInt64] = [:]
        var vms = 0
        var enableCycles: UInt64 = 0
        var pamtPages = 0
    }

    public func run(_ context: BenchContext) throws -> BenchResult {
        let wall0 = BenchHost.wallSeconds()
        let vms = context.quick ? 24 : 240
        var tdx: [Int: Phases] = [:]
        for p in [1, 2, 4] { tdx[p] = try tdxChurn(context, packages: p, vms: vms) }
        var sev: [String: Phases] = [:]
        for waves in [false, true] {
            for flush in SEVASIDFlush.allCases {
                sev["\(waves ? "waves" : "rolling")_\(flush.rawValue)"] = try sevChurn(context, flush: flush, vms: vms, waves: waves)
            }
        }
        let lazy = sev["rolling_lazy"]!
        let configured = context.config.machine.packages
        let main: Phases
        if let known = tdx[configured] { main = known } else { main = try tdxChurn(context, packages: configured, vms: vms) }
        var counters = main.counters
        for (k, v) in lazy.counters { counters[k, default: 0] &+= v }
        func per(_ x: UInt64, _ n: Int) -> JSONValue { .double(benchRound(Double(x) / Double(max(n, 1)), 1)) }
        var extra: [String: JSONValue] = [
            "vms": .int(Int64(vms)),
            "tdx_enable_cycles": .int(Int64(main.enableCycles)),
            "pamt_pages": .int(Int64(main.pamtPages)),
            "pamt_percent_of_memory": .double(benchRound(100 * Double(main.pamtPages * pageSize) / Double(context.config.machine.memory.rawValue), 3)),
            "costs": .string(context.costs.name),
        ]
        for (v, r) in sev.sorted(by: { $0.key < $1.key }) {
            extra["sev_\(v)_cycles_per_vm"] = per(r.total, r.vms)
            extra["sev_\(v)_create_cycles_per_vm"] = per(r.create, r.vms)
            extra["sev_\(v)_destroy_cycles_per_vm"] = per(r.destroy, r.vms)
            extra["sev_\(v)_asid_recycles"] = .int(Int64(r.counters["asid_recycles"] ?? 0))
            extra["sev_\(v)_wbinvds"] = .int(Int64(r.counters["wbinvds"] ?? 0))
            extra["sev_\(v)_psp_commands"] = .int(Int64(r.counters["psp_commands"] ?? 0))
        }
        for pattern in ["rolling", "waves"] {
            if let l = sev["\(pattern)_lazy"], let e = sev["\(pattern)_eager"] {
                extra["sev_\(pattern)_eager_vs_lazy"] = .double(benchRound(Double(e.total) / Double(max(l.total, 1))))
                extra["sev_\(pattern)_recycle_cycles_saved_per_vm"] = per(e.total &- min(e.total, l.total), l.vms)
            }
        }
        for (p, r) in tdx.sorted(by: { $0.key < $1.key }) {
            extra["tdx_cycles_per_vm_p\(p)"] = per(r.total, r.vms)
            extra["tdx_create_cycles_per_vm_p\(p)"] = per(r.create, r.vms)
            extra["tdx_destroy_cycles_per_vm_p\(p)"] = per(r.destroy, r.vms)
            extra["tdx_populate_cycles_per_vm_p\(p)"] = per(r.populate, r.vms)
            extra["tdx_convert_cycles_per_vm_p\(p)"] = per(r.convert, r.vms)
        }
        let row = BenchRow(workload: name, policy: "all", modeledCycles: main.total &+ main.enableCycles &+ lazy.total,
                           counters: counters, wallSeconds: BenchHost.wallSeconds() - wall0, extra: extra)
        return BenchResult(row: row)
    }

    /// `vms` TD lifecycles on a machine with `packages` packages.
    func tdxChurn(_ context: BenchContext, packages: Int, vms: Int) throws -> Phases {
        let bk = try BenchKernel(context) { c in
            c.machine.encryption = .mktme
            c.machine.keyidBits = 6
            c.machine.tdxKeyIDs = 8
            c.machine.packages = packages
        }
        let k = bk.kernel
        let clock = k.machine.clock
        var ph = Phases()
        let e0 = clock.cycles
        guard case .success = k.tdxEnable() else { throw BenchWorkloadError("cvm-churn: tdx_enable failed") }
        ph.enableCycles = clock.cycles &- e0
        ph.pamtPages = k.cvm.pamtFrames.count
        let line = [UInt8](repeating: 0x5A, count: cacheLineSize)
        let start = bk.mark()
        try churn(k, vms: vms, waves: false, into: &ph, noRoom: "no TD KeyID and no TD to destroy",
                  create: { if case .success(let n) = k.tdxTDInit() { n } else { nil } },
                  destroy: { _ = k.tdxTDDestroy($0) },
                  populate: { h in
                      _ = k.tdxMemPageAdd(h, gpa: 0, npages: Self.pagesBefore)
                      _ = k.tdxFinalizeVM(h)
                      _ = k.tdxMemPageAug(h, gpa: UInt64(Self.pagesBefore * pageSize), npages: Self.pagesAfter)
                      for i in 0..<(Self.pagesBefore + Self.pagesAfter) { _ = k.guestWrite(h, gpa: UInt64(i * pageSize), line) }
                  })
        ph.counters = bk.delta(since: start).counters
        return ph
    }

    /// `vms` SNP guest lifecycles under an ASID recycling policy. Rolling: when no ASID is left the
    /// oldest guest is destroyed; waves: every guest is destroyed (a whole generation at once).
    func sevChurn(_ context: BenchContext, flush: SEVASIDFlush, vms: Int, waves: Bool) throws -> Phases {
        let bk = try BenchKernel(context) { c in
            c.machine.encryption = .sme
            c.machine.sevASIDs = 16
            c.machine.minSEVASID = 9
            c.kernel.cvm.sevASIDFlush = flush
        }
        let k = bk.kernel
        var ph = Phases()
        let line = [UInt8](repeating: 0xA5, count: cacheLineSize)
        let pages = Self.pagesBefore + Self.pagesAfter
        let start = bk.mark()
        try churn(k, vms: vms, waves: waves, into: &ph, noRoom: "no ASID and no guest to destroy",
                  create: { if case .success(let n) = k.sevGuestInit(type: .snp) { n } else { nil } },
                  destroy: { _ = k.sevVMDestroy($0) },
                  populate: { h in
                      _ = k.sevLaunchUpdateData(h, gpa: 0, npages: pages)
                      for i in 0..<pages { _ = k.guestWrite(h, gpa: UInt64(i * pageSize), line) }
                  })
        ph.counters = bk.delta(since: start).counters
        return ph
    }

    /// The lifecycle loop of both churns: `vms` guests made (when `create` finds no KeyID or ASID
    /// free, the oldest live guest — with `waves`, every live guest — is destroyed first),
    /// populated, half converted to shared and back, then every live guest destroyed; the modeled
    /// cycles of each phase are summed into `ph`.
    func churn(_ k: Kernel, vms: Int, waves: Bool, into ph: inout Phases, noRoom: String,
               create: () -> Int32?, destroy: (Int32) -> Void, populate: (Int32) -> Void) throws {
        let clock = k.machine.clock
        func timed(_ slot: WritableKeyPath<Phases, UInt64>, _ body: () -> Void) {
            let c0 = clock.cycles
            body()
            ph[keyPath: slot] &+= clock.cycles &- c0
        }
        var live: [Int32] = []
        for _ in 0..<vms {
            var made: Int32?
            while made == nil {
                timed(\.create) { made = create() }
                if made != nil { break }
                guard !live.isEmpty else { throw BenchWorkloadError("cvm-churn: \(noRoom)") }
                let victims = waves ? live : [live[0]]
                live.removeFirst(victims.count)
                timed(\.destroy) { for old in victims { destroy(old) } }
            }
            let h = made ?? 0
            live.append(h)
            timed(\.populate) { populate(h) }
            timed(\.convert) {
                _ = k.kvmSetMemoryAttributes(h, gpa: 0, npages: Self.converted, toPrivate: false)
                _ = k.kvmSetMemoryAttributes(h, gpa: 0, npages: Self.converted, toPrivate: true)
            }
            ph.vms += 1
        }
        for h in live { timed(\.destroy) { destroy(h) } }
    }
}
