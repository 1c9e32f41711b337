/* The isolation backend: one sandbox per session.
 *
 * A sandbox is bunker-init running as PID 1 in new user, mount, PID,
 * network, UTS, IPC and cgroup namespaces, inside cgroups that carry the
 * session's limits, with its root on an overlay whose lower layer is the
 * read-only image and whose upper layer lives on the session's own disk.
 *
 * The disk outlives the sandbox: sbx_stop() ends every process and releases
 * mounts and cgroups but keeps the files, so that a new sandbox started on
 * the same session id finds them again; sbx_purge() removes the disk.
 * core/ calls only what this header declares.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "util/err.h"
#include "util/util.h"

/* The ids a session's processes run as: root is its PID 1, the user runs
 * executions and file operations. */
#define SBX_USER_UID 1000
#define SBX_USER_GID 1000
/* The working directory of every session; all request paths live in it. */
#define SBX_WORKSPACE "/workspace"
/* Each session maps ids 0..SBX_ID_RANGE-1 to a host range of its own,
 * starting at SBX_ID_BASE + slot * SBX_ID_RANGE: never a host user's. */
#define SBX_ID_BASE 1000000000u
#define SBX_ID_RANGE 65536u
#define SBX_MAX_SLOTS 16384

enum sbx_cgroup_mode {
	SBX_CGROUP_V1 = 1,
	SBX_CGROUP_V2 = 2,
};

struct sbx_config {
	char run_dir[512];   /* per-session disks and root mounts */
	char image_dir[512]; /* the lower layer (a built image) */
	char init_path[512]; /* the bunker-init binary */
	char hostname[64];
	enum sbx_cgroup_mode cgroup_mode;
	char cgroup_parent[64]; /* name of the cgroup that holds every session's */
};

/* Detects the cgroup mode, creates run_dir and builds (when missing) the
 * default image under data_dir from the host's system directories and the
 * Bun binary at bun_path. */
int sbx_config_init(struct sbx_config *cfg, const char *data_dir, const char *init_path,
		    const char *bun_path, struct bk_err *err);
const char *sbx_cgroup_mode_name(enum sbx_cgroup_mode mode);
/* At shutdown: unmounts the run directory's own bind mount, unless a
 * session still keeps its disk (files) there. */
void sbx_run_dir_release(const struct sbx_config *cfg);

struct sbx_limits {
	int memory_mb;
	double cpu; /* cores; 0.25 is a quarter of one */
	int disk_mb;
	int pids;
};

struct sbx;

/* Starts a sandbox for session id on id range slot, creating its disk when
 * it has none and keeping it when it has (a restarted daemon). *out is new;
 * end it with sbx_stop(). */
int sbx_start(const struct sbx_config *cfg, const char *id, int slot,
	      const struct sbx_limits *limits, struct sbx **out, struct bk_err *err);
/* Kills PID 1 (and so every process of the sandbox) and wakes every call
 * waiting on it, without freeing anything: safe while other threads are in
 * sbx_exec() on the same sandbox. */
void sbx_terminate(struct sbx *sbx);
/* Hands a running sandbox (one started ahead of need under a placeholder
 * id) to session id: its directory and cgroups take the new name and the
 * new limits apply, the disk's size included. On failure the sandbox keeps
 * its old name and should be stopped. */
int sbx_adopt(struct sbx *sbx, const char *id, const struct sbx_limits *limits, struct bk_err *err);
/* Freezes every process of the sandbox (memory kept, no CPU), or thaws it. */
int sbx_freeze(struct sbx *sbx, bool frozen, struct bk_err *err);
/* The session id a sandbox currently belongs to. */
const char *sbx_id(const struct sbx *sbx);
int sbx_slot(const struct sbx *sbx);
/* Ends every process of the sandbox, releases its cgroups and root mounts,
 * keeps its disk, and frees sbx. */
void sbx_stop(struct sbx *sbx);
/* A session's disk: a file system of its own under the run directory that
 * holds the sandbox's writable layer. */
bool sbx_disk_exists(const struct sbx_config *cfg, const char *id);
/* The directory of the disk that a snapshot saves and restores. */
void sbx_disk_layer(const struct sbx_config *cfg, const char *id, char *out, size_t len);
/* Mounts an empty disk for a session whose layer a snapshot will fill. */
int sbx_disk_create_empty(const struct sbx_config *cfg, const char *id, int disk_mb,
			  struct bk_err *err);
/* Unmounts a (stopped) session's disk and removes its directories: the
 * files are gone unless saved. */
int sbx_disk_release(const struct sbx_config *cfg, const char *id, struct bk_err *err);
/* Removes a session's disk and every directory of it; the sandbox must be
 * stopped. */
int sbx_purge(const struct sbx_config *cfg, const char *id, struct bk_err *err);
/* At daemon start: ends processes and root mounts left by a previous run
 * for session id (its disk stays). */
void sbx_cleanup_stale(const struct sbx_config *cfg, const char *id);
/* False once PID 1 has gone (killed, or the agent connection broke). */
bool sbx_alive(const struct sbx *sbx);
pid_t sbx_init_pid(const struct sbx *sbx);

struct sbx_exec_req {
	const char *const *argv; /* argv[0] is a path inside the sandbox */
	const char *const *envp;
	const char *cwd;
	const void *stdin_data; /* NULL: /dev/null */
	size_t stdin_len;
	int64_t timeout_ms;  /* 0: none */
	size_t output_max;   /* per stream; beyond it output is cut */
	bool report_written; /* list the workspace files the exec changed */
	/* Called (from the calling thread) as output arrives; may be NULL. */
	void (*on_output)(void *ctx, int stream, const char *data, size_t len);
	/* Polled a few times a second when set: true kills the execution's
	 * process group. */
	bool (*cancelled)(void *ctx);
	void *ctx;
};

