/* libmicrohttpd's side of the server: each request's body planned at its
 * head and then buffered, streamed or left unread (http/server.h), the
 * answers, and the phases of each connection for the guard. Connections
 * come from http/accept.c through MHD_add_connection(). */
#include "http/server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "http/http_int.h"
#include "util/util.h"

/* ---- bulk work at a lower priority ----
 *
 * A request that brings or takes more than HTTP_BULK_BYTES (a 99 MB JSON
 * bomb, a large upload or download, an answer of many MB) runs its bulk
 * work on its connection's thread at HTTP_BULK_NICE more than the
 * daemon's own priority: reading its body in, and sending its answer out.
 * On a host with few cores the small requests (every API call but
 * uploads and downloads), the front door and the guard then take the CPU
 * first, and bulk work still has whatever they leave. The handler runs
 * at the daemon's priority again (a sandbox it starts would inherit the
 * thread's), as does everything after the request ends. Only a daemon
 * that may raise a thread's priority back (root, or CAP_SYS_NICE) lowers
 * it (http_server_start() tries). */
#define HTTP_BULK_BYTES ((uint64_t)1 << 20)
#define HTTP_BULK_NICE 10

/* The connection thread's: whether it runs lowered, and its priority
 * before. Every call of one connection runs on its thread. */
static __thread bool bulk_on;
static __thread int bulk_was;

static void bulk_begin(const struct http_server *srv)
{
	if (bulk_on || !srv->bulk_nice)
		return;
	id_t tid = (id_t)gettid();
	errno = 0;
	int was = getpriority(PRIO_PROCESS, tid);
	if (errno != 0)
		return;
	int to = was + HTTP_BULK_NICE > 19 ? 19 : was + HTTP_BULK_NICE;
	if (setpriority(PRIO_PROCESS, tid, to) == 0) {
		bulk_on = true;
		bulk_was = was;
	}
}

static void bulk_end(void)
{
	if (!bulk_on)
		return;
	if (setpriority(PRIO_PROCESS, (id_t)gettid(), bulk_was) == 0)
		bulk_on = false;
}

/* Whether a thread of this process may be lowered and raised back: tried
 * on a thread of its own, which ends with whatever it got. */
static void *bulk_probe(void *arg)
{
	bool *ok = arg;
	id_t tid = (id_t)gettid();
	errno = 0;
	int was = getpriority(PRIO_PROCESS, tid);
	*ok = errno == 0 && was < 19 && setpriority(PRIO_PROCESS, tid, was + 1) == 0 &&
	      setpriority(PRIO_PROCESS, tid, was) == 0;
	return NULL;
}

static bool bulk_possible(void)
{
	bool ok = false;
	pthread_t t;
	if (pthread_create(&t, NULL, bulk_probe, &ok) != 0)
		return false;
	pthread_join(t, NULL);
	return ok;
}

/* Per-request state kept by MHD between the calls of one request. */
struct req_state {
	char *uri;	/* the request-target as sent */
	bool first;	/* the connection's first request */
	bool started;	/* on_request() has seen the request's head */
	bool elsewhere; /* for the relay: answered with a 307 once its body is read */
	bool planned;	/* ops.head() has run: done() is owed */
	struct http_body_plan plan;
	struct http_request req;  /* what the handler sees */
	struct http_response res; /* its answer, from the head on */
	struct http_mhd_conn *mc;
	/* The body: buffered, bytes taken (buffered or streamed), bytes read
	 * past the limit. */
	struct buf body;
	uint64_t taken, dropped;
	bool too_large;
	/* The plan's charge refused the body (as too_large, for its reason),
	 * or holds its declared length already. */
	enum budget_limit over_budget;
	bool reserved;
	size_t body_charged; /* of a body of unknown length: its buffer's size */
	bool refused;	     /* the sink's write() said -1 */
	bool sink_done;	     /* the sink's finish() has run */
};

/* A connection of MHD's: registered with the guard while its socket is
 * open. */
