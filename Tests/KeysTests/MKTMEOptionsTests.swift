// The "mktme" key type's options string: every rule of the parser and its errno, the capability
// check, and the PATCHv2 (user-keys=off) variant.
import Testing
import KeyMMBase
import KeyMMKeys

@Suite struct MKTMEOptionsTests {
    @Test(arguments: [
        "type=cpu algorithm=aes-xts-128",
        "type=no-encrypt",
        "type=clear",
        "type=no-encrypt algorithm=aes-xts-128",
        userOptions,
        "algorithm=aes-xts-128 type=cpu",
        "  type=cpu\talgorithm=aes-xts-128  ",
        "type=cpu algorithm=aes-xts-128 key=\(userHex)",
        "type=cpu algorithm=aes-xts-128 key=\(userHex) tweak=\(tweakHex)",
        "type=user algorithm=aes-xts-128 key=\(userHex.uppercased()) tweak=\(tweakHex)",
    ])
    func acceptedOptions(_ options: String) {
        let (s, _) = makeService()
        #expect(s.addMKTME("k", options).value != nil, "\(options)")
    }

    @Test(arguments: [
        "",                                                        // 0 bytes
        " ",                                                       // no option at all
        "type=cpu",                                                // cpu needs algorithm
        "type=user key=\(userHex) tweak=\(tweakHex)",              // user needs algorithm
        "type=user algorithm=aes-xts-128",                         // user needs key and tweak
        "type=user algorithm=aes-xts-128 key=\(userHex)",          // ... both
        "type=user algorithm=aes-xts-128 tweak=\(tweakHex)",
        "algorithm=aes-xts-128",                                   // no type
        "type=bogus algorithm=aes-xts-128",                        // unknown type
        "type=cpu algorithm=aes-xts-256",                          // unknown algorithm
        "type=cpu algorithm=aes-xts-128 color=red",                // unknown option
        "type=cpu type=cpu algorithm=aes-xts-128",                 // repeated option
        "type=cpu algorithm=aes-xts-128 algorithm=aes-xts-128",
        "type= algorithm=aes-xts-128",                             // empty value
        "type=cpu algorithm=aes-xts-128 key=",
        "type",                                                    // no '='
        "type=user algorithm=aes-xts-128 key=\(userHex)00 tweak=\(tweakHex)",   // 34 hex digits
        "type=user algorithm=aes-xts-128 key=\(userHex.dropLast(2)) tweak=\(tweakHex)", // 30
        "type=user algorithm=aes-xts-128 key=0123456789abcdef0123456789abcdeg tweak=\(tweakHex)", // non-hex
        "type=cpu algorithm=aes-xts-128 tweak=xyz",                // bad entropy
        "type=no-encrypt key=\(userHex)",                          // no-encrypt takes no key
        "type=clear tweak=\(tweakHex)",                            // clear takes no tweak
        "type=CPU algorithm=aes-xts-128",                          // names are case-sensitive
        "type=cpu,algorithm=aes-xts-128",                          // commas are not separators
    ])
    func rejectedOptionsAreEINVAL(_ options: String) {
        let (s, fake) = makeService()
        #expect(s.addMKTME("k", options).error == .EINVAL, "\(options)")
        #expect(fake.calls.isEmpty, "nothing may be programmed for a rejected payload")
        #expect(s.references.freeCount == 63)
    }

    @Test func optionsLengthLimits() {
        let (s, _) = makeService()
        let base = "type=cpu algorithm=aes-xts-128"
        let padded1024 = base + String(repeating: " ", count: 1024 - base.utf8.count)
        #expect(padded1024.utf8.count == 1024)
        #expect(s.addMKTME("a", padded1024).value != nil)
        #expect(s.addMKTME("b", padded1024 + " ").error == .EINVAL)
        #expect(s.addKey(type: "mktme", description: "c", payload: nil, keyring: .processKeyring, cred: root, process: p1).error == .EINVAL)
    }

