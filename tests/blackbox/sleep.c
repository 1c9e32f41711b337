/* Black-box tests of deep sleep at the edges (issue 12) and of admission
 * against the host's capacity:
 *
 *   - a workspace with a socket file and a directory chain far deeper than
 *     PATH_MAX goes to deep sleep and comes back whole (the socket left out,
 *     and said so in the log);
 *   - a save that the snapshot storage has no room for is refused without
 *     the storage ever running short, and leaves the session exactly as it
 *     was: awake, its background process alive, its files intact;
 *   - creates and wakes past the host's processes budget answer 503 at once
 *     and leave nothing half made; a sleeping session holds no share of it.
 *
 * The shared daemon runs with short thresholds, no warm pool, 64 processes a
 * session within a budget of 200 (three sessions), and its snapshots on a
 * 64 MB tmpfs of which a save must leave 24 MB free (their cap, 1 GB, is
 * tested in tests/unit/sandbox.c).
 */
#include "../client.h"
#include "util/file.h"

#include <errno.h>
#include <signal.h>
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define DEEP_AFTER_S 3
#define SNAP_FS_MB 64
#define SNAP_FREE_MB 24

static char snap_dir[] = "/tmp/bk-sleep-snaps-XXXXXX";

int harness_setup(void)
{
	if (mkdtemp(snap_dir) == NULL)
		return 1;
	client_manifest_note("dir", snap_dir, NULL);
	char opts[32];
	snprintf(opts, sizeof(opts), "size=%dm", SNAP_FS_MB);
	if (geteuid() == 0 && mount("bk-sleep-snaps", snap_dir, "tmpfs", 0, opts) < 0)
		return 1;
	char free_mb[16];
	snprintf(free_mb, sizeof(free_mb), "%d", SNAP_FREE_MB);
	const char *const args[] = {"--idle-after",
				    "1",
				    "--deep-sleep-after",
				    "3",
				    "--min-ttl",
				    "2",
				    "--warm-pool",
				    "0",
				    "--pids-max",
				    "64",
				    "--pids-budget",
				    "200",
				    "--snapshot-dir",
				    snap_dir,
				    "--snapshot-min-free-mb",
				    free_mb,
				    "--snapshot-max-mb",
				    "1024",
				    NULL};
	return client_fixture_start_args(args);
}

void harness_teardown(void)
{
	client_fixture_stop();
	umount2(snap_dir, MNT_DETACH);
	rmdir(snap_dir);
}

int harness_final_check(void)
{
	return client_fixture_check();
}

/* ---- helpers ---- */

