// VMA merging and splitting as mm/vma.c (Linux 6.18): vma_merge_existing_range (mprotect,
// mlock, madvise), vma_merge_new_range (mmap, brk, mremap's copy_vma), vma_expand,
// commit_merge, split_vma, vma_modify, vma_merge_extend, copy_vma.
//
// The merge rules (is_mergeable_vma / is_mergeable_anon_vma / can_vma_merge_*):
// - equal vm_flags ignoring the sticky flags (VM_SOFTDIRTY, VM_MAYBE_GUARD: the merged VMA
//   gets them if any merged VMA had them), same file, contiguous pgoff, same mempolicy,
//   same anon_vma_name, same userfaultfd context (none in the model), equal KeyID (MKTME);
// - anon_vma: equal, or one side NULL provided the faulted side is not a fork child
//   (vma_is_fork_child: non-singular anon_vma_chain); for a three-way merge prev and next
//   must be compatible with each other too; a copied (mremap'd) source that is a fork
//   child blocks the merge;
// - VM_SPECIAL never merges; a VMA whose vm_ops has close is never removed by a merge.
//
// Invariants: after every operation the tree holds non-overlapping VMAs; map_count is the
// tree's count; VMAs removed by a merge are unlinked from their anon_vma and freed.
import KeyMMBase

/// struct vma_merge_struct: a proposed range and its properties, and the merge outcome.
struct VMAMergeState {
    enum State { case start, noMerge, success, errorNoMem }
    var start: VirtAddr
    var end: VirtAddr
    var pgoff: UInt64
    var flags: VMFlags
    var file: MappedFile?
    var fileOpenID: UInt64 = 0
    var anonVMA: AnonVMA?
    var policy: MemoryPolicy
    var anonName: String?
    var keyid: KeyID
    var prev: VMA?
    var middle: VMA?
    var next: VMA?
    var target: VMA?
    var copiedFrom: VMA?
    var justExpand = false
    var state: State = .start
    var removeMiddle = false
    var removeNext = false
    var adjustMiddleStart = false
    var adjustNextStart = false

    /// VMG_STATE: a new range (mmap, brk).
    init(start: VirtAddr, end: VirtAddr, flags: VMFlags, pgoff: UInt64, file: MappedFile?,
         keyid: KeyID = .tme, policy: MemoryPolicy = .default) {
        self.start = start
        self.end = end
        self.flags = flags
        self.pgoff = pgoff
        self.file = file
        self.anonVMA = nil
        self.policy = policy
        self.anonName = nil
        self.keyid = keyid
    }

    /// VMG_VMA_STATE: [start, end) of `vma`, with `prev` the VMA before it (or `vma` itself
    /// when start is inside it).
    init(prev: VMA?, vma: VMA, start: VirtAddr, end: VirtAddr) {
        self.prev = prev
        self.middle = vma
        self.start = start
        self.end = end
        self.flags = vma.vmFlags
        self.pgoff = vma.pageIndex(of: start)
        self.file = vma.vmFile
        self.fileOpenID = vma.fileOpenID
        self.anonVMA = vma.anonVMA
        self.policy = vma.memoryPolicy
        self.anonName = vma.anonName
        self.keyid = vma.keyid
    }
}

extension Kernel {
    // MARK: mergeability

    /// is_mergeable_vma(): flags (but soft-dirty), file, policy, anon name, KeyID.
    func isMergeableVMA(_ vmg: VMAMergeState, mergeNext: Bool) -> Bool {
        guard let vma = mergeNext ? vmg.next : vmg.prev else { return false }
        // (All must hold; the cheapest, most discriminating checks come first.)
        if (vma.vmFlags.rawValue ^ vmg.flags.rawValue) & ~VMFlags.sticky.rawValue != 0 { return false }
        if vma.vmFile !== vmg.file || vma.fileOpenID != vmg.fileOpenID { return false }
        if vma.keyid != vmg.keyid && !config.bugs.contains(.mergeAcrossKeyIDs) { return false }   // seeded bug
        // 2019's is_mergeable_vma (seed 004): a VMA with vm_ops->close never merges at all.
        if config.closeMergeRule == .linux2019, vma.vmOps?.hasClose == true { return false }
        if vma.memoryPolicy != vmg.policy { return false }
        if vma.anonName != vmg.anonName { return false }
        return true
    }

