/* The InstaVM dialect (API.md "InstaVM dialect"): snake_case JSON,
 * FastAPI-style errors, and the key in X-API-Key, in Authorization, or (on
 * create) in the body's api_key. The client it is written for is InstaVM's
 * Python SDK with only its base_url changed. Every endpoint takes any
 * session the caller's key owns, whichever dialect created it, named by
 * its UUID or its "ses_" id.
 *
 * This file: errors, sessions and their VMs (create, info, status, usage,
 * the sandboxes list, kill), app-url and egress; executions and files are
 * api/instavm_exec.c's.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/instavm_int.h"
#include "util/cleanup.h"
#include "util/util.h"

#define LIFETIME_MIN_S 20
#define LIFETIME_MAX_S 86400
#define LIFETIME_DEFAULT_S 300
#define MEMORY_MIN_MB 128
#define MEMORY_MAX_MB 8192
#define VCPU_DEFAULT 2
#define SANDBOXES_DEFAULT 100
#define SANDBOXES_MAX 1000

/* ---- errors and helpers ---- */

/* loc of a field named with dots ("body.vcpu_count"), as FastAPI's list. */
static json_t *loc_of(const char *field)
{
	json_t *loc = json_array();
	for (const char *s = field; *s;) {
		size_t n = strcspn(s, ".");
		json_array_append_new(loc, api_json_bytes(s, n));
		s += n + (s[n] == '.');
	}
	return loc;
}

static json_t *detail_entry(const char *field, const char *type, const char *msg)
{
	return json_pack("{s:o,s:o,s:s}", "loc", loc_of(field), "msg",
			 api_json_bytes(msg, strlen(msg)), "type", type[0] ? type : "value_error");
}

void instavm_error(struct api_call *c, const struct bk_err *err)
{
	int status = api_status_of(err->kind);
	if (status == 500)
		fprintf(stderr, "bunkerd: internal error: %s\n", err->msg);
	if (err->kind == BK_E_INVALID && err->field[0]) {
		json_t *detail = json_array();
		json_array_append_new(detail, detail_entry(err->field, err->type, err->msg));
		for (int i = 0; i < err->n_more; i++)
			json_array_append_new(
			    detail,
			    detail_entry(err->more[i].field, err->more[i].type, err->more[i].msg));
		api_json(c, 422, json_pack("{s:o}", "detail", detail));
		return;
	}
	const char *msg = status == 500 ? "internal error (see the server log)" : err->msg;
	api_json(c, status, json_pack("{s:o}", "detail", api_json_bytes(msg, strlen(msg))));
}

static bool is_uuid(const char *s)
{
	if (strlen(s) != 36)
		return false;
	for (int i = 0; i < 36; i++) {
		bool dash = i == 8 || i == 13 || i == 18 || i == 23;
		if (dash ? s[i] != '-' : !isxdigit((unsigned char)s[i]))
			return false;
	}
	return true;
}

bool instavm_id_form(const char *s)
{
	return is_uuid(s) || core_session_id_form(s, strlen(s));
}

void instavm_time(int64_t ms, char *buf, size_t len)
{
	/* "…:12.123Z" becomes "…:12.123000", as Python's isoformat() writes. */
	char iso[32];
	iso8601_ms(ms, iso, sizeof(iso));
	iso[strlen(iso) - 1] = '\0';
	snprintf(buf, len, "%s000", iso);
}

int instavm_body_session(json_t *body, const char **out, struct bk_err *err)
{
	json_t *v = json_object_get(body, "session_id");
	if (v == NULL || json_is_null(v))
		return bk_err_add(err, "body.session_id", "missing", "Field required");
	if (!json_is_string(v))
		return bk_err_add(err, "body.session_id", "string_type",
				  "Input should be a valid string");
	*out = json_string_value(v);
	return 0;
}

/* A %XX digit's value, or -1. */
static int hex(int ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	ch = tolower(ch);
	return ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
}

/* Form-decodes s[0..n) into a new string ('+' a space), *len its length
 * (a %00 makes it longer than strlen()). */
static char *form_decode(const char *s, size_t n, size_t *len)
{
	char *out = malloc(n + 1);
	if (out == NULL)
		return NULL;
	size_t o = 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '+') {
			out[o++] = ' ';
		} else if (s[i] == '%' && i + 2 < n && hex(s[i + 1]) >= 0 && hex(s[i + 2]) >= 0) {
			out[o++] = (char)(hex(s[i + 1]) * 16 + hex(s[i + 2]));
			i += 2;
		} else {
			out[o++] = s[i];
		}
	}
	out[o] = '\0';
	*len = o;
	return out;
}

