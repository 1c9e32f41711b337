/* Executions and file operations inside a running sandbox, through its
 * agent connection to bunker-init (sandbox/agent_ops.h). */
#include <errno.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "agent/client.h"
#include "sandbox/agent_ops.h"

void sbx_exec_result_release(struct sbx_exec_result *r)
{
	buf_free(&r->out);
	buf_free(&r->err);
	for (size_t i = 0; i < r->n_written; i++)
		free(r->written[i]);
	free(r->written);
	r->written = NULL;
	r->n_written = 0;
}

int sbx__env_merge(const char *const *base, const char *const *extra, const char ***out,
		   struct bk_err *err)
{
	size_t nb = 0, ne = 0;
	while (base && base[nb])
		nb++;
	while (extra && extra[ne])
		ne++;
	const char **env = calloc(nb + ne + 1, sizeof(*env));
	if (env == NULL)
		return bk_err_set(err, ENOMEM, "cannot prepare an environment");
	size_t k = 0;
	for (size_t i = 0; i < nb; i++) {
		size_t nl = strcspn(base[i], "=");
		bool replaced = false;
		for (size_t j = 0; j < ne && !replaced; j++)
			replaced = strncmp(extra[j], base[i], nl) == 0 && extra[j][nl] == '=';
		if (!replaced)
			env[k++] = base[i];
	}
	for (size_t j = 0; j < ne; j++)
		env[k++] = extra[j];
	env[k] = NULL;
	*out = env;
	return 0;
}

static int exec_request(const struct sbx_agent_exec *x, const struct sbx_exec_req *req,
			struct agent_msg *m)
{
	agent_msg_init(m, AGENT_EXEC, 0);
	int r = 0;
	for (size_t i = 0; x->argv[i]; i++)
		r |= agent_msg_put_str(m, AGENT_T_ARGV, x->argv[i]);
	for (size_t i = 0; x->envp && x->envp[i]; i++)
		r |= agent_msg_put_str(m, AGENT_T_ENV, x->envp[i]);
	r |= agent_msg_put_str(m, AGENT_T_CWD, req->cwd ? req->cwd : AGENT_WORKSPACE);
	if (x->stdin_data)
		r |= agent_msg_put(m, AGENT_T_STDIN, x->stdin_data, x->stdin_len);
	r |= agent_msg_put_i64(m, AGENT_T_TIMEOUT_MS, req->timeout_ms);
	r |= agent_msg_put_i64(m, AGENT_T_UID, SBX_USER_UID);
	r |= agent_msg_put_i64(m, AGENT_T_GID, SBX_USER_GID);
	r |= agent_msg_put_i64(m, AGENT_T_OUTPUT_MAX, (int64_t)req->output_max);
	if (req->report_written)
		r |= agent_msg_put_str(m, AGENT_T_WATCH, AGENT_WORKSPACE);
	return r;
}

/* A counter of an EXEC_DONE (times in µs, sizes in KiB): what init sends
 * is the tenant's to forge, and core/ sums, rounds and scales these, so
 * each is held to 0..AGENT_COUNTER_MAX. */
static int64_t counter(const struct agent_msg *m, uint16_t tag)
{
	int64_t v = agent_msg_get_i64(m, tag, 0);
	return v < 0 ? 0 : v > AGENT_COUNTER_MAX ? AGENT_COUNTER_MAX : v;
}

