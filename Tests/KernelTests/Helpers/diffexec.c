/*
 * diffexec: runs KeyMM's differential test programs on the real kernel.
 *
 * Usage: diffexec PROGRAMS BASE_HEX SIZE_HEX FILE
 *   PROGRAMS  text file: "P id" line, op lines (numbers only), "E" line, repeated
 *   BASE/SIZE the test region (2 MiB aligned, must be free)
 *   FILE      a regular file the programs may map (fd 1 = O_RDWR, fd 2 = O_RDONLY)
 *
 * Each program runs in a fresh child (fork of the pristine helper). Every op prints one
 * result line: a region-relative address "A<hex>", "OUT" for an address outside the region,
 * "-<errno>", or a number. Then "M" and, for every VMA intersecting the region, its
 * /proc/self/smaps header line and its VmFlags line; then "E".
 *
 * Op lines (all numbers decimal, offsets relative to BASE, may be negative):
 *   0 addrmode off len prot flags fdsel pgoff    mmap (addrmode 0: NULL, 1: BASE+off)
 *   1 off len                                    munmap
 *   2 off len prot                               mprotect
 *   3 off len prot pkey                          pkey_mprotect
 *   4 off oldlen newlen flags newoff             mremap
 *   5 off len advice                             madvise
 *   6 off len                                    mlock
 *   7 off len flags                              mlock2
 *   8 off len                                    munlock
 *   9 flags                                      mlockall
 *   10                                           munlockall
 *   11 flags initval                             pkey_alloc
 *   12 pkey                                      pkey_free
 *   13                                           fork: the child exits at once
 *   14 off npages write                          touch pages; prints pages done
 *   15                                           fork and continue in the child; when the
 *                                                child is done the parent prints "PM" and its
 *                                                region too
 *   16 off len flags                             mseal (syscall 462)
 *   17 fdsel size                                ftruncate
 *   18                                           memfd_create("keymm", 0): fdsel 4 from now on
 *   19 count                                     fork: the child runs the next `count` ops,
 *                                                prints "CM", its region and "CE", and exits;
 *                                                the parent waits and goes on after them
 *
 * Every program starts by setting the test file back to its original size (ftruncate).
 *
 * No allocation after start-up: everything lives in static buffers (mlockall(MCL_FUTURE)
 * and fork must not see malloc arenas appear).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define MARGIN (64UL << 12)

struct op { int code; long a[7]; };
struct prog { long id; int first, count; };
static struct op *ops;
static int nops, maxops;
static struct prog *progs;
static int nprogs, maxprogs;

static unsigned long BASE, SIZE;
static int fd_rw = -1, fd_ro = -1, fd_memfd = -1;
static off_t FILESIZE;

static char outbuf[1 << 16];
static size_t outlen;
static char smaps[4 << 20];

static void flush(void)
{
	size_t off = 0;
	while (off < outlen) {
		ssize_t n = write(1, outbuf + off, outlen - off);
		if (n <= 0)
			break;
		off += (size_t)n;
	}
	outlen = 0;
}

static void put(const char *s, size_t n)
{
	if (outlen + n > sizeof(outbuf))
		flush();
	memcpy(outbuf + outlen, s, n);
	outlen += n;
}

static void puts_(const char *s) { put(s, strlen(s)); }

static void putnum(long v)
{
	char b[32];
	int i = 31;
	unsigned long u = v < 0 ? -(unsigned long)v : (unsigned long)v;
	b[i] = 0;
	do { b[--i] = '0' + u % 10; u /= 10; } while (u);
	if (v < 0)
		b[--i] = '-';
	puts_(b + i);
}

static void puthex(unsigned long v)
{
	char b[32];
	int i = 31;
	b[i] = 0;
	do { b[--i] = "0123456789abcdef"[v & 15]; v >>= 4; } while (v);
	puts_(b + i);
}

static long sys(long r) { return r == -1 ? -errno : r; }

static void put_addr_result(long r)
{
	if (r < 0 && r > -4096) {
		putnum(r);
	} else if ((unsigned long)r >= BASE && (unsigned long)r < BASE + SIZE) {
		puts_("A");
		puthex((unsigned long)r - BASE);
	} else {
		puts_("OUT");
	}
	puts_("\n");
}

static sigjmp_buf jb;
static void on_fault(int sig) { (void)sig; siglongjmp(jb, 1); }

static long touch(unsigned long addr, long n, int write_)
{
	volatile long i = 0;
	if (sigsetjmp(jb, 1))
		return i;
	for (; i < n; i++) {
		volatile char *p = (volatile char *)(addr + (unsigned long)i * 4096);
		if (write_)
			*p = *p;	/* read, then store the byte back (as the model's mem_touch) */
		else
			(void)*p;
	}
	return n;
}

