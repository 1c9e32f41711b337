/* core/network.c: the outbound network policy as the API takes it (both
 * dialects' field names, every field's type and value checked, errors
 * naming the field), as it is kept (snake_case, normal forms), merged
 * with a PATCH, shown in each dialect's case, and handed to the backend.
 * No daemon, no store, no sandbox. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../harness.h"
#include "core/core_int.h"

static struct plan_limits plan_with_egress(void)
{
	struct plan_limits p = *plan_lookup("paid");
	p.egress = 1;
	p.egress_default = 0;
	p.egress_mbps = 100;
	p.egress_connections = 256;
	return p;
}

/* The merge of patch into stored (snake_case unless camel), which must
 * succeed: the stored text (caller frees). */
static char *merge_ok(const char *stored, const char *patch, bool camel)
{
	struct plan_limits plan = plan_with_egress();
	struct bk_err err = BK_ERR_INIT;
	char *out = NULL;
	int r = core__network_merge(stored, patch, camel, "", &plan, &out, &err);
	CHECK_MSG(r == 0 && out != NULL, "'%s' refused: %s (%s)", patch, err.msg, err.field);
	return out;
}

/* The merge of patch into the deny-all policy, which must fail naming
 * field with type; returns the message. */
static void merge_refused(const char *patch, bool camel, const char *prefix, const char *field,
			  const char *type, char *msg, size_t len)
{
	struct plan_limits plan = plan_with_egress();
	struct bk_err err = BK_ERR_INIT;
	char *out = NULL;
	int r = core__network_merge(NULL, patch, camel, prefix, &plan, &out, &err);
	CHECK_MSG(r < 0, "'%s' accepted as %s", patch, out ? out : "?");
	CHECK_MSG(out == NULL, "a refused merge gave a policy");
	CHECK_INT_EQ(err.kind, BK_E_INVALID);
	CHECK_STR_EQ(err.field, field);
	if (type)
		CHECK_STR_EQ(err.type, type);
	if (msg)
		snprintf(msg, len, "%s", err.msg);
}

/* The list field of stored text, as one string "a,b,c". */
static void list_of(const char *stored, const char *field, char *out, size_t len)
{
	json_t *o = json_loads(stored, 0, NULL);
	CHECK_MSG(json_is_object(o), "stored policy is not an object: %s", stored);
	json_t *l = json_object_get(o, field);
	CHECK_MSG(json_is_array(l), "%s is not a list in %s", field, stored);
	size_t i, n = 0;
	json_t *v;
	out[0] = '\0';
	json_array_foreach (l, i, v)
		n += (size_t)snprintf(out + n, n < len ? len - n : 0, "%s%s", i ? "," : "",
				      json_string_value(v));
	json_decref(o);
}

/* The one entry of field that value normalises to (or "" if refused). */
static void one(const char *field, const char *value, char *out, size_t len)
{
	char patch[1024];
	snprintf(patch, sizeof(patch), "{\"%s\":[\"%s\"]}", field, value);
	struct plan_limits plan = plan_with_egress();
	struct bk_err err = BK_ERR_INIT;
	char *stored = NULL;
	out[0] = '\0';
	if (core__network_merge(NULL, patch, false, "", &plan, &stored, &err) == 0) {
		list_of(stored, field, out, len);
		free(stored);
	} else {
		CHECK_STR_EQ(err.field, field);
		CHECK_STR_EQ(err.type, "value_error");
	}
}

#define CHECK_CIDR(in, want)                                                                       \
	do {                                                                                       \
		char _got[128];                                                                    \
		one("allowed_cidrs", in, _got, sizeof(_got));                                      \
		CHECK_MSG(strcmp(_got, want) == 0, "cidr '%s' -> '%s', want '%s'", in, _got,       \
			  want);                                                                   \
	} while (0)

#define CHECK_DOMAIN(in, want)                                                                     \
	do {                                                                                       \
		char _got[600];                                                                    \
		one("allowed_domains", in, _got, sizeof(_got));                                    \
		CHECK_MSG(strcmp(_got, want) == 0, "domain '%s' -> '%s', want '%s'", in, _got,     \
			  want);                                                                   \
	} while (0)

