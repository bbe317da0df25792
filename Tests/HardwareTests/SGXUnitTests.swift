// The SGX unit (KeyMMHardware/SGX.swift): the EPC's key no software can name, the abort page,
// EWB/ELDU sealing (MAC over contents, metadata and the VA slot's version), tracking.
import Testing
import KeyMMBase
@testable import KeyMMHardware

@Suite struct SGXUnitTests {
    func machine(epc: ByteCount = .kib(256)) throws -> Machine {
        var c = MachineConfig()
        c.memory = .mib(8)
        c.cacheSize = .kib(256)
        c.epc = epc
        return try Machine(config: c)
    }

    /// An initialized enclave with one REG page (RW) holding `bytes`, plus a VA page.
    func enclave(_ m: Machine, _ bytes: [UInt8]) throws -> (SGXUnit, EnclaveID, page: EPCPage, va: EPCPage) {
        let u = try #require(m.sgx)
        let eid = try u.ecreate(EPCPage(0), base: 0x7f00_0000_0000, size: 0x10000, attributes: 0x4).get()
        #expect(u.epa(EPCPage(1)) == .success)
        #expect(u.eadd(EPCPage(2), eid: eid, linear: 0x7f00_0000_0000, type: .reg, permissions: [.read, .write], contents: bytes) == .success)
        #expect(u.einit(eid) == .success)
        return (u, eid, EPCPage(2), EPCPage(1))
    }

    @Test func epcKeyIsNotProgrammableAndOrdinaryAccessesGetTheAbortPage() throws {
        let m = try machine()
        let (u, _, page, _) = try enclave(m, Array("enclave data".utf8))
        // The EPC's slot is one past the OS's KeyIDs: PCONFIG refuses it.
        #expect(m.keyTable.program(u.epcKeyID, .clearKey) == .invalidKeyID)
        #expect(m.keyTable.program(u.pagingKeyID, .noEncrypt) == .invalidKeyID)
        let pa = u.pfn(page).physAddr
        #expect(pa.rawValue >= m.config.memory.rawValue)
        // Any KeyID a PTE can carry: 0xff on loads, stores dropped.
        #expect(m.read(pa, keyid: KeyID(0), count: 4) == [0xFF, 0xFF, 0xFF, 0xFF])
        m.write(pa, keyid: KeyID(1), bytes: [1, 2, 3])
        let inside = u.enclaveRead(pa, count: 12)
        #expect(inside == Array("enclave data".utf8))
        // DRAM holds ciphertext.
        m.wbinvd()
        #expect(m.physRead(pa, count: 12) != Array("enclave data".utf8))
    }

    @Test func ewbThenElduRoundTripsAndRefusesTamperingAndReplays() throws {
        let m = try machine()
        let (u, eid, page, va) = try enclave(m, Array("first".utf8))
        // EWB needs EBLOCK, then an ETRACK after it.
        #expect(u.ewb(page, va: va, slot: 0) == .failure(.status(.pageNotBlocked)))
        #expect(u.eblock(page) == .success)
        #expect(u.ewb(page, va: va, slot: 0) == .failure(.status(.notTracked)))
        #expect(u.etrack(eid) == .success)
        let first = try u.ewb(page, va: va, slot: 0).get()
        #expect(!u.entry(page).valid && u.childCount(eid) == 0)
        #expect(first.blob.prefix(5) != Array("first".utf8)[...])
        // A flipped byte fails the MAC.
        var bad = first
        bad.blob[7] ^= 1
        #expect(u.eldu(page, bad, va: va, slot: 0) == .status(.macCompareFail))
        #expect(u.eldu(page, first, va: va, slot: 0) == .success)
        #expect(u.enclaveRead(u.pfn(page).physAddr, count: 5) == Array("first".utf8))
        // Second version out; the first copy replayed is refused (the VA slot holds the new version).
        u.enclaveWrite(u.pfn(page).physAddr, bytes: Array("second".utf8)[...])
        #expect(u.eblock(page) == .success && u.etrack(eid) == .success)
        let second = try u.ewb(page, va: va, slot: 3).get()
        #expect(u.eldu(page, first, va: va, slot: 3) == .status(.macCompareFail))
        // The seeded bug trusts the version stored beside the page: the replay goes through.
        u.elduTrustsSealedVersion = true
        #expect(u.eldu(page, first, va: va, slot: 3) == .success)
        u.elduTrustsSealedVersion = false
        _ = second
    }

    @Test func threadsInsideKeepAPageUntrackedUntilTheyLeave() throws {
        let m = try machine()
        let (u, eid, page, va) = try enclave(m, [1])
        #expect(u.enter(thread: 7, eid))
        #expect(u.eblock(page) == .success)
        #expect(u.etrack(eid) == .success)
        // Thread 7 entered before the EBLOCK: it may hold a TLB entry.
        #expect(u.ewb(page, va: va, slot: 0) == .failure(.status(.notTracked)))
        #expect(u.etrack(eid) == .status(.previousTrackingIncomplete))
        u.exit(thread: 7)
        #expect(throws: Never.self) { _ = try u.ewb(page, va: va, slot: 0).get() }
    }

    @Test func ecreateFaults() throws {
        let m = try machine()
        let u = try #require(m.sgx)
        #expect(u.ecreate(EPCPage(0), base: 0, size: 0x1000, attributes: 0) == .failure(.fault))
        #expect(u.ecreate(EPCPage(0), base: 0x1000, size: 0x10000, attributes: 0) == .failure(.fault))
        #expect(u.ecreate(EPCPage(0), base: 0, size: 0x10000, attributes: 0x1) == .failure(.fault))
        #expect(u.ecreate(EPCPage(0), base: 0, size: 0x10000, attributes: 0x8) == .failure(.fault))
        #expect((try? u.ecreate(EPCPage(0), base: 0, size: 0x10000, attributes: 0x6).get()) != nil)
    }

    @Test func configurationRules() {
        var c = MachineConfig()
        c.epc = .mib(32)
        c.keyidBits = 16
        #expect(throws: ConfigError.self) { try c.validate() }
        c.keyidBits = 6
        c.epc = ByteCount(4097)
        #expect(throws: ConfigError.self) { try c.validate() }
        c.epc = .mib(32)
        #expect((try? c.validate()) != nil)
        #expect(c.engineSlots == 66)
        #expect(c.installedDRAM.rawValue == c.memory.rawValue + (32 << 20))
    }
}
