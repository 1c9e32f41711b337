/* Nodes: this node's lease in the store, renewed by a thread of its own,
 * and what the API asks of the others (who owns a session, where a new
 * one goes). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sysinfo.h>
#include <time.h>

#include "core/core_int.h"
#include "util/metrics.h"
#include "util/cleanup.h"

/* The host's available memory in MB: MemAvailable (what can be given to
 * new sessions without swapping), else sysinfo's free and buffers. */
static int64_t free_memory_mb(void)
{
	_cleanup_fclose_ FILE *f = fopen("/proc/meminfo", "re");
	char line[128];
	while (f && fgets(line, sizeof(line), f)) {
		long long kb;
		if (sscanf(line, "MemAvailable: %lld kB", &kb) == 1)
			return kb / 1024;
	}
	struct sysinfo si;
	if (sysinfo(&si) < 0)
		return 0;
	return (int64_t)((si.freeram + si.bufferram) * (uint64_t)si.mem_unit >> 20);
}

static int64_t registry_count(struct core *core)
{
	int64_t n = 0;
	pthread_mutex_lock(&core->lock);
	for (struct session *s = core->sessions; s; s = s->next)
		n++;
	pthread_mutex_unlock(&core->lock);
	return n;
}

/* Every session of the registry, each with a reference of the caller's
 * (core__session_release()); *n 0 and NULL when there is none or no
 * memory for the list. */
static struct session **registry_refs(struct core *core, size_t *n)
{
	*n = 0;
	size_t cap = (size_t)registry_count(core) + 16;
	struct session **v = calloc(cap, sizeof(*v));
	if (v == NULL)
		return NULL;
	pthread_mutex_lock(&core->lock);
	for (struct session *s = core->sessions; s && *n < cap; s = s->next) {
		s->refs++;
		v[(*n)++] = s;
	}
	pthread_mutex_unlock(&core->lock);
	return v;
}

/* After a renewal: a new lease for every running sandbox
 * (CORE_FENCE_MS). A frozen one gets its own at its thaw. */
static void fence_renew(struct core *core)
{
	const struct sbx_ops *ops = core->sbx->ops;
	if (!core__checkpoints(core) || ops->lease == NULL)
		return;
	size_t n;
	_cleanup_free_ struct session **v = registry_refs(core, &n);
	for (size_t i = 0; i < n; i++) {
		struct session *s = v[i];
		pthread_mutex_lock(&s->mu);
		if (s->sbx && __atomic_load_n(&s->state, __ATOMIC_RELAXED) == CORE_STATE_ACTIVE)
			ops->lease(s->sbx, CORE_FENCE_MS);
		pthread_mutex_unlock(&s->mu);
		core__session_release(core, s);
	}
}

/* After a lapse of this node's lease: a session a peer took over
 * meanwhile is no longer this node's. Its sandbox ended itself when its
 * lease ran out (or was frozen, and ends here); its disk and its registry
 * entry go; its snapshot and checkpoint, which the peer continues from,
 * stay. */
static void disown_taken(struct core *core)
{
	const struct sbx_ops *ops = core->sbx->ops;
	size_t n;
	_cleanup_free_ struct session **v = registry_refs(core, &n);
	for (size_t i = 0; i < n; i++) {
		struct session *s = v[i];
		struct store_session row;
		struct bk_err err = BK_ERR_INIT;
		int r = core->store->ops->session_get(core->store, s->id, NULL, &row, &err);
		bool theirs = r > 0 && row.owner[0] && strcmp(row.owner, core->cfg.node) != 0;
		if (r > 0)
			store_session_release(&row);
		if (theirs && core__session_mark_deleted(core, s)) {
			core__session_sbx_end(core, s);
			if (ops->drop_disk(core->sbx, s->id, &err) < 0)
				fprintf(stderr, "bunkerd: session %s: %s\n", s->id, err.msg);
			core__registry_unlink(core, s);
			fprintf(stderr,
				"bunkerd: session %s: taken over while this node's lease had "
				"lapsed; its sandbox and disk here removed\n",
				s->id);
		}
		core__session_release(core, s);
	}
}

static int cluster_renew(struct core *core, struct bk_err *err)
{
	struct store_node n = {0};
	snprintf(n.name, sizeof(n.name), "%s", core->cfg.node);
	snprintf(n.advertise, sizeof(n.advertise), "%s", core->cfg.advertise);
	n.started_ms = core->started_ms;
	n.renewed_ms = now_ms();
	n.lease_ms = n.renewed_ms + CORE_LEASE_MS;
	n.free_mb = free_memory_mb();
	n.awake = registry_count(core);
	return core->store->ops->node_renew(core->store, &n, err);
}

