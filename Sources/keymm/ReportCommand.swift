// `keymm report RESULTS...`: a self-contained HTML report (inline CSS/SVG, no network) from bench
// and sweep JSON results, fuzz summaries, JSONL shards (a directory of them, merged first) and
// run JSON results. Exit status: 0 success, 2 unreadable or invalid input
// (`FILE:LINE:COLUMN: error: ...`).
import ArgumentParser
import Foundation
import KeyMM

struct Report: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Render bench (and run) JSON results as one self-contained HTML file with SVG charts."
    )

    @Argument(help: "Bench/sweep JSON results, fuzz summaries, merged results, JSONL shards (files or a directory: merged first) and run JSON results (`keymm run --json`).")
    var results: [String] = []

    @Option(name: .long, help: "Output HTML file (default keymm-report.html).")
    var output: String = "keymm-report.html"

    @Option(name: .long, help: "Cost profile JSON to price the cost breakdown (default: the documented defaults).")
    var costs: String?

    @Flag(name: .long, help: "No summary line.")
    var quiet = false

    func run() throws {
        guard !results.isEmpty else {
            FileHandle.standardError.write(Data("keymm report: error: no input files\n".utf8))
            throw ExitCode(2)
        }
        var report = HTMLReport()
        if let costs {
            do { report.costs = try CostProfile.load(from: costs) } catch {
                FileHandle.standardError.write(Data("\(costs):1:1: error: cannot load cost profile: \(error)\n".utf8))
                throw ExitCode(2)
            }
        }
        // JSONL shards given as files are merged together into one run; a directory is one run.
        let shardFiles = results.filter { $0.hasSuffix(".jsonl") }
        do {
            if !shardFiles.isEmpty { try report.add(shards: shardFiles) }
            for file in results where !file.hasSuffix(".jsonl") {
                var isDir: ObjCBool = false
                if FileManager.default.fileExists(atPath: file, isDirectory: &isDir), isDir.boolValue {
                    try report.add(shards: [file])
                } else {
                    try report.add(file: file)
                }
            }
        } catch {
            FileHandle.standardError.write(Data("\(error.description)\n".utf8))
            throw ExitCode(2)
        }
        do { try report.render().write(toFile: output, atomically: true, encoding: .utf8) } catch {
            FileHandle.standardError.write(Data("keymm report: error: cannot write \(output): \(error)\n".utf8))
            throw ExitCode(2)
        }
        if !quiet { print("report: \(report.benches.count) bench, \(report.fuzz.count) fuzz and \(report.runs.count) run results -> \(output)") }
    }
}
