// The hardware half of the sweep: stale-cache-line (no line of an allocated frame is cached
// under a KeyID other than its page_keyid: caches are not coherent across KeyIDs, so such a
// line is stale data that a later access or write-back would expose) and zero-page-modified
// (the zero pages read as zeros through KeyID 0).
//
// Reads are side-effect free: Cache.forEachLine / cachedLines / peek do not touch LRU state,
// DRAM is read raw and decrypted with the engine (no cost is charged, nothing is filled).
// Frames mapped by special entries (raw PFNs with their own encryption bits, e.g. a vvar
// page) are exempt: they are legitimately accessed through more than one KeyID.
import KeyMMBase
import KeyMMHardware
import KeyMMKernel

extension InvariantChecker {
    func checkCache(_ frames: AllocatedFrames, _ work: inout Int) {
        guard options.enabled.contains(.staleCacheLine) else { return }
        let cache = kernel.machine.cache
        let alloc = kernel.allocator
        let perFrameCost = linesPerPage * cache.ways
        if frames.count * perFrameCost < cache.lineCount {
            // Few frames: probe each frame's 64 lines.
            work += frames.count * perFrameCost / 16
            for (head, order) in frames.blocks {
                for i in 0..<order.pages {
                    let f = head.advanced(by: i)
                    if exempt.contains(f.rawValue) { continue }
                    let k = alloc.pageKeyID(f)
                    for line in cache.cachedLines(of: f) where line.keyid != k && !isCVMTag(line.keyid) {
                        staleLine(f, k, line.lineIndex, line.keyid, line.dirty)
                        break
                    }
                }
            }
        } else {
            // Many frames: one pass over the cache's tags.
            work += cache.lineCount / 16
            var stale: [(PFN, KeyID, Int, KeyID, Bool)] = []
            let allocatedFrames = allocated, exemptFrames = exempt
            cache.forEachLine { pa, k, dirty in
                let f = pa.rawValue >> pageShift
                guard allocatedFrames.contains(f), !exemptFrames.contains(f) else { return }
                let pk = alloc.pageKeyID(PFN(f))
                if k != pk && !self.isCVMTag(k) { stale.append((PFN(f), pk, Int((pa.rawValue >> 6) & 63), k, dirty)) }
            }
            var seen = Set<UInt64>()
            for (f, pk, line, k, dirty) in stale where seen.insert(f.rawValue).inserted {
                staleLine(f, pk, line, k, dirty)
            }
        }
    }

    /// Lines read during the call through a KeyID other than their frame's page_keyid.
    func checkFills() {
        for (pa, k, pk) in wrongKeyIDFills {
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
        guard m.dram.contains(pa, count: cacheLineSize) else { return [UInt8](repeating: 0xFF, count: cacheLineSize) }
        var out = [UInt8](repeating: 0, count: cacheLineSize)
        unsafe out.withUnsafeMutableBytes { dst in
            _ = unsafe m.engine.decrypt(keyid, at: pa, lines: 1, from: UnsafeRawPointer(m.dram.pointer(pa)), to: dst.baseAddress!)
        }
        return out
    }

    /// The zero pages read as zeros through KeyID 0. Every sweep: the 4 KiB zero page's cached
    /// lines (a store lands in the cache first); every 16th sweep the whole 4 KiB zero page
    /// (cache and DRAM), every 256th the huge zero page's 512 frames.
    func checkZeroPages() {
        guard options.enabled.contains(.zeroPageModified) else { return }
        let cache = kernel.machine.cache
        var frames: [(PFN, Bool)] = []
        if let z = kernel.pgtable.zeroPFN { frames.append((z, sweeps % 16 == 1)) }
        if sweeps % 256 == 1, let hz = kernel.pgtable.hugeZeroPFN {
            for i in 0..<hpagePMDNr { frames.append((hz.advanced(by: i), true)) }
        }
        for (f, whole) in frames {
            let lines: [Int] = whole ? Array(0..<linesPerPage)
                : cache.cachedLines(of: f).filter { $0.keyid == .tme }.map(\.lineIndex)
            for l in lines {
                let pa = f.physAddr.advanced(by: l * cacheLineSize)
                let bytes = view(line: pa, keyid: .tme)
                var or: UInt8 = 0
                for b in bytes { or |= b }
                if or != 0 {
                    report(.zeroPageModified, key: "\(f.rawValue)",
                           "zero page \(Fmt.pfn(f)) line \(l) (PA \(Fmt.hex(pa.rawValue))) does not read as zeros through KeyID 0")
                    break
                }
            }
        }
    }
}
