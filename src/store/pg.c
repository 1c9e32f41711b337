/* The cluster store: struct store_ops on a PostgreSQL database that
 * several bunkerd nodes share, through libpq.
 *
 * Every statement goes through PQexecParams with its values as parameters
 * (pg__exec); none is built from a string. Results come back in binary, so
 * bytea needs no unescaping; store/rows.c reads them through pg__row().
 *
 * The schema is created and migrated in one transaction that first takes a
 * transaction-level advisory lock (PG_MIGRATION_LOCK): two nodes starting
 * at once migrate one after the other, and the second finds nothing left
 * to do. The version is the one row of bunker_schema.
 *
 * What must hold cluster-wide is decided by the database: a key's session
 * cap is counted with the key's row locked (pg__cap_check), a request
 * with an Idempotency-Key claims it with one INSERT ... ON CONFLICT, and a
 * key's requests are counted against its rate limit with another.
 */
#include "store/pg_int.h"

#include <endian.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/cleanup.h"
#include "util/util.h"

/* The key of the advisory lock that serialises migrations: "bunker" in
 * ASCII, so that it stands out in pg_locks. */
#define PG_MIGRATION_LOCK "108724386522482"

/* How a statement that cannot reach the server fails: the client reads
 * it (a 503), so it names the store. */
#define PG_UNREACHABLE "the session store (PostgreSQL) is unreachable"
/* Between two attempts to connect again while the server is out of reach. */
#define PG_RETRY_MS 1000

/* What bounds a wait on the server, unless the URI says otherwise (these
 * come first, so that its own values win): a connect gives up after
 * connect_timeout seconds; over TCP, a server gone without a word is
 * found out by keepalives (idle, interval, count: about 20 s) and data
 * left unacknowledged for tcp_user_timeout ms. A unix socket fails at
 * once. */
static const char *const pg_conn_keys[] = {"connect_timeout",
					   "keepalives_idle",
					   "keepalives_interval",
					   "keepalives_count",
					   "tcp_user_timeout",
					   "dbname",
					   NULL};
#define PG_CONN_DEFAULTS "5", "10", "5", "2", "10000"

/* Type oids of the columns read (from PostgreSQL's pg_type.dat, stable). */
#define PG_OID_BOOL 16
#define PG_OID_INT8 20
#define PG_OID_INT2 21
#define PG_OID_INT4 23
#define PG_OID_FLOAT4 700
#define PG_OID_FLOAT8 701

/* Schema migrations, in order: pg_migrations[i] takes version i to i + 1.
 * Never edit one that has shipped; append one and raise
 * STORE_PG_SCHEMA_VERSION. Version 1 was SQLite's version 6; version 2 is
 * SQLite's version 7, version 3 SQLite's 8. Version 5's table, the keys'
 * rate-limit windows, has no SQLite counterpart: one node counts them in
 * memory. */
