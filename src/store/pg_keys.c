/* The PostgreSQL store's keys, idempotent answers and rate-limit windows
 * (store/pg.c). */
#include <errno.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "store/pg_int.h"
#include "util/cleanup.h"
#include "util/util.h"

int pg__key_insert(struct store *st, const struct store_key *key, struct bk_err *err)
{
	if (store__key_check(key, err) < 0)
		return -1;
	struct pg_params p = {0};
	pg__text(&p, key->id);
	pg__bytes(&p, key->hash, sizeof(key->hash));
	pg__text(&p, key->plan);
	pg__int(&p, key->created_ms);
	pg__int(&p, key->revoked_ms);
	pg__text(&p, key->overrides[0] ? key->overrides : "{}");
	_cleanup_pg_unlock_ pthread_mutex_t *lock = pg__lock(st);
	return pg__run(st,
		       "INSERT INTO keys (id, hash, plan, created_ms, revoked_ms, overrides) "
		       "VALUES ($1, $2, $3, $4, $5, $6)",
		       &p, err, "cannot insert key '%s'", key->id);
}

int pg__key_find_by_hash(struct store *st, const uint8_t hash[32], struct store_key *out,
			 struct bk_err *err)
{
	/* As in store/sqlite_keys.c: the lookup by index need not be
	 * constant-time (the hash is of a random 256-bit secret); the compare
	 * of what it found is. */
	struct pg_params p = {0};
	pg__bytes(&p, hash, 32);
	_cleanup_pg_unlock_ pthread_mutex_t *lock = pg__lock(st);
	_cleanup_result_ PGresult *res = NULL;
	if (pg__exec(st, "SELECT " STORE_KEY_COLS " FROM keys WHERE hash = $1", &p, &res, err,
		     "cannot look up key") < 0)
		return -1;
	if (PQntuples(res) == 0)
		return 0;
	if (PQgetlength(res, 0, 1) != 32 || sodium_memcmp(PQgetvalue(res, 0, 1), hash, 32) != 0)
		return 0;
	struct store__row r = pg__row(res, 0);
	if (store__key_from_row(&r, out, err) < 0)
		return -1;
	return 1;
}

int pg__key_list(struct store *st, struct store_key **out, size_t *n, struct bk_err *err)
{
	*out = NULL;
	*n = 0;
	_cleanup_pg_unlock_ pthread_mutex_t *lock = pg__lock(st);
	_cleanup_result_ PGresult *res = NULL;
	if (pg__exec(st, "SELECT " STORE_KEY_COLS " FROM keys ORDER BY created_ms, id", NULL, &res,
		     err, "cannot list keys") < 0)
		return -1;
	size_t count = (size_t)PQntuples(res);
	_cleanup_free_ struct store_key *keys = calloc(count + 1, sizeof(*keys));
	if (keys == NULL)
		return bk_err_set(err, errno, "cannot list keys");
	for (size_t i = 0; i < count; i++) {
		struct store__row r = pg__row(res, (int)i);
		if (store__key_from_row(&r, &keys[i], err) < 0)
			return -1;
	}
	*out = steal_ptr(&keys);
	*n = count;
	return 0;
}

int pg__key_revoke(struct store *st, const char *id, int64_t revoked_ms, struct bk_err *err)
{
	struct pg_params p = {0};
	pg__int(&p, revoked_ms);
	pg__text(&p, id);
	_cleanup_pg_unlock_ pthread_mutex_t *lock = pg__lock(st);
	_cleanup_result_ PGresult *res = NULL;
	if (pg__exec(st,
		     "UPDATE keys SET revoked_ms = CASE WHEN revoked_ms = 0 THEN $1 ELSE "
		     "revoked_ms END WHERE id = $2",
		     &p, &res, err, "cannot revoke key '%s'", id) < 0)
		return -1;
	return pg__changed(res) > 0 ? 1 : 0;
}

/* ---- idempotency ---- */

int pg__idem_get(struct store *st, const char *key_id, const char *idem_key, int64_t since_ms,
		 struct store_idem *out, struct bk_err *err)
{
	memset(out, 0, sizeof(*out));
	struct pg_params p = {0};
	pg__text(&p, key_id);
	pg__text(&p, idem_key);
	pg__int(&p, since_ms);
	_cleanup_pg_unlock_ pthread_mutex_t *lock = pg__lock(st);
	_cleanup_result_ PGresult *res = NULL;
	if (pg__exec(st,
		     "SELECT " STORE_IDEM_COLS " FROM idempotency WHERE key_id = $1 AND "
		     "idem_key = $2 AND created_ms >= $3",
		     &p, &res, err, "cannot read idempotency key of key '%s'", key_id) < 0)
		return -1;
	if (PQntuples(res) == 0)
		return 0;
	struct store__row r = pg__row(res, 0);
	if (store__idem_from_row(&r, out, err) < 0)
		return -1;
	return 1;
}

int pg__idem_put(struct store *st, const struct store_idem *r, struct bk_err *err)
{
	if (store__idem_check(r, err) < 0)
		return -1;
	struct pg_params p = {0};
	pg__text(&p, r->key_id);
	pg__text(&p, r->idem_key);
	pg__bytes(&p, r->request_hash, 32);
	pg__int(&p, r->status);
	pg__text(&p, r->content_type);
	pg__bytes(&p, r->body ? r->body : "", r->body_len);
	pg__int(&p, r->created_ms);
	pg__int(&p, r->dropped_len);
	_cleanup_pg_unlock_ pthread_mutex_t *lock = pg__lock(st);
	return pg__run(st,
		       "INSERT INTO idempotency (" STORE_IDEM_COLS ") "
		       "VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (key_id, idem_key) "
		       "DO UPDATE SET request_hash = EXCLUDED.request_hash, status = "
		       "EXCLUDED.status, content_type = EXCLUDED.content_type, body = "
		       "EXCLUDED.body, created_ms = EXCLUDED.created_ms, dropped_len = "
		       "EXCLUDED.dropped_len",
		       &p, err, "cannot store idempotency key of key '%s'", r->key_id);
}

