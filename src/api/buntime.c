/* The buntime dialect: camelCase JSON, errors as
 * {"error":{"code","message","details"}}. A thin translation onto core/:
 * types and shapes are checked here, rules of plans and sessions there. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "api/buntime_int.h"
#include "util/cleanup.h"
#include "util/util.h"

#define LIST_DEFAULT 50
#define LIST_MAX 100

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
	json_t *o = json_pack("{s:s,s:s,s:s,s:s,s:o}", "sessionId", info->public_id, "createdAt",
			      created, "expiresAt", expires, "previewUrl", info->preview_url,
			      "resourceLimits", limits_json(&info->limits));
	if (o == NULL || !full)
		return o;
	json_t *meta = json_loads(info->metadata ? info->metadata : "{}", 0, NULL);
	json_object_set_new(o, "lastActive", json_string(active));
	json_object_set_new(o, "state", json_string(core_state_name(info->state)));
	json_object_set_new(o, "filesCount", json_integer(info->files_count));
	json_object_set_new(o, "activeProcesses", json_integer(info->active_processes));
	json_object_set_new(o, "metadata", meta ? meta : json_object());
	_cleanup_free_ char *net = core_network_view(info->network, true);
	json_t *nj = net ? json_loads(net, 0, NULL) : NULL;
	if (nj) {
		/* Read-only, as bandwidthMbps: what it carried over the
		 * session's life, from the session's side. */
		json_object_set_new(nj, "bytesOut", json_integer(info->net_tx_bytes));
		json_object_set_new(nj, "bytesIn", json_integer(info->net_rx_bytes));
		json_object_set_new(o, "network", nj);
	}
	return o;
}

/* ---- POST /sessions/create ---- */

