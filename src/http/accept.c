/* The front door: accepts connections, holds each one until its first
 * request head is in, looks at that head's Host and target without
 * reading it (MSG_PEEK), and hands the connection to libmicrohttpd (the
 * API) or to the relay (previews).
 *
 * Why in front of MHD and not inside it: a preview is a raw HTTP/1.1 byte
 * stream (chunked bodies of any size, answers streamed as they come,
 * WebSocket upgrades), which MHD's request/response model would buffer or
 * refuse; MHD has no way to give a connection back. So the decision is
 * made before MHD sees a byte: the bytes stay in the socket, and MHD (fed
 * through MHD_add_connection()) reads them as if it had accepted the
 * connection itself.
 *
 * Why one thread with an epoll set, not a thread per connection: a
 * connection that has sent nothing yet costs its descriptor and a few KiB
 * here, so thousands of idle ones (a flood needs no key) hold no thread
 * and cannot fill libmicrohttpd's table. Each must bring its head within
 * limits.head_timeout_s (408 and closed otherwise); when HTTP_DOOR_WAIT_MAX
 * wait, the oldest is closed to make room, so a client that sends its head
 * at once always gets in. A client address holds at most
 * limits.max_conns_per_client connections in all (waiting, served or
 * relayed). A relayed connection gets a thread of its own (the upstream
 * may wake a sleeping session), libmicrohttpd gives one to each of its.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "http/http_int.h"
#include "util/util.h"

/* How much of a first request head the door looks at. A longer head goes
 * to MHD as it is, which answers it (431) or reads it on under the
 * guard's head deadline. */
#define PEEK_MAX (16 * 1024)
#define ACCEPT_BATCH 64
#define EVENTS_MAX 64
/* After an answer that left a body unread: how long and how much of what
 * the client still sends is read and dropped before the socket closes. */
#define LINGER_MS 2000
#define LINGER_BYTES (1u << 20)
/* Out of descriptors: accepting pauses this long (the backlog waits). */
#define ACCEPT_PAUSE_MS 100
/* A relayed connection thread's stack: the relay keeps its buffers on the heap. */
#define CONN_STACK (2u << 20)
/* Refusals are summed up in the log at most this often. */
#define DOOR_LOG_EVERY_US (10 * 1000 * 1000)

/* What the door's thread keeps for itself. */
struct door {
	struct http_server *srv;
	char peek[PEEK_MAX];
	pthread_attr_t relay_attr;
	int64_t accept_paused_until_us; /* 0: accepting */
	long refused_client, refused_full, timed_out, evicted;
	int64_t logged_us;
	/* Closed while events of this round may still point at them: freed
	 * once the round is over. */
	struct http_conn *dead;
};

/* ---- the relayed connections' list ---- */

static void conn_list(struct http_server *srv, struct http_conn *c)
{
	c->next = srv->conns;
	c->prev = NULL;
	if (srv->conns)
		srv->conns->prev = c;
	srv->conns = c;
	c->listed = true;
}

void http_conn_unlist(struct http_conn *c)
{
	struct http_server *srv = c->srv;
	pthread_mutex_lock(&srv->lock);
	if (c->listed) {
		if (c->prev)
			c->prev->next = c->next;
		else
			srv->conns = c->next;
		if (c->next)
			c->next->prev = c->prev;
		c->listed = false;
	}
	pthread_mutex_unlock(&srv->lock);
}

/* ---- the waiting list (door thread only) ---- */

static void wait_push(struct http_server *srv, struct http_conn *c)
{
	c->wnext = NULL;
	c->wprev = srv->wait_tail;
	if (srv->wait_tail)
		srv->wait_tail->wnext = c;
	else
		srv->wait_head = c;
	srv->wait_tail = c;
	srv->n_waiting++;
}

static void wait_remove(struct http_server *srv, struct http_conn *c)
{
	if (c->wprev)
		c->wprev->wnext = c->wnext;
	else
		srv->wait_head = c->wnext;
	if (c->wnext)
		c->wnext->wprev = c->wprev;
	else
		srv->wait_tail = c->wprev;
	srv->n_waiting--;
}

/* A short answer on a socket that then closes; not waited for. Whether it
 * went whole into the socket. */
