/* The benchmarks' daemon, HTTP and statistics helpers: see common.h. */
#include "common.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <libgen.h>
#include <math.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

char build[PATH_MAX], data_dir[64], log_path[128];
pid_t daemon_pid;
int daemon_port;
int rate_limited;

static char log_dir[64], base_url[64];
static CURL *curl;
static long request_timeout = 120, stop_timeout = 10; /* seconds */

double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

void sleep_ms(double ms)
{
	struct timespec ts = {(time_t)(ms / 1000), (long)fmod(ms, 1000.0) * 1000000L};
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

void die(const char *what)
{
	fprintf(stderr, "bench: %s\n", what);
	stop_daemon();
	if (log_path[0] != '\0')
		fprintf(stderr, "bench: bunkerd log kept: %s\n", log_path);
	exit(1);
}

void bench_init(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc > 1) {
		if (realpath(argv[1], build) == NULL) {
			fprintf(stderr, "bench: '%s': %s\n", argv[1], strerror(errno));
			exit(1);
		}
		return;
	}
	char exe[PATH_MAX];
	ssize_t l = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (l < 0)
		exit(1);
	exe[l] = '\0';
	snprintf(build, sizeof(build), "%s", dirname(dirname(exe)));
}

int env_int(const char *name, int def, int min, int max)
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

bool http_fresh_connection;

long http(const char *method, const char *path, const char *key, const char *body, json_t **json,
	  double *ms)
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
		curl_easy_setopt(curl, CURLOPT_TIMEOUT, request_timeout);
		curl_easy_setopt(curl, CURLOPT_HTTPHEADER, h);
		curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_data);
		curl_easy_setopt(curl, CURLOPT_WRITEDATA, &b);
		curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method);
		if (http_fresh_connection) {
			curl_easy_setopt(curl, CURLOPT_FRESH_CONNECT, 1L);
			curl_easy_setopt(curl, CURLOPT_FORBID_REUSE, 1L);
		}
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

static bool healthy(void)
{
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
	return status == 200;
}

