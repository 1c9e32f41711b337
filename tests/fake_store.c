/* The in-memory store of tests/fakes.h. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fakes_int.h"

/* ---- the store ---- */

struct fake_store {
	struct store base;
	struct fake_world *w;
};

#define FW(st) (((struct fake_store *)(st))->w)

static void fs_close(struct store *st)
{
	free(st);
}

static int fs_key_insert(struct store *st, const struct store_key *key, struct bk_err *err)
{
	struct fake_world *w = FW(st);
	pthread_mutex_lock(&w->lock);
	int rc = fake__op(w, "key_insert", err);
	for (int i = 0; rc == 0 && i < w->n_keys; i++)
		if (strcmp(w->keys[i].id, key->id) == 0 ||
		    memcmp(w->keys[i].hash, key->hash, 32) == 0)
			rc = bk_err_kind(err, BK_E_CONFLICT, "key '%s' exists", key->id);
	if (rc == 0 && w->n_keys == MAX_KEYS)
		rc = bk_err_kind(err, BK_E_INTERNAL, "too many keys");
	if (rc == 0) {
		w->keys[w->n_keys++] = *key;
		fake__done(w);
	}
	pthread_mutex_unlock(&w->lock);
	return rc;
}

static int fs_key_find_by_hash(struct store *st, const uint8_t hash[32], struct store_key *out,
			       struct bk_err *err)
{
	struct fake_world *w = FW(st);
	pthread_mutex_lock(&w->lock);
	int rc = 0;
	for (int i = 0; i < w->n_keys; i++)
		if (memcmp(w->keys[i].hash, hash, 32) == 0) {
			*out = w->keys[i];
			rc = 1;
		}
	pthread_mutex_unlock(&w->lock);
	return rc;
}

static int fs_key_list(struct store *st, struct store_key **out, size_t *n, struct bk_err *err)
{
	struct fake_world *w = FW(st);
	pthread_mutex_lock(&w->lock);
	*out = calloc((size_t)w->n_keys + 1, sizeof(**out));
	memcpy(*out, w->keys, sizeof(**out) * (size_t)w->n_keys);
	*n = (size_t)w->n_keys;
	pthread_mutex_unlock(&w->lock);
	return 0;
}

static int fs_key_revoke(struct store *st, const char *id, int64_t revoked_ms, struct bk_err *err)
{
	struct fake_world *w = FW(st);
	pthread_mutex_lock(&w->lock);
	int rc = 0;
	for (int i = 0; i < w->n_keys; i++)
		if (strcmp(w->keys[i].id, id) == 0) {
			if (w->keys[i].revoked_ms == 0)
				w->keys[i].revoked_ms = revoked_ms;
			rc = 1;
		}
	fake__done(w);
	pthread_mutex_unlock(&w->lock);
	return rc;
}

static int fs_idem_get(struct store *st, const char *key_id, const char *idem_key, int64_t since_ms,
		       struct store_idem *out, struct bk_err *err)
{
	struct fake_world *w = FW(st);
	memset(out, 0, sizeof(*out));
	pthread_mutex_lock(&w->lock);
	int rc = 0;
	for (struct fake_idem *r = w->idem; r && rc == 0; r = r->next) {
		if (strcmp(r->r.key_id, key_id) == 0 && strcmp(r->r.idem_key, idem_key) == 0 &&
		    r->r.created_ms >= since_ms) {
			*out = r->r;
			out->body = malloc(r->r.body_len + 1);
			memcpy(out->body, r->r.body, r->r.body_len + 1);
			rc = 1;
		}
	}
	pthread_mutex_unlock(&w->lock);
	return rc;
}

static int fs_idem_put(struct store *st, const struct store_idem *in, struct bk_err *err)
{
	struct fake_world *w = FW(st);
	pthread_mutex_lock(&w->lock);
	for (struct fake_idem **pp = &w->idem; *pp; pp = &(*pp)->next) {
		if (strcmp((*pp)->r.key_id, in->key_id) == 0 &&
		    strcmp((*pp)->r.idem_key, in->idem_key) == 0) {
			struct fake_idem *old = *pp;
			*pp = old->next;
			store_idem_release(&old->r);
			free(old);
			break;
		}
	}
	struct fake_idem *r = calloc(1, sizeof(*r));
	r->r = *in;
	r->r.body = malloc(in->body_len + 1);
	memcpy(r->r.body, in->body ? in->body : "", in->body_len);
	r->r.body[in->body_len] = '\0';
	r->next = w->idem;
	w->idem = r;
	pthread_mutex_unlock(&w->lock);
	return 0;
}

