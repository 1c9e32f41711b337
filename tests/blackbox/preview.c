/* Black-box tests of preview URLs (API.md "Preview", docs/API-DECISIONS.md
 * "Previews"): a request whose Host is a session's preview host is relayed
 * to port 8080 inside that session.
 *
 * Each test starts a small Bun app in a session of its own (a background
 * execution of server.ts below) and reaches it through the daemon's port
 * with the session's preview host: plain requests (X-Forwarded-* set),
 * keep-alive and pipelining, chunked request bodies, Server-Sent Events as
 * they are produced, 50 MB bodies chunked and with Content-Length,
 * WebSocket echo (a minimal RFC 6455 client below), the 502 page when
 * nothing listens and 404 for a session that does not exist, what a DELETE
 * does to open connections, 100 slow preview connections beside a
 * responsive API, waking a frozen and a deep-sleeping session (a daemon of
 * the test's own with short thresholds), and a real browser (Chromium,
 * headless, driven over the DevTools protocol on a pipe) rendering the
 * app's page, which talks to the app over a WebSocket.
 *
 * Requests go over raw sockets or curl handles of the tests' own, never the
 * client's shared handle: a connection serves the API or one preview, and
 * these tests mean to choose which.
 */
#include "../client.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <sodium.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

CLIENT_FIXTURE(NULL)

#define NO_SESSION_ID "ses_aaaaaaaaaaaaaaaaaaaa"
#define BIG_BODY_BYTES (50u * 1000u * 1000u)
#define SLOW_CONNECTIONS 100
#define BROWSER_TEXT "hello from the browser"

/* The session's app: GET /echo answers with what it was sent, /sse sends
 * three events a second apart (each carrying the time it was sent), /upload
 * reads the body as it comes and answers its length and sha256, /slow
 * answers after 10 s, /ws echoes WebSocket messages, / is a page whose
 * script echoes a message through /ws into the DOM. */
static const char server_ts[] =
    "const page = `<!doctype html><html><head><title>preview</title></head><body>\n"
    "<h1>Bunker preview</h1><p id=\"out\">waiting</p><script>\n"
    "const ws = new WebSocket((location.protocol === 'https:' ? 'wss://' : 'ws://') + "
    "location.host + '/ws');\n"
    "ws.onopen = () => ws.send('" BROWSER_TEXT "');\n"
    "ws.onmessage = (e) => { document.getElementById('out').textContent = 'echo: ' + e.data; };\n"
    "ws.onerror = () => { document.getElementById('out').textContent = 'websocket error'; };\n"
    "</script></body></html>`;\n"
    "Bun.serve({\n"
    "  port: Number(process.env.PORT),\n"
    "  idleTimeout: 120,\n"
    "  async fetch(req, server) {\n"
    "    const url = new URL(req.url);\n"
    "    if (url.pathname === '/ws') {\n"
    "      if (server.upgrade(req)) return;\n"
    "      return new Response('upgrade failed', { status: 400 });\n"
    "    }\n"
    "    if (url.pathname === '/echo')\n"
    "      return Response.json({ method: req.method, path: url.pathname + url.search,\n"
    "        headers: Object.fromEntries(req.headers), body: await req.text() });\n"
    "    if (url.pathname === '/sse') {\n"
    "      const stream = new ReadableStream({ type: 'direct', async pull(c) {\n"
    "        for (let i = 1; i <= 3; i++) {\n"
    "          c.write(`id: ${i}\\ndata: ${Date.now()}\\n\\n`);\n"
    "          c.flush();\n"
    "          if (i < 3) await Bun.sleep(1000);\n"
    "        }\n"
    "        c.close();\n"
    "      } });\n"
    "      return new Response(stream, { headers: { 'content-type': 'text/event-stream',\n"
    "        'cache-control': 'no-cache' } });\n"
    "    }\n"
    "    if (url.pathname === '/upload') {\n"
    "      const h = new Bun.CryptoHasher('sha256');\n"
    "      let n = 0;\n"
    "      if (req.body) for await (const chunk of req.body) { h.update(chunk); n += "
    "chunk.length; }\n"
    "      return Response.json({ length: n, sha256: h.digest('hex') });\n"
    "    }\n"
    "    if (url.pathname === '/slow') { await Bun.sleep(10000); return new Response('slow "
    "done'); }\n"
    "    if (url.pathname === '/') return new Response(page, { headers: { 'content-type': "
    "'text/html; charset=utf-8' } });\n"
    "    return new Response('hi');\n"
    "  },\n"
    "  websocket: { message(ws, msg) { ws.send(msg); } },\n"
    "});\n";

/* ---- small helpers ---- */

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static int64_t wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void skip_without_daemon(void)
{
	if (bk.skip_reason[0] != '\0')
		SKIP("%s", bk.skip_reason);
	CHECK(sodium_init() >= 0);
}

/* The preview host of session id on d, from its previewUrl as GET
 * /sessions/{id} gives it ("http://ses-x.localhost:port" -> the part after
 * "http://"). */
static void preview_host(const struct client_daemon *d, const char *key, const char *id, char *out,
			 size_t len)
{
	char path[128];
	snprintf(path, sizeof(path), "/sessions/%s", id);
	struct client_resp r;
	client_call(d, "GET", path, key, NULL, &r);
	CHECK_STATUS(&r, 200);
	const char *url = client_must_str(r.json, "previewUrl", r.body);
	CHECK_MSG(strncmp(url, "http://", 7) == 0, "previewUrl '%s'", url);
	char want[128];
	snprintf(want, sizeof(want), "ses-%s.localhost:%d", id + 4, d->port);
	CHECK_STR_EQ(url + 7, want);
	snprintf(out, len, "%s", url + 7);
	client_resp_free(&r);
}

/* ---- raw HTTP over a socket of our own ---- */

struct conn {
	int fd;
	char *buf;
	size_t len, cap;
};

static void conn_open(const struct client_daemon *d, struct conn *c)
{
	memset(c, 0, sizeof(*c));
	c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	CHECK(c->fd >= 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)d->port)};
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	CHECK_MSG(connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) == 0, "connect: %s",
		  strerror(errno));
	int one = 1;
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c->cap = 1 << 16;
	c->buf = malloc(c->cap);
	CHECK(c->buf != NULL);
}

static void conn_close(struct conn *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	free(c->buf);
	c->buf = NULL;
}

