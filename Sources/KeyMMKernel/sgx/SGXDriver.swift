// The SGX driver (arch/x86/kernel/cpu/sgx: main.c's sgx_init, driver.c's /dev/sgx_enclave file
// operations): the EPC sections handed to the EPC allocator at boot, the misc device node, one
// enclave per open file description, and the driver's state the checker reads. The two mm-tracking
// designs of seed 004 are in EnclaveMMList.swift, ioctls in EnclaveIoctl.swift, the mapping side in
// EnclaveVMA.swift, ksgxd in Reclaimer.swift. docs/sources.md, "SGX driver"; docs/sgx.md.
//
// Invariants: `enclaves` holds every enclave not yet freed, keyed by its open file description;
// an enclave is freed exactly once, when its kref reaches zero; every WARN the real driver would
// print (EPC leaks, a non-empty mm_list at free, a refused reload, a walker on a freed encl_mm) is
// recorded in `anomalies` with the invariant it breaks, for the checker.
import KeyMMBase
import KeyMMHardware

/// What a driver anomaly breaks (the checker reports each under the matching invariant).
package enum SGXAnomalyKind: Sendable {
    case mmList, srcuUseAfterFree, epcAccounting, enclaveContents
}

/// One anomaly: kind and detail.
package struct SGXAnomaly: Sendable {
    package var kind: SGXAnomalyKind
    package var detail: String
}

