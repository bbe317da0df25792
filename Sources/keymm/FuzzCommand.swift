// `keymm fuzz`: random syscall programs under the invariant checker, policy after policy; a
// violation is shrunk to a small scenario file that reproduces it with `keymm run`. A campaign
// splits into shards (`--shard I/N`, Slurm/Kubernetes variables) that write JSON Lines
// (`--format jsonl`) for `keymm merge`.
// Exit status (contract): 0 nothing found, 1 violation found (file written), 2 bad input.
import ArgumentParser
import Foundation
import KeyMM

struct Fuzz: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Fuzz the model with random programs under the invariant checker; shrink a violation to a scenario file.",
        discussion: """
            Programs are strace-syntax scenario lines over every call the model runs (mmap, munmap, mprotect, \
            pkeys, encrypt_mprotect, mremap, madvise, mlock, fork, exit, add_key, keyctl, gup_pin/unpin, \
            mem_write/read/touch, phys_read, wbinvd, clflush, ksm_scan, khugepaged_scan, reclaim, numa_balance, \
            migrate_pages, move_pages, mbind, files, and SGX enclaves: /dev/sgx_enclave ioctls, enclave mmaps, \
            enclave_read/write, sgx_reclaim, held mm_list walks, sgx_tamper). The defaults are a small machine \
            (memory=128M, nodes=2, cache=1M, keyid-bits=3, epc=1M); --set/--config change them (e.g. \
            sgx-mm-tracking=vma-refcount). Seeded bugs (docs/invariants.md): \(SeededBug.names).
            """)

    @Option(name: .long, help: "Calls per policy.")
    var ops: Int = 10_000

    @Option(name: .long, help: "Seed of the programs (the same seed gives the same run).")
    var seed: UInt64 = 1

    @Option(name: .long, help: "Allocator policy, a comma-separated list, or all (each in turn).")
    var policy: String = "all"

    @Option(name: .customLong("inject-bug"), help: "A seeded bug to inject (see docs/invariants.md).")
    var injectBug: String?

    @Option(name: .long, help: "Calls per program (a fresh machine each; program k is seeded from --seed and k).")
    var episode: Int = 500

    @Option(name: .customLong("sweep-every"), help: ArgumentHelp(
        "The checker's full sweep every N calls (1: after every call), a cross-check of the incremental checks.",
        discussion: "Every invariant is checked after every call either way: the incremental checks re-check what the call touched, the full sweep everything and compares the incrementally kept shadow with a fresh walk. Ignored with --no-incremental."))
    var sweepEvery: Int = FuzzOptions().sweepEvery

    @Flag(inversion: .prefixedNo, help: "Incremental checking after each call (--no-incremental: the full sweep after every call).")
    var incremental = true

    @Flag(name: .customLong("no-checker"), help: ArgumentHelp(
        "Run the model without the invariant checker (finds nothing; for measuring what the checker costs).", visibility: .hidden))
    var noChecker = false

    @Option(name: .long, help: "Calls never to generate, comma-separated (e.g. to get past a known model bug).")
    var without: String?

    @Option(name: .long, help: "Where to write the shrunk scenario (default keymm-fuzz-SEED.strace).")
    var output: String?

    @Option(name: .long, help: "Mix in confidential-VM calls: tdx or sev (docs/tdx-sev.md); an injected TDX/SEV bug picks its mode.")
    var mode: String?

    @Flag(name: .long, help: "Print only a violation and the file written.")
    var quiet = false

    @Flag(name: .customLong("keep-going"), help: "Campaign mode: go on after a violation; shrink the first of each policy, count the rest.")
    var keepGoing = false

    @Option(name: .long, help: "Output: text (default) or jsonl (JSON Lines on standard output: header, one line per program, violations with their shrunk scenario, trailer; text goes to standard error).")
    var format: String = "text"

    @Option(name: .long, help: "Write the run's summary JSON (what `keymm merge` writes for a sharded campaign; docs/jsonl.md).")
    var json: String?

    @OptionGroup var model: ModelOptions
    @OptionGroup var sharding: ShardOptions

    func run() throws {
        var options = FuzzOptions()
        var summary: FuzzSummary?
        var shardFinding: FuzzFinding?
        var jsonl = false
        var shard = Shard.whole
        try withInputErrors("fuzz") {
            guard ops > 0 else { throw UsageError("--ops must be positive") }
            guard episode > 0 else { throw UsageError("--episode must be positive") }
            guard sweepEvery > 0 else { throw UsageError("--sweep-every must be positive") }
            guard format == "text" || format == "jsonl" else { throw UsageError("--format \(format): expected text or jsonl") }
            jsonl = format == "jsonl"
            shard = try sharding.resolve()
            if shard.count > 1 && json != nil {
                throw UsageError("--json needs the whole run; a shard (\(shard)) writes --format jsonl, and `keymm merge` writes the summary")
            }
            if let json { try checkOverwritable(json, option: "--json") }
            options.ops = ops
            options.seed = seed
            options.episodeLength = episode
            options.sweepEvery = sweepEvery
            options.incremental = incremental
            options.checking = !noChecker
            options.keepGoing = keepGoing
            options.without = Set((without ?? "").split(separator: ",").map { String($0) })
            options.model = try fuzzModel()
            if let m = mode {
                guard let cm = CVMFuzzMode(rawValue: m) else {
                    throw UsageError("--mode \(m): expected \(CVMFuzzMode.allCases.map(\.rawValue).joined(separator: " or "))")
                }
                options.mode = cm
            }
            if policy == "all" {
                options.policies = AllocatorPolicy.allCases
            } else {
                var list: [AllocatorPolicy] = []
                for name in policy.split(separator: ",") {
                    guard let p = AllocatorPolicy(rawValue: String(name)) else {
                        throw UsageError("--policy \(name): expected all or \(AllocatorPolicy.allCases.map(\.rawValue).joined(separator: ", "))")
                    }
                    if !list.contains(p) { list.append(p) }
                }
                options.policies = list
            }
            if let name = injectBug {
                guard let bug = SeededBug.named(name) else {
                    throw UsageError("--inject-bug \(name): unknown; seeded bugs: \(SeededBug.names)")
                }
                options.injectBug = bug
            }
        }
        let fuzzer = Fuzzer(options: options)
        let bar = ProgressBar(label: "fuzz", total: 1)
        fuzzer.progress = { done, total in bar.update(done, of: total) }
        if shard.count == 1 && !jsonl {
            summary = fuzzer.runSummary()
        } else {
            // A shard, or JSON Lines: every record is written (and flushed) as it is produced.
            let out = fuzzer.runShard(shard, writer: jsonl ? JSONLWriter() : nil)
            let (programs, findings, stopped, seconds) = (out.programs, out.findings, out.stoppedAt, out.wallSeconds)
            let identity = fuzzer.identity
            shardFinding = findings.sorted { $0.key < $1.key }.first?.value
            if shard.count == 1 {
                summary = FuzzSummary.assemble(plan: fuzzer.plan, identity: identity, options: options, programs: programs,
                                               findings: findings, stoppedAt: stopped, shardSeconds: [seconds])
            } else if !quiet {
                let calls = programs.values.reduce(0) { $0 + $1.calls }
                let broke = programs.values.filter { $0.violation != nil && !$0.unrelated }.count
                printError("keymm fuzz: shard \(shard): \(programs.count) programs, \(calls) calls, \(String(format: "%.1f", seconds)) s: "
                           + (broke == 0 ? "no violation" : "\(broke) violating program(s)"))
            }
        }
        bar.finish()
        let say: (String) -> Void = jsonl ? { printError($0) } : { print($0) }
        if let summary {
            if !quiet { summary.textLines(injectBug: options.injectBug).forEach(say) }
            if let json {
                do { try summary.jsonData().write(to: URL(fileURLWithPath: json)) } catch {
                    printError("keymm fuzz: error: cannot write \(json): \(error)")
                    throw ExitCode(2)
                }
            }
        }
        let first = summary?.firstFinding.map { ($0.finding, $0.policy.callsToFind) } ?? shardFinding.map { ($0, nil) }
        guard let (f, callsToFind) = first else { return }
        // JSON Lines carry the scenario inline; a file is written only when asked for.
        if jsonl && output == nil { throw ExitCode(1) }
        let path = output ?? (shard.count > 1 ? "keymm-fuzz-\(seed).shard-\(shard.index)-of-\(shard.count).strace" : "keymm-fuzz-\(seed).strace")
        try Fuzz.report(f, callsToFind: callsToFind, writingTo: path, say: say)
        throw ExitCode(1)
    }

    /// Writes a finding's scenario to `path` and describes it (also used by `keymm merge`).
    static func report(_ f: FuzzFinding, callsToFind: Int?, writingTo path: String, say: (String) -> Void) throws {
        do { try f.scenario.write(toFile: path, atomically: true, encoding: .utf8) } catch {
            printError("keymm fuzz: error: cannot write \(path): \(error)")
            throw ExitCode(2)
        }
        let after = callsToFind.map { "after \($0) calls, " } ?? ""
        say("keymm fuzz: policy \(f.policy.rawValue): violation \(after)in program \(f.program) (call \((f.violation.site?.index ?? 0) + 1)):")
        say("  \(f.violation.invariant.rawValue): \(f.violation.detail)")
        say("  while running: \(f.violation.site?.call ?? "?")")
        say("shrunk from \(f.originalCalls) to \(f.shrunkCalls) calls (\(f.shrinkRuns) runs); scenario written to \(path)")
        if let r = f.reproduced {
            say("reproduces with `keymm run \(path)`: \(r.description.replacingOccurrences(of: "<scenario>", with: path))")
        } else {
            say("warning: the written file did not reproduce the violation when run on its own")
        }
        if f.reproducedDivergences > 0 { say("note: the file also has \(f.reproducedDivergences) divergences") }
    }

    /// The fuzz defaults, then the configuration file, then each --set.
    func fuzzModel() throws(UsageError) -> ModelConfig {
        var m = Fuzzer.defaultModel()
        if let file = model.config {
            guard let text = try? String(contentsOfFile: file, encoding: .utf8) else {
                throw UsageError("cannot read configuration file \(file)")
            }
            do { try m.applyTOML(text, file: file) } catch { throw UsageError(error.description, located: true) }
        }
        for s in model.set {
            do { try m.apply(s) } catch { throw UsageError("--set \(s): \(error.message)") }
        }
        do { try m.validate() } catch { throw UsageError(error.message) }
        return m
    }
}
