// VMATree: the address space's ordered VMA index (the model's maple tree).
//
// A B+tree keyed by vm_start: internal nodes hold separator keys and child indices, leaves
// hold (vm_start, VMA) pairs and are doubly linked so in-order walks in both directions are
// O(1) per step. Lookup, insertion and removal are O(log n).
//
// Storage is built for large trees (1M VMAs): every node is a fixed block of 72 words
// (576 bytes, nine cache lines, cache-line aligned) in one flat arena, and nodes refer to each
// other by arena index. A node is [count | leaf flag][next | prev leaf] then (key, slot) pairs;
// a leaf's slots hold the VMAs as retained object pointers, an internal node's its children.
// A search counts the keys <= k over the whole node with independent loads, so a cold node's
// lines arrive together and the slot it then reads is already in: one memory latency per
// level. No node carries an object header or a reference count, and moving entries inside or
// between nodes (insert, remove, split, merge) is a plain copy of words — no retain/release
// of the VMAs moved, which in a large tree are cold (each would be a cache miss). Fan-out 32, with splits that leave sequentially filled nodes full
// (mmap's bottom-up / top-down placement), keeps a 1M-VMA tree four or five levels deep.
// Large arenas are advised for transparent huge pages (fewer host TLB misses on descents).
//
// Invariants:
// - keys are the vm_start of the VMA stored next to them; VMAs never overlap, so ordering by
//   vm_start is also ordering by vm_end;
// - in an internal node, every key of child i is < keys[i] <= every key of child i+1;
// - every node except the root holds at least minFill (order/4) entries (children); the root
//   leaf may be empty, an internal root has at least two children;
// - every VMA in a leaf slot holds exactly one reference owned by the tree (taken by insert /
//   replace, dropped by remove / replace / removeAll / deinit);
// - a VMA's vmStart must not change while it is in the tree: callers remove it, change the
//   range, and insert it again (`MM.adjust` does this) — `check()` verifies all of this.
import KeyMMBase
#if canImport(Glibc)
import Glibc
#endif

/// A position in the tree's leaf level (a VMA and its neighbours). Invalidated by any
/// insertion or removal.
public struct VMACursor {
    @usableFromInline unowned(unsafe) let tree: VMATree
    /// Arena index of the leaf, -1 past either end.
    @usableFromInline let leaf: Int32
    @usableFromInline let index: Int
    @inlinable init(tree: VMATree, leaf: Int32, index: Int) { unsafe self.tree = tree; self.leaf = leaf; self.index = index }
    /// The VMA at this position, nil past either end.
    public var vma: VMA? { unsafe tree.entry(leaf, index) }
    /// The next position in address order.
    public func next() -> VMACursor { unsafe tree.step(self, forward: true) }
    /// The previous position in address order.
    public func previous() -> VMACursor { unsafe tree.step(self, forward: false) }
    /// True past either end.
    var isEnd: Bool { leaf < 0 }
}

/// Every other word from `p` (the keys or the slots of a node, which alternate).
@unsafe struct VMATreeWords {
    let p: UnsafeMutablePointer<UInt64>
    @inline(__always) init(_ p: UnsafeMutablePointer<UInt64>) { unsafe self.p = unsafe p }
    @inline(__always) subscript(_ j: Int) -> UInt64 {
        get { unsafe p[j &<< 1] }
        nonmutating set { unsafe p[j &<< 1] = newValue }
    }
}

/// A node of the arena, seen through a pointer to its first word (valid until the arena
/// grows; the tree reserves what an operation may allocate before it starts).
@unsafe struct VMATreeNode {
    let p: UnsafeMutablePointer<UInt64>
    @inline(__always) init(_ p: UnsafeMutablePointer<UInt64>) { unsafe self.p = unsafe p }

