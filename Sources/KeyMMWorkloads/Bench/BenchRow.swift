// BenchRow and BenchReport: the bench's machine-readable result, as the contract fixes it:
// `{"schema": 1, "host": {...}, "results": [ROW, ...]}`, one ROW per workload and policy with
// workload, policy, modeled_cycles, ratio_vs_none, counters, wall_seconds and, for workloads
// that measure the simulator itself, host_rate {value, unit}. Schema: docs/bench-json.md.
//
// Invariant: encoding is deterministic for equal values (keys sorted); the modeled fields of a
// row (modeled_cycles, counters, ratio_vs_none) depend only on config + seed, never on the host.
import Foundation

/// A rate measured on the host (not modeled): e.g. pages/s of the simulator's AES-XTS engine.
public struct HostRate: Sendable, Hashable, Codable {
    public var value: Double
    public var unit: String
    public init(value: Double, unit: String) { self.value = value; self.unit = unit }
}

/// One workload under one policy.
public struct BenchRow: Sendable, Hashable, Codable {
    /// Workload name (`engine`, `alloc-free`, ...).
    public var workload: String
    /// Allocator policy (`none`, `wrapper`, `integrated`, `eager`), or `all` for policy-independent workloads.
    public var policy: String
    /// Modeled cycles charged by the cost clock during the workload.
    public var modeledCycles: UInt64
    /// modeled_cycles / modeled_cycles of the same workload under `none` (1 for policy-independent rows).
    public var ratioVsNone: Double?
    /// Cost-clock counters (snake_case names, see CostEvents.swift).
    public var counters: [String: UInt64]
    /// Host wall-clock seconds the workload took (informational, not modeled).
    public var wallSeconds: Double
    /// Host rate for workloads that measure the simulator itself.
    public var hostRate: HostRate?
    /// Workload-specific extras (e.g. the engine's OpenSSL reference rate and ratio).
    public var extra: [String: JSONValue]?

    public init(workload: String, policy: String, modeledCycles: UInt64, ratioVsNone: Double? = nil,
                counters: [String: UInt64], wallSeconds: Double, hostRate: HostRate? = nil, extra: [String: JSONValue]? = nil) {
        self.workload = workload; self.policy = policy; self.modeledCycles = modeledCycles; self.ratioVsNone = ratioVsNone
        self.counters = counters; self.wallSeconds = wallSeconds; self.hostRate = hostRate; self.extra = extra
    }

    enum CodingKeys: String, CodingKey {
        case workload, policy, counters, extra
        case modeledCycles = "modeled_cycles", ratioVsNone = "ratio_vs_none", wallSeconds = "wall_seconds", hostRate = "host_rate"
    }
}

/// A whole bench run.
public struct BenchReport: Sendable, Hashable, Codable {
    /// Schema version of this JSON (1).
    public var schema: Int = 1
    /// Facts about the host and host-side measurements (free-form; see docs/bench-json.md).
    public var host: [String: JSONValue]
    /// One row per workload and policy.
    public var results: [BenchRow]

    public init(host: [String: JSONValue] = [:], results: [BenchRow] = []) {
        self.host = host
        self.results = results
    }

    /// Fills `ratio_vs_none` of every row from the `none` row of the same workload
    /// (policy-independent rows, policy `all`, get 1).
    public mutating func computeRatios() {
        var base: [String: UInt64] = [:]
        for r in results where r.policy == "none" { base[r.workload] = r.modeledCycles }
        for i in results.indices {
            if results[i].policy == "all" { results[i].ratioVsNone = 1; continue }
            if let b = base[results[i].workload], b > 0 {
                results[i].ratioVsNone = Double(results[i].modeledCycles) / Double(b)
            } else if let b = base[results[i].workload], b == 0 {
                results[i].ratioVsNone = results[i].modeledCycles == 0 ? 1 : nil
            }
        }
    }

    /// Pretty, key-sorted JSON.
    public func jsonData() throws -> Data {
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return try enc.encode(self)
    }
}
