// Helpers for the page-table / fault / THP tests: a small kernel, VMAs inserted directly
// into an mm (so the tests exercise the page-table layer on its own), and KeyIDs
// programmed with fixed keys so ciphertext differs per KeyID.
import KeyMMBase
import KeyMMHardware
import KeyMMKeys
@testable import KeyMMKernel

/// A kernel on a small machine (64 MiB, 1 MiB cache) with KeyIDs 1...8 keyed.
func makeFaultKernel(memory: ByteCount = .mib(64), nodes: Int = 1, thp: THPMode = .never,
                     encryption: EncryptionMode = .mktme, bugs: InjectedBugs = [],
                     policy: AllocatorPolicy = .integrated) throws -> Kernel {
    var mc = MachineConfig()
    mc.memory = memory
    mc.nodes = nodes
    mc.cacheSize = .mib(1)
    mc.encryption = encryption
    let machine = try Machine(config: mc)
    if encryption == .mktme {
        for k in UInt16(1)...8 {
            let key = (0..<16).map { UInt8(truncatingIfNeeded: Int(k) &* 31 &+ $0) }
            let tweak = (0..<16).map { UInt8(truncatingIfNeeded: Int(k) &* 7 &+ $0 &* 3) }
            _ = machine.keyTable.program(KeyID(k), .setKeyDirect(dataKey: key, tweakKey: tweak))
        }
    }
    var kc = KernelConfig()
    kc.thp = thp
    kc.bugs = bugs
    kc.policy = policy
    return try Kernel(machine: machine, config: kc)
}

/// Inserts an anonymous (or file) VMA directly into the task's mm and returns it.
@discardableResult
func addVMA(_ task: TaskStruct, _ start: UInt64, _ length: UInt64, _ flags: VMFlags, keyid: KeyID = .tme,
            file: MappedFile? = nil, pgoff: UInt64? = nil) -> VMA {
    var f = flags
    if f.contains(.read) { f.insert(.mayRead) }
    if f.contains(.write) { f.insert(.mayWrite) }
    if f.contains(.exec) { f.insert(.mayExec) }
    f.insert([.mayRead, .mayWrite, .mayExec])
    if f.contains(.shared) { f.insert(.mayShare) }
    let vma = VMA(start: VirtAddr(start), end: VirtAddr(start + length),
                  pgoff: pgoff ?? (file == nil ? start >> pageShift : 0), flags: f,
                  pageProt: PageProt(vmFlags: f, keyid: keyid), file: file)
    task.mm.vmas.insert(vma)
    return vma
}

extension Kernel {
    /// The entry mapping `addr` (the PMD for a huge mapping), or nil.
    func entryForTest(_ task: TaskStruct, _ addr: UInt64) -> PTE? {
        let pt = task.mm.pageTable
        switch pt.walk(VirtAddr(addr)) {
        case .none: return nil
        case .huge(let ps): return pt[ps]
        case .pte(_, let s): return pt[s].isNone ? nil : pt[s]
        }
    }

    /// Bytes at `addr` or nil on a signal.
    func readForTest(_ task: TaskStruct, _ addr: UInt64, _ n: Int) -> [UInt8]? {
        if case .ok(let b) = memRead(task, VirtAddr(addr), n) { return b }
        return nil
    }

    /// Forks `parent`'s mm the way fork's dup_mmap does for the page tables (VMAs copied
    /// directly, the anon_vma shared; the VMA layer's own fork is tested elsewhere).
    func forkForTest(_ parent: TaskStruct) -> TaskStruct {
        let child = spawn()
        for vma in parent.mm.vmas {
            if vma.vmFlags.contains(.dontCopy) { continue }
            let c = VMA(start: vma.vmStart, end: vma.vmEnd, pgoff: vma.vmPgoff, flags: vma.vmFlags,
                        pageProt: vma.vmPageProt, file: vma.vmFile, memoryPolicy: vma.memoryPolicy)
            if !vma.vmFlags.contains(.wipeOnFork) {
                c.anonVMA = vma.anonVMA
                c.anonVMAChain = vma.anonVMAChain
            }
            c.vmOps = vma.vmOps
            child.mm.vmas.insert(c)
            copyPageRange(dst: child.mm, src: parent.mm, dstVMA: c, srcVMA: vma)
        }
        child.pkru = parent.pkru
        return child
    }
}

let testBase: UInt64 = 0x7f00_0000_0000
