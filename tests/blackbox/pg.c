/* bunkerd on the PostgreSQL store: a throwaway PostgreSQL 15
 * (tests/pg_server.h) started by the parent, a database of its own per
 * test, daemons started with --store postgres://...?host=<its socket dir>.
 * Keys are made through the CLI with the same --store. SKIPs when
 * PostgreSQL cannot run here. One test stops the shared server and starts
 * it again under load (tests run one after the other, so no other test
 * sees it down).
 */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
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

/* ---- PostgreSQL restarted under load ---- */

#define OUTAGE_WORKERS 3
#define OUTAGE_NODES_MAX 2
#define OUTAGE_MAX 2048
/* Every request must answer within this (curl gives up after it: status
 * 0), store or no store. Not a measure of speed: an answer, not a hang. */
#define OUTAGE_ANSWER_S 20

/* What the load knows, from the answers alone: in memory that the
 * workers (processes: a process has one curl handle) share. */
struct outage {
	const struct client_daemon *d[OUTAGE_NODES_MAX];
	int nodes;
	const char *key;
	pthread_mutex_t mu;
	int phase; /* 0: the store is up; 1: down; 2: starting; 3: serving again */
	bool quit;
	char live[OUTAGE_MAX][40]; /* created (200) and not deleted (200) */
	int n_live;
	char gone[OUTAGE_MAX][40]; /* deleted (200) */
	int n_gone;
	int down_answers;    /* 503s naming the store, while it was down */
	double slowest_down; /* the longest of them took, seconds */
	int ok_after;	     /* 200s once it served again */
	int failed_creates;  /* 503 to a create */
	int failed_deletes;  /* 503 to a delete */
	char wrong[1024];    /* the first answer that was neither */
};

static void outage_note(struct outage *o, const char *what, const struct client_resp *r)
{
	pthread_mutex_lock(&o->mu);
	if (o->wrong[0] == '\0')
		snprintf(o->wrong, sizeof(o->wrong), "%s (phase %d): %ld %s%s", what, o->phase,
			 r->status, r->body, r->status == 0 ? r->error : "");
	pthread_mutex_unlock(&o->mu);
}

/* Sends one request to d; true when it worked (200). Anything else must be a
 * 503 whose message names the session store: noted otherwise. */
static bool outage_call(struct outage *o, const struct client_daemon *d, const char *method,
			const char *path, const char *body, struct client_resp *r, const char *what)
{
	struct client_req req = {.method = method,
				 .path = path,
				 .key = o->key,
				 .body = body,
				 .timeout_s = OUTAGE_ANSWER_S};
	client_request(d, &req, r);
	if (r->status == 200) {
		pthread_mutex_lock(&o->mu);
		if (o->phase == 3)
			o->ok_after++;
		pthread_mutex_unlock(&o->mu);
		return true;
	}
	const char *msg =
	    r->json
		? json_string_value(json_object_get(json_object_get(r->json, "error"), "message"))
		: NULL;
	if (r->status != 503 || msg == NULL || strstr(msg, "session store (PostgreSQL)") == NULL)
		outage_note(o, what, r);
	pthread_mutex_lock(&o->mu);
	if (o->phase == 1) {
		o->down_answers++;
		if (r->seconds > o->slowest_down)
			o->slowest_down = r->seconds;
	}
	pthread_mutex_unlock(&o->mu);
	return false;
}

static void outage_list_del(char (*v)[40], int *n, const char *id)
{
	for (int i = 0; i < *n; i++)
		if (strcmp(v[i], id) == 0) {
			memmove(v[i], v[i + 1], (size_t)(*n - i - 1) * sizeof(v[0]));
			(*n)--;
			return;
		}
}

static bool outage_list_has(char (*v)[40], int n, const char *id)
{
	for (int i = 0; i < n; i++)
		if (strcmp(v[i], id) == 0)
			return true;
	return false;
}

/* The node of a worker's next request: each in turn. */
static const struct client_daemon *outage_via(const struct outage *o, int *next)
{
	return o->d[(*next)++ % o->nodes];
}

/* Worker w: create, execute, read, delete, over and over, each request
 * through the next node (relayed to the owner by the others). */
