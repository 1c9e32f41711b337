/* util/budget.c: a bound on all holders and a share per owner. */
#include <pthread.h>
#include <stdlib.h>

#include "../harness.h"
#include "util/budget.h"

TEST(budget_share_and_total)
{
	struct budget *b;
	struct bk_err err = BK_ERR_INIT;
	CHECK(budget_new(100, 40, &b, &err) == 0);
	struct budget_charge *a1 = budget_charge_new(b, "a"), *a2 = budget_charge_new(b, "a");
	struct budget_charge *c = budget_charge_new(b, "c"), *d = budget_charge_new(b, "d");
	/* One owner gets its share, over any number of charges. */
	CHECK_INT_EQ(budget_charge_take(a1, 30), 30);
	CHECK_INT_EQ(budget_charge_take(a2, 30), 10);
	CHECK_INT_EQ(budget_charge_take(a2, 1), 0);
	CHECK_INT_EQ(budget_owner_used(b, "a"), 40);
	/* Others are not cut by it... */
	CHECK_INT_EQ(budget_charge_take(c, 40), 40);
	/* ...until the total is reached. */
	CHECK_INT_EQ(budget_charge_take(d, 40), 20);
	CHECK_INT_EQ(budget_used(b), 100);
	CHECK_INT_EQ(budget_charge_take(d, 1), 0);
	/* A release gives back all that charge took. */
	budget_charge_release(a1);
	CHECK_INT_EQ(budget_owner_used(b, "a"), 10);
	CHECK_INT_EQ(budget_used(b), 70);
	CHECK_INT_EQ(budget_charge_take(d, 30), 20); /* d's share is 40 */
	CHECK_INT_EQ(budget_charge_take(a2, 30), 10);
	budget_charge_release(a2);
	budget_charge_release(c);
	budget_charge_release(d);
	CHECK_INT_EQ(budget_used(b), 0);
	CHECK_INT_EQ(budget_owner_used(b, "a"), 0);
	/* Part of a charge given back, never more than it holds. */
	struct budget_charge *e = budget_charge_new(b, "e");
	CHECK_INT_EQ(budget_charge_take(e, 30), 30);
	budget_charge_give(e, 10);
	CHECK_INT_EQ(budget_owner_used(b, "e"), 20);
	budget_charge_give(e, 100);
	CHECK_INT_EQ(budget_owner_used(b, "e"), 0);
	CHECK_INT_EQ(budget_charge_take(e, 40), 40);
	budget_charge_release(e);
	CHECK_INT_EQ(budget_used(b), 0);
	/* No budget: a NULL charge that grants everything. */
	CHECK(budget_charge_new(NULL, "a") == NULL);
	CHECK_INT_EQ(budget_charge_take(NULL, 12345), 12345);
	budget_charge_release(NULL);
	budget_free(b);
}

/* What the last answer's send queue still holds (a few hundred bytes of
 * a 400) does not shut an owner out of one large body: a sixteenth of its
 * share is little enough; more is not. */
TEST(budget_whole_large_after_a_little)
{
	struct budget *b;
	struct bk_err err = BK_ERR_INIT;
	CHECK(budget_new(100, 32, &b, &err) == 0);
	struct budget_charge *a = budget_charge_new(b, "a"), *x = budget_charge_new(b, "a");
	budget_charge_owe(a, 2);
	CHECK_INT_EQ(budget_charge_take_all(x, 60), BUDGET_OK);
	budget_charge_give(x, 60);
	budget_charge_owe(a, 1);
	CHECK_INT_EQ(budget_charge_take_all(x, 60), BUDGET_SHARE);
	CHECK_INT_EQ(budget_charge_take_all(x, 29), BUDGET_OK);
	budget_charge_release(x);
	budget_charge_release(a);
	budget_free(b);
}

