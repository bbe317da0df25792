// KeyID lifetime (docs/sources.md, seed 000): one reference count per KeyID, the key's own reference, VMA and
// page references, release only at zero after the key died, CLEAR_KEY on release, reuse,
// exhaustion, PCONFIG retries, UPDATE's EBUSY, anomalies and events.
import Testing
import KeyMMBase
import KeyMMKeys

@Suite struct KeyIDLifetimeTests {
    @Test func keyOwnsOneReferenceAndEncryptMprotectFindsItsKeyID() throws {
        let (s, _) = makeService()
        let k = try #require(s.addMKTME("k", "type=cpu algorithm=aes-xts-128").value)
        let keyid = try #require(s.key(k)?.keyid)
        #expect(keyid == KeyID(1))
        #expect(s.references.count(keyid) == 1)
        #expect(s.references.state(keyid) == .inUse(k))
        #expect(s.keyidForEncryptMprotect(serial: k, cred: root, process: p1).value == keyid)
        #expect(s.keyidForEncryptMprotect(serial: k.rawValue, cred: root, process: p1).value == keyid)
    }

    @Test func encryptMprotectLookupErrors() throws {
        let (s, _) = makeService()
        let u = try #require(s.addKey(type: "user", description: "u", payload: "x", keyring: .processKeyring, cred: root, process: p1).value)
        #expect(s.keyidForEncryptMprotect(serial: u, cred: root, process: p1).error == .EINVAL, "not an mktme key")
        #expect(s.keyidForEncryptMprotect(serial: .processKeyring, cred: root, process: p1).error == .EINVAL, "a keyring")
        #expect(s.keyidForEncryptMprotect(serial: .threadKeyring, cred: root, process: p1).error == .ENOKEY)
        #expect(s.keyidForEncryptMprotect(serial: 31337, cred: root, process: p1).error == .ENOKEY)
        #expect(s.keyidForEncryptMprotect(serial: 0, cred: root, process: p1).error == .EINVAL)
        let k = try #require(s.addMKTME("k", "type=cpu algorithm=aes-xts-128").value)
        let stranger = Credentials(uid: 4242, gid: 4242, capabilities: .all)
        #expect(s.keyidForEncryptMprotect(serial: k, cred: stranger, process: ProcessKeyrings(pid: 5)).error == .EACCES)
        _ = s.revoke(k, cred: root, process: p1)
        #expect(s.keyidForEncryptMprotect(serial: k, cred: root, process: p1).error == .EKEYREVOKED)
        let k2 = try #require(s.addMKTME("k2", "type=cpu algorithm=aes-xts-128").value)
        _ = s.invalidate(k2, cred: root, process: p1)
        #expect(s.keyidForEncryptMprotect(serial: k2, cred: root, process: p1).error == .ENOKEY)
    }

