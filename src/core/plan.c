/* Plans and API keys. */
#include <errno.h>
#include <jansson.h>
#include <math.h> /* isfinite */
#include <sodium.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core_int.h"
#include "util/cleanup.h"

static inline void plan_json_release(json_t **j)
{
	json_decref(*j);
}
#define _cleanup_json_ __attribute__((cleanup(plan_json_release)))

static const struct {
	const char *name;
	struct plan_limits limits;
} plans[] = {
    {"free",
     {.max_sessions = 10,
      .max_ttl_s = 86400,
      .overrides = false,
      .memory_max_mb = 1024,
      .cpu_max = 0.25,
      .disk_max_mb = 1024,
      .timeout_default_s = 30,
      .timeout_max_s = 30,
      .requests_per_minute = 100,
      .max_file_bytes = 10 << 20,
      .egress = 0,
      .egress_default = 0,
      .egress_mbps = 10,
      .egress_connections = 64}},
    {"paid",
     {.max_sessions = 100,
      .max_ttl_s = 604800,
      .overrides = true,
      .memory_max_mb = 4096,
      .cpu_max = 1,
      .disk_max_mb = 5120,
      .timeout_default_s = 30,
      .timeout_max_s = 300,
      .requests_per_minute = 1000,
      .max_file_bytes = 50 << 20,
      .egress = 1,
      .egress_default = 0,
      .egress_mbps = 100,
      .egress_connections = 256}},
    /* Enterprise numbers are set per key; these are where a key starts. */
    {"enterprise",
     {.max_sessions = 1000,
      .max_ttl_s = 2592000,
      .overrides = true,
      .memory_max_mb = 16384,
      .cpu_max = 2,
      .disk_max_mb = 20480,
      .timeout_default_s = 30,
      .timeout_max_s = 3600,
      .requests_per_minute = 10000,
      .max_file_bytes = 100 << 20,
      .egress = 1,
      .egress_default = 0,
      .egress_mbps = 1000,
      .egress_connections = 1024}},
};

const struct plan_limits *plan_lookup(const char *name)
{
	for (size_t i = 0; i < ARRAY_SIZE(plans); i++)
		if (strcmp(plans[i].name, name) == 0)
			return &plans[i].limits;
	return NULL;
}

/* ---- per-key overrides ---- */

static const struct plan_field_desc {
	const char *name;
	size_t offset;
	enum { PF_INT, PF_INT64, PF_DOUBLE } type;
	double min, max;
} plan_fields[PLAN_FIELD_COUNT] = {
    [PLAN_MAX_SESSIONS] = {"max_sessions", offsetof(struct plan_limits, max_sessions), PF_INT, 0,
			   1000000},
    /* The daemon's shortest ttl (--min-ttl, 300 s by default) still
     * applies: a maximum below it leaves the key no valid ttl. */
    [PLAN_MAX_TTL] = {"max_ttl", offsetof(struct plan_limits, max_ttl_s), PF_INT, 1, 315360000},
    [PLAN_MEMORY_MAX] = {"memory_max", offsetof(struct plan_limits, memory_max_mb), PF_INT, 64,
			 1048576},
    [PLAN_CPU_MAX] = {"cpu_max", offsetof(struct plan_limits, cpu_max), PF_DOUBLE, 0.01, 1024},
    [PLAN_DISK_MAX] = {"disk_max", offsetof(struct plan_limits, disk_max_mb), PF_INT, 16, 16777216},
    [PLAN_TIMEOUT_DEFAULT] = {"timeout_default", offsetof(struct plan_limits, timeout_default_s),
			      PF_INT, 1, 86400},
    [PLAN_TIMEOUT_MAX] = {"timeout_max", offsetof(struct plan_limits, timeout_max_s), PF_INT, 1,
			  86400},
    [PLAN_RPM] = {"rpm", offsetof(struct plan_limits, requests_per_minute), PF_INT, 1, 100000000},
    /* A file travels in one agent frame (AGENT_MAX_PAYLOAD, 160 MiB):
     * 128 MiB leaves room for the frame's other fields. */
    [PLAN_MAX_FILE_SIZE] = {"max_file_size", offsetof(struct plan_limits, max_file_bytes), PF_INT64,
			    1, 134217728},
    [PLAN_EGRESS] = {"egress", offsetof(struct plan_limits, egress), PF_INT, 0, 1},
    [PLAN_EGRESS_DEFAULT] = {"egress_default", offsetof(struct plan_limits, egress_default), PF_INT,
			     0, 1},
    [PLAN_EGRESS_MBPS] = {"egress_mbps", offsetof(struct plan_limits, egress_mbps), PF_INT, 1,
			  100000},
    [PLAN_EGRESS_CONNECTIONS] = {"egress_connections",
				 offsetof(struct plan_limits, egress_connections), PF_INT, 1,
				 65536},
};

