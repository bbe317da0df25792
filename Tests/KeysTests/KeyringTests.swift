// Keyring basics: serials, KEY_SPEC_* keyrings created on demand, lookup errors, permissions and
// possession, DESCRIBE, add_key-updates-existing, UNLINK, INVALIDATE, REVOKE with the GC delay,
// fork/exec/exit.
import Testing
import KeyMMBase
import KeyMMKeys

@Suite struct KeyringTests {
    let nobody = Credentials(uid: 1000, gid: 1000, capabilities: [])

    @Test func addKeyCreatesProcessKeyringOnDemandAndDescribeFormat() throws {
        let (s, _) = makeService()
        #expect(s.keyrings(of: p1).process == nil)
        #expect(s.describe(.processKeyring, cred: root, process: p1).error == .ENOKEY)
        let k = try #require(s.addKey(type: "user", description: "desc", payload: "abc", keyring: .processKeyring, cred: root, process: p1).value)
        #expect(k.rawValue > 0)
        #expect(s.keyrings(of: p1).process != nil)
        #expect(s.describe(k, cred: root, process: p1).value == "user;0;0;3f010000;desc")
        #expect(s.describe(.processKeyring, cred: root, process: p1).value == "keyring;0;0;3f010000;_pid")
        #expect(s.describe(.userKeyring, cred: root, process: p1).value == "keyring;0;65534;1f3f0000;_uid.0")
        // No session keyring: KEY_SPEC_SESSION_KEYRING installs the UID-session keyring.
        #expect(s.describe(.sessionKeyring, cred: root, process: p1).value == "keyring;0;65534;1f3f0000;_uid_ses.0")
        #expect(s.describe(.userSessionKeyring, cred: root, process: p1).value == "keyring;0;65534;1f3f0000;_uid_ses.0")
        #expect(s.describe(.threadKeyring, cred: root, process: p1).error == .ENOKEY)
        let t = try #require(s.addKey(type: "user", description: "t", payload: "a", keyring: .threadKeyring, cred: root, process: p1).value)
        #expect(s.describe(.threadKeyring, cred: root, process: p1).value == "keyring;0;0;3f010000;_tid")
        #expect(s.key(t)?.type == .user)
        let m = try #require(s.addMKTME("m", "type=cpu algorithm=aes-xts-128").value)
        #expect(s.describe(m, cred: root, process: p1).value == "mktme;0;0;3d010000;m")
        let uid = Credentials(uid: 1000, gid: 100, capabilities: .sysAdmin)
        let m2 = try #require(s.addMKTME("m2", "type=no-encrypt", cred: uid, process: ProcessKeyrings(pid: 9)).value)
        #expect(s.describe(m2, cred: uid, process: ProcessKeyrings(pid: 9)).value == "mktme;1000;100;3d010000;m2")
    }

    @Test func addKeyIntoSessionCreatesAnonymousSessionKeyring() throws {
        let (s, _) = makeService()
        _ = try #require(s.addKey(type: "user", description: "s", payload: "a", keyring: .sessionKeyring, cred: root, process: p1).value)
        #expect(s.describe(.sessionKeyring, cred: root, process: p1).value == "keyring;0;0;3f030000;_ses")
    }

