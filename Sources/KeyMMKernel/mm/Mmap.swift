// mmap(2) and munmap(2): do_mmap's argument checks and VMA flags, mmap_region (unmap what
// the range covers, merge with neighbours or insert a new VMA, accounting), shared anonymous
// memory as a shmem "/dev/zero (deleted)" file, and do_vmi_munmap (split the edge VMAs,
// detach, zap, free).
//
// Invariants: a successful mmap leaves exactly [addr, addr+len) mapped with the new
// properties; a failed one leaves earlier splits in place (as the kernel does) but removes
// nothing; total_vm/locked_vm/data_vm/exec_vm/stack_vm follow every mapping change.
import KeyMMBase

/// TASK_SIZE (4-level paging).
let taskSize: UInt64 = userAddressLimit
/// stack_guard_gap: 256 pages.
let stackGuardGap: UInt64 = 256 << pageShift

extension Kernel {
    /// mmap(2).
    public func mmap(_ pid: ProcessID, addr: VirtAddr, length: UInt64, prot: Prot, flags: MapFlags,
                     fd: Int32 = -1, offset: UInt64 = 0) -> Result<VirtAddr, Errno> {
        machine.clock.charge(.syscall)
        guard let task = tasks[pid] else { return .failure(.ESRCH) }
        return mmap(task, addr: addr, length: length, prot: prot, flags: flags, fd: fd, offset: offset)
    }

    /// mmap(2) for a task (ksys_mmap_pgoff + vm_mmap_pgoff + do_mmap + mm_populate).
    public func mmap(_ task: TaskStruct, addr: VirtAddr, length: UInt64, prot: Prot, flags: MapFlags,
                     fd: Int32 = -1, offset: UInt64 = 0) -> Result<VirtAddr, Errno> {
        if offset & UInt64(pageSize - 1) != 0 { return .failure(.EINVAL) }
        var open: FileTable.OpenFile? = nil
        if !flags.contains(.anonymous) {
            guard let of = task.files.fds[fd] else { return .failure(.EBADF) }
            if flags.contains(.hugeTLB) { return .failure(.EINVAL) }
            open = of
        } else if flags.contains(.hugeTLB) {
            // No hugetlb pages are reserved in the model (HugePages_Total = 0).
            return .failure(.ENOMEM)
        }
        var populateLen: UInt64 = 0
        let r = doMmap(task, open, addr: addr, length: length, prot: prot, flags: flags,
                       pgoff: offset >> pageShift, populate: &populateLen)
        if case .success(let a) = r, populateLen > 0 {
            mmPopulate(task, a, populateLen, ignoreErrors: true)
        }
        return r
    }