static void conn_send(struct conn *c, const void *data, size_t len)
{
	const char *p = data;
	while (len > 0) {
		ssize_t n = send(c->fd, p, len, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		CHECK_MSG(n > 0, "send: %s", strerror(errno));
		p += n;
		len -= (size_t)n;
	}
}

static void conn_sendf(struct conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void conn_sendf(struct conn *c, const char *fmt, ...)
{
	char buf[8192];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	CHECK(n > 0 && (size_t)n < sizeof(buf));
	conn_send(c, buf, (size_t)n);
}

/* Reads more into c->buf: 1 with bytes, 0 at EOF, -1 after timeout_ms. */
static int conn_fill(struct conn *c, int timeout_ms)
{
	if (c->cap - c->len < 4096) {
		c->cap *= 2;
		c->buf = realloc(c->buf, c->cap);
		CHECK(c->buf != NULL);
	}
	struct pollfd p = {.fd = c->fd, .events = POLLIN};
	int r = poll(&p, 1, timeout_ms);
	if (r == 0)
		return -1;
	ssize_t n = recv(c->fd, c->buf + c->len, c->cap - c->len - 1, 0);
	if (n < 0 && (errno == ECONNRESET || errno == EPIPE))
		return 0;
	CHECK_MSG(n >= 0, "recv: %s", strerror(errno));
	c->len += (size_t)n;
	return n > 0 ? 1 : 0;
}

static void conn_take(struct conn *c, size_t n)
{
	memmove(c->buf, c->buf + n, c->len - n);
	c->len -= n;
}

static ssize_t conn_find(const struct conn *c, const char *needle)
{
	size_t nl = strlen(needle);
	for (size_t i = 0; i + nl <= c->len; i++)
		if (memcmp(c->buf + i, needle, nl) == 0)
			return (ssize_t)i;
	return -1;
}

struct raw_resp {
	int status;
	char head[8192]; /* status line and headers */
	char *body;	 /* NUL-terminated */
	size_t len;
};

static void raw_resp_free(struct raw_resp *r)
{
	free(r->body);
	r->body = NULL;
}

/* The value of header name in r->head, copied into out; NULL when absent. */
static const char *raw_header(const struct raw_resp *r, const char *name, char *out, size_t len)
{
	size_t nl = strlen(name);
	for (const char *line = strstr(r->head, "\r\n"); line && line[2];
	     line = strstr(line + 2, "\r\n")) {
		const char *l = line + 2;
		if (strncasecmp(l, name, nl) == 0 && l[nl] == ':') {
			const char *v = l + nl + 1;
			while (*v == ' ')
				v++;
			size_t vl = strcspn(v, "\r");
			snprintf(out, len, "%.*s", (int)vl, v);
			return out;
		}
	}
	return NULL;
}

/* Reads one answer from c within timeout_ms: 0, or -1 when the connection
 * closed (or timed out) before an answer. A HEAD answer (head_only) has no
 * body; a 1xx other than 101 is skipped. */
static int raw_read(struct conn *c, struct raw_resp *r, bool head_only, int timeout_ms)
{
	memset(r, 0, sizeof(*r));
	double deadline = client_now() + timeout_ms / 1000.0;
	ssize_t end;
	for (;;) {
		while ((end = conn_find(c, "\r\n\r\n")) < 0) {
			int left = (int)((deadline - client_now()) * 1000);
			if (left <= 0 || conn_fill(c, left) <= 0)
				return -1;
		}
		CHECK((size_t)end + 4 < sizeof(r->head));
		memcpy(r->head, c->buf, (size_t)end + 4);
		r->head[end + 4] = '\0';
		conn_take(c, (size_t)end + 4);
		CHECK_MSG(sscanf(r->head, "HTTP/1.%*d %d", &r->status) == 1, "answer '%s'",
			  r->head);
		if (r->status >= 200 || r->status == 101)
			break;
	}
	char v[64];
	size_t cap = 1 << 16, len = 0;
	char *body = malloc(cap);
	CHECK(body != NULL);
	if (head_only || r->status == 101 || r->status == 204 || r->status == 304) {
		/* no body */
	} else if (raw_header(r, "Transfer-Encoding", v, sizeof(v)) && strcasestr(v, "chunked")) {
		for (;;) {
			ssize_t le;
			while ((le = conn_find(c, "\r\n")) < 0) {
				int left = (int)((deadline - client_now()) * 1000);
				CHECK_MSG(left > 0 && conn_fill(c, left) > 0,
					  "chunked answer cut short");
			}
			size_t size = strtoul(c->buf, NULL, 16);
			conn_take(c, (size_t)le + 2);
			while (c->len < size + 2) {
				int left = (int)((deadline - client_now()) * 1000);
				CHECK_MSG(left > 0 && conn_fill(c, left) > 0,
					  "chunked answer cut short");
			}
			if (size == 0) {
				conn_take(c, 2);
				break;
			}
			while (len + size + 1 > cap) {
				cap *= 2;
				body = realloc(body, cap);
				CHECK(body != NULL);
			}
			memcpy(body + len, c->buf, size);
			len += size;
			conn_take(c, size + 2);
		}
	} else if (raw_header(r, "Content-Length", v, sizeof(v))) {
		size_t want = strtoul(v, NULL, 10);
		while (c->len < want) {
			int left = (int)((deadline - client_now()) * 1000);
			CHECK_MSG(left > 0 && conn_fill(c, left) > 0, "answer cut short");
		}
		if (want + 1 > cap) {
			cap = want + 1;
			body = realloc(body, cap);
			CHECK(body != NULL);
		}
		memcpy(body, c->buf, want);
		len = want;
		conn_take(c, want);
	} else {
		for (;;) {
			int left = (int)((deadline - client_now()) * 1000);
			if (left <= 0 || conn_fill(c, left) <= 0)
				break;
		}
		if (c->len + 1 > cap) {
			cap = c->len + 1;
			body = realloc(body, cap);
			CHECK(body != NULL);
		}
		memcpy(body, c->buf, c->len);
		len = c->len;
		conn_take(c, c->len);
	}
	body[len] = '\0';
	r->body = body;
	r->len = len;
	return 0;
}

/* One request on a new connection: method path with extra header lines
 * (each ending in "\r\n", may be ""). */
static void raw_request(const struct client_daemon *d, const char *host, const char *method,
			const char *path, const char *extra, struct raw_resp *r)
{
	struct conn c;
	conn_open(d, &c);
	conn_sendf(&c, "%s %s HTTP/1.1\r\nHost: %s\r\n%sConnection: close\r\n\r\n", method, path,
		   host, extra);
	CHECK_MSG(raw_read(&c, r, strcmp(method, "HEAD") == 0, 30000) == 0,
		  "no answer to %s %s for %s", method, path, host);
	conn_close(&c);
}

/* True when the peer closes c within timeout_ms (bytes before are
 * dropped). */
static bool conn_closed_within(struct conn *c, int timeout_ms)
{
	double deadline = client_now() + timeout_ms / 1000.0;
	for (;;) {
		int left = (int)((deadline - client_now()) * 1000);
		if (left <= 0)
			return false;
		c->len = 0;
		int r = conn_fill(c, left);
		if (r == 0)
			return true;
		if (r < 0)
			return false;
	}
}

/* ---- the app ---- */

/* Starts the app in session id (a background execution) and waits until
 * its preview answers GET /health. */
static void app_start(const struct client_daemon *d, const char *key, const char *id,
		      const char *host)
{
	json_t *extra =
	    json_pack("{s:[{s:s,s:s}]}", "files", "path", "server.ts", "content", server_ts);
	struct client_resp r;
	json_t *body = json_pack("{s:s,s:s}", "sessionId", id, "command",
				 "nohup bun run server.ts > /dev/null 2>&1 &");
	json_object_update(body, extra);
	json_decref(extra);
	client_call_json(d, "POST", "/execute", key, body, &r);
	json_decref(body);
	CHECK_STATUS(&r, 200);
	client_resp_free(&r);
	double deadline = client_now() + 20;
	for (;;) {
		struct raw_resp rr;
		raw_request(d, host, "GET", "/health", "", &rr);
		int status = rr.status;
		raw_resp_free(&rr);
		if (status == 200)
			return;
		CHECK_MSG(status == 502, "GET /health of the app: %d", status);
		CHECK_MSG(client_now() < deadline, "the app did not come up in 20 s");
		sleep_ms(100);
	}
}

/* A session with the app running: its id (caller frees) and preview host. */
static char *session_with_app(const char *key, char *host, size_t len)
{
	char *id = client_must_create(key, NULL);
	preview_host(&bk.d, key, id, host, len);
	app_start(&bk.d, key, id, host);
	return id;
}

/* ---- plain requests ---- */

TEST(preview_forwards_requests_with_x_forwarded_headers)
{
	skip_without_daemon();
	char key[CLIENT_KEY_MAX], host[128];
	client_must_key("free", key, sizeof(key));
	char *id = session_with_app(key, host, sizeof(host));

	/* No key, and what the client claims of its own is replaced or
	 * extended, never trusted as is. */
	struct raw_resp r;
	struct conn c;
	conn_open(&bk.d, &c);
	conn_sendf(&c,
		   "POST /echo?x=1 HTTP/1.1\r\nHost: %s\r\nX-Forwarded-For: 203.0.113.7\r\n"
		   "X-Forwarded-Host: evil.example\r\nX-Forwarded-Proto: gopher\r\n"
		   "Content-Length: 5\r\nConnection: close\r\n\r\nhello",
		   host);
	CHECK(raw_read(&c, &r, false, 30000) == 0);
	conn_close(&c);
	CHECK_MSG(r.status == 200, "status %d: %s", r.status, r.body);
	char v[128];
	CHECK_MSG(raw_header(&r, "X-RateLimit-Limit", v, sizeof(v)) == NULL,
		  "a preview answer carries X-RateLimit-Limit");
	json_t *j = json_loads(r.body, 0, NULL);
	CHECK_MSG(j != NULL, "not JSON: %s", r.body);
	CHECK_STR_EQ(json_string_value(json_object_get(j, "method")), "POST");
	CHECK_STR_EQ(json_string_value(json_object_get(j, "path")), "/echo?x=1");
	CHECK_STR_EQ(json_string_value(json_object_get(j, "body")), "hello");
	json_t *h = json_object_get(j, "headers");
	CHECK_STR_EQ(json_string_value(json_object_get(h, "host")), host);
	CHECK_STR_EQ(json_string_value(json_object_get(h, "x-forwarded-for")),
		     "203.0.113.7, 127.0.0.1");
	CHECK_STR_EQ(json_string_value(json_object_get(h, "x-forwarded-host")), host);
	CHECK_STR_EQ(json_string_value(json_object_get(h, "x-forwarded-proto")), "http");
	CHECK(json_object_get(h, "authorization") == NULL);
	json_decref(j);
	raw_resp_free(&r);

	/* Without any of them: each is set. The host matches without regard
	 * to case. */
	char upper[128];
	snprintf(upper, sizeof(upper), "%s", host);
	for (char *p = upper; *p && *p != '.'; p++)
		*p = (char)(*p >= 'a' && *p <= 'z' ? *p - 32 : *p);
	raw_request(&bk.d, upper, "GET", "/echo", "", &r);
	CHECK_MSG(r.status == 200, "status %d for host '%s'", r.status, upper);
	j = json_loads(r.body, 0, NULL);
	h = json_object_get(j, "headers");
	CHECK_STR_EQ(json_string_value(json_object_get(h, "x-forwarded-for")), "127.0.0.1");
	CHECK_STR_EQ(json_string_value(json_object_get(h, "x-forwarded-host")), upper);
	json_decref(j);
	raw_resp_free(&r);

	/* HEAD: the answer's head only. */
	raw_request(&bk.d, host, "HEAD", "/", "", &r);
	CHECK_INT_EQ(r.status, 200);
	raw_resp_free(&r);
	client_must_delete(key, id);
	free(id);
}

TEST(preview_keep_alive_and_pipelining)
{
	skip_without_daemon();
	char key[CLIENT_KEY_MAX], host[128];
	client_must_key("free", key, sizeof(key));
	char *id = session_with_app(key, host, sizeof(host));

	/* Two requests one after the other on one connection. */
	struct conn c;
	conn_open(&bk.d, &c);
	struct raw_resp r;
	for (int i = 0; i < 2; i++) {
		conn_sendf(&c, "GET /echo?n=%d HTTP/1.1\r\nHost: %s\r\n\r\n", i, host);
		CHECK_MSG(raw_read(&c, &r, false, 30000) == 0,
			  "no answer to request %d of a kept-alive connection", i + 1);
		CHECK_INT_EQ(r.status, 200);
		char want[32];
		snprintf(want, sizeof(want), "/echo?n=%d", i);
		CHECK_MSG(strstr(r.body, want) != NULL, "answer %d: %s", i + 1, r.body);
		raw_resp_free(&r);
	}
	/* Three at once (pipelined, the middle one with a body); the answers
	 * come in order. */
	conn_sendf(&c,
		   "GET /echo?p=1 HTTP/1.1\r\nHost: %s\r\n\r\n"
		   "POST /echo?p=2 HTTP/1.1\r\nHost: %s\r\nContent-Length: 3\r\n\r\nabc"
		   "GET /echo?p=3 HTTP/1.1\r\nHost: %s\r\n\r\n",
		   host, host, host);
	for (int i = 1; i <= 3; i++) {
		CHECK_MSG(raw_read(&c, &r, false, 30000) == 0, "no pipelined answer %d", i);
		char want[32];
		snprintf(want, sizeof(want), "/echo?p=%d", i);
		CHECK_MSG(strstr(r.body, want) != NULL, "pipelined answer %d: %s", i, r.body);
		if (i == 2)
			CHECK_MSG(strstr(r.body, "\"body\":\"abc\"") != NULL, "%s", r.body);
		raw_resp_free(&r);
	}
	/* A request for another host on this connection is not relayed: the
	 * connection closes unanswered, and a client sends it again on a new
	 * one. */
	conn_sendf(&c, "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n", bk.d.port);
	CHECK_MSG(conn_closed_within(&c, 5000),
		  "a request for another host was answered on a preview connection");
	conn_close(&c);

	/* And the other way round: an API connection does not serve a
	 * preview host. */
	conn_open(&bk.d, &c);
	conn_sendf(&c, "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n", bk.d.port);
	CHECK(raw_read(&c, &r, false, 30000) == 0);
	CHECK_INT_EQ(r.status, 200);
	raw_resp_free(&r);
	conn_sendf(&c, "GET /echo HTTP/1.1\r\nHost: %s\r\n\r\n", host);
	CHECK_MSG(conn_closed_within(&c, 5000),
		  "a preview request was answered on an API connection");
	conn_close(&c);
	client_must_delete(key, id);
	free(id);
}

TEST(preview_chunked_request_bodies)
{
	skip_without_daemon();
	char key[CLIENT_KEY_MAX], host[128];
	client_must_key("free", key, sizeof(key));
	char *id = session_with_app(key, host, sizeof(host));

	/* Chunks with an extension and upper-case hex, sent in small pieces.
	 * (The relay passes trailers too, as its unit tests show; Bun takes
	 * a trailer for the next request's head, so none is sent here.) */
	const char *body = "5;ext=1\r\nhello\r\nA\r\n, previews\r\n0\r\n\r\n";
	struct conn c;
	conn_open(&bk.d, &c);
	conn_sendf(&c, "POST /upload HTTP/1.1\r\nHost: %s\r\nTransfer-Encoding: chunked\r\n\r\n",
		   host);
	size_t blen = strlen(body);
	for (size_t i = 0; i < blen; i += 3) {
		conn_send(&c, body + i, blen - i < 3 ? blen - i : 3);
		sleep_ms(2);
	}
	struct raw_resp r;
	CHECK(raw_read(&c, &r, false, 30000) == 0);
	CHECK_INT_EQ(r.status, 200);
	json_t *j = json_loads(r.body, 0, NULL);
	CHECK_MSG(j != NULL, "%s", r.body);
	CHECK_INT_EQ(json_integer_value(json_object_get(j, "length")), 15);
	unsigned char sum[crypto_hash_sha256_BYTES];
	crypto_hash_sha256(sum, (const unsigned char *)"hello, previews", 15);
	char hex[2 * sizeof(sum) + 1];
	sodium_bin2hex(hex, sizeof(hex), sum, sizeof(sum));
	CHECK_STR_EQ(json_string_value(json_object_get(j, "sha256")), hex);
	json_decref(j);
	raw_resp_free(&r);

	/* The connection goes on after a chunked body. */
	conn_sendf(&c, "GET /echo HTTP/1.1\r\nHost: %s\r\n\r\n", host);
	CHECK(raw_read(&c, &r, false, 30000) == 0);
	CHECK_INT_EQ(r.status, 200);
	raw_resp_free(&r);
	conn_close(&c);

	/* What two parsers could read two ways is refused with 400. */
	const char *bad[] = {
	    "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
	    "Transfer-Encoding: gzip\r\n",
	    "Content-Length: 5\r\nContent-Length: 6\r\n",
	    "Content-Length: -1\r\n",
	    "X-Folded: a\r\n b\r\n",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		conn_open(&bk.d, &c);
		conn_sendf(&c, "POST /echo HTTP/1.1\r\nHost: %s\r\n%s\r\n", host, bad[i]);
		CHECK_MSG(raw_read(&c, &r, false, 30000) == 0, "no answer to bad request %zu", i);
		CHECK_MSG(r.status == 400, "'%s': %d", bad[i], r.status);
		raw_resp_free(&r);
		conn_close(&c);
	}
	client_must_delete(key, id);
	free(id);
}

/* ---- streaming ---- */

TEST(preview_streams_server_sent_events_as_produced)
{
	skip_without_daemon();
	char key[CLIENT_KEY_MAX], host[128];
	client_must_key("free", key, sizeof(key));
	char *id = session_with_app(key, host, sizeof(host));

	struct conn c;
	conn_open(&bk.d, &c);
	conn_sendf(&c, "GET /sse HTTP/1.1\r\nHost: %s\r\nAccept: text/event-stream\r\n\r\n", host);
	/* Each event's data is the time (ms) the app sent it; the arrival of
	 * the first is stamped here, on the same clock. */
	int64_t sent[3], arrived[3];
	int n = 0;
	size_t scanned = 0;
	double deadline = client_now() + 20;
	while (n < 3) {
		int left = (int)((deadline - client_now()) * 1000);
		CHECK_MSG(left > 0 && conn_fill(&c, left) > 0, "the stream ended after %d events",
			  n);
		int64_t now = wall_ms();
		for (;;) {
			c.buf[c.len] = '\0';
			char *d = strstr(c.buf + scanned, "data: ");
			if (d == NULL || strchr(d, '\n') == NULL)
				break;
			sent[n] = strtoll(d + 6, NULL, 10);
			arrived[n] = now;
			n++;
			scanned = (size_t)(strchr(d, '\n') - c.buf);
		}
	}
	conn_close(&c);
	fprintf(stderr, "    event 1 sent %lld arrived %lld; event 3 sent %lld\n",
		(long long)sent[0], (long long)arrived[0], (long long)sent[2]);
	CHECK_MSG(sent[2] - sent[0] >= 1800, "the app sent its events %lld ms apart",
		  (long long)(sent[2] - sent[0]));
	CHECK_MSG(arrived[0] < sent[2],
		  "the first event arrived at %lld, after the last was sent at %lld: buffered",
		  (long long)arrived[0], (long long)sent[2]);
	CHECK_MSG(arrived[0] - sent[0] < 500, "the first event took %lld ms to arrive",
		  (long long)(arrived[0] - sent[0]));
	client_must_delete(key, id);
	free(id);
}

/* ---- large bodies ---- */

struct big_body {
	uint64_t state;
	size_t left;
	crypto_hash_sha256_state sha;
};

static size_t big_read(char *buf, size_t size, size_t nmemb, void *arg)
{
	struct big_body *b = arg;
	size_t n = size * nmemb;
	if (n > b->left)
		n = b->left;
	for (size_t i = 0; i < n; i++) {
		/* xorshift64: bytes that do not compress, made as needed. */
		b->state ^= b->state << 13;
		b->state ^= b->state >> 7;
		b->state ^= b->state << 17;
		buf[i] = (char)(b->state >> 24);
	}
	crypto_hash_sha256_update(&b->sha, (const unsigned char *)buf, n);
	b->left -= n;
	return n;
}

static size_t collect(char *data, size_t size, size_t nmemb, void *arg)
{
	char *out = arg;
	size_t have = strlen(out), n = size * nmemb;
	if (have + n < 4096) {
		memcpy(out + have, data, n);
		out[have + n] = '\0';
	}
	return n;
}

/* POSTs BIG_BODY_BYTES to /upload through the preview URL as is (curl
 * resolves its host to the daemon), chunked or with Content-Length. */
static void upload_big(const char *host, bool chunked)
{
	struct big_body b = {.state = chunked ? 0x9e3779b97f4a7c15ull : 0x2545f4914f6cdd1dull,
			     .left = BIG_BODY_BYTES};
	crypto_hash_sha256_init(&b.sha);
	CURL *c = curl_easy_init();
	CHECK(c != NULL);
	char url[256], resolve[256], answer[4096] = "";
	snprintf(url, sizeof(url), "http://%s/upload", host);
	char name[128];
	snprintf(name, sizeof(name), "%s", host);
	*strrchr(name, ':') = '\0';
	snprintf(resolve, sizeof(resolve), "%s:%d:127.0.0.1", name, bk.d.port);
	struct curl_slist *res = curl_slist_append(NULL, resolve);
	struct curl_slist *hdrs = curl_slist_append(NULL, "Content-Type: application/octet-stream");
	if (chunked)
		hdrs = curl_slist_append(hdrs, "Transfer-Encoding: chunked");
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_RESOLVE, res);
	curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
	curl_easy_setopt(c, CURLOPT_POST, 1L);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(c, CURLOPT_READFUNCTION, big_read);
	curl_easy_setopt(c, CURLOPT_READDATA, &b);
	if (!chunked)
		curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)BIG_BODY_BYTES);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, answer);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
	double t0 = client_now();
	CURLcode rc = curl_easy_perform(c);
	double secs = client_now() - t0;
	long status = 0;
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	curl_easy_cleanup(c);
	curl_slist_free_all(res);
	curl_slist_free_all(hdrs);
	CHECK_MSG(rc == CURLE_OK, "upload (%s): %s", chunked ? "chunked" : "Content-Length",
		  curl_easy_strerror(rc));
	CHECK_MSG(status == 200, "upload: %ld %s", status, answer);
	unsigned char sum[crypto_hash_sha256_BYTES];
	crypto_hash_sha256_final(&b.sha, sum);
	char hex[2 * sizeof(sum) + 1];
	sodium_bin2hex(hex, sizeof(hex), sum, sizeof(sum));
	json_t *j = json_loads(answer, 0, NULL);
	CHECK_MSG(j != NULL, "upload answer: %s", answer);
	CHECK_INT_EQ(json_integer_value(json_object_get(j, "length")), BIG_BODY_BYTES);
	CHECK_STR_EQ(json_string_value(json_object_get(j, "sha256")), hex);
	json_decref(j);
	fprintf(stderr, "    %u MB %s in %.2f s\n", BIG_BODY_BYTES / 1000000,
		chunked ? "chunked" : "with Content-Length", secs);
}

