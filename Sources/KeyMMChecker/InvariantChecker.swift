// InvariantChecker: watches one kernel model and reports broken invariants (Invariant.swift,
// docs/invariants.md) after every call it is told about, with the page, line, KeyID, VMA and
// call that show the problem.
//
// How it sees the model: read-only walks of page tables, VMAs, struct pages, the KeyID table and
// the cache after each call (`afterCall`), a snapshot before mprotect-family calls
// (`beforeCall`), two observers (the cache's write-backs, for DRAM plaintext; the KeyID
// references' events, for reprogramming), and the bytes of mem_write/mem_read calls (the
// plaintext-provenance shadow, PlaintextShadow.swift). The full sweep (every mm's page tables,
// every allocated frame, the cache, the KeyID counts, the allocator's self-check) runs every
// `sweepEvery` calls (default: every call; `nil`: adaptive, from the size of the last sweep).
//
// Invariants of the checker itself: it never changes the model (no faults, no cache fills or
// LRU updates, no cost-clock charges), so a run gives bit-for-bit the same results with the
// checker on or off; each distinct problem (invariant + object) is reported once; the
// violations of one call come out in Invariant priority order.
import KeyMMBase
import KeyMMHardware
import KeyMMKeys
import KeyMMKernel

/// Tuning of the checker.
public struct CheckerOptions: Sendable {
    /// Full sweep every N calls (1: after every call). nil: adaptive — every call while a sweep is
    /// small, less often as the model grows (deterministic: from the size of the last sweep).
    public var sweepEvery: Int? = nil
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
    /// Size of the last sweep (entries + frames + cache probes): what adaptive scheduling uses.
    public private(set) var lastSweepWork = 0

    // Found during the current call (observers, call checks, sweep).
    struct Finding { var invariant: Invariant; var key: String; var detail: String }
    var found: [Finding] = []
    var reportedKeys = Set<String>()
    var callsSinceSweep = 0
    var currentSite: CallSite?

    // Observer state.
    var programmedDuringCall: [(keyid: KeyID, what: String, others: Int)] = []
    var plaintextWriteBacks: [UInt64] = []
    /// Fills through a KeyID other than the frame's page_keyid: (line address, KeyID, page_keyid).
    var wrongKeyIDFills: [(UInt64, KeyID, KeyID)] = []
    var previousCacheObserver: ((CacheEvent) -> Void)?
    var previousKeyIDObserver: ((KeyIDEvent) -> Void)?
    var previousSGXObserver: ((SGXEvent) -> Void)?
    /// SGX: digests of the pages written back (SGXChecks.swift), and driver anomalies reported so far.
    var sealedDigests: [SealedKey: UInt64] = [:]
    var sgxAnomaliesSeen = 0
    var attached = false

    // Per-check state.
    var lastLayout: [ObjectIdentifier: [VMAKeyRange]] = [:]
    /// The mms `lastLayout` describes, kept alive so their identifiers are not reused.
    var layoutOwners: [MM] = []
    var protSnapshot: [(va: VirtAddr, pfn: PFN, keyid: KeyID)] = []
    var protSnapshotPid: ProcessID?
    var shadow = PlaintextShadow()
    var allocatorAnomaliesSeen = 0
    var keyidAnomaliesSeen = 0
    var allocated: FrameBitmap
    let frameUses: FrameUseTable
    var exempt: FrameBitmap
    /// The confidential-VM checks' state (CVMChecks.swift).
    var cvm = CVMCheckState()

    /// A checker for `kernel`; attaches its observers at once (call before the first call).
    public init(kernel: Kernel, options: CheckerOptions = CheckerOptions()) {
        self.kernel = kernel
        self.options = options
        allocated = FrameBitmap(frames: kernel.machine.frameCount)
        exempt = FrameBitmap(frames: kernel.machine.frameCount)
        frameUses = FrameUseTable(frames: kernel.machine.frameCount)
        allocatorAnomaliesSeen = kernel.allocator.anomalies.count
        keyidAnomaliesSeen = kernel.keys.references.anomalies.count
        sgxAnomaliesSeen = kernel.sgx?.anomalies.count ?? 0
        attach()
        lastLayout = currentLayout()
    }

    deinit { detach() }

