// The kernel-wide state of confidential VMs on the host: the TDX host side (module status, the
// guest-KeyID pool, PAMT), KVM's TDs and SEV guests (one VM handle namespace), SEV's ASID
// bitmaps, the host direct map's holes for SNP-private pages, the misc cgroup, and what failed
// steps leaked. The mechanisms live in TDXHost.swift, KVMTDX.swift, KVMSEV.swift, SNPHost.swift
// and CVMAccess.swift; docs/tdx-sev.md describes the model and its limits.
//
// Invariants: a guest KeyID is in `hkidInUse` from tdx_guest_keyid_alloc until
// tdx_guest_keyid_free (after TDH.MNG.KEY.FREEID) or forever when leaked; an ASID is set in
// `asidBitmap` from sev_asid_new until recycling (with `reclaimBitmap` set between its free and
// the recycle); every frame a VM or the TDX module holds is in `heldFrames()`; nothing is
// iterated in Dictionary order where it could reach results (handles ascending).
import KeyMMBase
import KeyMMHardware

/// How KVM recycles freed SEV ASIDs (a bench knob; KVM's is `lazy`).
package enum SEVASIDFlush: String, Sendable, CaseIterable {
    /// sev_asid_free() only marks the ASID for reclaim; WBINVD + DF_FLUSH run when allocation
    /// finds no free ASID (merged KVM).
    case lazy
    /// Every sev_asid_free() flushes (WBINVD on every CPU + DF_FLUSH) and frees the ASID at once.
    case eager
}

/// The kernel configuration of the confidential-VM host paths.
package struct CVMConfig: Sendable {
    package var sevASIDFlush: SEVASIDFlush = .lazy
    package init() {}
}

/// A confidential VM's type (KVM_X86_*_VM).
package enum CVMType: Int, Sendable, CustomStringConvertible {
    case sev = 2, sevES = 3, snp = 4, tdx = 5
    package var description: String {
        switch self {
        case .sev: "KVM_X86_SEV_VM"
        case .sevES: "KVM_X86_SEV_ES_VM"
        case .snp: "KVM_X86_SNP_VM"
        case .tdx: "KVM_X86_TDX_VM"
        }
    }
}

/// What the host did with keys and ASIDs, for observers (the invariant checker).
package enum CVMEvent: Sendable, Hashable {
    /// KVM returned a TDX guest KeyID to its pool (tdx_guest_keyid_free).
    case keyIDReturned(KeyID)
    /// KVM moved reclaimed ASIDs back to the free bitmap (recycling).
    case asidsRecycled([Int])
}

/// TDX module status as the host tracks it (tdx_module_status_t).
package enum TDXModuleStatus: String, Sendable {
    case uninitialized, initialized, error
}

/// One confidential VM (a TD or an SEV guest) and the pages KVM holds for it.
package final class ConfidentialVM {
    package let handle: Int32
    package let type: CVMType
    // TDX
    package internal(set) var hkid: KeyID?
    package internal(set) var tdr: PFN?
    /// TDCS pages added to the TD (TDH.MNG.ADDCX succeeded).
    package internal(set) var tdcs: [PFN] = []
    package internal(set) var finalized = false
    /// TDH.MNG.KEY.FREEID failed: the KeyID (and every page of the TD) is leaked.
    package internal(set) var hkidLeaked = false
    /// The KeyID went back to KVM's pool.
    package internal(set) var hkidReleased = false
    // SEV
    package internal(set) var asid: Int?
    /// SNP guest context (a firmware page).
    package internal(set) var contextPage: PFN?
    /// The misc cgroup resource charged for this VM's key index.
    var charged: MiscResource?
    // Memory
    /// Private pages by GPA (TD private pages, SEV guest pages, SNP assigned pages).
    package internal(set) var privatePages: [UInt64: PFN] = [:]
    /// Shared pages by GPA (host pages the guest accesses with the host's KeyID / C-bit clear).
    package internal(set) var sharedPages: [UInt64: PFN] = [:]
    /// TD pages removed (TDH.MEM.PAGE.REMOVE) and not yet cleared: GPA -> (frame, written back).
    package internal(set) var removedPages: [UInt64: (pfn: PFN, writtenBack: Bool)] = [:]
    /// The VM is destroyed (its handle stays for reports).
    package internal(set) var destroyed = false

    init(handle: Int32, type: CVMType) {
        self.handle = handle
        self.type = type
    }

    /// The cache tag (KeyID or ASID tag) the guest's private accesses use.
    func privateTag(_ config: MachineConfig) -> KeyID? {
        if let hkid { return hkid }
        if let asid { return config.asidTag(asid) }
        return nil
    }
}

