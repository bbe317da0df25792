// KVM's TD lifecycle (arch/x86/kvm/vmx/tdx.c) on the TDX module model: TD creation (a guest
// KeyID charged to the misc cgroup "tdx", TDR and TDCS pages, TDH.MNG.CREATE, the key on every
// package, TDH.MNG.INIT), private pages (PAGE.ADD before finalize, PAGE.AUG after), their removal
// (BLOCK -> TRACK -> REMOVE, TDH.PHYMEM.PAGE.WBINVD with the TD's KeyID, clear with MOVDIR64B,
// unpin) and teardown (TDH.PHYMEM.CACHE.WB on every package, TDH.MNG.KEY.FREEID, only then the
// KeyID back in the pool and the charge dropped; then TDCS pages and the TDR last, written back
// through the global KeyID). docs/sources.md, "TDX host (arch/x86/virt/vmx/tdx)".
//
// Failures follow KVM: a failed FREEID leaks the KeyID and every page of the TD; a failed page
// reclaim or PAGE.WBINVD leaks that page; nothing is ever reused after a failed step. Errnos:
// EBADF unknown VM, EINVAL wrong VM type/state or argument, ENOSPC no guest KeyID, EBUSY cgroup
// limit or TDX_OPERAND_BUSY, EAGAIN TDX_RND_NO_ENTROPY, EIO any other SEAMCALL failure, ENOMEM.
//
// Invariants: `vm.privatePages` mirrors the module's PT_REG pages of the TD; a removed page stays
// in `removedPages` (pinned, held) until it is cleared; the KeyID is returned to the pool at most
// once, and only after FREEID succeeded (or never created the TD).
import KeyMMBase
import KeyMMHardware

extension Kernel {
    func tdxVM(_ h: Int32) -> Result<ConfidentialVM, Errno> {
        guard let vm = cvm.vm(h), !vm.destroyed else { return .failure(.EBADF) }
        guard vm.type == .tdx else { return .failure(.EINVAL) }
        return .success(vm)
    }

    func seamErrno(_ s: TDXStatus) -> Errno {
        switch s {
        case .operandBusy: .EBUSY
        case .rndNoEntropy: .EAGAIN
        default: .EIO
        }
    }

    func allocKernelPage() -> PFN? { allocator.allocPages(order: PageOrder(0), keyid: .tme, gfp: .kernel) }

    /// KVM_CREATE_VM(KVM_X86_TDX_VM) + KVM_TDX_INIT_VM (__tdx_td_init). Returns the VM handle.
    package func tdxTDInit(handle want: Int32? = nil) -> Result<Int32, Errno> {
        machine.clock.charge(.syscall)
        guard cvm.tdxStatus == .initialized, let module = machine.tdx else { return .failure(.ENODEV) }
        let hkid: KeyID
        switch tdxGuestKeyIDAlloc() {
        case .failure(let e): return .failure(e)
        case .success(let k): hkid = k
        }
        if let e = cvm.miscCgroup.tryCharge(.tdx) {
            tdxGuestKeyIDFree(hkid)
            return .failure(e)
        }
        let vm = ConfidentialVM(handle: cvm.newHandle(want), type: .tdx)
        vm.hkid = hkid
        vm.charged = .tdx
        cvm.vms[vm.handle] = vm
        var pages: [PFN] = []
        for _ in 0...Kernel.tdcsPages {
            guard let p = allocKernelPage() else {
                for f in pages { allocator.freePages(f, order: PageOrder(0)) }
                tdxReturnKeyID(vm)
                vm.destroyed = true
                return .failure(.ENOMEM)
            }
            pages.append(p)
        }
        let tdr = pages.removeFirst()
        // tdx_clflush_page(): CLFLUSH before handing a page to the module.
        machine.flushPage(tdr, keyid: .tme)
        let s = sc({ module.mngCreate(tdr: tdr, hkid: hkid) })
        guard s.isSuccess else {
            allocator.freePages(tdr, order: PageOrder(0))
            for f in pages { allocator.freePages(f, order: PageOrder(0)) }
            tdxReturnKeyID(vm)
            vm.destroyed = true
            return .failure(s == .rndNoEntropy ? .EAGAIN : .EIO)
        }
        vm.tdr = tdr
        var err: Errno?
        for p in 0..<module.packages {
            let k = sc({ module.mngKeyConfig(tdr: tdr, package: p) })
            if !k.isSuccess { err = .EIO; break }
        }
        var added = 0
        if err == nil {
            for f in pages {
                machine.flushPage(f, keyid: .tme)
                let a = sc({ module.mngAddcx(tdr: tdr, page: f) })
                if !a.isSuccess { err = a == .rndNoEntropy ? .EAGAIN : .EIO; break }
                vm.tdcs.append(f)
                added += 1
            }
        }
        if err == nil, !sc({ module.mngInit(tdr: tdr) }).isSuccess { err = .EIO }
        if let err {
            // teardown: pages not added go back; then the full release and reclaim.
            for f in pages[added...] { allocator.freePages(f, order: PageOrder(0)) }
            tdxMmuReleaseHKID(vm)
            tdxReclaimControlPages(vm)
            vm.destroyed = true
            return .failure(err)
        }
        return .success(vm.handle)
    }

