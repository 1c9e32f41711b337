/* The session lifecycle: active -> idle -> deep sleep, and back on any
 * request.
 *
 *   active      the sandbox runs.
 *   idle        its processes are frozen: memory kept, no CPU; a request
 *               thaws it in well under a millisecond.
 *   deep sleep  its files saved (the backend's files_save: a snapshot),
 *               then its processes ended and its disk released: it costs
 *               nothing but the snapshot. A request restores the files
 *               into a new sandbox.
 *
 * Every transition is written to the store before it is carried out, and
 * each step leaves something that core__lifecycle_recover() can finish or
 * undo after a crash at any point:
 *   going to deep sleep: state DEEP_SLEEP, freeze the sandbox (its
 *     processes cannot change a file while they are frozen), save files
 *     (the snapshot appears atomically), stop the sandbox, release disk.
 *     A save that fails (no room for the snapshot, a tree it cannot
 *     hold) thaws the sandbox and leaves the session active, processes
 *     and all. A crash before the snapshot exists finds the disk and no
 *     snapshot: active again. After: the snapshot is the truth and the
 *     disk, if any, is dropped.
 *   waking from deep sleep: restore into a new disk, start, state ACTIVE,
 *     remove snapshot. A crash before ACTIVE finds a snapshot and a disk:
 *     the disk is dropped and the restore done again. After: the disk is
 *     the truth and the snapshot is removed.
 *
 * A session of the InstaVM dialect may hold no sandbox at all ("no VM":
 * before its first use, and after its VM was killed or its lifetime
 * ended): it is then recorded in deep sleep with no files, and spawning
 * its VM is recording it RUNNING, then the wake above, which finds no
 * snapshot and starts it fresh and empty. Ending a VM records it
 * TERMINATED first, then stops the sandbox and drops its files: a crash
 * in between leaves files of a VM that has ended, which start-up drops.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>

#include "core/core_int.h"
#include "util/metrics.h"

static int set_state(struct core *core, struct session *s, enum core_state state,
		     struct bk_err *err)
{
	if (core->store->ops->session_set_state(core->store, s->id, (enum store_session_state)state,
						err) < 0)
		return -1;
	__atomic_store_n(&s->state, state, __ATOMIC_RELAXED);
	return 0;
}

/* Counted as activity: the next try of a transition that failed waits a
 * whole period. */
static void retry_later(struct session *s)
{
	__atomic_store_n(&s->last_active_ms, now_ms(), __ATOMIC_RELAXED);
}

void core__session_sbx_drop(struct core *core, struct session *s)
{
	pthread_mutex_lock(&s->mu);
	/* The interface goes with the sandbox, and its counters with it. */
	core__session_net_count_locked(core, s);
	struct sbx *sbx = s->sbx;
	s->sbx = NULL;
	pthread_mutex_unlock(&s->mu);
	if (sbx)
		core->sbx->ops->stop(sbx);
}

static int sandbox_start(struct core *core, struct session *s, struct bk_err *err)
{
	struct sbx_limits lim = core__session_sbx_limits(core, s);
	struct sbx *fresh;
	int64_t t0 = mono_us();
	if (core->sbx->ops->start(core->sbx, s->id, &lim, &fresh, err) < 0)
		return -1;
	metrics_observe(METRICS_SANDBOX_START_SECONDS, (double)(mono_us() - t0) / 1e6);
	pthread_mutex_lock(&s->mu);
	core__session_sbx_attach_locked(core, s, fresh);
	int r = core__session_net_apply_locked(core, s, err);
	if (r < 0)
		s->sbx = NULL;
	pthread_mutex_unlock(&s->mu);
	if (r < 0)
		core->sbx->ops->stop(fresh);
	return r;
}

/* Before a wake: a session that no node owns (its node released it at
 * its deep sleep) becomes this node's by a compare-and-set on owner and
 * epoch, so that of two nodes woken for it at once one restores it; one
 * that another node owns is not woken here. */
