// The `faults` workload: first-touch write faults on encrypted anonymous memory through the whole
// model, and the native kernel's rates measured in the same run.
//
// Model side, per round: mmap(NULL, 512 pages, PROT_NONE, MAP_PRIVATE|MAP_ANONYMOUS), then
// encrypt_mprotect(PROT_READ|PROT_WRITE, key) with an "mktme" type=cpu key added by the process
// (Hansen's atomic pattern; under policy `none` MKTME is off and a plain mprotect is used), a
// write to every page (each a first-touch fault: alloc_pages_vma with the VMA's KeyID, the
// policy's prep_encrypted_page, zeroing through the KeyID, a PTE), then munmap. Dirty lines
// evicted from the modeled cache are written back through the AES-XTS engine (real encryption).
//
// Host side (CHostProbe): `hp_page_fault_ns` (first-touch write faults, touch loop only) and
// `hp_mmap_touch_munmap_ns` (whole mmap + touch + munmap cycle), 8,192 pages, best of 5, thread
// CPU time. The model's rates use the same clock (thread CPU time), so the ratios compare like
// with like; `host_rate` is the model's first-touch rate (pages/s).
//
// Two rows: `faults` with the configured cache (default 32 MiB: a round's pages stay cache-resident,
// nothing is written back under `integrated`), and `faults-evict`, the same with a 1 MiB model
// cache, so every fault's clear_page evicts a page of earlier dirty lines and writes them back
// through the AES-XTS engine (`evictions_per_fault` ~64 under `integrated`).
//
// Extras: model_first_touch_pages_per_s, model_cycle_pages_per_s, native_first_touch_pages_per_s,
// native_mmap_touch_munmap_pages_per_s, model_vs_native_first_touch, model_vs_native_cycle,
// pages, encrypted, keyid, cycles_per_fault (modeled).
//
// Invariant: modeled cycles and counters depend only on config, costs and policy (fixed rounds).
import CHostProbe
import Foundation
import KeyMMBase
import KeyMMHardware
import KeyMMKernel
import KeyMMKeys

/// First-touch faults through the whole model vs the native kernel's.
public struct FaultsWorkload: BenchWorkload {
    /// The model cache of the evicting variant.
    static let evictingCache = ByteCount.mib(1)
    /// Whether this is the evicting variant (`faults-evict`: a 1 MiB model cache).
    let evicting: Bool
    public init() { evicting = false }
    package init(evicting: Bool) { self.evicting = evicting }
    public var name: String { evicting ? "faults-evict" : "faults" }
    public var summary: String {
        evicting
            ? "faults with a 1 MiB model cache: every fault evicts and encrypts a page of dirty lines (host pages/s vs the native kernel)"
            : "first-touch write faults on encrypted anonymous memory through the model (host pages/s vs the native kernel)"
    }
    public var policyIndependent: Bool { false }

    /// Pages per mapping.
    static let pagesPerMap = 512
    /// Rounds of mmap + encrypt_mprotect + touch + munmap.
    static func rounds(quick: Bool) -> Int { quick ? 4 : 64 }

