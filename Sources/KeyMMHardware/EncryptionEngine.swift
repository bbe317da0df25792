// EncryptionEngine: the memory controller's AES-XTS engine, one key slot per KeyID.
//
// Convention (the contract): data unit = one 64-byte cache line; tweak = the line's physical
// address (KeyID bits clear) as a 16-byte little-endian integer; XTS key = data key || tweak key.
// KeyID 0 holds the boot-time TME key (MKTME) or plaintext (SME, off); an unprogrammed or cleared
// KeyID uses the TME key; a NO_ENCRYPT KeyID stores plaintext.
//
// Speed: a batch of up to 64 lines costs two EVP calls, not 64 XTS calls. The 64 tweaks are
// ECB-encrypted with the tweak key in one call; the 4 block tweaks of each line are that value
// times alpha^0..3 in GF(2^128); the batch is XORed with them, ECB-encrypted (or decrypted) with the
// data key in one call and XORed again. This is exactly IEEE 1619 XTS for 64-byte data units.
//
// Invariants: EVP contexts live as long as the key (initialized once per PCONFIG, freed with the
// key; OpenSSL cleanses the key schedule on free); scratch buffers are cleansed at deinit; raw keys
// are never stored, printed or serialized.
import CHostProbe
import CLibCrypto
import KeyMMBase

/// What a KeyID's slot does to data.
public enum EngineSlotMode: UInt8, Sendable {
    /// The KeyID uses the TME key (KeyID 0's slot): unprogrammed or cleared KeyIDs.
    case tme = 0
    /// AES-XTS with the KeyID's own key.
    case keyed = 1
    /// Plaintext (NO_ENCRYPT, SME's C-bit clear, encryption off).
    case plaintext = 2
}

/// The AES-XTS memory-encryption engine.
public final class EncryptionEngine {
    /// Lines per engine batch (one 4 KiB page).
    public static let batchLines = 64

    /// Number of key slots (2^keyid-bits).
    public let slotCount: Int
    /// Per-KeyID state in one flat buffer (no Swift arrays on the hot path).
    @usableFromInline struct Slot {
        @usableFromInline var mode: EngineSlotMode = .tme
        @usableFromInline var keyBits: UInt16 = 0
        @usableFromInline var dataEnc: OpaquePointer? = nil
        @usableFromInline var dataDec: OpaquePointer? = nil
        @usableFromInline var tweakEnc: OpaquePointer? = nil
        @usableFromInline init(mode: EngineSlotMode = .tme, keyBits: UInt16 = 0, dataEnc: OpaquePointer? = nil, dataDec: OpaquePointer? = nil, tweakEnc: OpaquePointer? = nil) {
            self.mode = mode; self.keyBits = keyBits; self.dataEnc = dataEnc; self.dataDec = dataDec; self.tweakEnc = tweakEnc
        }
    }
    @usableFromInline let slots: UnsafeMutablePointer<Slot>

    // Scratch (64-byte aligned): encrypted tweaks (64 x 16 B), block masks (256 x 16 B).
    @usableFromInline let tweaks: UnsafeMutableRawPointer
    @usableFromInline let masks: UnsafeMutableRawPointer

    /// An engine with `slots` KeyIDs: KeyID 0 stores plaintext until keyed, the others use KeyID 0's slot.
    public init(slots count: Int) {
        slotCount = max(count, 1)
        slots = .allocate(capacity: slotCount)
        slots.initialize(repeating: Slot(), count: slotCount)
        slots[0].mode = .plaintext
        tweaks = UnsafeMutableRawPointer.allocate(byteCount: 16 * EncryptionEngine.batchLines, alignment: 64)
        masks = UnsafeMutableRawPointer.allocate(byteCount: cacheLineSize * EncryptionEngine.batchLines, alignment: 64)
    }

    deinit {
        for k in 0..<slotCount { freeContexts(k) }
        cleanseScratch()
        tweaks.deallocate()
        masks.deallocate()
        slots.deallocate()
    }

    /// The whitening kernel in use ("avx512" or "portable"; CHostProbe/xts_kernels.c).
    public static var whiteningKernel: String { String(cString: hp_xts_kernel_name()) }

    /// The libcrypto in use (OpenSSL_version), for reports.
    public static var libcryptoVersion: String { String(cString: OpenSSL_version(OPENSSL_VERSION)) }

    // MARK: Key slots

    /// The mode of a KeyID's slot.
    public func mode(of keyid: KeyID) -> EngineSlotMode {
        keyid.index < slotCount ? slots[keyid.index].mode : .tme
    }

