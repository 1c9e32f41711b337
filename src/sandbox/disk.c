/* A session's disk, and its files while it sleeps.
 *
 * The disk is a tmpfs of exactly the session's disk limit under
 * <run>/<id>/disk, so the limit is enforced by the file system itself
 * (ENOSPC) and the session's files never touch the slow root file system.
 * It holds the overlay's upper and work directories. Its files are owned by
 * the ids of the session's slot (sandbox/slots.h), which the disk holds
 * until it is released: the owner of its upper directory is the slot's
 * root id.
 *
 * Saved, the upper directory is a snapshot that records owners as the
 * session sees them (0..65535), so that it can wake on whichever slot is
 * free, or on another node: an EROFS image at <snapshot dir>/<id>.erofs
 * that the wake mounts under a new upper (sandbox/layer.c), or a tar at
 * <id>.tar.zst that the wake unpacks (snapshot/; a tree an image cannot
 * hold, and every snapshot of a daemon with checkpoints). Its count of
 * workspace files rides on it as an extended attribute. A disk woken on an
 * image gets its limit less what the image's files take.
 *
 * Snapshot storage is held to two numbers: what all snapshots together may
 * take (the cap), and what a save leaves free on their file system. A save
 * gets the smaller of the two rooms left, is refused when there is none,
 * and is abandoned the moment its snapshot would outgrow it, so that the
 * storage never fills (BK_E_NO_SPACE; the session stays awake).
 */
#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "sandbox/ns_int.h"
#include "snapshot/snapshot.h"
#include "util/cleanup.h"

#define FILES_XATTR "user.bunker.files"

void ns__snapshot_path(const struct ns_backend *b, const char *id, char *out, size_t len)
{
	snprintf(out, len, "%s/%s.tar.zst", b->snapshot_dir, id);
}

void ns__image_path(const struct ns_backend *b, const char *id, char *out, size_t len)
{
	snprintf(out, len, "%s/%s" NS_IMAGE_SUFFIX, b->snapshot_dir, id);
}

/* Beside the snapshot, and read by the same code: "<id>.ckpt.tar.zst". */
static void checkpoint_path(const struct ns_backend *b, const char *id, char *out, size_t len)
{
	snprintf(out, len, "%s/%s" NS_CHECKPOINT_SUFFIX, b->snapshot_dir, id);
}

int ns__disk_slot(const struct ns_paths *p)
{
	struct stat st;
	if (!ns__is_mountpoint(p->disk) || stat(p->upper, &st) < 0 || st.st_uid != st.st_gid)
		return -1;
	return sbx__slot_of_base((unsigned)st.st_uid);
}

/* A disk of bytes with one inode per 4 KiB of it. */
static void disk_opts(int64_t bytes, char *out, size_t len)
{
	snprintf(out, len, "size=%lld,mode=0700,nr_inodes=%lld", (long long)bytes,
		 bytes / 4096 > 4096 ? (long long)(bytes / 4096) : 4096LL);
}

/* What the upper of a disk of disk_mb gets over an image whose files take
 * lower bytes: the rest, so that the session holds at most its limit, and
 * never less than a megabyte (a limit lowered below what the image
 * holds). */
static int64_t upper_bytes(int disk_mb, int64_t lower)
{
	int64_t bytes = ((int64_t)disk_mb << 20) - lower;
	return bytes > (1 << 20) ? bytes : 1 << 20;
}

int ns__disk_resize(const struct ns_paths *p, int disk_mb, struct bk_err *err)
{
	int64_t lower = 0;
	ns__layer_read(p, NULL, 0, &lower);
	char opts[128];
	disk_opts(upper_bytes(disk_mb, lower), opts, sizeof(opts));
	if (mount(NULL, p->disk, NULL, MS_REMOUNT | MS_NOSUID | MS_NODEV, opts) < 0)
		return bk_err_set(err, errno, "cannot resize session disk '%s'", p->disk);
	return 0;
}

