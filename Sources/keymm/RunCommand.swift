// `keymm run FILE...` and `keymm replay TRACE`: execute scenario/trace files, each on a
// fresh machine model, and report divergences from the recorded results.
// Exit status (contract): run: 0 all reproduced, 1 a divergence or violation, 2 bad input;
// replay: lenient, 0 unless --strict and a divergence (1), 2 bad input.
import ArgumentParser
import Foundation
import KeyMM

struct OutputOptions: ParsableArguments {
    @Flag(name: .long, help: "Echo every executed call with its actual result, in the input syntax.")
    var trace = false

    @Option(name: .long, help: "Print /proc/PID/maps of the final state.")
    var maps: Int32?

    @Option(name: .long, help: "Print /proc/PID/smaps of the final state (with a KeyID: line per VMA).")
    var smaps: Int32?

    @Option(name: .long, help: "Write the full machine-readable result (schema in docs/run-json.md).")
    var json: String?

    @Flag(name: .long, help: "Print only divergences and errors.")
    var quiet = false
}

struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Execute scenario/trace files (strace syntax) on a fresh machine model.",
        discussion: "Recorded results are expectations: a call that does not reproduce its result is a divergence (exit 1). Bad input exits 2 with FILE:LINE:COLUMN: error: WHAT.")

    @Argument(help: "Scenario or strace files.")
    var files: [String]

    @OptionGroup var model: ModelOptions
    @OptionGroup var output: OutputOptions

    func run() throws {
        var failed = false
        try withInputErrors("run") {
            guard !files.isEmpty else { throw UsageError("no files given") }
            let config = try model.modelConfig()
            for file in files {
                let outcome = try execute(file: file, config: config, options: RunOptions(), output: output)
                if outcome.divergences > 0 || outcome.violations > 0 { failed = true }
            }
        }
        if failed { throw ExitCode(1) }
    }
}

struct Replay: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Replay a real program's strace or perf trace log (lenient: counts divergences).",
        discussion: "Reports calls replayed, results reproduced, divergences (first few with their lines) and the regions the exec built that the log does not show (inferred). Exits 0 unless --strict and a divergence.")

    @Argument(help: "An strace (-f, -tt, -T ...) or `perf trace -F all` log.")
    var trace: String

    @Flag(name: .long, help: "Exit 1 on any divergence.")
    var strict = false

    @OptionGroup var model: ModelOptions
    @OptionGroup var output: OutputOptions

    func run() throws {
        var failed = false
        try withInputErrors("replay") {
            let config = try model.modelConfig()
            var options = RunOptions()
            options.lenient = true
            let outcome = try execute(file: trace, config: config, options: options, output: output)
            failed = strict && outcome.divergences > 0
        }
        if failed { throw ExitCode(1) }
    }
}

struct RunOutcome {
    var divergences: Int
    var violations: Int
}

/// Runs one file on a fresh model and prints what the options ask for.
func execute(file: String, config: ModelConfig, options: RunOptions, output: OutputOptions) throws -> RunOutcome {
    let reader: TraceReader
    do { reader = try TraceReader(path: file, lenient: options.lenient) } catch {
        throw RunInputError(error)
    }
    let runner = ScenarioRunner(config: config, options: options)
    if output.trace { runner.echo = { print($0) } }
    let size = (try? FileManager.default.attributesOfItem(atPath: file)[.size] as? Int) ?? 0
    let bar = ProgressBar(label: (file as NSString).lastPathComponent, total: size)
    runner.progress = { bar.update($0) }
    var stopped: RunInputError?
    do { try runner.run(reader) } catch { stopped = error }
    bar.finish()

    for d in runner.divergences.prefix(options.lenient ? 10 : Int.max) {
        print("\(d.file):\(d.line): divergence: \(d.call): expected \(d.expected), got \(d.actual)")
    }
    if options.lenient && runner.divergences.count > 10 {
        print("... and \(runner.divergences.count - 10) more divergences")
    }
    for v in runner.violations { print(v.description) }
    if let stopped {
        printError(stopped.description)
        printError("note: the \(runner.calls) calls before \(stopped.location.file):\(stopped.location.line) executed; nothing after it did")
    }
    if !output.quiet {
        let rate = runner.compared == 0 ? 100.0 : 100.0 * Double(runner.reproduced) / Double(runner.compared)
        print("\(file): \(runner.calls) calls, \(runner.reproduced)/\(runner.compared) recorded results reproduced (\(String(format: "%.2f", rate))%), \(runner.divergences.count) divergences, \(runner.violations.count) invariant violations")
        if options.lenient {
            let skipped = runner.notModeled.values.reduce(0, +)
            print("  not modeled: \(skipped) calls of \(runner.notModeled.count) other system calls; unparsed lines skipped: \(runner.skippedInputCount)")
            let pages = runner.inferred.reduce(UInt64(0)) { $0 + ((UInt64($1.end.dropFirst(2), radix: 16) ?? 0) - (UInt64($1.start.dropFirst(2), radix: 16) ?? 0)) / 4096 }
            print("  inferred exec-time regions (not divergences): \(runner.inferred.count) regions, \(pages) pages")
        }
    }
    for h in runner.hints { print("hint: \(h)") }
    if let kernel = runner.kernel {
        if let pid = output.maps {
            guard let text = kernel.procMaps(ProcessID(pid)) else { throw UsageError("--maps \(pid): no such process at the end of \(file)") }
            print(text, terminator: "")
        }
        if let pid = output.smaps {
            guard let text = kernel.procSmaps(ProcessID(pid)) else { throw UsageError("--smaps \(pid): no such process at the end of \(file)") }
            print(text, terminator: "")
        }
    }
    if let json = output.json {
        let report = runner.report(files: [file], stoppedBy: stopped)
        do { try report.jsonData().write(to: URL(fileURLWithPath: json)) } catch {
            throw UsageError("cannot write \(json): \(error)")
        }
    }
    if stopped != nil { throw ExitCode(2) }
    return RunOutcome(divergences: runner.divergences.count, violations: runner.violations.count)
}
