/* Routing, authentication, JSON helpers and the request log. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_int.h"
#include "util/metrics.h"
#include "util/util.h"

int api_status_of(enum bk_err_kind kind)
{
	switch (kind) {
	case BK_E_INVALID:
		return 400;
	case BK_E_UNAUTHORIZED:
		return 401;
	case BK_E_FORBIDDEN:
		return 403;
	case BK_E_NOT_FOUND:
	case BK_E_FILE_NOT_FOUND:
	case BK_E_PROCESS_NOT_FOUND:
		return 404;
	case BK_E_CONFLICT:
		return 409;
	case BK_E_TOO_LARGE:
		return 413;
	case BK_E_IDEMPOTENCY_REUSED:
		return 422;
	case BK_E_LIMIT:
		return 429;
	case BK_E_NO_SPACE:
	case BK_E_NO_MEMORY:
		return 507;
	case BK_E_UNAVAILABLE:
		return 503;
	default:
		return 500;
	}
}

static const char *buntime_code_of(enum bk_err_kind kind)
{
	switch (kind) {
	case BK_E_INVALID:
		return "invalid_request";
	case BK_E_UNAUTHORIZED:
		return "unauthorized";
	case BK_E_FORBIDDEN:
		return "forbidden";
	case BK_E_NOT_FOUND:
		return "session_not_found";
	case BK_E_FILE_NOT_FOUND:
		return "file_not_found";
	case BK_E_PROCESS_NOT_FOUND:
		return "process_not_found";
	case BK_E_CONFLICT:
		return "conflict";
	case BK_E_TOO_LARGE:
		return "payload_too_large";
	case BK_E_IDEMPOTENCY_REUSED:
		return "idempotency_key_reused";
	case BK_E_LIMIT:
		return "rate_limit_exceeded";
	case BK_E_NO_SPACE:
		return "disk_full";
	case BK_E_NO_MEMORY:
		return "memory_limit_exceeded";
	case BK_E_UNAVAILABLE:
		return "unavailable";
	default:
		return "internal_error";
	}
}

void api_json(struct api_call *c, int status, json_t *obj)
{
	char *text = obj ? json_dumps(obj, JSON_COMPACT | JSON_REAL_PRECISION(15)) : NULL;
	json_decref(obj);
	if (text == NULL) {
		static const char oom[] =
		    "{\"error\":{\"code\":\"internal_error\",\"message\":\"out of memory\"}}";
		http_response_set(c->res, 500, "application/json", oom, sizeof(oom) - 1);
		return;
	}
	http_response_take(c->res, status, "application/json", text, strlen(text));
}

json_t *api_buntime_error_body(const struct bk_err *err)
{
	json_t *details = json_object();
	if (err->field[0])
		json_object_set_new(details, "field",
				    api_json_bytes(err->field, strlen(err->field)));
	/* An internal error's message is the daemon's, not the caller's: it
	 * may name host paths. A caller's message may quote the caller's own
	 * bytes, so it goes in as lossy text. */
	const char *msg =
	    api_status_of(err->kind) == 500 ? "internal error (see the server log)" : err->msg;
	return json_pack("{s:s,s:o,s:o}", "code", buntime_code_of(err->kind), "message",
			 api_json_bytes(msg, strlen(msg)), "details", details);
}

void api_buntime_error(struct api_call *c, const struct bk_err *err)
{
	int status = api_status_of(err->kind);
	if (status == 500)
		fprintf(stderr, "bunkerd: internal error: %s\n", err->msg);
	api_json(c, status, json_pack("{s:o}", "error", api_buntime_error_body(err)));
}

int api_query_int(struct api_call *c, const char *name, const char *field, int def, int min,
		  int max, int *out, struct bk_err *err)
{
	const char *s = http_query(c->req, name);
	*out = def;
	if (s == NULL)
		return 0;
	size_t n = strspn(s, "0123456789");
	long v = n > 0 && n <= 10 && s[n] == '\0' ? strtol(s, NULL, 10) : -1;
	if (v < min || v > max)
		return bk_err_field(err, field, "%s must be a whole number %d..%d", name, min, max);
	*out = (int)v;
	return 0;
}

/* ---- typed access to a request's fields: never coerce ---- */

json_t *api_field_get(json_t *obj, const char *name)
{
	json_t *v = json_object_get(obj, name);
	return json_is_null(v) ? NULL : v;
}

