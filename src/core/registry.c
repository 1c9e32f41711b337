/* The registry: the sessions this node holds in memory, a cache over the
 * store (see struct session in core/core_int.h), and how a request gets
 * hold of one and of its running sandbox. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core_int.h"

struct session *core__session_new(const struct store_session *row)
{
	struct session *s = calloc(1, sizeof(*s));
	if (s == NULL)
		return NULL;
	snprintf(s->id, sizeof(s->id), "%s", row->id);
	snprintf(s->public_id, sizeof(s->public_id), "%s",
		 row->public_id[0] ? row->public_id : row->id);
	snprintf(s->key_id, sizeof(s->key_id), "%s", row->key_id);
	s->dialect = (enum core_dialect)row->dialect;
	s->env = strdup(row->env ? row->env : "{}");
	s->network = strdup(row->network ? row->network : "");
	if (s->env == NULL || s->network == NULL) {
		free(s->env);
		free(s->network);
		free(s);
		return NULL;
	}
	s->vm = (enum core_vm)row->vm_state;
	s->vm_lifetime_s = row->vm_lifetime_s;
	s->vm_spawned_ms = row->vm_spawned_ms;
	s->vm_ends_ms = row->vm_ends_ms;
	s->limits = (struct core_limits){row->memory_mb, row->cpu, row->timeout_s, row->disk_mb};
	s->created_ms = row->created_ms;
	s->expires_ms = row->expires_ms;
	s->last_active_ms = row->last_active_ms;
	/* Its first checkpoint is a period after it is here, if it is used. */
	s->checkpoint_ms = now_ms();
	s->stored_active_ms = row->last_active_ms;
	s->state = (enum core_state)row->state;
	s->refs = 1; /* the registry's */
	pthread_rwlock_init(&s->rw, NULL);
	pthread_mutex_init(&s->mu, NULL);
	return s;
}

static void session_free(struct session *s)
{
	free(s->env);
	free(s->network);
	pthread_rwlock_destroy(&s->rw);
	pthread_mutex_destroy(&s->mu);
	free(s);
}

static size_t bucket_of(const char *id)
{
	uint32_t h = 2166136261u; /* FNV-1a */
	for (const char *c = id; *c; c++)
		h = (h ^ (uint8_t)*c) * 16777619u;
	return h % CORE_REGISTRY_BUCKETS;
}

/* With core->lock held: by id or public id. */
static struct session *registry_find(struct core *core, const char *id)
{
	size_t b = bucket_of(id);
	for (struct session *s = core->by_id[b]; s; s = s->id_next)
		if (strcmp(s->id, id) == 0)
			return s;
	for (struct session *s = core->by_public[b]; s; s = s->public_next)
		if (strcmp(s->public_id, id) == 0)
			return s;
	return NULL;
}

/* With core->lock held. */
static void registry_link_locked(struct core *core, struct session *s)
{
	s->next = core->sessions;
	if (s->next)
		s->next->pprev = &s->next;
	s->pprev = &core->sessions;
	core->sessions = s;
	size_t b = bucket_of(s->id);
	s->id_next = core->by_id[b];
	core->by_id[b] = s;
	b = bucket_of(s->public_id);
	s->public_next = core->by_public[b];
	core->by_public[b] = s;
	s->linked = true;
}

void core__registry_link(struct core *core, struct session *s)
{
	pthread_mutex_lock(&core->lock);
	registry_link_locked(core, s);
	pthread_mutex_unlock(&core->lock);
}

/* With core->lock held. */
static void registry_unlink_locked(struct core *core, struct session *s)
{
	if (!s->linked)
		return;
	*s->pprev = s->next;
	if (s->next)
		s->next->pprev = s->pprev;
	for (struct session **pp = &core->by_id[bucket_of(s->id)]; *pp; pp = &(*pp)->id_next) {
		if (*pp == s) {
			*pp = s->id_next;
			break;
		}
	}
	for (struct session **pp = &core->by_public[bucket_of(s->public_id)]; *pp;
	     pp = &(*pp)->public_next) {
		if (*pp == s) {
			*pp = s->public_next;
			break;
		}
	}
	s->linked = false;
}