    /// do_mmap().
    func doMmap(_ task: TaskStruct, _ open: FileTable.OpenFile?, addr addrIn: VirtAddr, length: UInt64,
                prot: Prot, flags flagsIn: MapFlags, pgoff pgoffIn: UInt64,
                populate: inout UInt64) -> Result<VirtAddr, Errno> {
        let mm = task.mm
        var flags = flagsIn
        var pgoff = pgoffIn
        let file = open?.file
        if length == 0 { return .failure(.EINVAL) }
        if flags.contains(.fixedNoReplace) { flags.insert(.fixed) }
        var addr = addrIn.rawValue
        if !flags.contains(.fixed) {
            // round_hint_to_min()
            addr &= ~UInt64(pageSize - 1)
            if addr != 0 && addr < config.mmapMinAddr {
                addr = pageAlignUp(config.mmapMinAddr) ?? config.mmapMinAddr
            }
        }
        guard let len = pageAlignUp(length), len != 0 else { return .failure(.ENOMEM) }
        if pgoff &+ (len >> pageShift) < pgoff { return .failure(.EOVERFLOW) }
        if mm.mapCount > config.maxMapCount { return .failure(.ENOMEM) }

        var pkey = 0
        if prot == .exec {
            pkey = executeOnlyPkey(task)
            if pkey < 0 { pkey = 0 }
        }
        var vmFlags = calcVMProtBits(prot, pkey: pkey).union(calcVMFlagBits(flags))
        vmFlags.formUnion(mm.defFlags)
        vmFlags.formUnion([.mayRead, .mayWrite, .mayExec])

        let got = getUnmappedArea(mm, file, VirtAddr(addr), len, pgoff, flags, vmFlags)
        guard case .success(let where_) = got else { return got }
        if let e = securityMmapAddr(task, where_) { return .failure(e) }
        addr = where_.rawValue

        if flagsIn.contains(.fixedNoReplace), firstIntersecting(mm, VirtAddr(addr), VirtAddr(addr &+ len)) != nil {
            return .failure(.EEXIST)
        }
        if flags.contains(.locked), !canDoMlock(task) { return .failure(.EPERM) }
        if !mlockFutureOK(task, vmFlags, len) { return .failure(.EAGAIN) }

        if let of = open, let file {
            // file_mmap_ok(): regular files allow offsets up to MAX_LFS_FILESIZE.
            let maxSize = UInt64(Int64.max)
            if len > maxSize || pgoff > (maxSize - len) >> pageShift { return .failure(.EOVERFLOW) }
            switch flags.mapType {
            case MapFlags.shared.rawValue, MapFlags.sharedValidate.rawValue:
                if flags.mapType == MapFlags.shared.rawValue {
                    flags = flags.intersection(MapFlags.legacyMask)
                }
                if !flags.subtracting(MapFlags.legacyMask).isEmpty { return .failure(.EOPNOTSUPP) }
                if prot.contains(.write), !of.writable { return .failure(.EACCES) }
                vmFlags.formUnion([.shared, .mayShare])
                if !of.writable { vmFlags.subtract([.mayWrite, .shared]) }
                fallthrough
            case MapFlags.private.rawValue:
                if !of.readable { return .failure(.EACCES) }
                if vmFlags.contains(.growsDown) { return .failure(.EINVAL) }
            default:
                return .failure(.EINVAL)
            }
            _ = file
        } else {
            switch flags.mapType {
            case MapFlags.shared.rawValue:
                if vmFlags.contains(.growsDown) { return .failure(.EINVAL) }
                pgoff = 0
                vmFlags.formUnion([.shared, .mayShare])
            case MapFlags.droppable.rawValue:
                if !flags.isDisjoint(with: [.locked, .hugeTLB]) { return .failure(.EINVAL) }
                if vmFlags.contains(.growsDown) { return .failure(.EINVAL) }
                vmFlags.formUnion([.noReserve, .wipeOnFork, .dontDump])
                vmFlags.insert(VMFlags.droppable)
                pgoff = addr >> pageShift
            case MapFlags.private.rawValue:
                pgoff = addr >> pageShift
            default:
                return .failure(.EINVAL)
            }
        }
        if flags.contains(.noReserve), !config.overcommitNever { vmFlags.insert(.noReserve) }

        let r = mmapRegion(task, file, VirtAddr(addr), len, vmFlags, pgoff,
                           keyid: anonKeyID(file: file, flags: vmFlags), openID: open?.openID ?? 0)   // encrypt-anon (mktme/EncryptAnon.swift)
        if case .success = r, vmFlags.contains(.locked) || flags.intersection([.populate, .nonBlock]) == .populate {
            populate = len
        }
        return r
    }

    /// calc_vm_prot_bits(): PROT_* to VM_READ/WRITE/EXEC plus the pkey bits.
    func calcVMProtBits(_ prot: Prot, pkey: Int) -> VMFlags {
        VMFlags(prot: prot).with(pkey: pkey)
    }

    /// calc_vm_flag_bits(): MAP_GROWSDOWN, MAP_LOCKED, MAP_SYNC, MAP_STACK (VM_NOHUGEPAGE).
    func calcVMFlagBits(_ flags: MapFlags) -> VMFlags {
        var f: VMFlags = []
        if flags.contains(.growsDown) { f.insert(.growsDown) }
        if flags.contains(.locked) { f.insert(.locked) }
        if flags.contains(.sync) { f.insert(.sync) }
        if flags.contains(.stack) { f.insert(.noHugePage) }
        return f
    }

    /// accountable_mapping(): private writable mappings without MAP_NORESERVE are committed.
    func accountableMapping(_ flags: VMFlags) -> Bool {
        flags.intersection([.noReserve, .shared, .write]) == .write
    }

    /// security_vm_enough_memory_mm() under OVERCOMMIT_GUESS: fail only beyond all memory.
    func vmEnoughMemory(_ pages: UInt64) -> Bool {
        let limit = config.overcommitPages != 0 ? config.overcommitPages : UInt64(machine.frameCount)
        return pages <= limit
    }

    /// The first VMA intersecting [start, end) (find_vma_intersection / vma_find).
    func firstIntersecting(_ mm: MM, _ start: VirtAddr, _ end: VirtAddr) -> VMA? {
        guard let v = mm.findVMA(start), v.vmStart < end else { return nil }
        return v
    }

    // MARK: mmap_region

