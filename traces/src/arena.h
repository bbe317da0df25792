/* arena: a tiny mmap-backed bump allocator (part of the KeyMM trace corpus project). */
#ifndef ARENA_H
#define ARENA_H
#include <stddef.h>

struct arena {
    unsigned char *base;
    size_t size;
    size_t used;
};

int arena_init(struct arena *a, size_t size);
void *arena_alloc(struct arena *a, size_t n);
int arena_grow(struct arena *a, size_t new_size);
int arena_seal(struct arena *a);
void arena_release_tail(struct arena *a);
void arena_destroy(struct arena *a);
#endif
