/* Routing: the route tables of every dialect, matched in order; then, at
 * the request's head and before any of its body is read, authentication
 * and the key's rate limit for every route but the public ones, and the
 * route's body limit; once the body is in, idempotency and the handler.
 * A method and path that two dialects share (POST /execute) is decided by
 * its body, once it is in; what is answered before that is in both
 * dialects' shapes. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "api/api_int.h"
#include "util/cleanup.h"
#include "util/metrics.h"
#include "util/util.h"

/* A 429 that does not come from the rate limiter (the concurrent-session
 * cap, too many executions at once) cannot know when room will free up: a
 * slot frees when a session is deleted or expires. It suggests a minute. */
#define LIMIT_RETRY_AFTER_S 60

const struct api_route_table *const api_route_tables[] = {
    &api_ops_routes, &api_cluster_routes, &api_buntime_routes, &api_instavm_routes, NULL,
};

bool api_route_match(const char *pattern, const char *path, struct api_call *c)
{
	size_t used = 0;
	int n = 0;
	if (c)
		memset(c->param, 0, sizeof(c->param));
	const char *p = pattern, *s = path;
	while (*p) {
		if (*p != '{') {
			if (*p++ != *s++)
				return false;
			continue;
		}
		const char *close = strchr(p, '}');
		size_t len = strcspn(s, "/");
		if (close == NULL || len == 0)
			return false;
		if (c) {
			if (n == API_PARAMS_MAX || used + len + 1 > sizeof(c->param_buf))
				return false;
			memcpy(c->param_buf + used, s, len);
			c->param_buf[used + len] = '\0';
			c->param[n++] = c->param_buf + used;
			used += len + 1;
		}
		p = close + 1;
		s += len;
	}
	return *s == '\0';
}

/* The first route of c's method and path. At the head (claims false), a
 * route that takes a request by its body (claims()) cannot decide yet:
 * *shared says so, and the route returned stands for all the routes of
 * that method and path until the body is in. */
static const struct api_route *route_find(struct api_call *c, bool claims, bool *shared,
					  const struct api_route_table **table)
{
	*shared = false;
	for (size_t t = 0; api_route_tables[t]; t++) {
		const struct api_route_table *tab = api_route_tables[t];
		for (size_t i = 0; i < tab->n; i++) {
			const struct api_route *r = &tab->routes[i];
			if (strcmp(r->method, c->req->method) != 0 ||
			    !api_route_match(r->pattern, c->path, c))
				continue;
			if (r->claims && !claims) {
				*shared = true;
			} else if (r->claims && !r->claims(c)) {
				continue;
			}
			*table = tab;
			return r;
		}
	}
	return NULL;
}

/* The flags of every route of c's method and path (a shared one's). */
static unsigned shared_flags(struct api_call *c)
{
	unsigned flags = 0;
	for (size_t t = 0; api_route_tables[t]; t++)
		for (size_t i = 0; i < api_route_tables[t]->n; i++) {
			const struct api_route *r = &api_route_tables[t]->routes[i];
			if (strcmp(r->method, c->req->method) == 0 &&
			    api_route_match(r->pattern, c->path, NULL))
				flags |= r->flags;
		}
	return flags;
}

/* An error decided before the body of a shared route named the dialect:
 * one object in both shapes, {"detail": ...} for the InstaVM dialect and
 * {"error": {...}} for buntime's, so that each client reads its own. */
static void shared_error(struct api_call *c, const struct bk_err *err)
{
	int status = api_status_of(err->kind);
	if (status == 500)
		fprintf(stderr, "bunkerd: internal error: %s\n", err->msg);
	api_json(c, status,
		 json_pack("{s:o,s:o}", "error", api_buntime_error_body(err), "detail",
			   api_json_bytes(err->msg, strlen(err->msg))));
}

static void not_found(struct api_call *c)
{
	api_json(c, 404,
		 json_pack("{s:{s:s,s:s,s:{}}}", "error", "code", "not_found", "message",
			   "no such route", "details"));
}

