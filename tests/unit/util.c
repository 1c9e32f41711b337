/* util/: buffers, random ids, time formatting, file helpers, errors. */
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../harness.h"
#include "util/util.h"

TEST(buf_caps_and_marks_truncation)
{
	struct buf b;
	buf_init(&b, 10);
	CHECK(buf_append(&b, "hello", 5) == 0);
	CHECK(!b.truncated);
	CHECK(buf_append(&b, "world!!", 7) == 0);
	CHECK(b.truncated);
	CHECK_INT_EQ(b.len, 10);
	CHECK_STR_EQ(b.data, "helloworld");
	char *s = buf_take(&b);
	CHECK_STR_EQ(s, "helloworld");
	free(s);
	s = buf_take(&b);
	CHECK_STR_EQ(s, "");
	free(s);
}

/* What buf_cap_after() says a buffer will hold is what it then holds,
 * past its max too. */
TEST(buf_cap_after_is_what_append_allocates)
{
	struct buf b;
	buf_init(&b, 5000);
	static const size_t pieces[] = {0, 1, 254, 1, 300, 1000, 3000, 2000};
	static char data[4096];
	for (size_t i = 0; i < sizeof(pieces) / sizeof(pieces[0]); i++) {
		size_t want = buf_cap_after(&b, pieces[i]);
		CHECK(buf_append(&b, data, pieces[i]) == 0);
		CHECK_INT_EQ(b.cap, want);
	}
	CHECK(b.truncated);
	CHECK_INT_EQ(b.cap, 8192);
	buf_free(&b);
}

TEST(random_alnum_alphabet_and_uniqueness)
{
	char a[21], b[21];
	struct bk_err err = BK_ERR_INIT;
	CHECK(random_alnum(a, 20, &err) == 0);
	CHECK(random_alnum(b, 20, &err) == 0);
	CHECK_INT_EQ(strlen(a), 20);
	CHECK(strspn(a, "abcdefghijklmnopqrstuvwxyz0123456789") == 20);
	CHECK(strcmp(a, b) != 0);
}

TEST(port_parse_has_one_spelling_per_port)
{
	static const struct {
		const char *in;
		int port; /* 0: refused */
		const char *rest;
	} cases[] = {
	    {"1", 1, ""},	    {"8080.localhost", 8080, ".localhost"},
	    {"65535/", 65535, "/"}, {"65536", 0, NULL},
	    {"0", 0, NULL},	    {"08080", 0, NULL},
	    {"", 0, NULL},	    {"-1", 0, NULL},
	    {"123456", 0, NULL},    {"+80", 0, NULL},
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		const char *s = cases[i].in;
		int port = -1;
		bool ok = port_parse(&s, &port);
		CHECK_MSG(ok == (cases[i].port != 0), "'%s'", cases[i].in);
		if (ok) {
			CHECK_INT_EQ(port, cases[i].port);
			CHECK_STR_EQ(s, cases[i].rest);
		} else {
			CHECK(s == cases[i].in);
		}
	}
}

TEST(iso8601_utc_with_z)
{
	char buf[40];
	iso8601_ms(0, buf, sizeof(buf));
	CHECK_STR_EQ(buf, "1970-01-01T00:00:00.000Z");
	iso8601_ms(1705660200123LL, buf, sizeof(buf));
	CHECK_STR_EQ(buf, "2024-01-19T10:30:00.123Z");
}

TEST(err_prefix_and_kinds)
{
	struct bk_err err = BK_ERR_INIT;
	CHECK_INT_EQ(bk_err_set(&err, ENOENT, "cannot open '%s'", "x"), -1);
	CHECK_INT_EQ(err.kind, BK_E_INTERNAL);
	CHECK_STR_EQ(err.msg, "cannot open 'x': No such file or directory");
	bk_err_prefix(&err, "session %s", "s1");
	CHECK_STR_EQ(err.msg, "session s1: cannot open 'x': No such file or directory");
	CHECK_INT_EQ(bk_err_field(&err, "ttl", "ttl must be %d", 5), -1);
	CHECK_INT_EQ(err.kind, BK_E_INVALID);
	CHECK_STR_EQ(err.field, "ttl");
	CHECK_INT_EQ(bk_err_set(NULL, 0, "ignored"), -1);
}

