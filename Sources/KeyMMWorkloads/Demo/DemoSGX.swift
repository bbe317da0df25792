// The demo's SGX part (seed 004): the builder-daemon hand-off under both mm-tracking designs side
// by side, on fresh machines, through scenario lines: the enclave's data is unreadable from
// outside (the abort page) and in DRAM (the EPC's own key), the daemon's stale encl_mm under the
// merged design, and one reclaim round trip (EWB to encrypted backing storage, ELDU back).
//
// Invariant: every figure printed comes from executing the calls.
import Foundation
import KeyMMBase
import KeyMMKernel
import KeyMMTrace

extension Demo {
    /// What the SGX part established, for tests.
    public struct SGXFindings: Sendable {
        /// Per design: mms on the enclave's mm_list after the hand-off (the daemon's stale one included).
        public var mmListAfterHandoff: [String: Int] = [:]
        public var outsideReadIsAbortPage = false
        public var secretInDRAM = true
        public var pagesWrittenBack: [String: Int] = [:]
        public var secretAfterRoundTrip: [String: Bool] = [:]
    }

    static let enclaveSecret = "ENCLAVE SECRET: sealed & paged"

    /// Section "SGX enclaves": both designs side by side.
    func runSGX(section: Int) throws -> SGXFindings {
        var f = SGXFindings()
        out("\(section). SGX enclaves (seed 004): a builder daemon hands an enclave to a worker, under both designs")
        var rows = [["sgx-mm-tracking", "mm_list after hand-off", "daemon's encl_mm", "reclaim: pages / mm walks", "secret after EWB+ELDU"]]
        for design in SGXMMTracking.allCases {
            var config = ModelConfig()
            config.machine.memory = .mib(64)
            config.machine.epc = .kib(512)
            config.kernel.sgxMMTracking = design
            let runner = ScenarioRunner(config: config)
            let kernel = try runner.boot()
            kernel.spawn(pid: ProcessID(1), cred: .root)
            func call(_ text: String) throws -> CallOutcome {
                guard let o = try runner.execute(text: text) else { throw DemoError("the model does not execute: \(text)") }
                if case .error(let e) = o { throw DemoError("\(text) failed with \(e.name)") }
                return o
            }
            let secret = Self.enclaveSecret
            for line in ["1 openat(AT_FDCWD, \"/dev/sgx_enclave\", O_RDWR) = 3",
                         "1 ioctl(3, SGX_IOC_ENCLAVE_CREATE, {size=0x10000, base=0x7f0000000000}) = 0",
                         "1 ioctl(3, SGX_IOC_ENCLAVE_ADD_PAGES, {offset=0, length=0x8000, secinfo=SGX_SECINFO_REG|SGX_SECINFO_R|SGX_SECINFO_W, flags=SGX_PAGE_MEASURE}) = 0",
                         "1 ioctl(3, SGX_IOC_ENCLAVE_INIT, {}) = 0",
                         "1 mmap(0x7f0000000000, 32768, PROT_READ|PROT_WRITE, MAP_SHARED|MAP_FIXED, 3, 0) = 0x7f0000000000",
                         "1 enclave_write(0x7f0000000000, \"\(secret)\")",
                         "1 munmap(0x7f0000000000, 32768) = 0",
                         "1 fork() = 2",
                         "1 close(3) = 0",
                         "2 mmap(0x7f0000000000, 32768, PROT_READ|PROT_WRITE, MAP_SHARED|MAP_FIXED, 3, 0) = 0x7f0000000000"] {
                _ = try call(line)
            }
            guard case .value(let n) = try call("2 sgx_mm_list(3)") else { throw DemoError("sgx_mm_list failed") }
            f.mmListAfterHandoff[design.rawValue] = Int(n)
            if design == .notifier {
                guard case .bytes(let outside) = try call("2 mem_read(0x7f0000000000, 16)"),
                      case .address(let pa) = try call("2 virt_to_phys(0x7f0000000000)") else { throw DemoError("outside view failed") }
                _ = try call("2 wbinvd()")
                guard case .bytes(let dram) = try call("2 phys_read(0x\(String(pa, radix: 16)), \(secret.utf8.count))") else { throw DemoError("phys_read failed") }
                f.outsideReadIsAbortPage = outside.allSatisfy { $0 == 0xFF }
                f.secretInDRAM = Self.contains(dram, secret)
                out("   the worker reads its enclave page from outside the enclave (mem_read): \(Self.show(outside)) (the abort page)")
                out("   DRAM at PA 0x\(String(pa, radix: 16)) (the EPC, after the OS's memory): \(Self.show(dram)) (encrypted with a key no software holds)")
            }
            let walks0 = kernel.machine.clock.snapshot["sgx_mm_walks"] ?? 0
            guard case .value(let written) = try call("2 sgx_reclaim(64)") else { throw DemoError("sgx_reclaim failed") }
            let walks = (kernel.machine.clock.snapshot["sgx_mm_walks"] ?? 0) - walks0
            f.pagesWrittenBack[design.rawValue] = Int(written)
            let back = try call("2 enclave_read(0x7f0000000000, \(secret.utf8.count))")
            f.secretAfterRoundTrip[design.rawValue] = back == .bytes(Array(secret.utf8))
            rows.append([design.rawValue, "\(n)", n > 1 ? "stale (until the daemon exits)" : "freed at its munmap",
                         "\(written) / \(walks)", f.secretAfterRoundTrip[design.rawValue]! ? "intact" : "LOST"])
        }
        table(rows)
        out("   The merged design lets the daemon's mm stay on mm_list after it unmapped the enclave; every reclaim then")
        out("   walks it too. The 2019 design drops it at munmap but needs vm_ops->close, which keeps VMAs from merging.")
        out("   More: keymm bench sgx; keymm run scenarios/sgx/*.strace; docs/sgx.md")
        out("")
        return f
    }
}
