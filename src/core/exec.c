/* Executions: code run by Bun or a command run by /bin/sh, as the session's
 * user, with the request's files written first. How a program runs (its
 * interpreter's path, the image's environment) is the backend's; what is
 * checked and answered is here. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>

#include "core/core_int.h"
#include "util/cleanup.h"

#define MAX_ENV 100

void core_exec_result_release(struct core_exec_result *r)
{
	free(r->stdout_text);
	free(r->stderr_text);
	for (size_t i = 0; i < r->n_files_written; i++)
		free(r->files_written[i]);
	free(r->files_written);
	budget_charge_release(r->charge);
	memset(r, 0, sizeof(*r));
}

int core_path_normalize(const char *path, const char *field, char *out, size_t len,
			struct bk_err *err)
{
	static const char ws[] = SBX_WORKSPACE;
	if (path == NULL || *path == '\0')
		return bk_err_field(err, field, "%s must not be empty", field);
	const char *p = path;
	if (*p == '/') {
		size_t n = strlen(ws);
		if (strncmp(p, ws, n) != 0 || (p[n] != '/' && p[n] != '\0'))
			return bk_err_field(err, field, "%s '%s' is outside %s", field, path, ws);
		p += n;
	}
	/* Rebuild component by component: drop empty and "." parts, refuse "..". */
	size_t o = 0;
	while (*p) {
		while (*p == '/')
			p++;
		if (*p == '\0')
			break;
		const char *end = strchrnul(p, '/');
		size_t clen = (size_t)(end - p);
		if (clen == 2 && p[0] == '.' && p[1] == '.')
			return bk_err_field(err, field, "%s '%s' leaves the workspace", field,
					    path);
		if (!(clen == 1 && p[0] == '.')) {
			if (o + clen + 2 > len)
				return bk_err_field(err, field, "%s is too long", field);
			if (o)
				out[o++] = '/';
			memcpy(out + o, p, clen);
			o += clen;
		}
		p = end;
	}
	out[o] = '\0';
	return 0;
}

static bool env_name_ok(const char *name)
{
	if (*name == '\0' || strchr(name, '=') != NULL)
		return false;
	return true;
}

/* What an execution needs of its request, checked: the environment on top
 * of the image's (PORT and the request's own), the working directory. */
struct exec_plan {
	const char **envp; /* NULL-terminated; entries in owned */
	char cwd[4200];
	char wd_rel[4096]; /* cwd relative to the workspace; "" for itself */
	char **owned;
	size_t n_owned;
};

static void exec_plan_release(struct exec_plan *p)
{
	for (size_t i = 0; i < p->n_owned; i++)
		free(p->owned[i]);
	free(p->owned);
	free(p->envp);
}

static int exec_plan_build(const struct core_exec_req *req, struct exec_plan *p, struct bk_err *err)
{
	memset(p, 0, sizeof(*p));
	if (req->language != CORE_LANG_NONE && (req->code == NULL || req->command != NULL))
		return bk_err_field(err, "command", "the program text is required");
	if (req->language == CORE_LANG_NONE && (req->code == NULL) == (req->command == NULL))
		return bk_err_field(err, req->code ? "code" : "command",
				    "exactly one of code and command is required");
	if (req->n_env > CORE_ENV_MAX)
		return bk_err_field(err, "env", "env holds at most %d variables", CORE_ENV_MAX);
	if (req->command && strlen(req->command) > SBX_SHELL_COMMAND_MAX)
		return bk_err_field(err, "command",
				    "command is %zu bytes, over %d: write a script with files "
				    "and run it",
				    strlen(req->command), SBX_SHELL_COMMAND_MAX);
	for (size_t j = 0; j < req->n_env; j++)
		if (!env_name_ok(req->env[j].name))
			return bk_err_field(err, "env", "env name '%s' is not valid",
					    req->env[j].name);
	char *rel = p->wd_rel;
	if (req->working_dir &&
	    core_path_normalize(req->working_dir, "workingDir", rel, sizeof(p->wd_rel), err) < 0)
		return -1;
	snprintf(p->cwd, sizeof(p->cwd), "%s%s%s", SBX_WORKSPACE, *rel ? "/" : "", rel);
	return 0;
}

