// KeyServiceSnapshot: the key service's state as plain Codable values for the JSON result
// ("keys without their material"), checkers and tests.
//
// Invariant: nothing here can carry key material: `user` payloads appear only as a length,
// mktme keys only as their mode and KeyID.

import KeyMMBase

/// One key, without material.
public struct KeySnapshot: Hashable, Sendable, Codable {
    public var serial: Int32
    public var type: String
    public var description: String
    public var uid: UInt32
    /// -1 for Linux's INVALID_GID (per-UID keyrings).
    public var gid: Int64
    /// `%08x` permission mask.
    public var perm: String
    /// "valid", "revoked" or "invalidated".
    public var state: String
    /// Modeled time of the revocation.
    public var revokedAt: Int64?
    /// mktme: the KeyID.
    public var keyid: UInt16?
    /// mktme: cpu, user, clear or no-encrypt.
    public var mktmeType: String?
    /// user: payload length in bytes.
    public var payloadLength: Int?
    /// keyring: linked serials in link order.
    public var links: [Int32]?
}

/// The whole service, without material.
public struct KeyServiceSnapshot: Hashable, Sendable, Codable {
    public var now: Int64
    public var gcDelay: Int64
    public var userKeys: Bool
    /// Live keys, ascending serial.
    public var keys: [KeySnapshot]
    /// Process keyrings by pid, ascending pid.
    public var processes: [ProcessSnapshot]
    /// Every MKTME KeyID slot.
    public var keyids: [KeyIDSlotInfo]
    /// Reference-count anomalies recorded so far.
    public var anomalies: [KeyIDAnomaly]

    public struct ProcessSnapshot: Hashable, Sendable, Codable {
        public var pid: Int32
        public var keyrings: ProcessKeyringState
    }
}

extension KeyService {
    /// The state of every live key, process keyring set and KeyID.
    public func snapshot() -> KeyServiceSnapshot {
        let keyList = serials.compactMap { keys[$0] }.map { k in
            KeySnapshot(serial: k.serial.rawValue, type: k.type.rawValue, description: k.keyDescription,
                        uid: k.uid, gid: k.gid.map { Int64($0) } ?? -1, perm: k.perm.description,
                        state: k.isInvalidated ? "invalidated" : (k.isRevoked ? "revoked" : "valid"),
                        revokedAt: k.revokedAt, keyid: k.keyid?.rawValue, mktmeType: k.mktmeMode?.rawValue,
                        payloadLength: k.type == .user ? k.payloadLength : nil,
                        links: k.type == .keyring ? k.links.map(\.rawValue) : nil)
        }
        let procs = processes.keys.sorted().map { KeyServiceSnapshot.ProcessSnapshot(pid: $0, keyrings: processes[$0] ?? ProcessKeyringState()) }
        return KeyServiceSnapshot(now: now, gcDelay: gcDelay, userKeys: userKeysEnabled, keys: keyList,
                                  processes: procs, keyids: references.slots, anomalies: references.anomalies)
    }
}
