/* Sessions: create, read, list and delete. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core_int.h"
#include "util/cleanup.h"

#define DEFAULT_TTL_S 86400
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

void core_session_info_release(struct core_session_info *info)
{
	free(info->metadata);
	info->metadata = NULL;
}

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

static void info_fill(struct core *core, const struct store_session *row,
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
	struct sbx_stats st;
	core->sbx->ops->stats(core->sbx, row->id, &st);
	out->files_count = st.files;
	out->active_processes = st.processes;
}

/* The record of a new session of key from spec: every check that needs
 * nothing but the request. */
static int create_row(struct core *core, const struct core_key *key,
		      const struct core_session_spec *spec, struct store_session *row,
		      struct bk_err *err)
{
	int64_t ttl = spec->ttl_s ? spec->ttl_s
				  : (DEFAULT_TTL_S < key->limits.max_ttl_s ? DEFAULT_TTL_S
									   : key->limits.max_ttl_s);
	if (ttl < core->cfg.min_ttl_s || ttl > key->limits.max_ttl_s)
		return bk_err_field(err, "ttl", "ttl must be %d..%d seconds on plan '%s'",
				    core->cfg.min_ttl_s, key->limits.max_ttl_s, key->plan);
	const char *metadata = spec->metadata ? spec->metadata : "{}";
	if (core__metadata_check(metadata, "metadata", err) < 0)
		return -1;
	struct core_limits limits;
	if (limits_check(key, spec, &limits, err) < 0)
		return -1;
	*row = (struct store_session){
	    .created_ms = now_ms(),
	    .state = STORE_SESSION_ACTIVE,
	    .metadata = (char *)metadata,
	    .memory_mb = limits.memory_mb,
	    .cpu = limits.cpu,
	    .timeout_s = limits.timeout_s,
	    .disk_mb = limits.disk_mb,
	};
	row->expires_ms = row->created_ms + ttl * 1000;
	row->last_active_ms = row->created_ms;
	snprintf(row->key_id, sizeof(row->key_id), "%s", key->id);
	char rnd[21];
	if (random_alnum(rnd, 20, err) < 0)
		return -1;
	snprintf(row->id, sizeof(row->id), "ses_%s", rnd);
	return 0;
}

/* Counts the key's sessions, writes the record and links the session into
 * the registry, all under create_lock, so that concurrent creates cannot
 * pass the cap together. *out holds a reference of the caller's. */
static int create_reserve(struct core *core, const struct core_key *key,
			  const struct store_session *row, struct session **out, struct bk_err *err)
{
	pthread_mutex_lock(&core->create_lock);
	int64_t count;
	int rc =
	    core->store->ops->session_count(core->store, key->id, row->created_ms, &count, err);
	if (rc == 0 && count >= key->limits.max_sessions)
		rc = bk_err_kind(err, BK_E_LIMIT,
				 "concurrent session limit of %d reached on plan '%s'",
				 key->limits.max_sessions, key->plan);
	if (rc == 0)
		rc = core->store->ops->session_insert(core->store, row, err);
	struct session *s = NULL;
	if (rc == 0) {
		s = core__session_new(row);
		if (s == NULL) {
			core->store->ops->session_delete(core->store, row->id, NULL);
			rc = bk_err_set(err, ENOMEM, "cannot create session");
		}
	}
	if (rc == 0) {
		s->refs++; /* ours, besides the registry's */
		core__registry_link(core, s);
	}
	pthread_mutex_unlock(&core->create_lock);
	*out = s;
	return rc;
}

/* Gives s a running sandbox: one from the warm pool, adopted, or a fresh
 * start. */
