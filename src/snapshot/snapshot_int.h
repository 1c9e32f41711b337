/* What snapshot/save.c and snapshot/restore.c share; nothing outside
 * snapshot/ includes it.
 *
 * Both sides walk the tree with directory descriptors (openat() and
 * friends on one name at a time), never with a path handed to the kernel
 * whole: a path may be far longer than PATH_MAX (the kernel allows any
 * depth), and a walk that never changes the process's working directory
 * is safe in a daemon of many threads.
 */
#pragma once

#include <archive.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "snapshot/snapshot.h"
#include "util/err.h"
#include "util/util.h"

static inline void snapshot__archive_freep(struct archive **a)
{
	if (*a != NULL)
		archive_free(*a);
}
#define _cleanup_archive_ __attribute__((cleanup(snapshot__archive_freep)))

/* A host id as the snapshot records it. */
static inline int64_t snapshot__id_to_session(int64_t id, unsigned base)
{
	return id >= base && id - base < SNAPSHOT_IDS ? id - base : SNAPSHOT_NOBODY;
}

/* A recorded id as the host sees it, from base on. */
static inline int64_t snapshot__id_to_host(int64_t id, unsigned base)
{
	if (id >= SNAPSHOT_LEGACY_ID_BASE)
		id = (id - SNAPSHOT_LEGACY_ID_BASE) % SNAPSHOT_IDS;
	return id < SNAPSHOT_IDS ? base + id : base + SNAPSHOT_NOBODY;
}

/* A path that grows and shrinks by one name at a time, as a walk goes down
 * and up: "" for the top, "/a", "/a/b", ... in a struct buf whose maximum
 * is SNAPSHOT_PATH_MAX; its data is never NULL once initialised. */
int snapshot__path_init(struct buf *path, struct bk_err *err);
/* Appends "/name"; BK_E_TOO_LARGE past SNAPSHOT_PATH_MAX. */
int snapshot__path_push(struct buf *path, const char *name, struct bk_err *err);
/* Back to the first len bytes. */
void snapshot__path_cut(struct buf *path, size_t len);

/* "/proc/self/fd/<dirfd>/<name>": the one way to name an entry of any type
 * (a symlink, a device) to the *xattr() calls without opening it, short
 * whatever the entry's depth. out holds at least 300 bytes. */
void snapshot__proc_name(int dirfd, const char *name, char *out, size_t len);
/* Whether an extended attribute is one a snapshot leaves out: POSIX ACLs,
 * which a restore does not apply. */
bool snapshot__xattr_skipped(const char *name);