    /// AES key width (128/256) of a keyed slot, 0 otherwise.
    public func keyBits(of keyid: KeyID) -> Int {
        keyid.index < slotCount && slots[keyid.index].mode == .keyed ? Int(slots[keyid.index].keyBits) : 0
    }

    /// Installs an AES-XTS key: `dataKey` and `tweakKey` are each 16 (XTS-128) or 32 (XTS-256) bytes.
    /// Returns false (slot unchanged) for a bad length or a libcrypto failure.
    @discardableResult
    public func setKey(_ keyid: KeyID, dataKey: UnsafeRawBufferPointer, tweakKey: UnsafeRawBufferPointer) -> Bool {
        let k = keyid.index
        guard k < slotCount, dataKey.count == tweakKey.count, dataKey.count == 16 || dataKey.count == 32,
              let dk = dataKey.baseAddress, let tk = tweakKey.baseAddress else { return false }
        let cipher = dataKey.count == 16 ? ECBCiphers.shared.aes128 : ECBCiphers.shared.aes256
        guard let cipher else { return false }
        guard let e = EVP_CIPHER_CTX_new(), let d = EVP_CIPHER_CTX_new(), let t = EVP_CIPHER_CTX_new() else { return false }
        let ok = EVP_EncryptInit_ex2(e, cipher, dk.assumingMemoryBound(to: UInt8.self), nil, nil) == 1
            && EVP_DecryptInit_ex2(d, cipher, dk.assumingMemoryBound(to: UInt8.self), nil, nil) == 1
            && EVP_EncryptInit_ex2(t, cipher, tk.assumingMemoryBound(to: UInt8.self), nil, nil) == 1
            && EVP_CIPHER_CTX_set_padding(e, 0) == 1
            && EVP_CIPHER_CTX_set_padding(d, 0) == 1
            && EVP_CIPHER_CTX_set_padding(t, 0) == 1
        guard ok else {
            EVP_CIPHER_CTX_free(e); EVP_CIPHER_CTX_free(d); EVP_CIPHER_CTX_free(t)
            return false
        }
        freeContexts(k)
        slots[k] = Slot(mode: .keyed, keyBits: UInt16(dataKey.count * 8), dataEnc: e, dataDec: d, tweakEnc: t)
        return true
    }

    /// Makes a KeyID store plaintext (NO_ENCRYPT); its old key is destroyed.
    public func setPlaintext(_ keyid: KeyID) {
        guard keyid.index < slotCount else { return }
        freeContexts(keyid.index)
        slots[keyid.index].mode = .plaintext
    }

    /// Makes a KeyID use the TME key (CLEAR_KEY); its old key is destroyed. KeyID 0 cannot be cleared.
    public func setTME(_ keyid: KeyID) {
        guard keyid.index < slotCount, keyid.index != 0 else { return }
        freeContexts(keyid.index)
        slots[keyid.index].mode = .tme
    }

    /// Wipes the scratch buffers (they hold the last batch's encrypted tweaks and masks, which are
    /// derived from a tweak key). Called whenever a key changes or dies, and at deinit.
    private func cleanseScratch() {
        OPENSSL_cleanse(tweaks, 16 * EncryptionEngine.batchLines)
        OPENSSL_cleanse(masks, cacheLineSize * EncryptionEngine.batchLines)
    }

    private func freeContexts(_ k: Int) {
        // EVP_CIPHER_CTX_free cleanses the key schedule (OPENSSL_clear_free in the provider).
        if slots[k].dataEnc != nil || slots[k].dataDec != nil || slots[k].tweakEnc != nil { cleanseScratch() }
        if let c = slots[k].dataEnc { EVP_CIPHER_CTX_free(c) }
        if let c = slots[k].dataDec { EVP_CIPHER_CTX_free(c) }
        if let c = slots[k].tweakEnc { EVP_CIPHER_CTX_free(c) }
        slots[k].dataEnc = nil; slots[k].dataDec = nil; slots[k].tweakEnc = nil
        slots[k].keyBits = 0
    }

    /// The slot that actually serves a KeyID (TME-mode KeyIDs use slot 0); KeyIDs beyond the table use slot 0.
    @inlinable func slot(for keyid: KeyID) -> Int {
        let k = keyid.index
        guard k < slotCount else { return 0 }
        return slots[k].mode == .tme ? 0 : k
    }

    /// True when data through this KeyID is stored as plaintext.
    @inlinable public func isPlaintext(_ keyid: KeyID) -> Bool { slots[slot(for: keyid)].mode != .keyed }

    // MARK: Data path

