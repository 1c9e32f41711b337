/* Several nodes on one throwaway PostgreSQL (tests/pg_server.c), measured
 * in one run:
 *
 * 1. What a relay between nodes adds: one session owned by node A, and the
 *    same requests sent to A (its owner) and to B (which relays them to
 *    A), interleaved so that both see the same machine: GET
 *    /sessions/{id} (the relay alone: no sandbox work), POST /execute of
 *    `true`, and GET /files/read of a 1 MB file. Prints p50/p99 of each
 *    and the difference, the relay's cost.
 * 2. Creates per second of one node alone (on a database of its own), then
 *    of the three nodes (the clients spread over their ports), in turn for
 *    BENCH_CLUSTER_ROUNDS (3) rounds: BENCH_CLUSTER_CLIENTS (8) clients
 *    making BENCH_CLUSTER_CREATES (160) creates in all each time, deleted
 *    after; the rates, their medians and the ratio.
 * 3. How exact a key's rate limit is across nodes: a key of
 *    BENCH_CLUSTER_RPM (60) requests per minute hammered through the
 *    three nodes at once for BENCH_CLUSTER_RL_SECONDS (10), and another
 *    through one node at the same time: what each was allowed against the
 *    plan's limit.
 * 4. A node's death: three new nodes sharing a snapshot directory
 *    (--snapshots-shared, --checkpoint-every 1), BENCH_CLUSTER_FAILOVER
 *    (10) sessions owned by node C with a file written and checkpointed,
 *    then kill -9 of C and each session polled through a survivor (every
 *    100 ms, a `cat` of its file) until it answers: p50 and max from the
 *    kill to that answer, lease included.
 *
 * Each node's bunkerd is bench/common.c's daemon in a child process of its
 * own (common.c keeps one daemon per process), which stops its daemon when
 * the parent closes a pipe. The nodes run without a warm pool, so that one
 * node and three compare creates of the same kind, and in 1 to 3 with
 * --pids-max 64, so that one node has room for every session of a round
 * of 2. BENCH_CLUSTER_N (300) executions and BENCH_CLUSTER_READS (100)
 * reads through each node in 1;
 * BENCH_CLUSTER_KEEP_LOG set keeps the nodes' logs (their request lines
 * time each request) and prints where they are.
 */
#include <curl/curl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common.h"
#include "../tests/pg_server.h"

/* tests/pg_server.c reports through the harness's hooks, which a
 * benchmark does not have; it only calls them from PG_REQUIRE(). */
_Noreturn void harness_fail(const char *file, int line, const char *fmt, ...)
{
	exit(1);
}

_Noreturn void harness_skip(const char *fmt, ...)
{
	exit(1);
}

#define TOKEN_FILE_TEMPLATE "/tmp/bk-bench-cluster-token-XXXXXX"
#define SNAP_DIR_TEMPLATE "/tmp/bk-bench-cluster-snap-XXXXXX"
#define OPERATOR_TOKEN "bench-cluster-secret-0123456789"
#define NODES 3
/* How often a session of a dead node is asked again, ms. */
#define FAILOVER_POLL_MS 100
/* How long it may take to answer, ms. */
#define FAILOVER_GIVE_UP_MS 120000
/* Rounds of creates at most. */
#define MAX_ROUNDS 9

static char token_file[] = TOKEN_FILE_TEMPLATE;

/* ---- requests ---- */

struct sink {
	char *data;
	size_t len;
};

static size_t on_data(char *p, size_t size, size_t n, void *ud)
{
	struct sink *s = ud;
	size_t add = size * n;
	char *m = realloc(s->data, s->len + add + 1);
	if (m == NULL)
		return 0;
	memcpy(m + s->len, p, add);
	s->len += add;
	m[s->len] = '\0';
	s->data = m;
	return add;
}

/* One request to base on handle h, key as the bearer token: its status (0
 * on a transport error), its duration in ms into *ms when not NULL and its
 * body into *out when not NULL (caller frees; NULL when empty). Logged on
 * stderr unless it is a 200 or quiet. */
