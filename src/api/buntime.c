/* The buntime dialect: camelCase JSON, errors as
 * {"error":{"code","message","details"}}. A thin translation onto core/:
 * types and shapes are checked here, rules of plans and sessions there. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "api/api_int.h"
#include "util/util.h"

#define METADATA_MAX 16384
#define LIST_DEFAULT 50
#define LIST_MAX 100

/* ---- typed field access: never coerce ---- */

/* Absent and null are "not given". */
static json_t *field_get(json_t *obj, const char *name)
{
	json_t *v = json_object_get(obj, name);
	return json_is_null(v) ? NULL : v;
}

static int field_int(json_t *obj, const char *name, const char *path, int64_t *out,
		     struct bk_err *err)
{
	json_t *v = field_get(obj, name);
	if (v == NULL)
		return 0;
	if (!json_is_integer(v))
		return bk_err_field(err, path, "%s must be an integer", path);
	*out = json_integer_value(v);
	return 1;
}

static int field_positive_int(json_t *obj, const char *name, const char *path, int64_t *out,
			      struct bk_err *err)
{
	int r = field_int(obj, name, path, out, err);
	if (r > 0 && (*out <= 0 || *out > INT32_MAX))
		return bk_err_field(err, path, "%s must be a positive integer", path);
	return r;
}

static int field_string(json_t *obj, const char *name, const char *path, const char **out,
			struct bk_err *err)
{
	json_t *v = field_get(obj, name);
	if (v == NULL)
		return 0;
	if (!json_is_string(v))
		return bk_err_field(err, path, "%s must be a string", path);
	*out = json_string_value(v);
	return 1;
}

static void iso(int64_t ms, char *buf, size_t len)
{
	iso8601_ms(ms, buf, len);
}

static json_t *limits_json(const struct core_limits *l)
{
	return json_pack("{s:i,s:f,s:i,s:i}", "memory", l->memory_mb, "cpu", l->cpu, "timeout",
			 l->timeout_s, "disk", l->disk_mb);
}

static json_t *session_json(const struct core_session_info *info, bool full)
{
	char created[40], expires[40], active[40];
	iso(info->created_ms, created, sizeof(created));
	iso(info->expires_ms, expires, sizeof(expires));
	iso(info->last_active_ms, active, sizeof(active));
	json_t *o = json_pack("{s:s,s:s,s:s,s:s,s:o}", "sessionId", info->id, "createdAt", created,
			      "expiresAt", expires, "previewUrl", info->preview_url,
			      "resourceLimits", limits_json(&info->limits));
	if (o == NULL || !full)
		return o;
	json_t *meta = json_loads(info->metadata ? info->metadata : "{}", 0, NULL);
	json_object_set_new(o, "lastActive", json_string(active));
	json_object_set_new(o, "state", json_string(core_state_name(info->state)));
	json_object_set_new(o, "filesCount", json_integer(info->files_count));
	json_object_set_new(o, "activeProcesses", json_integer(info->active_processes));
	json_object_set_new(o, "metadata", meta ? meta : json_object());
	return o;
}

/* ---- POST /sessions/create ---- */

