// The `alloc-free` workload (docs/sources.md, seed 001's microbenchmark): order-0 alloc_pages(__GFP_ZERO, as an
// anonymous fault asks) immediately followed by free_pages, repeated, under one allocator policy.
// Three phases on one fresh machine, each measured as a delta of the cost clock:
//   keyid0      - KeyID 0, the unencrypted baseline of this policy;
//   keyid1      - one KeyID (an "mktme" type=cpu key): the seed's "allocate-free encrypted page";
//   alternating - KeyIDs 1 and 2 alternately (two tenants sharing the allocator).
// The row's modeled_cycles and counters are the keyid1 phase, so ratio_vs_none is the seed's
// figure (encrypted alloc+free under the policy vs the same calls with MKTME off); the extras
// give cycles and flushed lines per alloc+free of every phase and keyid1/keyid0 within the policy.
//
// Invariant: the modeled result depends only on config, costs and policy (a fixed number of
// operations; warm-up operations excluded from every phase), never on the host.
import Foundation
import KeyMMBase
import KeyMMHardware
import KeyMMKeys
import KeyMMKernel

/// alloc+free of order-0 pages per policy: the wrapper's 4-6x vs the integrated allocator.
public struct AllocFreeWorkload: BenchWorkload {
    public init() {}
    public var name: String { "alloc-free" }
    public var summary: String { "order-0 alloc_pages(__GFP_ZERO)+free_pages: KeyID 0, one KeyID, alternating KeyIDs (seed 001, the 2018 page-allocator KeyID thread: docs/sources.md)" }
    public var policyIndependent: Bool { false }

    /// Measured operations per phase (each an alloc+free pair).
    public static func operations(quick: Bool) -> Int { quick ? 2_000 : 20_000 }
    /// Unmeasured operations before each phase (reach the steady state).
    static let warmUp = 64

    public func run(_ context: BenchContext) throws -> BenchResult {
        let wall0 = BenchHost.wallSeconds()
        let policy = context.policy ?? context.config.kernel.policy
        let machine = try context.makeMachine()
        let keys = KeyService(programmer: machine.keyTable, keyids: machine.config.mktmeKeyIDs, seed: machine.config.seed)
        var tenants: [KeyID] = []
        for name in ["alloc-free-a", "alloc-free-b"] {
            if case .success(let serial) = keys.addKey(type: "mktme", description: name, payload: "type=cpu algorithm=aes-xts-128",
                                                        keyring: .userKeyring, cred: .root, process: ProcessKeyrings(pid: 1)),
               let k = keys.key(serial)?.keyid {
                tenants.append(k)
            }
        }
        let haveKeyIDs = tenants.count == 2
        if !haveKeyIDs { tenants = [.tme, .tme] }
        let allocator = PageAllocator(machine: machine, policy: policy, keyidRefs: keys.references)
        let ops = AllocFreeWorkload.operations(quick: context.quick)

        struct Phase { var cycles: UInt64; var counters: [String: UInt64] }
        func phase(_ keyids: [KeyID]) throws -> Phase {
            func once(_ i: Int) throws {
                guard let p = allocator.allocPages(order: .base, keyid: keyids[i % keyids.count], gfp: [.zero, .movable]) else {
                    throw AllocFreeError("alloc-free: out of memory")
                }
                allocator.freePages(p, order: .base)
            }
            for i in 0..<AllocFreeWorkload.warmUp { try once(i) }
            let c0 = machine.clock.cycles, s0 = machine.clock.snapshot
            for i in 0..<ops { try once(i) }
            var delta: [String: UInt64] = [:]
            for (k, v) in machine.clock.snapshot { delta[k] = v &- (s0[k] ?? 0) }
            return Phase(cycles: machine.clock.cycles - c0, counters: delta)
        }
        let k0 = try phase([.tme])
        let k1 = try phase([tenants[0]])
        let alt = try phase(tenants)

        func perOp(_ v: UInt64) -> JSONValue { .double((Double(v) / Double(ops) * 100).rounded() / 100) }
        var extra: [String: JSONValue] = [
            "operations_per_phase": .int(Int64(ops)),
            "cycles_per_op_keyid0": perOp(k0.cycles),
            "cycles_per_op_keyid1": perOp(k1.cycles),
            "cycles_per_op_alternating": perOp(alt.cycles),
            "flushed_lines_per_op_keyid0": perOp(k0.counters["flushed_lines"] ?? 0),
            "flushed_lines_per_op_keyid1": perOp(k1.counters["flushed_lines"] ?? 0),
            "flushed_lines_per_op_alternating": perOp(alt.counters["flushed_lines"] ?? 0),
            "keyid1_vs_keyid0": .double(k0.cycles == 0 ? 0 : (Double(k1.cycles) / Double(k0.cycles) * 1000).rounded() / 1000),
            "costs": .string(context.costs.name),
        ]
        if !haveKeyIDs { extra["note"] = .string("the machine has no MKTME KeyIDs: every phase used KeyID 0") }
        let anomalies = allocator.verify()
        if !anomalies.isEmpty { extra["allocator_anomalies"] = .array(anomalies.prefix(5).map { .string($0) }) }
        let row = BenchRow(workload: name, policy: policy.rawValue, modeledCycles: k1.cycles, counters: k1.counters,
                           wallSeconds: BenchHost.wallSeconds() - wall0, extra: extra)
        return BenchResult(row: row)
    }
}

/// A workload that could not run.
struct AllocFreeError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}
