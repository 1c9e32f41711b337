/* http/proxy.h: the relay's reading of a client's request stream. Every
 * case is fed twice, whole and one byte at a time, and must come out the
 * same: where requests end does not depend on how TCP cut the bytes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../harness.h"
#include "http/proxy.h"

#define HOST "ses-abcdefghij0123456789.localhost:8080"

struct run {
	char *out;
	size_t out_len;
	int heads;
	int rc;
	enum proxy_state st;
	size_t left_in; /* input bytes not taken */
};

/* Feeds in (len bytes) in pieces of step bytes (0: whole) to a fresh
 * parser; out has out_cap bytes and is drained completely after each
 * call, as the relay's upstream writes would. */
static struct run feed(const char *in, size_t len, size_t step, size_t out_cap)
{
	struct proxy_parser p = {.host = HOST, .client_ip = "192.0.2.1", .proto = "http"};
	struct run r = {.out = calloc(1, len * 2 + 4096)};
	CHECK(r.out != NULL);
	char *buf = malloc(PROXY_HEAD_MAX);
	char *out = malloc(out_cap);
	CHECK(buf != NULL && out != NULL);
	size_t buf_len = 0, pos = 0;
	for (;;) {
		size_t n = step ? step : len;
		if (n > len - pos)
			n = len - pos;
		if (n > PROXY_HEAD_MAX - buf_len)
			n = PROXY_HEAD_MAX - buf_len;
		memcpy(buf + buf_len, in + pos, n);
		buf_len += n;
		pos += n;
		size_t out_len = 0;
		r.rc = proxy_parse(&p, buf, &buf_len, out, &out_len, out_cap, &r.heads);
		memcpy(r.out + r.out_len, out, out_len);
		r.out_len += out_len;
		if (r.rc != PROXY_OK || (n == 0 && out_len == 0))
			break;
	}
	r.out[r.out_len] = '\0';
	r.st = p.st;
	r.left_in = buf_len + (len - pos);
	free(buf);
	free(out);
	return r;
}

/* Both ways of feeding agree; the whole-feed run is returned. */
static struct run feed_both(const char *in)
{
	struct run whole = feed(in, strlen(in), 0, PROXY_OUT_MIN);
	struct run bytes = feed(in, strlen(in), 1, PROXY_OUT_MIN);
	CHECK_INT_EQ(whole.rc, bytes.rc);
	CHECK_INT_EQ(whole.heads, bytes.heads);
	CHECK_INT_EQ(whole.st, bytes.st);
	CHECK_INT_EQ(whole.out_len, bytes.out_len);
	CHECK(memcmp(whole.out, bytes.out, whole.out_len) == 0);
	free(bytes.out);
	return whole;
}

TEST(head_gets_x_forwarded_headers)
{
	struct run r = feed_both("GET /a?b=1 HTTP/1.1\r\nHost: " HOST "\r\n"
				 "X-Forwarded-For: 203.0.113.9\r\nX-Forwarded-Host: evil\r\n"
				 "x-forwarded-proto: gopher\r\nAccept: */*\r\n\r\n");
	CHECK_INT_EQ(r.rc, PROXY_OK);
	CHECK_INT_EQ(r.heads, 1);
	CHECK_INT_EQ(r.st, PROXY_HEAD);
	CHECK_STR_EQ(r.out, "GET /a?b=1 HTTP/1.1\r\nHost: " HOST "\r\nAccept: */*\r\n"
			    "X-Forwarded-For: 203.0.113.9, 192.0.2.1\r\n"
			    "X-Forwarded-Proto: http\r\nX-Forwarded-Host: " HOST "\r\n\r\n");
	free(r.out);
}

TEST(bare_lf_lines_and_leading_blank_lines)
{
	struct run r = feed_both("\r\n\nGET / HTTP/1.0\nhost:   " HOST "  \n\n");
	CHECK_INT_EQ(r.rc, PROXY_OK);
	CHECK_INT_EQ(r.heads, 1);
	CHECK_STR_EQ(r.out, "GET / HTTP/1.0\r\nhost: " HOST "\r\nX-Forwarded-For: 192.0.2.1\r\n"
			    "X-Forwarded-Proto: http\r\nX-Forwarded-Host: " HOST "\r\n\r\n");
	free(r.out);
}