int api_field_int(json_t *obj, const char *name, const char *path, int64_t *out, struct bk_err *err)
{
	json_t *v = api_field_get(obj, name);
	if (v == NULL)
		return 0;
	if (!json_is_integer(v))
		return bk_err_field(err, path, "%s must be an integer", path);
	*out = json_integer_value(v);
	return 1;
}

int api_field_positive_int(json_t *obj, const char *name, const char *path, int64_t *out,
			   struct bk_err *err)
{
	int r = api_field_int(obj, name, path, out, err);
	if (r > 0 && (*out <= 0 || *out > INT32_MAX))
		return bk_err_field(err, path, "%s must be a positive integer", path);
	return r;
}

int api_field_string(json_t *obj, const char *name, const char *path, const char **out,
		     struct bk_err *err)
{
	json_t *v = api_field_get(obj, name);
	if (v == NULL)
		return 0;
	if (!json_is_string(v))
		return bk_err_field(err, path, "%s must be a string", path);
	*out = json_string_value(v);
	return 1;
}

int api_field_required_string(json_t *obj, const char *name, const char *path, const char **out,
			      struct bk_err *err)
{
	int r = api_field_string(obj, name, path, out, err);
	if (r == 0)
		return bk_err_field(err, path, "%s is required", path);
	return r < 0 ? -1 : 0;
}

int api_query_required(struct api_call *c, const char *name, const char **out, struct bk_err *err)
{
	*out = http_query(c->req, name);
	if (*out == NULL || **out == '\0')
		return bk_err_field(err, name, "%s is required", name);
	return 0;
}

int api_query_bool(struct api_call *c, const char *name, bool *out, struct bk_err *err)
{
	const char *v = http_query(c->req, name);
	*out = false;
	if (v == NULL)
		return 0;
	if (strcmp(v, "true") == 0 || strcmp(v, "1") == 0)
		*out = true;
	else if (strcmp(v, "false") != 0 && strcmp(v, "0") != 0)
		return bk_err_field(err, name, "%s must be true or false", name);
	return 0;
}

int api_json_check(const char *text, size_t len, struct bk_err *err)
{
	size_t values = 0;
	int depth = 0;
	for (size_t i = 0; i < len; i++) {
		char ch = text[i];
		if (ch == '"') {
			for (i++; i < len && text[i] != '"'; i++)
				if (text[i] == '\\')
					i++;
			/* A string followed by ':' is a member's name, not a value. */
			size_t j = i + 1;
			while (j < len && strchr(" \t\r\n", text[j]) && text[j] != '\0')
				j++;
			if (j < len && text[j] == ':')
				continue;
		} else if (ch == '[' || ch == '{') {
			if (++depth > API_JSON_DEPTH_MAX)
				return bk_err_field(err, "body",
						    "the JSON body nests deeper than %d levels",
						    API_JSON_DEPTH_MAX);
		} else if (ch == ']' || ch == '}') {
			depth--;
			continue;
		} else if (ch == '-' || (ch >= '0' && ch <= '9') || ch == 't' || ch == 'f' ||
			   ch == 'n') {
			/* A number or a literal: one value, however long. */
			while (i + 1 < len && strchr("0123456789+-.eEtruefalsn", text[i + 1]) &&
			       text[i + 1] != '\0')
				i++;
		} else {
			continue;
		}
		if (++values > API_JSON_VALUES_MAX)
			return bk_err_field(err, "body", "the JSON body holds more than %d values",
					    API_JSON_VALUES_MAX);
	}
	return 0;
}

json_t *api_body_object(const struct http_request *req, bool empty_ok, struct bk_err *err)
{
	if (req->body_too_large) {
		bk_err_kind(err, BK_E_TOO_LARGE, "request body is over the server's limit");
		return NULL;
	}
	size_t i = 0;
	while (i < req->body_len && strchr(" \t\r\n", req->body[i]))
		i++;
	if (i == req->body_len) {
		if (empty_ok)
			return json_object();
		bk_err_field(err, "body", "a JSON object body is required");
		return NULL;
	}
	if (api_json_check(req->body + i, req->body_len - i, err) < 0)
		return NULL;
	json_error_t je;
	/* Jansson refuses invalid UTF-8 and, without JSON_ALLOW_NUL, "\u0000". */
	json_t *j = json_loadb(req->body, req->body_len, JSON_REJECT_DUPLICATES, &je);
	if (j == NULL) {
		bk_err_field(err, "body", "malformed JSON at line %d column %d: %s", je.line,
			     je.column, je.text);
		return NULL;
	}
	if (!json_is_object(j)) {
		json_decref(j);
		bk_err_field(err, "body", "the body must be a JSON object");
		return NULL;
	}
	return j;
}

