// MKTMEState: the kernel-wide state of the MKTME pieces that live outside the VMA, page-table
// and allocator layers: the boot decision and direct-map layout, get_user_pages pins, the swap
// device and swap cache, KSM's stable tree, per-task memory policies, slept time, and the
// counters the series' WARNs and the kernel threads keep.
//
// Invariants: every pinned frame's pin count in `pinCount` equals the number of times it occurs
// in live pins; a frame with a non-zero pin count has PG_pinned and one page reference per pin;
// every swap slot's `count` equals the number of swap PTEs naming it plus nothing else; a swap
// cache entry holds one page reference. Nothing is iterated in Dictionary order where the order
// could leak into results (handles and offsets are handed out in increasing order).
import KeyMMBase
import KeyMMHardware

/// One gup_pin(): the frames pinned, in address order (one entry per 4 KiB page).
struct PinRecord {
    /// The pinning process's mm (mm->pinned_vm is charged, and uncharged at unpin).
    let mm: MM
    let frames: [PFN]
}

/// A swap slot: the page's bytes as they were written out (plaintext: the CPU read them
/// through the page's KeyID, as the series does) and the swap_map count.
struct SwapSlot {
    var bytes: [UInt8]
    var count: Int
}

/// Kernel-wide MKTME state (see the file comment).
package final class MKTMEState {
    /// The direct-map layout and the boot decision (MKTME on or off).
    package let directMap: DirectMapLayout

    // MARK: gup pins
    var pins: [Int32: PinRecord] = [:] {
        didSet { touchLog?.references() }
    }
    /// Where changes of the pins' page references are recorded for the invariant checker.
    var touchLog: TouchLog?
    var pinCount: [PFN: Int] = [:]
    var nextPinHandle: Int32 = 1

    // MARK: swap
    var swapSlots: [UInt64: SwapSlot] = [:]
    /// The swap cache: a swapped-in page still named by other swap PTEs.
    var swapCache: [UInt64: PFN] = [:]
    var nextSwapOffset: UInt64 = 1
    var swapHooksInstalled = false
    /// Pages written to swap / read back.
    package internal(set) var pswpout: UInt64 = 0
    package internal(set) var pswpin: UInt64 = 0

    // MARK: KSM
    /// The stable tree: (KeyID, contents) -> the KSM page holding them.
    var ksmStable: [KSMKey: PFN] = [:]
    /// pages_sharing (PTEs pointing at a KSM page other than the first) and pages_shared.
    package internal(set) var ksmPagesMerged: UInt64 = 0
    /// Identical pages KSM refused to merge because their KeyIDs differ.
    package internal(set) var ksmKeyIDMismatches: UInt64 = 0

    // MARK: NUMA
    /// set_mempolicy(): each task's policy (absent: MPOL_DEFAULT).
    var taskPolicies: [Int32: MemoryPolicy] = [:]

    // MARK: time
    /// Nanoseconds slept (nanosleep/clock_nanosleep lines): modeled wall time beyond the cost clock.
    package internal(set) var sleptNanoseconds: UInt64 = 0

    // MARK: warnings
    /// WARN_ON_ONCE hits by name (e.g. "hugetlb-keyid"), counted every time.
    package internal(set) var warnings: [String: Int] = [:]

    init(directMap: DirectMapLayout) {
        self.directMap = directMap
    }

    func warn(_ name: String) { warnings[name, default: 0] += 1 }

    /// Frames currently pinned (sum of pin counts).
    package var pinnedFrames: Int { pinCount.values.reduce(0, +) }
    /// Live pin handles, ascending.
    package var pinHandles: [Int32] { pins.keys.sorted() }
    /// The frames a pin holds (nil for an unknown handle).
    package func pinnedFrames(handle: Int32) -> [PFN]? { pins[handle]?.frames }
    /// Swap slots in use.
    package var swapSlotsInUse: Int { swapSlots.count }
    /// The bytes stored in swap slot `offset` (what a disk thief reads), nil if free.
    package func swapContents(offset: UInt64) -> [UInt8]? { swapSlots[offset]?.bytes }
}

/// KSM stable-tree key: pages merge only with equal KeyID and equal contents (the series'
/// "mm/ksm: Do not merge pages with different KeyIDs").
struct KSMKey: Hashable {
    let keyid: KeyID
    let contents: [UInt8]

    /// One FNV-1a pass over the page instead of feeding the hasher 4,096 single bytes (equality
    /// still compares every byte; nothing iterates the stable tree in hash order).
    func hash(into hasher: inout Hasher) {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in contents { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01b3 }
        hasher.combine(keyid)
        hasher.combine(h)
    }
}