void start_daemon(const char *const extra_args[], long request_timeout_s, long stop_timeout_s)
{
	if (geteuid() != 0) {
		fprintf(stderr, "bench: bunkerd must run as root\n");
		exit(1);
	}
	signal(SIGPIPE, SIG_IGN);
	/* A program may start a daemon again after stop_daemon(): one curl
	 * handle and one log for all of them. */
	if (curl == NULL) {
		curl_global_init(CURL_GLOBAL_DEFAULT);
		curl = curl_easy_init();
	}
	if (curl == NULL) {
		fprintf(stderr, "bench: cannot start libcurl\n");
		exit(1);
	}
	request_timeout = request_timeout_s;
	stop_timeout = stop_timeout_s;

	/* A daemon that died keeps its data directory for the next, which
	 * settles what it left; after stop_daemon() a fresh one comes. */
	bool fresh = data_dir[0] == '\0';
	if (fresh)
		snprintf(data_dir, sizeof(data_dir), "/tmp/bk-bench-data-XXXXXX");
	if (log_dir[0] == '\0')
		snprintf(log_dir, sizeof(log_dir), "/tmp/bk-bench-log-XXXXXX");
	if ((fresh && mkdtemp(data_dir) == NULL) ||
	    (log_path[0] == '\0' && mkdtemp(log_dir) == NULL))
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
	daemon_port = port;
	snprintf(base_url, sizeof(base_url), "http://127.0.0.1:%d", port);

	char *argv[32] = {bunkerd, "--listen",	 "127.0.0.1", "--port",
			  port_s,  "--data-dir", data_dir};
	size_t argc = 7;
	for (size_t i = 0; extra_args != NULL && extra_args[i] != NULL; i++) {
		if (argc + 1 >= sizeof(argv) / sizeof(argv[0]))
			die("too many bunkerd arguments");
		/* execv() takes char *const[] but writes none of them. */
		argv[argc++] = (char *)extra_args[i];
	}
	argv[argc] = NULL;
	daemon_pid = spawn_logged(argv, -1);

	double deadline = now_ms() + 30000;
	while (now_ms() < deadline) {
		int st;
		if (waitpid(daemon_pid, &st, WNOHANG) == daemon_pid) {
			daemon_pid = 0;
			die("bunkerd exited at start-up");
		}
		if (healthy())
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

int data_dir_mounts(bool detach)
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
	/* The daemon's own mount namespace, which a clean stop that leaves no
	 * disk releases and a killed daemon leaves pinned
	 * (sandbox/mntns.c): unpinned, it goes with its mounts. */
	uint32_t h = 2166136261u; /* its instance, as sbx_instance_name() names it */
	for (const char *c = data_dir; *c; c++)
		h = (h ^ (uint8_t)*c) * 16777619u;
	char pin[160];
	snprintf(pin, sizeof(pin), "/run/bunker/bunker-%08x/mnt", h);
	umount2(pin, MNT_DETACH);
	unlink(pin);
	*strrchr(pin, '/') = '\0';
	rmdir(pin);
	data_dir_mounts(true);
	if (data_dir_mounts(false) != 0) {
		fprintf(stderr, "bench: not removing '%s': mounts remain under it\n", data_dir);
		return;
	}
	nftw(data_dir, rm_cb, 32, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
}

void stop_daemon(void)
{
	if (daemon_pid > 0) {
		kill(daemon_pid, SIGTERM);
		/* A clean stop puts every session to deep sleep first: the
		 * caller knows how long that may take. */
		double deadline = now_ms() + (double)stop_timeout * 1000;
		int st;
		pid_t r;
		while ((r = waitpid(daemon_pid, &st, WNOHANG)) == 0 && now_ms() < deadline)
			usleep(20000);
		if (r == 0) {
			fprintf(stderr, "bench: bunkerd ignored SIGTERM for %ld s; SIGKILL\n",
				stop_timeout);
			kill(daemon_pid, SIGKILL);
			waitpid(daemon_pid, &st, 0);
		}
		daemon_pid = 0;
	}
	if (data_dir[0] != '\0') {
		remove_data_dir();
		data_dir[0] = '\0';
	}
}

void bench_cleanup(void)
{
	stop_daemon();
	if (curl != NULL)
		curl_easy_cleanup(curl);
	curl = NULL;
	curl_global_cleanup();
	if (log_dir[0] != '\0')
		nftw(log_dir, rm_cb, 8, FTW_DEPTH | FTW_PHYS);
}

void key_create(const char *plan, char *out, size_t len)
{
	key_create_with(plan, NULL, out, len);
}

void key_create_with(const char *plan, const char *const overrides[], char *out, size_t len)
{
	char cli[PATH_MAX + 16], plan_s[32];
	snprintf(cli, sizeof(cli), "%s/bunker", build);
	snprintf(plan_s, sizeof(plan_s), "%s", plan);
	int p[2];
	if (pipe2(p, O_CLOEXEC) < 0)
		die("pipe failed");
	char *argv[32] = {cli, "--data-dir", data_dir, "keys", "create", "--plan", plan_s};
	size_t argc = 7;
	for (size_t i = 0; overrides != NULL && overrides[i] != NULL; i++) {
		if (argc + 2 > sizeof(argv) / sizeof(argv[0]))
			die("too many key overrides");
		argv[argc++] = (char *)overrides[i];
	}
	argv[argc] = NULL;
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
	    strlen(buf) >= len) {
		char what[96];
		snprintf(what, sizeof(what), "'bunker keys create --plan %s' failed", plan_s);
		die(what);
	}
	snprintf(out, len, "%s", buf);
}

/* ---- sessions ---- */

char *create_session(const char *key, const char *body, double *ms)
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

void delete_session(const char *key, const char *id, double *ms)
{
	char path[128];
	snprintf(path, sizeof(path), "/sessions/%s", id);
	if (http("DELETE", path, key, NULL, NULL, ms) != 200)
		die("delete failed");
}

/* ---- statistics ---- */

char *session_run(const char *key, const char *id, const char *command, int timeout_s,
		  json_t *files)
{
	json_t *body =
	    json_pack("{s:s,s:s,s:i}", "sessionId", id, "command", command, "timeout", timeout_s);
	if (files)
		json_object_set_new(body, "files", files);
	char *text = json_dumps(body, JSON_COMPACT);
	json_decref(body);
	json_t *j = NULL;
	long status = http("POST", "/execute", key, text, &j, NULL);
	free(text);
	json_t *code = json_object_get(j, "exitCode");
	if (status != 200 || !json_is_integer(code) || json_integer_value(code) != 0) {
		char *dump = j ? json_dumps(j, JSON_COMPACT) : NULL;
		fprintf(stderr, "bench: '%s': %.800s\n", command, dump ? dump : "(no answer)");
		free(dump);
		die("an execution in the session failed");
	}
	char *out = strdup(json_string_value(json_object_get(j, "stdout")));
	json_decref(j);
	return out;
}

char *host_run(const char *command)
{
	FILE *p = popen(command, "r");
	if (p == NULL)
		die("cannot run a command on the host");
	size_t cap = 8192, len = 0;
	char *out = malloc(cap);
	size_t n;
	while (out && (n = fread(out + len, 1, cap - len - 1, p)) > 0) {
		len += n;
		if (cap - len < 1024) {
			cap *= 2;
			out = realloc(out, cap);
		}
	}
	int status = pclose(p);
	if (out == NULL || status != 0) {
		fprintf(stderr, "bench: '%s' failed\n", command);
		die("a command on the host failed");
	}
	out[len] = '\0';
	return out;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

void sort_values(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(double), cmp_double);
}

double nearest_rank(const double *v, int n, double q)
{
	int r = (int)ceil(q * n) - 1;
	return v[r < 0 ? 0 : r];
}

struct stats summarise(const char *name, double *v, int n)
{
	struct stats s = {.name = name, .n = n, .ok = n > 0};
	if (n == 0)
		return s;
	sort_values(v, n);
	s.p50 = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
	s.p99 = nearest_rank(v, n, 0.99);
	double sum = 0;
	for (int i = 0; i < n; i++)
		sum += v[i];
	s.mean = sum / n;
	return s;
}

void stats_print_header(const struct stats_table *t)
{
	printf("%-*s %*s %10s %10s %10s\n", t->name_width, "operation", t->n_width, "n", "p50 ms",
	       "p99 ms", "mean ms");
}

void stats_print_row(const struct stats_table *t, const struct stats *s, const char *note)
{
	if (s->ok)
		printf("%-*s %*d %10.2f %10.2f %10.2f%s%s\n", t->name_width, s->name, t->n_width,
		       s->n, s->p50, s->p99, s->mean, note ? "  " : "", note ? note : "");
	else
		printf("%-*s %*s %10s %10s %10s\n", t->name_width, s->name, t->n_width, "-", "n/a",
		       "n/a", "n/a");
}
