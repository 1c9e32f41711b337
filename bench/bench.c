/* Latency benchmark of a real bunkerd, with the cost of bare namespaces and
 * of a bare Bun measured in the same run for comparison.
 *
 *   bench [BUILD_DIR]      (default: the parent of this binary's directory)
 *   BENCH_N=200            iterations of each measurement
 *
 * Starts bunkerd on a free loopback port with a fresh data directory,
 * creates paid keys with the CLI (one per phase, so that no phase meets the
 * per-key rate limit), then times, over N iterations each:
 *   - POST /sessions/create and DELETE /sessions/{id}, in batches that stay
 *     under the paid plan's 100 concurrent sessions;
 *   - POST /execute of the command "true" and of the code "console.log(1)"
 *     in one reused session;
 *   - posix_spawn + wait of `unshare --fork --pid --mount --net --user
 *     --map-root-user /bin/true` and of `bun -e 1`.
 * Prints median and p99 in milliseconds and the ratio of the JS execute's
 * median to bare Bun's. The daemon, HTTP and statistics helpers are
 * bench/common.c's (no tests/client.c).
 */
#include <fcntl.h>
#include <jansson.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "common.h"

#define BATCH 50 /* sessions alive at once in the create/delete phase */
#define BUN_PATH "/opt/bunker/bun/bin/bun"

extern char **environ;

/* ---- measurements ---- */

static void bench_create_delete(const char *key, int n, double *create_ms, double *delete_ms)
{
	char **ids = calloc(BATCH, sizeof(char *));
	int done = 0;
	while (done < n) {
		int batch = n - done < BATCH ? n - done : BATCH;
		for (int i = 0; i < batch; i++)
			ids[i] = create_session(key, "{}", &create_ms[done + i]);
		for (int i = 0; i < batch; i++) {
			delete_session(key, ids[i], &delete_ms[done + i]);
			free(ids[i]);
		}
		done += batch;
	}
	free(ids);
}

/* Time to interactive as ComputeSDK measures the hosted peers: create a
 * session, then its first command, each request on a connection of its
 * own; n iterations, the fastest and slowest 5 % dropped. Fills p[3]
 * with p50, p95 and p99 of the rest. */
static void bench_tti(const char *key, int n, double p[3])
{
	double *v = calloc((size_t)n, sizeof(double));
	http_fresh_connection = true;
	for (int i = 0; i < n; i++) {
		/* The two requests' own durations: a 429 waited out is not in
		 * them. */
		double create_ms, exec_ms;
		char *id = create_session(key, "{}", &create_ms);
		char body[256];
		snprintf(body, sizeof(body), "{\"sessionId\":\"%s\",\"command\":\"echo 1\"}", id);
		json_t *j = NULL;
		long st = http("POST", "/execute", key, body, &j, &exec_ms);
		v[i] = create_ms + exec_ms;
		const char *out = json_string_value(json_object_get(j, "stdout"));
		if (st != 200 || out == NULL || strcmp(out, "1\n") != 0)
			die("time to interactive: the first command did not print 1");
		json_decref(j);
		delete_session(key, id, NULL);
		free(id);
	}
	http_fresh_connection = false;
	sort_values(v, n);
	int cut = n / 20;
	p[0] = nearest_rank(v + cut, n - 2 * cut, 0.50);
	p[1] = nearest_rank(v + cut, n - 2 * cut, 0.95);
	p[2] = nearest_rank(v + cut, n - 2 * cut, 0.99);
	free(v);
}

/* Executes body n times (after warm-ups), checking each answer. */
static void bench_execute(const char *key, const char *body, const char *want_stdout, int n,
			  double *ms)
{
	for (int i = -3; i < n; i++) {
		json_t *j = NULL;
		double t;
		if (http("POST", "/execute", key, body, &j, &t) != 200)
			die("execute failed");
		json_t *code = json_object_get(j, "exitCode");
		const char *out = json_string_value(json_object_get(j, "stdout"));
		if (!json_is_integer(code) || json_integer_value(code) != 0 || out == NULL ||
		    strcmp(out, want_stdout) != 0) {
			char *dump = json_dumps(j, JSON_COMPACT);
			fprintf(stderr, "bench: unexpected answer to %s: %.300s\n", body,
				dump ? dump : "(not JSON)");
			free(dump);
			die("execute gave a wrong result");
		}
		json_decref(j);
		if (i >= 0)
			ms[i] = t;
	}
}

/* posix_spawn + wait of argv, n times (after one warm-up); false when the
 * program cannot run here. */
