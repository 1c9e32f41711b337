/* The default image: the lower layer of every session's root.
 *
 * Built once, on the machine, from what it already has: links /bin, /lib,
 * /lib64 and /sbin into /usr (the host's /usr is bound read-only over the
 * image's empty one at each sandbox start), a small generated /etc with the
 * host's files that programs need to run (dynamic linker cache,
 * alternatives, time zone, TLS roots), and the Bun binary under
 * /opt/bun/bin, and the persistent interpreters' drivers under
 * /opt/bunker/drivers. Nothing else of the host is in it. The image's
 * directory name carries a stamp of the Bun binary and a hash of the
 * drivers, so a new Bun or a changed driver builds a new image beside the
 * old one.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sendfile.h>
#include <unistd.h>

#include "sandbox/ns_int.h"
#include "util/cleanup.h"

#define IMAGE_FORMAT 4

const char ns__image_bun[] = "/opt/bun/bin/bun";

/* What every execution starts from; a request's env comes on top. */
const char *const ns__image_env[] = {
    "PATH=/home/user/.local/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:"
    "/opt/bun/bin",
    "HOME=/home/user",
    "USER=user",
    "LOGNAME=user",
    "SHELL=/bin/bash",
    "LANG=C.UTF-8",
    "TMPDIR=/tmp",
    "BUN_RUNTIME_TRANSPILER_CACHE_PATH=0",
    /* `pip install six` as users type it: Debian marks its Python
     * EXTERNALLY-MANAGED, which this overrides; the system site (the
     * image's /usr) is read-only, so pip installs into the user site in
     * the session's home, on its own disk (in a venv, into the venv).
     * With no network pip fails at once rather than retrying for minutes;
     * one retry, because only a retry makes it print why (the connection
     * that could not be made). */
    "PIP_BREAK_SYSTEM_PACKAGES=1",
    "PIP_RETRIES=1",
    "PIP_TIMEOUT=10",
    "PIP_DISABLE_PIP_VERSION_CHECK=1",
    NULL,
};

static int copy_file(const char *src, const char *dst, mode_t mode, struct bk_err *err)
{
	_cleanup_close_ int in = open(src, O_RDONLY | O_CLOEXEC);
	if (in < 0)
		return bk_err_set(err, errno, "cannot open '%s'", src);
	_cleanup_close_ int out = open(dst, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode & 07777);
	if (out < 0)
		return bk_err_set(err, errno, "cannot create '%s'", dst);
	for (;;) {
		ssize_t n = sendfile(out, in, NULL, 1 << 20);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return bk_err_set(err, errno, "cannot copy '%s'", src);
		}
		if (n == 0)
			break;
	}
	if (fchmod(out, mode & 07777) < 0)
		return bk_err_set(err, errno, "cannot chmod '%s'", dst);
	return 0;
}

/* cp -a of files, directories and symlinks (nothing else is copied). */
static int copy_tree(const char *src, const char *dst, struct bk_err *err)
{
	struct stat st;
	if (lstat(src, &st) < 0)
		return errno == ENOENT ? 0 : bk_err_set(err, errno, "cannot stat '%s'", src);
	if (S_ISLNK(st.st_mode)) {
		char target[PATH_MAX];
		ssize_t n = readlink(src, target, sizeof(target) - 1);
		if (n < 0)
			return bk_err_set(err, errno, "cannot read link '%s'", src);
		target[n] = '\0';
		if (symlink(target, dst) < 0 && errno != EEXIST)
			return bk_err_set(err, errno, "cannot create link '%s'", dst);
		return 0;
	}
	if (S_ISREG(st.st_mode))
		return copy_file(src, dst, st.st_mode, err);
	if (!S_ISDIR(st.st_mode))
		return 0;
	if (mkdir(dst, st.st_mode & 07777) < 0 && errno != EEXIST)
		return bk_err_set(err, errno, "cannot create '%s'", dst);
	_cleanup_closedir_ DIR *d = opendir(src);
	if (d == NULL)
		return bk_err_set(err, errno, "cannot open '%s'", src);
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		char s[PATH_MAX], t[PATH_MAX];
		snprintf(s, sizeof(s), "%s/%s", src, de->d_name);
		snprintf(t, sizeof(t), "%s/%s", dst, de->d_name);
		if (copy_tree(s, t, err) < 0)
			return -1;
	}
	return 0;
}