int buntime__create_spec(json_t *body, struct core_session_spec *spec, char **metadata,
			 char **network, struct bk_err *err)
{
	memset(spec, 0, sizeof(*spec));
	json_t *net = api_field_get(body, "network");
	if (net) {
		if (!json_is_object(net))
			return bk_err_field(err, "network", "network must be a JSON object");
		*network = json_dumps(net, JSON_COMPACT);
		if (*network == NULL)
			return bk_err_set(err, ENOMEM, "cannot read network");
		spec->network = *network;
		spec->network_camel = true;
		spec->network_prefix = "network.";
	}
	int64_t v = 0;
	int r = api_field_int(body, "ttl", "ttl", &v, err);
	if (r < 0)
		return -1;
	if (r > 0) {
		if (v <= 0 || v > INT32_MAX)
			return bk_err_field(err, "ttl", "ttl must be a positive number of seconds");
		spec->ttl_s = v;
	}
	json_t *meta = api_field_get(body, "metadata");
	if (meta) {
		if (!json_is_object(meta))
			return bk_err_field(err, "metadata", "metadata must be a JSON object");
		/* Its size is core's rule, measured in this compact form. */
		*metadata = json_dumps(meta, JSON_COMPACT);
		if (*metadata == NULL)
			return bk_err_set(err, ENOMEM, "cannot serialize metadata");
		spec->metadata = *metadata;
	}
	json_t *rl = api_field_get(body, "resourceLimits");
	if (rl) {
		if (!json_is_object(rl))
			return bk_err_field(err, "resourceLimits",
					    "resourceLimits must be a JSON object");
		spec->has_limits = true;
		v = 0;
		if (api_field_positive_int(rl, "memory", "resourceLimits.memory", &v, err) < 0)
			return -1;
		spec->limits.memory_mb = (int)v;
		v = 0;
		if (api_field_positive_int(rl, "timeout", "resourceLimits.timeout", &v, err) < 0)
			return -1;
		spec->limits.timeout_s = (int)v;
		v = 0;
		if (api_field_positive_int(rl, "disk", "resourceLimits.disk", &v, err) < 0)
			return -1;
		spec->limits.disk_mb = (int)v;
		json_t *cpu = api_field_get(rl, "cpu");
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
	struct bk_err err = BK_ERR_INIT;
	_cleanup_json_ json_t *body = api_body_object(c->req, true, &err);
	if (body == NULL)
		return api_buntime_error(c, &err);
	struct core_session_spec spec;
	char *metadata = NULL, *network = NULL;
	struct core_session_info info;
	int r = buntime__create_spec(body, &spec, &metadata, &network, &err);
	if (r == 0)
		r = core_session_create(c->api->core, &c->key, &spec, &info, &err);
	free(metadata);
	free(network);
	if (r < 0)
		return api_buntime_error(c, &err);
	snprintf(c->session_id, sizeof(c->session_id), "%s", info.public_id);
	json_t *o = session_json(&info, false);
	core_session_info_release(&info);
	api_json(c, 200, o);
}

/* ---- GET /sessions/{id}, GET /sessions, DELETE /sessions/{id} ---- */

static void handle_get(struct api_call *c, const char *id)
{
	struct bk_err err = BK_ERR_INIT;
	struct core_session_info info;
	if (core_session_get(c->api->core, &c->key, id, &info, &err) < 0)
		return api_buntime_error(c, &err);
	json_t *o = session_json(&info, true);
	core_session_info_release(&info);
	api_json(c, 200, o);
}

static void handle_list(struct api_call *c)
{
	struct bk_err err = BK_ERR_INIT;
	int limit, offset;
	if (api_query_int(c, "limit", "limit", LIST_DEFAULT, 1, LIST_MAX, &limit, &err) < 0 ||
	    api_query_int(c, "offset", "offset", 0, 0, INT32_MAX, &offset, &err) < 0)
		return api_buntime_error(c, &err);
	struct core_session_info *infos;
	size_t n;
	int64_t total;
	if (core_session_list(c->api->core, &c->key, http_query(c->req, "metadata"), false, limit,
			      offset, &infos, &n, &total, &err) < 0)
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
	struct bk_err err = BK_ERR_INIT;
	if (core_session_delete(c->api->core, &c->key, id, &err) < 0)
		return api_buntime_error(c, &err);
	api_json(c, 200, json_pack("{s:b,s:s}", "deleted", 1, "sessionId", id));
}

/* ---- POST /execute ---- */

void buntime__exec_input_release(struct buntime_exec_input *in)
{
	/* All of them: a file that failed to decode is not counted in n_files. */
	for (size_t i = 0; in->decoded && i < in->n_decoded; i++)
		free(in->decoded[i]);
	free(in->decoded);
	free(in->files);
	free(in->env);
}

static int exec_files(json_t *files, struct buntime_exec_input *in, struct bk_err *err)
{
	if (!json_is_array(files))
		return bk_err_field(err, "files", "files must be an array of {path, content}");
	size_t n = json_array_size(files);
	in->files = calloc(n + 1, sizeof(*in->files));
	in->decoded = calloc(n + 1, sizeof(*in->decoded));
	if (in->files == NULL || in->decoded == NULL)
		return bk_err_set(err, ENOMEM, "cannot read files");
	in->n_decoded = n;
	for (size_t i = 0; i < n; i++) {
		json_t *f = json_array_get(files, i);
		const char *path = NULL, *content = NULL, *enc = NULL;
		if (!json_is_object(f))
			return bk_err_field(err, "files", "files[%zu] must be an object", i);
		if (api_field_required_string(f, "path", "files.path", &path, err) < 0 ||
		    api_field_required_string(f, "content", "files.content", &content, err) < 0) {
			bk_err_prefix(err, "files[%zu]", i);
			return -1;
		}
		if (api_field_string(f, "encoding", "files.encoding", &enc, err) < 0)
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
					    "files[%zu].encoding must be \"utf8\" or \"base64\"",
					    i);
		}
		in->req.n_files = i + 1;
	}
	in->req.files = in->files;
	return 0;
}

static int exec_env(json_t *env, struct buntime_exec_input *in, struct bk_err *err)
{
	if (!json_is_object(env))
		return bk_err_field(err, "env", "env must be an object of strings");
	size_t n = json_object_size(env), i = 0;
	in->env = calloc(n + 1, sizeof(*in->env));
	if (in->env == NULL)
		return bk_err_set(err, ENOMEM, "cannot read env");
	const char *k;
	json_t *v;
	json_object_foreach (env, k, v) {
		if (!json_is_string(v)) {
			char field[64];
			snprintf(field, sizeof(field), "env.%.59s", k);
			return bk_err_field(err, field, "env.%s must be a string", k);
		}
		in->env[i].name = k;
		in->env[i].value = json_string_value(v);
		i++;
	}
	in->req.env = in->env;
	in->req.n_env = n;
	return 0;
}