static int wake_claim(struct core *core, struct session *s, struct bk_err *err)
{
	if (core->cfg.node[0] == '\0')
		return 0;
	struct store_session row;
	int r = core->store->ops->session_get(core->store, s->id, NULL, &row, err);
	if (r <= 0)
		return r < 0 ? -1
			     : bk_err_kind(err, BK_E_NOT_FOUND, "session '%s' not found",
					   s->public_id);
	char owner[64];
	snprintf(owner, sizeof(owner), "%s", row.owner);
	int64_t epoch = row.epoch;
	store_session_release(&row);
	if (strcmp(owner, core->cfg.node) == 0)
		return 0;
	if (owner[0] != '\0')
		return bk_err_kind(err, BK_E_UNAVAILABLE, "session '%s' is served by node '%s'",
				   s->public_id, owner);
	/* Released: its snapshot is the truth, and must be here too. */
	if (epoch > 0 && !core->sbx->ops->files_state(core->sbx, s->id).snapshot)
		return bk_err_kind(err, BK_E_UNAVAILABLE,
				   "session '%s' sleeps in a snapshot this node cannot reach "
				   "(is --snapshot-dir shared?)",
				   s->public_id);
	r = core->store->ops->session_claim(core->store, s->id, "", epoch, err);
	if (r < 0)
		return -1;
	if (r == 0)
		return bk_err_kind(err, BK_E_UNAVAILABLE,
				   "session '%s' was claimed by another node meanwhile; try again",
				   s->public_id);
	fprintf(stderr, "bunkerd: session %s claimed at epoch %lld\n", s->id, (long long)epoch + 1);
	return 0;
}

bool core__checkpoints(const struct core *core)
{
	return core->cfg.snapshots_shared && core->cfg.node[0] && core->cfg.checkpoint_s > 0 &&
	       core->sbx->ops->files_checkpoint && core->sbx->ops->checkpoint_move;
}

static int wake_from_deep_sleep(struct core *core, struct session *s, struct bk_err *err)
{
	const struct sbx_ops *ops = core->sbx->ops;
	if (wake_claim(core, s, err) < 0)
		return -1;
	int64_t t0 = mono_us();
	struct sbx_limits lim = core__session_sbx_limits(core, s);
	if (ops->files_restore(core->sbx, s->id, lim.disk_mb, err) < 0) {
		bk_err_prefix(err, "cannot wake session %s", s->id);
		return -1;
	}
	if (sandbox_start(core, s, err) < 0 || set_state(core, s, CORE_STATE_ACTIVE, err) < 0) {
		/* Still asleep, its snapshot the truth: the restored disk would
		 * only hold memory until the next try restores it again. */
		core__session_sbx_drop(core, s);
		ops->drop_disk(core->sbx, s->id, NULL);
		bk_err_prefix(err, "cannot wake session %s", s->id);
		return -1;
	}
	/* Its files are the snapshot's until they change: with checkpoints,
	 * it is the first one (a node that takes the session over continues
	 * from it). */
	struct bk_err cerr = BK_ERR_INIT;
	if (!core__checkpoints(core))
		ops->drop_snapshot(core->sbx, s->id);
	else if (ops->checkpoint_move(core->sbx, s->id, false, &cerr) < 0)
		fprintf(stderr, "bunkerd: session %s: %s\n", s->id, cerr.msg);
	else
		__atomic_store_n(&s->checkpoint_ms, now_ms(), __ATOMIC_RELAXED);
	metrics_observe(METRICS_WAKE_DEEP_SECONDS, (double)(mono_us() - t0) / 1e6);
	fprintf(stderr, "bunkerd: session %s woke from deep sleep in %.1f ms\n", s->id,
		(double)(mono_us() - t0) / 1000.0);
	return 0;
}

int core__lifecycle_wake_locked(struct core *core, struct session *s, struct bk_err *err)
{
	const struct sbx_ops *ops = core->sbx->ops;
	if (s->state == CORE_STATE_IDLE && s->sbx && ops->alive(s->sbx)) {
		/* Thawed first: a session recorded active must be running. */
		int64_t t0 = mono_us();
		if (ops->freeze(s->sbx, false, err) < 0 ||
		    set_state(core, s, CORE_STATE_ACTIVE, err) < 0)
			return -1;
		metrics_observe(METRICS_WAKE_IDLE_SECONDS, (double)(mono_us() - t0) / 1e6);
		return 0;
	}
	if (s->sbx && !ops->alive(s->sbx))
		core__session_sbx_drop(core, s);
	if (s->state == CORE_STATE_DEEP_SLEEP)
		return wake_from_deep_sleep(core, s, err);
	if (s->state != CORE_STATE_ACTIVE && set_state(core, s, CORE_STATE_ACTIVE, err) < 0)
		return -1;
	return s->sbx ? 0 : sandbox_start(core, s, err);
}

