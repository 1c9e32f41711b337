/* What every store shares of its records, whatever database holds them:
 * the columns each record is read from, in order, and the conversion of a
 * row to a record and the checks of a record before it is written. A store
 * reads a row through struct store__row, a table of accessors over its own
 * result (an sqlite3_stmt, a PGresult and a row number), so a record's
 * meaning is written once. Nothing outside store/ includes it. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

#define STORE_KEY_COLS "id, hash, plan, created_ms, revoked_ms, overrides"

#define STORE_SESSION_COLS                                                                         \
	"id, key_id, created_ms, expires_ms, last_active_ms, state, metadata, memory_mb, cpu, "    \
	"timeout_s, disk_mb, public_id, dialect, env, vcpu, vm_state, vm_lifetime_s, "             \
	"vm_spawned_ms, vm_ends_ms, exec_count, cpu_ms, vm_runtime_ms, network, owner, epoch, "    \
	"net_tx_bytes, net_rx_bytes"
#define STORE_SESSION_NCOLS 27

#define STORE_NODE_COLS "name, advertise, started_ms, renewed_ms, lease_ms, free_mb, awake"

#define STORE_TASK_COLS                                                                            \
	"id, session_id, key_id, status, stdout, stderr, exit_code, execution_ms, cpu_ms, "        \
	"created_ms, finished_ms"

#define STORE_IDEM_COLS                                                                            \
	"key_id, idem_key, request_hash, status, content_type, body, created_ms, dropped_len"

/* One row of a result, read by column number. Pointers returned are the
 * result's, valid until it moves on. */
struct store__row {
	/* The column as text, NUL-terminated (NULL for SQL NULL); *len its
	 * length. */
	const char *(*text)(const struct store__row *r, int col, size_t *len);
	/* The column's bytes (NULL with *len 0 for SQL NULL or empty). */
	const void *(*blob)(const struct store__row *r, int col, size_t *len);
	int64_t (*int64)(const struct store__row *r, int col);
	double (*real)(const struct store__row *r, int col);
	void *ctx; /* the implementation's result */
	int index; /* its row, where the implementation needs one */
};

/* A fixed-size string field of a struct must hold its NUL. */
bool store__str_ok(const char *s, size_t size);

bool store__state_ok(int state);
bool store__vm_ok(int vm);
bool store__task_status_ok(int status);

/* Checks of a record before it is written: BK_E_INTERNAL when a field is
 * not what the store can keep. */
int store__key_check(const struct store_key *k, struct bk_err *err);
int store__session_check(const struct store_session *s, struct bk_err *err);
int store__task_check(const struct store_task *t, struct bk_err *err);
int store__idem_check(const struct store_idem *r, struct bk_err *err);

/* Fills *out from a row of STORE_KEY_COLS. */
int store__key_from_row(const struct store__row *r, struct store_key *out, struct bk_err *err);
/* Fills *out from a row of STORE_SESSION_COLS; on failure *out holds
 * nothing to release. */
int store__session_from_row(const struct store__row *r, struct store_session *out,
			    struct bk_err *err);
/* Fills *out from a row of STORE_NODE_COLS and, after them, the count of
 * sessions owned. */
int store__node_from_row(const struct store__row *r, struct store_node *out, struct bk_err *err);
int store__node_check(const struct store_node *n, struct bk_err *err);
/* Fills *out from a row of STORE_TASK_COLS; the same. */
int store__task_from_row(const struct store__row *r, struct store_task *out, struct bk_err *err);
/* Fills *out from a row of STORE_IDEM_COLS; the same. */
int store__idem_from_row(const struct store__row *r, struct store_idem *out, struct bk_err *err);

/* A growing array of sessions that releases what it holds unless stolen
 * (declare with _cleanup_page_). */
struct store__page {
	struct store_session *items;
	size_t n, cap;
};

void store__page_release(struct store__page *p);
#define _cleanup_page_ __attribute__((cleanup(store__page_release)))
/* Reads r into a new last element of p. */
int store__page_add_row(struct store__page *p, const struct store__row *r, struct bk_err *err);
/* Hands p's items to *out and *n; p is empty after. */
void store__page_steal(struct store__page *p, struct store_session **out, size_t *n);

/* Lists a key's sessions from the rows of a query ordered newest first:
 * row(ctx, i, &r) sets up row i (0 when there is none, 1 when r is set,
 * -1 on error). Applies match, offset and limit as struct store_ops'
 * session_list says, the same way for every store. */
int store__session_page(int (*row)(void *ctx, size_t i, struct store__row *r, struct bk_err *err),
			void *row_ctx, store_session_match match, void *ctx, int limit, int offset,
			struct store_session **out, size_t *n, int64_t *total, struct bk_err *err);
