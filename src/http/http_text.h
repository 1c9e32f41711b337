/* The text of HTTP/1.1 heads (RFC 9110, RFC 9112), as the http/ files
 * read it: tokens, field lines, lists, lengths. Nothing here allocates or
 * does I/O; every string is a (pointer, length) pair into the caller's
 * bytes, which stay borrowed. Internal to http/. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Whether s[0..n) is a token (RFC 9110 5.6.2): one tchar or more. */
bool http__is_token(const char *s, size_t n);
/* Whether s[0..n) may be a field value: visible characters, blanks and
 * bytes >= 0x80 (no other control character). */
bool http__is_field_value(const char *s, size_t n);
/* Whether s[0..n) is lit, case aside. */
bool http__eq_ci(const char *s, size_t n, const char *lit);
/* Whether the comma-separated list s[0..n) holds token (case aside); with
 * last, whether it is the list's last element. */
bool http__list_has(const char *s, size_t n, const char *token, bool last);
/* A Content-Length value: 0 with *out set, -1 unless it is 1 to 18 digits. */
int http__parse_content_length(const char *v, size_t n, uint64_t *out);
/* The size of a chunk-size line "HEX[;ext]" (without its line end): 0
 * with *out set, -1 when it is malformed or too large. */
int http__parse_chunk_size(const char *s, size_t n, uint64_t *out);

/* One field line "name: value", borrowed from the line it was split from. */
struct http_field {
	const char *name;
	size_t name_len;
	const char *value; /* without the blanks around it */
	size_t value_len;
};

/* Splits the field line line[0..n) (without its line end) at its first
 * colon; false when it has none. Checks nothing else: for reading what
 * is only looked at (answers, the front door's Host). */
bool http__field_split(const char *line, size_t n, struct http_field *f);
/* http__field_split() of a line that must be a valid field line (RFC 9112
 * 5): no obsolete line folding, a token for name, a valid value. False
 * otherwise: what is passed on is never read two ways. */
bool http__field_parse(const char *line, size_t n, struct http_field *f);
