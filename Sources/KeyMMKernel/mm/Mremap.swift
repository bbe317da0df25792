// mremap(2) (mm/mremap.c, 6.18): parameter checks, shrink in place, grow in place
// (vma_merge_extend), move (copy_vma + move_page_tables + unmapping the source), MREMAP_FIXED
// (unmap the target first), MREMAP_DONTUNMAP (keep the source, now empty, unlocked and
// unlinked from its anon_vma), and 6.17's multi-VMA move for equal-length fixed moves.
//
// Invariants: a moved anonymous VMA keeps its vm_pgoff when it has an anon_vma (so its
// pages' rmap indices stay valid) and takes the new address's pgoff when unfaulted; the
// source's VM_ACCOUNT charge moves with it; total_vm and locked_vm follow the sizes.
import KeyMMBase

/// struct vma_remap_struct.
struct VMARemap {
    enum Kind { case invalid, noResize, shrink, expand }
    var addr: VirtAddr
    var oldLen: UInt64
    var newLen: UInt64
    var flags: MremapFlags
    var newAddr: VirtAddr
    var delta: UInt64 = 0
    var kind: Kind = .invalid
    var vma: VMA?
    var populateExpand = false
    var charged: UInt64 = 0

    var impliesNewAddr: Bool { !flags.isDisjoint(with: [.fixed, .dontUnmap]) }
    var willMapNew: Bool { kind == .expand || impliesNewAddr }
    var moveOnly: Bool { flags.contains(.fixed) && oldLen == newLen }
    var overlaps: Bool {
        let oe = addr.rawValue &+ oldLen, ne = newAddr.rawValue &+ newLen
        return oe > newAddr.rawValue && ne > addr.rawValue
    }
}

extension Kernel {
    /// mremap(2).
    public func mremap(_ pid: ProcessID, oldAddr: VirtAddr, oldLength: UInt64, newLength: UInt64,
                       flags: MremapFlags, newAddr: VirtAddr = VirtAddr(0)) -> Result<VirtAddr, Errno> {
        machine.clock.charge(.syscall)
        guard let task = tasks[pid] else { return .failure(.ESRCH) }
        var vrm = VMARemap(addr: oldAddr, oldLen: pageAlignUp(oldLength) ?? 0,
                           newLen: pageAlignUp(newLength) ?? 0, flags: flags, newAddr: newAddr)
        if let e = checkMremapParams(vrm) { return .failure(e) }
        let r: Result<VirtAddr, Errno>
        if vrm.moveOnly {
            r = remapMove(task, &vrm)
        } else {
            vrm.vma = task.mm.vma(containing: vrm.addr)
            if let e = checkPrepVMA(task, &vrm) {
                r = .failure(e)
            } else {
                r = vrm.impliesNewAddr ? mremapTo(task, &vrm) : mremapAt(task, &vrm)
            }
        }
        if case .success = r, vrm.populateExpand {
            mmPopulate(task, vrm.newAddr.advanced(by: vrm.oldLen), vrm.delta, ignoreErrors: true)
        }
        return r
    }

    /// check_mremap_params().
    func checkMremapParams(_ vrm: VMARemap) -> Errno? {
        if !vrm.flags.subtracting([.fixed, .mayMove, .dontUnmap]).isEmpty { return .EINVAL }
        if !vrm.addr.isPageAligned { return .EINVAL }
        if vrm.newLen == 0 { return .EINVAL }
        if vrm.newLen > taskSize { return .EINVAL }
        if !vrm.impliesNewAddr { return nil }
        if vrm.newAddr.rawValue > taskSize - vrm.newLen { return .EINVAL }
        if !vrm.newAddr.isPageAligned { return .EINVAL }
        if !vrm.flags.contains(.mayMove) { return .EINVAL }
        if vrm.flags.contains(.dontUnmap) && vrm.oldLen != vrm.newLen { return .EINVAL }
        if vrm.overlaps { return .EINVAL }
        return nil
    }

    /// check_prep_vma(): per-VMA checks and the remap kind.
    func checkPrepVMA(_ task: TaskStruct, _ vrm: inout VMARemap) -> Errno? {
        guard let vma = vrm.vma else { return .EFAULT }
        if vma.vmFlags.contains(.sealed) { return .EPERM }   // mm/Mseal.swift
        vrm.delta = vrm.oldLen > vrm.newLen ? vrm.oldLen - vrm.newLen : vrm.newLen - vrm.oldLen
        vrm.kind = vrm.delta == 0 ? .noResize : (vrm.oldLen > vrm.newLen ? .shrink : .expand)
        if !vrm.impliesNewAddr { vrm.newAddr = vrm.addr }
        if !vrm.willMapNew { return nil }
        var oldLen = vrm.oldLen
        let newLen = vrm.newLen
        if oldLen == 0 && vma.vmFlags.isDisjoint(with: [.shared, .mayShare]) { return .EINVAL }
        if vrm.flags.contains(.dontUnmap) && !vma.vmFlags.isDisjoint(with: [.dontExpand, .pfnMap]) { return .EINVAL }
        if vrm.kind == .shrink { oldLen = newLen }
        if oldLen > vma.vmEnd.distance(from: vrm.addr) { return .EFAULT }
        if newLen == oldLen { return nil }
        if vma.vmFlags.contains(.locked) { vrm.populateExpand = true }
        let pgoff = vma.pageIndex(of: vrm.addr)
        if pgoff &+ (newLen >> pageShift) < pgoff { return .EINVAL }
        if !vma.vmFlags.isDisjoint(with: [.dontExpand, .pfnMap]) { return .EFAULT }
        if !mlockFutureOK(task, vma.vmFlags.intersection(.locked), vrm.delta) { return .EAGAIN }
        return nil
    }

