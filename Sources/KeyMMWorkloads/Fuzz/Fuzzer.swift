// `keymm fuzz`: random programs (ProgramGenerator) executed through the ScenarioRunner with the
// invariant checker after every call, policy after policy; on a violation the program is shrunk
// (Shrinker.swift) to a small scenario file that reproduces it with `keymm run`.
//
// The work is a numbered list of programs. `--ops N` calls per policy make P = ceil(N / L)
// programs of L = `--episode` calls (the last one shorter); program k is a fresh machine and a
// generator both seeded from (seed, k) alone, so program k is the same program whichever shard
// runs it, and the same random program under every policy (the generator reads the kernel's
// state, so it can drift once policies' states differ). Units are numbered policy-major,
// u = (position of the policy among those that run) * P + k; `--shard I/N` runs the units with
// u % N == I (Campaign/Shard.swift). Each program's summary and each shrunk violation go to a
// sink as they happen (JSON Lines); FuzzSummary.swift assembles the result from those records
// alone, the same way for one unsharded run and for `keymm merge` of its shards.
//
// Invariants: deterministic — the same options give the same programs, findings and shrunk
// files, bit for bit (modeled time only; wall time is only reported, apart); a program's result
// never depends on other programs; the model runs exactly as `keymm run` would run the written
// file (the file pins every setting with `#@ set`).
import Foundation
import KeyMMBase
import KeyMMChecker
import KeyMMHardware
import KeyMMKernel
import KeyMMTrace

/// What to fuzz.
public struct FuzzOptions: Sendable {
    /// Calls per policy.
    public var ops = 10_000
    public var seed: UInt64 = 1
    /// Policies to run, in order (`--policy all`: every policy).
    public var policies: [AllocatorPolicy] = AllocatorPolicy.allCases
    /// A seeded bug to inject (nil: the unmodified model).
    public var injectBug: SeededBug?
    /// The model configuration (fuzz defaults plus the user's settings); policy and seed are
    /// set per program.
    public var model: ModelConfig = Fuzzer.defaultModel()
    /// Calls per program (a fresh machine each; `--episode`).
    public var episodeLength = 500
    /// Re-runs the shrinker may spend.
    public var maxShrinkRuns = 3000
    /// The checker's full sweep every N calls (1: after every call), a cross-check of the
    /// incremental checks, which re-check what each call touched after every other call. Without
    /// `incremental`, ignored (the full sweep runs after every call).
    public var sweepEvery = 500
    /// Incremental checking (the default); false: the full sweep after every call
    /// (`--no-incremental`). Every invariant is checked after every call either way, and both
    /// find the same violations at the same calls.
    public var incremental = true
    /// Whether the checker runs at all (false: the model alone, nothing can be found; only for
    /// measuring what the checker costs).
    public var checking = true
    /// Calls the generator never makes (e.g. to get past a known model bug).
    public var without: Set<String> = []
    /// Campaign mode: after a violation go on with the next program (and policy); the first
    /// violating program of each policy is shrunk, the rest are counted by invariant.
    public var keepGoing = false
    /// Confidential-VM calls mixed in (`--mode tdx|sev`); nil: none (an injected bug that needs a
    /// mode picks it).
    public var mode: CVMFuzzMode?
    public init() {}
}

/// The numbered work of a fuzz run: which policies run, how many programs each, how long each.
public struct FuzzPlan: Sendable, Hashable {
    /// Every requested policy, in order.
    public let policies: [AllocatorPolicy]
    /// The requested policies the injected bug cannot show under (not run).
    public let skipped: [AllocatorPolicy]
    /// The policies that run, in order (units are numbered over these).
    public let running: [AllocatorPolicy]
    /// Programs per policy: ceil(ops / episodeLength).
    public let programsPerPolicy: Int
    public let ops: Int
    public let episodeLength: Int

    public init(_ o: FuzzOptions) {
        policies = o.policies
        let skipped = o.policies.filter { p in
            o.injectBug.map { !$0.applies(policy: p.rawValue, encryption: o.model.machine.encryption.rawValue,
                                          sgxTracking: o.model.kernel.sgxMMTracking.rawValue) } ?? false
        }
        self.skipped = skipped
        running = o.policies.filter { !skipped.contains($0) }
        ops = max(o.ops, 0)
        episodeLength = max(o.episodeLength, 1)
        programsPerPolicy = (ops + episodeLength - 1) / episodeLength
    }

    /// Number of units (programs across the policies that run).
    public var units: Int { running.count * programsPerPolicy }
    /// The policy and program number of unit `u`.
    public func unit(_ u: Int) -> (policy: AllocatorPolicy, program: Int) {
        (running[u / programsPerPolicy], u % programsPerPolicy)
    }
    /// The unit of program `k` under `policy` (nil if the policy does not run).
    public func index(policy: AllocatorPolicy, program k: Int) -> Int? {
        running.firstIndex(of: policy).map { $0 * programsPerPolicy + k }
    }
    /// Calls generated for program `k` (the last program of a policy takes the remainder).
    public func length(_ k: Int) -> Int { min(episodeLength, ops - k * episodeLength) }
}

