// EncryptionEngine: the memory controller's AES-XTS engine, one key slot per KeyID.
//
// Convention (the contract): data unit = one 64-byte cache line; tweak = the line's physical
// address (KeyID bits clear) as a 16-byte little-endian integer; XTS key = data key || tweak key.
// KeyID 0 holds the boot-time TME key (MKTME) or plaintext (SME, off); an unprogrammed or cleared
// KeyID uses the TME key; a NO_ENCRYPT KeyID stores plaintext.
//
// Two constructions, the same bytes (exactly IEEE 1619 XTS for 64-byte data units), chosen once by
// CPUID:
// * VAES (x86-64 with VAES + AVX-512, CXTSKernels/xts_vaes.c): the engine's own AES rounds, one
//   line per 512-bit register, whitening fused with the rounds, on key schedules expanded at
//   PCONFIG time into `schedules`;
// * ECB-batched (every other host): a batch of up to 64 lines costs two EVP calls, not 64 XTS
//   calls. The 64 tweaks are ECB-encrypted with the tweak key in one call; the 4 block tweaks of
//   each line are that value times alpha^0..3 in GF(2^128); the batch is XORed with them,
//   ECB-encrypted (or decrypted) with the data key in one call and XORed again.
//
// Encrypted-tweak cache (host speed only): E_K2(PA) depends only on the slot's tweak key and the
// line's PA, and the model reuses frames heavily (LIFO allocation, write-backs of the same
// frames), so a direct-mapped table of `tweakCacheEntries` entries keeps, per (slot, PFN), the 64
// encrypted tweaks of a frame (1 KiB + 16 B of tags per entry, 4 MiB + 64 KiB in all, lazily
// backed) with a bitmask of the lines present. A full page whose entry is complete needs 256 AES
// blocks instead of 320. Entries of a slot are cleansed (OPENSSL_cleanse) when its key is
// reprogrammed, cleared or made plaintext, and all live entries at deinit: they are derived from
// a tweak key. Results are bit-identical with or without the cache (nothing modeled reads it).
//
// Invariants: EVP contexts live as long as the key (initialized once per PCONFIG, freed with the
// key; OpenSSL cleanses the key schedule on free); a slot's VAES schedules likewise, cleansed with
// OPENSSL_cleanse when its key dies (re-key, CLEAR_KEY, NO_ENCRYPT, deinit); scratch buffers are
// cleansed at deinit; raw keys are never stored, printed or serialized. Every buffer is an
// OwnedBuffer (freed with its own deallocator).
import CXTSKernels
import CLibCrypto
import KeyMMBase
#if canImport(Glibc)
import Glibc
#endif

/// What a KeyID's slot does to data.
public enum EngineSlotMode: UInt8, Sendable, BitwiseCopyable {
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
    /// (Safe to hold: the context pointers are owned by the engine, created by setKey and freed
    /// exactly once by freeContexts.)
    @safe @usableFromInline struct Slot: BitwiseCopyable {
        @usableFromInline var mode: EngineSlotMode = .tme
        @usableFromInline var keyBits: UInt16 = 0
        @usableFromInline var dataEnc: OpaquePointer? = nil
        @usableFromInline var dataDec: OpaquePointer? = nil
        @usableFromInline var tweakEnc: OpaquePointer? = nil
        /// AES rounds of the slot's VAES schedules in `schedules` (0: none, use the EVP path).
        @usableFromInline var vaesRounds: Int32 = 0
        @usableFromInline init(mode: EngineSlotMode = .tme, keyBits: UInt16 = 0, dataEnc: OpaquePointer? = nil, dataDec: OpaquePointer? = nil, tweakEnc: OpaquePointer? = nil) {
            self.mode = mode; self.keyBits = keyBits; unsafe self.dataEnc = unsafe dataEnc; unsafe self.dataDec = unsafe dataDec; unsafe self.tweakEnc = unsafe tweakEnc
        }
    }
    @usableFromInline let slots: OwnedBuffer<Slot>

    // Scratch (64-byte aligned): encrypted tweaks (64 x 16 B), block masks (256 x 16 B).
    let tweaks: OwnedBuffer<UInt8>
    let masks: OwnedBuffer<UInt8>

