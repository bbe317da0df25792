// The vocabulary of the page allocator: struct page flags (PageFlags), allocation flags
// (GFPFlags) and the MKTME flush policies (AllocatorPolicy).
//
// Invariants: the allocator owns `PageFlags.allocatorOwned` (buddy, head, tail): callers'
// setFlags/clearFlags never change them. GFP bit values are the model's own (Linux renumbers
// its ___GFP_*_BIT enum between releases); the names and the composite masks follow
// include/linux/gfp_types.h.
import KeyMMBase

/// How the page allocator handles a page's KeyID (docs/sources.md, seed 001 and the MKTME series' history).
///
/// Per-operation actions of each policy are listed in docs/policies.md.
public enum AllocatorPolicy: String, CaseIterable, Sendable, Codable {
    /// MKTME off: every page stays on KeyID 0, requested KeyIDs are ignored, nothing is flushed.
    case none
    /// Hocko's alternative: a KeyID-unaware buddy allocator plus a wrapper that flushes on every
    /// allocation *and* every free of an encrypted page (pool pages are always KeyID 0).
    case wrapper
    /// The 2018 v2 series (lazy): freed pages keep their last KeyID; flush only at allocation and
    /// only when the last KeyID differs from the requested one.
    case integrated
    /// The 2019 RFC (`*_keyid` functions): KeyID-aware, flush at allocation of an encrypted page
    /// (through KeyID 0) and at its free (through its KeyID), pool pages always KeyID 0.
    case eager
    /// Beyond the series: `integrated`, plus per-node, per-KeyID lists of freed order-0 pages
    /// (like per-CPU pagesets) so a KeyID's allocation reuses a page last used with that KeyID
    /// and needs no flush even when tenants alternate. Bounded; drained on pressure.
    case perKeyID = "per-keyid"

    /// Whether pages sitting in the buddy free lists are always KeyID 0 under this policy.
    @inlinable public var poolIsKeyIDZero: Bool { self != .integrated && self != .perKeyID }
}

/// struct page flags (PG_* and the page types the model needs).
public struct PageFlags: OptionSet, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt32
    @inlinable public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// PG_locked: the page is locked for I/O or migration.
    public static let locked = PageFlags(rawValue: 1 << 0)
    /// PG_writeback.
    public static let writeback = PageFlags(rawValue: 1 << 1)
    /// PG_referenced.
    public static let referenced = PageFlags(rawValue: 1 << 2)
    /// PG_uptodate.
    public static let uptodate = PageFlags(rawValue: 1 << 3)
    /// PG_dirty.
    public static let dirty = PageFlags(rawValue: 1 << 4)
    /// PG_lru: on an LRU list.
    public static let lru = PageFlags(rawValue: 1 << 5)
    /// PG_head: first page of a compound (THP) block. Allocator-owned.
    public static let head = PageFlags(rawValue: 1 << 6)
    /// PG_active.
    public static let active = PageFlags(rawValue: 1 << 7)
    /// PG_workingset.
    public static let workingset = PageFlags(rawValue: 1 << 8)
    /// PG_reserved: never freed (the zero page, kernel image).
    public static let reserved = PageFlags(rawValue: 1 << 9)
    /// PG_private.
    public static let `private` = PageFlags(rawValue: 1 << 10)
    /// PG_reclaim.
    public static let reclaim = PageFlags(rawValue: 1 << 11)
    /// PG_swapbacked.
    public static let swapBacked = PageFlags(rawValue: 1 << 12)
    /// PG_unevictable.
    public static let unevictable = PageFlags(rawValue: 1 << 13)
    /// PG_mlocked.
    public static let mlocked = PageFlags(rawValue: 1 << 14)
    /// PG_hwpoison: a frame with a memory error; never returned to the free lists.
    public static let hwPoison = PageFlags(rawValue: 1 << 15)
    /// PG_swapcache.
    public static let swapCache = PageFlags(rawValue: 1 << 16)
    /// PageBuddy (a page type in Linux): first page of a free block. Allocator-owned.
    public static let buddy = PageFlags(rawValue: 1 << 20)
    /// PageTail (compound_head set): a non-first page of a compound block. Allocator-owned.
    public static let tail = PageFlags(rawValue: 1 << 21)
    /// PageAnon (Linux encodes it in the low bit of page->mapping).
    public static let anon = PageFlags(rawValue: 1 << 22)
    /// PageKsm: a KSM stable-tree page.
    public static let ksm = PageFlags(rawValue: 1 << 23)
    /// The shared zero page (is_zero_pfn).
    public static let zeroPage = PageFlags(rawValue: 1 << 24)
    /// Pinned by get_user_pages(FOLL_PIN) (Linux biases the refcount; the model keeps a flag too).
    public static let pinned = PageFlags(rawValue: 1 << 25)
    /// PageMovable: allocated with __GFP_MOVABLE (compaction may migrate it).
    public static let movable = PageFlags(rawValue: 1 << 26)

    /// Flags only the allocator sets or clears.
    public static let allocatorOwned: PageFlags = [.buddy, .head, .tail]
    /// Flags the final put clears itself (__page_cache_release: off the LRU, munlocked).
    public static let clearedAtFree: PageFlags = [.lru, .active, .unevictable, .mlocked]
    /// Flags that make a page "bad" when it is freed (PAGE_FLAGS_CHECK_AT_FREE, abridged).
    public static let checkAtFree: PageFlags = [.locked, .writeback, .pinned]

    private static let names: [(PageFlags, String)] = [
        (.locked, "locked"), (.writeback, "writeback"), (.referenced, "referenced"), (.uptodate, "uptodate"),
        (.dirty, "dirty"), (.lru, "lru"), (.head, "head"), (.active, "active"), (.workingset, "workingset"),
        (.reserved, "reserved"), (.private, "private"), (.reclaim, "reclaim"), (.swapBacked, "swapbacked"),
        (.unevictable, "unevictable"), (.mlocked, "mlocked"), (.hwPoison, "hwpoison"), (.swapCache, "swapcache"),
        (.buddy, "buddy"), (.tail, "tail"), (.anon, "anon"), (.ksm, "ksm"), (.zeroPage, "zero"),
        (.pinned, "pinned"), (.movable, "movable"),
    ]
    /// `lru|active|anon`, as page-flags dumps print them.
    public var description: String {
        let parts = PageFlags.names.filter { contains($0.0) }.map(\.1)
        return parts.isEmpty ? "0" : parts.joined(separator: "|")
    }
}

