/* Black-box tests of the session lifecycle (API.md "Lifecycle"): active ->
 * idle (frozen) -> deep sleep (saved to a snapshot) -> back on a request,
 * expiry, DELETE in every state, and what a restart of the daemon keeps,
 * after a clean stop (SIGTERM) and after a crash (SIGKILL).
 *
 * The shared daemon runs with short thresholds (--idle-after 1
 * --deep-sleep-after 3 --min-ttl 2), so that each step takes seconds. Next
 * to the HTTP answers, the tests look at the host the way an operator
 * would: the session's freezer state, its cgroups and the processes in
 * them, the mounts that name it, its run directory and its snapshot file,
 * and the daemon's log lines about deep sleep.
 *
 * The two restart tests start a daemon of their own (a test runs in a child
 * of the process that started the shared one, so it could not wait for it,
 * and a restart would disturb the other tests' sessions). Every test uses a
 * key of its own, so that its polling never meets another test's rate
 * limit, and deletes its sessions when it passes.
 */
#include "../client.h"
#include "util/file.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define IDLE_AFTER_S 1
#define DEEP_AFTER_S 3

static const char *const lifecycle_args[] = {
    "--idle-after", "1", "--deep-sleep-after", "3", "--min-ttl", "2", NULL};

CLIENT_FIXTURE(lifecycle_args)

/* ---- small helpers ---- */

static void sleep_s(double s)
{
	struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static bool path_exists(const char *path)
{
	struct stat st;
	return lstat(path, &st) == 0;
}

static void snapshot_path(const struct client_daemon *d, const char *id, char *out, size_t len)
{
	snprintf(out, len, "%s/snapshots/%s.erofs", d->data_dir, id);
}

static void run_dir_path(const struct client_daemon *d, const char *id, char *out, size_t len)
{
	snprintf(out, len, "%s/run/%s", d->data_dir, id);
}

/* ---- the host's view of a session ---- */

static const char *const v1_controllers[] = {"memory", "cpu", "cpuacct", "pids", "freezer"};

static bool cgroup_v2(void)
{
	return access("/sys/fs/cgroup/cgroup.controllers", F_OK) == 0;
}

/* The session's cgroup directory for a v1 controller (or the v2 one when
 * controller is NULL), found under whichever parent the daemon named
 * ("bunker" or "bunker-<hash of its data directory>"); false when none. */
static bool session_cgroup(const char *controller, const char *id, char *out, size_t len)
{
	char pattern[PATH_MAX];
	snprintf(pattern, sizeof(pattern), "/sys/fs/cgroup/%s%sbunker*/%s",
		 controller ? controller : "", controller ? "/" : "", id);
	glob_t g;
	bool found = glob(pattern, GLOB_ONLYDIR | GLOB_NOSORT, NULL, &g) == 0 && g.gl_pathc > 0;
	if (found)
		snprintf(out, len, "%s", g.gl_pathv[0]);
	globfree(&g);
	return found;
}

/* 1 frozen, 0 thawed, -1 no freezer for the session. */
static int freezer_state(const char *id)
{
	char dir[PATH_MAX], path[PATH_MAX + 32];
	bool v2 = cgroup_v2();
	if (!session_cgroup(v2 ? NULL : "freezer", id, dir, sizeof(dir)))
		return -1;
	snprintf(path, sizeof(path), "%s/%s", dir, v2 ? "cgroup.events" : "freezer.state");
	char *text = read_file_all(path, NULL);
	if (text == NULL)
		return -1;
	int r = v2 ? strstr(text, "frozen 1") != NULL : strncmp(text, "FROZEN", 6) == 0;
	free(text);
	return r;
}

/* Waits up to timeout_s for the freezer to say want (1 or 0). */
static bool freezer_wait(const char *id, int want, double timeout_s)
{
	double deadline = client_now() + timeout_s;
	for (;;) {
		if (freezer_state(id) == want)
			return true;
		if (client_now() > deadline)
			return false;
		sleep_s(0.02);
	}
}

/* How many of the session's cgroup directories exist; their names go to
 * which. */
static int cgroup_dirs(const char *id, char *which, size_t len)
{
	int n = 0;
	which[0] = '\0';
	char path[PATH_MAX];
	size_t nc = sizeof(v1_controllers) / sizeof(v1_controllers[0]);
	for (size_t i = 0; i < (cgroup_v2() ? 1 : nc); i++) {
		if (!session_cgroup(cgroup_v2() ? NULL : v1_controllers[i], id, path, sizeof(path)))
			continue;
		size_t used = strlen(which);
		snprintf(which + used, len - used, "%s%s", n ? " " : "", path);
		n++;
	}
	return n;
}

static pid_t proc_ppid(pid_t pid)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	char *text = read_file_all(path, NULL);
	if (text == NULL)
		return -1;
	/* "pid (comm) S ppid ...": comm may hold anything but the last ')'. */
	const char *p = strrchr(text, ')');
	int ppid = -1;
	if (p == NULL || sscanf(p + 1, " %*c %d", &ppid) != 1)
		ppid = -1;
	free(text);
	return ppid;
}

static bool proc_descends_from(pid_t pid, pid_t ancestor)
{
	for (int depth = 0; pid > 1 && depth < 64; depth++) {
		pid = proc_ppid(pid);
		if (pid == ancestor)
			return true;
	}
	return false;
}

static void proc_comm(pid_t pid, char *out, size_t len)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/comm", (int)pid);
	char *text = read_file_all(path, NULL);
	snprintf(out, len, "%.*s", text ? (int)strcspn(text, "\n") : 1, text ? text : "?");
	free(text);
}

/* Host pids of every process whose cgroup paths name the session (at most
 * max into pids); returns how many there are. */
static int session_procs(const char *id, pid_t *pids, int max)
{
	DIR *dp = opendir("/proc");
	if (dp == NULL)
		return -1;
	int n = 0;
	struct dirent *de;
	while ((de = readdir(dp)) != NULL) {
		char *end;
		long pid = strtol(de->d_name, &end, 10);
		if (*end != '\0' || pid <= 0)
			continue;
		char path[64];
		snprintf(path, sizeof(path), "/proc/%ld/cgroup", pid);
		char *text = read_file_all(path, NULL);
		if (text != NULL && strstr(text, id) != NULL) {
			if (n < max)
				pids[n] = (pid_t)pid;
			n++;
		}
		free(text);
	}
	closedir(dp);
	return n;
}

/* Mount points that name the session, in our mount table or in the
 * daemon's own namespace (client_daemon_mountinfo()); at most max go to
 * mounts (caller frees each). */
