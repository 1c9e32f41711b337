/* Saving a tree to a snapshot: a walk with directory descriptors that
 * feeds libarchive's pax writer (zstd level 1) entry by entry.
 *
 * The walk holds one directory open at a time: it goes down with
 * openat(O_NOFOLLOW) and back up with "..", checking that it arrives where
 * it came from, so neither the depth of the tree nor the length of its
 * paths is bounded by PATH_MAX or by descriptors. It runs while nothing
 * can change the tree (the session is frozen or ended), and never follows
 * a symlink. Sockets are left out: a tar cannot hold one, and a socket
 * file is of no use once its listener is gone.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <archive_entry.h>

#include "snapshot/snapshot_int.h"
#include "util/cleanup.h"
#include "util/util.h"

/* libarchive's tar reader takes at most 1 MiB of pax header per entry
 * (the path, a link's target, the extended attributes, each attribute
 * twice): an entry that would need more is refused at save time, so that
 * every snapshot written can be restored. */
#define HEADER_BUDGET (900u << 10)

int snapshot__path_init(struct buf *path, struct bk_err *err)
{
	buf_init(path, SNAPSHOT_PATH_MAX);
	if (buf_append(path, "/", 1) < 0)
		return bk_err_set(err, ENOMEM, "cannot allocate a path");
	snapshot__path_cut(path, 0);
	return 0;
}

int snapshot__path_push(struct buf *path, const char *name, struct bk_err *err)
{
	size_t n = strlen(name);
	if (path->len + 1 + n > path->max)
		return bk_err_kind(err, BK_E_TOO_LARGE,
				   "a path deeper than %u bytes cannot be saved (at '%.200s...')",
				   SNAPSHOT_PATH_MAX, path->data);
	if (buf_append(path, "/", 1) < 0 || buf_append(path, name, n) < 0)
		return bk_err_set(err, ENOMEM, "cannot allocate a path");
	return 0;
}

void snapshot__path_cut(struct buf *path, size_t len)
{
	path->len = len;
	path->data[len] = '\0';
}

void snapshot__proc_name(int dirfd, const char *name, char *out, size_t len)
{
	snprintf(out, len, "/proc/self/fd/%d/%s", dirfd, name);
}

bool snapshot__xattr_skipped(const char *name)
{
	return strcmp(name, "system.posix_acl_access") == 0 ||
	       strcmp(name, "system.posix_acl_default") == 0;
}

/* ---- the writer's output: a file of ours, with a ceiling ---- */

struct sink {
	int fd;
	int64_t written, max; /* max 0: none */
	bool over;
};

static la_ssize_t sink_write(struct archive *a, void *arg, const void *buf, size_t len)
{
	struct sink *s = arg;
	if (s->max > 0 && s->written + (int64_t)len > s->max) {
		s->over = true;
		archive_set_error(a, ENOSPC, "the snapshot would exceed %lld bytes",
				  (long long)s->max);
		return -1;
	}
	if (write_full(s->fd, buf, len) < 0) {
		archive_set_error(a, errno, "cannot write the snapshot");
		return -1;
	}
	s->written += (int64_t)len;
	return (la_ssize_t)len;
}

/* ---- one entry ---- */

struct saver {
	struct archive *out;
	struct archive_entry_linkresolver *links;
	unsigned id_base;
	struct snapshot_stats *stats;
	struct buf path;
	const char *src;
	char *buf; /* SAVE_BUF bytes of file content in flight */
};

#define SAVE_BUF (1u << 16)

static void entry_freep(struct archive_entry **e)
{
	if (*e != NULL)
		archive_entry_free(*e);
}
#define _cleanup_entry_ __attribute__((cleanup(entry_freep)))

/* The writer's error: BK_E_NO_SPACE when the ceiling stopped it. */
static int writer_fail(const struct saver *sv, const char *name, struct bk_err *err)
{
	return bk_err_kind(err, archive_errno(sv->out) == ENOSPC ? BK_E_NO_SPACE : BK_E_INTERNAL,
			   "cannot archive '%s': %s", name, archive_error_string(sv->out));
}

/* The extended attributes of the entry (fd, or name in dirfd when fd is
 * -1), onto e; *bytes grows by what they add to its header. */
