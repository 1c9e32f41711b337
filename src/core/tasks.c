/* Asynchronous executions (InstaVM's execute_async): each task runs on a
 * thread of its own, in a one-shot interpreter of its own, and its result
 * goes to the store, where it is kept CORE_TASK_KEEP_MS and survives a
 * restart.
 *
 * Bounds, so that no key starves another: a session runs at most
 * CORE_TASKS_PER_SESSION tasks at once, the daemon at most TASKS_MAX, and
 * a key keeps at most CORE_TASKS_PER_KEY results; each result keeps
 * CORE_TASK_OUTPUT_MAX bytes of each stream.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/core_int.h"
#include "util/cleanup.h"

#define TASKS_MAX 256
#define TASK_PURGE_EVERY_MS (60 * 1000LL)

struct task {
	struct core *core;
	char id[40];
	char session[40];
	char session_internal[32];
	struct core_key key;
	char *code;
	enum core_language language;
	int64_t timeout_s;
	int64_t created_ms;
	struct task *next; /* in tasks->running */
};

struct core_tasks {
	pthread_mutex_t lock;
	pthread_cond_t done; /* a task ended */
	struct task *running;
	int n;
	bool stopping;
	int64_t last_purge_ms;
};

const char *core_task_status_name(enum core_task_status s)
{
	static const char *const names[] = {"queued", "running", "completed",
					    "failed", "timeout", "killed"};
	return (unsigned)s < ARRAY_SIZE(names) ? names[s] : "failed";
}

void core_task_info_release(struct core_task_info *t)
{
	free(t->stdout_text);
	free(t->stderr_text);
	t->stdout_text = t->stderr_text = NULL;
}

static void task_free(struct task *t)
{
	free(t->code);
	free(t);
}

static bool task_cancelled(void *ctx)
{
	struct task *t = ctx;
	struct core_tasks *ts = t->core->tasks;
	pthread_mutex_lock(&ts->lock);
	bool stop = ts->stopping;
	pthread_mutex_unlock(&ts->lock);
	return stop;
}

/* Copies at most CORE_TASK_OUTPUT_MAX bytes of text. */
static char *keep(const char *text, size_t len, size_t *out_len)
{
	size_t n = len < CORE_TASK_OUTPUT_MAX ? len : CORE_TASK_OUTPUT_MAX;
	char *s = malloc(n + 1);
	if (s) {
		memcpy(s, text ? text : "", n);
		s[n] = '\0';
	}
	*out_len = s ? n : 0;
	return s;
}

static void task_run(struct task *t)
{
	struct core *core = t->core;
	struct store_task rec = {.status = STORE_TASK_RUNNING, .created_ms = t->created_ms};
	snprintf(rec.id, sizeof(rec.id), "%s", t->id);
	struct bk_err err = BK_ERR_INIT;
	if (core->store->ops->task_update(core->store, &rec, &err) < 0)
		fprintf(stderr, "bunkerd: task %s: %s\n", t->id, err.msg);
	struct core_exec_req req = {
	    .language = t->language,
	    .code = t->code,
	    .timeout_s = t->timeout_s,
	    .clamp_timeout = true,
	    .fresh = true,
	    .cancelled = task_cancelled,
	    .ctx = t,
	};
	struct core_exec_result res;
	int64_t t0 = mono_us();
	bk_err_clear(&err);
	int r = core_execute(core, &t->key, t->session, &req, &res, &err);
	rec.finished_ms = now_ms();
	if (r == 0) {
		/* Interrupted by the daemon's stop: it did not finish, and a
		 * last stderr line says why. */
		bool stopped = task_cancelled(t);
		rec.status = stopped	     ? STORE_TASK_FAILED
			     : res.timed_out ? STORE_TASK_TIMEOUT
					     : STORE_TASK_COMPLETED;
		rec.exit_code = res.exit_code;
		rec.out = keep(res.stdout_text, res.stdout_len, &rec.out_len);
		_cleanup_free_ char *err_text = NULL;
		int n = stopped
			    ? asprintf(&err_text,
				       "%.*s%sbunkerd stopped during the task, which "
				       "did not finish\n",
				       (int)res.stderr_len, res.stderr_text ? res.stderr_text : "",
				       res.stderr_len && res.stderr_text[res.stderr_len - 1] != '\n'
					   ? "\n"
					   : "")
			    : -1;
		rec.err = n > 0 ? keep(err_text, (size_t)n, &rec.err_len)
				: keep(res.stderr_text, res.stderr_len, &rec.err_len);
		rec.execution_ms = res.execution_time_ms;
		rec.cpu_ms = res.cpu_time_ms;
		core_exec_result_release(&res);
	} else {
		/* The session or its VM went away under it: killed; anything
		 * else: failed, and said why. */
		rec.status = err.kind == BK_E_NOT_FOUND || task_cancelled(t) ? STORE_TASK_KILLED
									     : STORE_TASK_FAILED;
		rec.exit_code = -1;
		const char *why = bk_err_is_set(&err) ? err.msg : "the execution failed";
		char line[700];
		int n = snprintf(
		    line, sizeof(line), "%s\n",
		    err.kind == BK_E_INTERNAL ? "the execution failed on the server's side" : why);
		rec.err = keep(line, n > 0 ? (size_t)n : 0, &rec.err_len);
		rec.execution_ms = (mono_us() - t0) / 1000;
	}
	struct bk_err uerr = BK_ERR_INIT;
	if (core->store->ops->task_update(core->store, &rec, &uerr) < 0)
		fprintf(stderr, "bunkerd: task %s: %s\n", t->id, uerr.msg);
	free(rec.out);
	free(rec.err);
}

