/* Plans and keys: per-key overrides (core/plan.c), the keys table of schema
 * version 2 (store/sqlite.c) and the key functions of core/ on a store-only
 * core, as the CLI uses them. Each test works in its own directory under
 * one mkdtemp() base, removed by the parent at the end. */
#include <sodium.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../harness.h"
#include "core/core.h"
#include "store/store.h"
#include "util/util.h"

static char base_dir[] = "/tmp/bk-unit-keys-XXXXXX";

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

/* A fresh directory for one test. */
static void dir_new(char *out, size_t len)
{
	snprintf(out, len, "%s/t-XXXXXX", base_dir);
	CHECK(mkdtemp(out) != NULL);
}

/* ---- overrides ---- */

TEST(overrides_set_and_apply)
{
	struct plan_overrides ov = {0};
	struct bk_err err = BK_ERR_INIT;
	CHECK(plan_overrides_set(&ov, "max-sessions", "500", &err) == 0);
	CHECK(plan_overrides_set(&ov, "max_ttl", "3600", &err) == 0);
	CHECK(plan_overrides_set(&ov, "cpu-max", "0.5", &err) == 0);
	CHECK(plan_overrides_set(&ov, "max-file-size", "1048576", &err) == 0);
	CHECK(plan_overrides_set(&ov, "rpm", "50", &err) == 0);
	struct plan_limits l = *plan_lookup("paid");
	plan_overrides_apply(&ov, &l);
	CHECK_INT_EQ(l.max_sessions, 500);
	CHECK_INT_EQ(l.max_ttl_s, 3600);
	CHECK(l.cpu_max == 0.5);
	CHECK_INT_EQ(l.max_file_bytes, 1048576);
	CHECK_INT_EQ(l.requests_per_minute, 50);
	/* Untouched numbers keep the plan's. */
	CHECK_INT_EQ(l.memory_max_mb, plan_lookup("paid")->memory_max_mb);
	CHECK_INT_EQ(l.timeout_max_s, plan_lookup("paid")->timeout_max_s);
}

TEST(overrides_refuse_bad_values)
{
	struct plan_overrides ov = {0};
	struct bk_err err = BK_ERR_INIT;
	CHECK(plan_overrides_set(&ov, "max-sessions", "-1", &err) < 0);
	CHECK_INT_EQ(err.kind, BK_E_INVALID);
	CHECK_STR_EQ(err.field, "max_sessions");
	CHECK(plan_overrides_set(&ov, "max-sessions", "1.5", &err) < 0);
	CHECK(plan_overrides_set(&ov, "max-sessions", "12abc", &err) < 0);
	CHECK(plan_overrides_set(&ov, "max-sessions", "", &err) < 0);
	CHECK(plan_overrides_set(&ov, "rpm", "0", &err) < 0);
	CHECK(plan_overrides_set(&ov, "rpm", "1e300", &err) < 0);
	CHECK(plan_overrides_set(&ov, "cpu-max", "nan", &err) < 0);
	CHECK(plan_overrides_set(&ov, "cpu-max", "inf", &err) < 0);
	CHECK(plan_overrides_set(&ov, "max-ttl", "0", &err) < 0);
	CHECK(plan_overrides_set(&ov, "colour", "1", &err) < 0);
	CHECK_STR_EQ(err.field, "colour");
	CHECK_INT_EQ(ov.set, 0);
}

TEST(overrides_json_round_trip)
{
	struct plan_overrides ov = {0}, back;
	struct bk_err err = BK_ERR_INIT;
	char text[512];
	CHECK(plan_overrides_format(&ov, text, sizeof(text), &err) == 0);
	CHECK_STR_EQ(text, "{}");
	CHECK(plan_overrides_set(&ov, "memory-max", "2048", &err) == 0);
	CHECK(plan_overrides_set(&ov, "cpu-max", "0.5", &err) == 0);
	CHECK(plan_overrides_set(&ov, "timeout-default", "30", &err) == 0);
	CHECK(plan_overrides_format(&ov, text, sizeof(text), &err) == 0);
	CHECK(strstr(text, "\"memory_max\":2048") != NULL);
	CHECK(strstr(text, "\"cpu_max\":0.5") != NULL);
	CHECK(plan_overrides_parse(text, &back, &err) == 0);
	CHECK_INT_EQ(back.set, ov.set);
	CHECK_INT_EQ(back.values.memory_max_mb, 2048);
	CHECK(back.values.cpu_max == 0.5);
	CHECK_INT_EQ(back.values.timeout_default_s, 30);
	CHECK(plan_overrides_parse("", &back, &err) == 0);
	CHECK_INT_EQ(back.set, 0);
	CHECK(plan_overrides_parse("[1]", &back, &err) < 0);
	CHECK(plan_overrides_parse("{\"rpm\":\"5\"}", &back, &err) < 0);
	CHECK(plan_overrides_parse("{\"rpm\":-5}", &back, &err) < 0);
	char tiny[4];
	CHECK(plan_overrides_format(&ov, tiny, sizeof(tiny), &err) < 0);
}

