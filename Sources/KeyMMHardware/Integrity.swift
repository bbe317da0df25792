// LineIntegrity: the memory integrity state TDX keeps per 64-byte line of DRAM — the TD-owner
// bit (set when a line is written through a TDX private KeyID) and poison — and the CPU
// operations that reach DRAM without going through the cache: MOVDIR64B (a full-line direct
// store) and non-temporal / UC partial stores (MOVNTI). docs/sources.md, "TDX host
// (arch/x86/virt/vmx/tdx)": the partial-write erratum X86_BUG_TDX_PW_MCE.
//
// Rules (docs/tdx-sev.md):
// * A full-line write to DRAM — MOVDIR64B, or the write-back of a cache line — rewrites the line's
//   integrity: poison cleared, TD-owned iff the writer's KeyID is TDX-private.
// * A partial write (only non-temporal/UC stores make one: a cached partial store fills the line
//   first) by non-TD software to a TD-owned line poisons it on CPUs with the erratum
//   (`MachineConfig.tdxPartialWriteErratum`); without the erratum it turns the line into a normal
//   one (any write converts TDX private memory back).
// * Reading a poisoned line from DRAM (a fill, or the fill a partial cached store makes first) is
//   a machine check: the access does not complete and `Machine.takeMachineCheck()` reports it.
//   A line already in the cache under the reader's KeyID is not read from DRAM, so it does not
//   machine-check.
//
// Invariants: a line is poisoned only by `writeNonTemporal` on a TD-owned line with the erratum,
// and every poisoning records the path and KeyID that did it (`poisonedBy`); state is sparse
// (frames with no TD-owned and no poisoned line have no entry), so a machine without TDX pays
// nothing. The cache observer this installs only reads events (chained with any other observer).
import KeyMMBase

/// What happened to a line's integrity state, for observers (the invariant checker).
package enum IntegrityEvent: Sendable, Hashable {
    /// A full line reached DRAM through `keyid` (write-back, MOVDIR64B, full non-temporal line).
    case fullWrite(PhysAddr, KeyID)
    /// A partial non-temporal/UC store reached DRAM; `poisoned` says whether it poisoned the line.
    case partialWrite(PhysAddr, KeyID, poisoned: Bool, path: String)
    /// A read of a poisoned line: a machine check.
    case machineCheck(PhysAddr, KeyID)
}

