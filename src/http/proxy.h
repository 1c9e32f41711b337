/* The relay's reading of a client's byte stream (http/proxy_request.c)
 * and of its upstream's answers (http/proxy_answer.c), kept free
 * of I/O so that unit tests can feed it byte by byte.
 *
 * A relayed connection carries HTTP/1.1 requests one after the other. The
 * relay must know where each ends (to find the next head, whose
 * X-Forwarded-* headers it sets) and nothing more: bodies are copied as
 * they come, never held whole. The framing is RFC 9112's: Transfer-Encoding
 * chunked (chunk sizes and trailers parsed), else Content-Length, else no
 * body. A request that upgrades the connection (Upgrade with Connection:
 * upgrade, or CONNECT) ends the parsing: every byte after its body is
 * copied as is. Answers go back as they are (HTTP/1.1 answers come in the
 * order of the requests); only their framing is read (struct
 * proxy_answers), to know where each ends.
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
	PROXY_HEAD = 0,	    /* expecting a request head */
	PROXY_BODY,	    /* left bytes of a Content-Length body */
	PROXY_CHUNK_SIZE,   /* a chunk-size line */
	PROXY_CHUNK_DATA,   /* left bytes of a chunk */
	PROXY_CHUNK_END,    /* the CRLF after a chunk's data */
	PROXY_TRAILER,	    /* trailer lines, up to an empty one */
	PROXY_UPGRADE_WAIT, /* after a request to upgrade: waits for its answer */
	PROXY_RAW,	    /* upgraded: bytes are copied as they are */
	PROXY_STOP,	    /* refused or ended: nothing more is taken */
};

/* What proxy_parse() ended with, besides an HTTP status (400, 431) to
 * refuse a request with. */
#define PROXY_OK 0 /* took what it could; wants more input or room */
/* A request for another host, or (with a prefix) for a target outside it:
 * nothing of it is taken; the parser's location says where it belongs. */
#define PROXY_OTHER_HOST 1
/* The longest location kept for such a request. */
#define PROXY_LOCATION_MAX 2048

/* ---- the upstream's answers ----
 *
 * Answers are passed on untouched, but the relay must know where each
 * ends: to end a connection, or to refuse a request, between two answers
 * and never inside one (an app may take its time with one answer while the
 * client has already sent the next request, or half-closed its side). So
 * it reads their framing as they go by (RFC 9112 6.3): no body for HEAD,
 * 1xx, 204 and 304; a tunnel after 101 or a 2xx to CONNECT; chunked; a
 * Content-Length; or until the app closes. */

/* Requests sent up whose answers are not complete, at most. */
#define PROXY_PENDING_MAX 64
/* The part of an answer's header line that is kept: enough for the names
 * and values of the framing headers. */
#define PROXY_ANSWER_LINE 256

enum proxy_answer_state {
	PROXY_A_HEAD = 0,    /* between answers, or in a head */
	PROXY_A_BODY,	     /* left bytes of a Content-Length body */
	PROXY_A_CHUNK_SIZE,  /* a chunk-size line */
	PROXY_A_CHUNK_DATA,  /* left bytes of a chunk */
	PROXY_A_CHUNK_END,   /* the line end after a chunk's data */
	PROXY_A_TRAILER,     /* trailer lines, up to an empty one */
	PROXY_A_UNTIL_CLOSE, /* a body that ends when the app closes */
	PROXY_A_TUNNEL,	     /* upgraded: bytes are not answers any more */
	PROXY_A_LOST,	     /* not HTTP as expected: framing unknown from here */
};

/* What a request is to its answer's framing. */
enum proxy_request_kind {
	PROXY_REQ_OTHER = 0,
	PROXY_REQ_HEAD,	   /* its answer has no body */
	PROXY_REQ_CONNECT, /* a 2xx answer opens a tunnel */
};

