/* Figures about the whole daemon, for GET /metrics. */
#include <stdio.h>

#include "core/core_int.h"

int64_t core_session_total(struct core *core)
{
	int64_t n = 0;
	struct bk_err err = BK_ERR_INIT;
	/* Sleeping sessions are the store's alone: it counts them all. */
	if (core->store->ops->session_count(core->store, NULL, now_ms(), false, &n, &err) < 0)
		fprintf(stderr, "bunkerd: %s\n", err.msg);
	return n;
}

void core_net_totals(struct core *core, int64_t *tx, int64_t *rx)
{
	*tx = *rx = 0;
	if (core->sbx->ops->net_totals)
		core->sbx->ops->net_totals(core->sbx, tx, rx);
}

int64_t core_output_held(struct core *core)
{
	return core->output_budget ? (int64_t)budget_used(core->output_budget) : 0;
}

struct budget_charge *core_output_charge_new(struct core *core, const struct core_key *key)
{
	return budget_charge_new(core->output_budget, key->id);
}
