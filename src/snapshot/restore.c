/* Bringing a snapshot back: libarchive reads it, and every entry is made
 * with the *at() calls relative to a directory descriptor, one name at a
 * time.
 *
 * libarchive's own writer (archive_write_disk) reaches paths longer than
 * PATH_MAX by chdir() into them, which in a daemon of many threads moves
 * every thread's working directory, and it resolves hard links and
 * deferred directory times by the whole path, which fails past PATH_MAX.
 * So the writing is ours: a cursor (an open directory and its path) moves
 * from the directory of one entry to the next, down with
 * openat(O_NOFOLLOW | O_DIRECTORY) and up with "..", so no name of the
 * snapshot can lead out of the destination: ".." in a name and absolute
 * names are refused, and a symlink on the way makes openat() fail instead
 * of being followed. Directories get their times once nothing more is
 * written into them.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <archive_entry.h>

#include "snapshot/snapshot_int.h"
#include "util/cleanup.h"
#include "util/util.h"

/* ---- names ---- */

/* A snapshot's name made canonical into sp ("/a/b", "" for the top):
 * relative, no "..", "." and empty components dropped. */
static int name_canon(const char *name, struct buf *sp, struct bk_err *err)
{
	snapshot__path_cut(sp, 0);
	if (name == NULL || name[0] == '/')
		return bk_err_kind(err, BK_E_INTERNAL, "names '%.200s', outside it",
				   name ? name : "");
	for (const char *p = name; *p;) {
		const char *end = strchrnul(p, '/');
		size_t n = (size_t)(end - p);
		if (n == 2 && p[0] == '.' && p[1] == '.')
			return bk_err_kind(err, BK_E_INTERNAL, "names '%.200s', outside it", name);
		if (n > 255)
			return bk_err_kind(err, BK_E_INTERNAL, "names '%.200s', too long a name",
					   name);
		if (n > 0 && !(n == 1 && p[0] == '.')) {
			char comp[256];
			memcpy(comp, p, n);
			comp[n] = '\0';
			if (snapshot__path_push(sp, comp, err) < 0)
				return -1;
		}
		p = *end ? end + 1 : end;
	}
	return 0;
}

/* The number of components of "/a/b" (2) in its first len bytes. */
static size_t depth_of(const char *p, size_t len)
{
	size_t d = 0;
	for (size_t i = 0; i < len; i++)
		d += p[i] == '/';
	return d;
}

/* The length of the first d components of "/a/b/c". */
static size_t prefix_len(const char *p, size_t len, size_t d)
{
	size_t i = 0;
	for (size_t seen = 0; i < len; i++)
		if (p[i] == '/' && seen++ == d)
			break;
	return i;
}

/* ---- the cursor ---- */

struct cursor {
	int top;	 /* the destination (borrowed) */
	int fd;		 /* the directory at path */
	struct buf path; /* "" for the top */
	struct {
		dev_t dev;
		ino_t ino;
	} * ids; /* of each directory on the path, the top first */
	size_t ids_cap;
};

static int cursor_note(struct cursor *c, size_t depth, struct bk_err *err)
{
	if (depth >= c->ids_cap) {
		size_t cap = c->ids_cap ? c->ids_cap * 2 : 64;
		while (cap <= depth)
			cap *= 2;
		void *p = realloc(c->ids, cap * sizeof(*c->ids));
		if (p == NULL)
			return bk_err_set(err, ENOMEM, "cannot restore");
		c->ids = p;
		c->ids_cap = cap;
	}
	struct stat st;
	if (fstat(c->fd, &st) < 0)
		return bk_err_set(err, errno, "cannot stat a restored directory");
	c->ids[depth].dev = st.st_dev;
	c->ids[depth].ino = st.st_ino;
	return 0;
}

/* Moves the cursor to the directory dir (a canonical path), making the
 * directories that are missing when create is set. */