static int create_spec(json_t *body, struct core_session_spec *spec, char **metadata,
		       struct bk_err *err)
{
	memset(spec, 0, sizeof(*spec));
	int64_t v = 0;
	int r = field_int(body, "ttl", "ttl", &v, err);
	if (r < 0)
		return -1;
	if (r > 0) {
		if (v <= 0 || v > INT32_MAX)
			return bk_err_field(err, "ttl", "ttl must be a positive number of seconds");
		spec->ttl_s = v;
	}
	json_t *meta = field_get(body, "metadata");
	if (meta) {
		if (!json_is_object(meta))
			return bk_err_field(err, "metadata", "metadata must be a JSON object");
		*metadata = json_dumps(meta, JSON_COMPACT);
		if (*metadata == NULL)
			return bk_err_set(err, ENOMEM, "cannot serialize metadata");
		if (strlen(*metadata) > METADATA_MAX)
			return bk_err_field(err, "metadata",
					    "metadata is %zu bytes of compact JSON, over %d",
					    strlen(*metadata), METADATA_MAX);
		spec->metadata = *metadata;
	}
	json_t *rl = field_get(body, "resourceLimits");
	if (rl) {
		if (!json_is_object(rl))
			return bk_err_field(err, "resourceLimits",
					    "resourceLimits must be a JSON object");
		spec->has_limits = true;
		v = 0;
		if (field_positive_int(rl, "memory", "resourceLimits.memory", &v, err) < 0)
			return -1;
		spec->limits.memory_mb = (int)v;
		v = 0;
		if (field_positive_int(rl, "timeout", "resourceLimits.timeout", &v, err) < 0)
			return -1;
		spec->limits.timeout_s = (int)v;
		v = 0;
		if (field_positive_int(rl, "disk", "resourceLimits.disk", &v, err) < 0)
			return -1;
		spec->limits.disk_mb = (int)v;
		json_t *cpu = field_get(rl, "cpu");
		if (cpu) {
			if (!json_is_number(cpu) || json_number_value(cpu) <= 0)
				return bk_err_field(err, "resourceLimits.cpu",
						    "resourceLimits.cpu must be a positive number");
			spec->limits.cpu = json_number_value(cpu);
		}
	}
	return 0;
}

static void handle_create(struct api_call *c)
{
	struct bk_err err;
	_cleanup_json_ json_t *body = api_body_object(c->req, true, &err);
	if (body == NULL)
		return api_buntime_error(c, &err);
	struct core_session_spec spec;
	char *metadata = NULL;
	struct core_session_info info;
	int r = create_spec(body, &spec, &metadata, &err);
	if (r == 0)
		r = core_session_create(c->api->core, &c->key, &spec, &info, &err);
	free(metadata);
	if (r < 0)
		return api_buntime_error(c, &err);
	snprintf(c->session_id, sizeof(c->session_id), "%s", info.id);
	json_t *o = session_json(&info, false);
	core_session_info_release(&info);
	api_json(c, 200, o);
}

/* ---- GET /sessions/{id}, GET /sessions, DELETE /sessions/{id} ---- */

static void handle_get(struct api_call *c, const char *id)
{
	struct bk_err err;
	struct core_session_info info;
	if (core_session_get(c->api->core, &c->key, id, &info, &err) < 0)
		return api_buntime_error(c, &err);
	json_t *o = session_json(&info, true);
	core_session_info_release(&info);
	api_json(c, 200, o);
}

/* A query argument as a whole non-negative number. */
static int query_int(struct api_call *c, const char *name, int def, int max, int *out,
		     struct bk_err *err)
{
	const char *s = http_query(c->req, name);
	*out = def;
	if (s == NULL)
		return 0;
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (*s == '\0' || *end != '\0' || errno || v < 0 || v > max)
		return bk_err_field(err, name, "%s must be a whole number 0..%d", name, max);
	*out = (int)v;
	return 0;
}

static void handle_list(struct api_call *c)
{
	struct bk_err err;
	int limit, offset;
	if (query_int(c, "limit", LIST_DEFAULT, LIST_MAX, &limit, &err) < 0 ||
	    query_int(c, "offset", 0, INT32_MAX, &offset, &err) < 0)
		return api_buntime_error(c, &err);
	if (limit == 0) {
		bk_err_field(&err, "limit", "limit must be a whole number 1..%d", LIST_MAX);
		return api_buntime_error(c, &err);
	}
	struct core_session_info *infos;
	size_t n;
	int64_t total;
	if (core_session_list(c->api->core, &c->key, http_query(c->req, "metadata"), limit, offset,
			      &infos, &n, &total, &err) < 0)
		return api_buntime_error(c, &err);
	json_t *arr = json_array();
	for (size_t i = 0; i < n; i++) {
		json_array_append_new(arr, session_json(&infos[i], true));
		core_session_info_release(&infos[i]);
	}
	free(infos);
	api_json(c, 200, json_pack("{s:o,s:I}", "sessions", arr, "total", (json_int_t)total));
}

