// Process credentials as the mm and the key service check them: uid/gid and the
// capability set (only the capabilities the model consults are named).
//
// Invariant: a process a scenario starts is root with every capability (the contract),
// until setuid/capset lines change that.

/// Linux capabilities the model consults (numbers as in linux/capability.h).
public struct CapabilitySet: OptionSet, Hashable, Sendable {
    public var rawValue: UInt64
    @inlinable public init(rawValue: UInt64) { self.rawValue = rawValue }
    public static let ipcLock = CapabilitySet(rawValue: 1 << 14)      // CAP_IPC_LOCK: mlock beyond RLIMIT_MEMLOCK
    public static let sysAdmin = CapabilitySet(rawValue: 1 << 21)     // CAP_SYS_ADMIN
    public static let sysResource = CapabilitySet(rawValue: 1 << 24)  // CAP_SYS_RESOURCE
    public static let all = CapabilitySet(rawValue: (1 << 41) - 1)    // CAP_LAST_CAP = 40
}

/// The credentials a task acts with (struct cred, reduced).
public struct Credentials: Hashable, Sendable {
    public var uid: UInt32
    public var gid: UInt32
    public var capabilities: CapabilitySet
    public init(uid: UInt32, gid: UInt32, capabilities: CapabilitySet) {
        self.uid = uid
        self.gid = gid
        self.capabilities = capabilities
    }
    /// root with every capability: how a scenario's first process starts.
    public static let root = Credentials(uid: 0, gid: 0, capabilities: .all)
    public func capable(_ cap: CapabilitySet) -> Bool { capabilities.isSuperset(of: cap) }
}
