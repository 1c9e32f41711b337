/* The relay of previews: one upstream connection per client connection,
 * bytes moved both ways as they come.
 *
 * Client to upstream, the stream is parsed (http/proxy.h) to rewrite each
 * request head and to know where bodies end; upstream to client, bytes are
 * passed through untouched and unbuffered, so streamed answers (Server-Sent
 * Events) arrive as they are produced and an upgraded connection
 * (WebSocket) is a plain two-way pipe. Both sockets are non-blocking and
 * every buffer is bounded: a side that does not read stops the other side
 * from being read, never anything else.
 *
 * The connection's own thread opens the upstream (which may wake a
 * session) and releases it at the end; in between, the bytes are moved by
 * the workers of http/relay_pool.c, one round (http__relay_step()) each
 * time a socket is ready.
 *
 * The connection ends when the client is done (it half-closed, or a
 * request of its was refused) and every answer it asked for has been
 * delivered (answers are not changed, but their framing is read: see
 * struct proxy_answers), when the upstream closes (after what it sent was
 * delivered), after PROXY_IDLE_MS without a byte either way (an upgraded
 * connection has no such limit: TCP keepalive finds dead peers), or when
 * the upstream is taken away under it (the session was deleted) or the
 * client socket shut down (the server stops). */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "http/http_int.h"
#include "http/proxy.h"
#include "http/relay.h"
#include "util/util.h"

/* A connection with no byte either way for this long is closed (nginx's
 * proxy_read_timeout is 60 s; a preview may compute longer). */
#define PROXY_IDLE_MS (300 * 1000)
/* A final answer of ours is followed by reading (and dropping) what the
 * client still sends, so that closing does not reset the connection
 * under the answer. */
#define LINGER_MS 2000
#define LINGER_BYTES (1u << 20)
#define SEND_TIMEOUT_MS 10000
/* After a request cut short (refused inside its body): how long the app
 * may take to finish what it is writing once told that nothing more
 * comes. */
#define DRAIN_MS 1000

/* ---- sockets ---- */

static const char *reason(int status)
{
	switch (status) {
	case 400:
		return "Bad Request";
	case 307:
		return "Temporary Redirect";
	case 404:
		return "Not Found";
	case 431:
		return "Request Header Fields Too Large";
	case 502:
		return "Bad Gateway";
	case 503:
		return "Service Unavailable";
	case 504:
		return "Gateway Timeout";
	default:
		return "Error";
	}
}

/* send() of all of buf on a non-blocking socket, waiting at most
 * SEND_TIMEOUT_MS for room. */