/* Adds "name=value" to p's environment, replacing an entry of that name. */
static int env_put(struct exec_plan *p, size_t cap, const char *name, const char *value,
		   struct bk_err *err)
{
	char *kv;
	if (asprintf(&kv, "%s=%s", name, value) < 0)
		return bk_err_set(err, ENOMEM, "cannot prepare execution");
	size_t nl = strlen(name);
	for (size_t i = 0; i < p->n_owned; i++) {
		if (strncmp(p->owned[i], kv, nl + 1) == 0) {
			free(p->owned[i]);
			p->owned[i] = kv;
			p->envp[i] = kv;
			return 0;
		}
	}
	if (p->n_owned == cap) {
		free(kv);
		return bk_err_field(err, "env", "env holds at most %d variables", CORE_ENV_MAX);
	}
	p->owned[p->n_owned] = kv;
	p->envp[p->n_owned++] = kv;
	return 0;
}

/* The environment on top of the image's: PORT, the port of the session's
 * preview, then the session's env, then the request's, a later one of a
 * name replacing an earlier. */
static int exec_env_build(const struct session *s, const struct core_exec_req *req,
			  struct exec_plan *p, struct bk_err *err)
{
	json_error_t je;
	json_t *senv = json_loads(s->env ? s->env : "{}", 0, &je);
	size_t cap = 1 + json_object_size(senv) + req->n_env;
	p->envp = calloc(cap + 1, sizeof(char *));
	p->owned = calloc(cap + 1, sizeof(char *));
	int rc = p->envp && p->owned ? 0 : bk_err_set(err, ENOMEM, "cannot prepare execution");
	char port[16];
	snprintf(port, sizeof(port), "%d", CORE_PREVIEW_PORT);
	if (rc == 0)
		rc = env_put(p, cap, "PORT", port, err);
	const char *name;
	json_t *v;
	json_object_foreach (senv, name, v) {
		if (rc == 0 && json_is_string(v))
			rc = env_put(p, cap, name, json_string_value(v), err);
	}
	json_decref(senv);
	for (size_t j = 0; rc == 0 && j < req->n_env; j++)
		rc = env_put(p, cap, req->env[j].name, req->env[j].value, err);
	return rc;
}

static bool list_has(char **list, size_t n, const char *s)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(list[i], s) == 0)
			return true;
	return false;
}

/* filesWritten: the request's own files, then what the execution changed. */
static int written_merge(struct core_exec_result *out, char **files, size_t n_files,
			 struct sbx_exec_result *res)
{
	out->files_written = calloc(n_files + res->n_written + 1, sizeof(char *));
	if (out->files_written == NULL)
		return -1;
	for (size_t i = 0; i < n_files; i++) {
		if (!list_has(out->files_written, out->n_files_written, files[i]))
			out->files_written[out->n_files_written++] = steal_ptr(&files[i]);
	}
	for (size_t i = 0; i < res->n_written; i++) {
		if (!list_has(out->files_written, out->n_files_written, res->written[i]))
			out->files_written[out->n_files_written++] = steal_ptr(&res->written[i]);
	}
	return 0;
}

static void files_free(char **files, size_t n)
{
	for (size_t i = 0; files && i < n; i++)
		free(files[i]);
	free(files);
}

/* Everything that can be checked without the session: builds plan and the
 * normalized file paths (files: n_files entries, the caller frees both). */
