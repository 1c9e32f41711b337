/* A shared memory budget with a share per owner (util/budget.h). Owners
 * that hold charges are kept in a list: a daemon has as many as it has API
 * keys with an execution running or an answer being sent, a few hundred
 * at most, and the list is walked only when a charge is made. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "util/budget.h"

struct budget_owner {
	struct budget_owner *next;
	size_t used;
	unsigned charges; /* the entry goes with its last charge */
	char name[];
};

struct budget {
	pthread_mutex_t lock;
	size_t total, share, used; /* guarded by lock, like owners */
	struct budget_owner *owners;
};

struct budget_charge {
	struct budget *b;
	struct budget_owner *owner;
	size_t held;
};

int budget_new(size_t total, size_t share, struct budget **out, struct bk_err *err)
{
	struct budget *b = calloc(1, sizeof(*b));
	if (b == NULL)
		return bk_err_set(err, ENOMEM, "cannot make a memory budget");
	pthread_mutex_init(&b->lock, NULL);
	b->total = total;
	b->share = share < total ? share : total;
	*out = b;
	return 0;
}

void budget_free(struct budget *b)
{
	if (b == NULL)
		return;
	while (b->owners) {
		struct budget_owner *o = b->owners;
		b->owners = o->next;
		free(o);
	}
	pthread_mutex_destroy(&b->lock);
	free(b);
}

/* With b->lock held. */
static struct budget_owner *owner_find(struct budget *b, const char *name)
{
	for (struct budget_owner *o = b->owners; o; o = o->next)
		if (strcmp(o->name, name) == 0)
			return o;
	return NULL;
}

struct budget_charge *budget_charge_new(struct budget *b, const char *owner)
{
	if (b == NULL)
		return NULL;
	struct budget_charge *c = calloc(1, sizeof(*c));
	size_t len = strlen(owner);
	/* Made before the lock is taken; freed when the owner was there. */
	struct budget_owner *fresh = malloc(sizeof(*fresh) + len + 1);
	if (c == NULL || fresh == NULL) {
		free(c);
		free(fresh);
		return NULL;
	}
	pthread_mutex_lock(&b->lock);
	struct budget_owner *o = owner_find(b, owner);
	if (o == NULL) {
		*fresh = (struct budget_owner){.next = b->owners};
		memcpy(fresh->name, owner, len + 1);
		b->owners = o = fresh;
		fresh = NULL;
	}
	o->charges++;
	pthread_mutex_unlock(&b->lock);
	free(fresh);
	*c = (struct budget_charge){.b = b, .owner = o};
	return c;
}

size_t budget_charge_take(struct budget_charge *c, size_t n)
{
	if (c == NULL)
		return n;
	struct budget *b = c->b;
	pthread_mutex_lock(&b->lock);
	/* Counts may stand past their limits (budget_charge_owe()). */
	size_t left = b->used < b->total ? b->total - b->used : 0;
	size_t mine = c->owner->used < b->share ? b->share - c->owner->used : 0;
	if (n > left)
		n = left;
	if (n > mine)
		n = mine;
	b->used += n;
	c->owner->used += n;
	c->held += n;
	pthread_mutex_unlock(&b->lock);
	return n;
}

enum budget_limit budget_charge_take_all(struct budget_charge *c, size_t n)
{
	if (c == NULL)
		return BUDGET_OK;
	struct budget *b = c->b;
	pthread_mutex_lock(&b->lock);
	enum budget_limit r = BUDGET_OK;
	/* Counts may stand past their limits (budget_charge_owe()). An owner
	 * that holds little, a sixteenth of its share, may bring one thing
	 * larger than its share: holding nothing at all is a race with the
	 * last answer's bytes, which the kernel's send queue gives back only
	 * as the client reads them. */
	bool little = c->owner->used <= b->share / 16;
	if (c->owner->used > b->share || (n > b->share - c->owner->used && !little))
		r = BUDGET_SHARE;
	else if (b->used > b->total || n > b->total - b->used)
		r = BUDGET_TOTAL;
	if (r == BUDGET_OK) {
		b->used += n;
		c->owner->used += n;
		c->held += n;
	}
	pthread_mutex_unlock(&b->lock);
	return r;
}

void budget_charge_owe(struct budget_charge *c, size_t n)
{
	if (c == NULL)
		return;
	struct budget *b = c->b;
	pthread_mutex_lock(&b->lock);
	b->used += n;
	c->owner->used += n;
	c->held += n;
	pthread_mutex_unlock(&b->lock);
}

enum budget_limit budget_charge_full(struct budget_charge *c)
{
	if (c == NULL)
		return BUDGET_OK;
	struct budget *b = c->b;
	pthread_mutex_lock(&b->lock);
	enum budget_limit r = c->owner->used >= b->share ? BUDGET_SHARE
			      : b->used >= b->total	 ? BUDGET_TOTAL
							 : BUDGET_OK;
	pthread_mutex_unlock(&b->lock);
	return r;
}

size_t budget_charge_held(const struct budget_charge *c)
{
	return c ? c->held : 0;
}

void budget_charge_give(struct budget_charge *c, size_t n)
{
	if (c == NULL)
		return;
	struct budget *b = c->b;
	pthread_mutex_lock(&b->lock);
	if (n > c->held)
		n = c->held;
	b->used -= n;
	c->owner->used -= n;
	c->held -= n;
	pthread_mutex_unlock(&b->lock);
}

void budget_charge_release(struct budget_charge *c)
{
	if (c == NULL)
		return;
	struct budget *b = c->b;
	pthread_mutex_lock(&b->lock);
	b->used -= c->held;
	c->owner->used -= c->held;
	if (--c->owner->charges == 0) {
		for (struct budget_owner **pp = &b->owners; *pp; pp = &(*pp)->next) {
			if (*pp == c->owner) {
				*pp = c->owner->next;
				break;
			}
		}
		free(c->owner);
	}
	pthread_mutex_unlock(&b->lock);
	free(c);
}

size_t budget_used(struct budget *b)
{
	pthread_mutex_lock(&b->lock);
	size_t n = b->used;
	pthread_mutex_unlock(&b->lock);
	return n;
}

size_t budget_owner_used(struct budget *b, const char *owner)
{
	pthread_mutex_lock(&b->lock);
	struct budget_owner *o = owner_find(b, owner);
	size_t n = o ? o->used : 0;
	pthread_mutex_unlock(&b->lock);
	return n;
}

void budget_limits(struct budget *b, size_t *total, size_t *share)
{
	/* Set when b is made, never changed. */
	*total = b->total;
	*share = b->share;
}
