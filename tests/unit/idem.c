/* Idempotency: the stored answers (store/sqlite.c, core/idem.c) and what
 * makes two requests "the same" (api/idem.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../harness.h"
#include "api/api_int.h"
#include "core/core.h"
#include "store/store.h"
#include "util/util.h"

static char base_dir[] = "/tmp/bk-unit-idem-XXXXXX";

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
	struct core *core;
	struct core_key key;
};

static void fixture_open(struct fixture *f)
{
	snprintf(f->dir, sizeof(f->dir), "%s/t-XXXXXX", base_dir);
	CHECK(mkdtemp(f->dir) != NULL);
	struct bk_err err = BK_ERR_INIT;
	char db[300];
	snprintf(db, sizeof(db), "%s/bunker.db", f->dir);
	struct store *st;
	CHECK_MSG(store_open(db, &st, &err) == 0, "%s", err.msg);
	CHECK_MSG(core_open_store(st, &f->core, &err) == 0, "%s", err.msg);
	char secret[128];
	CHECK_MSG(core_key_create(f->core, "free", NULL, secret, sizeof(secret), &f->key, &err) ==
		      0,
		  "%s", err.msg);
}

static void hash_of(const char *body, uint8_t out[32])
{
	api_idem_request_hash("POST", "/sessions/create", body, strlen(body), out);
}

TEST(request_hash_ignores_json_form)
{
	uint8_t a[32], b[32], c[32];
	hash_of("{\"ttl\":600,\"metadata\":{\"x\":1,\"y\":2}}", a);
	hash_of(" { \"metadata\" : {\"y\":2, \"x\":1}, \"ttl\" : 600 }\n", b);
	CHECK(memcmp(a, b, 32) == 0);
	hash_of("{\"ttl\":601,\"metadata\":{\"x\":1,\"y\":2}}", c);
	CHECK(memcmp(a, c, 32) != 0);
	/* Another path or method is another request. */
	api_idem_request_hash("POST", "/execute", "{}", 2, b);
	hash_of("{}", c);
	CHECK(memcmp(b, c, 32) != 0);
	api_idem_request_hash("PUT", "/sessions/create", "{}", 2, b);
	CHECK(memcmp(b, c, 32) != 0);
	/* Not JSON: the bytes. An empty body is not "{}". */
	hash_of("not json", a);
	hash_of("not  json", b);
	CHECK(memcmp(a, b, 32) != 0);
	hash_of("", a);
	CHECK(memcmp(a, c, 32) != 0);
}

TEST(save_then_find)
{
	struct fixture f;
	fixture_open(&f);
	uint8_t h[32], other[32];
	hash_of("{\"ttl\":600}", h);
	hash_of("{\"ttl\":700}", other);
	struct core_idem_reply r;
	struct bk_err err = BK_ERR_INIT;
	CHECK_INT_EQ(core_idem_find(f.core, &f.key, "k1", h, &r, &err), 0);

	static const char body[] = "{\"sessionId\":\"ses_x\"}\0tail";
	struct core_idem_reply saved = {
	    .status = 200, .body = (char *)body, .len = sizeof(body) - 1};
	snprintf(saved.content_type, sizeof(saved.content_type), "application/json");
	CHECK_MSG(core_idem_save(f.core, &f.key, "k1", h, &saved, &err) == 0, "%s", err.msg);

	CHECK_INT_EQ(core_idem_find(f.core, &f.key, "k1", h, &r, &err), 1);
	CHECK_INT_EQ(r.status, 200);
	CHECK_STR_EQ(r.content_type, "application/json");
	/* Byte for byte, NULs included. */
	CHECK_INT_EQ(r.len, sizeof(body) - 1);
	CHECK(memcmp(r.body, body, r.len) == 0);
	core_idem_reply_release(&r);

	CHECK_INT_EQ(core_idem_find(f.core, &f.key, "k1", other, &r, &err), -1);
	CHECK_INT_EQ(err.kind, BK_E_IDEMPOTENCY_REUSED);
	CHECK_INT_EQ(core_idem_find(f.core, &f.key, "k2", h, &r, &err), 0);

	/* Another API key has its own keys. */
	struct core_key stranger = f.key;
	snprintf(stranger.id, sizeof(stranger.id), "key_other");
	CHECK_INT_EQ(core_idem_find(f.core, &stranger, "k1", other, &r, &err), 0);
	core_close(f.core);
}

