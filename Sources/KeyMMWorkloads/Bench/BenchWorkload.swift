// The bench's workload registry and runner. A workload is a value conforming to `BenchWorkload`;
// `BenchRegistry.workloads` lists them (append yours in the marked section). The runner runs the
// units of a BenchPlan (BenchPlan.swift: every selected workload under every selected policy, or a
// sweep's points) on a fresh machine each time, all of them or one shard's, and the report is
// assembled from the units' results (BenchReport.assemble), with ratio_vs_none.
//
// Invariant: a workload's modeled result (cycles, counters) depends only on its context
// (config, costs, policy, seed) — never on the host or on other workloads.
import Foundation
import KeyMMBase
import KeyMMHardware
import KeyMMKernel

/// What a workload runs with.
public struct BenchContext: Sendable {
    /// Machine + kernel configuration (`--set`, `--config`).
    public var config: ModelConfig
    /// Cost profile (`costs=FILE` or the defaults).
    public var costs: CostProfile
    /// The allocator policy of this run; nil for policy-independent workloads.
    public var policy: AllocatorPolicy?
    /// Shorter runs (tests, smoke checks): workloads scale their iteration counts / durations down.
    public var quick: Bool
    /// The case of a workload with variants (`BenchWorkload.variants`), nil otherwise.
    public var variant: String?

    public init(config: ModelConfig = ModelConfig(), costs: CostProfile = .default, policy: AllocatorPolicy? = nil, quick: Bool = false,
                variant: String? = nil) {
        self.config = config
        self.costs = costs
        self.policy = policy
        self.quick = quick
        self.variant = variant
    }

    /// A fresh machine for this run.
    public func makeMachine() throws -> Machine { try Machine(config: config.machine, costs: costs) }
}

/// A workload's output: its row and any host facts it measured (merged into the report's `host`).
public struct BenchResult: Sendable {
    public var row: BenchRow
    public var host: [String: JSONValue]
    public init(row: BenchRow, host: [String: JSONValue] = [:]) { self.row = row; self.host = host }
}

/// A bench workload.
public protocol BenchWorkload: Sendable {
    /// Name on the command line and in rows (`engine`, `alloc-free`, ...).
    var name: String { get }
    /// One line for `keymm bench --help` and tables.
    var summary: String { get }
    /// True when the result does not depend on the allocator policy (run once, policy `all`).
    var policyIndependent: Bool { get }
    /// Runs once in `context` and returns its row (the runner fills ratio_vs_none).
    func run(_ context: BenchContext) throws -> BenchResult
    /// The cases a workload runs as units of their own, each giving one row named
    /// `NAME/CASE...` (`sgx`: a scenario under one design); `run` finds its case in
    /// `context.variant`. Empty (the default): one unit, `context.variant` nil.
    func variants(quick: Bool) -> [String]
}

extension BenchWorkload {
    public func variants(quick: Bool) -> [String] { [] }
}

/// Every workload `keymm bench` knows, in the order it runs them by default.
public enum BenchRegistry {
    public static let workloads: [any BenchWorkload] = [
        EngineWorkload(),
        FootprintWorkload(),
        // ---- APPEND NEW WORKLOADS BELOW THIS LINE (one line each) ----
        AllocFreeWorkload(),
        FaultsWorkload(),
        VMAsWorkload(),
        MacroWorkload(),
        TenantsWorkload(),
        KeyIDPressureWorkload(),
        CVMChurnWorkload(),
        ParserWorkload(),
        FaultsWorkload(evicting: true),
        SGXWorkload(),
    ]

    /// The workload with this name, if any.
    public static func workload(named name: String) -> (any BenchWorkload)? {
        workloads.first { $0.name == name }
    }

    /// Names, for errors and help.
    public static var names: [String] { workloads.map(\.name) }
}

/// Runs workloads under policies and assembles the report.
public enum BenchRunner {
    /// Runs `workloads` under `policies` (`none` is added when missing so ratios exist).
    /// `progress` is told the workload/policy about to run.
    public static func run(_ workloads: [any BenchWorkload], policies: [AllocatorPolicy], base: BenchContext,
                           progress: ((String) -> Void)? = nil) throws -> BenchReport {
        let plan = BenchPlan.bench(workloads, policies: policies, config: base.config, costs: base.costs, quick: base.quick)
        return try run(plan, progress: progress)
    }

    /// Runs every unit of `plan` and assembles the report.
    package static func run(_ plan: BenchPlan, progress: ((String) -> Void)? = nil) throws -> BenchReport {
        var results: [(index: Int, result: BenchResult)] = []
        try run(plan, shard: .whole, progress: progress) { results.append(($0, $1)) }
        return BenchReport.assemble(host: BenchHost.facts(), results: results)
    }

    /// Runs the units of `shard` in order, handing each result to `emit` as it is produced.
    package static func run(_ plan: BenchPlan, shard: Shard, progress: ((String) -> Void)? = nil,
                           emit: (Int, BenchResult) throws -> Void) throws {
        for u in shard.units(of: plan.units.count) {
            let unit = plan.units[u]
            let context = BenchContext(config: unit.config, costs: plan.costs, policy: unit.policy, quick: plan.quick, variant: unit.variant)
            progress?("\(unit.workload.name)" + (unit.variant.map { "/\($0)" } ?? "") + " / \(unit.policy?.rawValue ?? "all")" + (unit.point.map { " [\($0.label)]" } ?? ""))
            var result = try unit.workload.run(context)
            result.row.point = unit.point
            try emit(u, result)
        }
    }
}

/// Host facts and host-side timing helpers.
public enum BenchHost {
    /// CPU model, logical CPUs, kernel release, libcrypto version.
    public static func facts() -> [String: JSONValue] {
        var h: [String: JSONValue] = [:]
        if let cpu = cpuModel() { h["cpu"] = .string(cpu) }
        h["logical_cpus"] = .int(Int64(ProcessInfo.processInfo.activeProcessorCount))
        h["kernel"] = .string(ProcessInfo.processInfo.operatingSystemVersionString)
        h["libcrypto"] = .string(EncryptionEngine.libcryptoVersion)
        return h
    }

    /// "model name" from /proc/cpuinfo.
    public static func cpuModel() -> String? {
        guard let text = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8) else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix("model name") {
            if let colon = line.firstIndex(of: ":") { return line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces) }
        }
        return nil
    }

    /// CPU time of the calling thread in seconds (what `openssl speed` divides by: CPU, not wall, time).
    public static func threadCPUSeconds() -> Double { HostClock.threadCPUSeconds() }

    /// Monotonic wall-clock seconds.
    public static func wallSeconds() -> Double { HostClock.wallSeconds() }

    /// Runs a program found on PATH; returns its stdout+stderr, or nil when it cannot run or fails.
    public static func runProgram(_ name: String, _ args: [String]) -> String? {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = [name] + args
        let out = Pipe()
        p.standardOutput = out
        p.standardError = out
        p.standardInput = FileHandle.nullDevice
        do { try p.run() } catch { return nil }
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else { return nil }
        return String(decoding: data, as: UTF8.self)
    }
}