int buntime__exec_parse(json_t *body, struct buntime_exec_input *in, const char **id,
			struct bk_err *err)
{
	memset(in, 0, sizeof(*in));
	if (json_object_get(body, "session_id") && json_object_get(body, "sessionId"))
		return bk_err_field(err, "sessionId",
				    "send sessionId (buntime) or session_id (InstaVM), not both");
	if (api_field_required_string(body, "sessionId", "sessionId", id, err) < 0)
		return -1;
	if (api_field_string(body, "code", "code", &in->req.code, err) < 0 ||
	    api_field_string(body, "command", "command", &in->req.command, err) < 0 ||
	    api_field_string(body, "workingDir", "workingDir", &in->req.working_dir, err) < 0)
		return -1;
	if ((in->req.code == NULL) == (in->req.command == NULL))
		return bk_err_field(err, "code", "exactly one of code and command is required");
	int64_t t = 0;
	if (api_field_positive_int(body, "timeout", "timeout", &t, err) < 0)
		return -1;
	in->req.timeout_s = t;
	json_t *stream = api_field_get(body, "stream");
	if (stream && !json_is_boolean(stream))
		return bk_err_field(err, "stream", "stream must be a boolean");
	in->stream = json_is_true(stream);
	json_t *files = api_field_get(body, "files");
	if (files && exec_files(files, in, err) < 0)
		return -1;
	json_t *env = api_field_get(body, "env");
	if (env && exec_env(env, in, err) < 0)
		return -1;
	return 0;
}

/* The result's members after stdout and stderr, in their order (a new
 * reference). */
static json_t *exec_result_rest(const struct core_exec_result *r)
{
	json_t *written = json_array();
	for (size_t i = 0; i < r->n_files_written; i++)
		json_array_append_new(
		    written, api_json_bytes(r->files_written[i], strlen(r->files_written[i])));
	return json_pack("{s:i,s:I,s:I,s:I,s:b,s:o,s:b,s:b}", "exitCode", r->exit_code,
			 "executionTime", (json_int_t)r->execution_time_ms, "memoryUsed",
			 (json_int_t)r->memory_used_bytes, "cpuTime", (json_int_t)r->cpu_time_ms,
			 "timedOut", r->timed_out, "filesWritten", written, "stdoutTruncated",
			 r->stdout_truncated, "stderrTruncated", r->stderr_truncated);
}

static const char oom_code[] = "memory_limit_exceeded";
static const char oom_message[] =
    "the execution went over the session's memory limit and was killed";

/* Answers with the result (taken): 200, or 507 with the result in the
 * error's details; encoded as the client takes it (api/exec_answer.c). */
static void exec_answer(struct api_call *c, struct core_exec_result *res)
{
	bool oom = res->oom_killed;
	/* {"error":{"code":…,"message":…,"details":<the result>}} */
	char open[256] = "";
	if (oom)
		snprintf(open, sizeof(open),
			 "{\"error\":{\"code\":\"%s\",\"message\":\"%s\",\"details\":", oom_code,
			 oom_message);
	json_t *rest = exec_result_rest(res);
	api_answer_send(c, oom ? 507 : 200, api_answer_new(open, res, NULL, rest, oom ? "}}" : ""));
}

/* ---- POST /execute with stream:true: Server-Sent Events (api/stream.c) ---- */

/* A streamed execution's request, kept alive for the stream's worker. */
struct exec_stream {
	struct api *api;
	struct core_key key;
	char id[64];
	json_t *body; /* the request's JSON, which in points into */
	struct buntime_exec_input in;
};

static int exec_stream_run(void *ctx, struct api_stream *s, struct core_exec_result *res,
			   struct bk_err *err)
{
	struct exec_stream *x = ctx;
	api_stream_hook(s, &x->in.req);
	return core_execute(x->api->core, &x->key, x->id, &x->in.req, res, err);
}

/* "exit" with the result, or "error" with the envelope's error object
 * (the result in its details). */
