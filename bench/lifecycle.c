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
 * Self-contained (the Makefile builds this file alone); the HTTP and daemon
 * helpers follow bench/bench.c.
 */
#include <curl/curl.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <glob.h>
#include <jansson.h>
#include <libgen.h>
#include <limits.h>
#include <math.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define IDLE_AFTER_S 1
#define DEEP_AFTER_S 2
#define TARGET_IDLE_WAKE_MS 2.0
#define TARGET_DEEP_WAKE_100MB_MS 500.0

static char build[PATH_MAX], data_dir[64], log_dir[64], log_path[128], base_url[64];
static pid_t daemon_pid;
static CURL *curl;
static int rate_limited; /* 429s waited out (not timed) */

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void sleep_ms(double ms)
{
	struct timespec ts = {(time_t)(ms / 1000), (long)fmod(ms, 1000.0) * 1000000L};
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static void die(const char *what) __attribute__((noreturn));

static void stop_daemon(void);

static void die(const char *what)
{
	fprintf(stderr, "bench: %s\n", what);
	stop_daemon();
	if (log_path[0] != '\0')
		fprintf(stderr, "bench: bunkerd log kept: %s\n", log_path);
	exit(1);
}

static int env_int(const char *name, int def, int min, int max)
{
	const char *v = getenv(name);
	if (v == NULL || *v == '\0')
		return def;
	int n = atoi(v);
	if (n < min || n > max) {
		fprintf(stderr, "bench: %s must be %d..%d\n", name, min, max);
		exit(1);
	}
	return n;
}

/* ---- HTTP ---- */

struct buf {
	char *p;
	size_t len;
};

static size_t on_data(char *d, size_t size, size_t n, void *arg)
{
	struct buf *b = arg;
	char *p = realloc(b->p, b->len + size * n + 1);
	if (p == NULL)
		return 0;
	memcpy(p + b->len, d, size * n);
	b->p = p;
	b->len += size * n;
	p[b->len] = '\0';
	return size * n;
}

/* One request; returns the status (0 on a transport error), the body parsed
 * into *json when asked (new reference), and its duration in *ms. Waits out
 * a 429 and repeats, outside the timing. */
static long http(const char *method, const char *path, const char *key, const char *body,
		 json_t **json, double *ms)
{
	for (;;) {
		char url[512], auth[512];
		snprintf(url, sizeof(url), "%s%s", base_url, path);
		struct curl_slist *h = NULL;
		if (key != NULL) {
			snprintf(auth, sizeof(auth), "Authorization: Bearer %s", key);
			h = curl_slist_append(h, auth);
		}
		h = curl_slist_append(h, "Content-Type: application/json");
		h = curl_slist_append(h, "Expect:");
		struct buf b = {0};
		curl_easy_reset(curl);
		curl_easy_setopt(curl, CURLOPT_URL, url);
		curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
		curl_easy_setopt(curl, CURLOPT_TIMEOUT, 600L);
		curl_easy_setopt(curl, CURLOPT_HTTPHEADER, h);
		curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_data);
		curl_easy_setopt(curl, CURLOPT_WRITEDATA, &b);
		curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method);
		if (body != NULL)
			curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body);
		double t0 = now_ms();
		CURLcode rc = curl_easy_perform(curl);
		double t = now_ms() - t0;
		long status = 0;
		if (rc == CURLE_OK)
			curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
		curl_slist_free_all(h);
		if (status == 429) {
			rate_limited++;
			free(b.p);
			sleep(1);
			continue;
		}
		if (ms != NULL)
			*ms = t;
		if (json != NULL)
			*json = b.p ? json_loads(b.p, 0, NULL) : NULL;
		if (status != 200)
			fprintf(stderr, "bench: %s %s: HTTP %ld %.300s\n", method, path, status,
				b.p ? b.p : curl_easy_strerror(rc));
		free(b.p);
		return status;
	}
}

/* ---- the daemon ---- */

static int free_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET};
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	socklen_t sl = sizeof(sa);
	int port = -1;
	if (fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&sa, &sl) == 0)
		port = ntohs(sa.sin_port);
	if (fd >= 0)
		close(fd);
	return port;
}