    /// Entries (leaf) or children (internal).
    @inline(__always) var count: Int {
        get { unsafe Int(truncatingIfNeeded: UInt32(truncatingIfNeeded: p[0])) }
        nonmutating set { unsafe p[0] = unsafe (p[0] & ~0xFFFF_FFFF) | UInt64(UInt32(truncatingIfNeeded: newValue)) }
    }
    @inline(__always) var isLeaf: Bool { unsafe p[0] >> 32 != 0 }
    /// Next / previous leaf (arena index, -1 for none).
    @inline(__always) var next: Int32 {
        get { unsafe Int32(truncatingIfNeeded: p[1]) }
        nonmutating set { unsafe p[1] = unsafe (p[1] & ~0xFFFF_FFFF) | UInt64(UInt32(bitPattern: newValue)) }
    }
    @inline(__always) var prev: Int32 {
        get { unsafe Int32(truncatingIfNeeded: p[1] >> 32) }
        nonmutating set { unsafe p[1] = unsafe (p[1] & 0xFFFF_FFFF) | (UInt64(UInt32(bitPattern: newValue)) << 32) }
    }
    /// Key j and slot j are the words 2 + 2j and 3 + 2j: a slot shares its key's cache line.
    @inline(__always) var keys: VMATreeWords { unsafe VMATreeWords(p + 2) }
    @inline(__always) var slots: VMATreeWords { unsafe VMATreeWords(p + 3) }
    /// Keys in use: `count` in a leaf, `count - 1` in an internal node.
    @inline(__always) var keyCount: Int { unsafe isLeaf ? count : count &- 1 }
    @inline(__always) func child(_ i: Int) -> Int32 { unsafe Int32(truncatingIfNeeded: slots[i]) }

    /// Index of the first key > k among the keys in use: the number of keys <= k, counted
    /// without branches. Every key load is independent of the others, so in a cold node the
    /// CPU fetches all its key lines at once (a binary search would wait for each line in
    /// turn and mispredict half its branches); 33 compares cost less than that.
    @inline(__always) func upperBound(_ k: UInt64) -> Int {
        let n = unsafe keyCount
        let keys = unsafe self.keys
        var below = 0
        var j = 0
        while j < n {
            unsafe below &+= keys[j] <= k ? 1 : 0
            j &+= 1
        }
        return below
    }

    /// Leaf: insert (k, v) at i.
    @inline(__always) func insertEntry(_ k: UInt64, _ v: UInt64, at i: Int) {
        let c = unsafe count
        let keys = unsafe self.keys, slots = unsafe self.slots
        var j = c
        while j > i { unsafe keys[j] = unsafe keys[j &- 1]; unsafe slots[j] = unsafe slots[j &- 1]; j &-= 1 }
        unsafe keys[i] = k
        unsafe slots[i] = v
        unsafe count = c &+ 1
    }

    /// Leaf: remove entry i.
    @inline(__always) func removeEntry(at i: Int) {
        let c = unsafe count
        let keys = unsafe self.keys, slots = unsafe self.slots
        var j = i
        while j &+ 1 < c { unsafe keys[j] = unsafe keys[j &+ 1]; unsafe slots[j] = unsafe slots[j &+ 1]; j &+= 1 }
        unsafe count = c &- 1
    }

    /// Internal: insert separator k at key index i and child c at child index i + 1.
    @inline(__always) func insertChild(_ k: UInt64, _ ch: Int32, after i: Int) {
        let c = unsafe count
        let keys = unsafe self.keys, slots = unsafe self.slots
        var j = c &- 1
        while j > i { unsafe keys[j] = unsafe keys[j &- 1]; j &-= 1 }
        unsafe keys[i] = k
        j = c
        while j > i &+ 1 { unsafe slots[j] = unsafe slots[j &- 1]; j &-= 1 }
        unsafe slots[i &+ 1] = UInt64(UInt32(bitPattern: ch))
        unsafe count = c &+ 1
    }

    /// Internal: remove key i and child i + 1.
    @inline(__always) func removeChild(keyIndex i: Int) {
        let c = unsafe count
        let keys = unsafe self.keys, slots = unsafe self.slots
        var j = i
        while j &+ 1 < c &- 1 { unsafe keys[j] = unsafe keys[j &+ 1]; j &+= 1 }
        j = i &+ 1
        while j &+ 1 < c { unsafe slots[j] = unsafe slots[j &+ 1]; j &+= 1 }
        unsafe count = c &- 1
    }
}

