// The keyring garbage collector (security/keys/gc.c) on modeled time: when keys die and what
// their destruction releases.
//
// Rules: an invalidated key is unlinked from every keyring at once and destroyed as soon as
// nothing else holds it; a revoked key stays linked (lookups say EKEYREVOKED) until
// `gcDelay` seconds (key_gc_delay, 300 s) after the revocation, then it is unlinked and
// destroyed; any key whose last link and last process reference are gone is destroyed.
// Destroying a keyring drops its links (which may kill more keys); destroying a `user` key
// zeroizes its payload; destroying an `mktme` key runs the type's destroy: the KeyID is marked
// dead and the key's reference dropped (it is freed when the count reaches zero).
//
// Simplification: Linux runs the collector asynchronously (a work item), so a key can linger
// for microseconds after its last link went; the model collects synchronously at the end of
// every operation that can kill a key, which is what any later syscall observes.
// Invariant: collection visits keys in ascending serial order (determinism).

import KeyMMBase

extension KeyService {
    /// Advances modeled time by `seconds` (negative values are ignored) and collects garbage.
    public func advanceTime(by seconds: Int64) {
        if seconds > 0 { now += seconds }
        collectGarbage()
    }

    /// Sets modeled time to `now` if later than the current time, then collects garbage.
    public func collectGarbage(now newNow: Int64) {
        if newNow > now { now = newNow }
        collectGarbage()
    }

    /// key_gc_delay has passed since the key's revocation.
    func revocationExpired(_ key: Key) -> Bool {
        guard let t = key.revokedAt else { return false }
        let (deadline, overflow) = t.addingReportingOverflow(gcDelay)
        return !overflow && deadline <= now
    }

    /// One full collection at the current time.
    public func collectGarbage() {
        // 1. keyring_gc(): drop links to invalidated keys and to revoked keys past the delay.
        let doomed = Set(keys.values.lazy.filter { $0.isInvalidated || self.revocationExpired($0) }.map(\.serial))
        if !doomed.isEmpty {
            for serial in keys.keys.sorted() {
                guard let ring = keys[serial], ring.type == .keyring, !ring.links.isEmpty else { continue }
                for child in ring.links where doomed.contains(child) { unlinkKey(child, from: ring) }
            }
        }
        // 2. Destroy every key nothing holds, until none is left (destroying a keyring can
        //    free its children).
        var pending = keys.values.lazy.filter { $0.usage == 0 }.map(\.serial).sorted()
        while !pending.isEmpty {
            var next: [KeySerial] = []
            for serial in pending {
                guard let key = keys[serial], key.usage == 0 else { continue }
                next.append(contentsOf: destroy(key).filter { keys[$0]?.usage == 0 })
            }
            pending = next.sorted()
        }
    }

    /// key_gc_unused_keys(): the type's destroy, then the key is gone. Returns the serials of keys
    /// whose links it dropped.
    private func destroy(_ key: Key) -> [KeySerial] {
        keys[key.serial] = nil
        key.isDead = true
        var released: [KeySerial] = []
        switch key.type {
        case .keyring:
            released = key.links
            for child in key.links { keys[child].map { $0.linkCount -= 1 } }
            key.links = []
        case .user:
            key.userPayload?.zeroize()
            key.userPayload = nil
        case .mktme:
            // mktme_destroy_key(): mark the KeyID dead and kill its reference.
            if let keyid = key.keyid { references.kill(keyid) }
        }
        return released
    }
}
