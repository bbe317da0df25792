// The KeyID table: PCONFIG return codes, key states, TDX partition, fault injection, packages,
// SME/off modes, and the KeyID bit layout in physical addresses.
import Testing
import KeyMMBase
@testable import KeyMMHardware

@Suite struct KeyIDTableTests {
    static let k16 = [UInt8](repeating: 0x11, count: 16), t16 = [UInt8](repeating: 0x22, count: 16)

    @Test func returnCodes() throws {
        let m = try smallMachine()
        let t = m.keyTable
        #expect(t.program(KeyID(0), .setKeyDirect(dataKey: Self.k16, tweakKey: Self.t16)) == .invalidKeyID)
        #expect(t.program(KeyID(64), .clearKey) == .invalidKeyID)
        #expect(t.program(KeyID(1), .setKeyDirect(dataKey: [1, 2], tweakKey: Self.t16)) == .invalidEncAlg)
        #expect(t.program(KeyID(1), .setKeyDirect(dataKey: Self.k16, tweakKey: Self.t16), algorithm: 1 << 9) == .invalidEncAlg)
        #expect(t.program(KeyID(1), .setKeyDirect(dataKey: Self.k16, tweakKey: Self.t16), algorithm: PCONFIGAlgorithm.aesXTS256) == .invalidEncAlg)
        #expect(t.program(KeyID(1), .setKeyRandom(dataEntropy: [UInt8](repeating: 0, count: 65), tweakEntropy: [])) == .invalidProgCmd)
        #expect(t.state(of: KeyID(1)) == .unprogrammed)
        #expect(t.programCount(of: KeyID(1)) == 0)
        #expect(t.program(KeyID(1), .setKeyDirect(dataKey: Self.k16, tweakKey: Self.t16)) == .success)
        #expect(t.state(of: KeyID(1)) == .keyed)
        #expect(t.program(KeyID(63), .setKeyRandom(dataEntropy: [1, 2, 3], tweakEntropy: [])) == .success)
        #expect(t.program(KeyID(2), .setKeyDirect(dataKey: Self.k16 + Self.k16, tweakKey: Self.t16 + Self.t16), algorithm: PCONFIGAlgorithm.aesXTS256) == .success)
        #expect(m.engine.keyBits(of: KeyID(2)) == 256)
        #expect(t.program(KeyID(1), .clearKey) == .success)
        #expect(t.state(of: KeyID(1)) == .cleared)
        #expect(t.program(KeyID(1), .noEncrypt) == .success)
        #expect(t.state(of: KeyID(1)) == .noEncrypt)
        #expect(t.programCount(of: KeyID(1)) == 3)
        #expect(m.clock.count(of: .pconfig) == 11)
        #expect(PCONFIGStatus.deviceBusy.isRetryable && PCONFIGStatus.entropyError.isRetryable && !PCONFIGStatus.invalidKeyID.isRetryable)
    }

    @Test func injectedStatusesAreReturnedInOrderAndChangeNothing() throws {
        let m = try smallMachine()
        let t = m.keyTable
        t.injectStatuses([.deviceBusy, .entropyError, .success, .deviceBusy])
        #expect(t.program(KeyID(5), .setKeyRandom(dataEntropy: [], tweakEntropy: [])) == .deviceBusy)
        #expect(t.state(of: KeyID(5)) == .unprogrammed)
        #expect(t.program(KeyID(5), .setKeyRandom(dataEntropy: [], tweakEntropy: [])) == .entropyError)
        #expect(t.program(KeyID(0), .clearKey) == .invalidKeyID)     // injected .success runs the real check
        #expect(t.pendingInjections == 1)
        #expect(t.program(KeyID(5), .noEncrypt) == .deviceBusy)
        #expect(t.state(of: KeyID(5)) == .unprogrammed)
        #expect(t.program(KeyID(5), .noEncrypt) == .success)
        #expect(t.pendingInjections == 0)
        #expect(t.programCount(of: KeyID(5)) == 1)
    }

