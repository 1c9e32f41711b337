/* Several nodes, one API: a request for a session that another node owns
 * is passed on to that node (http/forward.c) and its answer streamed back,
 * a create goes to the node core_place() picks, and operators read the
 * nodes at GET /v1/cluster/nodes.
 *
 * Where the decision is taken: at the head, once the route matched and
 * the key passed (nothing is relayed for a caller without one), for every
 * route whose session is named by its path ({id}, {session_id}) or its
 * query (sessionId, session_id), and for creates; the body then streams
 * to the owner as it arrives. Routes whose session is named in a JSON body
 * (POST /execute, /files/write, ...) are decided once that body is in,
 * which they buffer anyway (at most API_BODY_JSON_MAX plus a file), and
 * the buffered body is sent on. Either way the answer streams back.
 *
 * A hop between nodes carries X-Bunker-Relay with the cluster secret. The
 * node that receives one serves the request itself whatever the store
 * says (one hop, never more) and does not count it against the key's rate
 * limit a second time: the node the client reached counted it and its
 * X-RateLimit-* headers are the ones the client gets. A client's own
 * X-Bunker-Relay that does not hold the secret is refused (403), and
 * never passed on (http/forward.c writes its own).
 */
#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_int.h"
#include "api/instavm_int.h"
#include "util/cleanup.h"
#include "util/util.h"

/* Reads the secret in path (its first line, blanks around it dropped) and
 * keeps its hash. */
static int secret_load(const char *path, uint8_t hash[32], char **plain, struct bk_err *err)
{
	_cleanup_fclose_ FILE *f = fopen(path, "re");
	if (f == NULL)
		return bk_err_set(err, errno, "cannot read '%s'", path);
	char line[512];
	/* f is _cleanup_fclose_ */
	if (fgets(line, sizeof(line), f) == NULL)
		/* cppcheck-suppress resourceLeak */
		return bk_err_kind(err, BK_E_INVALID, "'%s' is empty", path);
	char *s = line;
	while (*s == ' ' || *s == '\t')
		s++;
	size_t n = strcspn(s, "\r\n");
	while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
		n--;
	s[n] = '\0';
	if (n < 16)
		return bk_err_kind(err, BK_E_INVALID,
				   "the secret in '%s' is %zu bytes long; use at least 16", path,
				   n);
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e)
			return bk_err_kind(err, BK_E_INVALID,
					   "the secret in '%s' must be printable ASCII without "
					   "blanks",
					   path);
	crypto_generichash(hash, 32, (const unsigned char *)s, n, NULL, 0);
	if (plain) {
		*plain = strdup(s);
		if (*plain == NULL)
			return bk_err_set(err, ENOMEM, "cannot keep the secret of '%s'", path);
	}
	sodium_memzero(line, sizeof(line));
	return 0;
}

int api_secrets_load(struct api *api, const char *operator_file, const char *cluster_file,
		     struct bk_err *err)
{
	if (sodium_init() < 0)
		return bk_err_kind(err, BK_E_INTERNAL, "cannot initialise libsodium");
	if (operator_file) {
		if (secret_load(operator_file, api->operator_hash, NULL, err) < 0)
			return -1;
		api->has_operator = true;
	}
	const char *cf = cluster_file ? cluster_file : operator_file;
	if (cf) {
		if (secret_load(cf, api->cluster_hash, &api->cluster_secret, err) < 0)
			return -1;
		api->has_cluster = true;
	}
	return 0;
}

/* Whether given hashes to want: compared in constant time, and over hashes
 * so that the length of the secret does not show either. */
static bool secret_matches(const uint8_t want[32], const char *given)
{
	uint8_t h[32];
	crypto_generichash(h, 32, (const unsigned char *)given, strlen(given), NULL, 0);
	return sodium_memcmp(h, want, 32) == 0;
}