/* With core->lock held: takes a reference to s if it is live and key's. */
static int take_locked(struct session *s, const char *key_id, const char *id, struct bk_err *err)
{
	if (s == NULL || s->deleted || (key_id && strcmp(s->key_id, key_id) != 0) ||
	    s->expires_ms <= now_ms())
		return bk_err_kind(err, BK_E_NOT_FOUND, "session '%s' not found", id);
	s->refs++;
	return 0;
}

/* A registry miss: the session may sleep, known to the store only. Read
 * under load_lock, which a delete's record removal also takes, so that a
 * record read here cannot be of a session whose delete has already gone
 * past the registry. */
static int registry_load(struct core *core, const char *key_id, const char *id,
			 struct session **out, struct bk_err *err)
{
	pthread_mutex_lock(&core->load_lock);
	pthread_mutex_lock(&core->lock);
	struct session *s = registry_find(core, id);
	if (s) {
		int rc = take_locked(s, key_id, id, err);
		pthread_mutex_unlock(&core->lock);
		pthread_mutex_unlock(&core->load_lock);
		*out = s;
		return rc;
	}
	pthread_mutex_unlock(&core->lock);
	struct store_session row;
	int r = core->store->ops->session_get(core->store, id, key_id, &row, err);
	if (r <= 0) {
		pthread_mutex_unlock(&core->load_lock);
		return r < 0 ? -1 : bk_err_kind(err, BK_E_NOT_FOUND, "session '%s' not found", id);
	}
	/* Another node's: it runs there, never here as well (the API relays
	 * requests for it before they get this far). */
	if (core->cfg.node[0] && row.owner[0] && strcmp(row.owner, core->cfg.node) != 0) {
		pthread_mutex_unlock(&core->load_lock);
		int rc = bk_err_kind(err, BK_E_UNAVAILABLE, "session '%s' is served by node '%s'",
				     id, row.owner);
		store_session_release(&row);
		return rc;
	}
	s = core__session_new(&row);
	store_session_release(&row);
	if (s == NULL) {
		pthread_mutex_unlock(&core->load_lock);
		return bk_err_set(err, ENOMEM, "cannot load session '%s'", id);
	}
	pthread_mutex_lock(&core->lock);
	/* Named by its public id, it may be in the registry after all. */
	struct session *known = registry_find(core, s->id);
	if (known) {
		int rc = take_locked(known, key_id, id, err);
		pthread_mutex_unlock(&core->lock);
		pthread_mutex_unlock(&core->load_lock);
		session_free(s);
		*out = known;
		return rc;
	}
	registry_link_locked(core, s);
	int rc = take_locked(s, key_id, id, err);
	pthread_mutex_unlock(&core->lock);
	pthread_mutex_unlock(&core->load_lock);
	*out = s;
	return rc;
}

struct session *core__registry_pick(struct core *core, bool (*pick)(struct session *s, void *ctx),
				    void *ctx)
{
	struct session *found = NULL;
	pthread_mutex_lock(&core->lock);
	for (struct session *s = core->sessions; s && !found; s = s->next)
		if (!s->deleted && pick(s, ctx))
			found = s;
	if (found)
		found->refs++;
	pthread_mutex_unlock(&core->lock);
	return found;
}

void core__registry_flush_id(struct core *core, const char *id)
{
	pthread_mutex_lock(&core->lock);
	struct session *s = registry_find(core, id);
	if (s)
		s->refs++;
	pthread_mutex_unlock(&core->lock);
	if (s) {
		core__session_flush(core, s);
		core__session_release(core, s);
	}
}

int core__session_acquire(struct core *core, const char *key_id, const char *id,
			  struct session **out, struct bk_err *err)
{
	pthread_mutex_lock(&core->lock);
	struct session *s = registry_find(core, id);
	int rc = s ? take_locked(s, key_id, id, err) : 0;
	pthread_mutex_unlock(&core->lock);
	if (s == NULL)
		return registry_load(core, key_id, id, out, err);
	*out = s;
	return rc;
}