TEST_TIMEOUT(preview_large_bodies, 120)
{
	skip_without_daemon();
	char key[CLIENT_KEY_MAX], host[128];
	client_must_key("free", key, sizeof(key));
	char *id = session_with_app(key, host, sizeof(host));
	upload_big(host, true);
	upload_big(host, false);
	client_must_delete(key, id);
	free(id);
}

/* ---- WebSocket ---- */

/* SHA-1 (FIPS 180-4), for Sec-WebSocket-Accept only. */
static void sha1(const void *data, size_t len, unsigned char out[20])
{
	uint32_t h[5] = {0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0};
	size_t total = ((len + 8) / 64 + 1) * 64;
	unsigned char *m = calloc(1, total);
	CHECK(m != NULL);
	memcpy(m, data, len);
	m[len] = 0x80;
	uint64_t bits = (uint64_t)len * 8;
	for (int i = 0; i < 8; i++)
		m[total - 1 - i] = (unsigned char)(bits >> (8 * i));
	for (size_t off = 0; off < total; off += 64) {
		uint32_t w[80];
		for (int i = 0; i < 16; i++)
			w[i] = (uint32_t)m[off + 4 * i] << 24 | (uint32_t)m[off + 4 * i + 1] << 16 |
			       (uint32_t)m[off + 4 * i + 2] << 8 | m[off + 4 * i + 3];
		for (int i = 16; i < 80; i++) {
			uint32_t x = w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16];
			w[i] = x << 1 | x >> 31;
		}
		uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
		for (int i = 0; i < 80; i++) {
			uint32_t f, k;
			if (i < 20)
				f = (b & c) | (~b & d), k = 0x5A827999;
			else if (i < 40)
				f = b ^ c ^ d, k = 0x6ED9EBA1;
			else if (i < 60)
				f = (b & c) | (b & d) | (c & d), k = 0x8F1BBCDC;
			else
				f = b ^ c ^ d, k = 0xCA62C1D6;
			uint32_t t = (a << 5 | a >> 27) + f + e + k + w[i];
			e = d;
			d = c;
			c = b << 30 | b >> 2;
			b = a;
			a = t;
		}
		h[0] += a;
		h[1] += b;
		h[2] += c;
		h[3] += d;
		h[4] += e;
	}
	free(m);
	for (int i = 0; i < 5; i++)
		for (int j = 0; j < 4; j++)
			out[4 * i + j] = (unsigned char)(h[i] >> (24 - 8 * j));
}

