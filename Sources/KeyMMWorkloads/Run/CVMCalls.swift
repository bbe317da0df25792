// The model-only calls of the TDX and SEV host paths (docs/scenario-format.md, "Confidential VMs";
// docs/tdx-sev.md): parsing their arguments with located errors and running them on the
// kernel's cvm/ layer. Names follow the host operations (tdx_enable, tdh_mem_page_remove,
// sev_guest_init, kvm_set_memory_attributes...); VM handles are ids like pin handles (a recorded
// handle is the one the model assigns).
//
// Invariant: every argument problem is a TraceError at the argument's column naming the accepted
// forms; a call never traps on its arguments; results are the kernel's errno vocabulary, a number
// or string, or SIGBUS for a machine check.
import KeyMMBase
import KeyMMHardware
import KeyMMKernel
import KeyMMTrace

/// The confidential-VM calls, by the name a scenario uses.
enum CVMCall: String, CaseIterable {
    // TDX
    case tdx_enable, rdmsr, tdx_td_init, tdx_init_mem_region, tdx_finalize_vm, tdx_page_aug
    case tdx_sept_remove_private_spte, tdh_mem_range_block, tdh_mem_track, tdh_mem_page_remove
    case tdh_phymem_page_wbinvd, tdx_clear_page, tdx_mmu_release_hkid, tdx_vm_destroy, tdx_td_destroy
    case tdx_inject_error, tdh_phymem_page_rdmd
    // SEV
    case sev_guest_init, sev_launch_update_data, sev_vm_destroy, sev_inject_error, snp_lookup_rmpentry, psmash
    // Both
    case guest_write, guest_read, kvm_set_memory_attributes, vm_key_index, kvm_gpa_to_hpa, host_write, host_write_nt, host_read
    case misc_cg_set_max

    static let byName: [String: CVMCall] = Dictionary(uniqueKeysWithValues: allCases.map { ($0.rawValue, $0) })
    /// Prefixes of these names: a misspelled one is an input error, not a skipped call.
    static let prefixes = ["tdx_", "tdh_", "sev_", "snp_", "guest_", "host_", "kvm_", "misc_cg_", "vm_key"]
}

/// Symbolic arguments of the calls (values: Linux UAPI / TDX module ABI / the model's, see docs).
enum CVMSymbols {
    static let vmTypes: [String: Int64] = ["KVM_X86_SEV_VM": 2, "KVM_X86_SEV_ES_VM": 3, "KVM_X86_SNP_VM": 4]
    static let attributes: [String: Int64] = ["KVM_MEMORY_ATTRIBUTE_PRIVATE": 1 << 3]
    static let msrs: [String: Int64] = ["MSR_IA32_MKTME_KEYID_PARTITIONING": 0x87]
    static let leaves: [String: Int64] = Dictionary(uniqueKeysWithValues: TDXLeaf.allCases.map { ($0.constantName, Int64($0.rawValue)) })
    static let sevOps: [String: Int64] = Dictionary(uniqueKeysWithValues: SEVOperation.allCases.enumerated().map { ($1.rawValue, Int64($0)) })
}

extension SyscallDispatcher {
    /// A symbolic or numeric argument: a name of `table` or an integer.
    func symbolic(_ a: Arguments, _ i: Int, _ table: [String: Int64], _ what: String) throws(TraceError) -> Int64 {
        let arg = try a.arg(i)
        if case .symbol(let name) = arg.value.unnamed {
            if let v = table[name] { return v }
            throw TraceError(location: arg.location, message: "argument \(i + 1) of \(a.line.name): unknown \(what) \(name); accepted: \(table.keys.sorted().joined(separator: ", "))")
        }
        return try a.i64(i)
    }

    /// A symbolic-only argument (the name itself).
    func symbolName(_ a: Arguments, _ i: Int, _ accepted: [String], _ what: String) throws(TraceError) -> String {
        let arg = try a.arg(i)
        if case .symbol(let name) = arg.value.unnamed, accepted.contains(name) { return name }
        throw TraceError(location: arg.location, message: "argument \(i + 1) of \(a.line.name): expected \(what); accepted: \(accepted.joined(separator: ", "))")
    }

    /// A VM handle argument.
    func handle(_ a: Arguments, _ i: Int) throws(TraceError) -> Int32 { try a.i32(i) }

    /// A page count: 1 ... 4096 per call.
    func pageCount(_ a: Arguments, _ i: Int) throws(TraceError) -> Int {
        let n = try a.i64(i)
        guard n >= 1, n <= 4096 else {
            throw TraceError(location: a.line.location(ofArgument: i), message: "\(a.line.name): NPAGES is 1 ... 4096, got \(n)")
        }
        return Int(n)
    }