/* Forks argv with stderr (and stdout unless out_fd >= 0) into the log. */
static pid_t spawn_logged(char *const argv[], int out_fd)
{
	int log_fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (log_fd < 0)
		die("cannot open the log");
	pid_t parent = getpid();
	pid_t pid = fork();
	if (pid == 0) {
		int null_fd = open("/dev/null", O_RDONLY);
		dup2(null_fd, 0);
		dup2(out_fd >= 0 ? out_fd : log_fd, 1);
		dup2(log_fd, 2);
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		if (getppid() != parent)
			_exit(127);
		setpgid(0, 0);
		execv(argv[0], argv);
		_exit(127);
	}
	close(log_fd);
	return pid;
}

static void start_daemon(void)
{
	snprintf(data_dir, sizeof(data_dir), "/tmp/bk-bench-data-XXXXXX");
	snprintf(log_dir, sizeof(log_dir), "/tmp/bk-bench-log-XXXXXX");
	if (mkdtemp(data_dir) == NULL || mkdtemp(log_dir) == NULL)
		die("mkdtemp failed");
	snprintf(log_path, sizeof(log_path), "%s/bunkerd.log", log_dir);
	char bunkerd[PATH_MAX + 16], port_s[16];
	snprintf(bunkerd, sizeof(bunkerd), "%s/bunkerd", build);
	if (access(bunkerd, X_OK) != 0) {
		fprintf(stderr, "bench: no bunkerd at '%s'\n", bunkerd);
		exit(1);
	}
	int port = free_port();
	if (port <= 0)
		die("no free port");
	snprintf(port_s, sizeof(port_s), "%d", port);
	snprintf(base_url, sizeof(base_url), "http://127.0.0.1:%d", port);
	char *argv[] = {bunkerd, "--listen",	       "127.0.0.1", "--port",
			port_s,	 "--data-dir",	       data_dir,    "--idle-after",
			"1",	 "--deep-sleep-after", "2",	    NULL};
	daemon_pid = spawn_logged(argv, -1);
	double deadline = now_ms() + 30000;
	while (now_ms() < deadline) {
		int st;
		if (waitpid(daemon_pid, &st, WNOHANG) == daemon_pid) {
			daemon_pid = 0;
			die("bunkerd exited at start-up");
		}
		char url[128];
		snprintf(url, sizeof(url), "%s/healthz", base_url);
		curl_easy_reset(curl);
		curl_easy_setopt(curl, CURLOPT_URL, url);
		curl_easy_setopt(curl, CURLOPT_TIMEOUT, 2L);
		curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
		curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_data);
		struct buf b = {0};
		curl_easy_setopt(curl, CURLOPT_WRITEDATA, &b);
		long status = 0;
		if (curl_easy_perform(curl) == CURLE_OK)
			curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
		free(b.p);
		if (status == 200)
			return;
		usleep(50000);
	}
	die("bunkerd not healthy after 30 s");
}

static int rm_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	remove(path);
	return 0;
}

/* Mount points under data_dir; with detach, detaches each (MNT_DETACH of a
 * parent takes its children along). */
static int data_dir_mounts(bool detach)
{
	FILE *mi = fopen("/proc/self/mountinfo", "re");
	if (mi == NULL)
		return -1;
	char line[4096], mnt[4096];
	size_t dl = strlen(data_dir);
	int n = 0;
	while (fgets(line, sizeof(line), mi) != NULL) {
		if (sscanf(line, "%*s %*s %*s %*s %4095s", mnt) == 1 &&
		    strncmp(mnt, data_dir, dl) == 0 && (mnt[dl] == '/' || mnt[dl] == '\0')) {
			n++;
			if (detach)
				umount2(mnt, MNT_DETACH);
		}
	}
	fclose(mi);
	return n;
}

/* Detaches what the daemon left mounted under its data directory, then
 * removes it (see bench/bench.c). */
