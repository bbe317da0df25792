// The confidential-VM checks (docs/invariants.md, docs/tdx-sev.md): cvm-id-reuse-while-held,
// private-page-in-direct-map, host-access-to-private-page, private-page-freed,
// guest-state-on-host-page and poison-without-partial-write.
//
// How they see the model: observers on KVM's pool releases and ASID recycling
// (`kernel.cvm.observer`), on the TDX module's key configuration, on the SEV firmware's
// activations (checked at that moment: lines, pages and firmware state of the KeyID/ASID), on the
// integrity events (partial writes, full writes, machine checks) and on cache fills (a host fill of
// a private page's line); then, with the sweep, one pass over the cache tags and over the frames the
// TDX module, the RMP and KVM hold. Frames the confidential-VM host holds are exempt from the MKTME
// page_keyid rules (their lines carry TD KeyIDs and ASIDs, not page_keyid), and lines under a TDX
// KeyID or a guest ASID are left to these checks.
//
// Invariant: read-only, like every check (no fill, no LRU update, no charge).
import KeyMMBase
import KeyMMHardware
import KeyMMKernel

/// What the confidential-VM checks remember between observer events and the end of a call.
struct CVMCheckState {
    var active = false
    /// Host fills of a private page's line during the call: (line PA, KeyID, owner).
    var hostFills: [(UInt64, KeyID, String)] = []
    /// Lines a non-TD partial write hit since their last full write.
    var partialWritten: Set<UInt64> = []
    /// Write-backs during the call of a line onto a private page under a foreign tag:
    /// (line PA, KeyID, owner); and of a guest's line onto a host page: (line PA, KeyID).
    var foreignWriteBacks: [(UInt64, KeyID, String)] = []
    var guestWriteBacks: [(UInt64, KeyID)] = []
    /// Frames the confidential-VM host holds, computed at most once per call (nil: not yet).
    var heldThisCall: [UInt64: String]?
    var previousCVM: ((CVMEvent) -> Void)?
    var previousTDX: ((TDXEvent) -> Void)?
    var previousSEV: ((SEVEvent) -> Void)?
    var previousIntegrity: ((IntegrityEvent) -> Void)?
}

extension InvariantChecker {
    var maxHostKeyID: UInt16 { kernel.machine.config.maxKeyID }

    /// Whether a cache tag is a TDX private KeyID or a guest ASID (not a host KeyID).
    func isCVMTag(_ k: KeyID) -> Bool {
        kernel.machine.config.asid(ofTag: k) != nil || kernel.machine.keyTable.isTDXPrivate(k)
    }

    func tagName(_ k: KeyID) -> String {
        if let a = kernel.machine.config.asid(ofTag: k) { return "ASID \(a)" }
        if kernel.machine.keyTable.isTDXPrivate(k) { return "TDX \(k)" }
        return "\(k)"
    }

    /// The owner of a private frame: the tag its lines may carry (nil: none, firmware pages) and a
    /// name; nil when the frame is not private. `sevPrivate`: SEV/SEV-ES guest pages (no RMP).
    func privateOwner(_ f: UInt64, sevPrivate: [UInt64: (KeyID, String)] = [:]) -> (tag: KeyID?, who: String)? {
        let pfn = PFN(f)
        if let m = kernel.machine.tdx, m.pageType(pfn) != .nda {
            // A PAMT page holds the module's data only once TDH.SYS.TDMR.INIT starts writing it:
            // before, the KeyID-0 lines the kernel writes back (tdx_enable's WBINVD) overwrite
            // nothing; from then on, one written back (no WBINVD first) overwrites the module's.
            if m.pageType(pfn) == .rsvd, !m.tdmrInitStarted { return nil }
            return (m.ownerKeyID(pfn), "TDX-module \(m.pageType(pfn))")
        }
        if let s = kernel.machine.sev, let e = s.entry(pfn) {
            return e.asid == 0 ? (nil, "SNP firmware page") : (kernel.machine.config.asidTag(e.asid), "RMP-assigned to ASID \(e.asid)")
        }
        if let p = sevPrivate[f] { return (p.0, p.1) }
        return nil
    }

