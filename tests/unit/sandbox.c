/* sandbox/: real sandboxes, driven directly (no daemon). Needs root. */
#include <dirent.h>
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <linux/magic.h>
#include <unistd.h>

#include "../client.h"
#include "../harness.h"
#include "sandbox/cgroup.h"
#include "sandbox/ns_int.h"
#include "sandbox/sandbox.h"
#include "sandbox/slots.h"

#define BUN "/opt/bunker/bun/bin/bun"

static char base_dir[256];
static char data_dir[300];
static struct sbx_backend *backend;

static void init_path(char *out, size_t len)
{
	const char *b = getenv("BUNKER_BUILD");
	if (b) {
		snprintf(out, len, "%s/bunker-init", b);
		return;
	}
	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	self[n > 0 ? n : 0] = '\0';
	snprintf(out, len, "%s/../bunker-init", dirname(self));
}

static const char *const controllers[] = {"memory/", "cpu/", "cpuacct/", "pids/", "freezer/", ""};

/* In the parent, before every test: one base directory and one parent
 * cgroup name for the whole run, so that teardown can remove whatever a
 * failed test left behind. */
int harness_setup(void)
{
	snprintf(base_dir, sizeof(base_dir), "/tmp/bunker-sbx-XXXXXX");
	char parent[64];
	snprintf(parent, sizeof(parent), "bunker-unit-%d", (int)getpid());
	client_manifest_note("cgroup", parent, NULL);
	return mkdtemp(base_dir) ? 0 : 1;
}

void harness_teardown(void)
{
	char parent[64];
	snprintf(parent, sizeof(parent), "bunker-unit-%d", (int)getpid());
	for (size_t i = 0; i < sizeof(controllers) / sizeof(controllers[0]); i++) {
		char cg[300];
		snprintf(cg, sizeof(cg), "/sys/fs/cgroup/%s%s", controllers[i], parent);
		DIR *d = opendir(cg);
		struct dirent *de;
		while (d && (de = readdir(d)) != NULL) {
			if (strncmp(de->d_name, "ses_", 4) != 0)
				continue;
			const struct cgroup_manager *mgr = sbx__cgroup_detect(NULL);
			if (mgr)
				mgr->session_destroy(parent, de->d_name, NULL);
		}
		if (d)
			closedir(d);
		rmdir(cg);
	}
	/* Unmount deepest first, then remove the files. */
	for (int pass = 0; pass < 1000; pass++) {
		FILE *f = fopen("/proc/self/mountinfo", "r");
		char line[2048], found[1024] = "";
		while (f && fgets(line, sizeof(line), f)) {
			char mnt[1024];
			if (sscanf(line, "%*s %*s %*s %*s %1023s", mnt) == 1 &&
			    strncmp(mnt, base_dir, strlen(base_dir)) == 0 &&
			    strlen(mnt) > strlen(found))
				snprintf(found, sizeof(found), "%s", mnt);
		}
		if (f)
			fclose(f);
		if (found[0] == '\0')
			break;
		umount2(found, MNT_DETACH);
	}
	rm_rf(base_dir, NULL);
}

/* Each test (its own process) gets its own data directory; cfg_extra
 * (may be NULL) sets the capacity numbers. */
static void setup_with(const struct sbx_backend_config *capacity)
{
	if (geteuid() != 0)
		SKIP("sandboxes need root");
	if (access(BUN, X_OK) < 0)
		SKIP("no bun at %s (scripts/install-deps.sh installs it)", BUN);
	snprintf(data_dir, sizeof(data_dir), "%s/t%d", base_dir, (int)getpid());
	char init[PATH_MAX];
	init_path(init, sizeof(init));
	struct bk_err err = BK_ERR_INIT;
	struct sbx_backend_config cfg = {.slot_first = 0, .slot_count = 0};
	snprintf(cfg.data_dir, sizeof(cfg.data_dir), "%s", data_dir);
	snprintf(cfg.init_path, sizeof(cfg.init_path), "%s", init);
	snprintf(cfg.bun_path, sizeof(cfg.bun_path), "%s", BUN);
	snprintf(cfg.cgroup_parent, sizeof(cfg.cgroup_parent), "bunker-unit-%d", (int)getppid());
	if (capacity) {
		cfg.pids_budget = capacity->pids_budget;
		cfg.snapshot_max_bytes = capacity->snapshot_max_bytes;
		cfg.snapshot_min_free_bytes = capacity->snapshot_min_free_bytes;
	}
	CHECK_MSG(sbx_backend_open(&cfg, &backend, &err) == 0, "%s", err.msg);
}