static long request(CURL *h, const char *base, const char *method, const char *path,
		    const char *key, const char *body, bool quiet, double *ms, char **out)
{
	char url[512], auth[300];
	snprintf(url, sizeof(url), "%s%s", base, path);
	snprintf(auth, sizeof(auth), "Authorization: Bearer %s", key);
	struct curl_slist *hs = curl_slist_append(NULL, auth);
	hs = curl_slist_append(hs, "Content-Type: application/json");
	struct sink s = {0};
	curl_easy_reset(h);
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hs);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &s);
	curl_easy_setopt(h, CURLOPT_TIMEOUT, 120L);
	if (body)
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
	double t0 = now_ms();
	CURLcode rc = curl_easy_perform(h);
	double t = now_ms() - t0;
	long status = 0;
	if (rc == CURLE_OK)
		curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
	if (status != 200 && !quiet)
		fprintf(stderr, "bench: %s %s%s: %ld %.200s\n", method, base, path, status,
			s.data ? s.data : curl_easy_strerror(rc));
	curl_slist_free_all(hs);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, NULL);
	if (ms)
		*ms = t;
	if (out)
		*out = s.data;
	else
		free(s.data);
	return status;
}

/* One request, logged unless a 200: its duration in ms, the status into
 * *status. */
static double timed(CURL *h, const char *base, const char *method, const char *path,
		    const char *key, const char *body, long *status)
{
	double ms;
	*status = request(h, base, method, path, key, body, false, &ms, NULL);
	return ms;
}

static CURL *handle_new(void)
{
	CURL *h = curl_easy_init();
	if (h == NULL)
		die("cannot start libcurl");
	return h;
}

/* The string field name of the JSON object text (caller frees), NULL when
 * it has none. */
static char *json_field(const char *text, const char *name)
{
	json_t *j = text ? json_loads(text, 0, NULL) : NULL;
	const char *v = json_string_value(json_object_get(j, name));
	char *copy = v ? strdup(v) : NULL;
	json_decref(j);
	return copy;
}

/* A new key of the enterprise plan with more `bunker keys create`
 * arguments (a string of them, "" for none) into out. */
static void key_on(const char *uri, const char *overrides, char *out, size_t len)
{
	char cmd[PATH_MAX + 600];
	snprintf(cmd, sizeof(cmd), "'%s/bunker' --store '%s' keys create --plan enterprise %s",
		 build, uri, overrides);
	FILE *p = popen(cmd, "r");
	if (p == NULL || fgets(out, (int)len, p) == NULL)
		die("bunker keys create failed");
	pclose(p);
	out[strcspn(out, "\r\n")] = '\0';
	if (strncmp(out, "bk_", 3) != 0)
		die("bunker keys create printed no key");
}

/* ---- nodes ---- */

struct node {
	const char *name;
	pid_t child;  /* the process whose daemon the node is */
	pid_t daemon; /* its bunkerd */
	int port;
	int stop_fd; /* closing it stops the node */
	char base[64];
};

/* The nodes started and not yet stopped: a node's child closes the others'
 * stop pipes, which would otherwise keep them open. */
static struct node *running[2 * NODES + 1];

/* Starts node nd, named name, on store uri with host ids slots and extra
 * arguments (NULL-terminated; NULL for none). Dies when it cannot. */
static void node_start(struct node *nd, const char *name, const char *uri, const char *slots,
		       const char *const extra[])
{
	const char *args[32] = {
	    "--store",	uri,	      "--node", name,	       "--operator-token-file",
	    token_file, "--id-slots", slots,	"--warm-pool", "0",
	};
	size_t n = 10;
	for (size_t i = 0; extra && extra[i]; i++) {
		if (n + 1 >= sizeof(args) / sizeof(args[0]))
			die("too many bunkerd arguments");
		args[n++] = extra[i];
	}
	args[n] = NULL;
	int port_pipe[2], stop_pipe[2];
	if (pipe(port_pipe) < 0 || pipe(stop_pipe) < 0)
		die("pipe failed");
	pid_t child = fork();
	if (child < 0)
		die("fork failed");
	if (child == 0) {
		for (size_t i = 0; i < sizeof(running) / sizeof(running[0]); i++)
			if (running[i])
				close(running[i]->stop_fd);
		close(port_pipe[0]);
		close(stop_pipe[1]);
		start_daemon(args, 120, 60);
		dprintf(port_pipe[1], "%d %d\n", daemon_port, (int)daemon_pid);
		close(port_pipe[1]);
		char c;
		while (read(stop_pipe[0], &c, 1) > 0)
			;
		/* Killed meanwhile (the failover), it left its table, cgroups
		 * and disks: started again on its data directory, it removes
		 * them, and its clean stop leaves nothing on the host. */
		int st;
		if (waitpid(daemon_pid, &st, WNOHANG) == daemon_pid) {
			daemon_pid = 0;
			start_daemon(args, 120, 60);
		}
		if (getenv("BENCH_CLUSTER_KEEP_LOG")) {
			fprintf(stderr, "bench: node %s's log: %s\n", name, log_path);
			stop_daemon();
		} else {
			bench_cleanup();
		}
		_exit(0);
	}
	close(port_pipe[1]);
	close(stop_pipe[0]);
	char buf[32] = "";
	ssize_t got = read(port_pipe[0], buf, sizeof(buf) - 1);
	close(port_pipe[0]);
	int port = 0, pid = 0;
	if (got <= 0 || sscanf(buf, "%d %d", &port, &pid) != 2) {
		fprintf(stderr, "bench: node %s did not start\n", name);
		exit(1);
	}
	*nd = (struct node){
	    .name = name, .child = child, .daemon = pid, .port = port, .stop_fd = stop_pipe[1]};
	snprintf(nd->base, sizeof(nd->base), "http://127.0.0.1:%d", port);
	for (size_t i = 0; i < sizeof(running) / sizeof(running[0]); i++)
		if (running[i] == NULL) {
			running[i] = nd;
			break;
		}
}

