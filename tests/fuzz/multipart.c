/* Fuzz target: the multipart/form-data parser of uploads
 * (src/api/multipart.c). Input: the Content-Type value up to the first
 * '\n', one byte that picks the size of the pieces the body arrives in,
 * then the body. The events check what the parser promises: begin, data,
 * end in order, names NUL-terminated within MP_NAME_MAX, at most
 * MP_PARTS_MAX parts, and the same events and bytes however the body is
 * cut into pieces. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api/multipart.h"

static void check(int ok)
{
	if (!ok)
		abort();
}

struct seen {
	bool in_part;
	unsigned parts;
	size_t bytes;
	bool fail_data; /* an event that fails, to exercise the stop */
	/* Every event and byte, to compare two ways of feeding the body. */
	char *log;
	size_t log_len;
};

static void log_add(struct seen *s, const char *d, size_t n)
{
	s->log = realloc(s->log, s->log_len + n + 1);
	if (s->log == NULL)
		abort();
	memcpy(s->log + s->log_len, d, n);
	s->log_len += n;
}

static int on_begin(void *user, const char *name, const char *filename, struct bk_err *err)
{
	struct seen *s = user;
	check(!s->in_part);
	check(name != NULL && strlen(name) < MP_NAME_MAX);
	check(filename == NULL || strlen(filename) < MP_NAME_MAX);
	s->in_part = true;
	s->parts++;
	log_add(s, "B", 1);
	log_add(s, name, strlen(name) + 1);
	if (filename)
		log_add(s, filename, strlen(filename) + 1);
	check(s->parts <= MP_PARTS_MAX);
	return 0;
}

static int on_data(void *user, const char *data, size_t len, struct bk_err *err)
{
	struct seen *s = user;
	check(s->in_part && len > 0);
	volatile char c = data[0];
	c = data[len - 1];
	(void)c;
	s->bytes += len;
	log_add(s, data, len);
	if (s->fail_data && s->bytes > 100)
		return bk_err_kind(err, BK_E_TOO_LARGE, "too large");
	return 0;
}

static int on_end(void *user, struct bk_err *err)
{
	struct seen *s = user;
	check(s->in_part);
	s->in_part = false;
	log_add(s, "E", 1);
	return 0;
}

static const struct mp_events events = {on_begin, on_data, on_end};

/* Parses body[0..len) fed in pieces of step bytes into s: 0 when the
 * parser took it all and its close delimiter came, -1 otherwise. */
static int parse(const char *ct, const uint8_t *body, size_t len, size_t step, struct seen *s)
{
	struct mp_parser p;
	struct bk_err err = BK_ERR_INIT;
	if (mp_parser_init(&p, ct, "file", &events, s, &err) < 0)
		return -1;
	int rc = 0;
	for (size_t off = 0; off < len && rc == 0; off += step) {
		size_t n = len - off < step ? len - off : step;
		/* Each piece its own allocation, as MHD's buffer would end. */
		char *piece = malloc(n);
		if (piece == NULL)
			abort();
		memcpy(piece, body + off, n);
		struct bk_err e2 = BK_ERR_INIT;
		rc = mp_parser_feed(&p, piece, n, &e2);
		check(rc == 0 || bk_err_is_set(&e2));
		free(piece);
	}
	struct bk_err e3 = BK_ERR_INIT;
	if (rc == 0)
		rc = mp_parser_finish(&p, &e3);
	if (rc == 0)
		check(!s->in_part);
	mp_parser_release(&p);
	return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *nl = memchr(data, '\n', size);
	if (nl == NULL || (size_t)(nl - data) + 2 > size)
		return 0;
	char *ct = strndup((const char *)data, (size_t)(nl - data));
	if (ct == NULL)
		return 0;
	uint8_t mode = nl[1];
	const uint8_t *body = nl + 2;
	size_t len = size - (size_t)(body - data);
	size_t step = (mode & 0x7f) == 0 ? len : (mode & 0x7f);
	if (step == 0)
		step = 1;
	struct seen s = {.fail_data = (mode & 0x80) != 0};
	int rc = parse(ct, body, len, step, &s);
	/* How the body is cut into pieces changes nothing of what it says. */
	if (!s.fail_data && step != len) {
		struct seen whole = {0};
		int rc2 = parse(ct, body, len, len ? len : 1, &whole);
		check(rc == rc2 && s.log_len == whole.log_len);
		check(s.log_len == 0 || memcmp(s.log, whole.log, s.log_len) == 0);
		free(whole.log);
	}
	free(s.log);
	free(ct);
	return 0;
}
