/* The relay's reading of a client's requests (http/proxy.h): each request
 * head checked and rewritten whole, bodies framed and copied as they come. */
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/types.h>

#include "http/http_text.h"
#include "http/proxy.h"

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

/* Whether the header f carries one of the server's own API keys (a client
 * that sends its key with every request, as SDKs do, must not hand it to
 * the app). */
static bool is_server_key(const struct proxy_parser *p, const struct http_field *f)
{
	if (p->key_prefix == NULL)
		return false;
	size_t kl = strlen(p->key_prefix);
	const char *v = f->value;
	size_t vl = f->value_len;
	if (http__eq_ci(f->name, f->name_len, "authorization") && vl > 7 &&
	    strncasecmp(v, "bearer ", 7) == 0) {
		v += 7;
		vl -= 7;
		while (vl > 0 && *v == ' ') {
			v++;
			vl--;
		}
	} else if (!http__eq_ci(f->name, f->name_len, "x-api-key")) {
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

/* ---- rewriting a request head, step by step ---- */

#define XFF_MAX 16

/* What the steps of head_rewrite() learn of one request head. */
struct head {
	/* The request line: method SP request-target SP HTTP-version. */
	const char *method;
	size_t method_len;
	const char *target;
	size_t target_len;
	bool target_ok; /* under p->prefix (always, without one) */
	/* The headers. */
	int hosts;
	const char *host; /* the last Host's value */
	size_t host_len;
	bool host_ok; /* it is the connection's */
	bool te, chunked, cl;
	uint64_t length;
	bool upgrade, conn_upgrade;
	/* X-Forwarded-For values already present, joined: the client's
	 * address is appended to them, as proxies in a chain do. */
	const char *xff[XFF_MAX];
	size_t xff_len[XFF_MAX];
	int n_xff;
};

static bool head_method_is(const struct head *h, const char *method)
{
	return h->method_len == strlen(method) && memcmp(h->method, method, h->method_len) == 0;
}

/* The request line: checked, noted in h and written with the prefix cut
 * from its target. Returns 0 or 400. */
static int head_request_line(const struct proxy_parser *p, const char *line, size_t n,
			     struct head *h, struct out *o)
{
	const char *sp1 = memchr(line, ' ', n);
	const char *sp2 = sp1 ? memchr(sp1 + 1, ' ', (size_t)(line + n - sp1 - 1)) : NULL;
	if (sp1 == NULL || sp2 == NULL || !http__is_token(line, (size_t)(sp1 - line)) ||
	    sp2 == sp1 + 1)
		return 400;
	for (const char *t = sp1 + 1; t < sp2; t++)
		if ((unsigned char)*t <= 0x20 || *t == 0x7f)
			return 400;
	const char *version = sp2 + 1;
	size_t version_len = (size_t)(line + n - version);
	if (!http__eq_ci(version, version_len, "HTTP/1.1") &&
	    !http__eq_ci(version, version_len, "HTTP/1.0"))
		return 400;
	h->method = line;
	h->method_len = (size_t)(sp1 - line);
	h->target = sp1 + 1;
	h->target_len = (size_t)(sp2 - h->target);
	size_t cut = 0;
	h->target_ok = true;
	if (p->prefix) {
		cut = strlen(p->prefix);
		h->target_ok =
		    h->target_len >= cut && memcmp(h->target, p->prefix, cut) == 0 &&
		    (h->target_len == cut || h->target[cut] == '/' || h->target[cut] == '?');
	}
	/* A target outside the prefix is refused below: what is written of
	 * it does not matter (an underflowing length just marks o over). */
	out_add(o, line, (size_t)(h->target - line));
	if (p->prefix && h->target_ok && (h->target_len == cut || h->target[cut] == '?'))
		out_str(o, "/");
	out_add(o, h->target + cut, h->target_len - cut);
	out_add(o, sp2, (size_t)(line + n - sp2));
	out_str(o, "\r\n");
	return 0;
}

/* One header line: checked, what it says of routing and framing noted in
 * h, and written unless the relay sets it itself (X-Forwarded-*) or it
 * carries the server's own key. Returns 0 or 400. */
static int head_header(const struct proxy_parser *p, const char *line, size_t n, struct head *h,
		       struct out *o)
{
	struct http_field f;
	if (!http__field_parse(line, n, &f))
		return 400;
	const char *name = f.name, *v = f.value;
	size_t nl = f.name_len, vl = f.value_len;
	if (http__eq_ci(name, nl, "host")) {
		h->hosts++;
		h->host = v;
		h->host_len = vl;
		h->host_ok = http__eq_ci(v, vl, p->host);
	} else if (http__eq_ci(name, nl, "content-length")) {
		uint64_t x;
		if (http__parse_content_length(v, vl, &x) < 0 || (h->cl && x != h->length))
			return 400;
		h->cl = true;
		h->length = x;
	} else if (http__eq_ci(name, nl, "transfer-encoding")) {
		/* Several headers make one list: the last one's last coding is
		 * the list's. */
		h->te = true;
		h->chunked = http__list_has(v, vl, "chunked", true);
	} else if (http__eq_ci(name, nl, "connection")) {
		h->conn_upgrade = h->conn_upgrade || http__list_has(v, vl, "upgrade", false);
	} else if (http__eq_ci(name, nl, "upgrade")) {
		h->upgrade = true;
	}
	if (http__eq_ci(name, nl, "x-forwarded-for")) {
		if (h->n_xff == XFF_MAX)
			return 400;
		if (vl > 0) {
			h->xff[h->n_xff] = v;
			h->xff_len[h->n_xff++] = vl;
		}
		return 0;
	}
	if (http__eq_ci(name, nl, "x-forwarded-proto") ||
	    http__eq_ci(name, nl, "x-forwarded-host") ||
	    http__eq_ci(name, nl, "x-forwarded-prefix") || is_server_key(p, &f) ||
	    (p->hop_name && http__eq_ci(name, nl, p->hop_name)))
		return 0;
	out_add(o, name, nl);
	out_str(o, ": ");
	out_add(o, v, vl);
	out_str(o, "\r\n");
	return 0;
}

/* Whether the request is the connection's: PROXY_OK; PROXY_OTHER_HOST
 * (no Host, another one, a target outside the prefix) with p->location
 * set; 400 when it cannot be sent anywhere. */
static int head_destination(struct proxy_parser *p, const struct head *h)
{
	if (h->hosts > 1)
		return 400;
	if (h->hosts == 1 && h->host_ok && h->target_ok)
		return PROXY_OK;
	/* Only a path can be sent elsewhere: "*", an authority (CONNECT) or
	 * an absolute URL belong to no other place. */
	if (h->target[0] != '/')
		return 400;
	p->location[0] = '\0';
	int w = h->host_ok ? snprintf(p->location, sizeof(p->location), "%.*s", (int)h->target_len,
				      h->target)
			   : snprintf(p->location, sizeof(p->location), "%s://%.*s%.*s", p->proto,
				      (int)h->host_len, h->host, (int)h->target_len, h->target);
	if (h->host == NULL || w < 0 || (size_t)w >= sizeof(p->location))
		p->location[0] = '\0';
	return PROXY_OTHER_HOST;
}

/* The X-Forwarded-* block that ends the head. */
static void head_forwarded(const struct proxy_parser *p, const struct head *h, struct out *o)
{
	out_str(o, "X-Forwarded-For: ");
	for (int i = 0; i < h->n_xff; i++) {
		out_add(o, h->xff[i], h->xff_len[i]);
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
	if (p->hop_line) {
		out_str(o, "\r\n");
		out_str(o, p->hop_line);
	}
	out_str(o, "\r\n\r\n");
}

/* Once the head is written: its answer is awaited, and the stream goes on
 * with its body (chunked, Content-Length, none). */
static void head_framing(struct proxy_parser *p, const struct head *h)
{
	bool connect = head_method_is(h, "CONNECT");
	if (p->answers)
		proxy_answers_expect(p->answers, connect		     ? PROXY_REQ_CONNECT
						 : head_method_is(h, "HEAD") ? PROXY_REQ_HEAD
									     : PROXY_REQ_OTHER);
	p->upgrade_after = (h->upgrade && h->conn_upgrade) || connect;
	if (h->te) {
		p->st = PROXY_CHUNK_SIZE;
	} else if (h->cl && h->length > 0) {
		p->st = PROXY_BODY;
		p->left = h->length;
	} else {
		p->st = after_request(p);
	}
}

/* Writes the head at the front of in (len bytes) to o, rewritten, and sets
 * the framing of its body. Returns PROXY_OK, PROXY_OTHER_HOST or a status. */
static int head_rewrite(struct proxy_parser *p, const char *head, size_t len, struct out *o)
{
	struct head h = {0};
	size_t pos = 0;
	const char *line;
	size_t n;
	next_line(head, len, &pos, &line, &n);
	int rc = head_request_line(p, line, n, &h, o);
	while (rc == 0 && next_line(head, len, &pos, &line, &n) && n > 0)
		rc = head_header(p, line, n, &h, o);
	if (rc == 0)
		rc = head_destination(p, &h);
	if (rc != PROXY_OK)
		return rc;
	/* Both framings, or a last coding that is not chunked: a body that
	 * two parsers could end in two places. */
	if (h.te && (h.cl || !h.chunked))
		return 400;
	head_forwarded(p, &h, o);
	if (o->over)
		return 431;
	head_framing(p, &h);
	return PROXY_OK;
}

/* ---- the stream ---- */

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
			struct http_field trailer;
			if (p->st == PROXY_CHUNK_SIZE) {
				uint64_t size;
				if (http__parse_chunk_size(in, n, &size) < 0)
					return stop(p, 400);
				p->left = size;
				p->st = size ? PROXY_CHUNK_DATA : PROXY_TRAILER;
			} else if (n == 0) {
				p->st = after_request(p);
			} else if (!http__field_parse(in, n, &trailer)) {
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
