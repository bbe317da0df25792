// `--format jsonl`: a run's result as JSON Lines (docs/jsonl.md), one compact JSON object per
// line, written and flushed as it is produced so a killed shard leaves a readable prefix:
//   {"type":"header", "schema":1, "keymm":VERSION, "kind":"fuzz|bench|sweep", "config_hash":H,
//    "shard":I, "shards":N, "units":U, "plan":{...}, "host":{...}}
//   {"type":"result", "index":u, ...}       one per unit this shard did (a fuzz program's summary,
//                                           a bench ROW, a sweep ROW with its point)
//   {"type":"violation", "index":u, ...}    fuzz: a violation with its shrunk scenario inline
//   {"type":"trailer", "done":true, "shard":I, "shards":N, "results":R, "violations":V,
//    "stopped_at":u|null, "wall_seconds":W}
// The reader (for `keymm merge` and `keymm report DIR`) names the place of anything malformed
// (`FILE:LINE:COLUMN: error: ...`).
//
// Invariant: every line is one complete object ending in "\n", written with one write(2); keys
// are sorted, so equal records are equal bytes.
import Foundation

/// The first line of a shard's JSON Lines.
package struct JSONLHeader: Codable, Sendable, Hashable {
    package var type = "header"
    package var schema = 1
    package var keymm: String
    package var kind: String
    package var configHash: String
    package var shard: Int
    package var shards: Int
    package var units: Int
    package var plan: JSONValue
    /// Facts about the host that ran this shard (informational).
    package var host: [String: JSONValue]

    package init(identity: RunIdentity, shard: Shard, host: [String: JSONValue]) {
        keymm = KeyMMVersion.string
        kind = identity.kind
        configHash = identity.configHash
        self.shard = shard.index
        shards = shard.count
        units = identity.units
        plan = identity.plan
        self.host = host
    }

    enum CodingKeys: String, CodingKey {
        case type, schema, keymm, kind, shard, shards, units, plan, host
        case configHash = "config_hash"
    }
}

/// The last line of a shard that finished.
package struct JSONLTrailer: Codable, Sendable, Hashable {
    package var type = "trailer"
    package var done = true
    package var shard: Int
    package var shards: Int
    /// Result lines written.
    package var results: Int
    /// Violation lines written (fuzz).
    package var violations: Int
    /// Fuzz without --keep-going: the unit whose violation ended this shard (later units of the
    /// shard were not run); nil when the shard did all its units.
    package var stoppedAt: Int?
    /// Host wall-clock seconds of the whole shard (informational).
    package var wallSeconds: Double

    package init(shard: Shard, results: Int, violations: Int, stoppedAt: Int?, wallSeconds: Double) {
        self.shard = shard.index
        shards = shard.count
        self.results = results
        self.violations = violations
        self.stoppedAt = stoppedAt
        self.wallSeconds = wallSeconds
    }

    enum CodingKeys: String, CodingKey {
        case type, done, shard, shards, results, violations
        case stoppedAt = "stopped_at", wallSeconds = "wall_seconds"
    }

    package func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(type, forKey: .type)
        try c.encode(done, forKey: .done)
        try c.encode(shard, forKey: .shard)
        try c.encode(shards, forKey: .shards)
        try c.encode(results, forKey: .results)
        try c.encode(violations, forKey: .violations)
        try c.encode(stoppedAt, forKey: .stoppedAt)   // null when absent: the key is always there
        try c.encode(wallSeconds, forKey: .wallSeconds)
    }
}

/// Writes JSON Lines, one write per line.
package final class JSONLWriter {
    private let emit: (Data) -> Void
    private let encoder: JSONEncoder

    /// A writer on `handle` (standard output by default); FileHandle.write is an unbuffered
    /// write(2), so each line is flushed as it is written.
    package convenience init(handle: FileHandle = .standardOutput) {
        self.init { handle.write($0) }
    }

    /// A writer handing each line (with its newline) to `emit`.
    package init(emit: @escaping (Data) -> Void) {
        self.emit = emit
        encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    }

    /// Writes `value` as one line.
    package func write<T: Encodable>(_ value: T) {
        guard var data = try? encoder.encode(value) else { return }
        data.append(0x0A)
        emit(data)
    }

    /// Writes a JSON object with `type` and `index` added to `value`'s members.
    package func write<T: Encodable>(_ value: T, type: String, index: Int, adding extra: [String: JSONValue] = [:]) {
        write(JSONLWriter.line(value, type: type, index: index, adding: extra))
    }

    /// `value`'s members plus `type`, `index` and `extra`, as one JSON object.
    package static func line<T: Encodable>(_ value: T, type: String, index: Int, adding extra: [String: JSONValue] = [:]) -> JSONValue {
        var o = JSONValue.of(value)?.objectValue ?? [:]
        o["type"] = .string(type)
        o["index"] = .int(Int64(index))
        for (k, v) in extra { o[k] = v }
        return .object(o)
    }
}

