// The notes `keymm report` writes beside surprising bars of the overhead chart, worked out from
// the rows themselves (no canned text about particular numbers):
//
// - a lazy policy (integrated, per-keyid) that costs more than a flushing one (wrapper, eager):
//   seed 001 expects the opposite (docs/sources.md, seed 001), so the note names the cost event
//   that makes the difference (counter × price, the largest difference), says why the model
//   charges it, and what the row would cost without it;
// - `none` doing different work than the MKTME policies (pages allocated differ, e.g. ENOKEY
//   refusals lose turns under MKTME): its ratios compare unequal work.
//
// Invariant: deterministic (rows in input order, ties by name); a note is attached to a bar that
// exists (workload, policy).
import Foundation
import KeyMMHardware

/// One note beside one bar.
struct ReportNote: Sendable, Equatable {
    var workload: String
    var policy: String
    var text: String
}

struct ReportNotes {
    let rows: [BenchRow]
    let costs: CostProfile

    static let lazy = ["integrated", "per-keyid"]
    static let flushing = ["wrapper", "eager"]

    /// Why the model charges an event, for the events a policy comparison can hinge on.
    static let why: [String: String] = [
        "wbinvds": "The lazy policies leave freed pages' dirty lines in the cache under their KeyID, so each KeyID "
            + "release writes the whole cache back (WBINVD) before PCONFIG reprograms the KeyID; wrapper and eager "
            + "flush every page at free and release a KeyID without one (docs/policies.md, KeyID release). A "
            + "workload that destroys many keys pays it at every release.",
        "write_backs": "Dirty lines written back to DRAM (each also encrypted): the lazy policies write back at "
            + "KeyID release or eviction what the flushing ones wrote back at free.",
        "flushed_lines": "Cache lines flushed with CLFLUSH before a page changes KeyID.",
        "zeroed_pages": "Pages zeroed: the wrapper zeroes again after its flush.",
    ]

    var notes: [ReportNote] {
        var out: [ReportNote] = []
        var workloads: [String] = []
        for r in rows where !workloads.contains(r.workload) { workloads.append(r.workload) }
        var explained: [String: Int] = [:]   // event -> number of the note that explains it
        for w in workloads {
            let byPolicy = Dictionary(rows.filter { $0.workload == w }.map { ($0.policy, $0) }, uniquingKeysWith: { _, b in b })
            if let none = byPolicy["none"] { out += unequalWork(w, none, byPolicy) }
            for l in Self.lazy {
                guard let lazyRow = byPolicy[l], let lr = lazyRow.ratioVsNone else { continue }
                let cheaper = Self.flushing.compactMap { f -> (String, BenchRow)? in
                    guard let row = byPolicy[f], let fr = row.ratioVsNone, fr < lr else { return nil }
                    return (f, row)
                }
                guard let (fname, frow) = cheaper.first else { continue }
                out.append(ReportNote(workload: w, policy: l, text: lazyAboveFlushing(l, lazyRow, cheaper, fname, frow,
                                                                                     noteNumber: out.count + 1, explained: &explained)))
            }
        }
        return out
    }

    func priced(_ r: BenchRow, _ event: String) -> (count: UInt64, cycles: Double, price: UInt64)? {
        guard let e = CostEvent.allCases.first(where: { $0.counterName == event }) else { return nil }
        let n = r.counters[event] ?? 0
        return (n, Double(n) * Double(costs[e]), costs[e])
    }

    func lazyAboveFlushing(_ l: String, _ lazyRow: BenchRow, _ cheaper: [(String, BenchRow)], _ fname: String, _ frow: BenchRow,
                           noteNumber: Int, explained: inout [String: Int]) -> String {
        let lr = lazyRow.ratioVsNone ?? 0
        var text = "\(l) \(Self.x(lr)) is above " + cheaper.map { "\($0.0) \(Self.x($0.1.ratioVsNone ?? 0))" }.joined(separator: " and ")
            + ", although seed 001 expects the integrated allocator to flush least (docs/sources.md)."
        // The event with the largest priced difference between the lazy row and the flushing one.
        var best: (name: String, delta: Double)?
        for e in CostEvent.allCases {
            guard let a = priced(lazyRow, e.counterName), let b = priced(frow, e.counterName) else { continue }
            let d = a.cycles - b.cycles
            if d > 0, best == nil || d > best!.delta { best = (e.counterName, d) }
        }
        guard let best, let a = priced(lazyRow, best.name), let b = priced(frow, best.name) else { return text }
        text += " The difference is \(best.name): \(BenchFormatter.grouped(a.count)) × \(BenchFormatter.grouped(a.price)) = \(HTMLReport.compact(a.cycles)) cycles under \(l), "
            + (b.count == 0 ? "none under \(fname)." : "\(BenchFormatter.grouped(b.count)) (\(HTMLReport.compact(b.cycles))) under \(fname).")
        if let n = explained[best.name] {
            text += " Why: see note \(n)."
        } else if let why = Self.why[best.name] {
            text += " " + why
            explained[best.name] = noteNumber
        }
        // What the lazy row would cost without that event, if the row was priced with these costs.
        let profile = lazyRow.extra?["costs"]?.text
        if profile == nil || profile == costs.name, let none = rowNone(lazyRow), none.modeledCycles > 0 {
            let without = Double(lazyRow.modeledCycles) - a.cycles
            text += " Without it \(l) would cost \(HTMLReport.compact(without)) cycles, \(Self.x(without / Double(none.modeledCycles)))."
        }
        return text
    }

    func rowNone(_ r: BenchRow) -> BenchRow? { rows.last { $0.workload == r.workload && $0.policy == "none" } }

    /// `none` allocated a different number of pages than the MKTME policies.
    func unequalWork(_ w: String, _ none: BenchRow, _ byPolicy: [String: BenchRow]) -> [ReportNote] {
        let key = "pages_allocated"
        guard let n = none.counters[key] else { return [] }
        let others = byPolicy.filter { $0.key != "none" }.sorted { $0.key < $1.key }
        let differing = others.filter { ($0.value.counters[key] ?? 0) != n }
        guard !differing.isEmpty else { return [] }
        let values = Set(differing.map { $0.value.counters[key] ?? 0 }).sorted()
        var text = "none allocated \(BenchFormatter.grouped(n)) pages, the MKTME policies "
            + values.map { BenchFormatter.grouped($0) }.joined(separator: " or ") + ": the policies did other work than MKTME off"
        if let refused = differing.first?.value.extra?["enokey_refusals"]?.number, refused > 0 {
            text += " (\(Int(refused)) turns were refused with ENOKEY when every KeyID was in use or dead; without MKTME no key is needed)"
        }
        text += ", so this workload's ratios compare unequal work; compare the policies with each other."
        return [ReportNote(workload: w, policy: "none", text: text)]
    }

    static func x(_ r: Double) -> String { String(format: "%.2fx", r) }
}
