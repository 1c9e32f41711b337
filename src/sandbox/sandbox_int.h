/* What the sandbox modules share among themselves; core/ never includes it. */
#pragma once

#include "agent/client.h"
#include "agent/proto.h"
#include "sandbox/sandbox.h"

struct sbx_paths {
	char dir[512];	/* <run>/<id> */
	char disk[560]; /* tmpfs: the session's writable layer */
	char upper[580];
	char work[580];
	char root[560]; /* the overlay, pivoted into */
};

struct sbx {
	const struct sbx_config *cfg;
	char id[32];
	int slot;
	struct sbx_paths paths;
	pid_t pid; /* bunker-init, as the host sees it */
	int pidfd;
	struct agent_conn *conn;
};

void sbx_paths_init(struct sbx_paths *p, const struct sbx_config *cfg, const char *id);
bool sbx_is_mountpoint(const char *path);
int sbx_disk_prepare(const struct sbx_paths *p, int slot, int disk_mb, struct bk_err *err);
int sbx_disk_destroy(const struct sbx_paths *p, struct bk_err *err);
/* Sets the disk's size; files already there stay. */
int sbx_disk_resize(const struct sbx_paths *p, int disk_mb, struct bk_err *err);
int sbx_rootfs_mount(const struct sbx_config *cfg, const struct sbx_paths *p, struct bk_err *err);
void sbx_rootfs_umount(const struct sbx_paths *p);
/* In the child, whose working directory is the new root: /proc, /dev, /sys
 * and pivot_root into it. On failure
 * returns -1 with errno set and *stage naming the step. */
int sbx_rootfs_setup_child(const char **stage);
/* In the child: brings the loopback interface up. */
int sbx_net_setup_child(void);
/* Writes uid_map and gid_map of pid for id range slot. */
int sbx_userns_setup_parent(pid_t pid, int slot, struct bk_err *err);
/* Builds the default image under data_dir when it is missing or stale. */
int sbx_image_ensure(const char *data_dir, const char *bun_path, char *image_dir, size_t len,
		     struct bk_err *err);
