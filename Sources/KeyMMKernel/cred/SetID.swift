// Changing a task's credentials (kernel/sys.c, kernel/capability.c, security/commoncap.c as in
// Linux 6.18): setuid, setgid, setreuid, setregid, setresuid, setresgid, setfsuid, setfsgid,
// setgroups, capset / capget, prctl(PR_SET_KEEPCAPS / PR_GET_KEEPCAPS), and what execve does to
// the capability sets. The key service reads the result (docs/keys.md: key permissions follow
// the fsuid/fsgid and groups; new keys belong to the fsuid; the mktme key type needs
// CAP_SYS_RESOURCE or CAP_SYS_ADMIN), and so do mlock, mmap_min_addr and move_pages.
//
// The capability fix-ups follow commoncap's cap_emulate_setxuid: leaving root in all of
// uid/euid/suid clears permitted and effective (unless SECURE_KEEP_CAPS) and ambient; euid
// leaving 0 clears effective, euid becoming 0 restores effective from permitted; setfsuid
// (only) drops or raises the CAP_FS_SET capabilities when the fsuid leaves or reaches 0. fork copies the
// credentials (Fork.swift); execve keeps the ids, sets suid/fsuid to euid and recomputes the
// capabilities for a binary without file capabilities.
//
// Not modeled: user namespaces (every id is valid except -1), RLIMIT_NPROC (set_user's EAGAIN),
// LSMs, securebits other than KEEP_CAPS, set-user-id binaries (execve never changes euid).
// Sources: docs/sources.md, "Credentials and key permissions".
//
// Invariant: a failed call leaves the credentials untouched; the effective capabilities are a
// subset of the permitted ones after every call.
import KeyMMBase

/// The capability sets capset(2) passes and capget(2) returns.
public struct CapabilityData: Hashable, Sendable {
    public var effective: CapabilitySet
    public var permitted: CapabilitySet
    public var inheritable: CapabilitySet
    public init(effective: CapabilitySet, permitted: CapabilitySet, inheritable: CapabilitySet) {
        self.effective = effective
        self.permitted = permitted
        self.inheritable = inheritable
    }
}

extension Kernel {
    /// `(uid_t)-1`: "leave this id alone" (and never a valid id).
    public static let unchangedID: UInt32 = .max
    /// _LINUX_CAPABILITY_VERSION_1 (one 32-bit word), _2 and _3 (two words).
    static let capabilityVersions: [UInt32: Int] = [0x1998_0330: 1, 0x2007_1026: 2, 0x2008_0522: 2]

    private func credTask(_ pid: ProcessID) -> TaskStruct? {
        machine.clock.charge(.syscall)
        return tasks[pid]
    }

    /// Applies `new` after the uid fix-ups of cap_task_fix_setuid (LSM_SETID_ID/RE/RES).
    private func commitSetUID(_ task: TaskStruct, _ new: Credentials) {
        var new = new
        let old = task.cred
        let wasRoot = old.uid == 0 || old.euid == 0 || old.suid == 0
        let isRoot = new.uid == 0 || new.euid == 0 || new.suid == 0
        if wasRoot && !isRoot {
            if !old.keepCaps {
                new.permitted = []
                new.capabilities = []
            }
            new.ambient = []
        }
        if old.euid == 0 && new.euid != 0 { new.capabilities = [] }
        if old.euid != 0 && new.euid == 0 { new.capabilities = new.permitted }
        // No fs-capability fix-up here: only setfsuid's path (LSM_SETID_FS) has one, so an fsuid
        // that follows the euid back to 0 does not bring the fs capabilities back (measured).
        task.cred = new
    }

    /// cap_task_fix_setuid(LSM_SETID_FS): the fs capabilities follow fsuid leaving / reaching 0.
    private func fixFSUIDCapabilities(old: Credentials, _ new: inout Credentials) {
        if old.fsuid == 0 && new.fsuid != 0 { new.capabilities.subtract(.fsMask) }
        if old.fsuid != 0 && new.fsuid == 0 {
            new.capabilities.formUnion(new.permitted.intersection(.fsMask))
        }
    }

