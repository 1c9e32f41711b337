/* Session cgroups, on cgroup v2 or, where a host still mounts the v1
 * controllers separately (this project's own machines), on v1.
 *
 * Layout: <controller root>/<parent>/<session id>, where the v1 controllers
 * used are memory, cpu, cpuacct, pids and freezer and v2 has one tree.
 */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/vfs.h>
#include <linux/magic.h>
#include <time.h>
#include <unistd.h>

#include "sandbox/sandbox.h"
#include "util/cleanup.h"

#define CGROUP_ROOT "/sys/fs/cgroup"

static const char *const v1_controllers[] = {"memory", "cpu", "cpuacct", "pids", "freezer"};

const char *sbx_cgroup_mode_name(enum sbx_cgroup_mode mode)
{
	return mode == SBX_CGROUP_V2 ? "v2" : "v1";
}

int sbx_cgroup_detect(enum sbx_cgroup_mode *mode, struct bk_err *err)
{
	struct statfs sf;
	if (statfs(CGROUP_ROOT, &sf) < 0)
		return bk_err_set(err, errno, "cannot stat '%s'", CGROUP_ROOT);
	if (sf.f_type == CGROUP2_SUPER_MAGIC) {
		*mode = SBX_CGROUP_V2;
		return 0;
	}
	for (size_t i = 0; i < ARRAY_SIZE(v1_controllers); i++) {
		char p[256];
		snprintf(p, sizeof(p), CGROUP_ROOT "/%s/cgroup.procs", v1_controllers[i]);
		if (access(p, F_OK) < 0)
			return bk_err_kind(err, BK_E_INTERNAL,
					   "no cgroup v2 at '%s' and no v1 '%s' controller",
					   CGROUP_ROOT, v1_controllers[i]);
	}
	*mode = SBX_CGROUP_V1;
	return 0;
}

/* The session's directory for one v1 controller, or the v2 directory when
 * controller is NULL. */
static void cg_path(const struct sbx_config *cfg, const char *controller, const char *id,
		    const char *file, char *out, size_t len)
{
	if (cfg->cgroup_mode == SBX_CGROUP_V2)
		snprintf(out, len, CGROUP_ROOT "/%s%s%s%s%s", cfg->cgroup_parent, id ? "/" : "",
			 id ? id : "", file ? "/" : "", file ? file : "");
	else
		snprintf(out, len, CGROUP_ROOT "/%s/%s%s%s%s%s", controller, cfg->cgroup_parent,
			 id ? "/" : "", id ? id : "", file ? "/" : "", file ? file : "");
}

static int cg_write(const struct sbx_config *cfg, const char *controller, const char *id,
		    const char *file, const char *value, struct bk_err *err)
{
	char p[512];
	cg_path(cfg, controller, id, file, p, sizeof(p));
	return write_file_str(p, value, err);
}

static int cg_mkdir(const char *path, struct bk_err *err)
{
	if (mkdir(path, 0755) < 0 && errno != EEXIST)
		return bk_err_set(err, errno, "cannot create cgroup '%s'", path);
	return 0;
}

static int limits_v2(const struct sbx_config *cfg, const char *id, const struct sbx_limits *lim,
		     struct bk_err *err)
{
	char p[512], v[64];
	snprintf(v, sizeof(v), "%lld", (long long)lim->memory_mb << 20);
	if (cg_write(cfg, NULL, id, "memory.max", v, err) < 0)
		return -1;
	cg_path(cfg, NULL, id, "memory.swap.max", p, sizeof(p));
	if (access(p, F_OK) == 0 && write_file_str(p, "0", err) < 0)
		return -1;
	snprintf(v, sizeof(v), "%lld 100000", (long long)(lim->cpu * 100000 + 0.5));
	if (cg_write(cfg, NULL, id, "cpu.max", v, err) < 0)
		return -1;
	snprintf(v, sizeof(v), "%d", lim->pids);
	return cg_write(cfg, NULL, id, "pids.max", v, err);
}