struct sbx_exec_result {
	int exit_code;
	int signal; /* the signal that ended it, 0 if it exited */
	bool timed_out;
	bool oom_killed;     /* the memory cgroup killed a process meanwhile */
	struct buf out, err; /* stdout and stderr as forwarded */
	bool out_truncated, err_truncated;
	int64_t wall_us, cpu_us, maxrss_kb;
	char **written; /* workspace-relative paths; NULL-terminated, owned */
	size_t n_written;
	pid_t pid;
};

void sbx_exec_result_release(struct sbx_exec_result *r);

/* Runs one execution as the session's user and waits for its main process
 * to end. A user program's failure is a result, not an error; an error is
 * the sandbox failing (kind BK_E_INTERNAL), or a request it cannot start
 * (BK_E_INVALID: no such working directory). */
int sbx_exec(struct sbx *sbx, const struct sbx_exec_req *req, struct sbx_exec_result *res,
	     struct bk_err *err);

/* Writes data to path (relative to /workspace) as the session's user,
 * creating parents; the kernel refuses any path that resolves outside the
 * workspace (BK_E_INVALID), a full disk is BK_E_NO_SPACE. */
int sbx_write_file(struct sbx *sbx, const char *path, const void *data, size_t len,
		   struct bk_err *err);

struct sbx_proc {
	pid_t pid;	    /* as the session sees it */
	int64_t started_ms; /* since the epoch */
	char command[256];
};

/* The sandbox's processes but PID 1; *out is malloc'd (caller frees). */
int sbx_ps(struct sbx *sbx, struct sbx_proc **out, size_t *n, struct bk_err *err);

/* Reads a workspace file of at most max bytes (BK_E_TOO_LARGE beyond) as
 * the session's user; *data is malloc'd and NUL-terminated. */
int sbx_read_file(struct sbx *sbx, const char *path, size_t max, char **data, size_t *len,
		  struct bk_err *err);

struct sbx_entry {
	char *path; /* workspace-relative; owned */
	int64_t size;
	int64_t mtime_ms;
	bool is_dir;
};

/* Lists a workspace directory ("" is the workspace), recursively or not;
 * symlinks are listed, never followed. Free *out with sbx_entries_free(). */
int sbx_list(struct sbx *sbx, const char *path, bool recursive, struct sbx_entry **out, size_t *n,
	     struct bk_err *err);
void sbx_entries_free(struct sbx_entry *es, size_t n);
/* The mode of a workspace path as the session's user sees it. */
int sbx_stat(struct sbx *sbx, const char *path, mode_t *mode, struct bk_err *err);
/* Deletes a workspace file or directory; a non-empty directory needs
 * recursive (BK_E_CONFLICT otherwise). */
int sbx_delete(struct sbx *sbx, const char *path, bool recursive, struct bk_err *err);

/* A TCP connection to 127.0.0.1:port inside the sandbox's network
 * namespace, made from the calling thread. BK_E_UNAVAILABLE when nothing
 * listens there. Returns the connected fd (blocking, CLOEXEC). */
int sbx_dial(struct sbx *sbx, int port, int timeout_ms, struct bk_err *err);

/* SIGKILLs pid inside the sandbox, or every process but PID 1 when pid is 0. */
int sbx_kill(struct sbx *sbx, pid_t pid, struct bk_err *err);

/* Regular files in the session's workspace, counted on the host without
 * waking the sandbox (its disk is mounted whenever the session exists). */
int64_t sbx_files_count(const struct sbx_config *cfg, const char *id);
/* Processes of the session, PID 1 left out. */
int64_t sbx_process_count(const struct sbx_config *cfg, const char *id);

/* Host-side cgroup operations (sandbox/cgroup.c). */
int sbx_cgroup_detect(enum sbx_cgroup_mode *mode, struct bk_err *err);
int sbx_cgroup_setup_parent(const struct sbx_config *cfg, const char *id,
			    const struct sbx_limits *limits, pid_t pid, struct bk_err *err);
/* Creates the cgroup that holds every session's and caps the memory of all
 * sessions together at memory_bytes, so that however the per-session
 * limits add up the host keeps the rest. */
int sbx_cgroup_parent_setup(const struct sbx_config *cfg, int64_t memory_bytes, struct bk_err *err);
/* Removes that cgroup when no session holds one in it any more. */
void sbx_cgroup_parent_remove(const struct sbx_config *cfg);
/* Writes the memory, CPU and pids limits of a session's cgroups. */
int sbx_cgroup_set_limits(const struct sbx_config *cfg, const char *id,
			  const struct sbx_limits *limits, struct bk_err *err);
/* Freezes (or thaws) every process of a session and waits until the
 * kernel has. */
int sbx_cgroup_freeze(const struct sbx_config *cfg, const char *id, bool frozen,
		      struct bk_err *err);
/* Renames a session's cgroups (every v1 controller's, or v2's). */
int sbx_cgroup_rename(const struct sbx_config *cfg, const char *from, const char *to,
		      struct bk_err *err);
/* Kills what is left in the session's cgroups and removes them. */
int sbx_cgroup_destroy(const struct sbx_config *cfg, const char *id, struct bk_err *err);
/* Number of OOM kills the session's memory cgroup has seen. */
int64_t sbx_cgroup_oom_kills(const struct sbx_config *cfg, const char *id);
/* True when the session has any cgroup left on the host. */
bool sbx_cgroup_exists(const struct sbx_config *cfg, const char *id);
