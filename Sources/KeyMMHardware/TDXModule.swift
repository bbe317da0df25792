// TDXModule: the Intel TDX module (SEAM firmware) as the host kernel sees it through SEAMCALLs:
// its configuration (TDMRs, PAMT, the global KeyID keyed once per package), the KeyID ownership
// table, the page metadata (PAMT) of every page it owns, and the life of each TD (TDR, TDCS,
// private pages, TLB epochs, teardown). docs/sources.md, "TDX host (arch/x86/virt/vmx/tdx)";
// docs/tdx-sev.md lists which of its rules the model enforces.
//
// Rules enforced (a violated rule returns its status and changes nothing):
// * TDH.SYS.KEY.CONFIG once per package (TDX_KEY_CONFIGURED again); TDH.SYS.TDMR.INIT only when
//   every package has the global key; TDs only after that.
// * TDH.MNG.CREATE takes a guest KeyID that no TD holds (KOT) and a page no TD owns; the TDR is
//   written through the global KeyID. TDH.MNG.KEY.CONFIG once per package; TDCS pages, private
//   pages and TDH.MNG.INIT need the TD's key on every package.
// * Private pages: PAGE.ADD before TDH.MR.FINALIZE, PAGE.AUG after; RANGE.BLOCK, then TRACK (the
//   epoch moves past the block), then PAGE.REMOVE; a removed page belongs to nobody but keeps its
//   lines under the TD's KeyID until TDH.PHYMEM.PAGE.WBINVD writes them back.
// * Teardown: TDH.MNG.VPFLUSHDONE, then TDH.PHYMEM.CACHE.WB on every package, then
//   TDH.MNG.KEY.FREEID (the KeyID is free in the KOT only then); TDH.PHYMEM.PAGE.RECLAIM only
//   after FREEID, the TDR last (while the TD owns other pages it is refused).
//
// The module's own accesses go through the cache with the KeyID the module uses: the global KeyID
// for PAMT and TDRs, the TD's KeyID for TDCS and private pages. Injected failures
// (`inject(_:_:)`) let scenarios take the kernel's failure paths.
//
// Invariants: a page has at most one PAMT entry; a TD's KeyID is assigned in the KOT from
// TDH.MNG.CREATE until FREEID; the engine slot of a guest KeyID is keyed only while some package
// holds its key (cleared at FREEID).
import KeyMMBase

/// SEAMCALL leaf functions the model executes (arch/x86/virt/vmx/tdx/tdx.h numbers).
package enum TDXLeaf: Int, CaseIterable, Sendable, CustomStringConvertible {
    case mngAddcx = 1, memPageAdd = 2, memPageAug = 6, memRangeBlock = 7, mngKeyConfig = 8, mngCreate = 9
    case mrFinalize = 17, mngVpflushdone = 19, mngKeyFreeid = 20, mngInit = 21, phymemPageRdmd = 24
    case phymemPageReclaim = 28, memPageRemove = 29, sysKeyConfig = 31, sysTdmrInit = 36, memTrack = 38
    case phymemCacheWb = 40, phymemPageWbinvd = 41, sysConfig = 45

    /// The kernel's constant name (TDH_MNG_CREATE ...).
    package var constantName: String {
        switch self {
        case .mngAddcx: "TDH_MNG_ADDCX"
        case .memPageAdd: "TDH_MEM_PAGE_ADD"
        case .memPageAug: "TDH_MEM_PAGE_AUG"
        case .memRangeBlock: "TDH_MEM_RANGE_BLOCK"
        case .mngKeyConfig: "TDH_MNG_KEY_CONFIG"
        case .mngCreate: "TDH_MNG_CREATE"
        case .mrFinalize: "TDH_MR_FINALIZE"
        case .mngVpflushdone: "TDH_MNG_VPFLUSHDONE"
        case .mngKeyFreeid: "TDH_MNG_KEY_FREEID"
        case .mngInit: "TDH_MNG_INIT"
        case .phymemPageRdmd: "TDH_PHYMEM_PAGE_RDMD"
        case .phymemPageReclaim: "TDH_PHYMEM_PAGE_RECLAIM"
        case .memPageRemove: "TDH_MEM_PAGE_REMOVE"
        case .sysKeyConfig: "TDH_SYS_KEY_CONFIG"
        case .sysTdmrInit: "TDH_SYS_TDMR_INIT"
        case .memTrack: "TDH_MEM_TRACK"
        case .phymemCacheWb: "TDH_PHYMEM_CACHE_WB"
        case .phymemPageWbinvd: "TDH_PHYMEM_PAGE_WBINVD"
        case .sysConfig: "TDH_SYS_CONFIG"
        }
    }
    /// The name as the TDX module documentation writes it (TDH.MNG.CREATE ...).
    package var description: String { constantName.replacingOccurrences(of: "_", with: ".") }
}

