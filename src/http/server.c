/* libmicrohttpd's side of the server: the handler's requests and answers.
 * Connections come from http/accept.c through MHD_add_connection(). */
#include "http/server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "http/http_int.h"
#include "util/util.h"

/* Per-request state kept by MHD between the calls of one request. */
struct req_state {
	char *uri;	/* the request-target as sent */
	bool first;	/* the connection's first request */
	bool started;	/* on_request() has seen the request's head */
	bool elsewhere; /* for the relay: answered with a 307 once its body is read */
	struct buf body;
	bool too_large;
	int64_t start_us;
};

/* A connection's count of requests, as its MHD socket context. */
static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
			  enum MHD_ConnectionNotificationCode toe)
{
	if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
		*socket_context = calloc(1, sizeof(unsigned));
	} else {
		free(*socket_context);
		*socket_context = NULL;
	}
}

/* MHD's first look at a request: its raw request-target (the url that
 * on_request() gets has lost its query), kept in the request's state. */
static void *on_uri(void *cls, const char *uri, struct MHD_Connection *conn)
{
	struct http_server *srv = cls;
	struct req_state *st = calloc(1, sizeof(*st));
	if (st == NULL)
		return NULL;
	const union MHD_ConnectionInfo *ci =
	    MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
	unsigned *count = ci ? ci->socket_context : NULL;
	st->first = count == NULL || ++*count == 1;
	st->uri = strdup(uri);
	if (st->uri == NULL) {
		free(st);
		return NULL;
	}
	buf_init(&st->body, srv->max_body);
	st->start_us = mono_us();
	return st;
}

const char *http_header(const struct http_request *req, const char *name)
{
	return MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, name);
}

const char *http_query(const struct http_request *req, const char *name)
{
	return MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, name);
}

void http_response_take(struct http_response *res, int status, const char *content_type, char *body,
			size_t len)
{
	free(res->body);
	res->status = status;
	res->content_type = content_type;
	res->body = body;
	res->len = len;
}

void http_response_set(struct http_response *res, int status, const char *content_type,
		       const char *body, size_t len)
{
	char *copy = malloc(len + 1);
	if (copy) {
		memcpy(copy, body, len);
		copy[len] = '\0';
	}
	http_response_take(res, copy ? status : 500, content_type, copy, copy ? len : 0);
}

void http_response_stream(struct http_response *res, int status, const char *content_type,
			  ssize_t (*read)(void *ctx, char *buf, size_t max),
			  void (*free_ctx)(void *ctx), void *ctx)
{
	free(res->body);
	res->body = NULL;
	res->len = 0;
	res->status = status;
	res->content_type = content_type;
	res->stream_read = read;
	res->stream_free = free_ctx;
	res->stream_ctx = ctx;
}

struct stream_glue {
	ssize_t (*read)(void *ctx, char *buf, size_t max);
	void (*free_ctx)(void *ctx);
	void *ctx;
};

static ssize_t stream_cb(void *cls, uint64_t pos, char *buf, size_t max)
{
	struct stream_glue *g = cls;
	ssize_t n = g->read(g->ctx, buf, max);
	if (n == 0)
		return MHD_CONTENT_READER_END_OF_STREAM;
	return n < 0 ? MHD_CONTENT_READER_END_WITH_ERROR : n;
}

static void stream_free_cb(void *cls)
{
	struct stream_glue *g = cls;
	if (g->free_ctx)
		g->free_ctx(g->ctx);
	free(g);
}

void http_response_header(struct http_response *res, const char *name, const char *fmt, ...)
{
	if (res->n_headers == HTTP_MAX_HEADERS)
		return;
	snprintf(res->headers[res->n_headers].name, sizeof(res->headers[0].name), "%s", name);
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(res->headers[res->n_headers].value, sizeof(res->headers[0].value), fmt, ap);
	va_end(ap);
	res->n_headers++;
}

/* The one place that creates, queues and destroys an MHD response. */
static enum MHD_Result respond(struct MHD_Connection *conn, struct http_response *res)
{
	struct MHD_Response *r;
	if (res->stream_read) {
		struct stream_glue *g = malloc(sizeof(*g));
		if (g == NULL) {
			if (res->stream_free)
				res->stream_free(res->stream_ctx);
			return MHD_NO;
		}
		*g = (struct stream_glue){res->stream_read, res->stream_free, res->stream_ctx};
		r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, stream_cb, g,
						      stream_free_cb);
		if (r == NULL) {
			stream_free_cb(g);
			return MHD_NO;
		}
	} else {
		r = MHD_create_response_from_buffer(res->len, res->body ? res->body : (char *)"",
						    MHD_RESPMEM_MUST_FREE);
		if (r == NULL) {
			free(res->body);
			return MHD_NO;
		}
		res->body = NULL;
	}
	if (res->content_type)
		MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, res->content_type);
	for (int i = 0; i < res->n_headers; i++)
		MHD_add_response_header(r, res->headers[i].name, res->headers[i].value);
	enum MHD_Result ret = MHD_queue_response(conn, (unsigned)res->status, r);
	MHD_destroy_response(r);
	return ret;
}

