/* The namespaces backend: struct sbx_ops over Linux namespaces, cgroups
 * (sandbox/cgroup_v1.c or cgroup_v2.c, chosen at open), an overlay root
 * (sandbox/mount.c) on a disk of the session's own (sandbox/disk.c), and
 * bunker-init as PID 1 (sandbox/spawn.c), reached over its agent socket
 * (sandbox/agent_ops.c). See sandbox/ns_int.h for the host layout.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "sandbox/agent_ops.h"
#include "sandbox/ns_int.h"
#include "util/cleanup.h"

/* Calls fn with the paths of each session directory under run/. */
static void each_run_dir(const struct ns_backend *b,
			 void (*fn)(void *ctx, const char *id, const struct ns_paths *p), void *ctx)
{
	_cleanup_closedir_ DIR *d = opendir(b->run_dir);
	struct dirent *de;
	while (d && (de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		struct ns_paths p;
		ns__paths_init(&p, b, de->d_name);
		fn(ctx, de->d_name, &p);
	}
}

/* ---- the host's processes ---- */

/* Reserves pids of the processes budget for one sandbox: the pids limits
 * of running sandboxes never add up to more than the budget, so that
 * sessions together cannot take the pids the host needs. */
static int pids_take(struct ns_backend *b, int pids, struct bk_err *err)
{
	pthread_mutex_lock(&b->pids_lock);
	bool room = b->pids_held + pids <= b->pids_budget;
	int64_t held = b->pids_held;
	if (room)
		b->pids_held += pids;
	pthread_mutex_unlock(&b->pids_lock);
	if (!room)
		return bk_err_kind(err, BK_E_UNAVAILABLE,
				   "the host is at its capacity for running sessions: %lld of its "
				   "%lld processes are held by running sessions and another needs "
				   "%d; try again when sessions have gone to sleep or been deleted",
				   (long long)held, (long long)b->pids_budget, pids);
	return 0;
}

static void pids_give(struct ns_backend *b, int pids)
{
	pthread_mutex_lock(&b->pids_lock);
	b->pids_held -= pids;
	pthread_mutex_unlock(&b->pids_lock);
}

/* ---- a sandbox's life ---- */

static void ns_sbx_free(struct ns_sbx *s)
{
	pids_give(s->b, s->pids);
	free(s);
}

static int ns_start(struct sbx_backend *base, const char *id, const struct sbx_limits *limits,
		    struct sbx **out, struct bk_err *err)
{
	struct ns_backend *b = (struct ns_backend *)base;
	__attribute__((cleanup(cleanup_freep))) struct ns_sbx *s = calloc(1, sizeof(*s));
	if (s == NULL)
		return bk_err_set(err, ENOMEM, "cannot start sandbox");
	s->base.backend = base;
	snprintf(s->base.id, sizeof(s->base.id), "%s", id);
	s->b = b;
	s->pidfd = -1;
	ns__paths_init(&s->paths, b, id);
	if (pids_take(b, limits->pids, err) < 0) {
		bk_err_prefix(err, "session %s", id);
		return -1;
	}
	s->pids = limits->pids;
	if (ns__disk_prepare(b, &s->paths, limits->disk_mb, &s->slot, err) < 0 ||
	    ns__rootfs_mount(b, &s->paths, err) < 0) {
		bk_err_prefix(err, "session %s", id);
		pids_give(b, s->pids);
		return -1;
	}
	if (ns__spawn(s, limits, err) < 0) {
		bk_err_prefix(err, "session %s", id);
		ns__rootfs_umount(&s->paths);
		pids_give(b, s->pids);
		return -1;
	}
	*out = &steal_ptr(&s)->base;
	return 0;
}

static void ns_terminate(struct sbx *base)
{
	struct ns_sbx *s = ns_sbx_of(base);
	if (s->pidfd >= 0)
		syscall(SYS_pidfd_send_signal, s->pidfd, SIGKILL, NULL, 0);
	if (s->conn)
		agent_conn_shutdown(s->conn);
}

static void ns_stop(struct sbx *base)
{
	if (base == NULL)
		return;
	struct ns_sbx *s = ns_sbx_of(base);
	struct ns_backend *b = s->b;
	/* A frozen process dies only once thawed. */
	b->cg->session_freeze(b->cgroup_parent, base->id, false, NULL);
	ns__net_release(s);
	ns__kill_and_reap(s);
	agent_conn_close(s->conn);
	struct bk_err err = BK_ERR_INIT;
	if (b->cg->session_destroy(b->cgroup_parent, base->id, &err) < 0)
		fprintf(stderr, "bunkerd: session %s: %s\n", base->id, err.msg);
	ns__rootfs_umount(&s->paths);
	ns_sbx_free(s);
}

static int ns_adopt(struct sbx *base, const char *id, const struct sbx_limits *limits,
		    struct bk_err *err)
{
	struct ns_sbx *s = ns_sbx_of(base);
	struct ns_backend *b = s->b;
	struct ns_paths p;
	ns__paths_init(&p, b, id);
	/* Its share of the processes budget follows its new pids limit. */
	int more = limits->pids - s->pids;
	if (more > 0 && pids_take(b, more, err) < 0)
		return -1;
	if (more < 0)
		pids_give(b, -more);
	s->pids = limits->pids;
	if (b->cg->session_rename(b->cgroup_parent, base->id, id, err) < 0)
		return -1;
	if (rename(s->paths.dir, p.dir) < 0) {
		int e = errno;
		b->cg->session_rename(b->cgroup_parent, id, base->id, NULL);
		return bk_err_set(err, e, "cannot rename '%s'", s->paths.dir);
	}
	snprintf(base->id, sizeof(base->id), "%s", id);
	ns__net_rename(s);
	s->paths = p;
	if (b->cg->session_limit(b->cgroup_parent, id, limits, &s->limits, err) < 0 ||
	    ns__disk_resize(&s->paths, limits->disk_mb, err) < 0) {
		bk_err_prefix(err, "session %s", id);
		return -1;
	}
	s->limits = *limits;
	return 0;
}

static int ns_freeze(struct sbx *base, bool frozen, struct bk_err *err)
{
	struct ns_backend *b = ns_sbx_of(base)->b;
	/* Thawed, init finds a fresh lease before its old one's end. */
	int lease_ms = __atomic_load_n(&base->lease_ms, __ATOMIC_RELAXED);
	if (!frozen && lease_ms > 0)
		sbx__agent_lease(base, lease_ms);
	return b->cg->session_freeze(b->cgroup_parent, base->id, frozen, err);
}

static bool ns_alive(struct sbx *base)
{
	struct ns_sbx *s = ns_sbx_of(base);
	return s->conn && agent_conn_alive(s->conn);
}

/* ---- executions ---- */

static int64_t ns_oom_kills(struct sbx *base)
{
	struct ns_backend *b = ns_sbx_of(base)->b;
	return b->cg->session_oom_kills(b->cgroup_parent, base->id);
}

static int ns_exec(struct sbx *s, const struct sbx_exec_req *req, struct sbx_exec_result *res,
		   struct bk_err *err)
{
	const char *shell[] = {"/bin/sh", "-c", req->text, NULL};
	/* Code arrives on stdin: no size limit of argv, not visible in the
	 * process list, and relative imports resolve from the working
	 * directory. */
	const char *bun[] = {ns__image_bun, "run", "-", NULL};
	bool code = req->program == SBX_PROGRAM_BUN;
	_cleanup_free_ const char **envp = NULL;
	if (sbx__env_merge(ns__image_env, req->envp, &envp, err) < 0) {
		memset(res, 0, sizeof(*res));
		return -1;
	}
	struct sbx_agent_exec x = {
	    .argv = code ? bun : shell,
	    .envp = envp,
	    .stdin_data = code ? req->text : NULL,
	    .stdin_len = code ? strlen(req->text) : 0,
	    .oom_kills = ns_oom_kills,
	};
	return sbx__agent_exec(s, &x, req, res, err);
}

/* ---- persistent interpreters ---- */

/* The driver of each language (src/init/drivers/), as the process list
 * shows it. JavaScript and TypeScript are two interpreters of one driver:
 * state persists per language. */
static const struct {
	const char *name;
	const char *argv[8];
	bool self_feed;
} ns_interps[SBX_LANG_COUNT] = {
    [SBX_LANG_PYTHON] = {"python", {"/usr/bin/python3", NS_IMAGE_DRIVERS "/python.py"}},
    [SBX_LANG_BASH] = {"bash",
		       {"/bin/bash", "--noprofile", "--noediting", "--rcfile",
			NS_IMAGE_DRIVERS "/bash.sh", "-i"},
		       true},
    [SBX_LANG_JAVASCRIPT] = {"javascript",
			     {ns__image_bun, NS_IMAGE_DRIVERS "/javascript.mjs", "javascript"}},
    [SBX_LANG_TYPESCRIPT] = {"typescript",
			     {ns__image_bun, NS_IMAGE_DRIVERS "/javascript.mjs", "typescript"}},
};

static int ns_run(struct sbx *s, const struct sbx_run_req *req, struct sbx_exec_result *res,
		  struct bk_err *err)
{
	memset(res, 0, sizeof(*res));
	if ((unsigned)req->language >= SBX_LANG_COUNT)
		return bk_err_field(err, "language", "unknown language %d", (int)req->language);
	_cleanup_free_ const char **envp = NULL;
	if (sbx__env_merge(ns__image_env, req->envp, &envp, err) < 0)
		return -1;
	struct sbx_agent_run x = {
	    .name = ns_interps[req->language].name,
	    .argv = ns_interps[req->language].argv,
	    .envp = envp,
	    .self_feed = ns_interps[req->language].self_feed,
	    .oom_kills = ns_oom_kills,
	};
	return sbx__agent_run(s, &x, req, res, err);
}

/* ---- figures and files ---- */

static void ns_stats(struct sbx_backend *base, const char *id, struct sbx_stats *out)
{
	struct ns_backend *b = (struct ns_backend *)base;
	struct ns_paths p;
	ns__paths_init(&p, b, id);
	int64_t procs = b->cg->session_procs(b->cgroup_parent, id);
	*out = (struct sbx_stats){
	    .files = ns__is_mountpoint(p.disk) ? ns__disk_files(&p) : ns__snapshot_files(base, id),
	    .processes = procs > 0 ? procs - 1 : 0,
	    .memory_bytes = procs > 0 ? b->cg->session_memory(b->cgroup_parent, id) : 0,
	};
}

static void ns_net_totals(struct sbx_backend *base, int64_t *tx, int64_t *rx)
{
	ns__net_totals(&((struct ns_backend *)base)->egress, tx, rx);
}

static int ns_purge(struct sbx_backend *base, const char *id, struct bk_err *err)
{
	struct ns_backend *b = (struct ns_backend *)base;
	struct ns_paths p;
	ns__paths_init(&p, b, id);
	int rc = b->cg->session_destroy(b->cgroup_parent, id, err);
	if (ns__disk_destroy(b, &p, err) < 0)
		rc = -1;
	ns__drop_snapshot(base, id);
	ns__drop_checkpoint(base, id);
	return rc;
}

/* ---- the backend ---- */

struct reconcile_ctx {
	struct ns_backend *b;
	bool (*known)(void *ctx, const char *id, bool here);
	void *ctx;
};

/* A session cgroup left on the host: nothing of a sandbox survives a
 * daemon, so each one goes, known session or not. */
static void reconcile_cgroup(void *arg, const char *id)
{
	struct reconcile_ctx *r = arg;
	struct bk_err err = BK_ERR_INIT;
	if (r->b->cg->session_destroy(r->b->cgroup_parent, id, &err) < 0)
		fprintf(stderr, "bunkerd: leftover cgroup of %s: %s\n", id, err.msg);
}

/* A directory under run/: a known session's disk stays (its root mount of
 * a dead sandbox goes); the rest are warm-pool sandboxes of an earlier
 * run, or what a crash between a delete's record removal and its file
 * removal left. */
static void reconcile_dir(void *arg, const char *id, const struct ns_paths *p)
{
	struct reconcile_ctx *r = arg;
	if (r->known(r->ctx, id, true)) {
		ns__rootfs_umount(p);
		return;
	}
	struct bk_err err = BK_ERR_INIT;
	/* Another node's now: its disk here goes, its snapshot and
	 * checkpoint are that node's to read. */
	if (r->known(r->ctx, id, false)) {
		if (r->b->cg->session_destroy(r->b->cgroup_parent, id, &err) < 0 ||
		    ns__disk_destroy(r->b, p, &err) < 0)
			fprintf(stderr, "bunkerd: %s, taken over by another node: %s\n", id,
				err.msg);
		return;
	}
	if (ns_purge(&r->b->base, id, &err) < 0)
		fprintf(stderr, "bunkerd: orphan %s: %s\n", id, err.msg);
}

static bool ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), k = strlen(suffix);
	return n > k && strcmp(s + n - k, suffix) == 0;
}