    @Test func packagesEachExecuteThePCONFIG() throws {
        let m = try smallMachine()
        m.keyTable.packages = 4
        #expect(m.keyTable.program(KeyID(3), .noEncrypt) == .success)
        #expect(m.clock.count(of: .pconfig) == 4)
        #expect(m.clock.cycles == 4 * CostProfile.default[.pconfig])
    }

    @Test func tdxPartition() throws {
        let m = try smallMachine(tdx: 4)
        let t = m.keyTable
        #expect(m.config.mktmeKeyIDs == 1...59)
        #expect(m.config.tdxKeyIDRange == 60...63)
        #expect(t.tdxGlobalKeyID == KeyID(60))
        #expect(t.state(of: KeyID(60)) == .unprogrammed)          // keyed by TDH.SYS.KEY.CONFIG, not at boot
        #expect(t.isTDXPrivate(KeyID(61)) && !t.isTDXPrivate(KeyID(59)))
        #expect(t.program(KeyID(61), .setKeyRandom(dataEntropy: [], tweakEntropy: [])) == .invalidKeyID)
        #expect(t.program(KeyID(59), .setKeyRandom(dataEntropy: [], tweakEntropy: [])) == .success)
        #expect(t.programTDX(KeyID(61)) == .success)
        #expect(t.state(of: KeyID(61)) == .keyed)
        #expect(t.programTDX(KeyID(59)) == .invalidKeyID)
        #expect(t.programTDX(KeyID(61), clear: true) == .success)
        #expect(t.state(of: KeyID(61)) == .cleared)
        let none = try smallMachine(tdx: 63)
        #expect(none.config.mktmeKeyIDs == nil)
        #expect(none.keyTable.program(KeyID(1), .noEncrypt) == .invalidKeyID)
    }

    @Test func clearKeyDestroysTheKeyAndNoEncryptStoresPlaintext() throws {
        let m = try smallMachine()
        let t = m.keyTable
        let data = [UInt8](repeating: 0x5A, count: 64)
        #expect(t.program(KeyID(7), .setKeyDirect(dataKey: Self.k16, tweakKey: Self.t16)) == .success)
        m.write(PhysAddr(0x1000), keyid: KeyID(7), bytes: data)
        m.wbinvd()
        #expect(t.program(KeyID(7), .clearKey) == .success)
        #expect(m.read(PhysAddr(0x1000), keyid: KeyID(7), count: 64) != data)   // old key gone: garbage
        // A cleared KeyID uses the TME key: same view as KeyID 0.
        m.wbinvd()
        #expect(m.read(PhysAddr(0x1000), keyid: KeyID(7), count: 64) == m.read(PhysAddr(0x1000), keyid: KeyID(0), count: 64))
        #expect(t.program(KeyID(7), .setKeyDirect(dataKey: Self.k16, tweakKey: Self.t16)) == .success)
        m.wbinvd()
        #expect(m.read(PhysAddr(0x1000), keyid: KeyID(7), count: 64) == data)   // same key again: readable
        #expect(t.program(KeyID(8), .noEncrypt) == .success)
        m.write(PhysAddr(0x2000), keyid: KeyID(8), bytes: data)
        m.wbinvd()
        #expect(m.physRead(PhysAddr(0x2000), count: 64) == data)
    }

    @Test func keyMaterialNeverAppearsInDescriptions() {
        let secret = [UInt8](repeating: 0x42, count: 16)   // 66 decimal
        let cmd = PCONFIGCommand.setKeyDirect(dataKey: secret, tweakKey: secret)
        #expect(String(describing: cmd) == "KEYID_SET_KEY_DIRECT")
        #expect(String(reflecting: cmd) == "KEYID_SET_KEY_DIRECT")
        #expect("\([cmd])" == "[KEYID_SET_KEY_DIRECT]")
        var dumped = ""
        dump(cmd, to: &dumped)
        #expect(!dumped.contains("66") && !dumped.contains("42"))
        #expect(Mirror(reflecting: cmd).children.isEmpty)
    }

