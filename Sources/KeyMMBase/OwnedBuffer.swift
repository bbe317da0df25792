// OwnedBuffer: one heap buffer of plain (bitwise-copyable) elements, owned by exactly one value
// (noncopyable): allocated and initialized at init, freed at deinit. It is the room where the
// kernel's flat tables (page-table pool, buddy free areas and zones, per-KeyID lists, the TLB,
// page-metadata sections) keep their raw storage; code outside reads and writes elements through
// the bounds-checked subscript and never sees a pointer.
//
// Invariants: `count` elements are always initialized; the storage is freed exactly once (the
// owner's deinit); `grow` keeps the first `count` elements and fills the rest.

@safe @usableFromInline
package struct OwnedBuffer<Element: BitwiseCopyable>: ~Copyable {
    @usableFromInline var base: UnsafeMutablePointer<Element>
    /// Elements held.
    @usableFromInline package private(set) var count: Int

    /// `count` copies of `value` (a zero-length buffer still owns a one-element allocation).
    @inlinable package init(repeating value: Element, count: Int) {
        precondition(count >= 0, "OwnedBuffer: negative count")
        unsafe base = UnsafeMutablePointer<Element>.allocate(capacity: max(count, 1))
        unsafe base.initialize(repeating: value, count: max(count, 1))
        self.count = count
    }

    /// The elements of `array`, in order.
    @inlinable package init(_ array: [Element]) {
        unsafe base = UnsafeMutablePointer<Element>.allocate(capacity: max(array.count, 1))
        count = array.count
        for i in 0..<array.count { unsafe (base + i).initialize(to: array[i]) }
    }

    deinit { unsafe base.deallocate() }

    /// Element `i` (0 ..< count), read and updated in place.
    @inlinable package subscript(i: Int) -> Element {
        get {
            precondition(i >= 0 && i < count, "OwnedBuffer: index out of range")
            return unsafe base[i]
        }
        nonmutating _modify {
            precondition(i >= 0 && i < count, "OwnedBuffer: index out of range")
            yield unsafe &base[i]
        }
    }

    /// Sets `n` elements from `start` to `value`.
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

    /// Grows to `newCount` elements (more than `count`), the new ones set to `value`.
    @inlinable package mutating func grow(to newCount: Int, filling value: Element) {
        precondition(newCount > count, "OwnedBuffer: grow must add elements")
        let b = UnsafeMutablePointer<Element>.allocate(capacity: newCount)
        unsafe b.moveInitialize(from: base, count: count)
        unsafe (b + count).initialize(repeating: value, count: newCount - count)
        unsafe base.deallocate()
        unsafe base = b
        count = newCount
    }
}