static json_t *exec_stream_final(void *ctx, int rc, struct core_exec_result *res,
				 const struct bk_err *err, const char **event,
				 struct api_answer **answer)
{
	*event = rc == 0 && !res->oom_killed ? "exit" : "error";
	if (rc < 0)
		return api_buntime_error_body(err);
	bool oom = res->oom_killed;
	char open[256] = "";
	if (oom)
		snprintf(open, sizeof(open),
			 "{\"code\":\"%s\",\"message\":\"%s\",\"details\":", oom_code, oom_message);
	json_t *rest = exec_result_rest(res);
	*answer = api_answer_new(open, res, NULL, rest, oom ? "}" : "");
	/* Out of memory: the event says so rather than nothing. */
	if (*answer == NULL) {
		struct bk_err e = BK_ERR_INIT;
		bk_err_set(&e, ENOMEM, "cannot answer");
		*event = "error";
		return api_buntime_error_body(&e);
	}
	return NULL;
}

static void exec_stream_release(void *ctx)
{
	struct exec_stream *x = ctx;
	buntime__exec_input_release(&x->in);
	json_decref(x->body);
	free(x);
}

static const struct api_stream_ops exec_stream_ops = {
    .run = exec_stream_run,
    .final_event = exec_stream_final,
    .release = exec_stream_release,
};

/* Starts the execution on a worker thread and answers with its events.
 * Takes in; body is the request's JSON, which in points into. */
static void execute_stream(struct api_call *c, const char *id, json_t *body,
			   struct buntime_exec_input *in)
{
	struct bk_err err = BK_ERR_INIT;
	struct exec_stream *x = calloc(1, sizeof(*x));
	if (x == NULL) {
		buntime__exec_input_release(in);
		bk_err_set(&err, ENOMEM, "cannot start a stream");
		return api_buntime_error(c, &err);
	}
	x->api = c->api;
	x->key = c->key;
	snprintf(x->id, sizeof(x->id), "%s", id);
	x->body = json_incref(body);
	x->in = *in;
	if (api_stream_start(c, &exec_stream_ops, x, &err) < 0)
		return api_buntime_error(c, &err);
}

static bool client_left(void *ctx)
{
	return api_client_hung_up(*(const int *)ctx);
}

static void handle_execute(struct api_call *c)
{
	struct bk_err err = BK_ERR_INIT;
	_cleanup_json_ json_t *body = api_body_object(c->req, false, &err);
	if (body == NULL)
		return api_buntime_error(c, &err);
	struct buntime_exec_input in;
	const char *id = NULL;
	if (buntime__exec_parse(body, &in, &id, &err) < 0) {
		buntime__exec_input_release(&in);
		return api_buntime_error(c, &err);
	}
	snprintf(c->session_id, sizeof(c->session_id), "%s", id);
	if (in.stream) {
		/* Bad input and an unknown session are plain answers before any
		 * stream starts. */
		struct core_session_info info;
		if (core_exec_check(&c->key, &in.req, &err) < 0 ||
		    core_session_get(c->api->core, &c->key, id, &info, &err) < 0) {
			buntime__exec_input_release(&in);
			return api_buntime_error(c, &err);
		}
		core_session_info_release(&info);
		return execute_stream(c, id, body, &in);
	}
	/* A caller that hangs up does not leave its execution running. */
	int client_fd = c->req->client_fd;
	in.req.cancelled = client_left;
	in.req.ctx = &client_fd;
	struct core_exec_result res;
	int r = core_execute(c->api->core, &c->key, id, &in.req, &res, &err);
	buntime__exec_input_release(&in);
	if (r < 0)
		return api_buntime_error(c, &err);
	exec_answer(c, &res);
}

/* ---- sessionId, in the query or the body ---- */

/* sessionId from the query (GET) as a required string. */
static const char *query_session(struct api_call *c, struct bk_err *err)
{
	const char *id;
	if (api_query_required(c, "sessionId", &id, err) < 0)
		return NULL;
	snprintf(c->session_id, sizeof(c->session_id), "%s", id);
	return id;
}

/* sessionId from a JSON body as a required string. */
static const char *body_session(struct api_call *c, json_t *body, struct bk_err *err)
{
	const char *id;
	if (api_field_required_string(body, "sessionId", "sessionId", &id, err) < 0)
		return NULL;
	snprintf(c->session_id, sizeof(c->session_id), "%s", id);
	return id;
}

/* ---- GET /execution/processes, POST /execution/kill ---- */