static void setup(void)
{
	setup_with(NULL);
}

/* What a passing test must leave: nothing but its directory. */
static void teardown(void)
{
	backend->ops->close(backend);
	char run[400];
	snprintf(run, sizeof(run), "%s/run", data_dir);
	umount2(run, MNT_DETACH);
	CHECK(rm_rf(data_dir, NULL) == 0);
}

#define UNIT_PIDS 128

static int start_try(const char *id, int disk_mb, struct sbx **s, struct bk_err *err)
{
	struct sbx_limits lim = {.memory_mb = 256, .cpu = 1, .disk_mb = disk_mb, .pids = UNIT_PIDS};
	return backend->ops->start(backend, id, &lim, s, err);
}

static struct sbx *start(const char *id, int disk_mb)
{
	struct sbx *s;
	struct bk_err err = BK_ERR_INIT;
	CHECK_MSG(start_try(id, disk_mb, &s, &err) == 0, "%s", err.msg);
	return s;
}

static void stop(struct sbx *s)
{
	backend->ops->stop(s);
}

static int purge(const char *id, struct bk_err *err)
{
	return backend->ops->purge(backend, id, err);
}

/* PID 1 of s as the host sees it: the process of s's cgroup whose parent
 * is this test. */
static pid_t init_pid(const char *id)
{
	char path[400];
	const struct cgroup_manager *cg = sbx__cgroup_detect(NULL);
	snprintf(path, sizeof(path), "/sys/fs/cgroup/%sbunker-unit-%d/%s/cgroup.procs",
		 strcmp(cg->name, "v1") == 0 ? "pids/" : "", (int)getppid(), id);
	FILE *f = fopen(path, "r");
	CHECK_MSG(f != NULL, "no cgroup at %s", path);
	int pid, found = 0;
	while (fscanf(f, "%d", &pid) == 1) {
		char stat[64], line[512];
		snprintf(stat, sizeof(stat), "/proc/%d/stat", pid);
		FILE *g = fopen(stat, "r");
		int ppid = 0;
		if (g && fgets(line, sizeof(line), g)) {
			char *p = strrchr(line, ')');
			if (p)
				sscanf(p + 2, "%*c %d", &ppid);
		}
		if (g)
			fclose(g);
		if (ppid == getpid())
			found = pid;
	}
	fclose(f);
	return found;
}

/* Runs sh -c cmd; returns the result (caller releases). */
static struct sbx_exec_result run(struct sbx *s, const char *cmd, int64_t timeout_ms)
{
	struct sbx_exec_req req = {.program = SBX_PROGRAM_SHELL,
				   .text = cmd,
				   .cwd = "/workspace",
				   .timeout_ms = timeout_ms,
				   .output_max = 1 << 20,
				   .report_written = true};
	struct sbx_exec_result res;
	struct bk_err err = BK_ERR_INIT;
	CHECK_MSG(backend->ops->exec(s, &req, &res, &err) == 0, "%s", err.msg);
	return res;
}

static void expect_out(struct sbx *s, const char *cmd, const char *want)
{
	struct sbx_exec_result r = run(s, cmd, 10000);
	CHECK_MSG(strcmp(r.out.data ? r.out.data : "", want) == 0,
		  "'%s' printed '%s' (stderr '%s')", cmd, r.out.data ? r.out.data : "",
		  r.err.data ? r.err.data : "");
	sbx_exec_result_release(&r);
}

