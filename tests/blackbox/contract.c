/* Black-box tests of the contract's common rules against a real bunkerd:
 * per-key plan overrides and the key commands of the CLI, rate limits and
 * their headers, Idempotency-Key (a restart included), and the operations
 * endpoints (/healthz, /metrics, /openapi.json) and the request log.
 *
 * Every test makes its own keys through `bunker keys create`, so that no
 * test spends another's rate-limit budget or counts another's sessions.
 */
#include "../client.h"
#include "util/util.h"

#include <fcntl.h>
#include <regex.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

CLIENT_FIXTURE(NULL)

/* ---- the CLI ---- */

static void need_daemon(void)
{
	if (bk.skip_reason[0] != '\0')
		SKIP("%s", bk.skip_reason);
}

/* Reads fd to EOF into buf (NUL-terminated, cut at len - 1). */
static void read_all(int fd, char *buf, size_t len)
{
	size_t n = 0;
	ssize_t r;
	char sink[512];
	while ((r = read(fd, n + 1 < len ? buf + n : sink,
			 n + 1 < len ? len - 1 - n : sizeof(sink))) != 0) {
		if (r < 0)
			break;
		if (n + 1 < len)
			n += (size_t)r;
	}
	buf[n] = '\0';
}

/* Runs argv (argv[0] a path): stdout into out, stderr into errout (either
 * may be NULL). Returns the exit status, -1 when it did not run or exit. */