/* Stops node nd (a clean stop, unless its daemon was killed) and waits for
 * its child. */
static void node_stop(struct node *nd)
{
	for (size_t i = 0; i < sizeof(running) / sizeof(running[0]); i++)
		if (running[i] == nd)
			running[i] = NULL;
	close(nd->stop_fd);
	int st;
	waitpid(nd->child, &st, 0);
}

static const char *const node_names[NODES] = {"bench-a", "bench-b", "bench-c"};
static const char *const node_slots[NODES] = {"0:256", "256:256", "512:256"};

/* GET /v1/cluster/nodes of nd: its nodes (a new reference). */
static json_t *nodes_of(CURL *h, const struct node *nd)
{
	char *body = NULL;
	if (request(h, nd->base, "GET", "/v1/cluster/nodes", OPERATOR_TOKEN, NULL, false, NULL,
		    &body) != 200)
		die("GET /v1/cluster/nodes failed");
	json_t *j = json_loads(body, 0, NULL);
	free(body);
	json_t *nodes = json_incref(json_object_get(j, "nodes"));
	json_decref(j);
	if (!json_is_array(nodes))
		die("GET /v1/cluster/nodes answered no nodes");
	return nodes;
}

/* Member field (an integer) of node name in nodes, 0 when it is not
 * there. */
static long long node_field(json_t *nodes, const char *name, const char *field)
{
	size_t k;
	json_t *x;
	json_array_foreach (nodes, k, x) {
		const char *n = json_string_value(json_object_get(x, "name"));
		if (n && strcmp(n, name) == 0)
			return json_integer_value(json_object_get(x, field));
	}
	return 0;
}

/* How many sessions each node owns, as nd sees them, into owned[]. */
static void owned_counts(CURL *h, const struct node *nd, long long owned[NODES])
{
	json_t *nodes = nodes_of(h, nd);
	for (int i = 0; i < NODES; i++)
		owned[i] = node_field(nodes, node_names[i], "sessionsOwned");
	json_decref(nodes);
}

/* Node name's lease, as nd sees it: when it runs out (unix ms), 0 when
 * nd lists no such node. */
static long long lease_expiry(CURL *h, const struct node *nd, const char *name)
{
	json_t *nodes = nodes_of(h, nd);
	long long at = node_field(nodes, name, "leaseExpiresMs");
	json_decref(nodes);
	return at;
}

/* ---- clients in parallel ---- */

/* total tasks shared by clients threads, each with a handle of its own:
 * one(j, h, client, k) does task k. */
struct job {
	int clients, total;
	atomic_int next;
	void (*one)(struct job *j, CURL *h, int client, int k);
	void *ctx;
};

struct job_client {
	struct job *job;
	int client;
};

static void *job_main(void *arg)
{
	struct job_client *c = arg;
	CURL *h = handle_new();
	for (int k; (k = atomic_fetch_add(&c->job->next, 1)) < c->job->total;)
		c->job->one(c->job, h, c->client, k);
	curl_easy_cleanup(h);
	return NULL;
}

/* Runs j to its end: the wall time, ms. */
static double job_run(struct job *j)
{
	pthread_t t[64];
	struct job_client c[64];
	if (j->clients < 1 || j->clients > 64)
		die("a job takes 1..64 clients");
	atomic_store(&j->next, 0);
	double t0 = now_ms();
	for (int i = 0; i < j->clients; i++) {
		c[i] = (struct job_client){j, i};
		if (pthread_create(&t[i], NULL, job_main, &c[i]) != 0)
			die("pthread_create failed");
	}
	for (int i = 0; i < j->clients; i++)
		pthread_join(t[i], NULL);
	return now_ms() - t0;
}

