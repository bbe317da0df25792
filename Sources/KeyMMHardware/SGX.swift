// SGXUnit: the processor's SGX — the EPC inside the PRM, the EPCM that says what each EPC page is,
// the ENCLS leaves the OS runs (ECREATE, EADD, EEXTEND, EINIT, EPA, EBLOCK, ETRACK, EWB, ELDU,
// EREMOVE) and the ENCLU side a thread inside an enclave uses (EENTER/EEXIT, accesses checked
// against the EPCM). Facts: docs/sources.md, "SGX driver (arch/x86/kernel/cpu/sgx)" and "SGX
// hardware (Intel SDM, ENCLS/ENCLU)"; model and limits: docs/sgx.md.
//
// Keys no software holds: the EPC is encrypted by the engine with its own key slot (one past the
// OS's KeyIDs, so no PTE and no PCONFIG can name it: KeyIDTable.program refuses it), and EWB seals
// a page with a second hidden slot (the paging key) plus an HMAC-SHA256 over the ciphertext, the
// page's metadata and its version. All three keys come from the machine seed through a generator
// of their own (so they do not shift the OS's random keys), live as long as the machine, and are
// never printed; their bytes live in HardwareSecret (the one room for them: zeroized as they
// die, the XTS keys' as soon as the engine has their schedules, the MAC key's with the unit).
//
// Invariants: an EPC page is EPCM-valid exactly while the OS owns it as a SECS, VA, REG or TCS
// page; a SECS's child count is the number of its valid REG/TCS pages; EWB succeeds only on a
// blocked page after an ETRACK that followed the EBLOCK and once every thread that was inside the
// enclave before that has left (else SGX_NOT_TRACKED); ELDU accepts a sealed page only if the MAC
// matches with the version in the VA slot (a tampered or replayed page is refused) and then
// empties the slot. Enclave data is only reachable through `enclaveRead/enclaveWrite` (the EPC key);
// every ordinary access to the PRM gets the abort page (Machine.inRange).
import KeyMMBase

/// One 4 KiB page of the EPC, by index (0 is the page at the start of the PRM).
public struct EPCPage: RawRepresentable, Hashable, Comparable, Sendable, CustomStringConvertible {
    public var rawValue: Int
    @inlinable public init(rawValue: Int) { self.rawValue = rawValue }
    @inlinable public init(_ raw: Int) { self.rawValue = raw }
    @inlinable public static func < (a: EPCPage, b: EPCPage) -> Bool { a.rawValue < b.rawValue }
    public var description: String { "EPC page \(rawValue)" }
}

/// The identity the hardware gives an enclave at ECREATE (the SECS's EID).
public struct EnclaveID: RawRepresentable, Hashable, Comparable, Sendable, CustomStringConvertible {
    public var rawValue: UInt64
    @inlinable public init(rawValue: UInt64) { self.rawValue = rawValue }
    @inlinable public init(_ raw: UInt64) { self.rawValue = raw }
    @inlinable public static func < (a: EnclaveID, b: EnclaveID) -> Bool { a.rawValue < b.rawValue }
    public var description: String { "EID \(rawValue)" }
}

/// EPCM page types (SGX_PAGE_TYPE_*; SECINFO carries them in bits 15:8).
public enum EPCPageType: UInt8, Sendable, CustomStringConvertible {
    case secs = 0, tcs = 1, reg = 2, va = 3, trim = 4
    public var description: String {
        switch self {
        case .secs: "SECS"
        case .tcs: "TCS"
        case .reg: "REG"
        case .va: "VA"
        case .trim: "TRIM"
        }
    }
}

/// SECINFO / EPCM permission bits.
public struct EPCMPermissions: OptionSet, Hashable, Sendable {
    public var rawValue: UInt8
    @inlinable public init(rawValue: UInt8) { self.rawValue = rawValue }
    public static let read = EPCMPermissions(rawValue: 1)
    public static let write = EPCMPermissions(rawValue: 2)
    public static let exec = EPCMPermissions(rawValue: 4)
}