/// A SEAMCALL completion status (RAX). Values from arch/x86/kvm/vmx/tdx_errno.h where Linux has
/// them; `tlbTrackingNotDone`, `wbcacheNotComplete` and `lifecycleStateIncorrect` are the model's.
package struct TDXStatus: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    package var rawValue: UInt64
    package init(rawValue: UInt64) { self.rawValue = rawValue }
    package static let success = TDXStatus(rawValue: 0)
    package static let interruptedResumable = TDXStatus(rawValue: 0x8000_0003_0000_0000)
    package static let operandInvalid = TDXStatus(rawValue: 0xC000_0100_0000_0000)
    package static let operandBusy = TDXStatus(rawValue: 0x8000_0200_0000_0000)
    package static let rndNoEntropy = TDXStatus(rawValue: 0x8000_0203_0000_0000)
    package static let pageMetadataIncorrect = TDXStatus(rawValue: 0xC000_0300_0000_0000)
    package static let keyStateIncorrect = TDXStatus(rawValue: 0xC000_0811_0000_0000)
    package static let keyConfigured = TDXStatus(rawValue: 0x0000_0815_0000_0000)
    package static let noHKIDReadyToWBCache = TDXStatus(rawValue: 0x0000_0821_0000_0000)
    package static let eptWalkFailed = TDXStatus(rawValue: 0xC000_0B00_0000_0000)
    package static let eptEntryStateIncorrect = TDXStatus(rawValue: 0xC000_0B0D_0000_0000)
    package static let tlbTrackingNotDone = TDXStatus(rawValue: 0xC000_0B08_0000_0000)
    package static let wbcacheNotComplete = TDXStatus(rawValue: 0x8000_0823_0000_0000)
    package static let lifecycleStateIncorrect = TDXStatus(rawValue: 0xC000_0604_0000_0000)

    package var isSuccess: Bool { rawValue == 0 }
    package var description: String {
        switch self {
        case .success: "TDX_SUCCESS"
        case .interruptedResumable: "TDX_INTERRUPTED_RESUMABLE"
        case .operandInvalid: "TDX_OPERAND_INVALID"
        case .operandBusy: "TDX_OPERAND_BUSY"
        case .rndNoEntropy: "TDX_RND_NO_ENTROPY"
        case .pageMetadataIncorrect: "TDX_PAGE_METADATA_INCORRECT"
        case .keyStateIncorrect: "TDX_KEY_STATE_INCORRECT"
        case .keyConfigured: "TDX_KEY_CONFIGURED"
        case .noHKIDReadyToWBCache: "TDX_NO_HKID_READY_TO_WBCACHE"
        case .eptWalkFailed: "TDX_EPT_WALK_FAILED"
        case .eptEntryStateIncorrect: "TDX_EPT_ENTRY_STATE_INCORRECT"
        case .tlbTrackingNotDone: "TDX_TLB_TRACKING_NOT_DONE"
        case .wbcacheNotComplete: "TDX_WBCACHE_NOT_COMPLETE"
        case .lifecycleStateIncorrect: "TDX_LIFECYCLE_STATE_INCORRECT"
        default: "0x" + String(rawValue, radix: 16)
        }
    }
    /// Looks a status up by its name (TDX_OPERAND_BUSY ...).
    package init?(name: String) {
        let all: [TDXStatus] = [.interruptedResumable, .operandInvalid, .operandBusy, .rndNoEntropy, .pageMetadataIncorrect,
                                .keyStateIncorrect, .keyConfigured, .noHKIDReadyToWBCache, .eptWalkFailed,
                                .eptEntryStateIncorrect, .tlbTrackingNotDone, .wbcacheNotComplete, .lifecycleStateIncorrect]
        guard let s = all.first(where: { $0.description == name }) else { return nil }
        self = s
    }
}

