// CHostProbe: small host measurements for `keymm calibrate` (cache-line flushes, page zeroing
// and copying, memory latency, syscall entry, a real page fault) and the TSC. Every function
// returns nanoseconds per operation of the calling thread's CPU time (CLOCK_THREAD_CPUTIME_ID), best of `reps`
// runs, or a negative value when the operation is unavailable on this host.
#ifndef KEYMM_CHOSTPROBE_H
#define KEYMM_CHOSTPROBE_H
#include <stddef.h>
#include <stdint.h>
#include "CXTSKernels.h"

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
/// Faults in (write intent) every host page of [p, p + bytes) without changing its contents:
/// MADV_POPULATE_WRITE, or a read-and-store-back touch per page on kernels without it. Bench
/// set-up uses it so a measurement sees the simulator's steady state, not the host's first touch.
void hp_populate_write(void *p, size_t bytes);

#endif
