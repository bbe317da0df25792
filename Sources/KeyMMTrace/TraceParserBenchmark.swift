// The parser's throughput benchmark (host wall clock: it measures the simulator, not the model).
//
// Owns: `TraceParserBenchmark`: a synthetic `strace -f -tt -T` log with the mix of a real one
// (mmap/mprotect/openat/fstat/read/close, errors, unfinished/resumed pairs, clone, signals),
// parsed end to end through `TraceReader`; and the same timing for any file.
// `keymm bench parser` calls `TraceParserBenchmark.run()`.
// Both wall time and this thread's CPU time are reported: on a shared machine the CPU-time rate
// is the parser's own speed, the wall-time rate what this run happened to get.

import KeyMMBase

/// Measures how fast `TraceReader` parses.
public enum TraceParserBenchmark {
    /// One measurement.
    public struct Result: Sendable, CustomStringConvertible {
        public let lines: Int
        public let events: Int
        public let bytes: Int
        /// Wall-clock seconds.
        public let seconds: Double
        /// CPU seconds of the parsing thread.
        public let cpuSeconds: Double
        /// Lines per wall-clock second.
        public var linesPerSecond: Double { seconds > 0 ? Double(lines) / seconds : 0 }
        /// Lines per CPU second of the parsing thread (the parser's speed on an idle core).
        public var linesPerCPUSecond: Double { cpuSeconds > 0 ? Double(lines) / cpuSeconds : 0 }
        public var megabytesPerSecond: Double { cpuSeconds > 0 ? Double(bytes) / cpuSeconds / 1e6 : 0 }
        public var description: String {
            "\(lines) lines, \(events) events, \(bytes / 1_000_000) MB: "
                + "\(Int(linesPerCPUSecond)) lines/s (CPU time \(formatSeconds(cpuSeconds)) s, \(Int(megabytesPerSecond)) MB/s); "
                + "\(Int(linesPerSecond)) lines/s wall (\(formatSeconds(seconds)) s)"
        }
    }

    static func seconds(_ d: Duration) -> Double {
        Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
    }

