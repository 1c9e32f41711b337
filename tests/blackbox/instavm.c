/* Black-box tests of the InstaVM dialect (API.md "InstaVM dialect") as
 * InstaVM's Python SDK speaks it: the key only in the create body, then
 * X-API-Key, none at all on usage; FastAPI's error shapes with one 422
 * entry per field at fault; the lazy VM, its kill and the end of its
 * lifetime; the concurrent-session cap counted on VMs; multipart uploads
 * (the file part's filename a local path) and form-encoded downloads;
 * egress; the HTTP details the SDK relies on. Executions are in
 * tests/blackbox/instavm_exec.c.
 */
#include "../iv_client.h"
#include "../raw.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A short reaper horizon is not needed: the lifetime test waits the
 * dialect's shortest lifetime (20 s). */
CLIENT_FIXTURE(NULL)

/* ---- create ---- */

TEST(create_key_in_body_or_header)
{
	char *id = iv_create(bk.paid_key, NULL);
	/* A UUID v4. */
	CHECK_INT_EQ(strlen(id), 36);
	CHECK(id[14] == '4' && strchr("89ab", id[19]) != NULL);
	/* The header alone does too, and Bearer. */
	struct client_resp r;
	iv("POST", "/v1/sessions/session", bk.paid_key, "{}", &r);
	CHECK_STATUS(&r, 200);
	client_resp_free(&r);
	client_call(&bk.d, "POST", "/v1/sessions/session", bk.paid_key, "{}", &r);
	CHECK_STATUS(&r, 200);
	client_resp_free(&r);
	/* No key at all, an unknown one, a wrong type. */
	iv("POST", "/v1/sessions/session", NULL, "{}", &r);
	CHECK_DETAIL(&r, 401);
	client_resp_free(&r);
	iv("POST", "/v1/sessions/session", NULL, "{\"api_key\":\"bk_nope\"}", &r);
	CHECK_DETAIL(&r, 401);
	client_resp_free(&r);
	iv("POST", "/v1/sessions/session", NULL, "{\"api_key\":42}", &r);
	CHECK_422(&r, "api_key");
	client_resp_free(&r);
	free(id);
}

/* Every bad field is its own entry, and nothing is created. */
TEST(create_validation_one_entry_per_field)
{
	static const struct {
		const char *body, *field;
	} cases[] = {
	    {"{\"vm_lifetime_seconds\":19}", "vm_lifetime_seconds"},
	    {"{\"vm_lifetime_seconds\":86401}", "vm_lifetime_seconds"},
	    {"{\"vm_lifetime_seconds\":\"300\"}", "vm_lifetime_seconds"},
	    {"{\"vm_lifetime_seconds\":300.5}", "vm_lifetime_seconds"},
	    {"{\"memory_mb\":127}", "memory_mb"},
	    {"{\"memory_mb\":8193}", "memory_mb"},
	    {"{\"memory_mb\":true}", "memory_mb"},
	    {"{\"vcpu_count\":3}", "vcpu_count"},
	    {"{\"vcpu_count\":0}", "vcpu_count"},
	    {"{\"vcpu_count\":16}", "vcpu_count"},
	    {"{\"vcpu_count\":[2]}", "vcpu_count"},
	    {"{\"metadata\":[1]}", "metadata"},
	    {"{\"metadata\":\"x\"}", "metadata"},
	    {"{\"env\":[\"A=1\"]}", "env"},
	};
	char key[CLIENT_KEY_MAX];
	client_must_key("paid", key, sizeof(key));
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct client_resp r;
		iv("POST", "/v1/sessions/session", key, cases[i].body, &r);
		CHECK_422(&r, cases[i].field);
		bool found;
		CHECK_MSG(iv_detail_has(&r, cases[i].field, &found) == 1, "%s: %s", cases[i].body,
			  r.body);
		client_resp_free(&r);
	}
	struct client_resp r;
	iv("POST", "/v1/sessions/session", key,
	   "{\"vm_lifetime_seconds\":5,\"memory_mb\":1,\"vcpu_count\":3,\"env\":{\"A\":1,\"B\":"
	   "\"ok\","
	   "\"C\":null}}",
	   &r);
	CHECK_STATUS(&r, 422);
	bool found;
	CHECK_INT_EQ(iv_detail_has(&r, "vm_lifetime_seconds", &found), 5);
	CHECK(found);
	iv_detail_has(&r, "memory_mb", &found);
	CHECK(found);
	iv_detail_has(&r, "vcpu_count", &found);
	CHECK(found);
	client_resp_free(&r);
	/* Malformed JSON, a body that is no object. */
	iv("POST", "/v1/sessions/session", key, "{\"vm_lifetime_seconds\":", &r);
	CHECK_STATUS(&r, 422);
	CHECK(json_is_array(json_object_get(r.json, "detail")));
	client_resp_free(&r);
	iv("POST", "/v1/sessions/session", key, "[1,2]", &r);
	CHECK_STATUS(&r, 422);
	client_resp_free(&r);
	/* None of them made a session. */
	client_call(&bk.d, "GET", "/sessions", key, NULL, &r);
	CHECK_STATUS(&r, 200);
	CHECK_INT_EQ(client_must_int(r.json, "total", r.body), 0);
	client_resp_free(&r);
}