int api_cluster_check_relayed(struct api_call *c, struct bk_err *err)
{
	const char *v = http_header(c->req, RELAY_HEADER);
	if (v == NULL)
		return 0;
	if (!c->api->has_cluster || !secret_matches(c->api->cluster_hash, v))
		return bk_err_kind(err, BK_E_FORBIDDEN,
				   RELAY_HEADER " is for the nodes of a cluster, and this one does "
						"not hold the cluster's secret");
	c->relayed = true;
	return 0;
}

bool api_cluster_hop_valid(const struct api *api, const char *value)
{
	return api->has_cluster && secret_matches(api->cluster_hash, value);
}

const char *api_cluster_secret(const struct api *api)
{
	return api->has_cluster ? api->cluster_secret : NULL;
}

static bool cluster_on(const struct api_call *c)
{
	return c->api->has_cluster && core_node_name(c->api->core)[0] != '\0';
}

/* ---- the relayed body and answer ---- */

static int relay_write(void *state, const char *data, size_t len, struct bk_err *err)
{
	return http_forward_body(state, data, len, err);
}

static void relay_finish(struct api_call *c, void *state, enum http_body_end end,
			 const struct bk_err *write_err)
{
	struct http_forward *f = state;
	struct bk_err err = BK_ERR_INIT;
	if (end == HTTP_BODY_COMPLETE) {
		if (http_forward_answer(f, c->res, &err) == 0)
			return;
		bk_err_prefix(&err, "cannot relay to node '%s'", c->relay_node);
	} else {
		http_forward_free(f);
		if (end == HTTP_BODY_TOO_LARGE)
			bk_err_kind(&err, BK_E_TOO_LARGE,
				    "the request body is over this endpoint's limit of %zu bytes",
				    api_route_body_limit(c));
		else if (end == HTTP_BODY_REFUSED)
			err = *write_err;
		else
			bk_err_kind(&err, BK_E_UNAVAILABLE, "the client left");
	}
	c->relay_error(c, &err);
}

static const struct api_body_stream relay_stream = {
    .write = relay_write,
    .finish = relay_finish,
};

/* Whether the node c's request went to still holds its lease: one that
 * stopped answering (hung, stopped, cut off from the store) fails the
 * request once its lease lapses, and the next request takes the session
 * over. */
static bool relay_peer_alive(void *ctx)
{
	struct api_call *c = ctx;
	return core_node_alive(c->api->core, c->relay_node);
}

/* Opens the hop to node for c: 0, or -1 with err. */
static int relay_open(struct api_call *c, const struct core_node *node, struct http_forward **out,
		      struct bk_err *err)
{
	/* Its read and replay buffers, held until the request ends. */
	enum budget_limit over = budget_charge_take_all(c->plan_charge, HTTP_FORWARD_HELD);
	if (over != BUDGET_OK)
		return api_over_budget(c, over, err);
	char line[600];
	snprintf(line, sizeof(line), RELAY_HEADER ": %s", c->api->cluster_secret);
	const char *extra[] = {line, NULL};
	int rc = http_forward_open(c->req, node->advertise, extra, out, err);
	sodium_memzero(line, sizeof(line));
	if (rc < 0)
		return bk_err_kind(err, BK_E_UNAVAILABLE,
				   "node '%s' that serves this cannot be "
				   "reached: %s",
				   node->name, err->msg);
	snprintf(c->relay_node, sizeof(c->relay_node), "%s", node->name);
	http_forward_watch(*out, relay_peer_alive, c);
	return 0;
}

/* The session a route names by its path or query, or NULL. */
static const char *head_session(struct api_call *c)
{
	if (c->session_id[0])
		return c->session_id;
	const char *q = http_query(c->req, "sessionId");
	if (q == NULL)
		q = http_query(c->req, "session_id");
	return q && *q ? q : NULL;
}

/* Where c goes: 1 with *node another node, 0 here, -1 with err. */
static int relay_target(struct api_call *c, const char *id, struct core_node *node,
			struct bk_err *err)
{
	if (id)
		return core_session_locate(c->api->core, c->key.id, id, node, err);
	if (c->route->flags & API_ROUTE_CREATES_SESSION)
		return core_place(c->api->core, node, err);
	return 0;
}

