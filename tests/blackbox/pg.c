/* bunkerd on the PostgreSQL store: a throwaway PostgreSQL 15
 * (tests/pg_server.h) started by the parent, a database of its own per
 * test, daemons started with --store postgres://...?host=<its socket dir>.
 * Keys are made through the CLI with the same --store. SKIPs when
 * PostgreSQL cannot run here.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../client.h"
#include "../pg_server.h"

int harness_setup(void)
{
	if (pg_server_start() < 0)
		fprintf(stderr, "bb_pg: no PostgreSQL: %s\n", pg.skip);
	return 0;
}

void harness_teardown(void)
{
	pg_server_stop();
}

static const char *const daemon_args[] = {"--warm-pool", "0", NULL};

/* A daemon of the test's own on a fresh database (uri: that database's,
 * or NULL for a new one). */
static void daemon_on(struct client_daemon *d, const char *uri)
{
	PG_REQUIRE();
	if (geteuid() != 0)
		SKIP("not root: cannot run bunkerd");
	memset(d, 0, sizeof(*d));
	if (uri)
		snprintf(d->store, sizeof(d->store), "%s", uri);
	else {
		char msg[512];
		CHECK_MSG(pg_server_database("bb", d->store, sizeof(d->store), msg, sizeof(msg)) ==
			      0,
			  "%s", msg);
	}
	CHECK_MSG(client_daemon_start(d, daemon_args) == 0, "cannot start bunkerd on %s", d->store);
}

static char *create_on(const struct client_daemon *d, const char *key, long want)
{
	struct client_resp r = {0};
	client_call(d, "POST", "/sessions/create", key, "{}", &r);
	CHECK_MSG(r.status == want, "create on %s: %ld %s", d->base_url, r.status, r.body);
	char *id = want == 200 ? strdup(client_json_str(r.json, "sessionId")) : NULL;
	client_resp_free(&r);
	return id;
}

static void delete_on(const struct client_daemon *d, const char *key, const char *id)
{
	char path[96];
	snprintf(path, sizeof(path), "/sessions/%s", id);
	struct client_resp r = {0};
	client_call(d, "DELETE", path, key, NULL, &r);
	CHECK_MSG(r.status == 200, "delete %s: %ld %s", id, r.status, r.body);
	client_resp_free(&r);
}

/* Runs command in session id; returns its stdout (caller frees). */
static char *run_on(const struct client_daemon *d, const char *key, const char *id,
		    const char *command)
{
	json_t *body = json_pack("{s:s, s:s}", "sessionId", id, "command", command);
	struct client_resp r = {0};
	client_call_json(d, "POST", "/execute", key, body, &r);
	json_decref(body);
	CHECK_MSG(r.status == 200, "execute '%s': %ld %s", command, r.status, r.body);
	json_t *code = json_object_get(r.json, "exitCode");
	CHECK_MSG(json_integer_value(code) == 0, "'%s' exited: %s", command, r.body);
	char *out = strdup(client_json_str(r.json, "stdout"));
	client_resp_free(&r);
	return out;
}

static long get_status(const struct client_daemon *d, const char *key, const char *id)
{
	char path[96];
	snprintf(path, sizeof(path), "/sessions/%s", id);
	struct client_resp r = {0};
	client_call(d, "GET", path, key, NULL, &r);
	long status = r.status;
	client_resp_free(&r);
	return status;
}

TEST_TIMEOUT(sessions_survive_a_restart_on_postgres, 240)
{
	struct client_daemon d;
	daemon_on(&d, NULL);
	char key[CLIENT_KEY_MAX];
	CHECK(client_key_create(&d, "paid", key, sizeof(key)) == 0);

	char *a = create_on(&d, key, 200);
	char *b = create_on(&d, key, 200);
	char *out = run_on(&d, key, a, "echo kept > /workspace/f && cat /workspace/f");
	CHECK_STR_EQ(out, "kept\n");
	free(out);
	delete_on(&d, key, b);
	CHECK_INT_EQ(get_status(&d, key, b), 404);

	/* A clean stop and a start on the same database: the session is
	 * found, with its files; the deleted one stays gone. */
	int status = client_daemon_halt(&d, SIGTERM);
	CHECK_MSG(status == 0, "bunkerd exited with status 0x%x", status);
	CHECK(client_daemon_start(&d, daemon_args) == 0);
	CHECK_INT_EQ(get_status(&d, key, a), 200);
	CHECK_INT_EQ(get_status(&d, key, b), 404);
	out = run_on(&d, key, a, "cat /workspace/f");
	CHECK_STR_EQ(out, "kept\n");
	free(out);
	struct client_resp r = {0};
	client_call(&d, "GET", "/sessions", key, NULL, &r);
	CHECK_MSG(r.status == 200 && strstr(r.body, a) != NULL && strstr(r.body, b) == NULL,
		  "list: %ld %s", r.status, r.body);
	client_resp_free(&r);
	delete_on(&d, key, a);
	free(a);
	free(b);
	CHECK_INT_EQ(client_daemon_stop(&d), 0);
	CHECK_INT_EQ(client_daemon_check(&d), 0);
}