static void handle_processes(struct api_call *c)
{
	struct bk_err err = BK_ERR_INIT;
	const char *id = query_session(c, &err);
	if (id == NULL)
		return api_buntime_error(c, &err);
	struct core_proc *procs;
	size_t n;
	if (core_process_list(c->api->core, &c->key, id, &procs, &n, &err) < 0)
		return api_buntime_error(c, &err);
	json_t *arr = json_array();
	for (size_t i = 0; i < n; i++) {
		char started[40];
		iso(procs[i].started_ms, started, sizeof(started));
		json_array_append_new(
		    arr, json_pack("{s:i,s:o,s:s}", "pid", procs[i].pid, "command",
				   api_json_bytes(procs[i].command, strlen(procs[i].command)),
				   "startedAt", started));
	}
	free(procs);
	api_json(c, 200, json_pack("{s:o}", "processes", arr));
}

static void handle_kill(struct api_call *c)
{
	struct bk_err err = BK_ERR_INIT;
	_cleanup_json_ json_t *body = api_body_object(c->req, false, &err);
	if (body == NULL)
		return api_buntime_error(c, &err);
	const char *id = body_session(c, body, &err);
	int64_t pid = 0;
	if (id == NULL || api_field_positive_int(body, "pid", "pid", &pid, &err) < 0)
		return api_buntime_error(c, &err);
	int *pids;
	size_t n;
	if (core_process_kill(c->api->core, &c->key, id, (int)pid, &pids, &n, &err) < 0)
		return api_buntime_error(c, &err);
	json_t *arr = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(arr, json_integer(pids[i]));
	free(pids);
	api_json(c, 200, json_pack("{s:I,s:o}", "killed", (json_int_t)n, "pids", arr));
}

/* ---- the files endpoints ---- */

static void handle_files_write(struct api_call *c)
{
	struct bk_err err = BK_ERR_INIT;
	_cleanup_json_ json_t *body = api_body_object(c->req, false, &err);
	if (body == NULL)
		return api_buntime_error(c, &err);
	const char *id = body_session(c, body, &err);
	const char *path = NULL, *content = NULL, *enc = NULL;
	if (id == NULL || api_field_required_string(body, "path", "path", &path, &err) < 0 ||
	    api_field_required_string(body, "content", "content", &content, &err) < 0 ||
	    api_field_string(body, "encoding", "encoding", &enc, &err) < 0)
		return api_buntime_error(c, &err);
	size_t len = json_string_length(json_object_get(body, "content"));
	const void *data = content;
	_cleanup_free_ unsigned char *bin = NULL;
	if (enc && strcmp(enc, "base64") == 0) {
		bin = malloc(len + 1);
		if (bin == NULL) {
			bk_err_set(&err, ENOMEM, "cannot decode content");
			return api_buntime_error(c, &err);
		}
		if (sodium_base642bin(bin, len + 1, content, len, " \r\n", &len, NULL,
				      sodium_base64_VARIANT_ORIGINAL) != 0) {
			bk_err_field(&err, "content", "content is not valid base64");
			return api_buntime_error(c, &err);
		}
		data = bin;
	} else if (enc && strcmp(enc, "utf8") != 0 && strcmp(enc, "utf-8") != 0) {
		bk_err_field(&err, "encoding", "encoding must be \"utf8\" or \"base64\"");
		return api_buntime_error(c, &err);
	}
	if (core_file_write(c->api->core, &c->key, id, path, data, len, &err) < 0)
		return api_buntime_error(c, &err);
	api_json(c, 200, json_pack("{s:s,s:I}", "path", path, "size", (json_int_t)len));
}

/* The compact JSON text of v (taken), malloc'd; NULL on ENOMEM. */
static char *json_text_take(json_t *v)
{
	char *text = v ? json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
	json_decref(v);
	return text;
}

/* {path, content, size, encoding} in that order, content streamed: UTF-8
 * text when the whole file is UTF-8 (init checks it first), else base64. */
