// Source locations and located errors of the scenario/trace language.
//
// Owns: `SourceLocation` (FILE:LINE:COLUMN, 1-based, columns count bytes) and `TraceError`,
// whose description is exactly the compiler-style form the contract fixes:
// `FILE:LINE:COLUMN: error: WHAT`, where WHAT names the accepted forms.
// Invariant: every error the parser raises carries the location of the offending byte.

/// A place in a trace or scenario file: 1-based line and 1-based byte column.
///
/// Column 0 means "the whole line" (used for problems that belong to a line, not a byte,
/// such as a resumed call that has no unfinished part); line 0 means "the whole file".
public struct SourceLocation: Sendable, Hashable, Comparable, CustomStringConvertible {
    /// The file name as given to the reader (a path, or a name for in-memory input).
    public let file: String
    /// 1-based line number.
    public let line: Int
    /// 1-based byte column.
    public let column: Int

    public init(file: String, line: Int, column: Int) {
        self.file = file
        self.line = line
        self.column = column
    }

    /// `FILE:LINE:COLUMN` (or `FILE:LINE` when the column is 0, `FILE` when the line is 0).
    public var description: String {
        if line <= 0 { return file }
        if column <= 0 { return "\(file):\(line)" }
        return "\(file):\(line):\(column)"
    }

    /// The same place with another column.
    public func with(column: Int) -> SourceLocation {
        SourceLocation(file: file, line: line, column: column)
    }

    public static func < (a: SourceLocation, b: SourceLocation) -> Bool {
        if a.file != b.file { return a.file < b.file }
        if a.line != b.line { return a.line < b.line }
        return a.column < b.column
    }
}

/// A located error in a trace or scenario file.
///
/// `description` is `FILE:LINE:COLUMN: error: MESSAGE`; messages name what was expected
/// and the accepted forms, e.g.
/// `t.strace:3:17: error: expected ',' or ')' after argument 2 of mmap; arguments are ...`.
public struct TraceError: Error, Sendable, Hashable, CustomStringConvertible {
    /// Where the problem is.
    public let location: SourceLocation
    /// What is wrong, and what would have been accepted.
    public let message: String

    /// `message` is stored with any key material redacted (KeyMaterialRedaction.swift).
    public init(location: SourceLocation, message: String) {
        self.location = location
        self.message = redactingKeyMaterial(message)
    }

    public var description: String { "\(location): error: \(message)" }
}

/// Shared wording for the accepted forms, so every message lists them the same way.
enum AcceptedForms {
    static let argument =
        "arguments are integers (42, -1, 0x1000, 0644), NULL, CONSTANTS joined by | (PROT_READ|PROT_WRITE), "
        + "\"strings\", [arrays], {structures}, name=value and ... for elided parts"
    static let result =
        "a result is a number or hex address, -1 ERRNO (text), ?, a \"string\" or a signal name (SIGSEGV), "
        + "optionally followed by (detail) and a <duration>"
    static let line =
        "a line is [PID] NAME(ARGS)[ = RESULT], +++ exited with N +++, +++ killed by SIGNAL +++, "
        + "--- SIGNAL {...} ---, # comment, #@ set KEY=VALUE, or blank"
    static let number =
        "integers (decimal 42, hex 0x2a, octal 052, negative -1), NULL, and known constants joined by |"
}

/// Renders one byte for an error message: `'x'` when printable, `byte 0x00` otherwise.
@inline(never)
func describeByte(_ c: UInt8) -> String {
    if c >= 0x20 && c < 0x7f { return "'\(Character(Unicode.Scalar(c)))'" }
    let hex = String(c, radix: 16)
    return "byte 0x" + (hex.count < 2 ? "0" + hex : hex)
}
