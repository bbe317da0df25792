// The TDX host core (arch/x86/virt/vmx/tdx/tdx.c): bringing the TDX module up (tdx_enable: TDMRs
// covering memory, PAMT allocated per TDMR from the page allocator, TDH.SYS.CONFIG, WBINVD then
// the global KeyID on every package, TDMR initialization), the guest-KeyID pool, and the reset of
// TDX memory with MOVDIR64B. docs/sources.md, "TDX host (arch/x86/virt/vmx/tdx)".
//
// Rules: TDX is usable only when IA32_MKTME_KEYID_PARTITIONING reports at least two TDX KeyIDs
// (the first is the global KeyID, the rest are guest KeyIDs); tdx_enable runs once (a failure
// leaves the module in the error state: -EINVAL afterwards); TDMRs are 1 GiB aligned and cover
// every memory region from 1 MiB up; each TDMR's PAMT is 16 bytes per 4K, 2M and 1G page of the
// TDMR (each rounded up to 4 KiB) taken from the page allocator on the TDMR's node; a failure
// after TDH.SYS.CONFIG writes the caches back, resets the PAMT (MOVDIR64B with the erratum) and
// frees it.
//
// Invariant: PAMT frames stay allocated (and out of every other use) while the module is up.
import KeyMMBase
import KeyMMHardware

extension Kernel {
    /// PAMT entry size of each page size (the module's TDX_PS_4K/2M/1G metadata; 16 bytes).
    static let pamtEntrySize: UInt64 = 16
    /// TDCS pages per TD (tdcs_base_size / PAGE_SIZE; the model's value).
    package static let tdcsPages = 4

    /// tdx_enable(): initialize the TDX module. 0, or ENODEV (no TDX / fewer than two TDX KeyIDs),
    /// EINVAL (an earlier attempt failed), ENOMEM (no memory for the PAMT), EIO (a SEAMCALL failed).
    package func tdxEnable() -> Result<Void, Errno> {
        guard let module = machine.tdx, cvm.tdxGuestKeyIDs != nil, let global = machine.keyTable.tdxGlobalKeyID else {
            return .failure(.ENODEV)
        }
        switch cvm.tdxStatus {
        case .initialized: return .success(())
        case .error: return .failure(.EINVAL)
        case .uninitialized: break
        }
        machine.clock.charge(.syscall)
        // build_tdx_memlist + fill_out_tdmrs: one TDMR per memory region, 1 GiB aligned.
        var tdmrs: [TDMR] = []
        let gib: UInt64 = 1 << 30
        for n in 0..<machine.config.nodes {
            let r = machine.config.frames(of: NodeID(UInt8(n)))
            let start = max(r.lowerBound.physAddr.rawValue, 1 << 20), end = r.upperBound.physAddr.rawValue
            guard start < end else { continue }
            var s = start & ~(gib - 1)
            let e = (end + gib - 1) & ~(gib - 1)
            if let last = tdmrs.last {
                if e <= last.base + last.size { continue }
                if s < last.base + last.size { s = last.base + last.size }
            }
            tdmrs.append(TDMR(base: s, size: e - s, pamt: []))
        }
        // tdmrs_set_up_pamt_all: one allocation per TDMR on its node.
        for i in tdmrs.indices {
            let size = tdmrs[i].size
            var bytes: UInt64 = 0
            for shift in [UInt64(pageShift), 21, 30] {
                bytes += ((size >> shift) * Kernel.pamtEntrySize + UInt64(pageSize) - 1) & ~UInt64(pageSize - 1)
            }
            let node = machine.config.node(of: PFN(tdmrs[i].base >> UInt64(pageShift)))
            guard let frames = allocPAMT(pages: Int(bytes >> UInt64(pageShift)), node: node) else {
                freePAMT()
                cvm.tdxStatus = .error
                return .failure(.ENOMEM)
            }
            tdmrs[i].pamt = frames
        }
        machine.clock.count(.pamtPages, cvm.pamtFrames.count)
        guard sc({ module.sysConfig(tdmrs: tdmrs, globalKeyID: global) }).isSuccess else {
            freePAMT()
            cvm.tdxStatus = .error
            return .failure(.EIO)
        }
        // config_global_keyid(): caches are not coherent across KeyIDs and the PAMT's dirty lines
        // are KeyID 0's: WBINVD on every CPU first, then TDH.SYS.KEY.CONFIG once per package.
        if !config.bugs.contains(.tdxGlobalKeyWithoutWBINVD) { wbinvdOnAllCPUs() }
        var ok = true
        for p in 0..<module.packages where !sc({ module.sysKeyConfig(package: p) }).isSuccess { ok = false; break }
        if ok { ok = sc({ module.sysTdmrInit() }).isSuccess }
        guard ok else {
            // err_reset_pamts: write back, reset (MOVDIR64B with the erratum), free.
            wbinvdOnAllCPUs()
            if machine.config.tdxPartialWriteErratum { for f in cvm.pamtFrames { machine.movdir64bZeroPage(f, keyid: .tme) } }
            freePAMT()
            cvm.tdxStatus = .error
            return .failure(.EIO)
        }
        cvm.tdxStatus = .initialized
        return .success(())
    }