int api_cluster_relay_head(struct api_call *c, struct http_body_plan *plan,
			   void (*error)(struct api_call *, const struct bk_err *))
{
	if (!cluster_on(c) || c->relayed || !c->authed ||
	    (c->route->flags & (API_ROUTE_PUBLIC | API_ROUTE_OPERATOR)))
		return 0;
	/* A route shared by two dialects names its session in its body. */
	if (c->shared)
		return 0;
	struct bk_err err = BK_ERR_INIT;
	struct core_node node;
	int r = relay_target(c, head_session(c), &node, &err);
	struct http_forward *f = NULL;
	if (r > 0)
		r = relay_open(c, &node, &f, &err) < 0 ? -1 : 1;
	if (r < 0) {
		error(c, &err);
		return 1;
	}
	if (r == 0)
		return 0;
	c->relay_error = error;
	plan->limit = api_route_body_limit(c);
	plan->mode = HTTP_BODY_STREAM;
	plan->sink = &api_stream_sink;
	api_body_stream(c, &relay_stream, f);
	return 1;
}

int api_cluster_relay_body(struct api_call *c,
			   void (*error)(struct api_call *, const struct bk_err *))
{
	if (!cluster_on(c) || c->relayed || !c->authed)
		return 0;
	struct bk_err err = BK_ERR_INIT;
	/* A JSON body, or a form (InstaVM's /download, as its SDK sends it). */
	_cleanup_free_ char *form_id = NULL;
	const char *id = NULL;
	/* Parsed once for the route too when it is JSON; when it is not, the
	 * route parses it again and says what is wrong with it. */
	if (!c->body_parsed) {
		json_t *parsed = api_body_object(c->req, true, &err);
		if (parsed) {
			c->body = parsed;
			c->body_parsed = true;
		}
	}
	json_t *body = c->body;
	if (body) {
		json_t *v = json_object_get(body, "sessionId");
		if (!json_is_string(v))
			v = json_object_get(body, "session_id");
		if (json_is_string(v))
			id = json_string_value(v);
	} else if (instavm_form_get(c->req->body, c->req->body_len, "session_id", &form_id) == 1) {
		id = form_id;
	}
	bk_err_clear(&err);
	if (id == NULL && !(c->route->flags & API_ROUTE_CREATES_SESSION))
		return 0;
	struct core_node node;
	int r = relay_target(c, id, &node, &err);
	if (r == 0)
		return 0;
	struct http_forward *f = NULL;
	if (r > 0 && relay_open(c, &node, &f, &err) == 0 &&
	    http_forward_body(f, c->req->body, c->req->body_len, &err) == 0 &&
	    http_forward_answer(f, c->res, &err) == 0)
		return 1;
	if (r > 0 && f && err.msg[0])
		bk_err_prefix(&err, "cannot relay to node '%s'", node.name);
	error(c, &err);
	return 1;
}

int api_cluster_upload_hop(struct api_call *c, const char *session_id, struct http_forward **out,
			   struct bk_err *err)
{
	*out = NULL;
	if (!cluster_on(c) || c->relayed || !c->authed)
		return 0;
	struct core_node node;
	int r = core_session_locate(c->api->core, c->key.id, session_id, &node, err);
	if (r <= 0)
		return r;
	if (relay_open(c, &node, out, err) < 0)
		return -1;
	return 1;
}

/* ---- GET /v1/cluster/nodes ---- */

/* Operators authenticate with the operator token as a Bearer: a tenant's
 * key is refused (403) even when valid, and so is anything else. */
