// Helpers for the checker tests: a small model run through the ScenarioRunner with the checker
// after every call, a base program (one encrypted tenant, one KeyID-0 region, a zero-page read),
// and direct access to entries and frames so a test can break an invariant by hand.
import Foundation
import Testing
import KeyMM

/// A scenario runner with the checker on (by default incremental with the full sweep after every
/// call cross-checking it), on a small machine.
struct Harness {
    let runner: ScenarioRunner
    var kernel: Kernel { runner.kernel! }
    var checker: InvariantChecker { runner.checker! }

    /// Encrypted tenant A (KeyID 1) at 0x7e0000000000 (32 KiB, one page written, one zero-page
    /// read at +0x1000) and a KeyID-0 region at 0x7e0000008000 (one page written).
    static let base = """
        1 add_key("mktme", "tenant-a", "type=cpu algorithm=aes-xts-128", 30, KEY_SPEC_USER_KEYRING) = 1000
        1 mmap(0x7e0000000000, 65536, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED_NOREPLACE, -1, 0) = 0x7e0000000000
        1 encrypt_mprotect(0x7e0000000000, 32768, PROT_READ|PROT_WRITE, 1000) = 0
        1 mem_write(0x7e0000000000, "tenant A secret: 0123456789abcdef0123456789abcdef0123456789abcd") = 63
        1 mem_read(0x7e0000001000, 8) = "\\0\\0\\0\\0\\0\\0\\0\\0"
        1 mem_write(0x7e0000008000, "plain page data 0123456789abcdef") = 32

        """
    static let secretVA = VirtAddr(0x7e00_0000_0000)
    static let zeroVA = VirtAddr(0x7e00_0000_1000)
    static let plainVA = VirtAddr(0x7e00_0000_8000)

    init(_ settings: [String] = [], program: String = Harness.base, mode: CheckMode = .crossChecked) throws {
        var c = ModelConfig()
        c.machine.memory = .mib(64)
        c.machine.cacheSize = .mib(1)
        for s in settings { try c.apply(s) }
        var o = RunOptions()
        o.checker = mode.options
        runner = ScenarioRunner(config: c, options: o)
        try runner.run(TraceReader(string: program, name: "<test>"))
    }

    func run(_ text: String) throws {
        try runner.run(TraceReader(string: text, name: "<test>"))
    }

    /// The checker's verdict after a hand-made change (as if a call had just run).
    func check(_ kind: CheckedCallKind = .other, address: VirtAddr? = nil, length: UInt64? = nil) -> [Violation] {
        checker.afterCall(call(kind, address: address, length: length), outcome: .success(value: nil))
    }

    func call(_ kind: CheckedCallKind = .other, address: VirtAddr? = nil, length: UInt64? = nil) -> CheckedCall {
        CheckedCall(site: CallSite(file: "<test>", line: 0, call: "hand-made change", index: 0), kind: kind,
                    pid: ProcessID(1), address: address, length: length)
    }

    var task: TaskStruct { kernel.task(ProcessID(1))! }

    /// The PTE slot mapping `va` in pid 1.
    func slot(_ va: VirtAddr) -> Int {
        guard case .pte(_, let s) = task.mm.pageTable.walk(va) else { fatalError("no PTE at \(va)") }
        return s
    }

    func pte(_ va: VirtAddr) -> PTE { task.mm.pageTable[slot(va)] }
    func pfn(_ va: VirtAddr) -> PFN { pte(va).pfn(kernel.layout) }

    /// Rewrites the KeyID of the PTE mapping `va`.
    func setPTEKeyID(_ va: VirtAddr, _ k: KeyID) {
        task.mm.pageTable.set(slot(va), pte(va).with(keyid: k, layout: kernel.layout))
    }
}

extension Array where Element == Violation {
    func fired(_ inv: Invariant) -> Bool { contains { $0.invariant == inv } }
    var names: [String] { map(\.invariant.rawValue) }
}
