/* Black-box tests of the buntime dialect's session endpoints
 * (POST /sessions/create, GET /sessions/{id}, GET /sessions,
 * DELETE /sessions/{id}) against one real bunkerd shared by every test.
 *
 * Tests that depend on a plan's limits, or count a key's sessions, create
 * their own key, so that neither the per-key rate limit nor the sessions a
 * failed test left behind can change their outcome. Every test deletes the
 * sessions it created when it passes.
 */
#include "../client.h"
#include "util/file.h"

#include <dirent.h>
#include <ftw.h>
#include <glob.h>
#include <math.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

CLIENT_FIXTURE(NULL)

/* ---- helpers ---- */

static void create(const char *key, const char *body, struct client_resp *r)
{
	client_call(&bk.d, "POST", "/sessions/create", key, body, r);
}

static void get_session(const char *key, const char *id, struct client_resp *r)
{
	char path[256];
	snprintf(path, sizeof(path), "/sessions/%s", id);
	client_call(&bk.d, "GET", path, key, NULL, r);
}

static void list_sessions(const char *key, const char *query, struct client_resp *r)
{
	char path[1024];
	snprintf(path, sizeof(path), "/sessions%s%s", query && *query ? "?" : "",
		 query ? query : "");
	client_call(&bk.d, "GET", path, key, NULL, r);
}

/* GET /sessions?metadata=<filter> */
static void list_filtered(const char *key, const char *filter, const char *more,
			  struct client_resp *r)
{
	char *enc = client_urlencode(filter);
	char query[1024];
	snprintf(query, sizeof(query), "metadata=%s%s%s", enc, more ? "&" : "", more ? more : "");
	free(enc);
	list_sessions(key, query, r);
}

static double member_num(const struct client_resp *r, const json_t *obj, const char *name)
{
	json_t *v = json_object_get(obj, name);
	CHECK_MSG(json_is_number(v), "'%s' is not a number in %s", name, r->body);
	return json_number_value(v);
}

static double member_time(const struct client_resp *r, const json_t *obj, const char *name)
{
	const char *s = client_json_str(obj, name);
	double t;
	CHECK_MSG(client_parse_time(s, &t), "'%s' is not an ISO 8601 UTC time ending in Z: %s",
		  name, r->body);
	return t;
}

static bool id_well_formed(const char *id)
{
	regex_t re;
	CHECK(regcomp(&re, "^ses_[a-z0-9]{20}$", REG_EXTENDED | REG_NOSUB) == 0);
	bool ok = id != NULL && regexec(&re, id, 0, NULL, 0) == 0;
	regfree(&re);
	return ok;
}

static void check_limits(const struct client_resp *r, const json_t *limits, double memory,
			 double cpu, double timeout, double disk)
{
	CHECK_MSG(json_is_object(limits), "no resourceLimits object in %s", r->body);
	CHECK_MSG(member_num(r, limits, "memory") == memory, "memory != %g in %s", memory, r->body);
	CHECK_MSG(fabs(member_num(r, limits, "cpu") - cpu) < 1e-9, "cpu != %g in %s", cpu, r->body);
	CHECK_MSG(member_num(r, limits, "timeout") == timeout, "timeout != %g in %s", timeout,
		  r->body);
	CHECK_MSG(member_num(r, limits, "disk") == disk, "disk != %g in %s", disk, r->body);
}

static void check_content_type_json(const struct client_resp *r)
{
	char ct[128];
	CHECK_MSG(client_resp_header(r, "Content-Type", ct, sizeof(ct)) != NULL,
		  "no Content-Type in the answer");
	CHECK_MSG(strncmp(ct, "application/json", 16) == 0, "Content-Type '%s'", ct);
}

/* The `total` of GET /sessions?query for key. */
static long list_total(const char *key, const char *query)
{
	struct client_resp r;
	list_sessions(key, query, &r);
	CHECK_STATUS(&r, 200);
	json_t *t = json_object_get(r.json, "total");
	CHECK_MSG(json_is_integer(t), "no integer total in %s", r.body);
	long n = (long)json_integer_value(t);
	client_resp_free(&r);
	return n;
}

/* Creates with an invalid body and checks the 400 names the field. */
static void create_rejected(const char *key, const char *body, const char *field)
{
	struct client_resp r;
	create(key, body, &r);
	if (r.status != 400)
		fprintf(stderr, "    body: %s\n", body);
	CHECK_ERROR_FIELD(&r, 400, "invalid_request", field);
	client_resp_free(&r);
}

/* ---- create ---- */

TEST(create_default)
{
	char key[CLIENT_KEY_MAX];
	client_must_key("free", key, sizeof(key));
	time_t before = time(NULL);
	struct client_resp r;
	create(key, "{}", &r);
	time_t after = time(NULL);
	CHECK_STATUS(&r, 200);
	check_content_type_json(&r);

	const char *id = client_json_str(r.json, "sessionId");
	CHECK_MSG(id_well_formed(id), "sessionId '%s' does not match ^ses_[a-z0-9]{20}$",
		  id ? id : "(none)");

	char want_url[256];
	snprintf(want_url, sizeof(want_url), "http://ses-%s.localhost:%d", id + 4, bk.d.port);
	CHECK_STR_EQ(client_json_str(r.json, "previewUrl"), want_url);

	double created = member_time(&r, r.json, "createdAt");
	double expires = member_time(&r, r.json, "expiresAt");
	CHECK_MSG(created >= (double)before - 1 && created <= (double)after + 1,
		  "createdAt %.0f not between %ld and %ld", created, (long)before, (long)after);
	CHECK_MSG(fabs(expires - created - 86400) <= 1, "expiresAt - createdAt = %.3f, want 86400",
		  expires - created);
	check_limits(&r, json_object_get(r.json, "resourceLimits"), 1024, 0.25, 30, 1024);

	char *copy = strdup(id);
	client_resp_free(&r);
	client_must_delete(key, copy);
	free(copy);
}

