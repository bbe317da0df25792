// The engine's own AES-XTS for 64-byte data units on x86-64 with VAES + AVX-512 (see
// include/CXTSKernels.h). One 64-byte line is exactly one 512-bit register of four AES blocks, so
// a line is whitened, run through the AES rounds and whitened again without leaving registers:
// one pass over the data instead of three (whiten, ECB, unwhiten). Eight lines are in flight at a
// time to cover the AES latency. Tweaks are encrypted four lines per register.
//
// Key schedules are expanded with AES-NI (AESKEYGENASSIST) into caller-owned memory, each round
// key stored four times (64 bytes) so the rounds take it as a memory operand; the caller cleanses
// them when the key dies. Decryption uses the equivalent inverse cipher (AESIMC of the middle
// round keys). Other architectures (and x86-64 CPUs without VAES/AVX-512) get hp_xts_vaes_available()
// == 0 and never call the rest, which then does nothing.
#include "CXTSKernels.h"
#include <stdint.h>
#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>
#include "xts_gf.h"

int hp_xts_vaes_available(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("vaes") && __builtin_cpu_supports("aes");
}

#define TARGET_AESNI __attribute__((target("aes,sse2")))
#define TARGET_VAES __attribute__((target("avx512f,vaes,aes")))

TARGET_AESNI static inline __m128i expand128_step(__m128i key, __m128i gen) {
    gen = _mm_shuffle_epi32(gen, _MM_SHUFFLE(3, 3, 3, 3));
    key = _mm_xor_si128(key, _mm_slli_si128(key, 4));
    key = _mm_xor_si128(key, _mm_slli_si128(key, 4));
    key = _mm_xor_si128(key, _mm_slli_si128(key, 4));
    return _mm_xor_si128(key, gen);
}

TARGET_AESNI static void expand128(const uint8_t *key, __m128i *rk) {
    rk[0] = _mm_loadu_si128((const __m128i *)key);
#define STEP(i, rcon) rk[i] = expand128_step(rk[i - 1], _mm_aeskeygenassist_si128(rk[i - 1], rcon))
    STEP(1, 0x01); STEP(2, 0x02); STEP(3, 0x04); STEP(4, 0x08); STEP(5, 0x10);
    STEP(6, 0x20); STEP(7, 0x40); STEP(8, 0x80); STEP(9, 0x1b); STEP(10, 0x36);
#undef STEP
}

TARGET_AESNI static inline __m128i expand256_even(__m128i a, __m128i gen) {
    gen = _mm_shuffle_epi32(gen, _MM_SHUFFLE(3, 3, 3, 3));
    a = _mm_xor_si128(a, _mm_slli_si128(a, 4));
    a = _mm_xor_si128(a, _mm_slli_si128(a, 4));
    a = _mm_xor_si128(a, _mm_slli_si128(a, 4));
    return _mm_xor_si128(a, gen);
}

TARGET_AESNI static inline __m128i expand256_odd(__m128i a, __m128i b) {
    __m128i gen = _mm_shuffle_epi32(_mm_aeskeygenassist_si128(a, 0), _MM_SHUFFLE(2, 2, 2, 2));
    b = _mm_xor_si128(b, _mm_slli_si128(b, 4));
    b = _mm_xor_si128(b, _mm_slli_si128(b, 4));
    b = _mm_xor_si128(b, _mm_slli_si128(b, 4));
    return _mm_xor_si128(b, gen);
}

TARGET_AESNI static void expand256(const uint8_t *key, __m128i *rk) {
    rk[0] = _mm_loadu_si128((const __m128i *)key);
    rk[1] = _mm_loadu_si128((const __m128i *)(key + 16));
#define PAIR(i, rcon) \
    rk[i] = expand256_even(rk[i - 2], _mm_aeskeygenassist_si128(rk[i - 1], rcon)); \
    if (i + 1 < 15) rk[i + 1] = expand256_odd(rk[i], rk[i - 1])
    PAIR(2, 0x01); PAIR(4, 0x02); PAIR(6, 0x04); PAIR(8, 0x08); PAIR(10, 0x10); PAIR(12, 0x20);
#undef PAIR
    rk[14] = expand256_even(rk[12], _mm_aeskeygenassist_si128(rk[13], 0x40));
}

