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
