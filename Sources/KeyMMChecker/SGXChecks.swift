// The SGX half of the checker (docs/invariants.md, docs/sgx.md): what the enclave model must keep
// true between calls.
//
// - epc-mapped-outside-enclave / epc-stale-pte: every entry the page-table sweep finds that maps an
//   EPC frame (they are special entries) is checked against the driver: the EPC page must belong to
//   an enclave page of the enclave whose VMA maps it, added for that address; a SECS or VA page is
//   never mapped; a free EPC page, or one now holding another enclave page, means the entry outlived
//   the page's write-back (or free).
// - sgx-mm-list: per enclave, mm_list against the live mms' enclave VMAs under the design's rule.
// - epc-accounting: free list, owners, EPCM validity, SECS child counts, VA slots.
// - enclave-contents: an observer on the SGX unit remembers a digest of each page written back and
//   compares the page loaded back (a replayed or stale copy accepted shows here); lost contents are
//   driver anomalies.
// - srcu-use-after-free (and every other driver anomaly): the driver records what its walkers
//   reach; the checker reports new anomalies after every call.
//
// Cost: the checks run only once SGX has been used (some enclave exists or some EPC page is
// allocated). The EPC mappings are checked after every call; they come from the checker's shadow
// (CheckerShadow.epcLeaves, kept up to date from the touch log), not from a page-table walk. The
// EPC accounting (O(EPC pages + enclave pages)) runs when the driver's state changed
// (`SGXDriver.version`, bumped at every change of what it reads), the mm_lists (O(VMAs of every
// mm)) also when a VMA or the set of mms changed; both on every full sweep, which is what catches a
// change the version missed.
import KeyMMBase
import KeyMMHardware
import KeyMMKernel

/// One entry that maps an EPC frame, found by the page-table sweep.
struct EPCLeaf {
    var pid: ProcessID
    var va: VirtAddr
    var page: EPCPage
    var vma: VMA?
}

extension InvariantChecker {
    /// The SGX unit's observer: digests of pages written back, compared with the pages loaded back.
    func attachSGXObserver() {
        guard let unit = kernel.machine.sgx else { return }
        previousSGXObserver = unit.observer
        let prev = previousSGXObserver
        unit.observer = { [weak self] event in
            prev?(event)
            guard let self else { return }
            switch event {
            case .wroteBack(let eid, let linear, let type, let digest):
                self.sealedDigests[SealedKey(eid: eid, linear: linear, secs: type == .secs)] = digest
            case .loaded(let eid, let linear, let type, let digest):
                let key = SealedKey(eid: eid, linear: linear, secs: type == .secs)
                if let want = self.sealedDigests[key], want != digest {
                    self.report(.enclaveContents, key: "load:\(eid.rawValue):\(linear):\(self.callsChecked)",
                                "the \(type) page at \(Fmt.hex(linear)) of enclave \(eid) was loaded back (ELDU accepted it) with contents other than it was last written back with: a stale or tampered copy")
                }
            case .loadRefused:
                break
            }
        }
    }

    func detachSGXObserver() {
        kernel.machine.sgx?.observer = previousSGXObserver
    }

    /// New driver anomalies (after every call).
    func checkSGXAnomalies() {
        guard let d = kernel.sgx else { return }
        let all = d.anomalies
        guard all.count > sgxAnomaliesSeen else { return }
        for (i, a) in all[sgxAnomaliesSeen...].enumerated() {
            let inv: Invariant
            switch a.kind {
            case .mmList: inv = .sgxMMList
            case .srcuUseAfterFree: inv = .srcuUseAfterFree
            case .epcAccounting: inv = .epcAccounting
            case .enclaveContents: inv = .enclaveContents
            }
            report(inv, key: "sgx-anomaly:\(sgxAnomaliesSeen + i)", "SGX driver: \(a.detail)")
        }
        sgxAnomaliesSeen = all.count
    }

    /// Whether SGX was used at all (else the structural checks have nothing to look at).
    var sgxInUse: Bool {
        guard let d = kernel.sgx else { return false }
        return !d.enclaves.isEmpty || d.epc.freeCount != d.epc.pageCount
    }

    /// The structural SGX checks. The EPC mappings are checked after every call (from the
    /// shadow's leaves); the EPC accounting only when the driver's state changed since it was last
    /// checked (`SGXDriver.version`), and the mm_lists also when a VMA or the set of mms changed
    /// (what they are compared with); everything on a full sweep.
    func checkSGX(_ leaves: [EPCLeaf], full: Bool, _ work: inout Int) {
        guard let d = kernel.sgx, sgxInUse || !leaves.isEmpty else { return }
        checkEPCMappings(d, leaves)
        let driverChanged = d.version != sgxCheckedVersion
        let layoutChanged = touchLog == nil || !model.layoutRanges.isEmpty || !model.wholeSlots.isEmpty || model.mmsChanged
        if full || driverChanged || layoutChanged { checkMMLists(d, &work) }
        if full || driverChanged { checkEPCAccounting(d, &work) }
        sgxCheckedVersion = d.version
    }