    // Encrypted-tweak cache: entry i covers one (slot, PFN): tcTag[i] = PFN << 17 | slot << 1 | 1
    // (0: empty), tcLines[i] = lines present, tcData + 1024 i = their 64 encrypted tweaks.
    /// Entries of the encrypted-tweak cache (a power of two; direct-mapped by PFN).
    public static let tweakCacheEntries = 4096
    /// Host bytes of the encrypted-tweak cache when every entry is in use.
    public static var tweakCacheBytes: Int { tweakCacheEntries * (16 * linesPerPage + 16) }
    let tcTag: OwnedBuffer<UInt64>
    let tcLines: OwnedBuffer<UInt64>
    /// The entries' tweaks: a lazily-backed host mapping, or (host refused it) a heap buffer.
    let tcData: OwnedBuffer<UInt8>
    /// Per slot: entries tagged with it (so clearing a slot with none costs nothing).
    let tcLive: OwnedBuffer<Int>
    /// Scratch for the tweaks of lines that missed the cache (compacted, 64 x 16 B).
    let missTweaks: OwnedBuffer<UInt8>
    let missIndex: OwnedBuffer<Int>
    /// [page hits, line hits, line misses] (in a buffer: no exclusivity checks on the hot path).
    let tcStats: OwnedBuffer<Int>
    /// Tweak-cache statistics (host side only): whole pages served from one entry, single lines
    /// served, lines whose tweak was encrypted.
    public var tweakCacheStats: (pageHits: Int, lineHits: Int, lineMisses: Int) { (tcStats[0], tcStats[1], tcStats[2]) }
    /// Per slot, three expanded AES schedules for the VAES kernels (data encrypt, data decrypt,
    /// tweak encrypt; `scheduleBytes` each): key material, cleansed when the slot's key dies.
    let schedules: OwnedBuffer<UInt8>
    static let scheduleBytes = 15 * 64
    /// Whether this engine uses the VAES kernels (CPU support, unless a test turned them off).
    public let usesVAES: Bool
    /// The CPU runs the VAES kernels (CPUID, once per process).
    public static let vaesAvailable: Bool = hp_xts_vaes_available() != 0

    /// Where the tweak cache's entries live (a host mapping unless the host refused one).
    package var tweakCacheBacking: OwnedBufferBacking { tcData.backing }

    /// An engine with `slots` KeyIDs: KeyID 0 stores plaintext until keyed, the others use KeyID 0's slot.
    public convenience init(slots count: Int) { self.init(slots: count, refuseTweakCacheMapping: false) }

    /// `refuseTweakCacheMapping` (tests): behave as if the host refused the tweak cache's mapping,
    /// so the heap fallback is used. `vaes: false` (tests, benches): the EVP construction even
    /// where the CPU has VAES.
    package init(slots count: Int, refuseTweakCacheMapping: Bool, vaes: Bool = EncryptionEngine.vaesAvailable) {
        usesVAES = vaes && EncryptionEngine.vaesAvailable
        schedules = OwnedBuffer.lazilyZeroed(count: (usesVAES ? max(count, 1) : 1) * 3 * EncryptionEngine.scheduleBytes)
        slotCount = max(count, 1)
        slots = unsafe OwnedBuffer(repeating: Slot(), count: slotCount)
        slots[0].mode = .plaintext
        tweaks = OwnedBuffer(zeroedCount: 16 * EncryptionEngine.batchLines)
        masks = OwnedBuffer(zeroedCount: cacheLineSize * EncryptionEngine.batchLines)
        let e = EncryptionEngine.tweakCacheEntries
        tcTag = OwnedBuffer(zeroedCount: e)
        tcLines = OwnedBuffer(zeroedCount: e)
        // Lazily backed: an engine that never encrypts (or a short test) costs no host memory.
        tcData = OwnedBuffer.lazilyZeroed(count: e * 16 * linesPerPage, refuseMapping: refuseTweakCacheMapping)
        tcLive = OwnedBuffer(zeroedCount: slotCount)
        missTweaks = OwnedBuffer(zeroedCount: 16 * EncryptionEngine.batchLines)
        missIndex = OwnedBuffer(zeroedCount: EncryptionEngine.batchLines)
        tcStats = OwnedBuffer(zeroedCount: 3)
    }

