/* The files API: reads and writes inside a session's workspace. Paths are
 * checked here lexically (core_path_normalize) for a clear error, and again
 * by the kernel inside the session, where they are resolved. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core_int.h"

static int path_of(const char *path, bool root_ok, char *out, size_t len, struct bk_err *err)
{
	if (core_path_normalize(path ? path : "", "path", out, len, err) < 0) {
		/* An empty path is the workspace itself where that is allowed. */
		if (!(root_ok && (path == NULL || *path == '\0')))
			return -1;
		out[0] = '\0';
		return 0;
	}
	if (!root_ok && out[0] == '\0')
		return bk_err_field(err, "path", "path '%s' names the workspace itself", path);
	return 0;
}

/* Errors the sandbox found in a path name the request's field. */
static int path_fail(struct bk_err *err)
{
	if (err->kind == BK_E_INVALID && err->field[0] == '\0')
		snprintf(err->field, sizeof(err->field), "path");
	return -1;
}

int core_file_write(struct core *core, const struct core_key *key, const char *id, const char *path,
		    const void *data, size_t len, struct bk_err *err)
{
	char rel[4096];
	if (path_of(path, false, rel, sizeof(rel), err) < 0)
		return -1;
	if ((int64_t)len > key->limits.max_file_bytes)
		return bk_err_kind(err, BK_E_TOO_LARGE, "file of %zu bytes is over the plan's %lld",
				   len, (long long)key->limits.max_file_bytes);
	struct session *s;
	struct sbx *sbx;
	if (core__session_enter(core, key->id, id, &s, &sbx, err) < 0)
		return -1;
	int rc = core->sbx->ops->write_file(sbx, rel, data, len, err);
	core__session_leave(core, s);
	return rc < 0 ? path_fail(err) : 0;
}

int core_file_read(struct core *core, const struct core_key *key, const char *id, const char *path,
		   char **data, size_t *len, struct bk_err *err)
{
	char rel[4096];
	if (path_of(path, false, rel, sizeof(rel), err) < 0)
		return -1;
	struct session *s;
	struct sbx *sbx;
	if (core__session_enter(core, key->id, id, &s, &sbx, err) < 0)
		return -1;
	int rc =
	    core->sbx->ops->read_file(sbx, rel, (size_t)key->limits.max_file_bytes, data, len, err);
	core__session_leave(core, s);
	return rc < 0 ? path_fail(err) : 0;
}

static int entry_cmp(const void *a, const void *b)
{
	return strcmp(((const struct sbx_entry *)a)->path, ((const struct sbx_entry *)b)->path);
}

int core_file_list(struct core *core, const struct core_key *key, const char *id, const char *path,
		   bool recursive, int limit, int offset, struct core_entry **out, size_t *n,
		   int64_t *total, struct bk_err *err)
{
	char rel[4096];
	if (path_of(path, true, rel, sizeof(rel), err) < 0)
		return -1;
	struct session *s;
	struct sbx *sbx;
	if (core__session_enter(core, key->id, id, &s, &sbx, err) < 0)
		return -1;
	struct sbx_entry *es = NULL;
	size_t count = 0;
	int rc = core->sbx->ops->list(sbx, rel, recursive, &es, &count, err);
	core__session_leave(core, s);
	if (rc < 0)
		return path_fail(err);
	/* Pages are stable across calls: entries sorted by path. */
	qsort(es, count, sizeof(*es), entry_cmp);
	*total = (int64_t)count;
	size_t first = (size_t)offset < count ? (size_t)offset : count;
	size_t take = count - first < (size_t)limit ? count - first : (size_t)limit;
	*out = calloc(take + 1, sizeof(**out));
	if (*out == NULL) {
		sbx_entries_free(es, count);
		return bk_err_set(err, ENOMEM, "cannot list files");
	}
	for (size_t i = 0; i < take; i++) {
		struct sbx_entry *e = &es[first + i];
		(*out)[i] = (struct core_entry){
		    .path = e->path, .size = e->size, .mtime_ms = e->mtime_ms, .is_dir = e->is_dir};
		e->path = NULL;
	}
	*n = take;
	sbx_entries_free(es, count);
	return 0;
}

void core_entries_free(struct core_entry *es, size_t n)
{
	for (size_t i = 0; es && i < n; i++)
		free(es[i].path);
	free(es);
}

int core_file_delete(struct core *core, const struct core_key *key, const char *id,
		     const char *path, bool recursive, struct bk_err *err)
{
	char rel[4096];
	if (path_of(path, false, rel, sizeof(rel), err) < 0)
		return -1;
	struct session *s;
	struct sbx *sbx;
	if (core__session_enter(core, key->id, id, &s, &sbx, err) < 0)
		return -1;
	int rc = core->sbx->ops->remove(sbx, rel, recursive, err);
	core__session_leave(core, s);
	return rc < 0 ? path_fail(err) : 0;
}
