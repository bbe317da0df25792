// Helpers shared by the hardware tests: hex, a reference AES-XTS straight from EVP (one call per
// data unit, the obviously-correct path), seeded random bytes, small machines.
import CLibCrypto
import KeyMMBase
@testable import KeyMMHardware

func hex(_ s: String) -> [UInt8] {
    var out: [UInt8] = []
    var it = s.filter { !$0.isWhitespace }.makeIterator()
    while let a = it.next(), let b = it.next() { out.append(UInt8(String([a, b]), radix: 16)!) }
    return out
}

func hexString(_ b: [UInt8]) -> String { b.map { String(format2($0)) }.joined() }
private func format2(_ v: UInt8) -> String { let s = String(v, radix: 16); return s.count == 1 ? "0" + s : s }

/// AES-XTS of one data unit through EVP's own XTS (`key` = data key || tweak key).
/// OpenSSL 3 refuses equal data and tweak keys: callers avoid them (see `evpXTSOrNil`).
func evpXTS(key: [UInt8], tweak: [UInt8], data: [UInt8], encrypt: Bool) -> [UInt8] {
    evpXTSOrNil(key: key, tweak: tweak, data: data, encrypt: encrypt)!
}

func evpXTSOrNil(key: [UInt8], tweak: [UInt8], data: [UInt8], encrypt: Bool) -> [UInt8]? {
    let name = key.count == 32 ? "AES-128-XTS" : "AES-256-XTS"
    let cipher = EVP_CIPHER_fetch(nil, name, nil)!
    defer { EVP_CIPHER_free(cipher) }
    let ctx = EVP_CIPHER_CTX_new()!
    defer { EVP_CIPHER_CTX_free(ctx) }
    guard EVP_CipherInit_ex2(ctx, cipher, key, tweak, encrypt ? 1 : 0, nil) == 1 else { return nil }
    var out = [UInt8](repeating: 0, count: data.count)
    var outl: Int32 = 0
    precondition(EVP_CipherUpdate(ctx, &out, &outl, data, Int32(data.count)) == 1, "EVP XTS update")
    return out
}

/// The XTS tweak for a physical address: 16-byte little-endian.
func tweakBytes(_ pa: UInt64) -> [UInt8] {
    (0..<16).map { i in i < 8 ? UInt8(truncatingIfNeeded: pa >> (8 * UInt64(i))) : 0 }
}

func randomBytes(_ n: Int, _ g: inout SeededGenerator) -> [UInt8] {
    (0..<n).map { _ in UInt8(truncatingIfNeeded: g.next()) }
}

/// A small machine: 64 MiB, a tiny cache unless told otherwise.
func smallMachine(cache: ByteCount = .kib(64), ways: Int = 4, seed: UInt64 = 1, tdx: Int = 0,
                  xtsBits: Int = 128, mode: EncryptionMode = .mktme, memory: ByteCount = .mib(64)) throws -> Machine {
    var c = MachineConfig()
    c.memory = memory
    c.cacheSize = cache
    c.cacheWays = ways
    c.seed = seed
    c.tdxKeyIDs = tdx
    c.xtsKeyBits = xtsBits
    c.encryption = mode
    return try Machine(config: c)
}