    /// mremap_at(): resize without a required new address.
    func mremapAt(_ task: TaskStruct, _ vrm: inout VMARemap) -> Result<VirtAddr, Errno> {
        switch vrm.kind {
        case .invalid:
            return .failure(.EINVAL)
        case .noResize:
            return .success(vrm.addr)
        case .shrink:
            if case .failure(let e) = doMunmap(task.mm, vrm.addr.advanced(by: vrm.newLen), vrm.delta) {
                return .failure(e)
            }
            return .success(vrm.addr)
        case .expand:
            return expandVMA(task, &vrm)
        }
    }

    /// expand_vma(): grow in place when the range reaches the VMA's end and the space after
    /// it is free, else move (MREMAP_MAYMOVE) or ENOMEM.
    func expandVMA(_ task: TaskStruct, _ vrm: inout VMARemap) -> Result<VirtAddr, Errno> {
        let mm = task.mm
        guard let vma = vrm.vma else { return .failure(.EFAULT) }
        if vma.vmEnd.distance(from: vrm.addr) == vrm.oldLen && vmaExpandable(mm, vma, vrm.delta) {
            if vma.vmFlags.contains(.account) {
                if !vmEnoughMemory(vrm.delta >> pageShift) { return .failure(.ENOMEM) }
            }
            guard let merged = vmaMergeExtend(mm, vma, delta: vrm.delta) else { return .failure(.ENOMEM) }
            if vma.vmFlags.contains(.account) { mm.committedPages &+= vrm.delta >> pageShift }
            vrm.vma = merged
            remapStatAccount(mm, merged, vrm.delta)
            return .success(vrm.addr)
        }
        if !vrm.flags.contains(.mayMove) { return .failure(.ENOMEM) }
        if let e = remapSetNewAddr(mm, &vrm) { return .failure(e) }
        return moveVMA(task, &vrm)
    }

    /// vma_expandable(): nothing in [vm_end, vm_end + delta) and it is below TASK_SIZE.
    func vmaExpandable(_ mm: MM, _ vma: VMA, _ delta: UInt64) -> Bool {
        let (end, o) = vma.vmEnd.rawValue.addingReportingOverflow(delta)
        if o { return false }
        if firstIntersecting(mm, vma.vmEnd, VirtAddr(end)) != nil { return false }
        let len = end - vma.vmStart.rawValue
        if len > taskSize || vma.vmStart.rawValue > taskSize - len { return false }
        return true
    }

    /// mremap_to(): move to a required address (FIXED) or a chosen one (DONTUNMAP).
    func mremapTo(_ task: TaskStruct, _ vrm: inout VMARemap) -> Result<VirtAddr, Errno> {
        let mm = task.mm
        if vrm.flags.contains(.fixed) {
            if case .failure(let e) = doMunmap(mm, vrm.newAddr, vrm.newLen) { return .failure(e) }
            vrm.vma = mm.vma(containing: vrm.addr)
            if vrm.vma == nil { return .failure(.EFAULT) }
        }
        if vrm.kind == .shrink {
            if case .failure(let e) = doMunmap(mm, vrm.addr.advanced(by: vrm.newLen), vrm.delta) {
                return .failure(e)
            }
            vrm.vma = mm.vma(containing: vrm.addr)
            if vrm.vma == nil { return .failure(.EFAULT) }
            vrm.oldLen = vrm.newLen
        }
        if let e = remapSetNewAddr(mm, &vrm) { return .failure(e) }
        return moveVMA(task, &vrm)
    }

    /// vrm_set_new_addr(): get_unmapped_area for the target (MAP_FIXED, or a hint).
    func remapSetNewAddr(_ mm: MM, _ vrm: inout VMARemap) -> Errno? {
        guard let vma = vrm.vma else { return .EFAULT }
        var mapFlags: MapFlags = []
        if vrm.flags.contains(.fixed) { mapFlags.insert(.fixed) }
        if vma.vmFlags.contains(.mayShare) { mapFlags.insert(.shared) }
        let hint = vrm.impliesNewAddr ? vrm.newAddr : VirtAddr(0)
        switch getUnmappedArea(mm, vma.vmFile, hint, vrm.newLen, vma.pageIndex(of: vrm.addr), mapFlags, vma.vmFlags) {
        case .failure(let e): return e
        case .success(let a): vrm.newAddr = a
        }
        return nil
    }

