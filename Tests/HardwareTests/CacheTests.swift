// The cache that is not coherent across KeyIDs: the hazard both ways, LRU order, clflush/wbinvd,
// encryption on write-back, fills, partial stores, page zero/copy (including the batched-fill
// fallback in tiny caches), bounds, observer events.
import Testing
import KeyMMBase
@testable import KeyMMHardware

@Suite struct CacheTests {
    /// Programs KeyID k with fixed, known keys and returns data key || tweak key.
    @discardableResult
    static func keyed(_ m: Machine, _ k: UInt16, bits: Int = 128) -> [UInt8] {
        var g = SeededGenerator(seed: 1000 + UInt64(k))
        let dk = randomBytes(bits / 8, &g), tk = randomBytes(bits / 8, &g)
        let alg = bits == 256 ? PCONFIGAlgorithm.aesXTS256 : PCONFIGAlgorithm.aesXTS128
        #expect(m.keyTable.program(KeyID(k), .setKeyDirect(dataKey: dk, tweakKey: tk), algorithm: alg) == .success)
        return dk + tk
    }

    static func line(_ seed: UInt64) -> [UInt8] { var g = SeededGenerator(seed: seed); return randomBytes(64, &g) }

    @Test func writeReadSameKeyIDHitsAndDRAMIsUntouchedUntilWriteBack() throws {
        let m = try smallMachine()
        Self.keyed(m, 1)
        let pa = PhysAddr(0x10_0040)
        let data = Self.line(1)
        m.write(pa, keyid: KeyID(1), bytes: data)
        #expect(m.read(pa, keyid: KeyID(1), count: 64) == data)
        #expect(m.physRead(pa, count: 64) == [UInt8](repeating: 0, count: 64))   // still only in the cache
        #expect(m.clock.count(of: .dramFill) == 0)                              // full-line store: no fill
        #expect(m.cache.entries(ofLine: pa).map(\.keyid) == [KeyID(1)])
        #expect(m.cache.entries(ofLine: pa).first?.dirty == true)
    }

    @Test func clflushWritesBackXTSCiphertextAndInvalidates() throws {
        let m = try smallMachine()
        let key = Self.keyed(m, 5)
        var g = SeededGenerator(seed: 3)
        for _ in 0..<8 {
            let pa = PhysAddr((g.next() % UInt64(m.dram.size)) & ~63)
            let data = randomBytes(64, &g)
            m.write(pa, keyid: KeyID(5), bytes: data)
            m.clflush(pa, keyid: KeyID(5), length: 1)
            #expect(m.cache.entries(ofLine: pa).isEmpty)
            #expect(m.physRead(pa, count: 64) == evpXTS(key: key, tweak: tweakBytes(pa.rawValue), data: data, encrypt: true))
            #expect(m.read(pa, keyid: KeyID(5), count: 64) == data)                // fill decrypts
        }
        #expect(m.clock.count(of: .clflushLine) == 8)
        #expect(m.clock.count(of: .writeBack) == 8)
        #expect(m.clock.count(of: .encryptLine) == 8)
        #expect(m.clock.count(of: .decryptLine) == 8)
    }

    @Test("Reading through B a line written through A without a flush returns DRAM decrypted with B (garbage)")
    func staleReadThroughOtherKeyID() throws {
        let m = try smallMachine()
        Self.keyed(m, 1); Self.keyed(m, 2)
        let pa = PhysAddr(0x2000)
        let data = Self.line(7)
        m.write(pa, keyid: KeyID(1), bytes: data)
        let seenByB = m.read(pa, keyid: KeyID(2), count: 64)
        #expect(seenByB != data)
        // Exactly DRAM (never written: zeros) decrypted with B's key at this address.
        var expected = [UInt8](repeating: 0, count: 64)
        let zeros = [UInt8](repeating: 0, count: 64)
        zeros.withUnsafeBytes { s in expected.withUnsafeMutableBytes { d in _ = m.engine.decrypt(KeyID(2), at: pa, lines: 1, from: s.baseAddress!, to: d.baseAddress!) } }
        #expect(seenByB == expected)
        #expect(m.clock.value(of: .incoherentFills) == 1)
        #expect(Set(m.cache.entries(ofLine: pa).map(\.keyid)) == [KeyID(1), KeyID(2)])
    }

