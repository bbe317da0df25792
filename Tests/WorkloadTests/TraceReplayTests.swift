// The committed corpus of real programs' logs (traces/, captured on this machine with the
// commands in traces/README.md) replays with at least 99% of recorded results reproduced.
// Exec-time regions the logs cannot show are inferred and reported apart (never counted as
// reproduced or divergent).
import Foundation
import Testing
import KeyMM

enum Corpus {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("traces")

    static func logs() -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: root.path)) ?? [])
            .filter { $0.hasSuffix(".strace") || $0.hasSuffix(".perf") }.sorted()
    }

    static func replay(_ name: String) throws -> ScenarioRunner {
        try BuildConsistency.require()
        var options = RunOptions()
        options.lenient = true
        var config = ModelConfig()
        config.machine.memory = .gib(1)
        let runner = ScenarioRunner(config: config, options: options)
        try runner.run(TraceReader(path: root.appendingPathComponent(name).path, lenient: true))
        return runner
    }
}

@Suite struct TraceReplayTests {
    @Test func corpusHasTheLogsTheIssueNames() {
        let logs = Corpus.logs()
        #expect(logs.contains { $0.hasPrefix("python3-startup") })
        #expect(logs.contains { $0.hasPrefix("python3-imports") })
        #expect(logs.contains { $0.hasPrefix("gcc-compile") })
        #expect(logs.contains { $0.hasPrefix("git-") })
        #expect(logs.contains { $0.hasPrefix("make-j2") })
    }

    @Test(arguments: Corpus.logs())
    func replayReproducesAtLeast99Percent(_ name: String) throws {
        let r = try Corpus.replay(name)
        #expect(r.compared >= 20, "\(name): too few recorded results compared (\(r.compared))")
        let rate = Double(r.reproduced) / Double(max(r.compared, 1))
        #expect(rate >= 0.99, "\(name): \(r.reproduced)/\(r.compared) reproduced; first divergences: \(r.divergences.prefix(3).map { "\($0.line): \($0.call) expected \($0.expected) got \($0.actual)" })")
        #expect(r.skippedInputCount == 0, "\(name): \(r.skippedInput.prefix(3).map(\.description))")
    }

    /// Issue 16, item 3: a user's own capture (python3 through a bash shim, no terminal) replays
    /// with nothing diverging; bash's `openat("/dev/tty") = -1 ENXIO` is learned from the log
    /// (the model has no /dev/tty), not compared; every line is executed, counted or an exit.
    @Test func ownCaptureThroughAShellShimReplaysFully() throws {
        let r = try Corpus.replay("python3-shim-json.strace")
        #expect(r.divergences.isEmpty, "\(r.divergences.prefix(3))")
        #expect(r.reproduced == r.compared && r.compared > 300)
        #expect(r.learned["openat ENXIO"] == 1)
        #expect(r.skippedInputCount == 0)
        let lines = try String(contentsOf: Corpus.root.appendingPathComponent("python3-shim-json.strace"), encoding: .utf8)
            .split(separator: "\n")
        let events = lines.filter { $0.contains("+++") || $0.contains("---") }.count
        #expect(r.calls + r.notModeled.values.reduce(0, +) + events == lines.count, "every line accounted for")
    }

    @Test func inferredRegionsAreReportedApartFromDivergences() throws {
        let r = try Corpus.replay("python3-startup.strace")
        // ld.so's RELRO and the binary's are made read-only by mprotect calls whose mappings
        // the exec built: they must be inferred, not counted as divergences.
        #expect(!r.inferred.isEmpty)
        #expect(r.inferred.allSatisfy { $0.reason.contains("mprotect") || $0.reason.contains("munmap") })
    }
}