int sbx__agent_exec_done(const struct agent_msg *m, struct sbx_exec_result *res)
{
	res->exit_code = (int)agent_msg_get_i64(m, AGENT_T_EXIT_CODE, -1);
	res->signal = (int)agent_msg_get_i64(m, AGENT_T_SIGNAL, 0);
	res->timed_out = agent_msg_get_i64(m, AGENT_T_TIMED_OUT, 0) != 0;
	res->cpu_us = counter(m, AGENT_T_UTIME_US) + counter(m, AGENT_T_STIME_US);
	res->maxrss_kb = counter(m, AGENT_T_MAXRSS_KB);
	res->wall_us = counter(m, AGENT_T_WALL_US);
	res->interp_started = agent_msg_get_i64(m, AGENT_T_INTERP_NEW, 0) != 0;
	res->interp_lost = agent_msg_get_i64(m, AGENT_T_INTERP_END, 0) != AGENT_INTERP_KEPT;
	int64_t trunc = agent_msg_get_i64(m, AGENT_T_TRUNCATED, 0);
	res->out_truncated = res->out.truncated || (trunc & 1);
	res->err_truncated = res->err.truncated || (trunc & 2);
	/* The lists of init's answers are held to what an honest init sends
	 * (a forged one could make each 6-byte field cost far more here). */
	size_t off = 0, n = 0;
	struct agent_field f;
	while (agent_msg_next(m, &off, &f) && n < AGENT_MAX_WRITTEN)
		n += f.tag == AGENT_T_PATH;
	res->written = calloc(n + 1, sizeof(char *));
	if (res->written == NULL)
		return -1;
	off = 0;
	while (res->n_written < n && agent_msg_next(m, &off, &f)) {
		if (f.tag != AGENT_T_PATH)
			continue;
		char *p = strndup((const char *)f.data, f.len);
		if (p == NULL)
			return -1;
		res->written[res->n_written++] = p;
	}
	return 0;
}

/* SIGKILLs the process group an execution leads. */
static void kill_group(struct agent_conn *conn, pid_t pid)
{
	struct agent_msg m;
	agent_msg_init(&m, AGENT_KILL, 0);
	agent_msg_put_i64(&m, AGENT_T_PID, pid);
	agent_msg_put_i64(&m, AGENT_T_GROUP, 1);
	struct agent_call *call;
	if (agent_call_begin(conn, &m, &call, NULL) == 0) {
		/* A short wait: an init that does not answer this is the case the
		 * caller's deadline handles next. */
		struct agent_msg a;
		if (agent_call_next(call, &a, 2000) > 0)
			agent_msg_release(&a);
		agent_call_end(call);
	}
	agent_msg_release(&m);
}

/* Interrupts the run that call is, as its timeout would. */
static void interrupt_run(struct agent_conn *conn, struct agent_call *call)
{
	struct agent_msg m;
	agent_msg_init(&m, AGENT_INTERRUPT, 0);
	agent_msg_put_i64(&m, AGENT_T_TARGET, agent_call_id(call));
	struct bk_err err = BK_ERR_INIT;
	/* ESRCH: it has just ended. */
	agent_call_answer(conn, &m, NULL, &err);
	agent_msg_release(&m);
}

int sbx__agent_start_error(const struct agent_msg *a, const struct sbx_exec_req *req,
			   struct bk_err *err)
{
	int e = (int)agent_msg_get_i64(a, AGENT_T_ERRNO, EPROTO);
	struct agent_field st, msg;
	char stage[32] = "", text[256] = "";
	if (agent_msg_find(a, AGENT_T_STAGE, &st))
		snprintf(stage, sizeof(stage), "%.*s", (int)st.len, st.data);
	if (agent_msg_find(a, AGENT_T_MESSAGE, &msg))
		snprintf(text, sizeof(text), "%.*s", (int)msg.len, msg.data);
	/* The field names what of the request is at fault in the sandbox's
	 * terms: "cwd", or "argv" (the program's arguments and environment
	 * together). */
	if (strcmp(stage, "chdir") == 0 && (e == ENOENT || e == ENOTDIR))
		return bk_err_field(err, "cwd", "working directory '%s' does not exist", req->cwd);
	if (strcmp(stage, "chdir") == 0 && e == EACCES)
		return bk_err_field(err, "cwd", "working directory '%s' is not accessible",
				    req->cwd);
	if (strcmp(stage, "exec") == 0 && e == E2BIG)
		return bk_err_field(err, "argv",
				    "the program's arguments and environment together are too "
				    "large for the kernel to run");
	if (e == EAGAIN && strcmp(stage, "fork") == 0)
		return bk_err_kind(err, BK_E_LIMIT,
				   "the session has reached its process limit: end some of its "
				   "processes (POST /execution/kill)");
	if (e == EAGAIN && strcmp(stage, "run") == 0)
		return bk_err_kind(err, BK_E_LIMIT, "%s", text);
	if (e == EAGAIN)
		return bk_err_kind(err, BK_E_LIMIT, "too many executions running at once");
	errno = e;
	return bk_err_set(err, e, "cannot start execution (%s)", stage);
}