/* What was asked above the plan is clamped, and session info says what
 * was applied; before the first spawn the VM fields are null. */
TEST(create_clamps_and_reports_applied)
{
	char *id = iv_create(bk.free_key,
			     json_pack("{s:i,s:i,s:i,s:{s:s}}", "vcpu_count", 8, "memory_mb", 8192,
				       "vm_lifetime_seconds", 600, "metadata", "team", "blue"));
	json_t *s = iv_get("session", id, bk.free_key);
	char *text = json_dumps(s, 0);
	CHECK_INT_EQ(client_must_int(s, "memory_mb", text), 1024);
	CHECK(client_must_num(s, "vcpu_count", text) == 0.25);
	CHECK_INT_EQ(client_must_int(s, "requested_vcpu_count", text), 8);
	CHECK_INT_EQ(client_must_int(s, "vm_lifetime_seconds", text), 600);
	CHECK_STR_EQ(json_string_value(json_object_get(json_object_get(s, "metadata"), "team")),
		     "blue");
	CHECK_STR_EQ(client_must_str(s, "session_id", text), id);
	CHECK(json_is_false(json_object_get(s, "vm_assigned")));
	free(text);
	json_decref(s);

	json_t *st = iv_get("status", id, bk.free_key);
	text = json_dumps(st, 0);
	CHECK(json_is_true(json_object_get(st, "exists")));
	CHECK(json_is_false(json_object_get(st, "vm_alive")));
	CHECK(json_is_false(json_object_get(st, "vm_assigned")));
	CHECK_MSG(json_is_null(json_object_get(st, "vm_status")) &&
		      json_is_null(json_object_get(st, "vm_id")) &&
		      json_is_null(json_object_get(st, "uptime_seconds")) &&
		      json_is_null(json_object_get(st, "expires_in_seconds")),
		  "vm fields before the spawn: %s", text);
	client_must_str(st, "created_at", text);
	free(text);
	json_decref(st);
	free(id);
}

/* env spawns the VM at once, and holds for what runs in it. */
TEST(create_with_env_spawns_at_once)
{
	char *id = iv_create(bk.paid_key, json_pack("{s:{s:s}}", "env", "GREETING", "hi there"));
	json_t *st = iv_get("status", id, bk.paid_key);
	char *text = json_dumps(st, 0);
	CHECK_STR_EQ(client_must_str(st, "vm_status", text), "active");
	CHECK(json_is_true(json_object_get(st, "vm_alive")));
	const char *vm = client_must_str(st, "vm_id", text);
	CHECK_MSG(strncmp(vm, "vm-", 3) == 0 && strlen(vm) == 23, "vm_id '%s'", vm);
	long long left = client_must_int(st, "expires_in_seconds", text);
	CHECK_MSG(left > 280 && left <= 300, "expires_in_seconds %lld", left);
	free(text);
	json_decref(st);
	/* The buntime dialect reaches the same session by its UUID. */
	char *out = client_must_run(bk.paid_key, id, "printf %s \"$GREETING\"");
	CHECK_STR_EQ(out, "hi there");
	free(out);
	free(id);
}

/* ---- reading ---- */

TEST(status_and_session_of_others_are_404)
{
	char *id = iv_create(bk.paid_key, NULL);
	char other[CLIENT_KEY_MAX];
	client_must_key("paid", other, sizeof(other));
	static const char *const what[] = {"status", "session", "usage", "app-url"};
	for (size_t i = 0; i < 4; i++) {
		char path[256];
		struct client_resp r;
		snprintf(path, sizeof(path), "/v1/sessions/%s/%s", what[i], id);
		iv("GET", path, other, NULL, &r);
		CHECK_DETAIL(&r, 404);
		client_resp_free(&r);
		snprintf(path, sizeof(path), "/v1/sessions/%s/" NO_UUID, what[i]);
		iv("GET", path, bk.paid_key, NULL, &r);
		CHECK_DETAIL(&r, 404);
		client_resp_free(&r);
		snprintf(path, sizeof(path), "/v1/sessions/%s/not-an-id", what[i]);
		iv("GET", path, bk.paid_key, NULL, &r);
		CHECK_DETAIL(&r, 404);
		client_resp_free(&r);
	}
	/* Without a key: 401 everywhere but usage. */
	char path[256];
	struct client_resp r;
	snprintf(path, sizeof(path), "/v1/sessions/status/%s", id);
	iv("GET", path, NULL, NULL, &r);
	CHECK_DETAIL(&r, 401);
	client_resp_free(&r);
	free(id);
}