static const char *const pg_migrations[] = {
    /* 0 -> 1 */
    "CREATE TABLE keys ("
    "  id text PRIMARY KEY,"
    "  hash bytea NOT NULL UNIQUE,"
    "  plan text NOT NULL,"
    "  created_ms bigint NOT NULL,"
    "  revoked_ms bigint NOT NULL DEFAULT 0,"
    "  overrides text NOT NULL DEFAULT '{}'"
    ");"
    "CREATE TABLE sessions ("
    "  id text PRIMARY KEY,"
    "  key_id text NOT NULL REFERENCES keys(id),"
    "  created_ms bigint NOT NULL,"
    "  expires_ms bigint NOT NULL,"
    "  last_active_ms bigint NOT NULL,"
    "  state integer NOT NULL,"
    "  metadata text NOT NULL,"
    "  memory_mb integer NOT NULL,"
    "  cpu double precision NOT NULL,"
    "  timeout_s integer NOT NULL,"
    "  disk_mb integer NOT NULL,"
    "  public_id text UNIQUE,"
    "  dialect integer NOT NULL DEFAULT 0,"
    "  env text NOT NULL DEFAULT '{}',"
    "  vcpu integer NOT NULL DEFAULT 0,"
    "  vm_state integer NOT NULL DEFAULT 1,"
    "  vm_lifetime_s bigint NOT NULL DEFAULT 0,"
    "  vm_spawned_ms bigint NOT NULL DEFAULT 0,"
    "  vm_ends_ms bigint NOT NULL DEFAULT 0,"
    "  exec_count bigint NOT NULL DEFAULT 0,"
    "  cpu_ms bigint NOT NULL DEFAULT 0,"
    "  vm_runtime_ms bigint NOT NULL DEFAULT 0"
    ");"
    "CREATE INDEX sessions_key_created ON sessions (key_id, created_ms);"
    "CREATE INDEX sessions_expires ON sessions (expires_ms);"
    "CREATE INDEX sessions_vm_ends ON sessions (vm_ends_ms) WHERE vm_ends_ms > 0;"
    "CREATE TABLE idempotency ("
    "  key_id text NOT NULL REFERENCES keys(id),"
    "  idem_key text NOT NULL,"
    "  request_hash bytea NOT NULL,"
    "  status integer NOT NULL,"
    "  content_type text NOT NULL,"
    "  body bytea NOT NULL,"
    "  created_ms bigint NOT NULL,"
    "  dropped_len bigint NOT NULL DEFAULT 0,"
    "  PRIMARY KEY (key_id, idem_key)"
    ");"
    "CREATE INDEX idempotency_created ON idempotency (created_ms);"
    "CREATE TABLE idem_claims ("
    "  key_id text NOT NULL,"
    "  idem_key text NOT NULL,"
    "  claimed_ms bigint NOT NULL,"
    "  expires_ms bigint NOT NULL,"
    "  PRIMARY KEY (key_id, idem_key)"
    ");"
    "CREATE TABLE tasks ("
    "  id text PRIMARY KEY,"
    "  session_id text NOT NULL,"
    "  key_id text NOT NULL REFERENCES keys(id),"
    "  status integer NOT NULL,"
    "  stdout bytea NOT NULL DEFAULT '',"
    "  stderr bytea NOT NULL DEFAULT '',"
    "  exit_code integer NOT NULL DEFAULT 0,"
    "  execution_ms bigint NOT NULL DEFAULT 0,"
    "  cpu_ms bigint NOT NULL DEFAULT 0,"
    "  created_ms bigint NOT NULL,"
    "  finished_ms bigint NOT NULL DEFAULT 0"
    ");"
    "CREATE INDEX tasks_created ON tasks (created_ms);"
    "CREATE INDEX tasks_key_created ON tasks (key_id, created_ms);",
    /* 1 -> 2: a session's outbound network policy ('': none). */
    "ALTER TABLE sessions ADD COLUMN network text NOT NULL DEFAULT '';",
    /* 2 -> 3: nodes, their leases and load, and the sessions each owns
     * with a fencing epoch. */
    "ALTER TABLE sessions ADD COLUMN owner text NOT NULL DEFAULT '';"
    "ALTER TABLE sessions ADD COLUMN epoch bigint NOT NULL DEFAULT 0;"
    "CREATE INDEX sessions_owner ON sessions (owner);"
    "CREATE TABLE nodes ("
    "  name text PRIMARY KEY,"
    "  advertise text NOT NULL,"
    "  started_ms bigint NOT NULL,"
    "  renewed_ms bigint NOT NULL,"
    "  lease_ms bigint NOT NULL,"
    "  free_mb bigint NOT NULL DEFAULT 0,"
    "  awake bigint NOT NULL DEFAULT 0"
    ");",
    /* 3 -> 4: the bytes a session's outbound network carried, over its
     * life. */
    "ALTER TABLE sessions ADD COLUMN net_tx_bytes bigint NOT NULL DEFAULT 0;"
    "ALTER TABLE sessions ADD COLUMN net_rx_bytes bigint NOT NULL DEFAULT 0;",
    /* 4 -> 5: each key's rate-limit window, counted by every node. */
    "CREATE TABLE rate_windows ("
    "  key_id text PRIMARY KEY,"
    "  start_ms bigint NOT NULL,"
    "  count bigint NOT NULL"
    ");",
    /* 5 -> 6: each key's sessions counted as they come and go, all and
     * those holding a VM (SQLite's version 10): a cap check or a list's
     * total reads them rather than every session of the key. */
    "ALTER TABLE keys ADD COLUMN sessions_all bigint NOT NULL DEFAULT 0;"
    "ALTER TABLE keys ADD COLUMN sessions_vm bigint NOT NULL DEFAULT 0;"
    "UPDATE keys SET"
    "  sessions_all = (SELECT count(*) FROM sessions WHERE key_id = keys.id),"
    "  sessions_vm = (SELECT count(*) FROM sessions WHERE key_id = keys.id AND vm_state = 1);"
    "CREATE FUNCTION bunker_sessions_counted() RETURNS trigger LANGUAGE plpgsql AS $$"
    "BEGIN"
    "  IF TG_OP <> 'INSERT' THEN"
    "    UPDATE keys SET sessions_all = sessions_all - 1,"
    "      sessions_vm = sessions_vm - (OLD.vm_state = 1)::int WHERE id = OLD.key_id;"
    "  END IF;"
    "  IF TG_OP <> 'DELETE' THEN"
    "    UPDATE keys SET sessions_all = sessions_all + 1,"
    "      sessions_vm = sessions_vm + (NEW.vm_state = 1)::int WHERE id = NEW.key_id;"
    "  END IF;"
    "  RETURN NULL;"
    "END $$;"
    "CREATE TRIGGER sessions_counted AFTER INSERT OR DELETE ON sessions"
    "  FOR EACH ROW EXECUTE FUNCTION bunker_sessions_counted();"
    "CREATE TRIGGER sessions_counted_again AFTER UPDATE OF vm_state, key_id ON sessions"
    "  FOR EACH ROW WHEN (OLD.vm_state IS DISTINCT FROM NEW.vm_state OR"
    "  OLD.key_id IS DISTINCT FROM NEW.key_id)"
    "  EXECUTE FUNCTION bunker_sessions_counted();",
};

