/* The session registry and lifecycle: create, read, list, delete, expiry,
 * and recovery at start-up. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/core_int.h"
#include "util/cleanup.h"

#define DEFAULT_TTL_S 86400
#define MIN_TTL_S 300
#define DEFAULT_MEMORY_MB 1024
#define DEFAULT_CPU 0.25
#define DEFAULT_DISK_MB 1024
#define MIN_MEMORY_MB 64
#define MIN_CPU 0.01
#define MIN_DISK_MB 16

const char *core_state_name(enum core_state s)
{
	switch (s) {
	case CORE_STATE_IDLE:
		return "idle";
	case CORE_STATE_DEEP_SLEEP:
		return "deep-sleep";
	default:
		return "active";
	}
}

const char *core_cgroup_parent(const struct core *core)
{
	return core->sbx.cgroup_parent;
}

const char *core_cgroup_mode(const struct core *core)
{
	return sbx_cgroup_mode_name(core->sbx.cgroup_mode);
}

void core_session_info_release(struct core_session_info *info)
{
	free(info->metadata);
	info->metadata = NULL;
}

/* ---- registry ---- */

static struct session *session_new(const struct store_session *row)
{
	struct session *s = calloc(1, sizeof(*s));
	if (s == NULL)
		return NULL;
	snprintf(s->id, sizeof(s->id), "%s", row->id);
	snprintf(s->key_id, sizeof(s->key_id), "%s", row->key_id);
	s->slot = row->uid_slot;
	s->limits = (struct core_limits){row->memory_mb, row->cpu, row->timeout_s, row->disk_mb};
	s->created_ms = row->created_ms;
	s->expires_ms = row->expires_ms;
	s->last_active_ms = row->last_active_ms;
	s->stored_active_ms = row->last_active_ms;
	s->state = (enum core_state)row->state;
	s->refs = 1; /* the registry's */
	pthread_rwlock_init(&s->rw, NULL);
	pthread_mutex_init(&s->mu, NULL);
	return s;
}

static void session_free(struct session *s)
{
	pthread_rwlock_destroy(&s->rw);
	pthread_mutex_destroy(&s->mu);
	free(s);
}

/* With core->lock held. */
static struct session *registry_find(struct core *core, const char *id)
{
	for (struct session *s = core->sessions; s; s = s->next)
		if (strcmp(s->id, id) == 0)
			return s;
	return NULL;
}

static void registry_unlink(struct core *core, struct session *s)
{
	for (struct session **pp = &core->sessions; *pp; pp = &(*pp)->next) {
		if (*pp == s) {
			*pp = s->next;
			return;
		}
	}
}

int session_acquire(struct core *core, const char *key_id, const char *id, struct session **out,
		    struct bk_err *err)
{
	pthread_mutex_lock(&core->lock);
	struct session *s = registry_find(core, id);
	if (s == NULL || s->deleted || (key_id && strcmp(s->key_id, key_id) != 0) ||
	    s->expires_ms <= now_ms()) {
		pthread_mutex_unlock(&core->lock);
		return bk_err_kind(err, BK_E_NOT_FOUND, "session '%s' not found", id);
	}
	s->refs++;
	pthread_mutex_unlock(&core->lock);
	*out = s;
	return 0;
}

void session_release(struct core *core, struct session *s)
{
	pthread_mutex_lock(&core->lock);
	bool last = --s->refs == 0;
	pthread_cond_broadcast(&core->ref_cond);
	pthread_mutex_unlock(&core->lock);
	if (last)
		session_free(s);
}

struct sbx_limits session_sbx_limits(const struct core *core, const struct session *s)
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

