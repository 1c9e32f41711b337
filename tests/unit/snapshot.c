/* snapshot/: what goes in comes back, overlay's markers included; paths
 * far past PATH_MAX; sockets left out; a ceiling on the snapshot's size;
 * restores that stay inside their directory, several at once. */
#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "../client.h"
#include "../harness.h"
#include "snapshot/snapshot.h"
#include "util/util.h"

static char base[] = "/tmp/bunker-snap-XXXXXX";

int harness_setup(void)
{
	return mkdtemp(base) ? 0 : 1;
}

void harness_teardown(void)
{
	/* The deep trees live on tmpfs mounts of their own. */
	client_detach_mounts_under(base);
	rm_rf(base, NULL);
}

static void put(const char *dir, const char *name, const char *text)
{
	char p[512];
	snprintf(p, sizeof(p), "%s/%s", dir, name);
	FILE *f = fopen(p, "w");
	CHECK(f != NULL);
	fputs(text, f);
	fclose(f);
}

TEST(snapshot_roundtrip_keeps_everything)
{
	if (geteuid() != 0)
		SKIP("owners and whiteouts need root");
	char src[300], dst[300], snap[300], p[400], q[400];
	snprintf(src, sizeof(src), "%s/src%d", base, (int)getpid());
	snprintf(dst, sizeof(dst), "%s/dst%d", base, (int)getpid());
	snprintf(snap, sizeof(snap), "%s/s%d.tar.zst", base, (int)getpid());
	CHECK(mkdir(src, 0755) == 0 && mkdir(dst, 0755) == 0);
	snprintf(p, sizeof(p), "%s/workspace", src);
	CHECK(mkdir(p, 0750) == 0);
	CHECK(chown(p, 1000001000, 1000001000) == 0);
	put(p, "a.txt", "hello\n");
	snprintf(p, sizeof(p), "%s/workspace/empty", src);
	CHECK(mkdir(p, 0700) == 0);
	snprintf(p, sizeof(p), "%s/workspace/link", src);
	CHECK(symlink("/etc/passwd", p) == 0);
	snprintf(p, sizeof(p), "%s/workspace/a.txt", src);
	snprintf(q, sizeof(q), "%s/workspace/hard", src);
	CHECK(link(p, q) == 0);
	CHECK(setxattr(p, "user.note", "x1", 2, 0) == 0);
	/* A sparse file: 64 MiB with one byte at the end. */
	snprintf(p, sizeof(p), "%s/workspace/sparse", src);
	int fd = open(p, O_WRONLY | O_CREAT, 0644);
	CHECK(fd >= 0);
	CHECK(pwrite(fd, "mid", 3, 32 << 20) == 3);
	CHECK(pwrite(fd, "z", 1, 64 << 20) == 1);
	close(fd);
	/* overlayfs's own: a whiteout and an opaque directory. */
	snprintf(p, sizeof(p), "%s/gone", src);
	CHECK(mknod(p, S_IFCHR | 0, makedev(0, 0)) == 0);
	snprintf(p, sizeof(p), "%s/opaque", src);
	CHECK(mkdir(p, 0755) == 0);
	CHECK(setxattr(p, "trusted.overlay.opaque", "y", 1, 0) == 0);

	struct snapshot_stats st;
	struct bk_err err = BK_ERR_INIT;
	CHECK_MSG(snapshot_save(src, snap, 1000000000u, 0, &st, &err) == 0, "%s", err.msg);
	CHECK(st.files >= 8);
	CHECK_MSG(st.bytes_out < (1 << 20), "snapshot of a sparse file is %lld bytes",
		  (long long)st.bytes_out);
	CHECK_MSG(snapshot_restore(snap, dst, 1000000000u, &err) == 0, "%s", err.msg);

	struct stat a, b;
	snprintf(p, sizeof(p), "%s/workspace", dst);
	CHECK(stat(p, &a) == 0);
	CHECK_INT_EQ(a.st_uid, 1000001000);
	CHECK_INT_EQ(a.st_mode & 07777, 0750);
	char buf[64] = "";
	snprintf(p, sizeof(p), "%s/workspace/a.txt", dst);
	FILE *f = fopen(p, "r");
	CHECK(f != NULL && fgets(buf, sizeof(buf), f) != NULL);
	fclose(f);
	CHECK_STR_EQ(buf, "hello\n");
	CHECK_INT_EQ(getxattr(p, "user.note", buf, sizeof(buf)), 2);
	snprintf(q, sizeof(q), "%s/workspace/hard", dst);
	CHECK(stat(p, &a) == 0 && stat(q, &b) == 0);
	CHECK(a.st_ino == b.st_ino);
	snprintf(p, sizeof(p), "%s/workspace/empty", dst);
	CHECK(stat(p, &a) == 0 && S_ISDIR(a.st_mode) && (a.st_mode & 07777) == 0700);
	snprintf(p, sizeof(p), "%s/workspace/link", dst);
	ssize_t n = readlink(p, buf, sizeof(buf) - 1);
	CHECK(n > 0);
	buf[n] = '\0';
	CHECK_STR_EQ(buf, "/etc/passwd");
	snprintf(p, sizeof(p), "%s/workspace/sparse", dst);
	CHECK(stat(p, &a) == 0);
	CHECK_INT_EQ(a.st_size, (64 << 20) + 1);
	/* The data between the holes is where it was. */
	fd = open(p, O_RDONLY);
	CHECK(fd >= 0);
	char probe[4] = "";
	CHECK(pread(fd, probe, 3, 32 << 20) == 3);
	CHECK(memcmp(probe, "mid", 3) == 0);
	CHECK(pread(fd, probe, 1, 64 << 20) == 1 && probe[0] == 'z');
	CHECK(pread(fd, probe, 3, 16 << 20) == 3 && probe[0] == 0 && probe[2] == 0);
	close(fd);
	CHECK_MSG(a.st_blocks * 512 < (1 << 20), "sparse file came back with %lld bytes",
		  (long long)a.st_blocks * 512);
	snprintf(p, sizeof(p), "%s/gone", dst);
	CHECK(lstat(p, &a) == 0 && S_ISCHR(a.st_mode) && a.st_rdev == makedev(0, 0));
	snprintf(p, sizeof(p), "%s/opaque", dst);
	CHECK_INT_EQ(getxattr(p, "trusted.overlay.opaque", buf, sizeof(buf)), 1);
}

