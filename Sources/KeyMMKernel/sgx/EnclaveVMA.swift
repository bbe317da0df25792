// An enclave's VMAs (arch/x86/kernel/cpu/sgx/encl.c): sgx_vm_ops (.fault, .mprotect, .open, and
// .close only in the vma-refcount design), sgx_encl_may_map (each page's SECINFO caps the mapping's
// rights: EACCES), the fault path that finds the page by its address and loads it back with ELDU
// (the SECS first) when it was written back, and the PTE helpers the reclaimer uses
// (test-and-clear-young, zap). docs/sources.md, "SGX driver"; docs/sgx.md.
//
// Invariants: an enclave PTE maps the EPC page of the enclave page at that address, inserted as a
// raw PFN (vmf_insert_pfn) with KeyID 0 in the entry (the EPC's own key is not a KeyID: ordinary
// accesses through the entry hit the abort page); a page is mapped only when the VMA's rights are
// within the page's SECINFO; a fault on an address without an enclave page is SIGBUS (the model's
// CPU has SGX1 only: no EAUG).
import KeyMMBase
import KeyMMHardware

/// sgx_vm_ops, one instance per enclave (it doubles as vm_private_data).
package final class SGXVMOps: VMFaultHandler {
    unowned let driver: SGXDriver
    /// vm_private_data (strong: a VMA keeps its enclave's object; the enclave drops its ops at free).
    package let enclave: SGXEnclave

    init(driver: SGXDriver, enclave: SGXEnclave) {
        self.driver = driver
        self.enclave = enclave
    }

    /// Only the 2019 design hooks .close (it is what keeps the VMAs from merging).
    package var hasClose: Bool { driver.tracking == .vmaRefcount }

    /// sgx_vma_open(): a copied or split VMA (fork, split_vma, mremap).
    package func open(_ vma: VMA, mm: MM) {
        guard !enclave.freed else { return }
        switch driver.tracking {
        case .notifier: _ = driver.enclMMAdd(enclave, mm)
        case .vmaRefcount: driver.vmaReference(enclave, mm)
        }
    }

    /// sgx_vma_close() of the 2019 driver.
    package func close(_ vma: VMA, mm: MM) {
        guard driver.tracking == .vmaRefcount, !enclave.freed else { return }
        driver.vmaUnreference(enclave, mm)
    }

    /// sgx_vma_mprotect(): the new rights must be within every page's SECINFO.
    package func mprotect(_ vma: VMA, start: VirtAddr, end: VirtAddr, newFlags: VMFlags) -> Errno? {
        driver.mayMap(enclave, start, end, newFlags)
    }

    /// sgx_vma_fault(): the EPC page behind `address`, loaded if needed.
    package func fault(_ vma: VMA, address: VirtAddr, pageIndex: UInt64, write: Bool) -> (pfn: PFN, prot: PageProt)? {
        driver.changed()
        guard let p = driver.loadPageInVMA(enclave, address, vma.vmFlags), let epc = p.epc else { return nil }
        var prot = vma.vmPageProt
        prot.keyid = .tme
        return (driver.unit.pfn(epc), prot)
    }

    /// After vmf_insert_pfn: sgx_encl_test_and_clear_young() on the new entry; ksgxd runs if an
    /// allocation woke it (it waited for the enclave lock the fault held).
    package func faultCompleted(_ vma: VMA, mm: MM, address: VirtAddr) {
        driver.changed()
        if let p = enclave.pages[address.pageNumber] { _ = driver.testAndClearYoung(mm, p) }
        driver.runKsgxdIfWoken()
    }
}

extension SGXDriver {
    /// sgx_encl_may_map(): EACCES when the range reaches outside an initialized enclave or asks for
    /// a right some page's SECINFO does not give.
    func mayMap(_ encl: SGXEnclave, _ start: VirtAddr, _ end: VirtAddr, _ flags: VMFlags) -> Errno? {
        let want = flags.intersection([.read, .write, .exec])
        if encl.initialized && (start.rawValue < encl.base || end.rawValue > encl.base &+ encl.size) { return .EACCES }
        let first = start.pageNumber, last = (end.rawValue &- 1) >> pageShift
        guard end > start else { return nil }
        if last - first < UInt64(encl.pages.count) {
            var vpn = first
            while vpn <= last {
                if let p = encl.pages[vpn], !want.subtracting(p.maxProt).isEmpty { return .EACCES }
                vpn += 1
            }
        } else {
            for (vpn, p) in encl.pages where vpn >= first && vpn <= last {
                if !want.subtracting(p.maxProt).isEmpty { return .EACCES }
            }
        }
        return nil
    }

    /// sgx_encl_load_page_in_vma() + the fault's retry: the page at `address` with its EPC page, or
    /// nil (SIGBUS). When no EPC page is free the faulting thread waits for ksgxd (the model runs a
    /// reclaim pass, then retries).
    func loadPageInVMA(_ encl: SGXEnclave, _ address: VirtAddr, _ vmFlags: VMFlags) -> SGXEnclavePage? {
        guard let entry = encl.pages[address.pageNumber] else { return nil }
        let want = vmFlags.intersection([.read, .write, .exec])
        guard want.subtracting(entry.maxProt).isEmpty else { return nil }
        for _ in 0..<8 {
            switch loadPage(encl, entry) {
            case .success: return entry
            case .failure(.EBUSY):
                ksgxdWoken = true
                runKsgxdIfWoken()
                if epc.freeCount == 0 { _ = reclaimPages() }
            case .failure:
                return nil
            }
        }
        return nil
    }

