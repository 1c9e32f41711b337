/* Persistence behind one interface.
 *
 * A store is a table of operations (struct store_ops) over an
 * implementation's state, chosen once at start-up by store_open():
 * store/sqlite.c, an embedded SQLite database in WAL mode (one node), or
 * store/pg.c, a PostgreSQL database that several nodes share. core/ calls a
 * store only through its table. The store keeps records and answers
 * queries; what records mean (JSON validity, metadata containment, plan
 * rules) is core/'s. What must hold across every node sharing a store (a
 * key's session cap, one request per Idempotency-Key at a time) is checked
 * and written by the store in one transaction (struct store_cap,
 * idem_claim).
 *
 * Every operation is safe to call from several threads at once (the
 * implementation serialises what it must). Strings returned inside structs
 * are owned by the struct and released with the matching _release().
 * Operations that look a record up return 1 when found, 0 when not, -1 on
 * error; BK_E_UNAVAILABLE means the store is busy or unreachable (worth a
 * retry), any other kind that it failed.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/err.h"

#define STORE_SCHEMA_VERSION 10

/* An API key. Only the hash of the secret is stored. */
struct store_key {
	char id[32];	  /* "key_" + 16 [a-z0-9]: safe to log */
	uint8_t hash[32]; /* BLAKE2b-256 of the secret */
	char plan[16];	  /* "free" | "paid" | "enterprise" */
	int64_t created_ms;
	int64_t revoked_ms; /* 0 while valid */
	/* The numbers that replace the plan's defaults for this key, as a
	 * compact JSON object ("" is the same as "{}"); core/plan.c gives it
	 * meaning, the store only keeps it. */
	char overrides[512];
};

/* A stored answer to a request that carried an Idempotency-Key. */
struct store_idem {
	char key_id[32];
	char idem_key[256];	  /* as the caller sent it */
	uint8_t request_hash[32]; /* BLAKE2b-256 of what makes two requests "the same" */
	int status;
	char content_type[64];
	char *body; /* owned; NUL-terminated, body_len excludes the NUL */
	size_t body_len;
	/* > 0: the answer was this many bytes, too many to keep; body is
	 * empty and the request is not to be run again. */
	int64_t dropped_len;
	int64_t created_ms;
};

void store_idem_release(struct store_idem *r);

enum store_session_state {
	STORE_SESSION_ACTIVE = 0,
	STORE_SESSION_IDLE,
	STORE_SESSION_DEEP_SLEEP,
};

/* Whether a session holds a sandbox ("VM" in the InstaVM dialect). */
enum store_vm_state {
	STORE_VM_NONE = 0,   /* none spawned yet */
	STORE_VM_RUNNING,    /* spawned: awake, idle or asleep */
	STORE_VM_TERMINATED, /* killed, or its lifetime ended */
};

/* What a session used, counted by session_touch(). */
struct store_usage {
	int64_t execs, cpu_ms, vm_runtime_ms;
	int64_t net_tx_bytes, net_rx_bytes; /* out of and into its sandboxes */
};

struct store_session {
	char id[32];	    /* "ses_" + 20 [a-z0-9] */
	char public_id[40]; /* the id callers name it by, when not id (a UUID); else "" */
	char key_id[32];
	int dialect; /* which dialect created it (core's enum core_dialect) */
	int64_t created_ms, expires_ms, last_active_ms;
	enum store_session_state state;
	char *metadata; /* compact JSON object text (core/ checks it); owned */
	char *env;	/* JSON object of strings for every execution; owned, NULL: {} */
	int memory_mb;
	double cpu;
	int timeout_s;
	int disk_mb;
	int vcpu; /* the vCPUs asked for (InstaVM), 0 when none */
	enum store_vm_state vm_state;
	int64_t vm_lifetime_s;			   /* 0: none */
	int64_t vm_spawned_ms, vm_ends_ms;	   /* the VM's spawn and end (0: no end) */
	int64_t exec_count, cpu_ms, vm_runtime_ms; /* usage so far */
	int64_t net_tx_bytes, net_rx_bytes;	   /* its outbound network's, so far */
	/* Its outbound network policy, a compact JSON object (core/network.c
	 * gives it meaning); owned, NULL or "": none, loopback only. */
	char *network;
	/* The node that runs it (its --node), and the fencing epoch of that
	 * ownership: ownership moves only by session_claim(), a
	 * compare-and-set on both, which raises the epoch. "" and 0: a
	 * session written before nodes existed. */
	char owner[64];
	int64_t epoch;
};