static void sleep_s(double s)
{
	struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static char *new_key(void)
{
	char key[CLIENT_KEY_MAX];
	client_must_key("paid", key, sizeof(key));
	return strdup(key);
}

/* The state GET /sessions/{id} answers, into out. */
static void state_of(const char *key, const char *id, char *out, size_t len)
{
	char path[128];
	snprintf(path, sizeof(path), "/sessions/%s", id);
	struct client_resp r;
	client_call(&bk.d, "GET", path, key, NULL, &r);
	CHECK_STATUS(&r, 200);
	snprintf(out, len, "%s", client_must_str(r.json, "state", r.body));
	client_resp_free(&r);
}

/* Waits up to timeout_s for a log line naming id and holding what. */
static bool log_wait(const char *id, const char *what, double timeout_s)
{
	double deadline = client_now() + timeout_s;
	while (client_log_count(&bk.d, id, what) < 1) {
		if (client_now() > deadline)
			return false;
		sleep_s(0.05);
	}
	return true;
}

/* Cgroup directories at rel below the cgroup root: in the one tree (v2)
 * and under every controller (v1). */
static int cgroups_at(const char *rel)
{
	int n = 0;
	for (int v1 = 0; v1 < 2; v1++) {
		char pattern[256];
		snprintf(pattern, sizeof(pattern), "/sys/fs/cgroup/%s%s", v1 ? "*/" : "", rel);
		glob_t g;
		if (glob(pattern, GLOB_ONLYDIR | GLOB_NOSORT, NULL, &g) == 0)
			n += (int)g.gl_pathc;
		globfree(&g);
	}
	return n;
}

/* Cgroup directories the host holds for session id. */
static int session_cgroups(const char *id)
{
	char rel[128];
	snprintf(rel, sizeof(rel), "%s/%s", bk.d.cgroup_parent, id);
	return cgroups_at(rel);
}

/* Its snapshot: an image, or a tar (a tree an image cannot hold). */
static bool snapshot_exists(const char *id)
{
	char path[256], image[256];
	snprintf(path, sizeof(path), "%s/%s.tar.zst", snap_dir, id);
	snprintf(image, sizeof(image), "%s/%s.erofs", snap_dir, id);
	return access(path, F_OK) == 0 || access(image, F_OK) == 0;
}

/* Files of session id in the snapshot directory (its snapshot, or what a
 * save left of one), printed; returns how many. */
static int snapshot_files_of(const char *id)
{
	char pattern[128];
	snprintf(pattern, sizeof(pattern), "%s/%s.*", snap_dir, id);
	glob_t g;
	int n = glob(pattern, GLOB_NOSORT, NULL, &g) == 0 ? (int)g.gl_pathc : 0;
	for (int i = 0; i < n; i++)
		fprintf(stderr, "    in the snapshot directory: %s\n", g.gl_pathv[i]);
	globfree(&g);
	return n;
}

/* Files in the snapshot directory named <id><suffix>, or <id>.*<suffix>
 * when any is true. */
static int snap_count(const char *id, const char *suffix, bool any)
{
	char pattern[256];
	snprintf(pattern, sizeof(pattern), "%s/%s%s%s", snap_dir, id, any ? ".*" : "", suffix);
	glob_t g;
	int n = glob(pattern, GLOB_NOSORT, NULL, &g) == 0 ? (int)g.gl_pathc : 0;
	globfree(&g);
	return n;
}

/* Waits up to timeout_s for the count-th log line naming id and holding what. */
static bool log_wait_n(const char *id, const char *what, int count, double timeout_s)
{
	double deadline = client_now() + timeout_s;
	while (client_log_count(&bk.d, id, what) < count) {
		if (client_now() > deadline)
			return false;
		sleep_s(0.05);
	}
	return true;
}

/* ---- deep paths and sockets ---- */

/* 455 directories of 11 characters: 5,460 bytes of path below /workspace
 * (Python goes down one name at a time; a shell's cd gives up at PATH_MAX). */
static const char deep_script[] =
    "cd /workspace && echo top > top.txt && python3 -c '\n"
    "import os, socket\n"
    "socket.socket(socket.AF_UNIX).bind(\"app.sock\")\n"
    "for i in range(455):\n"
    "    os.mkdir(\"d0123456789\"); os.chdir(\"d0123456789\")\n"
    "open(\"leaf.txt\", \"w\").write(\"at the bottom\\n\")\n"
    "os.symlink(\"leaf.txt\", \"link\"); os.mkdir(\"private\", 0o700)\n"
    "'";

static const char deep_state_script[] =
    "cd /workspace && find . | wc -l && (test -S app.sock && echo socket || echo no-socket) "
    "&& python3 -c '\n"
    "import os, stat\n"
    "for i in range(455):\n"
    "    os.chdir(\"d0123456789\")\n"
    "print(open(\"leaf.txt\").read(), end=\"\")\n"
    "print(os.readlink(\"link\"))\n"
    "print(oct(stat.S_IMODE(os.lstat(\"private\").st_mode))[2:])\n"
    "print(len(os.listdir(\".\")))\n"
    "'";

TEST_TIMEOUT(deep_sleep_keeps_deep_paths_and_leaves_sockets_out, 90)
{
	char *key = new_key();
	char *id = client_must_create(key, NULL);
	free(client_must_run(key, id, deep_script));
	char *before = client_must_run(key, id, deep_state_script);
	long entries = atol(before);
	CHECK_MSG(strstr(before, "\nsocket\nat the bottom\nleaf.txt\n700\n3\n") != NULL,
		  "the tree was not built as meant:\n%s", before);

	CHECK_MSG(log_wait(id, "in deep sleep:", DEEP_AFTER_S + 15),
		  "session %s did not go to deep sleep", id);
	CHECK_INT_EQ(client_log_count(&bk.d, id, "1 sockets not saved"), 1);
	CHECK_INT_EQ(client_log_count(&bk.d, id, "cannot put session"), 0);
	char state[32];
	state_of(key, id, state, sizeof(state));
	CHECK_STR_EQ(state, "deep-sleep");
	CHECK(snapshot_exists(id));
	CHECK_INT_EQ(session_cgroups(id), 0);

	/* Every file back, the socket (which no listener holds) left out. */
	char *after = client_must_run(key, id, deep_state_script);
	char want[128];
	snprintf(want, sizeof(want), "%ld\nno-socket\nat the bottom\nleaf.txt\n700\n3\n",
		 entries - 1);
	CHECK_STR_EQ(after, want);
	free(before);
	free(after);
	client_must_delete(key, id);
	CHECK_INT_EQ(session_cgroups(id), 0);
	free(id);
	free(key);
}

/* ---- a save without room ---- */

static double snap_free_mb(void)
{
	struct statvfs vfs;
	return statvfs(snap_dir, &vfs) == 0 ? (double)vfs.f_bavail * (double)vfs.f_frsize / 1048576
					    : -1;
}

TEST_TIMEOUT(deep_sleep_without_room_leaves_the_session_running, 90)
{
	char *key = new_key();
	char *id = client_must_create(key, NULL);
	/* 48 MB that zstd cannot shrink: more than the 40 MB a save may use
	 * of the 64 MB snapshot file system that must keep 24 MB free. */
	char *sum = client_must_run(
	    key, id,
	    "head -c 48M /dev/urandom > big.bin && md5sum big.bin | cut -c1-32 && "
	    "(setsid sleep 4251 >/dev/null 2>&1 &) && "
	    "for i in $(seq 100); do pgrep -x sleep >/dev/null && break; sleep 0.05; done");
	char *pid = client_must_run(key, id, "pgrep -x sleep");
	CHECK_MSG(atoi(pid) > 0, "no background process: '%s'", pid);

	double low = snap_free_mb();
	double deadline = client_now() + DEEP_AFTER_S + 15;
	while (client_log_count(&bk.d, id, "(it stays awake)") < 1 && client_now() < deadline) {
		double now = snap_free_mb();
		if (now < low)
			low = now;
		sleep_s(0.01);
	}
	CHECK_MSG(client_log_count(&bk.d, id, "(it stays awake)") >= 1,
		  "no refused deep sleep of %s in the log", id);
	CHECK_MSG(client_log_count(&bk.d, id, "no room for a snapshot") +
			  client_log_count(&bk.d, id, "would exceed") >=
		      1,
		  "the refusal does not say it is for room");
	/* The storage never ran short, and nothing of the save is left. */
	CHECK_MSG(low >= SNAP_FREE_MB - 0.5, "the snapshot storage fell to %.1f MB free", low);
	CHECK_INT_EQ(snapshot_files_of(id), 0);

	/* As it was: active, the same process alive, the same bytes. */
	char state[32];
	state_of(key, id, state, sizeof(state));
	CHECK_STR_EQ(state, "active");
	char *pid_after = client_must_run(key, id, "pgrep -x sleep");
	CHECK_STR_EQ(pid_after, pid);
	char *sum_after = client_must_run(key, id, "md5sum big.bin | cut -c1-32");
	CHECK_STR_EQ(sum_after, sum);
	struct client_resp m;
	struct client_req req = {.method = "GET", .path = "/metrics"};
	CHECK(client_request(&bk.d, &req, &m) == 0 && m.status == 200);
	static const char family[] = "\nbunker_deep_sleep_failures_total ";
	const char *failures = strstr(m.body, family);
	CHECK_MSG(failures && atoi(failures + strlen(family)) >= 1,
		  "no deep sleep failure in /metrics");
	client_resp_free(&m);

	/* With room again, it sleeps (and its process ends). */
	free(client_must_run(key, id, "rm big.bin"));
	CHECK_MSG(log_wait(id, "in deep sleep:", DEEP_AFTER_S + 15),
		  "session %s did not sleep once it fit", id);
	CHECK(snapshot_exists(id));
	CHECK_INT_EQ(session_cgroups(id), 0);
	client_must_delete(key, id);
	CHECK(!snapshot_exists(id));
	free(pid);
	free(pid_after);
	free(sum);
	free(sum_after);
	free(id);
	free(key);
}

/* ---- the processes budget ---- */

/* POST /sessions/create, whatever it answers. */
static void try_create(const char *key, struct client_resp *r)
{
	client_call(&bk.d, "POST", "/sessions/create", key, "{}", r);
}

TEST_TIMEOUT(admission_past_the_processes_budget_answers_503, 90)
{
	char *key = new_key();
	char path[256];
	snprintf(path, sizeof(path), "/sys/fs/cgroup/pids/%s/pids.max", bk.d.cgroup_parent);
	if (access(path, F_OK) < 0)
		snprintf(path, sizeof(path), "/sys/fs/cgroup/%s/pids.max", bk.d.cgroup_parent);
	char *limit = read_file_all(path, NULL);
	CHECK_MSG(limit && atoi(limit) == 200, "the sessions' parent cgroup has pids.max '%s'",
		  limit ? limit : "(none)");
	free(limit);
	/* Three sessions of 64 processes fit in 200; a fourth does not. */
	char *ids[3];
	for (int i = 0; i < 3; i++) {
		ids[i] = client_must_create(key, NULL);
		free(client_must_run(key, ids[i], "echo kept > f"));
	}
	struct client_resp r;
	double t0 = client_now();
	try_create(key, &r);
	CHECK_ERROR(&r, 503, "unavailable");
	CHECK_MSG(client_now() - t0 < 5, "the refusal took %.1f s", client_now() - t0);
	CHECK_MSG(strstr(r.body, "capacity") != NULL, "%s", r.body);
	client_resp_free(&r);
	client_call(&bk.d, "GET", "/sessions", key, NULL, &r);
	CHECK_INT_EQ(client_must_int(r.json, "total", r.body), 3);
	client_resp_free(&r);

	/* Asleep, they hold nothing: three more fit. */
	for (int i = 0; i < 3; i++)
		CHECK_MSG(log_wait(ids[i], "in deep sleep:", DEEP_AFTER_S + 15),
			  "session %s did not go to deep sleep", ids[i]);
	char *more[3];
	for (int i = 0; i < 3; i++)
		more[i] = client_must_create(key, NULL);
	/* And waking one now is refused: it stays asleep, its files kept. */
	snprintf(path, sizeof(path), "/files/read?sessionId=%s&path=f", ids[0]);
	client_call(&bk.d, "GET", path, key, NULL, &r);
	CHECK_ERROR(&r, 503, "unavailable");
	client_resp_free(&r);
	char state[32];
	state_of(key, ids[0], state, sizeof(state));
	CHECK_STR_EQ(state, "deep-sleep");
	CHECK(snapshot_exists(ids[0]));
	/* Room again: it wakes with its file. */
	client_must_delete(key, more[0]);
	char *out = client_must_run(key, ids[0], "cat f");
	CHECK_STR_EQ(out, "kept\n");
	free(out);
	for (int i = 0; i < 3; i++) {
		client_must_delete(key, ids[i]);
		if (i > 0)
			client_must_delete(key, more[i]);
		free(ids[i]);
		free(more[i]);
	}
	free(key);
}

/* ---- nothing left behind ---- */

/* Cgroup directories of daemon d's parent. */
static int daemon_cgroups(const struct client_daemon *d)
{
	return cgroups_at(d->cgroup_parent);
}

static char *create_on(const struct client_daemon *d, const char *key)
{
	struct client_resp r;
	client_call(d, "POST", "/sessions/create", key, "{}", &r);
	CHECK_STATUS(&r, 200);
	char *id = strdup(client_must_str(r.json, "sessionId", r.body));
	client_resp_free(&r);
	return id;
}

/* A daemon that stops cleanly removes its cgroups, even after an earlier
 * run of it crashed; one that crashes leaves them, and the test client
 * then removes them and says so, so that no test run accumulates them. */
TEST_TIMEOUT(nothing_left_after_a_crash_or_a_clean_stop, 120)
{
	if (bk.skip_reason[0] != '\0')
		SKIP("%s", bk.skip_reason);
	const char *const args[] = {"--warm-pool", "1", NULL};
	struct client_daemon d = {0};
	CHECK(client_daemon_start(&d, args) == 0);
	char key[CLIENT_KEY_MAX];
	CHECK(client_key_create(&d, "paid", key, sizeof(key)) == 0);
	free(create_on(&d, key));
	CHECK(daemon_cgroups(&d) > 0);
	/* Crashed, then started again on the same data and stopped. */
	int status = client_daemon_halt(&d, SIGKILL);
	CHECK(WIFSIGNALED(status));
	CHECK_MSG(daemon_cgroups(&d) > 0, "a crashed daemon's cgroups are gone by themselves");
	CHECK(client_daemon_start(&d, args) == 0);
	free(create_on(&d, key));
	status = client_daemon_halt(&d, SIGTERM);
	CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0, "bunkerd stopped with 0x%x",
		  status);
	CHECK_MSG(daemon_cgroups(&d) == 0, "a clean stop left %d cgroup directories of '%s'",
		  daemon_cgroups(&d), d.cgroup_parent);
	/* Crashed for good: the client's stop removes what it left. */
	CHECK(client_daemon_start(&d, args) == 0);
	free(create_on(&d, key));
	client_daemon_halt(&d, SIGKILL);
	client_daemon_stop(&d);
	CHECK_MSG(d.left_cgroups > 0, "the crash's cgroups were not noticed");
	CHECK_INT_EQ(daemon_cgroups(&d), 0);
	CHECK(!d.left_data_dir);
	unlink(d.log_path);
	rmdir(d.log_dir);
}