static bool has_header(const struct http_response *res, const char *name)
{
	for (int i = 0; i < res->n_headers; i++)
		if (strcasecmp(res->headers[i].name, name) == 0)
			return true;
	return false;
}

size_t api_route_body_limit(const struct api_call *c)
{
	/* No key, no body: a public route would buffer one for anyone. */
	if (c->route == NULL || (c->route->flags & (API_ROUTE_PUBLIC | API_ROUTE_OPERATOR)))
		return 0;
	/* Not yet authenticated (the key is in the body): a small one. */
	if (!c->authed)
		return API_BODY_KEYLESS_MAX;
	size_t limit = API_BODY_JSON_MAX;
	unsigned flags = c->shared ? shared_flags((struct api_call *)c) : c->route->flags;
	if (flags & API_ROUTE_BODY_FILE) {
		/* base64 takes 4 bytes for every 3 (and a last 4). */
		uint64_t file = (uint64_t)c->key.limits.max_file_bytes;
		limit += (size_t)((file + 2) / 3 * 4);
	}
	return limit;
}

/* Whatever of the request may be echoed, logged or looked up is text:
 * refuse what is not UTF-8 (or holds a NUL) before any of that. */
static int request_check(struct api_call *c, struct bk_err *err)
{
	if (c->req->nul_arg)
		return bk_err_field(err, c->req->nul_arg, "query argument '%s' holds a NUL byte",
				    c->req->nul_arg);
	if (!api_utf8_valid(c->req->path))
		return bk_err_field(err, "path", "the request path is not valid UTF-8");
	if (http_query_find_invalid(c->req, api_utf8_valid))
		return bk_err_field(err, "query", "a query argument is not valid UTF-8");
	return 0;
}

/* A request refused for the memory its client holds: 429 when its owner
 * (the key, or the address without one) holds its share, 503 when all
 * owners hold all there is. Retry-After: 1, as answers drain in moments
 * when their clients read them. */
int api_over_budget(struct api_call *c, enum budget_limit limit, struct bk_err *err)
{
	if (limit == BUDGET_OK)
		return 0;
	enum api_budget_refusal why =
	    c->authed ? (limit == BUDGET_SHARE ? API_REFUSED_KEY : API_REFUSED_TOTAL)
		      : (limit == BUDGET_SHARE ? API_REFUSED_ADDRESS : API_REFUSED_KEYLESS_TOTAL);
	__atomic_add_fetch(&c->api->budget_refused[why], 1, __ATOMIC_RELAXED);
	http_response_header(c->res, "Retry-After", "1");
	if (limit == BUDGET_SHARE)
		return bk_err_kind(err, BK_E_LIMIT,
				   "%s holds its share of the memory the daemon keeps for "
				   "clients (answers not yet read, bodies being sent): read "
				   "those answers, or send this again in a moment",
				   c->authed ? "this API key" : "this client address");
	return bk_err_kind(err, BK_E_UNAVAILABLE,
			   "the daemon holds all the memory it keeps for clients (answers not "
			   "yet read, bodies being sent): send this again in a moment");
}

/* c's charge for what the server holds for its client, refused when its
 * owner holds all it may already: a key's requests are its key's, the
 * others' (a body that carries its key included) their address's, apart. */
static int client_charge(struct api_call *c, struct bk_err *err)
{
	struct budget *b = c->authed ? c->api->clients : c->api->keyless;
	if (b == NULL)
		return 0;
	c->charge = budget_charge_new(b, c->authed ? c->key.id : c->req->client_ip);
	if (c->charge == NULL)
		return bk_err_set(err, ENOMEM, "cannot count the memory of the request");
	return api_over_budget(c, budget_charge_full(c->charge), err);
}

/* The route's work with its body is the only thing left for after the
 * body: what the head can tell (no such route, a bad path, no key, no
 * budget left) is answered before a byte of the body is read. */