/* Opens a WebSocket to path through host: the handshake, with its
 * Sec-WebSocket-Accept checked. */
static void ws_open(const struct client_daemon *d, const char *host, const char *path,
		    struct conn *c)
{
	unsigned char nonce[16];
	randombytes_buf(nonce, sizeof(nonce));
	char key[32];
	sodium_bin2base64(key, sizeof(key), nonce, sizeof(nonce), sodium_base64_VARIANT_ORIGINAL);
	conn_open(d, c);
	conn_sendf(c,
		   "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
		   "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n",
		   path, host, key);
	struct raw_resp r;
	CHECK_MSG(raw_read(c, &r, false, 30000) == 0, "no answer to the WebSocket handshake");
	CHECK_MSG(r.status == 101, "handshake: %d %s", r.status, r.head);
	char cat[128], accept[64], want[64];
	snprintf(cat, sizeof(cat), "%s258EAFA5-E914-47DA-95CA-C5AB0DC85B11", key);
	unsigned char digest[20];
	sha1(cat, strlen(cat), digest);
	sodium_bin2base64(want, sizeof(want), digest, sizeof(digest),
			  sodium_base64_VARIANT_ORIGINAL);
	CHECK_MSG(raw_header(&r, "Sec-WebSocket-Accept", accept, sizeof(accept)) != NULL,
		  "no Sec-WebSocket-Accept: %s", r.head);
	CHECK_STR_EQ(accept, want);
	raw_resp_free(&r);
}

