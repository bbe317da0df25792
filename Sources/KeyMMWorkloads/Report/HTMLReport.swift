// `keymm report`: one self-contained HTML file (inline CSS and SVG, no script, no network) from
// bench JSON results (docs/bench-json.md), sweep results (rows grouped by workload and point),
// fuzz summaries, JSONL shards (merged first, Campaign/Merge.swift) and, optionally, run JSON
// (docs/run-json.md).
//
// Charts: modeled overhead (ratio_vs_none) per policy per workload, with numbered notes beside
// surprising bars (ReportNotes.swift); flushed lines and KeyID switches per workload and policy
// (log scale); the modeled cost breakdown of each row (counters priced with a cost profile; the
// seven largest events coloured, the rest grey); KeyID occupancy over time (keyid-pressure's
// `occupancy` series, one chart per distinct series); the address space of each process in a run
// colored by KeyID (`processes[].vmas[].keyid`). Colours: Okabe-Ito (colour-blind safe); linear
// axes tick at 1, 2 or 5 times a power of ten, log axes at powers of ten.
//
// Invariants: the output depends only on the inputs (deterministic: inputs in order, keys sorted);
// every string from an input is HTML-escaped; bad JSON is reported with FILE:LINE:COLUMN.
import Foundation
import KeyMMHardware

/// A report input that could not be read or is not valid JSON.
public struct ReportInputError: Error, CustomStringConvertible, Sendable {
    public let file: String
    public let line: Int
    public let column: Int
    public let message: String
    public var description: String { "\(file):\(line):\(column): error: \(message)" }
}

/// Builds the HTML report.
public struct HTMLReport {
    /// Bench reports, in input order, with their file names.
    public var benches: [(file: String, report: BenchReport)] = []
    /// Run results (run JSON), as JSON trees, with their file names.
    public var runs: [(file: String, json: JSONValue)] = []
    /// Fuzz summaries (`keymm fuzz --json`, `keymm merge` of a campaign), with their file names.
    public var fuzz: [(file: String, summary: FuzzSummary)] = []
    /// Prices for the cost breakdown.
    public var costs: CostProfile = .default

    public init() {}

    /// Merges JSONL shards (files, or directories of `*.jsonl`) and adds the merged result.
    public mutating func add(shards paths: [String]) throws(ReportInputError) {
        let name = paths.joined(separator: " ")
        do {
            switch try CampaignMerge.merge(CampaignMerge.read(paths)) {
            case .bench(let report): benches.append((name, report))
            case .fuzz(let summary, _): fuzz.append((name, summary))
            }
        } catch {
            throw ReportInputError(file: error.file, line: error.line, column: error.column, message: error.message)
        }
    }

    /// Reads one input file: a bench report (`results`), a fuzz summary (`kind: fuzz`) or a run
    /// result (`processes`).
    public mutating func add(file: String) throws(ReportInputError) {
        guard let data = FileManager.default.contents(atPath: file) else {
            throw ReportInputError(file: file, line: 1, column: 1, message: "cannot read file")
        }
        try add(data: data, name: file)
    }

    /// Adds one input given as bytes.
    public mutating func add(data: Data, name: String) throws(ReportInputError) {
        if let (offset, msg) = JSONSyntax.firstError(in: Array(data)) {
            let (l, c) = JSONSyntax.lineColumn(Array(data), offset)
            throw ReportInputError(file: name, line: l, column: c, message: "invalid JSON: \(msg)")
        }
        let tree: JSONValue
        do { tree = try JSONDecoder().decode(JSONValue.self, from: data) } catch {
            throw ReportInputError(file: name, line: 1, column: 1, message: "invalid JSON: \(error)")
        }
        guard case .object(let o) = tree else {
            throw ReportInputError(file: name, line: 1, column: 1, message: "expected a JSON object (bench or run result)")
        }
        if case .string("fuzz")? = o["kind"] {
            do { fuzz.append((name, try JSONDecoder().decode(FuzzSummary.self, from: data))) } catch {
                throw ReportInputError(file: name, line: 1, column: 1, message: "not a fuzz summary (docs/jsonl.md): \(error)")
            }
        } else if o["results"] != nil {
            do { benches.append((name, try JSONDecoder().decode(BenchReport.self, from: data))) } catch {
                throw ReportInputError(file: name, line: 1, column: 1, message: "not a bench result (docs/bench-json.md): \(error)")
            }
        } else if o["processes"] != nil || o["calls"] != nil {
            runs.append((name, tree))
        } else {
            throw ReportInputError(file: name, line: 1, column: 1, message: "neither a bench result (`results`) nor a run result (`processes`)")
        }
    }