TEST(create_ttl_3600)
{
	struct client_resp r;
	create(bk.paid_key, "{\"ttl\":3600}", &r);
	CHECK_STATUS(&r, 200);
	double created = member_time(&r, r.json, "createdAt");
	double expires = member_time(&r, r.json, "expiresAt");
	CHECK_MSG(fabs(expires - created - 3600) <= 1, "expiresAt - createdAt = %.3f, want 3600",
		  expires - created);
	char *id = strdup(client_json_str(r.json, "sessionId"));
	client_resp_free(&r);

	/* GET tells the same times. */
	get_session(bk.paid_key, id, &r);
	CHECK_STATUS(&r, 200);
	CHECK(fabs(member_time(&r, r.json, "createdAt") - created) < 1e-3);
	CHECK(fabs(member_time(&r, r.json, "expiresAt") - expires) < 1e-3);
	client_resp_free(&r);
	client_must_delete(bk.paid_key, id);
	free(id);
}

TEST(create_ttl_minimum)
{
	struct client_resp r;
	create(bk.paid_key, "{\"ttl\":300}", &r);
	CHECK_STATUS(&r, 200);
	double d = member_time(&r, r.json, "expiresAt") - member_time(&r, r.json, "createdAt");
	CHECK_MSG(fabs(d - 300) <= 1, "expiresAt - createdAt = %.3f, want 300", d);
	char *id = strdup(client_json_str(r.json, "sessionId"));
	client_resp_free(&r);
	client_must_delete(bk.paid_key, id);
	free(id);

	create_rejected(bk.paid_key, "{\"ttl\":299}", "ttl");
	create_rejected(bk.paid_key, "{\"ttl\":0}", "ttl");
	create_rejected(bk.paid_key, "{\"ttl\":-3600}", "ttl");
}

TEST(create_ttl_above_plan_max)
{
	char free_key[CLIENT_KEY_MAX], paid_key[CLIENT_KEY_MAX];
	client_must_key("free", free_key, sizeof(free_key));
	client_must_key("paid", paid_key, sizeof(paid_key));

	create_rejected(free_key, "{\"ttl\":86401}", "ttl");
	create_rejected(free_key, "{\"ttl\":604800}", "ttl");
	create_rejected(paid_key, "{\"ttl\":604801}", "ttl");
	create_rejected(paid_key, "{\"ttl\":100000000000000}", "ttl");
	CHECK_INT_EQ(list_total(free_key, NULL), 0);
	CHECK_INT_EQ(list_total(paid_key, NULL), 0);

	/* Each plan's maximum itself is fine. */
	struct client_resp r;
	create(free_key, "{\"ttl\":86400}", &r);
	CHECK_STATUS(&r, 200);
	char *id1 = strdup(client_json_str(r.json, "sessionId"));
	client_resp_free(&r);
	create(paid_key, "{\"ttl\":604800}", &r);
	CHECK_STATUS(&r, 200);
	double d = member_time(&r, r.json, "expiresAt") - member_time(&r, r.json, "createdAt");
	CHECK_MSG(fabs(d - 604800) <= 1, "expiresAt - createdAt = %.3f, want 604800", d);
	char *id2 = strdup(client_json_str(r.json, "sessionId"));
	client_resp_free(&r);
	client_must_delete(free_key, id1);
	client_must_delete(paid_key, id2);
	free(id1);
	free(id2);
}

TEST(create_ttl_wrong_type)
{
	char key[CLIENT_KEY_MAX];
	client_must_key("paid", key, sizeof(key));
	create_rejected(key, "{\"ttl\":\"3600\"}", "ttl");
	create_rejected(key, "{\"ttl\":3600.5}", "ttl");
	create_rejected(key, "{\"ttl\":true}", "ttl");
	create_rejected(key, "{\"ttl\":[3600]}", "ttl");
	create_rejected(key, "{\"ttl\":{\"s\":3600}}", "ttl");
	/* Nothing was half-created. */
	CHECK_INT_EQ(list_total(key, NULL), 0);
}

TEST(create_metadata_not_object)
{
	char key[CLIENT_KEY_MAX];
	client_must_key("paid", key, sizeof(key));
	create_rejected(key, "{\"metadata\":\"user=u1\"}", "metadata");
	create_rejected(key, "{\"metadata\":5}", "metadata");
	create_rejected(key, "{\"metadata\":[{\"userId\":\"u1\"}]}", "metadata");
	create_rejected(key, "{\"metadata\":true}", "metadata");
	CHECK_INT_EQ(list_total(key, NULL), 0);
}

/* {"metadata":{"k":"aaa…"}} whose metadata serialises compactly to size
 * bytes ({"k":"…"} is 8 bytes around the string). */
static char *metadata_body(size_t size, char **metadata)
{
	size_t n = size - 8;
	char *s = malloc(n + 1);
	memset(s, 'a', n);
	s[n] = '\0';
	json_t *m = json_pack("{s:s}", "k", s);
	free(s);
	*metadata = json_dumps(m, JSON_COMPACT);
	CHECK_INT_EQ(strlen(*metadata), size);
	json_t *body = json_pack("{s:o}", "metadata", m);
	char *text = json_dumps(body, JSON_COMPACT);
	json_decref(body);
	return text;
}

TEST(create_metadata_size_limit)
{
	char key[CLIENT_KEY_MAX];
	client_must_key("paid", key, sizeof(key));
	char *meta_over;
	char *over = metadata_body(16385, &meta_over);
	create_rejected(key, over, "metadata");
	free(over);
	free(meta_over);
	CHECK_INT_EQ(list_total(key, NULL), 0);

	char *meta;
	char *exact = metadata_body(16384, &meta);
	struct client_resp r;
	create(key, exact, &r);
	free(exact);
	CHECK_STATUS(&r, 200);
	char *id = strdup(client_json_str(r.json, "sessionId"));
	client_resp_free(&r);

	/* Stored whole. */
	get_session(key, id, &r);
	CHECK_STATUS(&r, 200);
	char *got = json_dumps(json_object_get(r.json, "metadata"), JSON_COMPACT | JSON_ENCODE_ANY);
	CHECK_MSG(got != NULL && strcmp(got, meta) == 0, "metadata of 16384 bytes not kept whole");
	free(got);
	free(meta);
	client_resp_free(&r);
	client_must_delete(key, id);
	free(id);
}