static int mkdir_owned(const char *path, mode_t mode, uid_t uid, gid_t gid, struct bk_err *err)
{
	if (mkdir(path, mode) < 0 && errno != EEXIST)
		return bk_err_set(err, errno, "cannot create '%s'", path);
	if (chown(path, uid, gid) < 0 || chmod(path, mode) < 0)
		return bk_err_set(err, errno, "cannot set owner of '%s'", path);
	return 0;
}

/* Mounts an empty disk with an upper directory owned by slot's root and
 * the overlay's work directory. */
static int disk_mount(const struct ns_paths *p, int64_t bytes, int slot, struct bk_err *err)
{
	if (mkdir_p(p->disk, 0700, err) < 0 || mkdir_p(p->root, 0755, err) < 0)
		return -1;
	char opts[128];
	disk_opts(bytes, opts, sizeof(opts));
	if (mount("bunker-disk", p->disk, "tmpfs", MS_NOSUID | MS_NODEV, opts) < 0)
		return bk_err_set(err, errno, "cannot mount session disk on '%s'", p->disk);
	unsigned base = sbx__slot_base(slot);
	if (mkdir_owned(p->upper, 0755, base, base, err) < 0 ||
	    (mkdir(p->work, 0700) < 0 && errno != EEXIST)) {
		if (!bk_err_is_set(err))
			bk_err_set(err, errno, "cannot create '%s'", p->work);
		umount2(p->disk, MNT_DETACH);
		return -1;
	}
	return 0;
}

/* Creates what a session's layer needs and lacks: /workspace, /tmp and the
 * user's home, owned by the session's ids. What exists (a restored or kept
 * layer) is left as it is. */
static int layer_ensure(const struct ns_paths *p, int slot, struct bk_err *err)
{
	static const struct {
		const char *path;
		mode_t mode;
		bool user;
	} dirs[] = {
	    {SBX_WORKSPACE, 0755, true},
	    {"/tmp", 01777, false},
	    {"/home", 0755, false},
	    {"/home/user", 0755, true},
	};
	uid_t root = sbx__slot_base(slot);
	for (size_t i = 0; i < ARRAY_SIZE(dirs); i++) {
		char path[700], below[700];
		snprintf(path, sizeof(path), "%s%s", p->upper, dirs[i].path);
		snprintf(below, sizeof(below), "%s%s", p->lower, dirs[i].path);
		if (access(path, F_OK) == 0 || access(below, F_OK) == 0)
			continue;
		uid_t uid = dirs[i].user ? root + SBX_USER_UID : root;
		gid_t gid = dirs[i].user ? root + SBX_USER_GID : root;
		if (mkdir_owned(path, dirs[i].mode, uid, gid, err) < 0)
			return -1;
	}
	if (mkdir(p->work, 0700) < 0 && errno != EEXIST)
		return bk_err_set(err, errno, "cannot create '%s'", p->work);
	return 0;
}

int ns__disk_prepare(struct ns_backend *b, const struct ns_paths *p, int disk_mb, int *slot,
		     struct bk_err *err)
{
	if (mkdir_p(p->root, 0755, err) < 0)
		return -1;
	if (ns__is_mountpoint(p->disk)) {
		/* A disk kept from an earlier sandbox or daemon run, or restored
		 * from a snapshot, is used as it is, at the size the session has
		 * now; holding more than that (from before a limit changed), it
		 * stays as large as it is rather than lock the session out of
		 * its files. */
		*slot = ns__disk_slot(p);
		if (*slot < 0)
			return bk_err_kind(err, BK_E_INTERNAL,
					   "the disk at '%s' belongs to no id range of ours",
					   p->disk);
		ns__disk_resize(p, disk_mb, NULL);
		if (ns__layer_ensure(b, p, *slot, err) < 0)
			return -1;
		return layer_ensure(p, *slot, err);
	}
	*slot = sbx__slots_take(&b->slots);
	if (*slot < 0)
		return bk_err_kind(err, BK_E_UNAVAILABLE,
				   "every host id range is taken: too many sessions awake");
	if (disk_mount(p, (int64_t)disk_mb << 20, *slot, err) < 0) {
		sbx__slots_release(&b->slots, *slot);
		return -1;
	}
	/* Mounted, the disk holds the slot: destroying it frees it. */
	if (layer_ensure(p, *slot, err) < 0) {
		ns__disk_destroy(b, p, NULL);
		return -1;
	}
	return 0;
}

