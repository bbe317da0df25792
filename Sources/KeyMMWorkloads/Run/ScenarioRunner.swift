// Executing scenario and trace files on a fresh machine model: the event loop behind
// `keymm run` and `keymm replay`.
//
// Owns: the per-file run state (config pinned by `#@ set` lines, the kernel built at the
// first call, which trace pids are live), comparing every call's outcome with its recorded
// result, and the counts a report needs.
//
// Invariants: calls execute strictly in file order; a `#@ set` line after the first call is
// an input error (the machine is already built); an input error stops the run at its line,
// and everything before it has executed (the report says so); the same file and config give
// the same outcome, bit for bit.
import KeyMMBase
import KeyMMChecker
import KeyMMHardware
import KeyMMKernel
import KeyMMKeys
import KeyMMTrace

/// A recorded result the model did not reproduce.
public struct Divergence: Sendable, Hashable, Codable {
    public var file: String
    public var line: Int
    /// The call as the file wrote it (strace syntax, without its result).
    public var call: String
    public var expected: String
    public var actual: String
}

/// An input error that stopped a run: bad syntax, a bad argument, a bad setting.
public struct RunInputError: Error, Sendable, CustomStringConvertible {
    public let location: SourceLocation
    public let message: String
    public init(_ error: TraceError) { location = error.location; message = error.message }
    public init(location: SourceLocation, message: String) { self.location = location; self.message = redactingKeyMaterial(message) }
    public var description: String { "\(location): error: \(message)" }
}

/// A process's address space just before it exited (for `--maps`/`--smaps` of a process that
/// is gone at the end of a replay).
public struct ExitState: Sendable {
    public var maps: String
    public var smaps: String
    /// The exit line (`exit_group(0)` or `+++ exited with 0 +++`) the state was kept at.
    public var location: SourceLocation
}

/// How a run treats its input.
public struct RunOptions: Sendable {
    /// Replay mode: lines that do not parse, calls the model does not know and pids never
    /// started are counted and skipped instead of stopping the run.
    public var lenient = false
    /// The invariant checker's options (nil: no checking). On by default: every modeled call
    /// is followed by the checks of docs/invariants.md (Sources/KeyMMChecker).
    public var checker: CheckerOptions? = CheckerOptions()
    public init() {}
}

/// Runs scenario/trace files on one machine model.
public final class ScenarioRunner {
    public private(set) var config: ModelConfig
    public let options: RunOptions
    /// The kernel, built from `config` at the first call.
    public private(set) var kernel: Kernel?
    /// Called with every executed call and its actual result, in strace syntax (`--trace`).
    public var echo: ((String) -> Void)?

    /// Calls executed.
    public private(set) var calls = 0
    /// Calls that carried a recorded result the model compared.
    public internal(set) var compared = 0
    /// Compared calls whose recorded result the model reproduced.
    public internal(set) var reproduced = 0
    public internal(set) var divergences: [Divergence] = []
    /// The invariant checker (nil when RunOptions.checker is nil), attached at boot.
    public private(set) var checker: InvariantChecker?
    /// Broken invariants, each as `FILE:LINE: violation: NAME: detail`.
    public private(set) var violations: [Violation] = []
    /// Calls of system calls the model does not model (read, write, ...), by name.
    public private(set) var notModeled: [String: Int] = [:]
    /// Results taken from the log instead of computed (files the model does not know), by
    /// `call ERRNO` (e.g. `openat ENXIO`); neither compared nor reproduced.
    public private(set) var learned: [String: Int] = [:]
    /// Pids whose address space is kept just before they exit (`--maps`/`--smaps` of a process
    /// that is gone at the end): the text of /proc/PID/maps and smaps and the exit's place.
    public var keepStateAtExit: Set<Int32> = []
    public private(set) var stateAtExit: [Int32: ExitState] = [:]
    /// Regions replay assumed the exec built.
    public var inferred: [InferredRegion] { dispatcher.inferred }
    /// The outcome of the last executed call (nil if it was not modeled).
    public private(set) var lastOutcome: CallOutcome?
    /// Input problems skipped in lenient mode.
    public private(set) var skippedInput: [RunInputError] = []
    public private(set) var skippedInputCount = 0

    var dispatcher = SyscallDispatcher()
    var hintEvidence = ReplayHints()
    /// Settings the log's recorded results point to (Run/ReplayHints.swift); printed after
    /// the summary, never counted as divergences.
    public var hints: [String] { hintEvidence.messages }

    public init(config: ModelConfig, options: RunOptions = RunOptions()) {
        self.config = config
        self.options = options
    }

    /// Builds the machine and kernel now (normally done at the first call).
    @discardableResult
    public func boot() throws(RunInputError) -> Kernel {
        if let kernel { return kernel }
        var costs = CostProfile.default
        if let file = config.costsFile {
            do { costs = try CostProfile.load(from: file) } catch {
                throw RunInputError(location: SourceLocation(file: file, line: 1, column: 1),
                                    message: "cannot load cost profile: \(error)")
            }
        }
        do {
            try config.validate()
            let machine = try Machine(config: config.machine, costs: costs)
            let k = try Kernel(machine: machine, config: config.kernel)
            kernel = k
            if let o = options.checker { checker = InvariantChecker(kernel: k, options: o) }
            return k
        } catch let e as ModelConfig.SettingError {
            throw RunInputError(location: SourceLocation(file: "<config>", line: 1, column: 1), message: e.message)
        } catch {
            throw RunInputError(location: SourceLocation(file: "<config>", line: 1, column: 1), message: "\(error)")
        }
    }

