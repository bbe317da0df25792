// The per-sweep tables several checks share: the allocator's allocated (and exempt) frames as a
// bitmap, and how many page-table entries map each frame. The walks that fill them are the
// kernel's read-only ones (PageWalk, Kernel.distinctMMs), so the checker touches no page-table
// entry itself.
//
// Invariants: nothing here changes the model; tables are reset, not reallocated, between sweeps.

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
