/* Shared by the api/ files. */
#pragma once

#include <jansson.h>

#include "api/api.h"

static inline void cleanup_jsonp(json_t **j)
{
	json_decref(*j);
}
/* Only on new references. */
#define _cleanup_json_ __attribute__((cleanup(cleanup_jsonp)))

struct api_route;
struct api_route_table;

#define API_PARAMS_MAX 4

/* What a handler knows of its request once routed and authenticated. It
 * lives from the request's head to its end (api/common.c). */
struct api_call {
	struct api *api;
	const struct http_request *req;
	struct http_response *res;
	struct core_key key;
	bool authed;
	char session_id[72];		     /* for the log line */
	const struct api_route *route;	     /* NULL when no route matched */
	const struct api_route_table *table; /* the route's */
	/* The path segments matched by the route's {name} placeholders, in
	 * order (NULL past the last); they live in param_buf. */
	const char *param[API_PARAMS_MAX];
	char param_buf[512];
	bool replayed; /* the answer is a stored one (api/idem.c) */
	/* Until the body is in, route stands for the routes of two dialects
	 * that share its method and path (api/router.c). */
	bool shared;
	/* The request's path with runs of '/' made one (a client's base URL
	 * that ends in '/'): what routes are matched against. Owned. */
	char *path;
	/* The body parsed as a JSON object by api_call_body(), once; owned. */
	json_t *body;
	bool body_parsed;
	/* A streamed body's (api_body_stream()): where it goes, and the error
	 * write() gave. */
	const struct api_body_stream *stream;
	void *stream_state;
	struct bk_err stream_err;
	/* It came from another node of the cluster (api/cluster.c): served
	 * here, not relayed again, not rate-limited again. */
	bool relayed;
	/* What the server holds for this request's client (api/router.c),
	 * the plan's charge; owned, released when the request ends. */
	struct budget_charge *charge;
	/* The same charge once the server took it (borrowed, until done()):
	 * what a streamed body's sink holds is taken from it too. */
	struct budget_charge *plan_charge;
	/* Relayed to another node: its name, and how an error is answered. */
	char relay_node[64];
	void (*relay_error)(struct api_call *c, const struct bk_err *err);
};

/* A request refused for the memory its client holds, for limit (0, and
 * nothing done, for BUDGET_OK): -1 with err (429 for its owner's share,
 * 503 for the total), Retry-After set and the refusal counted. */
int api_over_budget(struct api_call *c, enum budget_limit limit, struct bk_err *err);

/* c's body as a JSON object (an empty body is {}), parsed on the first
 * call and kept: borrowed, or NULL when it is not one (err set). */
json_t *api_call_body(struct api_call *c, struct bk_err *err);
/* Whether c's body is the InstaVM dialect's (it names session_id and not
 * buntime's sessionId): how the two dialects share POST /execute
 * (api/instavm_exec.c). */
bool api_body_is_instavm(struct api_call *c);

/* Answers with obj (the reference is stolen) as JSON. */
void api_json(struct api_call *c, int status, json_t *obj);
/* {code, message, details} of err, as inside the buntime envelope (new
 * reference). */
json_t *api_buntime_error_body(const struct bk_err *err);
/* The buntime error envelope for err. */
void api_buntime_error(struct api_call *c, const struct bk_err *err);
/* Parses the request body as a JSON object: an empty body is {} when
 * empty_ok. Returns a new reference, or NULL with err set (BK_E_INVALID,
 * BK_E_TOO_LARGE). The body is checked with api_json_check() first. */
json_t *api_body_object(const struct http_request *req, bool empty_ok, struct bk_err *err);

/* What a JSON body may hold before it is parsed (jansson parses nesting by
 * recursion, down to 2,048 levels, and takes some 170 bytes for an empty
 * object: 99 MB of them made over 5 GB): */
#define API_JSON_DEPTH_MAX 64
#define API_JSON_VALUES_MAX 100000
/* Whether the JSON text[0..len) nests at most API_JSON_DEPTH_MAX deep and
 * holds at most API_JSON_VALUES_MAX values, counted in one pass without
 * parsing (so also for text that is no valid JSON). -1 with err naming
 * "body" (BK_E_INVALID; err may be NULL) when not. */
int api_json_check(const char *text, size_t len, struct bk_err *err);
/* The query argument name as a whole number min..max (def when absent);
 * otherwise an error naming field. min >= 0. */
