// KVM's SEV, SEV-ES and SEV-SNP guests (arch/x86/kvm/svm/sev.c) on the SEV firmware model:
// ASIDs as key indices (SEV guests use min_sev_asid...max_sev_asid, SEV-ES and SNP guests
// 1...min_sev_asid-1) charged to the misc cgroup ("sev" / "sev_es"); freeing an ASID only marks
// it for reclaim and drops the charge; when allocation finds no free ASID, recycling runs WBINVD
// on every CPU and DF_FLUSH (SNP_DF_FLUSH) and frees every reclaimed ASID; guest memory (SNP:
// assigned in the RMP, out of the direct map), page-state changes, and destruction (WBNOINVD on
// the CPUs that ran the guest, pages back to the host, DEACTIVATE/DECOMMISSION, the ASID freed).
// docs/sources.md, "SEV / SEV-SNP host (arch/x86/kvm/svm, arch/x86/virt/svm)".
//
// Errnos: EBADF unknown VM, EINVAL wrong type/argument, ENOTTY no SEV or an empty ASID range, EBUSY
// no ASID even after recycling (or the cgroup limit), EIO a firmware command or RMPUPDATE failed,
// ENOMEM. `CVMConfig.sevASIDFlush = .eager` flushes at every free instead (the bench's
// comparison).
//
// Invariants: an ASID is never in both bitmaps' "free" and "in use" at once; reclaimed ASIDs go
// back to the free bitmap only in a recycle that flushed (WBINVD + DF_FLUSH succeeded); a failed
// DECOMMISSION leaks the ASID (never freed), a failed reclaim or RMPUPDATE leaks the page.
import KeyMMBase
import KeyMMHardware

extension Kernel {
    func sevVM(_ h: Int32) -> Result<ConfidentialVM, Errno> {
        guard let vm = cvm.vm(h), !vm.destroyed else { return .failure(.EBADF) }
        guard vm.type != .tdx else { return .failure(.EINVAL) }
        return .success(vm)
    }

    // MARK: ASIDs

    /// sev_asid_new(): charges the cgroup, takes the lowest free ASID of the type's range, recycling
    /// once when there is none.
    func sevASIDNew(esActive: Bool) -> Result<Int, Errno> {
        let minA = esActive ? 1 : cvm.minSEVASID
        let maxA = esActive ? cvm.minSEVASID - 1 : cvm.maxSEVASID
        guard minA <= maxA else { return .failure(.ENOTTY) }
        let res: MiscResource = esActive ? .sevES : .sev
        if let e = cvm.miscCgroup.tryCharge(res) { return .failure(e) }
        var retry = true
        while true {
            if let a = (minA...maxA).first(where: { !cvm.asidBitmap[$0] }) {
                cvm.asidBitmap[a] = true
                return .success(a)
            }
            if retry && sevRecycleASIDs(minA, maxA) { retry = false; continue }
            cvm.miscCgroup.uncharge(res)
            machine.clock.count(.asidExhaustions)
            return .failure(.EBUSY)
        }
    }

    /// sev_flush_asids(): WBINVD on every CPU, then DF_FLUSH (SNP_DF_FLUSH under SNP).
    func sevFlushASIDs() -> Bool {
        wbinvdOnAllCPUs()
        return machine.sev?.dfFlush() == .success
    }

    /// __sev_recycle_asids(): when an ASID of the range waits for reclaim, flush and free every
    /// reclaimed ASID.
    func sevRecycleASIDs(_ minA: Int, _ maxA: Int) -> Bool {
        guard (minA...maxA).contains(where: { cvm.reclaimBitmap[$0] }) else { return false }
        // Seeded bug (KeyMMChecker/SeededBugs.swift): the reclaimed ASIDs are freed without a flush.
        if !config.bugs.contains(.sevRecycleWithoutFlush) {
            guard sevFlushASIDs() else { return false }
        }
        let freed = cvm.asidsToReclaim
        for a in freed { cvm.asidBitmap[a] = false; cvm.reclaimBitmap[a] = false }
        machine.clock.count(.asidRecycles)
        cvm.observer?(.asidsRecycled(freed))
        return true
    }

    /// sev_asid_free(): the ASID is marked for reclaim and the cgroup charge dropped (under the
    /// eager policy it is flushed and freed at once).
    func sevASIDFree(_ vm: ConfidentialVM) {
        guard let a = vm.asid else { return }
        cvm.reclaimBitmap[a] = true
        if let r = vm.charged { cvm.miscCgroup.uncharge(r); vm.charged = nil }
        vm.asid = nil
        if cvm.config.sevASIDFlush == .eager { _ = sevRecycleASIDs(a, a) }
    }

    // MARK: guests

