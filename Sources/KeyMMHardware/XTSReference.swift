// XTSReference: OpenSSL's own AES-XTS (EVP aes-N-xts) on whole 4 KiB data units, timed in thread
// CPU time — the host reference that `keymm calibrate` prices AES-XTS with and that the engine
// bench compares against (like `openssl speed -evp aes-128-xts -bytes 4096`).
//
// Invariant: keys are generated from a fixed seed, used once, and cleansed.
import CLibCrypto
import KeyMMBase

/// Host measurements of libcrypto's AES-XTS.
public enum XTSReference {
    /// Nanoseconds of CPU time per 4 KiB XTS data unit (one EVP call per page), or nil if libcrypto refuses.
    public static func nanosecondsPerPage(keyBits: Int = 128, seconds: Double = 0.3) -> Double? {
        let name = keyBits == 256 ? "AES-256-XTS" : "AES-128-XTS"
        guard let cipher = EVP_CIPHER_fetch(nil, name, nil) else { return nil }
        defer { EVP_CIPHER_free(cipher) }
        guard let ctx = EVP_CIPHER_CTX_new() else { return nil }
        defer { EVP_CIPHER_CTX_free(ctx) }
        let keyBytes = keyBits / 4
        let key = UnsafeMutableRawBufferPointer.allocate(byteCount: keyBytes, alignment: 16)
        defer { OPENSSL_cleanse(key.baseAddress, keyBytes); key.deallocate() }
        var g = SeededGenerator(seed: 0x5845_5453)
        g.fill(key)
        var iv = [UInt8](repeating: 0, count: 16)
        let buf = UnsafeMutablePointer<UInt8>.allocate(capacity: pageSize)
        defer { buf.deallocate() }
        buf.initialize(repeating: 0x5A, count: pageSize)
        guard EVP_EncryptInit_ex2(ctx, cipher, key.baseAddress!.assumingMemoryBound(to: UInt8.self), iv, nil) == 1 else { return nil }
        var pages = 0
        var outl: Int32 = 0
        let t0 = HostClock.threadCPUSeconds()
        var t = t0
        while t - t0 < seconds {
            for i in 0..<256 {
                iv[0] = UInt8(truncatingIfNeeded: i)
                _ = EVP_EncryptInit_ex2(ctx, nil, nil, iv, nil)   // new tweak, same key schedule
                _ = EVP_EncryptUpdate(ctx, buf, &outl, buf, Int32(pageSize))
            }
            pages += 256
            t = HostClock.threadCPUSeconds()
        }
        return (t - t0) * 1e9 / Double(pages)
    }
}
