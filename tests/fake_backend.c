/* The sandbox backend of tests/fakes.h: it runs nothing. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fakes_int.h"

/* ---- the backend ---- */

struct fake_backend {
	struct sbx_backend base;
	struct fake_world *w;
};

struct fake_sbx {
	struct sbx base;
	struct fake_world *w;
	bool dead;
};

#define BW(b) (((struct fake_backend *)(b))->w)
#define SW(s) (((struct fake_sbx *)(s))->w)

static void fb_close(struct sbx_backend *b)
{
	free(b);
}

static void fb_describe(struct sbx_backend *b, char *out, size_t len)
{
	snprintf(out, len, "fake");
}

static void fb_reconcile(struct sbx_backend *b, bool (*known)(void *ctx, const char *id, bool here),
			 void *ctx)
{
	struct fake_world *w = BW(b);
	pthread_mutex_lock(&w->lock);
	for (struct fake_box **pp = &w->boxes; *pp;) {
		struct fake_box *x = *pp;
		x->running = 0;
		x->frozen = false;
		/* known() asks the store, which takes the world's lock too. */
		pthread_mutex_unlock(&w->lock);
		bool keep = known(ctx, x->id, true);
		pthread_mutex_lock(&w->lock);
		if (keep) {
			pp = &x->next;
			continue;
		}
		*pp = x->next;
		fake__files_free(x->disk_files);
		fake__files_free(x->snap_files);
		free(x);
	}
	fake__done(w);
	pthread_mutex_unlock(&w->lock);
}

static int fb_start(struct sbx_backend *b, const char *id, const struct sbx_limits *limits,
		    struct sbx **out, struct bk_err *err)
{
	struct fake_world *w = BW(b);
	pthread_mutex_lock(&w->lock);
	int rc = fake__op(w, "start", err);
	if (rc == 0) {
		fake__step(w);
		struct fake_box *x = fake__box_find(w, id, true);
		x->disk = true;
		x->running++;
		fake__done(w);
		struct fake_sbx *s = calloc(1, sizeof(*s));
		s->base.backend = b;
		s->w = w;
		snprintf(s->base.id, sizeof(s->base.id), "%s", id);
		*out = &s->base;
	}
	pthread_mutex_unlock(&w->lock);
	return rc;
}

static int fb_adopt(struct sbx *s, const char *id, const struct sbx_limits *limits,
		    struct bk_err *err)
{
	struct fake_world *w = SW(s);
	pthread_mutex_lock(&w->lock);
	int rc = fake__op(w, "adopt", err);
	struct fake_box *from = fake__box_find(w, s->id, false);
	if (rc == 0 && from == NULL)
		rc = bk_err_kind(err, BK_E_INTERNAL, "nothing runs for '%s'", s->id);
	if (rc == 0) {
		fake__step(w);
		snprintf(from->id, sizeof(from->id), "%s", id);
		snprintf(s->id, sizeof(s->id), "%s", id);
		fake__done(w);
	}
	pthread_mutex_unlock(&w->lock);
	return rc;
}

static void fb_terminate(struct sbx *s)
{
	((struct fake_sbx *)s)->dead = true;
}

static void fb_stop(struct sbx *s)
{
	struct fake_world *w = SW(s);
	pthread_mutex_lock(&w->lock);
	fake__count_call(w, "stop");
	fake__step(w);
	struct fake_box *x = fake__box_find(w, s->id, false);
	if (x) {
		x->running--;
		x->frozen = false;
	}
	fake__done(w);
	pthread_mutex_unlock(&w->lock);
	free(s);
}

static int fb_freeze(struct sbx *s, bool frozen, struct bk_err *err)
{
	struct fake_world *w = SW(s);
	pthread_mutex_lock(&w->lock);
	int rc = fake__op(w, "freeze", err);
	struct fake_box *x = fake__box_find(w, s->id, false);
	if (rc == 0 && x)
		x->frozen = frozen;
	pthread_mutex_unlock(&w->lock);
	return rc;
}

static bool fb_alive(struct sbx *s)
{
	return !((struct fake_sbx *)s)->dead;
}

static int fb_exec(struct sbx *s, const struct sbx_exec_req *req, struct sbx_exec_result *res,
		   struct bk_err *err)
{
	memset(res, 0, sizeof(*res));
	buf_init(&res->out, req->output_max);
	buf_init(&res->err, req->output_max);
	struct fake_world *w = SW(s);
	pthread_mutex_lock(&w->lock);
	int rc = fake__op(w, "exec", err);
	pthread_mutex_unlock(&w->lock);
	if (rc < 0)
		return -1;
	/* What it ran, as its output. */
	buf_append(&res->out, req->text, strlen(req->text));
	res->written = calloc(1, sizeof(char *));
	return 0;
}