TEST(mkdir_p_and_rm_rf_never_follow_links)
{
	char dir[] = "/tmp/bunker-util-XXXXXX";
	CHECK(mkdtemp(dir) != NULL);
	char outside[] = "/tmp/bunker-util-out-XXXXXX";
	CHECK(mkdtemp(outside) != NULL);
	char p[512], q[512];
	struct bk_err err = BK_ERR_INIT;
	snprintf(p, sizeof(p), "%s/a/b/c", dir);
	CHECK(mkdir_p(p, 0755, &err) == 0);
	CHECK(mkdir_p(p, 0755, &err) == 0);
	snprintf(q, sizeof(q), "%s/keep", outside);
	FILE *f = fopen(q, "w");
	CHECK(f != NULL);
	fclose(f);
	snprintf(p, sizeof(p), "%s/a/link", dir);
	CHECK(symlink(outside, p) == 0);
	CHECK(rm_rf(dir, &err) == 0);
	CHECK(access(dir, F_OK) < 0);
	CHECK(access(q, F_OK) == 0); /* the link's target is untouched */
	CHECK(rm_rf(outside, &err) == 0);
	CHECK(rm_rf("/tmp/bunker-util-does-not-exist", &err) == 0);
}

TEST(read_write_file_small)
{
	char path[] = "/tmp/bunker-util-file-XXXXXX";
	int fd = mkstemp(path);
	CHECK(fd >= 0);
	close(fd);
	struct bk_err err = BK_ERR_INIT;
	CHECK(write_file_str(path, "12345", &err) == 0);
	char buf[4];
	CHECK_INT_EQ(read_file_small(path, buf, sizeof(buf), &err), 3);
	CHECK_STR_EQ(buf, "123");
	unlink(path);
	CHECK_INT_EQ(read_file_small(path, buf, sizeof(buf), &err), -1);
	CHECK(strstr(err.msg, "No such file") != NULL);
}

static int churn_stop;

/* A child in a mount namespace of its own: one thread mounts and unmounts
 * a tmpfs over and over while the other resolves "b/../b/.." beneath a
 * directory 20,000 times. Exits with the number of lookups that failed. */
static void *mount_churn(void *arg)
{
	const char *dir = arg;
	while (!__atomic_load_n(&churn_stop, __ATOMIC_RELAXED)) {
		if (mount("none", dir, "tmpfs", 0, NULL) == 0)
			umount2(dir, MNT_DETACH);
	}
	return NULL;
}

static int scoped_lookups_under_mount_churn(const char *top)
{
	if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
		return 255;
	char m[256], b[256];
	snprintf(m, sizeof(m), "%s/m", top);
	snprintf(b, sizeof(b), "%s/a/b", top);
	struct bk_err err = BK_ERR_INIT;
	if (mkdir_p(m, 0755, &err) < 0 || mkdir_p(b, 0755, &err) < 0)
		return 255;
	snprintf(b, sizeof(b), "%s/a", top);
	int dir = open(b, O_PATH | O_DIRECTORY | O_CLOEXEC);
	pthread_t t;
	if (dir < 0 || pthread_create(&t, NULL, mount_churn, m) != 0)
		return 255;
	int failed = 0;
	for (int i = 0; i < 20000; i++) {
		struct open_how how = {.flags = O_PATH | O_CLOEXEC, .resolve = RESOLVE_BENEATH};
		int fd = openat2_retry(dir, "b/../b/..", &how);
		if (fd < 0)
			failed++;
		else
			close(fd);
	}
	__atomic_store_n(&churn_stop, 1, __ATOMIC_RELAXED);
	pthread_join(t, NULL);
	return failed > 254 ? 254 : failed;
}

/* Sessions' creates mount all the time; a file request resolved beneath
 * the workspace must not fail because one did (it answered 500). */
TEST(openat2_retry_survives_mounts_elsewhere)
{
	if (geteuid() != 0)
		SKIP("needs root to unshare a mount namespace");
	char top[] = "/tmp/bk-openat2-XXXXXX";
	CHECK(mkdtemp(top) != NULL);
	pid_t pid = fork();
	if (pid == 0)
		_exit(scoped_lookups_under_mount_churn(top));
	int status = 0;
	CHECK(waitpid(pid, &status, 0) == pid);
	struct bk_err err = BK_ERR_INIT;
	rm_rf(top, &err);
	CHECK(WIFEXITED(status));
	CHECK_INT_EQ(WEXITSTATUS(status), 0);
}
