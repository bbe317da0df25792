// Typed access to a call's arguments for the layer that executes them.
//
// Owns: `TraceArgument` (one argument with its position, for located errors) and the
// evaluation of constants, unions and strace arithmetic to integers through `TraceConstants`.
// Invariant: every failure is a `TraceError` at the argument's column naming the accepted forms;
// nothing traps on any value.

/// One argument of a call, with what is needed to report a located error about it.
public struct TraceArgument: Sendable, Hashable {
    /// The value as parsed.
    public let value: TraceValue
    /// 0-based position (or -1 for a named argument looked up by name).
    public let index: Int
    /// The call's name.
    public let call: String
    /// Where the argument starts.
    public let location: SourceLocation

    public init(value: TraceValue, index: Int, call: String, location: SourceLocation) {
        self.value = value
        self.index = index
        self.call = call
        self.location = location
    }

    private var what: String { index >= 0 ? "argument \(index + 1) of \(call)" : "an argument of \(call)" }

    func fail(_ message: String) -> TraceError {
        TraceError(location: location, message: "\(what): \(message)")
    }

    /// The value as an unsigned 64-bit integer (two's complement for negatives): integers, `NULL`,
    /// known constants of `families` (any family when empty), `|` unions and `<< >> * + - &` of those.
    public func asUInt64(_ families: [TraceConstantFamily] = [],
                         constants: TraceConstants = .linux) throws(TraceError) -> UInt64 {
        try evaluate(value, families, constants)
    }

    /// The value as a signed 64-bit integer (`AT_FDCWD` is -100, `-1` is -1).
    public func asInt64(_ families: [TraceConstantFamily] = [],
                        constants: TraceConstants = .linux) throws(TraceError) -> Int64 {
        Int64(bitPattern: try asUInt64(families, constants: constants))
    }

    /// The value as a 32-bit integer (fds, pids, key serials, pkeys); 0x80000000...0xffffffff wrap to
    /// negatives like C's int, anything wider is an error.
    public func asInt32(_ families: [TraceConstantFamily] = [],
                        constants: TraceConstants = .linux) throws(TraceError) -> Int32 {
        let v = try asInt64(families, constants: constants)
        if v >= Int64(Int32.min) && v <= Int64(Int32.max) { return Int32(v) }
        if v > 0 && v <= Int64(UInt32.max) { return Int32(bitPattern: UInt32(v)) }
        throw fail("\(v) does not fit a 32-bit integer")
    }

    /// The bytes of a string argument. A string strace truncated (`"..."...`) is an error unless
    /// `allowTruncated` (its bytes are then the printed prefix).
    public func asBytes(allowTruncated: Bool = false) throws(TraceError) -> [UInt8] {
        guard let s = value.unnamed.string else {
            throw fail("expected a \"string\", found \(Self.kind(value.unnamed))")
        }
        if s.truncated && !allowTruncated {
            throw fail("the string was truncated by strace (\"...\"...); record the trace with a larger -s (e.g. strace -s 4096)")
        }
        return s.bytes
    }

    /// The text of a string argument (paths, key types and descriptions).
    public func asString(allowTruncated: Bool = false) throws(TraceError) -> String {
        String(decoding: try asBytes(allowTruncated: allowTruncated), as: UTF8.self)
    }

    /// A field `name=...` of a structure argument (fstat's `st_size`), as an argument at the same place.
    public func field(_ name: String) throws(TraceError) -> TraceArgument {
        if let v = value.field(name) { return TraceArgument(value: v, index: index, call: call, location: location) }
        let fields = value.unnamed.elements.compactMap { v -> String? in
            if case .named(let n, _) = v { return n }
            return nil
        }
        throw fail("has no field \(name)" + (fields.isEmpty ? "" : "; its fields are " + fields.joined(separator: ", ")))
    }

    static func kind(_ v: TraceValue) -> String {
        switch v {
        case .int, .fd: "an integer"
        case .symbol(let s): "the constant \(s)"
        case .union: "a | union"
        case .string: "a string"
        case .array: "an [array]"
        case .structure: "a {structure}"
        case .named(let n, _): "\(n)=..."
        case .binary, .unary: "an expression"
        case .changed: "an IN => OUT pair"
        case .call(let n, _): "\(n)(...)"
        case .null: "NULL"
        case .elided: "an elided value (...)"
        case .raw(let s): "'\(s)'"
        }
    }

    private func evaluate(_ v: TraceValue, _ families: [TraceConstantFamily],
                          _ constants: TraceConstants) throws(TraceError) -> UInt64 {
        switch v {
        case .int(let i), .fd(let i, _):
            return i.bitPattern
        case .null:
            return 0
        case .symbol(let name):
            guard let entry = constants.entry(name) else {
                let hint = constants.suggestion(for: name, in: families).map { " (did you mean \($0)?)" } ?? ""
                throw fail("unknown constant \(name)\(hint); accepted: \(acceptedNumbers(families))")
            }
            if !families.isEmpty && !families.contains(entry.family) {
                throw fail("\(name) is a \(entry.family) constant, not valid here; accepted: \(acceptedNumbers(families))")
            }
            return UInt64(bitPattern: entry.value)
        case .union(let parts):
            var acc: UInt64 = 0
            for p in parts { acc |= try evaluate(p, families, constants) }
            return acc
        case .named(_, let inner):
            return try evaluate(inner, families, constants)
        case .changed(let before, _):
            return try evaluate(before, families, constants)
        case .binary(let op, let l, let r):
            let a = try evaluate(l, families, constants), b = try evaluate(r, families, constants)
            switch op {
            case .shiftLeft: return b < 64 ? a << b : 0
            case .shiftRight: return b < 64 ? a >> b : 0
            case .multiply: return a &* b
            case .add: return a &+ b
            case .subtract: return a &- b
            case .bitAnd: return a & b
            default: throw fail("'\(op.spelling)' does not give a number; accepted: \(acceptedNumbers(families))")
            }
        case .unary(.complement, let inner):
            return ~(try evaluate(inner, families, constants))
        case .raw(let text):
            throw fail("'\(text)' is not a 64-bit integer; accepted: \(acceptedNumbers(families))")
        default:
            throw fail("expected a number, found \(Self.kind(v)); accepted: \(acceptedNumbers(families))")
        }
    }

    private func acceptedNumbers(_ families: [TraceConstantFamily]) -> String {
        if families.isEmpty { return AcceptedForms.number }
        return "integers (decimal 42, hex 0x2a, octal 052, negative -1), NULL, and "
            + families.map(\.rawValue).joined(separator: ", ") + " constants joined by |"
    }
}

extension SyscallLine {
    /// Argument `index` (0-based); a missing argument is a located error naming how many there are.
    public func arg(_ index: Int) throws(TraceError) -> TraceArgument {
        guard index >= 0 && index < args.count else {
            throw TraceError(location: location, message:
                "\(name) needs at least \(index + 1) argument\(index == 0 ? "" : "s"), the line has \(args.count)")
        }
        return TraceArgument(value: args[index], index: index, call: name, location: location(ofArgument: index))
    }

    /// The argument written `name=value` (clone's `flags=`, `child_tidptr=`), if any.
    public func argument(named name: String) -> TraceArgument? {
        for (i, a) in args.enumerated() {
            if case .named(let n, let v) = a, n == name {
                return TraceArgument(value: v, index: i, call: self.name, location: location(ofArgument: i))
            }
        }
        return nil
    }

    /// Argument `index` if present (nil beyond the last).
    public func optionalArg(_ index: Int) -> TraceArgument? {
        index >= 0 && index < args.count ? try? arg(index) : nil
    }
}
