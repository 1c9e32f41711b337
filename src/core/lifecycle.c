/* The session lifecycle: active -> idle -> deep sleep, and back on any
 * request.
 *
 *   active      the sandbox runs.
 *   idle        its processes are frozen (cgroup freezer): memory kept, no
 *               CPU; a request thaws it in well under a millisecond.
 *   deep sleep  its processes are ended and its writable layer saved to a
 *               snapshot (snapshot/), its disk and cgroups released: it
 *               costs nothing but the snapshot file. A request restores the
 *               files into a new sandbox.
 *
 * Every transition is written to the store before it is carried out, and
 * each step leaves something that lifecycle_recover() can finish or undo
 * after a crash at any point:
 *   going to deep sleep: state DEEP_SLEEP, stop sandbox, save snapshot
 *     (appears atomically), release disk. A crash before the snapshot
 *     exists finds the disk and no snapshot: active again. After: the
 *     snapshot is the truth and the disk, if any, is dropped.
 *   waking from deep sleep: restore into a new disk, start, state ACTIVE,
 *     remove snapshot. A crash before ACTIVE finds a snapshot and a disk:
 *     the disk is dropped and the restore done again. After: the disk is
 *     the truth and the snapshot is removed.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "core/core_int.h"
#include "snapshot/snapshot.h"
#include "util/metrics.h"

void lifecycle_snapshot_path(const struct core *core, const char *id, char *out, size_t len)
{
	snprintf(out, len, "%s/snapshots/%s.tar.zst", core->cfg.data_dir, id);
}

/* The workspace's file count rides on the snapshot as an extended
 * attribute: GET /sessions/{id} reports it without opening the archive. */
#define FILES_XATTR "user.bunker.files"

int64_t lifecycle_snapshot_files(const struct core *core, const char *id)
{
	char snap[700], text[32];
	lifecycle_snapshot_path(core, id, snap, sizeof(snap));
	ssize_t n = getxattr(snap, FILES_XATTR, text, sizeof(text) - 1);
	if (n <= 0)
		return 0;
	text[n] = '\0';
	return strtoll(text, NULL, 10);
}

static int set_state(struct core *core, struct session *s, enum core_state state,
		     struct bk_err *err)
{
	if (store_session_set_state(core->store, s->id, (enum store_session_state)state, err) < 0)
		return -1;
	s->state = state;
	return 0;
}

static void sandbox_drop(struct session *s)
{
	pthread_mutex_lock(&s->mu);
	struct sbx *sbx = s->sbx;
	s->sbx = NULL;
	pthread_mutex_unlock(&s->mu);
	sbx_stop(sbx);
}

static int sandbox_start(struct core *core, struct session *s, struct bk_err *err)
{
	struct sbx_limits lim = session_sbx_limits(core, s);
	struct sbx *fresh;
	int64_t t0 = mono_us();
	if (sbx_start(&core->sbx, s->id, s->slot, &lim, &fresh, err) < 0)
		return -1;
	metrics_observe(METRICS_SANDBOX_START_SECONDS, (double)(mono_us() - t0) / 1e6);
	pthread_mutex_lock(&s->mu);
	s->sbx = fresh;
	pthread_mutex_unlock(&s->mu);
	return 0;
}

/* Refills a released disk from the session's snapshot. */
static int restore_disk(struct core *core, struct session *s, struct bk_err *err)
{
	char snap[700], layer[700];
	lifecycle_snapshot_path(core, s->id, snap, sizeof(snap));
	if (sbx_disk_exists(&core->sbx, s->id) && sbx_disk_release(&core->sbx, s->id, err) < 0)
		return -1;
	if (access(snap, F_OK) < 0)
		return 0; /* slept with nothing to save: a fresh disk comes */
	struct sbx_limits lim = session_sbx_limits(core, s);
	if (sbx_disk_create_empty(&core->sbx, s->id, lim.disk_mb, err) < 0)
		return -1;
	sbx_disk_layer(&core->sbx, s->id, layer, sizeof(layer));
	if (snapshot_restore(snap, layer, err) < 0) {
		sbx_disk_release(&core->sbx, s->id, NULL);
		return -1;
	}
	return 0;
}