/// One program's summary (a JSON Lines result line).
public struct FuzzProgramRecord: Sendable, Hashable, Codable {
    public var program: Int
    public var policy: String
    /// Calls executed (generated lines the runner accepted).
    public var calls: Int
    /// Generated lines the runner rejected as input errors (not part of the program).
    public var rejected: Int
    /// The cost clock at the program's end.
    public var modeledCycles: UInt64
    public var counters: [String: UInt64]
    /// The first violation, if one fired (the program stops there).
    public var violation: Violation?
    /// With an injected bug: the same invariant fires without the bug too (not the bug's doing).
    public var unrelated: Bool
    /// Host wall-clock seconds (informational).
    public var wallSeconds: Double
    /// Host CPU seconds of the fuzzing thread for the program (informational; nil in records
    /// written before it was recorded).
    public var cpuSeconds: Double?
    /// What the checker's full sweeps found different between the shadow kept incrementally from
    /// the touch log and a fresh walk of the model (a touch the log missed: a checker bug, not a
    /// model one); nil when there was none (the field is then absent).
    public var checkerMismatches: [String]?

    enum CodingKeys: String, CodingKey {
        case program, policy, calls, rejected, counters, violation, unrelated
        case modeledCycles = "modeled_cycles", wallSeconds = "wall_seconds", cpuSeconds = "cpu_seconds"
        case checkerMismatches = "checker_mismatches"
    }
}

/// A violation the fuzzer found and shrank (a JSON Lines violation line).
public struct FuzzFinding: Sendable, Hashable, Codable {
    public var policy: AllocatorPolicy
    /// The program it fired in; `violation.site.index` is the call's index in that program.
    public var program: Int
    /// The violation as first seen (site: the call's place in the generated program).
    public var violation: Violation
    /// Calls of the failing program up to the violation, and after shrinking.
    public var originalCalls: Int
    public var shrunkCalls: Int
    public var shrinkRuns: Int
    /// The scenario file (with `#@ set` lines and comments).
    public var scenario: String
    /// The violation the written file produces when run on a fresh model (nil: did not reproduce).
    public var reproduced: Violation?
    /// Divergences the written file produces (0 expected).
    public var reproducedDivergences: Int

    enum CodingKeys: String, CodingKey {
        case policy, program, violation, scenario, reproduced
        case originalCalls = "original_calls", shrunkCalls = "shrunk_calls", shrinkRuns = "shrink_runs"
        case reproducedDivergences = "reproduced_divergences"
    }
}

/// A violation that fires on the unmodified model too (with --inject-bug: not the bug's).
public struct FuzzUnrelated: Sendable, Hashable, Codable {
    public var program: Int
    public var violation: Violation
}

/// The fuzzer.
public final class Fuzzer {
    public let options: FuzzOptions
    public let plan: FuzzPlan
    /// Called with (calls done, calls planned for this shard) every few hundred calls.
    public var progress: ((Int, Int) -> Void)?

    public init(options: FuzzOptions) {
        var o = options
        if o.mode == nil, let m = o.injectBug?.cvmMode { o.mode = CVMFuzzMode(rawValue: m) }
        if let mode = o.mode { mode.apply(to: &o.model) }
        self.options = o
        plan = FuzzPlan(o)
    }

    /// The fuzz defaults: a small machine (128 MiB, 2 nodes, 1 MiB cache so lines get evicted
    /// and written back often, 3 KeyID bits so KeyIDs are reused), THP on madvise.
    public static func defaultModel() -> ModelConfig {
        var m = ModelConfig()
        m.machine.memory = .mib(128)
        m.machine.nodes = 2
        m.machine.cacheSize = .mib(1)
        m.machine.keyidBits = 3
        m.machine.epc = .mib(1)      // 256 EPC pages: enclaves oversubscribe it, ksgxd and direct reclaim run
        return m
    }

    /// The model of program `k` under `policy`: its machine seed comes from (seed, k) only.
    func model(_ policy: AllocatorPolicy, program k: Int, bug: Bool = true) -> ModelConfig {
        var m = options.model
        m.kernel.policy = policy
        if bug, let b = options.injectBug { m.kernel.bugs.insert(b.bug) }
        var g = SeededGenerator.derived(seed: options.seed, purpose: UInt64(k))
        m.machine.seed = g.next() >> 1
        return m
    }

    func runOptions() -> RunOptions {
        var o = RunOptions()
        var c = CheckerOptions()
        c.sweepEvery = max(options.sweepEvery, 1)
        c.incremental = options.incremental
        o.checker = options.checking ? c : nil
        return o
    }

