// The fuzzer's enclave operations (SGXProgramGenerator.swift): a short run under each mm-tracking
// design finds nothing on the unmodified model, and an SGX seeded bug (which needs enclaves built,
// mapped and forked) is found and shrunk.
import Foundation
import Testing
import KeyMM

@Suite struct SGXFuzzTests {
    static func options(_ design: String, bug: String? = nil, ops: Int = FuzzTests.ops) throws -> FuzzOptions {
        var o = FuzzTests.options(.none, bug: bug, ops: ops, seed: 3)
        try o.model.apply("sgx-mm-tracking=\(design)")
        return o
    }

    @Test(arguments: ["notifier", "vma-refcount"])
    func shortFuzzWithEnclavesFindsNothing(_ design: String) throws {
        let r = Fuzzer(options: try Self.options(design)).run()[0]
        if let f = r.finding { Issue.record("\(design): \(f.violation)\n\(f.scenario)") }
        #expect(r.ops == FuzzTests.ops)
    }

    @Test func sgxSeededBugIsFoundAndShrunk() throws {
        let f = try #require(Fuzzer(options: try Self.options("notifier", bug: "sgx-encl-mm-added-twice", ops: 3000)).run()[0].finding)
        #expect(f.violation.invariant == .sgxMMList)
        #expect(f.shrunkCalls <= 10 && f.reproducedDivergences == 0)
        #expect(f.reproduced?.invariant == .sgxMMList)
    }
}