static struct fake_claim *claim_find(struct fake_world *w, const char *key_id, const char *idem_key)
{
	for (struct fake_claim *c = w->claims; c; c = c->next)
		if (strcmp(c->key_id, key_id) == 0 && strcmp(c->idem_key, idem_key) == 0)
			return c;
	return NULL;
}

static int fs_idem_claim(struct store *st, const char *key_id, const char *idem_key, int64_t now_ms,
			 int64_t expires_ms, struct bk_err *err)
{
	struct fake_world *w = FW(st);
	pthread_mutex_lock(&w->lock);
	int rc = fake__op(w, "idem_claim", err);
	struct fake_claim *c = rc == 0 ? claim_find(w, key_id, idem_key) : NULL;
	if (rc == 0 && c == NULL) {
		c = calloc(1, sizeof(*c));
		snprintf(c->key_id, sizeof(c->key_id), "%s", key_id);
		snprintf(c->idem_key, sizeof(c->idem_key), "%s", idem_key);
		c->next = w->claims;
		w->claims = c;
		c->expires_ms = now_ms;
	}
	if (rc == 0 && c->expires_ms <= now_ms) {
		c->claimed_ms = now_ms;
		c->expires_ms = expires_ms;
		rc = 1;
	}
	pthread_mutex_unlock(&w->lock);
	return rc;
}

static int fs_idem_release(struct store *st, const char *key_id, const char *idem_key,
			   int64_t claimed_ms, struct bk_err *err)
{
	struct fake_world *w = FW(st);
	pthread_mutex_lock(&w->lock);
	int rc = 0;
	for (struct fake_claim **pp = &w->claims; *pp; pp = &(*pp)->next) {
		struct fake_claim *c = *pp;
		if (strcmp(c->key_id, key_id) == 0 && strcmp(c->idem_key, idem_key) == 0 &&
		    c->claimed_ms == claimed_ms) {
			*pp = c->next;
			free(c);
			rc = 1;
			break;
		}
	}
	pthread_mutex_unlock(&w->lock);
	return rc;
}

static int fs_idem_usage(struct store *st, const char *key_id, int64_t since_ms, int64_t *count,
			 int64_t *bytes, struct bk_err *err)
{
	struct fake_world *w = FW(st);
	pthread_mutex_lock(&w->lock);
	*count = *bytes = 0;
	for (struct fake_idem *r = w->idem; r; r = r->next)
		if (strcmp(r->r.key_id, key_id) == 0 && r->r.created_ms >= since_ms) {
			(*count)++;
			*bytes += (int64_t)r->r.body_len;
		}
	pthread_mutex_unlock(&w->lock);
	return 0;
}

static int fs_idem_purge(struct store *st, int64_t before_ms, int64_t *n, struct bk_err *err)
{
	struct fake_world *w = FW(st);
	pthread_mutex_lock(&w->lock);
	int64_t gone = 0;
	for (struct fake_idem **pp = &w->idem; *pp;) {
		struct fake_idem *r = *pp;
		if (r->r.created_ms < before_ms) {
			*pp = r->next;
			store_idem_release(&r->r);
			free(r);
			gone++;
		} else {
			pp = &r->next;
		}
	}
	pthread_mutex_unlock(&w->lock);
	if (n)
		*n = gone;
	return 0;
}

static void session_copy(struct store_session *out, const struct store_session *in)
{
	*out = *in;
	out->metadata = strdup(in->metadata ? in->metadata : "{}");
	out->env = strdup(in->env ? in->env : "{}");
	out->network = strdup(in->network ? in->network : "");
}

/* The sessions of key_id but except_id that cap counts; with w->lock. */
static int cap_check(struct fake_world *w, const char *key_id, const char *except_id,
		     const struct store_cap *cap, struct bk_err *err)
{
	int64_t n = 0;
	for (struct fake_rec *r = w->sessions; r; r = r->next)
		if (strcmp(r->s.key_id, key_id) == 0 && r->s.expires_ms > cap->now_ms &&
		    (!cap->holding || r->s.vm_state == STORE_VM_RUNNING) &&
		    (except_id == NULL || strcmp(r->s.id, except_id) != 0))
			n++;
	if (n >= cap->max)
		return bk_err_kind(err, BK_E_LIMIT, "key '%s' holds %lld sessions", key_id,
				   (long long)n);
	return 0;
}

