// keyctl(2) operations the model implements: KEYCTL_UPDATE (2), KEYCTL_REVOKE (3),
// KEYCTL_CHOWN (4), KEYCTL_SETPERM (5), KEYCTL_DESCRIBE (6), KEYCTL_UNLINK (9),
// KEYCTL_INVALIDATE (21).
//
// Each follows security/keys/keyctl.c: the same lookup flags and permissions, errors in the
// same order (see docs/keys.md for the table). Keys marked KEY_FLAG_KEEP (early MKTME
// versions) are not modeled, so EPERM from revoke/invalidate/unlink never happens.

import KeyMMBase

/// keyctl operation numbers (linux/keyctl.h) the model implements.
public enum KeyctlOperation: Int32, Sendable, CaseIterable, CustomStringConvertible {
    case update = 2, revoke = 3, chown = 4, setperm = 5, describe = 6, unlink = 9, invalidate = 21
    public var description: String {
        switch self {
        case .update: "KEYCTL_UPDATE"
        case .revoke: "KEYCTL_REVOKE"
        case .chown: "KEYCTL_CHOWN"
        case .setperm: "KEYCTL_SETPERM"
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

    /// KEYCTL_SETPERM: bits outside the four groups' six permissions EINVAL; the key is looked
    /// up with create (KEY_SPEC_* keyrings come into being) and needs setattr; then only the
    /// key's owner (fsuid) or a caller with CAP_SYS_ADMIN may change its mask (EACCES).
    public func setperm(_ id: KeySerial, perm: UInt32, cred: Credentials, process: ProcessKeyrings) -> Result<Void, Errno> {
        let valid = KeyPerm.posAll.rawValue | KeyPerm.usrAll.rawValue | KeyPerm.grpAll.rawValue | KeyPerm.othAll.rawValue
        guard perm & ~valid == 0 else { return .failure(.EINVAL) }
        switch lookup(id, need: .setattr, cred: cred, process: process, mode: LookupMode(create: true)) {
        case .failure(let e): return .failure(e)
        case .success(let r):
            guard r.key.uid == cred.fsuid || cred.capable(.sysAdmin) else { return .failure(.EACCES) }
            r.key.perm = KeyPerm(rawValue: perm)
            return .success(())
        }
    }

    /// KEYCTL_CHOWN(key, uid, gid): -1 leaves a field alone (both -1: nothing, success before
    /// any lookup); the key is looked up with create and needs setattr; giving it to another
    /// uid, or to a group the caller is not in, needs CAP_SYS_ADMIN (EACCES). Key quotas are
    /// not modeled, so the transfer never fails with EDQUOT.
    public func chown(_ id: KeySerial, uid: UInt32, gid: UInt32, cred: Credentials, process: ProcessKeyrings) -> Result<Void, Errno> {
        let none = UInt32.max
        if uid == none && gid == none { return .success(()) }
        switch lookup(id, need: .setattr, cred: cred, process: process, mode: LookupMode(create: true)) {
        case .failure(let e): return .failure(e)
        case .success(let r):
            let key = r.key
            let otherOwner = uid != none && uid != key.uid
            let otherGroup = gid != none && gid != key.gid && !cred.inGroup(gid)
            if (otherOwner || otherGroup) && !cred.capable(.sysAdmin) { return .failure(.EACCES) }
            if uid != none { key.uid = uid }
            if gid != none { key.gid = gid }
            return .success(())
        }
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
    /// UNLINK's arg3; `payload` is UPDATE's (arg3, arg4); `arg3`/`arg4` are SETPERM's mask and
    /// CHOWN's uid and gid. Operations the model does not implement return EOPNOTSUPP, as Linux
    /// does for unknown operations.
    public func keyctl(_ op: Int32, _ id: KeySerial, keyring: KeySerial = 0, payload: [UInt8]? = nil,
                       arg3: UInt64 = 0, arg4: UInt64 = 0,
                       cred: Credentials, process: ProcessKeyrings) -> Result<KeyctlResult, Errno> {
        guard let operation = KeyctlOperation(rawValue: op) else { return .failure(.EOPNOTSUPP) }
        let zero = KeyctlResult(value: 0, text: nil)
        switch operation {
        case .update: return update(id, payload: payload, cred: cred, process: process).map { zero }
        case .revoke: return revoke(id, cred: cred, process: process).map { zero }
        case .setperm: return setperm(id, perm: UInt32(truncatingIfNeeded: arg3), cred: cred, process: process).map { zero }
        case .chown:
            return chown(id, uid: UInt32(truncatingIfNeeded: arg3), gid: UInt32(truncatingIfNeeded: arg4),
                         cred: cred, process: process).map { zero }
        case .unlink: return unlink(id, from: keyring, cred: cred, process: process).map { zero }
        case .invalidate: return invalidate(id, cred: cred, process: process).map { zero }
        case .describe:
            return describe(id, cred: cred, process: process).map { KeyctlResult(value: $0.utf8.count + 1, text: $0) }
        }
    }
}
