// Key: one key of the keyring service (struct key, reduced): serial, type, description, owner,
// permissions, state flags and the type's payload (a keyring's links, a `user` key's secret
// payload, an `mktme` key's KeyID).
//
// Invariants: `usage` counts what keeps the key alive (links from keyrings + processes that hold
// it as their thread/process/session keyring + a pin for per-UID keyrings); the key is destroyed
// by the garbage collector when usage is 0, or (invalidated) at once, or (revoked) key_gc_delay
// seconds after revocation. A destroyed key is `isDead` and no longer reachable by serial.
// Nothing printable about a Key ever includes key material.

import KeyMMBase

/// The key types the model registers.
public enum KeyType: String, Sendable, Hashable, Codable, CaseIterable, CustomStringConvertible {
    /// key_type_keyring: a set of links to other keys.
    case keyring
    /// key_type_user: a generic blob (1...32767 bytes) under a description.
    case user
    /// key_type_mktme: an MKTME hardware key mapped 1:1 to a KeyID.
    case mktme
    public var description: String { rawValue }

    /// Whether the type has an `update` method (user and mktme do; keyrings do not).
    var canUpdate: Bool { self != .keyring }
}

/// What kind of MKTME key a key of type `mktme` is (the `type=` option).
public enum MKTMEKeyMode: String, Sendable, Hashable, Codable, CaseIterable, CustomStringConvertible {
    /// `type=cpu`: the CPU generates the key (PCONFIG SET_KEY_RANDOM), optional entropy mixed in.
    case cpu
    /// `type=user`: the data and tweak keys are given (PCONFIG SET_KEY_DIRECT).
    case user
    /// `type=clear`: program the KeyID with the TME key (PCONFIG CLEAR_KEY).
    case clear
    /// `type=no-encrypt`: the KeyID stores plaintext (PCONFIG NO_ENCRYPT).
    case noEncrypt = "no-encrypt"
    public var description: String { rawValue }
}

/// One key (struct key).
public final class Key: CustomStringConvertible {
    /// The serial number (positive).
    public let serial: KeySerial
    /// The key type.
    public let type: KeyType
    /// The key's description (the name user space gave it; never contains key material unless
    /// the user put it there).
    public let keyDescription: String
    /// Owner uid.
    public internal(set) var uid: UInt32
    /// Owner gid; nil is Linux's INVALID_GID (per-UID keyrings), printed as 65534 (overflowgid).
    public internal(set) var gid: UInt32?
    /// Permission mask.
    public internal(set) var perm: KeyPerm

    /// Modeled time (seconds) of KEYCTL_REVOKE; nil while not revoked.
    public internal(set) var revokedAt: Int64?
    /// KEYCTL_INVALIDATE ran.
    public internal(set) var isInvalidated = false
    /// Destroyed by the garbage collector (no longer reachable by serial).
    public internal(set) var isDead = false

    /// For keyrings: the linked keys, in link order.
    public internal(set) var links: [KeySerial] = []
    /// For `user` keys: the payload (secret).
    var userPayload: SecretBytes?
    /// For `mktme` keys: the KeyID this key owns (kept after destruction for inspection; the
    /// KeyID's own state is in ``KeyIDReferences``).
    public internal(set) var keyid: KeyID?
    /// For `mktme` keys: the `type=` it was created (or last updated) with.
    public internal(set) var mktmeMode: MKTMEKeyMode?

    /// Keyrings linking this key.
    var linkCount = 0
    /// Processes holding it as their thread/process/session keyring.
    var processRefs = 0
    /// Per-UID keyrings are pinned for the life of the model (user_struct / user namespace).
    var pinned = false

    init(serial: KeySerial, type: KeyType, description: String, uid: UInt32, gid: UInt32?, perm: KeyPerm) {
        self.serial = serial
        self.type = type
        self.keyDescription = description
        self.uid = uid
        self.gid = gid
        self.perm = perm
    }

    /// What keeps the key alive.
    var usage: Int { linkCount + processRefs + (pinned ? 1 : 0) }

    /// Revoked (KEYCTL_REVOKE) and not yet collected.
    public var isRevoked: Bool { revokedAt != nil }

    /// key_validate(): nil if usable, else the errno a lookup reports.
    var validationError: Errno? {
        if isInvalidated || isDead { return .ENOKEY }
        if isRevoked { return .EKEYREVOKED }
        return nil
    }

    /// Payload length in bytes for `user` keys (what user_describe shows), 0 otherwise.
    public var payloadLength: Int { userPayload?.count ?? 0 }

    /// The KEYCTL_DESCRIBE text: `type;uid;gid;perm;description` (gid -1 printed as 65534).
    public var describeText: String {
        "\(type.rawValue);\(uid);\(gid.map { String($0) } ?? "65534");\(perm);\(keyDescription)"
    }

    public var description: String {
        var s = "key \(serial.rawValue) (\(type) \"\(keyDescription)\""
        if let mktmeMode { s += " \(mktmeMode)" }
        if let keyid { s += " \(keyid)" }
        if isRevoked { s += " revoked" }
        if isInvalidated { s += " invalidated" }
        if isDead { s += " dead" }
        return s + ")"
    }
}