void store_session_release(struct store_session *s);

/* A predicate on a session, for listing. */
typedef bool (*store_session_match)(void *ctx, const struct store_session *s);

/* The result of an asynchronous execution. */
enum store_task_status {
	STORE_TASK_QUEUED = 0,
	STORE_TASK_RUNNING,
	STORE_TASK_COMPLETED,
	STORE_TASK_FAILED,
	STORE_TASK_TIMEOUT,
	STORE_TASK_KILLED,
};

struct store_task {
	char id[40]; /* a UUID */
	char session_id[32];
	char key_id[32];
	enum store_task_status status;
	char *out, *err; /* owned, NUL-terminated; NULL: "" */
	size_t out_len, err_len;
	int exit_code;
	int64_t execution_ms, cpu_ms;
	int64_t created_ms, finished_ms; /* finished 0 while not */
};

void store_task_release(struct store_task *t);

/* A cap a write must stay under: the key's sessions not expired at now_ms
 * (with holding, only those whose VM runs) must number fewer than max
 * before it. The store counts and writes in one transaction, so the cap
 * holds for every process and node sharing the store; a write it refuses
 * fails with BK_E_LIMIT and changes nothing. */
struct store_cap {
	int64_t max;
	bool holding;
	int64_t now_ms;
};

/* A node of a cluster, as it last renewed its lease. */
struct store_node {
	char name[64];	     /* its --node */
	char advertise[256]; /* the base URL its peers reach it at */
	int64_t started_ms, renewed_ms;
	int64_t lease_ms; /* alive until then: a node whose lease lapsed is gone */
	/* Its load at the renewal: free memory of its host (MB), and the
	 * sessions whose sandboxes it runs. */
	int64_t free_mb;
	int64_t awake;
	/* Sessions it owns that have not expired, counted by the store when
	 * the list is read (exact, not as of the renewal). */
	int64_t owned;
};

struct store;

struct store_ops {
	const char *name;
	void (*close)(struct store *st);

	/* ---- keys ---- */

	/* An id or hash already stored is BK_E_CONFLICT. */
	int (*key_insert)(struct store *st, const struct store_key *key, struct bk_err *err);
	/* The key whose secret hashes to hash. */
	int (*key_find_by_hash)(struct store *st, const uint8_t hash[32], struct store_key *out,
				struct bk_err *err);
	/* Every key, oldest first, into *out (malloc'd; caller frees, nothing
	 * inside to release). */
	int (*key_list)(struct store *st, struct store_key **out, size_t *n, struct bk_err *err);
	/* Marks key id revoked at revoked_ms; a key revoked before keeps its
	 * first time. 1 when the key exists. */
	int (*key_revoke)(struct store *st, const char *id, int64_t revoked_ms, struct bk_err *err);

	/* ---- idempotent answers ---- */

	/* The answer stored for (key_id, idem_key) created at or after
	 * since_ms (older ones count as absent); release *out. */
	int (*idem_get)(struct store *st, const char *key_id, const char *idem_key,
			int64_t since_ms, struct store_idem *out, struct bk_err *err);
	/* Stores r, replacing an older answer under the same (key_id,
	 * idem_key). */
	int (*idem_put)(struct store *st, const struct store_idem *r, struct bk_err *err);
	/* Claims (key_id, idem_key) for a request about to run, until
	 * expires_ms at the latest: 1 when claimed, 0 when a claim of another
	 * request (of any process or node) that has not expired by now_ms
	 * holds it. An expired claim (its holder died with it) is taken over.
	 * The claim is known by its claimed_ms (now_ms). */
	int (*idem_claim)(struct store *st, const char *key_id, const char *idem_key,
			  int64_t now_ms, int64_t expires_ms, struct bk_err *err);
	/* Ends the claim taken at claimed_ms; one taken over since is left. */
	int (*idem_release)(struct store *st, const char *key_id, const char *idem_key,
			    int64_t claimed_ms, struct bk_err *err);
	/* Deletes every answer (and claim) created before before_ms; *n (may
	 * be NULL) receives how many answers. */
	int (*idem_purge)(struct store *st, int64_t before_ms, int64_t *n, struct bk_err *err);
	/* How many answers key_id has stored since since_ms, and the bytes of
	 * their bodies. */
	int (*idem_usage)(struct store *st, const char *key_id, int64_t since_ms, int64_t *count,
			  int64_t *bytes, struct bk_err *err);