    /// setuid(2): with CAP_SETUID every uid becomes `uid`; without, only the effective (and fs)
    /// uid, and only to the real or saved uid (EPERM). -1 is EINVAL.
    public func setuid(_ pid: ProcessID, _ uid: UInt32) -> Result<Void, Errno> {
        guard let task = credTask(pid) else { return .failure(.ESRCH) }
        if uid == Kernel.unchangedID { return .failure(.EINVAL) }
        let old = task.cred
        var new = old
        if old.capable(.setuid) {
            new.uid = uid
            new.suid = uid
        } else if uid != old.uid && uid != old.suid {
            return .failure(.EPERM)
        }
        new.euid = uid
        new.fsuid = uid
        commitSetUID(task, new)
        return .success(())
    }

    /// setgid(2): the same rule with CAP_SETGID and the group ids (no capability fix-ups).
    public func setgid(_ pid: ProcessID, _ gid: UInt32) -> Result<Void, Errno> {
        guard let task = credTask(pid) else { return .failure(.ESRCH) }
        if gid == Kernel.unchangedID { return .failure(.EINVAL) }
        var new = task.cred
        if task.cred.capable(.setgid) {
            new.gid = gid
            new.sgid = gid
        } else if gid != task.cred.gid && gid != task.cred.sgid {
            return .failure(.EPERM)
        }
        new.egid = gid
        new.fsgid = gid
        task.cred = new
        return .success(())
    }

    /// setreuid(2): the real uid may become the real or effective one, the effective uid the
    /// real, effective or saved one (else CAP_SETUID, EPERM). The saved uid follows the new
    /// effective one when the real uid is set or the effective one changes to other than the
    /// old real uid; fsuid = euid.
    public func setreuid(_ pid: ProcessID, ruid: UInt32, euid: UInt32) -> Result<Void, Errno> {
        guard let task = credTask(pid) else { return .failure(.ESRCH) }
        let old = task.cred
        let privileged = old.capable(.setuid)
        var new = old
        if ruid != Kernel.unchangedID {
            new.uid = ruid
            if ruid != old.uid && ruid != old.euid && !privileged { return .failure(.EPERM) }
        }
        if euid != Kernel.unchangedID {
            new.euid = euid
            if euid != old.uid && euid != old.euid && euid != old.suid && !privileged { return .failure(.EPERM) }
        }
        if ruid != Kernel.unchangedID || (euid != Kernel.unchangedID && euid != old.uid) { new.suid = new.euid }
        new.fsuid = new.euid
        commitSetUID(task, new)
        return .success(())
    }

    /// setregid(2): as setreuid with CAP_SETGID and the group ids.
    public func setregid(_ pid: ProcessID, rgid: UInt32, egid: UInt32) -> Result<Void, Errno> {
        guard let task = credTask(pid) else { return .failure(.ESRCH) }
        let old = task.cred
        let privileged = old.capable(.setgid)
        var new = old
        if rgid != Kernel.unchangedID {
            new.gid = rgid
            if rgid != old.gid && rgid != old.egid && !privileged { return .failure(.EPERM) }
        }
        if egid != Kernel.unchangedID {
            new.egid = egid
            if egid != old.gid && egid != old.egid && egid != old.sgid && !privileged { return .failure(.EPERM) }
        }
        if rgid != Kernel.unchangedID || (egid != Kernel.unchangedID && egid != old.gid) { new.sgid = new.egid }
        new.fsgid = new.egid
        task.cred = new
        return .success(())
    }

