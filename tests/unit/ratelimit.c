/* api/ratelimit.c: the per-key window, its headers' numbers, and exactness
 * under threads. */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "../harness.h"
#include "api/api_int.h"

static struct api_ratelimit *rl_new(void)
{
	struct api_ratelimit *rl = NULL;
	struct bk_err err = BK_ERR_INIT;
	CHECK_MSG(api_ratelimit_new(&rl, &err) == 0, "%s", err.msg);
	return rl;
}

TEST(counts_down_then_refuses)
{
	struct api_ratelimit *rl = rl_new();
	struct api_ratelimit_state st;
	int64_t t0 = 1700000000123;
	for (int i = 0; i < 5; i++) {
		CHECK(api_ratelimit_take(rl, "key_a", 5, t0 + i * 1000, &st));
		CHECK_INT_EQ(st.limit, 5);
		CHECK_INT_EQ(st.remaining, 4 - i);
		CHECK_INT_EQ(st.retry_after_s, 0);
		/* The window opened at t0 and closes 60 s later, rounded up. */
		CHECK_INT_EQ(st.reset_s, (t0 + 60000 + 999) / 1000);
	}
	CHECK(!api_ratelimit_take(rl, "key_a", 5, t0 + 10000, &st));
	CHECK_INT_EQ(st.remaining, 0);
	CHECK_INT_EQ(st.retry_after_s, 50);
	CHECK(!api_ratelimit_take(rl, "key_a", 5, t0 + 59500, &st));
	CHECK_INT_EQ(st.retry_after_s, 1);
	/* Refused requests are not counted: the next window is whole. */
	CHECK(api_ratelimit_take(rl, "key_a", 5, t0 + 60000, &st));
	CHECK_INT_EQ(st.remaining, 4);
	CHECK_INT_EQ(st.reset_s, (t0 + 120000 + 999) / 1000);
	api_ratelimit_free(rl);
}

/* The budget read from the store's count (several nodes), which counts the
 * refused requests too: the same answers as the memory's. */
TEST(counted_by_the_store)
{
	struct api_ratelimit_state st;
	int64_t t0 = 1700000000123;
	for (int i = 1; i <= 5; i++) {
		CHECK(api_ratelimit_counted(5, t0, i, t0 + i * 1000, &st));
		CHECK_INT_EQ(st.limit, 5);
		CHECK_INT_EQ(st.remaining, 5 - i);
		CHECK_INT_EQ(st.retry_after_s, 0);
		CHECK_INT_EQ(st.reset_s, (t0 + 60000 + 999) / 1000);
	}
	CHECK(!api_ratelimit_counted(5, t0, 6, t0 + 10000, &st));
	CHECK_INT_EQ(st.remaining, 0);
	CHECK_INT_EQ(st.retry_after_s, 50);
	CHECK(!api_ratelimit_counted(5, t0, 700, t0 + 59500, &st));
	CHECK_INT_EQ(st.remaining, 0);
	CHECK_INT_EQ(st.retry_after_s, 1);
	/* A window another node opened on a clock ahead of this one. */
	CHECK(!api_ratelimit_counted(5, t0 + 2000, 6, t0, &st));
	CHECK_INT_EQ(st.retry_after_s, 62);
}

TEST(keys_are_independent)
{
	struct api_ratelimit *rl = rl_new();
	struct api_ratelimit_state st;
	int64_t t0 = 1700000000000;
	CHECK(api_ratelimit_take(rl, "key_a", 1, t0, &st));
	CHECK(!api_ratelimit_take(rl, "key_a", 1, t0 + 1, &st));
	CHECK(api_ratelimit_take(rl, "key_b", 1, t0 + 2, &st));
	CHECK_INT_EQ(st.remaining, 0);
	CHECK(!api_ratelimit_take(rl, "key_b", 1, t0 + 3, &st));
	api_ratelimit_free(rl);
}

TEST(many_keys_and_idle_entries)
{
	struct api_ratelimit *rl = rl_new();
	struct api_ratelimit_state st;
	int64_t t0 = 1700000000000;
	char id[32];
	for (int i = 0; i < 2000; i++) {
		snprintf(id, sizeof(id), "key_%05d", i);
		CHECK(api_ratelimit_take(rl, id, 2, t0, &st));
	}
	/* Much later every entry is idle and dropped on the way; each key
	 * starts afresh. */
	for (int i = 0; i < 2000; i++) {
		snprintf(id, sizeof(id), "key_%05d", i);
		CHECK(api_ratelimit_take(rl, id, 2, t0 + 3600000, &st));
		CHECK_INT_EQ(st.remaining, 1);
	}
	api_ratelimit_free(rl);
}

#define THREADS 16
#define TAKES 200

struct race {
	struct api_ratelimit *rl;
	pthread_barrier_t *start;
	int allowed;
};

static void *racer(void *arg)
{
	struct race *r = arg;
	struct api_ratelimit_state st;
	pthread_barrier_wait(r->start);
	for (int i = 0; i < TAKES; i++)
		if (api_ratelimit_take(r->rl, "key_shared", 1000, 1700000000000, &st))
			r->allowed++;
	return NULL;
}

TEST(exact_under_threads)
{
	struct api_ratelimit *rl = rl_new();
	pthread_barrier_t start;
	pthread_barrier_init(&start, NULL, THREADS);
	pthread_t t[THREADS];
	struct race r[THREADS];
	for (int i = 0; i < THREADS; i++) {
		r[i] = (struct race){.rl = rl, .start = &start};
		CHECK(pthread_create(&t[i], NULL, racer, &r[i]) == 0);
	}
	int allowed = 0;
	for (int i = 0; i < THREADS; i++) {
		pthread_join(t[i], NULL);
		allowed += r[i].allowed;
	}
	pthread_barrier_destroy(&start);
	/* 3200 tries against a budget of 1000. */
	CHECK_INT_EQ(allowed, 1000);
	api_ratelimit_free(rl);
}
