/* Unit tests of store/sqlite.c: each test opens a fresh database in its own
 * directory under one mkdtemp() base in /tmp, which the parent removes after
 * the last test (a failed test ends with _exit and cannot clean up itself).
 */
#include "../harness.h"

#include <ctype.h>
#include <pthread.h>
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
	return mkdtemp(base_dir) == NULL;
}

void harness_teardown(void)
{
	struct bk_err err = BK_ERR_INIT;
	if (rm_rf(base_dir, &err) < 0)
		fprintf(stderr, "%s\n", err.msg);
}

struct fixture {
	char dir[128];
	char path[192];
	struct store *st;
};

/* A fresh directory and a database in it, opened. */
static void fixture_open(struct fixture *f)
{
	snprintf(f->dir, sizeof(f->dir), "%s/t-XXXXXX", base_dir);
	CHECK(mkdtemp(f->dir) != NULL);
	snprintf(f->path, sizeof(f->path), "%s/bunker.db", f->dir);
	struct bk_err err = {0};
	int rc = store_open(f->path, &f->st, &err);
	CHECK_MSG(rc == 0, "store_open: %s", err.msg);
	CHECK(f->st != NULL);
}

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
	CHECK_MSG(st->ops->session_insert(st, &s, &err) == 0, "insert %s: %s", id, err.msg);
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

TEST(key_insert_and_find)
{
	struct fixture f;
	fixture_open(&f);
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

TEST(session_insert_get_delete_touch)
{
	struct fixture f;
	fixture_open(&f);
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
	CHECK_MSG(f.st->ops->session_insert(f.st, &in, &err) == 0, "%s", err.msg);

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
	CHECK_INT_EQ(f.st->ops->session_touch(f.st, in.id, 20000, 0, 0, 0, &err), 1);
	CHECK_INT_EQ(f.st->ops->session_touch(f.st, in.id, 15000, 0, 0, 0, &err), 1);
	CHECK_INT_EQ(f.st->ops->session_get(f.st, in.id, NULL, &s, &err), 1);
	CHECK_INT_EQ(s.last_active_ms, 20000);
	store_session_release(&s);
	CHECK_INT_EQ(f.st->ops->session_touch(f.st, "ses_nonenonenonenonenone", 1, 0, 0, 0, &err), 0);

	CHECK_INT_EQ(f.st->ops->session_delete(f.st, in.id, &err), 1);
	CHECK_INT_EQ(f.st->ops->session_get(f.st, in.id, NULL, &s, &err), 0);
	CHECK_INT_EQ(f.st->ops->session_delete(f.st, in.id, &err), 0);

	/* NULL metadata is stored as an empty object. */
	struct store_session empty =
	    session_make("ses_bbbbbbbbbbbbbbbbbbbb", "key_aaaaaaaaaaaaaaaa", 1, NULL);
	CHECK_INT_EQ(f.st->ops->session_insert(f.st, &empty, &err), 0);
	CHECK_INT_EQ(f.st->ops->session_get(f.st, empty.id, NULL, &s, &err), 1);
	CHECK_STR_EQ(s.metadata, "{}");
	store_session_release(&s);
	fixture_close(&f);
}

TEST(session_insert_rejects_bad_input)
{
	struct fixture f;
	fixture_open(&f);
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
	CHECK_INT_EQ(f.st->ops->session_insert(f.st, &s, &err), -1);
	CHECK_MSG(strstr(err.msg, "FOREIGN KEY") != NULL, "message: %s", err.msg);
	CHECK(msg_is_lower_case_start(err.msg));
	session_add(f.st, "ses_aaaaaaaaaaaaaaaaaaaa", "key_aaaaaaaaaaaaaaaa", 1, "{}");
	fixture_close(&f);
}

TEST(session_get_with_other_key_returns_0)
{
	struct fixture f;
	fixture_open(&f);
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

TEST(session_duplicate_id_conflicts)
{
	struct fixture f;
	fixture_open(&f);
	key_add(f.st, "key_aaaaaaaaaaaaaaaa", 1);
	session_add(f.st, "ses_aaaaaaaaaaaaaaaaaaaa", "key_aaaaaaaaaaaaaaaa", 1, "{\"v\":1}");
	struct store_session s =
	    session_make("ses_aaaaaaaaaaaaaaaaaaaa", "key_aaaaaaaaaaaaaaaa", 2, "{\"v\":2}");
	struct bk_err err = {0};
	CHECK_INT_EQ(f.st->ops->session_insert(f.st, &s, &err), -1);
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

TEST(list_orders_pages_and_counts)
{
	struct fixture f;
	fixture_open(&f);
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

TEST(list_filters_by_metadata_containment)
{
	struct fixture f;
	fixture_open(&f);
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

TEST(count_respects_expiry)
{
	struct fixture f;
	fixture_open(&f);
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
		CHECK_MSG(f.st->ops->session_insert(f.st, &s, &err) == 0, "%s", err.msg);
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
	CHECK_INT_EQ(f.st->ops->session_count(f.st, "key_nonenonenonenone", now, false, &count, &err), 0);
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
		if (w->st->ops->session_insert(w->st, &s, &err) < 0) {
			snprintf(w->msg, sizeof(w->msg), "%s", err.msg);
			return NULL;
		}
	}
	return NULL;
}

TEST(concurrent_inserts_from_two_connections)
{
	struct fixture f;
	fixture_open(&f);
	key_add(f.st, "key_aaaaaaaaaaaaaaaa", 1);
	/* Half the threads share a second connection to the same file, as a
	 * second process would: every insert must land. */
	struct store *other = NULL;
	struct bk_err err = {0};
	CHECK_MSG(store_open(f.path, &other, &err) == 0, "%s", err.msg);

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
	CHECK_INT_EQ(f.st->ops->session_count(f.st, "key_aaaaaaaaaaaaaaaa", 0, false, &count, &err), 0);
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
	/* And it takes new sessions, with no slot to give. */
	session_add(f.st, "ses_bbbbbbbbbbbbbbbbbbbb", "key_aaaaaaaaaaaaaaaa", 30, "{}");
	fixture_close(&f);
}