/* Sends one masked frame (a client's frames are masked, RFC 6455 5.3). */
static void ws_send(struct conn *c, int opcode, const void *data, size_t len)
{
	unsigned char head[14];
	size_t hl = 0;
	head[hl++] = (unsigned char)(0x80 | opcode);
	if (len < 126) {
		head[hl++] = (unsigned char)(0x80 | len);
	} else if (len < 65536) {
		head[hl++] = 0x80 | 126;
		head[hl++] = (unsigned char)(len >> 8);
		head[hl++] = (unsigned char)len;
	} else {
		head[hl++] = 0x80 | 127;
		for (int i = 7; i >= 0; i--)
			head[hl++] = (unsigned char)((uint64_t)len >> (8 * i));
	}
	unsigned char mask[4];
	randombytes_buf(mask, sizeof(mask));
	memcpy(head + hl, mask, 4);
	hl += 4;
	unsigned char *frame = malloc(hl + len);
	CHECK(frame != NULL);
	memcpy(frame, head, hl);
	for (size_t i = 0; i < len; i++)
		frame[hl + i] = ((const unsigned char *)data)[i] ^ mask[i % 4];
	conn_send(c, frame, hl + len);
	free(frame);
}

/* Reads one whole (unfragmented, unmasked) frame: its opcode, and its
 * payload into *data (caller frees). */
static int ws_recv(struct conn *c, char **data, size_t *len, int timeout_ms)
{
	double deadline = client_now() + timeout_ms / 1000.0;
	for (;;) {
		if (c->len >= 2) {
			const unsigned char *b = (const unsigned char *)c->buf;
			size_t hl = 2, pl = b[1] & 0x7f;
			if (pl == 126)
				hl = 4;
			else if (pl == 127)
				hl = 10;
			if (c->len >= hl) {
				if (pl == 126) {
					pl = (size_t)b[2] << 8 | b[3];
				} else if (pl == 127) {
					pl = 0;
					for (int i = 0; i < 8; i++)
						pl = pl << 8 | b[2 + i];
				}
				CHECK_MSG(!(b[1] & 0x80), "the server masked a frame");
				if (c->len >= hl + pl) {
					int opcode = b[0] & 0x0f;
					CHECK_MSG(b[0] & 0x80, "a fragmented frame");
					*data = malloc(pl + 1);
					CHECK(*data != NULL);
					memcpy(*data, c->buf + hl, pl);
					(*data)[pl] = '\0';
					*len = pl;
					conn_take(c, hl + pl);
					return opcode;
				}
			}
		}
		int left = (int)((deadline - client_now()) * 1000);
		CHECK_MSG(left > 0, "no WebSocket frame in %d ms", timeout_ms);
		CHECK_MSG(conn_fill(c, left) > 0, "the WebSocket connection closed");
	}
}

TEST(preview_websocket_echo)
{
	skip_without_daemon();
	char key[CLIENT_KEY_MAX], host[128];
	client_must_key("free", key, sizeof(key));
	char *id = session_with_app(key, host, sizeof(host));
	struct conn c;
	ws_open(&bk.d, host, "/ws", &c);
	/* A short text frame, then one of 100 000 bytes (64-bit length). */
	const char *hello = "hello through the preview";
	ws_send(&c, 1, hello, strlen(hello));
	char *got;
	size_t len;
	CHECK_INT_EQ(ws_recv(&c, &got, &len, 10000), 1);
	CHECK_STR_EQ(got, hello);
	free(got);
	size_t big = 100000;
	char *payload = malloc(big);
	CHECK(payload != NULL);
	for (size_t i = 0; i < big; i++)
		payload[i] = (char)('a' + i % 26);
	ws_send(&c, 1, payload, big);
	CHECK_INT_EQ(ws_recv(&c, &got, &len, 10000), 1);
	CHECK_INT_EQ(len, big);
	CHECK(memcmp(got, payload, big) == 0);
	free(got);
	free(payload);
	/* A close is answered with a close, and the connection ends. */
	unsigned char code[2] = {0x03, 0xe8};
	ws_send(&c, 8, code, 2);
	CHECK_INT_EQ(ws_recv(&c, &got, &len, 10000), 8);
	free(got);
	CHECK_MSG(conn_closed_within(&c, 5000), "the connection stayed open after the close");
	conn_close(&c);
	client_must_delete(key, id);
	free(id);
}

/* ---- errors ---- */

