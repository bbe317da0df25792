// CHostProbe: host measurements for `keymm calibrate`. See include/CHostProbe.h.
#define _GNU_SOURCE
#include "CHostProbe.h"
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
#if defined(__x86_64__)
#include <cpuid.h>
#include <x86intrin.h>
#endif

// Timing uses the calling thread's CPU time (user + system): on a shared, busy host, time spent
// descheduled does not count, as with `openssl speed`. The TSC calibration uses CLOCK_MONOTONIC.
static double now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static double mono_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static void *map_buffer(size_t bytes) {
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

#if defined(__x86_64__)
uint64_t hp_rdtsc(void) { return __rdtsc(); }

double hp_tsc_hz(int ms) {
    // Best of several short windows: a window interrupted by a context switch still measures the
    // TSC against wall time correctly; short windows bound the error of the endpoints.
    double best = 0;
    for (int r = 0; r < 5; r++) {
        double t0 = mono_ns();
        uint64_t c0 = __rdtsc();
        double t;
        do { t = mono_ns(); } while (t - t0 < (double)ms * 1e6 / 5);
        uint64_t c1 = __rdtsc();
        double hz = (double)(c1 - c0) / ((t - t0) * 1e-9);
        if (r == 0 || hz > best) best = hz;
    }
    return best;
}

int hp_has_clflushopt(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
    return (b >> 23) & 1;
}


__attribute__((target("clflushopt")))
static void flush_opt(volatile char *p, size_t lines) {
    _mm_mfence();
    for (size_t i = 0; i < lines; i++) _mm_clflushopt((void *)(p + i * 64));
    _mm_mfence();
}

static void flush_plain(volatile char *p, size_t lines) {
    _mm_mfence();
    for (size_t i = 0; i < lines; i++) _mm_clflush((void *)(p + i * 64));
    _mm_mfence();
}

double hp_clflush_ns(size_t lines, int opt, int dirty, int reps) {
    if (opt && !hp_has_clflushopt()) return -1;
    size_t bytes = lines * 64;
    volatile char *p = map_buffer(bytes);
    if (!p) return -1;
    double best = 1e300;
    for (int r = 0; r < reps; r++) {
        for (size_t i = 0; i < lines; i++) {
            if (dirty) p[i * 64] = (char)(r + i); else (void)p[i * 64];
        }
        _mm_mfence();
        double t0 = now_ns();
        if (opt) flush_opt(p, lines); else flush_plain(p, lines);
        double t = (now_ns() - t0) / (double)lines;
        if (t < best) best = t;
    }
    munmap((void *)p, bytes);
    return best;
}

#else
// No TSC: a nanosecond counter, and no cache-line flush probes.
uint64_t hp_rdtsc(void) { return (uint64_t)mono_ns(); }
double hp_tsc_hz(int ms) { (void)ms; return 1e9; }
int hp_has_clflushopt(void) { return 0; }
double hp_clflush_ns(size_t lines, int opt, int dirty, int reps) { (void)lines; (void)opt; (void)dirty; (void)reps; return -1; }
#endif

double hp_zero_page_ns(size_t buffer_bytes, int reps) {
    char *p = map_buffer(buffer_bytes);
    if (!p) return -1;
    size_t pages = buffer_bytes / 4096;
    double best = 1e300;
    for (int r = 0; r < reps; r++) {
        double t0 = now_ns();
        for (size_t i = 0; i < pages; i++) memset(p + i * 4096, 0, 4096);
        __asm__ volatile("" ::: "memory");
        double t = (now_ns() - t0) / (double)pages;
        if (t < best) best = t;
    }
    munmap(p, buffer_bytes);
    return best;
}

double hp_copy_page_ns(size_t buffer_bytes, int reps) {
    char *a = map_buffer(buffer_bytes), *b = map_buffer(buffer_bytes);
    if (!a || !b) return -1;
    memset(a, 1, buffer_bytes);
    size_t pages = buffer_bytes / 4096;
    double best = 1e300;
    for (int r = 0; r < reps; r++) {
        double t0 = now_ns();
        for (size_t i = 0; i < pages; i++) memcpy(b + i * 4096, a + i * 4096, 4096);
        __asm__ volatile("" ::: "memory");
        double t = (now_ns() - t0) / (double)pages;
        if (t < best) best = t;
    }
    munmap(a, buffer_bytes);
    munmap(b, buffer_bytes);
    return best;
}

double hp_load_latency_ns(size_t buffer_bytes, size_t loads) {
    size_t n = buffer_bytes / 64;
    if (n < 2) return -1;
    char *p = map_buffer(buffer_bytes);
    size_t *perm = malloc(n * sizeof(size_t));
    if (!p || !perm) { if (p) munmap(p, buffer_bytes); free(perm); return -1; }
    // A random cyclic permutation of the lines (Sattolo), with a fixed seed.
    for (size_t i = 0; i < n; i++) perm[i] = i;
    uint64_t s = 0x9E3779B97F4A7C15ull;
    for (size_t i = n - 1; i > 0; i--) {
        s ^= s << 13; s ^= s >> 7; s ^= s << 17;
        size_t j = (size_t)(s % i);
        size_t t = perm[i]; perm[i] = perm[j]; perm[j] = t;
    }
    for (size_t i = 0; i < n; i++) *(void **)(p + perm[i] * 64) = p + perm[(i + 1) % n] * 64;
    free(perm);
    void **q = (void **)p;
    for (size_t i = 0; i < n; i++) q = (void **)*q;  // warm up
    // Best of 10 slices: the slice least disturbed by other processes.
    double t = 1e300;
    size_t slice = loads / 10 + 1;
    for (int r = 0; r < 10; r++) {
        double t0 = now_ns();
        for (size_t i = 0; i < slice; i++) q = (void **)*q;
        double dt = (now_ns() - t0) / (double)slice;
        if (dt < t) t = dt;
    }
    __asm__ volatile("" :: "r"(q));
    munmap(p, buffer_bytes);
    return t;
}

double hp_syscall_ns(int calls, int reps) {
    double best = 1e300;
    for (int r = 0; r < reps; r++) {
        double t0 = now_ns();
        for (int i = 0; i < calls; i++) (void)getppid();
        double t = (now_ns() - t0) / (double)calls;
        if (t < best) best = t;
    }
    return best;
}

double hp_page_fault_ns(int pages, int reps) {
    size_t bytes = (size_t)pages * 4096;
    double best = 1e300;
    for (int r = 0; r < reps; r++) {
        char *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) return -1;
        madvise(p, bytes, MADV_NOHUGEPAGE);
        double t0 = now_ns();
        for (int i = 0; i < pages; i++) p[(size_t)i * 4096] = 1;
        double t = (now_ns() - t0) / (double)pages;
        munmap(p, bytes);
        if (t < best) best = t;
    }
    return best;
}

// (bench `faults`) mmap + first-touch write of every page + munmap, timed as a whole, per page.
double hp_mmap_touch_munmap_ns(int pages, int reps) {
    size_t bytes = (size_t)pages * 4096;
    double best = 1e300;
    for (int r = 0; r < reps; r++) {
        double t0 = now_ns();
        char *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) return -1;
        madvise(p, bytes, MADV_NOHUGEPAGE);
        for (int i = 0; i < pages; i++) p[(size_t)i * 4096] = 1;
        munmap(p, bytes);
        double t = (now_ns() - t0) / (double)pages;
        if (t < best) best = t;
    }
    return best;
}