static void *task_main(void *arg)
{
	struct task *t = arg;
	struct core_tasks *ts = t->core->tasks;
	task_run(t);
	pthread_mutex_lock(&ts->lock);
	for (struct task **pp = &ts->running; *pp; pp = &(*pp)->next) {
		if (*pp == t) {
			*pp = t->next;
			break;
		}
	}
	ts->n--;
	pthread_cond_broadcast(&ts->done);
	pthread_mutex_unlock(&ts->lock);
	task_free(t);
	return NULL;
}

/* With ts->lock held: tasks running in session id. */
static int running_in(struct core_tasks *ts, const char *id)
{
	int n = 0;
	for (struct task *t = ts->running; t; t = t->next)
		n += strcmp(t->session_internal, id) == 0;
	return n;
}

/* Purges results past their time, at most once a minute. */
static void purge_now_and_then(struct core *core, bool fail_unfinished)
{
	struct core_tasks *ts = core->tasks;
	int64_t now = now_ms();
	pthread_mutex_lock(&ts->lock);
	bool due = fail_unfinished || now - ts->last_purge_ms >= TASK_PURGE_EVERY_MS;
	if (due)
		ts->last_purge_ms = now;
	pthread_mutex_unlock(&ts->lock);
	struct bk_err err = BK_ERR_INIT;
	if (due && core->store->ops->task_purge(core->store, now - CORE_TASK_KEEP_MS,
						fail_unfinished, now, &err) < 0)
		fprintf(stderr, "bunkerd: %s\n", err.msg);
}

