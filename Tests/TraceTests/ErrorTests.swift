// Malformed lines give `FILE:LINE:COLUMN: error: WHAT` with the accepted forms; lenient mode skips them.
import Testing
import KeyMMTrace

@Suite struct ErrorTests {
    @Test func unclosedArgumentList() {
        let e = parseError("close(3) = 0\nmmap(NULL, 4096, PROT_READ\n", name: "a.strace")
        #expect(e == "a.strace:2:27: error: expected ')' to close the argument list of mmap; arguments are integers "
                + "(42, -1, 0x1000, 0644), NULL, CONSTANTS joined by | (PROT_READ|PROT_WRITE), \"strings\", [arrays], "
                + "{structures}, name=value and ... for elided parts")
    }

    @Test func missingComma() {
        let e = parseError("mmap(NULL 4096)")
        #expect(e?.hasPrefix("t.strace:1:11: error: expected ',' or ')' after argument 1 of mmap, found '4'; arguments are") == true)
    }

    @Test func unterminatedString() {
        let e = parseError("openat(AT_FDCWD, \"/etc/passwd, O_RDONLY) = 3")
        #expect(e?.hasPrefix("t.strace:1:18: error: unterminated string starting at column 18") == true)
        #expect(e?.contains("escapes") == true)
    }

    @Test func badEscape() {
        #expect(parseError(#"f("a\qb")"#)?.hasPrefix("t.strace:1:5: error: unknown escape '\\q' in string") == true)
        #expect(parseError(#"f("\x")"#)?.hasPrefix("t.strace:1:4: error: expected hex digits after '\\x'") == true)
        #expect(parseError(#"f("\777")"#)?.hasPrefix("t.strace:1:4: error: octal escape") == true)
    }

    @Test func badNumbers() {
        #expect(parseError("f(0x)")?.hasPrefix("t.strace:1:3: error: expected hex digits after '0x'") == true)
        #expect(parseError("f(0789)")?.hasPrefix("t.strace:1:5: error: invalid digit '8' in octal number") == true)
        #expect(parseError("f(12abc)")?.hasPrefix("t.strace:1:5: error: invalid character 'a' in number '12a'") == true)
        #expect(parseError("f(-x)")?.hasPrefix("t.strace:1:3: error: expected a digit after '-'") == true)
    }

    @Test func unbalancedBrackets() {
        #expect(parseError("f([1, 2)")?.hasPrefix("t.strace:1:8: error: expected ',' or ']' in the array opened at column 3, found ')'") == true)
        #expect(parseError("f({a=1)")?.hasPrefix("t.strace:1:7: error: expected ',' or '}' in the structure opened at column 3") == true)
        #expect(parseError("f([1, 2")?.hasPrefix("t.strace:1:8: error: expected ']' to close the array opened at column 3") == true)
        #expect(parseError("f(1))")?.hasPrefix("t.strace:1:5: error: expected ' = RESULT' or end of line after the arguments of f, found ')'") == true)
    }

    @Test func badResults() {
        #expect(parseError("close(3) =")?.hasPrefix("t.strace:1:11: error: expected a result after '=' in close; a result is") == true)
        #expect(parseError("close(3) = ENOENT")?.hasPrefix("t.strace:1:12: error: unexpected 'ENOENT' as the result of close") == true)
        #expect(parseError("close(3) = 0 junk")?.hasPrefix("t.strace:1:14: error: unexpected 'j' after the result of close") == true)
        #expect(parseError("close(3) = 0 <0.1")?.hasPrefix("t.strace:1:14: error: expected '>' to close the duration") == true)
        #expect(parseError("close(3) = [")?.hasPrefix("t.strace:1:12: error: expected a result after '=' in close, found '['") == true)
    }

    @Test func badLineStarts() {
        #expect(parseError("%%%")?.hasPrefix("t.strace:1:1: error: expected a call NAME(ARGS), found '%'; a line is [PID] NAME(ARGS)") == true)
        #expect(parseError("mmap 1, 2")?.hasPrefix("t.strace:1:6: error: expected '(' after the call name mmap, found '1'") == true)
        #expect(parseError("[pid x] close(3)")?.hasPrefix("t.strace:1:6: error: expected a PID number in '[pid N]', found 'x'") == true)
        #expect(parseError("[pid 3 close(3)")?.hasPrefix("t.strace:1:8: error: expected ']' to close '[pid N]'") == true)
        #expect(parseError("99999999999 close(3)")?.hasPrefix("t.strace:1:1: error: PID in the leading PID is larger than") == true)
        #expect(parseError("12:3x close(3)")?.hasPrefix("t.strace:1:") == true)
        #expect(parseError("+++ exited +++")?.hasPrefix("t.strace:1:5: error: expected 'exited with N', 'killed by SIGNAL'") == true)
        #expect(parseError("--- {} ---")?.hasPrefix("t.strace:1:5: error: expected a signal name after '---'") == true)
        #expect(parseError("#@ frobnicate")?.hasPrefix("t.strace:1:4: error: unknown directive; the accepted directive is '#@ set KEY=VALUE'") == true)
        #expect(parseError("#@ set novalue")?.hasPrefix("t.strace:1:15: error: expected KEY=VALUE after '#@ set'") == true)
        #expect(parseError("f(\u{0})")?.hasPrefix("t.strace:1:3: error: expected an argument, found byte 0x00") == true)
        #expect(parseError("f(/* open")?.hasPrefix("t.strace:1:3: error: unterminated comment") == true)
    }

    @Test func resumedWithoutUnfinished() {
        #expect(parseError("5140  <... read resumed>\"x\", 1) = 1")
                == "t.strace:1:7: error: '<... read resumed>' without an earlier 'read(... <unfinished ...>' in process 5140; strace writes the unfinished half first")
        #expect(parseError("5140  read(3, <unfinished ...>\n5140  <... write resumed>) = 1")?
            .hasPrefix("t.strace:2:7: error: '<... write resumed>' does not match the unfinished call read of line 1") == true)
    }

    @Test func nestingIsBounded() {
        let deep = "f(" + String(repeating: "[", count: 10_000) + ")"
        #expect(parseError(deep)?.contains("nested deeper than 64 levels") == true)
        let tildes = "f(" + String(repeating: "~", count: 10_000) + "1)"
        #expect(parseError(tildes)?.contains("nested deeper than 64 levels") == true)
    }

    @Test func strictModeResumesAfterAnError() throws {
        let reader = TraceReader(string: "close(3) = 0\nclose(\nclose(4) = 0\n")
        #expect(try reader.next() != nil)
        #expect(throws: TraceError.self) { try reader.next() }
        let third = try reader.next()
        #expect(third?.location.line == 3)
        #expect(try reader.next() == nil)
    }

    @Test func lenientModeSkipsAndReports() throws {
        let reader = TraceReader(string: "close(3) = 0\nthis is not strace\nclose(4) = 0\n<... x resumed>) = 0\n", name: "real.log", lenient: true)
        let all = try reader.readAll()
        #expect(all.count == 2)
        #expect(reader.skippedCount == 2)
        #expect(reader.skipped.map(\.location.line) == [2, 4])
        #expect(reader.skipped[0].description.hasPrefix("real.log:2:6: error: expected '(' after the call name this"))
    }

    @Test func overlongLinesAreReportedAndSkipped() throws {
        let long = "f(\"" + String(repeating: "a", count: 10_000) + "\")\nclose(3) = 0\n"
        let reader = TraceReader(bytes: Array(long.utf8), name: "l", lenient: true, maxLineLength: 1000)
        let all = try reader.readAll()
        #expect(all.count == 1)
        #expect(reader.skipped.first?.description == "l:1:1: error: line longer than 1000 bytes")
    }

    @Test func missingFileIsALocatedError() {
        #expect(throws: TraceError.self) { _ = try TraceReader(path: "/nonexistent/x.strace") }
        do { _ = try TraceReader(path: "/nonexistent/x.strace") } catch {
            #expect(error.description == "/nonexistent/x.strace: error: cannot open trace file: No such file or directory")
        }
    }
}
