// Cache: one shared, set-associative, write-back, write-allocate cache with LRU replacement whose
// lines are tagged by (physical line, KeyID) — so it is NOT coherent across KeyIDs, as on MKTME
// hardware. Lines hold plaintext; a dirty line is encrypted with its KeyID's key and its physical
// address as tweak when it is written back (eviction, clflush, wbinvd); a fill decrypts DRAM with
// the requesting KeyID's key. Hence: a read through KeyID B of a line last written through KeyID A
// without a flush returns DRAM decrypted with B's key (garbage), and A's dirty line, written back
// later, overwrites whatever B stored there.
//
// Storage (all in `OwnedBuffer`s, zero bytes = an empty cache):
// * tags and line data, way-major: slot = way * sets + set, so way w of consecutive sets is
//   contiguous (a page's 64 lines sit in 64 consecutive sets: when they hit in one way, their tags
//   are 512 B and their data 4 KiB of contiguous host memory). Tag word: bit 63 zero (the line's
//   plaintext is 64 zero bytes that are not materialized in the data array: `zeroPage` sets it
//   instead of storing), bits 62:18 line number (PA >> 6; memory is at most 64 GiB so line
//   numbers stay below 2^30 and never reach bit 63), bit 17 valid, bit 16 dirty, bits 15:0 KeyID.
//   The zero bit is a host-speed representation only: every reader materializes it, so observable
//   contents, costs and counters are unchanged.
// * per set, `head`: the most recently used way (first in the set's recency order);
// * per set, one record (`recordBytes`, 64 for up to 16 ways): a fingerprint byte per way (0 =
//   invalid, else a hash of the line number, so a lookup compares 8 ways per 64-bit word and
//   reads only the tags of ways whose fingerprint matches), the LRU way (`tail`) and the
//   recency order as a doubly-linked list of ways (`next`/`prev`). Links and tail are stored
//   XOR-ed with the initial order 0, 1, ..., ways-1, so all-zero memory is that order.
// Replacement is exact LRU among valid ways, invalid ways first (lowest way index), found in O(1):
// the lowest zero fingerprint, else `tail`. This is the order per-way use stamps gave (victim =
// smallest stamp, invalid ways stamped 0, ties to the lowest way); see docs/hardware.md.
// Evicted dirty lines go to a small write-back buffer that is drained (with batched encryption)
// before any DRAM read and at the end of every public operation, so DRAM is always exact between
// operations and no fill ever sees stale DRAM.
//
// Invariants: at most one way per (line, KeyID); invalid ways have tag 0 and fingerprint 0, valid
// ways the fingerprint of their line; per set, next/prev/tail/head describe one order of all
// `ways` ways in which valid ways appear from most to least recently used; the write-back buffer
// is empty whenever control is outside this class.
import CXTSKernels
import KeyMMBase
#if canImport(Glibc)
import Glibc
#endif

/// One cached line of a frame, for inspection.
public struct CachedLine: Hashable, Sendable, CustomStringConvertible {
    /// Line index inside the frame (0..<64).
    public var lineIndex: Int
    /// The KeyID the line is tagged with.
    public var keyid: KeyID
    /// Modified since fill (will be written back).
    public var dirty: Bool
    public init(lineIndex: Int, keyid: KeyID, dirty: Bool) { self.lineIndex = lineIndex; self.keyid = keyid; self.dirty = dirty }
    public var description: String { "line \(lineIndex) \(keyid)\(dirty ? " dirty" : "")" }
}

/// What the cache did, for observers (the invariant checker). Addresses are line-aligned.
public enum CacheEvent: Sendable, Hashable {
    /// A line was read from DRAM through a KeyID.
    case fill(PhysAddr, KeyID)
    /// A dirty line was written to DRAM encrypted with its KeyID.
    case writeBack(PhysAddr, KeyID)
    /// A line left the cache (after its write-back, if it was dirty).
    case invalidate(PhysAddr, KeyID)
}