    /// is_mergeable_anon_vma() (6.18 with the fork-child check on copied sources).
    func isMergeableAnonVMA(_ vmg: VMAMergeState, mergeNext: Bool) -> Bool {
        guard let tgt = mergeNext ? vmg.next : vmg.prev else { return false }
        let tgtAnon = tgt.anonVMA
        let srcAnon = vmg.anonVMA
        if tgtAnon == nil, srcAnon != nil {
            // We will dup_anon_vma() from the source into the target.
            return !vmaIsForkChild(vmg.middle) && !vmaIsForkChild(vmg.copiedFrom)
        }
        if tgtAnon != nil, srcAnon == nil {
            return !vmaIsForkChild(tgt)
        }
        return srcAnon === tgtAnon
    }

    /// can_vma_merge_before(): the range can be merged in front of vmg.next.
    func canVMAMergeBefore(_ vmg: VMAMergeState) -> Bool {
        guard let next = vmg.next else { return false }
        let pglen = vmg.end.distance(from: vmg.start) >> pageShift
        return isMergeableVMA(vmg, mergeNext: true) && isMergeableAnonVMA(vmg, mergeNext: true)
            && next.vmPgoff == vmg.pgoff &+ pglen
    }

    /// can_vma_merge_after(): the range can be merged after vmg.prev.
    func canVMAMergeAfter(_ vmg: VMAMergeState) -> Bool {
        guard let prev = vmg.prev else { return false }
        return isMergeableVMA(vmg, mergeNext: false) && isMergeableAnonVMA(vmg, mergeNext: false)
            && prev.vmPgoff &+ prev.pages == vmg.pgoff
    }

    func canVMAMergeLeft(_ vmg: VMAMergeState) -> Bool {
        guard let prev = vmg.prev, prev.vmEnd == vmg.start else { return false }
        return canVMAMergeAfter(vmg)
    }

    func canVMAMergeRight(_ vmg: VMAMergeState, canMergeLeft: Bool) -> Bool {
        guard let next = vmg.next, vmg.end == next.vmStart, canVMAMergeBefore(vmg) else { return false }
        if !canMergeLeft { return true }
        // prev and next must be compatible with each other too.
        guard let prev = vmg.prev else { return true }
        return prev.anonVMA == nil || next.anonVMA == nil || prev.anonVMA === next.anonVMA
    }

    /// can_merge_remove_vma(): a VMA with a close hook is never removed by a merge.
    @inline(__always) func canMergeRemoveVMA(_ vma: VMA) -> Bool {
        !(vma.vmOps?.hasClose ?? false)
    }

    // MARK: committing

    /// commit_merge(): set the target's range, shift an adjusted neighbour, drop removed VMAs.
    func commitMerge(_ mm: MM, _ vmg: inout VMAMergeState) {
        guard let vma = vmg.adjustNextStart ? vmg.middle : vmg.target else { return }
        // At most two VMAs go (middle, then next): two optionals, not an array (no heap allocation).
        let removedMiddle = vmg.removeMiddle ? vmg.middle : nil
        let removedNext = vmg.removeNext ? vmg.next : nil
        if let r = removedMiddle { mm.vmas.remove(r) }
        if let r = removedNext { mm.vmas.remove(r) }
        adjustTransHuge(mm, vma, vmg.start, vmg.end, vmg.adjustMiddleStart ? vmg.middle : nil)
        if vmg.adjustMiddleStart, let middle = vmg.middle {
            // Shrink middle from below first, then grow the target over the freed range.
            let pg = middle.vmPgoff &+ (vmg.end.distance(from: middle.vmStart) >> pageShift)
            mm.adjust(middle, start: vmg.end, end: middle.vmEnd, pgoff: pg)
            mm.adjust(vma, start: vmg.start, end: vmg.end, pgoff: vmg.pgoff)
        } else if vmg.adjustNextStart, let next = vmg.next {
            mm.adjust(vma, start: vmg.start, end: vmg.end, pgoff: vmg.pgoff)
            let pg = next.vmPgoff &- (next.vmStart.distance(from: vmg.end) >> pageShift)
            mm.adjust(next, start: vmg.end, end: next.vmEnd, pgoff: pg)
        } else {
            mm.adjust(vma, start: vmg.start, end: vmg.end, pgoff: vmg.pgoff)
        }
        // vma_complete: anon_vma_merge (unlink), mpol_put, vm_area_free; no close hook.
        if let r = removedMiddle { freeVMA(r, close: false) }
        if let r = removedNext { freeVMA(r, close: false) }
        machine.clock.charge(.vmaOp)
        machine.clock.count(.vmaMerges)
    }