int instavm_form_get(const char *body, size_t len, const char *name, char **out)
{
	*out = NULL;
	size_t nl = strlen(name);
	for (size_t i = 0; i < len;) {
		const char *amp = memchr(body + i, '&', len - i);
		size_t end = amp ? (size_t)(amp - body) : len;
		const char *eq = memchr(body + i, '=', end - i);
		size_t kend = eq ? (size_t)(eq - body) : end;
		size_t klen;
		_cleanup_free_ char *k = form_decode(body + i, kend - i, &klen);
		if (k && klen == nl && memcmp(k, name, nl) == 0) {
			size_t vlen = 0;
			char *v = eq ? form_decode(eq + 1, end - kend - 1, &vlen) : strdup("");
			if (v == NULL)
				return -1;
			if (strlen(v) != vlen || !api_utf8_valid(v)) {
				free(v);
				return -1;
			}
			*out = v;
			return 1;
		}
		i = end + 1;
	}
	return 0;
}

/* The VM's name: fixed for the session's life ("vm-<20>"). */
static void vm_id_of(const struct core_session_info *info, char *out, size_t len)
{
	core_vm_id(info->id, out, len);
}

static const char *vm_status(enum core_vm vm)
{
	return vm == CORE_VM_RUNNING ? "active" : vm == CORE_VM_TERMINATED ? "terminated" : NULL;
}

static double seconds(int64_t ms)
{
	return (double)ms / 1000.0;
}

/* Whole seconds left until ms (0 when past). */
static json_int_t left_s(int64_t ms)
{
	int64_t left = ms - now_ms();
	return left > 0 ? (json_int_t)(left / 1000) : 0;
}

/* The applied vCPUs: the cores the session got (0.25 on a free key). */
static json_t *vcpus_applied(const struct core_session_info *info)
{
	return json_real(info->limits.cpu);
}

/* ---- POST /v1/sessions/session ---- */

int instavm_int_field(json_t *body, const char *name, int64_t min, int64_t max, int64_t *out,
		      struct bk_err *err)
{
	char loc[64];
	snprintf(loc, sizeof(loc), "body.%s", name);
	json_t *v = json_object_get(body, name);
	if (v == NULL || json_is_null(v))
		return 0;
	if (!json_is_integer(v))
		return bk_err_add(err, loc, "int_type", "Input should be a valid integer");
	int64_t x = json_integer_value(v);
	if (x < min)
		return bk_err_add(err, loc, "greater_than_equal",
				  "Input should be greater than or equal to %lld", (long long)min);
	if (x > max)
		return bk_err_add(err, loc, "less_than_equal",
				  "Input should be less than or equal to %lld", (long long)max);
	*out = x;
	return 1;
}

/* The env of a create: an object of strings (each bad value its own
 * entry). *out is malloc'd (names and values borrowed from body). */
static int env_field(json_t *body, struct core_env **out, size_t *n, struct bk_err *err)
{
	*out = NULL;
	*n = 0;
	json_t *env = json_object_get(body, "env");
	if (env == NULL || json_is_null(env))
		return 0;
	if (!json_is_object(env))
		return bk_err_add(err, "body.env", "dict_type",
				  "Input should be a valid dictionary");
	*out = calloc(json_object_size(env) + 1, sizeof(**out));
	if (*out == NULL)
		return bk_err_set(err, ENOMEM, "cannot read env");
	const char *k;
	json_t *v;
	int rc = 0;
	json_object_foreach (env, k, v) {
		if (!json_is_string(v)) {
			char loc[64];
			snprintf(loc, sizeof(loc), "body.env.%.50s", k);
			rc = bk_err_add(err, loc, "string_type", "Input should be a valid string");
			continue;
		}
		(*out)[*n].name = k;
		(*out)[(*n)++].value = json_string_value(v);
	}
	return rc;
}