/* ---- creates per second ---- */

struct creates {
	struct node *const *via; /* client i sends to via[i % n_via] */
	int n_via;
	const char *key;
	char **ids; /* [total]; NULL for a create that failed */
	double *ms; /* [total] */
	atomic_int failed;
};

static void create_one(struct job *j, CURL *h, int client, int k)
{
	struct creates *c = j->ctx;
	char *body = NULL;
	long st = request(h, c->via[client % c->n_via]->base, "POST", "/sessions/create", c->key,
			  "{}", false, &c->ms[k], &body);
	c->ids[k] = st == 200 ? json_field(body, "sessionId") : NULL;
	free(body);
	if (c->ids[k] == NULL)
		atomic_fetch_add(&c->failed, 1);
}

static void delete_one(struct job *j, CURL *h, int client, int k)
{
	struct creates *c = j->ctx;
	if (c->ids[k] == NULL)
		return;
	char path[96];
	snprintf(path, sizeof(path), "/sessions/%s", c->ids[k]);
	if (request(h, c->via[client % c->n_via]->base, "DELETE", path, c->key, NULL, false, NULL,
		    NULL) != 200)
		atomic_fetch_add(&c->failed, 1);
	free(c->ids[k]);
	c->ids[k] = NULL;
}

struct create_rate {
	double per_s;	  /* creates that succeeded per second of wall time */
	struct stats lat; /* of each create */
	int failed;	  /* creates and deletes that failed */
};

/* total creates by clients clients through the n_via nodes via, then
 * their deletes, the same way. */
static struct create_rate create_rate(struct node *const *via, int n_via, const char *key,
				      int clients, int total, const char *label)
{
	struct creates c = {.via = via, .n_via = n_via, .key = key};
	c.ids = calloc((size_t)total, sizeof(char *));
	c.ms = calloc((size_t)total, sizeof(double));
	if (c.ids == NULL || c.ms == NULL)
		die("out of memory");
	struct job j = {.clients = clients, .total = total, .one = create_one, .ctx = &c};
	double wall = job_run(&j);
	int ok = total - atomic_load(&c.failed);
	struct create_rate r = {.per_s = ok / (wall / 1000), .lat = summarise(label, c.ms, total)};
	j.one = delete_one;
	job_run(&j);
	r.failed = atomic_load(&c.failed);
	free(c.ids);
	free(c.ms);
	return r;
}

/* ---- the rate limit ---- */

struct hammer {
	const struct node *via;
	const char *key;
	double until_ms;
	int allowed, limited, other;
};

/* Pause between one client's requests, ms: far more requests than any
 * limit of the run, without spinning the machine's two cores. */
#define HAMMER_PAUSE_MS 10

static void *hammer_main(void *arg)
{
	struct hammer *hm = arg;
	CURL *h = handle_new();
	while (now_ms() < hm->until_ms) {
		long st =
		    request(h, hm->via->base, "GET", "/sessions", hm->key, NULL, true, NULL, NULL);
		if (st == 200)
			hm->allowed++;
		else if (st == 429)
			hm->limited++;
		else
			hm->other++;
		sleep_ms(HAMMER_PAUSE_MS);
	}
	curl_easy_cleanup(h);
	return NULL;
}

/* A key of rpm requests per minute through all three nodes at once, and
 * another through node A alone at the same time, for secs seconds. */
static void rate_limit(const char *uri, struct node *nodes, int rpm, int secs)
{
	char over[32], k3[256], k1[256];
	snprintf(over, sizeof(over), "--rpm %d", rpm);
	key_on(uri, over, k3, sizeof(k3));
	key_on(uri, over, k1, sizeof(k1));
	struct hammer hm[NODES + 1];
	pthread_t t[NODES + 1];
	double until = now_ms() + secs * 1000.0;
	for (int i = 0; i < NODES + 1; i++) {
		hm[i] = (struct hammer){
		    .via = &nodes[i % NODES], .key = i < NODES ? k3 : k1, .until_ms = until};
		if (pthread_create(&t[i], NULL, hammer_main, &hm[i]) != 0)
			die("pthread_create failed");
	}
	for (int i = 0; i < NODES + 1; i++)
		pthread_join(t[i], NULL);
	int a3 = 0, sent3 = 0, other = hm[NODES].other;
	for (int i = 0; i < NODES; i++) {
		a3 += hm[i].allowed;
		sent3 += hm[i].allowed + hm[i].limited + hm[i].other;
		other += hm[i].other;
	}
	int a1 = hm[NODES].allowed;
	int sent1 = a1 + hm[NODES].limited + hm[NODES].other;
	printf("rate limit: plan %d requests/minute (%.2f/s), GET /sessions hammered for %d s, "
	       "within one 60 s window\n",
	       rpm, rpm / 60.0, secs);
	printf("  through one node:             %5d allowed of %5d sent, %6.2f/s, %.2fx the "
	       "plan's limit\n",
	       a1, sent1, (double)a1 / secs, (double)a1 / rpm);
	printf("  through three nodes at once:  %5d allowed of %5d sent, %6.2f/s, %.2fx the "
	       "plan's limit (",
	       a3, sent3, (double)a3 / secs, (double)a3 / rpm);
	for (int i = 0; i < NODES; i++)
		printf("%s%s %d", i ? ", " : "", nodes[i].name, hm[i].allowed);
	printf(")\n");
	if (other)
		printf("  answers neither 200 nor 429: %d\n", other);
}

