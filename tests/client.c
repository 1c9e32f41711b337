/* Test client: see client.h. */
#include "client.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <curl/curl.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <glob.h>
#include <libgen.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <linux/magic.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "util/file.h"

#define HEALTHZ_WAIT_S 30
#define STOP_WAIT_S 10
#define BODY_MAX ((size_t)512 << 20)
#define LOG_TAIL 8192

struct client_fixture bk;

/* ---- small helpers ---- */

double client_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static bool is_executable(const char *path)
{
	return access(path, X_OK) == 0;
}

/* Prints the last LOG_TAIL bytes of the daemon's log to stderr. */
static void log_dump_tail(const struct client_daemon *d)
{
	FILE *f = fopen(d->log_path, "re");
	if (f == NULL) {
		fprintf(stderr, "client: cannot open '%s': %s\n", d->log_path, strerror(errno));
		return;
	}
	if (fseek(f, 0, SEEK_END) == 0) {
		long size = ftell(f);
		if (size > LOG_TAIL)
			fseek(f, size - LOG_TAIL, SEEK_SET);
		else
			fseek(f, 0, SEEK_SET);
	}
	fprintf(stderr, "---- %s (tail) ----\n", d->log_path);
	char buf[4096];
	size_t n;
	while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
		fwrite(buf, 1, n, stderr);
	fprintf(stderr, "---- end of log ----\n");
	fclose(f);
}

/* True when the log, from byte `from` on, contains needle. */
static bool log_contains(const struct client_daemon *d, long from, const char *needle)
{
	FILE *f = fopen(d->log_path, "re");
	if (f == NULL)
		return false;
	fseek(f, from, SEEK_SET);
	char *line = NULL;
	size_t cap = 0;
	bool found = false;
	while (!found && getline(&line, &cap, f) >= 0)
		found = strstr(line, needle) != NULL;
	free(line);
	fclose(f);
	return found;
}

int client_log_count(const struct client_daemon *d, const char *a, const char *b)
{
	FILE *f = fopen(d->log_path, "re");
	if (f == NULL)
		return -1;
	char *line = NULL;
	size_t cap = 0;
	int n = 0;
	while (getline(&line, &cap, f) >= 0)
		if (strstr(line, a) != NULL && (b == NULL || strstr(line, b) != NULL))
			n++;
	free(line);
	fclose(f);
	return n;
}

static long log_size(const struct client_daemon *d)
{
	struct stat st;
	return stat(d->log_path, &st) == 0 ? (long)st.st_size : 0;
}

static int rm_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	if (remove(path) < 0 && errno != ENOENT)
		fprintf(stderr, "client: cannot remove '%s': %s\n", path, strerror(errno));
	return 0;
}

/* rm -rf of a directory of ours. Mounts under it are detached first, and if
 * any remains nothing is removed: a bind mount of a host directory is on the
 * same file system, so FTW_MOUNT alone would not keep nftw out of it. */
static void rm_tree(const char *path)
{
	if (path[0] == '\0')
		return;
	if (client_detach_mounts_under(path) != 0) {
		fprintf(stderr, "client: not removing '%s': mounts remain under it\n", path);
		return;
	}
	if (nftw(path, rm_cb, 32, FTW_DEPTH | FTW_PHYS | FTW_MOUNT) < 0 && errno != ENOENT)
		fprintf(stderr, "client: cannot remove '%s': %s\n", path, strerror(errno));
}

/* Mount points under dir (dir included) into mounts (strdup'd), in
 * mountinfo's order (parents before children); returns how many, or -1. */
static int mounts_under(const char *dir, char **mounts, int max)
{
	FILE *mi = fopen("/proc/self/mountinfo", "re");
	if (mi == NULL)
		return -1;
	int n = 0;
	char *line = NULL;
	size_t cap = 0;
	size_t dl = strlen(dir);
	while (getline(&line, &cap, mi) >= 0 && n < max) {
		char mnt[PATH_MAX];
		if (sscanf(line, "%*s %*s %*s %*s %4095s", mnt) == 1 &&
		    strncmp(mnt, dir, dl) == 0 && (mnt[dl] == '/' || mnt[dl] == '\0'))
			mounts[n++] = strdup(mnt);
	}
	free(line);
	fclose(mi);
	return n;
}

/* Detaches every mount under dir, deepest first; returns how many are left
 * (-1 if unknown). bunkerd keeps the session disks (tmpfs) and its run
 * directory mounted when it stops, by design, so that a restart finds every
 * file; a test's data directory goes with the test, so they are detached
 * here. That a DELETE leaves no mount is checked by the tests themselves. */
int client_detach_mounts_under(const char *dir)
{
	char *mounts[256];
	int n = mounts_under(dir, mounts, 256);
	if (n < 0)
		return -1;
	for (int i = n - 1; i >= 0; i--) {
		if (umount2(mounts[i], MNT_DETACH) < 0 && errno != EINVAL)
			fprintf(stderr, "client: cannot unmount '%s': %s\n", mounts[i],
				strerror(errno));
		free(mounts[i]);
	}
	n = mounts_under(dir, mounts, 256);
	for (int i = 0; i < n; i++)
		free(mounts[i]);
	return n;
}

void client_manifest_note(const char *kind, const char *what, const char *extra)
{
	const char *path = getenv("BUNKER_TEST_MANIFEST");
	if (path == NULL || *path == '\0')
		return;
	int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0)
		return;
	dprintf(fd, "%s %s%s%s\n", kind, what, extra ? " " : "", extra ? extra : "");
	close(fd);
}

/* The parent cgroup of a daemon on data_dir, named as sandbox/ns.c names
 * it: "bunker-<FNV-1a of the directory>". */
static void cgroup_parent_of(const char *data_dir, char *out, size_t len)
{
	snprintf(out, len, "bunker-%08x", sbx_instance_hash(data_dir));
}