    /// The SECS back in the EPC (ELDU), waiting for ksgxd when no EPC page is free.
    func loadSECS(_ encl: SGXEnclave) -> Bool {
        for _ in 0..<8 {
            if encl.secs.epc != nil { return true }
            switch eldu(encl, encl.secs) {
            case .success: return true
            case .failure(.EBUSY):
                ksgxdWoken = true
                runKsgxdIfWoken()
                if epc.freeCount == 0 { _ = reclaimPages() }
            case .failure: return false
            }
        }
        return false
    }

    /// __sgx_encl_load_page(): a resident page as is; else ELDU of the SECS (if written back) and of
    /// the page, which then counts as a child again and goes to the active list.
    func loadPage(_ encl: SGXEnclave, _ entry: SGXEnclavePage) -> Result<Void, Errno> {
        if entry.epc != nil { return entry.beingReclaimed ? .failure(.EBUSY) : .success(()) }
        if encl.secs.epc == nil {
            if case .failure(let e) = eldu(encl, encl.secs) { return .failure(e) }
        }
        if case .failure(let e) = eldu(encl, entry) { return .failure(e) }
        encl.secsChildCount += 1
        markReclaimable(entry.epc!)
        return .success(())
    }

    /// sgx_encl_eldu(): a free EPC page (no direct reclaim in the fault path: EBUSY), ELDU from the
    /// backing storage with the page's VA slot; the slot is freed and the backing page truncated. A
    /// refused ELDU (tampered or replayed backing) is EFAULT, and the backing is truncated anyway (as
    /// the driver's __sgx_encl_eldu does), so the page is lost.
    func eldu(_ encl: SGXEnclave, _ page: SGXEnclavePage) -> Result<Void, Errno> {
        let isSecs = page === encl.secs
        let owner: EPCOwner = isSecs ? .secs(encl) : .page(page)
        let epcPage: EPCPage
        switch allocEPCPage(owner, reclaim: false) {
        case .failure(let e): return .failure(e)
        case .success(let p): epcPage = p
        }
        let index = encl.backingIndex(page)
        guard let va = page.va else {
            freeEPCPage(epcPage)
            anomaly(.enclaveContents, "enclave page at \(Fmt.hex(page.linear)) of description \(encl.openID) is neither in the EPC nor written back: its contents are lost")
            return .failure(.EFAULT)
        }
        guard let b = encl.backing[index] else {
            // Truncated after an earlier refused ELDU: shmem reads zeros, which ELDU refuses again.
            freeEPCPage(epcPage)
            clock.count(.sgxELDURefused)
            return .failure(.EFAULT)
        }
        let blob = kernel.kernelRead(b.frame, count: pageSize)
        let r = unit.eldu(epcPage, SealedPage(blob: blob, pcmd: b.pcmd), va: va.epc, slot: page.vaSlot)
        truncateBacking(encl, index)
        guard r == .success else {
            freeEPCPage(epcPage)
            clock.count(.sgxELDURefused)
            return .failure(.EFAULT)
        }
        va.freeSlot(page.vaSlot)
        if let i = encl.vaPages.firstIndex(where: { $0 === va }) {
            encl.vaPages.remove(at: i)
            encl.vaPages.insert(va, at: 0)
        }
        page.va = nil
        page.vaSlot = 0
        page.epc = epcPage
        return .success(())
    }

    /// Frees one backing page (shmem_truncate_range of that index).
    func truncateBacking(_ encl: SGXEnclave, _ index: UInt64) {
        guard let b = encl.backing.removeValue(forKey: index) else { return }
        kernel.allocator.freePages(b.frame, order: .base)
    }

    /// sgx_encl_find() + a check that the VMA at `address` in `mm` maps this enclave.
    func enclaveVMA(_ mm: MM, _ address: UInt64, _ encl: SGXEnclave) -> VMA? {
        guard let v = mm.vma(containing: VirtAddr(address)), let ops = v.vmOps as? SGXVMOps, ops.enclave === encl else { return nil }
        return v
    }

    /// sgx_encl_test_and_clear_young(): the accessed bit of `page`'s PTE in `mm` (cleared if set).
    func testAndClearYoung(_ mm: MM, _ page: SGXEnclavePage) -> Bool {
        guard enclaveVMA(mm, page.linear, page.enclave) != nil else { return false }
        let pt = mm.pageTable
        guard let slot = pt.pteSlot(VirtAddr(page.linear)) else { return false }
        let e = pt[slot]
        guard e.isPresent, e.raw & PTEFlags.accessed.rawValue != 0 else { return false }
        pt.set(slot, PTE(raw: e.raw & ~PTEFlags.accessed.rawValue))
        clock.charge(.pteUpdate)
        return true
    }

    /// zap_vma_ptes() of one enclave page in `mm`, if the VMA there maps this enclave.
    func zapEnclavePTE(_ mm: MM, _ page: SGXEnclavePage) {
        guard let v = enclaveVMA(mm, page.linear, page.enclave) else { return }
        kernel.zapPageRange(mm, v, VirtAddr(page.linear), VirtAddr(page.linear).advanced(by: UInt64(pageSize)))
    }
}

/// Hex formatting for anomaly texts.
enum Fmt {
    static func hex(_ v: UInt64) -> String { "0x" + String(v, radix: 16) }
}
