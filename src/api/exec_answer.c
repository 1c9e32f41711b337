/* Answers that carry an execution's output (buntime's and InstaVM's POST
 * /execute) without building them whole: stdout and stderr stay in the
 * raw buffers the execution filled, and are escaped into libmicrohttpd's
 * buffer as the socket drains, the other fields written around them. A
 * control byte is six bytes of JSON: 20 MiB of them were some 300 MB of
 * the daemon's memory while jansson built the answer; now the answer holds
 * the raw output and a 16 KiB buffer. The bytes are those jansson wrote
 * (api_json_bytes(), then json_dumps()): the same escapes, invalid UTF-8
 * as U+FFFD.
 *
 * The length is counted first, so that the answer carries its
 * Content-Length as before. An answer that Idempotency-Key could keep
 * (CORE_IDEM_ANSWER_MAX) is encoded whole, so that its replay is the same
 * bytes; a larger one is streamed, and api/idem.c keeps its length only,
 * as it kept the length of such an answer before.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_int.h"

/* Text as is, or bytes escaped as inside a JSON string. */
struct part {
	const unsigned char *data;
	size_t len;
	bool escape;
};

enum { PART_MAX = 6 };

struct api_answer {
	struct core_exec_result res; /* owned: the output the parts borrow */
	char *text;		     /* owned: the literal parts, one after another */
	char *more;		     /* owned: more of stderr (may be NULL) */
	struct part parts[PART_MAX];
	size_t n, at, at_byte; /* the part and byte to encode next */
	uint64_t len;
	/* A unit (an escape, a UTF-8 sequence, U+FFFD) that did not fit the
	 * buffer whole: its rest goes first next time. */
	struct api_pend pend;
};

/* The unit for the byte(s) at p[0..left): its text into unit, its length
 * as the return value, and how many input bytes it stands for in *used. */
static size_t unit_of(const unsigned char *p, size_t left, char *unit, size_t *used)
{
	if (p[0] < 0x80) {
		*used = 1;
		return api_json_escape_byte(p[0], unit);
	}
	size_t n = api_utf8_seq_len(p, left);
	if (n == 0) {
		*used = 1;
		memcpy(unit, "\xef\xbf\xbd", 3);
		return 3;
	}
	*used = n;
	memcpy(unit, p, n);
	return n;
}

/* Whether byte c goes into a JSON string as itself, with no look at what
 * follows. */
static inline bool plain(unsigned char c)
{
	return c >= 0x20 && c < 0x80 && c != '"' && c != '\\';
}

static uint64_t escaped_len(const unsigned char *p, size_t len)
{
	uint64_t out = 0;
	for (size_t i = 0; i < len;) {
		if (plain(p[i])) {
			out++;
			i++;
			continue;
		}
		char unit[8];
		size_t used;
		out += unit_of(p + i, len - i, unit, &used);
		i += used;
	}
	return out;
}

size_t api_json_escape_some(const unsigned char *p, size_t left, size_t *used, char *buf,
			    size_t room, char pend[8], size_t *pend_len)
{
	size_t i = 0, out = 0;
	*pend_len = 0;
	while (i < left && out < room) {
		if (plain(p[i])) {
			buf[out++] = (char)p[i++];
			continue;
		}
		char unit[8];
		size_t took;
		size_t n = unit_of(p + i, left - i, unit, &took);
		i += took;
		if (out + n > room) {
			memcpy(pend, unit, n);
			*pend_len = n;
			break;
		}
		memcpy(buf + out, unit, n);
		out += n;
	}
	*used = i;
	return out;
}

ssize_t api_answer_read(struct api_answer *a, char *buf, size_t max)
{
	size_t out = 0;
	while (out < max) {
		if (a->pend.at < a->pend.len) {
			out += api_pend_drain(&a->pend, buf + out, max - out);
			continue;
		}
		if (a->at == a->n)
			break;
		const struct part *pt = &a->parts[a->at];
		const unsigned char *p = pt->data + a->at_byte;
		size_t left = pt->len - a->at_byte;
		if (left == 0) {
			a->at++;
			a->at_byte = 0;
			continue;
		}
		if (!pt->escape) {
			size_t n = left < max - out ? left : max - out;
			memcpy(buf + out, p, n);
			a->at_byte += n;
			out += n;
			continue;
		}
		size_t used;
		out += api_json_escape_some(p, left, &used, buf + out, max - out, a->pend.b,
					    &a->pend.len);
		a->pend.at = 0;
		a->at_byte += used;
	}
	return (ssize_t)out;
}