/// The SGX driver.
package final class SGXDriver: CharDeviceOps {
    unowned let kernel: Kernel
    package let unit: SGXUnit
    package let tracking: SGXMMTracking
    package let vmaFlags: SGXVMAFlags
    package var epc: EPCState { didSet { version &+= 1 } }
    /// Every enclave not yet freed, by open file description.
    package internal(set) var enclaves: [UInt64: SGXEnclave] = [:] { didSet { version &+= 1 } }
    package private(set) var anomalies: [SGXAnomaly] = []
    /// Bumped on every change of the state the checker's structural SGX checks read (the EPC
    /// state, the enclave table, the mm_lists and their encl_mms, the anomalies): a checker skips
    /// those checks across calls that leave it unchanged (and no VMA or mm changed).
    package private(set) var version: UInt64 = 0
    func changed() { version &+= 1 }
    /// ksgxd was woken (fewer than SGX_NR_LOW_PAGES free); it runs when the current entry ends.
    var ksgxdWoken = false
    /// Held walkers (`sgx_walk_begin`), by handle.
    var walks: [Int32: SGXHeldWalk] = [:]
    var nextWalk: Int32 = 1
    /// Statistics (the bench): ksgxd passes, reclaimer batches, pages written back, encl_mm visits by
    /// reclaim walks.
    package var ksgxdPasses = 0
    package var reclaimBatches = 0
    package var pagesWrittenBack = 0
    package var reclaimMMVisits = 0
    /// Objects that may sit in reference cycles the model breaks only when they are freed (an
    /// encl_mm and its notifier, an enclave and its list, vm_ops and pending SRCU work): what
    /// `deinit` breaks when the kernel goes away first (the end of a fuzz episode). Every enclave
    /// ever opened stays here until its release found no SRCU work pending.
    var unfreedEnclMMs: [ObjectIdentifier: SGXEnclMM] = [:]
    var unreleasedEnclaves: [ObjectIdentifier: SGXEnclave] = [:]
    /// Lifetimes of freed encl_mms (modeled cycles from allocation to free), for the bench.
    package var enclMMLifetimes: [UInt64] = []

    /// The node's inode number in devtmpfs (fixed: the model's regular files start at 1000).
    package static let deviceInode: UInt64 = 405
    package static let devicePath = "/dev/sgx_enclave"

    init(kernel: Kernel, unit: SGXUnit) {
        self.kernel = kernel
        self.unit = unit
        tracking = kernel.config.sgxMMTracking
        vmaFlags = kernel.config.sgxVMAFlags
        epc = EPCState(pages: unit.pageCount)
    }

    /// The kernel goes away (the end of a fuzz episode, a test, a bench run): cycles the model
    /// breaks only when objects are freed are broken here for whatever is still live, so the
    /// kernel's mms, page tables and machine are deallocated.
    func breakReferenceCycles() {
        for e in unfreedEnclMMs.values {
            e.notifier?.breakCycles()
            e.notifier = nil
            e.next = nil
        }
        for encl in unreleasedEnclaves.values {
            encl.srcu.discardPending()
            encl.mmHead = nil
            encl.ops = nil
        }
    }

    func anomaly(_ kind: SGXAnomalyKind, _ detail: String) {
        changed()
        if anomalies.count < 10_000 { anomalies.append(SGXAnomaly(kind: kind, detail: detail)) }
    }

    var clock: CostClock { kernel.machine.clock }
    var now: UInt64 { clock.cycles }

    // MARK: file operations (driver.c)

    /// sgx_open(): a new enclave for this open file description.
    package func open(_ kernel: Kernel, _ task: TaskStruct, openID: UInt64) -> Errno? {
        let encl = SGXEnclave(openID: openID)
        encl.ops = SGXVMOps(driver: self, enclave: encl)
        enclaves[openID] = encl
        unreleasedEnclaves[ObjectIdentifier(encl)] = encl
        return nil
    }

    /// sgx_release(): the description's last fd and VMA are gone. The merged driver drains mm_list
    /// (mms that closed the enclave but have not exited); the 2019 driver found it empty (every VMA
    /// had dropped its reference). Then the file's enclave reference goes.
    package func release(_ kernel: Kernel, openID: UInt64) {
        guard let encl = enclaves[openID] else { return }
        if tracking == .notifier { drainMMList(encl) }
        enclPut(encl)
    }

    /// sgx_get_unmapped_area(): MAP_PRIVATE is refused, MAP_FIXED taken as given.
    package func getUnmappedArea(_ kernel: Kernel, _ mm: MM, addr: VirtAddr, length: UInt64, pgoff: UInt64,
                                 flags: MapFlags) -> Result<VirtAddr, Errno>? {
        if flags.mapType == MapFlags.private.rawValue { return .failure(.EINVAL) }
        if flags.contains(.fixed) { return .success(addr) }
        return kernel.archGetUnmappedAreaTopdown(mm, addr, length, flags)
    }

    /// sgx_mmap()'s check: sgx_encl_may_map().
    package func mmapCheck(_ kernel: Kernel, _ task: TaskStruct, openID: UInt64, start: VirtAddr, end: VirtAddr,
                           flags: VMFlags) -> Errno? {
        guard let encl = enclaves[openID] else { return .EINVAL }
        return mayMap(encl, start, end, flags)
    }

    /// sgx_mmap() on a new VMA: the mm joins mm_list (or the VMA takes its reference), the VMA gets
    /// sgx_vm_ops and, as merged, VM_PFNMAP | VM_DONTEXPAND | VM_DONTDUMP | VM_IO.
    package func mmap(_ kernel: Kernel, _ task: TaskStruct, openID: UInt64, vma: VMA) -> Errno? {
        guard let encl = enclaves[openID] else { return .EINVAL }
        switch tracking {
        case .notifier:
            if let e = enclMMAdd(encl, task.mm) { return e }
        case .vmaRefcount:
            vmaReference(encl, task.mm)
        }
        vma.vmOps = encl.ops
        if vmaFlags == .special { vma.vmFlags.formUnion([.pfnMap, .dontExpand, .dontDump, .io]) }
        return nil
    }

    // MARK: enclave lifetime

    /// kref_put(&encl->refcount, sgx_encl_release).
    func enclPut(_ encl: SGXEnclave) {
        encl.refcount -= 1
        if encl.refcount == 0 { enclRelease(encl) }
        if encl.refcount < 0 { anomaly(.epcAccounting, "enclave of description \(encl.openID): reference count below zero") }
    }

    /// sgx_encl_release(): frees the enclave's EPC pages (not those a reclaimer batch holds), the
    /// SECS when it has no child left, the VA pages and the backing storage.
    func enclRelease(_ encl: SGXEnclave) {
        for vpn in encl.pages.keys.sorted() {
            let page = encl.pages[vpn]!
            if let p = page.epc {
                if unmarkReclaimable(p) != nil { continue }
                enclFreeEPCPage(p)
                encl.secsChildCount -= 1
                page.epc = nil
            }
        }
        encl.pages.removeAll()
        if encl.secsChildCount == 0, let s = encl.secs?.epc {
            enclFreeEPCPage(s)
            encl.secs.epc = nil
        }
        for va in encl.vaPages { enclFreeEPCPage(va.epc) }
        encl.vaPages.removeAll()
        for (_, b) in encl.backing.sorted(by: { $0.key < $1.key }) { kernel.allocator.freePages(b.frame, order: .base) }
        encl.backing.removeAll()
        encl.olderSealed.removeAll()
        encl.lastSealed.removeAll()
        encl.srcu.cleanup()
        if encl.mmList.contains(where: { $0.listed }) {
            anomaly(.mmList, "enclave of description \(encl.openID) freed with \(encl.mmList.filter(\.listed).count) entries on its mm_list")
        }
        if encl.secsChildCount != 0 || encl.secs?.epc != nil {
            anomaly(.epcAccounting, "enclave of description \(encl.openID) freed with secs_child_cnt \(encl.secsChildCount): its SECS leaks")
        }
        if let eid = encl.eid { unit.forget(eid) }
        // Nothing of the EPC may still name this enclave (a leaked page is reported, then taken back).
        for i in 0..<epc.pageCount {
            let mine: Bool
            switch epc.owner[i] {
            case .page(let p): mine = p.enclave === encl
            case .secs(let e), .va(let e): mine = e === encl
            default: mine = false
            }
            guard mine else { continue }
            anomaly(.epcAccounting, "\(EPCPage(i)) still belonged to the enclave of description \(encl.openID) when it was freed")
            _ = unit.eremove(EPCPage(i))
            freeEPCPage(EPCPage(i))
        }
        changed()
        encl.freed = true
        encl.mmHead = nil
        encl.ops = nil
        enclaves[encl.openID] = nil
        if encl.srcu.pendingWork == 0 { unreleasedEnclaves[ObjectIdentifier(encl)] = nil }
    }

    /// The enclave an fd of `task` names (EBADF: no such fd; ENOTTY: not /dev/sgx_enclave).
    package func enclave(_ task: TaskStruct, fd: Int32) -> Result<SGXEnclave, Errno> {
        guard let of = task.files.fds[fd] else { return .failure(.EBADF) }
        guard of.file.charDevice === self, let e = enclaves[of.openID] else { return .failure(.ENOTTY) }
        return .success(e)
    }
}

