/* A session's files at rest as a read-only EROFS image, and awake as that
 * image under a fresh writable layer.
 *
 * Deep sleep packs the session's layer (what it changed of the base image:
 * the overlay's upper directory, whiteouts and opaque markers included)
 * into <snapshot dir>/<id>.erofs with mkfs.erofs. A wake does not unpack
 * it: the image file is mounted as it is (EROFS mounts a file directly),
 * and becomes the middle layer of the session's overlay, below a new empty
 * upper directory on a new disk. A wake costs the same whatever the image
 * holds; reading a file reads it from the image, writing one copies it up.
 *
 * Owners. An image records owners as the session sees them (0..65535), so
 * that it wakes on any slot and on any node. Neither side copies a file to
 * shift its owner: the mkfs reads the upper through an idmapped bind that
 * shows the slot's host ids as the session's, and the wake mounts the image
 * idmapped the other way, onto the new slot's host ids.
 *
 * Layers never stack. A session woken from an image that sleeps again is
 * folded: its image and its upper are merged with overlay's own rules into
 * a staging directory beside the snapshots (an upper whiteout removes what
 * the image held there and stays a whiteout against the base image; an
 * opaque upper directory replaces the image's; another directory merges;
 * anything else replaces), and the new image is made from it. The fold
 * costs in proportion to the session's files, as a tar would.
 *
 * While the session is awake its image stays, under a name of its own,
 * <id>.<random>.layer.erofs (the sleeping snapshot <id>.erofs is linked to
 * it on the wake and then removed), and the disk records that name in
 * disk/layer beside the upper: a daemon restarted finds the image mounted
 * still (the daemon's mount namespace is kept), or mounts it again. Ending
 * the disk unmounts and removes it. The random part keeps two nodes that
 * woke the same session one after the other from naming one file.
 *
 * One file of some 800 lines, and not three (mounting, folding, building):
 * they are the steps of one layer's life, the build reads what the fold
 * staged, and both the mount and the build shift owners through the same
 * idmapped binds (userns_fd(), idmap_attach()); apart, they would share
 * those helpers and the layer's naming through a header.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/loop.h>
#include <linux/sched.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "sandbox/ns_int.h"
#include "util/cleanup.h"

extern char **environ;

#define OPAQUE_XATTR "trusted.overlay.opaque"

/* "/proc/self/fd/<dir>/<name>": how the *xattr() calls name an entry of
 * any type without opening it. */
static void proc_name(int dir, const char *name, char *out, size_t len)
{
	snprintf(out, len, "/proc/self/fd/%d/%s", dir, name);
}

/* A host id as an image records it: the session's own, or nobody. */
static unsigned id_to_session(unsigned id, unsigned base)
{
	return id >= base && id - base < SBX_ID_RANGE ? id - base : 65534u;
}

/* A reader of the directory fd (left open), from its first entry: NULL
 * with errno set when it cannot be read. */
static DIR *dir_read(int fd)
{
	int dup_fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
	DIR *d = dup_fd < 0 ? NULL : fdopendir(dup_fd);
	if (d == NULL && dup_fd >= 0) {
		int e = errno;
		close(dup_fd);
		errno = e;
	}
	if (d != NULL)
		rewinddir(d);
	return d;
}

static bool is_dot(const char *name)
{
	return strcmp(name, ".") == 0 || strcmp(name, "..") == 0;
}

/* ---- id-mapped mounts ---- */

/* A user namespace whose ids from..from+SBX_ID_RANGE-1 are the parent's
 * to..: an idmapped mount made with it shows an owner from.. on disk as
 * to... Made by a child that waits, in the namespace, for its maps. */
