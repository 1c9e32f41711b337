/* Benchmark of the session lifecycle of a real bunkerd: what idle and deep
 * sleep cost and how fast a session comes back from each.
 *
 *   lifecycle [BUILD_DIR]      (default: the parent of this binary's directory)
 *   BENCH_IDLE_N=30            wakes from idle measured
 *   BENCH_REPS_SMALL=10        deep sleep round trips of the 1 MB workspace
 *   BENCH_REPS_LARGE=5         ... of the 100 MB and 1 GB workspaces
 *   BENCH_SESSIONS=1000        sessions put to deep sleep together (0: skip)
 *   BENCH_SKIP_1G=1            leaves the 1 GB workspace out
 *
 * Starts bunkerd with --idle-after 1 --deep-sleep-after 2 on a free
 * loopback port with a fresh data directory and measures:
 *   - wake from idle: POST /execute "true" on a frozen session, against the
 *     same on an active one (the difference is the thaw);
 *   - deep sleep of workspaces of 1 MB, 100 MB and 1 GB of mixed files
 *     (many small text files, large files half random, half text): the save
 *     time and sizes from the daemon's log line "in deep sleep: N files,
 *     X bytes -> Y in Z ms", the wake as seen by a client (POST /execute
 *     "true" on the sleeping session) and as logged ("woke from deep sleep
 *     in X ms"), and what the session holds awake and asleep (processes in
 *     its cgroups, memory charged to it, its disk's bytes, its mounts);
 *   - BENCH_SESSIONS sessions with a small workspace each, all left to fall
 *     into deep sleep: snapshot bytes on disk, processes of the daemon,
 *     its RSS.
 * The daemon, HTTP and statistics helpers are bench/common.c's.
 */
#include <dirent.h>
#include <glob.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include "common.h"
#include "util/file.h"

#define IDLE_AFTER_S 1
#define DEEP_AFTER_S 2
#define TARGET_IDLE_WAKE_MS 2.0
#define TARGET_DEEP_WAKE_100MB_MS 500.0
/* Issue 15: the wake flat in the workspace's size. */
#define TARGET_DEEP_WAKE_1GB_MS 100.0
#define TARGET_DEEP_WAKE_1GB_OVER_1MB 2.0

/* The tables' layout: wider names than bench/bench.c's. */
static const struct stats_table table = {.name_width = 46, .n_width = 5};

/* ---- sessions ---- */

/* POST /execute of command with a timeout; dies unless exit 0. Returns the
 * request's duration. */
static double execute(const char *key, const char *id, const char *command)
{
	json_t *body =
	    json_pack("{s:s,s:s,s:i}", "sessionId", id, "command", command, "timeout", 300);
	char *text = json_dumps(body, JSON_COMPACT);
	json_decref(body);
	json_t *j = NULL;
	double ms = 0;
	long status = http("POST", "/execute", key, text, &j, &ms);
	free(text);
	json_t *code = json_object_get(j, "exitCode");
	if (status != 200 || !json_is_integer(code) || json_integer_value(code) != 0) {
		char *dump = j ? json_dumps(j, JSON_COMPACT) : NULL;
		fprintf(stderr, "bench: execute '%.100s': %.500s\n", command,
			dump ? dump : "(no answer)");
		free(dump);
		die("execute failed");
	}
	json_decref(j);
	return ms;
}

/* The session's state from GET /sessions/{id} into out. */
static void session_state(const char *key, const char *id, char *out, size_t len)
{
	char path[128];
	snprintf(path, sizeof(path), "/sessions/%s", id);
	json_t *j = NULL;
	if (http("GET", path, key, NULL, &j, NULL) != 200)
		die("get session failed");
	const char *st = json_string_value(json_object_get(j, "state"));
	snprintf(out, len, "%s", st ? st : "?");
	json_decref(j);
}

/* Polls (GET reads never wake a session) until the state is want: first
 * after delay_ms (the threshold is known), then every 50 ms, so that the
 * polling stays well inside a paid key's requests per minute. */
static void wait_state(const char *key, const char *id, const char *want, double delay_ms,
		       double timeout_ms)
{
	double deadline = now_ms() + timeout_ms;
	char st[32];
	sleep_ms(delay_ms);
	for (;;) {
		session_state(key, id, st, sizeof(st));
		if (strcmp(st, want) == 0)
			return;
		if (now_ms() > deadline) {
			fprintf(stderr, "bench: session %s is '%s', not '%s', after %.0f s\n", id,
				st, want, timeout_ms / 1000);
			die("a session did not change state in time");
		}
		sleep_ms(50);
	}
}

