/* Executions and file operations inside a sandbox, over its agent
 * connection to bunker-init (agent/proto.h): what every backend whose
 * sandboxes run bunker-init shares. The file and process operations fit
 * struct sbx_ops as they are; an execution needs the backend to say how
 * its program runs (argv, environment) and how many OOM kills its memory
 * cgroup has seen. */
#pragma once

#include "agent/proto.h"
#include "sandbox/sandbox.h"

/* An execution as bunker-init runs it. */
struct sbx_agent_exec {
	const char *const *argv; /* argv[0] is a path inside the sandbox */
	const char *const *envp; /* the whole environment */
	const void *stdin_data;	 /* NULL: /dev/null */
	size_t stdin_len;
	/* OOM kills of the sandbox's memory cgroup so far (read before and
	 * after, to tell that the limit was hit); NULL: not known. */
	int64_t (*oom_kills)(struct sbx *s);
};

/* How an execution's or a run's answers are awaited. */
struct sbx_agent_wait {
	/* Its callbacks, timeout, output limit and (for messages) cwd. */
	const struct sbx_exec_req *req;
	int64_t (*oom_kills)(struct sbx *s); /* as in struct sbx_agent_exec */
	/* Cancelled, it is interrupted (AGENT_INTERRUPT: a run, whose
	 * interpreter lives on) rather than its process group killed. */
	bool interrupt;
};

/* Sends m (an AGENT_EXEC or AGENT_RUN; the caller still owns it) and
 * collects its answers into res (new; release it) until its end: 0 with
 * res filled, or -1 with err set (res then holds what came). */
int sbx__agent_call_exec(struct sbx *s, struct agent_msg *m, const struct sbx_agent_wait *w,
			 struct sbx_exec_result *res, struct bk_err *err);
/* Runs req (argv and environment from x) and waits for its main process;
 * the contract of struct sbx_ops' exec. */
int sbx__agent_exec(struct sbx *s, const struct sbx_agent_exec *x, const struct sbx_exec_req *req,
		    struct sbx_exec_result *res, struct bk_err *err);
/* The file and process operations of struct sbx_ops, for s->agent. */
int sbx__agent_write_file(struct sbx *s, const char *path, const void *data, size_t len,
			  struct bk_err *err);
int sbx__agent_read_piece(struct sbx *s, struct sbx_read *rd, void *buf, size_t cap, size_t *got,
			  struct bk_err *err);
int sbx__agent_list(struct sbx *s, struct sbx_list_req *req, struct sbx_entry **out, size_t *n,
		    struct bk_err *err);
int sbx__agent_stat(struct sbx *s, const char *path, mode_t *mode, struct bk_err *err);
int sbx__agent_remove(struct sbx *s, const char *path, bool recursive, struct bk_err *err);
int sbx__agent_kill(struct sbx *s, pid_t pid, struct bk_err *err);
void sbx__agent_lease(struct sbx *s, int timeout_ms);
int sbx__agent_ps(struct sbx *s, struct sbx_proc **out, size_t *n, struct bk_err *err);
int sbx__agent_write_path(struct sbx *s, const struct sbx_transfer *t, const void *data, size_t len,
			  struct bk_err *err);
/* What the daemon reads of init's answers, kept apart from the I/O so
 * that tests/fuzz/agent_daemon.c feeds them any bytes (init runs inside
 * the sandbox: its messages are the tenant's to forge). */

/* The largest time (µs) or size (KiB) an EXEC_DONE reports: 2^52 µs is
 * 142 years, and twice it scaled by 1024 still fits an int64_t. */
#define AGENT_COUNTER_MAX (INT64_C(1) << 52)
/* An EXEC_DONE m into res (its counters, each 0..AGENT_COUNTER_MAX, and
 * at most AGENT_MAX_WRITTEN written paths, which res owns). -1 when out
 * of memory. */
int sbx__agent_exec_done(const struct agent_msg *m, struct sbx_exec_result *res);
/* The error of a request init refused to start, from its RESULT a. */
int sbx__agent_start_error(const struct agent_msg *a, const struct sbx_exec_req *req,
			   struct bk_err *err);
/* The ENTRY fields of a LIST's RESULT a into *out (sbx_entries_free()),
 * malformed ones skipped, at most max (what was asked for: an answer of
 * more is cut). -1 when out of memory. */
int sbx__agent_entries_of(const struct agent_msg *a, size_t max, struct sbx_entry **out, size_t *n);
/* The PROC fields of a PS's RESULT a into *out (malloc'd), at most
 * AGENT_MAX_PROCS. -1 when out of memory. */
int sbx__agent_procs_of(const struct agent_msg *a, struct sbx_proc **out, size_t *n);

/* Builds the environment of an execution: base, then extra (both
 * NULL-terminated "NAME=value" lists), an extra entry replacing a base one
 * of the same name. *out is malloc'd (the strings are borrowed). */
int sbx__env_merge(const char *const *base, const char *const *extra, const char ***out,
		   struct bk_err *err);

/* A run as bunker-init feeds it to an interpreter (sandbox/agent_run.c). */
struct sbx_agent_run {
	const char *name;		     /* the interpreter's: one persistent one per name */
	const char *const *argv;	     /* its driver; argv[0] is a path inside the sandbox */
	const char *const *envp;	     /* the whole environment it starts with */
	bool self_feed;			     /* its stdin is a pipe it writes itself (bash) */
	int64_t (*oom_kills)(struct sbx *s); /* as in struct sbx_agent_exec */
};

/* Runs req in the interpreter x names and waits for its answer; the
 * contract of struct sbx_ops' run. */
int sbx__agent_run(struct sbx *s, const struct sbx_agent_run *x, const struct sbx_run_req *req,
		   struct sbx_exec_result *res, struct bk_err *err);
