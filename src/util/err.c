#include "util/err.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void err_vfill(struct bk_err *err, enum bk_err_kind kind, int errnum, const char *fmt,
		      va_list ap)
{
	err->kind = kind;
	err->errnum = errnum;
	err->field[0] = '\0';
	err->type[0] = '\0';
	err->n_more = 0;
	int n = vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	if (errnum != 0 && n >= 0 && (size_t)n < sizeof(err->msg))
		snprintf(err->msg + n, sizeof(err->msg) - n, ": %s", strerror(errnum));
}

int bk_err_set(struct bk_err *err, int errnum, const char *fmt, ...)
{
	if (err == NULL)
		return -1;
	va_list ap;
	va_start(ap, fmt);
	err_vfill(err, BK_E_INTERNAL, errnum, fmt, ap);
	va_end(ap);
	return -1;
}

int bk_err_kind(struct bk_err *err, enum bk_err_kind kind, const char *fmt, ...)
{
	if (err == NULL)
		return -1;
	va_list ap;
	va_start(ap, fmt);
	err_vfill(err, kind, 0, fmt, ap);
	va_end(ap);
	return -1;
}

int bk_err_field(struct bk_err *err, const char *field, const char *fmt, ...)
{
	if (err == NULL)
		return -1;
	va_list ap;
	va_start(ap, fmt);
	err_vfill(err, BK_E_INVALID, 0, fmt, ap);
	va_end(ap);
	snprintf(err->field, sizeof(err->field), "%s", field);
	return -1;
}

int bk_err_add(struct bk_err *err, const char *field, const char *type, const char *fmt, ...)
{
	if (err == NULL)
		return -1;
	va_list ap;
	va_start(ap, fmt);
	if (!bk_err_is_set(err)) {
		err_vfill(err, BK_E_INVALID, 0, fmt, ap);
		snprintf(err->field, sizeof(err->field), "%s", field);
		snprintf(err->type, sizeof(err->type), "%s", type);
	} else if (err->kind == BK_E_INVALID && err->n_more < BK_ERR_MORE_MAX) {
		struct bk_err_item *it = &err->more[err->n_more++];
		snprintf(it->field, sizeof(it->field), "%s", field);
		snprintf(it->type, sizeof(it->type), "%s", type);
		vsnprintf(it->msg, sizeof(it->msg), fmt, ap);
	}
	va_end(ap);
	return -1;
}

void bk_err_prefix(struct bk_err *err, const char *fmt, ...)
{
	if (err == NULL)
		return;
	char prefix[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(prefix, sizeof(prefix), fmt, ap);
	va_end(ap);
	char old[sizeof(err->msg)];
	memcpy(old, err->msg, sizeof(old));
	/* A message too long for err keeps its start: the outer context. */
	if (snprintf(err->msg, sizeof(err->msg), "%s: %s", prefix, old) >= (int)sizeof(err->msg))
		memcpy(err->msg + sizeof(err->msg) - 4, "...", 4);
}

void bk_err_clear(struct bk_err *err)
{
	memset(err, 0, sizeof(*err));
}

void die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("bunkerd: fatal: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	exit(1);
}
