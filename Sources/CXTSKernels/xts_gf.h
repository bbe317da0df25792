// GF(2^128) doubling and the XTS block masks of four lines at a time, shared by the AVX-512
// whitening kernels (xts_kernels.c) and the VAES kernels (xts_vaes.c). x86-64 only (included
// under `#if defined(__x86_64__)`).
#ifndef KEYMM_XTS_GF_H
#define KEYMM_XTS_GF_H
#include <immintrin.h>

// Four tweaks at a time: x = [T0 T1 T2 T3] (128-bit lanes). Doubling per 128-bit lane: shift each
// 64-bit half left by one; the low half's top bit moves into the high half, the high half's top bit
// folds back into the low half as 0x87.
__attribute__((target("avx512f")))
static inline __m512i dbl4(__m512i x, __m512i k) {
    __m512i carries = _mm512_srli_epi64(x, 63);
    __m512i swapped = _mm512_shuffle_epi32(carries, _MM_PERM_BADC);      // swap 64-bit halves per 128-bit lane
    __m512i fold = _mm512_and_si512(_mm512_sub_epi64(_mm512_setzero_si512(), swapped), k);
    return _mm512_xor_si512(_mm512_slli_epi64(x, 1), fold);
}

// The masks of four lines from their encrypted tweaks t[0..3] (64 bytes): l0..l3 = [T, 2T, 4T, 8T].
__attribute__((target("avx512f")))
static inline void masks4(const uint8_t *t, __m512i k, __m512i *l0, __m512i *l1, __m512i *l2, __m512i *l3) {
    __m512i a = _mm512_loadu_si512(t);                 // [T0 T1 T2 T3]
    __m512i b = dbl4(a, k);                            // *alpha
    __m512i c = dbl4(b, k);                            // *alpha^2
    __m512i e = dbl4(c, k);                            // *alpha^3
    // Transpose 4x4 of 128-bit elements: line j = [a_j b_j c_j e_j].
    __m512i ab_lo = _mm512_shuffle_i64x2(a, b, _MM_SHUFFLE(1, 0, 1, 0));   // a0 a1 b0 b1
    __m512i ab_hi = _mm512_shuffle_i64x2(a, b, _MM_SHUFFLE(3, 2, 3, 2));   // a2 a3 b2 b3
    __m512i ce_lo = _mm512_shuffle_i64x2(c, e, _MM_SHUFFLE(1, 0, 1, 0));   // c0 c1 e0 e1
    __m512i ce_hi = _mm512_shuffle_i64x2(c, e, _MM_SHUFFLE(3, 2, 3, 2));   // c2 c3 e2 e3
    *l0 = _mm512_shuffle_i64x2(ab_lo, ce_lo, _MM_SHUFFLE(2, 0, 2, 0));     // a0 b0 c0 e0
    *l1 = _mm512_shuffle_i64x2(ab_lo, ce_lo, _MM_SHUFFLE(3, 1, 3, 1));     // a1 b1 c1 e1
    *l2 = _mm512_shuffle_i64x2(ab_hi, ce_hi, _MM_SHUFFLE(2, 0, 2, 0));
    *l3 = _mm512_shuffle_i64x2(ab_hi, ce_hi, _MM_SHUFFLE(3, 1, 3, 1));
}

#endif