/* The key of a create: in a header, else the body's api_key. */
static int create_auth(struct api_call *c, json_t *body, struct bk_err *err)
{
	if (api_has_key(c, "X-API-Key"))
		return api_auth(c, "X-API-Key", err);
	json_t *k = json_object_get(body, "api_key");
	if (k != NULL && !json_is_null(k) && !json_is_string(k))
		return bk_err_add(err, "body.api_key", "string_type",
				  "Input should be a valid string");
	if (k == NULL || json_is_null(k))
		return bk_err_kind(err, BK_E_UNAUTHORIZED,
				   "missing API key: send api_key in the body, 'X-API-Key: <key>' "
				   "or 'Authorization: Bearer <key>'");
	return api_auth_secret(c, json_string_value(k), err);
}

int instavm__create_parse(json_t *body, struct core_session_spec *spec, char **metadata,
			  struct core_env **env, struct bk_err *err)
{
	*metadata = NULL;
	int64_t lifetime = LIFETIME_DEFAULT_S, memory = 0, vcpu = VCPU_DEFAULT;
	instavm_int_field(body, "vm_lifetime_seconds", LIFETIME_MIN_S, LIFETIME_MAX_S, &lifetime,
			  err);
	instavm_int_field(body, "memory_mb", MEMORY_MIN_MB, MEMORY_MAX_MB, &memory, err);
	if (instavm_int_field(body, "vcpu_count", 1, 8, &vcpu, err) > 0 && vcpu != 1 && vcpu != 2 &&
	    vcpu != 4 && vcpu != 6 && vcpu != 8)
		bk_err_add(err, "body.vcpu_count", "literal_error",
			   "Input should be 1, 2, 4, 6 or 8");
	json_t *meta = json_object_get(body, "metadata");
	if (meta && !json_is_null(meta) && !json_is_object(meta))
		bk_err_add(err, "body.metadata", "dict_type", "Input should be a valid dictionary");
	else if (meta && !json_is_null(meta))
		*metadata = json_dumps(meta, JSON_COMPACT);
	size_t n_env = 0;
	env_field(body, env, &n_env, err);
	*spec = (struct core_session_spec){
	    .dialect = CORE_DIALECT_INSTAVM,
	    .metadata = *metadata,
	    .has_limits = true,
	    .limits = {.memory_mb = (int)memory, .cpu = (double)vcpu},
	    .clamp = true,
	    .lazy = true,
	    .vm_lifetime_s = lifetime,
	    .vcpu = (int)vcpu,
	    .env = *env,
	    .n_env = n_env,
	};
	return bk_err_is_set(err) ? -1 : 0;
}

static void handle_create(struct api_call *c)
{
	struct bk_err err = BK_ERR_INIT;
	json_t *body = api_call_body(c, &err);
	if (body == NULL)
		return instavm_error(c, &err);
	/* A key in a header was checked at the head; one in the body now. */
	if (!c->authed && (create_auth(c, body, &err) < 0 || api_ratelimit_check(c, &err) < 0))
		return instavm_error(c, &err);
	_cleanup_free_ char *metadata = NULL;
	_cleanup_free_ struct core_env *env = NULL;
	struct core_session_spec spec;
	if (instavm__create_parse(body, &spec, &metadata, &env, &err) < 0)
		return instavm_error(c, &err);
	struct core_session_info info;
	if (core_session_create(c->api->core, &c->key, &spec, &info, &err) < 0) {
		/* A bad field of core's is a field of the body here. */
		if (err.kind == BK_E_INVALID && strncmp(err.field, "body.", 5) != 0) {
			char f[64];
			snprintf(f, sizeof(f), "body.%.50s", err.field);
			snprintf(err.field, sizeof(err.field), "%s", f);
		}
		return instavm_error(c, &err);
	}
	snprintf(c->session_id, sizeof(c->session_id), "%s", info.public_id);
	json_t *o = json_pack("{s:s}", "session_id", info.public_id);
	core_session_info_release(&info);
	api_json(c, 200, o);
}

/* ---- reading sessions ---- */

/* The session of the path's {session_id}, read without waking it. */
static int session_of_path(struct api_call *c, struct core_session_info *info, struct bk_err *err)
{
	const char *id = c->param[0];
	if (!instavm_id_form(id))
		return bk_err_kind(err, BK_E_NOT_FOUND, "session '%s' not found", id);
	return core_session_get(c->api->core, &c->key, id, info, err);
}

