// KeyService: the model's kernel key management (security/keys): the keys by serial, the
// per-process and per-UID keyrings, lookup_user_key() with possession and permission checks,
// and the owner of the KeyID references of the "mktme" key type.
//
// Invariants: every live key is in `keys` under its serial; a key is reachable by serial until
// the garbage collector destroys it; nothing is ever iterated in Dictionary order (the model is
// deterministic: serials come from a seeded generator, collection runs in serial order);
// errors are Linux's errno, in Linux's order (see docs/keys.md).

import KeyMMBase

/// The key service: keyrings, the `user` and `mktme` key types, KeyID references.
public final class KeyService {
    /// The per-KeyID reference counts and key <-> KeyID map (what the kernel calls get/put on).
    public let references: KeyIDReferences
    /// False models PATCHv2: no `type=user` (nor `clear`), no `key=`/`tweak=` options.
    public let userKeysEnabled: Bool
    /// Seconds a revoked key lingers before the collector destroys it (key_gc_delay).
    public var gcDelay: Int64 = 300
    /// Modeled time in seconds (advanced by ``advanceTime(by:)``).
    public internal(set) var now: Int64 = 0

    var keys: [KeySerial: Key] = [:]
    var processes: [Int32: ProcessKeyringState] = [:]
    /// Per-UID keyrings: uid -> (user keyring, user-session keyring).
    var userKeyrings: [UInt32: (user: KeySerial, session: KeySerial)] = [:]
    private var serialRandom: SeededRandom
    var entropyRandom: SeededRandom

    /// Test hook: when true, every secret buffer the service creates is also kept here, so a
    /// test can check that it was zeroized when the key died.
    @_spi(Testing) public var retainSecretsForTesting = false
    @_spi(Testing) public internal(set) var retainedSecrets: [SecretBytes] = []

    /// A key service over `programmer` (the hardware's KeyID table or a fake) for the MKTME
    /// KeyIDs `keyids` (nil or empty: the "mktme" key type is not registered: ENODEV).
    /// `seed` makes serial numbers and CPU-key entropy deterministic.
    public init(programmer: any KeyProgrammer, keyids: ClosedRange<UInt16>?, userKeysEnabled: Bool = true, seed: UInt64 = 0) {
        let usable = keyids.flatMap { $0.lowerBound == 0 ? ($0.upperBound >= 1 ? 1...$0.upperBound : nil) : $0 }
        references = KeyIDReferences(range: usable, programmer: programmer)
        self.userKeysEnabled = userKeysEnabled
        serialRandom = SeededRandom(seed: seed ^ 0x6B65_7973_6572_6961)   // "keyseria"
        entropyRandom = SeededRandom(seed: seed ^ 0x6D6B_746D_6572_6E67)  // "mktmerng"
    }

    /// Whether the "mktme" key type is registered (there are MKTME KeyIDs).
    public var mktmeAvailable: Bool { references.range != nil }

    func retain(_ secrets: [SecretBytes]) {
        if retainSecretsForTesting { retainedSecrets.append(contentsOf: secrets) }
    }

    // MARK: keys

    /// The live key with this serial, if any (no permission check: for the kernel and checkers).
    public func key(_ serial: KeySerial) -> Key? { keys[serial] }

    /// Serials of all live keys, ascending.
    public var serials: [KeySerial] { keys.keys.sorted() }

    /// key_alloc_serial(): `requested` if it is a free positive serial, else a pseudo-random
    /// positive serial (>= 3, as Linux) not in use.
    func allocateSerial(requested: KeySerial? = nil) -> KeySerial {
        if let requested, requested.rawValue >= 1, keys[requested] == nil { return requested }
        while true {
            let s = KeySerial(Int32(truncatingIfNeeded: serialRandom.next() >> 33))
            if s.rawValue >= 3, keys[s] == nil { return s }
        }
    }

    /// Creates a keyring (no quota: the kernel's own keyrings are KEY_ALLOC_QUOTA_OVERRUN).
    func makeKeyring(_ description: String, uid: UInt32, gid: UInt32?, perm: KeyPerm) -> Key {
        let ring = Key(serial: allocateSerial(), type: .keyring, description: description, uid: uid, gid: gid, perm: perm)
        keys[ring.serial] = ring
        return ring
    }

    /// look_up_user_keyrings(): the UID's keyring and UID-session keyring, created on first use.
    func userKeyrings(for uid: UInt32) -> (user: Key, session: Key) {
        if let pair = userKeyrings[uid], let u = keys[pair.user], let s = keys[pair.session] { return (u, s) }
        // Per-UID keyrings: KEY_POS_ALL & ~KEY_POS_SETATTR | KEY_USR_ALL, gid INVALID_GID.
        let perm = KeyPerm(rawValue: 0x1f3f_0000)
        let user = makeKeyring("_uid.\(uid)", uid: uid, gid: nil, perm: perm)
        let session = makeKeyring("_uid_ses.\(uid)", uid: uid, gid: nil, perm: perm)
        user.pinned = true
        session.pinned = true
        link(user, into: session)
        userKeyrings[uid] = (user.serial, session.serial)
        return (user, session)
    }

    // MARK: keyring links

    /// __key_link(): links `key` into `keyring`, displacing a key of the same type and
    /// description (whose link is dropped).
    func link(_ key: Key, into keyring: Key) {
        if let i = keyring.links.firstIndex(where: { s in
            guard let other = keys[s] else { return false }
            return other.type == key.type && other.keyDescription == key.keyDescription
        }) {
            let displaced = keyring.links.remove(at: i)
            keys[displaced].map { $0.linkCount -= 1 }
        }
        keyring.links.append(key.serial)
        key.linkCount += 1
    }