/* The SDK asks usage with no credentials: the UUID is the capability. */
TEST(usage_without_credentials)
{
	char *id = iv_create(bk.paid_key, NULL);
	json_t *u = iv_get("usage", id, NULL);
	char *text = json_dumps(u, 0);
	CHECK_INT_EQ(client_must_int(u, "execution_count", text), 0);
	CHECK(client_must_num(u, "cpu_time", text) == 0);
	CHECK(client_must_num(u, "vm_runtime_seconds", text) == 0);
	free(text);
	json_decref(u);
	/* A buntime session by its ses_ id (also the name of its previews'
	 * host) is not readable without a key. */
	char *ses = client_must_create(bk.paid_key, NULL);
	char path[256];
	struct client_resp r;
	snprintf(path, sizeof(path), "/v1/sessions/usage/%s", ses);
	iv("GET", path, NULL, NULL, &r);
	CHECK_DETAIL(&r, 404);
	client_resp_free(&r);
	iv("GET", path, bk.paid_key, NULL, &r);
	CHECK_STATUS(&r, 200);
	client_resp_free(&r);
	iv("GET", "/v1/sessions/usage/" NO_UUID, NULL, NULL, &r);
	CHECK_DETAIL(&r, 404);
	client_resp_free(&r);
	client_must_delete(bk.paid_key, ses);
	free(ses);
	free(id);
}

/* sandboxes lists the sessions that hold a VM, filtered by metadata. */
TEST(sandboxes_list_vms_by_metadata)
{
	char key[CLIENT_KEY_MAX];
	client_must_key("paid", key, sizeof(key));
	char *lazy = iv_create(key, json_pack("{s:{s:s}}", "metadata", "app", "x"));
	char *a = iv_create(key, json_pack("{s:{s:s,s:i},s:{s:s}}", "metadata", "app", "x", "n", 1,
					   "env", "A", "1"));
	char *b = iv_create(key, json_pack("{s:{s:s},s:{s:s},s:i}", "metadata", "app", "y", "env",
					   "A", "1", "vcpu_count", 4));
	struct client_resp r;
	iv("GET", "/v1/sessions/sandboxes", key, NULL, &r);
	CHECK_MSG(r.status == 200 && json_is_array(r.json) && json_array_size(r.json) == 2,
		  "%ld %s", r.status, r.body);
	size_t i;
	json_t *e;
	json_array_foreach (r.json, i, e) {
		const char *sid = client_must_str(e, "sandbox_id", r.body);
		CHECK(strncmp(sid, "vm-", 3) == 0);
		const char *t = client_must_str(e, "template_id", r.body);
		const char *app =
		    json_string_value(json_object_get(json_object_get(e, "metadata"), "app"));
		CHECK_STR_EQ(t, strcmp(app, "y") == 0 ? "snap4" : "snap2");
		CHECK_STR_EQ(client_must_str(e, "status", r.body), "active");
		client_must_str(e, "started_at", r.body);
		client_must_str(e, "end_at", r.body);
	}
	client_resp_free(&r);
	char *q = client_urlencode("{\"app\":\"x\"}");
	char path[256];
	snprintf(path, sizeof(path), "/v1/sessions/sandboxes?metadata=%s&limit=10", q);
	free(q);
	iv("GET", path, key, NULL, &r);
	CHECK_MSG(r.status == 200 && json_array_size(r.json) == 1, "%ld %s", r.status, r.body);
	CHECK_INT_EQ(json_integer_value(json_object_get(
			 json_object_get(json_array_get(r.json, 0), "metadata"), "n")),
		     1);
	client_resp_free(&r);
	static const char *const bad[] = {"limit=0", "limit=1001", "limit=x", "metadata=%5B1%5D",
					  "metadata=%7Bnot"};
	for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
		snprintf(path, sizeof(path), "/v1/sessions/sandboxes?%s", bad[k]);
		iv("GET", path, key, NULL, &r);
		CHECK_MSG(r.status == 422 && json_is_array(json_object_get(r.json, "detail")),
			  "%s: %ld %s", bad[k], r.status, r.body);
		client_resp_free(&r);
	}
	free(lazy);
	free(a);
	free(b);
}

/* ---- kill and lifetime ---- */

