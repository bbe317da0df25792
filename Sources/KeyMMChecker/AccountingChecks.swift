// The accounting half of the sweep: frames (frame-accounting) and KeyID references
// (keyid-refcount-balance, keyid-reuse-while-referenced).
//
// frame-accounting: every frame an entry maps is allocated (else it was freed while mapped);
// each allocated frame's mapcount equals the entries mapping it; each reference owner's
// refcount (a compound page's head) covers its mappings + gup pins + the page cache's
// reference; the allocator's own verify() finds nothing; new allocator anomalies (bad frees,
// double frees) are violations.
// keyid-refcount-balance: for each MKTME KeyID, count = (1 if its key is live) + VMAs with that
// KeyID (each distinct mm once) + allocated 4 KiB frames whose page_keyid is that KeyID (when
// the allocator counts page references: not under policy none, not under SME); every new
// KeyIDReferences anomaly (put below zero, get on a free KeyID, ...) is a violation.
// keyid-reuse-while-referenced: a KeyID programmed during a call (a new key, or CLEAR_KEY when
// released) had no references but its own key's at that moment, and after the call nothing
// (no VMA, no allocated page) still uses it with its previous key.
import KeyMMBase
import KeyMMKeys
import KeyMMKernel

extension InvariantChecker {
    /// frame-accounting: after a full sweep every allocated block, every mapped frame and every
    /// pinned or cached frame; otherwise the blocks and frames whose struct page, entries or
    /// references the call changed. Blocks in PFN order, then frames mapped while free, then frames
    /// held while free (the full sweep's order).
    func checkFrameAccounting(full: Bool) {
        guard options.enabled.contains(.frameAccounting) else { return }
        let alloc = kernel.allocator
        var orphans: [UInt64] = []
        var pinnedFree: [UInt64] = []
        if full {
            alloc.forEachAllocatedBlock { head, order in checkBlock(head, order) }
            // Locals: one retain of each, not one per frame (the shadow is a class).
            let uses = model.uses, allocated = model.allocated
            for f in uses.indices where uses[f] > 0 && !allocated.contains(UInt64(f)) { orphans.append(UInt64(f)) }
            for f in model.extra.keys where !allocated.contains(f) { pinnedFree.append(f) }
        } else {
            var heads: [UInt64] = []
            var seen = Set<UInt64>()
            for f in model.accountingFrames.list {
                if model.allocated.contains(f) {
                    if let b = model.allocatedBlock(containing: f), seen.insert(b.head).inserted { heads.append(b.head) }
                } else {
                    if f < UInt64(model.frameCount) && model.uses[Int(f)] > 0 { orphans.append(f) }
                    if model.extra[f] != nil { pinnedFree.append(f) }
                }
            }
            for h in heads.sorted() {
                if let o = alloc.allocationOrder(PFN(h)) { checkBlock(PFN(h), o) }
            }
        }
        orphans.append(contentsOf: model.farUses.keys)
        for f in Set(orphans).sorted() {
            let n = f < UInt64(model.frameCount) ? model.uses[Int(f)] : model.farUses[f] ?? 0
            let first = model.firstMapper(of: f)
            report(.frameAccounting, key: "free:\(f)",
                   "\(Fmt.pfn(PFN(f))) is mapped by pid \(first?.pid.rawValue ?? 0) at VA \(Fmt.hex(first?.va ?? 0)) (\(n) entries) but the allocator has it free")
        }
        for f in pinnedFree.sorted() {
            report(.frameAccounting, key: "pinfree:\(f)",
                   "\(Fmt.pfn(PFN(f))) is held by a gup pin or the page cache but the allocator has it free")
        }
    }