    /// tdx_hkid_free(): the KeyID back to the pool and the cgroup charge dropped (once).
    func tdxReturnKeyID(_ vm: ConfidentialVM) {
        guard let k = vm.hkid, !vm.hkidReleased else { return }
        vm.hkidReleased = true
        tdxGuestKeyIDFree(k)
        if let r = vm.charged { cvm.miscCgroup.uncharge(r); vm.charged = nil }
    }

    /// A host page for the guest: allocated, cleared through KeyID 0 (guest_memfd), written back.
    func allocGuestPage() -> PFN? {
        guard let p = allocator.allocPages(order: PageOrder(0), keyid: .tme, gfp: [.reclaim, .io, .fs, .hardwall, .zero]) else { return nil }
        return p
    }

    /// KVM_TDX_INIT_MEM_REGION: `npages` private pages at `gpa` with TDH.MEM.PAGE.ADD (before
    /// finalize), each copied from a source page the VMM filled.
    package func tdxMemPageAdd(_ h: Int32, gpa: UInt64, npages: Int) -> Result<Void, Errno> {
        machine.clock.charge(.syscall)
        guard case .success(let vm) = tdxVM(h) else { return .failure(tdxVM(h).errno) }
        guard gpa & UInt64(pageSize - 1) == 0, npages > 0, let tdr = vm.tdr, let module = machine.tdx else { return .failure(.EINVAL) }
        guard !vm.finalized else { return .failure(.EINVAL) }
        for i in 0..<npages {
            let g = gpa + UInt64(i * pageSize)
            // The GPA's previous page is still being removed (KVM holds the MMU lock through the
            // whole removal, so nothing maps the GPA before it ends).
            guard vm.removedPages[g] == nil else { return .failure(.EBUSY) }
            guard let page = allocGuestPage() else { return .failure(.ENOMEM) }
            guard let source = allocGuestPage() else { allocator.freePages(page, order: PageOrder(0)); return .failure(.ENOMEM) }
            machine.flushPage(page, keyid: .tme)
            let s = sc({ module.memPageAdd(tdr: tdr, gpa: g, page: page, source: source) })
            allocator.freePages(source, order: PageOrder(0))
            guard s.isSuccess else { allocator.freePages(page, order: PageOrder(0)); return .failure(seamErrno(s)) }
            vm.privatePages[g] = page
        }
        return .success(())
    }

    /// KVM_TDX_FINALIZE_VM: TDH.MR.FINALIZE.
    package func tdxFinalizeVM(_ h: Int32) -> Result<Void, Errno> {
        machine.clock.charge(.syscall)
        guard case .success(let vm) = tdxVM(h) else { return .failure(tdxVM(h).errno) }
        guard let tdr = vm.tdr, let module = machine.tdx, !vm.finalized else { return .failure(.EINVAL) }
        let s = sc({ module.mrFinalize(tdr: tdr) })
        guard s.isSuccess else { return .failure(seamErrno(s)) }
        vm.finalized = true
        return .success(())
    }

