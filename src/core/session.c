/* Sessions: create, read, list and delete. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

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
	free(info->env);
	free(info->network);
	info->metadata = NULL;
	info->env = NULL;
	info->network = NULL;
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
	const struct core_limits *l = &spec->limits;
	if (spec->clamp) {
		/* Coarse choices (InstaVM's vCPUs) meet the plan's ceiling. */
		if (l->memory_mb)
			out->memory_mb =
			    l->memory_mb < p->memory_max_mb ? l->memory_mb : p->memory_max_mb;
		if (l->cpu > 0)
			out->cpu = l->cpu < p->cpu_max ? l->cpu : p->cpu_max;
		return 0;
	}
	if (!p->overrides)
		return bk_err_kind(err, BK_E_FORBIDDEN,
				   "resourceLimits overrides need a paid or enterprise plan "
				   "(this key is on '%s')",
				   key->plan);
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

void core__info_fill(struct core *core, const struct store_session *row,
		     struct core_session_info *out)
{
	memset(out, 0, sizeof(*out));
	snprintf(out->id, sizeof(out->id), "%s", row->id);
	snprintf(out->public_id, sizeof(out->public_id), "%s",
		 row->public_id[0] ? row->public_id : row->id);
	out->dialect = (enum core_dialect)row->dialect;
	out->created_ms = row->created_ms;
	out->expires_ms = row->expires_ms;
	out->last_active_ms = row->last_active_ms;
	out->state = (enum core_state)row->state;
	out->limits = (struct core_limits){row->memory_mb, row->cpu, row->timeout_s, row->disk_mb};
	out->vcpu = row->vcpu;
	/* "ses_" + 20 characters becomes the host name "ses-<20>". */
	snprintf(out->preview_url, sizeof(out->preview_url), "%s://ses-%s.%s",
		 core->cfg.preview_scheme, row->id + 4, core->cfg.preview_domain);
	out->vm = (enum core_vm)row->vm_state;
	out->vm_lifetime_s = row->vm_lifetime_s;
	out->vm_spawned_ms = row->vm_spawned_ms;
	out->vm_ends_ms = row->vm_ends_ms;
	out->exec_count = row->exec_count;
	out->cpu_ms = row->cpu_ms;
	out->vm_runtime_ms = row->vm_runtime_ms;
	if (out->vm == CORE_VM_RUNNING && row->vm_spawned_ms > 0 && now_ms() > row->vm_spawned_ms)
		out->vm_runtime_ms += now_ms() - row->vm_spawned_ms;
	out->net_tx_bytes = row->net_tx_bytes;
	out->net_rx_bytes = row->net_rx_bytes;
	struct sbx_stats st;
	core->sbx->ops->stats(core->sbx, row->id, &st);
	out->files_count = st.files;
	out->active_processes = st.processes;
	out->memory_bytes = st.memory_bytes;
}

/* Takes the text fields of row into out (filled by core__info_fill). */
static void info_take(struct core_session_info *out, struct store_session *row)
{
	out->metadata = steal_ptr(&row->metadata);
	out->env = steal_ptr(&row->env);
	out->network = steal_ptr(&row->network);
	store_session_release(row);
}

/* A session's env as the store keeps it: a JSON object of strings. */
static int env_json(const struct core_session_spec *spec, char **out, struct bk_err *err)
{
	if (spec->n_env > CORE_ENV_MAX)
		return bk_err_field(err, "env", "env holds at most %d variables", CORE_ENV_MAX);
	json_t *o = json_object();
	for (size_t i = 0; o && i < spec->n_env; i++) {
		const char *name = spec->env[i].name;
		if (*name == '\0' || strchr(name, '=') != NULL) {
			json_decref(o);
			return bk_err_field(err, "env", "env name '%s' is not valid", name);
		}
		json_object_set_new(o, name, json_string(spec->env[i].value));
	}
	*out = o ? json_dumps(o, JSON_COMPACT) : NULL;
	json_decref(o);
	return *out ? 0 : bk_err_set(err, ENOMEM, "cannot keep env");
}

