// SeededGenerator: the model's only source of "randomness" (boot-time TME key, SET_KEY_RANDOM,
// anything else that must look random but be reproducible). SplitMix64: tiny, fast, and the same
// sequence on every platform for a given seed.
//
// Invariant: the same seed yields the same sequence bit for bit.

/// A deterministic random-number generator (SplitMix64).
public struct SeededGenerator: RandomNumberGenerator, Sendable, Hashable {
    @usableFromInline var state: UInt64

    /// A generator whose sequence is fixed by `seed`.
    public init(seed: UInt64) { state = seed }

    @inlinable public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Fills `buffer` with generator output.
    public mutating func fill(_ buffer: UnsafeMutableRawBufferPointer) {
        var i = 0
        while i < buffer.count {
            var v = next()
            for _ in 0..<8 where i < buffer.count {
                unsafe buffer[i] = UInt8(truncatingIfNeeded: v)
                v >>= 8
                i += 1
            }
        }
    }

    /// A generator for one purpose, independent of others derived from the same seed.
    public static func derived(seed: UInt64, purpose: UInt64) -> SeededGenerator {
        var g = SeededGenerator(seed: seed ^ (purpose &* 0xD6E8_FEB8_6659_FD93))
        _ = g.next()
        return SeededGenerator(seed: g.next())
    }
}
