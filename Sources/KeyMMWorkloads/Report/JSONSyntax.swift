// A strict JSON syntax check (RFC 8259) that reports where the first error is, so `keymm report`
// can say FILE:LINE:COLUMN (Foundation's decoder does not give positions on every platform).
//
// Invariant: accepts exactly the documents JSONDecoder accepts for our inputs (no comments, no
// trailing commas); never recurses deeper than 512 levels (deeper input is an error, not a crash).
import Foundation

enum JSONSyntax {
    /// Offset and message of the first syntax error, or nil when `b` is one valid JSON value.
    static func firstError(in b: [UInt8]) -> (Int, String)? {
        var i = 0
        func ws() { while i < b.count, b[i] == 0x20 || b[i] == 0x0A || b[i] == 0x0D || b[i] == 0x09 { i += 1 } }
        func fail(_ m: String) -> (Int, String) { (min(i, b.count), m) }
        func lit(_ s: String) -> (Int, String)? {
            for c in s.utf8 { guard i < b.count, b[i] == c else { return fail("expected '\(s)'") }; i += 1 }
            return nil
        }
        func string() -> (Int, String)? {
            i += 1
            while i < b.count {
                let c = b[i]
                if c == 0x22 { i += 1; return nil }
                if c < 0x20 { return fail("control character in string") }
                if c == 0x5C {
                    i += 1
                    guard i < b.count else { break }
                    if b[i] == 0x75 {
                        for _ in 0..<4 {
                            i += 1
                            guard i < b.count, (b[i] >= 0x30 && b[i] <= 0x39) || (b[i] | 0x20 >= 0x61 && b[i] | 0x20 <= 0x66) else { return fail("bad \\u escape") }
                        }
                    } else if !"\"\\/bfnrt".utf8.contains(b[i]) { return fail("bad escape") }
                }
                i += 1
            }
            return fail("unterminated string")
        }
        func number() -> (Int, String)? {
            if b[i] == 0x2D { i += 1 }
            func digits() -> Bool { let s = i; while i < b.count, b[i] >= 0x30, b[i] <= 0x39 { i += 1 }; return i > s }
            guard i < b.count else { return fail("bad number") }
            if b[i] == 0x30 { i += 1 } else if !digits() { return fail("bad number") }
            if i < b.count, b[i] == 0x2E { i += 1; if !digits() { return fail("bad number") } }
            if i < b.count, b[i] | 0x20 == 0x65 {
                i += 1
                if i < b.count, b[i] == 0x2B || b[i] == 0x2D { i += 1 }
                if !digits() { return fail("bad number") }
            }
            return nil
        }
        func value(_ depth: Int) -> (Int, String)? {
            guard depth < 512 else { return fail("nesting too deep") }
            ws()
            guard i < b.count else { return fail("unexpected end of input") }
            switch b[i] {
            case 0x7B:
                i += 1; ws()
                if i < b.count, b[i] == 0x7D { i += 1; return nil }
                while true {
                    ws()
                    guard i < b.count, b[i] == 0x22 else { return fail("expected a string key") }
                    if let e = string() { return e }
                    ws()
                    guard i < b.count, b[i] == 0x3A else { return fail("expected ':'") }
                    i += 1
                    if let e = value(depth + 1) { return e }
                    ws()
                    guard i < b.count else { return fail("unexpected end of input") }
                    if b[i] == 0x2C { i += 1; continue }
                    if b[i] == 0x7D { i += 1; return nil }
                    return fail("expected ',' or '}'")
                }
            case 0x5B:
                i += 1; ws()
                if i < b.count, b[i] == 0x5D { i += 1; return nil }
                while true {
                    if let e = value(depth + 1) { return e }
                    ws()
                    guard i < b.count else { return fail("unexpected end of input") }
                    if b[i] == 0x2C { i += 1; continue }
                    if b[i] == 0x5D { i += 1; return nil }
                    return fail("expected ',' or ']'")
                }
            case 0x22: return string()
            case 0x74: return lit("true")
            case 0x66: return lit("false")
            case 0x6E: return lit("null")
            case 0x2D, 0x30...0x39: return number()
            default: return fail("unexpected character")
            }
        }
        if let e = value(0) { return e }
        ws()
        return i < b.count ? fail("trailing characters after the JSON value") : nil
    }

    /// 1-based line and column (in bytes) of `offset`.
    static func lineColumn(_ b: [UInt8], _ offset: Int) -> (Int, Int) {
        var line = 1, col = 1
        for j in 0..<min(offset, b.count) {
            if b[j] == 0x0A { line += 1; col = 1 } else { col += 1 }
        }
        return (line, col)
    }
}