struct proxy_answers {
	enum proxy_answer_state st;
	uint64_t left;
	char line[PROXY_ANSWER_LINE]; /* the line being read, cut short */
	size_t line_len;	      /* its length, uncut */
	bool last_cr;		      /* its last byte so far is a CR */
	bool in_head;		      /* a head's status line has been read */
	int status;
	bool te, chunked, cl;
	uint64_t length;
	/* The kinds of the requests whose answers are awaited, oldest first
	 * from first, in a ring. */
	uint8_t kind[PROXY_PENDING_MAX];
	unsigned first, n;
	bool by_close; /* the last answer ended when the app closed */
};

/* Whether PROXY_PENDING_MAX answers are awaited: the next request waits. */
bool proxy_answers_full(const struct proxy_answers *a);
/* Notes a request sent up. False when full (nothing is noted). */
bool proxy_answers_expect(struct proxy_answers *a, enum proxy_request_kind kind);
/* Reads the framing of n more bytes of answers. */
void proxy_answers_scan(struct proxy_answers *a, const char *b, size_t n);
/* The app has closed its side: a body that ran until then is complete. */
void proxy_answers_eof(struct proxy_answers *a);
/* Whether the answers are between two answers: none has begun that has
 * not ended (false once the framing is not known, PROXY_A_TUNNEL or
 * _LOST). */
bool proxy_answers_between(const struct proxy_answers *a);
/* Between answers, and none is awaited. */
bool proxy_answers_settled(const struct proxy_answers *a);

struct proxy_parser {
	/* Set by the caller, borrowed. */
	const char *host;      /* the connection's Host: every request must name it */
	const char *client_ip; /* appended to X-Forwarded-For */
	const char *proto;     /* X-Forwarded-Proto */
	/* A path prefix every request-target must start with, followed by
	 * '/', '?' or its end; it is cut off (what is left starts with '/')
	 * and sent as X-Forwarded-Prefix. NULL: targets go up as they are. */
	const char *prefix;
	/* Where each request relayed is noted; NULL: nowhere. A request head
	 * waits while PROXY_PENDING_MAX answers are awaited, and the request
	 * after one that asks to upgrade waits for its answer. */
	struct proxy_answers *answers;
	/* The start of the server's own API keys: Authorization (Bearer) and
	 * X-API-Key headers whose value starts with it are not passed on.
	 * NULL: none is dropped. */
	const char *key_prefix;
	/* A header that clients never pass on (hop_name: every line of that
	 * name is dropped) and, when hop_line is not NULL, the line ("Name:
	 * value") written in its place in every head: how one node tells
	 * another that a connection is relayed. NULL: none. */
	const char *hop_name;
	const char *hop_line;
	/* After PROXY_OTHER_HOST: the refused request's target, made absolute
	 * with its Host when that is not the connection's; "" when it has no
	 * Host or the location would be too long. */
	char location[PROXY_LOCATION_MAX];
	/* State. */
	enum proxy_state st;
	bool upgrade_after; /* the current request switches to PROXY_RAW after its body */
	uint64_t left;	    /* bytes of the body or the chunk still to copy */
	bool cut_short;	    /* stopped inside a request: its head went up, not all its body */
};

/* Moves what it can of in[0..*in_len) to out[*out_len..out_cap): request
 * heads rewritten (X-Forwarded-For gets the client's address appended,
 * X-Forwarded-Proto and X-Forwarded-Host are replaced, line ends become
 * CRLF, the prefix is cut from targets), everything else copied. The bytes taken are removed from
 * the front of in. *heads is incremented for each head written. A head is only written whole, when
 * out has PROXY_OUT_MIN bytes free or enough for it. Returns PROXY_OK, PROXY_OTHER_HOST, or a
 * status to refuse the request with; after either of the last two the state is PROXY_STOP. */
int proxy_parse(struct proxy_parser *p, char *in, size_t *in_len, char *out, size_t *out_len,
		size_t out_cap, int *heads);
