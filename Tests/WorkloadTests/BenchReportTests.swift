// Tests for `keymm report` (HTMLReport): well-formed self-contained HTML with SVG charts from bench
// and run JSON, and FILE:LINE:COLUMN errors for invalid JSON.
import Foundation
import Testing
@testable import KeyMM
@testable import KeyMMWorkloads

@Suite("Bench report HTML")
struct BenchReportTests {
    func sampleBench() throws -> Data {
        let r = try BenchRunner.run([AllocFreeWorkload(), KeyIDPressureWorkload()], policies: [.none, .wrapper, .integrated],
                                    base: BenchContext(quick: true))
        return try r.jsonData()
    }

    let sampleRun = """
    {"schema": 1, "calls": 3, "processes": [{"pid": 1, "vmas": [
      {"start": "0x7f0000000000", "end": "0x7f0000004000", "perms": "rw-p", "pgoff": 0, "keyid": 1, "flags": "0x73", "path": null},
      {"start": "0x7f0000004000", "end": "0x7f0000005000", "perms": "r--p", "pgoff": 0, "keyid": 0, "flags": "0x71", "path": "/lib/<x>.so"}]}]}
    """

    @Test func rendersWellFormedHTMLWithSVG() throws {
        var rep = HTMLReport()
        try rep.add(data: try sampleBench(), name: "bench.json")
        try rep.add(data: Data(sampleRun.utf8), name: "run.json")
        let html = rep.render()
        #expect(html.hasPrefix("<!DOCTYPE html>"))
        #expect(html.hasSuffix("</html>\n"))
        #expect(html.contains("<svg"))
        #expect(html.components(separatedBy: "<svg").count == html.components(separatedBy: "</svg>").count)
        #expect(!html.contains("http://") || !html.replacingOccurrences(of: "http://www.w3.org/2000/svg", with: "").contains("http://"),
                "no network references besides the SVG namespace")
        #expect(!html.contains("<script"))
        #expect(html.contains("KeyID occupancy"))
        #expect(html.contains("KeyID 1"))
        #expect(html.contains("/lib/&lt;x&gt;.so"), "input strings are escaped")
        // Balanced tags for the elements the generator opens.
        for tag in ["svg", "table", "g", "h2", "p"] {
            let open = html.components(separatedBy: "<\(tag) ").count + html.components(separatedBy: "<\(tag)>").count - 2
            let close = html.components(separatedBy: "</\(tag)>").count - 1
            #expect(open == close, "unbalanced <\(tag)>")
        }
        // Deterministic.
        var again = HTMLReport()
        try again.add(data: Data(sampleRun.utf8), name: "run.json")
        var once = HTMLReport()
        try once.add(data: Data(sampleRun.utf8), name: "run.json")
        #expect(again.render() == once.render())
    }

    @Test func invalidJSONGivesLineAndColumn() {
        var rep = HTMLReport()
        do {
            try rep.add(data: Data("{\n  \"results\": [1,,2]\n}".utf8), name: "bad.json")
            Issue.record("accepted invalid JSON")
        } catch {
            #expect(error.line == 2)
            #expect(error.column == 17)
            #expect(error.description.hasPrefix("bad.json:2:17: error:"))
        }
        #expect(throws: ReportInputError.self) { try rep.add(data: Data("[1, 2]".utf8), name: "array.json") }
        #expect(throws: ReportInputError.self) { try rep.add(data: Data("{\"x\": 1}".utf8), name: "other.json") }
    }

    @Test func jsonSyntaxAcceptsValidDocuments() {
        for ok in ["{}", "[]", "{\"a\": [1, -2.5e3, true, false, null, \"\\u00e9\\n\"]}", " 0 "] {
            #expect(JSONSyntax.firstError(in: Array(ok.utf8)) == nil, "\(ok)")
        }
        for bad in ["{", "[1,]", "{\"a\" 1}", "01", "\"\\x\"", "{} x", String(repeating: "[", count: 600)] {
            #expect(JSONSyntax.firstError(in: Array(bad.utf8)) != nil, "\(bad.prefix(20))")
        }
    }
}

/// Issue 16, item 5: the report as it is looked at: tellable colours, round ticks, one occupancy
/// chart when the policies' series are the same, and notes beside surprising bars.
@Suite struct ReportReadabilityTests {
    static let keyidPressure: [BenchRow] = {
        (try? BenchRunner.run([KeyIDPressureWorkload()], policies: [.none, .wrapper, .integrated, .eager, .perKeyID],
                              base: BenchContext(quick: true)).results) ?? []
    }()

