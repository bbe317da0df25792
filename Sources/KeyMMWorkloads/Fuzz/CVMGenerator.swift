// The fuzzer's confidential-VM calls (`keymm fuzz --mode tdx|sev`): TD or SEV-guest lifecycles
// interleaved with the ordinary programs — creation at KeyID/ASID exhaustion, private pages added,
// written, read, converted and removed (also one SEAMCALL step at a time), destruction, host kernel
// paths touching host pages, cgroup limits, and injected firmware/SEAMCALL failures that send the
// kernel down its leak paths. docs/fuzzing.md, "Confidential VMs".
//
// It reads the kernel's state (live VMs, their pages, the TDX module's and the RMP's frames) to aim
// at what exists, and never makes a host access to a page a guest or the module owns (that would
// be the program's bug, not the model's). VM handles are written as recorded results, so deleting
// lines while shrinking never renumbers the rest.
//
// Invariant: the same seed and kernel state give the same next line.
import KeyMMBase
import KeyMMHardware
import KeyMMKernel

/// Which confidential-VM architecture the fuzzer drives.
public enum CVMFuzzMode: String, Sendable, CaseIterable {
    case tdx, sev

    /// The machine the mode needs, on top of the fuzz defaults: TDX: 3 TDX KeyIDs of keyid-bits=3
    /// (the global one and two guest KeyIDs, so TDs run out of KeyIDs); SEV: SME with 6 ASIDs
    /// (SEV-ES/SNP 1...3, SEV 4...6).
    public func apply(to m: inout ModelConfig) {
        switch self {
        case .tdx:
            m.machine.encryption = .mktme
            if m.machine.tdxKeyIDs < 2 { m.machine.tdxKeyIDs = 3 }
        case .sev:
            m.machine.encryption = .sme
            if m.machine.sevASIDs == 0 { m.machine.sevASIDs = 6; m.machine.minSEVASID = 4 }
        }
    }
}

/// Generates the confidential-VM lines of a program.
struct CVMGenerator {
    let mode: CVMFuzzMode
    var rng: SeededGenerator
    var nextHandle: Int32 = 1
    var queue: [String] = []
    let frames: Int

    init(mode: CVMFuzzMode, seed: UInt64, memory: UInt64) {
        self.mode = mode
        rng = SeededGenerator.derived(seed: seed, purpose: 0x4356_4D46)   // "CVMF"
        frames = Int(memory >> UInt64(pageShift))
    }

    mutating func below(_ n: Int) -> Int { n <= 1 ? 0 : Int(rng.next() % UInt64(n)) }
    mutating func chance(_ percent: Int) -> Bool { below(100) < percent }
    mutating func pick<T>(_ a: [T]) -> T? { a.isEmpty ? nil : a[below(a.count)] }
    static func hex(_ v: UInt64) -> String { "0x" + String(v, radix: 16) }

    /// The next confidential-VM line, or nil to let the ordinary generator make this one.
    mutating func next(_ k: Kernel?) -> String? {
        if !queue.isEmpty && chance(70) { return queue.removeFirst() }
        guard chance(40) else { return nil }
        let line = mode == .tdx ? tdx(k) : sev(k)
        return line.map { "1 " + $0 }
    }

    mutating func newHandle() -> Int32 {
        defer { nextHandle += 1 }
        return nextHandle
    }

    /// A GPA of the VM's private pages, else of its shared pages, else a fresh one.
    mutating func gpa(_ vm: ConfidentialVM?, privateOnly: Bool = false) -> UInt64 {
        if let vm {
            if let g = pick(vm.privatePages.keys.sorted()), privateOnly || chance(70) { return g }
            if !privateOnly, let g = pick(vm.sharedPages.keys.sorted()), chance(50) { return g }
        }
        return UInt64(below(48)) * UInt64(pageSize)
    }

    mutating func bytes() -> String {
        let n = 4 + below(40)
        var s = "\""
        for _ in 0..<n { s.append(Character(UnicodeScalar(UInt8(0x41 + below(26))))) }
        return s + "\""
    }

    /// A host access aimed at a page no guest and no module owns, nor the zero pages (a host path
    /// scribbling on the zero page is zero-page-modified, not a confidential-VM finding).
    mutating func hostAccess(_ k: Kernel?) -> String? {
        guard let k else { return nil }
        let held = k.cvm.heldFrames()
        func isZeroPage(_ f: UInt64) -> Bool {
            if k.pgtable.zeroPFN?.rawValue == f { return true }
            if let hz = k.pgtable.hugeZeroPFN?.rawValue, f >= hz, f < hz + UInt64(hpagePMDNr) { return true }
            return false
        }
        for _ in 0..<8 {
            let f = UInt64(below(frames))
            if held[f] != nil || isZeroPage(f) || k.machine.tdx?.pageType(PFN(f)) ?? .nda != .nda || k.machine.sev?.isAssigned(PFN(f)) == true { continue }
            let pa = f << UInt64(pageShift) + UInt64(below(64)) * 64
            switch below(3) {
            case 0: return "host_read(\(Self.hex(pa)), \(8 + below(56)))"
            case 1: return "host_write(\(Self.hex(pa)), \(bytes()))"
            default: return "host_write_nt(\(Self.hex(pa)), \(bytes()))"
            }
        }
        return nil
    }

    // MARK: TDX

