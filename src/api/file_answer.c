/* Answers that carry a whole file (GET /files/read, InstaVM's POST
 * /download) without holding it: the file comes from the sandbox a piece
 * at a time (core_read_next()), and each piece is encoded into
 * libmicrohttpd's buffer as the socket drains, so that what one answer
 * holds is one piece and the server's buffer, whatever the file's size and
 * however slowly (or never) its client reads. */
#include <errno.h>
#include <stdio.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_int.h"

enum phase { PH_HEAD, PH_BODY, PH_TAIL, PH_END };

struct file_answer {
	struct core_read *r;
	enum api_file_encoding enc;
	char *head, *tail; /* owned */
	size_t head_len, tail_len, at;
	enum phase phase;
	const unsigned char *piece; /* borrowed from r */
	size_t piece_len, piece_at;
	/* An encoded unit that did not fit the buffer whole: its rest goes
	 * first next time. */
	struct api_pend pend;
};

size_t api_json_escape_byte(unsigned char c, char *out)
{
	static const char hex[] = "0123456789ABCDEF";
	switch (c) {
	case '"':
		return memcpy(out, "\\\"", 3), 2;
	case '\\':
		return memcpy(out, "\\\\", 3), 2;
	case '\b':
		return memcpy(out, "\\b", 3), 2;
	case '\f':
		return memcpy(out, "\\f", 3), 2;
	case '\n':
		return memcpy(out, "\\n", 3), 2;
	case '\r':
		return memcpy(out, "\\r", 3), 2;
	case '\t':
		return memcpy(out, "\\t", 3), 2;
	}
	if (c < 0x20) {
		memcpy(out, "\\u00", 4);
		out[4] = hex[c >> 4];
		out[5] = hex[c & 15];
		out[6] = '\0';
		return 6;
	}
	out[0] = (char)c;
	out[1] = '\0';
	return 1;
}

/* Encodes what of the current piece fits in buf[0..room): the bytes put. */
static size_t encode(struct file_answer *a, char *buf, size_t room)
{
	const unsigned char *p = a->piece + a->piece_at;
	size_t left = a->piece_len - a->piece_at, put = 0;
	if (a->enc == API_FILE_TEXT) {
		size_t i = 0;
		for (; i < left && put < room; i++) {
			unsigned char c = p[i];
			if (c >= 0x20 && c != '"' && c != '\\') {
				buf[put++] = (char)c;
				continue;
			}
			char esc[8];
			size_t n = api_json_escape_byte(c, esc);
			if (put + n > room) {
				memcpy(a->pend.b, esc, n);
				a->pend.len = n;
				a->pend.at = 0;
				i++;
				break;
			}
			memcpy(buf + put, esc, n);
			put += n;
		}
		a->piece_at += i;
		return put;
	}
	/* base64: whole groups of 3 (a piece is a multiple of 3 but the
	 * last), the padded rest only at the file's very end. */
	size_t groups = room / 4;
	size_t take = left / 3 * 3;
	if (take > groups * 3)
		take = groups * 3;
	/* sodium writes a NUL after the text: one group less when the room
	 * is exact. */
	if (take > 0 && take / 3 * 4 + 1 > room)
		take -= 3;
	if (take == 0) {
		/* Less than a group's room, or the last 1..2 bytes: through pend. */
		size_t n = left < 3 ? left : 3;
		char enc[8];
		sodium_bin2base64(enc, sizeof(enc), p, n, sodium_base64_VARIANT_ORIGINAL);
		memcpy(a->pend.b, enc, 4);
		a->pend.len = 4;
		a->pend.at = 0;
		a->piece_at += n;
		return 0;
	}
	sodium_bin2base64(buf, take / 3 * 4 + 1, p, take, sodium_base64_VARIANT_ORIGINAL);
	a->piece_at += take;
	return take / 3 * 4;
}

size_t api_pend_drain(struct api_pend *p, char *buf, size_t max)
{
	size_t n = p->len - p->at;
	if (n > max)
		n = max;
	memcpy(buf, p->b + p->at, n);
	p->at += n;
	return n;
}

static ssize_t file_answer_read(void *ctx, char *buf, size_t max)
{
	struct file_answer *a = ctx;
	size_t out = 0;
	while (out < max) {
		if (a->pend.at < a->pend.len) {
			out += api_pend_drain(&a->pend, buf + out, max - out);
			continue;
		}
		if (a->phase == PH_HEAD || a->phase == PH_TAIL) {
			const char *text = a->phase == PH_HEAD ? a->head : a->tail;
			size_t len = a->phase == PH_HEAD ? a->head_len : a->tail_len;
			size_t n = len - a->at < max - out ? len - a->at : max - out;
			memcpy(buf + out, text + a->at, n);
			a->at += n;
			out += n;
			if (a->at == len) {
				a->phase = a->phase == PH_HEAD ? PH_BODY : PH_END;
				a->at = 0;
			}
			continue;
		}
		if (a->phase == PH_END)
			break;
		if (a->piece_at == a->piece_len) {
			struct bk_err err = BK_ERR_INIT;
			const char *data;
			size_t len;
			int r = core_read_next(a->r, &data, &len, &err);
			if (r < 0) {
				/* Too late for an error answer: the connection is cut,
				 * so that the client sees a broken answer, never a
				 * wrong one. */
				fprintf(stderr, "bunkerd: a file answer was cut: %s\n", err.msg);
				return -1;
			}
			if (r == 0) {
				a->phase = PH_TAIL;
				continue;
			}
			a->piece = (const unsigned char *)data;
			a->piece_len = len;
			a->piece_at = 0;
		}
		out += encode(a, buf + out, max - out);
	}
	return (ssize_t)out;
}

static void file_answer_free(void *ctx)
{
	struct file_answer *a = ctx;
	core_read_close(a->r);
	free(a->head);
	free(a->tail);
	free(a);
}

void api_file_answer(struct api_call *c, struct core_read *r, enum api_file_encoding enc,
		     char *head, char *tail)
{
	struct file_answer *a = calloc(1, sizeof(*a));
	if (a == NULL || head == NULL || tail == NULL) {
		free(a);
		free(head);
		free(tail);
		core_read_close(r);
		static const char oom[] =
		    "{\"error\":{\"code\":\"internal_error\",\"message\":\"out of memory\"}}";
		http_response_set(c->res, 500, "application/json", oom, sizeof(oom) - 1);
		return;
	}
	*a = (struct file_answer){.r = r,
				  .enc = enc,
				  .head = head,
				  .tail = tail,
				  .head_len = strlen(head),
				  .tail_len = strlen(tail)};
	http_response_stream(c->res, 200, "application/json", file_answer_read, file_answer_free,
			     a);
}
