// Helpers for the VMA-layer tests: a small kernel, VMAs linked straight into an mm
// (tools/testing/vma's alloc_and_link_vma), a vm_operations_struct with a close hook, and
// a compact description of an address space for assertions.
import KeyMMBase
import KeyMMHardware
@testable import KeyMMKernel

/// A kernel on a small machine; 16 protection keys unless told otherwise.
func makeVMAKernel(maxMapCount: Int = 65530, pkeys: Int = 16, thp: THPMode = .madvise) throws -> Kernel {
    var mc = MachineConfig()
    mc.memory = .mib(64)
    mc.cacheSize = .mib(1)
    let machine = try Machine(config: mc)
    var kc = KernelConfig()
    kc.maxMapCount = maxMapCount
    kc.pkeyCount = pkeys
    kc.thp = thp
    return try Kernel(machine: machine, config: kc)
}

/// VM_READ|VM_WRITE|VM_MAYREAD|VM_MAYWRITE|VM_MAYEXEC, the flags tools/testing/vma uses.
let rwFlags: VMFlags = [.read, .write, .mayRead, .mayWrite, .mayExec]

/// alloc_and_link_vma(): a VMA inserted as-is (addresses in pages for brevity).
@discardableResult
func linkVMA(_ k: Kernel, _ mm: MM, _ startPage: UInt64, _ endPage: UInt64, pgoff: UInt64,
             flags: VMFlags = rwFlags, file: MappedFile? = nil) -> VMA {
    let vma = k.vmAreaAlloc(start: VirtAddr(startPage << 12), end: VirtAddr(endPage << 12), pgoff: pgoff,
                            flags: flags, file: file)
    mm.vmas.insert(vma)
    return vma
}

/// A VMA layout as "start-end:pgoff" page numbers, for compact assertions.
func layout(_ mm: MM) -> [String] {
    mm.vmas.map { "\($0.vmStart.rawValue >> 12)-\($0.vmEnd.rawValue >> 12):\($0.vmPgoff)" }
}

/// vm_operations_struct with a close hook (and counters).
final class CloseOps: VMOperations {
    var closed = 0
    var opened = 0
    var hasClose: Bool { true }
    func close(_ vma: VMA) { closed += 1 }
    func open(_ vma: VMA) { opened += 1 }
}

/// vm_operations_struct that vetoes splits and mprotect (SGX-like).
final class VetoOps: VMOperations {
    func maySplit(_ vma: VMA, at address: VirtAddr) -> Errno? { .EINVAL }
    func mprotect(_ vma: VMA, start: VirtAddr, end: VirtAddr, newFlags: VMFlags) -> Errno? {
        newFlags.contains(.exec) ? .EACCES : nil
    }
}
