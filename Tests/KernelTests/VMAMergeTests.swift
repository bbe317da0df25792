// Merge and split tests mirroring the kernel's userspace VMA harness (tools/testing/vma):
// simple_merge, simple_modify, simple_expand/shrink, merge_new, vma_merge_special_flags,
// vma_merge_with_close, merge_existing, anon_vma_non_mergeable, dup_anon_vma, copy_vma,
// plus split_vma's max_map_count and may_split rules.
import Testing
import KeyMMBase
@testable import KeyMMKernel

@Suite struct VMAMergeTests {
    @Test func simpleMerge() throws {
        let k = try makeVMAKernel()
        let mm = k.spawn().mm
        let left = linkVMA(k, mm, 0, 1, pgoff: 0)
        linkVMA(k, mm, 2, 3, pgoff: 2)
        var vmg = VMAMergeState(start: VirtAddr(0x1000), end: VirtAddr(0x2000), flags: rwFlags, pgoff: 1, file: nil)
        vmg.prev = left
        vmg.next = mm.next(of: left)
        let merged = k.vmaMergeNewRange(mm, &vmg)
        #expect(merged === left)
        #expect(layout(mm) == ["0-3:0"])
        #expect(mm.mapCount == 1)
        #expect(mm.vmas.check() == nil)
    }

    @Test func simpleModifySplitsIntoThreeWithPgoffs() throws {
        let k = try makeVMAKernel()
        let mm = k.spawn().mm
        let vma = linkVMA(k, mm, 0, 3, pgoff: 0)
        let r = k.vmaModifyFlags(mm, prev: nil, vma, VirtAddr(0x1000), VirtAddr(0x2000), [.read, .mayRead])
        let mid = try r.get()
        mid.vmFlags = [.read, .mayRead]
        #expect(layout(mm) == ["0-1:0", "1-2:1", "2-3:2"])
        #expect(mid.vmStart == VirtAddr(0x1000) && mid.vmEnd == VirtAddr(0x2000))
        #expect(mm.mapCount == 3)
    }

    @Test func simpleExpandAndShrink() throws {
        let k = try makeVMAKernel()
        let mm = k.spawn().mm
        let vma = linkVMA(k, mm, 0, 1, pgoff: 0)
        var vmg = VMAMergeState(start: VirtAddr(0), end: VirtAddr(0x3000), flags: rwFlags, pgoff: 0, file: nil)
        vmg.target = vma
        #expect(k.vmaExpand(mm, &vmg) == nil)
        #expect(layout(mm) == ["0-3:0"])
        k.vmaShrink(mm, vma, start: VirtAddr(0), end: VirtAddr(0x1000), pgoff: 0)
        #expect(layout(mm) == ["0-1:0"])
    }

    /// merge_new: a new range merges with prev, next, or both; anon_vma propagates.
    @Test func mergeNewRanges() throws {
        let k = try makeVMAKernel()
        let task = k.spawn()
        let mm = task.mm
        //  AA B       CC
        let a = linkVMA(k, mm, 0, 2, pgoff: 0)
        k.anonVMAPrepare(a, in: mm)
        let av = try #require(a.anonVMA)
        let b = linkVMA(k, mm, 3, 4, pgoff: 3)
        linkVMA(k, mm, 7, 9, pgoff: 7)
        // Merge the gap between A and B: A grows over [2,3) and swallows B.
        var vmg = VMAMergeState(start: VirtAddr(0x2000), end: VirtAddr(0x3000), flags: rwFlags, pgoff: 2, file: nil)
        vmg.prev = a
        vmg.next = b
        #expect(k.vmaMergeNewRange(mm, &vmg) === a)
        #expect(layout(mm) == ["0-4:0", "7-9:7"])
        #expect(mm.mapCount == 2)
        // Merge in front of C only.
        vmg = VMAMergeState(start: VirtAddr(0x5000), end: VirtAddr(0x7000), flags: rwFlags, pgoff: 5, file: nil)
        vmg.prev = a
        vmg.next = mm.next(of: a)
        let c = k.vmaMergeNewRange(mm, &vmg)
        #expect(c != nil && c !== a)
        #expect(layout(mm) == ["0-4:0", "5-9:5"])
        // Fill [4,5): everything is one VMA with A's anon_vma.
        vmg = VMAMergeState(start: VirtAddr(0x4000), end: VirtAddr(0x5000), flags: rwFlags, pgoff: 4, file: nil)
        vmg.prev = a
        vmg.next = c
        #expect(k.vmaMergeNewRange(mm, &vmg) === a)
        #expect(layout(mm) == ["0-9:0"])
        #expect(a.anonVMA === av)
        #expect(mm.mapCount == 1)
        // Non-contiguous pgoff does not merge.
        let d = linkVMA(k, mm, 10, 11, pgoff: 10)
        vmg = VMAMergeState(start: VirtAddr(0x9000), end: VirtAddr(0xa000), flags: rwFlags, pgoff: 42, file: nil)
        vmg.prev = a
        vmg.next = d
        #expect(k.vmaMergeNewRange(mm, &vmg) == nil)
    }

