/* The SQLite store's asynchronous executions (store/sqlite.c). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/sqlite_int.h"
#include "util/cleanup.h"
#include "util/util.h"

int sqlite__task_insert(struct store *st, const struct store_task *t, struct bk_err *err)
{
	if (store__task_check(t, err) < 0)
		return -1;
	_cleanup_unlock_ pthread_mutex_t *lock = sqlite__lock(st);
	_cleanup_stmt_ sqlite3_stmt *stmt = NULL;
	if (sqlite3_prepare_v2(SQ(st)->db,
			       "INSERT INTO tasks (id, session_id, key_id, status, created_ms) "
			       "VALUES (?, ?, ?, ?, ?)",
			       -1, &stmt, NULL) != SQLITE_OK ||
	    sqlite3_bind_text(stmt, 1, t->id, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_text(stmt, 2, t->session_id, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_text(stmt, 3, t->key_id, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_int(stmt, 4, (int)t->status) != SQLITE_OK ||
	    sqlite3_bind_int64(stmt, 5, t->created_ms) != SQLITE_OK)
		return sqlite__fail(st, err, "cannot insert task '%s'", t->id);
	int rc = sqlite3_step(stmt);
	if (rc == SQLITE_CONSTRAINT_PRIMARYKEY)
		return bk_err_kind(err, BK_E_CONFLICT, "task '%s' exists", t->id);
	if (rc != SQLITE_DONE)
		return sqlite__fail(st, err, "cannot insert task '%s'", t->id);
	return 0;
}

int sqlite__task_update(struct store *st, const struct store_task *t, struct bk_err *err)
{
	if (store__task_check(t, err) < 0)
		return -1;
	_cleanup_unlock_ pthread_mutex_t *lock = sqlite__lock(st);
	_cleanup_stmt_ sqlite3_stmt *stmt = NULL;
	if (sqlite3_prepare_v2(
		SQ(st)->db,
		"UPDATE tasks SET status = ?, stdout = ?, stderr = ?, exit_code = ?, "
		"execution_ms = ?, cpu_ms = ?, finished_ms = ? WHERE id = ?",
		-1, &stmt, NULL) != SQLITE_OK ||
	    sqlite3_bind_int(stmt, 1, (int)t->status) != SQLITE_OK ||
	    sqlite3_bind_blob(stmt, 2, t->out ? t->out : "", (int)t->out_len, SQLITE_STATIC) !=
		SQLITE_OK ||
	    sqlite3_bind_blob(stmt, 3, t->err ? t->err : "", (int)t->err_len, SQLITE_STATIC) !=
		SQLITE_OK ||
	    sqlite3_bind_int(stmt, 4, t->exit_code) != SQLITE_OK ||
	    sqlite3_bind_int64(stmt, 5, t->execution_ms) != SQLITE_OK ||
	    sqlite3_bind_int64(stmt, 6, t->cpu_ms) != SQLITE_OK ||
	    sqlite3_bind_int64(stmt, 7, t->finished_ms) != SQLITE_OK ||
	    sqlite3_bind_text(stmt, 8, t->id, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_step(stmt) != SQLITE_DONE)
		return sqlite__fail(st, err, "cannot update task '%s'", t->id);
	return sqlite3_changes(SQ(st)->db) > 0 ? 1 : 0;
}

int sqlite__task_get(struct store *st, const char *id, const char *key_id, struct store_task *out,
		     struct bk_err *err)
{
	memset(out, 0, sizeof(*out));
	_cleanup_unlock_ pthread_mutex_t *lock = sqlite__lock(st);
	_cleanup_stmt_ sqlite3_stmt *stmt = NULL;
	if (sqlite3_prepare_v2(SQ(st)->db,
			       "SELECT " STORE_TASK_COLS " FROM tasks WHERE id = ?1 AND "
			       "(?2 IS NULL OR key_id = ?2)",
			       -1, &stmt, NULL) != SQLITE_OK ||
	    sqlite3_bind_text(stmt, 1, id, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_text(stmt, 2, key_id, -1, SQLITE_STATIC) != SQLITE_OK)
		return sqlite__fail(st, err, "cannot read task '%s'", id);
	int rc = sqlite3_step(stmt);
	if (rc == SQLITE_DONE)
		return 0;
	if (rc != SQLITE_ROW)
		return sqlite__fail(st, err, "cannot read task '%s'", id);
	struct store__row row = sqlite__row(stmt);
	if (store__task_from_row(&row, out, err) < 0)
		return -1;
	return 1;
}

int sqlite__task_count(struct store *st, const char *key_id, int64_t since_ms, int64_t *out,
		       struct bk_err *err)
{
	_cleanup_unlock_ pthread_mutex_t *lock = sqlite__lock(st);
	_cleanup_stmt_ sqlite3_stmt *stmt = NULL;
	if (sqlite3_prepare_v2(SQ(st)->db,
			       "SELECT COUNT(*) FROM tasks WHERE key_id = ? AND created_ms >= ?",
			       -1, &stmt, NULL) != SQLITE_OK ||
	    sqlite3_bind_text(stmt, 1, key_id, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_int64(stmt, 2, since_ms) != SQLITE_OK || sqlite3_step(stmt) != SQLITE_ROW)
		return sqlite__fail(st, err, "cannot count the tasks of key '%s'", key_id);
	*out = sqlite3_column_int64(stmt, 0);
	return 0;
}

int sqlite__task_purge(struct store *st, int64_t before_ms, bool fail_unfinished, int64_t now_ms,
		       struct bk_err *err)
{
	_cleanup_unlock_ pthread_mutex_t *lock = sqlite__lock(st);
	_cleanup_stmt_ sqlite3_stmt *del = NULL;
	if (sqlite3_prepare_v2(SQ(st)->db, "DELETE FROM tasks WHERE created_ms < ?", -1, &del,
			       NULL) != SQLITE_OK ||
	    sqlite3_bind_int64(del, 1, before_ms) != SQLITE_OK || sqlite3_step(del) != SQLITE_DONE)
		return sqlite__fail(st, err, "cannot purge tasks");
	if (!fail_unfinished)
		return 0;
	_cleanup_stmt_ sqlite3_stmt *fail = NULL;
	if (sqlite3_prepare_v2(
		SQ(st)->db,
		"UPDATE tasks SET status = ?1, finished_ms = ?2, stderr = stderr || "
		"CAST(?3 AS BLOB) WHERE status IN (?4, ?5) AND (?6 = '' OR NOT EXISTS "
		"(SELECT 1 FROM sessions s WHERE s.id = tasks.session_id AND "
		"s.owner <> ?6))",
		-1, &fail, NULL) != SQLITE_OK ||
	    sqlite3_bind_int(fail, 1, STORE_TASK_FAILED) != SQLITE_OK ||
	    sqlite3_bind_int64(fail, 2, now_ms) != SQLITE_OK ||
	    sqlite3_bind_text(fail, 3, "the server restarted before the execution finished\n", -1,
			      SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_int(fail, 4, STORE_TASK_QUEUED) != SQLITE_OK ||
	    sqlite3_bind_int(fail, 5, STORE_TASK_RUNNING) != SQLITE_OK ||
	    sqlite3_bind_text(fail, 6, st->node, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_step(fail) != SQLITE_DONE)
		return sqlite__fail(st, err, "cannot end the tasks of an earlier run");
	return 0;
}
