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