static bool say_only(int fd, const char *status, const char *extra, const char *text)
{
	char msg[512];
	int n = snprintf(msg, sizeof(msg),
			 "HTTP/1.1 %s\r\nContent-Type: text/plain; charset=utf-8\r\n"
			 "Content-Length: %zu\r\n%sConnection: close\r\n\r\n%s",
			 status, strlen(text), extra, text);
	return send(fd, msg, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL) == n;
}

/* The same, its end marked at once (a FIN follows it). */
static void say(int fd, const char *status, const char *extra, const char *text)
{
	if (say_only(fd, status, extra, text))
		shutdown(fd, SHUT_WR);
}

/* Closes fd with a reset rather than a FIN: the kernel frees the socket
 * at once, with no FIN_WAIT or TIME_WAIT behind it and one packet to the
 * peer instead of four. For the connections refused past an address's
 * limit, which a flood from one address brings by the thousand a second:
 * each TIME_WAIT left behind is a socket more in the kernel's tables that
 * every later connection is looked up among. What was sent just before
 * still reaches the peer, ahead of the reset. (Idle connections evicted
 * or timed out are closed as before: reset, they were redialled faster,
 * and bench/hostile's "idle-4200" saw honest connects wait 1-2 s.) */
static void close_reset(int fd)
{
	struct linger lg = {.l_onoff = 1, .l_linger = 0};
	setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(fd);
}

