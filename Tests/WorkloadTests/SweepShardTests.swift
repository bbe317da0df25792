// `keymm sweep` and `keymm bench` in shards: the fixed point order, the merge of N shards (N = 1,
// 3, 7) equal to the unsharded sweep in every modeled number and counter, bench shards likewise,
// merge refusals, and located errors in sweep specs.
import Foundation
import Testing
import KeyMM

enum SweepRuns {
    static let spec = """
        # two axes x one workload x two policies = 8 points
        workloads = ["alloc-free"]
        policies = ["integrated"]        # none is added first
        quick = true
        keyid-bits = [3, 6]
        cache = ["256K", "1M"]
        memory = "256M"
        """

    /// The merge tests' sweep: one axis, 4 points (cheap to run four times over).
    static let small = """
        workloads = ["alloc-free"]
        policies = ["integrated"]
        quick = true
        keyid-bits = [3, 6]
        memory = "256M"
        """

    static func plan(_ text: String = spec) throws -> BenchPlan {
        try SweepSpec(text: text, file: "sweep.toml", base: ModelConfig()).plan(base: ModelConfig(), costs: .default)
    }

    static func shard(_ plan: BenchPlan, _ shard: Shard) throws -> JSONLShard {
        var data = Data()
        try BenchRunner.runShard(plan, shard: shard, writer: JSONLWriter { data.append($0) })
        return try JSONLShard(data: data, file: "sweep-\(shard.index).jsonl")
    }

    static func merged(_ plan: BenchPlan, count n: Int) throws -> BenchReport {
        let shards = try (0..<n).map { try shard(plan, Shard(index: $0, count: n)!) }
        guard case .bench(let r) = try CampaignMerge.merge(shards) else { throw CancellationError() }
        return r
    }
}

@Suite struct SweepShardTests {
    static let whole = try? BenchRunner.run(SweepRuns.plan(SweepRuns.small))

