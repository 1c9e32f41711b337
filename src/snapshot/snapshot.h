/* Saving a session's writable layer to storage and bringing it back.
 *
 * A snapshot is a zstd-compressed pax tar of the overlay's upper directory.
 * Everything overlayfs and programs rely on is kept: owners, modes, times,
 * symlinks, hard links, empty directories, sparse files, extended
 * attributes (overlay's own whiteouts and opaque markers among them).
 *
 * Owners are recorded as the session sees them (0..SNAPSHOT_IDS-1), not as
 * the host does: the host range a session's ids map to is its slot's while
 * it is awake, and a snapshot may wake on another slot or another host.
 */
#pragma once

#include <stdint.h>

#include "util/err.h"

struct snapshot_stats {
	int64_t files;	   /* entries archived */
	int64_t bytes_in;  /* bytes of file content read */
	int64_t bytes_out; /* size of the snapshot file */
	int64_t skipped;   /* sockets left out: a tar cannot hold one */
};

/* The ids a snapshot records: a session's own. */
#define SNAPSHOT_IDS 65536u
/* What a host id outside the session's range is recorded as. */
#define SNAPSHOT_NOBODY 65534u
/* The host ranges that snapshots made before owners were relative
 * recorded; restore maps them onto the session's range. */
#define SNAPSHOT_LEGACY_ID_BASE 1000000000u
/* The longest path a snapshot holds, in bytes (64 times PATH_MAX, some
 * 20,000 levels of directories): what libarchive's reader takes in one
 * entry's header, with room for its attributes. */
#define SNAPSHOT_PATH_MAX (256u << 10)

/* Archives the tree src_dir, whose owners are host ids id_base..id_base+
 * SNAPSHOT_IDS-1, into path, atomically: the file appears whole (written to
 * a temporary name, synced, renamed) or not at all. Paths of any length up
 * to SNAPSHOT_PATH_MAX are saved (BK_E_TOO_LARGE beyond, and for an entry
 * with more extended attributes than a restore could read back); sockets
 * are left out and counted in stats->skipped. With max_bytes > 0, a
 * snapshot that would grow past it is abandoned (BK_E_NO_SPACE). The tree
 * must not change meanwhile (its processes frozen or ended). */
int snapshot_save(const char *src_dir, const char *path, unsigned id_base, int64_t max_bytes,
		  struct snapshot_stats *stats, struct bk_err *err);
/* Extracts the snapshot at path into dst_dir (an existing directory) as
 * root, owners mapped onto host ids from id_base on, refusing any entry
 * that would land outside it: absolute names, "..", and a symlink on the
 * way. Thread safe: it never changes the working directory. */
int snapshot_restore(const char *path, const char *dst_dir, unsigned id_base, struct bk_err *err);