TEST(kill_ends_the_vm_not_the_session)
{
	char *id = iv_create(bk.paid_key, NULL);
	char other[CLIENT_KEY_MAX];
	client_must_key("paid", other, sizeof(other));
	struct client_resp r;
	char body[256];
	snprintf(body, sizeof(body), "{\"session_id\":\"%s\"}", id);
	/* No VM yet: 404. */
	iv("POST", "/kill", bk.paid_key, body, &r);
	CHECK_DETAIL(&r, 404);
	client_resp_free(&r);
	iv_upload_file(bk.paid_key, id, "/app/data.txt", "first VM", 0, &r);
	CHECK_STATUS(&r, 200);
	client_resp_free(&r);
	iv("POST", "/kill", other, body, &r);
	CHECK_DETAIL(&r, 403);
	client_resp_free(&r);
	iv("POST", "/kill", bk.paid_key, "{\"session_id\":\"../../etc\"}", &r);
	CHECK_DETAIL(&r, 400);
	client_resp_free(&r);
	iv("POST", "/kill", bk.paid_key, "{\"session_id\":\"" NO_UUID "\"}", &r);
	CHECK_DETAIL(&r, 404);
	client_resp_free(&r);
	iv("POST", "/kill", bk.paid_key, "{}", &r);
	CHECK_422(&r, "session_id");
	client_resp_free(&r);
	iv("POST", "/kill", bk.paid_key, body, &r);
	CHECK_STATUS(&r, 200);
	const char *vm = client_must_str(r.json, "vm_id", r.body);
	client_must_str(r.json, "message", r.body);
	char vm_killed[64];
	snprintf(vm_killed, sizeof(vm_killed), "%s", vm);
	client_resp_free(&r);
	json_t *st = iv_get("status", id, bk.paid_key);
	char *text = json_dumps(st, 0);
	CHECK_STR_EQ(client_must_str(st, "vm_status", text), "terminated");
	CHECK(json_is_false(json_object_get(st, "vm_alive")));
	CHECK(json_is_true(json_object_get(st, "vm_assigned")));
	CHECK_STR_EQ(client_must_str(st, "vm_id", text), vm_killed);
	free(text);
	json_decref(st);
	/* Killed twice: no VM. */
	iv("POST", "/kill", bk.paid_key, body, &r);
	CHECK_DETAIL(&r, 404);
	client_resp_free(&r);
	/* The next request gets a fresh, empty VM. */
	iv_download(bk.paid_key, id, "/app/data.txt", &r);
	CHECK_DETAIL(&r, 404);
	client_resp_free(&r);
	st = iv_get("status", id, bk.paid_key);
	CHECK_STR_EQ(json_string_value(json_object_get(st, "vm_status")), "active");
	json_decref(st);
	free(id);
}

/* At the end of its lifetime the VM is killed; the session stays, holds
 * nothing, and its next VM is empty. */
TEST_TIMEOUT(lifetime_end_terminates_the_vm, 120)
{
	char *id = iv_create(bk.paid_key, json_pack("{s:i}", "vm_lifetime_seconds", 20));
	struct client_resp r;
	iv_upload_file(bk.paid_key, id, "kept.txt", "x", 0, &r);
	CHECK_STATUS(&r, 200);
	client_resp_free(&r);
	json_t *st = iv_get("status", id, bk.paid_key);
	long long left = json_integer_value(json_object_get(st, "expires_in_seconds"));
	CHECK_MSG(left > 10 && left <= 20, "expires_in_seconds %lld", left);
	json_decref(st);
	double t0 = client_now();
	char status[32] = "";
	while (client_now() - t0 < 40 && strcmp(status, "terminated") != 0) {
		sleep(1);
		st = iv_get("status", id, bk.paid_key);
		const char *v = json_string_value(json_object_get(st, "vm_status"));
		snprintf(status, sizeof(status), "%s", v ? v : "null");
		json_decref(st);
	}
	CHECK_MSG(strcmp(status, "terminated") == 0, "vm_status is %s after 40 s", status);
	CHECK_MSG(client_now() - t0 >= 10, "terminated after %.1f s only", client_now() - t0);
	/* Not listed as a sandbox; its usage counts the VM's life. */
	json_t *u = iv_get("usage", id, NULL);
	double run = json_number_value(json_object_get(u, "vm_runtime_seconds"));
	CHECK_MSG(run >= 19 && run < 45, "vm_runtime_seconds %.1f", run);
	json_decref(u);
	iv_download(bk.paid_key, id, "kept.txt", &r);
	CHECK_DETAIL(&r, 404);
	client_resp_free(&r);
	free(id);
}

/* The cap counts sessions that hold a VM: lazy ones and killed ones do
 * not. */
TEST(cap_counts_vms)
{
	char key[CLIENT_KEY_MAX];
	const char *const ov[] = {"--max-sessions", "2", NULL};
	CHECK(client_key_create_with(&bk.d, "paid", ov, key, sizeof(key)) == 0);
	char *ids[4];
	for (int i = 0; i < 4; i++)
		ids[i] = iv_create(key, NULL);
	struct client_resp r;
	for (int i = 0; i < 2; i++) {
		iv_upload_file(key, ids[i], "f", "x", 0, &r);
		CHECK_STATUS(&r, 200);
		client_resp_free(&r);
	}
	iv_upload_file(key, ids[2], "f", "x", 0, &r);
	CHECK_DETAIL(&r, 429);
	client_resp_free(&r);
	char body[128];
	snprintf(body, sizeof(body), "{\"session_id\":\"%s\"}", ids[0]);
	iv("POST", "/kill", key, body, &r);
	CHECK_STATUS(&r, 200);
	client_resp_free(&r);
	iv_upload_file(key, ids[2], "f", "x", 0, &r);
	CHECK_STATUS(&r, 200);
	client_resp_free(&r);
	for (int i = 0; i < 4; i++)
		free(ids[i]);
}