static int session_mounts(const struct client_daemon *d, const char *id, char **mounts, int max)
{
	char *tables[2] = {read_file_all("/proc/self/mountinfo", NULL), client_daemon_mountinfo(d)};
	int n = 0;
	for (int t = 0; t < 2; t++) {
		for (char *line = tables[t]; line && *line;) {
			char *eol = strchr(line, '\n');
			if (eol)
				*eol = '\0';
			if (strstr(line, id) != NULL) {
				char mnt[PATH_MAX];
				if (sscanf(line, "%*s %*s %*s %*s %4095s", mnt) != 1)
					snprintf(mnt, sizeof(mnt), "%.200s", line);
				if (n < max)
					mounts[n] = strdup(mnt);
				n++;
			}
			line = eol ? eol + 1 : NULL;
		}
		free(tables[t]);
	}
	return n;
}

static void mounts_free(char **mounts, int n, int max)
{
	for (int i = 0; i < n && i < max; i++)
		free(mounts[i]);
}

/* Fails unless the host holds nothing of the session: no process in its
 * cgroups, no cgroup directory, no mount naming it, no run directory and
 * (unless snapshot_allowed) no snapshot. Polls up to timeout_s first, for
 * what is torn down after the answer (expiry). */
#define CHECK_HOST_CLEAN(d, id, snapshot_allowed, timeout_s)                                       \
	host_clean_at(__FILE__, __LINE__, d, id, snapshot_allowed, timeout_s)
static void host_clean_at(const char *file, int line, const struct client_daemon *d, const char *id,
			  bool snapshot_allowed, double timeout_s)
{
	double deadline = client_now() + timeout_s;
	char snap[PATH_MAX], run[PATH_MAX], cgs[2048];
	snapshot_path(d, id, snap, sizeof(snap));
	run_dir_path(d, id, run, sizeof(run));
	for (;;) {
		pid_t pids[16];
		char *mounts[16];
		int np = session_procs(id, pids, 16);
		int nm = session_mounts(d, id, mounts, 16);
		int nc = cgroup_dirs(id, cgs, sizeof(cgs));
		bool has_run = path_exists(run);
		bool has_snap = !snapshot_allowed && path_exists(snap);
		bool clean = np == 0 && nm == 0 && nc == 0 && !has_run && !has_snap;
		if (clean || client_now() > deadline) {
			if (!clean) {
				for (int i = 0; i < np && i < 16; i++) {
					char comm[64];
					proc_comm(pids[i], comm, sizeof(comm));
					fprintf(stderr,
						"    process %d (%s) is in the session's cgroup\n",
						(int)pids[i], comm);
				}
				for (int i = 0; i < nm && i < 16; i++)
					fprintf(stderr, "    mount '%s' names the session\n",
						mounts[i]);
			}
			mounts_free(mounts, nm, 16);
			if (!clean)
				harness_fail(
				    file, line,
				    "session %s left on the host after %.1f s: %d processes, "
				    "%d mounts, cgroups [%s], run dir %s, snapshot %s",
				    id, timeout_s, np, nm, cgs, has_run ? "present" : "gone",
				    has_snap ? "present" : "gone");
			return;
		}
		mounts_free(mounts, nm, 16);
		sleep_s(0.05);
	}
}

/* ---- requests, on any daemon ---- */

static void fail_resp_at(const char *file, int line, const struct client_resp *r, const char *what)
    __attribute__((noreturn));
static void fail_resp_at(const char *file, int line, const struct client_resp *r, const char *what)
{
	if (r->status == 0)
		harness_fail(file, line, "%s: request failed: %s", what, r->error);
	harness_fail(file, line, "%s: HTTP %ld, body: %.1500s", what, r->status,
		     r->body ? r->body : "");
}

static void call(const struct client_daemon *d, const char *method, const char *path,
		 const char *key, const char *body, struct client_resp *r)
{
	client_call(d, method, path, key, body, r);
}

#define create_on(d, key, body) create_on_at(__FILE__, __LINE__, d, key, body)
static char *create_on_at(const char *file, int line, const struct client_daemon *d,
			  const char *key, const char *body)
{
	struct client_resp r;
	call(d, "POST", "/sessions/create", key, body ? body : "{}", &r);
	const char *id = r.status == 200 ? client_json_str(r.json, "sessionId") : NULL;
	if (id == NULL)
		fail_resp_at(file, line, &r, "create session");
	char *out = strdup(id);
	client_resp_free(&r);
	return out;
}

#define delete_on(d, key, id) delete_on_at(__FILE__, __LINE__, d, key, id)
static void delete_on_at(const char *file, int line, const struct client_daemon *d, const char *key,
			 const char *id)
{
	char path[128];
	snprintf(path, sizeof(path), "/sessions/%s", id);
	struct client_resp r;
	call(d, "DELETE", path, key, NULL, &r);
	if (r.status != 200)
		fail_resp_at(file, line, &r, "delete session");
	client_resp_free(&r);
}

static void get_on(const struct client_daemon *d, const char *key, const char *id,
		   struct client_resp *r)
{
	char path[128];
	snprintf(path, sizeof(path), "/sessions/%s", id);
	call(d, "GET", path, key, NULL, r);
}

/* GET /sessions/{id}: the state (copied into state) and lastActive (unix
 * seconds); fails unless 200. */
#define info_on(d, key, id, state, len, last_active)                                               \
	info_on_at(__FILE__, __LINE__, d, key, id, state, len, last_active)
static void info_on_at(const char *file, int line, const struct client_daemon *d, const char *key,
		       const char *id, char *state, size_t len, double *last_active)
{
	struct client_resp r;
	get_on(d, key, id, &r);
	if (r.status != 200 || !json_is_object(r.json))
		fail_resp_at(file, line, &r, "get session");
	const char *st = client_json_str(r.json, "state");
	double la;
	if (st == NULL || !client_parse_time(client_json_str(r.json, "lastActive"), &la))
		fail_resp_at(file, line, &r, "get session: no state or lastActive");
	if (state != NULL)
		snprintf(state, len, "%s", st);
	if (last_active != NULL)
		*last_active = la;
	client_resp_free(&r);
}

/* Polls GET until the state is want; false after timeout_s. */
#define wait_state(d, key, id, want, timeout_s)                                                    \
	wait_state_at(__FILE__, __LINE__, d, key, id, want, timeout_s)
static bool wait_state_at(const char *file, int line, const struct client_daemon *d,
			  const char *key, const char *id, const char *want, double timeout_s)
{
	double deadline = client_now() + timeout_s;
	char state[32];
	for (;;) {
		info_on_at(file, line, d, key, id, state, sizeof(state), NULL);
		if (strcmp(state, want) == 0)
			return true;
		if (client_now() > deadline) {
			fprintf(stderr, "    session %s still '%s' after %.1f s (want '%s')\n", id,
				state, timeout_s, want);
			return false;
		}
		sleep_s(0.1);
	}
}

static void execute_on(const struct client_daemon *d, const char *key, const char *id,
		       const char *command, struct client_resp *r)
{
	json_t *body = json_pack("{s:s,s:s}", "sessionId", id, "command", command);
	client_call_json(d, "POST", "/execute", key, body, r);
	json_decref(body);
}

/* Runs command; fails unless 200 with exitCode 0. Returns stdout (caller
 * frees). */
