/* Starting bunker-init as PID 1 of a sandbox's new namespaces.
 *
 * Two ordered checklists, one per side, after nsjail's containProc():
 * spawn_child() is what the child does before bunker-init runs,
 * spawn_parent() what the daemon does meanwhile (the child waits on the go
 * pipe until it is done). A failure on either side ends the start with
 * nothing of it left running; the child's failures come back on a CLOEXEC
 * pipe as a message naming the step.
 *
 * The daemon is multi-threaded, so the child, a clone of one thread, uses
 * nothing but system calls until it execs: every path it needs is computed
 * before the clone, and calls that glibc implements across threads (the
 * set*id family) are made raw.
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

#include "sandbox/ns_int.h"
#include "util/cleanup.h"

/* How long bunker-init may take to say hello once released. */
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
	if (ns__rootfs_setup_child(&stage) < 0)
		child_fail(err_fd, stage);

	/* 6. Loopback up; no other interface exists. */
	stage = "loopback";
	if (ns__net_setup_child() < 0)
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
	 *    their processes, reading any workspace file, and giving what an
	 *    upload creates to the session's user (CAP_CHOWN: within the
	 *    user namespace, so only to the session's own ids). */
	stage = "capability bounding set";
	for (int cap = 0; cap <= cap_last; cap++) {
		if (cap == CAP_SETUID || cap == CAP_SETGID || cap == CAP_SETPCAP ||
		    cap == CAP_KILL || cap == CAP_DAC_OVERRIDE || cap == CAP_DAC_READ_SEARCH ||
		    cap == CAP_FOWNER || cap == CAP_CHOWN)
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

void ns__kill_and_reap(struct ns_sbx *s)
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

/* The descriptors of a start: the agent socket (the daemon's end stays
 * with the sandbox), the go pipe, the child's error pipe and bunker-init's
 * binary. Each is -1 once closed or handed on. */
struct spawn_fds {
	int agent[2];
	int go[2];
	int report[2];
	int init;
};

static void spawn_fds_close(struct spawn_fds *f)
{
	int *all[] = {&f->agent[0],  &f->agent[1],  &f->go[0], &f->go[1],
		      &f->report[0], &f->report[1], &f->init};
	for (size_t i = 0; i < ARRAY_SIZE(all); i++) {
		if (*all[i] >= 0)
			close(*all[i]);
		*all[i] = -1;
	}
}

static int spawn_fds_open(struct spawn_fds *f, const char *init_path, struct bk_err *err)
{
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, f->agent) < 0 ||
	    pipe2(f->go, O_CLOEXEC) < 0 || pipe2(f->report, O_CLOEXEC) < 0)
		return bk_err_set(err, errno, "cannot create sandbox channels");
	f->init = open(init_path, O_PATH | O_CLOEXEC);
	if (f->init < 0)
		return bk_err_set(err, errno, "cannot open '%s'", init_path);
	return 0;
}

/* The parent's checklist, once the child is cloned and waits on the go
 * pipe. */
static int spawn_parent(struct ns_sbx *s, const struct sbx_limits *limits, struct spawn_fds *f,
			struct bk_err *err)
{
	struct ns_backend *b = s->b;
	/* 1. PID 1 should never be the memory cgroup's victim, its executions
	 *    should. Best effort: it takes CAP_SYS_RESOURCE, which some hosts
	 *    (this project's CI among them) withhold even from root. */
	char oom[64];
	snprintf(oom, sizeof(oom), "/proc/%d/oom_score_adj", (int)s->pid);
	write_file_str(oom, "-1000", NULL);

	/* 2. The id maps of its user namespace: its slot's range. */
	if (ns__userns_setup_parent(s->pid, s->slot, err) < 0)
		return -1;

	/* 3. Its cgroups, with the session's limits. */
	if (b->cg->session_create(b->cgroup_parent, s->base.id, limits, s->pid, err) < 0) {
		bk_err_prefix(err, "cannot set up cgroups of session %s", s->base.id);
		return -1;
	}

	/* 4. Go. */
	if (write_full(f->go[1], "g", 1) < 0)
		return bk_err_set(err, errno, "cannot release the sandbox");

	/* 5. bunker-init's hello on the agent socket, or the child's report of
	 *    the step that failed. */
	int agent = steal_fd(&f->agent[0]);
	if (agent_conn_open_take(agent, INIT_HELLO_TIMEOUT_MS, &s->conn, err) < 0) {
		struct child_report r;
		if (read_full(f->report[0], &r, sizeof(r)) == 1) {
			r.stage[sizeof(r.stage) - 1] = '\0';
			bk_err_set(err, r.errnum, "sandbox setup failed at '%s'", r.stage);
		}
		return -1;
	}
	s->base.agent = s->conn;
	return 0;
}

int ns__spawn(struct ns_sbx *s, const struct sbx_limits *limits, struct bk_err *err)
{
	__attribute__((cleanup(spawn_fds_close))) struct spawn_fds f = {
	    .agent = {-1, -1}, .go = {-1, -1}, .report = {-1, -1}, .init = -1};
	if (spawn_fds_open(&f, s->b->init_path, err) < 0)
		return -1;
	s->pidfd = -1;
	pid_t pid = clone_sandbox(&s->pidfd);
	if (pid == 0)
		spawn_child(f.go[0], f.report[1], f.agent[1], f.init, s->paths.root, s->b->hostname,
			    s->b->cap_last);
	if (pid < 0)
		return bk_err_set(err, errno, "cannot clone the sandbox");
	/* The child's ends are the child's. */
	close(steal_fd(&f.go[0]));
	close(steal_fd(&f.report[1]));
	close(steal_fd(&f.agent[1]));
	s->pid = pid;
	if (spawn_parent(s, limits, &f, err) < 0) {
		ns__kill_and_reap(s);
		s->b->cg->session_destroy(s->b->cgroup_parent, s->base.id, NULL);
		return -1;
	}
	return 0;
}
