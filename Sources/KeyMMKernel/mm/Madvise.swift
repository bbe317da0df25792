// madvise(2) (mm/madvise.c, 6.18): advice validation, the VMA walk that applies the advice
// to every mapped part of the range and reports ENOMEM for holes only at the end, the
// flag-changing advice through vma_modify (split/merge), and the page-level advice
// (DONTNEED/FREE/POPULATE/COLLAPSE/...) through the page-table layer.
//
// Guard regions (MADV_GUARD_INSTALL/REMOVE) keep PTE markers (pgtable/GuardMarkers.swift);
// sealed VMAs (mm/Mseal.swift) refuse discarding advice with EPERM.
//
// Invariants: a flag advice leaves every VMA outside the range untouched; an error from one
// VMA stops the walk (VMAs before it keep the change); ENOMEM from a split is reported as
// EAGAIN, as the kernel does; guard markers survive every advice but GUARD_REMOVE.
import KeyMMBase

extension Kernel {
    /// madvise(2).
    public func madvise(_ pid: ProcessID, addr: VirtAddr, length: UInt64, advice: MAdvice) -> Result<Void, Errno> {
        machine.clock.charge(.syscall)
        guard let task = tasks[pid] else { return .failure(.ESRCH) }
        if let e = doMadvise(task, addr, length, advice) { return .failure(e) }
        return .success(())
    }

    /// madvise_behavior_valid().
    func madviseBehaviorValid(_ a: MAdvice) -> Bool {
        switch a {
        case .doFork, .dontFork, .normal, .sequential, .random, .remove, .willNeed, .dontNeed,
             .dontNeedLocked, .free, .cold, .pageOut, .populateRead, .populateWrite, .mergeable,
             .unmergeable, .hugePage, .noHugePage, .collapse, .dontDump, .doDump, .wipeOnFork,
             .keepOnFork, .guardInstall, .guardRemove, .softOffline, .hwPoison:
            return true
        default:
            return false
        }
    }

    /// do_madvise().
    func doMadvise(_ task: TaskStruct, _ start: VirtAddr, _ lenIn: UInt64, _ advice: MAdvice) -> Errno? {
        if !madviseBehaviorValid(advice) { return .EINVAL }
        if !start.isPageAligned { return .EINVAL }
        let len = pageAlignUp(lenIn) ?? 0
        if lenIn != 0 && len == 0 { return .EINVAL }
        let (endRaw, overflow) = start.rawValue.addingReportingOverflow(len)
        if overflow { return .EINVAL }
        if endRaw == start.rawValue { return nil }
        let end = VirtAddr(endRaw)
        switch advice {
        case .hwPoison, .softOffline:
            if !task.cred.capable(.sysAdmin) { return .EPERM }
            return firstIntersecting(task.mm, start, end) == nil ? .EFAULT : nil
        case .populateRead, .populateWrite:
            return madvisePopulate(task, start, end, write: advice == .populateWrite)
        default:
            return madviseWalkVMAs(task, start, end, advice)
        }
    }

    /// madvise_walk_vmas().
    func madviseWalkVMAs(_ task: TaskStruct, _ start: VirtAddr, _ lastEnd: VirtAddr, _ advice: MAdvice) -> Errno? {
        let mm = task.mm
        var (found, prev) = mm.findVMAPrev(start)
        if let v = found, start > v.vmStart { prev = v }
        var unmappedError: Errno? = nil
        var rangeStart = start
        var vma = found
        while true {
            guard let v = vma else { return .ENOMEM }
            if rangeStart < v.vmStart {
                unmappedError = .ENOMEM
                rangeStart = v.vmStart
                if rangeStart >= lastEnd { break }
            }
            var rangeEnd = min(v.vmEnd, lastEnd)
            var after = v
            if let e = madviseVMABehavior(task, v, &prev, rangeStart, rangeEnd, advice, result: &after) {
                return e
            }
            prev = after
            if rangeEnd < after.vmEnd { rangeEnd = after.vmEnd }
            if rangeEnd >= lastEnd { break }
            vma = mm.findVMA(after.vmEnd)
            rangeStart = rangeEnd
        }
        return unmappedError
    }

