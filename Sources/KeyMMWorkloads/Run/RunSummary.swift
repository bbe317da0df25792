// What `keymm run` and `keymm replay` print on the terminal about a file: the counts line, the
// system calls the model does not model (by name), the results learned from the log, the input
// lines replay skipped (with their errors), and the total over several files; and the input
// error of a file in which nothing ran.
//
// Invariant: nothing a file holds vanishes without a word: every call is executed, counted as
// not modeled (by name), learned, or an error; a file with no executed call is an error.
import Foundation
import KeyMMTrace

extension ScenarioRunner {
    /// The error for a file in which the model executed no call (empty, a directory's worth of
    /// nothing, comments only, not strace at all, or only calls the model does not model).
    public func nothingRanError(file: String) -> RunInputError? {
        guard calls == 0 else { return nil }
        var what: String
        if notModeled.isEmpty && skippedInputCount == 0 {
            what = "no system call in this file"
        } else if notModeled.isEmpty {
            what = "no line of this file is a call in strace syntax (\(skippedInputCount) lines skipped; the first: \(skippedInput.first.map { "\($0.location): \($0.message)" } ?? "?"))"
        } else {
            what = "no call here is one the model executes (not modeled: \(Self.byCount(notModeled, limit: 5)))"
        }
        what += "; a scenario is strace output, [PID] NAME(ARGS) = RESULT per line (docs/scenario-format.md)"
        return RunInputError(location: SourceLocation(file: file, line: 1, column: 1), message: "nothing to run: " + what)
    }

    /// The lines the terminal shows for one file (after divergences and violations).
    public func summaryLines(file: String, lenient: Bool, maxSkipped: Int = 5) -> [String] {
        var out = ["\(file): \(calls) calls, \(Self.reproducedText(reproduced, compared)), \(divergences.count) divergences, \(violations.count) invariant violations"]
        if !notModeled.isEmpty {
            let n = notModeled.values.reduce(0, +)
            out.append("  not modeled: \(Self.count(n, "call")) of \(Self.count(notModeled.count, "system call")) the model does not model: \(Self.byCount(notModeled, limit: 8))")
        }
        if !learned.isEmpty {
            let n = learned.values.reduce(0, +)
            out.append("  learned from the log: \(Self.count(n, "result")) of calls on files the model does not know, taken as recorded (not compared): \(Self.byCount(learned, limit: 6))")
        }
        if lenient {
            out.append("  unparsed or unknown lines skipped: \(skippedInputCount)\(skippedInputCount > 0 ? ":" : "")")
            for e in skippedInput.prefix(maxSkipped) { out.append("    \(e.description)") }
            if skippedInputCount > maxSkipped {
                out.append("    ... and \(skippedInputCount - maxSkipped) more (--json FILE lists the first \(min(skippedInputCount, 100)) in skipped_input)")
            }
            let pages = inferred.reduce(UInt64(0)) { $0 + ((UInt64($1.end.dropFirst(2), radix: 16) ?? 0) - (UInt64($1.start.dropFirst(2), radix: 16) ?? 0)) / 4096 }
            let kinds = ["binary", "interpreter", "stack", "unexplained"].compactMap { k -> String? in
                let n = inferred.filter { $0.kind == k }.count
                return n == 0 ? nil : "\(k) \(n)"
            }
            out.append("  inferred exec-time regions (not divergences): \(inferred.count) regions, \(pages) pages"
                       + (kinds.isEmpty ? "" : " (\(kinds.joined(separator: ", ")))"))
        }
        return out
    }

    /// `read ×30, write ×12, ... and 4 more`: the most frequent first, ties by name.
    static func byCount(_ counts: [String: Int], limit: Int) -> String {
        let sorted = counts.sorted { $0.value != $1.value ? $0.value > $1.value : $0.key < $1.key }
        var s = sorted.prefix(limit).map { "\($0.key) ×\($0.value)" }.joined(separator: ", ")
        if sorted.count > limit { s += ", ... and \(sorted.count - limit) more" }
        return s
    }

    /// `12/12 recorded results reproduced (100.00%)`, or `no recorded result to compare` (never a
    /// percentage of nothing).
    static func reproducedText(_ reproduced: Int, _ compared: Int) -> String {
        guard compared > 0 else { return "no recorded result to compare" }
        return "\(reproduced)/\(compared) recorded results reproduced (\(percent(100.0 * Double(reproduced) / Double(compared))))"
    }

    static func count(_ n: Int, _ noun: String) -> String { "\(n) \(noun)\(n == 1 ? "" : "s")" }

    static func percent(_ rate: Double) -> String {
        // Never round a partial result up to 100.00%.
        let text = String(format: "%.2f%%", rate)
        return rate < 100 && text == "100.00%" ? "99.99%" : text
    }
}

extension RunReport {
    /// The terminal's total line for a run over several files.
    public var totalLine: String {
        var s = "total: \(files.count) files, \(calls) calls, \(ScenarioRunner.reproducedText(reproduced, compared)), \(divergences.count) divergences, \(violations.count) invariant violations"
        let nm = notModeled.values.reduce(0, +)
        if nm > 0 { s += ", \(nm) calls not modeled" }
        let l = learned.values.reduce(0, +)
        if l > 0 { s += ", \(l) results learned" }
        return s
    }
}

extension ScenarioRunner {
    /// After an input error stopped a strict run: the input errors in the rest of `reader`
    /// (syntax, unknown call names, unknown errnos), found without executing anything, so one
    /// run lists every misspelling like a compiler does. At most `limit`; `count` counts all.
    public static func remainingInputErrors(_ reader: TraceReader, limit: Int = 10) -> (errors: [RunInputError], count: Int) {
        var errors: [RunInputError] = []
        var count = 0
        func note(_ e: RunInputError) {
            count += 1
            if errors.count < limit { errors.append(e) }
        }
        while true {
            let event: TraceEvent?
            do { event = try reader.next() } catch {
                note(RunInputError(error))
                continue
            }
            guard let event else { break }
            if case .call(let line) = event, ModeledCall.byName[line.name] == nil, !LinuxNames.isSyscall(line.name) {
                note(RunInputError(ModeledCall.unknownCallError(line)))
            }
        }
        return (errors, count)
    }
}
