// InvariantChecker: watches one kernel model and reports broken invariants (Invariant.swift,
// docs/invariants.md) after every call it is told about, with the page, line, KeyID, VMA and
// call that show the problem.
//
// How it sees the model: read-only walks of page tables, VMAs, struct pages, the KeyID table and
// the cache after each call (`afterCall`), a snapshot before mprotect-family calls
// (`beforeCall`), two observers (the cache's fills, write-backs and invalidations; the KeyID
// references' events, for reprogramming), the bytes of mem_write/mem_read calls (the
// plaintext-provenance shadow, PlaintextShadow.swift), and the kernel's touch log (what each call
// touched: KeyMMHardware/TouchLog.swift).
//
// After every call every invariant is checked. With `incremental` on (the default), only what the
// call touched is re-checked — the entries, frames, cache lines, VMAs and KeyIDs it changed, read
// through the shadow the checker keeps of the model (CheckerShadow.swift) — and the full sweep
// (every mm's page tables, every allocated frame, the cache, the KeyID counts) runs every
// `sweepEvery` calls as a cross-check: it rebuilds the shadow from scratch, records any
// difference from the incrementally kept one in `shadowMismatches` (a touch the log missed), and
// checks everything. A check with no incremental form runs in full after every call
// (InvariantFamily.swift). With `incremental` off there is no touch log and the full sweep runs
// after every call (the reference the incremental checks are tested against).
//
// Invariants of the checker itself: it never changes the model (no faults, no cache fills or
// LRU updates, no cost-clock charges), so a run gives bit-for-bit the same results with the
// checker on or off, incremental or not; each distinct problem (invariant + object) is reported
// once; the violations of one call come out in Invariant priority order, and within an invariant
// in the full sweep's order (mm by pid, then address; frames by PFN).
import KeyMMBase
import KeyMMHardware
import KeyMMKeys
import KeyMMKernel

/// Tuning of the checker.
public struct CheckerOptions: Sendable {
    /// The full sweep every N calls (1: after every call); the incremental checks run after every
    /// other call. nil: adaptive — every call while a sweep is small, less often as the model
    /// grows (deterministic: from the size of the last sweep). Without `incremental`, ignored:
    /// the full sweep runs after every call.
    public var sweepEvery: Int? = nil
    /// Re-check after each call only what the call touched (the touch log). Off: the full sweep
    /// after every call. Machines beyond 16 GiB always run full sweeps (the shadow is dense).
    public var incremental = true
    /// Invariants to check (default: all).
    public var enabled: Set<Invariant> = Set(Invariant.allCases)
    /// Violations reported per call at most (the rest are counted in `suppressed`).
    public var maxPerCall = 32
    /// Work units (entries + frames + cache probes) an adaptive sweep may spend per call.
    public var adaptiveBudget = 200_000
    /// Finer point inside calls: every cache fill (a read that misses) is checked as it happens:
    /// a line read through a KeyID other than its frame's page_keyid is `stale-cache-line`.
    public var checkFills = true
    public init() {}
}

/// Checks the invariants of one kernel.
public final class InvariantChecker {
    public let kernel: Kernel
    public var options: CheckerOptions
    /// Every violation reported so far, in report order.
    public private(set) var violations: [Violation] = []
    /// Violations not reported because a call already had `maxPerCall`.
    public private(set) var suppressed = 0
    /// Calls checked and full sweeps run.
    public private(set) var callsChecked = 0
    public private(set) var sweeps = 0
    /// Calls checked incrementally (no full sweep after them).
    public private(set) var incrementalCalls = 0
    /// Differences a full sweep found between the shadow kept from the touch log and a fresh walk
    /// of the model (each a touch the log missed; empty when incremental checking is exact).
    public internal(set) var shadowMismatches: [String] = []
    /// Size of the last sweep (entries + frames + cache probes): what adaptive scheduling uses.
    public private(set) var lastSweepWork = 0
    /// Whether this call's full sweep cross-checks the incrementally kept shadow.
    var crossChecking = false
    /// Whether calls are checked incrementally (a touch log is attached).
    public var isIncremental: Bool { touchLog != nil }

    // Found during the current call (observers, call checks, sweep).
    struct Finding { var invariant: Invariant; var key: String; var detail: String }
    var found: [Finding] = []
    var reportedKeys = Set<String>()
    var callsSinceSweep = 0
    var currentSite: CallSite?

