// SecretBytes: key material (MKTME data/tweak keys, entropy, `user` key payloads) held in a
// buffer this module owns, so it can be overwritten with zeros when it is no longer needed.
//
// Invariants: the bytes are never part of `description`, `debugDescription`, a mirror, or any
// serialized form; `zeroize()` overwrites every byte in place (memset_s-style, through a volatile-
// like loop the optimizer cannot drop because the buffer escapes); deinit zeroizes too, so a
// buffer that is simply dropped never leaves material behind in freed memory.

/// A zeroizable buffer of secret bytes (kzfree'd memory in the kernel).
///
/// Create it from hex (`init?(hex:)`) or raw bytes; read it only through ``withUnsafeBytes(_:)``.
/// Printing it shows only its length.
public final class SecretBytes: CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    @usableFromInline let storage: UnsafeMutableBufferPointer<UInt8>
    /// True once ``zeroize()`` ran (or the buffer was created empty).
    public private(set) var isZeroized: Bool

    /// A buffer of `count` zero bytes.
    public init(zeroedCount count: Int) {
        storage = .allocate(capacity: max(count, 0))
        storage.initialize(repeating: 0)
        isZeroized = true
    }

    /// A buffer of `count` bytes, byte i produced by `byte(i)` (for generators).
    public init(count: Int, byte: (Int) -> UInt8) {
        storage = .allocate(capacity: max(count, 0))
        storage.initialize(repeating: 0)
        for i in 0..<storage.count { storage[i] = byte(i) }
        isZeroized = false
    }

    /// A buffer holding a copy of `bytes`. The caller stays responsible for its own copy.
    public init<C: Collection>(copying bytes: C) where C.Element == UInt8 {
        storage = .allocate(capacity: bytes.count)
        _ = storage.initialize(from: bytes)
        isZeroized = false
    }

    /// Parses exactly `2 * byteCount` hex digits (either case) as the kernel's hex2bin does;
    /// nil if the text has another length or a non-hex character. No intermediate String is made.
    public init?<C: Collection>(hex text: C, byteCount: Int) where C.Element == UInt8 {
        guard byteCount >= 0, text.count == byteCount * 2,
              text.allSatisfy({ SecretBytes.hexValue($0) != nil }) else { return nil }
        storage = .allocate(capacity: byteCount)
        storage.initialize(repeating: 0)
        isZeroized = false
        var i = 0
        var high: UInt8 = 0
        for (n, c) in text.enumerated() {
            let v = SecretBytes.hexValue(c) ?? 0
            if n & 1 == 0 { high = v } else { storage[i] = high << 4 | v; i += 1 }
        }
    }

    deinit {
        zeroize()
        storage.deallocate()
    }

    @inline(__always) static func hexValue(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return c - UInt8(ascii: "A") + 10
        default: return nil
        }
    }

    /// Number of bytes.
    public var count: Int { storage.count }

    /// True if every byte is zero (what a zeroized buffer must satisfy).
    public var allBytesZero: Bool { storage.allSatisfy { $0 == 0 } }

    /// Reads the bytes. Do not let the pointer escape or copy the bytes into long-lived storage.
    public func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try body(UnsafeRawBufferPointer(storage))
    }

    /// XORs `other` into this buffer (byte i with byte i; the shorter length wins).
    public func xor(with other: SecretBytes) {
        let n = min(count, other.count)
        for i in 0..<n { storage[i] ^= other.storage[i] }
        if n > 0 { isZeroized = false }
    }

    /// Overwrites every byte with zero, in place.
    public func zeroize() {
        guard let base = storage.baseAddress, storage.count > 0 else { isZeroized = true; return }
        // Write through a raw pointer the compiler must assume is observed later (the buffer
        // outlives this call and is read by `allBytesZero`), so the stores are not elided.
        let raw = UnsafeMutableRawPointer(base)
        for i in 0..<storage.count { raw.storeBytes(of: 0, toByteOffset: i, as: UInt8.self) }
        isZeroized = true
    }

    public var description: String { "<secret: \(count) bytes\(isZeroized ? ", zeroized" : "")>" }
    public var debugDescription: String { description }
    public var customMirror: Mirror { Mirror(self, children: ["count": count, "isZeroized": isZeroized]) }
}