    /// vma_adjust_trans_huge(): split huge PMDs straddling the new boundaries.
    func adjustTransHuge(_ mm: MM, _ vma: VMA, _ start: VirtAddr, _ end: VirtAddr, _ next: VMA?) {
        splitHugePMDIfNeeded(mm, vma, start)
        splitHugePMDIfNeeded(mm, vma, end)
        if let next { splitHugePMDIfNeeded(mm, next, end) }
    }

    func splitHugePMDIfNeeded(_ mm: MM, _ vma: VMA, _ address: VirtAddr) {
        let a = address.rawValue
        guard a & pmdMask != 0 else { return }
        let down = a & ~pmdMask, up = down &+ pmdSize
        guard down >= vma.vmStart.rawValue, up <= vma.vmEnd.rawValue else { return }
        glueSplitHugePMD(mm, vma, at: address)
    }

    // MARK: merging an existing range (vma_modify)

    /// vma_merge_existing_range(): after a change of [start, end) of vmg.middle, merge it
    /// with prev and/or next when they now match. Returns the merged VMA or nil.
    func vmaMergeExistingRange(_ mm: MM, _ vmg: inout VMAMergeState) -> VMA? {
        guard let middle = vmg.middle else { return nil }
        let prev = vmg.prev
        let start = vmg.start, end = vmg.end
        let leftSide = start == middle.vmStart
        let rightSide = end == middle.vmEnd
        vmg.state = .noMerge
        if !vmg.flags.isDisjoint(with: .special) || (!leftSide && !rightSide) { return nil }

        let mergeLeft = leftSide ? canVMAMergeLeft(vmg) : false
        var mergeRight = false
        var next: VMA? = nil
        if rightSide {
            next = mm.next(of: middle)
            vmg.next = next
            mergeRight = canVMAMergeRight(vmg, canMergeLeft: mergeLeft)
        }
        if !mergeLeft && !mergeRight { return nil }
        var mergeBoth = mergeLeft && mergeRight
        vmg.removeMiddle = leftSide && rightSide
        if vmg.removeMiddle && !canMergeRemoveVMA(middle) { return nil }
        vmg.removeNext = mergeBoth
        if vmg.removeNext, let n = next, !canMergeRemoveVMA(n) {
            vmg.removeNext = false
            mergeRight = false
            mergeBoth = false
        }
        if mergeRight { vmg.target = next }
        if mergeLeft { vmg.target = prev }
        // VM_STICKY: the merged VMA keeps what any of the merged VMAs had.
        var sticky = vmg.flags.intersection(.sticky)
        if mergeRight, let n = next { sticky.formUnion(n.vmFlags.intersection(.sticky)) }
        if mergeLeft, let p = prev { sticky.formUnion(p.vmFlags.intersection(.sticky)) }

        if mergeBoth, let p = prev, let n = next {
            vmg.start = p.vmStart
            vmg.end = n.vmEnd
            vmg.pgoff = p.vmPgoff
            dupAnonVMA(p, from: n.anonVMA != nil ? n : middle)
        } else if mergeLeft, let p = prev {
            vmg.start = p.vmStart
            vmg.pgoff = p.vmPgoff
            if !vmg.removeMiddle { vmg.adjustMiddleStart = true }
            dupAnonVMA(p, from: middle)
        } else if let n = next {
            let pglen = end.distance(from: start) >> pageShift
            if vmg.removeMiddle {
                vmg.end = n.vmEnd
                vmg.pgoff = n.vmPgoff &- pglen
            } else {
                vmg.adjustNextStart = true
                vmg.start = middle.vmStart
                vmg.end = start
                vmg.pgoff = middle.vmPgoff
            }
            dupAnonVMA(n, from: middle)
        } else {
            return nil
        }
        commitMerge(mm, &vmg)
        vmg.target?.vmFlags.formUnion(sticky)
        vmg.state = .success
        return vmg.target
    }