    public func run(_ context: BenchContext) throws -> BenchResult {
        let wall0 = BenchHost.wallSeconds()
        let bk = try BenchKernel(context) { if evicting { $0.machine.cacheSize = Self.evictingCache } }
        let k = bk.kernel
        let task = k.spawn()
        let pid = task.pid
        let serial = bk.addMKTMEKey(pid, "faults")
        let keyid = serial.flatMap { bk.keyid($0) } ?? .tme
        let len = UInt64(Self.pagesPerMap * pageSize)
        let rounds = Self.rounds(quick: context.quick)
        // Host set-up, not modeled: fault in the host pages behind the model cache's arrays so the
        // measured rounds see the simulator's steady state, not the host kernel zeroing the lazily
        // backed storage on first use (DRAM is not touched: freed frames are reused and nothing
        // is evicted in these rounds).
        bk.machine.cache.populateHostStorage()
        let tweaks0 = bk.machine.engine.tweakCacheStats
        let start = bk.mark()
        var touchCPU = 0.0
        var faults = 0
        let cycleCPU0 = BenchHost.threadCPUSeconds()
        for _ in 0..<rounds {
            guard case .success(let a) = k.mmap(pid, addr: VirtAddr(0), length: len, prot: .none,
                                                flags: [.private, .anonymous]) else {
                throw BenchWorkloadError("faults: mmap failed")
            }
            let r: Result<Void, Errno>
            if let serial {
                r = k.encryptMprotect(pid, addr: a, length: len, prot: [.read, .write], serial: serial)
            } else {
                r = k.mprotect(pid, addr: a, length: len, prot: [.read, .write])
            }
            guard case .success = r else { throw BenchWorkloadError("faults: encrypt_mprotect/mprotect failed") }
            let t0 = BenchHost.threadCPUSeconds()
            faults += k.memTouch(task, a, len, [.write])
            touchCPU += BenchHost.threadCPUSeconds() - t0
            _ = k.munmap(pid, addr: a, length: len)
        }
        let cycleCPU = BenchHost.threadCPUSeconds() - cycleCPU0
        let d = bk.delta(since: start)
        let totalPages = rounds * Self.pagesPerMap
        guard faults == totalPages else { throw BenchWorkloadError("faults: touched \(faults) of \(totalPages) pages") }
        let modelTouch = Double(totalPages) / max(touchCPU, 1e-9)
        let modelCycle = Double(totalPages) / max(cycleCPU, 1e-9)

        // The native kernel, same run.
        let nativeFaultNs = hp_page_fault_ns(8192, context.quick ? 2 : 5)
        let nativeCycleNs = hp_mmap_touch_munmap_ns(8192, context.quick ? 2 : 5)
        var extra: [String: JSONValue] = [
            "pages": .int(Int64(totalPages)),
            "pages_per_mapping": .int(Int64(Self.pagesPerMap)),
            "encrypted": .bool(!keyid.isDefault),
            "keyid": .int(Int64(keyid.rawValue)),
            "cycles_per_fault": .double(benchRound(Double(d.cycles) / Double(totalPages), 1)),
            "cache_bytes": .int(Int64(bk.machine.config.cacheSize.rawValue)),
            "evictions_per_fault": .double(benchRound(Double(d.counters["evictions"] ?? 0) / Double(totalPages), 2)),
            "write_backs_per_fault": .double(benchRound(Double(d.counters["write_backs"] ?? 0) / Double(totalPages), 2)),
            // Host side (engine tweak cache): whole-frame batches served from one entry; lines whose
            // tweak was looked up one by one or encrypted.
            "engine_tweak_page_hits": .int(Int64(bk.machine.engine.tweakCacheStats.pageHits - tweaks0.pageHits)),
            "engine_tweak_lines_other": .int(Int64(bk.machine.engine.tweakCacheStats.lineHits + bk.machine.engine.tweakCacheStats.lineMisses
                                               - tweaks0.lineHits - tweaks0.lineMisses)),
            "model_first_touch_pages_per_s": .double(modelTouch.rounded()),
            "model_cycle_pages_per_s": .double(modelCycle.rounded()),
            "timing": .string("thread CPU time (model and native)"),
            "costs": .string(context.costs.name),
        ]
        var host: [String: JSONValue] = [:]
        if nativeFaultNs > 0 {
            let native = 1e9 / nativeFaultNs
            extra["native_first_touch_pages_per_s"] = .double(native.rounded())
            extra["model_vs_native_first_touch"] = .double(benchRound(modelTouch / native))
            host["native_first_touch_pages_per_s"] = .double(native.rounded())
            host["\(evicting ? "faults_evict" : "faults")_model_vs_native_first_touch_\(context.policy?.rawValue ?? "all")"] = .double(benchRound(modelTouch / native))
        }
        if nativeCycleNs > 0 {
            let native = 1e9 / nativeCycleNs
            extra["native_mmap_touch_munmap_pages_per_s"] = .double(native.rounded())
            extra["model_vs_native_cycle"] = .double(benchRound(modelCycle / native))
            host["native_mmap_touch_munmap_pages_per_s"] = .double(native.rounded())
        }
        if serial == nil { extra["note"] = .string("MKTME off (policy none) or no KeyID: plain mprotect, KeyID 0") }
        k.exit(pid)
        let row = BenchRow(workload: name, policy: (context.policy ?? context.config.kernel.policy).rawValue,
                           modeledCycles: d.cycles, counters: d.counters, wallSeconds: BenchHost.wallSeconds() - wall0,
                           hostRate: HostRate(value: modelTouch.rounded(), unit: "pages/s"), extra: extra)
        return BenchResult(row: row, host: host)
    }
}