/* Closes a waiting connection (its slot given back); freed by reap(). */
static void wait_close(struct door *d, struct http_conn *c)
{
	wait_remove(d->srv, c);
	/* Out of the set first: a copy of the descriptor elsewhere (a
	 * sandbox being cloned) would keep the registration alive. */
	epoll_ctl(d->srv->epoll_fd, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	http_client_release(d->srv, &c->client);
	c->kind = HTTP_DOOR_DEAD;
	c->wnext = d->dead;
	d->dead = c;
}

static void reap(struct door *d)
{
	while (d->dead) {
		struct http_conn *c = d->dead;
		d->dead = c->wnext;
		free(c);
	}
}

/* ---- looking at the request head ---- */

int http__head_scan(const char *buf, size_t len, char *host, size_t hostlen, char *method,
		    size_t methodlen, char *target, size_t targetlen, const char *hop_name,
		    char *hop, size_t hoplen, bool *has_hop)
{
	size_t hnl = hop_name ? strlen(hop_name) : 0;
	*has_hop = false;
	const char *end = buf + len;
	const char *nl = memchr(buf, '\n', len);
	if (nl == NULL)
		return -1;
	size_t ml = strcspn(buf, " \r\n");
	if (ml < (size_t)(nl - buf)) {
		snprintf(method, methodlen, "%.*s", (int)(ml < methodlen ? ml : methodlen - 1),
			 buf);
		const char *t = buf + ml + 1;
		size_t tl = strcspn(t, " \r\n");
		if (t + tl > nl)
			tl = (size_t)(nl - t);
		snprintf(target, targetlen, "%.*s", (int)(tl < targetlen ? tl : targetlen - 1), t);
	}
	bool found = false, bad = false;
	host[0] = '\0';
	for (const char *line = nl + 1; line < end;) {
		const char *eol = memchr(line, '\n', (size_t)(end - line));
		if (eol == NULL)
			return -1;
		size_t n = (size_t)(eol - line);
		if (n > 0 && line[n - 1] == '\r')
			n--;
		if (n == 0)
			return found && !bad ? 1 : 0; /* the end of the head */
		if (n > 5 && strncasecmp(line, "host:", 5) == 0 && !found) {
			const char *v = line + 5, *ve = line + n;
			while (v < ve && (*v == ' ' || *v == '\t'))
				v++;
			while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
				ve--;
			size_t vl = (size_t)(ve - v);
			found = true;
			bad = vl == 0 || vl >= hostlen || memchr(v, '\0', vl);
			if (!bad) {
				memcpy(host, v, vl);
				host[vl] = '\0';
			}
		}
		if (hnl && n > hnl && strncasecmp(line, hop_name, hnl) == 0 && line[hnl] == ':') {
			const char *v = line + hnl + 1, *ve = line + n;
			while (v < ve && (*v == ' ' || *v == '\t'))
				v++;
			while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
				ve--;
			/* Kept as sent, cut to fit: whoever reads it compares
			 * it whole (a cut one does not match). */
			snprintf(hop, hoplen, "%.*s", (int)(ve - v), v);
			*has_hop = true;
		}
		line = eol + 1;
	}
	return -1;
}

static void set_rcvlowat(int fd, int n)
{
	setsockopt(fd, SOL_SOCKET, SO_RCVLOWAT, &n, sizeof(n));
}

/* ---- handing a connection on ---- */

static void thread_done(struct http_server *srv)
{
	pthread_mutex_lock(&srv->lock);
	if (--srv->n_threads == 0)
		pthread_cond_broadcast(&srv->drained);
	pthread_mutex_unlock(&srv->lock);
}

static void *relay_main(void *arg)
{
	struct http_conn *conn = arg;
	struct http_server *srv = conn->srv;
	struct http_client client = conn->client;
	http_proxy_serve(conn); /* closes and frees conn */
	http_client_release(srv, &client);
	thread_done(srv);
	return NULL;
}

static void relay_start(struct door *d, struct http_conn *conn)
{
	struct http_server *srv = d->srv;
	pthread_mutex_lock(&srv->lock);
	bool refuse = srv->stopping || srv->n_threads >= HTTP_RELAY_CONN_MAX;
	if (!refuse) {
		conn_list(srv, conn);
		srv->n_threads++;
	}
	pthread_mutex_unlock(&srv->lock);
	pthread_t t;
	int e = refuse ? EAGAIN : pthread_create(&t, &d->relay_attr, relay_main, conn);
	if (e == 0)
		return;
	if (!refuse) {
		fprintf(stderr, "bunkerd: cannot start a connection thread: %s\n", strerror(e));
		http_conn_unlist(conn);
		thread_done(srv);
	}
	d->refused_full++;
	say(conn->fd, "503 Service Unavailable", "Retry-After: 1\r\n", "the server is full\n");
	close(conn->fd);
	http_client_release(srv, &conn->client);
	free(conn);
}

/* conn's first head is in (or will not come whole): off the waiting list
 * to the relay or to libmicrohttpd. */
static void dispatch(struct door *d, struct http_conn *conn, int found)
{
	struct http_server *srv = d->srv;
	wait_remove(srv, conn);
	epoll_ctl(srv->epoll_fd, EPOLL_CTL_DEL, conn->fd, NULL);
	if (conn->have > 0)
		set_rcvlowat(conn->fd, 1);
	/* Only now: a connection that never gets this far (a flood's) costs
	 * one system call less. */
	int one = 1;
	setsockopt(conn->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (found > 0 && srv->has_hosts &&
	    srv->hosts.route(srv->hosts.ctx, conn->host, conn->target) == HTTP_ROUTE_RELAY)
		return relay_start(d, conn);
	if (!http_guard_make_room(srv)) {
		d->refused_full++;
		say(conn->fd, "503 Service Unavailable", "Retry-After: 1\r\n",
		    "the server is full\n");
		close(conn->fd);
		http_client_release(srv, &conn->client);
		free(conn);
		return;
	}
	/* libmicrohttpd counts the connection from its start on. */
	http_client_release(srv, &conn->client);
	http_mhd_adopt(srv, conn);
}

/* One look at a waiting connection's head: handed on once it is whole,
 * too long to wait for, or will grow no more (an end of file after part
 * of a head); closed when the client left without a byte. */
static void peek_step(struct door *d, struct http_conn *conn)
{
	ssize_t n = recv(conn->fd, d->peek, PEEK_MAX, MSG_PEEK | MSG_DONTWAIT);
	if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK))
		return;
	if (n <= 0 && conn->have == 0)
		return wait_close(d, conn);
	if (n <= 0)
		return dispatch(d, conn, 0);
	int r = http__head_scan(d->peek, (size_t)n, conn->host, sizeof(conn->host), conn->method,
				sizeof(conn->method), conn->target, sizeof(conn->target),
				d->srv->has_hosts ? d->srv->hosts.hop_name : NULL, conn->hop,
				sizeof(conn->hop), &conn->has_hop);
	/* No progress after a wake-up: the client has finished sending (an
	 * end of file after a partial head). A head too long to wait for goes
	 * by its Host if that came (the relay takes heads of up to 32 KiB). */
	if (r >= 0 || n == PEEK_MAX || n == conn->have) {
		conn->have = (int)n;
		return dispatch(d, conn, r >= 0 ? r : conn->host[0] != '\0');
	}
	conn->have = (int)n;
	/* Wake only when more than what is there has come: epoll honours
	 * SO_RCVLOWAT on TCP sockets. */
	set_rcvlowat(conn->fd, (int)n + 1);
}

