// The page-fault path: find_vma + access_error (VMA rights and protection keys against the
// task's PKRU) + handle_mm_fault (THP, anonymous, write-protect/COW, file and special
// mappings), and populate (MAP_POPULATE / mlock / MADV_POPULATE).
//
// Invariants: every PTE that maps a frame with a struct page (not special) holds one page
// reference and one mapcount on that frame; anonymous pages are mapped with vm_page_prot
// and so carry the VMA's KeyID; the zero page is mapped only read-only, special, and with
// the KeyID bits stripped (mk_zero_pte); a write never lands in a page mapped by another
// PTE (COW copies unless mapcount == 1).
import KeyMMBase
import KeyMMHardware

/// A vm_operations_struct that fills its mapping at fault time (vvar, SGX, drivers): the
/// model's `.fault` hook. Return the frame and the protection to map it with
/// (vmf_insert_pfn_prot: the protection, KeyID / encryption included, may differ from
/// vm_page_prot), or nil for SIGBUS.
package protocol VMFaultHandler: VMOperations {
    func fault(_ vma: VMA, address: VirtAddr, pageIndex: UInt64, write: Bool) -> (pfn: PFN, prot: PageProt)?
    /// Called after the entry `fault` returned was installed (the driver's work after
    /// vmf_insert_pfn, still inside the fault).
    func faultCompleted(_ vma: VMA, mm: MM, address: VirtAddr)
}

package extension VMFaultHandler {
    func faultCompleted(_ vma: VMA, mm: MM, address: VirtAddr) {}
}

extension Kernel {
    // MARK: entry

    /// The user page-fault handler (exc_page_fault → do_user_addr_fault): the VMA lookup,
    /// access_error (including protection keys against `task.pkru`), then handle_mm_fault.
    package func handleMMFault(_ task: TaskStruct, _ addr: VirtAddr, _ access: FaultAccess) -> FaultResult {
        machine.clock.charge(.pageFault)
        let mm = task.mm
        // lock_mm_and_find_vma (mm/Stack.swift) also grows a VM_GROWSDOWN stack VMA.
        guard addr.rawValue < userAddressLimit, let vma = lockMMAndFindVMA(mm, addr) else {
            return .sigsegv(.mapErr)
        }
        if let code = accessError(pkru: task.pkru, vma, access) { return .sigsegv(code) }
        return handleMMFault(mm, vma, addr, access)
    }

    /// access_error(): nil when the VMA allows the access. Protection keys apply to data
    /// accesses only (AD = bit 2*pkey, WD = bit 2*pkey+1 of PKRU).
    func accessError(pkru: UInt32, _ vma: VMA, _ access: FaultAccess) -> SegvCode? {
        let f = vma.vmFlags
        switch access {
        case .write:
            if !pkeyAllows(pkru: pkru, pkey: f.pkey, write: true) { return .pkuErr }
            return f.contains(.write) ? nil : .accErr
        case .read:
            if !pkeyAllows(pkru: pkru, pkey: f.pkey, write: false) { return .pkuErr }
            return f.isDisjoint(with: [.read, .write, .exec]) ? .accErr : nil
        case .exec:
            return f.contains(.exec) ? nil : .accErr
        }
    }

    /// Whether PKRU lets a data access through pkey.
    func pkeyAllows(pkru: UInt32, pkey: Int, write: Bool) -> Bool {
        let bits = (pkru >> UInt32(2 * pkey)) & 3
        return write ? bits == 0 : bits & 1 == 0
    }