/* A deep sleep that did not happen: the session runs on as it did,
 * thawed and active, and waits a whole period before the next try. */
static void deep_sleep_undo(struct core *core, struct session *s)
{
	const struct sbx_ops *ops = core->sbx->ops;
	struct bk_err err = BK_ERR_INIT;
	enum core_state back = CORE_STATE_ACTIVE;
	if (s->sbx && ops->freeze(s->sbx, false, &err) < 0) {
		/* Still frozen: idle, which the next request thaws. */
		fprintf(stderr, "bunkerd: session %s: %s\n", s->id, err.msg);
		back = CORE_STATE_IDLE;
	}
	bk_err_clear(&err);
	if (set_state(core, s, back, &err) < 0) {
		/* The store still says deep sleep, which the next start settles
		 * (a disk and no snapshot: active); this daemon must not
		 * believe it, or a wake would restore over the live disk. */
		fprintf(stderr, "bunkerd: session %s: %s\n", s->id, err.msg);
		__atomic_store_n(&s->state, back, __ATOMIC_RELAXED);
	}
	retry_later(s);
	metrics_inc(METRICS_DEEP_SLEEP_FAILURES);
}

int core__lifecycle_deep_sleep_locked(struct core *core, struct session *s, struct bk_err *err)
{
	if (s->state == CORE_STATE_DEEP_SLEEP)
		return 0;
	const struct sbx_ops *ops = core->sbx->ops;
	/* A sandbox that died has no process left to keep. */
	if (s->sbx && !ops->alive(s->sbx))
		core__session_sbx_drop(core, s);
	if (set_state(core, s, CORE_STATE_DEEP_SLEEP, err) < 0)
		return -1;
	/* Without a disk (its host restarted) there is nothing to save: it
	 * wakes with a fresh one. */
	if (!ops->files_state(core->sbx, s->id).disk) {
		core__session_sbx_drop(core, s);
		return 0;
	}
	struct sbx_save_stats st = {0};
	int64_t t0 = mono_us();
	/* The processes are frozen while their files are saved, and ended
	 * only once the snapshot exists: a save that fails leaves them
	 * running. */
	if ((s->sbx && ops->freeze(s->sbx, true, err) < 0) ||
	    ops->files_save(core->sbx, s->id, &st, err) < 0) {
		deep_sleep_undo(core, s);
		bk_err_prefix(err, "cannot put session %s to deep sleep (it stays awake)", s->id);
		return -1;
	}
	double saved_ms = (double)(mono_us() - t0) / 1000.0;
	core__session_sbx_drop(core, s);
	/* Its usage while this node still owns it: a released session's
	 * record is no longer this node's to write. */
	core__session_flush(core, s);
	/* The snapshot is newer than any checkpoint. */
	if (ops->drop_checkpoint)
		ops->drop_checkpoint(core->sbx, s->id);
	/* Saved: a disk that cannot be released now is dropped at the next
	 * start (the snapshot is the truth once it exists). */
	struct bk_err derr = BK_ERR_INIT;
	if (ops->drop_disk(core->sbx, s->id, &derr) < 0)
		fprintf(stderr, "bunkerd: session %s: %s\n", s->id, derr.msg);
	/* With snapshots every node reaches, the session is no node's while
	 * it sleeps: the next request, wherever it arrives, wakes it. A
	 * release that fails keeps it this node's, which is as safe. */
	if (core->cfg.snapshots_shared && core->cfg.node[0] &&
	    core->store->ops->session_release(core->store, s->id, &derr) < 0)
		fprintf(stderr, "bunkerd: session %s: %s\n", s->id, derr.msg);
	fprintf(stderr,
		"bunkerd: session %s in deep sleep: %lld files, %lld bytes -> %lld in %.1f ms "
		"(frozen for the save %.1f ms; %lld sockets not saved)\n",
		s->id, (long long)st.files, (long long)st.bytes_in, (long long)st.bytes_out,
		(double)(mono_us() - t0) / 1000.0, saved_ms, (long long)st.skipped);
	return 0;
}

