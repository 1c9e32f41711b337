/* The cgroup v2 manager: one tree, <root>/<parent>/<session id>, with the
 * memory, cpu and pids controllers handed down from the root. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sandbox/cgroup.h"

#define V2_CONTROLLERS "+memory +cpu +pids"

/* <root>/<parent>[/<id>[/<file>]] */
static void v2_path(const char *parent, const char *id, const char *file, char *out, size_t len)
{
	snprintf(out, len, SBX_CGROUP_ROOT "/%s%s%s%s%s", parent, id ? "/" : "", id ? id : "",
		 file ? "/" : "", file ? file : "");
}

static int v2_write(const char *parent, const char *id, const char *file, const char *value,
		    struct bk_err *err)
{
	char p[512];
	v2_path(parent, id, file, p, sizeof(p));
	return write_file_str(p, value, err);
}

/* The parent, with the controllers enabled for its children (enabling an
 * enabled controller is a no-op). */
static int v2_parent_ensure(const char *parent, struct bk_err *err)
{
	if (write_file_str(SBX_CGROUP_ROOT "/cgroup.subtree_control", V2_CONTROLLERS, err) < 0)
		return -1;
	char p[512];
	v2_path(parent, NULL, NULL, p, sizeof(p));
	if (mkdir(p, 0755) < 0 && errno != EEXIST)
		return bk_err_set(err, errno, "cannot create cgroup '%s'", p);
	return v2_write(parent, NULL, "cgroup.subtree_control", V2_CONTROLLERS, err);
}

static int v2_parent_create(const char *parent, int64_t memory_bytes, int64_t pids,
			    struct bk_err *err)
{
	if (v2_parent_ensure(parent, err) < 0)
		return -1;
	char v[32];
	snprintf(v, sizeof(v), "%lld", (long long)memory_bytes);
	if (v2_write(parent, NULL, "memory.max", v, err) < 0)
		return -1;
	snprintf(v, sizeof(v), "%lld", (long long)pids);
	return v2_write(parent, NULL, "pids.max", v, err);
}

static int v2_parent_remove(const char *parent, struct bk_err *err)
{
	char p[512];
	v2_path(parent, NULL, NULL, p, sizeof(p));
	if (rmdir(p) < 0 && errno != ENOENT)
		return bk_err_set(err, errno, "cannot remove cgroup '%s'", p);
	return 0;
}

static int v2_limit(const char *parent, const char *id, const struct sbx_limits *lim,
		    const struct sbx_limits *was, struct bk_err *err)
{
	char p[512], v[64];
	if (was == NULL || was->memory_mb != lim->memory_mb) {
		snprintf(v, sizeof(v), "%lld", (long long)lim->memory_mb << 20);
		if (v2_write(parent, id, "memory.max", v, err) < 0)
			return -1;
	}
	v2_path(parent, id, "memory.swap.max", p, sizeof(p));
	if (was == NULL && access(p, F_OK) == 0 && write_file_str(p, "0", err) < 0)
		return -1;
	if (was == NULL || was->cpu != lim->cpu) {
		snprintf(v, sizeof(v), "%lld 100000", (long long)(lim->cpu * 100000 + 0.5));
		if (v2_write(parent, id, "cpu.max", v, err) < 0)
			return -1;
	}
	if (was != NULL && was->pids == lim->pids)
		return 0;
	snprintf(v, sizeof(v), "%d", lim->pids);
	return v2_write(parent, id, "pids.max", v, err);
}

static int v2_create(const char *parent, const char *id, const struct sbx_limits *lim, pid_t pid,
		     struct bk_err *err)
{
	if (v2_parent_ensure(parent, err) < 0)
		return -1;
	char p[512], v[32];
	v2_path(parent, id, NULL, p, sizeof(p));
	if (mkdir(p, 0755) < 0 && errno != EEXIST)
		return bk_err_set(err, errno, "cannot create cgroup '%s'", p);
	if (v2_limit(parent, id, lim, NULL, err) < 0)
		return -1;
	snprintf(v, sizeof(v), "%d", (int)pid);
	return v2_write(parent, id, "cgroup.procs", v, err);
}

static int v2_freeze(const char *parent, const char *id, bool frozen, struct bk_err *err)
{
	if (v2_write(parent, id, "cgroup.freeze", frozen ? "1" : "0", err) < 0)
		return -1;
	char p[512];
	v2_path(parent, id, "cgroup.events", p, sizeof(p));
	return sbx__cgroup_wait_state(p, frozen ? "frozen 1" : "frozen 0", id, err);
}

static int v2_rename(const char *parent, const char *from, const char *to, struct bk_err *err)
{
	char a[512], b[512];
	v2_path(parent, from, NULL, a, sizeof(a));
	v2_path(parent, to, NULL, b, sizeof(b));
	if (rename(a, b) < 0)
		return bk_err_set(err, errno, "cannot rename cgroup '%s'", a);
	return 0;
}

static int v2_destroy(const char *parent, const char *id, struct bk_err *err)
{
	char dir[512], procs[512];
	v2_path(parent, id, NULL, dir, sizeof(dir));
	if (access(dir, F_OK) < 0)
		return 0;
	v2_path(parent, id, "cgroup.procs", procs, sizeof(procs));
	v2_write(parent, id, "cgroup.freeze", "0", NULL);
	v2_write(parent, id, "cgroup.kill", "1", NULL);
	sbx__cgroup_kill_procs(procs);
	return sbx__cgroup_rmdir(dir, procs, err);
}

static bool v2_exists(const char *parent, const char *id)
{
	char dir[512];
	v2_path(parent, id, NULL, dir, sizeof(dir));
	return access(dir, F_OK) == 0;
}

static int64_t v2_oom_kills(const char *parent, const char *id)
{
	char p[512];
	v2_path(parent, id, "memory.events", p, sizeof(p));
	return sbx__cgroup_read_num(p, "oom_kill ");
}

static int64_t v2_procs(const char *parent, const char *id)
{
	char p[512];
	v2_path(parent, id, "cgroup.procs", p, sizeof(p));
	return sbx__cgroup_count_procs(p);
}

static int64_t v2_memory(const char *parent, const char *id)
{
	char p[512];
	v2_path(parent, id, "memory.current", p, sizeof(p));
	return sbx__cgroup_read_num(p, NULL);
}

static void v2_each(const char *parent, void (*fn)(void *ctx, const char *id), void *ctx)
{
	char dir[512];
	v2_path(parent, NULL, NULL, dir, sizeof(dir));
	sbx__cgroup_each_dir(dir, fn, ctx);
}

const struct cgroup_manager sbx__cgroup_v2 = {
    .name = "v2",
    .parent_create = v2_parent_create,
    .parent_remove = v2_parent_remove,
    .session_create = v2_create,
    .session_limit = v2_limit,
    .session_freeze = v2_freeze,
    .session_rename = v2_rename,
    .session_destroy = v2_destroy,
    .session_exists = v2_exists,
    .session_oom_kills = v2_oom_kills,
    .session_procs = v2_procs,
    .session_memory = v2_memory,
    .session_each = v2_each,
};