static int setup_v2(const struct sbx_config *cfg, const char *id, const struct sbx_limits *lim,
		    pid_t pid, struct bk_err *err)
{
	char p[512], v[64];
	/* The parent must hand the controllers down before its children can
	 * use them; enabling an enabled controller is a no-op. */
	if (write_file_str(CGROUP_ROOT "/cgroup.subtree_control", "+memory +cpu +pids", err) < 0)
		return -1;
	cg_path(cfg, NULL, NULL, NULL, p, sizeof(p));
	if (cg_mkdir(p, err) < 0)
		return -1;
	if (cg_write(cfg, NULL, NULL, "cgroup.subtree_control", "+memory +cpu +pids", err) < 0)
		return -1;
	cg_path(cfg, NULL, id, NULL, p, sizeof(p));
	if (cg_mkdir(p, err) < 0 || limits_v2(cfg, id, lim, err) < 0)
		return -1;
	snprintf(v, sizeof(v), "%d", (int)pid);
	return cg_write(cfg, NULL, id, "cgroup.procs", v, err);
}

static int limits_v1(const struct sbx_config *cfg, const char *id, const struct sbx_limits *lim,
		     struct bk_err *err)
{
	char p[512], v[64];
	snprintf(v, sizeof(v), "%lld", (long long)lim->memory_mb << 20);
	/* memory+swap must stay at or above memory: raise whichever order
	 * keeps that true. */
	cg_path(cfg, "memory", id, "memory.memsw.limit_in_bytes", p, sizeof(p));
	bool memsw = access(p, F_OK) == 0;
	if (memsw)
		write_file_str(p, v, NULL);
	if (cg_write(cfg, "memory", id, "memory.limit_in_bytes", v, err) < 0)
		return -1;
	/* With swap accounting, memory+swap gets the same ceiling: no swapping
	 * past the limit. */
	if (memsw && write_file_str(p, v, err) < 0)
		return -1;
	if (cg_write(cfg, "cpu", id, "cpu.cfs_period_us", "100000", err) < 0)
		return -1;
	snprintf(v, sizeof(v), "%lld", (long long)(lim->cpu * 100000 + 0.5));
	if (cg_write(cfg, "cpu", id, "cpu.cfs_quota_us", v, err) < 0)
		return -1;
	snprintf(v, sizeof(v), "%d", lim->pids);
	return cg_write(cfg, "pids", id, "pids.max", v, err);
}

static int setup_v1(const struct sbx_config *cfg, const char *id, const struct sbx_limits *lim,
		    pid_t pid, struct bk_err *err)
{
	char p[512], v[64];
	for (size_t i = 0; i < ARRAY_SIZE(v1_controllers); i++) {
		cg_path(cfg, v1_controllers[i], NULL, NULL, p, sizeof(p));
		if (cg_mkdir(p, err) < 0)
			return -1;
		cg_path(cfg, v1_controllers[i], id, NULL, p, sizeof(p));
		if (cg_mkdir(p, err) < 0)
			return -1;
	}
	if (limits_v1(cfg, id, lim, err) < 0)
		return -1;
	snprintf(v, sizeof(v), "%d", (int)pid);
	for (size_t i = 0; i < ARRAY_SIZE(v1_controllers); i++)
		if (cg_write(cfg, v1_controllers[i], id, "cgroup.procs", v, err) < 0)
			return -1;
	return 0;
}

int sbx_cgroup_parent_setup(const struct sbx_config *cfg, int64_t memory_bytes, struct bk_err *err)
{
	char p[512], v[64];
	snprintf(v, sizeof(v), "%lld", (long long)memory_bytes);
	if (cfg->cgroup_mode == SBX_CGROUP_V2) {
		if (write_file_str(CGROUP_ROOT "/cgroup.subtree_control", "+memory +cpu +pids",
				   err) < 0)
			return -1;
		cg_path(cfg, NULL, NULL, NULL, p, sizeof(p));
		if (cg_mkdir(p, err) < 0 || cg_write(cfg, NULL, NULL, "cgroup.subtree_control",
						     "+memory +cpu +pids", err) < 0)
			return -1;
		return cg_write(cfg, NULL, NULL, "memory.max", v, err);
	}
	for (size_t i = 0; i < ARRAY_SIZE(v1_controllers); i++) {
		cg_path(cfg, v1_controllers[i], NULL, NULL, p, sizeof(p));
		if (cg_mkdir(p, err) < 0)
			return -1;
	}
	return cg_write(cfg, "memory", NULL, "memory.limit_in_bytes", v, err);
}