/// ENCLS error codes (arch/x86/kernel/cpu/sgx/arch.h, enum sgx_return_code), the ones the model returns.
public enum SGXStatus: Int, Sendable, CustomStringConvertible {
    case blockState = 3
    case notBlockable = 5
    case macCompareFail = 9
    case pageNotBlocked = 10
    case notTracked = 11
    case vaSlotOccupied = 12
    case childPresent = 13
    case previousTrackingIncomplete = 17
    public var description: String {
        switch self {
        case .blockState: "SGX_BLKSTATE"
        case .notBlockable: "SGX_NOTBLOCKABLE"
        case .macCompareFail: "SGX_MAC_COMPARE_FAIL"
        case .pageNotBlocked: "SGX_PAGE_NOT_BLOCKED"
        case .notTracked: "SGX_NOT_TRACKED"
        case .vaSlotOccupied: "SGX_VA_SLOT_OCCUPIED"
        case .childPresent: "SGX_CHILD_PRESENT"
        case .previousTrackingIncomplete: "SGX_PREV_TRK_INCMPL"
        }
    }
}

/// How an ENCLS leaf ended: success, an SGX error code in EAX, or a fault (#GP/#PF: the driver's
/// `encls_faulted`).
public enum ENCLSOutcome: Error, Equatable, Sendable {
    case success
    case status(SGXStatus)
    case fault
}

/// One EPCM entry.
public struct EPCMEntry: Sendable, Equatable {
    public var valid = false
    public var type: EPCPageType = .reg
    public var eid = EnclaveID(0)
    /// The enclave linear address the page belongs to (page aligned; 0 for SECS and VA pages).
    public var linear: UInt64 = 0
    public var permissions: EPCMPermissions = []
    public var blocked = false
    /// The enclave's tracking epoch when EBLOCK ran.
    var blockEpoch: UInt64 = 0
}

/// Paging crypto metadata EWB writes next to a sealed page: its SECINFO, enclave and MAC.
/// `sealedVersion` is the version the page was sealed with, kept beside it for diagnosis (the
/// hardware checks the version in the VA slot instead: a replayed page carries its old version).
public struct PCMD: Sendable, Equatable {
    public var eid: EnclaveID
    public var linear: UInt64
    public var type: EPCPageType
    public var permissions: EPCMPermissions
    public var mac: [UInt8]
    public var sealedVersion: UInt64
    public init(eid: EnclaveID, linear: UInt64, type: EPCPageType, permissions: EPCMPermissions, mac: [UInt8], sealedVersion: UInt64) {
        self.eid = eid; self.linear = linear; self.type = type; self.permissions = permissions
        self.mac = mac; self.sealedVersion = sealedVersion
    }
}

/// A page EWB wrote out: 4 KiB of ciphertext (paging key) and its PCMD.
public struct SealedPage: Sendable, Equatable {
    public var blob: [UInt8]
    public var pcmd: PCMD
    public init(blob: [UInt8], pcmd: PCMD) { self.blob = blob; self.pcmd = pcmd }
}

/// What the SGX unit did, for observers (the invariant checker). Digests are of the page's plaintext.
public enum SGXEvent: Sendable, Equatable {
    case wroteBack(EnclaveID, linear: UInt64, type: EPCPageType, digest: UInt64)
    case loaded(EnclaveID, linear: UInt64, type: EPCPageType, digest: UInt64)
    case loadRefused(EnclaveID, linear: UInt64, SGXStatus)
}

/// The SGX unit of the machine.
public final class SGXUnit {
    /// First physical address of the EPC (right after the OS's memory) and its size in pages.
    public let epcBase: PhysAddr
    public let pageCount: Int
    /// The engine slots of the EPC's key and of the paging key (beyond every KeyID a PTE can hold).
    let epcKeyID: KeyID
    let pagingKeyID: KeyID
    let cache: Cache
    let engine: EncryptionEngine
    let clock: CostClock
    private var epcm: [EPCMEntry]
    /// The SECS contents the model keeps per enclave (they travel with the SECS when it is written back).
    private var secs: [EnclaveID: SECSState] = [:]
    /// VA pages: 512 8-byte version slots each (0 = empty).
    private var vaSlots: [EPCPage: [UInt64]] = [:]
    /// Threads inside an enclave: thread id -> (enclave, epoch at entry).
    private var inside: [UInt64: (eid: EnclaveID, epoch: UInt64)] = [:]
    private var nextEID: UInt64 = 1
    private var nextVersion: UInt64
    /// The key of the paging MACs (HardwareSecret.swift: zeroized when the unit dies).
    private let macKey: HardwareSecret
    /// Seeded bug `eldu-skips-version-check` (set by the kernel from its InjectedBugs): ELDU checks
    /// the MAC with the version stored beside the sealed page instead of the VA slot's.
    public var elduTrustsSealedVersion = false
    /// Called on write-backs and loads (nil: no overhead beyond the check).
    public var observer: ((SGXEvent) -> Void)?

