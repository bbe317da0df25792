/* main.c: fills an arena with samples, seals it, forks a child that reads it, prints stats. */
#include "arena.h"
#include "stats.h"
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv) {
    size_t count = argc > 1 ? (size_t)strtoul(argv[1], NULL, 10) : 100000;
    struct arena a;
    if (arena_init(&a, 64 * 1024) != 0) { perror("arena_init"); return 1; }
    for (size_t i = 0; i < count; i++) {
        double *x = arena_alloc(&a, sizeof *x);
        if (!x) { perror("arena_alloc"); return 1; }
        *x = (double)((i * 2654435761u) % 1000) / 10.0;
    }
    const double *samples = (const double *)a.base; /* mremap may have moved the arena */
    arena_seal(&a);
    arena_release_tail(&a);
    pid_t child = fork();
    if (child == 0) {
        struct stats s;
        stats_init(&s);
        for (size_t i = 0; i < count; i++) stats_add(&s, samples[i]);
        printf("child: n=%zu mean=%.3f sd=%.3f min=%.1f max=%.1f\n", s.n, s.mean, stats_stddev(&s), s.min, s.max);
        fflush(stdout);
        _exit(0);
    }
    int status = 0;
    waitpid(child, &status, 0);
    arena_destroy(&a);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}