int ns__disk_destroy(struct ns_backend *b, const struct ns_paths *p, struct bk_err *err)
{
	int slot = ns__disk_slot(p);
	ns__rootfs_umount(p);
	/* An image's bind for a save that did not finish. */
	char fold[700];
	snprintf(fold, sizeof(fold), "%s/fold", p->dir);
	if (ns__is_mountpoint(fold))
		umount2(fold, MNT_DETACH);
	/* Its image goes with it: a snapshot is a file of its own. */
	ns__layer_drop(b, p);
	if (ns__is_mountpoint(p->disk) && umount2(p->disk, MNT_DETACH) < 0)
		return bk_err_set(err, errno, "cannot unmount '%s'", p->disk);
	/* The slot is free once nothing on the host is owned by its ids. */
	if (slot >= 0)
		sbx__slots_release(&b->slots, slot);
	return rm_rf(p->dir, err);
}

/* nftw() has no context argument: a thread-local counter serves. */
static __thread int64_t files_counted;

static int count_visit(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)path, (void)ftw;
	if (type == FTW_F && S_ISREG(st->st_mode))
		files_counted++;
	return files_counted >= 1000000 ? 1 : 0;
}

int64_t ns__disk_files(const struct ns_paths *p)
{
	char ws[700];
	snprintf(ws, sizeof(ws), "%s" SBX_WORKSPACE, p->upper);
	files_counted = 0;
	/* FTW_PHYS: never follow a link the session planted. */
	nftw(ws, count_visit, 16, FTW_PHYS | FTW_MOUNT);
	/* And the image's below it that it does not hide. */
	if (ns__is_mountpoint(p->lower))
		files_counted += ns__layer_files(p, 1000000 - files_counted);
	return files_counted;
}

/* ---- the files_* operations of struct sbx_ops ---- */

struct sbx_files_state ns__files_state(struct sbx_backend *base, const char *id)
{
	struct ns_backend *b = (struct ns_backend *)base;
	struct ns_paths p;
	ns__paths_init(&p, b, id);
	char snap[700], image[700];
	ns__snapshot_path(b, id, snap, sizeof(snap));
	ns__image_path(b, id, image, sizeof(image));
	char ckpt[700];
	checkpoint_path(b, id, ckpt, sizeof(ckpt));
	return (struct sbx_files_state){.disk = ns__is_mountpoint(p.disk),
					.snapshot =
					    access(image, F_OK) == 0 || access(snap, F_OK) == 0,
					.checkpoint = access(ckpt, F_OK) == 0};
}

/* What the snapshots but id's take in the snapshot directory, bytes. */
static int64_t snapshots_size(const struct ns_backend *b, const char *id)
{
	_cleanup_closedir_ DIR *d = opendir(b->snapshot_dir);
	size_t idlen = strlen(id);
	int64_t total = 0;
	struct dirent *de;
	while (d && (de = readdir(d)) != NULL) {
		struct stat st;
		if (de->d_name[0] == '.' ||
		    (strncmp(de->d_name, id, idlen) == 0 && de->d_name[idlen] == '.') ||
		    fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
		    !S_ISREG(st.st_mode))
			continue;
		total += st.st_size;
	}
	return total;
}

/* The bytes a new snapshot of id may take: what the snapshot storage has
 * left under its cap and above the free space it keeps. BK_E_NO_SPACE
 * when nothing is left. */
