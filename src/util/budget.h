/* A memory budget that many holders share: a bound on all of them at once
 * and a smaller share for each owner (an API key), so that one owner never
 * takes it all. What an execution's output holds in the daemon is charged
 * to one (core/exec.c makes a charge per execution, sandbox/agent_ops.c
 * takes from it as output arrives, the answer gives it back when it is
 * sent or its client goes).
 *
 * Every function is thread safe: one mutex per budget guards its counts
 * and its owners, held only while they are counted.
 */
#pragma once

#include <stddef.h>

#include "util/err.h"

struct budget;
/* What one holder has taken, and whose it is. */
struct budget_charge;

/* A budget of total bytes, of which an owner may hold at most share
 * (share <= total). */
int budget_new(size_t total, size_t share, struct budget **out, struct bk_err *err);
/* Frees b; every charge must have been released. NULL is fine. */
void budget_free(struct budget *b);

/* A new charge of owner (copied) against b, holding nothing yet: the
 * caller releases it with budget_charge_release(). NULL when out of
 * memory, or when b is NULL: a NULL charge grants everything. */
struct budget_charge *budget_charge_new(struct budget *b, const char *owner);
/* Takes up to n more bytes for c: returns how many it may hold, n or fewer
 * when c's owner would pass its share or all the budget's holders its
 * total (0 when either is spent). */
size_t budget_charge_take(struct budget_charge *c, size_t n);
/* Which limit a charge meets. */
enum budget_limit {
	BUDGET_OK = 0,
	BUDGET_SHARE, /* its owner's share is spent */
	BUDGET_TOTAL, /* all the budget is */
};
/* Takes n more bytes for c whole, or none: BUDGET_OK, or the limit that
 * taking them would pass (its share first). An owner that holds little
 * (a sixteenth of its share at most) may take more than its share, within
 * the total: one thing larger than a share (a body of 80 MiB) is let in
 * alone. */
enum budget_limit budget_charge_take_all(struct budget_charge *c, size_t n);
/* Takes n more bytes for c past any limit, for what is made already and
 * must be held anyway (an answer to send): until they are given back, its
 * owner's later takes are refused, and budget_charge_full() says so. */
void budget_charge_owe(struct budget_charge *c, size_t n);
/* Whether c's owner holds its whole share (BUDGET_SHARE) or all holders
 * the total (BUDGET_TOTAL) already; BUDGET_OK for a NULL charge. */
enum budget_limit budget_charge_full(struct budget_charge *c);
/* What c holds now (0 for NULL). */
size_t budget_charge_held(const struct budget_charge *c);
/* Gives back n of what c holds (at most what it holds). NULL is fine. */
void budget_charge_give(struct budget_charge *c, size_t n);
/* Gives back all that c took and frees it. NULL is fine. */
void budget_charge_release(struct budget_charge *c);

/* What all holders of b hold now, and what the owner holds (0 when it
 * holds nothing). */
size_t budget_used(struct budget *b);
size_t budget_owner_used(struct budget *b, const char *owner);
/* b's limits: its total, and an owner's share. */
void budget_limits(struct budget *b, size_t *total, size_t *share);