    /// setresuid(2): each id that is not -1 becomes the given one; without CAP_SETUID each new
    /// id must be one of the current real, effective or saved uids (EPERM). fsuid = euid.
    public func setresuid(_ pid: ProcessID, ruid: UInt32, euid: UInt32, suid: UInt32) -> Result<Void, Errno> {
        guard let task = credTask(pid) else { return .failure(.ESRCH) }
        let old = task.cred
        let none = Kernel.unchangedID
        // The no-op check comes first (a task without CAP_SETUID may "set" what it has).
        if (ruid == none || ruid == old.uid) && (euid == none || (euid == old.euid && euid == old.fsuid))
            && (suid == none || suid == old.suid) { return .success(()) }
        func isNew(_ id: UInt32) -> Bool { id != none && id != old.uid && id != old.euid && id != old.suid }
        if (isNew(ruid) || isNew(euid) || isNew(suid)) && !old.capable(.setuid) { return .failure(.EPERM) }
        var new = old
        if ruid != none { new.uid = ruid }
        if euid != none { new.euid = euid }
        if suid != none { new.suid = suid }
        new.fsuid = new.euid
        commitSetUID(task, new)
        return .success(())
    }

    /// setresgid(2): as setresuid with CAP_SETGID and the group ids.
    public func setresgid(_ pid: ProcessID, rgid: UInt32, egid: UInt32, sgid: UInt32) -> Result<Void, Errno> {
        guard let task = credTask(pid) else { return .failure(.ESRCH) }
        let old = task.cred
        let none = Kernel.unchangedID
        if (rgid == none || rgid == old.gid) && (egid == none || (egid == old.egid && egid == old.fsgid))
            && (sgid == none || sgid == old.sgid) { return .success(()) }
        func isNew(_ id: UInt32) -> Bool { id != none && id != old.gid && id != old.egid && id != old.sgid }
        if (isNew(rgid) || isNew(egid) || isNew(sgid)) && !old.capable(.setgid) { return .failure(.EPERM) }
        var new = old
        if rgid != none { new.gid = rgid }
        if egid != none { new.egid = egid }
        if sgid != none { new.sgid = sgid }
        new.fsgid = new.egid
        task.cred = new
        return .success(())
    }

    /// setfsuid(2): always returns the old fsuid; the fsuid changes if the new one is the real,
    /// effective, saved or current fs uid, or with CAP_SETUID.
    public func setfsuid(_ pid: ProcessID, _ uid: UInt32) -> Result<Int64, Errno> {
        guard let task = credTask(pid) else { return .failure(.ESRCH) }
        let old = task.cred
        if uid != Kernel.unchangedID, uid != old.fsuid,
           uid == old.uid || uid == old.euid || uid == old.suid || old.capable(.setuid) {
            var new = old
            new.fsuid = uid
            fixFSUIDCapabilities(old: old, &new)
            task.cred = new
        }
        return .success(Int64(old.fsuid))
    }

    /// setfsgid(2): as setfsuid with CAP_SETGID and the group ids.
    public func setfsgid(_ pid: ProcessID, _ gid: UInt32) -> Result<Int64, Errno> {
        guard let task = credTask(pid) else { return .failure(.ESRCH) }
        let old = task.cred
        if gid != Kernel.unchangedID, gid != old.fsgid,
           gid == old.gid || gid == old.egid || gid == old.sgid || old.capable(.setgid) {
            task.cred.fsgid = gid
        }
        return .success(Int64(old.fsgid))
    }

    /// setgroups(2): more than NGROUPS_MAX (65536) EINVAL; needs CAP_SETGID (EPERM).
    public func setgroups(_ pid: ProcessID, _ groups: [UInt32]) -> Result<Void, Errno> {
        guard let task = credTask(pid) else { return .failure(.ESRCH) }
        if groups.count > 65536 { return .failure(.EINVAL) }
        if !task.cred.capable(.setgid) { return .failure(.EPERM) }
        task.cred.groups = groups.sorted()
        return .success(())
    }