    /// One allocated block: each frame's mapcount against the entries mapping it, and each
    /// reference owner's refcount (a compound page's head) against mappings + pins + page cache.
    func checkBlock(_ head: PFN, _ order: PageOrder) {
        let alloc = kernel.allocator
        func checkRefs(_ owner: PFN, _ want: Int) {
            let have = Int(alloc.refcount(owner))
            if have < want {
                report(.frameAccounting, key: "refcount:\(owner.rawValue)",
                       "\(Fmt.pfn(owner)) has refcount \(have) but its mappings, pins and page-cache entry hold \(want)")
            }
        }
        // A compound page's references are on its head; otherwise each frame has its own.
        let compound = order.rawValue > 0 && alloc.compoundOrder(head) == order
        let extra = model.extra
        var blockRefs = 0
        for i in 0..<order.pages {
            let f = head.advanced(by: i)
            let counted = f.rawValue < UInt64(model.frameCount) ? Int(model.uses[Int(f.rawValue)]) : 0
            let mc = Int(alloc.mapcount(f))
            if mc != counted {
                let where_ = counted > 0 ? model.firstMapper(of: f.rawValue).map { " (first: pid \($0.pid) VA \(Fmt.hex($0.va)))" } ?? "" : ""
                report(.frameAccounting, key: "mapcount:\(f.rawValue)",
                       "\(Fmt.pfn(f)) has mapcount \(mc) but \(counted) page-table entries map it\(where_)")
            }
            let refs = counted + (extra.isEmpty ? 0 : extra[f.rawValue] ?? 0)
            if compound { blockRefs += refs } else if refs > 0 { checkRefs(f, refs) }
        }
        if compound && blockRefs > 0 { checkRefs(head, blockRefs) }
    }

    /// New allocator anomalies and its structural self-check.
    func checkAllocator(full: Bool) {
        guard options.enabled.contains(.frameAccounting) else { return }
        let alloc = kernel.allocator
        let anomalies = alloc.anomalies
        if anomalies.count > allocatorAnomaliesSeen {
            for (i, a) in anomalies[allocatorAnomaliesSeen...].enumerated() {
                report(.frameAccounting, key: "alloc-anomaly:\(allocatorAnomaliesSeen + i)", "allocator: \(a)")
            }
            allocatorAnomaliesSeen = anomalies.count
        }
        // The self-check reads struct pages (every write of one is in the touch log), the buddy
        // and per-KeyID lists (changed only with struct pages) and the KeyID reference counts:
        // a call that wrote no struct page and moved no KeyID reference cannot change its answer.
        if !full, let log = touchLog, log.frames.isEmpty, !tap.keyidReferencesMoved { return }
        let problems = alloc.verify()
        if problems.count > anomalies.count {
            for p in problems[anomalies.count...] {
                report(.frameAccounting, key: "verify:\(p)", "allocator verify(): \(p)")
            }
        }
    }

    /// Whether the allocator holds one KeyID reference per allocated page with a non-zero KeyID.
    var pageReferencesCounted: Bool {
        kernel.allocator.keyidRefs != nil && kernel.config.policy != .none
    }

    /// keyid-refcount-balance for every KeyID (after every call: O(KeyIDs), from the shadow's
    /// counts of VMAs and allocated pages per KeyID).
    func checkKeyIDBalance() {
        let refs = kernel.keys.references
        if options.enabled.contains(.keyidRefcountBalance) {
            let anomalies = refs.anomalies
            if anomalies.count > keyidAnomaliesSeen {
                for (i, a) in anomalies[keyidAnomaliesSeen...].enumerated() {
                    report(.keyidRefcountBalance, key: "anomaly:\(keyidAnomaliesSeen + i)", "KeyID references: \(a)")
                }
                keyidAnomaliesSeen = anomalies.count
            }
        }
        guard options.enabled.contains(.keyidRefcountBalance), let range = refs.range else { return }
        let pages = pageReferencesCounted
        for k in range {
            let i = Int(k)
            let keyid = KeyID(k)
            let state = refs.state(keyid)
            var own = 0
            if case .inUse = state { own = 1 }
            let v = i < model.vmasPerKeyID.count ? model.vmasPerKeyID[i] : 0
            let p = pages && i < model.pagesPerKeyID.count ? model.pagesPerKeyID[i] : 0
            let expected = own + v + p
            let actual = refs.count(keyid)
            if expected != actual {
                var detail = "\(keyid) (\(state)) has count \(actual) but the references that exist are \(expected): own key \(own) + \(v) VMA(s) + \(p) page(s)"
                if let (pid, v) = firstVMA(with: keyid) { detail += "; e.g. pid \(pid) \(Fmt.vma(v.vmStart, v.vmEnd))" }
                report(.keyidRefcountBalance, key: "\(k)", detail)
            }
        }
    }

    /// The first VMA with `keyid` in the full sweep's order (pid, then address).
    func firstVMA(with keyid: KeyID) -> (ProcessID, VMA)? {
        for slot in model.order {
            guard let mm = model.mms[slot].mm else { continue }
            for v in mm.vmas where v.keyid == keyid { return (model.mms[slot].pid, v) }
        }
        return nil
    }

