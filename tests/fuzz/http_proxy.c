/* Fuzz target: the relay's reading of a client's request stream
 * (proxy_parse(), src/http/proxy_request.c) and of an app's answers
 * (proxy_answers_scan(), src/http/proxy_answer.c). The first byte picks
 * how the stream is cut into reads and whether a prefix and key prefix
 * apply; the rest is the stream, fed to both. Fed in pieces or whole,
 * the same bytes go up. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http/proxy.h"

static void check(int ok)
{
	if (!ok)
		abort();
}

/* The parser's output over the whole stream, fed in reads of step bytes. */
struct run {
	char *out;
	size_t out_len, out_cap;
	int rc, heads;
	enum proxy_state st;
	char location[PROXY_LOCATION_MAX];
};

static void feed(struct proxy_parser *p, struct proxy_answers *answers, const char *in, size_t len,
		 size_t step, size_t out_cap, struct run *r)
{
	char *buf = malloc(PROXY_HEAD_MAX);
	char *out = malloc(out_cap);
	if (buf == NULL || out == NULL)
		abort();
	*r = (struct run){0};
	size_t buf_len = 0, pos = 0;
	for (int rounds = 0;; rounds++) {
		check(rounds < 1000000);
		size_t n = step;
		if (n > len - pos)
			n = len - pos;
		if (n > PROXY_HEAD_MAX - buf_len)
			n = PROXY_HEAD_MAX - buf_len;
		memcpy(buf + buf_len, in + pos, n);
		buf_len += n;
		pos += n;
		size_t out_len = 0, before = buf_len;
		int heads = 0;
		int rc = proxy_parse(p, buf, &buf_len, out, &out_len, out_cap, &heads);
		check(out_len <= out_cap && buf_len <= before);
		r->heads += heads;
		if (r->out_len + out_len > r->out_cap) {
			r->out_cap = (r->out_len + out_len) * 2;
			r->out = realloc(r->out, r->out_cap);
			if (r->out == NULL)
				abort();
		}
		if (out_len)
			memcpy(r->out + r->out_len, out, out_len);
		r->out_len += out_len;
		r->rc = rc;
		if (rc != PROXY_OK) {
			check(p->st == PROXY_STOP);
			check(memchr(p->location, '\0', sizeof(p->location)) != NULL);
			break;
		}
		/* The app answers each request (its answers' framing, below). */
		for (int k = 0; k < PROXY_PENDING_MAX && answers && proxy_answers_full(answers);
		     k++)
			proxy_answers_scan(answers, "HTTP/1.1 204 No Content\r\n\r\n", 27);
		if (n == 0 && out_len == 0 && before == buf_len)
			break;
	}
	r->st = p->st;
	memcpy(r->location, p->location, sizeof(r->location));
	free(buf);
	free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	uint8_t mode = data[0];
	const char *in = (const char *)data + 1;
	size_t len = size - 1;
	size_t step = (mode & 0x0f) == 0 ? len : (size_t)(mode & 0x0f) * 7;
	if (step == 0)
		step = 1;
	struct proxy_answers answers = {0};
	const struct proxy_parser init = {
	    .host = "p-8080-abc.preview.test",
	    .client_ip = "192.0.2.1",
	    .proto = "http",
	    .prefix = (mode & 0x10) ? "/app" : NULL,
	    .answers = (mode & 0x20) ? &answers : NULL,
	    .key_prefix = (mode & 0x40) ? "bk_" : NULL,
	};
	size_t out_cap = (mode & 0x80) ? PROXY_OUT_MIN : PROXY_OUT_MIN * 2;
	struct proxy_parser p = init;
	struct run r;
	feed(&p, p.answers, in, len, step, out_cap, &r);
	/* How the stream is cut into reads changes nothing of what goes up
	 * (without answers, whose timing the reads do change). */
	if (p.answers == NULL && step != len) {
		struct proxy_parser q = init;
		struct run whole;
		feed(&q, NULL, in, len, len ? len : 1, out_cap, &whole);
		check(whole.rc == r.rc && whole.heads == r.heads && whole.st == r.st);
		check(whole.out_len == r.out_len);
		check(r.out_len == 0 || memcmp(whole.out, r.out, r.out_len) == 0);
		check(strcmp(whole.location, r.location) == 0);
		free(whole.out);
	}
	free(r.out);

	/* The same bytes as answers, after a few requests of each kind. */
	struct proxy_answers a = {0};
	proxy_answers_expect(&a, PROXY_REQ_OTHER);
	proxy_answers_expect(&a, (mode & 1) ? PROXY_REQ_HEAD : PROXY_REQ_OTHER);
	proxy_answers_expect(&a, (mode & 2) ? PROXY_REQ_CONNECT : PROXY_REQ_OTHER);
	for (size_t off = 0; off < len; off += step) {
		size_t n = len - off < step ? len - off : step;
		proxy_answers_scan(&a, in + off, n);
		check(a.n <= PROXY_PENDING_MAX);
		if (proxy_answers_between(&a) && !proxy_answers_full(&a))
			proxy_answers_expect(&a, PROXY_REQ_OTHER);
	}
	proxy_answers_eof(&a);
	proxy_answers_settled(&a);
	return 0;
}