    /// All bench rows, in input order.
    var rows: [BenchRow] { benches.flatMap(\.report.results) }

    /// The whole HTML document.
    public func render() -> String {
        var h = """
        <!DOCTYPE html>
        <html lang="en"><head><meta charset="utf-8"><title>KeyMM report</title>
        <style>
        body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;max-width:1140px}
        h1{font-size:22px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ccc}
        table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ddd;padding:2px 6px;text-align:right}
        th{background:#f3f3f3}td.l,th.l{text-align:left}.note{color:#666;font-size:12px}
        ol.notes{font-size:13px;max-width:1000px;background:#fff8e6;border-left:3px solid #E69F00;padding:6px 6px 6px 28px}
        svg{display:block;margin:8px 0}svg text{font:11px system-ui,sans-serif}
        </style></head><body>
        <h1>KeyMM report</h1>

        """
        h += "<p class=\"note\">Inputs: " + (benches.map(\.file) + fuzz.map(\.file) + runs.map(\.file)).map(htmlEscape).joined(separator: ", ")
            + ". Modeled cycles come from the cost clock (deterministic); wall seconds are host time.</p>\n"
        if !rows.isEmpty {
            h += section("Modeled overhead per policy (modeled cycles / MKTME off)", overheadChart())
            h += section("Flushed cache lines and KeyID switches (log scale)", flushChart())
            h += section("Cost breakdown (counters priced with the \(htmlEscape(costs.name)) cost profile)", breakdownChart())
            if let occ = occupancyChart() { h += section("KeyID occupancy over time (keyid-pressure)", occ) }
            h += section("Rows", rowTable())
            h += section("Host", hostTable())
        }
        for f in fuzz { h += section("Fuzz campaign: \(htmlEscape(f.file))", fuzzTable(f.summary)) }
        for run in runs { h += section("Address space by KeyID: \(htmlEscape(run.file))", addressSpace(run.json)) }
        h += "</body></html>\n"
        return h
    }

    // MARK: charts

    static let policyOrder = ["none", "wrapper", "integrated", "eager", "per-keyid", "all"]
    /// Okabe & Ito's colour-blind-safe categorical palette (Color Universal Design, 2008): orange,
    /// sky blue, bluish green, yellow, blue, vermillion, reddish purple; grey for "the rest".
    static let okabeIto = ["#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7"]
    static let grey = "#999999"
    static let policyColor = ["none": grey, "wrapper": "#D55E00", "integrated": "#009E73", "eager": "#E69F00",
                              "per-keyid": "#0072B2", "all": "#000000"]
    static let keyidColors = ["#e6e6e6"] + okabeIto

    func section(_ title: String, _ body: String) -> String { "<h2>\(title)</h2>\n\(body)\n" }

    var workloads: [String] {
        var seen: [String] = []
        for r in rows where r.policy != "all" && !seen.contains(r.group) { seen.append(r.group) }
        return seen
    }

    var policies: [String] {
        let present = Set(rows.filter { $0.policy != "all" }.map(\.policy))
        return Self.policyOrder.filter(present.contains) + present.subtracting(Self.policyOrder).sorted()
    }

    /// The row of group `w` (workload, and sweep point settings) under policy `p`.
    func row(_ w: String, _ p: String) -> BenchRow? { rows.last { $0.group == w && $0.policy == p } }