TARGET_AESNI int hp_xts_vaes_expand(const void *key, size_t key_bytes, void *enc, void *dec) {
    if (key_bytes != 16 && key_bytes != 32) return 0;
    int rounds = key_bytes == 16 ? 10 : 14;
    __m128i rk[15];
    if (key_bytes == 16) expand128(key, rk); else expand256(key, rk);
    uint8_t *e = enc, *d = dec;
    for (int r = 0; r <= rounds; r++) {
        __m128i dk = (r == 0 || r == rounds) ? rk[rounds - r] : _mm_aesimc_si128(rk[rounds - r]);
        for (int c = 0; c < 4; c++) {
            _mm_storeu_si128((__m128i *)(e + 64 * r + 16 * c), rk[r]);
            if (d) _mm_storeu_si128((__m128i *)(d + 64 * r + 16 * c), dk);
        }
    }
    volatile __m128i *wipe = rk;
    for (int i = 0; i < 15; i++) wipe[i] = _mm_setzero_si128();
    return rounds;
}

#define RK(s, r) _mm512_load_si512((const void *)((const uint8_t *)(s) + 64 * (r)))

// 8 registers through the cipher (encrypt).
TARGET_VAES static inline void enc8(__m512i *x, const void *rk, int rounds) {
    __m512i k = RK(rk, 0);
    for (int i = 0; i < 8; i++) x[i] = _mm512_xor_si512(x[i], k);
    for (int r = 1; r < rounds; r++) {
        k = RK(rk, r);
        for (int i = 0; i < 8; i++) x[i] = _mm512_aesenc_epi128(x[i], k);
    }
    k = RK(rk, rounds);
    for (int i = 0; i < 8; i++) x[i] = _mm512_aesenclast_epi128(x[i], k);
}

TARGET_VAES static inline void dec8(__m512i *x, const void *rk, int rounds) {
    __m512i k = RK(rk, 0);
    for (int i = 0; i < 8; i++) x[i] = _mm512_xor_si512(x[i], k);
    for (int r = 1; r < rounds; r++) {
        k = RK(rk, r);
        for (int i = 0; i < 8; i++) x[i] = _mm512_aesdec_epi128(x[i], k);
    }
    k = RK(rk, rounds);
    for (int i = 0; i < 8; i++) x[i] = _mm512_aesdeclast_epi128(x[i], k);
}

TARGET_VAES static inline __m512i enc1(__m512i x, const void *rk, int rounds) {
    x = _mm512_xor_si512(x, RK(rk, 0));
    for (int r = 1; r < rounds; r++) x = _mm512_aesenc_epi128(x, RK(rk, r));
    return _mm512_aesenclast_epi128(x, RK(rk, rounds));
}

TARGET_VAES static inline __m512i dec1(__m512i x, const void *rk, int rounds) {
    x = _mm512_xor_si512(x, RK(rk, 0));
    for (int r = 1; r < rounds; r++) x = _mm512_aesdec_epi128(x, RK(rk, r));
    return _mm512_aesdeclast_epi128(x, RK(rk, rounds));
}

TARGET_VAES void hp_xts_vaes_ecb_encrypt(const void *rk, int rounds, void *blocks, size_t n) {
    uint8_t *b = blocks;
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m512i x[8];
        for (int j = 0; j < 8; j++) x[j] = _mm512_loadu_si512(b + 16 * i + 64 * j);
        enc8(x, rk, rounds);
        for (int j = 0; j < 8; j++) _mm512_storeu_si512(b + 16 * i + 64 * j, x[j]);
    }
    for (; i + 4 <= n; i += 4) _mm512_storeu_si512(b + 16 * i, enc1(_mm512_loadu_si512(b + 16 * i), rk, rounds));
    if (i < n) {
        __mmask16 m = (__mmask16)((1u << (4 * (n - i))) - 1);
        __m512i x = enc1(_mm512_maskz_loadu_epi32(m, b + 16 * i), rk, rounds);
        _mm512_mask_storeu_epi32(b + 16 * i, m, x);
    }
}