/* ---- images: a wake that mounts, a sleep that folds ---- */

/* Every entry of the session's layer with owner, mode and size, and the
 * content of its files. */
static const char tree_script[] =
    "cd /workspace && find . /tmp /home/user -xdev -printf '%y %p %U:%G %m %l\\n' | sort && "
    "find . -type f | sort | xargs cat";

/* The filesCount GET /sessions/{id} answers. */
static long files_count(const char *key, const char *id)
{
	char path[128];
	snprintf(path, sizeof(path), "/sessions/%s", id);
	struct client_resp r;
	client_call(&bk.d, "GET", path, key, NULL, &r);
	CHECK_STATUS(&r, 200);
	long n = (long)client_must_int(r.json, "filesCount", r.body);
	client_resp_free(&r);
	return n;
}

/* Deep sleep saves an image, the wake mounts it under an empty upper (one
 * image in use, no snapshot beside it), the files are the same with their
 * owners and modes and writable at once; the next sleep folds image and
 * upper into one image again, in which what was removed stays removed
 * (whiteouts over the image) and a directory made anew holds only what
 * it holds now (opaque), sleep after sleep. */
TEST_TIMEOUT(deep_sleep_wakes_on_its_image_and_folds_it_at_the_next, 120)
{
	char *key = new_key();
	char *id = client_must_create(key, NULL);
	free(client_must_run(key, id,
			     "cd /workspace && echo alpha > a.txt && chmod 640 a.txt && "
			     "mkdir -p dir sub && echo beta > dir/b.txt && echo gone > gone.txt && "
			     "echo old > sub/old.txt && ln -s a.txt link && echo t > /tmp/t.txt && "
			     "echo h > /home/user/.h"));
	char *before = client_must_run(key, id, tree_script);
	CHECK_INT_EQ(files_count(key, id), 4);
	CHECK_MSG(log_wait_n(id, "in deep sleep:", 1, DEEP_AFTER_S + 15),
		  "session %s did not go to deep sleep", id);
	CHECK_INT_EQ(snap_count(id, ".erofs", false), 1);
	CHECK_INT_EQ(snap_count(id, ".tar.zst", false), 0);
	CHECK_INT_EQ(files_count(key, id), 4);

	/* Awake on its image, writable at once: a file of the image changed
	 * (copied up), one removed, a directory removed and made again. */
	char *after = client_must_run(key, id, tree_script);
	CHECK_STR_EQ(after, before);
	CHECK_INT_EQ(snap_count(id, ".erofs", false), 0);
	CHECK_INT_EQ(snap_count(id, ".layer.erofs", true), 1);
	CHECK_INT_EQ(files_count(key, id), 4);
	free(client_must_run(key, id,
			     "cd /workspace && echo more >> a.txt && rm gone.txt && rm -rf sub && "
			     "mkdir sub && echo new > sub/new.txt && echo c > c.txt"));
	char *changed = client_must_run(key, id, tree_script);
	CHECK_MSG(strstr(changed, "gone") == NULL && strstr(changed, "old.txt") == NULL,
		  "removed files still listed:\n%s", changed);
	CHECK_INT_EQ(files_count(key, id), 4);

	/* Two more sleeps, folded each time into one image. */
	for (int round = 2; round <= 3; round++) {
		CHECK_MSG(log_wait_n(id, "in deep sleep:", round, DEEP_AFTER_S + 15),
			  "session %s did not go to deep sleep again", id);
		CHECK_INT_EQ(snap_count(id, ".erofs", false), 1);
		CHECK_INT_EQ(snap_count(id, ".layer.erofs", true), 0);
		CHECK_INT_EQ(snapshot_files_of(id), 1);
		char *again = client_must_run(key, id, tree_script);
		CHECK_STR_EQ(again, changed);
		CHECK_INT_EQ(snap_count(id, ".layer.erofs", true), 1);
		free(again);
	}
	CHECK_INT_EQ(files_count(key, id), 4);
	client_must_delete(key, id);
	CHECK_INT_EQ(snapshot_files_of(id), 0);
	free(before);
	free(after);
	free(changed);
	free(id);
	free(key);
}