int api_query_int(struct api_call *c, const char *name, const char *field, int def, int min,
		  int max, int *out, struct bk_err *err);
/* The query argument name, which must be given and not be empty: 0 with
 * *out set (borrowed from the request), or -1 with err naming it. */
int api_query_required(struct api_call *c, const char *name, const char **out, struct bk_err *err);
/* The query argument name as "true"/"1" or "false"/"0" (false when
 * absent); otherwise -1 with err naming it. */
int api_query_bool(struct api_call *c, const char *name, bool *out, struct bk_err *err);

/* Typed access to a JSON object's members, never coercing: absent and
 * null are "not given". path names the member in errors (BK_E_INVALID,
 * err->field); what *out receives is borrowed from obj. */

/* The member name, or NULL when it is absent or null (borrowed). */
json_t *api_field_get(json_t *obj, const char *name);
/* 1 with *out set, 0 when not given, -1 when not an integer. */
int api_field_int(json_t *obj, const char *name, const char *path, int64_t *out,
		  struct bk_err *err);
/* api_field_int() that also refuses anything but 1..INT32_MAX. */
int api_field_positive_int(json_t *obj, const char *name, const char *path, int64_t *out,
			   struct bk_err *err);
/* 1 with *out set, 0 when not given, -1 when not a string. */
int api_field_string(json_t *obj, const char *name, const char *path, const char **out,
		     struct bk_err *err);
/* A string that must be given: 0 with *out set, or -1 with err always set
 * (missing or null: "is required"; another type: "must be a string"). */
int api_field_required_string(json_t *obj, const char *name, const char *path, const char **out,
			      struct bk_err *err);
/* Whether s is valid UTF-8 (no overlong forms, no surrogates). */
bool api_utf8_valid(const char *s);
/* Length of the valid UTF-8 sequence at p (at most n bytes, n > 0), or 0
 * (the same judgement as jansson's). */
size_t api_utf8_seq_len(const unsigned char *p, size_t n);
/* The JSON string escape of the ASCII byte c as jansson writes it
 * (\" \\ \b \f \n \r \t, \u00XX for other control bytes, else c
 * itself), NUL-terminated into out[7]; its length. */
size_t api_json_escape_byte(unsigned char c, char *out);
/* A JSON string of arbitrary bytes: invalid UTF-8 becomes U+FFFD. */
json_t *api_json_bytes(const char *data, size_t len);
/* Authenticates the Bearer key, or (when key_header is not NULL and there
 * is no Bearer) the key in that header, into c->key. */
int api_auth(struct api_call *c, const char *key_header, struct bk_err *err);
/* Authenticates secret (a key sent some other way, NULL: none) into
 * c->key. */
int api_auth_secret(struct api_call *c, const char *secret, struct bk_err *err);
/* Whether the request carries a key in Authorization or key_header. */
bool api_has_key(struct api_call *c, const char *key_header);
/* The HTTP status of an error of kind. */
int api_status_of(enum bk_err_kind kind);

/* ---- routes (api/router.c) ---- */

enum api_route_flag {
	API_ROUTE_PUBLIC = 1u << 0,	/* no API key, no rate limit */
	API_ROUTE_IDEMPOTENT = 1u << 1, /* honours Idempotency-Key (api/idem.c) */
	/* What a 2xx answer counts in util/metrics.h: */
	API_ROUTE_CREATES_SESSION = 1u << 2,
	API_ROUTE_EXECUTES = 1u << 3,
	/* The handler authenticates: the key may come in the body (InstaVM's
	 * create sends api_key there). */
	API_ROUTE_KEY_IN_BODY = 1u << 6,
	/* A key is checked when one is sent; without one the handler decides
	 * (InstaVM's usage, where the session's UUID is the capability). */
	API_ROUTE_KEY_OPTIONAL = 1u << 7,
	/* The body carries a file's content: it may hold the key's max file
	 * size (in base64) on top of API_BODY_JSON_MAX. */
	API_ROUTE_BODY_FILE = 1u << 4,
	/* The handler runs at the head, once the key and the rate limit
	 * passed and before a byte of the body is read; it answers, or calls
	 * api_body_stream() to take the body as it comes. Idempotency does
	 * not apply. */
	API_ROUTE_STREAM_BODY = 1u << 5,
	/* For operators, not tenants: no API key and no rate limit; the
	 * handler checks the operator token (api/cluster.c). */
	API_ROUTE_OPERATOR = 1u << 8,
};

