// The host side of TDX and SEV-SNP (cvm/): tdx_enable (TDMRs, PAMT from the allocator, the
// global KeyID after a WBINVD once per package), KVM's TD lifecycle (KeyID pool, misc cgroup,
// removal order, teardown order, leaks on failure), SEV ASID ranges and lazy recycling, the RMP
// and the direct map, COHERENCY_SFW_NO (docs/tdx-sev.md).
import Testing
import KeyMMBase
import KeyMMHardware
@testable import KeyMMKernel

private func tdxKernel(memory: ByteCount = .mib(128), packages: Int = 1, tdxKeyIDs: Int = 3, keyidBits: Int = 3,
                       bugs: InjectedBugs = []) throws -> Kernel {
    var mc = MachineConfig()
    mc.memory = memory
    mc.keyidBits = keyidBits
    mc.tdxKeyIDs = tdxKeyIDs
    mc.cacheSize = .mib(1)
    mc.packages = packages
    var kc = KernelConfig()
    kc.bugs = bugs
    return try Kernel(machine: Machine(config: mc), config: kc)
}

private func sevKernel(flush: SEVASIDFlush = .lazy, sfwNo: Bool = false, asids: Int = 6, min: Int = 4) throws -> Kernel {
    var mc = MachineConfig()
    mc.memory = .mib(128)
    mc.cacheSize = .mib(1)
    mc.encryption = .sme
    mc.sevASIDs = asids
    mc.minSEVASID = min
    mc.coherencySFWNo = sfwNo
    var kc = KernelConfig()
    kc.cvm.sevASIDFlush = flush
    return try Kernel(machine: Machine(config: mc), config: kc)
}

private func ok<T>(_ r: Result<T, Errno>) throws -> T {
    switch r {
    case .success(let v): return v
    case .failure(let e): Issue.record("unexpected \(e)"); throw e
    }
}

private func err<T>(_ r: Result<T, Errno>) -> Errno? {
    if case .failure(let e) = r { return e }
    return nil
}

@Suite struct TDXHostTests {
    @Test func tdxNeedsTwoTDXKeyIDs() throws {
        #expect(err(try tdxKernel(tdxKeyIDs: 1).tdxEnable()) == .ENODEV)
        #expect(err(try tdxKernel(tdxKeyIDs: 0).tdxEnable()) == .ENODEV)
        let k = try tdxKernel()
        #expect(k.cvm.tdxGuestKeyIDs == 6...7)
        #expect(err(k.tdxTDInit()) == .ENODEV)   // before tdx_enable
    }