    deinit {
        for k in 0..<slotCount { freeContexts(k) }
        cleanseScratch()
        // The buffers free themselves (each with its own deallocator).
    }

    /// The whitening kernel in use ("avx512" or "portable"; CHostProbe/xts_kernels.c).
    public static var whiteningKernel: String { unsafe String(cString: hp_xts_kernel_name()) }

    /// The libcrypto in use (OpenSSL_version), for reports.
    public static var libcryptoVersion: String { unsafe String(cString: OpenSSL_version(OPENSSL_VERSION)) }

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
        let cipher = unsafe dataKey.count == 16 ? ECBCiphers.shared.aes128 : ECBCiphers.shared.aes256
        guard let cipher = unsafe cipher else { return false }
        guard let e = unsafe EVP_CIPHER_CTX_new(), let d = unsafe EVP_CIPHER_CTX_new(), let t = unsafe EVP_CIPHER_CTX_new() else { return false }
        let ok = unsafe EVP_EncryptInit_ex2(e, cipher, dk.assumingMemoryBound(to: UInt8.self), nil, nil) == 1
            && EVP_DecryptInit_ex2(d, cipher, dk.assumingMemoryBound(to: UInt8.self), nil, nil) == 1
            && EVP_EncryptInit_ex2(t, cipher, tk.assumingMemoryBound(to: UInt8.self), nil, nil) == 1
            && EVP_CIPHER_CTX_set_padding(e, 0) == 1
            && EVP_CIPHER_CTX_set_padding(d, 0) == 1
            && EVP_CIPHER_CTX_set_padding(t, 0) == 1
        guard ok else {
            unsafe EVP_CIPHER_CTX_free(e); unsafe EVP_CIPHER_CTX_free(d); unsafe EVP_CIPHER_CTX_free(t)
            return false
        }
        freeContexts(k)
        var slot = unsafe Slot(mode: .keyed, keyBits: UInt16(dataKey.count * 8), dataEnc: e, dataDec: d, tweakEnc: t)
        if usesVAES {
            let sch = unsafe schedules.raw(k * 3 * EncryptionEngine.scheduleBytes)
            let r1 = unsafe hp_xts_vaes_expand(dk, dataKey.count, sch, sch + EncryptionEngine.scheduleBytes)
            let r2 = unsafe hp_xts_vaes_expand(tk, tweakKey.count, sch + 2 * EncryptionEngine.scheduleBytes, nil)
            slot.vaesRounds = r1 == r2 ? r1 : 0
        }
        slots[k] = slot
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
        unsafe OPENSSL_cleanse(tweaks.raw(), tweaks.byteCount)
        unsafe OPENSSL_cleanse(masks.raw(), masks.byteCount)
        unsafe OPENSSL_cleanse(missTweaks.raw(), missTweaks.byteCount)
    }

    /// Cleanses and empties every tweak-cache entry of slot `k` (its tweak key is going away).
    private func dropTweakCache(_ k: Int) {
        guard tcLive[k] > 0 else { return }
        for i in 0..<EncryptionEngine.tweakCacheEntries where tcTag[i] != 0 && Int((tcTag[i] >> 1) & 0xFFFF) == k {
            unsafe OPENSSL_cleanse(tcData.raw(i * 16 * linesPerPage), 16 * linesPerPage)
            tcTag[i] = 0; tcLines[i] = 0
        }
        tcLive[k] = 0
    }

    /// Live tweak-cache entries (tests, reports).
    public var tweakCacheLiveEntries: Int { (0..<slotCount).reduce(0) { $0 + tcLive[$1] } }

    private func freeContexts(_ k: Int) {
        // EVP_CIPHER_CTX_free cleanses the key schedule (OPENSSL_clear_free in the provider).
        if unsafe slots[k].dataEnc != nil || slots[k].dataDec != nil || slots[k].tweakEnc != nil { cleanseScratch() }
        dropTweakCache(k)
        if let c = unsafe slots[k].dataEnc { unsafe EVP_CIPHER_CTX_free(c) }
        if let c = unsafe slots[k].dataDec { unsafe EVP_CIPHER_CTX_free(c) }
        if let c = unsafe slots[k].tweakEnc { unsafe EVP_CIPHER_CTX_free(c) }
        unsafe slots[k].dataEnc = nil; unsafe slots[k].dataDec = nil; unsafe slots[k].tweakEnc = nil
        slots[k].keyBits = 0
        if slots[k].vaesRounds != 0 {
            unsafe OPENSSL_cleanse(schedules.raw(k * 3 * EncryptionEngine.scheduleBytes), 3 * EncryptionEngine.scheduleBytes)
            slots[k].vaesRounds = 0
        }
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
        unsafe crypt(keyid, encrypt: true, pa: pa, addresses: nil, lines: lines, src: src, dst: dst)
    }

    /// Decrypts `lines` consecutive cache lines starting at `pa`. Same conventions as `encrypt`.
    @discardableResult
    public func decrypt(_ keyid: KeyID, at pa: PhysAddr, lines: Int, from src: UnsafeRawPointer, to dst: UnsafeMutableRawPointer) -> Int {
        unsafe crypt(keyid, encrypt: false, pa: pa, addresses: nil, lines: lines, src: src, dst: dst)
    }

    /// `encrypt(_:at:lines:from:to:)` of a whole array (a multiple of 64 bytes) into a new one (how
    /// SGX's EWB seals a page: the same tweaks, the same bytes).
    package func encrypted(_ keyid: KeyID, at pa: PhysAddr, _ src: [UInt8]) -> [UInt8] {
        crypted(keyid, encrypt: true, at: pa, src)
    }

    /// `decrypt(_:at:lines:from:to:)` of a whole array into a new one (SGX's ELDU).
    package func decrypted(_ keyid: KeyID, at pa: PhysAddr, _ src: [UInt8]) -> [UInt8] {
        crypted(keyid, encrypt: false, at: pa, src)
    }

    private func crypted(_ keyid: KeyID, encrypt: Bool, at pa: PhysAddr, _ src: [UInt8]) -> [UInt8] {
        var dst = [UInt8](repeating: 0, count: src.count)
        let lines = src.count / cacheLineSize
        unsafe src.withUnsafeBytes { s in
            unsafe dst.withUnsafeMutableBytes { d in
                guard let sp = s.baseAddress, let dp = d.baseAddress else { return }
                _ = unsafe crypt(keyid, encrypt: encrypt, pa: pa, addresses: nil, lines: lines, src: sp, dst: dp)
            }
        }
        return dst
    }

    /// Encrypts `count` lines whose physical addresses are `addresses[i]` (gathered write-backs); data contiguous.
    @discardableResult
    public func encrypt(_ keyid: KeyID, addresses: UnsafePointer<UInt64>, lines: Int, from src: UnsafeRawPointer, to dst: UnsafeMutableRawPointer) -> Int {
        unsafe crypt(keyid, encrypt: true, pa: PhysAddr(0), addresses: addresses, lines: lines, src: src, dst: dst)
    }

    /// Decrypts `count` lines whose physical addresses are `addresses[i]`; data contiguous.
    @discardableResult
    public func decrypt(_ keyid: KeyID, addresses: UnsafePointer<UInt64>, lines: Int, from src: UnsafeRawPointer, to dst: UnsafeMutableRawPointer) -> Int {
        unsafe crypt(keyid, encrypt: false, pa: PhysAddr(0), addresses: addresses, lines: lines, src: src, dst: dst)
    }

    @usableFromInline
    func crypt(_ keyid: KeyID, encrypt: Bool, pa: PhysAddr, addresses: UnsafePointer<UInt64>?, lines: Int,
               src: UnsafeRawPointer, dst: UnsafeMutableRawPointer) -> Int {
        guard lines > 0 else { return 0 }
        let s = slot(for: keyid)
        let masks = unsafe self.masks.raw()
        guard slots[s].mode == .keyed, let dctx = unsafe encrypt ? slots[s].dataEnc : slots[s].dataDec, let tctx = unsafe slots[s].tweakEnc else {
            if unsafe src != UnsafeRawPointer(dst) { unsafe dst.copyMemory(from: src, byteCount: lines * cacheLineSize) }
            return 0
        }
        var done = 0
        let rounds = slots[s].vaesRounds
        if rounds != 0 {
            // VAES: one pass per batch, whitening fused with the AES rounds (CXTSKernels/xts_vaes.c).
            let sch = unsafe UnsafeRawPointer(schedules.raw(s * 3 * EncryptionEngine.scheduleBytes))
            let rk = unsafe encrypt ? sch : sch + EncryptionEngine.scheduleBytes
            while done < lines {
                let n = min(lines - done, EncryptionEngine.batchLines)
                let off = done * cacheLineSize
                let et = unsafe encryptedTweaks(s, tctx, rounds, pa: pa.rawValue &+ UInt64(off), addresses: addresses.map { unsafe $0 + done }, n)
                unsafe hp_xts_vaes_lines(rk, rounds, encrypt ? 1 : 0, et, n, src + off, dst + off)
                done += n
            }
            return lines
        }
        while done < lines {
            let n = min(lines - done, EncryptionEngine.batchLines)
            let off = done * cacheLineSize
            // 1-2. The lines' encrypted tweaks E_K2(PA) (from the tweak cache where present).
            let et = unsafe encryptedTweaks(s, tctx, 0, pa: pa.rawValue &+ UInt64(off), addresses: addresses.map { unsafe $0 + done }, n)
            var outl: Int32 = 0
            // 3. Masks (T * alpha^j) and pre-whitening.
            let srcp = unsafe src + off
            let dstp = unsafe dst + off
            unsafe hp_xts_whiten(et, masks, n, srcp, dstp)
            // 4. ECB over the batch with the data key.
            let bp = unsafe dstp.assumingMemoryBound(to: UInt8.self)
            if encrypt {
                _ = unsafe EVP_EncryptUpdate(dctx, bp, &outl, bp, Int32(n * cacheLineSize))
            } else {
                _ = unsafe EVP_DecryptUpdate(dctx, bp, &outl, bp, Int32(n * cacheLineSize))
            }
            // 5. Post-whitening.
            unsafe hp_xts_unwhiten(dstp, et, masks, n)
            done += n
        }
        return lines
    }
}

