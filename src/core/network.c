/* Sessions' outbound network policy: InstaVM's egress object
 * (allow_package_managers, allow_http, allow_https, allowed_domains,
 * allowed_cidrs), checked against the key's plan, kept with the session
 * and handed to the backend, which enforces it (sandbox/egress.c). */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core_int.h"
#include "util/cleanup.h"

static inline void net_json_release(json_t **j)
{
	json_decref(*j);
}
#define _cleanup_json_ __attribute__((cleanup(net_json_release)))

/* What allow_package_managers opens: the registries `bun add`/`npm
 * install`, `pip install` and `apt-get` fetch from, by name. */
static const char *const package_registries[] = {
    "registry.npmjs.org",  "pypi.org", "files.pythonhosted.org", "deb.debian.org",
    "security.debian.org",
};

static const struct {
	const char *snake, *camel;
} net_fields[] = {
    {"allow_package_managers", "allowPackageManagers"},
    {"allow_http", "allowHttp"},
    {"allow_https", "allowHttps"},
    {"allowed_domains", "allowedDomains"},
    {"allowed_cidrs", "allowedCidrs"},
};

/* A name as a policy may hold it: labels of [a-z0-9-] (not at either end
 * of a label), at least two of them, at most 253 characters, optionally
 * "*." before it for every name below. out receives it in lower case. */
static bool domain_ok(const char *in, char *out, size_t len)
{
	size_t n = strlen(in);
	if (n && in[n - 1] == '.')
		n--;
	if (n == 0 || n >= len || n > 253)
		return false;
	const char *p = in;
	size_t o = 0;
	if (strncmp(in, "*.", 2) == 0) {
		out[o++] = '*';
		out[o++] = '.';
		p += 2;
		n -= 2;
	}
	int labels = 0;
	bool digits_only = true;
	size_t label = 0;
	for (size_t i = 0; i <= n; i++) {
		char c = i < n ? (char)tolower((unsigned char)p[i]) : '.';
		if (c == '.') {
			if (label == 0 || label > 63 || out[o - 1] == '-')
				return false;
			labels++;
			label = 0;
			if (i < n)
				out[o++] = '.';
			continue;
		}
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
			return false;
		if (c == '-' && label == 0)
			return false;
		if (!(c >= '0' && c <= '9'))
			digits_only = false;
		out[o++] = c;
		label++;
	}
	out[o] = '\0';
	/* An address is not a name: allowed_cidrs takes those. */
	return labels >= 2 && !digits_only;
}

/* "a.b.c.d" or "a.b.c.d/n" into its normal form (host bits cleared). */
static int cidr_parse(const char *in, struct sbx_net_cidr *out, char *text, size_t len)
{
	char a[64];
	const char *slash = strchr(in, '/');
	size_t alen = slash ? (size_t)(slash - in) : strlen(in);
	if (alen >= sizeof(a))
		return -1;
	snprintf(a, sizeof(a), "%.*s", (int)alen, in);
	struct in6_addr ia6;
	if (inet_pton(AF_INET6, a, &ia6) == 1)
		return -2; /* with any prefix: said as IPv6, not as malformed */
	long prefix = 32;
	if (slash) {
		/* Digits only: strtol() would take " 8", "+8" and "-0". */
		const char *d = slash + 1;
		size_t nd = strspn(d, "0123456789");
		if (nd == 0 || nd > 2 || d[nd] != '\0')
			return -1;
		prefix = strtol(d, NULL, 10);
		if (prefix > 32)
			return -1;
	}
	struct in_addr ia;
	if (inet_pton(AF_INET, a, &ia) != 1)
		return -1;
	uint32_t mask = prefix == 0 ? 0 : ~0u << (32 - prefix);
	out->addr = ntohl(ia.s_addr) & mask;
	out->prefix = (int)prefix;
	struct in_addr norm = {htonl(out->addr)};
	char s[INET_ADDRSTRLEN];
	inet_ntop(AF_INET, &norm, s, sizeof(s));
	snprintf(text, len, "%s/%d", s, out->prefix);
	return 0;
}

/* The canonical policy object (every field, snake_case) of stored text;
 * "" or NULL is the deny-all policy. New reference. */
static json_t *net_load(const char *stored)
{
	json_t *o = stored && *stored ? json_loads(stored, 0, NULL) : NULL;
	if (!json_is_object(o)) {
		json_decref(o);
		o = json_pack("{s:b,s:b,s:b,s:[],s:[]}", "allow_package_managers", 0, "allow_http",
			      0, "allow_https", 0, "allowed_domains", "allowed_cidrs");
	}
	return o;
}