int session_sandbox(struct core *core, struct session *s, struct sbx **out, struct bk_err *err)
{
	for (;;) {
		if (__atomic_load_n(&s->deleted, __ATOMIC_ACQUIRE))
			return bk_err_kind(err, BK_E_NOT_FOUND, "session '%s' not found", s->id);
		if (s->state == CORE_STATE_ACTIVE && s->sbx && sbx_alive(s->sbx)) {
			*out = s->sbx;
			return 0;
		}
		/* Wake (or start) it exclusively, then come back shared: of two
		 * requests waking it at once, the second finds it awake. */
		pthread_rwlock_unlock(&s->rw);
		pthread_rwlock_wrlock(&s->rw);
		int rc = 0;
		if (!__atomic_load_n(&s->deleted, __ATOMIC_ACQUIRE) &&
		    !(s->state == CORE_STATE_ACTIVE && s->sbx && sbx_alive(s->sbx)))
			rc = lifecycle_wake_locked(core, s, err);
		pthread_rwlock_unlock(&s->rw);
		pthread_rwlock_rdlock(&s->rw);
		if (rc < 0)
			return -1;
	}
}

int session_enter(struct core *core, const char *key_id, const char *id, struct session **s,
		  struct sbx **sbx, struct bk_err *err)
{
	if (session_acquire(core, key_id, id, s, err) < 0)
		return -1;
	session_touch(core, *s);
	pthread_rwlock_rdlock(&(*s)->rw);
	if (session_sandbox(core, *s, sbx, err) < 0) {
		session_leave(core, *s);
		return -1;
	}
	return 0;
}

void session_leave(struct core *core, struct session *s)
{
	pthread_rwlock_unlock(&s->rw);
	session_release(core, s);
}

void session_touch(struct core *core, struct session *s)
{
	int64_t now = now_ms();
	__atomic_store_n(&s->last_active_ms, now, __ATOMIC_RELAXED);
	__atomic_store_n(&s->stored_active_ms, now, __ATOMIC_RELAXED);
	struct bk_err err = BK_ERR_INIT;
	if (store_session_touch(core->store, s->id, now, &err) < 0)
		fprintf(stderr, "bunkerd: session %s: %s\n", s->id, err.msg);
}

/* Removes s for good: the record first (a crash after it leaves only files
 * that start-up removes), then the sandbox, then the disk. s must be
 * unlinked and marked deleted by the caller. */
static int session_destroy(struct core *core, struct session *s, struct bk_err *err)
{
	int rc = store_session_delete(core->store, s->id, err) < 0 ? -1 : 0;
	/* Wake every execution in flight: they end with the sandbox. Preview
	 * connections hold rw shared for as long as they are open: shut them
	 * down, or the lock below would wait for their clients. */
	pthread_mutex_lock(&s->mu);
	if (s->sbx)
		sbx_terminate(s->sbx);
	preview_shutdown_locked(s);
	pthread_mutex_unlock(&s->mu);
	pthread_rwlock_wrlock(&s->rw);
	pthread_mutex_lock(&s->mu);
	struct sbx *sbx = s->sbx;
	s->sbx = NULL;
	pthread_mutex_unlock(&s->mu);
	sbx_stop(sbx);
	pthread_rwlock_unlock(&s->rw);
	char snap[700];
	lifecycle_snapshot_path(core, s->id, snap, sizeof(snap));
	unlink(snap);
	struct bk_err perr = BK_ERR_INIT;
	if (sbx_purge(&core->sbx, s->id, &perr) < 0) {
		fprintf(stderr, "bunkerd: session %s: %s\n", s->id, perr.msg);
		if (rc == 0) {
			*err = perr;
			rc = -1;
		}
	}
	return rc;
}

/* Marks a registry entry deleted (no request can reach it from now on);
 * the caller holds a ref. Returns false when it already was. */
static bool session_mark_deleted(struct core *core, struct session *s)
{
	pthread_mutex_lock(&core->lock);
	bool first = !s->deleted;
	__atomic_store_n(&s->deleted, true, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&core->lock);
	return first;
}

/* Takes a destroyed session out of the registry. Only now, so that its id
 * range stays taken (slot_take() reads the registry) until nothing of it
 * is left on the host. */