    @Test(arguments: [VMFlags.io, .dontExpand, .pfnMap, .mixedMap])
    func specialFlagsNeverMerge(_ special: VMFlags) throws {
        let k = try makeVMAKernel()
        let mm = k.spawn().mm
        let flags = rwFlags.union(special)
        let prev = linkVMA(k, mm, 0, 2, pgoff: 0, flags: flags)
        var vmg = VMAMergeState(start: VirtAddr(0x2000), end: VirtAddr(0x3000), flags: flags, pgoff: 2, file: nil)
        vmg.prev = prev
        #expect(k.vmaMergeNewRange(mm, &vmg) == nil)
        #expect(vmg.state == .noMerge)
        // Modifying an existing special VMA next to a matching one does not merge either.
        let vma = linkVMA(k, mm, 2, 3, pgoff: 2, flags: flags)
        var m = VMAMergeState(prev: prev, vma: vma, start: vma.vmStart, end: vma.vmEnd)
        #expect(k.vmaMergeExistingRange(mm, &m) == nil)
        #expect(mm.mapCount == 2)
    }

    /// vma_merge_with_close (docs/sources.md, seed 004: VMAs whose vm_ops have .close never merge away).
    @Test func closeHookBlocksRemovalButNotExtension() throws {
        let k = try makeVMAKernel()
        // A. next has close: a new range between prev and next only extends prev.
        do {
            let mm = k.spawn().mm
            let prev = linkVMA(k, mm, 0, 3, pgoff: 0)
            let next = linkVMA(k, mm, 5, 9, pgoff: 5)
            next.vmOps = CloseOps()
            var vmg = VMAMergeState(start: VirtAddr(0x3000), end: VirtAddr(0x5000), flags: rwFlags, pgoff: 3, file: nil)
            vmg.prev = prev
            vmg.next = next
            #expect(k.vmaMergeNewRange(mm, &vmg) === prev)
            #expect(layout(mm) == ["0-5:0", "5-9:5"])
        }
        // B. The modified VMA has close: merging would delete it, so nothing merges.
        do {
            let mm = k.spawn().mm
            let prev = linkVMA(k, mm, 0, 3, pgoff: 0)
            let vma = linkVMA(k, mm, 3, 5, pgoff: 3)
            vma.vmOps = CloseOps()
            var vmg = VMAMergeState(prev: prev, vma: vma, start: vma.vmStart, end: vma.vmEnd)
            #expect(k.vmaMergeExistingRange(mm, &vmg) == nil)
            #expect(vmg.state == .noMerge)
            // ... nor with next.
            let mm2 = k.spawn().mm
            let v2 = linkVMA(k, mm2, 3, 5, pgoff: 3)
            linkVMA(k, mm2, 5, 9, pgoff: 5)
            v2.vmOps = CloseOps()
            var vmg2 = VMAMergeState(prev: nil, vma: v2, start: v2.vmStart, end: v2.vmEnd)
            #expect(k.vmaMergeExistingRange(mm2, &vmg2) == nil)
        }
        // C. Three-way with a close hook on next reduces to prev + vma.
        do {
            let mm = k.spawn().mm
            let prev = linkVMA(k, mm, 0, 3, pgoff: 0)
            let vma = linkVMA(k, mm, 3, 5, pgoff: 3, flags: [.read, .mayRead, .mayWrite, .mayExec])
            let next = linkVMA(k, mm, 5, 9, pgoff: 5)
            next.vmOps = CloseOps()
            var vmg = VMAMergeState(prev: prev, vma: vma, start: vma.vmStart, end: vma.vmEnd)
            vmg.flags = rwFlags
            #expect(k.vmaMergeExistingRange(mm, &vmg) === prev)
            #expect(layout(mm) == ["0-5:0", "5-9:5"])
            #expect(mm.mapCount == 2)
        }
    }