    // Observer state.
    var programmedDuringCall: [(keyid: KeyID, what: String, others: Int)] = []
    /// The cache observer's per-call records (CacheEventTap.swift).
    let tap: CacheEventTap
    var previousCacheObserver: ((CacheEvent) -> Void)?
    var previousKeyIDObserver: ((KeyIDEvent) -> Void)?
    var previousSGXObserver: ((SGXEvent) -> Void)?
    /// SGX: digests of the pages written back (SGXChecks.swift), and driver anomalies reported so far.
    var sealedDigests: [SealedKey: UInt64] = [:]
    var sgxAnomaliesSeen = 0
    /// The SGX driver's `version` when its structural checks last ran (SGXChecks.swift).
    var sgxCheckedVersion: UInt64 = .max
    var attached = false

    // Per-check state.
    var protSnapshot: [(va: VirtAddr, pfn: PFN, keyid: KeyID)] = []
    var protSnapshotPid: ProcessID?
    var shadow = PlaintextShadow()
    var allocatorAnomaliesSeen = 0
    var keyidAnomaliesSeen = 0
    /// What the checker remembers of the model (entries, census, frames, layouts).
    let model: CheckerShadow
    /// The kernel's touch log while checking incrementally.
    let touchLog: TouchLog?
    /// Plug-in families of invariants (InvariantFamily.swift), checked after the built-in ones.
    var families: [InvariantFamily] = []
    /// The confidential-VM checks' state (CVMChecks.swift).
    var cvm = CVMCheckState()
    /// Frames the confidential-VM host holds (TDX-owned, RMP-assigned, held by KVM/the firmware):
    /// exempt from the MKTME page_keyid rules, refreshed after every call (CVMChecks.swift).
    var cvmExempt = Set<UInt64>()

    /// A checker for `kernel`; attaches its observers (and the touch log) at once: call it before
    /// the first call.
    public init(kernel: Kernel, options: CheckerOptions = CheckerOptions()) {
        self.kernel = kernel
        self.options = options
        model = CheckerShadow(kernel: kernel)
        tap = CacheEventTap(engine: kernel.machine.engine, alloc: kernel.allocator, model: model,
                            osMemory: kernel.machine.config.memory.rawValue,   // the EPC above it has no struct page
                            checkFills: options.checkFills && options.enabled.contains(.staleCacheLine))
        let frames = kernel.machine.frameCount
        touchLog = options.incremental && frames <= 1 << 22 ? TouchLog(frameCount: frames) : nil
        allocatorAnomaliesSeen = kernel.allocator.anomalies.count
        keyidAnomaliesSeen = kernel.keys.references.anomalies.count
        sgxAnomaliesSeen = kernel.sgx?.anomalies.count ?? 0
        attach()
        model.syncMMs()
        lastSweepWork = model.rebuild()
    }

    deinit { detach() }

    /// Installs the cache and KeyID observers (chaining any already installed) and the touch log.
    func attach() {
        guard !attached else { return }
        attached = true
        previousCacheObserver = kernel.machine.cache.observer
        let prevCache = previousCacheObserver
        let tap = self.tap
        tap.checker = self
        if let prevCache {
            kernel.machine.cache.observer = { event in prevCache(event); tap.record(event) }
        } else {
            kernel.machine.cache.observer = { event in tap.record(event) }
        }
        previousKeyIDObserver = kernel.keys.references.onKeyIDEvent
        let prevKeys = previousKeyIDObserver
        kernel.keys.references.onKeyIDEvent = { [weak self] event in
            prevKeys?(event)
            tap.keyidReferencesMoved = true
            if case .programmed(let k, let kind, let status, _, let others) = event, status == .success {
                self?.programmedDuringCall.append((k, "\(kind)", others))
                self?.checkCachedLinesAtProgramming(k, "\(kind)")
            }
        }
        if let touchLog { kernel.attachTouchLog(touchLog) }
        attachCVM()
        tap.cvmActive = cvm.active
        attachSGXObserver()   // SGXChecks.swift
    }

    /// Removes the observers (restoring the ones found at attach) and the touch log.
    public func detach() {
        guard attached else { return }
        attached = false
        kernel.machine.cache.observer = previousCacheObserver
        kernel.keys.references.onKeyIDEvent = previousKeyIDObserver
        if touchLog != nil { kernel.attachTouchLog(nil) }
        detachCVM()
        detachSGXObserver()
    }

    /// A frame exempt from the page_keyid rules: mapped by a special entry, or held by the
    /// confidential-VM host.
    @inline(__always) func isExempt(_ f: UInt64) -> Bool {
        model.isExempt(f) || (!cvmExempt.isEmpty && cvmExempt.contains(f))
    }

