// The public entry point: a streaming reader of trace/scenario files.
//
// Owns: `TraceReader` (file or in-memory input -> `TraceEvent`s), strict and lenient modes.
// Invariants: input is read in chunks, never whole; strict mode throws the first located error
// of a line and can be resumed after it (the next call continues with the next line); lenient
// mode records errors in `skipped` (the first `maxRecordedErrors`, all counted) and goes on.

/// Reads a trace or scenario file (strace syntax, or perf trace output) as a stream of events.
///
/// ```swift
/// let reader = try TraceReader(path: "traces/python3-startup.strace")
/// while let event = try reader.next() { ... }
/// ```
public final class TraceReader {
    /// The file name used in locations.
    public let file: String
    /// Lenient mode (replay of real logs): malformed lines are recorded in `skipped` and skipped.
    public let lenient: Bool
    /// Lenient mode: the first `maxRecordedErrors` errors of skipped lines.
    public private(set) var skipped: [TraceError] = []
    /// Lenient mode: how many lines were skipped (may exceed `skipped.count`).
    public private(set) var skippedCount = 0
    /// How many errors `skipped` keeps.
    public var maxRecordedErrors = 1000
    /// Lines read so far.
    public var linesRead: Int { source.lineNumber }
    /// Bytes read from the input so far.
    public var bytesRead: Int { source.bytesRead }

    private let source: LineSource
    @exclusivity(unchecked) private var joiner = EventJoiner()
    @exclusivity(unchecked) private var finished = false

    /// Lines longer than this (bytes) are reported as errors and skipped.
    public static let defaultMaxLineLength = 16 << 20

    /// Opens a file; throws a `TraceError` located at the file if it cannot be opened.
    public init(path: String, lenient: Bool = false, maxLineLength: Int = TraceReader.defaultMaxLineLength) throws(TraceError) {
        self.file = path
        self.lenient = lenient
        self.source = try LineSource(path: path, maxLineLength: maxLineLength)
    }

    /// Reads in-memory bytes; `name` is used as the file name in locations.
    public init<C: Collection<UInt8>>(bytes: C, name: String = "<input>", lenient: Bool = false,
                                      maxLineLength: Int = TraceReader.defaultMaxLineLength) {
        self.file = name
        self.lenient = lenient
        self.source = LineSource(bytes: bytes, maxLineLength: maxLineLength)
    }

    /// Reads a string (its UTF-8 bytes).
    public convenience init(string: String, name: String = "<input>", lenient: Bool = false) {
        self.init(bytes: Array(string.utf8), name: name, lenient: lenient)
    }

    /// The next event, nil at the end. In strict mode a malformed line throws its located error;
    /// calling `next()` again continues after that line.
    public func next() throws(TraceError) -> TraceEvent? {
        while true {
            if let e = joiner.pop() { return e }
            if finished { return nil }
            guard let line = source.next() else {
                finished = true
                joiner.finish()
                continue
            }
            do throws(TraceError) {
                if line.overlong {
                    throw TraceError(location: SourceLocation(file: file, line: line.number, column: 1),
                                     message: "line longer than \(source.maxLineLength) bytes")
                }
                var parser = LineParser(base: line.start, count: line.count, file: file, line: line.number)
                if let event = try joiner.consume(try parser.parseLine()) { return event }
            } catch {
                if !lenient { throw error }
                skippedCount += 1
                if skipped.count < maxRecordedErrors { skipped.append(error) }
            }
        }
    }

    /// Reads every remaining event (strict mode: stops at the first error).
    public func readAll() throws(TraceError) -> [TraceEvent] {
        var events: [TraceEvent] = []
        while let e = try next() { events.append(e) }
        return events
    }

    /// Reads every remaining event, collecting errors instead of stopping (also in strict mode).
    public func readAllCollectingErrors() -> (events: [TraceEvent], errors: [TraceError]) {
        var events: [TraceEvent] = []
        var errors: [TraceError] = []
        while true {
            do throws(TraceError) {
                guard let e = try next() else { break }
                events.append(e)
            } catch {
                errors.append(error)
            }
        }
        return (events, errors + skipped)
    }
}