TEST(sandbox_runs_as_session_user_in_own_namespaces)
{
	setup();
	struct sbx *s = start("ses_unitaaaaaaaaaaaaaaaa", 64);
	expect_out(s, "id -u; id -g; hostname; pwd", "1000\n1000\nbunker\n/workspace\n");
	expect_out(s, "cat /proc/1/comm", "bunker-init\n");
	expect_out(s, "ls /sys/class/net", "lo\n");
	expect_out(s, "test -e /work || test -e /var/lib/bunker || echo hidden", "hidden\n");
	expect_out(s, "ls /root 2>/dev/null || echo denied", "denied\n");
	expect_out(s, "touch /usr/x 2>/dev/null || echo ro", "ro\n");
	/* The host sees the session's ids in the session's own range. */
	char path[64], line[256];
	snprintf(path, sizeof(path), "/proc/%d/status", (int)init_pid(s->id));
	FILE *f = fopen(path, "r");
	CHECK(f != NULL);
	unsigned uid = 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "Uid: %u", &uid) == 1)
			break;
	fclose(f);
	/* The start of a range of its own (the backend's first: no other
	 * session runs). */
	CHECK_INT_EQ(uid, SBX_ID_BASE);
	stop(s);
	struct bk_err err = BK_ERR_INIT;
	CHECK(purge("ses_unitaaaaaaaaaaaaaaaa", &err) == 0);
	teardown();
}

TEST(sandbox_exit_codes_signals_and_output)
{
	setup();
	struct sbx *s = start("ses_unitbbbbbbbbbbbbbbbb", 64);
	struct sbx_exec_result r = run(s, "echo out; echo err >&2; exit 3", 10000);
	CHECK_INT_EQ(r.exit_code, 3);
	CHECK_STR_EQ(r.out.data, "out\n");
	CHECK_STR_EQ(r.err.data, "err\n");
	sbx_exec_result_release(&r);
	r = run(s, "kill -9 $$", 10000);
	CHECK_INT_EQ(r.signal, 9);
	CHECK_INT_EQ(r.exit_code, 137);
	sbx_exec_result_release(&r);
	/* Output past the cap is cut and said to be cut. */
	r = run(s, "head -c 3000000 /dev/zero", 10000);
	CHECK_INT_EQ(r.out.len, 1 << 20);
	CHECK(r.out_truncated);
	sbx_exec_result_release(&r);
	stop(s);
	purge("ses_unitbbbbbbbbbbbbbbbb", NULL);
	teardown();
}

TEST(sandbox_timeout_kills_group_but_not_detached)
{
	setup();
	struct sbx *s = start("ses_unitcccccccccccccccc", 64);
	struct sbx_exec_result r =
	    run(s, "setsid sleep 300 >/dev/null 2>&1 & sleep 200 & sleep 100", 500);
	CHECK(r.timed_out);
	sbx_exec_result_release(&r);
	expect_out(s, "pgrep -x sleep -a | sed 's/^[0-9]* //' | sort", "sleep 300\n");
	/* A background process outlives its execution and keeps writing
	 * without dying of SIGPIPE. */
	r = run(s, "(sleep 0.2; while :; do echo tick; sleep 0.05; done) & echo started", 10000);
	CHECK_STR_EQ(r.out.data, "started\n");
	sbx_exec_result_release(&r);
	usleep(300000);
	expect_out(s, "pgrep -f 'while' >/dev/null && echo alive", "alive\n");
	struct bk_err err = BK_ERR_INIT;
	CHECK(backend->ops->kill(s, 0, &err) == 0);
	usleep(100000);
	expect_out(s, "pgrep sleep || echo none", "none\n");
	stop(s);
	purge("ses_unitcccccccccccccccc", NULL);
	teardown();
}

TEST(sandbox_write_file_is_confined_and_limited)
{
	setup();
	struct sbx *s = start("ses_unitdddddddddddddddd", 16);
	struct bk_err err = BK_ERR_INIT;
	CHECK_MSG(backend->ops->write_file(s, "a/b/c.txt", "hello", 5, &err) == 0, "%s", err.msg);
	expect_out(s, "cat a/b/c.txt; echo; stat -c %U a/b/c.txt", "hello\nuser\n");
	struct sbx_exec_result r = run(s, "ln -s /etc esc && ln -s / root && echo ok", 10000);
	CHECK_STR_EQ(r.out.data, "ok\n");
	sbx_exec_result_release(&r);
	CHECK(backend->ops->write_file(s, "esc/passwd", "x", 1, &err) < 0);
	CHECK_INT_EQ(err.kind, BK_E_INVALID);
	CHECK(backend->ops->write_file(s, "root/tmp/x/y", "x", 1, &err) < 0);
	CHECK_INT_EQ(err.kind, BK_E_INVALID);
	/* The disk limit is the file system's size. */
	char *big = calloc(1, 20 << 20);
	CHECK(backend->ops->write_file(s, "big", big, 20 << 20, &err) < 0);
	CHECK_INT_EQ(err.kind, BK_E_NO_SPACE);
	free(big);
	r = run(s, "head -c 30000000 /dev/zero > fill 2>/dev/null; echo $?", 10000);
	CHECK(strcmp(r.out.data, "0\n") != 0);
	sbx_exec_result_release(&r);
	stop(s);
	purge("ses_unitdddddddddddddddd", NULL);
	teardown();
}