TEST(preview_502_when_nothing_listens)
{
	skip_without_daemon();
	char key[CLIENT_KEY_MAX], host[128];
	client_must_key("free", key, sizeof(key));
	char *id = client_must_create(key, NULL);
	preview_host(&bk.d, key, id, host, sizeof(host));
	struct raw_resp r;
	raw_request(&bk.d, host, "GET", "/", "", &r);
	CHECK_MSG(r.status == 502, "status %d: %s", r.status, r.body);
	char v[128];
	CHECK(raw_header(&r, "Content-Type", v, sizeof(v)) != NULL);
	CHECK_MSG(strncmp(v, "text/html", 9) == 0, "Content-Type %s", v);
	CHECK_MSG(raw_header(&r, "X-RateLimit-Limit", v, sizeof(v)) == NULL,
		  "a preview answer carries X-RateLimit-Limit");
	CHECK_MSG(strstr(r.body, "8080") && strstr(r.body, "Bun.serve") &&
		      strstr(r.body, "process.env.PORT") && strstr(r.body, id),
		  "the 502 page does not say how to start a server: %s", r.body);
	raw_resp_free(&r);
	/* HEAD gets the head alone. */
	raw_request(&bk.d, host, "HEAD", "/", "", &r);
	CHECK_INT_EQ(r.status, 502);
	raw_resp_free(&r);
	/* Once a server listens, the same URL serves it. */
	app_start(&bk.d, key, id, host);
	raw_request(&bk.d, host, "GET", "/", "", &r);
	CHECK_INT_EQ(r.status, 200);
	CHECK(strstr(r.body, "Bunker preview") != NULL);
	raw_resp_free(&r);
	client_must_delete(key, id);
	free(id);
}

TEST(preview_404_for_unknown_and_deleted_sessions)
{
	skip_without_daemon();
	char host[128];
	snprintf(host, sizeof(host), "ses-%s.localhost:%d", NO_SESSION_ID + 4, bk.d.port);
	struct raw_resp r;
	raw_request(&bk.d, host, "GET", "/", "", &r);
	CHECK_MSG(r.status == 404, "unknown session: %d %s", r.status, r.body);
	char v[128];
	CHECK(raw_header(&r, "Content-Type", v, sizeof(v)) != NULL);
	CHECK_MSG(strncmp(v, "text/html", 9) == 0, "Content-Type %s", v);
	CHECK(strstr(r.body, "No such session") != NULL);
	raw_resp_free(&r);

	char key[CLIENT_KEY_MAX];
	client_must_key("free", key, sizeof(key));
	char *id = client_must_create(key, NULL);
	preview_host(&bk.d, key, id, host, sizeof(host));
	client_must_delete(key, id);
	raw_request(&bk.d, host, "GET", "/", "", &r);
	CHECK_MSG(r.status == 404, "deleted session: %d %s", r.status, r.body);
	raw_resp_free(&r);

	/* Hosts that are not a preview's are the API's: another port, a
	 * malformed id, the bare domain. */
	char h[128];
	snprintf(h, sizeof(h), "ses-%s.localhost:1", id + 4);
	raw_request(&bk.d, h, "GET", "/healthz", "", &r);
	CHECK_MSG(r.status == 200 && strstr(r.body, "\"ok\""), "%s: %d", h, r.status);
	raw_resp_free(&r);
	snprintf(h, sizeof(h), "ses-%.19s.localhost:%d", id + 4, bk.d.port);
	raw_request(&bk.d, h, "GET", "/healthz", "", &r);
	CHECK_MSG(r.status == 200 && strstr(r.body, "\"ok\""), "%s: %d", h, r.status);
	raw_resp_free(&r);
	snprintf(h, sizeof(h), "localhost:%d", bk.d.port);
	raw_request(&bk.d, h, "GET", "/healthz", "", &r);
	CHECK_MSG(r.status == 200 && strstr(r.body, "\"ok\""), "%s: %d", h, r.status);
	raw_resp_free(&r);
	free(id);
}

TEST(preview_delete_ends_open_connections)
{
	skip_without_daemon();
	char key[CLIENT_KEY_MAX], host[128];
	client_must_key("free", key, sizeof(key));
	char *id = session_with_app(key, host, sizeof(host));
	/* A WebSocket and an idle kept-alive connection, both open. */
	struct conn ws, ka;
	ws_open(&bk.d, host, "/ws", &ws);
	conn_open(&bk.d, &ka);
	conn_sendf(&ka, "GET /echo HTTP/1.1\r\nHost: %s\r\n\r\n", host);
	struct raw_resp r;
	CHECK(raw_read(&ka, &r, false, 30000) == 0);
	raw_resp_free(&r);
	double t0 = client_now();
	client_must_delete(key, id);
	double took = client_now() - t0;
	CHECK_MSG(took < 5, "DELETE took %.1f s with preview connections open", took);
	CHECK_MSG(conn_closed_within(&ws, 5000), "the WebSocket outlived its session");
	CHECK_MSG(conn_closed_within(&ka, 5000), "a kept-alive connection outlived its session");
	conn_close(&ws);
	conn_close(&ka);
	free(id);
}

/* ---- many slow connections ---- */

TEST(preview_slow_connections_leave_the_api_responsive)
{
	skip_without_daemon();
	char key[CLIENT_KEY_MAX], host[128];
	client_must_key("paid", key, sizeof(key));
	char *id = session_with_app(key, host, sizeof(host));

	/* 100 requests that the app answers after 10 s, all open at once. */
	struct conn *slow = calloc(SLOW_CONNECTIONS, sizeof(*slow));
	CHECK(slow != NULL);
	double t0 = client_now();
	for (int i = 0; i < SLOW_CONNECTIONS; i++) {
		conn_open(&bk.d, &slow[i]);
		conn_sendf(&slow[i], "GET /slow HTTP/1.1\r\nHost: %s\r\n\r\n", host);
	}
	sleep_ms(500);
	/* Meanwhile the API answers at once, with and without a key. */
	double worst = 0;
	for (int round = 0; round < 5; round++) {
		struct client_resp r;
		struct client_req req = {.method = "GET", .path = "/healthz", .timeout_s = 5};
		CHECK(client_request(&bk.d, &req, &r) == 0);
		CHECK_STATUS(&r, 200);
		worst = r.seconds > worst ? r.seconds : worst;
		client_resp_free(&r);
		struct client_req list = {
		    .method = "GET", .path = "/sessions", .key = key, .timeout_s = 5};
		CHECK(client_request(&bk.d, &list, &r) == 0);
		CHECK_STATUS(&r, 200);
		worst = r.seconds > worst ? r.seconds : worst;
		client_resp_free(&r);
		sleep_ms(200);
	}
	double during = client_now() - t0;
	fprintf(stderr, "    slowest API answer with %d slow previews open: %.1f ms\n",
		SLOW_CONNECTIONS, worst * 1000);
	CHECK_MSG(during < 9.5, "the API checks took until %.1f s: the slow requests ended first",
		  during);
	CHECK_MSG(worst < 1.0, "an API answer took %.2f s", worst);
	/* And every slow request is answered in the end. */
	int answered = 0;
	for (int i = 0; i < SLOW_CONNECTIONS; i++) {
		struct raw_resp r;
		if (raw_read(&slow[i], &r, false, 30000) == 0 && r.status == 200 &&
		    strcmp(r.body, "slow done") == 0)
			answered++;
		raw_resp_free(&r);
		conn_close(&slow[i]);
	}
	free(slow);
	CHECK_INT_EQ(answered, SLOW_CONNECTIONS);
	client_must_delete(key, id);
	free(id);
}

/* ---- waking ---- */

