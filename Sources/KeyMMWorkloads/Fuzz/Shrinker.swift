// Shrinking a failing program to a minimal scenario file (delta debugging): cut everything after
// the violating call, then remove chunks (halves, quarters, ... down to single lines), then single
// lines until nothing more can go; every candidate is re-run from scratch on a fresh model and
// kept only if the same invariant still fires. The result is written with its recorded results
// (the calls' actual outcomes), `#@ set` lines pinning every setting, and comments saying what
// went wrong, then run once more exactly as `keymm run` would run it to confirm it reproduces.
//
// A last pass turns each `type=user` key into a `type=cpu` key where the violation still fires,
// so the file carries no key= / tweak= hex unless the finding needs those bytes (then they are
// the fuzzer's own seeded key, never a user's).
//
// Invariant: a candidate that stops on an input error (a line naming a process whose fork was
// removed) counts as "still fires" only if the violation came before the error.
import Foundation
import KeyMMBase
import KeyMMChecker
import KeyMMKernel
import KeyMMTrace

extension Fuzzer {
    /// Runs `lines` on a fresh model of `config`; returns the index of the line after which
    /// `target` first fired, or nil.
    func firstFiring(_ lines: [String], config: ModelConfig, target: Invariant) -> Int? {
        let runner = ScenarioRunner(config: config, options: runOptions())
        for (i, line) in lines.enumerated() {
            do { try runner.execute(text: line, file: "<shrink>") } catch { return nil }
            if runner.violations.contains(where: { $0.invariant == target }) { return i }
        }
        return nil
    }

    func shrink(_ policy: AllocatorPolicy, program: Int, lines: [String], violation: Violation) -> FuzzFinding {
        let config = model(policy, program: program)
        let unmodified = model(policy, program: program, bug: false)
        let target = violation.invariant
        var runs = 0
        var cur = lines
        func test(_ c: [String]) -> Bool {
            guard runs < options.maxShrinkRuns else { return false }
            runs += 1
            guard let i = firstFiring(c, config: config, target: target) else { return false }
            // With an injected bug the candidate must need it: the unmodified model stays clean.
            if options.injectBug != nil && firstFiring(Array(c[0...i]), config: unmodified, target: target) != nil { return false }
            cur = Array(c[0...i])
            return true
        }
        // ddmin over chunks.
        var n = 2
        while cur.count >= 2 && runs < options.maxShrinkRuns {
            let chunk = (cur.count + n - 1) / n
            var reduced = false
            var start = 0
            while start < cur.count {
                var c = cur
                c.removeSubrange(start..<min(start + chunk, c.count))
                if !c.isEmpty && test(c) { reduced = true; break }
                start += chunk
            }
            if reduced {
                n = max(n - 1, 2)
            } else {
                if chunk == 1 { break }
                n = min(n * 2, cur.count)
            }
        }
        // Single lines, then moving a child's calls to pid 1 (so its fork can go), until a fixpoint.
        var changed = true
        while changed && runs < options.maxShrinkRuns {
            changed = false
            var i = cur.count - 1
            while i >= 0 && cur.count > 1 {
                var c = cur
                c.remove(at: i)
                if test(c) { changed = true }
                i = min(i - 1, cur.count - 1)
            }
            let pids = Set(cur.compactMap { line in line.split(separator: " ", maxSplits: 1).first.flatMap { Int($0) } }).filter { $0 != 1 }
            for pid in pids.sorted(by: >) {
                let c = cur.map { Fuzzer.rehome($0, from: pid) }
                if c != cur && test(c) { changed = true }
            }
        }
        // Key material: a user key whose bytes the violation does not need becomes a CPU-generated
        // key, so the written file holds no key= / tweak= hex unless the finding depends on it.
        for i in cur.indices where runs < options.maxShrinkRuns {
            let plain = Fuzzer.withoutKeyMaterial(cur[i])
            if plain != cur[i] {
                var c = cur
                c[i] = plain
                _ = test(c)
            }
        }
        let (text, reproduced, divergences) = writeScenario(cur, config: config, policy: policy, program: program,
                                                           violation: violation, originalCalls: lines.count, runs: runs)
        return FuzzFinding(policy: policy, program: program, violation: violation,
                           originalCalls: lines.count, shrunkCalls: cur.count, shrinkRuns: runs, scenario: text,
                           reproduced: reproduced, reproducedDivergences: divergences)
    }