void sbx_cgroup_parent_remove(const struct sbx_config *cfg)
{
	char p[512];
	if (cfg->cgroup_mode == SBX_CGROUP_V2) {
		cg_path(cfg, NULL, NULL, NULL, p, sizeof(p));
		rmdir(p);
		return;
	}
	for (size_t i = 0; i < ARRAY_SIZE(v1_controllers); i++) {
		cg_path(cfg, v1_controllers[i], NULL, NULL, p, sizeof(p));
		rmdir(p);
	}
}

int sbx_cgroup_set_limits(const struct sbx_config *cfg, const char *id,
			  const struct sbx_limits *limits, struct bk_err *err)
{
	return cfg->cgroup_mode == SBX_CGROUP_V2 ? limits_v2(cfg, id, limits, err)
						 : limits_v1(cfg, id, limits, err);
}

int sbx_cgroup_rename(const struct sbx_config *cfg, const char *from, const char *to,
		      struct bk_err *err)
{
	char a[512], b[512];
	if (cfg->cgroup_mode == SBX_CGROUP_V2) {
		cg_path(cfg, NULL, from, NULL, a, sizeof(a));
		cg_path(cfg, NULL, to, NULL, b, sizeof(b));
		if (rename(a, b) < 0)
			return bk_err_set(err, errno, "cannot rename cgroup '%s'", a);
		return 0;
	}
	for (size_t i = 0; i < ARRAY_SIZE(v1_controllers); i++) {
		cg_path(cfg, v1_controllers[i], from, NULL, a, sizeof(a));
		cg_path(cfg, v1_controllers[i], to, NULL, b, sizeof(b));
		if (rename(a, b) < 0) {
			int e = errno;
			/* Put back what was renamed, so that one name holds it all. */
			for (size_t k = 0; k < i; k++) {
				cg_path(cfg, v1_controllers[k], to, NULL, b, sizeof(b));
				cg_path(cfg, v1_controllers[k], from, NULL, a, sizeof(a));
				rename(b, a);
			}
			return bk_err_set(err, e, "cannot rename cgroup '%s'", a);
		}
	}
	return 0;
}

int sbx_cgroup_setup_parent(const struct sbx_config *cfg, const char *id,
			    const struct sbx_limits *limits, pid_t pid, struct bk_err *err)
{
	int r = cfg->cgroup_mode == SBX_CGROUP_V2 ? setup_v2(cfg, id, limits, pid, err)
						  : setup_v1(cfg, id, limits, pid, err);
	if (r < 0)
		bk_err_prefix(err, "cannot set up cgroups of session %s", id);
	return r;
}

/* SIGKILLs every process listed in a cgroup.procs file; returns how many. */
static int kill_procs(const char *procs_path)
{
	_cleanup_fclose_ FILE *f = fopen(procs_path, "re");
	if (f == NULL)
		return 0;
	int n = 0, pid;
	while (fscanf(f, "%d", &pid) == 1) {
		kill(pid, SIGKILL);
		n++;
	}
	return n;
}

