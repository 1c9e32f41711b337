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
 * the workers below.
 *
 * The connection ends when the client is done (it half-closed, or a
 * request of its was refused) and every answer it asked for has been
 * delivered (answers are not changed, but their framing is read: see
 * struct proxy_answers), when the upstream closes (after what it sent was
 * delivered), after PROXY_IDLE_MS without a byte either way (an upgraded
 * connection has no such limit: TCP keepalive finds dead peers), or when
 * the upstream is taken away under it (the session was deleted) or the
 * client socket shut down (the server stops). */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "http/http_int.h"
#include "http/proxy.h"
#include "util/util.h"

/* Buffers: client bytes not yet parsed (holds a whole head), bytes for the
 * upstream, bytes for the client. */
#define IN_CAP PROXY_HEAD_MAX
#define OUT_CAP PROXY_OUT_MIN
#define DOWN_CAP (64 * 1024)
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

/* ---- the request stream ---- */

/* Output with a bound: an append past cap fails and marks over. */
struct out {
	char *b;
	size_t len, cap;
	bool over;
};

static void out_add(struct out *o, const char *s, size_t n)
{
	if (o->over || o->cap - o->len < n) {
		o->over = true;
		return;
	}
	memcpy(o->b + o->len, s, n);
	o->len += n;
}

static void out_str(struct out *o, const char *s)
{
	out_add(o, s, strlen(s));
}

static bool is_tchar(unsigned char c)
{
	return isascii(c) && (isalnum(c) || strchr("!#$%&'*+-.^_`|~", c) != NULL) && c != '\0';
}

static bool is_token(const char *s, size_t n)
{
	if (n == 0)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!is_tchar((unsigned char)s[i]))
			return false;
	return true;
}

/* A header value: visible characters, blanks and bytes >= 0x80. */
static bool is_field_value(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if ((c < 0x20 && c != '\t') || c == 0x7f)
			return false;
	}
	return true;
}

static bool eq_ci(const char *s, size_t n, const char *lit)
{
	return strlen(lit) == n && strncasecmp(s, lit, n) == 0;
}

/* Whether the comma-separated list s holds token (case aside); with last,
 * whether it is the list's last element. */
static bool list_has(const char *s, size_t n, const char *token, bool last)
{
	bool found = false;
	const char *end = s + n;
	while (s < end) {
		const char *comma = memchr(s, ',', (size_t)(end - s));
		const char *e = comma ? comma : end;
		const char *a = s, *b = e;
		while (a < b && (*a == ' ' || *a == '\t'))
			a++;
		while (b > a && (b[-1] == ' ' || b[-1] == '\t'))
			b--;
		if (a < b)
			found = eq_ci(a, (size_t)(b - a), token) || (found && !last);
		s = comma ? comma + 1 : end;
	}
	return found;
}

/* The length of the head at the front of in (through its empty line), 0
 * when it is not all there. */
static size_t head_length(const char *in, size_t len)
{
	size_t pos = 0;
	while (pos < len) {
		const char *nl = memchr(in + pos, '\n', len - pos);
		if (nl == NULL)
			return 0;
		size_t n = (size_t)(nl - (in + pos));
		if (n > 0 && in[pos + n - 1] == '\r')
			n--;
		if (n == 0 && pos > 0)
			return (size_t)(nl - in) + 1;
		pos = (size_t)(nl - in) + 1;
	}
	return 0;
}

/* One line of [*pos, end): its start and length without the line end. */
static bool next_line(const char *head, size_t end, size_t *pos, const char **line, size_t *n)
{
	if (*pos >= end)
		return false;
	const char *nl = memchr(head + *pos, '\n', end - *pos);
	*line = head + *pos;
	*n = (size_t)(nl - *line);
	if (*n > 0 && (*line)[*n - 1] == '\r')
		(*n)--;
	*pos = (size_t)(nl - head) + 1;
	return true;
}

static int parse_content_length(const char *v, size_t n, uint64_t *out)
{
	if (n == 0 || n > 18)
		return -1;
	uint64_t x = 0;
	for (size_t i = 0; i < n; i++) {
		if (v[i] < '0' || v[i] > '9')
			return -1;
		x = x * 10 + (uint64_t)(v[i] - '0');
	}
	*out = x;
	return 0;
}

/* Whether the header name: value carries one of the server's own API keys
 * (a client that sends its key with every request, as SDKs do, must not
 * hand it to the app). */
static bool is_server_key(const struct proxy_parser *p, const char *name, size_t nl, const char *v,
			  size_t vl)
{
	if (p->key_prefix == NULL)
		return false;
	size_t kl = strlen(p->key_prefix);
	if (eq_ci(name, nl, "authorization") && vl > 7 && strncasecmp(v, "bearer ", 7) == 0) {
		v += 7;
		vl -= 7;
		while (vl > 0 && *v == ' ') {
			v++;
			vl--;
		}
	} else if (!eq_ci(name, nl, "x-api-key")) {
		return false;
	}
	return vl >= kl && memcmp(v, p->key_prefix, kl) == 0;
}

/* Where the stream goes after a request's body: the next head, or, after
 * a request to upgrade the connection, a wait for its answer (a tunnel on
 * 101 or a 2xx to CONNECT, the next head otherwise). Without answers to
 * look at, an upgrade request is taken at its word. */
static enum proxy_state after_request(const struct proxy_parser *p)
{
	if (!p->upgrade_after)
		return PROXY_HEAD;
	return p->answers ? PROXY_UPGRADE_WAIT : PROXY_RAW;
}