    @Test func addKeyArgumentErrors() {
        let (s, _) = makeService()
        func add(_ type: String, _ desc: String?, _ payload: [UInt8]?, _ ring: KeySerial = .processKeyring) -> Errno? {
            s.addKey(type: type, description: desc, payload: payload, keyring: ring, cred: root, process: p1).error
        }
        #expect(add("user", "", [1]) == .EINVAL)
        #expect(add("user", nil, [1]) == .EINVAL)
        #expect(add("user", "d", nil) == .EINVAL)
        #expect(add("user", "d", []) == .EINVAL)
        #expect(add("user", "d", Array(repeating: 7, count: 32767)) == nil)
        #expect(add("user", "d2", Array(repeating: 7, count: 32768)) == .EINVAL)
        #expect(add("", "d", [1]) == .EINVAL)
        #expect(add(String(repeating: "x", count: 32), "d", [1]) == .EINVAL)
        #expect(add(".x", "d", [1]) == .EPERM)
        #expect(add("nosuch", "d", [1]) == .ENODEV)
        #expect(add("keyring", ".d", nil) == .EPERM)
        #expect(add("keyring", "ring", [1]) == .EINVAL)
        #expect(add("user", String(repeating: "d", count: 4096), [1]) == .EINVAL)
        #expect(add("user", String(repeating: "d", count: 4095), [1]) == nil)
        #expect(add("user", "d", [1], KeySerial(0)) == .EINVAL)
        #expect(add("user", "d", [1], .groupKeyring) == .EINVAL)
        #expect(add("user", "d", [1], .reqkeyAuthKey) == .ENOKEY)
        #expect(add("user", "d", [1], .requestorKeyring) == .ENOKEY)
        #expect(add("user", "d", [1], KeySerial(99999)) == .ENOKEY)
        // The keyring lookup comes before the type lookup.
        #expect(add("nosuch", "d", [1], KeySerial(99999)) == .ENOKEY)
        let u = s.addKey(type: "user", description: "plain", payload: "x", keyring: .processKeyring, cred: root, process: p1).value!
        #expect(add("user", "d", [1], u) == .ENOTDIR)
    }

    @Test func addKeyWithSameDescriptionUpdatesUserKeyAndReplacesKeyring() throws {
        let (s, _) = makeService()
        let a = try #require(s.addKey(type: "user", description: "desc", payload: "abc", keyring: .processKeyring, cred: root, process: p1).value)
        let b = try #require(s.addKey(type: "user", description: "desc", payload: "xyzw", keyring: .processKeyring, cred: root, process: p1).value)
        #expect(a == b)
        #expect(s.key(a)?.payloadLength == 4)
        let r1 = try #require(s.addKey(type: "keyring", description: "r", payload: nil, keyring: .processKeyring, cred: root, process: p1).value)
        let r2 = try #require(s.addKey(type: "keyring", description: "r", payload: nil, keyring: .processKeyring, cred: root, process: p1).value)
        #expect(r1 != r2)
        #expect(s.key(r1) == nil, "the displaced keyring lost its only link and was collected")
        // A revoked key is not updated: a new key displaces it.
        _ = s.revoke(a, cred: root, process: p1)
        let c = try #require(s.addKey(type: "user", description: "desc", payload: "n", keyring: .processKeyring, cred: root, process: p1).value)
        #expect(c != a)
        #expect(s.key(a) == nil)
        #expect(s.describe(a, cred: root, process: p1).error == .ENOKEY)
    }

    @Test func serialsAreDeterministicAndRequestedSerialsHonoured() throws {
        let (a, _) = makeService(seed: 42)
        let (b, _) = makeService(seed: 42)
        for i in 0..<5 {
            let x = a.addKey(type: "user", description: "k\(i)", payload: "p", keyring: .processKeyring, cred: root, process: p1).value
            let y = b.addKey(type: "user", description: "k\(i)", payload: "p", keyring: .processKeyring, cred: root, process: p1).value
            #expect(x == y && x != nil)
            #expect(x.map { $0.rawValue >= 3 } == true)
        }
        let (s, _) = makeService()
        let k = try #require(s.addKey(type: "user", description: "a", payload: "p", keyring: .processKeyring, cred: root, process: p1, requestedSerial: 123456789).value)
        #expect(k == 123456789)
        let m = try #require(s.addKey(type: "mktme", description: "m", payload: "type=no-encrypt", keyring: .processKeyring, cred: root, process: p1, requestedSerial: 777).value)
        #expect(m == 777)
        #expect(s.references.state(KeyID(1)) == .inUse(777))
        // Taken: another serial is chosen.
        let k2 = try #require(s.addKey(type: "user", description: "b", payload: "p", keyring: .processKeyring, cred: root, process: p1, requestedSerial: 123456789).value)
        #expect(k2 != 123456789)
        // A failed add_key consumes nothing visible: the requested serial is still free.
        #expect(s.addMKTME("bad", "type=cpu").error == .EINVAL)
        #expect(s.key(888) == nil)
    }

