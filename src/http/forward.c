/* A request of libmicrohttpd's passed on to a peer server, and its answer
 * streamed back (http/server.h, "a request passed on to another server").
 *
 * The relay of http/relay.c moves raw bytes between two sockets it owns;
 * here libmicrohttpd owns the client's side (it has parsed the head and
 * de-chunks the body), so the request is written again from what it
 * parsed and the answer's framing is read with the same helpers as the
 * relay's (http/http_text.h) and decoded for libmicrohttpd to frame once
 * more.
 *
 * Connections to peers are kept alive and reused (struct forward_pool): a
 * new one per request cost a connect, a pass through the peer's front door
 * and a thread of its libmicrohttpd, about 2 ms here. One that is reused
 * carries one request at a time, and goes back to the pool only once its
 * answer was read to its end; one that the peer closed meanwhile (its idle
 * timeout) is found so before use, or fails before a byte of its answer,
 * and the request is then sent again on a new one (its body too, when it
 * was small enough to keep: a request that cannot be sent again is not
 * sent on a reused connection).
 */
#include <errno.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "http/http_text.h"
#include "http/server.h"
#include "util/cleanup.h"
#include "util/util.h"

/* The longest answer head taken from a peer. */
#define FORWARD_HEAD_MAX (32 * 1024)
/* Bytes read from the peer at a time. */
#define FORWARD_BUF (64 * 1024)
/* Idle connections kept, to every peer together, and for how long (the
 * peer closes an idle one after its --idle-timeout, 60 s by default). */
#define FORWARD_POOL_MAX 32
#define FORWARD_POOL_IDLE_US (20 * 1000000LL)
/* The most of a body kept to send again on a new connection. */
#define FORWARD_REPLAY_MAX (64 * 1024)
_Static_assert(FORWARD_BUF + FORWARD_REPLAY_MAX == HTTP_FORWARD_HELD,
	       "HTTP_FORWARD_HELD is what a hop holds");
/* How often a silent peer's liveness is asked (http_forward_watch()). */
#define FORWARD_WATCH_MS 1000

enum forward_framing {
	FWD_NONE = 0,	 /* no body */
	FWD_LENGTH,	 /* Content-Length: left bytes */
	FWD_CHUNK_SIZE,	 /* a chunk-size line */
	FWD_CHUNK_DATA,	 /* left bytes of a chunk */
	FWD_CHUNK_END,	 /* the CRLF after a chunk */
	FWD_TRAILER,	 /* trailer lines up to an empty one */
	FWD_UNTIL_CLOSE, /* until the peer closes */
	FWD_DONE,
};

struct http_forward {
	int fd;
	char url[256];
	bool reused;	   /* fd came from the pool */
	bool keep_alive;   /* fd may go back to the pool once the answer is read */
	struct buf replay; /* the head and body sent, while they may be sent again */
	bool chunked_up;   /* the request's body goes up chunked */
	bool head_only;	   /* HEAD: the answer has no body */
	char *buf;	   /* FORWARD_BUF bytes read from the peer */
	size_t at, len;	   /* what of buf is not consumed yet */
	enum forward_framing fr;
	uint64_t left;
	char line[256]; /* a chunk-size or trailer line being read */
	size_t line_len;
	char content_type[160];
	uint64_t got; /* bytes of answer received */
	/* Asked every FORWARD_WATCH_MS of silence from the peer, when set. */
	bool (*alive)(void *ctx);
	void *alive_ctx;
	bool lost; /* alive() said no */
};

/* ---- the pool of idle connections ---- */

static struct {
	pthread_mutex_t lock;
	int n;
	struct {
		int fd;
		int64_t since_us;
		char url[256];
	} idle[FORWARD_POOL_MAX];
} pool = {.lock = PTHREAD_MUTEX_INITIALIZER};

/* Whether an idle connection is still good: nothing to read (a peer that
 * closed it shows as readable, at its end) and no error. */
static bool idle_alive(int fd)
{
	struct pollfd p = {.fd = fd, .events = POLLIN | POLLRDHUP};
	return poll(&p, 1, 0) == 0;
}

