/* The reaper: one thread that, four times a second, removes expired
 * sessions, writes activity noted in memory to the store, moves quiet
 * sessions to idle and deep sleep, and evicts sleeping ones from the
 * registry. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "core/core_int.h"

#define REAPER_ROUND_MS 250
/* Expired records read from the store per round: the rest wait a round. */
#define EXPIRED_PER_ROUND 64
/* Activity recorded in memory only (preview traffic) reaches the store at
 * most this often per session. */
#define STORE_ACTIVITY_EVERY_MS 1000

/* Deletes s (a reference of the caller's) unless another thread already
 * does: -1 when its record could not be deleted (s kept whole, for the
 * next round). */
static int expire(struct core *core, struct session *s)
{
	bool kept = false;
	if (core__session_mark_deleted(core, s)) {
		struct bk_err err = BK_ERR_INIT;
		if (core__session_destroy(core, s, &kept, &err) < 0)
			fprintf(stderr, "bunkerd: expiring session %s: %s%s\n", s->id, err.msg,
				kept ? " (tried again next round)" : "");
		/* Its record kept: the next round finds it due again. */
		if (kept)
			core__session_unmark_deleted(core, s);
		else
			core__registry_unlink(core, s);
	}
	core__session_release(core, s);
	return kept ? -1 : 0;
}

static bool is_due(struct session *s, void *now)
{
	int64_t t = *(int64_t *)now;
	return s->expires_ms <= t ||
	       (s->vm == CORE_VM_RUNNING && s->vm_ends_ms > 0 && s->vm_ends_ms <= t);
}

/* Ends s's VM (its lifetime is over), a reference of the caller's: -1
 * when it could not (the next round tries again). */
static int end_vm(struct core *core, struct session *s)
{
	pthread_rwlock_wrlock(&s->rw);
	struct bk_err err = BK_ERR_INIT;
	int rc = 0;
	if (!s->deleted && s->vm == CORE_VM_RUNNING && core__vm_end_locked(core, s, &err) < 0) {
		fprintf(stderr, "bunkerd: ending the VM of %s: %s\n", s->id, err.msg);
		rc = -1;
	}
	pthread_rwlock_unlock(&s->rw);
	core__registry_evict(core, s);
	core__session_release(core, s);
	return rc;
}

/* Expired sessions, and VMs whose lifetime is over, in the registry, one
 * at a time; the round ends at the first that fails (the store
 * unreachable: it would be picked again at once). */
static void reap_due_awake(struct core *core)
{
	for (;;) {
		int64_t now = now_ms();
		struct session *s = core__registry_pick(core, is_due, &now);
		if (s == NULL)
			return;
		if ((s->expires_ms <= now ? expire(core, s) : end_vm(core, s)) < 0)
			return;
	}
}

/* Sessions due that the store knows of (the sleeping ones, which the
 * registry does not hold): each is loaded, then deleted or its VM ended
 * like any other. */
static void reap_due_asleep(struct core *core)
{
	char ids[EXPIRED_PER_ROUND][32];
	size_t n = 0;
	struct bk_err err = BK_ERR_INIT;
	if (core->store->ops->session_due(core->store, now_ms(), ids, EXPIRED_PER_ROUND, &n, &err) <
	    0) {
		fprintf(stderr, "bunkerd: %s\n", err.msg);
		return;
	}
	for (size_t i = 0; i < n; i++) {
		struct store_session row;
		int r = core->store->ops->session_get(core->store, ids[i], NULL, &row, &err);
		if (r <= 0)
			continue;
		struct session *s = core__session_new(&row);
		store_session_release(&row);
		if (s == NULL)
			continue;
		/* Not in the registry and expired: core__session_acquire()
		 * would refuse it, so it is linked here for its delete. */
		pthread_mutex_lock(&core->load_lock);
		pthread_mutex_lock(&core->lock);
		bool known = false;
		for (struct session *it = core->sessions; it && !known; it = it->next)
			known = strcmp(it->id, s->id) == 0;
		pthread_mutex_unlock(&core->lock);
		if (!known) {
			s->refs++;
			core__registry_link(core, s);
		}
		pthread_mutex_unlock(&core->load_lock);
		if (known) {
			/* The registry holds it: the awake round deals with it. */
			core__session_release(core, s);
			continue;
		}
		if ((s->expires_ms <= now_ms() ? expire(core, s) : end_vm(core, s)) < 0)
			return;
	}
}

