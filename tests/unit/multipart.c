/* api/multipart.c: a multipart/form-data body fed in pieces of every
 * size gives the same parts, a file part passes through without being
 * held, and every malformed body is refused with the field named. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../harness.h"
#include "api/multipart.h"

/* What the events saw: "<name>|<filename or ->=<content>;" per part. */
struct seen {
	char text[4096];
	size_t len;
	size_t biggest_piece;
	size_t total;
	int fail_at_data; /* data() fails once total passes it (0: never) */
};

static void put(struct seen *s, const char *d, size_t n)
{
	if (s->len + n < sizeof(s->text)) {
		memcpy(s->text + s->len, d, n);
		s->len += n;
		s->text[s->len] = '\0';
	}
}

static int ev_begin(void *user, const char *name, const char *filename, struct bk_err *err)
{
	(void)err;
	struct seen *s = user;
	put(s, name, strlen(name));
	put(s, "|", 1);
	put(s, filename ? filename : "-", strlen(filename ? filename : "-"));
	put(s, "=", 1);
	return 0;
}

static int ev_data(void *user, const char *d, size_t n, struct bk_err *err)
{
	struct seen *s = user;
	s->total += n;
	if (n > s->biggest_piece)
		s->biggest_piece = n;
	if (s->fail_at_data && s->total > (size_t)s->fail_at_data)
		return bk_err_kind(err, BK_E_NO_SPACE, "disk full");
	if (n < 256)
		put(s, d, n);
	return 0;
}

static int ev_end(void *user, struct bk_err *err)
{
	(void)err;
	put(user, ";", 1);
	return 0;
}

static const struct mp_events events = {ev_begin, ev_data, ev_end};

/* Feeds body in pieces of step bytes; returns feed/finish's result. */
static int parse(const char *ctype, const char *body, size_t len, size_t step, struct seen *s,
		 struct bk_err *err)
{
	struct mp_parser p;
	memset(s->text, 0, sizeof(s->text));
	s->len = 0;
	s->total = 0;
	s->biggest_piece = 0;
	if (mp_parser_init(&p, ctype, "body", &events, s, err) < 0)
		return -1;
	int rc = 0;
	for (size_t at = 0; at < len && rc == 0; at += step)
		rc = mp_parser_feed(&p, body + at, len - at < step ? len - at : step, err);
	if (rc == 0)
		rc = mp_parser_finish(&p, err);
	mp_parser_release(&p);
	return rc;
}

#define CT "multipart/form-data; boundary=XyZ123"

/* What Python's requests sends for data={...}, files={"file": f}. */
static const char sdk_body[] = "--XyZ123\r\n"
			       "Content-Disposition: form-data; name=\"remote_path\"\r\n\r\n"
			       "/app/x.py\r\n"
			       "--XyZ123\r\n"
			       "Content-Disposition: form-data; name=\"session_id\"\r\n\r\n"
			       "abc\r\n"
			       "--XyZ123\r\n"
			       "Content-Disposition: form-data; name=\"file\"; "
			       "filename=\"/home/me/x.py\"\r\n"
			       "Content-Type: application/octet-stream\r\n\r\n"
			       "print(1)\r\n--XyZ12 not yet\r\n\r\n"
			       "--XyZ123--\r\n";

TEST(multipart_every_piece_size)
{
	const char *want = "remote_path|-=/app/x.py;session_id|-=abc;"
			   "file|/home/me/x.py=print(1)\r\n--XyZ12 not yet\r\n;";
	for (size_t step = 1; step <= sizeof(sdk_body); step++) {
		struct seen s = {0};
		struct bk_err err = BK_ERR_INIT;
		int rc = parse(CT, sdk_body, sizeof(sdk_body) - 1, step, &s, &err);
		CHECK_MSG(rc == 0, "step %zu: %s", step, err.msg);
		CHECK_MSG(strcmp(s.text, want) == 0, "step %zu: saw '%s'", step, s.text);
	}
}

