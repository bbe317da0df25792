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
        let wrapper = f.policyRows.first { $0.policy == "wrapper" }
        let integrated = f.policyRows.first { $0.policy == "integrated" }
        #expect((wrapper?.counters["flushed_lines"] ?? 0) > 0)
        #expect(integrated?.counters["flushed_lines"] == 0)
        #expect((wrapper?.ratioVsNone ?? 0) > (integrated?.ratioVsNone ?? 0))
        #expect(!lines.joined().contains("0123456789abcdef0123456789abcdef"), "key material must never be printed")
        #expect(f.tdTeardownClean, "the correct TD teardown breaks no invariant")
        #expect(f.wrongTeardownCaught?.invariant == .cvmIDReuseWhileHeld)
    }
}
