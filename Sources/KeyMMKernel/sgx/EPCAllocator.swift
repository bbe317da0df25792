// The EPC page allocator (arch/x86/kernel/cpu/sgx/main.c): struct sgx_epc_page per page, the free
// list, the active list the reclaimer scans (LRU: new and young pages at the tail), the watermarks
// that wake ksgxd, and sgx_alloc_epc_page()'s error rules. docs/sources.md, "SGX driver".
//
// Rules (as merged): allocation takes the free list's head; with none free it fails with ENOMEM
// when the active list is empty, EBUSY when the caller may not reclaim, and otherwise reclaims a
// batch directly and retries; after an allocation, fewer than SGX_NR_LOW_PAGES (32) free pages wake
// ksgxd, which reclaims while fewer than SGX_NR_HIGH_PAGES (64) are free. A freed page goes to the
// free list's tail (pages come out in address order after boot).
//
// Invariants: every EPC page is on exactly one of: the free list (owner .free), the active list
// (tracked, owner an enclave page), an in-flight reclaimer batch (tracked, off the list), or owned
// without tracking (a SECS, a VA page, a page not yet marked reclaimable); `freeCount` is the free
// list's length.
import KeyMMBase
import KeyMMHardware

/// Who holds an EPC page (sgx_epc_page->owner and the page's use).
package enum EPCOwner {
    case free
    case secs(SGXEnclave)
    case va(SGXEnclave)
    case page(SGXEnclavePage)
    /// Allocated, not yet given to its owner (inside an ioctl or a fault only).
    case allocating
}

/// The EPC pages' software state.
package struct EPCState {
    package var owner: [EPCOwner]
    /// SGX_EPC_PAGE_RECLAIMER_TRACKED.
    package var tracked: [Bool]
    // Free list: a FIFO of page indices.
    private var freeRing: [Int32]
    private var freeHead = 0
    package private(set) var freeCount = 0
    // Active list: doubly linked over page indices (-1: none).
    private var prev: [Int32]
    private var next: [Int32]
    private var onActive: [Bool]
    package private(set) var activeHead: Int32 = -1
    private var activeTail: Int32 = -1
    package private(set) var activeCount = 0

    init(pages: Int) {
        owner = [EPCOwner](repeating: .free, count: pages)
        tracked = [Bool](repeating: false, count: pages)
        freeRing = (0..<pages).map { Int32($0) }
        freeCount = pages
        prev = [Int32](repeating: -1, count: pages)
        next = [Int32](repeating: -1, count: pages)
        onActive = [Bool](repeating: false, count: pages)
    }

    package var pageCount: Int { owner.count }

    mutating func popFree() -> EPCPage? {
        guard freeCount > 0 else { return nil }
        let p = Int(freeRing[freeHead])
        freeHead = (freeHead + 1) % freeRing.count
        freeCount -= 1
        return EPCPage(p)
    }

    mutating func pushFree(_ p: EPCPage) {
        freeRing[(freeHead + freeCount) % freeRing.count] = Int32(p.rawValue)
        freeCount += 1
    }

    /// Free pages in list order (checks and tests).
    package var freePages: [EPCPage] { (0..<freeCount).map { EPCPage(Int(freeRing[(freeHead + $0) % freeRing.count])) } }

    func isOnActive(_ p: EPCPage) -> Bool { onActive[p.rawValue] }

    mutating func activeAppend(_ p: EPCPage) {
        let i = Int32(p.rawValue)
        prev[p.rawValue] = activeTail
        next[p.rawValue] = -1
        if activeTail >= 0 { next[Int(activeTail)] = i } else { activeHead = i }
        activeTail = i
        onActive[p.rawValue] = true
        activeCount += 1
    }

    mutating func activeRemove(_ p: EPCPage) {
        guard onActive[p.rawValue] else { return }
        let pr = prev[p.rawValue], nx = next[p.rawValue]
        if pr >= 0 { next[Int(pr)] = nx } else { activeHead = nx }
        if nx >= 0 { prev[Int(nx)] = pr } else { activeTail = pr }
        prev[p.rawValue] = -1
        next[p.rawValue] = -1
        onActive[p.rawValue] = false
        activeCount -= 1
    }

    /// The active list in order (checks and tests).
    package var activePages: [EPCPage] {
        var out: [EPCPage] = []
        var i = activeHead
        while i >= 0, out.count <= onActive.count { out.append(EPCPage(Int(i))); i = next[Int(i)] }
        return out
    }
}