int core__uuid_v4(char out[40], struct bk_err *err)
{
	uint8_t b[16];
	if (random_bytes(b, sizeof(b), err) < 0)
		return -1;
	b[6] = (uint8_t)((b[6] & 0x0f) | 0x40);
	b[8] = (uint8_t)((b[8] & 0x3f) | 0x80);
	snprintf(out, 40, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
		 b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12],
		 b[13], b[14], b[15]);
	return 0;
}

/* The record of a new session of key from spec: every check that needs
 * nothing but the request. *env_text is the row's env (caller frees). */
static int create_row(struct core *core, const struct core_key *key,
		      const struct core_session_spec *spec, struct store_session *row,
		      char **env_text, char **net_text, struct bk_err *err)
{
	*env_text = NULL;
	*net_text = NULL;
	int64_t ttl = spec->ttl_s;
	if (ttl == 0)
		ttl = spec->dialect == CORE_DIALECT_INSTAVM || DEFAULT_TTL_S > key->limits.max_ttl_s
			  ? key->limits.max_ttl_s
			  : DEFAULT_TTL_S;
	if (ttl < core->cfg.min_ttl_s || ttl > key->limits.max_ttl_s)
		return bk_err_field(err, "ttl", "ttl must be %d..%d seconds on plan '%s'",
				    core->cfg.min_ttl_s, key->limits.max_ttl_s, key->plan);
	const char *metadata = spec->metadata ? spec->metadata : "{}";
	if (core__metadata_check(metadata, "metadata", err) < 0)
		return -1;
	struct core_limits limits;
	if (limits_check(key, spec, &limits, err) < 0 || env_json(spec, env_text, err) < 0)
		return -1;
	if (spec->network ? core__network_merge(NULL, spec->network, spec->network_camel,
						spec->network_prefix ? spec->network_prefix : "",
						&key->limits, net_text, err) < 0
			  : (*net_text = core__network_default(&key->limits)) == NULL)
		return spec->network ? -1
				     : bk_err_set(err, ENOMEM, "cannot keep the network policy");
	bool lazy = spec->lazy && spec->n_env == 0;
	*row = (struct store_session){
	    .dialect = spec->dialect,
	    .created_ms = now_ms(),
	    .state = lazy ? STORE_SESSION_DEEP_SLEEP : STORE_SESSION_ACTIVE,
	    .metadata = (char *)metadata,
	    .env = *env_text,
	    .network = *net_text,
	    .memory_mb = limits.memory_mb,
	    .cpu = limits.cpu,
	    .timeout_s = limits.timeout_s,
	    .disk_mb = limits.disk_mb,
	    .vcpu = spec->vcpu,
	    .vm_state = lazy ? STORE_VM_NONE : STORE_VM_RUNNING,
	    .vm_lifetime_s = spec->vm_lifetime_s,
	};
	row->expires_ms = row->created_ms + ttl * 1000;
	row->last_active_ms = row->created_ms;
	if (!lazy) {
		row->vm_spawned_ms = row->created_ms;
		if (spec->vm_lifetime_s > 0)
			row->vm_ends_ms = row->created_ms + spec->vm_lifetime_s * 1000;
	}
	snprintf(row->key_id, sizeof(row->key_id), "%s", key->id);
	if (spec->dialect == CORE_DIALECT_INSTAVM && core__uuid_v4(row->public_id, err) < 0)
		return -1;
	char rnd[21];
	if (random_alnum(rnd, 20, err) < 0)
		return -1;
	snprintf(row->id, sizeof(row->id), "ses_%s", rnd);
	return 0;
}

/* Sessions without a VM hold nothing and do not count toward the cap, but
 * each is a record: a key keeps at most this many times its cap of them. */
#define VMLESS_PER_SESSION_CAP 10

/* Writes the record under the key's cap, which the store counts and takes
 * in one transaction (so it holds across every node sharing the store),
 * and links the session into the registry, all under create_lock. *out
 * holds a reference of the caller's. */