/* How much of len more bytes of output stream b keeps: what its maximum
 * leaves and charge grants. Where the charge grants less, the stream's
 * maximum comes down to what it keeps, so that it is cut there for good
 * (truncated, as at output_max): a later byte never follows a gap. */
static size_t output_keep(struct buf *b, struct budget_charge *charge, size_t len)
{
	size_t room = b->max - b->len;
	size_t want = len < room ? len : room;
	size_t got = budget_charge_take(charge, want);
	if (got < want)
		b->max = b->len + got;
	return got;
}

int sbx__agent_call_exec(struct sbx *sbx, struct agent_msg *m, const struct sbx_agent_wait *w,
			 struct sbx_exec_result *res, struct bk_err *err)
{
	const struct sbx_exec_req *req = w->req;
	memset(res, 0, sizeof(*res));
	buf_init(&res->out, req->output_max);
	buf_init(&res->err, req->output_max);
	res->exit_code = -1;
	int64_t oom_before = w->oom_kills ? w->oom_kills(sbx) : 0;
	struct agent_call *call;
	int r = agent_call_begin(sbx->agent, m, &call, err);
	if (r < 0)
		return -1;
	int rc = -1;
	bool killed = false, interrupted = false;
	/* init enforces the timeout; this deadline is for an init that cannot
	 * (stuck, or the sandbox frozen): past it the execution's group is
	 * killed, and a little later the whole sandbox, rather than leaving
	 * the caller, and the session's lock, waiting for ever. */
	int64_t grace_us = (req->timeout_ms > 0 ? req->timeout_ms : 3600000) * 1000 + 10000000;
	int64_t deadline = mono_us() + grace_us;
	for (;;) {
		struct agent_msg a;
		r = agent_call_next(call, &a, req->cancelled ? 200 : 1000);
		if (r < 0) {
			int64_t now = mono_us();
			bool gone = req->cancelled && req->cancelled(req->ctx);
			if (gone && w->interrupt && !interrupted) {
				interrupt_run(sbx->agent, call);
				interrupted = true;
			} else if (!killed && res->pid > 0 &&
				   ((gone && !w->interrupt) || now > deadline)) {
				kill_group(sbx->agent, res->pid);
				killed = true;
			}
			if (now > deadline + 5000000) {
				sbx->backend->ops->terminate(sbx);
				bk_err_kind(err, BK_E_UNAVAILABLE,
					    "the sandbox stopped answering; it was restarted");
				break;
			}
			continue;
		}
		if (r <= 0) {
			/* The memory cgroup's OOM killer can take PID 1 too (where
			 * the host refuses to shield it): that is the limit, not a
			 * failure of the service. */
			if (w->oom_kills && w->oom_kills(sbx) > oom_before)
				bk_err_kind(err, BK_E_NO_MEMORY,
					    "the session went over its memory limit (its files "
					    "count toward it) and its processes were ended");
			else
				bk_err_kind(err, BK_E_INTERNAL,
					    "the sandbox ended during the execution");
			break;
		}
		if (a.type == AGENT_EXEC_STARTED) {
			res->pid = (pid_t)agent_msg_get_i64(&a, AGENT_T_PID, 0);
		} else if (a.type == AGENT_OUTPUT) {
			struct agent_field d;
			int stream = (int)agent_msg_get_i64(&a, AGENT_T_STREAM, 1);
			if (agent_msg_find(&a, AGENT_T_DATA, &d)) {
				struct buf *b = stream == 2 ? &res->err : &res->out;
				size_t keep = output_keep(b, req->charge, d.len);
				if (buf_append(b, d.data, d.len) < 0) {
					agent_msg_release(&a);
					bk_err_set(err, ENOMEM, "cannot keep execution output");
					break;
				}
				if (req->on_output && keep > 0)
					req->on_output(req->ctx, stream, (const char *)d.data,
						       keep);
			}
		} else if (a.type == AGENT_EXEC_DONE) {
			rc = sbx__agent_exec_done(&a, res);
			if (rc < 0)
				bk_err_set(err, ENOMEM, "cannot keep execution result");
			agent_msg_release(&a);
			break;
		} else if (a.type == AGENT_RESULT) {
			sbx__agent_start_error(&a, req, err);
			agent_msg_release(&a);
			break;
		}
		agent_msg_release(&a);
	}
	agent_call_end(call);
	if (rc == 0)
		res->oom_killed = w->oom_kills && w->oom_kills(sbx) > oom_before;
	return rc;
}

