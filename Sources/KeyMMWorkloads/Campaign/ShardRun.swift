// Running one shard of a fuzz campaign, bench or sweep as JSON Lines: the header, each unit's
// line as soon as the unit ends, the trailer last (JSONLines.swift has the format). `keymm fuzz`,
// `keymm bench` and `keymm sweep` with `--format jsonl` call these, and so do the tests that
// merge shards in memory.
//
// Invariant: a shard's lines depend only on the plan and the shard (apart from the
// informational host facts and wall seconds).
import Foundation

/// What a fuzz shard did.
package struct FuzzShardOutcome: Sendable {
    package var programs: [Int: FuzzProgramRecord] = [:]
    package var findings: [Int: FuzzFinding] = [:]
    /// The unit whose finding ended the shard (without keep-going), if any.
    package var stoppedAt: Int?
    package var wallSeconds = 0.0
}

extension Fuzzer {
    /// Runs `shard`, writing its JSON Lines to `writer` (nil: records only).
    package func runShard(_ shard: Shard, writer: JSONLWriter?) -> FuzzShardOutcome {
        var out = FuzzShardOutcome()
        writer?.write(JSONLHeader(identity: identity, shard: shard, host: BenchHost.facts()))
        let start = BenchHost.wallSeconds()
        out.stoppedAt = runShard(shard, result: { u, r in
            out.programs[u] = r
            writer?.write(r, type: "result", index: u)
        }, violation: { u, f in
            out.findings[u] = f
            writer?.write(f, type: "violation", index: u)
        })
        out.wallSeconds = BenchHost.wallSeconds() - start
        writer?.write(JSONLTrailer(shard: shard, results: out.programs.count, violations: out.findings.count,
                                   stoppedAt: out.stoppedAt, wallSeconds: out.wallSeconds))
        return out
    }
}

extension BenchRunner {
    /// Runs the units of `shard`, writing its JSON Lines to `writer`; returns the rows written.
    @discardableResult
    package static func runShard(_ plan: BenchPlan, shard: Shard, writer: JSONLWriter,
                                progress: ((String) -> Void)? = nil) throws -> Int {
        writer.write(JSONLHeader(identity: plan.identity, shard: shard, host: BenchHost.facts()))
        let start = BenchHost.wallSeconds()
        var count = 0
        try run(plan, shard: shard, progress: progress) { u, result in
            writer.write(result.row, type: "result", index: u, adding: result.host.isEmpty ? [:] : ["host": .object(result.host)])
            count += 1
        }
        writer.write(JSONLTrailer(shard: shard, results: count, violations: 0, stoppedAt: nil,
                                  wallSeconds: BenchHost.wallSeconds() - start))
        return count
    }
}
