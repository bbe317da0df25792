// HardwareSecret: key material only the hardware model holds (SGX's EPC key, paging key and MAC
// key: keys no software can read, program or print). The one room for those bytes: an
// `OwnedBuffer` filled from the machine's seeded generator, handed to libcrypto (an engine key
// slot, an HMAC) without its pointer leaving this file, and overwritten (OPENSSL_cleanse) when the
// secret dies.
//
// Invariants: the bytes are never part of a description, mirror, log or JSON (`description` shows
// the length only); every byte is zero before the memory is freed (deinit zeroizes, then reports
// to `onDeath`, which tests set to see it); the pointer handed to libcrypto does not escape the
// call it is handed to (the engine keeps only its key schedule, which it cleanses itself).
import KeyMMBase
import CLibCrypto

/// Secret bytes the hardware generates and keeps (the kernel and user space never see them).
package final class HardwareSecret: CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    private let bytes: OwnedBuffer<UInt8>
    /// Called as the secret dies, after the zeroization, with whether every byte was zero (tests).
    package var onDeath: ((Bool) -> Void)?

    /// `count` bytes of `rng` output (the generator advances exactly as `rng.fill` of that many bytes).
    package init(count: Int, from rng: inout SeededGenerator) {
        bytes = OwnedBuffer(zeroedCount: count)
        unsafe bytes.withUnsafeMutableBytes { unsafe rng.fill($0) }
    }

    deinit {
        zeroize()
        onDeath?(allBytesZero)
    }

    /// Number of bytes.
    package var count: Int { bytes.count }

    /// Overwrites every byte with zero, in place (libcrypto's cleanse: stores the optimizer keeps).
    package func zeroize() {
        unsafe OPENSSL_cleanse(bytes.raw(), bytes.byteCount)
    }

    /// True if every byte is zero.
    package var allBytesZero: Bool { (0..<bytes.count).allSatisfy { bytes[$0] == 0 } }

    /// Programs engine slot `keyid` with an AES-XTS key: the first half of the bytes is the data key,
    /// the second half the tweak key. False (slot unchanged) if the engine refuses the lengths.
    @discardableResult
    package func installXTSKey(in engine: EncryptionEngine, slot keyid: KeyID) -> Bool {
        let half = bytes.count / 2
        let base = unsafe UnsafeRawPointer(bytes.raw())
        return unsafe engine.setKey(keyid, dataKey: UnsafeRawBufferPointer(start: base, count: half),
                                    tweakKey: UnsafeRawBufferPointer(start: base + half, count: half))
    }

    /// HMAC-SHA256 of `data`, keyed with these bytes (32 bytes; all zero if libcrypto fails).
    package func hmacSHA256(_ data: [UInt8]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 32)
        var n = 0
        let key = unsafe UnsafeRawPointer(bytes.raw())
        let keyCount = bytes.byteCount
        unsafe data.withUnsafeBufferPointer { d in
            unsafe out.withUnsafeMutableBufferPointer { o in
                _ = unsafe EVP_Q_mac(nil, "HMAC", nil, "SHA256", nil, key, keyCount, d.baseAddress, d.count, o.baseAddress, 32, &n)
            }
        }
        return out
    }

    package var description: String { "<hardware secret: \(count) bytes>" }
    package var debugDescription: String { description }
    package var customMirror: Mirror { Mirror(self, children: ["count": count]) }
}