    /// mmap_region(): map [addr, addr+len) with `vmFlags`, replacing what is there.
    func mmapRegion(_ task: TaskStruct, _ file: MappedFile?, _ addr: VirtAddr, _ len: UInt64,
                    _ vmFlagsIn: VMFlags, _ pgoff: UInt64, keyid: KeyID = .tme,
                    openID: UInt64 = 0) -> Result<VirtAddr, Errno> {
        let mm = task.mm
        var vmFlags = vmFlagsIn
        let end = addr.advanced(by: len)
        let pglen = len >> pageShift
        // A device's ->mmap checks (mm/CharDevice.swift), before anything of the range changes.
        if let dev = file?.charDevice,
           let e = dev.mmapCheck(self, task, openID: openID, start: addr, end: end, flags: vmFlags) {
            return .failure(e)
        }

        // __mmap_prepare: split and gather what the range covers.
        var detached: [VMA] = []
        if let first = firstIntersecting(mm, addr, end) {
            switch gatherMunmapVMAs(mm, first, addr, end) {
            case .failure(let e): return .failure(e)
            case .success(let list): detached = list
            }
        }
        var nrAccounted: UInt64 = 0
        for v in detached where v.vmFlags.contains(.account) { nrAccounted &+= v.pages }
        if accountableMapping(vmFlags) {
            let charged = pglen > nrAccounted ? pglen - nrAccounted : 0
            if charged > 0, !vmEnoughMemory(charged) { return .failure(.ENOMEM) }
            mm.committedPages &+= charged
            vmFlags.insert(.account)
        }
        // The old mappings go: zap, close, unlink, account.
        if !detached.isEmpty { completeMunmap(mm, detached) }

        let (next, prev) = mm.findVMAPrev(addr)
        var vma: VMA? = nil
        if prev != nil || next != nil {
            var vmg = VMAMergeState(start: addr, end: end, flags: vmFlags, pgoff: pgoff, file: file, keyid: keyid)
            vmg.fileOpenID = openID
            vmg.prev = prev
            vmg.next = next
            vma = vmaMergeNewRange(mm, &vmg)
        }
        if vma == nil {
            let new = vmAreaAlloc(start: addr, end: end, pgoff: pgoff, flags: vmFlags, keyid: keyid, file: file)
            new.fileOpenID = openID
            fileDescriptionGet(openID)                   // mm/CharDevice.swift: vm_file's reference
            if file == nil && vmFlags.contains(.shared) {
                shmemZeroSetup(new, size: len)
            }
            if let dev = file?.charDevice, let e = dev.mmap(self, task, openID: openID, vma: new) {
                freeVMA(new, close: false)
                return .failure(e)
            }
            mm.vmas.insert(new)
            vma = new
        }
        guard let vma else { return .failure(.ENOMEM) }
        // __mmap_complete
        vmStatAccount(mm, vma.vmFlags, Int64(pglen))
        if vma.vmFlags.contains(.locked) {
            if !vma.vmFlags.isDisjoint(with: .special) {
                vma.vmFlags.subtract(VMFlags.lockedMask)
            } else {
                mm.lockedVM &+= pglen
            }
        }
        if config.softDirty { vma.vmFlags.insert(.softDirty) }
        vmaSetPageProt(vma)
        machine.clock.charge(.vmaOp)
        return .success(addr)
    }

    // MARK: munmap

    /// munmap(2).
    public func munmap(_ pid: ProcessID, addr: VirtAddr, length: UInt64) -> Result<Void, Errno> {
        machine.clock.charge(.syscall)
        guard let task = tasks[pid] else { return .failure(.ESRCH) }
        return doMunmap(task.mm, addr, length)
    }

    /// do_vmi_munmap().
    func doMunmap(_ mm: MM, _ start: VirtAddr, _ len: UInt64) -> Result<Void, Errno> {
        if !start.isPageAligned || start.rawValue > taskSize || len > taskSize - start.rawValue {
            return .failure(.EINVAL)
        }
        guard let alen = pageAlignUp(len), alen != 0 else { return .failure(.EINVAL) }
        let end = start.advanced(by: alen)
        guard let vma = firstIntersecting(mm, start, end) else { return .success(()) }
        switch gatherMunmapVMAs(mm, vma, start, end) {
        case .failure(let e): return .failure(e)
        case .success(let list): completeMunmap(mm, list)
        }
        return .success(())
    }