static int create_reserve(struct core *core, const struct core_key *key,
			  const struct store_session *given, struct session **out,
			  struct bk_err *err)
{
	/* This node owns what it creates, at the first epoch. */
	struct store_session owned = *given;
	snprintf(owned.owner, sizeof(owned.owner), "%s", core->cfg.node);
	owned.epoch = 1;
	const struct store_session *row = &owned;
	pthread_mutex_lock(&core->create_lock);
	bool holding = row->vm_state == STORE_VM_RUNNING;
	struct store_cap cap = {
	    .max = holding ? key->limits.max_sessions
			   : (int64_t)key->limits.max_sessions * VMLESS_PER_SESSION_CAP + 10,
	    .holding = holding,
	    .now_ms = row->created_ms,
	};
	int rc = core->store->ops->session_insert(core->store, row, &cap, err);
	if (rc < 0 && err->kind == BK_E_LIMIT)
		rc = holding ? bk_err_kind(err, BK_E_LIMIT,
					   "concurrent session limit of %d reached on plan '%s'",
					   key->limits.max_sessions, key->plan)
			     : bk_err_kind(err, BK_E_LIMIT,
					   "%lld sessions (with or without a VM) reached on plan "
					   "'%s': delete some",
					   (long long)cap.max, key->plan);
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
static int create_bind_sandbox(struct core *core, const struct core_key *key, struct session *s,
			       struct bk_err *err)
{
	core__pool_adopt(core, s);
	pthread_rwlock_rdlock(&s->rw);
	struct sbx *sbx;
	int rc = core__session_sandbox(core, key, s, &sbx, err);
	pthread_rwlock_unlock(&s->rw);
	return rc;
}

/* Undoes create_reserve() and whatever of a sandbox there is, and drops
 * the caller's reference. */
static void create_abort(struct core *core, struct session *s)
{
	struct bk_err err = BK_ERR_INIT;
	if (core__session_mark_deleted(core, s)) {
		/* The client is told the create failed: its sandbox goes in any
		 * case. A record the store cannot delete now is deleted by the
		 * reaper once it can; until then the session stays in the
		 * registry, deleted, so that no request loads the record. */
		int r = core__record_delete(core, s->id, &err);
		bool kept = r < 0;
		if (kept) {
			fprintf(stderr,
				"bunkerd: undoing the create of %s: %s (the record is deleted "
				"when the store answers)\n",
				s->id, err.msg);
			pthread_mutex_lock(&core->lock);
			s->undo_pending = true;
			pthread_mutex_unlock(&core->lock);
		}
		err = (struct bk_err)BK_ERR_INIT;
		/* Another node's (r == 1): its files are that node's. */
		if (r <= 0 && core__session_sandbox_destroy(core, s, &err) < 0)
			fprintf(stderr, "bunkerd: undoing the create of %s: %s\n", s->id, err.msg);
		if (!kept)
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
	_cleanup_free_ char *env = NULL, *net = NULL;
	if (create_row(core, key, spec, &row, &env, &net, err) < 0 ||
	    create_reserve(core, key, &row, &s, err) < 0)
		return -1;
	if (row.vm_state == STORE_VM_RUNNING && create_bind_sandbox(core, key, s, err) < 0) {
		create_abort(core, s);
		bk_err_prefix(err, "cannot create session");
		return -1;
	}
	core__info_fill(core, &row, out);
	out->metadata = strdup(row.metadata);
	out->env = strdup(row.env);
	out->network = strdup(row.network);
	/* A VM-less session holds nothing: the registry needs not keep it. */
	core__registry_evict(core, s);
	core__session_release(core, s);
	if (out->metadata == NULL || out->env == NULL || out->network == NULL)
		return bk_err_set(err, ENOMEM, "cannot create session");
	return 0;
}

/* Reads session id (of key_id, NULL: any key) without waking it. */
static int session_read(struct core *core, const char *key_id, const char *id,
			struct core_session_info *out, struct bk_err *err)
{
	core__registry_flush_id(core, id);
	struct store_session row;
	int r = core->store->ops->session_get(core->store, id, key_id, &row, err);
	if (r < 0)
		return -1;
	if (r == 0 || row.expires_ms <= now_ms()) {
		if (r)
			store_session_release(&row);
		return bk_err_kind(err, BK_E_NOT_FOUND, "session '%s' not found", id);
	}
	core__info_fill(core, &row, out);
	info_take(out, &row);
	return 0;
}

int core_session_get(struct core *core, const struct core_key *key, const char *id,
		     struct core_session_info *out, struct bk_err *err)
{
	return session_read(core, key->id, id, out, err);
}

int core_session_get_any(struct core *core, const char *id, struct core_session_info *out,
			 struct bk_err *err)
{
	return session_read(core, NULL, id, out, err);
}

struct list_filter {
	struct core_metadata_filter *metadata;
	bool vm_only;
};

static bool list_match(void *ctx, const struct store_session *s)
{
	const struct list_filter *f = ctx;
	if (f->vm_only && s->vm_state != STORE_VM_RUNNING)
		return false;
	return f->metadata == NULL || core__metadata_match(f->metadata, s->metadata);
}

int core_session_list(struct core *core, const struct core_key *key, const char *metadata_filter,
		      bool vm_only, int limit, int offset, struct core_session_info **out,
		      size_t *n, int64_t *total, struct bk_err *err)
{
	struct list_filter f = {.vm_only = vm_only};
	if (metadata_filter && core__metadata_filter_new(metadata_filter, &f.metadata, err) < 0)
		return -1;
	struct store_session *rows = NULL;
	size_t nrows = 0;
	/* Expired sessions are gone for every endpoint, even in the moment
	 * before the reaper removes them. */
	int rc = core->store->ops->session_list(core->store, key->id, now_ms(),
						f.metadata || vm_only ? list_match : NULL, &f,
						limit, offset, &rows, &nrows, total, err);
	core__metadata_filter_free(f.metadata);
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
		core__info_fill(core, &rows[i], &infos[i]);
		info_take(&infos[i], &rows[i]);
	}
	free(rows);
	*out = infos;
	*n = nrows;
	return 0;
}

/* Takes s's rw lock exclusively, first ending what would hold it shared
 * for long (preview connections, executions in flight: their sandbox is
 * terminated). */
static void lock_for_end(struct core *core, struct session *s)
{
	pthread_mutex_lock(&s->mu);
	if (s->sbx)
		core->sbx->ops->terminate(s->sbx);
	core__preview_shutdown_locked(s);
	pthread_mutex_unlock(&s->mu);
	pthread_rwlock_wrlock(&s->rw);
}

int core_vm_kill(struct core *core, const struct core_key *key, const char *id,
		 struct core_session_info *out, struct bk_err *err)
{
	struct session *s;
	if (core__session_acquire(core, NULL, id, &s, err) < 0)
		return -1;
	int rc = 0;
	if (strcmp(s->key_id, key->id) != 0)
		rc = bk_err_kind(err, BK_E_FORBIDDEN, "session '%s' is not this key's", id);
	struct store_session row;
	if (rc == 0 && core->store->ops->session_get(core->store, s->id, NULL, &row, err) == 1) {
		core__info_fill(core, &row, out);
		info_take(out, &row);
	} else if (rc == 0) {
		rc = bk_err_kind(err, BK_E_NOT_FOUND, "session '%s' not found", id);
	}
	if (rc == 0 && s->vm != CORE_VM_RUNNING) {
		core_session_info_release(out);
		rc = bk_err_kind(err, BK_E_NOT_FOUND, "session '%s' has no VM running", id);
	}
	if (rc == 0) {
		lock_for_end(core, s);
		if (s->vm == CORE_VM_RUNNING && !s->deleted &&
		    core__vm_end_locked(core, s, err) < 0) {
			core_session_info_release(out);
			rc = -1;
		}
		pthread_rwlock_unlock(&s->rw);
	}
	core__registry_evict(core, s);
	core__session_release(core, s);
	return rc;
}

int core_vm_ensure(struct core *core, const struct core_key *key, const char *id,
		   struct bk_err *err)
{
	struct session *s;
	struct sbx *sbx;
	if (core__session_enter(core, key, id, &s, &sbx, err) < 0)
		return -1;
	core__session_leave(core, s);
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
		bool kept;
		rc = core__session_destroy(core, s, &kept, err);
		/* Its record kept (the store unreachable): kept whole. */
		if (kept)
			core__session_unmark_deleted(core, s);
		else
			core__registry_unlink(core, s);
	} else {
		/* Expired (or deleted) by another thread meanwhile. */
		rc = bk_err_kind(err, BK_E_NOT_FOUND, "session '%s' not found", id);
	}
	core__session_release(core, s);
	return rc;
}