    @Test func lookupErrorsAndPermissions() throws {
        let (s, _) = makeService()
        let k = try #require(s.addKey(type: "user", description: "k", payload: "p", keyring: .processKeyring, cred: root, process: p1).value)
        #expect(s.lookupUserKey(k, need: .view, cred: root, process: p1).value?.serial == k)
        #expect(s.lookupUserKey(424242, need: .view, cred: root, process: p1).error == .ENOKEY)
        #expect(s.lookupUserKey(0, need: .view, cred: root, process: p1).error == .EINVAL)
        #expect(s.lookupUserKey(-9, need: .view, cred: root, process: p1).error == .EINVAL)
        // Another uid, not possessing it: other bits are 0 -> EACCES, even with every capability.
        let other = Credentials(uid: 1000, gid: 1000, capabilities: .all)
        let p2 = ProcessKeyrings(pid: 2)
        #expect(s.lookupUserKey(k, need: .view, cred: other, process: p2).error == .EACCES)
        // Same uid, another process (not possessed): user bits give view only.
        #expect(s.lookupUserKey(k, need: .view, cred: root, process: p2).value != nil)
        #expect(s.lookupUserKey(k, need: .write, cred: root, process: p2).error == .EACCES)
        #expect(s.revoke(k, cred: root, process: p2).error == .EACCES)
        #expect(s.update(k, payload: "n", cred: root, process: p2).error == .EACCES)
        #expect(s.invalidate(k, cred: root, process: p2).error == .EACCES)
        // The possessor (its process keyring links it) may do all of it.
        #expect(s.lookupUserKey(k, need: [.view, .read, .write, .search, .link, .setattr], cred: root, process: p1).value != nil)
    }

    @Test func possessionThroughNestedKeyringsAndUserKeyring() throws {
        let (s, _) = makeService()
        let ring = try #require(s.addKey(type: "keyring", description: "nest", payload: nil, keyring: .processKeyring, cred: root, process: p1).value)
        let inner = try #require(s.addKey(type: "user", description: "in", payload: "p", keyring: ring, cred: root, process: p1).value)
        #expect(s.lookupUserKey(inner, need: .write, cred: root, process: p1).value != nil)
        // Keys in the user keyring are possessed through the UID-session keyring.
        let u = try #require(s.addKey(type: "user", description: "u", payload: "p", keyring: .userKeyring, cred: root, process: p1).value)
        #expect(s.lookupUserKey(u, need: .write, cred: root, process: ProcessKeyrings(pid: 77)).value != nil)
    }

    @Test func describeRules() throws {
        let (s, _) = makeService()
        let k = try #require(s.addKey(type: "user", description: "d", payload: "secret", keyring: .processKeyring, cred: root, process: p1).value)
        let other = Credentials(uid: 5, gid: 5, capabilities: .all)
        #expect(s.describe(k, cred: other, process: ProcessKeyrings(pid: 3)).error == .EACCES)
        #expect(s.describe(k, cred: root, process: p1).value?.contains("secret") == false)
        _ = s.revoke(k, cred: root, process: p1)
        #expect(s.describe(k, cred: root, process: p1).error == .EKEYREVOKED)
        // Revoked beats missing permission (validation comes first).
        #expect(s.describe(k, cred: other, process: ProcessKeyrings(pid: 3)).error == .EKEYREVOKED)
    }