static int operator_auth(struct api_call *c, struct bk_err *err)
{
	const char *h = http_header(c->req, "Authorization");
	if (h == NULL || strncasecmp(h, "Bearer ", 7) != 0)
		return bk_err_kind(err, BK_E_UNAUTHORIZED,
				   "this endpoint takes the operator token as "
				   "'Authorization: Bearer <token>'");
	const char *token = h + 7;
	while (*token == ' ')
		token++;
	if (!c->api->has_operator)
		return bk_err_kind(err, BK_E_FORBIDDEN,
				   "no operator token is configured (--operator-token-file)");
	if (!secret_matches(c->api->operator_hash, token))
		return bk_err_kind(err, BK_E_FORBIDDEN,
				   "this endpoint is for operators: an API key is not enough");
	return 0;
}

static void handle_nodes(struct api_call *c)
{
	struct bk_err err = BK_ERR_INIT;
	if (operator_auth(c, &err) < 0)
		return api_buntime_error(c, &err);
	_cleanup_free_ struct core_node *nodes = NULL;
	size_t n = 0;
	if (core_nodes_list(c->api->core, &nodes, &n, &err) < 0)
		return api_buntime_error(c, &err);
	json_t *arr = json_array();
	for (size_t i = 0; i < n; i++) {
		const struct core_node *x = &nodes[i];
		json_array_append_new(
		    arr,
		    json_pack("{s:s,s:s,s:b,s:b,s:I,s:I,s:I,s:I,s:I,s:I}", "name", x->name,
			      "advertise", x->advertise, "alive", x->alive, "self", x->self,
			      "startedMs", (json_int_t)x->started_ms, "renewedMs",
			      (json_int_t)x->renewed_ms, "leaseExpiresMs", (json_int_t)x->lease_ms,
			      "freeMemoryMb", (json_int_t)x->free_mb, "sessionsAwake",
			      (json_int_t)x->awake, "sessionsOwned", (json_int_t)x->owned));
	}
	api_json(c, 200,
		 json_pack("{s:s,s:o}", "node", core_node_name(c->api->core), "nodes", arr));
}

int api_cluster_metrics(struct api *api, struct buf *b)
{
	if (core_node_name(api->core)[0] == '\0')
		return 0;
	_cleanup_free_ struct core_node *nodes = NULL;
	size_t n = 0;
	struct bk_err err = BK_ERR_INIT;
	if (core_nodes_list(api->core, &nodes, &n, &err) < 0)
		return 0; /* the store is away: the rest of the metrics still go out */
	static const char *const heads[] = {
	    "# HELP bunker_cluster_node_up Whether a node's lease runs (1) or lapsed (0).\n"
	    "# TYPE bunker_cluster_node_up gauge\n",
	    "# HELP bunker_cluster_node_sessions Sessions a node owns, not expired.\n"
	    "# TYPE bunker_cluster_node_sessions gauge\n",
	    "# HELP bunker_cluster_node_free_memory_mb A node's available memory at its last "
	    "renewal.\n"
	    "# TYPE bunker_cluster_node_free_memory_mb gauge\n",
	};
	static const char *const names[] = {"bunker_cluster_node_up",
					    "bunker_cluster_node_sessions",
					    "bunker_cluster_node_free_memory_mb"};
	for (int k = 0; k < 3; k++) {
		if (buf_append(b, heads[k], strlen(heads[k])) < 0)
			return -1;
		for (size_t i = 0; i < n; i++) {
			char line[256];
			long long v = k == 0   ? nodes[i].alive
				      : k == 1 ? nodes[i].owned
					       : nodes[i].free_mb;
			/* Node names are the operator's: printed as given, but a
			 * quote or backslash would break the label. */
			if (strpbrk(nodes[i].name, "\"\\\n"))
				continue;
			int len = snprintf(line, sizeof(line), "%s{node=\"%s\"} %lld\n", names[k],
					   nodes[i].name, v);
			if (buf_append(b, line, (size_t)len) < 0)
				return -1;
		}
	}
	return 0;
}

static const struct api_route cluster_routes[] = {
    {"GET", "/v1/cluster/nodes", handle_nodes, API_ROUTE_OPERATOR},
};

const struct api_route_table api_cluster_routes = {
    .name = "cluster",
    .routes = cluster_routes,
    .n = ARRAY_SIZE(cluster_routes),
    .error = api_buntime_error,
};