    /// SEV and SEV-ES guests' pages (private without an RMP entry).
    func sevPrivateFrames() -> [UInt64: (KeyID, String)] {
        var out: [UInt64: (KeyID, String)] = [:]
        for vm in kernel.cvm.liveVMs where vm.type == .sev || vm.type == .sevES {
            guard let a = vm.asid else { continue }
            for (_, f) in vm.privatePages { out[f.rawValue] = (kernel.machine.config.asidTag(a), "\(vm.type) guest \(vm.handle) (ASID \(a))") }
        }
        return out
    }

    // MARK: observers

    func attachCVM() {
        let m = kernel.machine
        cvm.active = m.tdx != nil || m.sev != nil
        guard cvm.active else { return }
        cvm.previousCVM = kernel.cvm.observer
        let prevCVM = cvm.previousCVM
        kernel.cvm.observer = { [weak self] e in
            prevCVM?(e)
            switch e {
            case .keyIDReturned(let k): self?.checkKeyIDReturned(k)
            case .asidsRecycled(let list): for a in list { self?.checkASIDReuse(a, "recycled (moved to the free bitmap)", firmware: true) }
            }
        }
        if let t = m.tdx {
            cvm.previousTDX = t.observer
            let prev = cvm.previousTDX
            t.observer = { [weak self] e in
                prev?(e)
                if case .keyConfigured(let k, _) = e { self?.checkLinesUnder(k, "keyed for a new owner (TDH.*.KEY.CONFIG)") }
            }
        }
        if let s = m.sev {
            cvm.previousSEV = s.observer
            let prev = cvm.previousSEV
            s.observer = { [weak self] e in
                prev?(e)
                if case .activated(let a) = e { self?.checkASIDReuse(a, "activated for a new guest", firmware: false) }
            }
        }
        if let i = m.integrity {
            cvm.previousIntegrity = i.observer
            let prev = cvm.previousIntegrity
            i.observer = { [weak self] e in
                prev?(e)
                self?.noteIntegrity(e)
            }
        }
    }

    func detachCVM() {
        guard cvm.active else { return }
        let m = kernel.machine
        kernel.cvm.observer = cvm.previousCVM
        m.tdx?.observer = cvm.previousTDX
        m.sev?.observer = cvm.previousSEV
        m.integrity?.observer = cvm.previousIntegrity
    }

    /// Called from the cache observer on every fill.
    func noteCVMFill(_ pa: PhysAddr, _ k: KeyID) {
        guard cvm.active, !isCVMTag(k), cvm.hostFills.count < 64, let owner = privateOwner(pa.pfn.rawValue), owner.tag != k else { return }
        cvm.hostFills.append((pa.rawValue, k, owner.who))
    }

    /// Called from the cache observer on every write-back.
    func noteCVMWriteBack(_ pa: PhysAddr, _ k: KeyID) {
        guard cvm.active else { return }
        let f = pa.pfn.rawValue
        if let owner = privateOwner(f) {
            if owner.tag != k, cvm.foreignWriteBacks.count < 64 { cvm.foreignWriteBacks.append((pa.rawValue, k, owner.who)) }
        } else if isCVMTag(k), cvm.guestWriteBacks.count < 64 {
            if cvm.heldThisCall == nil { cvm.heldThisCall = kernel.cvm.heldFrames() }
            if cvm.heldThisCall?[f] == nil { cvm.guestWriteBacks.append((pa.rawValue, k)) }
        }
    }

    /// Lines cached under `tag`: (count, dirty, example PA).
    func linesUnder(_ tag: KeyID) -> (Int, Int, UInt64?) {
        var n = 0, dirty = 0
        var example: UInt64?
        kernel.machine.cache.forEachLine { pa, k, d in
            guard k == tag else { return }
            n += 1
            if d { dirty += 1 }
            if example == nil || d { example = example ?? pa.rawValue }
        }
        return (n, dirty, example)
    }

    private func checkLinesUnder(_ k: KeyID, _ what: String) {
        guard options.enabled.contains(.cvmIDReuseWhileHeld) else { return }
        let (n, dirty, ex) = linesUnder(k)
        if n > 0 {
            report(.cvmIDReuseWhileHeld, key: "lines:\(k.rawValue):\(callsChecked)",
                   "\(tagName(k)) was \(what) while \(n) cache line(s) (\(dirty) dirty) were still held under it, e.g. PA \(Fmt.hex(ex ?? 0)) (\(Fmt.pfn(PhysAddr(ex ?? 0).pfn)))")
        }
    }