    // MARK: merging a new range

    /// vma_merge_new_range(): place [start, end) by expanding prev and/or next when they
    /// match. Returns the expanded VMA or nil (then the caller allocates a new VMA).
    func vmaMergeNewRange(_ mm: MM, _ vmg: inout VMAMergeState) -> VMA? {
        let prev = vmg.prev, next = vmg.next
        let end = vmg.end
        vmg.state = .noMerge
        if !vmg.flags.isDisjoint(with: .special) || (prev == nil && next == nil) { return nil }
        let canMergeLeft = canVMAMergeLeft(vmg)
        let canMergeRight = !vmg.justExpand && canVMAMergeRight(vmg, canMergeLeft: canMergeLeft)
        if canMergeRight, let n = next {
            vmg.end = n.vmEnd
            vmg.target = n
        }
        if canMergeLeft, let p = prev {
            vmg.start = p.vmStart
            vmg.target = p
            vmg.pgoff = p.vmPgoff
            if canMergeRight, let n = next, !canMergeRemoveVMA(n) { vmg.end = end }
        }
        if vmg.target != nil, vmaExpand(mm, &vmg) == nil {
            vmg.state = .success
            return vmg.target
        }
        return nil
    }

    /// vma_expand(): grow vmg.target to [vmg.start, vmg.end), absorbing vmg.next when the
    /// range reaches its end; propagate anon_vma state from a removed next or a copied source.
    @discardableResult
    func vmaExpand(_ mm: MM, _ vmg: inout VMAMergeState) -> Errno? {
        guard let target = vmg.target else { return .ENOMEM }
        var removeNext = false
        if let n = vmg.next, n !== target, vmg.end == n.vmEnd { removeNext = true }
        var sticky = vmg.flags.union(target.vmFlags).intersection(.sticky)
        if removeNext, let n = vmg.next { sticky.formUnion(n.vmFlags.intersection(.sticky)) }
        if removeNext, let n = vmg.next { dupAnonVMA(target, from: n) }
        if let src = vmg.copiedFrom { dupAnonVMA(target, from: src) }
        if removeNext { vmg.removeNext = true }
        commitMerge(mm, &vmg)
        target.vmFlags.formUnion(sticky)
        return nil
    }

    // MARK: splitting

    /// split_vma(): split at `addr` unless the mm is at max_map_count (ENOMEM).
    func splitVMA(_ mm: MM, _ vma: VMA, at addr: VirtAddr, newBelow: Bool) -> Errno? {
        if mm.mapCount >= config.maxMapCount { return .ENOMEM }
        return splitVMANoLimit(mm, vma, at: addr, newBelow: newBelow)
    }

    /// __split_vma(): split `vma` at `addr`; with `newBelow` the new VMA is the lower part
    /// and `vma` keeps [addr, end), else the new VMA is [addr, end). vm_ops->may_split may veto.
    func splitVMANoLimit(_ mm: MM, _ vma: VMA, at addr: VirtAddr, newBelow: Bool) -> Errno? {
        if let ops = vma.vmOps, let e = ops.maySplit(vma, at: addr) { return e }
        let new = vmAreaDup(vma)
        if newBelow {
            new.vmEnd = addr
        } else {
            new.vmStart = addr
            new.vmPgoff = vma.pageIndex(of: addr)
        }
        anonVMAClone(new, from: vma)
        vma.vmOps?.open(new, mm: mm)
        adjustTransHuge(mm, vma, vma.vmStart, addr, nil)
        if newBelow {
            // The lower half takes vma's slot in the tree; vma moves up to `addr`.
            let pg = vma.pageIndex(of: addr)
            mm.vmas.replace(vma, with: new)
            vma.vmStart = addr
            vma.vmPgoff = pg
            mm.vmas.insert(vma)
        } else {
            vma.vmEnd = addr
            mm.vmas.insert(new)
        }
        machine.clock.charge(.vmaOp)
        return nil
    }