/* The largest body of a route without API_ROUTE_BODY_FILE. */
#define API_BODY_JSON_MAX (8u << 20)
/* The largest body read before its key is known (API_ROUTE_KEY_IN_BODY:
 * the key is in it). */
#define API_BODY_KEYLESS_MAX (256u << 10)

/* How a route takes its body as a stream, piece by piece as it arrives,
 * instead of whole (InstaVM's multipart upload): see API_ROUTE_STREAM_BODY
 * and api_body_stream(). Every call runs on the connection's thread. */
struct api_body_stream {
	/* The next len bytes of the body, in order; may block a while to pass
	 * them on. 0, or -1 with err to take no more (the rest is dropped). */
	int (*write)(void *state, const char *data, size_t len, struct bk_err *err);
	/* Once, last: answers c and frees state. end says how the body ended
	 * (HTTP_BODY_TOO_LARGE: past api_route_body_limit(); the route
	 * answers 413), err is write()'s error for HTTP_BODY_REFUSED. After
	 * HTTP_BODY_CLIENT_GONE the answer goes to no one. */
	void (*finish)(struct api_call *c, void *state, enum http_body_end end,
		       const struct bk_err *err);
};

/* From the handler of an API_ROUTE_STREAM_BODY route, at the head: the
 * body is to go to ops with state (taken: finish() frees it). A handler
 * that answers instead (an error) leaves the body unread. */
void api_body_stream(struct api_call *c, const struct api_body_stream *ops, void *state);

/* The sink of every streamed route: calls its struct api_body_stream
 * (api/common.c). */
extern const struct http_body_sink api_stream_sink;

/* One endpoint. pattern is a path whose "{name}" segments each match one
 * non-empty segment (OpenAPI's path template syntax, so that the document
 * of api/openapi.c names the same strings). */
struct api_route {
	const char *method;
	const char *pattern;
	void (*handler)(struct api_call *c);
	unsigned flags; /* enum api_route_flag */
	/* For a method and path that two dialects share (POST /execute):
	 * whether this route's dialect takes the request, decided from its
	 * body before anything else (NULL: always). */
	bool (*claims)(struct api_call *c);
};

/* The routes of one dialect and how it renders an error. */
struct api_route_table {
	const char *name;
	const struct api_route *routes;
	size_t n;
	void (*error)(struct api_call *c, const struct bk_err *err);
	/* A header that may carry the API key instead of Authorization
	 * (InstaVM's X-API-Key), or NULL. */
	const char *key_header;
};

extern const struct api_route_table api_ops_routes;	/* api/ops.c */
extern const struct api_route_table api_cluster_routes; /* api/cluster.c */
extern const struct api_route_table api_buntime_routes; /* api/buntime.c */
extern const struct api_route_table api_instavm_routes; /* api/instavm.c */
/* Every table, in the order they are matched; NULL-terminated. */
extern const struct api_route_table *const api_route_tables[];

/* Matches path against pattern, filling c->param (c may be NULL). */
bool api_route_match(const char *pattern, const char *path, struct api_call *c);
/* At c's head (nothing of its body read): routes, checks the path and the
 * query, authenticates and rate-limits, and fills plan: an answer at once
 * (c->res) when any of that fails, else the body's mode and limit. */
void api_dispatch_head(struct api_call *c, struct http_body_plan *plan);
/* Once a buffered body is in: 413 when it was over the limit, else
 * idempotency and the route's handler. */
void api_dispatch_body(struct api_call *c);
/* The most body bytes c's route takes from c's key: API_BODY_JSON_MAX,
 * plus the key's max file size in base64 for API_ROUTE_BODY_FILE; none
 * for a public route (nothing unauthenticated is buffered). */
size_t api_route_body_limit(const struct api_call *c);

/* ---- several nodes (api/cluster.c) ---- */

/* The header one node shows another on a relayed request or connection,
 * holding the cluster's secret. */
#define RELAY_HEADER "X-Bunker-Relay"
/* Whether value is the cluster's secret (constant time; false without
 * one). */
bool api_cluster_hop_valid(const struct api *api, const char *value);
/* The cluster's secret, or NULL when there is none (nothing is relayed). */
const char *api_cluster_secret(const struct api *api);

/* At the head, before anything else: a request carrying the relay header
 * must hold the cluster's secret (BK_E_FORBIDDEN otherwise); with it, c
 * is marked relayed. */