TEST(multipart_quoted_boundary_preamble_and_epilogue)
{
	const char body[] = "a preamble\r\n--b 1\r\n"
			    "content-disposition: Form-Data; filename=\"q\\\"; x\"; name=f\r\n\r\n"
			    "\r\n--b 1--\r\nan epilogue, ignored";
	struct seen s = {0};
	struct bk_err err = BK_ERR_INIT;
	CHECK_INT_EQ(
	    parse("Multipart/Form-Data ; boundary=\"b 1\"", body, sizeof(body) - 1, 7, &s, &err),
	    0);
	CHECK_STR_EQ(s.text, "f|q\"; x=;");
}

/* A file part of 8 MiB goes through in pieces no bigger than the window. */
TEST(multipart_large_part_streams)
{
	size_t n = 8u << 20;
	const char *head = "--XyZ123\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\n";
	const char *tail = "\r\n--XyZ123--";
	size_t hl = strlen(head), tl = strlen(tail);
	char *body = malloc(hl + n + tl);
	CHECK(body != NULL);
	memcpy(body, head, hl);
	/* Content full of near-delimiters. */
	for (size_t i = 0; i < n; i++)
		body[hl + i] = "\r\n--XyZ12"[i % 9];
	memcpy(body + hl + n, tail, tl);
	struct seen s = {0};
	struct bk_err err = BK_ERR_INIT;
	CHECK_INT_EQ(parse(CT, body, hl + n + tl, 1u << 20, &s, &err), 0);
	CHECK_INT_EQ(s.total, n);
	CHECK_MSG(s.biggest_piece <= MP_WINDOW, "a piece of %zu bytes", s.biggest_piece);
	free(body);
}

static void refused(const char *ctype, const char *body, const char *msg_part)
{
	struct seen s = {0};
	struct bk_err err = BK_ERR_INIT;
	CHECK_MSG(parse(ctype, body, strlen(body), 3, &s, &err) < 0, "'%s' was taken", body);
	CHECK_INT_EQ(err.kind, BK_E_INVALID);
	CHECK_STR_EQ(err.field, "body");
	CHECK_MSG(strstr(err.msg, msg_part) != NULL, "message '%s' lacks '%s'", err.msg, msg_part);
}

TEST(multipart_malformed_refused)
{
	refused("application/json", "{}", "multipart/form-data");
	refused(NULL, "", "multipart/form-data");
	refused("multipart/form-data", "", "boundary");
	refused("multipart/form-data; boundary=", "", "boundary");
	refused("multipart/form-data; boundary=\"unclosed", "", "boundary");
	char longb[200] = "multipart/form-data; boundary=";
	memset(longb + strlen(longb), 'b', 71);
	refused(longb, "", "boundary");
	refused(CT, "", "closing boundary");
	refused(CT, "--XyZ123\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nx",
		"closing boundary");
	refused(CT, "--XyZ123\r\nContent-Type: text/plain\r\n\r\nx\r\n--XyZ123--", "name");
	refused(CT, "--XyZ123\r\nContent-Disposition: attachment; name=a\r\n\r\nx\r\n--XyZ123--",
		"form-data");
	refused(CT, "--XyZ123junk\r\n", "goes on");
	/* A header block without end, past its bound. */
	char *big = malloc(MP_HEADERS_MAX + 100);
	CHECK(big != NULL);
	strcpy(big, "--XyZ123\r\nX: ");
	memset(big + strlen(big), 'h', MP_HEADERS_MAX + 10);
	big[MP_HEADERS_MAX + 10 + 13] = '\0';
	refused(CT, big, "headers");
	free(big);
	/* More parts than the bound. */
	char many[MP_PARTS_MAX * 80 + 64] = "";
	for (int i = 0; i <= MP_PARTS_MAX; i++)
		strcat(many, "--XyZ123\r\nContent-Disposition: form-data; name=\"p\"\r\n\r\nv\r\n");
	strcat(many, "--XyZ123--");
	refused(CT, many, "parts");
}

/* An event's error stops the parser and is what every later call says. */
TEST(multipart_event_error_stops)
{
	struct seen s = {.fail_at_data = 4};
	struct bk_err err = BK_ERR_INIT;
	CHECK(parse(CT, sdk_body, sizeof(sdk_body) - 1, 5, &s, &err) < 0);
	CHECK_INT_EQ(err.kind, BK_E_NO_SPACE);
	CHECK_STR_EQ(err.msg, "disk full");
}
