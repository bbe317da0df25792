/* threadmaps: four threads in one address space map, protect and unmap each other's memory.
 * Each worker maps 1 MiB and fills it; worker 1 makes a page of the main thread's mapping
 * read-only; worker 3 unmaps worker 2's buffer (a sibling's mapping); the main thread unmaps
 * what is left. Captured for the KeyMM trace corpus (traces/README.md, traces/capture.sh). */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#define NWORKERS 4
#define BUF (1L << 20)

static pthread_barrier_t barrier;
static char *shared;
static char *bufs[NWORKERS];

static void *worker(void *arg)
{
    long i = (long)arg;
    char *p = mmap(NULL, BUF, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    memset(p, (int)i + 1, BUF);
    bufs[i] = p;
    shared[i * 4096] = (char)i;
    pthread_barrier_wait(&barrier);            /* every buffer exists */
    if (i == 1 && mprotect(shared + 3 * 4096, 4096, PROT_READ) != 0)
        perror("mprotect");
    if (i == 3 && munmap(bufs[2], BUF) == 0)
        bufs[2] = NULL;
    pthread_barrier_wait(&barrier);
    return NULL;
}

int main(void)
{
    pthread_t t[NWORKERS];
    long sum = 0;
    shared = mmap(NULL, 4 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (shared == MAP_FAILED)
        return 1;
    pthread_barrier_init(&barrier, NULL, NWORKERS);
    for (long i = 0; i < NWORKERS; i++)
        pthread_create(&t[i], NULL, worker, (void *)i);
    for (int i = 0; i < NWORKERS; i++)
        pthread_join(t[i], NULL);
    for (int i = 0; i < NWORKERS; i++) {
        if (bufs[i]) {
            sum += bufs[i][BUF - 1];
            munmap(bufs[i], BUF);
        }
    }
    sum += shared[3 * 4096];
    munmap(shared, 4 * 4096);
    printf("%ld\n", sum);
    return 0;
}