static void handle_delete(struct api_call *c, const char *id)
{
	struct bk_err err;
	if (core_session_delete(c->api->core, &c->key, id, &err) < 0)
		return api_buntime_error(c, &err);
	api_json(c, 200, json_pack("{s:b,s:s}", "deleted", 1, "sessionId", id));
}

/* ---- POST /execute ---- */

struct exec_input {
	struct core_exec_req req;
	struct core_file *files;
	struct core_env *env;
	unsigned char **decoded;
};

static void exec_input_release(struct exec_input *in)
{
	for (size_t i = 0; in->decoded && i < in->req.n_files; i++)
		free(in->decoded[i]);
	free(in->decoded);
	free(in->files);
	free(in->env);
}

static int exec_files(json_t *files, struct exec_input *in, struct bk_err *err)
{
	if (!json_is_array(files))
		return bk_err_field(err, "files", "files must be an array of {path, content}");
	size_t n = json_array_size(files);
	in->files = calloc(n + 1, sizeof(*in->files));
	in->decoded = calloc(n + 1, sizeof(*in->decoded));
	if (in->files == NULL || in->decoded == NULL)
		return bk_err_set(err, ENOMEM, "cannot read files");
	for (size_t i = 0; i < n; i++) {
		json_t *f = json_array_get(files, i);
		const char *path = NULL, *content = NULL, *enc = NULL;
		if (!json_is_object(f))
			return bk_err_field(err, "files", "files[%zu] must be an object", i);
		if (field_string(f, "path", "files.path", &path, err) <= 0 ||
		    field_string(f, "content", "files.content", &content, err) <= 0) {
			if (err->field[0] == '\0' || path == NULL || content == NULL)
				bk_err_field(err, path ? "files.content" : "files.path",
					     "files[%zu] needs a string path and content", i);
			return -1;
		}
		if (field_string(f, "encoding", "files.encoding", &enc, err) < 0)
			return -1;
		in->files[i].path = path;
		size_t len = json_string_length(json_object_get(f, "content"));
		if (enc == NULL || strcmp(enc, "utf8") == 0 || strcmp(enc, "utf-8") == 0) {
			in->files[i].content = content;
			in->files[i].len = len;
		} else if (strcmp(enc, "base64") == 0) {
			unsigned char *bin = malloc(len + 1);
			size_t blen;
			if (bin == NULL)
				return bk_err_set(err, ENOMEM, "cannot decode files");
			in->decoded[i] = bin;
			if (sodium_base642bin(bin, len + 1, content, len, " \r\n", &blen, NULL,
					      sodium_base64_VARIANT_ORIGINAL) != 0)
				return bk_err_field(err, "files.content",
						    "files[%zu].content is not valid base64", i);
			in->files[i].content = (const char *)bin;
			in->files[i].len = blen;
		} else {
			return bk_err_field(err, "files.encoding",
					    "files[%zu].encoding must be \"utf8\" or \"base64\"", i);
		}
		in->req.n_files = i + 1;
	}
	in->req.files = in->files;
	return 0;
}

static int exec_env(json_t *env, struct exec_input *in, struct bk_err *err)
{
	if (!json_is_object(env))
		return bk_err_field(err, "env", "env must be an object of strings");
	size_t n = json_object_size(env), i = 0;
	in->env = calloc(n + 1, sizeof(*in->env));
	if (in->env == NULL)
		return bk_err_set(err, ENOMEM, "cannot read env");
	const char *k;
	json_t *v;
	json_object_foreach(env, k, v)
	{
		if (!json_is_string(v))
			return bk_err_field(err, "env", "env.%s must be a string", k);
		in->env[i].name = k;
		in->env[i].value = json_string_value(v);
		i++;
	}
	in->req.env = in->env;
	in->req.n_env = n;
	return 0;
}