    /// The guest faults `npages` private pages in at `gpa` after finalize (TDH.MEM.PAGE.AUG).
    package func tdxMemPageAug(_ h: Int32, gpa: UInt64, npages: Int) -> Result<Void, Errno> {
        guard case .success(let vm) = tdxVM(h) else { return .failure(tdxVM(h).errno) }
        guard gpa & UInt64(pageSize - 1) == 0, npages > 0, let tdr = vm.tdr, let module = machine.tdx else { return .failure(.EINVAL) }
        guard vm.finalized else { return .failure(.EOPNOTSUPP) }
        for i in 0..<npages {
            let g = gpa + UInt64(i * pageSize)
            if vm.privatePages[g] != nil { continue }
            guard vm.removedPages[g] == nil else { return .failure(.EBUSY) }   // as in tdxMemPageAdd
            guard let page = allocGuestPage() else { return .failure(.ENOMEM) }
            machine.flushPage(page, keyid: .tme)
            let s = sc({ module.memPageAug(tdr: tdr, gpa: g, page: page) })
            guard s.isSuccess else { allocator.freePages(page, order: PageOrder(0)); return .failure(seamErrno(s)) }
            vm.privatePages[g] = page
        }
        return .success(())
    }

    // MARK: removal, one step at a time (tdx_sept_remove_private_spte)

    /// TDH.MEM.RANGE.BLOCK of the private page at `gpa`.
    package func tdhMemRangeBlock(_ h: Int32, gpa: UInt64) -> Result<Void, Errno> {
        guard case .success(let vm) = tdxVM(h) else { return .failure(tdxVM(h).errno) }
        guard let tdr = vm.tdr, let module = machine.tdx, vm.privatePages[gpa] != nil else { return .failure(.EINVAL) }
        let s = sc({ module.memRangeBlock(tdr: tdr, gpa: gpa) })
        return s.isSuccess ? .success(()) : .failure(seamErrno(s))
    }

    /// TDH.MEM.TRACK, then every vCPU is kicked out of the guest.
    package func tdhMemTrack(_ h: Int32) -> Result<Void, Errno> {
        guard case .success(let vm) = tdxVM(h) else { return .failure(tdxVM(h).errno) }
        guard let tdr = vm.tdr, let module = machine.tdx else { return .failure(.EINVAL) }
        var s = sc({ module.memTrack(tdr: tdr) })
        while s == .operandBusy { s = sc({ module.memTrack(tdr: tdr) }) }   // tdx_track() retries while busy
        guard s.isSuccess else { return .failure(seamErrno(s)) }
        machine.clock.charge(.tlbShootdown)
        return .success(())
    }

    /// TDH.MEM.PAGE.REMOVE: the page leaves the TD; KVM keeps it pinned until it is cleared.
    package func tdhMemPageRemove(_ h: Int32, gpa: UInt64) -> Result<Void, Errno> {
        guard case .success(let vm) = tdxVM(h) else { return .failure(tdxVM(h).errno) }
        guard let tdr = vm.tdr, let module = machine.tdx, let page = vm.privatePages[gpa] else { return .failure(.EINVAL) }
        var s = sc({ module.memPageRemove(tdr: tdr, gpa: gpa) })
        while s == .operandBusy { s = sc({ module.memPageRemove(tdr: tdr, gpa: gpa) }) }   // retried while busy
        guard s.isSuccess else { return .failure(.EIO) }
        vm.privatePages[gpa] = nil
        vm.removedPages[gpa] = (page, false)
        return .success(())
    }

    /// TDH.PHYMEM.PAGE.WBINVD of a removed page with the TD's KeyID.
    package func tdhPhymemPageWbinvd(_ h: Int32, gpa: UInt64) -> Result<Void, Errno> {
        guard case .success(let vm) = tdxVM(h) else { return .failure(tdxVM(h).errno) }
        guard let module = machine.tdx, let hkid = vm.hkid, let r = vm.removedPages[gpa] else { return .failure(.EINVAL) }
        let s = sc({ module.phymemPageWbinvd(r.pfn, keyid: hkid) })
        guard s.isSuccess else { return .failure(.EIO) }
        vm.removedPages[gpa] = (r.pfn, true)
        return .success(())
    }

