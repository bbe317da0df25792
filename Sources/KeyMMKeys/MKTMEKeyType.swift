// The "mktme" key type's instantiate, update and destroy methods (security/keys/mktme_keys.c),
// and the key lookup encrypt_mprotect() does.
//
// Instantiate: reserve the lowest free KeyID (ENOKEY if none), program it through PCONFIG
// (user: SET_KEY_DIRECT with the data and tweak keys; cpu: SET_KEY_RANDOM with the optional
// entropy XORed with kernel random bytes, the same 16 bytes into both fields as the series
// did; clear: CLEAR_KEY; no-encrypt: NO_ENCRYPT), retrying busy/entropy failures; any failure
// gives the KeyID back and fails with ENOKEY. Success takes the key's own reference (count 1).
// Update (2018 RFC v2): EBUSY while anything but the key itself references the KeyID, else
// reprogram the same KeyID (ENOKEY on failure). Destroy: see KeyGarbageCollector.swift.
//
// Invariant: key material (user keys, entropy, kernel random bytes) lives only in SecretBytes
// that are zeroized as soon as PCONFIG returns; the key keeps no material.

import KeyMMBase

extension KeyService {
    /// Builds the PCONFIG request for `payload`, runs it on `keyid`, zeroizes every secret.
    private func programPayload(_ keyid: KeyID, _ payload: MKTMEPayload) -> KeyProgramStatus {
        var scratch: [SecretBytes] = []
        defer { for s in scratch { s.zeroize() } }
        let command: KeyProgramCommand
        switch payload.mode {
        case .user:
            guard let data = payload.dataKey, let tweak = payload.tweakKey else { return .invalidProgCmd }
            command = .setKeyDirect(dataKey: data, tweakKey: tweak)
        case .cpu:
            let data = payload.dataKey?.copy() ?? SecretBytes(zeroedCount: mktmeAESXTSKeySize)
            let tweak = payload.tweakKey?.copy() ?? SecretBytes(zeroedCount: mktmeAESXTSKeySize)
            let kernelEntropy = entropyRandom.secretBytes(mktmeAESXTSKeySize)
            scratch = [data, tweak, kernelEntropy]
            retain(scratch)
            data.xor(with: kernelEntropy)
            tweak.xor(with: kernelEntropy)
            command = .setKeyRandom(dataEntropy: data, tweakEntropy: tweak)
        case .clear:
            command = .clearKey
        case .noEncrypt:
            command = .noEncrypt
        }
        return references.program(keyid, command)
    }

    /// mktme_instantiate_key().
    func mktmeInstantiate(_ key: Key, _ payload: MKTMEPayload) -> Result<Void, Errno> {
        defer { payload.zeroize() }
        guard let keyid = references.reserve(for: key.serial) else { return .failure(.ENOKEY) }
        guard programPayload(keyid, payload) == .success else {
            references.cancelReservation(keyid)
            return .failure(.ENOKEY)
        }
        key.keyid = keyid
        key.mktmeMode = payload.mode
        references.activate(keyid, for: key.serial)
        return .success(())
    }

    /// mktme_update_key(): reprogram the key's KeyID if only the key itself references it.
    func mktmeUpdate(_ key: Key, _ payload: MKTMEPayload) -> Result<Void, Errno> {
        defer { payload.zeroize() }
        guard let keyid = key.keyid else { return .failure(.EINVAL) }
        guard references.count(keyid) <= 1 else { return .failure(.EBUSY) }
        guard programPayload(keyid, payload) == .success else { return .failure(.ENOKEY) }
        key.mktmeMode = payload.mode
        return .success(())
    }

    /// encrypt_mprotect()'s key step: lookup_user_key(serial, KEY_NEED_VIEW) (ENOKEY no such or
    /// invalidated key, EKEYREVOKED revoked, EACCES no view permission, EINVAL a bad special id),
    /// then the key must be a live "mktme" key with a KeyID (EINVAL). The page-alignment check
    /// of len comes before this, in the kernel.
    public func keyidForEncryptMprotect(serial: KeySerial, cred: Credentials, process: ProcessKeyrings) -> Result<KeyID, Errno> {
        switch lookup(serial, need: .view, cred: cred, process: process) {
        case .failure(let e):
            return .failure(e)
        case .success(let r):
            guard r.key.type == .mktme, let keyid = r.key.keyid, case .inUse = references.state(keyid) else {
                return .failure(.EINVAL)
            }
            return .success(keyid)
        }
    }

    /// ``keyidForEncryptMprotect(serial:cred:process:)`` with the raw key_serial_t.
    @_disfavoredOverload
    public func keyidForEncryptMprotect(serial: Int32, cred: Credentials, process: ProcessKeyrings) -> Result<KeyID, Errno> {
        keyidForEncryptMprotect(serial: KeySerial(serial), cred: cred, process: process)
    }
}
