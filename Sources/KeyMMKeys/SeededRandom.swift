// SeededRandom: the key service's deterministic generator (SplitMix64) for key serials and the
// kernel entropy XORed into CPU-generated MKTME keys (get_random_bytes in the series).
//
// Invariant: the same seed yields the same sequence on every platform; nothing here reads the
// wall clock or the system's random source.

struct SeededRandom {
    private var state: UInt64
    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

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
