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
/* Answers request req_id with the whole regular file fd, at most max
 * bytes, or with errno e when it is not 0 (fd is then not read). */
void files_answer_read(uint32_t req_id, int fd, int e, int64_t max);
void files_list(const struct agent_msg *req);
void files_delete(const struct agent_msg *req);
void files_stat(const struct agent_msg *req);

/* Files anywhere in the session's own file system, as its root
 * (init/rootfiles.c): AGENT_WRITE_PATH and AGENT_READ_PATH. */
void rootfiles_write(const struct agent_msg *req);
void rootfiles_read(const struct agent_msg *req);

/* ---- executions (init/exec.c) ---- */

/* Executions at once, at most. */
#define INIT_EXECS_MAX 64
/* Pipes left to drain (held by processes an execution left), at most. */
#define INIT_DRAIN_MAX 128
/* The most fds exec_poll_fill() adds. */
#define INIT_EXEC_POLL_MAX (INIT_EXECS_MAX * 2 + INIT_DRAIN_MAX)

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
