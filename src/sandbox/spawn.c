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
 * creator's effective uid: the spawner takes it for the clone alone (the
 * real and saved uids stay 0, so its capabilities come back with the
 * effective uid). CLONE_PARENT makes the daemon, the spawner's parent, the
 * sandbox's: the daemon reaps it. */
static pid_t clone_sandbox(int *pidfd, uid_t owner)
{
	struct clone_args args = {
	    .flags = CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWUTS |
		     CLONE_NEWIPC | CLONE_PIDFD | CLONE_PARENT,
	    .pidfd = (uint64_t)(uintptr_t)pidfd,
	};
	if (syscall(SYS_setresuid, -1, owner, -1) < 0)
		return -1;
	pid_t pid = (pid_t)syscall(SYS_clone3, &args, sizeof(args));
	if (pid == 0)
		return 0;
	int e = errno;
	if (syscall(SYS_setresuid, -1, 0, -1) < 0)
		_exit(1); /* a spawner without root's powers cannot go on */
	/* A change of effective uid made the spawner undumpable; it was not. */
	prctl(PR_SET_DUMPABLE, 1, 0, 0, 0);
	errno = e;
	return pid;
}

/* ---- the spawner ----
 *
 * A sandbox's clone copies the cloning process: its memory (page tables
 * the clone copies and its exec tears down, pages the daemon then faults
 * back in copy-on-write) and its mount namespace, which holds one disk
 * per session (sandbox/mntns.c). Both grow with the sessions: measured at
 * 2,000, dup_mmap, exit_mmap and copy_mnt_ns took two fifths of the
 * daemon's CPU. The spawner is a fork of the daemon taken when the backend
 * opens, before any session exists, in a mount namespace of its own
 * without the run directory: it clones each sandbox for the daemon, a copy
 * of a small process whose table holds none of the sessions' mounts. It
 * only makes system calls (it is the fork of a threaded process), and
 * ends when the daemon's end of its socket closes. */

/* The descriptors a start hands to the spawner, in this order. */
enum { SPAWN_GO_R, SPAWN_GO_W, SPAWN_REPORT_W, SPAWN_AGENT, SPAWN_INIT, SPAWN_TREE, SPAWN_NFDS };

struct spawn_request {
	uid_t owner;
};

struct spawn_reply {
	pid_t pid; /* -1 on failure */
	int errnum;
};

/* Sends len bytes of buf with nfds descriptors (0 for none). */
static int send_with_fds(int sock, const void *buf, size_t len, const int *fds, int nfds)
{
	union {
		char buf[CMSG_SPACE(sizeof(int) * SPAWN_NFDS)];
		struct cmsghdr align;
	} ctl;
	struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
	struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
	if (nfds > 0) {
		memset(&ctl, 0, sizeof(ctl));
		msg.msg_control = ctl.buf;
		msg.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nfds);
		struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
		if (c == NULL) { /* never: the buffer is sized for it */
			errno = EINVAL;
			return -1;
		}
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfds);
		memcpy(CMSG_DATA(c), fds, sizeof(int) * (size_t)nfds);
	}
	ssize_t n;
	while ((n = sendmsg(sock, &msg, MSG_NOSIGNAL)) < 0 && errno == EINTR)
		;
	if (n != (ssize_t)len) {
		if (n >= 0)
			errno = EPIPE;
		return -1;
	}
	return 0;
}

/* Receives len bytes into buf and up to nfds descriptors (CLOEXEC) into
 * fds, *got of them (the rest are -1). 1 on success, 0 at the end of the
 * stream, -1 on failure (a message of another length is EPROTO, with the
 * descriptors that came closed). */
