// The numbered work of `keymm bench` and `keymm sweep`: a list of units, each one workload run
// once on a fresh machine under one policy (or once as policy `all` for policy-independent
// workloads) with one configuration, in a fixed order, so shards split it by index.
//   bench: for each workload (command-line order), for each policy (`none` first when it was
//          not asked for, so ratios exist), for each of the workload's variants (its cases).
//   sweep: for each combination of the swept settings (keys in alphabetical order, the first
//          key varying slowest, each key's values in the spec's order), for each workload, for
//          each policy as above (SweepSpec.swift).
//
// Invariant: a unit's configuration and context depend only on the plan and its index.
import Foundation
import KeyMMBase
import KeyMMHardware
import KeyMMKernel

/// One unit of bench work.
package struct BenchUnit: Sendable {
    package var workload: any BenchWorkload
    /// nil for a policy-independent workload (policy `all`).
    package var policy: AllocatorPolicy?
    /// The unit's configuration (the policy is set in it).
    package var config: ModelConfig
    /// The sweep point (nil in a plain bench).
    package var point: BenchPoint?
    /// The workload's case (`BenchWorkload.variants`), nil for workloads without variants.
    package var variant: String? = nil
}

/// A bench run or sweep as numbered units.
package struct BenchPlan: Sendable {
    /// `bench` or `sweep`.
    package var kind: String
    package var units: [BenchUnit]
    package var costs: CostProfile
    package var quick: Bool
    /// What decides the work (for the config hash).
    package var planJSON: JSONValue

    /// The policies a bench runs: the given ones (all when empty), `none` first if missing.
    static func policies(_ asked: [AllocatorPolicy]) -> [AllocatorPolicy] {
        var pols = asked.isEmpty ? AllocatorPolicy.allCases : asked
        if !pols.contains(.none) { pols.insert(.none, at: 0) }
        return pols
    }

    /// The units of `keymm bench`: each workload under each policy.
    package static func bench(_ workloads: [any BenchWorkload], policies asked: [AllocatorPolicy], config: ModelConfig,
                             costs: CostProfile, quick: Bool) -> BenchPlan {
        let pols = policies(asked)
        var units: [BenchUnit] = []
        for w in workloads {
            for p in w.policyIndependent ? [nil] : pols.map(Optional.some) {
                var c = config
                if let p { c.kernel.policy = p }
                for v in w.variantsOrNil(quick: quick) {
                    units.append(BenchUnit(workload: w, policy: p, config: c, point: nil, variant: v))
                }
            }
        }
        let json: JSONValue = .object([
            "workloads": .array(workloads.map { .string($0.name) }), "policies": .array(pols.map { .string($0.rawValue) }),
            "settings": config.planJSON, "costs": costs.planJSON, "quick": .bool(quick),
        ])
        return BenchPlan(kind: "bench", units: units, costs: costs, quick: quick, planJSON: json)
    }

    /// The run's identity (JSONL header, config hash).
    package var identity: RunIdentity { RunIdentity(kind: kind, plan: planJSON, units: units.count) }
}

extension BenchWorkload {
    /// One entry per unit of this workload: its variants, or nil alone.
    func variantsOrNil(quick: Bool) -> [String?] {
        let vs = variants(quick: quick)
        return vs.isEmpty ? [nil] : vs.map(Optional.some)
    }
}

extension CostProfile {
    /// The prices as JSON (name and every event's cycles), for plans.
    var planJSON: JSONValue {
        var o: [String: JSONValue] = ["name": .string(name)]
        for e in CostEvent.allCases { o[e.counterName] = .int(Int64(clamping: self[e])) }
        return .object(o)
    }
}
