// SEVFirmware: the AMD secure processor's SEV firmware (reached through the PSP mailbox) and the
// RMP, the reverse-map table SEV-SNP checks on every host access. docs/sources.md, "SEV /
// SEV-SNP host (arch/x86/kvm/svm, arch/x86/virt/svm)"; docs/tdx-sev.md lists what is enforced.
//
// ASIDs are the key index: ACTIVATE loads a fresh guest key (VEK) into the ASID's engine slot
// (`MachineConfig.asidTag`), so guest accesses are cached under their own tag and encrypted with
// that key. Firmware rules enforced:
// * ACTIVATE needs the ASID free: ASID_OWNED while active, DFFLUSH_REQUIRED after a DEACTIVATE
//   (or SNP DECOMMISSION) until a DF_FLUSH.
// * DF_FLUSH (SNP_DF_FLUSH) needs a WBINVD since the last DEACTIVATE (WBINVD_REQUIRED otherwise:
//   "DEACTIVATE clears the WBINVD indicator"); it makes every deactivated ASID free again.
// * RMP: RMPUPDATE assigns a page (ASID, GPA, 4K or 2M level, immutable for firmware pages) or
//   makes it shared; a 2M update needs a 2M-aligned frame and no 4K entry of the range assigned
//   to someone else (FAIL_OVERLAP otherwise; the kernel retries, the model reports it); PSMASH
//   splits a 2M entry into 512 4K entries; an immutable page is made shared only through
//   SNP_PAGE_RECLAIM.
// * With COHERENCY_SFW_NO the hardware keeps a page coherent when it becomes private: the
//   RMPUPDATE that assigns it writes back and drops the page's lines under the host's tags.
//
// Injected failures (`inject`) let scenarios take the kernel's failure paths (a failed reclaim
// leaks the page for good).
//
// Invariants: an RMP entry exists only for assigned pages (absent = shared/hypervisor); a 2M
// entry sits at its aligned frame and covers 512 frames with no 4K entry inside; an ASID is in
// exactly one firmware state; key bytes never leave the engine (generated here, cleansed).
import CLibCrypto
import KeyMMBase

/// SEV firmware status codes (include/uapi/linux/psp-sev.h), plus the RMP instructions' failures.
package enum SEVStatus: Int, Sendable, CustomStringConvertible {
    case success = 0, invalidPlatformState = 0x1, invalidGuestState = 0x2, invalidAddress = 0x9, asidOwned = 0xC
    case invalidASID = 0xD, wbinvdRequired = 0xE, dfflushRequired = 0xF, invalidPageState = 0x1A
    /// RMPUPDATE_FAIL_OVERLAP / PSMASH failure (instruction return codes, not firmware ones).
    case rmpOverlap = 0x100, rmpInput = 0x101
    package var description: String {
        switch self {
        case .success: "SEV_RET_SUCCESS"
        case .invalidPlatformState: "SEV_RET_INVALID_PLATFORM_STATE"
        case .invalidGuestState: "SEV_RET_INVALID_GUEST_STATE"
        case .invalidAddress: "SEV_RET_INVALID_ADDRESS"
        case .asidOwned: "SEV_RET_ASID_OWNED"
        case .invalidASID: "SEV_RET_INVALID_ASID"
        case .wbinvdRequired: "SEV_RET_WBINVD_REQUIRED"
        case .dfflushRequired: "SEV_RET_DFFLUSH_REQUIRED"
        case .invalidPageState: "SEV_RET_INVALID_PAGE_STATE"
        case .rmpOverlap: "RMPUPDATE_FAIL_OVERLAP"
        case .rmpInput: "FAIL_INPUT"
        }
    }
}

