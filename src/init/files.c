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

/* Strict UTF-8 as jansson checks it (no overlong forms, no surrogates,
 * nothing past U+10FFFF), fed a buffer at a time: need is how many
 * continuation bytes the sequence under way still wants. */
struct utf8_scan {
	int need;
	uint32_t cp, min;
	bool bad;
};

static void utf8_feed(struct utf8_scan *u, const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n && !u->bad; i++) {
		uint8_t c = p[i];
		if (u->need > 0) {
			if ((c & 0xc0) != 0x80) {
				u->bad = true;
				break;
			}
			u->cp = (u->cp << 6) | (c & 0x3f);
			if (--u->need == 0 && (u->cp < u->min || u->cp > 0x10ffff ||
					       (u->cp >= 0xd800 && u->cp <= 0xdfff)))
				u->bad = true;
			continue;
		}
		if (c < 0x80)
			continue;
		if (c >= 0xc2 && c <= 0xdf)
			*u = (struct utf8_scan){.need = 1, .cp = c & 0x1f, .min = 0x80};
		else if (c >= 0xe0 && c <= 0xef)
			*u = (struct utf8_scan){.need = 2, .cp = c & 0x0f, .min = 0x800};
		else if (c >= 0xf0 && c <= 0xf4)
			*u = (struct utf8_scan){.need = 3, .cp = c & 0x07, .min = 0x10000};
		else
			u->bad = true;
	}
}