int client_egress_state(const char *data_dir, bool remove)
{
	char hash[16], cmd[128];
	snprintf(hash, sizeof(hash), "%08x", sbx_instance_hash(data_dir));
	int n = 0;
	snprintf(cmd, sizeof(cmd), "nft list table inet bunker_%s >/dev/null 2>&1", hash);
	if (system(cmd) == 0) {
		n++;
		if (remove) {
			fprintf(stderr,
				"client: nftables table bunker_%s left behind; removing it\n",
				hash);
			snprintf(cmd, sizeof(cmd), "nft delete table inet bunker_%s", hash);
			if (system(cmd) != 0)
				fprintf(stderr, "client: cannot delete table bunker_%s\n", hash);
		}
	}
	char prefix[16];
	snprintf(prefix, sizeof(prefix), "bk%.6s", hash);
	DIR *dp = opendir("/sys/class/net");
	struct dirent *de;
	while (dp != NULL && (de = readdir(dp)) != NULL) {
		if (strncmp(de->d_name, prefix, strlen(prefix)) != 0)
			continue;
		n++;
		if (remove) {
			fprintf(stderr, "client: interface %s left behind; removing it\n",
				de->d_name);
			snprintf(cmd, sizeof(cmd), "ip link del %s 2>/dev/null", de->d_name);
			if (system(cmd) != 0)
				fprintf(stderr, "client: cannot delete interface %s\n", de->d_name);
		}
	}
	if (dp != NULL)
		closedir(dp);
	/* What the daemon's clean stop does, when a crash left it to us: the
	 * last table of ours gone, forwarding back off if one of ours turned
	 * it on (sandbox/egress.c). */
	if (remove && access("/run/bunker/ip_forward-was-off", F_OK) == 0 &&
	    system("nft list tables inet 2>/dev/null | grep -q 'table inet bunker_'") != 0) {
		FILE *f = fopen("/proc/sys/net/ipv4/ip_forward", "we");
		if (f != NULL) {
			fputs("0\n", f);
			fclose(f);
		}
		unlink("/run/bunker/ip_forward-was-off");
	}
	return n;
}

/* ---- build dir, ports, process control ---- */

int client_build_dir(char *out, size_t len)
{
	const char *env = getenv("BUNKER_BUILD");
	if (env != NULL && *env != '\0') {
		if (realpath(env, out) == NULL) {
			fprintf(stderr, "client: BUNKER_BUILD '%s': %s\n", env, strerror(errno));
			return -1;
		}
		return 0;
	}
	char exe[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n < 0) {
		fprintf(stderr, "client: cannot read /proc/self/exe: %s\n", strerror(errno));
		return -1;
	}
	exe[n] = '\0';
	/* build/asan/tests/bb_x -> build/asan */
	char *dir = dirname(dirname(exe));
	if (strlen(dir) >= len) {
		fprintf(stderr, "client: build path too long\n");
		return -1;
	}
	snprintf(out, len, "%s", dir);
	return 0;
}

/* A port that was free a moment ago: bind port 0, read it, close. */
static int free_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = 0};
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	socklen_t sl = sizeof(sa);
	int port = -1;
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&sa, &sl) == 0)
		port = ntohs(sa.sin_port);
	close(fd);
	return port;
}

