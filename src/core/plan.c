/* Plans and API keys. */
#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "core/core_int.h"

static const struct {
	const char *name;
	struct plan_limits limits;
} plans[] = {
	{"free",
	 {.max_sessions = 10, .max_ttl_s = 86400, .overrides = false, .memory_max_mb = 1024,
	  .cpu_max = 0.25, .disk_max_mb = 1024, .timeout_default_s = 30, .timeout_max_s = 30,
	  .requests_per_minute = 100, .max_file_bytes = 10 << 20}},
	{"paid",
	 {.max_sessions = 100, .max_ttl_s = 604800, .overrides = true, .memory_max_mb = 4096,
	  .cpu_max = 1, .disk_max_mb = 5120, .timeout_default_s = 30, .timeout_max_s = 300,
	  .requests_per_minute = 1000, .max_file_bytes = 50 << 20}},
	/* Enterprise numbers are set per key; these are where a key starts. */
	{"enterprise",
	 {.max_sessions = 1000, .max_ttl_s = 2592000, .overrides = true, .memory_max_mb = 16384,
	  .cpu_max = 2, .disk_max_mb = 20480, .timeout_default_s = 30, .timeout_max_s = 3600,
	  .requests_per_minute = 10000, .max_file_bytes = 100 << 20}},
};

const struct plan_limits *plan_lookup(const char *name)
{
	for (size_t i = 0; i < ARRAY_SIZE(plans); i++)
		if (strcmp(plans[i].name, name) == 0)
			return &plans[i].limits;
	return NULL;
}

static void key_hash(const char *secret, uint8_t out[32])
{
	crypto_generichash(out, 32, (const unsigned char *)secret, strlen(secret), NULL, 0);
}

int core_key_create(struct core *core, const char *plan, char *secret, size_t len,
		    struct core_key *out, struct bk_err *err)
{
	const struct plan_limits *limits = plan_lookup(plan);
	if (limits == NULL)
		return bk_err_field(err, "plan", "unknown plan '%s' (free, paid or enterprise)",
				    plan);
	/* 40 characters of [a-z0-9]: 206 bits. */
	char rnd[41], kid[17];
	if (len < 44 || random_alnum(rnd, 40, err) < 0 || random_alnum(kid, 16, err) < 0)
		return bk_err_set(err, EINVAL, "cannot create key");
	struct store_key k = {.created_ms = now_ms()};
	snprintf(k.id, sizeof(k.id), "key_%s", kid);
	snprintf(k.plan, sizeof(k.plan), "%s", plan);
	snprintf(secret, len, "bk_%s", rnd);
	key_hash(secret, k.hash);
	if (store_key_insert(core->store, &k, err) < 0)
		return -1;
	if (out) {
		snprintf(out->id, sizeof(out->id), "%s", k.id);
		snprintf(out->plan, sizeof(out->plan), "%s", k.plan);
		out->limits = *limits;
	}
	return 0;
}

int core_auth(struct core *core, const char *secret, struct core_key *out, struct bk_err *err)
{
	if (secret == NULL || *secret == '\0')
		return bk_err_kind(err, BK_E_UNAUTHORIZED, "missing API key");
	uint8_t hash[32];
	key_hash(secret, hash);
	struct store_key k;
	int r = store_key_find_by_hash(core->store, hash, &k, err);
	if (r < 0)
		return -1;
	if (r == 0 || k.revoked_ms != 0)
		return bk_err_kind(err, BK_E_UNAUTHORIZED, "invalid API key");
	const struct plan_limits *limits = plan_lookup(k.plan);
	if (limits == NULL)
		return bk_err_kind(err, BK_E_INTERNAL, "key %s has unknown plan '%s'", k.id, k.plan);
	snprintf(out->id, sizeof(out->id), "%s", k.id);
	snprintf(out->plan, sizeof(out->plan), "%s", k.plan);
	out->limits = *limits;
	return 0;
}
