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

/// Where a sweep row sits: its point number and the settings the sweep varied there.
public struct BenchPoint: Sendable, Hashable, Codable {
    /// The point's number in the sweep's fixed order (docs/scale-out.md).
    public var index: Int
    /// The swept settings at this point (`--set` spellings).
    public var settings: [String: String]
    public init(index: Int, settings: [String: String]) { self.index = index; self.settings = settings }

    /// `cache=1M keyid-bits=3` (keys sorted).
    public var label: String { settings.keys.sorted().map { "\($0)=\(settings[$0]!)" }.joined(separator: " ") }
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
    /// Sweep rows: the point (absent in plain bench rows).
    public var point: BenchPoint?

    public init(workload: String, policy: String, modeledCycles: UInt64, ratioVsNone: Double? = nil,
                counters: [String: UInt64], wallSeconds: Double, hostRate: HostRate? = nil, extra: [String: JSONValue]? = nil) {
        self.workload = workload; self.policy = policy; self.modeledCycles = modeledCycles; self.ratioVsNone = ratioVsNone
        self.counters = counters; self.wallSeconds = wallSeconds; self.hostRate = hostRate; self.extra = extra
    }

    /// The row's group: the workload, and in a sweep its settings (`alloc-free [cache=1M]`).
    public var group: String { point.map { "\(workload) [\($0.label)]" } ?? workload }

    enum CodingKeys: String, CodingKey {
        case workload, policy, counters, extra, point
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

    /// Fills `ratio_vs_none` of every row from the `none` row of the same workload (and, in a
    /// sweep, the same settings); policy-independent rows (policy `all`) get 1.
    public mutating func computeRatios() {
        var base: [String: UInt64] = [:]
        for r in results where r.policy == "none" { base[r.group] = r.modeledCycles }
        for i in results.indices {
            if results[i].policy == "all" { results[i].ratioVsNone = 1; continue }
            if let b = base[results[i].group], b > 0 {
                results[i].ratioVsNone = Double(results[i].modeledCycles) / Double(b)
            } else if let b = base[results[i].group], b == 0 {
                results[i].ratioVsNone = results[i].modeledCycles == 0 ? 1 : nil
            }
        }
    }

    /// The report of rows produced by units (in any order): rows sorted by unit, each unit's
    /// host facts merged over `host` in unit order, ratios computed. The unsharded bench and
    /// `keymm merge` both build their result with this.
    public static func assemble(host: [String: JSONValue], results: [(index: Int, result: BenchResult)]) -> BenchReport {
        var report = BenchReport(host: host)
        for (_, r) in results.sorted(by: { $0.index < $1.index }) {
            report.results.append(r.row)
            for (k, v) in r.host { report.host[k] = v }
        }
        report.computeRatios()
        return report
    }

    /// The report without host time and host rates (what must be equal between a merge and the
    /// unsharded run; `extra` stays: it is modeled except for the host-measuring workloads).
    public var modeledOnly: BenchReport {
        var r = self
        r.host = [:]
        for i in r.results.indices {
            r.results[i].wallSeconds = 0
            r.results[i].hostRate = nil
        }
        return r
    }

    /// Pretty, key-sorted JSON.
    public func jsonData() throws -> Data {
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return try enc.encode(self)
    }
}
