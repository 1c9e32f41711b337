/* Benchmark of the preview proxy: what relaying through bunkerd costs a
 * session's web app, against the same app reached directly.
 *
 *   preview [BUILD_DIR]    (default: the parent of this binary's directory)
 *   BENCH_SECONDS=10       length of each wrk run
 *   BENCH_ROUNDS=3         direct and proxied runs, interleaved
 *   BENCH_CONNECTIONS=50   wrk's keep-alive connections
 *
 * Starts bunkerd on a free loopback port with a fresh data directory, an
 * enterprise key, and a session with 2 cores whose Bun.serve app answers
 * "hi" on port 8080. Then, BENCH_ROUNDS times each, alternately:
 *   - direct: wrk run inside the session (an execution: /usr/bin/wrk is
 *     part of its image) against 127.0.0.1:8080;
 *   - proxied: wrk run on the host against the daemon's port with the
 *     session's preview host in the Host header.
 * Both use 2 wrk threads, so each run has the same load generator and app;
 * the proxied one adds bunkerd (and a second TCP connection per client) on
 * the same CPUs. Prints each run's requests/s and p50/p99 latency, the
 * medians, and the ratio of the proxied median throughput to the direct
 * one (target: at least 0.70).
 *
 *   BENCH_CGROUPS=1        the daemon and the host's wrk each in a cpu
 *                          cgroup of their own (0: both left where they are)
 *
 * Why the cgroups: the kernel's scheduler weighs a cgroup like one thread.
 * The session's processes sit in one cgroup; left at the top, wrk's two
 * threads and the daemon's relay workers would each weigh as much as the
 * whole session, and Bun, starved, would set the proxied figure (measured:
 * about 37k requests/s, against about 50k with the groups). A daemon run by
 * a service manager has a cgroup of its own, and real clients are on other
 * machines: the groups measure that.
 */
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common.h"

#define TARGET_RATIO 0.70

static const char app_ts[] =
    "Bun.serve({ port: Number(process.env.PORT), fetch: () => new Response('hi') });\n";

/* The cpu cgroups of the daemon and of the host's wrk ("" when unused). */
static char cg_daemon[128], cg_wrk[128];

struct wrk_result {
	double rps;
	double p50_ms, p99_ms;
};

/* A latency of wrk's ("812.00us", "1.23ms", "2.01s") in ms. */
static double wrk_time_ms(const char *s)
{
	char *end;
	double v = strtod(s, &end);
	if (strncmp(end, "us", 2) == 0)
		return v / 1000.0;
	if (strncmp(end, "ms", 2) == 0)
		return v;
	if (end[0] == 's')
		return v * 1000.0;
	if (strncmp(end, "m", 1) == 0)
		return v * 60000.0;
	return v;
}

/* Reads requests/s and the 50% and 99% latencies of wrk --latency's
 * report. */
static bool wrk_parse(const char *out, struct wrk_result *r)
{
	const char *rps = strstr(out, "Requests/sec:");
	const char *p50 = strstr(out, " 50% ");
	const char *p99 = strstr(out, " 99% ");
	if (rps == NULL || p50 == NULL || p99 == NULL)
		return false;
	r->rps = strtod(rps + strlen("Requests/sec:"), NULL);
	p50 += strlen(" 50% ");
	p99 += strlen(" 99% ");
	while (*p50 == ' ')
		p50++;
	while (*p99 == ' ')
		p99++;
	r->p50_ms = wrk_time_ms(p50);
	r->p99_ms = wrk_time_ms(p99);
	return r->rps > 0;
}

static void wrk_args(char *out, size_t len, int seconds, int conns, const char *extra,
		     const char *url)
{
	snprintf(out, len, "wrk -t2 -c%d -d%ds --latency %s %s", conns, seconds, extra, url);
}

/* The same on the host, in wrk's cgroup when there is one. */
static void wrk_host_args(char *out, size_t len, int seconds, int conns, const char *extra,
			  const char *url)
{
	char w[512];
	wrk_args(w, sizeof(w), seconds, conns, extra, url);
	if (cg_wrk[0])
		snprintf(out, len, "echo $$ > %s/cgroup.procs && exec %s", cg_wrk, w);
	else
		snprintf(out, len, "%s", w);
}