	/* ---- sessions ---- */

	/* An id (or public id) already taken is BK_E_CONFLICT. With cap (may
	 * be NULL), s->key_id's sessions are counted first, in the same
	 * transaction (BK_E_LIMIT at the cap). */
	int (*session_insert)(struct store *st, const struct store_session *s,
			      const struct store_cap *cap, struct bk_err *err);
	/* The session whose id or public id is id, when it belongs to key_id
	 * (NULL: any key); release *out. */
	int (*session_get)(struct store *st, const char *id, const char *key_id,
			   struct store_session *out, struct bk_err *err);
	/* 1 when the session was there (and, with a node name, was this
	 * node's or no node's: another node's is left, 0). */
	int (*session_delete)(struct store *st, const char *id, struct bk_err *err);
	/* Records activity at last_active_ms; an older time than the one
	 * stored (two requests finishing out of order) leaves it as it is.
	 * The usage counters grow by add's (borrowed; NULL: by nothing). */
	int (*session_touch)(struct store *st, const char *id, int64_t last_active_ms,
			     const struct store_usage *add, struct bk_err *err);
	/* Records a lifecycle state. */
	int (*session_set_state)(struct store *st, const char *id, enum store_session_state state,
				 struct bk_err *err);
	/* Records a VM's spawn or end: its state, spawn and end times, and the
	 * lifecycle state that goes with it. With cap (may be NULL), the
	 * session's key's other sessions are counted first, in the same
	 * transaction (BK_E_LIMIT at the cap). 1 when the session exists. */
	int (*session_set_vm)(struct store *st, const char *id, enum store_vm_state vm,
			      int64_t spawned_ms, int64_t ends_ms, enum store_session_state state,
			      const struct store_cap *cap, struct bk_err *err);
	/* Records a session's outbound network policy (JSON text, "" for
	 * none). */
	int (*session_set_network)(struct store *st, const char *id, const char *network,
				   struct bk_err *err);
	/* Sessions of key_id (NULL: of every key) not yet expired at now_ms;
	 * with holding, only those whose VM runs. */
	int (*session_count)(struct store *st, const char *key_id, int64_t now_ms, bool holding,
			     int64_t *out, struct bk_err *err);
	/* A page of key_id's sessions not expired at now_ms, newest first,
	 * counting only those that match() accepts (match NULL: every one);
	 * *total counts every match, not only the page. The caller releases
	 * each element and frees the array. */
	int (*session_list)(struct store *st, const char *key_id, int64_t now_ms,
			    store_session_match match, void *ctx, int limit, int offset,
			    struct store_session **out, size_t *n, int64_t *total,
			    struct bk_err *err);
	/* Every session of every key that this node (struct store's node)
	 * owns, oldest first, for start-up recovery; same ownership. Sessions
	 * written before nodes existed (no owner, epoch 0) are made this
	 * node's first, and so are all of them on a store that only one node
	 * can use (SQLite); released ones (no owner, a later epoch) are left
	 * to whoever claims them. Without a node name: every session. */
	int (*session_list_all)(struct store *st, struct store_session **out, size_t *n,
				struct bk_err *err);
	/* Up to max ids (in ids[]) of this node's sessions and of those no
	 * node owns (any, without a node name) due at now_ms: expired, or whose VM's lifetime has
	 * ended; soonest first. *n receives how many. */
	int (*session_due)(struct store *st, int64_t now_ms, char (*ids)[32], size_t max, size_t *n,
			   struct bk_err *err);