int sbx__agent_exec(struct sbx *sbx, const struct sbx_agent_exec *x, const struct sbx_exec_req *req,
		    struct sbx_exec_result *res, struct bk_err *err)
{
	struct agent_msg m;
	if (exec_request(x, req, &m) < 0) {
		agent_msg_release(&m);
		memset(res, 0, sizeof(*res));
		return bk_err_set(err, errno, "cannot build execution request");
	}
	struct sbx_agent_wait w = {.req = req, .oom_kills = x->oom_kills};
	int rc = sbx__agent_call_exec(sbx, &m, &w, res, err);
	agent_msg_release(&m);
	return rc;
}

/* The error of a file operation that init answered with errno e. */
static int file_errno(int e, const char *path, struct bk_err *err)
{
	switch (e) {
	case 0:
		return 0;
	case EXDEV:
	case ELOOP:
		return bk_err_kind(err, BK_E_INVALID, "path '%s' leaves the workspace", path);
	case ENOENT:
		return bk_err_kind(err, BK_E_FILE_NOT_FOUND, "no file '%s' in the workspace", path);
	case ENOSPC:
	case EDQUOT:
		return bk_err_kind(err, BK_E_NO_SPACE, "disk full writing '%s'", path);
	case EISDIR:
		return bk_err_kind(err, BK_E_INVALID, "path '%s' is a directory", path);
	case ENOTDIR:
	case EEXIST:
		return bk_err_kind(err, BK_E_INVALID, "a part of '%s' is not a directory", path);
	case ENOTEMPTY:
		return bk_err_kind(err, BK_E_CONFLICT,
				   "directory '%s' is not empty (set recursive to delete it)",
				   path);
	case EACCES:
	case EPERM:
		return bk_err_kind(err, BK_E_INVALID, "permission denied on '%s'", path);
	case EROFS:
		return bk_err_kind(err, BK_E_FORBIDDEN, "'%s' is on the session's read-only image",
				   path);
	case ENAMETOOLONG:
		return bk_err_kind(err, BK_E_INVALID, "path '%s' is too long", path);
	case EFBIG:
		return bk_err_kind(err, BK_E_TOO_LARGE, "file '%s' is larger than allowed", path);
	case E2BIG: /* init/files.c: AGENT_LIST_NAMES_MAX */
		return bk_err_kind(err, BK_E_INVALID,
				   "'%s' holds too many names to list (list a directory below it)",
				   path);
	case EINVAL:
		return bk_err_kind(err, BK_E_INVALID, "'%s' is not a regular file or directory",
				   path);
	default:
		return bk_err_set(err, e, "cannot access '%s'", path);
	}
}

/* A file request: PATH, the user's ids, then what put() adds. */
static void file_request(struct agent_msg *m, uint16_t type, const char *path)
{
	agent_msg_init(m, type, 0);
	agent_msg_put_str(m, AGENT_T_PATH, path);
	agent_msg_put_i64(m, AGENT_T_UID, SBX_USER_UID);
	agent_msg_put_i64(m, AGENT_T_GID, SBX_USER_GID);
}

/* Sends m and waits for its RESULT (kept in *ans when ans is not NULL). */
static int file_call(struct sbx *sbx, struct agent_msg *m, const char *path, struct agent_msg *ans,
		     struct bk_err *err)
{
	int e = agent_call_answer(sbx->agent, m, ans, err);
	agent_msg_release(m);
	return e < 0 ? -1 : file_errno(e, path, err);
}

