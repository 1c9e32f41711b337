/* snapshot/: what goes in comes back, overlay's markers included. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

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
	CHECK_MSG(snapshot_save(src, snap, 1000000000u, &st, &err) == 0, "%s", err.msg);
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
	CHECK(snapshot_save("/nonexistent/bunker", snap, 1000000000u, NULL, &err) < 0);
	CHECK(access(snap, F_OK) < 0);
	char tmp[320];
	snprintf(tmp, sizeof(tmp), "%s.tmp", snap);
	CHECK(access(tmp, F_OK) < 0);
	FILE *f = fopen(snap, "w");
	fputs("not a snapshot", f);
	fclose(f);
	CHECK(snapshot_restore(snap, dst, 1000000000u, &err) < 0);
}