    /// handle_mm_fault() for an address inside `vma` whose access is allowed.
    func handleMMFault(_ mm: MM, _ vma: VMA, _ addr: VirtAddr, _ access: FaultAccess) -> FaultResult {
        let pt = mm.pageTable
        machine.clock.charge(.ptWalk)
        let write = access == .write
        let pmdSlot = pt.allocPMDSlot(addr)
        var pmd = pt.raw(pmdSlot)
        if pmd == 0 && thpEligible(vma, addr) {
            let r = doHugePMDAnonymousPage(mm, vma, addr, pmdSlot, write: write)
            if r != nil { return r! }
            pmd = pt.raw(pmdSlot)
        }
        if pmd & PTEFlags.pse.rawValue != 0 {
            if let r = hugePMDFault(mm, vma, addr, pmdSlot, write: write) { return r }
            pmd = pt.raw(pmdSlot)   // split: continue at the PTE level
        }
        let slot: Int
        if PageTable.isTable(pmd) {
            slot = pt.pteTableBase(pmd) | PageTable.pteIndex(addr.rawValue)
        } else {
            slot = pt.allocPTETable(under: pmdSlot) << 9 | PageTable.pteIndex(addr.rawValue)
        }
        let pte = pt[slot]
        if pte.isNone {
            // vma.vmOps and vma.vmFile read once each (the fault path's hot reads of the VMA).
            let ops = vma.vmOps
            if ops == nil && vma.vmFile == nil { return doAnonymousPage(mm, vma, addr, slot, write: write) }
            if let handler = ops as? VMFaultHandler {
                return doSpecialFault(mm, vma, addr, slot, handler, write: write)
            }
            if vma.vmFile != nil { return doFileFault(mm, vma, addr, slot, write: write) }
            // vm_ops without a fault hook and no file: nothing can fill the page (do_fault).
            return .sigbus
        }
        if pte.isProtNone {
            // A PROT_NONE entry in an accessible VMA: a NUMA-hinting entry; restore the rights.
            pt.set(slot, pte.modified(vma.vmPageProt, layout: layout))
            machine.clock.charge(.pteUpdate)
            return .ok
        }
        if !pte.isPresent {
            // handle_pte_marker(): a guard region page is SIGSEGV (SEGV_MAPERR, measured).
            if pte.isGuardMarker { return .sigsegv(.mapErr) }
            return pgtable.swapIn?(mm, vma, addr, slot) ?? .sigbus
        }
        if write && !pte.isWritable { return doWPPage(mm, vma, addr, slot, pte) }
        // Spurious fault (stale TLB): the hardware sets A (and D) on the retried access.
        pt.setBits(slot, PTEFlags.accessed.rawValue | (write ? PTEFlags.dirty.rawValue : 0))
        return .ok
    }

    // MARK: anonymous

    /// do_anonymous_page(): read → the zero page; write → a new zeroed page with the VMA's KeyID.
    func doAnonymousPage(_ mm: MM, _ vma: VMA, _ addr: VirtAddr, _ slot: Int, write: Bool) -> FaultResult {
        let pt = mm.pageTable
        if !write {
            guard let z = zeroPage() else { return .oom }
            let zpte = PTE.zeroPage(z, prot: vma.vmPageProt, layout: layout)
            pt.set(slot, config.bugs.contains(.encryptedZeroPage) ? zpte.with(keyid: userPageKeyID(vma), layout: layout) : zpte)   // seeded bug
            machine.clock.charge(.pteUpdate)
            return .ok
        }
        guard let anon = anonVMA(for: vma, in: mm) else { return .oom }
        guard let pfn = allocUserPages(vma, addr, order: .base, zero: true) else { return .oom }
        allocator.setMapping(pfn, mapping: anon, index: vma.pageIndex(of: addr))
        allocator.setFlags(pfn, [.anon, .swapBacked, .uptodate])
        allocator.incMapcount(pfn)
        pt.set(slot, mkAnonPTE(pfn, vma, keyid: allocator.pageKeyID(pfn)))
        machine.clock.charge(.pteUpdate)
        return .ok
    }