static int run_capture(const char *const *argv, char *out, size_t out_len, char *errout,
		       size_t err_len)
{
	int po[2], pe[2];
	CHECK(pipe2(po, O_CLOEXEC) == 0 && pipe2(pe, O_CLOEXEC) == 0);
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, po[1], 1);
	posix_spawn_file_actions_adddup2(&fa, pe[1], 2);
	pid_t pid;
	int rc = posix_spawn(&pid, argv[0], &fa, NULL, (char *const *)argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	close(po[1]);
	close(pe[1]);
	char dummy[64];
	read_all(po[0], out ? out : dummy, out ? out_len : sizeof(dummy));
	read_all(pe[0], errout ? errout : dummy, errout ? err_len : sizeof(dummy));
	close(po[0]);
	close(pe[0]);
	if (rc != 0)
		return -1;
	int status;
	while (waitpid(pid, &status, 0) < 0)
		;
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* Runs `bunker --data-dir <d's> args...` as run_capture() does. */
static int cli(const struct client_daemon *d, const char *const *args, char *out, size_t out_len,
	       char *errout, size_t err_len)
{
	char bin[PATH_MAX + 16];
	snprintf(bin, sizeof(bin), "%s/bunker", d->build);
	const char *argv[32] = {bin, "--data-dir", d->data_dir};
	int argc = 3;
	for (int i = 0; args[i] && argc < 31; i++)
		argv[argc++] = args[i];
	argv[argc] = NULL;
	return run_capture(argv, out, out_len, errout, err_len);
}

struct key {
	char secret[CLIENT_KEY_MAX];
	char id[32];
};

/* `bunker keys create --plan plan <overrides...>` on daemon d. */
static void key_make_on(const struct client_daemon *d, const char *plan,
			const char *const *overrides, struct key *k)
{
	const char *args[32] = {"keys", "create", "--plan", plan};
	int n = 4;
	for (int i = 0; overrides && overrides[i] && n < 31; i++)
		args[n++] = overrides[i];
	args[n] = NULL;
	char out[512], errout[1024];
	int rc = cli(d, args, out, sizeof(out), errout, sizeof(errout));
	CHECK_MSG(rc == 0, "bunker keys create failed (%d): %s", rc, errout);
	size_t len = strcspn(out, "\n");
	out[len] = '\0';
	CHECK_MSG(strncmp(out, "bk_", 3) == 0 && len < sizeof(k->secret), "printed '%s'", out);
	memcpy(k->secret, out, len + 1);
	const char *at = strstr(errout, "created key ");
	CHECK_MSG(at != NULL, "no key id in '%s'", errout);
	at += strlen("created key ");
	size_t idlen = strcspn(at, " ");
	CHECK(idlen > 0 && idlen < sizeof(k->id));
	memcpy(k->id, at, idlen);
	k->id[idlen] = '\0';
}

static void key_make(const char *plan, const char *const *overrides, struct key *k)
{
	need_daemon();
	key_make_on(&bk.d, plan, overrides, k);
}

/* ---- requests ---- */

static void call(const char *method, const char *path, const char *key, const char *body,
		 struct client_resp *r)
{
	client_call(&bk.d, method, path, key, body, r);
}

/* A request with an Idempotency-Key. */
static void call_idem(const struct client_daemon *d, const char *path, const char *key,
		      const char *idem, const char *body, struct client_resp *r)
{
	char h[512];
	snprintf(h, sizeof(h), "Idempotency-Key: %s", idem);
	const char *headers[] = {h, NULL};
	struct client_req req = {.method = "POST",
				 .path = path,
				 .key = key,
				 .body = body,
				 .headers = headers,
				 .timeout_s = 60};
	client_request(d, &req, r);
}

/* The header as a whole number, failing the test when absent or not one. */
static long long header_num(const struct client_resp *r, const char *name)
{
	char buf[64];
	const char *v = client_resp_header(r, name, buf, sizeof(buf));
	CHECK_MSG(v != NULL, "no %s header in:\n%s", name, r->headers);
	char *end;
	long long n = strtoll(v, &end, 10);
	CHECK_MSG(*v && *end == '\0', "%s: '%s' is not a whole number", name, v);
	return n;
}

static bool has_header(const struct client_resp *r, const char *name)
{
	char buf[64];
	return client_resp_header(r, name, buf, sizeof(buf)) != NULL;
}

static void check_no_ratelimit_headers(const struct client_resp *r)
{
	CHECK_MSG(!has_header(r, "X-RateLimit-Limit") && !has_header(r, "X-RateLimit-Remaining") &&
		      !has_header(r, "X-RateLimit-Reset"),
		  "unexpected X-RateLimit-* headers (status %ld):\n%s", r->status, r->headers);
}

static long long list_total_on(const struct client_daemon *d, const char *key)
{
	struct client_resp r;
	client_call(d, "GET", "/sessions", key, NULL, &r);
	CHECK_STATUS(&r, 200);
	json_t *t = json_object_get(r.json, "total");
	CHECK(json_is_integer(t));
	long long n = json_integer_value(t);
	client_resp_free(&r);
	return n;
}

/* Deletes every session of key. */
static void delete_all(const char *key)
{
	struct client_resp r;
	call("GET", "/sessions?limit=100", key, NULL, &r);
	CHECK_STATUS(&r, 200);
	size_t i;
	json_t *s;
	json_array_foreach (json_object_get(r.json, "sessions"), i, s)
		client_must_delete(key, client_json_str(s, "sessionId"));
	client_resp_free(&r);
}

static double unix_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ---- plans per key ---- */

TEST(override_max_sessions_429_with_retry_after)
{
	struct key k;
	key_make("paid", (const char *const[]){"--max-sessions", "2", NULL}, &k);
	char *a = client_must_create(k.secret, NULL);
	char *b = client_must_create(k.secret, NULL);
	struct client_resp r;
	call("POST", "/sessions/create", k.secret, NULL, &r);
	CHECK_ERROR(&r, 429, "rate_limit_exceeded");
	CHECK(header_num(&r, "Retry-After") > 0);
	/* Still an authenticated answer: it carries the rate-limit headers. */
	CHECK(header_num(&r, "X-RateLimit-Limit") == 1000);
	client_resp_free(&r);
	CHECK_INT_EQ(list_total_on(&bk.d, k.secret), 2);
	/* Room again once one is gone. */
	client_must_delete(k.secret, a);
	char *c = client_must_create(k.secret, NULL);
	client_must_delete(k.secret, b);
	client_must_delete(k.secret, c);
	free(a);
	free(b);
	free(c);
}

TEST(override_max_ttl)
{
	struct key k;
	key_make("free", (const char *const[]){"--max-ttl", "3600", NULL}, &k);
	struct client_resp r;
	call("POST", "/sessions/create", k.secret, "{\"ttl\":3601}", &r);
	CHECK_ERROR_FIELD(&r, 400, "invalid_request", "ttl");
	client_resp_free(&r);
	/* The default (86400) is capped at the key's maximum. */
	call("POST", "/sessions/create", k.secret, NULL, &r);
	CHECK_STATUS(&r, 200);
	double created, expires;
	CHECK(client_parse_time(client_json_str(r.json, "createdAt"), &created));
	CHECK(client_parse_time(client_json_str(r.json, "expiresAt"), &expires));
	CHECK_MSG(expires - created > 3599 && expires - created < 3601, "ttl %.3f",
		  expires - created);
	client_must_delete(k.secret, client_json_str(r.json, "sessionId"));
	client_resp_free(&r);
	call("POST", "/sessions/create", k.secret, "{\"ttl\":3600}", &r);
	CHECK_STATUS(&r, 200);
	client_must_delete(k.secret, client_json_str(r.json, "sessionId"));
	client_resp_free(&r);
}

TEST(override_resource_ceilings)
{
	struct key k;
	key_make("paid",
		 (const char *const[]){"--memory-max", "2048", "--cpu-max", "0.5", "--disk-max",
				       "2048", "--timeout-default", "7", "--timeout-max", "20",
				       NULL},
		 &k);
	struct client_resp r;
	static const char *const refused[][2] = {
	    {"{\"resourceLimits\":{\"memory\":2049}}", "resourceLimits.memory"},
	    {"{\"resourceLimits\":{\"cpu\":0.75}}", "resourceLimits.cpu"},
	    {"{\"resourceLimits\":{\"disk\":4096}}", "resourceLimits.disk"},
	    {"{\"resourceLimits\":{\"timeout\":21}}", "resourceLimits.timeout"},
	};
	for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
		call("POST", "/sessions/create", k.secret, refused[i][0], &r);
		CHECK_ERROR_FIELD(&r, 400, "invalid_request", refused[i][1]);
		client_resp_free(&r);
	}
	call("POST", "/sessions/create", k.secret,
	     "{\"resourceLimits\":{\"memory\":2048,\"cpu\":0.5,\"disk\":2048}}", &r);
	CHECK_STATUS(&r, 200);
	json_t *lim = json_object_get(r.json, "resourceLimits");
	CHECK_INT_EQ(json_integer_value(json_object_get(lim, "memory")), 2048);
	CHECK(json_number_value(json_object_get(lim, "cpu")) == 0.5);
	/* The key's default timeout. */
	CHECK_INT_EQ(json_integer_value(json_object_get(lim, "timeout")), 7);
	char id[64];
	snprintf(id, sizeof(id), "%s", client_json_str(r.json, "sessionId"));
	client_resp_free(&r);

	/* An execution's timeout above the key's maximum is 400. */
	json_t *ex = json_pack("{s:s,s:s,s:i}", "sessionId", id, "command", "true", "timeout", 21);
	client_call_json(&bk.d, "POST", "/execute", k.secret, ex, &r);
	json_decref(ex);
	CHECK_ERROR_FIELD(&r, 400, "invalid_request", "timeout");
	client_resp_free(&r);
	client_must_delete(k.secret, id);
}