void api_dispatch_head(struct api_call *c, struct http_body_plan *plan)
{
	const struct api_route_table *table = NULL;
	const struct api_route *route = route_find(c, false, &c->shared, &table);
	if (route == NULL)
		return not_found(c);
	c->route = route;
	c->table = table;
	void (*error)(struct api_call *, const struct bk_err *) =
	    c->shared ? shared_error : table->error;
	struct bk_err err = BK_ERR_INIT;
	if (request_check(c, &err) < 0 || api_cluster_check_relayed(c, &err) < 0)
		return error(c, &err);
	/* A shared route takes either dialect's key header; one whose key may
	 * come in its body (InstaVM's create) or may be absent (InstaVM's
	 * usage) is authenticated here only when a header carries one. */
	const char *key_header = c->shared ? "X-API-Key" : table->key_header;
	bool auth = !(route->flags & (API_ROUTE_PUBLIC | API_ROUTE_OPERATOR)) &&
		    (!(route->flags & (API_ROUTE_KEY_IN_BODY | API_ROUTE_KEY_OPTIONAL)) ||
		     api_has_key(c, key_header));
	if (auth) {
		/* A relayed request was counted by the node the client
		 * reached. */
		if (api_auth(c, key_header, &err) < 0 ||
		    (!c->relayed && api_ratelimit_check(c, &err) < 0))
			return error(c, &err);
		if (c->param[0] &&
		    (strstr(route->pattern, "{id}") || strstr(route->pattern, "{session_id}")))
			snprintf(c->session_id, sizeof(c->session_id), "%s", c->param[0]);
	}
	if (client_charge(c, &err) < 0)
		return error(c, &err);
	/* The server's from here on (http_body_plan). */
	plan->charge = c->plan_charge = steal_ptr(&c->charge);
	if (api_cluster_relay_head(c, plan, error))
		return;
	plan->limit = api_route_body_limit(c);
	if (!(route->flags & API_ROUTE_STREAM_BODY)) {
		plan->mode = HTTP_BODY_BUFFER;
		return;
	}
	route->handler(c);
	if (c->stream) {
		plan->mode = HTTP_BODY_STREAM;
		plan->sink = &api_stream_sink;
	}
}

void api_body_stream(struct api_call *c, const struct api_body_stream *ops, void *state)
{
	c->stream = ops;
	c->stream_state = state;
}

void api_dispatch_body(struct api_call *c)
{
	if (c->req->body_too_large) {
		struct bk_err err = BK_ERR_INIT;
		bk_err_kind(&err, BK_E_TOO_LARGE,
			    "the request body is over this endpoint's limit of %zu bytes",
			    api_route_body_limit(c));
		return (c->shared ? shared_error : c->table->error)(c, &err);
	}
	if (c->req->body_over_budget != BUDGET_OK) {
		struct bk_err err = BK_ERR_INIT;
		api_over_budget(c, c->req->body_over_budget, &err);
		return (c->shared ? shared_error : c->table->error)(c, &err);
	}
	/* The body names the dialect of a shared route. */
	bool shared;
	if (c->shared && (c->route = route_find(c, true, &shared, &c->table)) == NULL)
		return not_found(c);
	const struct api_route *route = c->route;
	const struct api_route_table *table = c->table;
	if (api_cluster_relay_body(c, table->error))
		return;
	int64_t t0 = mono_us();
	if (route->flags & API_ROUTE_IDEMPOTENT)
		api_idem_run(c, table);
	else
		route->handler(c);
	bool fresh_2xx = c->res->status / 100 == 2 && !c->replayed;
	if (fresh_2xx && (route->flags & API_ROUTE_CREATES_SESSION))
		metrics_inc(METRICS_SESSIONS_CREATED);
	/* A stream answers at once; its execution is not timed here. */
	if (fresh_2xx && (route->flags & API_ROUTE_EXECUTES) && c->res->stream_read == NULL)
		metrics_observe(METRICS_EXEC_SECONDS, (double)(mono_us() - t0) / 1e6);
	if (c->res->status == 429 && !has_header(c->res, "Retry-After"))
		http_response_header(c->res, "Retry-After", "%d", LIMIT_RETRY_AFTER_S);
}
