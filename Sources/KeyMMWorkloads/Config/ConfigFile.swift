// `--config FILE`: the model's settings in TOML. KeyMM reads the flat subset its
// settings need — `key = value` pairs, optional `[table]` headers used only for grouping,
// `#` comments, values that are "strings", integers or booleans — and names the place of
// anything else (`FILE:LINE:COLUMN: error: ...`). (No TOML library is mirrored for this
// machine that builds without network dependencies, so this subset is read here.)
//
// Invariant: every accepted pair is applied through `ModelConfig.apply(key:value:)`,
// so a file accepts exactly what `--set` accepts.
import Foundation

/// A located error in a configuration file.
public struct ConfigFileError: Error, CustomStringConvertible, Sendable {
    public let file: String
    public let line: Int
    public let column: Int
    public let message: String
    public var description: String { "\(file):\(line):\(column): error: \(message)" }
}

extension ModelConfig {
    /// Applies every setting of a TOML configuration text.
    public mutating func applyTOML(_ text: String, file: String) throws(ConfigFileError) {
        for (index, rawLine) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let lineNo = index + 1
            let line = String(rawLine)
            let content = Self.stripComment(line).trimmingCharacters(in: .whitespaces)
            if content.isEmpty { continue }
            let indent = (line.firstIndex { !$0.isWhitespace }.map { line.distance(from: line.startIndex, to: $0) } ?? 0) + 1
            if content.hasPrefix("[") {
                guard content.hasSuffix("]"), content.count > 2 else {
                    throw ConfigFileError(file: file, line: lineNo, column: indent, message: "expected a table header such as [machine]")
                }
                continue
            }
            guard let eq = content.firstIndex(of: "=") else {
                throw ConfigFileError(file: file, line: lineNo, column: indent, message: "expected `key = value` (value: \"string\", integer or true/false)")
            }
            let key = content[..<eq].trimmingCharacters(in: .whitespaces)
            let rawValue = content[content.index(after: eq)...].trimmingCharacters(in: .whitespaces)
            let valueColumn = indent + content.distance(from: content.startIndex, to: eq) + 2
            let value: String
            if rawValue.hasPrefix("\"") {
                guard rawValue.count >= 2, rawValue.hasSuffix("\"") else {
                    throw ConfigFileError(file: file, line: lineNo, column: valueColumn, message: "unterminated string")
                }
                value = String(rawValue.dropFirst().dropLast())
            } else if rawValue == "true" || rawValue == "false" {
                value = rawValue == "true" ? "on" : "off"
            } else if !rawValue.isEmpty, rawValue.allSatisfy({ $0.isNumber || $0 == "_" }) {
                value = rawValue.replacingOccurrences(of: "_", with: "")
            } else {
                throw ConfigFileError(file: file, line: lineNo, column: valueColumn, message: "expected a \"string\", an integer or true/false, got '\(rawValue)'")
            }
            do { try apply(key: key, value: value) } catch {
                throw ConfigFileError(file: file, line: lineNo, column: indent, message: error.message)
            }
        }
    }

    private static func stripComment(_ line: String) -> String {
        var inString = false
        for (i, c) in zip(line.indices, line) {
            if c == "\"" { inString.toggle() }
            if c == "#" && !inString { return String(line[..<i]) }
        }
        return line
    }
}