int lifecycle_wake_locked(struct core *core, struct session *s, struct bk_err *err)
{
	if (s->state == CORE_STATE_IDLE && s->sbx && sbx_alive(s->sbx)) {
		/* Thawed first: a session recorded active must be running. */
		int64_t t0 = mono_us();
		if (sbx_freeze(s->sbx, false, err) < 0 ||
		    set_state(core, s, CORE_STATE_ACTIVE, err) < 0)
			return -1;
		metrics_observe(METRICS_WAKE_IDLE_SECONDS, (double)(mono_us() - t0) / 1e6);
		return 0;
	}
	if (s->sbx && !sbx_alive(s->sbx))
		sandbox_drop(s);
	if (s->state == CORE_STATE_DEEP_SLEEP) {
		int64_t t0 = mono_us();
		if (restore_disk(core, s, err) < 0 || sandbox_start(core, s, err) < 0 ||
		    set_state(core, s, CORE_STATE_ACTIVE, err) < 0) {
			bk_err_prefix(err, "cannot wake session %s", s->id);
			return -1;
		}
		char snap[700];
		lifecycle_snapshot_path(core, s->id, snap, sizeof(snap));
		unlink(snap);
		metrics_observe(METRICS_WAKE_DEEP_SECONDS, (double)(mono_us() - t0) / 1e6);
		fprintf(stderr, "bunkerd: session %s woke from deep sleep in %.1f ms\n", s->id,
			(double)(mono_us() - t0) / 1000.0);
		return 0;
	}
	if (s->state != CORE_STATE_ACTIVE && set_state(core, s, CORE_STATE_ACTIVE, err) < 0)
		return -1;
	return s->sbx ? 0 : sandbox_start(core, s, err);
}

int lifecycle_deep_sleep_locked(struct core *core, struct session *s, struct bk_err *err)
{
	if (s->state == CORE_STATE_DEEP_SLEEP)
		return 0;
	char snap[700], layer[700];
	lifecycle_snapshot_path(core, s->id, snap, sizeof(snap));
	sbx_disk_layer(&core->sbx, s->id, layer, sizeof(layer));
	if (set_state(core, s, CORE_STATE_DEEP_SLEEP, err) < 0)
		return -1;
	sandbox_drop(s);
	/* Its cgroups go too: a deep-sleeping session holds nothing. */
	sbx_cgroup_destroy(&core->sbx, s->id, NULL);
	struct snapshot_stats st = {0};
	int64_t t0 = mono_us();
	/* Without a disk (its host restarted) there is nothing to save: it
	 * wakes with a fresh one. */
	if (!sbx_disk_exists(&core->sbx, s->id))
		return 0;
	int64_t files = sbx_files_count(&core->sbx, s->id);
	if (snapshot_save(layer, snap, &st, err) < 0 ||
	    sbx_disk_release(&core->sbx, s->id, err) < 0) {
		if (!sbx_disk_exists(&core->sbx, s->id) && access(snap, F_OK) == 0)
			return 0; /* saved; only the release failed: the snapshot holds */
		struct bk_err e2 = BK_ERR_INIT;
		set_state(core, s, CORE_STATE_ACTIVE, &e2);
		/* Counted as activity: the next try waits a whole period. */
		__atomic_store_n(&s->last_active_ms, now_ms(), __ATOMIC_RELAXED);
		bk_err_prefix(err, "cannot put session %s to deep sleep", s->id);
		return -1;
	}
	char text[32];
	snprintf(text, sizeof(text), "%lld", (long long)files);
	setxattr(snap, FILES_XATTR, text, strlen(text), 0);
	fprintf(stderr,
		"bunkerd: session %s in deep sleep: %lld files, %lld bytes -> %lld in %.1f ms\n",
		s->id, (long long)st.files, (long long)st.bytes_in, (long long)st.bytes_out,
		(double)(mono_us() - t0) / 1000.0);
	return 0;
}

