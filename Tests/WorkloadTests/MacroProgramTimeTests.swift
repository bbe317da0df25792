// Bench `macro` with the program's own time (issue 15 item 5): user time between calls from the
// log's timestamps, totalled to the untraced build's measured user time, and the engine's added
// latency (`decrypt_line`) on every data fill cachegrind counted, when anonymous memory is encrypted.
import Foundation
import Testing
@testable import KeyMM
@testable import KeyMMWorkloads

@Suite struct MacroProgramTimeTests {
    /// A two-task timed log (strace -f -ttt -T) and its counts file, in a fresh directory.
    func fixture(counts: Bool) throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("keymm-macro-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let trace = """
            10  100.000000 mmap(NULL, 8192, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0) = 0x7f0000000000 <0.000100>
            10  100.000300 clone(child_stack=NULL, flags=CLONE_CHILD_CLEARTID|CLONE_CHILD_SETTID|SIGCHLD, child_tidptr=0x7f0000000a10) = 11 <0.000100>
            11  100.000500 munmap(0x7f0000000000, 8192) = 0 <0.000050>
            11  100.001550 exit_group(0)            = ?
            10  100.000900 wait4(-1,  <unfinished ...>
            10  100.002000 <... wait4 resumed>NULL, 0, NULL) = 11 <0.001100>
            10  100.002500 exit_group(0)            = ?
            """
        let path = dir.appendingPathComponent("tiny.strace").path
        try trace.write(toFile: path, atomically: true, encoding: .utf8)
        if counts {
            let json = """
                {"schema": 1, "perf_stat": {"runs": 5, "user_seconds": 0.0005, "sys_seconds": 0.0001, "task_clock_seconds": 0.0006},
                 "cachegrind": {"ll": "33554432,16,64", "processes": 2,
                                "totals": {"Ir": 3000000, "ILmr": 70, "DLmr": 200, "DLmw": 800}}}
                """
            try json.write(toFile: dir.appendingPathComponent("tiny.counts.json").path, atomically: true, encoding: .utf8)
        }
        return path
    }

    @Test func gapsBetweenEachTasksCallsAreItsUserTime() throws {
        let t = try MacroProgramTime.measure(trace: try fixture(counts: false), replayedEvents: .max)
        // task 10: mmap ends 100.0001 -> clone 100.0003 (0.2 ms); clone ends 100.0004 -> wait4 100.0009
        // (0.5 ms: timed from its unfinished half); wait4 ends 100.0020 -> exit_group 100.0025 (0.5 ms).
        // task 11 (its first call has no gap): munmap ends 100.00055 -> exit_group 100.00155 (1.0 ms).
        #expect(abs(t.logGapSeconds - 0.0022) < 1e-9)
        #expect(t.measuredUserSeconds == nil && abs(t.userSeconds - 0.0022) < 1e-9)
        #expect(t.fills == 0 && t.instructions == nil)
    }

    @Test func countsFileSetsTheTotalAndTheFills() throws {
        let t = try MacroProgramTime.measure(trace: try fixture(counts: true), replayedEvents: .max)
        #expect(t.userSeconds == 0.0005 && t.fills == 1000 && t.instructions == 3_000_000)
        #expect(t.countsFile == "tiny.counts.json")
        // Charged: 0.0005 s x 3 GHz user cycles; each fill one decrypt_line (6) when encrypted.
        let clock = CostClock()
        let plain = t.charge(clock, encrypted: false)
        #expect(plain.user == 1_500_000 && plain.memory == 0 && clock.cycles == 1_500_000)
        let enc = t.charge(clock, encrypted: true)
        #expect(enc.memory == 6_000 && clock.count(of: .decryptLine) == 1000 && clock.value(of: .programFills) == 2000)
    }
}

extension MacroProgramTimeTests {
    /// The committed build (checked on the quick macro report BenchWorkloadsTests already runs):
    /// its counts file is found next to the trace, and every row carries the program's user time;
    /// encrypted rows add the engine's latency on every fill and lose IPC.
    static func checkProgramTime(_ r: BenchReport) throws {
        guard let trace = MacroWorkload.tracePath(), trace.hasSuffix("make-j2-timed.strace") else {
            Issue.record("traces/make-j2-timed.strace not found"); return
        }
        let none = try #require(r.results.first { $0.workload == "macro" && $0.policy == "none" })
        let wrapper = try #require(r.results.first { $0.workload == "macro" && $0.policy == "wrapper" })
        let integrated = try #require(r.results.first { $0.workload == "macro" && $0.policy == "integrated" })
        for row in [none, wrapper, integrated] {
            let user = row.extra?["user_cycles"]?.number ?? 0
            let mm = row.extra?["mm_cycles"]?.number ?? 0
            let memory = row.extra?["memory_access_cycles"]?.number ?? -1
            #expect(user > 0 && row.extra?["counts"] == .string("make-j2-timed.counts.json"))
            #expect(Double(row.modeledCycles) == user + mm + memory)
            #expect(row.counters["program_cycles"] == UInt64(user))
        }
        #expect(none.extra?["memory_access_cycles"] == .int(0))
        let fills = integrated.extra?["program_fills"]?.number ?? 0
        #expect(fills > 0 && integrated.extra?["memory_access_cycles"]?.number == fills * 6)
        let ipcNone = none.extra?["ipc_user"]?.number ?? 0, ipcEnc = integrated.extra?["ipc_user"]?.number ?? 0
        #expect(ipcNone > 0 && ipcEnc < ipcNone)
        // The program's time dominates: the wrapper's overhead is far below the memory-management-only +149%.
        #expect((wrapper.ratioVsNone ?? 9) < 1.5)
    }
}
