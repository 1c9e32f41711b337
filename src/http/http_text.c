/* The text of HTTP/1.1 heads: see http/http_text.h. */
#include <ctype.h>
#include <string.h>
#include <strings.h>

#include "http/http_text.h"

static bool is_tchar(unsigned char c)
{
	return isascii(c) && (isalnum(c) || strchr("!#$%&'*+-.^_`|~", c) != NULL) && c != '\0';
}

bool http__is_token(const char *s, size_t n)
{
	if (n == 0)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!is_tchar((unsigned char)s[i]))
			return false;
	return true;
}

bool http__is_field_value(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if ((c < 0x20 && c != '\t') || c == 0x7f)
			return false;
	}
	return true;
}

bool http__eq_ci(const char *s, size_t n, const char *lit)
{
	return strlen(lit) == n && strncasecmp(s, lit, n) == 0;
}

bool http__list_has(const char *s, size_t n, const char *token, bool last)
{
	bool found = false;
	const char *end = s + n;
	while (s < end) {
		const char *comma = memchr(s, ',', (size_t)(end - s));
		const char *e = comma ? comma : end;
		const char *a = s, *b = e;
		while (a < b && (*a == ' ' || *a == '\t'))
			a++;
		while (b > a && (b[-1] == ' ' || b[-1] == '\t'))
			b--;
		if (a < b)
			found = http__eq_ci(a, (size_t)(b - a), token) || (found && !last);
		s = comma ? comma + 1 : end;
	}
	return found;
}

int http__parse_content_length(const char *v, size_t n, uint64_t *out)
{
	if (n == 0 || n > 18)
		return -1;
	uint64_t x = 0;
	for (size_t i = 0; i < n; i++) {
		if (v[i] < '0' || v[i] > '9')
			return -1;
		x = x * 10 + (uint64_t)(v[i] - '0');
	}
	*out = x;
	return 0;
}

int http__parse_chunk_size(const char *s, size_t n, uint64_t *out)
{
	size_t i = 0;
	uint64_t x = 0;
	while (i < n && isxdigit((unsigned char)s[i])) {
		if (x >> 56)
			return -1;
		int d = isdigit((unsigned char)s[i]) ? s[i] - '0'
						     : (tolower((unsigned char)s[i]) - 'a' + 10);
		x = x * 16 + (uint64_t)d;
		i++;
	}
	if (i == 0)
		return -1;
	while (i < n && (s[i] == ' ' || s[i] == '\t'))
		i++;
	if (i < n && s[i] != ';')
		return -1;
	if (!http__is_field_value(s + i, n - i))
		return -1;
	*out = x;
	return 0;
}

bool http__field_split(const char *line, size_t n, struct http_field *f)
{
	const char *colon = memchr(line, ':', n);
	if (colon == NULL)
		return false;
	const char *v = colon + 1, *ve = line + n;
	while (v < ve && (*v == ' ' || *v == '\t'))
		v++;
	while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
		ve--;
	*f = (struct http_field){
	    .name = line,
	    .name_len = (size_t)(colon - line),
	    .value = v,
	    .value_len = (size_t)(ve - v),
	};
	return true;
}

bool http__field_parse(const char *line, size_t n, struct http_field *f)
{
	if (n > 0 && (line[0] == ' ' || line[0] == '\t'))
		return false; /* obsolete line folding */
	return http__field_split(line, n, f) && http__is_token(f->name, f->name_len) &&
	       http__is_field_value(f->value, f->value_len);
}