/* An idle connection to url, or -1. */
static int pool_take(const char *url)
{
	int64_t now = mono_us();
	for (;;) {
		int fd = -1;
		pthread_mutex_lock(&pool.lock);
		for (int i = pool.n - 1; i >= 0; i--) {
			if (strcmp(pool.idle[i].url, url) != 0)
				continue;
			fd = pool.idle[i].fd;
			bool fresh = now - pool.idle[i].since_us < FORWARD_POOL_IDLE_US;
			pool.idle[i] = pool.idle[--pool.n];
			if (!fresh) {
				close(fd);
				fd = -2;
			}
			break;
		}
		pthread_mutex_unlock(&pool.lock);
		if (fd == -1)
			return -1;
		if (fd >= 0 && idle_alive(fd))
			return fd;
		if (fd >= 0)
			close(fd);
	}
}

static void pool_put(const char *url, int fd)
{
	pthread_mutex_lock(&pool.lock);
	if (pool.n == FORWARD_POOL_MAX) {
		/* The oldest makes room. */
		close(pool.idle[0].fd);
		memmove(&pool.idle[0], &pool.idle[1],
			sizeof(pool.idle[0]) * (FORWARD_POOL_MAX - 1));
		pool.n--;
	}
	pool.idle[pool.n].fd = fd;
	pool.idle[pool.n].since_us = mono_us();
	snprintf(pool.idle[pool.n].url, sizeof(pool.idle[pool.n].url), "%s", url);
	pool.n++;
	pthread_mutex_unlock(&pool.lock);
}

void http_forward_free(struct http_forward *f)
{
	if (f == NULL)
		return;
	/* A connection whose answer was read to its end carries the next
	 * request; any other is closed (what is left of an answer on it
	 * would be read as the next one's). */
	if (f->fd >= 0 && f->keep_alive && (f->fr == FWD_DONE || f->fr == FWD_NONE) &&
	    f->at == f->len)
		pool_put(f->url, f->fd);
	else if (f->fd >= 0)
		close(f->fd);
	buf_free(&f->replay);
	free(f->buf);
	free(f);
}

static inline void cleanup_forwardp(struct http_forward **f)
{
	http_forward_free(*f);
}

/* A growing text buffer for the request head. */
struct head_buf {
	char *s;
	size_t len, cap;
	bool failed;
};

static void head_add(struct head_buf *b, const char *s, size_t n)
{
	if (b->failed)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 1024;
		while (cap < b->len + n + 1)
			cap *= 2;
		char *m = realloc(b->s, cap);
		if (m == NULL) {
			b->failed = true;
			return;
		}
		b->s = m;
		b->cap = cap;
	}
	memcpy(b->s + b->len, s, n);
	b->len += n;
	b->s[b->len] = '\0';
}

static void head_str(struct head_buf *b, const char *s)
{
	head_add(b, s, strlen(s));
}

/* Headers that belong to one connection (RFC 9110 7.6.1), or that the
 * hop writes itself. */
static bool hop_by_hop(const char *name)
{
	static const char *const names[] = {
	    "Connection",	  "Keep-Alive", "Proxy-Connection", "TE",     "Trailer",
	    "Transfer-Encoding",  "Upgrade",	"Content-Length",   "Expect", "Date",
	    "Proxy-Authorization"};
	for (size_t i = 0; i < ARRAY_SIZE(names); i++)
		if (strcasecmp(name, names[i]) == 0)
			return true;
	return false;
}

struct head_ctx {
	struct head_buf *b;
	const struct http_request *req;
	const char *const *extra;
	bool xff;
};

/* Whether name is one that an extra line sets (the client's own is
 * dropped: it cannot be forged through). */
static bool set_by_extra(const char *const *extra, const char *name)
{
	size_t n = strlen(name);
	for (size_t i = 0; extra && extra[i]; i++)
		if (strncasecmp(extra[i], name, n) == 0 && extra[i][n] == ':')
			return true;
	return false;
}

static enum MHD_Result head_header(void *cls, enum MHD_ValueKind kind, const char *key,
				   const char *value)
{
	struct head_ctx *h = cls;
	if (hop_by_hop(key) || set_by_extra(h->extra, key))
		return MHD_YES;
	/* A value libmicrohttpd accepted holds no CR or LF. */
	head_str(h->b, key);
	head_str(h->b, ": ");
	head_str(h->b, value ? value : "");
	if (strcasecmp(key, "X-Forwarded-For") == 0) {
		head_str(h->b, ", ");
		head_str(h->b, h->req->client_ip);
		h->xff = true;
	}
	head_str(h->b, "\r\n");
	return MHD_YES;
}