    /// tdx_clear_page() + tdx_unpin(): a removed page is reset with MOVDIR64B and freed. KVM
    /// clears only a page TDH.PHYMEM.PAGE.WBINVD wrote back (tdx_sept_drop_private_spte stops on
    /// its failure): EBUSY before, the page still holds the TD's lines.
    package func tdxClearRemovedPage(_ h: Int32, gpa: UInt64) -> Result<Void, Errno> {
        guard case .success(let vm) = tdxVM(h) else { return .failure(tdxVM(h).errno) }
        guard let r = vm.removedPages[gpa] else { return .failure(.EINVAL) }
        guard r.writtenBack else { return .failure(.EBUSY) }
        return tdxClearAndUnpin(vm, gpa)
    }

    private func tdxClearAndUnpin(_ vm: ConfidentialVM, _ gpa: UInt64) -> Result<Void, Errno> {
        guard let r = vm.removedPages[gpa] else { return .failure(.EINVAL) }
        tdxClearPage(r.pfn)
        vm.removedPages[gpa] = nil
        allocator.freePages(r.pfn, order: PageOrder(0))
        return .success(())
    }

    /// tdx_sept_remove_private_spte() for `npages` pages at `gpa`: BLOCK, TRACK, REMOVE,
    /// TDH.PHYMEM.PAGE.WBINVD with the TD's KeyID, MOVDIR64B clear, unpin. A failure after REMOVE
    /// leaves the page pinned (leaked).
    package func tdxRemovePrivatePages(_ h: Int32, gpa: UInt64, npages: Int) -> Result<Void, Errno> {
        machine.clock.charge(.syscall)
        guard case .success(let vm) = tdxVM(h) else { return .failure(tdxVM(h).errno) }
        guard npages > 0 else { return .failure(.EINVAL) }
        for i in 0..<npages {
            let g = gpa + UInt64(i * pageSize)
            guard vm.privatePages[g] != nil else { continue }
            if case .failure(let e) = tdxRemoveOne(vm, g) { return .failure(e) }
        }
        return .success(())
    }

    func tdxRemoveOne(_ vm: ConfidentialVM, _ g: UInt64) -> Result<Void, Errno> {
        let h = vm.handle
        if case .failure(let e) = tdhMemRangeBlock(h, gpa: g) { return .failure(e) }
        if case .failure(let e) = tdhMemTrack(h) { return .failure(e) }
        if case .failure(let e) = tdhMemPageRemove(h, gpa: g) { return .failure(e) }
        // Seeded bug (KeyMMChecker/SeededBugs.swift): the TD's lines are not written back.
        if !config.bugs.contains(.tdxSkipPageWBINVD) {
            if case .failure(let e) = tdhPhymemPageWbinvd(h, gpa: g) {
                if let r = vm.removedPages.removeValue(forKey: g) { leakFrame(r.pfn) }
                return .failure(e)
            }
        }
        return tdxClearAndUnpin(vm, g)
    }

    /// A page leaked for good: never freed, never reused.
    func leakFrame(_ f: PFN) {
        cvm.leakedFrames.append(f)
        machine.clock.count(.cvmPageLeaks)
    }

    // MARK: teardown

    /// tdx_mmu_release_hkid(): TDH.MNG.VPFLUSHDONE, TDH.PHYMEM.CACHE.WB on one CPU of every
    /// package (retried while interrupted), TDH.MNG.KEY.FREEID; only then the KeyID goes back to
    /// the pool. A failed FREEID leaks the KeyID.
    package func tdxMmuReleaseHKID(_ h: Int32) -> Result<Void, Errno> {
        guard case .success(let vm) = tdxVM(h) else { return .failure(tdxVM(h).errno) }
        guard vm.privatePages.isEmpty else { return .failure(.EBUSY) }
        tdxMmuReleaseHKID(vm)
        return vm.hkidLeaked ? .failure(.EIO) : .success(())
    }