static int rmdir_retry(const char *dir, const char *procs, struct bk_err *err)
{
	/* A killed process leaves its cgroup only once it has exited: retry
	 * for up to two seconds. */
	for (int i = 0; i < 400; i++) {
		if (rmdir(dir) == 0 || errno == ENOENT)
			return 0;
		if (errno != EBUSY)
			return bk_err_set(err, errno, "cannot remove cgroup '%s'", dir);
		kill_procs(procs);
		struct timespec ts = {0, 5 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	return bk_err_set(err, EBUSY, "cannot remove cgroup '%s'", dir);
}

int sbx_cgroup_destroy(const struct sbx_config *cfg, const char *id, struct bk_err *err)
{
	char dir[512], procs[512];
	int rc = 0;
	if (cfg->cgroup_mode == SBX_CGROUP_V2) {
		cg_path(cfg, NULL, id, NULL, dir, sizeof(dir));
		cg_path(cfg, NULL, id, "cgroup.procs", procs, sizeof(procs));
		if (access(dir, F_OK) < 0)
			return 0;
		cg_write(cfg, NULL, id, "cgroup.freeze", "0", NULL);
		cg_write(cfg, NULL, id, "cgroup.kill", "1", NULL);
		kill_procs(procs);
		return rmdir_retry(dir, procs, err);
	}
	/* A frozen task dies only once thawed. */
	cg_write(cfg, "freezer", id, "freezer.state", "THAWED", NULL);
	cg_path(cfg, "pids", id, "cgroup.procs", procs, sizeof(procs));
	kill_procs(procs);
	for (size_t i = 0; i < ARRAY_SIZE(v1_controllers); i++) {
		cg_path(cfg, v1_controllers[i], id, NULL, dir, sizeof(dir));
		cg_path(cfg, v1_controllers[i], id, "cgroup.procs", procs, sizeof(procs));
		if (rmdir_retry(dir, procs, err) < 0)
			rc = -1;
	}
	return rc;
}

bool sbx_cgroup_exists(const struct sbx_config *cfg, const char *id)
{
	char dir[512];
	if (cfg->cgroup_mode == SBX_CGROUP_V2) {
		cg_path(cfg, NULL, id, NULL, dir, sizeof(dir));
		return access(dir, F_OK) == 0;
	}
	for (size_t i = 0; i < ARRAY_SIZE(v1_controllers); i++) {
		cg_path(cfg, v1_controllers[i], id, NULL, dir, sizeof(dir));
		if (access(dir, F_OK) == 0)
			return true;
	}
	return false;
}

int64_t sbx_cgroup_oom_kills(const struct sbx_config *cfg, const char *id)
{
	char p[512], text[1024];
	if (cfg->cgroup_mode == SBX_CGROUP_V2)
		cg_path(cfg, NULL, id, "memory.events", p, sizeof(p));
	else
		cg_path(cfg, "memory", id, "memory.oom_control", p, sizeof(p));
	if (read_file_small(p, text, sizeof(text), NULL) < 0)
		return 0;
	const char *k = strstr(text, "oom_kill ");
	return k ? strtoll(k + strlen("oom_kill "), NULL, 10) : 0;
}

int64_t sbx_process_count(const struct sbx_config *cfg, const char *id)
{
	char p[512];
	if (cfg->cgroup_mode == SBX_CGROUP_V2)
		cg_path(cfg, NULL, id, "cgroup.procs", p, sizeof(p));
	else
		cg_path(cfg, "pids", id, "cgroup.procs", p, sizeof(p));
	_cleanup_fclose_ FILE *f = fopen(p, "re");
	if (f == NULL)
		return 0;
	int64_t n = 0;
	int pid;
	while (fscanf(f, "%d", &pid) == 1)
		n++;
	return n > 0 ? n - 1 : 0;
}

int sbx_cgroup_freeze(const struct sbx_config *cfg, const char *id, bool frozen, struct bk_err *err)
{
	char p[512], state[256];
	const char *want;
	if (cfg->cgroup_mode == SBX_CGROUP_V2) {
		if (cg_write(cfg, NULL, id, "cgroup.freeze", frozen ? "1" : "0", err) < 0)
			return -1;
		cg_path(cfg, NULL, id, "cgroup.events", p, sizeof(p));
		want = frozen ? "frozen 1" : "frozen 0";
	} else {
		if (cg_write(cfg, "freezer", id, "freezer.state", frozen ? "FROZEN" : "THAWED",
			     err) < 0)
			return -1;
		cg_path(cfg, "freezer", id, "freezer.state", p, sizeof(p));
		want = frozen ? "FROZEN" : "THAWED";
	}
	/* Freezing completes asynchronously: wait for the kernel to say so. */
	for (int i = 0; i < 2000; i++) {
		if (read_file_small(p, state, sizeof(state), err) < 0)
			return -1;
		if (strstr(state, want))
			return 0;
		struct timespec ts = {0, 500 * 1000};
		nanosleep(&ts, NULL);
	}
	return bk_err_kind(err, BK_E_INTERNAL, "cgroup of session %s did not reach '%s'", id, want);
}