static void ns_reconcile(struct sbx_backend *base,
			 bool (*known)(void *ctx, const char *id, bool here), void *ctx)
{
	struct ns_backend *b = (struct ns_backend *)base;
	struct reconcile_ctx r = {b, known, ctx};
	b->cg->session_each(b->cgroup_parent, reconcile_cgroup, &r);
	each_run_dir(b, reconcile_dir, &r);
	/* Snapshots, checkpoints and images of sessions whose record is
	 * gone; what a save or a fold that a crash cut short left of a
	 * session of this node's or of none (another node's may be under
	 * way). An image of a session that another node woke is its layer
	 * there, and stays as long as the session is known. */
	_cleanup_closedir_ DIR *sd = opendir(b->snapshot_dir);
	struct dirent *de;
	while (sd && (de = readdir(sd)) != NULL) {
		const char *name = de->d_name;
		bool partial = ends_with(name, NS_STAGE_SUFFIX) || ends_with(name, ".tmp");
		const char *idp = name[0] == '.' ? name + 1 : name;
		size_t idlen = strcspn(idp, ".");
		if (idlen == 0 || idlen >= 64 || idp[idlen] != '.' ||
		    (!partial && !ends_with(name, ".tar.zst") && !ends_with(name, NS_IMAGE_SUFFIX)))
			continue;
		char id[64];
		snprintf(id, sizeof(id), "%.*s", (int)idlen, idp);
		if (partial ? known(ctx, id, false) && !known(ctx, id, true)
			    : known(ctx, id, false))
			continue;
		struct bk_err err = BK_ERR_INIT;
		if (unlinkat(dirfd(sd), name, 0) < 0 &&
		    (errno != EISDIR || rm_rf_at(dirfd(sd), name, &err) < 0))
			fprintf(stderr, "bunkerd: cannot remove '%s/%s'\n", b->snapshot_dir, name);
	}
}

