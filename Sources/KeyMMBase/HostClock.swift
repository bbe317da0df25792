// HostClock: the host's own clocks, for measuring the simulator (bench rates, calibration, the
// parser benchmark). Never a source of modeled time: the model's time is the cost clock only.
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

package enum HostClock {
    /// CPU time of the calling thread in seconds (what `openssl speed` divides by).
    package static func threadCPUSeconds() -> Double { seconds(CLOCK_THREAD_CPUTIME_ID) }

    /// Monotonic wall-clock seconds.
    package static func wallSeconds() -> Double { seconds(CLOCK_MONOTONIC) }

    private static func seconds(_ clock: clockid_t) -> Double {
        var ts = timespec()
        clock_gettime(clock, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
    }
}
