// Options every shardable subcommand (fuzz, bench, sweep) shares: `--shard I/N`, `--shards N`
// (with JOB_COMPLETION_INDEX), and the environment fallbacks (Slurm job arrays), resolved by
// `Shard.resolve` (KeyMMWorkloads/Campaign/Shard.swift) from the flags and this process's
// environment.
import ArgumentParser
import Foundation
import KeyMM

struct ShardOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("Do the I-th of N shares of the work (0 <= I < N). Without it: SLURM_ARRAY_TASK_ID/COUNT/MIN, or JOB_COMPLETION_INDEX with --shards N.", valueName: "I/N"))
    var shard: String?

    @Option(name: .long, help: "Total shards, with JOB_COMPLETION_INDEX (Kubernetes Indexed Jobs give no total).")
    var shards: Int?

    /// This process's shard.
    func resolve() throws(UsageError) -> Shard {
        do {
            return try Shard.resolve(flag: shard, shards: shards, environment: ProcessInfo.processInfo.environment)
        } catch {
            throw UsageError(error.message)
        }
    }
}