    /// vms_gather_munmap_vmas(): split the first and last VMA at the range edges and return
    /// the VMAs inside [start, end) (still in the tree). A split failure leaves earlier splits.
    func gatherMunmapVMAs(_ mm: MM, _ first: VMA, _ start: VirtAddr, _ end: VirtAddr) -> Result<[VMA], Errno> {
        if start > first.vmStart {
            // map_count may exceed the limit only transiently (one split, not two).
            if end < first.vmEnd && mm.mapCount >= config.maxMapCount { return .failure(.ENOMEM) }
            // A sealed VMA is not split when it cannot be unmapped anyway (mm/Mseal.swift).
            if first.vmFlags.contains(.sealed) { return .failure(.EPERM) }
            if let e = splitVMANoLimit(mm, first, at: start, newBelow: true) { return .failure(e) }
        }
        var list: [VMA] = []
        var cur: VMA? = first
        while let v = cur, v.vmStart < end {
            if v.vmFlags.contains(.sealed) { return .failure(.EPERM) }
            if v.vmEnd > end, let e = splitVMANoLimit(mm, v, at: end, newBelow: false) {
                return .failure(e)
            }
            list.append(v)
            cur = mm.next(of: v)
        }
        return .success(list)
    }

    /// vms_complete_munmap_vmas(): zap, detach, account and free the gathered VMAs.
    func completeMunmap(_ mm: MM, _ list: [VMA]) {
        var nrPages: UInt64 = 0, locked: UInt64 = 0, accounted: UInt64 = 0
        for v in list {
            glueZap(mm, v, v.vmStart, v.vmEnd)
            if v.vmFlags.contains(.locked) { locked &+= v.pages }
            if v.vmFlags.contains(.account) { accounted &+= v.pages }
            nrPages &+= v.pages
            vmStatAccount(mm, v.vmFlags, -Int64(v.pages))
        }
        for v in list { mm.vmas.remove(v) }
        mm.lockedVM = mm.lockedVM >= locked ? mm.lockedVM - locked : 0
        mm.committedPages = mm.committedPages >= accounted ? mm.committedPages - accounted : 0
        for v in list { freeVMA(v, mm: mm) }
        _ = nrPages
    }

    // MARK: get_unmapped_area

    /// __get_unmapped_area() with x86-64's top-down allocator, THP alignment of large
    /// anonymous mappings and the stack guard gap.
    func getUnmappedArea(_ mm: MM, _ file: MappedFile?, _ addr: VirtAddr, _ len: UInt64, _ pgoff: UInt64,
                         _ flags: MapFlags, _ vmFlags: VMFlags) -> Result<VirtAddr, Errno> {
        if len > taskSize { return .failure(.ENOMEM) }
        var r: Result<VirtAddr, Errno>
        if let dev = file?.charDevice, let got = dev.getUnmappedArea(self, mm, addr: addr, length: len, pgoff: pgoff, flags: flags) {
            r = got   // the driver's ->get_unmapped_area (mm/CharDevice.swift)
        } else if let f = file, !f.isShmem {
            // Regular files (ext4's f_op): thp_get_unmapped_area.
            r = thpGetUnmappedArea(mm, addr, len, off: pgoff << pageShift, flags)
        } else if file == nil && !flags.contains(.shared) && addr.rawValue == 0 && len & pmdMask == 0 {
            // Anonymous memory is treated as pgoff 0.
            r = thpGetUnmappedArea(mm, addr, len, off: 0, flags)
        } else {
            r = archGetUnmappedAreaTopdown(mm, addr, len, flags)
        }
        guard case .success(let a) = r else { return r }
        if a.rawValue > taskSize - len { return .failure(.ENOMEM) }
        if !a.isPageAligned { return .failure(.EINVAL) }
        return .success(a)
    }

    /// security_mmap_addr() (cap_mmap_addr): below mmap_min_addr needs CAP_SYS_RAWIO.
    func securityMmapAddr(_ task: TaskStruct, _ a: VirtAddr) -> Errno? {
        if a.rawValue < config.mmapMinAddr && !task.cred.capable(CapabilitySet(rawValue: 1 << 17)) {
            return .EPERM
        }
        return nil
    }