/* ---- upload and download ---- */

TEST(upload_download_round_trip)
{
	char *id = iv_create(bk.paid_key, NULL);
	/* Every byte value, bigger than the daemon's chunks. */
	size_t n = (3u << 20) + 17;
	char *data = malloc(n);
	CHECK(data != NULL);
	for (size_t i = 0; i < n; i++)
		data[i] = (char)(i * 7 + i / 251);
	struct client_resp r;
	iv_upload_file(bk.paid_key, id, "/remote/deep/dir/blob.bin", data, n, &r);
	CHECK_STATUS(&r, 200);
	CHECK_STR_EQ(client_must_str(r.json, "status", r.body), "success");
	CHECK_STR_EQ(client_must_str(r.json, "remote_path", r.body), "/remote/deep/dir/blob.bin");
	CHECK_INT_EQ(client_must_int(r.json, "size", r.body), (long long)n);
	client_resp_free(&r);
	size_t got;
	char *back = iv_download_ok(bk.paid_key, id, "/remote/deep/dir/blob.bin", &got);
	CHECK_INT_EQ(got, n);
	CHECK(memcmp(back, data, n) == 0);
	free(back);
	/* A relative path is under /workspace, where the buntime dialect
	 * sees it, and replacing a file works. */
	iv_upload_file(bk.paid_key, id, "notes/a.txt", "one", 0, &r);
	CHECK_STATUS(&r, 200);
	client_resp_free(&r);
	iv_upload_file(bk.paid_key, id, "notes/a.txt", "two", 0, &r);
	CHECK_STATUS(&r, 200);
	client_resp_free(&r);
	char *out =
	    client_must_run(bk.paid_key, id,
			    "cat /workspace/notes/a.txt; stat -c ' %U' /workspace/notes/a.txt "
			    "/remote/deep/dir/blob.bin /remote/deep");
	CHECK_STR_EQ(out, "two user\n user\n user\n");
	free(out);
	back = iv_download_ok(bk.paid_key, id, "/workspace/notes/a.txt", &got);
	CHECK_STR_EQ(back, "two");
	free(back);
	/* A form value with '+' and %XX, as requests encodes a space. */
	iv_upload_file(bk.paid_key, id, "/tmp/with space.txt", "s", 0, &r);
	CHECK_STATUS(&r, 200);
	client_resp_free(&r);
	char body[512];
	snprintf(body, sizeof(body), "filename=%%2Ftmp%%2Fwith+space.txt&session_id=%s", id);
	iv_req("POST", "/download", bk.paid_key, body, 0, "application/x-www-form-urlencoded", &r);
	CHECK_STATUS(&r, 200);
	CHECK_STR_EQ(client_must_str(r.json, "content", r.body), "cw==");
	client_resp_free(&r);
	free(data);
	free(id);
}