static const char *const snake[] = {"allow_package_managers", "allow_http", "allow_https",
				    "allowed_domains", "allowed_cidrs"};
static const char *const camel[] = {"allowPackageManagers", "allowHttp", "allowHttps",
				    "allowedDomains", "allowedCidrs"};

/* Every field with a value of every wrong type, in each dialect's name,
 * is refused naming exactly that field (behind the prefix) with its
 * FastAPI type. */
TEST(every_field_wrong_type_is_named)
{
	const char *not_bool[] = {"1", "0", "\"true\"", "null", "[]", "{}", "1.5"};
	const char *not_list[] = {"\"a.com\"", "1", "true", "null", "{}"};
	for (int dialect = 0; dialect < 2; dialect++) {
		const char *const *names = dialect ? camel : snake;
		for (int f = 0; f < 5; f++) {
			bool is_bool = f < 3;
			size_t n = is_bool ? ARRAY_SIZE(not_bool) : ARRAY_SIZE(not_list);
			for (size_t k = 0; k < n; k++) {
				char patch[256], field[128];
				snprintf(patch, sizeof(patch), "{\"%s\":%s}", names[f],
					 is_bool ? not_bool[k] : not_list[k]);
				snprintf(field, sizeof(field), "network.%s", names[f]);
				merge_refused(patch, dialect, "network.", field,
					      is_bool ? "bool_type" : "list_type", NULL, 0);
			}
		}
		/* A list of something other than strings. */
		for (int f = 3; f < 5; f++) {
			char patch[256], msg[512];
			snprintf(patch, sizeof(patch), "{\"%s\":[1]}", names[f]);
			merge_refused(patch, dialect, "", names[f], "value_error", msg,
				      sizeof(msg));
			CHECK_MSG(strstr(msg, "not a string") != NULL, "unclear: %s", msg);
		}
	}
}

/* Every field at fault is named, not the first alone. */
TEST(every_field_at_fault_is_reported)
{
	struct plan_limits plan = plan_with_egress();
	struct bk_err err = BK_ERR_INIT;
	char *out = NULL;
	CHECK(core__network_merge(NULL,
				  "{\"allowPackageManagers\":1,\"allowHttp\":\"x\",\"allowHttps\":"
				  "null,\"allowedDomains\":\"a.com\",\"allowedCidrs\":[\"x\"]}",
				  true, "", &plan, &out, &err) < 0);
	CHECK_STR_EQ(err.field, "allowPackageManagers");
	CHECK_INT_EQ(err.n_more, 4);
	for (int i = 0; i < err.n_more && i < 4; i++)
		CHECK_STR_EQ(err.more[i].field, camel[i + 1]);
}

/* The body itself must be an object; no patch at all changes nothing. */
TEST(patch_must_be_an_object)
{
	merge_refused("[]", false, "", "body", NULL, NULL, 0);
	merge_refused("\"x\"", false, "", "body", NULL, NULL, 0);
	merge_refused("{not json", false, "", "body", NULL, NULL, 0);
	merge_refused("null", true, "network", "network", NULL, NULL, 0);
	char *out = merge_ok(NULL, NULL, false);
	CHECK(!core__network_grants(out));
	free(out);
}

/* CIDRs: normal form with host bits cleared, /32 for an address,
 * 0.0.0.0/0 kept as the whole of IPv4 (what it opens, the backend
 * decides: never a private range, SECURITY.md), duplicates after
 * normalising kept once, IPv6 refused with its own message, and every
 * malformed form refused. */
