// The result of a fuzz run (`keymm fuzz --json FILE`, and what `keymm merge` writes from a
// campaign's shards), assembled from its records alone: the programs' summaries and the shrunk
// findings, keyed by unit. One function serves the unsharded run and the merge, so both write
// the same modeled numbers and counters. Schema: docs/jsonl.md ("Fuzz summary").
//
// Without keep-going a run stops at its first finding: the result covers the units up to the
// lowest unit any shard stopped at (later units some shards ran anyway are left out, as the
// unsharded run never reaches them). Each policy's finding is its lowest violating program's
// (shrunk by whichever shard ran it); `calls_to_find` counts the policy's calls before it.
//
// Invariant: modeled fields (calls, programs, modeled_cycles, counters, violations, findings)
// depend only on the records; host wall-clock time is kept apart under `wall`.
import Foundation
import KeyMMChecker
import KeyMMHardware
import KeyMMKernel

/// One policy's outcome.
public struct FuzzPolicyResult: Sendable, Hashable, Codable {
    public var policy: AllocatorPolicy
    /// True when the injected bug cannot show under this policy (not run).
    public var skipped = false
    /// False when the run stopped at a finding before this policy's first program.
    public var reached = true
    /// Calls executed, programs run, generated lines rejected as input errors.
    public var ops = 0
    public var programs = 0
    public var rejected = 0
    /// Sums over the programs: modeled cycles and cost-clock counters at each program's end.
    public var modeledCycles: UInt64 = 0
    public var counters: [String: UInt64] = [:]
    /// Programs that broke an invariant (not counting `unrelated`), by invariant.
    public var violationsByInvariant: [String: Int] = [:]
    /// The lowest violating program's finding, shrunk.
    public var finding: FuzzFinding?
    /// Calls of this policy executed up to and including the violating call.
    public var callsToFind: Int?
    /// With an injected bug: violations that fire on the unmodified model too (not the bug's).
    public var unrelated: [FuzzUnrelated] = []

    enum CodingKeys: String, CodingKey {
        case policy, skipped, reached, programs, rejected, counters, finding, unrelated
        case ops = "calls", modeledCycles = "modeled_cycles", violationsByInvariant = "violations_by_invariant"
        case callsToFind = "calls_to_find"
    }
}

/// Host wall-clock figures of a run (informational; never mixed with the modeled ones).
public struct FuzzWall: Sendable, Hashable, Codable {
    /// Sum of the programs' wall seconds, per policy.
    public var programSeconds: [String: Double] = [:]
    /// Each shard's wall seconds, by shard index.
    public var shardSeconds: [Double] = []

    enum CodingKeys: String, CodingKey {
        case programSeconds = "program_seconds", shardSeconds = "shard_seconds"
    }
}

/// A whole fuzz run's result.
public struct FuzzSummary: Sendable, Hashable, Codable {
    public var schema = 1
    public var kind = "fuzz"
    public var keymm = KeyMMVersion.string
    public var configHash: String
    /// The options that decided the work (the JSONL header's plan).
    public var plan: JSONValue
    public var seed: UInt64
    /// Totals over the policies that ran.
    public var calls = 0
    public var programs = 0
    /// Programs that broke an invariant (not counting unrelated ones).
    public var violations = 0
    /// Without keep-going: the unit of the finding that ended the run.
    public var stoppedAt: Int?
    public var policies: [FuzzPolicyResult] = []
    public var wall = FuzzWall()

    enum CodingKeys: String, CodingKey {
        case schema, kind, keymm, plan, seed, calls, programs, violations, policies, wall
        case configHash = "config_hash", stoppedAt = "stopped_at"
    }

    /// The first finding in policy order (the one `keymm fuzz` writes as a scenario file).
    public var firstFinding: (policy: FuzzPolicyResult, finding: FuzzFinding)? {
        for p in policies { if let f = p.finding { return (p, f) } }
        return nil
    }

