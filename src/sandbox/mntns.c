/* The daemon's own mount namespace.
 *
 * Every session mounts its disk (and, while it starts, its root) under
 * the data directory. In the host's mount namespace those mounts filled
 * the host's table (30 lines to 6,030 at 2,000 sessions), and each
 * sandbox's clone copied them all. bunkerd therefore enters a mount
 * namespace of its own at start, before any thread exists: a slave of the
 * host's (MS_REC | MS_SLAVE), so that what the host mounts still reaches
 * the daemon, and nothing the daemon mounts reaches the host.
 *
 * Session disks must outlive a crash of the daemon (core/lifecycle.c
 * recovers a session from the disk it finds), and a mount namespace lives
 * only while something holds it. The namespace is held by a bind mount of
 * its nsfs file on /run/bunker/<instance>/mnt, made in the host's
 * namespace; the next start finds it there and enters it again (setns).
 * /run/bunker is a private bind mount of itself: on a shared /run the bind
 * would propagate into the daemon's namespace, a slave of /run, and the
 * namespace would hold itself. A clean stop that leaves no disk removes the
 * bind and the instance's directory, and the namespace goes with the
 * daemon.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/magic.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sandbox/ns_int.h"
#include "util/cleanup.h"

#define RUN_BUNKER "/run/bunker"

/* The host's mount namespace, kept open from the enter to the release
 * (-1 when the process never entered one of its own), and the instance's
 * directory under /run/bunker. Written once, before any thread exists. */
static int host_ns_fd = -1;
static char instance_dir[300];

uint32_t sbx_instance_hash(const char *data_dir)
{
	uint32_t h = 2166136261u; /* FNV-1a */
	for (const char *c = data_dir; *c; c++)
		h = (h ^ (uint8_t)*c) * 16777619u;
	return h;
}

void sbx_instance_name(const char *data_dir, char *out, size_t len)
{
	if (strcmp(data_dir, "/var/lib/bunker") == 0) {
		snprintf(out, len, "bunker");
		return;
	}
	snprintf(out, len, "bunker-%08x", sbx_instance_hash(data_dir));
}

/* setns(CLONE_NEWNS) needs a process of one thread; unshare() would move
 * the calling thread alone and say nothing. */
static bool single_threaded(void)
{
	_cleanup_closedir_ DIR *d = opendir("/proc/self/task");
	int n = 0;
	struct dirent *de;
	while (d && (de = readdir(d)) != NULL)
		n += de->d_name[0] != '.';
	return n == 1;
}

static bool is_nsfs(int fd)
{
	struct statfs sf;
	return fstatfs(fd, &sf) == 0 && sf.f_type == NSFS_MAGIC;
}

/* A new namespace, slave of the current one, pinned on pin (a file in the
 * current namespace); the process stays in the new one. 1 when the kernel
 * takes the pin for a loop (see below): the process is back in the current
 * namespace and the new one is gone. */