TEST(cidrs_normalised_and_malformed_refused)
{
	CHECK_CIDR("198.51.100.7", "198.51.100.7/32");
	CHECK_CIDR("198.51.100.7/32", "198.51.100.7/32");
	CHECK_CIDR("198.51.100.7/24", "198.51.100.0/24");
	CHECK_CIDR("10.1.2.3/8", "10.0.0.0/8");
	CHECK_CIDR("10.1.2.3/7", "10.0.0.0/7");
	CHECK_CIDR("0.0.0.0/0", "0.0.0.0/0");
	CHECK_CIDR("1.2.3.4/0", "0.0.0.0/0");
	CHECK_CIDR("255.255.255.255/31", "255.255.255.254/31");
	const char *bad[] = {"",
			     "/8",
			     "1.2.3.4/",
			     "1.2.3.4/33",
			     "1.2.3.4/-1",
			     "1.2.3.4/8x",
			     "1.2.3.4/ 8",
			     "1.2.3.4/+8",
			     "1.2.3.4/-0",
			     "1.2.3.4/0x8",
			     "1.2.3.4/8/8",
			     "1.2.3",
			     "1.2.3.4.5",
			     "256.1.1.1",
			     "01.2.3.4",
			     " 1.2.3.4",
			     "1.2.3.4 ",
			     "example.com",
			     "1.2.3.4/999999999999999999999"};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
		CHECK_CIDR(bad[i], "");
	char msg[512];
	merge_refused("{\"allowed_cidrs\":[\"::1/128\"]}", false, "", "allowed_cidrs",
		      "value_error", msg, sizeof(msg));
	CHECK_MSG(strstr(msg, "IPv6") != NULL, "unclear: %s", msg);
	merge_refused("{\"allowedCidrs\":[\"2001:db8::/32\"]}", true, "", "allowedCidrs",
		      "value_error", msg, sizeof(msg));
	CHECK_MSG(strstr(msg, "IPv6") != NULL, "unclear: %s", msg);
	merge_refused("{\"allowed_cidrs\":[\"::ffff:1.2.3.4\"]}", false, "", "allowed_cidrs",
		      "value_error", NULL, 0);
	char *out = merge_ok(
	    NULL, "{\"allowed_cidrs\":[\"10.0.0.1/8\",\"10.0.0.0/8\",\"10.9.9.9/8\",\"1.1.1.1\"]}",
	    false);
	char l[256];
	list_of(out, "allowed_cidrs", l, sizeof(l));
	CHECK_STR_EQ(l, "10.0.0.0/8,1.1.1.1/32");
	free(out);
}

/* At most SBX_NET_CIDRS_MAX CIDRs and SBX_NET_DOMAINS_MAX names. */
TEST(lists_hold_at_most_64)
{
	for (int f = 0; f < 2; f++) {
		const char *field = f ? "allowed_domains" : "allowed_cidrs";
		for (int n = 64; n <= 65; n++) {
			char patch[8192];
			size_t o = (size_t)snprintf(patch, sizeof(patch), "{\"%s\":[", field);
			for (int i = 0; i < n; i++)
				o += (size_t)snprintf(patch + o, sizeof(patch) - o,
						      f ? "%s\"h%d.example.com\""
							: "%s\"198.51.100.%d\"",
						      i ? "," : "", i);
			snprintf(patch + o, sizeof(patch) - o, "]}");
			if (n == 64) {
				free(merge_ok(NULL, patch, false));
			} else {
				char msg[512];
				merge_refused(patch, false, "", field, "too_long", msg,
					      sizeof(msg));
				CHECK_MSG(strstr(msg, "64") != NULL, "unclear: %s", msg);
			}
		}
	}
}

/* Names: lower case, the trailing dot dropped, "*." for the names below
 * a name of two labels or more; labels of [a-z0-9-] not starting or
 * ending with '-', 1..63 of them, at most 253 in all; an address is not a
 * name; duplicates after normalising kept once. */