    private func checkKeyIDReturned(_ k: KeyID) {
        guard options.enabled.contains(.cvmIDReuseWhileHeld), let m = kernel.machine.tdx else { return }
        if let tdr = m.tdr(holding: k) {
            report(.cvmIDReuseWhileHeld, key: "kot:\(k.rawValue):\(callsChecked)",
                   "TDX \(k) went back to KVM's KeyID pool while the TDX module still assigns it to the TD of TDR \(Fmt.pfn(tdr)) (no TDH.PHYMEM.CACHE.WB + TDH.MNG.KEY.FREEID yet)")
        }
        let leaked = Set(kernel.cvm.leakedFrames)
        let pages = m.privatePages(of: k).filter { !leaked.contains($0) }
        if let first = pages.first {
            report(.cvmIDReuseWhileHeld, key: "pages:\(k.rawValue):\(callsChecked)",
                   "TDX \(k) went back to KVM's KeyID pool while \(pages.count) private page(s) still use it, e.g. \(Fmt.pfn(first))")
        }
        checkLinesUnder(k, "returned to KVM's KeyID pool (tdx_guest_keyid_free)")
    }

    private func checkASIDReuse(_ a: Int, _ what: String, firmware: Bool) {
        guard options.enabled.contains(.cvmIDReuseWhileHeld) else { return }
        let tag = kernel.machine.config.asidTag(a)
        if firmware, let s = kernel.machine.sev, s.state(ofASID: a) != .free {
            report(.cvmIDReuseWhileHeld, key: "fw:\(a):\(callsChecked)",
                   "ASID \(a) was \(what) while the SEV firmware still has it \(s.state(ofASID: a).rawValue) (no WBINVD + DF_FLUSH since its DEACTIVATE)")
        }
        if let s = kernel.machine.sev {
            let leaked = Set(kernel.cvm.leakedFrames)
            let pages = s.frames(assignedTo: a).filter { !leaked.contains($0) }
            if let first = pages.first {
                report(.cvmIDReuseWhileHeld, key: "rmp:\(a):\(callsChecked)",
                       "ASID \(a) was \(what) while the RMP still assigns \(pages.count) page(s) to it, e.g. \(Fmt.pfn(first))")
            }
        }
        checkLinesUnder(tag, what)
    }

    private func noteIntegrity(_ e: IntegrityEvent) {
        switch e {
        case .fullWrite(let pa, _):
            cvm.partialWritten.remove(pa.rawValue)
        case .partialWrite(let pa, let k, _, let path):
            if !kernel.machine.keyTable.isTDXPrivate(k) { cvm.partialWritten.insert(pa.rawValue) }
            if options.enabled.contains(.hostAccessToPrivatePage), !isCVMTag(k), let owner = privateOwner(pa.pfn.rawValue) {
                report(.hostAccessToPrivatePage, key: "nt:\(pa.pfn.rawValue)",
                       "\(path) made a partial write through \(k) to line \(Fmt.hex(pa.rawValue)) of \(Fmt.pfn(pa.pfn)), private (\(owner.who))")
            }
        case .machineCheck(let pa, let k):
            if options.enabled.contains(.poisonWithoutPartialWrite), !cvm.partialWritten.contains(pa.rawValue) {
                report(.poisonWithoutPartialWrite, key: "mc:\(pa.rawValue)",
                       "a read through \(k) of line \(Fmt.hex(pa.rawValue)) (\(Fmt.pfn(pa.pfn))) raised a machine check, but no partial write hit that line")
            }
        }
    }

    // MARK: after every call