    func legend(_ x: Int, _ y: Int) -> String {
        var s = "", dx = x
        for p in policies {
            s += "<rect x=\"\(dx)\" y=\"\(y - 9)\" width=\"10\" height=\"10\" fill=\"\(Self.policyColor[p] ?? "#555")\"/>"
            s += "<text x=\"\(dx + 14)\" y=\"\(y)\">\(htmlEscape(p))</text>"
            dx += 24 + 7 * p.count
        }
        return s
    }

    /// Grouped bars: one group per workload, one bar per policy; `value` nil skips a bar.
    func groupedBars(value: (BenchRow) -> Double?, log: Bool, label: (Double) -> String, series: [String]? = nil,
                     marks: [String: String] = [:]) -> String {
        let ws = workloads, ps = series ?? policies
        guard !ws.isEmpty, !ps.isEmpty else { return "<p class=\"note\">no policy rows</p>" }
        let barW = 14, gap = 26, left = 60, top = 24, height = 240
        let groupW = ps.count * barW + gap
        let width = left + ws.count * groupW + 20
        var vals: [Double] = []
        for w in ws { for p in ps { if let r = row(w, p), let v = value(r) { vals.append(v) } } }
        let dataMax = max(vals.max() ?? 1, log ? 10 : 1)
        // Linear axes end on a round tick (a 1, 2 or 5 step); log axes on a power of ten.
        let step = Self.niceStep(dataMax)
        let maxV = log ? pow(10, log10(dataMax).rounded(.up)) : (dataMax / step).rounded(.up) * step
        func y(_ v: Double) -> Double {
            if log { return Double(height) * (1 - log10(max(v, 1)) / max(log10(maxV), 1)) }
            return Double(height) * (1 - v / maxV)
        }
        // A group label is the workload, then (sweeps) one line per setting under it.
        let labelLines = ws.map { Self.labelLines($0) }
        let extra = 12 * ((labelLines.map(\.count).max() ?? 1) - 1)
        var s = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(width)\" height=\"\(top + height + 60 + extra)\" viewBox=\"0 0 \(width) \(top + height + 60 + extra)\">"
        s += "<g transform=\"translate(0,\(top))\">"
        // Axis and grid.
        let ticks: [Double] = log ? (0...Int(log10(maxV).rounded())).map { pow(10, Double($0)) }
                                  : (0...Int((maxV / step).rounded())).map { Double($0) * step }
        for t in ticks {
            let yy = y(t)
            s += "<line x1=\"\(left)\" x2=\"\(width - 10)\" y1=\"\(svgNum(yy))\" y2=\"\(svgNum(yy))\" stroke=\"#eee\"/>"
            s += "<text x=\"\(left - 4)\" y=\"\(svgNum(yy + 4))\" text-anchor=\"end\">\(htmlEscape(label(t)))</text>"
        }
        if !log, maxV >= 1 {
            let y1 = y(1)
            s += "<line x1=\"\(left)\" x2=\"\(width - 10)\" y1=\"\(svgNum(y1))\" y2=\"\(svgNum(y1))\" stroke=\"#333\" stroke-dasharray=\"4 3\"/>"
        }
        for (gi, w) in ws.enumerated() {
            let gx = left + gi * groupW + gap / 2
            for (pi, p) in ps.enumerated() {
                guard let r = row(w, p), let v = value(r) else { continue }
                let yy = y(v), x = gx + pi * barW
                s += "<rect x=\"\(x)\" y=\"\(svgNum(yy))\" width=\"\(barW - 2)\" height=\"\(svgNum(max(Double(height) - yy, 0)))\" fill=\"\(Self.policyColor[p] ?? "#555")\">"
                s += "<title>\(htmlEscape(w)) / \(htmlEscape(p)): \(htmlEscape(label(v)))</title></rect>"
                if let m = marks["\(w)/\(p)"] {
                    s += "<text x=\"\(x + (barW - 2) / 2)\" y=\"\(svgNum(yy - 4))\" text-anchor=\"middle\" font-weight=\"bold\">\(htmlEscape(m))</text>"
                }
            }
            for (li, text) in labelLines[gi].enumerated() {
                s += "<text x=\"\(gx + ps.count * barW / 2)\" y=\"\(height + 16 + 12 * li)\" text-anchor=\"middle\">\(htmlEscape(text))</text>"
            }
        }
        s += "<line x1=\"\(left)\" x2=\"\(left)\" y1=\"0\" y2=\"\(height)\" stroke=\"#333\"/>"
        s += "<line x1=\"\(left)\" x2=\"\(width - 10)\" y1=\"\(height)\" y2=\"\(height)\" stroke=\"#333\"/>"
        s += legend(left, height + 42 + extra)
        s += "</g></svg>"
        return s
    }