TEST(domains_normalised_and_malformed_refused)
{
	CHECK_DOMAIN("example.com", "example.com");
	CHECK_DOMAIN("Example.COM", "example.com");
	CHECK_DOMAIN("example.com.", "example.com");
	CHECK_DOMAIN("*.Example.com.", "*.example.com");
	CHECK_DOMAIN("*.co.uk", "*.co.uk");
	CHECK_DOMAIN("a-b.c0.example", "a-b.c0.example");
	CHECK_DOMAIN("123.com", "123.com");
	CHECK_DOMAIN("xn--bcher-kva.de", "xn--bcher-kva.de");
	const char *bad[] = {"",
			     ".",
			     "com",
			     "localhost.",
			     "*",
			     "*.",
			     "*.com",
			     "**.example.com",
			     "*example.com",
			     "a.*.example.com",
			     "example.*",
			     ".example.com",
			     "example..com",
			     "example.com..",
			     "-a.example.com",
			     "a-.example.com",
			     "a_b.example.com",
			     "a b.example.com",
			     "bücher.de",
			     "1.2.3.4",
			     "1.2.3.4.",
			     "123.456",
			     "example.com:80",
			     "http://example.com"};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
		CHECK_DOMAIN(bad[i], "");
	/* Label lengths: 63 is the most. */
	char name[600], want[600];
	snprintf(name, sizeof(name), "%.63s.example.com",
		 "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
	CHECK_DOMAIN(name, name);
	snprintf(name, sizeof(name), "%.64s.example.com",
		 "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
	CHECK_DOMAIN(name, "");
	/* 253 characters in all is the most, with or without the trailing
	 * dot; 254 is refused. */
	const char *l63 = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
	snprintf(name, sizeof(name), "%s.%s.%s.%.61s", l63, l63, l63, l63); /* 253 */
	CHECK_INT_EQ(strlen(name), 253);
	CHECK_DOMAIN(name, name);
	snprintf(want, sizeof(want), "%s", name);
	snprintf(name, sizeof(name), "%s.", want);
	CHECK_DOMAIN(name, want);
	snprintf(name, sizeof(name), "%s.%s.%s.%.62s", l63, l63, l63, l63); /* 254 */
	CHECK_DOMAIN(name, "");
	char *out = merge_ok(NULL,
			     "{\"allowed_domains\":[\"A.example.com\",\"a.example.com.\","
			     "\"*.example.com\",\"b.example.com\"]}",
			     false);
	char l[256];
	list_of(out, "allowed_domains", l, sizeof(l));
	CHECK_STR_EQ(l, "a.example.com,*.example.com,b.example.com");
	free(out);
}

/* A PATCH replaces the fields it names, wholesale, and keeps the others;
 * the plan's caps are written again each time; a refused PATCH changes
 * nothing. */
TEST(patch_merges_into_the_stored_policy)
{
	char *a = merge_ok(NULL,
			   "{\"allowHttps\":true,\"allowedDomains\":[\"a.example.com\"],"
			   "\"allowedCidrs\":[\"198.51.100.0/24\"]}",
			   true);
	char *b = merge_ok(a, "{\"allowHttp\":true}", true);
	json_t *o = json_loads(b, 0, NULL);
	CHECK(json_is_true(json_object_get(o, "allow_http")));
	CHECK(json_is_true(json_object_get(o, "allow_https")));
	CHECK(json_is_false(json_object_get(o, "allow_package_managers")));
	CHECK_INT_EQ(json_integer_value(json_object_get(o, "bandwidth_mbps")), 100);
	CHECK_INT_EQ(json_integer_value(json_object_get(o, "max_connections")), 256);
	json_decref(o);
	char l[256];
	list_of(b, "allowed_domains", l, sizeof(l));
	CHECK_STR_EQ(l, "a.example.com");
	/* A list is replaced, not appended to. */
	char *c =
	    merge_ok(b, "{\"allowed_domains\":[\"b.example.com\"],\"allow_https\":false}", false);
	list_of(c, "allowed_domains", l, sizeof(l));
	CHECK_STR_EQ(l, "b.example.com");
	list_of(c, "allowed_cidrs", l, sizeof(l));
	CHECK_STR_EQ(l, "198.51.100.0/24");
	/* Emptied lists and false switches grant nothing. */
	char *d = merge_ok(c, "{\"allowed_domains\":[],\"allowed_cidrs\":[],\"allow_http\":false}",
			   false);
	CHECK(core__network_grants(c));
	CHECK(!core__network_grants(d));
	/* An empty PATCH keeps everything. */
	char *e = merge_ok(c, "{}", false);
	CHECK_STR_EQ(e, c);
	/* A stored text that is not a policy reads as deny-all. */
	char *f = merge_ok("not json", "{\"allow_http\":true}", false);
	o = json_loads(f, 0, NULL);
	CHECK(json_is_true(json_object_get(o, "allow_http")));
	CHECK_INT_EQ(json_array_size(json_object_get(o, "allowed_domains")), 0);
	json_decref(o);
	/* The plan's caps follow the plan now, not the stored numbers. */
	struct plan_limits plan = plan_with_egress();
	plan.egress_mbps = 7;
	struct bk_err err = BK_ERR_INIT;
	char *g = NULL;
	CHECK(core__network_merge(c, "{}", false, "", &plan, &g, &err) == 0);
	o = json_loads(g, 0, NULL);
	CHECK_INT_EQ(json_integer_value(json_object_get(o, "bandwidth_mbps")), 7);
	json_decref(o);
	/* A refused PATCH leaves *out alone. */
	char *h = NULL;
	struct bk_err err2 = BK_ERR_INIT;
	CHECK(core__network_merge(c, "{\"allow_http\":true,\"allowed_cidrs\":[\"x\"]}", false, "",
				  &plan, &h, &err2) < 0);
	CHECK(h == NULL);
	free(a);
	free(b);
	free(c);
	free(d);
	free(e);
	free(f);
	free(g);
}

/* Each dialect reads its own field names: a camelCase PATCH does not
 * read snake_case names, and the other way round. */
TEST(each_dialect_reads_its_own_names)
{
	char *a = merge_ok(NULL, "{\"allow_http\":true,\"allowedCidrs\":[\"1.1.1.1\"]}", true);
	json_t *o = json_loads(a, 0, NULL);
	CHECK(json_is_false(json_object_get(o, "allow_http")));
	CHECK_INT_EQ(json_array_size(json_object_get(o, "allowed_cidrs")), 1);
	json_decref(o);
	char *b = merge_ok(NULL, "{\"allow_http\":true,\"allowedCidrs\":[\"1.1.1.1\"]}", false);
	o = json_loads(b, 0, NULL);
	CHECK(json_is_true(json_object_get(o, "allow_http")));
	CHECK_INT_EQ(json_array_size(json_object_get(o, "allowed_cidrs")), 0);
	json_decref(o);
	free(a);
	free(b);
}

/* The views: snake_case is the stored object; camelCase has the five
 * fields and the caps renamed, nothing else; an empty policy reads as
 * deny-all in both. */
TEST(views_in_each_case)
{
	char *s =
	    merge_ok(NULL,
		     "{\"allow_package_managers\":true,\"allowed_domains\":[\"a.example.com\"],"
		     "\"allowed_cidrs\":[\"1.2.3.4/24\"]}",
		     false);
	char *camel_view = core_network_view(s, true);
	json_t *c = json_loads(camel_view, 0, NULL);
	CHECK_INT_EQ(json_object_size(c), 7);
	CHECK(json_is_true(json_object_get(c, "allowPackageManagers")));
	CHECK(json_is_false(json_object_get(c, "allowHttp")));
	CHECK(json_is_false(json_object_get(c, "allowHttps")));
	CHECK_STR_EQ(json_string_value(json_array_get(json_object_get(c, "allowedDomains"), 0)),
		     "a.example.com");
	CHECK_STR_EQ(json_string_value(json_array_get(json_object_get(c, "allowedCidrs"), 0)),
		     "1.2.3.0/24");
	CHECK_INT_EQ(json_integer_value(json_object_get(c, "bandwidthMbps")), 100);
	CHECK_INT_EQ(json_integer_value(json_object_get(c, "maxConnections")), 256);
	CHECK(json_object_get(c, "allow_http") == NULL);
	json_decref(c);
	char *snake_view = core_network_view(s, false);
	json_t *k = json_loads(snake_view, 0, NULL);
	CHECK_INT_EQ(json_object_size(k), 7);
	CHECK(json_is_true(json_object_get(k, "allow_package_managers")));
	CHECK_INT_EQ(json_integer_value(json_object_get(k, "max_connections")), 256);
	CHECK(json_object_get(k, "allowHttp") == NULL);
	json_decref(k);
	for (int camel_case = 0; camel_case < 2; camel_case++) {
		char *v = core_network_view(NULL, camel_case);
		json_t *o = json_loads(v, 0, NULL);
		CHECK_INT_EQ(json_object_size(o), 5);
		CHECK(json_is_false(json_object_get(o, camel_case ? "allowHttps" : "allow_https")));
		CHECK_INT_EQ(json_array_size(
				 json_object_get(o, camel_case ? "allowedCidrs" : "allowed_cidrs")),
			     0);
		json_decref(o);
		free(v);
	}
	free(camel_view);
	free(snake_view);
	free(s);
}

/* A plan without egress takes the deny-all policy only; the default of a
 * create follows the plan. */
TEST(plan_decides_egress_and_the_default)
{
	struct plan_limits plan = plan_with_egress();
	plan.egress = 0;
	const char *grants[] = {
	    "{\"allow_http\":true}", "{\"allow_https\":true}", "{\"allow_package_managers\":true}",
	    "{\"allowed_domains\":[\"a.example.com\"]}", "{\"allowed_cidrs\":[\"1.1.1.1\"]}"};
	for (size_t i = 0; i < ARRAY_SIZE(grants); i++) {
		struct bk_err err = BK_ERR_INIT;
		char *out = NULL;
		CHECK(core__network_merge(NULL, grants[i], false, "", &plan, &out, &err) < 0);
		CHECK_INT_EQ(err.kind, BK_E_FORBIDDEN);
		CHECK(out == NULL);
	}
	struct bk_err err = BK_ERR_INIT;
	char *out = NULL;
	CHECK(core__network_merge(NULL, "{\"allow_http\":false,\"allowed_cidrs\":[]}", false, "",
				  &plan, &out, &err) == 0);
	CHECK(!core__network_grants(out));
	free(out);
	out = core__network_default(&plan);
	CHECK(out && !core__network_grants(out));
	free(out);
	plan = plan_with_egress();
	out = core__network_default(&plan);
	CHECK(out && !core__network_grants(out));
	free(out);
	plan.egress_default = 1;
	out = core__network_default(&plan);
	json_t *o = json_loads(out, 0, NULL);
	CHECK(json_is_true(json_object_get(o, "allow_package_managers")));
	json_decref(o);
	free(out);
}

/* The backend's form: the switches, the caps, the registries for
 * allow_package_managers before the policy's names, the CIDRs parsed;
 * nothing of the policy is dropped, however full it is. */
TEST(backend_form_keeps_everything)
{
	struct sbx_net *net = malloc(sizeof(*net));
	CHECK(net != NULL);
	core__network_to_sbx(NULL, net);
	CHECK(!net->enabled);
	char patch[8192];
	size_t o = (size_t)snprintf(patch, sizeof(patch),
				    "{\"allow_package_managers\":true,\"allow_https\":true,"
				    "\"allowed_cidrs\":[\"10.1.2.3/8\",\"0.0.0.0/0\"],"
				    "\"allowed_domains\":[");
	for (int i = 0; i < SBX_NET_DOMAINS_MAX; i++)
		o += (size_t)snprintf(patch + o, sizeof(patch) - o, "%s\"h%d.example.com\"",
				      i ? "," : "", i);
	snprintf(patch + o, sizeof(patch) - o, "]}");
	char *s = merge_ok(NULL, patch, false);
	core__network_to_sbx(s, net);
	CHECK(net->enabled);
	CHECK(net->https && !net->http);
	CHECK_INT_EQ(net->mbps, 100);
	CHECK_INT_EQ(net->connections, 256);
	CHECK_INT_EQ(net->n_cidrs, 2);
	CHECK_INT_EQ(net->cidrs[0].addr, 0x0a000000);
	CHECK_INT_EQ(net->cidrs[0].prefix, 8);
	CHECK_INT_EQ(net->cidrs[1].addr, 0);
	CHECK_INT_EQ(net->cidrs[1].prefix, 0);
	CHECK_STR_EQ(net->domains[0], "registry.npmjs.org");
	/* Every one of the policy's 64 names is there, the last included. */
	bool last = false;
	for (size_t i = 0; i < net->n_domains; i++)
		last |= strcmp(net->domains[i], "h63.example.com") == 0;
	CHECK_MSG(last, "the policy's last name was dropped (%zu names in the backend's form)",
		  net->n_domains);
	CHECK_INT_EQ(net->n_domains, SBX_NET_DOMAINS_MAX + 5);
	free(s);
	free(net);
}