static void *cluster_main(void *arg)
{
	struct core *core = arg;
	int64_t renewed_us = mono_us();
	int wait_ms = CORE_LEASE_RENEW_MS;
	fence_renew(core);
	pthread_mutex_lock(&core->cluster_lock);
	while (!core->cluster_quit) {
		struct timespec t;
		clock_gettime(CLOCK_MONOTONIC, &t);
		t.tv_sec += wait_ms / 1000;
		t.tv_nsec += (long)(wait_ms % 1000) * 1000000L;
		if (t.tv_nsec >= 1000000000L) {
			t.tv_sec++;
			t.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&core->cluster_cond, &core->cluster_lock, &t);
		if (core->cluster_quit)
			break;
		pthread_mutex_unlock(&core->cluster_lock);
		struct bk_err err = BK_ERR_INIT;
		if (cluster_renew(core, &err) < 0) {
			fprintf(stderr, "bunkerd: cannot renew the lease of node '%s': %s\n",
				core->cfg.node, err.msg);
			/* Soon again: one more failure and the sandboxes end. */
			wait_ms = CORE_LEASE_RETRY_MS;
		} else {
			int64_t now = mono_us();
			bool lapsed = now - renewed_us > (int64_t)CORE_FENCE_MS * 1000;
			renewed_us = now;
			wait_ms = CORE_LEASE_RENEW_MS;
			if (lapsed) {
				fprintf(stderr,
					"bunkerd: node '%s' renewed its lease after a lapse; "
					"sessions taken over meanwhile leave it\n",
					core->cfg.node);
				disown_taken(core);
			}
			fence_renew(core);
		}
		pthread_mutex_lock(&core->cluster_lock);
	}
	pthread_mutex_unlock(&core->cluster_lock);
	return NULL;
}

int core__cluster_start(struct core *core, struct bk_err *err)
{
	core->started_ms = now_ms();
	if (cluster_renew(core, err) < 0) {
		bk_err_prefix(err, "cannot register node '%s'", core->cfg.node);
		return -1;
	}
	int e = pthread_create(&core->cluster_thread, NULL, cluster_main, core);
	if (e != 0)
		return bk_err_set(err, e, "cannot start the lease of node '%s'", core->cfg.node);
	core->cluster_running = true;
	return 0;
}

void core__cluster_stop(struct core *core)
{
	if (!core->cluster_running)
		return;
	pthread_mutex_lock(&core->cluster_lock);
	core->cluster_quit = true;
	pthread_cond_broadcast(&core->cluster_cond);
	pthread_mutex_unlock(&core->cluster_lock);
	pthread_join(core->cluster_thread, NULL);
	core->cluster_running = false;
	struct bk_err err = BK_ERR_INIT;
	if (core->store->ops->node_remove(core->store, core->cfg.node, &err) < 0)
		fprintf(stderr, "bunkerd: %s\n", err.msg);
}

const char *core_node_name(const struct core *core)
{
	return core->cfg.node;
}

int core_rate_count(struct core *core, const char *key_id, int64_t now_ms, int64_t window_ms,
		    int64_t *start_ms, int64_t *count, struct bk_err *err)
{
	const struct store_ops *ops = core->store->ops;
	if (ops->rate_count == NULL)
		return 0;
	if (ops->rate_count(core->store, key_id, now_ms, window_ms, start_ms, count, err) < 0)
		return -1;
	return 1;
}

int core_nodes_list(struct core *core, struct core_node **out, size_t *n, struct bk_err *err)
{
	*out = NULL;
	*n = 0;
	_cleanup_free_ struct store_node *rows = NULL;
	size_t count = 0;
	int64_t now = now_ms();
	if (core->store->ops->node_list(core->store, now, &rows, &count, err) < 0)
		return -1;
	struct core_node *v = calloc(count ? count : 1, sizeof(*v));
	if (v == NULL)
		return bk_err_set(err, ENOMEM, "cannot list nodes");
	for (size_t i = 0; i < count; i++) {
		snprintf(v[i].name, sizeof(v[i].name), "%s", rows[i].name);
		snprintf(v[i].advertise, sizeof(v[i].advertise), "%s", rows[i].advertise);
		v[i].self = strcmp(rows[i].name, core->cfg.node) == 0;
		v[i].alive = rows[i].lease_ms > now;
		v[i].started_ms = rows[i].started_ms;
		v[i].renewed_ms = rows[i].renewed_ms;
		v[i].lease_ms = rows[i].lease_ms;
		v[i].free_mb = rows[i].free_mb;
		v[i].awake = rows[i].awake;
		v[i].owned = rows[i].owned;
	}
	*out = v;
	*n = count;
	return 0;
}

