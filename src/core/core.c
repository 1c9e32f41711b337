/* Opening and closing the core: recovery of an earlier run's sessions at
 * start-up, and a clean stop that puts every session to deep sleep. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/core_int.h"

#define MIN_TTL_S 300

/* Whether the store knows session id (the backend's reconcile asks about
 * whatever it finds on the host), and with here whether it is not another
 * node's: a disk of a session that a peer took over while this node was
 * down goes, its snapshot or checkpoint (which the peer reads) stays. */
static bool known_session(void *ctx, const char *id, bool here)
{
	struct core *core = ctx;
	struct store_session row;
	struct bk_err err = BK_ERR_INIT;
	int r = core->store->ops->session_get(core->store, id, NULL, &row, &err);
	bool theirs = false;
	if (r > 0) {
		theirs =
		    core->cfg.node[0] && row.owner[0] && strcmp(row.owner, core->cfg.node) != 0;
		store_session_release(&row);
	}
	/* When the store cannot say, nothing is removed. */
	return r != 0 && !(here && theirs);
}

/* Every session of the store, settled into a consistent state; those that
 * are not asleep stay in the registry. */
static int core_recover(struct core *core, struct bk_err *err)
{
	struct store_session *rows = NULL;
	size_t n = 0;
	if (core->store->ops->session_list_all(core->store, &rows, &n, err) < 0)
		return -1;
	/* Nothing of a sandbox survives its daemon: what is left on the host
	 * of an earlier run goes first, files of known sessions kept. */
	core->sbx->ops->reconcile(core->sbx, known_session, core);
	for (size_t i = 0; i < n; i++) {
		struct session *s = core__session_new(&rows[i]);
		if (s) {
			core__lifecycle_recover(core, s);
			if (s->state == CORE_STATE_DEEP_SLEEP)
				core__session_release(core, s);
			else
				core__registry_link(core, s);
		}
		store_session_release(&rows[i]);
	}
	free(rows);
	return 0;
}

static struct core *core_alloc(void)
{
	struct core *core = calloc(1, sizeof(*core));
	if (core == NULL)
		return NULL;
	pthread_mutex_init(&core->lock, NULL);
	pthread_mutex_init(&core->create_lock, NULL);
	pthread_mutex_init(&core->load_lock, NULL);
	pthread_mutex_init(&core->reaper_lock, NULL);
	pthread_mutex_init(&core->pool_lock, NULL);
	pthread_cond_init(&core->ref_cond, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&core->reaper_cond, &ca);
	pthread_cond_init(&core->pool_cond, &ca);
	pthread_mutex_init(&core->cluster_lock, NULL);
	pthread_cond_init(&core->cluster_cond, &ca);
	pthread_condattr_destroy(&ca);
	return core;
}

int core_open(const struct core_config *cfg, struct store *store, struct sbx_backend *backend,
	      struct core **out, struct bk_err *err)
{
	struct core *core = core_alloc();
	if (core == NULL) {
		store->ops->close(store);
		backend->ops->close(backend);
		return bk_err_set(err, ENOMEM, "cannot start");
	}
	core->store = store;
	core->sbx = backend;
	core->cfg = *cfg;
	if (core->cfg.pids_max == 0)
		core->cfg.pids_max = 512;
	if (core->cfg.idle_after_s <= 0)
		core->cfg.idle_after_s = 300;
	if (core->cfg.min_ttl_s <= 0)
		core->cfg.min_ttl_s = MIN_TTL_S;
	if (core->cfg.deep_sleep_after_s <= 0)
		core->cfg.deep_sleep_after_s = 1800;
	/* The store acts for this node from here on: recovery, due sessions
	 * and unfinished tasks are its own, and its writes are fenced. */
	snprintf(store->node, sizeof(store->node), "%s", core->cfg.node);
	if (core->cfg.output_memory == 0)
		core->cfg.output_memory = CORE_OUTPUT_MEMORY_DEFAULT;
	if (core->cfg.output_key_memory == 0)
		core->cfg.output_key_memory = CORE_OUTPUT_KEY_DEFAULT;
	if (budget_new(core->cfg.output_memory, core->cfg.output_key_memory, &core->output_budget,
		       err) < 0 ||
	    core_recover(core, err) < 0 ||
	    (core->cfg.node[0] && core__cluster_start(core, err) < 0) ||
	    core__tasks_start(core, err) < 0 || core__reaper_start(core, err) < 0 ||
	    core__pool_start(core, err) < 0) {
		core_close(core);
		return -1;
	}
	*out = core;
	return 0;
}

int core_open_store(struct store *store, struct core **out, struct bk_err *err)
{
	struct core *core = core_alloc();
	if (core == NULL) {
		store->ops->close(store);
		return bk_err_set(err, ENOMEM, "cannot open");
	}
	core->store = store;
	*out = core;
	return 0;
}

void core_sandbox_describe(struct core *core, char *out, size_t len)
{
	core->sbx->ops->describe(core->sbx, out, len);
}

void core_close(struct core *core)
{
	if (core == NULL)
		return;
	core__cluster_stop(core);
	/* Tasks first: each holds its session while it runs. */
	core__tasks_stop(core);
	core__reaper_stop(core);
	if (core->pool_running)
		core__pool_stop(core);
	struct session *s = core->sessions;
	while (s) {
		struct session *next = s->next;
		/* A clean stop puts every session to deep sleep: its files are
		 * on storage and come back with the next start, even after the
		 * host itself restarts. */
		if (s->state != CORE_STATE_DEEP_SLEEP &&
		    core->sbx->ops->files_state(core->sbx, s->id).disk) {
			struct bk_err err = BK_ERR_INIT;
			pthread_rwlock_wrlock(&s->rw);
			if (core__lifecycle_deep_sleep_locked(core, s, &err) < 0)
				fprintf(stderr, "bunkerd: %s\n", err.msg);
			pthread_rwlock_unlock(&s->rw);
		}
		core__session_sbx_drop(core, s);
		/* What it used up to here, its network's last bytes among it. */
		core__session_flush(core, s);
		core__registry_unlink(core, s);
		s = next;
	}
	if (core->sbx)
		core->sbx->ops->close(core->sbx);
	if (core->store)
		core->store->ops->close(core->store);
	/* Last: the server has stopped, so no answer holds a charge. */
	budget_free(core->output_budget);
	free(core);
}
