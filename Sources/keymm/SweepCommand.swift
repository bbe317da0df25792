// `keymm sweep SPEC.toml`: the cartesian product of settings × workloads × policies a TOML spec
// names (KeyMMWorkloads/Bench/SweepSpec.swift), one bench row per point tagged with its point,
// written like `keymm bench` writes (json, table, csv, or jsonl for a shard). Exit status: 0,
// or 2 for bad input (a located `SPEC:LINE:COLUMN: error: ...` for the spec).
import ArgumentParser
import Foundation
import KeyMM

struct Sweep: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the bench over the cartesian product of settings, workloads and policies a TOML spec names.",
        discussion: """
            SPEC: workloads = ["alloc-free", ...] (required), policies = [...] (optional), quick = true (optional), \
            and --set keys: an array is an axis (cache = ["1M", "32M"]), a single value a fixed setting. Points are \
            numbered in a fixed order: setting combinations (keys alphabetical, the first slowest), then workloads, \
            then policies (docs/scale-out.md).
            """)

    @Argument(help: "The sweep spec (TOML).")
    var spec: String

    @Option(name: .long, help: "Output format: json, table, csv or jsonl (default: table on a terminal, json otherwise; a shard writes jsonl).")
    var format: String?

    @Option(name: .long, help: "Write the result to FILE instead of standard output.")
    var output: String?

    @OptionGroup var modelOptions: ModelOptions

    @Flag(name: .long, help: "Shorter runs (as if the spec said quick = true).")
    var quick = false

    @Flag(name: .long, help: "No progress messages.")
    var quiet = false

    @Flag(name: .customLong("list-points"), help: "Print the points in order and exit.")
    var listPoints = false

    @OptionGroup var sharding: ShardOptions

    func run() throws {
        do {
            try runSweep()
        } catch let e as Bench.BenchUsageError {
            printError(e.located ? e.message : "keymm sweep: error: \(e.message)")
            throw ExitCode(2)
        } catch let e as ConfigFileError {
            printError(e.description)
            throw ExitCode(2)
        }
    }

    func runSweep() throws {
        let base: ModelConfig
        do { base = try modelOptions.modelConfig() } catch { throw Bench.BenchUsageError(message: error.message, located: error.located) }
        var costs = CostProfile.default
        if let file = base.costsFile {
            do { costs = try CostProfile.load(from: file) } catch { throw Bench.BenchUsageError(message: "\(error)") }
        }
        guard let text = try? String(contentsOfFile: spec, encoding: .utf8) else {
            throw ConfigFileError(file: spec, line: 1, column: 1, message: "cannot read the sweep spec")
        }
        let parsed = try SweepSpec(text: text, file: spec, base: base)
        let plan = try parsed.plan(base: base, costs: costs, quick: quick)
        if listPoints {
            for (i, u) in plan.units.enumerated() {
                print("\(i)\t\(u.point?.label ?? "")\t\(u.workload.name)\t\(u.policy?.rawValue ?? "all")")
            }
            return
        }
        let shard: Shard
        do { shard = try sharding.resolve() } catch { throw Bench.BenchUsageError(message: error.message) }
        try BenchOutput(format: format, output: output, quiet: quiet, command: "sweep").write(plan, shard: shard)
    }
}