    /// KVM_CREATE_VM(type) + KVM_SEV_INIT2 + launch start (ACTIVATE / SNP_ACTIVATE). Returns the
    /// VM handle.
    package func sevGuestInit(type: CVMType, handle want: Int32? = nil) -> Result<Int32, Errno> {
        machine.clock.charge(.syscall)
        guard let sev = machine.sev, type != .tdx else { return .failure(.ENOTTY) }
        guard type != .snp || machine.config.snp else { return .failure(.EINVAL) }
        let esActive = type != .sev
        let asid: Int
        switch sevASIDNew(esActive: esActive) {
        case .failure(let e): return .failure(e)
        case .success(let a): asid = a
        }
        let vm = ConfidentialVM(handle: cvm.newHandle(want), type: type)
        vm.asid = asid
        vm.charged = esActive ? .sevES : .sev
        if type == .snp {
            // SNP_LAUNCH_START: the guest context is a firmware page (immutable in the RMP).
            guard let ctx = allocKernelPage() else { sevASIDFree(vm); return .failure(.ENOMEM) }
            guard case .success = rmpMakePrivate(ctx, gpa: 0, level: .k4, asid: 0, immutable: true) else {
                allocator.freePages(ctx, order: PageOrder(0))
                sevASIDFree(vm)
                return .failure(.EIO)
            }
            vm.contextPage = ctx
        }
        guard sev.activate(asid: asid) == .success else {
            if let ctx = vm.contextPage, snpPageReclaim(ctx) { allocator.freePages(ctx, order: PageOrder(0)) }
            vm.contextPage = nil
            sevASIDFree(vm)
            return .failure(.EIO)
        }
        cvm.vms[vm.handle] = vm
        return .success(vm.handle)
    }

    /// KVM_SEV_LAUNCH_UPDATE_DATA / KVM_SEV_SNP_LAUNCH_UPDATE: `npages` guest pages at `gpa`,
    /// encrypted in place by the firmware. SNP: assigned first (a 2M RMP entry for 512 pages at a
    /// 2M-aligned GPA); SEV, SEV-ES: the host's lines are flushed first (sev_clflush_pages).
    package func sevLaunchUpdateData(_ h: Int32, gpa: UInt64, npages: Int) -> Result<Void, Errno> {
        machine.clock.charge(.syscall)
        guard case .success(let vm) = sevVM(h) else { return .failure(sevVM(h).errno) }
        guard let asid = vm.asid, let sev = machine.sev, gpa & UInt64(pageSize - 1) == 0, npages > 0 else { return .failure(.EINVAL) }
        for i in 0..<npages where vm.privatePages[gpa + UInt64(i * pageSize)] != nil || vm.sharedPages[gpa + UInt64(i * pageSize)] != nil {
            return .failure(.EINVAL)
        }
        let huge = vm.type == .snp && npages == 512 && gpa & ((2 << 20) - 1) == 0
        var frames: [PFN] = []
        if huge, let head = allocator.allocPages(order: PageOrder(9), keyid: .tme, gfp: [.reclaim, .io, .fs, .zero]) {
            allocator.splitPage(head)
            frames = (0..<512).map { head.advanced(by: $0) }
            guard case .success = rmpMakePrivate(head, gpa: gpa, level: .m2, asid: asid, immutable: false) else {
                for f in frames { allocator.freePages(f, order: PageOrder(0)) }
                return .failure(.EIO)
            }
        } else {
            for i in 0..<npages {
                guard let p = allocGuestPage() else { return .failure(.ENOMEM) }
                if vm.type == .snp {
                    guard case .success = rmpMakePrivate(p, gpa: gpa + UInt64(i * pageSize), level: .k4, asid: asid, immutable: false) else {
                        allocator.freePages(p, order: PageOrder(0))
                        return .failure(.EIO)
                    }
                }
                frames.append(p)
                vm.privatePages[gpa + UInt64(i * pageSize)] = p
            }
        }
        for (i, f) in frames.enumerated() {
            vm.privatePages[gpa + UInt64(i * pageSize)] = f
            // sev_clflush_pages(): the host's lines reach memory before the firmware encrypts.
            if vm.type != .snp { for t in Kernel.hostTags { machine.flushPage(f, keyid: t) } }
        }
        for f in frames {
            guard sev.launchUpdate(f, asid: asid, hostTag: .tme, rmp: vm.type == .snp) == .success else { return .failure(.EIO) }
        }
        return .success(())
    }