static int xattrs_read(struct archive_entry *e, int fd, int dirfd, const char *name, size_t *bytes,
		       struct bk_err *err)
{
	char proc[320];
	if (fd < 0)
		snapshot__proc_name(dirfd, name, proc, sizeof(proc));
	ssize_t n = fd >= 0 ? flistxattr(fd, NULL, 0) : llistxattr(proc, NULL, 0);
	if (n < 0 && (errno == ENOTSUP || errno == EPERM))
		return 0;
	if (n <= 0)
		return n < 0 ? bk_err_set(err, errno, "cannot list attributes of '%s'", name) : 0;
	_cleanup_free_ char *list = malloc((size_t)n);
	if (list == NULL)
		return bk_err_set(err, ENOMEM, "cannot save");
	n = fd >= 0 ? flistxattr(fd, list, (size_t)n) : llistxattr(proc, list, (size_t)n);
	if (n < 0)
		return bk_err_set(err, errno, "cannot list attributes of '%s'", name);
	for (char *k = list; k < list + n; k += strlen(k) + 1) {
		if (snapshot__xattr_skipped(k))
			continue;
		ssize_t vn = fd >= 0 ? fgetxattr(fd, k, NULL, 0) : lgetxattr(proc, k, NULL, 0);
		if (vn < 0)
			continue; /* gone since the listing: nothing changes a frozen tree but us */
		_cleanup_free_ char *v = malloc((size_t)vn + 1);
		if (v == NULL)
			return bk_err_set(err, ENOMEM, "cannot save");
		vn = fd >= 0 ? fgetxattr(fd, k, v, (size_t)vn) : lgetxattr(proc, k, v, (size_t)vn);
		if (vn < 0)
			continue;
		archive_entry_xattr_add_entry(e, k, v, (size_t)vn);
		/* Written twice (raw and base64), with its name each time. */
		*bytes += 2 * (strlen(k) + 32) + (size_t)vn * 7 / 3;
	}
	return 0;
}

/* The data segments of a regular file onto e, when it has holes (after
 * libarchive's own setup_sparse: a file that is one hole gets (0, 0)). */
static int sparse_map(struct archive_entry *e, int fd, int64_t size)
{
	int64_t off = 0;
	while (off < size) {
		off_t data = lseek(fd, off, SEEK_DATA);
		if (data < 0) {
			if (errno != ENXIO)
				return -1;
			if (archive_entry_sparse_count(e) == 0 && off == 0)
				archive_entry_sparse_add_entry(e, 0, 0);
			break;
		}
		off_t hole = lseek(fd, data, SEEK_HOLE);
		if (hole < 0)
			return -1;
		if (data == 0 && hole >= size)
			break; /* not sparse */
		archive_entry_sparse_add_entry(e, data, hole - data);
		off = hole;
	}
	return 0;
}

/* Writes len zero bytes: the part of a sparse file's stream that its map
 * says is a hole, which the pax writer counts and drops. */
static int write_zeros(struct archive *out, int64_t len)
{
	static const char zeros[65536];
	while (len > 0) {
		size_t n = len < (int64_t)sizeof(zeros) ? (size_t)len : sizeof(zeros);
		if (archive_write_data(out, zeros, n) < 0)
			return -1;
		len -= (int64_t)n;
	}
	return 0;
}

/* The content of a regular file: its data segments (the whole file when
 * it has none), each gap before one fed as zeros. */
static int data_copy(struct saver *sv, struct archive_entry *e, int fd, struct bk_err *err)
{
	int64_t size = archive_entry_size(e);
	int n = archive_entry_sparse_reset(e);
	int64_t pos = 0;
	for (int i = 0; i < (n > 0 ? n : 1); i++) {
		la_int64_t off = 0, len = size;
		if (n > 0)
			archive_entry_sparse_next(e, &off, &len);
		if (off > pos && write_zeros(sv->out, off - pos) < 0)
			return writer_fail(sv, archive_entry_pathname(e), err);
		for (int64_t at = off; at < off + len;) {
			size_t want = off + len - at < (int64_t)SAVE_BUF ? (size_t)(off + len - at)
									 : SAVE_BUF;
			ssize_t got = pread(fd, sv->buf, want, at);
			if (got < 0 && errno == EINTR)
				continue;
			if (got <= 0)
				return bk_err_set(err, got < 0 ? errno : EIO, "cannot read '%s%s'",
						  sv->src, sv->path.data);
			if (archive_write_data(sv->out, sv->buf, (size_t)got) < 0)
				return writer_fail(sv, archive_entry_pathname(e), err);
			at += got;
			sv->stats->bytes_in += got;
		}
		pos = off + len;
	}
	return 0;
}