/// The cache in front of DRAM.
public final class Cache {
    public let sets: Int
    public let ways: Int
    /// Total lines (sets * ways).
    public let lineCount: Int

    static let validBit: UInt64 = 1 << 17
    static let dirtyBit: UInt64 = 1 << 16
    /// The way's data is logically 64 zero bytes (not stored in the data array).
    static let zeroBit: UInt64 = 1 << 63
    /// Tag bits that identify (line, KeyID) and validity (dirty and zero masked off).
    static let identityMask: UInt64 = ~(dirtyBit | zeroBit)
    static let lineShift: UInt64 = 18
    /// The line number of a tag word.
    @inline(__always) static func lineOf(_ t: UInt64) -> UInt64 { (t & ~zeroBit) >> lineShift }

    /// Tag words (slot = way * sets + set).
    let tags: OwnedBuffer<UInt64>
    /// Line data, 64 bytes per slot.
    let data: OwnedBuffer<UInt8>
    /// Per set: the most recently used way.
    let head: OwnedBuffer<UInt8>
    /// Per set: fingerprints, tail and links (see the header).
    let records: OwnedBuffer<UInt8>
    /// Bytes per set record, fingerprint words per record, and the byte offsets of tail, next[], prev[].
    let recordBytes: Int
    let fpWords: Int
    let tailOffset: Int
    let nextOffset: Int
    let prevOffset: Int
    /// Bytes of the last fingerprint word that belong to ways (0x80 per byte).
    let lastWordWays: UInt64
    /// sets - 1 when `sets` is a power of two (set index by mask), else -1 (modulo).
    let setMask: Int
    /// Mutable scalars live in a buffer: no dynamic exclusivity checks on the hot path.
    struct State {
        var validLines = 0
        var wbCount = 0
        /// Dirty evictions since the last drain (counted into the clock when the buffer drains,
        /// with the queued lines' write_back and encrypt_line charges: the same totals per operation).
        var pendingEvictions = 0
        /// Line numbers [watchLo, watchHi) whose prefetched copies go stale if one of them is written back.
        var watchLo: UInt64 = 0
        var watchHi: UInt64 = 0
        var prefetchStale = false
        var hasObserver = false
    }
    let state: OwnedBuffer<State>
    @inline(__always) var st: UnsafeMutablePointer<State> { unsafe state.pointer() }
    /// Valid lines right now.
    public var validLines: Int { unsafe st.pointee.validLines }

    let dram: PhysicalMemory
    let engine: EncryptionEngine
    let clock: CostClock

    /// Called on every fill, write-back and invalidation (nil: no overhead).
    public var observer: ((CacheEvent) -> Void)? {
        didSet { unsafe st.pointee.hasObserver = observer != nil }
    }

    // Write-back buffer.
    static let wbCapacity = EncryptionEngine.batchLines
    let wbAddr: OwnedBuffer<UInt64>
    let wbKey: OwnedBuffer<UInt16>
    let wbData: OwnedBuffer<UInt8>
    let gatherAddr: OwnedBuffer<UInt64>
    let gatherIdx: OwnedBuffer<Int>
    let gatherData: OwnedBuffer<UInt8>
    // Prefetch (batched fills) of one chunk of lines.
    let pfData: OwnedBuffer<UInt8>
    let pfAddr: OwnedBuffer<UInt64>
    /// One page of scratch (copyPage).
    let pageBuffer: OwnedBuffer<UInt8>
    /// Per line of a page being zeroed: the way it will use and how (CachePageFastPath.swift).
    let pagePlan: OwnedBuffer<UInt16>