/// Watermarks and batch size of the merged reclaimer (arch/x86/kernel/cpu/sgx/sgx.h).
package enum SGXReclaimConstants {
    package static let nrToScan = 16
    package static let nrLowPages = 32
    package static let nrHighPages = 64
}

extension SGXDriver {
    /// sgx_alloc_epc_page(owner, reclaim).
    func allocEPCPage(_ owner: EPCOwner, reclaim: Bool) -> Result<EPCPage, Errno> {
        var page: EPCPage?
        var rounds = 0
        while true {
            if let p = epc.popFree() {
                page = p
                epc.owner[p.rawValue] = owner
                epc.tracked[p.rawValue] = false
                break
            }
            if epc.activeCount == 0 { return .failure(.ENOMEM) }
            if !reclaim { return .failure(.EBUSY) }
            // Direct reclaim; every batch frees or rotates pages, so this ends (bounded for safety).
            rounds += 1
            if rounds > 2 * (epc.pageCount / SGXReclaimConstants.nrToScan + 2) {
                anomaly(.epcAccounting, "direct reclaim made no progress in \(rounds) batches with \(epc.activeCount) pages on the active list")
                return .failure(.ENOMEM)
            }
            _ = reclaimPages()
        }
        if shouldReclaim(SGXReclaimConstants.nrLowPages) { ksgxdWoken = true }
        return .success(page!)
    }

    /// sgx_free_epc_page(): back to the free list's tail (after EREMOVE or EWB).
    func freeEPCPage(_ p: EPCPage) {
        if case .free = epc.owner[p.rawValue] {
            anomaly(.epcAccounting, "\(p) freed twice")
            return
        }
        epc.activeRemove(p)
        epc.owner[p.rawValue] = .free
        epc.tracked[p.rawValue] = false
        epc.pushFree(p)
    }

    /// sgx_encl_free_epc_page(): EREMOVE, then free (a failing EREMOVE leaks the page, with a WARN).
    func enclFreeEPCPage(_ p: EPCPage) {
        if epc.tracked[p.rawValue] { anomaly(.epcAccounting, "\(p) freed while the reclaimer tracks it") }
        guard unit.eremove(p) == .success else {
            anomaly(.epcAccounting, "EREMOVE of \(p) failed: the page leaks")
            return
        }
        freeEPCPage(p)
    }

    /// sgx_mark_page_reclaimable(): to the active list's tail.
    func markReclaimable(_ p: EPCPage) {
        epc.tracked[p.rawValue] = true
        epc.activeRemove(p)
        epc.activeAppend(p)
    }

    /// sgx_unmark_page_reclaimable(): EBUSY while a reclaimer batch holds the page.
    func unmarkReclaimable(_ p: EPCPage) -> Errno? {
        if epc.tracked[p.rawValue] {
            if !epc.isOnActive(p) { return .EBUSY }
            epc.activeRemove(p)
            epc.tracked[p.rawValue] = false
        }
        return nil
    }

    /// sgx_should_reclaim().
    func shouldReclaim(_ watermark: Int) -> Bool { epc.freeCount < watermark && epc.activeCount > 0 }

    /// ksgxd's loop, run when it was woken: reclaim while fewer than SGX_NR_HIGH_PAGES are free.
    func runKsgxdIfWoken() {
        guard ksgxdWoken else { return }
        ksgxdWoken = false
        var idle = 0
        while shouldReclaim(SGXReclaimConstants.nrHighPages) && idle < 3 {
            ksgxdPasses += 1
            idle = reclaimPages() == 0 ? idle + 1 : 0
        }
    }
}
