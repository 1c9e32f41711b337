/* The HTTP server: its own accept loop in front of libmicrohttpd, a thread
 * per connection, whole request bodies up to a limit, one handler for
 * every request, and a relay for the connections that host hooks send
 * elsewhere (previews).
 *
 * Each new connection's first request head is looked at (not read) for
 * its Host: hosts.route() sends it to libmicrohttpd, which serves it with
 * the handler, or to the relay (http/relay.c), which asks hosts.open() for
 * an upstream and relays every request of the connection to it.
 *
 * The handler fills a struct http_response; the server creates, queues and
 * destroys the MHD response, so no handler touches MHD for that.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "util/err.h"

struct http_request {
	const char *method;
	const char *path;
	const char *body; /* NUL-terminated; body_len excludes the NUL */
	size_t body_len;
	bool body_too_large; /* the body went past the limit and was dropped */
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
/* Takes ownership of body (malloc'd). */
void http_response_take(struct http_response *res, int status, const char *content_type, char *body,
			size_t len);
void http_response_header(struct http_response *res, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

typedef void (*http_handler)(void *ctx, const struct http_request *req, struct http_response *res);

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
	 * only, no stream) and returns -1. May block (it may wake what it
	 * connects to); runs on the connection's own thread. */
	int (*open)(void *ctx, const char *host, const char *target, struct http_upstream *up,
		    struct http_response *res);
	void *ctx;
};

struct http_server;

/* Listens on addr:port (IPv4 dotted or "::1"-style IPv6); bodies above
 * max_body bytes are answered by the handler with body_too_large set.
 * hosts (copied; NULL: every connection is the handler's) picks the
 * connections that are relayed instead. */
int http_server_start(const char *addr, int port, size_t max_body, http_handler handler, void *ctx,
		      const struct http_host_hooks *hosts, struct http_server **out,
		      struct bk_err *err);
/* Stops accepting, ends every connection (relayed ones included, whose
 * release() has run when this returns) and frees srv. */
void http_server_stop(struct http_server *srv);