/// gfp_t: how to allocate (zone, mobility, reclaim behaviour, zeroing, compound).
public struct GFPFlags: OptionSet, Hashable, Sendable {
    public var rawValue: UInt32
    @inlinable public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// __GFP_DMA32: only ZONE_DMA32 (the first 4 GiB).
    public static let dma32 = GFPFlags(rawValue: 1 << 0)
    /// __GFP_HIGHMEM (no highmem on x86-64; kept for GFP_HIGHUSER).
    public static let highmem = GFPFlags(rawValue: 1 << 1)
    /// __GFP_MOVABLE: the page can be migrated (compaction may move it).
    public static let movable = GFPFlags(rawValue: 1 << 2)
    /// __GFP_RECLAIMABLE.
    public static let reclaimable = GFPFlags(rawValue: 1 << 3)
    /// __GFP_HIGH.
    public static let high = GFPFlags(rawValue: 1 << 4)
    /// __GFP_IO.
    public static let io = GFPFlags(rawValue: 1 << 5)
    /// __GFP_FS.
    public static let fs = GFPFlags(rawValue: 1 << 6)
    /// __GFP_ZERO: return zeroed memory (under MKTME the zeroing is deferred until the KeyID is set).
    public static let zero = GFPFlags(rawValue: 1 << 7)
    /// __GFP_DIRECT_RECLAIM: the caller may sleep; the model runs direct compaction for order > 0.
    public static let directReclaim = GFPFlags(rawValue: 1 << 8)
    /// __GFP_KSWAPD_RECLAIM.
    public static let kswapdReclaim = GFPFlags(rawValue: 1 << 9)
    /// __GFP_NOWARN.
    public static let noWarn = GFPFlags(rawValue: 1 << 10)
    /// __GFP_RETRY_MAYFAIL.
    public static let retryMayFail = GFPFlags(rawValue: 1 << 11)
    /// __GFP_NOFAIL.
    public static let noFail = GFPFlags(rawValue: 1 << 12)
    /// __GFP_NORETRY.
    public static let noRetry = GFPFlags(rawValue: 1 << 13)
    /// __GFP_COMP: set up a compound page (PG_head + tails), as THP does.
    public static let compound = GFPFlags(rawValue: 1 << 14)
    /// __GFP_THISNODE: no fallback to other nodes.
    public static let thisNode = GFPFlags(rawValue: 1 << 15)
    /// __GFP_HARDWALL.
    public static let hardwall = GFPFlags(rawValue: 1 << 16)
    /// __GFP_ACCOUNT.
    public static let account = GFPFlags(rawValue: 1 << 17)
    /// __GFP_NOMEMALLOC.
    public static let noMemalloc = GFPFlags(rawValue: 1 << 18)

    /// __GFP_RECLAIM.
    public static let reclaim: GFPFlags = [.directReclaim, .kswapdReclaim]
    /// GFP_KERNEL.
    public static let kernel: GFPFlags = [.reclaim, .io, .fs]
    /// GFP_USER.
    public static let user: GFPFlags = [.reclaim, .io, .fs, .hardwall]
    /// GFP_HIGHUSER.
    public static let highUser: GFPFlags = [.reclaim, .io, .fs, .hardwall, .highmem]
    /// GFP_HIGHUSER_MOVABLE: anonymous and page-cache pages.
    public static let highUserMovable: GFPFlags = [.reclaim, .io, .fs, .hardwall, .highmem, .movable]
    /// GFP_TRANSHUGE_LIGHT: THP without reclaim/compaction.
    public static let transHugeLight: GFPFlags = [.io, .fs, .hardwall, .highmem, .movable, .compound, .noMemalloc, .noWarn]
    /// GFP_TRANSHUGE: THP with direct reclaim (the model: direct compaction).
    public static let transHuge: GFPFlags = transHugeLight.union(.directReclaim)
}
