// The fuzzer: a short run per policy on the unmodified model finds nothing; a run with a seeded
// bug finds it, shrinks it to a small file that reproduces on its own (no divergence), and does
// it the same way every time (deterministic by seed).
import Foundation
import Testing
import KeyMM

@Suite struct FuzzTests {
    /// Calls per policy in CI (KEYMM_FUZZ_OPS to scale; the issue's bar is 200000 in release).
    static let ops = ProcessInfo.processInfo.environment["KEYMM_FUZZ_OPS"].flatMap(Int.init) ?? 1000

    static func options(_ policy: AllocatorPolicy, bug: String? = nil, ops: Int = FuzzTests.ops, seed: UInt64 = 11) -> FuzzOptions {
        var o = FuzzOptions()
        o.ops = ops
        o.seed = seed
        o.policies = [policy]
        o.injectBug = bug.flatMap { SeededBug.named($0) }
        o.episodeLength = 250
        o.model.machine.cacheSize = .kib(256)   // 4096 lines: a cheaper sweep in debug, more evictions
        o.without = KnownModelBugs.avoid
        return o
    }

    @Test(arguments: AllocatorPolicy.allCases)
    func shortFuzzFindsNothingOnTheUnmodifiedModel(_ policy: AllocatorPolicy) {
        let results = Fuzzer(options: FuzzTests.options(policy)).run()
        let r = results[0]
        #expect(r.ops + r.rejected == FuzzTests.ops)
        if let f = r.finding {
            Issue.record("\(policy.rawValue): \(f.violation)\n\(f.scenario)")
        }
    }

    @Test func seededBugIsFoundShrunkAndReproduced() throws {
        let results = Fuzzer(options: FuzzTests.options(.eager, bug: "encrypted-zero-page", ops: 3000)).run()
        let f = try #require(results[0].finding)
        #expect(f.violation.invariant == .encryptedZeroPage)
        #expect(f.shrunkCalls <= 10)
        #expect(f.shrunkCalls < f.originalCalls || f.originalCalls <= 10)
        #expect(f.reproduced?.invariant == .encryptedZeroPage)
        #expect(f.reproducedDivergences == 0)
        #expect(f.scenario.contains("#@ set inject-bug=encrypted-zero-page\n"))
        #expect(f.scenario.contains("#@ set policy=eager\n"))
        // The written file, run as `keymm run` runs it, breaks the invariant; without the bug it does not.
        let again = ScenarioFiles.run(f.scenario, name: "<shrunk>")
        #expect(again.violations.first?.invariant == .encryptedZeroPage)
        #expect(again.divergences.isEmpty)
    }

    @Test func fuzzingIsDeterministic() throws {
        let a = Fuzzer(options: FuzzTests.options(.integrated, bug: "vma-dup-skips-keyid-ref", ops: 2000, seed: 5)).run()
        let b = Fuzzer(options: FuzzTests.options(.integrated, bug: "vma-dup-skips-keyid-ref", ops: 2000, seed: 5)).run()
        let fa = try #require(a[0].finding), fb = try #require(b[0].finding)
        #expect(a[0].callsToFind == b[0].callsToFind && fa.program == fb.program)
        #expect(fa.scenario == fb.scenario)
        #expect(fa.violation == fb.violation)
    }

    @Test func bugThatCannotShowUnderAPolicyIsSkipped() {
        let r = Fuzzer(options: FuzzTests.options(.none, bug: "merge-across-keyids", ops: 100)).run()
        #expect(r[0].skipped)
        #expect(r[0].finding == nil)
    }

    /// The model problem the fuzzer found under the lazy policies (keyid-release-dirty-lines,
    /// docs/fuzzing.md), fixed by the WBINVD before CLEAR_KEY (mktme/KeyIDRelease.swift): its
    /// shrunk reproduction is now clean, DRAM holds the dead key's ciphertext instead of the
    /// tenant's plaintext, the release costs one counted WBINVD; without the write-back (the
    /// seeded bug) the checker catches it at the release itself.
    @Test(arguments: [AllocatorPolicy.integrated, .perKeyID])
    func releasedKeyIDIsWrittenBackBeforeItIsReprogrammed(_ policy: AllocatorPolicy) throws {
        let text = KnownModelBugs.keyidReleaseDirtyLines(policy: policy, bug: nil)
        let fixed = ScenarioFiles.run(text, name: "keyid-release-dirty-lines")
        for v in fixed.violations { Issue.record("\(v)") }
        let clock = try #require(fixed.kernel?.machine.clock)
        #expect(clock.value(of: .keyidReleaseFlushes) == 1)
        let broken = ScenarioFiles.run(KnownModelBugs.keyidReleaseDirtyLines(policy: policy, bug: "skip-flush-on-keyid-release"),
                                       name: "keyid-release-dirty-lines")
        #expect(broken.violations.first?.invariant == .keyidReprogrammedWithCachedLines)
        #expect(broken.violations.contains { $0.invariant == .plaintextInDRAM })
        #expect(broken.kernel?.machine.clock.value(of: .keyidReleaseFlushes) == 0)
    }

    /// Eager flushes every page at free: no line of a KeyID is left when its count reaches zero,
    /// so its release needs (and gets) no WBINVD.
    @Test func eagerReleaseNeedsNoWriteBack() throws {
        let r = ScenarioFiles.run(KnownModelBugs.keyidReleaseDirtyLines(policy: .eager, bug: nil), name: "keyid-release-dirty-lines")
        for v in r.violations { Issue.record("\(v)") }
        #expect(r.kernel?.machine.clock.value(of: .keyidReleaseFlushes) == 0)
    }
}

/// Model problems found by fuzzing the unmodified model (docs/fuzzing.md). Both found so far
/// are fixed (swap-cache-migration in 42f5c46, keyid-release-dirty-lines by the release-time
/// write-back); their reproductions are regression tests.
enum KnownModelBugs {
    /// Calls the CI fuzz leaves out so a known problem does not end every run (none now).
    static let avoid: Set<String> = []

    /// The shrunk reproduction of keyid-release-dirty-lines (per-keyid, seed 1, 1,605 calls),
    /// without its recorded phys_read result (it differs with the fix). `bug`: a seeded bug.
    static func keyidReleaseDirtyLines(policy: AllocatorPolicy, bug: String?) -> String {
        """
        #@ set memory=128M
        #@ set keyid-bits=3
        #@ set policy=\(policy.rawValue)
        #@ set inject-bug=\(bug ?? "none")
        1 add_key("mktme", "tenant", "type=cpu algorithm=aes-xts-128", 30, KEY_SPEC_USER_KEYRING) = 1003
        1 mmap(0x7e0003800000, 16384, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED, -1, 0) = 0x7e0003800000
        1 encrypt_mprotect(0x7e0003800000, 16384, PROT_READ|PROT_WRITE, 1003) = 0
        1 mem_write(0x7e0003800040, "tenant secret 0123456789abcdefgh") = 32
        1 munmap(0x7e0003800000, 16384) = 0
        1 keyctl(KEYCTL_INVALIDATE, 1003) = 0
        1 add_key("mktme", "clear", "type=no-encrypt", 15, KEY_SPEC_USER_KEYRING) = 1008
        1 wbinvd() = 0
        1 phys_read(0x40, 32) = ?

        """
    }
}