uint64_t api_answer_len(const struct api_answer *a)
{
	return a->len;
}

void api_answer_free(struct api_answer *a)
{
	if (a == NULL)
		return;
	core_exec_result_release(&a->res);
	free(a->text);
	free(a->more);
	free(a);
}

struct api_answer *api_answer_new(const char *open, struct core_exec_result *res,
				  const char *stderr_more, json_t *rest, const char *close)
{
	char *rest_text = rest ? json_dumps(rest, JSON_COMPACT | JSON_REAL_PRECISION(15)) : NULL;
	json_decref(rest);
	struct api_answer *a = calloc(1, sizeof(*a));
	if (a == NULL || rest_text == NULL || rest_text[0] != '{' || rest_text[1] == '}') {
		free(rest_text);
		free(a);
		core_exec_result_release(res);
		return NULL;
	}
	a->res = *res;
	memset(res, 0, sizeof(*res));
	/* The literals: open {"stdout":" | ","stderr":" | ",<rest's members>}close */
	static const char l_stdout[] = "{\"stdout\":\"", l_stderr[] = "\",\"stderr\":\"";
	size_t lo = strlen(open), lr = strlen(rest_text), lc = strlen(close);
	size_t total = lo + sizeof(l_stdout) - 1 + sizeof(l_stderr) - 1 + 2 + (lr - 1) + lc;
	a->text = malloc(total + 1);
	a->more = stderr_more ? strdup(stderr_more) : NULL;
	if (a->text == NULL || (stderr_more && a->more == NULL)) {
		free(rest_text);
		api_answer_free(a);
		return NULL;
	}
	char *t = a->text;
	int k = snprintf(t, total + 1, "%s%s", open, l_stdout);
	a->parts[a->n++] = (struct part){(const unsigned char *)t, (size_t)k, false};
	t += k;
	a->parts[a->n++] =
	    (struct part){(const unsigned char *)a->res.stdout_text, a->res.stdout_len, true};
	k = snprintf(t, total + 1 - (size_t)(t - a->text), "%s", l_stderr);
	a->parts[a->n++] = (struct part){(const unsigned char *)t, (size_t)k, false};
	t += k;
	a->parts[a->n++] =
	    (struct part){(const unsigned char *)a->res.stderr_text, a->res.stderr_len, true};
	if (a->more)
		a->parts[a->n++] =
		    (struct part){(const unsigned char *)a->more, strlen(a->more), true};
	k = snprintf(t, total + 1 - (size_t)(t - a->text), "\",%s%s", rest_text + 1, close);
	a->parts[a->n++] = (struct part){(const unsigned char *)t, (size_t)k, false};
	free(rest_text);
	for (size_t i = 0; i < a->n; i++)
		a->len += a->parts[i].escape ? escaped_len(a->parts[i].data, a->parts[i].len)
					     : a->parts[i].len;
	return a;
}

static ssize_t answer_stream_read(void *ctx, char *buf, size_t max)
{
	return api_answer_read(ctx, buf, max);
}

static void answer_stream_free(void *ctx)
{
	api_answer_free(ctx);
}

void api_answer_send(struct api_call *c, int status, struct api_answer *a)
{
	static const char oom[] =
	    "{\"error\":{\"code\":\"internal_error\",\"message\":\"out of memory\"}}";
	if (a == NULL) {
		http_response_set(c->res, 500, "application/json", oom, sizeof(oom) - 1);
		return;
	}
	if (a->len > CORE_IDEM_ANSWER_MAX) {
		http_response_stream_sized(c->res, status, "application/json", a->len,
					   answer_stream_read, answer_stream_free, a);
		return;
	}
	/* Small enough to keep for a replay: whole, the output's charge
	 * given back at once. */
	char *text = malloc(a->len + 1);
	if (text == NULL) {
		api_answer_free(a);
		http_response_set(c->res, 500, "application/json", oom, sizeof(oom) - 1);
		return;
	}
	size_t len = (size_t)a->len;
	ssize_t n = api_answer_read(a, text, len);
	text[len] = '\0';
	api_answer_free(a);
	if (n != (ssize_t)len) {
		free(text);
		http_response_set(c->res, 500, "application/json", oom, sizeof(oom) - 1);
		return;
	}
	http_response_take(c->res, status, "application/json", text, len);
}