    @Test("A's dirty line written back after B stored the page overwrites B's data")
    func lateWriteBackClobbersOtherKeyID() throws {
        let m = try smallMachine()
        Self.keyed(m, 1); Self.keyed(m, 2)
        let pa = PhysAddr(0x3000)
        let a = Self.line(11), b = Self.line(12)
        m.write(pa, keyid: KeyID(1), bytes: a)       // dirty under A, never flushed
        m.write(pa, keyid: KeyID(2), bytes: b)       // B takes the page
        m.clflush(pa, keyid: KeyID(2), length: 64)   // B's data reaches DRAM
        #expect(m.read(pa, keyid: KeyID(2), count: 64) == b)
        m.clflush(pa, keyid: KeyID(2), length: 64)
        m.wbinvd()                                   // A's stale line is written back now
        let after = m.read(pa, keyid: KeyID(2), count: 64)
        #expect(after != b)
        m.clflush(pa, keyid: KeyID(2), length: 64)
        #expect(m.read(pa, keyid: KeyID(1), count: 64) == a) // DRAM holds A's ciphertext
    }

    @Test("Flushing before the KeyID change (the series' protocol) keeps data correct")
    func flushBeforeKeyIDChange() throws {
        let m = try smallMachine()
        Self.keyed(m, 1); Self.keyed(m, 2)
        let pfn = PFN(9)
        m.clearPage(pfn, keyid: KeyID(1))
        m.write(pfn.physAddr, keyid: KeyID(1), bytes: Self.line(1))
        m.flushPage(pfn, keyid: KeyID(1))
        #expect(m.cache.cachedLines(of: pfn).isEmpty)
        m.clearPage(pfn, keyid: KeyID(2))
        let b = Self.line(2)
        m.write(pfn.physAddr.advanced(by: 128), keyid: KeyID(2), bytes: b)
        m.wbinvd()
        #expect(m.read(pfn.physAddr.advanced(by: 128), keyid: KeyID(2), count: 64) == b)
        #expect(m.read(pfn.physAddr, keyid: KeyID(2), count: 64) == [UInt8](repeating: 0, count: 64))
        #expect(m.clock.value(of: .incoherentFills) == 0)
    }