    /// move_vma(): copy the VMA to vrm.newAddr, move its page tables, then unmap the source
    /// (or, with MREMAP_DONTUNMAP, leave it empty).
    func moveVMA(_ task: TaskStruct, _ vrm: inout VMARemap) -> Result<VirtAddr, Errno> {
        let mm = task.mm
        guard var vma = vrm.vma else { return .failure(.EFAULT) }
        // prep_move_vma(): room for two more VMAs, and the driver's may_split.
        if mm.mapCount >= config.maxMapCount - 3 { return .failure(.ENOMEM) }
        if let ops = vma.vmOps {
            if vma.vmStart != vrm.addr, let e = ops.maySplit(vma, at: vrm.addr) { return .failure(e) }
            let oldEnd = vrm.addr.advanced(by: vrm.oldLen)
            if vma.vmEnd != oldEnd, let e = ops.maySplit(vma, at: oldEnd) { return .failure(e) }
        }
        // vrm_calc_charge()
        let accounted = vma.vmFlags.contains(.account)
        if accounted {
            let charged = vrm.flags.contains(.dontUnmap) ? vrm.newLen >> pageShift : vrm.delta >> pageShift
            if !vmEnoughMemory(charged) { return .failure(.ENOMEM) }
            vrm.charged = charged
            mm.committedPages &+= charged
        }
        // copy_vma_and_data()
        let newPgoff = vma.pageIndex(of: vrm.addr)
        let oldStart = vma.vmStart, oldEnd = vma.vmEnd
        guard let newVMA = copyVMA(mm, &vma, to: vrm.newAddr, length: vrm.newLen, pgoff: newPgoff) else {
            if accounted { mm.committedPages &-= vrm.charged }
            return .failure(.ENOMEM)
        }
        vrm.vma = vma
        glueMovePageTables(mm, from: vma, oldStart: vrm.addr, to: newVMA, newStart: vrm.newAddr, length: vrm.oldLen)
        remapStatAccount(mm, vma, vrm.newLen)
        if vrm.flags.contains(.dontUnmap) {
            // dontunmap_complete()
            vma.vmFlags.subtract(VMFlags.lockedMask)
            if newVMA !== vma && vrm.addr == oldStart && vrm.addr.advanced(by: vrm.oldLen) == oldEnd {
                unlinkAnonVMAs(vma)
            }
        } else {
            unmapSourceVMA(mm, vrm)
        }
        return .success(vrm.newAddr)
    }

    /// vrm_stat_account().
    func remapStatAccount(_ mm: MM, _ vma: VMA, _ bytes: UInt64) {
        let pages = bytes >> pageShift
        vmStatAccount(mm, vma.vmFlags, Int64(pages))
        if vma.vmFlags.contains(.locked) { mm.lockedVM &+= pages }
    }

    /// unmap_source_vma(): unmap the old range without uncharging what moved.
    func unmapSourceVMA(_ mm: MM, _ vrm: VMARemap) {
        guard let vma = vrm.vma else { return }
        let accountable = vma.vmFlags.contains(.account) && !vrm.flags.contains(.dontUnmap)
        let vmStart = vma.vmStart, vmEnd = vma.vmEnd
        if accountable { vma.vmFlags.remove(.account) }
        if case .failure = doMunmap(mm, vrm.addr, vrm.oldLen) { return }
        if accountable {
            let end = vrm.addr.advanced(by: vrm.oldLen)
            if vmStart < vrm.addr, let prev = mm.findVMAPrev(vrm.addr).prev { prev.vmFlags.insert(.account) }
            if vmEnd > end, let next = mm.findVMA(vrm.addr) { next.vmFlags.insert(.account) }
        }
    }

    /// remap_move(): an equal-length MREMAP_FIXED move may span several VMAs; each moves to
    /// the same offset in the target, gaps included. The start must be mapped.
    func remapMove(_ task: TaskStruct, _ vrm: inout VMARemap) -> Result<VirtAddr, Errno> {
        let mm = task.mm
        let start = vrm.addr
        let end = vrm.addr.advanced(by: vrm.oldLen)
        var target = vrm.newAddr
        var res: Result<VirtAddr, Errno> = .failure(.EFAULT)
        var seen = false
        var lastEnd = VirtAddr(0)
        var cursor = start
        while cursor < end, let vma = firstIntersecting(mm, cursor, end) {
            let a = max(vma.vmStart, start)
            let len = min(end, vma.vmEnd).distance(from: a)
            if !seen && start < vma.vmStart { return .failure(.EFAULT) }
            let offset = seen ? vma.vmStart.distance(from: lastEnd) : 0
            lastEnd = vma.vmEnd
            // The walk resumes after the VMA as it was found (vma_iter_invalidate + pause).
            cursor = vma.vmEnd
            var sub = VMARemap(addr: a, oldLen: len, newLen: len, flags: vrm.flags,
                               newAddr: target.advanced(by: offset))
            sub.vma = vma
            let r: Result<VirtAddr, Errno>
            if let e = checkPrepVMA(task, &sub) {
                r = .failure(e)
            } else {
                r = mremapTo(task, &sub)
            }
            guard case .success(let got) = r else { return r }
            if !seen { res = .success(got) }
            seen = true
            target = got.advanced(by: len)
        }
        return res
    }
}