TEST(override_max_file_size)
{
	struct key k;
	key_make("paid", (const char *const[]){"--max-file-size", "1024", NULL}, &k);
	char *id = client_must_create(k.secret, NULL);
	char big[1100];
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	json_t *ex = json_pack("{s:s,s:s,s:[{s:s,s:s}]}", "sessionId", id, "command", "true",
			       "files", "path", "big.txt", "content", big);
	struct client_resp r;
	client_call_json(&bk.d, "POST", "/execute", k.secret, ex, &r);
	json_decref(ex);
	CHECK_ERROR(&r, 413, "payload_too_large");
	client_resp_free(&r);
	big[1024] = '\0';
	ex = json_pack("{s:s,s:s,s:[{s:s,s:s}]}", "sessionId", id, "command", "wc -c < big.txt",
		       "files", "path", "big.txt", "content", big);
	client_call_json(&bk.d, "POST", "/execute", k.secret, ex, &r);
	json_decref(ex);
	CHECK_STATUS(&r, 200);
	CHECK_STR_EQ(client_json_str(r.json, "stdout"), "1024\n");
	client_resp_free(&r);
	client_must_delete(k.secret, id);
	free(id);
}

TEST(cli_refuses_bad_overrides)
{
	need_daemon();
	static const char *const bad[][6] = {
	    {"keys", "create", "--plan", "paid", "--max-sessions", "-3"},
	    {"keys", "create", "--plan", "paid", "--rpm", "lots"},
	    {"keys", "create", "--plan", "paid", "--colour", "5"},
	    {"keys", "create", "--plan", "gold", "--rpm", "5"},
	    {"keys", "create", "--plan", "free", "--timeout-default", "60"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		const char *args[8];
		memcpy(args, bad[i], sizeof(bad[i]));
		args[6] = NULL;
		char out[256], errout[512];
		int rc = cli(&bk.d, args, out, sizeof(out), errout, sizeof(errout));
		CHECK_MSG(rc != 0, "'%s %s' was accepted", bad[i][4], bad[i][5]);
		CHECK_MSG(out[0] == '\0', "printed a key: %s", out);
		CHECK_MSG(errout[0] != '\0', "no message");
	}
}

/* A data directory too long for the paths below it is refused with its
 * name, never cut short (the daemon kept its state in the cut path). */
TEST(long_data_dir_is_refused_not_cut)
{
	need_daemon();
	/* 600 bytes in names of 99: a path the kernel takes, longer than the
	 * daemon's (it kept its state at the first 511 bytes). */
	char top[64], dir[700];
	snprintf(top, sizeof(top), "/tmp/bk-long-%d", (int)getpid());
	size_t n = (size_t)snprintf(dir, sizeof(dir), "%s", top);
	while (n < 600)
		n += (size_t)snprintf(dir + n, sizeof(dir) - n, "/%.*s", 98,
				      "dddddddddddddddddddddddddddddddddddddddddddddddddd"
				      "dddddddddddddddddddddddddddddddddddddddddddddddd");
	char bin[PATH_MAX + 16], errout[2048];
	snprintf(bin, sizeof(bin), "%s/bunkerd", bk.d.build);
	const char *argv[] = {bin, "--port", "1", "--data-dir", dir, NULL};
	int rc = run_capture(argv, NULL, 0, errout, sizeof(errout));
	struct stat st;
	bool created = stat(top, &st) == 0;
	rm_rf(top, NULL);
	CHECK_MSG(rc > 0, "bunkerd with a %zu-byte data directory: %d", strlen(dir), rc);
	CHECK_MSG(strstr(errout, "--data-dir") != NULL, "message: %s", errout);
	CHECK_MSG(!created, "a data directory was created under '%s'", top);
	argv[3] = "--snapshot-dir";
	rc = run_capture(argv, NULL, 0, errout, sizeof(errout));
	rm_rf(top, NULL);
	CHECK_MSG(rc > 0 && strstr(errout, "--snapshot-dir") != NULL, "%d: %s", rc, errout);

	char huge[PATH_MAX + 64];
	memset(huge, 'h', sizeof(huge) - 1);
	memcpy(huge, "/tmp/", 5);
	huge[sizeof(huge) - 1] = '\0';
	snprintf(bin, sizeof(bin), "%s/bunker", bk.d.build);
	const char *cli_argv[] = {bin, "--data-dir", huge, "keys", "list", NULL};
	rc = run_capture(cli_argv, NULL, 0, errout, sizeof(errout));
	CHECK_MSG(rc > 0 && strstr(errout, "too long") != NULL, "bunker: %d: %s", rc, errout);
}

TEST(keys_list_shows_everything_but_the_secret)
{
	struct key k;
	key_make("enterprise", (const char *const[]){"--max-sessions", "500", "--rpm", "50", NULL},
		 &k);
	static char out[1 << 16];
	char errout[256];
	CHECK_INT_EQ(cli(&bk.d, (const char *const[]){"keys", "list", NULL}, out, sizeof(out),
			 errout, sizeof(errout)),
		     0);
	CHECK(strstr(out, "ID") && strstr(out, "PLAN") && strstr(out, "OVERRIDES"));
	const char *line = strstr(out, k.id);
	CHECK_MSG(line != NULL, "%s not listed:\n%s", k.id, out);
	CHECK(strstr(line, "enterprise") != NULL);
	CHECK(strstr(line, "\"max_sessions\":500") != NULL);
	CHECK(strstr(out, k.secret) == NULL);
	CHECK(strstr(out, k.secret + 3) == NULL);

	CHECK_INT_EQ(cli(&bk.d, (const char *const[]){"keys", "list", "--json", NULL}, out,
			 sizeof(out), errout, sizeof(errout)),
		     0);
	CHECK(strstr(out, k.secret + 3) == NULL);
	json_error_t je;
	json_t *arr = json_loads(out, 0, &je);
	CHECK_MSG(json_is_array(arr), "keys list --json: %s", je.text);
	bool found = false;
	size_t i;
	json_t *e;
	json_array_foreach (arr, i, e) {
		if (strcmp(client_json_str(e, "id"), k.id) != 0)
			continue;
		found = true;
		CHECK_STR_EQ(client_json_str(e, "plan"), "enterprise");
		CHECK(json_is_null(json_object_get(e, "revoked")));
		double t;
		CHECK(client_parse_time(client_json_str(e, "created"), &t));
		json_t *ov = json_object_get(e, "overrides");
		CHECK_INT_EQ(json_integer_value(json_object_get(ov, "max_sessions")), 500);
		CHECK_INT_EQ(json_integer_value(json_object_get(ov, "rpm")), 50);
		CHECK_INT_EQ(json_object_size(ov), 2);
	}
	CHECK(found);
	json_decref(arr);
}

TEST(revoked_key_is_refused_at_once)
{
	struct key k;
	key_make("paid", NULL, &k);
	char *id = client_must_create(k.secret, NULL);
	struct client_resp r;
	call("GET", "/sessions", k.secret, NULL, &r);
	CHECK_STATUS(&r, 200);
	client_resp_free(&r);
	char errout[256];
	CHECK_INT_EQ(cli(&bk.d, (const char *const[]){"keys", "revoke", k.id, NULL}, NULL, 0,
			 errout, sizeof(errout)),
		     0);
	call("GET", "/sessions", k.secret, NULL, &r);
	CHECK_ERROR(&r, 401, "unauthorized");
	check_no_ratelimit_headers(&r);
	client_resp_free(&r);
	char path[128];
	snprintf(path, sizeof(path), "/sessions/%s", id);
	call("DELETE", path, k.secret, NULL, &r);
	CHECK_ERROR(&r, 401, "unauthorized");
	client_resp_free(&r);

	static char out[1 << 16];
	CHECK_INT_EQ(cli(&bk.d, (const char *const[]){"keys", "list", "--json", NULL}, out,
			 sizeof(out), errout, sizeof(errout)),
		     0);
	json_t *arr = json_loads(out, 0, NULL);
	size_t i;
	json_t *e;
	bool found = false;
	json_array_foreach (arr, i, e) {
		if (strcmp(client_json_str(e, "id"), k.id) == 0) {
			double t;
			CHECK(client_parse_time(client_json_str(e, "revoked"), &t));
			found = true;
		}
	}
	CHECK(found);
	json_decref(arr);
	/* An unknown id is an error. */
	CHECK(cli(&bk.d, (const char *const[]){"keys", "revoke", "key_doesnotexist0000", NULL},
		  NULL, 0, errout, sizeof(errout)) != 0);
	free(id);
}

/* ---- rate limits ---- */

TEST(ratelimit_headers_on_success_and_errors)
{
	struct key k;
	key_make("free", (const char *const[]){"--rpm", "50", NULL}, &k);
	struct client_resp r;
	double before = unix_now();
	call("GET", "/sessions", k.secret, NULL, &r);
	CHECK_STATUS(&r, 200);
	CHECK_INT_EQ(header_num(&r, "X-RateLimit-Limit"), 50);
	CHECK_INT_EQ(header_num(&r, "X-RateLimit-Remaining"), 49);
	long long reset = header_num(&r, "X-RateLimit-Reset");
	CHECK_MSG(reset >= (long long)before + 59 && reset <= (long long)unix_now() + 61,
		  "reset %lld, now %.0f", reset, before);
	CHECK(!has_header(&r, "Retry-After"));
	client_resp_free(&r);

	/* Error answers to an authenticated request carry them too. */
	call("GET", "/sessions/ses_aaaaaaaaaaaaaaaaaaaa", k.secret, NULL, &r);
	CHECK_ERROR(&r, 404, "session_not_found");
	CHECK_INT_EQ(header_num(&r, "X-RateLimit-Remaining"), 48);
	CHECK_INT_EQ(header_num(&r, "X-RateLimit-Reset"), reset);
	client_resp_free(&r);
	call("POST", "/sessions/create", k.secret, "{\"ttl\":\"x\"}", &r);
	CHECK_ERROR(&r, 400, "invalid_request");
	CHECK_INT_EQ(header_num(&r, "X-RateLimit-Remaining"), 47);
	client_resp_free(&r);
	call("POST", "/sessions/create", k.secret, "{\"resourceLimits\":{\"memory\":512}}", &r);
	CHECK_ERROR(&r, 403, "forbidden");
	CHECK_INT_EQ(header_num(&r, "X-RateLimit-Remaining"), 46);
	client_resp_free(&r);

	/* 401s and the operations endpoints carry none. */
	call("GET", "/sessions", "bk_notakey", NULL, &r);
	CHECK_ERROR(&r, 401, "unauthorized");
	check_no_ratelimit_headers(&r);
	client_resp_free(&r);
	call("GET", "/sessions", NULL, NULL, &r);
	CHECK_ERROR(&r, 401, "unauthorized");
	check_no_ratelimit_headers(&r);
	client_resp_free(&r);
	static const char *const ops[] = {"/healthz", "/metrics", "/openapi.json"};
	for (size_t i = 0; i < 3; i++) {
		call("GET", ops[i], k.secret, NULL, &r);
		CHECK_INT_EQ(r.status, 200);
		check_no_ratelimit_headers(&r);
		client_resp_free(&r);
	}
	/* Nor did they spend the key's budget. */
	call("GET", "/sessions", k.secret, NULL, &r);
	CHECK_INT_EQ(header_num(&r, "X-RateLimit-Remaining"), 45);
	client_resp_free(&r);
}

TEST(ratelimit_refuses_past_the_limit)
{
	struct key k, other;
	key_make("paid", (const char *const[]){"--rpm", "5", NULL}, &k);
	key_make("paid", (const char *const[]){"--rpm", "5", NULL}, &other);
	struct client_resp r;
	for (int i = 0; i < 5; i++) {
		call("GET", "/sessions", k.secret, NULL, &r);
		CHECK_STATUS(&r, 200);
		CHECK_INT_EQ(header_num(&r, "X-RateLimit-Remaining"), 4 - i);
		client_resp_free(&r);
	}
	for (int i = 0; i < 3; i++) {
		call("GET", "/sessions", k.secret, NULL, &r);
		CHECK_ERROR(&r, 429, "rate_limit_exceeded");
		long long after = header_num(&r, "Retry-After");
		CHECK_MSG(after >= 1 && after <= 60, "Retry-After %lld", after);
		CHECK_INT_EQ(header_num(&r, "X-RateLimit-Limit"), 5);
		CHECK_INT_EQ(header_num(&r, "X-RateLimit-Remaining"), 0);
		long long reset = header_num(&r, "X-RateLimit-Reset");
		CHECK_MSG(reset >= (long long)unix_now() + after - 2 &&
			      reset <= (long long)unix_now() + after + 2,
			  "reset %lld, retry after %lld", reset, after);
		client_resp_free(&r);
	}
	/* Every route counts, whatever it is. */
	call("POST", "/sessions/create", k.secret, NULL, &r);
	CHECK_ERROR(&r, 429, "rate_limit_exceeded");
	client_resp_free(&r);
	/* Another key has its own budget. */
	call("GET", "/sessions", other.secret, NULL, &r);
	CHECK_STATUS(&r, 200);
	CHECK_INT_EQ(header_num(&r, "X-RateLimit-Remaining"), 4);
	client_resp_free(&r);
}

#define PARALLEL 20

TEST(ratelimit_exact_under_concurrency)
{
	struct key k;
	key_make("paid", (const char *const[]){"--rpm", "10", NULL}, &k);
	int go[2];
	CHECK(pipe(go) == 0);
	pid_t kids[PARALLEL];
	for (int i = 0; i < PARALLEL; i++) {
		kids[i] = fork();
		CHECK(kids[i] >= 0);
		if (kids[i] == 0) {
			close(go[1]);
			char c;
			/* Everyone starts when the parent closes the pipe. */
			while (read(go[0], &c, 1) > 0)
				;
			struct client_resp r;
			int rc = client_call(&bk.d, "GET", "/sessions", k.secret, NULL, &r);
			int code = rc < 0 ? 3 : r.status == 200 ? 0 : r.status == 429 ? 1 : 2;
			_exit(code);
		}
	}
	close(go[0]);
	close(go[1]);
	int ok = 0, limited = 0, other = 0;
	for (int i = 0; i < PARALLEL; i++) {
		int status;
		CHECK(waitpid(kids[i], &status, 0) == kids[i]);
		int code = WIFEXITED(status) ? WEXITSTATUS(status) : 9;
		ok += code == 0;
		limited += code == 1;
		other += code > 1;
	}
	CHECK_MSG(ok == 10 && limited == 10 && other == 0, "%d ok, %d limited, %d other", ok,
		  limited, other);
}

/* ---- idempotency ---- */

TEST(idempotent_create_replays_byte_for_byte)
{
	struct key k;
	key_make("paid", NULL, &k);
	struct client_resp a, b, c, d;
	call_idem(&bk.d, "/sessions/create", k.secret, "create-1",
		  "{\"ttl\":600,\"metadata\":{\"a\":1,\"b\":[1,2]}}", &a);
	CHECK_STATUS(&a, 200);
	CHECK(!has_header(&a, "Idempotent-Replayed"));
	call_idem(&bk.d, "/sessions/create", k.secret, "create-1",
		  "{\"ttl\":600,\"metadata\":{\"a\":1,\"b\":[1,2]}}", &b);
	CHECK_STATUS(&b, 200);
	char buf[32];
	CHECK_STR_EQ(client_resp_header(&b, "Idempotent-Replayed", buf, sizeof(buf)), "true");
	CHECK_INT_EQ(b.body_len, a.body_len);
	CHECK(memcmp(a.body, b.body, a.body_len) == 0);
	/* The same JSON written otherwise is the same request. */
	call_idem(&bk.d, "/sessions/create", k.secret, "create-1",
		  "{ \"metadata\": {\"b\": [1, 2], \"a\": 1},\n \"ttl\": 600 }", &c);
	CHECK_STATUS(&c, 200);
	CHECK(has_header(&c, "Idempotent-Replayed"));
	CHECK(c.body_len == a.body_len && memcmp(a.body, c.body, a.body_len) == 0);
	/* Replays are authenticated answers like any other. */
	CHECK(has_header(&c, "X-RateLimit-Remaining"));
	CHECK_INT_EQ(list_total_on(&bk.d, k.secret), 1);

	/* Another body under the same key: 422, and nothing created. */
	call_idem(&bk.d, "/sessions/create", k.secret, "create-1", "{\"ttl\":700}", &d);
	CHECK_ERROR(&d, 422, "idempotency_key_reused");
	CHECK(!has_header(&d, "Idempotent-Replayed"));
	client_resp_free(&d);
	/* Same body on another route is another request too. */
	call_idem(&bk.d, "/execute", k.secret, "create-1",
		  "{\"ttl\":600,\"metadata\":{\"a\":1,\"b\":[1,2]}}", &d);
	CHECK_ERROR(&d, 422, "idempotency_key_reused");
	client_resp_free(&d);
	CHECK_INT_EQ(list_total_on(&bk.d, k.secret), 1);

	/* A replay after the session is gone returns the stored answer still. */
	client_must_delete(k.secret, client_json_str(a.json, "sessionId"));
	call_idem(&bk.d, "/sessions/create", k.secret, "create-1",
		  "{\"ttl\":600,\"metadata\":{\"a\":1,\"b\":[1,2]}}", &d);
	CHECK_STATUS(&d, 200);
	CHECK(d.body_len == a.body_len && memcmp(a.body, d.body, a.body_len) == 0);
	CHECK_INT_EQ(list_total_on(&bk.d, k.secret), 0);
	client_resp_free(&a);
	client_resp_free(&b);
	client_resp_free(&c);
	client_resp_free(&d);
}

TEST(idempotency_keys_are_per_api_key)
{
	struct key k1, k2;
	key_make("paid", NULL, &k1);
	key_make("paid", NULL, &k2);
	struct client_resp a, b;
	call_idem(&bk.d, "/sessions/create", k1.secret, "shared", "{}", &a);
	call_idem(&bk.d, "/sessions/create", k2.secret, "shared", "{}", &b);
	CHECK_STATUS(&a, 200);
	CHECK_STATUS(&b, 200);
	CHECK(!has_header(&b, "Idempotent-Replayed"));
	CHECK(strcmp(client_json_str(a.json, "sessionId"), client_json_str(b.json, "sessionId")) !=
	      0);
	/* And a different body under the other key is no reuse either. */
	client_resp_free(&b);
	struct key k3;
	key_make("paid", NULL, &k3);
	call_idem(&bk.d, "/sessions/create", k3.secret, "shared", "{\"ttl\":900}", &b);
	CHECK_STATUS(&b, 200);
	client_must_delete(k1.secret, client_json_str(a.json, "sessionId"));
	delete_all(k2.secret);
	delete_all(k3.secret);
	client_resp_free(&a);
	client_resp_free(&b);
}

TEST(idempotency_keeps_only_2xx)
{
	struct key k;
	key_make("paid", NULL, &k);
	struct client_resp r;
	call_idem(&bk.d, "/sessions/create", k.secret, "first-fails", "{\"ttl\":10}", &r);
	CHECK_ERROR(&r, 400, "invalid_request");
	client_resp_free(&r);
	/* The key is still unused: another body is accepted. */
	call_idem(&bk.d, "/sessions/create", k.secret, "first-fails", "{\"ttl\":600}", &r);
	CHECK_STATUS(&r, 200);
	CHECK(!has_header(&r, "Idempotent-Replayed"));
	client_resp_free(&r);
	call_idem(&bk.d, "/sessions/create", k.secret, "first-fails", "{\"ttl\":600}", &r);
	CHECK_STATUS(&r, 200);
	CHECK(has_header(&r, "Idempotent-Replayed"));
	client_resp_free(&r);
	CHECK_INT_EQ(list_total_on(&bk.d, k.secret), 1);
	delete_all(k.secret);
}

TEST(idempotency_key_must_be_sane)
{
	struct key k;
	key_make("paid", NULL, &k);
	char long_key[300];
	memset(long_key, 'k', sizeof(long_key) - 1);
	long_key[sizeof(long_key) - 1] = '\0';
	struct client_resp r;
	call_idem(&bk.d, "/sessions/create", k.secret, long_key, "{}", &r);
	CHECK_ERROR_FIELD(&r, 400, "invalid_request", "Idempotency-Key");
	client_resp_free(&r);
	CHECK_INT_EQ(list_total_on(&bk.d, k.secret), 0);
}

TEST_TIMEOUT(idempotent_execute_in_flight_is_409, 90)
{
	struct key k;
	key_make("paid", NULL, &k);
	char *id = client_must_create(k.secret, NULL);
	char body[256];
	snprintf(body, sizeof(body),
		 "{\"sessionId\":\"%s\",\"command\":\"sleep 2; echo done $$ >> runs; cat runs\"}",
		 id);
	pid_t kid = fork();
	CHECK(kid >= 0);
	if (kid == 0) {
		struct client_resp r;
		call_idem(&bk.d, "/execute", k.secret, "slow", body, &r);
		_exit(r.status == 200 && !has_header(&r, "Idempotent-Replayed") ? 0 : 1);
	}
	/* Give the first one time to arrive, then send it again. */
	struct timespec ts = {0, 700 * 1000 * 1000};
	nanosleep(&ts, NULL);
	struct client_resp r;
	double t0 = client_now();
	call_idem(&bk.d, "/execute", k.secret, "slow", body, &r);
	CHECK_ERROR(&r, 409, "conflict");
	CHECK_MSG(client_now() - t0 < 1.0, "the 409 waited %.2f s", client_now() - t0);
	client_resp_free(&r);
	int status;
	CHECK(waitpid(kid, &status, 0) == kid);
	CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the first execute failed");
	/* Now finished: replayed, and the command ran once. */
	call_idem(&bk.d, "/execute", k.secret, "slow", body, &r);
	CHECK_STATUS(&r, 200);
	CHECK(has_header(&r, "Idempotent-Replayed"));
	const char *out = client_json_str(r.json, "stdout");
	CHECK(out != NULL && strncmp(out, "done ", 5) == 0 &&
	      strchr(out, '\n') == strrchr(out, '\n'));
	client_resp_free(&r);
	char *runs = client_must_run(k.secret, id, "wc -l < runs");
	CHECK_STR_EQ(runs, "1\n");
	free(runs);
	client_must_delete(k.secret, id);
	free(id);
}

/* A large answer is not kept whole (issue 12: three 126 MB answers made a
 * 378 MB store): the store grows by little, and the same request again is
 * a 409 that says why, never a second run. */
TEST_TIMEOUT(idempotent_large_answer_is_not_stored_nor_run_twice, 90)
{
	struct key k;
	key_make("paid", NULL, &k);
	char *id = client_must_create(k.secret, NULL);
	char body[256];
	snprintf(body, sizeof(body),
		 "{\"sessionId\":\"%s\",\"command\":\"echo run >> runs; head -c 3000000 "
		 "/dev/zero | tr '\\\\0' a\"}",
		 id);
	long long before = client_store_bytes(bk.d.data_dir);
	struct client_resp r;
	call_idem(&bk.d, "/execute", k.secret, "big", body, &r);
	CHECK_STATUS(&r, 200);
	CHECK_INT_EQ(strlen(client_json_str(r.json, "stdout")), 3000000);
	client_resp_free(&r);
	long long grew = client_store_bytes(bk.d.data_dir) - before;
	CHECK_MSG(grew < 1500000, "the store grew by %lld bytes", grew);
	call_idem(&bk.d, "/execute", k.secret, "big", body, &r);
	CHECK_ERROR(&r, 409, "conflict");
	CHECK_MSG(strstr(r.body, "too large") != NULL, "%s", r.body);
	client_resp_free(&r);
	char *runs = client_must_run(k.secret, id, "wc -l < runs");
	CHECK_STR_EQ(runs, "1\n");
	free(runs);
	client_must_delete(k.secret, id);
	free(id);
}

/* Removes a log directory that client_daemon_start() made. */
static void log_dir_remove(const struct client_daemon *d)
{
	unlink(d->log_path);
	rmdir(d->log_dir);
}

TEST_TIMEOUT(idempotency_survives_a_restart, 120)
{
	need_daemon();
	struct client_daemon d1 = {0}, d2 = {0};
	CHECK(client_daemon_start(&d1, (const char *const[]){"--warm-pool", "0", NULL}) == 0);
	struct key k;
	key_make_on(&d1, "paid", NULL, &k);
	struct client_resp a, b;
	call_idem(&d1, "/sessions/create", k.secret, "across-restart", "{\"ttl\":900}", &a);
	CHECK_STATUS(&a, 200);

	/* Stop it without removing its data, and start another on the same
	 * data directory (a later --data-dir wins). */
	kill(d1.pid, SIGTERM);
	int status;
	CHECK(waitpid(d1.pid, &status, 0) == d1.pid);
	CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0, "bunkerd exited 0x%x", status);
	d1.pid = 0;
	CHECK(client_daemon_start(&d2, (const char *const[]){"--warm-pool", "0", "--data-dir",
							     d1.data_dir, NULL}) == 0);
	call_idem(&d2, "/sessions/create", k.secret, "across-restart", "{\"ttl\":900}", &b);
	CHECK_STATUS(&b, 200);
	char buf[32];
	CHECK_STR_EQ(client_resp_header(&b, "Idempotent-Replayed", buf, sizeof(buf)), "true");
	CHECK(a.body_len == b.body_len && memcmp(a.body, b.body, a.body_len) == 0);
	CHECK_INT_EQ(list_total_on(&d2, k.secret), 1);
	client_resp_free(&b);
	call_idem(&d2, "/sessions/create", k.secret, "across-restart", "{\"ttl\":901}", &b);
	CHECK_ERROR(&b, 422, "idempotency_key_reused");
	client_resp_free(&b);
	client_resp_free(&a);

	CHECK_INT_EQ(client_daemon_stop(&d2), 0);
	client_daemon_stop(&d1); /* removes the shared data directory */
	CHECK_INT_EQ(client_daemon_check(&d1) + client_daemon_check(&d2), 0);
	log_dir_remove(&d1);
	log_dir_remove(&d2);
}