    /// A cache of `size` bytes with `ways` ways in front of `dram`.
    public init(size: ByteCount, ways: Int, dram: PhysicalMemory, engine: EncryptionEngine, clock: CostClock) throws(HardwareError) {
        let lines = Int(size.rawValue) / cacheLineSize
        guard ways > 0, ways <= 255, lines >= ways, lines % ways == 0 else { throw HardwareError("bad cache geometry \(size) / \(ways) ways") }
        self.ways = ways
        self.sets = lines / ways
        self.lineCount = lines
        self.setMask = sets & (sets - 1) == 0 ? sets - 1 : -1
        self.dram = dram
        self.engine = engine
        self.clock = clock
        fpWords = (ways + 7) / 8
        tailOffset = 8 * fpWords
        nextOffset = tailOffset + 1
        prevOffset = nextOffset + ways
        recordBytes = (prevOffset + ways + 63) & ~63
        lastWordWays = ways % 8 == 0 ? 0x8080_8080_8080_8080 : ((UInt64(1) << UInt64(8 * (ways % 8))) &- 1) & 0x8080_8080_8080_8080
        state = OwnedBuffer(repeating: State(), count: 1)
        // Tags, records and line data live in anonymous host mappings: zero-filled (all ways
        // invalid, initial order) and backed lazily; MADV_HUGEPAGE keeps the host TLB from
        // thrashing on the random set and way accesses of a 32 MiB cache.
        guard let t = OwnedBuffer<UInt64>(mappingZeroed: lines, hugePages: .huge),
              let r = OwnedBuffer<UInt8>(mappingZeroed: sets * recordBytes, hugePages: .huge) else {
            throw HardwareError("cannot reserve host memory for the cache tags")
        }
        guard let d = OwnedBuffer<UInt8>(mappingZeroed: lines * cacheLineSize, hugePages: .huge) else {
            throw HardwareError("cannot reserve \(size) of host memory for the cache")
        }
        tags = t
        records = r
        data = d
        head = OwnedBuffer(zeroedCount: sets)
        let cap = Cache.wbCapacity
        wbAddr = OwnedBuffer(zeroedCount: cap); wbKey = OwnedBuffer(zeroedCount: cap)
        wbData = OwnedBuffer(zeroedCount: cap * cacheLineSize)
        gatherAddr = OwnedBuffer(zeroedCount: cap); gatherIdx = OwnedBuffer(zeroedCount: cap)
        gatherData = OwnedBuffer(zeroedCount: cap * cacheLineSize)
        pfData = OwnedBuffer(zeroedCount: cap * cacheLineSize)
        pfAddr = OwnedBuffer(zeroedCount: cap)
        pageBuffer = OwnedBuffer(zeroedCount: pageSize)
        pagePlan = OwnedBuffer(zeroedCount: linesPerPage)
    }

    deinit {
        // Plaintext of every KeyID lives in the cache's data mapping: unmapping returns it to the
        // host kernel, which zeroes pages before any reuse (a memset here would first fault in
        // every untouched page of a 32 MiB mapping). The small heap buffers that held plaintext
        // are wiped before they are freed (by their own deinit).
        wbData.zero(); gatherData.zero(); pfData.zero(); pageBuffer.zero()
    }

    /// Faults in the host pages behind the cache's tags, records and line data without changing
    /// them. Host speed only: a bench calls it before a measured section so it measures the
    /// simulator's steady state rather than the host kernel's first touch of this lazily-backed
    /// storage. Costs `hostBytes` of host memory at once.
    public func populateHostStorage() {
        tags.populate(); records.populate(); data.populate()
    }

    /// Host bytes of the cache's arrays (tags + set records + line data).
    public var hostBytes: Int { tags.byteCount + records.byteCount + head.byteCount + data.byteCount }

    // MARK: Primitives