    // One TDMR per memory region, 1 GiB aligned; PAMT = 16 bytes per 4K, 2M and 1G page of it,
    // each rounded up to 4 KiB: 128 MiB -> [0, 1G): 1024 + 2 + 1 pages; 2 GiB -> [0, 2G): 2048 + 4 + 1.
    @Test(arguments: [(ByteCount.mib(128), 1027), (ByteCount.gib(2), 2053)])
    func pamtPerTDMRComesFromTheAllocator(_ memory: ByteCount, _ pages: Int) throws {
        let k = try tdxKernel(memory: memory)
        let free = k.allocator.freeFrames
        try ok(k.tdxEnable())
        // 16 bytes per 4K, 2M and 1G page of each 1 GiB TDMR, each rounded up to 4 KiB.
        #expect(k.cvm.pamtFrames.count == pages)
        #expect(free - k.allocator.freeFrames == pages)
        #expect(k.machine.clock.value(of: .pamtPages) == UInt64(pages))
        let module = try #require(k.machine.tdx)
        #expect(module.tdmrs.count == 1)
        for f in k.cvm.pamtFrames { #expect(module.pageType(f) == .rsvd) }
        try ok(k.tdxEnable())   // once
        #expect(k.cvm.pamtFrames.count == pages)
    }

    @Test(arguments: [1, 2, 4])
    func globalKeyAfterWBINVDOncePerPackage(_ packages: Int) throws {
        let k = try tdxKernel(packages: packages)
        let clock = k.machine.clock
        try ok(k.tdxEnable())
        // One WBINVD per package before TDH.SYS.KEY.CONFIG, one key program per package.
        #expect(clock.count(of: .wbinvd) == UInt64(packages))
        #expect(clock.count(of: .pconfig) == UInt64(packages))
        #expect(k.machine.keyTable.state(of: KeyID(5)) == .keyed)
        // A TD: its key once per package; teardown writes back every package's caches.
        let h = try ok(k.tdxTDInit())
        #expect(clock.count(of: .pconfig) == UInt64(2 * packages))
        let wb = clock.count(of: .wbinvd)
        try ok(k.tdxTDDestroy(h))
        #expect(clock.count(of: .wbinvd) - wb == UInt64(packages))
    }

    @Test func enableFailureFreesThePAMTAndSticks() throws {
        let k = try tdxKernel()
        let free = k.allocator.freeFrames
        k.machine.tdx?.inject(.sysTdmrInit, .operandInvalid)
        #expect(err(k.tdxEnable()) == .EIO)
        #expect(k.allocator.freeFrames == free)
        #expect(err(k.tdxEnable()) == .EINVAL)
    }

    @Test func tdKeyIDsAreChargedAndComeBackOnlyAfterFreeID() throws {
        let k = try tdxKernel()
        try ok(k.tdxEnable())
        let a = try ok(k.tdxTDInit()), b = try ok(k.tdxTDInit())
        #expect(k.cvm.vm(a)?.hkid == KeyID(6) && k.cvm.vm(b)?.hkid == KeyID(7))
        #expect(k.cvm.miscCgroup.usage[.tdx] == 2)
        #expect(err(k.tdxTDInit()) == .ENOSPC)
        try ok(k.tdxTDDestroy(a))
        #expect(k.cvm.miscCgroup.usage[.tdx] == 1)
        #expect(k.machine.keyTable.state(of: KeyID(6)) == .cleared)
        let c = try ok(k.tdxTDInit())
        #expect(k.cvm.vm(c)?.hkid == KeyID(6))
        // The cgroup limit: EBUSY, nothing charged, the KeyID back in the pool.
        try ok(k.tdxTDDestroy(c))
        k.miscCgSetMax(.tdx, 1)
        #expect(err(k.tdxTDInit()) == .EBUSY)
        #expect(k.cvm.miscCgroup.events[.tdx] == 1)
        #expect(k.cvm.hkidInUse == [7])
    }

    @Test func privatePagesAndTheirRemoval() throws {
        let k = try tdxKernel()
        try ok(k.tdxEnable())
        let h = try ok(k.tdxTDInit())
        try ok(k.tdxMemPageAdd(h, gpa: 0, npages: 2))
        #expect(err(k.tdxMemPageAug(h, gpa: 0x4000, npages: 1)) == .EOPNOTSUPP)
        try ok(k.tdxFinalizeVM(h))
        #expect(err(k.tdxMemPageAdd(h, gpa: 0x8000, npages: 1)) == .EINVAL)
        try ok(k.tdxMemPageAug(h, gpa: 0x4000, npages: 1))
        #expect(k.guestWrite(h, gpa: 0x4010, Array("hello".utf8)) == .written(5))
        #expect(k.guestRead(h, gpa: 0x4010, count: 5) == .read(Array("hello".utf8)))
        let page = try #require(k.cvm.vm(h)?.privatePages[0x4000])
        let module = try #require(k.machine.tdx)
        #expect(module.pageType(page) == .reg)
        // One SEAMCALL at a time: REMOVE before TRACK fails; the page keeps its TD lines until WBINVD.
        #expect(err(k.tdhMemPageRemove(h, gpa: 0x4000)) == .EIO)
        try ok(k.tdhMemRangeBlock(h, gpa: 0x4000))
        #expect(err(k.tdhMemPageRemove(h, gpa: 0x4000)) == .EIO)
        try ok(k.tdhMemTrack(h))
        try ok(k.tdhMemPageRemove(h, gpa: 0x4000))
        // No new page at the GPA while its old one is half removed (found by keymm fuzz --mode tdx).
        #expect(err(k.tdxMemPageAug(h, gpa: 0x4000, npages: 1)) == .EBUSY)
        #expect(module.pageType(page) == .nda)
        #expect(k.machine.cache.cachedLines(of: page).contains { $0.keyid == KeyID(6) })
        #expect(err(k.tdxClearRemovedPage(h, gpa: 0x4000)) == .EBUSY)   // not before the write-back
        try ok(k.tdhPhymemPageWbinvd(h, gpa: 0x4000))
        #expect(!k.machine.cache.cachedLines(of: page).contains { $0.keyid == KeyID(6) })
        #expect(k.machine.integrity?.state(of: page).tdOwned != 0)
        try ok(k.tdxClearRemovedPage(h, gpa: 0x4000))
        #expect(k.machine.integrity?.state(of: page).tdOwned == 0)
        #expect(k.allocator.refcount(page) == 0)
        try ok(k.tdxTDDestroy(h))
        #expect(module.ownedFrameCount == k.cvm.pamtFrames.count)
    }

    @Test func failedFreeIDLeaksTheKeyIDAndTheTD() throws {
        let k = try tdxKernel()
        try ok(k.tdxEnable())
        let h = try ok(k.tdxTDInit())
        k.machine.tdx?.inject(.mngKeyFreeid, .operandBusy)
        let held = k.allocator.freeFrames
        #expect(err(k.tdxTDDestroy(h)) == .EIO)
        #expect(k.cvm.leakedKeyIDs == [KeyID(6)])
        #expect(k.cvm.hkidInUse.contains(6))
        #expect(k.machine.clock.value(of: .tdxKeyIDLeaks) == 1)
        #expect(k.allocator.freeFrames == held)   // TDR and TDCS pages leaked, not freed
        let next = try ok(k.tdxTDInit())
        #expect(k.cvm.vm(next)?.hkid == KeyID(7))
        #expect(err(k.tdxTDInit()) == .ENOSPC)
    }

    @Test func failedPageReclaimLeaksThePage() throws {
        let k = try tdxKernel()
        try ok(k.tdxEnable())
        let h = try ok(k.tdxTDInit())
        k.machine.tdx?.inject(.phymemPageReclaim, .operandBusy)
        try ok(k.tdxTDDestroy(h))
        // The first TDCS page and the TDR (reclaimed last, refused while the TD owns a page) leak.
        #expect(k.cvm.leakedFrames.count == 2)
        #expect(k.machine.clock.value(of: .cvmPageLeaks) == 2)
        #expect(k.cvm.hkidInUse.isEmpty)
    }

    @Test func rndNoEntropyIsRetried() throws {
        let k = try tdxKernel()
        try ok(k.tdxEnable())
        for _ in 0..<9 { k.machine.tdx?.inject(.mngCreate, .rndNoEntropy) }
        _ = try ok(k.tdxTDInit())
        for _ in 0..<10 { k.machine.tdx?.inject(.mngCreate, .rndNoEntropy) }
        #expect(err(k.tdxTDInit()) == .EAGAIN)
        #expect(k.cvm.hkidInUse == [6])
    }
}

@Suite struct SEVHostTests {
    @Test func asidRangesAndCgroups() throws {
        let k = try sevKernel()
        let es = try ok(k.sevGuestInit(type: .sevES)), snp = try ok(k.sevGuestInit(type: .snp))
        let sev = try ok(k.sevGuestInit(type: .sev))
        #expect(k.cvm.vm(es)?.asid == 1 && k.cvm.vm(snp)?.asid == 2 && k.cvm.vm(sev)?.asid == 4)
        #expect(k.cvm.miscCgroup.usage[.sevES] == 2 && k.cvm.miscCgroup.usage[.sev] == 1)
        #expect(k.cvm.miscCgroup.capacity[.sevES] == 3 && k.cvm.miscCgroup.capacity[.sev] == 3)
        let none = try sevKernel(min: 1)
        #expect(err(none.sevGuestInit(type: .sevES)) == .ENOTTY)
    }

