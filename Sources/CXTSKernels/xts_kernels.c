// XTS whitening kernels (see include/CXTSKernels.h). No AES here: only the tweak chain and XORs.
// The AVX-512 kernels exist only on x86-64 (and run only when CPUID says so); every other
// architecture builds and uses the portable C kernels.
#include "CXTSKernels.h"
#include <stdint.h>
#include <string.h>
#if defined(__x86_64__)
#include <immintrin.h>
#include "xts_gf.h"
#define KEYMM_X86 1
#else
#define KEYMM_X86 0
#endif

static inline void dbl(uint64_t *lo, uint64_t *hi) {
    uint64_t carry = *hi >> 63;
    *hi = (*hi << 1) | (*lo >> 63);
    *lo = (*lo << 1) ^ ((0 - carry) & 0x87);
}

static void whiten_portable(const void *tweaks, void *masks, size_t lines, const void *src, void *dst) {
    const uint8_t *t = tweaks, *s = src;
    uint8_t *m = masks, *d = dst;
    for (size_t i = 0; i < lines; i++) {
        uint64_t lo, hi;
        memcpy(&lo, t + 16 * i, 8);
        memcpy(&hi, t + 16 * i + 8, 8);
        uint64_t mk[8];
        for (int j = 0; j < 4; j++) { mk[2 * j] = lo; mk[2 * j + 1] = hi; dbl(&lo, &hi); }
        memcpy(m + 64 * i, mk, 64);
        for (int w = 0; w < 8; w++) {
            uint64_t v;
            memcpy(&v, s + 64 * i + 8 * w, 8);
            v ^= mk[w];
            memcpy(d + 64 * i + 8 * w, &v, 8);
        }
    }
}

static void unwhiten_portable(void *dst, const void *tweaks, const void *masks, size_t lines) {
    (void)tweaks;
    uint8_t *d = dst;
    const uint8_t *m = masks;
    for (size_t o = 0; o < 64 * lines; o += 8) {
        uint64_t a, b;
        memcpy(&a, d + o, 8);
        memcpy(&b, m + o, 8);
        a ^= b;
        memcpy(d + o, &a, 8);
    }
}

#if KEYMM_X86
// AVX-512 pre-whitening: masks are recomputed in the post-whitening pass (cheaper than storing
// and reloading 4 KiB), except for a tail of fewer than 4 lines, which uses the stored masks.
__attribute__((target("avx512f")))
static void whiten_avx512(const void *tweaks, void *masks, size_t lines, const void *src, void *dst) {
    const __m512i k = _mm512_set_epi64(1, 0x87, 1, 0x87, 1, 0x87, 1, 0x87);
    const uint8_t *t = tweaks, *s = src;
    uint8_t *m = masks, *d = dst;
    size_t i = 0;
    for (; i + 4 <= lines; i += 4) {
        __m512i l0, l1, l2, l3;
        masks4(t + 16 * i, k, &l0, &l1, &l2, &l3);
        _mm512_storeu_si512(d + 64 * i, _mm512_xor_si512(_mm512_loadu_si512(s + 64 * i), l0));
        _mm512_storeu_si512(d + 64 * (i + 1), _mm512_xor_si512(_mm512_loadu_si512(s + 64 * (i + 1)), l1));
        _mm512_storeu_si512(d + 64 * (i + 2), _mm512_xor_si512(_mm512_loadu_si512(s + 64 * (i + 2)), l2));
        _mm512_storeu_si512(d + 64 * (i + 3), _mm512_xor_si512(_mm512_loadu_si512(s + 64 * (i + 3)), l3));
    }
    if (i < lines) whiten_portable(t + 16 * i, m + 64 * i, lines - i, s + 64 * i, d + 64 * i);
}

__attribute__((target("avx512f")))
static void unwhiten_avx512(void *dst, const void *tweaks, const void *masks, size_t lines) {
    const __m512i k = _mm512_set_epi64(1, 0x87, 1, 0x87, 1, 0x87, 1, 0x87);
    const uint8_t *t = tweaks;
    const uint8_t *m = masks;
    uint8_t *d = dst;
    size_t i = 0;
    for (; i + 4 <= lines; i += 4) {
        __m512i l0, l1, l2, l3;
        masks4(t + 16 * i, k, &l0, &l1, &l2, &l3);
        _mm512_storeu_si512(d + 64 * i, _mm512_xor_si512(_mm512_loadu_si512(d + 64 * i), l0));
        _mm512_storeu_si512(d + 64 * (i + 1), _mm512_xor_si512(_mm512_loadu_si512(d + 64 * (i + 1)), l1));
        _mm512_storeu_si512(d + 64 * (i + 2), _mm512_xor_si512(_mm512_loadu_si512(d + 64 * (i + 2)), l2));
        _mm512_storeu_si512(d + 64 * (i + 3), _mm512_xor_si512(_mm512_loadu_si512(d + 64 * (i + 3)), l3));
    }
    for (size_t o = 64 * i; o < 64 * lines; o += 64)
        _mm512_storeu_si512(d + o, _mm512_xor_si512(_mm512_loadu_si512(d + o), _mm512_load_si512(m + o)));
}