    /// madvise_vma_behavior(): one VMA's share of the range. `result` is the VMA now
    /// covering the range (after a split or merge).
    func madviseVMABehavior(_ task: TaskStruct, _ vma: VMA, _ prev: inout VMA?, _ start: VirtAddr, _ end: VirtAddr,
                            _ advice: MAdvice, result: inout VMA) -> Errno? {
        let mm = task.mm
        var newFlags = vma.vmFlags
        if !canMadviseModify(task, vma, advice) { return .EPERM }
        switch advice {
        case .remove:
            if vma.vmFlags.contains(.locked) { return .EINVAL }
            guard vma.vmFile != nil else { return .EINVAL }
            if !vma.vmFlags.contains(.shared) || !vma.vmFlags.contains(.mayWrite) { return .EACCES }
            glueZap(mm, vma, start, end, keepMarkers: true)
            return nil
        case .willNeed:
            return nil
        case .cold, .pageOut:
            if !vma.vmFlags.isDisjoint(with: [.locked, .pfnMap, .hugeTLB]) { return .EINVAL }
            return nil
        case .free, .dontNeed, .dontNeedLocked:
            var forbidden: VMFlags = .pfnMap
            if advice != .dontNeedLocked { forbidden.insert(.locked) }
            if !vma.vmFlags.isDisjoint(with: forbidden) { return .EINVAL }
            if start == end { return nil }
            if advice == .free {
                // MADV_FREE: anonymous only; pages become lazily freeable. Without memory
                // pressure they are kept (the model does not reclaim them early).
                if !vma.isAnonymous { return .EINVAL }
                return nil
            }
            glueZap(mm, vma, start, end, keepMarkers: true)
            return nil
        case .collapse:
            // __thp_vma_allowable_orders(): outside smaps and the fault path an anonymous
            // VMA without an anon_vma (never faulted) is not eligible.
            if vma.isAnonymous && vma.anonVMA == nil { return .EINVAL }
            if !thpVMAAllowable(vma, forcedCollapse: true) { return .EINVAL }
            // madvise_collapse() compares thps with (hend - hstart) >> 21 in unsigned
            // arithmetic: a range inside one 2 MiB block that does not start on its
            // boundary (hend < hstart) fails with SCAN_FAIL = EINVAL.
            let hstart = (start.rawValue &+ pmdMask) & ~pmdMask
            let hend = end.rawValue & ~pmdMask
            if hend < hstart { return .EINVAL }
            if hend == hstart { return nil }
            return glueCollapse(mm, vma, start, end)
        case .guardInstall:
            // madvise_guard_install(): the whole VMA gets VM_MAYBE_GUARD (no split), an
            // anonymous one an anon_vma, then the range's entries become guard markers.
            if !vma.vmFlags.isDisjoint(with: VMFlags.special.union([.hugeTLB, .locked])) { return .EINVAL }
            vma.vmFlags.insert(.maybeGuard)
            if vma.isAnonymous { anonVMAPrepare(vma, in: mm) }
            return glueInstallGuards(mm, vma, start, end)
        case .guardRemove:
            // Removing guards from a locked VMA is fine (nothing is discarded).
            if !vma.vmFlags.isDisjoint(with: VMFlags.special.union(.hugeTLB)) { return .EINVAL }
            glueRemoveGuards(mm, vma, start, end)
            return nil
        case .normal:
            newFlags.subtract([.randRead, .seqRead])
        case .sequential:
            newFlags.remove(.randRead)
            newFlags.insert(.seqRead)
        case .random:
            newFlags.remove(.seqRead)
            newFlags.insert(.randRead)
        case .dontFork:
            newFlags.insert(.dontCopy)
        case .doFork:
            if newFlags.contains(.io) { return .EINVAL }
            newFlags.remove(.dontCopy)
        case .wipeOnFork:
            if vma.vmFile != nil || newFlags.contains(.shared) { return .EINVAL }
            newFlags.insert(.wipeOnFork)
        case .keepOnFork:
            if newFlags.contains(.droppable) { return .EINVAL }
            newFlags.remove(.wipeOnFork)
        case .dontDump:
            newFlags.insert(.dontDump)
        case .doDump:
            if !newFlags.isDisjoint(with: .special) || newFlags.contains(.droppable) { return .EINVAL }
            newFlags.remove(.dontDump)
        case .mergeable:
            if !vma.vmFlags.contains(.mergeable) && vmaKSMCompatible(vma) { newFlags.insert(.mergeable) }
        case .unmergeable:
            // ksm_madvise(): break the range's KSM pages first (mktme/KSM.swift).
            if vma.vmFlags.contains(.mergeable), let e = ksmUnmergePages(mm, vma, start, end) { return e }
            newFlags.remove(.mergeable)
        case .hugePage:
            newFlags.remove(.noHugePage)
            newFlags.insert(.hugePage)
        case .noHugePage:
            newFlags.remove(.hugePage)
            newFlags.insert(.noHugePage)
        default:
            return .EINVAL
        }
        // madvise_update_vma()
        if newFlags == vma.vmFlags {
            result = vma
            return nil
        }
        switch vmaModifyFlags(mm, prev: prev, vma, start, end, newFlags) {
        case .failure(let e):
            return e == .ENOMEM ? .EAGAIN : e
        case .success(let v):
            v.vmFlags = newFlags.union(v.vmFlags.intersection(.sticky))   // a merge's sticky flags stay
            result = v
            return nil
        }
    }