static int open_log(const struct client_daemon *d)
{
	return open(d->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
}

static void ensure_curl_global(void)
{
	static bool done;
	if (!done) {
		curl_global_init(CURL_GLOBAL_DEFAULT);
		done = true;
	}
}

/* Forks and execs argv with stdin /dev/null and stderr into the log; stdout
 * goes to out_fd (or the log when -1). The child dies with its parent. */
static pid_t spawn_logged(const struct client_daemon *d, char *const argv[], int out_fd)
{
	int log_fd = open_log(d);
	if (log_fd < 0) {
		fprintf(stderr, "client: cannot open '%s': %s\n", d->log_path, strerror(errno));
		return -1;
	}
	pid_t parent = getpid();
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0) {
		close(log_fd);
		return -1;
	}
	if (pid == 0) {
		int null_fd = open("/dev/null", O_RDONLY);
		if (null_fd < 0 || dup2(null_fd, 0) < 0 ||
		    dup2(out_fd >= 0 ? out_fd : log_fd, 1) < 0 || dup2(log_fd, 2) < 0)
			_exit(127);
		/* A crashed or killed test binary must not leave a daemon
		 * behind. */
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		if (getppid() != parent)
			_exit(127);
		setpgid(0, 0);
		execv(argv[0], argv);
		dprintf(2, "client: cannot exec '%s': %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	close(log_fd);
	return pid;
}

int client_daemon_start(struct client_daemon *d, const char *const *extra_args)
{
	ensure_curl_global();
	if (d->build[0] == '\0' && client_build_dir(d->build, sizeof(d->build)) < 0)
		return -1;
	char bunkerd[PATH_MAX + 16];
	snprintf(bunkerd, sizeof(bunkerd), "%s/bunkerd", d->build);
	if (!is_executable(bunkerd)) {
		fprintf(stderr, "client: no daemon at '%s' (build it, or set BUNKER_BUILD)\n",
			bunkerd);
		return -1;
	}
	/* A daemon stopped with client_daemon_halt() starts again on its own
	 * data directory, as a restarted service would. */
	if (d->data_dir[0] == '\0') {
		snprintf(d->data_dir, sizeof(d->data_dir), "/tmp/bk-data-XXXXXX");
		snprintf(d->log_dir, sizeof(d->log_dir), "/tmp/bk-log-XXXXXX");
		if (mkdtemp(d->data_dir) == NULL || mkdtemp(d->log_dir) == NULL) {
			fprintf(stderr, "client: mkdtemp: %s\n", strerror(errno));
			return -1;
		}
		snprintf(d->log_path, sizeof(d->log_path), "%s/bunkerd.log", d->log_dir);
		cgroup_parent_of(d->data_dir, d->cgroup_parent, sizeof(d->cgroup_parent));
		client_manifest_note("daemon", d->data_dir, d->cgroup_parent);
		client_manifest_note("dir", d->log_dir, NULL);
	}

	for (int attempt = 0; attempt < 5; attempt++) {
		d->port = free_port();
		if (d->port <= 0) {
			fprintf(stderr, "client: cannot find a free port\n");
			return -1;
		}
		snprintf(d->base_url, sizeof(d->base_url), "http://127.0.0.1:%d", d->port);
		char port_s[16];
		snprintf(port_s, sizeof(port_s), "%d", d->port);
		const char *argv[64] = {bunkerd, "--listen",   "127.0.0.1", "--port",
					port_s,	 "--data-dir", d->data_dir};
		int argc = 7;
		if (d->store[0]) {
			argv[argc++] = "--store";
			argv[argc++] = d->store;
		}
		for (int i = 0; extra_args != NULL && extra_args[i] != NULL && argc < 63; i++)
			argv[argc++] = extra_args[i];
		argv[argc] = NULL;

		long log_from = log_size(d);
		d->pid = spawn_logged(d, (char *const *)argv, -1);
		if (d->pid < 0) {
			d->pid = 0;
			fprintf(stderr, "client: fork: %s\n", strerror(errno));
			return -1;
		}
		double deadline = client_now() + HEALTHZ_WAIT_S;
		bool exited = false;
		while (client_now() < deadline) {
			int status;
			if (waitpid(d->pid, &status, WNOHANG) == d->pid) {
				exited = true;
				d->pid = 0;
				fprintf(stderr,
					"client: bunkerd exited at start-up (status 0x%x)\n",
					status);
				break;
			}
			struct client_resp r;
			struct client_req req = {
			    .method = "GET", .path = "/healthz", .timeout_s = 2};
			if (client_request(d, &req, &r) == 0 && r.status == 200) {
				const char *st = r.json ? client_json_str(r.json, "status") : NULL;
				bool ok = st != NULL && strcmp(st, "ok") == 0;
				if (!ok)
					fprintf(stderr, "client: /healthz answered 200 '%s'\n",
						r.body);
				client_resp_free(&r);
				if (ok)
					return 0;
				break;
			}
			client_resp_free(&r);
			sleep_ms(50);
		}
		if (exited && log_contains(d, log_from, "in use"))
			continue; /* lost the port to someone else: try another */
		if (!exited)
			fprintf(stderr, "client: bunkerd not healthy after %d s\n", HEALTHZ_WAIT_S);
		log_dump_tail(d);
		client_daemon_stop(d);
		return -1;
	}
	fprintf(stderr, "client: no free port for bunkerd after 5 attempts\n");
	log_dump_tail(d);
	return -1;
}

/* Whether a mount table (/proc/PID/mountinfo) is a sandbox's of the
 * daemon of dir: one of its mounts comes from under dir (an overlay's
 * layers, a bind's source) without being mounted under dir. A mount
 * namespace of someone else's that merely sees the daemon's mounts by
 * propagation (another test run's, on a shared /tmp) has them all at
 * their place under dir, and its processes are not ours to kill. */
static bool mounts_from(const char *text, const char *dir)
{
	size_t dl = strlen(dir);
	for (const char *line = text; line && *line;) {
		const char *eol = strchr(line, '\n');
		size_t n = eol ? (size_t)(eol - line) : strlen(line);
		char point[4096] = "";
		sscanf(line, "%*s %*s %*s %*s %4095s", point);
		if (memmem(line, n, dir, dl) != NULL && strncmp(point, dir, dl) != 0)
			return true;
		line = eol ? eol + 1 : NULL;
	}
	return false;
}

/* Kills every process (but us) whose command line names dir, or whose mount
 * table is one of its sandboxes' (mounts_from()) in a mount namespace other
 * than ours (in ours, every process sees the mounts the daemon left).
 * Returns how many there were. */
static int kill_leftovers(const char *dir)
{
	if (dir[0] == '\0')
		return 0;
	char self_ns[64] = "", ns[64];
	ssize_t nl = readlink("/proc/self/ns/mnt", self_ns, sizeof(self_ns) - 1);
	if (nl <= 0)
		return 0;
	self_ns[nl] = '\0';
	int n = 0;
	DIR *dp = opendir("/proc");
	struct dirent *de;
	while (dp != NULL && (de = readdir(dp)) != NULL) {
		char *end;
		long pid = strtol(de->d_name, &end, 10);
		if (*end != '\0' || pid <= 1 || pid == getpid())
			continue;
		char path[64];
		size_t len = 0;
		snprintf(path, sizeof(path), "/proc/%ld/cmdline", pid);
		char *text = read_file_all(path, &len);
		bool hit = text != NULL && memmem(text, len, dir, strlen(dir)) != NULL;
		free(text);
		snprintf(path, sizeof(path), "/proc/%ld/ns/mnt", pid);
		nl = readlink(path, ns, sizeof(ns) - 1);
		bool own_ns = nl <= 0 || (ns[nl] = '\0', strcmp(ns, self_ns) == 0);
		if (!hit && !own_ns) {
			snprintf(path, sizeof(path), "/proc/%ld/mountinfo", pid);
			text = read_file_all(path, &len);
			hit = text != NULL && mounts_from(text, dir);
			free(text);
		}
		if (!hit)
			continue;
		char comm[64] = "?";
		snprintf(path, sizeof(path), "/proc/%ld/comm", pid);
		text = read_file_all(path, &len);
		if (text != NULL)
			snprintf(comm, sizeof(comm), "%.*s", (int)strcspn(text, "\n"), text);
		free(text);
		snprintf(path, sizeof(path), "/proc/%ld/cgroup", pid);
		text = read_file_all(path, &len);
		/* A frozen process dies only once thawed: thaw its cgroup (the
		 * v1 freezer, or v2's cgroup.freeze) before the SIGKILL. */
		const char *fz = text ? strstr(text, ":freezer:") : NULL;
		const char *v2 = text ? strstr(text, "0::") : NULL;
		char knob[512] = "";
		if (fz != NULL)
			snprintf(knob, sizeof(knob), "/sys/fs/cgroup/freezer%.*s/freezer.state",
				 (int)strcspn(fz + 9, "\n"), fz + 9);
		else if (v2 != NULL)
			snprintf(knob, sizeof(knob), "/sys/fs/cgroup%.*s/cgroup.freeze",
				 (int)strcspn(v2 + 3, "\n"), v2 + 3);
		FILE *kf = knob[0] ? fopen(knob, "we") : NULL;
		if (kf != NULL) {
			fputs(fz != NULL ? "THAWED" : "0", kf);
			fclose(kf);
		}
		free(text);
		fprintf(stderr, "client: process %ld (%s) left after bunkerd stopped; killing it\n",
			pid, comm);
		kill((pid_t)pid, SIGKILL);
		n++;
	}
	if (dp != NULL)
		closedir(dp);
	if (n > 0)
		sleep_ms(500);
	return n;
}

static int cgroup_seen;

/* nftw, deepest first: thaws, kills what is in the directory, removes it. */
static int cgroup_rm_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	if (flag != FTW_DP)
		return 0;
	char knob[PATH_MAX + 32];
	const char *const thaw[][2] = {{"freezer.state", "THAWED"}, {"cgroup.freeze", "0"}};
	for (size_t i = 0; i < 2; i++) {
		snprintf(knob, sizeof(knob), "%s/%s", path, thaw[i][0]);
		FILE *f = fopen(knob, "we");
		if (f != NULL) {
			fputs(thaw[i][1], f);
			fclose(f);
		}
	}
	fprintf(stderr, "client: cgroup '%s' left behind; removing it\n", path);
	cgroup_seen++;
	for (int i = 0; i < 200 && rmdir(path) < 0 && errno == EBUSY; i++) {
		snprintf(knob, sizeof(knob), "%s/cgroup.procs", path);
		char *text = read_file_all(knob, NULL);
		for (char *p = text; p && *p;) {
			kill((pid_t)strtol(p, &p, 10), SIGKILL);
			while (*p == '\n')
				p++;
		}
		free(text);
		sleep_ms(10);
	}
	return 0;
}

/* Removes parent's cgroups, and all in them, under every controller (v1)
 * or in the one tree (v2); returns how many directories there were. */
static int cgroups_release(const char *parent)
{
	char pattern[160];
	cgroup_seen = 0;
	for (int depth = 0; depth < 2; depth++) {
		snprintf(pattern, sizeof(pattern), "/sys/fs/cgroup/%s%s", depth ? "*/" : "",
			 parent);
		glob_t g;
		if (glob(pattern, GLOB_NOSORT | GLOB_ONLYDIR, NULL, &g) == 0)
			for (size_t k = 0; k < g.gl_pathc; k++)
				nftw(g.gl_pathv[k], cgroup_rm_cb, 8, FTW_DEPTH | FTW_PHYS);
		globfree(&g);
	}
	return cgroup_seen;
}

/* Mounts under dir, printed as left behind; returns how many. */
static int mounts_left(const char *dir)
{
	char *mounts[256];
	int n = dir[0] ? mounts_under(dir, mounts, 256) : 0;
	for (int i = 0; i < n; i++) {
		fprintf(stderr, "client: mount '%s' left behind; detaching it\n", mounts[i]);
		free(mounts[i]);
	}
	return n > 0 ? n : 0;
}

/* The file on which bunkerd keeps its mount namespace between runs
 * (sandbox/mntns.c): /run/bunker/<instance>/mnt, the instance named as
 * its cgroup parent is. */
static void ns_pin_of(const struct client_daemon *d, char *dir, size_t dlen, char *pin, size_t plen)
{
	snprintf(dir, dlen, "/run/bunker/%s", d->cgroup_parent);
	snprintf(pin, plen, "%s/mnt", dir);
}

static bool pin_is_ns(const char *pin)
{
	struct statfs sf;
	return statfs(pin, &sf) == 0 && sf.f_type == NSFS_MAGIC;
}

/* The mount table of the namespace pinned on pin, read by a child that
 * enters it (setns wants a process of one thread). */
static char *pinned_mountinfo(const char *pin)
{
	int fds[2];
	if (pipe2(fds, O_CLOEXEC) < 0)
		return NULL;
	fflush(NULL);
	pid_t pid = fork();
	if (pid == 0) {
		close(fds[0]);
		int ns = open(pin, O_RDONLY | O_CLOEXEC);
		if (ns < 0 || setns(ns, CLONE_NEWNS) < 0)
			_exit(1);
		int in = open("/proc/self/mountinfo", O_RDONLY | O_CLOEXEC);
		char buf[65536];
		ssize_t n;
		while (in >= 0 && (n = read(in, buf, sizeof(buf))) > 0)
			if (write(fds[1], buf, (size_t)n) != n)
				_exit(1);
		_exit(0);
	}
	close(fds[1]);
	size_t cap = 65536, len = 0;
	char *text = pid > 0 ? malloc(cap) : NULL;
	ssize_t n;
	while (text != NULL && (n = read(fds[0], text + len, cap - len - 1)) > 0) {
		len += (size_t)n;
		if (cap - len < 4096) {
			char *more = realloc(text, cap * 2);
			if (more == NULL)
				break;
			text = more;
			cap *= 2;
		}
	}
	close(fds[0]);
	if (pid > 0)
		waitpid(pid, NULL, 0);
	if (text != NULL)
		text[len] = '\0';
	return text;
}

char *client_daemon_mountinfo(const struct client_daemon *d)
{
	char path[PATH_MAX + 64], dir[PATH_MAX];
	if (d->pid > 0) {
		snprintf(path, sizeof(path), "/proc/%d/mountinfo", (int)d->pid);
		return read_file_all(path, NULL);
	}
	ns_pin_of(d, dir, sizeof(dir), path, sizeof(path));
	if (d->cgroup_parent[0] && pin_is_ns(path))
		return pinned_mountinfo(path);
	return strdup("");
}

/* What a stopped daemon left of its mount namespace: the mounts under its
 * data directory that the namespace still holds (each printed), and the
 * namespace's pin, which a clean stop removes once no disk is left. Both
 * are removed; returns how many mounts there were (the pin counts as
 * one). */
static int mount_ns_left(const struct client_daemon *d)
{
	char dir[PATH_MAX], pin[PATH_MAX + 8];
	if (d->cgroup_parent[0] == '\0')
		return 0;
	ns_pin_of(d, dir, sizeof(dir), pin, sizeof(pin));
	int n = 0;
	if (pin_is_ns(pin)) {
		char *text = pinned_mountinfo(pin);
		size_t dl = strlen(d->data_dir);
		for (char *line = text; line && *line;) {
			char *eol = strchr(line, '\n');
			char mnt[PATH_MAX] = "";
			sscanf(line, "%*s %*s %*s %*s %4095s", mnt);
			if (strncmp(mnt, d->data_dir, dl) == 0 &&
			    (mnt[dl] == '/' || mnt[dl] == '\0')) {
				fprintf(stderr, "client: mount '%s' left in bunkerd's namespace\n",
					mnt);
				n++;
			}
			line = eol ? eol + 1 : NULL;
		}
		free(text);
		fprintf(stderr, "client: bunkerd's mount namespace left on '%s'; detaching it\n",
			pin);
		umount2(pin, MNT_DETACH);
		n++;
	}
	struct stat st;
	if (lstat(dir, &st) == 0) {
		if (n == 0)
			fprintf(stderr, "client: '%s' left behind; removing it\n", dir);
		unlink(pin);
		rmdir(dir);
		n += n == 0;
	}
	return n;
}

/* Prints what each thread of pid is waiting in, for a daemon that hangs. */
static void describe_threads(pid_t pid)
{
	char dir[64];
	snprintf(dir, sizeof(dir), "/proc/%d/task", (int)pid);
	DIR *dp = opendir(dir);
	struct dirent *de;
	while (dp != NULL && (de = readdir(dp)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		char path[160], comm[64] = "?", wchan[128] = "?", syscall_s[128] = "?";
		const struct {
			const char *name;
			char *out;
			size_t len;
		} files[] = {{"comm", comm, sizeof(comm)},
			     {"wchan", wchan, sizeof(wchan)},
			     {"syscall", syscall_s, sizeof(syscall_s)}};
		for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
			snprintf(path, sizeof(path), "%s/%s/%s", dir, de->d_name, files[i].name);
			FILE *f = fopen(path, "re");
			if (f == NULL)
				continue;
			if (fgets(files[i].out, (int)files[i].len, f) != NULL)
				files[i].out[strcspn(files[i].out, "\n")] = '\0';
			fclose(f);
		}
		/* The syscall's number is the first word. */
		syscall_s[strcspn(syscall_s, " ")] = '\0';
		fprintf(stderr, "client:   thread %s (%s): wchan %s, syscall %s\n", de->d_name,
			comm, wchan, syscall_s);
	}
	if (dp != NULL)
		closedir(dp);
}

int client_daemon_stop(struct client_daemon *d)
{
	int status = -1;
	if (d->pid > 0) {
		kill(d->pid, SIGTERM);
		double deadline = client_now() + STOP_WAIT_S;
		pid_t r = 0;
		while ((r = waitpid(d->pid, &status, WNOHANG)) == 0 && client_now() < deadline)
			sleep_ms(20);
		if (r == 0) {
			fprintf(stderr,
				"client: bunkerd did not stop in %d s of SIGTERM; SIGKILL\n",
				STOP_WAIT_S);
			describe_threads(d->pid);
			kill(d->pid, SIGKILL);
			waitpid(d->pid, &status, 0);
			status = -1;
		} else if (r < 0) {
			status = -1;
		}
		d->pid = 0;
	}
	d->left_processes = kill_leftovers(d->data_dir);
	d->left_cgroups = d->cgroup_parent[0] ? cgroups_release(d->cgroup_parent) : 0;
	d->left_mounts = mounts_left(d->data_dir) + mount_ns_left(d);
	d->left_net = d->data_dir[0] ? client_egress_state(d->data_dir, true) : 0;
	rm_tree(d->data_dir);
	struct stat st;
	d->left_data_dir = d->data_dir[0] && lstat(d->data_dir, &st) == 0;
	d->data_dir[0] = '\0';
	return status;
}

int client_daemon_halt(struct client_daemon *d, int sig)
{
	int status = -1;
	if (d->pid <= 0)
		return -1;
	kill(d->pid, sig);
	double deadline = client_now() + STOP_WAIT_S * 3;
	pid_t r = 0;
	while ((r = waitpid(d->pid, &status, WNOHANG)) == 0 && client_now() < deadline)
		sleep_ms(20);
	if (r == 0) {
		fprintf(stderr, "client: bunkerd did not stop on signal %d; SIGKILL\n", sig);
		kill(d->pid, SIGKILL);
		waitpid(d->pid, &status, 0);
	}
	d->pid = 0;
	return status;
}

int client_daemon_check(const struct client_daemon *d)
{
	static const char *const marks[] = {"AddressSanitizer", "runtime error:", "LeakSanitizer"};
	int problems = 0;
	FILE *f = fopen(d->log_path, "re");
	if (f != NULL) {
		char *line = NULL;
		size_t cap = 0;
		long lineno = 0;
		while (getline(&line, &cap, f) >= 0) {
			lineno++;
			for (size_t i = 0; i < sizeof(marks) / sizeof(marks[0]); i++) {
				if (strstr(line, marks[i]) == NULL)
					continue;
				if (problems < 20)
					fprintf(stderr, "    %s:%ld: %s", d->log_path, lineno,
						line);
				problems++;
				break;
			}
		}
		free(line);
		fclose(f);
	} else if (d->log_path[0] != '\0') {
		fprintf(stderr, "    cannot read '%s': %s\n", d->log_path, strerror(errno));
		problems++;
	}
	if (problems > 0)
		fprintf(stderr, "    sanitizer reports in the daemon's log (%d lines)\n", problems);
	if (d->left_processes > 0) {
		fprintf(stderr, "    %d processes of bunkerd were left running after it stopped\n",
			d->left_processes);
		problems += d->left_processes;
	}
	if (d->left_cgroups > 0)
		fprintf(stderr,
			"    %d cgroup directories of bunkerd ('%s') were left after it "
			"stopped\n",
			d->left_cgroups, d->cgroup_parent);
	if (d->left_mounts > 0)
		fprintf(stderr, "    %d mounts were left under its data directory\n",
			d->left_mounts);
	if (d->left_data_dir)
		fprintf(stderr, "    its data directory could not be removed\n");
	if (d->left_net > 0)
		fprintf(stderr, "    %d egress tables and interfaces were left after it stopped\n",
			d->left_net);
	problems += d->left_cgroups + d->left_mounts + d->left_data_dir + d->left_net;
	/* A test's own daemon: its log goes with it, unless there is
	 * something to read in it (the fixture's goes at exit). */
	const char *keep = getenv("BUNKER_KEEP_LOGS");
	if (d != &bk.d && d->pid == 0 && d->log_dir[0] != '\0') {
		if (problems == 0 && (keep == NULL || *keep == '\0'))
			rm_tree(d->log_dir);
		else
			fprintf(stderr, "bunkerd log kept: %s\n", d->log_path);
	}
	return problems;
}

int client_key_create(const struct client_daemon *d, const char *plan, char *out, size_t len)
{
	return client_key_create_with(d, plan, NULL, out, len);
}

int client_key_create_with(const struct client_daemon *d, const char *plan,
			   const char *const *overrides, char *out, size_t len)
{
	char cli[PATH_MAX + 16];
	snprintf(cli, sizeof(cli), "%s/bunker", d->build);
	if (!is_executable(cli)) {
		fprintf(stderr, "client: no CLI at '%s'\n", cli);
		return -1;
	}
	int pfd[2];
	if (pipe2(pfd, O_CLOEXEC) < 0)
		return -1;
	char plan_s[32];
	snprintf(plan_s, sizeof(plan_s), "%s", plan);
	char *argv[40] = {cli, "--data-dir", (char *)d->data_dir};
	int argc = 3;
	if (d->store[0]) {
		argv[argc++] = "--store";
		argv[argc++] = (char *)d->store;
	}
	argv[argc++] = "keys";
	argv[argc++] = "create";
	argv[argc++] = "--plan";
	argv[argc++] = plan_s;
	for (int i = 0; overrides && overrides[i] && argc < 39; i++)
		argv[argc++] = (char *)overrides[i];
	pid_t pid = spawn_logged(d, argv, pfd[1]);
	close(pfd[1]);
	if (pid < 0) {
		close(pfd[0]);
		return -1;
	}
	char buf[1024];
	size_t n = 0;
	ssize_t r;
	while ((r = read(pfd[0], buf + n, sizeof(buf) - 1 - n)) != 0) {
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			break;
		n += (size_t)r;
		if (n == sizeof(buf) - 1)
			break;
	}
	close(pfd[0]);
	buf[n] = '\0';
	int status = 0;
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		fprintf(stderr, "client: '%s keys create --plan %s' failed (status 0x%x); see %s\n",
			cli, plan, status, d->log_path);
		return -1;
	}
	while (n > 0 && isspace((unsigned char)buf[n - 1]))
		buf[--n] = '\0';
	if (strncmp(buf, "bk_", 3) != 0 || strchr(buf, '\n') != NULL || n >= len) {
		fprintf(stderr, "client: 'keys create' printed '%s', not one key starting bk_\n",
			buf);
		return -1;
	}
	memcpy(out, buf, n + 1);
	return 0;
}