    @Test func keyidOutlivesKeyWhileVMAsPagesAndPinsHoldIt() throws {
        let (s, fake) = makeService()
        let k = try #require(s.addMKTME("k", "type=cpu algorithm=aes-xts-128").value)
        let keyid = try #require(s.key(k)?.keyid)
        let refs = s.references
        refs.get(keyid)            // mmap / encrypt_mprotect: one VMA
        refs.get(keyid)            // vm_area_dup at fork
        refs.get(keyid, 1 << 9)    // a THP prepared with the KeyID
        refs.get(keyid, 1)         // a 4K page, later pinned by gup
        #expect(refs.count(keyid) == 1 + 2 + 512 + 1)
        // The key dies (invalidate): the slot is dead, the key's own reference gone, no CLEAR yet.
        _ = s.invalidate(k, cred: root, process: p1)
        #expect(s.key(k) == nil)
        #expect(refs.state(keyid) == .dead(k))
        #expect(refs.count(keyid) == 515)
        #expect(fake.kinds(keyid) == [.setKeyRandom])
        // VMAs go; the huge page is split and freed as 4K pages.
        refs.put(keyid); refs.put(keyid)
        for _ in 0..<512 { refs.put(keyid, 1) }
        #expect(refs.count(keyid) == 1)
        #expect(refs.state(keyid) == .dead(k), "the pinned page still holds the KeyID")
        #expect(s.addMKTME("other", "type=cpu algorithm=aes-xts-128").value.flatMap { s.key($0)?.keyid } == KeyID(2),
                "a dead KeyID is not handed out")
        // gup_unpin + free of the last page: released, reprogrammed with CLEAR_KEY, free.
        refs.put(keyid)
        #expect(refs.count(keyid) == 0)
        #expect(refs.state(keyid) == .free)
        #expect(fake.kinds(keyid) == [.setKeyRandom, .clearKey])
        #expect(refs.anomalies.isEmpty)
    }

    @Test func freedKeyIDIsReusedAndReprogrammed() throws {
        let (s, fake) = makeService(keyids: 1...2)
        let a = try #require(s.addMKTME("a", userOptions).value)
        _ = try #require(s.addMKTME("b", "type=no-encrypt").value)
        #expect(s.addMKTME("c", "type=cpu algorithm=aes-xts-128").error == .ENOKEY)
        _ = s.invalidate(a, cred: root, process: p1)
        let c = try #require(s.addMKTME("c", "type=cpu algorithm=aes-xts-128").value)
        #expect(s.key(c)?.keyid == KeyID(1))
        #expect(fake.kinds(KeyID(1)) == [.setKeyDirect, .clearKey, .setKeyRandom])
        #expect(s.references.programCount(KeyID(1)) == 3)
        #expect(s.references.state(KeyID(1)) == .inUse(c))
    }

    @Test func exhaustionIsENOKEYAndDefaultRangeHas63() throws {
        let (s, _) = makeService()
        for i in 0..<63 { #expect(s.addMKTME("k\(i)", "type=no-encrypt").value != nil) }
        #expect(s.references.freeCount == 0)
        #expect(s.addMKTME("one-too-many", "type=no-encrypt").error == .ENOKEY)
        let (small, _) = makeService(keyids: 5...6)
        #expect(small.addMKTME("a", "type=no-encrypt").value.flatMap { small.key($0)?.keyid } == KeyID(5))
        #expect(small.addMKTME("b", "type=no-encrypt").value.flatMap { small.key($0)?.keyid } == KeyID(6))
        #expect(small.addMKTME("c", "type=no-encrypt").error == .ENOKEY)
    }

    @Test func busyAndEntropyErrorsAreRetriedTenTimes() throws {
        let (s, fake) = makeService()
        fake.script = Array(repeating: .deviceBusy, count: 9)
        let a = try #require(s.addMKTME("a", "type=cpu algorithm=aes-xts-128").value, "success on the 10th attempt")
        #expect(fake.calls.count == 10)
        #expect(s.key(a)?.keyid == KeyID(1))
        fake.script = Array(repeating: .entropyError, count: 5) + Array(repeating: .deviceBusy, count: 4)
        #expect(s.addMKTME("b", "type=cpu algorithm=aes-xts-128").value != nil)
        fake.script = Array(repeating: .deviceBusy, count: 10)
        let before = fake.calls.count
        #expect(s.addMKTME("c", "type=cpu algorithm=aes-xts-128").error == .ENOKEY)
        #expect(fake.calls.count - before == 10)
        #expect(s.references.state(KeyID(3)) == .free, "the reservation was given back")
        fake.script = Array(repeating: .entropyError, count: 10)
        #expect(s.addMKTME("d", "type=cpu algorithm=aes-xts-128").error == .ENOKEY)
        // Non-retried errors fail at once.
        for status in [KeyProgramStatus.invalidProgCmd, .invalidKeyID, .invalidEncAlg] {
            fake.script = [status]
            let n = fake.calls.count
            #expect(s.addMKTME("e", "type=cpu algorithm=aes-xts-128").error == .ENOKEY)
            #expect(fake.calls.count - n == 1)
        }
        #expect(s.references.freeCount == 61)
    }

    @Test func revokedKeyKeepsKeyIDUntilGCDelayThenFreedIfUnreferenced() throws {
        let (s, fake) = makeService()
        let k = try #require(s.addMKTME("k", "type=cpu algorithm=aes-xts-128").value)
        let j = try #require(s.addMKTME("j", "type=cpu algorithm=aes-xts-128").value)
        let kid = try #require(s.key(k)?.keyid), jid = try #require(s.key(j)?.keyid)
        s.references.get(jid)           // j's KeyID is still used by a VMA
        _ = s.revoke(k, cred: root, process: p1)
        _ = s.revoke(j, cred: root, process: p1)
        s.advanceTime(by: 100)
        #expect(s.keyidForEncryptMprotect(serial: k, cred: root, process: p1).error == .EKEYREVOKED)
        #expect(s.references.state(kid) == .inUse(k), "a revoked key keeps its KeyID until destroyed")
        s.collectGarbage(now: 300)
        #expect(s.keyidForEncryptMprotect(serial: k, cred: root, process: p1).error == .ENOKEY)
        #expect(s.references.state(kid) == .free)
        #expect(fake.kinds(kid).last == .clearKey)
        #expect(s.references.state(jid) == .dead(j), "referenced: dead, not freed")
        s.references.put(jid)
        #expect(s.references.state(jid) == .free)
    }

    @Test func updateIsEBUSYWhileInUseAndReprogramsOtherwise() throws {
        let (s, fake) = makeService()
        let k = try #require(s.addMKTME("k", "type=cpu algorithm=aes-xts-128").value)
        let keyid = try #require(s.key(k)?.keyid)
        s.references.get(keyid)
        #expect(s.update(k, payload: "type=no-encrypt", cred: root, process: p1).error == .EBUSY)
        // add_key with the same description in the same keyring is an update too.
        #expect(s.addMKTME("k", "type=no-encrypt").error == .EBUSY)
        #expect(fake.kinds(keyid) == [.setKeyRandom])
        s.references.put(keyid)
        #expect(s.update(k, payload: userOptions, cred: root, process: p1).value != nil)
        #expect(s.key(k)?.mktmeMode == .user)
        #expect(s.addMKTME("k", "type=no-encrypt").value == k)
        #expect(fake.kinds(keyid) == [.setKeyRandom, .setKeyDirect, .noEncrypt])
        // Update errors: options and capability come before EBUSY.
        s.references.get(keyid)
        #expect(s.update(k, payload: "type=cpu", cred: root, process: p1).error == .EINVAL)
        let weak = Credentials(uid: 0, gid: 0, capabilities: [])
        #expect(s.update(k, payload: "type=no-encrypt", cred: weak, process: p1).error == .EACCES)
        s.references.put(keyid)
        fake.script = Array(repeating: .deviceBusy, count: 10)
        #expect(s.update(k, payload: "type=no-encrypt", cred: root, process: p1).error == .ENOKEY)
    }

    @Test func processExitDestroysKeysOnlyItsKeyringHeld() throws {
        let (s, _) = makeService()
        let p2 = ProcessKeyrings(pid: 2)
        let k = try #require(s.addMKTME("k", "type=cpu algorithm=aes-xts-128", process: p2).value)
        let keyid = try #require(s.key(k)?.keyid)
        s.references.get(keyid, 4)       // pages still mapped somewhere
        s.exit(p2)
        #expect(s.key(k) == nil)
        #expect(s.references.state(keyid) == .dead(k))
        s.references.put(keyid, 4)
        #expect(s.references.state(keyid) == .free)
    }

    @Test func imbalancesAreRecordedNotFatal() throws {
        let (s, _) = makeService(keyids: 1...3)
        let k = try #require(s.addMKTME("k", "type=no-encrypt").value)
        let keyid = try #require(s.key(k)?.keyid)
        let refs = s.references
        refs.put(keyid)                          // would drop the live key's own reference
        #expect(refs.count(keyid) == 1)
        #expect(refs.anomalies.last?.kind == .liveKeyReferenceDropped)
        refs.put(KeyID(2))                       // free KeyID, count 0
        #expect(refs.count(KeyID(2)) == 0)
        #expect(refs.anomalies.last?.kind == .putBelowZero)
        refs.get(KeyID(3))                       // use of a free KeyID
        #expect(refs.anomalies.last?.kind == .getOnFreeKeyID)
        #expect(s.addMKTME("x", "type=no-encrypt").value.flatMap { s.key($0)?.keyid } == KeyID(2),
                "KeyID 3 is referenced, so it is skipped")
        #expect(s.addMKTME("y", "type=no-encrypt").error == .ENOKEY)
        refs.get(KeyID(9))
        #expect(refs.anomalies.last?.kind == .outOfRange)
        let n = refs.anomalies.count
        refs.get(KeyID.tme, 8); refs.put(KeyID.tme, 8)   // KeyID 0 is not counted
        #expect(refs.anomalies.count == n)
        #expect(s.snapshot().anomalies.count == n)
    }

    @Test func eventsLetACheckerVerifyNoReprogrammingWhileReferenced() throws {
        let (s, _) = makeService(keyids: 1...1)
        var events: [KeyIDEvent] = []
        s.references.onKeyIDEvent = { events.append($0) }
        let a = try #require(s.addMKTME("a", "type=cpu algorithm=aes-xts-128").value)
        s.references.get(KeyID(1), 2)
        #expect(s.update(a, payload: "type=no-encrypt", cred: root, process: p1).error == .EBUSY)
        _ = s.invalidate(a, cred: root, process: p1)
        s.references.put(KeyID(1), 2)
        _ = try #require(s.addMKTME("b", "type=no-encrypt").value)
        let programs = events.compactMap { e -> (KeyProgramKind, Int)? in
            if case let .programmed(_, kind, status, _, others) = e, status == .success { return (kind, others) }
            return nil
        }
        #expect(programs.map(\.0) == [.setKeyRandom, .clearKey, .noEncrypt])
        #expect(programs.allSatisfy { $0.1 == 0 }, "never reprogrammed while referenced")
        #expect(events.contains(.killed(KeyID(1), a, count: 2)))
        #expect(events.contains(.released(KeyID(1))))
        let slot = try #require(s.references.slots.first)
        #expect(slot.state == "in-use" && slot.count == 1 && slot.programCount == 3 && slot.lastProgram == "NO_ENCRYPT")
    }
}