    /// merge_existing: partial spans shift the boundary, full spans delete the middle.
    @Test func mergeExistingPartialAndFull() throws {
        let k = try makeVMAKernel()
        let ro: VMFlags = [.read, .mayRead, .mayWrite, .mayExec]
        // Partial, right side:  VVVVNNN -> VVNNNNN  (middle shrinks, next grows down)
        do {
            let mm = k.spawn().mm
            let vma = linkVMA(k, mm, 2, 6, pgoff: 2, flags: ro)
            let next = linkVMA(k, mm, 6, 9, pgoff: 6)
            var vmg = VMAMergeState(prev: vma, vma: vma, start: VirtAddr(0x4000), end: VirtAddr(0x6000))
            vmg.flags = rwFlags
            #expect(k.vmaMergeExistingRange(mm, &vmg) === next)
            #expect(layout(mm) == ["2-4:2", "4-9:4"])
        }
        // Partial, left side:  PPPVVVV -> PPPPPVV  (prev grows, middle shrinks from below)
        do {
            let mm = k.spawn().mm
            let prev = linkVMA(k, mm, 0, 3, pgoff: 0)
            let vma = linkVMA(k, mm, 3, 7, pgoff: 3, flags: ro)
            var vmg = VMAMergeState(prev: prev, vma: vma, start: VirtAddr(0x3000), end: VirtAddr(0x5000))
            vmg.flags = rwFlags
            #expect(k.vmaMergeExistingRange(mm, &vmg) === prev)
            #expect(layout(mm) == ["0-5:0", "5-7:5"])
        }
        // Full span: PPPVVNNN -> one VMA.
        do {
            let mm = k.spawn().mm
            let prev = linkVMA(k, mm, 0, 3, pgoff: 0)
            let vma = linkVMA(k, mm, 3, 5, pgoff: 3, flags: ro)
            linkVMA(k, mm, 5, 8, pgoff: 5)
            var vmg = VMAMergeState(prev: prev, vma: vma, start: vma.vmStart, end: vma.vmEnd)
            vmg.flags = rwFlags
            #expect(k.vmaMergeExistingRange(mm, &vmg) === prev)
            #expect(layout(mm) == ["0-8:0"])
            #expect(mm.mapCount == 1)
        }
        // A range in the middle of a VMA never merges.
        do {
            let mm = k.spawn().mm
            let prev = linkVMA(k, mm, 0, 3, pgoff: 0)
            let vma = linkVMA(k, mm, 3, 9, pgoff: 3, flags: ro)
            var vmg = VMAMergeState(prev: prev, vma: vma, start: VirtAddr(0x4000), end: VirtAddr(0x5000))
            vmg.flags = rwFlags
            #expect(k.vmaMergeExistingRange(mm, &vmg) == nil)
        }
    }

    /// anon_vma_non_mergeable: prev and next have different anon_vmas, so a middle matching
    /// both merges with prev only.
    @Test func differentAnonVMAsOnBothSidesMergeOnlyLeft() throws {
        let k = try makeVMAKernel()
        let mm = k.spawn().mm
        let ro: VMFlags = [.read, .mayRead, .mayWrite, .mayExec]
        let prev = linkVMA(k, mm, 0, 3, pgoff: 0)
        let vma = linkVMA(k, mm, 3, 7, pgoff: 3, flags: ro)
        let next = linkVMA(k, mm, 7, 9, pgoff: 7)
        prev.anonVMA = k.newAnonVMA(parent: nil)
        k.anonVMAChainLink(prev, prev.anonVMA!)
        next.anonVMA = k.newAnonVMA(parent: nil)
        k.anonVMAChainLink(next, next.anonVMA!)
        var vmg = VMAMergeState(prev: prev, vma: vma, start: vma.vmStart, end: vma.vmEnd)
        vmg.flags = rwFlags
        #expect(k.vmaMergeExistingRange(mm, &vmg) === prev)
        #expect(layout(mm) == ["0-7:0", "7-9:7"])
        #expect(prev.anonVMA !== next.anonVMA)
    }

