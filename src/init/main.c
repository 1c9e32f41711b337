/* bunker-init: PID 1 inside every sandbox.
 *
 * It speaks the agent protocol (agent/proto.h) with bunkerd over fd 3,
 * spawns executions as the session's user, forwards their output, enforces
 * their time limits, reports their exits (init/exec.c), keeps the session's
 * persistent interpreters and feeds them runs (init/interp.c), runs file
 * operations (init/files.c) and reaps every orphan. It is a
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
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "agent/proto.h"
#include "init/harden.h"
#include "init/init.h"
#include "util/cleanup.h"
#include "util/util.h"

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

/* When the sandbox ends unless another LEASE comes (mono_us), 0: never. */
static int64_t lease_end_us;

static void handle_lease(const struct agent_msg *req)
{
	int64_t ms = agent_msg_get_i64(req, AGENT_T_TIMEOUT_MS, 0);
	if (ms < 0 || ms > 3600 * 1000)
		ms = 0;
	lease_end_us = ms > 0 ? mono_us() + ms * 1000 : 0;
	/* A send the daemon does not read for as long ends the sandbox too
	 * (init_send): blocked in it, init would never see the lease end. */
	struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
	setsockopt(AGENT_FD, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

/* The poll timeout the lease allows, -1 for none. */
static int lease_timeout_ms(void)
{
	if (lease_end_us == 0)
		return -1;
	int64_t ms = (lease_end_us - mono_us() + 999) / 1000;
	return ms < 0 ? 0 : (int)(ms > 60000 ? 60000 : ms);
}

/* Ends the sandbox once its lease has run out. What the daemon sent
 * meanwhile is read first: a sandbox thawed after a long freeze finds the
 * LEASE sent before the thaw waiting there. */
static int dispatch(void);
static void lease_check(void)
{
	while (lease_end_us != 0 && mono_us() >= lease_end_us) {
		struct pollfd p = {.fd = AGENT_FD, .events = POLLIN};
		if (poll(&p, 1, 0) == 1 && (p.revents & POLLIN)) {
			if (dispatch() < 0)
				_exit(0);
			continue;
		}
		/* PID 1 leaving takes every process of the namespace with it. */
		kill(-1, SIGKILL);
		_exit(3);
	}
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

/* Reaps every child that has ended: an execution's end is reported, an
 * orphan's is just collected. */
static void reap(void)
{
	for (;;) {
		int status;
		struct rusage ru;
		pid_t pid = wait4(-1, &status, WNOHANG, &ru);
		if (pid <= 0)
			return;
		if (!exec_reaped(pid, status, &ru))
			interp_reaped(pid, status, &ru);
	}
}

/* What each request of the daemon runs; any other type is answered
 * ENOSYS. */
static void (*const handlers[])(const struct agent_msg *req) = {
    [AGENT_EXEC] = exec_start,		  /* init/exec.c */
    [AGENT_WRITE_FILE] = files_write,	  /* init/files.c */
    [AGENT_READ_FILE] = files_read,	  /* init/files.c */
    [AGENT_LIST] = files_list,		  /* init/files.c */
    [AGENT_DELETE] = files_delete,	  /* init/files.c */
    [AGENT_STAT] = files_stat,		  /* init/files.c */
    [AGENT_WRITE_PATH] = rootfiles_write, /* init/rootfiles.c */
    [AGENT_READ_PATH] = rootfiles_read,	  /* init/rootfiles.c */
    [AGENT_KILL] = handle_kill,		  /* above */
    [AGENT_PS] = handle_ps,		  /* above */
    [AGENT_RUN] = interp_run,		  /* init/interp.c */
    [AGENT_INTERRUPT] = interp_interrupt, /* init/interp.c */
    [AGENT_LEASE] = handle_lease,	  /* above */
};

/* Reads one request and runs its handler; -1 when the daemon has gone. */
static int dispatch(void)
{
	struct agent_msg req;
	if (agent_msg_recv(AGENT_FD, &req) <= 0)
		return -1;
	if (req.type < ARRAY_SIZE(handlers) && handlers[req.type] != NULL)
		handlers[req.type](&req);
	else
		init_result(req.req_id, ENOSYS, "dispatch", "unknown request");
	agent_msg_release(&req);
	return 0;
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
	exec_init();

	struct agent_msg hello;
	agent_msg_init(&hello, AGENT_HELLO, 0);
	agent_msg_put_i64(&hello, AGENT_T_VERSION, AGENT_PROTO_VERSION);
	init_send(&hello);
	agent_msg_release(&hello);

	for (;;) {
		struct pollfd pfd[2 + INIT_EXEC_POLL_MAX + INIT_INTERP_POLL_MAX];
		pfd[0] = (struct pollfd){.fd = AGENT_FD, .events = POLLIN};
		pfd[1] = (struct pollfd){.fd = sfd, .events = POLLIN};
		int n_exec = exec_poll_fill(pfd + 2);
		int n_interp = interp_poll_fill(pfd + 2 + n_exec);

		int t_exec = exec_deadline_timeout_ms(), t_interp = interp_timeout_ms();
		int timeout =
		    t_exec < 0 || (t_interp >= 0 && t_interp < t_exec) ? t_interp : t_exec;
		int t_lease = lease_timeout_ms();
		if (t_lease >= 0 && (timeout < 0 || t_lease < timeout))
			timeout = t_lease;
		int r = poll(pfd, (nfds_t)(2 + n_exec + n_interp), timeout);
		if (r < 0 && errno != EINTR)
			return 1;
		exec_deadlines_check();
		interp_deadlines_check();
		if (r <= 0) {
			lease_check();
			continue;
		}
		exec_poll_ready(pfd + 2, n_exec);
		interp_poll_ready(pfd + 2 + n_exec, n_interp);
		if (pfd[1].revents) {
			struct signalfd_siginfo si;
			while (read(sfd, &si, sizeof(si)) > 0)
				;
			reap();
		}
		/* The daemon went away: the sandbox ends with us. */
		if (pfd[0].revents && dispatch() < 0)
			return 0;
		lease_check();
	}
}