/* Splits "http://HOST:PORT[/]" into host and port. */
static int url_split(const char *url, char *host, size_t hostlen, char *port, size_t portlen,
		     struct bk_err *err)
{
	if (strncmp(url, "http://", 7) != 0)
		return bk_err_kind(err, BK_E_INTERNAL, "cannot reach '%s': not an http:// URL",
				   url);
	const char *h = url + 7, *end;
	if (*h == '[') {
		end = strchr(h, ']');
		if (end == NULL)
			return bk_err_kind(err, BK_E_INTERNAL, "cannot reach '%s': bad host", url);
		h++;
	} else {
		end = h + strcspn(h, ":/");
	}
	size_t hl = (size_t)(end - h);
	if (hl == 0 || hl >= hostlen)
		return bk_err_kind(err, BK_E_INTERNAL, "cannot reach '%s': bad host", url);
	memcpy(host, h, hl);
	host[hl] = '\0';
	const char *p = *end == ']' ? end + 1 : end;
	const char *pe = p;
	if (*p == ':') {
		p++;
		pe = p + strcspn(p, "/");
	}
	size_t pl = (size_t)(pe - p);
	if (pl == 0) {
		snprintf(port, portlen, "80");
		return 0;
	}
	if (pl >= portlen)
		return bk_err_kind(err, BK_E_INTERNAL, "cannot reach '%s': bad port", url);
	memcpy(port, p, pl);
	port[pl] = '\0';
	return 0;
}

int http_connect_url(const char *url, struct bk_err *err)
{
	char host[256], port[16];
	if (url_split(url, host, sizeof(host), port, sizeof(port), err) < 0)
		return -1;
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
	struct addrinfo *ai = NULL;
	int rc = getaddrinfo(host, port, &hints, &ai);
	if (rc != 0)
		return bk_err_kind(err, BK_E_UNAVAILABLE, "cannot resolve '%s': %s", host,
				   gai_strerror(rc));
	int fd = -1, saved = 0;
	for (struct addrinfo *a = ai; a && fd < 0; a = a->ai_next) {
		fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
		if (fd < 0)
			continue;
		int r;
		do
			r = connect(fd, a->ai_addr, a->ai_addrlen);
		while (r < 0 && errno == EINTR);
		if (r < 0) {
			saved = errno;
			close(fd);
			fd = -1;
		}
	}
	freeaddrinfo(ai);
	if (fd < 0)
		return bk_err_kind(err, BK_E_UNAVAILABLE, "cannot connect to '%s': %s", url,
				   strerror(saved ? saved : ECONNREFUSED));
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
	return fd;
}

