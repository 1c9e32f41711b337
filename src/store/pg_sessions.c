/* The PostgreSQL store's sessions (store/pg.c). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/pg_int.h"
#include "util/cleanup.h"
#include "util/util.h"

/* Inserts s; the caller holds the lock. */
static int session_insert_locked(struct store *st, const struct store_session *s,
				 struct bk_err *err)
{
	struct pg_params p = {0};
	pg__text(&p, s->id);
	pg__text(&p, s->key_id);
	pg__int(&p, s->created_ms);
	pg__int(&p, s->expires_ms);
	pg__int(&p, s->last_active_ms);
	pg__int(&p, (int)s->state);
	pg__text(&p, s->metadata ? s->metadata : "{}");
	pg__int(&p, s->memory_mb);
	pg__real(&p, s->cpu);
	pg__int(&p, s->timeout_s);
	pg__int(&p, s->disk_mb);
	pg__text(&p, s->public_id[0] ? s->public_id : NULL);
	pg__int(&p, s->dialect);
	pg__text(&p, s->env ? s->env : "{}");
	pg__int(&p, s->vcpu);
	pg__int(&p, (int)s->vm_state);
	pg__int(&p, s->vm_lifetime_s);
	pg__int(&p, s->vm_spawned_ms);
	pg__int(&p, s->vm_ends_ms);
	pg__int(&p, s->exec_count);
	pg__int(&p, s->cpu_ms);
	pg__int(&p, s->vm_runtime_ms);
	pg__text(&p, s->network ? s->network : "");
	pg__text(&p, s->owner);
	pg__int(&p, s->epoch);
	pg__int(&p, s->net_tx_bytes);
	pg__int(&p, s->net_rx_bytes);
	_Static_assert(STORE_SESSION_NCOLS == 27, "one parameter per column");
	return pg__run(st,
		       "INSERT INTO sessions (" STORE_SESSION_COLS ") VALUES ($1, $2, $3, $4, $5, "
		       "$6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, "
		       "$21, $22, $23, $24, $25, $26, $27)",
		       &p, err, "cannot insert session '%s' for key '%s'", s->id, s->key_id);
}

int pg__session_insert(struct store *st, const struct store_session *s, const struct store_cap *cap,
		       struct bk_err *err)
{
	if (store__session_check(s, err) < 0)
		return -1;
	_cleanup_pg_unlock_ pthread_mutex_t *lock = pg__lock(st);
	if (cap == NULL)
		return session_insert_locked(st, s, err);
	if (pg__begin(st, err) < 0)
		return -1;
	int rc = pg__cap_check(st, s->key_id, NULL, cap, err);
	if (rc == 0)
		rc = session_insert_locked(st, s, err);
	return pg__tx_end(st, rc, err);
}

int pg__session_get(struct store *st, const char *id, const char *key_id, struct store_session *out,
		    struct bk_err *err)
{
	struct pg_params p = {0};
	pg__text(&p, id);
	pg__text(&p, key_id);
	_cleanup_pg_unlock_ pthread_mutex_t *lock = pg__lock(st);
	_cleanup_result_ PGresult *res = NULL;
	if (pg__exec(st,
		     "SELECT " STORE_SESSION_COLS " FROM sessions WHERE (id = $1 OR public_id = "
		     "$1) AND ($2::text IS NULL OR key_id = $2)",
		     &p, &res, err, "cannot read session '%s'", id) < 0)
		return -1;
	if (PQntuples(res) == 0)
		return 0;
	struct store__row r = pg__row(res, 0);
	if (store__session_from_row(&r, out, err) < 0)
		return -1;
	return 1;
}

/* Runs an UPDATE or DELETE of sessions: 1 when it changed a row. */
static int session_change(struct store *st, const char *sql, const struct pg_params *p,
			  const char *what, const char *id, struct bk_err *err)
{
	_cleanup_result_ PGresult *res = NULL;
	if (pg__exec(st, sql, p, &res, err, "cannot %s session '%s'", what, id) < 0)
		return -1;
	return pg__changed(res) > 0 ? 1 : 0;
}

