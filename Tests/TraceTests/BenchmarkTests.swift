// The parser benchmark's input is a valid log, and the benchmark counts what it parsed.
// (No timing is asserted: tests never depend on the host's speed.)
import Foundation
import Testing
import KeyMMTrace

@Suite struct BenchmarkTests {
    @Test func syntheticLogParsesStrictly() throws {
        let log = TraceParserBenchmark.syntheticLog(lines: 2000)
        let events = try TraceReader(bytes: log, name: "synthetic").readAll()
        // 20-line blocks; each has one unfinished/resumed pair (one event for two lines).
        #expect(events.count == 1900)
        let calls = events.compactMap { if case .call(let c) = $0 { c } else { nil } }
        #expect(calls.contains { $0.name == "futex" && $0.args.count == 5 && $0.result.int64Value == 0 })
        #expect(calls.allSatisfy { $0.timestamp != nil })
    }

    @Test func measureCountsLinesEventsAndBytes() {
        let log = TraceParserBenchmark.syntheticLog(lines: 1000)
        let r = TraceParserBenchmark.measure(bytes: log)
        #expect(r.lines == 1000)
        #expect(r.events == 950)
        #expect(r.bytes == log.count)
        #expect(r.seconds >= 0 && r.cpuSeconds >= 0)
    }

    @Test func measureFileStreamsTheCorpus() throws {
        let path = repositoryRoot + "/traces/make-j2.strace"
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        let r = try TraceParserBenchmark.measure(path: path)
        #expect(r.lines == data.reduce(0) { $0 + ($1 == 0x0a ? 1 : 0) })
        #expect(r.bytes == data.count)
        #expect(r.events > r.lines / 2)
    }
}
