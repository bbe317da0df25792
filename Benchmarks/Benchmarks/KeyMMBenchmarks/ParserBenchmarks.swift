// parser/*: KeyMMTrace's TraceReader parsing a real `strace -f -tt -T` log from traces/
// (make-j2.strace, ~10k lines of a parallel build), held in memory; one sample parses the
// whole file to the last event (lenient, as `keymm run` replays traces). The custom metric
// `lines/s` is the file's line count over the sample's thread CPU time.
//
// The traces folder is found from this file's path (Benchmarks/Benchmarks/KeyMMBenchmarks/ ->
// repo root), or from KEYMM_TRACE (a file to parse instead).
import Benchmark
import Foundation
import KeyMM

/// The log to parse and its line count.
final class ParserFixture {
    let name: String
    let bytes: [UInt8]
    let lines: Int

    init() throws {
        let path: String
        if let p = ProcessInfo.processInfo.environment["KEYMM_TRACE"], !p.isEmpty {
            path = p
        } else {
            let here = URL(fileURLWithPath: #filePath)
            let root = here.deletingLastPathComponent().deletingLastPathComponent()
                .deletingLastPathComponent().deletingLastPathComponent()
            path = root.appendingPathComponent("traces/make-j2.strace").path
        }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw HardwareError("parser benchmark: cannot read \(path) (set KEYMM_TRACE)")
        }
        name = (path as NSString).lastPathComponent
        bytes = [UInt8](data)
        lines = bytes.reduce(0) { $0 + ($1 == 0x0A ? 1 : 0) }
    }
}

func registerParserBenchmarks() {
    let linesPerSecond = BenchmarkMetric.custom("lines/s", polarity: .prefersLarger, useScalingFactor: false)
    let box = FixtureBox<ParserFixture>()
    var config = Benchmark.defaultConfiguration
    config.metrics += [linesPerSecond]
    config.maxDuration = .seconds(3)
    Benchmark("parser/make-j2.strace (whole file)", configuration: config) { b in
        guard let f = box.value else { return b.error("no parser fixture") }
        var events = 0
        var ns = 0
        measure(b) {
            let t0 = threadCPUNanoseconds()
            let reader = TraceReader(bytes: f.bytes, name: f.name, lenient: true)
            while let e = try? reader.next() {
                events &+= 1
                blackHole(e)
            }
            ns = threadCPUNanoseconds() - t0
        }
        b.measurement(linesPerSecond, Int(Double(f.lines) / Double(max(ns, 1)) * 1e9))
        if events == 0 { b.error("no events parsed") }
    } setup: {
        box.value = try ParserFixture()
    } teardown: {
        box.value = nil
    }
}
