/* The framing of the upstream's answers, read as they go by to the client
 * untouched: where each ends (http/proxy.h, struct proxy_answers). */
#include <ctype.h>
#include <string.h>

#include "http/http_text.h"
#include "http/proxy.h"

bool proxy_answers_full(const struct proxy_answers *a)
{
	return a->n == PROXY_PENDING_MAX && a->st != PROXY_A_TUNNEL && a->st != PROXY_A_LOST;
}

bool proxy_answers_expect(struct proxy_answers *a, enum proxy_request_kind kind)
{
	/* Past a tunnel, or with the framing lost, there is nothing to
	 * count. */
	if (a->st == PROXY_A_TUNNEL || a->st == PROXY_A_LOST)
		return true;
	if (a->n == PROXY_PENDING_MAX)
		return false;
	a->kind[(a->first + a->n) % PROXY_PENDING_MAX] = (uint8_t)kind;
	a->n++;
	return true;
}

/* The oldest awaited answer is complete. */
static void answer_done(struct proxy_answers *a)
{
	a->first = (a->first + 1) % PROXY_PENDING_MAX;
	a->n--;
	a->st = PROXY_A_HEAD;
}

/* A head's line (kept part in a->line, a->line_len long uncut). */
static void answer_head_line(struct proxy_answers *a)
{
	size_t n = a->line_len < sizeof(a->line) ? a->line_len : sizeof(a->line);
	const char *l = a->line;
	bool cut = a->line_len > sizeof(a->line);
	if (!a->in_head) {
		/* "HTTP/1.x SP 3DIGIT ..."; blank lines before it are skipped. */
		if (n == 0)
			return;
		if (a->n == 0 || n < 12 || strncmp(l, "HTTP/1.", 7) != 0 || l[8] != ' ' ||
		    !isdigit((unsigned char)l[9]) || !isdigit((unsigned char)l[10]) ||
		    !isdigit((unsigned char)l[11])) {
			a->st = PROXY_A_LOST;
			return;
		}
		a->in_head = true;
		a->status = (l[9] - '0') * 100 + (l[10] - '0') * 10 + (l[11] - '0');
		a->te = a->chunked = a->cl = false;
		a->length = 0;
		return;
	}
	if (n > 0) {
		struct http_field f;
		if (!http__field_split(l, n, &f))
			return;
		bool te = http__eq_ci(f.name, f.name_len, "transfer-encoding");
		bool cl = http__eq_ci(f.name, f.name_len, "content-length");
		if ((te || cl) && cut) {
			a->st = PROXY_A_LOST;
		} else if (te) {
			a->te = true;
			a->chunked = http__list_has(f.value, f.value_len, "chunked", true);
		} else if (cl) {
			uint64_t x;
			if (http__parse_content_length(f.value, f.value_len, &x) < 0 ||
			    (a->cl && x != a->length)) {
				a->st = PROXY_A_LOST;
				return;
			}
			a->cl = true;
			a->length = x;
		}
		return;
	}
	/* The end of the head. */
	a->in_head = false;
	enum proxy_request_kind kind = a->kind[a->first];
	if (a->status == 101 || (kind == PROXY_REQ_CONNECT && a->status / 100 == 2)) {
		a->st = PROXY_A_TUNNEL;
	} else if (a->status / 100 == 1) {
		/* An interim answer (100 Continue): the final one follows. */
	} else if (kind == PROXY_REQ_HEAD || a->status == 204 || a->status == 304) {
		answer_done(a);
	} else if (a->te) {
		a->st = a->chunked ? PROXY_A_CHUNK_SIZE : PROXY_A_UNTIL_CLOSE;
	} else if (a->cl) {
		a->left = a->length;
		if (a->left == 0)
			answer_done(a);
		else
			a->st = PROXY_A_BODY;
	} else {
		a->st = PROXY_A_UNTIL_CLOSE;
	}
}

/* A whole line of a chunked body (chunk size, chunk end or trailer). */
static void answer_chunk_line(struct proxy_answers *a)
{
	size_t n = a->line_len < sizeof(a->line) ? a->line_len : sizeof(a->line);
	if (a->st == PROXY_A_CHUNK_SIZE) {
		uint64_t size;
		if (a->line_len > sizeof(a->line) ||
		    http__parse_chunk_size(a->line, n, &size) < 0) {
			a->st = PROXY_A_LOST;
			return;
		}
		a->left = size;
		a->st = size ? PROXY_A_CHUNK_DATA : PROXY_A_TRAILER;
	} else if (a->st == PROXY_A_CHUNK_END) {
		a->st = a->line_len == 0 ? PROXY_A_CHUNK_SIZE : PROXY_A_LOST;
	} else if (a->line_len == 0) {
		answer_done(a); /* the empty line after the trailers */
	}
}

void proxy_answers_scan(struct proxy_answers *a, const char *b, size_t n)
{
	const char *end = b + n;
	while (b < end) {
		switch (a->st) {
		case PROXY_A_BODY:
		case PROXY_A_CHUNK_DATA: {
			size_t k =
			    (size_t)(end - b) < a->left ? (size_t)(end - b) : (size_t)a->left;
			b += k;
			a->left -= k;
			if (a->left == 0) {
				if (a->st == PROXY_A_BODY)
					answer_done(a);
				else
					a->st = PROXY_A_CHUNK_END;
			}
			break;
		}
		case PROXY_A_HEAD:
		case PROXY_A_CHUNK_SIZE:
		case PROXY_A_CHUNK_END:
		case PROXY_A_TRAILER: {
			const char *nl = memchr(b, '\n', (size_t)(end - b));
			const char *stop = nl ? nl : end;
			for (const char *c = b; c < stop; c++) {
				if (a->line_len < sizeof(a->line))
					a->line[a->line_len] = *c;
				a->line_len++;
				a->last_cr = *c == '\r';
			}
			b = nl ? nl + 1 : end;
			if (nl == NULL)
				break;
			/* A line without its CR counts as one (as for requests). */
			if (a->line_len > 0 && a->last_cr)
				a->line_len--;
			if (a->st == PROXY_A_HEAD)
				answer_head_line(a);
			else
				answer_chunk_line(a);
			a->line_len = 0;
			a->last_cr = false;
			break;
		}
		case PROXY_A_UNTIL_CLOSE:
		case PROXY_A_TUNNEL:
		case PROXY_A_LOST:
			return;
		}
	}
}

void proxy_answers_eof(struct proxy_answers *a)
{
	if (a->st == PROXY_A_UNTIL_CLOSE) {
		answer_done(a);
		a->by_close = true;
	}
}

bool proxy_answers_between(const struct proxy_answers *a)
{
	return a->st == PROXY_A_HEAD && !a->in_head && a->line_len == 0;
}

bool proxy_answers_settled(const struct proxy_answers *a)
{
	return proxy_answers_between(a) && a->n == 0;
}
