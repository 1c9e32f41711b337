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
	size_t left_in;			   /* input bytes not taken */
	char location[PROXY_LOCATION_MAX]; /* after PROXY_OTHER_HOST */
};

/* Feeds in (len bytes) in pieces of step bytes (0: whole) to a fresh
 * parser with prefix (may be NULL); out has out_cap bytes and is drained
 * completely after each call, as the relay's upstream writes would. */
static struct run feed_prefixed(const char *in, size_t len, size_t step, size_t out_cap,
				const char *prefix)
{
	struct proxy_parser p = {
	    .host = HOST, .client_ip = "192.0.2.1", .proto = "http", .prefix = prefix};
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
	memcpy(r.location, p.location, sizeof(r.location));
	r.left_in = buf_len + (len - pos);
	free(buf);
	free(out);
	return r;
}

static struct run feed(const char *in, size_t len, size_t step, size_t out_cap)
{
	return feed_prefixed(in, len, step, out_cap, NULL);
}

/* Both ways of feeding agree; the whole-feed run is returned. */
static struct run feed_both_prefixed(const char *in, const char *prefix)
{
	struct run whole = feed_prefixed(in, strlen(in), 0, PROXY_OUT_MIN, prefix);
	struct run bytes = feed_prefixed(in, strlen(in), 1, PROXY_OUT_MIN, prefix);
	CHECK_INT_EQ(whole.rc, bytes.rc);
	CHECK_INT_EQ(whole.heads, bytes.heads);
	CHECK_INT_EQ(whole.st, bytes.st);
	CHECK_INT_EQ(whole.out_len, bytes.out_len);
	CHECK(memcmp(whole.out, bytes.out, whole.out_len) == 0);
	CHECK_STR_EQ(whole.location, bytes.location);
	free(bytes.out);
	return whole;
}

static struct run feed_both(const char *in)
{
	return feed_both_prefixed(in, NULL);
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
	CHECK_STR_EQ(r.location, "");
	free(r.out);
	/* Another host is sent to itself, absolute. */
	r = feed_both("GET /b?c HTTP/1.1\r\nHost: localhost:8080\r\n\r\n");
	CHECK_INT_EQ(r.rc, PROXY_OTHER_HOST);
	CHECK_STR_EQ(r.location, "http://localhost:8080/b?c");
	free(r.out);
}

#define PREFIX "/v1/app/ses_abcdefghij0123456789/3000"

