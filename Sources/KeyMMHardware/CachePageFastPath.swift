// CachePageFastPath: the whole-page forms of `zeroPage` and of a flush of consecutive lines,
// used when no observer is attached (benchmarks, runs without the checker). A page's 64 lines sit
// in 64 consecutive sets, so one pass walks the sets with the set index, the arrays' base pointers
// and the geometry held in locals: no per-line call, no reload of the cache's fields after each
// store, no observer test per line.
//
// Invariant: each function does exactly what the per-line path does, line by line in the same
// order — the same hits, the same victims (lowest invalid way, else the LRU way), the same recency
// updates, the same write-backs queued in the same order (so the same drains, engine batches and
// DRAM bytes), the same clock charges and counters. Only host work differs. With an observer the
// callers take the per-line path, whose events the checker consumes. `CachePageFastPathTests`
// runs random operation mixes on two identical machines, one with an observer (per-line path) and
// one without (these), and compares every tag, record, head, counter and DRAM byte.
import CXTSKernels
import KeyMMBase

extension Cache {
    /// The way of `set` whose tag is `want`, looked for among the ways whose fingerprint (in the
    /// set's record `r`) is `lineNo`'s; -1 when none. Geometry passed in (kept in the caller's locals).
    @unsafe @inline(__always)
    static func matchingWay(_ tg: UnsafeMutablePointer<UInt64>, _ r: UnsafeMutableRawPointer, _ set: Int, _ sets: Int,
                            _ fpWords: Int, _ lineNo: UInt64, _ want: UInt64) -> Int {
        let pattern = UInt64(Cache.fingerprint(lineNo)) &* 0x0101_0101_0101_0101
        var i = 0
        while i < fpWords {
            var m = unsafe Cache.zeroBytes(r.load(fromByteOffset: 8 &* i, as: UInt64.self) ^ pattern)
            while m != 0 {
                let w = 8 &* i &+ m.trailingZeroBitCount >> 3
                if unsafe tg[w &* sets &+ set] & Cache.identityMask == want { return w }
                m &= m &- 1
            }
            i &+= 1
        }
        return -1
    }

