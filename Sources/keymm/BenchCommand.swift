// `keymm bench [WORKLOAD...]`: runs bench workloads under several allocator policies side by side
// and prints modeled cycles, ratios against `none`, counters and host rates as a table (default
// on a terminal), JSON (schema in docs/bench-json.md; default otherwise) or CSV.
// Exit status: 0 success, 2 bad input or usage.
import ArgumentParser
import Foundation
import KeyMM

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run workloads under allocator policies side by side (modeled cycles, ratios vs none, host rates).",
        discussion: "Workloads: " + BenchRegistry.workloads.map { "\($0.name) (\($0.summary))" }.joined(separator: "; ")
    )

    @Argument(help: "Workloads to run (default: all). Known: \(BenchRegistry.names.joined(separator: ", ")).")
    var workloads: [String] = []

    @Option(name: .long, help: "Comma-separated allocator policies (default: all). `none` is always run for the ratios.")
    var policy: String?

    @Option(name: .long, help: "Output format: json, table, csv or jsonl (default: table on a terminal, json otherwise; a shard writes jsonl).")
    var format: String?

    @Option(name: .long, help: "Write the result to FILE instead of standard output.")
    var output: String?

    @OptionGroup var modelOptions: ModelOptions

    @Flag(name: .long, help: "Shorter runs (smoke test).")
    var quick = false

    @Flag(name: .long, help: "No progress messages.")
    var quiet = false

    @OptionGroup var sharding: ShardOptions

    func run() throws {
        do {
            try runBench()
        } catch let e as BenchUsageError {
            printError(e.located ? e.message : "keymm bench: error: \(e.message)")
            throw ExitCode(2)
        }
    }

    struct BenchUsageError: Error {
        var message: String
        /// The message already names its place (a located config error): printed as it is.
        var located = false
    }

    func runBench() throws {
        let model: ModelConfig
        do { model = try modelOptions.modelConfig() } catch { throw BenchUsageError(message: error.message, located: error.located) }
        var costs = CostProfile.default
        if let file = model.costsFile {
            do { costs = try CostProfile.load(from: file) } catch { throw BenchUsageError(message: "\(error)") }
        }
        var selected: [any BenchWorkload] = []
        for name in workloads {
            guard let w = BenchRegistry.workload(named: name) else {
                throw BenchUsageError(message: "unknown workload '\(name)'; known: \(BenchRegistry.names.joined(separator: ", "))")
            }
            selected.append(w)
        }
        if selected.isEmpty { selected = BenchRegistry.workloads }
        var policies: [AllocatorPolicy] = []
        if let policy {
            for p in policy.split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces) }) where !p.isEmpty {
                guard let ap = AllocatorPolicy(rawValue: p) else {
                    throw BenchUsageError(message: "unknown policy '\(p)'; known: \(AllocatorPolicy.allCases.map(\.rawValue).joined(separator: ", "))")
                }
                if !policies.contains(ap) { policies.append(ap) }
            }
        }
        let shard: Shard
        do { shard = try sharding.resolve() } catch { throw BenchUsageError(message: error.message) }
        let plan = BenchPlan.bench(selected, policies: policies, config: model, costs: costs, quick: quick)
        try BenchOutput(format: format, output: output, quiet: quiet, command: "bench").write(plan, shard: shard)
    }
}

/// Runs a bench plan (bench or sweep) and writes its result: the whole report as JSON, a table
/// or CSV, or JSON Lines (one line per unit, flushed as produced; required for a shard).
struct BenchOutput {
    var format: String?
    var output: String?
    var quiet: Bool
    var command: String

    func write(_ plan: BenchPlan, shard: Shard) throws {
        typealias BenchUsageError = Bench.BenchUsageError
        // A shard writes JSON Lines unless told otherwise (then it is an error below).
        let jsonl = format == "jsonl" || (format == nil && shard.count > 1)
        var fmt = BenchFormat.json
        if let format, format != "jsonl" {
            guard let f = BenchFormat(rawValue: format) else { throw BenchUsageError(message: "unknown format '\(format)'; accepted: json, table, csv, jsonl") }
            fmt = f
        } else if format == nil {
            fmt = output == nil && isatty(STDOUT_FILENO) == 1 ? .table : .json
        }
        if shard.count > 1 && !jsonl {
            throw BenchUsageError(message: "a shard (\(shard)) writes --format jsonl; `keymm merge` assembles the report")
        }
        let showProgress = !quiet && isatty(STDERR_FILENO) == 1
        let progress: (String) -> Void = { step in
            if showProgress { FileHandle.standardError.write(Data("\r\u{1B}[2K\(command): \(step) ...".utf8)) }
        }
        if jsonl {
            var handle = FileHandle.standardOutput
            if let output {
                guard FileManager.default.createFile(atPath: output, contents: nil), let h = FileHandle(forWritingAtPath: output) else {
                    throw BenchUsageError(message: "cannot write \(output)")
                }
                handle = h
            }
            let count: Int
            do {
                count = try BenchRunner.runShard(plan, shard: shard, writer: JSONLWriter(handle: handle), progress: progress)
            } catch let e as ConfigError {
                throw BenchUsageError(message: e.description)
            }
            if showProgress { FileHandle.standardError.write(Data("\r\u{1B}[2K".utf8)) }
            if !quiet, let output { printError("\(command): shard \(shard): \(count) rows written to \(output)") }
            return
        }
        let report: BenchReport
        do {
            report = try BenchRunner.run(plan, progress: progress)
        } catch let e as ConfigError {
            throw BenchUsageError(message: e.description)
        }
        if showProgress { FileHandle.standardError.write(Data("\r\u{1B}[2K".utf8)) }
        let text = BenchFormatter.render(report, as: fmt)
        if let output {
            do { try text.write(toFile: output, atomically: true, encoding: .utf8) } catch { throw BenchUsageError(message: "cannot write \(output): \(error)") }
            if !quiet { print("\(command): \(report.results.count) rows written to \(output)") }
        } else {
            print(text, terminator: "")
        }
    }
}
