/* The warm pool: sandboxes started ahead of need, so that creating a
 * session does not wait for one.
 *
 * Starting a sandbox costs a few milliseconds of namespaces and mounts,
 * and on cgroup v1 placing its first process into the memory cgroup waits
 * for an RCU grace period (15-20 ms on this project's machines): the very
 * cost a create would otherwise pay. A pool sandbox runs under a
 * placeholder id with default limits; a create takes one and has the
 * backend hand it to the session (adopt()), then a background thread
 * starts a replacement.
 *
 * Besides the plain ones (cfg.warm_pool of them), half as many (at least
 * one) wait with their Python interpreter started: an InstaVM session is
 * created without a sandbox and spawns one at its first execution, most
 * often Python's, whose interpreter would take some 25 ms to start there.
 *
 * Once a session was granted a network, as many again wait with one
 * prepared (an interface, its address and route, and a chain whose sets
 * hold the last grant's CIDRs and web ports, while nothing runs behind
 * it): a create with the same policy then writes nothing into nftables,
 * and one with another rewrites the sets that differ, where making the
 * interface and the chain would take it some 3-8 ms (more on a loaded
 * host). A daemon whose sessions never have
 * a network keeps none, and a host that gives none stops asking.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core_int.h"
#include "util/metrics.h"

/* How many sandboxes of kind the pool keeps. */
static int pool_target(const struct core *core, enum core_pool_kind kind)
{
	int n = core->cfg.warm_pool;
	if (kind == CORE_POOL_PLAIN || n <= 0)
		return n;
	if (kind == CORE_POOL_NET)
		return core->pool_net_wanted && !core->pool_net_off && core->sbx->ops->net_prepare
			   ? (n + 1) / 2
			   : 0;
	return core->sbx->ops->run ? (n + 1) / 2 : 0;
}

void core__pool_want_net(struct core *core)
{
	pthread_mutex_lock(&core->pool_lock);
	if (!core->pool_net_wanted) {
		core->pool_net_wanted = true;
		pthread_cond_broadcast(&core->pool_cond);
	}
	pthread_mutex_unlock(&core->pool_lock);
}

struct sbx *core__pool_take(struct core *core, enum core_pool_kind kind)
{
	const struct sbx_ops *ops = core->sbx->ops;
	struct sbx *found = NULL;
	pthread_mutex_lock(&core->pool_lock);
	while (core->pool[kind] && found == NULL) {
		struct pool_entry *e = core->pool[kind];
		core->pool[kind] = e->next;
		core->pool_count[kind]--;
		if (ops->alive(e->sbx)) {
			found = e->sbx;
		} else {
			/* Died while waiting: clear it out. */
			char id[32];
			snprintf(id, sizeof(id), "%s", e->sbx->id);
			ops->stop(e->sbx);
			ops->purge(core->sbx, id, NULL);
		}
		free(e);
	}
	pthread_cond_broadcast(&core->pool_cond);
	pthread_mutex_unlock(&core->pool_lock);
	return found;
}

bool core__pool_adopt(struct core *core, struct session *s)
{
	const struct sbx_ops *ops = core->sbx->ops;
	bool bare =
	    s->dialect == CORE_DIALECT_INSTAVM && (s->env == NULL || strcmp(s->env, "{}") == 0);
	struct sbx *warm =
	    core__network_grants(s->network) ? core__pool_take(core, CORE_POOL_NET) : NULL;
	if (warm == NULL && bare)
		warm = core__pool_take(core, CORE_POOL_PYTHON);
	if (warm == NULL)
		warm = core__pool_take(core, CORE_POOL_PLAIN);
	if (warm == NULL)
		return false;
	struct sbx_limits lim = core__session_sbx_limits(core, s);
	char wid[32];
	snprintf(wid, sizeof(wid), "%s", warm->id);
	struct bk_err err = BK_ERR_INIT;
	if (ops->adopt(warm, s->id, &lim, &err) < 0) {
		/* A fresh start does the job; only the time is lost. */
		fprintf(stderr, "bunkerd: warm pool: %s\n", err.msg);
		ops->stop(warm);
		ops->purge(core->sbx, wid, NULL);
		ops->purge(core->sbx, s->id, NULL);
		return false;
	}
	pthread_mutex_lock(&s->mu);
	core__session_sbx_attach_locked(core, s, warm);
	int r = core__session_net_apply_locked(core, s, &err);
	if (r < 0)
		s->sbx = NULL;
	pthread_mutex_unlock(&s->mu);
	if (r < 0) {
		/* A fresh start tries again, and says why it fails. */
		fprintf(stderr, "bunkerd: warm pool: %s\n", err.msg);
		ops->stop(warm);
		ops->purge(core->sbx, wid, NULL);
		return false;
	}
	return true;
}

/* The limits a pool sandbox waits with: the defaults of a session. */
static struct sbx_limits pool_limits(const struct core *core)
{
	return (struct sbx_limits){
	    .memory_mb = 1024, .cpu = 0.25, .disk_mb = 1024, .pids = core->cfg.pids_max};
}

/* Starts the Python interpreter of a sandbox of CORE_POOL_PYTHON, with
 * the environment an execution of a session without env has. */