/* ---- a node's death ---- */

struct survivor_poll {
	const struct node *via;
	const char *key;
	const char *id;
	double killed_ms;
	double answer_ms; /* from the kill; < 0: no answer */
	bool kept;	  /* the answer had the file written before the kill */
	int unavailable;  /* 503s before it */
};

static void *poll_main(void *arg)
{
	struct survivor_poll *p = arg;
	CURL *h = handle_new();
	char body[128];
	snprintf(body, sizeof(body), "{\"sessionId\":\"%s\",\"command\":\"cat /workspace/f\"}",
		 p->id);
	p->answer_ms = -1;
	while (now_ms() - p->killed_ms < FAILOVER_GIVE_UP_MS) {
		char *out = NULL;
		long st =
		    request(h, p->via->base, "POST", "/execute", p->key, body, true, NULL, &out);
		if (st == 200) {
			p->answer_ms = now_ms() - p->killed_ms;
			char *so = json_field(out, "stdout");
			p->kept = so && strcmp(so, "kept\n") == 0;
			free(so);
			free(out);
			break;
		}
		if (st == 503)
			p->unavailable++;
		else
			fprintf(stderr, "bench: execute in %s via %s after the kill: %ld %.200s\n",
				p->id, p->via->name, st, out ? out : "");
		free(out);
		sleep_ms(FAILOVER_POLL_MS);
	}
	curl_easy_cleanup(h);
	return NULL;
}

/* Whether id's checkpoint in snap was written after acked (realtime). */
static bool checkpointed_after(const char *snap, const char *id, const struct timespec *acked)
{
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/%s.ckpt.tar.zst", snap, id);
	struct stat st;
	return stat(path, &st) == 0 &&
	       (st.st_mtim.tv_sec > acked->tv_sec ||
		(st.st_mtim.tv_sec == acked->tv_sec && st.st_mtim.tv_nsec > acked->tv_nsec));
}