/* Woken on an image, the session holds no more than its disk limit: the
 * upper gets what the image's files leave of it. */
TEST_TIMEOUT(a_session_woken_on_its_image_keeps_its_disk_limit, 90)
{
	char *key = new_key();
	char *id = client_must_create(key, "{\"resourceLimits\":{\"disk\":32}}");
	free(client_must_run(key, id, "head -c 20M /dev/zero > /workspace/twenty"));
	CHECK_MSG(log_wait_n(id, "in deep sleep:", 1, DEEP_AFTER_S + 15),
		  "session %s did not go to deep sleep", id);
	CHECK_INT_EQ(snap_count(id, ".erofs", false), 1);
	/* 20 MB more would make 40 of 32. */
	struct client_resp r;
	client_must_exec(key, id, "head -c 20M /dev/zero > /workspace/more", NULL, &r);
	CHECK_MSG(client_must_int(r.json, "exitCode", r.body) != 0, "40 MB fit in 32 MB: %s",
		  r.body);
	CHECK_MSG(strstr(client_must_str(r.json, "stderr", r.body), "No space left on device") !=
		      NULL,
		  "stderr: %s", r.body);
	client_resp_free(&r);
	free(client_must_run(key, id,
			     "rm /workspace/more && head -c 5M /dev/zero > /workspace/five"));
	client_must_delete(key, id);
	free(id);
	free(key);
}