static int exec_parse(json_t *body, struct exec_input *in, const char **id, struct bk_err *err)
{
	memset(in, 0, sizeof(*in));
	if (json_object_get(body, "session_id") && json_object_get(body, "sessionId"))
		return bk_err_field(err, "sessionId",
				    "send sessionId (buntime) or session_id (InstaVM), not both");
	if (field_string(body, "sessionId", "sessionId", id, err) <= 0)
		return err->field[0] ? -1 : bk_err_field(err, "sessionId", "sessionId is required");
	if (field_string(body, "code", "code", &in->req.code, err) < 0 ||
	    field_string(body, "command", "command", &in->req.command, err) < 0 ||
	    field_string(body, "workingDir", "workingDir", &in->req.working_dir, err) < 0)
		return -1;
	if ((in->req.code == NULL) == (in->req.command == NULL))
		return bk_err_field(err, "code", "exactly one of code and command is required");
	int64_t t = 0;
	if (field_positive_int(body, "timeout", "timeout", &t, err) < 0)
		return -1;
	in->req.timeout_s = t;
	json_t *stream = field_get(body, "stream");
	if (stream && !json_is_boolean(stream))
		return bk_err_field(err, "stream", "stream must be a boolean");
	if (json_is_true(stream))
		return bk_err_field(err, "stream", "streamed executions are not available yet");
	json_t *files = field_get(body, "files");
	if (files && exec_files(files, in, err) < 0)
		return -1;
	json_t *env = field_get(body, "env");
	if (env && exec_env(env, in, err) < 0)
		return -1;
	return 0;
}

static json_t *exec_result_json(const struct core_exec_result *r)
{
	json_t *written = json_array();
	for (size_t i = 0; i < r->n_files_written; i++)
		json_array_append_new(written, api_json_bytes(r->files_written[i],
							      strlen(r->files_written[i])));
	return json_pack("{s:o,s:o,s:i,s:I,s:I,s:I,s:b,s:o,s:b,s:b}", "stdout",
			 api_json_bytes(r->stdout_text, r->stdout_len), "stderr",
			 api_json_bytes(r->stderr_text, r->stderr_len), "exitCode", r->exit_code,
			 "executionTime", (json_int_t)r->execution_time_ms, "memoryUsed",
			 (json_int_t)r->memory_used_bytes, "cpuTime", (json_int_t)r->cpu_time_ms,
			 "timedOut", r->timed_out, "filesWritten", written, "stdoutTruncated",
			 r->stdout_truncated, "stderrTruncated", r->stderr_truncated);
}

static void handle_execute(struct api_call *c)
{
	struct bk_err err;
	_cleanup_json_ json_t *body = api_body_object(c->req, false, &err);
	if (body == NULL)
		return api_buntime_error(c, &err);
	struct exec_input in;
	const char *id = NULL;
	if (exec_parse(body, &in, &id, &err) < 0) {
		exec_input_release(&in);
		return api_buntime_error(c, &err);
	}
	snprintf(c->session_id, sizeof(c->session_id), "%s", id);
	struct core_exec_result res;
	int r = core_execute(c->api->core, &c->key, id, &in.req, &res, &err);
	exec_input_release(&in);
	if (r < 0)
		return api_buntime_error(c, &err);
	json_t *o = exec_result_json(&res);
	if (res.oom_killed) {
		/* The partial result travels in the error's details. */
		core_exec_result_release(&res);
		api_json(c, 507,
			 json_pack("{s:{s:s,s:s,s:o}}", "error", "code", "memory_limit_exceeded",
				   "message", "the execution went over the session's memory limit "
					      "and was killed",
				   "details", o));
		return;
	}
	core_exec_result_release(&res);
	api_json(c, 200, o);
}

/* ---- GET /execution/processes, POST /execution/kill ---- */