    /// Called every few thousand events with the bytes of input consumed (progress bars).
    public var progress: ((Int) -> Void)?

    /// Runs every event of `reader` in order.
    public func run(_ reader: TraceReader) throws(RunInputError) {
        var events = 0
        while true {
            events &+= 1
            if events & 4095 == 0 { progress?(reader.bytesRead) }
            let event: TraceEvent?
            do { event = try reader.next() } catch {
                if options.lenient { noteSkipped(RunInputError(error)); continue }
                throw RunInputError(error)
            }
            guard let event else { break }
            do { try apply(event) } catch {
                if options.lenient { noteSkipped(error); continue }
                throw error
            }
        }
        for e in reader.skipped { noteSkipped(RunInputError(e)) }
    }

    /// Applies one event.
    public func apply(_ event: TraceEvent) throws(RunInputError) {
        switch event {
        case .set(let key, let value, let location):
            guard kernel == nil else {
                throw RunInputError(location: location, message: "`#@ set \(key)=\(value)` after the first call: settings must come before any call (the machine is already built)")
            }
            do { try config.apply(key: key, value: value) } catch {
                throw RunInputError(location: location, message: error.message)
            }
        case .call(let line):
            if !keepStateAtExit.isEmpty, line.name == "exit" || line.name == "exit_group" { keepState(at: line.location) }
            try execute(line)
        case .exited(let pid, _, let location), .killed(let pid, _, _, let location):
            if !keepStateAtExit.isEmpty { keepState(at: location) }
            if let kernel, kernel.task(ProcessID(pid ?? 1)) != nil { dispatcher.exitTask(kernel, ProcessID(pid ?? 1)) }
        case .signal(let pid, let name, let info, let location):
            compareSignal(pid: pid, name: name, info: info, location: location)
        case .superseded:
            break
        case .fault(let fault):
            try replayFault(fault)
        }
    }

    /// Parses and executes one line of scenario text (used by the demo and tests);
    /// returns the call's outcome (nil for a line that is not a modeled call).
    @discardableResult
    public func execute(text: String, file: String = "<demo>") throws(RunInputError) -> CallOutcome? {
        let reader = TraceReader(string: text, name: file)
        lastOutcome = nil
        try run(reader)
        return lastOutcome
    }

    /// Executes one call and compares its outcome with the recorded result.
    public func execute(_ line: SyscallLine) throws(RunInputError) {
        let kernel = try boot()
        let checked = checker != nil && Self.isModeled(line.name) ? Self.checkedCall(line, index: calls) : nil
        if let checked { checker?.beforeCall(checked) }
        let outcome: CallOutcome?
        do { outcome = try dispatcher.execute(line, on: kernel, lenient: options.lenient) } catch {
            throw RunInputError(error)
        }
        lastOutcome = outcome
        guard let outcome else {
            notModeled[line.name, default: 0] += 1
            return
        }
        if let checked, let checker { violations += checker.afterCall(checked, outcome: Self.checkedOutcome(outcome)) }
        calls += 1
        if dispatcher.learnedLast {
            learned["\(line.name) \(line.result.errnoName ?? "?")", default: 0] += 1
            echo?(Self.format(line, outcome, learned: line.result))
            return
        }
        echo?(Self.format(line, outcome))
        switch line.result {
        case .none, .unknown, .unfinished: return
        default: break
        }
        compared += 1
        hintEvidence.observe(line, outcome: outcome, pkeyCount: kernel.config.pkeyCount)
        if outcome.matches(line.result) {
            reproduced += 1
        } else {
            divergences.append(Divergence(file: line.location.file, line: line.location.line,
                                          call: Self.callText(line), expected: line.result.straceText,
                                          actual: outcome.straceText))
        }
    }

    func replayFault(_ fault: PageFault) throws(RunInputError) {
        guard let address = fault.address else { return }
        let kernel = try boot()
        guard let task = kernel.task(ProcessID(fault.pid ?? 1)) else { return }
        let access: FaultAccess = fault.flags.hasPrefix("x") ? .exec : .read
        _ = kernel.handleMMFault(task, VirtAddr(address), access)
    }

    func noteSkipped(_ e: RunInputError) {
        skippedInputCount += 1
        if skippedInput.count < 100 { skippedInput.append(e) }
    }

    /// Keeps the maps and smaps of every watched live process (an exit is about to happen).
    func keepState(at location: SourceLocation) {
        guard let kernel else { return }
        for pid in keepStateAtExit {
            guard let maps = kernel.procMaps(ProcessID(pid)), let smaps = kernel.procSmaps(ProcessID(pid)) else { continue }
            stateAtExit[pid] = ExitState(maps: maps, smaps: smaps, location: location)
        }
    }

    /// `name(args)` in strace syntax, key material redacted (this text goes to --trace,
    /// divergences, violation reports and JSON).
    static func callText(_ line: SyscallLine) -> String {
        let args = line.args.map(\.description).joined(separator: ", ")
        return redactingKeyMaterial("\(line.spelledName ?? line.name)(\(args))")
    }

    /// The call with its actual result, as --trace prints it; a result learned from the log
    /// prints as recorded, with a comment saying so.
    static func format(_ line: SyscallLine, _ outcome: CallOutcome, learned: TraceResult? = nil) -> String {
        let pid = line.pid.map { "\($0) " } ?? ""
        if let learned { return pid + callText(line) + " = " + learned.straceText + "  # learned from the log" }
        if case .noReturn = outcome { return pid + callText(line) + " = ?" }
        return pid + callText(line) + " = " + outcome.straceText
    }
}
