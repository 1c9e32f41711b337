/* What bunker-init's files share. */
#pragma once

#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/types.h>

#include "agent/proto.h"

#define AGENT_FD 3

/* Sends m to the daemon; exits when the daemon is gone. */
void init_send(const struct agent_msg *m);
/* Answers req with a RESULT carrying errnum (0: success). */
void init_result(uint32_t req_id, int errnum, const char *stage, const char *message);

/* File operations inside the workspace, as the requesting user (files.c). */
void files_write(const struct agent_msg *req);
void files_read(const struct agent_msg *req);
/* Answers the read req (READ_FILE or READ_PATH: MAX, OFFSET, LENGTH, UTF8,
 * FILE_ID) with a piece of the regular file fd, or with errno e when it is
 * not 0 (fd is then not read). */
void files_answer_read(const struct agent_msg *req, int fd, int e);
void files_list(const struct agent_msg *req);
void files_delete(const struct agent_msg *req);
void files_stat(const struct agent_msg *req);

/* Files anywhere in the session's own file system, as its root
 * (init/rootfiles.c): AGENT_WRITE_PATH and AGENT_READ_PATH. */
void rootfiles_write(const struct agent_msg *req);
void rootfiles_read(const struct agent_msg *req);

/* ---- user programs (init/proc.c) ---- */

/* Bytes read from a program's output at once. */
#define PROC_CHUNK 65536
/* fds a program gets, at most. */
#define PROC_FDS_MAX 8

/* A program to start as the session's user. */
struct proc_spec {
	struct {
		int src, dst; /* the parent's fd, and the number the child has it as */
	} fds[PROC_FDS_MAX];
	int nfds;
	const char *cwd;
	uid_t uid;
	gid_t gid;
	char *const *argv, *const *envp; /* NULL-terminated; argv[0] a path */
};

/* Why a program did not start: errno at the step that failed. */
struct proc_fail {
	int errnum;
	char stage[32];
};

/* Forks and starts spec's program in a process group of its own, as
 * spec's user with no capabilities, no_new_privs and the seccomp filter,
 * with only spec's fds open. 0 with *pid once it runs; -1 with *fail
 * filled when it could not start. */
int proc_spawn(const struct proc_spec *spec, pid_t *pid, struct proc_fail *fail);
/* Answers req_id with a RESULT saying what *fail says. */
void proc_fail_answer(uint32_t req_id, const struct proc_fail *fail);
/* Reads what fd (non-blocking) has, max_reads chunks at most so that a
 * chatty program cannot starve the others, and forwards it to req_id as
 * OUTPUT of stream (1 stdout, 2 stderr) while *sent, which counts every
 * byte read, is under max; req_id 0 drops it. False at EOF or on an error
 * other than EAGAIN. */
bool proc_pump(int fd, uint32_t req_id, int stream, size_t *sent, size_t max, int max_reads);

/* ---- executions (init/exec.c) ---- */

/* Executions at once, at most. */
#define INIT_EXECS_MAX 64
/* Pipes left to drain (held by processes an execution left), at most. */
#define INIT_DRAIN_MAX 128
/* The most fds exec_poll_fill() adds. */
#define INIT_EXEC_POLL_MAX (INIT_EXECS_MAX * 2 + INIT_DRAIN_MAX)

/* Reads fd (a pipe a program left running may still write to) and drops
 * what comes until its last writer is gone; takes ownership of fd (-1:
 * nothing to do). */
void exec_drain_add(int fd);
/* Prepares what executions need, once, before the first one. */
void exec_init(void);
/* AGENT_EXEC: starts req's program as the user it names and answers
 * EXEC_STARTED, or a RESULT saying what failed. Its output follows as
 * OUTPUT messages and its end as EXEC_DONE. */
void exec_start(const struct agent_msg *req);
/* For each child reaped: when pid was an execution's, reports its end
 * (EXEC_DONE) and frees its slot. Returns whether it was. */
bool exec_reaped(pid_t pid, int status, const struct rusage *ru);
/* Kills the process group of every execution past its deadline. */
void exec_deadlines_check(void);
/* The poll() timeout until the next deadline, in ms; -1 for none. */
int exec_deadline_timeout_ms(void);
/* Fills pfd (room for INIT_EXEC_POLL_MAX) with the fds executions are read
 * on: their output pipes, and the pipes left to drain. Returns how many. */
int exec_poll_fill(struct pollfd *pfd);
/* After poll() on what exec_poll_fill() filled (pfd[0..n)): forwards
 * ready output, drops what drained pipes hold, closes the pipes that
 * ended. */
void exec_poll_ready(const struct pollfd *pfd, int n);

/* ---- interpreters (init/interp.c) ---- */

/* Persistent interpreters (one per name) and one-shot ones at once, at
 * most; and runs queued or under way. */
#define INIT_INTERP_PERSISTENT_MAX 4
#define INIT_INTERP_FRESH_MAX 8
#define INIT_INTERPS_MAX (INIT_INTERP_PERSISTENT_MAX + INIT_INTERP_FRESH_MAX)
#define INIT_RUNS_MAX 64
/* The most fds interp_poll_fill() adds. */
#define INIT_INTERP_POLL_MAX (INIT_INTERPS_MAX * 4)

/* AGENT_RUN: queues req's code for the session's interpreter of its name
 * (started as the user it names when it has none), or for a one-shot one
 * of its own with FRESH. Answered like an EXEC; a RESULT with EAGAIN when
 * the session has as many interpreters or runs as it may. */
void interp_run(const struct agent_msg *req);
/* AGENT_INTERRUPT: interrupts the run whose request is TARGET as its
 * timeout would (a queued one is answered at once); answers a RESULT
 * (ESRCH: no such run). */
void interp_interrupt(const struct agent_msg *req);
/* For each child reaped: when pid was an interpreter's, answers its run
 * under way and starts the next process for the runs still queued.
 * Returns whether it was. */
bool interp_reaped(pid_t pid, int status, const struct rusage *ru);
/* Interrupts runs past their deadline, kills interpreters that did not
 * answer their interrupt within a second. */
void interp_deadlines_check(void);
/* The poll() timeout until the next of those, in ms; -1 for none. */
int interp_timeout_ms(void);
/* Fills pfd (room for INIT_INTERP_POLL_MAX) with interpreters' fds: their
 * output, answers, and requests being written. Returns how many. */
int interp_poll_fill(struct pollfd *pfd);
/* After poll() on what interp_poll_fill() filled (pfd[0..n)). */
void interp_poll_ready(const struct pollfd *pfd, int n);
