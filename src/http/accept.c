/* The front door: accepts connections, looks at the Host and target of
 * each one's first request without reading it (MSG_PEEK), and hands the
 * connection to libmicrohttpd (the API) or to the relay (previews).
 *
 * Why in front of MHD and not inside it: a preview is a raw HTTP/1.1 byte
 * stream (chunked bodies of any size, answers streamed as they come,
 * WebSocket upgrades), which MHD's request/response model would buffer or
 * refuse; MHD has no way to give a connection back. So the decision is
 * made before MHD sees a byte: the bytes stay in the socket, and MHD (fed
 * through MHD_add_connection()) reads them as if it had accepted the
 * connection itself.
 *
 * Each connection gets a thread of its own at once, so a client that is
 * slow to send its head, or a preview that wakes a sleeping session, holds
 * up nobody else. Nothing global is held while a connection is served.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "http/http_int.h"
#include "util/util.h"

/* How much of a request head, and for how long, the front door waits for
 * to find its Host. Past either the connection goes to MHD, which answers
 * or times out as it always did. */
#define PEEK_MAX (16 * 1024)
#define PEEK_TIMEOUT_MS 10000
/* Connections served at once (MHD's own limit is the same). */
#define CONN_MAX 4096
/* A connection thread's stack: the relay keeps its buffers on the heap. */
#define CONN_STACK (2u << 20)

/* ---- the connection list ---- */

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

static void thread_done(struct http_server *srv)
{
	pthread_mutex_lock(&srv->lock);
	if (--srv->n_threads == 0)
		pthread_cond_broadcast(&srv->drained);
	pthread_mutex_unlock(&srv->lock);
}

/* ---- looking at the request head ---- */

/* The Host of the request head in buf[0..len): 1 with host, method and
 * target (the request-target, cut short to fit) filled, 0 when the head is
 * complete without a usable one (or is no HTTP/1.x head), -1 when more
 * bytes are needed to tell. */
static int head_host(const char *buf, size_t len, char *host, size_t hostlen, char *method,
		     size_t methodlen, char *target, size_t targetlen)
{
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
	for (const char *line = nl + 1; line < end;) {
		const char *eol = memchr(line, '\n', (size_t)(end - line));
		if (eol == NULL)
			return -1;
		size_t n = (size_t)(eol - line);
		if (n > 0 && line[n - 1] == '\r')
			n--;
		if (n == 0)
			return 0; /* the end of the head, and no Host */
		if (n > 5 && strncasecmp(line, "host:", 5) == 0) {
			const char *v = line + 5, *ve = line + n;
			while (v < ve && (*v == ' ' || *v == '\t'))
				v++;
			while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
				ve--;
			size_t vl = (size_t)(ve - v);
			if (vl == 0 || vl >= hostlen || memchr(v, '\0', vl))
				return 0;
			memcpy(host, v, vl);
			host[vl] = '\0';
			return 1;
		}
		line = eol + 1;
	}
	return -1;
}

static void set_rcvlowat(int fd, int n)
{
	setsockopt(fd, SOL_SOCKET, SO_RCVLOWAT, &n, sizeof(n));
}

/* Waits for the Host of conn's first request, without consuming a byte:
 * 1 when found (conn->host), 0 when the connection should go to MHD, -1
 * when the client left before sending anything. */
static int peek_host(struct http_conn *conn)
{
	char *buf = malloc(PEEK_MAX);
	if (buf == NULL)
		return 0;
	int64_t deadline = mono_us() + (int64_t)PEEK_TIMEOUT_MS * 1000;
	ssize_t have = -1;
	int rc = 0;
	bool lowat = false;
	for (;;) {
		ssize_t n = recv(conn->fd, buf, PEEK_MAX, MSG_PEEK | MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
			rc = -1;
			break;
		}
		if (n == 0) {
			rc = -1;
			break;
		}
		if (n > 0) {
			int r =
			    head_host(buf, (size_t)n, conn->host, sizeof(conn->host), conn->method,
				      sizeof(conn->method), conn->target, sizeof(conn->target));
			if (r >= 0 || n == PEEK_MAX || n == have) {
				/* Found, complete without a Host, too long, or no
				 * progress after a wake-up (the client has finished
				 * sending: an EOF after a partial head). */
				rc = r > 0 ? 1 : 0;
				break;
			}
			have = n;
		}
		int64_t left_ms = (deadline - mono_us()) / 1000;
		if (left_ms <= 0)
			break;
		/* Wake only when more than what is there has come: poll()
		 * honours SO_RCVLOWAT on TCP sockets. */
		if (have > 0) {
			set_rcvlowat(conn->fd, (int)have + 1);
			lowat = true;
		}
		struct pollfd p = {.fd = conn->fd, .events = POLLIN};
		int pr = poll(&p, 1, (int)left_ms);
		if (pr < 0 && errno != EINTR)
			break;
		if (pr == 0)
			break;
	}
	if (lowat)
		set_rcvlowat(conn->fd, 1);
	free(buf);
	return rc;
}