static int snapshot_room(const struct ns_backend *b, const char *id, int64_t *room,
			 struct bk_err *err)
{
	struct statvfs vfs;
	if (statvfs(b->snapshot_dir, &vfs) < 0)
		return bk_err_set(err, errno, "cannot stat '%s'", b->snapshot_dir);
	/* f_bavail: what is left beyond the file system's own reserve. */
	int64_t free_bytes = (int64_t)vfs.f_bavail * (int64_t)vfs.f_frsize;
	int64_t used = snapshots_size(b, id);
	int64_t by_free = free_bytes - b->snap_min_free, by_cap = b->snap_max - used;
	*room = by_free < by_cap ? by_free : by_cap;
	if (*room <= 0)
		return bk_err_kind(err, BK_E_NO_SPACE,
				   "no room for a snapshot: snapshots take %lld of their %lld MB, "
				   "and '%s' has %lld MB free of the %lld MB it keeps free",
				   (long long)(used >> 20), (long long)(b->snap_max >> 20),
				   b->snapshot_dir, (long long)(free_bytes >> 20),
				   (long long)(b->snap_min_free >> 20));
	return 0;
}

/* Saves id's disk to the file at snap (its snapshot or its checkpoint). */
static int files_save_to(struct sbx_backend *base, const char *id, bool checkpoint,
			 struct sbx_save_stats *stats, struct bk_err *err)
{
	struct ns_backend *b = (struct ns_backend *)base;
	struct ns_paths p;
	ns__paths_init(&p, b, id);
	int slot = ns__disk_slot(&p);
	if (slot < 0)
		return bk_err_kind(err, BK_E_INTERNAL, "session %s has no disk to save", id);
	int64_t room = 0;
	if (snapshot_room(b, id, &room, err) < 0)
		return -1;
	char snap[700], other[700];
	bool image = !checkpoint && !b->tar_snapshots;
	if (checkpoint)
		checkpoint_path(b, id, snap, sizeof(snap));
	else if (image)
		ns__image_path(b, id, snap, sizeof(snap));
	else
		ns__snapshot_path(b, id, snap, sizeof(snap));
	int64_t files = ns__disk_files(&p);
	struct snapshot_stats st = {0};
	int rc = 0;
	if (image) {
		struct bk_err ierr = BK_ERR_INIT;
		rc = ns__layer_build(b, &p, slot, snap, room, &st.files, &st.bytes_in,
				     &st.bytes_out, &ierr);
		if (rc < 0 && ierr.kind == BK_E_NO_SPACE) {
			if (err)
				*err = ierr;
		} else if (rc < 0) {
			/* A tree mkfs.erofs cannot take (a path past PATH_MAX):
			 * a tar holds it, and the wake unpacks it as before. */
			fprintf(stderr,
				"bunkerd: session %s: no image (%s); saving a tar instead\n", id,
				ierr.msg);
			image = false;
			ns__snapshot_path(b, id, snap, sizeof(snap));
		}
	}
	if (!image && ns__is_mountpoint(p.lower)) {
		/* A tar holds one tree: the image and the upper folded, the
		 * staging and the tar sharing the room. */
		char stage[800];
		rc = ns__layer_stage(b, &p, slot, room / 2, stage, sizeof(stage), err);
		if (rc == 0) {
			rc = snapshot_save(stage, snap, 0, room / 2, &st, err);
			rm_rf(stage, NULL);
		}
	} else if (!image) {
		rc = snapshot_save(p.upper, snap, sbx__slot_base(slot), room, &st, err);
	}
	if (rc < 0) {
		if (err && err->kind == BK_E_NO_SPACE)
			bk_err_prefix(err, "no room in the snapshot storage '%s'", b->snapshot_dir);
		return -1;
	}
	/* The snapshot of the other kind is older. */
	if (!checkpoint) {
		if (image)
			ns__snapshot_path(b, id, other, sizeof(other));
		else
			ns__image_path(b, id, other, sizeof(other));
		unlink(other);
	}
	char text[32];
	snprintf(text, sizeof(text), "%lld", (long long)files);
	setxattr(snap, FILES_XATTR, text, strlen(text), 0);
	if (stats)
		*stats = (struct sbx_save_stats){st.files, st.bytes_in, st.bytes_out, st.skipped};
	return 0;
}

int ns__files_save(struct sbx_backend *base, const char *id, struct sbx_save_stats *stats,
		   struct bk_err *err)
{
	return files_save_to(base, id, false, stats, err);
}

int ns__files_checkpoint(struct sbx_backend *base, const char *id, struct sbx_save_stats *stats,
			 struct bk_err *err)
{
	return files_save_to(base, id, true, stats, err);
}

