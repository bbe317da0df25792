import Foundation

// Units of the physical machine: physical addresses, page frame numbers, KeyIDs and
// allocation orders. Each is its own type so that a number never silently changes
// meaning across a module boundary (a PFN is not a PhysAddr, a KeyID is not an Int).
//
// Invariants: a PhysAddr never carries KeyID bits (those live only in page-table
// entries and in the cache's tags); PFN = PhysAddr >> pageShift.

/// Size of a base page (x86-64: 4 KiB).
public let pageShift: UInt64 = 12
/// Bytes in a base page.
public let pageSize: Int = 1 << 12
/// Bytes in a cache line, which is also the memory-encryption engine's data unit.
public let cacheLineSize: Int = 64
/// Cache lines in a base page.
public let linesPerPage: Int = pageSize / cacheLineSize
/// The largest buddy order (MAX_PAGE_ORDER): 2^10 pages = 4 MiB.
public let maxPageOrder: UInt8 = 10

/// A physical address, without KeyID bits.
public struct PhysAddr: RawRepresentable, Hashable, Comparable, Sendable, CustomStringConvertible {
    public var rawValue: UInt64
    @inlinable public init(rawValue: UInt64) { self.rawValue = rawValue }
    @inlinable public init(_ raw: UInt64) { self.rawValue = raw }
    @inlinable public static func < (a: PhysAddr, b: PhysAddr) -> Bool { a.rawValue < b.rawValue }
    /// The frame holding this address.
    @inlinable public var pfn: PFN { PFN(rawValue >> pageShift) }
    /// Offset inside the frame.
    @inlinable public var pageOffset: Int { Int(rawValue & UInt64(pageSize - 1)) }
    /// The address of the cache line holding this address.
    @inlinable public var lineAligned: PhysAddr { PhysAddr(rawValue & ~UInt64(cacheLineSize - 1)) }
    @inlinable public func advanced(by bytes: Int) -> PhysAddr { PhysAddr(rawValue &+ UInt64(bytes)) }
    public var description: String { "0x" + String(rawValue, radix: 16) }
}

/// A page frame number: a physical address shifted right by `pageShift`.
public struct PFN: RawRepresentable, Hashable, Comparable, Sendable, CustomStringConvertible {
    public var rawValue: UInt64
    @inlinable public init(rawValue: UInt64) { self.rawValue = rawValue }
    @inlinable public init(_ raw: UInt64) { self.rawValue = raw }
    @inlinable public static func < (a: PFN, b: PFN) -> Bool { a.rawValue < b.rawValue }
    /// The physical address of the frame's first byte.
    @inlinable public var physAddr: PhysAddr { PhysAddr(rawValue << pageShift) }
    @inlinable public func advanced(by frames: Int) -> PFN { PFN(UInt64(Int64(bitPattern: rawValue) &+ Int64(frames))) }
    /// Index for dense per-frame arrays.
    @inlinable public var index: Int { Int(truncatingIfNeeded: rawValue) }
    public var description: String { "pfn:0x" + String(rawValue, radix: 16) }
}

/// A hardware KeyID (MKTME/TDX), carried in the top physical-address bits of a PTE.
/// KeyID 0 is the boot-time TME key: "do not encrypt" from the OS's point of view.
public struct KeyID: RawRepresentable, Hashable, Comparable, Sendable, CustomStringConvertible {
    public var rawValue: UInt16
    @inlinable public init(rawValue: UInt16) { self.rawValue = rawValue }
    @inlinable public init(_ raw: UInt16) { self.rawValue = raw }
    @inlinable public static func < (a: KeyID, b: KeyID) -> Bool { a.rawValue < b.rawValue }
    /// The TME key (KeyID 0).
    public static let tme = KeyID(0)
    @inlinable public var isDefault: Bool { rawValue == 0 }
    /// Index for dense per-KeyID arrays.
    @inlinable public var index: Int { Int(rawValue) }
    public var description: String { "KeyID \(rawValue)" }
}

/// A buddy-allocator order: a block of 2^order base pages.
public struct PageOrder: RawRepresentable, Hashable, Comparable, Sendable, CustomStringConvertible {
    public var rawValue: UInt8
    @inlinable public init(rawValue: UInt8) { self.rawValue = rawValue }
    @inlinable public init(_ raw: UInt8) { self.rawValue = raw }
    @inlinable public static func < (a: PageOrder, b: PageOrder) -> Bool { a.rawValue < b.rawValue }
    public static let base = PageOrder(0)
    /// A PMD-sized transparent huge page (2 MiB).
    public static let pmd = PageOrder(9)
    public static let max = PageOrder(maxPageOrder)
    /// Base pages in a block of this order.
    @inlinable public var pages: Int { 1 << Int(rawValue) }
    @inlinable public var bytes: Int { pageSize << Int(rawValue) }
    public var description: String { "order \(rawValue)" }
}

/// A NUMA node id.
public struct NodeID: RawRepresentable, Hashable, Comparable, Sendable, CustomStringConvertible {
    public var rawValue: UInt8
    @inlinable public init(rawValue: UInt8) { self.rawValue = rawValue }
    @inlinable public init(_ raw: UInt8) { self.rawValue = raw }
    @inlinable public static func < (a: NodeID, b: NodeID) -> Bool { a.rawValue < b.rawValue }
    public var description: String { "node \(rawValue)" }
}

/// A size in bytes, as configuration states it (`memory=4G`, `cache=32M`).
public struct ByteCount: RawRepresentable, Hashable, Comparable, Sendable, CustomStringConvertible {
    public var rawValue: UInt64
    @inlinable public init(rawValue: UInt64) { self.rawValue = rawValue }
    @inlinable public init(_ raw: UInt64) { self.rawValue = raw }
    @inlinable public static func < (a: ByteCount, b: ByteCount) -> Bool { a.rawValue < b.rawValue }
    public static func kib(_ n: UInt64) -> ByteCount { ByteCount(n << 10) }
    public static func mib(_ n: UInt64) -> ByteCount { ByteCount(n << 20) }
    public static func gib(_ n: UInt64) -> ByteCount { ByteCount(n << 30) }

    /// Parses `4G`, `32M`, `512K`, `4096` (a suffix is a power of 1024; `B`/`iB` tolerated).
    public init?(parsing text: String) {
        var s = Substring(text.trimmingCharacters(in: .whitespaces))
        if s.hasSuffix("iB") || s.hasSuffix("ib") { s = s.dropLast(2) } else if s.hasSuffix("B") || s.hasSuffix("b") { s = s.dropLast() }
        var shift: UInt64 = 0
        if let last = s.last {
            switch last {
            case "K", "k": shift = 10
            case "M", "m": shift = 20
            case "G", "g": shift = 30
            case "T", "t": shift = 40
            default: break
            }
            if shift != 0 { s = s.dropLast() }
        }
        guard !s.isEmpty, let n = UInt64(s) else { return nil }
        let (v, overflow) = n.multipliedReportingOverflow(by: 1 << shift)
        guard !overflow else { return nil }
        self.rawValue = v
    }

    public var description: String {
        for (shift, unit) in [(40, "T"), (30, "G"), (20, "M"), (10, "K")] where rawValue != 0 && rawValue % (1 << UInt64(shift)) == 0 {
            return "\(rawValue >> UInt64(shift))\(unit)"
        }
        return "\(rawValue)"
    }
}