/* A network not counted for STORE_ACTIVITY_EVERY_MS. */
static bool net_due(struct session *s)
{
	int64_t counted = __atomic_load_n(&s->net_counted_ms, __ATOMIC_RELAXED);
	return counted > 0 && now_ms() - counted >= STORE_ACTIVITY_EVERY_MS;
}

/* Activity ahead of the store by STORE_ACTIVITY_EVERY_MS, usage that the
 * store has not seen, or a network to count. */
static bool flush_due(struct session *s, void *unused)
{
	int64_t a = __atomic_load_n(&s->last_active_ms, __ATOMIC_RELAXED);
	return a - __atomic_load_n(&s->stored_active_ms, __ATOMIC_RELAXED) >=
		   STORE_ACTIVITY_EVERY_MS ||
	       __atomic_load_n(&s->pending_execs, __ATOMIC_RELAXED) > 0 || net_due(s);
}

void core__session_store_activity(struct core *core)
{
	/* One round over the registry at most: a session whose write fails
	 * stays due, and is tried again next round. */
	int64_t round = 0, n = 0;
	pthread_mutex_lock(&core->lock);
	for (struct session *s = core->sessions; s; s = s->next)
		n++;
	pthread_mutex_unlock(&core->lock);
	while (round++ < n) {
		struct session *due = core__registry_pick(core, flush_due, NULL);
		if (due == NULL)
			return;
		int rc = core__session_flush(core, due);
		core__session_release(core, due);
		if (rc < 0)
			return;
	}
}

static bool left_asleep(struct session *s, void *unused)
{
	return s->refs == 1 && s->sbx == NULL &&
	       __atomic_load_n(&s->state, __ATOMIC_RELAXED) == CORE_STATE_DEEP_SLEEP;
}

/* Deep-sleeping sessions that a request loaded and left: evicted. */
static void evict_sleepers(struct core *core)
{
	for (;;) {
		struct session *s = core__registry_pick(core, left_asleep, NULL);
		if (s == NULL)
			return;
		core__registry_evict(core, s);
		pthread_mutex_lock(&core->lock);
		bool stayed = s->linked;
		pthread_mutex_unlock(&core->lock);
		core__session_release(core, s);
		if (stayed)
			return; /* could not be written: the next round tries again */
	}
}

static void *reaper_main(void *arg)
{
	struct core *core = arg;
	pthread_mutex_lock(&core->reaper_lock);
	while (!core->stopping) {
		pthread_mutex_unlock(&core->reaper_lock);
		reap_due_awake(core);
		reap_due_asleep(core);
		core__undo_retry(core);
		core__session_store_activity(core);
		core__lifecycle_tick(core);
		evict_sleepers(core);
		pthread_mutex_lock(&core->reaper_lock);
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_nsec += REAPER_ROUND_MS * 1000 * 1000;
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

int core__reaper_start(struct core *core, struct bk_err *err)
{
	int e = pthread_create(&core->reaper, NULL, reaper_main, core);
	if (e != 0)
		return bk_err_set(err, e, "cannot start the reaper");
	core->reaper_running = true;
	return 0;
}

void core__reaper_stop(struct core *core)
{
	if (!core->reaper_running)
		return;
	pthread_mutex_lock(&core->reaper_lock);
	core->stopping = true;
	pthread_cond_broadcast(&core->reaper_cond);
	pthread_mutex_unlock(&core->reaper_lock);
	pthread_join(core->reaper, NULL);
	core->reaper_running = false;
}