#endif

static void tweaks_portable(void *out, uint64_t pa, size_t lines) {
    uint64_t *o = out;
    for (size_t i = 0; i < lines; i++) { o[2 * i] = pa + 64 * (uint64_t)i; o[2 * i + 1] = 0; }
}

#if KEYMM_X86
__attribute__((target("avx512f")))
static void tweaks_avx512(void *out, uint64_t pa, size_t lines) {
    uint8_t *o = out;
    __m512i v = _mm512_set_epi64(0, pa + 192, 0, pa + 128, 0, pa + 64, 0, pa);
    const __m512i step = _mm512_set_epi64(0, 256, 0, 256, 0, 256, 0, 256);
    size_t i = 0;
    for (; i + 4 <= lines; i += 4) {
        _mm512_storeu_si512(o + 16 * i, v);
        v = _mm512_add_epi64(v, step);
    }
    if (i < lines) tweaks_portable(o + 16 * i, pa + 64 * (uint64_t)i, lines - i);
}

#endif

void hp_xts_tweaks_gather(void *out, const uint64_t *addrs, size_t lines) {
    uint64_t *o = out;
    for (size_t i = 0; i < lines; i++) { o[2 * i] = addrs[i] & ~(uint64_t)63; o[2 * i + 1] = 0; }
}

typedef void (*tweaks_fn)(void *, uint64_t, size_t);
static tweaks_fn tweaks_impl;

typedef void (*whiten_fn)(const void *, void *, size_t, const void *, void *);
typedef void (*unwhiten_fn)(void *, const void *, const void *, size_t);
static whiten_fn whiten_impl;
static unwhiten_fn unwhiten_impl;
static const char *kernel_name;

static int has_avx512(void) {
#if KEYMM_X86
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f");
#else
    return 0;
#endif
}

static void choose(void) {
#if KEYMM_X86
    if (has_avx512()) {
        whiten_impl = whiten_avx512; unwhiten_impl = unwhiten_avx512; tweaks_impl = tweaks_avx512; kernel_name = "avx512";
        return;
    }
#endif
    whiten_impl = whiten_portable; unwhiten_impl = unwhiten_portable; tweaks_impl = tweaks_portable; kernel_name = "portable";
}

__attribute__((constructor)) static void hp_xts_init(void) { choose(); }

void hp_xts_whiten(const void *tweaks, void *masks, size_t lines, const void *src, void *dst) {
    whiten_impl(tweaks, masks, lines, src, dst);
}

void hp_xts_unwhiten(void *dst, const void *tweaks, const void *masks, size_t lines) {
    unwhiten_impl(dst, tweaks, masks, lines);
}

void hp_xts_tweaks(void *out, uint64_t pa, size_t lines) {
    tweaks_impl(out, pa, lines);
}

const char *hp_xts_kernel_name(void) { return kernel_name; }

int hp_xts_whiten_with(int kernel, const void *tweaks, void *masks, size_t lines, const void *src, void *dst) {
    if (kernel == 0) { whiten_portable(tweaks, masks, lines, src, dst); return 1; }
#if KEYMM_X86
    if (kernel == 1 && has_avx512()) { whiten_avx512(tweaks, masks, lines, src, dst); return 1; }
#endif
    return 0;
}

int hp_xts_unwhiten_with(int kernel, void *dst, const void *tweaks, const void *masks, size_t lines) {
    if (kernel == 0) { unwhiten_portable(dst, tweaks, masks, lines); return 1; }
#if KEYMM_X86
    if (kernel == 1 && has_avx512()) { unwhiten_avx512(dst, tweaks, masks, lines); return 1; }
#endif
    return 0;
}

void hp_prefetch(const void *p, size_t bytes, int write) {
    const char *c = p;
    if (write) { for (size_t o = 0; o < bytes; o += 64) __builtin_prefetch(c + o, 1, 3); }
    else { for (size_t o = 0; o < bytes; o += 64) __builtin_prefetch(c + o, 0, 3); }
}

#if KEYMM_X86
__attribute__((target("avx512f")))
static void stream_copy_avx512(void *dst, const void *src, size_t bytes) {
    uint8_t *d = dst;
    const uint8_t *s = src;
    for (size_t o = 0; o < bytes; o += 64) _mm512_stream_si512((__m512i *)(d + o), _mm512_loadu_si512(s + o));
}

#endif

void hp_stream_copy(void *dst, const void *src, size_t bytes) {
#if KEYMM_X86
    if (((uintptr_t)dst & 63) == 0 && (bytes & 63) == 0 && has_avx512()) { stream_copy_avx512(dst, src, bytes); return; }
#endif
    memcpy(dst, src, bytes);
}
