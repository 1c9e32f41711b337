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
 * median to bare Bun's. Self-contained (no tests/client.c): the Makefile
 * builds this file alone.
 */
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <jansson.h>
#include <libgen.h>
#include <limits.h>
#include <math.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define BATCH 50 /* sessions alive at once in the create/delete phase */
#define BUN_PATH "/opt/bunker/bun/bin/bun"

extern char **environ;

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
		curl_easy_setopt(curl, CURLOPT_TIMEOUT, 120L);
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
			/* Over the key's requests per minute: poll once a second
			 * rather than trust Retry-After, untimed. */
			rate_limited++;
			free(b.p);
			sleep(1);
			continue;
		}
		if (ms != NULL)
			*ms = t;
		if (json != NULL)
			*json = b.p ? json_loads(b.p, 0, NULL) : NULL;
		if (status != 200 && b.p != NULL)
			fprintf(stderr, "bench: %s %s: HTTP %ld %.300s\n", method, path, status, b.p);
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
	char *argv[] = {bunkerd, "--listen", "127.0.0.1", "--port", port_s, "--data-dir", data_dir,
			NULL};
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

/* Detaches what the daemon left mounted under its data directory (its run
 * directory and live sessions' disks stay mounted across a restart, by
 * design), then removes it. Nothing is removed while a mount remains: a
 * bind mount of a host directory is on the same file system, so FTW_MOUNT
 * alone would not keep nftw out of it. */
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
		double deadline = now_ms() + 10000;
		int st;
		pid_t r;
		while ((r = waitpid(daemon_pid, &st, WNOHANG)) == 0 && now_ms() < deadline)
			usleep(20000);
		if (r == 0) {
			fprintf(stderr, "bench: bunkerd ignored SIGTERM for 10 s; SIGKILL\n");
			kill(daemon_pid, SIGKILL);
			waitpid(daemon_pid, &st, 0);
		}
		daemon_pid = 0;
	}
	if (data_dir[0] != '\0')
		remove_data_dir();
}

static void key_create(char *out, size_t len)
{
	char cli[PATH_MAX + 16];
	snprintf(cli, sizeof(cli), "%s/bunker", build);
	int p[2];
	if (pipe2(p, O_CLOEXEC) < 0)
		die("pipe failed");
	char *argv[] = {cli, "--data-dir", data_dir, "keys", "create", "--plan", "paid", NULL};
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
		die("'bunker keys create --plan paid' failed");
	snprintf(out, len, "%s", buf);
}

/* ---- measurements ---- */

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

static char *create_session(const char *key, const char *body, double *ms)
{
	json_t *j = NULL;
	if (http("POST", "/sessions/create", key, body, &j, ms) != 200)
		die("create failed");
	const char *id = json_string_value(json_object_get(j, "sessionId"));
	if (id == NULL)
		die("create answered no sessionId");
	char *copy = strdup(id);
	json_decref(j);
	return copy;
}

static void delete_session(const char *key, const char *id, double *ms)
{
	char path[128];
	snprintf(path, sizeof(path), "/sessions/%s", id);
	if (http("DELETE", path, key, NULL, NULL, ms) != 200)
		die("delete failed");
}

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

static void print_row(const struct stats *s)
{
	if (s->ok)
		printf("%-44s %6d %10.2f %10.2f %10.2f\n", s->name, s->n, s->p50, s->p99, s->mean);
	else
		printf("%-44s %6s %10s %10s %10s\n", s->name, "-", "n/a", "n/a", "n/a");
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
	int n = 200;
	const char *env_n = getenv("BENCH_N");
	if (env_n != NULL && *env_n != '\0') {
		n = atoi(env_n);
		if (n < 1 || n > 100000) {
			fprintf(stderr, "bench: BENCH_N must be 1..100000\n");
			return 1;
		}
	}
	if (geteuid() != 0) {
		fprintf(stderr, "bench: bunkerd must run as root\n");
		return 1;
	}
	signal(SIGPIPE, SIG_IGN);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	curl = curl_easy_init();
	start_daemon();
	printf("bunkerd %s, N=%d\n", build, n);

	double *create_ms = calloc((size_t)n, sizeof(double));
	double *delete_ms = calloc((size_t)n, sizeof(double));
	double *cmd_ms = calloc((size_t)n, sizeof(double));
	double *js_ms = calloc((size_t)n, sizeof(double));
	double *ns_ms = calloc((size_t)n, sizeof(double));
	double *bun_ms = calloc((size_t)n, sizeof(double));

	char key1[256], key2[256], key3[256];
	key_create(key1, sizeof(key1));
	key_create(key2, sizeof(key2));
	key_create(key3, sizeof(key3));

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

	stop_daemon();

	char *unshare_argv[] = {"/usr/bin/unshare", "--fork", "--pid",         "--mount",
				"--net",            "--user", "--map-root-user", "/bin/true",
				NULL};
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
	printf("\n%-44s %6s %10s %10s %10s\n", "operation", "n", "p50 ms", "p99 ms", "mean ms");
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
		print_row(&rows[i]);
	if (rows[3].ok && rows[5].ok && rows[5].p50 > 0)
		printf("\nJS execute p50 / bare bun p50: %.2fx (%.2f ms over bare bun)\n",
		       rows[3].p50 / rows[5].p50, rows[3].p50 - rows[5].p50);
	if (rate_limited > 0)
		printf("(%d answers were 429 and were retried outside the timing)\n", rate_limited);

	free(create_ms);
	free(delete_ms);
	free(cmd_ms);
	free(js_ms);
	free(ns_ms);
	free(bun_ms);
	curl_easy_cleanup(curl);
	curl_global_cleanup();
	nftw(log_dir, rm_cb, 8, FTW_DEPTH | FTW_PHYS);
	return 0;
}