int sbx__agent_write_file(struct sbx *sbx, const char *path, const void *data, size_t len,
			  struct bk_err *err)
{
	struct agent_msg m;
	file_request(&m, AGENT_WRITE_FILE, path);
	if (agent_msg_put(&m, AGENT_T_DATA, data, len) < 0 ||
	    agent_msg_put_i64(&m, AGENT_T_MODE, 0644) < 0) {
		int e = errno;
		agent_msg_release(&m);
		return e == EMSGSIZE
			   ? bk_err_kind(err, BK_E_TOO_LARGE, "file '%s' is too large", path)
			   : bk_err_set(err, e, "cannot build write request");
	}
	return file_call(sbx, &m, path, NULL, err);
}

/* The error of a transfer anywhere in the session's file system: there,
 * what the session's root may not write is the image's, and what it may
 * not read is the kernel's. */
static int path_errno(int e, const char *path, struct bk_err *err)
{
	switch (e) {
	case ENOENT:
		return bk_err_kind(err, BK_E_FILE_NOT_FOUND, "no file '%s' in the session", path);
	case EACCES:
	case EROFS:
		return bk_err_kind(err, BK_E_FORBIDDEN, "'%s' is on the session's read-only image",
				   path);
	case EXDEV: /* init/rootfiles.c: a file system of the kernel's */
		return bk_err_kind(err, BK_E_FORBIDDEN,
				   "'%s' is in /proc, /sys or /dev, which transfers do not reach",
				   path);
	case EPERM:
		return bk_err_kind(err, BK_E_FORBIDDEN, "permission denied on '%s'", path);
	case ELOOP: /* a magic link (/proc/self/root), or a loop of symlinks */
		return bk_err_kind(err, BK_E_FORBIDDEN,
				   "'%s' goes through a link that transfers do not follow", path);
	default:
		return file_errno(e, path, err);
	}
}

int sbx__agent_read_piece(struct sbx *sbx, struct sbx_read *rd, void *buf, size_t cap, size_t *got,
			  struct bk_err *err)
{
	struct agent_msg m, a;
	if (rd->anywhere) {
		agent_msg_init(&m, AGENT_READ_PATH, 0);
		agent_msg_put_str(&m, AGENT_T_PATH, rd->path);
	} else {
		file_request(&m, AGENT_READ_FILE, rd->path);
	}
	size_t want = cap < AGENT_READ_PIECE_MAX ? cap : AGENT_READ_PIECE_MAX;
	int r = agent_msg_put_i64(&m, AGENT_T_MAX, rd->max);
	r |= agent_msg_put_i64(&m, AGENT_T_OFFSET, rd->offset);
	r |= agent_msg_put_i64(&m, AGENT_T_LENGTH, (int64_t)want);
	if (rd->check_utf8)
		r |= agent_msg_put_i64(&m, AGENT_T_UTF8, 1);
	if (rd->have_id)
		r |= agent_msg_put(&m, AGENT_T_FILE_ID, &rd->id, sizeof(rd->id));
	if (r < 0) {
		agent_msg_release(&m);
		return bk_err_set(err, ENOMEM, "cannot build a read of '%s'", rd->path);
	}
	int e = agent_call_answer(sbx->agent, &m, &a, err);
	agent_msg_release(&m);
	if (e == ESTALE)
		return bk_err_kind(err, BK_E_INTERNAL, "'%s' changed while it was read", rd->path);
	if (e != 0)
		return e < 0	      ? -1
		       : rd->anywhere ? path_errno(e, rd->path, err)
				      : file_errno(e, rd->path, err);
	struct agent_field d, idf;
	int rc = 0;
	if (!agent_msg_find(&a, AGENT_T_DATA, &d) || d.len > want ||
	    !agent_msg_find(&a, AGENT_T_FILE_ID, &idf) || idf.len != sizeof(rd->id)) {
		rc = bk_err_kind(err, BK_E_INTERNAL, "init answered no piece of '%s'", rd->path);
	} else {
		if (d.len)
			memcpy(buf, d.data, d.len);
		*got = d.len;
		memcpy(&rd->id, idf.data, sizeof(rd->id));
		rd->have_id = true;
		rd->size = agent_msg_get_i64(&a, AGENT_T_SIZE, 0);
		if (rd->check_utf8)
			rd->utf8 = agent_msg_get_i64(&a, AGENT_T_UTF8, 0) != 0;
	}
	agent_msg_release(&a);
	return rc;
}