    func overheadChart() -> String {
        let notes = ReportNotes(rows: rows.filter { $0.policy != "all" }, costs: costs).notes
        var marks: [String: String] = [:]
        for (i, n) in notes.enumerated() {
            let key = "\(n.workload)/\(n.policy)"
            marks[key] = (marks[key].map { $0 + "," } ?? "") + "\(i + 1)"
        }
        var s = groupedBars(value: { $0.ratioVsNone }, log: false, label: { Self.ratioLabel($0) }, marks: marks)
            + "<p class=\"note\">Bar height: modeled cycles of the workload under the policy divided by the same workload with MKTME off (policy none, dashed line = 1x). Numbered bars have a note below.</p>"
        if !notes.isEmpty {
            s += "<ol class=\"notes\">" + notes.map { "<li><b>\(htmlEscape($0.workload)) / \(htmlEscape($0.policy))</b>: \(htmlEscape($0.text))</li>" }.joined() + "</ol>"
        }
        return s
    }

    /// `2x`, `1.5x`, `0.25x`: a tick label without trailing zeros.
    static func ratioLabel(_ v: Double) -> String {
        var t = String(format: "%.2f", v)
        while t.hasSuffix("0") { t.removeLast() }
        if t.hasSuffix(".") { t.removeLast() }
        return t + "x"
    }

    /// A count for an axis or a hover: `1`, `250`, `10k`, `1.5M` (no trailing zeros).
    static func countLabel(_ v: Double) -> String {
        for (unit, scale) in [("G", 1e9), ("M", 1e6), ("k", 1e3)] where abs(v) >= scale {
            var t = String(format: "%.2f", v / scale)
            while t.hasSuffix("0") { t.removeLast() }
            if t.hasSuffix(".") { t.removeLast() }
            return t + unit
        }
        return compact(v)
    }

    /// The step of round ticks (1, 2 or 5 times a power of ten) for about 4 to 6 ticks up to `maxV`.
    static func niceStep(_ maxV: Double) -> Double {
        guard maxV > 0, maxV.isFinite else { return 1 }
        let rough = maxV / 5
        let magnitude = pow(10, (log10(rough)).rounded(.down))
        for m in [1.0, 2, 5, 10] where rough <= m * magnitude { return m * magnitude }
        return 10 * magnitude
    }

    func flushChart() -> String {
        groupedBars(value: { Double($0.counters["flushed_lines"] ?? 0) }, log: true, label: { Self.countLabel($0) })
            + "<p class=\"note\">flushed_lines per workload and policy.</p>"
            + groupedBars(value: { Double($0.counters["keyid_switches"] ?? 0) }, log: true, label: { Self.countLabel($0) })
            + "<p class=\"note\">keyid_switches (a frame changing KeyID) per workload and policy.</p>"
    }

