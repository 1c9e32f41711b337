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
 *   - nginx: the same wrk on the host against an nginx reverse proxy
 *     (Debian's nginx-light) in front of the same app, the baseline that
 *     users would pick instead (see nginx_start()).
 * All use 2 wrk threads, so each run has the same load generator and app;
 * the proxied ones add a proxy (and a second TCP connection per client) on
 * the same CPUs. The relay and nginx runs of a round come one after the
 * other, in turns first. Prints each run's requests/s and p50/p99 latency,
 * the medians, and the ratios: relay/nginx (target: throughput at least
 * 1.0, p99 no higher) and relay/direct (target: at least 0.70), each the
 * median of the rounds' same-run ratios.
 *
 *   BENCH_NGINX=1          0: no nginx runs (and no need for nginx)
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
 * machines: the groups measure that. nginx gets a group of its own too.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common.h"

#define TARGET_RATIO 0.70
#define TARGET_NGINX 1.0
#define NGINX_BIN "/usr/sbin/nginx"

static const char app_ts[] =
    "Bun.serve({ port: Number(process.env.PORT), fetch: () => new Response('hi') });\n";

/* The cpu cgroups of the daemon, of the host's wrk and of nginx ("" when
 * unused). */
static char cg_daemon[128], cg_wrk[128], cg_nginx[128];

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
	snprintf(cg_nginx, sizeof(cg_nginx), "%s/bench-preview-%d-nginx", base, (int)getpid());
	char path[192], pid[32];
	snprintf(path, sizeof(path), "%s/cgroup.procs", cg_daemon);
	snprintf(pid, sizeof(pid), "%d", (int)daemon_pid);
	if (mkdir(cg_daemon, 0755) < 0 || mkdir(cg_wrk, 0755) < 0 || mkdir(cg_nginx, 0755) < 0 ||
	    !write_str(path, pid)) {
		rmdir(cg_daemon);
		rmdir(cg_wrk);
		rmdir(cg_nginx);
		cg_daemon[0] = cg_wrk[0] = cg_nginx[0] = '\0';
		return false;
	}
	return true;
}

static void cg_remove(void)
{
	/* Empty once the daemon and nginx have stopped and wrk has ended. */
	for (int i = 0; i < 50 && cg_daemon[0] && rmdir(cg_daemon) < 0; i++)
		sleep_ms(100);
	if (cg_wrk[0])
		rmdir(cg_wrk);
	for (int i = 0; i < 50 && cg_nginx[0] && rmdir(cg_nginx) < 0; i++)
		sleep_ms(100);
}

/* ---- the nginx baseline ----
 *
 * The relay's upstream socket is made inside the session's network
 * namespace and connects to 127.0.0.1:port there (sbx ops->dial()), while
 * its clients reach it on the host's loopback. nginx is given the same
 * two places: its listening socket is made here, on a free port of the
 * host's loopback, and handed to it as an inherited socket (the NGINX
 * environment variable of its binary upgrade), and nginx itself runs in
 * the session's network namespace, so that its upstream is the very
 * 127.0.0.1:8080 that the relay and the direct runs reach. Its
 * configuration is a reverse proxy as its documentation advises for
 * keep-alive upstreams (a keepalive pool, HTTP/1.1, Connection cleared),
 * with the relay's X-Forwarded-* headers, no access log, and as many
 * worker processes as the relay has workers (relay_workers()). */

static pid_t nginx_pid;
static char nginx_dir[64];

/* Up to cap - 1 bytes of a file of /proc, NUL-terminated ("" when it cannot
 * be read); returns how many. */
static size_t proc_read(const char *path, char *buf, size_t cap)
{
	FILE *f = fopen(path, "re");
	size_t n = f ? fread(buf, 1, cap - 1, f) : 0;
	if (f)
		fclose(f);
	buf[n] = '\0';
	return n;
}

/* How many threads move the relay's bytes: the daemon's threads named
 * "bk-relay" (http/relay_pool.c). Dies when there is none. */