static int fs_session_insert(struct store *st, const struct store_session *s,
			     const struct store_cap *cap, struct bk_err *err)
{
	struct fake_world *w = FW(st);
	pthread_mutex_lock(&w->lock);
	int rc = fake__op(w, "session_insert", err);
	if (rc == 0 && cap != NULL)
		rc = cap_check(w, s->key_id, NULL, cap, err);
	if (rc == 0 && fake__rec_find(w, s->id))
		rc = bk_err_kind(err, BK_E_CONFLICT, "session '%s' exists", s->id);
	if (rc == 0) {
		fake__step(w);
		struct fake_rec *r = calloc(1, sizeof(*r));
		session_copy(&r->s, s);
		r->next = w->sessions;
		w->sessions = r;
		fake__done(w);
	}
	pthread_mutex_unlock(&w->lock);
	return rc;
}

static int fs_session_get(struct store *st, const char *id, const char *key_id,
			  struct store_session *out, struct bk_err *err)
{
	struct fake_world *w = FW(st);
	pthread_mutex_lock(&w->lock);
	struct fake_rec *r = fake__rec_find(w, id);
	for (struct fake_rec *p = w->sessions; r == NULL && p; p = p->next)
		if (strcmp(p->s.public_id, id) == 0)
			r = p;
	int rc = 0;
	if (r && (key_id == NULL || strcmp(r->s.key_id, key_id) == 0)) {
		session_copy(out, &r->s);
		rc = 1;
	}
	pthread_mutex_unlock(&w->lock);
	return rc;
}

static int fs_session_delete(struct store *st, const char *id, struct bk_err *err)
{
	struct fake_world *w = FW(st);
	pthread_mutex_lock(&w->lock);
	int rc = fake__op(w, "session_delete", err);
	for (struct fake_rec **pp = &w->sessions; rc == 0 && *pp; pp = &(*pp)->next) {
		if (strcmp((*pp)->s.id, id) == 0) {
			fake__step(w);
			struct fake_rec *r = *pp;
			*pp = r->next;
			store_session_release(&r->s);
			free(r);
			fake__done(w);
			rc = 1;
			break;
		}
	}
	pthread_mutex_unlock(&w->lock);
	return rc;
}

static int fs_session_touch(struct store *st, const char *id, int64_t t,
			    const struct store_usage *add, struct bk_err *err)
{
	struct fake_world *w = FW(st);
	pthread_mutex_lock(&w->lock);
	struct fake_rec *r = fake__rec_find(w, id);
	if (r && t > r->s.last_active_ms)
		r->s.last_active_ms = t;
	if (r && add) {
		r->s.exec_count += add->execs;
		r->s.cpu_ms += add->cpu_ms;
		r->s.vm_runtime_ms += add->vm_runtime_ms;
		r->s.net_tx_bytes += add->net_tx_bytes;
		r->s.net_rx_bytes += add->net_rx_bytes;
	}
	pthread_mutex_unlock(&w->lock);
	return r != NULL;
}

static int fs_session_set_state(struct store *st, const char *id, enum store_session_state state,
				struct bk_err *err)
{
	struct fake_world *w = FW(st);
	pthread_mutex_lock(&w->lock);
	int rc = fake__op(w, "session_set_state", err);
	struct fake_rec *r = rc == 0 ? fake__rec_find(w, id) : NULL;
	if (r) {
		fake__step(w);
		r->s.state = state;
		fake__done(w);
		rc = 1;
	}
	pthread_mutex_unlock(&w->lock);
	return rc;
}

static int fs_session_set_vm(struct store *st, const char *id, enum store_vm_state vm,
			     int64_t spawned_ms, int64_t ends_ms, enum store_session_state state,
			     const struct store_cap *cap, struct bk_err *err)
{
	struct fake_world *w = FW(st);
	pthread_mutex_lock(&w->lock);
	int rc = fake__op(w, "session_set_vm", err);
	struct fake_rec *r = rc == 0 ? fake__rec_find(w, id) : NULL;
	if (r && cap != NULL && cap_check(w, r->s.key_id, id, cap, err) < 0) {
		r = NULL;
		rc = -1;
	}
	if (r) {
		fake__step(w);
		r->s.vm_state = vm;
		r->s.vm_spawned_ms = spawned_ms;
		r->s.vm_ends_ms = ends_ms;
		r->s.state = state;
		fake__done(w);
		rc = 1;
	}
	pthread_mutex_unlock(&w->lock);
	return rc;
}

