// VMATree: the address space's ordered VMA index (the model's maple tree).
//
// A B+tree keyed by vm_start: internal nodes hold separator keys and children, leaves hold
// (vm_start, VMA) pairs and are doubly linked so in-order walks in both directions are O(1)
// per step. Lookup, insertion and removal are O(log n) with a fan-out of `order` (64), so
// a 1M-VMA address space is four levels deep.
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
        return l.vmas[index]
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
    /// Maximum entries in a node.
    public static let order = 64
    @usableFromInline static let minFill = order / 2

    public final class Node {
        @usableFromInline var keys: [UInt64]
        /// Leaves: the VMAs, parallel to `keys`.
        @usableFromInline var vmas: [VMA]
        /// Internal nodes: children (keys.count + 1 of them).
        @usableFromInline var children: [Node]
        @usableFromInline let isLeaf: Bool
        @usableFromInline var next: Node?
        @usableFromInline weak var prev: Node?
        init(leaf: Bool) {
            isLeaf = leaf
            keys = []
            vmas = []
            children = []
            keys.reserveCapacity(VMATree.order + 1)
            if leaf { vmas.reserveCapacity(VMATree.order + 1) } else { children.reserveCapacity(VMATree.order + 2) }
        }
        /// Entries (leaf) or children (internal).
        @inlinable var count: Int { isLeaf ? keys.count : children.count }
    }

    @usableFromInline var root: Node
    /// Number of VMAs (map_count).
    public private(set) var count: Int = 0

    public init() { root = Node(leaf: true) }

    public var isEmpty: Bool { count == 0 }

    // MARK: searching

    /// Index of the first key > k in a sorted array (binary search).
    @inlinable static func upperBound(_ keys: [UInt64], _ k: UInt64) -> Int {
        var lo = 0, hi = keys.count
        while lo < hi {
            let mid = (lo &+ hi) >> 1
            if keys[mid] <= k { lo = mid &+ 1 } else { hi = mid }
        }
        return lo
    }

    /// The position of the first VMA whose vm_start > k.
    @inlinable func upperBoundCursor(_ k: UInt64) -> VMACursor {
        var n = root
        while !n.isLeaf { n = n.children[VMATree.upperBound(n.keys, k)] }
        let i = VMATree.upperBound(n.keys, k)
        if i < n.keys.count { return VMACursor(leaf: n, index: i) }
        return VMACursor(leaf: n.next, index: 0)
    }

    /// The position of the last VMA whose vm_start <= k (invalid cursor if none).
    @inlinable func floorCursor(_ k: UInt64) -> VMACursor {
        var n = root
        while !n.isLeaf { n = n.children[VMATree.upperBound(n.keys, k)] }
        let i = VMATree.upperBound(n.keys, k)
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
        while !n.isLeaf { n = n.children[0] }
        return VMACursor(leaf: n.count > 0 ? n : nil, index: 0)
    }

    /// Position of the highest VMA.
    public var last: VMACursor {
        var n = root
        while !n.isLeaf { n = n.children[n.children.count - 1] }
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
            newRoot.keys.append(sepKey)
            newRoot.children.append(root)
            newRoot.children.append(right)
            root = newRoot
        }
        count += 1
    }

    /// Returns a split-off right sibling and its separator when `n` overflowed.
    private func insert(_ k: UInt64, _ vma: VMA, into n: Node) -> (UInt64, Node)? {
        if n.isLeaf {
            let i = VMATree.upperBound(n.keys, k)
            n.keys.insert(k, at: i)
            n.vmas.insert(vma, at: i)
            guard n.keys.count > VMATree.order else { return nil }
            let right = Node(leaf: true)
            let half = n.keys.count / 2
            right.keys.append(contentsOf: n.keys[half...])
            right.vmas.append(contentsOf: n.vmas[half...])
            n.keys.removeSubrange(half...)
            n.vmas.removeSubrange(half...)
            right.next = n.next
            right.next?.prev = right
            right.prev = n
            n.next = right
            return (right.keys[0], right)
        }
        let ci = VMATree.upperBound(n.keys, k)
        guard let (sep, newChild) = insert(k, vma, into: n.children[ci]) else { return nil }
        n.keys.insert(sep, at: ci)
        n.children.insert(newChild, at: ci + 1)
        guard n.children.count > VMATree.order else { return nil }
        let right = Node(leaf: false)
        let half = n.children.count / 2
        // keys[half-1] moves up; children[half...] go right.
        let up = n.keys[half - 1]
        right.keys.append(contentsOf: n.keys[half...])
        right.children.append(contentsOf: n.children[half...])
        n.keys.removeSubrange((half - 1)...)
        n.children.removeSubrange(half...)
        return (up, right)
    }

    // MARK: removal

    /// Removes `vma` (found by its current vm_start). Returns false if it was not there.
    @discardableResult
    public func remove(_ vma: VMA) -> Bool {
        let removed = remove(vma.vmStart.rawValue, vma, from: root)
        guard removed else { return false }
        count -= 1
        if !root.isLeaf && root.children.count == 1 { root = root.children[0] }
        return true
    }

    private func remove(_ k: UInt64, _ vma: VMA, from n: Node) -> Bool {
        if n.isLeaf {
            let i = VMATree.upperBound(n.keys, k) - 1
            guard i >= 0, n.keys[i] == k, n.vmas[i] === vma else { return false }
            n.keys.remove(at: i)
            n.vmas.remove(at: i)
            return true
        }
        let ci = VMATree.upperBound(n.keys, k)
        let child = n.children[ci]
        guard remove(k, vma, from: child) else { return false }
        if child.count < VMATree.minFill { rebalance(n, ci) }
        return true
    }

    /// Restores the minimum fill of n.children[ci] by borrowing from or merging with a sibling.
    private func rebalance(_ n: Node, _ ci: Int) {
        let child = n.children[ci]
        if ci > 0, n.children[ci - 1].count > VMATree.minFill {
            let left = n.children[ci - 1]
            if child.isLeaf {
                child.keys.insert(left.keys.removeLast(), at: 0)
                child.vmas.insert(left.vmas.removeLast(), at: 0)
                n.keys[ci - 1] = child.keys[0]
            } else {
                child.keys.insert(n.keys[ci - 1], at: 0)
                child.children.insert(left.children.removeLast(), at: 0)
                n.keys[ci - 1] = left.keys.removeLast()
            }
            return
        }
        if ci + 1 < n.children.count, n.children[ci + 1].count > VMATree.minFill {
            let right = n.children[ci + 1]
            if child.isLeaf {
                child.keys.append(right.keys.removeFirst())
                child.vmas.append(right.vmas.removeFirst())
                n.keys[ci] = right.keys[0]
            } else {
                child.keys.append(n.keys[ci])
                child.children.append(right.children.removeFirst())
                n.keys[ci] = right.keys.removeFirst()
            }
            return
        }
        // Merge with a sibling: (left, right) = (ci-1, ci) or (ci, ci+1).
        let li = ci > 0 ? ci - 1 : ci
        guard li + 1 < n.children.count else { return }
        let left = n.children[li], right = n.children[li + 1]
        if left.isLeaf {
            left.keys.append(contentsOf: right.keys)
            left.vmas.append(contentsOf: right.vmas)
            left.next = right.next
            left.next?.prev = left
        } else {
            left.keys.append(n.keys[li])
            left.keys.append(contentsOf: right.keys)
            left.children.append(contentsOf: right.children)
        }
        n.keys.remove(at: li)
        n.children.remove(at: li + 1)
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
        if n.isLeaf {
            for k in n.keys {
                if let lo, k < lo { return "key below separator" }
                if let hi, k >= hi { return "key above separator" }
            }
            return nil
        }
        if n.keys.count + 1 != n.children.count { return "keys/children mismatch" }
        for (i, ch) in n.children.enumerated() {
            let l = i == 0 ? lo : n.keys[i - 1]
            let h = i == n.keys.count ? hi : n.keys[i]
            if let e = checkNode(ch, lo: l, hi: h, isRoot: false) { return e }
        }
        return nil
    }
}