/* ---- cgroups for the daemon and the host's wrk ---- */

static bool write_str(const char *path, const char *s)
{
	FILE *f = fopen(path, "we");
	if (f == NULL)
		return false;
	bool ok = fputs(s, f) >= 0;
	return fclose(f) == 0 && ok;
}

/* The directory under which cpu cgroups are made: cgroup v1's cpu
 * hierarchy, or the v2 root with the cpu controller enabled below it;
 * NULL when neither is there. */
static const char *cg_base(void)
{
	if (access("/sys/fs/cgroup/cpu/cgroup.procs", W_OK) == 0)
		return "/sys/fs/cgroup/cpu";
	FILE *f = fopen("/sys/fs/cgroup/cgroup.controllers", "re");
	if (f == NULL)
		return NULL;
	char line[512] = "";
	bool cpu = fgets(line, sizeof(line), f) && strstr(line, "cpu") != NULL;
	fclose(f);
	if (!cpu || !write_str("/sys/fs/cgroup/cgroup.subtree_control", "+cpu"))
		return NULL;
	return "/sys/fs/cgroup";
}

/* Puts the daemon in a cgroup of its own and prepares one for wrk; false
 * when cgroups cannot be used here. */
static bool cg_setup(void)
{
	const char *base = cg_base();
	if (base == NULL)
		return false;
	snprintf(cg_daemon, sizeof(cg_daemon), "%s/bench-preview-%d-daemon", base, (int)getpid());
	snprintf(cg_wrk, sizeof(cg_wrk), "%s/bench-preview-%d-wrk", base, (int)getpid());
	char path[192], pid[32];
	snprintf(path, sizeof(path), "%s/cgroup.procs", cg_daemon);
	snprintf(pid, sizeof(pid), "%d", (int)daemon_pid);
	if (mkdir(cg_daemon, 0755) < 0 || mkdir(cg_wrk, 0755) < 0 || !write_str(path, pid)) {
		rmdir(cg_daemon);
		rmdir(cg_wrk);
		cg_daemon[0] = cg_wrk[0] = '\0';
		return false;
	}
	return true;
}

static void cg_remove(void)
{
	/* Empty once the daemon has stopped and wrk has ended. */
	for (int i = 0; i < 50 && cg_daemon[0] && rmdir(cg_daemon) < 0; i++)
		sleep_ms(100);
	if (cg_wrk[0])
		rmdir(cg_wrk);
}