int api_cluster_check_relayed(struct api_call *c, struct bk_err *err);
/* At the head, once authenticated: when c's session (named by the path or
 * the query) is another node's, or c creates a session that goes to
 * another node, sets plan to stream the body there and returns 1; 1 too
 * after answering an error with error(); 0 when c is served here. */
int api_cluster_relay_head(struct api_call *c, struct http_body_plan *plan,
			   void (*error)(struct api_call *, const struct bk_err *));
/* The same once a buffered body is in, for the session it names
 * (sessionId or session_id): answers c from the owner and returns 1, or
 * returns 0. */
int api_cluster_relay_body(struct api_call *c,
			   void (*error)(struct api_call *, const struct bk_err *));
/* For a streamed upload, once its body named session_id: 1 with *out the
 * hop to the node that owns it (its head sent; the body so far and the
 * rest go to http_forward_body()), 0 when it is served here, -1 with err. */
int api_cluster_upload_hop(struct api_call *c, const char *session_id, struct http_forward **out,
			   struct bk_err *err);
/* The nodes' gauges for /metrics, appended to b. */
int api_cluster_metrics(struct api *api, struct buf *b);

/* ---- streamed executions: Server-Sent Events (api/stream.c) ---- */

struct api_stream;
struct api_answer; /* api/exec_answer.c, below */

/* What a dialect supplies to stream an execution; the engine owns the
 * rest (the event queue, pings, the client's hang-up, whole UTF-8
 * sequences in output events, the worker thread). */
struct api_stream_ops {
	/* Runs the execution, on the stream's worker thread: it must pass
	 * its struct core_exec_req through api_stream_hook(s, ...) first.
	 * Returns 0 with *res filled (the engine releases it) or -1 with err
	 * set. */
	int (*run)(void *ctx, struct api_stream *s, struct core_exec_result *res,
		   struct bk_err *err);
	/* The final event of a run that returned rc (res when rc == 0, err
	 * otherwise): its name in *event (a static string), its data as the
	 * return value (a new reference), or, for a result, as *answer
	 * (api_answer_new(), which takes res: the return value is then NULL). */
	json_t *(*final_event)(void *ctx, int rc, struct core_exec_result *res,
			       const struct bk_err *err, const char **event,
			       struct api_answer **answer);
	/* Frees ctx, once neither the worker nor the connection needs it. */
	void (*release)(void *ctx);
};

/* Answers c with a stream of events from ops->run(ctx), started on a worker
 * thread. Takes ctx: it is released by ops->release, also when the stream
 * cannot start (then -1 with err set, and nothing is answered). */
int api_stream_start(struct api_call *c, const struct api_stream_ops *ops, void *ctx,
		     struct bk_err *err);
/* Points req's on_output and cancelled hooks at s: output becomes stdout
 * and stderr events, and the client's leaving cancels the execution. The
 * output and the events not yet sent are charged to the stream's key
 * (req's charge). */
void api_stream_hook(struct api_stream *s, struct core_exec_req *req);
/* Waits until no stream's worker thread runs (at shutdown, once the server
 * has closed every connection, which cancels them). */
void api_stream_drain(void);
/* Whether the client of connection fd has hung up (false for fd < 0): the
 * cancelled hook of an execution that is not streamed. */
bool api_client_hung_up(int fd);

/* ---- answers that carry a file (api/file_answer.c) ---- */

enum api_file_encoding {
	API_FILE_TEXT,	 /* the bytes (UTF-8) escaped as inside a JSON string */
	API_FILE_BASE64, /* standard padded base64 */
};

/* Answers c (200, JSON) with head, then r's content encoded as enc, piece
 * by piece as the client takes it, then tail: head ends inside an open
 * JSON string, tail closes it. Takes r, head and tail (malloc'd; NULL is
 * out of memory, answered 500). A failure after the head (the file changed,
 * the session went) cuts the connection. */
void api_file_answer(struct api_call *c, struct core_read *r, enum api_file_encoding enc,
		     char *head, char *tail);

/* ---- answers that carry an execution's output (api/exec_answer.c) ---- */

struct api_answer;

/* The answer open + {"stdout":…,"stderr":…<rest's members>} + close, in
 * compact JSON: res's stdout and stderr (stderr followed by the text
 * stderr_more, when not NULL) as api_json_bytes() and json_dumps() would
 * write them, then the members of the object rest (stolen: at least one
 * member) as api_json() writes them. Takes res (its memory and its output's
 * charge go with the answer). NULL when out of memory (res released). */
