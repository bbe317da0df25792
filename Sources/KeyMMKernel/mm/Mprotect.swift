// mprotect(2) and pkey_mprotect(2) (mm/mprotect.c do_mprotect_pkey + mprotect_fixup): the
// argument checks and their order, the per-VMA walk that stops at the first hole (ENOMEM)
// after changing the VMAs before it, VM_MAY* permission checks (EACCES), vm_ops->mprotect
// vetoes, VM_ACCOUNT charging when a private mapping becomes writable, and the early return
// when nothing changes. The KeyID is part of the VMA's identity (MKTME): a change of KeyID
// alone is not a no-op and pgprot_modify keeps KeyID bits otherwise.
//
// Invariants: VMAs outside [start, end) keep their flags; VMA flags and vm_page_prot agree
// after every fixup; changeProtection (pgtable) rewrites PTE permissions only.
import KeyMMBase

extension Kernel {
    /// mprotect(2).
    public func mprotect(_ pid: ProcessID, addr: VirtAddr, length: UInt64, prot: Prot) -> Result<Void, Errno> {
        machine.clock.charge(.syscall)
        guard let task = tasks[pid] else { return .failure(.ESRCH) }
        return doMprotectPkey(task, addr, length, prot, pkey: -1)
    }

    /// pkey_mprotect(2).
    public func pkeyMprotect(_ pid: ProcessID, addr: VirtAddr, length: UInt64, prot: Prot, pkey: Int) -> Result<Void, Errno> {
        machine.clock.charge(.syscall)
        guard let task = tasks[pid] else { return .failure(.ESRCH) }
        return doMprotectPkey(task, addr, length, prot, pkey: pkey)
    }

    /// do_mprotect_pkey(); `pkey` -1 is plain mprotect. `keyid`, when given, is the KeyID the
    /// range gets (encrypt_mprotect builds on this).
    public func doMprotectPkey(_ task: TaskStruct, _ startIn: VirtAddr, _ len: UInt64, _ protIn: Prot,
                               pkey: Int, keyid: KeyID? = nil) -> Result<Void, Errno> {
        let mm = task.mm
        var start = startIn
        let grows = protIn.intersection([.growsDown, .growsUp])
        var prot = protIn.subtracting([.growsDown, .growsUp])
        if grows == [.growsDown, .growsUp] { return .failure(.EINVAL) }
        if !start.isPageAligned { return .failure(.EINVAL) }
        if len == 0 { return .success(()) }
        guard let alen = pageAlignUp(len), alen != 0 else { return .failure(.ENOMEM) }
        let (endRaw, overflow) = start.rawValue.addingReportingOverflow(alen)
        if overflow || endRaw <= start.rawValue { return .failure(.ENOMEM) }
        var end = VirtAddr(endRaw)
        if !prot.subtracting([.read, .write, .exec, .sem]).isEmpty { return .failure(.EINVAL) }
        let reqprot = prot
        if pkey != -1 && !mmPkeyIsAllocated(mm, pkey) { return .failure(.EINVAL) }

        // One descent gives the first VMA and the one before it (find_vma_prev).
        let (found, foundPrev) = mm.findVMAPrev(start)
        guard var vma = found, vma.vmStart < end else { return .failure(.ENOMEM) }
        if grows.contains(.growsDown) {
            start = vma.vmStart
            if !vma.vmFlags.contains(.growsDown) { return .failure(.EINVAL) }
        } else {
            if vma.vmStart > start { return .failure(.ENOMEM) }
            if grows.contains(.growsUp) {
                end = vma.vmEnd
                return .failure(.EINVAL)   // no VM_GROWSUP on x86
            }
        }
        // encrypt_mprotect: every VMA in the range must be anonymous (mktme/EncryptMprotect.swift).
        if keyid != nil, let e = mktmeCheckEncryptable(mm, from: vma, end: end) { return .failure(e) }
        var prev = foundPrev
        if start > vma.vmStart { prev = vma }

        var nstart = start
        var tmp = vma.vmStart
        var error: Errno? = nil
        while true {
            if vma.vmStart != tmp { error = .ENOMEM; break }
            let newPkey = overrideMprotectPkey(task, vma, prot, pkey)
            var newFlags = calcVMProtBits(prot, pkey: newPkey)
            newFlags.formUnion(vma.vmFlags.subtracting([.read, .write, .exec]).subtracting(.pkeyMask))
            // newflags >> 4 shifts VM_MAY* onto VM_*: asking for more than may is EACCES.
            let may = VMFlags(rawValue: newFlags.rawValue >> 4)
            if !newFlags.intersection([.read, .write, .exec]).subtracting(may).isEmpty {
                error = .EACCES
                break
            }
            tmp = min(vma.vmEnd, end)
            if let ops = vma.vmOps, let e = ops.mprotect(vma, start: nstart, end: tmp, newFlags: newFlags) {
                error = e
                break
            }
            switch mprotectFixup(task, vma, &prev, nstart, tmp, newFlags, keyid: keyid) {
            case .failure(let e):
                error = e
            case .success(let v):
                vma = v
            }
            if error != nil { break }
            tmp = vma.vmEnd
            nstart = tmp
            prot = reqprot
            guard tmp < end, let next = mm.next(of: vma), next.vmStart < end else { break }
            vma = next
        }
        if error == nil && tmp < end { error = .ENOMEM }
        if let e = error { return .failure(e) }
        return .success(())
    }