    /// can_madvise_modify(): a sealed VMA refuses the advice that discards data (FREE,
    /// DONTNEED, DONTNEED_LOCKED, REMOVE, DONTFORK, WIPEONFORK, GUARD_INSTALL) when it is
    /// anonymous and the process could not write it anyway (no VM_WRITE, or its pkey denies
    /// writes).
    func canMadviseModify(_ task: TaskStruct, _ vma: VMA, _ advice: MAdvice) -> Bool {
        guard vma.vmFlags.contains(.sealed) else { return true }
        switch advice {
        case .free, .dontNeed, .dontNeedLocked, .remove, .dontFork, .wipeOnFork, .guardInstall: break
        default: return true
        }
        if !vma.isAnonymous { return true }
        return vma.vmFlags.contains(.write) && accessError(pkru: task.pkru, vma, .write) == nil
    }

    /// vma_ksm_compatible().
    func vmaKSMCompatible(_ vma: VMA) -> Bool {
        vma.vmFlags.isDisjoint(with: [.shared, .mayShare, .pfnMap, .io, .dontExpand, .hugeTLB, .mixedMap, .droppable])
    }

    /// madvise_populate(): fault in page by page; ENOMEM for a hole, EINVAL for a VMA the
    /// access is not allowed on, EFAULT when a fault raises a signal.
    func madvisePopulate(_ task: TaskStruct, _ start: VirtAddr, _ end: VirtAddr, write: Bool) -> Errno? {
        let mm = task.mm
        var a = start
        while a < end {
            guard let vma = mm.vma(containing: a) else { return .ENOMEM }
            if !gupCheckVMAFlags(task, vma, write: write) { return .EINVAL }
            let vend = min(end, vma.vmEnd)
            if write { gupPrepareAnon(task, vma, a, vend) }
            while a < vend {
                switch handleMMFault(task, a, write ? .write : .read) {
                case .ok: break
                case .oom: return .ENOMEM
                case .sigbus, .sigsegv: return .EFAULT
                }
                a = a.advanced(by: UInt64(pageSize))
            }
        }
        return nil
    }

    /// check_vma_flags() for get_user_pages without FOLL_FORCE (pkeys included).
    func gupCheckVMAFlags(_ task: TaskStruct, _ vma: VMA, write: Bool) -> Bool {
        let f = vma.vmFlags
        if !f.isDisjoint(with: [.io, .pfnMap]) { return false }
        if write {
            if !f.contains(.write) { return false }
        } else if !f.contains(.read) {
            return false
        }
        let bits = (task.pkru >> UInt32(2 * f.pkey)) & 3
        return write ? bits == 0 : bits & 1 == 0
    }

    // MARK: THP eligibility

    /// thp_vma_suitable_order() for a PMD page at the VMA's end (the size check smaps and
    /// MADV_COLLAPSE apply): the VMA contains an aligned 2 MiB block ending inside it.
    func thpVMASuitable(_ vma: VMA) -> Bool {
        if !vma.isAnonymous {
            let delta = vma.vmStart.pageNumber &- vma.vmPgoff
            if delta & UInt64(hpagePMDNr - 1) != 0 { return false }
        }
        guard vma.vmEnd.rawValue >= pmdSize else { return false }
        let haddr = (vma.vmEnd.rawValue - pmdSize) & ~pmdMask
        return haddr >= vma.vmStart.rawValue && haddr &+ pmdSize <= vma.vmEnd.rawValue
    }

    /// thp_vma_allowable_order() for anonymous VMAs: smaps' THPeligible, or with
    /// `forcedCollapse` MADV_COLLAPSE (which ignores the sysfs mode).
    func thpVMAAllowable(_ vma: VMA, forcedCollapse: Bool) -> Bool {
        guard vma.isAnonymous else { return false }
        let f = vma.vmFlags
        if !forcedCollapse {
            switch config.thp {
            case .never: return false
            case .madvise: if !f.contains(.hugePage) { return false }
            case .always: break
            }
        }
        if f.contains(.noHugePage) { return false }
        if !f.isDisjoint(with: [.pfnMap, .mixedMap, .hugeTLB]) { return false }
        return thpVMASuitable(vma)
    }
}