TEST(create_no_body)
{
	struct client_req req = {.method = "POST", .path = "/sessions/create", .key = bk.paid_key};
	struct client_resp r;
	client_request(&bk.d, &req, &r);
	CHECK_STATUS(&r, 200);
	CHECK(id_well_formed(client_json_str(r.json, "sessionId")));
	double d = member_time(&r, r.json, "expiresAt") - member_time(&r, r.json, "createdAt");
	CHECK_MSG(fabs(d - 86400) <= 1, "expiresAt - createdAt = %.3f, want 86400", d);
	check_limits(&r, json_object_get(r.json, "resourceLimits"), 1024, 0.25, 30, 1024);
	char *id = strdup(client_json_str(r.json, "sessionId"));
	client_resp_free(&r);
	client_must_delete(bk.paid_key, id);
	free(id);

	/* An empty body with a JSON Content-Type is no body, too. */
	struct client_req empty = {.method = "POST",
				   .path = "/sessions/create",
				   .key = bk.paid_key,
				   .body = "",
				   .raw_len = true};
	client_request(&bk.d, &empty, &r);
	CHECK_STATUS(&r, 200);
	id = strdup(client_json_str(r.json, "sessionId"));
	client_resp_free(&r);
	client_must_delete(bk.paid_key, id);
	free(id);
}

TEST(create_malformed_json)
{
	char key[CLIENT_KEY_MAX];
	client_must_key("paid", key, sizeof(key));
	static const char *const bodies[] = {
	    "{",
	    "{\"ttl\":}",
	    "{\"ttl\":3600,}",
	    "nul",
	    "{\"ttl\":3600} trailing",
	    "{'ttl':3600}",
	    "[]",
	    "\"ttl\"",
	    "42",
	    "{\"metadata\":{\"a\":\"\xff\xfe\"}}", /* invalid UTF-8 */
	    "{\"metadata\":{\"a\":\"\xc0\xaf\"}}", /* overlong encoding */
	};
	for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
		struct client_resp r;
		create(key, bodies[i], &r);
		if (r.status != 400)
			fprintf(stderr, "    body: %s\n", bodies[i]);
		CHECK_ERROR(&r, 400, "invalid_request");
		client_resp_free(&r);
	}
	CHECK_INT_EQ(list_total(key, NULL), 0);
}

TEST(create_limits_forbidden_on_free)
{
	char key[CLIENT_KEY_MAX];
	client_must_key("free", key, sizeof(key));
	struct client_resp r;
	create(key, "{\"resourceLimits\":{\"memory\":512}}", &r);
	CHECK_ERROR(&r, 403, "forbidden");
	client_resp_free(&r);
	create(key, "{\"resourceLimits\":{\"memory\":2048,\"cpu\":1}}", &r);
	CHECK_ERROR(&r, 403, "forbidden");
	client_resp_free(&r);
	CHECK_INT_EQ(list_total(key, NULL), 0);
}

TEST(create_limits_paid)
{
	struct client_resp r;
	create(bk.paid_key, "{\"resourceLimits\":{\"memory\":2048}}", &r);
	CHECK_STATUS(&r, 200);
	check_limits(&r, json_object_get(r.json, "resourceLimits"), 2048, 0.25, 30, 1024);
	char *id = strdup(client_json_str(r.json, "sessionId"));
	client_resp_free(&r);
	get_session(bk.paid_key, id, &r);
	CHECK_STATUS(&r, 200);
	check_limits(&r, json_object_get(r.json, "resourceLimits"), 2048, 0.25, 30, 1024);
	client_resp_free(&r);
	client_must_delete(bk.paid_key, id);
	free(id);

	/* All four, fractions of a core included, and each ceiling itself. */
	create(bk.paid_key,
	       "{\"resourceLimits\":{\"memory\":4096,\"cpu\":0.5,\"timeout\":300,\"disk\":5120}}",
	       &r);
	CHECK_STATUS(&r, 200);
	check_limits(&r, json_object_get(r.json, "resourceLimits"), 4096, 0.5, 300, 5120);
	id = strdup(client_json_str(r.json, "sessionId"));
	client_resp_free(&r);
	get_session(bk.paid_key, id, &r);
	CHECK_STATUS(&r, 200);
	check_limits(&r, json_object_get(r.json, "resourceLimits"), 4096, 0.5, 300, 5120);
	client_resp_free(&r);
	client_must_delete(bk.paid_key, id);
	free(id);
}

TEST(create_limits_above_ceiling)
{
	char key[CLIENT_KEY_MAX];
	client_must_key("paid", key, sizeof(key));
	create_rejected(key, "{\"resourceLimits\":{\"memory\":4097}}", "memory");
	create_rejected(key, "{\"resourceLimits\":{\"memory\":8192}}", "memory");
	create_rejected(key, "{\"resourceLimits\":{\"cpu\":1.5}}", "cpu");
	create_rejected(key, "{\"resourceLimits\":{\"disk\":5121}}", "disk");
	create_rejected(key, "{\"resourceLimits\":{\"timeout\":301}}", "timeout");
	create_rejected(key, "{\"resourceLimits\":{\"memory\":0}}", "memory");
	create_rejected(key, "{\"resourceLimits\":{\"memory\":-1024}}", "memory");
	create_rejected(key, "{\"resourceLimits\":{\"cpu\":-0.5}}", "cpu");
	create_rejected(key, "{\"resourceLimits\":{\"memory\":\"2048\"}}", "memory");
	create_rejected(key, "{\"resourceLimits\":{\"memory\":2048.5}}", "memory");
	create_rejected(key, "{\"resourceLimits\":\"big\"}", "resourceLimits");
	create_rejected(key, "{\"resourceLimits\":[2048]}", "resourceLimits");
	CHECK_INT_EQ(list_total(key, NULL), 0);
}

