/* bunker-init: PID 1 inside every sandbox.
 *
 * It speaks the agent protocol (agent/proto.h) with bunkerd over fd 3,
 * spawns executions as the session's user, forwards their output, enforces
 * their time limits, reports their exits and reaps every orphan. It is a
 * single-threaded poll loop with no allocation on the signal path, linked
 * statically so that it needs nothing from the image.
 *
 * PID 1 of a PID namespace gets no signal from inside the namespace that it
 * has no handler for, and it installs none: it blocks everything and reads
 * SIGCHLD from a signalfd, so no user process can kill it.
 */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <linux/openat2.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/fsuid.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "agent/proto.h"
#include "init/harden.h"
#include "init/init.h"
#include "util/cleanup.h"
#include "util/util.h"

#define MAX_EXECS 64
#define MAX_DRAIN 128
#define CHUNK 65536

struct exec {
	bool used;
	uint32_t req_id;
	pid_t pid;
	int out[2];	/* read ends of stdout, stderr; -1 once closed */
	size_t sent[2]; /* bytes forwarded per stream */
	size_t output_max;
	int64_t deadline_us; /* monotonic; 0: none */
	int64_t start_us;
	int64_t start_ns; /* realtime, coarse: compared with file ctimes */
	bool timed_out;
	char *watch;
};

static struct exec execs[MAX_EXECS];
static int drain_fds[MAX_DRAIN];
static int n_drain;

void init_send(const struct agent_msg *m)
{
	/* The daemon is gone or broken: nothing in here can go on without it. */
	if (agent_msg_send(AGENT_FD, m) < 0)
		_exit(1);
}

void init_result(uint32_t req_id, int errnum, const char *stage, const char *message)
{
	struct agent_msg m;
	agent_msg_init(&m, AGENT_RESULT, req_id);
	agent_msg_put_i64(&m, AGENT_T_ERRNO, errnum);
	if (stage)
		agent_msg_put_str(&m, AGENT_T_STAGE, stage);
	if (message)
		agent_msg_put_str(&m, AGENT_T_MESSAGE, message);
	init_send(&m);
	agent_msg_release(&m);
}

static void drain_add(int fd)
{
	if (fd < 0)
		return;
	if (n_drain == MAX_DRAIN) {
		close(drain_fds[0]);
		memmove(drain_fds, drain_fds + 1, sizeof(int) * (MAX_DRAIN - 1));
		n_drain--;
	}
	drain_fds[n_drain++] = fd;
}

/* Reads what is available on one of an exec's streams, at most max_reads
 * chunks so that a chatty exec cannot starve the others, and forwards it up
 * to output_max; returns false at EOF. */
static bool exec_pump(struct exec *e, int stream, int max_reads)
{
	char buf[CHUNK];
	for (int i = 0; i < max_reads; i++) {
		ssize_t n = read(e->out[stream], buf, sizeof(buf));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return errno == EAGAIN;
		}
		if (n == 0)
			return false;
		size_t room = e->output_max > e->sent[stream] ? e->output_max - e->sent[stream] : 0;
		size_t fwd = (size_t)n < room ? (size_t)n : room;
		e->sent[stream] += (size_t)n;
		if (fwd > 0) {
			struct agent_msg m;
			agent_msg_init(&m, AGENT_OUTPUT, e->req_id);
			agent_msg_put_i64(&m, AGENT_T_STREAM, stream + 1);
			agent_msg_put(&m, AGENT_T_DATA, buf, fwd);
			init_send(&m);
			agent_msg_release(&m);
		}
	}
	return true;
}

static int64_t ts_ns(struct timespec t)
{
	return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

/* nftw() has no context argument; init is single-threaded. */
static struct agent_msg *walk_msg;
static int64_t walk_since_ns;
static size_t walk_prefix_len;
static int walk_count;

static int walk_visit(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)ftw;
	if (type != FTW_F && type != FTW_SL)
		return 0;
	/* ctime only: a program can set mtime to anything, not ctime. */
	if (ts_ns(st->st_ctim) < walk_since_ns)
		return 0;
	if (strlen(path) <= walk_prefix_len)
		return 0;
	agent_msg_put_str(walk_msg, AGENT_T_PATH, path + walk_prefix_len);
	return ++walk_count >= AGENT_MAX_WRITTEN ? 1 : 0;
}

