// CHostProbe: small host measurements for `keymm calibrate` and the benches' native reference
// rates (cache-line flushes, page zeroing and copying, memory latency, syscall entry, a real page
// fault) and the time-stamp counter. Every function returns nanoseconds per operation of the
// calling thread's CPU time (CLOCK_THREAD_CPUTIME_ID), best of `reps` runs, or a negative value
// when the operation is unavailable on this host. The model itself never calls these (its own C
// kernels are in CXTSKernels). x86-64 only where the instruction is (RDTSC, CPUID, CLFLUSH);
// elsewhere the TSC reads CLOCK_MONOTONIC in ns (hp_tsc_hz = 1e9) and the flush probes return -1.
#ifndef KEYMM_CHOSTPROBE_H
#define KEYMM_CHOSTPROBE_H
#include <stddef.h>
#include <stdint.h>

/// Read the time-stamp counter.
uint64_t hp_rdtsc(void);
/// TSC ticks per second, measured against CLOCK_MONOTONIC over `ms` milliseconds.
double hp_tsc_hz(int ms);
/// 1 when the CPU has CLFLUSHOPT (CPUID.7.0:EBX[23]).
int hp_has_clflushopt(void);
/// ns per line to flush `lines` lines of a buffer with CLFLUSH (opt = 0) or CLFLUSHOPT (opt = 1),
/// each line dirtied first when `dirty`; fenced like the kernel's clflush_cache_range.
double hp_clflush_ns(size_t lines, int opt, int dirty, int reps);
/// (All timings: thread CPU time, best of `reps`.)
/// ns to memset one 4 KiB page, cycling through a buffer of `buffer_bytes` (cache-cold when large).
double hp_zero_page_ns(size_t buffer_bytes, int reps);
/// ns to memcpy one 4 KiB page, cycling through two buffers of `buffer_bytes` each.
double hp_copy_page_ns(size_t buffer_bytes, int reps);
/// ns per dependent load in a random pointer chase over `buffer_bytes` (latency of that level).
double hp_load_latency_ns(size_t buffer_bytes, size_t loads);
/// ns per getppid() system call.
double hp_syscall_ns(int calls, int reps);
/// ns per first-touch write fault of an anonymous page (mmap, touch `pages` pages, munmap), including
/// the kernel's page allocation and zeroing.
double hp_page_fault_ns(int pages, int reps);
/// ns per page of a whole mmap + first-touch write of `pages` pages + munmap cycle (bench `faults`).
double hp_mmap_touch_munmap_ns(int pages, int reps);

#endif
