/* What the core modules share; api/ never includes it.
 *
 * core/ reaches the store and the sandbox backend only through their
 * operation tables (core->store->ops, core->sbx->ops).
 *
 * Locks, and the one order in which they nest (an arrow: the left one may
 * be held while the right one is taken, never the other way):
 *
 *   core->create_lock -> core->load_lock -> core->lock -> s->mu
 *   s->rw             -> core->lock, s->mu
 *   core->pool_lock      (a leaf: nothing is taken while it is held)
 *   core->reaper_lock    (a leaf)
 *
 *   create_lock  a key's session cap taken and the session linked in (the
 *                store counts and writes in one transaction, for other nodes)
 *   load_lock    a registry miss read from the store, against a delete's
 *                record removal (core/registry.c)
 *   core->lock   the registry: its list, each entry's refs and deleted
 *   s->rw        shared by every operation that uses s's sandbox, held
 *                exclusively to start, stop, wake or put it to sleep
 *   s->mu        s->sbx for terminate() (which a delete calls without
 *                waiting for rw) and s->previews
 */
#pragma once

#include <pthread.h>

#include "core/core.h"
#include "sandbox/sandbox.h"
#include "store/store.h"

struct core_preview;

/* One session in memory: the registry is a cache, over the store, of the
 * sessions this node runs. Every session whose sandbox runs or whose files
 * are on a disk is in it; a deep-sleeping one is loaded when a request
 * needs it and evicted again once nothing holds it. */
struct session {
	char id[32];
	char public_id[40]; /* id, or the UUID callers name it by */
	char key_id[32];
	enum core_dialect dialect;
	struct core_limits limits;
	int64_t created_ms, expires_ms;
	char *env;	       /* JSON object of strings; owned, fixed for the session's life */
	enum core_vm vm;       /* changed with rw held exclusively */
	int64_t vm_lifetime_s; /* 0: none */
	int64_t vm_spawned_ms, vm_ends_ms;
	/* Usage not yet written to the store: atomic, flushed with activity. */
	int64_t pending_execs, pending_cpu_ms;
	int64_t pending_net_tx, pending_net_rx;
	/* Of its sandbox's net_bytes, what pending or the store already
	 * counts (mu); 0 and 0 with each new sandbox. */
	int64_t net_tx_seen, net_rx_seen;
	/* When its sandbox's network was last counted, 0: it has none
	 * (atomic): one that has is counted every so often even when nothing
	 * else happens, so that a sandbox that dies loses little. */
	int64_t net_counted_ms;
	int64_t last_active_ms;	  /* atomic */
	int64_t stored_active_ms; /* atomic: the last_active_ms last written to the store */
	enum core_state state;	  /* changed with rw held exclusively */
	/* When its files were last checkpointed (rw exclusively; atomic to
	 * read): at a checkpoint, or a wake from the snapshot that became
	 * its checkpoint. 0: never. */
	int64_t checkpoint_ms;
	int refs;     /* core->lock; the registry's is one of them */
	bool deleted; /* core->lock to set; atomic to read */
	bool linked;  /* on the registry's list (core->lock) */
	/* A create undone whose record the store could not delete then
	 * (core->lock): kept in the registry, deleted (so that nothing loads
	 * the record back), until the reaper deletes the record. */
	bool undo_pending;
	pthread_rwlock_t rw;
	pthread_mutex_t mu;
	struct sbx *sbx;
	struct core_preview *previews; /* open preview connections, under mu */
	char *network;		       /* its policy (core/network.c), under mu; owned */
	bool net_applied;	       /* its sandbox has a network (mu) */
	/* The registry's list, and its chains by id and by public id (all
	 * core->lock). */
	struct session *next, **pprev;
	struct session *id_next, *public_next;
};

/* Chains of the registry's index by id and by public id: a lookup read
 * every session's two ids, 0.2 ms of a request at 2,000 sessions. */
#define CORE_REGISTRY_BUCKETS 4096

/* A sandbox started ahead of need, waiting for a session. */
struct pool_entry {
	struct sbx *sbx;
	struct pool_entry *next;
};