    @inline(__always) func setIndex(_ lineNo: UInt64) -> Int {
        setMask >= 0 ? Int(truncatingIfNeeded: lineNo) & setMask : Int(truncatingIfNeeded: lineNo % UInt64(sets))
    }
    @inline(__always) func slotData(_ slot: Int) -> UnsafeMutableRawPointer { unsafe data.raw(slot &* cacheLineSize) }
    /// The slot of way `w` of `set` (way-major layout).
    @inline(__always) func slot(_ set: Int, _ w: Int) -> Int { w &* sets &+ set }
    @inline(__always) static func tag(_ lineNo: UInt64, _ keyid: UInt16) -> UInt64 { lineNo << lineShift | validBit | UInt64(keyid) }

    // MARK: Replacement (per-set record)

    /// A line number's fingerprint: 1...255 (0 marks an invalid way).
    @inline(__always) static func fingerprint(_ lineNo: UInt64) -> UInt8 {
        let h = UInt8(truncatingIfNeeded: (lineNo &* 0x9E37_79B9_7F4A_7C15) >> 56)
        return h == 0 ? 1 : h
    }
    /// 0x80 in every byte of `x` that is zero, 0 elsewhere (exact: no carries between bytes).
    @inline(__always) static func zeroBytes(_ x: UInt64) -> UInt64 {
        let low7: UInt64 = 0x7F7F_7F7F_7F7F_7F7F
        return ~(((x & low7) &+ low7) | x | low7)
    }
    @inline(__always) func record(_ set: Int) -> UnsafeMutableRawPointer { unsafe records.raw(set &* recordBytes) }
    @inline(__always) func fpWord(_ r: UnsafeMutableRawPointer, _ i: Int) -> UInt64 { unsafe r.load(fromByteOffset: 8 &* i, as: UInt64.self) }
    @inline(__always) func setFingerprint(_ set: Int, _ w: Int, _ f: UInt8) { unsafe record(set).storeBytes(of: f, toByteOffset: w, as: UInt8.self) }
    // Links and tail, XOR-ed with the initial order (next[w] = w+1, prev[w] = w-1, tail = ways-1).
    @inline(__always) func next(_ r: UnsafeMutableRawPointer, _ w: Int) -> Int {
        Int(unsafe r.load(fromByteOffset: nextOffset &+ w, as: UInt8.self) ^ UInt8(truncatingIfNeeded: w &+ 1))
    }
    @inline(__always) func setNext(_ r: UnsafeMutableRawPointer, _ w: Int, _ v: Int) {
        unsafe r.storeBytes(of: UInt8(truncatingIfNeeded: v ^ (w &+ 1)), toByteOffset: nextOffset &+ w, as: UInt8.self)
    }
    @inline(__always) func prev(_ r: UnsafeMutableRawPointer, _ w: Int) -> Int {
        Int(unsafe r.load(fromByteOffset: prevOffset &+ w, as: UInt8.self) ^ UInt8(truncatingIfNeeded: w &- 1))
    }
    @inline(__always) func setPrev(_ r: UnsafeMutableRawPointer, _ w: Int, _ v: Int) {
        unsafe r.storeBytes(of: UInt8(truncatingIfNeeded: v ^ (w &- 1)), toByteOffset: prevOffset &+ w, as: UInt8.self)
    }
    @inline(__always) func lruWay(_ r: UnsafeMutableRawPointer) -> Int {
        Int(unsafe r.load(fromByteOffset: tailOffset, as: UInt8.self) ^ UInt8(truncatingIfNeeded: ways &- 1))
    }
    @inline(__always) func setLRUWay(_ r: UnsafeMutableRawPointer, _ w: Int) {
        unsafe r.storeBytes(of: UInt8(truncatingIfNeeded: w ^ (ways &- 1)), toByteOffset: tailOffset, as: UInt8.self)
    }

    /// Makes way `w` of `set` the most recently used (O(1): unlink, push at the head).
    @inline(__always) func touch(_ set: Int, _ w: Int) {
        let h = Int(head[set])
        guard h != w else { return }
        let r = unsafe record(set)
        let p = unsafe prev(r, w)
        if unsafe lruWay(r) == w { unsafe setLRUWay(r, p) } else { unsafe setPrev(r, next(r, w), p) }
        unsafe setNext(r, p, next(r, w))
        unsafe setNext(r, w, h)
        unsafe setPrev(r, h, w)
        head[set] = UInt8(truncatingIfNeeded: w)
    }