/* ---- accepting ---- */

static void accept_some(struct door *d)
{
	struct http_server *srv = d->srv;
	for (int i = 0; i < ACCEPT_BATCH; i++) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		int fd = accept4(srv->listen_fd, (struct sockaddr *)&ss, &sl,
				 SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK) {
				/* Out of descriptors or memory: the backlog waits
				 * while connections end. */
				fprintf(stderr, "bunkerd: accept: %s\n", strerror(errno));
				d->accept_paused_until_us =
				    mono_us() + (int64_t)ACCEPT_PAUSE_MS * 1000;
				struct epoll_event ev = {.events = 0, .data.ptr = NULL};
				epoll_ctl(srv->epoll_fd, EPOLL_CTL_MOD, srv->listen_fd, &ev);
			}
			return;
		}
		struct http_client client;
		http_client_of((struct sockaddr *)&ss, &client);
		pthread_mutex_lock(&srv->lock);
		bool ok = http__client_take(srv, &client, false);
		pthread_mutex_unlock(&srv->lock);
		if (!ok) {
			d->refused_client++;
			say_only(fd, "503 Service Unavailable", "Retry-After: 1\r\n",
				 "too many connections from this address\n");
			close_reset(fd);
			continue;
		}
		if (srv->n_waiting >= HTTP_DOOR_WAIT_MAX) {
			d->evicted++;
			wait_close(d, srv->wait_head);
		}
		struct http_conn *conn = calloc(1, sizeof(*conn));
		if (conn == NULL) {
			close(fd);
			http_client_release(srv, &client);
			continue;
		}
		*conn = (struct http_conn){.kind = HTTP_DOOR_WAITING,
					   .srv = srv,
					   .fd = fd,
					   .addr = ss,
					   .addrlen = sl,
					   .client = client};
		if (ss.ss_family == AF_INET)
			inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, conn->ip,
				  sizeof(conn->ip));
		else if (ss.ss_family == AF_INET6)
			inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, conn->ip,
				  sizeof(conn->ip));
		conn->deadline_us = mono_us() + (int64_t)srv->limits.head_timeout_s * 1000000;
		struct epoll_event ev = {.events = EPOLLIN, .data.ptr = conn};
		if (epoll_ctl(srv->epoll_fd, EPOLL_CTL_ADD, fd, &ev) < 0) {
			close(fd);
			http_client_release(srv, &client);
			free(conn);
			continue;
		}
		wait_push(srv, conn);
		/* A client's head is often in by now: handed on at once, not a
		 * round of events later, behind the rest of a flood's batch. */
		peek_step(d, conn);
	}
}

/* ---- lingering sockets ---- */

void http_door_linger(struct http_server *srv, int fd, const struct http_client *client)
{
	struct http_linger *l = calloc(1, sizeof(*l));
	pthread_mutex_lock(&srv->lock);
	bool take = l != NULL && !srv->stopping;
	if (take) {
		*l = (struct http_linger){.kind = HTTP_DOOR_LINGER, .fd = fd, .client = *client};
		http__client_take(srv, client, true);
		l->next = srv->linger_new;
		srv->linger_new = l;
	}
	pthread_mutex_unlock(&srv->lock);
	if (!take) {
		close(fd);
		free(l);
		return;
	}
	uint64_t one = 1;
	if (write(srv->wake_fd, &one, sizeof(one)) < 0) {
		/* The counter is full of wake-ups already: the door is awake. */
	}
	/* l is linked into srv->linger_new, freed by the door thread */
	/* cppcheck-suppress memleak */
}

static void linger_close(struct http_server *srv, struct http_linger *l)
{
	if (l->prev)
		l->prev->next = l->next;
	else
		srv->linger_head = l->next;
	if (l->next)
		l->next->prev = l->prev;
	else
		srv->linger_tail = l->prev;
	/* MHD's copy of the socket may not be closed yet. */
	epoll_ctl(srv->epoll_fd, EPOLL_CTL_DEL, l->fd, NULL);
	close(l->fd);
	http_client_release(srv, &l->client);
	free(l);
}