void core__session_release(struct core *core, struct session *s)
{
	pthread_mutex_lock(&core->lock);
	bool last = --s->refs == 0;
	pthread_cond_broadcast(&core->ref_cond);
	pthread_mutex_unlock(&core->lock);
	if (last)
		session_free(s);
}

bool core__session_mark_deleted(struct core *core, struct session *s)
{
	pthread_mutex_lock(&core->lock);
	bool first = !s->deleted;
	__atomic_store_n(&s->deleted, true, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&core->lock);
	return first;
}

void core__session_unmark_deleted(struct core *core, struct session *s)
{
	pthread_mutex_lock(&core->lock);
	__atomic_store_n(&s->deleted, false, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&core->lock);
}

void core__registry_unlink(struct core *core, struct session *s)
{
	pthread_mutex_lock(&core->lock);
	bool was = s->linked;
	registry_unlink_locked(core, s);
	bool last = was && --s->refs == 0; /* the registry's reference */
	pthread_mutex_unlock(&core->lock);
	if (last)
		session_free(s);
}

void core__registry_evict(struct core *core, struct session *s)
{
	/* Kept when its activity or usage cannot be written: evicting would
	 * lose them. */
	if (core__session_flush(core, s) < 0)
		return;
	pthread_mutex_lock(&core->lock);
	/* Only the registry's reference and the caller's: nothing else uses
	 * it, and nothing can start to without core->lock. */
	bool evict = s->linked && s->refs == 2 && !s->deleted &&
		     __atomic_load_n(&s->state, __ATOMIC_RELAXED) == CORE_STATE_DEEP_SLEEP &&
		     s->sbx == NULL;
	if (evict) {
		registry_unlink_locked(core, s);
		s->refs--;
	}
	pthread_mutex_unlock(&core->lock);
}

int core__record_delete(struct core *core, const char *id, struct bk_err *err)
{
	pthread_mutex_lock(&core->load_lock);
	int r = core->store->ops->session_delete(core->store, id, err);
	pthread_mutex_unlock(&core->load_lock);
	if (r != 0 || core->cfg.node[0] == '\0')
		return r < 0 ? -1 : 0;
	/* Not deleted: gone already, or another node's now (it claimed the
	 * session since this node let it go), whose files are not this
	 * node's to drop. */
	struct store_session row;
	struct bk_err gerr = BK_ERR_INIT;
	int g = core->store->ops->session_get(core->store, id, NULL, &row, &gerr);
	if (g <= 0)
		return 0;
	bk_err_kind(err, BK_E_UNAVAILABLE, "session '%s' is node '%s''s now", id, row.owner);
	store_session_release(&row);
	return 1;
}

/* ---- a session's sandbox ---- */

struct sbx_limits core__session_sbx_limits(const struct core *core, const struct session *s)
{
	/* The disk is memory (a tmpfs whose pages the session's memory cgroup
	 * pays for): were it allowed to fill the whole memory limit, the
	 * kernel's OOM killer, not ENOSPC, would answer the write that fills
	 * it, and nothing could start in the session to delete a file. So
	 * files get at most three quarters of the memory limit. */
	int disk = s->limits.disk_mb;
	if (disk > s->limits.memory_mb / 4 * 3)
		disk = s->limits.memory_mb / 4 * 3;
	return (struct sbx_limits){
	    .memory_mb = s->limits.memory_mb,
	    .cpu = s->limits.cpu,
	    .disk_mb = disk,
	    .pids = core->cfg.pids_max,
	};
}

static bool sandbox_ready(struct core *core, struct session *s)
{
	return s->vm == CORE_VM_RUNNING && s->state == CORE_STATE_ACTIVE && s->sbx &&
	       core->sbx->ops->alive(s->sbx);
}