_Static_assert(ARRAY_SIZE(pg_migrations) == STORE_PG_SCHEMA_VERSION,
	       "one migration per schema version");

/* ---- parameters ---- */

static const char **pg_param_slot(struct pg_params *p, int format, int length)
{
	if (p->n >= PG_PARAMS_MAX)
		abort(); /* a statement of ours with too many: a bug, not input */
	p->formats[p->n] = format;
	p->lengths[p->n] = length;
	return &p->values[p->n++];
}

void pg__text(struct pg_params *p, const char *s)
{
	*pg_param_slot(p, 0, 0) = s;
}

void pg__int(struct pg_params *p, int64_t v)
{
	/* The slot first: it checks the bound that buf shares. */
	const char **slot = pg_param_slot(p, 0, 0);
	char *b = p->buf[p->n - 1];
	snprintf(b, sizeof(p->buf[0]), "%lld", (long long)v);
	*slot = b;
}

void pg__real(struct pg_params *p, double v)
{
	/* %.17g reads back to the same double. */
	snprintf(p->buf[p->n], sizeof(p->buf[p->n]), "%.17g", v);
	const char *s = p->buf[p->n];
	*pg_param_slot(p, 0, 0) = s;
}

void pg__bytes(struct pg_params *p, const void *b, size_t n)
{
	/* A zero-length binary value must still not be SQL NULL. */
	*pg_param_slot(p, 1, (int)n) = n ? b : "";
}

/* ---- statements ---- */

/* The server's message, or libpq's, on one line. */
static void pg_message(const char *m, char *out, size_t size)
{
	snprintf(out, size, "%s", m && *m ? m : "unknown error");
	size_t len = strlen(out);
	while (len > 0 && (out[len - 1] == '\n' || out[len - 1] == ' '))
		out[--len] = '\0';
	for (char *c = out; *c; c++)
		if (*c == '\n')
			*c = ' ';
}

/* Whether a statement failed for want of the server: the connection
 * lost, no answer, a connection exception (08) or the server shutting
 * down (57P). */
