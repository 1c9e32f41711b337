/* Starting and ending a sandbox.
 *
 * sbx_start() is the parent's side; spawn_child() is the ordered checklist
 * of what the child does before bunker-init runs, after nsjail's
 * containProc(). The daemon is multi-threaded, so the child, a clone of one
 * thread, uses nothing but system calls until it execs: every path it needs
 * is computed before the clone, and calls that glibc implements across
 * threads (the set*id family) are made raw.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/sched.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sandbox/sandbox_int.h"
#include "util/cleanup.h"

#define INIT_HELLO_TIMEOUT_MS 10000

struct child_report {
	int errnum;
	char stage[48];
};

static _Noreturn void child_fail(int errfd, const char *stage)
{
	struct child_report r = {.errnum = errno};
	strncpy(r.stage, stage, sizeof(r.stage) - 1);
	write_full(errfd, &r, sizeof(r));
	_exit(127);
}

/* The child: in its new namespaces, still the daemon's image until exec. */
static _Noreturn void spawn_child(int go_fd, int err_fd, int sock_fd, int init_fd, const char *root,
				  const char *hostname, int cap_last)
{
	const char *stage = "move fds";
	/* Lift every fd we keep above 3 so that dup2 onto 0..3 cannot hit one. */
	go_fd = fcntl(go_fd, F_DUPFD_CLOEXEC, 10);
	err_fd = fcntl(err_fd, F_DUPFD_CLOEXEC, 10);
	sock_fd = fcntl(sock_fd, F_DUPFD_CLOEXEC, 10);
	init_fd = fcntl(init_fd, F_DUPFD_CLOEXEC, 10);
	if (go_fd < 0 || err_fd < 0 || sock_fd < 0 || init_fd < 0)
		_exit(127);

	/* 1. Wait until the parent has written the id maps and placed us in
	 *    our cgroups. */
	char go;
	if (read(go_fd, &go, 1) != 1)
		_exit(127);

	/* 2. Step into the new root while still the host's root by id: the
	 *    session's ids could not walk the (0700) host path down to it, and
	 *    an fd opened before the clone would name the parent namespace's
	 *    mount, not this namespace's copy. */
	stage = "private mounts";
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
		child_fail(err_fd, stage);
	/* pivot_root in a user namespace refuses a root mounted by the parent
	 * namespace: bind the root onto itself to get a mount of our own. */
	stage = "bind root";
	if (mount(root, root, NULL, MS_BIND | MS_REC, NULL) < 0)
		child_fail(err_fd, stage);
	stage = "enter root";
	if (chdir(root) < 0)
		child_fail(err_fd, stage);

	/* 3. Become the namespace's root (the host sees the session's range). */
	stage = "setuid";
	/* Raw system calls: glibc's setresgid() would try to bring the
	 * daemon's other threads along, which do not exist in this child, and
	 * wait for them for ever. */
	if (syscall(SYS_setresgid, 0, 0, 0) < 0 || syscall(SYS_setresuid, 0, 0, 0) < 0)
		child_fail(err_fd, stage);

	/* 4. A cgroup namespace rooted at the session's own cgroup. */
	stage = "unshare cgroup";
	if (unshare(CLONE_NEWCGROUP) < 0)
		child_fail(err_fd, stage);

	stage = "sethostname";
	if (sethostname(hostname, strlen(hostname)) < 0)
		child_fail(err_fd, stage);

	/* 5. /proc, /dev, /sys, then pivot_root into the session's overlay. */
	if (sbx_rootfs_setup_child(&stage) < 0)
		child_fail(err_fd, stage);

	/* 6. Loopback up; no other interface exists. */
	stage = "loopback";
	if (sbx_net_setup_child() < 0)
		child_fail(err_fd, stage);

	/* 7. Standard fds on /dev/null, the agent socket on 3. */
	stage = "fds";
	int null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (null_fd < 0 || dup2(null_fd, 0) < 0 || dup2(null_fd, 1) < 0 || dup2(null_fd, 2) < 0 ||
	    dup2(sock_fd, 3) < 0)
		child_fail(err_fd, stage);
	syscall(SYS_close_range, 4, ~0U, CLOSE_RANGE_CLOEXEC);

	/* 8. PID 1 keeps only what it uses: changing ids (executions, file
	 *    operations), emptying its children's bounding sets, killing
	 *    their processes, and reading any workspace file. */
	stage = "capability bounding set";
	for (int cap = 0; cap <= cap_last; cap++) {
		if (cap == CAP_SETUID || cap == CAP_SETGID || cap == CAP_SETPCAP ||
		    cap == CAP_KILL || cap == CAP_DAC_OVERRIDE || cap == CAP_DAC_READ_SEARCH ||
		    cap == CAP_FOWNER)
			continue;
		if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EINVAL)
			child_fail(err_fd, stage);
	}

	/* 9. bunker-init, from the host's binary (static: it needs nothing of
	 *    the image). */
	stage = "exec bunker-init";
	char *argv[] = {(char *)"bunker-init", NULL};
	char *envp[] = {(char *)"PATH=/usr/local/bin:/usr/bin:/bin", NULL};
	syscall(SYS_execveat, init_fd, "", argv, envp, AT_EMPTY_PATH);
	child_fail(err_fd, stage);
}

