// struct vm_area_struct and its flags: one contiguous range of an address space with
// uniform flags, protection, backing and KeyID.
//
// Invariants: vmStart < vmEnd, both page aligned; vmPgoff is in pages (for anonymous
// VMAs it is vmStart >> PAGE_SHIFT at mmap and is kept when mremap moves the VMA);
// the VMA's KeyID lives in vmPageProt (as the MKTME series kept it in the top bits of
// vm_page_prot), so `keyid` is derived, never stored twice.
import KeyMMBase
import KeyMMHardware

/// vm_flags, with the values of include/linux/mm.h (x86-64).
public struct VMFlags: OptionSet, Hashable, Sendable {
    public var rawValue: UInt64
    @inlinable public init(rawValue: UInt64) { self.rawValue = rawValue }

    public static let read = VMFlags(rawValue: 0x0000_0001)
    public static let write = VMFlags(rawValue: 0x0000_0002)
    public static let exec = VMFlags(rawValue: 0x0000_0004)
    public static let shared = VMFlags(rawValue: 0x0000_0008)
    public static let mayRead = VMFlags(rawValue: 0x0000_0010)
    public static let mayWrite = VMFlags(rawValue: 0x0000_0020)
    public static let mayExec = VMFlags(rawValue: 0x0000_0040)
    public static let mayShare = VMFlags(rawValue: 0x0000_0080)
    public static let growsDown = VMFlags(rawValue: 0x0000_0100)
    public static let uffdMissing = VMFlags(rawValue: 0x0000_0200)
    public static let pfnMap = VMFlags(rawValue: 0x0000_0400)
    /// VM_MAYBE_GUARD: guard regions may have been installed (MADV_GUARD_INSTALL); sticky.
    public static let maybeGuard = VMFlags(rawValue: 0x0000_0800)
    public static let uffdWP = VMFlags(rawValue: 0x0000_1000)
    public static let locked = VMFlags(rawValue: 0x0000_2000)
    public static let io = VMFlags(rawValue: 0x0000_4000)
    public static let seqRead = VMFlags(rawValue: 0x0000_8000)
    public static let randRead = VMFlags(rawValue: 0x0001_0000)
    public static let dontCopy = VMFlags(rawValue: 0x0002_0000)
    public static let dontExpand = VMFlags(rawValue: 0x0004_0000)
    public static let lockOnFault = VMFlags(rawValue: 0x0008_0000)
    public static let account = VMFlags(rawValue: 0x0010_0000)
    public static let noReserve = VMFlags(rawValue: 0x0020_0000)
    public static let hugeTLB = VMFlags(rawValue: 0x0040_0000)
    public static let sync = VMFlags(rawValue: 0x0080_0000)
    public static let archSpecific1 = VMFlags(rawValue: 0x0100_0000)   // x86: VM_PAT
    public static let wipeOnFork = VMFlags(rawValue: 0x0200_0000)
    public static let dontDump = VMFlags(rawValue: 0x0400_0000)
    public static let softDirty = VMFlags(rawValue: 0x0800_0000)
    public static let mixedMap = VMFlags(rawValue: 0x1000_0000)
    public static let hugePage = VMFlags(rawValue: 0x2000_0000)
    public static let noHugePage = VMFlags(rawValue: 0x4000_0000)
    public static let mergeable = VMFlags(rawValue: 0x8000_0000)
    // Protection-key bits (VM_PKEY_BIT0..3 = VM_HIGH_ARCH_0..3).
    public static let pkeyMask = VMFlags(rawValue: 0xF_0000_0000)
    public static let pkeyShift: UInt64 = 32
    /// VM_SEALED (mseal, bit 42 since Linux 6.17).
    public static let sealed = VMFlags(rawValue: 1 << 42)

    /// VM_STICKY: flags that do not prevent a merge and that the merged VMA keeps if any of
    /// the merged VMAs had them (soft-dirty, maybe-guard).
    public static let sticky: VMFlags = [.softDirty, .maybeGuard]