/* ---- the host's view ---- */

static bool cgroup_v2(void)
{
	return access("/sys/fs/cgroup/cgroup.controllers", F_OK) == 0;
}

/* Processes whose cgroups name the session. */
static int session_procs(const char *id)
{
	DIR *dp = opendir("/proc");
	if (dp == NULL)
		return -1;
	int n = 0;
	struct dirent *de;
	while ((de = readdir(dp)) != NULL) {
		if (de->d_name[0] < '0' || de->d_name[0] > '9')
			continue;
		char path[64];
		snprintf(path, sizeof(path), "/proc/%s/cgroup", de->d_name);
		char *text = read_file_all(path, NULL);
		n += text != NULL && strstr(text, id) != NULL;
		free(text);
	}
	closedir(dp);
	return n;
}

/* Bytes charged to the session's memory cgroup, -1 when it has none. The
 * daemon names the parent cgroup "bunker" or "bunker-<hash of its data
 * directory>": any will do, the session id is unique. */
static int64_t session_memory(const char *id)
{
	char pattern[256];
	if (cgroup_v2())
		snprintf(pattern, sizeof(pattern), "/sys/fs/cgroup/bunker*/%s/memory.current", id);
	else
		snprintf(pattern, sizeof(pattern),
			 "/sys/fs/cgroup/memory/bunker*/%s/memory.usage_in_bytes", id);
	glob_t g;
	int64_t v = -1;
	if (glob(pattern, GLOB_NOSORT, NULL, &g) == 0 && g.gl_pathc > 0) {
		char *text = read_file_all(g.gl_pathv[0], NULL);
		v = text ? strtoll(text, NULL, 10) : -1;
		free(text);
	}
	globfree(&g);
	return v;
}

/* Mounts that name the session, and the bytes used on them (tmpfs and the
 * like; the overlay and binds count as 0, their bytes are elsewhere). */
static int session_mounts(const char *id, int64_t *bytes)
{
	FILE *mi = fopen("/proc/self/mountinfo", "re");
	*bytes = 0;
	if (mi == NULL)
		return -1;
	char line[8192], mnt[4096], fstype[64];
	int n = 0;
	while (fgets(line, sizeof(line), mi) != NULL) {
		if (strstr(line, id) == NULL)
			continue;
		n++;
		const char *dash = strstr(line, " - ");
		if (sscanf(line, "%*s %*s %*s %*s %4095s", mnt) != 1 || dash == NULL ||
		    sscanf(dash + 3, "%63s", fstype) != 1 || strcmp(fstype, "tmpfs") != 0)
			continue;
		struct statfs sf;
		if (statfs(mnt, &sf) == 0)
			*bytes += (int64_t)(sf.f_blocks - sf.f_bfree) * (int64_t)sf.f_bsize;
	}
	fclose(mi);
	return n;
}

static int64_t file_size(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 ? (int64_t)st.st_size : -1;
}

/* The daemon's resident memory in bytes. */
static int64_t daemon_rss(void)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/status", (int)daemon_pid);
	char *text = read_file_all(path, NULL);
	const char *p = text ? strstr(text, "VmRSS:") : NULL;
	int64_t kb = p ? strtoll(p + 6, NULL, 10) : -1;
	free(text);
	return kb * 1024;
}

static pid_t proc_ppid(long pid)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
	char *text = read_file_all(path, NULL);
	const char *p = text ? strrchr(text, ')') : NULL;
	int ppid = -1;
	if (p == NULL || sscanf(p + 1, " %*c %d", &ppid) != 1)
		ppid = -1;
	free(text);
	return ppid;
}

/* The daemon and every process below it; also those that name the data
 * directory without descending from it (there should be none). */
static void daemon_processes(int *below, int *strays)
{
	*below = *strays = 0;
	DIR *dp = opendir("/proc");
	struct dirent *de;
	while (dp != NULL && (de = readdir(dp)) != NULL) {
		char *end;
		long pid = strtol(de->d_name, &end, 10);
		if (*end != '\0' || pid <= 1 || pid == getpid())
			continue;
		bool under = pid == daemon_pid;
		for (long p = pid; !under && p > 1;) {
			p = proc_ppid(p);
			under = p == daemon_pid;
		}
		if (under) {
			(*below)++;
			continue;
		}
		char path[64];
		size_t len;
		snprintf(path, sizeof(path), "/proc/%ld/cmdline", pid);
		char *text = read_file_all(path, &len);
		if (text != NULL && memmem(text, len, data_dir, strlen(data_dir)) != NULL)
			(*strays)++;
		free(text);
	}
	if (dp != NULL)
		closedir(dp);
}