    /// `zeroPage`'s 64 full-line stores of lines `first ..< first + 64` through `keyid`, in line
    /// order: each line found (made MRU) or allocated (evicting the victim, written back if dirty),
    /// then tagged dirty + zero. The caller drains the write-back buffer.
    ///
    /// With at least 64 sets the page's lines fall in 64 distinct sets, and what a line does
    /// depends only on its own set, which no other line of the page (nor a write-back) changes: so
    /// for a page that is not cached, a first pass decides every line's way (MRU hit, other hit,
    /// or victim) and prefetches (host) the tags it will write, and a second pass applies the
    /// decisions in line order.
    @inline(__always)
    func zeroLinesUnobserved(_ first: UInt64, _ keyid: UInt16) {
        let tg = unsafe tags.pointer()
        let hd = unsafe head.pointer()
        let rec = unsafe records.raw()
        let plan = unsafe pagePlan.pointer()
        let state = unsafe st
        let sets = self.sets, ways = self.ways, fpWords = self.fpWords, recordBytes = self.recordBytes
        let lastWordWays = self.lastWordWays
        let tailOffset = self.tailOffset, nextOffset = self.nextOffset, prevOffset = self.prevOffset
        let tailXor = UInt8(truncatingIfNeeded: ways &- 1)
        let zeroDirty = Cache.dirtyBit | Cache.zeroBit
        let planned = sets >= linesPerPage
        let mruHit: UInt16 = 0, otherHit: UInt16 = 1 << 8, miss: UInt16 = 2 << 8

        /// What line `lineNo` (in `set`) does now: its way | its kind.
        @inline(__always) func decide(_ lineNo: UInt64, _ set: Int, _ want: UInt64) -> UInt16 {
            let h = Int(unsafe hd[set])
            if unsafe tg[h &* sets &+ set] & Cache.identityMask == want { return UInt16(h) | mruHit }
            let r = unsafe rec + set &* recordBytes
            let hit = unsafe Cache.matchingWay(tg, r, set, sets, fpWords, lineNo, want)
            if hit >= 0 { return UInt16(hit) | otherHit }
            // The victim: the lowest invalid way, else the LRU way.
            var i = 0
            while i < fpWords {
                var m = unsafe Cache.zeroBytes(r.load(fromByteOffset: 8 &* i, as: UInt64.self))
                if i == fpWords &- 1 { m &= lastWordWays }
                if m != 0 { return UInt16(8 &* i &+ m.trailingZeroBitCount >> 3) | miss }
                i &+= 1
            }
            return UInt16(unsafe r.load(fromByteOffset: tailOffset, as: UInt8.self) ^ tailXor) | miss
        }

        /// Carries out a decision for line `lineNo` in `set`.
        @inline(__always) func apply(_ lineNo: UInt64, _ set: Int, _ want: UInt64, _ d: UInt16) {
            let w = Int(d & 0xFF)
            let s = w &* sets &+ set
            let kind = d & 0xFF00
            if kind == mruHit { unsafe tg[s] |= zeroDirty; return }
            let r = unsafe rec + set &* recordBytes
            if kind == otherHit {
                unsafe tg[s] |= zeroDirty
            } else {
                let t = unsafe tg[s]
                if t & Cache.validBit != 0 {
                    if t & Cache.dirtyBit != 0 {
                        writeBack(s, t)
                        unsafe state.pointee.pendingEvictions &+= 1
                    }
                } else {
                    unsafe state.pointee.validLines &+= 1
                }
                unsafe tg[s] = want | zeroDirty
                unsafe r.storeBytes(of: Cache.fingerprint(lineNo), toByteOffset: w, as: UInt8.self)
            }
            // touch(set, w): unlink `w` from the recency list and push it at the head.
            let h = Int(unsafe hd[set])
            guard w != h else { return }   // an invalid MRU way reused
            let p = Int(unsafe r.load(fromByteOffset: prevOffset &+ w, as: UInt8.self) ^ UInt8(truncatingIfNeeded: w &- 1))
            let nx = Int(unsafe r.load(fromByteOffset: nextOffset &+ w, as: UInt8.self) ^ UInt8(truncatingIfNeeded: w &+ 1))
            let lru = Int(unsafe r.load(fromByteOffset: tailOffset, as: UInt8.self) ^ tailXor)
            if lru == w {
                unsafe r.storeBytes(of: UInt8(truncatingIfNeeded: p) ^ tailXor, toByteOffset: tailOffset, as: UInt8.self)
            } else {
                unsafe r.storeBytes(of: UInt8(truncatingIfNeeded: p ^ (nx &- 1)), toByteOffset: prevOffset &+ nx, as: UInt8.self)
            }
            unsafe r.storeBytes(of: UInt8(truncatingIfNeeded: nx ^ (p &+ 1)), toByteOffset: nextOffset &+ p, as: UInt8.self)
            unsafe r.storeBytes(of: UInt8(truncatingIfNeeded: h ^ (w &+ 1)), toByteOffset: nextOffset &+ w, as: UInt8.self)
            unsafe r.storeBytes(of: UInt8(truncatingIfNeeded: w ^ (h &- 1)), toByteOffset: prevOffset &+ h, as: UInt8.self)
            unsafe hd[set] = UInt8(truncatingIfNeeded: w)
        }

        let set0 = setIndex(first)
        // A page cached as a whole (its first line in its set's MRU way) runs in one pass; a page
        // whose lines miss (flushed on free, or evicted) is planned first, so the tags its
        // allocations write are fetched from host memory together.
        let cached = unsafe tg[Int(hd[set0]) &* sets &+ set0] & Cache.identityMask == Cache.tag(first, keyid)
        if planned && !cached {
            var set = set0
            for l in 0..<linesPerPage {
                let d = decide(first &+ UInt64(l), set, Cache.tag(first &+ UInt64(l), keyid))
                unsafe plan[l] = d
                if d & 0xFF00 != mruHit { unsafe hp_prefetchw_line(tg + (Int(d & 0xFF) &* sets &+ set)) }
                set = set &+ 1 == sets ? 0 : set &+ 1
            }
            set = set0
            for l in 0..<linesPerPage {
                apply(first &+ UInt64(l), set, Cache.tag(first &+ UInt64(l), keyid), unsafe plan[l])
                set = set &+ 1 == sets ? 0 : set &+ 1
            }
        } else {
            // Fewer sets than lines (a set sees several of the page's lines), or a cached page:
            // decide and apply line by line.
            var set = set0
            for l in 0..<linesPerPage {
                let want = Cache.tag(first &+ UInt64(l), keyid)
                apply(first &+ UInt64(l), set, want, decide(first &+ UInt64(l), set, want))
                set = set &+ 1 == sets ? 0 : set &+ 1
            }
        }
    }