TEST(snapshot_save_is_atomic_and_restore_refuses_garbage)
{
	char snap[300], dst[300];
	snprintf(snap, sizeof(snap), "%s/missing%d.tar.zst", base, (int)getpid());
	snprintf(dst, sizeof(dst), "%s/d%d", base, (int)getpid());
	CHECK(mkdir(dst, 0755) == 0);
	struct bk_err err = BK_ERR_INIT;
	/* A source that does not exist leaves no file, not half of one. */
	CHECK(snapshot_save("/nonexistent/bunker", snap, 1000000000u, 0, NULL, &err) < 0);
	CHECK(access(snap, F_OK) < 0);
	char tmp[320];
	snprintf(tmp, sizeof(tmp), "%s.tmp", snap);
	CHECK(access(tmp, F_OK) < 0);
	FILE *f = fopen(snap, "w");
	fputs("not a snapshot", f);
	fclose(f);
	CHECK(snapshot_restore(snap, dst, 1000000000u, &err) < 0);
}

/* ---- deep trees ---- */

/* A directory of the test's own: a tmpfs (fast to fill, and removed whole
 * by unmounting it) when root may mount one, else a plain directory. */
static void scratch(const char *name, char *out, size_t len)
{
	snprintf(out, len, "%s/%s%d", base, name, (int)getpid());
	CHECK(mkdir(out, 0755) == 0);
	if (geteuid() == 0)
		CHECK(mount("bk-snap-test", out, "tmpfs", 0, "size=256m") == 0);
}

#define DEEP_LEVELS 455
#define DEEP_NAME "d0123456789" /* 455 of them: 5,460 bytes of path */

/* Goes levels directories down from dirfd (making them), returns the
 * deepest one's descriptor. */
static int chain(int dirfd, int levels, const char *name)
{
	int fd = dup(dirfd);
	for (int i = 0; i < levels; i++) {
		CHECK(mkdirat(fd, name, 0755) == 0 || errno == EEXIST);
		int next = openat(fd, name, O_RDONLY | O_DIRECTORY);
		CHECK(next >= 0);
		close(fd);
		fd = next;
	}
	return fd;
}

static void put_at(int dirfd, const char *name, const char *text)
{
	int fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	CHECK(fd >= 0);
	CHECK(write(fd, text, strlen(text)) == (ssize_t)strlen(text));
	close(fd);
}

static void read_at(int dirfd, const char *name, char *out, size_t len)
{
	int fd = openat(dirfd, name, O_RDONLY);
	CHECK_MSG(fd >= 0, "cannot open '%s' deep down: %s", name, strerror(errno));
	ssize_t n = read(fd, out, len - 1);
	CHECK(n >= 0);
	out[n] = '\0';
	close(fd);
}