    /// The run's identity (JSONL headers, config hash): every option that decides the work.
    package var identity: RunIdentity {
        let o = options
        var planJSON: JSONValue = .object([
            "seed": .string(String(o.seed)), "ops": .int(Int64(o.ops)), "episode": .int(Int64(plan.episodeLength)),
            "policies": .array(o.policies.map { .string($0.rawValue) }),
            "inject_bug": o.injectBug.map { .string($0.name) } ?? .null,
            "sweep_every": .int(Int64(max(o.sweepEvery, 1))), "incremental": .bool(o.incremental), "without": .array(o.without.sorted().map { .string($0) }),
            "keep_going": .bool(o.keepGoing), "max_shrink_runs": .int(Int64(o.maxShrinkRuns)),
            "settings": o.model.planJSON,
        ])
        if !o.checking, case .object(var fields) = planJSON {
            fields["checker"] = .bool(false)   // only when off: a run without the checker is another run
            planJSON = .object(fields)
        }
        return RunIdentity(kind: "fuzz", plan: planJSON, units: plan.units)
    }

    /// Runs the whole campaign (every policy in turn; stops at the first finding unless
    /// keep-going) and returns each policy's result.
    public func run() -> [FuzzPolicyResult] { runSummary().policies }

    /// Runs the whole campaign and assembles its summary.
    public func runSummary() -> FuzzSummary {
        var programs: [Int: FuzzProgramRecord] = [:]
        var findings: [Int: FuzzFinding] = [:]
        let start = BenchHost.wallSeconds()
        let stopped = runShard(.whole, result: { programs[$0] = $1 }, violation: { findings[$0] = $1 })
        return FuzzSummary.assemble(plan: plan, identity: identity, options: options, programs: programs, findings: findings,
                                    stoppedAt: stopped, shardSeconds: [BenchHost.wallSeconds() - start])
    }

    /// Runs the units of `shard` in order. Each program's summary goes to `result` (with its
    /// unit) when it ends; a shrunk violation to `violation` after it. Without keep-going the
    /// shard stops at its first finding and returns that unit (nil: it did all its units).
    package func runShard(_ shard: Shard, result: (Int, FuzzProgramRecord) -> Void,
                         violation: (Int, FuzzFinding) -> Void) -> Int? {
        let mine = Array(shard.units(of: plan.units))
        let total = mine.reduce(0) { $0 + plan.length(plan.unit($1).program) }
        var done = 0
        var shrunk: Set<AllocatorPolicy> = []
        for u in mine {
            let (policy, k) = plan.unit(u)
            let wall0 = BenchHost.wallSeconds()
            let cpu0 = BenchHost.threadCPUSeconds()
            let r = runProgram(policy, program: k, calls: plan.length(k)) { n in self.progress?(done + n, total) }
            done += plan.length(k)
            var record = FuzzProgramRecord(program: k, policy: policy.rawValue, calls: r.executed, rejected: r.rejected,
                                           modeledCycles: r.cycles, counters: r.counters, violation: r.violation,
                                           unrelated: false, wallSeconds: 0)
            if let v = r.violation, options.injectBug != nil,
               firstFiring(r.lines, config: model(policy, program: k, bug: false), target: v.invariant) != nil {
                // The unmodified model breaks the same invariant here: not the bug's doing.
                record.unrelated = true
            }
            record.wallSeconds = BenchHost.wallSeconds() - wall0
            record.cpuSeconds = BenchHost.threadCPUSeconds() - cpu0
            if !r.mismatches.isEmpty { record.checkerMismatches = Array(r.mismatches.prefix(5)) }
            result(u, record)
            // The first violating program of each policy in this shard is shrunk (the merge keeps
            // the lowest program of each policy over all shards: the one an unsharded run shrinks).
            if let v = r.violation, !record.unrelated, !shrunk.contains(policy) {
                shrunk.insert(policy)
                let finding = shrink(policy, program: k, lines: r.lines, violation: v)
                violation(u, finding)
                if !options.keepGoing { progress?(total, total); return u }
            }
        }
        progress?(total, total)
        return nil
    }

    /// One program: generates and executes up to `calls` lines; stops at the first violation.
    func runProgram(_ policy: AllocatorPolicy, program k: Int, calls: Int, progress: (Int) -> Void)
        -> (lines: [String], executed: Int, rejected: Int, violation: Violation?, cycles: UInt64, counters: [String: UInt64],
            mismatches: [String]) {
        let m = model(policy, program: k)
        let runner = ScenarioRunner(config: m, options: runOptions())
        var gen = ProgramGenerator(seed: m.machine.seed, nodes: m.machine.nodes, memory: m.machine.memory.rawValue)
        gen.without = options.without
        gen.cvm = options.mode.map { CVMGenerator(mode: $0, seed: m.machine.seed, memory: m.machine.memory.rawValue) }
        var lines: [String] = []
        lines.reserveCapacity(calls)
        var rejected = 0
        var found: Violation?
        for i in 0..<calls {
            if i & 255 == 255 { progress(i) }
            let line = gen.next(runner.kernel)
            do {
                try runner.execute(text: line, file: "<fuzz>")
            } catch {
                rejected += 1
                continue   // an input error: the line is not part of the program
            }
            lines.append(line)
            if let v = runner.violations.first { found = v; break }
        }
        let clock = runner.kernel?.machine.clock
        let counters = (clock?.snapshot ?? [:]).filter { $0.value != 0 }
        return (lines, lines.count, rejected, found, clock?.cycles ?? 0, counters, runner.checker?.shadowMismatches ?? [])
    }
}