static int fb_write_file(struct sbx *s, const char *path, const void *data, size_t len,
			 struct bk_err *err)
{
	struct fake_world *w = SW(s);
	pthread_mutex_lock(&w->lock);
	int rc = fake__op(w, "write_file", err);
	struct fake_box *x = fake__box_find(w, s->id, false);
	if (rc == 0 && (x == NULL || !x->disk))
		rc = bk_err_kind(err, BK_E_INTERNAL, "'%s' has no disk", s->id);
	if (rc == 0) {
		struct fake_file *f = (struct fake_file *)fake__file_find(x->disk_files, path);
		if (f == NULL) {
			f = calloc(1, sizeof(*f));
			f->path = strdup(path);
			f->next = x->disk_files;
			x->disk_files = f;
		}
		free(f->data);
		f->data = malloc(len + 1);
		memcpy(f->data, data, len);
		f->data[len] = '\0';
		f->len = len;
		fake__done(w);
	}
	pthread_mutex_unlock(&w->lock);
	return rc;
}

static int fb_read_piece(struct sbx *s, struct sbx_read *rd, void *buf, size_t cap, size_t *got,
			 struct bk_err *err)
{
	struct fake_world *w = SW(s);
	pthread_mutex_lock(&w->lock);
	struct fake_box *x = fake__box_find(w, s->id, false);
	const struct fake_file *f = x && x->disk ? fake__file_find(x->disk_files, rd->path) : NULL;
	int rc = 0;
	if (f == NULL) {
		rc = bk_err_kind(err, BK_E_FILE_NOT_FOUND, "no file '%s'", rd->path);
	} else if ((int64_t)f->len > rd->max) {
		rc = bk_err_kind(err, BK_E_TOO_LARGE, "file '%s' is too large", rd->path);
	} else {
		size_t off = rd->offset < (int64_t)f->len ? (size_t)rd->offset : f->len;
		size_t n = f->len - off < cap ? f->len - off : cap;
		memcpy(buf, f->data + off, n);
		*got = n;
		rd->size = (int64_t)f->len;
		rd->have_id = true;
		rd->utf8 = true;
	}
	pthread_mutex_unlock(&w->lock);
	return rc;
}

static int fb_list(struct sbx *s, struct sbx_list_req *req, struct sbx_entry **out, size_t *n,
		   struct bk_err *err)
{
	struct fake_world *w = SW(s);
	pthread_mutex_lock(&w->lock);
	struct fake_box *x = fake__box_find(w, s->id, false);
	int64_t count = x ? fake__files_count(x->disk_files) : 0;
	*out = calloc((size_t)count + 1, sizeof(**out));
	*n = 0;
	for (struct fake_file *f = x ? x->disk_files : NULL; f && (int)*n < req->limit; f = f->next)
		(*out)[(*n)++] =
		    (struct sbx_entry){.path = strdup(f->path), .size = (int64_t)f->len};
	req->total = count;
	req->more = (int64_t)*n < count;
	pthread_mutex_unlock(&w->lock);
	return 0;
}

static int fb_stat(struct sbx *s, const char *path, mode_t *mode, struct bk_err *err)
{
	*mode = 040755;
	return 0;
}

static int fb_remove(struct sbx *s, const char *path, bool recursive, struct bk_err *err)
{
	return 0;
}

static int fb_kill(struct sbx *s, pid_t pid, struct bk_err *err)
{
	return 0;
}

static int fb_ps(struct sbx *s, struct sbx_proc **out, size_t *n, struct bk_err *err)
{
	*out = calloc(1, sizeof(**out));
	*n = 0;
	return 0;
}

static int fb_dial(struct sbx *s, int port, int timeout_ms, struct bk_err *err)
{
	return bk_err_kind(err, BK_E_UNAVAILABLE, "nothing listens on port %d", port);
}

static void fb_stats(struct sbx_backend *b, const char *id, struct sbx_stats *out)
{
	struct fake_world *w = BW(b);
	pthread_mutex_lock(&w->lock);
	struct fake_box *x = fake__box_find(w, id, false);
	*out = (struct sbx_stats){
	    .files = x ? fake__files_count(x->disk ? x->disk_files : x->snap_files) : 0,
	    .processes = x ? x->running : 0,
	};
	pthread_mutex_unlock(&w->lock);
}

static struct sbx_files_state fb_files_state(struct sbx_backend *b, const char *id)
{
	struct fake_world *w = BW(b);
	pthread_mutex_lock(&w->lock);
	struct fake_box *x = fake__box_find(w, id, false);
	struct sbx_files_state st = {x && x->disk, x && x->snapshot};
	pthread_mutex_unlock(&w->lock);
	return st;
}

/* Saving is one step, as on a real host: the snapshot appears (whole);
 * the disk stays until drop_disk(). A sandbox that runs must be frozen:
 * the backend may not save files that processes are changing. */
