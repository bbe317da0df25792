// The `parser` workload: how fast the trace language parses (TraceParserBenchmark, KeyMMTrace):
// a synthetic `strace -f -tt -T` log of 1M lines (100k with --quick), best of 3 runs (1 with
// --quick), through TraceReader end to end. It measures the simulator, not the model: modeled
// cycles are 0; `host_rate` is lines per CPU second of the parsing thread.
//
// Extras: `lines`, `events`, `bytes`, `cpu_seconds`, `wall_seconds_parse`, `wall_lines_per_s`,
// `cpu_megabytes_per_s`.
import KeyMMTrace

/// Trace parser throughput (host lines/s).
public struct ParserWorkload: BenchWorkload {
    public init() {}
    public var name: String { "parser" }
    public var summary: String { "the trace parser on a synthetic strace -f -tt -T log (host lines per CPU second)" }
    public var policyIndependent: Bool { true }

    public func run(_ context: BenchContext) throws -> BenchResult {
        let wall0 = BenchHost.wallSeconds()
        let r = TraceParserBenchmark.run(lines: context.quick ? 100_000 : 1_000_000, repetitions: context.quick ? 1 : 3)
        let extra: [String: JSONValue] = [
            "lines": .int(Int64(r.lines)), "events": .int(Int64(r.events)), "bytes": .int(Int64(r.bytes)),
            "cpu_seconds": .double(r.cpuSeconds), "wall_seconds_parse": .double(r.seconds),
            "wall_lines_per_s": .double(r.linesPerSecond.rounded()), "cpu_megabytes_per_s": .double(r.megabytesPerSecond.rounded()),
        ]
        let row = BenchRow(workload: name, policy: "all", modeledCycles: 0, counters: [:],
                           wallSeconds: BenchHost.wallSeconds() - wall0,
                           hostRate: HostRate(value: r.linesPerCPUSecond.rounded(), unit: "lines/s"), extra: extra)
        return BenchResult(row: row)
    }
}
