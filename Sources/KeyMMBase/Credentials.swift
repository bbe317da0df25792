// Process credentials as the mm and the key service check them (struct cred, reduced): the
// real, effective, saved and filesystem user and group ids, the supplementary groups, the
// capability sets and SECURE_KEEP_CAPS. The rules that change them (set*id, capset, exec)
// live in the kernel layer (KeyMMKernel/cred/); this file only holds the values.
//
// Invariant: a process a scenario starts is root with every capability (the contract), until
// set*id / capset lines change that; the effective set is a subset of the permitted set in
// every credential the kernel layer builds.

/// Linux capabilities (bit numbers as in linux/capability.h; CAP_LAST_CAP = 40).
public struct CapabilitySet: OptionSet, Hashable, Sendable {
    public var rawValue: UInt64
    @inlinable public init(rawValue: UInt64) { self.rawValue = rawValue }
    public static let chown = CapabilitySet(rawValue: 1 << 0)           // CAP_CHOWN
    public static let dacOverride = CapabilitySet(rawValue: 1 << 1)     // CAP_DAC_OVERRIDE
    public static let dacReadSearch = CapabilitySet(rawValue: 1 << 2)   // CAP_DAC_READ_SEARCH
    public static let fowner = CapabilitySet(rawValue: 1 << 3)          // CAP_FOWNER
    public static let fsetid = CapabilitySet(rawValue: 1 << 4)          // CAP_FSETID
    public static let setgid = CapabilitySet(rawValue: 1 << 6)          // CAP_SETGID: set*gid, setgroups
    public static let setuid = CapabilitySet(rawValue: 1 << 7)          // CAP_SETUID: set*uid
    public static let setpcap = CapabilitySet(rawValue: 1 << 8)         // CAP_SETPCAP: capset's inheritable rule
    public static let linuxImmutable = CapabilitySet(rawValue: 1 << 9)  // CAP_LINUX_IMMUTABLE
    public static let ipcLock = CapabilitySet(rawValue: 1 << 14)        // CAP_IPC_LOCK: mlock beyond RLIMIT_MEMLOCK
    public static let sysAdmin = CapabilitySet(rawValue: 1 << 21)       // CAP_SYS_ADMIN
    public static let sysResource = CapabilitySet(rawValue: 1 << 24)    // CAP_SYS_RESOURCE
    public static let mknod = CapabilitySet(rawValue: 1 << 27)          // CAP_MKNOD
    public static let macOverride = CapabilitySet(rawValue: 1 << 32)    // CAP_MAC_OVERRIDE
    public static let all = CapabilitySet(rawValue: (1 << 41) - 1)      // CAP_LAST_CAP = 40
    /// CAP_FS_SET (CAP_FS_MASK + CAP_LINUX_IMMUTABLE): what a change of fsuid to or from 0
    /// drops or raises (cap_task_fix_setuid).
    public static let fsMask: CapabilitySet = [.chown, .mknod, .dacOverride, .dacReadSearch, .fowner, .fsetid,
                                                .linuxImmutable, .macOverride]
}

/// The credentials a task acts with.
public struct Credentials: Hashable, Sendable {
    /// Real user id (owns the per-UID keyrings, the task's own keyrings).
    public var uid: UInt32
    /// Effective user id (whose root-ness decides the effective capabilities).
    public var euid: UInt32
    /// Saved set-user-id.
    public var suid: UInt32
    /// Filesystem user id: what key permission checks and new keys' owners use.
    public var fsuid: UInt32
    public var gid: UInt32
    public var egid: UInt32
    public var sgid: UInt32
    public var fsgid: UInt32
    /// Supplementary groups (setgroups), sorted.
    public var groups: [UInt32]
    /// cap_effective: what capable() checks.
    public var capabilities: CapabilitySet
    /// cap_permitted.
    public var permitted: CapabilitySet
    /// cap_inheritable.
    public var inheritable: CapabilitySet
    /// cap_bset: the bounding set.
    public var bounding: CapabilitySet
    /// cap_ambient.
    public var ambient: CapabilitySet
    /// SECURE_KEEP_CAPS (prctl PR_SET_KEEPCAPS): a uid change away from root keeps permitted.
    public var keepCaps: Bool

    /// All ids `uid` / `gid`, effective and permitted capabilities `capabilities`, a full
    /// bounding set, no inheritable or ambient capabilities, no supplementary groups.
    public init(uid: UInt32, gid: UInt32, capabilities: CapabilitySet) {
        self.uid = uid
        self.euid = uid
        self.suid = uid
        self.fsuid = uid
        self.gid = gid
        self.egid = gid
        self.sgid = gid
        self.fsgid = gid
        self.groups = []
        self.capabilities = capabilities
        self.permitted = capabilities
        self.inheritable = []
        self.bounding = .all
        self.ambient = []
        self.keepCaps = false
    }

    /// root with every capability: how a scenario's first process starts.
    public static let root = Credentials(uid: 0, gid: 0, capabilities: .all)
    /// capable(): the capability is in the effective set.
    public func capable(_ cap: CapabilitySet) -> Bool { capabilities.isSuperset(of: cap) }
    /// in_group_p() on the filesystem gid: `gid` is the fsgid or a supplementary group.
    public func inGroup(_ gid: UInt32) -> Bool { gid == fsgid || groups.contains(gid) }
}
