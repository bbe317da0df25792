// The hardware checks: stale-cache-line (no line of an allocated frame is cached under a KeyID
// other than its page_keyid: caches are not coherent across KeyIDs, so such a line is stale data
// that a later access or write-back would expose) and zero-page-modified (the zero pages read as
// zeros through KeyID 0), on everything after a full sweep and on what the call touched otherwise.
//
// Reads are side-effect free: Cache.forEachLine / cachedLines / peek do not touch LRU state,
// DRAM is read raw and decrypted with the engine (no cost is charged, nothing is filled).
// Frames mapped by special entries (raw PFNs with their own encryption bits, e.g. a vvar
// page) are exempt: they are legitimately accessed through more than one KeyID.
import KeyMMBase
import KeyMMHardware
import KeyMMKernel

extension InvariantChecker {
    /// stale-cache-line: after a full sweep every allocated, non-exempt frame (per frame when few
    /// are allocated, one pass over the cache's tags otherwise); otherwise the frames whose
    /// page_keyid, allocation or exemption changed, that were accessed through another KeyID, or
    /// that had a stale line evicted. Each frame reports its first stale line (line order, then
    /// way order), frames in PFN order.
    func checkCache(full: Bool, _ work: inout Int) {
        guard options.enabled.contains(.staleCacheLine) else { return }
        let cache = kernel.machine.cache
        let alloc = kernel.allocator
        let cvmActive = cvm.active
        var frames: [UInt64] = []
        // Cross-check (a full sweep of an incremental checker): the frames known stale, and the
        // frames this call touched that are stale now, must include every frame the sweep finds.
        var expected: Set<UInt64>?
        if full && crossChecking {
            var e = model.staleFrames
            for f in model.cacheFrames.list where model.allocated.contains(f) && !self.isExempt(f)
                && cache.firstLine(of: PFN(f), notUnder: alloc.pageKeyID(PFN(f))) != nil { e.insert(f) }
            expected = e
        }
        defer {
            if let expected {
                let at = currentSite.map { " after call \($0.index) (\($0.call))" } ?? ""
                for f in model.staleFrames.sorted() where !expected.contains(f) && shadowMismatches.count < 100 {
                    shadowMismatches.append("a stale cache line of \(Fmt.pfn(PFN(f))) was not found by the incremental checks\(at)")
                }
            }
        }
        if full {
            var allocatedFrames = 0
            alloc.forEachAllocatedBlock { _, order in allocatedFrames += order.pages }
            let perFrameCost = linesPerPage * cache.ways
            model.staleFrames = []
            if allocatedFrames * perFrameCost < cache.lineCount {
                // Few frames: probe each frame's 64 lines.
                work += allocatedFrames * perFrameCost / 16
                alloc.forEachAllocatedBlock { head, order in
                    for i in 0..<UInt64(order.pages) { frames.append(head.rawValue &+ i) }
                }
            } else {
                // Many frames: one pass over the cache's tags finds the frames with a stale line.
                work += cache.lineCount / 16
                var stale = Set<UInt64>()
                let candidate = lineOwnerFilter()
                cache.forEachLine { pa, k, _ in
                    let f = pa.rawValue >> pageShift
                    guard candidate(f) else { return }
                    if k != alloc.pageKeyID(PFN(f)) && (!cvmActive || !self.isCVMTag(k)) { stale.insert(f) }
                }
                frames = stale.sorted()
            }
        } else {
            let dirty = model.cacheFrames.list
            if dirty.count * linesPerPage * cache.ways < cache.lineCount {
                frames = dirty.sorted()
            } else {
                // Many frames: one pass over the tags finds which of them hold a line under a
                // KeyID other than their page_keyid; only those are probed line by line.
                var stale = Set<UInt64>()
                var wanted = FrameBitmap(frames: model.frameCount)
                for f in dirty { wanted.insert(f) }
                let candidate = lineOwnerFilter()
                cache.forEachLine { pa, k, _ in
                    let f = pa.rawValue >> pageShift
                    guard wanted.contains(f), candidate(f) else { return }
                    if k != alloc.pageKeyID(PFN(f)) && (!cvmActive || !self.isCVMTag(k)) { stale.insert(f) }
                }
                // Frames with no stale line are clean now.
                for f in dirty where !stale.contains(f) { model.staleFrames.remove(f) }
                frames = stale.sorted()
            }
        }
        for f in frames {
            if model.allocated.contains(f) && !self.isExempt(f) && firstStaleLine(PFN(f)) {
                model.staleFrames.insert(f)
            } else if !model.staleFrames.isEmpty {
                model.staleFrames.remove(f)
            }
        }
    }

