// CacheOperations: the CPU's memory operations through the cache — loads, stores (write-allocate;
// partial lines are filled first, full lines are not), page zeroing and copying, clflush of a
// range and wbinvd. Multi-line loads fill their misses with one batched decryption when that is
// exactly equivalent to filling line by line (see `prefetch`).
//
// Invariants: callers pass ranges inside DRAM and KeyIDs inside the table (Machine checks);
// every public operation ends with the write-back buffer drained, so DRAM is exact afterwards.
import KeyMMBase
#if canImport(Glibc)
import Glibc
#endif

extension Cache {
    /// CPU loads of `out.count` bytes at `pa` through `keyid`. Charges one cache access per line.
    public func load(_ pa: PhysAddr, keyid: KeyID, into out: UnsafeMutableRawBufferPointer) {
        guard let dst = out.baseAddress, out.count > 0 else { return }
        unsafe loadBytes(pa.rawValue, keyid.rawValue, dst, out.count, chargeAccess: true)
        drainWriteBacks()
    }

    /// CPU stores of `src.count` bytes at `pa` through `keyid` (write-allocate). One cache access per line.
    public func store(_ pa: PhysAddr, keyid: KeyID, from src: UnsafeRawBufferPointer) {
        guard let s = src.baseAddress, src.count > 0 else { return }
        unsafe storeBytes(pa.rawValue, keyid.rawValue, s, src.count, chargeAccess: true)
        drainWriteBacks()
    }

    /// `load(_:keyid:into:)` of `count` bytes into a new array (the same accesses and charges).
    package func load(_ pa: PhysAddr, keyid: KeyID, count: Int) -> [UInt8] {
        guard count > 0 else { return [] }
        return unsafe [UInt8](unsafeUninitializedCapacity: count) { buf, done in
            unsafe load(pa, keyid: keyid, into: UnsafeMutableRawBufferPointer(buf))
            done = count
        }
    }

    /// `store(_:keyid:from:)` of `bytes` (the same accesses and charges).
    package func store(_ pa: PhysAddr, keyid: KeyID, bytes: ArraySlice<UInt8>) {
        unsafe bytes.withUnsafeBytes { unsafe store(pa, keyid: keyid, from: $0) }
    }

    /// 64 full-line stores of zeros to a frame through `keyid` (no fills). The zeros are not
    /// written to the data array: each way is tagged dirty + zero (see `Cache.zeroBit`) and
    /// materialized by whoever reads it (load, partial store, write-back, peek).
    public func zeroPage(_ pfn: PFN, keyid: KeyID) {
        let first = pfn.rawValue << 6
        prefetchSets(first, linesPerPage)
        if unsafe st.pointee.hasObserver {
            // A frame not cached as a whole (flushed on free, or evicted): its lines will miss, so
            // bring in the tags the 64 allocations write, all at once.
            if !hitsMRU(first, keyid.rawValue) { prefetchVictims(first, linesPerPage) }
            var alias = false
            for l in 0..<UInt64(linesPerPage) {
                let (slot, _) = lookupOrAllocate(first &+ l, keyid.rawValue, aliasDirty: &alias)
                tags[slot] |= Cache.dirtyBit | Cache.zeroBit
            }
        } else {
            zeroLinesUnobserved(first, keyid.rawValue)   // the same, in two passes (CachePageFastPath.swift)
        }
        drainWriteBacks()
    }

    /// Copies a frame: 64 loads through `srcKeyID`, then 64 full-line stores through `dstKeyID`.
    public func copyPage(from src: PFN, srcKeyID: KeyID, to dst: PFN, dstKeyID: KeyID) {
        prefetchSets(dst.rawValue << 6, linesPerPage)
        let buf = unsafe pageBuffer.raw()
        unsafe loadBytes(src.rawValue << pageShift, srcKeyID.rawValue, buf, pageSize, chargeAccess: false)
        unsafe storeBytes(dst.rawValue << pageShift, dstKeyID.rawValue, UnsafeRawPointer(buf), pageSize, chargeAccess: false)
        drainWriteBacks()
    }

    /// CLFLUSH of every line overlapping `[pa, pa + length)` as tagged with `keyid`: write back if dirty, invalidate.
    /// Charges one `clflushLine` per line (hit or not).
    public func flush(_ pa: PhysAddr, keyid: KeyID, length: Int) {
        guard length > 0 else { return }
        let firstLine = pa.rawValue >> 6
        let lastLine = (pa.rawValue &+ UInt64(length) &- 1) >> 6
        guard lastLine >= firstLine else { return }
        let prefetching = lastLine - firstLine >= 7
        let n = Int(min(lastLine - firstLine + 1, UInt64(linesPerPage)))
        if prefetching { prefetchSets(firstLine, n) }
        if unsafe st.pointee.hasObserver {
            if prefetching { prefetchMRUData(firstLine, n) }
            var l = firstLine
            while true {
                let w = findWay(l, keyid.rawValue)
                if w >= 0 { invalidate(setIndex(l), w) }
                if l == lastLine { break }
                l += 1
            }
        } else {
            flushLinesUnobserved(firstLine, lastLine, keyid.rawValue)   // the same (CachePageFastPath.swift)
        }
        clock.charge(.clflushLine, Int(lastLine - firstLine + 1))
        drainWriteBacks()
    }