/* ---- the daemon's log ---- */

/* The last "in deep sleep" line for id: files, bytes in, bytes out, ms. */
static bool log_sleep(const char *id, int64_t *files, int64_t *in, int64_t *out, double *ms)
{
	FILE *f = fopen(log_path, "re");
	if (f == NULL)
		return false;
	char *line = NULL;
	size_t cap = 0;
	bool found = false;
	while (getline(&line, &cap, f) >= 0) {
		const char *p = strstr(line, id);
		if (p == NULL || (p = strstr(p, " in deep sleep: ")) == NULL)
			continue;
		long long a, b, c;
		double t;
		if (sscanf(p, " in deep sleep: %lld files, %lld bytes -> %lld in %lf ms", &a, &b,
			   &c, &t) == 4) {
			*files = a;
			*in = b;
			*out = c;
			*ms = t;
			found = true;
		}
	}
	free(line);
	fclose(f);
	return found;
}

/* How many "in deep sleep" lines id has so far. */
static int log_sleep_count(const char *id, const char *what)
{
	FILE *f = fopen(log_path, "re");
	if (f == NULL)
		return 0;
	char *line = NULL;
	size_t cap = 0;
	int n = 0;
	while (getline(&line, &cap, f) >= 0)
		n += strstr(line, id) != NULL && strstr(line, what) != NULL;
	free(line);
	fclose(f);
	return n;
}

/* The last "woke from deep sleep in X ms" for id. */
static bool log_wake(const char *id, double *ms)
{
	FILE *f = fopen(log_path, "re");
	if (f == NULL)
		return false;
	char *line = NULL;
	size_t cap = 0;
	bool found = false;
	while (getline(&line, &cap, f) >= 0) {
		const char *p = strstr(line, id);
		if (p != NULL && (p = strstr(p, " woke from deep sleep in ")) != NULL &&
		    sscanf(p, " woke from deep sleep in %lf ms", ms) == 1)
			found = true;
	}
	free(line);
	fclose(f);
	return found;
}

/* ---- phases ---- */

static void bench_idle(const char *key, int n)
{
	char *id = create_session(key, "{\"resourceLimits\":{\"cpu\":1}}", NULL);
	execute(key, id, "setsid sleep 100000 >/dev/null 2>&1 &");
	int active_n = n * 5;
	double *active = calloc((size_t)active_n, sizeof(double));
	double *idle = calloc((size_t)n, sizeof(double));
	for (int i = -3; i < active_n; i++) {
		double t = execute(key, id, "true");
		if (i >= 0)
			active[i] = t;
	}
	for (int i = 0; i < n; i++) {
		wait_state(key, id, "idle", IDLE_AFTER_S * 1000 - 100, 10000);
		idle[i] = execute(key, id, "true");
	}
	delete_session(key, id, NULL);
	free(id);
	struct stats a = summarise("execute \"true\", active session", active, active_n);
	struct stats b = summarise("execute \"true\", idle (frozen) session", idle, n);
	stats_print_row(&table, &a, NULL);
	stats_print_row(&table, &b, NULL);
	char note[128];
	double d50 = b.p50 - a.p50;
	snprintf(note, sizeof(note), "wake from idle p50 %.2f ms (target <= %.0f ms: %s)", d50,
		 TARGET_IDLE_WAKE_MS, d50 <= TARGET_IDLE_WAKE_MS ? "met" : "MISSED");
	/* Of medians only: the p99s of two distributions do not subtract. */
	printf("%-46s %5s %10.2f %10s %10s  %s\n", "  difference of p50s (idle - active)", "", d50,
	       "", "", note);
	free(active);
	free(idle);
}

struct workload {
	const char *name;
	int64_t total; /* bytes */
	int n_small;   /* text files of small_size bytes */
	int small_size;
	int n_large; /* the rest, in equal files: even ones random, odd text */
	const char *limits;
	int reps;
};