/* A daemon killed while a session runs on its image comes back with the
 * session's files: the disk and the image's mount outlive it, and its
 * record of the image says what the session's root is made of. Its
 * snapshots are on the data directory's file system, which EROFS reads
 * directly (no loop device). */
TEST_TIMEOUT(a_crash_keeps_a_session_that_runs_on_its_image, 120)
{
	if (bk.skip_reason[0] != '\0')
		SKIP("%s", bk.skip_reason);
	const char *const args[] = {
	    "--warm-pool", "0", "--idle-after", "1", "--deep-sleep-after", "2", "--min-ttl",
	    "2",	   NULL};
	struct client_daemon d = {0};
	CHECK(client_daemon_start(&d, args) == 0);
	char key[CLIENT_KEY_MAX];
	CHECK(client_key_create(&d, "paid", key, sizeof(key)) == 0);
	char *id = create_on(&d, key);
	free(
	    client_must_run_on(&d, key, id, "echo alpha > /workspace/a.txt && mkdir /workspace/d"));
	double deadline = client_now() + 20;
	while (client_log_count(&d, id, "in deep sleep:") < 1 && client_now() < deadline)
		sleep_s(0.05);
	CHECK_MSG(client_log_count(&d, id, "in deep sleep:") == 1, "%s did not sleep", id);
	char *woke = client_must_run_on(&d, key, id,
					"cat /workspace/a.txt && echo beta > /workspace/d/b.txt");
	CHECK_STR_EQ(woke, "alpha\n");
	int status = client_daemon_halt(&d, SIGKILL);
	CHECK(WIFSIGNALED(status));
	CHECK(client_daemon_start(&d, args) == 0);
	char *back = client_must_run_on(&d, key, id,
					"cat /workspace/a.txt /workspace/d/b.txt && "
					"echo gamma >> /workspace/a.txt && cat /workspace/a.txt");
	CHECK_STR_EQ(back, "alpha\nbeta\nalpha\ngamma\n");
	/* A clean stop sleeps it, folded; the next run wakes it. */
	status = client_daemon_halt(&d, SIGTERM);
	CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0, "bunkerd stopped with 0x%x",
		  status);
	CHECK(client_daemon_start(&d, args) == 0);
	char *last = client_must_run_on(&d, key, id, "cat /workspace/a.txt /workspace/d/b.txt");
	CHECK_STR_EQ(last, "alpha\ngamma\nbeta\n");
	client_daemon_stop(&d);
	CHECK_INT_EQ(d.left_mounts, 0);
	CHECK(!d.left_data_dir);
	free(woke);
	free(back);
	free(last);
	free(id);
	unlink(d.log_path);
	rmdir(d.log_dir);
}
