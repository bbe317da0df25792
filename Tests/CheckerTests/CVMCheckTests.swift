// The confidential-VM checks (CVMChecks.swift): the fuzzer's TDX and SEV modes find nothing on
// the unmodified model in a short run and find a seeded bug; each confidential-VM invariant fires
// on the mistake it names (a scenario per invariant), and not on the correct sequence.
import Foundation
import Testing
import KeyMM

@Suite struct CVMCheckTests {
    static let ops = ProcessInfo.processInfo.environment["KEYMM_FUZZ_OPS"].flatMap(Int.init).map { $0 / 2 } ?? 400

    static func options(_ mode: CVMFuzzMode, bug: String? = nil, ops: Int = CVMCheckTests.ops, seed: UInt64 = 3) -> FuzzOptions {
        var o = FuzzTests.options(.integrated, bug: bug, ops: ops, seed: seed)
        o.mode = mode
        o.episodeLength = 200
        return o
    }

    @Test(arguments: CVMFuzzMode.allCases)
    func shortFuzzOfEachModeFindsNothing(_ mode: CVMFuzzMode) {
        let r = Fuzzer(options: CVMCheckTests.options(mode)).run()[0]
        #expect(r.ops == CVMCheckTests.ops)
        if let f = r.finding { Issue.record("\(mode): \(f.violation)\n\(f.scenario)") }
    }

    @Test func cvmSeededBugIsFoundAndShrunk() throws {
        // The bug picks its mode (sev) by itself.
        var o = FuzzTests.options(.integrated, bug: "snp-keep-direct-map", ops: 1500, seed: 3)
        o.episodeLength = 200
        let f = try #require(Fuzzer(options: o).run()[0].finding)
        #expect(f.violation.invariant == .privatePageInDirectMap)
        #expect(f.reproduced?.invariant == .privatePageInDirectMap)
        #expect(f.reproducedDivergences == 0)
        #expect(f.shrunkCalls <= 5)
        #expect(f.scenario.contains("#@ set sev-asids=6\n"))
    }

    static let tdx = "#@ set memory=128M\n#@ set keyid-bits=3\n#@ set tdx-keyids=3\n#@ set cache=1M\n"
    static let sev = "#@ set memory=128M\n#@ set encryption=sme\n#@ set sev-asids=6\n#@ set min-sev-asid=4\n#@ set cache=1M\n"

    static func first(_ text: String) -> Violation? { ScenarioFiles.run(text, name: "<cvm>").violations.first }

    @Test func hostWritingAPrivatePageIsHostAccess() throws {
        // The host reaches a TD page through the direct map (it can: TDX leaves it mapped).
        let base = CVMCheckTests.tdx + "tdx_enable()\ntdx_td_init() = 1\ntdx_init_mem_region(1, 0x0, 1)\n"
        #expect(CVMCheckTests.first(base + "kvm_gpa_to_hpa(1, 0x0)\n") == nil)
        let runner = ScenarioFiles.run(base, name: "<cvm>")
        let kernel = try #require(runner.kernel)
        let pa = try #require(kernel.cvm.vm(1)?.privatePages[0]).physAddr.rawValue
        let hex = "0x" + String(pa, radix: 16)
        #expect(CVMCheckTests.first(base + "host_write(\(hex), \"oops\")\n")?.invariant == .hostAccessToPrivatePage)
        #expect(CVMCheckTests.first(base + "host_read(\(hex), 8)\n")?.invariant == .hostAccessToPrivatePage)
        let nt = CVMCheckTests.first(base + "host_write_nt(\(hex), \"oops\")\n")
        #expect(nt?.invariant == .hostAccessToPrivatePage)
        #expect(nt?.detail.contains("host_write_nt") == true)
    }

    @Test func aPoisonedPageMachineChecksItsNextReader() throws {
        // A removed, written-back page is freed without the MOVDIR64B reset (seeded bug
        // tdx-clear-with-partial-writes poisons it): the checker names it, and the next host
        // path that reads the page gets a machine check (SIGBUS).
        let base = CVMCheckTests.tdx + "#@ set inject-bug=tdx-clear-with-partial-writes\n"
            + "tdx_enable()\ntdx_td_init() = 1\ntdx_init_mem_region(1, 0x0, 1)\n"
        let probe = ScenarioFiles.run(base, name: "<cvm>")
        let pa = try #require(probe.kernel?.cvm.vm(1)?.privatePages[0]).physAddr.rawValue
        let runner = ScenarioFiles.run(base + "tdx_sept_remove_private_spte(1, 0x0, 1)\nhost_read(0x\(String(pa, radix: 16)), 8)\n", name: "<cvm>")
        #expect(runner.violations.first?.invariant == .guestStateOnHostPage)
        #expect(runner.violations.first?.detail.contains("poisoned by tdx_clear_page (MOVNTI)") == true)
        #expect(runner.lastOutcome == .signal("SIGBUS"))
    }

    @Test func unknownCVMCallsAndBadArgumentsAreLocatedErrors() {
        let cases: [(String, String)] = [
            ("tdx_enabel()", "unknown confidential-VM call"),
            ("sev_guest_init(KVM_X86_SNP)", "unknown VM type KVM_X86_SNP"),
            ("tdx_inject_error(TDH_MNG_CREAT)", "unknown SEAMCALL leaf"),
            ("sev_inject_error(DF_FLUSH)", "expected an SEV firmware command"),
            ("tdx_init_mem_region(1, 0x0, 0)", "NPAGES is 1 ... 4096"),
            ("host_read(0xffffffffff, 8)", "outside physical memory"),
            ("misc_cg_set_max(\"sgx\", 1)", "unknown misc cgroup resource"),
            ("guest_write(1, 0x0)", "needs at least 3 arguments"),
        ]
        for (line, message) in cases {
            let runner = ScenarioRunner(config: ModelConfig())
            do {
                try runner.run(TraceReader(string: CVMCheckTests.tdx + line + "\n", name: "x.strace"))
                Issue.record("\(line): no error")
            } catch {
                #expect(error.location.line == 5, "\(line): \(error)")
                #expect(error.message.contains(message), "\(line): \(error.message)")
            }
        }
    }
}
