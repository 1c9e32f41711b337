/* The cgroup v1 manager: for hosts that still mount the controllers
 * separately (this project's own machines do). A session has a directory
 * under each controller used: memory, cpu, cpuacct, pids, freezer. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sandbox/cgroup.h"

static const char *const controllers[] = {"memory", "cpu", "cpuacct", "pids", "freezer"};

/* <root>/<controller>/<parent>[/<id>[/<file>]] */
static void v1_path(const char *controller, const char *parent, const char *id, const char *file,
		    char *out, size_t len)
{
	snprintf(out, len, SBX_CGROUP_ROOT "/%s/%s%s%s%s%s", controller, parent, id ? "/" : "",
		 id ? id : "", file ? "/" : "", file ? file : "");
}

static int v1_write(const char *controller, const char *parent, const char *id, const char *file,
		    const char *value, struct bk_err *err)
{
	char p[512];
	v1_path(controller, parent, id, file, p, sizeof(p));
	return write_file_str(p, value, err);
}

static int v1_mkdir(const char *controller, const char *parent, const char *id, struct bk_err *err)
{
	char p[512];
	v1_path(controller, parent, id, NULL, p, sizeof(p));
	if (mkdir(p, 0755) < 0 && errno != EEXIST)
		return bk_err_set(err, errno, "cannot create cgroup '%s'", p);
	return 0;
}

static int v1_parent_create(const char *parent, int64_t memory_bytes, int64_t pids,
			    struct bk_err *err)
{
	for (size_t i = 0; i < ARRAY_SIZE(controllers); i++)
		if (v1_mkdir(controllers[i], parent, NULL, err) < 0)
			return -1;
	char v[32];
	snprintf(v, sizeof(v), "%lld", (long long)memory_bytes);
	if (v1_write("memory", parent, NULL, "memory.limit_in_bytes", v, err) < 0)
		return -1;
	snprintf(v, sizeof(v), "%lld", (long long)pids);
	return v1_write("pids", parent, NULL, "pids.max", v, err);
}

static int v1_parent_remove(const char *parent, struct bk_err *err)
{
	int rc = 0;
	for (size_t i = 0; i < ARRAY_SIZE(controllers); i++) {
		char p[512];
		v1_path(controllers[i], parent, NULL, NULL, p, sizeof(p));
		if (rmdir(p) < 0 && errno != ENOENT && rc == 0)
			rc = bk_err_set(err, errno, "cannot remove cgroup '%s'", p);
	}
	return rc;
}

static int v1_limit(const char *parent, const char *id, const struct sbx_limits *lim,
		    const struct sbx_limits *was, struct bk_err *err)
{
	char p[512], v[64];
	if (was == NULL || was->memory_mb != lim->memory_mb) {
		snprintf(v, sizeof(v), "%lld", (long long)lim->memory_mb << 20);
		/* memory+swap must stay at or above memory: raise whichever
		 * order keeps that true. */
		v1_path("memory", parent, id, "memory.memsw.limit_in_bytes", p, sizeof(p));
		bool memsw = access(p, F_OK) == 0;
		if (memsw)
			write_file_str(p, v, NULL);
		if (v1_write("memory", parent, id, "memory.limit_in_bytes", v, err) < 0)
			return -1;
		/* With swap accounting, memory+swap gets the same ceiling: no
		 * swapping past the limit. */
		if (memsw && write_file_str(p, v, err) < 0)
			return -1;
	}
	if (was == NULL || was->cpu != lim->cpu) {
		/* The period is the kernel's default (100 ms) in a new cgroup;
		 * it is written only where it is not, as each write of it
		 * walks the CPU cgroups too. */
		char now[32] = "";
		v1_path("cpu", parent, id, "cpu.cfs_period_us", p, sizeof(p));
		if (read_file_small(p, now, sizeof(now), NULL) < 0 || atoll(now) != 100000) {
			if (write_file_str(p, "100000", err) < 0)
				return -1;
		}
		snprintf(v, sizeof(v), "%lld", (long long)(lim->cpu * 100000 + 0.5));
		if (v1_write("cpu", parent, id, "cpu.cfs_quota_us", v, err) < 0)
			return -1;
	}
	if (was != NULL && was->pids == lim->pids)
		return 0;
	snprintf(v, sizeof(v), "%d", lim->pids);
	return v1_write("pids", parent, id, "pids.max", v, err);
}