    /// Removes the link to `key` from `keyring`; false if there was none.
    @discardableResult
    func unlinkKey(_ key: KeySerial, from keyring: Key) -> Bool {
        guard let i = keyring.links.firstIndex(of: key) else { return false }
        keyring.links.remove(at: i)
        keys[key].map { $0.linkCount -= 1 }
        return true
    }

    // MARK: lookup_user_key

    /// How a lookup treats the key (KEY_LOOKUP_CREATE, KEY_LOOKUP_PARTIAL, KEY_NEED_UNLINK).
    struct LookupMode {
        var create = false
        /// KEY_NEED_UNLINK: no validation and no permission check.
        var forUnlink = false
    }

    /// lookup_user_key(): resolves `id` (a serial or KEY_SPEC_*) for the caller, then
    /// validates the key (ENOKEY invalidated, EKEYREVOKED revoked) and checks `need`
    /// (EACCES). Returns the key and whether the caller possesses it.
    func lookup(_ id: KeySerial, need: KeyNeed, cred: Credentials, process: ProcessKeyrings,
                mode: LookupMode = LookupMode()) -> Result<(key: Key, possessed: Bool), Errno> {
        var state = processes[process.pid] ?? ProcessKeyringState()
        var stateChanged = false
        defer { if stateChanged { processes[process.pid] = state } }
        let key: Key
        var possessed = true
        switch id.rawValue {
        case -1, -2:
            let current = id.rawValue == -1 ? state.thread : state.process
            if let s = current, let ring = keys[KeySerial(s)] {
                key = ring
            } else {
                guard mode.create else { return .failure(.ENOKEY) }
                // install_thread_keyring / install_process_keyring: KEY_POS_ALL | KEY_USR_VIEW.
                let ring = makeKeyring(id.rawValue == -1 ? "_tid" : "_pid", uid: cred.uid, gid: cred.gid,
                                       perm: [.posAll, .usrView])
                ring.processRefs += 1
                if id.rawValue == -1 { state.thread = ring.serial.rawValue } else { state.process = ring.serial.rawValue }
                stateChanged = true
                key = ring
            }
        case -3:
            if let s = state.session, let ring = keys[KeySerial(s)] {
                key = ring
            } else {
                let ring: Key
                if mode.create {
                    // join_session_keyring(NULL): a new anonymous session keyring.
                    ring = makeKeyring("_ses", uid: cred.uid, gid: cred.gid, perm: [.posAll, .usrView, .usrRead])
                } else {
                    // install_session_keyring(user_session): the UID-session keyring.
                    ring = userKeyrings(for: cred.uid).session
                }
                ring.processRefs += 1
                state.session = ring.serial.rawValue
                stateChanged = true
                key = ring
            }
        case -4:
            key = userKeyrings(for: cred.uid).user
        case -5:
            key = userKeyrings(for: cred.uid).session
        case -7, -8:
            return .failure(.ENOKEY)
        case ...0:
            return .failure(.EINVAL)
        default:
            guard let k = keys[id] else { return .failure(.ENOKEY) }
            key = k
            possessed = possesses(k, cred: cred, process: process)
        }
        if mode.forUnlink { return .success((key, possessed)) }
        if let error = key.validationError { return .failure(error) }
        guard keyPermits(perm: key.perm, uid: key.uid, gid: key.gid, cred: cred, possessed: possessed, need: need) else {
            return .failure(.EACCES)
        }
        return .success((key, possessed))
    }

    /// Whether the caller possesses `key`: it is linked, directly or through nested keyrings the
    /// caller may search, from the caller's thread, process and session keyrings (the UID-session
    /// keyring when there is no session keyring), as search_process_keyrings() finds it.
    func possesses(_ key: Key, cred: Credentials, process: ProcessKeyrings) -> Bool {
        let state = processes[process.pid] ?? ProcessKeyringState()
        var roots: [KeySerial] = [state.thread, state.process].compactMap { $0.map { KeySerial($0) } }
        if let s = state.session { roots.append(KeySerial(s)) } else { roots.append(userKeyrings(for: cred.uid).session.serial) }
        // Fast path: linked directly from one of the roots (the common case).
        for r in roots {
            if let ring = keys[r], ring.links.contains(key.serial), ring.validationError == nil,
               keyPermits(perm: ring.perm, uid: ring.uid, gid: ring.gid, cred: cred, possessed: true, need: .search) {
                return true
            }
        }
        var visited: Set<KeySerial> = []
        var queue = roots
        var head = 0
        while head < queue.count {
            let s = queue[head]
            head += 1
            guard visited.insert(s).inserted, let ring = keys[s], ring.type == .keyring,
                  ring.validationError == nil,
                  keyPermits(perm: ring.perm, uid: ring.uid, gid: ring.gid, cred: cred, possessed: true, need: .search)
            else { continue }
            for child in ring.links {
                if child == key.serial { return true }
                if keys[child]?.type == .keyring { queue.append(child) }
            }
        }
        return false
    }

    /// lookup_user_key(id, 0, need) for the kernel: the key, or ENOKEY (no such key, or
    /// invalidated), EKEYREVOKED (revoked), EACCES (no `need` permission), EINVAL (bad id).
    public func lookupUserKey(_ id: KeySerial, need: KeyNeed, cred: Credentials, process: ProcessKeyrings) -> Result<Key, Errno> {
        lookup(id, need: need, cred: cred, process: process).map(\.key)
    }

    /// ``lookupUserKey(_:need:cred:process:)`` with the raw key_serial_t.
    @_disfavoredOverload
    public func lookupUserKey(_ id: Int32, need: KeyNeed, cred: Credentials, process: ProcessKeyrings) -> Result<Key, Errno> {
        lookupUserKey(KeySerial(id), need: need, cred: cred, process: process)
    }
}