    /// Installs the cache and KeyID observers (chaining any already installed).
    func attach() {
        guard !attached else { return }
        attached = true
        let engine = kernel.machine.engine
        let alloc = kernel.allocator
        let fills = options.checkFills && options.enabled.contains(.staleCacheLine)
        let osMemory = kernel.machine.config.memory.rawValue   // the EPC above it has no struct page
        previousCacheObserver = kernel.machine.cache.observer
        let prevCache = previousCacheObserver
        kernel.machine.cache.observer = { [weak self] event in
            prevCache?(event)
            switch event {
            case .writeBack(let pa, let k):
                if engine.isPlaintext(k) { self?.plaintextWriteBacks.append(pa.rawValue >> 6) }
                self?.noteCVMWriteBack(pa, k)
            case .fill(let pa, let k):
                self?.noteCVMFill(pa, k)
                guard fills, pa.rawValue < osMemory else { return }
                let pk = alloc.pageKeyID(pa.pfn)
                if pk != k, let self, !self.exempt.contains(pa.pfn.rawValue), !self.isCVMTag(k), self.wrongKeyIDFills.count < 64 {
                    self.wrongKeyIDFills.append((pa.rawValue, k, pk))
                }
            case .invalidate:
                break
            }
        }
        previousKeyIDObserver = kernel.keys.references.onKeyIDEvent
        let prevKeys = previousKeyIDObserver
        kernel.keys.references.onKeyIDEvent = { [weak self] event in
            prevKeys?(event)
            if case .programmed(let k, let kind, let status, _, let others) = event, status == .success {
                self?.programmedDuringCall.append((k, "\(kind)", others))
                self?.checkCachedLinesAtProgramming(k, "\(kind)")
            }
        }
        attachCVM()
        attachSGXObserver()   // SGXChecks.swift
    }

    /// Removes the observers (restoring the ones found at attach).
    public func detach() {
        guard attached else { return }
        attached = false
        kernel.machine.cache.observer = previousCacheObserver
        kernel.keys.references.onKeyIDEvent = previousKeyIDObserver
        detachCVM()
        detachSGXObserver()
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
        plaintextWriteBacks.removeAll(keepingCapacity: true)
        wrongKeyIDFills.removeAll(keepingCapacity: true)
        protSnapshot.removeAll(keepingCapacity: true)
        protSnapshotPid = nil
        if call.kind == .protectionChange, options.enabled.contains(.mprotectChangedEncryption) {
            snapshotProtection(call)
        }
    }

    /// After a call: the call-specific checks, then (when due) the full sweep. Returns the new
    /// violations (also appended to `violations`).
    @discardableResult
    public func afterCall(_ call: CheckedCall, outcome: CheckedOutcome) -> [Violation] {
        currentSite = call.site
        callsChecked += 1
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
        checkLayout(call)
        checkSGXAnomalies()
        callsSinceSweep += 1
        if sweepDue() { sweep() }
        programmedDuringCall.removeAll(keepingCapacity: true)
        plaintextWriteBacks.removeAll(keepingCapacity: true)
        wrongKeyIDFills.removeAll(keepingCapacity: true)
        return flush(site: call.site)
    }

    /// Runs every check now (the full sweep plus the DRAM scan of the shadow); for tests and
    /// the end of a run.
    @discardableResult
    public func fullCheck(site: CallSite? = nil) -> [Violation] {
        currentSite = site
        checkKeyIDProgramming()
        checkPlaintextWriteBacks()
        checkSGXAnomalies()
        sweep()
        checkShadowAgainstDRAM()
        return flush(site: site)
    }

    func sweepDue() -> Bool {
        if let n = options.sweepEvery { return callsSinceSweep >= max(n, 1) }
        let interval = max(1, lastSweepWork / max(options.adaptiveBudget, 1))
        return callsSinceSweep >= interval
    }

    /// The full sweep: page tables and VMAs of every mm, frames, KeyID counts, cache, zero pages.
    func sweep() {
        callsSinceSweep = 0
        sweeps += 1
        var work = 0
        let frames = collectAllocatedFrames(&work)
        let mapping = sweepPageTables(&work)
        exemptCVMFrames()
        checkFrameAccounting(frames, mapping)
        checkKeyIDBalance(frames, mapping)
        checkCache(frames, &work)
        sweepCVM(&work)
        checkZeroPages()
        checkAllocator()
        checkSGX(mapping.epcLeaves, &work)
        lastSweepWork = work
    }
}