    @Test func freeingOnlyMarksAndRecyclingIsLazy() throws {
        let k = try sevKernel()
        let clock = k.machine.clock
        var handles: [Int32] = []
        for _ in 0..<3 { handles.append(try ok(k.sevGuestInit(type: .snp))) }
        // All ASIDs in use: the misc cgroup (capacity = the range's ASIDs) refuses first.
        #expect(err(k.sevGuestInit(type: .snp)) == .EBUSY)
        #expect(k.cvm.miscCgroup.events[.sevES] == 1)
        try ok(k.sevVMDestroy(handles[0]))
        try ok(k.sevVMDestroy(handles[1]))
        #expect(k.cvm.asidsToReclaim == [1, 2])
        #expect(k.cvm.miscCgroup.usage[.sevES] == 1)   // the charge is dropped at free
        let wbinvds = clock.count(of: .wbinvd), flushes = clock.value(of: .asidRecycles)
        let a = try ok(k.sevGuestInit(type: .snp))
        #expect(k.cvm.vm(a)?.asid == 1)
        #expect(clock.value(of: .asidRecycles) == flushes + 1)
        #expect(clock.count(of: .wbinvd) == wbinvds + 1)
        #expect(k.cvm.asidsToReclaim.isEmpty)
        let b = try ok(k.sevGuestInit(type: .snp))
        #expect(k.cvm.vm(b)?.asid == 2)
        #expect(clock.value(of: .asidRecycles) == flushes + 1)   // one flush freed both
    }

