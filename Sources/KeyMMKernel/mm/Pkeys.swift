// Memory protection keys (x86 PKU): pkey_alloc / pkey_free, the mm's allocation map, the
// execute-only key mprotect(PROT_EXEC) uses, and the per-thread PKRU value.
//
// Invariants: with OSPKE (config.pkeyCount > 1) pkey 0 starts allocated and
// executeOnlyPkey starts at -1; without OSPKE the mm context is zeroed as on a CPU without
// PKU (map 0, execute-only key 0), which makes pkey_alloc fail with EINVAL once and ENOSPC
// after, and every pkey but -1 invalid for pkey_mprotect — what Linux does there.
import KeyMMBase

extension Kernel {
    /// pkey_alloc(2).
    public func pkeyAlloc(_ pid: ProcessID, flags: UInt64 = 0, initVal: UInt64 = 0) -> Result<Int, Errno> {
        machine.clock.charge(.syscall)
        guard let task = tasks[pid] else { return .failure(.ESRCH) }
        if flags != 0 { return .failure(.EINVAL) }
        if initVal & ~UInt64(PkeyAccess.mask.rawValue) != 0 { return .failure(.EINVAL) }
        let mm = task.mm
        let pkey = mmPkeyAlloc(mm)
        if pkey < 0 { return .failure(.ENOSPC) }
        if let e = archSetUserPkeyAccess(task, pkey, UInt32(initVal)) {
            _ = mmPkeyFree(mm, pkey)
            return .failure(e)
        }
        return .success(pkey)
    }

    /// pkey_free(2).
    public func pkeyFree(_ pid: ProcessID, pkey: Int) -> Result<Void, Errno> {
        machine.clock.charge(.syscall)
        guard let task = tasks[pid] else { return .failure(.ESRCH) }
        if let e = mmPkeyFree(task.mm, pkey) { return .failure(e) }
        return .success(())
    }

    /// mm_pkey_alloc(): the lowest free key, -1 when all arch_max_pkey() keys are taken.
    func mmPkeyAlloc(_ mm: MM) -> Int {
        let all = UInt16(truncatingIfNeeded: (1 << config.pkeyCount) - 1)
        if mm.pkeyAllocationMap == all { return -1 }
        let ret = (~mm.pkeyAllocationMap).trailingZeroBitCount
        mm.pkeyAllocationMap |= UInt16(1) << UInt16(ret)
        return ret
    }

    /// mm_pkey_is_allocated(): the execute-only key is not available to user interfaces.
    func mmPkeyIsAllocated(_ mm: MM, _ pkey: Int) -> Bool {
        if pkey < 0 || pkey >= config.pkeyCount { return false }
        if pkey == mm.executeOnlyPkey { return false }
        return mm.pkeyAllocationMap & (UInt16(1) << UInt16(pkey)) != 0
    }

    /// mm_pkey_free().
    func mmPkeyFree(_ mm: MM, _ pkey: Int) -> Errno? {
        if !mmPkeyIsAllocated(mm, pkey) { return .EINVAL }
        mm.pkeyAllocationMap &= ~(UInt16(1) << UInt16(pkey))
        return nil
    }

    /// arch_set_user_pkey_access(): write the key's AD/WD bits into the thread's PKRU.
    func archSetUserPkeyAccess(_ task: TaskStruct, _ pkey: Int, _ initVal: UInt32) -> Errno? {
        if !pkeysEnabled { return .EINVAL }
        if pkey >= config.pkeyCount { return .EINVAL }
        let shift = UInt32(2 * pkey)
        task.pkru = (task.pkru & ~(UInt32(3) << shift)) | ((initVal & 3) << shift)
        return nil
    }

    /// execute_only_pkey(): the mm's execute-only key, allocated and access-disabled in
    /// PKRU on first use; -1 when none can be had; 0 without OSPKE.
    func executeOnlyPkey(_ task: TaskStruct) -> Int {
        if !pkeysEnabled { return 0 }
        let mm = task.mm
        var key = mm.executeOnlyPkey
        var fresh = false
        if key == -1 {
            key = mmPkeyAlloc(mm)
            if key < 0 { return -1 }
            fresh = true
        }
        if !fresh && (task.pkru >> UInt32(2 * key)) & 1 != 0 { return key }
        if archSetUserPkeyAccess(task, key, PkeyAccess.disableAccess.rawValue) != nil {
            mm.pkeyAllocationMap &= ~(UInt16(1) << UInt16(key))
            return -1
        }
        if fresh { mm.executeOnlyPkey = key }
        return key
    }

    /// arch_override_mprotect_pkey(): the pkey a plain mprotect() gives `vma`.
    func overrideMprotectPkey(_ task: TaskStruct, _ vma: VMA, _ prot: Prot, _ pkey: Int) -> Int {
        if !pkeysEnabled { return 0 }
        if pkey != -1 { return pkey }
        if prot == .exec {
            let k = executeOnlyPkey(task)
            if k > 0 { return k }
        } else if vma.vmFlags.intersection([.read, .write, .exec]) == .exec
                    && vma.vmFlags.pkey == task.mm.executeOnlyPkey {
            return 0
        }
        return vma.vmFlags.pkey
    }
}