#define run_on(d, key, id, command) run_on_at(__FILE__, __LINE__, d, key, id, command)
static char *run_on_at(const char *file, int line, const struct client_daemon *d, const char *key,
		       const char *id, const char *command)
{
	struct client_resp r;
	execute_on(d, key, id, command, &r);
	json_t *code = json_object_get(r.json, "exitCode");
	const char *out = client_json_str(r.json, "stdout");
	if (r.status != 200 || !json_is_integer(code) || json_integer_value(code) != 0 ||
	    out == NULL) {
		fprintf(stderr, "    command: %.300s\n", command);
		fail_resp_at(file, line, &r, "execute did not exit 0");
	}
	char *copy = strdup(out);
	client_resp_free(&r);
	return copy;
}

static void files_write_on(const struct client_daemon *d, const char *key, const char *id,
			   const char *path, const char *content, struct client_resp *r)
{
	json_t *body =
	    json_pack("{s:s,s:s,s:s}", "sessionId", id, "path", path, "content", content);
	client_call_json(d, "POST", "/files/write", key, body, r);
	json_decref(body);
}

static void files_read_on(const struct client_daemon *d, const char *key, const char *id,
			  const char *path, struct client_resp *r)
{
	char *p = client_urlencode(path);
	char url[512];
	snprintf(url, sizeof(url), "/files/read?sessionId=%s&path=%s", id, p);
	free(p);
	call(d, "GET", url, key, NULL, r);
}

/* Shorthands on the shared daemon. */
#define create(key, body) create_on(&bk.d, key, body)
#define run(key, id, command) run_on(&bk.d, key, id, command)
#define info(key, id, state, len, la) info_on(&bk.d, key, id, state, len, la)
#define wait_for(key, id, want, timeout_s) wait_state(&bk.d, key, id, want, timeout_s)

static char *new_key(const char *plan)
{
	char key[CLIENT_KEY_MAX];
	client_must_key(plan, key, sizeof(key));
	return strdup(key);
}

/* Waits for deep sleep (the shared daemon's threshold plus margin), then
 * for the move to finish: the state is written before the save (a crash
 * in between finds the disk), so GET says deep-sleep a moment before the
 * snapshot exists and the disk is released, which the log line marks. */
static void deep_sleep_wait(const char *key, const char *id)
{
	CHECK_MSG(wait_for(key, id, "deep-sleep", DEEP_AFTER_S + 5),
		  "session %s did not reach deep sleep in %d s", id, DEEP_AFTER_S + 5);
	char snap[PATH_MAX];
	snapshot_path(&bk.d, id, snap, sizeof(snap));
	double deadline = client_now() + 10;
	while ((!path_exists(snap) || client_log_count(&bk.d, id, "in deep sleep:") < 1) &&
	       client_now() < deadline)
		sleep_s(0.02);
	CHECK_MSG(path_exists(snap), "deep-sleeping session %s has no snapshot '%s'", id, snap);
	CHECK_MSG(client_log_count(&bk.d, id, "in deep sleep:") >= 1,
		  "no 'in deep sleep' line in the log for %s", id);
}

/* ---- idle ---- */

/* Idle freezes the session (processes kept, memory kept); GET neither
 * thaws it nor counts as activity; an execute thaws it transparently. */
TEST(idle_freezes_and_execute_thaws)
{
	char *key = new_key("paid");
	char *id = create(key, NULL);
	char *out = run(key, id, "setsid sleep 4242 >/dev/null 2>&1 & echo $!");
	int pid = atoi(out);
	CHECK_MSG(pid > 1, "no pid from the background start: '%s'", out);
	free(out);
	char state[32];
	double la0, la1, la2, la3;
	info(key, id, state, sizeof(state), &la0);
	CHECK_STR_EQ(state, "active");
	CHECK_INT_EQ(freezer_state(id), 0);

	double t0 = client_now();
	CHECK(wait_for(key, id, "idle", IDLE_AFTER_S + 2));
	double went_idle = client_now() - t0;
	CHECK_MSG(freezer_wait(id, 1, 1.0), "state idle but the freezer says %d (want frozen)",
		  freezer_state(id));

	/* Two GETs, apart: still idle, still frozen, lastActive unchanged. */
	info(key, id, state, sizeof(state), &la1);
	CHECK_STR_EQ(state, "idle");
	sleep_s(0.3);
	info(key, id, state, sizeof(state), &la2);
	CHECK_STR_EQ(state, "idle");
	CHECK_INT_EQ(freezer_state(id), 1);
	CHECK_MSG(la0 == la1 && la1 == la2, "GET moved lastActive: %.3f %.3f %.3f", la0, la1, la2);
	CHECK_MSG(went_idle < IDLE_AFTER_S + 1.0, "went idle only after %.2f s", went_idle);

	/* The same process, alive, after the execute that thaws it. */
	double before = (double)time(NULL);
	char cmd[128];
	snprintf(cmd, sizeof(cmd),
		 "kill -0 %d && echo alive && tr '\\0' ' ' < /proc/%d/cmdline && echo", pid, pid);
	out = run(key, id, cmd);
	CHECK_STR_EQ(out, "alive\nsleep 4242 \n");
	free(out);
	info(key, id, state, sizeof(state), &la3);
	CHECK_STR_EQ(state, "active");
	CHECK_INT_EQ(freezer_state(id), 0);
	CHECK_MSG(la3 > la2 + IDLE_AFTER_S && la3 >= before - 1 && la3 <= (double)time(NULL) + 1,
		  "lastActive after execute %.3f (before: %.3f, now %ld)", la3, la2,
		  (long)time(NULL));

	delete_on(&bk.d, key, id);
	CHECK_HOST_CLEAN(&bk.d, id, false, 0);
	free(id);
	free(key);
}

/* Every request that touches an idle session thaws it, not only execute
 * (API.md: the files and execution endpoints), and answers at once. The
 * files endpoints take turns on one session; each execution endpoint gets
 * a session of its own, so that one that hangs cannot hold up the others
 * (a DELETE ends what hangs). */
enum touch_body { BODY_NONE, BODY_WRITE, BODY_DELETE, BODY_KILL };

struct touch {
	const char *name, *method, *path, *tail; /* path, session id, tail */
	enum touch_body body;
};

static const struct touch touches[] = {
    {"files/read", "GET", "/files/read?sessionId=", "&path=note.txt", BODY_NONE},
    {"files/list", "GET", "/files/list?sessionId=", "", BODY_NONE},
    {"files/write", "POST", "/files/write", NULL, BODY_WRITE},
    {"files/delete", "POST", "/files/delete", NULL, BODY_DELETE},
    {"execution/processes", "GET", "/execution/processes?sessionId=", "", BODY_NONE},
    {"execution/kill", "POST", "/execution/kill", NULL, BODY_KILL},
};

/* Sends t to the idle session id (with a time limit); returns true when it
 * answered 200 and left the session active and thawed. */