/* A deep tree under top: the chain, and at its bottom a file, a private
 * directory with a time of its own, a symlink, a FIFO, an attribute and a
 * hard link to a file at the top. */
static void deep_tree(const char *top)
{
	int t = open(top, O_RDONLY | O_DIRECTORY);
	CHECK(t >= 0);
	CHECK(mkdirat(t, "workspace", 0755) == 0);
	int ws = openat(t, "workspace", O_RDONLY | O_DIRECTORY);
	put_at(ws, "shallow.txt", "shared inode\n");
	int deep = chain(ws, DEEP_LEVELS, DEEP_NAME);
	put_at(deep, "leaf.txt", "at the bottom\n");
	CHECK(fsetxattr(deep, "user.depth", "455", 3, 0) == 0);
	CHECK(mkdirat(deep, "private", 0700) == 0);
	CHECK(symlinkat("leaf.txt", deep, "link") == 0);
	CHECK(mkfifoat(deep, "fifo", 0600) == 0);
	CHECK(linkat(ws, "shallow.txt", deep, "hard", 0) == 0);
	struct timespec ts[2] = {{1000000000, 0}, {1000000000, 0}};
	CHECK(utimensat(deep, "private", ts, 0) == 0);
	close(deep);
	close(ws);
	close(t);
}

/* Every name in the snapshot at path: how many, and whether each is
 * distinct and at most SNAPSHOT_PATH_MAX long, with the deepest one's
 * length in *longest. */
static int archive_names(const char *path, size_t *longest, bool *distinct)
{
	struct archive *a = archive_read_new();
	archive_read_support_filter_zstd(a);
	archive_read_support_format_tar(a);
	CHECK(archive_read_open_filename(a, path, 1 << 16) == ARCHIVE_OK);
	struct archive_entry *e;
	int n = 0;
	char **seen = NULL;
	*longest = 0;
	*distinct = true;
	while (archive_read_next_header(a, &e) == ARCHIVE_OK) {
		const char *name = archive_entry_pathname(e);
		for (int i = 0; i < n; i++)
			*distinct = *distinct && strcmp(seen[i], name) != 0;
		seen = realloc(seen, sizeof(*seen) * (size_t)(n + 1));
		seen[n++] = strdup(name);
		if (strlen(name) > *longest)
			*longest = strlen(name);
	}
	for (int i = 0; i < n; i++)
		free(seen[i]);
	free(seen);
	archive_read_free(a);
	return n;
}

