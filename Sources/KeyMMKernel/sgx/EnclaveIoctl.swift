// The enclave-building ioctls of /dev/sgx_enclave (arch/x86/kernel/cpu/sgx/ioctl.c):
// SGX_IOC_ENCLAVE_CREATE, SGX_IOC_ENCLAVE_ADD_PAGES, SGX_IOC_ENCLAVE_INIT, with every error the
// driver returns in the order it checks. The SECS and SECINFO are given inline (a log cannot show
// what a pointer points to: the contract's syntax). docs/sources.md, "SGX driver"; docs/sgx.md.
//
// Order (as merged): CREATE — EINVAL if already created, EINVAL for a size that is not a power of
// two, then the VA page and the SECS page from the EPC (ENOMEM/EBUSY/... from the allocator), then
// ECREATE, whose faults (a size below two pages, a base not aligned to the size, reserved
// attributes) are EIO. ADD_PAGES — EINVAL unless created and not initialized, EINVAL for an
// unaligned src, EINVAL for offset/length (unaligned, zero, wrapping, reaching past the enclave),
// EINVAL for the SECINFO (page type not REG/TCS, W without R, a TCS with permissions, reserved
// bits); then page by page: the EPC page, the VA page, EBUSY for a page already added, the source
// page (EFAULT unmapped, EACCES without VM_MAYEXEC), EADD, 16 EEXTENDs with SGX_PAGE_MEASURE; the
// first failing page's error is returned and the pages before it stay added. INIT — EINVAL unless
// created and not initialized, EACCES for attributes beyond the unprivileged mask, then EINIT.
//
// Invariants: a failed call leaves the enclave as it was before the failing page (no EPC page,
// VA slot or page_cnt leaks); page_cnt counts the SECS and every added page.
import KeyMMBase
import KeyMMHardware

/// An ioctl on /dev/sgx_enclave, with its argument structure as the trace gives it.
package enum SGXIoctlRequest: Sendable {
    /// SGX_IOC_ENCLAVE_CREATE with the SECS fields (`attributes` defaults to 0).
    case create(size: UInt64, base: UInt64, attributes: UInt64)
    /// SGX_IOC_ENCLAVE_ADD_PAGES (`src` nil: the pages' contents are zeros).
    case addPages(src: VirtAddr?, offset: UInt64, length: UInt64, secinfo: UInt64, flags: UInt64)
    /// SGX_IOC_ENCLAVE_INIT.
    case initialize
    /// SGX_IOC_ENCLAVE_PROVISION (the model has no /dev/sgx_provision: EINVAL).
    case provision(fd: UInt64)
    /// The SGX2 ioctls (RESTRICT_PERMISSIONS, MODIFY_TYPES, REMOVE_PAGES): the model's CPU has SGX1 only.
    case sgx2
    /// Any other request number.
    case other(UInt64)

    /// Request numbers (arch/x86/include/uapi/asm/sgx.h: _IOW/_IOWR(0xA4, nr, struct)).
    package static let createNumber: UInt64 = 0x4008_A400
    package static let addPagesNumber: UInt64 = 0xC030_A401
    package static let initNumber: UInt64 = 0x4008_A402
    package static let provisionNumber: UInt64 = 0x4008_A403
    package static let vepcRemoveAllNumber: UInt64 = 0xA404
    package static let restrictPermissionsNumber: UInt64 = 0xC028_A405
    package static let modifyTypesNumber: UInt64 = 0xC028_A406
    package static let removePagesNumber: UInt64 = 0xC018_A407
}

/// SECINFO flag fields (arch/x86/include/asm/sgx.h).
package enum SECINFO {
    package static let permissionMask: UInt64 = 0x7
    package static let pageTypeMask: UInt64 = 0xFF00
    package static let reservedMask: UInt64 = ~(permissionMask | pageTypeMask)
    package static let tcs: UInt64 = UInt64(EPCPageType.tcs.rawValue) << 8
    package static let reg: UInt64 = UInt64(EPCPageType.reg.rawValue) << 8
}