static void ns_describe(struct sbx_backend *base, char *out, size_t len)
{
	struct ns_backend *b = (struct ns_backend *)base;
	snprintf(out, len, "namespaces, cgroup %s", b->cg->name);
}

static void note_disk(void *arg, const char *id, const struct ns_paths *p)
{
	*(bool *)arg |= ns__is_mountpoint(p->disk);
}

/* Unmounts the run directory's own bind mount and lets the daemon's mount
 * namespace go with it, unless a session still keeps its disk there. */
static void run_dir_release(const struct ns_backend *b)
{
	bool disks = false;
	each_run_dir(b, note_disk, &disks);
	if (!disks) {
		umount2(b->run_dir, MNT_DETACH);
		ns__mntns_release();
	}
}

static void ns_close(struct sbx_backend *base)
{
	if (base == NULL)
		return;
	struct ns_backend *b = (struct ns_backend *)base;
	ns__spawner_close(b);
	if (b->cg) {
		/* Every sandbox is stopped by now, so the parent is empty: a
		 * daemon leaves no cgroup behind. One that cannot go says so. */
		struct bk_err err = BK_ERR_INIT;
		if (b->cg->parent_remove(b->cgroup_parent, &err) < 0)
			fprintf(stderr, "bunkerd: %s\n", err.msg);
		run_dir_release(b);
	}
	ns__egress_close(&b->egress);
	sbx__slots_destroy(&b->slots);
	pthread_mutex_destroy(&b->pids_lock);
	pthread_mutex_destroy(&b->spawner_lock);
	free(b);
}