static json_t *vm_fields(const struct core_session_info *info)
{
	char vm[32];
	vm_id_of(info, vm, sizeof(vm));
	bool assigned = info->vm != CORE_VM_NONE;
	bool alive = info->vm == CORE_VM_RUNNING;
	json_t *o = json_object();
	json_object_set_new(o, "vm_assigned", json_boolean(assigned));
	json_object_set_new(o, "vm_status",
			    vm_status(info->vm) ? json_string(vm_status(info->vm)) : json_null());
	json_object_set_new(o, "vm_id", assigned ? json_string(vm) : json_null());
	json_object_set_new(o, "vm_alive", json_boolean(alive));
	json_object_set_new(o, "uptime_seconds",
			    alive ? json_real(seconds(now_ms() - info->vm_spawned_ms))
				  : json_null());
	json_object_set_new(
	    o, "expires_in_seconds",
	    alive ? json_integer(left_s(info->vm_ends_ms ? info->vm_ends_ms : info->expires_ms))
		  : json_null());
	return o;
}

static void handle_status(struct api_call *c)
{
	struct bk_err err = BK_ERR_INIT;
	struct core_session_info info;
	if (session_of_path(c, &info, &err) < 0)
		return instavm_error(c, &err);
	char created[40];
	instavm_time(info.created_ms, created, sizeof(created));
	json_t *o = json_pack("{s:s,s:b,s:s,s:s}", "session_id", info.public_id, "exists", 1,
			      "created_at", created, "state", core_state_name(info.state));
	json_object_update_new(o, vm_fields(&info));
	core_session_info_release(&info);
	api_json(c, 200, o);
}

static json_t *session_json(const struct core_session_info *info)
{
	char created[40], expires[40];
	instavm_time(info->created_ms, created, sizeof(created));
	instavm_time(info->expires_ms, expires, sizeof(expires));
	json_t *meta = json_loads(info->metadata ? info->metadata : "{}", 0, NULL);
	json_t *o = json_pack("{s:s,s:s,s:s,s:o,s:s}", "session_id", info->public_id, "created_at",
			      created, "expires_at", expires, "metadata",
			      meta ? meta : json_object(), "state", core_state_name(info->state));
	/* What was applied: the plan's ceilings lower what was asked. */
	json_object_set_new(o, "vm_lifetime_seconds", json_integer(info->vm_lifetime_s));
	json_object_set_new(o, "memory_mb", json_integer(info->limits.memory_mb));
	json_object_set_new(o, "vcpu_count", vcpus_applied(info));
	json_object_set_new(o, "requested_vcpu_count",
			    json_integer(info->vcpu ? info->vcpu : VCPU_DEFAULT));
	json_object_set_new(o, "disk_mb", json_integer(info->limits.disk_mb));
	json_object_update_new(o, vm_fields(info));
	return o;
}

static void handle_session(struct api_call *c)
{
	struct bk_err err = BK_ERR_INIT;
	struct core_session_info info;
	if (session_of_path(c, &info, &err) < 0)
		return instavm_error(c, &err);
	json_t *o = session_json(&info);
	core_session_info_release(&info);
	api_json(c, 200, o);
}

/* No key: the UUID is the capability (the SDK sends none here). Only the
 * UUID: a "ses_" id is also the host name of the session's previews,
 * which its owner hands out. With a key, ownership is checked as
 * everywhere. */
static void handle_usage(struct api_call *c)
{
	struct bk_err err = BK_ERR_INIT;
	struct core_session_info info;
	const char *id = c->param[0];
	int r = !(c->authed ? instavm_id_form(id) : is_uuid(id))
		    ? bk_err_kind(&err, BK_E_NOT_FOUND, "session '%s' not found", id)
		: c->authed ? core_session_get(c->api->core, &c->key, id, &info, &err)
			    : core_session_get_any(c->api->core, id, &info, &err);
	if (r < 0)
		return instavm_error(c, &err);
	json_t *o = json_pack(
	    "{s:s,s:f,s:I,s:f,s:I,s:I,s:I,s:I,s:I,s:s?}", "session_id", info.public_id, "cpu_time",
	    seconds(info.cpu_ms), "execution_count", (json_int_t)info.exec_count,
	    "vm_runtime_seconds", seconds(info.vm_runtime_ms), "memory_mb",
	    (json_int_t)info.limits.memory_mb, "memory_used_bytes", (json_int_t)info.memory_bytes,
	    "files_count", (json_int_t)info.files_count, "network_tx_bytes",
	    (json_int_t)info.net_tx_bytes, "network_rx_bytes", (json_int_t)info.net_rx_bytes,
	    "vm_status", vm_status(info.vm));
	core_session_info_release(&info);
	api_json(c, 200, o);
}