static int recv_with_fds(int sock, void *buf, size_t len, int *fds, int nfds, int *got)
{
	union {
		char buf[CMSG_SPACE(sizeof(int) * SPAWN_NFDS)];
		struct cmsghdr align;
	} ctl;
	struct iovec iov = {.iov_base = buf, .iov_len = len};
	struct msghdr msg = {.msg_iov = &iov,
			     .msg_iovlen = 1,
			     .msg_control = ctl.buf,
			     .msg_controllen = sizeof(ctl)};
	*got = 0;
	for (int i = 0; i < nfds; i++)
		fds[i] = -1;
	ssize_t n;
	while ((n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC)) < 0 && errno == EINTR)
		;
	if (n <= 0)
		return (int)n;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		int k = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
		for (int i = 0; i < k; i++) {
			int fd;
			memcpy(&fd, CMSG_DATA(c) + sizeof(int) * (size_t)i, sizeof(int));
			if (*got < nfds)
				fds[(*got)++] = fd;
			else
				close(fd);
		}
	}
	if (n != (ssize_t)len) {
		for (int i = 0; i < *got; i++)
			close(fds[i]);
		for (int i = 0; i < nfds; i++)
			fds[i] = -1;
		*got = 0;
		errno = EPROTO;
		return -1;
	}
	return 1;
}

static _Noreturn void spawner_main(int sock, const struct ns_backend *b)
{
	/* The daemon's handlers are not this process's: default, as an exec
	 * would make them (what is ignored stays ignored, as it does for the
	 * sandboxes, cloned with the mask and dispositions they had). */
	for (int sig = 1; sig < NSIG; sig++) {
		struct sigaction sa;
		if (sig != SIGKILL && sig != SIGSTOP && sigaction(sig, NULL, &sa) == 0 &&
		    sa.sa_handler != SIG_IGN && sa.sa_handler != SIG_DFL)
			signal(sig, SIG_DFL);
	}
	/* Of the daemon's descriptors it keeps its socket alone (and the
	 * standard three): a listening socket, a database or a lock of the
	 * daemon's held on here would outlive what the daemon closes. */
	if (sock > 3)
		syscall(SYS_close_range, 3, sock - 1, 0);
	syscall(SYS_close_range, sock + 1, ~0U, 0);
	/* A copy of the daemon's namespace, less the run directory: the
	 * disks of sessions an earlier run left go from this copy only (the
	 * run directory is private: none of the daemon's later mounts under
	 * it arrives here). */
	int status = 0;
	if (unshare(CLONE_NEWNS) < 0 || umount2(b->run_dir, MNT_DETACH) < 0)
		status = errno ? errno : EIO;
	if (write_full(sock, &status, sizeof(status)) < 0 || status != 0)
		_exit(1);
	for (;;) {
		struct spawn_request req;
		int fds[SPAWN_NFDS], got;
		int r = recv_with_fds(sock, &req, sizeof(req), fds, SPAWN_NFDS, &got);
		if (r == 0)
			_exit(0);
		if (r > 0 && got != SPAWN_NFDS) {
			r = -1;
			errno = EPROTO;
		}
		struct spawn_reply rep = {.pid = -1, .errnum = errno};
		int pidfd = -1;
		if (r > 0) {
			rep.pid = clone_sandbox(&pidfd, req.owner);
			if (rep.pid == 0)
				spawn_child(fds[SPAWN_GO_R], fds[SPAWN_GO_W], fds[SPAWN_REPORT_W],
					    fds[SPAWN_AGENT], fds[SPAWN_INIT], fds[SPAWN_TREE],
					    b->hostname, b->cap_last);
			rep.errnum = rep.pid < 0 ? errno : 0;
		}
		for (int i = 0; i < got; i++)
			close(fds[i]);
		int sent = send_with_fds(sock, &rep, sizeof(rep), &pidfd, rep.pid > 0 ? 1 : 0);
		if (pidfd >= 0)
			close(pidfd);
		if (sent < 0)
			_exit(1);
	}
}

