// The confidential-VM hardware: the KeyID partitioning MSR, line integrity and poison (the
// X86_BUG_TDX_PW_MCE rules, MOVDIR64B), WBNOINVD, the TDX module's ordering rules and the SEV
// firmware's ASID and RMP rules (docs/tdx-sev.md).
import Testing
import KeyMMBase
@testable import KeyMMHardware

private func tdxMachine(erratum: Bool = true, packages: Int = 1, cache: ByteCount = .kib(256)) throws -> Machine {
    var c = MachineConfig()
    c.memory = .mib(64)
    c.cacheSize = cache
    c.cacheWays = 4
    c.keyidBits = 3
    c.tdxKeyIDs = 3
    c.packages = packages
    c.tdxPartialWriteErratum = erratum
    return try Machine(config: c)
}

private func sevMachine(sfwNo: Bool = false) throws -> Machine {
    var c = MachineConfig()
    c.memory = .mib(64)
    c.cacheSize = .kib(256)
    c.cacheWays = 4
    c.encryption = .sme
    c.sevASIDs = 6
    c.minSEVASID = 4
    c.coherencySFWNo = sfwNo
    return try Machine(config: c)
}

/// A TDX module brought up by hand: PAMT on frames 100..<104, global key on every package.
private func readyModule(_ m: Machine) throws -> TDXModule {
    let t = try #require(m.tdx)
    let pamt = (100..<104).map { PFN(UInt64($0)) }
    #expect(t.sysConfig(tdmrs: [TDMR(base: 0, size: 1 << 30, pamt: pamt)], globalKeyID: KeyID(5)) == .success)
    for p in 0..<t.packages { #expect(t.sysKeyConfig(package: p) == .success) }
    #expect(t.sysTdmrInit() == .success)
    return t
}

@Suite struct CVMHardwareTests {
    @Test func keyidPartitioningMSR() throws {
        let m = try tdxMachine()
        // keyid-bits 3: KeyIDs 1..7; 3 TDX KeyIDs -> MKTME 1..4 in the low half, 3 in the high half.
        #expect(m.config.keyidPartitioning == 0x3_0000_0004)
        #expect(m.keyTable.tdxGlobalKeyID == KeyID(5))
        // The global KeyID is keyed by TDH.SYS.KEY.CONFIG, not at boot.
        #expect(m.keyTable.state(of: KeyID(5)) == .unprogrammed)
        var c = MachineConfig()
        c.tdxKeyIDs = 0
        #expect(c.keyidPartitioning == 63)
    }

    @Test func partialWriteToTDOwnedLinePoisonsWithTheErratum() throws {
        let m = try tdxMachine()
        let pa = PFN(200).physAddr
        // A TD's write (KeyID 6) reaches DRAM at write-back: the line is TD-owned.
        _ = m.keyTable.programTDX(KeyID(6))
        m.write(pa, keyid: KeyID(6), bytes: [UInt8](repeating: 7, count: 64))
        m.flushPage(PFN(200), keyid: KeyID(6))
        let integrity = try #require(m.integrity)
        #expect(integrity.isTDOwned(pa))
        // A host MOVNTI of 8 bytes: a partial write by non-TD software -> poisoned.
        m.writeNonTemporal(pa, keyid: .tme, bytes: [1, 2, 3, 4, 5, 6, 7, 8], path: "test")
        #expect(integrity.isPoisoned(pa))
        #expect(integrity.poisonedBy[pa.rawValue]?.path == "test")
        // A later read machine-checks; the next line is fine.
        _ = m.read(pa, keyid: .tme, count: 8)
        #expect(m.takeMachineCheck() == pa)
        _ = m.read(pa.advanced(by: 64), keyid: .tme, count: 8)
        #expect(m.takeMachineCheck() == nil)
        // A partial cached store fills the line first: machine check, nothing stored.
        m.write(pa.advanced(by: 4), keyid: .tme, bytes: [9])
        #expect(m.takeMachineCheck() == pa)
        // MOVDIR64B clears it; reads are clean again.
        m.movdir64b(pa, keyid: .tme, bytes: [UInt8](repeating: 0, count: 64))
        #expect(!integrity.isPoisoned(pa) && !integrity.isTDOwned(pa))
        #expect(m.read(pa, keyid: .tme, count: 8) == [UInt8](repeating: 0, count: 8))
        #expect(m.takeMachineCheck() == nil)
        #expect(integrity.machineChecks == 2)
    }

    @Test func withoutTheErratumAPartialWriteConvertsTheLine() throws {
        let m = try tdxMachine(erratum: false)
        let pa = PFN(200).physAddr
        _ = m.keyTable.programTDX(KeyID(6))
        m.write(pa, keyid: KeyID(6), bytes: [UInt8](repeating: 7, count: 64))
        m.flushPage(PFN(200), keyid: KeyID(6))
        m.writeNonTemporal(pa, keyid: .tme, bytes: [1], path: "test")
        let integrity = try #require(m.integrity)
        #expect(!integrity.isPoisoned(pa) && !integrity.isTDOwned(pa))
        _ = m.read(pa, keyid: .tme, count: 8)
        #expect(m.takeMachineCheck() == nil)
    }

    @Test func aFullNonTemporalLineAndAWriteBackRewriteIntegrity() throws {
        let m = try tdxMachine()
        let pa = PFN(201).physAddr
        let integrity = try #require(m.integrity)
        m.writeNonTemporal(pa, keyid: KeyID(6), bytes: [UInt8](repeating: 1, count: 64), path: "td")
        #expect(integrity.isTDOwned(pa))
        // A host line fully overwritten in the cache and written back: a full-line write.
        m.write(pa, keyid: .tme, bytes: [UInt8](repeating: 2, count: 64))
        m.flushPage(PFN(201), keyid: .tme)
        #expect(!integrity.isTDOwned(pa))
        // Reading a poisoned line that is cached under the reader's KeyID does not touch DRAM;
        // through another KeyID it is a fill, and a machine check.
        let l = pa.advanced(by: 64)
        m.writeNonTemporal(l, keyid: KeyID(6), bytes: [UInt8](repeating: 1, count: 64), path: "td")
        _ = m.read(l, keyid: KeyID(1), count: 64)                  // cached under KeyID 1
        m.writeNonTemporal(l, keyid: .tme, bytes: [3], path: "host")
        #expect(integrity.isPoisoned(l))
        _ = m.read(l, keyid: KeyID(1), count: 64)
        #expect(m.takeMachineCheck() == nil)
        _ = m.read(l, keyid: KeyID(2), count: 64)
        #expect(m.takeMachineCheck() == l)
    }

    @Test func wbnoinvdKeepsLinesClean() throws {
        let m = try tdxMachine()
        let pa = PFN(300).physAddr
        m.write(pa, keyid: .tme, bytes: [UInt8](repeating: 5, count: 128))
        #expect(m.cache.dirtyLines == 2)
        let before = m.cache.validLines
        m.wbnoinvd()
        #expect(m.cache.dirtyLines == 0 && m.cache.validLines == before)
        #expect(m.read(pa, keyid: .tme, count: 4) == [5, 5, 5, 5])
        m.wbinvd()
        #expect(m.cache.validLines == 0)
    }

    @Test func tdxModuleConfiguresTheGlobalKeyOncePerPackage() throws {
        let m = try tdxMachine(packages: 2)
        let t = try #require(m.tdx)
        #expect(t.sysKeyConfig(package: 0) == .operandInvalid)   // before TDH.SYS.CONFIG
        #expect(t.sysConfig(tdmrs: [TDMR(base: 0, size: 1 << 30, pamt: [PFN(100)])], globalKeyID: KeyID(5)) == .success)
        #expect(t.sysTdmrInit() == .keyStateIncorrect)
        let p0 = m.clock.count(of: .pconfig)
        #expect(t.sysKeyConfig(package: 0) == .success)
        #expect(t.sysKeyConfig(package: 0) == .keyConfigured)
        #expect(t.sysTdmrInit() == .keyStateIncorrect)           // package 1 not keyed yet
        #expect(t.sysKeyConfig(package: 1) == .success)
        #expect(m.clock.count(of: .pconfig) - p0 == 2)
        #expect(m.keyTable.state(of: KeyID(5)) == .keyed)
        #expect(t.sysTdmrInit() == .success)
        #expect(t.pageType(PFN(100)) == .rsvd)
    }

    @Test func tdxModuleEnforcesTheRemovalAndTeardownOrder() throws {
        let m = try tdxMachine()
        let t = try readyModule(m)
        let tdr = PFN(10), tdcs = PFN(11), page = PFN(12), src = PFN(13)
        #expect(t.mngCreate(tdr: tdr, hkid: KeyID(5)) == .operandInvalid)   // the global KeyID
        #expect(t.mngCreate(tdr: tdr, hkid: KeyID(6)) == .success)
        #expect(t.mngCreate(tdr: PFN(20), hkid: KeyID(6)) == .operandBusy)  // KOT: taken
        #expect(t.mngAddcx(tdr: tdr, page: tdcs) == .keyStateIncorrect)     // key not configured
        #expect(t.mngKeyConfig(tdr: tdr, package: 0) == .success)
        #expect(t.mngAddcx(tdr: tdr, page: tdcs) == .success)
        #expect(t.mngInit(tdr: tdr) == .success)
        #expect(t.memPageAug(tdr: tdr, gpa: 0, page: page) == .operandInvalid)   // before finalize
        #expect(t.memPageAdd(tdr: tdr, gpa: 0, page: page, source: src) == .success)
        #expect(t.mrFinalize(tdr: tdr) == .success)
        // REMOVE needs BLOCK, then a TRACK past the block.
        #expect(t.memPageRemove(tdr: tdr, gpa: 0) == .eptEntryStateIncorrect)
        #expect(t.memRangeBlock(tdr: tdr, gpa: 0) == .success)
        #expect(t.memPageRemove(tdr: tdr, gpa: 0) == .tlbTrackingNotDone)
        #expect(t.memTrack(tdr: tdr) == .success)
        #expect(t.memPageRemove(tdr: tdr, gpa: 0) == .success)
        #expect(t.pageType(page) == .nda)
        #expect(m.cache.cachedLines(of: page).contains { $0.keyid == KeyID(6) })
        #expect(t.phymemPageWbinvd(page, keyid: KeyID(6)) == .success)
        #expect(!m.cache.cachedLines(of: page).contains { $0.keyid == KeyID(6) })
        // Teardown: FREEID needs VPFLUSHDONE and CACHE.WB; RECLAIM needs FREEID; the TDR goes last.
        #expect(t.phymemPageReclaim(tdcs) == .lifecycleStateIncorrect)
        #expect(t.mngKeyFreeid(tdr: tdr) == .lifecycleStateIncorrect)
        #expect(t.phymemCacheWb(package: 0) == .noHKIDReadyToWBCache)
        #expect(t.mngVpflushdone(tdr: tdr) == .success)
        #expect(t.mngKeyFreeid(tdr: tdr) == .wbcacheNotComplete)
        #expect(t.phymemCacheWb(package: 0) == .success)
        #expect(t.isAssigned(KeyID(6)))
        #expect(t.mngKeyFreeid(tdr: tdr) == .success)
        #expect(!t.isAssigned(KeyID(6)))
        #expect(m.keyTable.state(of: KeyID(6)) == .cleared)
        #expect(t.phymemPageReclaim(tdr) == .operandBusy)   // the TDCS page is still the TD's
        #expect(t.phymemPageReclaim(tdcs) == .success)
        #expect(t.phymemPageReclaim(tdr) == .success)
        #expect(t.ownedFrameCount == 4)   // the PAMT only
    }

    @Test func injectedSEAMCALLFailureIsConsumedOnce() throws {
        let m = try tdxMachine()
        let t = try readyModule(m)
        t.inject(.mngCreate, .rndNoEntropy)
        #expect(t.mngCreate(tdr: PFN(10), hkid: KeyID(6)) == .rndNoEntropy)
        #expect(t.pageType(PFN(10)) == .nda)
        #expect(t.mngCreate(tdr: PFN(10), hkid: KeyID(6)) == .success)
    }

    @Test func sevFirmwareNeedsWBINVDAndDFFlushBeforeAnASIDComesBack() throws {
        let m = try sevMachine()
        let s = try #require(m.sev)
        #expect(s.activate(asid: 1) == .success)
        #expect(s.activate(asid: 1) == .asidOwned)
        #expect(s.deactivate(asid: 1) == .success)
        #expect(s.activate(asid: 1) == .dfflushRequired)
        #expect(s.dfFlush() == .wbinvdRequired)   // DEACTIVATE cleared the WBINVD indicator
        m.wbnoinvd()
        #expect(s.dfFlush() == .wbinvdRequired)   // WBNOINVD does not count
        m.wbinvd()
        #expect(s.dfFlush() == .success)
        #expect(s.activate(asid: 1) == .success)
        #expect(s.activate(asid: 7) == .invalidASID)
    }

    @Test func rmpRules() throws {
        let m = try sevMachine()
        let s = try #require(m.sev)
        #expect(s.makePrivate(PFN(513), gpa: 0, level: .m2, asid: 1, immutable: false) == .rmpInput)   // not aligned
        #expect(s.makePrivate(PFN(600), gpa: 0x1000, level: .k4, asid: 1, immutable: false) == .success)
        #expect(s.makePrivate(PFN(512), gpa: 0, level: .m2, asid: 1, immutable: false) == .rmpOverlap)
        #expect(s.makeShared(PFN(600), level: .k4) == .success)
        #expect(s.makePrivate(PFN(512), gpa: 0x200000, level: .m2, asid: 1, immutable: false) == .success)
        #expect(s.entry(PFN(600))?.gpa == 0x200000 + 88 * 4096)
        #expect(s.makeShared(PFN(600), level: .k4) == .rmpInput)   // inside a 2M entry: PSMASH first
        #expect(s.psmash(PFN(600)) == .success)
        #expect(s.entry(PFN(600))?.level == .k4)
        #expect(s.makeShared(PFN(600), level: .k4) == .success)
        #expect(s.frames(assignedTo: 1).count == 511)
        // An immutable (firmware) page is made shared only after SNP_PAGE_RECLAIM.
        #expect(s.makePrivate(PFN(2000), gpa: 0, level: .k4, asid: 0, immutable: true) == .success)
        #expect(s.makeShared(PFN(2000), level: .k4) == .invalidPageState)
        #expect(s.pageReclaim(PFN(2000)) == .success)
        #expect(s.makeShared(PFN(2000), level: .k4) == .success)
    }

    @Test func coherencySFWNoDropsHostLinesWithoutCLFLUSH() throws {
        for sfwNo in [false, true] {
            let m = try sevMachine(sfwNo: sfwNo)
            let s = try #require(m.sev)
            m.write(PFN(700).physAddr, keyid: .tme, bytes: [UInt8](repeating: 1, count: 4096))
            let flushed = m.clock.count(of: .clflushLine)
            #expect(s.makePrivate(PFN(700), gpa: 0, level: .k4, asid: 1, immutable: false) == .success)
            #expect(m.cache.cachedLines(of: PFN(700)).isEmpty == sfwNo)
            #expect(m.clock.count(of: .clflushLine) == flushed)
        }
    }

    @Test func asidTagsLieAfterSGXsKeySlots() throws {
        // With an EPC the engine's slots after the host KeyIDs are SGX's (EPC key, paging key);
        // SEV guests' ASIDs come after them, so ACTIVATE never rekeys the EPC.
        var c = MachineConfig()
        c.memory = .mib(64)
        c.encryption = .sme
        c.sevASIDs = 4
        c.minSEVASID = 2
        c.epc = .mib(1)
        let m = try Machine(config: c)
        let sgx = try #require(m.sgx)
        let tags = (1...4).map { c.asidTag($0) }
        #expect(!tags.contains(sgx.epcKeyID) && !tags.contains(sgx.pagingKeyID))
        #expect(tags.allSatisfy { $0.rawValue > sgx.pagingKeyID.rawValue && Int($0.rawValue) < c.engineSlots })
        #expect(c.asid(ofTag: sgx.epcKeyID) == nil && c.asid(ofTag: sgx.pagingKeyID) == nil)
        #expect(tags.map { c.asid(ofTag: $0) } == [1, 2, 3, 4])
    }
}