static void handle_sandboxes(struct api_call *c)
{
	struct bk_err err = BK_ERR_INIT;
	int limit;
	if (api_query_int(c, "limit", "query.limit", SANDBOXES_DEFAULT, 1, SANDBOXES_MAX, &limit,
			  &err) < 0)
		return instavm_error(c, &err);
	struct core_session_info *infos;
	size_t n;
	int64_t total;
	if (core_session_list(c->api->core, &c->key, http_query(c->req, "metadata"), true, limit, 0,
			      &infos, &n, &total, &err) < 0) {
		if (err.kind == BK_E_INVALID)
			snprintf(err.field, sizeof(err.field), "query.metadata");
		return instavm_error(c, &err);
	}
	json_t *arr = json_array();
	for (size_t i = 0; i < n; i++) {
		const struct core_session_info *in = &infos[i];
		char vm[32], started[40], ends[40], tmpl[16];
		vm_id_of(in, vm, sizeof(vm));
		instavm_time(in->vm_spawned_ms, started, sizeof(started));
		instavm_time(in->vm_ends_ms ? in->vm_ends_ms : in->expires_ms, ends, sizeof(ends));
		snprintf(tmpl, sizeof(tmpl), "snap%d",
			 in->vcpu ? in->vcpu : (int)(in->limits.cpu + 0.999));
		json_t *meta = json_loads(in->metadata ? in->metadata : "{}", 0, NULL);
		json_array_append_new(
		    arr, json_pack("{s:s,s:s,s:s,s:o,s:s,s:s,s:s,s:s}", "sandbox_id", vm,
				   "template_id", tmpl, "name", in->public_id, "metadata",
				   meta ? meta : json_object(), "started_at", started, "end_at",
				   ends, "status", "active", "session_id", in->public_id));
		core_session_info_release(&infos[i]);
	}
	free(infos);
	api_json(c, 200, arr);
}

/* ---- POST /kill ---- */

static void handle_kill(struct api_call *c)
{
	struct bk_err err = BK_ERR_INIT;
	json_t *body = api_call_body(c, &err);
	const char *id = NULL;
	if (body == NULL || instavm_body_session(body, &id, &err) < 0)
		return instavm_error(c, &err);
	snprintf(c->session_id, sizeof(c->session_id), "%s", id);
	if (!instavm_id_form(id)) {
		bk_err_kind(&err, BK_E_INVALID, "'%s' is not a session id", id);
		return api_json(
		    c, 400, json_pack("{s:o}", "detail", api_json_bytes(err.msg, strlen(err.msg))));
	}
	struct core_session_info info;
	if (core_vm_kill(c->api->core, &c->key, id, &info, &err) < 0)
		return instavm_error(c, &err);
	char vm[32];
	vm_id_of(&info, vm, sizeof(vm));
	core_session_info_release(&info);
	api_json(c, 200, json_pack("{s:s,s:s}", "message", "VM killed", "vm_id", vm));
}

/* ---- GET /v1/sessions/app-url/{session_id}?port= ---- */

/* Whether host is a plain "name[:port]" (or "[v6]:port") that can go into
 * a URL as it is. */
