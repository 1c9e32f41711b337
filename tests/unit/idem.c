/* Idempotency: the stored answers (store/sqlite.c, core/idem.c) and what
 * makes two requests "the same" (api/idem.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../client.h"
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
	struct store *st; /* the core's */
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
	f->st = st;
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

static int save_sized(struct fixture *f, const char *idem_key, size_t len, struct bk_err *err)
{
	uint8_t h[32];
	hash_of(idem_key, h);
	char *body = malloc(len + 1);
	CHECK(body != NULL);
	memset(body, 'a', len);
	struct core_idem_reply saved = {.status = 200, .body = body, .len = len};
	snprintf(saved.content_type, sizeof(saved.content_type), "application/json");
	int rc = core_idem_save(f->core, &f->key, idem_key, h, &saved, err);
	free(body);
	return rc;
}

/* An answer over CORE_IDEM_ANSWER_MAX is kept by its length: the store
 * does not grow by it, and the same request again is a 409 that says why,
 * never a second run. Issue 12: three 126 MB answers made a 378 MB store. */
TEST(large_answer_kept_by_length_only)
{
	struct fixture f;
	fixture_open(&f);
	struct bk_err err = BK_ERR_INIT;
	long long before = client_store_bytes(f.dir);
	CHECK_MSG(save_sized(&f, "big", 8u << 20, &err) == 0, "%s", err.msg);
	CHECK_MSG(client_store_bytes(f.dir) - before < (1 << 20), "the store grew by %lld bytes",
		  client_store_bytes(f.dir) - before);
	uint8_t h[32];
	hash_of("big", h);
	struct core_idem_reply r;
	CHECK_INT_EQ(core_idem_find(f.core, &f.key, "big", h, &r, &err), -1);
	CHECK_INT_EQ(err.kind, BK_E_CONFLICT);
	CHECK_MSG(strstr(err.msg, "8388608 bytes") && strstr(err.msg, "not run again"), "%s",
		  err.msg);
	/* One just under the bound is kept whole. */
	CHECK(save_sized(&f, "fits", CORE_IDEM_ANSWER_MAX, &err) == 0);
	hash_of("fits", h);
	CHECK_INT_EQ(core_idem_find(f.core, &f.key, "fits", h, &r, &err), 1);
	CHECK_INT_EQ(r.len, CORE_IDEM_ANSWER_MAX);
	core_idem_reply_release(&r);
	core_close(f.core);
}

/* A key keeps at most CORE_IDEM_KEY_BYTES_MAX of answers; past it, answers
 * are kept by their length. Another key is not affected. */
TEST_TIMEOUT(key_bytes_bounded, 120)
{
	struct fixture f;
	fixture_open(&f);
	struct bk_err err = BK_ERR_INIT;
	int n = (int)(CORE_IDEM_KEY_BYTES_MAX / CORE_IDEM_ANSWER_MAX) + 4;
	for (int i = 0; i < n; i++) {
		char k[32];
		snprintf(k, sizeof(k), "k%d", i);
		CHECK_MSG(save_sized(&f, k, CORE_IDEM_ANSWER_MAX, &err) == 0, "%s", err.msg);
	}
	CHECK_MSG(client_store_bytes(f.dir) < CORE_IDEM_KEY_BYTES_MAX + (16 << 20),
		  "the store holds %lld bytes", client_store_bytes(f.dir));
	struct core_idem_reply r;
	uint8_t h[32];
	hash_of("k0", h);
	CHECK_INT_EQ(core_idem_find(f.core, &f.key, "k0", h, &r, &err), 1);
	core_idem_reply_release(&r);
	char last[32];
	snprintf(last, sizeof(last), "k%d", n - 1);
	hash_of(last, h);
	CHECK_INT_EQ(core_idem_find(f.core, &f.key, last, h, &r, &err), -1);
	CHECK_INT_EQ(err.kind, BK_E_CONFLICT);
	/* Another key still keeps its answers whole. */
	struct core_key other;
	char secret[128];
	CHECK(core_key_create(f.core, "free", NULL, secret, sizeof(secret), &other, &err) == 0);
	struct core_key mine = f.key;
	f.key = other;
	CHECK(save_sized(&f, "k0", 1000, &err) == 0);
	hash_of("k0", h);
	CHECK_INT_EQ(core_idem_find(f.core, &other, "k0", h, &r, &err), 1);
	core_idem_reply_release(&r);
	f.key = mine;
	core_close(f.core);
}

/* At most CORE_IDEM_KEY_COUNT_MAX Idempotency-Keys per API key a day. */
TEST_TIMEOUT(key_count_bounded, 120)
{
	struct fixture f;
	fixture_open(&f);
	struct bk_err err = BK_ERR_INIT;
	CHECK_INT_EQ(core_idem_admit(f.core, &f.key, &err), 0);
	/* Stored straight into the store: core_idem_save() would count the
	 * key's answers for each. */
	struct store_idem rec = {
	    .status = 200, .body = "{}", .body_len = 2, .created_ms = now_ms()};
	snprintf(rec.key_id, sizeof(rec.key_id), "%s", f.key.id);
	snprintf(rec.content_type, sizeof(rec.content_type), "application/json");
	for (int i = 0; i < CORE_IDEM_KEY_COUNT_MAX - 1; i++) {
		snprintf(rec.idem_key, sizeof(rec.idem_key), "c%d", i);
		CHECK_MSG(f.st->ops->idem_put(f.st, &rec, &err) == 0, "%s", err.msg);
	}
	CHECK_INT_EQ(core_idem_admit(f.core, &f.key, &err), 0);
	CHECK(save_sized(&f, "last", 10, &err) == 0);
	CHECK_INT_EQ(core_idem_admit(f.core, &f.key, &err), -1);
	CHECK_INT_EQ(err.kind, BK_E_LIMIT);
	core_close(f.core);
}