TEST(sandbox_disk_outlives_sandbox_and_purge_leaves_nothing)
{
	setup();
	const char *id = "ses_uniteeeeeeeeeeeeeeee";
	struct sbx *s = start(id, 64);
	expect_out(s, "echo kept > f; setsid sleep 1000 >/dev/null 2>&1 & echo ok", "ok\n");
	pid_t init = init_pid(id);
	CHECK(init > 0);
	stop(s);
	CHECK(kill(init, 0) < 0 && errno == ESRCH);
	char parent[64];
	snprintf(parent, sizeof(parent), "bunker-unit-%d", (int)getppid());
	CHECK(!sbx__cgroup_detect(NULL)->session_exists(parent, id));
	s = start(id, 64);
	expect_out(s, "cat f; pgrep sleep || echo no-sleep", "kept\nno-sleep\n");
	stop(s);
	struct bk_err err = BK_ERR_INIT;
	CHECK_MSG(purge(id, &err) == 0, "%s", err.msg);
	char dir[400];
	snprintf(dir, sizeof(dir), "%s/run/%s", data_dir, id);
	CHECK(access(dir, F_OK) < 0);
	FILE *f = fopen("/proc/self/mountinfo", "r");
	char line[1024];
	while (fgets(line, sizeof(line), f))
		CHECK_MSG(strstr(line, id) == NULL, "mount left: %s", line);
	fclose(f);
	teardown();
}

/* Lines of /proc/<pid>/mountinfo that name a path under dir. */
static int mounts_under(pid_t pid, const char *dir)
{
	char path[64], line[2048];
	snprintf(path, sizeof(path), "/proc/%d/mountinfo", (int)pid);
	FILE *f = fopen(path, "r");
	CHECK_MSG(f != NULL, "cannot read %s", path);
	int n = 0;
	while (fgets(line, sizeof(line), f))
		n += strstr(line, dir) != NULL;
	fclose(f);
	return n;
}

/* Sandboxes are clones of the spawner, whose mount namespace holds none of
 * the sessions' disks that this process's holds: a clone copies the
 * namespace it is made in, and with the disks in it each start cost more
 * with every session. */
TEST(sandbox_clones_come_from_a_namespace_without_the_disks)
{
	setup();
	struct sbx *a = start("ses_unitkkkkkkkkkkkkkkkk", 64);
	struct sbx *b = start("ses_unitmmmmmmmmmmmmmmmm", 64);
	expect_out(b, "echo ok", "ok\n");
	char run[400];
	snprintf(run, sizeof(run), "%s/run", data_dir);
	CHECK_INT_EQ(mounts_under(getpid(), run), 3); /* the run directory, two disks */
	pid_t spawner = ((struct ns_backend *)backend)->spawner_pid;
	CHECK(spawner > 0 && spawner != getpid());
	CHECK_INT_EQ(mounts_under(spawner, run), 0);
	/* Of this process's descriptors it keeps only its socket. */
	char fd_dir[64];
	snprintf(fd_dir, sizeof(fd_dir), "/proc/%d/fd", (int)spawner);
	DIR *d = opendir(fd_dir);
	CHECK(d != NULL);
	int kept = 0;
	for (struct dirent *de; (de = readdir(d)) != NULL;)
		kept += de->d_name[0] != '.' && atoi(de->d_name) > 2;
	closedir(d);
	CHECK_INT_EQ(kept, 1);
	stop(a);
	stop(b);
	purge("ses_unitkkkkkkkkkkkkkkkk", NULL);
	purge("ses_unitmmmmmmmmmmmmmmmm", NULL);
	teardown();
	/* The spawner ends with the backend. */
	CHECK(kill(spawner, 0) < 0 && errno == ESRCH);
}

