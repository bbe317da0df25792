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
import KeyMMBase

extension Cache {
    /// `zeroPage`'s 64 full-line stores of lines `first ..< first + 64` through `keyid`, in line
    /// order: each line found (made MRU) or allocated (evicting the victim, written back if dirty),
    /// then tagged dirty + zero. The caller drains the write-back buffer.
    @inline(__always)
    func zeroLinesUnobserved(_ first: UInt64, _ keyid: UInt16) {
        let tg = unsafe tags.pointer()
        let hd = unsafe head.pointer()
        let rec = unsafe records.raw()
        let state = unsafe st
        let sets = self.sets, ways = self.ways, fpWords = self.fpWords, recordBytes = self.recordBytes
        let lastWordWays = self.lastWordWays
        let tailOffset = self.tailOffset, nextOffset = self.nextOffset, prevOffset = self.prevOffset
        let tailXor = UInt8(truncatingIfNeeded: ways &- 1)
        let zeroDirty = Cache.dirtyBit | Cache.zeroBit
        var set = setIndex(first)
        var l: UInt64 = 0
        while l < UInt64(linesPerPage) {
            defer { l &+= 1; set = set &+ 1 == sets ? 0 : set &+ 1 }
            let lineNo = first &+ l
            let want = Cache.tag(lineNo, keyid)
            let h = Int(unsafe hd[set])
            let hs = h &* sets &+ set
            if unsafe tg[hs] & Cache.identityMask == want { unsafe tg[hs] |= zeroDirty; continue }   // the MRU way
            let r = unsafe rec + set &* recordBytes
            let f = Cache.fingerprint(lineNo)
            let pattern = UInt64(f) &* 0x0101_0101_0101_0101
            var way = -1
            var i = 0
            search: while i < fpWords {
                var m = unsafe Cache.zeroBytes(r.load(fromByteOffset: 8 &* i, as: UInt64.self) ^ pattern)
                while m != 0 {
                    let w = 8 &* i &+ m.trailingZeroBitCount >> 3
                    if unsafe tg[w &* sets &+ set] & Cache.identityMask == want { way = w; break search }
                    m &= m &- 1
                }
                i &+= 1
            }
            let s: Int
            if way >= 0 {
                s = way &* sets &+ set
                unsafe tg[s] |= zeroDirty
            } else {
                // The victim: the lowest invalid way, else the LRU way.
                i = 0
                while i < fpWords {
                    var m = unsafe Cache.zeroBytes(r.load(fromByteOffset: 8 &* i, as: UInt64.self))
                    if i == fpWords &- 1 { m &= lastWordWays }
                    if m != 0 { way = 8 &* i &+ m.trailingZeroBitCount >> 3; break }
                    i &+= 1
                }
                if way < 0 { way = Int(unsafe r.load(fromByteOffset: tailOffset, as: UInt8.self) ^ tailXor) }
                s = way &* sets &+ set
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
                unsafe r.storeBytes(of: f, toByteOffset: way, as: UInt8.self)
            }
            // touch(set, way): unlink `way` from the recency list and push it at the head.
            let w = way
            guard w != h else { continue }   // an invalid MRU way reused
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
    }

    /// CLFLUSH of lines `firstLine ... lastLine` as tagged with `keyid`, in line order: each line
    /// found is written back if dirty and invalidated (tag and fingerprint cleared; the recency
    /// order is left as it is, as `invalidate` does). The caller charges and drains.
    @inline(__always)
    func flushLinesUnobserved(_ firstLine: UInt64, _ lastLine: UInt64, _ keyid: UInt16) {
        let tg = unsafe tags.pointer()
        let hd = unsafe head.pointer()
        let rec = unsafe records.raw()
        let state = unsafe st
        let sets = self.sets, fpWords = self.fpWords, recordBytes = self.recordBytes
        var set = setIndex(firstLine)
        var lineNo = firstLine
        var invalidated = 0
        while true {
            let want = Cache.tag(lineNo, keyid)
            var way = Int(unsafe hd[set])
            if unsafe tg[way &* sets &+ set] & Cache.identityMask != want {
                way = -1
                let r = unsafe rec + set &* recordBytes
                let pattern = UInt64(Cache.fingerprint(lineNo)) &* 0x0101_0101_0101_0101
                var i = 0
                search: while i < fpWords {
                    var m = unsafe Cache.zeroBytes(r.load(fromByteOffset: 8 &* i, as: UInt64.self) ^ pattern)
                    while m != 0 {
                        let w = 8 &* i &+ m.trailingZeroBitCount >> 3
                        if unsafe tg[w &* sets &+ set] & Cache.identityMask == want { way = w; break search }
                        m &= m &- 1
                    }
                    i &+= 1
                }
            }
            if way >= 0 {
                let s = way &* sets &+ set
                let t = unsafe tg[s]
                if t & Cache.dirtyBit != 0 { writeBack(s, t) }
                unsafe tg[s] = 0
                unsafe (rec + set &* recordBytes).storeBytes(of: 0, toByteOffset: way, as: UInt8.self)
                invalidated &+= 1
            }
            if lineNo == lastLine { break }
            lineNo &+= 1
            set = set &+ 1 == sets ? 0 : set &+ 1
        }
        unsafe state.pointee.validLines &-= invalidated
    }
}