static int fs_session_set_network(struct store *st, const char *id, const char *network,
				  struct bk_err *err)
{
	struct fake_world *w = FW(st);
	pthread_mutex_lock(&w->lock);
	int rc = fake__op(w, "session_set_network", err);
	struct fake_rec *r = rc == 0 ? fake__rec_find(w, id) : NULL;
	if (r) {
		fake__step(w);
		free(r->s.network);
		r->s.network = strdup(network ? network : "");
		fake__done(w);
		rc = 1;
	}
	pthread_mutex_unlock(&w->lock);
	return rc;
}

static int fs_session_count(struct store *st, const char *key_id, int64_t now, bool holding,
			    int64_t *out, struct bk_err *err)
{
	struct fake_world *w = FW(st);
	pthread_mutex_lock(&w->lock);
	*out = 0;
	for (struct fake_rec *r = w->sessions; r; r = r->next)
		if ((key_id == NULL || strcmp(r->s.key_id, key_id) == 0) && r->s.expires_ms > now &&
		    (!holding || r->s.vm_state == STORE_VM_RUNNING))
			(*out)++;
	pthread_mutex_unlock(&w->lock);
	return 0;
}

/* Newest first (created, then id, descending). */
static int newest_first(const void *a, const void *b)
{
	const struct store_session *x = a, *y = b;
	if (x->created_ms != y->created_ms)
		return x->created_ms < y->created_ms ? 1 : -1;
	return -strcmp(x->id, y->id);
}

static int fs_session_list(struct store *st, const char *key_id, int64_t now,
			   store_session_match match, void *ctx, int limit, int offset,
			   struct store_session **out, size_t *n, int64_t *total,
			   struct bk_err *err)
{
	struct fake_world *w = FW(st);
	pthread_mutex_lock(&w->lock);
	size_t all = 0;
	for (struct fake_rec *r = w->sessions; r; r = r->next)
		all++;
	struct store_session *v = calloc(all + 1, sizeof(*v));
	size_t k = 0;
	for (struct fake_rec *r = w->sessions; r; r = r->next)
		if (strcmp(r->s.key_id, key_id) == 0 && r->s.expires_ms > now &&
		    (match == NULL || match(ctx, &r->s)))
			session_copy(&v[k++], &r->s);
	pthread_mutex_unlock(&w->lock);
	qsort(v, k, sizeof(*v), newest_first);
	*total = (int64_t)k;
	size_t first = (size_t)offset < k ? (size_t)offset : k;
	size_t take = k - first < (size_t)limit ? k - first : (size_t)limit;
	for (size_t i = 0; i < k; i++)
		if (i < first || i >= first + take)
			store_session_release(&v[i]);
	memmove(v, v + first, take * sizeof(*v));
	*n = take;
	*out = v;
	return 0;
}

static int fs_session_list_all(struct store *st, struct store_session **out, size_t *n,
			       struct bk_err *err)
{
	struct fake_world *w = FW(st);
	pthread_mutex_lock(&w->lock);
	size_t all = 0;
	for (struct fake_rec *r = w->sessions; r; r = r->next)
		all++;
	*out = calloc(all + 1, sizeof(**out));
	size_t k = all;
	for (struct fake_rec *r = w->sessions; r; r = r->next)
		session_copy(&(*out)[--k], &r->s);
	*n = all;
	pthread_mutex_unlock(&w->lock);
	return 0;
}

static int fs_session_due(struct store *st, int64_t now, char (*ids)[32], size_t max, size_t *n,
			  struct bk_err *err)
{
	struct fake_world *w = FW(st);
	pthread_mutex_lock(&w->lock);
	*n = 0;
	for (struct fake_rec *r = w->sessions; r && *n < max; r = r->next)
		if (r->s.expires_ms <= now || (r->s.vm_state == STORE_VM_RUNNING &&
					       r->s.vm_ends_ms > 0 && r->s.vm_ends_ms <= now))
			snprintf(ids[(*n)++], 32, "%s", r->s.id);
	pthread_mutex_unlock(&w->lock);
	return 0;
}

/* Tasks are kept in memory only: the crash matrix does not cover them. */
static int fs_task_insert(struct store *st, const struct store_task *t, struct bk_err *err)
{
	struct fake_world *w = FW(st);
	pthread_mutex_lock(&w->lock);
	struct fake_task *k = calloc(1, sizeof(*k));
	k->t = *t;
	k->t.out = strdup("");
	k->t.err = strdup("");
	k->next = w->tasks;
	w->tasks = k;
	pthread_mutex_unlock(&w->lock);
	return 0;
}

static struct fake_task *task_find(struct fake_world *w, const char *id)
{
	for (struct fake_task *k = w->tasks; k; k = k->next)
		if (strcmp(k->t.id, id) == 0)
			return k;
	return NULL;
}