TEST(prefix_is_cut_from_targets_and_forwarded)
{
	static const struct {
		const char *target, *up;
	} cases[] = {
	    {PREFIX, "/"},
	    {PREFIX "/", "/"},
	    {PREFIX "?q=1", "/?q=1"},
	    {PREFIX "/a/b?x=/v1", "/a/b?x=/v1"},
	    {PREFIX "//a", "//a"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char in[512], want[1024];
		snprintf(in, sizeof(in),
			 "GET %s HTTP/1.1\r\nHost: " HOST "\r\nX-Forwarded-Prefix: /evil\r\n\r\n",
			 cases[i].target);
		snprintf(want, sizeof(want),
			 "GET %s HTTP/1.1\r\nHost: " HOST "\r\nX-Forwarded-For: 192.0.2.1\r\n"
			 "X-Forwarded-Proto: http\r\nX-Forwarded-Host: " HOST "\r\n"
			 "X-Forwarded-Prefix: " PREFIX "\r\n\r\n",
			 cases[i].up);
		struct run r = feed_both_prefixed(in, PREFIX);
		CHECK_INT_EQ(r.rc, PROXY_OK);
		CHECK_INT_EQ(r.heads, 1);
		CHECK_STR_EQ(r.out, want);
		free(r.out);
	}
}

TEST(target_outside_the_prefix_is_sent_elsewhere)
{
	/* The first request goes up; the second, for the API on the same
	 * host, is refused with its own target as the location; nothing of
	 * it goes up. A prefix followed by more characters is another
	 * target (port 30001 is not port 3000). */
	static const char *const others[] = {
	    "/v1/sessions/app-url/ses_abcdefghij0123456789?port=3000",
	    PREFIX "1/",
	    "/v1/app/ses_abcdefghij0123456789/300",
	};
	for (size_t i = 0; i < sizeof(others) / sizeof(others[0]); i++) {
		char in[512];
		snprintf(in, sizeof(in),
			 "GET " PREFIX "/a HTTP/1.1\r\nHost: " HOST "\r\n\r\n"
			 "POST %s HTTP/1.1\r\nHost: " HOST "\r\nContent-Length: 3\r\n\r\nabc",
			 others[i]);
		struct run r = feed_both_prefixed(in, PREFIX);
		CHECK_INT_EQ(r.rc, PROXY_OTHER_HOST);
		CHECK_INT_EQ(r.heads, 1);
		CHECK_STR_EQ(r.location, others[i]);
		CHECK(strstr(r.out, "POST") == NULL);
		free(r.out);
	}
}

TEST(targets_that_are_no_path_are_refused_not_sent_elsewhere)
{
	/* "*", an authority and an absolute URL name no place on this
	 * server to send them to: outside the prefix they are a 400. */
	static const char *const targets[] = {"*", "example.com:443", "http://" HOST PREFIX "/"};
	for (size_t i = 0; i < sizeof(targets) / sizeof(targets[0]); i++) {
		char in[512];
		snprintf(in, sizeof(in), "OPTIONS %s HTTP/1.1\r\nHost: " HOST "\r\n\r\n",
			 targets[i]);
		struct run r = feed_both_prefixed(in, PREFIX);
		CHECK_INT_EQ(r.rc, 400);
		CHECK_INT_EQ(r.heads, 0);
		free(r.out);
	}
}

TEST(the_servers_own_keys_are_not_passed_on)
{
	struct proxy_parser p = {
	    .host = HOST, .client_ip = "192.0.2.1", .proto = "http", .key_prefix = "bk_"};
	char in[] = "GET / HTTP/1.1\r\nHost: " HOST "\r\nAuthorization: Bearer  bk_secret\r\n"
		    "X-API-Key: bk_secret\r\nx-api-key: app-key\r\n"
		    "Authorization: Basic dTpw\r\n\r\n";
	size_t in_len = strlen(in), out_len = 0;
	char *out = calloc(1, PROXY_OUT_MIN + 1);
	CHECK(out != NULL);
	int heads = 0;
	CHECK_INT_EQ(proxy_parse(&p, in, &in_len, out, &out_len, PROXY_OUT_MIN, &heads), PROXY_OK);
	CHECK_INT_EQ(heads, 1);
	CHECK(strstr(out, "bk_secret") == NULL);
	CHECK(strstr(out, "x-api-key: app-key\r\n") != NULL);
	CHECK(strstr(out, "Authorization: Basic dTpw\r\n") != NULL);
	free(out);
}

TEST(the_request_after_an_upgrade_waits_for_its_answer)
{
	/* The app declines the upgrade (h2c, as curl --http2 asks on
	 * http://): the next request is parsed, rewritten and counted like
	 * any other. It accepts the next: a tunnel, copied as it is. */
	struct proxy_answers a = {0};
	struct proxy_parser p = {
	    .host = HOST, .client_ip = "192.0.2.1", .proto = "http", .answers = &a};
	char in[1024];
	snprintf(in, sizeof(in),
		 "GET /a HTTP/1.1\r\nHost: " HOST "\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"
		 "GET /b HTTP/1.1\r\nHost: " HOST "\r\n\r\n");
	size_t in_len = strlen(in), out_len = 0;
	char *out = calloc(1, PROXY_OUT_MIN * 2);
	CHECK(out != NULL);
	int heads = 0;
	CHECK_INT_EQ(proxy_parse(&p, in, &in_len, out, &out_len, PROXY_OUT_MIN * 2, &heads),
		     PROXY_OK);
	CHECK_INT_EQ(heads, 1);
	CHECK_INT_EQ(p.st, PROXY_UPGRADE_WAIT);
	const char no[] = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
	proxy_answers_scan(&a, no, sizeof(no) - 1);
	CHECK_INT_EQ(proxy_parse(&p, in, &in_len, out, &out_len, PROXY_OUT_MIN * 2, &heads),
		     PROXY_OK);
	CHECK_INT_EQ(heads, 2);
	CHECK_INT_EQ(p.st, PROXY_HEAD);
	CHECK(strstr(out, "GET /b HTTP/1.1\r\nHost: " HOST "\r\nX-Forwarded-For: ") != NULL);
	snprintf(in, sizeof(in),
		 "GET /ws HTTP/1.1\r\nHost: " HOST "\r\nConnection: upgrade\r\nUpgrade: "
		 "websocket\r\n\r\nGET /raw HTTP/1.1\r\n\r\n");
	in_len = strlen(in);
	out_len = 0;
	CHECK_INT_EQ(proxy_parse(&p, in, &in_len, out, &out_len, PROXY_OUT_MIN * 2, &heads),
		     PROXY_OK);
	CHECK_INT_EQ(p.st, PROXY_UPGRADE_WAIT);
	const char yes[] = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n";
	proxy_answers_scan(&a, yes, sizeof(yes) - 1);
	CHECK_INT_EQ(proxy_parse(&p, in, &in_len, out, &out_len, PROXY_OUT_MIN * 2, &heads),
		     PROXY_OK);
	CHECK_INT_EQ(p.st, PROXY_RAW);
	CHECK_INT_EQ(in_len, 0);
	CHECK(strstr(out, "\r\n\r\nGET /raw HTTP/1.1\r\n\r\n") != NULL);
	free(out);
}

TEST(refusals_cut_short_inside_a_body_are_marked)
{
	struct run r = feed_both("POST /u HTTP/1.1\r\nHost: " HOST
				 "\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nZZ\r\n");
	CHECK_INT_EQ(r.rc, 400);
	CHECK_INT_EQ(r.heads, 1);
	free(r.out);
	struct proxy_parser p = {.host = HOST, .client_ip = "192.0.2.1", .proto = "http"};
	char in[] =
	    "POST /u HTTP/1.1\r\nHost: " HOST "\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\n";
	size_t in_len = strlen(in), out_len = 0;
	char *out = malloc(PROXY_OUT_MIN);
	CHECK(out != NULL);
	int heads = 0;
	CHECK_INT_EQ(proxy_parse(&p, in, &in_len, out, &out_len, PROXY_OUT_MIN, &heads), 400);
	CHECK(p.cut_short);
	/* A malformed head is refused before anything of it goes up. */
	struct proxy_parser q = {.host = HOST, .client_ip = "192.0.2.1", .proto = "http"};
	char bad[] = "GET / HTTP/1.1\r\nHost: " HOST "\r\nBad Header: x\r\n\r\n";
	in_len = strlen(bad);
	out_len = 0;
	CHECK_INT_EQ(proxy_parse(&q, bad, &in_len, out, &out_len, PROXY_OUT_MIN, &heads), 400);
	CHECK(!q.cut_short);
	free(out);
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

/* ---- the answers ---- */

/* Scans text as answers to requests of kinds (one letter each: G for any,
 * H for HEAD, C for CONNECT), whole and one byte at a time; both ways must
 * end in the same state, which is returned. */
static struct proxy_answers scan_both(const char *kinds, const char *text, size_t len)
{
	struct proxy_answers whole = {0}, bytes = {0};
	for (const char *k = kinds; *k; k++) {
		enum proxy_request_kind kind = *k == 'H'   ? PROXY_REQ_HEAD
					       : *k == 'C' ? PROXY_REQ_CONNECT
							   : PROXY_REQ_OTHER;
		CHECK(proxy_answers_expect(&whole, kind));
		CHECK(proxy_answers_expect(&bytes, kind));
	}
	proxy_answers_scan(&whole, text, len);
	for (size_t i = 0; i < len; i++)
		proxy_answers_scan(&bytes, text + i, 1);
	CHECK_INT_EQ(whole.st, bytes.st);
	CHECK_INT_EQ(whole.n, bytes.n);
	CHECK_INT_EQ(proxy_answers_settled(&whole), proxy_answers_settled(&bytes));
	return whole;
}

#define SCAN(kinds, text) scan_both(kinds, text, strlen(text))

TEST(answers_end_where_their_framing_says)
{
	/* A Content-Length body, a chunked one with extensions and trailers,
	 * then one without a body: all three complete. */
	const char *three = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
			    "HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n"
			    "5;x=y\r\nhello\r\n0\r\nX-Sum: 1\r\n\r\n"
			    "HTTP/1.1 204 No Content\r\n\r\n";
	struct proxy_answers a = SCAN("GGG", three);
	CHECK(proxy_answers_settled(&a));
	CHECK_INT_EQ(a.n, 0);
	/* Each prefix of it that ends inside an answer is not settled. */
	for (size_t cut = 1; cut < strlen(three); cut++) {
		a = scan_both("GGG", three, cut);
		CHECK(!proxy_answers_settled(&a));
	}
	/* Bare LF line ends, and a 5000-byte header line that is not about
	 * framing. */
	char big[6000];
	snprintf(big, sizeof(big), "HTTP/1.1 200 OK\nSet-Cookie: %04999d\nContent-Length: 2\n\nok",
		 0);
	a = SCAN("G", big);
	CHECK(proxy_answers_settled(&a));
}

TEST(answers_without_bodies_and_interim_ones)
{
	/* HEAD's answer names a length it does not send; 304 has none. */
	struct proxy_answers a =
	    SCAN("HG", "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"
		       "HTTP/1.1 304 Not Modified\r\nContent-Length: 7\r\n\r\n");
	CHECK(proxy_answers_settled(&a));
	/* 100 Continue is followed by the final answer to the same request. */
	a = SCAN("G", "HTTP/1.1 100 Continue\r\n\r\n");
	CHECK(!proxy_answers_settled(&a));
	CHECK_INT_EQ(a.n, 1);
	a = SCAN("G", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
	CHECK(proxy_answers_settled(&a));
}

TEST(answers_until_close_tunnels_and_surprises)
{
	/* No length: the body ends when the app closes. */
	struct proxy_answers a = SCAN("G", "HTTP/1.0 200 OK\r\n\r\nsome body");
	CHECK_INT_EQ(a.st, PROXY_A_UNTIL_CLOSE);
	CHECK(!proxy_answers_settled(&a));
	proxy_answers_eof(&a);
	CHECK(proxy_answers_settled(&a));
	/* A Transfer-Encoding that does not end in chunked, too. */
	a = SCAN("G", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n");
	CHECK_INT_EQ(a.st, PROXY_A_UNTIL_CLOSE);
	/* 101, and a 2xx to CONNECT, open a tunnel; a 4xx to CONNECT does not. */
	a = SCAN("G", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x02hi");
	CHECK_INT_EQ(a.st, PROXY_A_TUNNEL);
	CHECK(!proxy_answers_settled(&a));
	a = SCAN("C", "HTTP/1.1 200 Connection established\r\n\r\n");
	CHECK_INT_EQ(a.st, PROXY_A_TUNNEL);
	a = SCAN("C", "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n");
	CHECK(proxy_answers_settled(&a));
	/* An answer nobody asked for, something that is not HTTP, two
	 * lengths that disagree: the framing is lost. */
	a = SCAN("G", "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\nHTTP/1.1 200 OK\r\n\r\n");
	CHECK_INT_EQ(a.st, PROXY_A_LOST);
	a = SCAN("G", "SSH-2.0-OpenSSH\r\n");
	CHECK_INT_EQ(a.st, PROXY_A_LOST);
	a = SCAN("G", "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n");
	CHECK_INT_EQ(a.st, PROXY_A_LOST);
	CHECK(!proxy_answers_settled(&a));
	/* With nothing left to count, requests are never held back. */
	for (int i = 0; i < 2 * PROXY_PENDING_MAX; i++)
		CHECK(proxy_answers_expect(&a, PROXY_REQ_OTHER));
	CHECK(!proxy_answers_full(&a));
	/* An answer that ended at the app's close says so: nothing of ours
	 * may follow it on the connection. */
	a = SCAN("G", "HTTP/1.0 200 OK\r\n\r\nbody");
	CHECK(!a.by_close);
	proxy_answers_eof(&a);
	CHECK(a.by_close);
}

TEST(requests_wait_while_too_many_answers_are_awaited)
{
	struct proxy_answers a = {0};
	struct proxy_parser p = {
	    .host = HOST, .client_ip = "192.0.2.1", .proto = "http", .answers = &a};
	char in[PROXY_HEAD_MAX];
	size_t in_len = 0;
	const char req[] = "GET / HTTP/1.1\r\nHost: " HOST "\r\n\r\n";
	while (in_len + sizeof(req) < sizeof(in) && in_len < 70 * (sizeof(req) - 1)) {
		memcpy(in + in_len, req, sizeof(req) - 1);
		in_len += sizeof(req) - 1;
	}
	char *out = malloc(1 << 20);
	CHECK(out != NULL);
	size_t out_len = 0;
	int heads = 0;
	CHECK_INT_EQ(proxy_parse(&p, in, &in_len, out, &out_len, 1 << 20, &heads), PROXY_OK);
	CHECK_INT_EQ(heads, PROXY_PENDING_MAX);
	CHECK_INT_EQ(a.n, PROXY_PENDING_MAX);
	CHECK(in_len > 0);
	/* One answer comes: one more request goes. */
	const char ans[] = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
	proxy_answers_scan(&a, ans, sizeof(ans) - 1);
	CHECK_INT_EQ(proxy_parse(&p, in, &in_len, out, &out_len, 1 << 20, &heads), PROXY_OK);
	CHECK_INT_EQ(heads, PROXY_PENDING_MAX + 1);
	free(out);
}