    @Test func pointsAreInTheDocumentedOrder() throws {
        let plan = try SweepRuns.plan()
        let labels = plan.units.map { "\($0.point!.label) \($0.workload.name) \($0.policy!.rawValue)" }
        #expect(labels == [
            "cache=256K keyid-bits=3 alloc-free none", "cache=256K keyid-bits=3 alloc-free integrated",
            "cache=256K keyid-bits=6 alloc-free none", "cache=256K keyid-bits=6 alloc-free integrated",
            "cache=1M keyid-bits=3 alloc-free none", "cache=1M keyid-bits=3 alloc-free integrated",
            "cache=1M keyid-bits=6 alloc-free none", "cache=1M keyid-bits=6 alloc-free integrated",
        ])
        #expect(plan.units.map { $0.point!.index } == Array(0..<8))
        #expect(plan.units.allSatisfy { $0.config.machine.memory == .mib(256) })
        #expect(plan.units[4].config.machine.cacheSize == .mib(1) && plan.units[4].config.machine.keyidBits == 3)
    }

    @Test(arguments: [1, 3, 7])
    func mergeOfSweepShardsIsTheUnshardedSweep(_ n: Int) throws {
        let whole = try #require(SweepShardTests.whole)
        let merged = try SweepRuns.merged(SweepRuns.plan(SweepRuns.small), count: n)
        // What each writes, host time and host facts aside, byte for byte.
        #expect(try merged.modeledOnly.jsonData() == whole.modeledOnly.jsonData())
        #expect(merged.results.count == 4)
        #expect(merged.results.allSatisfy { $0.ratioVsNone != nil && $0.point != nil })
        // Ratios are taken within a point's settings: integrated vs none at the same KeyID bits.
        let r = merged.results[3], base = merged.results[2]
        #expect(r.ratioVsNone == Double(r.modeledCycles) / Double(base.modeledCycles))
    }

    @Test func reportReadsADirectoryOfShards() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("keymm-report-shards-\(getpid())")
        try? FileManager.default.removeItem(at: dir)
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let plan = try SweepRuns.plan(SweepRuns.small)
        for i in 0..<2 {
            var data = Data()
            try BenchRunner.runShard(plan, shard: Shard(index: i, count: 2)!, writer: JSONLWriter { data.append($0) })
            try data.write(to: dir.appendingPathComponent("sweep-\(i).jsonl"))
        }
        var report = HTMLReport()
        try report.add(shards: [dir.path])
        #expect(report.benches.first?.report.results.count == 4)
        let html = report.render()
        // Sweep groups are labelled workload, then one line per setting.
        #expect(html.contains(">alloc-free</text>") && html.contains(">keyid-bits=6</text>"))
        // A missing shard is a located error, not a partial report.
        try FileManager.default.removeItem(at: dir.appendingPathComponent("sweep-1.jsonl"))
        var partial = HTMLReport()
        #expect(throws: ReportInputError.self) { try partial.add(shards: [dir.path]) }
    }

    @Test func benchShardsMergeToTheUnshardedBench() throws {
        var config = ModelConfig()
        try config.apply("memory=256M")
        let workloads = ["alloc-free", "tenants"].compactMap { BenchRegistry.workload(named: $0) }
        let plan = BenchPlan.bench(workloads, policies: [.integrated], config: config, costs: .default, quick: true)
        let whole = try BenchRunner.run(plan)
        let merged = try SweepRuns.merged(plan, count: 3)
        #expect(try merged.modeledOnly.jsonData() == whole.modeledOnly.jsonData())
        #expect(merged.results.map(\.workload) == ["alloc-free", "alloc-free", "tenants", "tenants"])
        #expect(merged.results.allSatisfy { $0.point == nil })
    }

    @Test func aWorkloadsCasesAreUnitsOfTheirOwn() throws {
        // `sgx` runs each case under each design as its own unit: shards split its rows, and
        // their merge is the unsharded bench.
        let sgx = try #require(BenchRegistry.workload(named: "sgx"))
        let plan = BenchPlan.bench([sgx], policies: [], config: ModelConfig(), costs: .default, quick: true)
        #expect(plan.units.count == sgx.variants(quick: true).count && plan.units.count > 4)
        #expect(Set(plan.units.compactMap(\.variant)).count == plan.units.count)
        let whole = try BenchRunner.run(plan)
        let merged = try SweepRuns.merged(plan, count: 3)
        #expect(try merged.modeledOnly.jsonData() == whole.modeledOnly.jsonData())
        #expect(whole.results.count == plan.units.count)
        #expect(whole.results.allSatisfy { $0.workload.hasPrefix("sgx/") })
    }

    @Test func mergeRefusesAShardOfAnotherSweep() throws {
        let plan = try SweepRuns.plan(SweepRuns.small)
        let other = try SweepRuns.plan(SweepRuns.small.replacingOccurrences(of: "[3, 6]", with: "[3, 5]"))
        let a = try SweepRuns.shard(plan, Shard(index: 0, count: 2)!)
        let b = try SweepRuns.shard(other, Shard(index: 1, count: 2)!)
        #expect(throws: JSONLError.self) { try CampaignMerge.merge([a, b]) }
        do { _ = try CampaignMerge.merge([a, b]) } catch { #expect(error.message.contains("config hash")) }
        do { _ = try CampaignMerge.merge([a]) } catch { #expect(error.message.contains("missing shard 1 of 2")) }
    }

    @Test(arguments: [
        ("workloads = [\"nope\"]\n", 1, 1, "unknown workload"),
        ("workloads = [\"alloc-free\"]\n\ncache = [\"1M\", \"lots\"]\n", 3, 1, "invalid value 'lots' for 'cache'"),
        ("workloads = [\"alloc-free\"]\n[machine]\n  colour = \"red\"\n", 3, 3, "unknown key 'colour'"),
        ("workloads = [\"alloc-free\"]\nkeyid-bits = [6, 16]\nphys-bits = 40\n", 2, 1, "settings combination 1 (keyid-bits=16)"),
        ("workloads = [\"alloc-free\"\n", 1, 27, "end-of-file"),
        ("cache = [\"1M\"]\n", 1, 1, "needs workloads"),
        ("workloads = [\"alloc-free\"]\nmemory = 1.5\n", 2, 1, "floating-point"),
    ] as [(String, Int, Int, String)])
    func badSpecsAreLocated(_ text: String, _ line: Int, _ column: Int, _ message: String) {
        do {
            _ = try SweepSpec(text: text, file: "s.toml", base: ModelConfig())
            Issue.record("accepted: \(text)")
        } catch {
            #expect(error.line == line && error.column == column, "\(error)")
            #expect(error.description.contains(message), "\(error)")
            #expect(error.description.hasPrefix("s.toml:\(line):\(column): error: "))
        }
    }
}

@Suite struct ConfigFileTests {
    @Test func settingsInTablesApplyInDocumentOrder() throws {
        var m = ModelConfig()
        try m.applyTOML("""
            # a config
            memory = "4G"
            [machine]
            nodes = 2
            cache = "8M"   # comment
            [kernel]
            user-keys = false
            max-map-count = 1_000
            """, file: "c.toml")
        #expect(m.machine.memory == .gib(4) && m.machine.nodes == 2 && m.machine.cacheSize == .mib(8))
        #expect(!m.kernel.userKeys && m.kernel.maxMapCount == 1000)
    }

    @Test(arguments: [
        ("memory = 4G\n", 1, 11, "invalid TOML"),
        ("nodes = 2\nnodes = 3\n", 2, 9, "cannot redefine"),
        ("\n[machine]\n  nodes = 99\n", 3, 3, "invalid value '99' for 'nodes'"),
        ("cache = [\"1M\", \"2M\"]\n", 1, 1, "an array is a sweep axis"),
        ("colour = \"red\"\n", 1, 1, "unknown setting 'colour'"),
        ("seed = 1979-05-27\n", 1, 1, "date"),
        ("m = { a = 1 }\n", 1, 1, "inline table"),
    ] as [(String, Int, Int, String)])
    func badConfigIsLocated(_ text: String, _ line: Int, _ column: Int, _ message: String) {
        var m = ModelConfig()
        do {
            try m.applyTOML(text, file: "c.toml")
            Issue.record("accepted: \(text)")
        } catch {
            #expect(error.line == line && error.column == column, "\(error)")
            #expect(error.description.contains(message), "\(error)")
        }
    }
}