static int exec_prepare(const struct core_key *key, const struct core_exec_req *req,
			struct exec_plan *plan, char ***files_out, struct bk_err *err)
{
	*files_out = NULL;
	if (exec_plan_build(req, plan, err) < 0)
		return -1;
	char **files = calloc(req->n_files + 1, sizeof(char *));
	if (files == NULL)
		return bk_err_set(err, ENOMEM, "cannot prepare execution");
	*files_out = files;
	for (size_t i = 0; i < req->n_files; i++) {
		char rel[4096];
		if (core_path_normalize(req->files[i].path, "files.path", rel, sizeof(rel), err) <
		    0)
			return -1;
		if (*rel == '\0')
			return bk_err_field(err, "files.path",
					    "files.path '%s' names the workspace itself",
					    req->files[i].path);
		if ((int64_t)req->files[i].len > key->limits.max_file_bytes)
			return bk_err_kind(
			    err, BK_E_TOO_LARGE, "file '%s' is over the plan's %lld bytes",
			    req->files[i].path, (long long)key->limits.max_file_bytes);
		files[i] = strdup(rel);
		if (files[i] == NULL)
			return bk_err_set(err, ENOMEM, "cannot prepare execution");
	}
	if (req->timeout_s && !req->clamp_timeout &&
	    (req->timeout_s < 1 || req->timeout_s > key->limits.timeout_max_s))
		return bk_err_field(err, "timeout", "timeout must be 1..%d seconds on plan '%s'",
				    key->limits.timeout_max_s, key->plan);
	return 0;
}

static enum sbx_language sbx_language_of(enum core_language l)
{
	switch (l) {
	case CORE_LANG_BASH:
		return SBX_LANG_BASH;
	case CORE_LANG_JAVASCRIPT:
		return SBX_LANG_JAVASCRIPT;
	case CORE_LANG_TYPESCRIPT:
		return SBX_LANG_TYPESCRIPT;
	default:
		return SBX_LANG_PYTHON;
	}
}

/* The time an execution may take: its own timeout (or the session's),
 * lowered to the plan's maximum when asked to clamp, and to what is left
 * before its deadline. */
static int64_t exec_timeout_ms(const struct core_key *key, const struct session *s,
			       const struct core_exec_req *req)
{
	int64_t t = req->timeout_s ? req->timeout_s : s->limits.timeout_s;
	if (req->clamp_timeout && t > key->limits.timeout_max_s)
		t = key->limits.timeout_max_s;
	int64_t ms = t * 1000;
	if (req->deadline_us > 0) {
		int64_t left = (req->deadline_us - mono_us()) / 1000;
		if (left < ms)
			ms = left > 1 ? left : 1;
	}
	return ms;
}

int core_exec_check(const struct core_key *key, const struct core_exec_req *req, struct bk_err *err)
{
	struct exec_plan plan;
	char **files;
	int rc = exec_prepare(key, req, &plan, &files, err);
	files_free(files, req->n_files);
	exec_plan_release(&plan);
	return rc;
}

/* A workingDir that no request file creates must exist before any file is
 * written: a refused request leaves nothing behind. */
static int working_dir_check(struct sbx *sbx, const struct exec_plan *plan, char **files,
			     size_t n_files, struct bk_err *err)
{
	const char *wd = plan->wd_rel;
	size_t n = strlen(wd);
	if (n == 0)
		return 0;
	for (size_t i = 0; i < n_files; i++)
		if (strncmp(files[i], wd, n) == 0 && files[i][n] == '/')
			return 0;
	mode_t mode;
	if (sbx->backend->ops->stat(sbx, wd, &mode, err) < 0) {
		if (err->kind == BK_E_FILE_NOT_FOUND || err->kind == BK_E_INVALID)
			return bk_err_field(err, "workingDir",
					    "working directory '%s' does not exist", plan->cwd);
		return -1;
	}
	if (!S_ISDIR(mode))
		return bk_err_field(err, "workingDir", "working directory '%s' is not a directory",
				    plan->cwd);
	return 0;
}