/* ---- authentication ---- */

static void check_no_ratelimit_headers(const struct client_resp *r)
{
	char v[64];
	CHECK_MSG(client_resp_header(r, "X-RateLimit-Limit", v, sizeof(v)) == NULL,
		  "a 401 carries X-RateLimit-Limit: %s", v);
	CHECK_MSG(client_resp_header(r, "X-RateLimit-Remaining", v, sizeof(v)) == NULL,
		  "a 401 carries X-RateLimit-Remaining: %s", v);
}

TEST(create_unauthorized)
{
	struct client_resp r;
	create(NULL, "{}", &r);
	CHECK_ERROR(&r, 401, "unauthorized");
	check_no_ratelimit_headers(&r);
	client_resp_free(&r);

	create("bk_0000000000000000000000000000000000000000", "{}", &r);
	CHECK_ERROR(&r, 401, "unauthorized");
	check_no_ratelimit_headers(&r);
	client_resp_free(&r);

	/* The right key with one character changed. */
	char wrong[CLIENT_KEY_MAX];
	snprintf(wrong, sizeof(wrong), "%s", bk.paid_key);
	size_t n = strlen(wrong);
	wrong[n - 1] = wrong[n - 1] == 'a' ? 'b' : 'a';
	create(wrong, "{}", &r);
	CHECK_ERROR(&r, 401, "unauthorized");
	client_resp_free(&r);

	/* The key, but not as a Bearer token. */
	char basic[CLIENT_KEY_MAX + 32];
	snprintf(basic, sizeof(basic), "Authorization: Basic %s", bk.paid_key);
	const char *headers[] = {basic, NULL};
	struct client_req req = {
	    .method = "POST", .path = "/sessions/create", .body = "{}", .headers = headers};
	client_request(&bk.d, &req, &r);
	CHECK_ERROR(&r, 401, "unauthorized");
	client_resp_free(&r);

	/* Every endpoint wants a key. */
	get_session(NULL, "ses_aaaaaaaaaaaaaaaaaaaa", &r);
	CHECK_ERROR(&r, 401, "unauthorized");
	client_resp_free(&r);
	list_sessions(NULL, NULL, &r);
	CHECK_ERROR(&r, 401, "unauthorized");
	client_resp_free(&r);
	client_call(&bk.d, "DELETE", "/sessions/ses_aaaaaaaaaaaaaaaaaaaa", NULL, NULL, &r);
	CHECK_ERROR(&r, 401, "unauthorized");
	client_resp_free(&r);
}

TEST(ratelimit_headers)
{
	char key[CLIENT_KEY_MAX];
	client_must_key("free", key, sizeof(key));
	time_t now = time(NULL);
	struct client_resp r;
	list_sessions(key, NULL, &r);
	CHECK_STATUS(&r, 200);
	char v[64];
	CHECK_MSG(client_resp_header(&r, "X-RateLimit-Limit", v, sizeof(v)) != NULL,
		  "no X-RateLimit-Limit");
	CHECK_STR_EQ(v, "100");
	CHECK_MSG(client_resp_header(&r, "X-RateLimit-Remaining", v, sizeof(v)) != NULL,
		  "no X-RateLimit-Remaining");
	long remaining = strtol(v, NULL, 10);
	CHECK_MSG(remaining >= 0 && remaining < 100, "X-RateLimit-Remaining: %s", v);
	CHECK_MSG(client_resp_header(&r, "X-RateLimit-Reset", v, sizeof(v)) != NULL,
		  "no X-RateLimit-Reset");
	long reset = strtol(v, NULL, 10);
	/* The window opens with the key's first request, which may land in the
	 * next second after now was read, and Reset rounds up: now + 62 at most. */
	CHECK_MSG(reset >= now && reset <= now + 62, "X-RateLimit-Reset %ld, now %ld", reset,
		  (long)now);
	client_resp_free(&r);

	/* The next request has one less. */
	list_sessions(key, NULL, &r);
	CHECK_STATUS(&r, 200);
	CHECK(client_resp_header(&r, "X-RateLimit-Remaining", v, sizeof(v)) != NULL);
	CHECK_INT_EQ(strtol(v, NULL, 10), remaining - 1);
	client_resp_free(&r);
}

/* ---- get ---- */

TEST(get_fields)
{
	const char *body =
	    "{\"ttl\":7200,\"metadata\":{\"userId\":\"u1\",\"n\":[1,2.5,{\"a\":null}],"
	    "\"s\":\"h\\u00e9llo \\\"q\\\"\",\"t\":true}}";
	time_t before = time(NULL);
	struct client_resp c;
	create(bk.paid_key, body, &c);
	CHECK_STATUS(&c, 200);
	const char *id = client_json_str(c.json, "sessionId");

	struct client_resp r;
	get_session(bk.paid_key, id, &r);
	CHECK_STATUS(&r, 200);
	check_content_type_json(&r);
	CHECK_STR_EQ(client_json_str(r.json, "sessionId"), id);
	CHECK_STR_EQ(client_json_str(r.json, "state"), "active");
	CHECK_STR_EQ(client_json_str(r.json, "previewUrl"), client_json_str(c.json, "previewUrl"));
	double created = member_time(&r, r.json, "createdAt");
	CHECK(fabs(created - member_time(&c, c.json, "createdAt")) < 1e-3);
	CHECK(fabs(member_time(&r, r.json, "expiresAt") - member_time(&c, c.json, "expiresAt")) <
	      1e-3);
	double last = member_time(&r, r.json, "lastActive");
	CHECK_MSG(last >= created - 1 && last <= (double)time(NULL) + 1, "lastActive %.0f", last);
	CHECK_MSG(created >= (double)before - 1, "createdAt %.0f before %ld", created,
		  (long)before);

	json_t *want_meta = json_loads(strchr(body + 1, '{'), JSON_DISABLE_EOF_CHECK, NULL);
	CHECK(want_meta != NULL);
	CHECK_MSG(json_equal(json_object_get(r.json, "metadata"), want_meta),
		  "metadata did not round-trip: %s", r.body);
	json_decref(want_meta);
	check_limits(&r, json_object_get(r.json, "resourceLimits"), 1024, 0.25, 30, 1024);

	json_t *files = json_object_get(r.json, "filesCount");
	CHECK_MSG(json_is_integer(files), "filesCount not an integer: %s", r.body);
	CHECK_MSG(json_integer_value(files) == 0, "filesCount of a new session: %s", r.body);
	json_t *procs = json_object_get(r.json, "activeProcesses");
	CHECK_MSG(json_is_integer(procs) && json_integer_value(procs) >= 0,
		  "activeProcesses not an integer >= 0: %s", r.body);
	client_resp_free(&r);

	char *copy = strdup(id);
	client_resp_free(&c);
	client_must_delete(bk.paid_key, copy);
	free(copy);
}

