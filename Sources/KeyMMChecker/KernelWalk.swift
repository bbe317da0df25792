// Read-only walks over the kernel's state that several checks share: the distinct address
// spaces (vfork shares one mm between tasks), every leaf entry of an mm's page tables with
// the VMA that covers it, and the allocator's allocated frames as a bitmap.
//
// Invariants: nothing here changes the model (no fault, no TLB fill, no LRU update, no cost);
// iteration orders are deterministic (pids ascending, addresses ascending, PFNs ascending).
import KeyMMBase
import KeyMMHardware
import KeyMMKernel

/// One leaf page-table entry (a 4 KiB PTE or a 2 MiB PMD leaf) that maps a frame.
struct LeafEntry {
    var va: VirtAddr
    var pte: PTE
    /// A PMD leaf (2 MiB).
    var huge: Bool
    /// The frame (the first frame of the block for a huge leaf).
    var pfn: PFN
    var keyid: KeyID
}

extension Kernel {
    /// Every distinct mm with the lowest pid using it, in pid order.
    var distinctMMs: [(pid: ProcessID, mm: MM)] {
        var seen = Set<ObjectIdentifier>()
        var out: [(ProcessID, MM)] = []
        for pid in tasks.keys.sorted() {
            guard let t = tasks[pid], seen.insert(ObjectIdentifier(t.mm)).inserted else { continue }
            out.append((pid, t.mm))
        }
        return out
    }
}

enum PageTableWalk {
    /// Calls `body` for every entry of `mm` that holds a frame (present or PROT_NONE) in address
    /// order, and `swap` for swap entries. Entries are read from the page table only.
    static func forEachLeaf(_ pt: PageTable, _ body: (LeafEntry) -> Void) {
        let layout = pt.layout
        for g in 0..<256 {
            let ge = pt.raw(g)
            guard ge & 1 != 0 else { continue }
            let pud = pt.pteTableBase(ge)
            for u in 0..<ptrsPerTable {
                let ue = pt.raw(pud + u)
                guard ue & 1 != 0 else { continue }
                let pmdBase = pt.pteTableBase(ue)
                guard pt.usedEntries(table: pmdBase >> 9) > 0 else { continue }
                for m in 0..<ptrsPerTable {
                    let me = pt.raw(pmdBase + m)
                    if me == 0 { continue }
                    let base = UInt64(g) << 39 | UInt64(u) << 30 | UInt64(m) << 21
                    if me & PTEFlags.pse.rawValue != 0 {
                        let e = PTE(raw: me)
                        if e.mapsFrame {
                            body(LeafEntry(va: VirtAddr(base), pte: e, huge: true, pfn: e.hugePFN(layout), keyid: e.keyid(layout)))
                        }
                        continue
                    }
                    guard PageTable.isTable(me) else { continue }
                    let t = pt.pteTableBase(me)
                    guard pt.usedEntries(table: t >> 9) > 0 else { continue }
                    for i in 0..<ptrsPerTable {
                        let raw = pt.raw(t + i)
                        if raw == 0 { continue }
                        let e = PTE(raw: raw)
                        guard e.mapsFrame else { continue }
                        body(LeafEntry(va: VirtAddr(base | UInt64(i) << 12), pte: e, huge: false, pfn: e.pfn(layout), keyid: e.keyid(layout)))
                    }
                }
            }
        }
    }

    /// The entries of `[start, end)` that hold a frame, each as the 4 KiB view (a huge leaf gives
    /// one record per covered 4 KiB page), in address order.
    static func forEachPage(_ pt: PageTable, _ start: VirtAddr, _ end: VirtAddr, _ body: (VirtAddr, PFN, KeyID) -> Void) {
        guard start < end else { return }
        let layout = pt.layout
        pt.forEachPMD(start, end) { ps, a, next in
            let me = pt.raw(ps)
            if me == 0 { return }
            if me & PTEFlags.pse.rawValue != 0 {
                let e = PTE(raw: me)
                guard e.mapsFrame else { return }
                var v = a & ~UInt64(pageSize - 1)
                while v < next {
                    let sub = Int((v & pmdMask) >> pageShift)
                    body(VirtAddr(v), e.hugePFN(layout).advanced(by: sub), e.keyid(layout))
                    v &+= UInt64(pageSize)
                }
                return
            }
            guard PageTable.isTable(me) else { return }
            let t = pt.pteTableBase(me)
            var v = a & ~UInt64(pageSize - 1)
            while v < next {
                let e = PTE(raw: pt.raw(t | PageTable.pteIndexPublic(v)))
                if e.mapsFrame { body(VirtAddr(v), e.pfn(layout), e.keyid(layout)) }
                v &+= UInt64(pageSize)
            }
        }
    }