    @Test func lruEvictsLeastRecentlyUsedAndWritesBackEncrypted() throws {
        // One set of 4 ways: every line maps to it.
        let m = try smallMachine(cache: ByteCount(64 * 4), ways: 4)
        let key = Self.keyed(m, 3)
        let lines = (0..<5).map { PhysAddr(UInt64($0) * 0x1000) }
        for (i, pa) in lines.prefix(4).enumerated() { m.write(pa, keyid: KeyID(3), bytes: Self.line(UInt64(i))) }
        _ = m.read(lines[0], keyid: KeyID(3), count: 1)     // line 0 is now most recent; line 1 is LRU
        m.write(lines[4], keyid: KeyID(3), bytes: Self.line(4))
        #expect(m.cache.entries(ofLine: lines[1]).isEmpty)
        for i in [0, 2, 3, 4] { #expect(m.cache.entries(ofLine: lines[i]).count == 1) }
        #expect(m.physRead(lines[1], count: 64) == evpXTS(key: key, tweak: tweakBytes(lines[1].rawValue), data: Self.line(1), encrypt: true))
        #expect(m.clock.value(of: .evictions) == 1)
        _ = m.read(lines[2], keyid: KeyID(3), count: 1)
        m.write(lines[1], keyid: KeyID(3), bytes: Self.line(1))   // evicts line 3 now (0 and 2 were used later)
        #expect(m.cache.entries(ofLine: lines[3]).isEmpty)
    }

    @Test func wbinvdWritesBackEveryKeyIDAndEmptiesTheCache() throws {
        let m = try smallMachine()
        let k1 = Self.keyed(m, 1), k2 = Self.keyed(m, 2)
        #expect(m.keyTable.program(KeyID(3), .noEncrypt) == .success)
        let p1 = PhysAddr(0x4000), p2 = PhysAddr(0x5040), p3 = PhysAddr(0x6080)
        m.write(p1, keyid: KeyID(1), bytes: Self.line(1))
        m.write(p2, keyid: KeyID(2), bytes: Self.line(2))
        m.write(p3, keyid: KeyID(3), bytes: Self.line(3))
        _ = m.read(PhysAddr(0x7000), keyid: KeyID(1), count: 64)   // a clean line
        #expect(m.cache.dirtyLines == 3)
        m.wbinvd()
        #expect(m.cache.validLines == 0)
        #expect(m.physRead(p1, count: 64) == evpXTS(key: k1, tweak: tweakBytes(p1.rawValue), data: Self.line(1), encrypt: true))
        #expect(m.physRead(p2, count: 64) == evpXTS(key: k2, tweak: tweakBytes(p2.rawValue), data: Self.line(2), encrypt: true))
        #expect(m.physRead(p3, count: 64) == Self.line(3))      // NO_ENCRYPT stores plaintext
        #expect(m.clock.count(of: .writeBack) == 3)
        #expect(m.clock.count(of: .encryptLine) == 2)
    }

    @Test func partialStoreFillsFirstAndKeepsTheRestOfTheLine() throws {
        let m = try smallMachine()
        Self.keyed(m, 4)
        let pa = PhysAddr(0x8000)
        let data = Self.line(9)
        m.write(pa, keyid: KeyID(4), bytes: data)
        m.wbinvd()
        m.write(pa.advanced(by: 10), keyid: KeyID(4), bytes: [1, 2, 3])
        #expect(m.clock.count(of: .dramFill) == 1)
        var expected = data
        expected[10] = 1; expected[11] = 2; expected[12] = 3
        #expect(m.read(pa, keyid: KeyID(4), count: 64) == expected)
        // A store spanning three lines: the middle one is full (no fill), the ends are partial.
        m.wbinvd()
        let before = m.clock.count(of: .dramFill)
        m.write(PhysAddr(0x9020), keyid: KeyID(4), bytes: [UInt8](repeating: 7, count: 128))
        #expect(m.clock.count(of: .dramFill) - before == 2)
    }

    @Test func clearPageZeroesWithoutFillsAndEncryptsZeros() throws {
        let m = try smallMachine()
        let key = Self.keyed(m, 6)
        let pfn = PFN(100)
        m.write(pfn.physAddr, keyid: KeyID(6), bytes: Self.line(1))
        m.wbinvd()
        let fills = m.clock.count(of: .dramFill)
        m.clearPage(pfn, keyid: KeyID(6))
        #expect(m.clock.count(of: .dramFill) == fills)
        #expect(m.clock.count(of: .zeroPage) == 1)
        #expect(m.cache.cachedLines(of: pfn).count == 64)
        #expect(m.cache.cachedLines(of: pfn).allSatisfy { $0.dirty && $0.keyid == KeyID(6) })
        #expect(m.read(pfn.physAddr, keyid: KeyID(6), count: pageSize) == [UInt8](repeating: 0, count: pageSize))
        m.flushPage(pfn, keyid: KeyID(6))
        for l in [0, 17, 63] {
            let pa = pfn.physAddr.advanced(by: l * 64)
            #expect(m.physRead(pa, count: 64) == evpXTS(key: key, tweak: tweakBytes(pa.rawValue), data: [UInt8](repeating: 0, count: 64), encrypt: true))
        }
    }

    @Test("clearPage's zeros are materialized by partial stores, peek and evictions (lazy zero lines)",
          arguments: [(ByteCount.kib(64), 4), (ByteCount(64 * 2 * 8), 2), (ByteCount(64), 1)])
    func clearPageLazyZeros(_ cache: ByteCount, _ ways: Int) throws {
        let m = try smallMachine(cache: cache, ways: ways)
        let key = Self.keyed(m, 3)
        let pfn = PFN(40)
        // Old contents in the cache ways (and DRAM) that a lazy zero line must never expose.
        for l in 0..<64 { m.write(pfn.physAddr.advanced(by: l * 64), keyid: KeyID(3), bytes: Self.line(UInt64(l))) }
        m.clearPage(pfn, keyid: KeyID(3))
        let pa = pfn.physAddr.advanced(by: 5 * 64)
        if m.cache.entries(ofLine: pa).isEmpty == false {
            #expect(m.cache.peek(line: pa, keyid: KeyID(3)) == [UInt8](repeating: 0, count: 64))
        }
        m.write(pa.advanced(by: 7), keyid: KeyID(3), bytes: [0xAB])                  // partial store
        var want = [UInt8](repeating: 0, count: 64); want[7] = 0xAB
        #expect(m.read(pa, keyid: KeyID(3), count: 64) == want)
        #expect(m.read(pfn.physAddr, keyid: KeyID(3), count: 64) == [UInt8](repeating: 0, count: 64))
        m.wbinvd()
        #expect(m.physRead(pa, count: 64) == evpXTS(key: key, tweak: tweakBytes(pa.rawValue), data: want, encrypt: true))
        let l63 = pfn.physAddr.advanced(by: 63 * 64)
        #expect(m.physRead(l63, count: 64) == evpXTS(key: key, tweak: tweakBytes(l63.rawValue), data: [UInt8](repeating: 0, count: 64), encrypt: true))
    }

    @Test("copyPage across KeyIDs, in a normal cache and in tiny caches that force the batched-fill fallback",
          arguments: [(ByteCount.kib(64), 4), (ByteCount(64 * 4), 4), (ByteCount(64 * 2 * 8), 2), (ByteCount(64), 1)])
    func copyPageAcrossKeyIDs(_ cache: ByteCount, _ ways: Int) throws {
        let m = try smallMachine(cache: cache, ways: ways)
        Self.keyed(m, 1); Self.keyed(m, 2)
        var g = SeededGenerator(seed: 77)
        let page = randomBytes(pageSize, &g)
        let src = PFN(10), dst = PFN(11)
        m.write(src.physAddr, keyid: KeyID(1), bytes: page)
        m.flushPage(src, keyid: KeyID(1))
        // Dirty lines of both frames under other KeyIDs, so copying evicts and writes back mid-copy.
        m.write(src.physAddr.advanced(by: 64 * 5), keyid: KeyID(1), bytes: Self.line(5))
        var expectedSrc = page
        expectedSrc.replaceSubrange((64 * 5)..<(64 * 6), with: Self.line(5))
        m.copyPage(from: src, srcKeyID: KeyID(1), to: dst, dstKeyID: KeyID(2))
        #expect(m.read(dst.physAddr, keyid: KeyID(2), count: pageSize) == expectedSrc)
        m.wbinvd()
        #expect(m.read(dst.physAddr, keyid: KeyID(2), count: pageSize) == expectedSrc)
        #expect(m.read(src.physAddr, keyid: KeyID(1), count: pageSize) == expectedSrc)
        #expect(m.read(dst.physAddr, keyid: KeyID(1), count: 64) != Array(expectedSrc.prefix(64)))
    }

    @Test("Batched fills equal line-by-line fills even when the chunk's own lines are written back mid-load")
    func batchedFillStaleFallback() throws {
        // 2 sets x 1 way: loading 8 lines evicts lines of the same chunk; one KeyID-2 alias is dirty.
        let m = try smallMachine(cache: ByteCount(128), ways: 1)
        Self.keyed(m, 1); Self.keyed(m, 2)
        var g = SeededGenerator(seed: 5)
        let data = randomBytes(512, &g)
        m.write(PhysAddr(0xA000), keyid: KeyID(1), bytes: data)
        m.wbinvd()
        m.write(PhysAddr(0xA040), keyid: KeyID(1), bytes: Self.line(42))  // dirty, in the chunk
        var expected = data
        expected.replaceSubrange(64..<128, with: Self.line(42))
        #expect(m.read(PhysAddr(0xA000), keyid: KeyID(1), count: 512) == expected)
        #expect(m.read(PhysAddr(0xA000), keyid: KeyID(1), count: 512) == expected)
    }

    @Test func outOfRangeAccessesNeverCrash() throws {
        let m = try smallMachine()
        let end = PhysAddr(UInt64(m.dram.size))
        #expect(m.read(end, keyid: KeyID(1), count: 4) == [0xFF, 0xFF, 0xFF, 0xFF])
        m.write(PhysAddr(end.rawValue - 2), keyid: KeyID(1), bytes: [1, 2, 3, 4])
        #expect(m.read(PhysAddr(end.rawValue - 2), keyid: KeyID(1), count: 4) == [1, 2, 0xFF, 0xFF])
        #expect(m.physRead(PhysAddr(UInt64.max - 1), count: 2) == [0xFF, 0xFF])
        m.clearPage(PFN(UInt64(m.frameCount)), keyid: KeyID(1))
        m.copyPage(from: PFN(UInt64.max >> 12), srcKeyID: KeyID(1), to: PFN(0), dstKeyID: KeyID(1))
        m.clflush(PhysAddr(UInt64.max - 10), keyid: KeyID(1), length: 100)
        _ = m.read(PhysAddr(0), keyid: KeyID(999), count: 64)  // KeyID reduced to the decoded bits
    }

    @Test func observerSeesFillsWriteBacksAndInvalidations() throws {
        let m = try smallMachine()
        Self.keyed(m, 1)
        final class Log { var events: [CacheEvent] = [] }
        let log = Log()
        m.cache.observer = { log.events.append($0) }
        m.write(PhysAddr(0x40), keyid: KeyID(1), bytes: [1])        // partial: fill
        m.clflush(PhysAddr(0x40), keyid: KeyID(1), length: 1)
        #expect(log.events == [.fill(PhysAddr(0x40), KeyID(1)), .writeBack(PhysAddr(0x40), KeyID(1)), .invalidate(PhysAddr(0x40), KeyID(1))])
    }
}

/// The replacement structure (fingerprints + per-set recency list) against the definition it
/// implements: per-way use stamps, victim = the smallest stamp (invalid ways are stamped 0 and
/// win, lowest way first). Same ways, same victims, after every operation, for every associativity
/// class (1 way, fewer than one fingerprint word, exactly one, more than one, the maximum).
@Suite struct CacheReplacementTests {
    /// The stamp-based reference: the way each (line, KeyID) occupies, per set.
    struct Reference {
        let sets: Int, ways: Int
        var tag: [UInt64]      // line << 16 | keyid, or UInt64.max when invalid
        var stamp: [UInt64]
        var tick: UInt64 = 1
        init(sets: Int, ways: Int) {
            self.sets = sets; self.ways = ways
            tag = [UInt64](repeating: .max, count: sets * ways); stamp = [UInt64](repeating: 0, count: sets * ways)
        }
        mutating func access(_ line: UInt64, _ k: UInt16) {
            let set = Int(line % UInt64(sets)), want = line << 16 | UInt64(k)
            if let w = (0..<ways).first(where: { tag[set * ways + $0] == want }) {
                stamp[set * ways + w] = tick; tick += 1; return
            }
            var victim = 0
            for w in 1..<max(ways, 1) where stamp[set * ways + w] < stamp[set * ways + victim] { victim = w }
            tag[set * ways + victim] = want; stamp[set * ways + victim] = tick; tick += 1
        }
        mutating func invalidate(_ line: UInt64, _ k: UInt16) {
            let set = Int(line % UInt64(sets)), want = line << 16 | UInt64(k)
            if let w = (0..<ways).first(where: { tag[set * ways + $0] == want }) { tag[set * ways + w] = .max; stamp[set * ways + w] = 0 }
        }
        mutating func invalidateAll() {
            for i in tag.indices { tag[i] = .max; stamp[i] = 0 }
        }
    }