int pg__session_delete(struct store *st, const char *id, struct bk_err *err)
{
	struct pg_params p = {0};
	pg__text(&p, id);
	pg__text(&p, st->node);
	_cleanup_pg_unlock_ pthread_mutex_t *lock = pg__lock(st);
	return session_change(
	    st,
	    "DELETE FROM sessions WHERE id = $1 AND ($2::text = '' OR owner = $2 OR "
	    "owner = '')",
	    &p, "delete", id, err);
}

int pg__session_touch(struct store *st, const char *id, int64_t last_active_ms,
		      const struct store_usage *add, struct bk_err *err)
{
	static const struct store_usage none;
	const struct store_usage *u = add ? add : &none;
	struct pg_params p = {0};
	pg__int(&p, last_active_ms);
	pg__int(&p, u->execs);
	pg__int(&p, u->cpu_ms);
	pg__int(&p, u->vm_runtime_ms);
	pg__text(&p, id);
	pg__text(&p, st->node);
	pg__int(&p, u->net_tx_bytes);
	pg__int(&p, u->net_rx_bytes);
	_cleanup_pg_unlock_ pthread_mutex_t *lock = pg__lock(st);
	return session_change(
	    st,
	    "UPDATE sessions SET last_active_ms = GREATEST(last_active_ms, "
	    "$1::bigint), exec_count = exec_count + $2, cpu_ms = cpu_ms + $3, "
	    "vm_runtime_ms = vm_runtime_ms + $4, net_tx_bytes = net_tx_bytes + $7, "
	    "net_rx_bytes = net_rx_bytes + $8 WHERE id = $5 AND ($6::text = '' OR owner = $6)",
	    &p, "touch", id, err);
}

int pg__session_set_state(struct store *st, const char *id, enum store_session_state state,
			  struct bk_err *err)
{
	struct pg_params p = {0};
	pg__int(&p, (int)state);
	pg__text(&p, id);
	pg__text(&p, st->node);
	_cleanup_pg_unlock_ pthread_mutex_t *lock = pg__lock(st);
	return session_change(st,
			      "UPDATE sessions SET state = $1 WHERE id = $2 AND ($3::text = '' OR "
			      "owner = $3)",
			      &p, "set the state of", id, err);
}

int pg__session_set_network(struct store *st, const char *id, const char *network,
			    struct bk_err *err)
{
	struct pg_params p = {0};
	pg__text(&p, network ? network : "");
	pg__text(&p, id);
	pg__text(&p, st->node);
	_cleanup_pg_unlock_ pthread_mutex_t *lock = pg__lock(st);
	return session_change(
	    st,
	    "UPDATE sessions SET network = $1 WHERE id = $2 AND ($3::text = '' OR "
	    "owner = $3)",
	    &p, "set the network of", id, err);
}

static int session_set_vm_locked(struct store *st, const char *id, enum store_vm_state vm,
				 int64_t spawned_ms, int64_t ends_ms,
				 enum store_session_state state, struct bk_err *err)
{
	struct pg_params p = {0};
	pg__int(&p, (int)vm);
	pg__int(&p, spawned_ms);
	pg__int(&p, ends_ms);
	pg__int(&p, (int)state);
	pg__text(&p, id);
	pg__text(&p, st->node);
	return session_change(st,
			      "UPDATE sessions SET vm_state = $1, vm_spawned_ms = $2, vm_ends_ms = "
			      "$3, state = $4 WHERE id = $5 AND ($6::text = '' OR owner = $6)",
			      &p, "record the VM of", id, err);
}