static double median(double *v, int n)
{
	sort_values(v, n);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

int main(int argc, char **argv)
{
	bench_init(argc, argv);
	int seconds = env_int("BENCH_SECONDS", 10, 1, 600);
	int rounds = env_int("BENCH_ROUNDS", 3, 1, 20);
	int conns = env_int("BENCH_CONNECTIONS", 50, 2, 1000);
	bool groups = env_int("BENCH_CGROUPS", 1, 0, 1) == 1;
	if (system("command -v wrk >/dev/null 2>&1") != 0)
		die("wrk is not installed (scripts/install-deps.sh installs it)");

	start_daemon(NULL, (long)seconds + 120, 30);
	if (groups && !cg_setup()) {
		fprintf(stderr, "bench: no cpu cgroup to put the daemon in: measuring without\n");
		groups = false;
	}
	char key[256];
	key_create("enterprise", key, sizeof(key));
	char *id = create_session(key, "{\"resourceLimits\":{\"cpu\":2,\"memory\":2048}}", NULL);
	char path[128];
	snprintf(path, sizeof(path), "/sessions/%s", id);
	json_t *info = NULL;
	if (http("GET", path, key, NULL, &info, NULL) != 200)
		die("cannot read the session");
	const char *url = json_string_value(json_object_get(info, "previewUrl"));
	if (url == NULL || strncmp(url, "http://", 7) != 0)
		die("no previewUrl");
	char host[256];
	snprintf(host, sizeof(host), "%s", url + 7);
	json_decref(info);
	const char *colon = strrchr(host, ':');
	if (colon == NULL)
		die("the preview host has no port");
	char proxied_url[64];
	snprintf(proxied_url, sizeof(proxied_url), "http://127.0.0.1:%s/", colon + 1);

	json_t *files = json_pack("[{s:s,s:s}]", "path", "app.ts", "content", app_ts);
	free(session_run(key, id, "nohup bun run app.ts > /dev/null 2>&1 &", 30, files));
	/* Until the app answers, directly and through the preview. */
	char cmd[1024], extra[400];
	snprintf(extra, sizeof(extra), "-H 'Host: %s'", host);
	bool up = false;
	for (int i = 0; i < 100 && !up; i++) {
		snprintf(cmd, sizeof(cmd),
			 "curl -s -o /dev/null -w '%%{http_code}' -H 'Host: %s' %s 2>/dev/null",
			 host, proxied_url);
		char *code = host_run(cmd);
		up = strcmp(code, "200") == 0;
		free(code);
		if (!up)
			sleep_ms(100);
	}
	if (!up)
		die("the app did not answer through its preview");
	/* A short warm-up of each path. */
	wrk_args(cmd, sizeof(cmd), 1, conns, "", "http://127.0.0.1:8080/");
	free(session_run(key, id, cmd, 60, NULL));
	wrk_host_args(cmd, sizeof(cmd), 1, conns, extra, proxied_url);
	free(host_run(cmd));

	printf("preview proxy: wrk -t2 -c%d, %d s per run, %d rounds (%s)\n", conns, seconds,
	       rounds, host);
	printf("cpu cgroups of their own for the daemon and the host's wrk: %s\n",
	       groups ? "yes" : "no");
	printf("%-9s %5s %12s %9s %9s\n", "path", "round", "requests/s", "p50 ms", "p99 ms");
	double *d_rps = calloc((size_t)rounds, sizeof(double));
	double *p_rps = calloc((size_t)rounds, sizeof(double));
	double *d_p50 = calloc((size_t)rounds, sizeof(double));
	double *p_p50 = calloc((size_t)rounds, sizeof(double));
	double *d_p99 = calloc((size_t)rounds, sizeof(double));
	double *p_p99 = calloc((size_t)rounds, sizeof(double));
	for (int r = 0; r < rounds; r++) {
		struct wrk_result res;
		wrk_args(cmd, sizeof(cmd), seconds, conns, "", "http://127.0.0.1:8080/");
		char *out = session_run(key, id, cmd, seconds + 60, NULL);
		if (!wrk_parse(out, &res)) {
			fprintf(stderr, "%s\n", out);
			die("cannot read wrk's report (direct)");
		}
		free(out);
		d_rps[r] = res.rps;
		d_p50[r] = res.p50_ms;
		d_p99[r] = res.p99_ms;
		printf("%-9s %5d %12.0f %9.2f %9.2f\n", "direct", r + 1, res.rps, res.p50_ms,
		       res.p99_ms);
		wrk_host_args(cmd, sizeof(cmd), seconds, conns, extra, proxied_url);
		out = host_run(cmd);
		if (!wrk_parse(out, &res)) {
			fprintf(stderr, "%s\n", out);
			die("cannot read wrk's report (proxied)");
		}
		free(out);
		p_rps[r] = res.rps;
		p_p50[r] = res.p50_ms;
		p_p99[r] = res.p99_ms;
		printf("%-9s %5d %12.0f %9.2f %9.2f\n", "proxied", r + 1, res.rps, res.p50_ms,
		       res.p99_ms);
	}
	double dr = median(d_rps, rounds), pr = median(p_rps, rounds);
	printf("%-9s %5s %12.0f %9.2f %9.2f\n", "direct", "med", dr, median(d_p50, rounds),
	       median(d_p99, rounds));
	printf("%-9s %5s %12.0f %9.2f %9.2f\n", "proxied", "med", pr, median(p_p50, rounds),
	       median(p_p99, rounds));
	double ratio = dr > 0 ? pr / dr : 0;
	printf("proxied/direct throughput: %.2f (target >= %.2f: %s)\n", ratio, TARGET_RATIO,
	       ratio >= TARGET_RATIO ? "met" : "NOT met");
	free(d_rps);
	free(p_rps);
	free(d_p50);
	free(p_p50);
	free(d_p99);
	free(p_p99);
	delete_session(key, id, NULL);
	free(id);
	bench_cleanup();
	cg_remove();
	return 0;
}