/// The firmware commands and instructions failures can be injected into.
package enum SEVOperation: String, CaseIterable, Sendable {
    case activate = "SEV_CMD_ACTIVATE", deactivate = "SEV_CMD_DEACTIVATE", dfFlush = "SEV_CMD_DF_FLUSH"
    case decommission = "SEV_CMD_DECOMMISSION", launchUpdate = "SEV_CMD_LAUNCH_UPDATE_DATA"
    case pageReclaim = "SEV_CMD_SNP_PAGE_RECLAIM", rmpupdate = "RMPUPDATE", psmash = "PSMASH"
}

/// RMP page size.
package enum RMPLevel: Int, Sendable, CustomStringConvertible {
    case k4 = 1, m2 = 2
    package var pages: Int { self == .k4 ? 1 : 512 }
    package var description: String { self == .k4 ? "4K" : "2M" }
}

/// One RMP entry of an assigned page.
package struct RMPEntry: Sendable, Hashable {
    /// The owning guest's ASID (0: firmware-owned).
    package var asid: Int
    /// The guest physical address of the entry's first page.
    package var gpa: UInt64
    package var level: RMPLevel
    /// Firmware pages (guest context, VMSA) cannot be made shared without SNP_PAGE_RECLAIM.
    package var immutable: Bool
}

/// What the firmware did, for observers (the invariant checker).
package enum SEVEvent: Sendable, Hashable {
    /// ACTIVATE loaded a new key for `asid`.
    case activated(asid: Int)
    /// DF_FLUSH: these ASIDs (deactivated before) are free again.
    case flushed(asids: [Int])
}

