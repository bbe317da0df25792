// The demo's story is established by the model, not printed: each finding is checked.
import Testing
import KeyMM

@Suite struct DemoTests {
    @Test func twoTenantStoryHolds() throws {
        var lines: [String] = []
        let f = try Demo(out: { lines.append($0) }).run(quick: true)
        #expect(f.secretVisibleToOwner)
        #expect(!f.secretInDRAM, "DRAM must hold only ciphertext of an encrypted page")
        #expect(!f.secretVisibleThroughWrongKeyID, "another KeyID must read garbage")
        #expect(!f.movedCiphertextDecrypts, "the XTS tweak is the physical address")
        #expect(f.keyidHeldByPinAfterKeyDied, "a pinned page keeps its KeyID referenced (seed 000)")
        #expect(f.keyidReleasedAfterUnpin)
        // Issue 16: phys_read right after a write shows DRAM's old contents (the line is still
        // cached); the demo says so and shows the ciphertext after clflush.
        #expect(f.dramStaleBeforeFlush, "phys_read before the write-back must show the old DRAM")
        #expect(lines.contains { $0.contains("right after the write") && $0.contains("in the cache") })
        #expect(lines.contains { $0.contains("clflush(") && $0.contains("ciphertext") })
        // "seed 000"/"seed 001" are explained where they appear.
        #expect(lines.contains { $0.contains("seed 000:") && $0.contains("thread") })
        #expect(lines.contains { $0.contains("seed 001:") && $0.contains("thread") })
        let wrapper = f.policyRows.first { $0.policy == "wrapper" }
        let integrated = f.policyRows.first { $0.policy == "integrated" }
        #expect((wrapper?.counters["flushed_lines"] ?? 0) > 0)
        #expect(integrated?.counters["flushed_lines"] == 0)
        #expect((wrapper?.ratioVsNone ?? 0) > (integrated?.ratioVsNone ?? 0))
        #expect(!lines.joined().contains("0123456789abcdef0123456789abcdef"), "key material must never be printed")
        #expect(f.tdTeardownClean, "the correct TD teardown breaks no invariant")
        #expect(f.wrongTeardownCaught?.invariant == .cvmIDReuseWhileHeld)
        // SGX (seed 004): the daemon's stale encl_mm only under the merged design; one round trip.
        #expect(f.sgx.mmListAfterHandoff == ["notifier": 2, "vma-refcount": 1])
        #expect(f.sgx.outsideReadIsAbortPage)
        #expect(!f.sgx.secretInDRAM, "the EPC holds only ciphertext")
        #expect(f.sgx.pagesWrittenBack.values.allSatisfy { $0 > 0 })
        #expect(f.sgx.secretAfterRoundTrip == ["notifier": true, "vma-refcount": true])
    }
}