    /// mk_pte(page, vm_page_prot) made young, dirty and (VM_WRITE) writable, as a write fault
    /// installs a fresh anonymous page. The KeyID is the page's (the VMA's at allocation).
    func mkAnonPTE(_ pfn: PFN, _ vma: VMA, keyid: KeyID) -> PTE {
        var f = vma.vmPageProt.flags.rawValue | PTEFlags.accessed.rawValue | PTEFlags.dirty.rawValue
        if vma.vmFlags.contains(.write) { f |= PTEFlags.rw.rawValue }
        return PTE(pfn: pfn, prot: PageProt(flags: PTEFlags(rawValue: f), keyid: keyid), layout: layout)
    }

    /// anon_vma_prepare(): the rmap id new anonymous pages of `vma` get (nil: no memory).
    func anonVMA(for vma: VMA, in mm: MM) -> UInt64? {
        if let a = vma.anonVMA { return a.id }
        anonVMAPrepare(vma, in: mm)
        return vma.anonVMA?.id
    }

    // MARK: write-protect faults (COW)

    /// do_wp_page(): a write to a present, write-protected PTE in a VM_WRITE mapping.
    func doWPPage(_ mm: MM, _ vma: VMA, _ addr: VirtAddr, _ slot: Int, _ pte: PTE) -> FaultResult {
        let pt = mm.pageTable
        if pte.isSpecial {
            if isZeroPFN(pte.pfn(layout)) { return wpPageCopy(mm, vma, addr, slot, pte, from: nil) }
            // A raw PFN (vmf_insert_pfn_prot): writable only in a shared mapping (wp_pfn_shared).
            guard vma.vmFlags.contains(.shared) else { return .sigbus }
            pt.set(slot, pte.madeWritableDirty)
            flushTLBRange(mm, addr, addr.advanced(by: UInt64(pageSize)))
            return .ok
        }
        let page = pte.pfn(layout)
        if vma.vmFlags.contains(.shared) {
            // wp_page_shared(): the page cache page becomes dirty and writable.
            markPageDirty(page)
            pt.set(slot, PTE(raw: pte.madeWritableDirty.raw | PTEFlags.accessed.rawValue))
            machine.clock.charge(.pteUpdate)
            return .ok
        }
        let f = allocator.flags(page)
        if f.contains(.anon) && !f.contains(.ksm) && allocator.mapcount(page) == 1 {
            // wp_can_reuse_anon_folio(): the only mapping: write in place.
            pt.set(slot, PTE(raw: pte.madeWritableDirty.raw | PTEFlags.accessed.rawValue))
            machine.clock.charge(.pteUpdate)
            return .ok
        }
        return wpPageCopy(mm, vma, addr, slot, pte, from: page)
    }

    /// wp_page_copy(): a private copy (through the source PTE's KeyID into a page with the
    /// VMA's KeyID), or a zeroed page when breaking COW of the zero page (`from` nil).
    func wpPageCopy(_ mm: MM, _ vma: VMA, _ addr: VirtAddr, _ slot: Int, _ old: PTE, from page: PFN?) -> FaultResult {
        guard let anon = anonVMA(for: vma, in: mm) else { return .oom }
        guard let new = allocUserPages(vma, addr, order: .base, zero: page == nil) else { return .oom }
        let newKeyID = allocator.pageKeyID(new)
        if let page {
            machine.copyPage(from: page, srcKeyID: old.keyid(layout), to: new, dstKeyID: newKeyID)
            machine.clock.count(.cowBreaks)
        }
        allocator.setMapping(new, mapping: anon, index: vma.pageIndex(of: addr))
        allocator.setFlags(new, [.anon, .swapBacked, .uptodate])
        allocator.incMapcount(new)
        // ptep_clear_flush + set_pte: the old translation must leave every TLB first.
        mm.pageTable.set(slot, mkAnonPTE(new, vma, keyid: newKeyID))
        machine.clock.charge(.pteUpdate)
        flushTLBRange(mm, addr.pageDown, addr.pageDown.advanced(by: UInt64(pageSize)))
        if let page {
            allocator.decMapcount(page)
            allocator.putPage(page)
        }
        return .ok
    }