/* With s->rw held exclusively. */
static void go_idle_locked(struct core *core, struct session *s)
{
	struct bk_err err = BK_ERR_INIT;
	if (set_state(core, s, CORE_STATE_IDLE, &err) < 0 ||
	    (s->sbx && sbx_freeze(s->sbx, true, &err) < 0)) {
		fprintf(stderr, "bunkerd: session %s: cannot go idle: %s\n", s->id, err.msg);
		struct bk_err e2 = BK_ERR_INIT;
		if (s->sbx)
			sbx_freeze(s->sbx, false, &e2);
		set_state(core, s, CORE_STATE_ACTIVE, &e2);
		/* Counted as activity: the next try waits a whole period. */
		__atomic_store_n(&s->last_active_ms, now_ms(), __ATOMIC_RELAXED);
	}
}

void lifecycle_tick(struct core *core)
{
	int64_t now = now_ms();
	int64_t idle_ms = (int64_t)core->cfg.idle_after_s * 1000;
	int64_t deep_ms = (int64_t)core->cfg.deep_sleep_after_s * 1000;
	for (;;) {
		/* One due session at a time, found under the registry lock. */
		struct session *due = NULL;
		pthread_mutex_lock(&core->lock);
		for (struct session *s = core->sessions; s && !due; s = s->next) {
			int64_t quiet = now - __atomic_load_n(&s->last_active_ms, __ATOMIC_RELAXED);
			enum core_state st = __atomic_load_n(&s->state, __ATOMIC_RELAXED);
			if (!s->deleted && ((st != CORE_STATE_DEEP_SLEEP && quiet >= deep_ms) ||
					    (st == CORE_STATE_ACTIVE && quiet >= idle_ms)))
				due = s;
		}
		if (due)
			due->refs++;
		pthread_mutex_unlock(&core->lock);
		if (due == NULL)
			return;
		/* Busy (an execution, a file operation, a wake, an open preview
		 * connection) means active: that counts as activity now, so the
		 * next due session is looked at and this one waits a whole
		 * period again (a preview connection may stay open for hours). */
		bool moved = false;
		if (pthread_rwlock_trywrlock(&due->rw) != 0) {
			session_touch(core, due);
			moved = true;
		} else {
			int64_t quiet =
			    now - __atomic_load_n(&due->last_active_ms, __ATOMIC_RELAXED);
			if (!due->deleted) {
				struct bk_err err = BK_ERR_INIT;
				if (due->state != CORE_STATE_DEEP_SLEEP && quiet >= deep_ms) {
					if (lifecycle_deep_sleep_locked(core, due, &err) < 0)
						fprintf(stderr, "bunkerd: %s\n", err.msg);
					moved = true;
				} else if (due->state == CORE_STATE_ACTIVE && quiet >= idle_ms) {
					go_idle_locked(core, due);
					moved = true;
				}
			}
			pthread_rwlock_unlock(&due->rw);
		}
		session_release(core, due);
		if (!moved)
			return;
	}
}

void lifecycle_recover(struct core *core, struct session *s)
{
	char snap[700];
	lifecycle_snapshot_path(core, s->id, snap, sizeof(snap));
	bool disk = sbx_disk_exists(&core->sbx, s->id);
	bool saved = access(snap, F_OK) == 0;
	struct bk_err err = BK_ERR_INIT;
	enum core_state want;
	if (s->state == CORE_STATE_DEEP_SLEEP) {
		/* Saved: the snapshot is the truth. Not yet: the disk is. */
		want = saved ? CORE_STATE_DEEP_SLEEP : CORE_STATE_ACTIVE;
		if (saved && disk)
			sbx_disk_release(&core->sbx, s->id, NULL);
	} else if (disk) {
		/* Active or idle: the processes died with the old daemon; the
		 * files are on the disk. A snapshot beside it is a wake that
		 * did not finish removing it. */
		want = CORE_STATE_ACTIVE;
		if (saved)
			unlink(snap);
	} else {
		/* No disk (the host restarted): a snapshot brings the files
		 * back; without one they are lost, and a new disk starts. */
		want = saved ? CORE_STATE_DEEP_SLEEP : CORE_STATE_ACTIVE;
		if (!saved)
			fprintf(stderr, "bunkerd: session %s: its files did not survive\n", s->id);
	}
	if (want != s->state && set_state(core, s, want, &err) < 0)
		fprintf(stderr, "bunkerd: session %s: %s\n", s->id, err.msg);
	s->state = want;
}