static pid_t clone_sandbox(int *pidfd)
{
	struct clone_args args = {
	    .flags = CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWUTS |
		     CLONE_NEWIPC | CLONE_PIDFD,
	    .pidfd = (uint64_t)(uintptr_t)pidfd,
	    .exit_signal = SIGCHLD,
	};
	return (pid_t)syscall(SYS_clone3, &args, sizeof(args));
}

static void sbx_kill_and_reap(struct sbx *s)
{
	if (s->pidfd >= 0) {
		syscall(SYS_pidfd_send_signal, s->pidfd, SIGKILL, NULL, 0);
		/* Reaping PID 1 of a PID namespace returns once every process
		 * of the namespace is gone. */
		while (waitpid(s->pid, NULL, __WALL) < 0 && errno == EINTR)
			;
		close(s->pidfd);
		s->pidfd = -1;
	}
}

int sbx_start(const struct sbx_config *cfg, const char *id, int slot,
	      const struct sbx_limits *limits, struct sbx **out, struct bk_err *err)
{
	_cleanup_free_ struct sbx *s = calloc(1, sizeof(*s));
	if (s == NULL)
		return bk_err_set(err, ENOMEM, "cannot start sandbox");
	s->cfg = cfg;
	s->slot = slot;
	s->pidfd = -1;
	snprintf(s->id, sizeof(s->id), "%s", id);
	sbx_paths_init(&s->paths, cfg, id);

	if (sbx_disk_prepare(&s->paths, slot, limits->disk_mb, err) < 0 ||
	    sbx_rootfs_mount(cfg, &s->paths, err) < 0) {
		bk_err_prefix(err, "session %s", id);
		return -1;
	}
	_cleanup_close_ int init_fd = open(cfg->init_path, O_PATH | O_CLOEXEC);
	if (init_fd < 0) {
		int e = errno;
		sbx_rootfs_umount(&s->paths);
		return bk_err_set(err, e, "cannot open '%s'", cfg->init_path);
	}
	char capbuf[16];
	int cap_last = 40;
	if (read_file_small("/proc/sys/kernel/cap_last_cap", capbuf, sizeof(capbuf), NULL) > 0)
		cap_last = atoi(capbuf);
	int sv[2] = {-1, -1}, go[2] = {-1, -1}, ep[2] = {-1, -1};
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0 ||
	    pipe2(go, O_CLOEXEC) < 0 || pipe2(ep, O_CLOEXEC) < 0) {
		int e = errno;
		for (int i = 0; i < 2; i++) {
			if (sv[i] >= 0)
				close(sv[i]);
			if (go[i] >= 0)
				close(go[i]);
			if (ep[i] >= 0)
				close(ep[i]);
		}
		sbx_rootfs_umount(&s->paths);
		return bk_err_set(err, e, "cannot create sandbox channels");
	}
	pid_t pid = clone_sandbox(&s->pidfd);
	if (pid == 0)
		spawn_child(go[0], ep[1], sv[1], init_fd, s->paths.root, cfg->hostname, cap_last);
	int clone_errno = errno;
	close(go[0]);
	close(ep[1]);
	close(sv[1]);
	_cleanup_close_ int go_w = go[1];
	_cleanup_close_ int err_r = ep[0];
	if (pid < 0) {
		close(sv[0]);
		sbx_rootfs_umount(&s->paths);
		return bk_err_set(err, clone_errno, "cannot clone sandbox of session %s", id);
	}
	s->pid = pid;

	char oom[64];
	snprintf(oom, sizeof(oom), "/proc/%d/oom_score_adj", (int)pid);
	/* PID 1 should never be the memory cgroup's victim, its executions
	 * should. Best effort: it takes CAP_SYS_RESOURCE, which some hosts
	 * (this project's CI among them) withhold even from root. */
	write_file_str(oom, "-1000", NULL);
	if (sbx_userns_setup_parent(pid, slot, err) < 0 ||
	    sbx_cgroup_setup_parent(cfg, id, limits, pid, err) < 0) {
		close(sv[0]);
		goto fail;
	}
	if (write_full(go_w, "g", 1) < 0) {
		close(sv[0]);
		bk_err_set(err, errno, "cannot release sandbox of session %s", id);
		goto fail;
	}
	if (agent_conn_open_take(sv[0], INIT_HELLO_TIMEOUT_MS, &s->conn, err) < 0) {
		struct child_report r;
		if (read_full(err_r, &r, sizeof(r)) == 1) {
			r.stage[sizeof(r.stage) - 1] = '\0';
			bk_err_set(err, r.errnum, "sandbox setup failed at '%s'", r.stage);
		}
		goto fail;
	}
	*out = steal_ptr(&s);
	return 0;
