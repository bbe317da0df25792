// Incremental checking against the full sweep: the checker that re-checks only what each call
// touched (the touch log, never a full sweep) reports exactly what the full sweep after every call
// reports — the same violations at the same calls — on every seeded bug's scenario, on fuzz
// episodes with every seeded bug, and on random programs; the full sweep's cross-check finds the
// incrementally kept shadow up to date; and a touch the log misses is found by that cross-check.
import Foundation
import Testing
import KeyMM
@testable import KeyMMWorkloads
@testable import KeyMMKernel

/// The checker configurations compared.
enum CheckMode: CaseIterable {
    /// The touch log only: no full sweep after any call.
    case incrementalOnly
    /// The reference: no touch log, the full sweep after every call.
    case fullEveryCall
    /// Both: the touch log kept, and the full sweep after every call cross-checking it.
    case crossChecked

    var options: CheckerOptions {
        var o = CheckerOptions()
        switch self {
        case .incrementalOnly: o.incremental = true; o.sweepEvery = Int.max
        case .fullEveryCall: o.incremental = false
        case .crossChecked: o.incremental = true; o.sweepEvery = 1
        }
        return o
    }
}

/// One call's violations as compared between modes (the site's index and the report line).
func reports(_ vs: [Violation]) -> [String] { vs.map { "\($0.site?.index ?? -1) \($0.invariant.rawValue): \($0.detail)" } }

/// Runs scenario text with a checker mode.
func runMode(_ text: String, name: String, mode: CheckMode) -> ScenarioRunner {
    var o = RunOptions()
    o.checker = mode.options
    let runner = ScenarioRunner(config: ModelConfig(), options: o)
    do { try runner.run(TraceReader(string: text, name: name)) } catch { Issue.record("\(name): \(error)") }
    return runner
}

/// Runs one generated program (a fuzz episode) incrementally (no sweep) and with the full sweep
/// after every call (cross-checking the incremental shadow) in lockstep, comparing each call's
/// violations, until `calls` calls or 10 calls after the first violation; returns the
/// incremental run's violations.
@discardableResult
func lockstep(seed: UInt64, policy: AllocatorPolicy, bug: SeededBug?, calls: Int, settings: [String] = [],
              sourceLocation: Testing.SourceLocation = #_sourceLocation) -> [Violation] {
    var options = FuzzTests.options(policy, bug: bug?.name, ops: calls, seed: seed)
    options.episodeLength = calls
    for s in settings {
        do { try options.model.apply(s) } catch { Issue.record("\(s): \(error)", sourceLocation: sourceLocation) }
    }
    let fuzzer = Fuzzer(options: options)
    let config = fuzzer.model(policy, program: 0)
    let runners = [CheckMode.incrementalOnly, .crossChecked].map { mode -> ScenarioRunner in
        var o = RunOptions()
        o.checker = mode.options
        return ScenarioRunner(config: config, options: o)
    }
    var gen = ProgramGenerator(seed: config.machine.seed, nodes: config.machine.nodes, memory: config.machine.memory.rawValue)
    var stopAt = calls
    for i in 0..<calls where i < stopAt {
        let line = gen.next(runners[0].kernel)
        let before = runners.map { $0.violations.count }
        var failed = 0
        for r in runners {
            do { try r.execute(text: line, file: "<fuzz>") } catch { failed += 1 }
        }
        #expect(failed == 0 || failed == runners.count, "call \(i) `\(line)`: an input error in some modes only", sourceLocation: sourceLocation)
        let new = zip(runners, before).map { reports(Array($0.violations[$1...])) }
        if new[0] != new[1] {
            Issue.record("call \(i) `\(line)` (seed \(seed), \(policy.rawValue), bug \(bug?.name ?? "none")):\nincremental: \(new[0])\nfull:        \(new[1])", sourceLocation: sourceLocation)
            break
        }
        if !new[1].isEmpty && stopAt == calls { stopAt = i + 11 }
    }
    let inc = runners[0].checker!, cross = runners[1].checker!
    #expect(inc.sweeps == 0 && inc.incrementalCalls == inc.callsChecked, "the incremental run swept", sourceLocation: sourceLocation)
    #expect(cross.sweeps == cross.callsChecked, sourceLocation: sourceLocation)
    #expect(cross.shadowMismatches.isEmpty, "shadow mismatches: \(cross.shadowMismatches.joined(separator: "; "))", sourceLocation: sourceLocation)
    return runners[0].violations
}

