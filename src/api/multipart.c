/* multipart/form-data, parsed as it arrives (see api/multipart.h).
 *
 * The body is a preamble, then parts each opened by the delimiter
 * "\r\n--boundary" (the first may open the body without its CRLF: the
 * parser starts as if a CRLF came before the body), each part a header
 * block ended by an empty line and its content, and the close delimiter
 * "\r\n--boundary--". Content is handed on as soon as it cannot be the
 * start of a delimiter, so that at most delim_len - 1 bytes wait. */
#include "api/multipart.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MP_BUF_SIZE (MP_WINDOW + MP_HEADERS_MAX + 2 * sizeof(((struct mp_parser *)0)->delim))
_Static_assert(MP_BUF_SIZE == MP_PARSER_HELD, "MP_PARSER_HELD is what a parser holds");
#define MP_PADDING_MAX 64 /* blanks after a delimiter, before its CRLF */

__attribute__((format(printf, 3, 4))) static int fail(struct mp_parser *p, struct bk_err *err,
						      const char *fmt, ...)
{
	if (p->state != MP_FAILED) {
		char msg[256];
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(msg, sizeof(msg), fmt, ap);
		va_end(ap);
		p->state = MP_FAILED;
		bk_err_add(&p->err, p->field, "value_error", "%s", msg);
	}
	*err = p->err;
	return -1;
}

/* An event failed: its error stops the parser. */
static int event_failed(struct mp_parser *p, struct bk_err *err)
{
	if (!bk_err_is_set(err))
		bk_err_kind(err, BK_E_INTERNAL, "a multipart event failed without saying why");
	p->state = MP_FAILED;
	p->err = *err;
	return -1;
}

/* The value of parameter name (case-insensitive) of a header value such as
 * `form-data; name="file"; filename="a b.txt"`: a token or a quoted string
 * (backslash escapes one character). 1 found (out holds it), 0 absent, -1
 * longer than outlen - 1 or not closed. */
static int header_param(const char *v, size_t vlen, const char *name, char *out, size_t outlen)
{
	size_t i = 0, nlen = strlen(name);
	/* Parameters start after the first ';' outside quotes. */
	bool quoted = false;
	for (; i < vlen; i++) {
		if (v[i] == '"')
			quoted = !quoted;
		else if (v[i] == '\\' && quoted)
			i++;
		else if (v[i] == ';' && !quoted)
			break;
	}
	while (i < vlen) {
		i++; /* the ';' */
		while (i < vlen && (v[i] == ' ' || v[i] == '\t'))
			i++;
		size_t key = i;
		while (i < vlen && v[i] != '=' && v[i] != ';')
			i++;
		size_t klen = i;
		while (klen > key && (v[klen - 1] == ' ' || v[klen - 1] == '\t'))
			klen--;
		klen -= key;
		bool match = klen == nlen && strncasecmp(v + key, name, nlen) == 0;
		size_t o = 0;
		if (i < vlen && v[i] == '=') {
			i++;
			while (i < vlen && (v[i] == ' ' || v[i] == '\t'))
				i++;
			if (i < vlen && v[i] == '"') {
				for (i++;; i++) {
					if (i >= vlen)
						return -1;
					if (v[i] == '"') {
						i++;
						break;
					}
					if (v[i] == '\\' && i + 1 < vlen)
						i++;
					if (match && o + 1 >= outlen)
						return -1;
					if (match)
						out[o++] = v[i];
				}
			} else {
				for (; i < vlen && v[i] != ';' && v[i] != ' ' && v[i] != '\t';
				     i++) {
					if (match && o + 1 >= outlen)
						return -1;
					if (match)
						out[o++] = v[i];
				}
			}
		}
		if (match) {
			out[o] = '\0';
			return 1;
		}
		while (i < vlen && v[i] != ';')
			i++;
	}
	return 0;
}

int mp_parser_init(struct mp_parser *p, const char *content_type, const char *field,
		   const struct mp_events *ev, void *user, struct bk_err *err)
{
	memset(p, 0, sizeof(*p));
	p->field = field;
	p->err = (struct bk_err)BK_ERR_INIT;
	const char *ct = content_type ? content_type : "";
	size_t ctlen = strlen(ct), base = strcspn(ct, ";");
	while (base > 0 && (ct[base - 1] == ' ' || ct[base - 1] == '\t'))
		base--;
	if (base != strlen("multipart/form-data") ||
	    strncasecmp(ct, "multipart/form-data", base) != 0)
		return bk_err_add(err, field, "value_error",
				  "the body must be multipart/form-data, not '%.64s'",
				  content_type ? content_type : "(none)");
	char boundary[MP_BOUNDARY_MAX + 2];
	int r = header_param(ct, ctlen, "boundary", boundary, sizeof(boundary));
	if (r <= 0 || boundary[0] == '\0' || strlen(boundary) > MP_BOUNDARY_MAX)
		return bk_err_add(err, field, "value_error",
				  "the multipart/form-data Content-Type needs a boundary of 1..%d "
				  "characters",
				  MP_BOUNDARY_MAX);
	p->delim_len = (size_t)snprintf(p->delim, sizeof(p->delim), "\r\n--%s", boundary);
	p->buf = malloc(MP_BUF_SIZE);
	if (!p->buf)
		return bk_err_set(err, 0, "out of memory");
	/* The first delimiter may open the body: as if a CRLF came first. */
	memcpy(p->buf, "\r\n", 2);
	p->len = 2;
	p->ev = ev;
	p->user = user;
	p->state = MP_PREAMBLE;
	return 0;
}