extension Kernel {
    /// ioctl(2) on an fd of /dev/sgx_enclave: 0 (or the ADD_PAGES error of the first failing page),
    /// EBADF for a closed fd, ENOTTY for another file or an unknown request.
    package func sgxIoctl(_ task: TaskStruct, fd: Int32, _ request: SGXIoctlRequest) -> Result<Void, Errno> {
        machine.clock.charge(.syscall)
        guard task.files.fds[fd] != nil else { return .failure(.EBADF) }
        guard let d = sgx else { return .failure(.ENOTTY) }
        d.changed()
        let encl: SGXEnclave
        switch d.enclave(task, fd: fd) {
        case .failure(let e): return .failure(e)
        case .success(let e): encl = e
        }
        defer { d.runKsgxdIfWoken() }
        switch request {
        case .create(let size, let base, let attributes): return d.create(encl, size: size, base: base, attributes: attributes)
        case .addPages(let src, let offset, let length, let secinfo, let flags):
            return d.addPages(task, encl, src: src, offset: offset, length: length, secinfo: secinfo, flags: flags)
        case .initialize: return d.initialize(encl)
        case .provision: return .failure(.EINVAL)
        case .sgx2: return .failure(.ENODEV)
        case .other: return .failure(.ENOTTY)
        }
    }
}

extension SGXDriver {
    // MARK: VA pages

    /// sgx_encl_grow(): a new VA page every 512 pages of the enclave (page_cnt), else none.
    func grow(_ encl: SGXEnclave, reclaim: Bool) -> Result<SGXVAPage?, Errno> {
        var va: SGXVAPage?
        if encl.pageCount % SGXVAPage.slotCount == 0 {
            let p: EPCPage
            switch allocEPCPage(.va(encl), reclaim: reclaim) {
            case .failure(let e): return .failure(e)
            case .success(let x): p = x
            }
            guard unit.epa(p) == .success else {
                freeEPCPage(p)
                return .failure(.EFAULT)
            }
            va = SGXVAPage(epc: p)
        }
        encl.pageCount += 1
        return .success(va)
    }

    /// sgx_encl_shrink().
    func shrink(_ encl: SGXEnclave, _ va: SGXVAPage?) {
        encl.pageCount -= 1
        if let va {
            enclFreeEPCPage(va.epc)
            encl.vaPages.removeAll { $0 === va }
        }
    }

    // MARK: CREATE

    func create(_ encl: SGXEnclave, size: UInt64, base: UInt64, attributes: UInt64) -> Result<Void, Errno> {
        if encl.created { return .failure(.EINVAL) }
        if size == 0 || size & (size &- 1) != 0 { return .failure(.EINVAL) }
        let va: SGXVAPage?
        switch grow(encl, reclaim: true) {
        case .failure(let e): return .failure(e)
        case .success(let v): va = v
        }
        if let va { encl.vaPages.insert(va, at: 0) }
        let secsPage: EPCPage
        switch allocEPCPage(.secs(encl), reclaim: true) {
        case .failure(let e):
            shrink(encl, va)
            return .failure(e)
        case .success(let p): secsPage = p
        }
        switch unit.ecreate(secsPage, base: base, size: size, attributes: attributes) {
        case .failure:
            freeEPCPage(secsPage)
            shrink(encl, va)
            return .failure(.EIO)
        case .success(let eid):
            encl.eid = eid
        }
        encl.base = base
        encl.size = size
        encl.attributes = attributes
        encl.debug = attributes & 0x2 != 0
        encl.secs = SGXEnclavePage(enclave: encl, linear: base &+ size, maxProt: [], type: .secs)
        encl.secs.epc = secsPage
        encl.created = true
        return .success(())
    }

    // MARK: ADD_PAGES

    func addPages(_ task: TaskStruct, _ encl: SGXEnclave, src: VirtAddr?, offset: UInt64, length: UInt64,
                  secinfo: UInt64, flags: UInt64) -> Result<Void, Errno> {
        if !encl.created || encl.initialized { return .failure(.EINVAL) }
        if let s = src, !s.isPageAligned { return .failure(.EINVAL) }
        // sgx_validate_offset_length()
        if offset & UInt64(pageSize - 1) != 0 || length == 0 || length & UInt64(pageSize - 1) != 0 { return .failure(.EINVAL) }
        if offset &+ length < offset { return .failure(.EINVAL) }
        if offset &+ length &- UInt64(pageSize) >= encl.size { return .failure(.EINVAL) }
        // sgx_validate_secinfo()
        let perm = secinfo & SECINFO.permissionMask
        let pt = secinfo & SECINFO.pageTypeMask
        if pt != SECINFO.reg && pt != SECINFO.tcs { return .failure(.EINVAL) }
        if perm & 0x2 != 0 && perm & 0x1 == 0 { return .failure(.EINVAL) }
        if pt == SECINFO.tcs && perm != 0 { return .failure(.EINVAL) }
        if secinfo & SECINFO.reservedMask != 0 { return .failure(.EINVAL) }
        var c: UInt64 = 0
        while c < length {
            if let e = addPage(task, encl, src: src.map { $0.advanced(by: c) }, offset: offset &+ c,
                               secinfo: secinfo, measure: flags & 0x1 != 0) {
                return .failure(e)
            }
            c &+= UInt64(pageSize)
        }
        return .success(())
    }

