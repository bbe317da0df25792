// Hints about the machine a log was recorded on: settings its recorded results point to
// that differ from the run's. Replay (and run) print them after the summary and write them
// to the JSON report (`hints`); a hint never changes a result or a count.
//
// Protection keys (docs/sources.md, "Protection keys without PKU"): on a CPU without PKU
// (no OSPKE) Linux answers a valid pkey_alloc(0, init_val) with EINVAL the first time and
// ENOSPC after (pkey 0 stays allocated), where the default model (`pkeys=16`) hands out keys.
// A log whose pkey_alloc results show that pattern suggests `--set pkeys=1`; a log that got
// a key while the run has `pkeys=1` suggests `--set pkeys=16`.
//
// Invariant: only calls the model diverged on are evidence (a log the settings already
// explain gives no hint).
import KeyMMTrace

/// Evidence collected during a run, turned into hints at the end.
struct ReplayHints {
    private var noPKU: (count: Int, first: SourceLocation?) = (0, nil)
    private var withPKU: (count: Int, first: SourceLocation?) = (0, nil)

    /// Looks at one compared call: its recorded result and the model's outcome.
    mutating func observe(_ line: SyscallLine, outcome: CallOutcome, pkeyCount: Int) {
        guard line.name == "pkey_alloc", !outcome.matches(line.result) else { return }
        // Only well-formed requests (flags 0, init_val within the access bits) say anything
        // about the CPU: Linux rejects the others with EINVAL on every machine.
        let a = Arguments(line: line)
        guard a.count >= 1, (try? a.u64(0)) == 0,
              a.count < 2 || ((try? a.u64(1, [.pkey])).map { $0 & ~3 == 0 } ?? false) else { return }
        switch (line.result.errnoName, outcome) {
        case ("EINVAL", .value), ("ENOSPC", .value):
            if pkeyCount > 1 { noPKU.count += 1; if noPKU.first == nil { noPKU.first = line.location } }
        case (nil, .error):
            if pkeyCount <= 1, (line.result.int64Value ?? 0) > 0 {
                withPKU.count += 1
                if withPKU.first == nil { withPKU.first = line.location }
            }
        default:
            break
        }
    }

    /// The hints, in a fixed order.
    var messages: [String] {
        var out: [String] = []
        if let at = noPKU.first {
            out.append("\(noPKU.count) pkey_alloc result\(noPKU.count == 1 ? "" : "s") (first at \(at.file):\(at.line)) show\(noPKU.count == 1 ? "s" : "") a machine without protection keys (PKU): pkey_alloc failed with EINVAL/ENOSPC where the model, with 16 keys, allocated one; rerun with --set pkeys=1")
        }
        if let at = withPKU.first {
            out.append("\(withPKU.count) pkey_alloc result\(withPKU.count == 1 ? "" : "s") (first at \(at.file):\(at.line)) show\(withPKU.count == 1 ? "s" : "") a machine with protection keys: the log got a key where the model, with pkeys=1, failed; rerun with --set pkeys=16")
        }
        return out
    }
}