/* ---- fixture ---- */

static void curl_release(void);

static pid_t fixture_owner;
static int fixture_problems;

/* Runs when the test binary exits (in the parent only): removes the log
 * directory after a clean run, keeps it and says where otherwise. */
static void fixture_on_exit(int status, void *arg)
{
	if (getpid() != fixture_owner)
		return;
	if (bk.d.pid > 0)
		client_daemon_stop(&bk.d);
	const char *keep = getenv("BUNKER_KEEP_LOGS");
	if (status == 0 && fixture_problems == 0 && (keep == NULL || *keep == '\0'))
		rm_tree(bk.d.log_dir);
	else if (bk.d.log_dir[0] != '\0')
		fprintf(stderr, "bunkerd log kept: %s\n", bk.d.log_path);
}

int client_fixture_start(void)
{
	return client_fixture_start_args(NULL);
}

int client_fixture_start_measured(void)
{
	const char *asan = getenv("ASAN_OPTIONS");
	char opts[1024];
	snprintf(opts, sizeof(opts), "%s%squarantine_size_mb=8", asan ? asan : "",
		 asan && *asan ? ":" : "");
	setenv("ASAN_OPTIONS", opts, 1);
	return client_fixture_start_args(NULL);
}

int client_fixture_start_args(const char *const *extra_args)
{
	fixture_owner = getpid();
	on_exit(fixture_on_exit, NULL);
	if (geteuid() != 0) {
		snprintf(bk.skip_reason, sizeof(bk.skip_reason),
			 "bunkerd needs root (namespaces, cgroups, mounts); running as uid %d",
			 (int)geteuid());
		return 0;
	}
	if (client_daemon_start(&bk.d, extra_args) < 0)
		return -1;
	if (client_key_create(&bk.d, "free", bk.free_key, sizeof(bk.free_key)) < 0 ||
	    client_key_create(&bk.d, "paid", bk.paid_key, sizeof(bk.paid_key)) < 0) {
		log_dump_tail(&bk.d);
		return -1;
	}
	return 0;
}