    struct SECSState {
        var base: UInt64
        var size: UInt64
        var attributes: UInt64
        var initialized = false
        var children = 0
        var epoch: UInt64 = 1
        /// The epoch the last ETRACK started (threads that entered before it must leave).
        var trackedEpoch: UInt64 = 0
        var measuredChunks = 0
        /// The EPC page holding the SECS (nil while it is written back).
        var page: EPCPage?
    }

    /// SECS.ATTRIBUTES bits ECREATE accepts (DEBUG, MODE64BIT, PROVISIONKEY, EINITTOKENKEY, KSS,
    /// AEXNOTIFY); INIT (set only by EINIT) and the reserved bits fault.
    public static let knownAttributes: UInt64 = 0x2 | 0x4 | 0x10 | 0x20 | 0x80 | 0x400

    init(config: MachineConfig, cache: Cache, engine: EncryptionEngine, clock: CostClock) {
        epcBase = config.epcRange.lowerBound
        pageCount = config.epcPages
        epcKeyID = KeyID(UInt16(Int(config.maxKeyID) + 1))
        pagingKeyID = KeyID(UInt16(Int(config.maxKeyID) + 2))
        self.cache = cache
        self.engine = engine
        self.clock = clock
        epcm = [EPCMEntry](repeating: EPCMEntry(), count: pageCount)
        var rng = SeededGenerator.derived(seed: config.seed, purpose: 0x5347_5820)   // "SGX "
        let keyBytes = config.xtsKeyBits / 8
        for slot in [epcKeyID, pagingKeyID] {
            // Each key's bytes live only until the engine has its schedule (zeroized as they die).
            HardwareSecret(count: 2 * keyBytes, from: &rng).installXTSKey(in: engine, slot: slot)
        }
        macKey = HardwareSecret(count: 32, from: &rng)
        nextVersion = rng.next() >> 16 | 1
    }

    /// The MAC key's holder, for tests that watch it die (never its bytes).
    package var macKeyForTesting: HardwareSecret { macKey }

    // MARK: addresses

    /// The EPC page holding `pa`, nil outside the EPC.
    public func page(at pa: PhysAddr) -> EPCPage? {
        guard pa >= epcBase else { return nil }
        let i = (pa.rawValue - epcBase.rawValue) >> pageShift
        return i < UInt64(pageCount) ? EPCPage(Int(i)) : nil
    }

    /// The EPC page of a frame, nil outside the EPC.
    @inlinable public func page(of pfn: PFN) -> EPCPage? { page(at: pfn.physAddr) }

    /// The frame of an EPC page.
    public func pfn(_ p: EPCPage) -> PFN { PFN((epcBase.rawValue >> pageShift) &+ UInt64(p.rawValue)) }

    /// The EPCM entry of a page.
    public func entry(_ p: EPCPage) -> EPCMEntry { epcm[p.rawValue] }

    /// Whether the enclave's SECS says EINIT ran.
    public func isInitialized(_ eid: EnclaveID) -> Bool { secs[eid]?.initialized ?? false }

    /// The number of the enclave's REG/TCS pages in the EPC, as the SECS counts them.
    public func childCount(_ eid: EnclaveID) -> Int { secs[eid]?.children ?? 0 }

    /// EEXTENDs (256-byte chunks) measured into the enclave so far.
    public func measuredChunks(_ eid: EnclaveID) -> Int { secs[eid]?.measuredChunks ?? 0 }

    /// Threads inside `eid` now (thread ids in ascending order).
    public func threadsInside(_ eid: EnclaveID) -> [UInt64] { inside.filter { $0.value.eid == eid }.keys.sorted() }

    /// The enclave a thread is inside, if any.
    public func enclave(ofThread t: UInt64) -> EnclaveID? { inside[t]?.eid }

    // MARK: EPC data (through the EPC's key)

    func storePage(_ p: EPCPage, _ bytes: [UInt8]) {
        let pa = epcBase.advanced(by: p.rawValue << Int(pageShift))
        cache.store(pa, keyid: epcKeyID, bytes: bytes[...])
    }

    func loadPage(_ p: EPCPage) -> [UInt8] {
        let pa = epcBase.advanced(by: p.rawValue << Int(pageShift))
        return cache.load(pa, keyid: epcKeyID, count: pageSize)
    }