static int ns_try_create_pinned(const char *pin, struct bk_err *err)
{
	if (unshare(CLONE_NEWNS) < 0)
		return bk_err_set(err, errno, "cannot create a mount namespace");
	if (mount(NULL, "/", NULL, MS_REC | MS_SLAVE, NULL) < 0)
		return bk_err_set(err, errno,
				  "cannot make the mount namespace a slave of the host's");
	_cleanup_close_ int own = open("/proc/self/ns/mnt", O_RDONLY | O_CLOEXEC);
	if (own < 0)
		return bk_err_set(err, errno, "cannot open '/proc/self/ns/mnt'");
	/* The bind is made from the host's namespace, where it must live. */
	if (setns(host_ns_fd, CLONE_NEWNS) < 0)
		return bk_err_set(err, errno, "cannot go back to the host's mount namespace");
	char src[64];
	snprintf(src, sizeof(src), "/proc/self/fd/%d", own);
	_cleanup_close_ int f = open(pin, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	if (f < 0 || mount(src, pin, NULL, MS_BIND, NULL) < 0)
		return f >= 0 && errno == EINVAL
			   ? 1
			   : bk_err_set(err, errno, "cannot keep the mount namespace on '%s'", pin);
	if (setns(own, CLONE_NEWNS) < 0)
		return bk_err_set(err, errno, "cannot enter the daemon's mount namespace");
	return 0;
}

/* The kernel refuses (EINVAL) to bind a mount namespace's file into a
 * namespace whose id is not lower, which would be a loop. Ids come in
 * batches per CPU (measured here: a namespace made on CPU 0 got 8789, one
 * on CPU 1 just after 12763), so a namespace made now on one CPU may have
 * a lower id than an older host namespace made on another: the start
 * failed at random under scripts/test.sh's own namespace. On the CPU that
 * made the host's namespace a new one always has a higher id, so each
 * CPU is tried in turn. */
static int ns_create_pinned(const char *pin, struct bk_err *err)
{
	cpu_set_t allowed;
	if (sched_getaffinity(0, sizeof(allowed), &allowed) < 0)
		return bk_err_set(err, errno, "cannot read the CPUs allowed");
	int rc = ns_try_create_pinned(pin, err);
	/* The CPUs the process may use first, then (for a moment: a mask
	 * set with taskset(1) is put back) the others that let it. */
	for (int pass = 0; pass < 2 && rc > 0; pass++) {
		for (int cpu = 0; cpu < CPU_SETSIZE && rc > 0; cpu++) {
			cpu_set_t one;
			CPU_ZERO(&one);
			CPU_SET(cpu, &one);
			if ((CPU_ISSET(cpu, &allowed) != 0) == (pass == 0) &&
			    sched_setaffinity(0, sizeof(one), &one) == 0)
				rc = ns_try_create_pinned(pin, err);
		}
	}
	sched_setaffinity(0, sizeof(allowed), &allowed);
	if (rc > 0)
		return bk_err_set(err, EINVAL, "cannot keep the mount namespace on '%s'", pin);
	return rc;
}

static int ns_enter(const char *pin, bool *reentered, struct bk_err *err);

int sbx_mount_ns_enter(const char *data_dir, bool *reentered, struct bk_err *err)
{
	*reentered = false;
	if (!single_threaded())
		return bk_err_kind(err, BK_E_INTERNAL,
				   "the mount namespace must be entered before any thread starts");
	char name[64], pin[sizeof(instance_dir) + 8];
	sbx_instance_name(data_dir, name, sizeof(name));
	if (mkdir_p(RUN_BUNKER, 0700, err) < 0)
		return -1;
	if (!ns__is_mountpoint(RUN_BUNKER) &&
	    mount(RUN_BUNKER, RUN_BUNKER, NULL, MS_BIND, NULL) < 0)
		return bk_err_set(err, errno, "cannot bind '%s'", RUN_BUNKER);
	if (mount(NULL, RUN_BUNKER, NULL, MS_PRIVATE, NULL) < 0)
		return bk_err_set(err, errno, "cannot make '%s' private", RUN_BUNKER);
	snprintf(instance_dir, sizeof(instance_dir), RUN_BUNKER "/%s", name);
	if (mkdir(instance_dir, 0700) < 0 && errno != EEXIST)
		return bk_err_set(err, errno, "cannot create '%s'", instance_dir);
	snprintf(pin, sizeof(pin), "%s/mnt", instance_dir);
	/* setns() moves the working directory to the namespace's root; the
	 * same path is there (relative flags resolve as they did). */
	char cwd[PATH_MAX];
	if (getcwd(cwd, sizeof(cwd)) == NULL)
		return bk_err_set(err, errno, "cannot find the working directory");
	int rc = ns_enter(pin, reentered, err);
	if (rc == 0 && chdir(cwd) < 0)
		return bk_err_set(err, errno, "cannot go back to '%s'", cwd);
	return rc;
}

static int ns_enter(const char *pin, bool *reentered, struct bk_err *err)
{
	host_ns_fd = open("/proc/self/ns/mnt", O_RDONLY | O_CLOEXEC);
	if (host_ns_fd < 0)
		return bk_err_set(err, errno, "cannot open '/proc/self/ns/mnt'");
	/* The namespace of an earlier run, with the disks it left. */
	_cleanup_close_ int old = open(pin, O_RDONLY | O_CLOEXEC);
	if (old >= 0 && is_nsfs(old)) {
		if (setns(old, CLONE_NEWNS) < 0)
			return bk_err_set(err, errno, "cannot enter the mount namespace on '%s'",
					  pin);
		*reentered = true;
		return 0;
	}
	return ns_create_pinned(pin, err);
}

void ns__mntns_release(void)
{
	if (host_ns_fd < 0)
		return;
	/* setns() wants a process of one thread: a child does it. */
	pid_t pid = fork();
	if (pid == 0) {
		char pin[sizeof(instance_dir) + 8];
		snprintf(pin, sizeof(pin), "%s/mnt", instance_dir);
		if (setns(host_ns_fd, CLONE_NEWNS) < 0)
			_exit(1);
		if (umount2(pin, MNT_DETACH) < 0 && errno != EINVAL)
			_exit(1);
		unlink(pin);
		rmdir(instance_dir);
		_exit(0);
	}
	int status = 0;
	while (pid > 0 && waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (pid < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
		fprintf(stderr, "bunkerd: cannot release the mount namespace on '%s/mnt'\n",
			instance_dir);
	close(host_ns_fd);
	host_ns_fd = -1;
}