static void file_id_of(const struct stat *st, struct agent_file_id *id)
{
	*id = (struct agent_file_id){
	    .dev = (int64_t)st->st_dev,
	    .ino = (int64_t)st->st_ino,
	    .size = (int64_t)st->st_size,
	    .mtime_ns = (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec,
	    .ctime_ns = (int64_t)st->st_ctim.tv_sec * 1000000000 + st->st_ctim.tv_nsec,
	};
}

/* Reads fd to its end: whether it is UTF-8 as a whole (-errno on a read
 * error). init's loop waits meanwhile, as long as reading the file takes. */
static int utf8_whole(int fd, int64_t size)
{
	_cleanup_free_ uint8_t *buf = malloc(1 << 16);
	if (buf == NULL)
		return -ENOMEM;
	struct utf8_scan u = {0};
	int64_t off = 0;
	while (off < size && !u.bad) {
		ssize_t n = pread(fd, buf, 1 << 16, off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			break;
		utf8_feed(&u, buf, (size_t)n);
		off += n;
	}
	return !u.bad && u.need == 0;
}

void files_answer_read(const struct agent_msg *req, int fd, int e)
{
	uint32_t req_id = req->req_id;
	int64_t max = agent_msg_get_i64(req, AGENT_T_MAX, 10 << 20);
	int64_t offset = agent_msg_get_i64(req, AGENT_T_OFFSET, 0);
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
	if (e == 0 && (offset < 0 || offset > st.st_size))
		e = EINVAL;
	struct agent_file_id id, want;
	struct agent_field f;
	if (e == 0) {
		file_id_of(&st, &id);
		if (agent_msg_find(req, AGENT_T_FILE_ID, &f) && f.len == sizeof(want)) {
			memcpy(&want, f.data, sizeof(want));
			if (memcmp(&want, &id, sizeof(id)) != 0)
				e = ESTALE;
		}
	}
	int utf8 = -1;
	if (e == 0 && agent_msg_get_i64(req, AGENT_T_UTF8, 0)) {
		utf8 = utf8_whole(fd, st.st_size);
		/* A file written meanwhile is not the one that was checked. */
		struct stat again;
		if (utf8 < 0)
			e = -utf8;
		else if (fstat(fd, &again) < 0)
			e = errno;
		else if (file_id_of(&again, &want), memcmp(&want, &id, sizeof(id)) != 0)
			e = ESTALE;
	}
	/* One piece: LENGTH bytes from OFFSET, never past the size the file
	 * had when it was opened (it may grow while it is read). */
	int64_t len = 0;
	if (e == 0 && agent_msg_find(req, AGENT_T_LENGTH, &f)) {
		len = agent_field_i64(&f);
		if (len < 0 || len > AGENT_READ_PIECE_MAX)
			e = EINVAL;
	} else if (e == 0) {
		len = st.st_size;
	}
	if (e == 0 && len > st.st_size - offset)
		len = st.st_size - offset;
	_cleanup_free_ uint8_t *data = e == 0 ? malloc((size_t)len + 1) : NULL;
	if (e == 0 && data == NULL)
		e = ENOMEM;
	if (e != 0) {
		init_result(req_id, e, "read", strerror(e));
		return;
	}
	size_t got = 0;
	while (got < (size_t)len) {
		ssize_t n = pread(fd, data + got, (size_t)len - got, offset + (off_t)got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	struct agent_msg m;
	agent_msg_init(&m, AGENT_RESULT, req_id);
	agent_msg_put_i64(&m, AGENT_T_ERRNO, 0);
	agent_msg_put_i64(&m, AGENT_T_SIZE, st.st_size);
	agent_msg_put(&m, AGENT_T_FILE_ID, &id, sizeof(id));
	if (utf8 >= 0)
		agent_msg_put_i64(&m, AGENT_T_UTF8, utf8);
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
	user_begin(req);
	_cleanup_close_ int ws = ws_open();
	/* O_NONBLOCK: opening a FIFO must not stop init's loop for good (a
	 * regular file reads the same either way). */
	_cleanup_close_ int fd =
	    ws < 0 ? -1 : ws_openat(ws, path, O_RDONLY | O_NONBLOCK | O_NOCTTY, 0);
	int e = fd < 0 ? errno : 0;
	user_end();
	files_answer_read(req, fd, e);
}

/* A listing's walk. Entries come out in strcmp order of their whole
 * paths, whatever the tree, so that a page after a cursor is the next one:
 * inside a directory, each child is an item "name" and, when it is a
 * directory to go into, a second item "name/" for everything below it
 * ("a-b" sorts between "a" and "a/x"), and the items are visited sorted.
 * What the walk holds is one directory's names per level it is down
 * (AGENT_LIST_NAMES_MAX in all) and the page it answers. */
struct walk {
	struct agent_msg *m;
	bool recursive;
	const char *cursor; /* NULL: from the start */
	int64_t skip;	    /* entries after the cursor still to pass over */
	int64_t limit, answered;
	int64_t total;
	bool more;
	size_t names; /* bytes of names held, over every level */
	int err;      /* E2BIG: a directory's names past the budget */
};

struct walk_item {
	uint32_t off; /* of its name in the level's arena */
	bool below;   /* the "name/" item: what is under directory name */
};

struct walk_level {
	char *arena;
	size_t len, cap;
	struct walk_item *items;
	size_t n, n_cap;
};

static bool walk_done(const struct walk *w)
{
	return w->err != 0 || (w->answered == w->limit && w->more && w->total >= AGENT_MAX_ENTRIES);
}

static int walk_add(struct walk *w, struct walk_level *lv, const char *name, bool below)
{
	size_t nl = strlen(name) + 1;
	if (w->names + nl > AGENT_LIST_NAMES_MAX)
		return -E2BIG;
	if (lv->len + nl > lv->cap) {
		size_t cap = lv->cap ? lv->cap * 2 : 4096;
		while (cap < lv->len + nl)
			cap *= 2;
		char *p = realloc(lv->arena, cap);
		if (p == NULL)
			return -ENOMEM;
		lv->arena = p;
		lv->cap = cap;
	}
	if (lv->n == lv->n_cap) {
		size_t cap = lv->n_cap ? lv->n_cap * 2 : 64;
		struct walk_item *p = realloc(lv->items, cap * sizeof(*p));
		if (p == NULL)
			return -ENOMEM;
		lv->items = p;
		lv->n_cap = cap;
	}
	memcpy(lv->arena + lv->len, name, nl);
	lv->items[lv->n++] = (struct walk_item){.off = (uint32_t)lv->len, .below = below};
	lv->len += nl;
	w->names += nl;
	return 0;
}

/* Compares two items of one level (arena holds their names) as strcmp
 * compares their paths: "name", or "name/..." for what is below. Names
 * hold no '/', so the first byte past the shorter name decides. */
static int walk_item_cmp(const void *a, const void *b, void *arena)
{
	const struct walk_item *x = a, *y = b;
	const char *p = (const char *)arena + x->off, *q = (const char *)arena + y->off;
	while (*p && *p == *q)
		p++, q++;
	int cp = *p ? (unsigned char)*p : (x->below ? '/' : 0);
	int cq = *q ? (unsigned char)*q : (y->below ? '/' : 0);
	return cp - cq;
}

static void walk_put(struct walk *w, const char *rel, const struct stat *st)
{
	char entry[PATH_MAX_LEN + 64];
	int64_t mtime = (int64_t)st->st_mtim.tv_sec * 1000 + st->st_mtim.tv_nsec / 1000000;
	snprintf(entry, sizeof(entry), "%c\t%lld\t%lld\t%s", S_ISDIR(st->st_mode) ? 'd' : 'f',
		 (long long)st->st_size, (long long)mtime, rel);
	agent_msg_put_str(w->m, AGENT_T_ENTRY, entry);
}

/* An entry of the listing: counted, and answered when it is on the page. */
static void walk_entry(struct walk *w, int dfd, const char *name, const char *rel)
{
	w->total++;
	if (w->cursor && strcmp(rel, w->cursor) <= 0)
		return;
	if (w->skip > 0) {
		w->skip--;
		return;
	}
	if (w->answered == w->limit) {
		w->more = true;
		return;
	}
	struct stat st;
	if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return;
	walk_put(w, rel, &st);
	w->answered++;
}

/* Walks the directory dfd (named prefix, "" for the workspace). Entries
 * are opened with O_NOFOLLOW one name at a time: a symlink is listed, never
 * entered. */
static void walk_dir(struct walk *w, int dfd, const char *prefix, int depth)
{
	int fd = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return;
	_cleanup_closedir_ DIR *d = fdopendir(fd);
	if (d == NULL) {
		close(fd);
		return;
	}
	struct walk_level lv = {0};
	bool descend = w->recursive && depth < 64;
	struct dirent *de;
	int r = 0;
	while (r == 0 && (de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		bool dir = de->d_type == DT_DIR;
		if (de->d_type == DT_UNKNOWN) {
			struct stat st;
			dir = fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
			      S_ISDIR(st.st_mode);
		}
		r = walk_add(w, &lv, de->d_name, false);
		if (r == 0 && dir && descend)
			r = walk_add(w, &lv, de->d_name, true);
	}
	if (r < 0)
		w->err = -r;
	if (lv.n > 1)
		qsort_r(lv.items, lv.n, sizeof(*lv.items), walk_item_cmp, lv.arena);
	for (size_t i = 0; i < lv.n && !walk_done(w); i++) {
		const char *name = lv.arena + lv.items[i].off;
		char rel[PATH_MAX_LEN];
		if (snprintf(rel, sizeof(rel), "%s%s%s", prefix, *prefix ? "/" : "", name) >=
		    (int)sizeof(rel))
			continue;
		if (!lv.items[i].below) {
			walk_entry(w, dirfd(d), name, rel);
			continue;
		}
		_cleanup_close_ int sub =
		    openat(dirfd(d), name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (sub >= 0)
			walk_dir(w, sub, rel, depth + 1);
	}
	w->names -= lv.len;
	free(lv.arena);
	free(lv.items);
}

void files_list(const struct agent_msg *req)
{
	char path[PATH_MAX_LEN], cursor[PATH_MAX_LEN + 8];
	struct agent_field cf;
	bool has_cursor = agent_msg_find(req, AGENT_T_CURSOR, &cf);
	if (!init_req_path(req, path, sizeof(path)) ||
	    (has_cursor && (cf.len >= sizeof(cursor) || memchr(cf.data, 0, cf.len)))) {
		init_result(req->req_id, EINVAL, "list", "bad path");
		return;
	}
	if (has_cursor) {
		memcpy(cursor, cf.data, cf.len);
		cursor[cf.len] = '\0';
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
	int64_t limit = agent_msg_get_i64(req, AGENT_T_LIMIT, AGENT_LIST_LIMIT_MAX);
	struct agent_msg m;
	agent_msg_init(&m, AGENT_RESULT, req->req_id);
	agent_msg_put_i64(&m, AGENT_T_ERRNO, 0);
	struct walk w = {
	    .m = &m,
	    .recursive = agent_msg_get_i64(req, AGENT_T_RECURSIVE, 0) != 0,
	    .cursor = has_cursor ? cursor : NULL,
	    .skip = agent_msg_get_i64(req, AGENT_T_OFFSET, 0),
	    .limit = limit < 0 || limit > AGENT_LIST_LIMIT_MAX ? AGENT_LIST_LIMIT_MAX : limit,
	};
	walk_dir(&w, dfd, path, 0);
	user_end();
	if (w.err) {
		agent_msg_release(&m);
		init_result(req->req_id, w.err, "list", strerror(w.err));
		return;
	}
	agent_msg_put_i64(&m, AGENT_T_TOTAL, w.total);
	agent_msg_put_i64(&m, AGENT_T_MORE, w.more);
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
