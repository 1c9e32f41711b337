#include "snapshot/snapshot.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/cleanup.h"
#include "util/util.h"

static void cleanup_archivep(struct archive **a)
{
	if (*a != NULL)
		archive_free(*a);
}
#define _cleanup_archive_ __attribute__((cleanup(cleanup_archivep)))

static int fsync_path(const char *path, int flags)
{
	_cleanup_close_ int fd = open(path, flags | O_CLOEXEC);
	return fd < 0 || fsync(fd) < 0 ? -1 : 0;
}

/* Writes len zero bytes: the part of a sparse file's stream that its map
 * says is a hole, which the tar writer counts and drops. */
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

/* Copies one entry's content from the disk reader into the writer. The
 * reader skips holes and puts the sparse map on the entry; the tar writer
 * wants the whole logical stream, holes included, and drops what the map
 * marks as hole. So each gap before a block is fed as zeros. */
static int copy_data(struct archive *disk, struct archive *out, int64_t *bytes)
{
	const void *buf;
	size_t len;
	int64_t off, pos = 0;
	for (;;) {
		int r = archive_read_data_block(disk, &buf, &len, &off);
		if (r == ARCHIVE_EOF)
			return 0;
		if (r < ARCHIVE_WARN)
			return -1;
		if (off > pos && write_zeros(out, off - pos) < 0)
			return -1;
		if (archive_write_data(out, buf, len) < 0)
			return -1;
		pos = off + (int64_t)len;
		*bytes += (int64_t)len;
	}
}

static void cleanup_resolverp(struct archive_entry_linkresolver **r)
{
	if (*r != NULL)
		archive_entry_linkresolver_free(*r);
}

/* Writes one entry and, for a regular file that is not a link to one
 * written before, its content. */
static int save_entry(struct archive *disk, struct archive *out, struct archive_entry *e,
		      struct snapshot_stats *stats, struct bk_err *err)
{
	if (archive_write_header(out, e) < ARCHIVE_WARN)
		return bk_err_kind(err, BK_E_INTERNAL, "cannot archive '%s': %s",
				   archive_entry_pathname(e), archive_error_string(out));
	if (archive_entry_filetype(e) == AE_IFREG && archive_entry_size(e) > 0 &&
	    archive_entry_hardlink(e) == NULL && copy_data(disk, out, &stats->bytes_in) < 0)
		return bk_err_kind(err, BK_E_INTERNAL, "cannot archive '%s': %s",
				   archive_entry_pathname(e), archive_error_string(out));
	stats->files++;
	return 0;
}

/* A host id as the snapshot records it. */
static int64_t id_to_session(int64_t id, unsigned base)
{
	return id >= base && id - base < SNAPSHOT_IDS ? id - base : SNAPSHOT_NOBODY;
}

/* A recorded id as the host sees it, from base on. */
static int64_t id_to_host(int64_t id, unsigned base)
{
	if (id >= SNAPSHOT_LEGACY_ID_BASE)
		id = (id - SNAPSHOT_LEGACY_ID_BASE) % SNAPSHOT_IDS;
	return id < SNAPSHOT_IDS ? base + id : base + SNAPSHOT_NOBODY;
}

