// The vocabulary of faults and model-only memory accesses: what a fault asks for, how it
// ends (the signal and si_code user space would see), smaps counters, and the kernel-wide
// state of the page-table layer (the shared zero pages, THP statistics).
//
// Invariants: the zero page and the huge zero page are allocated once, with KeyID 0, zeroed,
// PG_reserved|zero, and never freed; nothing ever writes them (every mapping is read-only).
import KeyMMBase

/// The kind of access that faulted (the x86 error code's W and I bits).
package enum FaultAccess: Sendable {
    case read, write, exec
}

/// si_code of a SIGSEGV.
public enum SegvCode: Sendable, Equatable {
    /// SEGV_MAPERR: no mapping at the address.
    case mapErr
    /// SEGV_ACCERR: the mapping does not allow the access.
    case accErr
    /// SEGV_PKUERR: the protection key (PKRU) denies the access.
    case pkuErr
}

/// How a fault ends.
package enum FaultResult: Equatable, Sendable {
    /// Resolved: retry the access.
    case ok
    case sigsegv(SegvCode)
    /// SIGBUS: a file page beyond EOF (or an unbacked page).
    case sigbus
    /// VM_FAULT_OOM: no memory for the page (the model does not run the OOM killer).
    case oom
}

/// A signal a model-only memory access raises.
public enum MemSignal: Equatable, Sendable {
    case sigsegv(SegvCode)
    case sigbus
    /// The fault ran out of memory (VM_FAULT_OOM): the OOM killer's SIGKILL.
    case sigkill
}

/// Result of `memWrite`.
public enum MemAccessResult: Equatable, Sendable {
    /// Every byte written.
    case ok(Int)
    case signal(MemSignal)
}

/// Result of `memRead`.
public enum MemReadResult: Equatable, Sendable {
    case ok([UInt8])
    case signal(MemSignal)
}

/// Per-VMA counters as /proc/PID/smaps prints them (all in bytes).
package struct VMAPageStats: Equatable, Sendable {
    package var rss: UInt64 = 0
    /// Proportional set size (bytes, rounded down as smaps does at the end).
    package var pss: UInt64 = 0
    package var pssDirty: UInt64 = 0
    package var pssAnon: UInt64 = 0
    package var pssFile: UInt64 = 0
    package var sharedClean: UInt64 = 0
    package var sharedDirty: UInt64 = 0
    package var privateClean: UInt64 = 0
    package var privateDirty: UInt64 = 0
    package var referenced: UInt64 = 0
    package var anonymous: UInt64 = 0
    package var anonHuge: UInt64 = 0
    package var swap: UInt64 = 0
    package var locked: UInt64 = 0
    package init() {}
}

/// Kernel-wide state of the page-table layer.
package final class PgtableState {
    /// empty_zero_page, once allocated.
    package internal(set) var zeroPFN: PFN?
    /// The huge zero page (order 9), once allocated.
    package internal(set) var hugeZeroPFN: PFN?
    /// Whether the huge zero page could not be allocated (then read faults fall back to 4 KiB).
    var hugeZeroFailed = false
    /// THP events (/proc/vmstat thp_*).
    package internal(set) var thpFaultAlloc: UInt64 = 0
    package internal(set) var thpFaultFallback: UInt64 = 0
    package internal(set) var thpSplitPMD: UInt64 = 0
    package internal(set) var thpCollapseAlloc: UInt64 = 0
    package internal(set) var thpZeroPageAlloc: UInt64 = 0
    /// Pages migrated by `migratePages` and migrations refused (pinned, busy).
    package internal(set) var migrated: UInt64 = 0
    package internal(set) var migrateFailed: UInt64 = 0
    /// do_swap_page(), installed by the reclaim layer: resolves a fault on a swap entry in
    /// PTE slot `slot` (the page table of `mm`). Without it a swap entry faults with SIGBUS.
    package var swapIn: ((_ mm: MM, _ vma: VMA, _ addr: VirtAddr, _ slot: Int) -> FaultResult)?
    /// Called for every swap entry a zap removes (free_swap_and_cache), and for every swap
    /// entry fork duplicates (swap_duplicate), by the reclaim layer.
    package var swapEntryFreed: ((SwapEntry) -> Void)?
    package var swapEntryDuplicated: ((SwapEntry) -> Void)?
    package init() {}
}
