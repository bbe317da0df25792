/*
 * credexec: runs KeyMM's credential test programs on the real kernel.
 *
 * Usage: credexec < PROGRAMS    (must start as root)
 * Input: "P id" line, op lines (numbers), "E"; repeated. Each program runs in a fresh child
 * (fork of the helper, so it starts with the helper's credentials). The helper first prints
 * "I" and its starting state (the line below); each op prints its result ("-errno" or a
 * number); after the ops the child prints its final state:
 *   S ruid euid suid fsuid rgid egid sgid fsgid ngroups g... eff perm inh keepcaps
 * (capabilities as hex 64-bit masks).
 *
 * Ops: 0 uid setuid | 1 gid setgid | 2 r e setreuid | 3 r e setregid | 4 r e s setresuid |
 *      5 r e s setresgid | 6 uid setfsuid | 7 gid setfsgid | 8 n g1 g2 setgroups |
 *      9 eff perm inh capset (v3, pid 0) | 10 v prctl(PR_SET_KEEPCAPS, v) | 11 execve of self
 *      (the child re-executes the helper with "--state", which prints S and exits)
 * Ids are decimal; -1 means (uid_t)-1.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <grp.h>
#include <linux/capability.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *self;

static void state(void)
{
	uid_t r, e, s; gid_t gr, ge, gs;
	getresuid(&r, &e, &s);
	getresgid(&gr, &ge, &gs);
	long fsu = syscall(SYS_setfsuid, -1), fsg = syscall(SYS_setfsgid, -1);
	gid_t g[64]; int n = getgroups(64, g);
	struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct d[2];
	syscall(SYS_capget, &h, d);
	unsigned long long eff = d[0].effective | (unsigned long long)d[1].effective << 32;
	unsigned long long perm = d[0].permitted | (unsigned long long)d[1].permitted << 32;
	unsigned long long inh = d[0].inheritable | (unsigned long long)d[1].inheritable << 32;
	printf("S %u %u %u %ld %u %u %u %ld %d", r, e, s, fsu, gr, ge, gs, fsg, n);
	for (int i = 0; i < n; i++) printf(" %u", g[i]);
	printf(" %llx %llx %llx %d\n", eff, perm, inh, prctl(PR_GET_KEEPCAPS, 0, 0, 0, 0));
	fflush(stdout);
}

static unsigned long long bounding(void)
{
	unsigned long long b = 0;
	for (int c = 0; c < 64; c++)
		if (prctl(PR_CAPBSET_READ, c, 0, 0, 0) == 1) b |= 1ULL << c;
	return b;
}

static long r(long v) { return v < 0 ? -errno : v; }

static void run(long *op, int nops)
{
	for (int k = 0; k < nops; k++) {
		long *a = op + k * 8, ret;
		switch (a[0]) {
		case 0: ret = r(setuid(a[1])); break;
		case 1: ret = r(setgid(a[1])); break;
		case 2: ret = r(setreuid(a[1], a[2])); break;
		case 3: ret = r(setregid(a[1], a[2])); break;
		case 4: ret = r(setresuid(a[1], a[2], a[3])); break;
		case 5: ret = r(setresgid(a[1], a[2], a[3])); break;
		case 6: ret = syscall(SYS_setfsuid, a[1]); break;
		case 7: ret = syscall(SYS_setfsgid, a[1]); break;
		case 8: { gid_t g[2] = { a[2], a[3] }; ret = r(setgroups(a[1], g)); break; }
		case 9: {
			struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
			struct __user_cap_data_struct d[2];
			d[0].effective = a[1]; d[1].effective = (unsigned long)a[1] >> 32;
			d[0].permitted = a[2]; d[1].permitted = (unsigned long)a[2] >> 32;
			d[0].inheritable = a[3]; d[1].inheritable = (unsigned long)a[3] >> 32;
			ret = r(syscall(SYS_capset, &h, d));
			break;
		}
		case 10: ret = r(prctl(PR_SET_KEEPCAPS, a[1], 0, 0, 0)); break;
		case 11:
			printf("0\n");
			fflush(stdout);
			execl(self, self, "--state", (char *)0);
			_exit(1);
		default: ret = -9999;
		}
		printf("%ld\n", ret);
	}
	state();
}

int main(int argc, char **argv)
{
	self = argv[0];
	if (argc > 1 && !strcmp(argv[1], "--state")) { state(); return 0; }
	printf("I %llx ", bounding());
	state();
	static long ops[64 * 8];
	char line[512];
	long id = -1; int n = 0;
	while (fgets(line, sizeof line, stdin)) {
		if (line[0] == 'P') { id = atol(line + 1); n = 0; continue; }
		if (line[0] == 'E') {
			printf("P %ld\n", id);
			fflush(stdout);
			pid_t c = fork();
			if (c == 0) { run(ops, n); fflush(stdout); _exit(0); }
			int st; waitpid(c, &st, 0);
			printf("E\n");
			fflush(stdout);
			continue;
		}
		if (n < 64) {
			char *p = line;
			for (int i = 0; i < 8; i++) ops[n * 8 + i] = strtol(p, &p, 0);
			n++;
		}
	}
	return 0;
}
