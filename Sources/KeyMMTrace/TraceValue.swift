// The value model of the trace language: what one argument (or a part of one) is.
//
// Owns: `TraceValue`, `TraceInteger`, `TraceString`, `TraceOperator`.
// Invariants: values are plain syntax (no kernel meaning); integers keep their magnitude,
// sign and radix so formatting reproduces the input (0644 stays octal); strings are raw
// bytes after strace's escapes are decoded, with strace's `"..."...` truncation kept as a flag.

/// An integer as written: magnitude, sign and radix. Addresses up to 2^64 - 1 fit.
/// Equality ignores the radix: the radix only decides how the integer prints.
public struct TraceInteger: Sendable, Hashable {
    /// How the integer was written, so it prints back the same way.
    public enum Radix: UInt8, Sendable, Hashable { case decimal, hex, octal }

    /// The absolute value.
    public var magnitude: UInt64
    /// True for a leading `-`.
    public var isNegative: Bool
    /// The radix it was written in.
    public var radix: Radix

    public init(magnitude: UInt64, isNegative: Bool = false, radix: Radix = .decimal) {
        self.magnitude = magnitude
        self.isNegative = isNegative && magnitude != 0
        self.radix = radix
    }

    /// A signed integer in decimal.
    public init(_ value: Int64) {
        self.init(magnitude: value.magnitude, isNegative: value < 0, radix: .decimal)
    }

    /// The two's-complement bit pattern (so `-1` is `0xffff_ffff_ffff_ffff`, `-100` is AT_FDCWD's pattern).
    public var bitPattern: UInt64 { isNegative ? 0 &- magnitude : magnitude }

    /// Equal values are equal whatever their radix (`0x10 == 16`, `0644 == 420`).
    public static func == (a: TraceInteger, b: TraceInteger) -> Bool {
        a.magnitude == b.magnitude && a.isNegative == b.isNegative
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(magnitude)
        hasher.combine(isNegative)
    }

    /// The value as a signed 64-bit integer, or nil when it does not fit (e.g. 0xffff_ffff_ffff_ffff).
    public var int64Value: Int64? {
        if isNegative { return magnitude <= 1 << 63 ? Int64(bitPattern: 0 &- magnitude) : nil }
        return magnitude <= UInt64(Int64.max) ? Int64(magnitude) : nil
    }
}

/// A C string as strace prints it: the decoded bytes, and whether strace cut it short (`"..."...`).
public struct TraceString: Sendable, Hashable {
    /// The bytes after decoding escapes (`\n`, `\x41`, `\101`, ...).
    public var bytes: [UInt8]
    /// True when strace printed `...` after the closing quote (the real string was longer).
    public var truncated: Bool

    public init(bytes: [UInt8], truncated: Bool = false) {
        self.bytes = bytes
        self.truncated = truncated
    }

    public init(_ text: String, truncated: Bool = false) {
        self.init(bytes: Array(text.utf8), truncated: truncated)
    }

    /// The bytes as text (invalid UTF-8 replaced by U+FFFD).
    public var text: String { String(decoding: bytes, as: UTF8.self) }
}

/// Operators strace prints inside values.
public enum TraceOperator: Sendable, Hashable, CaseIterable {
    case shiftLeft, shiftRight, multiply, add, subtract
    case bitAnd, equal, notEqual, logicalAnd, logicalOr
    /// strace's "or" between alternative ioctl names (`SNDCTL_TMR_TIMEBASE or TCGETS`).
    case alternative
    /// Unary prefixes: `~[...]` (complement set), `!x`, `&x` (address of).
    case complement, not, addressOf

    /// How the operator is written.
    public var spelling: String {
        switch self {
        case .shiftLeft: "<<"
        case .shiftRight: ">>"
        case .multiply: "*"
        case .add: "+"
        case .subtract: "-"
        case .bitAnd, .addressOf: "&"
        case .equal: "=="
        case .notEqual: "!="
        case .logicalAnd: "&&"
        case .logicalOr: "||"
        case .alternative: "or"
        case .complement: "~"
        case .not: "!"
        }
    }
}