static int pool_warm_python(struct core *core, struct sbx *sbx, struct bk_err *err)
{
	const struct sbx_ops *ops = core->sbx->ops;
	if (ops->run == NULL)
		return bk_err_kind(err, BK_E_UNAVAILABLE, "this backend runs no interpreters");
	char port[32];
	snprintf(port, sizeof(port), "PORT=%d", CORE_PREVIEW_PORT);
	const char *envp[] = {port, NULL};
	struct sbx_run_req req = {.language = SBX_LANG_PYTHON,
				  .code = "",
				  .envp = envp,
				  .timeout_ms = 30000,
				  .output_max = 4096};
	struct sbx_exec_result res;
	int rc = ops->run(sbx, &req, &res, err);
	if (rc == 0 && res.exit_code != 0)
		rc = bk_err_kind(err, BK_E_INTERNAL, "python did not start (exit %d)",
				 res.exit_code);
	if (rc == 0)
		sbx_exec_result_release(&res);
	return rc;
}

/* The kind the pool lacks first (plain ones first: every create takes
 * one), or -1 when it is full. With pool_lock held. */
static int pool_lacking(const struct core *core)
{
	for (int k = CORE_POOL_PLAIN; k < CORE_POOL_KINDS; k++)
		if (core->pool_count[k] < pool_target(core, (enum core_pool_kind)k))
			return k;
	return -1;
}

static void *pool_main(void *arg)
{
	struct core *core = arg;
	const struct sbx_ops *ops = core->sbx->ops;
	int failures = 0;
	pthread_mutex_lock(&core->pool_lock);
	while (!core->pool_quit) {
		int kind = pool_lacking(core);
		if (kind < 0) {
			pthread_cond_wait(&core->pool_cond, &core->pool_lock);
			continue;
		}
		char id[32];
		snprintf(id, sizeof(id), "pool_%u", core->pool_seq++);
		pthread_mutex_unlock(&core->pool_lock);
		struct sbx *sbx = NULL;
		struct bk_err err = BK_ERR_INIT;
		struct sbx_limits lim = pool_limits(core);
		int64_t t0 = mono_us();
		int rc = ops->start(core->sbx, id, &lim, &sbx, &err);
		if (rc == 0)
			metrics_observe(METRICS_SANDBOX_START_SECONDS,
					(double)(mono_us() - t0) / 1e6);
		if (rc == 0 && kind == CORE_POOL_PYTHON &&
		    (rc = pool_warm_python(core, sbx, &err)) < 0) {
			ops->stop(sbx);
			sbx = NULL;
		}
		bool net_off = false;
		if (rc == 0 && kind == CORE_POOL_NET && (rc = ops->net_prepare(sbx, &err)) < 0) {
			net_off = err.kind == BK_E_UNAVAILABLE;
			ops->stop(sbx);
			sbx = NULL;
		}
		pthread_mutex_lock(&core->pool_lock);
		if (net_off)
			core->pool_net_off = true;
		if (rc == 0) {
			struct pool_entry *e = calloc(1, sizeof(*e));
			if (e) {
				e->sbx = sbx;
				e->next = core->pool[kind];
				core->pool[kind] = e;
				core->pool_count[kind]++;
				failures = 0;
				continue;
			}
			pthread_mutex_unlock(&core->pool_lock);
			ops->stop(sbx);
			ops->purge(core->sbx, id, NULL);
			pthread_mutex_lock(&core->pool_lock);
		} else {
			fprintf(stderr, "bunkerd: warm pool: %s\n", err.msg);
			pthread_mutex_unlock(&core->pool_lock);
			ops->purge(core->sbx, id, NULL);
			pthread_mutex_lock(&core->pool_lock);
		}
		/* Back off on failure rather than spin: creates still work
		 * without the pool, just slower. */
		if (++failures > 0) {
			struct timespec ts;
			clock_gettime(CLOCK_MONOTONIC, &ts);
			ts.tv_sec += failures < 5 ? 1 : 30;
			pthread_cond_timedwait(&core->pool_cond, &core->pool_lock, &ts);
		}
	}
	pthread_mutex_unlock(&core->pool_lock);
	return NULL;
}

int core__pool_start(struct core *core, struct bk_err *err)
{
	if (core->cfg.warm_pool <= 0)
		return 0;
	int e = pthread_create(&core->pool_thread, NULL, pool_main, core);
	if (e != 0)
		return bk_err_set(err, e, "cannot start the warm pool");
	core->pool_running = true;
	return 0;
}

void core__pool_stop(struct core *core)
{
	pthread_mutex_lock(&core->pool_lock);
	core->pool_quit = true;
	pthread_cond_broadcast(&core->pool_cond);
	pthread_mutex_unlock(&core->pool_lock);
	if (core->pool_running)
		pthread_join(core->pool_thread, NULL);
	core->pool_running = false;
	for (int k = CORE_POOL_PLAIN; k < CORE_POOL_KINDS; k++) {
		while (core->pool[k]) {
			struct pool_entry *e = core->pool[k];
			core->pool[k] = e->next;
			char id[32];
			snprintf(id, sizeof(id), "%s", e->sbx->id);
			core->sbx->ops->stop(e->sbx);
			core->sbx->ops->purge(core->sbx, id, NULL);
			free(e);
		}
		core->pool_count[k] = 0;
	}
}