    // MARK: file and special mappings

    /// do_read_fault / do_cow_fault / do_shared_fault through the page cache.
    func doFileFault(_ mm: MM, _ vma: VMA, _ addr: VirtAddr, _ slot: Int, write: Bool) -> FaultResult {
        guard let file = vma.vmFile else { return .sigbus }
        // A CPU write beyond EOF of a private mapping leaves the VMA without an anon_vma on
        // the host (6.18, measured); get_user_pages does prepare one (vm-core's populate paths
        // call anonVMAPrepare first: mm/PgtableGlue.swift gupPrepareAnon).
        let index = vma.pageIndex(of: addr)
        let space = pageCache.mapping(for: file)
        guard index < space.sizeInPages else { return .sigbus }
        guard let page = pageCachePage(space, index, vma: vma, addr: addr) else { return .oom }
        let pt = mm.pageTable
        if write && !vma.vmFlags.contains(.shared) {
            // do_cow_fault(): a private anonymous copy of the file page.
            guard let anon = anonVMA(for: vma, in: mm) else { return .oom }
            guard let new = allocUserPages(vma, addr, order: .base, zero: false) else { return .oom }
            let newKeyID = allocator.pageKeyID(new)
            machine.copyPage(from: page, srcKeyID: allocator.pageKeyID(page), to: new, dstKeyID: newKeyID)
            machine.clock.count(.cowBreaks)
            allocator.setMapping(new, mapping: anon, index: index)
            allocator.setFlags(new, [.anon, .swapBacked, .uptodate])
            allocator.incMapcount(new)
            pt.set(slot, mkAnonPTE(new, vma, keyid: newKeyID))
            machine.clock.charge(.pteUpdate)
            return .ok
        }
        allocator.getPage(page)
        allocator.incMapcount(page)
        var f = vma.vmPageProt.flags.rawValue | PTEFlags.accessed.rawValue
        if write {
            // do_shared_fault(): writable and dirty at once; the page is dirty for write-back.
            f |= PTEFlags.rw.rawValue | PTEFlags.dirty.rawValue
            markPageDirty(page)
        }
        pt.set(slot, PTE(pfn: page, prot: PageProt(flags: PTEFlags(rawValue: f), keyid: allocator.pageKeyID(page)), layout: layout))
        machine.clock.charge(.pteUpdate)
        return .ok
    }

    /// filemap_fault's lookup: the cached page, or a new zeroed KeyID-0 page added to the cache
    /// (the model's files start as zeros; page-cache pages are never encrypted).
    func pageCachePage(_ space: AddressSpace, _ index: UInt64, vma: VMA?, addr: VirtAddr) -> PFN? {
        if let p = space.pages[index] { return p }
        let node = vma.flatMap { policyNode($0, addr, order: .base) }
        guard let pfn = allocator.allocPages(order: .base, keyid: .tme, node: node,
                                             gfp: GFPFlags.highUserMovable.union(.zero)) else { return nil }
        allocator.setMapping(pfn, mapping: space.id, index: index)
        allocator.setFlags(pfn, [.uptodate])
        space.pages[index] = pfn
        return pfn
    }

    /// set_page_dirty for a mapped page: page-cache pages join their file's dirty set.
    func markPageDirty(_ page: PFN) {
        allocator.setFlags(page, .dirty)
        let m = allocator.mapping(page)
        if m & PageCache.fileMappingBit != 0, let space = pageCache.mapping(id: m) {
            space.dirty.insert(allocator.index(page))
        }
    }