/* A spawner that is killed is replaced at the next start. */
TEST(sandbox_start_replaces_a_killed_spawner)
{
	setup();
	pid_t first = ((struct ns_backend *)backend)->spawner_pid;
	CHECK(kill(first, SIGKILL) == 0);
	/* Dead (a zombie until the backend reaps it): its socket is closed. */
	for (char state = 0; state != 'Z';) {
		char path[64], line[512];
		snprintf(path, sizeof(path), "/proc/%d/stat", (int)first);
		FILE *f = fopen(path, "r");
		CHECK(f != NULL && fgets(line, sizeof(line), f) != NULL);
		fclose(f);
		char *p = strrchr(line, ')');
		CHECK(p != NULL);
		state = p[2];
		if (state != 'Z')
			usleep(1000);
	}
	struct sbx *s = start("ses_unitnnnnnnnnnnnnnnnn", 64);
	expect_out(s, "echo ok", "ok\n");
	pid_t second = ((struct ns_backend *)backend)->spawner_pid;
	CHECK(second > 0 && second != first);
	CHECK(kill(first, 0) < 0 && errno == ESRCH); /* reaped */
	stop(s);
	purge("ses_unitnnnnnnnnnnnnnnnn", NULL);
	teardown();
}

TEST(sandbox_runs_bun_code_from_stdin)
{
	setup();
	struct sbx *s = start("ses_unitffffffffffffffff", 64);
	const char *code = "const n: number = await Promise.resolve(41); console.log(n + 1)";
	struct sbx_exec_req req = {.program = SBX_PROGRAM_BUN,
				   .text = code,
				   .cwd = "/workspace",
				   .timeout_ms = 20000,
				   .output_max = 1 << 20};
	struct sbx_exec_result r;
	struct bk_err err = BK_ERR_INIT;
	CHECK_MSG(backend->ops->exec(s, &req, &r, &err) == 0, "%s", err.msg);
	CHECK_MSG(r.exit_code == 0, "bun failed: %s", r.err.data ? r.err.data : "");
	CHECK_STR_EQ(r.out.data, "42\n");
	sbx_exec_result_release(&r);
	/* A missing working directory is the caller's error. */
	req.cwd = "/workspace/nope";
	CHECK(backend->ops->exec(s, &req, &r, &err) < 0);
	CHECK_INT_EQ(err.kind, BK_E_INVALID);
	sbx_exec_result_release(&r);
	stop(s);
	purge("ses_unitffffffffffffffff", NULL);
	teardown();
}

/* files_save() works on a frozen sandbox and keeps its disk: thawed, the
 * sandbox goes on with its processes and files; stopped and released, the
 * snapshot brings the files back. */
TEST(sandbox_files_save_of_a_frozen_sandbox_keeps_it_whole)
{
	setup();
	const char *id = "ses_unitgggggggggggggggg";
	struct sbx *s = start(id, 64);
	/* The background process has exec'd before the freeze. */
	expect_out(s,
		   "echo kept > f; setsid sleep 1000 >/dev/null 2>&1 & "
		   "for i in $(seq 100); do pgrep -x sleep >/dev/null && break; sleep 0.05; done; "
		   "echo ok",
		   "ok\n");
	struct bk_err err = BK_ERR_INIT;
	CHECK_MSG(backend->ops->freeze(s, true, &err) == 0, "%s", err.msg);
	struct sbx_save_stats st;
	CHECK_MSG(backend->ops->files_save(backend, id, &st, &err) == 0, "%s", err.msg);
	struct sbx_files_state fs = backend->ops->files_state(backend, id);
	CHECK(fs.disk && fs.snapshot);
	CHECK(st.files >= 2);
	CHECK_MSG(backend->ops->freeze(s, false, &err) == 0, "%s", err.msg);
	expect_out(s, "cat f; pgrep -x sleep >/dev/null && echo alive", "kept\nalive\n");
	stop(s);
	CHECK_MSG(backend->ops->drop_disk(backend, id, &err) == 0, "%s", err.msg);
	CHECK_MSG(backend->ops->files_restore(backend, id, 64, &err) == 0, "%s", err.msg);
	backend->ops->drop_snapshot(backend, id);
	s = start(id, 64);
	expect_out(s, "cat f", "kept\n");
	stop(s);
	purge(id, NULL);
	teardown();
}

