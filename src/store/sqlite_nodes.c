/* The SQLite store's nodes (store/sqlite.c): one node uses a SQLite file,
 * but it registers as on PostgreSQL, so that /v1/cluster/nodes reads the
 * same. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "store/sqlite_int.h"
#include "util/cleanup.h"
#include "util/util.h"

int sqlite__node_renew(struct store *st, const struct store_node *n, struct bk_err *err)
{
	if (store__node_check(n, err) < 0)
		return -1;
	_cleanup_unlock_ pthread_mutex_t *lock = sqlite__lock(st);
	_cleanup_stmt_ sqlite3_stmt *stmt = NULL;
	if (sqlite3_prepare_v2(SQ(st)->db,
			       "INSERT INTO nodes (" STORE_NODE_COLS
			       ") VALUES (?1, ?2, ?3, ?4, ?5, "
			       "?6, ?7) ON CONFLICT (name) DO UPDATE SET advertise = ?2, "
			       "started_ms = ?3, renewed_ms = ?4, lease_ms = ?5, free_mb = ?6, "
			       "awake = ?7",
			       -1, &stmt, NULL) != SQLITE_OK ||
	    sqlite3_bind_text(stmt, 1, n->name, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_text(stmt, 2, n->advertise, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_int64(stmt, 3, n->started_ms) != SQLITE_OK ||
	    sqlite3_bind_int64(stmt, 4, n->renewed_ms) != SQLITE_OK ||
	    sqlite3_bind_int64(stmt, 5, n->lease_ms) != SQLITE_OK ||
	    sqlite3_bind_int64(stmt, 6, n->free_mb) != SQLITE_OK ||
	    sqlite3_bind_int64(stmt, 7, n->awake) != SQLITE_OK || sqlite3_step(stmt) != SQLITE_DONE)
		return sqlite__fail(st, err, "cannot renew node '%s'", n->name);
	return 0;
}

int sqlite__node_list(struct store *st, int64_t now_ms, struct store_node **out, size_t *n,
		      struct bk_err *err)
{
	*out = NULL;
	*n = 0;
	_cleanup_unlock_ pthread_mutex_t *lock = sqlite__lock(st);
	_cleanup_stmt_ sqlite3_stmt *stmt = NULL;
	if (sqlite3_prepare_v2(
		SQ(st)->db,
		"SELECT " STORE_NODE_COLS ", (SELECT COUNT(*) FROM sessions s WHERE "
		"s.owner = nodes.name AND s.expires_ms > ?1) FROM nodes ORDER BY name",
		-1, &stmt, NULL) != SQLITE_OK ||
	    sqlite3_bind_int64(stmt, 1, now_ms) != SQLITE_OK)
		return sqlite__fail(st, err, "cannot list nodes");
	_cleanup_free_ struct store_node *items = NULL;
	size_t count = 0, cap = 0;
	int rc;
	while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
		if (count == cap) {
			size_t ncap = cap ? cap * 2 : 8;
			struct store_node *m = realloc(items, ncap * sizeof(*m));
			if (m == NULL)
				return bk_err_set(err, ENOMEM, "cannot list nodes");
			items = m;
			cap = ncap;
		}
		struct store__row r = sqlite__row(stmt);
		if (store__node_from_row(&r, &items[count], err) < 0)
			return -1;
		count++;
	}
	if (rc != SQLITE_DONE)
		return sqlite__fail(st, err, "cannot list nodes");
	*out = steal_ptr(&items);
	*n = count;
	return 0;
}

int sqlite__node_remove(struct store *st, const char *name, struct bk_err *err)
{
	_cleanup_unlock_ pthread_mutex_t *lock = sqlite__lock(st);
	_cleanup_stmt_ sqlite3_stmt *stmt = NULL;
	if (sqlite3_prepare_v2(SQ(st)->db, "DELETE FROM nodes WHERE name = ?1", -1, &stmt, NULL) !=
		SQLITE_OK ||
	    sqlite3_bind_text(stmt, 1, name, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_step(stmt) != SQLITE_DONE)
		return sqlite__fail(st, err, "cannot remove node '%s'", name);
	return 0;
}