    @Test("Victims equal the stamp-LRU definition", arguments: [1, 3, 8, 16, 17, 64])
    func victimsMatchStampLRU(ways: Int) throws {
        let sets = 4
        let m = try smallMachine(cache: ByteCount(UInt64(64 * sets * ways)), ways: ways)
        var ref = Reference(sets: sets, ways: ways)
        var g = SeededGenerator(seed: UInt64(ways))
        let pool = UInt64(sets * (ways + 3))   // a few more lines per set than ways: evictions
        let line = [UInt8](repeating: 0xA5, count: 64)
        for step in 0..<4000 {
            let l = g.next() % pool, k = UInt16(g.next() % 3)
            let pa = PhysAddr(l << 6)
            switch g.next() % 16 {
            case 0..<7: m.write(pa, keyid: KeyID(k), bytes: line); ref.access(l, k)
            case 7..<13: _ = m.read(pa, keyid: KeyID(k), count: 64); ref.access(l, k)
            case 13..<15: m.clflush(pa, keyid: KeyID(k), length: 64); ref.invalidate(l, k)
            default: if step % 7 == 0 { m.wbinvd(); ref.invalidateAll() }
            }
            let c = m.cache
            for set in 0..<sets {
                for w in 0..<ways {
                    let t = c.tags[c.slot(set, w)]
                    let got = t & Cache.validBit == 0 ? UInt64.max : Cache.lineOf(t) << 16 | (t & 0xFFFF)
                    try #require(got == ref.tag[set * ways + w], "ways \(ways) step \(step) set \(set) way \(w)")
                }
            }
        }
        #expect(m.clock.value(of: .evictions) > 0)
    }
}

@Suite struct OwnedBufferTests {
    @Test("A refused mapping falls back to a zeroed heap buffer, which is freed as heap memory")
    func refusedMappingFallsBackToHeap() {
        let b = OwnedBuffer<UInt64>.lazilyZeroed(count: 1 << 16, refuseMapping: true)
        #expect(b.backing == .heap)
        #expect((0..<b.count).allSatisfy { b[$0] == 0 })
        b[b.count - 1] = 7
        #expect(b[b.count - 1] == 7)
        let mapped = OwnedBuffer<UInt64>.lazilyZeroed(count: 1 << 16)
        #expect(mapped.backing == .mapping)
        #expect(mapped[12345] == 0)
    }

