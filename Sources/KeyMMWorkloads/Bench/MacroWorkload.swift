// The `macro` workload: the MKTME series' kernel-build experiment on a real compile. Replays
// traces/make-j2-timed.strace (a real `make -j2`: make, sh, cc, cc1, as, collect2, ld; 13
// processes, `strace -f -ttt -T`) leniently through the whole model, with every anonymous private
// VMA on the KeyID of a boot-time mktme key (`encrypt-anon=on`,
// Sources/KeyMMKernel/mktme/EncryptAnon.swift), under each allocator policy; under `none` MKTME is
// off, so `ratio_vs_none` is the overhead of encrypting all anonymous memory with that policy (the
// series: ~20% on a kernel build; docs/sources.md, seed 001's macrobenchmark: wrapper ~15%, integrated ~3.6%).
//
// An strace log has no memory accesses. So that pages are allocated, zeroed, flushed and freed as
// a real run would, the workload adds a first-touch approximation: after each successful
// anonymous private writable mmap the new range is written once, page by page, and after each brk
// that grows the heap the new heap pages are written once (each a first-touch fault through the
// VMA's KeyID). Pages are freed by munmap and process exit as the log says. Everything the log does
// outside the model (read, write, openat...) costs no modeled kernel work.
//
// The program's own time is added (MacroProgramTime.swift): its user time between calls (the log's
// timestamps, totalled to the untraced build's measured user time) and, when its anonymous memory
// is encrypted, the engine's added latency on each of its data fills (cachegrind counts). So the
// row's cycles are program + memory management, as a real build's are; the memory-management part
// alone is the extra `mm_cycles`.
//
// Extras: `touched_pages`, `calls`, `skipped_input`, `cycles_unused` (same policy, MKTME on but
// encrypt-anon off: the series' "MKTME=y unused" run), `encrypt_anon_keyid`, `trace`, and the
// program-time terms (`mm_cycles`, `user_cycles`, `memory_access_cycles`, `user_seconds`,
// `user_seconds_log_gaps`, `user_seconds_measured`, `program_fills`, `instructions`, `ipc_user`,
// `counts`). The trace is looked up as $KEYMM_MACRO_TRACE, then traces/make-j2-timed.strace (then
// traces/make-j2.strace, which has no timestamps) under the current directory, then next to this
// source tree.
//
// Quick mode (`--quick`, tests) replays only the first 800 events of the log (and charges that
// prefix its share of the program time).
//
// Invariant: modeled results depend only on config, costs, policy, the trace and its counts file.
import Foundation
import KeyMMBase
import KeyMMHardware
import KeyMMKernel
import KeyMMTrace

/// make -j2 replayed with all anonymous memory encrypted, per policy.
public struct MacroWorkload: BenchWorkload {
    public init() {}
    public var name: String { "macro" }
    public var summary: String { "traces/make-j2.strace replayed with every anonymous VMA on KeyID 1 (encrypt-anon) vs MKTME off" }
    public var policyIndependent: Bool { false }
    /// Trace events replayed in quick mode (a prefix: make's start-up and its first children).
    public static let quickEvents = 800