    @Test func creatingNeedsSysResourceOrSysAdmin() {
        let (s, fake) = makeService()
        let nobody = Credentials(uid: 1000, gid: 1000, capabilities: [])
        // EACCES comes from preparse, before the options are even parsed.
        #expect(s.addMKTME("k", "type=cpu algorithm=aes-xts-128", cred: nobody).error == .EACCES)
        #expect(s.addMKTME("k", "garbage", cred: nobody).error == .EACCES)
        #expect(fake.calls.isEmpty)
        let resource = Credentials(uid: 1000, gid: 1000, capabilities: .sysResource)
        let admin = Credentials(uid: 1000, gid: 1000, capabilities: .sysAdmin)
        let ipcOnly = Credentials(uid: 1000, gid: 1000, capabilities: .ipcLock)
        #expect(s.addMKTME("r", "type=cpu algorithm=aes-xts-128", cred: resource).value != nil)
        #expect(s.addMKTME("a", "type=cpu algorithm=aes-xts-128", cred: admin).value != nil)
        #expect(s.addMKTME("i", "type=cpu algorithm=aes-xts-128", cred: ipcOnly).error == .EACCES)
        // user keys do not need a capability
        #expect(s.addKey(type: "user", description: "u", payload: "x", keyring: .processKeyring, cred: nobody, process: p1).value != nil)
    }

    @Test func userKeysOffModelsPATCHv2() {
        let (s, _) = makeService(userKeys: false)
        #expect(s.addMKTME("a", userOptions).error == .EINVAL)
        #expect(s.addMKTME("b", "type=cpu algorithm=aes-xts-128 key=\(userHex)").error == .EINVAL)
        #expect(s.addMKTME("c", "type=cpu algorithm=aes-xts-128 tweak=\(tweakHex)").error == .EINVAL)
        #expect(s.addMKTME("d", "type=clear").error == .EINVAL)
        #expect(s.addMKTME("e", "type=cpu algorithm=aes-xts-128").value != nil)
        #expect(s.addMKTME("f", "type=no-encrypt").value != nil)
        #expect(s.addMKTME("g", "type=cpu").error == .EINVAL)
    }

    @Test func parserMapsModesToPCONFIGCommands() {
        let (s, fake) = makeService()
        let u = s.addMKTME("u", userOptions).value
        let c = s.addMKTME("c", "type=cpu algorithm=aes-xts-128").value
        let n = s.addMKTME("n", "type=no-encrypt").value
        let z = s.addMKTME("z", "type=clear").value
        #expect(fake.calls.map(\.kind) == [.setKeyDirect, .setKeyRandom, .noEncrypt, .clearKey])
        #expect(fake.calls.map(\.keyid) == [KeyID(1), KeyID(2), KeyID(3), KeyID(4)])
        for (serial, mode) in [(u, MKTMEKeyMode.user), (c, .cpu), (n, .noEncrypt), (z, .clear)] {
            #expect(serial.flatMap { s.key($0)?.mktmeMode } == mode)
        }
        // SET_KEY_DIRECT carries the given keys exactly (hex2bin of key= and tweak=).
        #expect(fake.fields[0].data == [0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef])
        #expect(fake.fields[0].tweak.first == 0xfe && fake.fields[0].tweak.count == 16)
    }

    @Test func cpuEntropyIsXoredWithKernelRandomBytes() {
        // Same seed: the kernel's random bytes are the same, so the entropy shows as the XOR
        // difference between a key with entropy and one without.
        let (a, fa) = makeService(seed: 7)
        let (b, fb) = makeService(seed: 7)
        _ = a.addMKTME("k", "type=cpu algorithm=aes-xts-128")
        _ = b.addMKTME("k", "type=cpu algorithm=aes-xts-128 key=\(userHex) tweak=\(tweakHex)")
        let plain = fa.fields[0], mixed = fb.fields[0]
        #expect(plain.data == plain.tweak, "the series XORs the same 16 random bytes into both fields")
        #expect(plain.data != [UInt8](repeating: 0, count: 16))
        let dataDiff = zip(plain.data, mixed.data).map { $0 ^ $1 }
        let tweakDiff = zip(plain.tweak, mixed.tweak).map { $0 ^ $1 }
        #expect(dataDiff == Array(SecretBytes(hex: userHex.utf8, byteCount: 16)!.withUnsafeBytes { Array($0) }))
        #expect(tweakDiff == Array(SecretBytes(hex: tweakHex.utf8, byteCount: 16)!.withUnsafeBytes { Array($0) }))
        // Another seed, other kernel bytes.
        let (c, fc) = makeService(seed: 8)
        _ = c.addMKTME("k", "type=cpu algorithm=aes-xts-128")
        #expect(fc.fields[0].data != plain.data)
    }

    @Test func mktmeTypeIsAbsentWithoutKeyIDs() {
        let (s, _) = makeService(keyids: nil)
        #expect(!s.mktmeAvailable)
        #expect(s.addMKTME("k", "type=cpu algorithm=aes-xts-128").error == .ENODEV)
        #expect(s.addKey(type: "user", description: "u", payload: "x", keyring: .processKeyring, cred: root, process: p1).value != nil)
    }
}