    /// dup_anon_vma: merging an unfaulted prev with a faulted middle gives prev the anon_vma.
    @Test func mergeDuplicatesAnonVMAIntoTheTarget() throws {
        let k = try makeVMAKernel()
        let mm = k.spawn().mm
        let prev = linkVMA(k, mm, 0, 3, pgoff: 0)
        let vma = linkVMA(k, mm, 3, 5, pgoff: 3, flags: [.read, .mayRead, .mayWrite, .mayExec])
        k.anonVMAPrepare(vma, in: mm)
        let av = try #require(vma.anonVMA)
        var vmg = VMAMergeState(prev: prev, vma: vma, start: vma.vmStart, end: vma.vmEnd)
        vmg.flags = rwFlags
        #expect(k.vmaMergeExistingRange(mm, &vmg) === prev)
        #expect(prev.anonVMA === av)
        #expect(prev.anonVMAChain.count == 1)
        #expect(av.numActiveVMAs == 1)          // the removed VMA unlinked, prev linked
    }

    /// A fork child's VMA (non-singular anon_vma chain) does not merge with an unfaulted one.
    @Test func forkChildDoesNotMergeWithUnfaulted() throws {
        let k = try makeVMAKernel()
        let parent = k.spawn()
        let base: UInt64 = 0x7000_0000_0000
        _ = try k.mmap(parent.pid, addr: VirtAddr(base), length: 0x2000, prot: [.read, .write],
                       flags: [.private, .anonymous, .fixed]).get()
        #expect(k.memTouch(parent, VirtAddr(base), 0x2000, .write) == 2)
        let cpid = try k.fork(parent.pid).get()
        let child = try #require(k.tasks[cpid])
        let cv = try #require(child.mm.vma(containing: VirtAddr(base)))
        #expect(cv.anonVMAChain.count == 2)
        #expect(cv.anonVMA?.parent === parent.mm.vma(containing: VirtAddr(base))?.anonVMA)
        _ = try k.mmap(cpid, addr: VirtAddr(base + 0x2000), length: 0x2000, prot: [.read, .write],
                       flags: [.private, .anonymous, .fixed]).get()
        #expect(child.mm.mapCount == 2)
        // The same sequence in the parent merges.
        _ = try k.mmap(parent.pid, addr: VirtAddr(base + 0x2000), length: 0x2000, prot: [.read, .write],
                       flags: [.private, .anonymous, .fixed]).get()
        #expect(parent.mm.mapCount == 1)
    }

    /// copy_vma: an unfaulted anonymous VMA moved next to a matching one merges (its pgoff
    /// follows the address); a faulted one keeps its pgoff and merges only if contiguous.
    @Test func copyVMAMergesWhenPossible() throws {
        let k = try makeVMAKernel()
        let task = k.spawn()
        let pid = task.pid
        let a: UInt64 = 0x7000_0000_0000
        _ = try k.mmap(pid, addr: VirtAddr(a), length: 0x3000, prot: [.read, .write], flags: [.private, .anonymous, .fixed]).get()
        _ = try k.mmap(pid, addr: VirtAddr(a + 0x10000), length: 0x2000, prot: [.read, .write], flags: [.private, .anonymous, .fixed]).get()
        let r = try k.mremap(pid, oldAddr: VirtAddr(a + 0x10000), oldLength: 0x2000, newLength: 0x2000,
                             flags: [.mayMove, .fixed], newAddr: VirtAddr(a + 0x3000)).get()
        #expect(r == VirtAddr(a + 0x3000))
        #expect(task.mm.mapCount == 1)
        #expect(task.mm.vma(containing: VirtAddr(a))?.vmEnd == VirtAddr(a + 0x5000))
        // Faulted: the moved VMA keeps vm_pgoff, so it does not merge at a new place.
        _ = try k.mmap(pid, addr: VirtAddr(a + 0x20000), length: 0x2000, prot: [.read, .write], flags: [.private, .anonymous, .fixed]).get()
        #expect(k.memTouch(task, VirtAddr(a + 0x20000), 0x1000, .write) == 1)
        let old = try #require(task.mm.vma(containing: VirtAddr(a + 0x20000)))
        let oldPgoff = old.vmPgoff
        _ = try k.mremap(pid, oldAddr: VirtAddr(a + 0x20000), oldLength: 0x2000, newLength: 0x2000,
                         flags: [.mayMove, .fixed], newAddr: VirtAddr(a + 0x30000)).get()
        let moved = try #require(task.mm.vma(containing: VirtAddr(a + 0x30000)))
        #expect(moved.vmPgoff == oldPgoff)
        // Moved back next to its original neighbours' pgoff, it merges again.
        _ = try k.mremap(pid, oldAddr: VirtAddr(a + 0x30000), oldLength: 0x2000, newLength: 0x2000,
                         flags: [.mayMove, .fixed], newAddr: VirtAddr(a + 0x20000)).get()
        #expect(task.mm.vma(containing: VirtAddr(a + 0x20000))?.vmPgoff == oldPgoff)
    }

