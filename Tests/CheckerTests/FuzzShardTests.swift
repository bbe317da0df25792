// A fuzz campaign split into shards: the merge of N shards (N = 1, 3, 7) is the unsharded run in
// every modeled number and counter; an injected bug is found in the same program, shrunk to the
// same file, sharded or not; shards are chosen from Slurm's variables exactly as from --shard;
// and merge refuses a missing, duplicated, unfinished or foreign shard, saying which.
import Foundation
import Testing
import KeyMM

enum ShardRuns {
    /// Small and fast: 2 policies x 5 programs of 40 calls.
    static func options(seed: UInt64 = 21, bug: String? = nil, keepGoing: Bool = true,
                        policies: [AllocatorPolicy] = [.wrapper, .integrated], ops: Int = 200, episode: Int = 40) -> FuzzOptions {
        var o = FuzzOptions()
        o.ops = ops
        o.episodeLength = episode
        o.seed = seed
        o.policies = policies
        o.keepGoing = keepGoing
        o.injectBug = bug.flatMap { SeededBug.named($0) }
        o.model.machine.cacheSize = .kib(256)
        return o
    }

    /// Shard `shard` of a fuzz run as JSON Lines, read back.
    static func fuzzShard(_ options: FuzzOptions, _ shard: Shard) throws -> JSONLShard {
        var data = Data()
        _ = Fuzzer(options: options).runShard(shard, writer: JSONLWriter { data.append($0) })
        return try JSONLShard(data: data, file: "shard-\(shard.index).jsonl")
    }

    static func fuzzShards(_ options: FuzzOptions, count n: Int) throws -> [JSONLShard] {
        try (0..<n).map { try fuzzShard(options, Shard(index: $0, count: n)!) }
    }

    static func mergedFuzz(_ shards: [JSONLShard]) throws -> FuzzSummary {
        guard case .fuzz(let s, _) = try CampaignMerge.merge(shards) else {
            Issue.record("not a fuzz merge")
            throw CancellationError()
        }
        return s
    }
}

@Suite struct FuzzShardTests {
    /// The unsharded reference run (computed once).
    static let whole = Fuzzer(options: ShardRuns.options()).runSummary()

    @Test(arguments: [1, 3, 7])
    func mergeOfShardsIsTheUnshardedRun(_ n: Int) throws {
        let merged = try ShardRuns.mergedFuzz(ShardRuns.fuzzShards(ShardRuns.options(), count: n))
        let whole = FuzzShardTests.whole
        #expect(merged.modeledOnly == whole.modeledOnly)
        #expect(merged.calls == whole.calls && merged.programs == 10)
        for (m, w) in zip(merged.policies, whole.policies) {
            #expect(m.modeledCycles == w.modeledCycles && m.modeledCycles > 0)
            #expect(m.counters == w.counters && !m.counters.isEmpty)
        }
        #expect(merged.wall.shardSeconds.count == n)
    }