    /// The trace file: $KEYMM_MACRO_TRACE, ./traces/make-j2-timed.strace (or make-j2.strace), or the repository's.
    public static func tracePath() -> String? {
        var candidates: [String] = []
        if let env = ProcessInfo.processInfo.environment["KEYMM_MACRO_TRACE"], !env.isEmpty { candidates.append(env) }
        let here = URL(fileURLWithPath: #filePath)   // Sources/KeyMMWorkloads/Bench/MacroWorkload.swift
        let repo = here.deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        for name in ["traces/make-j2-timed.strace", "traces/make-j2.strace"] {
            candidates.append(FileManager.default.currentDirectoryPath + "/" + name)
            candidates.append(repo.appendingPathComponent(name).path)
        }
        return candidates.first { FileManager.default.isReadableFile(atPath: $0) }
    }

    /// One replay's measurement.
    public struct Replay: Sendable {
        public var cycles: UInt64
        public var counters: [String: UInt64]
        public var touchedPages: Int
        public var calls: Int
        public var skipped: Int
        public var anonKeyID: KeyID
        /// Cycles of the modeled memory management alone.
        public var mmCycles: UInt64
        /// The program time charged on top (user cycles; the engine's latency on its fills).
        public var program: MacroProgramTime
        public var userCycles: UInt64
        public var memoryAccessCycles: UInt64
    }

    /// Replays `path` with `config` (its policy and encrypt-anon setting) and the first-touch approximation.
    /// `maxEvents` stops after that many trace events (quick mode: a prefix of the log).
    public static func replay(path: String, config: ModelConfig, costsFile: String?, maxEvents: Int = .max) throws -> Replay {
        var cfg = config
        if let costsFile { cfg.costsFile = costsFile }
        var options = RunOptions()
        options.lenient = true
        let runner = ScenarioRunner(config: cfg, options: options)
        let reader: TraceReader
        do { reader = try TraceReader(path: path, lenient: true) } catch {
            throw BenchWorkloadError("macro: cannot read \(path): \(error)")
        }
        let kernel: Kernel
        do { kernel = try runner.boot() } catch { throw BenchWorkloadError("macro: \(error)") }
        var touched = 0
        var events = 0
        while events < maxEvents {
            events += 1
            let event: TraceEvent?
            do { event = try reader.next() } catch { continue }
            guard let event else { break }
            var brkBefore: (TaskStruct, VirtAddr)? = nil
            var pendingMmap: (TaskStruct, UInt64)? = nil
            if case .call(let line) = event, let task = kernel.task(ProcessID(line.pid ?? 1)) {
                if line.name == "brk" { brkBefore = (task, task.mm.brk) }
                if line.name == "mmap", line.args.count > 1, let n = line.args[1].integer?.bitPattern { pendingMmap = (task, n) }
            }
            do { try runner.apply(event) } catch { continue }
            if let (task, old) = brkBefore, kernel.task(task.pid) === task, task.mm.brk > old {
                touched += kernel.memTouch(task, old, task.mm.brk.rawValue - old.rawValue, [.write])
            }
            if let (task, len) = pendingMmap, kernel.task(task.pid) === task, case .address(let a)? = runner.lastOutcome,
               len > 0, len < 1 << 32, let vma = task.mm.vma(containing: VirtAddr(a)), vma.isAnonymous,
               !vma.vmFlags.contains(.shared), vma.vmFlags.contains(.write) {
                touched += kernel.memTouch(task, VirtAddr(a), len, [.write])
            }
        }
        // The processes still alive at the end of the log exit (their memory is freed).
        for pid in kernel.tasks.keys.sorted() where kernel.task(pid) != nil { kernel.exit(pid) }
        let clock = kernel.machine.clock
        let mm = clock.cycles
        let program = try MacroProgramTime.measure(trace: path, replayedEvents: maxEvents)
        let added = program.charge(clock, encrypted: kernel.encryptAnonKeyID != .tme)
        return Replay(cycles: clock.cycles, counters: clock.snapshot, touchedPages: touched, calls: runner.calls,
                      skipped: runner.skippedInputCount, anonKeyID: kernel.encryptAnonKeyID, mmCycles: mm,
                      program: program, userCycles: added.user, memoryAccessCycles: added.memory)
    }

    public func run(_ context: BenchContext) throws -> BenchResult {
        let wall0 = BenchHost.wallSeconds()
        guard let path = Self.tracePath() else { throw BenchWorkloadError("macro: traces/make-j2.strace not found (set KEYMM_MACRO_TRACE)") }
        let policy = context.policy ?? context.config.kernel.policy
        var cfg = context.config
        cfg.kernel.policy = policy
        cfg.kernel.encryptAnon = true
        let maxEvents = context.quick ? Self.quickEvents : .max
        let main = try Self.replay(path: path, config: cfg, costsFile: nil, maxEvents: maxEvents)
        var extra: [String: JSONValue] = [
            "touched_pages": .int(Int64(main.touchedPages)),
            "events": .string(context.quick ? "first \(Self.quickEvents)" : "all"),
            "calls": .int(Int64(main.calls)),
            "skipped_input": .int(Int64(main.skipped)),
            "encrypt_anon_keyid": .int(Int64(main.anonKeyID.rawValue)),
            "trace": .string(URL(fileURLWithPath: path).lastPathComponent),
            "costs": .string(context.costs.name),
            "mm_cycles": .int(Int64(main.mmCycles)),
            "user_cycles": .int(Int64(main.userCycles)),
            "memory_access_cycles": .int(Int64(main.memoryAccessCycles)),
            "user_seconds": .double(main.program.userSeconds),
            "user_seconds_log_gaps": .double(main.program.logGapSeconds),
            "program_fills": .int(Int64(main.program.fills)),
        ]
        if let m = main.program.measuredUserSeconds { extra["user_seconds_measured"] = .double(m) }
        if let c = main.program.countsFile { extra["counts"] = .string(c) }
        if let ir = main.program.instructions {
            // User-mode IPC: the build's instructions over its user cycles plus the engine's added latency.
            let insns = Double(ir) * main.program.share
            let cycles = Double(main.userCycles + main.memoryAccessCycles)
            extra["instructions"] = .int(Int64(insns.rounded()))
            if cycles > 0 { extra["ipc_user"] = .double(insns / cycles) }
        }
        if policy != .none && !context.quick {
            cfg.kernel.encryptAnon = false
            let unused = try Self.replay(path: path, config: cfg, costsFile: nil)
            extra["cycles_unused"] = .int(Int64(unused.cycles))
        }
        let row = BenchRow(workload: name, policy: policy.rawValue, modeledCycles: main.cycles, counters: main.counters,
                           wallSeconds: BenchHost.wallSeconds() - wall0, extra: extra)
        return BenchResult(row: row)
    }
}