static bool touch_idle(const char *key, const char *id, int pid, const struct touch *t)
{
	CHECK(wait_for(key, id, "idle", IDLE_AFTER_S + 2));
	CHECK(freezer_wait(id, 1, 1.0));
	char path[256], body[256];
	if (t->tail != NULL)
		snprintf(path, sizeof(path), "%s%s%s", t->path, id, t->tail);
	else
		snprintf(path, sizeof(path), "%s", t->path);
	if (t->body == BODY_WRITE)
		snprintf(body, sizeof(body),
			 "{\"sessionId\":\"%s\",\"path\":\"w.txt\",\"content\":\"w\"}", id);
	else if (t->body == BODY_DELETE)
		snprintf(body, sizeof(body), "{\"sessionId\":\"%s\",\"path\":\"w.txt\"}", id);
	else
		snprintf(body, sizeof(body), "{\"sessionId\":\"%s\",\"pid\":%d}", id, pid);
	struct client_req req = {.method = t->method,
				 .path = path,
				 .key = key,
				 .body = t->body != BODY_NONE ? body : NULL,
				 .timeout_s = 10};
	struct client_resp r;
	double t0 = client_now();
	client_request(&bk.d, &req, &r);
	double took = client_now() - t0;
	bool ok = r.status == 200;
	if (!ok)
		fprintf(stderr, "    %s on an idle session: %s after %.1f s: %.300s\n", t->name,
			r.status ? "HTTP error" : "no answer", took, r.status ? r.body : r.error);
	client_resp_free(&r);
	if (!ok)
		return false;
	char state[32];
	info(key, id, state, sizeof(state), NULL);
	int frozen = freezer_state(id);
	if (strcmp(state, "active") != 0 || frozen != 0) {
		fprintf(stderr, "    %s on an idle session left it '%s' (freezer %d)\n", t->name,
			state, frozen);
		return false;
	}
	return true;
}

TEST_TIMEOUT(idle_any_request_thaws, 120)
{
	char *key = new_key("paid");
	char *id = create(key, NULL);
	free(run(key, id, "echo hi > note.txt; setsid sleep 4243 >/dev/null 2>&1 &"));
	size_t n = sizeof(touches) / sizeof(touches[0]);
	int failures = 0;
	for (size_t i = 0; i < n; i++)
		if (strncmp(touches[i].name, "files/", 6) == 0)
			failures += !touch_idle(key, id, 0, &touches[i]);
	/* The background process lived through every freeze. */
	char *out = run(key, id,
			"for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline; echo; done "
			"| grep -c '^sleep 4243 $'");
	CHECK_STR_EQ(out, "1\n");
	free(out);
	delete_on(&bk.d, key, id);
	for (size_t i = 0; i < n; i++) {
		if (strncmp(touches[i].name, "files/", 6) == 0)
			continue;
		char *own = create(key, NULL);
		char *pid = run(key, own, "setsid sleep 4248 >/dev/null 2>&1 & echo $!");
		failures += !touch_idle(key, own, atoi(pid), &touches[i]);
		free(pid);
		delete_on(&bk.d, key, own);
		free(own);
	}
	CHECK_MSG(failures == 0, "%d of %zu requests on an idle session failed (above)", failures,
		  n);
	free(id);
	free(key);
}

/* ---- deep sleep ---- */

/* A tree with what programs rely on: nested and empty directories, a
 * private directory, links, a large sparse file, random bytes, an
 * extended attribute and an executable. */
static const char tree_script[] =
    "set -e; cd /workspace\n"
    "mkdir -p tree/a/b/c empty private\n"
    "chmod 0700 private\n"
    "echo deep > tree/a/b/c/deep.txt; echo top > tree/top.txt\n"
    "echo secret > private/s.txt; chmod 0600 private/s.txt\n"
    "for i in $(seq 1 200); do echo \"small $i\" > tree/a/small_$i.txt; done\n"
    "ln -s tree/a/b/c/deep.txt link; ln -s /nonexistent dangling\n"
    "echo hard > hard1; ln hard1 hard2\n"
    "truncate -s 50M sparse.bin\n"
    "printf 'in the middle' | dd of=sparse.bin bs=1 seek=31457280 conv=notrunc 2>/dev/null\n"
    "head -c 5242880 /dev/urandom > random.bin\n"
    "printf '#!/bin/sh\\necho tool ran\\n' > tool.sh; chmod 0755 tool.sh\n"
    "echo attrs > xattr.txt\n"
    "if [ -x /usr/bin/setfattr ]; then setfattr -n user.bunker -v kept xattr.txt;\n"
    "else python3 -c 'import os; os.setxattr(\"xattr.txt\", \"user.bunker\", b\"kept\")';\n"
    "fi\n"
    "setsid sleep 4244 >/dev/null 2>&1 &\n";

/* What must come back identical: names, modes, sizes (not of directories,
 * which each file system counts its own way: tmpfs by entries, EROFS in
 * bytes), types, link
 * targets, owners, contents, whole-second times, the xattr, the hard link
 * and the executable bit at work. */
static const char tree_state_script[] =
    "cd /workspace\n"
    "echo '# listing'; find . \\( -type d -printf '%p %m - %y %l %U:%G\\n' \\) -o "
    "-printf '%p %m %s %y %l %U:%G\\n' | LC_ALL=C sort\n"
    "echo '# sums'; find . -type f -print0 | LC_ALL=C sort -z | xargs -0 md5sum\n"
    "echo '# mtimes'; find . ! -type l -printf '%p %TY-%Tm-%Td %TH:%TM:%.2TS\\n' |"
    " LC_ALL=C sort\n"
    "echo '# xattr'; python3 -c 'import os; print(os.getxattr(\"xattr.txt\", "
    "\"user.bunker\").decode())'\n"
    "echo '# hard link'; [ \"$(stat -c %i hard1)\" = \"$(stat -c %i hard2)\" ] && "
    "echo same inode; stat -c %h hard1\n"
    "echo '# exec'; ./tool.sh\n";

static long sparse_kb(const char *key, const char *id)
{
	char *out = run(key, id, "du -k /workspace/sparse.bin | cut -f1");
	long kb = atol(out);
	free(out);
	return kb;
}

/* Prints the lines (up to 10) where two multi-line texts differ. */
static void print_differences(const char *a, const char *b)
{
	int line = 1, shown = 0;
	while (*a && *b && shown < 10) {
		size_t la = strcspn(a, "\n"), lb = strcspn(b, "\n");
		if (la != lb || memcmp(a, b, la) != 0) {
			fprintf(stderr, "    line %d before: %.*s\n    line %d after:  %.*s\n",
				line, (int)la, a, line, (int)lb, b);
			shown++;
		}
		a += la + (a[la] != '\0');
		b += lb + (b[lb] != '\0');
		line++;
	}
	if ((*a == '\0') != (*b == '\0'))
		fprintf(stderr, "    one text ends at line %d\n", line);
}

