// SeededRandom: the key service's deterministic generator (KeyMMBase's SeededGenerator) for key serials and the
// kernel entropy XORed into CPU-generated MKTME keys (get_random_bytes in the series).
//
// Invariant: the same seed yields the same sequence on every platform; nothing here reads the
// wall clock or the system's random source.

import KeyMMBase

struct SeededRandom {
    private var generator: SeededGenerator
    init(seed: UInt64) { generator = SeededGenerator(seed: seed) }

    mutating func next() -> UInt64 { generator.next() }

    /// A fresh secret buffer of `count` random bytes.
    mutating func secretBytes(_ count: Int) -> SecretBytes {
        var word: UInt64 = 0
        let out = SecretBytes(count: count) { i in
            if i % 8 == 0 { word = next() }
            return UInt8(truncatingIfNeeded: word >> UInt64((i % 8) * 8))
        }
        word = 0
        return out
    }
}