    /// split_vma fails with ENOMEM at max_map_count; munmap may exceed it by one transiently.
    @Test func splitHonoursMaxMapCount() throws {
        let k = try makeVMAKernel(maxMapCount: 3)
        let task = k.spawn()
        let pid = task.pid
        let a: UInt64 = 0x7000_0000_0000
        _ = try k.mmap(pid, addr: VirtAddr(a), length: 0x10000, prot: [.read, .write], flags: [.private, .anonymous, .fixed]).get()
        #expect(k.mprotect(pid, addr: VirtAddr(a + 0x1000), length: 0x1000, prot: .read).isSuccess)   // 3 VMAs
        #expect(task.mm.mapCount == 3)
        #expect(k.mprotect(pid, addr: VirtAddr(a + 0x5000), length: 0x1000, prot: .read).failure == .ENOMEM)
        // Punching a hole needs two splits at map_count 3 == max: refused.
        #expect(k.munmap(pid, addr: VirtAddr(a + 0x8000), length: 0x1000).failure == .ENOMEM)
        // Unmapping an edge needs one split: allowed (4 > 3 transiently is fine).
        #expect(k.munmap(pid, addr: VirtAddr(a + 0xf000), length: 0x1000).isSuccess)
        #expect(k.madvise(pid, addr: VirtAddr(a + 0x4000), length: 0x1000, advice: .dontFork).failure == .EAGAIN)
    }

    /// vm_ops->may_split vetoes a split; vm_ops->mprotect vetoes a change.
    @Test func driverHooksVeto() throws {
        let k = try makeVMAKernel()
        let task = k.spawn()
        let a: UInt64 = 0x7000_0000_0000
        let vma = try k.installSpecialMapping(task.pid, addr: VirtAddr(a), length: 0x4000,
                                              flags: [.read, .write, .mayRead, .mayWrite], ops: VetoOps()).get()
        #expect(k.munmap(task.pid, addr: VirtAddr(a + 0x1000), length: 0x1000).failure == .EINVAL)
        #expect(k.mprotect(task.pid, addr: VirtAddr(a), length: 0x4000, prot: [.read, .exec]).failure == .EACCES)
        #expect(k.mprotect(task.pid, addr: VirtAddr(a), length: 0x4000, prot: .read).isSuccess)
        #expect(vma.vmFlags.contains(.dontExpand))
        #expect(task.mm.mapCount == 1)
    }

    /// Merging drops the removed VMA's KeyID reference; splitting takes one (docs/sources.md, seed 000).
    @Test func keyIDReferencesFollowSplitsAndMerges() throws {
        let k = try makeVMAKernel()
        let task = k.spawn()
        let mm = task.mm
        let key = KeyID(3)
        let refs = k.keys.references
        let before = refs.count(key)
        let v = k.vmAreaAlloc(start: VirtAddr(0x7000_0000_0000), end: VirtAddr(0x7000_0000_4000),
                              pgoff: 0x7000_0000, flags: rwFlags, keyid: key)
        mm.vmas.insert(v)
        #expect(refs.count(key) == before + 1)
        #expect(k.splitVMA(mm, v, at: VirtAddr(0x7000_0000_2000), newBelow: false) == nil)
        #expect(refs.count(key) == before + 2)
        k.exit(task.pid)
        #expect(refs.count(key) == before)
    }
}

extension Result {
    var isSuccess: Bool { if case .success = self { return true } else { return false } }
    var failure: Failure? { if case .failure(let e) = self { return e } else { return nil } }
}