static void session_unlink(struct core *core, struct session *s)
{
	pthread_mutex_lock(&core->lock);
	registry_unlink(core, s);
	s->refs--; /* the registry's reference */
	pthread_mutex_unlock(&core->lock);
}

/* ---- create / get / list / delete ---- */

static int limits_check(const struct core_key *key, const struct core_session_spec *spec,
			struct core_limits *out, struct bk_err *err)
{
	const struct plan_limits *p = &key->limits;
	*out = (struct core_limits){
	    .memory_mb =
		DEFAULT_MEMORY_MB < p->memory_max_mb ? DEFAULT_MEMORY_MB : p->memory_max_mb,
	    .cpu = DEFAULT_CPU < p->cpu_max ? DEFAULT_CPU : p->cpu_max,
	    .timeout_s = p->timeout_default_s,
	    .disk_mb = DEFAULT_DISK_MB < p->disk_max_mb ? DEFAULT_DISK_MB : p->disk_max_mb,
	};
	if (!spec->has_limits)
		return 0;
	if (!p->overrides)
		return bk_err_kind(err, BK_E_FORBIDDEN,
				   "resourceLimits overrides need a paid or enterprise plan "
				   "(this key is on '%s')",
				   key->plan);
	const struct core_limits *l = &spec->limits;
	if (l->memory_mb) {
		if (l->memory_mb < MIN_MEMORY_MB || l->memory_mb > p->memory_max_mb)
			return bk_err_field(err, "resourceLimits.memory",
					    "resourceLimits.memory must be %d..%d MB on plan '%s'",
					    MIN_MEMORY_MB, p->memory_max_mb, key->plan);
		out->memory_mb = l->memory_mb;
	}
	if (l->cpu > 0) {
		if (l->cpu < MIN_CPU || l->cpu > p->cpu_max)
			return bk_err_field(
			    err, "resourceLimits.cpu",
			    "resourceLimits.cpu must be %.2f..%g cores on plan '%s'", MIN_CPU,
			    p->cpu_max, key->plan);
		out->cpu = l->cpu;
	}
	if (l->timeout_s) {
		if (l->timeout_s < 1 || l->timeout_s > p->timeout_max_s)
			return bk_err_field(err, "resourceLimits.timeout",
					    "resourceLimits.timeout must be 1..%d s on plan '%s'",
					    p->timeout_max_s, key->plan);
		out->timeout_s = l->timeout_s;
	}
	if (l->disk_mb) {
		if (l->disk_mb < MIN_DISK_MB || l->disk_mb > p->disk_max_mb)
			return bk_err_field(err, "resourceLimits.disk",
					    "resourceLimits.disk must be %d..%d MB on plan '%s'",
					    MIN_DISK_MB, p->disk_max_mb, key->plan);
		out->disk_mb = l->disk_mb;
	}
	return 0;
}

static void info_fill(struct core *core, const struct store_session *row, bool running,
		      struct core_session_info *out)
{
	memset(out, 0, sizeof(*out));
	snprintf(out->id, sizeof(out->id), "%s", row->id);
	out->created_ms = row->created_ms;
	out->expires_ms = row->expires_ms;
	out->last_active_ms = row->last_active_ms;
	out->state = (enum core_state)row->state;
	out->limits = (struct core_limits){row->memory_mb, row->cpu, row->timeout_s, row->disk_mb};
	/* "ses_" + 20 characters becomes the host name "ses-<20>". */
	snprintf(out->preview_url, sizeof(out->preview_url), "%s://ses-%s.%s",
		 core->cfg.preview_scheme, row->id + 4, core->cfg.preview_domain);
	/* A deep-sleeping session's files are in its snapshot, which notes
	 * how many there were. */
	out->files_count = out->state == CORE_STATE_DEEP_SLEEP
			       ? lifecycle_snapshot_files(core, row->id)
			       : sbx_files_count(&core->sbx, row->id);
	out->active_processes = running ? sbx_process_count(&core->sbx, row->id) : 0;
}