TARGET_VAES void hp_xts_vaes_page_tweaks(const void *rk, int rounds, uint64_t pa, void *out, size_t lines) {
    uint8_t *o = out;
    const __m512i step = _mm512_set_epi64(0, 256, 0, 256, 0, 256, 0, 256);
    __m512i v = _mm512_set_epi64(0, pa + 192, 0, pa + 128, 0, pa + 64, 0, pa);
    size_t i = 0;
    for (; i + 32 <= lines; i += 32) {
        __m512i x[8];
        for (int j = 0; j < 8; j++) { x[j] = v; v = _mm512_add_epi64(v, step); }
        enc8(x, rk, rounds);
        for (int j = 0; j < 8; j++) _mm512_storeu_si512(o + 16 * i + 64 * j, x[j]);
    }
    for (; i < lines; i += 4) {
        __m512i x = enc1(v, rk, rounds);
        v = _mm512_add_epi64(v, step);
        if (lines - i >= 4) _mm512_storeu_si512(o + 16 * i, x);
        else _mm512_mask_storeu_epi32(o + 16 * i, (__mmask16)((1u << (4 * (lines - i))) - 1), x);
    }
}

// The masks of one line from its encrypted tweak T: [T, T*a, T*a^2, T*a^3]. Computed as
// broadcast(T) * [1, a, a^2, a^3] lane-wise: lane j is doubled j times.
TARGET_VAES static inline __m512i line_mask(const uint8_t *t, __m512i k) {
    __m512i b = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)t));
    __m512i d1 = dbl4(b, k);
    __m512i d2 = dbl4(d1, k);
    __m512i d3 = dbl4(d2, k);
    // lanes: 0 from b, 1 from d1, 2 from d2, 3 from d3
    __m512i lo = _mm512_mask_blend_epi64(0x0C, b, d1);      // qwords 2,3 (lane 1) from d1
    __m512i hi = _mm512_mask_blend_epi64(0xC0, d2, d3);     // lane 3 from d3, lane 2 from d2
    return _mm512_mask_blend_epi64(0xF0, lo, hi);           // lanes 2,3 from hi
}

TARGET_VAES void hp_xts_vaes_lines(const void *rk, int rounds, int encrypt, const void *tweaks, size_t lines,
                                   const void *src, void *dst) {
    const __m512i k = _mm512_set_epi64(1, 0x87, 1, 0x87, 1, 0x87, 1, 0x87);
    const uint8_t *t = tweaks, *s = src;
    uint8_t *d = dst;
    size_t i = 0;
    for (; i + 8 <= lines; i += 8) {
        __m512i m[8], x[8];
        masks4(t + 16 * i, k, &m[0], &m[1], &m[2], &m[3]);
        masks4(t + 16 * (i + 4), k, &m[4], &m[5], &m[6], &m[7]);
        for (int j = 0; j < 8; j++) x[j] = _mm512_xor_si512(_mm512_loadu_si512(s + 64 * (i + j)), m[j]);
        if (encrypt) enc8(x, rk, rounds); else dec8(x, rk, rounds);
        for (int j = 0; j < 8; j++) _mm512_storeu_si512(d + 64 * (i + j), _mm512_xor_si512(x[j], m[j]));
    }
    for (; i < lines; i++) {
        __m512i m = line_mask(t + 16 * i, k);
        __m512i x = _mm512_xor_si512(_mm512_loadu_si512(s + 64 * i), m);
        x = encrypt ? enc1(x, rk, rounds) : dec1(x, rk, rounds);
        _mm512_storeu_si512(d + 64 * i, _mm512_xor_si512(x, m));
    }
}

#else

int hp_xts_vaes_available(void) { return 0; }
int hp_xts_vaes_expand(const void *key, size_t key_bytes, void *enc, void *dec) { (void)key; (void)key_bytes; (void)enc; (void)dec; return 0; }
void hp_xts_vaes_ecb_encrypt(const void *rk, int rounds, void *blocks, size_t n) { (void)rk; (void)rounds; (void)blocks; (void)n; }
void hp_xts_vaes_page_tweaks(const void *rk, int rounds, uint64_t pa, void *out, size_t lines) { (void)rk; (void)rounds; (void)pa; (void)out; (void)lines; }
void hp_xts_vaes_lines(const void *rk, int rounds, int encrypt, const void *tweaks, size_t lines, const void *src, void *dst) {
    (void)rk; (void)rounds; (void)encrypt; (void)tweaks; (void)lines; (void)src; (void)dst;
}

#endif
