/* What the core modules share; api/ never includes it. */
#pragma once

#include <pthread.h>

#include "core/core.h"
#include "sandbox/sandbox.h"
#include "store/store.h"

struct core_preview;

/* One session in memory. The registry mirrors the store: every session
 * with a record is here from start-up on.
 *
 * Locking: core->lock guards the registry list, refs and deleted. rw is
 * held shared by every operation that uses the sandbox and exclusively to
 * start or stop it; mu guards the sbx pointer for sbx_terminate(), which a
 * delete calls without waiting for rw, and the list of open preview
 * connections, which a delete shuts down the same way. */
struct session {
	char id[32];
	char key_id[32];
	int slot;
	struct core_limits limits;
	int64_t created_ms, expires_ms;
	int64_t last_active_ms;	  /* atomic */
	int64_t stored_active_ms; /* atomic: the last_active_ms last written to the store */
	enum core_state state;	  /* changed with rw held exclusively */
	int refs;
	bool deleted;
	pthread_rwlock_t rw;
	pthread_mutex_t mu;
	struct sbx *sbx;
	struct core_preview *previews; /* open preview connections, under mu */
	struct session *next;
};

/* A sandbox started ahead of need, waiting for a session. */
struct pool_entry {
	struct sbx *sbx;
	struct pool_entry *next;
};

struct core {
	struct core_config cfg;
	struct store *store;
	struct sbx_config sbx;
	pthread_mutex_t lock;
	pthread_cond_t ref_cond;     /* a session's refs dropped */
	pthread_mutex_t create_lock; /* count-then-insert of the session cap */
	struct session *sessions;
	pthread_t reaper;
	pthread_mutex_t reaper_lock;
	pthread_cond_t reaper_cond;
	bool stopping;
	/* The warm pool (core/pool.c): guarded by pool_lock. */
	pthread_mutex_t pool_lock;
	pthread_cond_t pool_cond;
	struct pool_entry *pool;
	int pool_count;
	int pool_starting_slot; /* the slot of the entry being started, or -1 */
	unsigned pool_seq;
	pthread_t pool_thread;
	bool pool_running;
	bool pool_quit;
};

/* With create_lock held: the lowest id range no session and no pool entry
 * uses, or -1 when all are taken. */
int slot_take(struct core *core);
/* With create_lock held: a started sandbox from the pool, or NULL. */
struct sbx *pool_take(struct core *core);
int pool_start(struct core *core, struct bk_err *err);
void pool_stop(struct core *core);

/* Finds a live session of key (NULL: any key) and takes a reference:
 * BK_E_NOT_FOUND when missing, deleted, expired or another key's. */
int session_acquire(struct core *core, const char *key_id, const char *id, struct session **out,
		    struct bk_err *err);
void session_release(struct core *core, struct session *s);
/* With s->rw held shared: returns its running sandbox, starting one when it
 * has none or its last one died. Drops and retakes rw meanwhile. */
int session_sandbox(struct core *core, struct session *s, struct sbx **out, struct bk_err *err);
/* Acquires key's session id, records activity, takes s->rw shared and
 * makes sure its sandbox runs (waking or starting it). Pair with
 * session_leave(). */
int session_enter(struct core *core, const char *key_id, const char *id, struct session **s,
		  struct sbx **sbx, struct bk_err *err);
void session_leave(struct core *core, struct session *s);
/* Records activity now. */
void session_touch(struct core *core, struct session *s);
/* Writes to the store the activity of sessions whose in-memory
 * last_active_ms is ahead of the stored one by a second or more (the
 * reaper's, every round). */
void session_store_activity(struct core *core);
/* With s->mu held: shuts down every open preview connection of s, so that
 * their relays end and leave s->rw (core/preview.c). */
void preview_shutdown_locked(struct session *s);
struct sbx_limits session_sbx_limits(const struct core *core, const struct session *s);

/* ---- lifecycle (core/lifecycle.c) ---- */

/* With s->rw held exclusively: makes the session active with a running
 * sandbox: thaws an idle one, restores a deep-sleeping one from its
 * snapshot, starts one where none runs. */
int lifecycle_wake_locked(struct core *core, struct session *s, struct bk_err *err);
/* With s->rw held exclusively: ends the sandbox and saves the files to a
 * snapshot, releasing disk and memory. On failure the files stay where
 * they were and the session is active again. */
int lifecycle_deep_sleep_locked(struct core *core, struct session *s, struct bk_err *err);
/* Moves sessions that have been inactive long enough to idle or deep
 * sleep; from the reaper. */
void lifecycle_tick(struct core *core);
/* At start-up, before serving: settles a session left by an earlier run
 * into a consistent state (see lifecycle.c). */
void lifecycle_recover(struct core *core, struct session *s);
/* How many workspace files a deep-sleeping session's snapshot holds. */
int64_t lifecycle_snapshot_files(const struct core *core, const char *id);
/* The snapshot file of session id. */
void lifecycle_snapshot_path(const struct core *core, const char *id, char *out, size_t len);
