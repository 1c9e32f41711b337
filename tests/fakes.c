/* The fakes' world (tests/fakes.h): one lock over all of it, no I/O but
 * its own file. The store is tests/fake_store.c, the backend
 * tests/fake_backend.c. */
#include "fakes_int.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "util/util.h"

/* ---- the world ---- */

void fake__files_free(struct fake_file *f)
{
	while (f) {
		struct fake_file *next = f->next;
		free(f->path);
		free(f->data);
		free(f);
		f = next;
	}
}

struct fake_file *fake__files_copy(const struct fake_file *f)
{
	struct fake_file *head = NULL, **tail = &head;
	for (; f; f = f->next) {
		struct fake_file *c = calloc(1, sizeof(*c));
		c->path = strdup(f->path);
		c->data = malloc(f->len + 1);
		memcpy(c->data, f->data, f->len);
		c->data[f->len] = '\0';
		c->len = f->len;
		*tail = c;
		tail = &c->next;
	}
	return head;
}

int64_t fake__files_count(const struct fake_file *f)
{
	int64_t n = 0;
	for (; f; f = f->next)
		n++;
	return n;
}

struct fake_world *fake_world_new(const char *path)
{
	struct fake_world *w = calloc(1, sizeof(*w));
	pthread_mutex_init(&w->lock, NULL);
	if (path)
		snprintf(w->path, sizeof(w->path), "%s", path);
	return w;
}

void fake_world_free(struct fake_world *w)
{
	if (w == NULL)
		return;
	while (w->sessions) {
		struct fake_rec *r = w->sessions;
		w->sessions = r->next;
		store_session_release(&r->s);
		free(r);
	}
	while (w->claims) {
		struct fake_claim *c = w->claims;
		w->claims = c->next;
		free(c);
	}
	while (w->idem) {
		struct fake_idem *r = w->idem;
		w->idem = r->next;
		store_idem_release(&r->r);
		free(r);
	}
	while (w->tasks) {
		struct fake_task *k = w->tasks;
		w->tasks = k->next;
		store_task_release(&k->t);
		free(k);
	}
	while (w->boxes) {
		struct fake_box *b = w->boxes;
		w->boxes = b->next;
		fake__files_free(b->disk_files);
		fake__files_free(b->snap_files);
		free(b);
	}
	pthread_mutex_destroy(&w->lock);
	free(w);
}

static json_t *files_json(const struct fake_file *f)
{
	json_t *o = json_object();
	for (; f; f = f->next)
		json_object_set_new(o, f->path, json_stringn(f->data, f->len));
	return o;
}

static struct fake_file *files_from_json(json_t *o)
{
	struct fake_file *head = NULL;
	const char *k;
	json_t *v;
	json_object_foreach (o, k, v) {
		struct fake_file *f = calloc(1, sizeof(*f));
		f->path = strdup(k);
		f->len = json_string_length(v);
		f->data = malloc(f->len + 1);
		memcpy(f->data, json_string_value(v), f->len + 1);
		f->next = head;
		head = f;
	}
	return head;
}

/* With w->lock held: writes the world to its file, whole or not at all. */
static void world_save(struct fake_world *w)
{
	if (w->path[0] == '\0')
		return;
	json_t *keys = json_array(), *sessions = json_array(), *boxes = json_array();
	for (int i = 0; i < w->n_keys; i++) {
		const struct store_key *k = &w->keys[i];
		json_array_append_new(
		    keys, json_pack("{s:s,s:s,s:s,s:I,s:I,s:s}", "id", k->id, "hash", "", "plan",
				    k->plan, "created", (json_int_t)k->created_ms, "revoked",
				    (json_int_t)k->revoked_ms, "overrides", k->overrides));
		json_t *h = json_array();
		for (int b = 0; b < 32; b++)
			json_array_append_new(h, json_integer(k->hash[b]));
		json_object_set_new(json_array_get(keys, (size_t)i), "hash", h);
	}
	for (struct fake_rec *r = w->sessions; r; r = r->next) {
		const struct store_session *s = &r->s;
		json_t *o = json_pack("{s:s,s:s,s:I,s:I,s:I,s:i,s:s,s:i,s:f,s:i,s:i}", "id", s->id,
				      "key", s->key_id, "created", (json_int_t)s->created_ms,
				      "expires", (json_int_t)s->expires_ms, "active",
				      (json_int_t)s->last_active_ms, "state", (int)s->state,
				      "metadata", s->metadata, "memory", s->memory_mb, "cpu",
				      s->cpu, "timeout", s->timeout_s, "disk", s->disk_mb);
		json_object_update_new(
		    o, json_pack("{s:s,s:i,s:s,s:i,s:i,s:I,s:I,s:I}", "public", s->public_id,
				 "dialect", s->dialect, "env", s->env ? s->env : "{}", "vcpu",
				 s->vcpu, "vm", (int)s->vm_state, "lifetime",
				 (json_int_t)s->vm_lifetime_s, "spawned",
				 (json_int_t)s->vm_spawned_ms, "ends", (json_int_t)s->vm_ends_ms));
		json_array_append_new(sessions, o);
	}
	for (struct fake_box *b = w->boxes; b; b = b->next)
		json_array_append_new(
		    boxes, json_pack("{s:s,s:b,s:o,s:b,s:o}", "id", b->id, "disk", b->disk,
				     "disk_files", files_json(b->disk_files), "snapshot",
				     b->snapshot, "snap_files", files_json(b->snap_files)));
	json_t *all =
	    json_pack("{s:o,s:o,s:o}", "keys", keys, "sessions", sessions, "boxes", boxes);
	char tmp[300];
	snprintf(tmp, sizeof(tmp), "%s.tmp", w->path);
	if (json_dump_file(all, tmp, JSON_COMPACT) != 0 || rename(tmp, w->path) != 0)
		harness_fail(__FILE__, __LINE__, "cannot save the world to %s", w->path);
	json_decref(all);
}