static int header_write(struct saver *sv, struct archive_entry *e, int fd, struct bk_err *err)
{
	if (archive_write_header(sv->out, e) < ARCHIVE_WARN)
		return writer_fail(sv, archive_entry_pathname(e), err);
	if (fd >= 0 && archive_entry_filetype(e) == AE_IFREG && archive_entry_size(e) > 0 &&
	    archive_entry_hardlink(e) == NULL && data_copy(sv, e, fd, err) < 0)
		return -1;
	sv->stats->files++;
	return 0;
}

/* Archives the entry name of dirfd (st its lstat), or the top itself when
 * name is NULL (dirfd is then the top's own descriptor); for a directory,
 * *child receives its descriptor when the walk should go into it. */
static int entry_save(struct saver *sv, int dirfd, const char *name, const struct stat *st,
		      int *child, struct bk_err *err)
{
	*child = -1;
	_cleanup_close_ int fd = -1;
	if (name == NULL)
		fd = dup(dirfd);
	else if (S_ISDIR(st->st_mode))
		fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	else if (S_ISREG(st->st_mode))
		fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if ((S_ISDIR(st->st_mode) || S_ISREG(st->st_mode)) && fd < 0)
		return bk_err_set(err, errno, "cannot open '%s%s'", sv->src, sv->path.data);
	_cleanup_entry_ struct archive_entry *e = archive_entry_new();
	if (e == NULL)
		return bk_err_set(err, ENOMEM, "cannot save");
	archive_entry_copy_stat(e, st);
	size_t header = 2 * sv->path.len + 512;
	{
		_cleanup_free_ char *rel = NULL;
		if (asprintf(&rel, ".%s", sv->path.data) < 0)
			return bk_err_set(err, ENOMEM, "cannot save");
		archive_entry_copy_pathname(e, rel);
	}
	/* Numeric owners only, as the session sees them: a name would be the
	 * host's, and a restore that looked names up could hand a file to a
	 * host user of that name. */
	archive_entry_set_uid(e, snapshot__id_to_session(st->st_uid, sv->id_base));
	archive_entry_set_gid(e, snapshot__id_to_session(st->st_gid, sv->id_base));
	if (S_ISLNK(st->st_mode)) {
		char target[4097];
		ssize_t n = readlinkat(dirfd, name, target, sizeof(target) - 1);
		if (n < 0)
			return bk_err_set(err, errno, "cannot read link '%s%s'", sv->src,
					  sv->path.data);
		target[n] = '\0';
		archive_entry_copy_symlink(e, target);
		header += 2 * (size_t)n;
	}
	if (xattrs_read(e, fd, dirfd, name, &header, err) < 0)
		return -1;
	if (header > HEADER_BUDGET)
		return bk_err_kind(err, BK_E_TOO_LARGE,
				   "'.%.200s' has more name and attributes than a snapshot "
				   "holds (%zu KiB)",
				   sv->path.data, header >> 10);
	if (S_ISREG(st->st_mode) && st->st_size > 0 && sparse_map(e, fd, st->st_size) < 0)
		return bk_err_set(err, errno, "cannot map '%s%s'", sv->src, sv->path.data);
	/* Hard links stay links: the second name of an inode is written as a
	 * link to the first. */
	_cleanup_entry_ struct archive_entry *spare = NULL;
	_cleanup_entry_ struct archive_entry *cur = steal_ptr(&e);
	archive_entry_linkify(sv->links, &cur, &spare);
	if ((cur && header_write(sv, cur, fd, err) < 0) ||
	    (spare && header_write(sv, spare, fd, err) < 0))
		return -1;
	if (S_ISDIR(st->st_mode) && name != NULL)
		*child = steal_fd(&fd);
	return 0;
}

/* ---- the walk ---- */

/* A directory on the way down: the names it holds, read once, and where
 * the walk is in them. */
struct level {
	char **names;
	size_t n, next;
	size_t path_len;
	dev_t dev;
	ino_t ino;
};

static void level_free(struct level *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->names[i]);
	free(l->names);
}