static const struct sbx_ops ns_ops = {
    .name = "namespaces",
    .close = ns_close,
    .describe = ns_describe,
    .reconcile = ns_reconcile,
    .start = ns_start,
    .adopt = ns_adopt,
    .terminate = ns_terminate,
    .stop = ns_stop,
    .freeze = ns_freeze,
    .alive = ns_alive,
    .lease = sbx__agent_lease,
    .exec = ns_exec,
    .run = ns_run,
    .write_file = sbx__agent_write_file,
    .read_piece = sbx__agent_read_piece,
    .write_path = sbx__agent_write_path,
    .list = sbx__agent_list,
    .stat = sbx__agent_stat,
    .remove = sbx__agent_remove,
    .kill = sbx__agent_kill,
    .ps = sbx__agent_ps,
    .dial = ns__dial,
    .net_set = ns__net_set,
    .net_prepare = ns__net_prepare,
    .net_bytes = ns__net_bytes,
    .stats = ns_stats,
    .net_totals = ns_net_totals,
    .files_state = ns__files_state,
    .files_save = ns__files_save,
    .files_restore = ns__files_restore,
    .drop_disk = ns__drop_disk,
    .drop_snapshot = ns__drop_snapshot,
    .files_checkpoint = ns__files_checkpoint,
    .checkpoint_move = ns__checkpoint_move,
    .drop_checkpoint = ns__drop_checkpoint,
    .snapshot_files = ns__snapshot_files,
    .purge = ns_purge,
};

