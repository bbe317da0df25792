// Helpers shared by the trace-language tests.
import KeyMMTrace

/// Every event of `text`, strictly parsed.
func events(_ text: String, name: String = "t.strace") throws(TraceError) -> [TraceEvent] {
    try TraceReader(string: text, name: name).readAll()
}

/// The single call of a one-line `text`.
func call(_ text: String) throws(TraceError) -> SyscallLine {
    let all = try events(text)
    guard all.count == 1, case .call(let c) = all[0] else {
        throw TraceError(location: KeyMMTrace.SourceLocation(file: "test", line: 0, column: 0),
                         message: "expected one call, got \(all)")
    }
    return c
}

/// The located error `text` produces (strict mode), as its description.
func parseError(_ text: String, name: String = "t.strace") -> String? {
    do {
        _ = try TraceReader(string: text, name: name).readAll()
        return nil
    } catch {
        return error.description
    }
}

func int(_ v: Int64) -> TraceValue { .int(TraceInteger(v)) }
func hex(_ v: UInt64) -> TraceValue { .int(TraceInteger(magnitude: v, radix: .hex)) }
func sym(_ s: String) -> TraceValue { .symbol(s) }
func str(_ s: String, truncated: Bool = false) -> TraceValue { .string(TraceString(s, truncated: truncated)) }

/// The repository root (for traces/), found from this file's path.
let repositoryRoot: String = {
    var parts = #filePath.split(separator: "/", omittingEmptySubsequences: false)
    parts.removeLast(3) // Tests/TraceTests/Helpers.swift
    return parts.joined(separator: "/")
}()