/* Takes the sockets handed over since the last wake-up. */
static void linger_take(struct door *d)
{
	struct http_server *srv = d->srv;
	uint64_t n;
	if (read(srv->wake_fd, &n, sizeof(n)) < 0) {
		/* Nothing to clear. */
	}
	pthread_mutex_lock(&srv->lock);
	struct http_linger *l = srv->linger_new;
	srv->linger_new = NULL;
	pthread_mutex_unlock(&srv->lock);
	int64_t deadline = mono_us() + (int64_t)LINGER_MS * 1000;
	while (l) {
		struct http_linger *next = l->next;
		l->deadline_us = deadline;
		l->next = NULL;
		l->prev = srv->linger_tail;
		if (srv->linger_tail)
			srv->linger_tail->next = l;
		else
			srv->linger_head = l;
		srv->linger_tail = l;
		struct epoll_event ev = {.events = EPOLLIN, .data.ptr = l};
		if (epoll_ctl(srv->epoll_fd, EPOLL_CTL_ADD, l->fd, &ev) < 0)
			linger_close(srv, l);
		l = next;
	}
}

static void linger_step(struct door *d, struct http_linger *l)
{
	for (;;) {
		ssize_t r = recv(l->fd, d->peek, PEEK_MAX, MSG_DONTWAIT);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (r <= 0 || (l->dropped += (size_t)r) >= LINGER_BYTES)
			return linger_close(d->srv, l);
	}
}

/* ---- the door's thread ---- */

/* Closes what has waited too long; returns the ms until the next deadline
 * (-1: none). */
static int expire(struct door *d, int64_t now)
{
	struct http_server *srv = d->srv;
	while (srv->wait_head && srv->wait_head->deadline_us <= now) {
		struct http_conn *c = srv->wait_head;
		d->timed_out++;
		if (c->have > 0)
			say(c->fd, "408 Request Timeout", "",
			    "the request head did not come in time\n");
		wait_close(d, c);
	}
	while (srv->linger_head && srv->linger_head->deadline_us <= now)
		linger_close(srv, srv->linger_head);
	if (d->accept_paused_until_us && d->accept_paused_until_us <= now) {
		d->accept_paused_until_us = 0;
		struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
		epoll_ctl(srv->epoll_fd, EPOLL_CTL_MOD, srv->listen_fd, &ev);
	}
	int64_t next = INT64_MAX;
	if (srv->wait_head)
		next = srv->wait_head->deadline_us;
	if (srv->linger_head && srv->linger_head->deadline_us < next)
		next = srv->linger_head->deadline_us;
	if (d->accept_paused_until_us && d->accept_paused_until_us < next)
		next = d->accept_paused_until_us;
	if (next == INT64_MAX)
		return -1;
	return (int)((next - now) / 1000) + 1;
}

static void door_log(struct door *d, int64_t now)
{
	if (now - d->logged_us < DOOR_LOG_EVERY_US ||
	    d->refused_client + d->refused_full + d->timed_out + d->evicted == 0)
		return;
	fprintf(stderr,
		"bunkerd: front door: %ld refused (too many from one address), %ld refused "
		"(full), %ld heads timed out, %ld idle closed to make room\n",
		d->refused_client, d->refused_full, d->timed_out, d->evicted);
	d->refused_client = d->refused_full = d->timed_out = d->evicted = 0;
	d->logged_us = now;
}

static void *door_main(void *arg)
{
	struct door *d = arg;
	struct http_server *srv = d->srv;
	struct epoll_event evs[EVENTS_MAX];
	int timeout = -1;
	for (;;) {
		int n = epoll_wait(srv->epoll_fd, evs, EVENTS_MAX, timeout);
		pthread_mutex_lock(&srv->lock);
		bool stopping = srv->stopping;
		pthread_mutex_unlock(&srv->lock);
		if (stopping)
			break;
		for (int i = 0; i < n; i++) {
			void *p = evs[i].data.ptr;
			if (p == NULL)
				accept_some(d);
			else if (p == &srv->wake_fd)
				linger_take(d);
			else if (*(enum http_door_kind *)p == HTTP_DOOR_WAITING)
				peek_step(d, p);
			else if (*(enum http_door_kind *)p == HTTP_DOOR_LINGER)
				linger_step(d, p);
		}
		int64_t now = mono_us();
		timeout = expire(d, now);
		reap(d);
		door_log(d, now);
	}
	while (srv->wait_head)
		wait_close(d, srv->wait_head);
	reap(d);
	linger_take(d);
	while (srv->linger_head)
		linger_close(srv, srv->linger_head);
	pthread_attr_destroy(&d->relay_attr);
	free(d);
	return NULL;
}