TEST(get_other_keys_session)
{
	char *id = client_must_create(bk.paid_key, NULL);
	char other[CLIENT_KEY_MAX];
	client_must_key("paid", other, sizeof(other));

	struct client_resp r;
	get_session(other, id, &r);
	CHECK_ERROR(&r, 404, "session_not_found");
	client_resp_free(&r);

	char path[128];
	snprintf(path, sizeof(path), "/sessions/%s", id);
	client_call(&bk.d, "DELETE", path, other, NULL, &r);
	CHECK_ERROR(&r, 404, "session_not_found");
	client_resp_free(&r);

	json_t *ex = json_pack("{s:s,s:s}", "sessionId", id, "command", "echo hi");
	client_call_json(&bk.d, "POST", "/execute", other, ex, &r);
	json_decref(ex);
	CHECK_ERROR(&r, 404, "session_not_found");
	client_resp_free(&r);

	CHECK_INT_EQ(list_total(other, NULL), 0);

	/* Still there for its owner. */
	get_session(bk.paid_key, id, &r);
	CHECK_STATUS(&r, 200);
	client_resp_free(&r);
	client_must_delete(bk.paid_key, id);
	free(id);
}

TEST(get_unknown)
{
	static const char *const ids[] = {"ses_aaaaaaaaaaaaaaaaaaaa", "ses_0123456789abcdefghij",
					  "nonsense", "ses_", "SES_AAAAAAAAAAAAAAAAAAAA"};
	for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
		struct client_resp r;
		get_session(bk.paid_key, ids[i], &r);
		if (r.status != 404)
			fprintf(stderr, "    id: %s\n", ids[i]);
		CHECK_ERROR(&r, 404, "session_not_found");
		client_resp_free(&r);
	}
}

TEST(unknown_route)
{
	struct client_resp r;
	client_call(&bk.d, "GET", "/no/such/route", bk.paid_key, NULL, &r);
	CHECK_ERROR(&r, 404, "not_found");
	client_resp_free(&r);
}

/* ---- list ---- */

/* Collects the sessionIds of one page into ids[*n...]; returns the page's
 * total. */
static long list_page(const char *key, const char *query, char ids[][32], int *n, int max)
{
	struct client_resp r;
	list_sessions(key, query, &r);
	CHECK_STATUS(&r, 200);
	json_t *arr = json_object_get(r.json, "sessions");
	CHECK_MSG(json_is_array(arr), "no sessions array: %s", r.body);
	json_t *t = json_object_get(r.json, "total");
	CHECK_MSG(json_is_integer(t), "no integer total: %s", r.body);
	size_t i;
	json_t *s;
	json_array_foreach (arr, i, s) {
		const char *id = client_json_str(s, "sessionId");
		CHECK_MSG(id != NULL, "a listed session without sessionId: %s", r.body);
		CHECK_MSG(json_is_object(json_object_get(s, "metadata")),
			  "a listed session without metadata: %s", r.body);
		CHECK_MSG(*n < max, "more sessions listed than exist: %s", r.body);
		snprintf(ids[*n], 32, "%s", id);
		(*n)++;
	}
	long total = (long)json_integer_value(t);
	client_resp_free(&r);
	return total;
}

static bool contains_id(char ids[][32], int n, const char *id)
{
	for (int i = 0; i < n; i++)
		if (strcmp(ids[i], id) == 0)
			return true;
	return false;
}

TEST(list_pagination)
{
	char key[CLIENT_KEY_MAX];
	client_must_key("paid", key, sizeof(key));
	char *made[3];
	for (int i = 0; i < 3; i++) {
		char body[128];
		snprintf(body, sizeof(body), "{\"metadata\":{\"i\":%d}}", i);
		made[i] = client_must_create(key, body);
	}

	char all[8][32];
	int n = 0;
	CHECK_INT_EQ(list_page(key, NULL, all, &n, 8), 3);
	CHECK_INT_EQ(n, 3);
	for (int i = 0; i < 3; i++)
		CHECK_MSG(contains_id(all, n, made[i]), "%s not listed", made[i]);

	/* Two pages of two cover the three once each. */
	char paged[8][32];
	int m = 0;
	CHECK_INT_EQ(list_page(key, "limit=2&offset=0", paged, &m, 8), 3);
	CHECK_INT_EQ(m, 2);
	CHECK_INT_EQ(list_page(key, "limit=2&offset=2", paged, &m, 8), 3);
	CHECK_INT_EQ(m, 3);
	for (int i = 0; i < 3; i++)
		CHECK_MSG(contains_id(paged, m, made[i]), "%s not on any page", made[i]);
	for (int i = 0; i < m; i++)
		for (int j = i + 1; j < m; j++)
			CHECK_MSG(strcmp(paged[i], paged[j]) != 0, "%s listed twice", paged[i]);

	/* Past the end: an empty page, same total. */
	int e = 0;
	CHECK_INT_EQ(list_page(key, "limit=2&offset=3", paged, &e, 8), 3);
	CHECK_INT_EQ(e, 0);
	e = 0;
	CHECK_INT_EQ(list_page(key, "offset=100", paged, &e, 8), 3);
	CHECK_INT_EQ(e, 0);
	e = 0;
	CHECK_INT_EQ(list_page(key, "limit=1", paged, &e, 8), 3);
	CHECK_INT_EQ(e, 1);
	e = 0;
	CHECK_INT_EQ(list_page(key, "limit=100", paged, &e, 8), 3);
	CHECK_INT_EQ(e, 3);

	for (int i = 0; i < 3; i++) {
		client_must_delete(key, made[i]);
		free(made[i]);
	}
	CHECK_INT_EQ(list_total(key, NULL), 0);
}