static void handle_processes(struct api_call *c)
{
	struct bk_err err;
	const char *id = http_query(c->req, "sessionId");
	if (id == NULL || *id == '\0') {
		bk_err_field(&err, "sessionId", "sessionId is required");
		return api_buntime_error(c, &err);
	}
	snprintf(c->session_id, sizeof(c->session_id), "%s", id);
	struct core_proc *procs;
	size_t n;
	if (core_process_list(c->api->core, &c->key, id, &procs, &n, &err) < 0)
		return api_buntime_error(c, &err);
	json_t *arr = json_array();
	for (size_t i = 0; i < n; i++) {
		char started[40];
		iso(procs[i].started_ms, started, sizeof(started));
		json_array_append_new(arr, json_pack("{s:i,s:o,s:s}", "pid", procs[i].pid,
						     "command",
						     api_json_bytes(procs[i].command,
								    strlen(procs[i].command)),
						     "startedAt", started));
	}
	free(procs);
	api_json(c, 200, json_pack("{s:o}", "processes", arr));
}

static void handle_kill(struct api_call *c)
{
	struct bk_err err;
	_cleanup_json_ json_t *body = api_body_object(c->req, false, &err);
	if (body == NULL)
		return api_buntime_error(c, &err);
	const char *id = NULL;
	int64_t pid = 0;
	if (field_string(body, "sessionId", "sessionId", &id, &err) <= 0) {
		if (err.field[0] == '\0' || id == NULL)
			bk_err_field(&err, "sessionId", "sessionId is required");
		return api_buntime_error(c, &err);
	}
	snprintf(c->session_id, sizeof(c->session_id), "%s", id);
	if (field_positive_int(body, "pid", "pid", &pid, &err) < 0)
		return api_buntime_error(c, &err);
	int *pids;
	size_t n;
	if (core_process_kill(c->api->core, &c->key, id, (int)pid, &pids, &n, &err) < 0)
		return api_buntime_error(c, &err);
	json_t *arr = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(arr, json_integer(pids[i]));
	free(pids);
	api_json(c, 200, json_pack("{s:b,s:o}", "killed", n > 0, "pids", arr));
}

/* ---- routing ---- */

static void not_found(struct api_call *c, const char *method, const char *path)
{
	api_json(c, 404,
		 json_pack("{s:{s:s,s:s,s:{}}}", "error", "code", "not_found", "message",
			   "no such route", "details"));
	(void)method, (void)path;
}

void api_buntime_route(struct api_call *c, const char *method, const char *path)
{
	static const char sessions[] = "/sessions/";
	bool get = strcmp(method, "GET") == 0, post = strcmp(method, "POST") == 0,
	     del = strcmp(method, "DELETE") == 0;
	enum { R_NONE, R_CREATE, R_LIST, R_GET, R_DELETE, R_EXECUTE, R_PS, R_KILL } route = R_NONE;
	const char *id = NULL;
	if (post && strcmp(path, "/sessions/create") == 0)
		route = R_CREATE;
	else if (get && strcmp(path, "/sessions") == 0)
		route = R_LIST;
	else if ((get || del) && strncmp(path, sessions, sizeof(sessions) - 1) == 0 &&
		 path[sizeof(sessions) - 1] != '\0' && !strchr(path + sizeof(sessions) - 1, '/')) {
		id = path + sizeof(sessions) - 1;
		route = get ? R_GET : R_DELETE;
	} else if (post && strcmp(path, "/execute") == 0)
		route = R_EXECUTE;
	else if (get && strcmp(path, "/execution/processes") == 0)
		route = R_PS;
	else if (post && strcmp(path, "/execution/kill") == 0)
		route = R_KILL;
	if (route == R_NONE)
		return not_found(c, method, path);

	struct bk_err err;
	if (api_auth(c, &err) < 0)
		return api_buntime_error(c, &err);
	if (id)
		snprintf(c->session_id, sizeof(c->session_id), "%s", id);
	switch (route) {
	case R_CREATE:
		return handle_create(c);
	case R_LIST:
		return handle_list(c);
	case R_GET:
		return handle_get(c, id);
	case R_DELETE:
		return handle_delete(c, id);
	case R_EXECUTE:
		return handle_execute(c);
	case R_PS:
		return handle_processes(c);
	case R_KILL:
		return handle_kill(c);
	default:
		return not_found(c, method, path);
	}
}
