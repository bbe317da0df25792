// PhysicalMemory: the DRAM chips. Raw bytes as they sit in memory (ciphertext for encrypted
// lines), no cache, no KeyIDs. Backed by one host reservation
// mmap(MAP_PRIVATE|MAP_ANONYMOUS|MAP_NORESERVE) so the host kernel does the sparseness: a frame
// costs host memory only once something is written to it, and never-written DRAM reads as zeros.
//
// Invariants: `base` spans exactly `size` bytes for the object's lifetime; accesses outside
// [0, size) never touch host memory (reads see all-ones like an unbacked bus, writes are dropped).
import KeyMMBase
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A failure to build the hardware (host resources).
public struct HardwareError: Error, CustomStringConvertible, Sendable {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Modeled DRAM.
/// (`@safe`: `read`/`write` check bounds; `base` and `pointer(_:)` hand out unsafe pointers, which
/// their callers mark.)
@safe public final class PhysicalMemory {
    /// Bytes of DRAM.
    public let size: Int
    /// The host reservation: byte `pa` of DRAM lives at `base + pa`.
    let storage: OwnedBuffer<UInt8>
    /// Start of the host reservation (`storage`'s first byte).
    public let base: UnsafeMutableRawPointer

    /// Reserves `size` bytes of sparse host memory.
    public init(size: ByteCount) throws(HardwareError) {
        guard size.rawValue > 0, size.rawValue <= UInt64(Int.max) else { throw HardwareError("bad DRAM size \(size)") }
        self.size = Int(size.rawValue)
        // One guard page on each side (PROT_NONE) keeps the host from merging this mapping with a
        // neighbouring anonymous one, so its smaps entry measures exactly the DRAM; no THP, so one
        // written frame costs one host page, not a 2 MiB huge page.
        guard let s = OwnedBuffer<UInt8>(mappingZeroed: Int(size.rawValue), hugePages: .noHuge, guardPages: true) else {
            throw HardwareError("cannot reserve \(size) of host address space for DRAM (mmap errno \(errno))")
        }
        unsafe base = unsafe s.raw()
        storage = s
    }

    /// Frames of DRAM.
    public var frameCount: Int { size >> Int(pageShift) }

    /// True when `[pa, pa + count)` lies inside DRAM.
    @inlinable public func contains(_ pa: PhysAddr, count: Int) -> Bool {
        count >= 0 && pa.rawValue <= UInt64(size) && UInt64(count) <= UInt64(size) - pa.rawValue
    }

    /// Host pointer to DRAM byte `pa` (unchecked: callers check `contains`).
    @inlinable public func pointer(_ pa: PhysAddr) -> UnsafeMutableRawPointer {
        unsafe base + Int(truncatingIfNeeded: pa.rawValue)
    }

    /// Raw bytes; outside DRAM reads 0xFF.
    public func read(_ pa: PhysAddr, into out: UnsafeMutableRawBufferPointer) {
        guard let dst = out.baseAddress, out.count > 0 else { return }
        if contains(pa, count: out.count) {
            unsafe dst.copyMemory(from: pointer(pa), byteCount: out.count)
            return
        }
        for i in 0..<out.count {
            let a = pa.rawValue &+ UInt64(i)
            unsafe dst.storeBytes(of: a < UInt64(size) ? base.load(fromByteOffset: Int(a), as: UInt8.self) : 0xFF, toByteOffset: i, as: UInt8.self)
        }
    }

    /// Raw bytes as an array; outside DRAM reads 0xFF.
    public func read(_ pa: PhysAddr, count: Int) -> [UInt8] {
        guard count > 0 else { return [] }
        return unsafe [UInt8](unsafeUninitializedCapacity: count) { buf, n in
            unsafe read(pa, into: UnsafeMutableRawBufferPointer(buf))
            n = count
        }
    }

    /// Raw store (the engine's output, or test set-up); bytes outside DRAM are dropped.
    public func write(_ pa: PhysAddr, from src: UnsafeRawBufferPointer) {
        guard let s = src.baseAddress, src.count > 0 else { return }
        if contains(pa, count: src.count) {
            unsafe pointer(pa).copyMemory(from: s, byteCount: src.count)
            return
        }
        for i in 0..<src.count {
            let a = pa.rawValue &+ UInt64(i)
            if a < UInt64(size) { unsafe base.storeBytes(of: s.load(fromByteOffset: i, as: UInt8.self), toByteOffset: Int(a), as: UInt8.self) }
        }
    }

    /// Returns the frames' host memory to the host (they read as zeros again). Test/bench helper.
    public func discard(_ pfns: Range<PFN>) {
        let lo = min(pfns.lowerBound.index << Int(pageShift), size)
        let hi = min(pfns.upperBound.index << Int(pageShift), size)
        guard hi > lo else { return }
        _ = unsafe madvise(base + lo, hi - lo, MADV_DONTNEED)
    }

    /// Host bytes resident for the DRAM reservation (from /proc/self/smaps on Linux; nil elsewhere).
    public func residentBytes() -> Int? { unsafe HostMemory.residentBytes(of: UnsafeRawPointer(base)) }
}

/// Host memory measurements (resident set), for docs and the bench.
public enum HostMemory {
    /// Resident set size of this process in bytes (VmRSS), or nil.
    public static func processResidentBytes() -> Int? { statusBytes("VmRSS:") }

    /// Bytes of host page tables of this process (VmPTE), or nil.
    public static func pageTableBytes() -> Int? { statusBytes("VmPTE:") }

    /// A "kB" field of /proc/self/status, in bytes.
    static func statusBytes(_ field: String) -> Int? {
        guard let text = readText("/proc/self/status") else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix(field) {
            let parts = line.split(separator: " ", omittingEmptySubsequences: true)
            if parts.count >= 2, let kb = Int(parts[1]) { return kb * 1024 }
        }
        return nil
    }

    /// Resident bytes of the host mapping that starts at `start` (smaps "Rss:"), or nil.
    public static func residentBytes(of start: UnsafeRawPointer) -> Int? {
        guard let text = readText("/proc/self/smaps") else { return nil }
        let want = UInt(bitPattern: start)
        var inside = false
        for line in text.split(separator: "\n") {
            if let dash = line.firstIndex(of: "-"), let lo = UInt(line[line.startIndex..<dash], radix: 16),
               line[line.index(after: dash)...].first?.isHexDigit == true,
               !line.hasPrefix("Rss") {
                inside = (lo == want)
                continue
            }
            if inside, line.hasPrefix("Rss:") {
                let parts = line.split(separator: " ", omittingEmptySubsequences: true)
                if parts.count >= 2, let kb = Int(parts[1]) { return kb * 1024 }
            }
        }
        return nil
    }

    static func readText(_ path: String) -> String? {
        guard let f = unsafe fopen(path, "r") else { return nil }
        defer { unsafe fclose(f) }
        var out = [UInt8]()
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = unsafe buf.withUnsafeMutableBytes { unsafe fread($0.baseAddress, 1, $0.count, f) }
            if n <= 0 { break }
            out.append(contentsOf: buf[0..<n])
        }
        return String(decoding: out, as: UTF8.self)
    }
}
