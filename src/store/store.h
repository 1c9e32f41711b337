/* Persistence behind one interface.
 *
 * core/ sees only these functions and structs; store/sqlite.c implements them
 * on an embedded SQLite database (WAL), and a PostgreSQL implementation can
 * stand beside it. Every function is safe to call from several threads at
 * once (the implementation serialises what it must). Strings returned inside
 * structs are owned by the struct and released with the matching _release().
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/err.h"

struct store;

#define STORE_SCHEMA_VERSION 2

/* Opens (creating when missing) the database at path and brings its schema
 * to STORE_SCHEMA_VERSION. *out is a new store; close it with store_close(). */
int store_open(const char *path, struct store **out, struct bk_err *err);
void store_close(struct store *st);

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

int store_key_insert(struct store *st, const struct store_key *key, struct bk_err *err);
/* Finds a key by the hash of its secret. Returns 1 found, 0 not found, -1 error. */
int store_key_find_by_hash(struct store *st, const uint8_t hash[32], struct store_key *out,
			   struct bk_err *err);
/* Every key, oldest first, into *out (malloc'd; caller frees, nothing inside
 * to release). */
int store_key_list(struct store *st, struct store_key **out, size_t *n, struct bk_err *err);
/* Marks key id revoked at revoked_ms; a key revoked before keeps its first
 * time. Returns 1 when the key exists, 0 when not, -1 on error. */
int store_key_revoke(struct store *st, const char *id, int64_t revoked_ms, struct bk_err *err);

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
/* Finds the answer stored for (key_id, idem_key) created at or after
 * since_ms (older ones count as absent). Returns 1 and fills *out (release
 * it), 0 when there is none, -1 on error. */
int store_idem_get(struct store *st, const char *key_id, const char *idem_key, int64_t since_ms,
		   struct store_idem *out, struct bk_err *err);
/* Stores r, replacing an older answer under the same (key_id, idem_key). */
int store_idem_put(struct store *st, const struct store_idem *r, struct bk_err *err);
/* Deletes every answer created before before_ms; *n (may be NULL) receives
 * how many. */
int store_idem_purge(struct store *st, int64_t before_ms, int64_t *n, struct bk_err *err);

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
	char *metadata; /* compact JSON object text; owned */
	int memory_mb;
	double cpu;
	int timeout_s;
	int disk_mb;
	int uid_slot; /* which host id range the session's ids map to */
};

void store_session_release(struct store_session *s);

/* Inserts s. With s->uid_slot < 0 the lowest free slot is chosen and
 * written back into s; otherwise that slot is used. Fails with
 * BK_E_CONFLICT when the id or the slot is taken. */
int store_session_insert(struct store *st, struct store_session *s, struct bk_err *err);
/* Returns 1 and fills *out (release it) when the session exists and belongs
 * to key_id (NULL: any key), 0 when not, -1 on error. */
int store_session_get(struct store *st, const char *id, const char *key_id,
		      struct store_session *out, struct bk_err *err);
int store_session_delete(struct store *st, const char *id, struct bk_err *err);
int store_session_touch(struct store *st, const char *id, int64_t last_active_ms,
			struct bk_err *err);
/* Records a lifecycle state: 1 when the session exists, 0 when not. */
int store_session_set_state(struct store *st, const char *id, enum store_session_state state,
			    struct bk_err *err);
/* Number of sessions of key_id not yet expired at now_ms. */
int store_session_count(struct store *st, const char *key_id, int64_t now_ms, int64_t *out,
			struct bk_err *err);

/* A page of a key's sessions not expired at now_ms, newest first. metadata_filter, when not NULL,
 * is a JSON object that each listed session's metadata must contain (JSON
 * containment: every key of the filter present with an equal value, objects
 * compared recursively). *total counts every match, not only the page. The
 * caller releases each element and frees the array. */
int store_session_list(struct store *st, const char *key_id, const char *metadata_filter,
		       int64_t now_ms, int limit, int offset, struct store_session **out, size_t *n,
		       int64_t *total, struct bk_err *err);
/* Every session of every key, for start-up recovery; same ownership. */
int store_session_list_all(struct store *st, struct store_session **out, size_t *n,
			   struct bk_err *err);