/// The SEV firmware and the RMP.
package final class SEVFirmware {
    unowned let machine: Machine

    /// Firmware state of an ASID.
    package enum ASIDState: String, Sendable {
        case free, active, needsFlush = "needs-flush"
    }
    var asids: [ASIDState]
    /// `machine.wbinvdGeneration` at the last DEACTIVATE (DF_FLUSH needs a WBINVD after it).
    var wbinvdAtDeactivate: UInt64 = 0
    var deactivatedSinceFlush = false
    /// RMP entries of assigned pages, by frame (2M entries at their aligned frame).
    var rmp: [UInt64: RMPEntry] = [:]
    /// Aligned frames of 2M entries (so lookups of the 511 other frames find them).
    var large: Set<UInt64> = []
    var injected: [SEVOperation: [SEVStatus]] = [:]
    var rng: SeededGenerator
    /// Called on activation and flush (nil: none).
    package var observer: ((SEVEvent) -> Void)?

    init(machine: Machine) {
        self.machine = machine
        asids = Array(repeating: .free, count: machine.config.sevASIDs + 1)
        rng = SeededGenerator.derived(seed: machine.config.seed, purpose: 0x5345_5646)   // "SEVF"
    }

    /// Makes the next `op` fail with `status` (queued; one per call).
    package func inject(_ op: SEVOperation, _ status: SEVStatus) { injected[op, default: []].append(status) }

    func injectedFailure(_ op: SEVOperation) -> SEVStatus? {
        guard var q = injected[op], !q.isEmpty else { return nil }
        let s = q.removeFirst()
        injected[op] = q.isEmpty ? nil : q
        return s
    }

    /// A PSP command: charges it and consumes an injected failure.
    func command(_ op: SEVOperation) -> SEVStatus? {
        machine.clock.charge(.pspCommand)
        return injectedFailure(op)
    }

    // MARK: ASIDs

    /// The firmware state of an ASID.
    package func state(ofASID asid: Int) -> ASIDState { asid >= 1 && asid < asids.count ? asids[asid] : .free }
    /// The cache tag of an ASID.
    package func tag(_ asid: Int) -> KeyID { machine.config.asidTag(asid) }

    /// ACTIVATE (SNP_ACTIVATE): binds `asid` to a new guest context with a fresh key.
    package func activate(asid: Int) -> SEVStatus {
        if let s = command(.activate) { return s }
        guard asid >= 1, asid < asids.count else { return .invalidASID }
        switch asids[asid] {
        case .active: return .asidOwned
        case .needsFlush: return .dfflushRequired
        case .free: break
        }
        installKey(tag(asid))
        asids[asid] = .active
        observer?(.activated(asid: asid))
        return .success
    }

    /// DEACTIVATE + DECOMMISSION (SNP: DECOMMISSION alone): the guest context is gone; the ASID
    /// needs a DF_FLUSH before it can be activated again. The key stays in the slot until then.
    package func deactivate(asid: Int) -> SEVStatus {
        if let s = command(.deactivate) { return s }
        guard asid >= 1, asid < asids.count, asids[asid] == .active else { return .invalidGuestState }
        asids[asid] = .needsFlush
        wbinvdAtDeactivate = machine.wbinvdGeneration
        deactivatedSinceFlush = true
        return .success
    }

    /// DF_FLUSH / SNP_DF_FLUSH: needs a WBINVD since the last DEACTIVATE; frees every deactivated
    /// ASID and destroys their keys.
    package func dfFlush() -> SEVStatus {
        if let s = command(.dfFlush) { return s }
        if deactivatedSinceFlush && machine.wbinvdGeneration == wbinvdAtDeactivate { return .wbinvdRequired }
        var freed: [Int] = []
        for a in 1..<asids.count where asids[a] == .needsFlush {
            asids[a] = .free
            machine.engine.setTME(tag(a))
            freed.append(a)
        }
        deactivatedSinceFlush = false
        observer?(.flushed(asids: freed))
        return .success
    }

    /// LAUNCH_UPDATE_DATA / SNP_LAUNCH_UPDATE of one page: the firmware encrypts the page in place
    /// with the guest's key, reading DRAM as the host left it (through `hostTag`) and writing DRAM
    /// directly (the PSP does not go through the CPU caches). `rmp`: an SNP guest's page, which
    /// must be assigned to `asid` in the RMP.
    package func launchUpdate(_ pfn: PFN, asid: Int, hostTag: KeyID, rmp: Bool) -> SEVStatus {
        if let s = command(.launchUpdate) { return s }
        guard asid >= 1, asid < asids.count, asids[asid] == .active else { return .invalidGuestState }
        if rmp {
            guard let e = entry(pfn), e.asid == asid else { return .invalidPageState }
        }
        let m = machine
        let pa = pfn.physAddr
        var buf = m.dram.read(pa, count: pageSize)
        unsafe buf.withUnsafeMutableBytes { b in
            _ = unsafe m.engine.decrypt(hostTag, at: pa, lines: linesPerPage, from: b.baseAddress!, to: b.baseAddress!)
            _ = unsafe m.engine.encrypt(tag(asid), at: pa, lines: linesPerPage, from: b.baseAddress!, to: b.baseAddress!)
            unsafe m.dram.write(pa, from: UnsafeRawBufferPointer(b))
            unsafe OPENSSL_cleanse(b.baseAddress, b.count)
        }
        m.clock.charge(.decryptLine, linesPerPage)
        m.clock.charge(.encryptLine, linesPerPage)
        return .success
    }

    private func installKey(_ slot: KeyID) {
        // The key lives only in the engine's slot: generated in HardwareSecret's room, installed,
        // and zeroized as the temporary dies.
        HardwareSecret(count: 2 * (machine.config.xtsKeyBits / 8), from: &rng).installXTSKey(in: machine.engine, slot: slot)
    }

    // MARK: RMP

    /// The authoritative RMP entry of a frame (its own 4K entry or the 2M entry covering it).
    package func entry(_ pfn: PFN) -> RMPEntry? {
        if let e = rmp[pfn.rawValue] { return e }
        let aligned = pfn.rawValue & ~511
        if large.contains(aligned), var e = rmp[aligned] {
            e.gpa += (pfn.rawValue - aligned) << pageShift
            return e
        }
        return nil
    }
    /// Whether a frame is assigned (guest- or firmware-owned).
    package func isAssigned(_ pfn: PFN) -> Bool { entry(pfn) != nil }
    /// Assigned frames, ascending (2M entries expanded).
    package var assignedFrames: [PFN] {
        var out: [UInt64] = []
        for (f, e) in rmp {
            if e.level == .m2 { out += (0..<UInt64(512)).map { f + $0 } } else { out.append(f) }
        }
        return out.sorted().map { PFN($0) }
    }
    /// Frames assigned to `asid`.
    package func frames(assignedTo asid: Int) -> [PFN] { assignedFrames.filter { entry($0)?.asid == asid } }

    /// RMPUPDATE to assigned: `pfn` (2M-aligned for `.m2`) becomes private to `asid` at `gpa`.
    /// With COHERENCY_SFW_NO the hardware then drops the pages' lines under the host's tags.
    package func makePrivate(_ pfn: PFN, gpa: UInt64, level: RMPLevel, asid: Int, immutable: Bool) -> SEVStatus {
        machine.clock.charge(.rmpUpdate)
        if let s = injectedFailure(.rmpupdate) { return s }
        let f = pfn.rawValue
        guard f + UInt64(level.pages) <= UInt64(machine.config.frameCount) else { return .rmpInput }
        if level == .m2 {
            guard f & 511 == 0 else { return .rmpInput }
            for i in 0..<UInt64(512) where entry(PFN(f + i)) != nil { return .rmpOverlap }
            large.insert(f)
        } else if entry(pfn) != nil {
            return .rmpOverlap
        }
        if machine.config.coherencySFWNo {
            // Hardware coherency: the host's lines leave with the conversion (no CLFLUSH priced).
            for i in 0..<level.pages {
                machine.cache.invalidateCoherently(PFN(f + UInt64(i)), keyid: .tme)
                machine.cache.invalidateCoherently(PFN(f + UInt64(i)), keyid: KeyID(1))
            }
        }
        rmp[f] = RMPEntry(asid: asid, gpa: gpa, level: level, immutable: immutable)
        return .success
    }

    /// RMPUPDATE to shared (hypervisor-owned) at `level`; refused for immutable pages.
    package func makeShared(_ pfn: PFN, level: RMPLevel) -> SEVStatus {
        machine.clock.charge(.rmpUpdate)
        if let s = injectedFailure(.rmpupdate) { return s }
        let f = pfn.rawValue
        if level == .m2 {
            guard f & 511 == 0, large.contains(f) else { return .rmpInput }
        } else if large.contains(f & ~511) {
            return .rmpInput   // a 4K update inside a 2M entry needs PSMASH first
        }
        guard let e = rmp[f] else { return .success }
        guard !e.immutable else { return .invalidPageState }
        rmp[f] = nil
        large.remove(f)
        return .success
    }

    /// PSMASH: splits the 2M entry covering `pfn` into 512 4K entries (validated state kept).
    package func psmash(_ pfn: PFN) -> SEVStatus {
        machine.clock.charge(.rmpUpdate)
        if let s = injectedFailure(.psmash) { return s }
        let aligned = pfn.rawValue & ~511
        guard large.contains(aligned), let e = rmp[aligned] else { return .rmpInput }
        large.remove(aligned)
        for i in 0..<UInt64(512) {
            rmp[aligned + i] = RMPEntry(asid: e.asid, gpa: e.gpa + (i << pageShift), level: .k4, immutable: e.immutable)
        }
        return .success
    }

    /// SNP_PAGE_RECLAIM: the firmware releases a firmware or guest page (immutable no more); the
    /// kernel makes it shared afterwards.
    package func pageReclaim(_ pfn: PFN) -> SEVStatus {
        if let s = command(.pageReclaim) { return s }
        guard entry(pfn) != nil else { return .invalidPageState }
        if var e = rmp[pfn.rawValue] {
            e.immutable = false
            rmp[pfn.rawValue] = e
        }
        return .success
    }
}