static int relay_workers(void)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/task", (int)daemon_pid);
	DIR *d = opendir(path);
	if (d == NULL)
		die("cannot read the daemon's threads");
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		char comm_path[128], comm[32];
		snprintf(comm_path, sizeof(comm_path), "%s/%s/comm", path, e->d_name);
		proc_read(comm_path, comm, sizeof(comm));
		if (strcmp(comm, "bk-relay\n") == 0)
			n++;
	}
	closedir(d);
	if (n == 0)
		die("the daemon has no relay worker (threads named bk-relay)");
	return n;
}

/* Whether process pid's command line has word as an argument. */
static bool cmdline_has(pid_t pid, const char *word)
{
	char path[64], buf[4096];
	snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
	size_t n = proc_read(path, buf, sizeof(buf));
	for (size_t i = 0; i < n; i += strlen(buf + i) + 1)
		if (strcmp(buf + i, word) == 0)
			return true;
	return false;
}

/* The network namespace of the session's app (opened, O_CLOEXEC): that of
 * the daemon's descendant whose command line has app_arg, and is in a
 * network namespace other than ours (the daemon keeps sandboxes ready,
 * each in a namespace of its own: only the app's is the one). Dies when
 * there is none. */
static int session_netns(const char *app_arg)
{
	struct stat self;
	if (stat("/proc/self/ns/net", &self) < 0)
		die("cannot read this process's network namespace");
	DIR *d = opendir("/proc");
	if (d == NULL)
		die("cannot read /proc");
	int found = -1;
	struct dirent *e;
	while (found < 0 && (e = readdir(d)) != NULL) {
		pid_t pid = (pid_t)atoi(e->d_name);
		if (pid <= 0)
			continue;
		/* Is it the daemon's? Up its parents (a few levels). */
		pid_t p = pid;
		for (int depth = 0; depth < 32 && p > 1 && p != daemon_pid; depth++) {
			char path[64], buf[512];
			snprintf(path, sizeof(path), "/proc/%d/stat", (int)p);
			proc_read(path, buf, sizeof(buf));
			/* "pid (comm) state ppid ...": comm may hold spaces. */
			const char *rp = strrchr(buf, ')');
			int ppid = 0;
			p = rp && sscanf(rp + 1, " %*c %d", &ppid) == 1 ? (pid_t)ppid : 0;
		}
		if (p != daemon_pid || pid == daemon_pid || !cmdline_has(pid, app_arg))
			continue;
		char path[64];
		snprintf(path, sizeof(path), "/proc/%d/ns/net", (int)pid);
		struct stat ns;
		if (stat(path, &ns) == 0 && ns.st_ino != self.st_ino)
			found = open(path, O_RDONLY | O_CLOEXEC);
	}
	closedir(d);
	if (found < 0)
		die("cannot find the session's network namespace");
	return found;
}

static void nginx_stop(void)
{
	if (nginx_pid > 0) {
		/* TERM: a fast shutdown, workers included. */
		kill(nginx_pid, SIGTERM);
		int st;
		for (int i = 0; i < 100 && waitpid(nginx_pid, &st, WNOHANG) == 0; i++)
			sleep_ms(50);
		if (waitpid(nginx_pid, &st, WNOHANG) == 0) {
			kill(nginx_pid, SIGKILL);
			waitpid(nginx_pid, &st, 0);
		}
		nginx_pid = 0;
	}
	if (nginx_dir[0]) {
		char cmd[128];
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", nginx_dir);
		if (system(cmd) != 0)
			fprintf(stderr, "bench: cannot remove %s\n", nginx_dir);
		nginx_dir[0] = '\0';
	}
}

/* Dies with nginx's log on stderr. */
static void __attribute__((noreturn)) nginx_die(const char *what, const char *errlog)
{
	char show[192];
	snprintf(show, sizeof(show), "cat '%s' >&2", errlog);
	if (system(show) != 0)
		fprintf(stderr, "bench: nginx left no log\n");
	die(what);
}

/* A listening socket on a free port of the host's loopback, inheritable
 * (no O_CLOEXEC); its port in *port. */