int pg__session_set_vm(struct store *st, const char *id, enum store_vm_state vm, int64_t spawned_ms,
		       int64_t ends_ms, enum store_session_state state, const struct store_cap *cap,
		       struct bk_err *err)
{
	_cleanup_pg_unlock_ pthread_mutex_t *lock = pg__lock(st);
	if (cap == NULL)
		return session_set_vm_locked(st, id, vm, spawned_ms, ends_ms, state, err);
	if (pg__begin(st, err) < 0)
		return -1;
	struct pg_params p = {0};
	pg__text(&p, id);
	_cleanup_result_ PGresult *res = NULL;
	int rc = pg__exec(st, "SELECT key_id FROM sessions WHERE id = $1", &p, &res, err,
			  "cannot read session '%s'", id);
	if (rc == 0)
		rc = PQntuples(res) > 0 ? 1 : 0;
	if (rc == 1 && pg__cap_check(st, PQgetvalue(res, 0, 0), id, cap, err) < 0)
		rc = -1;
	if (rc == 1)
		rc = session_set_vm_locked(st, id, vm, spawned_ms, ends_ms, state, err);
	return pg__tx_end(st, rc, err);
}

int pg__session_count(struct store *st, const char *key_id, int64_t now_ms, bool holding,
		      int64_t *out, struct bk_err *err)
{
	_cleanup_pg_unlock_ pthread_mutex_t *lock = pg__lock(st);
	if (key_id != NULL)
		return pg__live_count(st, key_id, now_ms, holding, NULL, out, err);
	/* Every key's, for GET /metrics. */
	struct pg_params p = {0};
	pg__int(&p, now_ms);
	pg__int(&p, holding);
	_cleanup_result_ PGresult *res = NULL;
	if (pg__exec(st,
		     "SELECT count(*) FROM sessions WHERE expires_ms > $1 AND "
		     "($2::int = 0 OR vm_state = 1)",
		     &p, &res, err, "cannot count sessions") < 0)
		return -1;
	*out = pg__int_at(res, 0);
	return 0;
}

/* Row i of a PGresult, for store__session_page(). */
static int pg_next_row(void *ctx, size_t i, struct store__row *r, struct bk_err *err)
{
	PGresult *res = ctx;
	if (i >= (size_t)PQntuples(res))
		return 0;
	*r = pg__row(res, (int)i);
	return 1;
}

int pg__session_list(struct store *st, const char *key_id, int64_t now_ms,
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
	struct pg_params p = {0};
	pg__text(&p, key_id);
	pg__int(&p, now_ms);
	_cleanup_pg_unlock_ pthread_mutex_t *lock = pg__lock(st);
	_cleanup_result_ PGresult *res = NULL;
	if (match == NULL) {
		/* Without a filter: the page alone, and the key's count (as
		 * SQLite's), not every session of the key sent over. */
		pg__int(&p, limit);
		pg__int(&p, offset);
		int64_t matched, in_page;
		if (pg__live_count(st, key_id, now_ms, false, NULL, &matched, err) < 0 ||
		    pg__exec(st,
			     "SELECT " STORE_SESSION_COLS " FROM sessions WHERE key_id = $1 AND "
			     "expires_ms > $2 ORDER BY created_ms DESC, id DESC LIMIT $3 OFFSET $4",
			     &p, &res, err, "cannot list sessions of key '%s'", key_id) < 0 ||
		    store__session_page(pg_next_row, res, NULL, NULL, limit, 0, out, n, &in_page,
					err) < 0)
			return -1;
		*total = matched;
		return 0;
	}
	if (pg__exec(st,
		     "SELECT " STORE_SESSION_COLS " FROM sessions WHERE key_id = $1 AND "
		     "expires_ms > $2 ORDER BY created_ms DESC, id DESC",
		     &p, &res, err, "cannot list sessions of key '%s'", key_id) < 0)
		return -1;
	return store__session_page(pg_next_row, res, match, ctx, limit, offset, out, n, total, err);
}