static void failover(int sessions)
{
	char uri[256], msg[256];
	if (pg_server_database("benchfail", uri, sizeof(uri), msg, sizeof(msg)) < 0)
		die(msg);
	char snap[] = SNAP_DIR_TEMPLATE;
	if (mkdtemp(snap) == NULL)
		die("mkdtemp failed");
	const char *extra[] = {"--snapshot-dir",     snap, "--snapshots-shared",
			       "--checkpoint-every", "1",  NULL};
	struct node nodes[NODES];
	for (int i = 0; i < NODES; i++)
		node_start(&nodes[i], node_names[i], uri, node_slots[i], extra);
	char key[256];
	key_on(uri, "", key, sizeof(key));
	CURL *h = handle_new();
	struct node *victim = &nodes[NODES - 1];

	/* Creates through A, placed where the fewest are: the ones C got. */
	int all_n = 0, mine_n = 0;
	char **all = calloc((size_t)(NODES + 1) * (size_t)sessions, sizeof(char *));
	char **mine = calloc((size_t)sessions, sizeof(char *));
	long long before[NODES], after[NODES];
	owned_counts(h, &nodes[0], before);
	while (mine_n < sessions && all_n < (NODES + 1) * sessions) {
		char *body = NULL;
		if (request(h, nodes[0].base, "POST", "/sessions/create", key, "{}", false, NULL,
			    &body) != 200)
			die("a create for the failover failed");
		char *id = json_field(body, "sessionId");
		free(body);
		if (id == NULL)
			die("a create answered no sessionId");
		all[all_n++] = id;
		owned_counts(h, &nodes[0], after);
		if (after[NODES - 1] > before[NODES - 1])
			mine[mine_n++] = id;
		memcpy(before, after, sizeof(before));
	}
	if (mine_n < sessions)
		die("node C was given too few sessions");

	/* A file in each, acknowledged, then a checkpoint that began after. */
	struct timespec acked;
	for (int i = 0; i < mine_n; i++) {
		char body[160];
		snprintf(body, sizeof(body),
			 "{\"sessionId\":\"%s\",\"command\":\"echo kept > /workspace/f\"}",
			 mine[i]);
		if (request(h, victim->base, "POST", "/execute", key, body, false, NULL, NULL) !=
		    200)
			die("a write before the kill failed");
	}
	clock_gettime(CLOCK_REALTIME, &acked);
	for (int i = 0; i < mine_n; i++) {
		double t0 = now_ms();
		while (!checkpointed_after(snap, mine[i], &acked)) {
			if (now_ms() - t0 > 30000)
				die("no checkpoint after the write in 30 s");
			sleep_ms(50);
		}
	}

	struct survivor_poll *p = calloc((size_t)mine_n, sizeof(*p));
	pthread_t *t = calloc((size_t)mine_n, sizeof(*t));
	struct timespec wall;
	clock_gettime(CLOCK_REALTIME, &wall);
	double killed = now_ms();
	if (kill(victim->daemon, SIGKILL) < 0)
		die("cannot kill node C");
	long long killed_unix_ms = (long long)wall.tv_sec * 1000 + wall.tv_nsec / 1000000;
	for (int i = 0; i < mine_n; i++) {
		p[i] = (struct survivor_poll){
		    .via = &nodes[i % (NODES - 1)], .key = key, .id = mine[i], .killed_ms = killed};
		if (pthread_create(&t[i], NULL, poll_main, &p[i]) != 0)
			die("pthread_create failed");
	}
	int kept = 0, answered = 0, unavailable = 0;
	double *ms = calloc((size_t)mine_n, sizeof(double));
	for (int i = 0; i < mine_n; i++) {
		pthread_join(t[i], NULL);
		if (p[i].answer_ms >= 0)
			ms[answered++] = p[i].answer_ms / 1000;
		kept += p[i].kept;
		unavailable += p[i].unavailable;
	}
	struct stats s = summarise("kill -9 to first answer", ms, answered);
	/* The dead node's last lease, which nothing renews now. */
	double lapse_s = (double)(lease_expiry(h, &nodes[0], victim->name) - killed_unix_ms) / 1000;
	printf("node death: kill -9 of a node owning %d awake sessions (shared snapshots, "
	       "--checkpoint-every 1, lease %d s renewed every %d s), each polled every %d ms "
	       "through a survivor\n",
	       mine_n, 15, 5, FAILOVER_POLL_MS);
	if (s.ok)
		printf("  kill -9 to first answer: p50 %.2f s, max %.2f s, min %.2f s; "
		       "%d/%d answered, %d/%d with the file written before the kill; "
		       "%d answers 503 before\n",
		       s.p50, ms[answered - 1], ms[0], answered, mine_n, kept, mine_n, unavailable);
	else
		printf("  no session answered within %d s\n", FAILOVER_GIVE_UP_MS / 1000);
	if (s.ok)
		printf("  its lease ran out %.2f s after the kill; from then to the answers p50 "
		       "%.2f s, max %.2f s\n",
		       lapse_s, s.p50 - lapse_s, ms[answered - 1] - lapse_s);

	/* Every session deleted through a survivor, so that the clean stops
	 * have nothing to put to sleep. */
	for (int i = 0; i < all_n; i++) {
		char path[96];
		snprintf(path, sizeof(path), "/sessions/%s", all[i]);
		request(h, nodes[0].base, "DELETE", path, key, NULL, false, NULL, NULL);
		free(all[i]);
	}
	for (int i = NODES - 1; i >= 0; i--)
		node_stop(&nodes[i]);
	curl_easy_cleanup(h);
	free(all);
	free(mine);
	free(p);
	free(t);
	free(ms);
	char cmd[PATH_MAX + 16];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", snap);
	if (system(cmd) != 0)
		fprintf(stderr, "bench: cannot remove '%s'\n", snap);
}

/* ---- the relay ---- */

