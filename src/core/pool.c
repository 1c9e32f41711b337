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
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core_int.h"
#include "util/metrics.h"

struct sbx *core__pool_take(struct core *core)
{
	const struct sbx_ops *ops = core->sbx->ops;
	struct sbx *found = NULL;
	pthread_mutex_lock(&core->pool_lock);
	while (core->pool && found == NULL) {
		struct pool_entry *e = core->pool;
		core->pool = e->next;
		core->pool_count--;
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

/* The limits a pool sandbox waits with: the defaults of a session. */
static struct sbx_limits pool_limits(const struct core *core)
{
	return (struct sbx_limits){
	    .memory_mb = 1024, .cpu = 0.25, .disk_mb = 1024, .pids = core->cfg.pids_max};
}

static void *pool_main(void *arg)
{
	struct core *core = arg;
	const struct sbx_ops *ops = core->sbx->ops;
	int failures = 0;
	pthread_mutex_lock(&core->pool_lock);
	while (!core->pool_quit) {
		if (core->pool_count >= core->cfg.warm_pool) {
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
		pthread_mutex_lock(&core->pool_lock);
		if (rc == 0) {
			struct pool_entry *e = calloc(1, sizeof(*e));
			if (e) {
				e->sbx = sbx;
				e->next = core->pool;
				core->pool = e;
				core->pool_count++;
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
	while (core->pool) {
		struct pool_entry *e = core->pool;
		core->pool = e->next;
		char id[32];
		snprintf(id, sizeof(id), "%s", e->sbx->id);
		core->sbx->ops->stop(e->sbx);
		core->sbx->ops->purge(core->sbx, id, NULL);
		free(e);
	}
	core->pool_count = 0;
}