/// An ordered set of non-overlapping VMAs with O(log n) lookup by address.
@safe public final class VMATree: Sequence {
    /// Maximum entries (leaf) or children (internal) in a node.
    public static let order = 32
    /// Minimum entries (children) of a non-root node.
    static let minFill = order / 4
    /// Keys a node can hold (one of slack absorbs an overflow before the node splits).
    static let keyCapacity = order + 1
    /// Words per node: 2 header words and order + 2 (key, slot) pairs, padded to whole cache
    /// lines.
    static let stride = (2 + 2 * (order + 2) + 7) & ~7
    /// Arenas of at least this many bytes are advised for transparent huge pages.
    static let hugeAdviceBytes = 4 << 20

    /// The node arena (`capacity` nodes of `stride` words), cache-line aligned.
    private var mem: UnsafeMutablePointer<UInt64>
    private var capacity: Int
    /// Nodes ever handed out (the next fresh index).
    private var highWater: Int = 0
    /// Free nodes, chained through their second word.
    private var freeHead: Int32 = -1
    private var freeCount: Int = 0
    private var root: Int32 = 0
    /// Levels (1: the root is a leaf).
    private(set) var height: Int = 1
    /// Number of VMAs (map_count).
    public private(set) var count: Int = 0
    /// Where `cursor(findVMA:)` stores what it read of the neighbours (keeps the loads).
    private let sink = UnsafeMutablePointer<UInt64>.allocate(capacity: 1)

    public init() {
        capacity = 0
        unsafe mem = unsafe VMATree.allocateArena(nodes: 8)
        capacity = 8
        root = allocNode(leaf: true)
    }

    deinit {
        releaseAllVMAs()
        unsafe mem.deallocate()
        unsafe sink.deallocate()
    }

    public var isEmpty: Bool { count == 0 }

    // MARK: arena