static int fixture_stop_status = 0;

void client_fixture_stop(void)
{
	if (bk.d.pid > 0) {
		fixture_stop_status = client_daemon_stop(&bk.d);
	}
	/* The parent's own curl state, so that LeakSanitizer sees no leak. */
	curl_release();
}

int client_fixture_check(void)
{
	int problems = client_daemon_check(&bk.d);
	if (fixture_stop_status != 0) {
		if (fixture_stop_status == -1)
			fprintf(stderr, "    bunkerd did not exit on SIGTERM\n");
		else if (WIFSIGNALED(fixture_stop_status))
			fprintf(stderr, "    bunkerd died of signal %d on SIGTERM\n",
				WTERMSIG(fixture_stop_status));
		else
			fprintf(stderr, "    bunkerd exited with status %d on SIGTERM\n",
				WEXITSTATUS(fixture_stop_status));
		problems++;
	}
	fixture_problems = problems;
	return problems;
}

/* ---- HTTP ---- */

struct buf {
	char *p;
	size_t len, cap;
	bool overflow;
};

static bool buf_add(struct buf *b, const char *data, size_t n)
{
	if (b->len + n + 1 > BODY_MAX) {
		b->overflow = true;
		return false;
	}
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		while (cap < b->len + n + 1)
			cap *= 2;
		char *p = realloc(b->p, cap);
		if (p == NULL)
			return false;
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, data, n);
	b->len += n;
	b->p[b->len] = '\0';
	return true;
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *arg)
{
	return buf_add(arg, data, size * nmemb) ? size * nmemb : 0;
}