    /// What still uses `keyid`: VMAs (distinct mms) and allocated frames with that page_keyid
    /// (counted by the shadow; the example is looked up only when something does).
    func usersOf(_ keyid: KeyID) -> (vmas: Int, pages: Int, example: String?) {
        let k = Int(keyid.rawValue)
        guard k > 0, k < model.vmasPerKeyID.count else { return scanUsersOf(keyid) }
        let vmas = model.vmasPerKeyID[k]
        let pages = kernel.config.policy != .none ? model.pagesPerKeyID[k] : 0
        guard vmas + pages > 0 else { return (0, 0, nil) }
        return (vmas, pages, scanUsersOf(keyid).example)
    }

    /// The same by walking every mm's VMAs and every allocated block.
    func scanUsersOf(_ keyid: KeyID) -> (vmas: Int, pages: Int, example: String?) {
        var vmas = 0, pages = 0
        var example: String?
        for slot in model.order {
            guard let mm = model.mms[slot].mm else { continue }
            for v in mm.vmas where v.keyid == keyid {
                vmas += 1
                if example == nil { example = "pid \(model.mms[slot].pid) \(Fmt.vma(v.vmStart, v.vmEnd))" }
            }
        }
        if kernel.config.policy != .none {
            let alloc = kernel.allocator
            alloc.forEachAllocatedBlock { head, order in
                for i in 0..<order.pages where alloc.pageKeyID(head.advanced(by: i)) == keyid {
                    pages += 1
                    if example == nil { example = "\(Fmt.pfn(head.advanced(by: i))) (refcount \(alloc.refcount(head.advanced(by: i))), mapcount \(alloc.mapcount(head.advanced(by: i))))" }
                }
            }
        }
        return (vmas, pages, example)
    }

    /// keyid-reuse-while-referenced for the KeyIDs programmed during this call.
    func checkKeyIDProgramming() {
        guard options.enabled.contains(.keyidReuseWhileReferenced), !programmedDuringCall.isEmpty else { return }
        let index = currentSite?.index ?? 0
        var done = Set<UInt16>()
        for (k, what, others) in programmedDuringCall {
            if others != 0 {
                report(.keyidReuseWhileReferenced, key: "others:\(k.rawValue):\(index)",
                       "\(k) was programmed (\(what)) while its count held \(others) reference(s) besides its key's own")
            }
            guard done.insert(k.rawValue).inserted else { continue }
            let u = usersOf(k)
            let state = kernel.keys.references.state(k)
            // A freshly programmed key has no users yet; a cleared KeyID must have none left.
            if u.vmas + u.pages > 0 {
                report(.keyidReuseWhileReferenced, key: "users:\(k.rawValue):\(index)",
                       "\(k) was reprogrammed (\(what), now \(state)) while \(u.vmas) VMA(s) and \(u.pages) allocated page(s) still use it; e.g. \(u.example ?? "?")")
            }
        }
    }

    /// keyid-reprogrammed-with-cached-lines: called from the KeyID observer at the moment of a
    /// successful PCONFIG (inside the call), so the cache is seen as the new key finds it.
    func checkCachedLinesAtProgramming(_ k: KeyID, _ what: String) {
        guard options.enabled.contains(.keyidReprogrammedWithCachedLines) else { return }
        let cache = kernel.machine.cache
        guard cache.validLines > 0 else { return }
        let hw = k.rawValue & kernel.machine.config.maxKeyID
        var lines = 0, dirty = 0
        var example: (PhysAddr, Bool)?
        cache.forEachLine { pa, keyid, isDirty in
            guard keyid.rawValue == hw else { return }
            lines += 1
            if isDirty { dirty += 1 }
            if example == nil || (isDirty && example?.1 == false) { example = (pa, isDirty) }
        }
        guard lines > 0, let (pa, isDirty) = example else { return }
        let alloc = kernel.allocator
        let pfn = pa.pfn
        let state = alloc.refcount(pfn) > 0 ? "refcount \(alloc.refcount(pfn))" : "free"
        report(.keyidReprogrammedWithCachedLines, key: "\(k.rawValue):\(kernel.keys.references.programCount(k))",
               "\(k) was programmed (\(what)) while \(lines) cache line(s) (\(dirty) dirty) were held under it; e.g. PA \(Fmt.hex(pa.rawValue))\(isDirty ? " dirty" : ""), \(Fmt.pfn(pfn)) (\(state), page_keyid \(alloc.pageKeyID(pfn).rawValue))")
    }
}
