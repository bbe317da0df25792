// FrameBitmap: a bitmap over frames, the set type the checker's shadow (CheckerShadow.swift) and
// work lists use (allocated frames, frames to re-check).
//
// Invariants: nothing here changes the model; bits beyond the machine's frames are ignored.

/// A bitmap over frames.
struct FrameBitmap {
    var words: [UInt64]
    init(frames: Int) { words = [UInt64](repeating: 0, count: (frames + 63) / 64) }
    mutating func clear() { for i in words.indices { words[i] = 0 } }
    mutating func insert(_ f: UInt64) {
        let i = Int(truncatingIfNeeded: f >> 6)
        if i < words.count { words[i] |= 1 << (f & 63) }
    }
    mutating func remove(_ f: UInt64) {
        let i = Int(truncatingIfNeeded: f >> 6)
        if i < words.count { words[i] &= ~(1 << (f & 63)) }
    }
    func contains(_ f: UInt64) -> Bool {
        let i = Int(truncatingIfNeeded: f >> 6)
        return i < words.count && words[i] & (1 << (f & 63)) != 0
    }
}