/* Refusals leave the old file as it was. */
TEST(upload_refusals)
{
	char *id = iv_create(bk.free_key, NULL);
	struct client_resp r;
	iv_upload_file(bk.free_key, id, "/app/keep.txt", "original", 0, &r);
	CHECK_STATUS(&r, 200);
	client_resp_free(&r);
	/* The read-only image, the kernel's file systems. */
	static const char *const refused[] = {"/usr/bin/python3", "/proc/1/mem", "/sys/kernel/x",
					      "/dev/null", "/etc/../proc/self/x"};
	for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
		iv_upload_file(bk.free_key, id, refused[i], "x", 0, &r);
		CHECK_MSG(r.status == 403, "%s: %ld %s", refused[i], r.status, r.body);
		CHECK_MSG(strstr(r.body, refused[i]) != NULL, "%s not named in %s", refused[i],
			  r.body);
		client_resp_free(&r);
	}
	/* Over the free plan's 10 MiB. */
	size_t big = (10u << 20) + 1;
	char *data = calloc(1, big);
	CHECK(data != NULL);
	iv_upload_file(bk.free_key, id, "/app/keep.txt", data, big, &r);
	CHECK_DETAIL(&r, 413);
	client_resp_free(&r);
	free(data);
	/* The file part before the text parts. */
	const struct iv_part early[] = {{"file", "x", "new"},
					{"remote_path", NULL, "/app/keep.txt"},
					{"session_id", NULL, id},
					{NULL}};
	iv_upload(bk.free_key, early, &r);
	CHECK_422(&r, "session_id");
	CHECK_422(&r, "remote_path");
	client_resp_free(&r);
	/* recursive neither true nor false, after the file. */
	const struct iv_part rec[] = {{"remote_path", NULL, "/app/keep.txt"},
				      {"session_id", NULL, id},
				      {"file", "x", "new"},
				      {"recursive", NULL, "maybe"},
				      {NULL}};
	iv_upload(bk.free_key, rec, &r);
	CHECK_422(&r, "recursive");
	client_resp_free(&r);
	/* No file part; a part twice. */
	const struct iv_part nofile[] = {
	    {"remote_path", NULL, "/app/keep.txt"}, {"session_id", NULL, id}, {NULL}};
	iv_upload(bk.free_key, nofile, &r);
	CHECK_422(&r, "file");
	client_resp_free(&r);
	const struct iv_part twice[] = {{"remote_path", NULL, "/app/keep.txt"},
					{"session_id", NULL, id},
					{"file", "x", "new"},
					{"file", "y", "newer"},
					{NULL}};
	iv_upload(bk.free_key, twice, &r);
	CHECK_422(&r, "file");
	client_resp_free(&r);
	/* A body cut before its closing boundary. */
	char cut[1024];
	int cl = snprintf(
	    cut, sizeof(cut),
	    "--" IV_BOUNDARY "\r\nContent-Disposition: form-data; name=\"remote_path\"\r\n\r\n"
	    "/app/keep.txt\r\n--" IV_BOUNDARY
	    "\r\nContent-Disposition: form-data; name=\"session_id\"\r\n\r\n%s\r\n--" IV_BOUNDARY
	    "\r\nContent-Disposition: form-data; name=\"file\"; filename=\"f\"\r\n\r\nhalf",
	    id);
	iv_req("POST", "/upload", bk.free_key, cut, (size_t)cl,
	       "multipart/form-data; boundary=" IV_BOUNDARY, &r);
	CHECK_422(&r, "");
	client_resp_free(&r);
	/* Not multipart; no boundary. */
	iv_req("POST", "/upload", bk.free_key, "a=b", 0, "application/x-www-form-urlencoded", &r);
	CHECK_STATUS(&r, 422);
	client_resp_free(&r);
	iv_req("POST", "/upload", bk.free_key, "a=b", 0, "multipart/form-data", &r);
	CHECK_STATUS(&r, 422);
	client_resp_free(&r);
	/* Another key's session, an unknown one. */
	iv_upload_file(bk.paid_key, id, "/app/keep.txt", "stolen", 0, &r);
	CHECK_DETAIL(&r, 404);
	client_resp_free(&r);
	iv_upload_file(bk.free_key, NO_UUID, "/app/keep.txt", "x", 0, &r);
	CHECK_DETAIL(&r, 404);
	client_resp_free(&r);
	size_t got;
	char *back = iv_download_ok(bk.free_key, id, "/app/keep.txt", &got);
	CHECK_STR_EQ(back, "original");
	free(back);
	/* No temporary file was left beside it. */
	char *ls = client_must_run(bk.free_key, id, "ls -A /app");
	CHECK_STR_EQ(ls, "keep.txt\n");
	free(ls);
	free(id);
}

TEST(download_refusals)
{
	char *id = iv_create(bk.paid_key, NULL);
	struct client_resp r;
	iv_req("POST", "/download", bk.paid_key, "session_id=x", 0,
	       "application/x-www-form-urlencoded", &r);
	CHECK_422(&r, "filename");
	client_resp_free(&r);
	iv_req("POST", "/download", bk.paid_key, "", 0, "application/x-www-form-urlencoded", &r);
	CHECK_422(&r, "filename");
	CHECK_422(&r, "session_id");
	client_resp_free(&r);
	iv_download(bk.paid_key, id, "/nothing/here", &r);
	CHECK_DETAIL(&r, 404);
	client_resp_free(&r);
	iv_download(bk.paid_key, id, "/proc/1/environ", &r);
	CHECK_DETAIL(&r, 403);
	client_resp_free(&r);
	iv_download(bk.paid_key, id, "/proc/self/root/proc/1/mem", &r);
	CHECK_DETAIL(&r, 403);
	client_resp_free(&r);
	iv_download(bk.paid_key, id, "/proc/self/root/etc/hostname", &r);
	CHECK_DETAIL(&r, 403);
	client_resp_free(&r);
	iv_download(bk.paid_key, id, "/workspace", &r);
	CHECK_MSG(r.status >= 400 && r.status < 500, "%ld %s", r.status, r.body);
	client_resp_free(&r);
	/* A symlink out of the root stays inside it. */
	char *out = client_must_run(bk.paid_key, id,
				    "ln -s /../../../../etc/hostname /workspace/l "
				    "&& echo ok");
	CHECK_STR_EQ(out, "ok\n");
	free(out);
	iv_download(bk.paid_key, id, "l", &r);
	CHECK_MSG(r.status == 200 || r.status == 404, "%ld %s", r.status, r.body);
	client_resp_free(&r);
	/* JSON is taken too. */
	iv_upload_file(bk.paid_key, id, "j.txt", "json", 0, &r);
	client_resp_free(&r);
	char body[256];
	snprintf(body, sizeof(body), "{\"filename\":\"j.txt\",\"session_id\":\"%s\"}", id);
	iv("POST", "/download", bk.paid_key, body, &r);
	CHECK_STATUS(&r, 200);
	CHECK_STR_EQ(client_must_str(r.json, "content", r.body), "anNvbg==");
	client_resp_free(&r);
	free(id);
}