    /// alloc_contig_pages(): `pages` frames on `node` (the model takes power-of-two blocks).
    private func allocPAMT(pages: Int, node: NodeID) -> [PFN]? {
        var left = pages
        var frames: [PFN] = []
        while left > 0 {
            var order = min(Int(maxPageOrder), Int.bitWidth - 1 - left.leadingZeroBitCount)
            var got: PFN?
            while got == nil && order >= 0 {
                got = allocator.allocPages(order: PageOrder(UInt8(order)), keyid: .tme, node: node, gfp: .kernel)
                if got == nil { order -= 1 }
            }
            guard let head = got else { return nil }
            cvm.pamtBlocks.append((head, PageOrder(UInt8(order))))
            frames += (0..<(1 << order)).map { head.advanced(by: $0) }
            left -= 1 << order
        }
        return frames
    }

    private func freePAMT() {
        for (head, order) in cvm.pamtBlocks { allocator.freePages(head, order: order) }
        cvm.pamtBlocks = []
    }

    /// wbinvd_on_all_cpus(): the model has one cache, written back once; each further package's
    /// WBINVD is priced.
    func wbinvdOnAllCPUs() {
        machine.wbinvd()
        if machine.config.packages > 1 { machine.clock.charge(.wbinvd, machine.config.packages - 1) }
    }

    /// sc_retry(): every SEAMCALL wrapper retries TDX_RND_NO_ENTROPY (the module's RDRAND ran
    /// dry) up to RDRAND_RETRY_LOOPS (10) times.
    func sc(_ call: () -> TDXStatus) -> TDXStatus {
        var s = call()
        var retries = 9
        while s == .rndNoEntropy && retries > 0 { s = call(); retries -= 1 }
        return s
    }

    /// tdx_guest_keyid_alloc(): the lowest free guest KeyID (ida_alloc_range), or ENOSPC.
    func tdxGuestKeyIDAlloc() -> Result<KeyID, Errno> {
        guard let range = cvm.tdxGuestKeyIDs else { return .failure(.ENODEV) }
        for k in range where !cvm.hkidInUse.contains(k) {
            cvm.hkidInUse.insert(k)
            return .success(KeyID(k))
        }
        return .failure(.ENOSPC)
    }

    /// tdx_guest_keyid_free(): the KeyID goes back to the pool.
    func tdxGuestKeyIDFree(_ k: KeyID) {
        cvm.hkidInUse.remove(k.rawValue)
        cvm.observer?(.keyIDReturned(k))
    }

    /// tdx_clear_page(): MOVDIR64B of zeros over the page through KeyID 0, then a fence; this also
    /// clears poison, so the kernel can use the page again.
    func tdxClearPage(_ pfn: PFN) {
        if config.bugs.contains(.tdxClearWithPartialWrites) {
            // Seeded bug: the page is reset with 8-byte non-temporal stores (MOVNTI).
            let zeros = [UInt8](repeating: 0, count: 8)
            for off in stride(from: 0, to: pageSize, by: 8) {
                machine.writeNonTemporal(pfn.physAddr.advanced(by: off), keyid: .tme, bytes: zeros, path: "tdx_clear_page (MOVNTI)")
            }
            return
        }
        machine.movdir64bZeroPage(pfn, keyid: .tme)
    }
}
