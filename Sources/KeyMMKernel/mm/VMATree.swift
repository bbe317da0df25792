// VMATree: the address space's ordered VMA index (the model's maple tree).
//
// A B+tree keyed by vm_start: internal nodes hold separator keys and children, leaves hold
// (vm_start, VMA) pairs and are doubly linked so in-order walks in both directions are O(1)
// per step. Lookup, insertion and removal are O(log n). Nodes keep their keys and pointers
// inline (InlineArray, fan-out 16), so one node is one allocation and a lookup in a 1M-VMA
// tree touches five nodes — few cache misses, which is what keeps large trees fast.
//
// Invariants:
// - keys are the vm_start of the VMA stored next to them; VMAs never overlap, so ordering by
//   vm_start is also ordering by vm_end;
// - in an internal node, every key of children[i] is < keys[i] <= every key of children[i+1];
// - every node except the root holds at least order/2 entries (children), the root leaf may
//   be empty;
// - a VMA's vmStart must not change while it is in the tree: callers remove it, change the
//   range, and insert it again (`MM.adjust` does this) — `check()` verifies all of this.
import KeyMMBase

/// A position in the tree's leaf level (a VMA and its neighbours). Invalidated by any
/// insertion or removal.
public struct VMACursor {
    @usableFromInline let leaf: VMATree.Node?
    @usableFromInline let index: Int
    @inlinable init(leaf: VMATree.Node?, index: Int) { self.leaf = leaf; self.index = index }
    /// The VMA at this position, nil past either end.
    @inlinable public var vma: VMA? {
        guard let l = leaf, index >= 0, index < l.count else { return nil }
        return l.vma(index)
    }
    /// The next position in address order.
    @inlinable public func next() -> VMACursor {
        guard let l = leaf else { return self }
        if index + 1 < l.count { return VMACursor(leaf: l, index: index + 1) }
        return VMACursor(leaf: l.next, index: 0)
    }
    /// The previous position in address order.
    @inlinable public func previous() -> VMACursor {
        guard let l = leaf else { return self }
        if index > 0 { return VMACursor(leaf: l, index: index - 1) }
        guard let p = l.prev else { return VMACursor(leaf: nil, index: 0) }
        return VMACursor(leaf: p, index: p.count - 1)
    }
}

/// An ordered set of non-overlapping VMAs with O(log n) lookup by address.
public final class VMATree: Sequence {
    /// Maximum entries (leaf) or children (internal) in a node.
    public static let order = 16
    @usableFromInline static let minFill = order / 2

    /// A tree node. Leaves keep VMAs in `slots`, internal nodes their children; one slot of
    /// slack absorbs an overflow before the node splits. Field order is chosen so that the
    /// header, the count, the leaf flag and the keys share the first cache lines.
    public final class Node {
        /// Entries (leaf) or children (internal).
        @usableFromInline var count: Int = 0
        @usableFromInline let isLeaf: Bool
        @usableFromInline var keys: InlineArray<17, UInt64> = InlineArray(repeating: 0)
        /// Leaf: the VMAs (`VMA`); internal: the children (`Node`).
        @usableFromInline var slots: InlineArray<18, AnyObject?> = InlineArray(repeating: nil)
        @usableFromInline var next: Node?
        // unowned(unsafe): a weak reference would give every node a side table (slow retains);
        // the link is rewritten whenever the leaf level changes, so it never dangles.
        @usableFromInline unowned(unsafe) var prev: Node?
        init(leaf: Bool) { isLeaf = leaf }

        /// Leaf entry i.
        @inlinable func vma(_ i: Int) -> VMA { unsafeDowncast(slots[i].unsafelyUnwrapped, to: VMA.self) }

        /// Keys in use: `count` in a leaf, `count - 1` in an internal node.
        @inlinable var keyCount: Int { isLeaf ? count : count - 1 }

        /// Index of the first key > k among the keys in use.
        @inlinable func upperBound(_ k: UInt64) -> Int {
            var lo = 0, hi = keyCount
            while lo < hi {
                let mid = (lo &+ hi) >> 1
                if keys[mid] <= k { lo = mid &+ 1 } else { hi = mid }
            }
            return lo
        }

        @inlinable func child(_ i: Int) -> Node { unsafeDowncast(slots[i].unsafelyUnwrapped, to: Node.self) }