static void handle_files_read(struct api_call *c)
{
	struct bk_err err = BK_ERR_INIT;
	const char *id = query_session(c, &err);
	const char *path = NULL;
	if (id == NULL || api_query_required(c, "path", &path, &err) < 0)
		return api_buntime_error(c, &err);
	struct core_read *r;
	if (core_read_open(c->api->core, &c->key, id, path, false, &r, &err) < 0)
		return api_buntime_error(c, &err);
	bool utf8 = core_read_utf8(r);
	_cleanup_free_ char *pj = json_text_take(api_json_bytes(path, strlen(path)));
	char *head = NULL, *tail = NULL;
	if (pj == NULL || asprintf(&head, "{\"path\":%s,\"content\":\"", pj) < 0)
		head = NULL;
	if (asprintf(&tail, "\",\"size\":%lld,\"encoding\":\"%s\"}", (long long)core_read_size(r),
		     utf8 ? "utf8" : "base64") < 0)
		tail = NULL;
	api_file_answer(c, r, utf8 ? API_FILE_TEXT : API_FILE_BASE64, head, tail);
}

/* Whether a name goes into JSON as it is: valid UTF-8 without control
 * characters (which JSON could escape, but which a client would mangle in
 * a terminal or a file name). */
static bool name_is_plain(const char *s)
{
	for (const unsigned char *p = (const unsigned char *)s; *p; p++)
		if (*p < 0x20 || *p == 0x7f)
			return false;
	return api_utf8_valid(s);
}

/* The opaque cursor of a page's last path: its bytes in unpadded
 * URL-safe base64 (names need not be text). */