static void outage_worker(struct outage *o, int w)
{
	for (int next = w;;) {
		pthread_mutex_lock(&o->mu);
		bool quit = o->quit || o->n_live + o->n_gone >= OUTAGE_MAX - 8;
		pthread_mutex_unlock(&o->mu);
		if (quit)
			return;
		struct client_resp r = {0};
		bool ok = outage_call(o, outage_via(o, &next), "POST", "/sessions/create", "{}", &r,
				      "create");
		char id[40] = "";
		if (ok)
			snprintf(id, sizeof(id), "%s", client_json_str(r.json, "sessionId"));
		pthread_mutex_lock(&o->mu);
		if (ok)
			snprintf(o->live[o->n_live++], sizeof(o->live[0]), "%s", id);
		else
			o->failed_creates++;
		pthread_mutex_unlock(&o->mu);
		client_resp_free(&r);
		if (!ok) {
			usleep(100 * 1000);
			continue;
		}
		char body[160], path[96];
		snprintf(body, sizeof(body), "{\"sessionId\":\"%s\",\"command\":\"echo ok\"}", id);
		outage_call(o, outage_via(o, &next), "POST", "/execute", body, &r, "execute");
		client_resp_free(&r);
		snprintf(path, sizeof(path), "/sessions/%s", id);
		outage_call(o, outage_via(o, &next), "GET", path, NULL, &r, "get");
		client_resp_free(&r);
		ok = outage_call(o, outage_via(o, &next), "DELETE", path, NULL, &r, "delete");

		client_resp_free(&r);
		pthread_mutex_lock(&o->mu);
		if (ok) {
			outage_list_del(o->live, &o->n_live, id);
			snprintf(o->gone[o->n_gone++], sizeof(o->gone[0]), "%s", id);
		} else {
			o->failed_deletes++;
		}
		pthread_mutex_unlock(&o->mu);
		usleep(20 * 1000);
	}
}

static void outage_phase(struct outage *o, int phase)
{
	pthread_mutex_lock(&o->mu);
	o->phase = phase;
	pthread_mutex_unlock(&o->mu);
}

/* Whether a directory named id is left of the session's sandbox: its
 * memory cgroup (v1) or its run directory. */
static bool sandbox_left(const struct client_daemon *d, const char *id, char *which, size_t len)
{
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "/sys/fs/cgroup/memory/%s/%s", d->cgroup_parent, id);
	if (access(path, F_OK) == 0) {
		snprintf(which, len, "%s", path);
		return true;
	}
	snprintf(path, sizeof(path), "%s/run/%s", d->data_dir, id);
	if (access(path, F_OK) == 0) {
		snprintf(which, len, "%s", path);
		return true;
	}
	return false;
}

/* The sessions the list shows, into ids (at most max); their number. */
static int outage_listed(const struct client_daemon *d, const char *key, char (*ids)[40], int max)
{
	struct client_resp r = {0};
	client_call(d, "GET", "/sessions?limit=100", key, NULL, &r);
	CHECK_MSG(r.status == 200, "list: %ld %s", r.status, r.body);
	json_t *arr = json_object_get(r.json, "sessions");
	int n = 0;
	size_t i;
	json_t *s;
	json_array_foreach (arr, i, s) {
		if (n < max)
			snprintf(ids[n++], sizeof(ids[0]), "%s", client_json_str(s, "sessionId"));
	}
	client_resp_free(&r);
	return n;
}

/* Every directory of a sandbox under dir (entries named ses_*) belongs
 * to a listed session. */
static void outage_no_stray(const char *dir, char (*listed)[40], int n)
{
	DIR *dd = opendir(dir);
	if (dd == NULL)
		return;
	struct dirent *e;
	while ((e = readdir(dd)) != NULL) {
		if (strncmp(e->d_name, "ses_", 4) != 0)
			continue;
		CHECK_MSG(outage_list_has(listed, n, e->d_name),
			  "%s/%s is left of a session the API does not show", dir, e->d_name);
	}
	closedir(dd);
}

/* Whether d executes in the session the test made i-th (0 or 1, one on
 * each node when there are two). */
static bool outage_serves(struct outage *o, const struct client_daemon *d, int i)
{
	char body[160];
	snprintf(body, sizeof(body), "{\"sessionId\":\"%s\",\"command\":\"true\"}", o->live[i]);
	struct client_resp r = {0};
	client_call(d, "POST", "/execute", o->key, body, &r);
	bool ok = r.status == 200;
	client_resp_free(&r);
	return ok;
}

/* The node names and id ranges of outage_run()'s daemons. */
static const char *const outage_names[OUTAGE_NODES_MAX] = {"pg-a", "pg-b"};
static const char *const outage_slots[OUTAGE_NODES_MAX] = {"0:256", "256:256"};

/* Starts nodes daemons (--node, one database, one cluster secret) under
 * load, stops PostgreSQL and starts it again, twice, then checks that
 * nothing is half-written. */