/* Writes the head at the front of in (len bytes) to o, rewritten, and sets
 * the framing of its body. Returns PROXY_OK, PROXY_OTHER_HOST or a status. */
static int head_rewrite(struct proxy_parser *p, const char *head, size_t len, struct out *o)
{
	size_t pos = 0;
	const char *line;
	size_t n;
	next_line(head, len, &pos, &line, &n);
	const char *line0 = line;
	/* method SP request-target SP HTTP-version */
	const char *sp1 = memchr(line, ' ', n);
	const char *sp2 = sp1 ? memchr(sp1 + 1, ' ', (size_t)(line + n - sp1 - 1)) : NULL;
	if (sp1 == NULL || sp2 == NULL || !is_token(line, (size_t)(sp1 - line)) || sp2 == sp1 + 1)
		return 400;
	for (const char *t = sp1 + 1; t < sp2; t++)
		if ((unsigned char)*t <= 0x20 || *t == 0x7f)
			return 400;
	if (!eq_ci(sp2 + 1, (size_t)(line + n - sp2 - 1), "HTTP/1.1") &&
	    !eq_ci(sp2 + 1, (size_t)(line + n - sp2 - 1), "HTTP/1.0"))
		return 400;
	bool connect = (size_t)(sp1 - line) == 7 && memcmp(line, "CONNECT", 7) == 0;
	const char *target = sp1 + 1;
	size_t target_len = (size_t)(sp2 - target);
	size_t cut = 0;
	bool target_ok = true;
	if (p->prefix) {
		cut = strlen(p->prefix);
		target_ok = target_len >= cut && memcmp(target, p->prefix, cut) == 0 &&
			    (target_len == cut || target[cut] == '/' || target[cut] == '?');
	}
	out_add(o, line, (size_t)(target - line));
	if (p->prefix && target_ok && (target_len == cut || target[cut] == '?'))
		out_str(o, "/");
	out_add(o, target + cut, target_len - cut);
	out_add(o, sp2, (size_t)(line + n - sp2));
	out_str(o, "\r\n");

	int hosts = 0;
	const char *host = NULL;
	size_t host_len = 0;
	bool host_ok = false, te = false, chunked = false, cl = false;
	bool upgrade = false, conn_upgrade = false;
	uint64_t length = 0;
	/* X-Forwarded-For values already present, joined: the client's
	 * address is appended to them, as proxies in a chain do. */
	const char *xff[16];
	size_t xff_len[16];
	int n_xff = 0;
	while (next_line(head, len, &pos, &line, &n) && n > 0) {
		if (line[0] == ' ' || line[0] == '\t')
			return 400; /* obsolete line folding */
		const char *colon = memchr(line, ':', n);
		if (colon == NULL || !is_token(line, (size_t)(colon - line)))
			return 400;
		size_t nl = (size_t)(colon - line);
		const char *v = colon + 1, *ve = line + n;
		while (v < ve && (*v == ' ' || *v == '\t'))
			v++;
		while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
			ve--;
		size_t vl = (size_t)(ve - v);
		if (!is_field_value(v, vl))
			return 400;
		if (eq_ci(line, nl, "host")) {
			hosts++;
			host = v;
			host_len = vl;
			host_ok = eq_ci(v, vl, p->host);
		} else if (eq_ci(line, nl, "content-length")) {
			uint64_t x;
			if (parse_content_length(v, vl, &x) < 0 || (cl && x != length))
				return 400;
			cl = true;
			length = x;
		} else if (eq_ci(line, nl, "transfer-encoding")) {
			/* Several headers make one list: the last one's last
			 * coding is the list's. */
			te = true;
			chunked = list_has(v, vl, "chunked", true);
		} else if (eq_ci(line, nl, "connection")) {
			conn_upgrade = conn_upgrade || list_has(v, vl, "upgrade", false);
		} else if (eq_ci(line, nl, "upgrade")) {
			upgrade = true;
		}
		if (eq_ci(line, nl, "x-forwarded-for")) {
			if (n_xff == 16)
				return 400;
			if (vl > 0) {
				xff[n_xff] = v;
				xff_len[n_xff++] = vl;
			}
			continue;
		}
		if (eq_ci(line, nl, "x-forwarded-proto") || eq_ci(line, nl, "x-forwarded-host") ||
		    eq_ci(line, nl, "x-forwarded-prefix") || is_server_key(p, line, nl, v, vl))
			continue;
		out_add(o, line, nl);
		out_str(o, ": ");
		out_add(o, v, vl);
		out_str(o, "\r\n");
	}
	if (hosts > 1)
		return 400;
	if (hosts == 0 || !host_ok || !target_ok) {
		/* Only a path can be sent elsewhere: "*", an authority
		 * (CONNECT) or an absolute URL belong to no other place. */
		if (target[0] != '/')
			return 400;
		p->location[0] = '\0';
		int w = host_ok ? snprintf(p->location, sizeof(p->location), "%.*s",
					   (int)target_len, target)
				: snprintf(p->location, sizeof(p->location), "%s://%.*s%.*s",
					   p->proto, (int)host_len, host, (int)target_len, target);
		if (host == NULL || w < 0 || (size_t)w >= sizeof(p->location))
			p->location[0] = '\0';
		return PROXY_OTHER_HOST;
	}
	if (te && (cl || !chunked))
		return 400;
	out_str(o, "X-Forwarded-For: ");
	for (int i = 0; i < n_xff; i++) {
		out_add(o, xff[i], xff_len[i]);
		out_str(o, ", ");
	}
	out_str(o, p->client_ip);
	out_str(o, "\r\nX-Forwarded-Proto: ");
	out_str(o, p->proto);
	out_str(o, "\r\nX-Forwarded-Host: ");
	out_str(o, p->host);
	if (p->prefix) {
		out_str(o, "\r\nX-Forwarded-Prefix: ");
		out_str(o, p->prefix);
	}
	out_str(o, "\r\n\r\n");
	if (o->over)
		return 431;
	if (p->answers) {
		bool is_head = (size_t)(sp1 - line0) == 4 && memcmp(line0, "HEAD", 4) == 0;
		proxy_answers_expect(p->answers, connect   ? PROXY_REQ_CONNECT
						 : is_head ? PROXY_REQ_HEAD
							   : PROXY_REQ_OTHER);
	}
	p->upgrade_after = (upgrade && conn_upgrade) || connect;
	if (te) {
		p->st = PROXY_CHUNK_SIZE;
	} else if (cl && length > 0) {
		p->st = PROXY_BODY;
		p->left = length;
	} else {
		p->st = after_request(p);
	}
	return PROXY_OK;
}