    /// The event findings of the call (host fills) and the integrity comparison.
    func checkCVMAfterCall() {
        guard cvm.active else { return }
        if options.enabled.contains(.hostAccessToPrivatePage) {
            for (pa, k, who) in cvm.hostFills {
                report(.hostAccessToPrivatePage, key: "fill:\(pa >> pageShift):\(k.rawValue)",
                       "line \(Fmt.hex(pa)) of \(Fmt.pfn(PhysAddr(pa).pfn)), private (\(who)), was read from memory through host \(k)")
            }
        }
        cvm.hostFills.removeAll(keepingCapacity: true)
        if options.enabled.contains(.hostAccessToPrivatePage) {
            for (pa, k, who) in cvm.foreignWriteBacks {
                report(.hostAccessToPrivatePage, key: "wb:\(pa >> pageShift):\(k.rawValue)",
                       "a dirty line under \(tagName(k)) was written back over line \((pa >> 6) & 63) (PA \(Fmt.hex(pa))) of \(Fmt.pfn(PhysAddr(pa).pfn)), private (\(who)): the owner's data is overwritten")
            }
        }
        if options.enabled.contains(.guestStateOnHostPage) {
            let alloc = kernel.allocator
            for (pa, k) in cvm.guestWriteBacks {
                let f = PhysAddr(pa).pfn
                report(.guestStateOnHostPage, key: "dirty:\(f.rawValue):\(k.rawValue)",
                       "a dirty line under \(tagName(k)) was written back over line \((pa >> 6) & 63) (PA \(Fmt.hex(pa))) of \(Fmt.pfn(f)) (\(alloc.refcount(f) > 0 ? "allocated, refcount \(alloc.refcount(f))" : "free")), which belongs to the host")
            }
        }
        cvm.foreignWriteBacks.removeAll(keepingCapacity: true)
        cvm.guestWriteBacks.removeAll(keepingCapacity: true)
        cvm.heldThisCall = nil
        if options.enabled.contains(.poisonWithoutPartialWrite), let i = kernel.machine.integrity, i.poisonedLines > 0 {
            for (line, by) in i.poisonedBy.sorted(by: { $0.key < $1.key }) where !cvm.partialWritten.contains(line) {
                report(.poisonWithoutPartialWrite, key: "poison:\(line)",
                       "line \(Fmt.hex(line)) (\(Fmt.pfn(PhysAddr(line).pfn))) is poisoned (by \(by.path) through \(by.keyid)) but no non-TD partial write hit it since its last full write")
            }
        }
    }

    // MARK: with the sweep

    /// Frames the confidential-VM host holds become exempt from the MKTME page_keyid checks.
    func exemptCVMFrames() {
        guard cvm.active else { return }
        cvmExempt.removeAll(keepingCapacity: true)
        for f in kernel.cvm.heldFrames().keys { cvmExempt.insert(f) }
        if let m = kernel.machine.tdx { for f in m.ownedFrames { cvmExempt.insert(f.rawValue) } }
        if let s = kernel.machine.sev { for f in s.assignedFrames { cvmExempt.insert(f.rawValue) } }
    }

