/* The session's root file system, host side and child side.
 *
 * Host side (the daemon, real root): its root is an overlay at
 * <run>/<id>/root with the image below and the disk's upper directory
 * above (sandbox/disk.c), and the host's /usr bound read-only on top (the
 * image holds /bin, /lib... as links into it).
 *
 * Child side (inside the new namespaces, before bunker-init runs): /proc,
 * a minimal /dev, /sys read-only, then pivot_root into the overlay.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "sandbox/ns_int.h"
#include "util/cleanup.h"

void ns__paths_init(struct ns_paths *p, const struct ns_backend *b, const char *id)
{
	/* run_dir takes at most SBX_DIR_MAX + 4 bytes (ns.c) and id is a file
	 * name: every path fits, and one that did not would be a bug to stop
	 * at, never a path to cut. */
	if ((size_t)snprintf(p->dir, sizeof(p->dir), "%s/%s", b->run_dir, id) >= sizeof(p->dir) ||
	    (size_t)snprintf(p->disk, sizeof(p->disk), "%s/disk", p->dir) >= sizeof(p->disk) ||
	    (size_t)snprintf(p->upper, sizeof(p->upper), "%s/disk/upper", p->dir) >=
		sizeof(p->upper) ||
	    (size_t)snprintf(p->work, sizeof(p->work), "%s/disk/work", p->dir) >= sizeof(p->work) ||
	    (size_t)snprintf(p->layer, sizeof(p->layer), "%s/disk/layer", p->dir) >=
		sizeof(p->layer) ||
	    (size_t)snprintf(p->lower, sizeof(p->lower), "%s/lower", p->dir) >= sizeof(p->lower) ||
	    (size_t)snprintf(p->root, sizeof(p->root), "%s/root", p->dir) >= sizeof(p->root))
		abort();
}

bool ns__is_mountpoint(const char *path)
{
	struct statx stx;
	/* Bind mounts keep st_dev: only the mount-root attribute tells. */
	if (statx(AT_FDCWD, path, AT_SYMLINK_NOFOLLOW, 0, &stx) < 0)
		return false;
	return (stx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT) &&
	       (stx.stx_attributes & STATX_ATTR_MOUNT_ROOT);
}

int ns__rootfs_mount(const struct ns_backend *b, const struct ns_paths *p, struct bk_err *err)
{
	if (ns__is_mountpoint(p->root))
		ns__rootfs_umount(p);
	char opts[4096];
	/* userxattr is not wanted: the mount is made by real root. index=off
	 * and metacopy=off keep the upper layer a plain tree that a snapshot
	 * can archive on its own. */
	bool layered = ns__layer_read(p, NULL, 0, NULL);
	if (layered && !ns__is_mountpoint(p->lower))
		return bk_err_kind(err, BK_E_INTERNAL, "the image below '%s' is not mounted",
				   p->upper);
	if (layered)
		snprintf(opts, sizeof(opts), "lowerdir=%s:%s,upperdir=%s,workdir=%s", p->lower,
			 b->image_dir, p->upper, p->work);
	else
		snprintf(opts, sizeof(opts), "lowerdir=%s,upperdir=%s,workdir=%s", b->image_dir,
			 p->upper, p->work);
	if (mount("bunker-root", p->root, "overlay", MS_NOSUID | MS_NODEV, opts) < 0)
		return bk_err_set(err, errno, "cannot mount overlay on '%s'", p->root);
	char usr[700];
	snprintf(usr, sizeof(usr), "%s/usr", p->root);
	if (mount("/usr", usr, NULL, MS_BIND, NULL) < 0) {
		ns__rootfs_umount(p);
		return bk_err_set(err, errno, "cannot bind '/usr' on '%s'", usr);
	}
	if (mount(NULL, usr, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV, NULL) <
	    0) {
		ns__rootfs_umount(p);
		return bk_err_set(err, errno, "cannot make '%s' read-only", usr);
	}
	return 0;
}