static int nginx_listen(int *port)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	int one = 1;
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t sl = sizeof(sa);
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 4096) < 0 ||
	    getsockname(fd, (struct sockaddr *)&sa, &sl) < 0)
		die("cannot listen for nginx");
	*port = ntohs(sa.sin_port);
	return fd;
}

/* Starts nginx with workers worker processes in front of port 8080 of the
 * session whose network namespace is netns; returns the port it listens
 * on, on the host's loopback. */
static int nginx_start(int netns, int workers, int conns)
{
	snprintf(nginx_dir, sizeof(nginx_dir), "/tmp/bk-bench-nginx-XXXXXX");
	if (mkdtemp(nginx_dir) == NULL)
		die("cannot make nginx's directory");
	int port;
	int lfd = nginx_listen(&port);
	char conf[128];
	snprintf(conf, sizeof(conf), "%s/nginx.conf", nginx_dir);
	FILE *f = fopen(conf, "we");
	if (f == NULL)
		die("cannot write nginx's configuration");
	/* keepalive: idle upstream connections each worker keeps, enough for
	 * every client's; keepalive_requests (both sides) high enough that no
	 * connection is closed during a run, as the relay closes none. */
	fprintf(f,
		"worker_processes %d;\n"
		"daemon off;\n"
		"master_process on;\n"
		"user root;\n"
		"pid %s/nginx.pid;\n"
		"error_log %s/error.log warn;\n"
		"events { worker_connections 4096; }\n"
		"http {\n"
		"  access_log off;\n"
		"  keepalive_requests 1000000;\n"
		"  client_body_temp_path %s/body;\n"
		"  proxy_temp_path %s/proxy;\n"
		"  fastcgi_temp_path %s/fastcgi;\n"
		"  uwsgi_temp_path %s/uwsgi;\n"
		"  scgi_temp_path %s/scgi;\n"
		"  upstream app {\n"
		"    server 127.0.0.1:8080;\n"
		"    keepalive %d;\n"
		"    keepalive_requests 1000000;\n"
		"  }\n"
		"  server {\n"
		"    listen 127.0.0.1:%d backlog=4096;\n"
		"    location / {\n"
		"      proxy_pass http://app;\n"
		"      proxy_http_version 1.1;\n"
		"      proxy_set_header Connection \"\";\n"
		"      proxy_set_header Host $host;\n"
		"      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n"
		"      proxy_set_header X-Forwarded-Proto $scheme;\n"
		"      proxy_set_header X-Forwarded-Host $host;\n"
		"    }\n"
		"  }\n"
		"}\n",
		workers, nginx_dir, nginx_dir, nginx_dir, nginx_dir, nginx_dir, nginx_dir,
		nginx_dir, conns, port);
	if (fclose(f) != 0)
		die("cannot write nginx's configuration");
	char inherit[32], errlog[128];
	snprintf(inherit, sizeof(inherit), "%d;", lfd);
	snprintf(errlog, sizeof(errlog), "%s/error.log", nginx_dir);
	char procs[192] = "";
	if (cg_nginx[0])
		snprintf(procs, sizeof(procs), "%s/cgroup.procs", cg_nginx);
	pid_t pid = fork();
	if (pid < 0)
		die("cannot fork nginx");
	if (pid == 0) {
		/* Its group before it forks its workers, which stay in it. */
		if (procs[0] && !write_str(procs, "0"))
			_exit(126);
		if (setns(netns, CLONE_NEWNET) < 0 || setenv("NGINX", inherit, 1) < 0)
			_exit(126);
		execl(NGINX_BIN, "nginx", "-q", "-e", errlog, "-p", nginx_dir, "-c", conf,
		      (char *)NULL);
		_exit(127);
	}
	close(lfd);
	nginx_pid = pid;
	/* Up once it answers through itself. */
	char cmd[256];
	snprintf(cmd, sizeof(cmd),
		 "curl -s -o /dev/null -w '%%{http_code}' http://127.0.0.1:%d/ 2>/dev/null", port);
	for (int i = 0; i < 100; i++) {
		int st;
		if (waitpid(pid, &st, WNOHANG) == pid) {
			nginx_pid = 0;
			nginx_die("nginx did not start", errlog);
		}
		FILE *p = popen(cmd, "r");
		char code[8] = "";
		if (p) {
			if (fgets(code, sizeof(code), p) == NULL)
				code[0] = '\0';
			pclose(p);
		}
		if (strcmp(code, "200") == 0)
			return port;
		sleep_ms(100);
	}
	nginx_die("nginx did not answer", errlog);
}