        /// Leaf: insert (k, v) at i.
        func insertEntry(_ k: UInt64, _ v: VMA, at i: Int) {
            var j = count
            while j > i { keys[j] = keys[j - 1]; slots[j] = slots[j - 1]; j -= 1 }
            keys[i] = k
            slots[i] = v
            count += 1
        }

        /// Leaf: remove entry i.
        func removeEntry(at i: Int) {
            var j = i
            while j + 1 < count { keys[j] = keys[j + 1]; slots[j] = slots[j + 1]; j += 1 }
            count -= 1
            slots[count] = nil
        }

        /// Internal: insert separator k at key index i and child c at child index i + 1.
        func insertChild(_ k: UInt64, _ c: Node, after i: Int) {
            var j = count - 1
            while j > i { keys[j] = keys[j - 1]; j -= 1 }
            keys[i] = k
            j = count
            while j > i + 1 { slots[j] = slots[j - 1]; j -= 1 }
            slots[i + 1] = c
            count += 1
        }

        /// Internal: remove key i and child i + 1.
        func removeChild(keyIndex i: Int) {
            var j = i
            while j + 1 < count - 1 { keys[j] = keys[j + 1]; j += 1 }
            j = i + 1
            while j + 1 < count { slots[j] = slots[j + 1]; j += 1 }
            count -= 1
            slots[count] = nil
        }
    }

    @usableFromInline var root: Node
    /// Number of VMAs (map_count).
    public private(set) var count: Int = 0

    public init() { root = Node(leaf: true) }

    public var isEmpty: Bool { count == 0 }

    // MARK: searching

    /// The leaf where key `k` belongs and the index of the first key > k in it.
    @inlinable func descend(_ k: UInt64) -> (Node, Int) {
        var n = root
        while !n.isLeaf { n = n.child(n.upperBound(k)) }
        return (n, n.upperBound(k))
    }

    /// The position of the first VMA whose vm_start > k.
    @inlinable func upperBoundCursor(_ k: UInt64) -> VMACursor {
        let (n, i) = descend(k)
        if i < n.count { return VMACursor(leaf: n, index: i) }
        return VMACursor(leaf: n.next, index: 0)
    }

    /// The position of the last VMA whose vm_start <= k (invalid cursor if none).
    @inlinable func floorCursor(_ k: UInt64) -> VMACursor {
        let (n, i) = descend(k)
        if i > 0 { return VMACursor(leaf: n, index: i - 1) }
        guard let p = n.prev else { return VMACursor(leaf: nil, index: 0) }
        return VMACursor(leaf: p, index: p.count - 1)
    }

    /// find_vma(): the first VMA with vm_end > addr (it may start above addr).
    @inlinable public func findVMA(_ addr: VirtAddr) -> VMA? {
        cursor(findVMA: addr).vma
    }

    /// The cursor of find_vma(addr).
    @inlinable public func cursor(findVMA addr: VirtAddr) -> VMACursor {
        let c = floorCursor(addr.rawValue)
        if let v = c.vma, v.vmEnd > addr { return c }
        if c.leaf == nil { return first }
        return c.next()
    }

    /// The VMA containing addr (vma_lookup).
    @inlinable public func lookup(_ addr: VirtAddr) -> VMA? {
        guard let v = floorCursor(addr.rawValue).vma, v.vmEnd > addr else { return nil }
        return v
    }

    /// find_vma_prev(): find_vma(addr) and the VMA before it.
    @inlinable public func findVMAPrev(_ addr: VirtAddr) -> (vma: VMA?, prev: VMA?) {
        let c = cursor(findVMA: addr)
        if c.vma == nil {
            return (nil, last.vma)
        }
        return (c.vma, c.previous().vma)
    }

    /// The VMA that ends at or below `vma.vmStart` (vma_prev).
    @inlinable public func prev(of vma: VMA) -> VMA? {
        guard vma.vmStart.rawValue > 0 else { return nil }
        return floorCursor(vma.vmStart.rawValue &- 1).vma
    }

    /// The VMA that starts at or above `vma.vmEnd` (vma_next).
    @inlinable public func next(of vma: VMA) -> VMA? {
        upperBoundCursor(vma.vmStart.rawValue).vma
    }