	/* Moves session id to this node, raising its epoch, if and only if
	 * it is still owned by owner at epoch (a compare-and-set: of two
	 * nodes claiming it at once, one wins). 1 when claimed, 0 when the
	 * session or that ownership is gone. */
	int (*session_claim)(struct store *st, const char *id, const char *owner, int64_t epoch,
			     struct bk_err *err);
	/* Gives up this node's deep-sleeping session id, raising its epoch:
	 * no node owns it then, and the first to claim it (from owner "" at
	 * that epoch) wakes it from its snapshot, which must be where every
	 * node reaches it. 1 when released, 0 when it is not this node's or
	 * not asleep. */
	int (*session_release)(struct store *st, const char *id, struct bk_err *err);

	/* ---- nodes ---- */

	/* Registers or renews n (by name): its advertise URL, lease and
	 * load. */
	int (*node_renew)(struct store *st, const struct store_node *n, struct bk_err *err);
	/* Every node registered, by name, each with the sessions it owns not
	 * expired at now_ms (owned); the caller frees *out. */
	int (*node_list)(struct store *st, int64_t now_ms, struct store_node **out, size_t *n,
			 struct bk_err *err);
	/* Removes node name's row (a clean stop). */
	int (*node_remove)(struct store *st, const char *name, struct bk_err *err);

	/* ---- asynchronous executions ---- */

	int (*task_insert)(struct store *st, const struct store_task *t, struct bk_err *err);
	/* Records t's status and, once it is final, its result and end. */
	int (*task_update)(struct store *st, const struct store_task *t, struct bk_err *err);
	/* The task id of key_id (NULL: any key); release *out. */
	int (*task_get)(struct store *st, const char *id, const char *key_id,
			struct store_task *out, struct bk_err *err);
	/* Tasks of key_id created at or after since_ms. */
	int (*task_count)(struct store *st, const char *key_id, int64_t since_ms, int64_t *out,
			  struct bk_err *err);
	/* Deletes tasks created before before_ms; and marks every task still
	 * queued or running failed at now_ms when fail_unfinished (a daemon
	 * that starts runs none of them): only those of this node's sessions
	 * (and of sessions gone) when the store has a node name, so that a
	 * node's start leaves its peers' tasks alone. */
	int (*task_purge)(struct store *st, int64_t before_ms, bool fail_unfinished, int64_t now_ms,
			  struct bk_err *err);

	/* ---- rate limits ---- */

	/* Counts a request of key_id at now_ms in the key's window, which
	 * opens with the first request counted window_ms or more after the
	 * last window opened and lasts window_ms: the window's start and the
	 * requests counted in it, this one included, into *start_ms and
	 * *count. One statement, atomic against every other node's. NULL in a
	 * store only one node uses (SQLite): the API counts in its memory
	 * there, as exactly. */
	int (*rate_count)(struct store *st, const char *key_id, int64_t now_ms, int64_t window_ms,
			  int64_t *start_ms, int64_t *count, struct bk_err *err);
};

/* The base of every implementation's state. */
struct store {
	const struct store_ops *ops;
	/* The node this process is (its --node), set once before the store is
	 * used by more than one thread; "" (the CLI): none. With a name,
	 * every write that acts on a session as its owner (touch, state, VM)
	 * changes it only while this node owns it, and recovery, due
	 * sessions and unfinished tasks are this node's alone. */
	char node[64];
};

/* Opens the store named by uri, choosing its implementation once: "sqlite:
 * PATH" or a plain path is the embedded SQLite database at PATH (created
 * when missing, its schema brought to STORE_SCHEMA_VERSION);
 * "postgres://..." or "postgresql://..." a libpq connection URI (its
 * schema created or migrated, under an advisory lock, to
 * STORE_PG_SCHEMA_VERSION). *out is a new store; close it with
 * (*out)->ops->close(). */
int store_open(const char *uri, struct store **out, struct bk_err *err);

/* The SQLite store (store/sqlite.c) at path. */
int store_sqlite_open(const char *path, struct store **out, struct bk_err *err);

#define STORE_PG_SCHEMA_VERSION 6

/* The PostgreSQL store (store/pg.c) at the libpq connection URI uri. */
int store_pg_open(const char *uri, struct store **out, struct bk_err *err);
