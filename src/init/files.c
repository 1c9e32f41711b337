/* File operations inside the workspace, done by init as the requesting
 * user: with that fsuid the kernel drops init's file-system capabilities,
 * so every check is the user's own, and every path is resolved with
 * RESOLVE_BENEATH from the workspace, so no "..", absolute symlink or
 * rename race can reach outside it. Paths arrive relative to /workspace.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/fsuid.h>
#include <sys/stat.h>
#include <unistd.h>

#include "init/init.h"
#include "init/request.h"
#include "util/cleanup.h"
#include "util/util.h"

#define PATH_MAX_LEN 4096

/* Where fd really is, as a path in the sandbox: inside /workspace? */
static bool fd_in_workspace(int fd)
{
	char link[64], target[PATH_MAX_LEN];
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	ssize_t n = readlink(link, target, sizeof(target) - 1);
	if (n < 0)
		return false;
	target[n] = '\0';
	size_t w = strlen(AGENT_WORKSPACE);
	return strncmp(target, AGENT_WORKSPACE, w) == 0 && (target[w] == '/' || target[w] == '\0');
}

/* Opens path (relative to the workspace ws) so that it cannot leave it.
 * RESOLVE_BENEATH settles almost every path; it also refuses an absolute
 * symlink, even one like /workspace/x that points back inside, so those are
 * resolved again within the sandbox's root (RESOLVE_IN_ROOT: ".." and "/"
 * stop at the root) and kept only if what was reached is in /workspace.
 * Either way the kernel resolves, so no race can change the answer between
 * the check and the use. Fails with EXDEV for a path that leaves. */
