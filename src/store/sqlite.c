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
 * serialised by SQLite's file locks: a schema migration runs under BEGIN
 * IMMEDIATE, and busy_timeout makes a writer wait instead of failing at
 * once.
 */
#include "store/sqlite_int.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "util/cleanup.h"
#include "util/util.h"

#define STORE_BUSY_TIMEOUT_MS 5000

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
    /* 3 -> 4: the InstaVM dialect's sessions (a public id, a lazily
     * spawned VM with a lifetime, an env, usage counters) and its
     * asynchronous executions. Sessions of before hold a VM. */
    "ALTER TABLE sessions ADD COLUMN public_id TEXT;"
    "ALTER TABLE sessions ADD COLUMN dialect INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE sessions ADD COLUMN env TEXT NOT NULL DEFAULT '{}';"
    "ALTER TABLE sessions ADD COLUMN vcpu INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE sessions ADD COLUMN vm_state INTEGER NOT NULL DEFAULT 1;"
    "ALTER TABLE sessions ADD COLUMN vm_lifetime_s INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE sessions ADD COLUMN vm_spawned_ms INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE sessions ADD COLUMN vm_ends_ms INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE sessions ADD COLUMN exec_count INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE sessions ADD COLUMN cpu_ms INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE sessions ADD COLUMN vm_runtime_ms INTEGER NOT NULL DEFAULT 0;"
    "UPDATE sessions SET vm_spawned_ms = created_ms;"
    "CREATE UNIQUE INDEX sessions_public ON sessions (public_id) WHERE public_id IS NOT NULL;"
    "CREATE INDEX sessions_vm_ends ON sessions (vm_ends_ms) WHERE vm_ends_ms > 0;"
    "CREATE TABLE tasks ("
    "  id TEXT PRIMARY KEY,"
    "  session_id TEXT NOT NULL,"
    "  key_id TEXT NOT NULL REFERENCES keys(id),"
    "  status INTEGER NOT NULL,"
    "  stdout BLOB NOT NULL DEFAULT x'',"
    "  stderr BLOB NOT NULL DEFAULT x'',"
    "  exit_code INTEGER NOT NULL DEFAULT 0,"
    "  execution_ms INTEGER NOT NULL DEFAULT 0,"
    "  cpu_ms INTEGER NOT NULL DEFAULT 0,"
    "  created_ms INTEGER NOT NULL,"
    "  finished_ms INTEGER NOT NULL DEFAULT 0"
    ");"
    "CREATE INDEX tasks_created ON tasks (created_ms);"
    "CREATE INDEX tasks_key_created ON tasks (key_id, created_ms);",
    /* 4 -> 5: an answer too large to keep is recorded by its length, so
     * that its request is still not run twice. */
    "ALTER TABLE idempotency ADD COLUMN dropped_len INTEGER NOT NULL DEFAULT 0;",
    /* 5 -> 6: requests with an Idempotency-Key in flight, claimed in the
     * store so that every process sharing it sees them. */
    "CREATE TABLE idem_claims ("
    "  key_id TEXT NOT NULL,"
    "  idem_key TEXT NOT NULL,"
    "  claimed_ms INTEGER NOT NULL,"
    "  expires_ms INTEGER NOT NULL,"
    "  PRIMARY KEY (key_id, idem_key)"
    ");",
    /* 6 -> 7: a session's outbound network policy ('': none). */
    "ALTER TABLE sessions ADD COLUMN network TEXT NOT NULL DEFAULT '';",
    /* 7 -> 8: nodes and the sessions they own (one node on SQLite, but
     * the same records as PostgreSQL's). */
    "ALTER TABLE sessions ADD COLUMN owner TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE sessions ADD COLUMN epoch INTEGER NOT NULL DEFAULT 0;"
    "CREATE INDEX sessions_owner ON sessions (owner);"
    "CREATE TABLE nodes ("
    "  name TEXT PRIMARY KEY,"
    "  advertise TEXT NOT NULL,"
    "  started_ms INTEGER NOT NULL,"
    "  renewed_ms INTEGER NOT NULL,"
    "  lease_ms INTEGER NOT NULL,"
    "  free_mb INTEGER NOT NULL DEFAULT 0,"
    "  awake INTEGER NOT NULL DEFAULT 0"
    ");",
    /* 8 -> 9: the bytes a session's outbound network carried, over its
     * life. */
    "ALTER TABLE sessions ADD COLUMN net_tx_bytes INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE sessions ADD COLUMN net_rx_bytes INTEGER NOT NULL DEFAULT 0;",
    /* 9 -> 10: each key's sessions counted as they come and go, all and
     * those holding a VM, so that a create under its cap is admitted
     * without counting the key's sessions one by one
     * (sqlite__cap_check()). Triggers keep the counts, whatever the
     * statement. */
    "ALTER TABLE keys ADD COLUMN sessions_all INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE keys ADD COLUMN sessions_vm INTEGER NOT NULL DEFAULT 0;"
    "UPDATE keys SET"
    "  sessions_all = (SELECT COUNT(*) FROM sessions WHERE key_id = keys.id),"
    "  sessions_vm = (SELECT COUNT(*) FROM sessions WHERE key_id = keys.id AND vm_state = 1);"
    "CREATE TRIGGER sessions_counted_in AFTER INSERT ON sessions BEGIN"
    "  UPDATE keys SET sessions_all = sessions_all + 1,"
    "    sessions_vm = sessions_vm + (NEW.vm_state = 1) WHERE id = NEW.key_id;"
    "END;"
    "CREATE TRIGGER sessions_counted_out AFTER DELETE ON sessions BEGIN"
    "  UPDATE keys SET sessions_all = sessions_all - 1,"
    "    sessions_vm = sessions_vm - (OLD.vm_state = 1) WHERE id = OLD.key_id;"
    "END;"
    "CREATE TRIGGER sessions_counted_again AFTER UPDATE OF vm_state, key_id ON sessions"
    "  WHEN OLD.vm_state IS NOT NEW.vm_state OR OLD.key_id IS NOT NEW.key_id BEGIN"
    "  UPDATE keys SET sessions_all = sessions_all - 1,"
    "    sessions_vm = sessions_vm - (OLD.vm_state = 1) WHERE id = OLD.key_id;"
    "  UPDATE keys SET sessions_all = sessions_all + 1,"
    "    sessions_vm = sessions_vm + (NEW.vm_state = 1) WHERE id = NEW.key_id;"
    "END;",
};