struct fake_world *fake_world_load(const char *path)
{
	json_error_t je;
	json_t *all = json_load_file(path, 0, &je);
	if (all == NULL)
		harness_fail(__FILE__, __LINE__, "cannot load the world: %s", je.text);
	struct fake_world *w = fake_world_new(path);
	size_t i;
	json_t *v;
	json_array_foreach (json_object_get(all, "keys"), i, v) {
		struct store_key *k = &w->keys[w->n_keys++];
		snprintf(k->id, sizeof(k->id), "%s", json_string_value(json_object_get(v, "id")));
		snprintf(k->plan, sizeof(k->plan), "%s",
			 json_string_value(json_object_get(v, "plan")));
		snprintf(k->overrides, sizeof(k->overrides), "%s",
			 json_string_value(json_object_get(v, "overrides")));
		k->created_ms = json_integer_value(json_object_get(v, "created"));
		k->revoked_ms = json_integer_value(json_object_get(v, "revoked"));
		for (int b = 0; b < 32; b++)
			k->hash[b] = (uint8_t)json_integer_value(
			    json_array_get(json_object_get(v, "hash"), (size_t)b));
	}
	struct fake_rec **tail = &w->sessions;
	json_array_foreach (json_object_get(all, "sessions"), i, v) {
		struct fake_rec *r = calloc(1, sizeof(*r));
		struct store_session *s = &r->s;
		snprintf(s->id, sizeof(s->id), "%s", json_string_value(json_object_get(v, "id")));
		snprintf(s->key_id, sizeof(s->key_id), "%s",
			 json_string_value(json_object_get(v, "key")));
		s->created_ms = json_integer_value(json_object_get(v, "created"));
		s->expires_ms = json_integer_value(json_object_get(v, "expires"));
		s->last_active_ms = json_integer_value(json_object_get(v, "active"));
		s->state =
		    (enum store_session_state)json_integer_value(json_object_get(v, "state"));
		s->metadata = strdup(json_string_value(json_object_get(v, "metadata")));
		s->memory_mb = (int)json_integer_value(json_object_get(v, "memory"));
		s->cpu = json_real_value(json_object_get(v, "cpu"));
		s->timeout_s = (int)json_integer_value(json_object_get(v, "timeout"));
		s->disk_mb = (int)json_integer_value(json_object_get(v, "disk"));
		snprintf(s->public_id, sizeof(s->public_id), "%s",
			 json_string_value(json_object_get(v, "public")));
		s->dialect = (int)json_integer_value(json_object_get(v, "dialect"));
		s->env = strdup(json_string_value(json_object_get(v, "env")));
		s->vcpu = (int)json_integer_value(json_object_get(v, "vcpu"));
		s->vm_state = (enum store_vm_state)json_integer_value(json_object_get(v, "vm"));
		s->vm_lifetime_s = json_integer_value(json_object_get(v, "lifetime"));
		s->vm_spawned_ms = json_integer_value(json_object_get(v, "spawned"));
		s->vm_ends_ms = json_integer_value(json_object_get(v, "ends"));
		*tail = r;
		tail = &r->next;
	}
	json_array_foreach (json_object_get(all, "boxes"), i, v) {
		struct fake_box *b = calloc(1, sizeof(*b));
		snprintf(b->id, sizeof(b->id), "%s", json_string_value(json_object_get(v, "id")));
		b->disk = json_is_true(json_object_get(v, "disk"));
		b->snapshot = json_is_true(json_object_get(v, "snapshot"));
		b->disk_files = files_from_json(json_object_get(v, "disk_files"));
		b->snap_files = files_from_json(json_object_get(v, "snap_files"));
		b->next = w->boxes;
		w->boxes = b;
	}
	json_decref(all);
	return w;
}

