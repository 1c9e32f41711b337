/* Session cgroups: one manager per cgroup version, chosen once at start-up
 * (sbx__cgroup_detect), after crun's cgroup managers. Callers never ask
 * which version runs.
 *
 * Layout: every session's cgroup sits in one parent of the daemon's
 * (<parent>/<session id>); on v1 under each controller used (memory, cpu,
 * cpuacct, pids, freezer), on v2 in the one tree. The parent caps the
 * memory of all sessions together.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "sandbox/sandbox.h"

struct cgroup_manager {
	const char *name; /* "v1" or "v2" */
	/* Creates the parent and caps the memory of everything in it at
	 * memory_bytes, its processes at pids. */
	int (*parent_create)(const char *parent, int64_t memory_bytes, int64_t pids,
			     struct bk_err *err);
	/* Removes the parent; fails (EBUSY) while a session's cgroup is in
	 * it. A parent that is not there is not an error. */
	int (*parent_remove)(const char *parent, struct bk_err *err);
	/* Creates session id's cgroup with limits and moves pid into it. */
	int (*session_create)(const char *parent, const char *id, const struct sbx_limits *limits,
			      pid_t pid, struct bk_err *err);
	/* Writes the memory, CPU and pids limits of session id's cgroup
	 * that differ from was, the limits it holds (NULL: write them all).
	 * A write of a CPU quota walks every CPU cgroup of the host in the
	 * kernel (tg_cfs_schedulable_down()), so one not needed is not made:
	 * a warm sandbox adopted with the defaults it waited with writes
	 * nothing. */
	int (*session_limit)(const char *parent, const char *id, const struct sbx_limits *limits,
			     const struct sbx_limits *was, struct bk_err *err);
	/* Freezes (or thaws) every process of session id and waits until the
	 * kernel has. */
	int (*session_freeze)(const char *parent, const char *id, bool frozen, struct bk_err *err);
	/* Renames session from's cgroup to to: all of it or, on failure, none. */
	int (*session_rename)(const char *parent, const char *from, const char *to,
			      struct bk_err *err);
	/* Kills what is left in session id's cgroup and removes it; no
	 * cgroup is not an error. */
	int (*session_destroy)(const char *parent, const char *id, struct bk_err *err);
	/* Whether session id has any cgroup left. */
	bool (*session_exists)(const char *parent, const char *id);
	/* OOM kills session id's memory cgroup has seen. */
	int64_t (*session_oom_kills)(const char *parent, const char *id);
	/* Processes in session id's cgroup. */
	int64_t (*session_procs)(const char *parent, const char *id);
	/* Memory session id's cgroup uses now, bytes. */
	int64_t (*session_memory)(const char *parent, const char *id);
	/* Calls fn for each session cgroup under the parent. */
	void (*session_each)(const char *parent, void (*fn)(void *ctx, const char *id), void *ctx);
};

extern const struct cgroup_manager sbx__cgroup_v1;
extern const struct cgroup_manager sbx__cgroup_v2;

/* The manager of this host's cgroups: v2 when /sys/fs/cgroup is a cgroup2
 * mount, v1 when the v1 controllers are mounted separately. NULL with err
 * set when neither is usable. */
const struct cgroup_manager *sbx__cgroup_detect(struct bk_err *err);

/* ---- what the two managers share (sandbox/cgroup.c) ---- */

#define SBX_CGROUP_ROOT "/sys/fs/cgroup"

/* SIGKILLs every process listed in the cgroup.procs file at path; returns
 * how many were listed. */
int sbx__cgroup_kill_procs(const char *procs_path);
/* Processes listed in a cgroup.procs file (0 when it cannot be read). */
int64_t sbx__cgroup_count_procs(const char *procs_path);
/* rmdir of a cgroup directory, killing what is still in it (procs_path)
 * and retrying while its killed processes exit (2 s at most). */
int sbx__cgroup_rmdir(const char *dir, const char *procs_path, struct bk_err *err);
/* Polls the state file at path until it contains want (1 s at most):
 * freezing completes asynchronously. */
int sbx__cgroup_wait_state(const char *path, const char *want, const char *id, struct bk_err *err);
/* Reads a number at key ("oom_kill ") in a small file, 0 when absent;
 * with key NULL, the number the file starts with. */
int64_t sbx__cgroup_read_num(const char *path, const char *key);
/* Calls fn for each subdirectory of dir. */
void sbx__cgroup_each_dir(const char *dir, void (*fn)(void *ctx, const char *id), void *ctx);
