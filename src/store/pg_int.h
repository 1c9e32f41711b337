/* What the files of the PostgreSQL store share (store/pg.c connects and
 * keeps the schema; pg_keys.c, pg_sessions.c and pg_tasks.c hold the
 * operations on each table). Nothing outside store/ includes it. */
#pragma once

#include <libpq-fe.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/rows.h"
#include "store/store.h"

struct pg_store {
	struct store base;
	PGconn *conn;
	/* One connection serves the daemon: a transaction belongs to the
	 * connection, so every operation holds lock from its first statement
	 * to its last (as store/sqlite.c does, and for the same reason). */
	pthread_mutex_t lock;
	/* While the server cannot be reached (under lock): no new attempt
	 * to connect before retry_ms (now_ms()), and why the last failed. */
	int64_t retry_ms;
	char down[384];
};

#define PG(st) ((struct pg_store *)(st))

/* The parameters of one statement, every one sent as text but bytea's,
 * sent as binary (so no value is ever spliced into SQL). */
#define PG_PARAMS_MAX 32
struct pg_params {
	int n;
	const char *values[PG_PARAMS_MAX];
	int lengths[PG_PARAMS_MAX];
	int formats[PG_PARAMS_MAX];
	char buf[PG_PARAMS_MAX][32];
};

void pg__text(struct pg_params *p, const char *s); /* NULL: SQL NULL */
void pg__int(struct pg_params *p, int64_t v);
void pg__real(struct pg_params *p, double v);
void pg__bytes(struct pg_params *p, const void *b, size_t n);

static inline void cleanup_resultp(PGresult **res)
{
	PQclear(*res);
}

#define _cleanup_result_ __attribute__((cleanup(cleanup_resultp)))

static inline void cleanup_pg_unlockp(pthread_mutex_t **m)
{
	if (*m != NULL)
		pthread_mutex_unlock(*m);
}

#define _cleanup_pg_unlock_ __attribute__((cleanup(cleanup_pg_unlockp)))

/* Locks st for the caller's scope, reconnecting first when the connection
 * was lost (the next statement then fails or works on the new one). */
pthread_mutex_t *pg__lock(struct store *st);

/* Runs sql with p (may be NULL), results in binary: *out is the result of
 * a statement that worked (PQclear it). On failure fills err with
 * "<what>: <server's message>": a unique violation is BK_E_CONFLICT, a
 * lost connection, a server shutting down, a deadlock or a serialization
 * failure BK_E_UNAVAILABLE, anything else BK_E_INTERNAL. Returns -1. */
int pg__exec(struct store *st, const char *sql, const struct pg_params *p, PGresult **out,
	     struct bk_err *err, const char *fmt, ...) __attribute__((format(printf, 6, 7)));
/* The same without a result to read. */
int pg__run(struct store *st, const char *sql, const struct pg_params *p, struct bk_err *err,
	    const char *fmt, ...) __attribute__((format(printf, 5, 6)));
/* Rows a command changed (UPDATE, DELETE, INSERT). */
int64_t pg__changed(PGresult *res);
/* Row i of res, for store/rows.c. */
struct store__row pg__row(PGresult *res, int i);
/* Column col of row 0 as an integer. */
int64_t pg__int_at(PGresult *res, int col);

/* Begins a transaction; ends it with COMMIT when rc >= 0 and ROLLBACK
 * otherwise (keeping the error that caused it); returns rc, or -1 when
 * the commit fails. */
int pg__begin(struct store *st, struct bk_err *err);
int pg__tx_end(struct store *st, int rc, struct bk_err *err);
/* Counts cap's sessions of key_id (but except_id, may be NULL), holding
 * the key's row locked until the transaction ends so that every node's
 * check for the key queues behind it; BK_E_LIMIT at the cap. Call inside a
 * transaction. */
/* The live sessions of key_id at now_ms (those holding a VM, if holding),
 * except_id's left out (NULL: none), from the key's counts (schema
 * version 6) rather than by reading each. */
int pg__live_count(struct store *st, const char *key_id, int64_t now_ms, bool holding,
		   const char *except_id, int64_t *out, struct bk_err *err);