    @Test func programKIsTheSameProgramInEveryShardAndPolicyOrder() throws {
        // Program 3 under integrated: unit 8 of the 2x5 plan; in shard 8 % 3 = 2 of 3.
        let all = ShardRuns.options()
        let alone = ShardRuns.options(policies: [.integrated])
        let shard = try ShardRuns.fuzzShard(all, Shard(index: 2, count: 3)!)
        let line = try #require(shard.records.first { $0.index == 8 && $0.type == "result" })
        let sharded = try JSONDecoder().decode(FuzzProgramRecord.self, from: line.data)
        // The same program in a run of integrated alone (unit 3 there), unsharded.
        let single = try ShardRuns.fuzzShard(alone, .whole)
        let again = try JSONDecoder().decode(FuzzProgramRecord.self, from: #require(single.records.first { $0.index == 3 }).data)
        #expect(sharded.program == 3 && again.program == 3)
        #expect(sharded.modeledCycles == again.modeledCycles)
        #expect(sharded.counters == again.counters)
        #expect(sharded.calls == again.calls)
    }

    @Test func injectedBugIsFoundInTheSameProgramShardedOrNot() throws {
        let o = ShardRuns.options(seed: 3, bug: "free-keyid-while-referenced", keepGoing: false,
                                  policies: [.perKeyID, .eager], ops: 400, episode: 40)
        let whole = Fuzzer(options: o).runSummary()
        let wf = try #require(whole.firstFinding)
        let merged = try ShardRuns.mergedFuzz(ShardRuns.fuzzShards(o, count: 3))
        let mf = try #require(merged.firstFinding)
        #expect(mf.finding.program == wf.finding.program)
        #expect(mf.finding.policy == wf.finding.policy)
        #expect(mf.policy.callsToFind == wf.policy.callsToFind)
        #expect(mf.finding.scenario == wf.finding.scenario)
        #expect(mf.finding.reproduced?.invariant == wf.finding.violation.invariant)
        #expect(merged.modeledOnly == whole.modeledOnly)
        #expect(merged.stoppedAt == whole.stoppedAt && whole.stoppedAt != nil)
    }

    @Test func slurmArrayVariablesSelectTheSameShardAsTheFlag() throws {
        let env = ["SLURM_ARRAY_TASK_ID": "2", "SLURM_ARRAY_TASK_COUNT": "4"]
        let fromEnv = try Shard.resolve(flag: nil, shards: nil, environment: env)
        let fromFlag = try Shard.resolve(flag: "2/4", shards: nil, environment: [:])
        #expect(fromEnv == fromFlag)
        // ... and the shard's lines are the same (but for host time).
        let o = ShardRuns.options(ops: 80)
        let a = try ShardRuns.fuzzShard(o, fromEnv), b = try ShardRuns.fuzzShard(o, fromFlag)
        #expect(a.header == b.header)
        #expect(a.records.map(\.index) == b.records.map(\.index))
        let ra = try a.records.map { try JSONDecoder().decode(FuzzProgramRecord.self, from: $0.data) }
        let rb = try b.records.map { try JSONDecoder().decode(FuzzProgramRecord.self, from: $0.data) }
        #expect(ra.map(\.modeledCycles) == rb.map(\.modeledCycles) && ra.map(\.counters) == rb.map(\.counters))
    }

    @Test func shardResolution() throws {
        #expect(try Shard.resolve(flag: nil, shards: nil, environment: [:]) == .whole)
        // An array submitted as 1-8: the index is the task id minus the minimum.
        #expect(try Shard.resolve(flag: nil, shards: nil, environment: ["SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": "8",
                                                                        "SLURM_ARRAY_TASK_MIN": "1"]) == Shard(index: 2, count: 8))
        #expect(try Shard.resolve(flag: nil, shards: 5, environment: ["JOB_COMPLETION_INDEX": "4"]) == Shard(index: 4, count: 5))
        // The flag wins over the environment.
        #expect(try Shard.resolve(flag: "0/2", shards: nil, environment: ["SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_COUNT": "2"]) == Shard(index: 0, count: 2))
        for (flag, shards, env) in [("4/4", nil, [:]), ("x", nil, [:]), (nil, 3, [:]), (nil, nil, ["JOB_COMPLETION_INDEX": "1"]),
                                    (nil, 2, ["JOB_COMPLETION_INDEX": "2"]), (nil, nil, ["SLURM_ARRAY_TASK_ID": "1"]),
                                    (nil, 3, ["SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_COUNT": "4"]),
                                    (nil, nil, ["SLURM_ARRAY_TASK_ID": "9", "SLURM_ARRAY_TASK_COUNT": "4"])] as [(String?, Int?, [String: String])] {
            #expect(throws: Shard.ResolutionError.self) { try Shard.resolve(flag: flag, shards: shards, environment: env) }
        }
        // Disjoint and complete.
        let units = (0..<3).flatMap { Array(Shard(index: $0, count: 3)!.units(of: 10)) }.sorted()
        #expect(units == Array(0..<10))
    }

    @Test func mergeRefusesMissingDuplicatedUnfinishedAndForeignShards() throws {
        let o = ShardRuns.options(policies: [.wrapper], ops: 80, episode: 20)
        let shards = try ShardRuns.fuzzShards(o, count: 3)
        func refusal(_ s: [JSONLShard]) -> String {
            do { _ = try CampaignMerge.merge(s); return "" } catch { return error.description }
        }
        #expect(refusal([shards[0], shards[2]]).contains("missing shard 1 of 3"))
        #expect(refusal(shards + [shards[1]]).contains("duplicated shard 1/3"))
        var cut = shards[2]
        cut.trailer = nil
        #expect(refusal([shards[0], shards[1], cut]).contains("did not finish"))
        let foreign = try ShardRuns.fuzzShard(ShardRuns.options(seed: 99, policies: [.wrapper], ops: 80, episode: 20), Shard(index: 1, count: 3)!)
        #expect(refusal([shards[0], foreign, shards[2]]).contains("foreign shard"))
        // A killed shard: its file cut in the middle of a line.
        var data = Data()
        _ = Fuzzer(options: o).runShard(Shard(index: 0, count: 3)!, writer: JSONLWriter { data.append($0) })
        let killed = try JSONLShard(data: data.prefix(data.count - 30), file: "killed.jsonl")
        #expect(killed.truncatedLine != nil && killed.trailer == nil)
        #expect(refusal([killed, shards[1], shards[2]]).contains("killed.jsonl:1:1: error: shard 0/3 did not finish"))
        #expect(refusal(shards).isEmpty)
    }
}