static int save_into(struct archive *out, const char *src_dir, unsigned id_base,
		     struct snapshot_stats *stats, struct bk_err *err)
{
	_cleanup_archive_ struct archive *disk = archive_read_disk_new();
	__attribute__((cleanup(cleanup_resolverp))) struct archive_entry_linkresolver *links =
	    archive_entry_linkresolver_new();
	if (disk == NULL || links == NULL)
		return bk_err_set(err, ENOMEM, "cannot read '%s'", src_dir);
	/* Hard links stay links: the second name of an inode is written as a
	 * link to the first. */
	archive_entry_linkresolver_set_strategy(links, archive_format(out));
	archive_read_disk_set_symlink_physical(disk);
	archive_read_disk_set_behavior(disk, ARCHIVE_READDISK_NO_TRAVERSE_MOUNTS);
	/* Numeric owners only: a name would be the host's, and a restore that
	 * looked names up could hand a file to a host user of that name. */
	if (archive_read_disk_open(disk, src_dir) != ARCHIVE_OK)
		return bk_err_kind(err, BK_E_INTERNAL, "cannot read '%s': %s", src_dir,
				   archive_error_string(disk));
	size_t prefix = strlen(src_dir);
	for (;;) {
		struct archive_entry *e = archive_entry_new();
		int r = archive_read_next_header2(disk, e);
		if (r == ARCHIVE_EOF) {
			archive_entry_free(e);
			break;
		}
		if (r < ARCHIVE_WARN) {
			archive_entry_free(e);
			return bk_err_kind(err, BK_E_INTERNAL, "cannot read '%s': %s", src_dir,
					   archive_error_string(disk));
		}
		archive_read_disk_descend(disk);
		/* Names relative to the tree: "./workspace/a.txt". */
		const char *full = archive_entry_pathname(e);
		char rel[4200];
		snprintf(rel, sizeof(rel), ".%s", full + (strlen(full) >= prefix ? prefix : 0));
		archive_entry_copy_pathname(e, rel);
		archive_entry_set_uid(e, id_to_session(archive_entry_uid(e), id_base));
		archive_entry_set_gid(e, id_to_session(archive_entry_gid(e), id_base));
		archive_entry_copy_uname(e, NULL);
		archive_entry_copy_gname(e, NULL);
		struct archive_entry *spare = NULL;
		archive_entry_linkify(links, &e, &spare);
		int rc = e ? save_entry(disk, out, e, stats, err) : 0;
		if (rc == 0 && spare)
			rc = save_entry(disk, out, spare, stats, err);
		archive_entry_free(e);
		archive_entry_free(spare);
		if (rc < 0)
			return -1;
	}
	return 0;
}

int snapshot_save(const char *src_dir, const char *path, unsigned id_base,
		  struct snapshot_stats *stats, struct bk_err *err)
{
	struct snapshot_stats local = {0};
	if (stats == NULL)
		stats = &local;
	memset(stats, 0, sizeof(*stats));
	char tmp[4200];
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	unlink(tmp);
	_cleanup_archive_ struct archive *out = archive_write_new();
	if (out == NULL)
		return bk_err_set(err, ENOMEM, "cannot write '%s'", path);
	/* zstd level 1: as fast as a snapshot can be on the save side, and
	 * decompression is fast at every level. */
	if (archive_write_add_filter_zstd(out) != ARCHIVE_OK ||
	    archive_write_set_filter_option(out, "zstd", "compression-level", "1") != ARCHIVE_OK ||
	    archive_write_set_format_pax_restricted(out) != ARCHIVE_OK ||
	    archive_write_open_filename(out, tmp) != ARCHIVE_OK)
		return bk_err_kind(err, BK_E_INTERNAL, "cannot write '%s': %s", tmp,
				   archive_error_string(out));
	int rc = save_into(out, src_dir, id_base, stats, err);
	if (archive_write_close(out) != ARCHIVE_OK && rc == 0)
		rc = bk_err_kind(err, BK_E_INTERNAL, "cannot write '%s': %s", tmp,
				 archive_error_string(out));
	if (rc == 0 && chmod(tmp, 0600) < 0)
		rc = bk_err_set(err, errno, "cannot chmod '%s'", tmp);
	if (rc == 0 && fsync_path(tmp, O_RDONLY) < 0)
		rc = bk_err_set(err, errno, "cannot sync '%s'", tmp);
	if (rc == 0 && rename(tmp, path) < 0)
		rc = bk_err_set(err, errno, "cannot rename '%s'", tmp);
	if (rc < 0) {
		unlink(tmp);
		return -1;
	}
	/* The rename itself must reach the disk before the caller acts on it. */
	char dir[4200];
	snprintf(dir, sizeof(dir), "%s", path);
	char *slash = strrchr(dir, '/');
	if (slash)
		*slash = '\0';
	fsync_path(slash ? dir : ".", O_RDONLY | O_DIRECTORY);
	struct stat st;
	if (stat(path, &st) == 0)
		stats->bytes_out = st.st_size;
	return 0;
}