static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
			  enum MHD_ConnectionNotificationCode toe)
{
	struct http_server *srv = cls;
	struct http_mhd_conn *mc = *socket_context;
	if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
		mc = calloc(1, sizeof(*mc));
		if (mc == NULL)
			return;
		const union MHD_ConnectionInfo *fdi =
		    MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
		const union MHD_ConnectionInfo *ai =
		    MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
		mc->srv = srv;
		mc->fd = fdi ? fdi->connect_fd : -1;
		if (ai && ai->client_addr)
			http_client_of(ai->client_addr, &mc->client);
		http_guard_phase(mc, HTTP_PHASE_WAIT_HEAD);
		http_guard_add(srv, mc);
		*socket_context = mc;
		return;
	}
	if (mc == NULL)
		return;
	http_guard_remove(srv, mc);
	http_guard_closing(srv, mc);
	/* MHD closes the socket when this returns: after an answer that left
	 * the body unread, a copy of it lingers at the door. */
	if (atomic_load(&mc->linger) && mc->fd >= 0) {
		int fd = fcntl(mc->fd, F_DUPFD_CLOEXEC, 0);
		if (fd >= 0)
			http_door_linger(srv, fd, &mc->client);
	}
	free(mc);
	*socket_context = NULL;
}

/* MHD's first look at a request: its raw request-target (the url that
 * on_request() gets has lost its query), kept in the request's state. */
static void *on_uri(void *cls, const char *uri, struct MHD_Connection *conn)
{
	struct req_state *st = calloc(1, sizeof(*st));
	if (st == NULL)
		return NULL;
	const union MHD_ConnectionInfo *ci =
	    MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
	st->mc = ci ? ci->socket_context : NULL;
	st->first = st->mc == NULL || ++st->mc->requests == 1;
	st->uri = strdup(uri);
	if (st->uri == NULL) {
		free(st);
		return NULL;
	}
	st->req.start_us = mono_us();
	st->res.status = 500;
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
	res->stream_sized = false;
	res->stream_size = 0;
}

void http_response_stream_sized(struct http_response *res, int status, const char *content_type,
				uint64_t len, ssize_t (*read)(void *ctx, char *buf, size_t max),
				void (*free_ctx)(void *ctx), void *ctx)
{
	http_response_stream(res, status, content_type, read, free_ctx, ctx);
	res->stream_sized = true;
	res->stream_size = len;
}

struct stream_glue {
	ssize_t (*read)(void *ctx, char *buf, size_t max);
	void (*free_ctx)(void *ctx);
	void *ctx;
	const struct http_server *srv;
};

