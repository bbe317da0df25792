// Streaming line input: a file read in chunks (never whole) or bytes held in memory.
//
// Owns: `LineSource`, the buffer a line's bytes live in while it is parsed.
// Invariants: memory is bounded by the longest line (capped at `maxLineLength`; longer lines
// are skipped and reported as overlong); a returned line stays valid until the next call;
// the final line needs no newline.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// One line handed out by `LineSource`.
struct SourceLine {
    var start: UnsafePointer<UInt8>
    var count: Int
    var number: Int
    /// True when the line was longer than the cap and was skipped (`count` is 0).
    var overlong: Bool
}

final class LineSource {
    private var buffer: UnsafeMutablePointer<UInt8>
    private var capacity: Int
    @exclusivity(unchecked) private var start = 0
    @exclusivity(unchecked) private var end = 0
    private var fd: Int32
    private var eof: Bool
    @exclusivity(unchecked) private(set) var lineNumber = 0
    /// Bytes consumed so far (lines and their newlines).
    private(set) var bytesRead = 0
    let maxLineLength: Int

    /// Reads the file at `path` in chunks.
    init(path: String, maxLineLength: Int) throws(TraceError) {
        let fd = open(path, O_RDONLY)
        if fd < 0 {
            let reason = String(cString: strerror(errno))
            throw TraceError(location: SourceLocation(file: path, line: 0, column: 0),
                             message: "cannot open trace file: \(reason)")
        }
        var st = stat()
        if fstat(fd, &st) == 0, st.st_mode & S_IFMT == S_IFDIR {
            close(fd)
            throw TraceError(location: SourceLocation(file: path, line: 0, column: 0),
                             message: "is a directory; give a trace or scenario file (e.g. strace -f -o FILE PROGRAM)")
        }
        self.fd = fd
        self.eof = false
        self.capacity = 1 << 18
        self.buffer = .allocate(capacity: capacity)
        self.maxLineLength = max(maxLineLength, 64)
    }

    /// Serves lines out of `bytes` (copied once).
    init<C: Collection<UInt8>>(bytes: C, maxLineLength: Int) {
        self.fd = -1
        self.eof = true
        self.capacity = max(bytes.count, 1)
        self.buffer = .allocate(capacity: capacity)
        let n = UnsafeMutableBufferPointer(start: buffer, count: capacity).initialize(from: bytes).1
        self.end = n
        self.bytesRead = n
        self.maxLineLength = max(maxLineLength, 64)
    }

    deinit {
        if fd >= 0 { close(fd) }
        buffer.deallocate()
    }

    /// Reads more input after `end`; false at end of file (or on a read error).
    private func fill() -> Bool {
        if eof { return false }
        if start > 0 {
            let live = end - start
            if live > 0 { memmove(buffer, buffer + start, live) }
            start = 0
            end = live
        }
        if end == capacity {
            let grown = capacity * 2
            let fresh = UnsafeMutablePointer<UInt8>.allocate(capacity: grown)
            fresh.update(from: buffer, count: end)
            buffer.deallocate()
            buffer = fresh
            capacity = grown
        }
        while true {
            let n = read(fd, buffer + end, capacity - end)
            if n > 0 { end += n; bytesRead += n; return true }
            if n < 0 && errno == EINTR { continue }
            eof = true
            return false
        }
    }

    /// The next line without its newline, or nil at end of input.
    func next() -> SourceLine? {
        var searched = start
        while true {
            if let nl = memchr(buffer + searched, 0x0a, end - searched) {
                let i = buffer.distance(to: nl.assumingMemoryBound(to: UInt8.self))
                if i - start > maxLineLength {
                    lineNumber += 1
                    start = i + 1
                    return SourceLine(start: buffer, count: 0, number: lineNumber, overlong: true)
                }
                let line = SourceLine(start: buffer + start, count: i - start, number: lineNumber + 1, overlong: false)
                lineNumber += 1
                start = i + 1
                return line
            }
            searched = end
            if end - start >= maxLineLength {
                return skipOverlong()
            }
            let before = end - start
            if !fill() {
                guard end > start else { return nil }
                if end - start > maxLineLength {
                    lineNumber += 1
                    start = end
                    return SourceLine(start: buffer, count: 0, number: lineNumber, overlong: true)
                }
                let line = SourceLine(start: buffer + start, count: end - start, number: lineNumber + 1, overlong: false)
                lineNumber += 1
                start = end
                return line
            }
            searched = start + before
        }
    }

    /// Drops the rest of a line longer than the cap.
    private func skipOverlong() -> SourceLine {
        lineNumber += 1
        let number = lineNumber
        while true {
            if let nl = memchr(buffer + start, 0x0a, end - start) {
                start = buffer.distance(to: nl.assumingMemoryBound(to: UInt8.self)) + 1
                break
            }
            start = end
            if !fill() { break }
        }
        return SourceLine(start: buffer, count: 0, number: number, overlong: true)
    }
}