    /// The way to replace in `set`: the lowest invalid way, else the least recently used.
    @inline(__always) func victimWay(_ set: Int) -> Int {
        let r = unsafe record(set)
        var i = 0
        while i < fpWords {
            var m = unsafe Cache.zeroBytes(fpWord(r, i))
            if i == fpWords &- 1 { m &= lastWordWays }
            if m != 0 { return 8 &* i &+ m.trailingZeroBitCount >> 3 }
            i &+= 1
        }
        return unsafe lruWay(r)
    }

    /// Prefetches (host) what a page operation on `count` consecutive lines from `lineNo` reads
    /// first: the sets' heads, records and the tag of each set's most recently used way.
    @inline(__always) func prefetchSets(_ lineNo: UInt64, _ count: Int) {
        var set = setIndex(lineNo)
        for _ in 0..<min(count, sets) {
            unsafe hp_prefetchw_line(record(set))
            unsafe hp_prefetchw_line(tags.pointer(slot(set, Int(head[set]))))
            set = set &+ 1 == sets ? 0 : set &+ 1
        }
    }

    /// Prefetches (host) the tag of the way each of `count` consecutive sets from `lineNo`'s would
    /// replace (what a page operation whose lines miss writes first). Reads the sets' records, so
    /// call it only when the lines are expected to miss; issued together, the misses overlap.
    @inline(__always) func prefetchVictims(_ lineNo: UInt64, _ count: Int) {
        var set = setIndex(lineNo)
        for _ in 0..<min(count, sets) {
            unsafe hp_prefetchw_line(tags.pointer(slot(set, victimWay(set))))
            set = set &+ 1 == sets ? 0 : set &+ 1
        }
    }

    /// Prefetches (host) the data of each set's most recently used way, for `count` consecutive
    /// lines from `lineNo` (a flush of lines that hit writes them back).
    @inline(__always) func prefetchMRUData(_ lineNo: UInt64, _ count: Int) {
        var set = setIndex(lineNo)
        for _ in 0..<min(count, sets) {
            unsafe hp_prefetchw_line(slotData(slot(set, Int(head[set]))))
            set = set &+ 1 == sets ? 0 : set &+ 1
        }
    }

    /// Whether (line, KeyID) sits in its set's most recently used way (no LRU update).
    @inline(__always) func hitsMRU(_ lineNo: UInt64, _ keyid: UInt16) -> Bool {
        let set = setIndex(lineNo)
        return tags[slot(set, Int(head[set]))] & Cache.identityMask == Cache.tag(lineNo, keyid)
    }

    /// The way of its set holding (line, KeyID), or -1 (no LRU update).
    @inline(__always) func findWay(_ lineNo: UInt64, _ keyid: UInt16) -> Int {
        let set = setIndex(lineNo)
        let want = Cache.tag(lineNo, keyid)
        let h = Int(head[set])
        if tags[slot(set, h)] & Cache.identityMask == want { return h }
        let r = unsafe record(set)
        let pattern = UInt64(Cache.fingerprint(lineNo)) &* 0x0101_0101_0101_0101
        var i = 0
        while i < fpWords {
            var m = unsafe Cache.zeroBytes(fpWord(r, i) ^ pattern)
            while m != 0 {
                let w = 8 &* i &+ m.trailingZeroBitCount >> 3
                if tags[slot(set, w)] & Cache.identityMask == want { return w }
                m &= m &- 1
            }
            i &+= 1
        }
        return -1
    }

    /// The slot holding (line, KeyID), or -1 (no LRU update).
    @inline(__always) func find(_ lineNo: UInt64, _ keyid: UInt16) -> Int {
        let w = findWay(lineNo, keyid)
        return w < 0 ? -1 : slot(setIndex(lineNo), w)
    }