/// TDX page types as TDH.PHYMEM.PAGE.RDMD reports them.
package enum TDXPageType: UInt8, Sendable, CustomStringConvertible {
    case nda = 0, rsvd = 1, reg = 3, tdr = 4, tdcs = 5
    package var description: String {
        switch self {
        case .nda: "PT_NDA"
        case .rsvd: "PT_RSVD"
        case .reg: "PT_REG"
        case .tdr: "PT_TDR"
        case .tdcs: "PT_TDCS"
        }
    }
}

/// A TD memory region: 1 GiB aligned, with its PAMT (one contiguous area in Linux).
package struct TDMR: Sendable, Hashable {
    package var base: UInt64
    package var size: UInt64
    /// The PAMT's frames (4K, 2M and 1G entries), in allocation order.
    package var pamt: [PFN]
    package init(base: UInt64, size: UInt64, pamt: [PFN]) { self.base = base; self.size = size; self.pamt = pamt }
}

/// What the module did, for observers (the invariant checker).
package enum TDXEvent: Sendable, Hashable {
    /// A key was configured for `keyid` on `package` (the global KeyID or a TD's).
    case keyConfigured(KeyID, package: Int)
    /// TDH.MNG.KEY.FREEID: the TD's KeyID is free in the KOT.
    case keyFreed(KeyID)
}