    /// The 4 KiB translation of `va` (frame and KeyID), if an entry maps a frame there.
    static func translate(_ pt: PageTable, _ va: VirtAddr) -> (pfn: PFN, keyid: KeyID, present: Bool)? {
        let layout = pt.layout
        switch pt.walk(va) {
        case .none:
            return nil
        case .huge(let ps):
            let e = pt[ps]
            guard e.mapsFrame else { return nil }
            let sub = Int((va.rawValue & pmdMask) >> pageShift)
            return (e.hugePFN(layout).advanced(by: sub), e.keyid(layout), e.isPresent)
        case .pte(_, let slot):
            let e = pt[slot]
            guard e.mapsFrame else { return nil }
            return (e.pfn(layout), e.keyid(layout), e.isPresent)
        }
    }
}

extension PageTable {
    /// The PTE index of an address (bits 20:12).
    @inline(__always) static func pteIndexPublic(_ va: UInt64) -> Int { Int((va >> 12) & 511) }
}

/// A bitmap over frames (allocated frames, exempt frames) rebuilt per sweep.
struct FrameBitmap {
    private(set) var words: [UInt64]
    init(frames: Int) { words = [UInt64](repeating: 0, count: (frames + 63) / 64) }
    mutating func clear() { for i in words.indices { words[i] = 0 } }
    mutating func insert(_ f: UInt64) {
        let i = Int(truncatingIfNeeded: f >> 6)
        if i < words.count { words[i] |= 1 << (f & 63) }
    }
    func contains(_ f: UInt64) -> Bool {
        let i = Int(truncatingIfNeeded: f >> 6)
        return i < words.count && words[i] & (1 << (f & 63)) != 0
    }
}

/// Page-table entries per frame (and the first one seen, for reports), reused across sweeps:
/// flat arrays up to 4M frames (16 GiB), a dictionary beyond.
final class FrameUseTable {
    struct Use { var maps: Int32; var pid: Int32; var va: UInt64 }
    private let dense: Bool
    private var maps: [Int32] = []
    private var firstPid: [Int32] = []
    private var firstVA: [UInt64] = []
    private var sparse: [UInt64: Use] = [:]
    /// Frames with at least one entry, in the order first seen.
    private(set) var touched: [UInt64] = []

    init(frames: Int) {
        dense = frames <= 1 << 22
        if dense {
            maps = [Int32](repeating: 0, count: frames)
            firstPid = [Int32](repeating: 0, count: frames)
            firstVA = [UInt64](repeating: 0, count: frames)
        }
    }

    func reset() {
        if dense { for f in touched { maps[Int(f)] = 0 } } else { sparse.removeAll(keepingCapacity: true) }
        touched.removeAll(keepingCapacity: true)
    }

    func add(_ f: UInt64, pid: Int32, va: UInt64) {
        if dense && f < UInt64(maps.count) {
            let i = Int(f)
            if maps[i] == 0 { touched.append(f); firstPid[i] = pid; firstVA[i] = va }
            maps[i] &+= 1
        } else if let u = sparse[f] {
            sparse[f] = Use(maps: u.maps &+ 1, pid: u.pid, va: u.va)
        } else {
            sparse[f] = Use(maps: 1, pid: pid, va: va)
            touched.append(f)
        }
    }

    func use(_ f: UInt64) -> Use? {
        if dense && f < UInt64(maps.count) {
            let i = Int(f)
            return maps[i] == 0 ? nil : Use(maps: maps[i], pid: firstPid[i], va: firstVA[i])
        }
        return sparse[f]
    }
}
