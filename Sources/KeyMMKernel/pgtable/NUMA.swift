// NUMA placement of user pages: the node a VMA's memory policy picks for a fault
// (default/local, preferred, bind, interleave by page offset), and alloc_pages_vma with
// the VMA's KeyID.
//
// Invariants: interleave is by offset (interleave_nid: vm_pgoff + page offset in the VMA,
// in units of the allocation order), so the same page always lands on the same node;
// bind never falls back outside its node set.
import KeyMMBase

extension Kernel {
    /// The node `vma`'s policy wants for an allocation of `order` at `addr` (nil: local).
    func policyNode(_ vma: VMA, _ addr: VirtAddr, order: PageOrder) -> NodeID? {
        let pol = vma.memoryPolicy
        guard !pol.nodes.isEmpty else { return nil }
        switch pol.mode {
        case .default, .local:
            return nil
        case .preferred, .bind:
            return pol.nodes[0]
        case .interleave:
            return pol.nodes[interleaveIndex(vma, addr, order: order) % pol.nodes.count]
        }
    }

    /// interleave_nid()'s index: the page offset of `addr` in units of 2^order.
    func interleaveIndex(_ vma: VMA, _ addr: VirtAddr, order: PageOrder) -> Int {
        let shift = UInt64(order.rawValue)
        let ilx = (vma.vmPgoff >> shift) &+ (addr.distance(from: vma.vmStart) >> (pageShift + shift))
        return Int(truncatingIfNeeded: ilx & 0x7FFF_FFFF_FFFF_FFFF)
    }

    /// alloc_pages_vma(): `2^order` pages with the VMA's KeyID on the policy's node, zeroed
    /// through the new KeyID when asked (prep_encrypted_page in the allocator).
    func allocUserPages(_ vma: VMA, _ addr: VirtAddr, order: PageOrder, zero: Bool) -> PFN? {
        var gfp = GFPFlags.highUserMovable
        if zero { gfp.insert(.zero) }
        let pol = vma.memoryPolicy
        if pol.mode == .bind && !pol.nodes.isEmpty {
            gfp.insert(.thisNode)
            for n in pol.nodes {
                if let p = allocator.allocPages(order: order, keyid: userPageKeyID(vma), node: n, gfp: gfp) { return p }
            }
            return nil
        }
        let node: NodeID? = pol.nodes.isEmpty ? nil : policyNode(vma, addr, order: order)   // policyNode's own first test
        return allocator.allocPages(order: order, keyid: userPageKeyID(vma), node: node, gfp: gfp)
    }

    /// The node the policy says a page at `addr` belongs on (mpol_misplaced), nil for no
    /// preference (default and local policies: the model's CPU is on the allocator's local node).
    func targetNode(_ vma: VMA, _ addr: VirtAddr, order: PageOrder) -> NodeID {
        policyNode(vma, addr, order: order) ?? allocator.localNode
    }
}