TEST(budget_whole_takes_and_debts)
{
	struct budget *b;
	struct bk_err err = BK_ERR_INIT;
	CHECK(budget_new(100, 40, &b, &err) == 0);
	struct budget_charge *a = budget_charge_new(b, "a"), *c = budget_charge_new(b, "c");
	/* An owner holding nothing takes more than its share, within the
	 * total: one thing larger than a share goes in alone... */
	CHECK_INT_EQ(budget_charge_take_all(a, 65), BUDGET_OK);
	/* ...and then nothing more, whole or in part. */
	CHECK_INT_EQ(budget_charge_take_all(a, 1), BUDGET_SHARE);
	CHECK_INT_EQ(budget_charge_take(a, 1), 0);
	CHECK_INT_EQ(budget_charge_full(a), BUDGET_SHARE);
	/* Another owner: whole or not at all, past the total. */
	CHECK_INT_EQ(budget_charge_take_all(c, 30), BUDGET_OK);
	CHECK_INT_EQ(budget_charge_take_all(c, 8), BUDGET_TOTAL);
	CHECK_INT_EQ(budget_owner_used(b, "c"), 30);
	CHECK_INT_EQ(budget_charge_full(c), BUDGET_OK);
	/* A debt stands past every limit; it refuses what comes after. */
	budget_charge_owe(c, 50);
	CHECK_INT_EQ(budget_used(b), 145);
	CHECK_INT_EQ(budget_charge_held(c), 80);
	CHECK_INT_EQ(budget_charge_full(c), BUDGET_SHARE);
	CHECK_INT_EQ(budget_charge_take(c, 1), 0);
	struct budget_charge *d = budget_charge_new(b, "d");
	CHECK_INT_EQ(budget_charge_full(d), BUDGET_TOTAL);
	CHECK_INT_EQ(budget_charge_take(d, 1), 0);
	CHECK_INT_EQ(budget_charge_take_all(d, 1), BUDGET_TOTAL);
	/* Given back, it is all there again. */
	budget_charge_release(c);
	budget_charge_release(a);
	CHECK_INT_EQ(budget_used(b), 0);
	CHECK_INT_EQ(budget_charge_full(d), BUDGET_OK);
	CHECK_INT_EQ(budget_charge_take_all(d, 100), BUDGET_OK);
	budget_charge_release(d);
	/* No budget: nothing is refused. */
	CHECK_INT_EQ(budget_charge_take_all(NULL, 1u << 30), BUDGET_OK);
	CHECK_INT_EQ(budget_charge_full(NULL), BUDGET_OK);
	budget_charge_owe(NULL, 1);
	budget_free(b);
}

static struct budget *shared;

static void *taker(void *arg)
{
	const char *owner = arg;
	for (int i = 0; i < 2000; i++) {
		struct budget_charge *c = budget_charge_new(shared, owner);
		size_t got = 0;
		for (int k = 0; k < 10; k++)
			got += budget_charge_take(c, 7);
		if (got > 50)
			abort();
		budget_charge_release(c);
	}
	return NULL;
}

TEST(budget_threads_give_all_back)
{
	struct bk_err err = BK_ERR_INIT;
	CHECK(budget_new(200, 50, &shared, &err) == 0);
	pthread_t t[8];
	static const char *const owners[] = {"a", "b", "c", "a", "b", "c", "d", "a"};
	for (int i = 0; i < 8; i++)
		CHECK(pthread_create(&t[i], NULL, taker, (void *)owners[i]) == 0);
	for (int i = 0; i < 8; i++)
		pthread_join(t[i], NULL);
	CHECK_INT_EQ(budget_used(shared), 0);
	budget_free(shared);
}

TEST(budget_limits_as_made)
{
	struct budget *b = NULL;
	struct bk_err err = BK_ERR_INIT;
	/* A share past the total is the total (what /metrics shows). */
	CHECK(budget_new(100, 300, &b, &err) == 0);
	size_t total = 0, share = 0;
	budget_limits(b, &total, &share);
	CHECK_INT_EQ(total, 100);
	CHECK_INT_EQ(share, 100);
	budget_free(b);
}