/* ---- egress ---- */

TEST(egress_policy_kept)
{
	char *id = iv_create(bk.paid_key, NULL);
	char path[256];
	snprintf(path, sizeof(path), "/v1/egress/session/%s", id);
	struct client_resp r;
	iv("GET", path, bk.paid_key, NULL, &r);
	CHECK_STATUS(&r, 200);
	CHECK(json_is_false(json_object_get(r.json, "allow_http")));
	CHECK(json_is_false(json_object_get(r.json, "allow_https")));
	CHECK(json_is_false(json_object_get(r.json, "allow_package_managers")));
	CHECK(json_array_size(json_object_get(r.json, "allowed_domains")) == 0);
	client_resp_free(&r);
	iv("POST", path, bk.paid_key,
	   "{\"allow_http\":false,\"allow_https\":false,\"allowed_domains\":[]}", &r);
	CHECK_STATUS(&r, 200);
	client_resp_free(&r);
	/* A paid key's sessions may have egress: the grant is kept and
	 * answered (tests/blackbox/egress.c proves it is enforced). */
	iv("POST", path, bk.paid_key, "{\"allow_https\":true}", &r);
	CHECK_STATUS(&r, 200);
	CHECK(json_is_true(json_object_get(r.json, "allow_https")));
	CHECK(json_is_false(json_object_get(r.json, "allow_http")));
	client_resp_free(&r);
	iv("GET", path, bk.paid_key, NULL, &r);
	CHECK_STATUS(&r, 200);
	CHECK(json_is_true(json_object_get(r.json, "allow_https")));
	client_resp_free(&r);
	iv("POST", path, bk.paid_key, "{\"allow_https\":\"yes\"}", &r);
	CHECK_422(&r, "allow_https");
	client_resp_free(&r);
	free(id);
}

/* ---- HTTP details ---- */

/* A base_url ending in '/' gives '//'; several requests go on one
 * connection; no answer of the API redirects. */
TEST(double_slash_and_keep_alive)
{
	char *id = iv_create(bk.paid_key, NULL);
	char path[256];
	snprintf(path, sizeof(path), "//v1/sessions/status/%s", id);
	for (int i = 0; i < 5; i++) {
		struct client_resp r;
		iv("GET", path, bk.paid_key, NULL, &r);
		CHECK_STATUS(&r, 200);
		client_resp_free(&r);
	}
	struct client_resp r;
	iv("POST", "//v1/sessions/session", bk.paid_key, "{}", &r);
	CHECK_STATUS(&r, 200);
	client_resp_free(&r);
	free(id);
}

/* The rate limiter's 429 is {detail} on the dialect's routes. */
TEST(rate_limit_is_detail)
{
	char key[CLIENT_KEY_MAX];
	const char *const ov[] = {"--rpm", "3", NULL};
	CHECK(client_key_create_with(&bk.d, "paid", ov, key, sizeof(key)) == 0);
	struct client_resp r = {0};
	long last = 0;
	for (int i = 0; i < 6 && last != 429; i++) {
		if (i)
			client_resp_free(&r);
		iv("GET", "/v1/sessions/sandboxes", key, NULL, &r);
		last = r.status;
	}
	CHECK_DETAIL(&r, 429);
	char v[32];
	CHECK(client_resp_header(&r, "Retry-After", v, sizeof(v)) != NULL);
	client_resp_free(&r);
}

/* ---- executions: what is refused before anything runs ---- */