/* After a timeout: waits (a second at most) until every process of the
 * execution's group is gone and reaped, so that the answer that says the
 * tree was killed is true when it arrives. */
static void group_wait_gone(pid_t pgid)
{
	for (int i = 0; i < 200; i++) {
		while (waitpid(-pgid, NULL, WNOHANG) > 0)
			;
		if (kill(-pgid, 0) < 0 && errno == ESRCH)
			return;
		kill(-pgid, SIGKILL);
		struct timespec ts = {0, 5 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
}

static void exec_finish(struct exec *e, int status, const struct rusage *ru)
{
	if (e->timed_out)
		group_wait_gone(e->pid);
	for (int s = 0; s < 2; s++) {
		if (e->out[s] >= 0)
			exec_pump(e, s, 1024);
	}
	struct agent_msg m;
	agent_msg_init(&m, AGENT_EXEC_DONE, e->req_id);
	if (WIFEXITED(status))
		agent_msg_put_i64(&m, AGENT_T_EXIT_CODE, WEXITSTATUS(status));
	else if (WIFSIGNALED(status)) {
		agent_msg_put_i64(&m, AGENT_T_EXIT_CODE, 128 + WTERMSIG(status));
		agent_msg_put_i64(&m, AGENT_T_SIGNAL, WTERMSIG(status));
	}
	agent_msg_put_i64(&m, AGENT_T_TIMED_OUT, e->timed_out);
	agent_msg_put_i64(&m, AGENT_T_UTIME_US,
			  (int64_t)ru->ru_utime.tv_sec * 1000000 + ru->ru_utime.tv_usec);
	agent_msg_put_i64(&m, AGENT_T_STIME_US,
			  (int64_t)ru->ru_stime.tv_sec * 1000000 + ru->ru_stime.tv_usec);
	agent_msg_put_i64(&m, AGENT_T_MAXRSS_KB, ru->ru_maxrss);
	agent_msg_put_i64(&m, AGENT_T_WALL_US, mono_us() - e->start_us);
	int64_t trunc = (e->sent[0] > e->output_max ? 1 : 0) | (e->sent[1] > e->output_max ? 2 : 0);
	agent_msg_put_i64(&m, AGENT_T_TRUNCATED, trunc);
	if (e->watch != NULL) {
		walk_msg = &m;
		walk_since_ns = e->start_ns;
		walk_prefix_len = strlen(e->watch) + 1;
		walk_count = 0;
		/* No FTW_MOUNT: overlayfs reports the upper layer's device for files. */
		nftw(e->watch, walk_visit, 16, FTW_PHYS);
	}
	init_send(&m);
	agent_msg_release(&m);
	/* Processes the exec left running may still hold the pipes: keep reading
	 * (and dropping) so that they never die of SIGPIPE. */
	for (int s = 0; s < 2; s++)
		drain_add(e->out[s]);
	free(e->watch);
	memset(e, 0, sizeof(*e));
}

/* The time from which file changes count as an execution's.
 *
 * File timestamps come from the kernel's coarse clock (one tick, 4 ms
 * here), so a file changed just before an execution can carry the same
 * time as its start, and a fine-grained start can be later than a change
 * made just after it. Kernels with multigrain timestamps (6.13 on) settle
 * it: changing a file whose ctime was read within the same tick gives it a
 * fine-grained ctime, and every timestamp handed out afterwards, coarse or
 * not, is at least that one. So: change a private memfd twice, reading it
 * between, and start from its new ctime. Where the kernel has no multigrain timestamps (its ctime
 * does not move past the coarse clock), the coarse clock is the start, and a file changed in the
 * same tick just before an execution may be listed. */
static int clock_fd = -1;
static bool clock_fine;

static int64_t change_clock_now(void)
{
	struct timespec coarse;
	clock_gettime(CLOCK_REALTIME_COARSE, &coarse);
	if (clock_fd < 0)
		return ts_ns(coarse);
	/* The first change sets the coarse time; once that is read, the
	 * second cannot move past it on the coarse clock and takes a
	 * fine-grained time, which raises the floor for every later change. */
	struct stat st;
	static char flip;
	flip ^= 1;
	if (pwrite(clock_fd, &flip, 1, 0) != 1 || fstat(clock_fd, &st) < 0 ||
	    pwrite(clock_fd, &flip, 1, 0) != 1 || fstat(clock_fd, &st) < 0)
		return ts_ns(coarse);
	int64_t c = ts_ns(st.st_ctim);
	return clock_fine && c > ts_ns(coarse) ? c : ts_ns(coarse);
}

static void change_clock_init(void)
{
	clock_fd = memfd_create("bunker-clock", MFD_CLOEXEC);
	if (clock_fd < 0)
		return;
	/* Fine-grained when a change lands past the coarse clock. */
	for (int i = 0; i < 3 && !clock_fine; i++) {
		struct timespec coarse;
		clock_gettime(CLOCK_REALTIME_COARSE, &coarse);
		clock_fine = true;
		clock_fine = change_clock_now() > ts_ns(coarse);
	}
}

struct child_fail {
	int errnum;
	char stage[32];
};

/* Runs in the forked child: never returns. Only async-signal-safe calls. */
static _Noreturn void exec_child(int errfd, int in_fd, int out_w, int err_w, const char *cwd,
				 uid_t uid, gid_t gid, char **argv, char **envp)
{
	struct child_fail f = {0};
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	setpgid(0, 0);
	if (dup2(in_fd, 0) < 0 || dup2(out_w, 1) < 0 || dup2(err_w, 2) < 0) {
		strcpy(f.stage, "dup2");
		goto fail;
	}
	/* The OOM killer's choice among the session's processes: PID 1 is
	 * shielded by the host, its executions start from neutral. */
	int oom = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
	if (oom >= 0) {
		write_full(oom, "0", 1);
		close(oom);
	}
	const char *stage;
	if (harden_become_user(uid, gid, &stage) < 0) {
		snprintf(f.stage, sizeof(f.stage), "%s", stage);
		goto fail;
	}
	if (chdir(cwd) < 0) {
		strcpy(f.stage, "chdir");
		goto fail;
	}
	/* Everything above 2 but the error pipe goes; the error pipe is CLOEXEC. */
	if (errfd > 3) {
		syscall(SYS_close_range, 3, errfd - 1, 0);
	}
	syscall(SYS_close_range, errfd + 1, ~0U, 0);
	/* Last: from here on the filter also binds this code. */
	if (harden_seccomp_load() < 0) {
		strcpy(f.stage, "seccomp");
		goto fail;
	}
	execve(argv[0], argv, envp);
	strcpy(f.stage, "exec");
fail:
	f.errnum = errno;
	write_full(errfd, &f, sizeof(f));
	_exit(127);
}

static struct exec *exec_slot(void)
{
	for (int i = 0; i < MAX_EXECS; i++)
		if (!execs[i].used)
			return &execs[i];
	return NULL;
}

static void handle_exec(const struct agent_msg *req)
{
	char *argv[256], *envp[256];
	int argc = 0, envc = 0;
	const char *cwd = AGENT_WORKSPACE;
	struct agent_field f, fin = {0}, fwatch = {0};
	bool have_in = false, have_watch = false;
	size_t off = 0;
	/* The payload is not NUL-terminated: copy strings out. */
	_cleanup_free_ char *strs = malloc(req->len + 256);
	char *sp = strs;
	if (strs == NULL) {
		init_result(req->req_id, ENOMEM, "setup", "out of memory");
		return;
	}
	while (agent_msg_next(req, &off, &f)) {
		char *s = NULL;
		if (f.tag == AGENT_T_ARGV || f.tag == AGENT_T_ENV || f.tag == AGENT_T_CWD) {
			s = sp;
			memcpy(sp, f.data, f.len);
			sp[f.len] = '\0';
			sp += f.len + 1;
		}
		if (f.tag == AGENT_T_ARGV && argc < 255)
			argv[argc++] = s;
		else if (f.tag == AGENT_T_ENV && envc < 255)
			envp[envc++] = s;
		else if (f.tag == AGENT_T_CWD)
			cwd = s;
		else if (f.tag == AGENT_T_STDIN) {
			fin = f;
			have_in = true;
		} else if (f.tag == AGENT_T_WATCH) {
			fwatch = f;
			have_watch = true;
		}
	}
	argv[argc] = NULL;
	envp[envc] = NULL;
	if (argc == 0) {
		init_result(req->req_id, EINVAL, "setup", "no argv");
		return;
	}
	struct exec *e = exec_slot();
	if (e == NULL) {
		init_result(req->req_id, EAGAIN, "setup", "too many executions at once");
		return;
	}
	uid_t uid = (uid_t)agent_msg_get_i64(req, AGENT_T_UID, 1000);
	gid_t gid = (gid_t)agent_msg_get_i64(req, AGENT_T_GID, 1000);
	int64_t timeout_ms = agent_msg_get_i64(req, AGENT_T_TIMEOUT_MS, 0);

	_cleanup_close_ int in_fd = -1;
	if (have_in) {
		in_fd = memfd_create("stdin", MFD_CLOEXEC);
		if (in_fd < 0 || write_full(in_fd, fin.data, fin.len) < 0 ||
		    lseek(in_fd, 0, SEEK_SET) < 0) {
			init_result(req->req_id, errno, "stdin", "cannot prepare stdin");
			return;
		}
	} else {
		in_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	}
	int po[2], pe[2], pf[2];
	if (pipe2(po, O_CLOEXEC) < 0) {
		init_result(req->req_id, errno, "pipe", "cannot create pipe");
		return;
	}
	if (pipe2(pe, O_CLOEXEC) < 0) {
		init_result(req->req_id, errno, "pipe", "cannot create pipe");
		close(po[0]), close(po[1]);
		return;
	}
	if (pipe2(pf, O_CLOEXEC) < 0) {
		init_result(req->req_id, errno, "pipe", "cannot create pipe");
		close(po[0]), close(po[1]), close(pe[0]), close(pe[1]);
		return;
	}
	int64_t start_ns = change_clock_now();
	int64_t start_us = mono_us();
	pid_t pid = fork();
	if (pid == 0) {
		close(pf[0]);
		exec_child(pf[1], in_fd, po[1], pe[1], cwd, uid, gid, argv, envp);
	}
	int fork_errno = errno;
	close(po[1]), close(pe[1]), close(pf[1]);
	if (pid < 0) {
		close(po[0]), close(pe[0]), close(pf[0]);
		init_result(req->req_id, fork_errno, "fork", "cannot fork");
		return;
	}
	struct child_fail cf;
	int r = read_full(pf[0], &cf, sizeof(cf));
	close(pf[0]);
	if (r == 1) {
		/* Reaped by the SIGCHLD loop, which finds no exec for it. */
		close(po[0]), close(pe[0]);
		char msg[128];
		snprintf(msg, sizeof(msg), "cannot start: %s failed: %s", cf.stage,
			 strerror(cf.errnum));
		init_result(req->req_id, cf.errnum, cf.stage, msg);
		return;
	}
	fcntl(po[0], F_SETFL, O_NONBLOCK);
	fcntl(pe[0], F_SETFL, O_NONBLOCK);
	*e = (struct exec){
	    .used = true,
	    .req_id = req->req_id,
	    .pid = pid,
	    .out = {po[0], pe[0]},
	    .output_max = (size_t)agent_msg_get_i64(req, AGENT_T_OUTPUT_MAX, 10 << 20),
	    .deadline_us = timeout_ms > 0 ? start_us + timeout_ms * 1000 : 0,
	    .start_us = start_us,
	    .start_ns = start_ns,
	};
	if (have_watch)
		e->watch = strndup((const char *)fwatch.data, fwatch.len);
	struct agent_msg m;
	agent_msg_init(&m, AGENT_EXEC_STARTED, req->req_id);
	agent_msg_put_i64(&m, AGENT_T_PID, pid);
	init_send(&m);
	agent_msg_release(&m);
}

static void handle_kill(const struct agent_msg *req)
{
	pid_t pid = (pid_t)agent_msg_get_i64(req, AGENT_T_PID, 0);
	int r;
	if (pid == 1) {
		init_result(req->req_id, EPERM, "kill", "pid 1 is the sandbox's init");
		return;
	}
	/* kill(-1) from PID 1 reaches every other process of the namespace. */
	bool group = agent_msg_get_i64(req, AGENT_T_GROUP, 0) != 0;
	r = kill(pid == 0 ? -1 : group ? -pid : pid, SIGKILL);
	init_result(req->req_id, r < 0 && !(pid == 0 && errno == ESRCH) ? errno : 0, "kill", NULL);
}

/* One PROC field per process but PID 1, read from /proc. */
static void handle_ps(const struct agent_msg *req)
{
	struct agent_msg m;
	agent_msg_init(&m, AGENT_RESULT, req->req_id);
	agent_msg_put_i64(&m, AGENT_T_ERRNO, 0);
	char text[8192];
	/* starttime counts clock ticks of CLOCK_BOOTTIME: map it onto the
	 * wall clock through the two clocks' present values. */
	struct timespec rt, bt;
	clock_gettime(CLOCK_REALTIME, &rt);
	clock_gettime(CLOCK_BOOTTIME, &bt);
	int64_t boot_ms =
	    ((int64_t)rt.tv_sec - bt.tv_sec) * 1000 + (rt.tv_nsec - bt.tv_nsec) / 1000000;
	long hz = sysconf(_SC_CLK_TCK);
	_cleanup_closedir_ DIR *d = opendir("/proc");
	struct dirent *de;
	while (d && (de = readdir(d)) != NULL) {
		char *end;
		long pid = strtol(de->d_name, &end, 10);
		if (*end != '\0' || pid <= 1)
			continue;
		char path[64], cmd[1024];
		snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
		if (read_file_small(path, text, sizeof(text), NULL) <= 0)
			continue;
		/* Field 22, counted after the ")" that ends the command name. */
		const char *p = strrchr(text, ')');
		int field = 2;
		while (p && *p && field < 22) {
			if (*p++ == ' ')
				field++;
		}
		int64_t start_ms = p ? boot_ms + strtoll(p, NULL, 10) * 1000 / hz : 0;
		snprintf(path, sizeof(path), "/proc/%ld/cmdline", pid);
		ssize_t n = read_file_small(path, cmd, sizeof(cmd), NULL);
		if (n <= 0) {
			/* A kernel-less name for processes without a command line. */
			snprintf(path, sizeof(path), "/proc/%ld/comm", pid);
			n = read_file_small(path, cmd, sizeof(cmd), NULL);
			if (n > 0 && cmd[n - 1] == '\n')
				cmd[--n] = '\0';
		}
		for (ssize_t i = 0; i < n; i++)
			if (cmd[i] == '\0')
				cmd[i] = ' ';
		while (n > 0 && cmd[n - 1] == ' ')
			cmd[--n] = '\0';
		char entry[1200];
		snprintf(entry, sizeof(entry), "%ld\t%lld\t%s", pid, (long long)start_ms,
			 n > 0 ? cmd : "");
		agent_msg_put_str(&m, AGENT_T_PROC, entry);
	}
	init_send(&m);
	agent_msg_release(&m);
}

static void reap(void)
{
	for (;;) {
		int status;
		struct rusage ru;
		pid_t pid = wait4(-1, &status, WNOHANG, &ru);
		if (pid <= 0)
			return;
		for (int i = 0; i < MAX_EXECS; i++) {
			if (execs[i].used && execs[i].pid == pid) {
				exec_finish(&execs[i], status, &ru);
				break;
			}
		}
	}
}

static void check_deadlines(void)
{
	int64_t now = mono_us();
	for (int i = 0; i < MAX_EXECS; i++) {
		struct exec *e = &execs[i];
		if (e->used && e->deadline_us && !e->timed_out && now >= e->deadline_us) {
			e->timed_out = true;
			/* The process group: what the exec started and did not detach. */
			kill(-e->pid, SIGKILL);
			kill(e->pid, SIGKILL);
		}
	}
}

static int poll_timeout_ms(void)
{
	int64_t next = 0;
	for (int i = 0; i < MAX_EXECS; i++) {
		struct exec *e = &execs[i];
		if (e->used && e->deadline_us && !e->timed_out &&
		    (next == 0 || e->deadline_us < next))
			next = e->deadline_us;
	}
	if (next == 0)
		return -1;
	int64_t ms = (next - mono_us() + 999) / 1000;
	return ms < 0 ? 0 : (int)(ms > 60000 ? 60000 : ms);
}

int main(void)
{
	sigset_t all;
	sigfillset(&all);
	sigprocmask(SIG_BLOCK, &all, NULL);
	sigset_t chld;
	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
	int sfd = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
	if (sfd < 0)
		return 1;
	fcntl(AGENT_FD, F_SETFD, FD_CLOEXEC);
	if (harden_init() < 0)
		return 1;
	change_clock_init();

	struct agent_msg hello;
	agent_msg_init(&hello, AGENT_HELLO, 0);
	agent_msg_put_i64(&hello, AGENT_T_VERSION, AGENT_PROTO_VERSION);
	init_send(&hello);
	agent_msg_release(&hello);

	for (;;) {
		struct pollfd pfd[2 + MAX_EXECS * 2 + MAX_DRAIN];
		struct {
			int exec, stream;
		} map[ARRAY_SIZE(pfd)];
		int n = 0;
		pfd[n++] = (struct pollfd){.fd = AGENT_FD, .events = POLLIN};
		pfd[n++] = (struct pollfd){.fd = sfd, .events = POLLIN};
		for (int i = 0; i < MAX_EXECS; i++) {
			for (int s = 0; s < 2 && execs[i].used; s++) {
				if (execs[i].out[s] < 0)
					continue;
				map[n].exec = i, map[n].stream = s;
				pfd[n++] = (struct pollfd){.fd = execs[i].out[s], .events = POLLIN};
			}
		}
		int first_drain = n;
		for (int i = 0; i < n_drain; i++)
			pfd[n++] = (struct pollfd){.fd = drain_fds[i], .events = POLLIN};

		int r = poll(pfd, (nfds_t)n, poll_timeout_ms());
		if (r < 0 && errno != EINTR)
			return 1;
		check_deadlines();
		if (r <= 0)
			continue;
		for (int i = 2; i < first_drain; i++) {
			if (!pfd[i].revents)
				continue;
			struct exec *e = &execs[map[i].exec];
			if (e->used && e->out[map[i].stream] == pfd[i].fd &&
			    !exec_pump(e, map[i].stream, 16)) {
				close(e->out[map[i].stream]);
				e->out[map[i].stream] = -1;
			}
		}
		for (int i = n - 1; i >= first_drain; i--) {
			if (!pfd[i].revents)
				continue;
			char sink[CHUNK];
			ssize_t got = read(pfd[i].fd, sink, sizeof(sink));
			if (got == 0 || (got < 0 && errno != EAGAIN && errno != EINTR)) {
				int k = i - first_drain;
				close(drain_fds[k]);
				memmove(drain_fds + k, drain_fds + k + 1,
					sizeof(int) * (size_t)(n_drain - k - 1));
				n_drain--;
			}
		}
		if (pfd[1].revents) {
			struct signalfd_siginfo si;
			while (read(sfd, &si, sizeof(si)) > 0)
				;
			reap();
		}
		if (pfd[0].revents) {
			struct agent_msg req;
			if (agent_msg_recv(AGENT_FD, &req) <= 0)
				return 0; /* the daemon went away: the sandbox ends with us */
			switch (req.type) {
			case AGENT_EXEC:
				handle_exec(&req);
				break;
			case AGENT_WRITE_FILE:
				files_write(&req);
				break;
			case AGENT_READ_FILE:
				files_read(&req);
				break;
			case AGENT_LIST:
				files_list(&req);
				break;
			case AGENT_DELETE:
				files_delete(&req);
				break;
			case AGENT_STAT:
				files_stat(&req);
				break;
			case AGENT_KILL:
				handle_kill(&req);
				break;
			case AGENT_PS:
				handle_ps(&req);
				break;
			default:
				init_result(req.req_id, ENOSYS, "dispatch", "unknown request");
			}
			agent_msg_release(&req);
		}
	}
}