int core_session_create(struct core *core, const struct core_key *key,
			const struct core_session_spec *spec, struct core_session_info *out,
			struct bk_err *err)
{
	int64_t ttl = spec->ttl_s ? spec->ttl_s
				  : (DEFAULT_TTL_S < key->limits.max_ttl_s ? DEFAULT_TTL_S
									   : key->limits.max_ttl_s);
	if (ttl < core->cfg.min_ttl_s || ttl > key->limits.max_ttl_s)
		return bk_err_field(err, "ttl", "ttl must be %d..%d seconds on plan '%s'",
				    core->cfg.min_ttl_s, key->limits.max_ttl_s, key->plan);
	struct core_limits limits;
	if (limits_check(key, spec, &limits, err) < 0)
		return -1;

	struct store_session row = {
	    .created_ms = now_ms(),
	    .state = STORE_SESSION_ACTIVE,
	    .metadata = (char *)(spec->metadata ? spec->metadata : "{}"),
	    .memory_mb = limits.memory_mb,
	    .cpu = limits.cpu,
	    .timeout_s = limits.timeout_s,
	    .disk_mb = limits.disk_mb,
	};
	row.expires_ms = row.created_ms + ttl * 1000;
	row.last_active_ms = row.created_ms;
	snprintf(row.key_id, sizeof(row.key_id), "%s", key->id);
	char rnd[21];
	if (random_alnum(rnd, 20, err) < 0)
		return -1;
	snprintf(row.id, sizeof(row.id), "ses_%s", rnd);

	/* Count, choose an id range and insert under one lock, so that
	 * concurrent creates can neither pass the cap together nor share a
	 * range. */
	pthread_mutex_lock(&core->create_lock);
	int64_t count;
	if (store_session_count(core->store, key->id, row.created_ms, &count, err) < 0) {
		pthread_mutex_unlock(&core->create_lock);
		return -1;
	}
	if (count >= key->limits.max_sessions) {
		pthread_mutex_unlock(&core->create_lock);
		return bk_err_kind(err, BK_E_LIMIT,
				   "concurrent session limit of %d reached on plan '%s'",
				   key->limits.max_sessions, key->plan);
	}
	struct sbx *warm = pool_take(core);
	row.uid_slot = warm ? sbx_slot(warm) : slot_take(core);
	struct session *s = NULL;
	if (row.uid_slot < 0) {
		bk_err_kind(err, BK_E_UNAVAILABLE, "no free id range for a session");
	} else if (store_session_insert(core->store, &row, err) == 0) {
		s = session_new(&row);
		if (s == NULL) {
			store_session_delete(core->store, row.id, NULL);
			bk_err_set(err, ENOMEM, "cannot create session");
		}
	}
	if (s == NULL) {
		pthread_mutex_unlock(&core->create_lock);
		if (warm) {
			char wid[32];
			snprintf(wid, sizeof(wid), "%s", sbx_id(warm));
			sbx_stop(warm);
			sbx_purge(&core->sbx, wid, NULL);
		}
		return -1;
	}
	s->refs++; /* ours, besides the registry's */
	pthread_mutex_lock(&core->lock);
	s->next = core->sessions;
	core->sessions = s;
	pthread_mutex_unlock(&core->lock);
	pthread_mutex_unlock(&core->create_lock);

	if (warm) {
		struct sbx_limits lim = session_sbx_limits(core, s);
		char wid[32];
		snprintf(wid, sizeof(wid), "%s", sbx_id(warm));
		struct bk_err aerr = BK_ERR_INIT;
		if (sbx_adopt(warm, s->id, &lim, &aerr) == 0) {
			s->sbx = warm;
		} else {
			/* A fresh start below does the job; only the time is lost. */
			fprintf(stderr, "bunkerd: warm pool: %s\n", aerr.msg);
			sbx_stop(warm);
			sbx_purge(&core->sbx, wid, NULL);
			sbx_purge(&core->sbx, s->id, NULL);
		}
	}
	pthread_rwlock_rdlock(&s->rw);
	struct sbx *sbx;
	int rc = session_sandbox(core, s, &sbx, err);
	pthread_rwlock_unlock(&s->rw);
	if (rc < 0) {
		struct bk_err derr = BK_ERR_INIT;
		if (session_mark_deleted(core, s)) {
			session_destroy(core, s, &derr);
			session_unlink(core, s);
		}
		session_release(core, s);
		bk_err_prefix(err, "cannot create session");
		return -1;
	}
	info_fill(core, &row, true, out);
	out->metadata = strdup(row.metadata);
	session_release(core, s);
	if (out->metadata == NULL)
		return bk_err_set(err, ENOMEM, "cannot create session");
	return 0;
}

