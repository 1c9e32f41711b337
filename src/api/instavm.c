/* The InstaVM dialect (API.md "InstaVM dialect"): snake_case JSON,
 * FastAPI-style errors, and the key in X-API-Key as well as in
 * Authorization. Every endpoint takes any session the caller's key owns,
 * whichever dialect created it.
 *
 * So far it has app-url, which names the two ways in to a port of a
 * session: the path proxy "/v1/app/{session_id}/{port}/" on the API's own
 * host, and the session's own host "vm-<20>-<port>.<preview domain>".
 * Both are relayed by http/ (api/preview.c decides which requests); the
 * rest of the dialect is not built yet (docs/API-DECISIONS.md).
 */
#include <stdio.h>
#include <string.h>

#include "api/api_int.h"
#include "util/util.h"

/* FastAPI's shapes: a request that fails validation is 422 with
 * {"detail": [{"loc": [...], "msg", "type"}]}, where loc is the field's
 * place ("query", "port"): bk_err's field holds it with dots
 * ("query.port"). Every other error is {"detail": "<message>"}. */
static void instavm_error(struct api_call *c, const struct bk_err *err)
{
	int status = api_status_of(err->kind);
	if (status == 500)
		fprintf(stderr, "bunkerd: internal error: %s\n", err->msg);
	if (err->kind == BK_E_INVALID && err->field[0]) {
		json_t *loc = json_array();
		for (const char *s = err->field; *s;) {
			size_t n = strcspn(s, ".");
			json_array_append_new(loc, api_json_bytes(s, n));
			s += n + (s[n] == '.');
		}
		api_json(c, 422,
			 json_pack("{s:[{s:o,s:o,s:s}]}", "detail", "loc", loc, "msg",
				   api_json_bytes(err->msg, strlen(err->msg)), "type",
				   "value_error"));
		return;
	}
	const char *msg = status == 500 ? "internal error (see the server log)" : err->msg;
	api_json(c, status, json_pack("{s:o}", "detail", api_json_bytes(msg, strlen(msg))));
}

/* Whether host is a plain "name[:port]" (or "[v6]:port") that can go into
 * a URL as it is. */
static bool url_host(const char *host)
{
	static const char ok[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
				 "0123456789.-:[]";
	size_t n = strlen(host);
	return n > 0 && n < 256 && strspn(host, ok) == n;
}

/* ---- GET /v1/sessions/app-url/{session_id}?port= ---- */

/* Reads the session without waking it: the first request through either
 * URL wakes it. */
static void handle_app_url(struct api_call *c)
{
	struct api *api = c->api;
	const char *id = c->param[0];
	struct bk_err err = BK_ERR_INIT;
	int port;
	if (api_query_int(c, "port", "query.port", CORE_PREVIEW_PORT, 1, 65535, &port, &err) < 0)
		return instavm_error(c, &err);
	struct core_session_info info;
	if (core_session_get(api->core, &c->key, id, &info, &err) < 0)
		return instavm_error(c, &err);
	/* The path proxy is on the host the client reached the API by; a
	 * request without a usable Host gets the preview domain, which is the
	 * API's own address unless the operator set another. */
	const char *host = http_header(c->req, "Host");
	const char *scheme = core_preview_scheme(api->core);
	char url[512], direct[512], vm[32];
	snprintf(url, sizeof(url), "%s://%s/v1/app/%s/%d/", scheme,
		 host && url_host(host) ? host : core_preview_domain(api->core), info.id, port);
	core_preview_port_url(api->core, info.id, port, direct, sizeof(direct));
	core_vm_id(info.id, vm, sizeof(vm));
	int64_t left_ms = info.expires_ms - now_ms();
	json_t *o = json_pack("{s:s,s:s,s:n,s:i,s:s,s:s,s:s,s:I}", "url", url, "direct_url", direct,
			      "vm_ip", "port", port, "vm_id", vm, "session_id", info.id, "status",
			      core_state_name(info.state), "expires_in_seconds",
			      (json_int_t)(left_ms > 0 ? left_ms / 1000 : 0));
	core_session_info_release(&info);
	api_json(c, 200, o);
}

/* ---- routing ---- */

/* Matched by api/router.c after the buntime routes; tests/unit/openapi.c
 * checks that api/openapi.c documents each one. */
static const struct api_route instavm_routes[] = {
    {"GET", "/v1/sessions/app-url/{session_id}", handle_app_url, 0},
};

const struct api_route_table api_instavm_routes = {
    .name = "instavm",
    .routes = instavm_routes,
    .n = ARRAY_SIZE(instavm_routes),
    .error = instavm_error,
    .key_header = "X-API-Key",
};