    @Test func smeAndOffModes() throws {
        let sme = try smallMachine(mode: .sme)
        let data = [UInt8](repeating: 0x33, count: 64)
        sme.write(PhysAddr(0x1000), keyid: KeyID(0), bytes: data)   // C-bit clear: plaintext
        sme.write(PhysAddr(0x2000), keyid: KeyID(1), bytes: data)   // C-bit set: SME key
        sme.wbinvd()
        #expect(sme.physRead(PhysAddr(0x1000), count: 64) == data)
        #expect(sme.physRead(PhysAddr(0x2000), count: 64) != data)
        #expect(sme.read(PhysAddr(0x2000), keyid: KeyID(1), count: 64) == data)
        #expect(sme.config.keyidShift == 51)
        #expect(sme.keyTable.program(KeyID(1), .noEncrypt) == .invalidKeyID)
        let off = try smallMachine(mode: .off)
        off.write(PhysAddr(0x1000), keyid: KeyID(0), bytes: data)
        off.wbinvd()
        #expect(off.physRead(PhysAddr(0x1000), count: 64) == data)
        #expect(off.config.mktmeKeyIDs == nil)
    }

    @Test func keyidBitsSitAtTheTopOfThePhysicalAddress() {
        let c = MachineConfig()
        #expect(c.keyidShift == 46)
        #expect(c.mktmeKeyIDs == 1...63)
        #expect(c.keyidMask == 0x000F_C000_0000_0000)
        #expect(c.encode(PhysAddr(0x1234_5000), keyid: KeyID(63)) == 0x000F_C000_1234_5000)
        let (pa, k) = c.decode(0x0000_4000_1234_5000)
        #expect(pa == PhysAddr(0x1234_5000) && k == KeyID(1))
        var d = MachineConfig(); d.physBits = 46; d.keyidBits = 3
        #expect(d.keyidShift == 43 && d.mktmeKeyIDs == 1...7)
    }

    static func badConfig(_ i: Int) -> (String, MachineConfig) {
        var c = MachineConfig()
        switch i {
        case 0: c.memory = .gib(65); return ("memory", c)
        case 1: c.memory = ByteCount(5 << 20); return ("memory", c)
        case 2: c.nodes = 0; return ("nodes", c)
        case 3: c.nodes = 3; c.memory = .mib(16); return ("memory", c)
        case 4: c.physBits = 60; return ("phys-bits", c)
        case 5: c.keyidBits = 17; return ("keyid-bits", c)
        case 6: c.physBits = 36; c.keyidBits = 6; c.memory = .gib(2); return ("keyid-bits", c)
        case 7: c.tdxKeyIDs = 64; return ("tdx-keyids", c)
        case 8: c.cacheSize = ByteCount(1000); return ("cache", c)
        case 9: c.cacheWays = 0; return ("cache-ways", c)
        default: c.xtsKeyBits = 192; return ("xts-key-bits", c)
        }
    }

    @Test("validate() rejects bad configurations with a message naming the key", arguments: 0..<11)
    func validation(_ i: Int) {
        let (key, c) = Self.badConfig(i)
        do {
            try c.validate()
            Issue.record("accepted a bad \(key)")
        } catch {
            #expect(error.key == key)
            #expect(error.description.hasPrefix(key + ": "))
        }
        #expect(throws: ConfigError.self) { _ = try Machine(config: c) }
    }

    @Test func defaultConfigIsValidAndNodesSplitMemory() throws {
        try MachineConfig().validate()
        var c = MachineConfig(); c.nodes = 4; c.memory = .gib(1)
        try c.validate()
        #expect(c.frameCount == 262_144)
        #expect(c.node(of: PFN(0)) == NodeID(0))
        #expect(c.node(of: PFN(65_536)) == NodeID(1))
        #expect(c.node(of: PFN(262_143)) == NodeID(3))
        #expect(c.frames(of: NodeID(2)) == PFN(131_072)..<PFN(196_608))
    }
}
