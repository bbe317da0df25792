// Plaintext provenance (cross-keyid-plaintext, plaintext-in-dram): a shadow of what user space
// wrote, built from mem_write calls. For each physical cache line the last writer's key
// identity (KeyID + its PCONFIG generation, so a KeyID reprogrammed with another key is
// another identity) and the bytes written (with a byte mask); and an index from the first 8
// bytes of a written line to the identities that wrote them (so a secret copied to another
// frame — migration, khugepaged, KSM — is still recognised).
//
// Checks: a mem_read through identity B of a line whose last write came from identity A != B
// must not return those bytes (at least 8 non-zero bytes compared); a read of a line whose
// first 8 bytes equal a secret that only other identities wrote is the same violation (MKTME
// only: under SME the kernel legitimately copies page-cache data into C-bit pages). A line
// written back to DRAM through a plaintext KeyID (no-encrypt, SME's C-bit clear, encryption
// off) must not hold bytes written through an encrypting identity (the same two ways).
//
// Invariants: comparisons need >= 8 non-zero bytes, so zero-filled pages and short strings
// never match by accident; the content index is bounded (cleared at `contentIndexLimit`).
import KeyMMBase
import KeyMMHardware
import KeyMMKernel

/// A key as the hardware applies it: a KeyID and how many times it was programmed.
struct KeyIdentity: Hashable {
    var keyid: UInt16
    var generation: UInt64
    /// Whether data through it is encrypted in DRAM.
    var encrypting: Bool
    var text: String { "KeyID \(keyid) (key generation \(generation)\(encrypting ? "" : ", plaintext"))" }
}

/// The bytes of one cache line written through one identity.
struct ShadowLine {
    var identity: KeyIdentity
    var mask: UInt64 = 0
    var bytes = [UInt8](repeating: 0, count: cacheLineSize)
    var site: String
    /// The first 8 bytes of each segment written into the line (keys of `byContent`).
    var words: [UInt64] = []
}

struct PlaintextShadow {
    var lines: [UInt64: ShadowLine] = [:]
    var byContent: [UInt64: [KeyIdentity]] = [:]
    static let contentIndexLimit = 1 << 20

    static func word(_ b: [UInt8], _ at: Int = 0) -> UInt64 {
        var w: UInt64 = 0
        for i in 0..<8 { w |= UInt64(b[at + i]) << (8 * UInt64(i)) }
        return w
    }

    mutating func record(line: UInt64, offset: Int, bytes: ArraySlice<UInt8>, identity: KeyIdentity, site: String) {
        var s = lines[line] ?? ShadowLine(identity: identity, site: site)
        if s.identity != identity { s = ShadowLine(identity: identity, site: site) }
        var i = offset
        for b in bytes {
            s.bytes[i] = b
            s.mask |= UInt64(1) << UInt64(i)
            i += 1
        }
        s.site = site
        if bytes.count >= 8 {
            let w = PlaintextShadow.word(Array(bytes.prefix(8)))
            if w != 0 {
                if !s.words.contains(w) { s.words.append(w) }
                if byContent.count >= PlaintextShadow.contentIndexLimit { byContent.removeAll() }
                var ids = byContent[w] ?? []
                if !ids.contains(identity) { ids.append(identity); byContent[w] = ids }
            }
        }
        lines[line] = s
    }

    /// Whether the bytes of `s` were also written through an identity satisfying `p` (anywhere):
    /// then finding them there is not a leak.
    func alsoWritten(_ s: ShadowLine, by p: (KeyIdentity) -> Bool) -> Bool {
        s.words.contains { w in byContent[w]?.contains(where: p) == true }
    }

    /// Bytes of `s` within `[o1, o2)` that `data` (indexed from o1) repeats: the count compared
    /// when at least 8 written non-zero bytes overlap and all of them are equal, else 0.
    static func repeated(_ s: ShadowLine, _ o1: Int, _ o2: Int, _ data: ArraySlice<UInt8>) -> Int {
        var n = 0, nonzero = 0
        var i = o1
        var d = data.startIndex
        while i < o2 {
            if s.mask & (UInt64(1) << UInt64(i)) != 0 {
                if s.bytes[i] != data[d] { return 0 }
                n += 1
                if s.bytes[i] != 0 { nonzero += 1 }
            }
            i += 1
            d += 1
        }
        return n >= 8 && nonzero >= 8 ? n : 0
    }
}

extension InvariantChecker {
    func identity(_ k: KeyID) -> KeyIdentity {
        let m = kernel.machine
        return KeyIdentity(keyid: k.rawValue, generation: m.keyTable.programCount(of: k), encrypting: !m.engine.isPlaintext(k))
    }

    /// Walks `[addr, addr + count)` of `pid`'s address space page by page through the page
    /// table as it is now, calling `body(lineNo, offset, range in the buffer, keyid)` per line.
    func forEachLine(pid: ProcessID, addr: VirtAddr, count: Int,
                     _ body: (UInt64, Int, Range<Int>, KeyID, PFN) -> Void) {
        guard let task = kernel.task(pid), count > 0 else { return }
        var done = 0
        while done < count {
            let (a, o) = addr.rawValue.addingReportingOverflow(UInt64(done))
            if o { return }
            let va = VirtAddr(a)
            let chunk = min(count - done, pageSize - va.pageOffset)
            if let t = PageWalk.entry(in: task.mm, at: va.pageDown), t.isPresent {
                let frame = t.pfn(at: va.pageDown)
                let pa = frame.physAddr.rawValue | UInt64(va.pageOffset)
                var i = 0
                while i < chunk {
                    let p = pa + UInt64(i)
                    let off = Int(p & 63)
                    let len = min(chunk - i, cacheLineSize - off)
                    body(p >> 6, off, (done + i)..<(done + i + len), t.keyid, frame)
                    i += len
                }
            }
            done += chunk
        }
    }