/* ---- connection threads ---- */

static void *conn_main(void *arg)
{
	struct http_conn *conn = arg;
	struct http_server *srv = conn->srv;
	int found = peek_host(conn);
	if (found < 0) {
		http_conn_unlist(conn);
		close(conn->fd);
		free(conn);
	} else if (found && srv->has_hosts &&
		   srv->hosts.route(srv->hosts.ctx, conn->host, conn->target) == HTTP_ROUTE_RELAY) {
		http_proxy_serve(conn);
	} else {
		http_mhd_adopt(srv, conn);
	}
	thread_done(srv);
	return NULL;
}

static void client_ip(const struct sockaddr_storage *ss, char *out, size_t len)
{
	out[0] = '\0';
	if (ss->ss_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)ss)->sin_addr, out,
			  (socklen_t)len);
	else if (ss->ss_family == AF_INET6)
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)ss)->sin6_addr, out,
			  (socklen_t)len);
}

/* Starts a thread for the connection fd (taken). */
static void conn_start(struct http_server *srv, int fd, const struct sockaddr_storage *ss,
		       socklen_t sl, pthread_attr_t *attr)
{
	struct http_conn *conn = calloc(1, sizeof(*conn));
	if (conn == NULL) {
		close(fd);
		return;
	}
	*conn = (struct http_conn){.srv = srv, .fd = fd, .addr = *ss, .addrlen = sl};
	client_ip(ss, conn->ip, sizeof(conn->ip));
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	pthread_mutex_lock(&srv->lock);
	bool refuse = srv->stopping || srv->n_threads >= CONN_MAX;
	if (!refuse) {
		conn_list(srv, conn);
		srv->n_threads++;
	}
	pthread_mutex_unlock(&srv->lock);
	if (refuse) {
		close(fd);
		free(conn);
		return;
	}
	pthread_t t;
	int e = pthread_create(&t, attr, conn_main, conn);
	if (e != 0) {
		fprintf(stderr, "bunkerd: cannot start a connection thread: %s\n", strerror(e));
		http_conn_unlist(conn);
		close(fd);
		free(conn);
		thread_done(srv);
	}
}

static void *accept_main(void *arg)
{
	struct http_server *srv = arg;
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&attr, CONN_STACK);
	for (;;) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		int fd = accept4(srv->listen_fd, (struct sockaddr *)&ss, &sl, SOCK_CLOEXEC);
		if (fd < 0) {
			pthread_mutex_lock(&srv->lock);
			bool stopping = srv->stopping;
			pthread_mutex_unlock(&srv->lock);
			if (stopping)
				break;
			if (errno != EINTR && errno != ECONNABORTED && errno != EPROTO) {
				/* Out of descriptors or memory: the backlog waits
				 * while connections end. */
				fprintf(stderr, "bunkerd: accept: %s\n", strerror(errno));
				poll(NULL, 0, 100);
			}
			continue;
		}
		conn_start(srv, fd, &ss, sl, &attr);
	}
	pthread_attr_destroy(&attr);
	return NULL;
}

/* ---- start and stop ---- */

int http_accept_start(struct http_server *srv, const char *addr, int port, struct bk_err *err)
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
	int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return bk_err_set(err, errno, "cannot create a socket");
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (ss.ss_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&ss, sl) < 0 || listen(fd, 1024) < 0) {
		int e = errno;
		close(fd);
		return bk_err_kind(err, BK_E_INTERNAL, "cannot listen on %s:%d (in use?): %s", addr,
				   port, strerror(e));
	}
	srv->listen_fd = fd;
	int e = pthread_create(&srv->accept_thread, NULL, accept_main, srv);
	if (e != 0)
		return bk_err_set(err, e, "cannot start the accept thread");
	srv->accept_running = true;
	return 0;
}

void http_accept_stop(struct http_server *srv)
{
	pthread_mutex_lock(&srv->lock);
	srv->stopping = true;
	pthread_mutex_unlock(&srv->lock);
	if (srv->listen_fd >= 0)
		shutdown(srv->listen_fd, SHUT_RDWR); /* wakes accept() */
	if (srv->accept_running)
		pthread_join(srv->accept_thread, NULL);
	srv->accept_running = false;
	if (srv->listen_fd >= 0)
		close(srv->listen_fd);
	srv->listen_fd = -1;
	/* Every connection still ours ends: a peek or a relay wakes up to a
	 * shut-down socket. Those handed to MHD end with MHD_stop_daemon(). */
	pthread_mutex_lock(&srv->lock);
	for (struct http_conn *c = srv->conns; c; c = c->next)
		shutdown(c->fd, SHUT_RDWR);
	while (srv->n_threads > 0)
		pthread_cond_wait(&srv->drained, &srv->lock);
	pthread_mutex_unlock(&srv->lock);
}