/// The TD-owner bits and poison of DRAM lines.
package final class LineIntegrity {
    struct FrameState {
        var tdOwned: UInt64 = 0
        var poisoned: UInt64 = 0
    }
    /// PFN -> state of its 64 lines (absent: no TD-owned or poisoned line).
    var frames: [UInt64: FrameState] = [:]
    /// Line address -> the path and KeyID that poisoned it.
    package private(set) var poisonedBy: [UInt64: (path: String, keyid: KeyID)] = [:]
    /// Lines poisoned right now.
    package private(set) var poisonedLines = 0
    /// Machine checks raised so far.
    package private(set) var machineChecks = 0
    /// The first machine check since the last `take` (the line read).
    var pending: PhysAddr?
    let erratum: Bool
    let isTDXPrivate: (KeyID) -> Bool
    /// Called on every integrity-relevant event (nil: no overhead).
    package var observer: ((IntegrityEvent) -> Void)?

    init(erratum: Bool, isTDXPrivate: @escaping (KeyID) -> Bool) {
        self.erratum = erratum
        self.isTDXPrivate = isTDXPrivate
    }

    /// Whether the line holding `pa` was last written through a TDX private KeyID.
    package func isTDOwned(_ pa: PhysAddr) -> Bool {
        guard let f = frames[pa.rawValue >> pageShift] else { return false }
        return f.tdOwned & (1 << ((pa.rawValue >> 6) & 63)) != 0
    }

    /// Whether the line holding `pa` is poisoned.
    package func isPoisoned(_ pa: PhysAddr) -> Bool {
        guard poisonedLines > 0, let f = frames[pa.rawValue >> pageShift] else { return false }
        return f.poisoned & (1 << ((pa.rawValue >> 6) & 63)) != 0
    }

    /// The TD-owned and poisoned line masks of a frame (bit i = line i).
    package func state(of pfn: PFN) -> (tdOwned: UInt64, poisoned: UInt64) {
        guard let f = frames[pfn.rawValue] else { return (0, 0) }
        return (f.tdOwned, f.poisoned)
    }

    /// Frames with any TD-owned or poisoned line, ascending.
    package var framesWithState: [PFN] { frames.keys.sorted().map { PFN($0) } }

    /// A full line reached DRAM through `keyid`.
    func fullWrite(_ line: UInt64, _ keyid: KeyID) {
        let td = isTDXPrivate(keyid)
        let pfn = line >> 6, bit = UInt64(1) << (line & 63)
        var f = frames[pfn] ?? FrameState()
        guard td || f.tdOwned & bit != 0 || f.poisoned & bit != 0 else { return }
        if f.poisoned & bit != 0 {
            f.poisoned &= ~bit
            poisonedLines -= 1
            poisonedBy[line << 6] = nil
        }
        if td { f.tdOwned |= bit } else { f.tdOwned &= ~bit }
        store(pfn, f)
        observer?(.fullWrite(PhysAddr(line << 6), keyid))
    }

    /// A partial non-temporal store reached DRAM through `keyid`.
    func partialWrite(_ line: UInt64, _ keyid: KeyID, path: String) {
        let td = isTDXPrivate(keyid)
        let pfn = line >> 6, bit = UInt64(1) << (line & 63)
        var f = frames[pfn] ?? FrameState()
        var poisoned = false
        if td {
            f.tdOwned |= bit
        } else if f.tdOwned & bit != 0 {
            f.tdOwned &= ~bit
            if erratum && f.poisoned & bit == 0 {
                f.poisoned |= bit
                poisonedLines += 1
                poisonedBy[line << 6] = (path, keyid)
                poisoned = true
            }
        }
        store(pfn, f)
        observer?(.partialWrite(PhysAddr(line << 6), keyid, poisoned: poisoned, path: path))
    }

    private func store(_ pfn: UInt64, _ f: FrameState) {
        if f.tdOwned == 0 && f.poisoned == 0 { frames[pfn] = nil } else { frames[pfn] = f }
    }

    /// Records a machine check on reading `pa` through `keyid`.
    func machineCheck(_ pa: PhysAddr, _ keyid: KeyID) {
        machineChecks += 1
        if pending == nil { pending = pa }
        observer?(.machineCheck(pa, keyid))
    }
}

extension Machine {
    /// Wires the integrity state to the cache's write-backs (every write-back is a full-line write).
    func attachIntegrity(_ integrity: LineIntegrity) {
        let previous = cache.observer
        cache.observer = { [unowned integrity] event in
            previous?(event)
            if case .writeBack(let pa, let k) = event { integrity.fullWrite(pa.rawValue >> 6, k) }
        }
    }

    /// Whether a load of `[pa, pa + count)` through `keyid`, or the fill a partial store makes,
    /// would read a poisoned line from DRAM; records the machine check if so.
    func consumesPoison(_ pa: PhysAddr, _ count: Int, _ keyid: KeyID, partialOnly: Bool) -> Bool {
        guard let integrity, integrity.poisonedLines > 0, count > 0 else { return false }
        let first = pa.rawValue >> 6, last = (pa.rawValue + UInt64(count) - 1) >> 6
        for line in first...last {
            if partialOnly {
                // A store fills only the lines it does not cover entirely.
                let lo = max(pa.rawValue, line << 6), hi = min(pa.rawValue + UInt64(count), (line + 1) << 6)
                if hi - lo == UInt64(cacheLineSize) { continue }
            }
            let la = PhysAddr(line << 6)
            if integrity.isPoisoned(la), cache.peek(line: la, keyid: keyid) == nil {
                integrity.machineCheck(la, keyid)
                clock.count(.machineChecks)
                return true
            }
        }
        return false
    }

    /// The first machine check since the last call (the poisoned line read), and clears it.
    package func takeMachineCheck() -> PhysAddr? {
        guard let integrity, let pa = integrity.pending else { return nil }
        integrity.pending = nil
        return pa
    }