    /// WBINVD: writes back every dirty line and invalidates the whole cache.
    public func flushAll() {
        if validLines > 0 {
            // Set order, then way order (the order write-backs and observer events have always had).
            for set in 0..<sets {
                for w in 0..<ways where tags[slot(set, w)] & Cache.validBit != 0 { invalidate(set, w) }
            }
        }
        drainWriteBacks()
    }

    // MARK: Internals

    /// Loads bytes line by line, filling misses (batched per chunk of up to 64 lines).
    func loadBytes(_ addr: UInt64, _ keyid: UInt16, _ dst: UnsafeMutableRawPointer, _ count: Int, chargeAccess: Bool) {
        let firstLine = addr >> 6
        let lastLine = (addr + UInt64(count) - 1) >> 6
        var chunk = firstLine
        var out = 0
        while chunk <= lastLine {
            let n = Int(min(lastLine - chunk + 1, UInt64(Cache.wbCapacity)))
            if n > 1 { prefetchSets(chunk, n) }
            let missMask = n > 1 ? prefetch(chunk, n, keyid) : 0
            for l in 0..<n {
                let lineNo = chunk + UInt64(l)
                var alias = false
                let (slot, hit) = lookupOrAllocate(lineNo, keyid, aliasDirty: &alias)
                if !hit {
                    let bit = UInt64(1) << UInt64(l)
                    if unsafe missMask & bit != 0 && !st.pointee.prefetchStale {
                        let idx = (missMask & (bit &- 1)).nonzeroBitCount
                        unsafe slotData(slot).copyMemory(from: pfData.raw(idx * cacheLineSize), byteCount: cacheLineSize)
                        chargeFill(lineNo, keyid, aliasDirty: alias)
                    } else {
                        fill(slot, lineNo, keyid, aliasDirty: alias)
                    }
                }
                let lineStart = lineNo << 6
                let from = max(addr, lineStart)
                let to = min(addr + UInt64(count), lineStart + UInt64(cacheLineSize))
                let len = Int(to - from)
                if tags[slot] & Cache.zeroBit != 0 {
                    _ = unsafe memset(dst + out, 0, len)
                } else {
                    unsafe (dst + out).copyMemory(from: slotData(slot) + Int(from - lineStart), byteCount: len)
                }
                out += len
            }
            if chargeAccess { clock.charge(.cacheAccess, n) }
            unsafe st.pointee.watchLo = 0; unsafe st.pointee.watchHi = 0; unsafe st.pointee.prefetchStale = false
            chunk += UInt64(n)
        }
    }

    /// Reads and decrypts, in one engine batch, every line of the chunk that misses now. Returns the
    /// bitmask of prefetched lines (0 when fewer than 2 miss). Until the chunk is done, a write-back
    /// of any line in the chunk marks the prefetch stale and the remaining misses fill one by one,
    /// so the result is exactly that of filling line by line.
    func prefetch(_ firstLine: UInt64, _ n: Int, _ keyid: UInt16) -> UInt64 {
        var mask: UInt64 = 0
        var m = 0
        for l in 0..<n where find(firstLine + UInt64(l), keyid) < 0 {
            mask |= UInt64(1) << UInt64(l)
            m += 1
        }
        guard m >= 2 else { return 0 }
        drainWriteBacks()
        var i = 0
        for l in 0..<n where mask & (UInt64(1) << UInt64(l)) != 0 {
            let pa = (firstLine + UInt64(l)) << 6
            pfAddr[i] = pa
            unsafe pfData.raw(i * cacheLineSize).copyMemory(from: dram.pointer(PhysAddr(pa)), byteCount: cacheLineSize)
            i += 1
        }
        unsafe engine.decrypt(KeyID(keyid), addresses: pfAddr.pointer(), lines: m, from: pfData.raw(), to: pfData.raw())
        unsafe st.pointee.watchLo = firstLine
        unsafe st.pointee.watchHi = firstLine + UInt64(n)
        unsafe st.pointee.prefetchStale = false
        return mask
    }

    /// Stores bytes line by line: full lines are allocated without a fill, partial lines are filled first.
    func storeBytes(_ addr: UInt64, _ keyid: UInt16, _ src: UnsafeRawPointer, _ count: Int, chargeAccess: Bool) {
        let end = addr + UInt64(count)
        var a = addr
        var off = 0
        var lines = 0
        while a < end {
            let lineNo = a >> 6
            let lineStart = lineNo << 6
            let to = min(end, lineStart + UInt64(cacheLineSize))
            let len = Int(to - a)
            var alias = false
            let (slot, hit) = lookupOrAllocate(lineNo, keyid, aliasDirty: &alias)
            if !hit && len != cacheLineSize {
                fill(slot, lineNo, keyid, aliasDirty: alias)
            } else if tags[slot] & Cache.zeroBit != 0 {
                // Materialize a zeroPage'd line before a partial store.
                if len != cacheLineSize { _ = unsafe memset(slotData(slot), 0, cacheLineSize) }
                tags[slot] &= ~Cache.zeroBit
            }
            unsafe (slotData(slot) + Int(a - lineStart)).copyMemory(from: src + off, byteCount: len)
            tags[slot] |= Cache.dirtyBit
            off += len
            a = to
            lines += 1
        }
        if chargeAccess { clock.charge(.cacheAccess, lines) }
    }
}