static int create_bind_sandbox(struct core *core, struct session *s, struct bk_err *err)
{
	const struct sbx_ops *ops = core->sbx->ops;
	struct sbx *warm = core__pool_take(core);
	if (warm) {
		struct sbx_limits lim = core__session_sbx_limits(core, s);
		char wid[32];
		snprintf(wid, sizeof(wid), "%s", warm->id);
		struct bk_err aerr = BK_ERR_INIT;
		if (ops->adopt(warm, s->id, &lim, &aerr) == 0) {
			s->sbx = warm;
		} else {
			/* A fresh start below does the job; only the time is lost. */
			fprintf(stderr, "bunkerd: warm pool: %s\n", aerr.msg);
			ops->stop(warm);
			ops->purge(core->sbx, wid, NULL);
			ops->purge(core->sbx, s->id, NULL);
		}
	}
	pthread_rwlock_rdlock(&s->rw);
	struct sbx *sbx;
	int rc = core__session_sandbox(core, s, &sbx, err);
	pthread_rwlock_unlock(&s->rw);
	return rc;
}

/* Undoes create_reserve() and whatever of a sandbox there is, and drops
 * the caller's reference. */
static void create_abort(struct core *core, struct session *s)
{
	struct bk_err err = BK_ERR_INIT;
	if (core__session_mark_deleted(core, s)) {
		if (core__session_destroy(core, s, &err) < 0)
			fprintf(stderr, "bunkerd: undoing the create of %s: %s\n", s->id, err.msg);
		core__registry_unlink(core, s);
	}
	core__session_release(core, s);
}

int core_session_create(struct core *core, const struct core_key *key,
			const struct core_session_spec *spec, struct core_session_info *out,
			struct bk_err *err)
{
	struct store_session row;
	struct session *s;
	if (create_row(core, key, spec, &row, err) < 0 ||
	    create_reserve(core, key, &row, &s, err) < 0)
		return -1;
	if (create_bind_sandbox(core, s, err) < 0) {
		create_abort(core, s);
		bk_err_prefix(err, "cannot create session");
		return -1;
	}
	info_fill(core, &row, out);
	out->metadata = strdup(row.metadata);
	core__session_release(core, s);
	if (out->metadata == NULL)
		return bk_err_set(err, ENOMEM, "cannot create session");
	return 0;
}

int core_session_get(struct core *core, const struct core_key *key, const char *id,
		     struct core_session_info *out, struct bk_err *err)
{
	struct store_session row;
	int r = core->store->ops->session_get(core->store, id, key->id, &row, err);
	if (r < 0)
		return -1;
	if (r == 0 || row.expires_ms <= now_ms()) {
		if (r)
			store_session_release(&row);
		return bk_err_kind(err, BK_E_NOT_FOUND, "session '%s' not found", id);
	}
	info_fill(core, &row, out);
	out->metadata = steal_ptr(&row.metadata);
	store_session_release(&row);
	return 0;
}

int core_session_list(struct core *core, const struct core_key *key, const char *metadata_filter,
		      int limit, int offset, struct core_session_info **out, size_t *n,
		      int64_t *total, struct bk_err *err)
{
	struct core_metadata_filter *filter = NULL;
	if (metadata_filter && core__metadata_filter_new(metadata_filter, &filter, err) < 0)
		return -1;
	struct store_session *rows = NULL;
	size_t nrows = 0;
	/* Expired sessions are gone for every endpoint, even in the moment
	 * before the reaper removes them. */
	int rc = core->store->ops->session_list(core->store, key->id, now_ms(),
						filter ? core__metadata_match : NULL, filter, limit,
						offset, &rows, &nrows, total, err);
	core__metadata_filter_free(filter);
	if (rc < 0)
		return -1;
	struct core_session_info *infos = calloc(nrows + 1, sizeof(*infos));
	if (infos == NULL) {
		for (size_t i = 0; i < nrows; i++)
			store_session_release(&rows[i]);
		free(rows);
		return bk_err_set(err, ENOMEM, "cannot list sessions");
	}
	for (size_t i = 0; i < nrows; i++) {
		info_fill(core, &rows[i], &infos[i]);
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
	if (core__session_acquire(core, key->id, id, &s, err) < 0)
		return -1;
	int rc;
	if (core__session_mark_deleted(core, s)) {
		rc = core__session_destroy(core, s, err);
		core__registry_unlink(core, s);
	} else {
		/* Expired (or deleted) by another thread meanwhile. */
		rc = bk_err_kind(err, BK_E_NOT_FOUND, "session '%s' not found", id);
	}
	core__session_release(core, s);
	return rc;
}