enum core_pool_kind {
	CORE_POOL_PLAIN = 0,
	/* Its Python interpreter started with the environment of a session
	 * without env of its own (PORT alone): only such a session may take
	 * it, since an interpreter keeps the environment it started with. */
	CORE_POOL_PYTHON,
	/* With a network interface that passes nothing yet (net_prepare()),
	 * for sessions created with a grant; kept only once a session was
	 * granted a network (core->pool_net_wanted). */
	CORE_POOL_NET,
	CORE_POOL_KINDS,
};

struct core {
	struct core_config cfg;
	struct store *store;	 /* owned */
	struct sbx_backend *sbx; /* owned */
	pthread_mutex_t create_lock;
	pthread_mutex_t load_lock;
	pthread_mutex_t lock;
	pthread_cond_t ref_cond; /* a session's refs dropped */
	struct session *sessions;
	struct session *by_id[CORE_REGISTRY_BUCKETS], *by_public[CORE_REGISTRY_BUCKETS];
	pthread_t reaper;
	bool reaper_running;
	pthread_mutex_t reaper_lock;
	pthread_cond_t reaper_cond;
	bool stopping;
	/* The warm pool (core/pool.c): guarded by pool_lock. */
	pthread_mutex_t pool_lock;
	pthread_cond_t pool_cond;
	/* Two kinds (enum core_pool_kind): plain sandboxes, and sandboxes
	 * whose Python interpreter is started, for the InstaVM dialect's
	 * sessions whose first execution is most often Python. */
	struct pool_entry *pool[CORE_POOL_KINDS];
	int pool_count[CORE_POOL_KINDS];
	bool pool_net_wanted; /* a session was granted a network (pool_lock) */
	bool pool_net_off;    /* the backend prepares none here (pool_lock) */
	unsigned pool_seq;
	pthread_t pool_thread;
	bool pool_running;
	bool pool_quit;
	/* Asynchronous executions (core/tasks.c). */
	struct core_tasks *tasks;
	/* The node's lease (core/cluster.c): renewed by its own thread,
	 * woken early by cluster_cond at a stop. */
	pthread_t cluster_thread;
	bool cluster_running;
	pthread_mutex_t cluster_lock;
	pthread_cond_t cluster_cond;
	bool cluster_quit;
	int64_t started_ms;
	/* What executions' output holds (cfg.output_memory, per key
	 * cfg.output_key_memory); thread safe on its own. */
	struct budget *output_budget;
};

/* ---- the cluster (core/cluster.c) ---- */

/* Registers the node and starts renewing its lease (every
 * CORE_LEASE_RENEW_MS, for CORE_LEASE_MS). */
int core__cluster_start(struct core *core, struct bk_err *err);
/* Stops renewing and removes the node's row (a clean stop). */
void core__cluster_stop(struct core *core);

/* ---- the registry (core/registry.c) ---- */

/* A registry entry for row (refs 1: the registry's), not yet linked. */
struct session *core__session_new(const struct store_session *row);
/* Links s into the registry (which takes its reference). */
void core__registry_link(struct core *core, struct session *s);
/* Finds a live session of key (NULL: any key) by its id or public id,
 * loading it from the store when the registry does not hold it, and takes
 * a reference: BK_E_NOT_FOUND when missing, deleted, expired or another
 * key's. */
int core__session_acquire(struct core *core, const char *key_id, const char *id,
			  struct session **out, struct bk_err *err);
void core__session_release(struct core *core, struct session *s);
/* Marks s deleted (no request can reach it from now on); the caller holds
 * a ref. Returns false when it already was. */
bool core__session_mark_deleted(struct core *core, struct session *s);
/* Takes back core__session_mark_deleted() when the delete could not be
 * done (its record could not be removed): s serves again. */
void core__session_unmark_deleted(struct core *core, struct session *s);
/* The first live session of the registry for which pick() (called with
 * core->lock held) is true, with a reference taken; NULL when none. */
struct session *core__registry_pick(struct core *core, bool (*pick)(struct session *s, void *ctx),
				    void *ctx);
/* Takes s out of the registry and drops the registry's reference. */
void core__registry_unlink(struct core *core, struct session *s);
/* Evicts s when nothing but the registry holds it and it is in deep
 * sleep (its in-memory activity written to the store first). */
