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

    @Option(name: .long, help: ArgumentHelp("Print /proc/PID/maps of the final state (of a process that exited: its last state before the exit).", valueName: "pid"))
    var maps: Int32?

    @Option(name: .long, help: ArgumentHelp("Print /proc/PID/smaps of the final state, with a KeyID: line per VMA (of a process that exited: its last state).", valueName: "pid"))
    var smaps: Int32?

    @Option(name: .long, help: ArgumentHelp("Write the full machine-readable result (schema in docs/run-json.md); several files: per-file and total figures.", valueName: "file"))
    var json: String?

    @Flag(name: .long, help: "Print only divergences and errors.")
    var quiet = false
}

struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Execute scenario/trace files (strace syntax) on a fresh machine model.",
        discussion: "Recorded results are expectations: a call that does not reproduce its result is a divergence (exit 1). Bad input exits 2 with FILE:LINE:COLUMN: error: WHAT: a malformed line, an unknown call name (neither a Linux system call nor a model-only call) or errno, a file with no call. System calls the model does not model (read, write, ...) are counted by name.")

    @Argument(help: "Scenario or strace files.")
    var files: [String]

    @OptionGroup var model: ModelOptions
    @OptionGroup var output: OutputOptions

    func run() throws {
        var failed = false
        try withInputErrors("run") {
            guard !files.isEmpty else { throw UsageError("no files given") }
            let config = try model.modelConfig()
            failed = try executeFiles(files, config: config, options: RunOptions(), output: output)
        }
        if failed { throw ExitCode(1) }
    }
}

struct Replay: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Replay a real program's strace or perf trace log (lenient: counts divergences).",
        discussion: "Reports calls replayed, results reproduced, divergences (first few with their lines), system calls the model does not model (by name), results learned from the log (failed opens of files the model does not know), skipped lines with their errors, and the regions the exec built that the log does not show (inferred). Exits 0 unless --strict and a divergence; 2 when nothing in the file could be replayed.")

    @Argument(help: "An strace (-f, -tt, -T ...) or `perf trace -F all` log.")
    var trace: String

    @Flag(name: .long, help: "Exit 1 on any divergence.")
    var strict = false

    @OptionGroup var model: ModelOptions
    @OptionGroup var output: OutputOptions

    func run() throws {
        var diverged = false
        try withInputErrors("replay") {
            let config = try model.modelConfig()
            var options = RunOptions()
            options.lenient = true
            diverged = try executeFiles([trace], config: config, options: options, output: output, violationsFail: false)
        }
        if strict && diverged { throw ExitCode(1) }
    }
}

/// Runs each file on a fresh model, prints what the options ask for, writes one JSON for all
/// of them; returns whether a divergence (or, with `violationsFail`, a violation) happened. An
/// input error stops the run at its file (exit 2; the JSON still holds every file run so far).
func executeFiles(_ files: [String], config: ModelConfig, options: RunOptions, output: OutputOptions,
                  violationsFail: Bool = true) throws -> Bool {
    if let json = output.json { try checkOverwritable(json, option: "--json") }
    var reports: [RunReport] = []
    var failed = false
    var stopped: RunInputError?
    for file in files {
        let (report, stop) = try execute(file: file, config: config, options: options, output: output)
        reports.append(report)
        if !report.divergences.isEmpty || (violationsFail && !report.violations.isEmpty) { failed = true }
        if let stop {
            stopped = stop
            if let next = files.firstIndex(of: file).map({ $0 + 1 }), next < files.count {
                printError("note: \(files.count - next) files after \(file) did not run")
            }
            break
        }
    }
    let combined = RunReport.combining(reports, config: config.settings)
    if files.count > 1 && !output.quiet { print(combined.totalLine) }
    if let json = output.json {
        do { try combined.jsonData().write(to: URL(fileURLWithPath: json)) } catch {
            throw UsageError("cannot write \(json): \(error)")
        }
    }
    if stopped != nil { throw ExitCode(2) }
    return failed
}

/// Runs one file on a fresh model and prints what the options ask for; returns its report and
/// the input error that stopped it, if one did.
func execute(file: String, config: ModelConfig, options: RunOptions, output: OutputOptions) throws -> (RunReport, RunInputError?) {
    let reader: TraceReader
    do { reader = try TraceReader(path: file, lenient: options.lenient) } catch {
        throw RunInputError(error)
    }
    let runner = ScenarioRunner(config: config, options: options)
    if output.trace { runner.echo = { print($0) } }
    runner.keepStateAtExit = Set([output.maps, output.smaps].compactMap { $0 })
    let size = (try? FileManager.default.attributesOfItem(atPath: file)[.size] as? Int) ?? 0
    let bar = ProgressBar(label: (file as NSString).lastPathComponent, total: size)
    runner.progress = { bar.update($0) }
    var stopped: RunInputError?
    do { try runner.run(reader) } catch { stopped = error }
    bar.finish()
    let nothingRan = stopped == nil ? runner.nothingRanError(file: file) : nil

    for d in runner.divergences.prefix(options.lenient ? 10 : Int.max) {
        print("\(d.file):\(d.line): divergence: \(d.call): expected \(d.expected), got \(d.actual)")
    }
    if options.lenient && runner.divergences.count > 10 {
        print("... and \(runner.divergences.count - 10) more divergences")
    }
    for v in runner.violations { print(v.description) }
    if let stopped {
        printError(stopped.description)
        let more = ScenarioRunner.remainingInputErrors(reader)
        for e in more.errors { printError(e.description) }
        if more.count > more.errors.count { printError("... and \(more.count - more.errors.count) more errors") }
        printError("note: the \(runner.calls) calls before \(stopped.location.file):\(stopped.location.line) executed; nothing after it did")
    }
    if let nothingRan { printError(nothingRan.description) }
    if !output.quiet {
        // Nothing ran: no counts line (no "100%" of nothing); replay still lists what it skipped.
        let lines = runner.summaryLines(file: file, lenient: options.lenient)
        for line in nothingRan == nil ? lines[...] : lines.dropFirst() { print(line) }
    }
    for h in runner.hints { printError("hint: \(h)") }   // standard error: --maps output stays Linux's format
    stopped = stopped ?? nothingRan
    if let kernel = runner.kernel, stopped == nil {
        if let pid = output.maps { print(try procText(pid, "maps", file: file, kernel.procMaps(ProcessID(pid)), runner), terminator: "") }
        if let pid = output.smaps { print(try procText(pid, "smaps", file: file, kernel.procSmaps(ProcessID(pid)), runner), terminator: "") }
    }
    return (runner.report(files: [file], stoppedBy: stopped), stopped)
}

/// /proc/PID/maps or smaps at the end; of a process that exited, its last state before the exit
/// (with a note on standard error, so standard output stays byte-for-byte Linux's format).
func procText(_ pid: Int32, _ what: String, file: String, _ live: String?, _ runner: ScenarioRunner) throws -> String {
    if let live { return live }
    if let kept = runner.stateAtExit[pid] {
        printError("note: process \(pid) exited (\(kept.location.file):\(kept.location.line)); /proc/\(pid)/\(what) as it was just before the exit:")
        return what == "maps" ? kept.maps : kept.smaps
    }
    let live = runner.kernel.map { $0.tasks.keys.sorted().map { String($0.rawValue) } } ?? []
    throw UsageError("--\(what) \(pid): no process \(pid) in \(file)" + (live.isEmpty ? "" : "; live at the end: \(live.prefix(20).joined(separator: ", "))"))
}
