// The machine-readable result of `keymm run` / `keymm replay` (`--json FILE`).
//
// Schema 1 (docs/run-json.md): schema, files, config, calls, compared, reproduced, divergences,
// violations, inferred, not_modeled, learned, skipped_input, counters, modeled_cycles, processes
// (each with its VMAs), keys (the key service without any key material), stopped_by, and for
// several files per_file (each file's figures; the top-level counts are then the totals).
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
    /// The file whose run the process belongs to (set when one report holds several files).
    public var file: String?
}

/// A region `replay` had to assume because the log does not show how it was created.
public struct InferredRegion: Codable, Sendable, Hashable {
    public var pid: Int32
    public var start: String
    public var end: String
    /// The exec mapping it belongs to: `binary`, `interpreter` (ld.so or the vDSO/vvar),
    /// `stack`, or `unexplained` (no exec mapping is there: Run/ExecLayout.swift).
    public var kind: String
    /// The same in words, with the layout facts the classification used.
    public var what: String
    /// The call that acted on it.
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
    /// Settings the recorded results point to (e.g. `--set pkeys=1`), see Run/ReplayHints.swift.
    public var hints: [String]
    public var notModeled: [String: Int]
    /// Results taken from the log, by `call ERRNO` (files the model does not know).
    public var learned: [String: Int] = [:]
    public var skippedInput: [String]
    /// Input lines skipped (replay), all of them; `skipped_input` holds the first 100.
    public var skippedInputCount = 0
    public var counters: [String: UInt64]
    public var modeledCycles: UInt64
    public var processes: [ProcessReport]
    public var keys: KeyServiceSnapshot?
    /// An input error that stopped the run (calls before it executed), if any.
    public var stoppedBy: String?
    /// Several files: each file's own figures (the fields above are then the totals).
    public var perFile: [FileRunReport]?

    enum CodingKeys: String, CodingKey {
        case schema, files, config, calls, compared, reproduced, divergences, violations, inferred, hints
        case notModeled = "not_modeled", learned, skippedInput = "skipped_input"
        case skippedInputCount = "skipped_input_count", counters, modeledCycles = "modeled_cycles"
        case processes, keys, stoppedBy = "stopped_by", perFile = "per_file"
    }

    /// One report for several files, each run on its own fresh machine: counts, counters and
    /// cycles summed, lists joined in file order, processes tagged with their file, each file's
    /// figures (and its configuration and keys) in `per_file`. `config` is the command line's.
    public static func combining(_ reports: [RunReport], config: [String: String]) -> RunReport {
        if reports.count == 1, let only = reports.first { return only }
        func sum(_ dicts: [[String: Int]]) -> [String: Int] { dicts.reduce(into: [:]) { t, d in t.merge(d, uniquingKeysWith: +) } }
        var counters: [String: UInt64] = [:]
        for r in reports { counters.merge(r.counters, uniquingKeysWith: { $0 &+ $1 }) }
        var processes: [ProcessReport] = []
        for r in reports {
            for var p in r.processes { p.file = p.file ?? r.files.first; processes.append(p) }
        }
        return RunReport(files: reports.flatMap(\.files), config: config,
                         calls: reports.reduce(0) { $0 + $1.calls }, compared: reports.reduce(0) { $0 + $1.compared },
                         reproduced: reports.reduce(0) { $0 + $1.reproduced }, divergences: reports.flatMap(\.divergences),
                         violations: reports.flatMap(\.violations), inferred: reports.flatMap(\.inferred),
                         hints: reports.flatMap(\.hints).reduce(into: []) { if !$0.contains($1) { $0.append($1) } },
                         notModeled: sum(reports.map(\.notModeled)), learned: sum(reports.map(\.learned)),
                         skippedInput: reports.flatMap(\.skippedInput),
                         skippedInputCount: reports.reduce(0) { $0 + $1.skippedInputCount }, counters: counters,
                         modeledCycles: reports.reduce(0) { $0 &+ $1.modeledCycles }, processes: processes, keys: nil,
                         stoppedBy: reports.compactMap(\.stoppedBy).first,
                         perFile: reports.map(FileRunReport.init))
    }

    public func jsonData() throws -> Data {
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        return try enc.encode(self)
    }
}

/// One file's figures in a report over several files (`per_file`).
public struct FileRunReport: Codable, Sendable {
    public var file: String
    public var config: [String: String]
    public var calls: Int
    public var compared: Int
    public var reproduced: Int
    public var divergences: Int
    public var violations: Int
    public var notModeled: [String: Int]
    public var learned: [String: Int]
    public var skippedInput: Int
    public var modeledCycles: UInt64
    public var keys: KeyServiceSnapshot?
    public var stoppedBy: String?

    enum CodingKeys: String, CodingKey {
        case file, config, calls, compared, reproduced, divergences, violations
        case notModeled = "not_modeled", learned, skippedInput = "skipped_input"
        case modeledCycles = "modeled_cycles", keys, stoppedBy = "stopped_by"
    }

    init(_ r: RunReport) {
        file = r.files.first ?? ""
        config = r.config
        calls = r.calls
        compared = r.compared
        reproduced = r.reproduced
        divergences = r.divergences.count
        violations = r.violations.count
        notModeled = r.notModeled
        learned = r.learned
        skippedInput = r.skippedInputCount
        modeledCycles = r.modeledCycles
        keys = r.keys
        stoppedBy = r.stoppedBy
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
            "encrypt-anon": kernel.encryptAnon ? "on" : "off", "pkeys": String(kernel.pkeyCount),
            "epc": machine.epc.description, "sgx-mm-tracking": kernel.sgxMMTracking.rawValue,
            "sgx-vma-flags": kernel.sgxVMAFlags.rawValue, "vm-close-merge": kernel.closeMergeRule.rawValue,
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
                processes.append(ProcessReport(pid: pid.rawValue, vmas: vmas, file: nil))
            }
        }
        return RunReport(files: files, config: config.settings, calls: calls, compared: compared, reproduced: reproduced,
                         divergences: divergences, violations: violations.map(\.description), inferred: inferred, hints: hints, notModeled: notModeled,
                         learned: learned, skippedInput: skippedInput.map(\.description), skippedInputCount: skippedInputCount,
                         counters: kernel?.machine.clock.snapshot ?? [:], modeledCycles: kernel?.machine.clock.cycles ?? 0,
                         processes: processes, keys: kernel?.keys.snapshot(), stoppedBy: stoppedBy?.description)
    }

    static func perms(_ f: VMFlags) -> String {
        (f.contains(.read) ? "r" : "-") + (f.contains(.write) ? "w" : "-") + (f.contains(.exec) ? "x" : "-")
            + (f.contains(.mayShare) ? "s" : "p")
    }
}