static void take(char *in, size_t *in_len, size_t n)
{
	memmove(in, in + n, *in_len - n);
	*in_len -= n;
}

/* A line at the front of in: its length through '\n', 0 when not all
 * there, -1 when it is too long. */
static ssize_t line_length(const char *in, size_t len)
{
	const char *nl = memchr(in, '\n', len < PROXY_LINE_MAX ? len : PROXY_LINE_MAX);
	if (nl)
		return nl - in + 1;
	return len >= PROXY_LINE_MAX ? -1 : 0;
}

/* The size of a chunk-size line "HEX[;ext]" (without its line end). */
static int parse_chunk_size(const char *s, size_t n, uint64_t *out)
{
	size_t i = 0;
	uint64_t x = 0;
	while (i < n && isxdigit((unsigned char)s[i])) {
		if (x >> 56)
			return -1;
		int d = isdigit((unsigned char)s[i]) ? s[i] - '0'
						     : (tolower((unsigned char)s[i]) - 'a' + 10);
		x = x * 16 + (uint64_t)d;
		i++;
	}
	if (i == 0)
		return -1;
	while (i < n && (s[i] == ' ' || s[i] == '\t'))
		i++;
	if (i < n && s[i] != ';')
		return -1;
	if (!is_field_value(s + i, n - i))
		return -1;
	*out = x;
	return 0;
}

/* Refuses what is left of the stream; a request whose head went up but
 * not all of its body is cut short. */
static int stop(struct proxy_parser *p, int rc)
{
	p->cut_short = p->st != PROXY_HEAD && p->st != PROXY_UPGRADE_WAIT;
	p->st = PROXY_STOP;
	return rc;
}

int proxy_parse(struct proxy_parser *p, char *in, size_t *in_len, char *out, size_t *out_len,
		size_t out_cap, int *heads)
{
	for (;;) {
		size_t room = out_cap - *out_len;
		switch (p->st) {
		case PROXY_HEAD: {
			/* Blank lines before a request line are ignored (RFC 9112
			 * 2.2): some clients send a CRLF after a body. */
			size_t skip = 0;
			while (skip < *in_len && (in[skip] == '\r' || in[skip] == '\n'))
				skip++;
			if (skip)
				take(in, in_len, skip);
			size_t hl = head_length(in, *in_len);
			if (hl == 0)
				return *in_len >= PROXY_HEAD_MAX ? stop(p, 431) : PROXY_OK;
			if (memchr(in, '\0', hl))
				return stop(p, 400);
			if (room < PROXY_OUT_MIN && room < 2 * hl + 1024)
				return PROXY_OK;
			if (p->answers && proxy_answers_full(p->answers))
				return PROXY_OK;
			struct out o = {.b = out + *out_len, .cap = room};
			int rc = head_rewrite(p, in, hl, &o);
			if (rc != PROXY_OK)
				return stop(p, rc);
			*out_len += o.len;
			take(in, in_len, hl);
			(*heads)++;
			continue;
		}
		case PROXY_BODY:
		case PROXY_CHUNK_DATA:
		case PROXY_RAW: {
			size_t n = *in_len < room ? *in_len : room;
			if (p->st != PROXY_RAW && n > p->left)
				n = (size_t)p->left;
			if (n == 0)
				return PROXY_OK;
			memcpy(out + *out_len, in, n);
			*out_len += n;
			take(in, in_len, n);
			if (p->st == PROXY_RAW)
				continue;
			p->left -= n;
			if (p->left == 0) {
				if (p->st == PROXY_CHUNK_DATA)
					p->st = PROXY_CHUNK_END;
				else
					p->st = after_request(p);
			}
			continue;
		}
		case PROXY_CHUNK_SIZE:
		case PROXY_TRAILER: {
			ssize_t ll = line_length(in, *in_len);
			if (ll < 0)
				return stop(p, 400);
			if (ll == 0)
				return PROXY_OK;
			size_t n = (size_t)ll - 1;
			if (n > 0 && in[n - 1] == '\r')
				n--;
			if (room < n + 2)
				return PROXY_OK;
			if (p->st == PROXY_CHUNK_SIZE) {
				uint64_t size;
				if (parse_chunk_size(in, n, &size) < 0)
					return stop(p, 400);
				p->left = size;
				p->st = size ? PROXY_CHUNK_DATA : PROXY_TRAILER;
			} else if (n == 0) {
				p->st = after_request(p);
			} else {
				const char *colon = memchr(in, ':', n);
				if (in[0] == ' ' || in[0] == '\t' || colon == NULL ||
				    !is_token(in, (size_t)(colon - in)) ||
				    !is_field_value(colon + 1, n - (size_t)(colon + 1 - in)))
					return stop(p, 400);
			}
			memcpy(out + *out_len, in, n);
			memcpy(out + *out_len + n, "\r\n", 2);
			*out_len += n + 2;
			take(in, in_len, (size_t)ll);
			continue;
		}
		case PROXY_CHUNK_END: {
			if (*in_len == 0)
				return PROXY_OK;
			size_t n;
			if (in[0] == '\n')
				n = 1;
			else if (in[0] != '\r')
				return stop(p, 400);
			else if (*in_len < 2)
				return PROXY_OK;
			else if (in[1] != '\n')
				return stop(p, 400);
			else
				n = 2;
			if (room < 2)
				return PROXY_OK;
			memcpy(out + *out_len, "\r\n", 2);
			*out_len += 2;
			take(in, in_len, n);
			p->st = PROXY_CHUNK_SIZE;
			continue;
		}
		case PROXY_UPGRADE_WAIT: {
			const struct proxy_answers *a = p->answers;
			if (a->st == PROXY_A_TUNNEL || a->st == PROXY_A_LOST ||
			    a->st == PROXY_A_UNTIL_CLOSE)
				p->st = PROXY_RAW; /* upgraded, or nothing more to tell */
			else if (proxy_answers_settled(a))
				p->st = PROXY_HEAD; /* refused: HTTP goes on */
			else
				return PROXY_OK;
			continue;
		}
		case PROXY_STOP:
			return PROXY_OK;
		}
	}
}