TEST(content_length_bodies_and_keep_alive)
{
	struct run r = feed_both("POST /x HTTP/1.1\r\nHost: " HOST "\r\nContent-Length: 5\r\n\r\n"
				 "hello"
				 "GET /y HTTP/1.1\r\nHost: " HOST "\r\n\r\n");
	CHECK_INT_EQ(r.rc, PROXY_OK);
	CHECK_INT_EQ(r.heads, 2);
	CHECK_INT_EQ(r.st, PROXY_HEAD);
	CHECK(strstr(r.out, "\r\n\r\nhelloGET /y HTTP/1.1\r\n") != NULL);
	free(r.out);
	/* A body that looks like a head is a body. */
	r = feed_both("POST /x HTTP/1.1\r\nHost: " HOST "\r\nContent-Length: 21\r\n\r\n"
		      "GET /z HTTP/1.1\r\n\r\n\r\n");
	CHECK_INT_EQ(r.heads, 1);
	CHECK_INT_EQ(r.st, PROXY_HEAD);
	free(r.out);
}

TEST(chunked_bodies_with_extensions_and_trailers)
{
	struct run r = feed_both("POST /u HTTP/1.1\r\nHost: " HOST "\r\nTransfer-Encoding: "
				 "gzip, chunked\r\n\r\n"
				 "5;name=val\r\nhello\r\nA\r\n0123456789\r\n0\r\nX-Sum: 1\r\n\r\n"
				 "GET /next HTTP/1.1\r\nHost: " HOST "\r\n\r\n");
	CHECK_INT_EQ(r.rc, PROXY_OK);
	CHECK_INT_EQ(r.heads, 2);
	CHECK_INT_EQ(r.st, PROXY_HEAD);
	CHECK(strstr(r.out, "\r\n\r\n5;name=val\r\nhello\r\nA\r\n0123456789\r\n0\r\nX-Sum: "
			    "1\r\n\r\nGET /next") != NULL);
	free(r.out);
	/* Chunk data holding CRLFs and hex-looking text is data. */
	r = feed_both("POST /u HTTP/1.1\r\nHost: " HOST "\r\nTransfer-Encoding: chunked\r\n\r\n"
		      "6\r\n0\r\n\r\n\r\n0\r\n\r\n");
	CHECK_INT_EQ(r.heads, 1);
	CHECK_INT_EQ(r.st, PROXY_HEAD);
	CHECK_INT_EQ(r.left_in, 0);
	free(r.out);
}

TEST(upgrade_switches_to_raw_bytes)
{
	struct run r = feed_both("GET /ws HTTP/1.1\r\nHost: " HOST "\r\nUpgrade: websocket\r\n"
				 "Connection: keep-alive, Upgrade\r\n\r\n"
				 "\x81\x85\x01\x02\x03\x04GET / HTTP/1.1\r\n\r\n");
	CHECK_INT_EQ(r.rc, PROXY_OK);
	CHECK_INT_EQ(r.heads, 1);
	CHECK_INT_EQ(r.st, PROXY_RAW);
	CHECK(strstr(r.out, "\x81\x85\x01\x02\x03\x04GET / HTTP/1.1\r\n\r\n") != NULL);
	free(r.out);
	/* Upgrade without "Connection: upgrade" is no upgrade. */
	r = feed_both("GET /ws HTTP/1.1\r\nHost: " HOST "\r\nUpgrade: websocket\r\n\r\n");
	CHECK_INT_EQ(r.st, PROXY_HEAD);
	free(r.out);
}

static void refused(const char *head_lines, int status)
{
	char req[1024];
	snprintf(req, sizeof(req), "POST /x HTTP/1.1\r\nHost: " HOST "\r\n%s\r\n", head_lines);
	struct run r = feed_both(req);
	CHECK_MSG(r.rc == status, "'%s': %d, not %d", head_lines, r.rc, status);
	CHECK_INT_EQ(r.st, PROXY_STOP);
	CHECK_INT_EQ(r.out_len, 0);
	free(r.out);
}

