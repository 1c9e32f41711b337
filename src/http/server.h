/* The HTTP server: libmicrohttpd with a thread per connection, whole
 * request bodies up to a limit, and one handler for every request.
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
	const char *body;     /* NUL-terminated; body_len excludes the NUL */
	size_t body_len;
	bool body_too_large;  /* the body went past the limit and was dropped */
	char client_ip[64];
	int client_fd;        /* the connection's socket: to notice a client leaving */
	const char *nul_arg;  /* a query argument whose value holds a NUL byte, or NULL */
	int64_t start_us;
	void *conn;           /* the MHD connection, for http_header/http_query */
};

#define HTTP_MAX_HEADERS 16

struct http_response {
	int status;
	char *body;           /* owned */
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

/* Sets a response; body is copied. */
void http_response_set(struct http_response *res, int status, const char *content_type,
		       const char *body, size_t len);
/* Answers with a stream (see struct http_response); takes ctx. */
void http_response_stream(struct http_response *res, int status, const char *content_type,
			  ssize_t (*read)(void *ctx, char *buf, size_t max),
			  void (*free_ctx)(void *ctx), void *ctx);
/* Takes ownership of body (malloc'd). */
void http_response_take(struct http_response *res, int status, const char *content_type,
			char *body, size_t len);
void http_response_header(struct http_response *res, const char *name, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

typedef void (*http_handler)(void *ctx, const struct http_request *req,
			     struct http_response *res);

struct http_server;

/* Listens on addr:port (IPv4 dotted or "::1"-style IPv6); bodies above
 * max_body bytes are answered by the handler with body_too_large set. */
int http_server_start(const char *addr, int port, size_t max_body, http_handler handler,
		      void *ctx, struct http_server **out, struct bk_err *err);
void http_server_stop(struct http_server *srv);