void core__registry_evict(struct core *core, struct session *s);
/* Deletes a session's record under load_lock, so that no registry miss
 * can read it back meanwhile: 0 (deleted, or gone already), 1 when it is
 * another node's now (err says whose: not this node's to delete), -1 when
 * the store refused (the record is as it was). */
int core__record_delete(struct core *core, const char *id, struct bk_err *err);

/* ---- using a session's sandbox (core/registry.c) ---- */

/* With s->rw held shared: returns its running sandbox, starting one when it
 * has none or its last one died (spawning a VM as core__session_enter()
 * says). Drops and retakes rw meanwhile. */
int core__session_sandbox(struct core *core, const struct core_key *key, struct session *s,
			  struct sbx **out, struct bk_err *err);
/* A new session info for s's record row. */
void core__info_fill(struct core *core, const struct store_session *row,
		     struct core_session_info *out);
/* Acquires key's session id, records activity, takes s->rw shared and
 * makes sure its sandbox runs (waking or starting it; spawning its VM when
 * it has none, within the key's cap, unless key is NULL: BK_E_UNAVAILABLE
 * then). Pair with core__session_leave(). */
int core__session_enter(struct core *core, const struct core_key *key, const char *id,
			struct session **s, struct sbx **sbx, struct bk_err *err);
void core__session_leave(struct core *core, struct session *s);
/* Records activity now, in memory and in the store. */
void core__session_touch(struct core *core, struct session *s);
/* Writes s's activity and usage that only memory has to the store (its
 * network's bytes counted first): 0, or -1 when the store refused (they
 * stay pending). */
int core__session_flush(struct core *core, struct session *s);
/* With s->mu held: counts what s's sandbox's network carried since it
 * was last counted into s's pending usage. */
void core__session_net_count_locked(struct core *core, struct session *s);
/* With s->mu held: sbx (borrowed from now on by s) becomes s's sandbox,
 * with no network yet and nothing of it counted. */
void core__session_sbx_attach_locked(struct core *core, struct session *s, struct sbx *sbx);
/* Stops s's sandbox, if it has one, its network's last bytes counted. */
void core__session_sbx_drop(struct core *core, struct session *s);
/* core__session_flush() of session id (its id or public id) if the
 * registry holds it: what is read of it next from the store is current. */
void core__registry_flush_id(struct core *core, const char *id);
/* The limits s's sandbox runs with. */
struct sbx_limits core__session_sbx_limits(const struct core *core, const struct session *s);
/* Removes s for good: the record first (a crash after it leaves only files
 * that start-up removes), then the sandbox, then its files. s must be
 * marked deleted by the caller, who unlinks it after. When the store
 * refuses to remove the record (unreachable) nothing else is done, *kept
 * is set and -1 says why: s is whole, its sandbox running, and the caller
 * takes the mark back (core__session_unmark_deleted()) so that the
 * session serves as before and can be deleted again. When the record is
 * another node's now, -1 says so too, with *kept false: what this node
 * holds of it is stale, and its files are the other node's. */
int core__session_destroy(struct core *core, struct session *s, bool *kept, struct bk_err *err);
/* The second half of core__session_destroy(): s's sandbox stopped and its
 * files removed, whatever its record. */
int core__session_sandbox_destroy(struct core *core, struct session *s, struct bk_err *err);
/* Deletes the records of creates undone while the store was unreachable
 * (undo_pending), unlinking each that goes; stops at the first the store
 * still refuses (the reaper's next round tries again). */
void core__undo_retry(struct core *core);
/* Ends s's sandbox, its executions and its previews, leaving its files
 * and its record as they are. */
void core__session_sbx_end(struct core *core, struct session *s);
/* With s->mu held: shuts down every open preview connection of s, so that
 * their relays end and leave s->rw (core/preview.c). */
void core__preview_shutdown_locked(struct session *s);

/* ---- outbound network (core/network.c) ---- */

/* Whether stored policy text grants anything (NULL, "": nothing). */
bool core__network_grants(const char *stored);
/* Applies patch (JSON object text) to the stored policy, checks it against
 * plan, and gives the new stored text in *out (malloc'd). */
int core__network_merge(const char *stored, const char *patch, bool camel, const char *prefix,
			const struct plan_limits *plan, char **out, struct bk_err *err);
