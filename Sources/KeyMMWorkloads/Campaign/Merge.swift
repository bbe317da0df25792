// `keymm merge FILE.jsonl...`: the shards of one run back into what the unsharded run writes (a
// bench/sweep report, or a fuzz summary), after checking that they make exactly one run:
//   - every file has a header, and all headers agree (kind, KeyMM version, config hash, number
//     of shards and units) — a file that differs is a foreign shard;
//   - every shard index 0..<N is there once (missing and duplicated shards are named);
//   - every shard finished (its trailer is there) and its trailer agrees with its lines;
//   - every unit the run covers is there exactly once, in the shard it belongs to.
// Any failure is a MergeError (exit 2) that names the files, shards and indices.
//
// Invariant: the result is built by the same functions the unsharded run uses
// (FuzzSummary.assemble, BenchReport.assemble), from the records alone.
import Foundation
import KeyMMChecker
import KeyMMKernel

/// What merging shards produced.
package enum MergedRun: Sendable {
    case fuzz(FuzzSummary, injectBug: SeededBug?)
    case bench(BenchReport)
}

/// Merging shards of one run.
package enum CampaignMerge {
    /// Reads the shards named by `paths`: JSONL files, and directories (their `*.jsonl` files, sorted).
    package static func read(_ paths: [String]) throws(JSONLError) -> [JSONLShard] {
        var files: [String] = []
        for p in paths {
            var isDir: ObjCBool = false
            if FileManager.default.fileExists(atPath: p, isDirectory: &isDir), isDir.boolValue {
                let names = ((try? FileManager.default.contentsOfDirectory(atPath: p)) ?? []).filter { $0.hasSuffix(".jsonl") }.sorted()
                guard !names.isEmpty else { throw JSONLError(file: p, message: "no *.jsonl shard files in this directory") }
                files += names.map { (p as NSString).appendingPathComponent($0) }
            } else {
                files.append(p)
            }
        }
        var shards: [JSONLShard] = []
        for f in files { shards.append(try JSONLShard(path: f)) }
        return shards
    }

    /// Checks that `shards` make one whole run and merges them.
    package static func merge(_ shards: [JSONLShard]) throws(JSONLError) -> MergedRun {
        guard let first = shards.first else { throw JSONLError(file: "keymm merge", message: "no shard files given") }
        let h0 = first.header
        // One run: the same identity everywhere.
        for s in shards.dropFirst() {
            let h = s.header
            func foreign(_ what: String, _ a: String, _ b: String) -> JSONLError {
                JSONLError(file: s.file, message: "foreign shard: its \(what) is \(b), but \(first.file)'s is \(a) (not the same run)")
            }
            if h.kind != h0.kind { throw foreign("kind", h0.kind, h.kind) }
            if h.keymm != h0.keymm { throw foreign("KeyMM version", h0.keymm, h.keymm) }
            if h.configHash != h0.configHash { throw foreign("config hash", h0.configHash, h.configHash) }
            if h.shards != h0.shards { throw foreign("number of shards", String(h0.shards), String(h.shards)) }
            if h.units != h0.units { throw foreign("number of units", String(h0.units), String(h.units)) }
        }
        let identity = RunIdentity(kind: h0.kind, plan: h0.plan, units: h0.units)
        guard identity.configHash == h0.configHash else {
            throw JSONLError(file: first.file, message: "the header's plan does not hash to its config_hash \(h0.configHash) (edited by hand?)")
        }
        // Every shard once, each finished.
        let n = h0.shards
        var byShard: [Int: JSONLShard] = [:]
        for s in shards {
            guard s.header.shard >= 0, s.header.shard < n else {
                throw JSONLError(file: s.file, message: "shard \(s.header.shard) is out of range for \(n) shards")
            }
            if let other = byShard[s.header.shard] {
                throw JSONLError(file: s.file, message: "duplicated shard \(s.header.shard)/\(n): also in \(other.file)")
            }
            byShard[s.header.shard] = s
        }
        let missing = (0..<n).filter { byShard[$0] == nil }
        if !missing.isEmpty {
            throw JSONLError(file: "keymm merge", message: "incomplete run (config hash \(h0.configHash)): missing shard\(missing.count == 1 ? "" : "s") "
                             + Self.list(missing) + " of \(n); \(byShard.count) given")
        }
        for s in shards {
            guard let t = s.trailer else {
                let last = s.records.last.map { "its last line is \($0.type) index \($0.index)" } ?? "it has no result line"
                let cut = s.truncatedLine.map { "; line \($0) is cut short" } ?? ""
                throw JSONLError(file: s.file, message: "shard \(s.header.shard)/\(n) did not finish: no trailer (killed or still running?); \(last)\(cut)")
            }
            guard t.shard == s.header.shard, t.shards == n else {
                throw JSONLError(file: s.file, message: "the trailer names shard \(t.shard)/\(t.shards), the header \(s.header.shard)/\(n)")
            }
            let results = s.records.filter { $0.type == "result" }.count
            let violations = s.records.count - results
            guard t.results == results, t.violations == violations else {
                throw JSONLError(file: s.file, message: "the trailer counts \(t.results) results and \(t.violations) violations, the file has \(results) and \(violations)")
            }
        }
        // Every unit in its shard, once.
        let shard = { (i: Int) in Shard(uncheckedIndex: i, count: n) }
        var results: [Int: (file: String, line: Int, data: Data)] = [:]
        var violations: [Int: (file: String, line: Int, data: Data)] = [:]
        for s in shards.sorted(by: { $0.header.shard < $1.header.shard }) {
            for r in s.records {
                guard shard(s.header.shard).contains(r.index) else {
                    throw JSONLError(file: s.file, line: r.line, message: "index \(r.index) does not belong to shard \(s.header.shard)/\(n)")
                }
                if r.type == "result" {
                    if let d = results[r.index] {
                        throw JSONLError(file: s.file, line: r.line, message: "duplicated index \(r.index) (also \(d.file):\(d.line))")
                    }
                    results[r.index] = (s.file, r.line, r.data)
                } else {
                    if let d = violations[r.index] {
                        throw JSONLError(file: s.file, line: r.line, message: "duplicated violation of index \(r.index) (also \(d.file):\(d.line))")
                    }
                    violations[r.index] = (s.file, r.line, r.data)
                }
            }
        }
        let stoppedAt = shards.compactMap { $0.trailer?.stoppedAt }.min()
        let covered = stoppedAt.map { $0 + 1 } ?? h0.units
        let absent = (0..<covered).filter { results[$0] == nil }
        if !absent.isEmpty {
            let owners = Set(absent.map { $0 % n }).sorted().map { byShard[$0]!.file }
            throw JSONLError(file: "keymm merge", message: "incomplete run: missing index\(absent.count == 1 ? "" : "es") " + Self.list(absent)
                             + " of \(h0.units) (in \(owners.joined(separator: ", ")))")
        }
        let seconds = (0..<n).map { byShard[$0]?.trailer?.wallSeconds ?? 0 }
        switch h0.kind {
        case "fuzz":
            let options = try fuzzOptions(plan: h0.plan, file: first.file)
            let plan = FuzzPlan(options)
            guard plan.units == h0.units else {
                throw JSONLError(file: first.file, message: "the plan gives \(plan.units) units, the header says \(h0.units)")
            }
            var programs: [Int: FuzzProgramRecord] = [:]
            var findings: [Int: FuzzFinding] = [:]
            for (u, r) in results where u < covered {
                do { programs[u] = try JSONDecoder().decode(FuzzProgramRecord.self, from: r.data) } catch {
                    throw JSONLError(file: r.file, line: r.line, message: "not a fuzz program line: \(JSONLShard.reason(error))")
                }
            }
            for (u, r) in violations where u < covered {
                do { findings[u] = try JSONDecoder().decode(FuzzFinding.self, from: r.data) } catch {
                    throw JSONLError(file: r.file, line: r.line, message: "not a fuzz violation line: \(JSONLShard.reason(error))")
                }
            }
            // Each policy's first violating program must have its shrunk finding.
            var seen: Set<String> = []
            for u in programs.keys.sorted() {
                let p = programs[u]!
                guard p.violation != nil, !p.unrelated, !seen.contains(p.policy) else { continue }
                seen.insert(p.policy)
                if findings[u] == nil {
                    throw JSONLError(file: results[u]!.file, line: results[u]!.line,
                                     message: "index \(u) broke an invariant but its violation line (the shrunk scenario) is missing")
                }
            }
            let summary = FuzzSummary.assemble(plan: plan, identity: identity, options: options, programs: programs,
                                               findings: findings, stoppedAt: stoppedAt, shardSeconds: seconds)
            return .fuzz(summary, injectBug: options.injectBug)
        case "bench", "sweep":
            var rows: [(index: Int, result: BenchResult)] = []
            for (u, r) in results {
                guard var o = try? JSONDecoder().decode([String: JSONValue].self, from: r.data) else {
                    throw JSONLError(file: r.file, line: r.line, message: "not a JSON object")
                }
                var host: [String: JSONValue] = [:]
                if case .object(let hf)? = o["host"] { host = hf }
                o["type"] = nil; o["index"] = nil; o["host"] = nil
                let row: BenchRow
                do { row = try JSONDecoder().decode(BenchRow.self, from: JSONEncoder().encode(JSONValue.object(o))) } catch {
                    throw JSONLError(file: r.file, line: r.line, message: "not a bench row (docs/bench-json.md): \(JSONLShard.reason(error))")
                }
                rows.append((u, BenchResult(row: row, host: host)))
            }
            var report = BenchReport.assemble(host: byShard[0]!.header.host, results: rows)
            let hosts = Set(shards.map { $0.header.host })
            if hosts.count > 1 {
                report.host["shard_hosts"] = .array((0..<n).map { .object(byShard[$0]!.header.host) })
            }
            report.host["shard_wall_seconds"] = .array(seconds.map { .double($0) })
            return .bench(report)
        default:
            throw JSONLError(file: first.file, message: "unknown kind '\(h0.kind)' (expected fuzz, bench or sweep)")
        }
    }

    /// The fuzz options a header's plan describes (enough to assemble the summary).
    static func fuzzOptions(plan: JSONValue, file: String) throws(JSONLError) -> FuzzOptions {
        func bad(_ what: String) -> JSONLError { JSONLError(file: file, message: "the header's fuzz plan has no valid \(what)") }
        guard let o = plan.objectValue else { throw bad("object") }
        var options = FuzzOptions()
        guard case .string(let seed)? = o["seed"], let s = UInt64(seed) else { throw bad("seed") }
        options.seed = s
        guard let ops = o["ops"]?.number, let episode = o["episode"]?.number else { throw bad("ops/episode") }
        options.ops = Int(ops)
        options.episodeLength = Int(episode)
        guard case .array(let pols)? = o["policies"] else { throw bad("policies") }
        options.policies = try pols.map { v throws(JSONLError) in
            guard case .string(let name) = v, let p = AllocatorPolicy(rawValue: name) else { throw bad("policies") }
            return p
        }
        if case .string(let name)? = o["inject_bug"] {
            guard let b = SeededBug.named(name) else { throw bad("inject_bug (\(name) is unknown to this keymm)") }
            options.injectBug = b
        }
        if case .bool(let k)? = o["keep_going"] { options.keepGoing = k }
        if case .object(let settings)? = o["settings"], case .string(let enc)? = settings["encryption"] {
            do { try options.model.apply(key: "encryption", value: enc) } catch { throw bad("encryption setting") }
        }
        return options
    }

    /// "2, 5, 7-12" (ranges collapsed, at most 20 items).
    static func list(_ xs: [Int]) -> String {
        var parts: [String] = []
        var i = 0
        while i < xs.count {
            var j = i
            while j + 1 < xs.count && xs[j + 1] == xs[j] + 1 { j += 1 }
            parts.append(j > i ? "\(xs[i])-\(xs[j])" : "\(xs[i])")
            i = j + 1
        }
        return parts.count > 20 ? parts.prefix(20).joined(separator: ", ") + ", ..." : parts.joined(separator: ", ")
    }
}
