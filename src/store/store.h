/* Persistence behind one interface.
 *
 * A store is a table of operations (struct store_ops) over an
 * implementation's state, chosen once at start-up by store_open(): today
 * store/sqlite.c, an embedded SQLite database in WAL mode; a PostgreSQL
 * store is one more table. core/ calls a store only through its table.
 * The store keeps records and answers queries; what records mean (JSON
 * validity, metadata containment, plan rules) is core/'s.
 *
 * Every operation is safe to call from several threads at once (the
 * implementation serialises what it must). Strings returned inside structs
 * are owned by the struct and released with the matching _release().
 * Operations that look a record up return 1 when found, 0 when not, -1 on
 * error; BK_E_UNAVAILABLE means the store is busy or unreachable (worth a
 * retry), any other kind that it failed.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/err.h"

#define STORE_SCHEMA_VERSION 3

/* An API key. Only the hash of the secret is stored. */
struct store_key {
	char id[32];	  /* "key_" + 16 [a-z0-9]: safe to log */
	uint8_t hash[32]; /* BLAKE2b-256 of the secret */
	char plan[16];	  /* "free" | "paid" | "enterprise" */
	int64_t created_ms;
	int64_t revoked_ms; /* 0 while valid */
	/* The numbers that replace the plan's defaults for this key, as a
	 * compact JSON object ("" is the same as "{}"); core/plan.c gives it
	 * meaning, the store only keeps it. */
	char overrides[512];
};

/* A stored answer to a request that carried an Idempotency-Key. */
struct store_idem {
	char key_id[32];
	char idem_key[256];	  /* as the caller sent it */
	uint8_t request_hash[32]; /* BLAKE2b-256 of what makes two requests "the same" */
	int status;
	char content_type[64];
	char *body; /* owned; NUL-terminated, body_len excludes the NUL */
	size_t body_len;
	int64_t created_ms;
};

void store_idem_release(struct store_idem *r);

enum store_session_state {
	STORE_SESSION_ACTIVE = 0,
	STORE_SESSION_IDLE,
	STORE_SESSION_DEEP_SLEEP,
};

struct store_session {
	char id[32]; /* "ses_" + 20 [a-z0-9] */
	char key_id[32];
	int64_t created_ms, expires_ms, last_active_ms;
	enum store_session_state state;
	char *metadata; /* compact JSON object text (core/ checks it); owned */
	int memory_mb;
	double cpu;
	int timeout_s;
	int disk_mb;
};

void store_session_release(struct store_session *s);

/* A predicate on a session's metadata text, for listing. */
typedef bool (*store_session_match)(void *ctx, const char *metadata);

struct store;

struct store_ops {
	const char *name;
	void (*close)(struct store *st);

	/* ---- keys ---- */

	/* An id or hash already stored is BK_E_CONFLICT. */
	int (*key_insert)(struct store *st, const struct store_key *key, struct bk_err *err);
	/* The key whose secret hashes to hash. */
	int (*key_find_by_hash)(struct store *st, const uint8_t hash[32], struct store_key *out,
				struct bk_err *err);
	/* Every key, oldest first, into *out (malloc'd; caller frees, nothing
	 * inside to release). */
	int (*key_list)(struct store *st, struct store_key **out, size_t *n, struct bk_err *err);
	/* Marks key id revoked at revoked_ms; a key revoked before keeps its
	 * first time. 1 when the key exists. */
	int (*key_revoke)(struct store *st, const char *id, int64_t revoked_ms, struct bk_err *err);

	/* ---- idempotent answers ---- */

	/* The answer stored for (key_id, idem_key) created at or after
	 * since_ms (older ones count as absent); release *out. */
	int (*idem_get)(struct store *st, const char *key_id, const char *idem_key,
			int64_t since_ms, struct store_idem *out, struct bk_err *err);
	/* Stores r, replacing an older answer under the same (key_id,
	 * idem_key). */
	int (*idem_put)(struct store *st, const struct store_idem *r, struct bk_err *err);
	/* Deletes every answer created before before_ms; *n (may be NULL)
	 * receives how many. */
	int (*idem_purge)(struct store *st, int64_t before_ms, int64_t *n, struct bk_err *err);

	/* ---- sessions ---- */

	/* An id already taken is BK_E_CONFLICT. */
	int (*session_insert)(struct store *st, const struct store_session *s, struct bk_err *err);
	/* The session id when it belongs to key_id (NULL: any key); release
	 * *out. */
	int (*session_get)(struct store *st, const char *id, const char *key_id,
			   struct store_session *out, struct bk_err *err);
	/* 1 when the session was there. */
	int (*session_delete)(struct store *st, const char *id, struct bk_err *err);
	/* Records activity at last_active_ms; an older time than the one
	 * stored (two requests finishing out of order) leaves it as it is. */
	int (*session_touch)(struct store *st, const char *id, int64_t last_active_ms,
			     struct bk_err *err);
	/* Records a lifecycle state. */
	int (*session_set_state)(struct store *st, const char *id, enum store_session_state state,
				 struct bk_err *err);
	/* Sessions of key_id (NULL: of every key) not yet expired at now_ms. */
	int (*session_count)(struct store *st, const char *key_id, int64_t now_ms, int64_t *out,
			     struct bk_err *err);
	/* A page of key_id's sessions not expired at now_ms, newest first,
	 * counting only those whose metadata match() accepts (match NULL:
	 * every one); *total counts every match, not only the page. The
	 * caller releases each element and frees the array. */
	int (*session_list)(struct store *st, const char *key_id, int64_t now_ms,
			    store_session_match match, void *ctx, int limit, int offset,
			    struct store_session **out, size_t *n, int64_t *total,
			    struct bk_err *err);
	/* Every session of every key, oldest first, for start-up recovery;
	 * same ownership. */
	int (*session_list_all)(struct store *st, struct store_session **out, size_t *n,
				struct bk_err *err);
	/* Up to max ids (each >= 32 bytes, in ids[]) of sessions expired at
	 * now_ms, soonest expired first; *n receives how many. */
	int (*session_expired)(struct store *st, int64_t now_ms, char (*ids)[32], size_t max,
			       size_t *n, struct bk_err *err);
};

/* The base of every implementation's state. */
struct store {
	const struct store_ops *ops;
};

/* Opens the store named by uri, choosing its implementation once: "sqlite:
 * PATH" or a plain path is the embedded SQLite database at PATH (created
 * when missing, its schema brought to STORE_SCHEMA_VERSION). *out is a new
 * store; close it with (*out)->ops->close(). */
int store_open(const char *uri, struct store **out, struct bk_err *err);

/* The SQLite store (store/sqlite.c) at path. */
int store_sqlite_open(const char *path, struct store **out, struct bk_err *err);