/* Reads every name of the directory fd but "." and "..". */
static int level_read(int fd, struct level *l, struct bk_err *err)
{
	*l = (struct level){0};
	int dfd = dup(fd);
	DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
	if (d == NULL) {
		if (dfd >= 0)
			close(dfd);
		return bk_err_set(err, errno, "cannot read a directory");
	}
	size_t cap = 0;
	struct dirent *de;
	int rc = 0;
	while (rc == 0 && (de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (l->n == cap) {
			cap = cap ? cap * 2 : 16;
			char **p = realloc(l->names, cap * sizeof(*p));
			if (p == NULL) {
				rc = bk_err_set(err, ENOMEM, "cannot save");
				break;
			}
			l->names = p;
		}
		if ((l->names[l->n] = strdup(de->d_name)) == NULL)
			rc = bk_err_set(err, ENOMEM, "cannot save");
		else
			l->n++;
	}
	closedir(d);
	struct stat st;
	if (rc == 0 && fstat(fd, &st) == 0) {
		l->dev = st.st_dev;
		l->ino = st.st_ino;
	}
	if (rc < 0)
		level_free(l);
	return rc;
}

struct walk {
	struct level *levels;
	size_t depth, cap;
	int fd; /* the directory of the deepest level */
};

static void walk_release(struct walk *w)
{
	for (size_t i = 0; i < w->depth; i++)
		level_free(&w->levels[i]);
	free(w->levels);
	if (w->fd >= 0)
		close(w->fd);
}

/* Takes fd (the directory just entered) as the deepest level. */
static int walk_enter(struct walk *w, int fd, size_t path_len, struct bk_err *err)
{
	if (w->depth == w->cap) {
		size_t cap = w->cap ? w->cap * 2 : 16;
		struct level *p = realloc(w->levels, cap * sizeof(*p));
		if (p == NULL) {
			close(fd);
			return bk_err_set(err, ENOMEM, "cannot save");
		}
		w->levels = p;
		w->cap = cap;
	}
	if (level_read(fd, &w->levels[w->depth], err) < 0) {
		close(fd);
		return -1;
	}
	w->levels[w->depth++].path_len = path_len;
	if (w->fd >= 0)
		close(w->fd);
	w->fd = fd;
	return 0;
}

/* Leaves the deepest level for its parent through "..", which must be the
 * directory the walk came down from. */
static int walk_leave(struct walk *w, struct bk_err *err)
{
	level_free(&w->levels[--w->depth]);
	if (w->depth == 0)
		return 0;
	int up = openat(w->fd, "..", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	struct stat st;
	const struct level *parent = &w->levels[w->depth - 1];
	if (up < 0 || fstat(up, &st) < 0 || st.st_dev != parent->dev || st.st_ino != parent->ino) {
		if (up >= 0)
			close(up);
		return bk_err_kind(err, BK_E_INTERNAL, "the tree changed while it was saved");
	}
	close(w->fd);
	w->fd = up;
	return 0;
}

static int tree_save(struct saver *sv, int top, struct bk_err *err)
{
	struct stat st;
	if (fstat(top, &st) < 0)
		return bk_err_set(err, errno, "cannot stat '%s'", sv->src);
	int ignored;
	if (entry_save(sv, top, NULL, &st, &ignored, err) < 0)
		return -1;
	dev_t dev = st.st_dev;
	__attribute__((cleanup(walk_release))) struct walk w = {.fd = -1};
	int fd = dup(top);
	if (fd < 0)
		return bk_err_set(err, errno, "cannot save '%s'", sv->src);
	if (walk_enter(&w, fd, 0, err) < 0)
		return -1;
	while (w.depth > 0) {
		struct level *l = &w.levels[w.depth - 1];
		if (l->next == l->n) {
			if (walk_leave(&w, err) < 0)
				return -1;
			continue;
		}
		const char *name = l->names[l->next++];
		snapshot__path_cut(&sv->path, l->path_len);
		if (snapshot__path_push(&sv->path, name, err) < 0)
			return -1;
		if (fstatat(w.fd, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
			if (errno == ENOENT)
				continue;
			return bk_err_set(err, errno, "cannot stat '%s%s'", sv->src, sv->path.data);
		}
		if (S_ISSOCK(st.st_mode)) {
			sv->stats->skipped++;
			continue;
		}
		int child;
		if (entry_save(sv, w.fd, name, &st, &child, err) < 0)
			return -1;
		/* A mount inside the tree is not of it. */
		if (child >= 0 && st.st_dev != dev) {
			close(child);
			child = -1;
		}
		if (child >= 0 && walk_enter(&w, child, sv->path.len, err) < 0)
			return -1;
	}
	return 0;
}

static int fsync_dir_of(const char *path)
{
	_cleanup_free_ char *dir = strdup(path);
	if (dir == NULL)
		return -1;
	char *slash = strrchr(dir, '/');
	if (slash)
		*slash = '\0';
	_cleanup_close_ int fd = open(slash ? dir : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	/* dir is _cleanup_free_ */
	/* cppcheck-suppress memleak */
	return fd < 0 || fsync(fd) < 0 ? -1 : 0;
}

static void resolver_freep(struct archive_entry_linkresolver **r)
{
	if (*r != NULL)
		archive_entry_linkresolver_free(*r);
}

/* The archive of src_dir into the open file at fd. */
static int archive_into(int fd, const char *src_dir, unsigned id_base, int64_t max_bytes,
			struct snapshot_stats *stats, struct bk_err *err)
{
	_cleanup_close_ int top = open(src_dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (top < 0)
		return bk_err_set(err, errno, "cannot open '%s'", src_dir);
	_cleanup_archive_ struct archive *out = archive_write_new();
	__attribute__((cleanup(resolver_freep))) struct archive_entry_linkresolver *links =
	    archive_entry_linkresolver_new();
	if (out == NULL || links == NULL)
		return bk_err_set(err, ENOMEM, "cannot save '%s'", src_dir);
	struct sink sink = {.fd = fd, .max = max_bytes};
	/* zstd level 1: as fast as a snapshot can be on the save side, and
	 * decompression is fast at every level. */
	if (archive_write_add_filter_zstd(out) != ARCHIVE_OK ||
	    archive_write_set_filter_option(out, "zstd", "compression-level", "1") != ARCHIVE_OK ||
	    archive_write_set_format_pax_restricted(out) != ARCHIVE_OK ||
	    /* A file: no padding after the compressed stream (zero bytes
	     * there would read as a broken zstd frame). */
	    archive_write_set_bytes_in_last_block(out, 1) != ARCHIVE_OK ||
	    archive_write_open(out, &sink, NULL, sink_write, NULL) != ARCHIVE_OK)
		return bk_err_kind(err, BK_E_INTERNAL, "cannot write a snapshot: %s",
				   archive_error_string(out));
	archive_entry_linkresolver_set_strategy(links, archive_format(out));
	_cleanup_free_ char *buf = malloc(SAVE_BUF);
	if (buf == NULL)
		return bk_err_set(err, ENOMEM, "cannot save '%s'", src_dir);
	struct saver sv = {.out = out,
			   .links = links,
			   .id_base = id_base,
			   .stats = stats,
			   .src = src_dir,
			   .buf = buf};
	int rc = snapshot__path_init(&sv.path, err);
	if (rc == 0)
		rc = tree_save(&sv, top, err);
	buf_free(&sv.path);
	if (archive_write_close(out) != ARCHIVE_OK && rc == 0)
		rc = bk_err_kind(err, BK_E_INTERNAL, "cannot write a snapshot: %s",
				 archive_error_string(out));
	if (sink.over) {
		bk_err_clear(err);
		return bk_err_kind(err, BK_E_NO_SPACE,
				   "the snapshot of '%s' would exceed the %lld MB left for it",
				   src_dir, (long long)(max_bytes >> 20));
	}
	return rc;
}

int snapshot_save(const char *src_dir, const char *path, unsigned id_base, int64_t max_bytes,
		  struct snapshot_stats *stats, struct bk_err *err)
{
	struct snapshot_stats local = {0};
	if (stats == NULL)
		stats = &local;
	memset(stats, 0, sizeof(*stats));
	_cleanup_free_ char *tmp = NULL;
	if (asprintf(&tmp, "%s.tmp", path) < 0)
		return bk_err_set(err, ENOMEM, "cannot save '%s'", src_dir);
	unlink(tmp);
	_cleanup_close_ int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return bk_err_set(err, errno, "cannot create '%s'", tmp);
	int rc = archive_into(fd, src_dir, id_base, max_bytes, stats, err);
	if (rc == 0 && fsync(fd) < 0)
		rc = bk_err_set(err, errno, "cannot sync '%s'", tmp);
	if (rc == 0 && rename(tmp, path) < 0)
		rc = bk_err_set(err, errno, "cannot rename '%s'", tmp);
	if (rc < 0) {
		unlink(tmp);
		return -1;
	}
	/* The rename itself must reach the disk before the caller acts on it. */
	fsync_dir_of(path);
	struct stat st;
	if (fstat(fd, &st) == 0)
		stats->bytes_out = st.st_size;
	return 0;
}