static bool pg_lost(PGconn *conn, const PGresult *res)
{
	if (PQstatus(conn) != CONNECTION_OK)
		return true;
	const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
	return state == NULL || strncmp(state, "08", 2) == 0 || strncmp(state, "57P", 3) == 0;
}

static enum bk_err_kind pg_kind(PGconn *conn, const PGresult *res)
{
	if (pg_lost(conn, res))
		return BK_E_UNAVAILABLE;
	const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
	if (strcmp(state, "23505") == 0)
		return BK_E_CONFLICT;
	/* 40001, 40P01, 55P03: serialization failure, deadlock, lock not
	 * available: worth a retry. */
	if (strcmp(state, "40001") == 0 || strcmp(state, "40P01") == 0 ||
	    strcmp(state, "55P03") == 0)
		return BK_E_UNAVAILABLE;
	return BK_E_INTERNAL;
}

/* The server is out of reach (why: msg): said once in the log, and kept
 * for the statements that fail meanwhile without trying. */
static void pg_note_down(struct pg_store *pg, const char *msg)
{
	if (pg->down[0] == '\0')
		fprintf(stderr, "bunkerd: " PG_UNREACHABLE ": %s\n", msg);
	snprintf(pg->down, sizeof(pg->down), "%s", msg);
}

static int pg_vexec(struct store *st, const char *sql, const struct pg_params *p, PGresult **out,
		    struct bk_err *err, const char *fmt, va_list ap)
{
	PGconn *conn = PG(st)->conn;
	char what[384], msg[384];
	*out = NULL;
	/* Not connected (pg__lock() could not connect again): no statement
	 * can run, and none waits. */
	if (PQstatus(conn) != CONNECTION_OK) {
		vsnprintf(what, sizeof(what), fmt, ap);
		return bk_err_kind(err, BK_E_UNAVAILABLE, PG_UNREACHABLE ": %s: %s", what,
				   PG(st)->down[0] ? PG(st)->down : "not connected");
	}
	PGresult *res = PQexecParams(conn, sql, p ? p->n : 0, NULL, p ? p->values : NULL,
				     p ? p->lengths : NULL, p ? p->formats : NULL, 1);
	ExecStatusType status = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
	if (status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK) {
		*out = res;
		return 0;
	}
	vsnprintf(what, sizeof(what), fmt, ap);
	pg_message(res ? PQresultErrorMessage(res) : PQerrorMessage(conn), msg, sizeof(msg));
	enum bk_err_kind kind = pg_kind(conn, res);
	bool lost = pg_lost(conn, res);
	PQclear(res);
	if (!lost)
		return bk_err_kind(err, kind, "%s: %s", what, msg);
	pg_note_down(PG(st), msg);
	return bk_err_kind(err, kind, PG_UNREACHABLE ": %s: %s", what, msg);
}

int pg__exec(struct store *st, const char *sql, const struct pg_params *p, PGresult **out,
	     struct bk_err *err, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int rc = pg_vexec(st, sql, p, out, err, fmt, ap);
	va_end(ap);
	return rc;
}

int pg__run(struct store *st, const char *sql, const struct pg_params *p, struct bk_err *err,
	    const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	_cleanup_result_ PGresult *res = NULL;
	int rc = pg_vexec(st, sql, p, &res, err, fmt, ap);
	va_end(ap);
	return rc;
}

int64_t pg__changed(PGresult *res)
{
	const char *n = PQcmdTuples(res);
	return n && *n ? strtoll(n, NULL, 10) : 0;
}

int pg__begin(struct store *st, struct bk_err *err)
{
	return pg__run(st, "BEGIN", NULL, err, "cannot begin a transaction");
}

int pg__tx_end(struct store *st, int rc, struct bk_err *err)
{
	if (rc >= 0) {
		if (pg__run(st, "COMMIT", NULL, err, "cannot commit a transaction") == 0)
			return rc;
		rc = -1;
	}
	if (PQtransactionStatus(PG(st)->conn) != PQTRANS_IDLE) {
		struct bk_err ignored = BK_ERR_INIT;
		pg__run(st, "ROLLBACK", NULL, &ignored, "cannot roll a transaction back");
	}
	return rc;
}