    /// Finds (line, KeyID) or allocates a way for it (evicting the LRU line, writing it back if dirty).
    /// Returns the way and whether it was a hit. A new way is valid, clean, and its data undefined.
    /// `aliasDirty` reports whether the set holds the same line dirty under another KeyID.
    @inline(__always) func lookupOrAllocate(_ lineNo: UInt64, _ keyid: UInt16, aliasDirty: inout Bool) -> (slot: Int, hit: Bool) {
        let set = setIndex(lineNo)
        let want = Cache.tag(lineNo, keyid)
        let hint = slot(set, Int(head[set]))
        if tags[hint] & Cache.identityMask == want { return (hint, true) }   // already the MRU way
        // Every way holding this line (under any KeyID) has its fingerprint: look only at those.
        let r = unsafe record(set)
        let f = Cache.fingerprint(lineNo)
        let pattern = UInt64(f) &* 0x0101_0101_0101_0101
        var alias = false
        var i = 0
        while i < fpWords {
            var m = unsafe Cache.zeroBytes(fpWord(r, i) ^ pattern)
            while m != 0 {
                let w = 8 &* i &+ m.trailingZeroBitCount >> 3
                let s = slot(set, w)
                let t = tags[s]
                if t & Cache.identityMask == want {
                    touch(set, w)
                    return (s, true)
                }
                if Cache.lineOf(t) == lineNo && t & (Cache.validBit | Cache.dirtyBit) == (Cache.validBit | Cache.dirtyBit) { alias = true }
                m &= m &- 1
            }
            i &+= 1
        }
        aliasDirty = alias
        let vw = victimWay(set)
        let victim = slot(set, vw)
        if tags[victim] & Cache.validBit != 0 {
            evict(victim)
            if tags[victim] & Cache.dirtyBit != 0 { unsafe st.pointee.pendingEvictions &+= 1 }
        } else {
            unsafe st.pointee.validLines += 1
        }
        tags[victim] = want
        setFingerprint(set, vw, f)
        touch(set, vw)
        return (victim, false)
    }

    /// Writes a way back if dirty and leaves its tag for the caller to replace (does not clear it).
    @inline(__always) func evict(_ slot: Int) {
        let t = tags[slot]
        if t & Cache.dirtyBit != 0 { writeBack(slot, t) }
        if unsafe st.pointee.hasObserver, let observer { observer(.invalidate(PhysAddr(Cache.lineOf(t) << 6), KeyID(UInt16(truncatingIfNeeded: t)))) }
    }

    /// Writes way `w` of `set` back (if dirty) and invalidates it.
    @inline(__always) func invalidate(_ set: Int, _ w: Int) {
        let s = slot(set, w)
        let t = tags[s]
        guard t & Cache.validBit != 0 else { return }
        evict(s)
        tags[s] = 0
        setFingerprint(set, w, 0)
        unsafe st.pointee.validLines -= 1
    }

    /// Queues a dirty line for write-back (encryption with its KeyID at drain time).
    @inline(__always) func writeBack(_ slot: Int, _ t: UInt64) {
        if unsafe st.pointee.wbCount == Cache.wbCapacity { drainWriteBacks() }
        let n = unsafe st.pointee.wbCount
        let lineNo = Cache.lineOf(t)
        let keyid = UInt16(truncatingIfNeeded: t)
        wbAddr[n] = lineNo << 6
        wbKey[n] = keyid
        let out = unsafe wbData.raw(n &* cacheLineSize)
        if t & Cache.zeroBit != 0 {
            _ = unsafe memset(out, 0, cacheLineSize)
        } else {
            unsafe out.copyMemory(from: slotData(slot), byteCount: cacheLineSize)
        }
        unsafe st.pointee.wbCount = n &+ 1
        if unsafe lineNo >= st.pointee.watchLo && lineNo < st.pointee.watchHi { unsafe st.pointee.prefetchStale = true }
        if unsafe st.pointee.hasObserver, let observer { observer(.writeBack(PhysAddr(lineNo << 6), KeyID(keyid))) }
    }