    /// Position of the lowest VMA.
    public var first: VMACursor {
        var n = root
        while !n.isLeaf { n = n.child(0) }
        return VMACursor(leaf: n.count > 0 ? n : nil, index: 0)
    }

    /// Position of the highest VMA.
    public var last: VMACursor {
        var n = root
        while !n.isLeaf { n = n.child(n.count - 1) }
        return VMACursor(leaf: n.count > 0 ? n : nil, index: n.count - 1)
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

    /// Inserts a VMA; it must not overlap any VMA in the tree.
    public func insert(_ vma: VMA) {
        let k = vma.vmStart.rawValue
        if let (sepKey, right) = insert(k, vma, into: root) {
            let newRoot = Node(leaf: false)
            newRoot.slots[0] = root
            newRoot.slots[1] = right
            newRoot.keys[0] = sepKey
            newRoot.count = 2
            root = newRoot
        }
        count += 1
    }

    /// Returns a split-off right sibling and its separator when `n` overflowed.
    private func insert(_ k: UInt64, _ vma: VMA, into n: Node) -> (UInt64, Node)? {
        if n.isLeaf {
            n.insertEntry(k, vma, at: n.upperBound(k))
            guard n.count > VMATree.order else { return nil }
            let right = Node(leaf: true)
            let half = n.count / 2
            for j in half..<n.count {
                right.keys[j - half] = n.keys[j]
                right.slots[j - half] = n.slots[j]
                n.slots[j] = nil
            }
            right.count = n.count - half
            n.count = half
            right.next = n.next
            right.next?.prev = right
            right.prev = n
            n.next = right
            return (right.keys[0], right)
        }
        let ci = n.upperBound(k)
        guard let (sep, newChild) = insert(k, vma, into: n.child(ci)) else { return nil }
        n.insertChild(sep, newChild, after: ci)
        guard n.count > VMATree.order else { return nil }
        // Split: children[half...] go right; keys[half-1] moves up.
        let right = Node(leaf: false)
        let half = n.count / 2
        let up = n.keys[half - 1]
        for j in half..<n.count {
            right.slots[j - half] = n.slots[j]
            n.slots[j] = nil
        }
        for j in half..<(n.count - 1) { right.keys[j - half] = n.keys[j] }
        right.count = n.count - half
        n.count = half
        return (up, right)
    }

    /// Puts `new` where `old` is; both must have the same vm_start (split_vma's lower half
    /// taking the place of the VMA it came from).
    public func replace(_ old: VMA, with new: VMA) {
        let (n, i) = descend(old.vmStart.rawValue)
        if i > 0, n.slots[i - 1] === old, new.vmStart == old.vmStart {
            n.slots[i - 1] = new
            return
        }
        remove(old)
        insert(new)
    }

    // MARK: removal

    /// Removes `vma` (found by its current vm_start). Returns false if it was not there.
    @discardableResult
    public func remove(_ vma: VMA) -> Bool {
        let removed = remove(vma.vmStart.rawValue, vma, from: root)
        guard removed else { return false }
        count -= 1
        if !root.isLeaf && root.count == 1 { root = root.child(0) }
        return true
    }

    private func remove(_ k: UInt64, _ vma: VMA, from n: Node) -> Bool {
        if n.isLeaf {
            let i = n.upperBound(k) - 1
            guard i >= 0, n.keys[i] == k, n.slots[i] === vma else { return false }
            n.removeEntry(at: i)
            return true
        }
        let ci = n.upperBound(k)
        let child = n.child(ci)
        guard remove(k, vma, from: child) else { return false }
        if child.count < VMATree.minFill { rebalance(n, ci) }
        return true
    }

    /// Restores the minimum fill of n.slots[ci] by borrowing from or merging with a sibling.
    private func rebalance(_ n: Node, _ ci: Int) {
        let child = n.child(ci)
        if ci > 0, n.child(ci - 1).count > VMATree.minFill {
            let left = n.child(ci - 1)
            if child.isLeaf {
                let last = left.count - 1
                child.insertEntry(left.keys[last], left.vma(last), at: 0)
                left.removeEntry(at: last)
                n.keys[ci - 1] = child.keys[0]
            } else {
                // Rotate right: left's last child moves to child's front.
                let moved = left.slots[left.count - 1]
                let movedKey = left.keys[left.count - 2]
                left.slots[left.count - 1] = nil
                left.count -= 1
                var j = child.count
                while j > 0 { child.slots[j] = child.slots[j - 1]; j -= 1 }
                j = child.count - 1
                while j > 0 { child.keys[j] = child.keys[j - 1]; j -= 1 }
                child.slots[0] = moved
                child.keys[0] = n.keys[ci - 1]
                child.count += 1
                n.keys[ci - 1] = movedKey
            }
            return
        }
        if ci + 1 < n.count, n.child(ci + 1).count > VMATree.minFill {
            let right = n.child(ci + 1)
            if child.isLeaf {
                child.insertEntry(right.keys[0], right.vma(0), at: child.count)
                right.removeEntry(at: 0)
                n.keys[ci] = right.keys[0]
            } else {
                // Rotate left: right's first child moves to child's end.
                child.keys[child.count - 1] = n.keys[ci]
                child.slots[child.count] = right.slots[0]
                child.count += 1
                n.keys[ci] = right.keys[0]
                var j = 0
                while j + 1 < right.count { right.slots[j] = right.slots[j + 1]; j += 1 }
                j = 0
                while j + 1 < right.count - 1 { right.keys[j] = right.keys[j + 1]; j += 1 }
                right.count -= 1
                right.slots[right.count] = nil
            }
            return
        }
        // Merge with a sibling: (left, right) = (ci-1, ci) or (ci, ci+1).
        let li = ci > 0 ? ci - 1 : ci
        guard li + 1 < n.count else { return }
        let left = n.child(li), right = n.child(li + 1)
        if left.isLeaf {
            for j in 0..<right.count {
                left.keys[left.count + j] = right.keys[j]
                left.slots[left.count + j] = right.slots[j]
            }
            left.count += right.count
            left.next = right.next
            left.next?.prev = left
        } else {
            left.keys[left.count - 1] = n.keys[li]
            for j in 0..<(right.count - 1) { left.keys[left.count + j] = right.keys[j] }
            for j in 0..<right.count { left.slots[left.count + j] = right.slots[j] }
            left.count += right.count
        }
        n.removeChild(keyIndex: li)
    }

    /// Removes every VMA.
    public func removeAll() {
        root = Node(leaf: true)
        count = 0
    }

    // MARK: checking

    /// Verifies the tree's invariants (ordering, non-overlap, fill, links); returns a
    /// description of the first violation or nil.
    public func check() -> String? {
        var seen = 0
        var lastEnd: UInt64 = 0
        var c = first
        var prevLeaf: Node? = nil
        while let v = c.vma {
            if v.vmStart >= v.vmEnd { return "empty vma \(v.vmStart)-\(v.vmEnd)" }
            if v.vmStart.rawValue < lastEnd { return "overlap at \(v.vmStart)" }
            if let l = c.leaf, l.keys[c.index] != v.vmStart.rawValue { return "stale key \(l.keys[c.index]) for \(v.vmStart)" }
            if c.index == 0, let l = c.leaf, l.prev !== prevLeaf { return "broken prev link" }
            prevLeaf = c.leaf
            lastEnd = v.vmEnd.rawValue
            seen += 1
            c = c.next()
        }
        if seen != count { return "count \(count) but \(seen) reachable" }
        return checkNode(root, lo: nil, hi: nil, isRoot: true)
    }

    private func checkNode(_ n: Node, lo: UInt64?, hi: UInt64?, isRoot: Bool) -> String? {
        if !isRoot && n.count < VMATree.minFill { return "underfull node (\(n.count))" }
        if n.count > VMATree.order { return "overfull node (\(n.count))" }
        if n.isLeaf {
            for j in 0..<n.count {
                let k = n.keys[j]
                if let lo, k < lo { return "key below separator" }
                if let hi, k >= hi { return "key above separator" }
                if n.slots[j] == nil { return "empty leaf slot" }
            }
            return nil
        }
        if isRoot && n.count < 2 { return "internal root with one child" }
        for i in 0..<n.count {
            guard let chObj = n.slots[i], let ch = chObj as? Node else { return "missing child" }
            let l = i == 0 ? lo : n.keys[i - 1]
            let h = i == n.count - 1 ? hi : n.keys[i]
            if let e = checkNode(ch, lo: l, hi: h, isRoot: false) { return e }
        }
        return nil
    }
}