static size_t on_header(char *data, size_t size, size_t nmemb, void *arg)
{
	struct buf *b = arg;
	size_t n = size * nmemb;
	/* A new status line (after "100 Continue") starts a new header block. */
	if (n >= 5 && memcmp(data, "HTTP/", 5) == 0)
		b->len = 0;
	return buf_add(b, data, n) ? n : 0;
}

static CURL *curl_handle;
static pid_t curl_owner;

/* This process's handle: a forked test never reuses its parent's (and so
 * never shares a connection with it). */
static CURL *curl_get(void)
{
	if (curl_handle != NULL && curl_owner == getpid()) {
		curl_easy_reset(curl_handle);
		return curl_handle;
	}
	/* An inherited handle is abandoned, not cleaned up: its connection
	 * belongs to the parent. */
	ensure_curl_global();
	curl_handle = curl_easy_init();
	curl_owner = getpid();
	return curl_handle;
}

/* Releases this process's curl state (the parent's, at teardown). */
static void curl_release(void)
{
	if (curl_handle != NULL && curl_owner == getpid()) {
		curl_easy_cleanup(curl_handle);
		curl_global_cleanup();
	}
	curl_handle = NULL;
}

static bool has_header(const char *const *headers, const char *name)
{
	size_t n = strlen(name);
	for (int i = 0; headers != NULL && headers[i] != NULL; i++)
		if (strncasecmp(headers[i], name, n) == 0 && headers[i][n] == ':')
			return true;
	return false;
}