static char *dup_len(const char *s, size_t n)
{
	char *d = malloc(n + 1);
	memcpy(d, s ? s : "", n);
	d[n] = '\0';
	return d;
}

static int fs_task_update(struct store *st, const struct store_task *t, struct bk_err *err)
{
	struct fake_world *w = FW(st);
	pthread_mutex_lock(&w->lock);
	struct fake_task *k = task_find(w, t->id);
	if (k) {
		store_task_release(&k->t);
		char sid[32], kid[32];
		snprintf(sid, sizeof(sid), "%s", k->t.session_id);
		snprintf(kid, sizeof(kid), "%s", k->t.key_id);
		k->t = *t;
		snprintf(k->t.session_id, sizeof(k->t.session_id), "%s", sid);
		snprintf(k->t.key_id, sizeof(k->t.key_id), "%s", kid);
		k->t.out = dup_len(t->out, t->out_len);
		k->t.err = dup_len(t->err, t->err_len);
	}
	pthread_mutex_unlock(&w->lock);
	return k != NULL;
}

static int fs_task_get(struct store *st, const char *id, const char *key_id, struct store_task *out,
		       struct bk_err *err)
{
	struct fake_world *w = FW(st);
	pthread_mutex_lock(&w->lock);
	struct fake_task *k = task_find(w, id);
	int rc = 0;
	if (k && (key_id == NULL || strcmp(k->t.key_id, key_id) == 0)) {
		*out = k->t;
		out->out = dup_len(k->t.out, k->t.out_len);
		out->err = dup_len(k->t.err, k->t.err_len);
		rc = 1;
	}
	pthread_mutex_unlock(&w->lock);
	return rc;
}

static int fs_task_count(struct store *st, const char *key_id, int64_t since_ms, int64_t *out,
			 struct bk_err *err)
{
	struct fake_world *w = FW(st);
	pthread_mutex_lock(&w->lock);
	*out = 0;
	for (struct fake_task *k = w->tasks; k; k = k->next)
		*out += strcmp(k->t.key_id, key_id) == 0 && k->t.created_ms >= since_ms;
	pthread_mutex_unlock(&w->lock);
	return 0;
}

static int fs_task_purge(struct store *st, int64_t before_ms, bool fail_unfinished, int64_t now,
			 struct bk_err *err)
{
	return 0;
}

/* One node, as SQLite: ownership is never contested here. */
static int fs_session_claim(struct store *st, const char *id, const char *owner, int64_t epoch,
			    struct bk_err *err)
{
	return 0;
}

static int fs_session_release(struct store *st, const char *id, struct bk_err *err)
{
	return 0;
}

static int fs_node_renew(struct store *st, const struct store_node *n, struct bk_err *err)
{
	return 0;
}

static int fs_node_list(struct store *st, int64_t now_ms, struct store_node **out, size_t *n,
			struct bk_err *err)
{
	*out = NULL;
	*n = 0;
	return 0;
}

static int fs_node_remove(struct store *st, const char *name, struct bk_err *err)
{
	return 0;
}

static const struct store_ops fake_store_ops = {
    .name = "fake",
    .close = fs_close,
    .key_insert = fs_key_insert,
    .key_find_by_hash = fs_key_find_by_hash,
    .key_list = fs_key_list,
    .key_revoke = fs_key_revoke,
    .idem_get = fs_idem_get,
    .idem_put = fs_idem_put,
    .idem_claim = fs_idem_claim,
    .idem_release = fs_idem_release,
    .idem_purge = fs_idem_purge,
    .idem_usage = fs_idem_usage,
    .session_insert = fs_session_insert,
    .session_get = fs_session_get,
    .session_delete = fs_session_delete,
    .session_touch = fs_session_touch,
    .session_set_state = fs_session_set_state,
    .session_count = fs_session_count,
    .session_list = fs_session_list,
    .session_list_all = fs_session_list_all,
    .session_set_vm = fs_session_set_vm,
    .session_set_network = fs_session_set_network,
    .session_due = fs_session_due,
    .session_claim = fs_session_claim,
    .session_release = fs_session_release,
    .node_renew = fs_node_renew,
    .node_list = fs_node_list,
    .node_remove = fs_node_remove,
    .task_insert = fs_task_insert,
    .task_update = fs_task_update,
    .task_get = fs_task_get,
    .task_count = fs_task_count,
    .task_purge = fs_task_purge,
};

struct store *fake_store_new(struct fake_world *w)
{
	struct fake_store *st = calloc(1, sizeof(*st));
	st->base.ops = &fake_store_ops;
	st->w = w;
	return &st->base;
}
