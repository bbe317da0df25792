// CXTSKernels: the C kernels of KeyMMHardware's memory-encryption engine and cache (the model's
// own code, apart from CHostProbe's host measurements). Two AES-XTS constructions for 64-byte data
// units, giving identical bytes (tested against EVP's XTS and IEEE 1619 vectors):
// * VAES (xts_vaes.c, x86-64 with VAES + AVX-512, chosen at run time by CPUID): AES rounds in
//   registers, one line per 512-bit register, whitening fused with the rounds;
// * the batched construction around libcrypto's ECB (xts_kernels.c): the GF(2^128) tweak chain
//   T * alpha^j and the XORs before and after the ECB passes, AVX-512 or portable C.
// Plus host-cache hints the cache model uses (prefetch, streaming copy). Every x86 intrinsic is
// behind `#if defined(__x86_64__)`; other architectures build the portable paths.
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
/// 1 when this CPU runs the VAES kernels below (x86-64 with AES-NI, VAES and AVX-512F).
int hp_xts_vaes_available(void);
/// Expands an AES key (16 or 32 bytes) into `enc` (and, unless NULL, the equivalent-inverse
/// decryption schedule `dec`): (rounds + 1) round keys of 64 bytes each (the 16-byte round key
/// four times), 64-byte aligned, at most 15 * 64 bytes. Returns the rounds (10 or 14), 0 for a bad
/// length. The caller owns (and cleanses) both schedules.
int hp_xts_vaes_expand(const void *key, size_t key_bytes, void *enc, void *dec);
/// AES-ECB encryption in place of `n` 16-byte blocks with schedule `rk` (tweak encryption).
void hp_xts_vaes_ecb_encrypt(const void *rk, int rounds, void *blocks, size_t n);
/// The encrypted tweaks E_K2(pa + 64 i) of `lines` consecutive lines (16 bytes each) into `out`.
void hp_xts_vaes_page_tweaks(const void *rk, int rounds, uint64_t pa, void *out, size_t lines);
/// AES-XTS of `lines` 64-byte data units: line i uses encrypted tweak tweaks[16 i ..] and the data
/// schedule `rk` (the encryption schedule to encrypt, the decryption schedule to decrypt);
/// src and dst may be the same buffer.
void hp_xts_vaes_lines(const void *rk, int rounds, int encrypt, const void *tweaks, size_t lines,
                       const void *src, void *dst);

/// Software prefetch of [p, p + bytes) into the host cache (write intent when `write`): the model's
/// cache walks 64 consecutive sets per page, whose tags the host prefetchers do not bring in fast enough.
void hp_prefetch(const void *p, size_t bytes, int write);
/// Copies `bytes` to `dst` with non-temporal stores when both are multiples of 64 (AVX-512), else
/// memcpy: fills a table entry without reading its old line into the host cache first.
void hp_stream_copy(void *dst, const void *src, size_t bytes);
/// Software prefetch (write intent) of the host cache line holding `p`; inlined into Swift.
static inline void hp_prefetchw_line(const void *p) { __builtin_prefetch(p, 1, 3); }
#endif
