/* Black-box tests of preview URLs (API.md "Preview", docs/API-DECISIONS.md
 * "Previews"): a request whose Host is a session's preview host is relayed
 * to port 8080 inside that session; in the InstaVM dialect, a request whose
 * Host is "vm-<20>-<port>.<domain>", or whose path starts with
 * "/v1/app/<session id>/<port>" on any host, is relayed to that port, and
 * GET /v1/sessions/app-url/{id} names both.
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
 * app's page, which talks to the app over a WebSocket, through the preview
 * host and through the path proxy. The InstaVM tests run a second copy of
 * the app on another port and check app-url's answers and errors, the
 * prefix the path proxy cuts, the port hosts, and the 307 that sends a
 * kept-alive connection's request for another target to a connection of
 * its own.
 *
 * Requests go over raw sockets or curl handles of the tests' own, never the
 * client's shared handle: a connection serves the API or one preview, and
 * these tests mean to choose which.
 */
#include "../client.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <dirent.h>
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
/* The port of the app's second copy in the InstaVM tests: not $PORT, so
 * that reaching it shows the port was chosen by the URL. */
#define APP_PORT 3000

/* The session's app, on $PORT: GET /echo answers with what it was sent
 * (and the port it serves), /sse sends three events a second apart (each
 * carrying the time it was sent), /upload reads the body as it comes and
 * answers its length and sha256, /slow answers after 10 s, /ws echoes
 * WebSocket messages, / is a page whose script echoes a message through
 * /ws into the DOM, and anything else is "hi". The page and "hi" name the
 * request-target the app got in X-Target, which shows what the path proxy
 * cut. The page opens its WebSocket relative to its own URL, as an app
 * must to work behind the path proxy's prefix. */
static const char server_ts[] =
    "const page = `<!doctype html><html><head><title>preview</title></head><body>\n"
    "<h1>Bunker preview</h1><p id=\"out\">waiting</p><script>\n"
    "const u = new URL('ws', location.href);\n"
    "u.protocol = location.protocol === 'https:' ? 'wss:' : 'ws:';\n"
    "const ws = new WebSocket(u.href);\n"
    "ws.onopen = () => ws.send('" BROWSER_TEXT "');\n"
    "ws.onmessage = (e) => { document.getElementById('out').textContent = 'echo: ' + e.data; };\n"
    "ws.onerror = () => { document.getElementById('out').textContent = 'websocket error'; };\n"
    "</script></body></html>`;\n"
    "Bun.serve({\n"
    "  port: Number(process.env.PORT),\n"
    "  idleTimeout: 120,\n"
    "  async fetch(req, server) {\n"
    "    const url = new URL(req.url);\n"
    "    const target = url.pathname + url.search;\n"
    "    if (url.pathname === '/ws') {\n"
    "      if (server.upgrade(req)) return;\n"
    "      return new Response('upgrade failed', { status: 400 });\n"
    "    }\n"
    "    if (url.pathname === '/echo')\n"
    "      return Response.json({ method: req.method, path: target, port: server.port,\n"
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
    "'text/html; charset=utf-8', 'x-target': target } });\n"
    "    return new Response('hi', { headers: { 'x-target': target } });\n"
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
			/* Anything else here (another answer's head, say) means
			 * the answer was cut short and something else followed. */
			CHECK_MSG(strchr("0123456789abcdefABCDEF", c->buf[0]) != NULL,
				  "not a chunk size after %zu bytes of a chunked answer: '%.*s'",
				  len, (int)le, c->buf);
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

/* ---- answers of the daemon's own ---- */

/* The daemon's own address as a Host: the API's, and the path proxy's. */
static void api_host(const struct client_daemon *d, char *out, size_t len)
{
	snprintf(out, len, "127.0.0.1:%d", d->port);
}

/* GET /healthz with Host host is answered by the API: host is not a
 * preview's. */
static void check_api_host(const struct client_daemon *d, const char *host)
{
	struct raw_resp r;
	raw_request(d, host, "GET", "/healthz", "", &r);
	CHECK_MSG(r.status == 200 && strstr(r.body, "\"ok\""), "%s: %d %s", host, r.status, r.body);
	raw_resp_free(&r);
}

/* target on the API's host is answered by the API with 404 not_found:
 * it is no path proxy's. */
static void check_api_not_found(const struct client_daemon *d, const char *target)
{
	char api[64];
	api_host(d, api, sizeof(api));
	struct raw_resp r;
	raw_request(d, api, "GET", target, "", &r);
	json_t *j = json_loads(r.body, 0, NULL);
	CHECK_MSG(r.status == 404 && j != NULL, "%s: %d %s", target, r.status, r.body);
	CHECK_STR_EQ(json_string_value(json_object_get(json_object_get(j, "error"), "code")),
		     "not_found");
	json_decref(j);
	raw_resp_free(&r);
}

/* A page of the preview's own (404, 502): its status, HTML (a browser is
 * what opens a preview), no rate limit's headers (no key was used), and a
 * body that says needle. */
static void check_page(const struct raw_resp *r, int status, const char *needle)
{
	CHECK_MSG(r->status == status, "want the %d page: %d %s", status, r->status, r->body);
	char v[128];
	CHECK(raw_header(r, "Content-Type", v, sizeof(v)) != NULL);
	CHECK_MSG(strncmp(v, "text/html", 9) == 0, "Content-Type %s", v);
	CHECK_MSG(raw_header(r, "X-RateLimit-Limit", v, sizeof(v)) == NULL,
		  "a preview answer carries X-RateLimit-Limit");
	CHECK_MSG(strstr(r->body, needle) != NULL, "the %d page does not say '%s': %s", status,
		  needle, r->body);
}

/* Reads the answer that sends a request to a connection of its own: a 307
 * to location, after which the connection closes. */
static void expect_redirect(struct conn *c, const char *location)
{
	struct raw_resp r;
	CHECK_MSG(raw_read(c, &r, false, 10000) == 0, "no answer where a 307 to %s was due",
		  location);
	CHECK_MSG(r.status == 307, "want a 307 to %s: %s%s", location, r.head, r.body);
	char v[2048];
	CHECK_MSG(raw_header(&r, "Location", v, sizeof(v)) != NULL, "no Location: %s", r.head);
	CHECK_STR_EQ(v, location);
	CHECK_MSG(raw_header(&r, "Connection", v, sizeof(v)) != NULL && strcasecmp(v, "close") == 0,
		  "a 307 without Connection: close: %s", r.head);
	raw_resp_free(&r);
	CHECK_MSG(conn_closed_within(c, 5000), "the connection stayed open after the 307 to %s",
		  location);
}

/* ---- the app ---- */

/* Starts the app on port inside session id (a background execution) and
 * waits until GET /health through host (a preview host of that port)
 * reaches it. */