    func recordWrite(_ call: CheckedCall, _ outcome: CheckedOutcome) {
        guard options.enabled.contains(.crossKeyIDPlaintext) || options.enabled.contains(.plaintextInDRAM),
              let bytes = call.written, let addr = call.address, let task = kernel.task(call.pid) else { return }
        var count = bytes.count
        if case .failed = outcome {
            // A store sequence that faulted half-way wrote the pages before the faulting one:
            // the prefix of pages now mapped present, writable and dirty.
            count = 0
            while count < bytes.count {
                let (a, o) = addr.rawValue.addingReportingOverflow(UInt64(count))
                guard !o, let e = PageWalk.entry(in: task.mm, at: VirtAddr(a)), !e.isHuge,
                      e.isPresent, e.isWritable, e.isDirty else { break }
                count += min(bytes.count - count, pageSize - VirtAddr(a).pageOffset)
            }
        }
        let site = "\(call.site.file):\(call.site.line)"
        var ids: [UInt16: KeyIdentity] = [:]
        forEachLine(pid: call.pid, addr: addr, count: count) { line, off, r, k, _ in
            let id = ids[k.rawValue] ?? identity(k)
            ids[k.rawValue] = id
            shadow.record(line: line, offset: off, bytes: bytes[r], identity: id, site: site)
        }
    }

    func checkRead(_ call: CheckedCall, _ outcome: CheckedOutcome) {
        guard options.enabled.contains(.crossKeyIDPlaintext), case .bytes(let data) = outcome,
              let addr = call.address else { return }
        let contentCheck = !kernel.smeActive
        forEachLine(pid: call.pid, addr: addr, count: data.count) { line, off, r, k, pfn in
            let reader = identity(k)
            let where_ = "pid \(call.pid) mem_read at VA \(Fmt.hex(addr.rawValue &+ UInt64(r.lowerBound))) through \(reader.text) (\(Fmt.pfn(pfn)), line \((line & 63)))"
            if let s = shadow.lines[line], s.identity != reader {
                let n = PlaintextShadow.repeated(s, off, off + r.count, data[r])
                if n > 0 && !shadow.alsoWritten(s, by: { $0 == reader }) {
                    report(.crossKeyIDPlaintext, key: "line:\(line):\(reader.keyid):\(reader.generation)",
                           "\(where_) returned \(n) bytes written through \(s.identity.text) at \(s.site)")
                    return
                }
            }
            if contentCheck, off == 0, r.count >= 8 {
                let w = PlaintextShadow.word(Array(data[r]))
                if w != 0, let ids = shadow.byContent[w], !ids.isEmpty, !ids.contains(reader) {
                    report(.crossKeyIDPlaintext, key: "content:\(line):\(reader.keyid):\(reader.generation)",
                           "\(where_) returned a line whose first 8 bytes (\(Fmt.hex(w))) were written only through \(ids.map(\.text).joined(separator: ", "))")
                }
            }
        }
    }

    /// Lines written back through a plaintext KeyID during the call must not hold secrets.
    func checkPlaintextWriteBacks() {
        guard options.enabled.contains(.plaintextInDRAM), !tap.plaintextWriteBacks.isEmpty else { return }
        var seen = Set<UInt64>()
        for line in tap.plaintextWriteBacks where seen.insert(line).inserted {
            checkDRAMLine(line, how: "written back through a plaintext KeyID")
        }
    }

    func checkDRAMLine(_ line: UInt64, how: String) {
        let m = kernel.machine
        let pa = PhysAddr(line << 6)
        guard m.dram.contains(pa, count: cacheLineSize) else { return }
        let dram = m.dram.read(pa, count: cacheLineSize)
        let f = pa.pfn
        var place: String { "DRAM at PA \(Fmt.hex(pa.rawValue)) (\(Fmt.pfn(f)) line \(line & 63), page_keyid \(kernel.allocator.pageKeyID(f).rawValue))" }
        if let s = shadow.lines[line], s.identity.encrypting {
            let n = PlaintextShadow.repeated(s, 0, cacheLineSize, dram[...])
            if n > 0 && !shadow.alsoWritten(s, by: { !$0.encrypting }) {
                report(.plaintextInDRAM, key: "line:\(line)",
                       "\(place), \(how), holds \(n) bytes of plaintext written through \(s.identity.text) at \(s.site)")
                return
            }
        }
        if !kernel.smeActive {
            let w = PlaintextShadow.word(dram)
            if w != 0, let ids = shadow.byContent[w], ids.contains(where: \.encrypting), !ids.contains(where: { !$0.encrypting }) {
                report(.plaintextInDRAM, key: "content:\(line)",
                       "\(place), \(how), starts with 8 bytes (\(Fmt.hex(w))) written only through \(ids.map(\.text).joined(separator: ", "))")
            }
        }
    }

    /// Every shadowed secret against DRAM (full check only: O(lines written)).
    func checkShadowAgainstDRAM() {
        guard options.enabled.contains(.plaintextInDRAM) else { return }
        for line in shadow.lines.keys.sorted() where shadow.lines[line]?.identity.encrypting == true {
            checkDRAMLine(line, how: "found by the full check")
        }
    }
}
