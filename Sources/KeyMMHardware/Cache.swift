// Cache: one shared, set-associative, write-back, write-allocate cache with LRU replacement whose
// lines are tagged by (physical line, KeyID) — so it is NOT coherent across KeyIDs, as on MKTME
// hardware. Lines hold plaintext; a dirty line is encrypted with its KeyID's key and its physical
// address as tweak when it is written back (eviction, clflush, wbinvd); a fill decrypts DRAM with
// the requesting KeyID's key. Hence: a read through KeyID B of a line last written through KeyID A
// without a flush returns DRAM decrypted with B's key (garbage), and A's dirty line, written back
// later, overwrites whatever B stored there.
//
// Storage is flat, way-major: slot = way * sets + set, so way w of consecutive sets is contiguous
// (a page's 64 lines sit in 64 consecutive sets: when they hit in one way, their metadata is
// 1 KiB and their data 4 KiB of contiguous host memory). One tag word and one LRU stamp per
// slot, interleaved (tag at meta[2 slot], stamp at meta[2 slot + 1]), and a data array (a sparse
// host mmap) indexed by slot. Tag word: bit 63 zero (the line's plaintext is 64 zero bytes that are not
// materialized in the data array: `zeroPage` sets it instead of storing), bits 62:18 line number
// (PA >> 6; memory is at most 64 GiB so line numbers stay below 2^30 and never reach bit 63),
// bit 17 valid, bit 16 dirty, bits 15:0 KeyID. The zero bit is a host-speed representation only:
// every reader materializes it, so observable contents, costs and counters are unchanged.
// Evicted dirty lines go to a small write-back buffer that is drained (with batched encryption)
// before any DRAM read and at the end of every public operation, so DRAM is always exact between
// operations and no fill ever sees stale DRAM.
//
// Per set, `mru` remembers the way last hit or allocated: lookups try it first (a hit there is
// the hit a full scan finds, as a (line, KeyID) is in at most one way) and page operations
// prefetch only that way's host line, so a hit costs one host cache line, not the whole set.
//
// Invariants: at most one way per (line, KeyID); invalid ways have tag 0 and stamp 0; valid
// stamps are unique and increase with use (LRU victim = smallest stamp, invalid ways first);
// the write-back buffer is empty whenever control is outside this class.
import CHostProbe
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

    /// One word per way, every other word of the interleaved metadata (tags or stamps).
    struct WayWords {
        let base: UnsafeMutablePointer<UInt64>
        @inline(__always) subscript(i: Int) -> UInt64 {
            get { base[i &<< 1] }
            nonmutating set { base[i &<< 1] = newValue }
        }
    }
    /// Interleaved metadata: [tag, stamp] per slot (slot = way * sets + set).
    let meta: UnsafeMutablePointer<UInt64>
    let tags: WayWords
    let stamps: WayWords
    /// Per set: the way last hit or allocated (a host-speed hint only; any value < ways is safe).
    let mru: UnsafeMutablePointer<UInt8>
    /// sets - 1 when `sets` is a power of two (set index by mask), else -1 (modulo).
    let setMask: Int
    let data: UnsafeMutableRawPointer
    let dataBytes: Int
    let metaBytes: Int
    /// Mutable scalars live behind a pointer: no dynamic exclusivity checks on the hot path.
    struct State {
        var tick: UInt64 = 1
        var validLines = 0
        var wbCount = 0
        /// Line numbers [watchLo, watchHi) whose prefetched copies go stale if one of them is written back.
        var watchLo: UInt64 = 0
        var watchHi: UInt64 = 0
        var prefetchStale = false
        var hasObserver = false
    }
    let st: UnsafeMutablePointer<State>
    /// Valid lines right now.
    public var validLines: Int { st.pointee.validLines }

    let dram: PhysicalMemory
    let engine: EncryptionEngine
    let clock: CostClock

    /// Called on every fill, write-back and invalidation (nil: no overhead).
    public var observer: ((CacheEvent) -> Void)? {
        didSet { st.pointee.hasObserver = observer != nil }
    }

    // Write-back buffer.
    static let wbCapacity = EncryptionEngine.batchLines
    let wbAddr: UnsafeMutablePointer<UInt64>
    let wbKey: UnsafeMutablePointer<UInt16>
    let wbData: UnsafeMutableRawPointer
    let gatherAddr: UnsafeMutablePointer<UInt64>
    let gatherIdx: UnsafeMutablePointer<Int>
    let gatherData: UnsafeMutableRawPointer
    // Prefetch (batched fills) of one chunk of lines.
    let pfData: UnsafeMutableRawPointer
    let pfAddr: UnsafeMutablePointer<UInt64>

    /// A cache of `size` bytes with `ways` ways in front of `dram`.
    public init(size: ByteCount, ways: Int, dram: PhysicalMemory, engine: EncryptionEngine, clock: CostClock) throws(HardwareError) {
        let lines = Int(size.rawValue) / cacheLineSize
        guard ways > 0, lines >= ways, lines % ways == 0 else { throw HardwareError("bad cache geometry \(size) / \(ways) ways") }
        self.ways = ways
        self.sets = lines / ways
        self.lineCount = lines
        self.setMask = sets & (sets - 1) == 0 ? sets - 1 : -1
        self.dram = dram
        self.engine = engine
        self.clock = clock
        st = .allocate(capacity: 1)
        st.initialize(to: State())
        mru = .allocate(capacity: lines / ways)
        mru.initialize(repeating: 0, count: lines / ways)
        // Tags, stamps and line data live in anonymous host mappings: zero-filled (all ways
        // invalid) and backed lazily; MADV_HUGEPAGE keeps the host TLB from thrashing on the
        // random set and way accesses of a 32 MiB cache.
        metaBytes = lines * 16
        dataBytes = lines * cacheLineSize
        guard let meta = Cache.mapHuge(metaBytes) else { st.deallocate(); throw HardwareError("cannot reserve host memory for the cache tags") }
        guard let p = Cache.mapHuge(dataBytes) else {
            munmap(meta, metaBytes); st.deallocate(); mru.deallocate()
            throw HardwareError("cannot reserve \(size) of host memory for the cache")
        }
        self.meta = meta.bindMemory(to: UInt64.self, capacity: 2 * lines)
        tags = WayWords(base: self.meta)
        stamps = WayWords(base: self.meta + 1)
        data = p
        let cap = Cache.wbCapacity
        wbAddr = .allocate(capacity: cap); wbKey = .allocate(capacity: cap)
        wbData = .allocate(byteCount: cap * cacheLineSize, alignment: 64)
        gatherAddr = .allocate(capacity: cap); gatherIdx = .allocate(capacity: cap)
        gatherData = .allocate(byteCount: cap * cacheLineSize, alignment: 64)
        pfData = .allocate(byteCount: cap * cacheLineSize, alignment: 64)
        pfAddr = .allocate(capacity: cap)
    }

    deinit {
        // Plaintext of every KeyID lives in the cache's data mapping: unmapping returns it to the
        // host kernel, which zeroes pages before any reuse (a memset here would first fault in
        // every untouched page of a 32 MiB mapping). The small heap buffers are wiped.
        munmap(data, dataBytes)
        munmap(UnsafeMutableRawPointer(meta), metaBytes)
        memset(wbData, 0, Cache.wbCapacity * cacheLineSize); memset(gatherData, 0, Cache.wbCapacity * cacheLineSize)
        memset(pfData, 0, Cache.wbCapacity * cacheLineSize)
        st.deallocate()
        mru.deallocate()
        wbAddr.deallocate(); wbKey.deallocate(); wbData.deallocate()
        gatherAddr.deallocate(); gatherIdx.deallocate(); gatherData.deallocate()
        pfData.deallocate(); pfAddr.deallocate()
    }

    /// Faults in the host pages behind the cache's tags, stamps and line data (`hp_populate_write`)
    /// without changing them. Host speed only: a bench calls it before a measured section so it
    /// measures the simulator's steady state rather than the host kernel's first touch of this
    /// lazily-backed storage. Costs `hostBytes` of host memory at once.
    public func populateHostStorage() {
        hp_populate_write(UnsafeMutableRawPointer(meta), metaBytes)
        hp_populate_write(data, dataBytes)
    }

    /// Host bytes of the cache's arrays (tags + stamps + line data).
    public var hostBytes: Int { metaBytes + dataBytes }

    static func mapHuge(_ bytes: Int) -> UnsafeMutableRawPointer? {
        guard let p = mmap(nil, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0), p != MAP_FAILED else { return nil }
        #if os(Linux)
        _ = madvise(p, bytes, MADV_HUGEPAGE)
        #endif
        return p
    }

    // MARK: Primitives

    @inline(__always) func setIndex(_ lineNo: UInt64) -> Int {
        setMask >= 0 ? Int(truncatingIfNeeded: lineNo) & setMask : Int(truncatingIfNeeded: lineNo % UInt64(sets))
    }
    @inline(__always) func slotData(_ slot: Int) -> UnsafeMutableRawPointer { data + slot * cacheLineSize }
    /// The slot of way `w` of `set` (way-major layout).
    @inline(__always) func slot(_ set: Int, _ w: Int) -> Int { w &* sets &+ set }
    @inline(__always) static func tag(_ lineNo: UInt64, _ keyid: UInt16) -> UInt64 { lineNo << lineShift | validBit | UInt64(keyid) }

    /// Prefetches (host) the tags and LRU stamps of the sets of `count` consecutive lines from `lineNo`.
    @inline(__always) func prefetchSets(_ lineNo: UInt64, _ count: Int) {
        var first = setIndex(lineNo)
        var left = min(count, sets)
        while left > 0 {
            let n = min(left, sets - first)
            for w in 0..<ways { hp_prefetch(meta + 2 * slot(first, w), n * 16, 1) }
            left -= n
            first = 0
        }
    }

    /// Prefetches (host) the tag line of each set's most recently used way, for `count`
    /// consecutive lines from `lineNo`: what a page operation whose lines hit needs.
    @inline(__always) func prefetchMRU(_ lineNo: UInt64, _ count: Int) {
        var set = setIndex(lineNo)
        for _ in 0..<min(count, sets) {
            hp_prefetchw_line(meta + 2 * slot(set, Int(mru[set])))
            set = set + 1 == sets ? 0 : set + 1
        }
    }

    /// Prefetches (host) the tag line of every way of `lineNo`'s set (with the way-major layout
    /// each also covers the neighbouring sets sharing its host line).
    @inline(__always) func prefetchWays(_ lineNo: UInt64) {
        let set = setIndex(lineNo)
        for w in 0..<ways { hp_prefetchw_line(meta + 2 * slot(set, w)) }
    }

    /// Whether (line, KeyID) sits in its set's MRU way (no LRU update).
    @inline(__always) func hitsMRU(_ lineNo: UInt64, _ keyid: UInt16) -> Bool {
        let set = setIndex(lineNo)
        return tags[slot(set, Int(mru[set]))] & Cache.identityMask == Cache.tag(lineNo, keyid)
    }

    /// The way holding (line, KeyID), or -1.
    @inline(__always) func find(_ lineNo: UInt64, _ keyid: UInt16) -> Int {
        let set = setIndex(lineNo)
        let want = Cache.tag(lineNo, keyid)
        let hint = slot(set, Int(mru[set]))
        if tags[hint] & Cache.identityMask == want { return hint }
        for w in 0..<ways where tags[slot(set, w)] & Cache.identityMask == want { return slot(set, w) }
        return -1
    }

    /// Finds (line, KeyID) or allocates a way for it (evicting the LRU line, writing it back if dirty).
    /// Returns the way and whether it was a hit. A new way is valid, clean, and its data undefined.
    /// `aliasDirty` reports whether the set holds the same line dirty under another KeyID.
    @inline(__always) func lookupOrAllocate(_ lineNo: UInt64, _ keyid: UInt16, aliasDirty: inout Bool) -> (slot: Int, hit: Bool) {
        let set = setIndex(lineNo)
        let want = Cache.tag(lineNo, keyid)
        let hint = slot(set, Int(mru[set]))
        if tags[hint] & Cache.identityMask == want {
            stamps[hint] = st.pointee.tick; st.pointee.tick &+= 1
            return (hint, true)
        }
        var victim = set
        var victimWay = 0
        var victimStamp = UInt64.max
        var alias = false
        for w in 0..<ways {
            let i = slot(set, w)
            let t = tags[i]
            if t & Cache.identityMask == want {
                stamps[i] = st.pointee.tick; st.pointee.tick &+= 1
                mru[set] = UInt8(truncatingIfNeeded: w)
                return (i, true)
            }
            if Cache.lineOf(t) == lineNo && t & (Cache.validBit | Cache.dirtyBit) == (Cache.validBit | Cache.dirtyBit) { alias = true }
            if stamps[i] < victimStamp { victimStamp = stamps[i]; victim = i; victimWay = w }
        }
        aliasDirty = alias
        if tags[victim] & Cache.validBit != 0 {
            evict(victim)
            clock.count(.evictions, tags[victim] & Cache.dirtyBit != 0 ? 1 : 0)
        } else {
            st.pointee.validLines += 1
        }
        tags[victim] = want
        stamps[victim] = st.pointee.tick; st.pointee.tick &+= 1
        mru[set] = UInt8(truncatingIfNeeded: victimWay)
        return (victim, false)
    }

    /// Writes a way back if dirty and leaves its tag for the caller to replace (does not clear it).
    @inline(__always) func evict(_ slot: Int) {
        let t = tags[slot]
        if t & Cache.dirtyBit != 0 { writeBack(slot, t) }
        if st.pointee.hasObserver, let observer { observer(.invalidate(PhysAddr(Cache.lineOf(t) << 6), KeyID(UInt16(truncatingIfNeeded: t)))) }
    }

    /// Writes a way back (if dirty) and invalidates it.
    @inline(__always) func invalidate(_ slot: Int) {
        let t = tags[slot]
        guard t & Cache.validBit != 0 else { return }
        evict(slot)
        tags[slot] = 0
        stamps[slot] = 0
        st.pointee.validLines -= 1
    }

    /// Queues a dirty line for write-back (encryption with its KeyID at drain time).
    @inline(__always) func writeBack(_ slot: Int, _ t: UInt64) {
        if st.pointee.wbCount == Cache.wbCapacity { drainWriteBacks() }
        let lineNo = Cache.lineOf(t)
        let keyid = UInt16(truncatingIfNeeded: t)
        wbAddr[st.pointee.wbCount] = lineNo << 6
        wbKey[st.pointee.wbCount] = keyid
        let out = wbData + st.pointee.wbCount * cacheLineSize
        if t & Cache.zeroBit != 0 {
            out.initializeMemory(as: UInt8.self, repeating: 0, count: cacheLineSize)
        } else {
            out.copyMemory(from: slotData(slot), byteCount: cacheLineSize)
        }
        st.pointee.wbCount += 1
        if lineNo >= st.pointee.watchLo && lineNo < st.pointee.watchHi { st.pointee.prefetchStale = true }
        clock.charge(.writeBack)
        if !engine.isPlaintext(KeyID(keyid)) { clock.charge(.encryptLine) }
        if st.pointee.hasObserver, let observer { observer(.writeBack(PhysAddr(lineNo << 6), KeyID(keyid))) }
    }

    /// Encrypts every queued write-back (one engine batch per KeyID) and stores it to DRAM in queue order.
    func drainWriteBacks() {
        let n = st.pointee.wbCount
        guard n > 0 else { return }
        let k0 = wbKey[0]
        var uniform = true
        for i in 1..<n where wbKey[i] != k0 { uniform = false; break }
        if uniform {
            engine.encrypt(KeyID(k0), addresses: wbAddr, lines: n, from: wbData, to: wbData)
        } else {
            // Group by KeyID; encryption is per line so groups may be processed in any order,
            // but DRAM is written below in queue order (a later write-back of a line wins).
            var done = [Bool](repeating: false, count: n)
            for i in 0..<n where !done[i] {
                let k = wbKey[i]
                var m = 0
                for j in i..<n where !done[j] && wbKey[j] == k {
                    gatherIdx[m] = j
                    gatherAddr[m] = wbAddr[j]
                    (gatherData + m * cacheLineSize).copyMemory(from: wbData + j * cacheLineSize, byteCount: cacheLineSize)
                    done[j] = true
                    m += 1
                }
                engine.encrypt(KeyID(k), addresses: gatherAddr, lines: m, from: gatherData, to: gatherData)
                for g in 0..<m {
                    (wbData + gatherIdx[g] * cacheLineSize).copyMemory(from: gatherData + g * cacheLineSize, byteCount: cacheLineSize)
                }
            }
        }
        for i in 0..<n {
            dram.pointer(PhysAddr(wbAddr[i])).copyMemory(from: wbData + i * cacheLineSize, byteCount: cacheLineSize)
        }
        st.pointee.wbCount = 0
    }

    /// Reads one line from DRAM into a way, decrypting with `keyid`.
    @inline(__always) func fill(_ slot: Int, _ lineNo: UInt64, _ keyid: UInt16, aliasDirty: Bool) {
        drainWriteBacks()
        let pa = PhysAddr(lineNo << 6)
        engine.decrypt(KeyID(keyid), at: pa, lines: 1, from: dram.pointer(pa), to: slotData(slot))
        chargeFill(lineNo, keyid, aliasDirty: aliasDirty)
    }

    @inline(__always) func chargeFill(_ lineNo: UInt64, _ keyid: UInt16, aliasDirty: Bool) {
        clock.charge(.dramFill)
        if !engine.isPlaintext(KeyID(keyid)) { clock.charge(.decryptLine) }
        if aliasDirty { clock.count(.incoherentFills) }
        if st.pointee.hasObserver, let observer { observer(.fill(PhysAddr(lineNo << 6), KeyID(keyid))) }
    }

    // MARK: Inspection (for the invariant checker)

    /// Every cached line of a frame, in line order then way order.
    public func cachedLines(of pfn: PFN) -> [CachedLine] {
        var out: [CachedLine] = []
        let first = pfn.rawValue << 6
        for l in 0..<UInt64(linesPerPage) {
            let lineNo = first + l
            let set = setIndex(lineNo)
            for w in 0..<ways {
                let t = tags[slot(set, w)]
                if t & Cache.validBit != 0 && Cache.lineOf(t) == lineNo {
                    out.append(CachedLine(lineIndex: Int(l), keyid: KeyID(UInt16(truncatingIfNeeded: t)), dirty: t & Cache.dirtyBit != 0))
                }
            }
        }
        return out
    }

    /// The first cached line of a frame (line order, then way order) tagged with a KeyID other
    /// than `keyid`, or nil; allocates nothing and does not touch LRU state (the invariant
    /// checker's per-frame probe).
    public func firstLine(of pfn: PFN, notUnder keyid: KeyID) -> CachedLine? {
        let first = pfn.rawValue << 6
        for l in 0..<UInt64(linesPerPage) {
            let lineNo = first + l
            let set = setIndex(lineNo)
            for w in 0..<ways {
                let t = tags[slot(set, w)]
                if t & Cache.validBit != 0 && Cache.lineOf(t) == lineNo && UInt16(truncatingIfNeeded: t) != keyid.rawValue {
                    return CachedLine(lineIndex: Int(l), keyid: KeyID(UInt16(truncatingIfNeeded: t)), dirty: t & Cache.dirtyBit != 0)
                }
            }
        }
        return nil
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
        return [UInt8](UnsafeRawBufferPointer(start: slotData(s), count: cacheLineSize))
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