TEST_TIMEOUT(deep_sleep_round_trip, 90)
{
	char *key = new_key("paid");
	char *id = create(key, NULL);
	free(run(key, id, tree_script));
	char *before = run(key, id, tree_state_script);
	long kb_before = sparse_kb(key, id);
	CHECK_MSG(kb_before < 1024, "sparse.bin takes %ld KB before sleep", kb_before);
	CHECK_MSG(strstr(before, "./sparse.bin 644 52428800 f") != NULL &&
		      strstr(before, "./private 700 ") != NULL &&
		      strstr(before, "# xattr\nkept\n") != NULL &&
		      strstr(before, "same inode\n2\n") != NULL &&
		      strstr(before, "tool ran\n") != NULL,
		  "the tree was not built as meant:\n%s", before);

	struct client_resp fr;
	char fpath[128];
	snprintf(fpath, sizeof(fpath), "/sessions/%s", id);
	call(&bk.d, "GET", fpath, key, NULL, &fr);
	CHECK_STATUS(&fr, 200);
	long long files_awake = client_must_int(fr.json, "filesCount", fr.body);
	CHECK(files_awake > 5);
	client_resp_free(&fr);
	deep_sleep_wait(key, id);
	char snap[PATH_MAX], run_dir[PATH_MAX], cgs[1024];
	snapshot_path(&bk.d, id, snap, sizeof(snap));
	run_dir_path(&bk.d, id, run_dir, sizeof(run_dir));
	/* A sleeping session holds nothing but its snapshot. */
	CHECK_HOST_CLEAN(&bk.d, id, true, 1.0);
	CHECK_MSG(cgroup_dirs(id, cgs, sizeof(cgs)) == 0, "cgroups left: %s", cgs);
	CHECK(!path_exists(run_dir));
	CHECK_INT_EQ(client_log_count(&bk.d, id, "in deep sleep:"), 1);

	/* Neither GET /sessions/{id} nor GET /sessions wakes it. */
	char state[32];
	info(key, id, state, sizeof(state), NULL);
	CHECK_STR_EQ(state, "deep-sleep");
	struct client_resp r;
	call(&bk.d, "GET", "/sessions", key, NULL, &r);
	CHECK_STATUS(&r, 200);
	json_t *first = json_array_get(json_object_get(r.json, "sessions"), 0);
	CHECK_STR_EQ(client_json_str(first, "state"), "deep-sleep");
	/* Asleep, it still counts the files its snapshot holds. */
	CHECK_MSG(client_must_int(first, "filesCount", r.body) == files_awake,
		  "filesCount asleep %lld, awake %lld",
		  client_must_int(first, "filesCount", r.body), files_awake);
	client_resp_free(&r);
	sleep_s(0.3);
	info(key, id, state, sizeof(state), NULL);
	CHECK_STR_EQ(state, "deep-sleep");
	CHECK(path_exists(snap));
	CHECK_INT_EQ(client_log_count(&bk.d, id, "woke from deep sleep"), 0);

	/* The first request brings every file back as it was. */
	char *after = run(key, id, tree_state_script);
	/* Checked last, so that the rest is checked too. */
	bool same = strcmp(before, after) == 0;
	if (!same)
		print_differences(before, after);
	/* The wake wrote nothing on the session's disk: the files are read
	 * from the image under it (which counts a sparse file's size as its
	 * blocks, so du says 50 MB). */
	char *used = run(key, id, "df -k --output=used /workspace | tail -1");
	CHECK_MSG(atol(used) < 1024, "the disk holds %s KB after the wake", used);
	free(used);
	info(key, id, state, sizeof(state), NULL);
	CHECK_STR_EQ(state, "active");
	CHECK_INT_EQ(client_log_count(&bk.d, id, "woke from deep sleep"), 1);
	CHECK_MSG(!path_exists(snap), "snapshot '%s' still there after the wake", snap);

	/* Processes do not survive deep sleep (documented): the background
	 * sleep is gone, in the process list and in the sandbox's /proc. */
	char path[128];
	snprintf(path, sizeof(path), "/execution/processes?sessionId=%s", id);
	call(&bk.d, "GET", path, key, NULL, &r);
	CHECK_STATUS(&r, 200);
	CHECK_MSG(strstr(r.body, "4244") == NULL, "the background process came back: %s", r.body);
	client_resp_free(&r);
	char *out = run(key, id,
			"for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline; echo; done | "
			"grep -c '^sleep 4244 $' || true");
	CHECK_STR_EQ(out, "0\n");
	free(out);

	free(before);
	free(after);
	delete_on(&bk.d, key, id);
	CHECK_HOST_CLEAN(&bk.d, id, false, 0);
	CHECK_MSG(same, "the workspace came back different from deep sleep (above)");
	free(id);
	free(key);
}

/* Two requests wake a sleeping session at once: both are answered from the
 * one restored sandbox. */
TEST_TIMEOUT(deep_sleep_concurrent_wake, 60)
{
	char *key = new_key("paid");
	char *id = create(key, NULL);
	free(run(key, id, "printf 'both see me' > shared.txt"));
	deep_sleep_wait(key, id);

	int go[2];
	CHECK(pipe(go) == 0);
	pid_t kids[2];
	for (int k = 0; k < 2; k++) {
		fflush(NULL);
		kids[k] = fork();
		CHECK(kids[k] >= 0);
		if (kids[k] == 0) {
			close(go[1]);
			char c;
			if (read(go[0], &c, 1) < 0)
				_exit(3);
			struct client_resp r;
			const char *got;
			if (k == 0) {
				execute_on(&bk.d, key, id, "cat shared.txt", &r);
				got = client_json_str(r.json, "stdout");
			} else {
				files_read_on(&bk.d, key, id, "shared.txt", &r);
				got = client_json_str(r.json, "content");
			}
			bool ok = r.status == 200 && got != NULL && strcmp(got, "both see me") == 0;
			if (!ok)
				fprintf(stderr, "    %s during the wake: HTTP %ld %.500s %s\n",
					k == 0 ? "execute" : "files/read", r.status, r.body,
					r.error);
			_exit(ok ? 0 : 1);
		}
	}
	close(go[0]);
	close(go[1]); /* both start now */
	for (int k = 0; k < 2; k++) {
		int status;
		CHECK(waitpid(kids[k], &status, 0) == kids[k]);
		CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0,
			  "the %s that woke the session failed", k == 0 ? "execute" : "files/read");
	}
	CHECK_INT_EQ(client_log_count(&bk.d, id, "woke from deep sleep"), 1);
	char state[32];
	info(key, id, state, sizeof(state), NULL);
	CHECK_STR_EQ(state, "active");
	delete_on(&bk.d, key, id);
	free(id);
	free(key);
}

/* ---- expiry ---- */

/* Every endpoint answers 404 session_not_found for id. Returns whether
 * GET /sessions still lists it, for the caller to fail on after its other
 * checks. */
