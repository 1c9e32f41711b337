/* Sessions: the registry, their lifecycle, plans and keys.
 *
 * core/ is what both API dialects translate onto. It never touches a
 * namespace or a SQL string: it calls sandbox/ and store/. Every function
 * is thread safe; errors carry a kind (util/err.h) that api/ maps to HTTP.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/err.h"
#include "util/util.h"

struct core;

struct core_config {
	char data_dir[512];
	char init_path[512];
	char bun_path[512];
	char preview_scheme[8];   /* "http" */
	char preview_domain[256]; /* "localhost:8080" */
	int pids_max;             /* per session */
	int warm_pool;            /* sandboxes kept started ahead of need */
};

/* Opens the store, prepares the sandbox backend and recovers the sessions of
 * an earlier run (their processes are gone; their files are kept). */
int core_open(const struct core_config *cfg, struct core **out, struct bk_err *err);
/* Opens the store alone, for the command-line tool: only the key functions
 * may be called on the result. */
int core_open_store(const char *data_dir, struct core **out, struct bk_err *err);
/* Stops every sandbox (files are kept) and closes the store. */
void core_close(struct core *core);
/* "v1" or "v2". */
const char *core_cgroup_mode(const struct core *core);

/* ---- plans and keys (core/plan.c) ---- */

struct plan_limits {
	int max_sessions;
	int max_ttl_s;
	bool overrides;       /* may a create set resourceLimits */
	int memory_max_mb;
	double cpu_max;
	int disk_max_mb;
	int timeout_default_s;
	int timeout_max_s;
	int requests_per_minute;
	int64_t max_file_bytes;
};

/* The defaults of a plan by name, or NULL for an unknown name. */
const struct plan_limits *plan_lookup(const char *name);

struct core_key {
	char id[32];
	char plan[16];
	struct plan_limits limits;
};

/* Creates a key on plan; secret receives the key to show once (>= 64 bytes). */
int core_key_create(struct core *core, const char *plan, char *secret, size_t len,
		    struct core_key *out, struct bk_err *err);
/* Finds the key of a secret: BK_E_UNAUTHORIZED when unknown or revoked. */
int core_auth(struct core *core, const char *secret, struct core_key *out, struct bk_err *err);

/* ---- sessions (core/session.c) ---- */

enum core_state {
	CORE_STATE_ACTIVE = 0,
	CORE_STATE_IDLE,
	CORE_STATE_DEEP_SLEEP,
};
const char *core_state_name(enum core_state s);

struct core_limits {
	int memory_mb;
	double cpu;
	int timeout_s;
	int disk_mb;
};

struct core_session_spec {
	int64_t ttl_s;         /* 0: the default */
	const char *metadata;  /* compact JSON object text; NULL: {} */
	bool has_limits;       /* resourceLimits was given */
	/* Each field of limits, 0 where it was not given. */
	struct core_limits limits;
};

struct core_session_info {
	char id[32];
	int64_t created_ms, expires_ms, last_active_ms;
	enum core_state state;
	char *metadata;        /* owned */
	struct core_limits limits;
	char preview_url[320];
	int64_t files_count;
	int64_t active_processes;
};

void core_session_info_release(struct core_session_info *info);

int core_session_create(struct core *core, const struct core_key *key,
			const struct core_session_spec *spec, struct core_session_info *out,
			struct bk_err *err);
/* Reads a session without waking it. BK_E_NOT_FOUND for a missing session
 * and for another key's. */
int core_session_get(struct core *core, const struct core_key *key, const char *id,
		     struct core_session_info *out, struct bk_err *err);
/* A page of the key's sessions (metadata_filter: JSON containment, may be
 * NULL); the caller releases each element and frees *out. */
int core_session_list(struct core *core, const struct core_key *key,
		      const char *metadata_filter, int limit, int offset,
		      struct core_session_info **out, size_t *n, int64_t *total,
		      struct bk_err *err);
/* Ends every process, removes files, mounts, cgroups and the record. */
int core_session_delete(struct core *core, const struct core_key *key, const char *id,
			struct bk_err *err);

/* ---- executions (core/exec.c) ---- */

struct core_file {
	const char *path;      /* as the caller gave it */
	const char *content;
	size_t len;
};

struct core_env {
	const char *name;
	const char *value;
};

struct core_exec_req {
	const char *code;      /* JavaScript/TypeScript run by Bun, or NULL */
	const char *command;   /* /bin/sh -c, or NULL */
	const struct core_file *files;
	size_t n_files;
	const struct core_env *env;
	size_t n_env;
	int64_t timeout_s;     /* 0: the session's default */
	const char *working_dir; /* NULL: /workspace */
	/* Streaming: called from the request's thread as output arrives. */
	void (*on_output)(void *ctx, int stream, const char *data, size_t len);
	void *ctx;
};

struct core_exec_result {
	char *stdout_text, *stderr_text; /* owned, NUL-terminated */
	size_t stdout_len, stderr_len;
	bool stdout_truncated, stderr_truncated;
	int exit_code;
	bool timed_out;
	bool oom_killed;
	int64_t execution_time_ms, cpu_time_ms, memory_used_bytes;
	char **files_written;  /* owned, workspace-relative */
	size_t n_files_written;
};

void core_exec_result_release(struct core_exec_result *r);

#define CORE_OUTPUT_MAX (10u << 20)

/* Runs code or command in the session (waking it if needed). The user's
 * program failing is a result; an error means the request was wrong
 * (BK_E_INVALID with the field) or the sandbox failed. */
int core_execute(struct core *core, const struct core_key *key, const char *id,
		 const struct core_exec_req *req, struct core_exec_result *out,
		 struct bk_err *err);

/* Turns a request path into one relative to /workspace, or fails with
 * BK_E_INVALID naming field: absolute paths must lie inside /workspace, and
 * no component may be "..". out receives at least len bytes. */
int core_path_normalize(const char *path, const char *field, char *out, size_t len,
			struct bk_err *err);

/* ---- processes (core/exec.c) ---- */

struct core_proc {
	int pid;
	int64_t started_ms;
	char command[256];
};

/* The session's processes (PID 1 left out). A session whose sandbox is not
 * running has none; listing does not start it. *out is malloc'd. */
int core_process_list(struct core *core, const struct core_key *key, const char *id,
		      struct core_proc **out, size_t *n, struct bk_err *err);
/* Kills pid (0: every process) and reports which pids were ended in *pids
 * (malloc'd). A pid not in the session is BK_E_PROCESS_NOT_FOUND. */
int core_process_kill(struct core *core, const struct core_key *key, const char *id, int pid,
		      int **pids, size_t *n, struct bk_err *err);