    func tdxMmuReleaseHKID(_ vm: ConfidentialVM) {
        guard vm.hkid != nil, !vm.hkidReleased, !vm.hkidLeaked else { return }
        guard let tdr = vm.tdr, let module = machine.tdx else { tdxReturnKeyID(vm); return }
        // Seeded bug: the KeyID goes back to the pool before the caches are written back.
        if config.bugs.contains(.tdxKeyIDFreedBeforeWriteBack) { tdxReturnKeyID(vm) }
        _ = sc({ module.mngVpflushdone(tdr: tdr) })
        for p in 0..<module.packages {
            var resume = 0
            while true {
                let s = sc({ module.phymemCacheWb(package: p) })
                if s == .interruptedResumable && resume < 10_000 { resume += 1; continue }
                break
            }
        }
        let s = sc({ module.mngKeyFreeid(tdr: tdr) })
        if s.isSuccess {
            tdxReturnKeyID(vm)
        } else {
            // "HKID is leaked": the KeyID stays assigned and every TD page with it.
            vm.hkidLeaked = true
            if let k = vm.hkid { cvm.leakedKeyIDs.append(k) }
            machine.clock.count(.tdxKeyIDLeaks)
        }
    }

    /// tdx_vm_destroy() -> tdx_reclaim_td_control_pages(): TDCS pages, then the TDR (reclaimed,
    /// written back through the global KeyID, cleared). Nothing is reclaimed while the KeyID is
    /// still assigned; a page whose reclaim fails is leaked.
    package func tdxVMDestroy(_ h: Int32) -> Result<Void, Errno> {
        guard case .success(let vm) = tdxVM(h) else { return .failure(tdxVM(h).errno) }
        guard vm.privatePages.isEmpty, vm.removedPages.isEmpty else { return .failure(.EBUSY) }
        tdxReclaimControlPages(vm)
        for (_, f) in vm.sharedPages.sorted(by: { $0.key < $1.key }) { allocator.freePages(f, order: PageOrder(0)) }
        vm.sharedPages = [:]
        vm.destroyed = true
        return .success(())
    }

    func tdxReclaimControlPages(_ vm: ConfidentialVM) {
        guard let module = machine.tdx, !vm.hkidLeaked, vm.hkid == nil || vm.hkidReleased else { return }
        for f in vm.tdcs {
            if sc({ module.phymemPageReclaim(f) }).isSuccess {
                tdxClearPage(f)
                allocator.freePages(f, order: PageOrder(0))
            } else {
                leakFrame(f)
            }
        }
        vm.tdcs = []
        guard let tdr = vm.tdr else { return }
        vm.tdr = nil
        guard sc({ module.phymemPageReclaim(tdr) }).isSuccess, let g = module.globalKeyID,
              sc({ module.phymemPageWbinvd(tdr, keyid: g) }).isSuccess else {
            leakFrame(tdr)
            return
        }
        tdxClearPage(tdr)
        allocator.freePages(tdr, order: PageOrder(0))
    }

    /// The whole destruction of a TD: every private page removed, the KeyID released, the control
    /// pages reclaimed, shared pages freed.
    package func tdxTDDestroy(_ h: Int32) -> Result<Void, Errno> {
        machine.clock.charge(.syscall)
        guard case .success(let vm) = tdxVM(h) else { return .failure(tdxVM(h).errno) }
        var failed: Errno?
        for g in vm.privatePages.keys.sorted() {
            if case .failure(let e) = tdxRemoveOne(vm, g) {
                failed = failed ?? e
                // The page cannot be removed: it stays with the TD (leaked with it).
                if let f = vm.privatePages.removeValue(forKey: g) { leakFrame(f) }
            }
        }
        for (g, r) in vm.removedPages.sorted(by: { $0.key < $1.key }) {
            vm.removedPages[g] = nil
            leakFrame(r.pfn)
        }
        tdxMmuReleaseHKID(vm)
        tdxReclaimControlPages(vm)
        if vm.hkidLeaked {
            for f in vm.tdcs { leakFrame(f) }
            vm.tdcs = []
            if let t = vm.tdr { leakFrame(t); vm.tdr = nil }
            failed = failed ?? .EIO
        }
        for (_, f) in vm.sharedPages.sorted(by: { $0.key < $1.key }) { allocator.freePages(f, order: PageOrder(0)) }
        vm.sharedPages = [:]
        vm.destroyed = true
        if let failed { return .failure(failed) }
        return .success(())
    }
}

extension Result where Failure == Errno {
    /// The error of a failed result (EINVAL for a success, which callers never ask).
    var errno: Errno {
        if case .failure(let e) = self { return e }
        return .EINVAL
    }
}