static bool check_gone(const char *key, const char *id)
{
	struct client_resp r;
	call(&bk.d, "GET", "/sessions", key, NULL, &r);
	CHECK_STATUS(&r, 200);
	bool listed = strstr(r.body, id) != NULL;
	if (listed)
		fprintf(stderr,
			"    GET /sessions still lists %s after GET /sessions/{id} said 404: "
			"%.600s\n",
			id, r.body);
	client_resp_free(&r);
	get_on(&bk.d, key, id, &r);
	CHECK_ERROR(&r, 404, "session_not_found");
	client_resp_free(&r);
	execute_on(&bk.d, key, id, "true", &r);
	CHECK_ERROR(&r, 404, "session_not_found");
	client_resp_free(&r);
	files_read_on(&bk.d, key, id, "keep.txt", &r);
	CHECK_ERROR(&r, 404, "session_not_found");
	client_resp_free(&r);
	char path[128];
	snprintf(path, sizeof(path), "/sessions/%s", id);
	call(&bk.d, "DELETE", path, key, NULL, &r);
	CHECK_ERROR(&r, 404, "session_not_found");
	client_resp_free(&r);
	return listed;
}

/* Polls GET until 404; returns the seconds since t0 it took. */
static double wait_gone(const char *key, const char *id, double t0, double limit_s)
{
	for (;;) {
		struct client_resp r;
		get_on(&bk.d, key, id, &r);
		long status = r.status;
		client_resp_free(&r);
		if (status == 404)
			return client_now() - t0;
		CHECK_MSG(status == 200, "GET answered %ld while waiting for expiry", status);
		CHECK_MSG(client_now() - t0 < limit_s, "session %s still there %.1f s after create",
			  id, client_now() - t0);
		sleep_s(0.1);
	}
}

TEST(expiry_destroys_everything)
{
	char *key = new_key("paid");
	double t0 = client_now();
	char *id = create(key, "{\"ttl\":2}");
	struct client_resp r;
	files_write_on(&bk.d, key, id, "keep.txt", "until expiry", &r);
	CHECK_STATUS(&r, 200);
	client_resp_free(&r);
	free(run(key, id, "setsid sleep 4245 >/dev/null 2>&1 &"));
	double gone = wait_gone(key, id, t0, 4.0);
	CHECK_MSG(gone >= 1.5, "gone %.2f s after a create with ttl 2", gone);
	bool listed = check_gone(key, id);
	/* Torn down by the reaper: within 4 s of the create, give or take. */
	double left = 4.0 - (client_now() - t0);
	CHECK_HOST_CLEAN(&bk.d, id, false, left > 0.5 ? left : 0.5);
	CHECK_MSG(!listed, "GET /sessions listed the expired session (above)");
	free(id);
	free(key);
}

TEST(expiry_during_deep_sleep)
{
	char *key = new_key("paid");
	double t0 = client_now();
	char *id = create(key, "{\"ttl\":5}");
	struct client_resp r;
	files_write_on(&bk.d, key, id, "keep.txt", "until expiry", &r);
	CHECK_STATUS(&r, 200);
	client_resp_free(&r);
	deep_sleep_wait(key, id);
	CHECK_MSG(client_now() - t0 < 5, "deep sleep came only %.1f s after create (ttl 5)",
		  client_now() - t0);
	double gone = wait_gone(key, id, t0, 7.0);
	CHECK_MSG(gone >= 4.5, "gone %.2f s after a create with ttl 5", gone);
	bool listed = check_gone(key, id);
	CHECK_HOST_CLEAN(&bk.d, id, false, 2.0);
	CHECK_INT_EQ(client_log_count(&bk.d, id, "woke from deep sleep"), 0);
	CHECK_MSG(!listed, "GET /sessions listed the expired session (above)");
	free(id);
	free(key);
}

/* ---- delete ---- */

TEST(delete_during_deep_sleep)
{
	char *key = new_key("paid");
	char *id = create(key, NULL);
	free(run(key, id, "echo bye > gone.txt"));
	deep_sleep_wait(key, id);
	char path[128];
	snprintf(path, sizeof(path), "/sessions/%s", id);
	struct client_resp r;
	call(&bk.d, "DELETE", path, key, NULL, &r);
	CHECK_STATUS(&r, 200);
	CHECK(json_is_true(json_object_get(r.json, "deleted")));
	CHECK_STR_EQ(client_json_str(r.json, "sessionId"), id);
	client_resp_free(&r);
	CHECK_HOST_CLEAN(&bk.d, id, false, 0);
	get_on(&bk.d, key, id, &r);
	CHECK_ERROR(&r, 404, "session_not_found");
	client_resp_free(&r);
	/* It was not woken to be deleted. */
	CHECK_INT_EQ(client_log_count(&bk.d, id, "woke from deep sleep"), 0);
	free(id);
	free(key);
}

TEST(delete_while_idle)
{
	char *key = new_key("paid");
	char *id = create(key, NULL);
	free(run(key, id, "setsid sleep 4246 >/dev/null 2>&1 & echo x > f.txt"));
	CHECK(wait_for(key, id, "idle", IDLE_AFTER_S + 2));
	CHECK(freezer_wait(id, 1, 1.0));
	pid_t pids[64];
	int np = session_procs(id, pids, 64);
	CHECK_MSG(np >= 2, "only %d processes in the idle session's cgroup", np);
	char path[128];
	snprintf(path, sizeof(path), "/sessions/%s", id);
	struct client_resp r;
	double t0 = client_now();
	call(&bk.d, "DELETE", path, key, NULL, &r);
	double took = client_now() - t0;
	CHECK_STATUS(&r, 200);
	client_resp_free(&r);
	CHECK_MSG(took < 2.0, "DELETE of a frozen session took %.2f s", took);
	/* At once: no process in its cgroups, which are gone too. */
	CHECK_HOST_CLEAN(&bk.d, id, false, 0);
	get_on(&bk.d, key, id, &r);
	CHECK_ERROR(&r, 404, "session_not_found");
	client_resp_free(&r);
	free(id);
	free(key);
}

/* ---- activity ---- */

/* lastActive: GET and GET /sessions leave it, execute moves it. */
TEST(last_active_counts_requests_not_reads)
{
	char *key = new_key("paid");
	char *id = create(key, NULL);
	free(run(key, id, "true"));
	double la0, la1, la2;
	info(key, id, NULL, 0, &la0);
	sleep_s(1.2);
	info(key, id, NULL, 0, &la1);
	struct client_resp r;
	call(&bk.d, "GET", "/sessions", key, NULL, &r);
	CHECK_STATUS(&r, 200);
	client_resp_free(&r);
	info(key, id, NULL, 0, &la2);
	CHECK_MSG(la0 == la1 && la1 == la2, "GET moved lastActive: %.3f %.3f %.3f", la0, la1, la2);
	double wall = (double)time(NULL);
	free(run(key, id, "true"));
	double la3;
	info(key, id, NULL, 0, &la3);
	CHECK_MSG(la3 >= la0 + 1.0, "execute did not move lastActive: %.3f -> %.3f", la0, la3);
	CHECK_MSG(la3 >= wall - 1 && la3 <= (double)time(NULL) + 1,
		  "lastActive %.3f is not now (%.0f)", la3, wall);
	delete_on(&bk.d, key, id);
	free(id);
	free(key);
}

