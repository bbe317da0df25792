// BenchFormatter: renders a BenchReport as JSON, aligned tables (the terminal default) or CSV
// (one line per ROW, counters as columns).
//
// Invariant: table lines are at most `tableWidth` (100) columns: counters are rows (one column
// per policy), columns that still do not fit go to a further block, long extras are shortened
// and say so (the JSON and CSV outputs always carry everything).
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

    /// Terminal tables fit this many columns; what does not fit is in `--format json` / `csv`.
    public static let tableWidth = 100

    /// Per workload: policies with modeled cycles, ratio, host rate and wall time; then the
    /// counters (non-zero in some row) as rows with one column per policy; then the extras
    /// (arrays and long values shortened: the full values are in JSON); then the host facts.
    static func table(_ report: BenchReport) -> String {
        var out = ""
        var order: [String] = []
        var shortened = false
        for r in report.results where !order.contains(r.group) { order.append(r.group) }
        for w in order {
            let rows = report.results.filter { $0.group == w }
            var header = ["policy", "modeled cycles", "vs none"]
            let hasRate = rows.contains(where: { $0.hostRate != nil })
            if hasRate { header.append("host rate") }
            header.append("wall s")
            var cells: [[String]] = [header]
            for r in rows {
                var c = [r.policy, grouped(r.modeledCycles), r.ratioVsNone.map { String(format: "%.2fx", $0) } ?? "-"]
                if hasRate { c.append(r.hostRate.map { "\(number($0.value)) \($0.unit)" } ?? "-") }
                c.append(String(format: "%.2f", r.wallSeconds))
                cells.append(c)
            }
            out += "\(w)\n" + align(cells, maxWidth: tableWidth)
            let counters = counterColumns(rows)
            if !counters.isEmpty {
                var t = [["counter"] + rows.map(\.policy)]
                for k in counters { t.append([k] + rows.map { grouped($0.counters[k] ?? 0) }) }
                out += "\n" + align(t, maxWidth: tableWidth)
            }
            let (text, clipped) = extras(rows)
            out += text
            shortened = shortened || clipped
            out += "\n"
        }
        if !report.host.isEmpty {
            out += "host\n"
            for k in report.host.keys.sorted() {
                let (line, clipped) = clip("  \(k): \(report.host[k]!.text)", tableWidth)
                out += line + "\n"
                shortened = shortened || clipped
            }
        }
        if shortened { out += "(values ending in ... and [N values] are shortened; --format json has them in full)\n" }
        return out
    }

    /// Row extras: a key/value list for one row, a key x policy table for several. Arrays
    /// show their length, other long values are shortened; returns whether any was.
    static func extras(_ rows: [BenchRow]) -> (String, Bool) {
        let withExtra = rows.filter { !($0.extra ?? [:]).isEmpty }
        guard !withExtra.isEmpty else { return ("", false) }
        var clipped = false
        func cell(_ v: JSONValue?, _ width: Int) -> String {
            guard let v else { return "-" }
            if case .array(let a) = v { clipped = true; return "[\(a.count) values]" }
            let (t, c) = clip(v.text, width)
            clipped = clipped || c
            return t
        }
        if withExtra.count == 1, let e = withExtra[0].extra {
            return ("\n" + e.keys.sorted().map { k in "  \(k): " + cell(e[k], tableWidth - 4 - k.count) + "\n" }.joined(), clipped)
        }
        var keys = Set<String>()
        for r in withExtra { keys.formUnion(r.extra!.keys) }
        let keyWidth = max(5, keys.map(\.count).max() ?? 0)
        let width = max(8, (tableWidth - 2 - keyWidth) / withExtra.count - 2)
        // Values too wide for a column (notes, timing methods) go below the table, one per line.
        let wide = keys.filter { k in withExtra.contains { r in
            guard let v = r.extra?[k] else { return false }
            if case .array = v { return false }
            return v.text.count > width
        } }
        var cells = [["extra"] + withExtra.map(\.policy)]
        for k in keys.subtracting(wide).sorted() { cells.append([k] + withExtra.map { cell($0.extra?[k], width) }) }
        var text = "\n" + (cells.count > 1 ? align(cells, maxWidth: tableWidth) : "")
        for k in wide.sorted() {
            let values = withExtra.map { $0.extra?[k]?.text ?? "-" }
            if Set(values).count == 1 {
                text += "  \(k): " + cell(withExtra[0].extra?[k], tableWidth - 4 - k.count) + "\n"
            } else {
                for r in withExtra where r.extra?[k] != nil {
                    let label = "\(k) (\(r.policy))"
                    text += "  \(label): " + cell(r.extra?[k], tableWidth - 4 - label.count) + "\n"
                }
            }
        }
        return (text, clipped)
    }

    /// `text` cut to `width` characters with "..." when longer; and whether it was.
    static func clip(_ text: String, _ width: Int) -> (String, Bool) {
        guard text.count > width, width > 3 else { return (text, false) }
        return (String(text.prefix(width - 3)) + "...", true)
    }

    /// Aligns cells in columns: first column left-aligned, the rest right-aligned. With
    /// `maxWidth`, columns that do not fit go to further blocks, each repeating the first column.
    public static func align(_ cells: [[String]], maxWidth: Int = .max) -> String {
        guard let width = cells.map(\.count).max() else { return "" }
        var w = [Int](repeating: 0, count: width)
        for row in cells { for (i, c) in row.enumerated() { w[i] = max(w[i], c.count) } }
        var blocks: [[Int]] = []
        var current = [Int]()
        var used = 2 + w[0]
        for i in 1..<max(width, 1) {
            if !current.isEmpty && used + 2 + w[i] > maxWidth {
                blocks.append(current)
                current = []
                used = 2 + w[0]
            }
            current.append(i)
            used += 2 + w[i]
        }
        blocks.append(current)
        var out = ""
        for (b, columns) in blocks.enumerated() {
            if b > 0 { out += "\n" }
            for (n, row) in cells.enumerated() {
                var line = row.first.map { $0 + String(repeating: " ", count: w[0] - $0.count) } ?? ""
                for i in columns where i < row.count {
                    line += "  " + String(repeating: " ", count: w[i] - row[i].count) + row[i]
                }
                out += "  " + line + "\n"
                if n == 0 { out += "  " + ([0] + columns).map { String(repeating: "-", count: w[$0]) }.joined(separator: "  ") + "\n" }
            }
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