static void app_start(const struct client_daemon *d, const char *key, const char *id, int port,
		      const char *host)
{
	json_t *extra =
	    json_pack("{s:[{s:s,s:s}]}", "files", "path", "server.ts", "content", server_ts);
	char command[128];
	snprintf(command, sizeof(command), "PORT=%d nohup bun run server.ts > /dev/null 2>&1 &",
		 port);
	struct client_resp r;
	json_t *body = json_pack("{s:s,s:s}", "sessionId", id, "command", command);
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

/* A session with the app running on port 8080: its id (caller frees) and
 * preview host. */
static char *session_with_app(const char *key, char *host, size_t len)
{
	char *id = client_must_create(key, NULL);
	preview_host(&bk.d, key, id, host, len);
	app_start(&bk.d, key, id, 8080, host);
	return id;
}

/* The two ways in to a port of a session that app-url names: the path
 * proxy's prefix on the API's host ("/v1/app/<id>/<port>": its url without
 * the scheme, the host and the final '/') and the session's host for the
 * port ("vm-<20>-<port>.localhost:<daemon port>": its direct_url without
 * the scheme and the '/'). */
struct way_in {
	char prefix[128];
	char host[128];
};

/* GET /v1/sessions/app-url/{id}<query> with headers (a NULL-terminated
 * list, or NULL for none). */
static void app_url_call(const struct client_daemon *d, const char *id, const char *query,
			 const char *const *headers, struct client_resp *r)
{
	char path[256];
	snprintf(path, sizeof(path), "/v1/sessions/app-url/%s%s", id, query);
	struct client_req req = {.method = "GET", .path = path, .headers = headers};
	CHECK(client_request(d, &req, r) == 0);
}

/* GET /v1/sessions/app-url/{id}, with ?port= unless port is 0 (which
 * leaves it to the default, 8080), the key in X-API-Key, and every member
 * of the answer checked: status is the session's state. */
static void app_url(const struct client_daemon *d, const char *key, const char *id, int port,
		    const char *status, struct way_in *out)
{
	char query[32] = "", header[CLIENT_KEY_MAX + 16];
	if (port)
		snprintf(query, sizeof(query), "?port=%d", port);
	snprintf(header, sizeof(header), "X-API-Key: %s", key);
	const char *const headers[] = {header, NULL};
	struct client_resp r;
	app_url_call(d, id, query, headers, &r);
	CHECK_STATUS(&r, 200);
	int p = port ? port : 8080;
	snprintf(out->prefix, sizeof(out->prefix), "/v1/app/%s/%d", id, p);
	snprintf(out->host, sizeof(out->host), "vm-%s-%d.localhost:%d", id + 4, p, d->port);
	char want[256];
	snprintf(want, sizeof(want), "http://127.0.0.1:%d%s/", d->port, out->prefix);
	CHECK_STR_EQ(client_must_str(r.json, "url", r.body), want);
	snprintf(want, sizeof(want), "http://%s/", out->host);
	CHECK_STR_EQ(client_must_str(r.json, "direct_url", r.body), want);
	CHECK_MSG(json_is_null(json_object_get(r.json, "vm_ip")), "vm_ip: %s", r.body);
	CHECK_INT_EQ(client_must_int(r.json, "port", r.body), p);
	snprintf(want, sizeof(want), "vm-%s", id + 4);
	CHECK_STR_EQ(client_must_str(r.json, "vm_id", r.body), want);
	CHECK_STR_EQ(client_must_str(r.json, "session_id", r.body), id);
	CHECK_STR_EQ(client_must_str(r.json, "status", r.body), status);
	CHECK_MSG(client_must_int(r.json, "expires_in_seconds", r.body) > 0, "%s", r.body);
	CHECK_MSG(json_object_size(r.json) == 8, "app-url has members beyond its 8: %s", r.body);
	client_resp_free(&r);
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
	/* A request for another host on this connection is not relayed: a
	 * 307 sends it to the same URL (absolute, as the host differs), which
	 * a client opens on a new connection. */
	char api[64], location[128];
	api_host(&bk.d, api, sizeof(api));
	conn_sendf(&c, "GET /healthz HTTP/1.1\r\nHost: %s\r\n\r\n", api);
	snprintf(location, sizeof(location), "http://%s/healthz", api);
	expect_redirect(&c, location);
	conn_close(&c);

	/* And the other way round: an API connection does not serve a
	 * preview host, and the 307 to the same target (relative: the
	 * request's own host) sends the client to a connection of its own. */
	conn_open(&bk.d, &c);
	conn_sendf(&c, "GET /healthz HTTP/1.1\r\nHost: %s\r\n\r\n", api);
	CHECK(raw_read(&c, &r, false, 30000) == 0);
	CHECK_INT_EQ(r.status, 200);
	raw_resp_free(&r);
	conn_sendf(&c, "GET /echo HTTP/1.1\r\nHost: %s\r\n\r\n", host);
	expect_redirect(&c, "/echo");
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
	check_page(&r, 502, "Nothing is listening on port 8080");
	CHECK_MSG(strstr(r.body, "Bun.serve({port: 8080") && strstr(r.body, "$PORT") &&
		      strstr(r.body, id),
		  "the 502 page does not say how to start a server: %s", r.body);
	raw_resp_free(&r);
	/* HEAD gets the head alone. */
	raw_request(&bk.d, host, "HEAD", "/", "", &r);
	CHECK_INT_EQ(r.status, 502);
	raw_resp_free(&r);
	/* Once a server listens, the same URL serves it. */
	app_start(&bk.d, key, id, 8080, host);
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
	check_page(&r, 404, "No such session");
	raw_resp_free(&r);

	char key[CLIENT_KEY_MAX];
	client_must_key("free", key, sizeof(key));
	char *id = client_must_create(key, NULL);
	preview_host(&bk.d, key, id, host, sizeof(host));
	client_must_delete(key, id);
	raw_request(&bk.d, host, "GET", "/", "", &r);
	check_page(&r, 404, id);
	raw_resp_free(&r);

	/* Hosts that are not a preview's are the API's: another port, a
	 * malformed id, the bare domain. */
	char h[128];
	snprintf(h, sizeof(h), "ses-%s.localhost:1", id + 4);
	check_api_host(&bk.d, h);
	snprintf(h, sizeof(h), "ses-%.19s.localhost:%d", id + 4, bk.d.port);
	check_api_host(&bk.d, h);
	snprintf(h, sizeof(h), "localhost:%d", bk.d.port);
	check_api_host(&bk.d, h);
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

/* ---- the InstaVM dialect: app-url, the path proxy, port hosts ---- */

/* A FastAPI error that is not a validation's: status, and a body of
 * {"detail": "<message>"} alone. Returns the message (borrowed from
 * r->json). */
static const char *detail_of(const struct client_resp *r, long status)
{
	CHECK_STATUS(r, status);
	char ct[128];
	CHECK_MSG(client_resp_header(r, "Content-Type", ct, sizeof(ct)) != NULL &&
		      strncasecmp(ct, "application/json", 16) == 0,
		  "not JSON: %s", r->headers);
	const char *detail = json_string_value(json_object_get(r->json, "detail"));
	CHECK_MSG(detail != NULL && *detail != '\0' && json_object_size(r->json) == 1,
		  "want {\"detail\": \"...\"}: %s", r->body);
	return detail;
}

TEST(app_url_names_the_path_proxy_and_the_port_host)
{
	skip_without_daemon();
	char key[CLIENT_KEY_MAX], auth[CLIENT_KEY_MAX + 32];
	client_must_key("free", key, sizeof(key));
	char *id = client_must_create(key, "{\"ttl\":600}");
	/* The key in X-API-Key; the port given, at both ends of its range,
	 * and left to its default (8080, the buntime dialect's $PORT). */
	struct way_in w;
	app_url(&bk.d, key, id, APP_PORT, "active", &w);
	app_url(&bk.d, key, id, 1, "active", &w);
	app_url(&bk.d, key, id, 65535, "active", &w);
	app_url(&bk.d, key, id, 0, "active", &w);

	/* The key as a Bearer: the same answer, with the rate limit's
	 * headers as every authenticated answer has them, and the time left
	 * of the session's ttl. */
	snprintf(auth, sizeof(auth), "Authorization: Bearer %s", key);
	const char *const bearer[] = {auth, NULL};
	struct client_resp r;
	app_url_call(&bk.d, id, "?port=3000", bearer, &r);
	CHECK_STATUS(&r, 200);
	char want[256], v[64];
	snprintf(want, sizeof(want), "http://127.0.0.1:%d/v1/app/%s/3000/", bk.d.port, id);
	CHECK_STR_EQ(client_must_str(r.json, "url", r.body), want);
	long long left = client_must_int(r.json, "expires_in_seconds", r.body);
	CHECK_MSG(left > 590 && left <= 600, "expires_in_seconds %lld of a ttl of 600", left);
	CHECK_MSG(client_resp_header(&r, "X-RateLimit-Limit", v, sizeof(v)) != NULL,
		  "no X-RateLimit-Limit: %s", r.headers);
	client_resp_free(&r);

	/* url is on the host the client reached the API by (a proxy in front
	 * keeps it); direct_url is always on the preview domain. */
	const char *const named[] = {auth, "Host: bunker.example:8443", NULL};
	app_url_call(&bk.d, id, "?port=3000", named, &r);
	CHECK_STATUS(&r, 200);
	snprintf(want, sizeof(want), "http://bunker.example:8443/v1/app/%s/3000/", id);
	CHECK_STR_EQ(client_must_str(r.json, "url", r.body), want);
	snprintf(want, sizeof(want), "http://vm-%s-3000.localhost:%d/", id + 4, bk.d.port);
	CHECK_STR_EQ(client_must_str(r.json, "direct_url", r.body), want);
	client_resp_free(&r);
	/* A Host that cannot go into a URL as it is (it would move the path
	 * elsewhere) gives way to the preview domain. */
	const char *const odd[] = {auth, "Host: evil.example/x?", NULL};
	app_url_call(&bk.d, id, "?port=3000", odd, &r);
	CHECK_STATUS(&r, 200);
	snprintf(want, sizeof(want), "http://localhost:%d/v1/app/%s/3000/", bk.d.port, id);
	CHECK_STR_EQ(client_must_str(r.json, "url", r.body), want);
	client_resp_free(&r);
	client_must_delete(key, id);
	free(id);
}

TEST(app_url_errors_in_the_fastapi_shape)
{
	skip_without_daemon();
	char key[CLIENT_KEY_MAX], other[CLIENT_KEY_MAX], header[CLIENT_KEY_MAX + 16],
	    theirs[CLIENT_KEY_MAX + 16];
	client_must_key("free", key, sizeof(key));
	client_must_key("free", other, sizeof(other));
	char *id = client_must_create(key, NULL);
	snprintf(header, sizeof(header), "X-API-Key: %s", key);
	snprintf(theirs, sizeof(theirs), "X-API-Key: %s", other);
	const char *const ours[] = {header, NULL};
	const char *const not_ours[] = {theirs, NULL};
	const char *const unknown[] = {"X-API-Key: bk_nosuchkey", NULL};

	/* No key: 401, saying both ways to send one. A key that does not
	 * exist: 401 too. */
	struct client_resp r;
	app_url_call(&bk.d, id, "", NULL, &r);
	const char *detail = detail_of(&r, 401);
	CHECK_MSG(strstr(detail, "Authorization: Bearer") && strstr(detail, "X-API-Key"),
		  "the 401 does not say how to send a key: %s", detail);
	client_resp_free(&r);
	app_url_call(&bk.d, id, "", unknown, &r);
	detail_of(&r, 401);
	client_resp_free(&r);

	/* A session that does not exist, and one of another key: 404 both,
	 * so that an id tells a stranger nothing. */
	app_url_call(&bk.d, NO_SESSION_ID, "", ours, &r);
	detail_of(&r, 404);
	client_resp_free(&r);
	app_url_call(&bk.d, id, "", not_ours, &r);
	detail_of(&r, 404);
	client_resp_free(&r);

	/* A port that is no port: 422, with FastAPI's list of faults naming
	 * the query argument. */
	const char *bad[] = {"0", "65536", "abc", "-1", "", "3000abc", "99999999999"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char query[64];
		snprintf(query, sizeof(query), "?port=%s", bad[i]);
		app_url_call(&bk.d, id, query, ours, &r);
		CHECK_MSG(r.status == 422, "port=%s: %ld %s", bad[i], r.status, r.body);
		json_t *list = json_object_get(r.json, "detail");
		json_t *e = json_array_get(list, 0);
		json_t *loc = json_object_get(e, "loc");
		CHECK_MSG(json_object_size(r.json) == 1 && json_array_size(list) == 1 &&
			      json_object_size(e) == 3 && json_array_size(loc) == 2,
			  "port=%s: not FastAPI's shape: %s", bad[i], r.body);
		CHECK_STR_EQ(json_string_value(json_array_get(loc, 0)), "query");
		CHECK_STR_EQ(json_string_value(json_array_get(loc, 1)), "port");
		CHECK_STR_EQ(json_string_value(json_object_get(e, "type")), "value_error");
		const char *msg = json_string_value(json_object_get(e, "msg"));
		CHECK_MSG(msg && strstr(msg, "port") && strstr(msg, "65535"), "port=%s: msg %s",
			  bad[i], r.body);
		client_resp_free(&r);
	}
	client_must_delete(key, id);
	free(id);
}

/* A session of a new free key with the app on APP_PORT: its id (to
 * free), the API's host and the ways in that app-url names. */
static char *app_session(char *key, size_t keylen, char *api, size_t apilen, struct way_in *w)
{
	skip_without_daemon();
	client_must_key("free", key, keylen);
	api_host(&bk.d, api, apilen);
	char *id = client_must_create(key, NULL);
	app_url(&bk.d, key, id, APP_PORT, "active", w);
	app_start(&bk.d, key, id, APP_PORT, w->host);
	return id;
}

TEST(preview_path_proxy_cuts_the_prefix)
{
	char key[CLIENT_KEY_MAX], api[64];
	struct way_in w;
	char *id = app_session(key, sizeof(key), api, sizeof(api), &w);

	/* What follows the prefix is the app's target, always starting with
	 * '/': the prefix alone is the app's root. */
	static const struct {
		const char *after, *want;
	} cut[] = {
	    {"", "/"},		{"/", "/"},	{"?q=1", "/?q=1"}, {"/a/b?x", "/a/b?x"},
	    {"/a/b/", "/a/b/"}, {"//x", "//x"},
	};
	struct raw_resp r;
	char target[256], v[256];
	for (size_t i = 0; i < sizeof(cut) / sizeof(cut[0]); i++) {
		snprintf(target, sizeof(target), "%s%s", w.prefix, cut[i].after);
		raw_request(&bk.d, api, "GET", target, "", &r);
		CHECK_MSG(r.status == 200, "%s: %d %s", target, r.status, r.body);
		CHECK_MSG(raw_header(&r, "X-Target", v, sizeof(v)) != NULL, "%s: %s", target,
			  r.head);
		CHECK_MSG(strcmp(v, cut[i].want) == 0, "%s reached the app as '%s', not '%s'",
			  target, v, cut[i].want);
		raw_resp_free(&r);
	}

	/* No key, and the forwarded headers as for a preview host, with the
	 * prefix in X-Forwarded-Prefix: a client's own is dropped, or it
	 * could make the app build its links elsewhere. */
	struct conn c;
	conn_open(&bk.d, &c);
	conn_sendf(&c,
		   "POST %s/echo?x=1 HTTP/1.1\r\nHost: %s\r\nX-Forwarded-For: 203.0.113.7\r\n"
		   "X-Forwarded-Host: evil.example\r\nX-Forwarded-Prefix: /evil\r\n"
		   "Content-Length: 5\r\nConnection: close\r\n\r\nhello",
		   w.prefix, api);
	CHECK(raw_read(&c, &r, false, 30000) == 0);
	conn_close(&c);
	CHECK_MSG(r.status == 200, "status %d: %s", r.status, r.body);
	CHECK_MSG(raw_header(&r, "X-RateLimit-Limit", v, sizeof(v)) == NULL,
		  "a preview answer carries X-RateLimit-Limit");
	json_t *j = json_loads(r.body, 0, NULL);
	CHECK_MSG(j != NULL, "not JSON: %s", r.body);
	CHECK_STR_EQ(json_string_value(json_object_get(j, "method")), "POST");
	CHECK_STR_EQ(json_string_value(json_object_get(j, "path")), "/echo?x=1");
	CHECK_INT_EQ(json_integer_value(json_object_get(j, "port")), APP_PORT);
	CHECK_STR_EQ(json_string_value(json_object_get(j, "body")), "hello");
	json_t *h = json_object_get(j, "headers");
	CHECK_STR_EQ(json_string_value(json_object_get(h, "host")), api);
	CHECK_STR_EQ(json_string_value(json_object_get(h, "x-forwarded-for")),
		     "203.0.113.7, 127.0.0.1");
	CHECK_STR_EQ(json_string_value(json_object_get(h, "x-forwarded-host")), api);
	CHECK_STR_EQ(json_string_value(json_object_get(h, "x-forwarded-proto")), "http");
	CHECK_STR_EQ(json_string_value(json_object_get(h, "x-forwarded-prefix")), w.prefix);
	json_decref(j);
	raw_resp_free(&r);

	/* Kept alive and pipelined, every request under the prefix goes up
	 * cut; the answers come in order. */
	conn_open(&bk.d, &c);
	conn_sendf(&c,
		   "GET %s/echo?p=1 HTTP/1.1\r\nHost: %s\r\n\r\n"
		   "GET %s?p=2 HTTP/1.1\r\nHost: %s\r\n\r\n"
		   "HEAD %s/ HTTP/1.1\r\nHost: %s\r\n\r\n",
		   w.prefix, api, w.prefix, api, w.prefix, api);
	CHECK(raw_read(&c, &r, false, 30000) == 0);
	CHECK_MSG(r.status == 200 && strstr(r.body, "\"path\":\"/echo?p=1\""), "answer 1: %s",
		  r.body);
	raw_resp_free(&r);
	CHECK(raw_read(&c, &r, false, 30000) == 0);
	CHECK_MSG(r.status == 200 && raw_header(&r, "X-Target", v, sizeof(v)) &&
		      strcmp(v, "/?p=2") == 0,
		  "answer 2: %s", r.head);
	raw_resp_free(&r);
	CHECK(raw_read(&c, &r, true, 30000) == 0);
	CHECK_INT_EQ(r.status, 200);
	raw_resp_free(&r);
	conn_close(&c);

	/* A WebSocket through the prefix. */
	snprintf(target, sizeof(target), "%s/ws", w.prefix);
	ws_open(&bk.d, api, target, &c);
	const char *hello = "hello through the path proxy";
	ws_send(&c, 1, hello, strlen(hello));
	char *got;
	size_t len;
	CHECK_INT_EQ(ws_recv(&c, &got, &len, 10000), 1);
	CHECK_STR_EQ(got, hello);
	free(got);
	conn_close(&c);
	client_must_delete(key, id);
	free(id);
}

TEST(preview_port_hosts_reach_their_port)
{
	skip_without_daemon();
	char key[CLIENT_KEY_MAX], host[128];
	client_must_key("free", key, sizeof(key));
	char *id = session_with_app(key, host, sizeof(host));
	struct way_in w;
	app_url(&bk.d, key, id, APP_PORT, "active", &w);
	app_start(&bk.d, key, id, APP_PORT, w.host);

	/* Each host reaches its own port; the path goes up as it is, even
	 * one that looks like the path proxy's, and there is no prefix to
	 * forward (a client's own is dropped). */
	char vm8080[128];
	snprintf(vm8080, sizeof(vm8080), "vm-%s-8080.localhost:%d", id + 4, bk.d.port);
	const struct {
		const char *host;
		int port;
	} to[] = {{w.host, APP_PORT}, {host, 8080}, {vm8080, 8080}};
	struct raw_resp r;
	char path[160], v[256];
	for (size_t i = 0; i < sizeof(to) / sizeof(to[0]); i++) {
		raw_request(&bk.d, to[i].host, "GET", "/echo?y=1", "X-Forwarded-Prefix: /evil\r\n",
			    &r);
		json_t *j = json_loads(r.body, 0, NULL);
		CHECK_MSG(r.status == 200 && j != NULL, "%s: %d %s", to[i].host, r.status, r.body);
		CHECK_STR_EQ(json_string_value(json_object_get(j, "path")), "/echo?y=1");
		CHECK_MSG(json_integer_value(json_object_get(j, "port")) == to[i].port,
			  "%s reached the app on port %lld, not %d", to[i].host,
			  json_integer_value(json_object_get(j, "port")), to[i].port);
		json_t *h = json_object_get(j, "headers");
		CHECK_MSG(json_object_get(h, "x-forwarded-prefix") == NULL,
			  "%s: an X-Forwarded-Prefix went up: %s", to[i].host, r.body);
		CHECK_STR_EQ(json_string_value(json_object_get(h, "x-forwarded-host")), to[i].host);
		json_decref(j);
		raw_resp_free(&r);
	}
	snprintf(path, sizeof(path), "%s/a", w.prefix);
	raw_request(&bk.d, w.host, "GET", path, "", &r);
	CHECK_MSG(r.status == 200 && raw_header(&r, "X-Target", v, sizeof(v)) &&
		      strcmp(v, path) == 0,
		  "%s on a port host: %d %s", path, r.status, r.head);
	raw_resp_free(&r);

	/* The host matches without regard to case. */
	char upper[128];
	snprintf(upper, sizeof(upper), "%s", w.host);
	for (char *p = upper; *p && *p != '.'; p++)
		*p = (char)(*p >= 'a' && *p <= 'z' ? *p - 32 : *p);
	raw_request(&bk.d, upper, "GET", "/echo", "", &r);
	CHECK_MSG(r.status == 200 && strstr(r.body, "\"port\":3000"), "%s: %d %s", upper, r.status,
		  r.body);
	raw_resp_free(&r);
	/* WebSocket too. */
	struct conn c;
	ws_open(&bk.d, w.host, "/ws", &c);
	ws_send(&c, 1, "port host", 9);
	char *got;
	size_t len;
	CHECK_INT_EQ(ws_recv(&c, &got, &len, 10000), 1);
	CHECK_STR_EQ(got, "port host");
	free(got);
	conn_close(&c);

	/* Hosts of that form that name no port are the API's: port 0, a
	 * leading zero, past 65535, no port, an id one short, another
	 * domain port. */
	char short_id[20];
	snprintf(short_id, sizeof(short_id), "%s", id + 4);
	const char *forms[][2] = {
	    {id + 4, "-0"}, {id + 4, "-03000"},	 {id + 4, "-65536"},
	    {id + 4, ""},   {short_id, "-3000"},
	};
	char h[160];
	for (size_t i = 0; i < sizeof(forms) / sizeof(forms[0]); i++) {
		snprintf(h, sizeof(h), "vm-%s%s.localhost:%d", forms[i][0], forms[i][1], bk.d.port);
		check_api_host(&bk.d, h);
	}
	snprintf(h, sizeof(h), "vm-%s-3000.localhost:1", id + 4);
	check_api_host(&bk.d, h);
	client_must_delete(key, id);
	free(id);
}

TEST(preview_path_proxy_404_502_and_forms_of_the_api)
{
	skip_without_daemon();
	char key[CLIENT_KEY_MAX], api[64], target[256];
	client_must_key("free", key, sizeof(key));
	api_host(&bk.d, api, sizeof(api));
	struct raw_resp r;
	/* A session that does not exist: the preview's 404 page. */
	raw_request(&bk.d, api, "GET", "/v1/app/" NO_SESSION_ID "/3000/", "", &r);
	check_page(&r, 404, "No such session");
	raw_resp_free(&r);

	/* Nothing on the port: the 502 page, naming that port. */
	char *id = client_must_create(key, NULL);
	snprintf(target, sizeof(target), "/v1/app/%s/3001/", id);
	raw_request(&bk.d, api, "GET", target, "", &r);
	check_page(&r, 502, "Nothing is listening on port 3001");
	CHECK_MSG(strstr(r.body, "Bun.serve({port: 3001") && strstr(r.body, id),
		  "the 502 page does not say how to start a server on 3001: %s", r.body);
	raw_resp_free(&r);
	raw_request(&bk.d, api, "HEAD", target, "", &r);
	CHECK_INT_EQ(r.status, 502);
	raw_resp_free(&r);

	/* Targets that only look like the path proxy's are the API's, which
	 * has no such route: port 0, a leading zero, past 65535, more than 5
	 * digits, not all digits, no port, an id of the wrong form. */
	char upper[32], short_id[24];
	snprintf(upper, sizeof(upper), "%s", id);
	for (char *p = upper + 4; *p; p++)
		*p = (char)(*p >= 'a' && *p <= 'z' ? *p - 32 : *p);
	snprintf(short_id, sizeof(short_id), "%s", id);
	const char *forms[][3] = {
	    {"/v1/app/", id, "/0/"},
	    {"/v1/app/", id, "/03000/"},
	    {"/v1/app/", id, "/65536"},
	    {"/v1/app/", id, "/123456/"},
	    {"/v1/app/", id, "/3000x"},
	    {"/v1/app/", id, "/"},
	    {"/v1/app/", id, ""},
	    {"/v1/app/", upper, "/3000/"},
	    {"/v1/app/", short_id, "/3000/"},
	    {"/v1/app/x", id, "/3000/"},
	    {"/v1/app/", "", "/3000/"},
	    {"/v1/apps/", id, "/3000/"},
	};
	for (size_t i = 0; i < sizeof(forms) / sizeof(forms[0]); i++) {
		snprintf(target, sizeof(target), "%s%s%s", forms[i][0], forms[i][1], forms[i][2]);
		check_api_not_found(&bk.d, target);
	}

	/* A deleted session: the 404 page again. */
	client_must_delete(key, id);
	snprintf(target, sizeof(target), "/v1/app/%s/3001/", id);
	raw_request(&bk.d, api, "GET", target, "", &r);
	check_page(&r, 404, id);
	raw_resp_free(&r);
	free(id);
}

/* GETs url on handle c (a POST of body when body is not NULL), following
 * redirects: the status; the answer into out (4096 bytes), and how many
 * redirects were followed into *followed. */
static long curl_fetch(CURL *c, const char *url, const char *body, char *out, long *followed)
{
	out[0] = '\0';
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
	curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
	curl_easy_setopt(c, CURLOPT_MAXREDIRS, 3L);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, out);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
	if (body)
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
	else
		curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
	CURLcode rc = curl_easy_perform(c);
	CHECK_MSG(rc == CURLE_OK, "%s: %s", url, curl_easy_strerror(rc));
	long status = 0;
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	curl_easy_getinfo(c, CURLINFO_REDIRECT_COUNT, followed);
	return status;
}

TEST(preview_mixed_keep_alive_connections_redirect)
{
	char key[CLIENT_KEY_MAX], api[64];
	struct way_in w;
	char *id = app_session(key, sizeof(key), api, sizeof(api), &w);
	struct conn c;
	struct raw_resp r;
	char location[512];

	/* A connection that began with the API cannot become a relay: a
	 * later request for the path proxy, or for a port host, is sent to
	 * the same target with a 307, which a client opens on a connection
	 * of its own. The same holds when the request has a body that the
	 * API never reads. */
	for (int i = 0; i < 3; i++) {
		conn_open(&bk.d, &c);
		conn_sendf(&c, "GET /healthz HTTP/1.1\r\nHost: %s\r\n\r\n", api);
		CHECK(raw_read(&c, &r, false, 30000) == 0);
		CHECK_INT_EQ(r.status, 200);
		raw_resp_free(&r);
		if (i == 0) {
			conn_sendf(&c, "GET %s/echo?a=1 HTTP/1.1\r\nHost: %s\r\n\r\n", w.prefix,
				   api);
			snprintf(location, sizeof(location), "%s/echo?a=1", w.prefix);
		} else if (i == 1) {
			conn_sendf(&c,
				   "POST %s/echo HTTP/1.1\r\nHost: %s\r\nContent-Length: 5\r\n\r\n"
				   "hello",
				   w.prefix, api);
			snprintf(location, sizeof(location), "%s/echo", w.prefix);
		} else {
			conn_sendf(&c, "GET /echo?b=2 HTTP/1.1\r\nHost: %s\r\n\r\n", w.host);
			snprintf(location, sizeof(location), "/echo?b=2");
		}
		expect_redirect(&c, location);
		conn_close(&c);
	}

	/* A path proxy connection relays only its own prefix: a later
	 * request for the API, for another port of the session or for
	 * another session is sent back with a 307 once the earlier answers
	 * are out (in order, pipelined too); for another host, the Location
	 * is absolute. */
	char other[5][256], want[5][256];
	snprintf(want[0], sizeof(want[0]), "/healthz");
	snprintf(want[1], sizeof(want[1]), "/v1/app/%s/8080/echo", id);
	/* A port that the prefix's is the start of. */
	snprintf(want[2], sizeof(want[2]), "%s1/echo", w.prefix);
	snprintf(want[3], sizeof(want[3]), "/v1/app/" NO_SESSION_ID "/3000/");
	for (int i = 0; i < 4; i++)
		snprintf(other[i], sizeof(other[i]), "GET %s HTTP/1.1\r\nHost: %s", want[i], api);
	snprintf(other[4], sizeof(other[4]), "GET /echo HTTP/1.1\r\nHost: %s", w.host);
	snprintf(want[4], sizeof(want[4]), "http://%s/echo", w.host);
	for (int i = 0; i < 5; i++) {
		conn_open(&bk.d, &c);
		conn_sendf(&c,
			   "GET %s/echo?n=1 HTTP/1.1\r\nHost: %s\r\n\r\n"
			   "GET %s/echo?n=2 HTTP/1.1\r\nHost: %s\r\n\r\n%s\r\n\r\n",
			   w.prefix, api, w.prefix, api, other[i]);
		for (int n = 1; n <= 2; n++) {
			CHECK_MSG(raw_read(&c, &r, false, 30000) == 0, "no answer %d before '%s'",
				  n, other[i]);
			char path[32];
			snprintf(path, sizeof(path), "\"path\":\"/echo?n=%d\"", n);
			CHECK_MSG(r.status == 200 && strstr(r.body, path), "answer %d: %d %s", n,
				  r.status, r.body);
			raw_resp_free(&r);
		}
		expect_redirect(&c, want[i]);
		conn_close(&c);
	}

	/* A client that follows redirects on one handle gets its answers:
	 * the API, then a POST through the path proxy (the 307 keeps method
	 * and body), then the API again from the relayed connection. */
	CURL *h = curl_easy_init();
	CHECK(h != NULL);
	char url[512], answer[4096];
	long followed;
	snprintf(url, sizeof(url), "http://%s/healthz", api);
	CHECK_INT_EQ(curl_fetch(h, url, NULL, answer, &followed), 200);
	snprintf(url, sizeof(url), "http://%s%s/echo", api, w.prefix);
	CHECK_INT_EQ(curl_fetch(h, url, "followed", answer, &followed), 200);
	CHECK_MSG(followed == 1, "%ld redirects to %s", followed, url);
	CHECK_MSG(strstr(answer, "\"method\":\"POST\"") && strstr(answer, "\"body\":\"followed\""),
		  "the POST after the 307: %s", answer);
	snprintf(url, sizeof(url), "http://%s/healthz", api);
	CHECK_INT_EQ(curl_fetch(h, url, NULL, answer, &followed), 200);
	CHECK_MSG(followed == 1 && strstr(answer, "\"ok\""), "%ld redirects, %s", followed, answer);
	curl_easy_cleanup(h);
	client_must_delete(key, id);
	free(id);
}

/* The relay ends a connection, or redirects a request that belongs
 * elsewhere, only between two answers: an answer still being written is
 * never cut. */
TEST(preview_answers_are_never_cut)
{
	char key[CLIENT_KEY_MAX], api[64];
	struct way_in w;
	char *id = app_session(key, sizeof(key), api, sizeof(api), &w);
	/* A request for the API pipelined behind an event stream that takes
	 * 2 s: the stream is delivered whole, then the 307. (A 307 sooner
	 * would cut the stream, and a client would take it for the answer
	 * to the stream's request.) */
	struct conn c;
	conn_open(&bk.d, &c);
	conn_sendf(
	    &c, "GET %s/sse HTTP/1.1\r\nHost: %s\r\n\r\nGET /healthz HTTP/1.1\r\nHost: %s\r\n\r\n",
	    w.prefix, api, api);
	struct raw_resp r;
	CHECK(raw_read(&c, &r, false, 30000) == 0);
	CHECK_MSG(r.status == 200 && strstr(r.body, "id: 1\n") && strstr(r.body, "id: 3\n"),
		  "the event stream was cut short before the 307: %d %s", r.status, r.body);
	raw_resp_free(&r);
	expect_redirect(&c, "/healthz");
	conn_close(&c);
	/* A client that sends its request and then half-closes its side
	 * still gets the whole answer: the relay does not pass the
	 * half-close on to the app (Bun would drop the answer), but ends the
	 * connection once the answer is delivered. */
	conn_open(&bk.d, &c);
	conn_sendf(&c, "GET %s/sse HTTP/1.1\r\nHost: %s\r\n\r\n", w.prefix, api);
	CHECK(shutdown(c.fd, SHUT_WR) == 0);
	CHECK(raw_read(&c, &r, false, 30000) == 0);
	CHECK_MSG(r.status == 200 && strstr(r.body, "id: 3\n"),
		  "the answer was cut short by the half-close: %d %s", r.status, r.body);
	raw_resp_free(&r);
	CHECK(conn_closed_within(&c, 5000));
	conn_close(&c);
	client_must_delete(key, id);
	free(id);
}

/* What the relay does with requests that are not plain ones: the
 * server's own keys are not passed on to the app, an upgrade the app
 * declines leaves the connection relaying HTTP (prefix cut, headers set),
 * and a request refused inside its body is answered 400 at once, not
 * after the app gives up waiting for the rest. */
TEST(preview_keys_upgrades_declined_and_broken_bodies)
{
	char key[CLIENT_KEY_MAX], api[64];
	struct way_in w;
	char *id = app_session(key, sizeof(key), api, sizeof(api), &w);
	struct conn c;
	conn_open(&bk.d, &c);
	conn_sendf(&c,
		   "GET %s/echo HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\n"
		   "X-API-Key: %s\r\nX-Api-Key: the-apps-own\r\n\r\n",
		   w.prefix, api, key, key);
	struct raw_resp r;
	CHECK(raw_read(&c, &r, false, 10000) == 0);
	CHECK_INT_EQ(r.status, 200);
	CHECK_MSG(strstr(r.body, key) == NULL, "the key reached the app: %s", r.body);
	CHECK_MSG(strstr(r.body, "\"x-api-key\":\"the-apps-own\""), "%s", r.body);
	raw_resp_free(&r);
	/* curl --http2 on http:// asks for h2c; Bun answers HTTP/1.1. */
	conn_sendf(&c,
		   "GET %s/echo HTTP/1.1\r\nHost: %s\r\nConnection: Upgrade, HTTP2-Settings\r\n"
		   "Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n"
		   "GET %s/echo?second HTTP/1.1\r\nHost: %s\r\n\r\n",
		   w.prefix, api, w.prefix, api);
	CHECK(raw_read(&c, &r, false, 10000) == 0);
	CHECK_INT_EQ(r.status, 200);
	raw_resp_free(&r);
	CHECK(raw_read(&c, &r, false, 10000) == 0);
	CHECK_INT_EQ(r.status, 200);
	CHECK_MSG(strstr(r.body, "\"path\":\"/echo?second\"") &&
		      strstr(r.body, "\"x-forwarded-prefix\""),
		  "the request after a declined upgrade went up raw: %s", r.body);
	raw_resp_free(&r);
	conn_close(&c);
	/* A malformed chunk after the head went up: 400 within the relay's
	 * 1 s drain, though the app still waits for the body. */
	conn_open(&bk.d, &c);
	int64_t t0 = wall_ms();
	conn_sendf(&c,
		   "POST %s/upload HTTP/1.1\r\nHost: %s\r\nTransfer-Encoding: chunked\r\n\r\n"
		   "5\r\nhello\r\nZZ\r\n",
		   w.prefix, api);
	CHECK(raw_read(&c, &r, false, 10000) == 0);
	CHECK_INT_EQ(r.status, 400);
	CHECK_MSG(wall_ms() - t0 < 5000, "the 400 took %lld ms", (long long)(wall_ms() - t0));
	raw_resp_free(&r);
	conn_close(&c);
	client_must_delete(key, id);
	free(id);
}

/* A request without a Host cannot be told apart from the API's by the
 * front door, so it is the API's, wherever its path points: a 404, not a
 * redirect to itself that would loop. */
TEST(preview_path_without_host_is_the_apis)
{
	skip_without_daemon();
	char key[CLIENT_KEY_MAX];
	client_must_key("free", key, sizeof(key));
	char *id = client_must_create(key, NULL);
	struct conn c;
	conn_open(&bk.d, &c);
	conn_sendf(&c, "GET /v1/app/%s/%d/x HTTP/1.0\r\n\r\n", id, APP_PORT);
	struct raw_resp r;
	CHECK(raw_read(&c, &r, false, 10000) == 0);
	CHECK_INT_EQ(r.status, 404);
	CHECK(strstr(r.body, "not_found") != NULL);
	raw_resp_free(&r);
	conn_close(&c);
	/* The same on a kept-alive API connection. */
	conn_open(&bk.d, &c);
	conn_sendf(&c,
		   "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
		   "GET /v1/app/%s/%d/x HTTP/1.0\r\n\r\n",
		   id, APP_PORT);
	CHECK(raw_read(&c, &r, false, 10000) == 0);
	CHECK_INT_EQ(r.status, 200);
	raw_resp_free(&r);
	CHECK(raw_read(&c, &r, false, 10000) == 0);
	CHECK_INT_EQ(r.status, 404);
	raw_resp_free(&r);
	conn_close(&c);
	/* A Host that comes past the first 16 KiB of the head: the front
	 * door cannot route it, and the API says so (a 307 would loop). */
	char *head = malloc(21000);
	CHECK(head != NULL);
	int n = snprintf(head, 21000,
			 "GET /v1/app/%s/%d/x HTTP/1.1\r\nX-Filler: %020000d\r\n"
			 "Host: localhost\r\n\r\n",
			 id, APP_PORT, 0);
	CHECK(n > 0 && n < 21000);
	conn_open(&bk.d, &c);
	conn_send(&c, head, (size_t)n);
	CHECK(raw_read(&c, &r, false, 20000) == 0);
	CHECK_INT_EQ(r.status, 400);
	CHECK(strstr(r.body, "16 KiB") != NULL);
	raw_resp_free(&r);
	conn_close(&c);
	free(head);
	client_must_delete(key, id);
	free(id);
}

/* Preview traffic is activity: the relay records it in memory only (it
 * must never wait for the store), and the reaper writes it to the store
 * within about a second, where GET /sessions/{id} reads lastActive. */
TEST(preview_traffic_reaches_last_active)
{
	skip_without_daemon();
	char key[CLIENT_KEY_MAX], host[128], path[128];
	client_must_key("free", key, sizeof(key));
	char *id = session_with_app(key, host, sizeof(host));
	snprintf(path, sizeof(path), "/sessions/%s", id);
	struct client_resp g;
	client_call(&bk.d, "GET", path, key, NULL, &g);
	CHECK_STATUS(&g, 200);
	double la0 = 0, la = 0;
	CHECK(client_parse_time(client_must_str(g.json, "lastActive", g.body), &la0));
	client_resp_free(&g);
	sleep_ms(1500);
	struct raw_resp r;
	raw_request(&bk.d, host, "GET", "/", "", &r);
	CHECK_INT_EQ(r.status, 200);
	raw_resp_free(&r);
	for (int i = 0; i < 40 && la < la0 + 1.0; i++) {
		sleep_ms(100);
		client_call(&bk.d, "GET", path, key, NULL, &g);
		CHECK_STATUS(&g, 200);
		CHECK(client_parse_time(client_must_str(g.json, "lastActive", g.body), &la));
		client_resp_free(&g);
	}
	CHECK_MSG(la >= la0 + 1.0, "lastActive %.3f did not move past %.3f", la, la0);
	client_must_delete(key, id);
	free(id);
}

/* The relay's workers are threads named bk-relay, one per two CPUs (at
 * least one, at most 8): what bench/preview counts to give its nginx as
 * many worker processes. */
TEST(relay_workers_are_named_threads)
{
	skip_without_daemon();
	char dir[64];
	snprintf(dir, sizeof(dir), "/proc/%d/task", (int)bk.d.pid);
	DIR *d = opendir(dir);
	CHECK(d != NULL);
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		char path[128], comm[32] = "";
		snprintf(path, sizeof(path), "%s/%s/comm", dir, e->d_name);
		FILE *f = e->d_name[0] == '.' ? NULL : fopen(path, "re");
		if (f && fgets(comm, sizeof(comm), f) && strcmp(comm, "bk-relay\n") == 0)
			n++;
		if (f)
			fclose(f);
	}
	closedir(d);
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	int want = cpus < 2 ? 1 : cpus / 2 > 8 ? 8 : (int)(cpus / 2);
	CHECK_MSG(n == want, "%d threads named bk-relay, %d expected on %ld CPUs", n, want, cpus);
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
	char host[128], api[64];
	preview_host(&d, key, id, host, sizeof(host));
	api_host(&d, api, sizeof(api));
	app_start(&d, key, id, 8080, host);

	/* Frozen: app-url names the state and leaves it so (the first request
	 * through the URLs it gives is what wakes a session); a preview
	 * request thaws it, and its server answers. */
	CHECK_MSG(wait_state(&d, key, id, "idle", 10), "the session did not go idle");
	struct way_in w;
	app_url(&d, key, id, 0, "idle", &w);
	char *st = state_of(&d, key, id);
	CHECK_MSG(strcmp(st, "idle") == 0, "app-url left an idle session '%s'", st);
	free(st);
	struct raw_resp rr;
	raw_request(&d, host, "GET", "/echo", "", &rr);
	CHECK_MSG(rr.status == 200, "preview of an idle session: %d %s", rr.status, rr.body);
	raw_resp_free(&rr);
	st = state_of(&d, key, id);
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

	/* Deep sleep ends its processes, and app-url does not wake it. A
	 * request through the path proxy does (its files come back) and,
	 * with no server running yet, gets the 502 page; starting the app
	 * again serves it. */
	CHECK_MSG(wait_state(&d, key, id, "deep-sleep", 15), "the session did not deep-sleep");
	app_url(&d, key, id, 0, "deep-sleep", &w);
	st = state_of(&d, key, id);
	CHECK_MSG(strcmp(st, "deep-sleep") == 0, "app-url left a deep-sleeping session '%s'", st);
	free(st);
	char target[160];
	snprintf(target, sizeof(target), "%s/", w.prefix);
	raw_request(&d, api, "GET", target, "", &rr);
	check_page(&rr, 502, "deep sleep");
	raw_resp_free(&rr);
	st = state_of(&d, key, id);
	CHECK_MSG(strcmp(st, "active") == 0 || strcmp(st, "idle") == 0,
		  "a request through the path proxy left the session '%s'", st);
	free(st);
	char path[128];
	snprintf(path, sizeof(path), "/files/read?sessionId=%s&path=server.ts", id);
	client_call(&d, "GET", path, key, NULL, &r);
	CHECK_STATUS(&r, 200);
	client_resp_free(&r);
	app_start(&d, key, id, 8080, host);
	raw_request(&d, api, "GET", target, "", &rr);
	CHECK_MSG(rr.status == 200 && strstr(rr.body, "Bunker preview"), "%d %s", rr.status,
		  rr.body);
	raw_resp_free(&rr);

	/* The preview host wakes it from deep sleep the same way. */
	CHECK_MSG(wait_state(&d, key, id, "deep-sleep", 15), "the session did not deep-sleep");
	raw_request(&d, host, "GET", "/", "", &rr);
	check_page(&rr, 502, "deep sleep");
	raw_resp_free(&rr);
	st = state_of(&d, key, id);
	CHECK_MSG(strcmp(st, "active") == 0 || strcmp(st, "idle") == 0,
		  "a preview request left the session '%s'", st);
	free(st);
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

/* Opens url in the browser's page and waits up to 30 s for the page's
 * WebSocket echo in its DOM; the text it shows in the end goes to text,
 * and a screenshot of it to shot. */
static void browser_show(struct cdp *b, const char *url, const char *shot, char *text, size_t len)
{
	char error[512];
	json_t *res = cdp_call(b, b->session, "Page.navigate", json_pack("{s:s}", "url", url),
			       30000, error, sizeof(error));
	CHECK_MSG(res != NULL, "navigate: %s", error);
	const char *nav_err = json_string_value(json_object_get(res, "errorText"));
	CHECK_MSG(nav_err == NULL, "navigating to %s: %s", url, nav_err);
	json_decref(res);

	text[0] = '\0';
	double deadline = client_now() + 30;
	while (client_now() < deadline) {
		res = cdp_call(b, b->session, "Runtime.evaluate",
			       json_pack("{s:s,s:b}", "expression",
					 "(document.getElementById('out') || {}).textContent || ''",
					 "returnByValue", 1),
			       10000, error, sizeof(error));
		CHECK_MSG(res != NULL, "evaluate: %s", error);
		const char *v =
		    json_string_value(json_object_get(json_object_get(res, "result"), "value"));
		snprintf(text, len, "%s", v ? v : "");
		json_decref(res);
		if (strcmp(text, "echo: " BROWSER_TEXT) == 0)
			break;
		sleep_ms(100);
	}
	res = cdp_call(b, b->session, "Page.captureScreenshot", json_pack("{s:s}", "format", "png"),
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
	char text[256], shot[PATH_MAX + 64];
	snprintf(shot, sizeof(shot), "%s/browser.png", outdir);
	browser_show(&b, url, shot, text, sizeof(text));
	/* Then the path proxy's url as app-url gives it, on the API's own
	 * host: the page's WebSocket, opened relative to the page, goes
	 * through the same prefix. */
	struct way_in w;
	app_url(&bk.d, key, id, 0, "active", &w);
	char app[256], app_text[256];
	snprintf(app, sizeof(app), "http://127.0.0.1:%d%s/", bk.d.port, w.prefix);
	snprintf(shot, sizeof(shot), "%s/browser-app-url.png", outdir);
	browser_show(&b, app, shot, app_text, sizeof(app_text));
	int bid;
	cdp_send(&b, NULL, "Browser.close", NULL, &bid);
	cdp_stop(&b);
	char rm[PATH_MAX + 80];
	snprintf(rm, sizeof(rm), "rm -rf '%s'", profile);
	if (system(rm) != 0)
		fprintf(stderr, "    cannot remove %s\n", profile);
	CHECK_MSG(strcmp(text, "echo: " BROWSER_TEXT) == 0,
		  "the page shows '%s', not the WebSocket's echo", text);
	CHECK_MSG(strcmp(app_text, "echo: " BROWSER_TEXT) == 0,
		  "the page at %s shows '%s', not the WebSocket's echo", app, app_text);
	client_must_delete(key, id);
	free(id);
}
