// MKTME's page preparation, per AllocatorPolicy: prep_encrypted_page() at allocation and
// free_encrypted_page() at free (docs/sources.md, seed 001 and MKTME page allocator; docs/policies.md).
//
// Rules common to all policies: a frame changes KeyID only after its lines are flushed
// through the old KeyID (caches are not coherent across KeyIDs); __GFP_ZERO is honoured only
// after page_keyid is set, through the new KeyID (except `wrapper`, whose unaware allocator
// zeroes first through KeyID 0); each KeyID change counts `keyidSwitches`; 1 << order KeyID
// references are taken for a non-zero KeyID at allocation and one per 4 KiB page dropped at
// free (all policies but `none`).
//
// Invariants: under `none`, `wrapper` and `eager` every free frame has KeyID 0; under
// `integrated` and `per-keyid` a free frame keeps the KeyID it was last allocated with.
import KeyMMBase
import KeyMMHardware
import KeyMMKeys

extension PageAllocator {
    /// Flushes a frame through its current KeyID and gives it `keyid` (one KeyID switch).
    @inline(__always)
    func switchKeyID(_ pfn: UInt64, to keyid: UInt16) {
        let p = pfn
        // Seeded bug (KeyMMChecker/SeededBugs.swift): the KeyID changes without the flush.
        if !bugs.contains(.skipFlushOnKeyIDChange) {
            machine.flushPage(PFN(pfn), keyid: KeyID(store[p].keyid))
        }
        store[p].keyid = keyid
        clock.count(.keyidSwitches)
    }

    /// The allocation half of the policy for a fresh block (after post_alloc_hook).
    func prepNewPage(_ pfn: UInt64, order: Int, keyid k: KeyID, zero: Bool) {
        let n = 1 << order
        let head = pfn
        let kid = k.rawValue
        switch policy {
        case .none:
            if zero { for i in 0..<n { machine.clearPage(PFN(pfn + UInt64(i)), keyid: .tme) } }
        case .wrapper:
            // The KeyID-unaware allocator hands out a KeyID-0 page, zeroed through KeyID 0 if
            // asked; the wrapper then flushes it, sets the KeyID and zeroes it again.
            for i in 0..<n {
                let f = pfn + UInt64(i)
                let p = head + UInt64(i)
                if zero { machine.clearPage(PFN(f), keyid: KeyID(store[p].keyid)) }
                if kid != 0 {
                    if store[p].keyid != kid { switchKeyID(p, to: kid) }
                    if zero { machine.clearPage(PFN(f), keyid: k) }
                }
            }
        case .integrated, .eager, .perKeyID:
            // prep_encrypted_page(): flush through the old KeyID if it differs, set, then zero.
            let zeroFirst = zero && bugs.contains(.zeroBeforeKeyID)   // seeded bug
            for i in 0..<n {
                let f = pfn + UInt64(i)
                let p = head + UInt64(i)
                if zeroFirst && store[p].keyid != kid { machine.flushPage(PFN(f), keyid: KeyID(store[p].keyid)); machine.clearPage(PFN(f), keyid: KeyID(store[p].keyid)); store[p].keyid = kid; clock.count(.keyidSwitches); continue }
                if store[p].keyid != kid { switchKeyID(p, to: kid) }
                if zero { machine.clearPage(PFN(f), keyid: k) }
            }
        }
        if policy != .none && kid != 0 { getKeyIDRefs(k, n) }
    }

    /// The free half of the policy (free_encrypted_page), before the block returns to the lists.
    func freeEncryptedPages(_ pfn: UInt64, count n: Int) {
        guard policy != .none else { return }
        let head = pfn
        var runKeyID: UInt16 = 0, run = 0
        for i in 0..<n {
            let p = head + UInt64(i)
            let kid = store[p].keyid
            guard kid != 0 else { continue }
            if kid != runKeyID {
                if run > 0 { putKeyIDRefs(KeyID(runKeyID), run) }
                runKeyID = kid
                run = 0
            }
            run += 1
            // wrapper and eager: flush through the page's KeyID and return it to KeyID 0.
            if policy.poolIsKeyIDZero { switchKeyID(pfn + UInt64(i), to: 0) }
        }
        if run > 0 { putKeyIDRefs(KeyID(runKeyID), run) }
    }

    /// The per-KeyID counts taken per 4 KiB page (docs/sources.md, seed 000); none under the seeded bug, which
    /// counts per VMA only.
    var pageKeyIDRefs: KeyIDReferences? { bugs.contains(.freeKeyIDWhileReferenced) ? nil : keyidRefs }

    func getKeyIDRefs(_ k: KeyID, _ n: Int) {
        guard let refs = pageKeyIDRefs else { return }
        clock.charge(.keyidRef)
        refs.get(k, n)
    }

    func putKeyIDRefs(_ k: KeyID, _ n: Int) {
        guard let refs = pageKeyIDRefs else { return }
        clock.charge(.keyidRef)
        refs.put(k, n)
    }

    /// prep_encrypted_page() on a block already allocated (khugepaged allocates with KeyID 0,
    /// then applies the VMA's KeyID before copying): each frame whose KeyID differs is flushed
    /// through its old KeyID and switched; references move from the old KeyID to the new one
    /// (per 4 KiB); then the frames are zeroed through the new KeyID if `zero`.
    public func prepEncryptedPage(_ pfn: PFN, order: PageOrder, keyid: KeyID, zero: Bool) {
        guard let h = allocatedHead(pfn.rawValue, "prep_encrypted_page") else { return }
        let k = policy == .none ? KeyID.tme : keyid
        guard k.rawValue <= maxKeyID else {
            return anomaly("prep_encrypted_page: \(k) is beyond the hardware's KeyIDs (max \(maxKeyID))")
        }
        let n = min(1 << Int(order.rawValue), 1 << Int(store.peek(h).order))
        let head = h
        for i in 0..<n {
            let p = head + UInt64(i)
            let old = store[p].keyid
            if old != k.rawValue {
                if policy != .none {
                    if old != 0 { putKeyIDRefs(KeyID(old), 1) }
                    if k.rawValue != 0 { getKeyIDRefs(k, 1) }
                }
                switchKeyID(h + UInt64(i), to: k.rawValue)
            }
            if zero { machine.clearPage(PFN(h + UInt64(i)), keyid: k) }
        }
    }
}