    /// sgx_encl_add_page() for one page.
    func addPage(_ task: TaskStruct, _ encl: SGXEnclave, src: VirtAddr?, offset: UInt64, secinfo: UInt64, measure: Bool) -> Errno? {
        // sgx_encl_page_alloc(): the page's maximum rights from its SECINFO (a TCS is always RW).
        var maxProt: VMFlags = []
        if secinfo & 0x1 != 0 { maxProt.insert(.read) }
        if secinfo & 0x2 != 0 { maxProt.insert(.write) }
        if secinfo & 0x4 != 0 { maxProt.insert(.exec) }
        let type: EPCPageType = secinfo & SECINFO.pageTypeMask == SECINFO.tcs ? .tcs : .reg
        if type == .tcs { maxProt.formUnion([.read, .write]) }
        let page = SGXEnclavePage(enclave: encl, linear: encl.base &+ offset, maxProt: maxProt, type: type)
        let epcPage: EPCPage
        switch allocEPCPage(.page(page), reclaim: true) {
        case .failure(let e): return e
        case .success(let p): epcPage = p
        }
        let va: SGXVAPage?
        switch grow(encl, reclaim: true) {
        case .failure(let e):
            enclFreeEPCPage(epcPage)
            return e
        case .success(let v): va = v
        }
        if let va { encl.vaPages.insert(va, at: 0) }
        let vpn = page.linear >> pageShift
        if encl.pages[vpn] != nil {                          // xa_insert: -EBUSY
            shrink(encl, va)
            enclFreeEPCPage(epcPage)
            return .EBUSY
        }
        encl.pages[vpn] = page
        func unwind(_ e: Errno) -> Errno {
            encl.pages[vpn] = nil
            shrink(encl, va)
            enclFreeEPCPage(epcPage)
            return e
        }
        // __sgx_encl_add_page(): the source page must be mapped and not noexec.
        var contents = [UInt8](repeating: 0, count: pageSize)
        if let s = src {
            guard let v = task.mm.findVMA(s), v.vmStart <= s else { return unwind(.EFAULT) }
            if !v.vmFlags.contains(.mayExec) { return unwind(.EACCES) }
            guard let bytes = kernel.gupReadPage(task, s) else { return unwind(.EFAULT) }
            contents = bytes
        }
        guard let eid = encl.eid,
              unit.eadd(epcPage, eid: eid, linear: page.linear, type: type,
                        permissions: EPCMPermissions(rawValue: UInt8(secinfo & SECINFO.permissionMask)),
                        contents: contents) == .success else { return unwind(.EIO) }
        page.epc = epcPage
        encl.secsChildCount += 1
        if measure {
            for _ in 0..<(pageSize / 256) where unit.eextend(eid, epcPage) != .success {
                return unwind(.EIO)
            }
        }
        markReclaimable(epcPage)
        return nil
    }

    // MARK: INIT

    func initialize(_ encl: SGXEnclave) -> Result<Void, Errno> {
        if !encl.created || encl.initialized { return .failure(.EINVAL) }
        if encl.attributes & ~encl.attributesMask != 0 { return .failure(.EACCES) }
        // (The SECS is written back only after INIT, so it is in the EPC here.)
        guard let eid = encl.eid, unit.einit(eid) == .success else { return .failure(.EIO) }
        encl.initialized = true
        return .success(())
    }
}

extension Kernel {
    /// get_user_pages(src, 1, 0) + kmap for EADD's source: the page's bytes as the kernel reads them
    /// through the page's KeyID, nil (EFAULT) when it cannot be had (no VMA, no read right, a raw PFN).
    func gupReadPage(_ task: TaskStruct, _ addr: VirtAddr) -> [UInt8]? {
        guard let e = gupFaultIn(task, addr, write: false), !e.isSpecial || isZeroPFN(e.pfn(layout)) else { return nil }
        return machine.read(e.pfn(layout).physAddr, keyid: e.keyid(layout), count: pageSize)
    }
}
