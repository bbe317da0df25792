/* arena.c: mmap/mremap/mprotect/madvise/munmap around a bump allocator. */
#define _GNU_SOURCE
#include "arena.h"
#include <sys/mman.h>
#include <unistd.h>

static size_t page_size(void) { return (size_t)sysconf(_SC_PAGESIZE); }

int arena_init(struct arena *a, size_t size) {
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return -1;
    a->base = p;
    a->size = size;
    a->used = 0;
    return 0;
}

void *arena_alloc(struct arena *a, size_t n) {
    n = (n + 15) & ~(size_t)15;
    if (a->used + n > a->size && arena_grow(a, 2 * (a->used + n)) != 0) return NULL;
    void *p = a->base + a->used;
    a->used += n;
    return p;
}

int arena_grow(struct arena *a, size_t new_size) {
    size_t ps = page_size();
    new_size = (new_size + ps - 1) & ~(ps - 1);
    void *p = mremap(a->base, a->size, new_size, MREMAP_MAYMOVE);
    if (p == MAP_FAILED) return -1;
    a->base = p;
    a->size = new_size;
    return 0;
}

int arena_seal(struct arena *a) {
    size_t ps = page_size();
    size_t sealed = a->used & ~(ps - 1);
    if (sealed == 0) return 0;
    return mprotect(a->base, sealed, PROT_READ);
}

void arena_release_tail(struct arena *a) {
    size_t ps = page_size();
    size_t start = (a->used + ps - 1) & ~(ps - 1);
    if (start < a->size) madvise(a->base + start, a->size - start, MADV_DONTNEED);
}

void arena_destroy(struct arena *a) {
    munmap(a->base, a->size);
    a->base = NULL;
    a->size = a->used = 0;
}
