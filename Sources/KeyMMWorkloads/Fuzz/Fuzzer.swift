// `keymm fuzz`: random programs (ProgramGenerator) executed through the ScenarioRunner with the
// invariant checker after every call, policy after policy; on a violation the episode's program
// is shrunk (Shrinker.swift) to a small scenario file that reproduces it with `keymm run`.
//
// A run of N ops per policy is a sequence of episodes: each a fresh machine (seeded from the
// fuzz seed, the policy and the episode number) and a program of up to `episodeLength` calls.
// Episodes keep shrinking cheap (only the failing episode is shrunk) and memory bounded.
//
// Invariants: deterministic — the same options give the same programs, the same finding and the
// same shrunk file, bit for bit (modeled time only; wall time is only reported); the model runs
// exactly as `keymm run` would run the written file (the file pins every setting with `#@ set`).
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
    /// set per episode.
    public var model: ModelConfig = Fuzzer.defaultModel()
    /// Calls per episode (a fresh machine each).
    public var episodeLength = 500
    /// Re-runs the shrinker may spend.
    public var maxShrinkRuns = 3000
    /// The checker's full sweep every N calls (1: after every call).
    public var sweepEvery = 1
    /// Calls the generator never makes (e.g. to get past a known model bug).
    public var without: Set<String> = []
    /// Campaign mode: after a violation go on with the next episode (and policy); the first
    /// violation of each policy is shrunk at the end, the rest are counted by invariant.
    public var keepGoing = false
    /// Confidential-VM calls mixed in (`--mode tdx|sev`); nil: none (an injected bug that needs a
    /// mode picks it).
    public var mode: CVMFuzzMode?
    public init() {}
}

/// A violation the fuzzer found, and its shrunk reproduction.
public struct FuzzFinding: Sendable {
    public var policy: AllocatorPolicy
    /// Calls executed under this policy up to and including the violating one.
    public var opsToFind: Int
    public var episode: Int
    /// The violation as first seen (site: the call's place in the generated program).
    public var violation: Violation
    /// Calls of the failing episode up to the violation, and after shrinking.
    public var originalCalls: Int
    public var shrunkCalls: Int
    public var shrinkRuns: Int
    /// The scenario file (with `#@ set` lines and comments).
    public var scenario: String
    /// The violation the written file produces when run on a fresh model (nil: did not reproduce).
    public var reproduced: Violation?
    /// Divergences the written file produces (0 expected).
    public var reproducedDivergences: Int
}

/// The outcome of one policy.
public struct FuzzPolicyResult: Sendable {
    public var policy: AllocatorPolicy
    public var ops: Int
    public var episodes: Int
    public var seconds: Double
    public var finding: FuzzFinding?
    /// True when the injected bug cannot show under this policy (skipped).
    public var skipped = false
    /// With an injected bug: violations that fire on the unmodified model too (so they are not
    /// the bug's), as (episode, violation); fuzzing went on after them.
    public var unrelated: [(episode: Int, violation: Violation)] = []
    /// Keep-going mode: episodes that broke an invariant, counted by the invariant's name.
    public var violationsByInvariant: [String: Int] = [:]
}

/// The fuzzer.
public final class Fuzzer {
    public let options: FuzzOptions
    /// Called with (calls done, calls planned) every few hundred calls.
    public var progress: ((Int, Int) -> Void)?

    public init(options: FuzzOptions) {
        var o = options
        if o.mode == nil, let m = o.injectBug?.cvmMode { o.mode = CVMFuzzMode(rawValue: m) }
        if let mode = o.mode { mode.apply(to: &o.model) }
        self.options = o
    }

    /// The fuzz defaults: a small machine (128 MiB, 2 nodes, 1 MiB cache so lines get evicted
    /// and written back often, 3 KeyID bits so KeyIDs are reused), THP on madvise.
    public static func defaultModel() -> ModelConfig {
        var m = ModelConfig()
        m.machine.memory = .mib(128)
        m.machine.nodes = 2
        m.machine.cacheSize = .mib(1)
        m.machine.keyidBits = 3
        return m
    }