    /// Whether a frame's cached lines fall under the page_keyid rule (allocated, not exempt), as a
    /// closure over copies of the shadow's arrays: the per-line passes over the cache call it for
    /// every valid line, without going through the checker or the shadow objects.
    func lineOwnerFilter() -> (UInt64) -> Bool {
        let allocated = model.allocated, special = model.special, cvmExempt = self.cvmExempt
        let frames = UInt64(model.frameCount)
        return { f in
            allocated.contains(f) && !(f < frames && special[Int(f)] > 0) && (cvmExempt.isEmpty || !cvmExempt.contains(f))
        }
    }

    /// Reports the frame's first line cached under a KeyID other than its page_keyid, if any.
    func firstStaleLine(_ f: PFN) -> Bool {
        let k = kernel.allocator.pageKeyID(f)
        if cvm.active {
            // Lines under a TDX private KeyID or a guest ASID are the confidential-VM checks' concern.
            for line in kernel.machine.cache.cachedLines(of: f) where line.keyid != k && !isCVMTag(line.keyid) {
                staleLine(f, k, line.lineIndex, line.keyid, line.dirty)
                return true
            }
            return false
        }
        guard let line = kernel.machine.cache.firstLine(of: f, notUnder: k) else { return false }
        staleLine(f, k, line.lineIndex, line.keyid, line.dirty)
        return true
    }

    /// Lines read during the call through a KeyID other than their frame's page_keyid.
    func checkFills() {
        for (pa, k, pk) in tap.wrongKeyIDFills {
            let f = PhysAddr(pa).pfn
            report(.staleCacheLine, key: "\(f.rawValue):\(k.rawValue)",
                   "line \((pa >> 6) & 63) of \(Fmt.pfn(f)) (PA \(Fmt.hex(pa))) was read through \(k) during the call while the frame's page_keyid is \(pk.rawValue)")
        }
    }

    private func staleLine(_ f: PFN, _ pageK: KeyID, _ line: Int, _ lineK: KeyID, _ dirty: Bool) {
        let alloc = kernel.allocator
        report(.staleCacheLine, key: "\(f.rawValue):\(lineK.rawValue)",
               "\(Fmt.pfn(f)) (allocated, page_keyid \(pageK.rawValue), mapcount \(alloc.mapcount(f)), flags \(alloc.flags(f))) has cache line \(line) (PA \(Fmt.hex(f.physAddr.rawValue + UInt64(line * cacheLineSize)))) held under \(lineK)\(dirty ? " dirty" : " clean")")
    }

    /// The plaintext of one line as a CPU access through `keyid` would see it now (cached copy
    /// first, else DRAM decrypted), without touching the cache.
    func view(line pa: PhysAddr, keyid: KeyID) -> [UInt8] {
        let m = kernel.machine
        if let c = m.cache.peek(line: pa, keyid: keyid) { return c }
        return dramView(line: pa, keyid: keyid)
    }

