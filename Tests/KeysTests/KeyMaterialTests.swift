// Key material: zeroized when no longer needed (user-key material right after PCONFIG, cpu
// entropy likewise, `user` payloads when the key dies or is revoked or updated), and never in any
// description, DESCRIBE text or snapshot.
import Testing
import KeyMMBase
@_spi(Testing) import KeyMMKeys

@Suite struct KeyMaterialTests {
    @Test func secretBytesParseZeroizeAndHideTheirContents() throws {
        let b = try #require(SecretBytes(hex: userHex.utf8, byteCount: 16))
        #expect(b.count == 16 && !b.allBytesZero && !b.isZeroized)
        for text in [String(describing: b), String(reflecting: b), "\(b)", "\(Mirror(reflecting: b).children.map { "\($0)" })"] {
            #expect(!text.contains("0123456789") && !text.contains("1, 35, 69"), "\(text)")
        }
        b.zeroize()
        #expect(b.allBytesZero && b.isZeroized)
        #expect(SecretBytes(hex: "0g".utf8, byteCount: 1) == nil)
        #expect(SecretBytes(hex: "abc".utf8, byteCount: 1) == nil)
    }

    @Test func mktmeMaterialIsZeroizedRightAfterProgramming() throws {
        let (s, fake) = makeService()
        s.retainSecretsForTesting = true
        _ = try #require(s.addMKTME("u", userOptions).value)
        _ = try #require(s.addMKTME("c", "type=cpu algorithm=aes-xts-128 key=\(userHex) tweak=\(tweakHex)").value)
        #expect(!s.retainedSecrets.isEmpty)
        #expect(s.retainedSecrets.allSatisfy { $0.allBytesZero }, "no copy of user keys or entropy survives")
        #expect(fake.fields[0].data.contains { $0 != 0 }, "...although PCONFIG did receive the key")
        // Failed creation: material zeroized too.
        fake.script = Array(repeating: .deviceBusy, count: 10)
        let before = s.retainedSecrets.count
        #expect(s.addMKTME("f", userOptions).error == .ENOKEY)
        #expect(s.retainedSecrets.count > before)
        #expect(s.retainedSecrets.allSatisfy { $0.allBytesZero })
        // Rejected options after a valid key=: the parsed key is zeroized.
        #expect(s.addMKTME("g", "type=user key=\(userHex) tweak=\(tweakHex)").error == .EINVAL)
        #expect(s.retainedSecrets.allSatisfy { $0.allBytesZero })
    }

    @Test func userPayloadIsZeroizedWhenTheKeyDiesOrChanges() throws {
        let (s, _) = makeService()
        s.retainSecretsForTesting = true
        let a = try #require(s.addKey(type: "user", description: "a", payload: "secret-a", keyring: .processKeyring, cred: root, process: p1).value)
        let live = { s.retainedSecrets.filter { !$0.allBytesZero }.count }
        #expect(live() == 1, "the key's own payload, only")
        _ = s.update(a, payload: "secret-b", cred: root, process: p1)
        #expect(live() == 1, "the old payload was zeroized")
        _ = s.invalidate(a, cred: root, process: p1)
        #expect(live() == 0)
        let b = try #require(s.addKey(type: "user", description: "b", payload: "secret-c", keyring: .processKeyring, cred: root, process: p1).value)
        #expect(live() == 1)
        _ = s.revoke(b, cred: root, process: p1)
        #expect(live() == 0, "user_revoke frees the payload at once")
        _ = try #require(s.addKey(type: "user", description: "c", payload: "secret-d", keyring: .processKeyring, cred: root, process: p1).value)
        s.exit(p1)
        #expect(live() == 0, "process keyring gone: key destroyed, payload zeroized")
    }

    @Test func noKeyHexInAnyDescription() throws {
        let (s, _) = makeService()
        let serial = try #require(s.addMKTME("tenant-a", userOptions).value)
        let cpu = try #require(s.addMKTME("tenant-b", "type=cpu algorithm=aes-xts-128 key=\(userHex) tweak=\(tweakHex)").value)
        let key = try #require(s.key(serial))
        var texts = [String(describing: key), String(reflecting: key), "\(key)",
                     s.describe(serial, cred: root, process: p1).value ?? "",
                     s.describe(cpu, cred: root, process: p1).value ?? "",
                     "\(s.snapshot())", String(reflecting: s.snapshot()),
                     "\(s.references.slots)", String(describing: s), String(reflecting: s),
                     "\(Mirror(reflecting: key).children.map { "\($0)" })",
                     "\(Mirror(reflecting: s).children.map { "\($0)" })"]
        var events: [String] = []
        s.references.onKeyIDEvent = { events.append("\($0)") }
        _ = s.update(serial, payload: userOptions, cred: root, process: p1)
        texts += events
        let fake = FakeProgrammer()
        _ = fake.programKeyID(KeyID(1), .setKeyDirect(dataKey: SecretBytes(hex: userHex.utf8, byteCount: 16)!,
                                                        tweakKey: SecretBytes(hex: tweakHex.utf8, byteCount: 16)!))
        texts.append("\(KeyProgramCommand.setKeyDirect(dataKey: SecretBytes(hex: userHex.utf8, byteCount: 16)!, tweakKey: SecretBytes(zeroedCount: 16)))")
        let forbidden = [userHex, tweakHex, userHex.uppercased(), "0123456789", "fedcba98", "1, 35, 69"]
        for text in texts {
            for f in forbidden { #expect(!text.contains(f), "\(text)") }
        }
        #expect(s.key(serial).map { $0.payloadLength } == 0, "an mktme key keeps no material")
    }

    @Test func dumpOfTheWholeServiceShowsNoMaterial() throws {
        let (s, fake) = makeService()
        fake.recordFields = false
        _ = try #require(s.addMKTME("u", userOptions).value)
        let k = try #require(s.addKey(type: "user", description: "p", payload: [0x01, 0x23, 0x45, 0x67, 0x89],
                                      keyring: .processKeyring, cred: root, process: p1).value)
        var text = ""
        dump(s, to: &text)
        dump(s.key(k), to: &text)
        dump(s.snapshot(), to: &text)
        #expect(text.contains("KeyService") && text.contains("count"), "the dump did walk the service")
        #expect(!text.contains(userHex) && !text.contains(tweakHex))
        // dump prints array elements one per line ("- 35"): no run of the key's or payload's bytes.
        let numbers = text.split(separator: "\n").compactMap { line -> String? in
            let t = line.trimmingCharacters(in: .whitespaces)
            guard t.hasPrefix("- "), UInt8(t.dropFirst(2)) != nil else { return nil }
            return String(t.dropFirst(2))
        }.joined(separator: ",")
        #expect(!numbers.contains("1,35,69,103"), "\(numbers)")
    }
}
