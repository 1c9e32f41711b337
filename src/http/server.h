/* The HTTP server: its own front door in front of libmicrohttpd, a thread
 * per served connection, a handler asked at each request's head how its
 * body is to be taken, and a relay for the connections that host hooks
 * send elsewhere (previews).
 *
 * The front door (http/accept.c) holds each new connection, without a
 * thread, until its first request head is in (or HTTP_LIMITS' head
 * timeout has passed: 408 and closed), limits connections per client
 * address, then looks at the head's Host: hosts.route() sends the
 * connection to libmicrohttpd, which serves it with the handler, or to the
 * relay (http/relay.c), which asks hosts.open() for an upstream and relays
 * every request of the connection to it.
 *
 * The handler fills a struct http_response; the server creates, queues and
 * destroys the MHD response, so no handler touches MHD for that.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "util/budget.h"
#include "util/err.h"

struct http_request {
	const char *method;
	const char *path;
	const char *target; /* the request-target as sent (path and query) */
	/* The declared body: its Content-Length, or -1 when none was given
	 * (chunked, or no body at all); has_body when one is coming. */
	int64_t content_length;
	bool has_body;
	/* A buffered body (HTTP_BODY_BUFFER), once it is in: NUL-terminated,
	 * body_len excludes the NUL; "" and 0 before and for other modes. */
	const char *body;
	size_t body_len;
	bool body_too_large; /* past the plan's limit: dropped, not read whole */
	/* The plan's charge could not take the body (util/budget.h says which
	 * limit): dropped, not read whole, as body_too_large. */
	enum budget_limit body_over_budget;
	char client_ip[64];
	int client_fd;	     /* the connection's socket: to notice a client leaving */
	const char *nul_arg; /* a query argument whose value holds a NUL byte, or NULL */
	int64_t start_us;
	void *conn; /* the MHD connection, for http_header/http_query */
};

#define HTTP_MAX_HEADERS 16

struct http_response {
	int status;
	char *body; /* owned */
	size_t len;
	const char *content_type;
	struct {
		char name[48];
		char value[160];
	} headers[HTTP_MAX_HEADERS];
	int n_headers;
	/* A streamed body instead of body/len: stream_read fills at most max
	 * bytes of buf, blocking until it has some, and returns how many, 0 at
	 * the end, or -1 to abort the connection. stream_free runs once when the
	 * response is done or the client has gone, from the connection's
	 * thread. */
	ssize_t (*stream_read)(void *ctx, char *buf, size_t max);
	void (*stream_free)(void *ctx);
	void *stream_ctx;
	/* The streamed body's length when known in advance (sent as
	 * Content-Length rather than chunked); -1 or 0 with stream_sized
	 * false: unknown. */
	bool stream_sized;
	uint64_t stream_size;
};

/* The value of a request header or query argument, borrowed for the
 * request's lifetime, or NULL. */
const char *http_header(const struct http_request *req, const char *name);
const char *http_query(const struct http_request *req, const char *name);
/* The first query argument whose name or value ok() refuses, or NULL. */
const char *http_query_find_invalid(const struct http_request *req, bool (*ok)(const char *s));

/* Sets a response; body is copied. */
void http_response_set(struct http_response *res, int status, const char *content_type,
		       const char *body, size_t len);
/* Answers with a stream (see struct http_response); takes ctx. */
void http_response_stream(struct http_response *res, int status, const char *content_type,
			  ssize_t (*read)(void *ctx, char *buf, size_t max),
			  void (*free_ctx)(void *ctx), void *ctx);
/* http_response_stream() of a body of exactly len bytes. */
void http_response_stream_sized(struct http_response *res, int status, const char *content_type,
				uint64_t len, ssize_t (*read)(void *ctx, char *buf, size_t max),
				void (*free_ctx)(void *ctx), void *ctx);
/* Takes ownership of body (malloc'd). */
void http_response_take(struct http_response *res, int status, const char *content_type, char *body,
			size_t len);