/* Relative and free of "..": what a name must be to stay inside. */
static bool name_is_relative(const char *name)
{
	if (name == NULL || name[0] == '/')
		return false;
	for (const char *p = name; *p;) {
		const char *end = strchrnul(p, '/');
		if (end - p == 2 && p[0] == '.' && p[1] == '.')
			return false;
		p = *end ? end + 1 : end;
	}
	return true;
}

int snapshot_restore(const char *path, const char *dst_dir, unsigned id_base, struct bk_err *err)
{
	_cleanup_archive_ struct archive *in = archive_read_new();
	_cleanup_archive_ struct archive *out = archive_write_disk_new();
	if (in == NULL || out == NULL)
		return bk_err_set(err, ENOMEM, "cannot restore '%s'", path);
	archive_read_support_filter_zstd(in);
	archive_read_support_format_tar(in);
	if (archive_read_open_filename(in, path, 1 << 20) != ARCHIVE_OK)
		return bk_err_kind(err, BK_E_INTERNAL, "cannot open snapshot '%s': %s", path,
				   archive_error_string(in));
	/* As root, owners and modes come back as they were; the SECURE flags
	 * refuse ".." and writes through symlinks. Names are made absolute
	 * below (libarchive has no base directory), after checking that each
	 * is relative. */
	archive_write_disk_set_options(
	    out, ARCHIVE_EXTRACT_OWNER | ARCHIVE_EXTRACT_PERM | ARCHIVE_EXTRACT_TIME |
		     ARCHIVE_EXTRACT_XATTR | ARCHIVE_EXTRACT_SPARSE |
		     ARCHIVE_EXTRACT_SECURE_NODOTDOT | ARCHIVE_EXTRACT_SECURE_SYMLINKS |
		     ARCHIVE_EXTRACT_UNLINK);
	for (;;) {
		struct archive_entry *e;
		int r = archive_read_next_header(in, &e);
		if (r == ARCHIVE_EOF)
			break;
		if (r < ARCHIVE_WARN)
			return bk_err_kind(err, BK_E_INTERNAL, "cannot read snapshot '%s': %s",
					   path, archive_error_string(in));
		const char *name = archive_entry_pathname(e);
		const char *link = archive_entry_hardlink(e);
		if (!name_is_relative(name) || (link && !name_is_relative(link)))
			return bk_err_kind(err, BK_E_INTERNAL,
					   "snapshot '%s' names '%s' outside it", path,
					   name ? name : "");
		char target[4200];
		snprintf(target, sizeof(target), "%s/%s", dst_dir, name);
		archive_entry_copy_pathname(e, target);
		archive_entry_set_uid(e, id_to_host(archive_entry_uid(e), id_base));
		archive_entry_set_gid(e, id_to_host(archive_entry_gid(e), id_base));
		archive_entry_copy_uname(e, NULL);
		archive_entry_copy_gname(e, NULL);
		if (link) {
			char lt[4200];
			snprintf(lt, sizeof(lt), "%s/%s", dst_dir, link);
			archive_entry_copy_hardlink(e, lt);
		}
		if (archive_write_header(out, e) < ARCHIVE_WARN)
			return bk_err_kind(err, BK_E_INTERNAL, "cannot restore '%s': %s", target,
					   archive_error_string(out));
		const void *buf;
		size_t len;
		int64_t off;
		while ((r = archive_read_data_block(in, &buf, &len, &off)) == ARCHIVE_OK) {
			if (archive_write_data_block(out, buf, len, off) < ARCHIVE_WARN)
				return bk_err_kind(err, BK_E_INTERNAL, "cannot restore '%s': %s",
						   target, archive_error_string(out));
		}
		if (r < ARCHIVE_WARN)
			return bk_err_kind(err, BK_E_INTERNAL, "cannot read snapshot '%s': %s",
					   path, archive_error_string(in));
		if (archive_write_finish_entry(out) < ARCHIVE_WARN)
			return bk_err_kind(err, BK_E_INTERNAL, "cannot restore '%s': %s", target,
					   archive_error_string(out));
	}
	if (archive_write_close(out) != ARCHIVE_OK)
		return bk_err_kind(err, BK_E_INTERNAL, "cannot restore into '%s': %s", dst_dir,
				   archive_error_string(out));
	return 0;
}
