/* The relay's reading of a client's byte stream (http/proxy.c), kept free
 * of I/O so that unit tests can feed it byte by byte.
 *
 * A relayed connection carries HTTP/1.1 requests one after the other. The
 * relay must know where each ends (to find the next head, whose
 * X-Forwarded-* headers it sets) and nothing more: bodies are copied as
 * they come, never held whole. The framing is RFC 9112's: Transfer-Encoding
 * chunked (chunk sizes and trailers parsed), else Content-Length, else no
 * body. A request that upgrades the connection (Upgrade with Connection:
 * upgrade, or CONNECT) ends the parsing: every byte after its body is
 * copied as is. Answers are not parsed at all: HTTP/1.1 answers come in
 * the order of the requests, so the upstream's bytes go back as they are.
 *
 * Anything two parsers could read two ways (request smuggling) is refused
 * rather than passed on: both Content-Length and Transfer-Encoding, a
 * Transfer-Encoding whose last coding is not chunked, differing or
 * malformed Content-Lengths, folded header lines, control characters, more
 * than one Host.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The longest request head (request line and headers) relayed: longer is
 * refused with 431. */
#define PROXY_HEAD_MAX (32 * 1024)
/* The output room in which any head fits once rewritten: bare-LF lines
 * gain a CR, and the X-Forwarded-* headers are added. */
#define PROXY_OUT_MIN (2 * PROXY_HEAD_MAX + 1024)
/* The longest chunk-size line (size, extensions) or trailer line. */
#define PROXY_LINE_MAX 4096

enum proxy_state {
	PROXY_HEAD = 0,	  /* expecting a request head */
	PROXY_BODY,	  /* left bytes of a Content-Length body */
	PROXY_CHUNK_SIZE, /* a chunk-size line */
	PROXY_CHUNK_DATA, /* left bytes of a chunk */
	PROXY_CHUNK_END,  /* the CRLF after a chunk's data */
	PROXY_TRAILER,	  /* trailer lines, up to an empty one */
	PROXY_RAW,	  /* upgraded: bytes are copied as they are */
	PROXY_STOP,	  /* refused or ended: nothing more is taken */
};

/* What proxy_parse() ended with, besides an HTTP status (400, 431) to
 * refuse a request with. */
#define PROXY_OK 0	   /* took what it could; wants more input or room */
#define PROXY_OTHER_HOST 1 /* a request for another host: nothing of it taken */

struct proxy_parser {
	/* Set by the caller, borrowed. */
	const char *host;      /* the connection's Host: every request must name it */
	const char *client_ip; /* appended to X-Forwarded-For */
	const char *proto;     /* X-Forwarded-Proto */
	/* State. */
	enum proxy_state st;
	bool upgrade_after; /* the current request switches to PROXY_RAW after its body */
	uint64_t left;	    /* bytes of the body or the chunk still to copy */
};

/* Moves what it can of in[0..*in_len) to out[*out_len..out_cap): request
 * heads rewritten (X-Forwarded-For gets the client's address appended,
 * X-Forwarded-Proto and X-Forwarded-Host are replaced, line ends become
 * CRLF), everything else copied. The bytes taken are removed from the
 * front of in. *heads is incremented for each head written. A head is
 * only written whole, when out has PROXY_OUT_MIN bytes free or enough for
 * it. Returns PROXY_OK, PROXY_OTHER_HOST, or a status to refuse the
 * request with; after either of the last two the state is PROXY_STOP. */
int proxy_parse(struct proxy_parser *p, char *in, size_t *in_len, char *out, size_t *out_len,
		size_t out_cap, int *heads);