/// A malformed JSON Lines file, or shards that do not make a run.
package struct JSONLError: Error, CustomStringConvertible, Sendable {
    package let file: String
    package let line: Int
    package let column: Int
    package let message: String
    package init(file: String, line: Int = 1, column: Int = 1, message: String) {
        self.file = file; self.line = line; self.column = column; self.message = message
    }
    package var description: String { "\(file):\(line):\(column): error: \(message)" }
}

/// One shard's JSON Lines, read back.
package struct JSONLShard: Sendable {
    package var file: String
    package var header: JSONLHeader
    /// Result and violation lines: (line number, type, index, the raw line).
    package var records: [(line: Int, type: String, index: Int, data: Data)]
    package var trailer: JSONLTrailer?
    /// A last line cut short (a killed shard), if any.
    package var truncatedLine: Int?

    /// Reads `data` (the contents of `file`).
    package init(data: Data, file: String) throws(JSONLError) {
        self.file = file
        var lines: [(Int, Data)] = []
        var start = data.startIndex
        var n = 0
        while start < data.endIndex {
            n += 1
            let end = data[start...].firstIndex(of: 0x0A) ?? data.endIndex
            lines.append((n, data[start..<end]))
            start = end < data.endIndex ? data.index(after: end) : end
        }
        let endsWithNewline = data.last == 0x0A
        guard let first = lines.first else { throw JSONLError(file: file, message: "empty file: no JSONL header (was the shard started?)") }
        do {
            header = try JSONDecoder().decode(JSONLHeader.self, from: first.1)
        } catch {
            throw JSONLError(file: file, line: 1, message: "expected a JSONL header ({\"type\":\"header\",...}): \(Self.reason(error))")
        }
        guard header.type == "header" else { throw JSONLError(file: file, line: 1, message: "the first line is not a header") }
        guard header.schema == 1 else { throw JSONLError(file: file, line: 1, message: "unknown JSONL schema \(header.schema) (this keymm reads 1)") }
        records = []
        trailer = nil
        truncatedLine = nil
        for (i, (no, bytes)) in lines.dropFirst().enumerated() {
            let isLast = i == lines.count - 2
            if bytes.allSatisfy({ $0 == 0x20 || $0 == 0x0D || $0 == 0x09 }) { continue }
            if trailer != nil { throw JSONLError(file: file, line: no, message: "a line after the trailer") }
            guard let obj = try? JSONDecoder().decode([String: JSONValue].self, from: bytes) else {
                if isLast && !endsWithNewline { truncatedLine = no; break }
                throw JSONLError(file: file, line: no, message: "not a JSON object")
            }
            guard case .string(let type)? = obj["type"] else {
                throw JSONLError(file: file, line: no, message: "a line without \"type\" (header, result, violation or trailer)")
            }
            switch type {
            case "trailer":
                do { trailer = try JSONDecoder().decode(JSONLTrailer.self, from: bytes) } catch {
                    throw JSONLError(file: file, line: no, message: "malformed trailer: \(Self.reason(error))")
                }
            case "result", "violation":
                guard case .int(let idx)? = obj["index"], idx >= 0, idx < header.units else {
                    throw JSONLError(file: file, line: no, message: "a \(type) line without an index in 0..<\(header.units)")
                }
                records.append((no, type, Int(idx), Data(bytes)))
            case "header":
                throw JSONLError(file: file, line: no, message: "a second header (two shards concatenated into one file?)")
            default:
                throw JSONLError(file: file, line: no, message: "unknown line type '\(type)' (expected result, violation or trailer)")
            }
        }
    }

    /// Reads a file.
    package init(path: String) throws(JSONLError) {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw JSONLError(file: path, message: "cannot read file")
        }
        try self.init(data: data, file: path)
    }

    static func reason(_ error: any Error) -> String {
        switch error as? DecodingError {
        case .keyNotFound(let k, _)?: "missing \"\(k.stringValue)\""
        case .typeMismatch(_, let c)?, .valueNotFound(_, let c)?: "wrong type at \(c.codingPath.map(\.stringValue).joined(separator: "."))"
        case .dataCorrupted?: "not JSON"
        default: "\(error)"
        }
    }
}
