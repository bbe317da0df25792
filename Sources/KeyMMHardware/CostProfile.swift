// CostProfile: the price list of the cost clock, cycles per `CostEvent`. `CostProfile.default`
// holds documented, sourced defaults (docs/cost-model.md); `keymm calibrate` measures this host and
// writes a profile JSON that `--set costs=FILE` loads back.
//
// Invariants: `cycles` has exactly one entry per CostEvent (indexed by raw value); a profile read
// from JSON starts from the defaults, so a file that predates newly appended events still loads.
import Foundation

/// Modeled cycles per event, plus where the numbers came from.
public struct CostProfile: Sendable, Hashable, Codable {
    /// A name for reports ("default", "host-calibrated", or the file's own).
    public var name: String
    /// The TSC frequency (Hz) the profile's nanosecond measurements were converted with.
    public var tscHz: Double
    /// Cycles per event, indexed by `CostEvent.rawValue`.
    public private(set) var cycles: [UInt64]

    /// The documented defaults (see docs/cost-model.md).
    public static let `default` = CostProfile(name: "default")

    /// A profile with the default price for every event.
    public init(name: String = "default", tscHz: Double = CostProfile.nominalTSCHz) {
        self.name = name
        self.tscHz = tscHz
        self.cycles = CostEvent.allCases.map { CostProfile.defaultCycles(for: $0) }
    }

    /// The nominal clock the defaults assume (3 GHz).
    public static let nominalTSCHz: Double = 3.0e9

    /// The price of one event.
    public subscript(_ e: CostEvent) -> UInt64 {
        get { cycles[e.rawValue] }
        set { cycles[e.rawValue] = newValue }
    }

    /// Default cycles per event at the nominal 3 GHz (sources in docs/cost-model.md).
    public static func defaultCycles(for e: CostEvent) -> UInt64 {
        switch e {
        case .cacheAccess: 4          // L1D load-to-use latency, Intel/AMD optimization manuals
        case .dramFill: 240           // ~80 ns loaded DRAM latency
        case .writeBack: 12           // a dirty line's extra cost in a pipelined flush/eviction stream: 64 B at ~16 GB/s
        case .encryptLine: 6          // in-line AES-XTS engine latency added per line (assumption, ~2.5% of a fill)
        case .decryptLine: 6
        case .clflushLine: 8          // CLFLUSHOPT throughput in a clflush_cache_range loop (~2.5 ns/line)
        case .wbinvd: 300_000         // ~100 us for a 32 MiB LLC; WBINVD is non-interruptible and scales with cache size
        case .zeroPage: 320           // clear_page_erms (rep stosb) of 4 KiB, cache-resident
        case .copyPage: 600           // copy_page (rep movsq) of 4 KiB
        case .pconfig: 5_000          // PCONFIG key programming (assumption: microcode + key table write)
        case .syscall: 300            // ~100 ns entry/exit with speculation mitigations
        case .pageFault: 1_500        // ~500 ns exception entry/exit and handle_mm_fault dispatch
        case .ptWalk: 40              // 4-level software walk, cache-resident tables
        case .pteUpdate: 10
        case .tlbFlush: 150           // INVLPG
        case .tlbShootdown: 6_000     // ~2 us IPI round trip (flush_tlb_mm_range to other CPUs)
        case .buddyAlloc: 200         // order-0 via per-cpu lists
        case .buddyFree: 150
        case .vmaOp: 300              // maple-tree lookup/store
        case .keyLookup: 500          // lookup_user_key through the keyrings
        case .keyidRef: 5             // percpu_ref get/put
        case .ksmCompare: 400         // memcmp/xxhash of 4 KiB
        case .lruScan: 50
        case .seamcall: 3_000         // assumption: SEAMCALL/SEAMRET round trip and module dispatch (~1 us)
        case .pspCommand: 150_000     // assumption: one SEV firmware command through the PSP mailbox (~50 us)
        case .rmpUpdate: 1_000        // assumption: RMPUPDATE/PSMASH, microcoded RMP entry write (~0.3 us)
        case .directStoreLine: 16     // MOVDIR64B / non-temporal line to memory: a write-back's bandwidth cost plus the store
        case .programCycle: 1         // a traced program's user-mode cycle (bench macro): counted in cycles
        // SGX (docs/cost-model.md): EINIT from the driver's own comment (50k+ cycles); EWB/ELDU
        // from the ~40k-cycle EPC page fault (EWB + ELDU + exits) reported by Eleos (EuroSys 2017);
        // an enclave call round trip ~8.6k cycles (HotCalls, ISCA 2017); the rest are assumptions.
        case .sgxECREATE: 20_000
        case .sgxEADD: 8_000
        case .sgxEEXTEND: 1_000
        case .sgxEINIT: 60_000
        case .sgxEPA: 2_000
        case .sgxEBLOCK: 400
        case .sgxETRACK: 2_000
        case .sgxEWB: 12_000
        case .sgxELDU: 10_000
        case .sgxEREMOVE: 1_000
        case .sgxIPI: 6_000
        case .sgxMMWalk: 400
        case .sgxEENTER: 8_000
        }
    }