/* Whether a session's sandbox is running now (no wake, no wait). */
static bool session_running(struct core *core, const char *id)
{
	bool running = false;
	pthread_mutex_lock(&core->lock);
	struct session *s = registry_find(core, id);
	if (s) {
		pthread_mutex_lock(&s->mu);
		running = s->sbx != NULL;
		pthread_mutex_unlock(&s->mu);
	}
	pthread_mutex_unlock(&core->lock);
	return running;
}

int core_session_get(struct core *core, const struct core_key *key, const char *id,
		     struct core_session_info *out, struct bk_err *err)
{
	struct store_session row;
	int r = store_session_get(core->store, id, key->id, &row, err);
	if (r < 0)
		return -1;
	if (r == 0 || row.expires_ms <= now_ms()) {
		if (r)
			store_session_release(&row);
		return bk_err_kind(err, BK_E_NOT_FOUND, "session '%s' not found", id);
	}
	info_fill(core, &row, session_running(core, id), out);
	out->metadata = steal_ptr(&row.metadata);
	store_session_release(&row);
	return 0;
}

int core_session_list(struct core *core, const struct core_key *key, const char *metadata_filter,
		      int limit, int offset, struct core_session_info **out, size_t *n,
		      int64_t *total, struct bk_err *err)
{
	struct store_session *rows = NULL;
	size_t nrows = 0;
	/* Expired sessions are gone for every endpoint, even in the moment
	 * before the reaper removes them. */
	if (store_session_list(core->store, key->id, metadata_filter, now_ms(), limit, offset,
			       &rows, &nrows, total, err) < 0)
		return -1;
	struct core_session_info *infos = calloc(nrows + 1, sizeof(*infos));
	if (infos == NULL) {
		for (size_t i = 0; i < nrows; i++)
			store_session_release(&rows[i]);
		free(rows);
		return bk_err_set(err, ENOMEM, "cannot list sessions");
	}
	for (size_t i = 0; i < nrows; i++) {
		info_fill(core, &rows[i], session_running(core, rows[i].id), &infos[i]);
		infos[i].metadata = steal_ptr(&rows[i].metadata);
		store_session_release(&rows[i]);
	}
	free(rows);
	*out = infos;
	*n = nrows;
	return 0;
}

int core_session_delete(struct core *core, const struct core_key *key, const char *id,
			struct bk_err *err)
{
	struct session *s;
	if (session_acquire(core, key->id, id, &s, err) < 0)
		return -1;
	int rc;
	if (session_mark_deleted(core, s)) {
		rc = session_destroy(core, s, err);
		session_unlink(core, s);
	} else {
		/* Expired (or deleted) by another thread meanwhile. */
		rc = bk_err_kind(err, BK_E_NOT_FOUND, "session '%s' not found", id);
	}
	session_release(core, s);
	return rc;
}

/* ---- expiry ---- */

static void reap_expired(struct core *core)
{
	for (;;) {
		int64_t now = now_ms();
		struct session *victim = NULL;
		pthread_mutex_lock(&core->lock);
		for (struct session *s = core->sessions; s; s = s->next) {
			if (s->expires_ms <= now && !s->deleted) {
				victim = s;
				s->refs++;
				break;
			}
		}
		pthread_mutex_unlock(&core->lock);
		if (victim == NULL)
			return;
		if (session_mark_deleted(core, victim)) {
			struct bk_err err = BK_ERR_INIT;
			if (session_destroy(core, victim, &err) < 0)
				fprintf(stderr, "bunkerd: expiring session %s: %s\n", victim->id,
					err.msg);
			session_unlink(core, victim);
		}
		session_release(core, victim);
	}
}