extension Kernel {
    /// Boot: sgx_init() when the machine has an EPC — its pages go to the EPC allocator (never to
    /// the buddy allocator), ksgxd starts, /dev/sgx_enclave appears.
    func sgxInit() {
        guard let unit = machine.sgx else { return }
        unit.elduTrustsSealedVersion = config.bugs.contains(.sgxELDUSkipsVersionCheck)   // seeded bug
        let d = SGXDriver(kernel: self, unit: unit)
        sgx = d
        registerCharDevice(path: SGXDriver.devicePath, inode: SGXDriver.deviceInode, ops: d)
    }

    /// sgx_mm_list(FD): the number of mms on that enclave's mm_list.
    package func sgxMMListCount(_ task: TaskStruct, fd: Int32) -> Result<Int, Errno> {
        guard let d = sgx else { return .failure(.EBADF) }
        return d.enclave(task, fd: fd).map { e in e.mmList.filter(\.listed).count }
    }

    /// sgx_epc_free(): free EPC pages (sgx_nr_free_pages; 0 without an EPC).
    package func sgxEPCFree() -> Int { sgx?.epc.freeCount ?? 0 }

    /// sgx_reclaim(NPAGES): runs the EPC reclaimer now, batch after batch, until NPAGES pages were
    /// written back or a pass over the active list wrote back none; returns the pages written back.
    package func sgxReclaim(_ npages: Int) -> Int {
        guard let d = sgx, npages > 0 else { return 0 }
        var written = 0
        var idle = 0
        while written < npages && d.epc.activeCount > 0 && idle <= d.epc.activeCount / SGXReclaimConstants.nrToScan + 1 {
            let n = d.reclaimPages()
            written += n
            idle = n == 0 ? idle + 1 : 0
        }
        return written
    }
}
