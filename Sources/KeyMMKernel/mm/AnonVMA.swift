// anon_vma and anon_vma_chain (mm/rmap.c): which anon_vma a VMA's new anonymous pages
// join, how the chain is cloned on split/fork, and when a neighbour's anon_vma is reused.
// Merging depends on all of it: "singular chain" means "not a fork child", and
// find_mergeable_anon_vma lets mprotect'ed neighbours share one anon_vma so they re-merge.
//
// Invariants: `vma.anonVMAChain` lists every anon_vma the VMA is linked to, head first
// (its own anon_vma first, the root last); `av.chainLinks` equals the number of chains
// containing `av`; `av.numActiveVMAs` equals the number of VMAs whose `anonVMA` is `av`;
// a VMA with a nil `anonVMA` has an empty chain, except transiently inside anon_vma_fork.
import KeyMMBase

extension Kernel {
    /// anon_vma_prepare(): give `vma` an anon_vma before its first anonymous page, reusing
    /// an adjacent compatible VMA's (find_mergeable_anon_vma) or allocating a new root.
    /// Called by the fault handler (pgtable) and by MADV_GUARD_INSTALL.
    public func anonVMAPrepare(_ vma: VMA, in mm: MM) {
        if vma.anonVMA != nil { return }
        let av: AnonVMA
        if let reused = findMergeableAnonVMA(vma, in: mm) {
            av = reused
        } else {
            av = newAnonVMA(parent: nil)
            av.numChildren += 1          // self-parent link of a new root
        }
        vma.anonVMA = av
        anonVMAChainLink(vma, av)
        av.numActiveVMAs += 1
        syncDegree(av)
    }

    /// Links `vma` to `av` (anon_vma_chain_link: head insertion).
    func anonVMAChainLink(_ vma: VMA, _ av: AnonVMA) {
        vma.anonVMAChain.insert(av, at: 0)
        av.chainLinks += 1
    }

    /// Keeps the shared `degree` field meaningful (VMAs + children referencing the anon_vma).
    @inline(__always) func syncDegree(_ av: AnonVMA) {
        av.degree = av.numActiveVMAs + av.numChildren
    }

    /// anon_vma_compatible(): could `a` and `b` (a below b) share an anon_vma?
    func anonVMACompatible(_ a: VMA, _ b: VMA) -> Bool {
        let ignore: VMFlags = VMFlags([.read, .write, .exec]).union(.sticky)
        return a.vmEnd == b.vmStart
            && a.memoryPolicy == b.memoryPolicy
            && a.vmFile === b.vmFile && a.fileOpenID == b.fileOpenID
            && (a.vmFlags.rawValue ^ b.vmFlags.rawValue) & ~ignore.rawValue == 0
            && b.vmPgoff == a.vmPgoff &+ (b.vmStart.distance(from: a.vmStart) >> pageShift)
    }

    /// reusable_anon_vma(): `old`'s anon_vma, if compatible and `old` is not a fork child.
    func reusableAnonVMA(_ old: VMA, _ a: VMA, _ b: VMA) -> AnonVMA? {
        guard anonVMACompatible(a, b), let av = old.anonVMA, old.anonVMAChain.count == 1 else { return nil }
        return av
    }

    /// find_mergeable_anon_vma(): the next VMA's (if adjacent) or the previous VMA's anon_vma.
    func findMergeableAnonVMA(_ vma: VMA, in mm: MM) -> AnonVMA? {
        if let next = mm.vma(containing: vma.vmEnd), let av = reusableAnonVMA(next, vma, next) {
            return av
        }
        if let prev = mm.prev(of: vma) {
            return reusableAnonVMA(prev, prev, vma)
        }
        return nil
    }

    /// anon_vma_clone(): link `dst` to every anon_vma of `src` (split, copy, merge, fork).
    /// When `dst` has no anon_vma yet (fork), an ancestor anon_vma with no VMAs and at most
    /// one child is reused instead of allocating (mm: prevent endless growth of anon_vma
    /// hierarchy).
    func anonVMAClone(_ dst: VMA, from src: VMA) {
        for av in src.anonVMAChain.reversed() {
            anonVMAChainLink(dst, av)
            if dst.anonVMA == nil, src.anonVMA != nil, av.numChildren < 2, av.numActiveVMAs == 0 {
                dst.anonVMA = av
            }
        }
        if let a = dst.anonVMA {
            a.numActiveVMAs += 1
            syncDegree(a)
        }
    }

    /// anon_vma_fork(): the child VMA `vma` of `pvma` gets the parent's chain plus its own
    /// anon_vma whose parent is pvma's (so the child's chain is not singular).
    func anonVMAFork(_ vma: VMA, parent pvma: VMA) {
        guard let pav = pvma.anonVMA else { return }
        vma.anonVMA = nil
        vma.anonVMAChain = []
        anonVMAClone(vma, from: pvma)
        if vma.anonVMA != nil { return }
        let av = newAnonVMA(parent: pav)
        av.numActiveVMAs += 1
        vma.anonVMA = av
        anonVMAChainLink(vma, av)
        pav.numChildren += 1
        syncDegree(av)
        syncDegree(pav)
    }

    /// unlink_anon_vmas(): drop every chain link of `vma` and its anon_vma.
    func unlinkAnonVMAs(_ vma: VMA) {
        for av in vma.anonVMAChain {
            av.chainLinks -= 1
            if av.chainLinks == 0 {
                let parent = av.parent ?? av
                parent.numChildren -= 1
                syncDegree(parent)
            }
        }
        vma.anonVMAChain = []
        if let a = vma.anonVMA {
            a.numActiveVMAs -= 1
            syncDegree(a)
            vma.anonVMA = nil
        }
    }

    /// dup_anon_vma(): when a merge makes `dst` cover pages of `src`, `dst` takes `src`'s
    /// anon_vma (only if it had none). Returns whether it did.
    @discardableResult
    func dupAnonVMA(_ dst: VMA, from src: VMA) -> Bool {
        guard let av = src.anonVMA, dst.anonVMA == nil else { return false }
        dst.anonVMA = av
        anonVMAClone(dst, from: src)
        return true
    }

    /// vma_is_fork_child(): the VMA has an anon_vma and a non-singular chain.
    @inline(__always) func vmaIsForkChild(_ vma: VMA?) -> Bool {
        guard let v = vma, v.anonVMA != nil else { return false }
        return v.anonVMAChain.count != 1
    }
}
