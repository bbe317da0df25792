// The machine-readable result of `keymm run` / `keymm replay` (`--json FILE`).
//
// Schema 1 (docs/run-json.md): schema, config, calls, compared, reproduced, divergences,
// violations, inferred, not_modeled, skipped_input, counters, modeled_cycles, processes
// (each with its VMAs), keys (the key service without any key material).
//
// Invariant: nothing here can carry key material: keys come from the key service's
// snapshot, which holds none.
import Foundation
import KeyMMBase
import KeyMMChecker
import KeyMMHardware
import KeyMMKernel
import KeyMMKeys

/// One VMA as the JSON report shows it.
public struct VMAReport: Codable, Sendable, Hashable {
    public var start: String
    public var end: String
    public var perms: String
    public var pgoff: UInt64
    public var keyid: UInt16
    public var flags: String
    public var path: String?
}

/// One process and its address space.
public struct ProcessReport: Codable, Sendable, Hashable {
    public var pid: Int32
    public var vmas: [VMAReport]
}

/// A region `replay` had to assume because the log does not show how it was created.
public struct InferredRegion: Codable, Sendable, Hashable {
    public var pid: Int32
    public var start: String
    public var end: String
    public var what: String
    public var reason: String
}

/// The JSON result of a run.
public struct RunReport: Codable, Sendable {
    public var schema = 1
    public var files: [String]
    public var config: [String: String]
    public var calls: Int
    public var compared: Int
    public var reproduced: Int
    public var divergences: [Divergence]
    public var violations: [String]
    public var inferred: [InferredRegion]
    public var notModeled: [String: Int]
    public var skippedInput: [String]
    public var counters: [String: UInt64]
    public var modeledCycles: UInt64
    public var processes: [ProcessReport]
    public var keys: KeyServiceSnapshot?
    /// An input error that stopped the run (calls before it executed), if any.
    public var stoppedBy: String?

    enum CodingKeys: String, CodingKey {
        case schema, files, config, calls, compared, reproduced, divergences, violations, inferred
        case notModeled = "not_modeled", skippedInput = "skipped_input", counters
        case modeledCycles = "modeled_cycles", processes, keys, stoppedBy = "stopped_by"
    }

    public func jsonData() throws -> Data {
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        return try enc.encode(self)
    }
}

extension ModelConfig {
    /// The settings as `--set` spells them (for reports).
    public var settings: [String: String] {
        var s: [String: String] = [
            "memory": machine.memory.description, "nodes": String(machine.nodes),
            "phys-bits": String(machine.physBits), "keyid-bits": String(machine.keyidBits),
            "tdx-keyids": String(machine.tdxKeyIDs), "cache": machine.cacheSize.description,
            "cache-ways": String(machine.cacheWays), "xts-bits": String(machine.xtsKeyBits),
            "encryption": machine.encryption.rawValue, "seed": String(machine.seed),
            "policy": kernel.policy.rawValue, "thp": kernel.thp.rawValue,
            "max-map-count": String(kernel.maxMapCount), "user-keys": kernel.userKeys ? "on" : "off",
            "encrypt-anon": kernel.encryptAnon ? "on" : "off",
        ]
        // The confidential-VM settings (docs/tdx-sev.md).
        s["packages"] = String(machine.packages)
        s["tdx-pw-mce"] = machine.tdxPartialWriteErratum ? "on" : "off"
        s["sev-asids"] = String(machine.sevASIDs)
        s["min-sev-asid"] = String(machine.minSEVASID)
        s["sev-snp"] = machine.snp ? "on" : "off"
        s["coherency-sfw-no"] = machine.coherencySFWNo ? "on" : "off"
        s["sev-asid-flush"] = kernel.cvm.sevASIDFlush.rawValue
        if let c = costsFile { s["costs"] = c }
        let bugs = SeededBug.entries(kernel.bugs).map(\.name)
        if !bugs.isEmpty { s["inject-bug"] = bugs.joined(separator: ",") }
        return s
    }
}

extension ScenarioRunner {
    /// The report of everything run so far.
    public func report(files: [String], stoppedBy: RunInputError? = nil) -> RunReport {
        var processes: [ProcessReport] = []
        if let kernel {
            for pid in kernel.tasks.keys.sorted() {
                guard let task = kernel.task(pid) else { continue }
                let vmas = task.mm.allVMAs.map { v in
                    VMAReport(start: "0x" + String(v.vmStart.rawValue, radix: 16), end: "0x" + String(v.vmEnd.rawValue, radix: 16),
                              perms: Self.perms(v.vmFlags), pgoff: v.vmPgoff, keyid: v.keyid.rawValue,
                              flags: "0x" + String(v.vmFlags.rawValue, radix: 16), path: v.vmFile?.path)
                }
                processes.append(ProcessReport(pid: pid.rawValue, vmas: vmas))
            }
        }
        return RunReport(files: files, config: config.settings, calls: calls, compared: compared, reproduced: reproduced,
                         divergences: divergences, violations: violations.map(\.description), inferred: inferred, notModeled: notModeled,
                         skippedInput: skippedInput.map(\.description),
                         counters: kernel?.machine.clock.snapshot ?? [:], modeledCycles: kernel?.machine.clock.cycles ?? 0,
                         processes: processes, keys: kernel?.keys.snapshot(), stoppedBy: stoppedBy?.description)
    }

    static func perms(_ f: VMFlags) -> String {
        (f.contains(.read) ? "r" : "-") + (f.contains(.write) ? "w" : "-") + (f.contains(.exec) ? "x" : "-")
            + (f.contains(.mayShare) ? "s" : "p")
    }
}