bool core__network_grants(const char *stored)
{
	_cleanup_json_ json_t *o = net_load(stored);
	return json_is_true(json_object_get(o, "allow_package_managers")) ||
	       json_is_true(json_object_get(o, "allow_http")) ||
	       json_is_true(json_object_get(o, "allow_https")) ||
	       json_array_size(json_object_get(o, "allowed_domains")) > 0 ||
	       json_array_size(json_object_get(o, "allowed_cidrs")) > 0;
}

int core__network_merge(const char *stored, const char *patch, bool camel, const char *prefix,
			const struct plan_limits *plan, char **out, struct bk_err *err)
{
	_cleanup_json_ json_t *o = net_load(stored);
	_cleanup_json_ json_t *p = json_loads(patch ? patch : "{}", 0, NULL);
	if (!json_is_object(p))
		return bk_err_field(err, prefix[0] ? prefix : "body",
				    "the network policy must be an object");
	char loc[96];
	for (size_t f = 0; f < ARRAY_SIZE(net_fields); f++) {
		const char *name = camel ? net_fields[f].camel : net_fields[f].snake;
		json_t *v = json_object_get(p, name);
		snprintf(loc, sizeof(loc), "%s%s", prefix, name);
		if (v == NULL)
			continue;
		if (f < 3) {
			if (!json_is_boolean(v))
				bk_err_add(err, loc, "bool_type", "%s must be a boolean", name);
			else
				json_object_set(o, net_fields[f].snake, v);
			continue;
		}
		size_t max = f == 3 ? SBX_NET_DOMAINS_MAX : SBX_NET_CIDRS_MAX;
		if (!json_is_array(v)) {
			bk_err_add(err, loc, "list_type", "%s must be a list of strings", name);
			continue;
		}
		if (json_array_size(v) > max) {
			bk_err_add(err, loc, "too_long", "%s holds at most %zu entries", name, max);
			continue;
		}
		json_t *list = json_array();
		size_t i;
		json_t *item;
		json_array_foreach (v, i, item) {
			char norm[SBX_NET_DOMAIN_MAX];
			const char *s = json_string_value(item);
			struct sbx_net_cidr c;
			int r = s == NULL ? -1
				: f == 3  ? (domain_ok(s, norm, sizeof(norm)) ? 0 : -1)
					  : cidr_parse(s, &c, norm, sizeof(norm));
			if (r < 0) {
				bk_err_add(err, loc, "value_error",
					   r == -2  ? "%s: '%s' is IPv6, which sessions do not have"
					   : f == 3 ? "%s: '%s' is not a domain name (example.com, "
						      "*.example.com)"
						    : "%s: '%s' is not an IPv4 address or CIDR",
					   name, s ? s : "(not a string)");
				break;
			}
			bool dup = false;
			for (size_t k = 0; k < json_array_size(list); k++)
				dup |=
				    strcmp(json_string_value(json_array_get(list, k)), norm) == 0;
			if (!dup)
				json_array_append_new(list, json_string(norm));
		}
		json_object_set_new(o, net_fields[f].snake, list);
	}
	if (bk_err_is_set(err))
		return -1;
	json_object_set_new(o, "bandwidth_mbps", json_integer(plan->egress_mbps));
	json_object_set_new(o, "max_connections", json_integer(plan->egress_connections));
	_cleanup_free_ char *text = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
	if (text == NULL)
		return bk_err_set(err, ENOMEM, "cannot keep the network policy");
	if (core__network_grants(text) && !plan->egress)
		return bk_err_kind(err, BK_E_FORBIDDEN,
				   "this key's plan gives sessions no outbound network: only the "
				   "policy that grants nothing can be set");
	*out = steal_ptr(&text);
	return 0;
}

char *core__network_default(const struct plan_limits *plan)
{
	char *out = NULL;
	struct bk_err err = BK_ERR_INIT;
	core__network_merge(
	    NULL, plan->egress && plan->egress_default ? "{\"allow_package_managers\":true}" : "{}",
	    false, "", plan, &out, &err);
	return out;
}

char *core_network_view(const char *stored, bool camel)
{
	_cleanup_json_ json_t *o = net_load(stored);
	if (!camel)
		return json_dumps(o, JSON_COMPACT);
	_cleanup_json_ json_t *c = json_object();
	for (size_t f = 0; f < ARRAY_SIZE(net_fields); f++)
		json_object_set(c, net_fields[f].camel, json_object_get(o, net_fields[f].snake));
	json_t *v;
	if ((v = json_object_get(o, "bandwidth_mbps")))
		json_object_set(c, "bandwidthMbps", v);
	if ((v = json_object_get(o, "max_connections")))
		json_object_set(c, "maxConnections", v);
	return json_dumps(c, JSON_COMPACT);
}