/* ---- start and stop ---- */

static int listen_on(const char *addr, int port, struct bk_err *err)
{
	struct sockaddr_storage ss;
	memset(&ss, 0, sizeof(ss));
	struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
	socklen_t sl;
	if (inet_pton(AF_INET, addr, &s4->sin_addr) == 1) {
		s4->sin_family = AF_INET;
		s4->sin_port = htons((uint16_t)port);
		sl = sizeof(*s4);
	} else if (inet_pton(AF_INET6, addr, &s6->sin6_addr) == 1) {
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t)port);
		sl = sizeof(*s6);
	} else {
		return bk_err_field(err, "listen", "'%s' is not an IP address", addr);
	}
	int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return bk_err_set(err, errno, "cannot create a socket");
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (ss.ss_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&ss, sl) < 0 || listen(fd, 4096) < 0) {
		int e = errno;
		close(fd);
		return bk_err_kind(err, BK_E_INTERNAL, "cannot listen on %s:%d (in use?): %s", addr,
				   port, strerror(e));
	}
	return fd;
}

int http_accept_start(struct http_server *srv, const char *addr, int port, struct bk_err *err)
{
	srv->listen_fd = listen_on(addr, port, err);
	if (srv->listen_fd < 0)
		return -1;
	srv->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	srv->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (srv->epoll_fd < 0 || srv->wake_fd < 0)
		return bk_err_set(err, errno, "cannot set up the front door");
	struct epoll_event lev = {.events = EPOLLIN, .data.ptr = NULL};
	struct epoll_event wev = {.events = EPOLLIN, .data.ptr = &srv->wake_fd};
	if (epoll_ctl(srv->epoll_fd, EPOLL_CTL_ADD, srv->listen_fd, &lev) < 0 ||
	    epoll_ctl(srv->epoll_fd, EPOLL_CTL_ADD, srv->wake_fd, &wev) < 0)
		return bk_err_set(err, errno, "cannot set up the front door");
	struct door *d = calloc(1, sizeof(*d));
	if (d == NULL)
		return bk_err_set(err, ENOMEM, "cannot set up the front door");
	d->srv = srv;
	d->logged_us = mono_us();
	pthread_attr_init(&d->relay_attr);
	pthread_attr_setdetachstate(&d->relay_attr, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&d->relay_attr, CONN_STACK);
	int e = pthread_create(&srv->door_thread, NULL, door_main, d);
	if (e != 0) {
		pthread_attr_destroy(&d->relay_attr);
		free(d);
		return bk_err_set(err, e, "cannot start the front door");
	}
	srv->door_running = true;
	return 0;
}

void http_accept_stop(struct http_server *srv)
{
	pthread_mutex_lock(&srv->lock);
	srv->stopping = true;
	pthread_mutex_unlock(&srv->lock);
	if (srv->door_running) {
		uint64_t one = 1;
		if (write(srv->wake_fd, &one, sizeof(one)) < 0) {
			/* Already woken. */
		}
		pthread_join(srv->door_thread, NULL);
		srv->door_running = false;
	}
	if (srv->listen_fd >= 0)
		close(srv->listen_fd);
	srv->listen_fd = -1;
	/* Every relayed connection ends: a relay wakes up to a shut-down
	 * socket. Those handed to MHD end with MHD_stop_daemon(). */
	pthread_mutex_lock(&srv->lock);
	for (struct http_conn *c = srv->conns; c; c = c->next)
		shutdown(c->fd, SHUT_RDWR);
	while (srv->n_threads > 0)
		pthread_cond_wait(&srv->drained, &srv->lock);
	pthread_mutex_unlock(&srv->lock);
}
