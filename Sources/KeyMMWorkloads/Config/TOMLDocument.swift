// TOML files (`--config FILE`, sweep specs) read through LebJe/TOMLKit (toml++), flattened to
// the entries KeyMM uses: `key = value` with a string, integer, boolean or an array of those,
// in document order, each with the line and column of its key. Tables (`[machine]`, dotted
// keys) only group: an entry is named by its last key component. TOMLKit locates syntax errors
// itself; it does not expose where a parsed value was, so `KeyLocator` finds each key's line in
// the text (headers, bare/quoted/dotted keys, skipping multi-line strings) for the errors the
// settings' parsers raise later.
//
// Invariant: nothing in the file is dropped silently: a value of another type (float, date,
// inline table, array of tables) is a located error, not ignored.
internal import TOMLKit

/// A located error in a TOML file.
public struct ConfigFileError: Error, CustomStringConvertible, Sendable {
    public let file: String
    public let line: Int
    public let column: Int
    public let message: String
    public init(file: String, line: Int, column: Int, message: String) {
        self.file = file; self.line = line; self.column = column; self.message = message
    }
    public var description: String { "\(file):\(line):\(column): error: \(message)" }
}

/// A TOML scalar KeyMM accepts, as the text `--set` would take (booleans as on/off).
package enum TOMLScalar: Sendable, Hashable {
    case string(String)
    case integer(Int)
    case boolean(Bool)

    /// The value as `--set KEY=VALUE` spells it.
    package var settingText: String {
        switch self {
        case .string(let s): s
        case .integer(let i): String(i)
        case .boolean(let b): b ? "on" : "off"
        }
    }
}

/// One `key = value` of a TOML document.
package struct TOMLEntry: Sendable, Hashable {
    /// Table path (e.g. ["machine"]) and the key.
    package var path: [String]
    package var key: String
    /// A single value, or the elements of an array.
    package var values: [TOMLScalar]
    package var isArray: Bool
    package var line: Int
    package var column: Int
}

/// A parsed TOML file.
package struct TOMLDocument: Sendable {
    package let file: String
    /// Entries in document order.
    package let entries: [TOMLEntry]

    package init(text: String, file: String) throws(ConfigFileError) {
        self.file = file
        let table: TOMLTable
        do {
            table = try TOMLTable(string: text)
        } catch let e as TOMLParseError {
            throw ConfigFileError(file: file, line: max(e.source.begin.line, 1), column: max(e.source.begin.column, 1),
                                  message: "invalid TOML: " + e.description)
        } catch {
            throw ConfigFileError(file: file, line: 1, column: 1, message: "invalid TOML: \(error)")
        }
        let locator = KeyLocator(text: text)
        var out: [TOMLEntry] = []
        try Self.flatten(table, path: [], locator: locator, file: file, into: &out)
        entries = out.sorted { ($0.line, $0.column) < ($1.line, $1.column) }
    }

    private static func flatten(_ table: TOMLTable, path: [String], locator: KeyLocator, file: String,
                                into out: inout [TOMLEntry]) throws(ConfigFileError) {
        for key in table.keys {
            guard let value = table[key] else { continue }
            let (line, column) = locator.locate(path: path, key: key)
            func fail(_ what: String) -> ConfigFileError {
                ConfigFileError(file: file, line: line, column: column,
                                message: "'\(key)': \(what); expected a \"string\", an integer, true/false, or an array of those")
            }
            if let sub = value.table {
                if sub.inline { throw fail("an inline table is not accepted") }
                try flatten(sub, path: path + [key], locator: locator, file: file, into: &out)
                continue
            }
            if let array = value.array {
                var items: [TOMLScalar] = []
                for element in array {
                    guard let s = scalar(element) else { throw fail("an array element of type \(element.type) is not accepted") }
                    items.append(s)
                }
                out.append(TOMLEntry(path: path, key: key, values: items, isArray: true, line: line, column: column))
                continue
            }
            guard let s = scalar(value) else { throw fail("a value of type \(value.type) is not accepted") }
            out.append(TOMLEntry(path: path, key: key, values: [s], isArray: false, line: line, column: column))
        }
    }

    private static func scalar(_ v: any TOMLValueConvertible) -> TOMLScalar? {
        switch v.type {
        case .string: v.string.map(TOMLScalar.string)
        case .int: v.int.map(TOMLScalar.integer)
        case .bool: v.bool.map(TOMLScalar.boolean)
        default: nil
        }
    }
}

/// Finds where a key is written: scans the text's lines, tracking `[table]` headers and skipping
/// multi-line strings. A key it cannot find (inside an inline table, say) is placed at its
/// table's header, or line 1.
struct KeyLocator {
    /// (table path, key path) -> (line, column), first definition.
    private var places: [[String]: (Int, Int)] = [:]

    init(text: String) {
        var table: [String] = []
        var inMultiline: String?
        for (i, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = String(raw)
            if let delim = inMultiline {
                if line.contains(delim) { inMultiline = nil }
                continue
            }
            let trimmed = line.drop { $0 == " " || $0 == "\t" }
            let column = line.count - trimmed.count + 1
            if trimmed.hasPrefix("[") {
                let inner = trimmed.hasPrefix("[[") ? trimmed.dropFirst(2) : trimmed.dropFirst()
                guard let close = inner.firstIndex(of: "]") else { continue }
                table = Self.keyPath(String(inner[..<close]))
                if places[table] == nil { places[table] = (i + 1, column) }
                continue
            }
            guard let eq = Self.assignment(trimmed) else { continue }
            let keys = Self.keyPath(String(trimmed[..<eq]))
            guard !keys.isEmpty else { continue }
            let full = table + keys
            if places[full] == nil { places[full] = (i + 1, column) }
            let rest = trimmed[trimmed.index(after: eq)...]
            for delim in ["\"\"\"", "'''"] {
                if let r = rest.range(of: delim), !rest[r.upperBound...].contains(delim) { inMultiline = delim }
            }
        }
    }

    /// The position of `key` in table `path`.
    func locate(path: [String], key: String) -> (Int, Int) {
        places[path + [key]] ?? places[path] ?? (1, 1)
    }

    /// The index of the `=` of a `key = value` line (outside quotes), if it is one.
    private static func assignment(_ s: Substring) -> Substring.Index? {
        var quote: Character?
        for i in s.indices {
            let c = s[i]
            if let q = quote { if c == q { quote = nil }; continue }
            if c == "\"" || c == "'" { quote = c; continue }
            if c == "#" { return nil }
            if c == "=" { return i }
        }
        return nil
    }

    /// `a."b c".d` -> ["a", "b c", "d"].
    private static func keyPath(_ s: String) -> [String] {
        var out: [String] = []
        var cur = ""
        var quote: Character?
        for c in s {
            if let q = quote {
                if c == q { quote = nil } else { cur.append(c) }
                continue
            }
            switch c {
            case "\"", "'": quote = c
            case ".": out.append(cur.trimmingWhitespace); cur = ""
            default: cur.append(c)
            }
        }
        out.append(cur.trimmingWhitespace)
        return out.filter { !$0.isEmpty }
    }
}

extension String {
    fileprivate var trimmingWhitespace: String {
        String(drop { $0 == " " || $0 == "\t" }.reversed().drop { $0 == " " || $0 == "\t" }.reversed())
    }
}
