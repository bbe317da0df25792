// The key service on the real hardware model (KeyMMHardware's KeyIDTable as KeyProgrammer):
// what PCONFIG did is visible in the table and in DRAM; retries go through the table's fault
// injection; TDX-private KeyIDs are never handed out; and a user key's ciphertext equals an
// independent AES-XTS (python3 `cryptography`) with key = key= || tweak=, tweak = the PA.
import Foundation
import Testing
import KeyMMBase
import KeyMMHardware
import KeyMMKeys

private func machine(tdx: Int = 0, keyidBits: Int = 6, seed: UInt64 = 3) throws -> Machine {
    var c = MachineConfig()
    c.memory = .mib(4)
    c.cacheSize = .kib(64)
    c.cacheWays = 4
    c.tdxKeyIDs = tdx
    c.keyidBits = keyidBits
    c.seed = seed
    return try Machine(config: c)
}

private func hex(_ b: [UInt8]) -> String { b.map { String(format: "%02x", $0) }.joined() }

@Suite struct HardwareKeyTableTests {
    @Test func keysProgramTheTableAndReleaseClearsIt() throws {
        let m = try machine()
        let s = KeyService(machine: m)
        #expect(s.references.range == 1...63)
        let k = try #require(s.addMKTME("k", userOptions).value)
        let n = try #require(s.addMKTME("n", "type=no-encrypt").value)
        let kid = try #require(s.key(k)?.keyid), nid = try #require(s.key(n)?.keyid)
        #expect(m.keyTable.state(of: kid) == .keyed)
        #expect(m.keyTable.state(of: nid) == .noEncrypt)
        // Plaintext through the no-encrypt KeyID reaches DRAM as is; through the user key it does not.
        let pt = (0..<64).map { UInt8($0) }
        m.write(PhysAddr(0x1000), keyid: nid, bytes: pt)
        m.write(PhysAddr(0x2000), keyid: kid, bytes: pt)
        m.wbinvd()
        #expect(m.physRead(PhysAddr(0x1000), count: 64) == pt)
        #expect(m.physRead(PhysAddr(0x2000), count: 64) != pt)
        #expect(m.read(PhysAddr(0x2000), keyid: kid, count: 64) == pt)
        // Destroy with a page still referenced: the table keeps the key until the release.
        s.references.get(kid)
        _ = s.invalidate(k, cred: root, process: p1)
        #expect(m.keyTable.state(of: kid) == .keyed)
        s.references.put(kid)
        #expect(m.keyTable.state(of: kid) == .cleared)
        #expect(m.keyTable.programCount(of: kid) == 2)
    }

    @Test func retriesThroughTheTablesFaultInjection() throws {
        let m = try machine()
        let s = KeyService(machine: m)
        m.keyTable.injectStatuses(Array(repeating: .deviceBusy, count: 9))
        #expect(s.addMKTME("a", "type=cpu algorithm=aes-xts-128").value != nil)
        #expect(m.keyTable.pendingInjections == 0)
        m.keyTable.injectStatuses(Array(repeating: .entropyError, count: 10))
        #expect(s.addMKTME("b", "type=cpu algorithm=aes-xts-128").error == .ENOKEY)
        #expect(m.keyTable.state(of: KeyID(2)) == .unprogrammed)
        #expect(s.references.state(KeyID(2)) == .free)
    }

    @Test func tdxPrivateKeyIDsAreNeverUsed() throws {
        let m = try machine(tdx: 2, keyidBits: 2)     // KeyIDs 1...3: MKTME 1, TDX 2...3
        let s = KeyService(machine: m)
        #expect(s.references.range == 1...1)
        #expect(s.addMKTME("a", "type=cpu algorithm=aes-xts-128").value != nil)
        #expect(s.addMKTME("b", "type=cpu algorithm=aes-xts-128").error == .ENOKEY)
        s.references.get(KeyID(2))
        #expect(s.references.anomalies.last?.kind == .outOfRange)
    }

    @Test func noMKTMEKeyIDsMeansNoMKTMEKeyType() throws {
        var c = MachineConfig()
        c.memory = .mib(4); c.cacheSize = .kib(64); c.cacheWays = 4; c.encryption = .sme
        let s = KeyService(machine: try Machine(config: c))
        #expect(s.addMKTME("a", "type=cpu algorithm=aes-xts-128").error == .ENODEV)
    }

    @Test func cpuKeysAreDeterministicPerSeed() throws {
        func ciphertext(seed: UInt64) throws -> [UInt8] {
            let m = try machine(seed: seed)
            let s = KeyService(machine: m)
            let k = try #require(s.addMKTME("k", "type=cpu algorithm=aes-xts-128").value)
            let kid = try #require(s.key(k)?.keyid)
            m.write(PhysAddr(0x3000), keyid: kid, bytes: Array(repeating: 0xAA, count: 64))
            m.wbinvd()
            return m.physRead(PhysAddr(0x3000), count: 64)
        }
        #expect(try ciphertext(seed: 5) == ciphertext(seed: 5))
        #expect(try ciphertext(seed: 5) != ciphertext(seed: 6))
    }

    @Test(.enabled(if: HostOracles.pythonCryptography,
                   "python3 with the `cryptography` package is not available: the independent AES-XTS check did not run"))
    func userKeyCiphertextMatchesIndependentAESXTS() throws {
        let m = try machine()
        let s = KeyService(machine: m)
        let k = try #require(s.addMKTME("k", userOptions).value)
        let kid = try #require(s.key(k)?.keyid)
        let pa = PhysAddr(0x5040)
        let pt = (0..<64).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ 3) }
        m.write(pa, keyid: kid, bytes: pt)
        m.clflush(pa, keyid: kid, length: 64)
        let script = """
            import sys
            from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
            key, tweak, pa, pt = sys.argv[1:5]
            enc = Cipher(algorithms.AES(bytes.fromhex(key) + bytes.fromhex(tweak)), modes.XTS(int(pa).to_bytes(16, "little"))).encryptor()
            print((enc.update(bytes.fromhex(pt)) + enc.finalize()).hex())
            """
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["python3", "-c", script, userHex, tweakHex, String(pa.rawValue), hex(pt)]
        let out = Pipe()
        p.standardOutput = out
        p.standardError = Pipe()
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        try #require(p.terminationStatus == 0, "python3's `cryptography` failed on the test vector")
        let expected = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(hex(m.physRead(pa, count: 64)) == expected)
    }
}
