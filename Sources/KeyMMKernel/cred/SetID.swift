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
        return Kernel.setID(task.cred, .user, uid).map { commitSetUID(task, $0) }
    }

    /// setgid(2): the same rule with CAP_SETGID and the group ids (no capability fix-ups).
    public func setgid(_ pid: ProcessID, _ gid: UInt32) -> Result<Void, Errno> {
        guard let task = credTask(pid) else { return .failure(.ESRCH) }
        return Kernel.setID(task.cred, .group, gid).map { task.cred = $0 }
    }

    /// setreuid(2): the real uid may become the real or effective one, the effective uid the
    /// real, effective or saved one (else CAP_SETUID, EPERM). The saved uid follows the new
    /// effective one when the real uid is set or the effective one changes to other than the
    /// old real uid; fsuid = euid.
    public func setreuid(_ pid: ProcessID, ruid: UInt32, euid: UInt32) -> Result<Void, Errno> {
        guard let task = credTask(pid) else { return .failure(.ESRCH) }
        return Kernel.setREID(task.cred, .user, ruid, euid).map { commitSetUID(task, $0) }
    }

    /// setregid(2): as setreuid with CAP_SETGID and the group ids.
    public func setregid(_ pid: ProcessID, rgid: UInt32, egid: UInt32) -> Result<Void, Errno> {
        guard let task = credTask(pid) else { return .failure(.ESRCH) }
        return Kernel.setREID(task.cred, .group, rgid, egid).map { task.cred = $0 }
    }

    /// setresuid(2): each id that is not -1 becomes the given one; without CAP_SETUID each new
    /// id must be one of the current real, effective or saved uids (EPERM). fsuid = euid.
    public func setresuid(_ pid: ProcessID, ruid: UInt32, euid: UInt32, suid: UInt32) -> Result<Void, Errno> {
        guard let task = credTask(pid) else { return .failure(.ESRCH) }
        return Kernel.setRESID(task.cred, .user, ruid, euid, suid).map { if let c = $0 { commitSetUID(task, c) } }
    }

    /// setresgid(2): as setresuid with CAP_SETGID and the group ids.
    public func setresgid(_ pid: ProcessID, rgid: UInt32, egid: UInt32, sgid: UInt32) -> Result<Void, Errno> {
        guard let task = credTask(pid) else { return .failure(.ESRCH) }
        return Kernel.setRESID(task.cred, .group, rgid, egid, sgid).map { if let c = $0 { task.cred = c } }
    }

    /// setfsuid(2): always returns the old fsuid; the fsuid changes if the new one is the real,
    /// effective, saved or current fs uid, or with CAP_SETUID.
    public func setfsuid(_ pid: ProcessID, _ uid: UInt32) -> Result<Int64, Errno> {
        guard let task = credTask(pid) else { return .failure(.ESRCH) }
        let old = task.cred
        if var new = Kernel.setFSID(old, .user, uid) {
            fixFSUIDCapabilities(old: old, &new)
            task.cred = new
        }
        return .success(Int64(old.fsuid))
    }

    /// setfsgid(2): as setfsuid with CAP_SETGID and the group ids.
    public func setfsgid(_ pid: ProcessID, _ gid: UInt32) -> Result<Int64, Errno> {
        guard let task = credTask(pid) else { return .failure(.ESRCH) }
        let old = task.cred
        if let new = Kernel.setFSID(old, .group, gid) { task.cred = new }
        return .success(Int64(old.fsgid))
    }

    // MARK: the rules, once for uids and once for gids

    /// The four ids of one kind in a credential and the capability that lifts their rules.
    struct IDKind {
        let real, effective, saved, fs: WritableKeyPath<Credentials, UInt32>
        let cap: CapabilitySet
        static var user: IDKind { IDKind(real: \.uid, effective: \.euid, saved: \.suid, fs: \.fsuid, cap: .setuid) }
        static var group: IDKind { IDKind(real: \.gid, effective: \.egid, saved: \.sgid, fs: \.fsgid, cap: .setgid) }
    }

    /// __sys_setuid / __sys_setgid.
    static func setID(_ old: Credentials, _ k: IDKind, _ id: UInt32) -> Result<Credentials, Errno> {
        if id == unchangedID { return .failure(.EINVAL) }
        var new = old
        if old.capable(k.cap) {
            new[keyPath: k.real] = id
            new[keyPath: k.saved] = id
        } else if id != old[keyPath: k.real] && id != old[keyPath: k.saved] {
            return .failure(.EPERM)
        }
        new[keyPath: k.effective] = id
        new[keyPath: k.fs] = id
        return .success(new)
    }

    /// __sys_setreuid / __sys_setregid.
    static func setREID(_ old: Credentials, _ k: IDKind, _ r: UInt32, _ e: UInt32) -> Result<Credentials, Errno> {
        let privileged = old.capable(k.cap)
        let (oldR, oldE, oldS) = (old[keyPath: k.real], old[keyPath: k.effective], old[keyPath: k.saved])
        var new = old
        if r != unchangedID {
            new[keyPath: k.real] = r
            if r != oldR && r != oldE && !privileged { return .failure(.EPERM) }
        }
        if e != unchangedID {
            new[keyPath: k.effective] = e
            if e != oldR && e != oldE && e != oldS && !privileged { return .failure(.EPERM) }
        }
        if r != unchangedID || (e != unchangedID && e != oldR) { new[keyPath: k.saved] = new[keyPath: k.effective] }
        new[keyPath: k.fs] = new[keyPath: k.effective]
        return .success(new)
    }

    /// __sys_setresuid / __sys_setresgid; nil: nothing to change (checked before the permission
    /// rule, so a process without the capability may "set" the ids it has).
    static func setRESID(_ old: Credentials, _ k: IDKind, _ r: UInt32, _ e: UInt32, _ s: UInt32) -> Result<Credentials?, Errno> {
        let (oldR, oldE, oldS) = (old[keyPath: k.real], old[keyPath: k.effective], old[keyPath: k.saved])
        if (r == unchangedID || r == oldR) && (e == unchangedID || (e == oldE && e == old[keyPath: k.fs]))
            && (s == unchangedID || s == oldS) { return .success(nil) }
        func isNew(_ id: UInt32) -> Bool { id != unchangedID && id != oldR && id != oldE && id != oldS }
        if (isNew(r) || isNew(e) || isNew(s)) && !old.capable(k.cap) { return .failure(.EPERM) }
        var new = old
        if r != unchangedID { new[keyPath: k.real] = r }
        if e != unchangedID { new[keyPath: k.effective] = e }
        if s != unchangedID { new[keyPath: k.saved] = s }
        new[keyPath: k.fs] = new[keyPath: k.effective]
        return .success(new)
    }

    /// __sys_setfsuid / __sys_setfsgid: the new credentials, or nil when nothing changes.
    static func setFSID(_ old: Credentials, _ k: IDKind, _ id: UInt32) -> Credentials? {
        guard id != unchangedID, id != old[keyPath: k.fs],
              id == old[keyPath: k.real] || id == old[keyPath: k.effective] || id == old[keyPath: k.saved]
                || old.capable(k.cap) else { return nil }
        var new = old
        new[keyPath: k.fs] = id
        return new
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