void ns__rootfs_umount(const struct ns_paths *p)
{
	char usr[700];
	snprintf(usr, sizeof(usr), "%s/usr", p->root);
	umount2(usr, MNT_DETACH);
	umount2(p->root, MNT_DETACH);
}

/* ---- child side: async-signal-safe only (the daemon is multi-threaded) ---- */

/* Paths are relative to the new root, which is the working directory: the
 * child, no longer host root by id, could not walk the host path to it. */
static int bind_dev(const char *name)
{
	char target[64], source[64];
	strcpy(source, "/dev/");
	strcat(source, name);
	strcpy(target, "dev/");
	strcat(target, name);
	int fd = open(target, O_CREAT | O_WRONLY | O_CLOEXEC, 0666);
	if (fd < 0)
		return -1;
	close(fd);
	return mount(source, target, NULL, MS_BIND, NULL);
}

int ns__rootfs_setup_child(const char **stage)
{
	const unsigned long nosx = MS_NOSUID | MS_NODEV | MS_NOEXEC;

	*stage = "mount /proc";
	if (mount("proc", "proc", "proc", nosx, NULL) < 0)
		return -1;

	/* The session's own per-user kernel counts, as its user namespace
	 * sees them (it is owned by the session's host id, so the host's
	 * limits apply to the session as a whole besides): inotify and
	 * fanotify within what an interactive workload needs, and no
	 * namespaces at all (seccomp refuses them too). Written while this
	 * process holds CAP_SYS_RESOURCE in the namespace; nothing the
	 * session runs can raise them again. A limit this kernel lacks is
	 * skipped. */
	*stage = "per-user limits";
	static const char *const user_limits[][2] = {
	    {"proc/sys/user/max_inotify_instances", "128"},
	    {"proc/sys/user/max_inotify_watches", "65536"},
	    {"proc/sys/user/max_fanotify_groups", "16"},
	    {"proc/sys/user/max_fanotify_marks", "8192"},
	    {"proc/sys/user/max_user_namespaces", "0"},
	    {"proc/sys/user/max_pid_namespaces", "0"},
	    {"proc/sys/user/max_net_namespaces", "0"},
	    {"proc/sys/user/max_mnt_namespaces", "0"},
	    {"proc/sys/user/max_ipc_namespaces", "0"},
	    {"proc/sys/user/max_uts_namespaces", "0"},
	    {"proc/sys/user/max_cgroup_namespaces", "0"},
	    {"proc/sys/user/max_time_namespaces", "0"},
	};
	for (size_t i = 0; i < ARRAY_SIZE(user_limits); i++) {
		int fd = open(user_limits[i][0], O_WRONLY | O_CLOEXEC);
		if (fd < 0 && errno == ENOENT)
			continue;
		if (fd < 0)
			return -1;
		size_t n = strlen(user_limits[i][1]);
		ssize_t w = write(fd, user_limits[i][1], n);
		close(fd);
		if (w != (ssize_t)n)
			return -1;
	}

	/* sysfs is allowed in a user namespace that owns the network
	 * namespace; where it is refused, /sys stays an empty directory. A
	 * new sysfs carries none of the host's mounts below it: debugfs,
	 * tracefs, securityfs, bpf, pstore and the cgroup trees are empty
	 * directories here. */
	mount("sysfs", "sys", "sysfs", nosx | MS_RDONLY, NULL);

	*stage = "mount /dev";
	if (mount("tmpfs", "dev", "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=0755,size=65536k") < 0)
		return -1;
	static const char *const nodes[] = {"null", "zero", "full", "random", "urandom", "tty"};
	*stage = "bind device nodes";
	for (size_t i = 0; i < ARRAY_SIZE(nodes); i++)
		if (bind_dev(nodes[i]) < 0)
			return -1;
	*stage = "mount /dev/pts";
	if (mkdir("dev/pts", 0755) < 0 ||
	    mount("devpts", "dev/pts", "devpts", MS_NOSUID | MS_NOEXEC,
		  "newinstance,ptmxmode=0666,mode=0620") < 0)
		return -1;
	*stage = "mount /dev/shm";
	if (mkdir("dev/shm", 01777) < 0 ||
	    mount("shm", "dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777,size=65536k") < 0)
		return -1;
	*stage = "create /dev links";
	static const char *const links[][2] = {
	    {"/proc/self/fd", "dev/fd"},       {"/proc/self/fd/0", "dev/stdin"},
	    {"/proc/self/fd/1", "dev/stdout"}, {"/proc/self/fd/2", "dev/stderr"},
	    {"pts/ptmx", "dev/ptmx"},
	};
	for (size_t i = 0; i < ARRAY_SIZE(links); i++)
		if (symlink(links[i][0], links[i][1]) < 0)
			return -1;

	/* A boot id of the sandbox's own, a random version-4 UUID as the
	 * kernel makes: the host's names the host's boot to whoever reads it,
	 * and the same value in every session would tie them together. It
	 * stays for the sandbox's life; a new sandbox (a wake from deep sleep)
	 * is a new boot. The file is made in /dev/shm and unlinked once bound,
	 * so nothing lists it (not on /dev's own tmpfs: an unlinked file in
	 * use keeps a tmpfs from being remounted read-only), and its mount is
	 * read-only. The raw call: glibc's getrandom() may keep per-thread
	 * state, which this clone of one thread of the daemon must not touch. */
	*stage = "boot id";
	unsigned char uuid[16];
	if (syscall(SYS_getrandom, uuid, sizeof(uuid), 0) != (long)sizeof(uuid))
		return -1;
	uuid[6] = (uuid[6] & 0x0f) | 0x40;
	uuid[8] = (uuid[8] & 0x3f) | 0x80;
	static const char hex[] = "0123456789abcdef";
	char text[37];
	for (size_t i = 0, o = 0; i < sizeof(uuid); i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10)
			text[o++] = '-';
		text[o++] = hex[uuid[i] >> 4];
		text[o++] = hex[uuid[i] & 0xf];
	}
	text[36] = '\n';
	static const char boot_id[] = "proc/sys/kernel/random/boot_id";
	int fd = open("dev/shm/boot_id", O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0444);
	if (fd < 0)
		return -1;
	ssize_t w = write(fd, text, sizeof(text));
	close(fd);
	if (w != (ssize_t)sizeof(text))
		return -1;
	if (mount("dev/shm/boot_id", boot_id, NULL, MS_BIND, NULL) == 0) {
		if (mount(NULL, boot_id, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | nosx, NULL) < 0)
			return -1;
	} else if (errno != ENOENT) {
		return -1;
	}
	if (unlink("dev/shm/boot_id") < 0)
		return -1;

	*stage = "remount /dev read-only";
	if (mount(NULL, "dev", NULL, MS_REMOUNT | MS_NOSUID | MS_NOEXEC | MS_RDONLY,
		  "mode=0755,size=65536k") < 0)
		return -1;

	/* Mask what /proc and /sys show of the host, as Docker does and then
	 * some: files that read kernel memory or state, or act on the
	 * machine, read as /dev/null; directories of host hardware are empty;
	 * kernel tunables are read-only. Beyond Docker's list: what locates
	 * the kernel in memory or tells how it was built, a help to whoever
	 * shapes an exploit for it (vmcoreinfo gives a physical address,
	 * notes gave KASLR away as CVE-2024-26816, boot_params holds the
	 * firmware's memory map and physical pointers, kallsyms, modules,
	 * config.gz, BTF, /sys/module), and the host's command line. A path
	 * this kernel lacks is skipped: mount answers ENOENT, which saves
	 * asking first. */
	*stage = "mask /proc and /sys";
	static const char *const masked_files[] = {
	    "proc/kcore",	  "proc/keys",
	    "proc/timer_list",	  "proc/timer_stats",
	    "proc/sched_debug",	  "proc/sysrq-trigger",
	    "proc/latency_stats", "proc/interrupts",
	    "proc/kallsyms",	  "proc/modules",
	    "proc/config.gz",	  "proc/cmdline",
	    "sys/kernel/notes",	  "sys/kernel/vmcoreinfo",
	};
	for (size_t i = 0; i < ARRAY_SIZE(masked_files); i++)
		if (mount("dev/null", masked_files[i], NULL, MS_BIND, NULL) < 0 && errno != ENOENT)
			return -1;
	/* sys/kernel/irq holds the same per-CPU interrupt counts as
	 * /proc/interrupts, a side channel on other tenants' activity
	 * (GHSA-6fw5-f8r9-fgfm); powercap's energy counters are another
	 * (GHSA-jq35-85cj-fj4p). One empty read-only tmpfs is made and bound
	 * on the others: a bind costs less than a new file system. */
	static const char *const masked_dirs[] = {
	    "proc/acpi",      "proc/asound",	"proc/scsi",
	    "sys/firmware",   "sys/kernel/btf", "sys/kernel/boot_params",
	    "sys/kernel/irq", "sys/module",	"sys/devices/virtual/powercap",
	};
	const char *empty = NULL;
	for (size_t i = 0; i < ARRAY_SIZE(masked_dirs); i++) {
		int r = empty ? mount(empty, masked_dirs[i], NULL, MS_BIND, NULL)
			      : mount("tmpfs", masked_dirs[i], "tmpfs", MS_RDONLY | nosx, "size=0");
		if (r < 0 && errno != ENOENT)
			return -1;
		if (r == 0 && empty == NULL)
			empty = masked_dirs[i];
	}
	/* Each CPU's thermal throttling counts, the same side channel. Intel
	 * hosts have them, VMs and AMD hosts mostly not (cpu0 tells); an
	 * offline CPU has its directory but not them, so the walk ends at the
	 * first missing directory. No empty mount means no sysfs (every sysfs
	 * has sys/module). The number is written by hand: no snprintf here. */
	char cpu[64] = "sys/devices/system/cpu/cpu";
	const size_t cpu_len = strlen(cpu);
	for (unsigned n = 0; empty != NULL && n < 65536; n++) {
		size_t digits = 1;
		for (unsigned v = n; v >= 10; v /= 10)
			digits++;
		for (unsigned v = n, d = 0; d < digits; v /= 10, d++)
			cpu[cpu_len + digits - 1 - d] = (char)('0' + v % 10);
		strcpy(cpu + cpu_len + digits, "/thermal_throttle");
		if (mount(empty, cpu, NULL, MS_BIND, NULL) == 0)
			continue;
		if (errno != ENOENT)
			return -1;
		cpu[cpu_len + digits] = '\0';
		if (n == 0 || access(cpu, F_OK) < 0)
			break;
	}
	static const char *const readonly[] = {"proc/sys", "proc/irq", "proc/bus", "proc/fs"};
	for (size_t i = 0; i < ARRAY_SIZE(readonly); i++) {
		if (access(readonly[i], F_OK) < 0)
			continue;
		if (mount(readonly[i], readonly[i], NULL, MS_BIND | MS_REC, NULL) < 0 ||
		    mount(NULL, readonly[i], NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | nosx, NULL) <
			0)
			return -1;
	}

	*stage = "pivot_root";
	if (syscall(SYS_pivot_root, ".", ".") < 0)
		return -1;
	/* The old root is now stacked under the new one: detach it so that
	 * nothing of the host stays reachable. */
	if (umount2(".", MNT_DETACH) < 0)
		return -1;
	if (chdir("/") < 0)
		return -1;
	return 0;
}