    /// A load of `count` bytes by a thread inside an enclave (the caller checked the EPCM with `allows`).
    public func enclaveRead(_ pa: PhysAddr, count: Int) -> [UInt8] {
        cache.load(pa, keyid: epcKeyID, count: count)
    }

    /// A store by a thread inside an enclave (the caller checked the EPCM with `allows`).
    public func enclaveWrite(_ pa: PhysAddr, bytes: ArraySlice<UInt8>) {
        cache.store(pa, keyid: epcKeyID, bytes: bytes)
    }

    /// The EPCM check of an access from inside enclave `eid` to `page` at `linear`: a valid REG page
    /// of that enclave, mapped at the address it was added for, not blocked, with the permission.
    public func allows(_ page: EPCPage, eid: EnclaveID, linear: UInt64, write: Bool) -> Bool {
        let e = epcm[page.rawValue]
        guard e.valid, !e.blocked, e.type == .reg, e.eid == eid, e.linear == linear & ~UInt64(pageSize - 1) else { return false }
        return e.permissions.contains(write ? .write : .read)
    }

    // MARK: ENCLU

    /// EENTER: thread `t` runs inside `eid` from now on (until `exit`). Fails (false) unless the
    /// enclave is initialized and its SECS is in the EPC.
    public func enter(thread t: UInt64, _ eid: EnclaveID) -> Bool {
        guard let s = secs[eid], s.initialized, s.page != nil else { return false }
        clock.charge(.sgxEENTER)
        inside[t] = (eid, s.epoch)
        return true
    }

    /// EEXIT or an asynchronous exit (an interrupt, an IPI): the thread leaves its enclave.
    public func exit(thread t: UInt64) { inside[t] = nil }

    // MARK: ENCLS

    /// ECREATE: `page` becomes the SECS of a new enclave [base, base + size). Faults (#GP) for a size
    /// that is not a power of two of at least two pages, a base not aligned to the size, a range
    /// beyond the canonical user half, reserved attribute bits, or a page already in use.
    public func ecreate(_ page: EPCPage, base: UInt64, size: UInt64, attributes: UInt64) -> Result<EnclaveID, ENCLSOutcome> {
        clock.charge(.sgxECREATE)
        guard !epcm[page.rawValue].valid, size >= 2 * UInt64(pageSize), size & (size &- 1) == 0,
              base & (size &- 1) == 0, base &+ size >= base, base &+ size <= UInt64(1) << 47,
              attributes & ~SGXUnit.knownAttributes == 0 else { return .failure(.fault) }
        let eid = EnclaveID(nextEID)
        nextEID &+= 1
        secs[eid] = SECSState(base: base, size: size, attributes: attributes, page: page)
        epcm[page.rawValue] = EPCMEntry(valid: true, type: .secs, eid: eid)
        cache.zeroPage(pfn(page), keyid: epcKeyID)
        return .success(eid)
    }

    /// EADD: copies `contents` (one page) into `page` as a REG or TCS page of `eid` at `linear`.
    /// TCS pages get no permissions (the CPU clears them).
    public func eadd(_ page: EPCPage, eid: EnclaveID, linear: UInt64, type: EPCPageType,
                     permissions: EPCMPermissions, contents: [UInt8]) -> ENCLSOutcome {
        clock.charge(.sgxEADD)
        guard var s = secs[eid], !s.initialized, secsResident(eid), !epcm[page.rawValue].valid,
              type == .reg || type == .tcs, linear & UInt64(pageSize - 1) == 0,
              linear >= s.base, linear - s.base < s.size else { return .fault }
        var bytes = contents
        if bytes.count != pageSize { bytes = Array(bytes.prefix(pageSize)) + [UInt8](repeating: 0, count: max(0, pageSize - bytes.count)) }
        storePage(page, bytes)
        epcm[page.rawValue] = EPCMEntry(valid: true, type: type, eid: eid, linear: linear,
                                        permissions: type == .tcs ? [] : permissions)
        s.children += 1
        secs[eid] = s
        return .success
    }

    /// EEXTEND: measures 256 bytes of `page` into the enclave's MRENCLAVE (the model counts them).
    public func eextend(_ eid: EnclaveID, _ page: EPCPage) -> ENCLSOutcome {
        clock.charge(.sgxEEXTEND)
        let e = epcm[page.rawValue]
        guard var s = secs[eid], !s.initialized, e.valid, e.eid == eid, e.type != .secs else { return .fault }
        s.measuredChunks += 1
        secs[eid] = s
        return .success
    }