@Suite struct IncrementalCheckTests {
    /// Every seeded bug's shrunk scenario: the same violations, at the same calls, both ways.
    @Test(arguments: ScenarioFiles.bugs)
    func seededBugScenarioIsCaughtAtTheSameCall(_ file: String) throws {
        let text = try ScenarioFiles.text(file)
        let inc = runMode(text, name: file, mode: .incrementalOnly)
        let full = runMode(text, name: file, mode: .fullEveryCall)
        let first = try #require(full.violations.first, "\(file) breaks no invariant")
        #expect(inc.violations.first?.site?.index == first.site?.index, "\(file): incremental \(inc.violations.first.map(\.description) ?? "nothing"), full \(first)")
        #expect(reports(inc.violations) == reports(full.violations))
        #expect(inc.checker?.sweeps == 0)
    }

    /// Every seeded bug a short generated program reaches, fuzzed (program 0 of the seed below,
    /// policy per-keyid): the incremental checks and the full sweep agree call by call, and the
    /// bug is caught.
    @Test(arguments: IncrementalCheckTests.fuzzed.keys.sorted())
    func seededBugFuzzedIsCaughtAtTheSameCall(_ name: String) throws {
        let bug = try #require(SeededBug.named(name))
        let (seed, calls, settings) = try #require(IncrementalCheckTests.fuzzed[name])
        let found = lockstep(seed: seed, policy: .perKeyID, bug: bug, calls: calls, settings: settings)
        #expect(found.contains { bug.caughtBy.contains($0.invariant) }, "\(name) not caught within \(calls) calls")
    }

    /// Seed and calls that find each bug in the test configuration (FuzzTests.options: 256 KiB
    /// cache), policy per-keyid, with extra settings: `keymm fuzz --ops 200 --episode 200 --set
    /// cache=256K --policy per-keyid --inject-bug NAME --seed S` finds it at call calls - 12.
    static let fuzzed: [String: (seed: UInt64, calls: Int, settings: [String])] = [
        "skip-flush-on-keyid-change": (2, 70, []), "free-keyid-while-referenced": (1, 29, []),
        "mprotect-drops-keyid": (6, 43, []), "split-from-vm-page-prot": (6, 43, []),
        "merge-across-keyids": (7, 37, []), "encrypted-zero-page": (1, 65, []),
        "ksm-across-keyids": (22, 53, []), "migrate-drops-keyid": (18, 49, []),
        "encrypt-mprotect-keeps-pages": (1, 50, []), "zero-before-keyid": (1, 29, []),
        "khugepaged-skips-prep": (36, 80, []), "vma-dup-skips-keyid-ref": (2, 40, []),
        "skip-flush-on-keyid-release": (4, 46, []),
        "sgx-release-without-srcu-sync": (26, 132, []), "sgx-encl-mm-added-twice": (26, 88, []),
        "sgx-close-skips-put": (39, 101, ["sgx-mm-tracking=vma-refcount"]),
    ]
    /// Bugs no short program reaches (seeds 1-40 of 200 calls, 1-15 of 500): their shrunk
    /// scenarios are run both ways by `seededBugScenarioIsCaughtAtTheSameCall`.
    static let scenarioOnly: [String: String] = [
        "sgx-reclaim-skips-zap": "needs EPC pressure with a page mapped in several mms: not reached in 500 calls",
        "sgx-eldu-skips-version-check": "needs a page written back twice and its older copy replayed: not reached in 500 calls",
        "tdx-skip-page-wbinvd": "confidential-VM host calls come from `keymm fuzz --mode tdx`, not the default generator",
        "tdx-clear-with-partial-writes": "confidential-VM host calls come from `keymm fuzz --mode tdx`, not the default generator",
        "tdx-global-key-without-wbinvd": "confidential-VM host calls come from `keymm fuzz --mode tdx`, not the default generator",
        "tdx-keyid-freed-before-writeback": "confidential-VM host calls come from `keymm fuzz --mode tdx`, not the default generator",
        "sev-recycle-without-flush": "confidential-VM host calls come from `keymm fuzz --mode sev`, not the default generator",
        "snp-keep-direct-map": "confidential-VM host calls come from `keymm fuzz --mode sev`, not the default generator",
        "snp-skip-private-eviction": "confidential-VM host calls come from `keymm fuzz --mode sev`, not the default generator",
    ]

