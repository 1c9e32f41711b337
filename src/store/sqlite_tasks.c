/* The SQLite store's asynchronous executions (store/sqlite.c). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/sqlite_int.h"
#include "util/cleanup.h"
#include "util/util.h"

#define TASK_COLS                                                                                  \
	"id, session_id, key_id, status, stdout, stderr, exit_code, execution_ms, cpu_ms, "        \
	"created_ms, finished_ms"

static bool task_status_ok(int s)
{
	return s >= STORE_TASK_QUEUED && s <= STORE_TASK_KILLED;
}

int sqlite__task_insert(struct store *st, const struct store_task *t, struct bk_err *err)
{
	if (!sqlite__str_ok(t->id, sizeof(t->id)) ||
	    !sqlite__str_ok(t->session_id, sizeof(t->session_id)) ||
	    !sqlite__str_ok(t->key_id, sizeof(t->key_id)) || !task_status_ok((int)t->status))
		return bk_err_kind(err, BK_E_INTERNAL, "cannot insert task: invalid fields");
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
	if (!task_status_ok((int)t->status) || t->out_len > INT32_MAX || t->err_len > INT32_MAX)
		return bk_err_kind(err, BK_E_INTERNAL, "cannot update task '%s': invalid fields",
				   t->id);
	_cleanup_unlock_ pthread_mutex_t *lock = sqlite__lock(st);
	_cleanup_stmt_ sqlite3_stmt *stmt = NULL;
	if (sqlite3_prepare_v2(SQ(st)->db,
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

/* A blob column as a malloc'd NUL-terminated string. */
static char *blob_dup(sqlite3_stmt *stmt, int col, size_t *len)
{
	const void *b = sqlite3_column_blob(stmt, col);
	int n = sqlite3_column_bytes(stmt, col);
	char *s = malloc((size_t)n + 1);
	if (s == NULL)
		return NULL;
	if (n > 0)
		memcpy(s, b, (size_t)n);
	s[n] = '\0';
	*len = (size_t)n;
	return s;
}

int sqlite__task_get(struct store *st, const char *id, const char *key_id, struct store_task *out,
		     struct bk_err *err)
{
	memset(out, 0, sizeof(*out));
	_cleanup_unlock_ pthread_mutex_t *lock = sqlite__lock(st);
	_cleanup_stmt_ sqlite3_stmt *stmt = NULL;
	if (sqlite3_prepare_v2(SQ(st)->db,
			       "SELECT " TASK_COLS " FROM tasks WHERE id = ?1 AND "
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
	int status = sqlite3_column_int(stmt, 3);
	if (sqlite__col_copy(stmt, 0, out->id, sizeof(out->id)) < 0 ||
	    sqlite__col_copy(stmt, 1, out->session_id, sizeof(out->session_id)) < 0 ||
	    sqlite__col_copy(stmt, 2, out->key_id, sizeof(out->key_id)) < 0 ||
	    !task_status_ok(status))
		return bk_err_kind(err, BK_E_INTERNAL, "cannot read task '%s': invalid row", id);
	out->status = (enum store_task_status)status;
	out->out = blob_dup(stmt, 4, &out->out_len);
	out->err = blob_dup(stmt, 5, &out->err_len);
	if (out->out == NULL || out->err == NULL) {
		store_task_release(out);
		return bk_err_set(err, ENOMEM, "cannot read task '%s'", id);
	}
	out->exit_code = sqlite3_column_int(stmt, 6);
	out->execution_ms = sqlite3_column_int64(stmt, 7);
	out->cpu_ms = sqlite3_column_int64(stmt, 8);
	out->created_ms = sqlite3_column_int64(stmt, 9);
	out->finished_ms = sqlite3_column_int64(stmt, 10);
	return 1;
}

int sqlite__task_count(struct store *st, const char *key_id, int64_t since_ms, int64_t *out,
		       struct bk_err *err)
{
	_cleanup_unlock_ pthread_mutex_t *lock = sqlite__lock(st);
	_cleanup_stmt_ sqlite3_stmt *stmt = NULL;
	if (sqlite3_prepare_v2(SQ(st)->db,
			       "SELECT COUNT(*) FROM tasks WHERE key_id = ? AND created_ms >= ?", -1,
			       &stmt, NULL) != SQLITE_OK ||
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
	if (sqlite3_prepare_v2(SQ(st)->db,
			       "UPDATE tasks SET status = ?1, finished_ms = ?2, stderr = stderr || "
			       "CAST(?3 AS BLOB) WHERE status IN (?4, ?5)",
			       -1, &fail, NULL) != SQLITE_OK ||
	    sqlite3_bind_int(fail, 1, STORE_TASK_FAILED) != SQLITE_OK ||
	    sqlite3_bind_int64(fail, 2, now_ms) != SQLITE_OK ||
	    sqlite3_bind_text(fail, 3, "the server restarted before the execution finished\n", -1,
			      SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_int(fail, 4, STORE_TASK_QUEUED) != SQLITE_OK ||
	    sqlite3_bind_int(fail, 5, STORE_TASK_RUNNING) != SQLITE_OK ||
	    sqlite3_step(fail) != SQLITE_DONE)
		return sqlite__fail(st, err, "cannot end the tasks of an earlier run");
	return 0;
}