TEST(smuggling_shapes_are_refused)
{
	refused("Content-Length: 3\r\nTransfer-Encoding: chunked\r\n", 400);
	refused("Transfer-Encoding: chunked, gzip\r\n", 400);
	refused("Transfer-Encoding: identity\r\n", 400);
	refused("Content-Length: 3\r\nContent-Length: 4\r\n", 400);
	refused("Content-Length: 3, 3\r\n", 400);
	refused("Content-Length: +3\r\n", 400);
	refused("Content-Length: 99999999999999999999\r\n", 400);
	refused("X-A: b\r\n folded\r\n", 400);
	refused("Bad Name: x\r\n", 400);
	refused("X-Ctl: a\x01"
		"b\r\n",
		400);
	refused("Host: " HOST "\r\n", 400);
	/* Equal Content-Lengths are one. */
	struct run r = feed_both("POST /x HTTP/1.1\r\nHost: " HOST "\r\nContent-Length: 1\r\n"
				 "Content-Length: 1\r\n\r\nZ");
	CHECK_INT_EQ(r.rc, PROXY_OK);
	CHECK_INT_EQ(r.st, PROXY_HEAD);
	free(r.out);
}

TEST(bad_request_lines_and_chunks)
{
	const char *bad[] = {
	    "GET  / HTTP/1.1\r\nHost: " HOST "\r\n\r\n",
	    "GET / HTTP/2.0\r\nHost: " HOST "\r\n\r\n",
	    "G(T / HTTP/1.1\r\nHost: " HOST "\r\n\r\n",
	    "GET /a b HTTP/1.1\r\nHost: " HOST "\r\n\r\n",
	    "POST / HTTP/1.1\r\nHost: " HOST "\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
	    "POST / HTTP/1.1\r\nHost: " HOST "\r\nTransfer-Encoding: chunked\r\n\r\n"
	    "1\r\naXX",
	    "POST / HTTP/1.1\r\nHost: " HOST "\r\nTransfer-Encoding: chunked\r\n\r\n"
	    "fffffffffffffffff\r\n",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct run r = feed(bad[i], strlen(bad[i]), 0, PROXY_OUT_MIN);
		CHECK_MSG(r.rc == 400, "case %zu: %d", i, r.rc);
		free(r.out);
	}
}

TEST(other_host_is_not_relayed)
{
	struct run r = feed_both("GET /a HTTP/1.1\r\nHost: " HOST "\r\n\r\n"
				 "GET /b HTTP/1.1\r\nHost: localhost:8080\r\n\r\n");
	CHECK_INT_EQ(r.rc, PROXY_OTHER_HOST);
	CHECK_INT_EQ(r.heads, 1);
	CHECK(strstr(r.out, "/b") == NULL);
	free(r.out);
	/* Case does not matter; a missing Host is another host. */
	r = feed_both("GET /a HTTP/1.1\r\nHost: SES-ABCDEFGHIJ0123456789.LOCALHOST:8080\r\n\r\n");
	CHECK_INT_EQ(r.rc, PROXY_OK);
	free(r.out);
	r = feed_both("GET /a HTTP/1.0\r\n\r\n");
	CHECK_INT_EQ(r.rc, PROXY_OTHER_HOST);
	free(r.out);
}

TEST(head_too_large_is_431)
{
	size_t n = PROXY_HEAD_MAX + 100;
	char *req = malloc(n + 1);
	CHECK(req != NULL);
	int off = snprintf(req, n, "GET / HTTP/1.1\r\nHost: " HOST "\r\nX-Big: ");
	memset(req + off, 'a', n - (size_t)off);
	req[n] = '\0';
	struct run r = feed(req, n, 0, PROXY_OUT_MIN);
	CHECK_INT_EQ(r.rc, 431);
	free(r.out);
	free(req);
}

TEST(bodies_stream_through_a_small_output)
{
	/* A body far larger than the output room moves through it piece by
	 * piece, and nothing past its end is taken as body. */
	size_t body = 200000;
	char head[256];
	int hl = snprintf(head, sizeof(head),
			  "PUT /f HTTP/1.1\r\nHost: " HOST "\r\nContent-Length: %zu\r\n\r\n", body);
	const char *next = "GET /after HTTP/1.1\r\nHost: " HOST "\r\n\r\n";
	size_t total = (size_t)hl + body + strlen(next);
	char *req = malloc(total + 1);
	CHECK(req != NULL);
	memcpy(req, head, (size_t)hl);
	for (size_t i = 0; i < body; i++)
		req[hl + (long)i] = (char)('A' + i % 26);
	memcpy(req + hl + body, next, strlen(next) + 1);
	struct run r = feed(req, total, 4096, PROXY_OUT_MIN);
	CHECK_INT_EQ(r.rc, PROXY_OK);
	CHECK_INT_EQ(r.heads, 2);
	CHECK(strstr(r.out, "GET /after HTTP/1.1\r\n") != NULL);
	free(r.out);
	free(req);
}