/* One daemon, one parent cgroup: named after its instance
 * (sbx_instance_name()), so that two daemons on one host (tests, a second
 * instance) never meet in each other's cgroups. */
static void cgroup_parent_name(const char *data_dir, char *out, size_t len)
{
	sbx_instance_name(data_dir, out, len);
}

static void hold_slot(void *arg, const char *id, const struct ns_paths *p)
{
	struct ns_backend *b = arg;
	int slot = ns__disk_slot(p);
	if (slot >= 0 && !sbx__slots_hold(&b->slots, slot))
		fprintf(stderr, "bunkerd: the disk of %s is on id range %d, %s\n", id, slot,
			"taken twice or not this daemon's");
}

/* The kernel's limit on tasks: pid_max or threads-max, the lower. */
static int64_t kernel_tasks(void)
{
	char text[32];
	int64_t pid_max = 32768, threads = INT64_MAX;
	if (read_file_small("/proc/sys/kernel/pid_max", text, sizeof(text), NULL) > 0)
		pid_max = strtoll(text, NULL, 10);
	if (read_file_small("/proc/sys/kernel/threads-max", text, sizeof(text), NULL) > 0)
		threads = strtoll(text, NULL, 10);
	return pid_max < threads ? pid_max : threads;
}

/* The host's capacity for sessions: the processes budget and the room
 * of the snapshot storage, from the configuration or their defaults. */
static int capacity_init(struct ns_backend *b, const struct sbx_backend_config *cfg,
			 struct bk_err *err)
{
	int64_t tasks = kernel_tasks();
	b->pids_budget = cfg->pids_budget > 0 ? cfg->pids_budget : tasks / 2;
	/* The host keeps a tenth of the kernel's tasks whatever is asked. */
	if (b->pids_budget > tasks / 10 * 9)
		return bk_err_kind(err, BK_E_INVALID,
				   "a processes budget of %lld leaves the host less than a tenth "
				   "of the kernel's %lld tasks",
				   (long long)b->pids_budget, (long long)tasks);
	struct statvfs vfs;
	if (statvfs(b->snapshot_dir, &vfs) < 0)
		return bk_err_set(err, errno, "cannot stat '%s'", b->snapshot_dir);
	int64_t fs = (int64_t)vfs.f_blocks * (int64_t)vfs.f_frsize;
	b->snap_max = cfg->snapshot_max_bytes > 0 ? cfg->snapshot_max_bytes : fs / 2;
	b->snap_min_free =
	    cfg->snapshot_min_free_bytes > 0 ? cfg->snapshot_min_free_bytes : fs / 20;
	fprintf(stderr,
		"bunkerd: capacity: %lld processes for running sessions (the kernel has %lld), "
		"snapshots up to %lld MB with %lld MB kept free on '%s'\n",
		(long long)b->pids_budget, (long long)tasks, (long long)(b->snap_max >> 20),
		(long long)(b->snap_min_free >> 20), b->snapshot_dir);
	return 0;
}