    /// The plaintext of one line's DRAM decrypted through `keyid` (0xFF beyond DRAM).
    func dramView(line pa: PhysAddr, keyid: KeyID) -> [UInt8] {
        let m = kernel.machine
        guard m.dram.contains(pa, count: cacheLineSize) else { return [UInt8](repeating: 0xFF, count: cacheLineSize) }
        var out = [UInt8](repeating: 0, count: cacheLineSize)
        unsafe out.withUnsafeMutableBytes { dst in
            _ = unsafe m.engine.decrypt(keyid, at: pa, lines: 1, from: UnsafeRawPointer(m.dram.pointer(pa)), to: dst.baseAddress!)
        }
        return out
    }

    /// The zero pages read as zeros through KeyID 0. After every call: the zero-page lines the
    /// call stored to (touch log) or wrote back (cache observer), and those whose cached KeyID-0
    /// copy it evicted while their DRAM does not decrypt to zeros. Every full sweep: the
    /// 4 KiB zero page's cached lines (a store lands in the cache first); every 16th sweep the
    /// whole 4 KiB zero page (cache and DRAM), every 256th the huge zero page's 512 frames (a
    /// cross-check: DRAM changes only by write-backs, which the observer sees, so these scans find
    /// nothing the per-call lines miss; not on a checker's first sweep, so short programs do not
    /// pay 32,768 line reads each).
    func checkZeroPages(full: Bool) {
        guard options.enabled.contains(.zeroPageModified) else { return }
        guard full || !model.zeroLines.isEmpty else { return }
        // DRAM only changes by write-backs: remember the lines whose DRAM is not zeros.
        var dramZero: [UInt64: Bool] = [:]
        for line in model.zeroWrittenBack {
            let pa = PhysAddr(line << 6)
            guard kernel.machine.dram.contains(pa, count: cacheLineSize) else { continue }
            let zero = dramView(line: pa, keyid: .tme).allSatisfy { $0 == 0 }
            dramZero[line] = zero
            if zero { model.zeroSuspect.remove(line) } else { model.zeroSuspect.insert(line) }
        }
        var lines = model.zeroLines
        if full {
            let cache = kernel.machine.cache
            var frames: [(PFN, Bool)] = []
            if let z = kernel.pgtable.zeroPFN { frames.append((z, sweeps % 16 == 0)) }
            if sweeps % 256 == 0, let hz = kernel.pgtable.hugeZeroPFN {
                for i in 0..<hpagePMDNr { frames.append((hz.advanced(by: i), true)) }
            }
            for (f, whole) in frames {
                let ls: [Int] = whole ? Array(0..<linesPerPage)
                    : cache.cachedLines(of: f).filter { $0.keyid == .tme }.map(\.lineIndex)
                for l in ls { lines.append(f.rawValue << 6 | UInt64(l)) }
            }
        }
        lines.sort()
        var bad = Set<UInt64>()
        var previous: UInt64?
        let cache = kernel.machine.cache
        for line in lines where line != previous {
            previous = line
            let f = line >> 6
            guard !bad.contains(f), model.inZeroPage(f) || isZeroFrameNow(f) else { continue }
            let pa = PhysAddr(line << 6)
            // A line written back during the call and not cached again reads as its DRAM (seen above).
            let zero: Bool
            if let z = dramZero[line], cache.peek(line: pa, keyid: .tme) == nil { zero = z } else {
                zero = view(line: pa, keyid: .tme).allSatisfy { $0 == 0 }
            }
            if !zero {
                bad.insert(f)
                report(.zeroPageModified, key: "\(f)",
                       "zero page \(Fmt.pfn(PFN(f))) line \(line & 63) (PA \(Fmt.hex(pa.rawValue))) does not read as zeros through KeyID 0")
            }
        }
    }

    func isZeroFrameNow(_ f: UInt64) -> Bool {
        if kernel.pgtable.zeroPFN?.rawValue == f { return true }
        if let hz = kernel.pgtable.hugeZeroPFN, f >= hz.rawValue && f < hz.rawValue &+ UInt64(hpagePMDNr) { return true }
        return false
    }
}