static int send_all(int fd, const char *buf, size_t len)
{
	int64_t deadline = mono_us() + (int64_t)SEND_TIMEOUT_MS * 1000;
	while (len > 0) {
		ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
		if (n > 0) {
			buf += n;
			len -= (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
			return -1;
		int left = (int)((deadline - mono_us()) / 1000);
		struct pollfd pf = {.fd = fd, .events = POLLOUT};
		if (left <= 0 || (poll(&pf, 1, left) < 0 && errno != EINTR))
			return -1;
	}
	return 0;
}

/* Sends res as the connection's last answer (with a Location when location
 * is not NULL), then lingers: reads what the client still sends (within
 * bounds) so that the close does not reset the connection before the
 * answer is read. */
static void answer_and_close(int fd, const char *method, const struct http_response *res,
			     const char *location)
{
	char head[2048 + PROXY_LOCATION_MAX];
	int n =
	    snprintf(head, sizeof(head),
		     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
		     "Cache-Control: no-store\r\nConnection: close\r\n",
		     res->status, reason(res->status),
		     res->content_type ? res->content_type : "text/plain; charset=utf-8", res->len);
	if (location)
		n += snprintf(head + n, sizeof(head) - (size_t)n, "Location: %s\r\n", location);
	for (int i = 0; i < res->n_headers && n < (int)sizeof(head) - 2048; i++)
		n += snprintf(head + n, sizeof(head) - (size_t)n, "%s: %s\r\n",
			      res->headers[i].name, res->headers[i].value);
	n += snprintf(head + n, sizeof(head) - (size_t)n, "\r\n");
	bool head_only = strcmp(method, "HEAD") == 0;
	if (send_all(fd, head, (size_t)n) < 0 ||
	    (!head_only && res->len > 0 && send_all(fd, res->body, res->len) < 0))
		return;
	shutdown(fd, SHUT_WR);
	int64_t deadline = mono_us() + (int64_t)LINGER_MS * 1000;
	size_t dropped = 0;
	char sink[4096];
	while (dropped < LINGER_BYTES) {
		int left = (int)((deadline - mono_us()) / 1000);
		struct pollfd pf = {.fd = fd, .events = POLLIN};
		if (left <= 0 || poll(&pf, 1, left) <= 0)
			break;
		ssize_t r = recv(fd, sink, sizeof(sink), 0);
		if (r < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (r <= 0)
			break;
		dropped += (size_t)r;
	}
}

static void set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);
	if (fl >= 0)
		fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

/* A client that vanishes without a FIN (a laptop closed) is found by TCP
 * keepalive within about two minutes, WebSockets included. */
static void keepalive(int fd)
{
	int one = 1, idle = 60, intvl = 10, cnt = 6;
	setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
}

/* Outcome of one I/O attempt. */
enum io { IO_DONE, IO_AGAIN, IO_EOF, IO_ERROR };

static enum io io_recv(int fd, char *buf, size_t cap, size_t *len)
{
	for (;;) {
		ssize_t n = recv(fd, buf + *len, cap - *len, 0);
		if (n > 0) {
			*len += (size_t)n;
			return IO_DONE;
		}
		if (n == 0)
			return IO_EOF;
		if (errno == EINTR)
			continue;
		return errno == EAGAIN || errno == EWOULDBLOCK ? IO_AGAIN : IO_ERROR;
	}
}

static enum io io_send(int fd, const char *buf, size_t *off, size_t *len)
{
	while (*off < *len) {
		ssize_t n = send(fd, buf + *off, *len - *off, MSG_NOSIGNAL);
		if (n > 0) {
			*off += (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) ? IO_AGAIN : IO_ERROR;
	}
	*off = *len = 0;
	return IO_DONE;
}

/* ---- one round ---- */

/* Parses what the client sent into bytes for the upstream. */
static void relay_parse(struct relay *r)
{
	if (r->out_off == r->out_len)
		r->out_off = r->out_len = 0;
	else if (r->out_off > 0 && RELAY_OUT_CAP - r->out_len < PROXY_OUT_MIN / 2) {
		memmove(r->out, r->out + r->out_off, r->out_len - r->out_off);
		r->out_len -= r->out_off;
		r->out_off = 0;
	}
	int heads = 0;
	int rc =
	    proxy_parse(&r->parser, r->in, &r->in_len, r->out, &r->out_len, RELAY_OUT_CAP, &heads);
	for (int i = 0; i < heads && r->up.on_request; i++)
		r->up.on_request(r->up.ctx);
	/* A request for elsewhere is sent there again on a connection of its
	 * own (see http_proxy_serve()), or, with nowhere to send it, ends the
	 * connection unanswered. */
	if (rc == PROXY_OTHER_HOST && r->parser.location[0])
		r->refuse = 307;
	else if (rc != PROXY_OK && rc != PROXY_OTHER_HOST)
		r->refuse = rc;
}

/* Takes what rev[] says is ready: the client's bytes into in, the
 * upstream's into down once it is empty. -1 when the client's side
 * failed. */
static int relay_read(struct relay *r, const uint32_t rev[2], int64_t now)
{
	/* The client is always watched: a hang-up there (it reset the
	 * connection, or the server is stopping) ends the relay. */
	if (rev[0] & (EPOLLERR | EPOLLHUP))
		return -1;
	if (rev[0] & EPOLLIN) {
		enum io rd = io_recv(r->c, r->in, RELAY_IN_CAP, &r->in_len);
		if (rd == IO_ERROR)
			return -1;
		if (rd == IO_EOF && r->phase == RELAY_OPEN)
			r->phase = RELAY_CLIENT_DONE;
		if (rd == IO_DONE)
			r->last_io_us = now;
	}
	if (rev[1] & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
		if (r->down_len == r->down_off) {
			r->down_off = r->down_len = 0;
			enum io rd = io_recv(r->u, r->down, RELAY_DOWN_CAP, &r->down_len);
			if (rd == IO_ERROR || rd == IO_EOF) {
				r->u_eof = true;
				proxy_answers_eof(&r->answers);
			}
			if (rd == IO_DONE) {
				r->last_io_us = now;
				proxy_answers_scan(&r->answers, r->down, r->down_len);
			}
		} else {
			/* Its hang-up would be reported again and again while
			 * the client takes its time: left out of the set and
			 * looked at on the worker's rounds instead. */
			r->u_hup = true;
		}
	}
	return 0;
}

/* Parses what the client sent and writes what is pending both ways. -1
 * when a write failed. */
static int relay_write(struct relay *r, int64_t now)
{
	for (;;) {
		relay_parse(r);
		/* Write what is pending at once: most of the time there is
		 * room, and a round of waiting is saved. */
		if (r->out_len > r->out_off) {
			enum io w = io_send(r->u, r->out, &r->out_off, &r->out_len);
			if (w == IO_ERROR)
				return -1;
			if (w == IO_DONE) {
				r->last_io_us = now;
				/* Room again: what the client sent meanwhile
				 * can be parsed before waiting for more. */
				if (r->in_len > 0 && r->parser.st != PROXY_STOP)
					continue;
			}
		}
		break;
	}
	if (r->down_len > r->down_off) {
		enum io w = io_send(r->c, r->down, &r->down_off, &r->down_len);
		if (w == IO_ERROR)
			return -1;
		if (w == IO_DONE)
			r->last_io_us = now;
	}
	/* A request refused: nothing more is read. */
	if (r->phase == RELAY_OPEN && r->parser.st == PROXY_STOP)
		r->phase = RELAY_CLIENT_DONE;
	return 0;
}

/* Whether a request was left half sent (refused inside its body, or its
 * client gone inside it): it will never be whole, so its answer is not
 * waited for, and the app learns the end by a half-close, as it does where
 * answers cannot be told apart (a tunnel, an app that is not HTTP as
 * expected). An answer that runs until the app closes is simply waited
 * for. */
static bool relay_cut_short(const struct relay *r)
{
	enum proxy_state pst = r->parser.st;
	if (pst == PROXY_STOP)
		return r->parser.cut_short;
	return r->phase != RELAY_OPEN && pst != PROXY_HEAD && pst != PROXY_RAW &&
	       pst != PROXY_UPGRADE_WAIT;
}

/* The phases' rules (enum relay_phase), once the round's bytes have
 * moved: RELAY_WAIT to go on, or how the relay ends. */
static enum relay_outcome relay_advance(struct relay *r, int64_t now)
{
	const struct proxy_answers *a = &r->answers;
	bool up_done = r->phase != RELAY_OPEN && r->out_len == r->out_off;
	bool down_done = r->down_len == r->down_off;
	bool cut_short = relay_cut_short(r);
	/* Past RELAY_OPEN, once what was parsed went up: the end comes
	 * between two answers, once every answer asked for has been
	 * delivered, and never inside one: an app may still be writing one
	 * (apps such as Bun close at once when told the client is done, so
	 * the upstream is not told). */
	if (up_done && !cut_short && proxy_answers_settled(a) && down_done)
		return r->refuse ? RELAY_REFUSE : RELAY_END;
	/* RELAY_CLIENT_DONE: the upstream is told only where its answers
	 * cannot be waited for. */
	if (up_done && r->phase == RELAY_CLIENT_DONE &&
	    (a->st == PROXY_A_TUNNEL || a->st == PROXY_A_LOST || cut_short)) {
		shutdown(r->u, SHUT_WR);
		r->phase = cut_short ? RELAY_DRAINING : RELAY_UP_SHUT;
		if (cut_short)
			r->drain_until_us = now + (int64_t)DRAIN_MS * 1000;
	}
	/* Any phase: the upstream closed, or (RELAY_DRAINING) its time to
	 * finish is over, and what it sent has been delivered. A refusal of
	 * ours goes out between answers, when only the request cut short (if
	 * any) is unanswered, and never after an answer that ended by the
	 * app's closing: the client would read it as part of that answer's
	 * body. */
	bool drained = r->phase == RELAY_DRAINING && now >= r->drain_until_us;
	if ((r->u_eof || drained) && down_done) {
		bool may_refuse =
		    proxy_answers_between(a) && a->n == (cut_short ? 1u : 0u) && !a->by_close;
		return r->refuse && may_refuse ? RELAY_REFUSE : RELAY_END;
	}
	if (down_done)
		r->u_hup = false;
	return RELAY_WAIT;
}

/* What r waits for next: the events in want[], and r->deadline_us (the
 * idle limit, the end of a drain). RELAY_END once idle for too long. */
static enum relay_outcome relay_wait(struct relay *r, uint32_t want[2], int64_t now)
{
	r->deadline_us = 0;
	if (r->parser.st != PROXY_RAW) {
		int64_t idle_end = r->last_io_us + (int64_t)PROXY_IDLE_MS * 1000;
		if (now >= idle_end)
			return RELAY_END;
		r->deadline_us = idle_end;
	}
	if (r->phase == RELAY_DRAINING &&
	    (r->deadline_us == 0 || r->drain_until_us < r->deadline_us))
		r->deadline_us = r->drain_until_us;
	want[0] = want[1] = 0;
	if (r->phase == RELAY_OPEN && r->in_len < RELAY_IN_CAP)
		want[0] |= EPOLLIN;
	if (r->down_len > r->down_off)
		want[0] |= EPOLLOUT;
	if (!r->u_eof && r->down_len == r->down_off)
		want[1] |= EPOLLIN;
	if (r->out_len > r->out_off)
		want[1] |= EPOLLOUT;
	return RELAY_WAIT;
}

enum relay_outcome http__relay_step(struct relay *r, const uint32_t rev[2], uint32_t want[2],
				    int64_t now)
{
	if (r->up.cancelled && r->up.cancelled(r->up.ctx))
		return RELAY_END;
	if (relay_read(r, rev, now) < 0 || relay_write(r, now) < 0)
		return RELAY_END;
	enum relay_outcome o = relay_advance(r, now);
	return o != RELAY_WAIT ? o : relay_wait(r, want, now);
}

/* ---- a relayed connection's own thread ---- */

static void conn_end(struct http_conn *conn)
{
	http_conn_unlist(conn);
	close(conn->fd);
	free(conn);
}

void http_proxy_serve(struct http_conn *conn)
{
	struct http_server *srv = conn->srv;
	struct http_response res = {.status = 502};
	struct http_upstream up = {.fd = -1};
	if (srv->hosts.open(srv->hosts.ctx, conn->host, conn->target,
			    conn->has_hop ? conn->hop : NULL, &up, &res) < 0) {
		set_nonblock(conn->fd);
		answer_and_close(conn->fd, conn->method, &res, NULL);
		free(res.body);
		conn_end(conn);
		return;
	}
	free(res.body);
	struct relay *r = calloc(1, sizeof(*r));
	if (r == NULL) {
		up.release(up.ctx);
		conn_end(conn);
		return;
	}
	r->conn = conn;
	r->up = up;
	r->c = conn->fd;
	r->u = up.fd;
	r->parser = (struct proxy_parser){
	    .host = conn->host,
	    .client_ip = conn->ip,
	    .proto = up.proto ? up.proto : "http",
	    .prefix = up.prefix,
	    .answers = &r->answers,
	    .key_prefix = up.key_prefix,
	    .hop_name = srv->hosts.hop_name,
	    .hop_line = up.hop_line,
	};
	r->last_io_us = mono_us();
	pthread_mutex_init(&r->done_lock, NULL);
	pthread_cond_init(&r->done_cond, NULL);
	set_nonblock(r->c);
	set_nonblock(r->u);
	keepalive(r->c);
	int one = 1;
	setsockopt(r->u, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	bool refused = http__relay_hand_over(srv->relays, r);
	r->up.release(r->up.ctx);
	if (refused) {
		/* A 307 sends a request that is not this connection's (another
		 * session, or the API) to the same place again: clients follow
		 * it with the same method and body, on a new connection, which
		 * the front door routes. */
		struct http_response err = {.status = r->refuse};
		char body[64];
		int bl = snprintf(body, sizeof(body), "%d %s\n", r->refuse, reason(r->refuse));
		err.body = body;
		err.len = (size_t)bl;
		answer_and_close(r->c, "GET", &err, r->refuse == 307 ? r->parser.location : NULL);
	}
	pthread_cond_destroy(&r->done_cond);
	pthread_mutex_destroy(&r->done_lock);
	free(r);
	conn_end(conn);
}