    /// Stacked horizontal bars: each row's modeled cycles split by event (counter × price). The
    /// seven events with the most cycles over all rows get the palette's seven colours; the rest
    /// are one grey "other" segment (its parts in the hover text), so every colour is tellable.
    func breakdownChart() -> String {
        var events: [(name: String, price: UInt64)] = []
        for e in CostEvent.allCases { events.append((e.counterName, costs[e])) }
        let rs = rows.filter { $0.policy != "all" }
        guard !rs.isEmpty else { return "<p class=\"note\">no policy rows</p>" }
        func parts(_ r: BenchRow) -> [(String, Double)] {
            events.compactMap { e in
                guard let n = r.counters[e.name], n > 0, e.price > 0 else { return nil }
                return (e.name, Double(n) * Double(e.price))
            }
        }
        // Share of each event, averaged over rows (each row is drawn at 100%).
        var weight: [String: Double] = [:]
        for r in rs {
            let p = parts(r)
            let total = p.reduce(0) { $0 + $1.1 }
            guard total > 0 else { continue }
            for (name, c) in p { weight[name, default: 0] += c / total }
        }
        let named = weight.sorted { $0.value != $1.value ? $0.value > $1.value : $0.key < $1.key }
            .prefix(Self.okabeIto.count).map(\.key)
        func color(_ name: String) -> String { named.firstIndex(of: name).map { Self.okabeIto[$0] } ?? Self.grey }
        let longest = rs.map { $0.group.count + $0.policy.count + 3 }.max() ?? 0
        let left = max(190, 7 * longest), barH = 14, width = 1100 + max(0, left - 190), plotW = width - left - 20
        var s = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(width)\" height=\"\(rs.count * (barH + 4) + 50)\">"
        var hasOther = false
        for (i, r) in rs.enumerated() {
            let y = 10 + i * (barH + 4)
            s += "<text x=\"\(left - 6)\" y=\"\(y + 11)\" text-anchor=\"end\">\(htmlEscape(r.group)) / \(htmlEscape(r.policy))</text>"
            let p = parts(r)
            let total = p.reduce(0) { $0 + $1.1 }
            guard total > 0 else { continue }
            var x = Double(left)
            for (name, c) in p where named.contains(name) {
                let w = c / total * Double(plotW)
                s += "<rect x=\"\(svgNum(x))\" y=\"\(y)\" width=\"\(svgNum(w))\" height=\"\(barH)\" fill=\"\(color(name))\"><title>\(htmlEscape(name)): \(Self.compact(c)) cycles (\(String(format: "%.1f", c / total * 100))%)</title></rect>"
                x += w
            }
            let rest = p.filter { !named.contains($0.0) }
            let restCycles = rest.reduce(0) { $0 + $1.1 }
            if restCycles > 0 {
                hasOther = true
                let w = restCycles / total * Double(plotW)
                let detail = rest.sorted { $0.1 > $1.1 }.map { "\($0.0) \(Self.compact($0.1))" }.joined(separator: ", ")
                s += "<rect x=\"\(svgNum(x))\" y=\"\(y)\" width=\"\(svgNum(w))\" height=\"\(barH)\" fill=\"\(Self.grey)\"><title>other: \(Self.compact(restCycles)) cycles (\(String(format: "%.1f", restCycles / total * 100))%): \(htmlEscape(detail))</title></rect>"
            }
        }
        var lx = left
        let ly = rs.count * (barH + 4) + 30
        for name in named + (hasOther ? ["other"] : []) {
            let w = 24 + 7 * name.count
            s += "<rect x=\"\(lx)\" y=\"\(ly - 9)\" width=\"10\" height=\"10\" fill=\"\(name == "other" ? Self.grey : color(name))\"/><text x=\"\(lx + 13)\" y=\"\(ly)\">\(htmlEscape(name))</text>"
            lx += w
        }
        s += "</svg>"
        return s + "<p class=\"note\">Each bar is 100% of the row's priced counters; hover a segment for its cycles (\"other\" lists its parts). Prices: \(htmlEscape(costs.name)) profile (modeled cycles in the rows were charged with the profile named in each row's extras).</p>"
    }