/* ---- operations ---- */

TEST(healthz)
{
	struct client_resp r;
	call("GET", "/healthz", NULL, NULL, &r);
	CHECK_STATUS(&r, 200);
	CHECK_STR_EQ(client_json_str(r.json, "status"), "ok");
	check_no_ratelimit_headers(&r);
	client_resp_free(&r);
}

TEST(openapi_document)
{
	struct client_resp r;
	call("GET", "/openapi.json", NULL, NULL, &r);
	CHECK_STATUS(&r, 200);
	char ct[128];
	CHECK(client_resp_header(&r, "Content-Type", ct, sizeof(ct)) != NULL);
	CHECK(strncmp(ct, "application/json", 16) == 0);
	CHECK_MSG(json_is_object(r.json), "does not parse");
	const char *v = client_json_str(r.json, "openapi");
	CHECK(v != NULL && strncmp(v, "3.1.", 4) == 0);
	json_t *paths = json_object_get(r.json, "paths");
	static const char *const want[][2] = {
	    {"/sessions/create", "post"},
	    {"/sessions", "get"},
	    {"/sessions/{id}", "get"},
	    {"/sessions/{id}", "delete"},
	    {"/execute", "post"},
	    {"/execution/kill", "post"},
	    {"/execution/processes", "get"},
	    {"/files/write", "post"},
	    {"/files/read", "get"},
	    {"/files/list", "get"},
	    {"/files/delete", "post"},
	    {"/healthz", "get"},
	    {"/metrics", "get"},
	    {"/openapi.json", "get"},
	};
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
		CHECK_MSG(json_object_get(json_object_get(paths, want[i][0]), want[i][1]),
			  "%s %s is not documented", want[i][1], want[i][0]);
	/* The error codes of the contract are all named. */
	char *text = r.body;
	static const char *const codes[] = {"invalid_request",
					    "unauthorized",
					    "forbidden",
					    "session_not_found",
					    "conflict",
					    "payload_too_large",
					    "idempotency_key_reused",
					    "rate_limit_exceeded",
					    "memory_limit_exceeded",
					    "disk_full",
					    "internal_error"};
	for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++)
		CHECK_MSG(strstr(text, codes[i]), "error code %s not documented", codes[i]);
	check_no_ratelimit_headers(&r);
	client_resp_free(&r);
}

