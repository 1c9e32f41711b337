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

#define STORE_SESSION_COLS                                                                         \
	"id, key_id, created_ms, expires_ms, last_active_ms, state, metadata, memory_mb, cpu, "    \
	"timeout_s, disk_mb, public_id, dialect, env, vcpu, vm_state, vm_lifetime_s, "             \
	"vm_spawned_ms, vm_ends_ms, exec_count, cpu_ms, vm_runtime_ms, network"

static bool store_state_ok(int state)
{
	return state >= STORE_SESSION_ACTIVE && state <= STORE_SESSION_DEEP_SLEEP;
}

static bool store_vm_ok(int vm)
{
	return vm >= STORE_VM_NONE && vm <= STORE_VM_TERMINATED;
}

/* A text column, copied (NULL reads as def). */
static char *col_dup(sqlite3_stmt *stmt, int col, const char *def)
{
	const char *v = (const char *)sqlite3_column_text(stmt, col);
	return strdup(v ? v : def);
}

/* Fills *out from a row of STORE_SESSION_COLS. On failure *out holds nothing
 * to release. */
static int store_session_from_row(sqlite3_stmt *stmt, struct store_session *out, struct bk_err *err)
{
	memset(out, 0, sizeof(*out));
	if (sqlite__col_copy(stmt, 0, out->id, sizeof(out->id)) < 0 ||
	    sqlite__col_copy(stmt, 1, out->key_id, sizeof(out->key_id)) < 0)
		return bk_err_kind(err, BK_E_INTERNAL,
				   "cannot read session: stored id or key id is invalid");
	int state = sqlite3_column_int(stmt, 5);
	if (!store_state_ok(state))
		return bk_err_kind(err, BK_E_INTERNAL, "cannot read session '%s': unknown state %d",
				   out->id, state);
	int vm = sqlite3_column_int(stmt, 15);
	if (!store_vm_ok(vm))
		return bk_err_kind(err, BK_E_INTERNAL, "cannot read session '%s': unknown VM state %d",
				   out->id, vm);
	if (sqlite3_column_type(stmt, 11) != SQLITE_NULL &&
	    sqlite__col_copy(stmt, 11, out->public_id, sizeof(out->public_id)) < 0)
		return bk_err_kind(err, BK_E_INTERNAL, "cannot read session '%s': bad public id",
				   out->id);
	out->metadata = col_dup(stmt, 6, "{}");
	out->env = col_dup(stmt, 13, "{}");
	out->network = col_dup(stmt, 22, "");
	if (out->metadata == NULL || out->env == NULL || out->network == NULL) {
		store_session_release(out);
		return bk_err_set(err, ENOMEM, "cannot read session '%s'", out->id);
	}
	out->created_ms = sqlite3_column_int64(stmt, 2);
	out->expires_ms = sqlite3_column_int64(stmt, 3);
	out->last_active_ms = sqlite3_column_int64(stmt, 4);
	out->state = (enum store_session_state)state;
	out->memory_mb = sqlite3_column_int(stmt, 7);
	out->cpu = sqlite3_column_double(stmt, 8);
	out->timeout_s = sqlite3_column_int(stmt, 9);
	out->disk_mb = sqlite3_column_int(stmt, 10);
	out->dialect = sqlite3_column_int(stmt, 12);
	out->vcpu = sqlite3_column_int(stmt, 14);
	out->vm_state = (enum store_vm_state)vm;
	out->vm_lifetime_s = sqlite3_column_int64(stmt, 16);
	out->vm_spawned_ms = sqlite3_column_int64(stmt, 17);
	out->vm_ends_ms = sqlite3_column_int64(stmt, 18);
	out->exec_count = sqlite3_column_int64(stmt, 19);
	out->cpu_ms = sqlite3_column_int64(stmt, 20);
	out->vm_runtime_ms = sqlite3_column_int64(stmt, 21);
	return 0;
}