    func report(_ rows: [BenchRow]) throws -> HTMLReport {
        var rep = HTMLReport()
        try rep.add(data: try BenchReport(results: rows).jsonData(), name: "bench.json")
        return rep
    }

    @Test func policiesAndTopEventsGetDistinctColourBlindSafeColours() throws {
        let colours = HTMLReport.policyOrder.compactMap { HTMLReport.policyColor[$0] }
        #expect(Set(colours).count == colours.count)
        for c in colours where c != HTMLReport.grey && c != "#000000" { #expect(HTMLReport.okabeIto.contains(c), "\(c)") }
        let html = try report(Self.keyidPressure).breakdownChart()
        let fills = Set(html.components(separatedBy: "fill=\"").dropFirst().map { String($0.prefix(7)) })
        #expect(fills.isSubset(of: Set(HTMLReport.okabeIto + [HTMLReport.grey])), "\(fills)")
    }

    @Test func linearTicksAreRound() {
        for (maxV, step) in [(6.46, 2.0), (2.79, 1.0), (1.0, 0.2), (35.0, 10.0), (0.8, 0.2), (140.0, 50.0)] {
            #expect(HTMLReport.niceStep(maxV) == step, "\(maxV)")
        }
        let html = HTMLReport().groupedBars(value: { _ in nil }, log: false, label: HTMLReport.ratioLabel)
        #expect(html.contains("no policy rows"))
        #expect(HTMLReport.ratioLabel(2) == "2x" && HTMLReport.ratioLabel(0.5) == "0.5x" && HTMLReport.ratioLabel(1.25) == "1.25x")
        #expect(HTMLReport.countLabel(100_000) == "100k" && HTMLReport.countLabel(1e6) == "1M" && HTMLReport.countLabel(250) == "250")
    }

    @Test func overheadTicksOfTheKeyIDPressureRowsAreRound() throws {
        let html = try report(Self.keyidPressure).overheadChart()
        let labels = html.components(separatedBy: "text-anchor=\"end\">").dropFirst().map { $0.prefix { $0 != "<" } }
        #expect(!labels.isEmpty)
        for l in labels { #expect(["0x", "0.5x", "1x", "1.5x", "2x", "2.5x", "3x", "4x", "5x", "6x", "8x", "10x"].contains(String(l)), "\(l)") }
    }

    @Test func identicalOccupancySeriesShareOneChart() throws {
        let html = try report(Self.keyidPressure).occupancyChart() ?? ""
        #expect(html.components(separatedBy: "<svg").count - 1 == 1, "one chart for four identical series")
        #expect(html.contains("wrapper, integrated, eager, per-keyid"))
    }

    @Test func surprisingBarsGetANoteThatExplainsThem() throws {
        let rep = try report(Self.keyidPressure)
        let notes = ReportNotes(rows: rep.rows, costs: rep.costs).notes
        let integrated = notes.first { $0.workload == "keyid-pressure" && $0.policy == "integrated" }
        #expect(integrated?.text.contains("wbinvds") == true, "\(integrated?.text ?? "no note")")
        #expect(integrated?.text.contains("WBINVD") == true)
        #expect(notes.contains { $0.policy == "per-keyid" })
        #expect(notes.contains { $0.policy == "none" && $0.text.contains("ENOKEY") })
        #expect(!notes.contains { $0.policy == "wrapper" || $0.policy == "eager" })
        let html = rep.render()
        #expect(html.contains("<ol class=\"notes\">"))
        // An unsurprising workload gets none.
        let plain = try BenchRunner.run([AllocFreeWorkload()], policies: [.none, .wrapper, .integrated], base: BenchContext(quick: true))
        #expect(ReportNotes(rows: plain.results, costs: .default).notes.isEmpty)
    }
}

extension ReportReadabilityTests {
    @Test func processesOfSeveralFilesAreLabelledWithTheirFile() throws {
        var rep = HTMLReport()
        let run = """
        {"schema": 1, "calls": 2, "files": ["a/x.strace", "b/y.strace"], "processes": [
          {"pid": 1, "file": "a/x.strace", "vmas": [{"start": "0x1000", "end": "0x2000", "perms": "rw-p", "pgoff": 0, "keyid": 1, "flags": "0x73", "path": null}]},
          {"pid": 1, "file": "b/y.strace", "vmas": []}]}
        """
        try rep.add(data: Data(run.utf8), name: "run.json")
        let html = rep.render()
        #expect(html.contains(">x.strace pid 1<") && html.contains(">y.strace pid 1<"))
        #expect(html.contains("no mappings at the end"))
    }
}
