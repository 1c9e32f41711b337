/* What the files of the SQLite store share (store/sqlite.c opens the
 * database and keeps its schema; sqlite_keys.c and sqlite_sessions.c hold
 * the operations on each table). Nothing outside store/ includes it. */
#pragma once

#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stddef.h>

#include "store/rows.h"
#include "store/store.h"

struct sqlite_store {
	struct store base;
	sqlite3 *db;
	pthread_mutex_t lock;
};

/* Every operation below takes the interface's struct store, which is the
 * first member of ours. */
#define SQ(st) ((struct sqlite_store *)(st))

static inline void cleanup_stmtp(sqlite3_stmt **stmt)
{
	/* sqlite3_finalize(NULL) is a no-op; it returns the statement's last
	 * error, which the caller has already read. */
	int saved = errno;
	sqlite3_finalize(*stmt);
	errno = saved;
}

static inline void cleanup_unlockp(pthread_mutex_t **m)
{
	if (*m != NULL)
		pthread_mutex_unlock(*m);
}

#define _cleanup_stmt_ __attribute__((cleanup(cleanup_stmtp)))
#define _cleanup_unlock_ __attribute__((cleanup(cleanup_unlockp)))

/* Locks st for the caller's scope: `_cleanup_unlock_ pthread_mutex_t *lock = sqlite__lock(st);` */
static inline pthread_mutex_t *sqlite__lock(struct store *st)
{
	pthread_mutex_lock(&SQ(st)->lock);
	return &SQ(st)->lock;
}

/* Fills err with "<formatted>: <sqlite3_errmsg>"; a busy database is
 * BK_E_UNAVAILABLE (worth a retry), anything else BK_E_INTERNAL. Call with
 * the store's lock held, right after the failing call. Returns -1. */
int sqlite__fail(struct store *st, struct bk_err *err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Copies a text column into a fixed buffer; -1 when it is NULL or too long. */
int sqlite__col_copy(sqlite3_stmt *stmt, int col, char *buf, size_t size);
/* The current row of stmt, for store/rows.c. */
struct store__row sqlite__row(sqlite3_stmt *stmt);
/* Runs sql, a constant without parameters. */
int sqlite__exec(struct store *st, const char *sql, const char *what, struct bk_err *err);
/* Ends the transaction the caller began: COMMIT when rc >= 0, ROLLBACK
 * otherwise (keeping the error that caused it). Returns rc, or -1 when the
 * commit fails. */
int sqlite__tx_end(struct store *st, int rc, struct bk_err *err);
/* Counts cap's sessions of key_id (but except_id, may be NULL) and fails
 * with BK_E_LIMIT at the cap. Call inside a transaction. */
int sqlite__cap_check(struct store *st, const char *key_id, const char *except_id,
		      const struct store_cap *cap, struct bk_err *err);

/* The operations of struct store_ops, by table. */
int sqlite__key_insert(struct store *st, const struct store_key *key, struct bk_err *err);
int sqlite__key_find_by_hash(struct store *st, const uint8_t hash[32], struct store_key *out,
			     struct bk_err *err);
int sqlite__key_list(struct store *st, struct store_key **out, size_t *n, struct bk_err *err);
int sqlite__key_revoke(struct store *st, const char *id, int64_t revoked_ms, struct bk_err *err);
int sqlite__idem_get(struct store *st, const char *key_id, const char *idem_key, int64_t since_ms,
		     struct store_idem *out, struct bk_err *err);
int sqlite__idem_put(struct store *st, const struct store_idem *r, struct bk_err *err);
int sqlite__idem_claim(struct store *st, const char *key_id, const char *idem_key, int64_t now_ms,
		       int64_t expires_ms, struct bk_err *err);
int sqlite__idem_release(struct store *st, const char *key_id, const char *idem_key,
			 int64_t claimed_ms, struct bk_err *err);
int sqlite__idem_usage(struct store *st, const char *key_id, int64_t since_ms, int64_t *count,
		       int64_t *bytes, struct bk_err *err);
int sqlite__idem_purge(struct store *st, int64_t before_ms, int64_t *n, struct bk_err *err);
int sqlite__session_insert(struct store *st, const struct store_session *s,
			   const struct store_cap *cap, struct bk_err *err);
int sqlite__session_get(struct store *st, const char *id, const char *key_id,
			struct store_session *out, struct bk_err *err);
int sqlite__session_delete(struct store *st, const char *id, struct bk_err *err);
int sqlite__session_touch(struct store *st, const char *id, int64_t last_active_ms,
			  const struct store_usage *add, struct bk_err *err);
int sqlite__session_set_state(struct store *st, const char *id, enum store_session_state state,
			      struct bk_err *err);
int sqlite__session_set_network(struct store *st, const char *id, const char *network,
				struct bk_err *err);
int sqlite__session_set_vm(struct store *st, const char *id, enum store_vm_state vm,
			   int64_t spawned_ms, int64_t ends_ms, enum store_session_state state,
			   const struct store_cap *cap, struct bk_err *err);
int sqlite__session_count(struct store *st, const char *key_id, int64_t now_ms, bool holding,
			  int64_t *out, struct bk_err *err);
int sqlite__session_list(struct store *st, const char *key_id, int64_t now_ms,
			 store_session_match match, void *ctx, int limit, int offset,
			 struct store_session **out, size_t *n, int64_t *total, struct bk_err *err);
int sqlite__session_list_all(struct store *st, struct store_session **out, size_t *n,
			     struct bk_err *err);
int sqlite__session_due(struct store *st, int64_t now_ms, char (*ids)[32], size_t max, size_t *n,
			struct bk_err *err);
int sqlite__session_claim(struct store *st, const char *id, const char *owner, int64_t epoch,
			  struct bk_err *err);
int sqlite__session_release(struct store *st, const char *id, struct bk_err *err);
int sqlite__node_renew(struct store *st, const struct store_node *n, struct bk_err *err);
int sqlite__node_list(struct store *st, int64_t now_ms, struct store_node **out, size_t *n,
		      struct bk_err *err);
int sqlite__node_remove(struct store *st, const char *name, struct bk_err *err);
int sqlite__task_insert(struct store *st, const struct store_task *t, struct bk_err *err);
int sqlite__task_update(struct store *st, const struct store_task *t, struct bk_err *err);
int sqlite__task_get(struct store *st, const char *id, const char *key_id, struct store_task *out,
		     struct bk_err *err);
int sqlite__task_count(struct store *st, const char *key_id, int64_t since_ms, int64_t *out,
		       struct bk_err *err);
int sqlite__task_purge(struct store *st, int64_t before_ms, bool fail_unfinished, int64_t now_ms,
		       struct bk_err *err);
