/* Files anywhere in the session's own file system, for the InstaVM
 * dialect's upload and download (API.md: "absolute paths name that path in
 * the session's own filesystem, as on a VM").
 *
 * init does them as the session's root (root of its user namespace, with
 * the file-system capabilities PID 1 keeps), so that a path outside the
 * workspace can be written (/app/x.py, /tmp/data.csv). What that root can
 * reach is the session's own: the image's files are owned by ids the
 * namespace does not map, so they can be read but not written (EACCES, and
 * EROFS for the host's /usr).
 *
 * Every path is resolved by the kernel inside the sandbox's root
 * (RESOLVE_IN_ROOT: ".." and absolute symlinks stop at "/"), never through
 * a magic link, and never lands in /proc, /sys or /dev: those are the
 * kernel's and init's own (/proc/1/mem is init's memory), whatever
 * symlink leads there. What a transfer creates (the file, missing parent
 * directories) belongs to the session's user, who runs executions.
 *
 * An upload comes in chunks: the first (OFFSET 0) creates a temporary file
 * beside the target, named by the transfer's TOKEN, the others append to
 * it, and the FINAL one renames it over the target, so that a transfer
 * that fails half-way (a full disk, a client gone: ABORT) leaves the old
 * file, never half a new one.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/fsuid.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include "init/init.h"
#include "init/request.h"
#include "util/cleanup.h"
#include "util/util.h"

#define PATH_LEN 4096

static int in_root(const char *rel, uint64_t flags, mode_t mode)
{
	_cleanup_close_ int root = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (root < 0)
		return -1;
	struct open_how how = {
	    .flags = flags | O_CLOEXEC,
	    .mode = (flags & O_CREAT) ? mode : 0,
	    .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
	};
	return openat2_retry(root, *rel ? rel : ".", &how);
}

/* Whether fd is in /proc, /sys or /dev, or on a file system of the
 * kernel's (wherever it is mounted). Such a path is refused with EXDEV,
 * an errno no other step of a transfer gives, so that the daemon can say
 * which rule refused it. */
static bool forbidden(int fd)
{
	struct statfs sf;
	if (fstatfs(fd, &sf) < 0)
		return true;
	switch (sf.f_type) {
	case PROC_SUPER_MAGIC:
	case SYSFS_MAGIC:
	case DEVPTS_SUPER_MAGIC:
	case CGROUP_SUPER_MAGIC:
	case CGROUP2_SUPER_MAGIC:
	case DEBUGFS_MAGIC:
	case TRACEFS_MAGIC:
	case SECURITYFS_MAGIC:
	case BPF_FS_MAGIC:
		return true;
	}
	char link[64], where[PATH_LEN];
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	ssize_t n = readlink(link, where, sizeof(where) - 1);
	if (n < 0)
		return true;
	where[n] = '\0';
	static const char *const kernel[] = {"/proc", "/sys", "/dev"};
	for (size_t i = 0; i < ARRAY_SIZE(kernel); i++) {
		size_t k = strlen(kernel[i]);
		if (strncmp(where, kernel[i], k) == 0 && (where[k] == '/' || where[k] == '\0'))
			return true;
	}
	return false;
}

/* Opens rel's parent directory, creating what is missing (owned by
 * uid:gid, 0755); *base receives rel's last component. */
static int parent_open(char *rel, const char **base, uid_t uid, gid_t gid)
{
	char *slash = strrchr(rel, '/');
	*base = slash ? slash + 1 : rel;
	if (**base == '\0' || strcmp(*base, ".") == 0 || strcmp(*base, "..") == 0)
		return errno = EISDIR, -1;
	int dir = in_root("", O_PATH | O_DIRECTORY, 0);
	for (char *p = rel; dir >= 0 && slash && p <= slash;) {
		char *end = strchr(p, '/');
		*end = '\0';
		if (*p != '\0' && strcmp(p, ".") != 0) {
			if (mkdirat(dir, p, 0755) == 0) {
				/* Should it fail, the directory stays root's: the
				 * write below works all the same. */
				if (fchownat(dir, p, uid, gid, AT_SYMLINK_NOFOLLOW) < 0)
					errno = 0;
			} else if (errno != EEXIST) {
				int e = errno;
				close(dir);
				*end = '/';
				return errno = e, -1;
			}
		}
		*end = '/';
		/* Down one level, again from the root: the kernel resolves the
		 * whole prefix, symlinks included, inside it. */
		char prefix[PATH_LEN];
		snprintf(prefix, sizeof(prefix), "%.*s", (int)(end - rel), rel);
		close(dir);
		dir = in_root(prefix, O_PATH | O_DIRECTORY, 0);
		p = end + 1;
	}
	if (dir >= 0 && forbidden(dir)) {
		close(dir);
		return errno = EXDEV, -1;
	}
	return dir;
}

