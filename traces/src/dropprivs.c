/* dropprivs: a root process that shares one key with a group and keeps another to itself,
 * then forks a worker that drops its privileges (groups, gid, uid) the way daemons do.
 * The worker can use the shared key through the group permission bits, cannot even see the
 * private one, cannot become root again, and keeps its capabilities (permitted) only because it asked
 * (PR_SET_KEEPCAPS) and raised one again with capset. Uses the `user` key type (this kernel
 * has no mktme type); needs root. */
#define _GNU_SOURCE
#include <grp.h>
#include <linux/capability.h>
#include <linux/keyctl.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

/* Key permission bits (keyutils' <keyutils.h>; not in the kernel's UAPI headers). */
#define KEY_POS_ALL 0x3f000000
#define KEY_USR_ALL 0x003f0000
#define KEY_GRP_VIEW 0x00000100
#define KEY_GRP_READ 0x00000200

static long add_key(const char *type, const char *desc, const char *data, long ring)
{
	return syscall(SYS_add_key, type, desc, data, strlen(data), ring);
}

static long keyctl(long op, long a, long b, long c)
{
	return syscall(SYS_keyctl, op, a, b, c, 0);
}

static int describe(long key)
{
	char buf[128];
	long n = keyctl(KEYCTL_DESCRIBE, key, (long)buf, sizeof buf);
	return n < 0 ? -1 : (int)n;
}

int main(void)
{
	long priv = add_key("user", "root-secret", "s3cr3t", KEY_SPEC_PROCESS_KEYRING);
	long team = add_key("user", "team-token", "t0k3n", KEY_SPEC_PROCESS_KEYRING);
	keyctl(KEYCTL_SETPERM, team, KEY_POS_ALL | KEY_USR_ALL | KEY_GRP_VIEW | KEY_GRP_READ, 0);
	keyctl(KEYCTL_CHOWN, team, -1, 1000);

	pid_t pid = fork();
	if (pid == 0) {
		prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0);
		setgroups(0, NULL);
		setresgid(1000, 1000, 1000);
		setresuid(1000, 1000, 1000);
		int a = describe(priv), b = describe(team);
		long own = add_key("user", "worker-note", "hello", KEY_SPEC_PROCESS_KEYRING);
		int c = describe(own);
		int back = setuid(0);
		long chown_back = keyctl(KEYCTL_CHOWN, own, 0, -1);
		struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
		struct __user_cap_data_struct d[2];
		syscall(SYS_capget, &h, d);
		d[0].effective = 1u << CAP_SYS_ADMIN;
		d[0].inheritable = 0;
		d[1].effective = d[1].inheritable = 0;
		long raised = syscall(SYS_capset, &h, d);
		d[0].effective = 1u << CAP_SETUID;
		d[0].permitted = 1u << CAP_SETUID;
		d[1].permitted = 0;
		long dropped = syscall(SYS_capset, &h, d);
		int again = setuid(0);
		printf("worker: private %d team %d own %d, setuid(0) %d, chown %ld, capset %ld/%ld, setuid(0) %d\n",
		       a, b, c, back, chown_back, raised, dropped, again);
		return 0;
	}
	int st;
	waitpid(pid, &st, 0);
	keyctl(KEYCTL_REVOKE, priv, 0, 0);
	printf("root: private %d after revoke\n", describe(priv));
	return 0;
}