static bool url_host(const char *host)
{
	static const char ok[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
				 "0123456789.-:[]";
	size_t n = strlen(host);
	return n > 0 && n < 256 && strspn(host, ok) == n;
}

/* The first use of a VM spawns it: app-url is one (API.md). The session
 * is read after, without waking it: the first request through either URL
 * wakes it. */
static void handle_app_url(struct api_call *c)
{
	struct api *api = c->api;
	const char *id = c->param[0];
	struct bk_err err = BK_ERR_INIT;
	int port;
	if (api_query_int(c, "port", "query.port", CORE_PREVIEW_PORT, 1, 65535, &port, &err) < 0)
		return instavm_error(c, &err);
	struct core_session_info info;
	if (session_of_path(c, &info, &err) < 0)
		return instavm_error(c, &err);
	bool spawn = info.vm != CORE_VM_RUNNING;
	if (spawn) {
		core_session_info_release(&info);
		if (core_vm_ensure(api->core, &c->key, id, &err) < 0 ||
		    session_of_path(c, &info, &err) < 0)
			return instavm_error(c, &err);
	}
	/* The path proxy is on the host the client reached the API by; a
	 * request without a usable Host gets the preview domain, which is the
	 * API's own address unless the operator set another. */
	const char *host = http_header(c->req, "Host");
	const char *scheme = core_preview_scheme(api->core);
	char url[512], direct[512], vm[32];
	snprintf(url, sizeof(url), "%s://%s/v1/app/%s/%d/", scheme,
		 host && url_host(host) ? host : core_preview_domain(api->core), info.id, port);
	core_preview_port_url(api->core, info.id, port, direct, sizeof(direct));
	vm_id_of(&info, vm, sizeof(vm));
	json_t *o = json_pack("{s:s,s:s,s:n,s:i,s:s,s:s,s:s,s:I}", "url", url, "direct_url", direct,
			      "vm_ip", "port", port, "vm_id", vm, "session_id", info.public_id,
			      "status", core_state_name(info.state), "expires_in_seconds",
			      left_s(info.vm_ends_ms ? info.vm_ends_ms : info.expires_ms));
	core_session_info_release(&info);
	api_json(c, 200, o);
}

/* ---- GET|POST /v1/egress/session/{session_id} ---- */

/* The policy is InstaVM's egress object; the session's caps come with it
 * (bandwidth_mbps, max_connections). A POST replaces the fields it names. */
static void egress_answer(struct api_call *c, const char *id, int r, char *text, struct bk_err *err)
{
	if (r < 0)
		return instavm_error(c, err);
	json_t *o = json_loads(text, 0, NULL);
	free(text);
	if (o == NULL)
		o = json_object();
	json_object_set_new(o, "session_id", json_string(id));
	api_json(c, 200, o);
}

static void handle_egress_get(struct api_call *c)
{
	struct bk_err err = BK_ERR_INIT;
	const char *id = c->param[0];
	char *text = NULL;
	int r = instavm_id_form(id)
		    ? core_session_network_get(c->api->core, &c->key, id, false, &text, &err)
		    : bk_err_kind(&err, BK_E_NOT_FOUND, "session '%s' not found", id);
	egress_answer(c, id, r, text, &err);
}

static void handle_egress_set(struct api_call *c)
{
	struct bk_err err = BK_ERR_INIT;
	const char *id = c->param[0];
	json_t *body = api_call_body(c, &err);
	if (body == NULL)
		return instavm_error(c, &err);
	_cleanup_free_ char *patch = json_dumps(body, JSON_COMPACT);
	char *text = NULL;
	int r = !instavm_id_form(id)
		    ? bk_err_kind(&err, BK_E_NOT_FOUND, "session '%s' not found", id)
		: patch ? core_session_network_set(c->api->core, &c->key, id, patch, false, "body.",
						   &text, &err)
			: bk_err_set(&err, ENOMEM, "cannot read the body");
	egress_answer(c, id, r, text, &err);
}

/* ---- routing ---- */

/* Matched by api/router.c after the buntime routes; tests/unit/openapi.c
 * checks that api/openapi.c documents each one. */
static const struct api_route instavm_routes[] = {
    {"POST", "/v1/sessions/session", handle_create,
     API_ROUTE_KEY_IN_BODY | API_ROUTE_CREATES_SESSION},
    {"GET", "/v1/sessions/session/{session_id}", handle_session, 0},
    {"GET", "/v1/sessions/status/{session_id}", handle_status, 0},
    {"GET", "/v1/sessions/usage/{session_id}", handle_usage, API_ROUTE_KEY_OPTIONAL},
    {"GET", "/v1/sessions/sandboxes", handle_sandboxes, 0},
    {"GET", "/v1/sessions/app-url/{session_id}", handle_app_url, 0},
    {"POST", "/execute", instavm_execute, API_ROUTE_EXECUTES, instavm_claims_execute},
    {"POST", "/execute_async", instavm_execute_async, 0},
    {"GET", "/v1/executions/{task_id}", instavm_execution_get, 0},
    {"POST", "/kill", handle_kill, 0},
    {"POST", "/download", instavm_download, 0},
    {"POST", "/upload", instavm_upload, API_ROUTE_STREAM_BODY | API_ROUTE_BODY_FILE},
    {"GET", "/v1/egress/session/{session_id}", handle_egress_get, 0},
    {"POST", "/v1/egress/session/{session_id}", handle_egress_set, 0},
};

const struct api_route_table api_instavm_routes = {
    .name = "instavm",
    .routes = instavm_routes,
    .n = ARRAY_SIZE(instavm_routes),
    .error = instavm_error,
    .key_header = "X-API-Key",
};