    // MARK: reporting

    /// Records a finding (once per key over the whole run).
    func report(_ inv: Invariant, key: String, _ detail: @autoclosure () -> String) {
        guard options.enabled.contains(inv) else { return }
        let k = inv.rawValue + "|" + key
        guard !reportedKeys.contains(k) else { return }
        reportedKeys.insert(k)
        found.append(Finding(invariant: inv, key: k, detail: detail()))
    }

    /// Turns the findings of this call into violations (priority order, capped).
    func flush(site: CallSite?) -> [Violation] {
        guard !found.isEmpty else { return [] }
        let sorted = found.enumerated().sorted { a, b in
            a.element.invariant.priority != b.element.invariant.priority
                ? a.element.invariant.priority < b.element.invariant.priority : a.offset < b.offset
        }.map(\.element)
        found.removeAll(keepingCapacity: true)
        var out: [Violation] = []
        for f in sorted {
            if out.count >= options.maxPerCall { suppressed += 1; continue }
            out.append(Violation(f.invariant, f.detail, site: site))
        }
        violations.append(contentsOf: out)
        return out
    }

    // MARK: the call protocol

    /// Before a call: snapshots what the call must not change (mprotect family: entry KeyIDs).
    public func beforeCall(_ call: CheckedCall) {
        currentSite = call.site
        programmedDuringCall.removeAll(keepingCapacity: true)
        tap.clear()
        protSnapshot.removeAll(keepingCapacity: true)
        protSnapshotPid = nil
        if call.kind == .protectionChange, options.enabled.contains(.mprotectChangedEncryption) {
            snapshotProtection(call)
        }
    }

    /// After a call: brings the shadow up to date (from the touch log, or by the full sweep when
    /// it is due), then runs every check — on what the call touched, or on everything after a full
    /// sweep. Returns the new violations (also appended to `violations`).
    @discardableResult
    public func afterCall(_ call: CheckedCall, outcome: CheckedOutcome) -> [Violation] {
        currentSite = call.site
        callsChecked += 1
        callsSinceSweep += 1
        let full = update(forceFull: touchLog == nil || sweepDue())
        checkLayout(call, full: full)
        checkKeyIDProgramming()
        switch call.kind {
        case .protectionChange: checkProtectionSnapshot()
        case .memWrite: recordWrite(call, outcome)
        case .memRead: checkRead(call, outcome)
        case .map: checkNewMapping(call, outcome)
        default: break
        }
        checkPlaintextWriteBacks()
        checkFills()
        checkCVMAfterCall()
        checkSGXAnomalies()
        checkStructure(full: full)
        endCall()
        return flush(site: call.site)
    }

    /// Runs every check now (the full sweep plus the DRAM scan of the shadow); for tests and
    /// the end of a run.
    @discardableResult
    public func fullCheck(site: CallSite? = nil) -> [Violation] {
        currentSite = site
        _ = update(forceFull: true)
        checkLayout(nil, full: true)
        checkKeyIDProgramming()
        checkPlaintextWriteBacks()
        checkSGXAnomalies()
        checkStructure(full: true)
        checkShadowAgainstDRAM()
        endCall()
        return flush(site: site)
    }

    func sweepDue() -> Bool {
        if let n = options.sweepEvery { return callsSinceSweep >= max(n, 1) }
        let interval = max(1, lastSweepWork / max(options.adaptiveBudget, 1))
        return callsSinceSweep >= interval
    }

    /// Brings the shadow up to date: replays the touch log, and when `forceFull` (or the log cannot
    /// say) rebuilds it with a full walk, comparing the two. Returns whether this call gets the
    /// full checks.
    func update(forceFull: Bool) -> Bool {
        var full = forceFull
        var before: ShadowDigest?
        crossChecking = false
        if let log = touchLog {
            if model.apply(log) {
                if full { before = ShadowDigest(model); crossChecking = true }
            } else {
                full = true
            }
        }
        if full {
            lastSweepWork = model.rebuild()
            if let before { compareShadow(before, ShadowDigest(model)) }
            sweeps += 1
            callsSinceSweep = 0
        } else {
            incrementalCalls += 1
        }
        return full
    }