/* A short text answer (static) on a connection that then closes, with a
 * Location when location is not NULL: as long as the target it names, it
 * does not fit http_response's headers. */
static enum MHD_Result answer_and_close(struct MHD_Connection *conn, unsigned status,
					const char *text, const char *location)
{
	struct MHD_Response *r =
	    MHD_create_response_from_buffer(strlen(text), (void *)text, MHD_RESPMEM_PERSISTENT);
	if (r == NULL)
		return MHD_NO;
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain; charset=utf-8");
	if (location)
		MHD_add_response_header(r, MHD_HTTP_HEADER_LOCATION, location);
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONNECTION, "close");
	enum MHD_Result ret = MHD_queue_response(conn, status, r);
	MHD_destroy_response(r);
	return ret;
}

static void client_ip(struct MHD_Connection *conn, char *out, size_t len)
{
	const union MHD_ConnectionInfo *ci =
	    MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	out[0] = '\0';
	if (ci == NULL || ci->client_addr == NULL)
		return;
	const struct sockaddr *sa = ci->client_addr;
	if (sa->sa_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, out,
			  (socklen_t)len);
	else if (sa->sa_family == AF_INET6)
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, out,
			  (socklen_t)len);
}

/* Finds a query argument whose decoded value holds a NUL: lookups by name
 * would see it cut short there ("a%00b" read as "a"). */
static enum MHD_Result find_nul_arg(void *cls, enum MHD_ValueKind kind, const char *key,
				    size_t key_size, const char *value, size_t value_size)
{
	const char **found = cls;
	if ((value && strlen(value) != value_size) || strlen(key) != key_size) {
		*found = key;
		return MHD_NO;
	}
	return MHD_YES;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
				  const char *method, const char *version, const char *upload,
				  size_t *upload_size, void **con_cls)
{
	struct http_server *srv = cls;
	struct req_state *st = *con_cls;
	if (st == NULL)
		return MHD_NO; /* on_uri() ran out of memory */
	if (!st->started) {
		st->started = true;
		/* A request for the relay (a preview host, a path-proxied app)
		 * that reached MHD. As a later request of a kept-alive
		 * connection, it gets a 307 to the same target once its body
		 * is read, and the connection closes: clients send it again,
		 * same method and body, on a new connection, which the front
		 * door routes. As the first, the front door could not read its
		 * Host (past 16 KiB of head, or too slow): a 307 would only
		 * loop. A request without a Host is the API's, as the front
		 * door would route it too. */
		const char *host = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Host");
		if (host && srv->has_hosts &&
		    srv->hosts.route(srv->hosts.ctx, host, st->uri) != HTTP_ROUTE_API) {
			if (st->first)
				return answer_and_close(conn, MHD_HTTP_BAD_REQUEST,
							"this request is for a preview, but its "
							"Host header did not come within the first "
							"16 KiB of its head and 10 s\n",
							NULL);
			st->elsewhere = true;
			return MHD_YES;
		}
		const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
							     MHD_HTTP_HEADER_CONTENT_LENGTH);
		if (cl && strtoull(cl, NULL, 10) > srv->max_body)
			st->too_large = true;
		return MHD_YES;
	}
	if (st->elsewhere) {
		if (*upload_size > 0) {
			*upload_size = 0; /* read and dropped: the client sends it again */
			return MHD_YES;
		}
		return answer_and_close(conn, MHD_HTTP_TEMPORARY_REDIRECT,
					"this request is served on a connection of its own\n",
					st->uri);
	}
	if (*upload_size > 0) {
		/* Past the limit the rest is read and dropped, so that the answer
		 * can still be sent on this connection. */
		if (!st->too_large) {
			if (buf_append(&st->body, upload, *upload_size) < 0)
				return MHD_NO;
			st->too_large = st->body.truncated;
		}
		*upload_size = 0;
		return MHD_YES;
	}
	struct http_request req = {
	    .method = method,
	    .path = url,
	    .body = st->body.data ? st->body.data : "",
	    .body_len = st->too_large ? 0 : st->body.len,
	    .body_too_large = st->too_large,
	    .start_us = st->start_us,
	    .conn = conn,
	};
	client_ip(conn, req.client_ip, sizeof(req.client_ip));
	const union MHD_ConnectionInfo *fdi =
	    MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
	req.client_fd = fdi ? fdi->connect_fd : -1;
	MHD_get_connection_values_n(conn, MHD_GET_ARGUMENT_KIND, find_nul_arg, &req.nul_arg);
	struct http_response res = {.status = 500};
	srv->handler(srv->ctx, &req, &res);
	return respond(conn, &res);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
			 enum MHD_RequestTerminationCode toe)
{
	struct req_state *st = *con_cls;
	if (st) {
		buf_free(&st->body);
		free(st->uri);
		free(st);
		*con_cls = NULL;
	}
}