    // MARK: mappings

    func checkEPCMappings(_ d: SGXDriver, _ leaves: [EPCLeaf]) {
        for leaf in leaves {
            let place = "pid \(leaf.pid) VA \(Fmt.va(leaf.va))"
            let vmaEnclave = (leaf.vma?.vmOps as? SGXVMOps)?.enclave
            switch d.epc.owner[leaf.page.rawValue] {
            case .free:
                report(.epcStalePTE, key: "\(leaf.pid):\(leaf.va.rawValue)",
                       "\(place) still maps \(leaf.page) (\(Fmt.pfn(d.unit.pfn(leaf.page)))), which is free: the enclave page it held was written back or freed without this entry being zapped")
            case .page(let p):
                guard let e = vmaEnclave, e === p.enclave else {
                    report(.epcMappedOutsideEnclave, key: "\(leaf.pid):\(leaf.va.rawValue)",
                           "\(place) maps \(leaf.page), a page of the enclave of description \(p.enclave.openID), through \(leaf.vma.map { vmaText($0) } ?? "no VMA")")
                    continue
                }
                if p.linear != leaf.va.rawValue {
                    report(.epcStalePTE, key: "\(leaf.pid):\(leaf.va.rawValue)",
                           "\(place) maps \(leaf.page), which holds the enclave page at \(Fmt.hex(p.linear)), not this address's: the reclaimer zaps only the page's own address, so this entry would outlive its write-back (a moved mapping, or a page written back and its EPC page reused)")
                }
            case .secs(let e), .va(let e):
                report(.epcMappedOutsideEnclave, key: "\(leaf.pid):\(leaf.va.rawValue)",
                       "\(place) maps \(leaf.page), a SECS or VA page of the enclave of description \(e.openID)")
            case .allocating:
                report(.epcAccounting, key: "alloc:\(leaf.page.rawValue)", "\(place) maps \(leaf.page), allocated but never given to its owner")
            }
        }
    }

    func vmaText(_ v: VMA) -> String {
        let what = v.vmOps is SGXVMOps ? "another enclave's VMA" : (v.vmFile.map { "a VMA of \($0.path)" } ?? "an anonymous VMA")
        return "\(what) \(Fmt.vma(v.vmStart, v.vmEnd))"
    }

    // MARK: mm_list

    func checkMMLists(_ d: SGXDriver, _ work: inout Int) {
        guard options.enabled.contains(.sgxMMList), !d.enclaves.isEmpty else { return }
        // Enclave VMAs per (enclave, mm) among the live mms.
        var live = Set<ObjectIdentifier>()
        var vmasOf: [ObjectIdentifier: [ObjectIdentifier: Int]] = [:]   // enclave -> mm -> VMAs
        var pidOf: [ObjectIdentifier: ProcessID] = [:]
        for (pid, mm) in kernel.distinctMMs {
            let m = ObjectIdentifier(mm)
            live.insert(m)
            pidOf[m] = pid
            for v in mm.vmas {
                work += 1
                guard let o = v.vmOps, let ops = o as? SGXVMOps else { continue }   // most VMAs: no cast
                vmasOf[ObjectIdentifier(ops.enclave), default: [:]][m, default: 0] += 1
            }
        }
        for openID in d.enclaves.keys.sorted() {
            let encl = d.enclaves[openID]!
            let mapping = vmasOf[ObjectIdentifier(encl)] ?? [:]
            var seen = Set<ObjectIdentifier>()
            for e in encl.mmList where e.listed {
                work += 1
                let m = ObjectIdentifier(e.mm)
                let who = pidOf[m].map { "pid \($0)" } ?? "an exited mm"
                if e.freed {
                    report(.sgxMMList, key: "freed:\(openID):\(m.hashValue)", "the mm_list of the enclave of description \(openID) holds a freed encl_mm (\(who))")
                    continue
                }
                if !seen.insert(m).inserted {
                    report(.sgxMMList, key: "dup:\(openID):\(pidOf[m]?.rawValue ?? -1)", "the mm_list of the enclave of description \(openID) holds \(who) more than once")
                }
                if !live.contains(m) {
                    // The 2019 walker's reference keeps the entry it stands on listed until it moves.
                    if d.tracking == .vmaRefcount && e.walkerRefs > 0 { continue }
                    report(.sgxMMList, key: "dead:\(openID):\(m.hashValue)", "the mm_list of the enclave of description \(openID) still holds an mm that has exited")
                    continue
                }
                if d.tracking == .vmaRefcount {
                    let vmas = mapping[m] ?? 0
                    if vmas == 0 && e.walkerRefs == 0 {
                        report(.sgxMMList, key: "stale:\(openID):\(pidOf[m]?.rawValue ?? -1)", "vma-refcount: the mm_list of the enclave of description \(openID) holds \(who), which maps none of it (its last VMA's close should have removed it)")
                    } else if e.refcount != vmas + e.walkerRefs {
                        report(.sgxMMList, key: "count:\(openID):\(pidOf[m]?.rawValue ?? -1)", "vma-refcount: the encl_mm of \(who) on the enclave of description \(openID) has refcount \(e.refcount) but \(vmas) VMAs and \(e.walkerRefs) walkers hold it")
                    }
                }
            }
            for (m, n) in mapping.sorted(by: { (pidOf[$0.key]?.rawValue ?? 0) < (pidOf[$1.key]?.rawValue ?? 0) }) where !seen.contains(m) {
                report(.sgxMMList, key: "missing:\(openID):\(pidOf[m]?.rawValue ?? -1)", "pid \(pidOf[m]?.rawValue ?? -1) maps the enclave of description \(openID) (\(n) VMAs) but is not on its mm_list: the reclaimer would not zap its entries nor send its CPUs an IPI")
            }
        }
    }