/* ---- the answers ---- */

bool proxy_answers_full(const struct proxy_answers *a)
{
	return a->n == PROXY_PENDING_MAX && a->st != PROXY_A_TUNNEL && a->st != PROXY_A_LOST;
}

bool proxy_answers_expect(struct proxy_answers *a, enum proxy_request_kind kind)
{
	/* Past a tunnel, or with the framing lost, there is nothing to
	 * count. */
	if (a->st == PROXY_A_TUNNEL || a->st == PROXY_A_LOST)
		return true;
	if (a->n == PROXY_PENDING_MAX)
		return false;
	a->kind[(a->first + a->n) % PROXY_PENDING_MAX] = (uint8_t)kind;
	a->n++;
	return true;
}

/* The oldest awaited answer is complete. */
static void answer_done(struct proxy_answers *a)
{
	a->first = (a->first + 1) % PROXY_PENDING_MAX;
	a->n--;
	a->st = PROXY_A_HEAD;
}

/* A head's line (kept part in a->line, a->line_len long uncut). */
static void answer_head_line(struct proxy_answers *a)
{
	size_t n = a->line_len < sizeof(a->line) ? a->line_len : sizeof(a->line);
	const char *l = a->line;
	bool cut = a->line_len > sizeof(a->line);
	if (!a->in_head) {
		/* "HTTP/1.x SP 3DIGIT ..."; blank lines before it are skipped. */
		if (n == 0)
			return;
		if (a->n == 0 || n < 12 || strncmp(l, "HTTP/1.", 7) != 0 || l[8] != ' ' ||
		    !isdigit((unsigned char)l[9]) || !isdigit((unsigned char)l[10]) ||
		    !isdigit((unsigned char)l[11])) {
			a->st = PROXY_A_LOST;
			return;
		}
		a->in_head = true;
		a->status = (l[9] - '0') * 100 + (l[10] - '0') * 10 + (l[11] - '0');
		a->te = a->chunked = a->cl = false;
		a->length = 0;
		return;
	}
	if (n > 0) {
		const char *colon = memchr(l, ':', n);
		if (colon == NULL)
			return;
		size_t nl = (size_t)(colon - l);
		const char *v = colon + 1, *ve = l + n;
		while (v < ve && (*v == ' ' || *v == '\t'))
			v++;
		while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
			ve--;
		bool framing = eq_ci(l, nl, "transfer-encoding") || eq_ci(l, nl, "content-length");
		if (framing && cut) {
			a->st = PROXY_A_LOST;
		} else if (eq_ci(l, nl, "transfer-encoding")) {
			a->te = true;
			a->chunked = list_has(v, (size_t)(ve - v), "chunked", true);
		} else if (eq_ci(l, nl, "content-length")) {
			uint64_t x;
			if (parse_content_length(v, (size_t)(ve - v), &x) < 0 ||
			    (a->cl && x != a->length)) {
				a->st = PROXY_A_LOST;
				return;
			}
			a->cl = true;
			a->length = x;
		}
		return;
	}
	/* The end of the head. */
	a->in_head = false;
	enum proxy_request_kind kind = a->kind[a->first];
	if (a->status == 101 || (kind == PROXY_REQ_CONNECT && a->status / 100 == 2)) {
		a->st = PROXY_A_TUNNEL;
	} else if (a->status / 100 == 1) {
		/* An interim answer (100 Continue): the final one follows. */
	} else if (kind == PROXY_REQ_HEAD || a->status == 204 || a->status == 304) {
		answer_done(a);
	} else if (a->te) {
		a->st = a->chunked ? PROXY_A_CHUNK_SIZE : PROXY_A_UNTIL_CLOSE;
	} else if (a->cl) {
		a->left = a->length;
		if (a->left == 0)
			answer_done(a);
		else
			a->st = PROXY_A_BODY;
	} else {
		a->st = PROXY_A_UNTIL_CLOSE;
	}
}

