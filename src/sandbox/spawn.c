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
/* Where the child attaches its root tree in its own copy of the host's
 * mounts: a directory any id may walk to (the child is none of the host's
 * ids), mounted over in that copy only. */
#define CHILD_ROOT_AT "/tmp"

static _Noreturn void spawn_child(int go_fd, int go_w, int err_fd, int sock_fd, int init_fd,
				  int tree_fd, const char *hostname, int cap_last)
{
	const char *stage = "move fds";
	/* The go pipe's write end is the parent's alone: should the daemon die
	 * before it says go, the read below sees the end of the pipe and the
	 * child leaves, instead of waiting for ever with a copy of every fd
	 * the daemon had. */
	close(go_w);
	/* Lift every fd we keep above 3 so that dup2 onto 0..3 cannot hit one. */
	go_fd = fcntl(go_fd, F_DUPFD_CLOEXEC, 10);
	err_fd = fcntl(err_fd, F_DUPFD_CLOEXEC, 10);
	sock_fd = fcntl(sock_fd, F_DUPFD_CLOEXEC, 10);
	init_fd = fcntl(init_fd, F_DUPFD_CLOEXEC, 10);
	tree_fd = fcntl(tree_fd, F_DUPFD_CLOEXEC, 10);
	if (go_fd < 0 || err_fd < 0 || sock_fd < 0 || init_fd < 0 || tree_fd < 0)
		_exit(127);

	/* 1. Wait until the parent has written the id maps and placed us in
	 *    our cgroups. */
	char go;
	if (read(go_fd, &go, 1) != 1)
		_exit(127);

	/* 2. Step into the new root. The child was never the host's root
	 *    (its user namespace is owned by the session's own host id) and
	 *    could not walk the (0700) host path down to it: the parent
	 *    cloned the root's mount tree before the clone (open_tree), and
	 *    the child attaches that detached tree in its own mount namespace,
	 *    where it is a mount of its own that pivot_root accepts. */
	stage = "private mounts";
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
		child_fail(err_fd, stage);
	stage = "attach root";
	if (syscall(SYS_move_mount, tree_fd, "", AT_FDCWD, CHILD_ROOT_AT, MOVE_MOUNT_F_EMPTY_PATH) <
	    0)
		child_fail(err_fd, stage);
	close(tree_fd);
	stage = "enter root";
	if (chdir(CHILD_ROOT_AT) < 0)
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

/* Clones the sandbox's first process into new namespaces whose user
 * namespace is owned by host uid owner, the session's own: the kernel
 * charges a user namespace's per-user counts (inotify instances and
 * watches, namespaces; /proc/sys/user) to its owner in the parent, so a
 * namespace owned by root would share root's 128 inotify instances with
 * every session and with the host's own services. The owner is the
 * creator's effective uid: this thread takes it for the clone alone (raw
 * calls act on the calling thread only; the real and saved uids stay 0, so
 * its capabilities come back with the effective uid). */
static pid_t clone_sandbox(int *pidfd, uid_t owner)
{
	struct clone_args args = {
	    .flags = CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWUTS |
		     CLONE_NEWIPC | CLONE_PIDFD,
	    .pidfd = (uint64_t)(uintptr_t)pidfd,
	    .exit_signal = SIGCHLD,
	};
	if (syscall(SYS_setresuid, -1, owner, -1) < 0)
		return -1;
	pid_t pid = (pid_t)syscall(SYS_clone3, &args, sizeof(args));
	if (pid == 0)
		return 0;
	int e = errno;
	if (syscall(SYS_setresuid, -1, 0, -1) < 0)
		abort(); /* a daemon thread without root's powers cannot go on */
	/* A change of effective uid made the daemon undumpable; it was not. */
	prctl(PR_SET_DUMPABLE, 1, 0, 0, 0);
	errno = e;
	return pid;
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
	/* The root's mount tree, detached, for the child to attach (step 2 of
	 * spawn_child()). */
	_cleanup_close_ int tree = (int)syscall(SYS_open_tree, AT_FDCWD, s->paths.root,
						OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE);
	if (tree < 0)
		return bk_err_set(err, errno, "cannot clone the mounts of '%s'", s->paths.root);
	/* The clone holds the overlay from now on: nothing of the daemon's
	 * reads the root (files at rest are read from the disk's upper
	 * directory), so its mounts leave the daemon's table at once, and
	 * neither this clone nor any later sandbox's copies them. */
	ns__rootfs_umount(&s->paths);
	pid_t pid = clone_sandbox(&s->pidfd, (uid_t)sbx__slot_base(s->slot));
	if (pid == 0)
		spawn_child(f.go[0], f.go[1], f.report[1], f.agent[1], f.init, tree, s->b->hostname,
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
