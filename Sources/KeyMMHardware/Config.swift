// MachineConfig: the shape of the modeled machine (memory size, NUMA nodes, physical-address
// width, KeyID bits, TDX partition, cache geometry, cipher width, seed) and its validation.
//
// Invariants (checked by `validate()`): memory is a whole number of 4 MiB blocks per node and
// fits in the physical bits left after the KeyID bits; the cache is a whole number of sets;
// the TDX partition leaves KeyID 0 alone. Every derived quantity (frame count, KeyID ranges,
// KeyID bit position) is computed here so every layer agrees on it.
import KeyMMBase

/// Which memory-encryption architecture the machine has.
public enum EncryptionMode: String, Sendable, CaseIterable {
    /// Intel TME/MKTME: KeyID 0 is the boot-time TME key, KeyIDs 1...N are programmed by PCONFIG.
    case mktme
    /// AMD SME: one boot-time key selected by the C-bit (modeled as KeyID 1); KeyID 0 is plaintext.
    case sme
    /// No memory encryption: every KeyID stores plaintext.
    case off
}

/// A configuration the machine cannot be built with. The message names the key and the accepted values.
public struct ConfigError: Error, CustomStringConvertible, Sendable, Equatable {
    /// The configuration key (`memory`, `keyid-bits`, ...).
    public var key: String
    /// What is wrong and what is accepted.
    public var message: String
    public init(key: String, message: String) { self.key = key; self.message = message }
    public var description: String { "\(key): \(message)" }
}

/// The modeled machine's configuration. Defaults are the MKTME series' x86 defaults.
public struct MachineConfig: Sendable, Hashable {
    /// Installed DRAM (default 4 GiB, at most 64 GiB).
    public var memory: ByteCount = .gib(4)
    /// NUMA nodes; memory is split evenly, node 0 holds the lowest addresses.
    public var nodes: Int = 1
    /// Physical-address width of the CPU (MAXPHYADDR) including the KeyID bits.
    public var physBits: Int = 52
    /// KeyID bits taken from the top of the physical address (KeyIDs 1...(2^bits - 1)).
    public var keyidBits: Int = 6
    /// The last N KeyIDs are TDX-private; the first of them is the TDX module's global KeyID.
    public var tdxKeyIDs: Int = 0
    /// Cache size (one shared last-level cache).
    public var cacheSize: ByteCount = .mib(32)
    /// Cache associativity.
    public var cacheWays: Int = 16
    /// AES-XTS key width: 128 or 256.
    public var xtsKeyBits: Int = 128
    /// The encryption architecture.
    public var encryption: EncryptionMode = .mktme
    /// Seeds every "random" key (TME boot key, SET_KEY_RANDOM) deterministically.
    public var seed: UInt64 = 0
    /// Physical packages (sockets). PCONFIG, TDH.SYS.KEY.CONFIG, TDH.MNG.KEY.CONFIG and
    /// TDH.PHYMEM.CACHE.WB run once per package (docs/tdx-sev.md).
    package var packages: Int = 1
    /// X86_BUG_TDX_PW_MCE (Sapphire and Emerald Rapids): a partial write by non-TD software to a
    /// TD-owned line poisons it (KeyMMHardware/Integrity.swift).
    package var tdxPartialWriteErratum: Bool = true
    /// AMD SEV: ASIDs 1...sevASIDs exist (max_sev_asid, CPUID 0x8000001F ECX); 0: no SEV. Needs
    /// `encryption=sme`. Each ASID has its own key slot in the engine (`asidTag`).
    package var sevASIDs: Int = 0
    /// min_sev_asid (CPUID 0x8000001F EDX): SEV guests use ASIDs minSEVASID...sevASIDs, SEV-ES and
    /// SEV-SNP guests 1...minSEVASID-1.
    package var minSEVASID: Int = 1
    /// SEV-SNP enabled: the RMP is checked and ASIDs are flushed with SNP_DF_FLUSH.
    package var snp: Bool = true
    /// CPUID 0x8000001F EBX[31] COHERENCY_SFW_NO: the hardware keeps a page's cache lines coherent
    /// when it becomes guest-private, so software need not evict them.
    package var coherencySFWNo: Bool = false
    /// SGX's EPC: the processor-reserved memory (PRM) the BIOS carves out for enclaves, at the
    /// physical addresses right after `memory` (never given to the OS's page allocator). 0: no
    /// SGX. A bare `MachineConfig()` has none; KeyMM's own default machine (ModelConfig) has 32 MiB.
    public var epc: ByteCount = ByteCount(0)

    public init() {}

    /// Largest supported DRAM.
    public static let maxMemory = ByteCount.gib(64)
    /// Granularity of a node's memory: one MAX_PAGE_ORDER block (4 MiB).
    public static let memoryGranule = UInt64(pageSize) << UInt64(maxPageOrder)