const char *plan_field_name(enum plan_field f)
{
	return f < PLAN_FIELD_COUNT ? plan_fields[f].name : "?";
}

/* The field called name, '-' and '_' alike, or -1. */
static int plan_field_find(const char *name)
{
	for (int f = 0; f < PLAN_FIELD_COUNT; f++) {
		const char *a = plan_fields[f].name, *b = name;
		while (*a && (*a == *b || (*a == '_' && *b == '-')))
			a++, b++;
		if (*a == '\0' && *b == '\0')
			return f;
	}
	return -1;
}

static void plan_field_store(struct plan_limits *l, int f, double v)
{
	char *at = (char *)l + plan_fields[f].offset;
	switch (plan_fields[f].type) {
	case PF_INT:
		*(int *)at = (int)v;
		break;
	case PF_INT64:
		*(int64_t *)at = (int64_t)v;
		break;
	case PF_DOUBLE:
		/* the offset is of a double field (plan_fields[].type) */
		/* cppcheck-suppress invalidPointerCast */
		*(double *)at = v;
		break;
	}
}

static double plan_field_load(const struct plan_limits *l, int f)
{
	const char *at = (const char *)l + plan_fields[f].offset;
	switch (plan_fields[f].type) {
	case PF_INT:
		return *(const int *)at;
	case PF_INT64:
		return (double)*(const int64_t *)at;
	default:
		/* the offset is of a double field (plan_fields[].type) */
		/* cppcheck-suppress invalidPointerCast */
		return *(const double *)at;
	}
}

/* Checks v against field f and sets it in ov. */
static int plan_overrides_put(struct plan_overrides *ov, int f, double v, bool integral,
			      struct bk_err *err)
{
	const struct plan_field_desc *d = &plan_fields[f];
	if (!(v >= d->min && v <= d->max))
		return bk_err_field(err, d->name, "%s must be %g..%g", d->name, d->min, d->max);
	/* In range, so the cast is defined. */
	if (d->type != PF_DOUBLE && (!integral || v != (double)(int64_t)v))
		return bk_err_field(err, d->name, "%s must be a whole number", d->name);
	plan_field_store(&ov->values, f, v);
	ov->set |= 1u << f;
	return 0;
}

int plan_overrides_set(struct plan_overrides *ov, const char *name, const char *value,
		       struct bk_err *err)
{
	int f = plan_field_find(name);
	if (f < 0)
		return bk_err_field(err, name, "'%s' is not a number a key can override", name);
	char *end;
	errno = 0;
	double v = strtod(value, &end);
	if (*value == '\0' || *end != '\0' || errno != 0 || !isfinite(v))
		return bk_err_field(err, plan_fields[f].name, "%s takes a number, not '%s'",
				    plan_fields[f].name, value);
	return plan_overrides_put(ov, f, v, strpbrk(value, ".eE") == NULL, err);
}

void plan_overrides_apply(const struct plan_overrides *ov, struct plan_limits *limits)
{
	for (int f = 0; f < PLAN_FIELD_COUNT; f++)
		if (ov->set & (1u << f))
			plan_field_store(limits, f, plan_field_load(&ov->values, f));
}

int plan_overrides_format(const struct plan_overrides *ov, char *buf, size_t len,
			  struct bk_err *err)
{
	_cleanup_json_ json_t *o = json_object();
	for (int f = 0; o && f < PLAN_FIELD_COUNT; f++) {
		if (!(ov->set & (1u << f)))
			continue;
		double v = plan_field_load(&ov->values, f);
		json_object_set_new(o, plan_fields[f].name,
				    plan_fields[f].type == PF_DOUBLE ? json_real(v)
								     : json_integer((json_int_t)v));
	}
	_cleanup_free_ char *text =
	    o ? json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(10)) : NULL;
	if (text == NULL || strlen(text) >= len)
		return bk_err_kind(err, BK_E_INTERNAL, "cannot format key overrides");
	memcpy(buf, text, strlen(text) + 1);
	return 0;
}

int plan_overrides_parse(const char *json, struct plan_overrides *ov, struct bk_err *err)
{
	memset(ov, 0, sizeof(*ov));
	if (json == NULL || *json == '\0')
		return 0;
	json_error_t je;
	_cleanup_json_ json_t *o = json_loads(json, JSON_REJECT_DUPLICATES, &je);
	if (!json_is_object(o))
		return bk_err_kind(err, BK_E_INTERNAL, "key overrides '%s' are not a JSON object",
				   json);
	const char *name;
	json_t *v;
	json_object_foreach (o, name, v) {
		int f = plan_field_find(name);
		if (f < 0 || !json_is_number(v) ||
		    plan_overrides_put(ov, f, json_number_value(v), json_is_integer(v), err) < 0)
			return bk_err_kind(err, BK_E_INTERNAL, "key override '%s' is not valid",
					   name);
	}
	return 0;
}