    /// EINIT (the model checks no SIGSTRUCT or token: the driver's EPERM/EIO paths do not arise).
    public func einit(_ eid: EnclaveID) -> ENCLSOutcome {
        clock.charge(.sgxEINIT)
        guard var s = secs[eid], !s.initialized, secsResident(eid) else { return .fault }
        s.initialized = true
        secs[eid] = s
        return .success
    }

    /// EPA: `page` becomes a version-array page of 512 empty slots.
    public func epa(_ page: EPCPage) -> ENCLSOutcome {
        clock.charge(.sgxEPA)
        guard !epcm[page.rawValue].valid else { return .fault }
        epcm[page.rawValue] = EPCMEntry(valid: true, type: .va)
        vaSlots[page] = [UInt64](repeating: 0, count: 512)
        cache.zeroPage(pfn(page), keyid: epcKeyID)
        return .success
    }

    /// EBLOCK: no new TLB entries for `page`; remembers the enclave's epoch.
    public func eblock(_ page: EPCPage) -> ENCLSOutcome {
        clock.charge(.sgxEBLOCK)
        var e = epcm[page.rawValue]
        guard e.valid else { return .fault }
        guard e.type == .reg || e.type == .tcs || e.type == .trim else { return .status(.notBlockable) }
        if e.blocked { return .status(.blockState) }
        e.blocked = true
        e.blockEpoch = secs[e.eid]?.epoch ?? 0
        epcm[page.rawValue] = e
        return .success
    }

    /// ETRACK: starts a new tracking epoch for `eid` (SGX_PREV_TRK_INCMPL while threads that were
    /// inside at the previous ETRACK have not left).
    public func etrack(_ eid: EnclaveID) -> ENCLSOutcome {
        clock.charge(.sgxETRACK)
        guard var s = secs[eid], secsResident(eid) else { return .fault }
        if s.trackedEpoch != 0, inside.values.contains(where: { $0.eid == eid && $0.epoch < s.trackedEpoch }) {
            return .status(.previousTrackingIncomplete)
        }
        s.epoch &+= 1
        s.trackedEpoch = s.epoch
        secs[eid] = s
        return .success
    }

    /// EWB: seals `page` (encrypted with the paging key, MAC'd with its metadata and a fresh version),
    /// stores the version in slot `slot` of VA page `va` and frees the EPC page.
    public func ewb(_ page: EPCPage, va: EPCPage, slot: Int) -> Result<SealedPage, ENCLSOutcome> {
        clock.charge(.sgxEWB)
        let e = epcm[page.rawValue]
        guard e.valid, e.type != .va, let s = secs[e.eid] else { return .failure(.fault) }
        guard epcm[va.rawValue].valid, epcm[va.rawValue].type == .va, slot >= 0, slot < 512,
              let slots = vaSlots[va] else { return .failure(.fault) }
        if e.type == .secs {
            if s.children > 0 { return .failure(.status(.childPresent)) }
        } else {
            guard e.blocked else { return .failure(.status(.pageNotBlocked)) }
            let tracked = s.epoch > e.blockEpoch
                && !inside.values.contains(where: { $0.eid == e.eid && $0.epoch <= e.blockEpoch })
            guard tracked else { return .failure(.status(.notTracked)) }
        }
        if slots[slot] != 0 { return .failure(.status(.vaSlotOccupied)) }
        let plain = loadPage(page)
        let version = nextVersion
        nextVersion &+= 1
        let blob = engine.encrypted(pagingKeyID, at: PhysAddr(version << pageShift), plain)
        let pcmd = PCMD(eid: e.eid, linear: e.linear, type: e.type, permissions: e.permissions,
                        mac: mac(blob, e.eid, e.linear, e.type, e.permissions, version), sealedVersion: version)
        vaSlots[va]![slot] = version
        epcm[page.rawValue] = EPCMEntry()
        if e.type != .secs { secs[e.eid]!.children -= 1 } else { secs[e.eid]!.page = nil }
        observer?(.wroteBack(e.eid, linear: e.linear, type: e.type, digest: SGXUnit.digest(plain)))
        return .success(SealedPage(blob: blob, pcmd: pcmd))
    }

