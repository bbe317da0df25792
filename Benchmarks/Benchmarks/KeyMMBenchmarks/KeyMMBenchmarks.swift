// KeyMM simulator-speed benchmarks (ordo-one/benchmark): the hot paths a long run spends its time
// in, with wall/CPU time, throughput and malloc counts per operation.
//
//   engine/*   AES-XTS of 4 KiB pages through KeyMMHardware's EncryptionEngine (and batches)
//   fault/*    first-touch write faults on anonymous memory through the whole kernel
//   vma/*      find_vma and mprotect split/merge in an mm with 1k and 100k VMAs
//   parser/*   KeyMMTrace parsing a real strace log from traces/
//   checker/*  the invariant checker's full sweep (page walks of every mm, frames, cache)
//
// Metrics marked `*` in the output are per inner operation (scalingFactor .kilo: one sample is
// 1,000 operations); `--scale` shows them per sample. Fixtures are built in each benchmark's setup
// hook, outside the measurement. docs/benchmarks.md explains each benchmark and records the figures.
//
// Memory: the package's own peakMemoryResident metric starts a sampling thread (every 5 ms) whose
// allocations the process-wide malloc interposer counts (~20 per ms-long sample), which would hide
// a hot path's zero. So peak memory is the custom metric `RSS (MB)` instead: this process's
// resident set read from /proc/self/statm after each sample's measurement stops.
import Benchmark
import KeyMM
#if canImport(Glibc)
import Glibc
#endif

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.wallClock, .cpuTotal, threadCPU, .throughput, .mallocCountTotal, residentMB],
        warmupIterations: 2,
        maxDuration: .seconds(2),
        maxIterations: 100_000
    )
    registerEngineBenchmarks()
    registerFaultBenchmarks()
    registerVMABenchmarks()
    registerParserBenchmarks()
    registerCheckerBenchmarks()
}

/// A fixture built in a benchmark's setup hook and used by its closure (one benchmark at a time,
/// on one thread: the benchmark runner calls setup, the iterations, then teardown in order).
final class FixtureBox<T>: @unchecked Sendable {
    var value: T?
    init() {}
}

/// The configuration for a benchmark whose closure runs 1,000 operations per sample.
func perOperation(_ seconds: Int = 2) -> Benchmark.Configuration {
    var c = Benchmark.defaultConfiguration
    c.scalingFactor = .kilo
    c.maxDuration = .seconds(seconds)
    return c
}

/// A deterministic xorshift64 step (the benchmarks' address picks; no host randomness).
@inline(__always) func xorshift(_ s: inout UInt64) -> UInt64 {
    s ^= s << 13; s ^= s >> 7; s ^= s << 17
    return s
}

/// The resident set of this process in MiB (custom metric, sampled after each measurement).
let residentMB = BenchmarkMetric.custom("RSS (MB)", polarity: .prefersSmaller, useScalingFactor: false)

/// Resident pages of this process × page size, in MiB, from /proc/self/statm (0 where unavailable).
/// Allocation-free: a stack buffer and raw open/read.
func residentMiB() -> Int {
    #if canImport(Glibc)
    let fd = open("/proc/self/statm", O_RDONLY)
    guard fd >= 0 else { return 0 }
    defer { close(fd) }
    return withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 128) { buf -> Int in
        let n = read(fd, buf.baseAddress, buf.count)
        guard n > 0 else { return 0 }
        // "size resident shared ...": the second field.
        var field = 0, value = 0
        for i in 0..<n {
            let c = buf[i]
            if c == 0x20 { field += 1; if field > 1 { break }; continue }
            if field == 1, c >= 0x30, c <= 0x39 { value = value * 10 + Int(c - 0x30) }
        }
        return (value * Int(sysconf(Int32(_SC_PAGESIZE)))) >> 20
    }
    #else
    return 0
    #endif
}

/// CPU time of the benchmark thread per operation (custom metric, scaled like wallClock): on a
/// shared machine it does not count the time other processes had the core, unlike wallClock, and
/// it has nanosecond resolution, unlike cpuTotal (process rusage, 10 ms ticks here).
let threadCPU = BenchmarkMetric.custom("thread CPU (ns)", polarity: .prefersSmaller, useScalingFactor: true)

/// CLOCK_THREAD_CPUTIME_ID in nanoseconds.
@inline(__always) func threadCPUNanoseconds() -> Int {
    var ts = timespec()
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
    return ts.tv_sec * 1_000_000_000 + ts.tv_nsec
}

/// Runs `body` as the measured region of one sample, then records `thread CPU (ns)` (of the
/// body) and `RSS (MB)` outside it.
@inline(__always) func measure(_ b: Benchmark, _ body: () -> Void) {
    b.startMeasurement()
    let t0 = threadCPUNanoseconds()
    body()
    let t1 = threadCPUNanoseconds()
    b.stopMeasurement()
    b.measurement(threadCPU, t1 - t0)
    b.measurement(residentMB, residentMiB())
}
