// The checker under every scenario file: the model's own scenarios break no invariant; each
// seeded bug has a committed shrunk scenario (scenarios/bugs/NAME.strace, `#@ set
// inject-bug=NAME`) that breaks the invariant the catalogue says catches it — and breaks nothing
// with the bug taken out; and the checker never changes what the model does.
import Foundation
import Testing
import KeyMM

enum ScenarioFiles {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("scenarios")

    static func all() -> [String] {
        guard let e = FileManager.default.enumerator(atPath: root.path) else { return [] }
        return e.compactMap { $0 as? String }.filter { $0.hasSuffix(".strace") }.sorted()
    }
    static var model: [String] { all().filter { !$0.hasPrefix("bugs/") } }
    static var bugs: [String] { all().filter { $0.hasPrefix("bugs/") } }

    static func text(_ relative: String) throws -> String {
        try String(contentsOf: root.appendingPathComponent(relative), encoding: .utf8)
    }

    /// Runs scenario text as `keymm run` does (defaults + the file's settings), checker on.
    static func run(_ text: String, name: String, checker: Bool = true) -> ScenarioRunner {
        var o = RunOptions()
        if !checker { o.checker = nil }
        let runner = ScenarioRunner(config: ModelConfig(), options: o)
        do { try runner.run(TraceReader(string: text, name: name)) } catch {
            Issue.record("\(name): \(error)")
        }
        return runner
    }
}

@Suite struct ScenarioCheckTests {
    @Test(arguments: ScenarioFiles.model)
    func modelScenarioBreaksNoInvariant(_ file: String) throws {
        let runner = ScenarioFiles.run(try ScenarioFiles.text(file), name: file)
        for v in runner.violations { Issue.record("\(v)") }
        #expect(runner.checker?.callsChecked == runner.calls)
    }

    @Test(arguments: ScenarioFiles.bugs)
    func seededBugScenarioIsCaught(_ file: String) throws {
        let name = String(file.dropFirst("bugs/".count).dropLast(".strace".count))
        let bug = try #require(SeededBug.named(name), "\(file) is not named after a seeded bug")
        let text = try ScenarioFiles.text(file)
        #expect(text.contains("#@ set inject-bug=\(name)\n"))
        let runner = ScenarioFiles.run(text, name: file)
        #expect(runner.divergences.isEmpty, "\(runner.divergences)")
        let first = try #require(runner.violations.first, "\(file) breaks no invariant")
        #expect(bug.caughtBy.contains(first.invariant), "\(file): \(first)")
        #expect(runner.calls < 20)
        // Without the bug the same calls are clean: the violation is the bug's.
        let clean = ScenarioFiles.run(text.replacingOccurrences(of: "#@ set inject-bug=\(name)", with: "#@ set inject-bug=none"), name: file)
        for v in clean.violations { Issue.record("without the bug: \(v)") }
    }

    @Test func everySeededBugHasAScenario() {
        let have = Set(ScenarioFiles.bugs)
        for bug in SeededBug.all {
            #expect(have.contains("bugs/\(bug.name).strace"), "missing scenarios/bugs/\(bug.name).strace")
        }
    }

    @Test(arguments: ["mktme/keyid-lifetime-gup-pin.strace", "mktme/swap-encrypted.strace", "mktme/ksm-same-keyid-only.strace"])
    func checkerDoesNotChangeTheModel(_ file: String) throws {
        guard ScenarioFiles.model.contains(file) else { return }
        let text = try ScenarioFiles.text(file)
        let on = ScenarioFiles.run(text, name: file, checker: true)
        let off = ScenarioFiles.run(text, name: file, checker: false)
        #expect(on.kernel?.machine.clock.snapshot == off.kernel?.machine.clock.snapshot)
        #expect(on.kernel?.machine.clock.cycles == off.kernel?.machine.clock.cycles)
        #expect(on.reproduced == off.reproduced)
        #expect(on.checker != nil && off.checker == nil)
    }

    @Test func injectBugSettingIsValidated() throws {
        var m = ModelConfig()
        try m.apply("inject-bug=mprotect-drops-keyid")
        #expect(m.kernel.bugs == .mprotectDropsKeyID)
        #expect(m.settings["inject-bug"] == "mprotect-drops-keyid")
        try m.apply("inject-bug=none")
        #expect(m.kernel.bugs.isEmpty)
        #expect(throws: ModelConfig.SettingError.self) { try m.apply("inject-bug=no-such-bug") }
    }

    /// One catalogue entry per kernel switch: distinct names, distinct single bits.
    @Test func catalogueEntriesOwnOneSwitchEach() {
        var seen: InjectedBugs = []
        for b in SeededBug.all {
            #expect(b.bug.rawValue.nonzeroBitCount == 1, "\(b.name) is not one switch")
            #expect(seen.isDisjoint(with: b.bug), "\(b.name) shares its switch")
            seen.formUnion(b.bug)
        }
        #expect(Set(SeededBug.all.map(\.name)).count == SeededBug.all.count)
        #expect(SeededBug.entries(seen).count == SeededBug.all.count)
    }
}

@Suite struct SettingsPinningTests {
    /// The fuzzer pins a shrunk file's model with `#@ set` lines from ModelConfig.settings: a
    /// setting missing there would make the file run on another model than the one that failed.
    @Test func everySettingIsReportedSoFuzzFilesPinIt() throws {
        var m = ModelConfig()
        try m.apply("inject-bug=encrypted-zero-page")
        m.costsFile = "costs.json"
        let reported = Set(m.settings.keys)
        for (key, _) in ModelConfig.keys { #expect(reported.contains(key), "ModelConfig.settings lacks \(key)") }
    }
}