/* Fills /workspace with the workload: python3, for speed over 1 GB. */
static void populate(const char *key, const char *id, const struct workload *w)
{
	int64_t large = (w->total - (int64_t)w->n_small * w->small_size) / w->n_large;
	char cmd[2048];
	snprintf(cmd, sizeof(cmd),
		 "cd /workspace && python3 - %d %d %d %lld <<'EOF'\n"
		 "import os, sys\n"
		 "n_small, small, n_large, large = map(int, sys.argv[1:5])\n"
		 "for i in range(n_small):\n"
		 "    d = 'src/pkg%%d' %% (i // 100)\n"
		 "    os.makedirs(d, exist_ok=True)\n"
		 "    with open('%%s/mod%%d.txt' %% (d, i), 'w') as f:\n"
		 "        f.write(os.urandom(small // 2).hex())\n"
		 "os.makedirs('data', exist_ok=True)\n"
		 "for i in range(n_large):\n"
		 "    with open('data/blob%%d.bin' %% i, 'wb') as f:\n"
		 "        left, k = large, 0\n"
		 "        while left > 0:\n"
		 "            n = min(left, 1 << 20)\n"
		 "            if i %% 2 == 0:\n"
		 "                f.write(os.urandom(n))\n"
		 "            else:\n"
		 "                lines = b''.join(b'%%010d %%06d log line of a text file\\n' %% "
		 "(k, j)\n"
		 "                                 for j in range(n // 40 + 1))\n"
		 "                f.write(lines[:n])\n"
		 "            left -= n\n"
		 "            k += 1\n"
		 "EOF\n"
		 "du -sb /workspace | cut -f1",
		 w->n_small, w->small_size, w->n_large, (long long)large);
	execute(key, id, cmd);
}

static void bench_deep_sleep(const char *key, const struct workload *w, double *wake_p50)
{
	char body[256];
	snprintf(body, sizeof(body), "{\"resourceLimits\":%s}", w->limits);
	char *id = create_session(key, body, NULL);
	double t0 = now_ms();
	populate(key, id, w);
	double fill_ms = now_ms() - t0;
	/* Awake, just written. */
	int64_t awake_disk;
	int awake_mounts = session_mounts(id, &awake_disk);
	int awake_procs = session_procs(id);
	int64_t awake_mem = session_memory(id);

	double *save = calloc((size_t)w->reps, sizeof(double));
	double *wake = calloc((size_t)w->reps, sizeof(double));
	double *wake_log = calloc((size_t)w->reps, sizeof(double));
	double *ratio = calloc((size_t)w->reps, sizeof(double));
	int64_t files = 0, in = 0, out = 0;
	int asleep_procs = -1, asleep_mounts = -1;
	int64_t asleep_mem = 0, asleep_disk = 0, snap_bytes = 0;
	/* An image, or a tar (a tree an image cannot hold, or a daemon
	 * with checkpoints). */
	char snap[256], tar[256];
	snprintf(snap, sizeof(snap), "%s/snapshots/%s.erofs", data_dir, id);
	snprintf(tar, sizeof(tar), "%s/snapshots/%s.tar.zst", data_dir, id);
	for (int i = 0; i < w->reps; i++) {
		int before = log_sleep_count(id, " in deep sleep: ");
		wait_state(key, id, "deep-sleep", DEEP_AFTER_S * 1000 - 100, 300000);
		/* The state is written before the save: wait for its log line. */
		double deadline = now_ms() + 600000;
		while (log_sleep_count(id, " in deep sleep: ") == before && now_ms() < deadline)
			sleep_ms(20);
		if (!log_sleep(id, &files, &in, &out, &save[i]))
			die("no 'in deep sleep' line in the log");
		ratio[i] = in > 0 ? (double)out / (double)in : 0;
		asleep_procs = session_procs(id);
		asleep_mounts = session_mounts(id, &asleep_disk);
		asleep_mem = session_memory(id);
		snap_bytes = access(snap, F_OK) == 0 ? file_size(snap) : file_size(tar);
		int woke = log_sleep_count(id, " woke from deep sleep in ");
		wake[i] = execute(key, id, "true");
		if (log_sleep_count(id, " woke from deep sleep in ") != woke + 1 ||
		    !log_wake(id, &wake_log[i]))
			die("no 'woke from deep sleep' line in the log");
	}
	delete_session(key, id, NULL);
	free(id);

	char name[3][96];
	snprintf(name[0], sizeof(name[0]), "%s: save (log)", w->name);
	snprintf(name[1], sizeof(name[1]), "%s: wake, execute \"true\" (client)", w->name);
	snprintf(name[2], sizeof(name[2]), "%s: wake (log)", w->name);
	struct stats s_save = summarise(name[0], save, w->reps);
	struct stats s_wake = summarise(name[1], wake, w->reps);
	struct stats s_wlog = summarise(name[2], wake_log, w->reps);
	struct stats s_ratio = summarise("ratio", ratio, w->reps);
	printf("%s: %lld files, %.1f MB of content, filled in %.1f s; snapshot %.1f MB "
	       "(ratio %.3f)\n",
	       w->name, (long long)files, (double)in / 1e6, fill_ms / 1000, (double)out / 1e6,
	       s_ratio.p50);
	printf("  awake:  %d process(es), memory cgroup %.1f MB, %d mounts holding %.1f MB\n",
	       awake_procs, (double)awake_mem / 1e6, awake_mounts, (double)awake_disk / 1e6);
	printf("  asleep: %d process(es), memory cgroup %s, %d mounts holding %.1f MB; "
	       "snapshot file %.1f MB\n",
	       asleep_procs, asleep_mem < 0 ? "gone" : "STILL THERE", asleep_mounts,
	       (double)asleep_disk / 1e6, (double)snap_bytes / 1e6);
	stats_print_row(&table, &s_save, NULL);
	stats_print_row(&table, &s_wake, NULL);
	stats_print_row(&table, &s_wlog, NULL);
	if (wake_p50 != NULL)
		*wake_p50 = s_wake.p50;
	free(save);
	free(wake);
	free(wake_log);
	free(ratio);
}

