/* Unit tests of the stores: store/sqlite.c and store/pg.c. Each test of
 * both (STORE_TEST) runs once against each: against SQLite with a fresh
 * database in its own directory under one mkdtemp() base in /tmp, which the
 * parent removes after the last test (a failed test ends with _exit and
 * cannot clean up itself); against PostgreSQL with a fresh database of a
 * throwaway server the parent starts (tests/pg_server.h), or SKIP when it
 * cannot run here.
 */
#include "../harness.h"
#include "../pg_server.h"

#include <ctype.h>
#include <pthread.h>
#include <libpq-fe.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/core_int.h"
#include "store/store.h"
#include "util/util.h"

static char base_dir[] = "/tmp/bk-unit-store-XXXXXX";

int harness_setup(void)
{
	if (mkdtemp(base_dir) == NULL)
		return 1;
	if (pg_server_start() < 0)
		fprintf(stderr, "unit_store: no PostgreSQL for its tests: %s\n", pg.skip);
	return 0;
}

void harness_teardown(void)
{
	pg_server_stop();
	struct bk_err err = BK_ERR_INIT;
	if (rm_rf(base_dir, &err) < 0)
		fprintf(stderr, "%s\n", err.msg);
}

enum backend { BACKEND_SQLITE, BACKEND_PG };

struct fixture {
	enum backend backend;
	char dir[128];
	char path[192]; /* SQLite: the database file */
	char uri[256];	/* what store_open() takes */
	struct store *st;
};

/* A fresh directory and, for SQLite, a database in it, for PostgreSQL a
 * fresh database; opened. */
static void fixture_open_on(struct fixture *f, enum backend backend)
{
	f->backend = backend;
	snprintf(f->dir, sizeof(f->dir), "%s/t-XXXXXX", base_dir);
	CHECK(mkdtemp(f->dir) != NULL);
	snprintf(f->path, sizeof(f->path), "%s/bunker.db", f->dir);
	snprintf(f->uri, sizeof(f->uri), "%s", f->path);
	if (backend == BACKEND_PG) {
		PG_REQUIRE();
		char msg[512];
		CHECK_MSG(pg_server_database("t", f->uri, sizeof(f->uri), msg, sizeof(msg)) == 0,
			  "%s", msg);
	}
	struct bk_err err = {0};
	int rc = store_open(f->uri, &f->st, &err);
	CHECK_MSG(rc == 0, "store_open: %s", err.msg);
	CHECK(f->st != NULL);
}

static void fixture_open(struct fixture *f)
{
	fixture_open_on(f, BACKEND_SQLITE);
}

/* A test of both stores: the body runs once on each, as name_sqlite and
 * name_pg; it opens its fixture with fixture_open_on(&f, backend). */