    /// thp_get_unmapped_area_vmflags(): when the mapping covers a 2 MiB-aligned stretch of
    /// its offsets, search len + 2 MiB (hint included) and align the result so offsets and
    /// addresses agree modulo 2 MiB; else (or if that fails) an ordinary search.
    func thpGetUnmappedArea(_ mm: MM, _ addr: VirtAddr, _ len: UInt64, off: UInt64, _ flags: MapFlags) -> Result<VirtAddr, Errno> {
        let offEnd = off &+ len
        let offAlign = (off &+ pmdMask) & ~pmdMask
        if offEnd > offAlign && offEnd - offAlign >= pmdSize {
            let padded = len &+ pmdSize
            if padded > len, off &+ padded > off,
               case .success(let ret) = archGetUnmappedAreaTopdown(mm, addr, padded, flags) {
                if ret == addr { return .success(addr) }
                let offSub = (off &- ret.rawValue) & pmdMask
                if offSub == 0 { return .success(ret.advanced(by: pmdSize)) }
                return .success(ret.advanced(by: offSub))
            }
        }
        return archGetUnmappedAreaTopdown(mm, addr, len, flags)
    }

    /// vm_start_gap(): a VM_GROWSDOWN VMA keeps stack_guard_gap free below it.
    @inline(__always) func vmStartGap(_ vma: VMA) -> UInt64 {
        let s = vma.vmStart.rawValue
        guard vma.vmFlags.contains(.growsDown) else { return s }
        return s > stackGuardGap ? s - stackGuardGap : 0
    }

    /// arch_get_unmapped_area_topdown() (x86-64).
    func archGetUnmappedAreaTopdown(_ mm: MM, _ addr: VirtAddr, _ len: UInt64, _ flags: MapFlags) -> Result<VirtAddr, Errno> {
        if len > taskSize { return .failure(.ENOMEM) }
        if flags.contains(.fixed) { return .success(addr) }
        var a = addr.rawValue
        if a != 0 {
            a &= ~UInt64(pageSize - 1)
            if taskSize - len >= a {
                let vma = mm.findVMA(VirtAddr(a))
                if vma == nil || a &+ len <= vmStartGap(vma!) { return .success(VirtAddr(a)) }
            }
        }
        if let g = unmappedAreaTopdown(mm, length: len, low: UInt64(pageSize), high: mm.mmapBase.rawValue) {
            return .success(VirtAddr(g))
        }
        // Fall back to bottom-up from TASK_UNMAPPED_BASE.
        let legacyBase = (taskSize / 3) & ~UInt64(pageSize - 1)
        if let g = unmappedAreaBottomUp(mm, length: len, low: legacyBase, high: taskSize) {
            return .success(VirtAddr(g))
        }
        return .failure(.ENOMEM)
    }

    /// unmapped_area_topdown(): the highest gap of `length` bytes in [low, high).
    func unmappedAreaTopdown(_ mm: MM, length: UInt64, low lowIn: UInt64, high highIn: UInt64) -> UInt64? {
        let low = max(lowIn, config.mmapMinAddr)
        var high = highIn
        while true {
            guard high > low, high - low >= length else { return nil }
            // Walk the gaps from the top of [low, high) down.
            var upper = high
            var found: UInt64? = nil
            var c = mm.vmas.floorCursor(high &- 1)
            while true {
                let floor = max(c.vma?.vmEnd.rawValue ?? 0, low)
                if upper > floor && upper - floor >= length { found = upper; break }
                guard let v = c.vma else { break }
                upper = min(upper, v.vmStart.rawValue)
                if upper <= low { break }
                c = c.previous()
            }
            guard let gapEnd = found else { return nil }
            let gap = gapEnd - length
            // The VMA just above the gap: keep its stack guard gap free.
            if let above = mm.findVMA(VirtAddr(gapEnd)), above.vmFlags.contains(.growsDown),
               vmStartGap(above) < gapEnd {
                high = vmStartGap(above)
                continue
            }
            return gap
        }
    }

    /// unmapped_area(): the lowest gap of `length` bytes in [low, high).
    func unmappedAreaBottomUp(_ mm: MM, length: UInt64, low lowIn: UInt64, high: UInt64) -> UInt64? {
        var low = max(lowIn, config.mmapMinAddr)
        while true {
            guard high > low, high - low >= length else { return nil }
            var lower = low
            var found: UInt64? = nil
            var c = mm.vmas.cursor(findVMA: VirtAddr(low))
            while true {
                let ceiling = min(c.vma.map { vmStartGap($0) } ?? high, high)
                if ceiling > lower && ceiling - lower >= length { found = lower; break }
                guard let v = c.vma else { break }
                lower = max(lower, v.vmEnd.rawValue)
                if lower >= high { break }
                c = c.next()
            }
            guard let g = found else { return nil }
            if let below = mm.findVMAPrev(VirtAddr(g)).prev, below.vmEnd.rawValue > g {
                low = below.vmEnd.rawValue
                continue
            }
            return g
        }
    }
}
