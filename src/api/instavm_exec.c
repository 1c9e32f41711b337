/* The InstaVM dialect's executions and files: POST /execute (its own,
 * told apart from buntime's by the body), /execute_async with
 * GET /v1/executions/{task_id}, and /download. */
#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/instavm_int.h"
#include "util/cleanup.h"
#include "util/util.h"

#define TIMEOUT_MIN_S 1
#define TIMEOUT_MAX_S 600
#define TIMEOUT_DEFAULT_S 60
/* The SDK's HTTP timeout equals the timeout it sends: the run stops this
 * much earlier, so that its answer arrives before the client gives up. */
#define ANSWER_MARGIN_US 500000

bool api_body_is_instavm(struct api_call *c)
{
	struct bk_err err = BK_ERR_INIT;
	json_t *b = api_call_body(c, &err);
	return b && json_object_get(b, "session_id") && !json_object_get(b, "sessionId");
}

bool instavm_claims_execute(struct api_call *c)
{
	return api_body_is_instavm(c);
}

static int language_of(const char *s, enum core_language *out)
{
	static const struct {
		const char *name;
		enum core_language lang;
	} langs[] = {{"python", CORE_LANG_PYTHON},
		     {"bash", CORE_LANG_BASH},
		     {"javascript", CORE_LANG_JAVASCRIPT},
		     {"typescript", CORE_LANG_TYPESCRIPT}};
	for (size_t i = 0; i < ARRAY_SIZE(langs); i++) {
		if (strcmp(s, langs[i].name) == 0) {
			*out = langs[i].lang;
			return 0;
		}
	}
	return -1;
}

int instavm__exec_parse(json_t *body, struct iv_exec *x, struct bk_err *err)
{
	*x = (struct iv_exec){.language = CORE_LANG_PYTHON, .timeout_s = TIMEOUT_DEFAULT_S};
	instavm_body_session(body, &x->id, err);
	json_t *cmd = json_object_get(body, "command");
	const char *name = "command";
	if (cmd == NULL || json_is_null(cmd)) {
		cmd = json_object_get(body, "code");
		name = "code";
	}
	if (cmd == NULL || json_is_null(cmd))
		bk_err_add(err, "body.command", "missing", "Field required");
	else if (!json_is_string(cmd))
		bk_err_add(err, strcmp(name, "code") == 0 ? "body.code" : "body.command",
			   "string_type", "Input should be a valid string");
	else
		x->code = json_string_value(cmd);
	json_t *lang = json_object_get(body, "language");
	if (lang && !json_is_null(lang)) {
		if (!json_is_string(lang))
			bk_err_add(err, "body.language", "string_type",
				   "Input should be a valid string");
		else if (language_of(json_string_value(lang), &x->language) < 0)
			bk_err_add(
			    err, "body.language", "literal_error",
			    "Input should be 'python', 'bash', 'javascript' or 'typescript'");
	}
	instavm_int_field(body, "timeout", TIMEOUT_MIN_S, TIMEOUT_MAX_S, &x->timeout_s, err);
	return bk_err_is_set(err) ? -1 : 0;
}

/* core's field names are the body's here. */
static void body_fields(struct bk_err *err)
{
	if (err->kind != BK_E_INVALID || err->field[0] == '\0' ||
	    strncmp(err->field, "body.", 5) == 0)
		return;
	char f[64];
	snprintf(f, sizeof(f), "body.%.50s",
		 strcmp(err->field, "code") == 0 ? "command" : err->field);
	snprintf(err->field, sizeof(err->field), "%s", f);
}

static bool client_left(void *ctx)
{
	return api_client_hung_up(*(const int *)ctx);
}

/* The start of both executions: the body read into x and req (borrowed
 * from the body, which lives as long as c). -1 once it answered. */
static int exec_begin(struct api_call *c, struct iv_exec *x, struct core_exec_req *req)
{
	struct bk_err err = BK_ERR_INIT;
	json_t *body = api_call_body(c, &err);
	if (body == NULL || instavm__exec_parse(body, x, &err) < 0) {
		instavm_error(c, &err);
		return -1;
	}
	snprintf(c->session_id, sizeof(c->session_id), "%s", x->id);
	if (!instavm_id_form(x->id)) {
		bk_err_kind(&err, BK_E_NOT_FOUND, "session '%s' not found", x->id);
		instavm_error(c, &err);
		return -1;
	}
	/* InstaVM documents timeout as how long to wait: above the plan's
	 * maximum it is that maximum. */
	*req = (struct core_exec_req){
	    .language = x->language,
	    .code = x->code,
	    .timeout_s = x->timeout_s,
	    .clamp_timeout = true,
	};
	return 0;
}

static void exec_fail(struct api_call *c, struct bk_err *err)
{
	body_fields(err);
	instavm_error(c, err);
}