int sbx__agent_write_path(struct sbx *sbx, const struct sbx_transfer *t, const void *data,
			  size_t len, struct bk_err *err)
{
	struct agent_msg m;
	agent_msg_init(&m, AGENT_WRITE_PATH, 0);
	int r = agent_msg_put_str(&m, AGENT_T_PATH, t->path);
	r |= agent_msg_put_str(&m, AGENT_T_TOKEN, t->token);
	r |= agent_msg_put_i64(&m, AGENT_T_OFFSET, t->offset);
	r |= agent_msg_put_i64(&m, AGENT_T_FINAL, t->final);
	r |= agent_msg_put_i64(&m, AGENT_T_ABORT, t->abort);
	r |= agent_msg_put_i64(&m, AGENT_T_UID, SBX_USER_UID);
	r |= agent_msg_put_i64(&m, AGENT_T_GID, SBX_USER_GID);
	r |= agent_msg_put(&m, AGENT_T_DATA, data, len);
	if (r < 0) {
		agent_msg_release(&m);
		return bk_err_set(err, ENOMEM, "cannot build a write of '%s'", t->path);
	}
	int e = agent_call_answer(sbx->agent, &m, NULL, err);
	agent_msg_release(&m);
	return e < 0 ? -1 : path_errno(e, t->path, err);
}

int sbx__agent_list(struct sbx *sbx, struct sbx_list_req *req, struct sbx_entry **out, size_t *n,
		    struct bk_err *err)
{
	struct agent_msg m, a;
	const char *path = req->path;
	file_request(&m, AGENT_LIST, path);
	int r = agent_msg_put_i64(&m, AGENT_T_RECURSIVE, req->recursive);
	r |= agent_msg_put_i64(&m, AGENT_T_LIMIT, req->limit);
	r |= agent_msg_put_i64(&m, AGENT_T_OFFSET, req->offset);
	if (req->cursor)
		r |= agent_msg_put_str(&m, AGENT_T_CURSOR, req->cursor);
	if (r < 0) {
		agent_msg_release(&m);
		return bk_err_set(err, ENOMEM, "cannot build a listing of '%s'", path);
	}
	if (file_call(sbx, &m, *path ? path : ".", &a, err) < 0)
		return -1;
	req->total = agent_msg_get_i64(&a, AGENT_T_TOTAL, 0);
	req->more = agent_msg_get_i64(&a, AGENT_T_MORE, 0) != 0;
	size_t max = req->limit > 0 && req->limit < AGENT_LIST_LIMIT_MAX ? (size_t)req->limit
									 : AGENT_LIST_LIMIT_MAX;
	r = sbx__agent_entries_of(&a, max, out, n);
	agent_msg_release(&a);
	return r < 0 ? bk_err_set(err, ENOMEM, "cannot list '%s'", path) : 0;
}

int sbx__agent_entries_of(const struct agent_msg *a, size_t max, struct sbx_entry **out, size_t *n)
{
	size_t off = 0, count = 0;
	struct agent_field f;
	while (agent_msg_next(a, &off, &f) && count < max)
		count += f.tag == AGENT_T_ENTRY;
	struct sbx_entry *es = calloc(count + 1, sizeof(*es));
	if (es == NULL)
		return -1;
	off = 0;
	*n = 0;
	while (*n < count && agent_msg_next(a, &off, &f)) {
		if (f.tag != AGENT_T_ENTRY)
			continue;
		char line[4200];
		snprintf(line, sizeof(line), "%.*s", (int)f.len, f.data);
		char *t1 = strchr(line, '\t');
		char *t2 = t1 ? strchr(t1 + 1, '\t') : NULL;
		char *t3 = t2 ? strchr(t2 + 1, '\t') : NULL;
		if (t3 == NULL)
			continue;
		struct sbx_entry *e = &es[*n];
		e->path = strdup(t3 + 1);
		if (e->path == NULL)
			break;
		e->is_dir = line[0] == 'd';
		e->size = strtoll(t1 + 1, NULL, 10);
		e->mtime_ms = strtoll(t2 + 1, NULL, 10);
		(*n)++;
	}
	*out = es;
	return 0;
}