int ns__checkpoint_move(struct sbx_backend *base, const char *id, bool to_snapshot,
			struct bk_err *err)
{
	const struct ns_backend *b = (struct ns_backend *)base;
	char snap[700], ckpt[700];
	ns__snapshot_path(b, id, snap, sizeof(snap));
	checkpoint_path(b, id, ckpt, sizeof(ckpt));
	const char *from = to_snapshot ? ckpt : snap, *to = to_snapshot ? snap : ckpt;
	if (!to_snapshot) {
		/* Woken from an image: the image is its layer now (linked), and
		 * a snapshot left beside an awake session would wake it
		 * elsewhere as it was. */
		char image[700];
		ns__image_path(b, id, image, sizeof(image));
		unlink(image);
	}
	if (rename(from, to) == 0)
		return 1;
	if (errno == ENOENT)
		return 0;
	return bk_err_set(err, errno, "cannot rename '%s' to '%s'", from, to);
}

void ns__drop_checkpoint(struct sbx_backend *base, const char *id)
{
	char ckpt[700];
	checkpoint_path((struct ns_backend *)base, id, ckpt, sizeof(ckpt));
	unlink(ckpt);
}

int ns__files_restore(struct sbx_backend *base, const char *id, int disk_mb, struct bk_err *err)
{
	struct ns_backend *b = (struct ns_backend *)base;
	struct ns_paths p;
	ns__paths_init(&p, b, id);
	if (ns__is_mountpoint(p.disk) && ns__disk_destroy(b, &p, err) < 0)
		return -1;
	char snap[700], image[700];
	ns__snapshot_path(b, id, snap, sizeof(snap));
	ns__image_path(b, id, image, sizeof(image));
	bool layered = access(image, F_OK) == 0;
	if (!layered && access(snap, F_OK) < 0)
		return 0; /* slept with nothing to save: a fresh disk comes */
	/* What the image's files take is the upper's less. */
	int64_t lower = 0;
	char text[32];
	ssize_t n = layered ? getxattr(image, NS_BYTES_XATTR, text, sizeof(text) - 1) : -1;
	if (n > 0) {
		text[n] = '\0';
		lower = strtoll(text, NULL, 10);
	}
	int slot = sbx__slots_take(&b->slots);
	if (slot < 0)
		return bk_err_kind(err, BK_E_UNAVAILABLE,
				   "every host id range is taken: too many sessions awake");
	if (disk_mount(&p, upper_bytes(disk_mb, lower), slot, err) < 0) {
		sbx__slots_release(&b->slots, slot);
		return -1;
	}
	if (layered ? ns__layer_wake(b, &p, image, lower, slot, err) < 0
		    : snapshot_restore(snap, p.upper, sbx__slot_base(slot), err) < 0) {
		ns__disk_destroy(b, &p, NULL);
		return -1;
	}
	return 0;
}

int ns__drop_disk(struct sbx_backend *base, const char *id, struct bk_err *err)
{
	struct ns_backend *b = (struct ns_backend *)base;
	struct ns_paths p;
	ns__paths_init(&p, b, id);
	return ns__disk_destroy(b, &p, err);
}

void ns__drop_snapshot(struct sbx_backend *base, const char *id)
{
	char snap[700];
	ns__snapshot_path((struct ns_backend *)base, id, snap, sizeof(snap));
	unlink(snap);
	ns__image_path((struct ns_backend *)base, id, snap, sizeof(snap));
	unlink(snap);
}

int64_t ns__snapshot_files(struct sbx_backend *base, const char *id)
{
	char snap[700], text[32];
	ns__image_path((struct ns_backend *)base, id, snap, sizeof(snap));
	if (access(snap, F_OK) < 0)
		ns__snapshot_path((struct ns_backend *)base, id, snap, sizeof(snap));
	ssize_t n = getxattr(snap, FILES_XATTR, text, sizeof(text) - 1);
	if (n <= 0)
		return 0;
	text[n] = '\0';
	return strtoll(text, NULL, 10);
}