/// One argument value (or part of one), as the trace shows it.
///
/// The forms mirror what strace prints; see docs/scenario-format.md for the grammar.
public enum TraceValue: Sendable, Hashable {
    /// An integer: `42`, `-1`, `0x7f0000000000`, `0644`.
    case int(TraceInteger)
    /// A symbolic constant or other identifier: `PROT_READ`, `AT_FDCWD`, `SIGCHLD`.
    case symbol(String)
    /// Parts joined by `|`: `PROT_READ|PROT_WRITE`, `S_IFREG|0644`, `MAP_PRIVATE|21<<MAP_HUGE_SHIFT`.
    case union([TraceValue])
    /// A C string.
    case string(TraceString)
    /// `[a, b, c]` (or strace's space-separated sets `[CHLD INT]`); `truncated` when it ended in `...`.
    case array([TraceValue], truncated: Bool)
    /// `{a=1, b=2}`; fields are usually `.named`; `truncated` when it ended in `...`.
    case structure([TraceValue], truncated: Bool)
    /// `name=value` (structure fields, clone's `flags=...`).
    indirect case named(String, TraceValue)
    /// A binary expression strace printed: `21<<MAP_HUGE_SHIFT`, `WIFEXITED(s) && WEXITSTATUS(s) == 0`.
    /// Numeric `*`, `+`, `-`, `<<`, `>>` of two integers are folded to `.int` when parsed.
    indirect case binary(TraceOperator, TraceValue, TraceValue)
    /// A prefix expression: `~[RTMIN RT_1]`, `&sin6_addr`.
    indirect case unary(TraceOperator, TraceValue)
    /// strace's in/out form `BEFORE => AFTER` (clone3's `{...} => {parent_tid=[42]}`).
    indirect case changed(TraceValue, TraceValue)
    /// A function-like form: `makedev(0x8, 0x1)`, `WIFEXITED(s)`, `inet_addr("127.0.0.1")`.
    indirect case call(String, [TraceValue])
    /// A file descriptor with strace `-y` decoration: `3</etc/ld.so.cache>` (number, path).
    indirect case fd(TraceInteger, String)
    /// `NULL`.
    case null
    /// A lone `...` (strace elided the value).
    case elided
    /// Text kept verbatim: integers beyond 64 bits, decimals like `0.5`.
    case raw(String)
}

extension TraceValue {
    /// The integer if this value is a plain integer (or an fd with decoration).
    public var integer: TraceInteger? {
        switch self {
        case .int(let i), .fd(let i, _): i
        case .named(_, let v): v.integer
        default: nil
        }
    }

    /// The string if this value is a string.
    public var string: TraceString? {
        switch self {
        case .string(let s): s
        case .named(_, let v): v.string
        default: nil
        }
    }

    /// The field `name=...` of a structure (looking inside `=>` both sides, after-side first,
    /// and through single-element arrays such as wait4's `[{...}]`), or the value of a `.named` with that name.
    public func field(_ name: String) -> TraceValue? {
        switch self {
        case .structure(let fields, _), .call(_, let fields):
            for f in fields { if case .named(let n, let v) = f, n == name { return v } }
            return nil
        case .named(let n, let v):
            return n == name ? v : v.field(name)
        case .changed(let before, let after):
            return after.field(name) ?? before.field(name)
        case .array(let elements, _):
            return elements.count == 1 ? elements[0].field(name) : nil
        default:
            return nil
        }
    }

    /// The elements of an array, structure or union (empty for scalars).
    public var elements: [TraceValue] {
        switch self {
        case .array(let e, _), .structure(let e, _), .union(let e), .call(_, let e): e
        case .named(_, let v): v.elements
        default: []
        }
    }

    /// For `.named`, the value; otherwise self.
    public var unnamed: TraceValue {
        if case .named(_, let v) = self { return v.unnamed }
        return self
    }

    /// True for `NULL`.
    public var isNull: Bool {
        if case .null = unnamed { return true }
        return false
    }
}