size_t api_utf8_seq_len(const unsigned char *p, size_t n)
{
	unsigned char c = p[0];
	size_t len;
	unsigned char lo = 0x80, hi = 0xBF;
	if (c < 0x80)
		return 1;
	if (c >= 0xC2 && c <= 0xDF)
		len = 2;
	else if (c >= 0xE0 && c <= 0xEF) {
		len = 3;
		if (c == 0xE0)
			lo = 0xA0; /* no overlong forms */
		if (c == 0xED)
			hi = 0x9F; /* no surrogates */
	} else if (c >= 0xF0 && c <= 0xF4) {
		len = 4;
		if (c == 0xF0)
			lo = 0x90;
		if (c == 0xF4)
			hi = 0x8F; /* nothing above U+10FFFF */
	} else
		return 0;
	if (n < len || p[1] < lo || p[1] > hi)
		return 0;
	for (size_t k = 2; k < len; k++)
		if ((p[k] & 0xC0) != 0x80)
			return 0;
	return len;
}

bool api_utf8_valid(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t len = strlen(s);
	for (size_t i = 0; i < len;) {
		size_t n = api_utf8_seq_len(p + i, len - i);
		if (n == 0)
			return false;
		i += n;
	}
	return true;
}

json_t *api_json_bytes(const char *data, size_t len)
{
	json_t *s = json_stringn(data, len);
	if (s)
		return s;
	/* Not valid UTF-8: copy, replacing each bad byte with U+FFFD. */
	struct buf b;
	buf_init(&b, len * 3 + 1);
	const unsigned char *p = (const unsigned char *)data;
	size_t i = 0;
	while (i < len) {
		size_t n = api_utf8_seq_len(p + i, len - i);
		if (n > 0) {
			buf_append(&b, p + i, n);
			i += n;
		} else {
			buf_append(&b, "\xef\xbf\xbd", 3);
			i++;
		}
	}
	s = json_stringn(b.data ? b.data : "", b.len);
	buf_free(&b);
	return s ? s : json_string("");
}

/* The key of the request's headers: Authorization's Bearer, else
 * key_header's (may be NULL); NULL when none. */
static const char *header_key(struct api_call *c, const char *key_header)
{
	const char *h = http_header(c->req, "Authorization");
	const char *secret = NULL;
	if (h && strncasecmp(h, "Bearer ", 7) == 0) {
		secret = h + 7;
		while (*secret == ' ')
			secret++;
	} else if (key_header) {
		secret = http_header(c->req, key_header);
	}
	return secret && *secret ? secret : NULL;
}

bool api_has_key(struct api_call *c, const char *key_header)
{
	return header_key(c, key_header) != NULL;
}

int api_auth_secret(struct api_call *c, const char *secret, struct bk_err *err)
{
	if (secret == NULL || *secret == '\0')
		return bk_err_kind(err, BK_E_UNAUTHORIZED, "missing API key");
	if (core_auth(c->api->core, secret, &c->key, err) < 0)
		return -1;
	c->authed = true;
	return 0;
}

int api_auth(struct api_call *c, const char *key_header, struct bk_err *err)
{
	const char *secret = header_key(c, key_header);
	if (secret == NULL)
		return key_header
			   ? bk_err_kind(err, BK_E_UNAUTHORIZED,
					 "missing API key: send 'Authorization: Bearer <key>' "
					 "or '%s: <key>'",
					 key_header)
			   : bk_err_kind(err, BK_E_UNAUTHORIZED,
					 "missing API key: send 'Authorization: Bearer <key>'");
	return api_auth_secret(c, secret, err);
}

json_t *api_call_body(struct api_call *c, struct bk_err *err)
{
	if (!c->body_parsed) {
		c->body_parsed = true;
		c->body = api_body_object(c->req, true, err);
		return c->body;
	}
	if (c->body == NULL)
		bk_err_field(err, "body", "the body must be a JSON object");
	return c->body;
}

/* One JSON line per request on stderr: time, method, path, route pattern,
 * status, duration, client, key id and session id (null when none). */