    /// Stacked areas of in-use / dead / free KeyIDs per turn, from keyid-pressure rows. Policies
    /// whose series are identical share one chart (the key life cycle does not depend on the flush
    /// policy); a chart per distinct series otherwise, naming its policies.
    func occupancyChart() -> String? {
        var groups: [(series: [(Double, Double, Double, Double)], policies: [String], refused: Double)] = []
        for r in rows where r.workload == "keyid-pressure" && r.policy != "none" {
            guard case .array(let series)? = r.extra?["occupancy"], !series.isEmpty else { continue }
            var pts: [(Double, Double, Double, Double)] = []
            for v in series {
                guard case .array(let a) = v, a.count >= 4, let t = a[0].number, let u = a[1].number, let d = a[2].number, let fr = a[3].number else { continue }
                pts.append((t, u, d, fr))
            }
            guard !pts.isEmpty else { continue }
            let refused = r.extra?["enokey_refusals"]?.number ?? 0
            if let i = groups.firstIndex(where: { g in g.refused == refused && g.series.count == pts.count
                && zip(g.series, pts).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 && $0.2 == $1.2 && $0.3 == $1.3 } }) {
                groups[i].policies.append(r.policy)
            } else {
                groups.append((pts, [r.policy], refused))
            }
        }
        guard !groups.isEmpty else { return nil }
        let used = "#D55E00", dead = "#E69F00", free = "#e6e6e6"
        var out = ""
        for g in groups {
            let pts = g.series
            guard let last = pts.last else { continue }
            let total = max(pts.map { $0.1 + $0.2 + $0.3 }.max() ?? 1, 1)
            let left = 50, w = 620, hgt = 160
            func x(_ t: Double) -> Double { Double(left) + t / max(last.0, 1) * Double(w) }
            func y(_ v: Double) -> Double { 10 + Double(hgt) * (1 - v / total) }
            func edge(_ p: (Double, Double, Double, Double), _ upTo: Int) -> Double {
                [p.1, p.2, p.3].prefix(upTo).reduce(0, +)
            }
            func band(_ lo: Int, _ hi: Int, _ color: String, _ name: String) -> String {
                var q = pts.map { "\(svgNum(x($0.0))),\(svgNum(y(edge($0, hi))))" }
                q += pts.reversed().map { "\(svgNum(x($0.0))),\(svgNum(y(edge($0, lo))))" }
                return "<polygon points=\"\(q.joined(separator: " "))\" fill=\"\(color)\"><title>\(name)</title></polygon>"
            }
            let label = g.policies.count > 1 ? "identical under the policies" : "policy"
            var s = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(left + w + 300)\" height=\"\(hgt + 50)\">"
            s += band(0, 1, used, "in use")
            s += band(1, 2, dead, "dead (key destroyed, pages still referencing)")
            s += band(2, 3, free, "free")
            for k in 0...Int(total) {
                s += "<text x=\"\(left - 6)\" y=\"\(svgNum(y(Double(k)) + 4))\" text-anchor=\"end\">\(k)</text>"
            }
            s += "<text x=\"\(left)\" y=\"\(hgt + 28)\">turn 0</text><text x=\"\(left + w)\" y=\"\(hgt + 28)\" text-anchor=\"end\">turn \(Int(last.0))</text>"
            let lx = left + w + 12
            s += "<rect x=\"\(lx)\" y=\"20\" width=\"10\" height=\"10\" fill=\"\(used)\"/><text x=\"\(lx + 14)\" y=\"29\">in use</text>"
            s += "<rect x=\"\(lx)\" y=\"40\" width=\"10\" height=\"10\" fill=\"\(dead)\"/><text x=\"\(lx + 14)\" y=\"49\">dead (key gone, pages pinned)</text>"
            s += "<rect x=\"\(lx)\" y=\"60\" width=\"10\" height=\"10\" fill=\"\(free)\" stroke=\"#999\" stroke-width=\"0.5\"/><text x=\"\(lx + 14)\" y=\"69\">free</text>"
            s += "<text x=\"\(lx)\" y=\"95\">\(htmlEscape(label))</text>"
            s += "<text x=\"\(lx)\" y=\"112\">\(htmlEscape(g.policies.joined(separator: ", ")))</text>"
            s += "<text x=\"\(lx)\" y=\"129\">ENOKEY refusals: \(Int(g.refused))</text>"
            s += "</svg>"
            out += s
        }
        let same = groups.count == 1 && groups[0].policies.count > 1
        return out + "<p class=\"note\">KeyID slots per turn: in use by a live key, dead (key destroyed, pinned pages still hold references), free."
            + (same ? " One chart: the series is the same under every policy, because when a key dies and a KeyID frees depends on the tenants' keys and pins, not on the flush policy (the policies differ in what a release costs: the overhead chart and its notes)." : "")
            + "</p>"
    }

    /// One strip per process: its VMAs in address order, width by log2(pages), color by KeyID.
    func addressSpace(_ run: JSONValue) -> String {
        guard case .object(let o) = run, case .array(let procs)? = o["processes"], !procs.isEmpty else {
            return "<p class=\"note\">no processes in this run result</p>"
        }
        var s = ""
        var keyidsSeen: Set<Int> = []
        // A run over several files tags each process with its file: the label names both.
        func label(_ p: JSONValue) -> String {
            guard case .object(let po) = p else { return "?" }
            let pid = "pid " + (po["pid"]?.number.map { String(Int($0)) } ?? "?")
            guard case .string(let file)? = po["file"] else { return pid }
            return (file as NSString).lastPathComponent + " " + pid
        }
        let labels = procs.map(label)
        let width = 1100, stripH = 26
        let left = min(360, max(70, 7 * (labels.map(\.count).max() ?? 0) + 12))
        var body = ""
        for (i, p) in procs.enumerated() {
            guard case .object(let po) = p, case .array(let vmas)? = po["vmas"] else { continue }
            var items: [(w: Double, keyid: Int, title: String)] = []
            for v in vmas {
                guard case .object(let vo) = v else { continue }
                let start = vo["start"]?.text ?? "", end = vo["end"]?.text ?? ""
                let a = UInt64(start.dropFirst(2), radix: 16) ?? 0, b = UInt64(end.dropFirst(2), radix: 16) ?? 0
                let pages = Double(max(b > a ? (b - a) >> 12 : 1, 1))
                let keyid = Int(vo["keyid"]?.number ?? 0)
                keyidsSeen.insert(keyid)
                let path: String = { if case .string(let p)? = vo["path"] { return " " + p }; return "" }()
                items.append((log2(pages) + 1, keyid, "\(start)-\(end) \(vo["perms"]?.text ?? "") KeyID \(keyid)\(path)"))
            }
            let total = max(items.reduce(0) { $0 + $1.w }, 1)
            let y = 8 + i * (stripH + 8)
            body += "<text x=\"\(left - 6)\" y=\"\(y + 17)\" text-anchor=\"end\">\(htmlEscape(labels[i]))</text>"
            if items.isEmpty {
                body += "<text x=\"\(left + 4)\" y=\"\(y + 17)\" fill=\"#666\">no mappings at the end</text>"
            }
            var x = Double(left)
            for it in items {
                let w = it.w / total * Double(width - left - 10)
                body += "<rect x=\"\(svgNum(x))\" y=\"\(y)\" width=\"\(svgNum(max(w - 1, 0.5)))\" height=\"\(stripH)\" fill=\"\(keyidColor(it.keyid))\" stroke=\"#fff\" stroke-width=\"0.5\"><title>\(htmlEscape(it.title))</title></rect>"
                x += w
            }
        }
        let h = 8 + procs.count * (stripH + 8) + 30
        s += "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(width)\" height=\"\(h)\">" + body
        var lx = left
        for k in keyidsSeen.sorted() {
            s += "<rect x=\"\(lx)\" y=\"\(h - 18)\" width=\"10\" height=\"10\" fill=\"\(keyidColor(k))\" stroke=\"#999\" stroke-width=\"0.5\"/><text x=\"\(lx + 14)\" y=\"\(h - 9)\">KeyID \(k)\(k == 0 ? " (TME / no key)" : "")</text>"
            lx += k == 0 ? 150 : 70
        }
        s += "</svg><p class=\"note\">Each VMA in address order (gaps not drawn); width grows with log2 of its pages; hover for its range, permissions, KeyID and path.</p>"
        return s
    }

    func keyidColor(_ k: Int) -> String { Self.keyidColors[k >= 0 && k < Self.keyidColors.count ? k : (abs(k) % 9) + 1] }

    // MARK: tables

    func rowTable() -> String {
        var s = "<table><tr><th class=\"l\">workload</th><th class=\"l\">policy</th><th>modeled cycles</th><th>vs none</th><th>flushed lines</th><th>keyid switches</th><th>host rate</th><th>wall s</th></tr>"
        for r in rows {
            s += "<tr><td class=\"l\">\(htmlEscape(r.group))</td><td class=\"l\">\(htmlEscape(r.policy))</td><td>\(Self.compact(Double(r.modeledCycles)))</td>"
            s += "<td>\(r.ratioVsNone.map { String(format: "%.3fx", $0) } ?? "")</td>"
            s += "<td>\(r.counters["flushed_lines"] ?? 0)</td><td>\(r.counters["keyid_switches"] ?? 0)</td>"
            s += "<td>\(r.hostRate.map { htmlEscape(Self.compact($0.value) + " " + $0.unit) } ?? "")</td><td>\(String(format: "%.2f", r.wallSeconds))</td></tr>"
        }
        return s + "</table>"
    }

    func fuzzTable(_ f: FuzzSummary) -> String {
        var s = "<p class=\"note\">seed \(f.seed), config hash \(htmlEscape(f.configHash)), \(f.calls) calls in \(f.programs) programs, "
            + "\(f.violations) violating program(s), \(f.wall.shardSeconds.count) shard(s).</p>"
        s += "<table><tr><th class=\"l\">policy</th><th>calls</th><th>programs</th><th>modeled cycles</th><th class=\"l\">violations</th><th class=\"l\">finding</th></tr>"
        for p in f.policies {
            let v = p.skipped ? "skipped" : (p.reached ? p.violationsByInvariant.sorted { $0.key < $1.key }.map { "\($0.key) ×\($0.value)" }.joined(separator: ", ") : "not run")
            let finding = p.finding.map { "program \($0.program): \($0.violation.invariant.rawValue), shrunk to \($0.shrunkCalls) calls" } ?? ""
            s += "<tr><td class=\"l\">\(htmlEscape(p.policy.rawValue))</td><td>\(p.ops)</td><td>\(p.programs)</td><td>\(Self.compact(Double(p.modeledCycles)))</td>"
            s += "<td class=\"l\">\(htmlEscape(v))</td><td class=\"l\">\(htmlEscape(finding))</td></tr>"
        }
        return s + "</table>"
    }

    func hostTable() -> String {
        var s = "<table>"
        for b in benches {
            for k in b.report.host.keys.sorted() {
                s += "<tr><td class=\"l\">\(htmlEscape(k))</td><td class=\"l\">\(htmlEscape(b.report.host[k]?.text ?? ""))</td></tr>"
            }
        }
        return s + "</table>"
    }

    // MARK: helpers

    /// `alloc-free [cache=1M keyid-bits=3]` -> ["alloc-free", "cache=1M", "keyid-bits=3"].
    static func labelLines(_ group: String) -> [String] {
        guard let open = group.range(of: " ["), group.hasSuffix("]") else { return [group] }
        let settings = group[open.upperBound..<group.index(before: group.endIndex)]
        return [String(group[..<open.lowerBound])] + settings.split(separator: " ").map(String.init)
    }

    static func compact(_ v: Double) -> String {
        let a = abs(v)
        if a >= 1e9 { return String(format: "%.2fG", v / 1e9) }
        if a >= 1e6 { return String(format: "%.2fM", v / 1e6) }
        if a >= 1e4 { return String(format: "%.1fk", v / 1e3) }
        if a == a.rounded() { return String(Int(v)) }
        return String(format: "%.2f", v)
    }
}

func svgNum(_ d: Double) -> String { String(format: "%.1f", d.isFinite ? d : 0) }

/// HTML-escapes text.
func htmlEscape(_ s: String) -> String {
    var o = ""
    o.reserveCapacity(s.count)
    for c in s {
        switch c {
        case "&": o += "&amp;"
        case "<": o += "&lt;"
        case ">": o += "&gt;"
        case "\"": o += "&quot;"
        case "'": o += "&#39;"
        default: o.append(c)
        }
    }
    return o
}