/* Files of the snapshot directory whose names end in suffix; *ino (may
 * be NULL) receives the inode of the last one. */
static int snapshot_dir_find(const char *suffix, ino_t *ino)
{
	char snaps[400];
	snprintf(snaps, sizeof(snaps), "%s/snapshots", data_dir);
	DIR *d = opendir(snaps);
	struct dirent *de;
	int n = 0;
	size_t k = strlen(suffix);
	while (d && (de = readdir(d)) != NULL) {
		size_t len = strlen(de->d_name);
		struct stat st;
		if (len <= k || strcmp(de->d_name + len - k, suffix) != 0)
			continue;
		n++;
		if (ino && fstatat(dirfd(d), de->d_name, &st, 0) == 0)
			*ino = st.st_ino;
	}
	if (d)
		closedir(d);
	return n;
}

static int snapshot_dir_count(const char *suffix)
{
	return snapshot_dir_find(suffix, NULL);
}

static ino_t snapshot_dir_ino(const char *suffix)
{
	ino_t ino = 0;
	snapshot_dir_find(suffix, &ino);
	return ino;
}

/* A wake as core does it: the snapshot restored, then dropped. */
static struct sbx *wake(const char *id)
{
	struct bk_err err = BK_ERR_INIT;
	CHECK_MSG(backend->ops->drop_disk(backend, id, &err) == 0, "%s", err.msg);
	CHECK_MSG(backend->ops->files_restore(backend, id, 64, &err) == 0, "%s", err.msg);
	backend->ops->drop_snapshot(backend, id);
	return start(id, 64);
}

/* A save of a disk that woke on an image folds image and upper into one
 * new image, with overlay's rules: a file removed stays removed, a
 * directory removed and made again holds only what it holds now, a file
 * changed is the new one. The image in use is removed with the disk. */
TEST_TIMEOUT(sandbox_files_save_folds_the_image_and_the_upper_into_one, 180)
{
	setup();
	const char *id = "ses_unitjjjjjjjjjjjjjjjj";
	const char *id_suffix_erofs = "jjjjjjjj.erofs";
	struct sbx *s = start(id, 64);
	const char *tree = "cd /workspace && find . | sort && cat a d/x 2>&1";
	expect_out(
	    s, "cd /workspace && echo a > a && echo b > b && mkdir d && echo x > d/x && echo ok",
	    "ok\n");
	struct bk_err err = BK_ERR_INIT;
	CHECK_MSG(backend->ops->files_save(backend, id, NULL, &err) == 0, "%s", err.msg);
	stop(s);
	CHECK_INT_EQ(snapshot_dir_count(".erofs"), 1);
	s = wake(id);
	CHECK_INT_EQ(snapshot_dir_count(".layer.erofs"), 1);
	CHECK_INT_EQ(snapshot_dir_count(".erofs"), 1);
	expect_out(s, tree, ".\n./a\n./b\n./d\n./d/x\na\nx\n");
	/* Saved again unchanged (read, not written): the same image. */
	CHECK_MSG(backend->ops->files_save(backend, id, NULL, &err) == 0, "%s", err.msg);
	CHECK(snapshot_dir_ino(".layer.erofs") != 0);
	CHECK_INT_EQ(snapshot_dir_ino(id_suffix_erofs), snapshot_dir_ino(".layer.erofs"));
	expect_out(s,
		   "cd /workspace && echo A >> a && rm b && rm -r d && mkdir d && echo y > d/y "
		   "&& echo ok",
		   "ok\n");
	const char *want = ".\n./a\n./d\n./d/y\na\nA\ncat: d/x: No such file or directory\n";
	for (int round = 0; round < 2; round++) {
		CHECK_MSG(backend->ops->files_save(backend, id, NULL, &err) == 0, "%s", err.msg);
		stop(s);
		s = wake(id);
		CHECK_INT_EQ(snapshot_dir_count(".erofs"), 1);
		expect_out(s, tree, want);
	}
	struct sbx_stats stats;
	backend->ops->stats(backend, id, &stats);
	CHECK_INT_EQ(stats.files, 2);
	stop(s);
	purge(id, NULL);
	CHECK_INT_EQ(snapshot_dir_count(".erofs"), 0);
	teardown();
}

