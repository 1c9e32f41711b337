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
	if (core__session_enter(core, key, id, &s, &sbx, err) < 0)
		return -1;
	int rc = core->sbx->ops->write_file(sbx, rel, data, len, err);
	core__session_leave(core, s);
	return rc < 0 ? path_fail(err) : 0;
}

int core_file_list(struct core *core, const struct core_key *key, const char *id, const char *path,
		   bool recursive, struct core_list_page *page, struct core_entry **out, size_t *n,
		   struct bk_err *err)
{
	char rel[4096];
	if (path_of(path, true, rel, sizeof(rel), err) < 0)
		return -1;
	struct session *s;
	struct sbx *sbx;
	if (core__session_enter(core, key, id, &s, &sbx, err) < 0)
		return -1;
	struct sbx_entry *es = NULL;
	size_t count = 0;
	struct sbx_list_req req = {.path = rel,
				   .recursive = recursive,
				   .limit = page->limit,
				   .offset = page->offset,
				   .cursor = page->cursor};
	int rc = core->sbx->ops->list(sbx, &req, &es, &count, err);
	core__session_leave(core, s);
	if (rc < 0)
		return path_fail(err);
	page->total = req.total;
	page->more = req.more;
	*out = calloc(count + 1, sizeof(**out));
	if (*out == NULL) {
		sbx_entries_free(es, count);
		return bk_err_set(err, ENOMEM, "cannot list files");
	}
	for (size_t i = 0; i < count; i++) {
		struct sbx_entry *e = &es[i];
		(*out)[i] = (struct core_entry){
		    .path = e->path, .size = e->size, .mtime_ms = e->mtime_ms, .is_dir = e->is_dir};
		e->path = NULL;
	}
	*n = count;
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
	if (core__session_enter(core, key, id, &s, &sbx, err) < 0)
		return -1;
	int rc = core->sbx->ops->remove(sbx, rel, recursive, err);
	core__session_leave(core, s);
	return rc < 0 ? path_fail(err) : 0;
}

/* ---- anywhere in the session's own file system (InstaVM's transfers) ---- */

/* Path of a transfer as the session sees it, absolute: an absolute one as
 * it is (the kernel resolves it inside the session's root), a relative one
 * under the workspace (checked like every workspace path). */
static int transfer_path(const char *path, const char *field, char *out, size_t len,
			 struct bk_err *err)
{
	if (path == NULL || *path == '\0')
		return bk_err_field(err, field, "%s must not be empty", field);
	if (path[0] == '/') {
		if (strlen(path) >= len || strlen(path) > 4095)
			return bk_err_field(err, field, "%s is too long", field);
		snprintf(out, len, "%s", path);
		return 0;
	}
	char rel[4096];
	if (core_path_normalize(path, field, rel, sizeof(rel), err) < 0)
		return -1;
	if (*rel == '\0')
		return bk_err_field(err, field, "%s '%s' names the workspace itself", field, path);
	snprintf(out, len, "%s/%s", SBX_WORKSPACE, rel);
	return 0;
}

/* ---- reads, a piece at a time ---- */

struct core_read {
	struct core *core;
	struct session *s; /* a reference */
	struct sbx *sbx;   /* the sandbox the first piece came from */
	struct sbx_read rd;
	char path[4200];
	char *buf; /* CORE_READ_PIECE bytes: the piece last read */
	size_t len;
	bool first; /* buf holds the first piece, not yet taken */
};

/* The next piece into r->buf, from r->rd.offset, with the session's
 * sandbox: the one the first piece came from, woken if it sleeps, never
 * another (a restarted sandbox's file is not the one being read). */