    /// The summary without host time (what must be equal between a merge and the unsharded run).
    public var modeledOnly: FuzzSummary {
        var s = self
        s.wall = FuzzWall()
        return s
    }

    /// Pretty, key-sorted JSON.
    public func jsonData() throws -> Data {
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return try enc.encode(self)
    }

    /// Assembles the result from records keyed by unit. `programs` must hold every unit up to
    /// `stoppedAt` (all units when nil); records of later units are ignored.
    package static func assemble(plan: FuzzPlan, identity: RunIdentity, options: FuzzOptions,
                                programs: [Int: FuzzProgramRecord], findings: [Int: FuzzFinding],
                                stoppedAt: Int?, shardSeconds: [Double]) -> FuzzSummary {
        var s = FuzzSummary(configHash: identity.configHash, plan: identity.plan, seed: options.seed)
        s.stoppedAt = stoppedAt
        let last = stoppedAt ?? (plan.units - 1)
        for policy in plan.policies {
            var r = FuzzPolicyResult(policy: policy)
            if plan.skipped.contains(policy) {
                r.skipped = true
                s.policies.append(r)
                continue
            }
            guard let first = plan.index(policy: policy, program: 0) else { continue }
            r.reached = first <= last
            var seconds = 0.0
            var callsBefore = 0
            for k in 0..<plan.programsPerPolicy {
                let u = first + k
                guard u <= last, let p = programs[u] else { break }
                r.ops += p.calls
                r.programs += 1
                r.rejected += p.rejected
                r.modeledCycles &+= p.modeledCycles
                for (c, n) in p.counters { r.counters[c, default: 0] &+= n }
                seconds += p.wallSeconds
                if let v = p.violation {
                    if p.unrelated {
                        r.unrelated.append(FuzzUnrelated(program: k, violation: v))
                    } else {
                        r.violationsByInvariant[v.invariant.rawValue, default: 0] += 1
                        if r.finding == nil, let f = findings[u] {
                            r.finding = f
                            r.callsToFind = callsBefore + (v.site?.index ?? (p.calls - 1)) + 1
                        }
                    }
                }
                callsBefore += p.calls
            }
            s.calls += r.ops
            s.programs += r.programs
            s.violations += r.violationsByInvariant.values.reduce(0, +)
            if r.reached { s.wall.programSeconds[policy.rawValue] = seconds }
            s.policies.append(r)
        }
        s.wall.shardSeconds = shardSeconds
        return s
    }

    /// The human-readable lines `keymm fuzz` prints per policy (and `keymm merge` for a fuzz run).
    public func textLines(injectBug: SeededBug?) -> [String] {
        var out: [String] = []
        for r in policies {
            if r.skipped {
                out.append("policy \(r.policy.rawValue): skipped (\(injectBug?.name ?? "the bug") cannot show under it: \(injectBug?.notApplicable ?? ""))")
                continue
            }
            if !r.reached {
                out.append("policy \(r.policy.rawValue): not run (the run stopped at the first violation; --keep-going runs every policy)")
                continue
            }
            let secs = wall.programSeconds[r.policy.rawValue] ?? 0
            let rate = secs > 0 ? Double(r.ops) / secs : 0
            out.append("policy \(r.policy.rawValue): \(r.ops) calls in \(r.programs) programs, \(String(format: "%.1f", secs)) s (\(Int(rate)) calls/s): \(r.finding == nil && r.violationsByInvariant.isEmpty ? "no violation" : "VIOLATION")")
            for (name, n) in r.violationsByInvariant.sorted(by: { $0.key < $1.key }) {
                out.append("  \(n) program(s) broke \(name)")
            }
            for u in r.unrelated.prefix(3) {
                out.append("  note: program \(u.program) broke \(u.violation.invariant.rawValue) without the injected bug too (a model problem, not the bug's): \(u.violation.detail)")
            }
        }
        return out
    }
}
