// OwnedBuffer: the one room where KeyMM allocates and frees raw memory. A fixed-size buffer of
// `count` bitwise-copyable elements that its owner holds (a `let` of a final class, or a local) and
// that frees itself exactly once, with the deallocator that matches how it was obtained:
//
// * heap:    `UnsafeMutablePointer.allocate` (64-byte aligned), freed with `deallocate`;
// * mapping: an anonymous host mapping (mmap MAP_PRIVATE|MAP_ANONYMOUS|MAP_NORESERVE, optionally
//            with PROT_NONE guard pages around it and a transparent-huge-page hint), freed with
//            `munmap` of the exact range mapped. Backed lazily by the host, reads as zeros.
//
// `lazilyZeroed` asks for a mapping and falls back to a zero-filled heap buffer when the host
// refuses one; `backing` records which it got, so the deinit can never munmap heap memory (the
// bug EncryptionEngine had) or free a mapping.
//
// Its owners: the hardware model's DRAM, cache, engine and clock storage, and the kernel's flat
// tables (page-table pool, buddy free areas and zones, per-KeyID lists, the TLB, the allocator's
// scratch page). Code outside reads and writes elements through the subscript (read and modified
// in place) and sees a pointer only for bulk copies and C calls, marked `unsafe` where it does.
//
// Element access is checked in debug builds (every test run) and unchecked in release builds
// (`subscript`, `pointer`): the hot paths of the hardware model index these buffers millions of
// times per second and keep their indices in range by construction (each owner's header states
// its invariants).
//
// Invariants: `base` is valid for `count` elements for the buffer's whole lifetime and is released
// once, in deinit, with the deallocator matching `backing`; elements are BitwiseCopyable, so
// nothing needs deinitializing; `grow` (heap buffers only) keeps the first `count` elements.
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Where an `OwnedBuffer`'s memory came from.
package enum OwnedBufferBacking: Sendable, Equatable {
    /// The Swift heap (allocate / deallocate).
    case heap
    /// An anonymous host mapping (mmap / munmap).
    case mapping
}

/// What an anonymous mapping should tell the host about transparent huge pages.
package enum HugePageAdvice: Sendable {
    /// Leave the host's default.
    case hostDefault
    /// MADV_HUGEPAGE: large randomly-accessed arrays (fewer host TLB misses).
    case huge
    /// MADV_NOHUGEPAGE: sparse storage where one written page must cost exactly one host page.
    case noHuge
}

