/* Benchmark of what Bunker's costs do as the number of awake sessions
 * grows: at 10, 500, 1,000 and 2,000 sessions (or up to BENCH_SCALE_MAX),
 * the p50 and p99 of create (back to back, and paced so that the warm
 * pool keeps up), execute "true", GET /sessions/{id}, the first page of
 * GET /sessions (50 sessions, but 10 at the 10 level), a page of 10
 * (?limit=10: the same page at every level) and delete, with each
 * figure's ratio to its value at 10 sessions (target: p50 at 2,000 <= 1.5x); a burst of 200
 * back-to-back creates (target: p99 <= 20 ms); the memory each session
 * adds and bunkerd's RSS; and the lines of two mount tables: bunkerd's own
 * (its mount namespace, /proc/<bunkerd>/mountinfo) and the host's (PID 1's,
 * /proc/1/mountinfo: the bench may run in a namespace of its own).
 *
 *   scale [BUILD_DIR]       (default: the parent of this binary's directory)
 *   BENCH_N=50              requests of each kind measured at each level
 *   BENCH_SCALE_PACE_MS=50  the pause before each of a second series of
 *                           creates, which the warm pool keeps up with
 *   BENCH_SCALE_MAX=2000    the last level
 *   BENCH_SCALE_LEVELS=10,500,1000,2000   the levels (0 allowed: create and
 *                           delete only, nothing to execute in)
 *
 * 2,000 awake sessions need more processes than the kernel's pid_max of
 * 32768 leaves the daemon's processes budget (half of it): sessions get
 * --pids-max 32, the budget is raised to what the levels need while that
 * stays within nine tenths of pid_max (up to some 800 sessions at 32768),
 * and past that a pid_max below 4194304 (what systemd sets on every 64-bit
 * host) is raised to it for the run and put back at its end.
 */
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"

#define PID_MAX_WANTED 4194304L
#define BURST 200

static const struct stats_table table = {.name_width = 34, .n_width = 5};

/* The pause before each paced create. */
static int pace_ms;

static long pid_max_before;

static long read_long(const char *path, const char *field)
{
	FILE *f = fopen(path, "r");
	if (f == NULL)
		return -1;
	char line[256];
	long v = -1;
	size_t flen = field ? strlen(field) : 0;
	while (fgets(line, sizeof(line), f) != NULL) {
		if (field == NULL || strncmp(line, field, flen) == 0) {
			v = strtol(line + flen, NULL, 10);
			break;
		}
	}
	fclose(f);
	return v;
}

static void write_pid_max(long v)
{
	FILE *f = fopen("/proc/sys/kernel/pid_max", "w");
	if (f == NULL || fprintf(f, "%ld\n", v) < 0 || fclose(f) != 0)
		die("cannot write /proc/sys/kernel/pid_max");
}

static void restore_pid_max(void)
{
	if (pid_max_before > 0)
		write_pid_max(pid_max_before);
	pid_max_before = 0;
}

static void on_signal(int sig)
{
	restore_pid_max();
	stop_daemon();
	signal(sig, SIG_DFL);
	raise(sig);
}

/* Lines of /proc/<pid>/mountinfo, 1 for the host's (PID 1's). */
static int mount_lines(pid_t pid)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/mountinfo", (int)pid);
	FILE *f = fopen(path, "r");
	if (f == NULL)
		return -1;
	int n = 0, c;
	while ((c = fgetc(f)) != EOF)
		n += c == '\n';
	fclose(f);
	return n;
}

/* The sessions alive, as a growing array of ids. */
static char **ids;
static int count, cap;

static void add_session(const char *key, double *ms)
{
	if (count == cap) {
		cap = cap ? cap * 2 : 256;
		ids = realloc(ids, (size_t)cap * sizeof(*ids));
		if (ids == NULL)
			die("out of memory");
	}
	ids[count++] = create_session(key, "{}", ms);
}

static void drop_last(const char *key, double *ms)
{
	count--;
	delete_session(key, ids[count], ms);
	free(ids[count]);
}

struct level {
	int sessions;
	struct stats create, paced, exec, get, list, list10, del;
	long rss_kb, avail_kb;
	int mounts, host_mounts;
};

/* Measures each kind of request n times with sessions alive; leaves
 * their number as it found it. */