int core_execute(struct core *core, const struct core_key *key, const char *id,
		 const struct core_exec_req *req, struct core_exec_result *out, struct bk_err *err)
{
	memset(out, 0, sizeof(*out));
	struct exec_plan plan;
	char **files;
	int rc = -1;
	if (exec_prepare(key, req, &plan, &files, err) < 0)
		goto out_files;
	struct session *s;
	struct sbx *sbx;
	if (core__session_enter(core, key, id, &s, &sbx, err) < 0)
		goto out_files;
	const struct sbx_ops *ops = core->sbx->ops;
	if (working_dir_check(sbx, &plan, files, req->n_files, err) < 0)
		goto out_unlock;
	for (size_t i = 0; i < req->n_files; i++) {
		if (ops->write_file(sbx, files[i], req->files[i].content, req->files[i].len, err) <
		    0) {
			if (err->kind == BK_E_INVALID)
				snprintf(err->field, sizeof(err->field), "files.path");
			goto out_unlock;
		}
	}
	if (exec_env_build(s, req, &plan, err) < 0)
		goto out_unlock;
	int64_t timeout_ms = exec_timeout_ms(key, s, req);
	/* The output is charged to the key as it arrives, and stays charged
	 * with the result until its answer has gone. */
	struct budget_charge *charge = req->charge;
	if (charge == NULL && core->output_budget &&
	    (charge = budget_charge_new(core->output_budget, key->id)) == NULL) {
		bk_err_set(err, ENOMEM, "cannot start an execution");
		goto out_unlock;
	}
	struct sbx_exec_result res;
	int r;
	if (req->language != CORE_LANG_NONE) {
		struct sbx_run_req rreq = {
		    .language = sbx_language_of(req->language),
		    .code = req->code,
		    .envp = plan.envp,
		    .timeout_ms = timeout_ms,
		    .output_max = CORE_OUTPUT_MAX,
		    .charge = charge,
		    .fresh = req->fresh,
		    .on_output = req->on_output,
		    .cancelled = req->cancelled,
		    .ctx = req->ctx,
		};
		memset(&res, 0, sizeof(res));
		r = ops->run ? ops->run(sbx, &rreq, &res, err)
			     : bk_err_kind(err, BK_E_UNAVAILABLE,
					   "this server's sandboxes run no interpreters");
	} else {
		struct sbx_exec_req sreq = {
		    .program = req->code ? SBX_PROGRAM_BUN : SBX_PROGRAM_SHELL,
		    .text = req->code ? req->code : req->command,
		    .envp = plan.envp,
		    .cwd = plan.cwd,
		    .timeout_ms = timeout_ms,
		    .output_max = CORE_OUTPUT_MAX,
		    .charge = charge,
		    .report_written = true,
		    .on_output = req->on_output,
		    .cancelled = req->cancelled,
		    .ctx = req->ctx,
		};
		r = ops->exec(sbx, &sreq, &res, err);
	}
	/* The result's own, unless it is the caller's. */
	out->charge = charge == req->charge ? NULL : charge;
	if (r < 0) {
		sbx_exec_result_release(&res);
		core_exec_result_release(out);
		/* The sandbox names what it could not run in its own terms. */
		if (strcmp(err->field, "cwd") == 0)
			snprintf(err->field, sizeof(err->field), "workingDir");
		else if (strcmp(err->field, "argv") == 0)
			snprintf(err->field, sizeof(err->field), "%s",
				 req->n_env > 0 ? "env" : "command");
		/* Deleted (or expired) while it ran: the session is what is gone. */
		if (__atomic_load_n(&s->deleted, __ATOMIC_ACQUIRE))
			bk_err_kind(err, BK_E_NOT_FOUND,
				    "session '%s' was deleted during the "
				    "execution",
				    id);
		goto out_unlock;
	}
	out->stdout_len = res.out.len;
	out->stderr_len = res.err.len;
	out->stdout_text = buf_take(&res.out);
	out->stderr_text = buf_take(&res.err);
	out->stdout_truncated = res.out_truncated;
	out->stderr_truncated = res.err_truncated;
	out->timed_out = res.timed_out;
	/* The convention of timeout(1). */
	out->exit_code = res.timed_out ? 124 : res.exit_code;
	out->oom_killed = res.oom_killed && !res.timed_out;
	out->execution_time_ms = (res.wall_us + 500) / 1000;
	out->cpu_time_ms = (res.cpu_us + 500) / 1000;
	out->memory_used_bytes = res.maxrss_kb * 1024;
	if (out->stdout_text == NULL || out->stderr_text == NULL ||
	    written_merge(out, files, req->n_files, &res) < 0) {
		sbx_exec_result_release(&res);
		core_exec_result_release(out);
		bk_err_set(err, ENOMEM, "cannot keep execution result");
		goto out_unlock;
	}
	sbx_exec_result_release(&res);
	core__session_touch(core, s);
	__atomic_add_fetch(&s->pending_execs, 1, __ATOMIC_RELAXED);
	__atomic_add_fetch(&s->pending_cpu_ms, out->cpu_time_ms, __ATOMIC_RELAXED);
	rc = 0;
out_unlock:
	core__session_leave(core, s);
out_files:
	files_free(files, req->n_files);
	exec_plan_release(&plan);
	return rc;
}

