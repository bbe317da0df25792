// add_key(2) (security/keys/keyctl.c + key.c: key_create_or_update): create a key in a
// keyring, or update the key of the same type and description already linked there.
//
// Check order (Linux's): type name (EINVAL empty or >= 32 bytes, EPERM if it starts with '.'),
// description (> 4095 bytes EINVAL; '.'-prefixed keyring EPERM), payload (> 1 MiB - 1 EINVAL),
// target keyring lookup with create and KEY_NEED_WRITE (ENOKEY/EKEYREVOKED/EACCES/EINVAL),
// type lookup (ENODEV), target is a keyring (ENOTDIR), the type's preparse (keyring: payload
// must be empty; user: 1...32767 bytes; mktme: CAP_SYS_RESOURCE|CAP_SYS_ADMIN else EACCES,
// then the options, EINVAL), description required (EINVAL), then update of an existing key of
// the same type and description in the keyring (user, mktme) or a new key (mktme: ENOKEY when
// no KeyID is free or programming fails). Quotas (EDQUOT) are not modeled.

import KeyMMBase

/// A type's preparsed payload (key_preparsed_payload).
enum PreparsedPayload {
    case keyring
    case user(SecretBytes)
    case mktme(MKTMEPayload)

    /// free_preparse: zeroize whatever material was not handed over.
    func zeroize() {
        switch self {
        case .keyring: break
        case .user(let b): b.zeroize()
        case .mktme(let p): p.zeroize()
        }
    }
}

extension KeyService {
    /// add_key(type, description, payload, keyring): the new (or updated) key's serial.
    ///
    /// - Parameters:
    ///   - requestedSerial: the serial a scenario recorded; honoured if it is free (else the
    ///     service picks one, and the caller sees the divergence).
    public func addKey(type typeName: String, description: String?, payload: [UInt8]?, keyring: KeySerial,
                       cred: Credentials, process: ProcessKeyrings, requestedSerial: KeySerial? = nil) -> Result<KeySerial, Errno> {
        let typeLength = typeName.utf8.count
        guard typeLength > 0, typeLength < 32 else { return .failure(.EINVAL) }
        if typeName.hasPrefix(".") { return .failure(.EPERM) }
        var desc = description
        if let d = desc {
            guard d.utf8.count <= 4095 else { return .failure(.EINVAL) }
            if d.isEmpty { desc = nil } else if d.hasPrefix("."), typeName.hasPrefix("keyring") { return .failure(.EPERM) }
        }
        let data = payload ?? []
        guard data.count <= 1024 * 1024 - 1 else { return .failure(.EINVAL) }

        let ring: Key
        switch lookup(keyring, need: .write, cred: cred, process: process, mode: LookupMode(create: true)) {
        case .failure(let e): return .failure(e)
        case .success(let r): ring = r.key
        }
        guard let type = KeyType(rawValue: typeName), type != .mktme || mktmeAvailable else { return .failure(.ENODEV) }
        guard ring.type == .keyring else { return .failure(.ENOTDIR) }

        let prep: PreparsedPayload
        switch preparse(type, data, cred: cred) {
        case .failure(let e): return .failure(e)
        case .success(let p): prep = p
        }
        defer { prep.zeroize() }
        guard let desc else { return .failure(.EINVAL) }

        // find_key_to_update(): a valid key of the same type and description in the keyring.
        if type.canUpdate, let existing = ring.links.lazy.compactMap({ self.keys[$0] }).first(where: {
            $0.type == type && $0.keyDescription == desc && !$0.isRevoked && !$0.isInvalidated
        }) {
            let possessed = possesses(existing, cred: cred, process: process)
            guard keyPermits(perm: existing.perm, uid: existing.uid, gid: existing.gid, cred: cred, possessed: possessed, need: .write) else {
                return .failure(.EACCES)
            }
            return updatePayload(existing, prep).map { existing.serial }
        }

        let key = Key(serial: allocateSerial(requested: requestedSerial), type: type, description: desc,
                      uid: cred.fsuid, gid: cred.fsgid, perm: defaultPerm(type))
        if case .failure(let e) = instantiate(key, prep) { return .failure(e) }
        keys[key.serial] = key
        link(key, into: ring)
        collectGarbage()
        return .success(key.serial)
    }

    /// ``addKey(type:description:payload:keyring:cred:process:requestedSerial:)`` taking the
    /// payload as a string (how scenarios spell mktme options).
    public func addKey(type typeName: String, description: String?, payload: String, keyring: KeySerial,
                       cred: Credentials, process: ProcessKeyrings, requestedSerial: KeySerial? = nil) -> Result<KeySerial, Errno> {
        addKey(type: typeName, description: description, payload: Array(payload.utf8), keyring: keyring,
               cred: cred, process: process, requestedSerial: requestedSerial)
    }

    /// The default permissions __key_create_or_update() gives a new key: possessor view, search,
    /// link, setattr (+ read if the type can be read, + write if it can be updated), user view.
    func defaultPerm(_ type: KeyType) -> KeyPerm {
        var perm: KeyPerm = [.posView, .posSearch, .posLink, .posSetattr, .usrView]
        if type != .mktme { perm.insert(.posRead) }      // keyring and user have .read
        if type.canUpdate || type == .keyring { perm.insert(.posWrite) }
        return perm
    }

    /// The type's preparse method.
    func preparse(_ type: KeyType, _ data: [UInt8], cred: Credentials) -> Result<PreparsedPayload, Errno> {
        switch type {
        case .keyring:
            return data.isEmpty ? .success(.keyring) : .failure(.EINVAL)
        case .user:
            guard (1...32767).contains(data.count) else { return .failure(.EINVAL) }
            let bytes = SecretBytes(copying: data)
            retain([bytes])
            return .success(.user(bytes))
        case .mktme:
            guard cred.capable(.sysResource) || cred.capable(.sysAdmin) else { return .failure(.EACCES) }
            return MKTMEOptionParser.parse(data, userKeysEnabled: userKeysEnabled).map { p in
                retain(p.secrets)
                return .mktme(p)
            }
        }
    }

    /// The type's instantiate method.
    func instantiate(_ key: Key, _ prep: PreparsedPayload) -> Result<Void, Errno> {
        switch prep {
        case .keyring:
            return .success(())
        case .user(let bytes):
            // The key takes the buffer over; a fresh copy keeps `prep.zeroize()` from wiping it.
            key.userPayload = bytes.copy()
            retain([key.userPayload].compactMap { $0 })
            return .success(())
        case .mktme(let payload):
            return mktmeInstantiate(key, payload)
        }
    }

    /// The type's update method (key_update after preparse).
    func updatePayload(_ key: Key, _ prep: PreparsedPayload) -> Result<Void, Errno> {
        switch prep {
        case .keyring:
            return .failure(.EOPNOTSUPP)
        case .user(let bytes):
            key.userPayload?.zeroize()
            key.userPayload = bytes.copy()
            retain([key.userPayload].compactMap { $0 })
            return .success(())
        case .mktme(let payload):
            return mktmeUpdate(key, payload)
        }
    }
}

extension SecretBytes {
    /// A new buffer with the same bytes.
    func copy() -> SecretBytes {
        withUnsafeBytes { SecretBytes(copying: $0) }
    }
}