static int read_piece(struct core_read *r, struct bk_err *err)
{
	struct session *s = r->s;
	pthread_rwlock_rdlock(&s->rw);
	struct sbx *sbx = NULL;
	int rc = core__session_sandbox(r->core, NULL, s, &sbx, err);
	if (rc == 0 && sbx != r->sbx)
		rc = bk_err_kind(err, BK_E_INTERNAL,
				 "the sandbox of '%s' was restarted during a read", s->public_id);
	if (rc == 0)
		rc = r->core->sbx->ops->read_piece(sbx, &r->rd, r->buf, CORE_READ_PIECE, &r->len,
						   err);
	pthread_rwlock_unlock(&s->rw);
	/* A read keeps its session active (memory only: the store has it
	 * at the next flush). */
	__atomic_store_n(&s->last_active_ms, now_ms(), __ATOMIC_RELAXED);
	return rc;
}

int core_read_open(struct core *core, const struct core_key *key, const char *id, const char *path,
		   bool anywhere, struct core_read **out, struct bk_err *err)
{
	struct core_read *r = calloc(1, sizeof(*r));
	if (r == NULL || (r->buf = malloc(CORE_READ_PIECE)) == NULL) {
		free(r);
		return bk_err_set(err, ENOMEM, "cannot read a file");
	}
	int rc = anywhere ? transfer_path(path, "filename", r->path, sizeof(r->path), err)
			  : path_of(path, false, r->path, sizeof(r->path), err);
	struct sbx *sbx = NULL;
	if (rc == 0)
		rc = core__session_enter(core, key, id, &r->s, &sbx, err);
	if (rc < 0) {
		free(r->buf);
		free(r);
		return -1;
	}
	r->core = core;
	r->sbx = sbx;
	r->rd = (struct sbx_read){.path = r->path,
				  .anywhere = anywhere,
				  .max = key->limits.max_file_bytes,
				  .check_utf8 = !anywhere};
	rc = core->sbx->ops->read_piece(sbx, &r->rd, r->buf, CORE_READ_PIECE, &r->len, err);
	/* Leaves the lock, keeps the reference. */
	pthread_rwlock_unlock(&r->s->rw);
	r->rd.check_utf8 = false;
	r->first = true;
	if (rc < 0) {
		if (!anywhere)
			path_fail(err);
		core_read_close(r);
		return -1;
	}
	*out = r;
	return 0;
}

int64_t core_read_size(const struct core_read *r)
{
	return r->rd.size;
}

bool core_read_utf8(const struct core_read *r)
{
	return r->rd.utf8;
}

int core_read_next(struct core_read *r, const char **data, size_t *len, struct bk_err *err)
{
	if (!r->first) {
		r->rd.offset += (int64_t)r->len;
		r->len = 0;
		if (r->rd.offset >= r->rd.size)
			return 0;
		if (read_piece(r, err) < 0)
			return -1;
	}
	r->first = false;
	/* Every piece but the last is whole (base64 encodes them one after
	 * the other); a short one is a file cut meanwhile. */
	if (r->rd.offset + (int64_t)r->len > r->rd.size ||
	    (r->len < CORE_READ_PIECE && r->rd.offset + (int64_t)r->len < r->rd.size))
		return bk_err_kind(err, BK_E_INTERNAL, "'%s' shrank while it was read", r->path);
	if (r->len == 0)
		return 0;
	*data = r->buf;
	*len = r->len;
	return 1;
}

void core_read_close(struct core_read *r)
{
	if (r == NULL)
		return;
	if (r->s)
		core__session_release(r->core, r->s);
	free(r->buf);
	free(r);
}

int core_file_read(struct core *core, const struct core_key *key, const char *id, const char *path,
		   char **data, size_t *len, struct bk_err *err)
{
	struct core_read *r;
	if (core_read_open(core, key, id, path, false, &r, err) < 0)
		return -1;
	struct buf b;
	buf_init(&b, (size_t)core_read_size(r) + 1);
	const char *piece;
	size_t n;
	int rc;
	while ((rc = core_read_next(r, &piece, &n, err)) > 0)
		if (buf_append(&b, piece, n) < 0) {
			rc = bk_err_set(err, ENOMEM, "cannot read '%s'", path);
			break;
		}
	core_read_close(r);
	if (rc < 0 || buf_append(&b, "", 1) < 0) {
		buf_free(&b);
		return rc < 0 ? -1 : bk_err_set(err, ENOMEM, "cannot read '%s'", path);
	}
	*data = b.data;
	*len = b.len - 1;
	return 0;
}