/* With s->rw held exclusively. */
static void go_idle_locked(struct core *core, struct session *s)
{
	const struct sbx_ops *ops = core->sbx->ops;
	struct bk_err err = BK_ERR_INIT;
	if (set_state(core, s, CORE_STATE_IDLE, &err) < 0 ||
	    (s->sbx && ops->freeze(s->sbx, true, &err) < 0)) {
		fprintf(stderr, "bunkerd: session %s: cannot go idle: %s\n", s->id, err.msg);
		struct bk_err e2 = BK_ERR_INIT;
		if (s->sbx)
			ops->freeze(s->sbx, false, &e2);
		set_state(core, s, CORE_STATE_ACTIVE, &e2);
		retry_later(s);
	}
}

struct tick {
	int64_t now, idle_ms, deep_ms, checkpoint_ms;
};

/* Whether s is due for a transition: deep sleep after deep_ms of quiet
 * (from active or idle), idle after idle_ms (from active). */
static bool due(struct session *s, void *arg)
{
	const struct tick *t = arg;
	int64_t quiet = t->now - __atomic_load_n(&s->last_active_ms, __ATOMIC_RELAXED);
	enum core_state st = __atomic_load_n(&s->state, __ATOMIC_RELAXED);
	return (st != CORE_STATE_DEEP_SLEEP && quiet >= t->deep_ms) ||
	       (st == CORE_STATE_ACTIVE && quiet >= t->idle_ms);
}

/* Whether s is due for a checkpoint: awake with a sandbox, active since
 * its last one, which is checkpoint_s old. */
static bool checkpoint_due(struct session *s, void *arg)
{
	const struct tick *t = arg;
	int64_t last = __atomic_load_n(&s->checkpoint_ms, __ATOMIC_RELAXED);
	return __atomic_load_n(&s->state, __ATOMIC_RELAXED) != CORE_STATE_DEEP_SLEEP &&
	       __atomic_load_n(&s->last_active_ms, __ATOMIC_RELAXED) > last &&
	       t->now - last >= t->checkpoint_ms;
}

/* With s->rw held exclusively: its files saved to its checkpoint, its
 * processes frozen meanwhile (an idle one is already). */
static void checkpoint_locked(struct core *core, struct session *s, int64_t now)
{
	const struct sbx_ops *ops = core->sbx->ops;
	struct bk_err err = BK_ERR_INIT;
	/* Without a disk (no sandbox ran since the wake) nothing changed. */
	if (s->sbx == NULL || !ops->files_state(core->sbx, s->id).disk) {
		s->checkpoint_ms = now;
		return;
	}
	/* A node that was taken for dead writes no checkpoint over the one
	 * its successor continues from. */
	struct store_session row;
	int owned = core->store->ops->session_get(core->store, s->id, NULL, &row, &err);
	if (owned > 0) {
		owned = strcmp(row.owner, core->cfg.node) == 0;
		store_session_release(&row);
	}
	if (owned <= 0) {
		fprintf(stderr, "bunkerd: session %s: no checkpoint: %s\n", s->id,
			owned < 0 ? err.msg : "another node owns it now");
		s->checkpoint_ms = now;
		return;
	}
	bool thaw = s->state == CORE_STATE_ACTIVE;
	struct sbx_save_stats st = {0};
	int64_t t0 = mono_us();
	int r = thaw && ops->freeze(s->sbx, true, &err) < 0
		    ? -1
		    : ops->files_checkpoint(core->sbx, s->id, &st, &err);
	double frozen_ms = (double)(mono_us() - t0) / 1000.0;
	struct bk_err terr = BK_ERR_INIT;
	if (thaw && ops->freeze(s->sbx, false, &terr) < 0)
		fprintf(stderr, "bunkerd: session %s: %s\n", s->id, terr.msg);
	if (r < 0) {
		/* Tried again after a whole period; the last one stays. */
		fprintf(stderr, "bunkerd: session %s: no checkpoint: %s\n", s->id, err.msg);
		metrics_inc(METRICS_CHECKPOINT_FAILURES);
		s->checkpoint_ms = now;
		return;
	}
	s->checkpoint_ms = now;
	metrics_observe(METRICS_CHECKPOINT_SECONDS, frozen_ms / 1000.0);
	fprintf(stderr, "bunkerd: session %s checkpointed: %lld files, %lld bytes in %.1f ms\n",
		s->id, (long long)st.files, (long long)st.bytes_out, frozen_ms);
}