int sbx__agent_stat(struct sbx *sbx, const char *path, mode_t *mode, struct bk_err *err)
{
	struct agent_msg m, a;
	file_request(&m, AGENT_STAT, path);
	if (file_call(sbx, &m, *path ? path : ".", &a, err) < 0)
		return -1;
	*mode = (mode_t)agent_msg_get_i64(&a, AGENT_T_MODE, 0);
	agent_msg_release(&a);
	return 0;
}

void sbx_entries_free(struct sbx_entry *es, size_t n)
{
	for (size_t i = 0; es && i < n; i++)
		free(es[i].path);
	free(es);
}

int sbx__agent_remove(struct sbx *sbx, const char *path, bool recursive, struct bk_err *err)
{
	struct agent_msg m;
	file_request(&m, AGENT_DELETE, path);
	agent_msg_put_i64(&m, AGENT_T_RECURSIVE, recursive);
	return file_call(sbx, &m, path, NULL, err);
}

int sbx__agent_kill(struct sbx *sbx, pid_t pid, struct bk_err *err)
{
	struct agent_msg m;
	agent_msg_init(&m, AGENT_KILL, 0);
	agent_msg_put_i64(&m, AGENT_T_PID, pid);
	int e = agent_call_answer(sbx->agent, &m, NULL, err);
	agent_msg_release(&m);
	if (e == ESRCH)
		return bk_err_kind(err, BK_E_PROCESS_NOT_FOUND, "no process %d in the session",
				   (int)pid);
	if (e == EPERM)
		return bk_err_kind(err, BK_E_FORBIDDEN, "process %d cannot be killed", (int)pid);
	if (e > 0)
		return bk_err_set(err, e, "cannot kill process %d", (int)pid);
	return e;
}

void sbx__agent_lease(struct sbx *sbx, int timeout_ms)
{
	struct agent_msg m;
	agent_msg_init(&m, AGENT_LEASE, 0);
	agent_msg_put_i64(&m, AGENT_T_TIMEOUT_MS, timeout_ms);
	/* No answer comes: the call is only a request id and a send. */
	struct agent_call *call;
	if (agent_call_begin(sbx->agent, &m, &call, NULL) == 0)
		agent_call_end(call);
	agent_msg_release(&m);
	__atomic_store_n(&sbx->lease_ms, timeout_ms, __ATOMIC_RELAXED);
}

int sbx__agent_ps(struct sbx *sbx, struct sbx_proc **out, size_t *n, struct bk_err *err)
{
	struct agent_msg m, a;
	agent_msg_init(&m, AGENT_PS, 0);
	int e = agent_call_answer(sbx->agent, &m, &a, err);
	agent_msg_release(&m);
	if (e < 0)
		return -1;
	if (e > 0)
		return bk_err_set(err, e, "cannot list processes");
	int r = sbx__agent_procs_of(&a, out, n);
	agent_msg_release(&a);
	return r < 0 ? bk_err_set(err, ENOMEM, "cannot list processes") : 0;
}

int sbx__agent_procs_of(const struct agent_msg *a, struct sbx_proc **out, size_t *n)
{
	size_t off = 0, count = 0;
	struct agent_field f;
	while (agent_msg_next(a, &off, &f) && count < AGENT_MAX_PROCS)
		count += f.tag == AGENT_T_PROC;
	struct sbx_proc *procs = calloc(count + 1, sizeof(*procs));
	if (procs == NULL)
		return -1;
	off = 0;
	*n = 0;
	while (*n < count && agent_msg_next(a, &off, &f)) {
		if (f.tag != AGENT_T_PROC)
			continue;
		char line[1400];
		snprintf(line, sizeof(line), "%.*s", (int)f.len, f.data);
		char *tab1 = strchr(line, '\t');
		char *tab2 = tab1 ? strchr(tab1 + 1, '\t') : NULL;
		if (tab2 == NULL)
			continue;
		struct sbx_proc *p = &procs[(*n)++];
		p->pid = (pid_t)strtol(line, NULL, 10);
		p->started_ms = strtoll(tab1 + 1, NULL, 10);
		snprintf(p->command, sizeof(p->command), "%s", tab2 + 1);
	}
	*out = procs;
	return 0;
}