fail:
	bk_err_prefix(err, "session %s", id);
	sbx_kill_and_reap(s);
	sbx_cgroup_destroy(cfg, id, NULL);
	sbx_rootfs_umount(&s->paths);
	return -1;
}

void sbx_terminate(struct sbx *s)
{
	if (s->pidfd >= 0)
		syscall(SYS_pidfd_send_signal, s->pidfd, SIGKILL, NULL, 0);
	if (s->conn)
		agent_conn_shutdown(s->conn);
}

void sbx_stop(struct sbx *s)
{
	if (s == NULL)
		return;
	/* A frozen process dies only once thawed. */
	sbx_cgroup_freeze(s->cfg, s->id, false, NULL);
	sbx_kill_and_reap(s);
	agent_conn_close(s->conn);
	struct bk_err err = BK_ERR_INIT;
	if (sbx_cgroup_destroy(s->cfg, s->id, &err) < 0)
		fprintf(stderr, "bunkerd: session %s: %s\n", s->id, err.msg);
	sbx_rootfs_umount(&s->paths);
	free(s);
}

bool sbx_alive(const struct sbx *s)
{
	return s->conn && agent_conn_alive(s->conn);
}

pid_t sbx_init_pid(const struct sbx *s)
{
	return s->pid;
}

void sbx_cleanup_stale(const struct sbx_config *cfg, const char *id)
{
	struct sbx_paths p;
	sbx_paths_init(&p, cfg, id);
	sbx_cgroup_destroy(cfg, id, NULL);
	sbx_rootfs_umount(&p);
}

int sbx_purge(const struct sbx_config *cfg, const char *id, struct bk_err *err)
{
	struct sbx_paths p;
	sbx_paths_init(&p, cfg, id);
	int r = sbx_cgroup_destroy(cfg, id, err);
	if (sbx_disk_destroy(&p, err) < 0)
		r = -1;
	return r;
}