    /// Checks every field; the error names the key and the accepted values.
    public func validate() throws(ConfigError) {
        guard (1...64).contains(nodes) else {
            throw ConfigError(key: "nodes", message: "\(nodes) is out of range; accepted: 1...64")
        }
        let granule = MachineConfig.memoryGranule * UInt64(nodes)
        guard memory.rawValue >= granule, memory <= MachineConfig.maxMemory, memory.rawValue % granule == 0 else {
            throw ConfigError(key: "memory", message: "\(memory) is not accepted; need a multiple of \(ByteCount(granule)) (4M per node) between \(ByteCount(granule)) and 64G")
        }
        guard (32...52).contains(physBits) else {
            throw ConfigError(key: "phys-bits", message: "\(physBits) is out of range; accepted: 32...52")
        }
        guard (0...16).contains(keyidBits) else {
            throw ConfigError(key: "keyid-bits", message: "\(keyidBits) is out of range; accepted: 0...16")
        }
        let usable = physBits - effectiveKeyIDBits
        guard usable < 64, memory.rawValue <= (UInt64(1) << UInt64(usable)) else {
            throw ConfigError(key: "keyid-bits", message: "\(memory) of memory does not fit in \(usable) usable physical-address bits (phys-bits \(physBits) minus \(effectiveKeyIDBits) KeyID bits)")
        }
        guard epc.rawValue % UInt64(pageSize) == 0, epc <= MachineConfig.maxEPC else {
            throw ConfigError(key: "epc", message: "\(epc) is not accepted; need a multiple of 4K between 0 (no SGX) and \(MachineConfig.maxEPC)")
        }
        guard epc.rawValue == 0 || memory.rawValue + epc.rawValue <= (UInt64(1) << UInt64(usable)) else {
            throw ConfigError(key: "epc", message: "\(memory) of memory plus a \(epc) EPC does not fit in \(usable) usable physical-address bits")
        }
        guard epc.rawValue == 0 || Int(maxKeyID) + 2 <= Int(UInt16.max) else {
            throw ConfigError(key: "epc", message: "an EPC needs two hardware key slots beyond the OS's KeyIDs (the EPC key and the paging key), so keyid-bits must be at most 15 when epc is not 0")
        }
        let maxKeyID = (1 << effectiveKeyIDBits) - 1
        guard tdxKeyIDs >= 0, tdxKeyIDs <= maxKeyID else {
            throw ConfigError(key: "tdx-keyids", message: "\(tdxKeyIDs) is out of range; accepted: 0...\(maxKeyID) (KeyIDs 1...\(maxKeyID) exist with keyid-bits \(effectiveKeyIDBits))")
        }
        guard tdxKeyIDs == 0 || encryption == .mktme else {
            throw ConfigError(key: "tdx-keyids", message: "TDX KeyIDs need encryption=mktme")
        }
        guard (1...64).contains(cacheWays) else {
            throw ConfigError(key: "cache-ways", message: "\(cacheWays) is out of range; accepted: 1...64")
        }
        let setBytes = UInt64(cacheLineSize * cacheWays)
        guard cacheSize.rawValue >= setBytes, cacheSize.rawValue % setBytes == 0, cacheSize <= .gib(1) else {
            throw ConfigError(key: "cache", message: "\(cacheSize) is not accepted; need a multiple of \(setBytes) bytes (64-byte lines x \(cacheWays) ways), at most 1G")
        }
        guard xtsKeyBits == 128 || xtsKeyBits == 256 else {
            throw ConfigError(key: "xts-key-bits", message: "\(xtsKeyBits) is not accepted; accepted: 128, 256")
        }
        guard (1...64).contains(packages) else {
            throw ConfigError(key: "packages", message: "\(packages) is out of range; accepted: 1...64")
        }
        let maxASIDs = Int(UInt16.max) - Int(maxKeyID) - 1
        guard sevASIDs >= 0, sevASIDs <= min(maxASIDs, 4096) else {
            throw ConfigError(key: "sev-asids", message: "\(sevASIDs) is out of range; accepted: 0...\(min(maxASIDs, 4096))")
        }
        guard sevASIDs == 0 || encryption == .sme else {
            throw ConfigError(key: "sev-asids", message: "SEV ASIDs need encryption=sme (AMD)")
        }
        guard minSEVASID >= 1, minSEVASID <= sevASIDs + 1 else {
            throw ConfigError(key: "min-sev-asid", message: "\(minSEVASID) is out of range; accepted: 1...\(sevASIDs + 1) (sev-asids + 1 leaves no ASID for SEV guests)")
        }
    }

    /// Number of 4 KiB frames of DRAM the OS manages (the EPC is not counted).
    public var frameCount: Int { Int(memory.rawValue >> pageShift) }

    /// Largest supported EPC.
    public static let maxEPC = ByteCount.gib(4)

    /// Bytes of DRAM installed: the OS's memory plus the EPC carved out after it.
    package var installedDRAM: ByteCount { ByteCount(memory.rawValue + epc.rawValue) }

