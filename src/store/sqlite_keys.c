/* The SQLite store's keys and idempotent answers (store/sqlite.c). */
#include <errno.h>
#include <limits.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/sqlite_int.h"
#include "util/cleanup.h"
#include "util/util.h"

/* Fills *out from the current row of a SELECT of STORE_KEY_COLS. */
static int store_key_from_row(sqlite3_stmt *stmt, struct store_key *out, struct bk_err *err)
{
	struct store__row r = sqlite__row(stmt);
	return store__key_from_row(&r, out, err);
}

/* Inserts key; an id or hash already stored is BK_E_CONFLICT. */
int sqlite__key_insert(struct store *st, const struct store_key *key, struct bk_err *err)
{
	if (store__key_check(key, err) < 0)
		return -1;
	const char *overrides = key->overrides[0] ? key->overrides : "{}";

	_cleanup_unlock_ pthread_mutex_t *lock = sqlite__lock(st);
	_cleanup_stmt_ sqlite3_stmt *stmt = NULL;
	if (sqlite3_prepare_v2(
		SQ(st)->db,
		"INSERT INTO keys (id, hash, plan, created_ms, revoked_ms, overrides) "
		"VALUES (?, ?, ?, ?, ?, ?)",
		-1, &stmt, NULL) != SQLITE_OK ||
	    sqlite3_bind_text(stmt, 1, key->id, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_blob(stmt, 2, key->hash, sizeof(key->hash), SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_text(stmt, 3, key->plan, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_int64(stmt, 4, key->created_ms) != SQLITE_OK ||
	    sqlite3_bind_int64(stmt, 5, key->revoked_ms) != SQLITE_OK ||
	    sqlite3_bind_text(stmt, 6, overrides, -1, SQLITE_STATIC) != SQLITE_OK)
		return sqlite__fail(st, err, "cannot insert key '%s'", key->id);
	int rc = sqlite3_step(stmt);
	if (rc == SQLITE_CONSTRAINT_PRIMARYKEY || rc == SQLITE_CONSTRAINT_UNIQUE)
		return bk_err_kind(err, BK_E_CONFLICT, "cannot insert key '%s': %s", key->id,
				   sqlite3_errmsg(SQ(st)->db));
	if (rc != SQLITE_DONE)
		return sqlite__fail(st, err, "cannot insert key '%s'", key->id);
	return 0;
}

int sqlite__key_find_by_hash(struct store *st, const uint8_t hash[32], struct store_key *out,
			     struct bk_err *err)
{
	/* The index lookup is not constant-time, and need not be: the hash is
	 * of a random 256-bit secret, so learning how much of a guessed hash
	 * matches a stored one tells an attacker nothing about any secret. The
	 * constant-time compare below keeps the check itself free of a
	 * data-dependent early exit all the same. */
	_cleanup_unlock_ pthread_mutex_t *lock = sqlite__lock(st);
	_cleanup_stmt_ sqlite3_stmt *stmt = NULL;
	if (sqlite3_prepare_v2(SQ(st)->db, "SELECT " STORE_KEY_COLS " FROM keys WHERE hash = ?", -1,
			       &stmt, NULL) != SQLITE_OK ||
	    sqlite3_bind_blob(stmt, 1, hash, 32, SQLITE_STATIC) != SQLITE_OK)
		return sqlite__fail(st, err, "cannot look up key");
	int rc = sqlite3_step(stmt);
	if (rc == SQLITE_DONE)
		return 0;
	if (rc != SQLITE_ROW)
		return sqlite__fail(st, err, "cannot look up key");

	const void *stored = sqlite3_column_blob(stmt, 1);
	if (stored == NULL || sqlite3_column_bytes(stmt, 1) != 32 ||
	    sodium_memcmp(stored, hash, 32) != 0)
		return 0;
	if (store_key_from_row(stmt, out, err) < 0)
		return -1;
	return 1;
}

int sqlite__key_list(struct store *st, struct store_key **out, size_t *n, struct bk_err *err)
{
	*out = NULL;
	*n = 0;
	_cleanup_unlock_ pthread_mutex_t *lock = sqlite__lock(st);
	_cleanup_stmt_ sqlite3_stmt *stmt = NULL;
	if (sqlite3_prepare_v2(SQ(st)->db,
			       "SELECT " STORE_KEY_COLS " FROM keys ORDER BY created_ms, id", -1,
			       &stmt, NULL) != SQLITE_OK)
		return sqlite__fail(st, err, "cannot list keys");
	_cleanup_free_ struct store_key *keys = NULL;
	size_t count = 0, cap = 0;
	int rc;
	while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
		if (count == cap) {
			cap = cap ? cap * 2 : 16;
			struct store_key *more = reallocarray(keys, cap, sizeof(*keys));
			if (more == NULL)
				return bk_err_set(err, errno, "cannot list keys");
			keys = more;
		}
		if (store_key_from_row(stmt, &keys[count], err) < 0)
			return -1;
		count++;
	}
	if (rc != SQLITE_DONE)
		return sqlite__fail(st, err, "cannot list keys");
	*out = steal_ptr(&keys);
	*n = count;
	return 0;
}

int sqlite__key_revoke(struct store *st, const char *id, int64_t revoked_ms, struct bk_err *err)
{
	_cleanup_unlock_ pthread_mutex_t *lock = sqlite__lock(st);
	_cleanup_stmt_ sqlite3_stmt *stmt = NULL;
	if (sqlite3_prepare_v2(SQ(st)->db,
			       "UPDATE keys SET revoked_ms = CASE WHEN revoked_ms = 0 THEN ?1 "
			       "ELSE revoked_ms END WHERE id = ?2",
			       -1, &stmt, NULL) != SQLITE_OK ||
	    sqlite3_bind_int64(stmt, 1, revoked_ms) != SQLITE_OK ||
	    sqlite3_bind_text(stmt, 2, id, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_step(stmt) != SQLITE_DONE)
		return sqlite__fail(st, err, "cannot revoke key '%s'", id);
	return sqlite3_changes(SQ(st)->db) > 0 ? 1 : 0;
}

/* ---- idempotency ---- */

int sqlite__idem_get(struct store *st, const char *key_id, const char *idem_key, int64_t since_ms,
		     struct store_idem *out, struct bk_err *err)
{
	memset(out, 0, sizeof(*out));
	_cleanup_unlock_ pthread_mutex_t *lock = sqlite__lock(st);
	_cleanup_stmt_ sqlite3_stmt *stmt = NULL;
	if (sqlite3_prepare_v2(SQ(st)->db,
			       "SELECT " STORE_IDEM_COLS " FROM idempotency "
			       "WHERE key_id = ? AND idem_key = ? AND created_ms >= ?",
			       -1, &stmt, NULL) != SQLITE_OK ||
	    sqlite3_bind_text(stmt, 1, key_id, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_text(stmt, 2, idem_key, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_int64(stmt, 3, since_ms) != SQLITE_OK)
		return sqlite__fail(st, err, "cannot read idempotency key of key '%s'", key_id);
	int rc = sqlite3_step(stmt);
	if (rc == SQLITE_DONE)
		return 0;
	if (rc != SQLITE_ROW)
		return sqlite__fail(st, err, "cannot read idempotency key of key '%s'", key_id);
	struct store__row row = sqlite__row(stmt);
	if (store__idem_from_row(&row, out, err) < 0)
		return -1;
	return 1;
}

int sqlite__idem_put(struct store *st, const struct store_idem *r, struct bk_err *err)
{
	if (store__idem_check(r, err) < 0)
		return -1;
	_cleanup_unlock_ pthread_mutex_t *lock = sqlite__lock(st);
	_cleanup_stmt_ sqlite3_stmt *stmt = NULL;
	if (sqlite3_prepare_v2(
		SQ(st)->db,
		"INSERT OR REPLACE INTO idempotency (key_id, idem_key, request_hash, "
		"status, content_type, body, created_ms, dropped_len) "
		"VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
		-1, &stmt, NULL) != SQLITE_OK ||
	    sqlite3_bind_text(stmt, 1, r->key_id, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_text(stmt, 2, r->idem_key, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_blob(stmt, 3, r->request_hash, 32, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_int(stmt, 4, r->status) != SQLITE_OK ||
	    sqlite3_bind_text(stmt, 5, r->content_type, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_blob(stmt, 6, r->body ? r->body : "", (int)r->body_len, SQLITE_STATIC) !=
		SQLITE_OK ||
	    sqlite3_bind_int64(stmt, 7, r->created_ms) != SQLITE_OK ||
	    sqlite3_bind_int64(stmt, 8, r->dropped_len) != SQLITE_OK ||
	    sqlite3_step(stmt) != SQLITE_DONE)
		return sqlite__fail(st, err, "cannot store idempotency key of key '%s'", r->key_id);
	return 0;
}

int sqlite__idem_claim(struct store *st, const char *key_id, const char *idem_key, int64_t now_ms,
		       int64_t expires_ms, struct bk_err *err)
{
	/* One statement: the row is inserted, or taken over when its claim
	 * has expired, or left; changes() says which. */
	_cleanup_unlock_ pthread_mutex_t *lock = sqlite__lock(st);
	_cleanup_stmt_ sqlite3_stmt *stmt = NULL;
	if (sqlite3_prepare_v2(SQ(st)->db,
			       "INSERT INTO idem_claims (key_id, idem_key, claimed_ms, expires_ms) "
			       "VALUES (?1, ?2, ?3, ?4) ON CONFLICT (key_id, idem_key) DO UPDATE "
			       "SET claimed_ms = excluded.claimed_ms, expires_ms = "
			       "excluded.expires_ms WHERE idem_claims.expires_ms <= ?3",
			       -1, &stmt, NULL) != SQLITE_OK ||
	    sqlite3_bind_text(stmt, 1, key_id, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_text(stmt, 2, idem_key, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_int64(stmt, 3, now_ms) != SQLITE_OK ||
	    sqlite3_bind_int64(stmt, 4, expires_ms) != SQLITE_OK ||
	    sqlite3_step(stmt) != SQLITE_DONE)
		return sqlite__fail(st, err, "cannot claim idempotency key of key '%s'", key_id);
	return sqlite3_changes(SQ(st)->db) > 0 ? 1 : 0;
}

int sqlite__idem_release(struct store *st, const char *key_id, const char *idem_key,
			 int64_t claimed_ms, struct bk_err *err)
{
	_cleanup_unlock_ pthread_mutex_t *lock = sqlite__lock(st);
	_cleanup_stmt_ sqlite3_stmt *stmt = NULL;
	if (sqlite3_prepare_v2(SQ(st)->db,
			       "DELETE FROM idem_claims WHERE key_id = ? AND idem_key = ? AND "
			       "claimed_ms = ?",
			       -1, &stmt, NULL) != SQLITE_OK ||
	    sqlite3_bind_text(stmt, 1, key_id, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_text(stmt, 2, idem_key, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_int64(stmt, 3, claimed_ms) != SQLITE_OK ||
	    sqlite3_step(stmt) != SQLITE_DONE)
		return sqlite__fail(st, err, "cannot release idempotency key of key '%s'", key_id);
	return sqlite3_changes(SQ(st)->db) > 0 ? 1 : 0;
}

int sqlite__idem_purge(struct store *st, int64_t before_ms, int64_t *n, struct bk_err *err)
{
	_cleanup_unlock_ pthread_mutex_t *lock = sqlite__lock(st);
	_cleanup_stmt_ sqlite3_stmt *claims = NULL;
	if (sqlite3_prepare_v2(SQ(st)->db, "DELETE FROM idem_claims WHERE expires_ms < ?", -1,
			       &claims, NULL) != SQLITE_OK ||
	    sqlite3_bind_int64(claims, 1, before_ms) != SQLITE_OK ||
	    sqlite3_step(claims) != SQLITE_DONE)
		return sqlite__fail(st, err, "cannot purge expired idempotency claims");
	_cleanup_stmt_ sqlite3_stmt *stmt = NULL;
	if (sqlite3_prepare_v2(SQ(st)->db, "DELETE FROM idempotency WHERE created_ms < ?", -1,
			       &stmt, NULL) != SQLITE_OK ||
	    sqlite3_bind_int64(stmt, 1, before_ms) != SQLITE_OK ||
	    sqlite3_step(stmt) != SQLITE_DONE)
		return sqlite__fail(st, err, "cannot purge expired idempotency keys");
	if (n)
		*n = sqlite3_changes(SQ(st)->db);
	return 0;
}

int sqlite__idem_usage(struct store *st, const char *key_id, int64_t since_ms, int64_t *count,
		       int64_t *bytes, struct bk_err *err)
{
	_cleanup_unlock_ pthread_mutex_t *lock = sqlite__lock(st);
	_cleanup_stmt_ sqlite3_stmt *stmt = NULL;
	if (sqlite3_prepare_v2(SQ(st)->db,
			       "SELECT count(*), coalesce(sum(length(body)), 0) FROM idempotency "
			       "WHERE key_id = ? AND created_ms >= ?",
			       -1, &stmt, NULL) != SQLITE_OK ||
	    sqlite3_bind_text(stmt, 1, key_id, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_int64(stmt, 2, since_ms) != SQLITE_OK || sqlite3_step(stmt) != SQLITE_ROW)
		return sqlite__fail(st, err, "cannot count idempotency keys of key '%s'", key_id);
	*count = sqlite3_column_int64(stmt, 0);
	*bytes = sqlite3_column_int64(stmt, 1);
	return 0;
}