    /// A vm_ops->fault that inserts a raw frame with its own protection (vmf_insert_pfn_prot).
    func doSpecialFault(_ mm: MM, _ vma: VMA, _ addr: VirtAddr, _ slot: Int, _ handler: VMFaultHandler,
                        write: Bool) -> FaultResult {
        guard let (pfn, prot) = handler.fault(vma, address: addr.pageDown, pageIndex: vma.pageIndex(of: addr), write: write) else {
            return .sigbus
        }
        insertPFNProt(mm, vma, addr, pfn, prot)
        handler.faultCompleted(vma, mm: mm, address: addr.pageDown)
        return .ok
    }

    /// vmf_insert_pfn_prot(): maps `pfn` at `addr` as a special entry with `prot` (its KeyID /
    /// encryption bit may differ from vm_page_prot's: docs/sources.md, seed 003's vvar page).
    package func insertPFNProt(_ mm: MM, _ vma: VMA, _ addr: VirtAddr, _ pfn: PFN, _ prot: PageProt) {
        let pt = mm.pageTable
        guard let slot = pt.allocPTESlot(addr) else { return }
        var f = prot.flags.rawValue | PTEFlags.special.rawValue | PTEFlags.accessed.rawValue
        if !vma.vmFlags.contains(.shared) || !vma.vmFlags.contains(.write) { f &= ~PTEFlags.rw.rawValue }
        pt.set(slot, PTE(pfn: pfn, prot: PageProt(flags: PTEFlags(rawValue: f), keyid: prot.keyid), layout: layout))
        machine.clock.charge(.pteUpdate)
    }

    // MARK: zero page

    /// empty_zero_page: one KeyID-0 zeroed frame, reserved, never freed.
    func zeroPage() -> PFN? {
        if let z = pgtable.zeroPFN { return z }
        guard let pfn = allocator.allocPages(order: .base, keyid: .tme, node: nil, gfp: [.zero]) else { return nil }
        allocator.setFlags(pfn, [.reserved, .zeroPage])
        pgtable.zeroPFN = pfn
        return pfn
    }

    /// is_zero_pfn().
    func isZeroPFN(_ pfn: PFN) -> Bool { pgtable.zeroPFN == pfn }

    // MARK: populate

    /// populate_vma_page_range() (MAP_POPULATE, mlock, MADV_POPULATE_*): faults in every page
    /// of [start, end) inside `vma` as get_user_pages would (FOLL_FORCE: no PKRU check; a
    /// private writable mapping is written to break COW; PROT_NONE VMAs are skipped).
    /// ENOMEM when out of memory, EFAULT when a page cannot be faulted in (SIGBUS/SIGSEGV).
    package func populate(_ task: TaskStruct, _ vma: VMA, _ start: VirtAddr, _ end: VirtAddr, write: Bool) -> Errno? {
        let f = vma.vmFlags
        if f.isDisjoint(with: [.read, .write, .exec]) { return nil }
        if f.contains(.io) || f.contains(.pfnMap) { return nil }
        let s = max(start.pageDown, vma.vmStart)
        let e = min(end, vma.vmEnd)
        let wantWrite = write || (f.contains(.write) && !f.contains(.shared))
        let access: FaultAccess = wantWrite && f.contains(.write) ? .write : .read
        let mm = task.mm
        let pt = mm.pageTable
        var a = s
        while a < e {
            // Already mapped with the needed rights? (follow_page_mask)
            var satisfied = false
            switch pt.walk(a) {
            case .huge(let ps):
                let m = pt[ps]
                if m.isPresent && (access != .write || m.isWritable) {
                    a = VirtAddr(min((a.rawValue | pmdMask) &+ 1, e.rawValue))
                    continue
                }
            case .pte(_, let slot):
                let p = pt[slot]
                satisfied = p.isPresent && (access != .write || p.isWritable)
            case .none:
                break
            }
            if !satisfied {
                switch handleMMFault(mm, vma, a, access) {
                case .ok: break
                case .oom: return .ENOMEM
                case .sigbus, .sigsegv: return .EFAULT
                }
            }
            a = a.advanced(by: UInt64(pageSize))
        }
        return nil
    }
}