/* Checkpoints the sessions due, one at a time, for at most a fifth of a
 * second a tick (the reaper has expiries and sleeps to see to as well);
 * a busy one waits for the next tick. */
static void checkpoint_tick(struct core *core, struct tick *t)
{
	int64_t until = mono_us() + 200 * 1000;
	while (mono_us() < until) {
		struct session *s = core__registry_pick(core, checkpoint_due, t);
		if (s == NULL)
			return;
		bool done = false;
		if (pthread_rwlock_trywrlock(&s->rw) == 0) {
			if (!s->deleted && checkpoint_due(s, t)) {
				checkpoint_locked(core, s, t->now);
				done = true;
			}
			pthread_rwlock_unlock(&s->rw);
		}
		core__session_release(core, s);
		if (!done)
			return;
	}
}

void core__lifecycle_tick(struct core *core)
{
	struct tick t = {now_ms(), (int64_t)core->cfg.idle_after_s * 1000,
			 (int64_t)core->cfg.deep_sleep_after_s * 1000,
			 (int64_t)core->cfg.checkpoint_s * 1000};
	if (core__checkpoints(core))
		checkpoint_tick(core, &t);
	for (;;) {
		/* One due session at a time. */
		struct session *s = core__registry_pick(core, due, &t);
		if (s == NULL)
			return;
		/* Busy (an execution, a file operation, a wake, an open preview
		 * connection) means active: that counts as activity now, so the
		 * next due session is looked at and this one waits a whole
		 * period again (a preview connection may stay open for hours). */
		if (pthread_rwlock_trywrlock(&s->rw) != 0) {
			core__session_touch(core, s);
			core__session_release(core, s);
			continue;
		}
		bool moved = false;
		if (!s->deleted && due(s, &t)) {
			struct bk_err err = BK_ERR_INIT;
			moved = true;
			if (s->state != CORE_STATE_DEEP_SLEEP &&
			    t.now - s->last_active_ms >= t.deep_ms) {
				if (core__lifecycle_deep_sleep_locked(core, s, &err) < 0)
					fprintf(stderr, "bunkerd: %s\n", err.msg);
			} else {
				go_idle_locked(core, s);
			}
		}
		pthread_rwlock_unlock(&s->rw);
		/* A sleeping session needs no memory of ours: the store has it. */
		core__registry_evict(core, s);
		core__session_release(core, s);
		if (!moved)
			return;
	}
}

int core__vm_spawn_locked(struct core *core, const struct core_key *key, struct session *s,
			  struct bk_err *err)
{
	/* Under the create lock, as a create: the cap counts VMs that run,
	 * and the store takes it in the same transaction as the spawn. */
	pthread_mutex_lock(&core->create_lock);
	int64_t now = now_ms();
	int64_t ends = s->vm_lifetime_s > 0 ? now + s->vm_lifetime_s * 1000 : 0;
	struct store_cap cap = {.max = key->limits.max_sessions, .holding = true, .now_ms = now};
	int rc = core->store->ops->session_set_vm(core->store, s->id, STORE_VM_RUNNING, now, ends,
						  STORE_SESSION_DEEP_SLEEP, &cap, err);
	if (rc < 0 && err->kind == BK_E_LIMIT)
		rc = bk_err_kind(err, BK_E_LIMIT,
				 "concurrent session limit of %d reached on plan '%s': a session "
				 "counts while it holds a VM",
				 key->limits.max_sessions, key->plan);
	pthread_mutex_unlock(&core->create_lock);
	if (rc < 0)
		return -1;
	s->vm = CORE_VM_RUNNING;
	s->vm_spawned_ms = now;
	s->vm_ends_ms = ends;
	__atomic_store_n(&s->state, CORE_STATE_DEEP_SLEEP, __ATOMIC_RELAXED);
	/* A new VM has no files to restore: a sandbox of the warm pool is
	 * one, as for a create. Recorded asleep until then, so that a crash
	 * in between leaves a VM that wakes empty. */
	if (core__pool_adopt(core, s) && set_state(core, s, CORE_STATE_ACTIVE, err) < 0) {
		core__session_sbx_drop(core, s);
		core->sbx->ops->purge(core->sbx, s->id, NULL);
		return -1;
	}
	return 0;
}

