// XTS whitening kernels for KeyMMHardware's batched AES-XTS (the AES itself stays in libcrypto):
// the GF(2^128) tweak chain T * alpha^j and the XORs around the ECB passes. Chosen at run time by
// CPUID: AVX-512 when the CPU has it, portable C otherwise; both give identical bytes.
#ifndef KEYMM_CXTSKERNELS_H
#define KEYMM_CXTSKERNELS_H
#include <stddef.h>
#include <stdint.h>

/// Writes the plaintext tweaks of `lines` consecutive lines starting at physical address `pa`:
/// out[16 i ..] = (pa + 64 i) as a 16-byte little-endian integer.
void hp_xts_tweaks(void *out, uint64_t pa, size_t lines);

/// The same for `lines` lines at the (line-aligned down) physical addresses addrs[i].
void hp_xts_tweaks_gather(void *out, const uint64_t *addrs, size_t lines);

/// For each of `lines` 64-byte lines i: T = the 16-byte encrypted tweak tweaks[i]; the line's four
/// block masks are T, T*alpha, T*alpha^2, T*alpha^3 (XTS multiplication, little-endian, 0x87);
/// dst[64 i ..] = src[64 i ..] ^ masks. `masks` (64 * lines bytes, 64-byte aligned) is scratch
/// the kernel may use to hand masks to hp_xts_unwhiten.
void hp_xts_whiten(const void *tweaks, void *masks, size_t lines, const void *src, void *dst);

/// dst ^= the same masks (from `tweaks`, or from `masks` as hp_xts_whiten left them), `lines` lines.
void hp_xts_unwhiten(void *dst, const void *tweaks, const void *masks, size_t lines);

/// Name of the kernel in use ("avx512" or "portable").
const char *hp_xts_kernel_name(void);

/// hp_xts_whiten / hp_xts_unwhiten with an explicit kernel (0 portable, 1 avx512), for tests that
/// compare kernels; returns 0 (and does nothing) when this CPU cannot run that kernel.
int hp_xts_whiten_with(int kernel, const void *tweaks, void *masks, size_t lines, const void *src, void *dst);
int hp_xts_unwhiten_with(int kernel, void *dst, const void *tweaks, const void *masks, size_t lines);
/// Software prefetch of [p, p + bytes) into the host cache (write intent when `write`): the model's
/// cache walks 64 consecutive sets per page, whose tags the host prefetchers do not bring in fast enough.
void hp_prefetch(const void *p, size_t bytes, int write);
/// Copies `bytes` to `dst` with non-temporal stores when both are multiples of 64 (AVX-512), else
/// memcpy: fills a table entry without reading its old line into the host cache first.
void hp_stream_copy(void *dst, const void *src, size_t bytes);
/// Software prefetch (write intent) of the host cache line holding `p`; inlined into Swift.
static inline void hp_prefetchw_line(const void *p) { __builtin_prefetch(p, 1, 3); }
#endif