/* What deep_tree() made, found again under top. */
static void deep_tree_check(const char *top)
{
	int t = open(top, O_RDONLY | O_DIRECTORY);
	CHECK(t >= 0);
	int ws = openat(t, "workspace", O_RDONLY | O_DIRECTORY);
	CHECK(ws >= 0);
	int fd = dup(ws);
	for (int i = 0; i < DEEP_LEVELS; i++) {
		int next = openat(fd, DEEP_NAME, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
		CHECK_MSG(next >= 0, "level %d of the chain is missing", i + 1);
		close(fd);
		fd = next;
	}
	char buf[64];
	read_at(fd, "leaf.txt", buf, sizeof(buf));
	CHECK_STR_EQ(buf, "at the bottom\n");
	CHECK_INT_EQ(fgetxattr(fd, "user.depth", buf, sizeof(buf)), 3);
	struct stat st, st2;
	CHECK(fstatat(fd, "private", &st, AT_SYMLINK_NOFOLLOW) == 0);
	CHECK(S_ISDIR(st.st_mode) && (st.st_mode & 07777) == 0700);
	CHECK_INT_EQ(st.st_mtim.tv_sec, 1000000000);
	ssize_t n = readlinkat(fd, "link", buf, sizeof(buf) - 1);
	CHECK(n == 8 && memcmp(buf, "leaf.txt", 8) == 0);
	CHECK(fstatat(fd, "fifo", &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISFIFO(st.st_mode));
	CHECK(fstatat(fd, "hard", &st, 0) == 0 && fstatat(ws, "shallow.txt", &st2, 0) == 0);
	CHECK_MSG(st.st_ino == st2.st_ino, "the deep hard link is not the top file's inode");
	/* Nothing else at the bottom: no junk entry from a cut name. */
	DIR *d = fdopendir(fd);
	int names = 0;
	struct dirent *de;
	while ((de = readdir(d)) != NULL)
		names += de->d_name[0] != '.';
	closedir(d);
	CHECK_INT_EQ(names, 5);
	close(ws);
	close(t);
}

TEST(snapshot_keeps_paths_far_past_path_max)
{
	if (geteuid() != 0)
		SKIP("owners need root");
	char src[300], dst[300], snap[400];
	scratch("deep-src", src, sizeof(src));
	scratch("deep-dst", dst, sizeof(dst));
	snprintf(snap, sizeof(snap), "%s/deep%d.tar.zst", base, (int)getpid());
	deep_tree(src);
	struct snapshot_stats st;
	struct bk_err err = BK_ERR_INIT;
	CHECK_MSG(snapshot_save(src, snap, 0, 0, &st, &err) == 0, "%s", err.msg);
	size_t longest;
	bool distinct;
	/* ".", workspace, shallow.txt, the chain, and 5 at the bottom. */
	int n = archive_names(snap, &longest, &distinct);
	CHECK_MSG(n == 3 + DEEP_LEVELS + 5, "%d entries", n);
	CHECK(distinct);
	CHECK_MSG(longest > 5460, "the deepest name is %zu bytes", longest);
	CHECK_MSG(snapshot_restore(snap, dst, 0, &err) == 0, "%s", err.msg);
	deep_tree_check(dst);
}

TEST(snapshot_refuses_a_path_it_could_not_restore)
{
	if (geteuid() != 0)
		SKIP("needs root to mount a tmpfs");
	char src[300], snap[400], tmp[420];
	scratch("too-deep", src, sizeof(src));
	snprintf(snap, sizeof(snap), "%s/../too-deep.tar.zst", src);
	char name[256];
	memset(name, 'n', 250);
	name[250] = '\0';
	int t = open(src, O_RDONLY | O_DIRECTORY);
	close(chain(t, (int)(SNAPSHOT_PATH_MAX / 251) + 2, name));
	close(t);
	struct bk_err err = BK_ERR_INIT;
	CHECK(snapshot_save(src, snap, 0, 0, NULL, &err) < 0);
	CHECK_INT_EQ(err.kind, BK_E_TOO_LARGE);
	snprintf(tmp, sizeof(tmp), "%s.tmp", snap);
	CHECK(access(snap, F_OK) < 0 && access(tmp, F_OK) < 0);
}

TEST(snapshot_leaves_sockets_out_and_counts_them)
{
	char src[300], dst[300], snap[400], p[400];
	snprintf(src, sizeof(src), "%s/sock-src%d", base, (int)getpid());
	snprintf(dst, sizeof(dst), "%s/sock-dst%d", base, (int)getpid());
	snprintf(snap, sizeof(snap), "%s/sock%d.tar.zst", base, (int)getpid());
	CHECK(mkdir(src, 0755) == 0 && mkdir(dst, 0755) == 0);
	put(src, "kept.txt", "kept\n");
	/* A server's socket file, left after the server is gone. */
	int s = socket(AF_UNIX, SOCK_STREAM, 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/app.sock", src);
	CHECK(bind(s, (struct sockaddr *)&sa, sizeof(sa)) == 0);
	close(s);
	struct snapshot_stats st;
	struct bk_err err = BK_ERR_INIT;
	CHECK_MSG(snapshot_save(src, snap, 0, 0, &st, &err) == 0, "%s", err.msg);
	CHECK_INT_EQ(st.skipped, 1);
	CHECK_MSG(snapshot_restore(snap, dst, 0, &err) == 0, "%s", err.msg);
	snprintf(p, sizeof(p), "%s/kept.txt", dst);
	CHECK(access(p, F_OK) == 0);
	snprintf(p, sizeof(p), "%s/app.sock", dst);
	CHECK(access(p, F_OK) < 0);
}

TEST(snapshot_stops_at_its_ceiling)
{
	char src[300], snap[400], tmp[420], p[400];
	snprintf(src, sizeof(src), "%s/ceil%d", base, (int)getpid());
	snprintf(snap, sizeof(snap), "%s/ceil%d.tar.zst", base, (int)getpid());
	CHECK(mkdir(src, 0755) == 0);
	/* 2 MB that zstd cannot shrink. */
	snprintf(p, sizeof(p), "%s/random.bin", src);
	int in = open("/dev/urandom", O_RDONLY), out = open(p, O_WRONLY | O_CREAT, 0644);
	char buf[65536];
	for (int i = 0; i < 32; i++)
		CHECK(read(in, buf, sizeof(buf)) == sizeof(buf) &&
		      write(out, buf, sizeof(buf)) == sizeof(buf));
	close(in);
	close(out);
	struct bk_err err = BK_ERR_INIT;
	CHECK(snapshot_save(src, snap, 0, 1 << 20, NULL, &err) < 0);
	CHECK_INT_EQ(err.kind, BK_E_NO_SPACE);
	snprintf(tmp, sizeof(tmp), "%s.tmp", snap);
	CHECK(access(snap, F_OK) < 0 && access(tmp, F_OK) < 0);
	struct snapshot_stats st;
	bk_err_clear(&err);
	CHECK_MSG(snapshot_save(src, snap, 0, 4 << 20, &st, &err) == 0, "%s", err.msg);
	CHECK(st.bytes_out > (2 << 20) && st.bytes_out <= (4 << 20));
}

/* A snapshot written by hand: a symlink out, then a file through it. */
static void evil_snapshot(const char *path, const char *outside, const char *second)
{
	struct archive *a = archive_write_new();
	archive_write_add_filter_zstd(a);
	archive_write_set_format_pax_restricted(a);
	CHECK(archive_write_open_filename(a, path) == ARCHIVE_OK);
	struct archive_entry *e = archive_entry_new();
	archive_entry_set_pathname(e, "./esc");
	archive_entry_set_filetype(e, AE_IFLNK);
	archive_entry_set_perm(e, 0777);
	archive_entry_set_symlink(e, outside);
	CHECK(archive_write_header(a, e) == ARCHIVE_OK);
	archive_entry_clear(e);
	archive_entry_set_pathname(e, second);
	archive_entry_set_filetype(e, AE_IFREG);
	archive_entry_set_perm(e, 0644);
	archive_entry_set_size(e, 3);
	CHECK(archive_write_header(a, e) == ARCHIVE_OK);
	CHECK(archive_write_data(a, "bad", 3) == 3);
	archive_entry_free(e);
	archive_write_close(a);
	archive_write_free(a);
}

TEST(snapshot_restore_stays_inside)
{
	char outside[300], dst[300], snap[400], p[400];
	snprintf(outside, sizeof(outside), "%s/outside%d", base, (int)getpid());
	CHECK(mkdir(outside, 0755) == 0);
	const char *names[] = {"./esc/planted", "../planted", "/planted", "./a/../../planted"};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		snprintf(dst, sizeof(dst), "%s/in%d-%zu/d", base, (int)getpid(), i);
		struct bk_err err = BK_ERR_INIT;
		CHECK(mkdir_p(dst, 0755, &err) == 0);
		snprintf(snap, sizeof(snap), "%s/evil%d-%zu.tar.zst", base, (int)getpid(), i);
		evil_snapshot(snap, outside, names[i]);
		/* Refused, or (a symlink replaced by a directory) kept inside. */
		snapshot_restore(snap, dst, 0, &err);
		snprintf(p, sizeof(p), "%s/planted", outside);
		CHECK_MSG(access(p, F_OK) < 0, "'%s' landed outside", names[i]);
		snprintf(p, sizeof(p), "%s/../planted", dst);
		CHECK_MSG(access(p, F_OK) < 0, "'%s' landed beside the destination", names[i]);
	}
}

struct parallel {
	const char *snap;
	char dst[300];
	int rc;
	char msg[512];
};

static void *restore_one(void *arg)
{
	struct parallel *p = arg;
	struct bk_err err = BK_ERR_INIT;
	p->rc = snapshot_restore(p->snap, p->dst, 0, &err);
	snprintf(p->msg, sizeof(p->msg), "%s", err.msg);
	return NULL;
}

TEST(snapshot_restores_deep_trees_in_parallel)
{
	if (geteuid() != 0)
		SKIP("owners need root");
	char src[300], snap[400], cwd[512], cwd_after[512];
	scratch("par-src", src, sizeof(src));
	deep_tree(src);
	snprintf(snap, sizeof(snap), "%s/../par%d.tar.zst", src, (int)getpid());
	struct bk_err err = BK_ERR_INIT;
	CHECK_MSG(snapshot_save(src, snap, 0, 0, NULL, &err) == 0, "%s", err.msg);
	CHECK(getcwd(cwd, sizeof(cwd)) != NULL);
	struct parallel jobs[4];
	pthread_t th[4];
	for (int i = 0; i < 4; i++) {
		jobs[i] = (struct parallel){.snap = snap};
		char name[32];
		snprintf(name, sizeof(name), "par-dst%d-", i);
		scratch(name, jobs[i].dst, sizeof(jobs[i].dst));
		CHECK(pthread_create(&th[i], NULL, restore_one, &jobs[i]) == 0);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		CHECK_MSG(jobs[i].rc == 0, "restore %d: %s", i, jobs[i].msg);
		deep_tree_check(jobs[i].dst);
	}
	/* No restore moved the process's working directory. */
	CHECK(getcwd(cwd_after, sizeof(cwd_after)) != NULL);
	CHECK_STR_EQ(cwd_after, cwd);
}
