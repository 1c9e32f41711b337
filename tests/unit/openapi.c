/* api/openapi.c against the route tables: every route is documented, every
 * documented operation is routed, and the document holds together (its
 * $refs resolve, its path parameters are declared). A new route without
 * documentation fails here. Also the route matcher of api/router.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../harness.h"
#include "api/api_int.h"

static json_t *doc_load(void)
{
	json_error_t je;
	json_t *doc = json_loads(api_openapi_json, JSON_REJECT_DUPLICATES, &je);
	CHECK_MSG(doc != NULL, "openapi.json does not parse: line %d column %d: %s", je.line,
		  je.column, je.text);
	CHECK(json_is_object(doc));
	return doc;
}

static void lower(const char *in, char *out, size_t len)
{
	size_t i = 0;
	for (; in[i] && i + 1 < len; i++)
		out[i] = (char)(in[i] >= 'A' && in[i] <= 'Z' ? in[i] + 32 : in[i]);
	out[i] = '\0';
}

static const char *const http_methods[] = {"get",     "put",  "post",  "delete",
					   "options", "head", "patch", "trace"};

static bool is_method(const char *k)
{
	for (size_t i = 0; i < sizeof(http_methods) / sizeof(http_methods[0]); i++)
		if (strcmp(k, http_methods[i]) == 0)
			return true;
	return false;
}

TEST(openapi_is_3_1)
{
	json_t *doc = doc_load();
	const char *v = json_string_value(json_object_get(doc, "openapi"));
	CHECK(v != NULL);
	CHECK_MSG(strncmp(v, "3.1.", 4) == 0, "openapi is '%s', not 3.1.x", v);
	CHECK(json_is_object(json_object_get(doc, "info")));
	CHECK(json_is_string(json_object_get(json_object_get(doc, "info"), "title")));
	CHECK(json_is_string(json_object_get(json_object_get(doc, "info"), "version")));
	CHECK(json_is_object(json_object_get(doc, "paths")));
	json_decref(doc);
}

TEST(every_route_is_documented)
{
	json_t *doc = doc_load();
	json_t *paths = json_object_get(doc, "paths");
	size_t routes = 0;
	for (size_t t = 0; api_route_tables[t]; t++) {
		const struct api_route_table *tab = api_route_tables[t];
		for (size_t i = 0; i < tab->n; i++) {
			const struct api_route *r = &tab->routes[i];
			char m[16];
			lower(r->method, m, sizeof(m));
			json_t *item = json_object_get(paths, r->pattern);
			CHECK_MSG(item != NULL, "route %s %s (%s) is not in openapi.json",
				  r->method, r->pattern, tab->name);
			json_t *op = json_object_get(item, m);
			CHECK_MSG(json_is_object(op), "route %s %s (%s) has no '%s' operation",
				  r->method, r->pattern, tab->name, m);
			CHECK_MSG(json_is_object(json_object_get(op, "responses")),
				  "%s %s documents no responses", r->method, r->pattern);
			/* A public route says so; the others inherit bearerAuth. */
			json_t *sec = json_object_get(op, "security");
			bool open = json_is_array(sec) && json_array_size(sec) == 0;
			CHECK_MSG(
			    open == ((r->flags & API_ROUTE_PUBLIC) != 0),
			    "%s %s: security in openapi.json does not match the route's flags",
			    r->method, r->pattern);
			/* An idempotent route documents the header. */
			if (r->flags & API_ROUTE_IDEMPOTENT) {
				char *text = json_dumps(json_object_get(op, "parameters"), 0);
				CHECK_MSG(text && strstr(text, "IdempotencyKey"),
					  "%s %s takes Idempotency-Key but does not document it",
					  r->method, r->pattern);
				free(text);
			}
			routes++;
		}
	}
	CHECK(routes >= 14);
	json_decref(doc);
}

/* Is method+path a route of some table? */
static bool routed(const char *method, const char *path)
{
	for (size_t t = 0; api_route_tables[t]; t++)
		for (size_t i = 0; i < api_route_tables[t]->n; i++) {
			const struct api_route *r = &api_route_tables[t]->routes[i];
			char m[16];
			lower(r->method, m, sizeof(m));
			if (strcmp(m, method) == 0 && strcmp(r->pattern, path) == 0)
				return true;
		}
	return false;
}

TEST(every_documented_operation_is_routed)
{
	json_t *doc = doc_load();
	const char *path;
	json_t *item;
	size_t ops = 0;
	json_object_foreach (json_object_get(doc, "paths"), path, item) {
		const char *k;
		json_t *v;
		json_object_foreach (item, k, v) {
			if (!is_method(k))
				continue;
			CHECK_MSG(routed(k, path),
				  "openapi.json documents %s %s, which no route serves", k, path);
			ops++;
		}
	}
	CHECK(ops >= 14);
	json_decref(doc);
}

/* Follows a local "#/a/b" reference. */
static json_t *ref_resolve(json_t *doc, const char *ref)
{
	if (strncmp(ref, "#/", 2) != 0)
		return NULL;
	char buf[256];
	snprintf(buf, sizeof(buf), "%s", ref + 2);
	json_t *at = doc;
	for (char *save, *part = strtok_r(buf, "/", &save); part && at;
	     part = strtok_r(NULL, "/", &save))
		at = json_object_get(at, part);
	return at;
}