    /// vma_modify(): merge [start, end) of vmg.middle with a neighbour, else split it out.
    /// Returns the VMA now covering exactly [start, end) (possibly merged wider).
    func vmaModify(_ mm: MM, _ vmg: inout VMAMergeState) -> Result<VMA, Errno> {
        guard let vma = vmg.middle else { return .failure(.EINVAL) }
        let start = vmg.start, end = vmg.end
        if let merged = vmaMergeExistingRange(mm, &vmg) { return .success(merged) }
        if vmg.state == .errorNoMem { return .failure(.ENOMEM) }
        if vma.vmStart < start, let e = splitVMA(mm, vma, at: start, newBelow: true) { return .failure(e) }
        if vma.vmEnd > end, let e = splitVMA(mm, vma, at: end, newBelow: false) { return .failure(e) }
        return .success(vma)
    }

    /// vma_modify_flags(): change [start, end) of `vma` to `newFlags` (merging or splitting).
    /// The caller then sets the flags on the returned VMA.
    func vmaModifyFlags(_ mm: MM, prev: VMA?, _ vma: VMA, _ start: VirtAddr, _ end: VirtAddr,
                        _ newFlags: VMFlags) -> Result<VMA, Errno> {
        var vmg = VMAMergeState(prev: prev, vma: vma, start: start, end: end)
        vmg.flags = newFlags
        return vmaModify(mm, &vmg)
    }

    /// vma_shrink(): cut `vma` down to [start, end) (one side only), unmapping nothing.
    func vmaShrink(_ mm: MM, _ vma: VMA, start: VirtAddr, end: VirtAddr, pgoff: UInt64) {
        adjustTransHuge(mm, vma, start, end, nil)
        mm.adjust(vma, start: start, end: end, pgoff: pgoff)
        machine.clock.charge(.vmaOp)
    }

    /// vma_merge_extend(): grow `vma` by `delta` bytes in place (mremap), merging with next.
    func vmaMergeExtend(_ mm: MM, _ vma: VMA, delta: UInt64) -> VMA? {
        var vmg = VMAMergeState(prev: vma, vma: vma, start: vma.vmEnd, end: vma.vmEnd.advanced(by: delta))
        vmg.next = mm.next(of: vma)
        vmg.middle = nil
        return vmaMergeNewRange(mm, &vmg)
    }

    /// copy_vma(): a VMA for [addr, addr+len) with `vma`'s properties (mremap move), merged
    /// with neighbours when possible. `vma` is updated when the source merged into the copy.
    func copyVMA(_ mm: MM, _ vma: inout VMA, to addr: VirtAddr, length len: UInt64, pgoff pgoffIn: UInt64) -> VMA? {
        var pgoff = pgoffIn
        let vmaStart = vma.vmStart
        if vma.isAnonymous && vma.anonVMA == nil {
            // Unfaulted anonymous memory takes the new address's pgoff (better merging).
            pgoff = addr.pageNumber
        }
        let end = addr.advanced(by: len)
        let (found, prev) = mm.findVMAPrev(addr)
        if let f = found, f.vmStart < end { return nil }
        var vmg = VMAMergeState(prev: prev, vma: vma, start: addr, end: end)
        vmg.pgoff = pgoff
        vmg.next = mm.findVMA(addr)
        vmg.copiedFrom = vma
        vmg.middle = nil
        if let merged = vmaMergeNewRange(mm, &vmg) {
            if vmaStart >= merged.vmStart && vmaStart < merged.vmEnd {
                vma = merged
            }
            return merged
        }
        let new = vmAreaDup(vma)
        new.vmStart = addr
        new.vmEnd = end
        new.vmPgoff = pgoff
        anonVMAClone(new, from: vma)
        new.vmOps?.open(new, mm: mm)
        mm.vmas.insert(new)
        machine.clock.charge(.vmaOp)
        return new
    }
}