TEST(execute_validation)
{
	char *id = iv_create(bk.paid_key, NULL);
	char body[512];
	struct client_resp r;
	static const struct {
		const char *rest, *field;
	} cases[] = {
	    {",\"command\":\"1\",\"language\":\"cobol\"", "language"},
	    {",\"command\":\"1\",\"language\":7", "language"},
	    {",\"command\":\"1\",\"timeout\":0", "timeout"},
	    {",\"command\":\"1\",\"timeout\":601", "timeout"},
	    {",\"command\":\"1\",\"timeout\":\"5\"", "timeout"},
	    {"", "command"},
	    {",\"command\":[\"ls\"]", "command"},
	    {",\"code\":5", "code"},
	};
	static const char *const paths[] = {"/execute", "/execute_async"};
	for (size_t p = 0; p < 2; p++)
		for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
			snprintf(body, sizeof(body), "{\"session_id\":\"%s\"%s}", id,
				 cases[i].rest);
			iv("POST", paths[p], bk.paid_key, body, &r);
			CHECK_422(&r, cases[i].field);
			client_resp_free(&r);
		}
	/* Two fields at fault, two entries. */
	iv("POST", "/execute", bk.paid_key, "{\"session_id\":5,\"timeout\":-1}", &r);
	CHECK_422(&r, "session_id");
	CHECK_422(&r, "timeout");
	CHECK_422(&r, "command");
	client_resp_free(&r);
	/* Both dialects' ids: buntime's 400 in buntime's shape. */
	snprintf(body, sizeof(body),
		 "{\"session_id\":\"%s\",\"sessionId\":\"%s\",\"command\":\"1\"}", id, id);
	client_call(&bk.d, "POST", "/execute", bk.paid_key, body, &r);
	CHECK_ERROR(&r, 400, "invalid_request");
	client_resp_free(&r);
	/* An unknown session, another key's, no key. */
	iv("POST", "/execute", bk.paid_key, "{\"session_id\":\"" NO_UUID "\",\"command\":\"1\"}",
	   &r);
	CHECK_DETAIL(&r, 404);
	client_resp_free(&r);
	char other[CLIENT_KEY_MAX];
	client_must_key("paid", other, sizeof(other));
	snprintf(body, sizeof(body), "{\"session_id\":\"%s\",\"command\":\"1\"}", id);
	iv("POST", "/execute", other, body, &r);
	CHECK_DETAIL(&r, 404);
	client_resp_free(&r);
	iv("POST", "/execute", NULL, body, &r);
	CHECK_DETAIL(&r, 401);
	client_resp_free(&r);
	iv("GET", "/v1/executions/nope", bk.paid_key, NULL, &r);
	CHECK_DETAIL(&r, 404);
	client_resp_free(&r);
	/* None of that spawned the VM. */
	json_t *st = iv_get("status", id, bk.paid_key);
	CHECK(json_is_null(json_object_get(st, "vm_status")));
	json_decref(st);
	free(id);
}

/* An upload passes through the daemon in bounded chunks: 120 MiB grow its
 * peak memory by a few MiB, not by the file. On a daemon of the test's
 * own, whose sanitizer keeps little freed memory in quarantine (by
 * default ASan holds up to 256 MB of it, which would measure ASan). */
TEST_TIMEOUT(upload_large_file_is_streamed, 300)
{
	if (bk.skip_reason[0] != '\0')
		SKIP("%s", bk.skip_reason);
	const char *asan = getenv("ASAN_OPTIONS");
	char opts[512];
	snprintf(opts, sizeof(opts), "%s%squarantine_size_mb=4", asan ? asan : "", asan ? ":" : "");
	setenv("ASAN_OPTIONS", opts, 1);
	struct client_daemon d = {0};
	CHECK(client_daemon_start(&d, NULL) == 0);
	iv_daemon = &d;
	char key[CLIENT_KEY_MAX];
	const char *const ov[] = {"--max-file-size", "134217728", NULL};
	CHECK(client_key_create_with(&d, "enterprise", ov, key, sizeof(key)) == 0);
	char *id = iv_create(key, NULL);
	struct client_resp r;
	iv_upload_file(key, id, "/tmp/warm", "x", 0, &r); /* the VM spawned first */
	CHECK_STATUS(&r, 200);
	client_resp_free(&r);
	size_t n = 120u << 20;
	char *data = malloc(n);
	CHECK(data != NULL);
	for (size_t i = 0; i < n; i++)
		data[i] = (char)(i * 31 + (i >> 20));
	/* Peak memory from now on (clear_refs 5 resets VmHWM). */
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/clear_refs", (int)d.pid);
	FILE *f = fopen(path, "we");
	CHECK(f != NULL);
	fputs("5", f);
	fclose(f);
	long before = raw_proc_kb(d.pid, "VmHWM");
	iv_upload_file(key, id, "big.bin", data, n, &r);
	CHECK_STATUS(&r, 200);
	CHECK_INT_EQ(client_must_int(r.json, "size", r.body), (long long)n);
	client_resp_free(&r);
	long grew = raw_proc_kb(d.pid, "VmHWM") - before;
	fprintf(stderr, "    120 MiB upload: bunkerd's peak grew by %ld kB\n", grew);
	CHECK_MSG(grew < 32 * 1024, "bunkerd's peak grew by %ld kB", grew);
	free(data);
	iv_download(key, id, "big.bin", &r);
	CHECK_STATUS(&r, 200);
	CHECK_INT_EQ(client_must_int(r.json, "size", r.body), (long long)n);
	client_resp_free(&r);
	free(id);
	iv_daemon = NULL;
	CHECK_INT_EQ(client_daemon_stop(&d), 0);
	CHECK_INT_EQ(client_daemon_check(&d), 0);
	unlink(d.log_path);
	rmdir(d.log_dir);
}