static void remove_data_dir(void)
{
	data_dir_mounts(true);
	if (data_dir_mounts(false) != 0) {
		fprintf(stderr, "bench: not removing '%s': mounts remain under it\n", data_dir);
		return;
	}
	nftw(data_dir, rm_cb, 32, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
}

static void stop_daemon(void)
{
	if (daemon_pid > 0) {
		kill(daemon_pid, SIGTERM);
		/* A clean stop puts every session to deep sleep first. */
		double deadline = now_ms() + 120000;
		int st;
		pid_t r;
		while ((r = waitpid(daemon_pid, &st, WNOHANG)) == 0 && now_ms() < deadline)
			usleep(20000);
		if (r == 0) {
			fprintf(stderr, "bench: bunkerd ignored SIGTERM for 120 s; SIGKILL\n");
			kill(daemon_pid, SIGKILL);
			waitpid(daemon_pid, &st, 0);
		}
		daemon_pid = 0;
	}
	if (data_dir[0] != '\0')
		remove_data_dir();
}

static void key_create(const char *plan, char *out, size_t len)
{
	char cli[PATH_MAX + 16], plan_s[32];
	snprintf(cli, sizeof(cli), "%s/bunker", build);
	snprintf(plan_s, sizeof(plan_s), "%s", plan);
	int p[2];
	if (pipe2(p, O_CLOEXEC) < 0)
		die("pipe failed");
	char *argv[] = {cli, "--data-dir", data_dir, "keys", "create", "--plan", plan_s, NULL};
	pid_t pid = spawn_logged(argv, p[1]);
	close(p[1]);
	char buf[512];
	size_t n = 0;
	ssize_t r;
	while (n < sizeof(buf) - 1 && (r = read(p[0], buf + n, sizeof(buf) - 1 - n)) > 0)
		n += (size_t)r;
	close(p[0]);
	buf[n] = '\0';
	int st;
	waitpid(pid, &st, 0);
	buf[strcspn(buf, "\r\n")] = '\0';
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0 || strncmp(buf, "bk_", 3) != 0 ||
	    strlen(buf) >= len)
		die("'bunker keys create' failed");
	snprintf(out, len, "%s", buf);
}

/* ---- statistics ---- */

struct stats {
	const char *name;
	int n;
	double p50, p99, mean;
	bool ok;
};

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static struct stats summarise(const char *name, double *v, int n)
{
	struct stats s = {.name = name, .n = n, .ok = n > 0};
	if (n == 0)
		return s;
	qsort(v, (size_t)n, sizeof(double), cmp_double);
	s.p50 = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
	int r99 = (int)ceil(0.99 * n) - 1; /* nearest rank */
	s.p99 = v[r99 < 0 ? 0 : r99];
	double sum = 0;
	for (int i = 0; i < n; i++)
		sum += v[i];
	s.mean = sum / n;
	return s;
}

static void print_header(void)
{
	printf("%-46s %5s %10s %10s %10s\n", "operation", "n", "p50 ms", "p99 ms", "mean ms");
}

static void print_row(const struct stats *s, const char *note)
{
	if (s->ok)
		printf("%-46s %5d %10.2f %10.2f %10.2f%s%s\n", s->name, s->n, s->p50, s->p99,
		       s->mean, note ? "  " : "", note ? note : "");
	else
		printf("%-46s %5s %10s %10s %10s\n", s->name, "-", "n/a", "n/a", "n/a");
}

/* ---- sessions ---- */

static char *create_session(const char *key, const char *body)
{
	json_t *j = NULL;
	if (http("POST", "/sessions/create", key, body, &j, NULL) != 200)
		die("create failed");
	const char *id = json_string_value(json_object_get(j, "sessionId"));
	if (id == NULL)
		die("create answered no sessionId");
	char *copy = strdup(id);
	json_decref(j);
	return copy;
}

static void delete_session(const char *key, const char *id)
{
	char path[128];
	snprintf(path, sizeof(path), "/sessions/%s", id);
	if (http("DELETE", path, key, NULL, NULL, NULL) != 200)
		die("delete failed");
}

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

static char *slurp(const char *path, size_t *len_out)
{
	FILE *f = fopen(path, "re");
	if (f == NULL)
		return NULL;
	size_t cap = 8192, len = 0, n;
	char *buf = malloc(cap);
	while (buf != NULL && (n = fread(buf + len, 1, cap - len - 1, f)) > 0) {
		len += n;
		if (cap - len < 4096) {
			char *p = realloc(buf, cap * 2);
			if (p == NULL) {
				free(buf);
				buf = NULL;
				break;
			}
			buf = p;
			cap *= 2;
		}
	}
	fclose(f);
	if (buf != NULL)
		buf[len] = '\0';
	if (len_out != NULL)
		*len_out = len;
	return buf;
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
		char *text = slurp(path, NULL);
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
		char *text = slurp(g.gl_pathv[0], NULL);
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
	char *text = slurp(path, NULL);
	const char *p = text ? strstr(text, "VmRSS:") : NULL;
	int64_t kb = p ? strtoll(p + 6, NULL, 10) : -1;
	free(text);
	return kb * 1024;
}

