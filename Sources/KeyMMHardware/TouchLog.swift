// TouchLog: what the model touched since the invariant checker last looked — the narrow hooks'
// record that lets the checker re-check after a call only what the call could have changed
// (docs/invariants.md, "Incremental checking").
//
// Who writes what (every hook is one `if let log` test, so with no log attached the model's
// speed is unchanged):
//   - frames: the page allocator's metadata store, on every write of a frame's struct page /
//     page_ext (allocation, free, refcount, mapcount, flags, page_keyid, buddy links);
//   - entries: a page table, on every write of a PMD or PTE entry (the VA range the entry maps,
//     tagged with the table's owner: its mm), and the whole user range when it is reset;
//   - VMAs: a VMA tree, on insert/remove/replace, and a VMA in a tree on every change of its
//     range, flags, protection (KeyID) or operations (the VA range, old and new, with the owner);
//   - accesses: the machine, on every CPU access through the cache (loads, stores, page zeroing
//     and copying): the physical lines and the KeyID used;
//   - references: the page cache and the gup pins, when the references they hold change;
//   - custom: any other family's objects (`TouchKind` + an id), for checks added later (SGX
//     enclaves, TDX/SEV guests): such a family notes what it needs and reads it back.
//
// Invariants: the log only grows between `clear()` calls and never influences the model (the
// hooks write to it, nothing in the model reads it); frames are recorded once per clear; ranges
// are coalesced with the previous record when contiguous, so a loop over consecutive entries
// costs one record.
import KeyMMBase

/// A VA range of one owner (an mm: its page table or VMA tree).
package struct TouchRange: Sendable, Equatable {
    package var owner: UInt32
    package var start: UInt64
    package var end: UInt64
    package init(owner: UInt32, start: UInt64, end: UInt64) { self.owner = owner; self.start = start; self.end = end }
}

/// A CPU access through the cache: `lines` physical lines from `firstLine` (PA >> 6) through `keyid`.
package struct LineAccess: Sendable, Equatable {
    package var firstLine: UInt64
    package var lines: UInt32
    package var keyid: UInt16
    /// A store (or zeroing, or the destination of a copy) rather than a load.
    package var write: Bool
}

/// The kind of a custom touch (an object of an invariant family outside the built-in channels).
package struct TouchKind: RawRepresentable, Hashable, Sendable {
    package var rawValue: String
    package init(rawValue: String) { self.rawValue = rawValue }
}

/// Where a page table or VMA tree records its touches: the log and the owner id it is tagged with.
@usableFromInline package struct TouchOwner {
    @usableFromInline package let log: TouchLog
    @usableFromInline package let id: UInt32
    package init(log: TouchLog, id: UInt32) { self.log = log; self.id = id }
}

/// The touch log (see the file comment): hooks append from the model's hot paths, one at a time,
/// and the checker reads it between calls.
@usableFromInline package final class TouchLog {
    /// Frames whose metadata was written, each once, in the order first touched.
    package private(set) var frames: [UInt32] = []
    private var frameBits: [UInt64]
    /// Page-table entries written.
    package private(set) var entries: [TouchRange] = []
    /// VMAs changed (old and new ranges).
    package private(set) var vmas: [TouchRange] = []
    /// CPU accesses through the cache.
    package private(set) var accesses: [LineAccess] = []
    /// Page references held outside page tables (page cache, pins) changed.
    package private(set) var referencesChanged = false
    /// Objects of other invariant families.
    package private(set) var custom: [(kind: TouchKind, id: UInt64)] = []
    private var nextOwner: UInt32 = 1
    /// Frames the machine has (frame numbers at or beyond it are ignored).
    package let frameCount: Int

    package init(frameCount: Int) {
        self.frameCount = frameCount
        frameBits = [UInt64](repeating: 0, count: (frameCount + 63) / 64)
    }

    /// A fresh owner id (one per mm).
    package func newOwner() -> UInt32 {
        let id = nextOwner
        nextOwner &+= 1
        return id
    }

    /// Forgets everything recorded (the checker has looked).
    package func clear() {
        for f in frames { frameBits[Int(f >> 6)] = 0 }
        frames.removeAll(keepingCapacity: true)
        entries.removeAll(keepingCapacity: true)
        vmas.removeAll(keepingCapacity: true)
        accesses.removeAll(keepingCapacity: true)
        referencesChanged = false
        custom.removeAll(keepingCapacity: true)
    }

    /// Whether anything was recorded since the last clear.
    package var isEmpty: Bool {
        frames.isEmpty && entries.isEmpty && vmas.isEmpty && accesses.isEmpty && !referencesChanged && custom.isEmpty
    }

    // MARK: hooks

    @inline(__always) package func frame(_ pfn: UInt64) {
        guard pfn < UInt64(frameCount) else { return }
        let w = Int(truncatingIfNeeded: pfn >> 6), bit = UInt64(1) << (pfn & 63)
        if frameBits[w] & bit != 0 { return }
        frameBits[w] |= bit
        frames.append(UInt32(truncatingIfNeeded: pfn))
    }

    @inline(__always) package func entries(_ owner: UInt32, _ start: UInt64, _ end: UInt64) {
        Self.append(&entries, owner, start, end)
    }

    @inline(__always) package func vmas(_ owner: UInt32, _ start: UInt64, _ end: UInt64) {
        Self.append(&vmas, owner, start, end)
    }

    @inline(__always) static func append(_ list: inout [TouchRange], _ owner: UInt32, _ start: UInt64, _ end: UInt64) {
        if let last = list.last, last.owner == owner, start <= last.end, end >= last.start {
            list[list.count - 1] = TouchRange(owner: owner, start: min(start, last.start), end: max(end, last.end))
            return
        }
        list.append(TouchRange(owner: owner, start: start, end: end))
    }

    @inline(__always) package func access(_ pa: PhysAddr, bytes: Int, keyid: KeyID, write: Bool) {
        guard bytes > 0 else { return }
        let first = pa.rawValue >> 6
        let n = UInt32(truncatingIfNeeded: ((pa.rawValue &+ UInt64(bytes) &- 1) >> 6) &- first &+ 1)
        if let last = accesses.last, last.keyid == keyid.rawValue, last.write == write,
           last.firstLine &+ UInt64(last.lines) == first {
            accesses[accesses.count - 1].lines &+= n
            return
        }
        accesses.append(LineAccess(firstLine: first, lines: n, keyid: keyid.rawValue, write: write))
    }

    package func references() { referencesChanged = true }

    package func note(_ kind: TouchKind, _ id: UInt64) { custom.append((kind, id)) }
}