void mp_parser_release(struct mp_parser *p)
{
	free(p->buf);
	p->buf = NULL;
}

static void consume(struct mp_parser *p, size_t n)
{
	memmove(p->buf, p->buf + n, p->len - n);
	p->len -= n;
}

/* A part's header block, buf[0..len) without its empty line. */
static int part_begin(struct mp_parser *p, size_t len, struct bk_err *err)
{
	char name[MP_NAME_MAX], filename[MP_NAME_MAX];
	bool have_name = false, have_filename = false;
	for (size_t at = 0; at < len;) {
		const char *line = p->buf + at;
		const char *eol = memmem(line, len - at, "\r\n", 2);
		size_t llen = eol ? (size_t)(eol - line) : len - at;
		at += llen + 2;
		static const char cd[] = "content-disposition:";
		if (llen < sizeof(cd) - 1 || strncasecmp(line, cd, sizeof(cd) - 1) != 0)
			continue;
		const char *v = line + sizeof(cd) - 1;
		size_t vlen = llen - (sizeof(cd) - 1);
		while (vlen && (*v == ' ' || *v == '\t'))
			v++, vlen--;
		if (vlen < 9 || strncasecmp(v, "form-data", 9) != 0)
			return fail(p, err, "a part's Content-Disposition is not form-data");
		int r = header_param(v, vlen, "name", name, sizeof(name));
		int f = header_param(v, vlen, "filename", filename, sizeof(filename));
		if (r < 0 || f < 0)
			return fail(p, err,
				    "a part's name or filename is over %d characters or "
				    "not closed",
				    MP_NAME_MAX - 1);
		have_name = r == 1;
		have_filename = f == 1;
	}
	if (!have_name)
		return fail(p, err, "a part has no Content-Disposition with a name");
	if (++p->parts > MP_PARTS_MAX)
		return fail(p, err, "the body has more than %d parts", MP_PARTS_MAX);
	if (p->ev->begin(p->user, name, have_filename ? filename : NULL, err) < 0)
		return event_failed(p, err);
	return 0;
}

/* Goes as far as the bytes in buf allow. */
static int advance(struct mp_parser *p, struct bk_err *err)
{
	for (;;) {
		switch (p->state) {
		case MP_PREAMBLE:
		case MP_BODY: {
			char *d = memmem(p->buf, p->len, p->delim, p->delim_len);
			size_t n = d ? (size_t)(d - p->buf)
				     : (p->len >= p->delim_len ? p->len - (p->delim_len - 1) : 0);
			if (p->state == MP_BODY && n > 0 &&
			    p->ev->data(p->user, p->buf, n, err) < 0)
				return event_failed(p, err);
			if (!d) {
				consume(p, n);
				return 0;
			}
			if (p->state == MP_BODY && p->ev->end(p->user, err) < 0)
				return event_failed(p, err);
			consume(p, n + p->delim_len);
			p->state = MP_AFTER_DELIM;
			break;
		}
		case MP_AFTER_DELIM: {
			if (p->len < 2)
				return 0;
			if (p->buf[0] == '-' && p->buf[1] == '-') {
				p->state = MP_EPILOGUE;
				break;
			}
			size_t i = 0;
			while (i < p->len && (p->buf[i] == ' ' || p->buf[i] == '\t'))
				i++;
			if (i > MP_PADDING_MAX)
				return fail(p, err, "a boundary line is followed by blanks");
			if (p->len - i < 2)
				return 0;
			if (p->buf[i] != '\r' || p->buf[i + 1] != '\n')
				return fail(p, err, "a boundary line goes on after the boundary");
			consume(p, i + 2);
			p->state = MP_HEADERS;
			break;
		}
		case MP_HEADERS: {
			size_t end;
			if (p->len >= 2 && p->buf[0] == '\r' && p->buf[1] == '\n') {
				end = 0; /* no header at all */
			} else {
				char *e = memmem(p->buf, p->len, "\r\n\r\n", 4);
				if (!e) {
					if (p->len > MP_HEADERS_MAX)
						return fail(p, err,
							    "a part's headers are over %d bytes",
							    MP_HEADERS_MAX);
					return 0;
				}
				end = (size_t)(e - p->buf) + 2;
			}
			if (end > MP_HEADERS_MAX)
				return fail(p, err, "a part's headers are over %d bytes",
					    MP_HEADERS_MAX);
			if (part_begin(p, end, err) < 0)
				return -1;
			consume(p, end + 2);
			p->state = MP_BODY;
			break;
		}
		case MP_EPILOGUE:
			p->len = 0;
			return 0;
		case MP_FAILED:
			*err = p->err;
			return -1;
		}
	}
}

int mp_parser_feed(struct mp_parser *p, const char *data, size_t len, struct bk_err *err)
{
	while (len > 0) {
		if (p->state == MP_FAILED) {
			*err = p->err;
			return -1;
		}
		if (p->state == MP_EPILOGUE)
			return 0;
		size_t take = len < MP_WINDOW ? len : MP_WINDOW;
		memcpy(p->buf + p->len, data, take);
		p->len += take;
		data += take;
		len -= take;
		if (advance(p, err) < 0)
			return -1;
	}
	return 0;
}

int mp_parser_finish(struct mp_parser *p, struct bk_err *err)
{
	if (p->state == MP_FAILED) {
		*err = p->err;
		return -1;
	}
	if (p->state != MP_EPILOGUE)
		return fail(p, err, "the body ends before its closing boundary");
	return 0;
}