extension EncryptionEngine {
    /// The tweak-cache entry for (slot, PFN): index and tag.
    @inline(__always) func tweakEntry(_ s: Int, _ pfn: UInt64) -> (Int, UInt64) {
        (Int(truncatingIfNeeded: pfn) & (EncryptionEngine.tweakCacheEntries - 1), pfn << 17 | UInt64(s) << 1 | 1)
    }

    /// Points entry `i` at `tag` (emptying it if it held another frame or slot).
    @inline(__always) func claimEntry(_ i: Int, _ tag: UInt64, _ s: Int) {
        let old = tcTag[i]
        guard old != tag else { return }
        if old != 0 { tcLive[Int((old >> 1) & 0xFFFF)] -= 1 }
        tcTag[i] = tag; tcLines[i] = 0
        tcLive[s] += 1
    }

    /// E_K2(tweak) for `n` lines: line j's raw tweak is `addresses[j] & ~63` (gathered) or
    /// `pa + 64 j` (contiguous). Returns 16 n bytes of encrypted tweaks: a tweak-cache entry
    /// (a whole page), or the `tweaks` scratch.
    @inline(__always)
    func encryptedTweaks(_ s: Int, _ tctx: OpaquePointer, _ rounds: Int32, pa: UInt64, addresses: UnsafePointer<UInt64>?, _ n: Int) -> UnsafeMutableRawPointer {
        let rkT = unsafe UnsafeRawPointer(schedules.raw((s * 3 + 2) * EncryptionEngine.scheduleBytes))
        var outl: Int32 = 0
        let tweaks = unsafe self.tweaks.raw(), missTweaks = unsafe self.missTweaks.raw(), tcData = unsafe self.tcData.raw()
        // A whole page at a page-aligned address: one entry, used in place.
        if unsafe addresses == nil && n == linesPerPage && pa & UInt64(pageSize - 1) == 0 {
            let (i, tag) = tweakEntry(s, pa >> pageShift)
            let e = unsafe tcData + i * 16 * linesPerPage
            if tcTag[i] == tag && tcLines[i] == UInt64.max {
                tcStats[0] += 1
                return unsafe e
            }
            // Computed in the (host-cache-hot) scratch, then streamed into the entry: a cold frame
            // costs no read of the entry's old contents.
            claimEntry(i, tag, s)
            if rounds != 0 {
                unsafe hp_xts_vaes_page_tweaks(rkT, rounds, pa, tweaks, linesPerPage)
            } else {
                unsafe hp_xts_tweaks(tweaks, pa, linesPerPage)
                let tp = unsafe tweaks.assumingMemoryBound(to: UInt8.self)
                _ = unsafe EVP_EncryptUpdate(tctx, tp, &outl, tp, Int32(16 * linesPerPage))
            }
            unsafe hp_stream_copy(e, tweaks, 16 * linesPerPage)
            tcLines[i] = UInt64.max
            tcStats[2] += linesPerPage
            return unsafe tweaks
        }
        // Line by line: cached tweaks are copied, the misses encrypted in one call and cached.
        let cacheable = unsafe addresses != nil || pa & 63 == 0
        var m = 0
        for j in 0..<n {
            let raw = unsafe addresses.map { unsafe $0[j] & ~UInt64(63) } ?? (pa &+ UInt64(64 * j))
            let out = unsafe tweaks + 16 * j
            if cacheable {
                let (i, tag) = tweakEntry(s, raw >> pageShift)
                let bit = UInt64(1) << ((raw >> 6) & 63)
                if tcTag[i] == tag && tcLines[i] & bit != 0 {
                    unsafe out.copyMemory(from: tcData + i * 16 * linesPerPage + Int((raw >> 6) & 63) * 16, byteCount: 16)
                    continue
                }
            }
            unsafe out.storeBytes(of: raw, as: UInt64.self)
            unsafe out.storeBytes(of: 0, toByteOffset: 8, as: UInt64.self)
            missIndex[m] = j
            m += 1
        }
        tcStats[1] += n - m
        tcStats[2] += m
        guard m > 0 else { return unsafe tweaks }
        if m == n {
            if rounds != 0 {
                unsafe hp_xts_vaes_ecb_encrypt(rkT, rounds, tweaks, n)
            } else {
                let tp = unsafe tweaks.assumingMemoryBound(to: UInt8.self)
                _ = unsafe EVP_EncryptUpdate(tctx, tp, &outl, tp, Int32(16 * n))
            }
        } else {
            for k in 0..<m { unsafe (missTweaks + 16 * k).copyMemory(from: tweaks + 16 * missIndex[k], byteCount: 16) }
            if rounds != 0 {
                unsafe hp_xts_vaes_ecb_encrypt(rkT, rounds, missTweaks, m)
            } else {
                let mp = unsafe missTweaks.assumingMemoryBound(to: UInt8.self)
                _ = unsafe EVP_EncryptUpdate(tctx, mp, &outl, mp, Int32(16 * m))
            }
            for k in 0..<m { unsafe (tweaks + 16 * missIndex[k]).copyMemory(from: missTweaks + 16 * k, byteCount: 16) }
        }
        if cacheable {
            for k in 0..<m {
                let j = missIndex[k]
                let raw = unsafe addresses.map { unsafe $0[j] & ~UInt64(63) } ?? (pa &+ UInt64(64 * j))
                let (i, tag) = tweakEntry(s, raw >> pageShift)
                claimEntry(i, tag, s)
                let line = Int((raw >> 6) & 63)
                unsafe (tcData + i * 16 * linesPerPage + 16 * line).copyMemory(from: tweaks + 16 * j, byteCount: 16)
                tcLines[i] |= UInt64(1) << UInt64(line)
            }
        }
        return unsafe tweaks
    }
}

/// The ECB ciphers, fetched once per process (EVP_CIPHER_fetch is expensive).
@safe final class ECBCiphers: @unchecked Sendable {
    static let shared = ECBCiphers()
    let aes128: OpaquePointer?
    let aes256: OpaquePointer?
    private init() {
        unsafe aes128 = unsafe EVP_CIPHER_fetch(nil, "AES-128-ECB", nil)
        unsafe aes256 = unsafe EVP_CIPHER_fetch(nil, "AES-256-ECB", nil)
    }
}