    @Test func updateRules() throws {
        let (s, _) = makeService()
        let k = try #require(s.addKey(type: "user", description: "d", payload: "abc", keyring: .processKeyring, cred: root, process: p1).value)
        #expect(s.update(k, payload: [], cred: root, process: p1).error == .EINVAL)
        #expect(s.update(k, payload: Array(repeating: 1, count: 4097), cred: root, process: p1).error == .EINVAL)
        #expect(s.update(k, payload: Array(repeating: 1, count: 4096), cred: root, process: p1).value != nil)
        #expect(s.key(k)?.payloadLength == 4096)
        #expect(s.update(.processKeyring, payload: "a", cred: root, process: p1).error == .EOPNOTSUPP)
        _ = s.revoke(k, cred: root, process: p1)
        #expect(s.update(k, payload: "a", cred: root, process: p1).error == .EKEYREVOKED)
    }

    @Test func unlinkRules() throws {
        let (s, _) = makeService()
        let k = try #require(s.addKey(type: "user", description: "d", payload: "abc", keyring: .processKeyring, cred: root, process: p1).value)
        let ring = try #require(s.addKey(type: "keyring", description: "r", payload: nil, keyring: .processKeyring, cred: root, process: p1).value)
        #expect(s.unlink(k, from: ring, cred: root, process: p1).error == .ENOENT)
        #expect(s.unlink(k, from: k, cred: root, process: p1).error == .ENOTDIR)
        #expect(s.unlink(k, from: .threadKeyring, cred: root, process: p1).error == .ENOKEY)
        #expect(s.unlink(k, from: .processKeyring, cred: root, process: p1).value != nil)
        #expect(s.key(k) == nil, "last link gone: destroyed")
        #expect(s.unlink(k, from: .processKeyring, cred: root, process: p1).error == .ENOKEY)
        // A revoked key can still be unlinked (no validation for the key of an unlink).
        let r = try #require(s.addKey(type: "user", description: "r", payload: "abc", keyring: .processKeyring, cred: root, process: p1).value)
        _ = s.revoke(r, cred: root, process: p1)
        #expect(s.unlink(r, from: .processKeyring, cred: root, process: p1).value != nil)
        #expect(s.key(r) == nil)
        // Another uid's process may not write my keyring.
        let mine = try #require(s.addKey(type: "user", description: "m", payload: "abc", keyring: .processKeyring, cred: root, process: p1).value)
        #expect(s.unlink(mine, from: s.keyrings(of: p1).process.map { KeySerial($0) } ?? 0,
                         cred: Credentials(uid: 9, gid: 9, capabilities: .all), process: ProcessKeyrings(pid: 9)).error == .EACCES)
    }

    @Test func invalidateDestroysNow() throws {
        let (s, _) = makeService()
        let k = try #require(s.addKey(type: "user", description: "d", payload: "abc", keyring: .processKeyring, cred: root, process: p1).value)
        _ = try #require(s.addKey(type: "keyring", description: "second", payload: nil, keyring: .processKeyring, cred: root, process: p1).value)
        #expect(s.invalidate(k, cred: root, process: p1).value != nil)
        #expect(s.key(k) == nil)
        #expect(s.describe(k, cred: root, process: p1).error == .ENOKEY)
        #expect(s.invalidate(k, cred: root, process: p1).error == .ENOKEY)
        #expect(s.revoke(k, cred: root, process: p1).error == .ENOKEY)
    }

    @Test func revokeKeepsKeyUntilGCDelay() throws {
        let (s, _) = makeService()
        let k = try #require(s.addKey(type: "user", description: "d", payload: "abc", keyring: .processKeyring, cred: root, process: p1).value)
        #expect(s.revoke(k, cred: root, process: p1).value != nil)
        #expect(s.revoke(k, cred: root, process: p1).error == .EKEYREVOKED)
        #expect(s.invalidate(k, cred: root, process: p1).error == .EKEYREVOKED)
        s.advanceTime(by: 299)
        #expect(s.describe(k, cred: root, process: p1).error == .EKEYREVOKED)
        s.advanceTime(by: 1)
        #expect(s.describe(k, cred: root, process: p1).error == .ENOKEY)
        #expect(s.key(k) == nil)
        // A revoked keyring loses its links at once.
        let ring = try #require(s.addKey(type: "keyring", description: "r", payload: nil, keyring: .processKeyring, cred: root, process: p1).value)
        let inner = try #require(s.addKey(type: "user", description: "i", payload: "p", keyring: ring, cred: root, process: p1).value)
        _ = s.revoke(ring, cred: root, process: p1)
        #expect(s.key(inner) == nil)
        #expect(s.key(ring)?.isRevoked == true)
    }

    @Test func forkSharesSessionExecAndExitDropKeyrings() throws {
        let (s, _) = makeService()
        let parent = p1, child = ProcessKeyrings(pid: 2)
        let sk = try #require(s.addKey(type: "user", description: "s", payload: "p", keyring: .sessionKeyring, cred: root, process: parent).value)
        let pk = try #require(s.addKey(type: "user", description: "p", payload: "p", keyring: .processKeyring, cred: root, process: parent).value)
        let tk = try #require(s.addKey(type: "user", description: "t", payload: "p", keyring: .threadKeyring, cred: root, process: parent).value)
        s.fork(parent: parent, child: child)
        #expect(s.keyrings(of: child).session == s.keyrings(of: parent).session)
        #expect(s.keyrings(of: child).process == nil && s.keyrings(of: child).thread == nil)
        // The child possesses the session key, not the process key (view only, by uid).
        #expect(s.revoke(pk, cred: root, process: child).error == .EACCES)
        #expect(s.describe(pk, cred: root, process: child).value != nil)
        #expect(s.revoke(sk, cred: root, process: child).value != nil)
        #expect(s.describe(sk, cred: root, process: parent).error == .EKEYREVOKED, "the session keyring is shared")
        s.exec(parent)
        #expect(s.key(tk) == nil && s.key(pk) == nil, "exec drops the thread and process keyrings")
        let session = try #require(s.keyrings(of: parent).session)
        s.exit(parent)
        #expect(s.key(KeySerial(session)) != nil, "the child still holds the session keyring")
        s.exit(child)
        #expect(s.key(KeySerial(session)) == nil)
    }

    @Test func snapshotHasNoPayloadAndIsOrdered() throws {
        let (s, _) = makeService()
        _ = s.addKey(type: "user", description: "a", payload: "supersecret", keyring: .processKeyring, cred: root, process: p1)
        _ = s.addMKTME("m", userOptions)
        let snap = s.snapshot()
        #expect(snap.keys.map(\.serial) == snap.keys.map(\.serial).sorted())
        #expect(snap.keys.contains { $0.type == "mktme" && $0.keyid == 1 && $0.mktmeType == "user" })
        #expect(snap.keys.contains { $0.type == "user" && $0.payloadLength == 11 })
        let text = "\(snap)"
        #expect(!text.contains("supersecret") && !text.contains(userHex))
    }
}

@Suite struct KeyctlDispatchTests {
    @Test func syscallShapedKeyctl() throws {
        let (s, _) = makeService()
        let k = try #require(s.addKey(type: "user", description: "desc", payload: "abc", keyring: .processKeyring, cred: root, process: p1).value)
        let d = try #require(s.keyctl(6, k, cred: root, process: p1).value)
        #expect(d.value == 23 && d.text == "user;0;0;3f010000;desc")
        #expect(s.keyctl(2, k, payload: Array("xy".utf8), cred: root, process: p1).value?.value == 0)
        #expect(s.key(k)?.payloadLength == 2)
        #expect(s.keyctl(99, k, cred: root, process: p1).error == .EOPNOTSUPP)
        #expect(s.keyctl(9, k, keyring: .processKeyring, cred: root, process: p1).value?.value == 0)
        #expect(s.keyctl(3, k, cred: root, process: p1).error == .ENOKEY)
        #expect(KeyctlOperation.allCases.map(\.rawValue) == [2, 3, 4, 5, 6, 9, 21])
    }
}