static int ws_openat(int ws, const char *path, int flags, mode_t mode)
{
	struct open_how how = {
	    .flags = (uint64_t)flags | O_CLOEXEC,
	    .mode = (flags & O_CREAT) ? mode : 0,
	    .resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS,
	};
	int fd = openat2_retry(ws, path, &how);
	if (fd >= 0 || errno != EXDEV || (flags & O_CREAT))
		return fd;
	char full[PATH_MAX_LEN];
	if (snprintf(full, sizeof(full), "%s%s%s", AGENT_WORKSPACE + 1, *path ? "/" : "", path) >=
	    (int)sizeof(full)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	int root = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (root < 0)
		return -1;
	/* Found first as a bare location (O_PATH opens nothing: no FIFO can
	 * block, no device answers), checked, and only then opened for real. */
	how.flags = O_PATH | O_CLOEXEC | ((uint64_t)flags & (O_DIRECTORY | O_NOFOLLOW));
	how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
	int loc = openat2_retry(root, full, &how);
	close(root);
	if (loc < 0)
		return -1;
	if (!fd_in_workspace(loc)) {
		close(loc);
		errno = EXDEV;
		return -1;
	}
	if ((flags & O_PATH) == O_PATH)
		return loc;
	char self[64];
	snprintf(self, sizeof(self), "/proc/self/fd/%d", loc);
	fd = open(self, (flags & ~(O_CREAT | O_EXCL)) | O_CLOEXEC);
	int e = errno;
	close(loc);
	errno = e;
	return fd;
}

static int ws_open(void)
{
	return open(AGENT_WORKSPACE, O_PATH | O_DIRECTORY | O_CLOEXEC);
}

/* Runs as the request's user from here until user_end(). */
static void user_begin(const struct agent_msg *req)
{
	setfsgid((gid_t)agent_msg_get_i64(req, AGENT_T_GID, 1000));
	setfsuid((uid_t)agent_msg_get_i64(req, AGENT_T_UID, 1000));
}

static void user_end(void)
{
	setfsuid(0);
	setfsgid(0);
}

/* Splits rel into its parent, opened beneath ws, and its last component. */
static int open_parent(int ws, const char *rel, const char **base)
{
	const char *slash = strrchr(rel, '/');
	if (slash == NULL) {
		*base = rel;
		return fcntl(ws, F_DUPFD_CLOEXEC, 0);
	}
	char up[PATH_MAX_LEN];
	memcpy(up, rel, (size_t)(slash - rel));
	up[slash - rel] = '\0';
	*base = slash + 1;
	return ws_openat(ws, up, O_PATH | O_DIRECTORY, 0);
}

/* mkdir -p of rel's parents, each created inside a parent already opened
 * beneath the workspace. */
static int make_parents(int ws, const char *rel)
{
	char prefix[PATH_MAX_LEN];
	for (size_t i = 0; rel[i]; i++) {
		if (rel[i] != '/')
			continue;
		memcpy(prefix, rel, i);
		prefix[i] = '\0';
		const char *name;
		_cleanup_close_ int parent = open_parent(ws, prefix, &name);
		if (parent < 0)
			return -errno;
		if (mkdirat(parent, name, 0755) < 0 && errno != EEXIST)
			return -errno;
	}
	return 0;
}

/* Writes to a temporary name and renames it over the target, so that a
 * failed write (a full disk) leaves the old file, not half a new one. */
static int write_beneath(const char *rel, const uint8_t *data, size_t len, mode_t mode)
{
	_cleanup_close_ int ws = ws_open();
	if (ws < 0)
		return -errno;
	int r = make_parents(ws, rel);
	if (r < 0)
		return r;
	/* An existing target must be reachable inside too; a symlink to a
	 * file in the workspace is written through, to that file. */
	_cleanup_close_ int probe = ws_openat(ws, rel, O_PATH, 0);
	if (probe < 0 && errno != ENOENT)
		return -errno;
	struct stat st;
	if (probe >= 0 && fstat(probe, &st) == 0 && S_ISDIR(st.st_mode))
		return -EISDIR;
	char real[PATH_MAX_LEN], link[64];
	snprintf(link, sizeof(link), "/proc/self/fd/%d", probe);
	ssize_t n = probe >= 0 ? readlink(link, real, sizeof(real) - 1) : -1;
	size_t w = strlen(AGENT_WORKSPACE);
	if (n > (ssize_t)w + 1) {
		real[n] = '\0';
		rel = real + w + 1;
	}
	const char *base;
	_cleanup_close_ int parent = open_parent(ws, rel, &base);
	if (parent < 0)
		return -errno;
	/* A symlink whose target does not exist would be replaced, not written
	 * through: refuse it (it may well point out of the workspace). */
	if (probe < 0 && fstatat(parent, base, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
	    S_ISLNK(st.st_mode))
		return -EXDEV;
	char rnd[13], tmp[64];
	if (random_alnum(rnd, 12, NULL) < 0)
		return -EIO;
	snprintf(tmp, sizeof(tmp), ".bunker-write-%s", rnd);
	_cleanup_close_ int fd =
	    openat(parent, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
	if (fd < 0)
		return -errno;
	if (write_full(fd, data, len) < 0 || fsync(fd) < 0) {
		int e = errno;
		unlinkat(parent, tmp, 0);
		return -e;
	}
	if (renameat(parent, tmp, parent, base) < 0) {
		int e = errno;
		unlinkat(parent, tmp, 0);
		return -e;
	}
	return 0;
}

void files_write(const struct agent_msg *req)
{
	char path[PATH_MAX_LEN];
	struct agent_field fd;
	if (!init_req_path(req, path, sizeof(path)) || path[0] == '\0' ||
	    !agent_msg_find(req, AGENT_T_DATA, &fd)) {
		init_result(req->req_id, EINVAL, "write", "path and data are required");
		return;
	}
	user_begin(req);
	int r = write_beneath(path, fd.data, fd.len,
			      (mode_t)agent_msg_get_i64(req, AGENT_T_MODE, 0644));
	user_end();
	init_result(req->req_id, r < 0 ? -r : 0, "write", r < 0 ? strerror(-r) : NULL);
}

void files_answer_read(uint32_t req_id, int fd, int e, int64_t max)
{
	struct stat st;
	if (e == 0 && fstat(fd, &st) < 0)
		e = errno;
	if (e == ENXIO) /* a socket, or a FIFO nobody writes */
		e = EINVAL;
	if (e == 0 && S_ISDIR(st.st_mode))
		e = EISDIR;
	if (e == 0 && !S_ISREG(st.st_mode))
		e = EINVAL;
	if (e == 0 && st.st_size > max)
		e = EFBIG;
	_cleanup_free_ uint8_t *data = e == 0 ? malloc((size_t)st.st_size + 1) : NULL;
	if (e == 0 && data == NULL)
		e = ENOMEM;
	if (e != 0) {
		init_result(req_id, e, "read", strerror(e));
		return;
	}
	/* Read what is there now, never more than the limit: the file may
	 * change while it is read. */
	size_t got = 0;
	while (got < (size_t)st.st_size) {
		ssize_t n = read(fd, data + got, (size_t)st.st_size - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	struct agent_msg m;
	agent_msg_init(&m, AGENT_RESULT, req_id);
	agent_msg_put_i64(&m, AGENT_T_ERRNO, 0);
	if (agent_msg_put(&m, AGENT_T_DATA, data, got) < 0) {
		/* Larger than a frame may carry. */
		agent_msg_release(&m);
		init_result(req_id, EFBIG, "read", strerror(EFBIG));
		return;
	}
	init_send(&m);
	agent_msg_release(&m);
}

void files_read(const struct agent_msg *req)
{
	char path[PATH_MAX_LEN];
	if (!init_req_path(req, path, sizeof(path)) || path[0] == '\0') {
		init_result(req->req_id, EINVAL, "read", "path is required");
		return;
	}
	int64_t max = agent_msg_get_i64(req, AGENT_T_MAX, 10 << 20);
	user_begin(req);
	_cleanup_close_ int ws = ws_open();
	/* O_NONBLOCK: opening a FIFO must not stop init's loop for good (a
	 * regular file reads the same either way). */
	_cleanup_close_ int fd =
	    ws < 0 ? -1 : ws_openat(ws, path, O_RDONLY | O_NONBLOCK | O_NOCTTY, 0);
	int e = fd < 0 ? errno : 0;
	user_end();
	files_answer_read(req->req_id, fd, e, max);
}

struct lister {
	struct agent_msg *m;
	int count;
	bool recursive;
};

static void list_put(struct lister *l, const char *rel, const struct stat *st)
{
	char entry[PATH_MAX_LEN + 64];
	int64_t mtime = (int64_t)st->st_mtim.tv_sec * 1000 + st->st_mtim.tv_nsec / 1000000;
	snprintf(entry, sizeof(entry), "%c\t%lld\t%lld\t%s", S_ISDIR(st->st_mode) ? 'd' : 'f',
		 (long long)st->st_size, (long long)mtime, rel);
	agent_msg_put_str(l->m, AGENT_T_ENTRY, entry);
	l->count++;
}

/* Lists the directory dfd (named prefix, "" for the workspace). Entries
 * are opened with O_NOFOLLOW one name at a time: a symlink is listed, never
 * entered. */
static void list_dir(struct lister *l, int dfd, const char *prefix, int depth)
{
	int fd = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return;
	_cleanup_closedir_ DIR *d = fdopendir(fd);
	if (d == NULL) {
		close(fd);
		return;
	}
	struct dirent *de;
	while ((de = readdir(d)) != NULL && l->count < AGENT_MAX_ENTRIES) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		struct stat st;
		if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			continue;
		char rel[PATH_MAX_LEN];
		if (snprintf(rel, sizeof(rel), "%s%s%s", prefix, *prefix ? "/" : "", de->d_name) >=
		    (int)sizeof(rel))
			continue;
		list_put(l, rel, &st);
		if (l->recursive && S_ISDIR(st.st_mode) && depth < 64) {
			_cleanup_close_ int sub = openat(
			    dirfd(d), de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (sub >= 0)
				list_dir(l, sub, rel, depth + 1);
		}
	}
}

void files_list(const struct agent_msg *req)
{
	char path[PATH_MAX_LEN];
	if (!init_req_path(req, path, sizeof(path))) {
		init_result(req->req_id, EINVAL, "list", "bad path");
		return;
	}
	user_begin(req);
	_cleanup_close_ int ws = ws_open();
	_cleanup_close_ int dfd = ws < 0    ? -1
				  : path[0] ? ws_openat(ws, path, O_RDONLY | O_DIRECTORY, 0)
					    : openat(ws, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int e = dfd < 0 ? errno : 0;
	if (e) {
		user_end();
		init_result(req->req_id, e, "list", strerror(e));
		return;
	}
	struct agent_msg m;
	agent_msg_init(&m, AGENT_RESULT, req->req_id);
	agent_msg_put_i64(&m, AGENT_T_ERRNO, 0);
	struct lister l = {.m = &m, .recursive = agent_msg_get_i64(req, AGENT_T_RECURSIVE, 0) != 0};
	list_dir(&l, dfd, path, 0);
	user_end();
	init_send(&m);
	agent_msg_release(&m);
}

/* rm -r of the directory dfd's contents, one name at a time, never
 * following a symlink. */
static int remove_contents(int dfd, int depth)
{
	if (depth > 256)
		return -ELOOP;
	int fd = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	_cleanup_closedir_ DIR *d = fdopendir(fd);
	if (d == NULL) {
		close(fd);
		return -errno;
	}
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (unlinkat(dirfd(d), de->d_name, 0) == 0)
			continue;
		if (errno != EISDIR && errno != EPERM)
			return -errno;
		_cleanup_close_ int sub =
		    openat(dirfd(d), de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (sub < 0)
			return -errno;
		int r = remove_contents(sub, depth + 1);
		if (r < 0)
			return r;
		if (unlinkat(dirfd(d), de->d_name, AT_REMOVEDIR) < 0)
			return -errno;
	}
	return 0;
}

static int delete_beneath(const char *rel, bool recursive)
{
	_cleanup_close_ int ws = ws_open();
	if (ws < 0)
		return -errno;
	const char *base;
	_cleanup_close_ int parent = open_parent(ws, rel, &base);
	if (parent < 0)
		return -errno;
	if (strcmp(base, ".") == 0 || strcmp(base, "..") == 0 || base[0] == '\0')
		return -EINVAL;
	struct stat st;
	if (fstatat(parent, base, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return -errno;
	if (!S_ISDIR(st.st_mode))
		return unlinkat(parent, base, 0) < 0 ? -errno : 0;
	if (unlinkat(parent, base, AT_REMOVEDIR) == 0)
		return 0;
	if (errno != ENOTEMPTY && errno != EEXIST)
		return -errno;
	if (!recursive)
		return -ENOTEMPTY;
	_cleanup_close_ int dfd =
	    openat(parent, base, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (dfd < 0)
		return -errno;
	int r = remove_contents(dfd, 0);
	if (r < 0)
		return r;
	return unlinkat(parent, base, AT_REMOVEDIR) < 0 ? -errno : 0;
}

void files_delete(const struct agent_msg *req)
{
	char path[PATH_MAX_LEN];
	if (!init_req_path(req, path, sizeof(path)) || path[0] == '\0') {
		init_result(req->req_id, EINVAL, "delete", "path is required");
		return;
	}
	user_begin(req);
	int r = delete_beneath(path, agent_msg_get_i64(req, AGENT_T_RECURSIVE, 0) != 0);
	user_end();
	init_result(req->req_id, r < 0 ? -r : 0, "delete", r < 0 ? strerror(-r) : NULL);
}

void files_stat(const struct agent_msg *req)
{
	char path[PATH_MAX_LEN];
	if (!init_req_path(req, path, sizeof(path))) {
		init_result(req->req_id, EINVAL, "stat", "bad path");
		return;
	}
	user_begin(req);
	_cleanup_close_ int ws = ws_open();
	_cleanup_close_ int fd = ws < 0	   ? -1
				 : path[0] ? ws_openat(ws, path, O_PATH, 0)
					   : fcntl(ws, F_DUPFD_CLOEXEC, 0);
	int e = fd < 0 ? errno : 0;
	user_end();
	struct stat st;
	if (e == 0 && fstat(fd, &st) < 0)
		e = errno;
	if (e) {
		init_result(req->req_id, e, "stat", strerror(e));
		return;
	}
	struct agent_msg m;
	agent_msg_init(&m, AGENT_RESULT, req->req_id);
	agent_msg_put_i64(&m, AGENT_T_ERRNO, 0);
	agent_msg_put_i64(&m, AGENT_T_MODE, st.st_mode);
	init_send(&m);
	agent_msg_release(&m);
}