    /// `line` made by pid 1 instead of `pid` (and naming pid 1 where it named `pid` as a target).
    static func rehome(_ line: String, from pid: Int) -> String {
        let prefix = "\(pid) "
        guard line.hasPrefix(prefix) else { return line }
        var rest = String(line.dropFirst(prefix.count))
        for call in ["migrate_pages(", "move_pages("] where rest.hasPrefix(call + "\(pid),") {
            rest = call + "1," + rest.dropFirst(call.count + "\(pid),".count)
        }
        return "1 " + rest
    }

    /// An add_key line of a `type=user` key (key= and tweak= hex) as the same call with a
    /// `type=cpu` key (the key service generates the material); other lines unchanged.
    static func withoutKeyMaterial(_ line: String) -> String {
        guard line.contains("add_key("), let open = line.range(of: "\"type=user "),
              let close = line[open.upperBound...].range(of: "\", ") else { return line }
        let options = "type=cpu algorithm=aes-xts-128"
        var rest = line[close.upperBound...]
        guard let comma = rest.firstIndex(of: ",") else { return line }   // the payload length
        rest = rest[comma...]
        return String(line[..<open.lowerBound]) + "\"" + options + "\", \(options.utf8.count)" + String(rest)
    }

    /// A generated line without the id it asks for (`fork() = 7` -> `fork()`): the written file
    /// records the actual outcome instead.
    static func stripRecordedID(_ line: String) -> String {
        guard let r = line.range(of: ") = ", options: .backwards) else { return line }
        let tail = line[r.upperBound...]
        guard !tail.isEmpty, tail.allSatisfy({ $0.isASCII && $0.isNumber }) else { return line }
        return String(line[..<line.index(after: r.lowerBound)])
    }

    /// The scenario file for `lines`, with the results the calls actually return, and what
    /// running it as `keymm run` does (the violation of `violation.invariant`, divergences).
    func writeScenario(_ lines: [String], config: ModelConfig, policy: AllocatorPolicy, program: Int,
                       violation: Violation, originalCalls: Int, runs: Int)
        -> (String, Violation?, Int) {
        // Re-run to record each call's outcome and to locate the violation.
        let runner = ScenarioRunner(config: config, options: runOptions())
        var body: [String] = []
        var fired: Violation?
        for line in lines {
            let outcome = try? runner.execute(text: line, file: "<shrink>")
            let result: String
            switch outcome {
            case .some(.noReturn): result = " = ?"
            case .some(let o): result = " = " + o.straceText
            case .none: result = ""
            }
            body.append(Fuzzer.stripRecordedID(line) + result)
            if fired == nil, let v = runner.violations.first(where: { $0.invariant == violation.invariant }) {
                fired = v
                body.append("# ^ \(v.invariant.rawValue): \(v.detail)")
            }
        }
        var head: [String] = []
        head.append("# Found by keymm fuzz --seed \(options.seed) --policy \(policy.rawValue)"
                     + (options.injectBug.map { " --inject-bug \($0.name)" } ?? "")
                     + (options.without.isEmpty ? "" : " --without \(options.without.sorted().joined(separator: ","))")
                     + " in program \(program), call \((violation.site?.index ?? 0) + 1).")
        if let bug = options.injectBug {
            head.append("# Injected bug \(bug.name): \(bug.mistake) (\(bug.location)).")
        }
        head.append("# Violation: \(violation.invariant.rawValue): \(violation.invariant.statement).")
        head.append("# Shrunk from \(originalCalls) to \(lines.count) calls in \(runs) runs; `keymm run` on this file reports it and exits 1.")
        for (k, v) in config.settings.sorted(by: { $0.key < $1.key }) { head.append("#@ set \(k)=\(v)") }
        let text = (head + body).joined(separator: "\n") + "\n"
        // Confirm: run the text as `keymm run` does (defaults + the file's own settings).
        let check = ScenarioRunner(config: ModelConfig())
        let reader = TraceReader(string: text, name: "<scenario>")
        do { try check.run(reader) } catch {}
        let again = check.violations.first(where: { $0.invariant == violation.invariant })
        return (text, again, check.divergences.count)
    }
}
