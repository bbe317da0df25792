// `keymm fuzz`: random syscall programs under the invariant checker, policy after policy; a
// violation is shrunk to a small scenario file that reproduces it with `keymm run`.
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
            migrate_pages, move_pages, mbind, files). The defaults are a small machine (memory=128M, nodes=2, \
            cache=1M, keyid-bits=3); --set/--config change them. Seeded bugs (docs/invariants.md): \(SeededBug.names).
            """)

    @Option(name: .long, help: "Calls per policy.")
    var ops: Int = 10_000

    @Option(name: .long, help: "Seed of the programs (the same seed gives the same run).")
    var seed: UInt64 = 1

    @Option(name: .long, help: "Allocator policy, a comma-separated list, or all (each in turn).")
    var policy: String = "all"

    @Option(name: .customLong("inject-bug"), help: "A seeded bug to inject (see docs/invariants.md).")
    var injectBug: String?

    @Option(name: .long, help: "Calls per episode (a fresh machine each).")
    var episode: Int = 500

    @Option(name: .customLong("sweep-every"), help: "The checker's full sweep every N calls (1: after every call).")
    var sweepEvery: Int = 1

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

    @OptionGroup var model: ModelOptions

    func run() throws {
        var options = FuzzOptions()
        var found: FuzzFinding?
        var results: [FuzzPolicyResult] = []
        try withInputErrors("fuzz") {
            guard ops > 0 else { throw UsageError("--ops must be positive") }
            guard episode > 0 else { throw UsageError("--episode must be positive") }
            options.ops = ops
            options.seed = seed
            options.episodeLength = episode
            options.sweepEvery = max(sweepEvery, 1)
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
                    list.append(p)
                }
                options.policies = list
            }
            if let name = injectBug {
                guard let bug = SeededBug.named(name) else {
                    throw UsageError("--inject-bug \(name): unknown; seeded bugs: \(SeededBug.names)")
                }
                options.injectBug = bug
            }
            let fuzzer = Fuzzer(options: options)
            let bar = ProgressBar(label: "fuzz", total: ops * options.policies.count)
            fuzzer.progress = { done, _ in bar.update(done) }
            results = fuzzer.run()
            bar.finish()
            found = results.compactMap(\.finding).first
        }
        if !quiet {
            for r in results {
                if r.skipped {
                    print("policy \(r.policy.rawValue): skipped (\(options.injectBug?.name ?? "the bug") cannot show under it: \(options.injectBug?.notApplicable ?? ""))")
                    continue
                }
                let rate = r.seconds > 0 ? Double(r.ops) / r.seconds : 0
                print("policy \(r.policy.rawValue): \(r.ops) calls in \(r.episodes) episodes, \(String(format: "%.1f", r.seconds)) s (\(Int(rate)) calls/s): \(r.finding == nil ? "no violation" : "VIOLATION")")
                for (name, n) in r.violationsByInvariant.sorted(by: { $0.key < $1.key }) {
                    print("  \(n) episode(s) broke \(name)")
                }
                for (e, v) in r.unrelated.prefix(3) {
                    print("  note: episode \(e) broke \(v.invariant.rawValue) without the injected bug too (a model problem, not the bug's): \(v.detail)")
                }
            }
        }
        guard let f = found else { return }
        let path = output ?? "keymm-fuzz-\(seed).strace"
        do { try f.scenario.write(toFile: path, atomically: true, encoding: .utf8) } catch {
            printError("keymm fuzz: error: cannot write \(path): \(error)")
            throw ExitCode(2)
        }
        print("keymm fuzz: policy \(f.policy.rawValue): violation after \(f.opsToFind) calls (episode \(f.episode), call \((f.violation.site?.index ?? 0) + 1)):")
        print("  \(f.violation.invariant.rawValue): \(f.violation.detail)")
        print("  while running: \(f.violation.site?.call ?? "?")")
        print("shrunk from \(f.originalCalls) to \(f.shrunkCalls) calls (\(f.shrinkRuns) runs); scenario written to \(path)")
        if let r = f.reproduced {
            print("reproduces with `keymm run \(path)`: \(r.description.replacingOccurrences(of: "<scenario>", with: path))")
        } else {
            print("warning: the written file did not reproduce the violation when run on its own")
        }
        if f.reproducedDivergences > 0 { print("note: the file also has \(f.reproducedDivergences) divergences") }
        throw ExitCode(1)
    }

    /// The fuzz defaults, then the configuration file, then each --set.
    func fuzzModel() throws(UsageError) -> ModelConfig {
        var m = Fuzzer.defaultModel()
        if let file = model.config {
            guard let text = try? String(contentsOfFile: file, encoding: .utf8) else {
                throw UsageError("cannot read configuration file \(file)")
            }
            do { try m.applyTOML(text, file: file) } catch { throw UsageError(error.description) }
        }
        for s in model.set {
            do { try m.apply(s) } catch { throw UsageError("--set \(s): \(error.message)") }
        }
        do { try m.validate() } catch { throw UsageError(error.message) }
        return m
    }
}