    @Test func eagerFlushFreesAtOnce() throws {
        let k = try sevKernel(flush: .eager)
        let h = try ok(k.sevGuestInit(type: .snp))
        try ok(k.sevVMDestroy(h))
        #expect(k.cvm.asidsToReclaim.isEmpty && k.cvm.asidsInUse.isEmpty)
        #expect(k.machine.clock.value(of: .asidRecycles) == 1)
    }

    @Test func snpPagesLeaveTheDirectMapAndComeBack() throws {
        let k = try sevKernel()
        let h = try ok(k.sevGuestInit(type: .snp))
        try ok(k.sevLaunchUpdateData(h, gpa: 0, npages: 2))
        let page = try #require(k.cvm.vm(h)?.privatePages[0x1000])
        #expect(k.cvm.isOutOfDirectMap(page))
        #expect(k.machine.sev?.entry(page)?.asid == 1)
        #expect(k.hostWrite(page.physAddr, [1], nonTemporal: false) == .error(.EFAULT))
        #expect(k.hostRead(page.physAddr, count: 4) == .error(.EFAULT))
        #expect(k.guestWrite(h, gpa: 0x1000, Array("guest".utf8)) == .written(5))
        let tag = k.machine.config.asidTag(1)
        #expect(k.machine.cache.cachedLines(of: page).contains { $0.keyid == tag })
        try ok(k.kvmSetMemoryAttributes(h, gpa: 0x1000, npages: 1, toPrivate: false))
        // sev_gmem_invalidate's CLFLUSH (SME_COHERENT) wrote the guest's line back before the free.
        #expect(!k.machine.cache.cachedLines(of: page).contains { $0.keyid == tag })
        #expect(!k.cvm.isOutOfDirectMap(page))
        #expect(k.machine.sev?.isAssigned(page) == false)
        try ok(k.sevVMDestroy(h))
        #expect(k.cvm.directMapHoleFrames.isEmpty)
        #expect(k.machine.sev?.assignedFrames.isEmpty == true)
    }

    @Test func a2MEntryIsSmashedForA4KChange() throws {
        let k = try sevKernel()
        let h = try ok(k.sevGuestInit(type: .snp))
        try ok(k.sevLaunchUpdateData(h, gpa: 0x200000, npages: 512))
        let head = try #require(k.cvm.vm(h)?.privatePages[0x200000])
        #expect(k.machine.sev?.entry(head)?.level == .m2)
        let updates = k.machine.clock.count(of: .rmpUpdate)
        try ok(k.kvmSetMemoryAttributes(h, gpa: 0x201000, npages: 1, toPrivate: false))
        #expect(k.machine.sev?.entry(head)?.level == .k4)
        #expect(k.machine.clock.count(of: .rmpUpdate) == updates + 2)   // PSMASH + RMPUPDATE
        try ok(k.sevVMDestroy(h))
    }

    @Test func failedReclaimLeaksThePageForGood() throws {
        let k = try sevKernel()
        let h = try ok(k.sevGuestInit(type: .snp))
        let ctx = try #require(k.cvm.vm(h)?.contextPage)
        k.machine.sev?.inject(.pageReclaim, .invalidPageState)
        #expect(err(k.sevVMDestroy(h)) == .EIO)
        #expect(k.cvm.leakedFrames == [ctx])
        #expect(k.allocator.refcount(ctx) == 1)
        #expect(k.machine.sev?.isAssigned(ctx) == true)
    }

    @Test(arguments: [false, true])
    func coherencySFWNoDecidesWhoEvicts(_ sfwNo: Bool) throws {
        let k = try sevKernel(sfwNo: sfwNo)
        let h = try ok(k.sevGuestInit(type: .snp))
        let flushed = k.machine.clock.count(of: .clflushLine)
        try ok(k.sevLaunchUpdateData(h, gpa: 0, npages: 4))
        // Without COHERENCY_SFW_NO the kernel CLFLUSHes each page through both host tags.
        #expect(k.machine.clock.count(of: .clflushLine) - flushed == (sfwNo ? 0 : 4 * 2 * 64))
        for (_, f) in k.cvm.vm(h)!.privatePages {
            #expect(!k.machine.cache.cachedLines(of: f).contains { $0.keyid.rawValue <= 1 })
        }
    }
}
