// The traced program's own time, which the model does not execute: bench `macro` adds it so its
// percentages have the denominator of a real build (issue 15 item 5, docs/reproductions.md §2).
//
// Two parts, both from the program itself, none tuned:
// - User time between calls: per task, the gaps between one call's end (timestamp + `-T`
//   duration) and the next call's start in the log (`strace -f -ttt -T`). On this 2-vCPU shared
//   host the traced run's gaps also hold the tracer's stops and the waits for a CPU (2.08 s of
//   gaps for a build whose untraced user time is 0.12 s), so the gaps give where the user time
//   falls and the untraced run's measured user CPU time (`perf stat`'s "seconds user", in the
//   counts file) gives its total. Without a counts file the raw gaps are used. Cycles =
//   seconds × the cost profile's `tsc_hz`, charged as `program_cycle` (price 1).
// - Memory access: the program's last-level-cache data fills, from cachegrind's DLmr + DLmw of
//   the same build (counts file). When anonymous memory is encrypted (encrypt-anon with MKTME on)
//   each fill pays the engine's added latency, the cost model's `decrypt_line`. Assumptions:
//   every data fill is of anonymous memory (an upper bound: file-backed data is KeyID 0) and
//   each added latency stalls the core in full (no overlap of misses); instruction fills
//   (ILmr) are of file-backed text and pay nothing.
// IPC: cachegrind's Ir (user-mode instructions) over the user cycles plus the added latency.
//
// The counts file (`traces/make-j2-timed.counts.json`, written by traces/measure-make-j2.sh)
// sits next to the trace (`X.strace` → `X.counts.json`) or is named by $KEYMM_MACRO_COUNTS.
//
// Invariant: everything here is a function of the trace and counts files (no wall clock); the
// quick mode's prefix is charged the share of the gaps that fall in it, for both parts.
import Foundation
import KeyMMBase
import KeyMMHardware
import KeyMMTrace

/// traces/*.counts.json: real counts of the traced build, untraced.
struct MacroCounts: Decodable {
    struct PerfStat: Decodable {
        var runs: Int
        var userSeconds: Double
        var sysSeconds: Double
        var taskClockSeconds: Double
        enum CodingKeys: String, CodingKey {
            case runs, userSeconds = "user_seconds", sysSeconds = "sys_seconds", taskClockSeconds = "task_clock_seconds"
        }
    }
    struct Cachegrind: Decodable {
        var ll: String
        var processes: Int
        var totals: [String: UInt64]
    }
    var schema: Int
    var perfStat: PerfStat
    var cachegrind: Cachegrind
    enum CodingKeys: String, CodingKey { case schema, perfStat = "perf_stat", cachegrind }

    static func load(_ path: String) throws -> MacroCounts {
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
            throw BenchWorkloadError("macro: cannot read \(path): \(error.localizedDescription)")
        }
        do { return try JSONDecoder().decode(MacroCounts.self, from: data) } catch {
            throw BenchWorkloadError("macro: \(path) is not a counts file (traces/measure-make-j2.sh writes one): \(error)")
        }
    }
}

/// The program time one macro replay adds.
public struct MacroProgramTime: Sendable {
    /// Σ per-task gaps between calls over the whole log, and over the replayed events.
    public var logGapSeconds: Double
    public var replayedGapSeconds: Double
    /// The untraced build's user CPU time (perf stat), when a counts file was found.
    public var measuredUserSeconds: Double?
    /// cachegrind: user-mode instructions and data LL fills of the whole build.
    public var instructions: UInt64?
    public var dataFills: UInt64?
    /// The counts file used.
    public var countsFile: String?

    /// The share of the log the replay covered (1 for a whole replay).
    public var share: Double { logGapSeconds > 0 ? replayedGapSeconds / logGapSeconds : 1 }
    /// User seconds charged: the measured total (or the raw gaps) times the share replayed.
    public var userSeconds: Double { (measuredUserSeconds ?? logGapSeconds) * share }
    /// Data fills charged (times the share replayed).
    public var fills: UInt64 { UInt64(((Double(dataFills ?? 0)) * share).rounded()) }

    /// The counts file for `trace`: $KEYMM_MACRO_COUNTS, else `X.counts.json` beside `X.strace`.
    static func countsPath(for trace: String) -> String? {
        if let env = ProcessInfo.processInfo.environment["KEYMM_MACRO_COUNTS"], !env.isEmpty { return env }
        let url = URL(fileURLWithPath: trace)
        let candidate = url.deletingPathExtension().appendingPathExtension("counts.json").path
        return FileManager.default.isReadableFile(atPath: candidate) ? candidate : nil
    }

    /// Reads the gaps of `trace` (the first `replayedEvents` events and all) and its counts file.
    static func measure(trace: String, replayedEvents: Int) throws -> MacroProgramTime {
        let reader: TraceReader
        do { reader = try TraceReader(path: trace, lenient: true) } catch {
            throw BenchWorkloadError("macro: cannot read \(trace): \(error)")
        }
        var lastEnd: [Int32: Double] = [:]
        var total = 0.0, replayed = 0.0
        var events = 0
        while true {
            events += 1   // counted as MacroWorkload.replay counts them (a skipped line is one)
            let event: TraceEvent?
            do { event = try reader.next() } catch { continue }
            guard let event else { break }
            guard case .call(let line) = event, let ts = line.timestamp else { continue }
            let pid = line.pid ?? 1
            if let end = lastEnd[pid], ts > end {
                total += ts - end
                if events <= replayedEvents { replayed += ts - end }
            }
            lastEnd[pid] = ts + (line.duration ?? 0)
        }
        var t = MacroProgramTime(logGapSeconds: total, replayedGapSeconds: replayedEvents == .max ? total : replayed)
        if let path = countsPath(for: trace) {
            let c = try MacroCounts.load(path)
            t.countsFile = URL(fileURLWithPath: path).lastPathComponent
            t.measuredUserSeconds = c.perfStat.userSeconds
            t.instructions = c.cachegrind.totals["Ir"]
            t.dataFills = (c.cachegrind.totals["DLmr"] ?? 0) + (c.cachegrind.totals["DLmw"] ?? 0)
        }
        return t
    }

    /// Charges the program's time to `clock`: its user cycles, and the engine's added latency on
    /// each data fill when `encrypted`. Returns (user cycles, added-latency cycles).
    @discardableResult
    func charge(_ clock: CostClock, encrypted: Bool) -> (user: UInt64, memory: UInt64) {
        let user = UInt64((userSeconds * clock.profile.tscHz).rounded())
        clock.charge(.programCycle, Int(truncatingIfNeeded: user))
        let fills = self.fills
        clock.count(.programFills, Int(truncatingIfNeeded: fills))
        guard encrypted else { return (user * clock.price(of: .programCycle), 0) }
        clock.charge(.decryptLine, Int(truncatingIfNeeded: fills))
        return (user * clock.price(of: .programCycle), fills * clock.price(of: .decryptLine))
    }
}