static pid_t proc_ppid(long pid)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
	char *text = slurp(path, NULL);
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
		char *text = slurp(path, &len);
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
	char *id = create_session(key, "{\"resourceLimits\":{\"cpu\":1}}");
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
	delete_session(key, id);
	free(id);
	struct stats a = summarise("execute \"true\", active session", active, active_n);
	struct stats b = summarise("execute \"true\", idle (frozen) session", idle, n);
	print_row(&a, NULL);
	print_row(&b, NULL);
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
	char *id = create_session(key, body);
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
	char snap[256];
	snprintf(snap, sizeof(snap), "%s/snapshots/%s.tar.zst", data_dir, id);
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
		snap_bytes = file_size(snap);
		int woke = log_sleep_count(id, " woke from deep sleep in ");
		wake[i] = execute(key, id, "true");
		if (log_sleep_count(id, " woke from deep sleep in ") != woke + 1 ||
		    !log_wake(id, &wake_log[i]))
			die("no 'woke from deep sleep' line in the log");
	}
	delete_session(key, id);
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
	print_row(&s_save, NULL);
	print_row(&s_wake, NULL);
	print_row(&s_wlog, NULL);
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
		ids[i] = create_session(key, NULL);
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
		if (strstr(de->d_name, ".tar.zst") == NULL)
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
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc > 1) {
		if (realpath(argv[1], build) == NULL) {
			fprintf(stderr, "bench: '%s': %s\n", argv[1], strerror(errno));
			return 1;
		}
	} else {
		char exe[PATH_MAX];
		ssize_t l = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
		if (l < 0)
			return 1;
		exe[l] = '\0';
		snprintf(build, sizeof(build), "%s", dirname(dirname(exe)));
	}
	int idle_n = env_int("BENCH_IDLE_N", 30, 1, 10000);
	int reps_small = env_int("BENCH_REPS_SMALL", 10, 1, 1000);
	int reps_large = env_int("BENCH_REPS_LARGE", 5, 1, 1000);
	int sessions = env_int("BENCH_SESSIONS", 1000, 0, 1000);
	bool skip_1g = env_int("BENCH_SKIP_1G", 0, 0, 1) == 1;
	if (geteuid() != 0) {
		fprintf(stderr, "bench: bunkerd must run as root\n");
		return 1;
	}
	signal(SIGPIPE, SIG_IGN);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	curl = curl_easy_init();
	start_daemon();
	printf("bunkerd %s, --idle-after %d --deep-sleep-after %d, cgroup %s, %ld cpus\n", build,
	       IDLE_AFTER_S, DEEP_AFTER_S, cgroup_v2() ? "v2" : "v1",
	       sysconf(_SC_NPROCESSORS_ONLN));

	char key[256];
	printf("\n== wake from idle ==\n");
	print_header();
	key_create("paid", key, sizeof(key));
	bench_idle(key, idle_n);

	/* Each on a key of its own: no phase meets another's rate limit. */
	const struct workload loads[] = {
	    {"1 MB", 1 << 20, 100, 4096, 2, "{\"cpu\":1}", reps_small},
	    {"100 MB", 100 << 20, 2000, 4096, 6, "{\"cpu\":1}", reps_large},
	    {"1 GB", 1 << 30, 5000, 4096, 16, "{\"cpu\":1,\"memory\":4096,\"disk\":5120}",
	     reps_large},
	};
	double wake_100mb = -1;
	for (size_t i = 0; i < sizeof(loads) / sizeof(loads[0]); i++) {
		if (skip_1g && loads[i].total >= (1 << 30))
			continue;
		printf("\n== deep sleep, %s workspace ==\n", loads[i].name);
		print_header();
		key_create("paid", key, sizeof(key));
		bench_deep_sleep(key, &loads[i], i == 1 ? &wake_100mb : NULL);
	}
	if (wake_100mb >= 0)
		printf("\nwake from deep sleep, 100 MB, p50 %.1f ms (target <= %.0f ms: %s)\n",
		       wake_100mb, TARGET_DEEP_WAKE_100MB_MS,
		       wake_100mb <= TARGET_DEEP_WAKE_100MB_MS ? "met" : "MISSED");

	if (sessions > 0) {
		printf("\n== %d sessions in deep sleep ==\n", sessions);
		key_create("enterprise", key, sizeof(key));
		bench_many(key, sessions);
	}
	if (rate_limited > 0)
		printf("(%d answers were 429 and were retried outside the timing)\n", rate_limited);

	stop_daemon();
	curl_easy_cleanup(curl);
	curl_global_cleanup();
	nftw(log_dir, rm_cb, 8, FTW_DEPTH | FTW_PHYS);
	return 0;
}