/// The confidential-VM host state of one kernel.
package final class ConfidentialVMs {
    package let config: CVMConfig
    // TDX host (arch/x86/virt/vmx/tdx)
    package internal(set) var tdxStatus: TDXModuleStatus = .uninitialized
    /// Guest KeyIDs (the TDX KeyIDs after the global one), nil when TDX cannot be enabled.
    package internal(set) var tdxGuestKeyIDs: ClosedRange<UInt16>?
    /// Guest KeyIDs allocated from KVM's pool (the IDA).
    package internal(set) var hkidInUse: Set<UInt16> = []
    /// PAMT blocks (head, order) the allocator gave tdx_enable.
    var pamtBlocks: [(PFN, PageOrder)] = []
    // SEV (arch/x86/kvm/svm/sev.c)
    var asidBitmap: [Bool]
    var reclaimBitmap: [Bool]
    package let minSEVASID: Int
    package let maxSEVASID: Int
    // VMs
    var vms: [Int32: ConfidentialVM] = [:]
    var nextHandle: Int32 = 1
    /// Frames removed from the host's direct map (set_direct_map_invalid_noflush).
    var directMapHoles: Set<UInt64> = []
    /// The misc cgroup every task of the model runs in.
    package internal(set) var miscCgroup = MiscCgroup()
    /// Pages leaked for good (failed reclaims), and KeyIDs leaked (failed FREEID).
    package internal(set) var leakedFrames: [PFN] = []
    package internal(set) var leakedKeyIDs: [KeyID] = []
    /// Called when KVM hands a KeyID or ASIDs back (nil: none).
    package var observer: ((CVMEvent) -> Void)?

    init(machine: MachineConfig, config: CVMConfig) {
        self.config = config
        maxSEVASID = machine.sevASIDs
        minSEVASID = machine.minSEVASID
        asidBitmap = Array(repeating: false, count: machine.sevASIDs + 1)
        reclaimBitmap = Array(repeating: false, count: machine.sevASIDs + 1)
        // tdx_init(): IA32_MKTME_KEYID_PARTITIONING; at least two TDX KeyIDs, the first is global.
        let part = machine.keyidPartitioning
        let nrMKTME = UInt32(truncatingIfNeeded: part), nrTDX = UInt32(truncatingIfNeeded: part >> 32)
        if nrTDX >= 2 {
            let start = UInt16(nrMKTME + 1)
            tdxGuestKeyIDs = (start + 1)...(start + UInt16(nrTDX) - 1)
        }
        if machine.sevASIDs > 0 {
            // sev_hardware_setup(): capacities of the misc cgroup resources.
            miscCgroup.setCapacity(.sev, max(0, machine.sevASIDs - machine.minSEVASID + 1))
            miscCgroup.setCapacity(.sevES, machine.minSEVASID - 1)
        }
        if let g = tdxGuestKeyIDs { miscCgroup.setCapacity(.tdx, g.count) }
    }

    /// The VM with this handle (destroyed ones included), nil if unknown.
    package func vm(_ handle: Int32) -> ConfidentialVM? { vms[handle] }
    /// Live VMs, by handle.
    package var liveVMs: [ConfidentialVM] { vms.keys.sorted().compactMap { vms[$0] }.filter { !$0.destroyed } }
    /// Every VM ever created, by handle.
    package var allVMs: [ConfidentialVM] { vms.keys.sorted().compactMap { vms[$0] } }
    /// Whether a frame is absent from the host's direct map.
    package func isOutOfDirectMap(_ pfn: PFN) -> Bool { directMapHoles.contains(pfn.rawValue) }
    /// Frames absent from the direct map, ascending.
    package var directMapHoleFrames: [PFN] { directMapHoles.sorted().map { PFN($0) } }
    /// PAMT frames tdx_enable allocated.
    package var pamtFrames: [PFN] { pamtBlocks.flatMap { b in (0..<b.1.pages).map { b.0.advanced(by: $0) } } }
    /// ASIDs allocated (the bitmap), ascending.
    package var asidsInUse: [Int] { (1..<max(asidBitmap.count, 1)).filter { asidBitmap[$0] } }
    /// ASIDs freed and waiting for recycling.
    package var asidsToReclaim: [Int] { (1..<max(reclaimBitmap.count, 1)).filter { reclaimBitmap[$0] } }

    /// Every frame a VM, the TDX host or a leak holds (so it is not a host page), with why.
    package func heldFrames() -> [UInt64: String] {
        var out: [UInt64: String] = [:]
        for f in pamtFrames { out[f.rawValue] = "PAMT" }
        for f in leakedFrames { out[f.rawValue] = "leaked" }
        for vm in vms.keys.sorted().compactMap({ vms[$0] }) {
            let who = "VM \(vm.handle) (\(vm.type))"
            if let t = vm.tdr { out[t.rawValue] = who + " TDR" }
            for f in vm.tdcs { out[f.rawValue] = who + " TDCS" }
            if let c = vm.contextPage { out[c.rawValue] = who + " context page" }
            for (g, f) in vm.privatePages { out[f.rawValue] = who + " private GPA 0x" + String(g, radix: 16) }
            for (g, f) in vm.sharedPages { out[f.rawValue] = who + " shared GPA 0x" + String(g, radix: 16) }
            for (g, r) in vm.removedPages { out[r.pfn.rawValue] = who + " removed GPA 0x" + String(g, radix: 16) }
        }
        return out
    }

    func newHandle(_ want: Int32?) -> Int32 {
        if let w = want, w > 0, vms[w] == nil {
            nextHandle = max(nextHandle, w &+ 1)
            return w
        }
        while vms[nextHandle] != nil { nextHandle &+= 1 }
        let h = nextHandle
        nextHandle &+= 1
        return h
    }
}
