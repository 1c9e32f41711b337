/* The PostgreSQL store's asynchronous executions (store/pg.c). */
#include <stdlib.h>
#include <string.h>

#include "store/pg_int.h"
#include "util/cleanup.h"

int pg__task_insert(struct store *st, const struct store_task *t, struct bk_err *err)
{
	if (store__task_check(t, err) < 0)
		return -1;
	struct pg_params p = {0};
	pg__text(&p, t->id);
	pg__text(&p, t->session_id);
	pg__text(&p, t->key_id);
	pg__int(&p, (int)t->status);
	pg__int(&p, t->created_ms);
	_cleanup_pg_unlock_ pthread_mutex_t *lock = pg__lock(st);
	return pg__run(st,
		       "INSERT INTO tasks (id, session_id, key_id, status, created_ms) VALUES ($1, "
		       "$2, $3, $4, $5)",
		       &p, err, "cannot insert task '%s'", t->id);
}

int pg__task_update(struct store *st, const struct store_task *t, struct bk_err *err)
{
	if (store__task_check(t, err) < 0)
		return -1;
	struct pg_params p = {0};
	pg__int(&p, (int)t->status);
	pg__bytes(&p, t->out ? t->out : "", t->out_len);
	pg__bytes(&p, t->err ? t->err : "", t->err_len);
	pg__int(&p, t->exit_code);
	pg__int(&p, t->execution_ms);
	pg__int(&p, t->cpu_ms);
	pg__int(&p, t->finished_ms);
	pg__text(&p, t->id);
	_cleanup_pg_unlock_ pthread_mutex_t *lock = pg__lock(st);
	_cleanup_result_ PGresult *res = NULL;
	if (pg__exec(st,
		     "UPDATE tasks SET status = $1, stdout = $2, stderr = $3, exit_code = $4, "
		     "execution_ms = $5, cpu_ms = $6, finished_ms = $7 WHERE id = $8",
		     &p, &res, err, "cannot update task '%s'", t->id) < 0)
		return -1;
	return pg__changed(res) > 0 ? 1 : 0;
}

int pg__task_get(struct store *st, const char *id, const char *key_id, struct store_task *out,
		 struct bk_err *err)
{
	memset(out, 0, sizeof(*out));
	struct pg_params p = {0};
	pg__text(&p, id);
	pg__text(&p, key_id);
	_cleanup_pg_unlock_ pthread_mutex_t *lock = pg__lock(st);
	_cleanup_result_ PGresult *res = NULL;
	if (pg__exec(st,
		     "SELECT " STORE_TASK_COLS " FROM tasks WHERE id = $1 AND ($2::text IS NULL "
		     "OR key_id = $2)",
		     &p, &res, err, "cannot read task '%s'", id) < 0)
		return -1;
	if (PQntuples(res) == 0)
		return 0;
	struct store__row r = pg__row(res, 0);
	if (store__task_from_row(&r, out, err) < 0)
		return -1;
	return 1;
}

int pg__task_count(struct store *st, const char *key_id, int64_t since_ms, int64_t *out,
		   struct bk_err *err)
{
	struct pg_params p = {0};
	pg__text(&p, key_id);
	pg__int(&p, since_ms);
	_cleanup_pg_unlock_ pthread_mutex_t *lock = pg__lock(st);
	_cleanup_result_ PGresult *res = NULL;
	if (pg__exec(st, "SELECT count(*) FROM tasks WHERE key_id = $1 AND created_ms >= $2", &p,
		     &res, err, "cannot count the tasks of key '%s'", key_id) < 0)
		return -1;
	*out = pg__int_at(res, 0);
	return 0;
}

int pg__task_purge(struct store *st, int64_t before_ms, bool fail_unfinished, int64_t now_ms,
		   struct bk_err *err)
{
	struct pg_params del = {0};
	pg__int(&del, before_ms);
	_cleanup_pg_unlock_ pthread_mutex_t *lock = pg__lock(st);
	if (pg__run(st, "DELETE FROM tasks WHERE created_ms < $1", &del, err,
		    "cannot purge tasks") < 0)
		return -1;
	if (!fail_unfinished)
		return 0;
	/* With several nodes on one database, a node that starts fails the
	 * unfinished tasks of its own sessions (and of sessions gone) only:
	 * its peers' run on. */
	static const char msg[] = "the server restarted before the execution finished\n";
	struct pg_params p = {0};
	pg__int(&p, STORE_TASK_FAILED);
	pg__int(&p, now_ms);
	pg__bytes(&p, msg, sizeof(msg) - 1);
	pg__int(&p, STORE_TASK_QUEUED);
	pg__int(&p, STORE_TASK_RUNNING);
	pg__text(&p, st->node);
	return pg__run(st,
		       "UPDATE tasks SET status = $1, finished_ms = $2, stderr = stderr || $3 "
		       "WHERE status IN ($4, $5) AND ($6::text = '' OR NOT EXISTS (SELECT 1 FROM "
		       "sessions s WHERE s.id = tasks.session_id AND s.owner <> $6))",
		       &p, err, "cannot end the tasks of an earlier run");
}