    /// VM_SPECIAL: never merged, never expanded by mremap.
    public static let special: VMFlags = [.io, .dontExpand, .pfnMap, .mixedMap]
    /// VM_LOCKED_MASK.
    public static let lockedMask: VMFlags = [.locked, .lockOnFault]

    /// The protection key stored in the pkey bits.
    @inlinable public var pkey: Int { Int((rawValue & VMFlags.pkeyMask.rawValue) >> VMFlags.pkeyShift) }
    @inlinable public func with(pkey: Int) -> VMFlags {
        VMFlags(rawValue: (rawValue & ~VMFlags.pkeyMask.rawValue) | (UInt64(pkey & 0xF) << VMFlags.pkeyShift))
    }
    /// calc_vm_prot_bits without arch bits.
    public init(prot: Prot) {
        var f: VMFlags = []
        if prot.contains(.read) { f.insert(.read) }
        if prot.contains(.write) { f.insert(.write) }
        if prot.contains(.exec) { f.insert(.exec) }
        self = f
    }
}

/// A file that can be mapped: an inode of the model's page cache.
public final class MappedFile: Hashable {
    public let path: String
    /// The file operations of a character-device node (/dev/sgx_enclave); nil for regular files.
    /// Weak: the kernel owns its drivers, and a file a leftover VMA still names must not keep a
    /// driver (and through it the machine) alive after the kernel is gone.
    package weak var charDevice: CharDeviceOps?
    public let inode: UInt64
    public let device: (major: UInt32, minor: UInt32)
    public var size: UInt64
    /// A shmem inode (shared anonymous memory: "/dev/zero (deleted)"); no write-back.
    public var isShmem: Bool = false
    /// A memfd (mm/Memfd.swift): a shmem inode an fd can reach, so its pages outlive its mappings.
    public var isMemfd: Bool = false
    /// VMAs mapping this file (the i_mmap count); a shmem inode dies with its last one.
    public internal(set) var mapCount: Int = 0
    public init(path: String, inode: UInt64, device: (major: UInt32, minor: UInt32) = (0, 0), size: UInt64) {
        self.path = path
        self.inode = inode
        self.device = device
        self.size = size
    }
    public static func == (a: MappedFile, b: MappedFile) -> Bool { a === b }
    public func hash(into h: inout Hasher) { h.combine(ObjectIdentifier(self)) }
}

/// struct anon_vma: the reverse-mapping root shared by a process's anonymous VMAs and
/// their forked copies. `degree` counts the VMAs and child anon_vmas pointing at it,
/// so "singular chain" and "can be reused" decisions are the kernel's.
public final class AnonVMA {
    public let id: UInt64
    public let root: AnonVMA?
    public let parent: AnonVMA?
    public internal(set) var degree: Int = 0
    /// num_children: child anon_vmas (forks) whose parent is this one; a new root counts
    /// its self-parent link (1). (vm-core, mm/AnonVMA.swift)
    public internal(set) var numChildren: Int = 0
    /// num_active_vmas: VMAs whose `anonVMA` is this one.
    public internal(set) var numActiveVMAs: Int = 0
    /// anon_vma_chain links pointing here (the size of the kernel's rb_root interval tree).
    public internal(set) var chainLinks: Int = 0
    public init(id: UInt64, parent: AnonVMA?) {
        self.id = id
        self.parent = parent
        self.root = parent.map { $0.root ?? $0 }
    }
}

/// vm_operations_struct: hooks a special mapping (vvar, an SGX enclave, a driver) plugs in.
/// A VMA whose operations have a close hook is never removed by a merge.
public protocol VMOperations: AnyObject {
    /// Name shown in /proc/PID/maps for mappings without a file (e.g. "[vvar]").
    var name: String? { get }
    var hasClose: Bool { get }
    func open(_ vma: VMA)
    func close(_ vma: VMA)
    /// Veto a split at `address` (vm_ops->may_split): return an errno to refuse.
    func maySplit(_ vma: VMA, at address: VirtAddr) -> Errno?
    /// Veto an mprotect (vm_ops->mprotect): return an errno to refuse.
    func mprotect(_ vma: VMA, start: VirtAddr, end: VirtAddr, newFlags: VMFlags) -> Errno?
    /// vm_ops->open / ->close with the VMA's mm (vma->vm_mm); the defaults call the forms without it.
    func open(_ vma: VMA, mm: MM)
    func close(_ vma: VMA, mm: MM)
}