pthread_mutex_t *pg__lock(struct store *st)
{
	struct pg_store *pg = PG(st);
	pthread_mutex_lock(&pg->lock);
	/* A lost connection (the server restarted) is made again here, at
	 * most once every PG_RETRY_MS: a statement in between fails at once
	 * (pg_vexec()), so that no request waits for more than one attempt
	 * (connect_timeout) behind the others. */
	if (PQstatus(pg->conn) == CONNECTION_OK || now_ms() < pg->retry_ms)
		return &pg->lock;
	PQreset(pg->conn);
	if (PQstatus(pg->conn) != CONNECTION_OK) {
		char msg[256];
		pg_message(PQerrorMessage(pg->conn), msg, sizeof(msg));
		pg_note_down(pg, msg);
		pg->retry_ms = now_ms() + PG_RETRY_MS;
	} else if (pg->down[0]) {
		fprintf(stderr, "bunkerd: the session store (PostgreSQL) answers again\n");
		pg->down[0] = '\0';
	}
	return &pg->lock;
}

/* ---- rows ---- */

static const char *row_text(const struct store__row *r, int col, size_t *len)
{
	PGresult *res = r->ctx;
	if (PQgetisnull(res, r->index, col)) {
		*len = 0;
		return NULL;
	}
	/* libpq ends every value with a NUL, binary ones included. */
	*len = (size_t)PQgetlength(res, r->index, col);
	return PQgetvalue(res, r->index, col);
}

static const void *row_blob(const struct store__row *r, int col, size_t *len)
{
	return row_text(r, col, len);
}

static uint64_t row_be(const struct store__row *r, int col, int width)
{
	PGresult *res = r->ctx;
	if (PQgetisnull(res, r->index, col) || PQgetlength(res, r->index, col) != width)
		return 0;
	const char *v = PQgetvalue(res, r->index, col);
	if (width == 8) {
		uint64_t x;
		memcpy(&x, v, 8);
		return be64toh(x);
	}
	if (width == 4) {
		uint32_t x;
		memcpy(&x, v, 4);
		return be32toh(x);
	}
	if (width == 2) {
		uint16_t x;
		memcpy(&x, v, 2);
		return be16toh(x);
	}
	return (uint8_t)v[0];
}

static int64_t row_int64(const struct store__row *r, int col)
{
	switch (PQftype(r->ctx, col)) {
	case PG_OID_INT8:
		return (int64_t)row_be(r, col, 8);
	case PG_OID_INT4:
		return (int32_t)row_be(r, col, 4);
	case PG_OID_INT2:
		return (int16_t)row_be(r, col, 2);
	case PG_OID_BOOL:
		return row_be(r, col, 1) != 0;
	default:
		return 0;
	}
}

static double row_real(const struct store__row *r, int col)
{
	double d;
	if (PQftype(r->ctx, col) == PG_OID_FLOAT8) {
		uint64_t x = row_be(r, col, 8);
		memcpy(&d, &x, 8);
		return d;
	}
	if (PQftype(r->ctx, col) == PG_OID_FLOAT4) {
		uint32_t x = (uint32_t)row_be(r, col, 4);
		float f;
		memcpy(&f, &x, 4);
		return f;
	}
	return (double)row_int64(r, col);
}

struct store__row pg__row(PGresult *res, int i)
{
	return (struct store__row){.text = row_text,
				   .blob = row_blob,
				   .int64 = row_int64,
				   .real = row_real,
				   .ctx = res,
				   .index = i};
}

int64_t pg__int_at(PGresult *res, int col)
{
	struct store__row r = pg__row(res, 0);
	return PQntuples(res) > 0 ? row_int64(&r, col) : 0;
}

/* ---- the cap ---- */

