// keyctl(2) operations the model implements: KEYCTL_UPDATE (2), KEYCTL_REVOKE (3),
// KEYCTL_DESCRIBE (6), KEYCTL_UNLINK (9), KEYCTL_INVALIDATE (21).
//
// Each follows security/keys/keyctl.c: the same lookup flags and permissions, errors in the
// same order (see docs/keys.md for the table). Keys marked KEY_FLAG_KEEP (early MKTME
// versions) are not modeled, so EPERM from revoke/invalidate/unlink never happens.

import KeyMMBase

/// keyctl operation numbers (linux/keyctl.h) the model implements.
public enum KeyctlOperation: Int32, Sendable, CaseIterable, CustomStringConvertible {
    case update = 2, revoke = 3, describe = 6, unlink = 9, invalidate = 21
    public var description: String {
        switch self {
        case .update: "KEYCTL_UPDATE"
        case .revoke: "KEYCTL_REVOKE"
        case .describe: "KEYCTL_DESCRIBE"
        case .unlink: "KEYCTL_UNLINK"
        case .invalidate: "KEYCTL_INVALIDATE"
        }
    }
}

extension KeyService {
    /// KEYCTL_REVOKE: needs write (or, failing that, setattr) permission. The key stays, unusable
    /// (EKEYREVOKED), until key_gc_delay has passed; a revoked keyring loses its links at once; a
    /// revoked `user` key's payload is freed (zeroized) at once; an mktme key keeps its KeyID
    /// until it is destroyed.
    public func revoke(_ id: KeySerial, cred: Credentials, process: ProcessKeyrings) -> Result<Void, Errno> {
        var found = lookup(id, need: .write, cred: cred, process: process)
        if case .failure(.EACCES) = found { found = lookup(id, need: .setattr, cred: cred, process: process) }
        guard case .success(let r) = found else { return found.map { _ in () } }
        let key = r.key
        key.revokedAt = now
        switch key.type {
        case .keyring:
            for child in key.links { unlinkKey(child, from: key) }
        case .user:
            key.userPayload?.zeroize()
            key.userPayload = nil
        case .mktme:
            break
        }
        collectGarbage()
        return .success(())
    }

    /// KEYCTL_INVALIDATE: needs search permission; the key is unlinked everywhere and destroyed
    /// at once (later lookups: ENOKEY).
    public func invalidate(_ id: KeySerial, cred: Credentials, process: ProcessKeyrings) -> Result<Void, Errno> {
        switch lookup(id, need: .search, cred: cred, process: process) {
        case .failure(let e): return .failure(e)
        case .success(let r):
            r.key.isInvalidated = true
            collectGarbage()
            return .success(())
        }
    }

    /// KEYCTL_UNLINK(key, keyring): needs write permission on the keyring (looked up without
    /// create: ENOKEY for a missing KEY_SPEC_* keyring) and nothing on the key (which may be
    /// revoked). ENOTDIR if `keyring` is not a keyring, ENOENT if the key is not linked there.
    public func unlink(_ id: KeySerial, from keyring: KeySerial, cred: Credentials, process: ProcessKeyrings) -> Result<Void, Errno> {
        let ring: Key
        switch lookup(keyring, need: .write, cred: cred, process: process) {
        case .failure(let e): return .failure(e)
        case .success(let r): ring = r.key
        }
        let key: Key
        switch lookup(id, need: [], cred: cred, process: process, mode: LookupMode(forUnlink: true)) {
        case .failure(let e): return .failure(e)
        case .success(let r): key = r.key
        }
        guard ring.type == .keyring else { return .failure(.ENOTDIR) }
        guard unlinkKey(key.serial, from: ring) else { return .failure(.ENOENT) }
        collectGarbage()
        return .success(())
    }

    /// KEYCTL_UPDATE: payload at most one page (EINVAL), write permission, the type must have an
    /// update method (keyrings: EOPNOTSUPP), the type's preparse (user: 1...32767 bytes; mktme:
    /// capability EACCES, options EINVAL), then the update (mktme: EBUSY while the KeyID is
    /// referenced by anything but the key, ENOKEY if programming fails).
    public func update(_ id: KeySerial, payload: [UInt8]?, cred: Credentials, process: ProcessKeyrings) -> Result<Void, Errno> {
        let data = payload ?? []
        guard data.count <= pageSize else { return .failure(.EINVAL) }
        let key: Key
        switch lookup(id, need: .write, cred: cred, process: process) {
        case .failure(let e): return .failure(e)
        case .success(let r): key = r.key
        }
        guard key.type.canUpdate else { return .failure(.EOPNOTSUPP) }
        let prep: PreparsedPayload
        switch preparse(key.type, data, cred: cred) {
        case .failure(let e): return .failure(e)
        case .success(let p): prep = p
        }
        defer { prep.zeroize() }
        return updatePayload(key, prep)
    }

    /// ``update(_:payload:cred:process:)`` with the payload as a string.
    public func update(_ id: KeySerial, payload: String, cred: Credentials, process: ProcessKeyrings) -> Result<Void, Errno> {
        update(id, payload: Array(payload.utf8), cred: cred, process: process)
    }

    /// KEYCTL_DESCRIBE: `type;uid;gid;perm;description` (perm as %08x; never the payload).
    /// Needs view permission; revoked: EKEYREVOKED. The syscall returns the text's length + 1
    /// (the NUL), whatever the buffer size.
    public func describe(_ id: KeySerial, cred: Credentials, process: ProcessKeyrings) -> Result<String, Errno> {
        lookup(id, need: .view, cred: cred, process: process).map(\.key.describeText)
    }
}

/// What keyctl(2) returns: the syscall's value and, for DESCRIBE, the text it copies out.
public struct KeyctlResult: Hashable, Sendable {
    /// The return value (0, or DESCRIBE's length including the NUL).
    public var value: Int
    /// DESCRIBE's text (what lands in the user buffer if it is large enough).
    public var text: String?
}

extension KeyService {
    /// keyctl(op, ...) shaped like the syscall, for trace replay: `id` is arg2; `keyring` is
    /// UNLINK's arg3; `payload` is UPDATE's (arg3, arg4). Operations the model does not implement
    /// return EOPNOTSUPP, as Linux does for unknown operations.
    public func keyctl(_ op: Int32, _ id: KeySerial, keyring: KeySerial = 0, payload: [UInt8]? = nil,
                       cred: Credentials, process: ProcessKeyrings) -> Result<KeyctlResult, Errno> {
        guard let operation = KeyctlOperation(rawValue: op) else { return .failure(.EOPNOTSUPP) }
        let zero = KeyctlResult(value: 0, text: nil)
        switch operation {
        case .update: return update(id, payload: payload, cred: cred, process: process).map { zero }
        case .revoke: return revoke(id, cred: cred, process: process).map { zero }
        case .unlink: return unlink(id, from: keyring, cred: cred, process: process).map { zero }
        case .invalidate: return invalidate(id, cred: cred, process: process).map { zero }
        case .describe:
            return describe(id, cred: cred, process: process).map { KeyctlResult(value: $0.utf8.count + 1, text: $0) }
        }
    }
}
