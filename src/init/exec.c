/* bunker-init's executions: a program started for an EXEC request in a
 * process group of its own, as the session's user, its output forwarded
 * (OUTPUT) up to a limit, its time limit enforced, its end reported
 * (EXEC_DONE) with what it wrote.
 *
 * Each execution holds a slot (struct exec) from its start until its
 * process is reaped; the slots, the pipes left to drain and the change
 * clock are init's own (single-threaded: no lock).
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "agent/proto.h"
#include "init/init.h"
#include "init/request.h"
#include "util/cleanup.h"
#include "util/util.h"

/* Strings of an EXEC request's argv, and of its environment, at most. */

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

/* ---- slots ----
 *
 * A free slot is all zero. */

static struct exec execs[INIT_EXECS_MAX];

/* A free slot, or NULL when INIT_EXECS_MAX are taken. */
static struct exec *exec_slot_get(void)
{
	for (int i = 0; i < INIT_EXECS_MAX; i++)
		if (!execs[i].used)
			return &execs[i];
	return NULL;
}

/* The slot of the execution whose process is pid, or NULL. */
static struct exec *exec_slot_of(pid_t pid)
{
	for (int i = 0; i < INIT_EXECS_MAX; i++)
		if (execs[i].used && execs[i].pid == pid)
			return &execs[i];
	return NULL;
}

static void exec_slot_free(struct exec *e)
{
	free(e->watch);
	memset(e, 0, sizeof(*e));
}

/* ---- pipes left to drain ----
 *
 * Processes an execution left running may still hold its pipes: they are
 * read (and what comes dropped) until their last writer is gone, so that
 * such processes never die of SIGPIPE. The oldest goes when there are too
 * many. */

static int drain_fds[INIT_DRAIN_MAX];
static int n_drain;

void exec_drain_add(int fd)
{
	if (fd < 0)
		return;
	if (n_drain == INIT_DRAIN_MAX) {
		close(drain_fds[0]);
		memmove(drain_fds, drain_fds + 1, sizeof(int) * (INIT_DRAIN_MAX - 1));
		n_drain--;
	}
	drain_fds[n_drain++] = fd;
}

/* ---- output and the end ---- */

/* Forwards what one of an exec's streams has (proc_pump()); false at EOF. */
static bool exec_pump(struct exec *e, int stream, int max_reads)
{
	return proc_pump(e->out[stream], e->req_id, stream + 1, &e->sent[stream], e->output_max,
			 max_reads);
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
		exec_drain_add(e->out[s]);
	exec_slot_free(e);
}

/* ---- starting one ---- */

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

/* Starts s's program in a child of its own (exec_child()) and fills e's
 * pid, out, start_us and start_ns; -1, req answered with what failed, when
 * it could not start. */
static int exec_spawn(const struct agent_msg *req, struct init_exec_spec *s, struct exec *e)
{
	_cleanup_close_ int in_fd = -1;
	if (s->has_stdin) {
		in_fd = memfd_create("stdin", MFD_CLOEXEC);
		if (in_fd < 0 || write_full(in_fd, s->stdin_data.data, s->stdin_data.len) < 0 ||
		    lseek(in_fd, 0, SEEK_SET) < 0) {
			init_result(req->req_id, errno, "stdin", "cannot prepare stdin");
			return -1;
		}
	} else {
		in_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	}
	int po[2], pe[2];
	if (pipe2(po, O_CLOEXEC) < 0) {
		init_result(req->req_id, errno, "pipe", "cannot create pipe");
		return -1;
	}
	if (pipe2(pe, O_CLOEXEC) < 0) {
		init_result(req->req_id, errno, "pipe", "cannot create pipe");
		close(po[0]), close(po[1]);
		return -1;
	}
	struct proc_spec spec = {
	    .fds = {{in_fd, 0}, {po[1], 1}, {pe[1], 2}},
	    .nfds = 3,
	    .cwd = s->cwd,
	    .uid = s->uid,
	    .gid = s->gid,
	    .argv = s->argv,
	    .envp = s->envp,
	};
	int64_t start_ns = change_clock_now();
	int64_t start_us = mono_us();
	pid_t pid;
	struct proc_fail fail;
	int r = proc_spawn(&spec, &pid, &fail);
	close(po[1]), close(pe[1]);
	if (r < 0) {
		close(po[0]), close(pe[0]);
		proc_fail_answer(req->req_id, &fail);
		return -1;
	}
	fcntl(po[0], F_SETFL, O_NONBLOCK);
	fcntl(pe[0], F_SETFL, O_NONBLOCK);
	e->pid = pid;
	e->out[0] = po[0];
	e->out[1] = pe[0];
	e->start_us = start_us;
	e->start_ns = start_ns;
	return 0;
}