static int ns_prepare(struct ns_backend *b, const struct sbx_backend_config *cfg,
		      struct bk_err *err)
{
	if (strlen(cfg->data_dir) > SBX_DIR_MAX || strlen(cfg->snapshot_dir) > SBX_DIR_MAX)
		return bk_err_kind(err, BK_E_INVALID,
				   "the data and snapshot directories take at most %d bytes",
				   SBX_DIR_MAX);
	snprintf(b->hostname, sizeof(b->hostname), "bunker");
	snprintf(b->init_path, sizeof(b->init_path), "%s", cfg->init_path);
	b->tar_snapshots = cfg->tar_snapshots;
	if (access(cfg->init_path, X_OK) < 0)
		return bk_err_set(err, errno, "cannot run '%s'", cfg->init_path);
	if (cfg->cgroup_parent[0])
		snprintf(b->cgroup_parent, sizeof(b->cgroup_parent), "%s", cfg->cgroup_parent);
	else
		cgroup_parent_name(cfg->data_dir, b->cgroup_parent, sizeof(b->cgroup_parent));
	if (cfg->snapshot_dir[0])
		snprintf(b->snapshot_dir, sizeof(b->snapshot_dir), "%s", cfg->snapshot_dir);
	else if (path_fmt(b->snapshot_dir, sizeof(b->snapshot_dir), "%s/snapshots", cfg->data_dir) <
		 0)
		return bk_err_set(err, errno, "data directory '%s' is too long", cfg->data_dir);
	if (mkdir_p(b->snapshot_dir, 0700, err) < 0)
		return -1;
	char capbuf[16];
	b->cap_last = 40;
	if (read_file_small("/proc/sys/kernel/cap_last_cap", capbuf, sizeof(capbuf), NULL) > 0)
		b->cap_last = atoi(capbuf);
	if (sbx__slots_init(&b->slots, cfg->slot_first, cfg->slot_count, err) < 0)
		return -1;
	if (capacity_init(b, cfg, err) < 0)
		return -1;
	b->cg = sbx__cgroup_detect(err);
	if (b->cg == NULL)
		return -1;
	/* Sessions together get at most 80% of the host's memory, and no
	 * more processes than the budget (which admission already keeps
	 * them under: the kernel's limit is the second line). */
	int64_t total = (int64_t)sysconf(_SC_PHYS_PAGES) * sysconf(_SC_PAGESIZE);
	if (b->cg->parent_create(b->cgroup_parent, total / 5 * 4, b->pids_budget, err) < 0)
		return -1;
	if (path_fmt(b->run_dir, sizeof(b->run_dir), "%s/run", cfg->data_dir) < 0)
		return bk_err_set(err, errno, "data directory '%s' is too long", cfg->data_dir);
	if (mkdir_p(b->run_dir, 0700, err) < 0)
		return -1;
	/* Session mounts live under a private mount, so that none of them
	 * propagates into other mount namespaces of the host: a tmpfs of the
	 * daemon's namespace, which holds their directories and mount points
	 * alone (a session's files are on its own disk). Not the data
	 * directory's file system: ext4 makes each mkdir look past every inode
	 * freed in the last minutes (recently_deleted()), 4.9 ms of a sandbox's
	 * start in a burst of 200 creates. It lives as long as the namespace,
	 * as the disks in it do. */
	if (!ns__is_mountpoint(b->run_dir) &&
	    mount("bunker-run", b->run_dir, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
		  "mode=0700,size=16m,nr_inodes=1048576") < 0)
		return bk_err_set(err, errno, "cannot mount a tmpfs on '%s'", b->run_dir);
	if (mount(NULL, b->run_dir, NULL, MS_PRIVATE, NULL) < 0)
		return bk_err_set(err, errno, "cannot make '%s' private", b->run_dir);
	/* Before any session: sandboxes are clones of this small fork. */
	if (ns__spawner_open(b, err) < 0)
		return -1;
	/* The disks that survived an earlier run hold their slots. */
	each_run_dir(b, hold_slot, b);
	/* Egress names its table and interfaces after the same hash, so two
	 * daemons on one host never touch each other's. */
	char hash[16];
	snprintf(hash, sizeof(hash), "%08x", sbx_instance_hash(cfg->data_dir));
	ns__egress_open(&b->egress, cfg, hash);
	return ns__image_ensure(cfg->data_dir, cfg->bun_path, b->image_dir, sizeof(b->image_dir),
				err);
}

int sbx_backend_open(const struct sbx_backend_config *cfg, struct sbx_backend **out,
		     struct bk_err *err)
{
	struct ns_backend *b = calloc(1, sizeof(*b));
	if (b == NULL)
		return bk_err_set(err, ENOMEM, "cannot open the sandbox backend");
	b->base.ops = &ns_ops;
	pthread_mutex_init(&b->pids_lock, NULL);
	pthread_mutex_init(&b->spawner_lock, NULL);
	b->spawner_fd = -1;
	ns__egress_init(&b->egress);
	if (ns_prepare(b, cfg, err) < 0) {
		ns_close(&b->base);
		return -1;
	}
	*out = &b->base;
	return 0;
}

void sbx_backend_probe(char *out, size_t len)
{
	struct bk_err err = BK_ERR_INIT;
	const struct cgroup_manager *cg = sbx__cgroup_detect(&err);
	if (cg)
		snprintf(out, len, "namespaces, cgroup %s", cg->name);
	else
		snprintf(out, len, "none (%s)", err.msg);
}