_Static_assert(ARRAY_SIZE(store_migrations) == STORE_SCHEMA_VERSION,
	       "one migration per schema version");

/* Fills err with "<formatted>: <sqlite3_errmsg>"; a busy database is
 * BK_E_UNAVAILABLE (worth a retry), anything else BK_E_INTERNAL. Call with
 * st->lock held, right after the failing call. Returns -1. */
int sqlite__fail(struct store *st, struct bk_err *err, const char *fmt, ...)
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

int sqlite__exec(struct store *st, const char *sql, const char *what, struct bk_err *err)
{
	if (sqlite3_exec(SQ(st)->db, sql, NULL, NULL, NULL) != SQLITE_OK)
		return sqlite__fail(st, err, "cannot %s", what);
	return 0;
}

int sqlite__tx_end(struct store *st, int rc, struct bk_err *err)
{
	if (rc >= 0) {
		if (sqlite__exec(st, "COMMIT", "commit a transaction", err) == 0)
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
		return sqlite__fail(st, err, "cannot read the schema version");
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
			return sqlite__fail(st, err, "cannot migrate the schema from %d to %d", v,
					    v + 1);
	}
	if (version == STORE_SCHEMA_VERSION)
		return 0;
	/* PRAGMA takes no bound parameters; the value is our own constant. */
	char sql[64];
	snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", STORE_SCHEMA_VERSION);
	return sqlite__exec(st, sql, "set the schema version", err);
}

static int store_migrate(struct store *st, struct bk_err *err)
{
	if (sqlite__exec(st, "BEGIN IMMEDIATE", "begin the schema migration", err) < 0)
		return -1;
	return sqlite__tx_end(st, store_migrate_tx(st, err), err);
}

/* journal_mode answers with the mode now in force, which is not WAL when the
 * file system cannot give WAL its shared memory. */
