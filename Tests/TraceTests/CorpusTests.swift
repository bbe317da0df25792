// The committed corpus of real logs (traces/) parses strictly: no line is malformed, every
// unfinished call is joined, and the memory calls the model replays are there.
import Testing
import KeyMMTrace

private struct CorpusSummary {
    var events = 0
    var calls = 0
    var unfinished = 0
    var byName: [String: Int] = [:]
    var exits = 0
    var pids: Set<Int32> = []
    var faults = 0
}

private func summarize(_ file: String) throws -> CorpusSummary {
    let reader = try TraceReader(path: repositoryRoot + "/traces/" + file)
    var s = CorpusSummary()
    while let e = try reader.next() {
        s.events += 1
        if let p = e.pid { s.pids.insert(p) }
        switch e {
        case .call(let c):
            s.calls += 1
            s.byName[c.name, default: 0] += 1
            if c.result == .unfinished { s.unfinished += 1 }
        case .exited, .killed: s.exits += 1
        case .fault: s.faults += 1
        default: break
        }
    }
    return s
}

@Suite struct CorpusTests {
    static let straceFiles = ["python3-startup.strace", "python3-imports.strace", "gcc-compile.strace",
                              "git-log.strace", "git-status.strace", "make-j2.strace", "arenastat.strace",
                              "python3-threads.strace", "threadmaps.strace", "node-threads.strace"]

    @Test(arguments: straceFiles)
    func straceLogParsesStrictly(_ file: String) throws {
        let s = try summarize(file)
        #expect(s.calls > 40)
        #expect(s.byName["mmap", default: 0] > 0)
        #expect(s.byName["openat", default: 0] + s.byName["open", default: 0] > 0)
        #expect(s.byName["close", default: 0] > 0)
        #expect(s.byName["execve", default: 0] > 0)
        #expect(s.exits >= 1)
        #expect(s.unfinished == 0, "an unfinished call was never resumed")
    }

    @Test func multiProcessLogsJoinUnfinishedCalls() throws {
        let make = try summarize("make-j2.strace")
        #expect(make.pids.count > 5)
        #expect(make.byName["wait4", default: 0] + make.byName["waitid", default: 0] > 0)
        #expect(make.byName["clone", default: 0] + make.byName["clone3", default: 0] + make.byName["vfork", default: 0] > 3)
        let gcc = try summarize("gcc-compile.strace")
        #expect(gcc.pids.count >= 3) // gcc, cc1, as
    }

    @Test func childCallsFollowTheirCreatorInMake() throws {
        let reader = try TraceReader(path: repositoryRoot + "/traces/make-j2.strace")
        var seen: Set<Int32> = []
        var created: Set<Int32> = []
        var first: Int32?
        while let e = try reader.next() {
            guard let pid = e.pid else { continue }
            if first == nil { first = pid }
            if !seen.contains(pid) {
                #expect(pid == first || created.contains(pid), "pid \(pid) appears before the call that created it")
                seen.insert(pid)
            }
            if case .call(let c) = e, ["clone", "clone3", "fork", "vfork"].contains(c.name),
               let child = c.result.int64Value, child > 0 {
                created.insert(Int32(child))
            }
        }
    }

    @Test func arenastatHasTheMemoryCallsOfItsSource() throws {
        let s = try summarize("arenastat.strace")
        #expect(s.byName["mremap", default: 0] >= 1)
        #expect(s.byName["mprotect", default: 0] >= 1)
        #expect(s.byName["madvise", default: 0] >= 1)
        #expect(s.byName["munmap", default: 0] >= 1)
        #expect(s.byName["clone", default: 0] + s.byName["fork", default: 0] >= 1)
    }

    @Test func timedLogCarriesTimestampsAndDurations() throws {
        let reader = try TraceReader(path: repositoryRoot + "/traces/python3-imports.strace")
        var timed = 0, calls = 0
        while let e = try reader.next() {
            if case .call(let c) = e {
                calls += 1
                if c.timestamp != nil && (c.duration != nil || c.result == .unknown) { timed += 1 }
            }
        }
        #expect(calls > 100 && timed == calls)
    }

    /// Threaded perf logs: one clone3 call per thread (the parent's half; the child's
    /// `[continued]: clone3()) = 0` half is joined to it), and every thread's events.
    @Test(arguments: [("threadmaps.perf", 4), ("node-threads.perf", 6)])
    func perfThreadLogsJoinCloneHalves(_ file: String, threads: Int) throws {
        let s = try summarize(file)
        #expect(s.byName["clone3", default: 0] == threads)
        #expect(s.pids.count == threads + 1)
        #expect(s.faults > 100 && s.unfinished == 0)
    }

    @Test func perfTraceLogParsesWithFaults() throws {
        let s = try summarize("python3-startup.perf")
        #expect(s.faults > 100)
        #expect(s.byName["mmap", default: 0] > 10)
        #expect(s.byName["execve", default: 0] >= 1)
    }
}