/* 1 MB file, GET, execute and read through the owner a and the peer b. */
static int relay(const struct node *a, const struct node *b, const char *key, int n, int reads)
{
	const char *a_base = a->base, *b_base = b->base;
	CURL *ha = handle_new(), *hb = handle_new();

	/* The session: created through A while no node owns one, so A's. */
	char *body = NULL;
	if (request(ha, a_base, "POST", "/sessions/create", key, "{}", false, NULL, &body) != 200)
		die("create failed");
	char *sid = json_field(body, "sessionId");
	free(body);
	if (sid == NULL)
		die("create answered no sessionId");
	char id[64];
	snprintf(id, sizeof(id), "%s", sid);
	free(sid);

	size_t big = 1u << 20;
	char *content = malloc(big + 1);
	for (size_t i = 0; i < big; i++)
		content[i] = (char)('a' + i % 26);
	content[big] = '\0';
	json_t *w = json_pack("{s:s,s:s,s:s}", "sessionId", id, "path", "/workspace/1mb.txt",
			      "content", content);
	char *wbody = json_dumps(w, JSON_COMPACT);
	json_decref(w);
	free(content);
	long st;
	timed(ha, a_base, "POST", "/files/write", key, wbody, &st);
	free(wbody);
	if (st != 200)
		die("the 1 MB write failed");

	char exec_body[128], read_path[160];
	snprintf(exec_body, sizeof(exec_body), "{\"sessionId\":\"%s\",\"command\":\"true\"}", id);
	snprintf(read_path, sizeof(read_path), "/files/read?sessionId=%s&path=/workspace/1mb.txt",
		 id);
	/* Warm both paths (connections, the sandbox). */
	for (int i = 0; i < 10; i++) {
		timed(ha, a_base, "POST", "/execute", key, exec_body, &st);
		timed(hb, b_base, "POST", "/execute", key, exec_body, &st);
	}
	char info_path[96];
	snprintf(info_path, sizeof(info_path), "/sessions/%s", id);
	double *ga = calloc((size_t)n, sizeof(double)), *gb = calloc((size_t)n, sizeof(double));
	for (int i = 0; i < n; i++) {
		ga[i] = timed(ha, a_base, "GET", info_path, key, NULL, &st);
		gb[i] = timed(hb, b_base, "GET", info_path, key, NULL, &st);
	}
	double *ea = calloc((size_t)n, sizeof(double)), *eb = calloc((size_t)n, sizeof(double));
	double *ra = calloc((size_t)reads, sizeof(double)),
	       *rb = calloc((size_t)reads, sizeof(double));
	int bad = 0;
	for (int i = 0; i < n; i++) {
		ea[i] = timed(ha, a_base, "POST", "/execute", key, exec_body, &st);
		bad += st != 200;
		eb[i] = timed(hb, b_base, "POST", "/execute", key, exec_body, &st);
		bad += st != 200;
	}
	for (int i = 0; i < reads; i++) {
		ra[i] = timed(ha, a_base, "GET", read_path, key, NULL, &st);
		bad += st != 200;
		rb[i] = timed(hb, b_base, "GET", read_path, key, NULL, &st);
		bad += st != 200;
	}
	struct stats s[6] = {
	    summarise("GET session, through the owner", ga, n),
	    summarise("GET session, through a peer", gb, n),
	    summarise("execute true, through the owner", ea, n),
	    summarise("execute true, through a peer", eb, n),
	    summarise("read 1 MB, through the owner", ra, reads),
	    summarise("read 1 MB, through a peer", rb, reads),
	};
	struct stats_table t = {.name_width = 34, .n_width = 6};
	printf("bench/cluster: three nodes on PostgreSQL 15, one session owned by node A, asked "
	       "of A and of B\n");
	stats_print_header(&t);
	for (int i = 0; i < 6; i++)
		stats_print_row(&t, &s[i], NULL);
	printf("relay adds: GET p50 %+.3f ms, p99 %+.3f ms; execute p50 %+.3f ms, p99 %+.3f ms; "
	       "1 MB read p50 %+.3f ms, p99 %+.3f ms\n",
	       s[1].p50 - s[0].p50, s[1].p99 - s[0].p99, s[3].p50 - s[2].p50, s[3].p99 - s[2].p99,
	       s[5].p50 - s[4].p50, s[5].p99 - s[4].p99);
	if (bad)
		printf("requests that failed: %d\n", bad);

	timed(ha, a_base, "DELETE", info_path, key, NULL, &st);
	curl_easy_cleanup(ha);
	curl_easy_cleanup(hb);
	free(ga);
	free(gb);
	free(ea);
	free(eb);
	free(ra);
	free(rb);
	return bad;
}