    @Test("The engine's tweak cache on the heap fallback encrypts exactly as with the mapping")
    func engineHeapFallbackMatchesMapping() {
        let a = EncryptionEngine(slots: 4, refuseTweakCacheMapping: true)
        let b = EncryptionEngine(slots: 4)
        #expect(a.tweakCacheBacking == .heap)
        #expect(b.tweakCacheBacking == .mapping)
        var g = SeededGenerator(seed: 77)
        let dk = randomBytes(16, &g), tk = randomBytes(16, &g)
        for e in [a, b] {
            dk.withUnsafeBytes { d in tk.withUnsafeBytes { t in #expect(e.setKey(KeyID(1), dataKey: d, tweakKey: t)) } }
        }
        let page = randomBytes(pageSize, &g)
        var outA = [UInt8](repeating: 0, count: pageSize), outB = outA
        for pfn: UInt64 in [5, 5, 4096 + 5] {   // cold, warm (entry reused), the same entry for another frame
            let pa = PhysAddr(pfn << pageShift)
            page.withUnsafeBytes { s in outA.withUnsafeMutableBytes { d in _ = a.encrypt(KeyID(1), at: pa, lines: linesPerPage, from: s.baseAddress!, to: d.baseAddress!) } }
            page.withUnsafeBytes { s in outB.withUnsafeMutableBytes { d in _ = b.encrypt(KeyID(1), at: pa, lines: linesPerPage, from: s.baseAddress!, to: d.baseAddress!) } }
            #expect(outA == outB)
            #expect(Array(outA[0..<64]) == evpXTS(key: dk + tk, tweak: tweakBytes(pa.rawValue), data: Array(page[0..<64]), encrypt: true))
        }
        #expect(a.tweakCacheStats.pageHits == 1)
    }
}