/* The ids of the key's sessions whose metadata contains filter (JSON),
 * into ids[0..*n), at most 8; returns the total. */
static long list_matching(const char *key, const char *filter, char ids[][32], int *n)
{
	char *enc = client_urlencode(filter);
	char query[256];
	snprintf(query, sizeof(query), "metadata=%s", enc);
	free(enc);
	*n = 0;
	return list_page(key, query, ids, n, 8);
}

TEST(list_metadata_filter)
{
	char key[CLIENT_KEY_MAX];
	client_must_key("paid", key, sizeof(key));
	char *a = client_must_create(key, "{\"metadata\":{\"userId\":\"u1\",\"n\":1}}");
	char *b = client_must_create(
	    key, "{\"metadata\":{\"userId\":\"u1\",\"org\":{\"id\":\"o1\",\"tier\":\"x\"}}}");
	char *c = client_must_create(key, "{\"metadata\":{\"userId\":\"u2\"}}");
	char *d = client_must_create(key, NULL);

	char ids[8][32];
	int n = 0;
	struct client_resp r;

	/* The brief's example, URL-encoded. */
	list_sessions(key, "metadata=%7B%22userId%22%3A%22u1%22%7D", &r);
	CHECK_STATUS(&r, 200);
	client_resp_free(&r);

	CHECK_INT_EQ(list_matching(key, "{\"userId\":\"u1\"}", ids, &n), 2);
	CHECK_INT_EQ(n, 2);
	CHECK(contains_id(ids, n, a) && contains_id(ids, n, b));

	/* Nested containment. */
	CHECK_INT_EQ(list_matching(key, "{\"org\":{\"id\":\"o1\"}}", ids, &n), 1);
	CHECK_STR_EQ(ids[0], b);

	/* Both members must match. */
	CHECK_INT_EQ(list_matching(key, "{\"userId\":\"u1\",\"n\":1}", ids, &n), 1);
	CHECK_STR_EQ(ids[0], a);

	/* A value of another type does not match ("1" is not 1). */
	CHECK_INT_EQ(list_matching(key, "{\"n\":\"1\"}", ids, &n), 0);

	CHECK_INT_EQ(list_matching(key, "{\"userId\":\"nobody\"}", ids, &n), 0);
	CHECK_INT_EQ(n, 0);

	/* The empty filter matches all; it pages like any list. */
	n = 0;
	CHECK_INT_EQ(list_page(key, "metadata=%7B%7D", ids, &n, 8), 4);
	n = 0;
	list_filtered(key, "{\"userId\":\"u1\"}", "limit=1&offset=1", &r);
	CHECK_STATUS(&r, 200);
	CHECK_INT_EQ(json_integer_value(json_object_get(r.json, "total")), 2);
	CHECK_INT_EQ(json_array_size(json_object_get(r.json, "sessions")), 1);
	client_resp_free(&r);

	char *all[] = {a, b, c, d};
	for (int i = 0; i < 4; i++) {
		client_must_delete(key, all[i]);
		free(all[i]);
	}
}

TEST(list_bad_parameters)
{
	static const char *const queries[] =
	    {
		"limit=101",	     "limit=1000",	"limit=-1",
		"limit=abc",	     "limit=1.5",	"offset=-1",
		"offset=x",	     "metadata=%7Bbad", "metadata=%5B1%5D", /* [1]: not an object */
		"metadata=%22u1%22",
	    };
	for (size_t i = 0; i < sizeof(queries) / sizeof(queries[0]); i++) {
		struct client_resp r;
		list_sessions(bk.paid_key, queries[i], &r);
		if (r.status != 400)
			fprintf(stderr, "    query: %s\n", queries[i]);
		CHECK_ERROR(&r, 400, "invalid_request");
		client_resp_free(&r);
	}
	struct client_resp r;
	list_sessions(bk.paid_key, "limit=101", &r);
	CHECK_ERROR_FIELD(&r, 400, "invalid_request", "limit");
	client_resp_free(&r);
	list_sessions(bk.paid_key, "metadata=%7Bbad", &r);
	CHECK_ERROR_FIELD(&r, 400, "invalid_request", "metadata");
	client_resp_free(&r);
	/* Every bad limit is told the same range (0 included). */
	static const char *const limits[] = {"limit=0", "limit=-1", "limit=abc", "limit=101"};
	for (size_t i = 0; i < sizeof(limits) / sizeof(limits[0]); i++) {
		list_sessions(bk.paid_key, limits[i], &r);
		CHECK_ERROR_FIELD(&r, 400, "invalid_request", "limit");
		const char *msg =
		    json_string_value(json_object_get(json_object_get(r.json, "error"), "message"));
		CHECK_MSG(msg && strstr(msg, "1..100") != NULL, "%s: %s", limits[i], r.body);
		client_resp_free(&r);
	}
}

/* ---- delete ---- */