static void bench_many(const char *key, int n)
{
	char **ids = calloc((size_t)n, sizeof(char *));
	int64_t rss0 = daemon_rss();
	double t0 = now_ms();
	for (int i = 0; i < n; i++) {
		ids[i] = create_session(key, NULL, NULL);
		char body[512];
		snprintf(body, sizeof(body),
			 "{\"sessionId\":\"%s\",\"path\":\"app/main.js\",\"content\":"
			 "\"console.log('session %d of a thousand: a small workspace');\\n\"}",
			 ids[i], i);
		if (http("POST", "/files/write", key, body, NULL, NULL) != 200)
			die("files/write failed");
	}
	double created_ms = now_ms() - t0;
	int64_t rss_peak = daemon_rss();
	/* All asleep: count states over the list, a page at a time. */
	int asleep = 0;
	double deadline = now_ms() + 1200000;
	while (now_ms() < deadline) {
		asleep = 0;
		for (int off = 0; off < n; off += 100) {
			char path[128];
			snprintf(path, sizeof(path), "/sessions?limit=100&offset=%d", off);
			json_t *j = NULL;
			if (http("GET", path, key, NULL, &j, NULL) != 200)
				die("list failed");
			json_t *arr = json_object_get(j, "sessions");
			for (size_t k = 0; k < json_array_size(arr); k++) {
				const char *st = json_string_value(
				    json_object_get(json_array_get(arr, k), "state"));
				asleep += st != NULL && strcmp(st, "deep-sleep") == 0;
			}
			json_decref(j);
		}
		if (asleep == n)
			break;
		sleep_ms(1000);
	}
	double all_asleep_ms = now_ms() - t0;
	/* Snapshot bytes, once every save has reached the disk. */
	int64_t snap_total = 0;
	int snaps = 0;
	char dir[128];
	snprintf(dir, sizeof(dir), "%s/snapshots", data_dir);
	DIR *dp = opendir(dir);
	struct dirent *de;
	while (dp != NULL && (de = readdir(dp)) != NULL) {
		if (strstr(de->d_name, ".tar.zst") == NULL &&
		    (strstr(de->d_name, ".erofs") == NULL || strstr(de->d_name, ".layer.") != NULL))
			continue;
		char p[512];
		snprintf(p, sizeof(p), "%s/%s", dir, de->d_name);
		snap_total += file_size(p);
		snaps++;
	}
	if (dp != NULL)
		closedir(dp);
	int below, strays;
	daemon_processes(&below, &strays);
	int mounts = data_dir_mounts(false), session_mounts_n = 0;
	for (int i = 0; i < n; i++) {
		int64_t unused;
		session_mounts_n += session_mounts(ids[i], &unused);
	}
	int64_t rss = daemon_rss();
	printf("%d sessions with a small workspace: created and written in %.1f s, "
	       "all in deep sleep %.1f s after the first\n",
	       n, created_ms / 1000, all_asleep_ms / 1000);
	printf("  asleep: %d of %d; %d snapshots, %.2f MB on disk (%.0f bytes each)\n", asleep, n,
	       snaps, (double)snap_total / 1e6, snaps ? (double)snap_total / snaps : 0.0);
	printf("  processes: bunkerd and %d below it (warm pool sandboxes), %d elsewhere naming "
	       "its data directory\n",
	       below - 1, strays);
	printf("  mounts: %d of the %d sessions', %d under the data directory in all (its run "
	       "directory and the warm pool's)\n",
	       session_mounts_n, n, mounts);
	printf("  bunkerd RSS: %.1f MB before, %.1f MB after creating, %.1f MB with all "
	       "asleep\n",
	       (double)rss0 / 1e6, (double)rss_peak / 1e6, (double)rss / 1e6);
	for (int i = 0; i < n; i++)
		free(ids[i]);
	free(ids);
}