static int put_file(const char *dir, const char *name, const char *text, struct bk_err *err)
{
	char p[PATH_MAX];
	snprintf(p, sizeof(p), "%s/%s", dir, name);
	_cleanup_close_ int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0 || write_full(fd, text, strlen(text)) < 0)
		return bk_err_set(err, errno, "cannot write '%s'", p);
	return 0;
}

static int image_build(const char *dir, const char *bun_real, struct bk_err *err)
{
	static const char *const dirs[] = {
	    "usr", "proc", "sys", "dev",     "etc",	    "home",	  "run",
	    "mnt", "var",  "opt", "opt/bun", "opt/bun/bin", "opt/bunker", "opt/bunker/drivers"};
	char p[PATH_MAX];
	if (mkdir_p(dir, 0755, err) < 0)
		return -1;
	for (size_t i = 0; i < ARRAY_SIZE(dirs); i++) {
		if (path_fmt(p, sizeof(p), "%s/%s", dir, dirs[i]) < 0)
			return bk_err_set(err, errno, "a path below '%s' is too long", dir);
		if (mkdir(p, 0755) < 0 && errno != EEXIST)
			return bk_err_set(err, errno, "cannot create '%s'", p);
	}
	static const char *const sticky[] = {"tmp", "var/tmp"};
	for (size_t i = 0; i < ARRAY_SIZE(sticky); i++) {
		if (path_fmt(p, sizeof(p), "%s/%s", dir, sticky[i]) < 0)
			return bk_err_set(err, errno, "a path below '%s' is too long", dir);
		if ((mkdir(p, 01777) < 0 && errno != EEXIST) || chmod(p, 01777) < 0)
			return bk_err_set(err, errno, "cannot create '%s'", p);
	}
	if (path_fmt(p, sizeof(p), "%s/root", dir) < 0)
		return bk_err_set(err, errno, "a path below '%s' is too long", dir);
	if (mkdir(p, 0700) < 0 && errno != EEXIST)
		return bk_err_set(err, errno, "cannot create '%s'", p);
	/* Merged /usr: the top-level directories are links into it. */
	static const char *const usr_links[] = {"bin", "lib", "lib64", "sbin"};
	for (size_t i = 0; i < ARRAY_SIZE(usr_links); i++) {
		char host[64], target[PATH_MAX];
		snprintf(host, sizeof(host), "/%s", usr_links[i]);
		ssize_t n = readlink(host, target, sizeof(target) - 1);
		if (n < 0) {
			if (errno == ENOENT)
				continue;
			return bk_err_kind(
			    err, BK_E_INTERNAL,
			    "host '%s' is not a link into /usr: a merged-/usr host is "
			    "required",
			    host);
		}
		target[n] = '\0';
		if (path_fmt(p, sizeof(p), "%s/%s", dir, usr_links[i]) < 0)
			return bk_err_set(err, errno, "a path below '%s' is too long", dir);
		if (symlink(target, p) < 0 && errno != EEXIST)
			return bk_err_set(err, errno, "cannot create link '%s'", p);
	}

	char etc[PATH_MAX];
	if (path_fmt(etc, sizeof(etc), "%s/etc", dir) < 0)
		return bk_err_set(err, errno, "a path below '%s' is too long", dir);
	/* Of /etc/ssl only the public part: never a host's private keys. */
	if (path_fmt(p, sizeof(p), "%s/ssl", etc) < 0)
		return bk_err_set(err, errno, "a path below '%s' is too long", dir);
	if (mkdir(p, 0755) < 0 && errno != EEXIST)
		return bk_err_set(err, errno, "cannot create '%s'", p);
	static const char *const from_host[] = {
	    "alternatives",   "ld.so.cache",	 "ld.so.conf",	    "ld.so.conf.d", "localtime",
	    "bash.bashrc",    "profile",	 "inputrc",	    "python3",	    "python3.11",
	    "ssl/certs",      "ssl/openssl.cnf", "ca-certificates", "mime.types",   "os-release",
	    "debian_version", "timezone",	 "environment",	    "login.defs",   "shells"};
	for (size_t i = 0; i < ARRAY_SIZE(from_host); i++) {
		char s[PATH_MAX], t[PATH_MAX];
		if (path_fmt(s, sizeof(s), "/etc/%s", from_host[i]) < 0)
			return bk_err_set(err, errno, "a path below '%s' is too long", dir);
		if (path_fmt(t, sizeof(t), "%s/%s", etc, from_host[i]) < 0)
			return bk_err_set(err, errno, "a path below '%s' is too long", dir);
		if (copy_tree(s, t, err) < 0)
			return -1;
	}
	if (put_file(etc, "passwd",
		     "root:x:0:0:root:/root:/bin/bash\n"
		     "user:x:1000:1000:user:/home/user:/bin/bash\n"
		     "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
		     err) < 0 ||
	    put_file(etc, "group", "root:x:0:\nuser:x:1000:\nnogroup:x:65534:\n", err) < 0 ||
	    put_file(etc, "hosts", "127.0.0.1\tlocalhost bunker\n::1\tlocalhost ip6-localhost\n",
		     err) < 0 ||
	    put_file(etc, "hostname", "bunker\n", err) < 0 ||
	    put_file(etc, "resolv.conf",
		     "# A session granted outbound network asks bunkerd's resolver: its\n"
		     "# table sends port 53 of any address to it (sandbox/egress_dns.c).\n"
		     "nameserver " NS_RESOLVER_ADDR "\noptions timeout:2 attempts:2\n",
		     err) < 0 ||
	    put_file(etc, "nsswitch.conf", "passwd: files\ngroup: files\nhosts: files dns\n", err) <
		0)
		return -1;

	for (size_t i = 0; i < ns__drivers_count; i++) {
		if (path_fmt(p, sizeof(p), "%s%s/%s", dir, NS_IMAGE_DRIVERS, ns__drivers[i].name) <
		    0)
			return bk_err_set(err, errno, "a path below '%s' is too long", dir);
		_cleanup_close_ int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (fd < 0 || write_full(fd, ns__drivers[i].data, ns__drivers[i].len) < 0)
			return bk_err_set(err, errno, "cannot write '%s'", p);
	}

	if (path_fmt(p, sizeof(p), "%s%s", dir, ns__image_bun) < 0)
		return bk_err_set(err, errno, "a path below '%s' is too long", dir);
	if (link(bun_real, p) < 0 && copy_file(bun_real, p, 0755, err) < 0)
		return -1;
	if (path_fmt(p, sizeof(p), "%s/opt/bun/bin/bunx", dir) < 0)
		return bk_err_set(err, errno, "a path below '%s' is too long", dir);
	if (symlink("bun", p) < 0 && errno != EEXIST)
		return bk_err_set(err, errno, "cannot create link '%s'", p);
	return 0;
}