static const char *const sleepy_args[] = {"--idle-after", "1", "--deep-sleep-after", "3", NULL};

static char *state_of(const struct client_daemon *d, const char *key, const char *id)
{
	char path[128];
	snprintf(path, sizeof(path), "/sessions/%s", id);
	struct client_resp r;
	client_call(d, "GET", path, key, NULL, &r);
	CHECK_STATUS(&r, 200);
	char *state = strdup(client_must_str(r.json, "state", r.body));
	client_resp_free(&r);
	return state;
}

static bool wait_state(const struct client_daemon *d, const char *key, const char *id,
		       const char *want, double seconds)
{
	double deadline = client_now() + seconds;
	while (client_now() < deadline) {
		char *s = state_of(d, key, id);
		bool ok = strcmp(s, want) == 0;
		free(s);
		if (ok)
			return true;
		sleep_ms(200);
	}
	return false;
}

TEST_TIMEOUT(preview_wakes_sleeping_sessions, 120)
{
	skip_without_daemon();
	struct client_daemon d = {0};
	CHECK_MSG(client_daemon_start(&d, sleepy_args) == 0, "cannot start a daemon of our own");
	char key[CLIENT_KEY_MAX];
	CHECK(client_key_create(&d, "paid", key, sizeof(key)) == 0);
	struct client_resp r;
	client_call(&d, "POST", "/sessions/create", key, NULL, &r);
	CHECK_STATUS(&r, 200);
	char *id = strdup(client_must_str(r.json, "sessionId", r.body));
	client_resp_free(&r);
	char host[128];
	preview_host(&d, key, id, host, sizeof(host));
	app_start(&d, key, id, host);

	/* Frozen: a preview request thaws it, and its server answers. */
	CHECK_MSG(wait_state(&d, key, id, "idle", 10), "the session did not go idle");
	struct raw_resp rr;
	raw_request(&d, host, "GET", "/echo", "", &rr);
	CHECK_MSG(rr.status == 200, "preview of an idle session: %d %s", rr.status, rr.body);
	raw_resp_free(&rr);
	char *st = state_of(&d, key, id);
	CHECK_STR_EQ(st, "active");
	free(st);

	/* An open connection keeps it active past both thresholds. */
	struct conn ws;
	ws_open(&d, host, "/ws", &ws);
	for (int i = 0; i < 5; i++) {
		sleep_ms(1000);
		st = state_of(&d, key, id);
		CHECK_MSG(strcmp(st, "active") == 0, "'%s' %d s into an open WebSocket", st, i + 1);
		free(st);
	}
	ws_send(&ws, 1, "still here", 10);
	char *got;
	size_t len;
	CHECK_INT_EQ(ws_recv(&ws, &got, &len, 10000), 1);
	CHECK_STR_EQ(got, "still here");
	free(got);
	conn_close(&ws);

	/* Deep sleep ends its processes: a preview request wakes it (its
	 * files come back) and, with no server running yet, gets the 502
	 * page; starting the app again serves it. */
	CHECK_MSG(wait_state(&d, key, id, "deep-sleep", 15), "the session did not deep-sleep");
	raw_request(&d, host, "GET", "/", "", &rr);
	CHECK_MSG(rr.status == 502, "preview of a deep-sleeping session: %d", rr.status);
	CHECK(strstr(rr.body, "deep sleep") != NULL);
	raw_resp_free(&rr);
	st = state_of(&d, key, id);
	CHECK_MSG(strcmp(st, "active") == 0 || strcmp(st, "idle") == 0,
		  "a preview request left the session '%s'", st);
	free(st);
	char path[128];
	snprintf(path, sizeof(path), "/files/read?sessionId=%s&path=server.ts", id);
	client_call(&d, "GET", path, key, NULL, &r);
	CHECK_STATUS(&r, 200);
	client_resp_free(&r);
	app_start(&d, key, id, host);
	raw_request(&d, host, "GET", "/", "", &rr);
	CHECK_INT_EQ(rr.status, 200);
	raw_resp_free(&rr);
	free(id);
	int status = client_daemon_stop(&d);
	CHECK_MSG(status == 0, "our daemon stopped with status 0x%x", status);
	CHECK_INT_EQ(client_daemon_check(&d), 0);
}

/* ---- a real browser ---- */

/* Chromium's DevTools protocol over --remote-debugging-pipe: JSON
 * messages, each ended by a NUL, read by the browser from its fd 3 and
 * written to its fd 4. */
struct cdp {
	pid_t pid;
	int to, from;
	char *buf;
	size_t len, cap;
	int next_id;
	char session[128];
};