    /// Charges the queued write-backs (`write_back` each, `encrypt_line` for encrypting KeyIDs, the
    /// dirty evictions among them), encrypts them (one engine batch per KeyID) and stores them to
    /// DRAM in queue order. A batch that is one whole frame in line order (a page's 64 sets
    /// evicting the 64 lines of an older frame, a page flush) is encrypted straight into DRAM.
    func drainWriteBacks() {
        let n = unsafe st.pointee.wbCount
        guard n > 0 else { return }
        unsafe st.pointee.wbCount = 0
        clock.charge(.writeBack, n)
        clock.count(.evictions, unsafe st.pointee.pendingEvictions)
        unsafe st.pointee.pendingEvictions = 0
        let k0 = wbKey[0]
        var uniform = true
        for i in 1..<n where wbKey[i] != k0 { uniform = false; break }
        if uniform {
            if !engine.isPlaintext(KeyID(k0)) { clock.charge(.encryptLine, n) }
            let first = wbAddr[0]
            if n == linesPerPage && first & UInt64(pageSize - 1) == 0 && dram.contains(PhysAddr(first), count: pageSize) {
                var contiguous = true
                for i in 1..<n where wbAddr[i] != first &+ UInt64(i &* cacheLineSize) { contiguous = false; break }
                if contiguous {
                    unsafe engine.encrypt(KeyID(k0), at: PhysAddr(first), lines: n, from: wbData.raw(), to: dram.pointer(PhysAddr(first)))
                    return
                }
            }
            unsafe engine.encrypt(KeyID(k0), addresses: wbAddr.pointer(), lines: n, from: wbData.raw(), to: wbData.raw())
        } else {
            var encrypting = 0
            for i in 0..<n where !engine.isPlaintext(KeyID(wbKey[i])) { encrypting += 1 }
            clock.charge(.encryptLine, encrypting)
            // Group by KeyID; encryption is per line so groups may be processed in any order,
            // but DRAM is written below in queue order (a later write-back of a line wins).
            var done = [Bool](repeating: false, count: n)
            for i in 0..<n where !done[i] {
                let k = wbKey[i]
                var m = 0
                for j in i..<n where !done[j] && wbKey[j] == k {
                    gatherIdx[m] = j
                    gatherAddr[m] = wbAddr[j]
                    unsafe gatherData.raw(m * cacheLineSize).copyMemory(from: wbData.raw(j * cacheLineSize), byteCount: cacheLineSize)
                    done[j] = true
                    m += 1
                }
                unsafe engine.encrypt(KeyID(k), addresses: gatherAddr.pointer(), lines: m, from: gatherData.raw(), to: gatherData.raw())
                for g in 0..<m {
                    unsafe wbData.raw(gatherIdx[g] * cacheLineSize).copyMemory(from: gatherData.raw(g * cacheLineSize), byteCount: cacheLineSize)
                }
            }
        }
        for i in 0..<n {
            unsafe dram.pointer(PhysAddr(wbAddr[i])).copyMemory(from: wbData.raw(i &* cacheLineSize), byteCount: cacheLineSize)
        }
    }

    /// Reads one line from DRAM into a way, decrypting with `keyid`.
    @inline(__always) func fill(_ slot: Int, _ lineNo: UInt64, _ keyid: UInt16, aliasDirty: Bool) {
        drainWriteBacks()
        let pa = PhysAddr(lineNo << 6)
        unsafe engine.decrypt(KeyID(keyid), at: pa, lines: 1, from: dram.pointer(pa), to: slotData(slot))
        chargeFill(lineNo, keyid, aliasDirty: aliasDirty)
    }