int core__session_sandbox(struct core *core, const struct core_key *key, struct session *s,
			  struct sbx **out, struct bk_err *err)
{
	for (;;) {
		if (__atomic_load_n(&s->deleted, __ATOMIC_ACQUIRE))
			return bk_err_kind(err, BK_E_NOT_FOUND, "session '%s' not found",
					   s->public_id);
		if (sandbox_ready(core, s)) {
			*out = s->sbx;
			return 0;
		}
		/* Wake (or start) it exclusively, then come back shared: of two
		 * requests waking it at once, the second finds it awake. */
		pthread_rwlock_unlock(&s->rw);
		pthread_rwlock_wrlock(&s->rw);
		int rc = 0;
		if (!__atomic_load_n(&s->deleted, __ATOMIC_ACQUIRE) && !sandbox_ready(core, s)) {
			if (s->vm != CORE_VM_RUNNING)
				rc = key ? core__vm_spawn_locked(core, key, s, err)
					 : bk_err_kind(err, BK_E_UNAVAILABLE,
						       "session '%s' has no VM running",
						       s->public_id);
			if (rc == 0)
				rc = core__lifecycle_wake_locked(core, s, err);
		}
		pthread_rwlock_unlock(&s->rw);
		pthread_rwlock_rdlock(&s->rw);
		if (rc < 0)
			return -1;
	}
}

int core__session_enter(struct core *core, const struct core_key *key, const char *id,
			struct session **s, struct sbx **sbx, struct bk_err *err)
{
	if (core__session_acquire(core, key ? key->id : NULL, id, s, err) < 0)
		return -1;
	core__session_touch(core, *s);
	pthread_rwlock_rdlock(&(*s)->rw);
	if (core__session_sandbox(core, key, *s, sbx, err) < 0) {
		core__session_leave(core, *s);
		return -1;
	}
	return 0;
}

void core__session_leave(struct core *core, struct session *s)
{
	pthread_rwlock_unlock(&s->rw);
	core__session_release(core, s);
}

void core__session_touch(struct core *core, struct session *s)
{
	int64_t now = now_ms();
	__atomic_store_n(&s->last_active_ms, now, __ATOMIC_RELAXED);
	__atomic_store_n(&s->stored_active_ms, now, __ATOMIC_RELAXED);
	struct bk_err err = BK_ERR_INIT;
	if (core->store->ops->session_touch(core->store, s->id, now, NULL, &err) < 0)
		fprintf(stderr, "bunkerd: session %s: %s\n", s->id, err.msg);
}

void core__session_net_count_locked(struct core *core, struct session *s)
{
	const struct sbx_ops *ops = core->sbx->ops;
	if (s->sbx == NULL || ops->net_bytes == NULL)
		return;
	int64_t tx, rx;
	ops->net_bytes(s->sbx, &tx, &rx);
	if (tx > s->net_tx_seen)
		__atomic_add_fetch(&s->pending_net_tx, tx - s->net_tx_seen, __ATOMIC_RELAXED);
	if (rx > s->net_rx_seen)
		__atomic_add_fetch(&s->pending_net_rx, rx - s->net_rx_seen, __ATOMIC_RELAXED);
	s->net_tx_seen = tx > s->net_tx_seen ? tx : s->net_tx_seen;
	s->net_rx_seen = rx > s->net_rx_seen ? rx : s->net_rx_seen;
	__atomic_store_n(&s->net_counted_ms, s->net_applied ? now_ms() : 0, __ATOMIC_RELAXED);
}

void core__session_sbx_attach_locked(struct core *core, struct session *s, struct sbx *sbx)
{
	/* Fenced from its first moment (CORE_FENCE_MS). */
	if (core__checkpoints(core) && core->sbx->ops->lease)
		core->sbx->ops->lease(sbx, CORE_FENCE_MS);
	s->sbx = sbx;
	s->net_applied = false;
	s->net_tx_seen = s->net_rx_seen = 0;
	__atomic_store_n(&s->net_counted_ms, 0, __ATOMIC_RELAXED);
}