/* ---- keys through core/, as the CLI does ---- */

static struct core *core_at(const char *dir)
{
	struct core *core = NULL;
	struct bk_err err = BK_ERR_INIT;
	char db[600];
	snprintf(db, sizeof(db), "%s/bunker.db", dir);
	struct store *st;
	CHECK_MSG(store_open(db, &st, &err) == 0, "store_open: %s", err.msg);
	CHECK_MSG(core_open_store(st, &core, &err) == 0, "core_open_store: %s", err.msg);
	return core;
}

TEST(key_overrides_reach_auth)
{
	char dir[128];
	dir_new(dir, sizeof(dir));
	struct core *core = core_at(dir);
	struct plan_overrides ov = {0};
	struct bk_err err = BK_ERR_INIT;
	CHECK(plan_overrides_set(&ov, "max-sessions", "2", &err) == 0);
	CHECK(plan_overrides_set(&ov, "timeout-max", "120", &err) == 0);
	char secret[128];
	struct core_key made, found;
	CHECK_MSG(core_key_create(core, "paid", &ov, secret, sizeof(secret), &made, &err) == 0,
		  "%s", err.msg);
	CHECK_INT_EQ(made.limits.max_sessions, 2);
	CHECK_MSG(core_auth(core, secret, &found, &err) == 0, "%s", err.msg);
	CHECK_STR_EQ(found.id, made.id);
	CHECK_STR_EQ(found.plan, "paid");
	CHECK_INT_EQ(found.limits.max_sessions, 2);
	CHECK_INT_EQ(found.limits.timeout_max_s, 120);
	CHECK_INT_EQ(found.limits.requests_per_minute, plan_lookup("paid")->requests_per_minute);

	/* Without overrides: the plan's numbers. */
	CHECK(core_key_create(core, "free", NULL, secret, sizeof(secret), &made, &err) == 0);
	CHECK(core_auth(core, secret, &found, &err) == 0);
	CHECK(memcmp(&found.limits, plan_lookup("free"), sizeof(found.limits)) == 0);
	core_close(core);
}

TEST(key_create_refuses_contradictions)
{
	char dir[128];
	dir_new(dir, sizeof(dir));
	struct core *core = core_at(dir);
	struct plan_overrides ov = {0};
	struct bk_err err = BK_ERR_INIT;
	char secret[128];
	/* free's maximum timeout is 30 s: a default of 60 contradicts it. */
	CHECK(plan_overrides_set(&ov, "timeout-default", "60", &err) == 0);
	CHECK(core_key_create(core, "free", &ov, secret, sizeof(secret), NULL, &err) < 0);
	CHECK_INT_EQ(err.kind, BK_E_INVALID);
	CHECK(core_key_create(core, "gold", NULL, secret, sizeof(secret), NULL, &err) < 0);
	CHECK_STR_EQ(err.field, "plan");
	struct core_key_info *keys;
	size_t n;
	CHECK(core_key_list(core, &keys, &n, &err) == 0);
	CHECK_INT_EQ(n, 0);
	free(keys);
	core_close(core);
}

static int64_t revoked_of(const struct core_key_info *keys, size_t n, const char *id)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(keys[i].id, id) == 0)
			return keys[i].revoked_ms;
	CHECK_MSG(false, "key %s not listed", id);
	return -1;
}