int pg__live_count(struct store *st, const char *key_id, int64_t now_ms, bool holding,
		   const char *except_id, int64_t *out, struct bk_err *err)
{
	struct pg_params p = {0};
	pg__text(&p, key_id);
	pg__int(&p, now_ms);
	pg__int(&p, holding);
	pg__text(&p, except_id);
	_cleanup_result_ PGresult *res = NULL;
	/* The key's counts less its records expired and not yet reaped,
	 * found by the expiry index, and except_id's if it is counted. */
	if (pg__exec(
		st,
		"SELECT coalesce((SELECT CASE WHEN $3::int = 1 THEN sessions_vm ELSE "
		"sessions_all END FROM keys WHERE id = $1), 0) - (SELECT count(*) FROM "
		"sessions WHERE expires_ms <= $2 AND key_id || '' = $1 AND ($3::int = 0 OR "
		"vm_state = 1)) - (SELECT count(*) FROM sessions WHERE id = $4::text AND key_id "
		"= $1 AND expires_ms > $2 AND ($3::int = 0 OR vm_state = 1))",
		&p, &res, err, "cannot count sessions of key '%s'", key_id) < 0)
		return -1;
	*out = pg__int_at(res, 0);
	return 0;
}

int pg__cap_check(struct store *st, const char *key_id, const char *except_id,
		  const struct store_cap *cap, struct bk_err *err)
{
	/* FOR NO KEY UPDATE: queues every cap check of this key (on every
	 * node) behind this transaction, without blocking inserts that only
	 * need the key to exist (FOR KEY SHARE). In READ COMMITTED the count
	 * that follows sees what the previous holder committed. */
	struct pg_params p = {0};
	pg__text(&p, key_id);
	if (pg__run(st, "SELECT 1 FROM keys WHERE id = $1 FOR NO KEY UPDATE", &p, err,
		    "cannot lock key '%s'", key_id) < 0)
		return -1;
	int64_t count;
	if (pg__live_count(st, key_id, cap->now_ms, cap->holding, except_id, &count, err) < 0)
		return -1;
	if (count >= cap->max)
		return bk_err_kind(err, BK_E_LIMIT, "key '%s' holds %lld sessions of its %lld",
				   key_id, (long long)count, (long long)cap->max);
	return 0;
}

/* ---- the schema ---- */

static int pg_migrate_tx(struct store *st, struct bk_err *err)
{
	if (pg__run(st, "SELECT pg_advisory_xact_lock(" PG_MIGRATION_LOCK ")", NULL, err,
		    "cannot take the migration lock") < 0 ||
	    pg__run(st, "CREATE TABLE IF NOT EXISTS bunker_schema (version integer NOT NULL)", NULL,
		    err, "cannot create the schema version table") < 0)
		return -1;
	_cleanup_result_ PGresult *res = NULL;
	if (pg__exec(st, "SELECT version FROM bunker_schema", NULL, &res, err,
		     "cannot read the schema version") < 0)
		return -1;
	int64_t version = 0;
	bool have_row = PQntuples(res) > 0;
	if (have_row)
		version = pg__int_at(res, 0);
	if (version > STORE_PG_SCHEMA_VERSION)
		return bk_err_kind(err, BK_E_INTERNAL,
				   "schema version %lld is newer than the %d this bunkerd knows; "
				   "upgrade bunkerd",
				   (long long)version, STORE_PG_SCHEMA_VERSION);
	if (version < 0)
		return bk_err_kind(err, BK_E_INTERNAL, "schema version %lld is not valid",
				   (long long)version);
	for (int64_t v = version; v < STORE_PG_SCHEMA_VERSION; v++) {
		/* A migration is several statements of our own, with no
		 * parameter: PQexec takes them at once. */
		PGresult *m = PQexec(PG(st)->conn, pg_migrations[v]);
		bool ok = m && PQresultStatus(m) == PGRES_COMMAND_OK;
		if (!ok) {
			char msg[384];
			pg_message(m ? PQresultErrorMessage(m) : PQerrorMessage(PG(st)->conn), msg,
				   sizeof(msg));
			enum bk_err_kind kind = pg_kind(PG(st)->conn, m);
			PQclear(m);
			return bk_err_kind(err, kind,
					   "cannot migrate the schema from %lld to %lld: %s",
					   (long long)v, (long long)v + 1, msg);
		}
		PQclear(m);
	}
	if (version == STORE_PG_SCHEMA_VERSION)
		return 0;
	struct pg_params p = {0};
	pg__int(&p, STORE_PG_SCHEMA_VERSION);
	return pg__run(st,
		       have_row ? "UPDATE bunker_schema SET version = $1"
				: "INSERT INTO bunker_schema (version) VALUES ($1)",
		       &p, err, "cannot set the schema version");
}

