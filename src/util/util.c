#include "util/util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "util/cleanup.h"

int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t mono_us(void)
{
	return mono_ns() / 1000;
}

void iso8601_ms(int64_t ms, char *buf, size_t len)
{
	time_t secs = (time_t)(ms / 1000);
	struct tm tm;
	gmtime_r(&secs, &tm);
	char day[24];
	strftime(day, sizeof(day), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf, len, "%s.%03dZ", day, (int)(ms % 1000));
}

int random_bytes(void *out, size_t len, struct bk_err *err)
{
	char *p = out;
	while (len > 0) {
		ssize_t n = getrandom(p, len, 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return bk_err_set(err, errno, "cannot read random bytes");
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

bool port_parse(const char **s, int *port)
{
	const char *p = *s;
	size_t n = strspn(p, "0123456789");
	if (n == 0 || n > 5 || p[0] == '0')
		return false;
	int v = 0;
	for (size_t i = 0; i < n; i++)
		v = v * 10 + (p[i] - '0');
	if (v > 65535)
		return false;
	*port = v;
	*s = p + n;
	return true;
}

int random_alnum(char *buf, size_t len, struct bk_err *err)
{
	static const char alphabet[] = "abcdefghijklmnopqrstuvwxyz0123456789";
	size_t i = 0;
	while (i < len) {
		unsigned char raw[64];
		if (random_bytes(raw, sizeof(raw), err) < 0)
			return -1;
		/* 252 = 7 * 36: rejecting larger bytes keeps every character equally likely. */
		for (size_t j = 0; j < sizeof(raw) && i < len; j++)
			if (raw[j] < 252)
				buf[i++] = alphabet[raw[j] % 36];
	}
	buf[len] = '\0';
	return 0;
}

int write_full(int fd, const void *buf, size_t len)
{
	const char *p = buf;
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int read_full(int fd, void *buf, size_t len)
{
	char *p = buf;
	size_t got = 0;
	while (got < len) {
		ssize_t n = read(fd, p + got, len - got);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (n == 0) {
			if (got == 0)
				return 0;
			errno = EPIPE;
			return -1;
		}
		got += (size_t)n;
	}
	return 1;
}

int path_fmt(char *buf, size_t len, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf, len, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= len) {
		if (len > 0)
			buf[0] = '\0';
		errno = ENAMETOOLONG;
		return -1;
	}
	return 0;
}

int openat2_retry(int dirfd, const char *path, struct open_how *how)
{
	for (int i = 0; i < 1000; i++) {
		int fd = (int)syscall(SYS_openat2, dirfd, path, how, sizeof(*how));
		if (fd >= 0 || errno != EAGAIN)
			return fd;
	}
	return -1;
}

int write_file_str(const char *path, const char *s, struct bk_err *err)
{
	_cleanup_close_ int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return bk_err_set(err, errno, "cannot open '%s'", path);
	if (write_full(fd, s, strlen(s)) < 0)
		return bk_err_set(err, errno, "cannot write '%s' to '%s'", s, path);
	return 0;
}

ssize_t read_file_small(const char *path, char *buf, size_t len, struct bk_err *err)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return bk_err_set(err, errno, "cannot open '%s'", path);
	size_t got = 0;
	while (got + 1 < len) {
		ssize_t n = read(fd, buf + got, len - 1 - got);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return bk_err_set(err, errno, "cannot read '%s'", path);
		}
		if (n == 0)
			break;
		got += (size_t)n;
	}
	buf[got] = '\0';
	return (ssize_t)got;
}

int mkdir_p(const char *path, mode_t mode, struct bk_err *err)
{
	char tmp[4096];
	if (snprintf(tmp, sizeof(tmp), "%s", path) >= (int)sizeof(tmp))
		return bk_err_set(err, ENAMETOOLONG, "cannot create '%s'", path);
	for (char *p = tmp + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(tmp, mode) < 0 && errno != EEXIST)
			return bk_err_set(err, errno, "cannot create '%s'", tmp);
		*p = '/';
	}
	if (mkdir(tmp, mode) < 0 && errno != EEXIST)
		return bk_err_set(err, errno, "cannot create '%s'", tmp);
	return 0;
}

static int rm_rf_dev(int parent, const char *name, dev_t dev, struct bk_err *err)
{
	struct stat st;
	if (fstatat(parent, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return errno == ENOENT ? 0 : bk_err_set(err, errno, "cannot stat '%s'", name);
	if (S_ISDIR(st.st_mode)) {
		if (st.st_dev != dev)
			return bk_err_kind(err, BK_E_INTERNAL,
					   "'%s' is a mount point, not removing", name);
		int fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0)
			return bk_err_set(err, errno, "cannot open '%s'", name);
		_cleanup_closedir_ DIR *d = fdopendir(fd);
		if (d == NULL) {
			close(fd);
			return bk_err_set(err, errno, "cannot read '%s'", name);
		}
		struct dirent *de;
		while ((de = readdir(d)) != NULL) {
			if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
				continue;
			if (rm_rf_dev(dirfd(d), de->d_name, dev, err) < 0)
				return -1;
		}
		if (unlinkat(parent, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
			return bk_err_set(err, errno, "cannot remove '%s'", name);
		return 0;
	}
	if (unlinkat(parent, name, 0) < 0 && errno != ENOENT)
		return bk_err_set(err, errno, "cannot remove '%s'", name);
	return 0;
}

int rm_rf(const char *path, struct bk_err *err)
{
	struct stat st;
	if (lstat(path, &st) < 0)
		return errno == ENOENT ? 0 : bk_err_set(err, errno, "cannot stat '%s'", path);
	if (rm_rf_dev(AT_FDCWD, path, st.st_dev, err) < 0) {
		bk_err_prefix(err, "cannot remove '%s'", path);
		return -1;
	}
	return 0;
}

int rm_rf_at(int dirfd, const char *name, struct bk_err *err)
{
	struct stat st;
	if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return errno == ENOENT ? 0 : bk_err_set(err, errno, "cannot stat '%s'", name);
	return rm_rf_dev(dirfd, name, st.st_dev, err);
}

void buf_init(struct buf *b, size_t max)
{
	memset(b, 0, sizeof(*b));
	b->max = max;
}

size_t buf_cap_after(const struct buf *b, size_t len)
{
	if (b->len + len > b->max)
		len = b->max - b->len;
	if (len == 0 || b->len + len + 1 <= b->cap)
		return b->cap;
	size_t cap = b->cap ? b->cap : 256;
	while (cap < b->len + len + 1)
		cap *= 2;
	return cap;
}

int buf_append(struct buf *b, const void *data, size_t len)
{
	size_t cap = buf_cap_after(b, len);
	if (b->len + len > b->max) {
		b->truncated = true;
		len = b->max - b->len;
	}
	if (len == 0)
		return 0;
	if (cap > b->cap) {
		char *p = realloc(b->data, cap);
		if (p == NULL)
			return -1;
		b->data = p;
		b->cap = cap;
	}
	memcpy(b->data + b->len, data, len);
	b->len += len;
	b->data[b->len] = '\0';
	return 0;
}

void buf_free(struct buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
}

char *buf_take(struct buf *b)
{
	char *p = b->data ? b->data : strdup("");
	b->data = NULL;
	b->len = b->cap = 0;
	return p;
}