/* Chunks go to the sandbox at most this large (a few MiB at most are held
 * in the daemon whatever the upload's size). */
#define UPLOAD_CHUNK (1u << 20)

struct core_upload {
	struct core *core;
	struct session *s;
	struct sbx *sbx;
	struct sbx_transfer t;
	char path[4200];
	char token[16];
	int64_t max;
	struct buf pending;
	size_t pending_most; /* the most pending ever held */
	bool failed;
};

/* Sends what is pending (the final chunk when final). */
static int upload_flush(struct core_upload *u, bool final, struct bk_err *err)
{
	u->t.final = final;
	int rc = u->core->sbx->ops->write_path(
	    u->sbx, &u->t, u->pending.data ? u->pending.data : "", u->pending.len, err);
	u->t.offset += (int64_t)u->pending.len;
	u->pending.len = 0;
	if (rc < 0)
		u->failed = true;
	return rc;
}

int core_upload_begin(struct core *core, const struct core_key *key, const char *id,
		      const char *path, struct core_upload **out, struct bk_err *err)
{
	struct core_upload *u = calloc(1, sizeof(*u));
	if (u == NULL)
		return bk_err_set(err, ENOMEM, "cannot start the upload");
	if (transfer_path(path, "remote_path", u->path, sizeof(u->path), err) < 0 ||
	    random_alnum(u->token, 12, err) < 0) {
		free(u);
		return -1;
	}
	if (core__session_enter(core, key, id, &u->s, &u->sbx, err) < 0) {
		free(u);
		return -1;
	}
	u->core = core;
	u->max = key->limits.max_file_bytes;
	u->t = (struct sbx_transfer){.path = u->path, .token = u->token};
	buf_init(&u->pending, UPLOAD_CHUNK);
	*out = u;
	return 0;
}

int core_upload_write(struct core_upload *u, const void *data, size_t len, struct bk_err *err)
{
	if (u->failed)
		return bk_err_kind(err, BK_E_INTERNAL, "the upload failed already");
	if (u->t.offset + (int64_t)u->pending.len + (int64_t)len > u->max) {
		u->failed = true;
		return bk_err_kind(err, BK_E_TOO_LARGE, "file '%s' is over the plan's %lld bytes",
				   u->path, (long long)u->max);
	}
	const char *p = data;
	while (len > 0) {
		size_t room = UPLOAD_CHUNK - u->pending.len;
		size_t n = len < room ? len : room;
		if (buf_append(&u->pending, p, n) < 0)
			return bk_err_set(err, ENOMEM, "cannot keep the upload");
		p += n;
		len -= n;
		if (u->pending.len > u->pending_most)
			u->pending_most = u->pending.len;
		if (u->pending.len == UPLOAD_CHUNK && upload_flush(u, false, err) < 0)
			return -1;
	}
	return 0;
}

size_t core_upload_held(const struct core_upload *u)
{
	return 2 * u->pending_most;
}

int core_upload_end(struct core_upload *u, bool commit, int64_t *size, struct bk_err *err)
{
	if (u == NULL)
		return 0;
	int rc = 0;
	if (commit && !u->failed) {
		rc = upload_flush(u, true, err);
		if (rc == 0 && size)
			*size = u->t.offset;
	} else if (u->t.offset > 0 || u->failed) {
		/* What went to the sandbox goes. */
		struct bk_err aerr = BK_ERR_INIT;
		u->t.abort = true;
		u->pending.len = 0;
		u->core->sbx->ops->write_path(u->sbx, &u->t, "", 0, &aerr);
		if (commit)
			rc = bk_err_kind(err, BK_E_INTERNAL, "the upload of '%s' failed", u->path);
	}
	core__session_touch(u->core, u->s);
	core__session_leave(u->core, u->s);
	buf_free(&u->pending);
	free(u);
	return rc;
}