/// A fixed-size, owned, unchecked buffer of `count` elements.
@safe @usableFromInline
package struct OwnedBuffer<Element: BitwiseCopyable>: ~Copyable {
    /// First element. Valid for `count` elements until the buffer dies (or grows).
    @usableFromInline package private(set) var base: UnsafeMutablePointer<Element>
    /// Elements in the buffer.
    @usableFromInline package private(set) var count: Int
    /// How the memory was obtained (and will be released).
    package let backing: OwnedBufferBacking
    /// For a mapping: the start and length of the whole host range (guard pages included).
    private let mappingStart: UnsafeMutableRawPointer?
    private let mappingBytes: Int

    /// A heap buffer of `count` elements whose bytes are all zero (the element types used here
    /// are plain integers and structs of them, for which all-zero bytes are a value).
    package init(zeroedCount count: Int) {
        let n = max(count, 1)
        let bytes = n * MemoryLayout<Element>.stride
        let raw = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: max(MemoryLayout<Element>.alignment, 64))
        unsafe raw.initializeMemory(as: UInt8.self, repeating: 0, count: bytes)
        unsafe base = unsafe raw.bindMemory(to: Element.self, capacity: n)
        self.count = count
        backing = .heap
        unsafe mappingStart = nil
        mappingBytes = 0
    }

    /// A heap buffer of `count` elements, each set to `value`.
    package init(repeating value: Element, count: Int) {
        precondition(count >= 0, "OwnedBuffer: negative count")
        self.init(zeroedCount: count)
        unsafe base.update(repeating: value, count: max(count, 1))
    }

    /// A heap buffer holding the elements of `array`, in order.
    package init(_ array: [Element]) {
        self.init(zeroedCount: array.count)
        for i in 0..<array.count { unsafe base[i] = array[i] }
    }

    /// An anonymous host mapping of `count` elements (all-zero bytes, backed lazily), or nil when
    /// the host refuses it. `guardPages` puts a PROT_NONE host page on each side (the host never
    /// merges the mapping with a neighbouring one, so its smaps entry is exactly this buffer).
    /// `refuse` (tests) behaves as if mmap had failed.
    package init?(mappingZeroed count: Int, hugePages: HugePageAdvice = .hostDefault, guardPages: Bool = false,
                  refuse: Bool = false) {
        guard !refuse, count > 0 else { return nil }
        let bytes = count * MemoryLayout<Element>.stride
        let guardBytes = guardPages ? Int(getpagesize()) : 0
        let total = bytes + 2 * guardBytes
        let flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE
        let prot = guardPages ? PROT_NONE : PROT_READ | PROT_WRITE
        guard let r = unsafe mmap(nil, total, prot, flags, -1, 0), unsafe r != MAP_FAILED else { return nil }
        let p = unsafe r + guardBytes
        if guardPages {
            guard unsafe mprotect(p, bytes, PROT_READ | PROT_WRITE) == 0 else {
                unsafe munmap(r, total)
                return nil
            }
        }
        #if os(Linux)
        switch hugePages {
        case .hostDefault: break
        case .huge: _ = unsafe madvise(p, bytes, MADV_HUGEPAGE)
        case .noHuge: _ = unsafe madvise(p, bytes, MADV_NOHUGEPAGE)
        }
        #endif
        unsafe base = unsafe p.bindMemory(to: Element.self, capacity: count)
        self.count = count
        backing = .mapping
        unsafe mappingStart = unsafe r
        mappingBytes = total
    }

    /// A zero-filled buffer that costs host memory only where it is written: a mapping, or, when
    /// the host refuses one (or `refuseMapping`, for tests), a zero-filled heap buffer.
    package static func lazilyZeroed(count: Int, hugePages: HugePageAdvice = .hostDefault,
                                     refuseMapping: Bool = false) -> OwnedBuffer<Element> {
        if let m = OwnedBuffer(mappingZeroed: count, hugePages: hugePages, refuse: refuseMapping) { return m }
        return OwnedBuffer(zeroedCount: count)
    }

    deinit {
        switch backing {
        case .heap: unsafe base.deallocate()
        case .mapping: _ = unsafe munmap(mappingStart, mappingBytes)
        }
    }

    /// Element `i`, read and modified in place (checked in debug builds only).
    @inlinable @inline(__always)
    package subscript(i: Int) -> Element {
        get { assert(i >= 0 && i < count, "OwnedBuffer: index out of range"); return unsafe base[i] }
        nonmutating _modify {
            assert(i >= 0 && i < count, "OwnedBuffer: index out of range")
            yield unsafe &base[i]
        }
    }

    /// Sets `n` elements from `start` (to the end by default) to `value`.
    @inlinable package func fill(_ value: Element, from start: Int = 0, count n: Int? = nil) {
        let n = n ?? (count - start)
        precondition(start >= 0 && n >= 0 && start + n <= count, "OwnedBuffer: range out of bounds")
        unsafe (base + start).update(repeating: value, count: n)
    }

    /// The storage as raw bytes for a call that takes a buffer (a scratch page handed to the
    /// machine's read/write); the pointer must not escape `body`.
    @unsafe @inlinable package func withUnsafeMutableBytes<R>(_ body: (UnsafeMutableRawBufferPointer) throws -> R) rethrows -> R {
        try unsafe body(UnsafeMutableRawBufferPointer(start: base, count: count * MemoryLayout<Element>.stride))
    }

    /// Grows a heap buffer to `newCount` elements (more than `count`), the new ones set to `value`.
    package mutating func grow(to newCount: Int, filling value: Element) {
        precondition(backing == .heap, "OwnedBuffer: only heap buffers grow")
        precondition(newCount > count, "OwnedBuffer: grow must add elements")
        let raw = UnsafeMutableRawPointer.allocate(byteCount: newCount * MemoryLayout<Element>.stride,
                                                   alignment: max(MemoryLayout<Element>.alignment, 64))
        let b = unsafe raw.bindMemory(to: Element.self, capacity: newCount)
        unsafe b.initialize(from: base, count: count)
        unsafe (b + count).initialize(repeating: value, count: newCount - count)
        unsafe base.deallocate()
        unsafe base = b
        count = newCount
    }

    /// Pointer to element `i` (for bulk copies and C calls; valid while the buffer lives).
    @unsafe @inlinable @inline(__always)
    package func pointer(_ i: Int = 0) -> UnsafeMutablePointer<Element> { unsafe base + i }

    /// Raw pointer to element `i`.
    @unsafe @inlinable @inline(__always)
    package func raw(_ i: Int = 0) -> UnsafeMutableRawPointer { unsafe UnsafeMutableRawPointer(base + i) }

    /// Bytes of memory the buffer holds.
    package var byteCount: Int { count * MemoryLayout<Element>.stride }

    /// Faults in (write intent) every host page of the buffer without changing its contents:
    /// MADV_POPULATE_WRITE (Linux 5.14), or a read-and-store-back of one byte per host page.
    /// Bench set-up uses it so a measurement sees the simulator's steady state, not the host's
    /// first touch of lazily-backed storage.
    package func populate() {
        let bytes = byteCount
        guard bytes > 0 else { return }
        let p = unsafe UnsafeMutableRawPointer(base)
        #if os(Linux)
        if unsafe madvise(p, bytes, 23 /* MADV_POPULATE_WRITE */) == 0 { return }
        #endif
        let step = max(Int(getpagesize()), 1)
        var o = 0
        while o < bytes {
            let v = unsafe p.load(fromByteOffset: o, as: UInt8.self)
            unsafe p.storeBytes(of: v, toByteOffset: o, as: UInt8.self)
            o += step
        }
    }

    /// Sets every element's bytes to zero.
    package func zero() {
        unsafe UnsafeMutableRawPointer(base).initializeMemory(as: UInt8.self, repeating: 0, count: byteCount)
    }
}