/* One chunk of a transfer; -errno on failure. */
static int write_chunk(const struct agent_msg *req, char *rel)
{
	uid_t uid = (uid_t)agent_msg_get_i64(req, AGENT_T_UID, 1000);
	gid_t gid = (gid_t)agent_msg_get_i64(req, AGENT_T_GID, 1000);
	int64_t offset = agent_msg_get_i64(req, AGENT_T_OFFSET, 0);
	bool final = agent_msg_get_i64(req, AGENT_T_FINAL, 0) != 0;
	bool abort_it = agent_msg_get_i64(req, AGENT_T_ABORT, 0) != 0;
	struct agent_field token, data = {0};
	if (!agent_msg_find(req, AGENT_T_TOKEN, &token) || token.len == 0 || token.len > 32 ||
	    memchr(token.data, '/', token.len) || memchr(token.data, 0, token.len) || offset < 0)
		return -EINVAL;
	agent_msg_find(req, AGENT_T_DATA, &data);
	char tmp[64];
	snprintf(tmp, sizeof(tmp), ".bunker-upload-%.*s", (int)token.len, token.data);
	const char *base;
	_cleanup_close_ int dir = parent_open(rel, &base, uid, gid);
	if (dir < 0)
		return -errno;
	if (abort_it)
		return unlinkat(dir, tmp, 0) < 0 && errno != ENOENT ? -errno : 0;
	int flags = O_WRONLY | O_NOFOLLOW | O_CLOEXEC | (offset == 0 ? O_CREAT | O_EXCL : 0);
	_cleanup_close_ int fd = openat(dir, tmp, flags, 0644);
	if (fd < 0)
		return -errno;
	struct stat st;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size != offset)
		return -EINVAL;
	if (offset == 0 && fchown(fd, uid, gid) < 0)
		return -errno;
	size_t done = 0;
	while (done < data.len) {
		ssize_t n = pwrite(fd, data.data + done, data.len - done, offset + (off_t)done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int e = errno;
			unlinkat(dir, tmp, 0);
			return -e;
		}
		done += (size_t)n;
	}
	if (!final)
		return 0;
	/* An existing target must be a file of the session's, reachable
	 * without leaving the root; a directory is refused. */
	struct stat target;
	if (fstatat(dir, base, &target, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(target.st_mode)) {
		unlinkat(dir, tmp, 0);
		return -EISDIR;
	}
	if (fsync(fd) < 0 || renameat(dir, tmp, dir, base) < 0) {
		int e = errno;
		unlinkat(dir, tmp, 0);
		return -e;
	}
	return 0;
}

void rootfiles_write(const struct agent_msg *req)
{
	char rel[PATH_LEN];
	if (!init_req_abs_path(req, rel, sizeof(rel))) {
		init_result(req->req_id, EINVAL, "write", "an absolute path is required");
		return;
	}
	/* As the session's root: fsuid 0 of its namespace. */
	setfsuid(0);
	setfsgid(0);
	int r = write_chunk(req, rel);
	init_result(req->req_id, r < 0 ? -r : 0, "write", r < 0 ? strerror(-r) : NULL);
}

void rootfiles_read(const struct agent_msg *req)
{
	char rel[PATH_LEN];
	if (!init_req_abs_path(req, rel, sizeof(rel))) {
		init_result(req->req_id, EINVAL, "read", "an absolute path is required");
		return;
	}
	setfsuid(0);
	setfsgid(0);
	/* O_NONBLOCK: a FIFO must not stop init's loop. */
	_cleanup_close_ int fd = in_root(rel, O_RDONLY | O_NONBLOCK | O_NOCTTY, 0);
	int e = fd < 0 ? errno : 0;
	if (e == 0 && forbidden(fd))
		e = EXDEV;
	files_answer_read(req, fd, e);
}