int sqlite__session_insert(struct store *st, const struct store_session *s, struct bk_err *err)
{
	if (!sqlite__str_ok(s->id, sizeof(s->id)) || !sqlite__str_ok(s->key_id, sizeof(s->key_id)) ||
	    !sqlite__str_ok(s->public_id, sizeof(s->public_id)))
		return bk_err_kind(err, BK_E_INTERNAL,
				   "cannot insert session: unterminated id or key id");
	if (!store_state_ok((int)s->state) || !store_vm_ok((int)s->vm_state))
		return bk_err_kind(err, BK_E_INTERNAL,
				   "cannot insert session '%s': unknown state %d or VM state %d",
				   s->id, (int)s->state, (int)s->vm_state);
	_cleanup_unlock_ pthread_mutex_t *lock = sqlite__lock(st);
	_cleanup_stmt_ sqlite3_stmt *stmt = NULL;
	int i = 0;
	if (sqlite3_prepare_v2(SQ(st)->db,
			       "INSERT INTO sessions (" STORE_SESSION_COLS ") "
			       "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
		SQLITE_OK)
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
	if (sqlite3_prepare_v2(SQ(st)->db, "DELETE FROM sessions WHERE id = ?", -1, &stmt, NULL) !=
		SQLITE_OK ||
	    sqlite3_bind_text(stmt, 1, id, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_step(stmt) != SQLITE_DONE)
		return sqlite__fail(st, err, "cannot delete session '%s'", id);
	return sqlite3_changes(SQ(st)->db) > 0 ? 1 : 0;
}

int sqlite__session_touch(struct store *st, const char *id, int64_t last_active_ms, int64_t execs,
			  int64_t cpu_ms, int64_t vm_runtime_ms, struct bk_err *err)
{
	_cleanup_unlock_ pthread_mutex_t *lock = sqlite__lock(st);
	_cleanup_stmt_ sqlite3_stmt *stmt = NULL;
	if (sqlite3_prepare_v2(SQ(st)->db,
			       "UPDATE sessions SET last_active_ms = MAX(last_active_ms, ?1), "
			       "exec_count = exec_count + ?2, cpu_ms = cpu_ms + ?3, "
			       "vm_runtime_ms = vm_runtime_ms + ?4 WHERE id = ?5",
			       -1, &stmt, NULL) != SQLITE_OK ||
	    sqlite3_bind_int64(stmt, 1, last_active_ms) != SQLITE_OK ||
	    sqlite3_bind_int64(stmt, 2, execs) != SQLITE_OK ||
	    sqlite3_bind_int64(stmt, 3, cpu_ms) != SQLITE_OK ||
	    sqlite3_bind_int64(stmt, 4, vm_runtime_ms) != SQLITE_OK ||
	    sqlite3_bind_text(stmt, 5, id, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_step(stmt) != SQLITE_DONE)
		return sqlite__fail(st, err, "cannot touch session '%s'", id);
	return sqlite3_changes(SQ(st)->db) > 0 ? 1 : 0;
}

int sqlite__session_set_state(struct store *st, const char *id, enum store_session_state state,
				struct bk_err *err)
{
	_cleanup_unlock_ pthread_mutex_t *lock = sqlite__lock(st);
	_cleanup_stmt_ sqlite3_stmt *stmt = NULL;
	if (sqlite3_prepare_v2(SQ(st)->db, "UPDATE sessions SET state = ? WHERE id = ?", -1, &stmt,
			       NULL) != SQLITE_OK ||
	    sqlite3_bind_int(stmt, 1, (int)state) != SQLITE_OK ||
	    sqlite3_bind_text(stmt, 2, id, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_step(stmt) != SQLITE_DONE)
		return sqlite__fail(st, err, "cannot set the state of session '%s'", id);
	return sqlite3_changes(SQ(st)->db) > 0 ? 1 : 0;
}

int sqlite__session_set_network(struct store *st, const char *id, const char *network,
				struct bk_err *err)
{
	_cleanup_unlock_ pthread_mutex_t *lock = sqlite__lock(st);
	_cleanup_stmt_ sqlite3_stmt *stmt = NULL;
	if (sqlite3_prepare_v2(SQ(st)->db, "UPDATE sessions SET network = ? WHERE id = ?", -1,
			       &stmt, NULL) != SQLITE_OK ||
	    sqlite3_bind_text(stmt, 1, network ? network : "", -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_text(stmt, 2, id, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_step(stmt) != SQLITE_DONE)
		return sqlite__fail(st, err, "cannot set the network of session '%s'", id);
	return sqlite3_changes(SQ(st)->db) > 0 ? 1 : 0;
}

int sqlite__session_set_vm(struct store *st, const char *id, enum store_vm_state vm,
			   int64_t spawned_ms, int64_t ends_ms, enum store_session_state state,
			   struct bk_err *err)
{
	_cleanup_unlock_ pthread_mutex_t *lock = sqlite__lock(st);
	_cleanup_stmt_ sqlite3_stmt *stmt = NULL;
	if (sqlite3_prepare_v2(SQ(st)->db,
			       "UPDATE sessions SET vm_state = ?, vm_spawned_ms = ?, vm_ends_ms = ?, "
			       "state = ? WHERE id = ?",
			       -1, &stmt, NULL) != SQLITE_OK ||
	    sqlite3_bind_int(stmt, 1, (int)vm) != SQLITE_OK ||
	    sqlite3_bind_int64(stmt, 2, spawned_ms) != SQLITE_OK ||
	    sqlite3_bind_int64(stmt, 3, ends_ms) != SQLITE_OK ||
	    sqlite3_bind_int(stmt, 4, (int)state) != SQLITE_OK ||
	    sqlite3_bind_text(stmt, 5, id, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_step(stmt) != SQLITE_DONE)
		return sqlite__fail(st, err, "cannot record the VM of session '%s'", id);
	return sqlite3_changes(SQ(st)->db) > 0 ? 1 : 0;
}

int sqlite__session_count(struct store *st, const char *key_id, int64_t now_ms, bool holding,
			  int64_t *out, struct bk_err *err)
{
	_cleanup_unlock_ pthread_mutex_t *lock = sqlite__lock(st);
	_cleanup_stmt_ sqlite3_stmt *stmt = NULL;
	if (sqlite3_prepare_v2(SQ(st)->db,
			       "SELECT COUNT(*) FROM sessions WHERE (?1 IS NULL OR key_id = ?1) "
			       "AND expires_ms > ?2 AND (?3 = 0 OR vm_state = 1)",
			       -1, &stmt, NULL) != SQLITE_OK ||
	    sqlite3_bind_text(stmt, 1, key_id, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_int64(stmt, 2, now_ms) != SQLITE_OK ||
	    sqlite3_bind_int(stmt, 3, holding) != SQLITE_OK || sqlite3_step(stmt) != SQLITE_ROW)
		return sqlite__fail(st, err, "cannot count sessions of key '%s'", key_id);
	*out = sqlite3_column_int64(stmt, 0);
	return 0;
}

/* A growing array of sessions that releases what it holds unless stolen. */
struct store_page {
	struct store_session *items;
	size_t n, cap;
};

static void cleanup_pagep(struct store_page *p)
{
	for (size_t i = 0; i < p->n; i++)
		store_session_release(&p->items[i]);
	free(p->items);
}

/* Reads the current row into a new last element of p. */
static int store_page_add_row(struct store_page *p, sqlite3_stmt *stmt, struct bk_err *err)
{
	if (p->n == p->cap) {
		size_t cap = p->cap ? p->cap * 2 : 16;
		struct store_session *items = reallocarray(p->items, cap, sizeof(*items));
		if (items == NULL)
			return bk_err_set(err, errno, "cannot list sessions");
		p->items = items;
		p->cap = cap;
	}
	if (store_session_from_row(stmt, &p->items[p->n], err) < 0)
		return -1;
	p->n++;
	return 0;
}

int sqlite__session_list(struct store *st, const char *key_id, int64_t now_ms,
			   store_session_match match, void *ctx, int limit, int offset,
			   struct store_session **out, size_t *n, int64_t *total,
			   struct bk_err *err)
{
	*out = NULL;
	*n = 0;
	*total = 0;
	if (limit < 0)
		return bk_err_field(err, "limit", "limit %d is negative", limit);
	if (offset < 0)
		return bk_err_field(err, "offset", "offset %d is negative", offset);
	/* The filter is core's, applied here row by row so that every store
	 * gives it the same meaning; a key's sessions are few (its plan caps
	 * the live ones), so reading them all is cheap. */
	_cleanup_unlock_ pthread_mutex_t *lock = sqlite__lock(st);
	_cleanup_stmt_ sqlite3_stmt *stmt = NULL;
	if (sqlite3_prepare_v2(SQ(st)->db,
			       "SELECT " STORE_SESSION_COLS " FROM sessions WHERE key_id = ? "
			       "AND expires_ms > ? ORDER BY created_ms DESC, id DESC",
			       -1, &stmt, NULL) != SQLITE_OK ||
	    sqlite3_bind_text(stmt, 1, key_id, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_int64(stmt, 2, now_ms) != SQLITE_OK)
		return sqlite__fail(st, err, "cannot list sessions of key '%s'", key_id);
	__attribute__((cleanup(cleanup_pagep))) struct store_page page = {0};
	int64_t matched = 0;
	int64_t end = (int64_t)offset + limit;
	int rc;
	while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
		if (match != NULL) {
			struct store_session row;
			if (store_session_from_row(stmt, &row, err) < 0)
				return -1;
			bool ok = match(ctx, &row);
			store_session_release(&row);
			if (!ok)
				continue;
		}
		if (matched >= offset && matched < end && store_page_add_row(&page, stmt, err) < 0)
			return -1;
		matched++;
	}
	if (rc != SQLITE_DONE)
		return sqlite__fail(st, err, "cannot list sessions of key '%s'", key_id);
	*n = page.n;
	*total = matched;
	*out = steal_ptr(&page.items);
	page.n = 0;
	return 0;
}

int sqlite__session_list_all(struct store *st, struct store_session **out, size_t *n,
			       struct bk_err *err)
{
	*out = NULL;
	*n = 0;
	_cleanup_unlock_ pthread_mutex_t *lock = sqlite__lock(st);
	_cleanup_stmt_ sqlite3_stmt *stmt = NULL;
	if (sqlite3_prepare_v2(SQ(st)->db,
			       "SELECT " STORE_SESSION_COLS " FROM sessions "
			       "ORDER BY created_ms, id",
			       -1, &stmt, NULL) != SQLITE_OK)
		return sqlite__fail(st, err, "cannot list all sessions");
	__attribute__((cleanup(cleanup_pagep))) struct store_page page = {0};
	int rc;
	while ((rc = sqlite3_step(stmt)) == SQLITE_ROW)
		if (store_page_add_row(&page, stmt, err) < 0)
			return -1;
	if (rc != SQLITE_DONE)
		return sqlite__fail(st, err, "cannot list all sessions");
	*n = page.n;
	*out = steal_ptr(&page.items);
	page.n = 0;
	return 0;
}

int sqlite__session_due(struct store *st, int64_t now_ms, char (*ids)[32], size_t max, size_t *n,
			struct bk_err *err)
{
	*n = 0;
	_cleanup_unlock_ pthread_mutex_t *lock = sqlite__lock(st);
	_cleanup_stmt_ sqlite3_stmt *stmt = NULL;
	if (sqlite3_prepare_v2(SQ(st)->db,
			       "SELECT id, expires_ms AS due FROM sessions WHERE expires_ms <= ?1 "
			       "UNION SELECT id, vm_ends_ms AS due FROM sessions WHERE vm_ends_ms > 0 "
			       "AND vm_ends_ms <= ?1 AND vm_state = 1 ORDER BY due LIMIT ?2",
			       -1, &stmt, NULL) != SQLITE_OK ||
	    sqlite3_bind_int64(stmt, 1, now_ms) != SQLITE_OK ||
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