int ns__spawner_open(struct ns_backend *b, struct bk_err *err)
{
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		return bk_err_set(err, errno, "cannot create the sandbox spawner's socket");
	pid_t pid = fork();
	if (pid == 0) {
		close(sv[0]);
		spawner_main(sv[1], b);
	}
	int e = errno;
	close(sv[1]);
	if (pid < 0) {
		close(sv[0]);
		return bk_err_set(err, e, "cannot start the sandbox spawner");
	}
	b->spawner_fd = sv[0];
	b->spawner_pid = pid;
	int status = 0;
	if (read_full(b->spawner_fd, &status, sizeof(status)) != 1) {
		ns__spawner_close(b);
		return bk_err_set(err, EPIPE, "the sandbox spawner did not start");
	}
	if (status != 0) {
		ns__spawner_close(b);
		return bk_err_set(
		    err, status, "the sandbox spawner cannot leave '%s' out of its mount namespace",
		    b->run_dir);
	}
	return 0;
}

void ns__spawner_close(struct ns_backend *b)
{
	if (b->spawner_fd >= 0)
		close(b->spawner_fd);
	b->spawner_fd = -1;
	while (b->spawner_pid > 0 && waitpid(b->spawner_pid, NULL, 0) < 0 && errno == EINTR)
		;
	b->spawner_pid = 0;
}

/* Has the spawner clone the sandbox with the child's descriptors fds: its
 * pid, and its pidfd in *pidfd. A spawner found gone before it took the
 * request (killed, say: the request cannot be sent, or is dropped unread
 * as a reset) is started again, once: a fork of the daemon as it is now,
 * its sessions' disks left out again. */
static pid_t spawner_clone(struct ns_backend *b, const int *fds, uid_t owner, int *pidfd,
			   struct bk_err *err)
{
	struct spawn_request req = {.owner = owner};
	struct spawn_reply rep = {.pid = -1};
	int r = -1, got = 0, e = EPIPE;
	pthread_mutex_lock(&b->spawner_lock);
	for (int attempt = 0; attempt < 2; attempt++) {
		if (attempt > 0) {
			fprintf(stderr,
				"bunkerd: the sandbox spawner (process %d) is gone; starting "
				"another\n",
				(int)b->spawner_pid);
			ns__spawner_close(b);
			if (ns__spawner_open(b, err) < 0) {
				pthread_mutex_unlock(&b->spawner_lock);
				return -1;
			}
		}
		r = -1;
		if (b->spawner_fd >= 0 &&
		    send_with_fds(b->spawner_fd, &req, sizeof(req), fds, SPAWN_NFDS) == 0)
			r = recv_with_fds(b->spawner_fd, &rep, sizeof(rep), pidfd, 1, &got);
		e = r == 0 ? EPIPE : errno;
		if (r > 0 || (r < 0 && e != EPIPE && e != ECONNRESET))
			break;
		/* The end of the stream after the request was sent: the spawner
		 * may have died cloning; nothing is sent twice. */
		if (r == 0)
			break;
	}
	pid_t spawner = b->spawner_pid;
	pthread_mutex_unlock(&b->spawner_lock);
	if (r <= 0)
		return bk_err_set(err, e, "cannot reach the sandbox spawner (process %d)",
				  (int)spawner);
	if (rep.pid <= 0)
		return bk_err_set(err, rep.errnum, "cannot clone the sandbox");
	if (got != 1)
		return bk_err_set(err, EPROTO, "the sandbox spawner sent no pidfd for process %d",
				  (int)rep.pid);
	return rep.pid;
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
	s->limits = *limits;

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
	const int fds[SPAWN_NFDS] = {
	    [SPAWN_GO_R] = f.go[0],	[SPAWN_GO_W] = f.go[1], [SPAWN_REPORT_W] = f.report[1],
	    [SPAWN_AGENT] = f.agent[1], [SPAWN_INIT] = f.init,	[SPAWN_TREE] = tree};
	pid_t pid = spawner_clone(s->b, fds, (uid_t)sbx__slot_base(s->slot), &s->pidfd, err);
	if (pid < 0)
		return -1;
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