TEST_TIMEOUT(cap_holds_across_two_daemons, 240)
{
	/* Two daemons (their own ports, data directories and cgroup
	 * parents) on one database, both started before any session exists
	 * (a node recovers every session of the store at its start until
	 * nodes own their sessions). */
	struct client_daemon d1, d2;
	daemon_on(&d1, NULL);
	daemon_on(&d2, d1.store);
	CHECK(strcmp(d1.data_dir, d2.data_dir) != 0 && d1.port != d2.port &&
	      strcmp(d1.cgroup_parent, d2.cgroup_parent) != 0);
	char key[CLIENT_KEY_MAX];
	CHECK(client_key_create_with(&d1, "paid",
				     (const char *const[]){"--max-sessions", "2", NULL}, key,
				     sizeof(key)) == 0);

	/* One on each: the key's cap of 2 is reached cluster-wide. */
	char *s1 = create_on(&d1, key, 200);
	char *s2 = create_on(&d2, key, 200);
	struct client_resp r = {0};
	client_call(&d1, "POST", "/sessions/create", key, "{}", &r);
	CHECK_MSG(r.status == 429 && strstr(r.body, "concurrent session limit") != NULL,
		  "third create on node 1: %ld %s", r.status, r.body);
	client_resp_free(&r);
	create_on(&d2, key, 429);
	/* A place freed on one node is taken on the other. */
	delete_on(&d2, key, s2);
	char *s3 = create_on(&d1, key, 200);
	create_on(&d2, key, 429);
	char *out = run_on(&d1, key, s3, "echo ok");
	CHECK_STR_EQ(out, "ok\n");
	free(out);
	delete_on(&d1, key, s1);
	delete_on(&d1, key, s3);
	free(s1);
	free(s2);
	free(s3);
	CHECK_INT_EQ(client_daemon_stop(&d2), 0);
	CHECK_INT_EQ(client_daemon_stop(&d1), 0);
	CHECK_INT_EQ(client_daemon_check(&d1) + client_daemon_check(&d2), 0);
}

TEST_TIMEOUT(one_idempotency_key_runs_once_across_daemons, 240)
{
	struct client_daemon d1, d2;
	daemon_on(&d1, NULL);
	daemon_on(&d2, d1.store);
	char key[CLIENT_KEY_MAX];
	CHECK(client_key_create(&d1, "paid", key, sizeof(key)) == 0);
	const char *headers[] = {"Idempotency-Key: bb-pg-1", NULL};
	struct client_req req = {.method = "POST",
				 .path = "/sessions/create",
				 .key = key,
				 .body = "{}",
				 .headers = headers};
	struct client_resp r1 = {0}, r2 = {0};
	CHECK(client_request(&d1, &req, &r1) == 0);
	CHECK_MSG(r1.status == 200, "%ld %s", r1.status, r1.body);
	/* Through the other node: the same answer, replayed, not run again. */
	CHECK(client_request(&d2, &req, &r2) == 0);
	CHECK_MSG(r2.status == 200 && strcmp(r1.body, r2.body) == 0, "replay: %ld %s", r2.status,
		  r2.body);
	char buf[16];
	CHECK(client_resp_header(&r2, "Idempotent-Replayed", buf, sizeof(buf)) != NULL);
	char *id = strdup(client_json_str(r1.json, "sessionId"));
	client_resp_free(&r1);
	client_resp_free(&r2);
	struct client_resp l = {0};
	client_call(&d2, "GET", "/sessions", key, NULL, &l);
	CHECK_MSG(l.status == 200 && json_integer_value(json_object_get(l.json, "total")) == 1,
		  "list: %ld %s", l.status, l.body);
	client_resp_free(&l);
	delete_on(&d1, key, id);
	free(id);
	CHECK_INT_EQ(client_daemon_stop(&d2), 0);
	CHECK_INT_EQ(client_daemon_stop(&d1), 0);
	CHECK_INT_EQ(client_daemon_check(&d1) + client_daemon_check(&d2), 0);
}