TEST(delete_basic)
{
	char *id = client_must_create(bk.paid_key, NULL);
	char path[128];
	snprintf(path, sizeof(path), "/sessions/%s", id);
	struct client_resp r;
	client_call(&bk.d, "DELETE", path, bk.paid_key, NULL, &r);
	CHECK_STATUS(&r, 200);
	check_content_type_json(&r);
	CHECK_MSG(json_is_true(json_object_get(r.json, "deleted")), "deleted is not true: %s",
		  r.body);
	CHECK_STR_EQ(client_json_str(r.json, "sessionId"), id);
	client_resp_free(&r);

	get_session(bk.paid_key, id, &r);
	CHECK_ERROR(&r, 404, "session_not_found");
	client_resp_free(&r);

	json_t *ex = json_pack("{s:s,s:s}", "sessionId", id, "command", "echo hi");
	client_call_json(&bk.d, "POST", "/execute", bk.paid_key, ex, &r);
	json_decref(ex);
	CHECK_ERROR(&r, 404, "session_not_found");
	client_resp_free(&r);

	client_call(&bk.d, "DELETE", path, bk.paid_key, NULL, &r);
	CHECK_ERROR(&r, 404, "session_not_found");
	client_resp_free(&r);

	char ids[128][32];
	int n = 0;
	list_page(bk.paid_key, "limit=100", ids, &n, 128);
	CHECK_MSG(!contains_id(ids, n, id), "%s still listed after DELETE", id);
	free(id);
}

/* Host processes whose cgroup membership names the session. */
static int pids_in_session_cgroup(const char *needle, pid_t *pids, int max)
{
	DIR *dir = opendir("/proc");
	CHECK(dir != NULL);
	int n = 0;
	struct dirent *de;
	while ((de = readdir(dir)) != NULL) {
		char *end;
		long pid = strtol(de->d_name, &end, 10);
		if (*end != '\0' || pid <= 0)
			continue;
		char path[64];
		snprintf(path, sizeof(path), "/proc/%ld/cgroup", pid);
		FILE *f = fopen(path, "re");
		if (f == NULL)
			continue;
		char line[1024];
		bool hit = false;
		while (!hit && fgets(line, sizeof(line), f) != NULL)
			hit = strstr(line, needle) != NULL;
		fclose(f);
		if (hit && n < max)
			pids[n++] = (pid_t)pid;
	}
	closedir(dir);
	return n;
}

static bool read_link(const char *path, char *out, size_t len)
{
	ssize_t n = readlink(path, out, len - 1);
	if (n < 0)
		return false;
	out[n] = '\0';
	return true;
}

/* Host processes in the pid namespace ns ("pid:[4026532…]"). */
static int pids_in_pidns(const char *ns, pid_t *pids, int max)
{
	DIR *dir = opendir("/proc");
	CHECK(dir != NULL);
	int n = 0;
	struct dirent *de;
	while ((de = readdir(dir)) != NULL) {
		char *end;
		long pid = strtol(de->d_name, &end, 10);
		if (*end != '\0' || pid <= 0)
			continue;
		char path[64], link[128];
		snprintf(path, sizeof(path), "/proc/%ld/ns/pid", pid);
		if (read_link(path, link, sizeof(link)) && strcmp(link, ns) == 0 && n < max)
			pids[n++] = (pid_t)pid;
	}
	closedir(dir);
	return n;
}

static void describe_pids(const char *what, const pid_t *pids, int n)
{
	for (int i = 0; i < n; i++) {
		char path[64], comm[64] = "?";
		snprintf(path, sizeof(path), "/proc/%d/comm", (int)pids[i]);
		FILE *f = fopen(path, "re");
		if (f != NULL) {
			if (fgets(comm, sizeof(comm), f) != NULL)
				comm[strcspn(comm, "\n")] = '\0';
			fclose(f);
		}
		fprintf(stderr, "    %s: pid %d (%s)\n", what, (int)pids[i], comm);
	}
}

/* Lines of a mountinfo file that contain needle. */
static int mounts_containing(const char *mountinfo, const char *needle)
{
	FILE *f = fopen(mountinfo, "re");
	if (f == NULL)
		return 0;
	char *line = NULL;
	size_t cap = 0;
	int n = 0;
	while (getline(&line, &cap, f) >= 0) {
		if (strstr(line, needle) != NULL) {
			fprintf(stderr, "    mount left in %s: %s", mountinfo, line);
			n++;
		}
	}
	free(line);
	fclose(f);
	return n;
}

static const char *ftw_needle;
static int ftw_hits;

static int find_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	if (strstr(path + ftw->base, ftw_needle) != NULL) {
		fprintf(stderr, "    left in the data dir: %s\n", path);
		ftw_hits++;
	}
	return 0;
}