int pg__cap_check(struct store *st, const char *key_id, const char *except_id,
		  const struct store_cap *cap, struct bk_err *err);

/* The operations of struct store_ops, by table. */
int pg__key_insert(struct store *st, const struct store_key *key, struct bk_err *err);
int pg__key_find_by_hash(struct store *st, const uint8_t hash[32], struct store_key *out,
			 struct bk_err *err);
int pg__key_list(struct store *st, struct store_key **out, size_t *n, struct bk_err *err);
int pg__key_revoke(struct store *st, const char *id, int64_t revoked_ms, struct bk_err *err);
int pg__idem_get(struct store *st, const char *key_id, const char *idem_key, int64_t since_ms,
		 struct store_idem *out, struct bk_err *err);
int pg__idem_put(struct store *st, const struct store_idem *r, struct bk_err *err);
int pg__idem_claim(struct store *st, const char *key_id, const char *idem_key, int64_t now_ms,
		   int64_t expires_ms, struct bk_err *err);
int pg__idem_release(struct store *st, const char *key_id, const char *idem_key, int64_t claimed_ms,
		     struct bk_err *err);
int pg__idem_usage(struct store *st, const char *key_id, int64_t since_ms, int64_t *count,
		   int64_t *bytes, struct bk_err *err);
int pg__idem_purge(struct store *st, int64_t before_ms, int64_t *n, struct bk_err *err);
int pg__rate_count(struct store *st, const char *key_id, int64_t now_ms, int64_t window_ms,
		   int64_t *start_ms, int64_t *count, struct bk_err *err);
int pg__session_insert(struct store *st, const struct store_session *s, const struct store_cap *cap,
		       struct bk_err *err);
int pg__session_get(struct store *st, const char *id, const char *key_id, struct store_session *out,
		    struct bk_err *err);
int pg__session_delete(struct store *st, const char *id, struct bk_err *err);
int pg__session_touch(struct store *st, const char *id, int64_t last_active_ms,
		      const struct store_usage *add, struct bk_err *err);
int pg__session_set_state(struct store *st, const char *id, enum store_session_state state,
			  struct bk_err *err);
int pg__session_set_network(struct store *st, const char *id, const char *network,
			    struct bk_err *err);
int pg__session_set_vm(struct store *st, const char *id, enum store_vm_state vm, int64_t spawned_ms,
		       int64_t ends_ms, enum store_session_state state, const struct store_cap *cap,
		       struct bk_err *err);
int pg__session_count(struct store *st, const char *key_id, int64_t now_ms, bool holding,
		      int64_t *out, struct bk_err *err);
int pg__session_list(struct store *st, const char *key_id, int64_t now_ms,
		     store_session_match match, void *ctx, int limit, int offset,
		     struct store_session **out, size_t *n, int64_t *total, struct bk_err *err);
int pg__session_list_all(struct store *st, struct store_session **out, size_t *n,
			 struct bk_err *err);
int pg__session_due(struct store *st, int64_t now_ms, char (*ids)[32], size_t max, size_t *n,
		    struct bk_err *err);
int pg__session_claim(struct store *st, const char *id, const char *owner, int64_t epoch,
		      struct bk_err *err);
int pg__session_release(struct store *st, const char *id, struct bk_err *err);
int pg__node_renew(struct store *st, const struct store_node *n, struct bk_err *err);
int pg__node_list(struct store *st, int64_t now_ms, struct store_node **out, size_t *n,
		  struct bk_err *err);
int pg__node_remove(struct store *st, const char *name, struct bk_err *err);
int pg__task_insert(struct store *st, const struct store_task *t, struct bk_err *err);
int pg__task_update(struct store *st, const struct store_task *t, struct bk_err *err);
int pg__task_get(struct store *st, const char *id, const char *key_id, struct store_task *out,
		 struct bk_err *err);
int pg__task_count(struct store *st, const char *key_id, int64_t since_ms, int64_t *out,
		   struct bk_err *err);
int pg__task_purge(struct store *st, int64_t before_ms, bool fail_unfinished, int64_t now_ms,
		   struct bk_err *err);