int client_request(const struct client_daemon *d, const struct client_req *req,
		   struct client_resp *resp)
{
	if (d == &bk.d && bk.skip_reason[0] != '\0')
		harness_skip("%s", bk.skip_reason);
	memset(resp, 0, sizeof(*resp));
	CURL *c = curl_get();
	if (c == NULL) {
		snprintf(resp->error, sizeof(resp->error), "curl_easy_init failed");
		resp->body = strdup("");
		return -1;
	}
	char url[4096];
	snprintf(url, sizeof(url), "%s%s", d->base_url, req->path);
	struct buf body = {0}, hdrs = {0};
	struct curl_slist *list = NULL;
	char auth[CLIENT_KEY_MAX + 32];
	if (req->key != NULL) {
		snprintf(auth, sizeof(auth), "Authorization: Bearer %s", req->key);
		list = curl_slist_append(list, auth);
	}
	if (req->body != NULL && !has_header(req->headers, "Content-Type"))
		list = curl_slist_append(list, "Content-Type: application/json");
	/* No "Expect: 100-continue" wait on large bodies unless asked for. */
	if (!has_header(req->headers, "Expect"))
		list = curl_slist_append(list, "Expect:");
	for (int i = 0; req->headers != NULL && req->headers[i] != NULL; i++)
		list = curl_slist_append(list, req->headers[i]);

	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 10L);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, req->timeout_s > 0 ? req->timeout_s : 120L);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, resp->error);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &body);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, &hdrs);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, list);
	const char *method = req->method ? req->method : "GET";
	if (strcmp(method, "GET") == 0 && req->body == NULL)
		curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
	else if (strcmp(method, "HEAD") == 0)
		curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
	else
		curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	if (req->body != NULL) {
		size_t len = req->body_len || req->raw_len ? req->body_len : strlen(req->body);
		curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, req->body);
	}

	double t0 = client_now();
	CURLcode rc = curl_easy_perform(c);
	resp->seconds = client_now() - t0;
	curl_slist_free_all(list);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, NULL);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, NULL);

	resp->body = body.p ? body.p : strdup("");
	resp->body_len = body.len;
	resp->headers = hdrs.p ? hdrs.p : strdup("");
	if (rc != CURLE_OK) {
		if (resp->error[0] == '\0')
			snprintf(resp->error, sizeof(resp->error), "%s", curl_easy_strerror(rc));
		if (body.overflow)
			snprintf(resp->error, sizeof(resp->error), "response body over %zu bytes",
				 BODY_MAX);
		resp->status = 0;
		return -1;
	}
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &resp->status);
	if (resp->body_len > 0) {
		json_error_t jerr;
		resp->json = json_loadb(resp->body, resp->body_len, 0, &jerr);
	}
	return 0;
}

int client_call(const struct client_daemon *d, const char *method, const char *path,
		const char *key, const char *body, struct client_resp *resp)
{
	struct client_req req = {.method = method, .path = path, .key = key, .body = body};
	return client_request(d, &req, resp);
}

int client_call_json(const struct client_daemon *d, const char *method, const char *path,
		     const char *key, const json_t *body, struct client_resp *resp)
{
	char *text = json_dumps(body, JSON_COMPACT | JSON_ENCODE_ANY);
	int rc = client_call(d, method, path, key, text ? text : "", resp);
	free(text);
	return rc;
}

void client_resp_free(struct client_resp *resp)
{
	free(resp->body);
	free(resp->headers);
	json_decref(resp->json);
	resp->body = resp->headers = NULL;
	resp->json = NULL;
}

const char *client_resp_header(const struct client_resp *resp, const char *name, char *buf,
			       size_t len)
{
	size_t nl = strlen(name);
	for (const char *line = resp->headers; line != NULL && *line != '\0';) {
		const char *end = strchr(line, '\n');
		size_t ll = end ? (size_t)(end - line) : strlen(line);
		if (ll > nl && strncasecmp(line, name, nl) == 0 && line[nl] == ':') {
			const char *v = line + nl + 1;
			const char *ve = line + ll;
			while (v < ve && (*v == ' ' || *v == '\t'))
				v++;
			while (ve > v && isspace((unsigned char)ve[-1]))
				ve--;
			snprintf(buf, len, "%.*s", (int)(ve - v), v);
			return buf;
		}
		line = end ? end + 1 : NULL;
	}
	return NULL;
}

const char *client_json_str(const json_t *obj, const char *name)
{
	return json_string_value(json_object_get(obj, name));
}

char *client_urlencode(const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	char *out = malloc(strlen(s) * 3 + 1);
	char *o = out;
	if (out == NULL)
		return NULL;
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (isalnum(*p) || *p == '-' || *p == '_' || *p == '.' || *p == '~') {
			*o++ = (char)*p;
		} else {
			*o++ = '%';
			*o++ = hex[*p >> 4];
			*o++ = hex[*p & 15];
		}
	}
	*o = '\0';
	return out;
}

bool client_parse_time(const char *s, double *out)
{
	if (s == NULL)
		return false;
	int y, mo, da, h, mi, se, n = 0;
	if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &y, &mo, &da, &h, &mi, &se, &n) != 6 || n != 19)
		return false;
	for (int i = 0; i < 19; i++) {
		bool sep = i == 4 || i == 7 || i == 10 || i == 13 || i == 16;
		if (!sep && !isdigit((unsigned char)s[i]))
			return false;
	}
	double frac = 0;
	const char *p = s + 19;
	if (*p == '.') {
		double scale = 0.1;
		p++;
		if (!isdigit((unsigned char)*p))
			return false;
		while (isdigit((unsigned char)*p)) {
			frac += (*p - '0') * scale;
			scale /= 10;
			p++;
		}
	}
	if (p[0] != 'Z' || p[1] != '\0')
		return false;
	if (mo < 1 || mo > 12 || da < 1 || da > 31 || h > 23 || mi > 59 || se > 60)
		return false;
	struct tm tm = {.tm_year = y - 1900,
			.tm_mon = mo - 1,
			.tm_mday = da,
			.tm_hour = h,
			.tm_min = mi,
			.tm_sec = se};
	*out = (double)timegm(&tm) + frac;
	return true;
}

/* ---- assertions ---- */

static void fail_resp(const char *file, int line, const struct client_resp *resp, const char *fmt,
		      ...) __attribute__((format(printf, 4, 5), noreturn));