static int fb_files_save(struct sbx_backend *b, const char *id, struct sbx_save_stats *stats,
			 struct bk_err *err)
{
	struct fake_world *w = BW(b);
	pthread_mutex_lock(&w->lock);
	int rc = fake__op(w, "files_save", err);
	struct fake_box *x = fake__box_find(w, id, false);
	if (rc == 0 && (x == NULL || !x->disk))
		rc = bk_err_kind(err, BK_E_INTERNAL, "'%s' has no disk", id);
	if (rc == 0 && x->running > 0 && !x->frozen)
		rc = bk_err_kind(err, BK_E_INTERNAL, "'%s' saved while its processes run", id);
	if (rc == 0) {
		fake__step(w);
		fake__files_free(x->snap_files);
		x->snap_files = fake__files_copy(x->disk_files);
		x->snapshot = true;
		x->saved_frozen = x->running > 0;
		fake__done(w);
		if (stats)
			*stats = (struct sbx_save_stats){.files = fake__files_count(x->snap_files)};
	}
	pthread_mutex_unlock(&w->lock);
	return rc;
}

/* Two steps too: any disk there is dropped, then a new one is filled. */
static int fb_files_restore(struct sbx_backend *b, const char *id, int disk_mb, struct bk_err *err)
{
	struct fake_world *w = BW(b);
	pthread_mutex_lock(&w->lock);
	int rc = fake__op(w, "files_restore", err);
	struct fake_box *x = rc == 0 ? fake__box_find(w, id, true) : NULL;
	if (x && x->disk) {
		fake__step(w);
		fake__files_free(x->disk_files);
		x->disk_files = NULL;
		x->disk = false;
		fake__done(w);
	}
	if (x && x->snapshot) {
		fake__step(w);
		x->disk_files = fake__files_copy(x->snap_files);
		x->disk = true;
		fake__done(w);
	}
	pthread_mutex_unlock(&w->lock);
	return rc;
}

static int fb_drop_disk(struct sbx_backend *b, const char *id, struct bk_err *err)
{
	struct fake_world *w = BW(b);
	pthread_mutex_lock(&w->lock);
	struct fake_box *x = fake__box_find(w, id, false);
	if (x && x->disk) {
		fake__step(w);
		fake__files_free(x->disk_files);
		x->disk_files = NULL;
		x->disk = false;
		fake__done(w);
	}
	pthread_mutex_unlock(&w->lock);
	return 0;
}

static void fb_drop_snapshot(struct sbx_backend *b, const char *id)
{
	struct fake_world *w = BW(b);
	pthread_mutex_lock(&w->lock);
	struct fake_box *x = fake__box_find(w, id, false);
	if (x && x->snapshot) {
		fake__step(w);
		fake__files_free(x->snap_files);
		x->snap_files = NULL;
		x->snapshot = false;
		fake__done(w);
	}
	pthread_mutex_unlock(&w->lock);
}

static int64_t fb_snapshot_files(struct sbx_backend *b, const char *id)
{
	struct fake_world *w = BW(b);
	pthread_mutex_lock(&w->lock);
	struct fake_box *x = fake__box_find(w, id, false);
	int64_t n = x ? fake__files_count(x->snap_files) : 0;
	pthread_mutex_unlock(&w->lock);
	return n;
}

static int fb_purge(struct sbx_backend *b, const char *id, struct bk_err *err)
{
	struct fake_world *w = BW(b);
	pthread_mutex_lock(&w->lock);
	fake__count_call(w, "purge");
	for (struct fake_box **pp = &w->boxes; *pp; pp = &(*pp)->next) {
		struct fake_box *x = *pp;
		if (strcmp(x->id, id) != 0)
			continue;
		fake__step(w);
		*pp = x->next;
		fake__files_free(x->disk_files);
		fake__files_free(x->snap_files);
		free(x);
		fake__done(w);
		break;
	}
	pthread_mutex_unlock(&w->lock);
	return 0;
}

static const struct sbx_ops fake_backend_ops = {
    .name = "fake",
    .close = fb_close,
    .describe = fb_describe,
    .reconcile = fb_reconcile,
    .start = fb_start,
    .adopt = fb_adopt,
    .terminate = fb_terminate,
    .stop = fb_stop,
    .freeze = fb_freeze,
    .alive = fb_alive,
    .exec = fb_exec,
    .write_file = fb_write_file,
    .read_piece = fb_read_piece,
    .list = fb_list,
    .stat = fb_stat,
    .remove = fb_remove,
    .kill = fb_kill,
    .ps = fb_ps,
    .dial = fb_dial,
    .stats = fb_stats,
    .files_state = fb_files_state,
    .files_save = fb_files_save,
    .files_restore = fb_files_restore,
    .drop_disk = fb_drop_disk,
    .drop_snapshot = fb_drop_snapshot,
    .snapshot_files = fb_snapshot_files,
    .purge = fb_purge,
};

struct sbx_backend *fake_backend_new(struct fake_world *w)
{
	struct fake_backend *b = calloc(1, sizeof(*b));
	b->base.ops = &fake_backend_ops;
	b->w = w;
	return &b->base;
}
