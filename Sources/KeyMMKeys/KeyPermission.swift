// Key permissions as Linux checks them (security/keys/permission.c, key_task_permission):
// a 32-bit mask of four 8-bit groups (possessor, user, group, other), each with view, read,
// write, search, link and setattr bits.
//
// Invariants (documented in docs/keys.md): the subject is the credentials' fsuid, and fsgid plus
// the supplementary groups (no LSM); root gets no bypass, exactly as in Linux; possessor bits
// add to whichever of user/group/other applies; the group bits apply only to a key that has
// some group bit and a valid gid ("invalid" for user keyrings).

import KeyMMBase

/// A key's permission mask (KEY_POS_*, KEY_USR_*, KEY_GRP_*, KEY_OTH_*).
public struct KeyPerm: OptionSet, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt32
    @inlinable public init(rawValue: UInt32) { self.rawValue = rawValue }

    public static let posView = KeyPerm(rawValue: 0x0100_0000)
    public static let posRead = KeyPerm(rawValue: 0x0200_0000)
    public static let posWrite = KeyPerm(rawValue: 0x0400_0000)
    public static let posSearch = KeyPerm(rawValue: 0x0800_0000)
    public static let posLink = KeyPerm(rawValue: 0x1000_0000)
    public static let posSetattr = KeyPerm(rawValue: 0x2000_0000)
    public static let posAll = KeyPerm(rawValue: 0x3f00_0000)

    public static let usrView = KeyPerm(rawValue: 0x0001_0000)
    public static let usrRead = KeyPerm(rawValue: 0x0002_0000)
    public static let usrWrite = KeyPerm(rawValue: 0x0004_0000)
    public static let usrSearch = KeyPerm(rawValue: 0x0008_0000)
    public static let usrLink = KeyPerm(rawValue: 0x0010_0000)
    public static let usrSetattr = KeyPerm(rawValue: 0x0020_0000)
    public static let usrAll = KeyPerm(rawValue: 0x003f_0000)

    public static let grpAll = KeyPerm(rawValue: 0x0000_3f00)
    public static let othAll = KeyPerm(rawValue: 0x0000_003f)

    /// The `%08x` form DESCRIBE and /proc/keys print.
    public var description: String {
        let hex = String(rawValue, radix: 16)
        return String(repeating: "0", count: max(0, 8 - hex.count)) + hex
    }
}

/// What an operation needs of a key (KEY_NEED_*). Checked against one 8-bit group of ``KeyPerm``.
public struct KeyNeed: OptionSet, Hashable, Sendable {
    public var rawValue: UInt8
    @inlinable public init(rawValue: UInt8) { self.rawValue = rawValue }
    /// KEY_NEED_VIEW: see the key's attributes (DESCRIBE, encrypt_mprotect).
    public static let view = KeyNeed(rawValue: 0x01)
    /// KEY_NEED_READ: read the payload / list a keyring.
    public static let read = KeyNeed(rawValue: 0x02)
    /// KEY_NEED_WRITE: update the key / add a link to the keyring.
    public static let write = KeyNeed(rawValue: 0x04)
    /// KEY_NEED_SEARCH: find the key in a search / invalidate it.
    public static let search = KeyNeed(rawValue: 0x08)
    /// KEY_NEED_LINK: link the key into a keyring.
    public static let link = KeyNeed(rawValue: 0x10)
    /// KEY_NEED_SETATTR: change attributes (and revoke when WRITE is missing).
    public static let setattr = KeyNeed(rawValue: 0x20)
}

/// key_task_permission(): may a subject with `cred` do `need` to a key owned by `uid`/`gid`
/// with mask `perm`, given whether the subject possesses the key?
@inlinable
public func keyPermits(perm: KeyPerm, uid: UInt32, gid: UInt32?, cred: Credentials, possessed: Bool, need: KeyNeed) -> Bool {
    var kperm: UInt32
    if uid == cred.fsuid {
        kperm = perm.rawValue >> 16
    } else if let gid, perm.rawValue & KeyPerm.grpAll.rawValue != 0, cred.inGroup(gid) {
        kperm = perm.rawValue >> 8
    } else {
        kperm = perm.rawValue
    }
    if possessed { kperm |= perm.rawValue >> 24 }
    let granted = UInt8(truncatingIfNeeded: kperm) & need.rawValue & 0x3f
    return granted == need.rawValue
}