    // MARK: EPC accounting

    func checkEPCAccounting(_ d: SGXDriver, _ work: inout Int) {
        guard options.enabled.contains(.epcAccounting) else { return }
        let unit = d.unit
        let n = d.epc.pageCount
        work += n
        var free = 0
        for i in 0..<n {
            let p = EPCPage(i)
            let valid = unit.entry(p).valid
            switch d.epc.owner[i] {
            case .free:
                free += 1
                if valid { report(.epcAccounting, key: "freevalid:\(i)", "\(p) is on the free list but the EPCM still has it valid") }
            case .page(let page):
                if page.epc != p || page.enclave.freed {
                    report(.epcAccounting, key: "owner:\(i)", "\(p) is owned by the enclave page at \(Fmt.hex(page.linear)), which does not hold it (a leak)")
                } else if !valid {
                    report(.epcAccounting, key: "invalid:\(i)", "\(p) holds the enclave page at \(Fmt.hex(page.linear)) but the EPCM has it invalid")
                }
            case .secs(let e):
                if e.secs?.epc != p || e.freed { report(.epcAccounting, key: "owner:\(i)", "\(p) is owned as the SECS of the enclave of description \(e.openID), which does not hold it") }
                else if !valid { report(.epcAccounting, key: "invalid:\(i)", "\(p) is a SECS the EPCM has invalid") }
            case .va(let e):
                if !e.vaPages.contains(where: { $0.epc == p }) || e.freed { report(.epcAccounting, key: "owner:\(i)", "\(p) is owned as a VA page of the enclave of description \(e.openID), which does not hold it") }
                else if !valid { report(.epcAccounting, key: "invalid:\(i)", "\(p) is a VA page the EPCM has invalid") }
            case .allocating:
                report(.epcAccounting, key: "allocating:\(i)", "\(p) was allocated but never given to its owner")
            }
        }
        if free != d.epc.freeCount {
            report(.epcAccounting, key: "freecount", "\(free) EPC pages are free but the free count is \(d.epc.freeCount)")
        }
        for openID in d.enclaves.keys.sorted() {
            let e = d.enclaves[openID]!
            guard e.created, let eid = e.eid else { continue }
            var resident = 0, written = 0
            for p in e.pages.values {
                work += 1
                if let x = p.epc {
                    resident += 1
                    if case .page(let o) = d.epc.owner[x.rawValue], o === p {} else {
                        report(.epcAccounting, key: "doubly:\(x.rawValue)", "the enclave page at \(Fmt.hex(p.linear)) holds \(x), which is not recorded as its")
                    }
                } else if p.va != nil {
                    written += 1
                }
            }
            if e.secs.epc == nil && e.secs.va != nil { written += 1 }
            if e.secsChildCount != resident || unit.childCount(eid) != resident {
                report(.epcAccounting, key: "children:\(openID)", "the enclave of description \(openID) has \(resident) pages in the EPC but secs_child_cnt \(e.secsChildCount) and the SECS counts \(unit.childCount(eid))")
            }
            let slots = e.vaPages.reduce(0) { $0 + $1.usedCount }
            let hwSlots = e.vaPages.reduce(0) { $0 + unit.usedSlots($1.epc) }
            if slots != written || hwSlots != written {
                report(.epcAccounting, key: "va:\(openID)", "the enclave of description \(openID) has \(written) pages written back but \(slots) VA slots in use (\(hwSlots) holding versions)")
            }
        }
    }
}

/// A page's identity across write-back and reload.
struct SealedKey: Hashable {
    var eid: EnclaveID
    var linear: UInt64
    var secs: Bool
}