int ns__image_ensure(const char *data_dir, const char *bun_path, char *image_dir, size_t len,
		     struct bk_err *err)
{
	char bun_real[PATH_MAX];
	struct stat st;
	if (realpath(bun_path, bun_real) == NULL || stat(bun_real, &st) < 0)
		return bk_err_set(
		    err, errno, "cannot find bun at '%s' (run scripts/install-deps.sh)", bun_path);
	char images[PATH_MAX];
	if (path_fmt(images, sizeof(images), "%s/images", data_dir) < 0)
		return bk_err_set(err, errno, "a path below '%s' is too long", data_dir);
	if (mkdir_p(images, 0755, err) < 0)
		return -1;
	uint32_t h = 2166136261u; /* FNV-1a of the drivers */
	for (size_t i = 0; i < ns__drivers_count; i++)
		for (size_t k = 0; k < ns__drivers[i].len; k++)
			h = (h ^ ns__drivers[i].data[k]) * 16777619u;
	if (path_fmt(image_dir, len, "%s/default-%d-%llx-%llx-%08x", images, IMAGE_FORMAT,
		     (unsigned long long)st.st_size, (unsigned long long)st.st_mtime, h) < 0)
		return bk_err_set(err, errno, "a path below '%s' is too long", data_dir);
	if (access(image_dir, F_OK) == 0)
		return 0;
	char tmp[PATH_MAX];
	if (path_fmt(tmp, sizeof(tmp), "%s/.build-%d", images, (int)getpid()) < 0)
		return bk_err_set(err, errno, "a path below '%s' is too long", data_dir);
	rm_rf(tmp, NULL);
	if (image_build(tmp, bun_real, err) < 0) {
		bk_err_prefix(err, "cannot build image '%s'", image_dir);
		rm_rf(tmp, NULL);
		return -1;
	}
	if (rename(tmp, image_dir) < 0 && errno != ENOTEMPTY && errno != EEXIST) {
		int e = errno;
		rm_rf(tmp, NULL);
		return bk_err_set(err, e, "cannot rename '%s'", tmp);
	}
	rm_rf(tmp, NULL);
	return 0;
}