TEST(key_list_and_revoke)
{
	char dir[128];
	dir_new(dir, sizeof(dir));
	struct core *core = core_at(dir);
	struct bk_err err = BK_ERR_INIT;
	char s1[128], s2[128];
	struct core_key k1, k2, found;
	struct plan_overrides ov = {0};
	CHECK(plan_overrides_set(&ov, "rpm", "5", &err) == 0);
	CHECK(core_key_create(core, "free", NULL, s1, sizeof(s1), &k1, &err) == 0);
	CHECK(core_key_create(core, "enterprise", &ov, s2, sizeof(s2), &k2, &err) == 0);

	struct core_key_info *keys;
	size_t n;
	CHECK(core_key_list(core, &keys, &n, &err) == 0);
	CHECK_INT_EQ(n, 2);
	/* Oldest first; made in the same millisecond, they may come either way. */
	if (strcmp(keys[0].id, k1.id) != 0) {
		struct core_key_info t = keys[0];
		keys[0] = keys[1];
		keys[1] = t;
	}
	CHECK_STR_EQ(keys[0].id, k1.id);
	CHECK_STR_EQ(keys[1].id, k2.id);
	CHECK_STR_EQ(keys[1].plan, "enterprise");
	CHECK_INT_EQ(keys[0].overrides.set, 0);
	CHECK_INT_EQ(keys[1].overrides.set, 1u << PLAN_RPM);
	CHECK_INT_EQ(keys[1].overrides.values.requests_per_minute, 5);
	CHECK_INT_EQ(keys[1].revoked_ms, 0);
	CHECK(keys[0].created_ms > 0);
	free(keys);

	CHECK(core_key_revoke(core, k2.id, &err) == 0);
	CHECK(core_auth(core, s2, &found, &err) < 0);
	CHECK_INT_EQ(err.kind, BK_E_UNAUTHORIZED);
	CHECK(core_auth(core, s1, &found, &err) == 0);
	CHECK(core_key_list(core, &keys, &n, &err) == 0);
	int64_t revoked = revoked_of(keys, n, k2.id);
	CHECK(revoked > 0);
	CHECK_INT_EQ(revoked_of(keys, n, k1.id), 0);
	free(keys);
	/* Twice is fine and keeps the first time. */
	CHECK(core_key_revoke(core, k2.id, &err) == 0);
	CHECK(core_key_list(core, &keys, &n, &err) == 0);
	CHECK_INT_EQ(revoked_of(keys, n, k2.id), revoked);
	free(keys);
	CHECK(core_key_revoke(core, "key_nosuchkey00000", &err) < 0);
	CHECK_INT_EQ(err.kind, BK_E_NOT_FOUND);
	core_close(core);
}

/* ---- the schema migration from version 1 ---- */

static void sql(sqlite3 *db, const char *text)
{
	char *msg = NULL;
	CHECK_MSG(sqlite3_exec(db, text, NULL, NULL, &msg) == SQLITE_OK, "%s: %s", text,
		  msg ? msg : "?");
}

TEST(migration_from_version_1_keeps_keys)
{
	char dir[128], path[192];
	dir_new(dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/bunker.db", dir);
	/* A database as version 1 left it, with one key. */
	sqlite3 *db;
	CHECK(sqlite3_open(path, &db) == SQLITE_OK);
	sql(db, "CREATE TABLE keys (id TEXT PRIMARY KEY, hash BLOB NOT NULL UNIQUE, plan TEXT NOT "
		"NULL, created_ms INTEGER NOT NULL, revoked_ms INTEGER NOT NULL DEFAULT 0);"
		"CREATE TABLE sessions (id TEXT PRIMARY KEY, key_id TEXT NOT NULL REFERENCES "
		"keys(id), created_ms INTEGER NOT NULL, expires_ms INTEGER NOT NULL, "
		"last_active_ms INTEGER NOT NULL, state INTEGER NOT NULL, metadata TEXT NOT NULL, "
		"memory_mb INTEGER NOT NULL, cpu REAL NOT NULL, timeout_s INTEGER NOT NULL, "
		"disk_mb INTEGER NOT NULL, uid_slot INTEGER NOT NULL UNIQUE CHECK (uid_slot >= "
		"0));"
		"CREATE INDEX sessions_key_created ON sessions (key_id, created_ms);"
		"PRAGMA user_version = 1;");
	uint8_t hash[32];
	crypto_generichash(hash, 32, (const unsigned char *)"bk_old", 6, NULL, 0);
	sqlite3_stmt *st;
	CHECK(sqlite3_prepare_v2(db,
				 "INSERT INTO keys (id, hash, plan, created_ms) VALUES "
				 "('key_old0000000000000', ?, 'paid', 5)",
				 -1, &st, NULL) == SQLITE_OK);
	sqlite3_bind_blob(st, 1, hash, 32, SQLITE_STATIC);
	CHECK(sqlite3_step(st) == SQLITE_DONE);
	sqlite3_finalize(st);
	sqlite3_close(db);

	struct core *core = core_at(dir);
	struct core_key k;
	struct bk_err err = BK_ERR_INIT;
	CHECK_MSG(core_auth(core, "bk_old", &k, &err) == 0, "%s", err.msg);
	CHECK_STR_EQ(k.id, "key_old0000000000000");
	CHECK(memcmp(&k.limits, plan_lookup("paid"), sizeof(k.limits)) == 0);
	core_close(core);

	CHECK(sqlite3_open(path, &db) == SQLITE_OK);
	CHECK(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL) == SQLITE_OK);
	CHECK(sqlite3_step(st) == SQLITE_ROW);
	CHECK_INT_EQ(sqlite3_column_int(st, 0), STORE_SCHEMA_VERSION);
	sqlite3_finalize(st);
	CHECK(sqlite3_prepare_v2(db, "SELECT COUNT(*) FROM idempotency", -1, &st, NULL) ==
	      SQLITE_OK);
	CHECK(sqlite3_step(st) == SQLITE_ROW);
	sqlite3_finalize(st);
	sqlite3_close(db);
}