/* The value of the first sample line starting with prefix, or -1. */
static double metric_value(const char *text, const char *prefix)
{
	size_t n = strlen(prefix);
	const char *line = text;
	while (line && *line) {
		if (strncmp(line, prefix, n) == 0 && line[n] == ' ')
			return strtod(line + n + 1, NULL);
		line = strchr(line, '\n');
		if (line)
			line++;
	}
	return -1;
}

TEST(metrics_families)
{
	struct key k;
	key_make("paid", NULL, &k);
	struct client_resp r;
	call("GET", "/metrics", NULL, NULL, &r);
	CHECK_INT_EQ(r.status, 200);
	double created0 = metric_value(r.body, "bunker_sessions_created_total");
	CHECK(created0 >= 0);
	client_resp_free(&r);

	char *id = client_must_create(k.secret, NULL);
	char *out = client_must_run(k.secret, id, "echo hi");
	free(out);
	call("GET", "/metrics", NULL, NULL, &r);
	CHECK_INT_EQ(r.status, 200);
	char ct[128];
	CHECK(client_resp_header(&r, "Content-Type", ct, sizeof(ct)) != NULL);
	CHECK(strncmp(ct, "text/plain", 10) == 0);
	check_no_ratelimit_headers(&r);
	static const char *const families[] = {
	    "# TYPE bunker_sessions gauge",
	    "# TYPE bunker_sessions_created_total counter",
	    "# TYPE bunker_http_requests_total counter",
	    "# TYPE bunker_http_request_duration_seconds histogram",
	    "# TYPE bunker_execution_duration_seconds histogram",
	    "# TYPE bunker_sandbox_start_duration_seconds histogram",
	    "# TYPE bunker_rate_limited_total counter",
	    "# TYPE bunker_idempotent_replays_total counter",
	    "bunker_http_requests_total{method=\"POST\",route=\"/sessions/"
	    "create\",status=\"200\"} ",
	    "bunker_http_request_duration_seconds_bucket{method=\"POST\",route=\"/"
	    "execute\",le=\"+Inf\"} ",
	    "bunker_execution_duration_seconds_bucket{le=\"+Inf\"} ",
	    "bunker_sandbox_start_duration_seconds_count ",
	};
	for (size_t i = 0; i < sizeof(families) / sizeof(families[0]); i++)
		CHECK_MSG(strstr(r.body, families[i]), "no '%s' in:\n%s", families[i], r.body);
	CHECK(metric_value(r.body, "bunker_sessions_created_total") >= created0 + 1);
	CHECK(metric_value(r.body, "bunker_sessions") >= 1);
	CHECK(metric_value(r.body, "bunker_execution_duration_seconds_count") >= 1);
	/* Request data never becomes a label: the session's id appears nowhere. */
	CHECK(strstr(r.body, id) == NULL);
	/* Every sample line is "name{labels} value" or "name value". */
	regex_t re;
	CHECK(regcomp(&re,
		      "^[a-z_:][a-z0-9_:]*(\\{[a-z_]+=\"[^\"]*\"(,[a-z_]+=\"[^\"]*\")*\\})? "
		      "[-+0-9.eEInfa]+$",
		      REG_EXTENDED | REG_NOSUB) == 0);
	char *text = strdup(r.body);
	for (char *save, *line = strtok_r(text, "\n", &save); line;
	     line = strtok_r(NULL, "\n", &save))
		if (line[0] != '#')
			CHECK_MSG(regexec(&re, line, 0, NULL, 0) == 0, "bad sample line: %s", line);
	regfree(&re);
	free(text);
	client_resp_free(&r);
	client_must_delete(k.secret, id);
	free(id);
}

