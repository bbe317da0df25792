// Key material never leaves KeyMM in what it writes back: a `type=user` MKTME key's `key=` and
// `tweak=` hex (docs/mktme.md) is replaced by `key=<redacted, 32 hex>` wherever a call, an
// error or a divergence is printed, logged or written to JSON.
//
// Owns: the one redaction rule. Callers: TraceError and RunInputError (every located error),
// ScenarioRunner.callText (--trace, divergences, violation sites, fuzz reports).
// Invariant: the output never holds a run of hex digits that followed `key=` or `tweak=` in the
// input, in either case; everything else is unchanged.

/// Redacts key material: `key=0123...` / `tweak=...` (any case of the name and the digits)
/// become `key=<redacted, N hex>` with N the number of hex digits removed.
package func redactingKeyMaterial(_ text: String) -> String {
    let bytes = Array(text.utf8)
    // Fast path: no "=" preceded by "key" or "tweak" (any case).
    guard bytes.contains(0x3d) else { return text }
    var out: [UInt8] = []
    out.reserveCapacity(bytes.count)
    var i = 0
    var changed = false
    while i < bytes.count {
        let c = bytes[i]
        out.append(c)
        i += 1
        guard c == 0x3d, endsWithKeyName(out.dropLast()) else { continue }
        var j = i
        while j < bytes.count, isHexDigit(bytes[j]) { j += 1 }
        // A leading 0x (some users write key=0x...) belongs to the value.
        if j == i + 1, bytes[i] == 0x30, j < bytes.count, bytes[j] | 0x20 == 0x78 {
            j += 1
            while j < bytes.count, isHexDigit(bytes[j]) { j += 1 }
        }
        let digits = j - i
        guard digits > 0 else { continue }
        out += Array("<redacted, \(digits) hex>".utf8)
        i = j
        changed = true
    }
    return changed ? String(decoding: out, as: UTF8.self) : text
}

private func isHexDigit(_ c: UInt8) -> Bool {
    (c >= 0x30 && c <= 0x39) || (c | 0x20 >= 0x61 && c | 0x20 <= 0x66)
}

/// Whether `prefix` ends in the option name `key` or `tweak` (any case) at a word start.
private func endsWithKeyName(_ prefix: ArraySlice<UInt8>) -> Bool {
    for name in ["key", "tweak"] {
        let n = Array(name.utf8)
        guard prefix.count >= n.count else { continue }
        let tail = prefix.suffix(n.count)
        guard zip(tail, n).allSatisfy({ $0 | 0x20 == $1 }) else { continue }
        let before = prefix.dropLast(n.count).last
        if let b = before, (b | 0x20 >= 0x61 && b | 0x20 <= 0x7a) || (b >= 0x30 && b <= 0x39) || b == 0x5f { continue }
        return true
    }
    return false
}
