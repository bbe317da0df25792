// Every scenario file under scenarios/ runs on a fresh model and reproduces every result
// it records (exit status 0 of `keymm run`). Files whose name ends in `.fails.strace`
// must instead produce at least one divergence (they pin that the comparison bites).
import Foundation
import Testing
import KeyMM

enum Scenarios {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("scenarios")

    /// Every scenario except the seeded-bug ones (those are CheckerTests' business).
    static func all() -> [String] {
        guard let e = FileManager.default.enumerator(atPath: root.path) else { return [] }
        return e.compactMap { $0 as? String }.filter { $0.hasSuffix(".strace") && !$0.hasPrefix("bugs/") }.sorted()
    }

    /// Runs one file as `keymm run FILE` does (defaults + the file's own `#@ set` lines).
    static func run(_ relative: String, settings: [String] = []) throws -> ScenarioRunner {
        try BuildConsistency.require()
        var config = ModelConfig()
        for s in settings { try config.apply(s) }
        let runner = ScenarioRunner(config: config)
        let reader = try TraceReader(path: root.appendingPathComponent(relative).path)
        try runner.run(reader)
        return runner
    }
}

@Suite struct ScenarioFileTests {
    @Test(arguments: Scenarios.all())
    func scenarioReproducesItsRecordedResults(_ file: String) throws {
        let runner = try Scenarios.run(file)
        if file.hasSuffix(".fails.strace") {
            #expect(!runner.divergences.isEmpty, "\(file) should diverge")
        } else {
            for d in runner.divergences {
                Issue.record("\(d.file):\(d.line): \(d.call): expected \(d.expected), got \(d.actual)")
            }
            #expect(runner.calls > 0)
        }
    }

    @Test func scenarioDirectoryIsNotEmpty() {
        #expect(Scenarios.all().count >= 1)
    }
}