void exec_init(void)
{
	change_clock_init();
}

void exec_start(const struct agent_msg *req)
{
	_cleanup_free_ char *strs = malloc(req->len + 256);
	if (strs == NULL) {
		init_result(req->req_id, ENOMEM, "setup", "out of memory");
		return;
	}
	struct init_exec_spec s;
	init_exec_spec_read(req, strs, &s);
	if (s.argv[0] == NULL) {
		init_result(req->req_id, EINVAL, "setup", "no argv");
		return;
	}
	struct exec *e = exec_slot_get();
	if (e == NULL) {
		init_result(req->req_id, EAGAIN, "setup", "too many executions at once");
		return;
	}
	if (exec_spawn(req, &s, e) < 0)
		return;
	e->used = true;
	e->req_id = req->req_id;
	e->output_max = (size_t)agent_msg_get_i64(req, AGENT_T_OUTPUT_MAX, 10 << 20);
	e->deadline_us = init_deadline_us(e->start_us, s.timeout_ms);
	if (s.has_watch)
		e->watch = strndup((const char *)s.watch.data, s.watch.len);
	struct agent_msg m;
	agent_msg_init(&m, AGENT_EXEC_STARTED, req->req_id);
	agent_msg_put_i64(&m, AGENT_T_PID, e->pid);
	init_send(&m);
	agent_msg_release(&m);
}

bool exec_reaped(pid_t pid, int status, const struct rusage *ru)
{
	struct exec *e = exec_slot_of(pid);
	if (e == NULL)
		return false;
	exec_finish(e, status, ru);
	return true;
}

/* ---- deadlines ---- */

void exec_deadlines_check(void)
{
	int64_t now = mono_us();
	for (int i = 0; i < INIT_EXECS_MAX; i++) {
		struct exec *e = &execs[i];
		if (e->used && e->deadline_us && !e->timed_out && now >= e->deadline_us) {
			e->timed_out = true;
			/* The process group: what the exec started and did not detach. */
			kill(-e->pid, SIGKILL);
			kill(e->pid, SIGKILL);
		}
	}
}

int exec_deadline_timeout_ms(void)
{
	int64_t next = 0;
	for (int i = 0; i < INIT_EXECS_MAX; i++) {
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

/* ---- the poll loop's share ---- */

/* What exec_poll_fill() put where, for exec_poll_ready(): the slot and
 * stream of each output pipe, which come first, then the drained pipes. */
static struct {
	int exec, stream;
} poll_map[INIT_EXECS_MAX * 2];
static int poll_outputs;

int exec_poll_fill(struct pollfd *pfd)
{
	int n = 0;
	for (int i = 0; i < INIT_EXECS_MAX; i++) {
		for (int s = 0; s < 2 && execs[i].used; s++) {
			if (execs[i].out[s] < 0)
				continue;
			poll_map[n].exec = i, poll_map[n].stream = s;
			pfd[n++] = (struct pollfd){.fd = execs[i].out[s], .events = POLLIN};
		}
	}
	poll_outputs = n;
	for (int i = 0; i < n_drain; i++)
		pfd[n++] = (struct pollfd){.fd = drain_fds[i], .events = POLLIN};
	return n;
}

void exec_poll_ready(const struct pollfd *pfd, int n)
{
	for (int i = 0; i < poll_outputs; i++) {
		if (!pfd[i].revents)
			continue;
		struct exec *e = &execs[poll_map[i].exec];
		int s = poll_map[i].stream;
		if (e->used && e->out[s] == pfd[i].fd && !exec_pump(e, s, 16)) {
			close(e->out[s]);
			e->out[s] = -1;
		}
	}
	/* From the last, so that taking one out leaves the indexes of those
	 * still to look at as they were. */
	for (int i = n - 1; i >= poll_outputs; i--) {
		if (!pfd[i].revents)
			continue;
		char sink[PROC_CHUNK];
		ssize_t got = read(pfd[i].fd, sink, sizeof(sink));
		if (got == 0 || (got < 0 && errno != EAGAIN && errno != EINTR)) {
			int k = i - poll_outputs;
			close(drain_fds[k]);
			memmove(drain_fds + k, drain_fds + k + 1,
				sizeof(int) * (size_t)(n_drain - k - 1));
			n_drain--;
		}
	}
}
