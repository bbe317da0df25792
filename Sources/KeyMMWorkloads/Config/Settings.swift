// The model's configuration as users state it: `--set KEY=VALUE`, `#@ set KEY=VALUE`
// lines in scenario files, and `--config FILE` (TOML). One table of keys, each with
// its parser, so every way in accepts the same spellings and rejects the same errors.
//
// Invariant: a `ModelConfig` that parsed is valid: `MachineConfig.validate()` passed
// and every kernel setting is in range. Applying the same settings in the same order
// gives the same config (later settings win).
import Foundation
import KeyMMBase
import KeyMMChecker
import KeyMMHardware
import KeyMMKernel

/// Everything that configures one model run: the machine, the kernel, and the costs.
public struct ModelConfig: Sendable {
    public var machine = MachineConfig()
    public var kernel = KernelConfig()
    /// Cost profile file (`costs=FILE`), or nil for the documented defaults.
    public var costsFile: String?

    /// KeyMM's default machine: MachineConfig's defaults plus a 32 MiB EPC (the contract's `epc`).
    public init() { machine.epc = .mib(32) }

    /// A setting that could not be applied: the message names the key and the accepted forms.
    public struct SettingError: Error, CustomStringConvertible, Sendable {
        public let message: String
        public var description: String { message }
    }

    /// The keys `--set` accepts, with the forms each takes (for help and errors).
    public static let keys: [(key: String, forms: String)] = [
        ("memory", "a size such as 4G, 512M (64M .. 64G)"),
        ("nodes", "NUMA nodes, 1 .. 8"),
        ("phys-bits", "MAXPHYADDR, 36 .. 52"),
        ("keyid-bits", "KeyID bits taken from the top of the physical address, 0 .. 16"),
        ("tdx-keyids", "KeyIDs reserved for TDX at the top of the range, 0 .. all"),
        ("cache", "cache size such as 32M"),
        ("cache-ways", "cache associativity, 1 .. 64"),
        ("xts-bits", "AES-XTS key size: 128 or 256"),
        ("encryption", "mktme, sme or off"),
        ("seed", "an unsigned integer seeding every random key"),
        ("policy", AllocatorPolicy.allCases.map(\.rawValue).joined(separator: ", ")),
        ("thp", "always, madvise or never"),
        ("max-map-count", "a positive integer (Linux default 65530)"),
        ("user-keys", "on or off (off models PATCHv2, which dropped user keys)"),
        ("pkeys", "16 (a CPU with protection keys, PKU/OSPKE) or 1 (none: pkey_alloc fails with EINVAL, then ENOSPC)"),
        ("costs", "a cost-profile JSON file written by `keymm calibrate`"),
        ("encrypt-anon", "on or off (on: every new anonymous private mapping gets the KeyID of a boot-time mktme key, the series' kernel-build experiment)"),
        ("packages", "physical packages (sockets), 1 .. 64: PCONFIG, TDX key configuration and TDH.PHYMEM.CACHE.WB run once per package"),
        ("tdx-pw-mce", "on or off: the TDX partial-write erratum X86_BUG_TDX_PW_MCE (a non-TD partial write poisons a TD-owned line)"),
        ("sev-asids", "SEV ASIDs (max_sev_asid), 0 .. 4096; needs encryption=sme"),
        ("min-sev-asid", "min_sev_asid: SEV guests use min-sev-asid .. sev-asids, SEV-ES/SNP guests 1 .. min-sev-asid - 1"),
        ("sev-snp", "on or off: SEV-SNP (the RMP, SNP_DF_FLUSH)"),
        ("coherency-sfw-no", "on or off: CPUID 0x8000001F EBX[31] COHERENCY_SFW_NO (no software eviction when a page becomes private)"),
        ("sev-asid-flush", SEVASIDFlush.allCases.map(\.rawValue).joined(separator: " or ") + " (lazy: KVM's recycling when allocation runs dry; eager: WBINVD + DF_FLUSH at every free)"),
        ("epc", "the SGX EPC size, a multiple of 4K such as 32M (default 32M; 0: no SGX)"),
        ("sgx-mm-tracking", "notifier (the merged driver: mmu_notifier + SRCU mm_list) or vma-refcount (the 2019 RFC: vm_ops open/close)"),
        ("sgx-vma-flags", "special (VM_PFNMAP|VM_DONTEXPAND|VM_DONTDUMP|VM_IO, as merged) or plain (none: enclave VMAs may merge)"),
        ("vm-close-merge", "6.18 (a VMA with vm_ops->close is never removed by a merge) or 2019 (it never merges: is_mergeable_vma)"),
        ("inject-bug", "a seeded bug (docs/invariants.md), comma-separated for several, or none: " + SeededBug.names),
    ]

