// PageCache: the kernel's page cache, one address_space per mapped file (page index → PFN).
//
// Owns: which frame caches which page of which file, and the dirty bit of the cached page
// (set by writes through shared mappings: what write-back would write to the file).
// Invariants: the cache holds one page reference for every frame it indexes (dropped when
// the entry is removed); a page's contents are the file's contents (files start zeroed, so
// a fresh page-cache page is a zeroed KeyID-0 frame); page-cache pages are never encrypted.
import KeyMMBase
import KeyMMHardware

/// struct address_space: one file's cached pages.
package final class AddressSpace {
    /// The file (the cache keeps its inode alive while pages are cached).
    package let file: MappedFile
    /// Page index → frame (each holds a page reference: a change is recorded in the touch log).
    package var pages: [UInt64: PFN] = [:] {
        didSet { touchLog?.references() }
    }
    /// Where changes of the references the cache holds are recorded (nil: not recorded).
    var touchLog: TouchLog?
    /// Indices of pages dirtied through shared mappings and not yet written back.
    package var dirty: Set<UInt64> = []
    /// Identifies this mapping in struct page's ->mapping (rmap for file pages).
    package let id: UInt64

    init(file: MappedFile, id: UInt64) {
        self.file = file
        self.id = id
    }

    /// Pages needed to hold the file's bytes (index >= this is beyond EOF: SIGBUS on fault).
    package var sizeInPages: UInt64 { (file.size &+ UInt64(pageSize - 1)) >> pageShift }
}

/// The page cache: every file's address_space.
package final class PageCache {
    private var spaces: [ObjectIdentifier: AddressSpace] = [:]
    private var byID: [UInt64: AddressSpace] = [:]
    private var nextID: UInt64 = 1
    /// Where changes of the references the cache holds are recorded for the invariant checker.
    var touchLog: TouchLog? {
        didSet { for s in spaces.values { s.touchLog = touchLog } }
    }

    package init() {}

    /// The file's address_space, created on first use.
    package func mapping(for file: MappedFile) -> AddressSpace {
        let k = ObjectIdentifier(file)
        if let s = spaces[k] { return s }
        // Mapping ids live in their own range so they never equal an anon_vma id.
        let s = AddressSpace(file: file, id: PageCache.fileMappingBit | nextID)
        s.touchLog = touchLog
        nextID += 1
        spaces[k] = s
        byID[s.id] = s
        return s
    }

    /// Bit set in every file mapping id (anon_vma ids never have it).
    package static let fileMappingBit: UInt64 = 1 << 63

    /// The address_space with this mapping id.
    package func mapping(id: UInt64) -> AddressSpace? { byID[id] }

    /// The existing address_space of a file, if any page of it was ever cached.
    package func existingMapping(for file: MappedFile) -> AddressSpace? { spaces[ObjectIdentifier(file)] }

    /// find_get_page without the reference: the frame caching `index` of `file`.
    package func lookup(_ file: MappedFile, _ index: UInt64) -> PFN? {
        spaces[ObjectIdentifier(file)]?.pages[index]
    }

    /// Forgets a file's address_space (the file is gone: a shmem inode whose last mapping
    /// went away) and returns it; the caller drops the cache's page references.
    /// (Added by vm-core for shmem eviction, mm/Shmem.swift.)
    package func removeMapping(for file: MappedFile) -> AddressSpace? {
        guard let s = spaces.removeValue(forKey: ObjectIdentifier(file)) else { return nil }
        byID[s.id] = nil
        touchLog?.references()
        return s
    }

    /// Total pages cached.
    package var totalPages: Int { spaces.values.reduce(0) { $0 + $1.pages.count } }

    /// Every address_space (for write-back, truncation, reclaim).
    package var allMappings: [AddressSpace] { Array(spaces.values).sorted { $0.id < $1.id } }
}