    /// MOVDIR64B of one 64-byte line at `pa` (line-aligned) through `keyid`: a full-line direct
    /// store. The line's cached copy under that KeyID is written back and invalidated first (copies
    /// under other KeyIDs are not touched: the cache is not coherent across KeyIDs); DRAM gets the
    /// 64 bytes encrypted with the KeyID's key; the line's integrity is rewritten (poison cleared).
    /// Charges one `direct_store_line` (+ `encrypt_line`).
    package func movdir64b(_ pa: PhysAddr, keyid: KeyID, bytes: [UInt8]) {
        let la = pa.lineAligned
        guard bytes.count == cacheLineSize, dram.contains(la, count: cacheLineSize) else { return }
        let k = hwKeyID(keyid)
        cache.flush(la, keyid: k, length: cacheLineSize)
        directStore(la, k, bytes)
        integrity?.fullWrite(la.rawValue >> 6, k)
    }

    /// MOVDIR64B of zeros over a whole frame through `keyid` (the kernel's reset of TDX memory:
    /// tdx_clear_page / tdx_quirk_reset_paddr), then the fence.
    package func movdir64bZeroPage(_ pfn: PFN, keyid: KeyID) {
        let zeros = [UInt8](repeating: 0, count: cacheLineSize)
        for l in 0..<linesPerPage { movdir64b(pfn.physAddr.advanced(by: l * cacheLineSize), keyid: keyid, bytes: zeros) }
    }

    /// Non-temporal (MOVNTI, WC or UC) stores of `bytes` at `pa` through `keyid`: they bypass the
    /// cache (a cached copy under that KeyID is written back and invalidated first) and reach DRAM
    /// line by line; a line covered entirely is a full-line write, any other a partial write merged
    /// in the memory controller — which poisons a TD-owned line on CPUs with X86_BUG_TDX_PW_MCE.
    /// `path` names the host path for poison reports. Charges one `direct_store_line` per line.
    package func writeNonTemporal(_ pa: PhysAddr, keyid: KeyID, bytes: [UInt8], path: String) {
        let n = inRange(pa, bytes.count)
        guard n > 0 else { return }
        let k = hwKeyID(keyid)
        var off = 0
        while off < n {
            let a = pa.rawValue + UInt64(off)
            let line = a >> 6
            let la = PhysAddr(line << 6)
            let len = min(n - off, Int(((line + 1) << 6) - a))
            cache.flush(la, keyid: k, length: cacheLineSize)
            var plain = [UInt8](repeating: 0, count: cacheLineSize)
            if len != cacheLineSize {
                // The memory controller's read-modify-write of the partial line.
                let raw = dram.read(la, count: cacheLineSize)
                unsafe raw.withUnsafeBytes { src in
                    unsafe plain.withUnsafeMutableBytes { dst in _ = unsafe engine.decrypt(k, at: la, lines: 1, from: src.baseAddress!, to: dst.baseAddress!) }
                }
            }
            for i in 0..<len { plain[Int(a - la.rawValue) + i] = bytes[off + i] }
            directStore(la, k, plain)
            if len == cacheLineSize { integrity?.fullWrite(line, k) } else { integrity?.partialWrite(line, k, path: path) }
            off += len
        }
    }

    /// One line straight to DRAM, encrypted with `k` (the memory controller's path for direct stores).
    private func directStore(_ la: PhysAddr, _ k: KeyID, _ plain: [UInt8]) {
        clock.charge(.directStoreLine)
        if !engine.isPlaintext(k) { clock.charge(.encryptLine) }
        var out = [UInt8](repeating: 0, count: cacheLineSize)
        unsafe plain.withUnsafeBytes { src in
            unsafe out.withUnsafeMutableBytes { dst in _ = unsafe engine.encrypt(k, at: la, lines: 1, from: src.baseAddress!, to: dst.baseAddress!) }
        }
        unsafe out.withUnsafeBytes { unsafe dram.write(la, from: $0) }
    }

    /// WBNOINVD: writes back every dirty line and leaves it in the cache, clean (what KVM issues on
    /// the CPUs that ran an SEV guest before releasing its pages). Charges one `wbinvd`.
    package func wbnoinvd() {
        clock.charge(.wbinvd)
        cache.writeBackAllKeepingLines()
    }
}
