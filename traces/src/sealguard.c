/* sealguard: the memory features recent programs use (Linux 6.10+), with real results:
 *  - guard regions (MADV_GUARD_INSTALL / MADV_GUARD_REMOVE): a touch is SIGSEGV,
 *    MADV_POPULATE_READ over one is EFAULT, mlock ENOMEM;
 *  - mseal (syscall 462): a sealed range refuses mprotect, munmap, mremap, MAP_FIXED and
 *    discarding madvise with EPERM; a write to it (read-only) is SIGSEGV;
 *  - memfd_create + ftruncate: the file's size decides where SIGBUS starts;
 *  - an MREMAP_FIXED move of a range made of two VMAs with a hole (Linux 6.17+).
 * The faults are the program's own: a handler records them and jumps back. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102
#define MADV_GUARD_REMOVE 103
#endif
#ifndef SYS_mseal
#define SYS_mseal 462
#endif

#define PG 4096UL

static sigjmp_buf back;
static volatile int faults;

static void on_fault(int sig, siginfo_t *si, void *uc)
{
	(void)sig; (void)si; (void)uc;
	faults++;
	siglongjmp(back, 1);
}

/* Reads (or writes) one byte; returns 0, or 1 if the access faulted. */
static int probe(volatile char *p, int write)
{
	if (sigsetjmp(back, 1))
		return 1;
	if (write)
		*p = 1;
	else
		(void)*p;
	return 0;
}

int main(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_sigaction = on_fault;
	sa.sa_flags = SA_SIGINFO | SA_NODEFER;
	sigaction(SIGSEGV, &sa, NULL);
	sigaction(SIGBUS, &sa, NULL);

	/* Guard regions in the middle of an anonymous mapping. */
	char *p = mmap(NULL, 16 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return 1;
	memset(p, 'a', 16 * PG);
	int r1 = madvise(p + 4 * PG, 2 * PG, MADV_GUARD_INSTALL);
	int g1 = probe(p + 4 * PG, 0);
	int r2 = madvise(p, 16 * PG, MADV_POPULATE_READ);
	int r3 = mlock(p, 16 * PG);
	munlock(p, 16 * PG);
	int r4 = madvise(p + 4 * PG, PG, MADV_GUARD_REMOVE);
	int g2 = probe(p + 4 * PG, 0) + probe(p + 5 * PG, 1);

	/* Seal the upper half read-only. */
	mprotect(p + 8 * PG, 8 * PG, PROT_READ);
	long s1 = syscall(SYS_mseal, p + 8 * PG, 8 * PG, 0);
	int e1 = mprotect(p + 8 * PG, PG, PROT_READ | PROT_WRITE);
	int e2 = munmap(p + 12 * PG, 4 * PG);
	void *e3 = mremap(p + 8 * PG, 8 * PG, 16 * PG, MREMAP_MAYMOVE);
	void *e4 = mmap(p + 8 * PG, PG, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
	int e5 = madvise(p + 8 * PG, PG, MADV_DONTNEED);
	int g3 = probe(p + 9 * PG, 1);

	/* A memfd: its size comes from ftruncate; the mapping is larger than the file. */
	int fd = memfd_create("keymm-sealguard", MFD_CLOEXEC);
	ftruncate(fd, 3 * PG);
	char *m = mmap(NULL, 4 * PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	memcpy(m, "memfd", 5);
	int g4 = probe(m + 3 * PG, 0);
	ftruncate(fd, 4 * PG);
	int g5 = probe(m + 3 * PG, 1);
	munmap(m, 4 * PG);
	close(fd);

	/* Move two VMAs and the hole between them in one MREMAP_FIXED call. */
	char *a = mmap(NULL, 6 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	char *dst = mmap(NULL, 6 * PG, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	munmap(a + 2 * PG, 2 * PG);
	a[0] = 'x';
	a[4 * PG] = 'y';
	char *moved = mremap(a, 6 * PG, 6 * PG, MREMAP_MAYMOVE | MREMAP_FIXED, dst);
	int g6 = moved == dst ? probe(moved + 2 * PG, 0) : -1;
	munmap(moved, 6 * PG);

	/* The sealed half stays until exit. */
	munmap(p, 8 * PG);
	printf("guard %d/%d/%d/%d faults %d+%d, mseal %ld: %d %d %p %p %d fault %d, memfd faults %d then %d, move %s fault %d; %d faults\n",
	       r1, r2, r3, r4, g1, g2, s1, e1, e2, e3, e4, e5, g3, g4, g5, moved == dst ? "ok" : "failed", g6, faults);
	return 0;
}
