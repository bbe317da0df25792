// Streaming input: files read in chunks (lines across chunk boundaries, long lines, no final
// newline) give the same events as in-memory input.
import Testing
import KeyMMTrace
#if canImport(Glibc)
import Glibc
#endif

private func writeTemp(_ bytes: [UInt8]) -> String {
    var template = Array("/tmp/keymm-trace-test-XXXXXX".utf8CString)
    let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
    bytes.withUnsafeBufferPointer { _ = write(fd, $0.baseAddress, $0.count) }
    close(fd)
    return String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

@Suite struct StreamingTests {
    @Test func fileAndMemoryReadersAgreeAcrossChunkBoundaries() throws {
        var text = ""
        for i in 0..<6000 {
            text += "\(1000 + i % 7)  mmap(NULL, \(4096 * (i + 1)), PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0) = 0x\(String(0x7f00_0000_0000 + i * 4096, radix: 16))\n"
            if i % 1000 == 0 {
                text += "1000  write(1, \"" + String(repeating: "x", count: 300_000) + "\", 300000) = 300000\n"
            }
        }
        text += "1000  close(3) = 0" // no final newline
        let bytes = Array(text.utf8)
        let path = writeTemp(bytes)
        defer { unlink(path) }
        let fromFile = try TraceReader(path: path).readAll()
        let fromMemory = try TraceReader(bytes: bytes, name: path).readAll()
        #expect(fromFile.count == 6000 + 6 + 1)
        #expect(fromFile == fromMemory)
        if case .call(let last) = fromFile.last {
            #expect(last.name == "close" && last.location.line == 6000 + 6 + 1)
        }
        if case .call(let w) = fromFile[1] {
            #expect(w.args[1].string?.bytes.count == 300_000)
        }
    }

    @Test func overlongLineInAFileIsSkippedAndCounted() throws {
        let bytes = Array(("close(1) = 0\nwrite(1, \"" + String(repeating: "y", count: 200_000) + "\", 1) = 1\nclose(2) = 0\n").utf8)
        let path = writeTemp(bytes)
        defer { unlink(path) }
        let reader = try TraceReader(path: path, lenient: true, maxLineLength: 100_000)
        let all = try reader.readAll()
        #expect(all.count == 2)
        #expect(all.last?.location.line == 3)
        #expect(reader.skipped.map(\.location.line) == [2])
        #expect(reader.linesRead == 3)
    }

    @Test func emptyInputs() throws {
        #expect(try TraceReader(bytes: [UInt8]()).readAll().isEmpty)
        let path = writeTemp([])
        defer { unlink(path) }
        #expect(try TraceReader(path: path).readAll().isEmpty)
    }
}