static void measure(const char *key, int n, struct level *l)
{
	double *v = calloc((size_t)n, sizeof(double));
	double *d = calloc((size_t)n, sizeof(double));
	char path[128], body[160];
	l->sessions = count;
	char status[64];
	snprintf(status, sizeof(status), "/proc/%d/status", (int)daemon_pid);
	l->rss_kb = read_long(status, "VmRSS:");
	l->avail_kb = read_long("/proc/meminfo", "MemAvailable:");
	l->mounts = mount_lines(daemon_pid);
	l->host_mounts = mount_lines(1);

	for (int i = 0; i < n && count > 0; i++) {
		const char *id = ids[(i * 7919) % count];
		snprintf(body, sizeof(body), "{\"sessionId\":\"%s\",\"command\":\"true\"}", id);
		if (http("POST", "/execute", key, body, NULL, &v[i]) != 200)
			die("execute failed");
	}
	l->exec = summarise("POST /execute \"true\"", v, count > 0 ? n : 0);
	for (int i = 0; i < n && count > 0; i++) {
		snprintf(path, sizeof(path), "/sessions/%s", ids[(i * 7919) % count]);
		if (http("GET", path, key, NULL, NULL, &v[i]) != 200)
			die("get failed");
	}
	l->get = summarise("GET /sessions/{id}", v, count > 0 ? n : 0);
	for (int i = 0; i < n; i++)
		if (http("GET", "/sessions", key, NULL, NULL, &v[i]) != 200)
			die("list failed");
	l->list = summarise("GET /sessions (first page)", v, n);
	/* The default page holds 50 sessions, 10 at the first level: a page
	 * of 10 at every level is the same work, but for the sessions around
	 * it. */
	for (int i = 0; i < n; i++)
		if (http("GET", "/sessions?limit=10", key, NULL, NULL, &v[i]) != 200)
			die("list failed");
	l->list10 = summarise("GET /sessions?limit=10", v, n);
	for (int i = 0; i < n; i++)
		add_session(key, &v[i]);
	for (int i = 0; i < n; i++)
		drop_last(key, &d[i]);
	l->create = summarise("POST /sessions/create", v, n);
	l->del = summarise("DELETE /sessions/{id}", d, n);
	/* Back to back, creates outrun the warm pool's refill (a sandbox's
	 * start, 10-20 ms on cgroup v1) and some start their own sandbox;
	 * paced, each finds the pool full: the cost of a create itself. */
	for (int i = 0; i < n; i++) {
		usleep((useconds_t)pace_ms * 1000);
		add_session(key, &v[i]);
	}
	for (int i = 0; i < n; i++)
		drop_last(key, NULL);
	static char what[64]; /* summarise() keeps the pointer */
	snprintf(what, sizeof(what), "create, %d ms apart", pace_ms);
	l->paced = summarise(what, v, n);
	free(v);
	free(d);
}

static void print_level(const struct level *l, const struct level *first)
{
	printf("\n== %d sessions awake: bunkerd RSS %.1f MB, mount table lines: bunkerd's %d, "
	       "the host's %d ==\n",
	       l->sessions, l->rss_kb / 1024.0, l->mounts, l->host_mounts);
	stats_print_header(&table);
	const struct stats *row[] = {&l->create, &l->paced,  &l->exec, &l->get,
				     &l->list,	 &l->list10, &l->del};
	const struct stats *base[] = {&first->create, &first->paced,  &first->exec, &first->get,
				      &first->list,   &first->list10, &first->del};
	for (size_t i = 0; i < sizeof(row) / sizeof(row[0]); i++) {
		char note[64];
		snprintf(note, sizeof(note), "p50 %.2fx of %d sessions'",
			 base[i]->p50 > 0 ? row[i]->p50 / base[i]->p50 : 0, first->sessions);
		stats_print_row(&table, row[i], l == first || base[i]->p50 <= 0 ? NULL : note);
	}
}