    /// The structural confidential-VM checks (after every call while a TDX module or SEV firmware is up).
    func sweepCVM(_ work: inout Int) {
        guard cvm.active else { return }
        let m = kernel.machine
        let held = kernel.cvm.heldFrames()
        let sevPrivate = sevPrivateFrames()
        var privateFrames: [UInt64] = []
        if let t = m.tdx { privateFrames += t.ownedFrames.map(\.rawValue) }
        if let s = m.sev { privateFrames += s.assignedFrames.map(\.rawValue) }
        privateFrames += sevPrivate.keys
        work += privateFrames.count + held.count
        // private-page-in-direct-map
        if options.enabled.contains(.privatePageInDirectMap), let s = m.sev {
            for f in s.assignedFrames where !kernel.cvm.isOutOfDirectMap(f) {
                report(.privatePageInDirectMap, key: "\(f.rawValue)",
                       "\(Fmt.pfn(f)) is assigned in the RMP (\(s.entry(f).map { $0.asid == 0 ? "firmware page" : "ASID \($0.asid), GPA \(Fmt.hex($0.gpa)), \($0.level)" } ?? "?")) but still mapped in the host's direct map")
                break
            }
        }
        // private-page-freed
        if options.enabled.contains(.privatePageFreed) {
            for f in privateFrames.sorted() where !model.allocated.contains(f) {
                let owner = privateOwner(f, sevPrivate: sevPrivate)
                report(.privatePageFreed, key: "\(f)", "\(Fmt.pfn(PFN(f))) is private (\(owner?.who ?? "?")) but free in the host's page allocator")
                break
            }
        }
        // One pass over the cache: foreign lines on private frames, guest lines on host frames.
        work += m.cache.lineCount / 16
        var foreign: [(UInt64, KeyID, Bool, String, KeyID?)] = []
        var guestDirty: [(UInt64, KeyID)] = []
        let checkForeign = options.enabled.contains(.hostAccessToPrivatePage)
        let checkGuest = options.enabled.contains(.guestStateOnHostPage)
        // A clean line under the ASID of a destroyed guest (waiting for WBINVD + DF_FLUSH, or
        // leaked after a failed DEACTIVATE) is harmless: it is never written back, and no access
        // uses that ASID before the flush that drops it (KVM's WBNOINVD at destruction leaves
        // exactly such lines; the ASID's reuse is cvm-id-reuse-while-held's to check).
        let liveASIDs = Set(kernel.cvm.liveVMs.compactMap(\.asid))
        func stale(_ k: KeyID, _ dirty: Bool) -> Bool {
            guard !dirty, let a = m.config.asid(ofTag: k) else { return false }
            return !liveASIDs.contains(a)
        }
        m.cache.forEachLine { pa, k, dirty in
            let f = pa.rawValue >> pageShift
            if let owner = privateOwner(f, sevPrivate: sevPrivate) {
                if checkForeign, owner.tag != k, foreign.count < 8, !stale(k, dirty) { foreign.append((pa.rawValue, k, dirty, owner.who, owner.tag)) }
            } else if checkGuest, dirty, isCVMTag(k), held[f] == nil, guestDirty.count < 8 {
                guestDirty.append((pa.rawValue, k))
            }
        }
        var seen = Set<UInt64>()
        for (pa, k, dirty, who, tag) in foreign where seen.insert(pa >> pageShift).inserted {
            report(.hostAccessToPrivatePage, key: "line:\(pa >> pageShift):\(k.rawValue)",
                   "\(Fmt.pfn(PhysAddr(pa).pfn)), private (\(who)\(tag.map { ", lines under \(tagName($0))" } ?? "")), has line \((pa >> 6) & 63) (PA \(Fmt.hex(pa))) held under \(tagName(k))\(dirty ? " dirty" : " clean")")
        }
        seen.removeAll()
        let alloc = kernel.allocator
        for (pa, k) in guestDirty where seen.insert(pa >> pageShift).inserted {
            let f = PhysAddr(pa).pfn
            report(.guestStateOnHostPage, key: "dirty:\(f.rawValue):\(k.rawValue)",
                   "\(Fmt.pfn(f)) (\(model.allocated.contains(f.rawValue) ? "allocated, refcount \(alloc.refcount(f))" : "free")) belongs to the host but line \((pa >> 6) & 63) (PA \(Fmt.hex(pa))) is still dirty under \(tagName(k)): its write-back would overwrite the host's data with the guest's ciphertext")
        }
        // Integrity: TD-owned or poisoned lines on host pages.
        if checkGuest, let i = m.integrity {
            for f in i.framesWithState where held[f.rawValue] == nil && privateOwner(f.rawValue) == nil {
                let (td, poison) = i.state(of: f)
                guard poison != 0 || (td != 0 && m.config.tdxPartialWriteErratum) else { continue }
                var detail = "\(Fmt.pfn(f)) (\(model.allocated.contains(f.rawValue) ? "allocated, refcount \(alloc.refcount(f))" : "free")) belongs to the host but has \(td.nonzeroBitCount) TD-owned and \(poison.nonzeroBitCount) poisoned line(s)"
                if poison != 0 {
                    let line = UInt64(poison.trailingZeroBitCount)
                    let pa = f.physAddr.rawValue + line * 64
                    if let by = i.poisonedBy[pa] { detail += "; line \(line) was poisoned by \(by.path) through \(by.keyid)" }
                    detail += ": a later read machine-checks"
                } else {
                    detail += ": it was not reset with MOVDIR64B, so a partial write will poison it (X86_BUG_TDX_PW_MCE)"
                }
                report(.guestStateOnHostPage, key: "integrity:\(f.rawValue)", detail)
                break
            }
        }
    }
}