/* Activity recorded in memory only (preview traffic) reaches the store
 * from here, at most once a second per session. */
#define STORE_ACTIVITY_EVERY_MS 1000

void session_store_activity(struct core *core)
{
	for (;;) {
		struct session *due = NULL;
		int64_t active = 0;
		pthread_mutex_lock(&core->lock);
		for (struct session *s = core->sessions; s && !due; s = s->next) {
			active = __atomic_load_n(&s->last_active_ms, __ATOMIC_RELAXED);
			if (!s->deleted &&
			    active - __atomic_load_n(&s->stored_active_ms, __ATOMIC_RELAXED) >=
				STORE_ACTIVITY_EVERY_MS)
				due = s;
		}
		if (due) {
			due->refs++;
			/* Noted before the write, so that this session is not
			 * found again in this round. */
			__atomic_store_n(&due->stored_active_ms, active, __ATOMIC_RELAXED);
		}
		pthread_mutex_unlock(&core->lock);
		if (due == NULL)
			return;
		struct bk_err err = BK_ERR_INIT;
		if (store_session_touch(core->store, due->id, active, &err) < 0)
			fprintf(stderr, "bunkerd: session %s: %s\n", due->id, err.msg);
		session_release(core, due);
	}
}

static void *reaper_main(void *arg)
{
	struct core *core = arg;
	pthread_mutex_lock(&core->reaper_lock);
	while (!core->stopping) {
		pthread_mutex_unlock(&core->reaper_lock);
		reap_expired(core);
		session_store_activity(core);
		lifecycle_tick(core);
		pthread_mutex_lock(&core->reaper_lock);
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_nsec += 250 * 1000 * 1000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		if (!core->stopping)
			pthread_cond_timedwait(&core->reaper_cond, &core->reaper_lock, &ts);
	}
	pthread_mutex_unlock(&core->reaper_lock);
	return NULL;
}

/* ---- open / close ---- */

/* Directories under run/ with no session record: warm-pool sandboxes of an
 * earlier run, and what a crash between a delete's record removal and its
 * file removal left. */
static void purge_orphans(struct core *core)
{
	_cleanup_closedir_ DIR *d = opendir(core->sbx.run_dir);
	if (d == NULL)
		return;
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		if (strncmp(de->d_name, "ses_", 4) != 0 && strncmp(de->d_name, "pool_", 5) != 0)
			continue;
		pthread_mutex_lock(&core->lock);
		bool known = registry_find(core, de->d_name) != NULL;
		pthread_mutex_unlock(&core->lock);
		if (!known) {
			struct bk_err err = BK_ERR_INIT;
			if (sbx_purge(&core->sbx, de->d_name, &err) < 0)
				fprintf(stderr, "bunkerd: orphan %s: %s\n", de->d_name, err.msg);
		}
	}
}

static int core_recover(struct core *core, struct bk_err *err)
{
	struct store_session *rows = NULL;
	size_t n = 0;
	if (store_session_list_all(core->store, &rows, &n, err) < 0)
		return -1;
	for (size_t i = 0; i < n; i++) {
		/* Its processes died with the previous daemon; its disk stays. */
		sbx_cleanup_stale(&core->sbx, rows[i].id);
		struct session *s = session_new(&rows[i]);
		if (s) {
			lifecycle_recover(core, s);
			s->next = core->sessions;
			core->sessions = s;
		}
		store_session_release(&rows[i]);
	}
	free(rows);
	purge_orphans(core);
	return 0;
}