int main(int argc, char **argv)
{
	bench_init(argc, argv);
	int n = env_int("BENCH_N", 50, 5, 10000);
	pace_ms = env_int("BENCH_SCALE_PACE_MS", 50, 1, 10000);
	int max = env_int("BENCH_SCALE_MAX", 2000, 10, 5000);
	int levels_all[5] = {10, 500, 1000, 2000, 5000};
	size_t nlevels_all = 5;
	const char *spec = getenv("BENCH_SCALE_LEVELS");
	if (spec != NULL && *spec != '\0') {
		nlevels_all = 0;
		for (const char *c = spec; *c && nlevels_all < 5;) {
			char *end;
			long v = strtol(c, &end, 10);
			if (end == c || v < 0 || v > 5000 ||
			    (nlevels_all > 0 && v <= levels_all[nlevels_all - 1]))
				die("BENCH_SCALE_LEVELS takes rising numbers 0..5000, as 10,500");
			levels_all[nlevels_all++] = (int)v;
			c = *end == ',' ? end + 1 : end;
			if (*end != ',' && *end != '\0')
				die("BENCH_SCALE_LEVELS takes rising numbers 0..5000, as 10,500");
		}
		max = levels_all[nlevels_all - 1];
	}

	/* The processes the levels need (--pids-max 32 each, the warm pool's
	 * and the measured creates' included): the daemon's own budget (half
	 * of pid_max or threads-max, the lower) where that is enough, else
	 * up to nine tenths of the lower as the budget, raising pid_max only
	 * past that. */
	long pid_max = read_long("/proc/sys/kernel/pid_max", NULL);
	long threads = read_long("/proc/sys/kernel/threads-max", NULL);
	long room = threads > 0 && threads < pid_max ? threads : pid_max;
	long need = (long)(max + n + 16) * 32;
	char budget_s[24] = "";
	if (room > 0 && need <= room / 2) {
		/* The default serves. */
	} else if (room > 0 && need <= room / 10 * 9) {
		snprintf(budget_s, sizeof(budget_s), "%ld", need);
	} else if (pid_max > 0 && pid_max < PID_MAX_WANTED && room == pid_max) {
		pid_max_before = pid_max;
		signal(SIGINT, on_signal);
		signal(SIGTERM, on_signal);
		atexit(restore_pid_max);
		write_pid_max(PID_MAX_WANTED);
		printf("kernel pid_max %ld raised to %ld for the run\n", pid_max, PID_MAX_WANTED);
	}
	const char *const daemon_args[] = {"--pids-max", "32", budget_s[0] ? "--pids-budget" : NULL,
					   budget_s, NULL};
	start_daemon(daemon_args, 120, 120);
	printf("bunkerd %s, N=%d, sessions up to %d\n", build, n, max);

	char key[256];
	char max_s[16];
	snprintf(max_s, sizeof(max_s), "%d", max + n + BURST + 10);
	const char *const overrides[] = {"--max-sessions", max_s, "--rpm", "100000000", NULL};
	key_create_with("enterprise", overrides, key, sizeof(key));

	int mounts_empty = mount_lines(daemon_pid), host_mounts_empty = mount_lines(1);
	long avail_empty = read_long("/proc/meminfo", "MemAvailable:");

	struct level levels[5] = {{0}};
	int nlevels = 0;
	/* One round unmeasured first: the first level's figures are not
	 * those of a daemon still filling its warm pool and its caches. */
	struct level warm_up;
	while (count < (levels_all[0] < max ? levels_all[0] : max))
		add_session(key, NULL);
	measure(key, n, &warm_up);
	struct stats burst = {0};
	for (size_t li = 0; li < nlevels_all; li++) {
		int want = levels_all[li] < max ? levels_all[li] : max;
		if (li > 0 && want <= levels[nlevels - 1].sessions)
			break;
		double t0 = now_ms();
		while (count < want)
			add_session(key, NULL);
		if (li > 0)
			printf("(%d sessions made in %.1f s)\n",
			       want - levels[nlevels - 1].sessions, (now_ms() - t0) / 1000);
		measure(key, n, &levels[nlevels]);
		print_level(&levels[nlevels], &levels[0]);
		if (li == 0) {
			/* The burst: BURST creates back to back, then removed. */
			double *v = calloc(BURST, sizeof(double));
			for (int i = 0; i < BURST; i++)
				add_session(key, &v[i]);
			burst = summarise("burst of 200 creates", v, BURST);
			for (int i = 0; i < BURST; i++)
				drop_last(key, NULL);
			free(v);
			printf("\n");
			stats_print_header(&table);
			stats_print_row(&table, &burst,
					burst.p99 <= 20 ? "target p99 <= 20 ms: met"
							: "target p99 <= 20 ms: MISSED");
		}
		nlevels++;
	}

	const struct level *first = &levels[0], *last = &levels[nlevels - 1];
	printf("\n== summary, %d against %d sessions (same run) ==\n", last->sessions,
	       first->sessions);
	const struct {
		const char *name;
		double a, b;
	} ratios[] = {
	    {"create", first->create.p50, last->create.p50},
	    {"create, paced", first->paced.p50, last->paced.p50},
	    {"execute \"true\"", first->exec.p50, last->exec.p50},
	    {"GET /sessions/{id}", first->get.p50, last->get.p50},
	    {"GET /sessions", first->list.p50, last->list.p50},
	    {"GET /sessions?limit=10", first->list10.p50, last->list10.p50},
	    {"delete", first->del.p50, last->del.p50},
	};
	for (size_t i = 0; i < sizeof(ratios) / sizeof(ratios[0]); i++) {
		if (ratios[i].a <= 0) {
			printf("  %-22s p50 not measured at %d sessions\n", ratios[i].name,
			       first->sessions);
			continue;
		}
		double r = ratios[i].b / ratios[i].a;
		printf("  %-22s p50 %6.2f -> %6.2f ms: %.2fx (target <= 1.5x: %s)\n",
		       ratios[i].name, ratios[i].a, ratios[i].b, r, r <= 1.5 ? "met" : "MISSED");
	}
	if (last->sessions > first->sessions)
		printf(
		    "  memory per awake session: %.2f MB (host MemAvailable), bunkerd RSS %.1f -> "
		    "%.1f MB; mount table lines before the first session, and at %d: "
		    "bunkerd's %d, %d; the host's %d, %d\n",
		    (double)(avail_empty - last->avail_kb) / last->sessions / 1024.0,
		    first->rss_kb / 1024.0, last->rss_kb / 1024.0, last->sessions, mounts_empty,
		    last->mounts, host_mounts_empty, last->host_mounts);
	if (rate_limited > 0)
		printf("(%d answers were 429 and were retried outside the timing)\n", rate_limited);

	while (count > 0)
		drop_last(key, NULL);
	free(ids);
	bench_cleanup();
	restore_pid_max();
	return 0;
}