static void fail_resp(const char *file, int line, const struct client_resp *resp, const char *fmt,
		      ...)
{
	char what[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	if (resp->status == 0)
		harness_fail(file, line, "%s: request failed: %s", what, resp->error);
	int len = resp->body_len > 2000 ? 2000 : (int)resp->body_len;
	harness_fail(file, line, "%s: HTTP %ld, body: %.*s%s", what, resp->status, len,
		     resp->body ? resp->body : "", resp->body_len > 2000 ? "..." : "");
}

void client_check_status(const char *file, int line, const struct client_resp *resp, long want)
{
	if (resp->status != want)
		fail_resp(file, line, resp, "want HTTP %ld", want);
	if (want == 200 && !json_is_object(resp->json))
		fail_resp(file, line, resp, "want a JSON object");
}

void client_check_error(const char *file, int line, const struct client_resp *resp, long want,
			const char *code)
{
	if (resp->status != want)
		fail_resp(file, line, resp, "want HTTP %ld %s", want, code);
	char ct[128];
	if (client_resp_header(resp, "Content-Type", ct, sizeof(ct)) == NULL ||
	    strncasecmp(ct, "application/json", 16) != 0)
		fail_resp(file, line, resp, "want Content-Type application/json, got '%s'",
			  client_resp_header(resp, "Content-Type", ct, sizeof(ct)) ? ct : "");
	json_t *e = json_object_get(resp->json, "error");
	if (!json_is_object(e))
		fail_resp(file, line, resp, "want an {\"error\":{...}} envelope");
	const char *got = client_json_str(e, "code");
	if (got == NULL || strcmp(got, code) != 0)
		fail_resp(file, line, resp, "want error code '%s'", code);
	const char *msg = client_json_str(e, "message");
	if (msg == NULL || *msg == '\0')
		fail_resp(file, line, resp, "want a non-empty error.message");
	if (!json_is_object(json_object_get(e, "details")))
		fail_resp(file, line, resp, "want error.details to be an object");
}

void client_check_error_field(const char *file, int line, const struct client_resp *resp, long want,
			      const char *code, const char *field)
{
	client_check_error(file, line, resp, want, code);
	json_t *e = json_object_get(resp->json, "error");
	const char *msg = client_json_str(e, "message");
	char *details = json_dumps(json_object_get(e, "details"), JSON_COMPACT | JSON_ENCODE_ANY);
	bool named = strstr(msg, field) != NULL || (details && strstr(details, field) != NULL);
	free(details);
	if (!named)
		fail_resp(file, line, resp, "want the error to name the field '%s'", field);
}

void client_must_key_at(const char *file, int line, const char *plan, char *out, size_t len)
{
	if (bk.skip_reason[0] != '\0')
		harness_skip("%s", bk.skip_reason);
	if (client_key_create(&bk.d, plan, out, len) != 0)
		harness_fail(file, line, "cannot create a %s key", plan);
}

char *client_must_create_at(const char *file, int line, const char *key, const char *body)
{
	struct client_resp r;
	client_call(&bk.d, "POST", "/sessions/create", key, body ? body : "{}", &r);
	if (r.status != 200 || !json_is_object(r.json))
		fail_resp(file, line, &r, "create session");
	const char *id = client_json_str(r.json, "sessionId");
	if (id == NULL)
		fail_resp(file, line, &r, "create session: no sessionId");
	char *out = strdup(id);
	client_resp_free(&r);
	return out;
}

void client_must_delete_at(const char *file, int line, const char *key, const char *id)
{
	char path[256];
	snprintf(path, sizeof(path), "/sessions/%s", id);
	struct client_resp r;
	client_call(&bk.d, "DELETE", path, key, NULL, &r);
	if (r.status != 200)
		fail_resp(file, line, &r, "delete session %s", id);
	client_resp_free(&r);
}

static void must_exec_on(const char *file, int line, const struct client_daemon *d, const char *key,
			 const char *id, const char *command, const json_t *extra,
			 struct client_resp *out)
{
	json_t *body = extra ? json_deep_copy(extra) : json_object();
	json_object_set_new(body, "sessionId", json_string(id));
	if (command != NULL)
		json_object_set_new(body, "command", json_string(command));
	struct client_req req = {.method = "POST", .path = "/execute", .key = key};
	char *text = json_dumps(body, JSON_COMPACT);
	req.body = text;
	client_request(d, &req, out);
	free(text);
	json_decref(body);
	if (out->status != 200 || !json_is_object(out->json))
		fail_resp(file, line, out, "execute '%s'", command ? command : "(code)");
}

void client_must_exec_at(const char *file, int line, const char *key, const char *id,
			 const char *command, const json_t *extra, struct client_resp *out)
{
	must_exec_on(file, line, &bk.d, key, id, command, extra, out);
}

char *client_must_run_on_at(const char *file, int line, const struct client_daemon *d,
			    const char *key, const char *id, const char *command)
{
	struct client_resp r;
	must_exec_on(file, line, d, key, id, command, NULL, &r);
	json_t *code = json_object_get(r.json, "exitCode");
	if (!json_is_integer(code) || json_integer_value(code) != 0)
		fail_resp(file, line, &r, "'%s' did not exit 0", command);
	const char *out = client_json_str(r.json, "stdout");
	if (out == NULL)
		fail_resp(file, line, &r, "'%s': no stdout", command);
	char *copy = strdup(out);
	client_resp_free(&r);
	return copy;
}

char *client_must_run_at(const char *file, int line, const char *key, const char *id,
			 const char *command)
{
	return client_must_run_on_at(file, line, &bk.d, key, id, command);
}

const char *client_must_str(const json_t *obj, const char *name, const char *context)
{
	const char *s = client_json_str(obj, name);
	CHECK_MSG(s != NULL, "'%s' is not a string in %.2000s", name, context);
	return s;
}

long long client_must_int(const json_t *obj, const char *name, const char *context)
{
	json_t *v = json_object_get(obj, name);
	CHECK_MSG(json_is_integer(v), "'%s' is not an integer in %.2000s", name, context);
	return json_integer_value(v);
}

double client_must_num(const json_t *obj, const char *name, const char *context)
{
	json_t *v = json_object_get(obj, name);
	CHECK_MSG(json_is_number(v), "'%s' is not a number in %.2000s", name, context);
	return json_number_value(v);
}

bool client_must_bool(const json_t *obj, const char *name, const char *context)
{
	json_t *v = json_object_get(obj, name);
	CHECK_MSG(json_is_boolean(v), "'%s' is not a boolean in %.2000s", name, context);
	return json_is_true(v);
}

long long client_store_bytes(const char *dir)
{
	long long total = 0;
	static const char *const names[] = {"bunker.db", "bunker.db-wal"};
	for (int i = 0; i < 2; i++) {
		char path[PATH_MAX + 32];
		struct stat st;
		snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
		if (stat(path, &st) == 0)
			total += st.st_size;
	}
	return total;
}