    /// Every bug of the catalogue is compared both ways: as a shrunk scenario (all of them) and,
    /// unless listed with its reason, fuzzed.
    @Test func everySeededBugIsComparedBothWays() {
        let names = Set(SeededBug.all.map(\.name))
        #expect(Set(IncrementalCheckTests.fuzzed.keys).union(IncrementalCheckTests.scenarioOnly.keys) == names)
        #expect(Set(IncrementalCheckTests.fuzzed.keys).isDisjoint(with: IncrementalCheckTests.scenarioOnly.keys))
        #expect(Set(ScenarioFiles.bugs) == Set(names.map { "bugs/\($0).strace" }))
    }

    /// Generated programs on the unmodified model and with a seeded bug (fixed seeds; the bug
    /// picked from the seed): identical violations call by call, the shadow never out of date.
    @Test(arguments: AllocatorPolicy.allCases)
    func generatedProgramsAgreeCallByCall(_ policy: AllocatorPolicy) {
        let applicable = SeededBug.all.filter { $0.applies(policy: policy.rawValue, encryption: "mktme") }
        for seed: UInt64 in [101, 202] {
            let bug = seed == 202 && !applicable.isEmpty ? applicable[Int(seed) % applicable.count] : nil
            lockstep(seed: seed, policy: policy, bug: bug, calls: 80)
        }
    }

    /// A touch the log misses (here: a page table whose writes are not recorded) is what the full
    /// sweep's cross-check exists for: it finds the shadow out of date.
    @Test func aMissedTouchIsFoundByTheCrossCheck() throws {
        let text = """
            1 mmap(0x7e0000000000, 16384, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED_NOREPLACE, -1, 0) = 0x7e0000000000
            1 mem_write(0x7e0000000000, "some bytes 0123456789") = 21

            """
        var o = RunOptions()
        o.checker = CheckMode.incrementalOnly.options
        let runner = ScenarioRunner(config: ModelConfig(), options: o)
        try runner.run(TraceReader(string: text, name: "<test>"))
        let checker = try #require(runner.checker)
        #expect(checker.isIncremental)
        let mm = try #require(runner.kernel?.task(ProcessID(1))?.mm)
        mm.pageTable.touch = nil
        try runner.run(TraceReader(string: "1 mem_write(0x7e0000001000, \"more bytes 0123456789\") = 21\n", name: "<test>"))
        #expect(checker.shadowMismatches.isEmpty)   // no sweep yet
        _ = checker.fullCheck()
        #expect(checker.shadowMismatches.contains { $0.contains("entries") }, "\(checker.shadowMismatches)")
    }

    /// Without a checker, with the full sweep after every call, and incremental: the model does
    /// the same thing (cycles, counters, results).
    @Test(arguments: ["mktme/keyid-lifetime-gup-pin.strace", "mktme/swap-encrypted.strace", "mktme/ksm-same-keyid-only.strace"])
    func checkingModeDoesNotChangeTheModel(_ file: String) throws {
        try #require(ScenarioFiles.model.contains(file), "\(file) is not a model scenario")
        let text = try ScenarioFiles.text(file)
        let off = ScenarioFiles.run(text, name: file, checker: false)
        for mode in CheckMode.allCases {
            let on = runMode(text, name: file, mode: mode)
            #expect(on.kernel?.machine.clock.snapshot == off.kernel?.machine.clock.snapshot)
            #expect(on.kernel?.machine.clock.cycles == off.kernel?.machine.clock.cycles)
            #expect(on.reproduced == off.reproduced)
        }
    }
}
