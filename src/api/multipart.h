/* A multipart/form-data body (RFC 7578) parsed as it arrives, in pieces
 * of any size, so that a file part of any length passes through a few KiB:
 * the parser holds at most one piece of MP_WINDOW bytes, a part's headers
 * (MP_HEADERS_MAX) and the delimiter.
 *
 * For every part the caller's events are called in order: begin() with
 * its name and filename (filename NULL when the part has none), data()
 * with its content in pieces, end(). An event returning -1 (with err set)
 * stops the parser: every later call returns -1 with the same error. */
#ifndef BUNKER_API_MULTIPART_H
#define BUNKER_API_MULTIPART_H

#include <stdbool.h>
#include <stddef.h>

#include "util/err.h"

#define MP_BOUNDARY_MAX 70  /* RFC 2046 §5.1.1 */
#define MP_HEADERS_MAX 8192 /* the header block of one part */
#define MP_NAME_MAX 256	    /* a part's name or filename */
#define MP_PARTS_MAX 64	    /* parts in one body */
#define MP_WINDOW 65536	    /* bytes scanned at a time */
/* What a parser holds from mp_parser_init() to mp_parser_release(). */
#define MP_PARSER_HELD (MP_WINDOW + MP_HEADERS_MAX + 2 * (4 + MP_BOUNDARY_MAX + 1))

struct mp_events {
	int (*begin)(void *user, const char *name, const char *filename, struct bk_err *err);
	int (*data)(void *user, const char *data, size_t len, struct bk_err *err);
	int (*end)(void *user, struct bk_err *err);
};

enum mp_state {
	MP_PREAMBLE = 0, /* before the first delimiter */
	MP_AFTER_DELIM,	 /* a delimiter seen: "--" or the line's end next */
	MP_HEADERS,	 /* a part's header block */
	MP_BODY,	 /* a part's content */
	MP_EPILOGUE,	 /* the close delimiter seen: the rest is ignored */
	MP_FAILED,
};

struct mp_parser {
	const struct mp_events *ev;
	void *user;
	enum mp_state state;
	char delim[4 + MP_BOUNDARY_MAX + 1]; /* "\r\n--" boundary */
	size_t delim_len;
	/* Bytes not yet decided: a possible start of the delimiter, the
	 * after-delimiter bytes or the header block so far. */
	char *buf;
	size_t len;
	unsigned parts;
	const char *field; /* named by errors of the body's form */
	struct bk_err err; /* MP_FAILED: why */
};

/* From the request's Content-Type (which must be multipart/form-data with
 * a boundary). -1 with err naming field when it is not. */
int mp_parser_init(struct mp_parser *p, const char *content_type, const char *field,
		   const struct mp_events *ev, void *user, struct bk_err *err);
void mp_parser_release(struct mp_parser *p);
/* The next len bytes of the body. */
int mp_parser_feed(struct mp_parser *p, const char *data, size_t len, struct bk_err *err);
/* The body is over: -1 unless the close delimiter came. */
int mp_parser_finish(struct mp_parser *p, struct bk_err *err);

#endif