void http_response_header(struct http_response *res, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- a request passed on to another server (http/forward.c) ----
 *
 * A request that libmicrohttpd took is sent on, as it came, to a peer
 * server, and the peer's answer becomes the request's: its head is
 * written at once (the method, the raw target, every header but the
 * hop-by-hop ones, plus extra lines), its body passed on piece by piece
 * as it arrives, and the answer's body read as the client takes it. Only
 * the framing is read on the way (the peer's Content-Length or chunks,
 * decoded, since libmicrohttpd frames the answer again), so nothing is
 * held whole: an SSE stream or a 50 MB file passes through 64 KiB. */

struct http_forward;

/* What an open hop holds (its read and replay buffers), for its caller to
 * charge. */
#define HTTP_FORWARD_HELD (128 * 1024)

/* Connects to url ("http://HOST:PORT", HOST a name, an IPv4 address or a
 * bracketed IPv6 one) and sends req's head with extra (NULL-terminated
 * "Name: value" lines, may be NULL) added; X-Forwarded-For gets the
 * client's address appended. The body follows with http_forward_body():
 * its declared Content-Length when req has one, else chunked. */
int http_forward_open(const struct http_request *req, const char *url, const char *const *extra,
		      struct http_forward **out, struct bk_err *err);
/* While f waits for its peer, alive(ctx) is asked after each second of
 * silence; false ends the wait (the answer fails, BK_E_UNAVAILABLE). */
void http_forward_watch(struct http_forward *f, bool (*alive)(void *ctx), void *ctx);
/* A stream socket connected to url (as http_forward_open() takes it),
 * or -1 with err (BK_E_UNAVAILABLE). */
int http_connect_url(const char *url, struct bk_err *err);
/* The next len bytes of the body. */
int http_forward_body(struct http_forward *f, const char *data, size_t len, struct bk_err *err);
/* Ends the body, waits for the answer's head and makes it res's: its
 * status, its headers (but hop-by-hop ones and those res already has) and
 * its body as a stream. Takes f: freed with res's stream, or here on
 * failure (then res is untouched). */
int http_forward_answer(struct http_forward *f, struct http_response *res, struct bk_err *err);
/* Abandons f (the peer sees its connection close). NULL is ignored. */
void http_forward_free(struct http_forward *f);

/* ---- a request, from its head to its answer ----
 *
 * For every request the server calls ops->head() once its head is in
 * (method, path, headers and query are known; not one byte of the body has
 * been read, and no "100 Continue" has been sent), and head() fills a
 * struct http_body_plan that says how the request goes on:
 *
 *   HTTP_BODY_ANSWER  res is the answer. A declared body is never read:
 *                     the answer goes out at once and the connection
 *                     closes after it (what the client sends meanwhile is
 *                     read and dropped for a moment, so that a reset does
 *                     not destroy the answer before the client reads it).
 *   HTTP_BODY_BUFFER  the body is read whole, at most limit bytes (and at
 *                     most the server's max_body), then ops->handle()
 *                     answers with req->body filled.
 *   HTTP_BODY_STREAM  each piece of the body goes to sink->write() as
 *                     libmicrohttpd delivers it, then sink->finish()
 *                     answers. Nothing of the body is kept by the server:
 *                     a body of any size passes through a few KiB. limit
 *                     bounds it (max_body does not: it bounds buffering).
 *
 * A declared Content-Length over the limit is not read either: handle()
 * (BUFFER, with body_too_large set) or finish() (STREAM, with
 * HTTP_BODY_TOO_LARGE) runs at the head and its answer goes out at once,
 * the connection closing after it. A body of unknown length (chunked) that
 * goes past the limit is read on and dropped, up to max_body in all (past
 * that the connection is cut without an answer), then answered the same
 * way.
 *
 * A request that declares no body is asked head() after its head too, but
 * in the same call as handle(), so that an answer from head() keeps the
 * connection alive.
 *
 * Every call of one request runs on its connection's thread, in order:
 * head(), then handle() or the sink's calls, then done(); done() runs
 * exactly once for every request whose head() ran, when its answer has
 * been sent or the client has gone, and frees plan->state.
 */

enum http_body_mode {
	HTTP_BODY_ANSWER = 0,
	HTTP_BODY_BUFFER,
	HTTP_BODY_STREAM,
};

/* How a streamed body ended, for sink->finish(). */
enum http_body_end {
	HTTP_BODY_COMPLETE = 0, /* every byte came, and write() took each */
	HTTP_BODY_TOO_LARGE,	/* over the plan's limit: the rest was not given */
	HTTP_BODY_REFUSED,	/* write() returned -1: the rest was read and dropped */
	/* The client left (or was cut off for sending too slowly) before the
	 * end: res is filled for the log, and sent to no one. */
	HTTP_BODY_CLIENT_GONE,
};

/* Where a streamed body goes. state is the plan's. */
struct http_body_sink {
	/* The next len bytes of the body, in order, on the connection's
	 * thread, which may block a while to pass them on (the client's next
	 * bytes wait in the socket meanwhile; the server's minimum body rate
	 * still applies). Returns 0 to go on, -1 to take no more. */
	int (*write)(void *state, const char *data, size_t len);
	/* Once, after the last write(): fills res. req is the request (its
	 * body fields empty); end says how the body ended. */
	void (*finish)(void *state, enum http_body_end end, const struct http_request *req,
		       struct http_response *res);
};

/* What head() decides (zeroed before the call: HTTP_BODY_ANSWER). */
struct http_body_plan {
	enum http_body_mode mode;
	size_t limit;			   /* BUFFER, STREAM: the most body bytes taken */
	const struct http_body_sink *sink; /* STREAM; borrowed until done() */
	void *state; /* the handler's, given to handle(), the sink and done() */
	/* What the server holds for this request's client is taken from it
	 * (NULL: nothing is counted): a buffered body as it comes (a declared
	 * length at the head, whole or not at all: refused, the handler is
	 * asked as for a body over the limit, with body_over_budget set);
	 * then an answer built whole, past any limit, from its queueing; then
	 * what of the answers the socket's send queue still holds when the
	 * request ends (the kernel takes an answer of a few MB whole from a
	 * client that reads none of it), given back as the client reads it
	 * or when the connection closes. The server takes it (and releases
	 * it), once head() has returned. */
	struct budget_charge *charge;
};

struct http_handler_ops {
	/* At the head (see above); res is the answer when plan->mode is left
	 * HTTP_BODY_ANSWER. */
	void (*head)(void *ctx, const struct http_request *req, struct http_body_plan *plan,
		     struct http_response *res);
	/* HTTP_BODY_BUFFER: the body is in (or over the limit). */
	void (*handle)(void *ctx, const struct http_request *req, void *state,
		       struct http_response *res);
	/* The request is over (see above); may be NULL. */
	void (*done)(void *ctx, void *state);
	void *ctx;
};

/* ---- limits on connections ---- */

/* What one client, and slow clients, may hold of the server. */
struct http_limits {
	/* Largest buffered request body (HTTP_BODY_BUFFER), whatever a plan
	 * says. */
	size_t max_body;
	/* Connections open at once from one client address (an IPv6 client:
	 * its /64), in every phase; more are closed as they are accepted. */
	int max_conns_per_client;
	/* A request head must be in within this many seconds of its first
	 * byte (of the connection's start, for its first request); past it:
	 * 408 (first request) or cut. Also the grace before the minimum body
	 * rate applies. */
	int head_timeout_s;
	/* A connection on which nothing moves for this long is closed:
	 * kept alive between requests, or a client that stops sending its
	 * body or stops reading its answer. At least 20: a streamed answer
	 * sends a ping every 15 s. */
	int idle_timeout_s;
	/* A body must come at this many bytes a second on average, counted
	 * from its start, once head_timeout_s has passed. 0: no minimum. */
	size_t body_min_rate;
};

/* The defaults, which an honest client (an SDK with a pool of
 * connections) never reaches: 100 MiB, 256 per client, 10 s, 60 s, 16 KiB/s. */
#define HTTP_LIMITS_DEFAULT                                                                        \
	{                                                                                          \
		.max_body = 100u << 20, .max_conns_per_client = 256, .head_timeout_s = 10,         \
		.idle_timeout_s = 60, .body_min_rate = 16u << 10                                   \
	}

/* ---- connections relayed elsewhere (previews) ---- */

/* Who serves a connection, decided from the Host and the request target of
 * its first request. */
enum http_route {
	HTTP_ROUTE_API = 0, /* this server, through the handler */
	HTTP_ROUTE_RELAY,   /* an upstream that hosts.open() connects */
};

/* The upstream of a relayed connection, from hosts.open(). */
struct http_upstream {
	int fd;		   /* connected stream socket; release() closes it */
	const char *proto; /* X-Forwarded-Proto; borrowed until release() */
	/* A path prefix that every request's target must start with (then
	 * '/', '?' or its end), cut off before the request goes up and sent
	 * as X-Forwarded-Prefix; NULL: none. Borrowed until release(). */
	const char *prefix;
	/* The start of the server's own API keys, which are dropped from
	 * Authorization and X-API-Key before a request goes up; NULL: none.
	 * Borrowed until release(). */
	const char *key_prefix;
	/* A line ("Name: value", borrowed until release()) added to every
	 * request head relayed, in place of any line of the hooks' hop_name
	 * the client sent (which is always dropped); NULL: none. */
	const char *hop_line;
	/* Once per request head relayed; may be NULL. Called from a relay
	 * worker, which serves other connections too: it must be quick. */
	void (*on_request)(void *ctx);
	/* Whether fd was taken away (shut down under the relay): the relay
	 * then ends at once, without delivering what it holds. May be NULL;
	 * called from a relay worker, often: an atomic load, no more. */
	bool (*cancelled)(void *ctx);
	/* Once, when the connection ends, from the thread that called open(). */
	void (*release)(void *ctx);
	void *ctx;
};

struct http_host_hooks {
	/* Where a request for host (a Host header's value) and target
	 * (its request-target as sent) goes: cheap and free of side effects,
	 * as it is asked again for every request that libmicrohttpd serves. */
	enum http_route (*route)(void *ctx, const char *host, const char *target);
	/* For a HTTP_ROUTE_RELAY request: fills up and returns 0, or fills res
	 * with the answer to give instead (an error page; body and headers
	 * only, no stream) and returns -1. hop is the value of the first
	 * request's hop_name header, NULL when it had none. May block (it may
	 * wake what it connects to); runs on the connection's own thread. */
	int (*open)(void *ctx, const char *host, const char *target, const char *hop,
		    struct http_upstream *up, struct http_response *res);
	/* A header that is never relayed as the client sent it (see
	 * struct http_upstream's hop_line); NULL: none. */
	const char *hop_name;
	void *ctx;
};

struct http_server;

/* Listens on addr:port (IPv4 dotted or "::1"-style IPv6) under limits
 * (copied), serving requests with ops (copied; ops->ctx borrowed). hosts
 * (copied; NULL: every connection is the handler's) picks the connections
 * that are relayed instead. */
int http_server_start(const char *addr, int port, const struct http_limits *limits,
		      const struct http_handler_ops *ops, const struct http_host_hooks *hosts,
		      struct http_server **out, struct bk_err *err);
/* Stops accepting, ends every connection (relayed ones included, whose
 * release() has run when this returns) and frees srv. */
void http_server_stop(struct http_server *srv);