    /// CLFLUSH of lines `firstLine ... lastLine` as tagged with `keyid`, in line order: each line
    /// found is written back if dirty and invalidated (tag and fingerprint cleared; the recency
    /// order is left as it is, as `invalidate` does). The caller charges and drains.
    ///
    /// A range of 8 to 64 lines in as many distinct sets is looked up first (a line's lookup reads
    /// only its own set, which no other line of the range changes), prefetching (host) the data of
    /// the dirty lines that hold bytes, then invalidated in line order.
    @inline(__always)
    func flushLinesUnobserved(_ firstLine: UInt64, _ lastLine: UInt64, _ keyid: UInt16) {
        let tg = unsafe tags.pointer()
        let hd = unsafe head.pointer()
        let rec = unsafe records.raw()
        let plan = unsafe pagePlan.pointer()
        let state = unsafe st
        let sets = self.sets, fpWords = self.fpWords, recordBytes = self.recordBytes
        var invalidated = 0

        /// The way of `set` holding (lineNo, keyid), or -1.
        @inline(__always) func find(_ lineNo: UInt64, _ set: Int) -> Int {
            let want = Cache.tag(lineNo, keyid)
            let h = Int(unsafe hd[set])
            if unsafe tg[h &* sets &+ set] & Cache.identityMask == want { return h }
            return unsafe Cache.matchingWay(tg, rec + set &* recordBytes, set, sets, fpWords, lineNo, want)
        }

        /// Writes way `way` of `set` back if dirty and invalidates it.
        @inline(__always) func drop(_ set: Int, _ way: Int) {
            let s = way &* sets &+ set
            let t = unsafe tg[s]
            if t & Cache.dirtyBit != 0 { writeBack(s, t) }
            unsafe tg[s] = 0
            unsafe (rec + set &* recordBytes).storeBytes(of: 0, toByteOffset: way, as: UInt8.self)
            invalidated &+= 1
        }

        let count = lastLine &- firstLine &+ 1
        let set0 = setIndex(firstLine)
        if count >= 8 && count <= UInt64(linesPerPage) && UInt64(sets) >= count {
            let n = Int(count)
            var set = set0
            for l in 0..<n {
                let w = find(firstLine &+ UInt64(l), set)
                unsafe plan[l] = UInt16(truncatingIfNeeded: w &+ 1)
                if w >= 0 {
                    let s = w &* sets &+ set
                    if unsafe tg[s] & (Cache.dirtyBit | Cache.zeroBit) == Cache.dirtyBit { unsafe hp_prefetchw_line(slotData(s)) }
                }
                set = set &+ 1 == sets ? 0 : set &+ 1
            }
            set = set0
            for l in 0..<n {
                let w = Int(unsafe plan[l]) &- 1
                if w >= 0 { drop(set, w) }
                set = set &+ 1 == sets ? 0 : set &+ 1
            }
        } else {
            var set = set0
            var lineNo = firstLine
            while true {
                let w = find(lineNo, set)
                if w >= 0 { drop(set, w) }
                if lineNo == lastLine { break }
                lineNo &+= 1
                set = set &+ 1 == sets ? 0 : set &+ 1
            }
        }
        unsafe state.pointee.validLines &-= invalidated
    }
}