    /// The EPC's physical address range (empty without SGX).
    package var epcRange: Range<PhysAddr> { PhysAddr(memory.rawValue)..<PhysAddr(memory.rawValue + epc.rawValue) }

    /// 4 KiB pages of EPC.
    package var epcPages: Int { Int(epc.rawValue >> pageShift) }

    /// Engine slots SGX takes after the host's KeyIDs: the EPC's key and the paging key.
    package var sgxSlots: Int { epc.rawValue > 0 ? 2 : 0 }

    /// Hardware key slots the engine has: every KeyID the OS can name, plus (with an EPC) the
    /// EPC's key and SGX's paging key, which no PTE and no PCONFIG can name, plus one per SEV
    /// ASID (`asidTag`).
    package var engineSlots: Int { Int(maxKeyID) + 1 + sgxSlots + sevASIDs }

    /// Frames per NUMA node.
    public var framesPerNode: Int { frameCount / max(nodes, 1) }

    /// KeyID bits actually decoded: `keyidBits` for MKTME, 1 (the C-bit) for SME, 0 when encryption is off.
    public var effectiveKeyIDBits: Int {
        switch encryption {
        case .mktme: return keyidBits
        case .sme: return 1
        case .off: return 0
        }
    }

    /// Bit position of the lowest KeyID bit in a physical address / PTE (46 with the defaults).
    public var keyidShift: Int { physBits - effectiveKeyIDBits }

    /// The largest KeyID (2^bits - 1), 0 when there are no KeyID bits.
    public var maxKeyID: UInt16 { UInt16(truncatingIfNeeded: (1 << effectiveKeyIDBits) - 1) }

    /// KeyIDs the OS may program with MKTME keys (PCONFIG); nil when there are none.
    public var mktmeKeyIDs: ClosedRange<UInt16>? {
        guard encryption == .mktme else { return nil }
        let last = Int(maxKeyID) - tdxKeyIDs
        return last >= 1 ? 1...UInt16(last) : nil
    }

    /// TDX-private KeyIDs (the last `tdxKeyIDs`); nil when there are none.
    public var tdxKeyIDRange: ClosedRange<UInt16>? {
        guard encryption == .mktme, tdxKeyIDs > 0 else { return nil }
        let first = Int(maxKeyID) - tdxKeyIDs + 1
        return UInt16(first)...maxKeyID
    }

    /// IA32_MKTME_KEYID_PARTITIONING (MSR 0x87) as the BIOS programmed it: bits 31:0 the number of
    /// MKTME KeyIDs, bits 63:32 the number of TDX private KeyIDs (docs/sources.md, "TDX host").
    package var keyidPartitioning: UInt64 {
        guard encryption == .mktme else { return 0 }
        let mktme = UInt64(Int(maxKeyID) - tdxKeyIDs)
        return UInt64(tdxKeyIDs) << 32 | mktme
    }

    /// The cache tag and engine slot of an SEV guest's accesses with ASID `asid` (1...sevASIDs):
    /// the slots after the host's KeyIDs (0: C-bit clear, 1: C-bit set) and SGX's two, so guests
    /// never share a tag with the host, the EPC or each other.
    package func asidTag(_ asid: Int) -> KeyID { KeyID(UInt16(truncatingIfNeeded: Int(maxKeyID) + sgxSlots + asid)) }

    /// The ASID of a cache tag, or nil for a host KeyID (or SGX's slots).
    package func asid(ofTag tag: KeyID) -> Int? {
        let a = Int(tag.rawValue) - Int(maxKeyID) - sgxSlots
        return a >= 1 && a <= sevASIDs ? a : nil
    }

    /// Mask of the KeyID bits in a physical address / PTE address field.
    public var keyidMask: UInt64 { UInt64(maxKeyID) << UInt64(keyidShift) }

    /// A physical address with KeyID bits, as it appears in a PTE or on the cache's tag.
    public func encode(_ pa: PhysAddr, keyid: KeyID) -> UInt64 {
        (pa.rawValue & ~keyidMask) | ((UInt64(keyid.rawValue) & UInt64(maxKeyID)) << UInt64(keyidShift))
    }

    /// Splits an address with KeyID bits into the physical address and the KeyID.
    public func decode(_ raw: UInt64) -> (PhysAddr, KeyID) {
        (PhysAddr(raw & ~keyidMask), KeyID(UInt16(truncatingIfNeeded: (raw & keyidMask) >> UInt64(keyidShift))))
    }

    /// The NUMA node holding a frame.
    public func node(of pfn: PFN) -> NodeID {
        let per = max(framesPerNode, 1)
        return NodeID(UInt8(truncatingIfNeeded: min(pfn.index / per, nodes - 1)))
    }

    /// The frames of one NUMA node.
    public func frames(of node: NodeID) -> Range<PFN> {
        let first = Int(node.rawValue) * framesPerNode
        return PFN(UInt64(first))..<PFN(UInt64(first + framesPerNode))
    }
}