int pg__session_list_all(struct store *st, struct store_session **out, size_t *n,
			 struct bk_err *err)
{
	*out = NULL;
	*n = 0;
	struct pg_params p = {0};
	pg__text(&p, st->node);
	_cleanup_pg_unlock_ pthread_mutex_t *lock = pg__lock(st);
	/* Sessions that no node owns and never did (written before nodes
	 * existed: epoch 0) become this node's; released ones are for
	 * whoever claims them, and those of other nodes are theirs. */
	if (st->node[0] &&
	    pg__run(st,
		    "UPDATE sessions SET owner = $1, epoch = epoch + 1 WHERE owner = '' AND "
		    "epoch = 0",
		    &p, err, "cannot take the sessions no node owns") < 0)
		return -1;
	_cleanup_result_ PGresult *res = NULL;
	if (pg__exec(st,
		     "SELECT " STORE_SESSION_COLS " FROM sessions WHERE $1::text = '' OR owner = "
		     "$1 ORDER BY created_ms, id",
		     &p, &res, err, "cannot list the sessions of this node") < 0)
		return -1;
	_cleanup_page_ struct store__page page = {0};
	for (int i = 0; i < PQntuples(res); i++) {
		struct store__row r = pg__row(res, i);
		if (store__page_add_row(&page, &r, err) < 0)
			return -1;
	}
	store__page_steal(&page, out, n);
	return 0;
}

int pg__session_due(struct store *st, int64_t now_ms, char (*ids)[32], size_t max, size_t *n,
		    struct bk_err *err)
{
	*n = 0;
	struct pg_params p = {0};
	pg__int(&p, now_ms);
	pg__int(&p, (int64_t)max);
	pg__text(&p, st->node);
	_cleanup_pg_unlock_ pthread_mutex_t *lock = pg__lock(st);
	_cleanup_result_ PGresult *res = NULL;
	if (pg__exec(st,
		     "SELECT id, expires_ms AS due FROM sessions WHERE expires_ms <= $1 AND "
		     "($3::text = '' OR owner = $3 OR owner = '') UNION SELECT id, vm_ends_ms AS "
		     "due FROM "
		     "sessions WHERE vm_ends_ms > 0 AND vm_ends_ms <= $1 AND vm_state = 1 AND "
		     "($3::text = '' OR owner = $3) ORDER BY due, id LIMIT $2",
		     &p, &res, err, "cannot find sessions that are due") < 0)
		return -1;
	for (int i = 0; i < PQntuples(res) && *n < max; i++) {
		const char *id = PQgetvalue(res, i, 0);
		if (strlen(id) >= sizeof(ids[*n]))
			continue;
		if (*n > 0 && strcmp(ids[*n - 1], id) == 0)
			continue;
		snprintf(ids[*n], sizeof(ids[*n]), "%s", id);
		(*n)++;
	}
	return 0;
}

int pg__session_claim(struct store *st, const char *id, const char *owner, int64_t epoch,
		      struct bk_err *err)
{
	struct pg_params p = {0};
	pg__text(&p, st->node);
	pg__text(&p, id);
	pg__text(&p, owner);
	pg__int(&p, epoch);
	_cleanup_pg_unlock_ pthread_mutex_t *lock = pg__lock(st);
	return session_change(st,
			      "UPDATE sessions SET owner = $1, epoch = epoch + 1 WHERE id = $2 AND "
			      "owner = $3 AND epoch = $4",
			      &p, "claim", id, err);
}

int pg__session_release(struct store *st, const char *id, struct bk_err *err)
{
	struct pg_params p = {0};
	pg__text(&p, id);
	pg__text(&p, st->node);
	pg__int(&p, STORE_SESSION_DEEP_SLEEP);
	_cleanup_pg_unlock_ pthread_mutex_t *lock = pg__lock(st);
	return session_change(st,
			      "UPDATE sessions SET owner = '', epoch = epoch + 1 WHERE id = $1 AND "
			      "owner = $2 AND owner <> '' AND state = $3",
			      &p, "release", id, err);
}