@Suite struct KeyIDReferenceRandomTests {
    /// Random balanced get/put traffic (VMA-like 1s and page-like 2^order) on several keys, with
    /// and without an observer (slow and fast paths), against a plain dictionary of expected
    /// counts: counts agree, no anomaly, each KeyID is released exactly once after its key died.
    @Test(arguments: [false, true])
    func randomBalancedTrafficMatchesAReferenceModel(observed: Bool) throws {
        var rng: UInt64 = 0x1234_5678
        func next(_ n: Int) -> Int {
            rng &+= 0x9E37_79B9_7F4A_7C15
            var z = rng
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return Int((z ^ (z >> 31)) % UInt64(n))
        }
        let (s, fake) = makeService(keyids: 1...4)
        var released: [KeyID] = []
        if observed {
            s.references.onKeyIDEvent = { if case .released(let k) = $0 { released.append(k) } }
        }
        var serials: [KeySerial] = []
        for i in 0..<4 { serials.append(try #require(s.addMKTME("k\(i)", "type=no-encrypt").value)) }
        let keyids = serials.compactMap { s.key($0)?.keyid }
        var held: [KeyID: [Int]] = [:]          // outstanding references, as amounts
        for step in 0..<4000 {
            let k = keyids[next(keyids.count)]
            // After the keys died (step 2000) new references only come from existing users
            // (vm_area_dup of a VMA, a split): a released KeyID gets none.
            let mayGet = step <= 2000 || !held[k, default: []].isEmpty
            if mayGet && (next(2) == 0 || held[k, default: []].isEmpty) {
                let n = next(3) == 0 ? 1 << next(10) : 1
                s.references.get(k, n)
                held[k, default: []].append(n)
            } else if !held[k, default: []].isEmpty {
                let j = next(held[k]!.count)
                s.references.put(k, held[k]!.remove(at: j))
            }
            if step == 2000 {
                for serial in serials { _ = s.invalidate(serial, cred: root, process: p1) }
            }
            let own = step < 2000 ? 1 : 0
            #expect(s.references.count(k) == held[k, default: []].reduce(own, +))
        }
        for k in keyids { for n in held[k, default: []] { s.references.put(k, n) } }
        #expect(s.references.anomalies.isEmpty)
        for k in keyids {
            #expect(s.references.state(k) == .free)
            #expect(fake.kinds(k).filter { $0 == .clearKey }.count == 1)
        }
        if observed { #expect(Set(released) == Set(keyids) && released.count == 4) }
    }
}
