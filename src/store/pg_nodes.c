/* The PostgreSQL store's nodes (store/pg.c): each node's lease and load,
 * renewed by the node itself every few seconds. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "store/pg_int.h"
#include "util/cleanup.h"
#include "util/util.h"

int pg__node_renew(struct store *st, const struct store_node *n, struct bk_err *err)
{
	if (store__node_check(n, err) < 0)
		return -1;
	struct pg_params p = {0};
	pg__text(&p, n->name);
	pg__text(&p, n->advertise);
	pg__int(&p, n->started_ms);
	pg__int(&p, n->renewed_ms);
	pg__int(&p, n->lease_ms);
	pg__int(&p, n->free_mb);
	pg__int(&p, n->awake);
	_cleanup_pg_unlock_ pthread_mutex_t *lock = pg__lock(st);
	return pg__run(st,
		       "INSERT INTO nodes (" STORE_NODE_COLS ") VALUES ($1, $2, $3, $4, $5, $6, "
		       "$7) ON CONFLICT (name) DO UPDATE SET advertise = $2, started_ms = $3, "
		       "renewed_ms = $4, lease_ms = $5, free_mb = $6, awake = $7",
		       &p, err, "cannot renew node '%s'", n->name);
}

int pg__node_list(struct store *st, int64_t now_ms, struct store_node **out, size_t *n,
		  struct bk_err *err)
{
	*out = NULL;
	*n = 0;
	struct pg_params p = {0};
	pg__int(&p, now_ms);
	_cleanup_pg_unlock_ pthread_mutex_t *lock = pg__lock(st);
	_cleanup_result_ PGresult *res = NULL;
	if (pg__exec(st,
		     "SELECT " STORE_NODE_COLS ", (SELECT count(*) FROM sessions s WHERE s.owner = "
		     "nodes.name AND s.expires_ms > $1) FROM nodes ORDER BY name",
		     &p, &res, err, "cannot list nodes") < 0)
		return -1;
	size_t count = (size_t)PQntuples(res);
	_cleanup_free_ struct store_node *items = calloc(count ? count : 1, sizeof(*items));
	if (items == NULL)
		return bk_err_set(err, ENOMEM, "cannot list nodes");
	for (size_t i = 0; i < count; i++) {
		struct store__row r = pg__row(res, (int)i);
		if (store__node_from_row(&r, &items[i], err) < 0)
			return -1;
	}
	*out = steal_ptr(&items);
	*n = count;
	return 0;
}

int pg__node_remove(struct store *st, const char *name, struct bk_err *err)
{
	struct pg_params p = {0};
	pg__text(&p, name);
	_cleanup_pg_unlock_ pthread_mutex_t *lock = pg__lock(st);
	return pg__run(st, "DELETE FROM nodes WHERE name = $1", &p, err, "cannot remove node '%s'",
		       name);
}