    /// ELDU: loads `sealed` into the free `page` if its MAC matches with the version in slot `slot`
    /// of VA page `va` (SGX_MAC_COMPARE_FAIL otherwise), then empties the slot. A child page needs its
    /// SECS in the EPC.
    public func eldu(_ page: EPCPage, _ sealed: SealedPage, va: EPCPage, slot: Int) -> ENCLSOutcome {
        clock.charge(.sgxELDU)
        let m = sealed.pcmd
        guard !epcm[page.rawValue].valid, sealed.blob.count == pageSize, epcm[va.rawValue].valid,
              epcm[va.rawValue].type == .va, slot >= 0, slot < 512, let slots = vaSlots[va],
              secs[m.eid] != nil else { return .fault }
        if m.type != .secs && !secsResident(m.eid) { return .fault }
        let version = elduTrustsSealedVersion ? m.sealedVersion : slots[slot]
        guard version != 0, mac(sealed.blob, m.eid, m.linear, m.type, m.permissions, version) == m.mac else {
            observer?(.loadRefused(m.eid, linear: m.linear, .macCompareFail))
            return .status(.macCompareFail)
        }
        let plain = engine.decrypted(pagingKeyID, at: PhysAddr(version << pageShift), sealed.blob)
        storePage(page, plain)
        epcm[page.rawValue] = EPCMEntry(valid: true, type: m.type, eid: m.eid, linear: m.linear, permissions: m.permissions)
        vaSlots[va]![slot] = 0
        if m.type != .secs { secs[m.eid]!.children += 1 } else { secs[m.eid]!.page = page }
        observer?(.loaded(m.eid, linear: m.linear, type: m.type, digest: SGXUnit.digest(plain)))
        return .success
    }

    /// EREMOVE: frees `page` (a no-op on a page that is not valid; SGX_CHILD_PRESENT for a SECS that
    /// still has children in the EPC).
    public func eremove(_ page: EPCPage) -> ENCLSOutcome {
        clock.charge(.sgxEREMOVE)
        let e = epcm[page.rawValue]
        guard e.valid else { return .success }
        switch e.type {
        case .secs:
            if (secs[e.eid]?.children ?? 0) > 0 { return .status(.childPresent) }
            secs[e.eid] = nil
            for (t, v) in inside where v.eid == e.eid { inside[t] = nil }
        case .va:
            vaSlots[page] = nil
        default:
            secs[e.eid]?.children -= 1
        }
        epcm[page.rawValue] = EPCMEntry()
        return .success
    }

    /// The enclave's SECS contents are no longer needed (it was freed while its SECS was written back).
    public func forget(_ eid: EnclaveID) {
        if !secsResident(eid) { secs[eid] = nil }
        for (t, v) in inside where v.eid == eid { inside[t] = nil }
    }

    /// Versions in use in a VA page (non-empty slots), for accounting checks.
    public func usedSlots(_ va: EPCPage) -> Int { vaSlots[va]?.reduce(0) { $0 + ($1 != 0 ? 1 : 0) } ?? 0 }

    // MARK: helpers

    func secsResident(_ eid: EnclaveID) -> Bool { secs[eid]?.page != nil }

    /// The EPC page holding the enclave's SECS, nil while it is written back (or unknown).
    public func secsPage(_ eid: EnclaveID) -> EPCPage? { secs[eid]?.page }

    /// HMAC-SHA256(MAC key, blob || eid || linear || type || permissions || version).
    func mac(_ blob: [UInt8], _ eid: EnclaveID, _ linear: UInt64, _ type: EPCPageType,
             _ perms: EPCMPermissions, _ version: UInt64) -> [UInt8] {
        var data = blob
        data.reserveCapacity(blob.count + 26)
        SGXUnit.appendLittleEndian(eid.rawValue, to: &data)
        SGXUnit.appendLittleEndian(linear, to: &data)
        data.append(type.rawValue)
        data.append(perms.rawValue)
        SGXUnit.appendLittleEndian(version, to: &data)
        return macKey.hmacSHA256(data)
    }

    /// The 8 bytes of `v`, least significant first.
    static func appendLittleEndian(_ v: UInt64, to data: inout [UInt8]) {
        for i in 0..<8 { data.append(UInt8(truncatingIfNeeded: v >> (8 * i))) }
    }

    /// A 64-bit FNV-1a digest of a page's plaintext (for observers; never stored with the data).
    public static func digest(_ bytes: [UInt8]) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in bytes { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
        return h
    }
}
