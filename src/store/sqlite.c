/* The embedded store: struct store_ops on one SQLite database in WAL mode.
 *
 * One connection serves the whole daemon. SQLite's own mutex (FULLMUTEX)
 * keeps the connection's structures sound, but a transaction and the last
 * error message belong to the connection, not to a thread: a statement run
 * by one thread while another is between BEGIN and COMMIT would join that
 * transaction, and sqlite3_errmsg() could describe another thread's failure.
 * So every public function holds st->lock from its first statement until it
 * has read the error message or finalised its last statement.
 *
 * Other processes on the same file (the CLI, a second daemon by mistake) are
 * serialised by SQLite's file locks: writes that must see a consistent
 * picture (the uid_slot choice) run under BEGIN IMMEDIATE, and busy_timeout
 * makes a writer wait instead of failing at once.
 */
#include "store/store.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <sodium.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "util/cleanup.h"
#include "util/util.h"

#define STORE_BUSY_TIMEOUT_MS 5000

struct sqlite_store {
	struct store base;
	sqlite3 *db;
	pthread_mutex_t lock;
};

/* Every operation below takes the interface's struct store, which is the
 * first member of ours. */
#define SQ(st) ((struct sqlite_store *)(st))

static inline void cleanup_stmtp(sqlite3_stmt **stmt)
{
	/* sqlite3_finalize(NULL) is a no-op; it returns the statement's last
	 * error, which the caller has already read. */
	int saved = errno;
	sqlite3_finalize(*stmt);
	errno = saved;
}

static inline void cleanup_unlockp(pthread_mutex_t **m)
{
	if (*m != NULL)
		pthread_mutex_unlock(*m);
}

#define _cleanup_stmt_ __attribute__((cleanup(cleanup_stmtp)))
#define _cleanup_unlock_ __attribute__((cleanup(cleanup_unlockp)))

/* Locks st for the caller's scope: `_cleanup_unlock_ pthread_mutex_t *lock = store_lock(st);` */
static pthread_mutex_t *store_lock(struct store *st)
{
	pthread_mutex_lock(&SQ(st)->lock);
	return &SQ(st)->lock;
}

/* Schema migrations, in order: migrations[i] takes user_version i to i + 1.
 * Never edit one that has shipped; append a new one and raise
 * STORE_SCHEMA_VERSION. */
static const char *const store_migrations[] = {
    /* 0 -> 1 */
    "CREATE TABLE keys ("
    "  id TEXT PRIMARY KEY,"
    "  hash BLOB NOT NULL UNIQUE,"
    "  plan TEXT NOT NULL,"
    "  created_ms INTEGER NOT NULL,"
    "  revoked_ms INTEGER NOT NULL DEFAULT 0"
    ");"
    "CREATE TABLE sessions ("
    "  id TEXT PRIMARY KEY,"
    "  key_id TEXT NOT NULL REFERENCES keys(id),"
    "  created_ms INTEGER NOT NULL,"
    "  expires_ms INTEGER NOT NULL,"
    "  last_active_ms INTEGER NOT NULL,"
    "  state INTEGER NOT NULL,"
    "  metadata TEXT NOT NULL,"
    "  memory_mb INTEGER NOT NULL,"
    "  cpu REAL NOT NULL,"
    "  timeout_s INTEGER NOT NULL,"
    "  disk_mb INTEGER NOT NULL,"
    /* The slot search below assumes no negative slot exists. */
    "  uid_slot INTEGER NOT NULL UNIQUE CHECK (uid_slot >= 0)"
    ");"
    "CREATE INDEX sessions_key_created ON sessions (key_id, created_ms);",
    /* 1 -> 2: per-key overrides of the plan's numbers; idempotent replies. */
    "ALTER TABLE keys ADD COLUMN overrides TEXT NOT NULL DEFAULT '{}';"
    "CREATE TABLE idempotency ("
    "  key_id TEXT NOT NULL REFERENCES keys(id),"
    "  idem_key TEXT NOT NULL,"
    "  request_hash BLOB NOT NULL,"
    "  status INTEGER NOT NULL,"
    "  content_type TEXT NOT NULL,"
    "  body BLOB NOT NULL,"
    "  created_ms INTEGER NOT NULL,"
    "  PRIMARY KEY (key_id, idem_key)"
    ");"
    "CREATE INDEX idempotency_created ON idempotency (created_ms);",
    /* 2 -> 3: host id ranges belong to the sandbox backend now, not to
     * the record; expiry of sleeping sessions is found by an index. A
     * column with a UNIQUE constraint cannot be dropped in place. */
    "CREATE TABLE sessions_new ("
    "  id TEXT PRIMARY KEY,"
    "  key_id TEXT NOT NULL REFERENCES keys(id),"
    "  created_ms INTEGER NOT NULL,"
    "  expires_ms INTEGER NOT NULL,"
    "  last_active_ms INTEGER NOT NULL,"
    "  state INTEGER NOT NULL,"
    "  metadata TEXT NOT NULL,"
    "  memory_mb INTEGER NOT NULL,"
    "  cpu REAL NOT NULL,"
    "  timeout_s INTEGER NOT NULL,"
    "  disk_mb INTEGER NOT NULL"
    ");"
    "INSERT INTO sessions_new SELECT id, key_id, created_ms, expires_ms, last_active_ms, "
    "  state, metadata, memory_mb, cpu, timeout_s, disk_mb FROM sessions;"
    "DROP TABLE sessions;"
    "ALTER TABLE sessions_new RENAME TO sessions;"
    "CREATE INDEX sessions_key_created ON sessions (key_id, created_ms);"
    "CREATE INDEX sessions_expires ON sessions (expires_ms);",
};