/* With s->rw held shared (session_enter): the sandbox's processes. */
static int session_ps(struct session *s, struct sbx_proc **procs, size_t *n, struct bk_err *err)
{
	*procs = NULL;
	*n = 0;
	if (s->sbx == NULL || !s->sbx->backend->ops->alive(s->sbx))
		return 0;
	return s->sbx->backend->ops->ps(s->sbx, procs, n, err);
}

int core_process_list(struct core *core, const struct core_key *key, const char *id,
		      struct core_proc **out, size_t *n, struct bk_err *err)
{
	struct session *s;
	struct sbx *sbx;
	if (core__session_enter(core, key, id, &s, &sbx, err) < 0)
		return -1;
	struct sbx_proc *procs;
	int rc = session_ps(s, &procs, n, err);
	core__session_leave(core, s);
	if (rc < 0)
		return -1;
	*out = calloc(*n + 1, sizeof(**out));
	if (*out == NULL) {
		free(procs);
		return bk_err_set(err, ENOMEM, "cannot list processes");
	}
	for (size_t i = 0; i < *n; i++) {
		(*out)[i].pid = procs[i].pid;
		(*out)[i].started_ms = procs[i].started_ms;
		snprintf((*out)[i].command, sizeof((*out)[i].command), "%s", procs[i].command);
	}
	free(procs);
	return 0;
}

int core_process_kill(struct core *core, const struct core_key *key, const char *id, int pid,
		      int **pids, size_t *n, struct bk_err *err)
{
	struct session *s;
	struct sbx *sbx;
	if (core__session_enter(core, key, id, &s, &sbx, err) < 0)
		return -1;
	struct sbx_proc *procs;
	size_t np;
	int rc = session_ps(s, &procs, &np, err);
	*n = 0;
	*pids = rc == 0 ? calloc(np + 1, sizeof(int)) : NULL;
	if (rc == 0 && *pids == NULL)
		rc = bk_err_set(err, ENOMEM, "cannot kill processes");
	for (size_t i = 0; rc == 0 && i < np; i++)
		if (pid == 0 || procs[i].pid == pid)
			(*pids)[(*n)++] = procs[i].pid;
	if (rc == 0 && pid != 0 && *n == 0)
		rc = bk_err_kind(err, BK_E_PROCESS_NOT_FOUND, "no process %d in session '%s'", pid,
				 id);
	if (rc == 0 && *n > 0)
		rc = sbx->backend->ops->kill(sbx, pid, err);
	core__session_leave(core, s);
	free(procs);
	if (rc < 0) {
		free(*pids);
		*pids = NULL;
	}
	return rc;
}