static void refs_check(json_t *doc, json_t *node, int *n)
{
	if (json_is_object(node)) {
		const char *k;
		json_t *v;
		json_object_foreach (node, k, v) {
			if (strcmp(k, "$ref") == 0) {
				CHECK_MSG(json_is_string(v), "$ref is not a string");
				CHECK_MSG(ref_resolve(doc, json_string_value(v)) != NULL,
					  "$ref '%s' does not resolve", json_string_value(v));
				(*n)++;
			} else {
				refs_check(doc, v, n);
			}
		}
	} else if (json_is_array(node)) {
		size_t i;
		json_t *v;
		json_array_foreach (node, i, v)
			refs_check(doc, v, n);
	}
}

TEST(refs_resolve)
{
	json_t *doc = doc_load();
	int n = 0;
	refs_check(doc, doc, &n);
	CHECK(n > 0);
	json_decref(doc);
}

/* Each {name} of a path is declared as an "in: path" parameter. */
static bool param_declared(json_t *doc, json_t *params, const char *name)
{
	size_t i;
	json_t *p;
	json_array_foreach (params, i, p) {
		json_t *ref = json_object_get(p, "$ref");
		if (ref)
			p = ref_resolve(doc, json_string_value(ref));
		const char *in = json_string_value(json_object_get(p, "in"));
		const char *n = json_string_value(json_object_get(p, "name"));
		if (in && n && strcmp(in, "path") == 0 && strcmp(n, name) == 0)
			return true;
	}
	return false;
}

TEST(path_parameters_declared)
{
	json_t *doc = doc_load();
	const char *path;
	json_t *item;
	json_object_foreach (json_object_get(doc, "paths"), path, item) {
		for (const char *p = strchr(path, '{'); p; p = strchr(p + 1, '{')) {
			char name[64];
			size_t len = strcspn(p + 1, "}");
			CHECK(len < sizeof(name));
			memcpy(name, p + 1, len);
			name[len] = '\0';
			const char *k;
			json_t *op;
			json_object_foreach (item, k, op) {
				if (!is_method(k))
					continue;
				CHECK_MSG(param_declared(doc, json_object_get(item, "parameters"),
							 name) ||
					      param_declared(doc, json_object_get(op, "parameters"),
							     name),
					  "%s %s does not declare path parameter '%s'", k, path,
					  name);
			}
		}
	}
	json_decref(doc);
}

TEST(route_match)
{
	struct api_call c;
	memset(&c, 0, sizeof(c));
	CHECK(api_route_match("/sessions", "/sessions", &c));
	CHECK(c.param[0] == NULL);
	CHECK(!api_route_match("/sessions", "/sessions/", &c));
	CHECK(!api_route_match("/sessions", "/sessionsx", &c));
	CHECK(api_route_match("/sessions/{id}", "/sessions/ses_abc", &c));
	CHECK_STR_EQ(c.param[0], "ses_abc");
	CHECK(!api_route_match("/sessions/{id}", "/sessions/", &c));
	CHECK(!api_route_match("/sessions/{id}", "/sessions/a/b", &c));
	CHECK(api_route_match("/v1/app/{id}/{port}", "/v1/app/x1/8080", &c));
	CHECK_STR_EQ(c.param[0], "x1");
	CHECK_STR_EQ(c.param[1], "8080");
	CHECK(c.param[2] == NULL);
	CHECK(api_route_match("/sessions/{id}", "/sessions/create", NULL));
	/* A segment longer than the buffer does not match rather than being cut. */
	char path[1200] = "/sessions/";
	memset(path + 10, 'a', 1000);
	path[1010] = '\0';
	CHECK(!api_route_match("/sessions/{id}", path, &c));
	CHECK(api_route_match("/sessions/{id}", path, NULL));
}

/* No route hides another: two routes of all tables answer the same method
 * and path only when the one tried first takes a request by its claims()
 * (POST /execute of both dialects). /sessions/create before /sessions/{id}
 * is fine (different methods). */
TEST(routes_are_unique)
{
	size_t shared = 0;
	for (size_t t = 0; api_route_tables[t]; t++)
		for (size_t i = 0; i < api_route_tables[t]->n; i++) {
			const struct api_route *a = &api_route_tables[t]->routes[i];
			for (size_t u = t; api_route_tables[u]; u++)
				for (size_t j = u == t ? i + 1 : 0; j < api_route_tables[u]->n;
				     j++) {
					const struct api_route *b = &api_route_tables[u]->routes[j];
					if (strcmp(a->method, b->method) != 0 ||
					    strcmp(a->pattern, b->pattern) != 0)
						continue;
					CHECK_MSG(
					    a->claims != NULL,
					    "%s %s is routed twice, and the first takes every "
					    "request",
					    a->method, a->pattern);
					shared++;
				}
		}
	CHECK_INT_EQ(shared, 1);
}