static int userns_fd(unsigned from, unsigned to, struct bk_err *err)
{
	int pipefd[2];
	if (pipe2(pipefd, O_CLOEXEC) < 0)
		return bk_err_set(err, errno, "cannot make a pipe");
	struct clone_args args = {.flags = CLONE_NEWUSER, .exit_signal = SIGCHLD};
	pid_t pid = (pid_t)syscall(SYS_clone3, &args, sizeof(args));
	if (pid == 0) {
		/* Async-signal-safe only: a clone of one thread of the daemon. */
		char c;
		close(pipefd[1]);
		while (read(pipefd[0], &c, 1) < 0 && errno == EINTR)
			;
		_exit(0);
	}
	close(pipefd[0]);
	if (pid < 0) {
		close(pipefd[1]);
		return bk_err_set(err, errno, "cannot make a user namespace");
	}
	char path[64], map[64];
	snprintf(map, sizeof(map), "%u %u %u\n", from, to, SBX_ID_RANGE);
	int fd = -1;
	snprintf(path, sizeof(path), "/proc/%d/uid_map", (int)pid);
	if (write_file_str(path, map, err) == 0) {
		snprintf(path, sizeof(path), "/proc/%d/gid_map", (int)pid);
		if (write_file_str(path, map, err) == 0) {
			snprintf(path, sizeof(path), "/proc/%d/ns/user", (int)pid);
			fd = open(path, O_RDONLY | O_CLOEXEC);
			if (fd < 0)
				bk_err_set(err, errno, "cannot open '%s'", path);
		}
	}
	close(pipefd[1]);
	while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
		;
	return fd;
}

/* Gives the detached mount tree an id mapping from..→to.. and attaches it
 * at dst. */
static int idmap_attach(int tree, const char *dst, unsigned from, unsigned to, struct bk_err *err)
{
	_cleanup_close_ int ns = userns_fd(from, to, err);
	if (ns < 0)
		return -1;
	struct mount_attr attr = {.attr_set = MOUNT_ATTR_IDMAP, .userns_fd = (uint64_t)ns};
	if (mount_setattr(tree, "", AT_EMPTY_PATH, &attr, sizeof(attr)) < 0)
		return bk_err_set(err, errno, "cannot map the ids of the mount for '%s'", dst);
	if (move_mount(tree, "", AT_FDCWD, dst, MOVE_MOUNT_F_EMPTY_PATH) < 0)
		return bk_err_set(err, errno, "cannot attach a mount on '%s'", dst);
	return 0;
}

/* A read-only loop device on the open file, into dev; it goes once the
 * last user closes it (the mount made of it). *lfd: the device, open. */
static int loop_attach(int file, char *dev, size_t len, int *lfd, struct bk_err *err)
{
	_cleanup_close_ int ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
	if (ctl < 0)
		return bk_err_set(err, errno, "cannot open '/dev/loop-control'");
	/* Another may take the free device first: then the next. */
	for (int tries = 0; tries < 16; tries++) {
		int n = ioctl(ctl, LOOP_CTL_GET_FREE);
		if (n < 0)
			return bk_err_set(err, errno, "no free loop device");
		snprintf(dev, len, "/dev/loop%d", n);
		*lfd = open(dev, O_RDONLY | O_CLOEXEC);
		if (*lfd < 0)
			return bk_err_set(err, errno, "cannot open '%s'", dev);
		struct loop_config cfg = {
		    .fd = (unsigned)file,
		    .info = {.lo_flags = LO_FLAGS_READ_ONLY | LO_FLAGS_AUTOCLEAR}};
		if (ioctl(*lfd, LOOP_CONFIGURE, &cfg) == 0)
			return 0;
		int e = errno;
		close(*lfd);
		*lfd = -1;
		if (e != EBUSY)
			return bk_err_set(err, e, "cannot set up '%s'", dev);
	}
	return bk_err_kind(err, BK_E_UNAVAILABLE, "no loop device stayed free");
}

/* A detached EROFS mount of source. -1 with errno ENOTBLK: source is a
 * file this kernel cannot mount directly. */