_Static_assert(ARRAY_SIZE(store_migrations) == STORE_SCHEMA_VERSION,
	       "one migration per schema version");

#define STORE_SESSION_COLS                                                                         \
	"id, key_id, created_ms, expires_ms, last_active_ms, state, metadata, memory_mb, cpu, "    \
	"timeout_s, disk_mb"

/* Fills err with "<formatted>: <sqlite3_errmsg>"; a busy database is
 * BK_E_UNAVAILABLE (worth a retry), anything else BK_E_INTERNAL. Call with
 * st->lock held, right after the failing call. Returns -1. */
static int store_fail(struct store *st, struct bk_err *err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int store_fail(struct store *st, struct bk_err *err, const char *fmt, ...)
{
	char what[384];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	int code = sqlite3_errcode(SQ(st)->db) & 0xff;
	enum bk_err_kind kind =
	    code == SQLITE_BUSY || code == SQLITE_LOCKED ? BK_E_UNAVAILABLE : BK_E_INTERNAL;
	return bk_err_kind(err, kind, "%s: %s", what, sqlite3_errmsg(SQ(st)->db));
}

static int store_exec(struct store *st, const char *sql, const char *what, struct bk_err *err)
{
	if (sqlite3_exec(SQ(st)->db, sql, NULL, NULL, NULL) != SQLITE_OK)
		return store_fail(st, err, "cannot %s", what);
	return 0;
}

/* Ends the transaction the caller began: COMMIT when rc >= 0, ROLLBACK
 * otherwise (keeping the error that caused it). Returns rc, or -1 when the
 * commit fails. */
static int store_tx_end(struct store *st, int rc, struct bk_err *err)
{
	if (rc >= 0) {
		if (store_exec(st, "COMMIT", "commit a transaction", err) == 0)
			return rc;
		rc = -1;
	}
	/* A failed statement may already have rolled the transaction back. */
	if (!sqlite3_get_autocommit(SQ(st)->db))
		sqlite3_exec(SQ(st)->db, "ROLLBACK", NULL, NULL, NULL);
	return rc;
}

/* Reads PRAGMA user_version into *out. */
static int store_schema_version(struct store *st, int *out, struct bk_err *err)
{
	_cleanup_stmt_ sqlite3_stmt *stmt = NULL;
	if (sqlite3_prepare_v2(SQ(st)->db, "PRAGMA user_version", -1, &stmt, NULL) != SQLITE_OK ||
	    sqlite3_step(stmt) != SQLITE_ROW)
		return store_fail(st, err, "cannot read the schema version");
	*out = sqlite3_column_int(stmt, 0);
	return 0;
}

static int store_schema_check(int version, struct bk_err *err)
{
	if (version > STORE_SCHEMA_VERSION)
		return bk_err_kind(err, BK_E_INTERNAL,
				   "schema version %d is newer than the %d this bunkerd knows; "
				   "upgrade bunkerd",
				   version, STORE_SCHEMA_VERSION);
	if (version < 0)
		return bk_err_kind(err, BK_E_INTERNAL, "schema version %d is not valid", version);
	return 0;
}

static int store_migrate_tx(struct store *st, struct bk_err *err)
{
	/* Read again inside the transaction: another process may have
	 * migrated since the check in store_open(). */
	int version;
	if (store_schema_version(st, &version, err) < 0 || store_schema_check(version, err) < 0)
		return -1;
	for (int v = version; v < STORE_SCHEMA_VERSION; v++) {
		if (sqlite3_exec(SQ(st)->db, store_migrations[v], NULL, NULL, NULL) != SQLITE_OK)
			return store_fail(st, err, "cannot migrate the schema from %d to %d", v,
					  v + 1);
	}
	if (version == STORE_SCHEMA_VERSION)
		return 0;
	/* PRAGMA takes no bound parameters; the value is our own constant. */
	char sql[64];
	snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", STORE_SCHEMA_VERSION);
	return store_exec(st, sql, "set the schema version", err);
}

static int store_migrate(struct store *st, struct bk_err *err)
{
	if (store_exec(st, "BEGIN IMMEDIATE", "begin the schema migration", err) < 0)
		return -1;
	return store_tx_end(st, store_migrate_tx(st, err), err);
}

/* journal_mode answers with the mode now in force, which is not WAL when the
 * file system cannot give WAL its shared memory. */
static int store_wal_enable(struct store *st, struct bk_err *err)
{
	_cleanup_stmt_ sqlite3_stmt *stmt = NULL;
	if (sqlite3_prepare_v2(SQ(st)->db, "PRAGMA journal_mode = WAL", -1, &stmt, NULL) !=
		SQLITE_OK ||
	    sqlite3_step(stmt) != SQLITE_ROW)
		return store_fail(st, err, "cannot set the journal mode to wal");
	const char *mode = (const char *)sqlite3_column_text(stmt, 0);
	if (mode == NULL || strcasecmp(mode, "wal") != 0)
		return bk_err_kind(err, BK_E_INTERNAL,
				   "cannot set the journal mode to wal: got '%s'",
				   mode ? mode : "(null)");
	return 0;
}

/* The connection settings, then the schema. The journal mode persists in
 * the file; the rest are per connection and set on every open. */
static int store_configure(struct store *st, struct bk_err *err)
{
	if (sqlite3_busy_timeout(SQ(st)->db, STORE_BUSY_TIMEOUT_MS) != SQLITE_OK)
		return store_fail(st, err, "cannot set the busy timeout");
	sqlite3_extended_result_codes(SQ(st)->db, 1);

	/* Refuse a newer schema before changing anything in the file. */
	int version;
	if (store_schema_version(st, &version, err) < 0 || store_schema_check(version, err) < 0)
		return -1;
	if (store_wal_enable(st, err) < 0 ||
	    store_exec(st, "PRAGMA synchronous = NORMAL", "set synchronous mode", err) < 0 ||
	    store_exec(st, "PRAGMA foreign_keys = ON", "enable foreign keys", err) < 0)
		return -1;
	return store_migrate(st, err);
}

/* SQLite creates its file 0644 (less the umask); keys' hashes and session
 * metadata are nobody else's business, so create it 0600 ourselves first.
 * The -wal and -shm files take the database file's mode. */
static int store_file_create(const char *path, struct bk_err *err)
{
	_cleanup_close_ int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0)
		return bk_err_set(err, errno, "cannot create or open '%s'", path);
	return 0;
}