TEST(delete_leaves_nothing_on_host)
{
	char *id = client_must_create(bk.paid_key, NULL);
	const char *suffix = id + 4; /* the 20 characters, in "ses_…" and "ses-…" alike */

	/* A setsid'd process and a plain background one, and a file. */
	char *out = client_must_run(bk.paid_key, id,
				    "setsid sleep 1000 > /dev/null 2>&1 & "
				    "sleep 1001 > /dev/null 2>&1 & echo started");
	CHECK_STR_EQ(out, "started\n");
	free(out);
	out = client_must_run(bk.paid_key, id, "mkdir -p d && echo x > d/f && echo ok");
	free(out);

	pid_t pids[256];
	int n = pids_in_session_cgroup(suffix, pids, 256);
	CHECK_MSG(n >= 2,
		  "found %d host processes whose /proc/<pid>/cgroup names %s; want its init "
		  "and the sleeps",
		  n, id);
	/* Their pid namespace (not the host's). */
	char host_ns[128], ns[128] = "";
	CHECK(read_link("/proc/self/ns/pid", host_ns, sizeof(host_ns)));
	for (int i = 0; i < n && ns[0] == '\0'; i++) {
		char path[64], link[128];
		snprintf(path, sizeof(path), "/proc/%d/ns/pid", (int)pids[i]);
		if (read_link(path, link, sizeof(link)) && strcmp(link, host_ns) != 0)
			snprintf(ns, sizeof(ns), "%s", link);
	}
	CHECK_MSG(ns[0] != '\0', "the session's processes share the host's pid namespace");

	client_must_delete(bk.paid_key, id);

	/* Killed at once; allow the kernel a moment to finish reaping. */
	double deadline = client_now() + 2;
	int left_cg, left_ns;
	pid_t left[256];
	do {
		left_cg = pids_in_session_cgroup(suffix, left, 256);
		left_ns = pids_in_pidns(ns, left + left_cg, 256 - left_cg);
		if (left_cg + left_ns == 0)
			break;
		usleep(50000);
	} while (client_now() < deadline);
	describe_pids("process left", left, left_cg + left_ns);
	CHECK_MSG(left_cg == 0, "%d processes still in the session's cgroups after DELETE",
		  left_cg);
	CHECK_MSG(left_ns == 0, "%d processes still in the session's pid namespace (%s)", left_ns,
		  ns);

	/* No mount, in our mount namespace or the daemon's. */
	int mounts = mounts_containing("/proc/self/mountinfo", suffix);
	char daemon_mi[64];
	snprintf(daemon_mi, sizeof(daemon_mi), "/proc/%d/mountinfo", (int)bk.d.pid);
	mounts += mounts_containing(daemon_mi, suffix);
	CHECK_MSG(mounts == 0, "%d mounts of the session left after DELETE", mounts);

	/* No cgroup, v1 (/sys/fs/cgroup/<controller>/bunker/<id>) or v2
	 * (/sys/fs/cgroup/bunker/<id>), whatever its parent is called. */
	int cgroups = 0;
	for (int depth = 1; depth <= 4; depth++) {
		char pattern[256] = "/sys/fs/cgroup";
		for (int i = 1; i < depth; i++)
			strcat(pattern, "/*");
		snprintf(pattern + strlen(pattern), sizeof(pattern) - strlen(pattern), "/*%s*",
			 suffix);
		glob_t g;
		if (glob(pattern, GLOB_NOSORT, NULL, &g) == 0) {
			for (size_t i = 0; i < g.gl_pathc; i++)
				fprintf(stderr, "    cgroup left: %s\n", g.gl_pathv[i]);
			cgroups += (int)g.gl_pathc;
		}
		globfree(&g);
	}
	CHECK_MSG(cgroups == 0, "%d cgroups of the session left after DELETE", cgroups);

	/* No run directory, no file named after it in the data dir. */
	char run[PATH_MAX + 64];
	snprintf(run, sizeof(run), "%s/run/%s", bk.d.data_dir, id);
	struct stat st;
	CHECK_MSG(stat(run, &st) < 0, "%s still exists after DELETE", run);
	ftw_needle = suffix;
	ftw_hits = 0;
	nftw(bk.d.data_dir, find_cb, 32, FTW_PHYS | FTW_MOUNT);
	CHECK_MSG(ftw_hits == 0, "%d paths named after the session left in %s", ftw_hits,
		  bk.d.data_dir);
	free(id);
}

/* Lines of a mount table whose mount point is dir or below it (each
 * printed, with where it was found). */
static int mounts_under_in(const char *text, const char *where, const char *dir)
{
	size_t dl = strlen(dir);
	int n = 0;
	for (const char *line = text; line && *line;) {
		const char *eol = strchr(line, '\n');
		char mnt[PATH_MAX] = "";
		sscanf(line, "%*s %*s %*s %*s %4095s", mnt);
		if (strncmp(mnt, dir, dl) == 0 && (mnt[dl] == '/' || mnt[dl] == '\0')) {
			fprintf(stderr, "    %s holds %s\n", where, mnt);
			n++;
		}
		line = eol ? eol + 1 : NULL;
	}
	return n;
}

/* Lines of a mount table that name a session. */
static int lines_naming(const char *text, const char *id)
{
	int n = 0;
	for (const char *line = text; line && *line;) {
		const char *eol = strchr(line, '\n');
		size_t len = eol ? (size_t)(eol - line) : strlen(line);
		n += memmem(line, len, id, strlen(id)) != NULL;
		line = eol ? eol + 1 : NULL;
	}
	return n;
}

/* Session mounts stay in bunkerd's own mount namespace: neither the host's
 * table (PID 1's) nor that of the namespace bunkerd was started from
 * (ours: scripts/test.sh runs tests in a private namespace of their own)
 * holds anything under its data directory, however many sessions are
 * awake; and in its own table each session holds its disk and nothing
 * else once its sandbox runs (the overlay root lives on in the sandbox
 * alone), so that a create does not copy more mounts for each session
 * there is. */
TEST(session_mounts_stay_in_the_daemon_namespace)
{
	enum { N = 4 };
	char *ids[N];
	for (int i = 0; i < N; i++) {
		ids[i] = client_must_create(bk.paid_key, NULL);
		free(client_must_run(bk.paid_key, ids[i], "echo x > f && echo ok"));
	}
	char *host = read_file_all("/proc/1/mountinfo", NULL);
	char *ours = read_file_all("/proc/self/mountinfo", NULL);
	char *daemon = client_daemon_mountinfo(&bk.d);
	CHECK(host != NULL && ours != NULL && daemon != NULL);
	int in_host = mounts_under_in(host, "the host's mount table", bk.d.data_dir);
	int in_ours = mounts_under_in(ours, "the test's mount table", bk.d.data_dir);
	CHECK_MSG(in_host == 0,
		  "the host's mount table holds %d mounts under '%s' with %d sessions", in_host,
		  bk.d.data_dir, N);
	CHECK_MSG(in_ours == 0,
		  "the mount table bunkerd was started from holds %d mounts under '%s' with %d "
		  "sessions",
		  in_ours, bk.d.data_dir, N);
	for (int i = 0; i < N; i++) {
		int n = lines_naming(daemon, ids[i] + 4);
		CHECK_MSG(n == 1,
			  "bunkerd's mount table holds %d mounts of %s, want its disk alone", n,
			  ids[i]);
	}
	free(host);
	free(ours);
	free(daemon);
	for (int i = 0; i < N; i++) {
		client_must_delete(bk.paid_key, ids[i]);
		free(ids[i]);
	}
}