int core_task_submit(struct core *core, const struct core_key *key, const char *id,
		     const struct core_exec_req *req, char *task_id, struct bk_err *err)
{
	struct core_tasks *ts = core->tasks;
	if (req->language == CORE_LANG_NONE || req->code == NULL)
		return bk_err_field(err, "command", "the program text is required");
	purge_now_and_then(core, false);
	int64_t kept = 0, now = now_ms();
	if (core->store->ops->task_count(core->store, key->id, now - CORE_TASK_KEEP_MS, &kept,
					 err) < 0)
		return -1;
	if (kept >= CORE_TASKS_PER_KEY)
		return bk_err_kind(err, BK_E_LIMIT,
				   "%d asynchronous executions kept in the last 24 hours: the "
				   "most a key may have",
				   CORE_TASKS_PER_KEY);
	/* The VM is spawned now, as by a synchronous execution. */
	struct session *s;
	struct sbx *sbx;
	if (core__session_enter(core, key, id, &s, &sbx, err) < 0)
		return -1;
	char internal[32];
	snprintf(internal, sizeof(internal), "%s", s->id);
	core__session_leave(core, s);

	struct task *t = calloc(1, sizeof(*t));
	if (t == NULL || (t->code = strdup(req->code)) == NULL) {
		free(t);
		return bk_err_set(err, ENOMEM, "cannot queue the execution");
	}
	t->core = core;
	t->key = *key;
	t->language = req->language;
	t->timeout_s = req->timeout_s;
	t->created_ms = now;
	snprintf(t->session, sizeof(t->session), "%s", id);
	snprintf(t->session_internal, sizeof(t->session_internal), "%s", internal);
	if (core__uuid_v4(t->id, err) < 0) {
		task_free(t);
		return -1;
	}
	struct store_task rec = {.status = STORE_TASK_QUEUED, .created_ms = now};
	snprintf(rec.id, sizeof(rec.id), "%s", t->id);
	snprintf(rec.session_id, sizeof(rec.session_id), "%s", internal);
	snprintf(rec.key_id, sizeof(rec.key_id), "%s", key->id);

	pthread_mutex_lock(&ts->lock);
	int rc = 0;
	if (ts->stopping)
		rc = bk_err_kind(err, BK_E_UNAVAILABLE, "the server is stopping");
	else if (running_in(ts, internal) >= CORE_TASKS_PER_SESSION)
		rc = bk_err_kind(err, BK_E_LIMIT,
				 "%d asynchronous executions already run in session '%s'",
				 CORE_TASKS_PER_SESSION, id);
	else if (ts->n >= TASKS_MAX)
		rc = bk_err_kind(err, BK_E_UNAVAILABLE,
				 "the server runs %d asynchronous executions: try again soon",
				 TASKS_MAX);
	if (rc == 0)
		rc = core->store->ops->task_insert(core->store, &rec, err);
	pthread_t thread;
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	if (rc == 0) {
		t->next = ts->running;
		ts->running = t;
		ts->n++;
		int e = pthread_create(&thread, &attr, task_main, t);
		if (e != 0) {
			ts->running = t->next;
			ts->n--;
			rec.status = STORE_TASK_FAILED;
			rec.finished_ms = now_ms();
			core->store->ops->task_update(core->store, &rec, NULL);
			rc = bk_err_set(err, e, "cannot start the execution");
		}
	}
	pthread_attr_destroy(&attr);
	pthread_mutex_unlock(&ts->lock);
	if (rc < 0) {
		task_free(t);
		return -1;
	}
	snprintf(task_id, 40, "%s", rec.id);
	/* t is owned by the running list and its thread from here */
	/* cppcheck-suppress memleak */
	return 0;
}

int core_task_get(struct core *core, const struct core_key *key, const char *task_id,
		  struct core_task_info *out, struct bk_err *err)
{
	memset(out, 0, sizeof(*out));
	struct store_task rec;
	int r = core->store->ops->task_get(core->store, task_id, key->id, &rec, err);
	if (r < 0)
		return -1;
	if (r == 0 || rec.created_ms < now_ms() - CORE_TASK_KEEP_MS) {
		if (r)
			store_task_release(&rec);
		return bk_err_kind(err, BK_E_NOT_FOUND, "execution '%s' not found", task_id);
	}
	snprintf(out->id, sizeof(out->id), "%s", rec.id);
	out->status = (enum core_task_status)rec.status;
	out->stdout_text = steal_ptr(&rec.out);
	out->stderr_text = steal_ptr(&rec.err);
	out->stdout_len = rec.out_len;
	out->stderr_len = rec.err_len;
	out->exit_code = rec.exit_code;
	out->execution_ms = rec.execution_ms;
	out->cpu_ms = rec.cpu_ms;
	out->created_ms = rec.created_ms;
	out->finished_ms = rec.finished_ms;
	store_task_release(&rec);
	return 0;
}

int core__tasks_start(struct core *core, struct bk_err *err)
{
	struct core_tasks *ts = calloc(1, sizeof(*ts));
	if (ts == NULL)
		return bk_err_set(err, ENOMEM, "cannot start");
	pthread_mutex_init(&ts->lock, NULL);
	pthread_cond_init(&ts->done, NULL);
	core->tasks = ts;
	/* Tasks of an earlier run died with it. */
	purge_now_and_then(core, true);
	return 0;
}

void core__tasks_stop(struct core *core)
{
	struct core_tasks *ts = core->tasks;
	if (ts == NULL)
		return;
	pthread_mutex_lock(&ts->lock);
	ts->stopping = true;
	while (ts->n > 0)
		pthread_cond_wait(&ts->done, &ts->lock);
	pthread_mutex_unlock(&ts->lock);
	pthread_cond_destroy(&ts->done);
	pthread_mutex_destroy(&ts->lock);
	free(ts);
	core->tasks = NULL;
}
