// Shards: which share of a deterministic run this process does (`--shard I/N`, or the batch
// engine's environment: Slurm job arrays, Kubernetes Indexed Jobs). Work is split by index, never
// by time: a run is a numbered list of units (fuzz program k under a policy, a bench row, a sweep
// point), and shard I of N does the units whose index u has u % N == I, in increasing order.
// Striding (rather than contiguous blocks) spreads every policy and workload over all shards, so
// shards take about the same time.
//
// Invariants: the shards 0..<N of a run are disjoint and together are exactly the unsharded run
// (shard 0/1); a unit's work never depends on which shard runs it. Resolution is a pure function
// of the flags and the environment, so `SLURM_ARRAY_TASK_ID=2 SLURM_ARRAY_TASK_COUNT=4` selects
// the same shard as `--shard 2/4`.

/// Shard `index` of `count`.
package struct Shard: Sendable, Hashable, CustomStringConvertible {
    package let index: Int
    package let count: Int

    /// The whole run (shard 0 of 1).
    package static let whole = Shard(uncheckedIndex: 0, count: 1)

    init(uncheckedIndex index: Int, count: Int) { self.index = index; self.count = count }

    /// Shard `index` of `count`; nil unless 0 <= index < count.
    package init?(index: Int, count: Int) {
        guard count >= 1, index >= 0, index < count else { return nil }
        self.index = index
        self.count = count
    }

    package var description: String { "\(index)/\(count)" }

    /// Whether unit `u` belongs to this shard.
    package func contains(_ u: Int) -> Bool { u % count == index }

    /// The units of `0..<total` this shard does, in increasing order.
    package func units(of total: Int) -> StrideTo<Int> { stride(from: index, to: total, by: count) }

    /// A shard named on the command line or by the environment that cannot be used.
    package struct ResolutionError: Error, CustomStringConvertible, Sendable {
        package let message: String
        package var description: String { message }
    }

    /// Parses `I/N` (0 <= I < N).
    package static func parse(_ text: String) throws(ResolutionError) -> Shard {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, let i = Int(parts[0]), let n = Int(parts[1]) else {
            throw ResolutionError(message: "--shard \(text): expected I/N, e.g. --shard 3/64 (0 <= I < N)")
        }
        guard let s = Shard(index: i, count: n) else {
            throw ResolutionError(message: "--shard \(text): expected 0 <= I < N and N >= 1")
        }
        return s
    }

    /// The shard of this process: `--shard I/N` if given; else `SLURM_ARRAY_TASK_ID` with
    /// `SLURM_ARRAY_TASK_COUNT` (index = task id - `SLURM_ARRAY_TASK_MIN`, default 0); else
    /// `JOB_COMPLETION_INDEX` with `--shards N` (Kubernetes gives no total); else the whole run.
    /// `shards` (`--shards N`) must agree with the total the other source gives.
    package static func resolve(flag: String?, shards: Int?, environment: [String: String]) throws(ResolutionError) -> Shard {
        if let shards, shards < 1 { throw ResolutionError(message: "--shards \(shards): expected N >= 1") }
        func agree(_ s: Shard, _ source: String) throws(ResolutionError) -> Shard {
            if let shards, shards != s.count {
                throw ResolutionError(message: "--shards \(shards) disagrees with \(source), which gives \(s.count) shards")
            }
            return s
        }
        if let flag { return try agree(parse(flag), "--shard \(flag)") }
        func number(_ name: String) throws(ResolutionError) -> Int? {
            guard let raw = environment[name] else { return nil }
            guard let v = Int(raw.trimmingCharacters(in: .whitespaces)) else {
                throw ResolutionError(message: "\(name)=\(raw): expected an integer")
            }
            return v
        }
        if let task = try number("SLURM_ARRAY_TASK_ID") {
            guard let count = try number("SLURM_ARRAY_TASK_COUNT") else {
                throw ResolutionError(message: "SLURM_ARRAY_TASK_ID=\(task) is set but SLURM_ARRAY_TASK_COUNT is not")
            }
            let min = try number("SLURM_ARRAY_TASK_MIN") ?? 0
            guard let s = Shard(index: task - min, count: count) else {
                throw ResolutionError(message: "SLURM_ARRAY_TASK_ID=\(task), SLURM_ARRAY_TASK_MIN=\(min), SLURM_ARRAY_TASK_COUNT=\(count): "
                                      + "the shard \(task - min)/\(count) is out of range; submit a contiguous array such as --array=0-\(count - 1) (no step)")
            }
            return try agree(s, "SLURM_ARRAY_TASK_COUNT=\(count)")
        }
        if let job = try number("JOB_COMPLETION_INDEX") {
            guard let shards else {
                throw ResolutionError(message: "JOB_COMPLETION_INDEX=\(job) is set but --shards N is not (a Kubernetes Indexed Job gives no total: pass its completions)")
            }
            guard let s = Shard(index: job, count: shards) else {
                throw ResolutionError(message: "JOB_COMPLETION_INDEX=\(job) is out of range for --shards \(shards)")
            }
            return s
        }
        if let shards {
            throw ResolutionError(message: "--shards \(shards) needs JOB_COMPLETION_INDEX (Kubernetes) or SLURM_ARRAY_TASK_ID to say which shard this is; or use --shard I/N")
        }
        return .whole
    }
}