    /// Applies one `KEY=VALUE` setting.
    public mutating func apply(_ assignment: String) throws(SettingError) {
        guard let eq = assignment.firstIndex(of: "=") else {
            throw SettingError(message: "expected KEY=VALUE, got '\(assignment)'; keys: \(Self.keys.map(\.key).joined(separator: ", "))")
        }
        let key = assignment[..<eq].trimmingCharacters(in: .whitespaces)
        let value = assignment[assignment.index(after: eq)...].trimmingCharacters(in: .whitespaces)
        try apply(key: key, value: value)
    }

    /// Applies one setting given as key and value.
    public mutating func apply(key: String, value: String) throws(SettingError) {
        func forms() -> String { Self.keys.first { $0.key == key }?.forms ?? "" }
        func bad() -> SettingError { SettingError(message: "invalid value '\(value)' for '\(key)'; expected \(forms())") }
        func int(_ range: ClosedRange<Int>) throws(SettingError) -> Int {
            guard let n = Int(value), range.contains(n) else { throw bad() }
            return n
        }
        func size() throws(SettingError) -> ByteCount {
            guard let b = ByteCount(parsing: value) else { throw bad() }
            return b
        }
        func onOff() throws(SettingError) -> Bool {
            switch value.lowercased() {
            case "on", "true", "yes", "1": return true
            case "off", "false", "no", "0": return false
            default: throw bad()
            }
        }
        switch key {
        case "memory": machine.memory = try size()
        case "nodes": machine.nodes = try int(1...8)
        case "phys-bits": machine.physBits = try int(36...52)
        case "keyid-bits": machine.keyidBits = try int(0...16)
        case "tdx-keyids": machine.tdxKeyIDs = try int(0...65535)
        case "cache": machine.cacheSize = try size()
        case "cache-ways": machine.cacheWays = try int(1...64)
        case "xts-bits":
            let n = try int(128...256)
            guard n == 128 || n == 256 else { throw bad() }
            machine.xtsKeyBits = n
        case "encryption":
            guard let m = EncryptionMode(rawValue: value.lowercased()) else { throw bad() }
            machine.encryption = m
        case "seed":
            guard let s = UInt64(value) else { throw bad() }
            machine.seed = s
        case "policy":
            guard let p = AllocatorPolicy(rawValue: value) else { throw bad() }
            kernel.policy = p
        case "thp":
            guard let t = THPMode(rawValue: value) else { throw bad() }
            kernel.thp = t
        case "max-map-count": kernel.maxMapCount = try int(1...Int(Int32.max))
        case "user-keys": kernel.userKeys = try onOff()
        case "pkeys":
            let n = try int(1...16)
            guard n == 1 || n == 16 else { throw bad() }
            kernel.pkeyCount = n
        case "encrypt-anon": kernel.encryptAnon = try onOff()
        case "packages": machine.packages = try int(1...64)
        case "tdx-pw-mce": machine.tdxPartialWriteErratum = try onOff()
        case "sev-asids": machine.sevASIDs = try int(0...4096)
        case "min-sev-asid": machine.minSEVASID = try int(1...4097)
        case "sev-snp": machine.snp = try onOff()
        case "coherency-sfw-no": machine.coherencySFWNo = try onOff()
        case "sev-asid-flush":
            guard let f = SEVASIDFlush(rawValue: value) else { throw bad() }
            kernel.cvm.sevASIDFlush = f
        case "epc": machine.epc = try size()
        case "sgx-mm-tracking":
            guard let t = SGXMMTracking(rawValue: value) else { throw bad() }
            kernel.sgxMMTracking = t
        case "sgx-vma-flags":
            guard let f = SGXVMAFlags(rawValue: value) else { throw bad() }
            kernel.sgxVMAFlags = f
        case "vm-close-merge":
            guard let r = CloseMergeRule(rawValue: value) else { throw bad() }
            kernel.closeMergeRule = r
        case "costs":
            guard !value.isEmpty else { throw bad() }
            costsFile = value
        case "inject-bug":
            var bugs: InjectedBugs = []
            for n in value.split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces) }) where !n.isEmpty && n != "none" {
                guard let bug = SeededBug.named(n) else { throw bad() }
                bugs.insert(bug.bug)
            }
            kernel.bugs = bugs
        default:
            throw SettingError(message: "unknown setting '\(key)'; known: \(Self.keys.map(\.key).joined(separator: ", "))")
        }
    }

    /// Checks the combination (e.g. the KeyID bits fit the physical-address width).
    public func validate() throws(SettingError) {
        do { try machine.validate() } catch { throw SettingError(message: String(describing: error)) }
    }
}
