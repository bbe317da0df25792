/* pkeys-nopku: what a program using memory protection keys sees on a CPU without PKU.
 * Allocates keys as glibc's pkey_alloc() wrapper does, tries to tag a page with one,
 * frees it. On a machine without PKU the kernel answers EINVAL, then ENOSPC. */
#define _GNU_SOURCE
#include <stdio.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(void)
{
	char *p = mmap(NULL, 2 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return 1;
	long k1 = syscall(SYS_pkey_alloc, 0, 0);
	long k2 = syscall(SYS_pkey_alloc, 0, PKEY_DISABLE_WRITE);
	long bad = syscall(SYS_pkey_alloc, 1, 0);
	long m = syscall(SYS_pkey_mprotect, p, 4096, PROT_READ, k1 >= 0 ? k1 : 1);
	long m0 = syscall(SYS_pkey_mprotect, p, 4096, PROT_READ, -1);
	long f = syscall(SYS_pkey_free, k1 >= 0 ? k1 : 1);
	printf("pkey_alloc %ld %ld (flags 1: %ld), pkey_mprotect %ld / %ld, pkey_free %ld\n", k1, k2, bad, m, m0, f);
	munmap(p, 2 * 4096);
	return 0;
}