/* A running execution keeps the session active: one longer than the
 * deep-sleep threshold completes, and idleness counts from its end. */
TEST(running_execution_keeps_active)
{
	char *key = new_key("paid");
	char *id = create(key, NULL);
	char *out = run(key, id, "sleep 4; echo done");
	CHECK_STR_EQ(out, "done\n");
	free(out);
	char state[32];
	info(key, id, state, sizeof(state), NULL);
	CHECK_STR_EQ(state, "active");
	sleep_s(IDLE_AFTER_S * 0.5);
	info(key, id, state, sizeof(state), NULL);
	CHECK_MSG(strcmp(state, "active") == 0,
		  "'%s' %.1f s after an execution ended (idle-after %d)", state, IDLE_AFTER_S * 0.5,
		  IDLE_AFTER_S);
	CHECK_INT_EQ(client_log_count(&bk.d, id, "in deep sleep"), 0);
	delete_on(&bk.d, key, id);
	free(id);
	free(key);
}

/* ---- restarts, on a daemon of the test's own ---- */

static void log_dir_remove(const struct client_daemon *d)
{
	unlink(d->log_path);
	rmdir(d->log_dir);
}

static void own_daemon_start(struct client_daemon *d, const char *const *args)
{
	if (bk.skip_reason[0] != '\0')
		SKIP("%s", bk.skip_reason);
	CHECK_MSG(client_daemon_start(d, args) == 0, "cannot start a daemon of the test's own");
}

TEST_TIMEOUT(restart_after_sigterm_keeps_sessions, 150)
{
	struct client_daemon d = {0};
	own_daemon_start(&d, lifecycle_args);
	char key[CLIENT_KEY_MAX];
	CHECK(client_key_create(&d, "paid", key, sizeof(key)) == 0);

	/* One already in deep sleep, one awake (or idle) at the stop. */
	char *sleeper =
	    create_on(&d, key, "{\"metadata\":{\"suite\":\"restart\",\"who\":\"sleeper\"}}");
	free(run_on(&d, key, sleeper, "mkdir -p d/e && echo zzz > d/e/b.txt"));
	CHECK(wait_state(&d, key, sleeper, "deep-sleep", DEEP_AFTER_S + 5));
	char *awake =
	    create_on(&d, key, "{\"metadata\":{\"suite\":\"restart\",\"who\":\"awake\"}}");
	free(run_on(&d, key, awake,
		    "mkdir -p x && echo aye > x/a.txt && setsid sleep 4247 >/dev/null 2>&1 &"));

	int status = client_daemon_halt(&d, SIGTERM);
	CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0, "bunkerd stopped with 0x%x",
		  status);
	char snap[PATH_MAX];
	const char *ids[2] = {sleeper, awake};
	for (int i = 0; i < 2; i++) {
		snapshot_path(&d, ids[i], snap, sizeof(snap));
		CHECK_MSG(path_exists(snap), "no snapshot of %s after SIGTERM", ids[i]);
		char *mounts[4];
		int nm = session_mounts(&d, ids[i], mounts, 4);
		mounts_free(mounts, nm, 4);
		CHECK_MSG(nm == 0, "%d mounts of %s left after a clean stop", nm, ids[i]);
		pid_t pids[4];
		CHECK_INT_EQ(session_procs(ids[i], pids, 4), 0);
	}

	own_daemon_start(&d, lifecycle_args);
	char *filter = client_urlencode("{\"suite\":\"restart\"}");
	char path[256];
	snprintf(path, sizeof(path), "/sessions?metadata=%s", filter);
	free(filter);
	struct client_resp r;
	call(&d, "GET", path, key, NULL, &r);
	CHECK_STATUS(&r, 200);
	CHECK_INT_EQ(json_integer_value(json_object_get(r.json, "total")), 2);
	json_t *list = json_object_get(r.json, "sessions");
	for (size_t i = 0; i < json_array_size(list); i++) {
		json_t *s = json_array_get(list, i);
		const char *sid = client_json_str(s, "sessionId");
		const char *who = client_json_str(json_object_get(s, "metadata"), "who");
		CHECK_MSG(sid != NULL && who != NULL, "a listed session lacks its metadata: %s",
			  r.body);
		CHECK_STR_EQ(who, strcmp(sid, sleeper) == 0 ? "sleeper" : "awake");
		CHECK_STR_EQ(client_json_str(s, "state"), "deep-sleep");
	}
	client_resp_free(&r);

	char *out = run_on(&d, key, awake, "cat x/a.txt");
	CHECK_STR_EQ(out, "aye\n");
	free(out);
	out = run_on(&d, key, sleeper, "cat d/e/b.txt");
	CHECK_STR_EQ(out, "zzz\n");
	free(out);
	/* Processes do not survive a restart (documented). */
	out = run_on(&d, key, awake,
		     "for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline; echo; done | "
		     "grep -c '^sleep 4247 $' || true");
	CHECK_STR_EQ(out, "0\n");
	free(out);
	for (int i = 0; i < 2; i++) {
		char state[32];
		info_on(&d, key, ids[i], state, sizeof(state), NULL);
		CHECK_STR_EQ(state, "active");
		snapshot_path(&d, ids[i], snap, sizeof(snap));
		CHECK_MSG(!path_exists(snap), "snapshot of %s still there after its wake", ids[i]);
	}

	delete_on(&d, key, sleeper);
	delete_on(&d, key, awake);
	free(sleeper);
	free(awake);
	CHECK_INT_EQ(client_daemon_stop(&d), 0);
	CHECK_INT_EQ(client_daemon_check(&d), 0);
	log_dir_remove(&d);
}

/* Processes that belong to the daemon of d: their command line names its
 * data directory, or they live in another mount namespace whose mounts
 * name it (sandboxes), or their cgroup names session id. Returns how many
 * do not descend from the running daemon (printing each); *under counts
 * those that do (the live sandboxes: proof that the scan sees them). */
