// BenchFormatter: renders a BenchReport as JSON, aligned tables (the terminal default) or CSV
// (one line per ROW, counters as columns).
import Foundation

/// Output format of `keymm bench`.
public enum BenchFormat: String, Sendable, CaseIterable {
    case json, table, csv
}

/// Rendering of bench reports.
public enum BenchFormatter {
    /// The report in one format, ending with a newline.
    public static func render(_ report: BenchReport, as format: BenchFormat) -> String {
        switch format {
        case .json:
            guard let d = try? report.jsonData() else { return "{}\n" }
            return String(decoding: d, as: UTF8.self) + "\n"
        case .csv: return csv(report)
        case .table: return table(report)
        }
    }

    /// Counters worth a table column: those non-zero in some row, in a fixed, readable order.
    static func counterColumns(_ rows: [BenchRow]) -> [String] {
        var names = Set<String>()
        for r in rows { for (k, v) in r.counters where v != 0 { names.insert(k) } }
        let preferred = ["flushed_lines", "write_backs", "encryptions", "decryptions", "zeroed_pages", "keyid_switches",
                         "tlb_shootdowns", "page_faults"]
        return preferred.filter { names.contains($0) } + names.subtracting(preferred).sorted()
    }

    static func csv(_ report: BenchReport) -> String {
        var all = Set<String>()
        for r in report.results { all.formUnion(r.counters.keys) }
        let counters = all.sorted()
        // Sweep rows: the point number and one column per swept setting, after the policy.
        let swept = Set(report.results.flatMap { $0.point?.settings.keys.map { $0 } ?? [] }).sorted()
        let pointColumns = report.results.contains { $0.point != nil } ? ["point"] + swept : []
        var lines = [(["workload", "policy"] + pointColumns + ["modeled_cycles", "ratio_vs_none", "wall_seconds", "host_rate", "host_rate_unit"] + counters).joined(separator: ",")]
        for r in report.results {
            var f = [csvField(r.workload), csvField(r.policy)]
            if !pointColumns.isEmpty {
                f.append(r.point.map { String($0.index) } ?? "")
                f += swept.map { csvField(r.point?.settings[$0] ?? "") }
            }
            f += [String(r.modeledCycles), r.ratioVsNone.map { number($0) } ?? "",
                  number(r.wallSeconds), r.hostRate.map { number($0.value) } ?? "", csvField(r.hostRate?.unit ?? "")]
            f += counters.map { String(r.counters[$0] ?? 0) }
            lines.append(f.joined(separator: ","))
        }
        return lines.joined(separator: "\n") + "\n"
    }

    static func csvField(_ s: String) -> String {
        s.contains(",") || s.contains("\"") || s.contains("\n") ? "\"" + s.replacingOccurrences(of: "\"", with: "\"\"") + "\"" : s
    }

    static func table(_ report: BenchReport) -> String {
        var out = ""
        var order: [String] = []
        for r in report.results where !order.contains(r.group) { order.append(r.group) }
        for w in order {
            let rows = report.results.filter { $0.group == w }
            let counters = counterColumns(rows)
            var header = ["policy", "modeled cycles", "vs none"]
            if rows.contains(where: { $0.hostRate != nil }) { header.append("host rate") }
            header += counters
            header.append("wall s")
            var cells: [[String]] = [header]
            for r in rows {
                var c = [r.policy, grouped(r.modeledCycles), r.ratioVsNone.map { String(format: "%.2fx", $0) } ?? "-"]
                if header.contains("host rate") { c.append(r.hostRate.map { "\(number($0.value)) \($0.unit)" } ?? "-") }
                c += counters.map { grouped(r.counters[$0] ?? 0) }
                c.append(String(format: "%.2f", r.wallSeconds))
                cells.append(c)
            }
            out += "\(w)\n" + align(cells)
            out += extras(rows)
            out += "\n"
        }
        if !report.host.isEmpty {
            out += "host\n"
            for k in report.host.keys.sorted() { out += "  \(k): \(report.host[k]!.text)\n" }
        }
        return out
    }

    /// Row extras: a key/value list for one row, a key x policy table for several.
    static func extras(_ rows: [BenchRow]) -> String {
        let withExtra = rows.filter { !($0.extra ?? [:]).isEmpty }
        guard !withExtra.isEmpty else { return "" }
        if withExtra.count == 1, let e = withExtra[0].extra {
            return e.keys.sorted().map { "  \($0): \(e[$0]!.text)\n" }.joined()
        }
        var keys = Set<String>()
        for r in withExtra { keys.formUnion(r.extra!.keys) }
        var cells = [["extra"] + withExtra.map(\.policy)]
        for k in keys.sorted() { cells.append([k] + withExtra.map { $0.extra?[k]?.text ?? "-" }) }
        return "\n" + align(cells)
    }

    /// Aligns cells in columns: first column left-aligned, the rest right-aligned.
    public static func align(_ cells: [[String]]) -> String {
        guard let width = cells.map(\.count).max() else { return "" }
        var w = [Int](repeating: 0, count: width)
        for row in cells { for (i, c) in row.enumerated() { w[i] = max(w[i], c.count) } }
        var out = ""
        for (n, row) in cells.enumerated() {
            var line = ""
            for (i, c) in row.enumerated() {
                let pad = String(repeating: " ", count: w[i] - c.count)
                line += i == 0 ? c + pad : "  " + pad + c
            }
            out += "  " + line + "\n"
            if n == 0 { out += "  " + w.enumerated().map { String(repeating: "-", count: $0.element) }.joined(separator: "  ") + "\n" }
        }
        return out
    }

    /// 1234567 -> "1,234,567".
    public static func grouped(_ v: UInt64) -> String {
        let s = String(v)
        var out = ""
        for (i, ch) in s.enumerated() {
            if i > 0 && (s.count - i) % 3 == 0 { out.append(",") }
            out.append(ch)
        }
        return out
    }

    /// A compact decimal: integers stay integers, others get 3 significant decimals.
    public static func number(_ d: Double) -> String {
        guard d.isFinite else { return "0" }
        if d == d.rounded() && abs(d) < 1e15 { return String(Int64(d)) }
        if abs(d) >= 1000 { return String(format: "%.0f", d) }
        return String(format: "%.4g", d)
    }
}