static int cursor_move(struct cursor *c, const char *dir, size_t len, bool create,
		       struct bk_err *err)
{
	/* The longest common prefix, at a boundary of both. */
	size_t common = 0;
	for (size_t i = 0;; i++) {
		bool end_c = i == c->path.len || c->path.data[i] == '/';
		bool end_d = i == len || dir[i] == '/';
		if (end_c && end_d)
			common = i;
		if (i == c->path.len || i == len || c->path.data[i] != dir[i])
			break;
	}
	size_t keep = depth_of(dir, common), have = depth_of(c->path.data, c->path.len);
	if (have - keep > keep) {
		/* Nearer from the top than by going up. */
		int fd = dup(c->top);
		if (fd < 0)
			return bk_err_set(err, errno, "cannot restore");
		close(c->fd);
		c->fd = fd;
		snapshot__path_cut(&c->path, 0);
		common = 0;
		keep = have = 0;
	}
	for (; have > keep; have--) {
		int up = openat(c->fd, "..", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		struct stat st;
		if (up < 0 || fstat(up, &st) < 0 || st.st_dev != c->ids[have - 1].dev ||
		    st.st_ino != c->ids[have - 1].ino) {
			if (up >= 0)
				close(up);
			return bk_err_kind(err, BK_E_INTERNAL, "the destination changed meanwhile");
		}
		close(c->fd);
		c->fd = up;
	}
	snapshot__path_cut(&c->path, common);
	for (const char *p = dir + common; p < dir + len;) {
		p++; /* the '/' */
		const char *end = memchr(p, '/', (size_t)(dir + len - p));
		if (end == NULL)
			end = dir + len;
		char comp[256];
		memcpy(comp, p, (size_t)(end - p));
		comp[end - p] = '\0';
		int fd = openat(c->fd, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0 && errno == ENOENT && create) {
			if (mkdirat(c->fd, comp, 0700) < 0 && errno != EEXIST)
				return bk_err_set(err, errno, "cannot create '.%.*s'",
						  (int)(end - dir), dir);
			fd = openat(c->fd, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		}
		if (fd < 0)
			return errno == ELOOP || errno == ENOTDIR
				   ? bk_err_kind(err, BK_E_INTERNAL,
						 "would write through '.%.*s', not a directory",
						 (int)(end - dir), dir)
				   : bk_err_set(err, errno, "cannot open '.%.*s'", (int)(end - dir),
						dir);
		close(c->fd);
		c->fd = fd;
		if (snapshot__path_push(&c->path, comp, err) < 0 ||
		    cursor_note(c, depth_of(c->path.data, c->path.len), err) < 0)
			return -1;
		p = end;
	}
	return 0;
}

/* ---- directory times, once their directory is complete ---- */

/* Directories whose times wait: each an ancestor of the next, so that its
 * path is the first `depth` components of the last entry's. */
struct pending {
	struct {
		size_t depth;
		struct timespec ts[2];
	} * v;
	size_t n, cap;
};

/* Sets the times of every waiting directory that is not an ancestor of
 * (nor) the entry next (NULL: all of them); last is the entry before. */
static int pending_apply(struct pending *pd, struct cursor *c, const struct buf *last,
			 const struct buf *next, struct bk_err *err)
{
	while (pd->n > 0) {
		size_t d = pd->v[pd->n - 1].depth;
		size_t len = prefix_len(last->data, last->len, d);
		bool ancestor = next && next->len >= len &&
				memcmp(next->data, last->data, len) == 0 &&
				(next->len == len || next->data[len] == '/');
		if (ancestor)
			return 0;
		const struct timespec *ts = pd->v[pd->n - 1].ts;
		if (d == 0) {
			if (futimens(c->top, ts) < 0)
				return bk_err_set(err, errno, "cannot set the times of the top");
		} else {
			size_t plen = prefix_len(last->data, last->len, d - 1);
			if (cursor_move(c, last->data, plen, false, err) < 0)
				return -1;
			char base[256];
			snprintf(base, sizeof(base), "%.*s", (int)(len - plen - 1),
				 last->data + plen + 1);
			if (utimensat(c->fd, base, ts, AT_SYMLINK_NOFOLLOW) < 0)
				return bk_err_set(err, errno, "cannot set the times of '.%.*s'",
						  (int)len, last->data);
		}
		pd->n--;
	}
	return 0;
}

static int pending_push(struct pending *pd, size_t depth, const struct timespec ts[2],
			struct bk_err *err)
{
	if (pd->n == pd->cap) {
		size_t cap = pd->cap ? pd->cap * 2 : 64;
		void *p = realloc(pd->v, cap * sizeof(*pd->v));
		if (p == NULL)
			return bk_err_set(err, ENOMEM, "cannot restore");
		pd->v = p;
		pd->cap = cap;
	}
	pd->v[pd->n].depth = depth;
	memcpy(pd->v[pd->n].ts, ts, sizeof(pd->v[pd->n].ts));
	pd->n++;
	return 0;
}

/* ---- one entry ---- */

struct restorer {
	struct archive *in;
	const char *path; /* the snapshot, for messages */
	unsigned id_base;
	struct cursor c;
	struct pending pending;
	struct buf name, last, link;
};

/* The extended attributes of e onto the object (fd, or name in dirfd when
 * fd is -1). */
static int xattrs_apply(struct archive_entry *e, int fd, int dirfd, const char *name,
			struct bk_err *err)
{
	char proc[320];
	if (fd < 0)
		snapshot__proc_name(dirfd, name, proc, sizeof(proc));
	const char *k;
	const void *v;
	size_t n;
	archive_entry_xattr_reset(e);
	while (archive_entry_xattr_next(e, &k, &v, &n) == ARCHIVE_OK) {
		if (k == NULL || snapshot__xattr_skipped(k))
			continue;
		int r = fd >= 0 ? fsetxattr(fd, k, v, n, 0) : lsetxattr(proc, k, v, n, 0);
		if (r < 0 && errno != ENOTSUP)
			return bk_err_set(err, errno, "cannot set attribute '%s' of '%s'", k,
					  archive_entry_pathname(e));
	}
	return 0;
}

static void entry_times(struct archive_entry *e, struct timespec ts[2])
{
	ts[1] = (struct timespec){archive_entry_mtime(e), archive_entry_mtime_nsec(e)};
	ts[0] = archive_entry_atime_is_set(e)
		    ? (struct timespec){archive_entry_atime(e), archive_entry_atime_nsec(e)}
		    : ts[1];
}

/* Owner, mode and attributes of a directory or regular file open at fd
 * (the owner first: a change of owner clears set-user-id bits). */
static int meta_apply_fd(struct restorer *r, struct archive_entry *e, int fd, struct bk_err *err)
{
	uid_t uid = (uid_t)snapshot__id_to_host(archive_entry_uid(e), r->id_base);
	gid_t gid = (gid_t)snapshot__id_to_host(archive_entry_gid(e), r->id_base);
	if (fchown(fd, uid, gid) < 0 || fchmod(fd, archive_entry_perm(e)) < 0)
		return bk_err_set(err, errno, "cannot set the owner of '%s'",
				  archive_entry_pathname(e));
	return xattrs_apply(e, fd, -1, NULL, err);
}

/* Writes the content of a regular file at the offsets the snapshot gives
 * (holes stay holes), then its size. */
static int data_restore(struct restorer *r, struct archive_entry *e, int fd, struct bk_err *err)
{
	const void *buf;
	size_t len;
	la_int64_t off;
	int rc;
	while ((rc = archive_read_data_block(r->in, &buf, &len, &off)) == ARCHIVE_OK) {
		for (size_t done = 0; done < len;) {
			ssize_t w =
			    pwrite(fd, (const char *)buf + done, len - done, off + (off_t)done);
			if (w < 0 && errno == EINTR)
				continue;
			if (w < 0)
				return errno == ENOSPC || errno == EDQUOT
					   ? bk_err_kind(err, BK_E_NO_SPACE,
							 "no space left restoring '%s'",
							 archive_entry_pathname(e))
					   : bk_err_set(err, errno, "cannot write '%s'",
							archive_entry_pathname(e));
			done += (size_t)w;
		}
	}
	if (rc < ARCHIVE_WARN)
		return bk_err_kind(err, BK_E_INTERNAL, "cannot read snapshot '%s': %s", r->path,
				   archive_error_string(r->in));
	if (ftruncate(fd, archive_entry_size(e)) < 0)
		return bk_err_set(err, errno, "cannot size '%s'", archive_entry_pathname(e));
	return 0;
}

/* Removes what is at base unless it is a directory. */
static int clear_name(int dirfd, const char *base, const char *name, struct bk_err *err)
{
	if (unlinkat(dirfd, base, 0) < 0 && errno != ENOENT)
		return bk_err_set(err, errno, "cannot replace '%s'", name);
	return 0;
}

/* A hard link to an entry restored before. */
static int link_restore(struct restorer *r, struct archive_entry *e, const char *base,
			struct bk_err *err)
{
	if (name_canon(archive_entry_hardlink(e), &r->link, err) < 0)
		return -1;
	if (r->link.len == 0)
		return bk_err_kind(err, BK_E_INTERNAL, "links '%s' to the top",
				   archive_entry_pathname(e));
	/* The target's directory through a second cursor, from the top. */
	struct cursor t = {.top = r->c.top, .fd = dup(r->c.top)};
	if (t.fd < 0)
		return bk_err_set(err, errno, "cannot restore");
	if (snapshot__path_init(&t.path, err) < 0) {
		close(t.fd);
		return -1;
	}
	const char *slash = strrchr(r->link.data, '/');
	size_t plen = (size_t)(slash - r->link.data);
	int rc = cursor_move(&t, r->link.data, plen, false, err);
	if (rc == 0 && clear_name(r->c.fd, base, archive_entry_pathname(e), err) < 0)
		rc = -1;
	if (rc == 0 && linkat(t.fd, slash + 1, r->c.fd, base, 0) < 0)
		rc = bk_err_set(err, errno, "cannot link '%s'", archive_entry_pathname(e));
	close(t.fd);
	buf_free(&t.path);
	free(t.ids);
	return rc;
}

static int dir_restore(struct restorer *r, struct archive_entry *e, const char *base,
		       struct bk_err *err)
{
	_cleanup_close_ int fd = -1;
	if (base == NULL) {
		fd = dup(r->c.top);
	} else {
		struct stat st;
		if (fstatat(r->c.fd, base, &st, AT_SYMLINK_NOFOLLOW) == 0 && !S_ISDIR(st.st_mode) &&
		    clear_name(r->c.fd, base, archive_entry_pathname(e), err) < 0)
			return -1;
		if (mkdirat(r->c.fd, base, 0700) < 0 && errno != EEXIST)
			return bk_err_set(err, errno, "cannot create '%s'",
					  archive_entry_pathname(e));
		fd = openat(r->c.fd, base, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	}
	if (fd < 0)
		return bk_err_set(err, errno, "cannot open '%s'", archive_entry_pathname(e));
	struct timespec ts[2];
	entry_times(e, ts);
	if (meta_apply_fd(r, e, fd, err) < 0 ||
	    pending_push(&r->pending, depth_of(r->name.data, r->name.len), ts, err) < 0)
		return -1;
	return 0;
}

static int file_restore(struct restorer *r, struct archive_entry *e, const char *base,
			struct bk_err *err)
{
	if (clear_name(r->c.fd, base, archive_entry_pathname(e), err) < 0)
		return -1;
	_cleanup_close_ int fd =
	    openat(r->c.fd, base, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return bk_err_set(err, errno, "cannot create '%s'", archive_entry_pathname(e));
	struct timespec ts[2];
	entry_times(e, ts);
	if (data_restore(r, e, fd, err) < 0 || meta_apply_fd(r, e, fd, err) < 0)
		return -1;
	if (futimens(fd, ts) < 0)
		return bk_err_set(err, errno, "cannot set the times of '%s'",
				  archive_entry_pathname(e));
	return 0;
}

/* A symlink, FIFO or whiteout: made in place, its metadata set by name. */
static int special_restore(struct restorer *r, struct archive_entry *e, const char *base,
			   struct bk_err *err)
{
	mode_t perm = archive_entry_perm(e);
	int made;
	if (clear_name(r->c.fd, base, archive_entry_pathname(e), err) < 0)
		return -1;
	switch (archive_entry_filetype(e)) {
	case AE_IFLNK:
		made = symlinkat(archive_entry_symlink(e) ? archive_entry_symlink(e) : "", r->c.fd,
				 base);
		break;
	case AE_IFIFO:
		made = mknodat(r->c.fd, base, S_IFIFO | perm, 0);
		break;
	default:
		/* Nothing but overlayfs's whiteouts (0/0 character devices)
		 * can be on a session's disk; another device node that a
		 * snapshot names is not made. */
		if (archive_entry_filetype(e) != AE_IFCHR || archive_entry_rdev(e) != 0)
			return 0;
		made = mknodat(r->c.fd, base, S_IFCHR | perm, makedev(0, 0));
		break;
	}
	if (made < 0)
		return bk_err_set(err, errno, "cannot create '%s'", archive_entry_pathname(e));
	uid_t uid = (uid_t)snapshot__id_to_host(archive_entry_uid(e), r->id_base);
	gid_t gid = (gid_t)snapshot__id_to_host(archive_entry_gid(e), r->id_base);
	struct timespec ts[2];
	entry_times(e, ts);
	if (fchownat(r->c.fd, base, uid, gid, AT_SYMLINK_NOFOLLOW) < 0 ||
	    (archive_entry_filetype(e) != AE_IFLNK && fchmodat(r->c.fd, base, perm, 0) < 0))
		return bk_err_set(err, errno, "cannot set the owner of '%s'",
				  archive_entry_pathname(e));
	if (xattrs_apply(e, -1, r->c.fd, base, err) < 0)
		return -1;
	if (utimensat(r->c.fd, base, ts, AT_SYMLINK_NOFOLLOW) < 0)
		return bk_err_set(err, errno, "cannot set the times of '%s'",
				  archive_entry_pathname(e));
	return 0;
}

static int entry_restore(struct restorer *r, struct archive_entry *e, struct bk_err *err)
{
	if (name_canon(archive_entry_pathname(e), &r->name, err) < 0)
		return -1;
	if (pending_apply(&r->pending, &r->c, &r->last, &r->name, err) < 0)
		return -1;
	const char *base = NULL;
	if (r->name.len > 0) {
		const char *slash = strrchr(r->name.data, '/');
		if (cursor_move(&r->c, r->name.data, (size_t)(slash - r->name.data), true, err) < 0)
			return -1;
		base = slash + 1;
	}
	int rc;
	if (archive_entry_hardlink(e) != NULL && base != NULL)
		rc = link_restore(r, e, base, err);
	else if (archive_entry_filetype(e) == AE_IFDIR)
		rc = dir_restore(r, e, base, err);
	else if (base == NULL)
		rc = bk_err_kind(err, BK_E_INTERNAL, "its top is not a directory");
	else if (archive_entry_filetype(e) == AE_IFREG)
		rc = file_restore(r, e, base, err);
	else if (archive_entry_filetype(e) == AE_IFSOCK)
		rc = 0;
	else
		rc = special_restore(r, e, base, err);
	if (rc < 0)
		return -1;
	/* This entry is now the one the waiting directories are found by. */
	struct buf swap = r->last;
	r->last = r->name;
	r->name = swap;
	return 0;
}

static void restorer_release(struct restorer *r)
{
	if (r->c.fd >= 0)
		close(r->c.fd);
	buf_free(&r->c.path);
	free(r->c.ids);
	free(r->pending.v);
	buf_free(&r->name);
	buf_free(&r->last);
	buf_free(&r->link);
}

int snapshot_restore(const char *path, const char *dst_dir, unsigned id_base, struct bk_err *err)
{
	_cleanup_close_ int top = open(dst_dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (top < 0)
		return bk_err_set(err, errno, "cannot open '%s'", dst_dir);
	_cleanup_archive_ struct archive *in = archive_read_new();
	if (in == NULL)
		return bk_err_set(err, ENOMEM, "cannot restore '%s'", path);
	archive_read_support_filter_zstd(in);
	archive_read_support_format_tar(in);
	if (archive_read_open_filename(in, path, 1 << 20) != ARCHIVE_OK)
		return bk_err_kind(err, BK_E_INTERNAL, "cannot open snapshot '%s': %s", path,
				   archive_error_string(in));
	__attribute__((cleanup(restorer_release))) struct restorer r = {
	    .in = in, .path = path, .id_base = id_base, .c = {.top = top, .fd = dup(top)}};
	if (r.c.fd < 0)
		return bk_err_set(err, errno, "cannot restore '%s'", path);
	if (snapshot__path_init(&r.last, err) < 0 || snapshot__path_init(&r.name, err) < 0 ||
	    snapshot__path_init(&r.link, err) < 0 || snapshot__path_init(&r.c.path, err) < 0)
		return -1;
	if (cursor_note(&r.c, 0, err) < 0)
		return -1;
	for (;;) {
		struct archive_entry *e;
		int rc = archive_read_next_header(in, &e);
		if (rc == ARCHIVE_EOF)
			break;
		if (rc < ARCHIVE_WARN)
			return bk_err_kind(err, BK_E_INTERNAL, "cannot read snapshot '%s': %s",
					   path, archive_error_string(in));
		if (entry_restore(&r, e, err) < 0) {
			bk_err_prefix(err, "snapshot '%s'", path);
			return -1;
		}
	}
	if (pending_apply(&r.pending, &r.c, &r.last, NULL, err) < 0) {
		bk_err_prefix(err, "snapshot '%s'", path);
		return -1;
	}
	return 0;
}