int main(int argc, char **argv)
{
	bench_init(argc, argv);
	int idle_n = env_int("BENCH_IDLE_N", 30, 1, 10000);
	int reps_small = env_int("BENCH_REPS_SMALL", 10, 1, 1000);
	int reps_large = env_int("BENCH_REPS_LARGE", 5, 1, 1000);
	int sessions = env_int("BENCH_SESSIONS", 1000, 0, 1000);
	bool skip_1g = env_int("BENCH_SKIP_1G", 0, 0, 1) == 1;
	const char *const daemon_args[] = {"--idle-after", "1", "--deep-sleep-after", "2", NULL};
	/* Filling a 1 GB workspace takes minutes; a clean stop puts every
	 * session to deep sleep first. */
	start_daemon(daemon_args, 600, 120);
	printf("bunkerd %s, --idle-after %d --deep-sleep-after %d, cgroup %s, %ld cpus\n", build,
	       IDLE_AFTER_S, DEEP_AFTER_S, cgroup_v2() ? "v2" : "v1",
	       sysconf(_SC_NPROCESSORS_ONLN));

	char key[256];
	printf("\n== wake from idle ==\n");
	stats_print_header(&table);
	key_create("paid", key, sizeof(key));
	bench_idle(key, idle_n);

	/* Each on a key of its own: no phase meets another's rate limit. */
	const struct workload loads[] = {
	    {"1 MB", 1 << 20, 100, 4096, 2, "{\"cpu\":1}", reps_small},
	    {"100 MB", 100 << 20, 2000, 4096, 6, "{\"cpu\":1}", reps_large},
	    {"1 GB", 1 << 30, 5000, 4096, 16, "{\"cpu\":1,\"memory\":4096,\"disk\":5120}",
	     reps_large},
	};
	double wake_p50[3] = {-1, -1, -1};
	for (size_t i = 0; i < sizeof(loads) / sizeof(loads[0]); i++) {
		if (skip_1g && loads[i].total >= (1 << 30))
			continue;
		printf("\n== deep sleep, %s workspace ==\n", loads[i].name);
		stats_print_header(&table);
		key_create("paid", key, sizeof(key));
		bench_deep_sleep(key, &loads[i], &wake_p50[i]);
	}
	if (wake_p50[1] >= 0)
		printf("\nwake from deep sleep, 100 MB, p50 %.1f ms (target <= %.0f ms: %s)\n",
		       wake_p50[1], TARGET_DEEP_WAKE_100MB_MS,
		       wake_p50[1] <= TARGET_DEEP_WAKE_100MB_MS ? "met" : "MISSED");
	if (wake_p50[2] >= 0 && wake_p50[0] > 0) {
		double r = wake_p50[2] / wake_p50[0];
		bool met =
		    wake_p50[2] <= TARGET_DEEP_WAKE_1GB_MS && r <= TARGET_DEEP_WAKE_1GB_OVER_1MB;
		printf("wake from deep sleep, 1 GB, p50 %.1f ms, %.2fx the 1 MB wake's %.1f ms "
		       "(target <= %.0f ms and <= %.0fx: %s)\n",
		       wake_p50[2], r, wake_p50[0], TARGET_DEEP_WAKE_1GB_MS,
		       TARGET_DEEP_WAKE_1GB_OVER_1MB, met ? "met" : "MISSED");
	}

	if (sessions > 0) {
		printf("\n== %d sessions in deep sleep ==\n", sessions);
		key_create("enterprise", key, sizeof(key));
		bench_many(key, sessions);
	}
	if (rate_limited > 0)
		printf("(%d answers were 429 and were retried outside the timing)\n", rate_limited);

	bench_cleanup();
	return 0;
}