    /// A physical address with a length inside DRAM.
    func physRange(_ a: Arguments, _ i: Int, _ length: Int, kernel: Kernel) throws(TraceError) -> PhysAddr {
        let pa = try a.u64(i)
        let limit = kernel.machine.config.memory.rawValue
        guard length <= 1 << 20, pa < limit, UInt64(length) <= limit - pa else {
            throw TraceError(location: a.line.location(ofArgument: i), message: "\(a.line.name)(0x\(String(pa, radix: 16)), \(length) bytes) is outside physical memory (\(kernel.machine.config.memory)) or over 1 MiB")
        }
        return PhysAddr(pa)
    }

    static func outcome(_ r: Result<UInt64, Errno>) -> CallOutcome {
        switch r {
        case .success(let v): .address(v)
        case .failure(let e): .error(e)
        }
    }

    static func outcome(_ r: CVMAccessResult) -> CallOutcome {
        switch r {
        case .written(let n): .value(Int64(n))
        case .read(let b): .bytes(b)
        case .machineCheck: .signal("SIGBUS")
        case .error(let e): .error(e)
        }
    }

    /// Runs one confidential-VM call.
    mutating func executeCVM(_ call: CVMCall, a: inout Arguments, line: SyscallLine, kernel: Kernel) throws(TraceError) -> CallOutcome {
        let recorded = line.result.errnoName == nil ? line.result.int64Value.flatMap { $0 > 0 && $0 <= Int64(Int32.max) ? Int32($0) : nil } : nil
        switch call {
        // MARK: TDX
        case .tdx_enable:
            return Self.outcome(kernel.tdxEnable())
        case .rdmsr:
            let msr = try symbolic(a, 0, CVMSymbols.msrs, "MSR")
            // rdmsr_safe(): only IA32_MKTME_KEYID_PARTITIONING exists in the model (and only on MKTME machines).
            guard msr == 0x87, kernel.machine.config.encryption == .mktme else { return .error(.EIO) }
            return .address(kernel.machine.config.keyidPartitioning)
        case .tdx_td_init:
            return Self.outcome(kernel.tdxTDInit(handle: recorded).map { Int64($0) })
        case .tdx_init_mem_region:
            return Self.outcome(kernel.tdxMemPageAdd(try handle(a, 0), gpa: try a.u64(1), npages: try pageCount(a, 2)))
        case .tdx_finalize_vm:
            return Self.outcome(kernel.tdxFinalizeVM(try handle(a, 0)))
        case .tdx_page_aug:
            return Self.outcome(kernel.tdxMemPageAug(try handle(a, 0), gpa: try a.u64(1), npages: try pageCount(a, 2)))
        case .tdx_sept_remove_private_spte:
            return Self.outcome(kernel.tdxRemovePrivatePages(try handle(a, 0), gpa: try a.u64(1), npages: try pageCount(a, 2)))
        case .tdh_mem_range_block:
            return Self.outcome(kernel.tdhMemRangeBlock(try handle(a, 0), gpa: try a.u64(1)))
        case .tdh_mem_track:
            return Self.outcome(kernel.tdhMemTrack(try handle(a, 0)))
        case .tdh_mem_page_remove:
            return Self.outcome(kernel.tdhMemPageRemove(try handle(a, 0), gpa: try a.u64(1)))
        case .tdh_phymem_page_wbinvd:
            return Self.outcome(kernel.tdhPhymemPageWbinvd(try handle(a, 0), gpa: try a.u64(1)))
        case .tdx_clear_page:
            return Self.outcome(kernel.tdxClearRemovedPage(try handle(a, 0), gpa: try a.u64(1)))
        case .tdx_mmu_release_hkid:
            return Self.outcome(kernel.tdxMmuReleaseHKID(try handle(a, 0)))
        case .tdx_vm_destroy:
            return Self.outcome(kernel.tdxVMDestroy(try handle(a, 0)))
        case .tdx_td_destroy:
            return Self.outcome(kernel.tdxTDDestroy(try handle(a, 0)))
        case .tdx_inject_error:
            let leaf = try symbolic(a, 0, CVMSymbols.leaves, "SEAMCALL leaf")
            guard let l = TDXLeaf(rawValue: Int(leaf)) else {
                throw TraceError(location: line.location(ofArgument: 0), message: "tdx_inject_error: \(leaf) is not a SEAMCALL leaf the model executes; accepted: \(CVMSymbols.leaves.keys.sorted().joined(separator: ", "))")
            }
            var status = TDXStatus.operandInvalid
            if a.count > 1 {
                let names = ["TDX_INTERRUPTED_RESUMABLE", "TDX_OPERAND_INVALID", "TDX_OPERAND_BUSY", "TDX_RND_NO_ENTROPY",
                             "TDX_PAGE_METADATA_INCORRECT", "TDX_KEY_STATE_INCORRECT", "TDX_EPT_WALK_FAILED"]
                status = TDXStatus(name: try symbolName(a, 1, names, "a TDX status")) ?? .operandInvalid
            }
            guard let module = kernel.machine.tdx else { return .error(.ENODEV) }
            module.inject(l, status)
            return .value(0)
        case .tdh_phymem_page_rdmd:
            let pa = try physRange(a, 0, 1, kernel: kernel)
            guard let module = kernel.machine.tdx else { return .error(.ENODEV) }
            return .value(Int64(module.pageType(pa.pfn).rawValue))
        // MARK: SEV
        case .sev_guest_init:
            let t = try symbolic(a, 0, CVMSymbols.vmTypes, "VM type")
            guard let type = CVMType(rawValue: Int(t)), type != .tdx else { return .error(.EINVAL) }
            return Self.outcome(kernel.sevGuestInit(type: type, handle: recorded).map { Int64($0) })
        case .sev_launch_update_data:
            return Self.outcome(kernel.sevLaunchUpdateData(try handle(a, 0), gpa: try a.u64(1), npages: try pageCount(a, 2)))
        case .sev_vm_destroy:
            return Self.outcome(kernel.sevVMDestroy(try handle(a, 0)))
        case .sev_inject_error:
            let op = try symbolName(a, 0, SEVOperation.allCases.map(\.rawValue), "an SEV firmware command or RMP instruction")
            guard let o = SEVOperation(rawValue: op), let sev = kernel.machine.sev else { return .error(.ENODEV) }
            sev.inject(o, o == .rmpupdate || o == .psmash ? .rmpInput : .invalidGuestState)
            return .value(0)
        case .snp_lookup_rmpentry:
            let pa = try physRange(a, 0, 1, kernel: kernel)
            guard let sev = kernel.machine.sev else { return .error(.ENODEV) }
            return .value(sev.isAssigned(pa.pfn) ? 1 : 0)
        case .psmash:
            let pa = try physRange(a, 0, 1, kernel: kernel)
            guard let sev = kernel.machine.sev else { return .error(.ENODEV) }
            return sev.psmash(pa.pfn) == .success ? .value(0) : .error(.EINVAL)
        // MARK: both
        case .guest_write:
            let bytes = try a.bytes(2)
            guard bytes.count <= 1 << 20 else {
                throw TraceError(location: line.location(ofArgument: 2), message: "guest_write of \(bytes.count) bytes: at most 1 MiB per call")
            }
            return Self.outcome(kernel.guestWrite(try handle(a, 0), gpa: try a.u64(1), bytes))
        case .guest_read:
            let n = try a.i64(2)
            guard n >= 0, n <= 1 << 20 else {
                throw TraceError(location: line.location(ofArgument: 2), message: "guest_read of \(n) bytes: LEN is 0 ... 1048576")
            }
            return Self.outcome(kernel.guestRead(try handle(a, 0), gpa: try a.u64(1), count: Int(n)))
        case .kvm_set_memory_attributes:
            let attr = try symbolic(a, 3, CVMSymbols.attributes, "memory attribute")
            guard attr == 0 || attr == 1 << 3 else { return .error(.EINVAL) }
            return Self.outcome(kernel.kvmSetMemoryAttributes(try handle(a, 0), gpa: try a.u64(1), npages: try pageCount(a, 2),
                                                              toPrivate: attr != 0))
        case .kvm_gpa_to_hpa:
            return Self.outcome(kernel.cvmGPAToHPA(try handle(a, 0), gpa: try a.u64(1)).map { $0.rawValue })
        case .vm_key_index:
            return Self.outcome(kernel.cvmKeyIndex(try handle(a, 0)).map { Int64($0) })
        case .host_write, .host_write_nt:
            let bytes = try a.bytes(1)
            let pa = try physRange(a, 0, bytes.count, kernel: kernel)
            return Self.outcome(kernel.hostWrite(pa, bytes, nonTemporal: call == .host_write_nt))
        case .host_read:
            let n = try a.i64(1)
            guard n >= 0, n <= 1 << 20 else {
                throw TraceError(location: line.location(ofArgument: 1), message: "host_read of \(n) bytes: LEN is 0 ... 1048576")
            }
            let pa = try physRange(a, 0, Int(n), kernel: kernel)
            return Self.outcome(kernel.hostRead(pa, count: Int(n)))
        case .misc_cg_set_max:
            let name = try a.string(0)
            guard let r = MiscResource(rawValue: name) else {
                throw TraceError(location: line.location(ofArgument: 0), message: "misc_cg_set_max: unknown misc cgroup resource \"\(name)\"; accepted: \(MiscResource.allCases.map { "\"\($0.rawValue)\"" }.joined(separator: ", "))")
            }
            let arg = try a.arg(1)
            if let s = arg.value.unnamed.string, String(decoding: s.bytes, as: UTF8.self) == "max" {
                kernel.miscCgSetMax(r, nil)
            } else {
                let n = try a.i64(1)
                guard n >= 0 else {
                    throw TraceError(location: arg.location, message: "misc_cg_set_max: the limit is a count >= 0 or \"max\"")
                }
                kernel.miscCgSetMax(r, Int(n))
            }
            return .value(0)
        }
    }
}