void http_mhd_adopt(struct http_server *srv, struct http_conn *conn)
{
	int fd = conn->fd;
	/* MHD owns the socket from here on, and may close it at any time. */
	http_conn_unlist(conn);
	if (MHD_add_connection(srv->mhd, fd, (const struct sockaddr *)&conn->addr, conn->addrlen) !=
	    MHD_YES)
		fprintf(stderr, "bunkerd: cannot serve a connection from %s: %s\n", conn->ip,
			strerror(errno));
	free(conn);
}

int http_server_start(const char *addr, int port, size_t max_body, http_handler handler, void *ctx,
		      const struct http_host_hooks *hosts, struct http_server **out,
		      struct bk_err *err)
{
	struct http_server *srv = calloc(1, sizeof(*srv));
	if (srv == NULL)
		return bk_err_set(err, ENOMEM, "cannot start HTTP server");
	srv->handler = handler;
	srv->ctx = ctx;
	srv->max_body = max_body;
	srv->listen_fd = -1;
	if (hosts) {
		srv->hosts = *hosts;
		srv->has_hosts = true;
	}
	pthread_mutex_init(&srv->lock, NULL);
	pthread_cond_init(&srv->drained, NULL);
	/* No socket of its own: the front door (http/accept.c) accepts, looks
	 * at the Host, and hands over what is the handler's. */
	unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION |
			 MHD_USE_POLL | MHD_USE_ERROR_LOG | MHD_USE_NO_LISTEN_SOCKET | MHD_USE_ITC;
	srv->mhd = MHD_start_daemon(
	    flags, 0, NULL, NULL, on_request, srv, MHD_OPTION_URI_LOG_CALLBACK, on_uri, srv,
	    MHD_OPTION_NOTIFY_CONNECTION, on_connection, srv, MHD_OPTION_NOTIFY_COMPLETED,
	    on_completed, srv, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)3600,
	    MHD_OPTION_CONNECTION_LIMIT, (unsigned)4096, MHD_OPTION_END);
	if (srv->mhd == NULL) {
		http_server_stop(srv);
		return bk_err_kind(err, BK_E_INTERNAL, "cannot start libmicrohttpd");
	}
	if (hosts && http_relay_start(srv, err) < 0) {
		http_server_stop(srv);
		return -1;
	}
	if (http_accept_start(srv, addr, port, err) < 0) {
		http_server_stop(srv);
		return -1;
	}
	*out = srv;
	return 0;
}

void http_server_stop(struct http_server *srv)
{
	if (srv == NULL)
		return;
	/* The front door first: once its threads are gone, nothing hands MHD
	 * a connection any more. */
	http_accept_stop(srv);
	http_relay_stop(srv);
	if (srv->mhd)
		MHD_stop_daemon(srv->mhd);
	pthread_cond_destroy(&srv->drained);
	pthread_mutex_destroy(&srv->lock);
	free(srv);
}

struct arg_check {
	bool (*ok)(const char *s);
	const char *bad;
};

static enum MHD_Result check_arg(void *cls, enum MHD_ValueKind kind, const char *key,
				 const char *value)
{
	struct arg_check *a = cls;
	if (!a->ok(key) || (value && !a->ok(value))) {
		a->bad = key;
		return MHD_NO;
	}
	return MHD_YES;
}

const char *http_query_find_invalid(const struct http_request *req, bool (*ok)(const char *s))
{
	struct arg_check a = {.ok = ok};
	MHD_get_connection_values(req->conn, MHD_GET_ARGUMENT_KIND, check_arg, &a);
	return a.bad;
}
