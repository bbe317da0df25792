// The bench's workload registry and runner. A workload is a value conforming to `BenchWorkload`;
// `BenchRegistry.workloads` lists them (append yours in the marked section). The runner runs every
// selected workload under every selected policy on a fresh machine each time (policy-independent
// workloads run once, as policy `all`), always includes `none` so ratios exist, and computes
// ratio_vs_none.
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

    public init(config: ModelConfig = ModelConfig(), costs: CostProfile = .default, policy: AllocatorPolicy? = nil, quick: Bool = false) {
        self.config = config
        self.costs = costs
        self.policy = policy
        self.quick = quick
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
        var report = BenchReport(host: BenchHost.facts())
        var pols = policies.isEmpty ? AllocatorPolicy.allCases : policies
        if !pols.contains(.none) { pols.insert(.none, at: 0) }
        for w in workloads {
            let runs: [AllocatorPolicy?] = w.policyIndependent ? [nil] : pols
            for p in runs {
                var ctx = base
                ctx.policy = p
                if let p { ctx.config.kernel.policy = p }
                progress?("\(w.name) / \(p?.rawValue ?? "all")")
                let result = try w.run(ctx)
                report.results.append(result.row)
                for (k, v) in result.host { report.host[k] = v }
            }
        }
        report.computeRatios()
        return report
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
    public static func threadCPUSeconds() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
    }

    /// Monotonic wall-clock seconds.
    public static func wallSeconds() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
    }

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