TEST(empty_body_round_trips)
{
	struct fixture f;
	fixture_open(&f);
	uint8_t h[32];
	hash_of("{}", h);
	struct core_idem_reply saved = {.status = 204, .body = NULL, .len = 0}, r;
	snprintf(saved.content_type, sizeof(saved.content_type), "application/json");
	struct bk_err err = BK_ERR_INIT;
	CHECK_MSG(core_idem_save(f.core, &f.key, "empty", h, &saved, &err) == 0, "%s", err.msg);
	CHECK_INT_EQ(core_idem_find(f.core, &f.key, "empty", h, &r, &err), 1);
	CHECK_INT_EQ(r.status, 204);
	CHECK_INT_EQ(r.len, 0);
	CHECK(r.body != NULL);
	core_idem_reply_release(&r);
	core_close(f.core);
}

/* Answers older than 24 h count as absent, and the purge removes them. */
TEST(expired_answers)
{
	char dir[128], path[192];
	snprintf(dir, sizeof(dir), "%s/t-XXXXXX", base_dir);
	CHECK(mkdtemp(dir) != NULL);
	snprintf(path, sizeof(path), "%s/bunker.db", dir);
	struct store *st;
	struct bk_err err = BK_ERR_INIT;
	CHECK_MSG(store_open(path, &st, &err) == 0, "%s", err.msg);
	struct store_key k = {.created_ms = 1};
	snprintf(k.id, sizeof(k.id), "key_a");
	snprintf(k.plan, sizeof(k.plan), "free");
	CHECK(st->ops->key_insert(st, &k, &err) == 0);
	struct store_idem rec = {
	    .status = 200, .body = (char *)"{}", .body_len = 2, .created_ms = 1000};
	snprintf(rec.key_id, sizeof(rec.key_id), "key_a");
	snprintf(rec.idem_key, sizeof(rec.idem_key), "old");
	snprintf(rec.content_type, sizeof(rec.content_type), "application/json");
	CHECK(st->ops->idem_put(st, &rec, &err) == 0);
	rec.created_ms = 5000;
	snprintf(rec.idem_key, sizeof(rec.idem_key), "new");
	CHECK(st->ops->idem_put(st, &rec, &err) == 0);

	struct store_idem got;
	CHECK_INT_EQ(st->ops->idem_get(st, "key_a", "old", 2000, &got, &err), 0);
	CHECK_INT_EQ(st->ops->idem_get(st, "key_a", "old", 1000, &got, &err), 1);
	store_idem_release(&got);
	int64_t n = -1;
	CHECK(st->ops->idem_purge(st, 2000, &n, &err) == 0);
	CHECK_INT_EQ(n, 1);
	CHECK_INT_EQ(st->ops->idem_get(st, "key_a", "old", 0, &got, &err), 0);
	CHECK_INT_EQ(st->ops->idem_get(st, "key_a", "new", 0, &got, &err), 1);
	CHECK_INT_EQ(got.created_ms, 5000);
	store_idem_release(&got);
	/* A replacement under the same key. */
	rec.status = 201;
	CHECK(st->ops->idem_put(st, &rec, &err) == 0);
	CHECK_INT_EQ(st->ops->idem_get(st, "key_a", "new", 0, &got, &err), 1);
	CHECK_INT_EQ(got.status, 201);
	store_idem_release(&got);
	st->ops->close(st);
}
