/* What the cgroup managers share, and the choice between them. */
#include <dirent.h>
#include <errno.h>
#include <linux/magic.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <time.h>
#include <unistd.h>

#include "sandbox/cgroup.h"
#include "util/cleanup.h"

const struct cgroup_manager *sbx__cgroup_detect(struct bk_err *err)
{
	struct statfs sf;
	if (statfs(SBX_CGROUP_ROOT, &sf) < 0) {
		bk_err_set(err, errno, "cannot stat '%s'", SBX_CGROUP_ROOT);
		return NULL;
	}
	if (sf.f_type == CGROUP2_SUPER_MAGIC)
		return &sbx__cgroup_v2;
	static const char *const needed[] = {"memory", "cpu", "cpuacct", "pids", "freezer"};
	for (size_t i = 0; i < ARRAY_SIZE(needed); i++) {
		char p[256];
		snprintf(p, sizeof(p), SBX_CGROUP_ROOT "/%s/cgroup.procs", needed[i]);
		if (access(p, F_OK) < 0) {
			bk_err_kind(err, BK_E_INTERNAL,
				    "no cgroup v2 at '%s' and no v1 '%s' controller",
				    SBX_CGROUP_ROOT, needed[i]);
			return NULL;
		}
	}
	return &sbx__cgroup_v1;
}

int sbx__cgroup_kill_procs(const char *procs_path)
{
	_cleanup_fclose_ FILE *f = fopen(procs_path, "re");
	if (f == NULL)
		return 0;
	int n = 0, pid;
	while (fscanf(f, "%d", &pid) == 1) {
		kill(pid, SIGKILL);
		n++;
	}
	return n;
}

int64_t sbx__cgroup_count_procs(const char *procs_path)
{
	_cleanup_fclose_ FILE *f = fopen(procs_path, "re");
	if (f == NULL)
		return 0;
	int64_t n = 0;
	int pid;
	while (fscanf(f, "%d", &pid) == 1)
		n++;
	return n;
}

int sbx__cgroup_rmdir(const char *dir, const char *procs_path, struct bk_err *err)
{
	/* A killed process leaves its cgroup only once it has exited. */
	for (int i = 0; i < 400; i++) {
		if (rmdir(dir) == 0 || errno == ENOENT)
			return 0;
		if (errno != EBUSY)
			return bk_err_set(err, errno, "cannot remove cgroup '%s'", dir);
		sbx__cgroup_kill_procs(procs_path);
		struct timespec ts = {0, 5 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	return bk_err_set(err, EBUSY, "cannot remove cgroup '%s'", dir);
}

int sbx__cgroup_wait_state(const char *path, const char *want, const char *id, struct bk_err *err)
{
	char state[256];
	for (int i = 0; i < 2000; i++) {
		if (read_file_small(path, state, sizeof(state), err) < 0)
			return -1;
		if (strstr(state, want))
			return 0;
		struct timespec ts = {0, 500 * 1000};
		nanosleep(&ts, NULL);
	}
	return bk_err_kind(err, BK_E_INTERNAL, "cgroup of session %s did not reach '%s'", id, want);
}

int64_t sbx__cgroup_read_num(const char *path, const char *key)
{
	char text[2048];
	if (read_file_small(path, text, sizeof(text), NULL) < 0)
		return 0;
	if (key == NULL)
		return strtoll(text, NULL, 10);
	const char *k = strstr(text, key);
	return k ? strtoll(k + strlen(key), NULL, 10) : 0;
}

void sbx__cgroup_each_dir(const char *dir, void (*fn)(void *ctx, const char *id), void *ctx)
{
	_cleanup_closedir_ DIR *d = opendir(dir);
	struct dirent *de;
	while (d && (de = readdir(d)) != NULL) {
		if (de->d_type == DT_DIR && de->d_name[0] != '.')
			fn(ctx, de->d_name);
	}
}