int core__vm_end_locked(struct core *core, struct session *s, struct bk_err *err)
{
	const struct sbx_ops *ops = core->sbx->ops;
	int64_t now = now_ms();
	if (core->store->ops->session_set_vm(core->store, s->id, STORE_VM_TERMINATED,
					     s->vm_spawned_ms, s->vm_ends_ms,
					     STORE_SESSION_DEEP_SLEEP, NULL, err) < 0)
		return -1;
	int64_t ran = s->vm_spawned_ms > 0 && now > s->vm_spawned_ms ? now - s->vm_spawned_ms : 0;
	struct bk_err uerr = BK_ERR_INIT;
	struct store_usage used = {.vm_runtime_ms = ran};
	if (core->store->ops->session_touch(core->store, s->id, 0, &used, &uerr) < 0)
		fprintf(stderr, "bunkerd: session %s: %s\n", s->id, uerr.msg);
	s->vm = CORE_VM_TERMINATED;
	__atomic_store_n(&s->state, CORE_STATE_DEEP_SLEEP, __ATOMIC_RELAXED);
	core__session_sbx_drop(core, s);
	/* Its files go with it: the next VM starts empty. */
	if (ops->purge(core->sbx, s->id, err) < 0) {
		bk_err_prefix(err, "session %s: the VM ended, but its files were not removed",
			      s->id);
		return -1;
	}
	return 0;
}

void core__lifecycle_recover(struct core *core, struct session *s)
{
	const struct sbx_ops *ops = core->sbx->ops;
	struct sbx_files_state files = ops->files_state(core->sbx, s->id);
	struct bk_err err = BK_ERR_INIT;
	enum core_state want;
	if (s->vm != CORE_VM_RUNNING) {
		/* No VM: whatever is left of one that ended goes. */
		if (files.disk || files.snapshot)
			ops->purge(core->sbx, s->id, NULL);
		want = CORE_STATE_DEEP_SLEEP;
	} else if (s->state == CORE_STATE_DEEP_SLEEP) {
		/* Saved: the snapshot is the truth. Not yet: the disk is. */
		want = files.snapshot ? CORE_STATE_DEEP_SLEEP : CORE_STATE_ACTIVE;
		if (files.snapshot && files.disk)
			ops->drop_disk(core->sbx, s->id, NULL);
	} else if (files.disk) {
		/* Active or idle: the processes died with the old daemon; the
		 * files are on the disk. A snapshot beside it is a wake that
		 * did not finish removing it. */
		want = CORE_STATE_ACTIVE;
		if (files.snapshot)
			ops->drop_snapshot(core->sbx, s->id);
	} else {
		/* No disk (the host restarted): a snapshot brings the files
		 * back, or else a checkpoint, which becomes the snapshot it
		 * sleeps in; without either they are lost, and a new disk
		 * starts. */
		struct bk_err cerr = BK_ERR_INIT;
		if (!files.snapshot && files.checkpoint && ops->checkpoint_move &&
		    ops->checkpoint_move(core->sbx, s->id, true, &cerr) > 0)
			files.snapshot = true;
		want = files.snapshot ? CORE_STATE_DEEP_SLEEP : CORE_STATE_ACTIVE;
		if (!files.snapshot)
			fprintf(stderr, "bunkerd: session %s: its files did not survive\n", s->id);
	}
	if (want != s->state && set_state(core, s, want, &err) < 0)
		fprintf(stderr, "bunkerd: session %s: %s\n", s->id, err.msg);
	s->state = want;
}