/* A whole line of a chunked body (chunk size, chunk end or trailer). */
static void answer_chunk_line(struct proxy_answers *a)
{
	size_t n = a->line_len < sizeof(a->line) ? a->line_len : sizeof(a->line);
	if (a->st == PROXY_A_CHUNK_SIZE) {
		uint64_t size;
		if (a->line_len > sizeof(a->line) || parse_chunk_size(a->line, n, &size) < 0) {
			a->st = PROXY_A_LOST;
			return;
		}
		a->left = size;
		a->st = size ? PROXY_A_CHUNK_DATA : PROXY_A_TRAILER;
	} else if (a->st == PROXY_A_CHUNK_END) {
		a->st = a->line_len == 0 ? PROXY_A_CHUNK_SIZE : PROXY_A_LOST;
	} else if (a->line_len == 0) {
		answer_done(a); /* the empty line after the trailers */
	}
}

void proxy_answers_scan(struct proxy_answers *a, const char *b, size_t n)
{
	const char *end = b + n;
	while (b < end) {
		switch (a->st) {
		case PROXY_A_BODY:
		case PROXY_A_CHUNK_DATA: {
			size_t k =
			    (size_t)(end - b) < a->left ? (size_t)(end - b) : (size_t)a->left;
			b += k;
			a->left -= k;
			if (a->left == 0) {
				if (a->st == PROXY_A_BODY)
					answer_done(a);
				else
					a->st = PROXY_A_CHUNK_END;
			}
			break;
		}
		case PROXY_A_HEAD:
		case PROXY_A_CHUNK_SIZE:
		case PROXY_A_CHUNK_END:
		case PROXY_A_TRAILER: {
			const char *nl = memchr(b, '\n', (size_t)(end - b));
			const char *stop = nl ? nl : end;
			for (const char *c = b; c < stop; c++) {
				if (a->line_len < sizeof(a->line))
					a->line[a->line_len] = *c;
				a->line_len++;
				a->last_cr = *c == '\r';
			}
			b = nl ? nl + 1 : end;
			if (nl == NULL)
				break;
			/* A line without its CR counts as one (as for requests). */
			if (a->line_len > 0 && a->last_cr)
				a->line_len--;
			if (a->st == PROXY_A_HEAD)
				answer_head_line(a);
			else
				answer_chunk_line(a);
			a->line_len = 0;
			a->last_cr = false;
			break;
		}
		case PROXY_A_UNTIL_CLOSE:
		case PROXY_A_TUNNEL:
		case PROXY_A_LOST:
			return;
		}
	}
}

void proxy_answers_eof(struct proxy_answers *a)
{
	if (a->st == PROXY_A_UNTIL_CLOSE) {
		answer_done(a);
		a->by_close = true;
	}
}

bool proxy_answers_between(const struct proxy_answers *a)
{
	return a->st == PROXY_A_HEAD && !a->in_head && a->line_len == 0;
}

bool proxy_answers_settled(const struct proxy_answers *a)
{
	return proxy_answers_between(a) && a->n == 0;
}

/* ---- the relay ---- */

/* One relayed connection. Its thread (http_proxy_serve()) opens the
 * upstream and waits; a worker (below) moves its bytes; its thread then
 * releases the upstream and closes. */
struct relay {
	struct http_conn *conn;
	struct http_upstream up;
	struct proxy_parser parser;
	int c, u;
	char in[IN_CAP];
	size_t in_len;
	char out[OUT_CAP];
	size_t out_off, out_len;
	char down[DOWN_CAP];
	size_t down_off, down_len;
	bool c_eof, u_eof, u_shut;
	bool u_hup; /* the upstream hung up while down still held bytes */
	int refuse; /* a status to answer with once the answers before are out, or 0 */
	int64_t last_io_us;
	struct proxy_answers answers; /* where the upstream's answers end */
	int64_t drain_until_us;	      /* after a request cut short: the app's time to finish */
	int64_t deadline_us;	      /* when the worker must look again unasked, or 0 */

	/* The worker's, while it runs the relay. */
	struct relay_worker *w;
	bool in_set[2];		   /* c, u: in the worker's epoll set */
	uint32_t ev[2];		   /* c, u: their events there */
	struct relay *prev, *next; /* in w->relays */

	/* Handing over and back: under done_lock. */
	pthread_mutex_t done_lock;
	pthread_cond_t done_cond;
	bool done;
	bool refused;		  /* the relay ended with r->refuse to send */
	struct relay *queue_next; /* in w->incoming */
};

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