void core__network_to_sbx(const char *stored, struct sbx_net *out)
{
	memset(out, 0, sizeof(*out));
	_cleanup_json_ json_t *o = net_load(stored);
	if (!core__network_grants(stored))
		return;
	out->enabled = true;
	out->http = json_is_true(json_object_get(o, "allow_http"));
	out->https = json_is_true(json_object_get(o, "allow_https"));
	json_t *v = json_object_get(o, "bandwidth_mbps");
	out->mbps = json_is_integer(v) ? (int)json_integer_value(v) : 10;
	v = json_object_get(o, "max_connections");
	out->connections = json_is_integer(v) ? (int)json_integer_value(v) : 64;
	_Static_assert(ARRAY_SIZE(package_registries) <= SBX_NET_REGISTRIES_MAX,
		       "struct sbx_net has no room for every registry");
	if (json_is_true(json_object_get(o, "allow_package_managers")))
		for (size_t i = 0; i < ARRAY_SIZE(package_registries); i++)
			snprintf(out->domains[out->n_domains++], SBX_NET_DOMAIN_MAX, "%s",
				 package_registries[i]);
	size_t i;
	json_array_foreach (json_object_get(o, "allowed_domains"), i, v)
		if (out->n_domains < ARRAY_SIZE(out->domains) && json_is_string(v))
			snprintf(out->domains[out->n_domains++], SBX_NET_DOMAIN_MAX, "%s",
				 json_string_value(v));
	json_array_foreach (json_object_get(o, "allowed_cidrs"), i, v) {
		char text[64];
		if (out->n_cidrs < SBX_NET_CIDRS_MAX && json_is_string(v) &&
		    cidr_parse(json_string_value(v), &out->cidrs[out->n_cidrs], text,
			       sizeof(text)) == 0)
			out->n_cidrs++;
	}
}

int core__session_net_apply_locked(struct core *core, struct session *s, struct bk_err *err)
{
	if (s->sbx == NULL || (!core__network_grants(s->network) && !s->net_applied))
		return 0;
	if (core->sbx->ops->net_set == NULL)
		return bk_err_kind(err, BK_E_UNAVAILABLE, "this backend gives sessions no network");
	_cleanup_free_ struct sbx_net *net = malloc(sizeof(*net));
	if (net == NULL)
		return bk_err_set(err, ENOMEM, "cannot apply the network of session %s", s->id);
	core__network_to_sbx(s->network, net);
	if (core->sbx->ops->net_set(s->sbx, net, err) < 0) {
		bk_err_prefix(err, "session %s", s->id);
		return -1;
	}
	s->net_applied = net->enabled;
	/* Counted now: from here on it is counted every so often too. */
	core__session_net_count_locked(core, s);
	if (net->enabled)
		core__pool_want_net(core);
	return 0;
}

int core_session_network_get(struct core *core, const struct core_key *key, const char *id,
			     bool camel, char **out, struct bk_err *err)
{
	struct session *s;
	if (core__session_acquire(core, key->id, id, &s, err) < 0)
		return -1;
	pthread_mutex_lock(&s->mu);
	*out = core_network_view(s->network, camel);
	pthread_mutex_unlock(&s->mu);
	core__session_release(core, s);
	return *out ? 0 : bk_err_set(err, ENOMEM, "cannot read the network of session %s", id);
}

int core_session_network_set(struct core *core, const struct core_key *key, const char *id,
			     const char *patch, bool camel, const char *prefix, char **out,
			     struct bk_err *err)
{
	struct session *s;
	if (core__session_acquire(core, key->id, id, &s, err) < 0)
		return -1;
	_cleanup_free_ char *merged = NULL;
	pthread_mutex_lock(&s->mu);
	int r = core__network_merge(s->network, patch, camel, prefix, &key->limits, &merged, err);
	if (r == 0)
		r = core->store->ops->session_set_network(core->store, s->id, merged, err) < 0 ? -1
											       : 0;
	if (r == 0) {
		free(s->network);
		s->network = steal_ptr(&merged);
		/* A running sandbox follows at once; a sleeping one gets it
		 * when it wakes. */
		r = core__session_net_apply_locked(core, s, err);
	}
	if (r == 0)
		*out = core_network_view(s->network, camel);
	pthread_mutex_unlock(&s->mu);
	core__session_release(core, s);
	if (r == 0 && *out == NULL)
		return bk_err_set(err, ENOMEM, "cannot read the network of session %s", id);
	return r;
}