    /// KVM_SET_MEMORY_ATTRIBUTES over `npages` at `gpa` (a page-state change the guest asked
    /// for): to shared, a private page leaves the guest (SNP: sev_gmem_invalidate; TDX: removal)
    /// and a host page backs the GPA; to private, the shared page is freed and a guest page is
    /// prepared (SNP: sev_gmem_prepare; TDX: PAGE.AUG). SEV and SEV-ES have no private attribute.
    package func kvmSetMemoryAttributes(_ h: Int32, gpa: UInt64, npages: Int, toPrivate: Bool) -> Result<Void, Errno> {
        machine.clock.charge(.syscall)
        guard let vm = cvm.vm(h), !vm.destroyed else { return .failure(.EBADF) }
        guard vm.type == .snp || vm.type == .tdx, gpa & UInt64(pageSize - 1) == 0, npages > 0 else { return .failure(.EINVAL) }
        for i in 0..<npages {
            let g = gpa + UInt64(i * pageSize)
            if toPrivate {
                guard vm.privatePages[g] == nil else { continue }
                if let s = vm.sharedPages.removeValue(forKey: g) { allocator.freePages(s, order: PageOrder(0)) }
                if vm.type == .tdx {
                    if case .failure(let e) = tdxMemPageAug(h, gpa: g, npages: 1) { return .failure(e) }
                } else {
                    guard let asid = vm.asid, let p = allocGuestPage() else { return .failure(.ENOMEM) }
                    // sev_gmem_prepare(): a 4K RMP entry (the model's gmem hands out 4K folios here).
                    guard case .success = rmpMakePrivate(p, gpa: g, level: .k4, asid: asid, immutable: false) else {
                        allocator.freePages(p, order: PageOrder(0))
                        return .failure(.EIO)
                    }
                    vm.privatePages[g] = p
                }
            } else {
                if vm.privatePages[g] != nil {
                    if vm.type == .tdx {
                        if case .failure(let e) = tdxRemoveOne(vm, g) { return .failure(e) }
                    } else if let p = vm.privatePages[g], let asid = vm.asid {
                        // The page stays the guest's (guest_memfd's) until the invalidation has
                        // made it shared and flushed its lines; only then is it freed.
                        let leaked = snpGmemInvalidate(p, count: 1, asid: asid)
                        vm.privatePages[g] = nil
                        if leaked.isEmpty { allocator.freePages(p, order: PageOrder(0)) }
                    }
                }
                if vm.sharedPages[g] == nil {
                    guard let s = allocGuestPage() else { return .failure(.ENOMEM) }
                    vm.sharedPages[g] = s
                }
            }
        }
        return .success(())
    }

    /// sev_vm_destroy(): WBNOINVD on the CPUs that ran the guest, the guest's pages back to the host
    /// (SNP: sev_gmem_invalidate), SNP: DECOMMISSION and the context page reclaimed, SEV/SEV-ES:
    /// DEACTIVATE + DECOMMISSION, then sev_asid_free. A failed DECOMMISSION leaks the ASID.
    package func sevVMDestroy(_ h: Int32) -> Result<Void, Errno> {
        machine.clock.charge(.syscall)
        guard case .success(let vm) = sevVM(h) else { return .failure(sevVM(h).errno) }
        guard let sev = machine.sev else { return .failure(.ENOTTY) }
        // sev_writeback_caches(): dirty guest-tagged lines reach memory before the pages go back.
        machine.wbnoinvd()
        var failed: Errno?
        for (_, f) in vm.privatePages.sorted(by: { $0.key < $1.key }) where vm.type == .snp {
            // Whole 2M entries go shared in one update (the invalidate covers them entirely).
            if let e = sev.entry(f), e.level == .m2 && f.rawValue & 511 != 0 { continue }
            let count = sev.entry(f)?.level == .m2 ? 512 : 1
            if let a = vm.asid, !snpGmemInvalidate(f, count: count, asid: a).isEmpty { failed = .EIO }
        }
        let leaked = Set(cvm.leakedFrames.map(\.rawValue))
        for (_, f) in vm.privatePages.sorted(by: { $0.key < $1.key }) where !leaked.contains(f.rawValue) {
            allocator.freePages(f, order: PageOrder(0))
        }
        vm.privatePages = [:]
        for (_, f) in vm.sharedPages.sorted(by: { $0.key < $1.key }) { allocator.freePages(f, order: PageOrder(0)) }
        vm.sharedPages = [:]
        if let a = vm.asid {
            guard sev.deactivate(asid: a) == .success else {
                // "Failed to free SNP guest context, leaking asid!"
                vm.destroyed = true
                return .failure(.EIO)
            }
        }
        if let ctx = vm.contextPage {
            if snpPageReclaim(ctx) { allocator.freePages(ctx, order: PageOrder(0)) } else { failed = failed ?? .EIO }
            vm.contextPage = nil
        }
        sevASIDFree(vm)
        vm.destroyed = true
        if let failed { return .failure(failed) }
        return .success(())
    }
}