    /// mprotect_fixup(): apply `newFlags` (and a new KeyID) to [start, end) of `vma`.
    /// Returns the VMA now covering `start`.
    func mprotectFixup(_ task: TaskStruct, _ vma: VMA, _ prev: inout VMA?, _ start: VirtAddr, _ end: VirtAddr,
                       _ newFlagsIn: VMFlags, keyid newKeyID: KeyID? = nil) -> Result<VMA, Errno> {
        let mm = task.mm
        let oldFlags = vma.vmFlags
        // A sealed VMA refuses any protection change, even to what it has (mm/Mseal.swift).
        if oldFlags.contains(.sealed) { return .failure(.EPERM) }
        var newFlags = newFlagsIn
        let nrPages = end.distance(from: start) >> pageShift
        let keyChange = newKeyID.map { $0 != vma.keyid } ?? false
        if newFlags == oldFlags && !keyChange {
            prev = vma
            return .success(vma)
        }
        var charged: UInt64 = 0
        if newFlags.contains(.write) {
            if oldFlags.isDisjoint(with: [.account, .write, .hugeTLB, .shared, .noReserve]) {
                charged = nrPages
                if !vmEnoughMemory(charged) { return .failure(.ENOMEM) }
                newFlags.insert(.account)
            }
        } else if oldFlags.contains(.account) && vma.isAnonymous && vma.anonVMA == nil {
            newFlags.remove(.account)
        }
        var vmg = VMAMergeState(prev: prev, vma: vma, start: start, end: end)
        vmg.flags = newFlags
        if let k = newKeyID { vmg.keyid = k }
        let modified: VMA
        switch vmaModify(mm, &vmg) {
        case .failure(let e): return .failure(e)
        case .success(let v): modified = v
        }
        prev = modified
        mm.committedPages &+= charged
        modified.vmFlags = newFlags.union(modified.vmFlags.intersection(.sticky))   // a merge's sticky flags stay
        // mprotect_set_encrypt(): zap, switch the KeyID and its reference, unlink anon_vmas.
        if let k = newKeyID { mprotectSetEncrypt(mm, modified, k, start, end) }
        vmaSetPageProt(modified)
        glueChangeProtection(mm, modified, start, end)
        if oldFlags.contains(.account) && !newFlags.contains(.account) {
            mm.committedPages = mm.committedPages >= nrPages ? mm.committedPages - nrPages : 0
        }
        // A locked private mapping becoming writable is populated (COW broken up front).
        if oldFlags.intersection([.write, .shared, .locked]) == .locked && newFlags.contains(.write) {
            _ = populateVMAPageRange(task, modified, start, end)
        }
        vmStatAccount(mm, oldFlags, -Int64(nrPages))
        vmStatAccount(mm, newFlags, Int64(nrPages))
        return .success(modified)
    }
}