static int store_wal_enable(struct store *st, struct bk_err *err)
{
	_cleanup_stmt_ sqlite3_stmt *stmt = NULL;
	if (sqlite3_prepare_v2(SQ(st)->db, "PRAGMA journal_mode = WAL", -1, &stmt, NULL) !=
		SQLITE_OK ||
	    sqlite3_step(stmt) != SQLITE_ROW)
		return sqlite__fail(st, err, "cannot set the journal mode to wal");
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
		return sqlite__fail(st, err, "cannot set the busy timeout");
	sqlite3_extended_result_codes(SQ(st)->db, 1);

	/* Refuse a newer schema before changing anything in the file. */
	int version;
	if (store_schema_version(st, &version, err) < 0 || store_schema_check(version, err) < 0)
		return -1;
	if (store_wal_enable(st, err) < 0 ||
	    sqlite__exec(st, "PRAGMA synchronous = NORMAL", "set synchronous mode", err) < 0 ||
	    sqlite__exec(st, "PRAGMA foreign_keys = ON", "enable foreign keys", err) < 0)
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
			/* st is _cleanup_ (cleanup_storep) until returned */
			/* cppcheck-suppress memleak */
			return bk_err_kind(err, BK_E_INTERNAL, "cannot open store '%s': %s", path,
					   sqlite3_errstr(rc));
		return sqlite__fail(st, err, "cannot open store '%s'", path);
	}
	if (store_configure(st, err) < 0) {
		bk_err_prefix(err, "cannot open store '%s'", path);
		return -1;
	}
	*out = steal_ptr(&st);
	return 0;
}

/* Copies a text column into a fixed buffer; -1 when it is NULL or too long. */
int sqlite__col_copy(sqlite3_stmt *stmt, int col, char *buf, size_t size)
{
	const unsigned char *v = sqlite3_column_text(stmt, col);
	int len = sqlite3_column_bytes(stmt, col);
	if (v == NULL || len < 0 || (size_t)len >= size)
		return -1;
	memcpy(buf, v, (size_t)len);
	buf[len] = '\0';
	return 0;
}

static const char *row_text(const struct store__row *r, int col, size_t *len)
{
	sqlite3_stmt *stmt = r->ctx;
	const char *v = (const char *)sqlite3_column_text(stmt, col);
	*len = v ? (size_t)sqlite3_column_bytes(stmt, col) : 0;
	return v;
}

static const void *row_blob(const struct store__row *r, int col, size_t *len)
{
	sqlite3_stmt *stmt = r->ctx;
	/* A zero-length blob reads as NULL: empty. */
	const void *v = sqlite3_column_blob(stmt, col);
	*len = v ? (size_t)sqlite3_column_bytes(stmt, col) : 0;
	return v;
}

static int64_t row_int64(const struct store__row *r, int col)
{
	return sqlite3_column_int64(r->ctx, col);
}

static double row_real(const struct store__row *r, int col)
{
	return sqlite3_column_double(r->ctx, col);
}

struct store__row sqlite__row(sqlite3_stmt *stmt)
{
	return (struct store__row){
	    .text = row_text, .blob = row_blob, .int64 = row_int64, .real = row_real, .ctx = stmt};
}

static const struct store_ops sqlite_ops = {
    .name = "sqlite",
    .close = sq_close,
    .key_insert = sqlite__key_insert,
    .key_find_by_hash = sqlite__key_find_by_hash,
    .key_list = sqlite__key_list,
    .key_revoke = sqlite__key_revoke,
    .idem_get = sqlite__idem_get,
    .idem_put = sqlite__idem_put,
    .idem_claim = sqlite__idem_claim,
    .idem_release = sqlite__idem_release,
    .idem_purge = sqlite__idem_purge,
    .idem_usage = sqlite__idem_usage,
    .session_insert = sqlite__session_insert,
    .session_get = sqlite__session_get,
    .session_delete = sqlite__session_delete,
    .session_touch = sqlite__session_touch,
    .session_set_state = sqlite__session_set_state,
    .session_count = sqlite__session_count,
    .session_list = sqlite__session_list,
    .session_list_all = sqlite__session_list_all,
    .session_set_vm = sqlite__session_set_vm,
    .session_set_network = sqlite__session_set_network,
    .session_due = sqlite__session_due,
    .session_claim = sqlite__session_claim,
    .session_release = sqlite__session_release,
    .node_renew = sqlite__node_renew,
    .node_list = sqlite__node_list,
    .node_remove = sqlite__node_remove,
    .task_insert = sqlite__task_insert,
    .task_update = sqlite__task_update,
    .task_get = sqlite__task_get,
    .task_count = sqlite__task_count,
    .task_purge = sqlite__task_purge,
};
