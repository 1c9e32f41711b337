/* One error type for the whole daemon.
 *
 * Every fallible function takes `struct bk_err *err` last and returns a
 * negative value on failure after filling it in; callers add context on the
 * way up with bk_err_prefix(). Only api/ turns a kind into an HTTP status.
 */
#pragma once

#include <stdbool.h>

enum bk_err_kind {
	BK_E_NONE = 0,	   /* no error: what BK_ERR_INIT and bk_err_clear() leave */
	BK_E_INTERNAL,	   /* the service itself failed: 500 */
	BK_E_INVALID,	   /* the caller's input is wrong: 400 */
	BK_E_UNAUTHORIZED, /* 401 */
	BK_E_FORBIDDEN,	   /* 403 */
	BK_E_NOT_FOUND,	   /* session (or other object) missing: 404 */
	BK_E_FILE_NOT_FOUND,
	BK_E_PROCESS_NOT_FOUND,
	BK_E_CONFLICT,		 /* 409 */
	BK_E_TOO_LARGE,		 /* 413 */
	BK_E_LIMIT,		 /* a plan's limit was reached: 429 */
	BK_E_NO_SPACE,		 /* 507 disk_full */
	BK_E_NO_MEMORY,		 /* 507 memory_limit_exceeded */
	BK_E_UNAVAILABLE,	 /* 503 */
	BK_E_IDEMPOTENCY_REUSED, /* an Idempotency-Key sent again with another request: 422 */
};

/* One more request field at fault (see struct bk_err's more). */
struct bk_err_item {
	char field[64];
	char type[32];
	char msg[160];
};

#define BK_ERR_MORE_MAX 7

struct bk_err {
	enum bk_err_kind kind;
	int errnum;	/* errno at the failure, 0 when none */
	char field[64]; /* the request field at fault, for BK_E_INVALID */
	char type[32];	/* what is wrong with it in FastAPI's words ("int_type"), or "" */
	char msg[512];
	/* A request with several fields at fault (BK_E_INVALID): the ones
	 * after the first, which field, type and msg describe. */
	int n_more;
	struct bk_err_item more[BK_ERR_MORE_MAX];
};

/* The "no error" state every error value starts in: declare
 * `struct bk_err err = BK_ERR_INIT;` and never read a field that no callee
 * set. A value that is still BK_E_NONE after a failure is a bug of the
 * failing callee, and api/ answers it as an internal error. */
#define BK_ERR_INIT                                                                                \
	{                                                                                          \
		.kind = BK_E_NONE, .errnum = 0, .field = "", .msg = ""                             \
	}

/* Whether err holds an error (any kind but BK_E_NONE). */
static inline bool bk_err_is_set(const struct bk_err *err)
{
	return err->kind != BK_E_NONE;
}

/* Fills err with kind BK_E_INTERNAL, the formatted message and, when errnum
 * is not 0, ": strerror(errnum)" appended. err may be NULL. Returns -1. */
int bk_err_set(struct bk_err *err, int errnum, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Like bk_err_set() with an explicit kind and no errno. Returns -1. */
int bk_err_kind(struct bk_err *err, enum bk_err_kind kind, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* A BK_E_INVALID error naming the request field at fault. Returns -1. */
int bk_err_field(struct bk_err *err, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Adds a field at fault to err: the first makes err a BK_E_INVALID naming
 * it (as bk_err_field() does) with type (FastAPI's name for what is wrong,
 * "int_type", "missing"...); later ones join it (up to BK_ERR_MORE_MAX
 * more). An error of another kind is left as it is. Returns -1. */
int bk_err_add(struct bk_err *err, const char *field, const char *type, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Prepends "<formatted>: " to the message, keeping kind and errno. */
void bk_err_prefix(struct bk_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

void bk_err_clear(struct bk_err *err);

/* Logs the message and exits; only start-up code may call it. */
_Noreturn void die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