    /// The checks of the model's structure: entries, frames, KeyID counts, cache, zero pages, the
    /// allocator, and the plug-in families.
    func checkStructure(full: Bool) {
        var work = 0
        checkEntries(full: full)
        checkFrameAccounting(full: full)
        checkKeyIDBalance()
        exemptCVMFrames()
        checkCache(full: full, &work)
        sweepCVM(&work)   // CVMChecks.swift: after every call while a TDX module or SEV firmware is up
        checkZeroPages(full: full)
        checkAllocator(full: full)
        checkSGX(model.epcLeaves(), full: full, &work)   // SGXChecks.swift
        for f in families {
            if full || touchLog == nil { f.checkAll(self) } else { f.checkTouched(self, touchLog!) }
        }
        if full { lastSweepWork += work }
    }

    /// Forgets the call: observer lists, the shadow's work lists, the touch log.
    func endCall() {
        programmedDuringCall.removeAll(keepingCapacity: true)
        tap.clear()
        tap.keyidReferencesMoved = false
        tap.watchInvalidations = !model.staleFrames.isEmpty || !model.zeroSuspect.isEmpty
        model.clearWork()
        touchLog?.clear()
    }

    /// Records what a full sweep found different from the incrementally kept shadow.
    func compareShadow(_ kept: ShadowDigest, _ fresh: ShadowDigest) {
        let diffs = kept.differences(from: fresh)
        guard !diffs.isEmpty else { return }
        let at = currentSite.map { " after call \($0.index) (\($0.call))" } ?? ""
        for d in diffs where shadowMismatches.count < 100 { shadowMismatches.append(d + at) }
    }
}

/// What a full sweep compares between the shadow kept from the touch log and a fresh one.
struct ShadowDigest {
    var entries: [UInt32: UInt64] = [:]
    var uses: [Int32]
    var special: [Int32]
    var frameState: [UInt32]
    var pagesPerKeyID: [Int]
    var extra: [UInt64: Int]
    var farUses: [UInt64: Int32]

    init(_ s: CheckerShadow) {
        for slot in s.order {
            var h: UInt64 = 0
            for k in s.entries(slot, 0, userAddressLimit &+ UInt64(pageSize)) {
                let c = s.entryCode(slot, k >> 1, huge: k & 1 == 0)
                h = h &+ (k &* 0x9E37_79B9_7F4A_7C15 ^ c) &* 0xBF58_476D_1CE4_E5B9
            }
            entries[s.mms[slot].owner == 0 ? UInt32(slot) | 1 << 31 : s.mms[slot].owner] = h
        }
        uses = s.uses; special = s.special; frameState = s.frameState
        pagesPerKeyID = s.pagesPerKeyID; extra = s.extra; farUses = s.farUses
    }

    func differences(from fresh: ShadowDigest) -> [String] {
        var out: [String] = []
        if entries != fresh.entries { out.append("page-table entries differ (kept \(entries.count) mms, walked \(fresh.entries.count))") }
        // Concrete element types (a generic comparison here ran unspecialized, per element).
        func firstDifference(_ a: [Int32], _ b: [Int32]) -> Int? {
            if a.count != b.count { return min(a.count, b.count) }
            for i in a.indices where a[i] != b[i] { return i }
            return nil
        }
        func firstDifference(_ a: [UInt32], _ b: [UInt32]) -> Int? {
            if a.count != b.count { return min(a.count, b.count) }
            for i in a.indices where a[i] != b[i] { return i }
            return nil
        }
        func report(_ name: String, _ i: Int?, _ kept: (Int) -> String, _ walked: (Int) -> String) {
            guard let i else { return }
            out.append("\(name) differs first at PFN 0x\(String(i, radix: 16)) (kept \(kept(i)), walked \(walked(i)))")
        }
        let u = firstDifference(uses, fresh.uses), sp = firstDifference(special, fresh.special)
        let fs = firstDifference(frameState, fresh.frameState)
        func at<T>(_ a: [T], _ i: Int) -> String { i < a.count ? "\(a[i])" : "none" }
        report("entries per frame", u, { at(self.uses, $0) }, { at(fresh.uses, $0) })
        report("special entries per frame", sp, { at(self.special, $0) }, { at(fresh.special, $0) })
        report("frame state (allocated, PG_ksm, page_keyid)", fs, { at(self.frameState, $0) }, { at(fresh.frameState, $0) })
        if pagesPerKeyID != fresh.pagesPerKeyID { out.append("pages per KeyID differ (kept \(pagesPerKeyID), walked \(fresh.pagesPerKeyID))") }
        if extra != fresh.extra { out.append("pin and page-cache references differ") }
        if farUses != fresh.farUses { out.append("entries beyond memory differ") }
        return out
    }
}
