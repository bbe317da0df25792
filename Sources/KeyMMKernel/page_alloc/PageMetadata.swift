// struct page and page_ext for every simulated frame, stored sparsely (SPARSEMEM-style):
// one lazily allocated array of 32-byte `PageMeta` per 32768-frame memory section (128 MiB,
// x86-64's SECTION_SIZE_BITS = 27). A section's array is allocated (calloc, all zero) the first
// time anything in it is handed out or written, so a 64 GiB machine with little memory in use
// costs a 4 KiB section table plus 1 MiB per touched section.
//
// The store is the room for page metadata's raw memory: the rest of the allocator reaches a
// frame's PageMeta only through `store[pfn]` (read/modify in place) and `peek` (no allocation).
//
// Invariants: an unmaterialized section's frames read as all-zero metadata (KeyID 0, no
// flags, refcount 0); `PageMeta` is exactly 32 bytes; while a block sits on a buddy free list
// its head's `mapping`/`index` fields are the list links (as struct page reuses `lru`).
import Foundation
import KeyMMBase

/// One frame's metadata: struct page fields plus page_ext->keyid. 32 bytes.

struct PageMeta {
    /// PageFlags raw bits.
    var flags: UInt32
    /// page_ref_count (meaningful on the head of a block).
    var refcount: Int32
    /// Number of page-table mappings (Linux keeps _mapcount = this - 1).
    var mapcount: Int32
    /// page_ext->keyid: the KeyID the frame was last prepared with.
    var keyid: UInt16
    /// Free head: buddy order. Allocated head: allocation order. Tail: compound order.
    var order: UInt8
    /// Allocator-internal state bits (`PageState`).
    var state: UInt8
    /// rmap owner (anon_vma / inode id); next-link while on a free list.
    var mapping: UInt64
    /// Page offset in the owner; prev-link while on a free list.
    var index: UInt64

    static let zero = PageMeta(flags: 0, refcount: 0, mapcount: 0, keyid: 0, order: 0, state: 0, mapping: 0, index: 0)

    /// Fresh struct page fields (post_alloc_hook, free_pages_prepare): everything cleared but
    /// page_ext's KeyID, which outlives the allocation (the allocator compares against it).
    @inline(__always) mutating func reset(flags: UInt32 = 0) {
        self = PageMeta(flags: flags, refcount: 0, mapcount: 0, keyid: keyid, order: 0, state: 0, mapping: 0, index: 0)
    }
}

/// Allocator-internal per-frame state (not visible as PageFlags).

enum PageState {
    /// First frame of an allocated block of `order` frames.
    static let allocated: UInt8 = 1 << 0
    /// Filled with PAGE_POISON at free; checked at allocation.
    static let poisoned: UInt8 = 1 << 1
    /// Taken off the free lists by the compaction free scanner (private target page).
    static let isolated: UInt8 = 1 << 2
    /// Frame leaked on purpose (hardware-poisoned page freed): never reused.
    static let leaked: UInt8 = 1 << 3
    /// Free order-0 page on a per-KeyID list (`per-keyid` policy).
    static let keyidListed: UInt8 = 1 << 4
}

/// The section table: frames -> lazily allocated metadata arrays.

@safe final class PageMetadataStore {
    /// log2 of frames per section (32768 frames = 128 MiB).
    static let sectionShift = 15
    static let sectionFrames = 1 << sectionShift

    /// Frames covered.
    let frameCount: Int
    /// Number of sections (the last may be partial).
    let sectionCount: Int
    /// Per section: its metadata array (calloc'd), or nil while untouched.
    private let sections: OwnedBuffer<UnsafeMutablePointer<PageMeta>?>
    /// Sections materialized so far.
    private(set) var materializedSections = 0
    /// Host bytes held by materialized arrays.
    private(set) var metadataBytes = 0

    init(frameCount: Int) {
        self.frameCount = max(frameCount, 0)
        self.sectionCount = (self.frameCount + PageMetadataStore.sectionFrames - 1) >> PageMetadataStore.sectionShift
        unsafe sections = unsafe OwnedBuffer(repeating: nil, count: max(sectionCount, 1))
    }

    deinit {
        for s in 0..<sectionCount { if let p = unsafe sections[s] { unsafe free(p) } }
    }

    /// Host bytes of the section table itself.
    var tableBytes: Int { unsafe max(sectionCount, 1) * MemoryLayout<UnsafeMutablePointer<PageMeta>?>.stride }
    /// Total host bytes used by frame metadata.
    var totalBytes: Int { tableBytes + metadataBytes }

    func isValid(_ pfn: UInt64) -> Bool { pfn < UInt64(frameCount) }

    func isMaterialized(_ pfn: UInt64) -> Bool {
        unsafe sections[Int(pfn >> UInt64(PageMetadataStore.sectionShift))] != nil
    }

    /// Frames in section `s`.
    func frames(inSection s: Int) -> Int {
        min(PageMetadataStore.sectionFrames, frameCount - (s << PageMetadataStore.sectionShift))
    }

    /// Allocates section `s`'s array (all zero) if needed.
    func materialize(section s: Int) {
        _ = unsafe sectionBase(s)
    }

    /// Section `s`'s array, allocated (all zero) on first use.
    @inline(__always) private func sectionBase(_ s: Int) -> UnsafeMutablePointer<PageMeta> {
        if let p = unsafe sections[s] { return unsafe p }
        let n = frames(inSection: s)
        let bytes = n * MemoryLayout<PageMeta>.stride
        // calloc: the host hands out zero pages lazily, and all-zero is a valid PageMeta.
        guard let raw = unsafe calloc(n, MemoryLayout<PageMeta>.stride) else {
            fatalError("KeyMM: host out of memory materializing \(bytes) bytes of page metadata")
        }
        let p = unsafe raw.bindMemory(to: PageMeta.self, capacity: n)
        unsafe sections[s] = p
        materializedSections += 1
        metadataBytes += bytes
        return unsafe p
    }

    /// A valid frame's metadata, read and updated in place; materializes its section (as the
    /// kernel's struct page exists for every frame). The only way to a frame's PageMeta.
    subscript(pfn: UInt64) -> PageMeta {
        @inline(__always) get {
            precondition(pfn < UInt64(frameCount), "PageMetadataStore: PFN beyond memory")
            let base = unsafe sectionBase(Int(pfn >> UInt64(PageMetadataStore.sectionShift)))
            return unsafe base[Int(pfn & UInt64(PageMetadataStore.sectionFrames - 1))]
        }
        @inline(__always) _modify {
            precondition(pfn < UInt64(frameCount), "PageMetadataStore: PFN beyond memory")
            let base = unsafe sectionBase(Int(pfn >> UInt64(PageMetadataStore.sectionShift)))
            yield unsafe &base[Int(pfn & UInt64(PageMetadataStore.sectionFrames - 1))]
        }
    }

    /// A frame's metadata for reading; all zero when its section is untouched or pfn is invalid.
    func peek(_ pfn: UInt64) -> PageMeta {
        guard pfn < UInt64(frameCount), let base = unsafe sections[Int(pfn >> UInt64(PageMetadataStore.sectionShift))] else {
            return .zero
        }
        return unsafe base[Int(pfn & UInt64(PageMetadataStore.sectionFrames - 1))]
    }
}