#define STORE_TEST(name)                                                                           \
	static void name##_on(enum backend backend);                                               \
	TEST(name##_sqlite)                                                                        \
	{                                                                                          \
		name##_on(BACKEND_SQLITE);                                                         \
	}                                                                                          \
	TEST(name##_pg)                                                                            \
	{                                                                                          \
		name##_on(BACKEND_PG);                                                             \
	}                                                                                          \
	static void name##_on(enum backend backend)

static void fixture_close(struct fixture *f)
{
	if (f->st)
		f->st->ops->close(f->st);
	f->st = NULL;
	struct bk_err err = {0};
	CHECK_MSG(rm_rf(f->dir, &err) == 0, "%s", err.msg);
}

static void hash_of(uint8_t hash[32], int seed)
{
	for (int i = 0; i < 32; i++)
		hash[i] = (uint8_t)(seed * 31 + i);
}

static void key_add(struct store *st, const char *id, int seed)
{
	struct store_key k = {.created_ms = 1000};
	snprintf(k.id, sizeof(k.id), "%s", id);
	snprintf(k.plan, sizeof(k.plan), "free");
	hash_of(k.hash, seed);
	struct bk_err err = {0};
	CHECK_MSG(st->ops->key_insert(st, &k, &err) == 0, "store_key_insert: %s", err.msg);
}

static struct store_session session_make(const char *id, const char *key_id, int64_t created_ms,
					 const char *metadata)
{
	struct store_session s = {
	    .created_ms = created_ms,
	    .expires_ms = created_ms + 86400000,
	    .last_active_ms = created_ms,
	    .state = STORE_SESSION_ACTIVE,
	    .metadata = (char *)metadata,
	    .memory_mb = 1024,
	    .cpu = 0.25,
	    .timeout_s = 30,
	    .disk_mb = 1024,
	};
	snprintf(s.id, sizeof(s.id), "%s", id);
	snprintf(s.key_id, sizeof(s.key_id), "%s", key_id);
	return s;
}

/* Inserts a session. */
static void session_add(struct store *st, const char *id, const char *key_id, int64_t created_ms,
			const char *metadata)
{
	struct store_session s = session_make(id, key_id, created_ms, metadata);
	struct bk_err err = {0};
	CHECK_MSG(st->ops->session_insert(st, &s, NULL, &err) == 0, "insert %s: %s", id, err.msg);
}

static bool msg_is_lower_case_start(const char *msg)
{
	return msg[0] != '\0' && !isupper((unsigned char)msg[0]);
}

static int64_t raw_int(const char *path, const char *sql)
{
	sqlite3 *db = NULL;
	CHECK(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK);
	sqlite3_stmt *stmt = NULL;
	CHECK_MSG(sqlite3_prepare_v2(db, sql, -1, &stmt, NULL) == SQLITE_OK, "%s",
		  sqlite3_errmsg(db));
	CHECK(sqlite3_step(stmt) == SQLITE_ROW);
	int64_t v = sqlite3_column_int64(stmt, 0);
	sqlite3_finalize(stmt);
	sqlite3_close(db);
	return v;
}

TEST(open_creates_schema_and_reopen_keeps_data)
{
	/* With no umask to help, the file must still come out 0600. */
	umask(0);
	struct fixture f;
	fixture_open(&f);
	key_add(f.st, "key_aaaaaaaaaaaaaaaa", 1);

	struct stat sb;
	CHECK(stat(f.path, &sb) == 0);
	CHECK_INT_EQ(sb.st_mode & 0777, 0600);
	char wal[256];
	snprintf(wal, sizeof(wal), "%s-wal", f.path);
	CHECK(stat(wal, &sb) == 0);
	CHECK_INT_EQ(sb.st_mode & 0777, 0600);

	CHECK_INT_EQ(raw_int(f.path, "PRAGMA user_version"), STORE_SCHEMA_VERSION);
	CHECK_INT_EQ(raw_int(f.path, "SELECT count(*) FROM sqlite_master WHERE type = 'table' "
				     "AND name IN ('keys', 'sessions')"),
		     2);
	CHECK_INT_EQ(raw_int(f.path, "SELECT count(*) FROM sqlite_master WHERE type = 'index' "
				     "AND name = 'sessions_key_created'"),
		     1);
	session_add(f.st, "ses_aaaaaaaaaaaaaaaaaaaa", "key_aaaaaaaaaaaaaaaa", 5000, "{\"a\":1}");

	f.st->ops->close(f.st);
	struct bk_err err = {0};
	CHECK_MSG(store_open(f.path, &f.st, &err) == 0, "reopen: %s", err.msg);
	sqlite3 *db = NULL;
	CHECK(sqlite3_open_v2(f.path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK);
	sqlite3_stmt *stmt = NULL;
	CHECK(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &stmt, NULL) == SQLITE_OK);
	CHECK(sqlite3_step(stmt) == SQLITE_ROW);
	CHECK_STR_EQ((const char *)sqlite3_column_text(stmt, 0), "wal");
	sqlite3_finalize(stmt);
	sqlite3_close(db);

	struct store_key k;
	uint8_t h[32];
	hash_of(h, 1);
	CHECK_INT_EQ(f.st->ops->key_find_by_hash(f.st, h, &k, &err), 1);
	CHECK_STR_EQ(k.id, "key_aaaaaaaaaaaaaaaa");
	struct store_session s;
	CHECK_INT_EQ(f.st->ops->session_get(f.st, "ses_aaaaaaaaaaaaaaaaaaaa", NULL, &s, &err), 1);
	CHECK_STR_EQ(s.metadata, "{\"a\":1}");
	store_session_release(&s);
	fixture_close(&f);
}

TEST(open_refuses_newer_schema)
{
	struct fixture f;
	snprintf(f.dir, sizeof(f.dir), "%s/t-XXXXXX", base_dir);
	CHECK(mkdtemp(f.dir) != NULL);
	snprintf(f.path, sizeof(f.path), "%s/bunker.db", f.dir);
	sqlite3 *db = NULL;
	CHECK(sqlite3_open(f.path, &db) == SQLITE_OK);
	char sql[64];
	snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", STORE_SCHEMA_VERSION + 1);
	CHECK(sqlite3_exec(db, sql, NULL, NULL, NULL) == SQLITE_OK);
	sqlite3_close(db);

	struct bk_err err = {0};
	f.st = (struct store *)&err; /* must be reset to NULL */
	CHECK_INT_EQ(store_open(f.path, &f.st, &err), -1);
	CHECK(f.st == NULL);
	CHECK_MSG(strstr(err.msg, "newer") != NULL, "message: %s", err.msg);
	CHECK_MSG(strstr(err.msg, f.path) != NULL, "message: %s", err.msg);
	CHECK(msg_is_lower_case_start(err.msg));
	/* Refusing left the file as it was. */
	CHECK_INT_EQ(raw_int(f.path, "PRAGMA user_version"), STORE_SCHEMA_VERSION + 1);
	fixture_close(&f);
}

TEST(open_fails_in_missing_directory)
{
	struct store *st = NULL;
	struct bk_err err = {0};
	char path[256];
	snprintf(path, sizeof(path), "%s/no/such/dir/bunker.db", base_dir);
	CHECK_INT_EQ(store_open(path, &st, &err), -1);
	CHECK(st == NULL);
	CHECK_MSG(strstr(err.msg, path) != NULL, "message: %s", err.msg);
}

STORE_TEST(key_insert_and_find)
{
	struct fixture f;
	fixture_open_on(&f, backend);
	key_add(f.st, "key_aaaaaaaaaaaaaaaa", 1);

	struct store_key rev = {.created_ms = 2000, .revoked_ms = 3000};
	snprintf(rev.id, sizeof(rev.id), "key_bbbbbbbbbbbbbbbb");
	snprintf(rev.plan, sizeof(rev.plan), "enterprise");
	hash_of(rev.hash, 2);
	struct bk_err err = {0};
	CHECK_INT_EQ(f.st->ops->key_insert(f.st, &rev, &err), 0);

	struct store_key k;
	uint8_t h[32];
	hash_of(h, 1);
	CHECK_INT_EQ(f.st->ops->key_find_by_hash(f.st, h, &k, &err), 1);
	CHECK_STR_EQ(k.id, "key_aaaaaaaaaaaaaaaa");
	CHECK_STR_EQ(k.plan, "free");
	CHECK(memcmp(k.hash, h, 32) == 0);
	CHECK_INT_EQ(k.created_ms, 1000);
	CHECK_INT_EQ(k.revoked_ms, 0);

	hash_of(h, 2);
	CHECK_INT_EQ(f.st->ops->key_find_by_hash(f.st, h, &k, &err), 1);
	CHECK_STR_EQ(k.id, "key_bbbbbbbbbbbbbbbb");
	CHECK_STR_EQ(k.plan, "enterprise");
	CHECK_INT_EQ(k.revoked_ms, 3000);

	hash_of(h, 3);
	CHECK_INT_EQ(f.st->ops->key_find_by_hash(f.st, h, &k, &err), 0);

	/* Same id, or same hash under another id: conflict. */
	CHECK_INT_EQ(f.st->ops->key_insert(f.st, &rev, &err), -1);
	CHECK_INT_EQ(err.kind, BK_E_CONFLICT);
	snprintf(rev.id, sizeof(rev.id), "key_cccccccccccccccc");
	CHECK_INT_EQ(f.st->ops->key_insert(f.st, &rev, &err), -1);
	CHECK_INT_EQ(err.kind, BK_E_CONFLICT);
	CHECK(msg_is_lower_case_start(err.msg));
	fixture_close(&f);
}

STORE_TEST(session_insert_get_delete_touch)
{
	struct fixture f;
	fixture_open_on(&f, backend);
	key_add(f.st, "key_aaaaaaaaaaaaaaaa", 1);
	struct store_session in = session_make("ses_aaaaaaaaaaaaaaaaaaaa", "key_aaaaaaaaaaaaaaaa",
					       10000, "{\"owner\":\"ann\"}");
	in.state = STORE_SESSION_DEEP_SLEEP;
	in.memory_mb = 2048;
	in.cpu = 0.5;
	in.timeout_s = 300;
	in.disk_mb = 5120;
	in.expires_ms = 99999;
	in.last_active_ms = 12345;
	struct bk_err err = {0};
	CHECK_MSG(f.st->ops->session_insert(f.st, &in, NULL, &err) == 0, "%s", err.msg);

	struct store_session s;
	CHECK_INT_EQ(f.st->ops->session_get(f.st, in.id, "key_aaaaaaaaaaaaaaaa", &s, &err), 1);
	CHECK_STR_EQ(s.id, in.id);
	CHECK_STR_EQ(s.key_id, "key_aaaaaaaaaaaaaaaa");
	CHECK_INT_EQ(s.created_ms, 10000);
	CHECK_INT_EQ(s.expires_ms, 99999);
	CHECK_INT_EQ(s.last_active_ms, 12345);
	CHECK_INT_EQ(s.state, STORE_SESSION_DEEP_SLEEP);
	CHECK_STR_EQ(s.metadata, "{\"owner\":\"ann\"}");
	CHECK(s.metadata != in.metadata);
	CHECK_INT_EQ(s.memory_mb, 2048);
	CHECK(s.cpu == 0.5);
	CHECK_INT_EQ(s.timeout_s, 300);
	CHECK_INT_EQ(s.disk_mb, 5120);
	store_session_release(&s);
	CHECK(s.metadata == NULL);

	/* Touch moves last_active forward, never back. */
	CHECK_INT_EQ(f.st->ops->session_touch(f.st, in.id, 20000, NULL, &err), 1);
	CHECK_INT_EQ(f.st->ops->session_touch(f.st, in.id, 15000, NULL, &err), 1);
	CHECK_INT_EQ(f.st->ops->session_get(f.st, in.id, NULL, &s, &err), 1);
	CHECK_INT_EQ(s.last_active_ms, 20000);
	store_session_release(&s);
	CHECK_INT_EQ(f.st->ops->session_touch(f.st, "ses_nonenonenonenonenone", 1, NULL, &err), 0);

	/* Usage adds up, every counter on its own. */
	struct store_usage u1 = {1, 20, 300, 4000, 50000}, u2 = {2, 1, 1, 6000, 1};
	CHECK_INT_EQ(f.st->ops->session_touch(f.st, in.id, 0, &u1, &err), 1);
	CHECK_INT_EQ(f.st->ops->session_touch(f.st, in.id, 0, &u2, &err), 1);
	CHECK_INT_EQ(f.st->ops->session_get(f.st, in.id, NULL, &s, &err), 1);
	CHECK_INT_EQ(s.exec_count, 3);
	CHECK_INT_EQ(s.cpu_ms, 21);
	CHECK_INT_EQ(s.vm_runtime_ms, 301);
	CHECK_INT_EQ(s.net_tx_bytes, 10000);
	CHECK_INT_EQ(s.net_rx_bytes, 50001);
	CHECK_INT_EQ(s.last_active_ms, 20000);
	store_session_release(&s);

	CHECK_INT_EQ(f.st->ops->session_delete(f.st, in.id, &err), 1);
	CHECK_INT_EQ(f.st->ops->session_get(f.st, in.id, NULL, &s, &err), 0);
	CHECK_INT_EQ(f.st->ops->session_delete(f.st, in.id, &err), 0);

	/* NULL metadata is stored as an empty object. */
	struct store_session empty =
	    session_make("ses_bbbbbbbbbbbbbbbbbbbb", "key_aaaaaaaaaaaaaaaa", 1, NULL);
	CHECK_INT_EQ(f.st->ops->session_insert(f.st, &empty, NULL, &err), 0);
	CHECK_INT_EQ(f.st->ops->session_get(f.st, empty.id, NULL, &s, &err), 1);
	CHECK_STR_EQ(s.metadata, "{}");
	store_session_release(&s);
	fixture_close(&f);
}

STORE_TEST(session_insert_rejects_bad_input)
{
	struct fixture f;
	fixture_open_on(&f, backend);
	key_add(f.st, "key_aaaaaaaaaaaaaaaa", 1);
	struct bk_err err = {0};
	/* What metadata may hold is core's to say, for every store. */
	CHECK_INT_EQ(core__metadata_check("[1,2]", "metadata", &err), -1);
	CHECK_INT_EQ(err.kind, BK_E_INVALID);
	CHECK_STR_EQ(err.field, "metadata");
	CHECK_INT_EQ(core__metadata_check("{", "metadata", &err), -1);
	CHECK_INT_EQ(err.kind, BK_E_INVALID);
	CHECK_INT_EQ(core__metadata_check("{\"a\":1}", "metadata", &err), 0);

	/* An unknown key fails the foreign key, and the next insert works. */
	struct store_session s =
	    session_make("ses_aaaaaaaaaaaaaaaaaaaa", "key_zzzzzzzzzzzzzzzz", 1, "{}");
	CHECK_INT_EQ(f.st->ops->session_insert(f.st, &s, NULL, &err), -1);
	CHECK_MSG(strcasestr(err.msg, "foreign key") != NULL, "message: %s", err.msg);
	CHECK(msg_is_lower_case_start(err.msg));
	session_add(f.st, "ses_aaaaaaaaaaaaaaaaaaaa", "key_aaaaaaaaaaaaaaaa", 1, "{}");
	fixture_close(&f);
}

STORE_TEST(session_get_with_other_key_returns_0)
{
	struct fixture f;
	fixture_open_on(&f, backend);
	key_add(f.st, "key_aaaaaaaaaaaaaaaa", 1);
	key_add(f.st, "key_bbbbbbbbbbbbbbbb", 2);
	session_add(f.st, "ses_aaaaaaaaaaaaaaaaaaaa", "key_aaaaaaaaaaaaaaaa", 1, "{}");
	struct store_session s;
	struct bk_err err = {0};
	CHECK_INT_EQ(f.st->ops->session_get(f.st, "ses_aaaaaaaaaaaaaaaaaaaa",
					    "key_bbbbbbbbbbbbbbbb", &s, &err),
		     0);
	CHECK_INT_EQ(f.st->ops->session_get(f.st, "ses_aaaaaaaaaaaaaaaaaaaa",
					    "key_aaaaaaaaaaaaaaaa", &s, &err),
		     1);
	store_session_release(&s);
	CHECK_INT_EQ(f.st->ops->session_get(f.st, "ses_aaaaaaaaaaaaaaaaaaaa", NULL, &s, &err), 1);
	store_session_release(&s);
	fixture_close(&f);
}

STORE_TEST(session_duplicate_id_conflicts)
{
	struct fixture f;
	fixture_open_on(&f, backend);
	key_add(f.st, "key_aaaaaaaaaaaaaaaa", 1);
	session_add(f.st, "ses_aaaaaaaaaaaaaaaaaaaa", "key_aaaaaaaaaaaaaaaa", 1, "{\"v\":1}");
	struct store_session s =
	    session_make("ses_aaaaaaaaaaaaaaaaaaaa", "key_aaaaaaaaaaaaaaaa", 2, "{\"v\":2}");
	struct bk_err err = {0};
	CHECK_INT_EQ(f.st->ops->session_insert(f.st, &s, NULL, &err), -1);
	CHECK_INT_EQ(err.kind, BK_E_CONFLICT);
	CHECK_MSG(strstr(err.msg, "ses_aaaaaaaaaaaaaaaaaaaa") != NULL, "message: %s", err.msg);
	CHECK(msg_is_lower_case_start(err.msg));

	/* The original is untouched. */
	struct store_session got;
	CHECK_INT_EQ(f.st->ops->session_get(f.st, s.id, NULL, &got, &err), 1);
	CHECK_STR_EQ(got.metadata, "{\"v\":1}");
	store_session_release(&got);
	session_add(f.st, "ses_bbbbbbbbbbbbbbbbbbbb", "key_aaaaaaaaaaaaaaaa", 3, "{}");
	fixture_close(&f);
}

/* core's containment, as core_session_list() gives it to a store. */
static bool metadata_match(void *filter, const struct store_session *s)
{
	return core__metadata_match(filter, s->metadata);
}

static void list_ids(struct store *st, const char *key_id, const char *filter, int limit,
		     int offset, const char *want, int64_t want_total)
{
	struct store_session *v = NULL;
	size_t n = 99;
	int64_t total = -1;
	struct bk_err err = {0};
	/* The containment filter is core's, applied by the store. */
	struct core_metadata_filter *mf = NULL;
	if (filter)
		CHECK_MSG(core__metadata_filter_new(filter, &mf, &err) == 0, "%s", err.msg);
	int rc = st->ops->session_list(st, key_id, 0, mf ? metadata_match : NULL, mf, limit, offset,
				       &v, &n, &total, &err);
	core__metadata_filter_free(mf);
	CHECK_MSG(rc == 0, "list %s: %s", filter ? filter : "(null)", err.msg);
	char got[512] = "";
	for (size_t i = 0; i < n; i++) {
		/* Compare by the ids' last character to keep expectations short. */
		size_t len = strlen(got);
		snprintf(got + len, sizeof(got) - len, "%s%c", i ? "," : "",
			 v[i].id[strlen(v[i].id) - 1]);
		store_session_release(&v[i]);
	}
	CHECK_MSG(strcmp(got, want) == 0 && total == want_total,
		  "filter %s limit %d offset %d: got [%s] total %lld, want [%s] total %lld",
		  filter ? filter : "(null)", limit, offset, got, (long long)total, want,
		  (long long)want_total);
	if (n == 0)
		CHECK(v == NULL);
	free(v);
}

STORE_TEST(list_orders_pages_and_counts)
{
	struct fixture f;
	fixture_open_on(&f, backend);
	const char *k = "key_aaaaaaaaaaaaaaaa";
	key_add(f.st, k, 1);
	key_add(f.st, "key_bbbbbbbbbbbbbbbb", 2);
	session_add(f.st, "ses_0000000000000000000a", k, 1000, "{}");
	session_add(f.st, "ses_0000000000000000000b", k, 2000, "{}");
	session_add(f.st, "ses_0000000000000000000c", k, 2000, "{}");
	session_add(f.st, "ses_0000000000000000000d", k, 3000, "{}");
	session_add(f.st, "ses_0000000000000000000x", "key_bbbbbbbbbbbbbbbb", 2500, "{}");

	list_ids(f.st, k, NULL, 50, 0, "d,c,b,a", 4);
	list_ids(f.st, k, NULL, 2, 0, "d,c", 4);
	list_ids(f.st, k, NULL, 2, 1, "c,b", 4);
	list_ids(f.st, k, NULL, 2, 3, "a", 4);
	list_ids(f.st, k, NULL, 2, 4, "", 4);
	list_ids(f.st, k, NULL, 0, 0, "", 4);
	list_ids(f.st, k, NULL, 50, 100, "", 4);
	list_ids(f.st, "key_bbbbbbbbbbbbbbbb", NULL, 50, 0, "x", 1);
	list_ids(f.st, "key_nonenonenonenone", NULL, 50, 0, "", 0);

	struct store_session *v = NULL;
	size_t n = 0;
	int64_t total = 0;
	struct bk_err err = {0};
	CHECK_INT_EQ(f.st->ops->session_list(f.st, k, 0, NULL, NULL, -1, 0, &v, &n, &total, &err),
		     -1);
	CHECK_STR_EQ(err.field, "limit");
	CHECK_INT_EQ(f.st->ops->session_list(f.st, k, 0, NULL, NULL, 1, -1, &v, &n, &total, &err),
		     -1);
	CHECK_STR_EQ(err.field, "offset");

	/* list_all sees every key's sessions. */
	CHECK_INT_EQ(f.st->ops->session_list_all(f.st, &v, &n, &err), 0);
	CHECK_INT_EQ(n, 5);
	for (size_t i = 0; i < n; i++)
		store_session_release(&v[i]);
	free(v);
	fixture_close(&f);
}

STORE_TEST(list_filters_by_metadata_containment)
{
	struct fixture f;
	fixture_open_on(&f, backend);
	const char *k = "key_aaaaaaaaaaaaaaaa";
	key_add(f.st, k, 1);
	session_add(f.st, "ses_0000000000000000000a", k, 1000,
		    "{\"env\":\"prod\",\"owner\":{\"name\":\"ann\",\"team\":{\"id\":7,\"x\":1}},"
		    "\"tags\":[\"x\",\"y\"],\"n\":1,\"ok\":true}");
	session_add(f.st, "ses_0000000000000000000b", k, 2000,
		    "{\"env\":\"dev\",\"owner\":{\"name\":\"bob\"},\"tags\":[\"x\"],\"n\":null}");
	session_add(f.st, "ses_0000000000000000000c", k, 3000, "{}");

	list_ids(f.st, k, "{}", 50, 0, "c,b,a", 3);
	list_ids(f.st, k, "{\"env\":\"prod\"}", 50, 0, "a", 1);
	list_ids(f.st, k, " { \"env\" : \"dev\" } ", 50, 0, "b", 1);
	list_ids(f.st, k, "{\"env\":\"staging\"}", 50, 0, "", 0);
	/* Nested objects: containment, at any depth. */
	list_ids(f.st, k, "{\"owner\":{\"name\":\"ann\"}}", 50, 0, "a", 1);
	list_ids(f.st, k, "{\"owner\":{\"team\":{\"id\":7}}}", 50, 0, "a", 1);
	list_ids(f.st, k, "{\"owner\":{\"team\":{\"id\":8}}}", 50, 0, "", 0);
	list_ids(f.st, k, "{\"owner\":{}}", 50, 0, "b,a", 2);
	list_ids(f.st, k, "{\"owner\":\"ann\"}", 50, 0, "", 0);
	list_ids(f.st, k, "{\"owner\":{\"name\":\"ann\",\"age\":3}}", 50, 0, "", 0);
	/* Arrays must be equal, order included. */
	list_ids(f.st, k, "{\"tags\":[\"x\"]}", 50, 0, "b", 1);
	list_ids(f.st, k, "{\"tags\":[\"x\",\"y\"]}", 50, 0, "a", 1);
	list_ids(f.st, k, "{\"tags\":[\"y\",\"x\"]}", 50, 0, "", 0);
	list_ids(f.st, k, "{\"tags\":\"x\"}", 50, 0, "", 0);
	/* Scalars: same type and value. */
	list_ids(f.st, k, "{\"n\":1}", 50, 0, "a", 1);
	list_ids(f.st, k, "{\"n\":\"1\"}", 50, 0, "", 0);
	list_ids(f.st, k, "{\"n\":null}", 50, 0, "b", 1);
	list_ids(f.st, k, "{\"ok\":true}", 50, 0, "a", 1);
	list_ids(f.st, k, "{\"missing\":null}", 50, 0, "", 0);
	list_ids(f.st, k, "{\"env\":\"prod\",\"n\":2}", 50, 0, "", 0);
	/* Paging applies after filtering; total counts every match. */
	list_ids(f.st, k, "{\"tags\":[\"x\"]}", 0, 0, "", 1);
	list_ids(f.st, k, "{\"owner\":{}}", 1, 0, "b", 2);
	list_ids(f.st, k, "{\"owner\":{}}", 1, 1, "a", 2);
	list_ids(f.st, k, "{\"owner\":{}}", 1, 2, "", 2);
	fixture_close(&f);
}

TEST(list_rejects_invalid_filter)
{
	struct fixture f;
	fixture_open(&f);
	key_add(f.st, "key_aaaaaaaaaaaaaaaa", 1);
	session_add(f.st, "ses_0000000000000000000a", "key_aaaaaaaaaaaaaaaa", 1, "{}");
	const char *bad[] = {"",     "{",	    "{\"a\":}",		"[1]", "5", "\"x\"",
			     "null", "{\"a\":1} x", "{\"a\":1,\"a\":2}"};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		struct core_metadata_filter *mf = (struct core_metadata_filter *)&f;
		struct bk_err err = {0};
		int rc = core__metadata_filter_new(bad[i], &mf, &err);
		CHECK_MSG(rc == -1, "filter '%s' accepted", bad[i]);
		CHECK_INT_EQ(err.kind, BK_E_INVALID);
		CHECK_STR_EQ(err.field, "metadata");
		CHECK(msg_is_lower_case_start(err.msg));
		CHECK(mf == (struct core_metadata_filter *)&f);
	}
	fixture_close(&f);
}

STORE_TEST(count_respects_expiry)
{
	struct fixture f;
	fixture_open_on(&f, backend);
	const char *k = "key_aaaaaaaaaaaaaaaa";
	key_add(f.st, k, 1);
	key_add(f.st, "key_bbbbbbbbbbbbbbbb", 2);
	int64_t now = 1700000000000;
	const int64_t expiries[] = {now - 1000, now, now + 1, now + 60000};
	for (size_t i = 0; i < ARRAY_SIZE(expiries); i++) {
		char id[32];
		snprintf(id, sizeof(id), "ses_%020zu", i);
		struct store_session s = session_make(id, k, now - 5000, "{}");
		s.expires_ms = expiries[i];
		struct bk_err err = {0};
		CHECK_MSG(f.st->ops->session_insert(f.st, &s, NULL, &err) == 0, "%s", err.msg);
	}
	session_add(f.st, "ses_xxxxxxxxxxxxxxxxxxxx", "key_bbbbbbbbbbbbbbbb", now, "{}");

	int64_t count = -1;
	struct bk_err err = {0};
	CHECK_INT_EQ(f.st->ops->session_count(f.st, k, now, false, &count, &err), 0);
	CHECK_INT_EQ(count, 2);
	CHECK_INT_EQ(f.st->ops->session_count(f.st, k, now - 2000, false, &count, &err), 0);
	CHECK_INT_EQ(count, 4);
	CHECK_INT_EQ(f.st->ops->session_count(f.st, k, now + 60000, false, &count, &err), 0);
	CHECK_INT_EQ(count, 0);
	CHECK_INT_EQ(
	    f.st->ops->session_count(f.st, "key_nonenonenonenone", now, false, &count, &err), 0);
	CHECK_INT_EQ(count, 0);
	/* A list leaves out what has expired, in the page and in the total. */
	struct store_session *v = NULL;
	size_t n = 0;
	int64_t total = -1;
	CHECK_INT_EQ(f.st->ops->session_list(f.st, k, now, NULL, NULL, 10, 0, &v, &n, &total, &err),
		     0);
	/* Expired records are found, soonest first, for the reaper. */
	char ids[8][32];
	size_t ne = 0;
	CHECK_INT_EQ(f.st->ops->session_due(f.st, now, ids, 8, &ne, &err), 0);
	CHECK_INT_EQ(ne, 2);
	CHECK_STR_EQ(ids[0], "ses_00000000000000000000");
	CHECK_STR_EQ(ids[1], "ses_00000000000000000001");
	CHECK_INT_EQ(f.st->ops->session_due(f.st, now, ids, 1, &ne, &err), 0);
	CHECK_INT_EQ(ne, 1);
	CHECK_INT_EQ(n, 2);
	CHECK_INT_EQ(total, 2);
	for (size_t i = 0; i < n; i++) {
		CHECK(v[i].expires_ms > now);
		store_session_release(&v[i]);
	}
	free(v);
	fixture_close(&f);
}

#define THREADS 8
#define PER_THREAD 25

struct worker {
	struct store *st;
	int index;
	char msg[512];
};

static void *worker_run(void *arg)
{
	struct worker *w = arg;
	for (int i = 0; i < PER_THREAD; i++) {
		char id[32];
		snprintf(id, sizeof(id), "ses_t%02dn%014d", w->index, i);
		struct store_session s = session_make(id, "key_aaaaaaaaaaaaaaaa", i, "{}");
		struct bk_err err = {0};
		if (w->st->ops->session_insert(w->st, &s, NULL, &err) < 0) {
			snprintf(w->msg, sizeof(w->msg), "%s", err.msg);
			return NULL;
		}
	}
	return NULL;
}

STORE_TEST(concurrent_inserts_from_two_connections)
{
	struct fixture f;
	fixture_open_on(&f, backend);
	key_add(f.st, "key_aaaaaaaaaaaaaaaa", 1);
	/* Half the threads share a second connection to the same file, as a
	 * second process would: every insert must land. */
	struct store *other = NULL;
	struct bk_err err = {0};
	CHECK_MSG(store_open(f.uri, &other, &err) == 0, "%s", err.msg);

	struct worker w[THREADS];
	pthread_t t[THREADS];
	for (int i = 0; i < THREADS; i++) {
		w[i] = (struct worker){.st = i % 2 ? other : f.st, .index = i};
		CHECK(pthread_create(&t[i], NULL, worker_run, &w[i]) == 0);
	}
	for (int i = 0; i < THREADS; i++)
		CHECK(pthread_join(t[i], NULL) == 0);

	for (int i = 0; i < THREADS; i++)
		CHECK_MSG(w[i].msg[0] == '\0', "thread %d: %s", i, w[i].msg);
	int64_t count = 0;
	CHECK_INT_EQ(f.st->ops->session_count(f.st, "key_aaaaaaaaaaaaaaaa", 0, false, &count, &err),
		     0);
	CHECK_INT_EQ(count, THREADS * PER_THREAD);
	other->ops->close(other);
	fixture_close(&f);
}

TEST(migration_from_version_2_keeps_sessions)
{
	struct fixture f;
	snprintf(f.dir, sizeof(f.dir), "%s/t-XXXXXX", base_dir);
	CHECK(mkdtemp(f.dir) != NULL);
	snprintf(f.path, sizeof(f.path), "%s/bunker.db", f.dir);
	/* A database as version 2 left it: sessions with host id slots. */
	sqlite3 *db = NULL;
	CHECK(sqlite3_open(f.path, &db) == SQLITE_OK);
	const char *v2 =
	    "CREATE TABLE keys (id TEXT PRIMARY KEY, hash BLOB NOT NULL UNIQUE, plan TEXT NOT "
	    "NULL, created_ms INTEGER NOT NULL, revoked_ms INTEGER NOT NULL DEFAULT 0, overrides "
	    "TEXT NOT NULL DEFAULT '{}');"
	    "CREATE TABLE sessions (id TEXT PRIMARY KEY, key_id TEXT NOT NULL REFERENCES "
	    "keys(id), created_ms INTEGER NOT NULL, expires_ms INTEGER NOT NULL, "
	    "last_active_ms INTEGER NOT NULL, state INTEGER NOT NULL, metadata TEXT NOT NULL, "
	    "memory_mb INTEGER NOT NULL, cpu REAL NOT NULL, timeout_s INTEGER NOT NULL, "
	    "disk_mb INTEGER NOT NULL, uid_slot INTEGER NOT NULL UNIQUE CHECK (uid_slot >= 0));"
	    "CREATE INDEX sessions_key_created ON sessions (key_id, created_ms);"
	    "CREATE TABLE idempotency (key_id TEXT NOT NULL REFERENCES keys(id), idem_key TEXT "
	    "NOT NULL, request_hash BLOB NOT NULL, status INTEGER NOT NULL, content_type TEXT NOT "
	    "NULL, body BLOB NOT NULL, created_ms INTEGER NOT NULL, PRIMARY KEY (key_id, "
	    "idem_key));"
	    "INSERT INTO keys (id, hash, plan, created_ms) VALUES ('key_aaaaaaaaaaaaaaaa', "
	    "x'00', 'paid', 1);"
	    "INSERT INTO sessions VALUES ('ses_aaaaaaaaaaaaaaaaaaaa', 'key_aaaaaaaaaaaaaaaa', 10, "
	    "5000, 20, 2, '{\"k\":1}', 512, 0.5, 30, 256, 7);"
	    "PRAGMA user_version = 2;";
	CHECK_MSG(sqlite3_exec(db, v2, NULL, NULL, NULL) == SQLITE_OK, "%s", sqlite3_errmsg(db));
	sqlite3_close(db);

	struct bk_err err = {0};
	CHECK_MSG(store_open(f.path, &f.st, &err) == 0, "%s", err.msg);
	CHECK_INT_EQ(raw_int(f.path, "PRAGMA user_version"), STORE_SCHEMA_VERSION);
	struct store_session s;
	CHECK_INT_EQ(f.st->ops->session_get(f.st, "ses_aaaaaaaaaaaaaaaaaaaa", NULL, &s, &err), 1);
	CHECK_STR_EQ(s.metadata, "{\"k\":1}");
	CHECK_INT_EQ(s.state, STORE_SESSION_DEEP_SLEEP);
	CHECK_INT_EQ(s.expires_ms, 5000);
	CHECK_INT_EQ(s.disk_mb, 256);
	store_session_release(&s);
	CHECK_INT_EQ(raw_int(f.path, "SELECT COUNT(*) FROM sqlite_master WHERE name = "
				     "'sessions_expires'"),
		     1);
	/* The key's counts start from what was there: one session, with a
	 * VM (as every session before version 4). */
	CHECK_INT_EQ(raw_int(f.path, "SELECT sessions_all FROM keys"), 1);
	CHECK_INT_EQ(raw_int(f.path, "SELECT sessions_vm FROM keys"), 1);
	/* And it takes new sessions, with no slot to give. */
	session_add(f.st, "ses_bbbbbbbbbbbbbbbbbbbb", "key_aaaaaaaaaaaaaaaa", 30, "{}");
	CHECK_INT_EQ(raw_int(f.path, "SELECT sessions_all FROM keys"), 2);
	CHECK_INT_EQ(raw_int(f.path, "SELECT sessions_vm FROM keys"), 1);
	fixture_close(&f);
}

/* Live sessions of k at now_ms, as a cap check and a list's total count
 * them (from the key's counts). */
static int64_t live(struct store *st, const char *k, int64_t now_ms, bool holding)
{
	int64_t n = -1;
	struct bk_err err = {0};
	CHECK_MSG(st->ops->session_count(st, k, now_ms, holding, &n, &err) == 0, "%s", err.msg);
	return n;
}

/* The counts a create is admitted by and a list's total follow every
 * insert, VM change and delete; a key at its cap by its records still
 * admits a create where some of them have expired unreaped. */
STORE_TEST(cap_counts_follow_every_change)
{
	struct fixture f;
	fixture_open_on(&f, backend);
	const char *k = "key_aaaaaaaaaaaaaaaa";
	key_add(f.st, k, 1);
	key_add(f.st, "key_bbbbbbbbbbbbbbbb", 2);
	session_add(f.st, "ses_cntother00000000001", "key_bbbbbbbbbbbbbbbb", 1000, "{}");
	struct bk_err err = {0};
	const char *ids[] = {"ses_cnt00000000000000001", "ses_cnt00000000000000002",
			     "ses_cnt00000000000000003"};
	/* Two sessions holding a VM, expired at 2000. */
	for (int i = 0; i < 2; i++) {
		struct store_session s = session_make(ids[i], k, 1000, "{}");
		s.vm_state = STORE_VM_RUNNING;
		s.expires_ms = 2000;
		CHECK_MSG(f.st->ops->session_insert(f.st, &s, NULL, &err) == 0, "%s", err.msg);
	}
	CHECK_INT_EQ(live(f.st, k, 1500, true), 2);
	CHECK_INT_EQ(live(f.st, k, 1500, false), 2);
	CHECK_INT_EQ(live(f.st, k, 3000, false), 0);
	/* At its cap of 2 by its records, under it by what is alive at 3000. */
	struct store_cap cap = {.max = 2, .holding = true, .now_ms = 3000};
	struct store_session s = session_make(ids[2], k, 3000, "{}");
	s.vm_state = STORE_VM_RUNNING;
	CHECK_MSG(f.st->ops->session_insert(f.st, &s, &cap, &err) == 0, "%s", err.msg);
	/* Alive at 1500: the third is one too many. */
	cap.now_ms = 1500;
	s = session_make("ses_cnt00000000000000004", k, 1500, "{}");
	s.vm_state = STORE_VM_RUNNING;
	CHECK_INT_EQ(f.st->ops->session_insert(f.st, &s, &cap, &err), -1);
	CHECK_INT_EQ(err.kind, BK_E_LIMIT);
	CHECK_INT_EQ(live(f.st, k, 1500, true), 3);
	/* The list's total is the same count. */
	struct store_session *rows = NULL;
	size_t n = 0;
	int64_t total = 0;
	CHECK_MSG(
	    f.st->ops->session_list(f.st, k, 3000, NULL, NULL, 1, 0, &rows, &n, &total, &err) == 0,
	    "%s", err.msg);
	CHECK_INT_EQ(n, 1);
	CHECK_INT_EQ(total, 1);
	for (size_t i = 0; i < n; i++)
		store_session_release(&rows[i]);
	free(rows);
	/* A VM ended leaves the VM count, not the other. */
	CHECK_INT_EQ(f.st->ops->session_set_vm(f.st, ids[0], STORE_VM_TERMINATED, 1000, 0,
					       STORE_SESSION_DEEP_SLEEP, NULL, &err),
		     1);
	CHECK_INT_EQ(live(f.st, k, 1500, true), 2);
	CHECK_INT_EQ(live(f.st, k, 1500, false), 3);
	for (size_t i = 0; i < ARRAY_SIZE(ids); i++)
		CHECK_INT_EQ(f.st->ops->session_delete(f.st, ids[i], &err), 1);
	CHECK_INT_EQ(live(f.st, k, 0, false), 0);
	CHECK_INT_EQ(live(f.st, k, 0, true), 0);
	CHECK_INT_EQ(live(f.st, "key_bbbbbbbbbbbbbbbb", 0, false), 1);
	if (backend == BACKEND_SQLITE) {
		CHECK_INT_EQ(raw_int(f.path, "SELECT SUM(sessions_all) FROM keys"), 1);
		CHECK_INT_EQ(raw_int(f.path, "SELECT SUM(sessions_vm) FROM keys"), 0);
	}
	fixture_close(&f);
}

/* ---- what must hold across every process and node sharing a store ---- */

#define CAP 10

struct capper {
	struct store *st;
	int index;
	int inserted, refused;
	char msg[512];
};

static void *capper_run(void *arg)
{
	struct capper *c = arg;
	struct store_cap cap = {.max = CAP, .holding = false, .now_ms = 0};
	for (int i = 0; i < PER_THREAD; i++) {
		char id[32];
		snprintf(id, sizeof(id), "ses_c%02dn%014d", c->index, i);
		struct store_session s = session_make(id, "key_aaaaaaaaaaaaaaaa", i + 1, "{}");
		struct bk_err err = {0};
		if (c->st->ops->session_insert(c->st, &s, &cap, &err) == 0)
			c->inserted++;
		else if (err.kind == BK_E_LIMIT)
			c->refused++;
		else {
			snprintf(c->msg, sizeof(c->msg), "%s", err.msg);
			return NULL;
		}
	}
	return NULL;
}

STORE_TEST(cap_holds_across_connections)
{
	struct fixture f;
	fixture_open_on(&f, backend);
	key_add(f.st, "key_aaaaaaaaaaaaaaaa", 1);
	/* Half the threads on a second connection, as a second node would
	 * be: together they insert exactly CAP sessions, never one more. */
	struct store *other = NULL;
	struct bk_err err = {0};
	CHECK_MSG(store_open(f.uri, &other, &err) == 0, "%s", err.msg);
	struct capper c[THREADS];
	pthread_t t[THREADS];
	for (int i = 0; i < THREADS; i++) {
		c[i] = (struct capper){.st = i % 2 ? other : f.st, .index = i};
		CHECK(pthread_create(&t[i], NULL, capper_run, &c[i]) == 0);
	}
	int inserted = 0, refused = 0;
	for (int i = 0; i < THREADS; i++) {
		CHECK(pthread_join(t[i], NULL) == 0);
		CHECK_MSG(c[i].msg[0] == '\0', "thread %d: %s", i, c[i].msg);
		inserted += c[i].inserted;
		refused += c[i].refused;
	}
	CHECK_INT_EQ(inserted, CAP);
	CHECK_INT_EQ(refused, THREADS * PER_THREAD - CAP);
	int64_t count = 0;
	CHECK_INT_EQ(f.st->ops->session_count(f.st, "key_aaaaaaaaaaaaaaaa", 0, false, &count, &err),
		     0);
	CHECK_INT_EQ(count, CAP);

	/* A VM's spawn takes the cap of sessions holding one; the session's
	 * own record does not count against itself. Expired ones do not. */
	key_add(f.st, "key_bbbbbbbbbbbbbbbb", 2);
	const char *ids[] = {"ses_vm000000000000000001", "ses_vm000000000000000002",
			     "ses_vm000000000000000003"};
	for (size_t i = 0; i < ARRAY_SIZE(ids); i++) {
		struct store_session s = session_make(ids[i], "key_bbbbbbbbbbbbbbbb", 100, "{}");
		s.vm_state = STORE_VM_NONE;
		CHECK_MSG(f.st->ops->session_insert(f.st, &s, NULL, &err) == 0, "%s", err.msg);
	}
	struct store_cap cap = {.max = 2, .holding = true, .now_ms = 1000};
	CHECK_INT_EQ(f.st->ops->session_set_vm(f.st, ids[0], STORE_VM_RUNNING, 1000, 0,
					       STORE_SESSION_ACTIVE, &cap, &err),
		     1);
	CHECK_INT_EQ(other->ops->session_set_vm(other, ids[1], STORE_VM_RUNNING, 1000, 0,
						STORE_SESSION_ACTIVE, &cap, &err),
		     1);
	/* Again on a session that holds one already: itself is not counted. */
	CHECK_INT_EQ(f.st->ops->session_set_vm(f.st, ids[1], STORE_VM_RUNNING, 1000, 0,
					       STORE_SESSION_ACTIVE, &cap, &err),
		     1);
	err = (struct bk_err){0};
	CHECK_INT_EQ(other->ops->session_set_vm(other, ids[2], STORE_VM_RUNNING, 1000, 0,
						STORE_SESSION_ACTIVE, &cap, &err),
		     -1);
	CHECK_INT_EQ(err.kind, BK_E_LIMIT);
	struct store_session got;
	CHECK_INT_EQ(f.st->ops->session_get(f.st, ids[2], NULL, &got, &err), 1);
	CHECK_INT_EQ(got.vm_state, STORE_VM_NONE);
	store_session_release(&got);
	/* A VM ended frees its place; a missing session is 0. */
	CHECK_INT_EQ(f.st->ops->session_set_vm(f.st, ids[0], STORE_VM_TERMINATED, 1000, 0,
					       STORE_SESSION_DEEP_SLEEP, NULL, &err),
		     1);
	CHECK_INT_EQ(other->ops->session_set_vm(other, ids[2], STORE_VM_RUNNING, 1000, 0,
						STORE_SESSION_ACTIVE, &cap, &err),
		     1);
	CHECK_INT_EQ(f.st->ops->session_set_vm(f.st, "ses_nonenonenonenonenone", STORE_VM_RUNNING,
					       1000, 0, STORE_SESSION_ACTIVE, &cap, &err),
		     0);
	other->ops->close(other);
	fixture_close(&f);
}

STORE_TEST(idem_claim_is_exclusive)
{
	struct fixture f;
	fixture_open_on(&f, backend);
	key_add(f.st, "key_aaaaaaaaaaaaaaaa", 1);
	struct store *other = NULL;
	struct bk_err err = {0};
	CHECK_MSG(store_open(f.uri, &other, &err) == 0, "%s", err.msg);
	const char *k = "key_aaaaaaaaaaaaaaaa";
	CHECK_INT_EQ(f.st->ops->idem_claim(f.st, k, "req-1", 1000, 5000, &err), 1);
	/* Held, from the other connection too, until it expires. */
	CHECK_INT_EQ(other->ops->idem_claim(other, k, "req-1", 1001, 6000, &err), 0);
	CHECK_INT_EQ(other->ops->idem_claim(other, k, "req-1", 4999, 6000, &err), 0);
	/* Another key of the caller's, or another API key: independent. */
	CHECK_INT_EQ(other->ops->idem_claim(other, k, "req-2", 1001, 6000, &err), 1);
	CHECK_INT_EQ(
	    other->ops->idem_claim(other, "key_bbbbbbbbbbbbbbbb", "req-1", 1001, 6000, &err), 1);
	/* Released by its own claim only. */
	CHECK_INT_EQ(other->ops->idem_release(other, k, "req-1", 1001, &err), 0);
	CHECK_INT_EQ(f.st->ops->idem_release(f.st, k, "req-1", 1000, &err), 1);
	CHECK_INT_EQ(other->ops->idem_claim(other, k, "req-1", 2000, 3000, &err), 1);
	/* Expired: taken over, and the old holder's release leaves the new. */
	CHECK_INT_EQ(f.st->ops->idem_claim(f.st, k, "req-1", 3000, 9000, &err), 1);
	CHECK_INT_EQ(other->ops->idem_release(other, k, "req-1", 2000, &err), 0);
	CHECK_INT_EQ(other->ops->idem_claim(other, k, "req-1", 3001, 9000, &err), 0);

	/* Answers: bodies with any bytes, usage, purge. */
	struct store_idem r = {.status = 201, .body = "a\0b", .body_len = 3, .created_ms = 5000};
	snprintf(r.key_id, sizeof(r.key_id), "%s", k);
	snprintf(r.idem_key, sizeof(r.idem_key), "req-1");
	snprintf(r.content_type, sizeof(r.content_type), "application/json");
	hash_of(r.request_hash, 9);
	CHECK_MSG(f.st->ops->idem_put(f.st, &r, &err) == 0, "%s", err.msg);
	r.created_ms = 6000;
	CHECK_MSG(other->ops->idem_put(other, &r, &err) == 0, "replace: %s", err.msg);
	struct store_idem got;
	CHECK_INT_EQ(other->ops->idem_get(other, k, "req-1", 6000, &got, &err), 1);
	CHECK_INT_EQ(got.status, 201);
	CHECK_INT_EQ(got.body_len, 3);
	CHECK(memcmp(got.body, "a\0b", 3) == 0);
	CHECK(memcmp(got.request_hash, r.request_hash, 32) == 0);
	CHECK_STR_EQ(got.content_type, "application/json");
	CHECK_INT_EQ(got.created_ms, 6000);
	store_idem_release(&got);
	CHECK_INT_EQ(other->ops->idem_get(other, k, "req-1", 6001, &got, &err), 0);
	int64_t count = 0, bytes = 0;
	CHECK_INT_EQ(f.st->ops->idem_usage(f.st, k, 0, &count, &bytes, &err), 0);
	CHECK_INT_EQ(count, 1);
	CHECK_INT_EQ(bytes, 3);
	int64_t purged = 0;
	CHECK_INT_EQ(f.st->ops->idem_purge(f.st, 7000, &purged, &err), 0);
	CHECK_INT_EQ(purged, 1);
	CHECK_INT_EQ(f.st->ops->idem_get(f.st, k, "req-1", 0, &got, &err), 0);
	other->ops->close(other);
	fixture_close(&f);
}

STORE_TEST(tasks_round_trip)
{
	struct fixture f;
	fixture_open_on(&f, backend);
	const char *k = "key_aaaaaaaaaaaaaaaa";
	key_add(f.st, k, 1);
	struct store_task t = {.status = STORE_TASK_QUEUED, .created_ms = 1000};
	snprintf(t.id, sizeof(t.id), "00000000-0000-0000-0000-000000000001");
	snprintf(t.session_id, sizeof(t.session_id), "ses_aaaaaaaaaaaaaaaaaaaa");
	snprintf(t.key_id, sizeof(t.key_id), "%s", k);
	struct bk_err err = {0};
	CHECK_MSG(f.st->ops->task_insert(f.st, &t, &err) == 0, "%s", err.msg);
	CHECK_INT_EQ(f.st->ops->task_insert(f.st, &t, &err), -1);
	CHECK_INT_EQ(err.kind, BK_E_CONFLICT);
	struct store_task got;
	CHECK_INT_EQ(f.st->ops->task_get(f.st, t.id, "key_bbbbbbbbbbbbbbbb", &got, &err), 0);
	CHECK_INT_EQ(f.st->ops->task_get(f.st, t.id, NULL, &got, &err), 1);
	CHECK_INT_EQ(got.status, STORE_TASK_QUEUED);
	CHECK_INT_EQ(got.out_len, 0);
	CHECK_STR_EQ(got.out, "");
	store_task_release(&got);
	t.status = STORE_TASK_COMPLETED;
	t.out = "hi\n";
	t.out_len = 3;
	t.exit_code = 3;
	t.execution_ms = 12;
	t.finished_ms = 2000;
	CHECK_INT_EQ(f.st->ops->task_update(f.st, &t, &err), 1);
	CHECK_INT_EQ(f.st->ops->task_get(f.st, t.id, k, &got, &err), 1);
	CHECK_INT_EQ(got.status, STORE_TASK_COMPLETED);
	CHECK_STR_EQ(got.out, "hi\n");
	CHECK_INT_EQ(got.exit_code, 3);
	CHECK_INT_EQ(got.execution_ms, 12);
	CHECK_INT_EQ(got.finished_ms, 2000);
	store_task_release(&got);
	int64_t n = 0;
	CHECK_INT_EQ(f.st->ops->task_count(f.st, k, 1000, &n, &err), 0);
	CHECK_INT_EQ(n, 1);
	/* An unfinished task is failed by a start; old ones purged. */
	struct store_task u = t;
	snprintf(u.id, sizeof(u.id), "00000000-0000-0000-0000-000000000002");
	u.status = STORE_TASK_RUNNING;
	u.created_ms = 5000;
	CHECK_INT_EQ(f.st->ops->task_insert(f.st, &u, &err), 0);
	CHECK_INT_EQ(f.st->ops->task_purge(f.st, 2000, true, 6000, &err), 0);
	CHECK_INT_EQ(f.st->ops->task_get(f.st, t.id, NULL, &got, &err), 0);
	CHECK_INT_EQ(f.st->ops->task_get(f.st, u.id, NULL, &got, &err), 1);
	CHECK_INT_EQ(got.status, STORE_TASK_FAILED);
	CHECK_INT_EQ(got.finished_ms, 6000);
	CHECK_MSG(strstr(got.err, "restarted") != NULL, "stderr: %s", got.err);
	store_task_release(&got);
	/* Keys: listed oldest first, revoked once. */
	struct store_key *keys = NULL;
	size_t nk = 0;
	CHECK_INT_EQ(f.st->ops->key_list(f.st, &keys, &nk, &err), 0);
	CHECK_INT_EQ(nk, 1);
	CHECK_STR_EQ(keys[0].id, k);
	free(keys);
	CHECK_INT_EQ(f.st->ops->key_revoke(f.st, k, 7000, &err), 1);
	CHECK_INT_EQ(f.st->ops->key_revoke(f.st, k, 8000, &err), 1);
	CHECK_INT_EQ(f.st->ops->key_revoke(f.st, "key_nonenonenonenone", 8000, &err), 0);
	struct store_key key;
	uint8_t h[32];
	hash_of(h, 1);
	CHECK_INT_EQ(f.st->ops->key_find_by_hash(f.st, h, &key, &err), 1);
	CHECK_INT_EQ(key.revoked_ms, 7000);
	fixture_close(&f);
}

/* ---- PostgreSQL's own ---- */

static int64_t pg_raw_int(const char *uri, const char *sql)
{
	PGconn *c = PQconnectdb(uri);
	CHECK_MSG(PQstatus(c) == CONNECTION_OK, "%s", PQerrorMessage(c));
	PGresult *r = PQexec(c, sql);
	CHECK_MSG(PQresultStatus(r) == PGRES_TUPLES_OK || PQresultStatus(r) == PGRES_COMMAND_OK,
		  "%s: %s", sql, PQerrorMessage(c));
	int64_t v = PQntuples(r) > 0 ? strtoll(PQgetvalue(r, 0, 0), NULL, 10) : -1;
	PQclear(r);
	PQfinish(c);
	return v;
}

struct opener {
	const char *uri;
	char msg[512];
};

static void *opener_run(void *arg)
{
	struct opener *o = arg;
	struct store *st = NULL;
	struct bk_err err = {0};
	if (store_open(o->uri, &st, &err) < 0)
		snprintf(o->msg, sizeof(o->msg), "%s", err.msg);
	else
		st->ops->close(st);
	return NULL;
}

TEST(pg_migrations_serialized_and_versioned)
{
	PG_REQUIRE();
	char uri[256], msg[512];
	CHECK_MSG(pg_server_database("mig", uri, sizeof(uri), msg, sizeof(msg)) == 0, "%s", msg);
	/* Four nodes starting at once on an empty database: one creates the
	 * schema, the others wait on the advisory lock and find it done. */
	struct opener o[4];
	pthread_t t[4];
	for (int i = 0; i < 4; i++) {
		o[i] = (struct opener){.uri = uri};
		CHECK(pthread_create(&t[i], NULL, opener_run, &o[i]) == 0);
	}
	for (int i = 0; i < 4; i++) {
		CHECK(pthread_join(t[i], NULL) == 0);
		CHECK_MSG(o[i].msg[0] == '\0', "opener %d: %s", i, o[i].msg);
	}
	CHECK_INT_EQ(pg_raw_int(uri, "SELECT version FROM bunker_schema"), STORE_PG_SCHEMA_VERSION);
	CHECK_INT_EQ(pg_raw_int(uri, "SELECT count(*) FROM bunker_schema"), 1);
	CHECK_INT_EQ(pg_raw_int(uri, "SELECT count(*) FROM pg_tables WHERE tablename IN ('keys', "
				     "'sessions', 'idempotency', 'idem_claims', 'tasks', 'nodes', "
				     "'rate_windows')"),
		     7);
	/* A newer schema is refused, and left as it was. */
	pg_raw_int(uri, "UPDATE bunker_schema SET version = version + 1");
	struct store *st = (struct store *)&o[0];
	struct bk_err err = {0};
	CHECK_INT_EQ(store_open(uri, &st, &err), -1);
	CHECK(st == NULL);
	CHECK_MSG(strstr(err.msg, "newer") != NULL, "message: %s", err.msg);
	CHECK(msg_is_lower_case_start(err.msg));
	CHECK_INT_EQ(pg_raw_int(uri, "SELECT version FROM bunker_schema"),
		     STORE_PG_SCHEMA_VERSION + 1);
}

struct rate_racer {
	struct store *st;
	int n;
	int64_t counts[100];
};

static void *rate_racer_run(void *arg)
{
	struct rate_racer *r = arg;
	struct bk_err err = {0};
	for (int i = 0; i < r->n; i++) {
		int64_t start;
		if (r->st->ops->rate_count(r->st, "key_r", 1000000, 60000, &start, &r->counts[i],
					   &err) < 0)
			r->counts[i] = -1;
	}
	return NULL;
}

/* A key's rate-limit window as two nodes count it: opened by the first
 * request, counted by both, each count given once however the requests
 * interleave, reopened once its 60 s are over; a node whose clock is
 * behind the window's start counts in it. SQLite has none (one node
 * counts in memory). */
TEST(pg_rate_windows_are_counted_by_every_node)
{
	struct fixture f;
	fixture_open_on(&f, BACKEND_SQLITE);
	CHECK(f.st->ops->rate_count == NULL);
	fixture_close(&f);
	fixture_open_on(&f, BACKEND_PG);
	struct store *b = NULL;
	struct bk_err err = {0};
	CHECK_MSG(store_open(f.uri, &b, &err) == 0, "%s", err.msg);
	struct rate_racer r[4];
	pthread_t t[4];
	for (int i = 0; i < 4; i++) {
		r[i] = (struct rate_racer){.st = i % 2 ? b : f.st, .n = 100};
		CHECK(pthread_create(&t[i], NULL, rate_racer_run, &r[i]) == 0);
	}
	bool seen[401] = {false};
	for (int i = 0; i < 4; i++) {
		CHECK(pthread_join(t[i], NULL) == 0);
		for (int k = 0; k < r[i].n; k++) {
			int64_t c = r[i].counts[k];
			CHECK_MSG(c >= 1 && c <= 400 && !seen[c], "count %lld", (long long)c);
			seen[c] = true;
		}
	}
	int64_t start = 0, count = 0;
	/* Behind the window's start: still in it. */
	CHECK(b->ops->rate_count(b, "key_r", 995000, 60000, &start, &count, &err) == 0);
	CHECK_INT_EQ(start, 1000000);
	CHECK_INT_EQ(count, 401);
	CHECK(f.st->ops->rate_count(f.st, "key_r", 1059999, 60000, &start, &count, &err) == 0);
	CHECK_INT_EQ(count, 402);
	/* Over: a window of its own, from this request. */
	CHECK(b->ops->rate_count(b, "key_r", 1060000, 60000, &start, &count, &err) == 0);
	CHECK_INT_EQ(start, 1060000);
	CHECK_INT_EQ(count, 1);
	CHECK(f.st->ops->rate_count(f.st, "key_other", 1060001, 60000, &start, &count, &err) == 0);
	CHECK_INT_EQ(count, 1);
	b->ops->close(b);
	fixture_close(&f);
}

TEST(pg_unreachable_is_unavailable)
{
	struct store *st = NULL;
	struct bk_err err = {0};
	char uri[256];
	snprintf(uri, sizeof(uri), "postgres:///x?host=%s/nowhere&connect_timeout=2", base_dir);
	CHECK_INT_EQ(store_open(uri, &st, &err), -1);
	CHECK(st == NULL);
	CHECK_INT_EQ(err.kind, BK_E_UNAVAILABLE);
	CHECK_MSG(strstr(err.msg, "cannot connect to PostgreSQL") != NULL, "message: %s", err.msg);
}

/* The state of session id as st reads it. */
static void owner_of(struct store *st, const char *id, char *owner, size_t len, int64_t *epoch)
{
	struct store_session s;
	struct bk_err err = {0};
	CHECK_INT_EQ(st->ops->session_get(st, id, NULL, &s, &err), 1);
	snprintf(owner, len, "%s", s.owner);
	*epoch = s.epoch;
	store_session_release(&s);
}

STORE_TEST(nodes_own_sessions_and_claims_move_them)
{
	struct fixture f;
	fixture_open_on(&f, backend);
	struct store *b = NULL;
	struct bk_err err = {0};
	CHECK_MSG(store_open(f.uri, &b, &err) == 0, "%s", err.msg);
	snprintf(f.st->node, sizeof(f.st->node), "node-a");
	snprintf(b->node, sizeof(b->node), "node-b");
	const char *k = "key_aaaaaaaaaaaaaaaa";
	key_add(f.st, k, 1);
	struct store_session s = session_make("ses_aaaaaaaaaaaaaaaaaaaa", k, 100, "{}");
	snprintf(s.owner, sizeof(s.owner), "node-a");
	s.epoch = 1;
	CHECK_MSG(f.st->ops->session_insert(f.st, &s, NULL, &err) == 0, "%s", err.msg);
	s = session_make("ses_bbbbbbbbbbbbbbbbbbbb", k, 200, "{}");
	snprintf(s.owner, sizeof(s.owner), "node-b");
	s.epoch = 1;
	CHECK_MSG(b->ops->session_insert(b, &s, NULL, &err) == 0, "%s", err.msg);
	char owner[64];
	int64_t epoch;
	owner_of(b, "ses_aaaaaaaaaaaaaaaaaaaa", owner, sizeof(owner), &epoch);
	CHECK_STR_EQ(owner, "node-a");
	CHECK_INT_EQ(epoch, 1);

	/* A node's writes as owner reach only its own sessions. */
	CHECK_INT_EQ(
	    b->ops->session_set_state(b, "ses_aaaaaaaaaaaaaaaaaaaa", STORE_SESSION_IDLE, &err), 0);
	struct store_usage one_exec = {.execs = 1};
	CHECK_INT_EQ(b->ops->session_touch(b, "ses_aaaaaaaaaaaaaaaaaaaa", 5000, &one_exec, &err),
		     0);
	CHECK_INT_EQ(f.st->ops->session_set_state(f.st, "ses_aaaaaaaaaaaaaaaaaaaa",
						  STORE_SESSION_IDLE, &err),
		     1);

	/* A claim is a compare-and-set on owner and epoch: the first wins,
	 * a stale one changes nothing, and the old owner is fenced off. */
	CHECK_INT_EQ(b->ops->session_claim(b, "ses_aaaaaaaaaaaaaaaaaaaa", "node-a", 1, &err), 1);
	CHECK_INT_EQ(f.st->ops->session_claim(f.st, "ses_aaaaaaaaaaaaaaaaaaaa", "node-a", 1, &err),
		     0);
	owner_of(f.st, "ses_aaaaaaaaaaaaaaaaaaaa", owner, sizeof(owner), &epoch);
	CHECK_STR_EQ(owner, "node-b");
	CHECK_INT_EQ(epoch, 2);
	CHECK_INT_EQ(f.st->ops->session_set_vm(f.st, "ses_aaaaaaaaaaaaaaaaaaaa",
					       STORE_VM_TERMINATED, 0, 0, STORE_SESSION_DEEP_SLEEP,
					       NULL, &err),
		     0);
	CHECK_INT_EQ(
	    b->ops->session_set_state(b, "ses_aaaaaaaaaaaaaaaaaaaa", STORE_SESSION_ACTIVE, &err),
	    1);

	/* An unfinished task of node-b's session survives node-a's start. */
	struct store_task t = {.status = STORE_TASK_RUNNING, .created_ms = now_ms()};
	snprintf(t.id, sizeof(t.id), "00000000-0000-0000-0000-000000000001");
	snprintf(t.session_id, sizeof(t.session_id), "ses_bbbbbbbbbbbbbbbbbbbb");
	snprintf(t.key_id, sizeof(t.key_id), "%s", k);
	CHECK_MSG(f.st->ops->task_insert(f.st, &t, &err) == 0, "%s", err.msg);
	CHECK_INT_EQ(f.st->ops->task_purge(f.st, 0, true, now_ms(), &err), 0);
	struct store_task got;
	CHECK_INT_EQ(f.st->ops->task_get(f.st, t.id, NULL, &got, &err), 1);
	CHECK_INT_EQ(got.status, STORE_TASK_RUNNING);
	store_task_release(&got);
	CHECK_INT_EQ(b->ops->task_purge(b, 0, true, now_ms(), &err), 0);
	CHECK_INT_EQ(b->ops->task_get(b, t.id, NULL, &got, &err), 1);
	CHECK_INT_EQ(got.status, STORE_TASK_FAILED);
	store_task_release(&got);

	/* Recovery: on PostgreSQL a node lists its own (and takes those no
	 * node owns); a SQLite file has one node, which takes them all. */
	s = session_make("ses_cccccccccccccccccccc", k, 300, "{}");
	CHECK_MSG(f.st->ops->session_insert(f.st, &s, NULL, &err) == 0, "%s", err.msg);
	struct store_session *rows = NULL;
	size_t n = 0;
	CHECK_INT_EQ(f.st->ops->session_list_all(f.st, &rows, &n, &err), 0);
	CHECK_INT_EQ(n, backend == BACKEND_PG ? 1 : 3);
	if (backend == BACKEND_PG)
		CHECK_STR_EQ(rows[0].id, "ses_cccccccccccccccccccc");
	for (size_t i = 0; i < n; i++) {
		CHECK_STR_EQ(rows[i].owner, "node-a");
		store_session_release(&rows[i]);
	}
	free(rows);

	/* A release gives up a deep-sleeping session of this node's only;
	 * released, it is due to no one in particular and claimed from "". */
	/* Not asleep (PostgreSQL: node-b's), or not node-b's (SQLite). */
	CHECK_INT_EQ(b->ops->session_release(b, "ses_aaaaaaaaaaaaaaaaaaaa", &err), 0);
	CHECK_INT_EQ(b->ops->session_set_state(b, "ses_aaaaaaaaaaaaaaaaaaaa",
					       STORE_SESSION_DEEP_SLEEP, &err),
		     backend == BACKEND_PG ? 1 : 0);
	if (backend == BACKEND_PG) {
		CHECK_INT_EQ(f.st->ops->session_release(f.st, "ses_aaaaaaaaaaaaaaaaaaaa", &err), 0);
		CHECK_INT_EQ(b->ops->session_release(b, "ses_aaaaaaaaaaaaaaaaaaaa", &err), 1);
		owner_of(f.st, "ses_aaaaaaaaaaaaaaaaaaaa", owner, sizeof(owner), &epoch);
		CHECK_STR_EQ(owner, "");
		CHECK_INT_EQ(epoch, 3);
		/* A restart does not take a released session as its own. */
		CHECK_INT_EQ(f.st->ops->session_list_all(f.st, &rows, &n, &err), 0);
		CHECK_INT_EQ(n, 1);
		store_session_release(&rows[0]);
		free(rows);
		CHECK_INT_EQ(
		    f.st->ops->session_claim(f.st, "ses_aaaaaaaaaaaaaaaaaaaa", "", 2, &err), 0);
		CHECK_INT_EQ(
		    f.st->ops->session_claim(f.st, "ses_aaaaaaaaaaaaaaaaaaaa", "", 3, &err), 1);
		/* Another node's session is not deleted; a node's own is. */
		CHECK_INT_EQ(b->ops->session_delete(b, "ses_aaaaaaaaaaaaaaaaaaaa", &err), 0);
		CHECK_INT_EQ(f.st->ops->session_delete(f.st, "ses_aaaaaaaaaaaaaaaaaaaa", &err), 1);
	}

	/* Nodes: registered, renewed, listed with what they own, removed. */
	struct store_node na = {
	    .started_ms = 1, .renewed_ms = 2, .lease_ms = 3, .free_mb = 4, .awake = 5};
	snprintf(na.name, sizeof(na.name), "node-a");
	snprintf(na.advertise, sizeof(na.advertise), "http://127.0.0.1:1");
	CHECK_MSG(f.st->ops->node_renew(f.st, &na, &err) == 0, "%s", err.msg);
	na.lease_ms = 30;
	CHECK_MSG(f.st->ops->node_renew(f.st, &na, &err) == 0, "%s", err.msg);
	struct store_node nb = na;
	snprintf(nb.name, sizeof(nb.name), "node-b");
	CHECK_MSG(b->ops->node_renew(b, &nb, &err) == 0, "%s", err.msg);
	struct store_node *nodes = NULL;
	CHECK_INT_EQ(b->ops->node_list(b, 0, &nodes, &n, &err), 0);
	CHECK_INT_EQ(n, 2);
	CHECK_STR_EQ(nodes[0].name, "node-a");
	CHECK_STR_EQ(nodes[0].advertise, "http://127.0.0.1:1");
	CHECK_INT_EQ(nodes[0].lease_ms, 30);
	CHECK_INT_EQ(nodes[0].free_mb, 4);
	CHECK_INT_EQ(nodes[0].awake, 5);
	CHECK_INT_EQ(nodes[0].owned, backend == BACKEND_PG ? 1 : 3);
	CHECK_INT_EQ(nodes[1].owned, backend == BACKEND_PG ? 1 : 0);
	free(nodes);
	CHECK_INT_EQ(f.st->ops->node_remove(f.st, "node-a", &err), 0);
	CHECK_INT_EQ(b->ops->node_list(b, 0, &nodes, &n, &err), 0);
	CHECK_INT_EQ(n, 1);
	free(nodes);
	b->ops->close(b);
	fixture_close(&f);
}