    /// A realistic synthetic log of about `lines` lines (deterministic).
    public static func syntheticLog(lines: Int) -> [UInt8] {
        let block: [String] = [
            #"PID  10:21:33.123456 brk(NULL) = 0x55860efe1000 <0.000011>"#,
            #"PID  10:21:33.123470 mmap(NULL, 8192, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0) = 0x7fdf87bce000 <0.000012>"#,
            #"PID  10:21:33.123490 openat(AT_FDCWD, "/lib/x86_64-linux-gnu/libc.so.6", O_RDONLY|O_CLOEXEC) = 3 <0.000020>"#,
            #"PID  10:21:33.123512 read(3, "\177ELF\2\1\1\3\0\0\0\0\0\0\0\0\3\0>\0\1\0\0\0P\237\2\0\0\0\0\0"..., 832) = 832 <0.000009>"#,
            #"PID  10:21:33.123530 newfstatat(3, "", {st_mode=S_IFREG|0755, st_size=1922136, ...}, AT_EMPTY_PATH) = 0 <0.000008>"#,
            #"PID  10:21:33.123550 mmap(NULL, 1970000, PROT_READ, MAP_PRIVATE|MAP_DENYWRITE, 3, 0) = 0x7fdf879ed000 <0.000015>"#,
            #"PID  10:21:33.123570 mmap(0x7fdf87a13000, 1396736, PROT_READ|PROT_EXEC, MAP_PRIVATE|MAP_FIXED|MAP_DENYWRITE, 3, 0x26000) = 0x7fdf87a13000 <0.000019>"#,
            #"PID  10:21:33.123590 close(3) = 0 <0.000007>"#,
            #"PID  10:21:33.123610 mprotect(0x7fdf87bc1000, 16384, PROT_READ) = 0 <0.000013>"#,
            #"PID  10:21:33.123630 openat(AT_FDCWD, "/usr/lib/locale/locale-archive", O_RDONLY|O_CLOEXEC) = -1 ENOENT (No such file or directory) <0.000010>"#,
            #"PID  10:21:33.123650 munmap(0x7fdf87bc5000, 33519) = 0 <0.000014>"#,
            #"PID  10:21:33.123670 madvise(0x7fdf87000000, 2097152, MADV_DONTNEED) = 0 <0.000010>"#,
            #"PID  10:21:33.123690 futex(0x7fdf87bce9e0, FUTEX_WAIT_BITSET_PRIVATE|FUTEX_CLOCK_REALTIME, 0, NULL, FUTEX_BITSET_MATCH_ANY <unfinished ...>"#,
            #"PID  10:21:33.123710 rt_sigaction(SIGINT, {sa_handler=0x55d0c0a2e000, sa_mask=[], sa_flags=SA_RESTORER, sa_restorer=0x7fdf87a2a520}, NULL, 8) = 0 <0.000006>"#,
            #"PID  10:21:33.123730 <... futex resumed>) = 0 <0.000040>"#,
            #"PID  10:21:33.123750 clone(child_stack=NULL, flags=CLONE_CHILD_CLEARTID|CLONE_CHILD_SETTID|SIGCHLD, child_tidptr=0x7fdf87bcea10) = CHILD <0.000120>"#,
            #"PID  10:21:33.123770 wait4(-1, [{WIFEXITED(s) && WEXITSTATUS(s) == 0}], 0, NULL) = CHILD <0.000500>"#,
            #"PID  10:21:33.123790 --- SIGCHLD {si_signo=SIGCHLD, si_code=CLD_EXITED, si_pid=CHILD, si_uid=0, si_status=0, si_utime=0, si_stime=0} ---"#,
            #"PID  10:21:33.123810 mremap(0x7fdf86000000, 4096, 8192, MREMAP_MAYMOVE) = 0x7fdf85000000 <0.000012>"#,
            #"PID  10:21:33.123830 getdents64(3, 0x55d0c0a2e000 /* 5 entries */, 32768) = 160 <0.000011>"#,
        ]
        var out: [UInt8] = []
        out.reserveCapacity(lines * 100)
        var n = 0
        var pid = 1000
        while n < lines {
            let p = String(pid)
            let child = String(pid + 1)
            for template in block where n < lines {
                var line = template.replacingPID(p, child: child)
                line.append("\n")
                out.append(contentsOf: line.utf8)
                n += 1
            }
            pid += 2
            if pid > 30000 { pid = 1000 }
        }
        return out
    }

    /// Parses `bytes` and times it.
    public static func measure(bytes: [UInt8], lenient: Bool = true) -> Result {
        time(TraceReader(bytes: bytes, name: "benchmark", lenient: lenient)) { _ in bytes.count }
    }

    /// Parses the file at `path` (streamed, lenient) and times it.
    public static func measure(path: String) throws(TraceError) -> Result {
        try time(TraceReader(path: path, lenient: true)) { $0.bytesRead }
    }

    /// Reads every event of `reader`, timing it in wall and thread-CPU time.
    private static func time(_ reader: TraceReader, bytes: (TraceReader) -> Int) -> Result {
        let clock = ContinuousClock()
        var events = 0
        let cpu0 = HostClock.threadCPUSeconds()
        let elapsed = clock.measure {
            while let e = try? reader.next() {
                events &+= 1
                _ = e
            }
        }
        let cpu = HostClock.threadCPUSeconds() - cpu0
        return Result(lines: reader.linesRead, events: events, bytes: bytes(reader), seconds: seconds(elapsed), cpuSeconds: cpu)
    }

    /// The standard run: `lines` synthetic lines, best of `repetitions`.
    public static func run(lines: Int = 1_000_000, repetitions: Int = 3) -> Result {
        let log = syntheticLog(lines: lines)
        var best: Result?
        for _ in 0..<max(1, repetitions) {
            let r = measure(bytes: log)
            if best == nil || r.cpuSeconds < best!.cpuSeconds { best = r }
        }
        return best!
    }
}

private extension String {
    func replacingPID(_ pid: String, child: String) -> String {
        var s = self
        if s.hasPrefix("PID") { s = pid + s.dropFirst(3) }
        return s.replacing("CHILD", with: child)
    }
}
