/* The namespaces backend's own parts: what sandbox/ns.c, spawn.c, mount.c,
 * disk.c, net.c, userns.c and image.c share. core/ never includes it.
 *
 * Host layout, below the backend's data directory, as bunkerd's own mount
 * namespace sees it (sandbox/mntns.c; the host's table holds none of it):
 *   run/                 a private bind mount of its own: nothing mounted
 *                        below it propagates to the sandboxes' copies of
 *                        the namespace
 *   run/<id>/disk        the session's disk (a tmpfs of its disk limit)
 *   run/<id>/disk/upper  the overlay's writable layer, root owned by the
 *                        session's root id (which tells its slot)
 *   run/<id>/disk/layer  the name of the image below the upper, if any
 *   run/<id>/lower       that image, mounted (sandbox/layer.c)
 *   run/<id>/root        the overlay the sandbox pivots into: mounted
 *                        only while a sandbox starts, until its tree is
 *                        cloned for the child
 *   images/default-...   the read-only lower layer
 *   <snapshot dir>/<id>.erofs     the files of a sleeping session (or
 *                        <id>.tar.zst, from a tar snapshot or checkpoint)
 *   <snapshot dir>/<id>.<random>.layer.erofs   the image an awake session
 *                        woke from, its middle layer
 */
#pragma once

#include <pthread.h>

#include "agent/client.h"
#include "agent/proto.h"
#include "sandbox/cgroup.h"
#include "sandbox/egress_int.h"
#include "sandbox/sandbox.h"
#include "sandbox/slots.h"

struct ns_paths {
	char dir[528];	/* <run>/<id> */
	char disk[560]; /* tmpfs: the session's writable layer */
	char upper[580];
	char work[580];
	char layer[580]; /* the record of the image below the upper */
	char lower[560]; /* that image, mounted */
	char root[560];	 /* the overlay, pivoted into */
};

struct ns_backend {
	struct sbx_backend base;
	char run_dir[512];
	char image_dir[512];
	char init_path[512];
	char snapshot_dir[512];
	char hostname[64];
	char cgroup_parent[64];
	const struct cgroup_manager *cg;
	struct sbx_slots slots;
	int cap_last; /* the highest capability this kernel knows */
	/* Snapshot storage: what snapshots may take, what a save leaves
	 * free (sandbox/disk.c). */
	int64_t snap_max, snap_min_free;
	/* Deep sleep saves tar snapshots, not images (with checkpoints). */
	bool tar_snapshots;
	/* What the pids limits of running sandboxes may add up to, and what
	 * they add up to now (pids_lock). */
	int64_t pids_budget;
	int64_t pids_held;
	pthread_mutex_t pids_lock;
	/* Sessions' outbound network (sandbox/egress.c). */
	struct ns_egress egress;
	/* The process that clones sandboxes (sandbox/spawn.c), over its
	 * socket (spawner_lock: one start at a time); -1 when none runs. */
	int spawner_fd;
	pid_t spawner_pid;
	pthread_mutex_t spawner_lock;
};

struct ns_sbx {
	struct sbx base;
	struct ns_backend *b;
	int slot;
	struct ns_paths paths;
	pid_t pid; /* bunker-init, as the host sees it */
	int pidfd;
	struct agent_conn *conn;
	int pids;		  /* its share of the backend's pids_held */
	struct sbx_limits limits; /* what its cgroups hold */
	struct ns_net *net;	  /* its outbound network, NULL: loopback only */
	/* What its networks taken away carried (egress->lock). */
	int64_t net_tx_gone, net_rx_gone;
};

static inline struct ns_sbx *ns_sbx_of(struct sbx *s)
{
	return (struct ns_sbx *)s;
}

/* ---- paths and mounts (sandbox/mount.c) ---- */

void ns__paths_init(struct ns_paths *p, const struct ns_backend *b, const char *id);
bool ns__is_mountpoint(const char *path);
/* Mounts the overlay root of a session whose disk is ready. */
int ns__rootfs_mount(const struct ns_backend *b, const struct ns_paths *p, struct bk_err *err);
void ns__rootfs_umount(const struct ns_paths *p);
/* In the child, whose working directory is the new root: /proc, /dev, /sys
 * and pivot_root into it. On failure returns -1 with errno set and *stage
 * naming the step. */
int ns__rootfs_setup_child(const char **stage);

/* ---- disks (sandbox/disk.c) ---- */

/* The slot whose ids own the disk of p, or -1 when it has none. */
int ns__disk_slot(const struct ns_paths *p);
/* Makes the disk of p ready for a sandbox: keeps one that is there (at the
 * size asked, or larger if it holds more), else takes a slot and mounts a
 * new one. *slot receives the disk's slot. */
int ns__disk_prepare(struct ns_backend *b, const struct ns_paths *p, int disk_mb, int *slot,
		     struct bk_err *err);
/* Sets the disk's size; files already there stay. */
int ns__disk_resize(const struct ns_paths *p, int disk_mb, struct bk_err *err);
/* Unmounts the disk, removes the session's directories and frees its
 * slot: the files are gone unless saved. */
int ns__disk_destroy(struct ns_backend *b, const struct ns_paths *p, struct bk_err *err);
/* The snapshot of session id. */
void ns__snapshot_path(const struct ns_backend *b, const char *id, char *out, size_t len);
/* The image snapshot of session id (sandbox/layer.c). */
void ns__image_path(const struct ns_backend *b, const char *id, char *out, size_t len);
/* Regular files under the workspace of p's disk. */
int64_t ns__disk_files(const struct ns_paths *p);
/* The files_* operations of struct sbx_ops. */
struct sbx_files_state ns__files_state(struct sbx_backend *b, const char *id);
int ns__files_save(struct sbx_backend *b, const char *id, struct sbx_save_stats *stats,
		   struct bk_err *err);