int sbx_config_init(struct sbx_config *cfg, const char *data_dir, const char *init_path,
		    const char *bun_path, struct bk_err *err)
{
	memset(cfg, 0, sizeof(*cfg));
	snprintf(cfg->hostname, sizeof(cfg->hostname), "bunker");
	/* One daemon, one parent cgroup: "bunker" for the default data
	 * directory, "bunker-<hash of the directory>" for any other, so that
	 * two daemons on one host (tests, a second instance) never meet in
	 * each other's cgroups. */
	if (strcmp(data_dir, "/var/lib/bunker") == 0) {
		snprintf(cfg->cgroup_parent, sizeof(cfg->cgroup_parent), "bunker");
	} else {
		uint32_t h = 2166136261u; /* FNV-1a */
		for (const char *c = data_dir; *c; c++)
			h = (h ^ (uint8_t)*c) * 16777619u;
		snprintf(cfg->cgroup_parent, sizeof(cfg->cgroup_parent), "bunker-%08x", h);
	}
	snprintf(cfg->init_path, sizeof(cfg->init_path), "%s", init_path);
	if (access(init_path, X_OK) < 0)
		return bk_err_set(err, errno, "cannot run '%s'", init_path);
	if (sbx_cgroup_detect(&cfg->cgroup_mode, err) < 0)
		return -1;
	/* Sessions together get at most 80% of the host's memory. */
	int64_t total = (int64_t)sysconf(_SC_PHYS_PAGES) * sysconf(_SC_PAGESIZE);
	if (sbx_cgroup_parent_setup(cfg, total / 5 * 4, err) < 0)
		return -1;
	snprintf(cfg->run_dir, sizeof(cfg->run_dir), "%s/run", data_dir);
	if (mkdir_p(cfg->run_dir, 0700, err) < 0)
		return -1;
	/* Session mounts live under a private mount, so that none of them
	 * propagates into other mount namespaces of the host. */
	if (!sbx_is_mountpoint(cfg->run_dir)) {
		if (mount(cfg->run_dir, cfg->run_dir, NULL, MS_BIND, NULL) < 0)
			return bk_err_set(err, errno, "cannot bind '%s'", cfg->run_dir);
	}
	if (mount(NULL, cfg->run_dir, NULL, MS_PRIVATE, NULL) < 0)
		return bk_err_set(err, errno, "cannot make '%s' private", cfg->run_dir);
	return sbx_image_ensure(data_dir, bun_path, cfg->image_dir, sizeof(cfg->image_dir), err);
}

const char *sbx_id(const struct sbx *s)
{
	return s->id;
}

int sbx_slot(const struct sbx *s)
{
	return s->slot;
}

int sbx_adopt(struct sbx *s, const char *id, const struct sbx_limits *limits, struct bk_err *err)
{
	struct sbx_paths p;
	sbx_paths_init(&p, s->cfg, id);
	if (sbx_cgroup_rename(s->cfg, s->id, id, err) < 0)
		return -1;
	if (rename(s->paths.dir, p.dir) < 0) {
		int e = errno;
		sbx_cgroup_rename(s->cfg, id, s->id, NULL);
		return bk_err_set(err, e, "cannot rename '%s'", s->paths.dir);
	}
	snprintf(s->id, sizeof(s->id), "%s", id);
	s->paths = p;
	if (sbx_cgroup_set_limits(s->cfg, id, limits, err) < 0 ||
	    sbx_disk_resize(&s->paths, limits->disk_mb, err) < 0) {
		bk_err_prefix(err, "session %s", id);
		return -1;
	}
	return 0;
}

int sbx_freeze(struct sbx *s, bool frozen, struct bk_err *err)
{
	return sbx_cgroup_freeze(s->cfg, s->id, frozen, err);
}

void sbx_run_dir_release(const struct sbx_config *cfg)
{
	/* Only when no session keeps a disk under it: unmounting it would take
	 * their files along. */
	_cleanup_closedir_ DIR *d = opendir(cfg->run_dir);
	struct dirent *de;
	while (d && (de = readdir(d)) != NULL) {
		char p[1024];
		if (de->d_name[0] == '.')
			continue;
		snprintf(p, sizeof(p), "%s/%s/disk", cfg->run_dir, de->d_name);
		if (sbx_is_mountpoint(p))
			return;
	}
	umount2(cfg->run_dir, MNT_DETACH);
}