/* Closes the connection and frees st; st may be NULL. */
static void sq_close(struct store *st)
{
	if (st == NULL)
		return;
	/* Every statement is finalised by its function, so close cannot be
	 * refused for statements still open. */
	sqlite3_close(SQ(st)->db);
	pthread_mutex_destroy(&SQ(st)->lock);
	free(SQ(st));
}

static inline void cleanup_storep(struct store **st)
{
	sq_close(*st);
}

static const struct store_ops sqlite_ops;

int store_sqlite_open(const char *path, struct store **out, struct bk_err *err)
{
	*out = NULL;
	if (sodium_init() < 0)
		return bk_err_kind(err, BK_E_INTERNAL, "cannot initialise libsodium");
	if (store_file_create(path, err) < 0)
		return -1;

	__attribute__((cleanup(cleanup_storep))) struct store *st =
	    calloc(1, sizeof(struct sqlite_store));
	if (st == NULL)
		return bk_err_set(err, errno, "cannot open store '%s'", path);
	st->ops = &sqlite_ops;
	pthread_mutex_init(&SQ(st)->lock, NULL);

	int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX;
	int rc = sqlite3_open_v2(path, &SQ(st)->db, flags, NULL);
	if (rc != SQLITE_OK) {
		if (SQ(st)->db == NULL)
			return bk_err_kind(err, BK_E_INTERNAL, "cannot open store '%s': %s", path,
					   sqlite3_errstr(rc));
		return store_fail(st, err, "cannot open store '%s'", path);
	}
	if (store_configure(st, err) < 0) {
		bk_err_prefix(err, "cannot open store '%s'", path);
		return -1;
	}
	*out = steal_ptr(&st);
	return 0;
}

/* Copies a text column into a fixed buffer; -1 when it is NULL or too long. */
static int store_col_copy(sqlite3_stmt *stmt, int col, char *buf, size_t size)
{
	const unsigned char *v = sqlite3_column_text(stmt, col);
	int len = sqlite3_column_bytes(stmt, col);
	if (v == NULL || len < 0 || (size_t)len >= size)
		return -1;
	memcpy(buf, v, (size_t)len);
	buf[len] = '\0';
	return 0;
}

/* A fixed-size string field of a struct must hold its NUL. */
static bool store_str_ok(const char *s, size_t size)
{
	return strnlen(s, size) < size;
}

#define STORE_KEY_COLS "id, hash, plan, created_ms, revoked_ms, overrides"

/* Fills *out from a row of STORE_KEY_COLS. */
static int store_key_from_row(sqlite3_stmt *stmt, struct store_key *out, struct bk_err *err)
{
	memset(out, 0, sizeof(*out));
	const void *hash = sqlite3_column_blob(stmt, 1);
	if (store_col_copy(stmt, 0, out->id, sizeof(out->id)) < 0 ||
	    store_col_copy(stmt, 2, out->plan, sizeof(out->plan)) < 0 ||
	    store_col_copy(stmt, 5, out->overrides, sizeof(out->overrides)) < 0 || hash == NULL ||
	    sqlite3_column_bytes(stmt, 1) != 32)
		return bk_err_kind(
		    err, BK_E_INTERNAL,
		    "cannot read key: stored id, hash, plan or overrides is invalid");
	memcpy(out->hash, hash, 32);
	out->created_ms = sqlite3_column_int64(stmt, 3);
	out->revoked_ms = sqlite3_column_int64(stmt, 4);
	return 0;
}