public extension VMOperations {
    var name: String? { nil }
    var hasClose: Bool { false }
    func open(_ vma: VMA) {}
    func close(_ vma: VMA) {}
    func open(_ vma: VMA, mm: MM) { open(vma) }
    func close(_ vma: VMA, mm: MM) { close(vma) }
    func maySplit(_ vma: VMA, at address: VirtAddr) -> Errno? { nil }
    func mprotect(_ vma: VMA, start: VirtAddr, end: VirtAddr, newFlags: VMFlags) -> Errno? { nil }
}

/// struct vm_area_struct.
public final class VMA {
    // Field order is the memory layout: what lookups and merge checks read (range, flags,
    // file, anon_vma, then prot/KeyID, policy, name, ops) fills the first two cache lines.
    // Fields with invariants are set only inside the kernel: the range (and pgoff) while the
    // VMA is in the tree only through `MM.adjust` / split / merge; the flags with the mm's
    // vm_stat accounting; the KeyID (vm_page_prot) with its KeyID reference; the anon_vma
    // links with their degree counts.
    public internal(set) var vmStart: VirtAddr
    public internal(set) var vmEnd: VirtAddr
    /// Offset in pages into the file, or vmStart >> PAGE_SHIFT for anonymous memory.
    public internal(set) var vmPgoff: UInt64
    public internal(set) var vmFlags: VMFlags
    public var vmFile: MappedFile?
    /// Which open of `vmFile` the mapping came from (the struct file pointer's identity;
    /// 0 for anonymous memory and for shmem files, which are unique per mapping anyway).
    public var fileOpenID: UInt64 = 0
    public internal(set) var anonVMA: AnonVMA?
    /// The protection bits its PTEs are built from, KeyID included.
    public internal(set) var vmPageProt: PageProt
    /// NUMA memory policy (mbind); VMAs with different policies never merge.
    public var memoryPolicy: MemoryPolicy
    /// anon_vma_name (prctl PR_SET_VMA_ANON_NAME), shown as [anon:NAME].
    public var anonName: String?
    public var vmOps: VMOperations?
    /// anon_vma_chain: every anon_vma this VMA is linked to (own + ancestors' after fork).
    public internal(set) var anonVMAChain: [AnonVMA] = []

    public init(start: VirtAddr, end: VirtAddr, pgoff: UInt64, flags: VMFlags, pageProt: PageProt,
                file: MappedFile? = nil, memoryPolicy: MemoryPolicy = .default) {
        self.vmStart = start
        self.vmEnd = end
        self.vmPgoff = pgoff
        self.vmFlags = flags
        self.vmPageProt = pageProt
        self.vmFile = file
        self.memoryPolicy = memoryPolicy
    }

    @inlinable public var pages: UInt64 { vmEnd.distance(from: vmStart) >> pageShift }
    public var isAnonymous: Bool { vmFile == nil && vmOps == nil }
    /// vma_keyid(): the KeyID held in vm_page_prot.
    public var keyid: KeyID { vmPageProt.keyid }
    @inlinable public func contains(_ a: VirtAddr) -> Bool { vmStart <= a && a < vmEnd }
    /// linear_page_index(): the page index of `address` in the VMA's backing.
    @inlinable public func pageIndex(of address: VirtAddr) -> UInt64 {
        vmPgoff &+ (address.distance(from: vmStart) >> pageShift)
    }
}

/// A NUMA memory policy (set_mempolicy / mbind), reduced to what placement needs.
public struct MemoryPolicy: Hashable, Sendable {
    public enum Mode: Int, Sendable { case `default` = 0, preferred = 1, bind = 2, interleave = 3, local = 4 }
    public var mode: Mode
    public var nodes: [NodeID]
    public init(mode: Mode, nodes: [NodeID]) { self.mode = mode; self.nodes = nodes }
    public static let `default` = MemoryPolicy(mode: .default, nodes: [])
}