int ns__files_restore(struct sbx_backend *b, const char *id, int disk_mb, struct bk_err *err);
int ns__drop_disk(struct sbx_backend *b, const char *id, struct bk_err *err);
void ns__drop_snapshot(struct sbx_backend *b, const char *id);
#define NS_CHECKPOINT_SUFFIX ".ckpt.tar.zst"
int ns__files_checkpoint(struct sbx_backend *b, const char *id, struct sbx_save_stats *stats,
			 struct bk_err *err);
int ns__checkpoint_move(struct sbx_backend *b, const char *id, bool to_snapshot,
			struct bk_err *err);
void ns__drop_checkpoint(struct sbx_backend *b, const char *id);
int64_t ns__snapshot_files(struct sbx_backend *b, const char *id);

/* ---- layers: images at rest, mounted awake (sandbox/layer.c) ---- */

#define NS_IMAGE_SUFFIX ".erofs"
#define NS_LAYER_SUFFIX ".layer.erofs"
#define NS_STAGE_SUFFIX ".stage"
/* What the files of an image take on a disk, in bytes, on the image file. */
#define NS_BYTES_XATTR "user.bunker.bytes"

/* The record of p's image: 1 with its file name (in the snapshot
 * directory) and the bytes its files take, 0 when the disk has none. */
int ns__layer_read(const struct ns_paths *p, char *name, size_t len, int64_t *bytes);
/* Mounts the recorded image at p->lower if it is not (a restarted daemon
 * whose mounts went). */
int ns__layer_ensure(const struct ns_backend *b, const struct ns_paths *p, int slot,
		     struct bk_err *err);
/* On a new disk of p: records a layer image for the snapshot image snap
 * (of bytes), links it and mounts it at p->lower for slot. */
int ns__layer_wake(const struct ns_backend *b, const struct ns_paths *p, const char *snap,
		   int64_t bytes, int slot, struct bk_err *err);
/* Unmounts p's image and removes its file. */
void ns__layer_drop(const struct ns_backend *b, const struct ns_paths *p);
/* Regular files under the image's workspace that p's upper does not hide,
 * counted up to limit. */
int64_t ns__layer_files(const struct ns_paths *p, int64_t limit);
/* Builds the image of p's files (upper, over its image if it has one)
 * at the path image, atomically, taking at most room bytes of the
 * snapshot storage meanwhile (BK_E_NO_SPACE). *entries: what it holds
 * (0 when the image stayed the one the disk woke from); *bytes_in: what
 * its files take on a disk; *bytes_out: the image's size. */
int ns__layer_build(const struct ns_backend *b, const struct ns_paths *p, int slot,
		    const char *image, int64_t room, int64_t *entries, int64_t *bytes_in,
		    int64_t *bytes_out, struct bk_err *err);
/* Stages the merge of p's image and upper in a new directory of the
 * snapshot directory (its path into stage) of at most max bytes, owners
 * as the session sees them. */
int ns__layer_stage(const struct ns_backend *b, const struct ns_paths *p, int slot, int64_t max,
		    char *stage, size_t len, struct bk_err *err);

/* ---- the daemon's mount namespace (sandbox/mntns.c) ---- */

/* Unpins the namespace sbx_mount_ns_enter() entered (its bind on
 * /run/bunker/<instance>/mnt and that directory go) so that it ends with
 * the process; nothing when none was entered. For a clean stop that
 * leaves no disk. */
void ns__mntns_release(void);

/* ---- starting a sandbox (sandbox/spawn.c) ---- */

/* Starts bunker-init as PID 1 of s's new namespaces, on s's mounted root,
 * in cgroups with limits: s->pid, s->pidfd and s->conn are set on success;
 * on failure nothing of the start is left running. */
int ns__spawn(struct ns_sbx *s, const struct sbx_limits *limits, struct bk_err *err);
/* SIGKILLs PID 1 and reaps it, once every process of its namespace is gone. */
void ns__kill_and_reap(struct ns_sbx *s);
/* Starts the process that clones sandboxes for b, a fork of the daemon
 * taken before any session, in a mount namespace of its own without b's
 * run directory; ns__spawner_close() ends it (nothing when none runs). */
int ns__spawner_open(struct ns_backend *b, struct bk_err *err);
void ns__spawner_close(struct ns_backend *b);

/* ---- the pieces the child and the parent set up ---- */

/* In the child: brings the loopback interface up (sandbox/net.c). */
int ns__net_setup_child(void);
int ns__dial(struct sbx *s, int port, int timeout_ms, struct bk_err *err);
/* Writes uid_map and gid_map of pid for slot (sandbox/userns.c). */
int ns__userns_setup_parent(pid_t pid, int slot, struct bk_err *err);
/* Builds the default image under data_dir when it is missing or stale
 * (sandbox/image.c). */
int ns__image_ensure(const char *data_dir, const char *bun_path, char *image_dir, size_t len,
		     struct bk_err *err);
/* Where the image keeps Bun, and the environment every execution starts
 * from (sandbox/image.c). */
extern const char ns__image_bun[];
extern const char *const ns__image_env[];
/* Where the image keeps the interpreters' drivers. */
#define NS_IMAGE_DRIVERS "/opt/bunker/drivers"

/* A driver of a persistent interpreter (src/init/drivers/), built into
 * the daemon (scripts/embed-drivers.sh) and written into the image. */
struct ns_driver {
	const char *name; /* its file name in NS_IMAGE_DRIVERS */
	const unsigned char *data;
	size_t len;
};
extern const struct ns_driver ns__drivers[];
extern const size_t ns__drivers_count;