bool core_node_alive(struct core *core, const char *name)
{
	_cleanup_free_ struct core_node *nodes = NULL;
	size_t n = 0;
	struct bk_err err = BK_ERR_INIT;
	/* When the store cannot say, the peer is given the benefit. */
	if (core_nodes_list(core, &nodes, &n, &err) < 0)
		return true;
	for (size_t i = 0; i < n; i++)
		if (strcmp(nodes[i].name, name) == 0)
			return nodes[i].alive;
	return false;
}

/* Makes session id, owned by node dead at epoch, this node's (a
 * compare-and-set, which of two nodes one wins) and puts it to sleep in
 * its checkpoint, from which the request that follows wakes it here: 0,
 * or -1 with err (BK_E_UNAVAILABLE when another node took it first). */
static int takeover(struct core *core, const char *id, const char *dead, int64_t epoch,
		    struct bk_err *err)
{
	const struct sbx_ops *ops = core->sbx->ops;
	int r = core->store->ops->session_claim(core->store, id, dead, epoch, err);
	if (r < 0)
		return -1;
	if (r == 0)
		return bk_err_kind(
		    err, BK_E_UNAVAILABLE,
		    "session '%s' was taken over by another node meanwhile; try again", id);
	metrics_inc(METRICS_TAKEOVERS);
	/* Asleep already (its release failed), it has its snapshot; awake,
	 * its checkpoint becomes the snapshot; without one (no activity since
	 * its create) it starts again from an empty workspace. */
	struct sbx_files_state files = ops->files_state(core->sbx, id);
	int moved = files.snapshot ? 0 : ops->checkpoint_move(core->sbx, id, true, err);
	if (moved < 0)
		return -1;
	if ((files.snapshot || moved > 0) &&
	    core->store->ops->session_set_state(core->store, id, STORE_SESSION_DEEP_SLEEP, err) < 0)
		return -1;
	fprintf(stderr,
		"bunkerd: session %s taken over from node '%s' (lease lapsed) at epoch %lld, %s\n",
		id, dead, (long long)epoch + 1,
		files.snapshot ? "asleep in its snapshot"
		: moved > 0    ? "from its last checkpoint"
			       : "with no checkpoint: its files start empty");
	return 0;
}

int core_session_locate(struct core *core, const char *key_id, const char *id,
			struct core_node *owner, struct bk_err *err)
{
	if (core->cfg.node[0] == '\0')
		return 0;
	struct store_session row;
	int r = core->store->ops->session_get(core->store, id, key_id, &row, err);
	if (r <= 0)
		return r;
	char name[64];
	snprintf(name, sizeof(name), "%s", row.owner);
	int64_t epoch = row.epoch;
	store_session_release(&row);
	if (name[0] == '\0' || strcmp(name, core->cfg.node) == 0)
		return 0;
	_cleanup_free_ struct core_node *nodes = NULL;
	size_t n = 0;
	if (core_nodes_list(core, &nodes, &n, err) < 0)
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (strcmp(nodes[i].name, name) != 0)
			continue;
		if (!nodes[i].alive)
			break;
		*owner = nodes[i];
		return 1;
	}
	if (core__checkpoints(core))
		return takeover(core, id, name, epoch, err);
	return bk_err_kind(err, BK_E_UNAVAILABLE,
			   "session '%s' is served by node '%s', whose lease has lapsed", id, name);
}

/* Whether a is a better place than b (see core_place()). */
static bool place_better(const struct core_node *a, const struct core_node *b)
{
	bool a_room = a->free_mb >= CORE_PLACE_MIN_FREE_MB;
	bool b_room = b->free_mb >= CORE_PLACE_MIN_FREE_MB;
	if (a_room != b_room)
		return a_room;
	if (a->owned != b->owned)
		return a->owned < b->owned;
	if (a->self != b->self)
		return a->self;
	if (a->free_mb != b->free_mb)
		return a->free_mb > b->free_mb;
	return strcmp(a->name, b->name) < 0;
}

int core_place(struct core *core, struct core_node *out, struct bk_err *err)
{
	if (core->cfg.node[0] == '\0')
		return 0;
	_cleanup_free_ struct core_node *nodes = NULL;
	size_t n = 0;
	if (core_nodes_list(core, &nodes, &n, err) < 0)
		return -1;
	const struct core_node *best = NULL;
	for (size_t i = 0; i < n; i++)
		if ((nodes[i].alive || nodes[i].self) &&
		    (best == NULL || place_better(&nodes[i], best)))
			best = &nodes[i];
	if (best == NULL || best->self)
		return 0;
	*out = *best;
	return 1;
}