static void log_request(const struct api_call *c, double ms)
{
	/* Whatever the caller sent (method, path, session id) goes in as lossy
	 * text: a line is never lost to bytes that are not UTF-8. */
	json_t *line = json_pack(
	    "{s:I,s:o,s:o,s:s?,s:i,s:f,s:s,s:s?,s:o?}", "ts", (json_int_t)now_ms(), "method",
	    api_json_bytes(c->req->method, strlen(c->req->method)), "path",
	    api_json_bytes(c->req->path, strlen(c->req->path)), "route",
	    c->route ? c->route->pattern : NULL, "status", c->res->status, "ms", ms, "client",
	    c->req->client_ip, "key", c->authed ? c->key.id : NULL, "session",
	    c->session_id[0] ? api_json_bytes(c->session_id, strlen(c->session_id)) : NULL);
	if (line == NULL)
		return;
	char *text = json_dumps(line, JSON_COMPACT | JSON_REAL_PRECISION(6));
	json_decref(line);
	if (text) {
		fprintf(stderr, "%s\n", text);
		free(text);
	}
}

/* Method names as metric labels: constants, so that the series stay few. */
static const char *method_label(const char *m)
{
	static const char *const known[] = {"GET",   "POST", "DELETE", "PUT",
					    "PATCH", "HEAD", "OPTIONS"};
	for (size_t i = 0; i < ARRAY_SIZE(known); i++)
		if (strcmp(m, known[i]) == 0)
			return known[i];
	return "other";
}

/* A copy of path with each run of '/' made one. */
static char *path_collapse(const char *path)
{
	char *out = malloc(strlen(path) + 1);
	if (out == NULL)
		return NULL;
	size_t o = 0;
	for (const char *p = path; *p; p++)
		if (!(*p == '/' && o > 0 && out[o - 1] == '/'))
			out[o++] = *p;
	out[o] = '\0';
	return out;
}

/* ---- bunkerd's struct http_handler_ops ---- */

/* The request's metrics and log line, once it is answered. */
static void call_answered(struct api_call *c)
{
	double ms = (double)(mono_us() - c->req->start_us) / 1000.0;
	metrics_request(method_label(c->req->method), c->route ? c->route->pattern : "unmatched",
			c->res->status, ms / 1000.0);
	log_request(c, ms);
}

static void on_head(void *ctx, const struct http_request *req, struct http_body_plan *plan,
		    struct http_response *res)
{
	struct api_call *c = calloc(1, sizeof(*c));
	if (c == NULL) {
		static const char oom[] =
		    "{\"error\":{\"code\":\"internal_error\",\"message\":\"out of memory\"}}";
		http_response_set(res, 500, "application/json", oom, sizeof(oom) - 1);
		return;
	}
	*c = (struct api_call){.api = ctx, .req = req, .res = res, .stream_err = BK_ERR_INIT};
	plan->state = c;
	c->path = path_collapse(req->path);
	if (c->path == NULL) {
		struct bk_err err = BK_ERR_INIT;
		bk_err_set(&err, ENOMEM, "cannot route the request");
		api_buntime_error(c, &err);
		call_answered(c);
		return;
	}
	api_dispatch_head(c, plan);
	if (plan->mode == HTTP_BODY_ANSWER)
		call_answered(c);
}

static void on_body(void *ctx, const struct http_request *req, void *state,
		    struct http_response *res)
{
	struct api_call *c = state;
	c->req = req;
	c->res = res;
	api_dispatch_body(c);
	call_answered(c);
}

static void on_done(void *ctx, void *state)
{
	struct api_call *c = state;
	if (c == NULL)
		return;
	budget_charge_release(c->charge);
	free(c->path);
	json_decref(c->body);
	free(c);
}

static int sink_write(void *state, const char *data, size_t len)
{
	struct api_call *c = state;
	return c->stream->write(c->stream_state, data, len, &c->stream_err);
}

static void sink_finish(void *state, enum http_body_end end, const struct http_request *req,
			struct http_response *res)
{
	struct api_call *c = state;
	c->req = req;
	c->res = res;
	c->stream->finish(c, c->stream_state, end, &c->stream_err);
	c->stream_state = NULL;
	call_answered(c);
}

const struct http_body_sink api_stream_sink = {
    .write = sink_write,
    .finish = sink_finish,
};

struct http_handler_ops api_handler_ops(struct api *api)
{
	return (struct http_handler_ops){
	    .head = on_head, .handle = on_body, .done = on_done, .ctx = api};
}