int core__session_flush(struct core *core, struct session *s)
{
	pthread_mutex_lock(&s->mu);
	core__session_net_count_locked(core, s);
	pthread_mutex_unlock(&s->mu);
	int64_t active = __atomic_load_n(&s->last_active_ms, __ATOMIC_RELAXED);
	struct store_usage add = {
	    .execs = __atomic_exchange_n(&s->pending_execs, 0, __ATOMIC_RELAXED),
	    .cpu_ms = __atomic_exchange_n(&s->pending_cpu_ms, 0, __ATOMIC_RELAXED),
	    .net_tx_bytes = __atomic_exchange_n(&s->pending_net_tx, 0, __ATOMIC_RELAXED),
	    .net_rx_bytes = __atomic_exchange_n(&s->pending_net_rx, 0, __ATOMIC_RELAXED),
	};
	if (add.execs == 0 && add.cpu_ms == 0 && add.net_tx_bytes == 0 && add.net_rx_bytes == 0 &&
	    active <= __atomic_load_n(&s->stored_active_ms, __ATOMIC_RELAXED))
		return 0;
	struct bk_err err = BK_ERR_INIT;
	if (core->store->ops->session_touch(core->store, s->id, active, &add, &err) < 0) {
		/* Not lost: counted again for the next try. */
		__atomic_add_fetch(&s->pending_execs, add.execs, __ATOMIC_RELAXED);
		__atomic_add_fetch(&s->pending_cpu_ms, add.cpu_ms, __ATOMIC_RELAXED);
		__atomic_add_fetch(&s->pending_net_tx, add.net_tx_bytes, __ATOMIC_RELAXED);
		__atomic_add_fetch(&s->pending_net_rx, add.net_rx_bytes, __ATOMIC_RELAXED);
		fprintf(stderr, "bunkerd: session %s: %s\n", s->id, err.msg);
		return -1;
	}
	__atomic_store_n(&s->stored_active_ms, active, __ATOMIC_RELAXED);
	return 0;
}

int core__session_destroy(struct core *core, struct session *s, bool *kept, struct bk_err *err)
{
	/* The record first: were the sandbox destroyed and the record kept
	 * (the store unreachable), the session would be listed, with its
	 * files gone. Kept whole instead, it can be deleted again once the
	 * store answers. Another node's: what this one holds of it is
	 * stale, its files are the other node's. */
	int r = core__record_delete(core, s->id, err);
	*kept = r < 0;
	if (r != 0)
		return -1;
	return core__session_sandbox_destroy(core, s, err);
}

void core__undo_retry(struct core *core)
{
	for (;;) {
		pthread_mutex_lock(&core->lock);
		struct session *s = core->sessions;
		while (s && !s->undo_pending)
			s = s->next;
		if (s)
			s->refs++;
		pthread_mutex_unlock(&core->lock);
		if (s == NULL)
			return;
		struct bk_err err = BK_ERR_INIT;
		/* Another node's (1): not this node's record to delete. */
		int rc = core__record_delete(core, s->id, &err);
		if (rc >= 0) {
			pthread_mutex_lock(&core->lock);
			s->undo_pending = false;
			pthread_mutex_unlock(&core->lock);
			core__registry_unlink(core, s);
			fprintf(stderr,
				"bunkerd: the record of %s (its create undone) is deleted\n",
				s->id);
		}
		core__session_release(core, s);
		if (rc < 0)
			return;
	}
}

int core__session_sandbox_destroy(struct core *core, struct session *s, struct bk_err *err)
{
	core__session_sbx_end(core, s);
	struct bk_err perr = BK_ERR_INIT;
	if (core->sbx->ops->purge(core->sbx, s->id, &perr) < 0) {
		fprintf(stderr, "bunkerd: session %s: %s\n", s->id, perr.msg);
		*err = perr;
		return -1;
	}
	return 0;
}

void core__session_sbx_end(struct core *core, struct session *s)
{
	/* Wake every execution in flight: they end with the sandbox. Preview
	 * connections hold rw shared for as long as they are open: shut them
	 * down, or the lock below would wait for their clients. */
	const struct sbx_ops *ops = core->sbx->ops;
	pthread_mutex_lock(&s->mu);
	if (s->sbx)
		ops->terminate(s->sbx);
	core__preview_shutdown_locked(s);
	pthread_mutex_unlock(&s->mu);
	pthread_rwlock_wrlock(&s->rw);
	pthread_mutex_lock(&s->mu);
	struct sbx *sbx = s->sbx;
	s->sbx = NULL;
	pthread_mutex_unlock(&s->mu);
	if (sbx)
		ops->stop(sbx);
	pthread_rwlock_unlock(&s->rw);
}
