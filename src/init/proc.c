/* What executions (init/exec.c) and interpreters (init/interp.c) share: a
 * child started as the session's user with the hardening every user
 * program gets, and its output forwarded to the daemon.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "agent/proto.h"
#include "init/harden.h"
#include "init/init.h"
#include "util/util.h"

/* Where the child moves every fd it keeps before placing them: above any
 * target, so that placing one never overwrites a source still to come. */
#define PROC_FD_PARK 100

/* Runs in the forked child: never returns. Only async-signal-safe calls. */
static _Noreturn void proc_child(int errfd, const struct proc_spec *spec)
{
	struct proc_fail f = {0};
	int parked[PROC_FDS_MAX];
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	setpgid(0, 0);
	strcpy(f.stage, "dup2");
	errfd = fcntl(errfd, F_DUPFD_CLOEXEC, PROC_FD_PARK);
	if (errfd < 0)
		_exit(127);
	for (int i = 0; i < spec->nfds; i++) {
		parked[i] = fcntl(spec->fds[i].src, F_DUPFD_CLOEXEC, PROC_FD_PARK);
		if (parked[i] < 0)
			goto fail;
	}
	for (int i = 0; i < spec->nfds; i++)
		if (dup2(parked[i], spec->fds[i].dst) < 0)
			goto fail;
	/* The OOM killer's choice among the session's processes: PID 1 is
	 * shielded by the host, user programs start from neutral. */
	int oom = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
	if (oom >= 0) {
		write_full(oom, "0", 1);
		close(oom);
	}
	const char *stage;
	if (harden_become_user(spec->uid, spec->gid, &stage) < 0) {
		snprintf(f.stage, sizeof(f.stage), "%s", stage);
		goto fail;
	}
	if (chdir(spec->cwd) < 0) {
		strcpy(f.stage, "chdir");
		goto fail;
	}
	/* Of the rest only the error pipe stays, and it is CLOEXEC. */
	for (int fd = 3; fd < PROC_FD_PARK; fd++) {
		bool keep = false;
		for (int i = 0; i < spec->nfds && !keep; i++)
			keep = spec->fds[i].dst == fd;
		if (!keep)
			close(fd);
	}
	syscall(SYS_close_range, PROC_FD_PARK, errfd - 1, 0);
	syscall(SYS_close_range, errfd + 1, ~0U, 0);
	/* Last: from here on the filter also binds this code. */
	if (harden_seccomp_load() < 0) {
		strcpy(f.stage, "seccomp");
		goto fail;
	}
	execve(spec->argv[0], spec->argv, spec->envp);
	strcpy(f.stage, "exec");
fail:
	f.errnum = errno;
	write_full(errfd, &f, sizeof(f));
	_exit(127);
}

int proc_spawn(const struct proc_spec *spec, pid_t *pid, struct proc_fail *fail)
{
	int pf[2];
	memset(fail, 0, sizeof(*fail));
	if (pipe2(pf, O_CLOEXEC) < 0) {
		fail->errnum = errno;
		strcpy(fail->stage, "pipe");
		return -1;
	}
	pid_t p = fork();
	if (p == 0) {
		close(pf[0]);
		proc_child(pf[1], spec);
	}
	fail->errnum = errno;
	close(pf[1]);
	if (p < 0) {
		close(pf[0]);
		strcpy(fail->stage, "fork");
		return -1;
	}
	int r = read_full(pf[0], fail, sizeof(*fail));
	close(pf[0]);
	/* A child that failed is reaped by the SIGCHLD loop, which finds
	 * nothing of its own for it. */
	if (r == 1) {
		fail->stage[sizeof(fail->stage) - 1] = '\0';
		return -1;
	}
	*pid = p;
	return 0;
}

void proc_fail_answer(uint32_t req_id, const struct proc_fail *fail)
{
	char msg[128];
	snprintf(msg, sizeof(msg), "cannot start: %s failed: %s", fail->stage,
		 strerror(fail->errnum));
	init_result(req_id, fail->errnum, fail->stage, msg);
}

bool proc_pump(int fd, uint32_t req_id, int stream, size_t *sent, size_t max, int max_reads)
{
	char buf[PROC_CHUNK];
	for (int i = 0; i < max_reads; i++) {
		ssize_t n = read(fd, buf, sizeof(buf));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return errno == EAGAIN;
		}
		if (n == 0)
			return false;
		size_t room = max > *sent ? max - *sent : 0;
		size_t fwd = (size_t)n < room ? (size_t)n : room;
		*sent += (size_t)n;
		if (fwd > 0 && req_id != 0) {
			struct agent_msg m;
			agent_msg_init(&m, AGENT_OUTPUT, req_id);
			agent_msg_put_i64(&m, AGENT_T_STREAM, stream);
			agent_msg_put(&m, AGENT_T_DATA, buf, fwd);
			init_send(&m);
			agent_msg_release(&m);
		}
	}
	return true;
}
