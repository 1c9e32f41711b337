/* What a relay between nodes adds: two bunkerd nodes on one throwaway
 * PostgreSQL (tests/pg_server.c), one session owned by node A, and the same
 * requests sent to A (its owner) and to B (which relays them to A),
 * interleaved so that both see the same machine: GET /sessions/{id} (the
 * relay alone: no sandbox work), POST /execute of `true`, and GET
 * /files/read of a 1 MB file. Prints p50/p99 of each and the
 * difference, the relay's cost.
 *
 * Node A is bench/common.c's daemon; node B is the same code in a child
 * process (common.c keeps one daemon per process), which stops its daemon
 * when the parent closes a pipe. Each request goes on a kept-alive
 * connection of its own node. BENCH_CLUSTER_N (300) executions and
 * BENCH_CLUSTER_READS (100) reads through each node; BENCH_CLUSTER_KEEP_LOG
 * set keeps node A's log (its request lines time each request at the
 * owner) and prints where it is.
 */
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
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

/* One request to base on handle h; its duration in ms, the status into
 * *status. */
static double timed(CURL *h, const char *base, const char *method, const char *path,
		    const char *key, const char *body, long *status)
{
	char url[512], auth[300];
	snprintf(url, sizeof(url), "%s%s", base, path);
	snprintf(auth, sizeof(auth), "Authorization: Bearer %s", key);
	struct curl_slist *hs = curl_slist_append(NULL, auth);
	hs = curl_slist_append(hs, "Content-Type: application/json");
	struct sink s = {0};
	curl_easy_reset(h);
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hs);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &s);
	curl_easy_setopt(h, CURLOPT_TIMEOUT, 120L);
	if (body)
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
	double t0 = now_ms();
	CURLcode rc = curl_easy_perform(h);
	double ms = now_ms() - t0;
	*status = 0;
	if (rc == CURLE_OK)
		curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, status);
	if (*status != 200)
		fprintf(stderr, "bench: %s %s%s: %ld %.200s\n", method, base, path, *status,
			s.data ? s.data : curl_easy_strerror(rc));
	curl_slist_free_all(hs);
	free(s.data);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, NULL);
	return ms;
}

static void key_on(const char *uri, char *out, size_t len)
{
	char cmd[PATH_MAX + 600];
	snprintf(cmd, sizeof(cmd), "'%s/bunker' --store '%s' keys create --plan enterprise", build,
		 uri);
	FILE *p = popen(cmd, "r");
	if (p == NULL || fgets(out, (int)len, p) == NULL)
		die("bunker keys create failed");
	pclose(p);
	out[strcspn(out, "\r\n")] = '\0';
	if (strncmp(out, "bk_", 3) != 0)
		die("bunker keys create printed no key");
}

int main(int argc, char **argv)
{
	bench_init(argc, argv);
	int n = env_int("BENCH_CLUSTER_N", 300, 10, 100000);
	int reads = env_int("BENCH_CLUSTER_READS", 100, 5, 100000);
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
	char token[] = TOKEN_FILE_TEMPLATE;
	int tfd = mkstemp(token);
	if (tfd < 0 || dprintf(tfd, "bench-cluster-secret-0123456789\n") < 0)
		die("cannot write the cluster secret");
	close(tfd);
	const char *a_args[] = {
	    "--store", uri,	     "--node", "bench-a",     "--operator-token-file",
	    token,     "--id-slots", "0:512",  "--warm-pool", "1",
	    NULL};
	const char *b_args[] = {
	    "--store", uri,	     "--node",	"bench-b",     "--operator-token-file",
	    token,     "--id-slots", "512:512", "--warm-pool", "1",
	    NULL};

	/* Node B, in a child: its port comes back on one pipe, and the
	 * parent's closing the other tells it to stop. */
	int port_pipe[2], stop_pipe[2];
	if (pipe(port_pipe) < 0 || pipe(stop_pipe) < 0)
		die("pipe failed");
	pid_t child = fork();
	if (child < 0)
		die("fork failed");
	if (child == 0) {
		close(port_pipe[0]);
		close(stop_pipe[1]);
		start_daemon(b_args, 120, 30);
		dprintf(port_pipe[1], "%d\n", daemon_port);
		close(port_pipe[1]);
		char c;
		while (read(stop_pipe[0], &c, 1) > 0)
			;
		bench_cleanup();
		_exit(0);
	}
	close(port_pipe[1]);
	close(stop_pipe[0]);
	char pbuf[16] = "";
	if (read(port_pipe[0], pbuf, sizeof(pbuf) - 1) <= 0)
		die("node B did not start");
	close(port_pipe[0]);
	int b_port = atoi(pbuf);
	start_daemon(a_args, 120, 30);

	char key[256];
	key_on(uri, key, sizeof(key));
	char a_base[64], b_base[64];
	snprintf(a_base, sizeof(a_base), "http://127.0.0.1:%d", daemon_port);
	snprintf(b_base, sizeof(b_base), "http://127.0.0.1:%d", b_port);
	CURL *ha = curl_easy_init(), *hb = curl_easy_init();
	if (ha == NULL || hb == NULL)
		die("cannot start libcurl");

	/* The session: created through A while both nodes own none, so A's. */
	json_t *j = NULL;
	if (http("POST", "/sessions/create", key, "{}", &j, NULL) != 200 || j == NULL)
		die("create failed");
	char id[64];
	snprintf(id, sizeof(id), "%s", json_string_value(json_object_get(j, "sessionId")));
	json_decref(j);

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
	printf("bench/cluster: two nodes on PostgreSQL 15, one session owned by node A\n");
	stats_print_header(&t);
	for (int i = 0; i < 6; i++)
		stats_print_row(&t, &s[i], NULL);
	printf("relay adds: GET p50 %+.3f ms, p99 %+.3f ms; execute p50 %+.3f ms, p99 %+.3f ms; "
	       "1 MB read p50 %+.3f ms, p99 %+.3f ms\n",
	       s[1].p50 - s[0].p50, s[1].p99 - s[0].p99, s[3].p50 - s[2].p50, s[3].p99 - s[2].p99,
	       s[5].p50 - s[4].p50, s[5].p99 - s[4].p99);
	if (bad)
		printf("requests that failed: %d\n", bad);

	char del[96];
	snprintf(del, sizeof(del), "/sessions/%s", id);
	http("DELETE", del, key, NULL, NULL, NULL);
	curl_easy_cleanup(ha);
	curl_easy_cleanup(hb);
	free(ga);
	free(gb);
	free(ea);
	free(eb);
	free(ra);
	free(rb);
	if (getenv("BENCH_CLUSTER_KEEP_LOG")) {
		printf("node A's log: %s\n", log_path);
		stop_daemon();
	} else {
		bench_cleanup();
	}
	close(stop_pipe[1]);
	int cst;
	waitpid(child, &cst, 0);
	unlink(token);
	pg_server_stop();
	return bad ? 1 : 0;
}