    /// Encrypts `lines` consecutive cache lines starting at line-aligned `pa` (the tweak of line i is pa + 64 i).
    /// `src` and `dst` hold lines*64 bytes; they may be the same buffer. Returns the lines actually encrypted (0 for plaintext KeyIDs).
    @discardableResult
    public func encrypt(_ keyid: KeyID, at pa: PhysAddr, lines: Int, from src: UnsafeRawPointer, to dst: UnsafeMutableRawPointer) -> Int {
        crypt(keyid, encrypt: true, pa: pa, addresses: nil, lines: lines, src: src, dst: dst)
    }

    /// Decrypts `lines` consecutive cache lines starting at `pa`. Same conventions as `encrypt`.
    @discardableResult
    public func decrypt(_ keyid: KeyID, at pa: PhysAddr, lines: Int, from src: UnsafeRawPointer, to dst: UnsafeMutableRawPointer) -> Int {
        crypt(keyid, encrypt: false, pa: pa, addresses: nil, lines: lines, src: src, dst: dst)
    }

    /// Encrypts `count` lines whose physical addresses are `addresses[i]` (gathered write-backs); data contiguous.
    @discardableResult
    public func encrypt(_ keyid: KeyID, addresses: UnsafePointer<UInt64>, lines: Int, from src: UnsafeRawPointer, to dst: UnsafeMutableRawPointer) -> Int {
        crypt(keyid, encrypt: true, pa: PhysAddr(0), addresses: addresses, lines: lines, src: src, dst: dst)
    }

    /// Decrypts `count` lines whose physical addresses are `addresses[i]`; data contiguous.
    @discardableResult
    public func decrypt(_ keyid: KeyID, addresses: UnsafePointer<UInt64>, lines: Int, from src: UnsafeRawPointer, to dst: UnsafeMutableRawPointer) -> Int {
        crypt(keyid, encrypt: false, pa: PhysAddr(0), addresses: addresses, lines: lines, src: src, dst: dst)
    }

    @usableFromInline
    func crypt(_ keyid: KeyID, encrypt: Bool, pa: PhysAddr, addresses: UnsafePointer<UInt64>?, lines: Int,
               src: UnsafeRawPointer, dst: UnsafeMutableRawPointer) -> Int {
        guard lines > 0 else { return 0 }
        let s = slot(for: keyid)
        guard slots[s].mode == .keyed, let dctx = encrypt ? slots[s].dataEnc : slots[s].dataDec, let tctx = slots[s].tweakEnc else {
            if src != UnsafeRawPointer(dst) { dst.copyMemory(from: src, byteCount: lines * cacheLineSize) }
            return 0
        }
        var done = 0
        while done < lines {
            let n = min(lines - done, EncryptionEngine.batchLines)
            let off = done * cacheLineSize
            // 1. Tweaks: the lines' physical addresses as 16-byte little-endian integers.
            if let addresses {
                hp_xts_tweaks_gather(tweaks, addresses + done, n)
            } else {
                hp_xts_tweaks(tweaks, pa.rawValue &+ UInt64(off), n)
            }
            // 2. Encrypt all tweaks with the tweak key in one call.
            var outl: Int32 = 0
            let tp = tweaks.assumingMemoryBound(to: UInt8.self)
            _ = EVP_EncryptUpdate(tctx, tp, &outl, tp, Int32(n * 16))
            // 3. Masks (T * alpha^j) and pre-whitening.
            let srcp = src + off
            let dstp = dst + off
            hp_xts_whiten(tweaks, masks, n, srcp, dstp)
            // 4. ECB over the batch with the data key.
            let bp = dstp.assumingMemoryBound(to: UInt8.self)
            if encrypt {
                _ = EVP_EncryptUpdate(dctx, bp, &outl, bp, Int32(n * cacheLineSize))
            } else {
                _ = EVP_DecryptUpdate(dctx, bp, &outl, bp, Int32(n * cacheLineSize))
            }
            // 5. Post-whitening.
            hp_xts_unwhiten(dstp, tweaks, masks, n)
            done += n
        }
        return lines
    }
}

/// The ECB ciphers, fetched once per process (EVP_CIPHER_fetch is expensive).
final class ECBCiphers: @unchecked Sendable {
    static let shared = ECBCiphers()
    let aes128: OpaquePointer?
    let aes256: OpaquePointer?
    private init() {
        aes128 = EVP_CIPHER_fetch(nil, "AES-128-ECB", nil)
        aes256 = EVP_CIPHER_fetch(nil, "AES-256-ECB", nil)
    }
}