/* A checkpoint (a tar) of a disk that woke on an image holds both layers. */
TEST_TIMEOUT(sandbox_checkpoint_of_a_disk_on_an_image_holds_both_layers, 120)
{
	setup();
	const char *id = "ses_unitkkkkkkkkkkkkkkkk";
	struct sbx *s = start(id, 64);
	expect_out(s, "cd /workspace && echo a > a && echo b > b && echo ok", "ok\n");
	struct bk_err err = BK_ERR_INIT;
	CHECK_MSG(backend->ops->files_save(backend, id, NULL, &err) == 0, "%s", err.msg);
	stop(s);
	s = wake(id);
	expect_out(s, "cd /workspace && rm b && echo c > c && echo ok", "ok\n");
	CHECK_MSG(backend->ops->files_checkpoint(backend, id, NULL, &err) == 0, "%s", err.msg);
	stop(s);
	CHECK_MSG(backend->ops->checkpoint_move(backend, id, true, &err) == 1, "%s", err.msg);
	CHECK_INT_EQ(snapshot_dir_count(".tar.zst"), 1);
	s = wake(id);
	CHECK_INT_EQ(snapshot_dir_count(".layer.erofs"), 0);
	expect_out(s, "cd /workspace && ls && cat a c", "a\nc\na\nc\n");
	stop(s);
	purge(id, NULL);
	teardown();
}

/* The pids limits of running sandboxes never add up to more than the
 * processes budget: a start past it is refused at once (503), before
 * anything is made, and the kernel holds the parent to the same number. */
TEST(sandbox_start_is_refused_past_the_processes_budget)
{
	struct sbx_backend_config capacity = {.pids_budget = 2 * UNIT_PIDS + UNIT_PIDS / 2};
	setup_with(&capacity);
	struct sbx *a = start("ses_unithhhhhhhhhhhhhhh1", 16);
	struct sbx *b = start("ses_unithhhhhhhhhhhhhhh2", 16);
	struct sbx *c;
	struct bk_err err = BK_ERR_INIT;
	CHECK(start_try("ses_unithhhhhhhhhhhhhhh3", 16, &c, &err) < 0);
	CHECK_INT_EQ(err.kind, BK_E_UNAVAILABLE);
	CHECK_MSG(strstr(err.msg, "capacity") != NULL, "%s", err.msg);
	struct sbx_files_state fs = backend->ops->files_state(backend, "ses_unithhhhhhhhhhhhhhh3");
	CHECK(!fs.disk);
	const struct cgroup_manager *cg = sbx__cgroup_detect(NULL);
	char path[300], text[32];
	snprintf(path, sizeof(path), "/sys/fs/cgroup/%sbunker-unit-%d/pids.max",
		 strcmp(cg->name, "v1") == 0 ? "pids/" : "", (int)getppid());
	FILE *f = fopen(path, "r");
	CHECK(f != NULL && fgets(text, sizeof(text), f) != NULL);
	fclose(f);
	CHECK_INT_EQ(atoll(text), capacity.pids_budget);
	/* A stopped sandbox gives its share back. */
	stop(b);
	c = start("ses_unithhhhhhhhhhhhhhh3", 16);
	stop(a);
	stop(c);
	purge("ses_unithhhhhhhhhhhhhhh1", NULL);
	purge("ses_unithhhhhhhhhhhhhhh2", NULL);
	purge("ses_unithhhhhhhhhhhhhhh3", NULL);
	teardown();
}

/* A save that the snapshot storage has no room for is refused, leaves no
 * file and keeps the disk. */
TEST(sandbox_files_save_is_refused_without_room)
{
	struct sbx_backend_config capacity = {.snapshot_max_bytes = 1 << 20};
	setup_with(&capacity);
	const char *id = "ses_unitiiiiiiiiiiiiiiii";
	struct sbx *s = start(id, 64);
	expect_out(s, "head -c 3000000 /dev/urandom > r.bin && echo ok", "ok\n");
	struct bk_err err = BK_ERR_INIT;
	CHECK_MSG(backend->ops->freeze(s, true, &err) == 0, "%s", err.msg);
	CHECK(backend->ops->files_save(backend, id, NULL, &err) < 0);
	CHECK_INT_EQ(err.kind, BK_E_NO_SPACE);
	struct sbx_files_state fs = backend->ops->files_state(backend, id);
	CHECK(fs.disk && !fs.snapshot);
	char snaps[400];
	snprintf(snaps, sizeof(snaps), "%s/snapshots", data_dir);
	DIR *d = opendir(snaps);
	struct dirent *de;
	while (d && (de = readdir(d)) != NULL)
		CHECK_MSG(de->d_name[0] == '.', "left in the snapshot directory: %s", de->d_name);
	if (d)
		closedir(d);
	CHECK(backend->ops->freeze(s, false, &err) == 0);
	expect_out(s, "wc -c < r.bin", "3000000\n");
	stop(s);
	purge(id, NULL);
	teardown();
}