    /// capset(2) for `target` (0 or the caller's pid; another pid EPERM) with the header's
    /// `version` (unknown: EINVAL). Version 1 carries only the low 32 capabilities. The new
    /// inheritable set must come from the old inheritable and permitted sets (unless CAP_SETPCAP)
    /// and from the old inheritable and bounding sets, permitted may only shrink, effective must
    /// be within the new permitted (EPERM otherwise).
    public func capset(_ pid: ProcessID, version: UInt32, target: Int32, _ data: CapabilityData) -> Result<Void, Errno> {
        guard let task = credTask(pid) else { return .failure(.ESRCH) }
        guard let words = Kernel.capabilityVersions[version] else { return .failure(.EINVAL) }
        if target != 0 && target != pid.rawValue { return .failure(.EPERM) }
        let mask = CapabilitySet(rawValue: words == 1 ? 0xFFFF_FFFF : CapabilitySet.all.rawValue)
        let effective = data.effective.intersection(mask)
        let permitted = data.permitted.intersection(mask)
        let inheritable = data.inheritable.intersection(mask)
        let old = task.cred
        if !old.capable(.setpcap) && !inheritable.isSubset(of: old.inheritable.union(old.permitted)) { return .failure(.EPERM) }
        if !inheritable.isSubset(of: old.inheritable.union(old.bounding)) { return .failure(.EPERM) }
        if !permitted.isSubset(of: old.permitted) { return .failure(.EPERM) }
        if !effective.isSubset(of: permitted) { return .failure(.EPERM) }
        task.cred.capabilities = effective
        task.cred.permitted = permitted
        task.cred.inheritable = inheritable
        // Ambient capabilities must stay permitted and inheritable (cap_capset).
        task.cred.ambient.formIntersection(permitted.intersection(inheritable))
        return .success(())
    }

    /// capget(2) of `target` (0: the caller; a pid the model does not know: ESRCH); an unknown
    /// header version is EINVAL.
    public func capget(_ pid: ProcessID, version: UInt32, target: Int32) -> Result<CapabilityData, Errno> {
        guard let task = credTask(pid) else { return .failure(.ESRCH) }
        guard Kernel.capabilityVersions[version] != nil else { return .failure(.EINVAL) }
        guard let subject = target == 0 ? task : tasks[ProcessID(target)] else { return .failure(.ESRCH) }
        let c = subject.cred
        return .success(CapabilityData(effective: c.capabilities, permitted: c.permitted, inheritable: c.inheritable))
    }

    /// prctl(PR_SET_KEEPCAPS, value): 0 or 1 (else EINVAL).
    public func setKeepCaps(_ pid: ProcessID, _ value: UInt64) -> Result<Void, Errno> {
        guard let task = credTask(pid) else { return .failure(.ESRCH) }
        guard value <= 1 else { return .failure(.EINVAL) }
        task.cred.keepCaps = value == 1
        return .success(())
    }

    /// prctl(PR_GET_KEEPCAPS).
    public func keepCaps(_ pid: ProcessID) -> Result<Int64, Errno> {
        guard let task = credTask(pid) else { return .failure(.ESRCH) }
        return .success(task.cred.keepCaps ? 1 : 0)
    }

    /// What execve does to the credentials of a binary without file capabilities or set-id
    /// bits (cap_bprm_creds_from_file): suid = fsuid = euid (and the gids alike); a task whose
    /// real or effective uid is 0 gets permitted = bounding ∪ inheritable, effective = permitted
    /// only if the euid is 0; otherwise permitted = effective = ambient. KEEP_CAPS is cleared.
    func credsExec(_ task: TaskStruct) {
        var c = task.cred
        c.suid = c.euid
        c.fsuid = c.euid
        c.sgid = c.egid
        c.fsgid = c.egid
        if c.euid == 0 || c.uid == 0 {
            c.permitted = c.bounding.union(c.inheritable)
            c.capabilities = c.euid == 0 ? c.permitted : c.ambient
        } else {
            c.permitted = c.ambient
            c.capabilities = c.ambient
        }
        c.keepCaps = false
        task.cred = c
    }
}