int core_open(const struct core_config *cfg, struct core **out, struct bk_err *err)
{
	struct core *core = calloc(1, sizeof(*core));
	if (core == NULL)
		return bk_err_set(err, ENOMEM, "cannot start");
	core->cfg = *cfg;
	if (core->cfg.pids_max == 0)
		core->cfg.pids_max = 512;
	pthread_mutex_init(&core->lock, NULL);
	pthread_mutex_init(&core->create_lock, NULL);
	pthread_mutex_init(&core->reaper_lock, NULL);
	pthread_cond_init(&core->ref_cond, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&core->reaper_cond, &ca);
	pthread_cond_init(&core->pool_cond, &ca);
	pthread_condattr_destroy(&ca);
	pthread_mutex_init(&core->pool_lock, NULL);
	core->pool_starting_slot = -1;

	if (core->cfg.idle_after_s <= 0)
		core->cfg.idle_after_s = 300;
	if (core->cfg.min_ttl_s <= 0)
		core->cfg.min_ttl_s = MIN_TTL_S;
	if (core->cfg.deep_sleep_after_s <= 0)
		core->cfg.deep_sleep_after_s = 1800;
	char db[600], snaps[600];
	snprintf(db, sizeof(db), "%s/bunker.db", cfg->data_dir);
	snprintf(snaps, sizeof(snaps), "%s/snapshots", cfg->data_dir);
	if (mkdir_p(cfg->data_dir, 0711, err) < 0 || mkdir_p(snaps, 0700, err) < 0 ||
	    store_open(db, &core->store, err) < 0 ||
	    sbx_config_init(&core->sbx, cfg->data_dir, cfg->init_path, cfg->bun_path, err) < 0 ||
	    core_recover(core, err) < 0) {
		core_close(core);
		return -1;
	}
	int e = pthread_create(&core->reaper, NULL, reaper_main, core);
	if (e != 0) {
		core_close(core);
		return bk_err_set(err, e, "cannot start the reaper");
	}
	if (pool_start(core, err) < 0) {
		core_close(core);
		return -1;
	}
	*out = core;
	return 0;
}

/* Opens only the store: for the CLI, which must not touch sandboxes. */
int core_open_store(const char *data_dir, struct core **out, struct bk_err *err)
{
	struct core *core = calloc(1, sizeof(*core));
	if (core == NULL)
		return bk_err_set(err, ENOMEM, "cannot open");
	char db[600];
	snprintf(db, sizeof(db), "%s/bunker.db", data_dir);
	if (mkdir_p(data_dir, 0711, err) < 0 || store_open(db, &core->store, err) < 0) {
		free(core);
		return -1;
	}
	*out = core;
	return 0;
}

void core_close(struct core *core)
{
	if (core == NULL)
		return;
	if (core->reaper) {
		pthread_mutex_lock(&core->reaper_lock);
		core->stopping = true;
		pthread_cond_broadcast(&core->reaper_cond);
		pthread_mutex_unlock(&core->reaper_lock);
		pthread_join(core->reaper, NULL);
	}
	if (core->pool_running)
		pool_stop(core);
	struct session *s = core->sessions;
	while (s) {
		struct session *next = s->next;
		/* A clean stop puts every session to deep sleep: its files are
		 * on storage and come back with the next start, even after the
		 * host itself restarts. */
		if (core->sbx.run_dir[0] && s->state != CORE_STATE_DEEP_SLEEP &&
		    sbx_disk_exists(&core->sbx, s->id)) {
			struct bk_err err = BK_ERR_INIT;
			pthread_rwlock_wrlock(&s->rw);
			if (lifecycle_deep_sleep_locked(core, s, &err) < 0)
				fprintf(stderr, "bunkerd: %s\n", err.msg);
			pthread_rwlock_unlock(&s->rw);
		}
		sbx_stop(s->sbx);
		session_free(s);
		s = next;
	}
	if (core->sbx.run_dir[0]) {
		sbx_cgroup_parent_remove(&core->sbx);
		sbx_run_dir_release(&core->sbx);
	}
	if (core->store)
		store_close(core->store);
	free(core);
}
