// `keymm sweep SPEC.toml`: the cartesian product of settings × workloads × policies a TOML spec
// names, as a BenchPlan of numbered points (one bench row each, tagged with its point).
//
//   workloads = ["alloc-free", "tenants"]      # required: bench workloads, in this order
//   policies  = ["none", "integrated"]         # optional (default: all); `none` is added first
//   quick     = true                           # optional: the workloads' short runs
//   cache      = ["1M", "32M"]                 # any --set key: an array is an axis,
//   keyid-bits = [3, 6]                        #   a single value a fixed setting
//   memory     = "4G"
//
// Point order (fixed): settings combinations with the axes' keys in alphabetical order, the first
// key varying slowest and each axis's values in the spec's order; within a combination the
// workloads in the spec's order; within a workload the policies (one point, policy `all`, for a
// policy-independent workload). Every point's configuration is built and validated before
// anything runs, so a bad value anywhere is a located error (`SPEC:LINE:COLUMN: error: ...`)
// and exit 2, never a half-run sweep.
import Foundation
import KeyMMBase
import KeyMMHardware
import KeyMMKernel

/// A parsed sweep spec.
package struct SweepSpec: Sendable {
    package var file: String
    package var workloads: [any BenchWorkload]
    package var policies: [AllocatorPolicy]
    package var quick: Bool
    /// Swept settings: key and values, keys in alphabetical order.
    package var axes: [(key: String, values: [String])]
    /// Settings with one value, applied to every point (document order).
    package var fixed: [(key: String, value: String)]

    /// Parses `text` (the contents of `file`); `base` is the configuration the points start
    /// from (`--config`, `--set`), used to validate every point now.
    package init(text: String, file: String, base: ModelConfig) throws(ConfigFileError) {
        self.file = file
        let doc = try TOMLDocument(text: text, file: file)
        var workloads: [any BenchWorkload] = []
        var policies: [AllocatorPolicy] = []
        var quick = false
        var axes: [(String, [String], TOMLEntry)] = []
        var fixed: [(String, String)] = []
        var sawWorkloads = false
        for e in doc.entries {
            func fail(_ m: String) -> ConfigFileError { ConfigFileError(file: file, line: e.line, column: e.column, message: m) }
            switch e.key {
            case "workloads":
                sawWorkloads = true
                for v in e.values {
                    guard case .string(let name) = v, let w = BenchRegistry.workload(named: name) else {
                        throw fail("workloads: unknown workload \(v.settingText); known: \(BenchRegistry.names.joined(separator: ", "))")
                    }
                    if !workloads.contains(where: { $0.name == name }) { workloads.append(w) }
                }
            case "policies", "policy":
                for v in e.values {
                    guard case .string(let name) = v, let p = AllocatorPolicy(rawValue: name) else {
                        throw fail("\(e.key): unknown policy \(v.settingText); known: \(AllocatorPolicy.allCases.map(\.rawValue).joined(separator: ", "))")
                    }
                    if !policies.contains(p) { policies.append(p) }
                }
            case "quick":
                guard !e.isArray, case .boolean(let b) = e.values[0] else { throw fail("quick: expected true or false") }
                quick = b
            default:
                guard ModelConfig.keys.contains(where: { $0.key == e.key }) else {
                    throw fail("unknown key '\(e.key)'; a sweep spec takes workloads, policies, quick and the settings \(ModelConfig.keys.map(\.key).joined(separator: ", "))")
                }
                // Check each value on its own first, so the error names the value.
                for v in e.values {
                    var probe = base
                    do { try probe.apply(key: e.key, value: v.settingText) } catch { throw fail(error.message) }
                }
                if e.isArray {
                    guard !e.values.isEmpty else { throw fail("'\(e.key)': an empty array gives no points") }
                    if axes.contains(where: { $0.0 == e.key }) { throw fail("'\(e.key)' is swept twice") }
                    axes.append((e.key, e.values.map(\.settingText), e))
                } else {
                    fixed.append((e.key, e.values[0].settingText))
                }
            }
        }
        guard sawWorkloads, !workloads.isEmpty else {
            throw ConfigFileError(file: file, line: 1, column: 1, message: "a sweep spec needs workloads = [\"NAME\", ...]; known: \(BenchRegistry.names.joined(separator: ", "))")
        }
        axes.sort { $0.0 < $1.0 }
        self.workloads = workloads
        self.policies = policies
        self.quick = quick
        self.axes = axes.map { ($0.0, $0.1) }
        self.fixed = fixed
        // Validate every combination (e.g. keyid-bits against phys-bits) before anything runs.
        for (n, combo) in combinations.enumerated() {
            do { _ = try config(base: base, combination: combo) } catch {
                let key = combo.first?.key
                let entry = axes.first { $0.0 == key }?.2
                throw ConfigFileError(file: file, line: entry?.line ?? 1, column: entry?.column ?? 1,
                                      message: "settings combination \(n) (\(combo.map { "\($0.key)=\($0.value)" }.joined(separator: " "))): \(error.message)")
            }
        }
    }

    /// Every combination of the axes' values, in point order.
    package var combinations: [[(key: String, value: String)]] {
        var out: [[(key: String, value: String)]] = [[]]
        for axis in axes {
            out = out.flatMap { prefix in axis.values.map { prefix + [(axis.key, $0)] } }
        }
        return out
    }

    /// The configuration of one combination: base, the fixed settings, then the swept ones.
    func config(base: ModelConfig, combination: [(key: String, value: String)]) throws(ModelConfig.SettingError) -> ModelConfig {
        var c = base
        for (k, v) in fixed { try c.apply(key: k, value: v) }
        for (k, v) in combination { try c.apply(key: k, value: v) }
        try c.validate()
        return c
    }

    /// The sweep's units in point order.
    package func plan(base: ModelConfig, costs: CostProfile, quick quickFlag: Bool = false) throws(ConfigFileError) -> BenchPlan {
        let pols = BenchPlan.policies(policies)
        var units: [BenchUnit] = []
        for combo in combinations {
            let c: ModelConfig
            do { c = try config(base: base, combination: combo) } catch {
                throw ConfigFileError(file: file, line: 1, column: 1, message: error.message)
            }
            var settings: [String: String] = [:]
            for (k, v) in combo { settings[k] = v }
            for w in workloads {
                for p in w.policyIndependent ? [nil] : pols.map(Optional.some) {
                    var uc = c
                    if let p { uc.kernel.policy = p }
                    for v in w.variantsOrNil(quick: quick || quickFlag) {
                        units.append(BenchUnit(workload: w, policy: p, config: uc, point: BenchPoint(index: units.count, settings: settings),
                                               variant: v))
                    }
                }
            }
        }
        let json: JSONValue = .object([
            "workloads": .array(workloads.map { .string($0.name) }), "policies": .array(pols.map { .string($0.rawValue) }),
            "axes": .array(axes.map { .object(["key": .string($0.key), "values": .array($0.values.map { .string($0) })]) }),
            "fixed": .array(fixed.map { .array([.string($0.key), .string($0.value)]) }),
            "settings": base.planJSON, "costs": costs.planJSON, "quick": .bool(quick || quickFlag),
        ])
        return BenchPlan(kind: "sweep", units: units, costs: costs, quick: quick || quickFlag, planJSON: json)
    }
}