TEST(log_lines_name_key_session_route_status_duration)
{
	struct key k;
	key_make("paid", NULL, &k);
	char *id = client_must_create(k.secret, NULL);
	struct client_resp r;
	char path[128];
	snprintf(path, sizeof(path), "/sessions/%s", id);
	call("GET", path, k.secret, NULL, &r);
	CHECK_STATUS(&r, 200);
	client_resp_free(&r);
	FILE *f = fopen(bk.d.log_path, "re");
	CHECK(f != NULL);
	char *line = NULL;
	size_t cap = 0;
	bool found = false;
	while (!found && getline(&line, &cap, f) >= 0) {
		json_t *j = json_loads(line, 0, NULL);
		if (j && client_json_str(j, "path") &&
		    strcmp(client_json_str(j, "path"), path) == 0 &&
		    strcmp(client_json_str(j, "method"), "GET") == 0) {
			CHECK_STR_EQ(client_json_str(j, "key"), k.id);
			CHECK_STR_EQ(client_json_str(j, "session"), id);
			CHECK_STR_EQ(client_json_str(j, "route"), "/sessions/{id}");
			CHECK_INT_EQ(json_integer_value(json_object_get(j, "status")), 200);
			CHECK(json_is_number(json_object_get(j, "ms")));
			found = true;
		}
		json_decref(j);
	}
	free(line);
	fclose(f);
	CHECK_MSG(found, "no log line for GET %s in %s", path, bk.d.log_path);
	client_must_delete(k.secret, id);
	free(id);
}