void fake__count_call(struct fake_world *w, const char *op)
{
	for (int i = 0; i < MAX_COUNTERS; i++) {
		if (w->calls[i].op[0] == '\0')
			snprintf(w->calls[i].op, sizeof(w->calls[i].op), "%s", op);
		if (strcmp(w->calls[i].op, op) == 0) {
			w->calls[i].n++;
			return;
		}
	}
}

/* With w->lock held: the start of an operation called op. Fails it when
 * told to (-1 with err set). */
int fake__op(struct fake_world *w, const char *op, struct bk_err *err)
{
	fake__count_call(w, op);
	for (size_t i = 0; i < ARRAY_SIZE(w->fails); i++) {
		if (w->fails[i].left > 0 && strcmp(w->fails[i].op, op) == 0) {
			w->fails[i].left--;
			return bk_err_kind(err, BK_E_INTERNAL, "%s failed (injected)", op);
		}
	}
	return 0;
}

/* With w->lock held: one step that changes what survives a crash, about
 * to happen. At the crash step the process ends first. */
void fake__step(struct fake_world *w)
{
	w->steps++;
	if (w->crash_at && w->steps >= w->crash_at) {
		fflush(NULL);
		_exit(FAKE_CRASH_EXIT);
	}
}

/* With w->lock held, after a step: what it did is on "disk". */
void fake__done(struct fake_world *w)
{
	world_save(w);
}

int fake_steps(struct fake_world *w)
{
	pthread_mutex_lock(&w->lock);
	int n = w->steps;
	pthread_mutex_unlock(&w->lock);
	return n;
}

void fake_crash_at(struct fake_world *w, int n)
{
	pthread_mutex_lock(&w->lock);
	w->crash_at = n ? w->steps + n : 0;
	pthread_mutex_unlock(&w->lock);
}

void fake_fail(struct fake_world *w, const char *op, int count)
{
	pthread_mutex_lock(&w->lock);
	/* op's entry, else a free one, else the first. */
	size_t n = ARRAY_SIZE(w->fails), at = n;
	for (size_t i = 0; i < n && at == n; i++)
		if (strcmp(w->fails[i].op, op) == 0)
			at = i;
	for (size_t i = 0; i < n && at == n; i++)
		if (w->fails[i].left == 0)
			at = i;
	if (at == n)
		at = 0;
	snprintf(w->fails[at].op, sizeof(w->fails[at].op), "%s", op);
	w->fails[at].left = count;
	pthread_mutex_unlock(&w->lock);
}

int fake_calls(struct fake_world *w, const char *op)
{
	pthread_mutex_lock(&w->lock);
	int n = 0;
	for (int i = 0; i < MAX_COUNTERS; i++)
		if (strcmp(w->calls[i].op, op) == 0)
			n = w->calls[i].n;
	pthread_mutex_unlock(&w->lock);
	return n;
}

/* With w->lock held. */
struct fake_box *fake__box_find(struct fake_world *w, const char *id, bool create)
{
	for (struct fake_box *b = w->boxes; b; b = b->next)
		if (strcmp(b->id, id) == 0)
			return b;
	if (!create)
		return NULL;
	struct fake_box *b = calloc(1, sizeof(*b));
	snprintf(b->id, sizeof(b->id), "%s", id);
	b->next = w->boxes;
	w->boxes = b;
	return b;
}

struct fake_rec *fake__rec_find(struct fake_world *w, const char *id)
{
	for (struct fake_rec *r = w->sessions; r; r = r->next)
		if (strcmp(r->s.id, id) == 0)
			return r;
	return NULL;
}

const struct fake_file *fake__file_find(const struct fake_file *f, const char *path)
{
	for (; f; f = f->next)
		if (strcmp(f->path, path) == 0)
			return f;
	return NULL;
}

void fake_view(struct fake_world *w, const char *id, struct fake_view *out)
{
	memset(out, 0, sizeof(*out));
	pthread_mutex_lock(&w->lock);
	struct fake_rec *r = fake__rec_find(w, id);
	out->record = r != NULL;
	out->state = r ? (int)r->s.state : -1;
	struct fake_box *b = fake__box_find(w, id, false);
	if (b) {
		out->disk = b->disk;
		out->snapshot = b->snapshot;
		out->running = b->running;
		out->frozen = b->frozen;
		out->saved_frozen = b->saved_frozen;
		const struct fake_file *f = NULL;
		if (b->disk)
			f = fake__file_find(b->disk_files, "f");
		else if (b->snapshot)
			f = fake__file_find(b->snap_files, "f");
		if (f) {
			out->have_file = true;
			snprintf(out->file, sizeof(out->file), "%.*s", (int)f->len, f->data);
		}
		out->files_n = fake__files_count(b->disk ? b->disk_files : b->snap_files);
	}
	pthread_mutex_unlock(&w->lock);
}

int fake_running(struct fake_world *w)
{
	pthread_mutex_lock(&w->lock);
	int n = 0;
	for (struct fake_box *b = w->boxes; b; b = b->next)
		n += b->running;
	pthread_mutex_unlock(&w->lock);
	return n;
}
