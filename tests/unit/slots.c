/* Unit tests of sandbox/slots.c: host id ranges, taken lowest free first,
 * never twice. */
#include "../harness.h"

#include <pthread.h>

#include "sandbox/slots.h"

TEST(slots_reuse_lowest_free)
{
	struct sbx_slots s;
	struct bk_err err = BK_ERR_INIT;
	CHECK_MSG(sbx__slots_init(&s, 0, 0, &err) == 0, "%s", err.msg);
	CHECK_INT_EQ(sbx__slots_take(&s), 0);
	CHECK_INT_EQ(sbx__slots_take(&s), 1);
	CHECK_INT_EQ(sbx__slots_take(&s), 2);
	CHECK_INT_EQ(sbx__slots_take(&s), 3);
	sbx__slots_release(&s, 1);
	CHECK_INT_EQ(sbx__slots_take(&s), 1);
	sbx__slots_release(&s, 2);
	sbx__slots_release(&s, 0);
	CHECK_INT_EQ(sbx__slots_take(&s), 0);
	CHECK_INT_EQ(sbx__slots_take(&s), 2);
	CHECK_INT_EQ(sbx__slots_take(&s), 4);
	sbx__slots_destroy(&s);
}

TEST(slots_held_at_start_are_not_given)
{
	struct sbx_slots s;
	struct bk_err err = BK_ERR_INIT;
	CHECK(sbx__slots_init(&s, 0, 0, &err) == 0);
	CHECK(sbx__slots_hold(&s, 42));
	/* A slot that is taken is a conflict, and consumes nothing. */
	CHECK(!sbx__slots_hold(&s, 42));
	CHECK_INT_EQ(sbx__slots_take(&s), 0);
	CHECK(sbx__slots_hold(&s, 1));
	CHECK_INT_EQ(sbx__slots_take(&s), 2);
	sbx__slots_destroy(&s);
}

TEST(slots_of_a_range_and_its_end)
{
	struct sbx_slots s;
	struct bk_err err = BK_ERR_INIT;
	CHECK(sbx__slots_init(&s, 100, 2, &err) == 0);
	CHECK(!sbx__slots_hold(&s, 0));
	CHECK_INT_EQ(sbx__slots_take(&s), 100);
	CHECK_INT_EQ(sbx__slots_take(&s), 101);
	CHECK_INT_EQ(sbx__slots_take(&s), -1);
	sbx__slots_release(&s, 100);
	CHECK_INT_EQ(sbx__slots_take(&s), 100);
	sbx__slots_destroy(&s);
	CHECK_INT_EQ(sbx__slots_init(&s, SBX_MAX_SLOTS - 1, 2, &err), -1);
	CHECK_INT_EQ(err.kind, BK_E_INVALID);
	/* Host ids and slots, both ways. */
	CHECK_INT_EQ(sbx__slot_of_base(sbx__slot_base(7)), 7);
	CHECK_INT_EQ(sbx__slot_of_base(sbx__slot_base(7) + 1000), -1);
	CHECK_INT_EQ(sbx__slot_of_base(0), -1);
}

#define THREADS 8
#define PER_THREAD 64

struct worker {
	struct sbx_slots *s;
	int got[PER_THREAD];
};

static void *worker_run(void *arg)
{
	struct worker *w = arg;
	for (int i = 0; i < PER_THREAD; i++)
		w->got[i] = sbx__slots_take(w->s);
	return NULL;
}

TEST(slots_concurrent_takes_are_distinct)
{
	struct sbx_slots s;
	struct bk_err err = BK_ERR_INIT;
	CHECK(sbx__slots_init(&s, 0, 0, &err) == 0);
	struct worker w[THREADS];
	pthread_t t[THREADS];
	for (int i = 0; i < THREADS; i++) {
		w[i].s = &s;
		CHECK(pthread_create(&t[i], NULL, worker_run, &w[i]) == 0);
	}
	for (int i = 0; i < THREADS; i++)
		CHECK(pthread_join(t[i], NULL) == 0);
	bool seen[THREADS * PER_THREAD] = {false};
	for (int i = 0; i < THREADS; i++) {
		for (int j = 0; j < PER_THREAD; j++) {
			int slot = w[i].got[j];
			CHECK_MSG(slot >= 0 && slot < THREADS * PER_THREAD, "slot %d", slot);
			CHECK_MSG(!seen[slot], "slot %d given twice", slot);
			seen[slot] = true;
		}
	}
	sbx__slots_destroy(&s);
}