static int v1_create(const char *parent, const char *id, const struct sbx_limits *lim, pid_t pid,
		     struct bk_err *err)
{
	for (size_t i = 0; i < ARRAY_SIZE(controllers); i++)
		if (v1_mkdir(controllers[i], parent, NULL, err) < 0 ||
		    v1_mkdir(controllers[i], parent, id, err) < 0)
			return -1;
	if (v1_limit(parent, id, lim, NULL, err) < 0)
		return -1;
	char v[32];
	snprintf(v, sizeof(v), "%d", (int)pid);
	for (size_t i = 0; i < ARRAY_SIZE(controllers); i++)
		if (v1_write(controllers[i], parent, id, "cgroup.procs", v, err) < 0)
			return -1;
	return 0;
}

static int v1_freeze(const char *parent, const char *id, bool frozen, struct bk_err *err)
{
	const char *want = frozen ? "FROZEN" : "THAWED";
	if (v1_write("freezer", parent, id, "freezer.state", want, err) < 0)
		return -1;
	char p[512];
	v1_path("freezer", parent, id, "freezer.state", p, sizeof(p));
	return sbx__cgroup_wait_state(p, want, id, err);
}

static int v1_rename(const char *parent, const char *from, const char *to, struct bk_err *err)
{
	char a[512], b[512];
	for (size_t i = 0; i < ARRAY_SIZE(controllers); i++) {
		v1_path(controllers[i], parent, from, NULL, a, sizeof(a));
		v1_path(controllers[i], parent, to, NULL, b, sizeof(b));
		if (rename(a, b) == 0)
			continue;
		int e = errno;
		/* Put back what was renamed, so that one name holds it all. */
		for (size_t k = 0; k < i; k++) {
			v1_path(controllers[k], parent, to, NULL, b, sizeof(b));
			v1_path(controllers[k], parent, from, NULL, a, sizeof(a));
			rename(b, a);
		}
		v1_path(controllers[i], parent, from, NULL, a, sizeof(a));
		return bk_err_set(err, e, "cannot rename cgroup '%s'", a);
	}
	return 0;
}

static int v1_destroy(const char *parent, const char *id, struct bk_err *err)
{
	/* A frozen task dies only once thawed. */
	v1_write("freezer", parent, id, "freezer.state", "THAWED", NULL);
	char dir[512], procs[512];
	v1_path("pids", parent, id, "cgroup.procs", procs, sizeof(procs));
	sbx__cgroup_kill_procs(procs);
	int rc = 0;
	for (size_t i = 0; i < ARRAY_SIZE(controllers); i++) {
		v1_path(controllers[i], parent, id, NULL, dir, sizeof(dir));
		v1_path(controllers[i], parent, id, "cgroup.procs", procs, sizeof(procs));
		if (sbx__cgroup_rmdir(dir, procs, err) < 0)
			rc = -1;
	}
	return rc;
}

static bool v1_exists(const char *parent, const char *id)
{
	for (size_t i = 0; i < ARRAY_SIZE(controllers); i++) {
		char dir[512];
		v1_path(controllers[i], parent, id, NULL, dir, sizeof(dir));
		if (access(dir, F_OK) == 0)
			return true;
	}
	return false;
}

static int64_t v1_oom_kills(const char *parent, const char *id)
{
	char p[512];
	v1_path("memory", parent, id, "memory.oom_control", p, sizeof(p));
	return sbx__cgroup_read_num(p, "oom_kill ");
}

static int64_t v1_procs(const char *parent, const char *id)
{
	char p[512];
	v1_path("pids", parent, id, "cgroup.procs", p, sizeof(p));
	return sbx__cgroup_count_procs(p);
}

static int64_t v1_memory(const char *parent, const char *id)
{
	char p[512];
	v1_path("memory", parent, id, "memory.usage_in_bytes", p, sizeof(p));
	return sbx__cgroup_read_num(p, NULL);
}

static void v1_each(const char *parent, void (*fn)(void *ctx, const char *id), void *ctx)
{
	/* Every session cgroup has a pids directory; one that lost it (a
	 * crash between two rmdirs) is found under the memory controller. */
	char dir[512];
	for (size_t i = 0; i < ARRAY_SIZE(controllers); i++) {
		v1_path(controllers[i], parent, NULL, NULL, dir, sizeof(dir));
		sbx__cgroup_each_dir(dir, fn, ctx);
	}
}

const struct cgroup_manager sbx__cgroup_v1 = {
    .name = "v1",
    .parent_create = v1_parent_create,
    .parent_remove = v1_parent_remove,
    .session_create = v1_create,
    .session_limit = v1_limit,
    .session_freeze = v1_freeze,
    .session_rename = v1_rename,
    .session_destroy = v1_destroy,
    .session_exists = v1_exists,
    .session_oom_kills = v1_oom_kills,
    .session_procs = v1_procs,
    .session_memory = v1_memory,
    .session_each = v1_each,
};