    private static func allocateArena(nodes: Int) -> UnsafeMutablePointer<UInt64> {
        let bytes = nodes * stride * 8
        let huge = bytes >= hugeAdviceBytes
        let raw = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: huge ? 2 << 20 : 64)
        #if canImport(Glibc)
        if huge { _ = unsafe madvise(raw, bytes, MADV_HUGEPAGE) }
        #endif
        return unsafe raw.bindMemory(to: UInt64.self, capacity: nodes * stride)
    }

    @inline(__always) private func node(_ n: Int32) -> VMATreeNode {
        unsafe VMATreeNode(mem + Int(n) &* VMATree.stride)
    }

    /// Makes sure `nodes` nodes can be allocated without the arena moving.
    private func reserve(_ nodes: Int) {
        let available = freeCount + (capacity - highWater)
        guard available < nodes else { return }
        let newCapacity = Swift.max(capacity * 2, highWater + nodes + 8)
        let fresh = unsafe VMATree.allocateArena(nodes: newCapacity)
        unsafe fresh.update(from: mem, count: highWater * VMATree.stride)
        unsafe mem.deallocate()
        unsafe mem = unsafe fresh
        capacity = newCapacity
    }

    /// A node (the caller reserved room for it).
    private func allocNode(leaf: Bool) -> Int32 {
        let n: Int32
        if freeHead >= 0 {
            n = freeHead
            freeHead = unsafe node(n).next
            freeCount -= 1
        } else {
            if highWater == capacity { reserve(1) }
            n = Int32(highWater)
            highWater += 1
        }
        let np = unsafe node(n)
        unsafe np.p[0] = leaf ? 1 << 32 : 0
        unsafe np.next = -1
        unsafe np.prev = -1
        return n
    }

    private func freeNode(_ n: Int32) {
        let np = unsafe node(n)
        unsafe np.p[0] = 0
        unsafe np.next = freeHead
        unsafe np.prev = -1
        freeHead = n
        freeCount += 1
    }

    // MARK: VMA references
    // The only place the tree's references to its VMAs are taken and dropped: a slot holds a
    // VMA as the bits of a +1 pointer (`retainedBits`, by insert/replace); `release` drops it
    // (remove, replace, removeAll/deinit). Everything else reads slots without touching counts.

    /// Drops the tree's reference held by a slot's VMA.
    @inline(__always) private static func release(_ v: VMA) {
        unsafe Unmanaged.passUnretained(v).release()
    }
    /// Drops the tree's reference held by the slot word `w`.
    @inline(__always) private static func release(bits w: UInt64) {
        unsafe unmanaged(w).release()
    }
    @inline(__always) private static func retainedBits(_ v: VMA) -> UInt64 {
        unsafe UInt64(UInt(bitPattern: Unmanaged.passRetained(v).toOpaque()))
    }
    @inline(__always) private static func bits(_ v: VMA) -> UInt64 {
        unsafe UInt64(UInt(bitPattern: Unmanaged.passUnretained(v).toOpaque()))
    }
    /// Reads words 0, 6 and 11 of the VMA object at `w` — one in each cache line of its
    /// first 96 bytes (header, range, flags, file, anon_vma, vm_page_prot, policy: what merge
    /// checks read) — without touching its reference count.
    @inline(__always) private static func touch(_ w: UInt64) -> UInt64 {
        let p = unsafe UnsafePointer<UInt64>(bitPattern: UInt(w)).unsafelyUnwrapped
        return unsafe p[0] ^ p[6] ^ p[11]
    }
    @inline(__always) private static func unmanaged(_ w: UInt64) -> Unmanaged<VMA> {
        unsafe Unmanaged<VMA>.fromOpaque(UnsafeRawPointer(bitPattern: UInt(w)).unsafelyUnwrapped)
    }

    /// The VMA at a leaf position, nil if the position is not one (a stale cursor reads nil,
    /// never a freed slot).
    @usableFromInline func entry(_ leaf: Int32, _ index: Int) -> VMA? {
        guard leaf >= 0, Int(leaf) < highWater, index >= 0 else { return nil }
        let np = unsafe node(leaf)
        guard unsafe np.isLeaf, unsafe index < np.count else { return nil }
        return unsafe VMATree.unmanaged(np.slots[index]).takeUnretainedValue()
    }

    @usableFromInline func step(_ c: VMACursor, forward: Bool) -> VMACursor {
        guard c.leaf >= 0, Int(c.leaf) < highWater else { return c }
        let np = unsafe node(c.leaf)
        if forward {
            if unsafe c.index + 1 < np.count { return VMACursor(tree: self, leaf: c.leaf, index: c.index + 1) }
            return unsafe VMACursor(tree: self, leaf: np.next, index: 0)
        }
        if c.index > 0 { return VMACursor(tree: self, leaf: c.leaf, index: c.index - 1) }
        let p = unsafe np.prev
        guard p >= 0 else { return VMACursor(tree: self, leaf: -1, index: 0) }
        return unsafe VMACursor(tree: self, leaf: p, index: node(p).count - 1)
    }

    // MARK: searching

    /// The leaf where key `k` belongs and the index of the first key > k in it.
    @inline(__always) func descend(_ k: UInt64) -> (Int32, Int) {
        var n = root
        var np = unsafe node(n)
        while unsafe !np.isLeaf {
            n = unsafe np.child(np.upperBound(k))
            unsafe np = unsafe node(n)
        }
        return unsafe (n, np.upperBound(k))
    }

    /// The position of the first VMA whose vm_start > k.
    func upperBoundCursor(_ k: UInt64) -> VMACursor {
        let (n, i) = descend(k)
        let np = unsafe node(n)
        if unsafe i < np.count { return VMACursor(tree: self, leaf: n, index: i) }
        return unsafe VMACursor(tree: self, leaf: np.next, index: 0)
    }

    /// The position of the last VMA whose vm_start <= k (invalid cursor if none).
    func floorCursor(_ k: UInt64) -> VMACursor {
        let (n, i) = descend(k)
        if i > 0 { return VMACursor(tree: self, leaf: n, index: i - 1) }
        let p = unsafe node(n).prev
        guard p >= 0 else { return VMACursor(tree: self, leaf: -1, index: 0) }
        return unsafe VMACursor(tree: self, leaf: p, index: node(p).count - 1)
    }

    /// find_vma(): the first VMA with vm_end > addr (it may start above addr).
    public func findVMA(_ addr: VirtAddr) -> VMA? {
        cursor(findVMA: addr).vma
    }

    /// The cursor of find_vma(addr).
    public func cursor(findVMA addr: VirtAddr) -> VMACursor {
        let c = floorCursor(addr.rawValue)
        if c.isEnd { return first }
        let np = unsafe node(c.leaf)
        // Fetch the neighbours' first words too: mprotect, munmap and mmap read prev and next
        // right after (merge checks, reference counts). These loads do not depend on each
        // other, so in a large tree their cache misses overlap with this VMA's instead of
        // coming one after another later.
        var t: UInt64 = 0
        if c.index > 0 { t = unsafe VMATree.touch(np.slots[c.index - 1]) }
        if unsafe c.index + 1 < np.count { unsafe t ^= VMATree.touch(np.slots[c.index + 1]) }
        unsafe sink.pointee = t
        if unsafe VMATree.unmanaged(np.slots[c.index])._withUnsafeGuaranteedRef({ $0.vmEnd > addr }) { return c }
        return c.next()
    }

    /// The VMA containing addr (vma_lookup).
    public func lookup(_ addr: VirtAddr) -> VMA? {
        guard let v = floorCursor(addr.rawValue).vma, v.vmEnd > addr else { return nil }
        return v
    }

    /// find_vma_prev(): find_vma(addr) and the VMA before it.
    public func findVMAPrev(_ addr: VirtAddr) -> (vma: VMA?, prev: VMA?) {
        let c = cursor(findVMA: addr)
        guard let v = c.vma else { return (nil, last.vma) }
        return (v, c.previous().vma)
    }

    /// The VMA that ends at or below `vma.vmStart` (vma_prev).
    public func prev(of vma: VMA) -> VMA? {
        guard vma.vmStart.rawValue > 0 else { return nil }
        return floorCursor(vma.vmStart.rawValue &- 1).vma
    }

    /// The VMA that starts at or above `vma.vmEnd` (vma_next).
    public func next(of vma: VMA) -> VMA? {
        upperBoundCursor(vma.vmStart.rawValue).vma
    }

    /// Position of the lowest VMA.
    public var first: VMACursor {
        var n = root
        while unsafe !node(n).isLeaf { n = unsafe node(n).child(0) }
        return unsafe VMACursor(tree: self, leaf: node(n).count > 0 ? n : -1, index: 0)
    }

    /// Position of the highest VMA.
    public var last: VMACursor {
        var n = root
        while unsafe !node(n).isLeaf { n = unsafe node(n).child(node(n).count - 1) }
        let c = unsafe node(n).count
        return VMACursor(tree: self, leaf: c > 0 ? n : -1, index: c - 1)
    }

    /// VMAs intersecting [start, end), in order.
    public func vmas(in start: VirtAddr, _ end: VirtAddr) -> [VMA] {
        var out: [VMA] = []
        var c = cursor(findVMA: start)
        while let v = c.vma, v.vmStart < end {
            out.append(v)
            c = c.next()
        }
        return out
    }

    public struct Iterator: IteratorProtocol {
        var c: VMACursor
        public mutating func next() -> VMA? {
            guard let v = c.vma else { return nil }
            c = c.next()
            return v
        }
    }
    /// In-order iteration over every VMA.
    public func makeIterator() -> Iterator { Iterator(c: first) }
    /// In-order iteration from find_vma(addr).
    public func from(_ addr: VirtAddr) -> IteratorSequence<Iterator> {
        IteratorSequence(Iterator(c: cursor(findVMA: addr)))
    }

    // MARK: insertion

    /// Where an overflowing node of `c` entries splits when the new entry went to `pos`: an
    /// append at the end leaves the left node full (minFill go right), an insertion at the
    /// front leaves the right node full, anything else halves. Sequential mmaps (bottom-up or
    /// top-down) thus build full nodes.
    @inline(__always) private static func splitPoint(_ c: Int, newAt pos: Int) -> Int {
        if pos == c - 1 { return c - minFill }
        if pos == 0 { return minFill }
        return c / 2
    }

    /// Inserts a VMA; it must not overlap any VMA in the tree.
    public func insert(_ vma: VMA) {
        reserve(height + 1)
        let k = vma.vmStart.rawValue
        if let (sepKey, right) = insert(k, VMATree.retainedBits(vma), into: root) {
            let r = allocNode(leaf: false)
            let rp = unsafe node(r)
            unsafe rp.slots[0] = UInt64(UInt32(bitPattern: root))
            unsafe rp.slots[1] = UInt64(UInt32(bitPattern: right))
            unsafe rp.keys[0] = sepKey
            unsafe rp.count = 2
            root = r
            height += 1
        }
        count += 1
    }

    /// Returns a split-off right sibling and its separator when `n` overflowed.
    private func insert(_ k: UInt64, _ v: UInt64, into n: Int32) -> (UInt64, Int32)? {
        let np = unsafe node(n)
        if unsafe np.isLeaf {
            let pos = unsafe np.upperBound(k)
            unsafe np.insertEntry(k, v, at: pos)
            let c = unsafe np.count
            guard c > VMATree.order else { return nil }
            let r = allocNode(leaf: true)
            let rp = unsafe node(r)
            let half = VMATree.splitPoint(c, newAt: pos)
            for j in half..<c {
                unsafe rp.keys[j - half] = unsafe np.keys[j]
                unsafe rp.slots[j - half] = unsafe np.slots[j]
            }
            unsafe rp.count = c - half
            unsafe np.count = half
            unsafe rp.next = unsafe np.next
            if unsafe rp.next >= 0 { unsafe node(rp.next).prev = r }
            unsafe rp.prev = n
            unsafe np.next = r
            return unsafe (rp.keys[0], r)
        }
        let ci = unsafe np.upperBound(k)
        guard let (sep, newChild) = unsafe insert(k, v, into: np.child(ci)) else { return nil }
        unsafe np.insertChild(sep, newChild, after: ci)
        let c = unsafe np.count
        guard c > VMATree.order else { return nil }
        // Split: children[half...] go right; keys[half-1] moves up.
        let r = allocNode(leaf: false)
        let rp = unsafe node(r)
        // The new child sits at ci + 1: last means an append; ci == 0 means the leftmost
        // child keeps splitting (top-down filling).
        let half = ci + 1 == c - 1 ? c - VMATree.minFill : ci == 0 ? VMATree.minFill : c / 2
        let up = unsafe np.keys[half - 1]
        for j in half..<c { unsafe rp.slots[j - half] = unsafe np.slots[j] }
        for j in half..<(c - 1) { unsafe rp.keys[j - half] = unsafe np.keys[j] }
        unsafe rp.count = c - half
        unsafe np.count = half
        return (up, r)
    }

    /// Puts `new` where `old` is; both must have the same vm_start (split_vma's lower half
    /// taking the place of the VMA it came from).
    public func replace(_ old: VMA, with new: VMA) {
        let (n, i) = descend(old.vmStart.rawValue)
        let np = unsafe node(n)
        if i > 0, unsafe np.slots[i - 1] == VMATree.bits(old), new.vmStart == old.vmStart {
            unsafe np.slots[i - 1] = VMATree.retainedBits(new)
            VMATree.release(old)
            return
        }
        remove(old)
        insert(new)
    }

    // MARK: removal

    /// Removes `vma` (found by its current vm_start). Returns false if it was not there.
    @discardableResult
    public func remove(_ vma: VMA) -> Bool {
        let removed = remove(vma.vmStart.rawValue, VMATree.bits(vma), from: root)
        guard removed else { return false }
        count -= 1
        let rp = unsafe node(root)
        if unsafe !rp.isLeaf && rp.count == 1 {
            let old = root
            root = unsafe rp.child(0)
            freeNode(old)
            height -= 1
        }
        VMATree.release(vma)
        return true
    }

    private func remove(_ k: UInt64, _ v: UInt64, from n: Int32) -> Bool {
        let np = unsafe node(n)
        if unsafe np.isLeaf {
            let i = unsafe np.upperBound(k) - 1
            guard i >= 0, unsafe np.keys[i] == k, unsafe np.slots[i] == v else { return false }
            unsafe np.removeEntry(at: i)
            return true
        }
        let ci = unsafe np.upperBound(k)
        let child = unsafe np.child(ci)
        guard remove(k, v, from: child) else { return false }
        if unsafe node(child).count < VMATree.minFill { rebalance(n, ci) }
        return true
    }

    /// Restores the minimum fill of child ci of n by borrowing from or merging with a sibling.
    private func rebalance(_ n: Int32, _ ci: Int) {
        let np = unsafe node(n)
        let child = unsafe node(np.child(ci))
        if ci > 0, unsafe node(np.child(ci - 1)).count > VMATree.minFill {
            let left = unsafe node(np.child(ci - 1))
            if unsafe child.isLeaf {
                let last = unsafe left.count - 1
                unsafe child.insertEntry(left.keys[last], left.slots[last], at: 0)
                unsafe left.count = last
                unsafe np.keys[ci - 1] = unsafe child.keys[0]
            } else {
                // Rotate right: left's last child moves to child's front.
                let lc = unsafe left.count
                let moved = unsafe left.slots[lc - 1]
                let movedKey = unsafe left.keys[lc - 2]
                unsafe left.count = lc - 1
                let cc = unsafe child.count
                var j = cc
                while j > 0 { unsafe child.slots[j] = unsafe child.slots[j - 1]; j -= 1 }
                j = cc - 1
                while j > 0 { unsafe child.keys[j] = unsafe child.keys[j - 1]; j -= 1 }
                unsafe child.slots[0] = moved
                unsafe child.keys[0] = unsafe np.keys[ci - 1]
                unsafe child.count = cc + 1
                unsafe np.keys[ci - 1] = movedKey
            }
            return
        }
        if unsafe ci + 1 < np.count, unsafe node(np.child(ci + 1)).count > VMATree.minFill {
            let right = unsafe node(np.child(ci + 1))
            if unsafe child.isLeaf {
                unsafe child.insertEntry(right.keys[0], right.slots[0], at: child.count)
                unsafe right.removeEntry(at: 0)
                unsafe np.keys[ci] = unsafe right.keys[0]
            } else {
                // Rotate left: right's first child moves to child's end.
                let cc = unsafe child.count
                unsafe child.keys[cc - 1] = unsafe np.keys[ci]
                unsafe child.slots[cc] = unsafe right.slots[0]
                unsafe child.count = cc + 1
                unsafe np.keys[ci] = unsafe right.keys[0]
                let rc = unsafe right.count
                var j = 0
                while j + 1 < rc { unsafe right.slots[j] = unsafe right.slots[j + 1]; j += 1 }
                j = 0
                while j + 1 < rc - 1 { unsafe right.keys[j] = unsafe right.keys[j + 1]; j += 1 }
                unsafe right.count = rc - 1
            }
            return
        }
        // Merge with a sibling: (left, right) = (ci-1, ci) or (ci, ci+1).
        let li = ci > 0 ? ci - 1 : ci
        guard unsafe li + 1 < np.count else { return }
        let ri = unsafe np.child(li + 1)
        let left = unsafe node(np.child(li)), right = unsafe node(ri)
        let lc = unsafe left.count, rc = unsafe right.count
        if unsafe left.isLeaf {
            for j in 0..<rc {
                unsafe left.keys[lc + j] = unsafe right.keys[j]
                unsafe left.slots[lc + j] = unsafe right.slots[j]
            }
            unsafe left.count = lc + rc
            unsafe left.next = unsafe right.next
            if unsafe left.next >= 0 { unsafe node(left.next).prev = unsafe np.child(li) }
        } else {
            unsafe left.keys[lc - 1] = unsafe np.keys[li]
            for j in 0..<(rc - 1) { unsafe left.keys[lc + j] = unsafe right.keys[j] }
            for j in 0..<rc { unsafe left.slots[lc + j] = unsafe right.slots[j] }
            unsafe left.count = lc + rc
        }
        unsafe np.removeChild(keyIndex: li)
        freeNode(ri)
    }

    /// Drops the tree's reference on every VMA.
    private func releaseAllVMAs() {
        var c = first
        while c.leaf >= 0 {
            let np = unsafe node(c.leaf)
            for i in unsafe 0..<np.count { unsafe VMATree.release(bits: np.slots[i]) }
            c = unsafe VMACursor(tree: self, leaf: np.next, index: 0)
        }
    }

    /// Removes every VMA.
    public func removeAll() {
        releaseAllVMAs()
        highWater = 0
        freeHead = -1
        freeCount = 0
        height = 1
        count = 0
        root = allocNode(leaf: true)
    }

    // MARK: checking

    /// Verifies the tree's invariants (ordering, non-overlap, fill, links); returns a
    /// description of the first violation or nil.
    public func check() -> String? {
        var seen = 0
        var lastEnd: UInt64 = 0
        var c = first
        var prevLeaf: Int32 = -1
        while let v = c.vma {
            if v.vmStart >= v.vmEnd { return "empty vma \(v.vmStart)-\(v.vmEnd)" }
            if v.vmStart.rawValue < lastEnd { return "overlap at \(v.vmStart)" }
            let np = unsafe node(c.leaf)
            if unsafe np.keys[c.index] != v.vmStart.rawValue { return unsafe "stale key \(np.keys[c.index]) for \(v.vmStart)" }
            if c.index == 0, unsafe np.prev != prevLeaf { return "broken prev link" }
            prevLeaf = c.leaf
            lastEnd = v.vmEnd.rawValue
            seen += 1
            c = c.next()
        }
        if seen != count { return "count \(count) but \(seen) reachable" }
        var depth = 0
        if let e = checkNode(root, lo: nil, hi: nil, isRoot: true, depth: 1, leafDepth: &depth) { return e }
        if depth != height { return "height \(height) but leaves at depth \(depth)" }
        return nil
    }

    private func checkNode(_ n: Int32, lo: UInt64?, hi: UInt64?, isRoot: Bool, depth: Int, leafDepth: inout Int) -> String? {
        guard n >= 0, Int(n) < highWater else { return "bad node index \(n)" }
        let np = unsafe node(n)
        if unsafe !isRoot && np.count < VMATree.minFill { return unsafe "underfull node (\(np.count))" }
        if unsafe np.count > VMATree.order { return unsafe "overfull node (\(np.count))" }
        if unsafe np.isLeaf {
            if leafDepth == 0 { leafDepth = depth } else if leafDepth != depth { return "leaves at depths \(leafDepth) and \(depth)" }
            for j in unsafe 0..<np.count {
                let k = unsafe np.keys[j]
                if let lo, k < lo { return "key below separator" }
                if let hi, k >= hi { return "key above separator" }
                if unsafe np.slots[j] == 0 { return "empty leaf slot" }
            }
            return nil
        }
        if unsafe isRoot && np.count < 2 { return "internal root with one child" }
        for j in unsafe 0..<Swift.max(np.count - 1, 0) where unsafe j > 0 && np.keys[j - 1] >= np.keys[j] { return "unordered separators" }
        for i in unsafe 0..<np.count {
            let l = unsafe i == 0 ? lo : np.keys[i - 1]
            let h = unsafe i == np.count - 1 ? hi : np.keys[i]
            if let e = unsafe checkNode(np.child(i), lo: l, hi: h, isRoot: false, depth: depth + 1, leafDepth: &leafDepth) { return e }
        }
        return nil
    }
}