void instavm_execute(struct api_call *c)
{
	struct iv_exec x;
	struct core_exec_req req;
	if (exec_begin(c, &x, &req) < 0)
		return;
	int client_fd = c->req->client_fd;
	/* Counted from the request's arrival, a lazy spawn included. */
	req.deadline_us = c->req->start_us + x.timeout_s * 1000000 - ANSWER_MARGIN_US;
	req.cancelled = client_left;
	req.ctx = &client_fd;
	struct bk_err err = BK_ERR_INIT;
	struct core_exec_result res;
	if (core_execute(c->api->core, &c->key, x.id, &req, &res, &err) < 0)
		return exec_fail(c, &err);
	/* Said in the answer itself: this dialect has no 507. The line ends
	 * stderr, on a line of its own. */
	const char *more = NULL;
	if (res.oom_killed)
		more = res.stderr_len && res.stderr_text[res.stderr_len - 1] != '\n'
			   ? "\nthe execution went over the session's memory limit and was killed\n"
			   : "the execution went over the session's memory limit and was killed\n";
	json_t *rest = json_pack("{s:i,s:f,s:f}", "exit_code", res.exit_code, "execution_time",
				 (double)res.execution_time_ms / 1000.0, "cpu_time",
				 (double)res.cpu_time_ms / 1000.0);
	/* Encoded as the client takes it (api/exec_answer.c). */
	api_answer_send(c, 200, api_answer_new("", &res, more, rest, ""));
}

void instavm_execute_async(struct api_call *c)
{
	struct iv_exec x;
	struct core_exec_req req;
	if (exec_begin(c, &x, &req) < 0)
		return;
	struct bk_err err = BK_ERR_INIT;
	char task[40];
	if (core_task_submit(c->api->core, &c->key, x.id, &req, task, &err) < 0)
		return exec_fail(c, &err);
	api_json(c, 200, json_pack("{s:s}", "task_id", task));
}

void instavm_execution_get(struct api_call *c)
{
	struct bk_err err = BK_ERR_INIT;
	struct core_task_info t;
	if (core_task_get(c->api->core, &c->key, c->param[0], &t, &err) < 0)
		return instavm_error(c, &err);
	bool done = t.status != CORE_TASK_QUEUED && t.status != CORE_TASK_RUNNING;
	char created[40];
	instavm_time(t.created_ms, created, sizeof(created));
	json_t *o = json_pack(
	    "{s:s,s:b,s:s,s:o,s:o,s:o,s:o,s:o,s:s}", "task_id", t.id, "is_complete", done, "status",
	    core_task_status_name(t.status), "serialized_stdout",
	    api_json_bytes(t.stdout_text, t.stdout_len), "serialized_stderr",
	    api_json_bytes(t.stderr_text, t.stderr_len), "exit_code",
	    done ? json_integer(t.exit_code) : json_null(), "execution_time",
	    done ? json_real((double)t.execution_ms / 1000.0) : json_null(), "cpu_time",
	    done ? json_real((double)t.cpu_ms / 1000.0) : json_null(), "created_at", created);
	core_task_info_release(&t);
	api_json(c, 200, o);
}

/* ---- POST /download ---- */

void instavm_download(struct api_call *c)
{
	struct bk_err err = BK_ERR_INIT;
	const struct http_request *req = c->req;
	if (req->body_too_large) {
		bk_err_kind(&err, BK_E_TOO_LARGE, "request body is over the server's limit");
		return instavm_error(c, &err);
	}
	/* A form, as the SDK sends it; a JSON body is taken too. */
	_cleanup_free_ char *filename = NULL, *id = NULL;
	int rf = instavm_form_get(req->body, req->body_len, "filename", &filename);
	int rs = instavm_form_get(req->body, req->body_len, "session_id", &id);
	json_t *body = NULL;
	if (rf == 0 && rs == 0 && (body = api_call_body(c, &err)) != NULL) {
		json_t *f = json_object_get(body, "filename"),
		       *s = json_object_get(body, "session_id");
		if (json_is_string(f))
			filename = strdup(json_string_value(f));
		if (json_is_string(s))
			id = strdup(json_string_value(s));
	}
	bk_err_clear(&err);
	if (rf < 0)
		bk_err_add(&err, "body.filename", "string_type",
			   "Input should be text without NUL bytes");
	else if (filename == NULL || *filename == '\0')
		bk_err_add(&err, "body.filename", "missing", "Field required");
	if (rs < 0)
		bk_err_add(&err, "body.session_id", "string_type",
			   "Input should be text without NUL bytes");
	else if (id == NULL || *id == '\0')
		bk_err_add(&err, "body.session_id", "missing", "Field required");
	if (bk_err_is_set(&err))
		return instavm_error(c, &err);
	snprintf(c->session_id, sizeof(c->session_id), "%s", id);
	struct core_read *r = NULL;
	if (!instavm_id_form(id))
		bk_err_kind(&err, BK_E_NOT_FOUND, "session '%s' not found", id);
	else
		core_read_open(c->api->core, &c->key, id, filename, true, &r, &err);
	if (bk_err_is_set(&err)) {
		if (err.kind == BK_E_INVALID)
			snprintf(err.field, sizeof(err.field), "body.filename");
		return instavm_error(c, &err);
	}
	/* {status, filename, content, size}, content streamed in base64. */
	json_t *fj = json_string(filename);
	_cleanup_free_ char *ftext = fj ? json_dumps(fj, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
	json_decref(fj);
	char *head = NULL, *tail = NULL;
	if (ftext == NULL ||
	    asprintf(&head, "{\"status\":\"success\",\"filename\":%s,\"content\":\"", ftext) < 0)
		head = NULL;
	if (asprintf(&tail, "\",\"size\":%lld}", (long long)core_read_size(r)) < 0)
		tail = NULL;
	api_file_answer(c, r, API_FILE_BASE64, head, tail);
}