/* Inserts key; an id or hash already stored is BK_E_CONFLICT. */
static int sq_key_insert(struct store *st, const struct store_key *key, struct bk_err *err)
{
	if (!store_str_ok(key->id, sizeof(key->id)) ||
	    !store_str_ok(key->plan, sizeof(key->plan)) ||
	    !store_str_ok(key->overrides, sizeof(key->overrides)))
		return bk_err_kind(err, BK_E_INTERNAL,
				   "cannot insert key: unterminated id, plan or overrides");
	const char *overrides = key->overrides[0] ? key->overrides : "{}";

	_cleanup_unlock_ pthread_mutex_t *lock = store_lock(st);
	_cleanup_stmt_ sqlite3_stmt *stmt = NULL;
	if (sqlite3_prepare_v2(
		SQ(st)->db,
		"INSERT INTO keys (id, hash, plan, created_ms, revoked_ms, overrides) "
		"VALUES (?, ?, ?, ?, ?, ?)",
		-1, &stmt, NULL) != SQLITE_OK ||
	    sqlite3_bind_text(stmt, 1, key->id, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_blob(stmt, 2, key->hash, sizeof(key->hash), SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_text(stmt, 3, key->plan, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_int64(stmt, 4, key->created_ms) != SQLITE_OK ||
	    sqlite3_bind_int64(stmt, 5, key->revoked_ms) != SQLITE_OK ||
	    sqlite3_bind_text(stmt, 6, overrides, -1, SQLITE_STATIC) != SQLITE_OK)
		return store_fail(st, err, "cannot insert key '%s'", key->id);
	int rc = sqlite3_step(stmt);
	if (rc == SQLITE_CONSTRAINT_PRIMARYKEY || rc == SQLITE_CONSTRAINT_UNIQUE)
		return bk_err_kind(err, BK_E_CONFLICT, "cannot insert key '%s': %s", key->id,
				   sqlite3_errmsg(SQ(st)->db));
	if (rc != SQLITE_DONE)
		return store_fail(st, err, "cannot insert key '%s'", key->id);
	return 0;
}

static int sq_key_find_by_hash(struct store *st, const uint8_t hash[32], struct store_key *out,
			       struct bk_err *err)
{
	/* The index lookup is not constant-time, and need not be: the hash is
	 * of a random 256-bit secret, so learning how much of a guessed hash
	 * matches a stored one tells an attacker nothing about any secret. The
	 * constant-time compare below keeps the check itself free of a
	 * data-dependent early exit all the same. */
	_cleanup_unlock_ pthread_mutex_t *lock = store_lock(st);
	_cleanup_stmt_ sqlite3_stmt *stmt = NULL;
	if (sqlite3_prepare_v2(SQ(st)->db, "SELECT " STORE_KEY_COLS " FROM keys WHERE hash = ?", -1,
			       &stmt, NULL) != SQLITE_OK ||
	    sqlite3_bind_blob(stmt, 1, hash, 32, SQLITE_STATIC) != SQLITE_OK)
		return store_fail(st, err, "cannot look up key");
	int rc = sqlite3_step(stmt);
	if (rc == SQLITE_DONE)
		return 0;
	if (rc != SQLITE_ROW)
		return store_fail(st, err, "cannot look up key");

	const void *stored = sqlite3_column_blob(stmt, 1);
	if (stored == NULL || sqlite3_column_bytes(stmt, 1) != 32 ||
	    sodium_memcmp(stored, hash, 32) != 0)
		return 0;
	if (store_key_from_row(stmt, out, err) < 0)
		return -1;
	return 1;
}

static int sq_key_list(struct store *st, struct store_key **out, size_t *n, struct bk_err *err)
{
	*out = NULL;
	*n = 0;
	_cleanup_unlock_ pthread_mutex_t *lock = store_lock(st);
	_cleanup_stmt_ sqlite3_stmt *stmt = NULL;
	if (sqlite3_prepare_v2(SQ(st)->db,
			       "SELECT " STORE_KEY_COLS " FROM keys ORDER BY created_ms, id", -1,
			       &stmt, NULL) != SQLITE_OK)
		return store_fail(st, err, "cannot list keys");
	_cleanup_free_ struct store_key *keys = NULL;
	size_t count = 0, cap = 0;
	int rc;
	while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
		if (count == cap) {
			cap = cap ? cap * 2 : 16;
			struct store_key *more = reallocarray(keys, cap, sizeof(*keys));
			if (more == NULL)
				return bk_err_set(err, errno, "cannot list keys");
			keys = more;
		}
		if (store_key_from_row(stmt, &keys[count], err) < 0)
			return -1;
		count++;
	}
	if (rc != SQLITE_DONE)
		return store_fail(st, err, "cannot list keys");
	*out = steal_ptr(&keys);
	*n = count;
	return 0;
}

static int sq_key_revoke(struct store *st, const char *id, int64_t revoked_ms, struct bk_err *err)
{
	_cleanup_unlock_ pthread_mutex_t *lock = store_lock(st);
	_cleanup_stmt_ sqlite3_stmt *stmt = NULL;
	if (sqlite3_prepare_v2(SQ(st)->db,
			       "UPDATE keys SET revoked_ms = CASE WHEN revoked_ms = 0 THEN ?1 "
			       "ELSE revoked_ms END WHERE id = ?2",
			       -1, &stmt, NULL) != SQLITE_OK ||
	    sqlite3_bind_int64(stmt, 1, revoked_ms) != SQLITE_OK ||
	    sqlite3_bind_text(stmt, 2, id, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_step(stmt) != SQLITE_DONE)
		return store_fail(st, err, "cannot revoke key '%s'", id);
	return sqlite3_changes(SQ(st)->db) > 0 ? 1 : 0;
}

static bool store_state_ok(int state)
{
	return state >= STORE_SESSION_ACTIVE && state <= STORE_SESSION_DEEP_SLEEP;
}

/* Fills *out from a row of STORE_SESSION_COLS. On failure *out holds nothing
 * to release. */
static int store_session_from_row(sqlite3_stmt *stmt, struct store_session *out, struct bk_err *err)
{
	memset(out, 0, sizeof(*out));
	if (store_col_copy(stmt, 0, out->id, sizeof(out->id)) < 0 ||
	    store_col_copy(stmt, 1, out->key_id, sizeof(out->key_id)) < 0)
		return bk_err_kind(err, BK_E_INTERNAL,
				   "cannot read session: stored id or key id is invalid");
	int state = sqlite3_column_int(stmt, 5);
	if (!store_state_ok(state))
		return bk_err_kind(err, BK_E_INTERNAL, "cannot read session '%s': unknown state %d",
				   out->id, state);
	const char *metadata = (const char *)sqlite3_column_text(stmt, 6);
	if (metadata == NULL)
		return bk_err_set(err, ENOMEM, "cannot read metadata of session '%s'", out->id);
	out->metadata = strdup(metadata);
	if (out->metadata == NULL)
		return bk_err_set(err, errno, "cannot read metadata of session '%s'", out->id);
	out->created_ms = sqlite3_column_int64(stmt, 2);
	out->expires_ms = sqlite3_column_int64(stmt, 3);
	out->last_active_ms = sqlite3_column_int64(stmt, 4);
	out->state = (enum store_session_state)state;
	out->memory_mb = sqlite3_column_int(stmt, 7);
	out->cpu = sqlite3_column_double(stmt, 8);
	out->timeout_s = sqlite3_column_int(stmt, 9);
	out->disk_mb = sqlite3_column_int(stmt, 10);
	return 0;
}

static int sq_session_insert(struct store *st, const struct store_session *s, struct bk_err *err)
{
	if (!store_str_ok(s->id, sizeof(s->id)) || !store_str_ok(s->key_id, sizeof(s->key_id)))
		return bk_err_kind(err, BK_E_INTERNAL,
				   "cannot insert session: unterminated id or key id");
	if (!store_state_ok((int)s->state))
		return bk_err_kind(err, BK_E_INTERNAL,
				   "cannot insert session '%s': unknown state %d", s->id,
				   (int)s->state);
	const char *metadata = s->metadata ? s->metadata : "{}";
	_cleanup_unlock_ pthread_mutex_t *lock = store_lock(st);
	_cleanup_stmt_ sqlite3_stmt *stmt = NULL;
	if (sqlite3_prepare_v2(SQ(st)->db,
			       "INSERT INTO sessions (" STORE_SESSION_COLS ") "
			       "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
			       -1, &stmt, NULL) != SQLITE_OK ||
	    sqlite3_bind_text(stmt, 1, s->id, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_text(stmt, 2, s->key_id, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_int64(stmt, 3, s->created_ms) != SQLITE_OK ||
	    sqlite3_bind_int64(stmt, 4, s->expires_ms) != SQLITE_OK ||
	    sqlite3_bind_int64(stmt, 5, s->last_active_ms) != SQLITE_OK ||
	    sqlite3_bind_int(stmt, 6, (int)s->state) != SQLITE_OK ||
	    sqlite3_bind_text(stmt, 7, metadata, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_int(stmt, 8, s->memory_mb) != SQLITE_OK ||
	    sqlite3_bind_double(stmt, 9, s->cpu) != SQLITE_OK ||
	    sqlite3_bind_int(stmt, 10, s->timeout_s) != SQLITE_OK ||
	    sqlite3_bind_int(stmt, 11, s->disk_mb) != SQLITE_OK)
		return store_fail(st, err, "cannot insert session '%s'", s->id);
	int rc = sqlite3_step(stmt);
	if (rc == SQLITE_CONSTRAINT_PRIMARYKEY || rc == SQLITE_CONSTRAINT_UNIQUE)
		return bk_err_kind(err, BK_E_CONFLICT, "cannot insert session '%s': %s", s->id,
				   sqlite3_errmsg(SQ(st)->db));
	if (rc != SQLITE_DONE)
		return store_fail(st, err, "cannot insert session '%s' for key '%s'", s->id,
				  s->key_id);
	return 0;
}

static int sq_session_get(struct store *st, const char *id, const char *key_id,
			  struct store_session *out, struct bk_err *err)
{
	_cleanup_unlock_ pthread_mutex_t *lock = store_lock(st);
	_cleanup_stmt_ sqlite3_stmt *stmt = NULL;
	if (sqlite3_prepare_v2(SQ(st)->db,
			       "SELECT " STORE_SESSION_COLS " FROM sessions "
			       "WHERE id = ?1 AND (?2 IS NULL OR key_id = ?2)",
			       -1, &stmt, NULL) != SQLITE_OK ||
	    sqlite3_bind_text(stmt, 1, id, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_text(stmt, 2, key_id, -1, SQLITE_STATIC) != SQLITE_OK)
		return store_fail(st, err, "cannot read session '%s'", id);
	int rc = sqlite3_step(stmt);
	if (rc == SQLITE_DONE)
		return 0;
	if (rc != SQLITE_ROW)
		return store_fail(st, err, "cannot read session '%s'", id);
	if (store_session_from_row(stmt, out, err) < 0)
		return -1;
	return 1;
}

/* Returns 1 when the session was deleted, 0 when there was none, -1 on error. */
static int sq_session_delete(struct store *st, const char *id, struct bk_err *err)
{
	_cleanup_unlock_ pthread_mutex_t *lock = store_lock(st);
	_cleanup_stmt_ sqlite3_stmt *stmt = NULL;
	if (sqlite3_prepare_v2(SQ(st)->db, "DELETE FROM sessions WHERE id = ?", -1, &stmt, NULL) !=
		SQLITE_OK ||
	    sqlite3_bind_text(stmt, 1, id, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_step(stmt) != SQLITE_DONE)
		return store_fail(st, err, "cannot delete session '%s'", id);
	return sqlite3_changes(SQ(st)->db) > 0 ? 1 : 0;
}

/* Records activity at last_active_ms; an older time than the one stored
 * (two requests finishing out of order) leaves it as it is. Returns 1 when
 * the session exists, 0 when not, -1 on error. */
static int sq_session_touch(struct store *st, const char *id, int64_t last_active_ms,
			    struct bk_err *err)
{
	_cleanup_unlock_ pthread_mutex_t *lock = store_lock(st);
	_cleanup_stmt_ sqlite3_stmt *stmt = NULL;
	if (sqlite3_prepare_v2(SQ(st)->db,
			       "UPDATE sessions SET last_active_ms = MAX(last_active_ms, ?) "
			       "WHERE id = ?",
			       -1, &stmt, NULL) != SQLITE_OK ||
	    sqlite3_bind_int64(stmt, 1, last_active_ms) != SQLITE_OK ||
	    sqlite3_bind_text(stmt, 2, id, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_step(stmt) != SQLITE_DONE)
		return store_fail(st, err, "cannot touch session '%s'", id);
	return sqlite3_changes(SQ(st)->db) > 0 ? 1 : 0;
}

static int sq_session_set_state(struct store *st, const char *id, enum store_session_state state,
				struct bk_err *err)
{
	_cleanup_unlock_ pthread_mutex_t *lock = store_lock(st);
	_cleanup_stmt_ sqlite3_stmt *stmt = NULL;
	if (sqlite3_prepare_v2(SQ(st)->db, "UPDATE sessions SET state = ? WHERE id = ?", -1, &stmt,
			       NULL) != SQLITE_OK ||
	    sqlite3_bind_int(stmt, 1, (int)state) != SQLITE_OK ||
	    sqlite3_bind_text(stmt, 2, id, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_step(stmt) != SQLITE_DONE)
		return store_fail(st, err, "cannot set the state of session '%s'", id);
	return sqlite3_changes(SQ(st)->db) > 0 ? 1 : 0;
}

static int sq_session_count(struct store *st, const char *key_id, int64_t now_ms, int64_t *out,
			    struct bk_err *err)
{
	_cleanup_unlock_ pthread_mutex_t *lock = store_lock(st);
	_cleanup_stmt_ sqlite3_stmt *stmt = NULL;
	if (sqlite3_prepare_v2(SQ(st)->db,
			       "SELECT COUNT(*) FROM sessions WHERE (?1 IS NULL OR key_id = ?1) "
			       "AND expires_ms > ?2",
			       -1, &stmt, NULL) != SQLITE_OK ||
	    sqlite3_bind_text(stmt, 1, key_id, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_int64(stmt, 2, now_ms) != SQLITE_OK || sqlite3_step(stmt) != SQLITE_ROW)
		return store_fail(st, err, "cannot count sessions of key '%s'", key_id);
	*out = sqlite3_column_int64(stmt, 0);
	return 0;
}

/* A growing array of sessions that releases what it holds unless stolen. */
struct store_page {
	struct store_session *items;
	size_t n, cap;
};

static void cleanup_pagep(struct store_page *p)
{
	for (size_t i = 0; i < p->n; i++)
		store_session_release(&p->items[i]);
	free(p->items);
}

/* Reads the current row into a new last element of p. */
static int store_page_add_row(struct store_page *p, sqlite3_stmt *stmt, struct bk_err *err)
{
	if (p->n == p->cap) {
		size_t cap = p->cap ? p->cap * 2 : 16;
		struct store_session *items = reallocarray(p->items, cap, sizeof(*items));
		if (items == NULL)
			return bk_err_set(err, errno, "cannot list sessions");
		p->items = items;
		p->cap = cap;
	}
	if (store_session_from_row(stmt, &p->items[p->n], err) < 0)
		return -1;
	p->n++;
	return 0;
}

static int sq_session_list(struct store *st, const char *key_id, int64_t now_ms,
			   store_session_match match, void *ctx, int limit, int offset,
			   struct store_session **out, size_t *n, int64_t *total,
			   struct bk_err *err)
{
	*out = NULL;
	*n = 0;
	*total = 0;
	if (limit < 0)
		return bk_err_field(err, "limit", "limit %d is negative", limit);
	if (offset < 0)
		return bk_err_field(err, "offset", "offset %d is negative", offset);
	/* The filter is core's, applied here row by row so that every store
	 * gives it the same meaning; a key's sessions are few (its plan caps
	 * the live ones), so reading them all is cheap. */
	_cleanup_unlock_ pthread_mutex_t *lock = store_lock(st);
	_cleanup_stmt_ sqlite3_stmt *stmt = NULL;
	if (sqlite3_prepare_v2(SQ(st)->db,
			       "SELECT " STORE_SESSION_COLS " FROM sessions WHERE key_id = ? "
			       "AND expires_ms > ? ORDER BY created_ms DESC, id DESC",
			       -1, &stmt, NULL) != SQLITE_OK ||
	    sqlite3_bind_text(stmt, 1, key_id, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_int64(stmt, 2, now_ms) != SQLITE_OK)
		return store_fail(st, err, "cannot list sessions of key '%s'", key_id);
	__attribute__((cleanup(cleanup_pagep))) struct store_page page = {0};
	int64_t matched = 0;
	int64_t end = (int64_t)offset + limit;
	int rc;
	while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
		const char *metadata = (const char *)sqlite3_column_text(stmt, 6);
		if (match != NULL && !match(ctx, metadata ? metadata : ""))
			continue;
		if (matched >= offset && matched < end && store_page_add_row(&page, stmt, err) < 0)
			return -1;
		matched++;
	}
	if (rc != SQLITE_DONE)
		return store_fail(st, err, "cannot list sessions of key '%s'", key_id);
	*n = page.n;
	*total = matched;
	*out = steal_ptr(&page.items);
	page.n = 0;
	return 0;
}

static int sq_session_list_all(struct store *st, struct store_session **out, size_t *n,
			       struct bk_err *err)
{
	*out = NULL;
	*n = 0;
	_cleanup_unlock_ pthread_mutex_t *lock = store_lock(st);
	_cleanup_stmt_ sqlite3_stmt *stmt = NULL;
	if (sqlite3_prepare_v2(SQ(st)->db,
			       "SELECT " STORE_SESSION_COLS " FROM sessions "
			       "ORDER BY created_ms, id",
			       -1, &stmt, NULL) != SQLITE_OK)
		return store_fail(st, err, "cannot list all sessions");
	__attribute__((cleanup(cleanup_pagep))) struct store_page page = {0};
	int rc;
	while ((rc = sqlite3_step(stmt)) == SQLITE_ROW)
		if (store_page_add_row(&page, stmt, err) < 0)
			return -1;
	if (rc != SQLITE_DONE)
		return store_fail(st, err, "cannot list all sessions");
	*n = page.n;
	*out = steal_ptr(&page.items);
	page.n = 0;
	return 0;
}

/* ---- idempotency ---- */

static int sq_idem_get(struct store *st, const char *key_id, const char *idem_key, int64_t since_ms,
		       struct store_idem *out, struct bk_err *err)
{
	memset(out, 0, sizeof(*out));
	_cleanup_unlock_ pthread_mutex_t *lock = store_lock(st);
	_cleanup_stmt_ sqlite3_stmt *stmt = NULL;
	if (sqlite3_prepare_v2(SQ(st)->db,
			       "SELECT key_id, idem_key, request_hash, status, content_type, body, "
			       "created_ms FROM idempotency "
			       "WHERE key_id = ? AND idem_key = ? AND created_ms >= ?",
			       -1, &stmt, NULL) != SQLITE_OK ||
	    sqlite3_bind_text(stmt, 1, key_id, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_text(stmt, 2, idem_key, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_int64(stmt, 3, since_ms) != SQLITE_OK)
		return store_fail(st, err, "cannot read idempotency key of key '%s'", key_id);
	int rc = sqlite3_step(stmt);
	if (rc == SQLITE_DONE)
		return 0;
	if (rc != SQLITE_ROW)
		return store_fail(st, err, "cannot read idempotency key of key '%s'", key_id);
	const void *hash = sqlite3_column_blob(stmt, 2);
	if (store_col_copy(stmt, 0, out->key_id, sizeof(out->key_id)) < 0 ||
	    store_col_copy(stmt, 1, out->idem_key, sizeof(out->idem_key)) < 0 ||
	    store_col_copy(stmt, 4, out->content_type, sizeof(out->content_type)) < 0 ||
	    hash == NULL || sqlite3_column_bytes(stmt, 2) != 32)
		return bk_err_kind(err, BK_E_INTERNAL,
				   "cannot read idempotency key of key '%s': stored row is invalid",
				   key_id);
	memcpy(out->request_hash, hash, 32);
	/* A zero-length blob reads as NULL: an empty body. */
	const void *body = sqlite3_column_blob(stmt, 5);
	int len = sqlite3_column_bytes(stmt, 5);
	out->body = malloc((size_t)len + 1);
	if (out->body == NULL)
		return bk_err_set(err, errno, "cannot read idempotency key of key '%s'", key_id);
	if (len > 0)
		memcpy(out->body, body, (size_t)len);
	out->body[len] = '\0';
	out->body_len = (size_t)len;
	out->status = sqlite3_column_int(stmt, 3);
	out->created_ms = sqlite3_column_int64(stmt, 6);
	return 1;
}

static int sq_idem_put(struct store *st, const struct store_idem *r, struct bk_err *err)
{
	if (!store_str_ok(r->key_id, sizeof(r->key_id)) ||
	    !store_str_ok(r->idem_key, sizeof(r->idem_key)) ||
	    !store_str_ok(r->content_type, sizeof(r->content_type)) || r->body_len > INT_MAX)
		return bk_err_kind(
		    err, BK_E_INTERNAL,
		    "cannot store idempotency key: unterminated field or body too long");
	_cleanup_unlock_ pthread_mutex_t *lock = store_lock(st);
	_cleanup_stmt_ sqlite3_stmt *stmt = NULL;
	if (sqlite3_prepare_v2(
		SQ(st)->db,
		"INSERT OR REPLACE INTO idempotency (key_id, idem_key, request_hash, "
		"status, content_type, body, created_ms) VALUES (?, ?, ?, ?, ?, ?, ?)",
		-1, &stmt, NULL) != SQLITE_OK ||
	    sqlite3_bind_text(stmt, 1, r->key_id, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_text(stmt, 2, r->idem_key, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_blob(stmt, 3, r->request_hash, 32, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_int(stmt, 4, r->status) != SQLITE_OK ||
	    sqlite3_bind_text(stmt, 5, r->content_type, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_blob(stmt, 6, r->body ? r->body : "", (int)r->body_len, SQLITE_STATIC) !=
		SQLITE_OK ||
	    sqlite3_bind_int64(stmt, 7, r->created_ms) != SQLITE_OK ||
	    sqlite3_step(stmt) != SQLITE_DONE)
		return store_fail(st, err, "cannot store idempotency key of key '%s'", r->key_id);
	return 0;
}

static int sq_idem_purge(struct store *st, int64_t before_ms, int64_t *n, struct bk_err *err)
{
	_cleanup_unlock_ pthread_mutex_t *lock = store_lock(st);
	_cleanup_stmt_ sqlite3_stmt *stmt = NULL;
	if (sqlite3_prepare_v2(SQ(st)->db, "DELETE FROM idempotency WHERE created_ms < ?", -1,
			       &stmt, NULL) != SQLITE_OK ||
	    sqlite3_bind_int64(stmt, 1, before_ms) != SQLITE_OK ||
	    sqlite3_step(stmt) != SQLITE_DONE)
		return store_fail(st, err, "cannot purge expired idempotency keys");
	if (n)
		*n = sqlite3_changes(SQ(st)->db);
	return 0;
}

static int sq_session_expired(struct store *st, int64_t now_ms, char (*ids)[32], size_t max,
			      size_t *n, struct bk_err *err)
{
	*n = 0;
	_cleanup_unlock_ pthread_mutex_t *lock = store_lock(st);
	_cleanup_stmt_ sqlite3_stmt *stmt = NULL;
	if (sqlite3_prepare_v2(SQ(st)->db,
			       "SELECT id FROM sessions WHERE expires_ms <= ? "
			       "ORDER BY expires_ms LIMIT ?",
			       -1, &stmt, NULL) != SQLITE_OK ||
	    sqlite3_bind_int64(stmt, 1, now_ms) != SQLITE_OK ||
	    sqlite3_bind_int64(stmt, 2, (int64_t)max) != SQLITE_OK)
		return store_fail(st, err, "cannot find expired sessions");
	int rc;
	while (*n < max && (rc = sqlite3_step(stmt)) == SQLITE_ROW) {
		if (store_col_copy(stmt, 0, ids[*n], sizeof(ids[*n])) == 0)
			(*n)++;
	}
	return 0;
}

static const struct store_ops sqlite_ops = {
    .name = "sqlite",
    .close = sq_close,
    .key_insert = sq_key_insert,
    .key_find_by_hash = sq_key_find_by_hash,
    .key_list = sq_key_list,
    .key_revoke = sq_key_revoke,
    .idem_get = sq_idem_get,
    .idem_put = sq_idem_put,
    .idem_purge = sq_idem_purge,
    .session_insert = sq_session_insert,
    .session_get = sq_session_get,
    .session_delete = sq_session_delete,
    .session_touch = sq_session_touch,
    .session_set_state = sq_session_set_state,
    .session_count = sq_session_count,
    .session_list = sq_session_list,
    .session_list_all = sq_session_list_all,
    .session_expired = sq_session_expired,
};
