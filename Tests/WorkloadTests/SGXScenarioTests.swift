// scenarios/sgx under both mm-tracking designs (a file that pins `sgx-mm-tracking` runs as is, the
// others under notifier and under vma-refcount): every recorded result reproduced, no invariant
// broken; the VMA counts the merge files document; the ioctl syntax's located errors.
import Foundation
import Testing
import KeyMM

@Suite struct SGXScenarioTests {
    static var files: [String] { Scenarios.all().filter { $0.hasPrefix("sgx/") } }

    static func pinsDesign(_ file: String) throws -> Bool {
        try String(contentsOf: Scenarios.root.appendingPathComponent(file), encoding: .utf8).contains("#@ set sgx-mm-tracking=")
    }

    @Test(arguments: files)
    func reproducesUnderBothDesigns(_ file: String) throws {
        let designs = try Self.pinsDesign(file) ? [""] : ["notifier", "vma-refcount"]
        for d in designs {
            let runner = try Scenarios.run(file, settings: d.isEmpty ? [] : ["sgx-mm-tracking=\(d)"])
            for x in runner.divergences { Issue.record("\(d): \(x.file):\(x.line): \(x.call): expected \(x.expected), got \(x.actual)") }
            for v in runner.violations { Issue.record("\(d): \(v)") }
            #expect(runner.calls > 5)
        }
    }

    @Test func sgxScenariosExist() { #expect(Self.files.count >= 12) }

    @Test(arguments: [("sgx/merge-plain-notifier.strace", 1), ("sgx/merge-plain-vma-refcount.strace", 3),
                      ("sgx/merge-plain-vma-refcount-2019.strace", 5), ("sgx/build-and-map.strace", 4)])
    func enclaveVMAsPerDesign(_ file: String, _ vmas: Int) throws {
        let runner = try Scenarios.run(file)
        let maps = try #require(runner.kernel?.procMaps(ProcessID(1)))
        let lines = maps.split(separator: "\n").filter { $0.hasSuffix("/dev/sgx_enclave") }
        #expect(lines.count == vmas, "\(maps)")
        for l in lines { #expect(l.contains("s 0") && l.contains(" 00:06 405 ")) }
    }

    @Test(arguments: [
        ("1 ioctl(3, SGX_IOC_ENCLAVE_CREATE, {size=0x10000})", "needs the field base"),
        ("1 ioctl(3, SGX_IOC_ENCLAVE_CREATE, {size=0x10000, base=0, colour=2})", "unknown field colour"),
        ("1 ioctl(3, SGX_IOC_ENCLAVE_ADD_PAGES, {offset=0, length=0x1000, secinfo=SGX_SECINFO_RGE})", "unknown constant SGX_SECINFO_RGE"),
        ("1 ioctl(3, SGX_IOC_ENCLAVE_CREATE, 0x10000)", "is written as a {structure}"),
        ("1 ioctl(3, TCGETS, {})", "unknown request TCGETS"),
        ("1 sgx_tamper(3, 0, 7)", "SGX_TAMPER_FLIP or SGX_TAMPER_REPLAY"),
        ("1 sgx_mm_lst(3)", "did you mean sgx_mm_list?"),
    ])
    func badSGXLinesAreLocatedErrors(_ line: String, _ message: String) throws {
        let text = "1 openat(AT_FDCWD, \"/dev/sgx_enclave\", O_RDWR) = 3\n" + line + "\n"
        let runner = ScenarioRunner(config: ModelConfig())
        do {
            try runner.run(TraceReader(string: text, name: "bad.strace"))
            Issue.record("no error for \(line)")
        } catch {
            #expect(error.location.line == 2)
            #expect(error.location.column >= 1)
            #expect(error.message.contains(message), "\(error.message)")
        }
        #expect(runner.calls == 1)
    }

    /// A finding of the merged driver (docs/sgx.md): it has no mremap hook, so a moved enclave
    /// mapping keeps PTEs away from the pages' own addresses, where the reclaimer's zap never looks.
    @Test func movedEnclaveMappingIsAStalePTEFinding() throws {
        let text = """
        1 openat(AT_FDCWD, "/dev/sgx_enclave", O_RDWR) = 3
        1 ioctl(3, SGX_IOC_ENCLAVE_CREATE, {size=0x10000, base=0x7f0000000000}) = 0
        1 ioctl(3, SGX_IOC_ENCLAVE_ADD_PAGES, {offset=0, length=0x2000, secinfo=SGX_SECINFO_REG|SGX_SECINFO_R|SGX_SECINFO_W}) = 0
        1 ioctl(3, SGX_IOC_ENCLAVE_INIT, {}) = 0
        1 mmap(0x7f0000000000, 8192, PROT_READ|PROT_WRITE, MAP_SHARED|MAP_FIXED, 3, 0) = 0x7f0000000000
        1 enclave_write(0x7f0000000000, "moved") = 5
        1 mremap(0x7f0000000000, 8192, 8192, MREMAP_MAYMOVE|MREMAP_FIXED, 0x7f1000000000) = 0x7f1000000000
        1 sgx_reclaim(16) = 2
        1 mem_read(0x7f1000000000, 4) = "\\377\\377\\377\\377"

        """
        let runner = ScenarioRunner(config: ModelConfig())
        try runner.run(TraceReader(string: text, name: "mremap.strace"))
        #expect(runner.divergences.isEmpty)
        #expect(runner.violations.first?.invariant == .epcStalePTE)
    }
}