int main(int argc, char **argv)
{
	bench_init(argc, argv);
	int n = env_int("BENCH_CLUSTER_N", 300, 10, 100000);
	int reads = env_int("BENCH_CLUSTER_READS", 100, 5, 100000);
	int clients = env_int("BENCH_CLUSTER_CLIENTS", 8, 1, 64);
	int creates = env_int("BENCH_CLUSTER_CREATES", 160, 1, 250);
	int rpm = env_int("BENCH_CLUSTER_RPM", 60, 1, 100000);
	int rl_secs = env_int("BENCH_CLUSTER_RL_SECONDS", 10, 1, 59);
	int dying = env_int("BENCH_CLUSTER_FAILOVER", 10, 1, 200);
	int rounds = env_int("BENCH_CLUSTER_ROUNDS", 3, 1, MAX_ROUNDS);
	if (geteuid() != 0) {
		fprintf(stderr, "bench: bunkerd must run as root\n");
		return 1;
	}
	signal(SIGPIPE, SIG_IGN);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	if (pg_server_start() < 0) {
		fprintf(stderr, "bench: no PostgreSQL: %s\n", pg.skip);
		return 1;
	}
	char uri[256], msg[256];
	if (pg_server_database("bench", uri, sizeof(uri), msg, sizeof(msg)) < 0) {
		fprintf(stderr, "bench: %s\n", msg);
		pg_server_stop();
		return 1;
	}
	int tfd = mkstemp(token_file);
	if (tfd < 0 || dprintf(tfd, "%s\n", OPERATOR_TOKEN) < 0)
		die("cannot write the cluster secret");
	close(tfd);

	/* The three nodes, and one alone on a database of its own (its own
	 * placement, cap and store connection): the creates of each in turn.
	 * A session's process limit of 64 rather than 512 lets one node hold
	 * every session of a round within its host-wide budget (half of
	 * pid_max, 16,384 here). */
	const char *extra[] = {"--pids-max", "64", NULL};
	char solo_uri[256];
	if (pg_server_database("benchsolo", solo_uri, sizeof(solo_uri), msg, sizeof(msg)) < 0)
		die(msg);
	struct node nodes[NODES], solo;
	node_start(&solo, "bench-solo", solo_uri, "768:256", extra);
	for (int i = 0; i < NODES; i++)
		node_start(&nodes[i], node_names[i], uri, node_slots[i], extra);
	char key[256], solo_key[256];
	key_on(uri, "", key, sizeof(key));
	key_on(solo_uri, "", solo_key, sizeof(solo_key));
	int bad = relay(&nodes[0], &nodes[1], key, n, reads);

	struct node *via[NODES] = {&nodes[0], &nodes[1], &nodes[2]}, *solo_via[1] = {&solo};
	struct create_rate one[MAX_ROUNDS], three[MAX_ROUNDS];
	char names[MAX_ROUNDS][2][48];
	double r1[MAX_ROUNDS], r3[MAX_ROUNDS];
	int failed = 0;
	for (int r = 0; r < rounds; r++) {
		snprintf(names[r][0], sizeof(names[r][0]), "create, one node, round %d", r + 1);
		snprintf(names[r][1], sizeof(names[r][1]), "create, three nodes, round %d", r + 1);
		one[r] = create_rate(solo_via, 1, solo_key, clients, creates, names[r][0]);
		three[r] = create_rate(via, NODES, key, clients, creates, names[r][1]);
		r1[r] = one[r].per_s;
		r3[r] = three[r].per_s;
		failed += one[r].failed + three[r].failed;
	}
	printf("creates: %d clients, %d creates each time (no warm pool, --pids-max 64), deleted "
	       "after; one node and three in turn, %d rounds\n",
	       clients, creates, rounds);
	struct stats_table t = {.name_width = 34, .n_width = 6};
	stats_print_header(&t);
	for (int r = 0; r < rounds; r++) {
		char note[2][64];
		snprintf(note[0], sizeof(note[0]), "%.2f creates/s", one[r].per_s);
		snprintf(note[1], sizeof(note[1]), "%.2f creates/s, %.2fx", three[r].per_s,
			 three[r].per_s / one[r].per_s);
		stats_print_row(&t, &one[r].lat, note[0]);
		stats_print_row(&t, &three[r].lat, note[1]);
	}
	struct stats m1 = summarise("one node", r1, rounds), m3 = summarise("three", r3, rounds);
	printf("creates per second, median of %d rounds: one node %.2f, three nodes %.2f, ratio "
	       "%.2f\n",
	       rounds, m1.p50, m3.p50, m3.p50 / m1.p50);
	if (failed)
		printf("creates or deletes that failed: %d\n", failed);

	rate_limit(uri, nodes, rpm, rl_secs);
	for (int i = NODES - 1; i >= 0; i--)
		node_stop(&nodes[i]);
	node_stop(&solo);

	failover(dying);

	unlink(token_file);
	pg_server_stop();
	return bad || failed ? 1 : 0;
}
