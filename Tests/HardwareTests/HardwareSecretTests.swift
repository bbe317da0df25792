// HardwareSecret (KeyMMHardware/HardwareSecret.swift), the room for the keys only the hardware
// holds: drawn from the machine's generator, never printed, zeroized when they die; the SGX unit's
// MAC key dies, zeroized, with its machine.
import Testing
import KeyMMBase
@testable import KeyMMHardware

/// What `onDeath` saw (one entry per secret that died).
final class SecretDeaths {
    var zeroized: [Bool] = []
}

@Suite struct HardwareSecretTests {
    @Test func aSecretComesFromTheGeneratorIsNeverPrintedAndIsZeroizedWhenItDies() {
        let deaths = SecretDeaths()
        var rng = SeededGenerator(seed: 7)
        var twin = SeededGenerator(seed: 7)
        var mac: [UInt8] = []
        do {
            let s = HardwareSecret(count: 20, from: &rng)
            s.onDeath = { deaths.zeroized.append($0) }
            #expect(s.count == 20 && !s.allBytesZero)
            #expect("\(s)" == "<hardware secret: 20 bytes>" && "\(String(reflecting: s))" == "\(s)")
            mac = s.hmacSHA256(Array("data".utf8))
            // The same generator state gives the same key (so the same MACs): the model stays deterministic.
            let again = HardwareSecret(count: 20, from: &twin)
            #expect(again.hmacSHA256(Array("data".utf8)) == mac)
            #expect(again.hmacSHA256(Array("date".utf8)) != mac)
        }
        #expect(mac.count == 32 && mac != [UInt8](repeating: 0, count: 32))
        // 20 bytes took three generator outputs, as `fill` of 20 bytes does.
        var ref = SeededGenerator(seed: 7)
        for _ in 0..<3 { _ = ref.next() }
        #expect(rng.next() == ref.next())
        #expect(deaths.zeroized == [true], "every byte must be zero before the memory is freed")
    }

    @Test func zeroizeWipesEveryByteAtOnce() {
        var rng = SeededGenerator(seed: 9)
        let s = HardwareSecret(count: 64, from: &rng)
        #expect(!s.allBytesZero)
        s.zeroize()
        #expect(s.allBytesZero)
    }

    @Test func theSGXUnitsMACKeyIsZeroizedWhenItsMachineGoesAway() throws {
        let deaths = SecretDeaths()
        weak var unit: SGXUnit?
        do {
            var c = MachineConfig()
            c.memory = .mib(8)
            c.cacheSize = .kib(256)
            c.epc = .kib(256)
            let m = try Machine(config: c)
            let u = try #require(m.sgx)
            u.macKeyForTesting.onDeath = { deaths.zeroized.append($0) }
            unit = u
            #expect(deaths.zeroized.isEmpty, "the key lives as long as the machine")
        }
        #expect(unit == nil, "the SGX unit goes with its machine")
        #expect(deaths.zeroized == [true], "the MAC key must be zeroized as it dies")
    }
}