static double median(double *v, int n)
{
	sort_values(v, n);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

enum path { DIRECT, RELAY, NGINX, PATHS };
static const char *const path_name[PATHS] = {"direct", "relay", "nginx"};

/* One wrk run of a path: its figures, printed as a row of round r. */
static struct wrk_result run_path(enum path which, int r, const char *cmd, const char *key,
				  const char *id, int seconds)
{
	char *out = which == DIRECT ? session_run(key, id, cmd, seconds + 60, NULL) : host_run(cmd);
	struct wrk_result res;
	if (!wrk_parse(out, &res)) {
		fprintf(stderr, "%s\n", out);
		fprintf(stderr, "bench: cannot read wrk's report (%s)\n", path_name[which]);
		die("wrk's report is not as expected");
	}
	free(out);
	printf("%-9s %5d %12.0f %9.2f %9.2f\n", path_name[which], r + 1, res.rps, res.p50_ms,
	       res.p99_ms);
	return res;
}

int main(int argc, char **argv)
{
	bench_init(argc, argv);
	int seconds = env_int("BENCH_SECONDS", 10, 1, 600);
	int rounds = env_int("BENCH_ROUNDS", 3, 1, 20);
	int conns = env_int("BENCH_CONNECTIONS", 50, 2, 1000);
	bool groups = env_int("BENCH_CGROUPS", 1, 0, 1) == 1;
	bool with_nginx = env_int("BENCH_NGINX", 1, 0, 1) == 1;
	if (system("command -v wrk >/dev/null 2>&1") != 0)
		die("wrk is not installed (scripts/install-deps.sh installs it)");
	if (with_nginx && access(NGINX_BIN, X_OK) != 0)
		die(NGINX_BIN " is missing (scripts/install-deps.sh installs nginx-light; "
			      "BENCH_NGINX=0 runs without)");
	atexit(nginx_stop);

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
	char cmd[PATHS][1024], extra[400];
	snprintf(extra, sizeof(extra), "-H 'Host: %s'", host);
	bool up = false;
	for (int i = 0; i < 100 && !up; i++) {
		char curl[1024];
		snprintf(curl, sizeof(curl),
			 "curl -s -o /dev/null -w '%%{http_code}' -H 'Host: %s' %s 2>/dev/null",
			 host, proxied_url);
		char *code = host_run(curl);
		up = strcmp(code, "200") == 0;
		free(code);
		if (!up)
			sleep_ms(100);
	}
	if (!up)
		die("the app did not answer through its preview");
	int workers = relay_workers();
	char nginx_url[64] = "";
	if (with_nginx) {
		int netns = session_netns("app.ts");
		snprintf(nginx_url, sizeof(nginx_url), "http://127.0.0.1:%d/",
			 nginx_start(netns, workers, conns));
		close(netns);
	}
	enum path order[PATHS] = {DIRECT, RELAY, NGINX};
	int n_paths = with_nginx ? PATHS : NGINX;
	/* A short warm-up of each path. */
	wrk_args(cmd[DIRECT], sizeof(cmd[DIRECT]), 1, conns, "", "http://127.0.0.1:8080/");
	free(session_run(key, id, cmd[DIRECT], 60, NULL));
	wrk_host_args(cmd[RELAY], sizeof(cmd[RELAY]), 1, conns, extra, proxied_url);
	free(host_run(cmd[RELAY]));
	if (with_nginx) {
		wrk_host_args(cmd[NGINX], sizeof(cmd[NGINX]), 1, conns, extra, nginx_url);
		free(host_run(cmd[NGINX]));
	}
	wrk_args(cmd[DIRECT], sizeof(cmd[DIRECT]), seconds, conns, "", "http://127.0.0.1:8080/");
	wrk_host_args(cmd[RELAY], sizeof(cmd[RELAY]), seconds, conns, extra, proxied_url);
	wrk_host_args(cmd[NGINX], sizeof(cmd[NGINX]), seconds, conns, extra, nginx_url);

	printf("preview proxy: wrk -t2 -c%d, %d s per run, %d rounds (%s)\n", conns, seconds,
	       rounds, host);
	printf("cpu cgroups of their own for the daemon, nginx and the host's wrk: %s\n",
	       groups ? "yes" : "no");
	if (with_nginx)
		printf("relay workers and nginx worker processes: %d (%s)\n", workers, nginx_url);
	printf("%-9s %5s %12s %9s %9s\n", "path", "round", "requests/s", "p50 ms", "p99 ms");
	double *v = calloc((size_t)rounds * PATHS * 3 + (size_t)rounds * 3, sizeof(double));
	if (v == NULL)
		die("out of memory");
	double *rps[PATHS], *p50[PATHS], *p99[PATHS];
	for (int k = 0; k < PATHS; k++) {
		rps[k] = v + (size_t)rounds * (size_t)(3 * k);
		p50[k] = rps[k] + rounds;
		p99[k] = p50[k] + rounds;
	}
	/* The rounds' same-run ratios: relay/direct, relay/nginx throughput
	 * and relay/nginx p99. */
	double *rd = v + (size_t)rounds * PATHS * 3, *rn = rd + rounds, *rn99 = rn + rounds;
	for (int r = 0; r < rounds; r++) {
		/* The two proxies take turns at going first. */
		order[1] = r % 2 ? NGINX : RELAY;
		order[2] = r % 2 ? RELAY : NGINX;
		for (int k = 0; k < n_paths; k++) {
			enum path which = n_paths < PATHS ? (enum path)k : order[k];
			struct wrk_result res = run_path(which, r, cmd[which], key, id, seconds);
			rps[which][r] = res.rps;
			p50[which][r] = res.p50_ms;
			p99[which][r] = res.p99_ms;
		}
		rd[r] = rps[RELAY][r] / rps[DIRECT][r];
		if (with_nginx) {
			rn[r] = rps[RELAY][r] / rps[NGINX][r];
			rn99[r] = p99[NGINX][r] > 0 ? p99[RELAY][r] / p99[NGINX][r] : 0;
			printf(
			    "%-9s %5d relay/direct %.2f, relay/nginx %.2f, p99 relay/nginx %.2f\n",
			    "ratios", r + 1, rd[r], rn[r], rn99[r]);
		} else {
			printf("%-9s %5d relay/direct %.2f\n", "ratios", r + 1, rd[r]);
		}
	}
	for (int k = 0; k < n_paths; k++)
		printf("%-9s %5s %12.0f %9.2f %9.2f\n", path_name[k], "med", median(rps[k], rounds),
		       median(p50[k], rounds), median(p99[k], rounds));
	double ratio = median(rd, rounds);
	printf("relay/direct throughput: %.2f (target >= %.2f: %s)\n", ratio, TARGET_RATIO,
	       ratio >= TARGET_RATIO ? "met" : "NOT met");
	if (with_nginx) {
		double tput = median(rn, rounds), lat = median(rn99, rounds);
		printf("relay/nginx throughput: %.2f (target >= %.2f: %s)\n", tput, TARGET_NGINX,
		       tput >= TARGET_NGINX ? "met" : "NOT met");
		printf("relay/nginx p99: %.2f (target <= 1.00: %s)\n", lat,
		       lat <= 1.0 ? "met" : "NOT met");
	}
	free(v);
	nginx_stop();
	delete_session(key, id, NULL);
	free(id);
	bench_cleanup();
	cg_remove();
	return 0;
}