static void pg_notice_ignore(void *arg, const char *message)
{
	/* "relation already exists, skipping" and the like: not news. */
}

static void pg_close(struct store *st)
{
	if (st == NULL)
		return;
	PQfinish(PG(st)->conn);
	pthread_mutex_destroy(&PG(st)->lock);
	free(PG(st));
}

static inline void cleanup_pg_storep(struct store **st)
{
	pg_close(*st);
}

static const struct store_ops pg_ops;

int store_pg_open(const char *uri, struct store **out, struct bk_err *err)
{
	*out = NULL;
	__attribute__((cleanup(cleanup_pg_storep))) struct store *st =
	    calloc(1, sizeof(struct pg_store));
	if (st == NULL)
		return bk_err_set(err, errno, "cannot open the PostgreSQL store");
	st->ops = &pg_ops;
	pthread_mutex_init(&PG(st)->lock, NULL);
	/* The URI may hold a password: it is never repeated in a message. */
	const char *values[] = {PG_CONN_DEFAULTS, uri, NULL};
	_Static_assert(ARRAY_SIZE(values) == ARRAY_SIZE(pg_conn_keys), "a value for each key");
	PG(st)->conn = PQconnectdbParams(pg_conn_keys, values, 1);
	/* st is _cleanup_ (cleanup_pg_storep) until returned */
	if (PG(st)->conn == NULL)
		/* cppcheck-suppress memleak */
		return bk_err_kind(err, BK_E_UNAVAILABLE,
				   "cannot connect to PostgreSQL: out of memory");
	if (PQstatus(PG(st)->conn) != CONNECTION_OK) {
		char msg[384];
		pg_message(PQerrorMessage(PG(st)->conn), msg, sizeof(msg));
		/* cppcheck-suppress memleak */
		return bk_err_kind(err, BK_E_UNAVAILABLE, "cannot connect to PostgreSQL: %s", msg);
	}
	PQsetNoticeProcessor(PG(st)->conn, pg_notice_ignore, NULL);
	if (pg__begin(st, err) < 0 || pg__tx_end(st, pg_migrate_tx(st, err), err) < 0) {
		bk_err_prefix(err, "cannot open the PostgreSQL store");
		return -1;
	}
	*out = steal_ptr(&st);
	return 0;
}

static const struct store_ops pg_ops = {
    .name = "postgres",
    .close = pg_close,
    .key_insert = pg__key_insert,
    .key_find_by_hash = pg__key_find_by_hash,
    .key_list = pg__key_list,
    .key_revoke = pg__key_revoke,
    .idem_get = pg__idem_get,
    .idem_put = pg__idem_put,
    .idem_claim = pg__idem_claim,
    .idem_release = pg__idem_release,
    .idem_purge = pg__idem_purge,
    .idem_usage = pg__idem_usage,
    .session_insert = pg__session_insert,
    .session_get = pg__session_get,
    .session_delete = pg__session_delete,
    .session_touch = pg__session_touch,
    .session_set_state = pg__session_set_state,
    .session_count = pg__session_count,
    .session_list = pg__session_list,
    .session_list_all = pg__session_list_all,
    .session_set_vm = pg__session_set_vm,
    .session_set_network = pg__session_set_network,
    .session_due = pg__session_due,
    .session_claim = pg__session_claim,
    .session_release = pg__session_release,
    .node_renew = pg__node_renew,
    .node_list = pg__node_list,
    .node_remove = pg__node_remove,
    .task_insert = pg__task_insert,
    .task_update = pg__task_update,
    .task_get = pg__task_get,
    .task_count = pg__task_count,
    .task_purge = pg__task_purge,
    .rate_count = pg__rate_count,
};