static bool bench_spawn(char *const argv[], int n, double *ms)
{
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
	bool ok = true;
	for (int i = -1; i < n && ok; i++) {
		double t0 = now_ms();
		pid_t pid;
		int st = 0;
		if (posix_spawn(&pid, argv[0], &fa, NULL, argv, environ) != 0 ||
		    waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
			fprintf(stderr, "bench: '%s' failed here (status 0x%x); baseline skipped\n",
				argv[0], st);
			ok = false;
			break;
		}
		if (i >= 0)
			ms[i] = now_ms() - t0;
	}
	posix_spawn_file_actions_destroy(&fa);
	return ok;
}

int main(int argc, char **argv)
{
	bench_init(argc, argv);
	int n = env_int("BENCH_N", 200, 1, 100000);
	/* Plain bunkerd; requests are short and nothing sleeps, so it stops
	 * quickly. The create phase holds BATCH sessions awake at once: at the
	 * default 512 processes each they would pass the processes budget of a
	 * host whose pid_max is 32768 (16384 / 512 = 32 sessions), so each
	 * session gets 128. */
	const char *const daemon_args[] = {"--pids-max", "128", NULL};
	start_daemon(daemon_args, 120, 10);
	printf("bunkerd %s, N=%d\n", build, n);

	double *create_ms = calloc((size_t)n, sizeof(double));
	double *delete_ms = calloc((size_t)n, sizeof(double));
	double *cmd_ms = calloc((size_t)n, sizeof(double));
	double *js_ms = calloc((size_t)n, sizeof(double));
	double *ns_ms = calloc((size_t)n, sizeof(double));
	double *bun_ms = calloc((size_t)n, sizeof(double));

	char key1[256], key2[256], key3[256];
	key_create("paid", key1, sizeof(key1));
	key_create("paid", key2, sizeof(key2));
	key_create("paid", key3, sizeof(key3));

	bench_create_delete(key1, n, create_ms, delete_ms);

	/* Executions get one whole core (the paid plan's most): at the default
	 * quarter core a burst of runs is throttled, which measures the quota,
	 * not the sandbox. */
	char *id = create_session(key2, "{\"resourceLimits\":{\"cpu\":1}}", NULL);
	char body[256];
	snprintf(body, sizeof(body), "{\"sessionId\":\"%s\",\"command\":\"true\"}", id);
	bench_execute(key2, body, "", n, cmd_ms);
	delete_session(key2, id, NULL);
	free(id);

	id = create_session(key3, "{\"resourceLimits\":{\"cpu\":1}}", NULL);
	snprintf(body, sizeof(body), "{\"sessionId\":\"%s\",\"code\":\"console.log(1)\"}", id);
	bench_execute(key3, body, "1\n", n, js_ms);
	delete_session(key3, id, NULL);
	free(id);

	char key4[256];
	key_create("paid", key4, sizeof(key4));
	int tti_n = env_int("BENCH_TTI_N", 100, 20, 100000);
	double tti[3];
	bench_tti(key4, tti_n, tti);

	stop_daemon();

	char *unshare_argv[] = {"/usr/bin/unshare", "--fork",	 "--pid",
				"--mount",	    "--net",	 "--user",
				"--map-root-user",  "/bin/true", NULL};
	bool ns_ok = bench_spawn(unshare_argv, n, ns_ms);
	char *bun_argv[] = {BUN_PATH, "-e", "1", NULL};
	bool bun_ok = bench_spawn(bun_argv, n, bun_ms);

	struct stats rows[] = {
	    summarise("POST /sessions/create", create_ms, n),
	    summarise("DELETE /sessions/{id}", delete_ms, n),
	    summarise("POST /execute command \"true\"", cmd_ms, n),
	    summarise("POST /execute code \"console.log(1)\"", js_ms, n),
	    summarise("baseline: unshare (user,pid,mnt,net) true", ns_ms, ns_ok ? n : 0),
	    summarise("baseline: bun -e 1", bun_ms, bun_ok ? n : 0),
	};
	const struct stats_table table = {.name_width = 44, .n_width = 6};
	printf("\n");
	stats_print_header(&table);
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
		stats_print_row(&table, &rows[i], NULL);
	if (rows[3].ok && rows[5].ok && rows[5].p50 > 0)
		printf("\nJS execute p50 / bare bun p50: %.2fx (%.2f ms over bare bun)\n",
		       rows[3].p50 / rows[5].p50, rows[3].p50 - rows[5].p50);
	printf("\ntime to interactive (create, then first command; a fresh connection "
	       "each), n=%d, 5%% trimmed each side:\n  p50 %.2f ms, p95 %.2f ms, p99 %.2f ms\n",
	       tti_n, tti[0], tti[1], tti[2]);
	if (rate_limited > 0)
		printf("(%d answers were 429 and were retried outside the timing)\n", rate_limited);

	free(create_ms);
	free(delete_ms);
	free(cmd_ms);
	free(js_ms);
	free(ns_ms);
	free(bun_ms);
	bench_cleanup();
	return 0;
}