/* The stored policy of a create that names none (malloc'd). */
char *core__network_default(const struct plan_limits *plan);
/* The backend's form of a stored policy. */
void core__network_to_sbx(const char *stored, struct sbx_net *out);
/* With s->mu held: gives s's sandbox (if one runs) s's network now; a
 * sandbox without one and a policy that grants nothing cost nothing. */
int core__session_net_apply_locked(struct core *core, struct session *s, struct bk_err *err);

/* ---- the warm pool (core/pool.c) ---- */

/* A started sandbox of the pool's kind, or NULL. */
struct sbx *core__pool_take(struct core *core, enum core_pool_kind kind);
/* Gives s (which has no sandbox nor disk) a sandbox of the pool, adopted
 * with s's limits: one with its network prepared when s's policy grants
 * one, one with Python started when s is of the InstaVM dialect without
 * env, else a plain one (when the pool has the kind). False when
 * the pool had none or the adoption failed (s is as it was). */
bool core__pool_adopt(struct core *core, struct session *s);
/* A session was granted a network: the pool keeps some sandboxes with
 * one prepared from now on. */
void core__pool_want_net(struct core *core);
int core__pool_start(struct core *core, struct bk_err *err);
void core__pool_stop(struct core *core);

/* ---- lifecycle (core/lifecycle.c) ---- */

/* Whether awake sessions are checkpointed here (see checkpoint_s). */
bool core__checkpoints(const struct core *core);

/* With s->rw held exclusively: makes the session active with a running
 * sandbox: thaws an idle one, restores a deep-sleeping one from its
 * snapshot, starts one where none runs. */
int core__lifecycle_wake_locked(struct core *core, struct session *s, struct bk_err *err);
/* With s->rw held exclusively: saves the files with the sandbox frozen,
 * then ends it and releases disk and memory. On failure the session is as
 * it was, but active: its processes thawed and running, its files on its
 * disk (BK_E_NO_SPACE when the snapshot storage had no room). */
int core__lifecycle_deep_sleep_locked(struct core *core, struct session *s, struct bk_err *err);
/* Moves sessions that have been inactive long enough to idle or deep
 * sleep; from the reaper. */
void core__lifecycle_tick(struct core *core);
/* At start-up, before serving: settles a session left by an earlier run
 * into a consistent state (see lifecycle.c). */
void core__lifecycle_recover(struct core *core, struct session *s);
/* With s->rw held exclusively: spawns s's VM (it has none) if key's cap
 * allows (BK_E_LIMIT), recording it first; the wake that follows starts
 * it, fresh and empty. */
int core__vm_spawn_locked(struct core *core, const struct core_key *key, struct session *s,
			  struct bk_err *err);
/* With s->rw held exclusively: ends s's VM (lifetime over, or killed):
 * recorded first, then its sandbox and files go. */
int core__vm_end_locked(struct core *core, struct session *s, struct bk_err *err);

/* A random UUID (version 4) into out: InstaVM's ids. */
int core__uuid_v4(char out[40], struct bk_err *err);

/* ---- asynchronous executions (core/tasks.c) ---- */

int core__tasks_start(struct core *core, struct bk_err *err);
void core__tasks_stop(struct core *core);

/* ---- the reaper (core/reaper.c) ---- */

int core__reaper_start(struct core *core, struct bk_err *err);
void core__reaper_stop(struct core *core);
/* Writes to the store the activity of sessions whose in-memory
 * last_active_ms is ahead of the stored one by a second or more. */
void core__session_store_activity(struct core *core);

/* ---- metadata (core/metadata.c) ---- */

/* Whether text is a JSON object of at most CORE_METADATA_MAX bytes of
 * compact JSON: BK_E_INVALID naming field otherwise. */
int core__metadata_check(const char *text, const char *field, struct bk_err *err);
/* A containment filter for the store's session_list: match() is true for
 * metadata that holds every member of filter (objects compared
 * recursively, anything else by equality). */
struct core_metadata_filter;
int core__metadata_filter_new(const char *filter_json, struct core_metadata_filter **out,
			      struct bk_err *err);
void core__metadata_filter_free(struct core_metadata_filter *f);
bool core__metadata_match(void *filter, const char *metadata);