static int erofs_tree(const char *source, struct bk_err *err)
{
	_cleanup_close_ int fs = fsopen("erofs", FSOPEN_CLOEXEC);
	if (fs < 0)
		return bk_err_set(err, errno, "this kernel has no EROFS (for '%s')", source);
	if (fsconfig(fs, FSCONFIG_SET_STRING, "source", source, 0) < 0 ||
	    fsconfig(fs, FSCONFIG_SET_FLAG, "ro", NULL, 0) < 0 ||
	    fsconfig(fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0)
		return bk_err_set(err, errno, "cannot mount the image '%s'", source);
	int tree =
	    fsmount(fs, FSMOUNT_CLOEXEC, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV);
	if (tree < 0)
		return bk_err_set(err, errno, "cannot mount the image '%s'", source);
	return tree;
}

/* Mounts the image file at dir, read-only, owners 0.. shown as base...
 * EROFS reads a file directly where its file system reads through the
 * page cache; on one that does not (tmpfs), through a loop device. */
static int image_mount(const char *image, const char *dir, unsigned base, struct bk_err *err)
{
	if (mkdir(dir, 0700) < 0 && errno != EEXIST)
		return bk_err_set(err, errno, "cannot create '%s'", dir);
	struct bk_err ferr = BK_ERR_INIT;
	_cleanup_close_ int tree = erofs_tree(image, &ferr);
	if (tree < 0 && ferr.errnum != ENOTBLK) {
		if (err)
			*err = ferr;
		return -1;
	}
	if (tree < 0) {
		_cleanup_close_ int file = open(image, O_RDONLY | O_CLOEXEC);
		if (file < 0)
			return bk_err_set(err, errno, "cannot open '%s'", image);
		char dev[32];
		_cleanup_close_ int lfd = -1;
		if (loop_attach(file, dev, sizeof(dev), &lfd, err) < 0)
			return -1;
		tree = erofs_tree(dev, err);
		if (tree < 0)
			return -1;
	}
	return idmap_attach(tree, dir, 0, base, err);
}

/* ---- the record on the disk ---- */

int ns__layer_read(const struct ns_paths *p, char *name, size_t len, int64_t *bytes)
{
	char text[256];
	if (read_file_small(p->layer, text, sizeof(text), NULL) <= 0)
		return 0;
	char file[200];
	long long n = 0;
	if (sscanf(text, "%199s %lld", file, &n) != 2 || strchr(file, '/') != NULL)
		return 0;
	if (name)
		snprintf(name, len, "%s", file);
	if (bytes)
		*bytes = n;
	return 1;
}

/* Where the image named in the record lives. */
static void layer_file(const struct ns_backend *b, const char *name, char *out, size_t len)
{
	snprintf(out, len, "%s/%s", b->snapshot_dir, name);
}

int ns__layer_ensure(const struct ns_backend *b, const struct ns_paths *p, int slot,
		     struct bk_err *err)
{
	char name[200], image[800];
	if (!ns__layer_read(p, name, sizeof(name), NULL) || ns__is_mountpoint(p->lower))
		return 0;
	layer_file(b, name, image, sizeof(image));
	if (image_mount(image, p->lower, sbx__slot_base(slot), err) < 0) {
		bk_err_prefix(err, "the disk of '%s' lost its lower layer", p->dir);
		return -1;
	}
	return 0;
}

int ns__layer_wake(const struct ns_backend *b, const struct ns_paths *p, const char *snap,
		   int64_t bytes, int slot, struct bk_err *err)
{
	char rnd[13], name[200], image[800];
	if (random_alnum(rnd, 12, err) < 0)
		return -1;
	snprintf(name, sizeof(name), "%s.%s" NS_LAYER_SUFFIX, strrchr(p->dir, '/') + 1, rnd);
	layer_file(b, name, image, sizeof(image));
	/* Recorded first: a disk that names an image not there yet loses
	 * nothing, an image that no disk names would stay for ever. */
	char text[256];
	snprintf(text, sizeof(text), "%s %lld\n", name, (long long)bytes);
	_cleanup_close_ int fd = open(p->layer, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || write_full(fd, text, strlen(text)) < 0)
		return bk_err_set(err, errno, "cannot write '%s'", p->layer);
	if (link(snap, image) < 0)
		return bk_err_set(err, errno, "cannot link '%s' to '%s'", snap, image);
	return image_mount(image, p->lower, sbx__slot_base(slot), err);
}

void ns__layer_drop(const struct ns_backend *b, const struct ns_paths *p)
{
	if (ns__is_mountpoint(p->lower))
		umount2(p->lower, MNT_DETACH);
	rmdir(p->lower);
	char name[200], image[800];
	if (!ns__layer_read(p, name, sizeof(name), NULL))
		return;
	layer_file(b, name, image, sizeof(image));
	unlink(image);
}

/* ---- files of the merged layers ---- */

/* Regular files under dir (an open directory it takes), those the upper
 * directory up (-1: none) hides left out: whatever it has of the same name
 * but a directory that merges. Stops counting at limit. */
static void count_merged(int dir, int up, int64_t *n, int64_t limit)
{
	DIR *d = fdopendir(dir);
	if (d == NULL) {
		close(dir);
		return;
	}
	struct dirent *de;
	while (*n < limit && (de = readdir(d)) != NULL) {
		if (is_dot(de->d_name))
			continue;
		struct stat st, ust;
		if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			continue;
		bool shadowed = up >= 0 && fstatat(up, de->d_name, &ust, AT_SYMLINK_NOFOLLOW) == 0;
		if (!S_ISDIR(st.st_mode)) {
			if (!shadowed && S_ISREG(st.st_mode))
				(*n)++;
			continue;
		}
		int sub_up = -1;
		if (shadowed) {
			char opaque = 0;
			char proc[300];
			proc_name(up, de->d_name, proc, sizeof(proc));
			if (!S_ISDIR(ust.st_mode) ||
			    (lgetxattr(proc, OPAQUE_XATTR, &opaque, 1) == 1 && opaque == 'y'))
				continue;
			sub_up =
			    openat(up, de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		}
		int sub =
		    openat(dirfd(d), de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (sub >= 0)
			count_merged(sub, sub_up, n, limit);
		if (sub_up >= 0)
			close(sub_up);
	}
	closedir(d);
}

int64_t ns__layer_files(const struct ns_paths *p, int64_t limit)
{
	char ws[700];
	snprintf(ws, sizeof(ws), "%s" SBX_WORKSPACE, p->lower);
	int dir = open(ws, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (dir < 0)
		return 0;
	snprintf(ws, sizeof(ws), "%s" SBX_WORKSPACE, p->upper);
	_cleanup_close_ int up = open(ws, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	int64_t n = 0;
	count_merged(dir, up, &n, limit);
	return n;
}

/* ---- the fold: image and upper merged into a staging directory ---- */

struct stage {
	unsigned base;	    /* the slot's host ids, shown by both sources */
	int64_t bytes, max; /* what the staging takes; BK_E_NO_SPACE past max */
	int64_t entries;    /* staged */
	struct bk_err *err;
};

/* Copies the extended attributes of src (named through /proc) to dst. */
static int copy_xattrs(const char *src, const char *dst, struct bk_err *err)
{
	char names[65536];
	ssize_t n = llistxattr(src, names, sizeof(names));
	if (n < 0)
		return errno == ENOTSUP ? 0 : bk_err_set(err, errno, "cannot list xattrs");
	for (ssize_t off = 0; off < n; off += (ssize_t)strlen(names + off) + 1) {
		const char *name = names + off;
		/* POSIX ACLs name host ids: left out, as a tar snapshot does. */
		if (strncmp(name, "system.posix_acl_", 17) == 0)
			continue;
		/* What overlay notes of a copy-up (the file it came from, a
		 * directory that holds such, the upper's own id) names the
		 * layers of this mount, not of the next. */
		if (strcmp(name, "trusted.overlay.origin") == 0 ||
		    strcmp(name, "trusted.overlay.impure") == 0 ||
		    strcmp(name, "trusted.overlay.uuid") == 0)
			continue;
		char value[65536];
		ssize_t v = lgetxattr(src, name, value, sizeof(value));
		if (v < 0)
			return bk_err_set(err, errno, "cannot read xattr '%s'", name);
		if (lsetxattr(dst, name, value, (size_t)v, 0) < 0)
			return bk_err_set(err, errno, "cannot set xattr '%s'", name);
	}
	return 0;
}

/* Owner, mode, extended attributes and times of the entry src/name onto
 * dst/name, which exists. */
static int copy_meta(int src, int dst, const char *name, const struct stat *st, struct stage *sg)
{
	uid_t uid = (uid_t)id_to_session(st->st_uid, sg->base);
	gid_t gid = (gid_t)id_to_session(st->st_gid, sg->base);
	if (fchownat(dst, name, uid, gid, AT_SYMLINK_NOFOLLOW) < 0)
		return bk_err_set(sg->err, errno, "cannot set the owner of '%s'", name);
	if (!S_ISLNK(st->st_mode) && fchmodat(dst, name, st->st_mode & 07777, 0) < 0)
		return bk_err_set(sg->err, errno, "cannot set the mode of '%s'", name);
	char from[300], to[300];
	proc_name(src, name, from, sizeof(from));
	proc_name(dst, name, to, sizeof(to));
	if (copy_xattrs(from, to, sg->err) < 0) {
		bk_err_prefix(sg->err, "'%s'", name);
		return -1;
	}
	struct timespec times[2] = {st->st_atim, st->st_mtim};
	if (utimensat(dst, name, times, AT_SYMLINK_NOFOLLOW) < 0)
		return bk_err_set(sg->err, errno, "cannot set the times of '%s'", name);
	return 0;
}

static int charge(struct stage *sg, const struct stat *st)
{
	sg->entries++;
	sg->bytes += 4096 + (S_ISREG(st->st_mode) ? (st->st_size + 4095) / 4096 * 4096 : 0);
	if (sg->bytes > sg->max)
		return bk_err_kind(sg->err, BK_E_NO_SPACE,
				   "the session's files would exceed the %lld MB of room left",
				   (long long)(sg->max >> 20));
	return 0;
}

static int copy_data(int src, int dst, const char *name, struct bk_err *err)
{
	_cleanup_close_ int in = openat(src, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (in < 0)
		return bk_err_set(err, errno, "cannot open '%s'", name);
	_cleanup_close_ int out =
	    openat(dst, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (out < 0)
		return bk_err_set(err, errno, "cannot create '%s'", name);
	/* The kernel copies within one file system; between two (the image
	 * and the staging, always), through a buffer. */
	for (;;) {
		ssize_t n = copy_file_range(in, NULL, out, NULL, 1 << 30, 0);
		if (n == 0)
			return 0;
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno != EXDEV && errno != EINVAL && errno != EOPNOTSUPP)
			return bk_err_set(err, errno, "cannot copy '%s'", name);
		if (n < 0)
			break;
	}
	_cleanup_free_ char *buf = malloc(1 << 17);
	if (buf == NULL)
		return bk_err_set(err, ENOMEM, "cannot copy '%s'", name);
	for (;;) {
		ssize_t n = read(in, buf, 1 << 17);
		if (n == 0)
			return 0;
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 || write_full(out, buf, (size_t)n) < 0)
			return bk_err_set(err, errno, "cannot copy '%s'", name);
	}
}

static int copy_tree(int src, int dst, const char *name, struct stage *sg);

/* Copies every entry of the directory src into the directory dst. */
static int copy_children(int src, int dst, struct stage *sg)
{
	_cleanup_closedir_ DIR *d = dir_read(src);
	if (d == NULL)
		return bk_err_set(sg->err, errno, "cannot read a directory");
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		if (is_dot(de->d_name))
			continue;
		if (copy_tree(src, dst, de->d_name, sg) < 0)
			return -1;
	}
	return 0;
}

/* Copies the entry src/name, a whole tree for a directory, to dst/name,
 * which does not exist. Sockets are left out, as a tar snapshot does. */
static int copy_tree(int src, int dst, const char *name, struct stage *sg)
{
	struct stat st;
	if (fstatat(src, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return bk_err_set(sg->err, errno, "cannot stat '%s'", name);
	if (charge(sg, &st) < 0)
		return -1;
	if (S_ISDIR(st.st_mode)) {
		if (mkdirat(dst, name, 0700) < 0)
			return bk_err_set(sg->err, errno, "cannot create '%s'", name);
		_cleanup_close_ int s =
		    openat(src, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		_cleanup_close_ int t =
		    openat(dst, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (s < 0 || t < 0)
			return bk_err_set(sg->err, errno, "cannot open '%s'", name);
		if (copy_children(s, t, sg) < 0)
			return -1;
	} else if (S_ISREG(st.st_mode)) {
		if (copy_data(src, dst, name, sg->err) < 0)
			return -1;
	} else if (S_ISLNK(st.st_mode)) {
		char target[PATH_MAX + 1];
		ssize_t n = readlinkat(src, name, target, sizeof(target) - 1);
		if (n < 0)
			return bk_err_set(sg->err, errno, "cannot read the link '%s'", name);
		target[n] = '\0';
		if (symlinkat(target, dst, name) < 0)
			return bk_err_set(sg->err, errno, "cannot create the link '%s'", name);
	} else if (S_ISSOCK(st.st_mode)) {
		return 0;
	} else if (mknodat(dst, name, st.st_mode & S_IFMT, st.st_rdev) < 0) {
		return bk_err_set(sg->err, errno, "cannot create '%s'", name);
	}
	return copy_meta(src, dst, name, &st, sg);
}

static bool is_opaque(int dir, const char *name)
{
	char proc[300], v = 0;
	proc_name(dir, name, proc, sizeof(proc));
	return lgetxattr(proc, OPAQUE_XATTR, &v, 1) == 1 && v == 'y';
}

static bool is_whiteout(const struct stat *st)
{
	return S_ISCHR(st->st_mode) && st->st_rdev == 0;
}

/* Applies the upper directory up over the staged directory dst with
 * overlay's rules; base is the base image's directory at the same path
 * (-1: it has none). A whiteout stays only over what the base image has:
 * overlay lists a whiteout in a directory that has no layer below it. */
static int apply_upper(int up, int dst, int base, struct stage *sg)
{
	_cleanup_closedir_ DIR *d = dir_read(up);
	if (d == NULL)
		return bk_err_set(sg->err, errno, "cannot read a directory");
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		const char *name = de->d_name;
		if (is_dot(name))
			continue;
		struct stat st, old;
		if (fstatat(up, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			return bk_err_set(sg->err, errno, "cannot stat '%s'", name);
		bool had = fstatat(dst, name, &old, AT_SYMLINK_NOFOLLOW) == 0;
		if (S_ISDIR(st.st_mode) && had && S_ISDIR(old.st_mode) && !is_opaque(up, name)) {
			/* A directory of both: merged, the upper's attributes
			 * over the image's (an opaque marker the image's has
			 * against the base image stays). */
			_cleanup_close_ int s =
			    openat(up, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			_cleanup_close_ int t =
			    openat(dst, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (s < 0 || t < 0)
				return bk_err_set(sg->err, errno, "cannot open '%s'", name);
			_cleanup_close_ int below =
			    base < 0 ? -1
				     : openat(base, name,
					      O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (apply_upper(s, t, below, sg) < 0 ||
			    copy_meta(up, dst, name, &st, sg) < 0)
				return -1;
			continue;
		}
		if (had && rm_rf_at(dst, name, sg->err) < 0)
			return -1;
		struct stat bst;
		if (is_whiteout(&st) &&
		    (base < 0 || fstatat(base, name, &bst, AT_SYMLINK_NOFOLLOW) < 0))
			continue;
		if (copy_tree(up, dst, name, sg) < 0)
			return -1;
		/* A directory over what the image held of another kind hid
		 * whatever the base image has there: it still must. */
		if (S_ISDIR(st.st_mode) && had && !S_ISDIR(old.st_mode)) {
			char proc[300];
			proc_name(dst, name, proc, sizeof(proc));
			if (lsetxattr(proc, OPAQUE_XATTR, "y", 1, 0) < 0)
				return bk_err_set(sg->err, errno, "cannot mark '%s' opaque", name);
		}
	}
	return 0;
}

/* Stages the merge of p's image (mounted at p->lower) and upper in a new
 * directory beside the snapshots, of at most max bytes; *bytes receives
 * what it takes. */
static int stage_fold(const struct ns_backend *b, const struct ns_paths *p, unsigned base,
		      int64_t max, char *stage, size_t len, int64_t *bytes, int64_t *entries,
		      struct bk_err *err)
{
	const char *id = strrchr(p->dir, '/') + 1;
	char rnd[9];
	if (random_alnum(rnd, 8, err) < 0)
		return -1;
	snprintf(stage, len, "%s/.%s.%s" NS_STAGE_SUFFIX, b->snapshot_dir, id, rnd);
	_cleanup_close_ int parent = open(b->snapshot_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (parent < 0)
		return bk_err_set(err, errno, "cannot open '%s'", b->snapshot_dir);
	const char *name = strrchr(stage, '/') + 1;
	_cleanup_close_ int lower = open(p->lower, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	_cleanup_close_ int upper = open(p->upper, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (lower < 0 || upper < 0)
		return bk_err_set(err, errno, "cannot open the layers of '%s'", p->dir);
	struct stage sg = {.base = base, .max = max, .err = err};
	int rc = 0;
	if (mkdirat(parent, name, 0700) < 0)
		return bk_err_set(err, errno, "cannot create '%s'", stage);
	_cleanup_close_ int dst = openat(parent, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dst < 0)
		rc = bk_err_set(err, errno, "cannot open '%s'", stage);
	if (rc == 0)
		rc = copy_children(lower, dst, &sg);
	_cleanup_close_ int below = open(b->image_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (rc == 0)
		rc = apply_upper(upper, dst, below, &sg);
	/* The top directory: the upper's owner and mode. */
	struct stat st;
	if (rc == 0 &&
	    (fstat(upper, &st) < 0 ||
	     fchown(dst, id_to_session(st.st_uid, base), id_to_session(st.st_gid, base)) < 0 ||
	     fchmod(dst, st.st_mode & 07777) < 0))
		rc = bk_err_set(err, errno, "cannot set the owner of '%s'", stage);
	if (rc < 0) {
		bk_err_prefix(err, "cannot fold the layers of '%s'", p->dir);
		rm_rf(stage, NULL);
		return -1;
	}
	*bytes = sg.bytes;
	*entries = sg.entries;
	return 0;
}

int ns__layer_stage(const struct ns_backend *b, const struct ns_paths *p, int slot, int64_t max,
		    char *stage, size_t len, struct bk_err *err)
{
	int64_t bytes = 0, entries = 0;
	return stage_fold(b, p, sbx__slot_base(slot), max, stage, len, &bytes, &entries, err);
}

/* Whether the upper directory up holds nothing of its own over the
 * image's directory low: only directories the image has too, as they are
 * there (overlay makes them on its way to a copy-up, and a start makes
 * the workspace and the home directory when they are missing). */
static bool upper_adds_nothing(int up, int low)
{
	_cleanup_closedir_ DIR *d = dir_read(up);
	if (d == NULL)
		return false;
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		const char *name = de->d_name;
		if (is_dot(name))
			continue;
		struct stat u, l;
		if (fstatat(up, name, &u, AT_SYMLINK_NOFOLLOW) < 0 ||
		    fstatat(low, name, &l, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISDIR(u.st_mode) ||
		    !S_ISDIR(l.st_mode) || u.st_mode != l.st_mode || u.st_uid != l.st_uid ||
		    u.st_gid != l.st_gid || u.st_mtim.tv_sec != l.st_mtim.tv_sec ||
		    u.st_mtim.tv_nsec != l.st_mtim.tv_nsec || is_opaque(up, name))
			return false;
		_cleanup_close_ int su =
		    openat(up, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		_cleanup_close_ int sl =
		    openat(low, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (su < 0 || sl < 0 || !upper_adds_nothing(su, sl))
			return false;
	}
	return true;
}

/* The image in use as the new one, when the upper changed nothing (a
 * session woken to be read): linked to tmp, no fold. 1 when done. */
static int image_unchanged(const struct ns_backend *b, const struct ns_paths *p, const char *tmp,
			   int64_t *bytes)
{
	char name[200], image[800];
	if (!ns__layer_read(p, name, sizeof(name), bytes))
		return 0;
	_cleanup_close_ int up = open(p->upper, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	_cleanup_close_ int low = open(p->lower, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (up < 0 || low < 0 || !upper_adds_nothing(up, low))
		return 0;
	layer_file(b, name, image, sizeof(image));
	unlink(tmp);
	return link(image, tmp) == 0 ? 1 : 0;
}

/* ---- mkfs.erofs ---- */

static int mkfs(const char *image, const char *dir, struct bk_err *err)
{
	char *argv[] = {"mkfs.erofs",  "--quiet",   "--preserve-mtime",
			(char *)image, (char *)dir, NULL};
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
	pid_t pid;
	int rc = posix_spawnp(&pid, "mkfs.erofs", &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	if (rc != 0)
		return bk_err_set(err, rc, "cannot run mkfs.erofs (is erofs-utils installed?)");
	int status = 0;
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return bk_err_set(err, errno, "cannot wait for mkfs.erofs");
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		return bk_err_kind(err, BK_E_INTERNAL, "mkfs.erofs failed on '%s' (status %d)", dir,
				   status);
	return 0;
}

int ns__layer_build(const struct ns_backend *b, const struct ns_paths *p, int slot,
		    const char *image, int64_t room, int64_t *entries, int64_t *bytes_in,
		    int64_t *bytes_out, struct bk_err *err)
{
	unsigned base = sbx__slot_base(slot);
	char stage[800] = "", tmp[800], src[800];
	int64_t bytes = 0, n = 0;
	snprintf(tmp, sizeof(tmp), "%s.tmp", image);
	int same = ns__is_mountpoint(p->lower) ? image_unchanged(b, p, tmp, &bytes) : 0;
	if (same) {
		/* Nothing to build: the image stays the one it woke from. */
	} else if (ns__is_mountpoint(p->lower)) {
		/* Woken from an image: folded, the staging counted in the room
		 * as the image is. */
		if (stage_fold(b, p, base, room / 2, stage, sizeof(stage), &bytes, &n, err) < 0)
			return -1;
		snprintf(src, sizeof(src), "%s", stage);
	} else {
		/* The upper as it is, through a bind that shows its owners as
		 * the session's. What its disk holds is what the image will. */
		struct statvfs vfs;
		if (statvfs(p->disk, &vfs) < 0)
			return bk_err_set(err, errno, "cannot stat '%s'", p->disk);
		bytes = (int64_t)(vfs.f_blocks - vfs.f_bfree) * (int64_t)vfs.f_frsize;
		/* Its inodes: the upper's entries, and the work directory. */
		n = (int64_t)(vfs.f_files - vfs.f_ffree);
		if (bytes > room)
			return bk_err_kind(
			    err, BK_E_NO_SPACE,
			    "the session's %lld MB would exceed the %lld MB of room left",
			    (long long)(bytes >> 20), (long long)(room >> 20));
		snprintf(src, sizeof(src), "%s/fold", p->dir);
		if (mkdir(src, 0700) < 0 && errno != EEXIST)
			return bk_err_set(err, errno, "cannot create '%s'", src);
		_cleanup_close_ int tree =
		    open_tree(AT_FDCWD, p->upper, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
		if (tree < 0)
			return bk_err_set(err, errno, "cannot clone the mount of '%s'", p->upper);
		if (idmap_attach(tree, src, base, 0, err) < 0) {
			rmdir(src);
			return -1;
		}
	}
	int rc = 0;
	if (!same) {
		unlink(tmp);
		rc = mkfs(tmp, src, err);
		if (stage[0]) {
			rm_rf(stage, NULL);
		} else {
			umount2(src, MNT_DETACH);
			rmdir(src);
		}
	}
	struct stat st;
	if (rc == 0 && stat(tmp, &st) < 0)
		rc = bk_err_set(err, errno, "cannot stat '%s'", tmp);
	if (rc == 0 && !same && st.st_size + (stage[0] ? bytes : 0) > room)
		rc = bk_err_kind(err, BK_E_NO_SPACE,
				 "the image of %lld MB would exceed the %lld MB of room left",
				 (long long)(st.st_size >> 20), (long long)(room >> 20));
	char text[32];
	snprintf(text, sizeof(text), "%lld", (long long)bytes);
	if (rc == 0 && setxattr(tmp, NS_BYTES_XATTR, text, strlen(text), 0) < 0)
		rc = bk_err_set(err, errno, "cannot set an attribute of '%s'", tmp);
	if (rc == 0) {
		_cleanup_close_ int fd = open(tmp, O_RDONLY | O_CLOEXEC);
		if (fd < 0 || fsync(fd) < 0)
			rc = bk_err_set(err, errno, "cannot sync '%s'", tmp);
	}
	if (rc == 0 && rename(tmp, image) < 0)
		rc = bk_err_set(err, errno, "cannot rename '%s'", tmp);
	if (rc < 0) {
		unlink(tmp);
		return -1;
	}
	_cleanup_close_ int dir = open(b->snapshot_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dir >= 0)
		fsync(dir);
	if (entries)
		*entries = n;
	if (bytes_in)
		*bytes_in = bytes;
	if (bytes_out)
		*bytes_out = st.st_size;
	return 0;
}