int pg__idem_claim(struct store *st, const char *key_id, const char *idem_key, int64_t now_ms,
		   int64_t expires_ms, struct bk_err *err)
{
	/* One statement, atomic against every other node's: the row is
	 * inserted, or taken over when its claim has expired, or left; the
	 * rows it changed say which. */
	struct pg_params p = {0};
	pg__text(&p, key_id);
	pg__text(&p, idem_key);
	pg__int(&p, now_ms);
	pg__int(&p, expires_ms);
	_cleanup_pg_unlock_ pthread_mutex_t *lock = pg__lock(st);
	_cleanup_result_ PGresult *res = NULL;
	if (pg__exec(st,
		     "INSERT INTO idem_claims (key_id, idem_key, claimed_ms, expires_ms) "
		     "VALUES ($1, $2, $3, $4) ON CONFLICT (key_id, idem_key) DO UPDATE SET "
		     "claimed_ms = EXCLUDED.claimed_ms, expires_ms = EXCLUDED.expires_ms "
		     "WHERE idem_claims.expires_ms <= $3",
		     &p, &res, err, "cannot claim idempotency key of key '%s'", key_id) < 0)
		return -1;
	return pg__changed(res) > 0 ? 1 : 0;
}

int pg__idem_release(struct store *st, const char *key_id, const char *idem_key, int64_t claimed_ms,
		     struct bk_err *err)
{
	struct pg_params p = {0};
	pg__text(&p, key_id);
	pg__text(&p, idem_key);
	pg__int(&p, claimed_ms);
	_cleanup_pg_unlock_ pthread_mutex_t *lock = pg__lock(st);
	_cleanup_result_ PGresult *res = NULL;
	if (pg__exec(st,
		     "DELETE FROM idem_claims WHERE key_id = $1 AND idem_key = $2 AND "
		     "claimed_ms = $3",
		     &p, &res, err, "cannot release idempotency key of key '%s'", key_id) < 0)
		return -1;
	return pg__changed(res) > 0 ? 1 : 0;
}

int pg__idem_purge(struct store *st, int64_t before_ms, int64_t *n, struct bk_err *err)
{
	struct pg_params p = {0};
	pg__int(&p, before_ms);
	_cleanup_pg_unlock_ pthread_mutex_t *lock = pg__lock(st);
	if (pg__run(st, "DELETE FROM idem_claims WHERE expires_ms < $1", &p, err,
		    "cannot purge expired idempotency claims") < 0)
		return -1;
	_cleanup_result_ PGresult *res = NULL;
	if (pg__exec(st, "DELETE FROM idempotency WHERE created_ms < $1", &p, &res, err,
		     "cannot purge expired idempotency keys") < 0)
		return -1;
	if (n)
		*n = pg__changed(res);
	return 0;
}

int pg__idem_usage(struct store *st, const char *key_id, int64_t since_ms, int64_t *count,
		   int64_t *bytes, struct bk_err *err)
{
	struct pg_params p = {0};
	pg__text(&p, key_id);
	pg__int(&p, since_ms);
	_cleanup_pg_unlock_ pthread_mutex_t *lock = pg__lock(st);
	_cleanup_result_ PGresult *res = NULL;
	if (pg__exec(st,
		     "SELECT count(*), coalesce(sum(length(body)), 0)::bigint FROM idempotency "
		     "WHERE key_id = $1 AND created_ms >= $2",
		     &p, &res, err, "cannot count idempotency keys of key '%s'", key_id) < 0)
		return -1;
	*count = pg__int_at(res, 0);
	*bytes = pg__int_at(res, 1);
	return 0;
}

/* ---- rate limits ---- */

int pg__rate_count(struct store *st, const char *key_id, int64_t now_ms, int64_t window_ms,
		   int64_t *start_ms, int64_t *count, struct bk_err *err)
{
	/* The key's row, inserted, reopened when its window has closed, or
	 * counted; the row lock orders the nodes' requests, so that the
	 * first `limit` of a window are the ones allowed, wherever they
	 * came. A node whose clock is behind the window's start counts in
	 * it (it cannot reopen it). */
	struct pg_params p = {0};
	pg__text(&p, key_id);
	pg__int(&p, now_ms);
	pg__int(&p, window_ms);
	_cleanup_pg_unlock_ pthread_mutex_t *lock = pg__lock(st);
	_cleanup_result_ PGresult *res = NULL;
	if (pg__exec(st,
		     "INSERT INTO rate_windows AS r (key_id, start_ms, count) VALUES ($1, $2, 1) "
		     "ON CONFLICT (key_id) DO UPDATE SET "
		     "start_ms = CASE WHEN r.start_ms <= $2 - $3 THEN $2 ELSE r.start_ms END, "
		     "count = CASE WHEN r.start_ms <= $2 - $3 THEN 1 ELSE r.count + 1 END "
		     "RETURNING start_ms, count",
		     &p, &res, err, "cannot count a request of key '%s' against its rate limit",
		     key_id) < 0)
		return -1;
	*start_ms = pg__int_at(res, 0);
	*count = pg__int_at(res, 1);
	return 0;
}
