// The SEV-SNP host core (arch/x86/virt/svm/sev.c) and KVM's guest_memfd hooks for SNP
// (arch/x86/kvm/svm/sev.c: sev_gmem_prepare, sev_gmem_invalidate): RMPUPDATE wrapped with the
// host direct map (an assigned page leaves the direct map, a shared one comes back), PSMASH, the
// leak of pages that can no longer be made shared, and the cache eviction a page needs when it
// becomes private on CPUs without COHERENCY_SFW_NO. docs/sources.md, "SEV / SEV-SNP host".
//
// Rules: rmp_make_private removes the page(s) from the direct map first (the SNP host series;
// the merged tree now only splits the direct map to 4 KiB — docs/tdx-sev.md); rmp_make_shared
// restores them after the RMPUPDATE; RMPUPDATE is retried while it overlaps (the model reports
// the overlap as a failure); a 4 KiB change inside a 2 MiB RMP entry PSMASHes it first; a page
// whose RMPUPDATE to shared fails is leaked for good (snp_leak_pages); CLFLUSH on SNP hardware
// (SME_COHERENT) writes back a page's lines in every encryption domain, which the model does by
// flushing the page under the host's tags and the guest's ASID tag.
//
// Invariant: a frame is out of the direct map exactly while the RMP assigns it (unless a failure
// leaked it).
import KeyMMBase
import KeyMMHardware

extension Kernel {
    /// The host's tags under SME: KeyID 0 (C-bit clear) and 1 (C-bit set).
    static let hostTags: [KeyID] = [KeyID(0), KeyID(1)]

    /// rmp_make_private(): out of the direct map, then RMPUPDATE to assigned; without
    /// COHERENCY_SFW_NO software then evicts the pages' host lines. EFAULT when the RMPUPDATE fails.
    func rmpMakePrivate(_ pfn: PFN, gpa: UInt64, level: RMPLevel, asid: Int, immutable: Bool) -> Result<Void, Errno> {
        guard let sev = machine.sev else { return .failure(.ENODEV) }
        // Seeded bug (KeyMMChecker/SeededBugs.swift): the direct map keeps the page.
        let unmap = !config.bugs.contains(.snpKeepDirectMap)
        if unmap { for i in 0..<level.pages { setDirectMapInvalid(pfn.advanced(by: i)) } }
        if !machine.config.coherencySFWNo && !config.bugs.contains(.snpSkipPrivateEviction) {
            // The cache-coherency mitigation: the host's lines of the page going private are
            // evicted as part of the conversion (before the RMPUPDATE, so none is written back
            // onto the assigned page); with COHERENCY_SFW_NO the hardware does it (SEVFirmware).
            for i in 0..<level.pages {
                for t in Kernel.hostTags { machine.flushPage(pfn.advanced(by: i), keyid: t) }
            }
        }
        let s = sev.makePrivate(pfn, gpa: gpa, level: level, asid: asid, immutable: immutable)
        guard s == .success else {
            if unmap { for i in 0..<level.pages { restoreDirectMap(pfn.advanced(by: i)) } }
            return .failure(.EFAULT)
        }
        return .success(())
    }

    /// rmp_make_shared(): RMPUPDATE to shared, then back into the direct map. A failure leaks the
    /// page(s) for good.
    func rmpMakeShared(_ pfn: PFN, level: RMPLevel) -> Result<Void, Errno> {
        guard let sev = machine.sev else { return .failure(.ENODEV) }
        guard sev.makeShared(pfn, level: level) == .success else {
            for i in 0..<level.pages { leakFrame(pfn.advanced(by: i)) }
            return .failure(.EIO)
        }
        for i in 0..<level.pages { restoreDirectMap(pfn.advanced(by: i)) }
        return .success(())
    }

    /// set_direct_map_invalid_noflush() for one frame.
    func setDirectMapInvalid(_ f: PFN) {
        if cvm.directMapHoles.insert(f.rawValue).inserted { machine.clock.charge(.pteUpdate) }
    }

    /// set_direct_map_default_noflush() for one frame.
    func restoreDirectMap(_ f: PFN) {
        if cvm.directMapHoles.remove(f.rawValue) != nil { machine.clock.charge(.pteUpdate) }
    }

    /// CLFLUSH of a page through the host's direct map on SME_COHERENT hardware: the page's lines
    /// in every encryption domain (host tags and the guest's ASID tag) are written back.
    func clflushCoherent(_ pfn: PFN, asid: Int?) {
        for t in Kernel.hostTags { machine.flushPage(pfn, keyid: t) }
        // An ASID tag lies above the host KeyIDs: straight to the cache (Machine.flushPage would
        // take it for a host KeyID and mask it).
        if let a = asid { machine.cache.flush(pfn.physAddr, keyid: machine.config.asidTag(a), length: pageSize) }
    }

    /// sev_gmem_invalidate() over the frames `[start, start + count)` of a guest with `asid`: for
    /// each assigned entry, a 2M entry covered entirely goes shared in one RMPUPDATE, one covered
    /// partly is PSMASHed first (a failure is reported and the 4K update tried anyway); each
    /// RMPUPDATE to shared puts the pages back in the direct map, then they are CLFLUSHed. A page
    /// whose update fails is leaked. Returns the frames leaked.
    func snpGmemInvalidate(_ start: PFN, count: Int, asid: Int) -> [PFN] {
        guard let sev = machine.sev else { return [] }
        var leaked: [PFN] = []
        var f = start.rawValue
        let end = start.rawValue + UInt64(count)
        while f < end {
            guard let e = sev.entry(PFN(f)) else { f += 1; continue }
            let use2M = f & 511 == 0 && end >= f + 512 && e.level == .m2
            if !use2M && e.level == .m2 { _ = sev.psmash(PFN(f)) }
            let level: RMPLevel = use2M ? .m2 : .k4
            if case .success = rmpMakeShared(PFN(f), level: level) {
                for i in 0..<level.pages { clflushCoherent(PFN(f + UInt64(i)), asid: asid) }
            } else {
                leaked += (0..<level.pages).map { PFN(f + UInt64($0)) }
            }
            f += UInt64(level.pages)
        }
        return leaked
    }

    /// snp_page_reclaim(): SNP_PAGE_RECLAIM then RMPUPDATE to shared; any failure leaks the page.
    func snpPageReclaim(_ pfn: PFN) -> Bool {
        guard let sev = machine.sev else { return false }
        guard sev.pageReclaim(pfn) == .success else { leakFrame(pfn); return false }
        guard case .success = rmpMakeShared(pfn, level: .k4) else { return false }
        return true
    }
}