static void outage_run(int nodes)
{
	PG_REQUIRE();
	if (geteuid() != 0)
		SKIP("not root: cannot run bunkerd");
	char secret[PATH_MAX];
	snprintf(secret, sizeof(secret), "/tmp/bk-pg-secret-%d", (int)getpid());
	FILE *f = fopen(secret, "w");
	CHECK(f != NULL);
	fprintf(f, "pg-outage-secret-0123456789\n");
	fclose(f);
	static struct client_daemon d[OUTAGE_NODES_MAX];
	memset(d, 0, sizeof(d));
	char msg[512];
	CHECK_MSG(pg_server_database("bbr", d[0].store, sizeof(d[0].store), msg, sizeof(msg)) == 0,
		  "%s", msg);
	for (int i = 0; i < nodes; i++) {
		if (i > 0)
			snprintf(d[i].store, sizeof(d[i].store), "%s", d[0].store);
		const char *args[] = {"--warm-pool",
				      "0",
				      "--node",
				      outage_names[i],
				      "--cluster-secret-file",
				      secret,
				      "--id-slots",
				      outage_slots[i],
				      NULL};
		CHECK_MSG(client_daemon_start(&d[i], args) == 0, "cannot start %s on %s",
			  outage_names[i], d[i].store);
	}
	/* Read at start: nothing of it need outlive a failing check. */
	unlink(secret);
	char key[CLIENT_KEY_MAX];
	CHECK(client_key_create_with(&d[0], "paid", (const char *const[]){"--rpm", "100000", NULL},
				     key, sizeof(key)) == 0);
	struct outage *o = mmap(NULL, sizeof(struct outage), PROT_READ | PROT_WRITE,
				MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	CHECK(o != MAP_FAILED);
	pthread_mutexattr_t ma;
	pthread_mutexattr_init(&ma);
	pthread_mutexattr_setpshared(&ma, PTHREAD_PROCESS_SHARED);
	pthread_mutex_init(&o->mu, &ma);
	for (int i = 0; i < nodes; i++)
		o->d[i] = &d[i];
	o->nodes = nodes;
	o->key = key;
	/* Sessions that live through it all, one with a file. */
	for (int i = 0; i < 2; i++) {
		char *id = create_on(&d[i % nodes], key, 200);
		snprintf(o->live[o->n_live++], sizeof(o->live[0]), "%s", id);
		free(id);
	}
	char *out =
	    run_on(&d[nodes - 1], key, o->live[0], "echo kept > /workspace/f && cat /workspace/f");
	CHECK_STR_EQ(out, "kept\n");
	free(out);

	pid_t kids[OUTAGE_WORKERS];
	for (int i = 0; i < OUTAGE_WORKERS; i++) {
		kids[i] = fork();
		CHECK(kids[i] >= 0);
		if (kids[i] == 0) {
			outage_worker(o, i);
			_exit(0);
		}
	}
	/* Stopped cleanly, then as a crash would, each time under load. */
	const char *const modes[] = {"fast", "immediate"};
	for (size_t m = 0; m < sizeof(modes) / sizeof(modes[0]); m++) {
		sleep(2);
		outage_phase(o, 1);
		CHECK_MSG(pg_server_halt(modes[m]) == 0,
			  "cannot stop PostgreSQL -m %s (see %s/pg_ctl.log)", modes[m], pg.dir);
		/* Down for 3 s at least (several attempts to connect again), and
		 * until the load has had a dozen more answers (each bounded). */
		pthread_mutex_lock(&o->mu);
		int want = o->down_answers + 12;
		pthread_mutex_unlock(&o->mu);
		double least = client_now() + 3;
		for (double until = client_now() + 120; client_now() < until;) {
			pthread_mutex_lock(&o->mu);
			int seen = o->down_answers;
			pthread_mutex_unlock(&o->mu);
			if (seen >= want && client_now() >= least)
				break;
			usleep(100 * 1000);
		}
		CHECK_MSG(pg_server_resume() == 0,
			  "cannot start PostgreSQL again (see %s/pg_ctl.log)", pg.dir);
		outage_phase(o, 2);
		/* The same daemons serve again once the store is back, each
		 * one's sessions through every node (a node's lease may have
		 * lapsed meanwhile, and is renewed): within a minute. */
		for (int k = 0; k < nodes; k++) {
			bool back = false;
			for (double until = client_now() + 60; !back && client_now() < until;) {
				back = outage_serves(o, &d[k], 0) && outage_serves(o, &d[k], 1);
				if (!back)
					usleep(200 * 1000);
			}
			CHECK_MSG(back,
				  "%s does not serve again after PostgreSQL came back (-m %s)",
				  outage_names[k], modes[m]);
		}
		outage_phase(o, 3);
	}
	sleep(2);
	pthread_mutex_lock(&o->mu);
	o->quit = true;
	pthread_mutex_unlock(&o->mu);
	for (int i = 0; i < OUTAGE_WORKERS; i++)
		while (waitpid(kids[i], NULL, 0) < 0 && errno == EINTR)
			;
	fprintf(stderr,
		"    %d answers while PostgreSQL was down (the slowest in %.3f s); %d creates and "
		"%d deletes refused; %d requests worked after; %d sessions live, %d deleted\n",
		o->down_answers, o->slowest_down, o->failed_creates, o->failed_deletes, o->ok_after,
		o->n_live, o->n_gone);
	CHECK_MSG(o->wrong[0] == '\0', "an answer neither worked nor named the store: %s",
		  o->wrong);
	CHECK_MSG(o->down_answers >= 24, "only %d answers while PostgreSQL was down",
		  o->down_answers);
	CHECK_MSG(o->ok_after >= OUTAGE_WORKERS, "only %d requests worked after", o->ok_after);

	/* Nothing half-written: the API shows exactly the sessions whose
	 * create it acknowledged and whose delete it did not (a create it
	 * refused left no row; one whose undo could not reach the store is
	 * deleted once it can: so the list is read until it settles, for a
	 * bounded time). */
	static char listed[OUTAGE_MAX][40];
	int n = 0;
	bool same = false;
	for (double until = client_now() + 30; !same && client_now() < until;) {
		n = outage_listed(&d[0], key, listed, OUTAGE_MAX);
		same = n == o->n_live;
		for (int i = 0; same && i < n; i++)
			same = outage_list_has(o->live, o->n_live, listed[i]);
		if (!same)
			usleep(250 * 1000);
	}
	for (int i = 0; i < n; i++)
		CHECK_MSG(outage_list_has(o->live, o->n_live, listed[i]),
			  "session %s is listed, yet its create was refused", listed[i]);
	for (int i = 0; i < o->n_live; i++)
		CHECK_MSG(outage_list_has(listed, n, o->live[i]),
			  "session %s was acknowledged and is not listed", o->live[i]);
	/* Every one works, and the first kept its file. */
	out = run_on(&d[0], key, o->live[0], "cat /workspace/f");
	CHECK_STR_EQ(out, "kept\n");
	free(out);
	for (int i = 0; i < o->n_live; i++) {
		out = run_on(&d[i % nodes], key, o->live[i], "echo ok");
		CHECK_STR_EQ(out, "ok\n");
		free(out);
	}
	/* Every deleted one is gone, sandbox and all; no sandbox is left
	 * of a session the API does not show. */
	for (int i = 0; i < o->n_gone; i++) {
		CHECK_INT_EQ(get_status(&d[i % nodes], key, o->gone[i]), 404);
		char which[PATH_MAX];
		for (int k = 0; k < nodes; k++)
			CHECK_MSG(!sandbox_left(&d[k], o->gone[i], which, sizeof(which)),
				  "deleted session %s left %s", o->gone[i], which);
	}
	char dir[PATH_MAX];
	for (int k = 0; k < nodes; k++) {
		snprintf(dir, sizeof(dir), "/sys/fs/cgroup/memory/%s", d[k].cgroup_parent);
		outage_no_stray(dir, listed, n);
		snprintf(dir, sizeof(dir), "%s/run", d[k].data_dir);
		outage_no_stray(dir, listed, n);
	}
	/* And they delete, the ones whose delete was refused included. */
	for (int i = 0; i < o->n_live; i++)
		delete_on(&d[i % nodes], key, o->live[i]);
	int bad = 0;
	for (int k = nodes - 1; k >= 0; k--) {
		CHECK_INT_EQ(client_daemon_stop(&d[k]), 0);
		bad += client_daemon_check(&d[k]);
	}
	CHECK_INT_EQ(bad, 0);
	munmap(o, sizeof(*o));
}

TEST_TIMEOUT(postgres_restarted_under_load, 420)
{
	outage_run(1);
}

/* The same with two nodes, each request through the next one: a session
 * of the other node's is relayed to it. */
TEST_TIMEOUT(postgres_restarted_under_load_on_two_nodes, 420)
{
	outage_run(2);
}