static int send_all(int fd, const char *p, size_t n, struct bk_err *err)
{
	while (n > 0) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return bk_err_kind(err, BK_E_UNAVAILABLE, "cannot send to the peer: %s",
					   strerror(w < 0 ? errno : EPIPE));
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

void http_forward_watch(struct http_forward *f, bool (*alive)(void *ctx), void *ctx)
{
	f->alive = alive;
	f->alive_ctx = ctx;
}

int http_forward_open(const struct http_request *req, const char *url, const char *const *extra,
		      struct http_forward **out, struct bk_err *err)
{
	*out = NULL;
	__attribute__((cleanup(cleanup_forwardp))) struct http_forward *f = calloc(1, sizeof(*f));
	if (f == NULL)
		return bk_err_set(err, ENOMEM, "cannot forward the request");
	f->fd = -1;
	f->buf = malloc(FORWARD_BUF);
	/* f is _cleanup_ (cleanup_forwardp) until returned */
	if (f->buf == NULL)
		/* cppcheck-suppress memleak */
		return bk_err_set(err, ENOMEM, "cannot forward the request");
	f->head_only = strcmp(req->method, "HEAD") == 0;
	struct head_buf b = {0};
	head_str(&b, req->method);
	head_str(&b, " ");
	head_str(&b, req->target && *req->target ? req->target : req->path);
	head_str(&b, " HTTP/1.1\r\n");
	struct head_ctx h = {.b = &b, .req = req, .extra = extra};
	MHD_get_connection_values(req->conn, MHD_HEADER_KIND, head_header, &h);
	if (!h.xff) {
		head_str(&b, "X-Forwarded-For: ");
		head_str(&b, req->client_ip);
		head_str(&b, "\r\n");
	}
	for (size_t i = 0; extra && extra[i]; i++) {
		head_str(&b, extra[i]);
		head_str(&b, "\r\n");
	}
	if (req->content_length >= 0) {
		char cl[48];
		snprintf(cl, sizeof(cl), "Content-Length: %lld\r\n",
			 (long long)req->content_length);
		head_str(&b, cl);
	} else if (req->has_body) {
		head_str(&b, "Transfer-Encoding: chunked\r\n");
		f->chunked_up = true;
	}
	head_str(&b, "\r\n");
	_cleanup_free_ char *head = b.s;
	if (b.failed)
		return bk_err_set(err, ENOMEM, "cannot forward the request");
	snprintf(f->url, sizeof(f->url), "%s", url);
	/* A reused connection may turn out closed after the request went:
	 * the head (and the body) are kept to be sent again. */
	buf_init(&f->replay, FORWARD_REPLAY_MAX);
	f->fd = pool_take(url);
	f->reused = f->fd >= 0;
	if (f->reused && (buf_append(&f->replay, head, b.len) < 0 || f->replay.truncated)) {
		close(f->fd);
		f->fd = -1;
		f->reused = false;
	}
	if (f->fd < 0)
		f->fd = http_connect_url(url, err);
	if (f->fd < 0)
		return -1;
	if (send_all(f->fd, head, b.len, err) < 0) {
		if (!f->reused)
			return -1;
		/* Closed while idle: a new connection, once. */
		close(f->fd);
		f->reused = false;
		buf_free(&f->replay);
		bk_err_clear(err);
		f->fd = http_connect_url(url, err);
		if (f->fd < 0 || send_all(f->fd, head, b.len, err) < 0)
			return -1;
	}
	*out = steal_ptr(&f);
	return 0;
}

/* Sends p on f, and keeps it while f may have to send it again. */
static int forward_send(struct http_forward *f, const char *p, size_t n, struct bk_err *err)
{
	if (f->reused && f->replay.data) {
		if (buf_append(&f->replay, p, n) < 0 || f->replay.truncated)
			buf_free(&f->replay); /* too much to send again: not sent again */
	}
	return send_all(f->fd, p, n, err);
}

int http_forward_body(struct http_forward *f, const char *data, size_t len, struct bk_err *err)
{
	if (len == 0)
		return 0;
	if (f->chunked_up) {
		char size[24];
		int n = snprintf(size, sizeof(size), "%zx\r\n", len);
		if (forward_send(f, size, (size_t)n, err) < 0 ||
		    forward_send(f, data, len, err) < 0)
			return -1;
		return forward_send(f, "\r\n", 2, err);
	}
	return forward_send(f, data, len, err);
}

/* More bytes from the peer into buf (which must be consumed): the count,
 * 0 at its end, -1 on an error. */
static ssize_t fill(struct http_forward *f)
{
	ssize_t n;
	/* A peer that stopped (alive, its sockets open, answering nothing)
	 * would hold the request for ever: its liveness is asked while it is
	 * silent. */
	while (f->alive) {
		struct pollfd p = {.fd = f->fd, .events = POLLIN};
		int r = poll(&p, 1, FORWARD_WATCH_MS);
		if (r > 0 || (r < 0 && errno != EINTR))
			break;
		if (r == 0 && !f->alive(f->alive_ctx)) {
			f->lost = true;
			f->at = f->len = 0;
			return -1;
		}
	}
	do
		n = recv(f->fd, f->buf, FORWARD_BUF, 0);
	while (n < 0 && errno == EINTR);
	f->at = 0;
	f->len = n > 0 ? (size_t)n : 0;
	f->got += f->len;
	return n;
}

/* Reads the answer's head; leaves what follows it in buf. */
static int read_head(struct http_forward *f, char **head, size_t *head_len, struct bk_err *err)
{
	size_t cap = FORWARD_HEAD_MAX, len = 0;
	char *h = malloc(cap + 1);
	if (h == NULL)
		return bk_err_set(err, ENOMEM, "cannot read the peer's answer");
	for (;;) {
		if (f->at == f->len && fill(f) <= 0) {
			free(h);
			return bk_err_kind(
			    err, BK_E_UNAVAILABLE,
			    f->lost ? "the peer stopped answering and is no longer "
				      "alive"
				    : "the peer closed the connection before its answer");
		}
		while (f->at < f->len) {
			if (len == cap) {
				free(h);
				return bk_err_kind(err, BK_E_UNAVAILABLE,
						   "the peer's answer head is over %d bytes",
						   FORWARD_HEAD_MAX);
			}
			h[len++] = f->buf[f->at++];
			if (len >= 4 && memcmp(h + len - 4, "\r\n\r\n", 4) == 0) {
				h[len] = '\0';
				*head = h;
				*head_len = len;
				return 0;
			}
		}
	}
}

/* The chunked body's framing, decoded: up to max bytes of data into out,
 * from what buf holds. 0 when more input is needed, -1 when malformed. */
static int chunk_step(struct http_forward *f, char *out, size_t max, size_t *got)
{
	*got = 0;
	while (f->at < f->len && *got == 0 && f->fr != FWD_DONE) {
		char c = f->buf[f->at];
		switch (f->fr) {
		case FWD_CHUNK_SIZE:
		case FWD_TRAILER:
		case FWD_CHUNK_END:
			f->at++;
			if (c != '\n') {
				if (f->line_len < sizeof(f->line) - 1)
					f->line[f->line_len++] = c;
				else
					return -1;
				continue;
			}
			if (f->line_len > 0 && f->line[f->line_len - 1] == '\r')
				f->line_len--;
			if (f->fr == FWD_CHUNK_END) {
				if (f->line_len != 0)
					return -1;
				f->fr = FWD_CHUNK_SIZE;
			} else if (f->fr == FWD_TRAILER) {
				if (f->line_len == 0)
					f->fr = FWD_DONE;
			} else {
				uint64_t size;
				if (http__parse_chunk_size(f->line, f->line_len, &size) < 0)
					return -1;
				f->left = size;
				f->fr = size == 0 ? FWD_TRAILER : FWD_CHUNK_DATA;
			}
			f->line_len = 0;
			break;
		case FWD_CHUNK_DATA: {
			size_t n = f->len - f->at;
			if (n > f->left)
				n = (size_t)f->left;
			if (n > max)
				n = max;
			memcpy(out, f->buf + f->at, n);
			f->at += n;
			f->left -= n;
			*got = n;
			if (f->left == 0)
				f->fr = FWD_CHUNK_END;
			break;
		}
		default:
			return -1;
		}
	}
	return 0;
}

static ssize_t forward_read(void *ctx, char *out, size_t max)
{
	struct http_forward *f = ctx;
	for (;;) {
		if (f->fr == FWD_DONE || f->fr == FWD_NONE)
			return 0;
		if (f->at == f->len) {
			ssize_t n = fill(f);
			if (n < 0)
				return -1;
			if (n == 0)
				return f->fr == FWD_UNTIL_CLOSE ? 0 : -1; /* cut short */
		}
		size_t avail = f->len - f->at, n;
		switch (f->fr) {
		case FWD_LENGTH:
			n = avail < max ? avail : max;
			if (n > f->left)
				n = (size_t)f->left;
			memcpy(out, f->buf + f->at, n);
			f->at += n;
			f->left -= n;
			if (f->left == 0)
				f->fr = FWD_DONE;
			return (ssize_t)n;
		case FWD_UNTIL_CLOSE:
			n = avail < max ? avail : max;
			memcpy(out, f->buf + f->at, n);
			f->at += n;
			return (ssize_t)n;
		default:
			if (chunk_step(f, out, max, &n) < 0)
				return -1;
			if (n > 0)
				return (ssize_t)n;
			break;
		}
	}
}

static void forward_stream_free(void *ctx)
{
	http_forward_free(ctx);
}

static bool res_has(const struct http_response *res, const char *name, size_t n)
{
	for (int i = 0; i < res->n_headers; i++)
		if (strlen(res->headers[i].name) == n &&
		    strncasecmp(res->headers[i].name, name, n) == 0)
			return true;
	return false;
}

int http_forward_answer(struct http_forward *f, struct http_response *res, struct bk_err *err)
{
	if (f->chunked_up && forward_send(f, "0\r\n\r\n", 5, err) < 0 && !f->reused) {
		http_forward_free(f);
		return -1;
	}
	char *head;
	size_t head_len;
	int rc = read_head(f, &head, &head_len, err);
	if (rc < 0 && f->reused && f->got == 0 && f->replay.data) {
		/* The peer had closed the idle connection: the same request on a
		 * new one. */
		close(f->fd);
		f->reused = false;
		bk_err_clear(err);
		f->fd = http_connect_url(f->url, err);
		rc = f->fd < 0 || send_all(f->fd, f->replay.data, f->replay.len, err) < 0
			 ? -1
			 : read_head(f, &head, &head_len, err);
	}
	buf_free(&f->replay);
	if (rc < 0) {
		http_forward_free(f);
		return -1;
	}
	_cleanup_free_ char *h = head;
	/* "HTTP/1.x SP 3DIGIT ..." */
	if (head_len < 12 || strncmp(h, "HTTP/1.", 7) != 0 || h[8] != ' ' || h[9] < '1' ||
	    h[9] > '5' || h[10] < '0' || h[10] > '9' || h[11] < '0' || h[11] > '9') {
		http_forward_free(f);
		return bk_err_kind(err, BK_E_UNAVAILABLE, "the peer's answer is not HTTP/1.1");
	}
	int status = (h[9] - '0') * 100 + (h[10] - '0') * 10 + (h[11] - '0');
	bool chunked = false, has_cl = false, close_after = false;
	uint64_t cl = 0;
	struct http_response hdrs = {0};
	const char *line = strstr(h, "\r\n") + 2;
	while (*line && strncmp(line, "\r\n", 2) != 0) {
		const char *eol = strstr(line, "\r\n");
		struct http_field fl;
		if (eol && http__field_split(line, (size_t)(eol - line), &fl)) {
			if (http__eq_ci(fl.name, fl.name_len, "transfer-encoding")) {
				chunked = http__list_has(fl.value, fl.value_len, "chunked", true);
			} else if (http__eq_ci(fl.name, fl.name_len, "content-length")) {
				if (http__parse_content_length(fl.value, fl.value_len, &cl) == 0)
					has_cl = true;
			} else if (http__eq_ci(fl.name, fl.name_len, "connection")) {
				close_after =
				    http__list_has(fl.value, fl.value_len, "close", false);
			} else if (http__eq_ci(fl.name, fl.name_len, "content-type")) {
				snprintf(f->content_type, sizeof(f->content_type), "%.*s",
					 (int)fl.value_len, fl.value);
			} else {
				char name[48];
				snprintf(name, sizeof(name), "%.*s", (int)fl.name_len, fl.name);
				if (!hop_by_hop(name) && !res_has(res, fl.name, fl.name_len))
					http_response_header(&hdrs, name, "%.*s", (int)fl.value_len,
							     fl.value);
			}
		}
		if (eol == NULL)
			break;
		line = eol + 2;
	}
	if (f->head_only || status == 204 || status == 304)
		f->fr = FWD_NONE;
	else if (chunked)
		f->fr = FWD_CHUNK_SIZE;
	else if (has_cl)
		f->fr = cl ? FWD_LENGTH : FWD_NONE;
	else
		f->fr = FWD_UNTIL_CLOSE;
	f->left = cl;
	f->keep_alive = !close_after && f->fr != FWD_UNTIL_CLOSE && strncmp(h, "HTTP/1.1", 8) == 0;
	for (int i = 0; i < hdrs.n_headers; i++)
		http_response_header(res, hdrs.headers[i].name, "%s", hdrs.headers[i].value);
	const char *ctype = f->content_type[0] ? f->content_type : NULL;
	if (f->fr == FWD_NONE) {
		http_response_set(res, status, NULL, "", 0);
		res->content_type = NULL;
		/* The type names no body, but a HEAD's answer still says it. */
		if (ctype)
			http_response_header(res, "Content-Type", "%s", ctype);
		http_forward_free(f);
		return 0;
	}
	http_response_stream(res, status, ctype, forward_read, forward_stream_free, f);
	res->stream_sized = f->fr == FWD_LENGTH;
	res->stream_size = cl;
	return 0;
}
