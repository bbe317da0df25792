// `keymm merge FILE.jsonl... [--output FILE]`: checks that JSONL shards make one whole run (same
// config hash, every shard once and finished, every index once) and writes what the unsharded
// run writes: the bench/sweep report JSON, or the fuzz summary JSON plus, when the campaign found
// a violation, its shrunk scenario file (as `keymm fuzz` would). Exit status: 0 merged; 1 merged
// a fuzz campaign that found a violation; 2 the shards do not make one run (named) or bad input.
import ArgumentParser
import Foundation
import KeyMM

struct Merge: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Merge the JSONL shards of one fuzz campaign, bench or sweep into what the unsharded run writes.",
        discussion: "Arguments are shard files or directories of *.jsonl. Missing, duplicated, unfinished or foreign shards are refused (exit 2) with what is wrong.")

    @Argument(help: "Shard files (--format jsonl output) or directories holding them.")
    var shards: [String] = []

    @Option(name: .long, help: "Write the merged JSON to FILE (default: standard output).")
    var output: String?

    @Option(name: .long, help: "Fuzz: where the shrunk scenario goes (default keymm-fuzz-SEED.strace, as keymm fuzz).")
    var scenario: String?

    @Flag(name: .long, help: "No summary on standard error.")
    var quiet = false

    func run() throws {
        guard !shards.isEmpty else {
            printError("keymm merge: error: no shard files given")
            throw ExitCode(2)
        }
        if let output {
            do { try checkOverwritable(output, option: "--output") } catch {
                printError("keymm merge: error: \(error)")
                throw ExitCode(2)
            }
        }
        let merged: MergedRun
        do {
            merged = try CampaignMerge.merge(CampaignMerge.read(shards))
        } catch {
            printError(error.description)
            throw ExitCode(2)
        }
        let data: Data
        var finding: (FuzzFinding, Int?)?
        var seed: UInt64 = 0
        switch merged {
        case .bench(let report):
            data = (try? report.jsonData()) ?? Data()
            if !quiet { printError("keymm merge: \(shards.count) input(s): \(report.results.count) rows") }
        case .fuzz(let summary, let bug):
            data = (try? summary.jsonData()) ?? Data()
            seed = summary.seed
            if !quiet {
                printError("keymm merge: fuzz campaign, \(summary.wall.shardSeconds.count) shards: \(summary.calls) calls in \(summary.programs) programs, \(summary.violations) violating program(s)")
                summary.textLines(injectBug: bug).forEach { printError($0) }
            }
            finding = summary.firstFinding.map { ($0.finding, $0.policy.callsToFind) }
        }
        if let output {
            do { try (data + Data("\n".utf8)).write(to: URL(fileURLWithPath: output)) } catch {
                printError("keymm merge: error: cannot write \(output): \(error)")
                throw ExitCode(2)
            }
        } else {
            FileHandle.standardOutput.write(data + Data("\n".utf8))
        }
        if let (f, calls) = finding {
            try Fuzz.report(f, callsToFind: calls, writingTo: scenario ?? "keymm-fuzz-\(seed).strace", say: { printError($0) })
            throw ExitCode(1)
        }
    }
}