/* The limits of a key: its plan's, with its own numbers over them. */
static int key_limits(const char *plan, const struct plan_overrides *ov, struct plan_limits *out,
		      struct bk_err *err)
{
	const struct plan_limits *limits = plan_lookup(plan);
	if (limits == NULL)
		return bk_err_field(err, "plan", "unknown plan '%s' (free, paid or enterprise)",
				    plan);
	*out = *limits;
	if (ov)
		plan_overrides_apply(ov, out);
	if (out->timeout_default_s > out->timeout_max_s)
		return bk_err_field(err, "timeout_default",
				    "timeout_default %d s is above timeout_max %d s",
				    out->timeout_default_s, out->timeout_max_s);
	return 0;
}

/* ---- keys ---- */

static void key_hash(const char *secret, uint8_t out[32])
{
	crypto_generichash(out, 32, (const unsigned char *)secret, strlen(secret), NULL, 0);
}

int core_key_create(struct core *core, const char *plan, const struct plan_overrides *ov,
		    char *secret, size_t len, struct core_key *out, struct bk_err *err)
{
	struct plan_limits limits;
	if (key_limits(plan, ov, &limits, err) < 0)
		return -1;
	/* 40 characters of [a-z0-9]: 206 bits. */
	char rnd[41], kid[17];
	if (len < 44 || random_alnum(rnd, 40, err) < 0 || random_alnum(kid, 16, err) < 0)
		return bk_err_set(err, EINVAL, "cannot create key");
	struct store_key k = {.created_ms = now_ms()};
	snprintf(k.id, sizeof(k.id), "key_%s", kid);
	snprintf(k.plan, sizeof(k.plan), "%s", plan);
	struct plan_overrides none = {0};
	if (plan_overrides_format(ov ? ov : &none, k.overrides, sizeof(k.overrides), err) < 0)
		return -1;
	snprintf(secret, len, CORE_KEY_PREFIX "%s", rnd);
	key_hash(secret, k.hash);
	if (core->store->ops->key_insert(core->store, &k, err) < 0)
		return -1;
	if (out) {
		snprintf(out->id, sizeof(out->id), "%s", k.id);
		snprintf(out->plan, sizeof(out->plan), "%s", k.plan);
		out->limits = limits;
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
	int r = core->store->ops->key_find_by_hash(core->store, hash, &k, err);
	if (r < 0)
		return -1;
	if (r == 0 || k.revoked_ms != 0)
		return bk_err_kind(err, BK_E_UNAUTHORIZED, "invalid API key");
	struct plan_overrides ov;
	if (plan_overrides_parse(k.overrides, &ov, err) < 0 ||
	    key_limits(k.plan, &ov, &out->limits, err) < 0) {
		/* The stored key is broken, not the request. */
		err->kind = BK_E_INTERNAL;
		err->field[0] = '\0';
		bk_err_prefix(err, "key %s", k.id);
		return -1;
	}
	snprintf(out->id, sizeof(out->id), "%s", k.id);
	snprintf(out->plan, sizeof(out->plan), "%s", k.plan);
	return 0;
}

int core_key_list(struct core *core, struct core_key_info **out, size_t *n, struct bk_err *err)
{
	*out = NULL;
	*n = 0;
	_cleanup_free_ struct store_key *keys = NULL;
	size_t count;
	if (core->store->ops->key_list(core->store, &keys, &count, err) < 0)
		return -1;
	_cleanup_free_ struct core_key_info *infos = calloc(count + 1, sizeof(*infos));
	if (infos == NULL)
		return bk_err_set(err, errno, "cannot list keys");
	for (size_t i = 0; i < count; i++) {
		struct core_key_info *info = &infos[i];
		snprintf(info->id, sizeof(info->id), "%s", keys[i].id);
		snprintf(info->plan, sizeof(info->plan), "%s", keys[i].plan);
		info->created_ms = keys[i].created_ms;
		info->revoked_ms = keys[i].revoked_ms;
		if (plan_overrides_parse(keys[i].overrides, &info->overrides, err) < 0) {
			bk_err_prefix(err, "key %s", keys[i].id);
			return -1;
		}
	}
	*out = steal_ptr(&infos);
	*n = count;
	return 0;
}

int core_key_revoke(struct core *core, const char *id, struct bk_err *err)
{
	int r = core->store->ops->key_revoke(core->store, id, now_ms(), err);
	if (r < 0)
		return -1;
	if (r == 0)
		return bk_err_kind(err, BK_E_NOT_FOUND, "no key '%s'", id);
	return 0;
}