/* Parses what the client sent into bytes for the upstream. */
static void relay_parse(struct relay *r)
{
	if (r->out_off == r->out_len)
		r->out_off = r->out_len = 0;
	else if (r->out_off > 0 && OUT_CAP - r->out_len < PROXY_OUT_MIN / 2) {
		memmove(r->out, r->out + r->out_off, r->out_len - r->out_off);
		r->out_len -= r->out_off;
		r->out_off = 0;
	}
	int heads = 0;
	int rc = proxy_parse(&r->parser, r->in, &r->in_len, r->out, &r->out_len, OUT_CAP, &heads);
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

/* Outcome of relay_step(). */
enum step {
	STEP_WAIT = 0, /* wants the events in want[] (or its deadline) */
	STEP_END,      /* done: close */
	STEP_REFUSE,   /* done: send the refusal in r->refuse, then close */
};

/* One round of the relay: takes what rev[] (the client's, the upstream's
 * poll events) says is ready, moves every byte it can, and says what it
 * waits for next in want[] (0 for a side it does not watch) and
 * r->deadline_us. Never blocks. now is the worker's time, read once per
 * batch of events rather than at every read and write: a batch takes
 * microseconds, the limits it is held to a second and more. */
static enum step relay_step(struct relay *r, const uint32_t rev[2], uint32_t want[2], int64_t now)
{
	if (r->up.cancelled && r->up.cancelled(r->up.ctx))
		return STEP_END;
	/* The client is always watched: a hang-up there (it reset the
	 * connection, or the server is stopping) ends the relay. */
	if (rev[0] & (EPOLLERR | EPOLLHUP))
		return STEP_END;
	if (rev[0] & EPOLLIN) {
		enum io rd = io_recv(r->c, r->in, IN_CAP, &r->in_len);
		if (rd == IO_ERROR)
			return STEP_END;
		if (rd == IO_EOF)
			r->c_eof = true;
		if (rd == IO_DONE)
			r->last_io_us = now;
	}
	if (rev[1] & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
		if (r->down_len == r->down_off) {
			r->down_off = r->down_len = 0;
			enum io rd = io_recv(r->u, r->down, DOWN_CAP, &r->down_len);
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
	bool stopped;
	for (;;) {
		relay_parse(r);
		stopped = r->parser.st == PROXY_STOP;
		/* Write what is pending at once: most of the time there is
		 * room, and a round of waiting is saved. */
		if (r->out_len > r->out_off) {
			enum io w = io_send(r->u, r->out, &r->out_off, &r->out_len);
			if (w == IO_ERROR)
				return STEP_END;
			if (w == IO_DONE) {
				r->last_io_us = now;
				/* Room again: what the client sent meanwhile
				 * can be parsed before waiting for more. */
				if (r->in_len > 0 && !stopped)
					continue;
			}
		}
		break;
	}
	if (r->down_len > r->down_off) {
		enum io w = io_send(r->c, r->down, &r->down_off, &r->down_len);
		if (w == IO_ERROR)
			return STEP_END;
		if (w == IO_DONE)
			r->last_io_us = now;
	}
	/* Nothing more will go up: the client is done, or a request was
	 * refused. The connection ends between two answers, once every
	 * answer asked for has been delivered, and never inside one: an app
	 * may still be writing one (apps such as Bun close at once when told
	 * the client is done, so the upstream is not told). */
	bool up_done = (r->c_eof || stopped) && r->out_len == r->out_off;
	bool down_done = r->down_len == r->down_off;
	/* A request left half sent (refused inside its body, or its client
	 * gone inside it) will never be whole: its answer is not waited for,
	 * and the app learns the end by a half-close, as it does where
	 * answers cannot be told apart (a tunnel, an app that is not HTTP as
	 * expected). An answer that runs until the app closes is simply
	 * waited for. */
	enum proxy_state pst = r->parser.st;
	bool cut_short = stopped ? r->parser.cut_short
				 : r->c_eof && pst != PROXY_HEAD && pst != PROXY_RAW &&
				       pst != PROXY_UPGRADE_WAIT;
	if (up_done && !cut_short && proxy_answers_settled(&r->answers) && down_done)
		return r->refuse ? STEP_REFUSE : STEP_END;
	enum proxy_answer_state ast = r->answers.st;
	if (up_done && !r->u_shut && (ast == PROXY_A_TUNNEL || ast == PROXY_A_LOST || cut_short)) {
		shutdown(r->u, SHUT_WR);
		r->u_shut = true;
		if (cut_short)
			r->drain_until_us = now + (int64_t)DRAIN_MS * 1000;
	}
	/* A refusal of ours goes out between answers, when only the request
	 * cut short (if any) is unanswered, and never after an answer that
	 * ended by the app's closing: the client would read it as part of
	 * that answer's body. */
	bool may_refuse = proxy_answers_between(&r->answers) &&
			  r->answers.n == (cut_short ? 1u : 0u) && !r->answers.by_close;
	if ((r->u_eof || (r->drain_until_us && now >= r->drain_until_us)) && down_done)
		return r->refuse && may_refuse ? STEP_REFUSE : STEP_END;
	if (down_done)
		r->u_hup = false;

	r->deadline_us = 0;
	if (r->parser.st != PROXY_RAW) {
		int64_t idle_end = r->last_io_us + (int64_t)PROXY_IDLE_MS * 1000;
		if (now >= idle_end)
			return STEP_END;
		r->deadline_us = idle_end;
	}
	if (r->drain_until_us && (r->deadline_us == 0 || r->drain_until_us < r->deadline_us))
		r->deadline_us = r->drain_until_us;
	want[0] = want[1] = 0;
	if (!r->c_eof && !stopped && r->in_len < IN_CAP)
		want[0] |= EPOLLIN;
	if (r->down_len > r->down_off)
		want[0] |= EPOLLOUT;
	if (!r->u_eof && r->down_len == r->down_off)
		want[1] |= EPOLLIN;
	if (r->out_len > r->out_off)
		want[1] |= EPOLLOUT;
	return STEP_WAIT;
}

/* ---- the workers ----
 *
 * Why workers and not the connection's own thread: with a thread per
 * relayed connection, every request woke its thread twice (the request
 * came, the answer came), and on these machines those context switches
 * cost more than the relaying itself (perf: a third of the proxy's time in
 * the scheduler and in wake-ups). A few threads with an epoll set each
 * find several connections ready per wake-up under load. No worker ever
 * blocks: the sockets are non-blocking and the hooks they call
 * (on_request, cancelled) are quick, so one connection cannot hold up
 * another. The connection's own thread keeps what may block (the Host
 * peek, opening the upstream, which may wake a session) and the release,
 * which must run on the thread that opened.
 *
 * How many: one per two CPUs. The relay shares its machine with the
 * sessions' apps, whose work the bytes are for; what costs is the kernel's
 * TCP work in send() and recv() (perf: nine tenths of a worker's time), the
 * same for any number of workers, and each worker more is one more thread
 * to wake and switch to, with fewer connections ready per wake-up. On 2
 * CPUs (bench/preview.sh), one worker relayed about 15% more requests a
 * second than two, with a lower p99.
 */

#define WORKERS_MAX 8
/* How often a worker looks at its relays' deadlines and cancellations. */
#define ROUND_MS 100

/* An epoll tag: the relay pointer with the side in its low bit. */
#define TAG_SIDE 1u

struct relay_worker {
	pthread_t thread;
	int ep;
	int wake;		/* eventfd: incoming relays, or quit */
	pthread_mutex_t lock;	/* guards incoming and quit */
	struct relay *incoming; /* handed over, not yet in the set */
	bool quit;
	struct relay *relays;	/* the worker's own: only it touches the list */
	struct relay *finished; /* ended in this batch, their threads not yet woken */
	int64_t now_us;		/* mono_us() when the batch at hand began */
};

struct relay_pool {
	int n;
	unsigned next; /* round robin, atomic */
	struct relay_worker w[WORKERS_MAX];
};

/* Makes the epoll set's interest for side i of r what want says; a side
 * that wants nothing is taken out (its hang-up would otherwise be
 * reported at every wait), except the client, whose hang-up matters. */
static int interest(struct relay *r, int i, uint32_t want)
{
	int fd = i == 0 ? r->c : r->u;
	bool in = i == 0 || want != 0;
	if (i == 1 && r->u_hup)
		in = false;
	struct epoll_event ev = {.events = want, .data.u64 = (uint64_t)(uintptr_t)r | (uint64_t)i};
	if (in != r->in_set[i]) {
		if (epoll_ctl(r->w->ep, in ? EPOLL_CTL_ADD : EPOLL_CTL_DEL, fd, &ev) < 0)
			return -1;
		r->in_set[i] = in;
		r->ev[i] = want;
	} else if (in && want != r->ev[i]) {
		if (epoll_ctl(r->w->ep, EPOLL_CTL_MOD, fd, &ev) < 0)
			return -1;
		r->ev[i] = want;
	}
	return 0;
}

static void worker_unlink(struct relay_worker *w, struct relay *r)
{
	if (r->prev)
		r->prev->next = r->next;
	else
		w->relays = r->next;
	if (r->next)
		r->next->prev = r->prev;
	r->prev = r->next = NULL;
}

/* Ends r's time with the worker. Its thread is woken by worker_wake_done()
 * after the batch of events at hand: it frees r, which a later event of
 * the same batch may still name. */
static void relay_finish(struct relay_worker *w, struct relay *r, bool refused)
{
	for (int i = 0; i < 2; i++)
		if (r->in_set[i])
			epoll_ctl(w->ep, EPOLL_CTL_DEL, i == 0 ? r->c : r->u, NULL);
	r->in_set[0] = r->in_set[1] = false;
	worker_unlink(w, r);
	r->refused = refused;
	r->queue_next = w->finished;
	w->finished = r;
}

static void worker_wake_done(struct relay_worker *w)
{
	while (w->finished) {
		struct relay *r = w->finished;
		w->finished = r->queue_next;
		pthread_mutex_lock(&r->done_lock);
		r->done = true;
		pthread_cond_signal(&r->done_cond);
		pthread_mutex_unlock(&r->done_lock);
	}
}

/* Runs a step of r with events rev and applies its outcome. */
static void relay_run(struct relay_worker *w, struct relay *r, const uint32_t rev[2])
{
	uint32_t want[2] = {0, 0};
	enum step st = relay_step(r, rev, want, w->now_us);
	if (st == STEP_WAIT && (interest(r, 0, want[0]) < 0 || interest(r, 1, want[1]) < 0))
		st = STEP_END;
	if (st != STEP_WAIT)
		relay_finish(w, r, st == STEP_REFUSE);
}

static void *worker_main(void *arg)
{
	struct relay_worker *w = arg;
	struct epoll_event evs[64];
	int64_t last_round = mono_us();
	for (;;) {
		int n = epoll_wait(w->ep, evs, (int)ARRAY_SIZE(evs), ROUND_MS);
		if (n < 0 && errno != EINTR)
			n = 0;
		w->now_us = mono_us();
		for (int k = 0; k < n; k++) {
			uint64_t tag = evs[k].data.u64;
			if (tag == 0) {
				/* The eventfd: relays handed over, or quit. */
				uint64_t v;
				if (read(w->wake, &v, sizeof(v)) < 0) {
					/* nothing to take: a spurious wake-up */
				}
				pthread_mutex_lock(&w->lock);
				struct relay *in = w->incoming;
				w->incoming = NULL;
				bool quit = w->quit;
				pthread_mutex_unlock(&w->lock);
				while (in) {
					struct relay *r = in;
					in = in->queue_next;
					r->w = w;
					r->next = w->relays;
					if (w->relays)
						w->relays->prev = r;
					w->relays = r;
					uint32_t none[2] = {0, 0};
					relay_run(w, r, none);
				}
				if (quit) {
					worker_wake_done(w);
					return NULL;
				}
				continue;
			}
			struct relay *r = (struct relay *)(uintptr_t)(tag & ~(uint64_t)TAG_SIDE);
			uint32_t rev[2] = {0, 0};
			rev[tag & TAG_SIDE] = evs[k].events;
			/* Both sides ready at once come as two events: the first
			 * step may finish r, so the second must know. */
			if (!r->in_set[tag & TAG_SIDE])
				continue;
			relay_run(w, r, rev);
		}
		worker_wake_done(w);
		int64_t now = w->now_us;
		if (now - last_round < (int64_t)ROUND_MS * 1000)
			continue;
		last_round = now;
		/* Deadlines, and upstreams that hung up under a slow client
		 * (a delete shuts them down: cancelled() says so). */
		for (struct relay *r = w->relays, *next; r; r = next) {
			next = r->next;
			if (r->u_hup || (r->deadline_us && now >= r->deadline_us) ||
			    (r->up.cancelled && r->up.cancelled(r->up.ctx))) {
				uint32_t none[2] = {0, 0};
				relay_run(w, r, none);
			}
		}
		worker_wake_done(w);
	}
}

void http_relay_stop(struct http_server *srv)
{
	struct relay_pool *pool = srv->relays;
	if (pool == NULL)
		return;
	for (int i = 0; i < pool->n; i++) {
		struct relay_worker *w = &pool->w[i];
		pthread_mutex_lock(&w->lock);
		w->quit = true;
		pthread_mutex_unlock(&w->lock);
		uint64_t one = 1;
		if (write(w->wake, &one, sizeof(one)) < 0)
			fprintf(stderr, "bunkerd: cannot stop a relay worker: %s\n",
				strerror(errno));
		pthread_join(w->thread, NULL);
		close(w->wake);
		close(w->ep);
		pthread_mutex_destroy(&w->lock);
	}
	free(pool);
	srv->relays = NULL;
}

int http_relay_start(struct http_server *srv, struct bk_err *err)
{
	struct relay_pool *pool = calloc(1, sizeof(*pool));
	if (pool == NULL)
		return bk_err_set(err, ENOMEM, "cannot start the relay");
	srv->relays = pool;
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	int want = cpus < 2 ? 1 : cpus / 2 > WORKERS_MAX ? WORKERS_MAX : (int)(cpus / 2);
	for (int i = 0; i < want; i++) {
		struct relay_worker *w = &pool->w[i];
		w->ep = epoll_create1(EPOLL_CLOEXEC);
		w->wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 0};
		if (w->ep < 0 || w->wake < 0 || epoll_ctl(w->ep, EPOLL_CTL_ADD, w->wake, &ev) < 0) {
			int e = errno;
			if (w->ep >= 0)
				close(w->ep);
			if (w->wake >= 0)
				close(w->wake);
			http_relay_stop(srv);
			return bk_err_set(err, e, "cannot start the relay");
		}
		pthread_mutex_init(&w->lock, NULL);
		int e = pthread_create(&w->thread, NULL, worker_main, w);
		if (e != 0) {
			close(w->ep);
			close(w->wake);
			pthread_mutex_destroy(&w->lock);
			http_relay_stop(srv);
			return bk_err_set(err, e, "cannot start the relay");
		}
		pool->n++;
	}
	return 0;
}

/* ---- a relayed connection's own thread ---- */

/* Hands r to a worker and waits until the relay has ended. */
static bool relay_hand_over(struct relay_pool *pool, struct relay *r)
{
	unsigned i = __atomic_fetch_add(&pool->next, 1, __ATOMIC_RELAXED) % (unsigned)pool->n;
	struct relay_worker *w = &pool->w[i];
	pthread_mutex_lock(&w->lock);
	r->queue_next = w->incoming;
	w->incoming = r;
	pthread_mutex_unlock(&w->lock);
	uint64_t one = 1;
	if (write(w->wake, &one, sizeof(one)) < 0 && errno != EAGAIN) {
		/* The eventfd cannot fail short of a bug; the relay waits for
		 * the worker's next wake-up if it does. */
		fprintf(stderr, "bunkerd: cannot wake a relay worker: %s\n", strerror(errno));
	}
	pthread_mutex_lock(&r->done_lock);
	while (!r->done)
		pthread_cond_wait(&r->done_cond, &r->done_lock);
	bool refused = r->refused;
	pthread_mutex_unlock(&r->done_lock);
	return refused;
}

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
	if (srv->hosts.open(srv->hosts.ctx, conn->host, conn->target, &up, &res) < 0) {
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
	};
	r->last_io_us = mono_us();
	pthread_mutex_init(&r->done_lock, NULL);
	pthread_cond_init(&r->done_cond, NULL);
	set_nonblock(r->c);
	set_nonblock(r->u);
	keepalive(r->c);
	int one = 1;
	setsockopt(r->u, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	bool refused = relay_hand_over(srv->relays, r);
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
