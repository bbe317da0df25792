// Machine: the hardware the kernel runs on — DRAM, the encryption engine, the KeyID table, the
// cache and the cost clock, wired together. The kernel never touches DRAM bytes itself; every CPU
// access goes through the cache with the KeyID of the mapping used (see docs/hardware.md).
//
// Invariants: between calls the cache's write-back buffer is empty, so DRAM (`physRead`) is exact;
// addresses outside DRAM never crash: loads read 0xFF, stores are dropped; KeyIDs are reduced to
// the KeyID bits the hardware decodes. With an EPC (`config.epc`), DRAM is the OS's memory followed
// by the PRM: an ordinary access (any KeyID a PTE can carry) to the PRM gets SGX's abort-page
// semantics (loads read 0xFF, stores are dropped, exactly like an address beyond DRAM); only the
// SGX unit reaches it, through the EPC's own key (SGX.swift, docs/sgx.md).
import KeyMMBase

/// The modeled machine.
public final class Machine {
    public let config: MachineConfig
    public let dram: PhysicalMemory
    public let engine: EncryptionEngine
    public let keyTable: KeyIDTable
    public let cache: Cache
    public let clock: CostClock
    /// The TD-owner bits and poison of DRAM lines (Integrity.swift); nil without TDX KeyIDs.
    package let integrity: LineIntegrity?
    /// The TDX module (TDXModule.swift); nil without TDX KeyIDs.
    package private(set) var tdx: TDXModule?
    /// The SEV firmware and the RMP (SEVFirmware.swift); nil without SEV ASIDs.
    package private(set) var sev: SEVFirmware?
    /// The SGX unit (EPC, EPCM, ENCLS/ENCLU), when the machine has an EPC.
    public let sgx: SGXUnit?
    /// End of the memory ordinary accesses reach (the OS's memory; the PRM follows it).
    let accessLimit: UInt64
    /// Where CPU accesses are recorded for the invariant checker (nil: not recorded; TouchLog.swift).
    package var touchLog: TouchLog?

    /// Builds a machine. Throws `ConfigError` for a bad configuration, `HardwareError` when the host
    /// cannot reserve the memory.
    public init(config: MachineConfig, costs: CostProfile = .default) throws {
        try config.validate()
        self.config = config
        clock = CostClock(profile: costs)
        dram = try PhysicalMemory(size: config.installedDRAM)
        // SEV guests' ASIDs get engine slots (and cache tags) after SGX's (MachineConfig.asidTag).
        engine = EncryptionEngine(slots: config.engineSlots)
        keyTable = KeyIDTable(config: config, engine: engine, clock: clock)
        keyTable.packages = config.packages
        cache = try Cache(size: config.cacheSize, ways: config.cacheWays, dram: dram, engine: engine, clock: clock)
        accessLimit = config.memory.rawValue
        sgx = config.epc.rawValue > 0 ? SGXUnit(config: config, cache: cache, engine: engine, clock: clock) : nil
        let table = keyTable
        integrity = config.tdxKeyIDRange == nil ? nil
            : LineIntegrity(erratum: config.tdxPartialWriteErratum, isTDXPrivate: { table.isTDXPrivate($0) })
        if let integrity { attachIntegrity(integrity) }
        if config.tdxKeyIDRange != nil { tdx = TDXModule(machine: self) }
        if config.sevASIDs > 0 { sev = SEVFirmware(machine: self) }
    }

    /// Frames of DRAM.
    public var frameCount: Int { config.frameCount }

    @inline(__always) func hwKeyID(_ k: KeyID) -> KeyID { KeyID(k.rawValue & config.maxKeyID) }

    @inline(__always) func frameInRange(_ pfn: PFN) -> Bool { pfn.rawValue < UInt64(config.frameCount) }

    /// The length of the prefix of `[pa, pa + count)` an ordinary access reaches (the OS's memory:
    /// beyond it lies the PRM, whose abort-page semantics equal those of no memory at all).
    @inline(__always) func inRange(_ pa: PhysAddr, _ count: Int) -> Int {
        guard count > 0, pa.rawValue < accessLimit else { return 0 }
        return Int(min(UInt64(count), accessLimit - pa.rawValue))
    }

    /// Zeroes a frame through `keyid`: 64 full-line stores into the cache (no fills); the
    /// ciphertext reaches DRAM when the lines are written back. Charges `zeroPage`.
    public func clearPage(_ pfn: PFN, keyid: KeyID) {
        guard frameInRange(pfn) else { return }
        clock.charge(.zeroPage)
        if let log = touchLog { log.access(pfn.physAddr, bytes: pageSize, keyid: hwKeyID(keyid), write: true) }
        cache.zeroPage(pfn, keyid: hwKeyID(keyid))
    }