    /// The model of one episode.
    func model(_ policy: AllocatorPolicy, episode: Int, bug: Bool = true) -> ModelConfig {
        var m = options.model
        m.kernel.policy = policy
        if bug, let b = options.injectBug { m.kernel.bugs.insert(b.bug) }
        var g = SeededGenerator.derived(seed: options.seed, purpose: UInt64(episode) << 8 | UInt64(policyIndex(policy)))
        m.machine.seed = g.next() >> 1
        return m
    }

    func policyIndex(_ p: AllocatorPolicy) -> Int { AllocatorPolicy.allCases.firstIndex(of: p) ?? 0 }

    func runOptions() -> RunOptions {
        var o = RunOptions()
        var c = CheckerOptions()
        c.sweepEvery = max(options.sweepEvery, 1)
        o.checker = c
        return o
    }

    /// Runs every policy in turn; stops at the first finding.
    public func run() -> [FuzzPolicyResult] {
        var results: [FuzzPolicyResult] = []
        var done = 0
        let total = options.ops * options.policies.count
        for policy in options.policies {
            if let bug = options.injectBug, !bug.applies(policy: policy.rawValue, encryption: options.model.machine.encryption.rawValue) {
                results.append(FuzzPolicyResult(policy: policy, ops: 0, episodes: 0, seconds: 0, finding: nil, skipped: true))
                done += options.ops
                continue
            }
            let start = Date()
            var ops = 0
            var episode = 0
            var finding: FuzzFinding?
            var unrelated: [(Int, Violation)] = []
            var first: (episode: Int, lines: [String], violation: Violation, ops: Int)?
            var counts: [String: Int] = [:]
            while ops < options.ops && finding == nil {
                let len = min(options.episodeLength, options.ops - ops)
                let r = runEpisode(policy, episode: episode, calls: len) { n in
                    self.progress?(done + ops + n, total)
                }
                ops += r.executed
                if let v = r.violation {
                    if options.injectBug != nil,
                       firstFiring(r.lines, config: model(policy, episode: episode, bug: false), target: v.invariant) != nil {
                        // The unmodified model breaks the same invariant here: not the bug's doing.
                        unrelated.append((episode, v))
                    } else if options.keepGoing {
                        counts[v.invariant.rawValue, default: 0] += 1
                        if first == nil { first = (episode, r.lines, v, ops) }
                    } else {
                        finding = shrink(policy, episode: episode, lines: r.lines, violation: v, opsToFind: ops)
                    }
                }
                episode += 1
            }
            if let f = first { finding = shrink(policy, episode: f.episode, lines: f.lines, violation: f.violation, opsToFind: f.ops) }
            var result = FuzzPolicyResult(policy: policy, ops: ops, episodes: episode,
                                          seconds: Date().timeIntervalSince(start), finding: finding)
            result.unrelated = unrelated
            result.violationsByInvariant = counts
            results.append(result)
            done += options.ops
            if finding != nil && !options.keepGoing { break }
        }
        progress?(total, total)
        return results
    }

    /// One episode: generates and executes up to `calls` lines; stops at the first violation.
    func runEpisode(_ policy: AllocatorPolicy, episode: Int, calls: Int,
                    progress: (Int) -> Void) -> (lines: [String], executed: Int, violation: Violation?) {
        let m = model(policy, episode: episode)
        let runner = ScenarioRunner(config: m, options: runOptions())
        var gen = ProgramGenerator(seed: m.machine.seed, nodes: m.machine.nodes, memory: m.machine.memory.rawValue)
        gen.without = options.without
        gen.cvm = options.mode.map { CVMGenerator(mode: $0, seed: m.machine.seed, memory: m.machine.memory.rawValue) }
        var lines: [String] = []
        lines.reserveCapacity(calls)
        var executed = 0
        for i in 0..<calls {
            if i & 255 == 255 { progress(i) }
            let line = gen.next(runner.kernel)
            do {
                try runner.execute(text: line, file: "<fuzz>")
            } catch {
                continue   // an input error: the line is not part of the program
            }
            lines.append(line)
            executed += 1
            if let v = runner.violations.first { return (lines, executed, v) }
        }
        return (lines, executed, nil)
    }
}