static int fdsel(long s)
{
	switch (s) {
	case 1: return fd_rw;
	case 2: return fd_ro;
	case 3: return 999;
	case 4: return fd_memfd;
	default: return -1;
	}
}

static unsigned long hexval(const char **pp)
{
	const char *p = *pp;
	unsigned long v = 0;
	for (;; p++) {
		char c = *p;
		if (c >= '0' && c <= '9') v = v * 16 + (unsigned long)(c - '0');
		else if (c >= 'a' && c <= 'f') v = v * 16 + (unsigned long)(c - 'a' + 10);
		else break;
	}
	*pp = p;
	return v;
}

/* Print the region's VMAs: smaps header + VmFlags line (+ Rss/Anonymous when asked). */
static void dump_region(void)
{
	size_t len = 0;
	int fd = open("/proc/self/smaps", O_RDONLY);
	if (fd < 0) { puts_("NOSMAPS\n"); return; }
	for (;;) {
		ssize_t n = read(fd, smaps + len, sizeof(smaps) - 1 - len);
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	close(fd);
	smaps[len] = 0;
	const char *p = smaps;
	int in = 0;
	while (*p) {
		const char *e = strchr(p, '\n');
		size_t ll = e ? (size_t)(e - p) : strlen(p);
		const char *q = p;
		int header = 0;
		unsigned long s = 0, t = 0;
		if ((*q >= '0' && *q <= '9') || (*q >= 'a' && *q <= 'f')) {
			s = hexval(&q);
			if (*q == '-') {
				q++;
				t = hexval(&q);
				header = (*q == ' ');
			}
		}
		if (header) {
			in = s < BASE + SIZE && t > BASE;
			if (in) { put(p, ll); puts_("\n"); }
		} else if (in && (strncmp(p, "VmFlags:", 8) == 0)) {
			put(p, ll);
			puts_("\n");
		}
		if (!e)
			break;
		p = e + 1;
	}
}

static void run_ops(int first, int count);

static void run_program(int pi)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_fault;
	sa.sa_flags = SA_NODEFER;
	sigaction(SIGSEGV, &sa, 0);
	sigaction(SIGBUS, &sa, 0);

	void *r = mmap((void *)(BASE - MARGIN), SIZE + 2 * MARGIN, PROT_NONE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
	if (r != (void *)(BASE - MARGIN)) {
		puts_("BUSY\n");
		return;
	}
	munmap(r, SIZE + 2 * MARGIN);
	if (ftruncate(fd_rw, FILESIZE) != 0)
		puts_("TRUNC\n");

	run_ops(progs[pi].first, progs[pi].count);
	puts_("M\n");
	dump_region();
}

/* Runs ops [first, first + count); a parent of a fork-and-continue prints its region when
 * its child is done. */
static void run_ops(int first, int count)
{
	for (int k = 0; k < count; k++) {
		struct op *o = &ops[first + k];
		long *a = o->a;
		long ret;
		pid_t pid;
		int st;
		switch (o->code) {
		case 0:
			ret = (long)mmap(a[0] ? (void *)(BASE + a[1]) : 0, (size_t)a[2], (int)a[3], (int)a[4],
					 fdsel(a[5]), (off_t)a[6]);
			put_addr_result(ret == (long)MAP_FAILED ? -errno : ret);
			continue;
		case 1: ret = sys(syscall(SYS_munmap, BASE + a[0], a[1])); break;
		case 2: ret = sys(syscall(SYS_mprotect, BASE + a[0], a[1], a[2])); break;
		case 3: ret = sys(syscall(SYS_pkey_mprotect, BASE + a[0], a[1], a[2], a[3])); break;
		case 4:
			ret = sys(syscall(SYS_mremap, BASE + a[0], a[1], a[2], a[3], BASE + a[4]));
			put_addr_result(ret);
			continue;
		case 5: ret = sys(syscall(SYS_madvise, BASE + a[0], a[1], a[2])); break;
		case 6: ret = sys(syscall(SYS_mlock, BASE + a[0], a[1])); break;
		case 7: ret = sys(syscall(SYS_mlock2, BASE + a[0], a[1], a[2])); break;
		case 8: ret = sys(syscall(SYS_munlock, BASE + a[0], a[1])); break;
		case 9: ret = sys(syscall(SYS_mlockall, a[0])); break;
		case 10: ret = sys(syscall(SYS_munlockall)); break;
		case 11: ret = sys(syscall(SYS_pkey_alloc, a[0], a[1])); break;
		case 12: ret = sys(syscall(SYS_pkey_free, a[0])); break;
		case 13:
			flush();
			pid = fork();
			if (pid == 0)
				_exit(0);
			ret = pid < 0 ? -errno : 0;
			if (pid > 0)
				waitpid(pid, &st, 0);
			break;
		case 14: ret = touch(BASE + a[0], a[1], (int)a[2]); break;
		case 15:
			puts_("0\n");
			flush();
			pid = fork();
			if (pid > 0) {
				waitpid(pid, &st, 0);
				puts_("PM\n");
				dump_region();
				flush();
				_exit(0);
			}
			continue;
		case 16: ret = sys(syscall(462, BASE + a[0], a[1], a[2])); break;
		case 17: ret = sys(syscall(SYS_ftruncate, fdsel(a[0]), a[1])); break;
		case 18:
			ret = sys(syscall(SYS_memfd_create, "keymm", 0));
			if (ret >= 0) {
				fd_memfd = (int)ret;
				ret = 0;
			}
			break;
		case 19: {
			int n = (int)a[0];
			if (n > count - k - 1)
				n = count - k - 1;
			puts_("0\n");
			flush();
			pid = fork();
			if (pid == 0) {
				run_ops(first + k + 1, n);
				puts_("CM\n");
				dump_region();
				puts_("CE\n");
				flush();
				_exit(0);
			}
			if (pid > 0)
				waitpid(pid, &st, 0);
			k += n;
			continue;
		}
		default: ret = -9999; break;
		}
		putnum(ret);
		puts_("\n");
	}
}

static long parse_long(const char **pp)
{
	const char *p = *pp;
	while (*p == ' ' || *p == '\t') p++;
	int neg = 0;
	if (*p == '-') { neg = 1; p++; }
	unsigned long v = 0;
	while (*p >= '0' && *p <= '9') v = v * 10 + (unsigned long)(*p++ - '0');
	*pp = p;
	return neg ? -(long)v : (long)v;
}

int main(int argc, char **argv)
{
	if (argc < 5)
		return 2;
	BASE = strtoul(argv[2], 0, 16);
	SIZE = strtoul(argv[3], 0, 16);
	fd_rw = open(argv[4], O_RDWR);
	fd_ro = open(argv[4], O_RDONLY);
	if (fd_rw < 0 || fd_ro < 0)
		return 3;
	FILESIZE = lseek(fd_rw, 0, SEEK_END);

	/* The program text and the parsed ops live in mappings sized to the input; the text
	 * is unmapped before any program runs. */
	int fd = open(argv[1], O_RDONLY);
	if (fd < 0)
		return 4;
	off_t fsize = lseek(fd, 0, SEEK_END);
	if (fsize <= 0)
		return 4;
	char *text = mmap(0, (size_t)fsize + 1, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (text == MAP_FAILED)
		return 4;
	size_t len = 0;
	while (len < (size_t)fsize) {
		ssize_t n = pread(fd, text + len, (size_t)fsize - len, (off_t)len);
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	close(fd);
	text[len] = 0;
	for (size_t i = 0; i < len; i++) {
		if (text[i] == 'P') maxprogs++;
		if (text[i] == '\n') maxops++;
	}
	progs = mmap(0, sizeof(struct prog) * (size_t)(maxprogs + 1), PROT_READ | PROT_WRITE,
		     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ops = mmap(0, sizeof(struct op) * (size_t)(maxops + 1), PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (progs == MAP_FAILED || ops == MAP_FAILED)
		return 5;

	const char *p = text;
	while (*p) {
		const char *e = strchr(p, '\n');
		if (*p == 'P') {
			const char *q = p + 1;
			if (nprogs >= maxprogs)
				return 5;
			progs[nprogs].id = parse_long(&q);
			progs[nprogs].first = nops;
			progs[nprogs].count = 0;
			nprogs++;
		} else if (*p >= '0' && *p <= '9') {
			const char *q = p;
			if (nops > maxops || nprogs == 0)
				return 5;
			ops[nops].code = (int)parse_long(&q);
			for (int i = 0; i < 7; i++)
				ops[nops].a[i] = parse_long(&q);
			nops++;
			progs[nprogs - 1].count++;
		}
		if (!e)
			break;
		p = e + 1;
	}
	munmap(text, (size_t)fsize + 1);

	for (int i = 0; i < nprogs; i++) {
		puts_("P ");
		putnum(progs[i].id);
		puts_("\n");
		flush();
		pid_t pid = fork();
		if (pid == 0) {
			run_program(i);
			flush();
			_exit(0);
		}
		int st;
		waitpid(pid, &st, 0);
		/* After every process of the program (fork-and-continue parents print last). */
		puts_("E\n");
		flush();
	}
	flush();
	return 0;
}
