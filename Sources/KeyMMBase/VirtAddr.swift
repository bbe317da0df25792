// Virtual addresses and protections as user space and the mm see them.
//
// Invariants: a VirtAddr is a user address on x86-64 with 4-level paging
// (below `userAddressLimit`, TASK_SIZE_MAX); page arithmetic never wraps silently.

/// Top of the user address space with 4-level paging (TASK_SIZE_MAX = 2^47 - 4096).
public let userAddressLimit: UInt64 = (1 << 47) - UInt64(pageSize)

/// A user virtual address.
public struct VirtAddr: RawRepresentable, Hashable, Comparable, Sendable, CustomStringConvertible {
    public var rawValue: UInt64
    @inlinable public init(rawValue: UInt64) { self.rawValue = rawValue }
    @inlinable public init(_ raw: UInt64) { self.rawValue = raw }
    @inlinable public static func < (a: VirtAddr, b: VirtAddr) -> Bool { a.rawValue < b.rawValue }
    @inlinable public var isPageAligned: Bool { rawValue & UInt64(pageSize - 1) == 0 }
    /// Round down to a page boundary.
    @inlinable public var pageDown: VirtAddr { VirtAddr(rawValue & ~UInt64(pageSize - 1)) }
    /// Virtual page number (address >> PAGE_SHIFT).
    @inlinable public var pageNumber: UInt64 { rawValue >> pageShift }
    @inlinable public var pageOffset: Int { Int(rawValue & UInt64(pageSize - 1)) }
    @inlinable public func advanced(by bytes: UInt64) -> VirtAddr { VirtAddr(rawValue &+ bytes) }
    /// Bytes from `other` up to `self` (self >= other).
    @inlinable public func distance(from other: VirtAddr) -> UInt64 { rawValue &- other.rawValue }
    public var description: String { "0x" + String(rawValue, radix: 16) }
}

/// Rounds a length up to whole pages; nil on overflow (the kernel's PAGE_ALIGN check).
@inlinable public func pageAlignUp(_ length: UInt64) -> UInt64? {
    let (v, o) = length.addingReportingOverflow(UInt64(pageSize - 1))
    return o ? nil : v & ~UInt64(pageSize - 1)
}

/// mmap/mprotect protection bits (PROT_*), with Linux's values.
public struct Prot: OptionSet, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt32
    @inlinable public init(rawValue: UInt32) { self.rawValue = rawValue }
    public static let none: Prot = []
    public static let read = Prot(rawValue: 0x1)
    public static let write = Prot(rawValue: 0x2)
    public static let exec = Prot(rawValue: 0x4)
    public static let sem = Prot(rawValue: 0x8)
    public static let growsDown = Prot(rawValue: 0x0100_0000)
    public static let growsUp = Prot(rawValue: 0x0200_0000)
    public var description: String {
        if isEmpty { return "PROT_NONE" }
        var parts: [String] = []
        if contains(.read) { parts.append("PROT_READ") }
        if contains(.write) { parts.append("PROT_WRITE") }
        if contains(.exec) { parts.append("PROT_EXEC") }
        if contains(.sem) { parts.append("PROT_SEM") }
        if contains(.growsDown) { parts.append("PROT_GROWSDOWN") }
        if contains(.growsUp) { parts.append("PROT_GROWSUP") }
        let rest = rawValue & ~(Prot.read.rawValue | Prot.write.rawValue | Prot.exec.rawValue | Prot.sem.rawValue | Prot.growsDown.rawValue | Prot.growsUp.rawValue)
        if rest != 0 { parts.append("0x" + String(rest, radix: 16)) }
        return parts.joined(separator: "|")
    }
}