static void cdp_send(struct cdp *b, const char *session, const char *method, json_t *params,
		     int *id)
{
	*id = ++b->next_id;
	json_t *msg = json_pack("{s:i,s:s}", "id", *id, "method", method);
	if (params)
		json_object_set_new(msg, "params", params);
	if (session)
		json_object_set_new(msg, "sessionId", json_string(session));
	char *text = json_dumps(msg, JSON_COMPACT);
	json_decref(msg);
	size_t n = strlen(text) + 1; /* the NUL too */
	const char *p = text;
	while (n > 0) {
		ssize_t w = write(b->to, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		CHECK_MSG(w > 0, "cannot write to chromium: %s", strerror(errno));
		p += w;
		n -= (size_t)w;
	}
	free(text);
}

/* The answer to message id (events before it are dropped): the "result"
 * object (new reference), or NULL with *error set when the browser went
 * away, said no, or did not answer in timeout_ms. */
static json_t *cdp_wait(struct cdp *b, int id, int timeout_ms, char *error, size_t elen)
{
	double deadline = client_now() + timeout_ms / 1000.0;
	for (;;) {
		char *nul = b->len ? memchr(b->buf, '\0', b->len) : NULL;
		while (nul) {
			json_t *msg = json_loadb(b->buf, (size_t)(nul - b->buf), 0, NULL);
			size_t used = (size_t)(nul - b->buf) + 1;
			memmove(b->buf, b->buf + used, b->len - used);
			b->len -= used;
			json_t *mid = json_object_get(msg, "id");
			if (msg && json_is_integer(mid) && json_integer_value(mid) == id) {
				json_t *res = json_object_get(msg, "result");
				if (res) {
					json_incref(res);
					json_decref(msg);
					return res;
				}
				char *t = json_dumps(json_object_get(msg, "error"), JSON_COMPACT);
				snprintf(error, elen, "%s", t ? t : "error");
				free(t);
				json_decref(msg);
				return NULL;
			}
			json_decref(msg);
			nul = b->len ? memchr(b->buf, '\0', b->len) : NULL;
		}
		int left = (int)((deadline - client_now()) * 1000);
		if (left <= 0) {
			snprintf(error, elen, "no answer in %d ms", timeout_ms);
			return NULL;
		}
		struct pollfd p = {.fd = b->from, .events = POLLIN};
		if (poll(&p, 1, left) <= 0)
			continue;
		if (b->cap - b->len < 65536) {
			b->cap = b->cap ? b->cap * 2 : 1 << 20;
			b->buf = realloc(b->buf, b->cap);
			CHECK(b->buf != NULL);
		}
		ssize_t n = read(b->from, b->buf + b->len, b->cap - b->len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			snprintf(error, elen, "chromium closed its pipe");
			return NULL;
		}
		b->len += (size_t)n;
	}
}

static json_t *cdp_call(struct cdp *b, const char *session, const char *method, json_t *params,
			int timeout_ms, char *error, size_t elen)
{
	int id;
	cdp_send(b, session, method, params, &id);
	return cdp_wait(b, id, timeout_ms, error, elen);
}

/* The last bytes of a file, for a SKIP or failure message. */
static void file_tail(const char *path, char *out, size_t len)
{
	out[0] = '\0';
	FILE *f = fopen(path, "re");
	if (f == NULL)
		return;
	fseek(f, 0, SEEK_END);
	long size = ftell(f);
	long from = size > (long)len - 1 ? size - (long)len + 1 : 0;
	fseek(f, from, SEEK_SET);
	size_t n = fread(out, 1, len - 1, f);
	out[n] = '\0';
	for (char *p = out; *p; p++)
		if (*p == '\n')
			*p = ' ';
	fclose(f);
}

static void cdp_stop(struct cdp *b)
{
	if (b->pid <= 0)
		return;
	close(b->to);
	close(b->from);
	for (int i = 0; i < 50; i++) {
		if (waitpid(b->pid, NULL, WNOHANG) == b->pid) {
			b->pid = 0;
			break;
		}
		sleep_ms(100);
	}
	if (b->pid > 0) {
		kill(b->pid, SIGKILL);
		waitpid(b->pid, NULL, 0);
	}
	b->pid = 0;
	free(b->buf);
}

static void mkdir_p(const char *path)
{
	char tmp[PATH_MAX];
	snprintf(tmp, sizeof(tmp), "%s", path);
	for (char *p = tmp + 1; *p; p++) {
		if (*p == '/') {
			*p = '\0';
			mkdir(tmp, 0755);
			*p = '/';
		}
	}
	mkdir(tmp, 0755);
}

TEST_TIMEOUT(preview_in_a_real_browser, 120)
{
	skip_without_daemon();
	const char *chromium = "/usr/bin/chromium";
	if (access(chromium, X_OK) != 0)
		SKIP("no browser: %s is missing (scripts/install-deps.sh installs Debian's "
		     "chromium)",
		     chromium);
	char build[PATH_MAX], outdir[PATH_MAX + 64], profile[PATH_MAX + 64], log[PATH_MAX + 64];
	CHECK(client_build_dir(build, sizeof(build)) == 0);
	snprintf(outdir, sizeof(outdir), "%s/test-output/preview", build);
	mkdir_p(outdir);
	snprintf(log, sizeof(log), "%s/chromium.log", outdir);
	snprintf(profile, sizeof(profile), "/tmp/bk-chromium-XXXXXX");
	CHECK(mkdtemp(profile) != NULL);

	char key[CLIENT_KEY_MAX], host[128];
	client_must_key("free", key, sizeof(key));
	char *id = session_with_app(key, host, sizeof(host));
	char url[256];
	snprintf(url, sizeof(url), "http://%s/", host);

	int to[2], from[2];
	CHECK(pipe2(to, O_CLOEXEC) == 0 && pipe2(from, O_CLOEXEC) == 0);
	char user_data[PATH_MAX + 80];
	snprintf(user_data, sizeof(user_data), "--user-data-dir=%s", profile);
	char *const argv[] = {(char *)chromium,
			      "--headless",
			      "--no-sandbox",
			      "--disable-gpu",
			      "--disable-quic",
			      "--no-first-run",
			      "--disable-background-networking",
			      "--disable-component-update",
			      "--disable-sync",
			      "--no-proxy-server",
			      "--window-size=800,600",
			      "--remote-debugging-pipe",
			      user_data,
			      "about:blank",
			      NULL};
	fflush(NULL);
	struct cdp b = {.to = to[1], .from = from[0]};
	b.pid = fork();
	CHECK(b.pid >= 0);
	if (b.pid == 0) {
		int lf = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		int nf = open("/dev/null", O_RDONLY);
		if (lf < 0 || nf < 0 || dup2(nf, 0) < 0 || dup2(lf, 1) < 0 || dup2(lf, 2) < 0 ||
		    dup2(to[0], 3) < 0 || dup2(from[1], 4) < 0)
			_exit(127);
		execv(chromium, argv);
		_exit(127);
	}
	close(to[0]);
	close(from[1]);

	/* A browser that cannot start here is a SKIP, with its own words. */
	char error[512], tail[400];
	json_t *res =
	    cdp_call(&b, NULL, "Target.createTarget", json_pack("{s:s}", "url", "about:blank"),
		     30000, error, sizeof(error));
	if (res == NULL) {
		cdp_stop(&b);
		file_tail(log, tail, sizeof(tail));
		client_must_delete(key, id);
		SKIP("chromium cannot run here (%s): %s", error, tail);
	}
	char target[128];
	snprintf(target, sizeof(target), "%s", json_string_value(json_object_get(res, "targetId")));
	json_decref(res);
	res = cdp_call(&b, NULL, "Target.attachToTarget",
		       json_pack("{s:s,s:b}", "targetId", target, "flatten", 1), 10000, error,
		       sizeof(error));
	CHECK_MSG(res != NULL, "attachToTarget: %s", error);
	snprintf(b.session, sizeof(b.session), "%s",
		 json_string_value(json_object_get(res, "sessionId")));
	json_decref(res);

	/* The preview URL as the API gave it: Chromium resolves *.localhost
	 * to the loopback itself. */
	res = cdp_call(&b, b.session, "Page.navigate", json_pack("{s:s}", "url", url), 30000, error,
		       sizeof(error));
	CHECK_MSG(res != NULL, "navigate: %s", error);
	const char *nav_err = json_string_value(json_object_get(res, "errorText"));
	CHECK_MSG(nav_err == NULL, "navigating to %s: %s", url, nav_err);
	json_decref(res);

	char text[256] = "";
	double deadline = client_now() + 30;
	while (client_now() < deadline) {
		res = cdp_call(&b, b.session, "Runtime.evaluate",
			       json_pack("{s:s,s:b}", "expression",
					 "(document.getElementById('out') || {}).textContent || ''",
					 "returnByValue", 1),
			       10000, error, sizeof(error));
		CHECK_MSG(res != NULL, "evaluate: %s", error);
		const char *v =
		    json_string_value(json_object_get(json_object_get(res, "result"), "value"));
		snprintf(text, sizeof(text), "%s", v ? v : "");
		json_decref(res);
		if (strcmp(text, "echo: " BROWSER_TEXT) == 0)
			break;
		sleep_ms(100);
	}
	char shot[PATH_MAX + 64];
	snprintf(shot, sizeof(shot), "%s/browser.png", outdir);
	res = cdp_call(&b, b.session, "Page.captureScreenshot", json_pack("{s:s}", "format", "png"),
		       30000, error, sizeof(error));
	if (res != NULL) {
		const char *data = json_string_value(json_object_get(res, "data"));
		size_t dl = data ? strlen(data) : 0;
		unsigned char *png = malloc(dl + 1);
		size_t pl = 0;
		if (png && data &&
		    sodium_base642bin(png, dl, data, dl, NULL, &pl, NULL,
				      sodium_base64_VARIANT_ORIGINAL) == 0) {
			FILE *f = fopen(shot, "we");
			if (f) {
				fwrite(png, 1, pl, f);
				fclose(f);
				fprintf(stderr, "    screenshot: %s (%zu bytes)\n", shot, pl);
			}
		}
		free(png);
		json_decref(res);
	} else {
		fprintf(stderr, "    no screenshot: %s\n", error);
	}
	int bid;
	cdp_send(&b, NULL, "Browser.close", NULL, &bid);
	cdp_stop(&b);
	char rm[PATH_MAX + 80];
	snprintf(rm, sizeof(rm), "rm -rf '%s'", profile);
	if (system(rm) != 0)
		fprintf(stderr, "    cannot remove %s\n", profile);
	CHECK_MSG(strcmp(text, "echo: " BROWSER_TEXT) == 0,
		  "the page shows '%s', not the WebSocket's echo", text);
	client_must_delete(key, id);
	free(id);
}