    mutating func tdx(_ k: Kernel?) -> String? {
        guard let k else { return nil }
        if k.cvm.tdxStatus != .initialized {
            // The module comes up at a random point, after the host has used memory.
            return chance(6) ? "tdx_enable()" : nil
        }
        let vms = k.cvm.liveVMs
        let vm = pick(vms)
        let h = vm?.handle ?? 1
        switch below(100) {
        case 0..<12: return "tdx_td_init() = \(newHandle())"
        case 12..<22:
            guard let vm, !vm.finalized else { return "tdx_td_init() = \(newHandle())" }
            return "tdx_init_mem_region(\(h), \(Self.hex(gpa(nil))), \(1 + below(3)))"
        case 22..<27: return "tdx_finalize_vm(\(h))"
        case 27..<36: return "tdx_page_aug(\(h), \(Self.hex(gpa(nil))), \(1 + below(3)))"
        case 36..<48: return "guest_write(\(h), \(Self.hex(gpa(vm) + UInt64(below(64)) * 64)), \(bytes()))"
        case 48..<55: return "guest_read(\(h), \(Self.hex(gpa(vm) + UInt64(below(64)) * 64)), \(8 + below(56)))"
        case 55..<61: return "tdx_sept_remove_private_spte(\(h), \(Self.hex(gpa(vm, privateOnly: true))), 1)"
        case 61..<64:
            // The removal one SEAMCALL at a time, interleaved with other calls.
            let g = Self.hex(gpa(vm, privateOnly: true))
            queue += ["1 tdh_mem_range_block(\(h), \(g))", "1 tdh_mem_track(\(h))", "1 tdh_mem_page_remove(\(h), \(g))",
                      "1 tdh_phymem_page_wbinvd(\(h), \(g))", "1 tdx_clear_page(\(h), \(g))"]
            return nil
        case 64..<70:
            return "kvm_set_memory_attributes(\(h), \(Self.hex(gpa(vm))), \(1 + below(2)), \(chance(50) ? "KVM_MEMORY_ATTRIBUTE_PRIVATE" : "0"))"
        case 70..<80: return "tdx_td_destroy(\(h))"
        case 80..<82:
            queue += ["1 tdx_mmu_release_hkid(\(h))", "1 tdx_vm_destroy(\(h))"]
            return nil
        case 82..<91: return hostAccess(k)
        case 91..<94:
            let leaf = pick(["TDH_MNG_KEY_FREEID", "TDH_PHYMEM_PAGE_RECLAIM", "TDH_PHYMEM_PAGE_WBINVD", "TDH_MNG_CREATE",
                             "TDH_MNG_KEY_CONFIG", "TDH_MEM_PAGE_REMOVE", "TDH_PHYMEM_CACHE_WB", "TDH_MEM_PAGE_AUG",
                             "TDH_MNG_ADDCX"]) ?? "TDH_MNG_CREATE"
            let status = pick(["TDX_OPERAND_BUSY", "TDX_OPERAND_INVALID", "TDX_RND_NO_ENTROPY", "TDX_INTERRUPTED_RESUMABLE"]) ?? "TDX_OPERAND_BUSY"
            return "tdx_inject_error(\(leaf), \(status))"
        case 94..<96: return "misc_cg_set_max(\"tdx\", \(chance(50) ? "\"max\"" : String(below(3))))"
        case 96..<98: return "vm_key_index(\(h))"
        default: return "rdmsr(MSR_IA32_MKTME_KEYID_PARTITIONING)"
        }
    }

    // MARK: SEV

    mutating func sev(_ k: Kernel?) -> String? {
        guard let k else { return nil }
        let vms = k.cvm.liveVMs
        let vm = pick(vms)
        let h = vm?.handle ?? 1
        switch below(100) {
        case 0..<14:
            let type = below(10) < 6 ? "KVM_X86_SNP_VM" : (chance(50) ? "KVM_X86_SEV_ES_VM" : "KVM_X86_SEV_VM")
            return "sev_guest_init(\(type)) = \(newHandle())"
        case 14..<26:
            if chance(6) { return "sev_launch_update_data(\(h), \(Self.hex(UInt64(2 + below(4)) << 21)), 512)" }
            return "sev_launch_update_data(\(h), \(Self.hex(gpa(nil))), \(1 + below(3)))"
        case 26..<40: return "guest_write(\(h), \(Self.hex(gpa(vm) + UInt64(below(64)) * 64)), \(bytes()))"
        case 40..<48: return "guest_read(\(h), \(Self.hex(gpa(vm) + UInt64(below(64)) * 64)), \(8 + below(56)))"
        case 48..<58:
            return "kvm_set_memory_attributes(\(h), \(Self.hex(gpa(vm))), \(1 + below(2)), \(chance(50) ? "KVM_MEMORY_ATTRIBUTE_PRIVATE" : "0"))"
        case 58..<61:
            guard let vm, let f = pick(vm.privatePages.values.sorted()) else { return nil }
            return "psmash(\(Self.hex(f.physAddr.rawValue)))"
        case 61..<73: return "sev_vm_destroy(\(h))"
        case 73..<83: return hostAccess(k)
        case 83..<86:
            let op = pick(["SEV_CMD_SNP_PAGE_RECLAIM", "RMPUPDATE", "PSMASH", "SEV_CMD_ACTIVATE", "SEV_CMD_DEACTIVATE",
                           "SEV_CMD_DF_FLUSH", "SEV_CMD_LAUNCH_UPDATE_DATA"]) ?? "RMPUPDATE"
            return "sev_inject_error(\(op))"
        case 86..<89: return "misc_cg_set_max(\"\(chance(50) ? "sev_es" : "sev")\", \(chance(50) ? "\"max\"" : String(below(3))))"
        case 89..<92:
            guard let vm, let f = pick(vm.privatePages.values.sorted()) else { return nil }
            return "snp_lookup_rmpentry(\(Self.hex(f.physAddr.rawValue)))"
        default: return "vm_key_index(\(h))"
        }
    }
}
