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
        guard let cipher = unsafe EVP_CIPHER_fetch(nil, name, nil) else { return nil }
        defer { unsafe EVP_CIPHER_free(cipher) }
        guard let ctx = unsafe EVP_CIPHER_CTX_new() else { return nil }
        defer { unsafe EVP_CIPHER_CTX_free(ctx) }
        let keyBytes = keyBits / 4
        let keyStore = OwnedBuffer<UInt8>(zeroedCount: keyBytes)
        defer { unsafe OPENSSL_cleanse(keyStore.raw(), keyBytes) }
        let key = unsafe UnsafeMutableRawBufferPointer(start: keyStore.raw(), count: keyBytes)
        var g = SeededGenerator(seed: 0x5845_5453)
        unsafe g.fill(key)
        var iv = [UInt8](repeating: 0, count: 16)
        let page = OwnedBuffer<UInt8>(repeating: 0x5A, count: pageSize)
        defer { page.zero() }   // (also keeps `page` alive while `buf` is in use)
        let buf = unsafe page.pointer()
        guard unsafe EVP_EncryptInit_ex2(ctx, cipher, key.baseAddress!.assumingMemoryBound(to: UInt8.self), iv, nil) == 1 else { return nil }
        var pages = 0
        var outl: Int32 = 0
        let t0 = HostClock.threadCPUSeconds()
        var t = t0
        while t - t0 < seconds {
            for i in 0..<256 {
                iv[0] = UInt8(truncatingIfNeeded: i)
                _ = unsafe EVP_EncryptInit_ex2(ctx, nil, nil, iv, nil)   // new tweak, same key schedule
                _ = unsafe EVP_EncryptUpdate(ctx, buf, &outl, buf, Int32(pageSize))
            }
            pages += 256
            t = HostClock.threadCPUSeconds()
        }
        return (t - t0) * 1e9 / Double(pages)
    }
}
