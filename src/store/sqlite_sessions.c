/* The SQLite store's sessions (store/sqlite.c). */
#include <errno.h>
#include <limits.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/sqlite_int.h"
#include "util/cleanup.h"
#include "util/util.h"

/* Fills *out from the current row of a SELECT of STORE_SESSION_COLS. */
static int store_session_from_row(sqlite3_stmt *stmt, struct store_session *out, struct bk_err *err)
{
	struct store__row r = sqlite__row(stmt);
	return store__session_from_row(&r, out, err);
}

/* The live sessions of key_id at now_ms (those holding a VM, if
 * holding), except_id's left out (NULL: none), without reading each: the
 * key's counts (kept by triggers, schema version 10) less its records
 * expired and not yet reaped, found by the expiry index (the unary + keeps
 * the planner off the key's), which the reaper keeps short. */
static int live_count(struct store *st, const char *key_id, int64_t now_ms, bool holding,
		      const char *except_id, int64_t *out, struct bk_err *err)
{
	_cleanup_stmt_ sqlite3_stmt *stmt = NULL;
	if (sqlite3_prepare_v2(
		SQ(st)->db,
		"SELECT (SELECT CASE WHEN ?3 THEN sessions_vm ELSE sessions_all END FROM keys "
		"WHERE id = ?1) - (SELECT COUNT(*) FROM sessions WHERE +key_id = ?1 AND "
		"expires_ms <= ?2 AND (?3 = 0 OR vm_state = 1)) - (SELECT COUNT(*) FROM sessions "
		"WHERE id = ?4 AND key_id = ?1 AND expires_ms > ?2 AND (?3 = 0 OR vm_state = 1))",
		-1, &stmt, NULL) != SQLITE_OK ||
	    sqlite3_bind_text(stmt, 1, key_id, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_int64(stmt, 2, now_ms) != SQLITE_OK ||
	    sqlite3_bind_int(stmt, 3, holding) != SQLITE_OK ||
	    sqlite3_bind_text(stmt, 4, except_id, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_step(stmt) != SQLITE_ROW)
		return sqlite__fail(st, err, "cannot count sessions of key '%s'", key_id);
	/* No such key: NULL, none. */
	*out = sqlite3_column_int64(stmt, 0);
	return 0;
}

int sqlite__cap_check(struct store *st, const char *key_id, const char *except_id,
		      const struct store_cap *cap, struct bk_err *err)
{
	int64_t count;
	if (live_count(st, key_id, cap->now_ms, cap->holding, except_id, &count, err) < 0)
		return -1;
	if (count >= cap->max)
		return bk_err_kind(err, BK_E_LIMIT, "key '%s' holds %lld sessions of its %lld",
				   key_id, (long long)count, (long long)cap->max);
	return 0;
}

/* Inserts s; the caller holds the lock. */
static int session_insert_locked(struct store *st, const struct store_session *s,
				 struct bk_err *err)
{
	_cleanup_stmt_ sqlite3_stmt *stmt = NULL;
	int i = 0;
	if (sqlite3_prepare_v2(SQ(st)->db,
			       "INSERT INTO sessions (" STORE_SESSION_COLS ") "
			       "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, "
			       "?, ?, ?, ?, ?, ?, ?, ?)",
			       -1, &stmt, NULL) != SQLITE_OK ||
	    sqlite3_bind_text(stmt, ++i, s->id, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_text(stmt, ++i, s->key_id, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_int64(stmt, ++i, s->created_ms) != SQLITE_OK ||
	    sqlite3_bind_int64(stmt, ++i, s->expires_ms) != SQLITE_OK ||
	    sqlite3_bind_int64(stmt, ++i, s->last_active_ms) != SQLITE_OK ||
	    sqlite3_bind_int(stmt, ++i, (int)s->state) != SQLITE_OK ||
	    sqlite3_bind_text(stmt, ++i, s->metadata ? s->metadata : "{}", -1, SQLITE_STATIC) !=
		SQLITE_OK ||
	    sqlite3_bind_int(stmt, ++i, s->memory_mb) != SQLITE_OK ||
	    sqlite3_bind_double(stmt, ++i, s->cpu) != SQLITE_OK ||
	    sqlite3_bind_int(stmt, ++i, s->timeout_s) != SQLITE_OK ||
	    sqlite3_bind_int(stmt, ++i, s->disk_mb) != SQLITE_OK ||
	    (s->public_id[0] ? sqlite3_bind_text(stmt, ++i, s->public_id, -1, SQLITE_STATIC)
			     : sqlite3_bind_null(stmt, ++i)) != SQLITE_OK ||
	    sqlite3_bind_int(stmt, ++i, s->dialect) != SQLITE_OK ||
	    sqlite3_bind_text(stmt, ++i, s->env ? s->env : "{}", -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_int(stmt, ++i, s->vcpu) != SQLITE_OK ||
	    sqlite3_bind_int(stmt, ++i, (int)s->vm_state) != SQLITE_OK ||
	    sqlite3_bind_int64(stmt, ++i, s->vm_lifetime_s) != SQLITE_OK ||
	    sqlite3_bind_int64(stmt, ++i, s->vm_spawned_ms) != SQLITE_OK ||
	    sqlite3_bind_int64(stmt, ++i, s->vm_ends_ms) != SQLITE_OK ||
	    sqlite3_bind_int64(stmt, ++i, s->exec_count) != SQLITE_OK ||
	    sqlite3_bind_int64(stmt, ++i, s->cpu_ms) != SQLITE_OK ||
	    sqlite3_bind_int64(stmt, ++i, s->vm_runtime_ms) != SQLITE_OK ||
	    sqlite3_bind_text(stmt, ++i, s->network ? s->network : "", -1, SQLITE_STATIC) !=
		SQLITE_OK ||
	    sqlite3_bind_text(stmt, ++i, s->owner, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_int64(stmt, ++i, s->epoch) != SQLITE_OK ||
	    sqlite3_bind_int64(stmt, ++i, s->net_tx_bytes) != SQLITE_OK ||
	    sqlite3_bind_int64(stmt, ++i, s->net_rx_bytes) != SQLITE_OK)
		return sqlite__fail(st, err, "cannot insert session '%s'", s->id);
	int rc = sqlite3_step(stmt);
	if (rc == SQLITE_CONSTRAINT_PRIMARYKEY || rc == SQLITE_CONSTRAINT_UNIQUE)
		return bk_err_kind(err, BK_E_CONFLICT, "cannot insert session '%s': %s", s->id,
				   sqlite3_errmsg(SQ(st)->db));
	if (rc != SQLITE_DONE)
		return sqlite__fail(st, err, "cannot insert session '%s' for key '%s'", s->id,
				    s->key_id);
	return 0;
}

int sqlite__session_insert(struct store *st, const struct store_session *s,
			   const struct store_cap *cap, struct bk_err *err)
{
	if (store__session_check(s, err) < 0)
		return -1;
	_cleanup_unlock_ pthread_mutex_t *lock = sqlite__lock(st);
	if (cap == NULL)
		return session_insert_locked(st, s, err);
	/* IMMEDIATE takes the write lock first: another process counting
	 * for the same key waits until this insert is in. */
	if (sqlite__exec(st, "BEGIN IMMEDIATE", "begin a capped insert", err) < 0)
		return -1;
	int rc = sqlite__cap_check(st, s->key_id, NULL, cap, err);
	if (rc == 0)
		rc = session_insert_locked(st, s, err);
	return sqlite__tx_end(st, rc, err);
}

int sqlite__session_get(struct store *st, const char *id, const char *key_id,
			struct store_session *out, struct bk_err *err)
{
	_cleanup_unlock_ pthread_mutex_t *lock = sqlite__lock(st);
	_cleanup_stmt_ sqlite3_stmt *stmt = NULL;
	if (sqlite3_prepare_v2(SQ(st)->db,
			       "SELECT " STORE_SESSION_COLS " FROM sessions "
			       "WHERE (id = ?1 OR public_id = ?1) AND (?2 IS NULL OR key_id = ?2)",
			       -1, &stmt, NULL) != SQLITE_OK ||
	    sqlite3_bind_text(stmt, 1, id, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_text(stmt, 2, key_id, -1, SQLITE_STATIC) != SQLITE_OK)
		return sqlite__fail(st, err, "cannot read session '%s'", id);
	int rc = sqlite3_step(stmt);
	if (rc == SQLITE_DONE)
		return 0;
	if (rc != SQLITE_ROW)
		return sqlite__fail(st, err, "cannot read session '%s'", id);
	if (store_session_from_row(stmt, out, err) < 0)
		return -1;
	return 1;
}

/* Returns 1 when the session was deleted, 0 when there was none, -1 on error. */
int sqlite__session_delete(struct store *st, const char *id, struct bk_err *err)
{
	_cleanup_unlock_ pthread_mutex_t *lock = sqlite__lock(st);
	_cleanup_stmt_ sqlite3_stmt *stmt = NULL;
	if (sqlite3_prepare_v2(SQ(st)->db,
			       "DELETE FROM sessions WHERE id = ?1 AND (?2 = '' OR owner = ?2 OR "
			       "owner = '')",
			       -1, &stmt, NULL) != SQLITE_OK ||
	    sqlite3_bind_text(stmt, 1, id, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_text(stmt, 2, st->node, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_step(stmt) != SQLITE_DONE)
		return sqlite__fail(st, err, "cannot delete session '%s'", id);
	return sqlite3_changes(SQ(st)->db) > 0 ? 1 : 0;
}

int sqlite__session_touch(struct store *st, const char *id, int64_t last_active_ms,
			  const struct store_usage *add, struct bk_err *err)
{
	static const struct store_usage none;
	const struct store_usage *u = add ? add : &none;
	_cleanup_unlock_ pthread_mutex_t *lock = sqlite__lock(st);
	_cleanup_stmt_ sqlite3_stmt *stmt = NULL;
	if (sqlite3_prepare_v2(
		SQ(st)->db,
		"UPDATE sessions SET last_active_ms = MAX(last_active_ms, ?1), "
		"exec_count = exec_count + ?2, cpu_ms = cpu_ms + ?3, "
		"vm_runtime_ms = vm_runtime_ms + ?4, net_tx_bytes = net_tx_bytes + ?7, "
		"net_rx_bytes = net_rx_bytes + ?8 WHERE id = ?5 AND (?6 = '' OR owner = ?6)",
		-1, &stmt, NULL) != SQLITE_OK ||
	    sqlite3_bind_int64(stmt, 1, last_active_ms) != SQLITE_OK ||
	    sqlite3_bind_int64(stmt, 2, u->execs) != SQLITE_OK ||
	    sqlite3_bind_int64(stmt, 3, u->cpu_ms) != SQLITE_OK ||
	    sqlite3_bind_int64(stmt, 4, u->vm_runtime_ms) != SQLITE_OK ||
	    sqlite3_bind_text(stmt, 5, id, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_text(stmt, 6, st->node, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_int64(stmt, 7, u->net_tx_bytes) != SQLITE_OK ||
	    sqlite3_bind_int64(stmt, 8, u->net_rx_bytes) != SQLITE_OK ||
	    sqlite3_step(stmt) != SQLITE_DONE)
		return sqlite__fail(st, err, "cannot touch session '%s'", id);
	return sqlite3_changes(SQ(st)->db) > 0 ? 1 : 0;
}

int sqlite__session_set_state(struct store *st, const char *id, enum store_session_state state,
			      struct bk_err *err)
{
	_cleanup_unlock_ pthread_mutex_t *lock = sqlite__lock(st);
	_cleanup_stmt_ sqlite3_stmt *stmt = NULL;
	if (sqlite3_prepare_v2(
		SQ(st)->db,
		"UPDATE sessions SET state = ?1 WHERE id = ?2 AND (?3 = '' OR owner = ?3)", -1,
		&stmt, NULL) != SQLITE_OK ||
	    sqlite3_bind_int(stmt, 1, (int)state) != SQLITE_OK ||
	    sqlite3_bind_text(stmt, 2, id, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_text(stmt, 3, st->node, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_step(stmt) != SQLITE_DONE)
		return sqlite__fail(st, err, "cannot set the state of session '%s'", id);
	return sqlite3_changes(SQ(st)->db) > 0 ? 1 : 0;
}

int sqlite__session_set_network(struct store *st, const char *id, const char *network,
				struct bk_err *err)
{
	_cleanup_unlock_ pthread_mutex_t *lock = sqlite__lock(st);
	_cleanup_stmt_ sqlite3_stmt *stmt = NULL;
	if (sqlite3_prepare_v2(
		SQ(st)->db,
		"UPDATE sessions SET network = ?1 WHERE id = ?2 AND (?3 = '' OR owner = ?3)", -1,
		&stmt, NULL) != SQLITE_OK ||
	    sqlite3_bind_text(stmt, 1, network ? network : "", -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_text(stmt, 2, id, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_text(stmt, 3, st->node, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_step(stmt) != SQLITE_DONE)
		return sqlite__fail(st, err, "cannot set the network of session '%s'", id);
	return sqlite3_changes(SQ(st)->db) > 0 ? 1 : 0;
}

static int session_set_vm_locked(struct store *st, const char *id, enum store_vm_state vm,
				 int64_t spawned_ms, int64_t ends_ms,
				 enum store_session_state state, struct bk_err *err)
{
	_cleanup_stmt_ sqlite3_stmt *stmt = NULL;
	if (sqlite3_prepare_v2(
		SQ(st)->db,
		"UPDATE sessions SET vm_state = ?1, vm_spawned_ms = ?2, vm_ends_ms = ?3, "
		"state = ?4 WHERE id = ?5 AND (?6 = '' OR owner = ?6)",
		-1, &stmt, NULL) != SQLITE_OK ||
	    sqlite3_bind_int(stmt, 1, (int)vm) != SQLITE_OK ||
	    sqlite3_bind_int64(stmt, 2, spawned_ms) != SQLITE_OK ||
	    sqlite3_bind_int64(stmt, 3, ends_ms) != SQLITE_OK ||
	    sqlite3_bind_int(stmt, 4, (int)state) != SQLITE_OK ||
	    sqlite3_bind_text(stmt, 5, id, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_text(stmt, 6, st->node, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_step(stmt) != SQLITE_DONE)
		return sqlite__fail(st, err, "cannot record the VM of session '%s'", id);
	return sqlite3_changes(SQ(st)->db) > 0 ? 1 : 0;
}

/* The key of session id into key_id: 1, or 0 when there is no session. */
static int session_key_of(struct store *st, const char *id, char key_id[32], struct bk_err *err)
{
	_cleanup_stmt_ sqlite3_stmt *stmt = NULL;
	if (sqlite3_prepare_v2(SQ(st)->db, "SELECT key_id FROM sessions WHERE id = ?", -1, &stmt,
			       NULL) != SQLITE_OK ||
	    sqlite3_bind_text(stmt, 1, id, -1, SQLITE_STATIC) != SQLITE_OK)
		return sqlite__fail(st, err, "cannot read session '%s'", id);
	int rc = sqlite3_step(stmt);
	if (rc == SQLITE_DONE)
		return 0;
	if (rc != SQLITE_ROW || sqlite__col_copy(stmt, 0, key_id, 32) < 0)
		return sqlite__fail(st, err, "cannot read session '%s'", id);
	return 1;
}

int sqlite__session_set_vm(struct store *st, const char *id, enum store_vm_state vm,
			   int64_t spawned_ms, int64_t ends_ms, enum store_session_state state,
			   const struct store_cap *cap, struct bk_err *err)
{
	_cleanup_unlock_ pthread_mutex_t *lock = sqlite__lock(st);
	if (cap == NULL)
		return session_set_vm_locked(st, id, vm, spawned_ms, ends_ms, state, err);
	if (sqlite__exec(st, "BEGIN IMMEDIATE", "begin a capped VM spawn", err) < 0)
		return -1;
	char key_id[32];
	int rc = session_key_of(st, id, key_id, err);
	if (rc == 1 && sqlite__cap_check(st, key_id, id, cap, err) < 0)
		rc = -1;
	if (rc == 1)
		rc = session_set_vm_locked(st, id, vm, spawned_ms, ends_ms, state, err);
	return sqlite__tx_end(st, rc, err);
}

int sqlite__session_count(struct store *st, const char *key_id, int64_t now_ms, bool holding,
			  int64_t *out, struct bk_err *err)
{
	_cleanup_unlock_ pthread_mutex_t *lock = sqlite__lock(st);
	if (key_id != NULL)
		return live_count(st, key_id, now_ms, holding, NULL, out, err);
	/* Every key's, for GET /metrics: read a row at a time. */
	_cleanup_stmt_ sqlite3_stmt *stmt = NULL;
	if (sqlite3_prepare_v2(SQ(st)->db,
			       "SELECT COUNT(*) FROM sessions WHERE expires_ms > ?1 "
			       "AND (?2 = 0 OR vm_state = 1)",
			       -1, &stmt, NULL) != SQLITE_OK ||
	    sqlite3_bind_int64(stmt, 1, now_ms) != SQLITE_OK ||
	    sqlite3_bind_int(stmt, 2, holding) != SQLITE_OK || sqlite3_step(stmt) != SQLITE_ROW)
		return sqlite__fail(st, err, "cannot count sessions");
	*out = sqlite3_column_int64(stmt, 0);
	return 0;
}

/* Steps stmt to the next row, for store__session_page(). */
static int sqlite_next_row(void *ctx, size_t i, struct store__row *r, struct bk_err *err)
{
	sqlite3_stmt *stmt = ctx;
	int rc = sqlite3_step(stmt);
	if (rc == SQLITE_DONE)
		return 0;
	if (rc != SQLITE_ROW)
		return bk_err_kind(err, BK_E_INTERNAL, "cannot list sessions: %s",
				   sqlite3_errmsg(sqlite3_db_handle(stmt)));
	*r = sqlite__row(stmt);
	return 1;
}

/* A page of key_id's live sessions, newest first, and their number;
 * called with the lock held. */
static int session_page_unfiltered(struct store *st, const char *key_id, int64_t now_ms, int limit,
				   int offset, struct store_session **out, size_t *n,
				   int64_t *total, struct bk_err *err)
{
	int64_t matched;
	if (live_count(st, key_id, now_ms, false, NULL, &matched, err) < 0)
		return -1;
	_cleanup_stmt_ sqlite3_stmt *stmt = NULL;
	if (sqlite3_prepare_v2(
		SQ(st)->db,
		"SELECT " STORE_SESSION_COLS " FROM sessions WHERE key_id = ? "
		"AND expires_ms > ? ORDER BY created_ms DESC, id DESC LIMIT ? OFFSET ?",
		-1, &stmt, NULL) != SQLITE_OK ||
	    sqlite3_bind_text(stmt, 1, key_id, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_int64(stmt, 2, now_ms) != SQLITE_OK ||
	    sqlite3_bind_int(stmt, 3, limit) != SQLITE_OK ||
	    sqlite3_bind_int(stmt, 4, offset) != SQLITE_OK)
		return sqlite__fail(st, err, "cannot list sessions of key '%s'", key_id);
	int64_t in_page;
	if (store__session_page(sqlite_next_row, stmt, NULL, NULL, limit, 0, out, n, &in_page,
				err) < 0)
		return -1;
	*total = matched;
	return 0;
}

int sqlite__session_list(struct store *st, const char *key_id, int64_t now_ms,
			 store_session_match match, void *ctx, int limit, int offset,
			 struct store_session **out, size_t *n, int64_t *total, struct bk_err *err)
{
	*out = NULL;
	*n = 0;
	*total = 0;
	if (limit < 0)
		return bk_err_field(err, "limit", "limit %d is negative", limit);
	if (offset < 0)
		return bk_err_field(err, "offset", "offset %d is negative", offset);
	_cleanup_unlock_ pthread_mutex_t *lock = sqlite__lock(st);
	/* Without a filter, the page is read on the key's index and the
	 * count is the key's own: reading every session of a key to count
	 * them cost 2 us a session, 3.8 ms of a first page at 2,000
	 * (bench/scale). */
	if (match == NULL)
		return session_page_unfiltered(st, key_id, now_ms, limit, offset, out, n, total,
					       err);
	/* A filter is core's, applied here row by row so that every store
	 * gives it the same meaning. */
	_cleanup_stmt_ sqlite3_stmt *stmt = NULL;
	if (sqlite3_prepare_v2(SQ(st)->db,
			       "SELECT " STORE_SESSION_COLS " FROM sessions WHERE key_id = ? "
			       "AND expires_ms > ? ORDER BY created_ms DESC, id DESC",
			       -1, &stmt, NULL) != SQLITE_OK ||
	    sqlite3_bind_text(stmt, 1, key_id, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_int64(stmt, 2, now_ms) != SQLITE_OK)
		return sqlite__fail(st, err, "cannot list sessions of key '%s'", key_id);
	return store__session_page(sqlite_next_row, stmt, match, ctx, limit, offset, out, n, total,
				   err);
}

int sqlite__session_list_all(struct store *st, struct store_session **out, size_t *n,
			     struct bk_err *err)
{
	*out = NULL;
	*n = 0;
	_cleanup_unlock_ pthread_mutex_t *lock = sqlite__lock(st);
	/* A SQLite file serves one node: whatever another name owned (the
	 * node was renamed, or nothing owned it yet) is this node's now. */
	_cleanup_stmt_ sqlite3_stmt *own = NULL;
	if (st->node[0] &&
	    (sqlite3_prepare_v2(
		 SQ(st)->db, "UPDATE sessions SET owner = ?1, epoch = epoch + 1 WHERE owner <> ?1",
		 -1, &own, NULL) != SQLITE_OK ||
	     sqlite3_bind_text(own, 1, st->node, -1, SQLITE_STATIC) != SQLITE_OK ||
	     sqlite3_step(own) != SQLITE_DONE))
		return sqlite__fail(st, err, "cannot take the sessions of this node");
	_cleanup_stmt_ sqlite3_stmt *stmt = NULL;
	if (sqlite3_prepare_v2(SQ(st)->db,
			       "SELECT " STORE_SESSION_COLS " FROM sessions "
			       "ORDER BY created_ms, id",
			       -1, &stmt, NULL) != SQLITE_OK)
		return sqlite__fail(st, err, "cannot list all sessions");
	_cleanup_page_ struct store__page page = {0};
	int rc;
	while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
		struct store__row r = sqlite__row(stmt);
		if (store__page_add_row(&page, &r, err) < 0)
			return -1;
	}
	if (rc != SQLITE_DONE)
		return sqlite__fail(st, err, "cannot list all sessions");
	store__page_steal(&page, out, n);
	return 0;
}

int sqlite__session_due(struct store *st, int64_t now_ms, char (*ids)[32], size_t max, size_t *n,
			struct bk_err *err)
{
	*n = 0;
	_cleanup_unlock_ pthread_mutex_t *lock = sqlite__lock(st);
	_cleanup_stmt_ sqlite3_stmt *stmt = NULL;
	if (sqlite3_prepare_v2(
		SQ(st)->db,
		"SELECT id, expires_ms AS due FROM sessions WHERE expires_ms <= ?1 "
		"AND (?3 = '' OR owner = ?3 OR owner = '') "
		"UNION SELECT id, vm_ends_ms AS due FROM sessions WHERE vm_ends_ms > 0 "
		"AND vm_ends_ms <= ?1 AND vm_state = 1 AND (?3 = '' OR owner = ?3) "
		"ORDER BY due LIMIT ?2",
		-1, &stmt, NULL) != SQLITE_OK ||
	    sqlite3_bind_int64(stmt, 1, now_ms) != SQLITE_OK ||
	    sqlite3_bind_text(stmt, 3, st->node, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_int64(stmt, 2, (int64_t)max) != SQLITE_OK)
		return sqlite__fail(st, err, "cannot find sessions that are due");
	int rc;
	while (*n < max && (rc = sqlite3_step(stmt)) == SQLITE_ROW) {
		if (sqlite__col_copy(stmt, 0, ids[*n], sizeof(ids[*n])) == 0 &&
		    (*n == 0 || strcmp(ids[*n - 1], ids[*n]) != 0))
			(*n)++;
	}
	return 0;
}

int sqlite__session_claim(struct store *st, const char *id, const char *owner, int64_t epoch,
			  struct bk_err *err)
{
	_cleanup_unlock_ pthread_mutex_t *lock = sqlite__lock(st);
	_cleanup_stmt_ sqlite3_stmt *stmt = NULL;
	if (sqlite3_prepare_v2(SQ(st)->db,
			       "UPDATE sessions SET owner = ?1, epoch = epoch + 1 WHERE id = ?2 "
			       "AND owner = ?3 AND epoch = ?4",
			       -1, &stmt, NULL) != SQLITE_OK ||
	    sqlite3_bind_text(stmt, 1, st->node, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_text(stmt, 2, id, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_text(stmt, 3, owner, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_int64(stmt, 4, epoch) != SQLITE_OK || sqlite3_step(stmt) != SQLITE_DONE)
		return sqlite__fail(st, err, "cannot claim session '%s'", id);
	return sqlite3_changes(SQ(st)->db) > 0 ? 1 : 0;
}

int sqlite__session_release(struct store *st, const char *id, struct bk_err *err)
{
	_cleanup_unlock_ pthread_mutex_t *lock = sqlite__lock(st);
	_cleanup_stmt_ sqlite3_stmt *stmt = NULL;
	if (sqlite3_prepare_v2(
		SQ(st)->db,
		"UPDATE sessions SET owner = '', epoch = epoch + 1 WHERE id = ?1 AND "
		"owner = ?2 AND owner <> '' AND state = ?3",
		-1, &stmt, NULL) != SQLITE_OK ||
	    sqlite3_bind_text(stmt, 1, id, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_text(stmt, 2, st->node, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_int(stmt, 3, STORE_SESSION_DEEP_SLEEP) != SQLITE_OK ||
	    sqlite3_step(stmt) != SQLITE_DONE)
		return sqlite__fail(st, err, "cannot release session '%s'", id);
	return sqlite3_changes(SQ(st)->db) > 0 ? 1 : 0;
}