    // MARK: JSON

    private enum CodingKeys: String, CodingKey { case schema, name, tscHz = "tsc_hz", cycles, measured }

    /// Raw host measurements in nanoseconds (calibrate), informational; keys are free-form.
    public var measuredNanoseconds: [String: Double] = [:]

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init(name: try c.decodeIfPresent(String.self, forKey: .name) ?? "file")
        if let schema = try c.decodeIfPresent(Int.self, forKey: .schema), schema != 1 {
            throw DecodingError.dataCorruptedError(forKey: .schema, in: c, debugDescription: "unsupported cost-profile schema \(schema); accepted: 1")
        }
        tscHz = try c.decodeIfPresent(Double.self, forKey: .tscHz) ?? CostProfile.nominalTSCHz
        let given = try c.decodeIfPresent([String: UInt64].self, forKey: .cycles) ?? [:]
        for (key, value) in given {
            guard let e = CostEvent(name: key) else {
                let known = CostEvent.allCases.map(\.name).joined(separator: ", ")
                throw DecodingError.dataCorruptedError(forKey: .cycles, in: c, debugDescription: "unknown cost event \"\(key)\"; accepted: \(known)")
            }
            self[e] = value
        }
        measuredNanoseconds = try c.decodeIfPresent([String: Double].self, forKey: .measured) ?? [:]
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(1, forKey: .schema)
        try c.encode(name, forKey: .name)
        try c.encode(tscHz, forKey: .tscHz)
        var dict: [String: UInt64] = [:]
        for e in CostEvent.allCases { dict[e.name] = self[e] }
        try c.encode(dict, forKey: .cycles)
        if !measuredNanoseconds.isEmpty { try c.encode(measuredNanoseconds, forKey: .measured) }
    }

    /// Loads a profile from a JSON file (`costs=FILE`). Events missing from the file keep their defaults.
    /// Throws `HardwareError` with a one-line message naming the file.
    public static func load(from path: String) throws -> CostProfile {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw HardwareError("\(path): cannot read the cost profile")
        }
        do {
            return try JSONDecoder().decode(CostProfile.self, from: data)
        } catch let error as DecodingError {
            let why: String
            switch error {
            case .dataCorrupted(let c): why = c.debugDescription
            case .keyNotFound(let k, _): why = "missing key \(k.stringValue)"
            case .typeMismatch(_, let c), .valueNotFound(_, let c):
                why = "wrong type at \(c.codingPath.map(\.stringValue).joined(separator: ".")): \(c.debugDescription)"
            @unknown default: why = "\(error)"
            }
            throw HardwareError("\(path): not a cost profile: \(why)")
        }
    }

    /// The profile `keymm calibrate` wrote (named "host-calibrated"; default file `keymm-costs.json`).
    public static func hostCalibrated(file path: String = "keymm-costs.json") throws -> CostProfile {
        try load(from: path)
    }

    /// The profile as pretty, key-sorted JSON.
    public func jsonData() throws -> Data {
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        return try enc.encode(self)
    }
}
