// The argument types of the memory system calls, with Linux x86-64 values: mmap flags,
// madvise advice, mremap flags, mlock2/mlockall flags, open flags.
//
// Invariant: every rawValue is the number user space passes, so unknown bits survive into
// the syscall and are rejected (or ignored) exactly where the kernel does.
import KeyMMBase

/// mmap(2) flags (MAP_*), include/uapi/asm-generic/mman*.h and x86.
public struct MapFlags: OptionSet, Hashable, Sendable {
    public var rawValue: UInt32
    @inlinable public init(rawValue: UInt32) { self.rawValue = rawValue }
    public static let shared = MapFlags(rawValue: 0x01)
    public static let `private` = MapFlags(rawValue: 0x02)
    /// MAP_SHARED_VALIDATE (a map type, not a bit: shared | private).
    public static let sharedValidate = MapFlags(rawValue: 0x03)
    /// MAP_DROPPABLE (map type 0x08).
    public static let droppable = MapFlags(rawValue: 0x08)
    public static let typeMask = MapFlags(rawValue: 0x0f)
    public static let fixed = MapFlags(rawValue: 0x10)
    public static let anonymous = MapFlags(rawValue: 0x20)
    public static let map32Bit = MapFlags(rawValue: 0x40)
    public static let growsDown = MapFlags(rawValue: 0x0100)
    public static let denyWrite = MapFlags(rawValue: 0x0800)
    public static let executable = MapFlags(rawValue: 0x1000)
    public static let locked = MapFlags(rawValue: 0x2000)
    public static let noReserve = MapFlags(rawValue: 0x4000)
    public static let populate = MapFlags(rawValue: 0x8000)
    public static let nonBlock = MapFlags(rawValue: 0x10000)
    public static let stack = MapFlags(rawValue: 0x20000)
    public static let hugeTLB = MapFlags(rawValue: 0x40000)
    public static let sync = MapFlags(rawValue: 0x80000)
    public static let fixedNoReplace = MapFlags(rawValue: 0x100000)
    public static let uninitialized = MapFlags(rawValue: 0x4000000)

    /// The map type (MAP_TYPE bits).
    @inlinable public var mapType: UInt32 { rawValue & 0x0f }
    /// MAP_ABOVE4G (x86).
    public static let above4G = MapFlags(rawValue: 0x80)
    /// MAP_HUGE_2MB | MAP_HUGE_1GB (the x86 huge page size field values, bits 26..30).
    public static let hugeSizes = MapFlags(rawValue: 0x7C00_0000)
    /// LEGACY_MAP_MASK (x86): flags MAP_SHARED silently accepts and MAP_SHARED_VALIDATE checks.
    public static let legacyMask: MapFlags = [.shared, .private, .fixed, .anonymous, .denyWrite, .executable,
                                               .uninitialized, .growsDown, .locked, .noReserve, .populate,
                                               .nonBlock, .stack, .hugeTLB, .map32Bit, .above4G, .hugeSizes]
}