static json_t *cursor_of(const char *path)
{
	size_t len = strlen(path);
	size_t blen = sodium_base64_encoded_len(len, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	_cleanup_free_ char *b = malloc(blen);
	if (b == NULL)
		return NULL;
	sodium_bin2base64(b, blen, (const unsigned char *)path, len,
			  sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	return json_string(b);
}

static void handle_files_list(struct api_call *c)
{
	struct bk_err err = BK_ERR_INIT;
	const char *id = query_session(c, &err);
	if (id == NULL)
		return api_buntime_error(c, &err);
	int limit, offset;
	bool recursive;
	if (api_query_int(c, "limit", "limit", 100, 1, 1000, &limit, &err) < 0 ||
	    api_query_int(c, "offset", "offset", 0, 0, INT32_MAX, &offset, &err) < 0 ||
	    api_query_bool(c, "recursive", &recursive, &err) < 0)
		return api_buntime_error(c, &err);
	const char *cq = http_query(c->req, "cursor");
	char cursor[4200];
	size_t clen = 0;
	if (cq && *cq &&
	    (sodium_base642bin((unsigned char *)cursor, sizeof(cursor) - 1, cq, strlen(cq), NULL,
			       &clen, NULL, sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 ||
	     clen == 0 || memchr(cursor, 0, clen))) {
		bk_err_field(&err, "cursor", "cursor is not one that a page's nextCursor gave");
		return api_buntime_error(c, &err);
	}
	cursor[clen] = '\0';
	struct core_list_page page = {
	    .limit = limit, .offset = offset, .cursor = clen ? cursor : NULL};
	struct core_entry *es;
	size_t n;
	if (core_file_list(c->api->core, &c->key, id, http_query(c->req, "path"), recursive, &page,
			   &es, &n, &err) < 0)
		return api_buntime_error(c, &err);
	json_t *files = json_array();
	for (size_t i = 0; i < n; i++) {
		char mod[40];
		iso(es[i].mtime_ms, mod, sizeof(mod));
		json_t *e = json_pack("{s:o,s:I,s:s,s:s}", "path",
				      api_json_bytes(es[i].path, strlen(es[i].path)), "size",
				      (json_int_t)es[i].size, "modified", mod, "type",
				      es[i].is_dir ? "directory" : "file");
		if (!name_is_plain(es[i].path)) {
			/* The path's bytes, which "path" shows lossily. */
			size_t len = strlen(es[i].path);
			size_t blen =
			    sodium_base64_encoded_len(len, sodium_base64_VARIANT_ORIGINAL);
			_cleanup_free_ char *b = malloc(blen);
			if (b) {
				sodium_bin2base64(b, blen, (const unsigned char *)es[i].path, len,
						  sodium_base64_VARIANT_ORIGINAL);
				json_object_set_new(e, "pathBase64", json_string(b));
			}
		}
		json_array_append_new(files, e);
	}
	json_t *next = page.more && n > 0 ? cursor_of(es[n - 1].path) : json_null();
	core_entries_free(es, n);
	api_json(c, 200,
		 json_pack("{s:o,s:I,s:o}", "files", files, "total", (json_int_t)page.total,
			   "nextCursor", next ? next : json_null()));
}

static void handle_files_delete(struct api_call *c)
{
	struct bk_err err = BK_ERR_INIT;
	_cleanup_json_ json_t *body = api_body_object(c->req, false, &err);
	if (body == NULL)
		return api_buntime_error(c, &err);
	const char *id = body_session(c, body, &err);
	const char *path = NULL;
	if (id == NULL || api_field_required_string(body, "path", "path", &path, &err) < 0)
		return api_buntime_error(c, &err);
	json_t *rec = api_field_get(body, "recursive");
	if (rec && !json_is_boolean(rec)) {
		bk_err_field(&err, "recursive", "recursive must be a boolean");
		return api_buntime_error(c, &err);
	}
	if (core_file_delete(c->api->core, &c->key, id, path, json_is_true(rec), &err) < 0)
		return api_buntime_error(c, &err);
	api_json(c, 200, json_pack("{s:b,s:s}", "deleted", 1, "path", path));
}

/* ---- routing ---- */

/* The {id} of /sessions/{id}. */
static void route_get(struct api_call *c)
{
	handle_get(c, c->param[0]);
}

static void route_delete(struct api_call *c)
{
	handle_delete(c, c->param[0]);
}

/* ---- GET|POST|PATCH /sessions/{id}/network ---- */

static void network_answer(struct api_call *c, int r, char *text, struct bk_err *err)
{
	if (r < 0)
		return api_buntime_error(c, err);
	json_t *o = json_loads(text, 0, NULL);
	free(text);
	api_json(c, 200, o ? o : json_object());
}

static void route_network_get(struct api_call *c)
{
	struct bk_err err = BK_ERR_INIT;
	char *text = NULL;
	int r = core_session_network_get(c->api->core, &c->key, c->param[0], true, &text, &err);
	network_answer(c, r, text, &err);
}

/* POST and PATCH alike: the fields given replace the session's, the rest
 * stay. */
static void route_network_set(struct api_call *c)
{
	struct bk_err err = BK_ERR_INIT;
	_cleanup_json_ json_t *body = api_body_object(c->req, false, &err);
	if (body == NULL)
		return api_buntime_error(c, &err);
	_cleanup_free_ char *patch = json_dumps(body, JSON_COMPACT);
	char *text = NULL;
	int r = patch ? core_session_network_set(c->api->core, &c->key, c->param[0], patch, true,
						 "", &text, &err)
		      : bk_err_set(&err, ENOMEM, "cannot read the body");
	network_answer(c, r, text, &err);
}

/* POST /execute is buntime's unless its body is InstaVM's; one that names
 * both sessionId and session_id is buntime's (and refused in its shape). */
static bool buntime_claims_execute(struct api_call *c)
{
	return !api_body_is_instavm(c);
}

/* Every route of the dialect: the router (api/router.c) matches them in
 * this order, and tests/unit/openapi.c checks that api/openapi.c documents
 * each one and nothing else. */
static const struct api_route buntime_routes[] = {
    {"POST", "/sessions/create", handle_create, API_ROUTE_IDEMPOTENT | API_ROUTE_CREATES_SESSION},
    {"GET", "/sessions", handle_list, 0},
    {"GET", "/sessions/{id}", route_get, 0},
    {"DELETE", "/sessions/{id}", route_delete, 0},
    {"GET", "/sessions/{id}/network", route_network_get, 0},
    {"POST", "/sessions/{id}/network", route_network_set, 0},
    {"PATCH", "/sessions/{id}/network", route_network_set, 0},
    {"POST", "/execute", handle_execute,
     API_ROUTE_IDEMPOTENT | API_ROUTE_EXECUTES | API_ROUTE_BODY_FILE, buntime_claims_execute},
    {"GET", "/execution/processes", handle_processes, 0},
    {"POST", "/execution/kill", handle_kill, 0},
    {"POST", "/files/write", handle_files_write, API_ROUTE_IDEMPOTENT | API_ROUTE_BODY_FILE},
    {"GET", "/files/read", handle_files_read, 0},
    {"GET", "/files/list", handle_files_list, 0},
    {"POST", "/files/delete", handle_files_delete, 0},
};

const struct api_route_table api_buntime_routes = {
    .name = "buntime",
    .routes = buntime_routes,
    .n = ARRAY_SIZE(buntime_routes),
    .error = api_buntime_error,
};