static int check_no_strays(const struct client_daemon *d, const char *id, int *under)
{
	*under = 0;
	char self_ns[64] = "", ns[64];
	ssize_t nl = readlink("/proc/self/ns/mnt", self_ns, sizeof(self_ns) - 1);
	CHECK(nl > 0);
	self_ns[nl] = '\0';
	DIR *dp = opendir("/proc");
	CHECK(dp != NULL);
	int strays = 0;
	struct dirent *de;
	while ((de = readdir(dp)) != NULL) {
		char *end;
		long pid = strtol(de->d_name, &end, 10);
		if (*end != '\0' || pid <= 1 || pid == getpid() || pid == d->pid)
			continue;
		char path[64];
		size_t len;
		snprintf(path, sizeof(path), "/proc/%ld/cmdline", pid);
		char *text = read_file_all(path, &len);
		bool ours = text != NULL && memmem(text, len, d->data_dir, strlen(d->data_dir));
		free(text);
		snprintf(path, sizeof(path), "/proc/%ld/cgroup", pid);
		text = read_file_all(path, NULL);
		ours = ours || (text != NULL && strstr(text, id) != NULL);
		free(text);
		snprintf(path, sizeof(path), "/proc/%ld/ns/mnt", pid);
		ssize_t n = readlink(path, ns, sizeof(ns) - 1);
		if (!ours && n > 0 && (ns[n] = '\0', strcmp(ns, self_ns) != 0)) {
			snprintf(path, sizeof(path), "/proc/%ld/mountinfo", pid);
			text = read_file_all(path, NULL);
			ours = text != NULL && strstr(text, d->data_dir) != NULL;
			free(text);
		}
		if (!ours)
			continue;
		if (proc_descends_from((pid_t)pid, d->pid)) {
			(*under)++;
			continue;
		}
		char comm[64];
		proc_comm((pid_t)pid, comm, sizeof(comm));
		snprintf(path, sizeof(path), "/proc/%ld", pid);
		if (!path_exists(path))
			continue; /* ended meanwhile */
		fprintf(stderr, "    stray process %ld (%s), parent %d, not under bunkerd %d\n",
			pid, comm, (int)proc_ppid((pid_t)pid), (int)d->pid);
		strays++;
	}
	closedir(dp);
	return strays;
}

TEST_TIMEOUT(crash_mid_write_loses_no_acknowledged_file, 150)
{
	struct client_daemon d = {0};
	/* Default thresholds: this test is about the crash alone. */
	const char *const args[] = {NULL};
	own_daemon_start(&d, args);
	char key[CLIENT_KEY_MAX];
	CHECK(client_key_create(&d, "enterprise", key, sizeof(key)) == 0);
	char *id = create_on(&d, key, NULL);

	char acked_path[] = "/tmp/bk-lc-acked-XXXXXX";
	int acked_fd = mkstemp(acked_path);
	CHECK(acked_fd >= 0);
	fflush(NULL);
	pid_t writer = fork();
	CHECK(writer >= 0);
	if (writer == 0) {
		/* Sequential writes; an index is recorded only once answered 200. */
		for (int i = 0; i < 1000; i++) {
			char name[32], content[32];
			snprintf(name, sizeof(name), "f%d", i);
			snprintf(content, sizeof(content), "content-%d", i);
			struct client_resp r;
			files_write_on(&d, key, id, name, content, &r);
			long status = r.status;
			client_resp_free(&r);
			if (status == 0)
				break; /* the daemon is gone */
			if (status == 200)
				dprintf(acked_fd, "%d\n", i);
		}
		_exit(0);
	}
	close(acked_fd);
	/* The crash: after ~1 s, or sooner once a third of the writes are
	 * acknowledged (they can take a millisecond each), so that it comes
	 * in the middle; but never before a few were. */
	double t0 = client_now();
	for (;;) {
		char *text = read_file_all(acked_path, NULL);
		int lines = 0;
		for (const char *p = text; p && *p; p++)
			lines += *p == '\n';
		free(text);
		double t = client_now() - t0;
		if ((lines >= 3 && t >= 1.0) || lines >= 333 || t > 10)
			break;
		sleep_s(0.005);
	}
	int status = client_daemon_halt(&d, SIGKILL);
	CHECK_MSG(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "bunkerd ended 0x%x", status);
	CHECK(waitpid(writer, &status, 0) == writer);

	char *acked = read_file_all(acked_path, NULL);
	unlink(acked_path);
	CHECK(acked != NULL);
	int n_acked = 0;
	for (const char *p = acked; *p; p++)
		n_acked += *p == '\n';
	CHECK_MSG(n_acked >= 3, "only %d writes acknowledged before the crash", n_acked);
	if (n_acked == 1000)
		fprintf(stderr, "    note: all 1000 writes were acknowledged before SIGKILL\n");

	own_daemon_start(&d, args);
	/* Every acknowledged file, with its exact content. */
	char *listing = run_on(&d, key, id,
			       "cd /workspace && for f in f*; do [ -f \"$f\" ] || continue; "
			       "printf '%s=' \"$f\"; cat \"$f\"; echo; done");
	int missing = 0, last = -1;
	for (const char *p = acked; *p;) {
		int i = atoi(p);
		char want[64];
		snprintf(want, sizeof(want), "f%d=content-%d\n", i, i);
		/* At a line start. */
		const char *hit = strstr(listing, want);
		while (hit != NULL && hit != listing && hit[-1] != '\n')
			hit = strstr(hit + 1, want);
		if (hit == NULL) {
			if (missing < 10)
				fprintf(stderr, "    acknowledged f%d lost or changed\n", i);
			missing++;
		}
		last = i;
		p = strchr(p, '\n') + 1;
	}
	CHECK_MSG(missing == 0, "%d of %d acknowledged files did not survive the crash", missing,
		  n_acked);
	/* The last one, through the files API too. */
	char name[32], want[32];
	snprintf(name, sizeof(name), "f%d", last);
	snprintf(want, sizeof(want), "content-%d", last);
	struct client_resp r;
	files_read_on(&d, key, id, name, &r);
	CHECK_STATUS(&r, 200);
	CHECK_STR_EQ(client_json_str(r.json, "content"), want);
	CHECK_INT_EQ(json_integer_value(json_object_get(r.json, "size")), strlen(want));
	client_resp_free(&r);

	/* Nothing of the old daemon runs on, and each mount is there once. */
	int under;
	CHECK_MSG(check_no_strays(&d, id, &under) == 0, "processes of the crashed daemon survived");
	CHECK_MSG(under >= 1, "the scan found no process of the new daemon's sandbox");
	char *mounts[32];
	int nm = session_mounts(&d, id, mounts, 32);
	int dups = 0;
	for (int i = 0; i < nm && i < 32; i++)
		for (int j = 0; j < i; j++)
			if (strcmp(mounts[i], mounts[j]) == 0) {
				fprintf(stderr, "    mounted twice: %s\n", mounts[i]);
				dups++;
			}
	char disk[PATH_MAX + 16];
	run_dir_path(&d, id, disk, sizeof(disk));
	strcat(disk, "/disk");
	int disks = 0;
	for (int i = 0; i < nm && i < 32; i++)
		disks += strcmp(mounts[i], disk) == 0;
	mounts_free(mounts, nm, 32);
	CHECK_MSG(dups == 0, "%d duplicate mounts of the session after the restart", dups);
	CHECK_INT_EQ(disks, 1);

	free(listing);
	free(acked);
	delete_on(&d, key, id);
	CHECK_HOST_CLEAN(&d, id, false, 0);
	free(id);
	CHECK_INT_EQ(client_daemon_stop(&d), 0);
	CHECK_INT_EQ(client_daemon_check(&d), 0);
	log_dir_remove(&d);
}