struct api_answer *api_answer_new(const char *open, struct core_exec_result *res,
				  const char *stderr_more, json_t *rest, const char *close);
/* A unit of an encoded answer (an escape, a base64 group) that did not fit
 * the buffer it was made for: sent first at the next read. */
struct api_pend {
	char b[8];
	size_t len, at;
};
/* Copies what is left of p into buf[0..max): the bytes copied. */
size_t api_pend_drain(struct api_pend *p, char *buf, size_t max);
/* Escapes what of p[0..left) fits buf[0..room) as inside a JSON string
 * (api_answer_new()'s encoding): the bytes put, *used the input bytes
 * taken; a unit that did not fit whole goes into pend[*pend_len] (0 when
 * none), to be sent before the rest. */
size_t api_json_escape_some(const unsigned char *p, size_t left, size_t *used, char *buf,
			    size_t room, char pend[8], size_t *pend_len);
/* The answer's length in bytes. */
uint64_t api_answer_len(const struct api_answer *a);
/* The next bytes of the answer, at most max: how many (0 at its end). */
ssize_t api_answer_read(struct api_answer *a, char *buf, size_t max);
void api_answer_free(struct api_answer *a);
/* Answers c with a (taken; NULL: 500) as application/json, with its
 * Content-Length: whole when Idempotency-Key may keep it
 * (CORE_IDEM_ANSWER_MAX), else encoded as the client takes it, holding
 * the output (and its charge) until it has gone or the client has. */
void api_answer_send(struct api_call *c, int status, struct api_answer *a);

/* ---- rate limits (api/ratelimit.c) ---- */

/* A key's budget after a request was counted (or refused). */
struct api_ratelimit_state {
	int limit;
	int remaining;
	int64_t reset_s;   /* unix seconds at which the window starts afresh */
	int retry_after_s; /* > 0 when refused */
};

int api_ratelimit_new(struct api_ratelimit **out, struct bk_err *err);
void api_ratelimit_free(struct api_ratelimit *rl);
/* Counts one request of key_id against limit requests per minute at
 * now_ms: true when it is within the budget. Each key has a fixed window of
 * 60 s that opens with its first request; a refused request is not
 * counted. Thread safe. */
bool api_ratelimit_take(struct api_ratelimit *rl, const char *key_id, int limit, int64_t now_ms,
			struct api_ratelimit_state *out);
/* The budget of limit requests per minute at now_ms when the store counted
 * count requests, this one included, in the key's window opened at
 * start_ms (core_rate_count()): true when this one is within it. */
bool api_ratelimit_counted(int limit, int64_t start_ms, int64_t count, int64_t now_ms,
			   struct api_ratelimit_state *out);
/* Counts a request of c's key, in the store every node shares when there
 * is one (core_rate_count()), else in memory (api_ratelimit_take()),
 * adding the X-RateLimit-* headers to the answer; over the limit,
 * BK_E_LIMIT and Retry-After. */
int api_ratelimit_check(struct api_call *c, struct bk_err *err);

/* ---- idempotency (api/idem.c) ---- */

/* Runs c's route under the request's Idempotency-Key, if it has one: a
 * stored answer to the same request is replayed, another request under the
 * same key is refused (422), one still running is 409, and a 2xx answer is
 * stored. Without the header, just runs the route. */
void api_idem_run(struct api_call *c, const struct api_route_table *table);
/* The BLAKE2b-256 that decides whether two requests are "the same":
 * method, path and body (a JSON body in a canonical form, so that member
 * order and blanks do not matter). */
void api_idem_request_hash(const char *method, const char *path, const char *body, size_t len,
			   uint8_t out[32]);

/* ---- previews (api/preview.c) ---- */

/* Whether target is for the path proxy: "/v1/app/<session id>/<port>",
 * then '/', '?' or the end. On a match, id, *port and prefix (the part
 * that is cut off; >= 64 bytes) are filled. Non-static for
 * tests/fuzz/preview_route.c. */
bool api__preview_app_path(const char *target, char *id, size_t idlen, int *port, char *prefix,
			   size_t prefixlen);

/* ---- operations (api/ops.c, api/openapi.c) ---- */

/* The OpenAPI 3.1 document of every route, NUL-terminated JSON text. */
extern const char api_openapi_json[];