/* The run directory, where each sandbox's directories and mount points
 * are made, is a tmpfs of its own: not the data directory's file system,
 * whose mkdir (ext4) grows with the inodes freed lately. */
TEST(sandbox_run_directory_is_a_tmpfs)
{
	setup();
	char run[400];
	snprintf(run, sizeof(run), "%s/run", data_dir);
	struct statfs fs;
	CHECK(statfs(run, &fs) == 0);
	CHECK_MSG(fs.f_type == TMPFS_MAGIC, "%s is of file system 0x%lx", run,
		  (unsigned long)fs.f_type);
	struct sbx *s = start("ses_unitrunaaaaaaaaaaaaa", 16);
	expect_out(s, "echo alive", "alive\n");
	stop(s);
	CHECK(purge("ses_unitrunaaaaaaaaaaaaa", NULL) == 0);
	teardown();
}

/* A limit file of session id's cgroup: controller/v1 on cgroup v1, v2 on
 * v2. */
static long long cgroup_value(const char *id, const char *controller, const char *v1,
			      const char *v2)
{
	const struct cgroup_manager *cg = sbx__cgroup_detect(NULL);
	bool one = strcmp(cg->name, "v1") == 0;
	char path[400], text[64] = "";
	snprintf(path, sizeof(path), "/sys/fs/cgroup/%s%sbunker-unit-%d/%s/%s",
		 one ? controller : "", one ? "/" : "", (int)getppid(), id, one ? v1 : v2);
	FILE *f = fopen(path, "r");
	CHECK_MSG(f != NULL, "no %s", path);
	CHECK(fgets(text, sizeof(text), f) != NULL);
	fclose(f);
	return atoll(text);
}

/* An adopted sandbox holds the limits it was adopted with: each that
 * differs from those it started with is written, whichever others are
 * left as they were. */
TEST(sandbox_adopt_writes_the_limits_that_change)
{
	setup();
	struct sbx *s = start("pool_unit1", 16);
	const char *id = "ses_unitadoptaaaaaaaaaa1";
	struct bk_err err = BK_ERR_INIT;
	/* CPU alone changes. */
	struct sbx_limits lim = {.memory_mb = 256, .cpu = 0.5, .disk_mb = 16, .pids = UNIT_PIDS};
	CHECK_MSG(backend->ops->adopt(s, id, &lim, &err) == 0, "%s", err.msg);
	CHECK_INT_EQ(cgroup_value(id, "cpu", "cpu.cfs_quota_us", "cpu.max"), 50000);
	CHECK_INT_EQ(cgroup_value(id, "memory", "memory.limit_in_bytes", "memory.max"),
		     256LL << 20);
	CHECK_INT_EQ(cgroup_value(id, "pids", "pids.max", "pids.max"), UNIT_PIDS);
	/* Then memory and processes, not CPU. */
	const char *id2 = "ses_unitadoptaaaaaaaaaa2";
	lim = (struct sbx_limits){.memory_mb = 300, .cpu = 0.5, .disk_mb = 16, .pids = 64};
	CHECK_MSG(backend->ops->adopt(s, id2, &lim, &err) == 0, "%s", err.msg);
	CHECK_INT_EQ(cgroup_value(id2, "cpu", "cpu.cfs_quota_us", "cpu.max"), 50000);
	CHECK_INT_EQ(cgroup_value(id2, "memory", "memory.limit_in_bytes", "memory.max"),
		     300LL << 20);
	CHECK_INT_EQ(cgroup_value(id2, "pids", "pids.max", "pids.max"), 64);
	expect_out(s, "echo alive", "alive\n");
	stop(s);
	CHECK(purge(id2, &err) == 0);
	teardown();
}