    /// Copies a frame through the two KeyIDs' mappings (COW, migration, khugepaged). Charges `copyPage`.
    public func copyPage(from src: PFN, srcKeyID: KeyID, to dst: PFN, dstKeyID: KeyID) {
        guard frameInRange(src), frameInRange(dst) else { return }
        clock.charge(.copyPage)
        if let log = touchLog {
            log.access(src.physAddr, bytes: pageSize, keyid: hwKeyID(srcKeyID), write: false)
            log.access(dst.physAddr, bytes: pageSize, keyid: hwKeyID(dstKeyID), write: true)
        }
        cache.copyPage(from: src, srcKeyID: hwKeyID(srcKeyID), to: dst, dstKeyID: hwKeyID(dstKeyID))
    }

    /// CLFLUSH of all 64 lines of a frame as tagged with `keyid` (dirty lines are written back
    /// encrypted with that KeyID's key). Charges 64 `clflushLine`.
    public func flushPage(_ pfn: PFN, keyid: KeyID) {
        guard frameInRange(pfn) else { return }
        cache.flush(pfn.physAddr, keyid: hwKeyID(keyid), length: pageSize)
    }

    /// CPU loads through a mapping with `keyid` (via the cache). Bytes beyond DRAM read as 0xFF.
    public func read(_ pa: PhysAddr, keyid: KeyID, into out: UnsafeMutableRawBufferPointer) {
        let n = inRange(pa, out.count)
        if integrity != nil, consumesPoison(pa, n, hwKeyID(keyid), partialOnly: false) {
            // A machine check (Integrity.swift): the load does not complete.
            for i in 0..<out.count { unsafe out[i] = 0 }
            return
        }
        if n > 0, let log = touchLog { log.access(pa, bytes: n, keyid: hwKeyID(keyid), write: false) }
        if n > 0 { unsafe cache.load(pa, keyid: hwKeyID(keyid), into: UnsafeMutableRawBufferPointer(rebasing: out[0..<n])) }
        if n < out.count { for i in n..<out.count { unsafe out[i] = 0xFF } }
    }

    /// CPU loads through a mapping with `keyid`, as an array.
    public func read(_ pa: PhysAddr, keyid: KeyID, count: Int) -> [UInt8] {
        guard count > 0 else { return [] }
        return unsafe [UInt8](unsafeUninitializedCapacity: count) { buf, done in
            unsafe read(pa, keyid: keyid, into: UnsafeMutableRawBufferPointer(buf))
            done = count
        }
    }

    /// CPU stores through a mapping with `keyid` (write-allocate; partial lines are filled first).
    /// Bytes beyond DRAM are dropped.
    public func write(_ pa: PhysAddr, keyid: KeyID, from src: UnsafeRawBufferPointer) {
        let n = inRange(pa, src.count)
        if integrity != nil, consumesPoison(pa, n, hwKeyID(keyid), partialOnly: true) { return }   // machine check
        if n > 0, let log = touchLog { log.access(pa, bytes: n, keyid: hwKeyID(keyid), write: true) }
        if n > 0 { unsafe cache.store(pa, keyid: hwKeyID(keyid), from: UnsafeRawBufferPointer(rebasing: src[0..<n])) }
    }

    /// CPU stores of an array.
    public func write(_ pa: PhysAddr, keyid: KeyID, bytes: [UInt8]) {
        unsafe bytes.withUnsafeBytes { unsafe write(pa, keyid: keyid, from: $0) }
    }

    /// Raw DRAM: the bus snooper's / cold-boot attacker's view. The cache is NOT consulted (dirty
    /// lines not yet written back are invisible). Bytes beyond DRAM read as 0xFF. The PRM (EPC) is
    /// DRAM too: a snooper sees its ciphertext.
    public func physRead(_ pa: PhysAddr, count: Int) -> [UInt8] {
        dram.read(pa, count: count)
    }

    /// CLFLUSH of every line overlapping `[pa, pa + length)` as tagged with `keyid`.
    public func clflush(_ pa: PhysAddr, keyid: KeyID, length: Int) {
        let n = inRange(pa, length)
        if n > 0 { cache.flush(pa, keyid: hwKeyID(keyid), length: n) }
    }

    /// WBINVD: write back every dirty line (each with its own KeyID) and invalidate the cache.
    public func wbinvd() {
        clock.charge(.wbinvd)
        cache.flushAll()
        wbinvdGeneration &+= 1
    }

    /// WBINVDs executed so far (the SEV firmware's "WBINVD done since DEACTIVATE" indicator reads it).
    package private(set) var wbinvdGeneration: UInt64 = 0

    /// The NUMA node of a frame.
    public func node(of pfn: PFN) -> NodeID { config.node(of: pfn) }
}