/// The TDX module.
package final class TDXModule {
    unowned let machine: Machine
    /// Packages (each has its own key table and caches to write back).
    package let packages: Int

    // Global state.
    package private(set) var sysConfigured = false
    package private(set) var globalKeyID: KeyID?
    package private(set) var globalKeyConfigured: [Bool]
    package private(set) var tdmrsInitialized = false
    /// TDH.SYS.TDMR.INIT has started writing the PAMTs through the global KeyID (from then on a
    /// PAMT page holds the module's data).
    package private(set) var tdmrInitStarted = false
    package private(set) var tdmrs: [TDMR] = []

    /// PAMT entry of an owned page.
    struct PageEntry {
        var type: TDXPageType
        /// The TDR frame of the owning TD (0 for PT_RSVD).
        var owner: UInt64
        var gpa: UInt64 = 0
        /// The TD epoch at TDH.MEM.RANGE.BLOCK (nil: mapped, not blocked).
        var blockedAt: UInt64?
    }
    var pamt: [UInt64: PageEntry] = [:]

    /// One TD's control state (keyed by its TDR frame).
    struct TD {
        var hkid: KeyID
        var keyConfigured: [Bool]
        var initialized = false
        var finalized = false
        var epoch: UInt64 = 0
        /// TDH.MNG.VPFLUSHDONE done: the TD is torn down, its KeyID waits for CACHE.WB.
        var flushed = false
        var wbDone: [Bool]
        var keyFreed = false
        var privatePages: [UInt64: UInt64] = [:]   // GPA -> PFN
        var tdcs: Set<UInt64> = []
    }
    var tds: [UInt64: TD] = [:]
    /// KeyID ownership table: guest KeyID -> TDR frame, from TDH.MNG.CREATE until FREEID.
    var kot: [UInt16: UInt64] = [:]
    var injected: [TDXLeaf: [TDXStatus]] = [:]
    /// Called on key configuration and release (nil: none).
    package var observer: ((TDXEvent) -> Void)?

    init(machine: Machine) {
        self.machine = machine
        self.packages = max(machine.config.packages, 1)
        globalKeyConfigured = Array(repeating: false, count: max(machine.config.packages, 1))
    }

    /// Makes the next SEAMCALL of `leaf` fail with `status` (queued; one per call).
    package func inject(_ leaf: TDXLeaf, _ status: TDXStatus) { injected[leaf, default: []].append(status) }

    /// Charges one SEAMCALL and consumes an injected failure of `leaf`, if any.
    func enter(_ leaf: TDXLeaf) -> TDXStatus? {
        machine.clock.charge(.seamcall)
        guard var q = injected[leaf], !q.isEmpty else { return nil }
        let s = q.removeFirst()
        injected[leaf] = q.isEmpty ? nil : q
        return s
    }

    // MARK: queries

    /// TDH.PHYMEM.PAGE.RDMD: the page type of a frame (PT_NDA when the module does not own it).
    package func pageType(_ pfn: PFN) -> TDXPageType { pamt[pfn.rawValue]?.type ?? .nda }
    /// The KeyID of the TD owning a frame (the global KeyID for PAMT and TDR pages), nil for PT_NDA.
    package func ownerKeyID(_ pfn: PFN) -> KeyID? {
        guard let e = pamt[pfn.rawValue] else { return nil }
        switch e.type {
        case .rsvd, .tdr: return globalKeyID
        case .reg, .tdcs: return tds[e.owner]?.hkid
        case .nda: return nil
        }
    }
    /// Frames the module owns (PAMT, TDRs, TDCS, private pages), ascending.
    package var ownedFrames: [PFN] { pamt.keys.sorted().map { PFN($0) } }
    /// Number of frames the module owns.
    package var ownedFrameCount: Int { pamt.count }
    /// Whether a guest KeyID is assigned to a TD in the KOT.
    package func isAssigned(_ keyid: KeyID) -> Bool { kot[keyid.rawValue] != nil }
    /// The TDR frame holding `keyid` in the KOT.
    package func tdr(holding keyid: KeyID) -> PFN? { kot[keyid.rawValue].map { PFN($0) } }
    /// Private pages (PT_REG) of TDs whose KeyID is `keyid`.
    package func privatePages(of keyid: KeyID) -> [PFN] {
        var out: [PFN] = []
        for (_, td) in tds where td.hkid == keyid { out += td.privatePages.values.map { PFN($0) } }
        return out.sorted()
    }
    /// Frames of all PAMTs.
    package var pamtFrames: [PFN] { tdmrs.flatMap(\.pamt) }

    // MARK: module configuration (tdx_enable)

    /// TDH.SYS.CONFIG: the TDMRs (with their PAMTs, which become PT_RSVD) and the global KeyID.
    package func sysConfig(tdmrs list: [TDMR], globalKeyID k: KeyID) -> TDXStatus {
        if let s = enter(.sysConfig) { return s }
        guard !sysConfigured, machine.keyTable.tdxGlobalKeyID == k else { return .operandInvalid }
        for t in list { for f in t.pamt where pamt[f.rawValue] != nil { return .pageMetadataIncorrect } }
        sysConfigured = true
        globalKeyID = k
        tdmrs = list
        for t in list { for f in t.pamt { pamt[f.rawValue] = PageEntry(type: .rsvd, owner: 0) } }
        return .success
    }

    /// TDH.SYS.KEY.CONFIG on one package: programs the global KeyID's key there.
    package func sysKeyConfig(package p: Int) -> TDXStatus {
        if let s = enter(.sysKeyConfig) { return s }
        guard sysConfigured, let k = globalKeyID, p >= 0, p < packages else { return .operandInvalid }
        guard !globalKeyConfigured[p] else { return .keyConfigured }
        program(k, first: !globalKeyConfigured.contains(true))
        globalKeyConfigured[p] = true
        observer?(.keyConfigured(k, package: p))
        return .success
    }

    /// TDH.SYS.TDMR.INIT of every TDMR: the module initializes the PAMTs through the global KeyID.
    package func sysTdmrInit() -> TDXStatus {
        if let s = enter(.sysTdmrInit) { return s }
        guard sysConfigured, let k = globalKeyID else { return .operandInvalid }
        guard globalKeyConfigured.allSatisfy({ $0 }) else { return .keyStateIncorrect }
        guard !tdmrsInitialized else { return .success }
        tdmrInitStarted = true
        for f in pamtFrames { machine.clearPage(f, keyid: k) }
        tdmrsInitialized = true
        return .success
    }

    /// One key program of `keyid` on a package: the first package's generates the key and
    /// installs it in the engine (key tables are identical on every package); the others only
    /// cost their PCONFIG.
    private func program(_ keyid: KeyID, first: Bool) {
        if first {
            _ = machine.keyTable.programTDX(keyid, packagesCharged: 1)
        } else {
            machine.clock.charge(.pconfig)
        }
    }

    var ready: Bool { tdmrsInitialized }

    // MARK: TD creation

    /// TDH.MNG.CREATE: `tdr` becomes the TD's root page (written through the global KeyID) and
    /// `hkid` is assigned to it in the KOT.
    package func mngCreate(tdr: PFN, hkid: KeyID) -> TDXStatus {
        if let s = enter(.mngCreate) { return s }
        guard ready, let g = globalKeyID, machine.keyTable.isTDXPrivate(hkid), hkid != g else { return .operandInvalid }
        guard kot[hkid.rawValue] == nil else { return .operandBusy }
        guard pamt[tdr.rawValue] == nil else { return .pageMetadataIncorrect }
        machine.clearPage(tdr, keyid: g)
        pamt[tdr.rawValue] = PageEntry(type: .tdr, owner: tdr.rawValue)
        kot[hkid.rawValue] = tdr.rawValue
        tds[tdr.rawValue] = TD(hkid: hkid, keyConfigured: Array(repeating: false, count: packages),
                               wbDone: Array(repeating: false, count: packages))
        return .success
    }

    /// TDH.MNG.KEY.CONFIG on one package: programs the TD's KeyID with a CPU-generated key.
    package func mngKeyConfig(tdr: PFN, package p: Int) -> TDXStatus {
        if let s = enter(.mngKeyConfig) { return s }
        guard var td = tds[tdr.rawValue], !td.flushed, p >= 0, p < packages else { return .operandInvalid }
        guard !td.keyConfigured[p] else { return .keyConfigured }
        program(td.hkid, first: !td.keyConfigured.contains(true))
        td.keyConfigured[p] = true
        tds[tdr.rawValue] = td
        observer?(.keyConfigured(td.hkid, package: p))
        return .success
    }

    /// TDH.MNG.ADDCX: a TDCS page, initialized through the TD's KeyID.
    package func mngAddcx(tdr: PFN, page: PFN) -> TDXStatus {
        if let s = enter(.mngAddcx) { return s }
        guard var td = tds[tdr.rawValue], !td.flushed, !td.initialized else { return .operandInvalid }
        guard td.keyConfigured.allSatisfy({ $0 }) else { return .keyStateIncorrect }
        guard pamt[page.rawValue] == nil else { return .pageMetadataIncorrect }
        machine.clearPage(page, keyid: td.hkid)
        pamt[page.rawValue] = PageEntry(type: .tdcs, owner: tdr.rawValue)
        td.tdcs.insert(page.rawValue)
        tds[tdr.rawValue] = td
        return .success
    }

    /// TDH.MNG.INIT.
    package func mngInit(tdr: PFN) -> TDXStatus {
        if let s = enter(.mngInit) { return s }
        guard var td = tds[tdr.rawValue], !td.flushed, !td.initialized, !td.tdcs.isEmpty else { return .operandInvalid }
        guard td.keyConfigured.allSatisfy({ $0 }) else { return .keyStateIncorrect }
        td.initialized = true
        tds[tdr.rawValue] = td
        return .success
    }

    /// TDH.MR.FINALIZE: the TD's initial memory is measured; PAGE.AUG from now on.
    package func mrFinalize(tdr: PFN) -> TDXStatus {
        if let s = enter(.mrFinalize) { return s }
        guard var td = tds[tdr.rawValue], td.initialized, !td.finalized, !td.flushed else { return .operandInvalid }
        td.finalized = true
        tds[tdr.rawValue] = td
        return .success
    }

    // MARK: private pages

    /// TDH.MEM.PAGE.ADD (before finalize): `page` becomes private at `gpa`, its contents copied from
    /// `source` (read through KeyID 0) and written through the TD's KeyID.
    package func memPageAdd(tdr: PFN, gpa: UInt64, page: PFN, source: PFN) -> TDXStatus {
        if let s = enter(.memPageAdd) { return s }
        guard var td = tds[tdr.rawValue], td.initialized, !td.finalized, !td.flushed else { return .operandInvalid }
        guard pamt[page.rawValue] == nil else { return .pageMetadataIncorrect }
        guard td.privatePages[gpa] == nil else { return .eptEntryStateIncorrect }
        machine.copyPage(from: source, srcKeyID: .tme, to: page, dstKeyID: td.hkid)
        pamt[page.rawValue] = PageEntry(type: .reg, owner: tdr.rawValue, gpa: gpa)
        td.privatePages[gpa] = page.rawValue
        tds[tdr.rawValue] = td
        return .success
    }

    /// TDH.MEM.PAGE.AUG (after finalize): `page` becomes private at `gpa`; the module clears it
    /// through the TD's KeyID (the guest's TDG.MEM.PAGE.ACCEPT, folded in).
    package func memPageAug(tdr: PFN, gpa: UInt64, page: PFN) -> TDXStatus {
        if let s = enter(.memPageAug) { return s }
        guard var td = tds[tdr.rawValue], td.finalized, !td.flushed else { return .operandInvalid }
        guard pamt[page.rawValue] == nil else { return .pageMetadataIncorrect }
        guard td.privatePages[gpa] == nil else { return .eptEntryStateIncorrect }
        machine.clearPage(page, keyid: td.hkid)
        pamt[page.rawValue] = PageEntry(type: .reg, owner: tdr.rawValue, gpa: gpa)
        td.privatePages[gpa] = page.rawValue
        tds[tdr.rawValue] = td
        return .success
    }

    /// The private page at `gpa`, if mapped.
    package func privatePage(tdr: PFN, gpa: UInt64) -> PFN? { tds[tdr.rawValue]?.privatePages[gpa].map { PFN($0) } }
    /// The TD's KeyID.
    package func keyID(tdr: PFN) -> KeyID? { tds[tdr.rawValue]?.hkid }
    /// GPAs of the TD's private pages, ascending.
    package func privateGPAs(tdr: PFN) -> [UInt64] { tds[tdr.rawValue]?.privatePages.keys.sorted() ?? [] }
    /// Whether a mapped private page is blocked.
    package func isBlocked(tdr: PFN, gpa: UInt64) -> Bool {
        guard let f = tds[tdr.rawValue]?.privatePages[gpa] else { return false }
        return pamt[f]?.blockedAt != nil
    }

    /// TDH.MEM.RANGE.BLOCK of the page at `gpa`.
    package func memRangeBlock(tdr: PFN, gpa: UInt64) -> TDXStatus {
        if let s = enter(.memRangeBlock) { return s }
        guard let td = tds[tdr.rawValue] else { return .operandInvalid }
        guard let f = td.privatePages[gpa] else { return .eptWalkFailed }
        guard pamt[f]?.blockedAt == nil else { return .eptEntryStateIncorrect }
        pamt[f]?.blockedAt = td.epoch
        return .success
    }

    /// TDH.MEM.TRACK: the TD's TLB epoch moves on (KVM then kicks every vCPU out of the guest).
    package func memTrack(tdr: PFN) -> TDXStatus {
        if let s = enter(.memTrack) { return s }
        guard tds[tdr.rawValue] != nil else { return .operandInvalid }
        tds[tdr.rawValue]?.epoch += 1
        return .success
    }

    /// TDH.MEM.PAGE.REMOVE of a blocked page whose block the epoch has passed: the page leaves
    /// the TD (PT_NDA); its lines under the TD's KeyID stay in the cache.
    package func memPageRemove(tdr: PFN, gpa: UInt64) -> TDXStatus {
        if let s = enter(.memPageRemove) { return s }
        guard var td = tds[tdr.rawValue] else { return .operandInvalid }
        guard let f = td.privatePages[gpa], let e = pamt[f] else { return .eptWalkFailed }
        guard let b = e.blockedAt else { return .eptEntryStateIncorrect }
        guard td.epoch > b else { return .tlbTrackingNotDone }
        pamt[f] = nil
        td.privatePages[gpa] = nil
        tds[tdr.rawValue] = td
        return .success
    }

    /// TDH.PHYMEM.PAGE.WBINVD: writes back and invalidates a page's lines under a TDX private
    /// KeyID (software cannot: it has no mapping with that KeyID). Refused on a page the module owns
    /// under another KeyID.
    package func phymemPageWbinvd(_ pfn: PFN, keyid: KeyID) -> TDXStatus {
        if let s = enter(.phymemPageWbinvd) { return s }
        guard machine.keyTable.isTDXPrivate(keyid) else { return .operandInvalid }
        if let e = pamt[pfn.rawValue], e.type != .tdr || keyid != globalKeyID { return .pageMetadataIncorrect }
        machine.flushPage(pfn, keyid: keyid)
        return .success
    }

    // MARK: teardown

    /// TDH.MNG.VPFLUSHDONE: the TD's vCPUs are flushed; its KeyID now waits for TDH.PHYMEM.CACHE.WB
    /// on every package.
    package func mngVpflushdone(tdr: PFN) -> TDXStatus {
        if let s = enter(.mngVpflushdone) { return s }
        guard var td = tds[tdr.rawValue], !td.keyFreed else { return .operandInvalid }
        td.flushed = true
        tds[tdr.rawValue] = td
        return .success
    }

    /// TDH.PHYMEM.CACHE.WB on one package: writes back and invalidates that package's caches
    /// (the model has one cache: the first package's call does the work, each is priced as a
    /// WBINVD) and marks every torn-down TD's KeyID as written back there.
    /// TDX_NO_HKID_READY_TO_WBCACHE when no KeyID waits on that package.
    package func phymemCacheWb(package p: Int) -> TDXStatus {
        if let s = enter(.phymemCacheWb) { return s }
        guard p >= 0, p < packages else { return .operandInvalid }
        let waiting = tds.keys.sorted().filter { tds[$0]!.flushed && !tds[$0]!.keyFreed && !tds[$0]!.wbDone[p] }
        guard !waiting.isEmpty else { return .noHKIDReadyToWBCache }
        machine.wbinvd()
        for t in waiting { tds[t]?.wbDone[p] = true }
        return .success
    }

    /// TDH.MNG.KEY.FREEID: the TD's KeyID is released in the KOT (its engine slot cleared); needs
    /// VPFLUSHDONE and TDH.PHYMEM.CACHE.WB on every package since.
    package func mngKeyFreeid(tdr: PFN) -> TDXStatus {
        if let s = enter(.mngKeyFreeid) { return s }
        guard var td = tds[tdr.rawValue], !td.keyFreed else { return .operandInvalid }
        guard td.flushed else { return .lifecycleStateIncorrect }
        guard td.wbDone.allSatisfy({ $0 }) else { return .wbcacheNotComplete }
        td.keyFreed = true
        tds[tdr.rawValue] = td
        kot[td.hkid.rawValue] = nil
        if td.keyConfigured.contains(true) { _ = machine.keyTable.programTDX(td.hkid, clear: true, packagesCharged: 0) }
        observer?(.keyFreed(td.hkid))
        return .success
    }

    /// TDH.PHYMEM.PAGE.RECLAIM: a page of a TD whose KeyID is freed goes back to PT_NDA (the TDR
    /// only when it is the TD's last page; then the TD is gone).
    package func phymemPageReclaim(_ pfn: PFN) -> TDXStatus {
        if let s = enter(.phymemPageReclaim) { return s }
        guard let e = pamt[pfn.rawValue], e.type != .rsvd, let td = tds[e.owner] else { return .pageMetadataIncorrect }
        guard td.keyFreed else { return .lifecycleStateIncorrect }
        if e.type == .tdr {
            let children = pamt.values.contains { $0.owner == e.owner && $0.type != .tdr }
            guard !children else { return .operandBusy }
            tds[e.owner] = nil
        } else if e.type == .tdcs {
            tds[e.owner]?.tdcs.remove(pfn.rawValue)
        } else if e.type == .reg {
            tds[e.owner]?.privatePages[e.gpa] = nil
        }
        pamt[pfn.rawValue] = nil
        return .success
    }
}
