/* Saving a session's writable layer to storage and bringing it back.
 *
 * A snapshot is a zstd-compressed pax tar of the overlay's upper directory,
 * kept as <dir>/<session id>.tar.zst. Everything overlayfs and programs rely
 * on is kept: owners, modes, times, symlinks, hard links, empty
 * directories, sparse files, extended attributes (overlay's own whiteouts
 * and opaque markers among them).
 */
#pragma once

#include <stdint.h>

#include "util/err.h"

struct snapshot_stats {
	int64_t files;	   /* entries archived */
	int64_t bytes_in;  /* bytes of file content read */
	int64_t bytes_out; /* size of the snapshot file */
};

/* Archives the tree src_dir into path, atomically: the file appears whole
 * (written to a temporary name, synced, renamed) or not at all. */
int snapshot_save(const char *src_dir, const char *path, struct snapshot_stats *stats,
		  struct bk_err *err);
/* Extracts the snapshot at path into dst_dir (an existing, empty directory)
 * as root, refusing any entry that would land outside it. */
int snapshot_restore(const char *path, const char *dst_dir, struct bk_err *err);