static ssize_t stream_cb(void *cls, uint64_t pos, char *buf, size_t max)
{
	struct stream_glue *g = cls;
	if (pos > HTTP_BULK_BYTES)
		bulk_begin(g->srv);
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
static enum MHD_Result respond(const struct http_server *srv, struct MHD_Connection *conn,
			       struct http_response *res)
{
	struct MHD_Response *r;
	if (res->stream_read) {
		struct stream_glue *g = malloc(sizeof(*g));
		if (g == NULL) {
			if (res->stream_free)
				res->stream_free(res->stream_ctx);
			res->stream_read = NULL;
			res->stream_free = NULL;
			return MHD_NO;
		}
		*g = (struct stream_glue){res->stream_read, res->stream_free, res->stream_ctx, srv};
		res->stream_read = NULL;
		res->stream_free = NULL;
		/* A body of known length (one passed on from a peer, a file)
		 * goes in larger blocks: fewer calls and sends per megabyte. */
		r = MHD_create_response_from_callback(
		    res->stream_sized ? res->stream_size : MHD_SIZE_UNKNOWN,
		    res->stream_sized ? 65536 : 16384, stream_cb, g, stream_free_cb);
		if (r == NULL) {
			stream_free_cb(g);
			return MHD_NO;
		}
	} else {
		if (res->len > HTTP_BULK_BYTES)
			bulk_begin(srv);
		r = MHD_create_response_from_buffer(res->len, res->body ? res->body : (char *)"",
						    MHD_RESPMEM_MUST_FREE);
		if (r == NULL)
			return MHD_NO; /* res->body is freed with the request */
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

/* ---- a request from its head to its answer ---- */

/* Fills st->req from the request's head. */
static void request_of(struct MHD_Connection *conn, struct req_state *st, const char *url,
		       const char *method)
{
	struct http_request *req = &st->req;
	req->method = method;
	req->path = url;
	req->target = st->uri;
	req->body = "";
	req->conn = conn;
	req->content_length = -1;
	const char *cl =
	    MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
	if (cl) {
		/* MHD has refused a malformed one (400) before this is asked. */
		unsigned long long v = strtoull(cl, NULL, 10);
		req->content_length = v > INT64_MAX ? INT64_MAX : (int64_t)v;
	}
	const char *te =
	    MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_TRANSFER_ENCODING);
	req->has_body = req->content_length > 0 || (te && req->content_length < 0);
	client_ip(conn, req->client_ip, sizeof(req->client_ip));
	const union MHD_ConnectionInfo *fdi =
	    MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
	req->client_fd = fdi ? fdi->connect_fd : -1;
	MHD_get_connection_values_n(conn, MHD_GET_ARGUMENT_KIND, find_nul_arg, &req->nul_arg);
}

/* Asks the handler how the request goes on; the server's outer bound on
 * buffering applies. */
static void plan(struct http_server *srv, struct req_state *st, struct http_response *res)
{
	srv->ops.head(srv->ops.ctx, &st->req, &st->plan, res);
	st->planned = true;
	if (st->plan.mode == HTTP_BODY_BUFFER && st->plan.limit > srv->limits.max_body)
		st->plan.limit = srv->limits.max_body;
	if (st->plan.mode == HTTP_BODY_STREAM && st->plan.sink == NULL)
		st->plan.mode = HTTP_BODY_BUFFER; /* a handler's bug: nowhere to stream to */
}

/* The handler's answer to a body that is in (or over the limit, or cut
 * short by the sink): handle() or the sink's finish(). */
static void conclude(struct http_server *srv, struct req_state *st, struct http_response *res)
{
	struct http_request *req = &st->req;
	bulk_end();
	if (st->plan.mode == HTTP_BODY_STREAM) {
		enum http_body_end end = st->too_large ? HTTP_BODY_TOO_LARGE
					 : st->refused ? HTTP_BODY_REFUSED
						       : HTTP_BODY_COMPLETE;
		st->sink_done = true;
		st->plan.sink->finish(st->plan.state, end, req, res);
		return;
	}
	bool dropped = st->too_large || st->over_budget != BUDGET_OK;
	req->body_too_large = st->too_large;
	req->body_over_budget = st->over_budget;
	req->body = st->body.data && !dropped ? st->body.data : "";
	req->body_len = dropped ? 0 : st->body.len;
	srv->ops.handle(srv->ops.ctx, req, st->plan.state, res);
}

/* Queues res, the handler's answer, and moves the guard's phase on. An
 * answer queued at the head leaves the body unread: MHD closes the
 * connection after it, and the socket lingers at the door. */
static enum MHD_Result answer(const struct http_server *srv, struct req_state *st,
			      struct MHD_Connection *conn, struct http_response *res, bool at_head)
{
	if (st->mc) {
		if (at_head)
			atomic_store(&st->mc->linger, true);
		http_guard_phase(st->mc, HTTP_PHASE_ANSWER);
	}
	/* Made already: held whatever the budget says, and the owner's next
	 * requests are refused while it is over (the handler's head asks). */
	if (st->planned && res->stream_read == NULL)
		budget_charge_owe(st->plan.charge, res->len);
	return respond(srv, conn, res);
}

/* At the head of a request that declares a body: its plan, and an answer
 * at once when the plan is one or the declared length is over the limit. */
static enum MHD_Result on_head(struct http_server *srv, struct req_state *st,
			       struct MHD_Connection *conn)
{
	plan(srv, st, &st->res);
	if (st->plan.mode == HTTP_BODY_ANSWER)
		return answer(srv, st, conn, &st->res, true);
	int64_t cl = st->req.content_length;
	/* A declared length is charged whole before a byte of it is read. */
	if (st->plan.mode == HTTP_BODY_BUFFER && cl > 0 && (uint64_t)cl <= st->plan.limit) {
		st->over_budget = budget_charge_take_all(st->plan.charge, (size_t)cl);
		st->reserved = st->over_budget == BUDGET_OK;
	}
	if ((cl >= 0 && (uint64_t)cl > st->plan.limit) || st->over_budget != BUDGET_OK) {
		st->too_large = st->over_budget == BUDGET_OK;
		if (st->mc)
			http_guard_phase(st->mc, HTTP_PHASE_HANDLER);
		conclude(srv, st, &st->res);
		return answer(srv, st, conn, &st->res, true);
	}
	/* A body buffered or dropped is read in as bulk work; a streamed one
	 * is not, as its sink may start a sandbox. */
	if (st->plan.mode == HTTP_BODY_BUFFER && cl > 0 && (uint64_t)cl > HTTP_BULK_BYTES)
		bulk_begin(srv);
	/* A declared length is reserved at once (pages are only touched as the
	 * bytes come), so the buffer never grows by copies. */
	buf_init(&st->body, st->plan.limit);
	if (st->plan.mode == HTTP_BODY_BUFFER && cl > 0) {
		st->body.data = malloc((size_t)cl + 1);
		if (st->body.data == NULL)
			return MHD_NO;
		st->body.cap = (size_t)cl + 1;
	}
	if (st->mc) {
		atomic_store(&st->mc->body_bytes, 0);
		atomic_store(&st->mc->paused_us, 0);
		http_guard_phase(st->mc, HTTP_PHASE_BODY);
	}
	return MHD_YES;
}

/* The next piece of a body: buffered, streamed, or (past the limit, or
 * refused by the sink) dropped. MHD_NO cuts the connection. */
static enum MHD_Result on_body(struct http_server *srv, struct req_state *st, const char *data,
			       size_t len)
{
	if (st->mc)
		atomic_fetch_add(&st->mc->body_bytes, len);
	if (!st->too_large && !st->refused && st->over_budget == BUDGET_OK &&
	    st->taken + len > st->plan.limit) {
		st->too_large = true;
		buf_free(&st->body);
	}
	/* A body of unknown length is charged as its buffer grows (by
	 * doubling: up to twice the bytes in it). */
	if (!st->too_large && !st->refused && st->over_budget == BUDGET_OK && !st->reserved &&
	    st->plan.mode == HTTP_BODY_BUFFER) {
		size_t cap = buf_cap_after(&st->body, len);
		if (cap > st->body_charged) {
			st->over_budget =
			    budget_charge_take_all(st->plan.charge, cap - st->body_charged);
			if (st->over_budget == BUDGET_OK)
				st->body_charged = cap;
		}
		if (st->over_budget != BUDGET_OK)
			buf_free(&st->body);
	}
	if (st->too_large || st->refused || st->over_budget != BUDGET_OK) {
		/* Read on so that the answer can still be given, but not for
		 * ever. */
		st->dropped += len;
		if (st->dropped > HTTP_BULK_BYTES)
			bulk_begin(srv);
		return st->dropped > srv->limits.max_body ? MHD_NO : MHD_YES;
	}
	st->taken += len;
	if (st->plan.mode == HTTP_BODY_STREAM) {
		struct http_mhd_conn *mc = st->mc;
		int64_t t0 = mono_us();
		if (mc)
			atomic_store(&mc->sink_since_us, t0);
		st->refused = st->plan.sink->write(st->plan.state, data, len) < 0;
		if (mc) {
			atomic_fetch_add(&mc->paused_us, mono_us() - t0);
			atomic_store(&mc->sink_since_us, 0);
		}
		return MHD_YES;
	}
	if (st->taken > HTTP_BULK_BYTES)
		bulk_begin(srv);
	return buf_append(&st->body, data, len) < 0 ? MHD_NO : MHD_YES;
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
		 * Host (past 16 KiB of head): a 307 would only loop. A request
		 * without a Host is the API's, as the front door would route
		 * it too. */
		const char *host = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Host");
		if (host && srv->has_hosts &&
		    srv->hosts.route(srv->hosts.ctx, host, st->uri) != HTTP_ROUTE_API) {
			if (st->first)
				return answer_and_close(conn, MHD_HTTP_BAD_REQUEST,
							"this request is for a preview, but its "
							"Host header did not come within the first "
							"16 KiB of its head\n",
							NULL);
			st->elsewhere = true;
			return MHD_YES;
		}
		request_of(conn, st, url, method);
		/* A request without a body is planned with its answer, so that
		 * an answer from the plan keeps the connection. */
		return st->req.has_body ? on_head(srv, st, conn) : MHD_YES;
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
		enum MHD_Result r = on_body(srv, st, upload, *upload_size);
		*upload_size = 0;
		return r;
	}
	if (!st->planned) {
		plan(srv, st, &st->res);
		if (st->plan.mode == HTTP_BODY_ANSWER)
			return answer(srv, st, conn, &st->res, false);
	}
	if (st->mc)
		http_guard_phase(st->mc, HTTP_PHASE_HANDLER);
	conclude(srv, st, &st->res);
	return answer(srv, st, conn, &st->res, false);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
			 enum MHD_RequestTerminationCode toe)
{
	struct http_server *srv = cls;
	struct req_state *st = *con_cls;
	bulk_end();
	if (st == NULL)
		return;
	if (st->planned && st->plan.mode == HTTP_BODY_STREAM && !st->sink_done) {
		/* The client left, or was cut off, inside the body. */
		st->sink_done = true;
		st->plan.sink->finish(st->plan.state, HTTP_BODY_CLIENT_GONE, &st->req, &st->res);
		if (st->res.stream_free)
			st->res.stream_free(st->res.stream_ctx);
	}
	if (st->planned && srv->ops.done)
		srv->ops.done(srv->ops.ctx, st->plan.state);
	/* What the kernel still holds of the answers stays charged. */
	if (st->mc)
		http_guard_queued(srv, st->mc, st->plan.charge);
	else
		budget_charge_release(st->plan.charge);
	if (st->mc && toe == MHD_REQUEST_TERMINATED_TIMEOUT_REACHED)
		atomic_store(&st->mc->timed_out, true);
	if (st->mc) {
		atomic_fetch_add(&st->mc->answered, 1);
		http_guard_phase(st->mc, HTTP_PHASE_WAIT_HEAD);
	}
	free(st->res.body);
	buf_free(&st->body);
	free(st->uri);
	free(st);
	*con_cls = NULL;
}

void http_mhd_adopt(struct http_server *srv, struct http_conn *conn)
{
	int fd = conn->fd;
	/* MHD owns the socket from here on, and may close it at any time. */
	if (MHD_add_connection(srv->mhd, fd, (const struct sockaddr *)&conn->addr, conn->addrlen) !=
	    MHD_YES)
		fprintf(stderr, "bunkerd: cannot serve a connection from %s: %s\n", conn->ip,
			strerror(errno));
	free(conn);
}

int http_server_start(const char *addr, int port, const struct http_limits *limits,
		      const struct http_handler_ops *ops, const struct http_host_hooks *hosts,
		      struct http_server **out, struct bk_err *err)
{
	struct http_server *srv = calloc(1, sizeof(*srv));
	if (srv == NULL)
		return bk_err_set(err, ENOMEM, "cannot start HTTP server");
	srv->ops = *ops;
	srv->limits = *limits;
	srv->listen_fd = srv->epoll_fd = srv->wake_fd = -1;
	srv->bulk_nice = bulk_possible();
	if (hosts) {
		srv->hosts = *hosts;
		srv->has_hosts = true;
	}
	pthread_mutex_init(&srv->lock, NULL);
	pthread_cond_init(&srv->drained, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&srv->guard_wake, &ca);
	pthread_condattr_destroy(&ca);
	/* No socket of its own: the front door (http/accept.c) accepts, looks
	 * at the Host, and hands over what is the handler's. The connection
	 * timeout is an idle one, for reading and writing alike: a stalled
	 * reader is cut after it too. */
	unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION |
			 MHD_USE_POLL | MHD_USE_ERROR_LOG | MHD_USE_NO_LISTEN_SOCKET | MHD_USE_ITC;
	srv->mhd = MHD_start_daemon(
	    flags, 0, NULL, NULL, on_request, srv, MHD_OPTION_URI_LOG_CALLBACK, on_uri, srv,
	    MHD_OPTION_NOTIFY_CONNECTION, on_connection, srv, MHD_OPTION_NOTIFY_COMPLETED,
	    on_completed, srv, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)limits->idle_timeout_s,
	    MHD_OPTION_CONNECTION_LIMIT, (unsigned)HTTP_MHD_CONN_MAX + 256, MHD_OPTION_END);
	if (srv->mhd == NULL) {
		http_server_stop(srv);
		return bk_err_kind(err, BK_E_INTERNAL, "cannot start libmicrohttpd");
	}
	if ((hosts && http_relay_start(srv, err) < 0) || http_guard_start(srv, err) < 0 ||
	    http_accept_start(srv, addr, port, err) < 0) {
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
	/* The front door first: once its thread is gone, nothing hands MHD a
	 * connection any more. */
	http_accept_stop(srv);
	http_relay_stop(srv);
	http_guard_stop(srv);
	if (srv->mhd)
		MHD_stop_daemon(srv->mhd);
	if (srv->epoll_fd >= 0)
		close(srv->epoll_fd);
	if (srv->wake_fd >= 0)
		close(srv->wake_fd);
	http_clients_clear(srv);
	pthread_cond_destroy(&srv->guard_wake);
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