    @inline(__always) func chargeFill(_ lineNo: UInt64, _ keyid: UInt16, aliasDirty: Bool) {
        clock.charge(.dramFill)
        if !engine.isPlaintext(KeyID(keyid)) { clock.charge(.decryptLine) }
        if aliasDirty { clock.count(.incoherentFills) }
        if unsafe st.pointee.hasObserver, let observer { observer(.fill(PhysAddr(lineNo << 6), KeyID(keyid))) }
    }

    // MARK: Inspection (for the invariant checker)

    /// Every cached line of a frame, in line order then way order.
    public func cachedLines(of pfn: PFN) -> [CachedLine] {
        var out: [CachedLine] = []
        visitLines(of: pfn) { out.append($0); return true }
        return out
    }

    /// The first cached line of a frame (line order, then way order) tagged with a KeyID other
    /// than `keyid`, or nil; allocates nothing and does not touch LRU state (the invariant
    /// checker's per-frame probe).
    public func firstLine(of pfn: PFN, notUnder keyid: KeyID) -> CachedLine? {
        var found: CachedLine?
        visitLines(of: pfn) { line in
            guard line.keyid == keyid else { found = line; return false }
            return true
        }
        return found
    }

    /// Calls `body` with each cached line of a frame, in line order then way order, until it
    /// returns false (no LRU update).
    @inline(__always) private func visitLines(of pfn: PFN, _ body: (CachedLine) -> Bool) {
        let first = pfn.rawValue << 6
        for l in 0..<UInt64(linesPerPage) {
            let lineNo = first + l
            let set = setIndex(lineNo)
            for w in 0..<ways {
                let t = tags[slot(set, w)]
                if t & Cache.validBit != 0 && Cache.lineOf(t) == lineNo {
                    guard body(CachedLine(lineIndex: Int(l), keyid: KeyID(UInt16(truncatingIfNeeded: t)), dirty: t & Cache.dirtyBit != 0)) else { return }
                }
            }
        }
    }

    /// The KeyIDs under which one line is cached, with their dirty bits.
    public func entries(ofLine pa: PhysAddr) -> [(keyid: KeyID, dirty: Bool)] {
        let lineNo = pa.rawValue >> 6
        let set = setIndex(lineNo)
        var out: [(keyid: KeyID, dirty: Bool)] = []
        for w in 0..<ways {
            let t = tags[slot(set, w)]
            if t & Cache.validBit != 0 && Cache.lineOf(t) == lineNo {
                out.append((KeyID(UInt16(truncatingIfNeeded: t)), t & Cache.dirtyBit != 0))
            }
        }
        return out
    }

    /// The cached plaintext of (line, KeyID), or nil when not cached. Does not touch LRU state.
    public func peek(line pa: PhysAddr, keyid: KeyID) -> [UInt8]? {
        let s = find(pa.rawValue >> 6, keyid.rawValue)
        guard s >= 0 else { return nil }
        if tags[s] & Cache.zeroBit != 0 { return [UInt8](repeating: 0, count: cacheLineSize) }
        return unsafe [UInt8](UnsafeRawBufferPointer(start: slotData(s), count: cacheLineSize))
    }

    /// Calls `body` for every valid line (set order, way order).
    public func forEachLine(_ body: (PhysAddr, KeyID, Bool) -> Void) {
        for set in 0..<sets {
            for w in 0..<ways {
                let t = tags[slot(set, w)]
                if t & Cache.validBit != 0 {
                    body(PhysAddr(Cache.lineOf(t) << 6), KeyID(UInt16(truncatingIfNeeded: t)), t & Cache.dirtyBit != 0)
                }
            }
        }
    }

    /// Dirty lines right now (walks the tag array).
    public var dirtyLines: Int {
        var n = 0
        for i in 0..<lineCount where tags[i] & (Cache.validBit | Cache.dirtyBit) == (Cache.validBit | Cache.dirtyBit) { n += 1 }
        return n
    }
}