/// madvise(2) advice (MADV_*), with Linux's numbers. Unknown values are representable so
/// the syscall can reject them with EINVAL.
public struct MAdvice: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: Int32
    @inlinable public init(rawValue: Int32) { self.rawValue = rawValue }
    @inlinable public init(_ raw: Int32) { self.rawValue = raw }
    public static let normal = MAdvice(0)
    public static let random = MAdvice(1)
    public static let sequential = MAdvice(2)
    public static let willNeed = MAdvice(3)
    public static let dontNeed = MAdvice(4)
    public static let free = MAdvice(8)
    public static let remove = MAdvice(9)
    public static let dontFork = MAdvice(10)
    public static let doFork = MAdvice(11)
    public static let mergeable = MAdvice(12)
    public static let unmergeable = MAdvice(13)
    public static let hugePage = MAdvice(14)
    public static let noHugePage = MAdvice(15)
    public static let dontDump = MAdvice(16)
    public static let doDump = MAdvice(17)
    public static let wipeOnFork = MAdvice(18)
    public static let keepOnFork = MAdvice(19)
    public static let cold = MAdvice(20)
    public static let pageOut = MAdvice(21)
    public static let populateRead = MAdvice(22)
    public static let populateWrite = MAdvice(23)
    public static let dontNeedLocked = MAdvice(24)
    public static let collapse = MAdvice(25)
    public static let hwPoison = MAdvice(100)
    public static let softOffline = MAdvice(101)
    public static let guardInstall = MAdvice(102)
    public static let guardRemove = MAdvice(103)

    static let names: [Int32: String] = [
        0: "MADV_NORMAL", 1: "MADV_RANDOM", 2: "MADV_SEQUENTIAL", 3: "MADV_WILLNEED", 4: "MADV_DONTNEED",
        8: "MADV_FREE", 9: "MADV_REMOVE", 10: "MADV_DONTFORK", 11: "MADV_DOFORK", 12: "MADV_MERGEABLE",
        13: "MADV_UNMERGEABLE", 14: "MADV_HUGEPAGE", 15: "MADV_NOHUGEPAGE", 16: "MADV_DONTDUMP",
        17: "MADV_DODUMP", 18: "MADV_WIPEONFORK", 19: "MADV_KEEPONFORK", 20: "MADV_COLD", 21: "MADV_PAGEOUT",
        22: "MADV_POPULATE_READ", 23: "MADV_POPULATE_WRITE", 24: "MADV_DONTNEED_LOCKED", 25: "MADV_COLLAPSE",
        100: "MADV_HWPOISON", 101: "MADV_SOFT_OFFLINE", 102: "MADV_GUARD_INSTALL", 103: "MADV_GUARD_REMOVE",
    ]
    /// The constant's name, or the number.
    public var description: String { MAdvice.names[rawValue] ?? String(rawValue) }
    /// Looks a constant up by name (`MADV_DONTNEED`).
    public init?(name: String) {
        guard let e = MAdvice.names.first(where: { $0.value == name }) else { return nil }
        self.rawValue = e.key
    }
}

/// mremap(2) flags.
public struct MremapFlags: OptionSet, Hashable, Sendable {
    public var rawValue: UInt32
    @inlinable public init(rawValue: UInt32) { self.rawValue = rawValue }
    public static let mayMove = MremapFlags(rawValue: 1)
    public static let fixed = MremapFlags(rawValue: 2)
    public static let dontUnmap = MremapFlags(rawValue: 4)
}

/// mlock2(2) flags.
public struct MlockFlags: OptionSet, Hashable, Sendable {
    public var rawValue: UInt32
    @inlinable public init(rawValue: UInt32) { self.rawValue = rawValue }
    public static let onFault = MlockFlags(rawValue: 1)
}

/// mlockall(2) flags.
public struct MCLFlags: OptionSet, Hashable, Sendable {
    public var rawValue: UInt32
    @inlinable public init(rawValue: UInt32) { self.rawValue = rawValue }
    public static let current = MCLFlags(rawValue: 1)
    public static let future = MCLFlags(rawValue: 2)
    public static let onFault = MCLFlags(rawValue: 4)
}

/// open(2) flags the model understands (x86-64 values).
package struct OpenFlags: OptionSet, Hashable, Sendable {
    package var rawValue: Int32
    @inlinable package init(rawValue: Int32) { self.rawValue = rawValue }
    package static let readOnly: OpenFlags = []
    package static let writeOnly = OpenFlags(rawValue: 0o1)
    package static let readWrite = OpenFlags(rawValue: 0o2)
    package static let create = OpenFlags(rawValue: 0o100)
    package static let exclusive = OpenFlags(rawValue: 0o200)
    package static let truncate = OpenFlags(rawValue: 0o1000)
    package static let cloexec = OpenFlags(rawValue: 0o2000000)
    /// O_ACCMODE.
    @inlinable package var accessMode: Int32 { rawValue & 0o3 }
}

/// pkey access rights (PKEY_DISABLE_ACCESS / PKEY_DISABLE_WRITE).
package struct PkeyAccess: OptionSet, Hashable, Sendable {
    package var rawValue: UInt32
    @inlinable package init(rawValue: UInt32) { self.rawValue = rawValue }
    package static let disableAccess = PkeyAccess(rawValue: 1)
    package static let disableWrite = PkeyAccess(rawValue: 2)
    /// PKEY_ACCESS_MASK.
    package static let mask: PkeyAccess = [.disableAccess, .disableWrite]
}

extension VMFlags {
    /// VM_DROPPABLE (VM_HIGH_ARCH_BIT_8 on 64-bit): MAP_DROPPABLE mappings.
    public static let droppable = VMFlags(rawValue: 1 << 40)
}
