#include "sbx_fixture.h"

#include <dirent.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <unistd.h>

#include "harness.h"
#include "sandbox/cgroup.h"

static char base_dir[256];
static char data_dir[300];
static struct sbx_backend *backend;

/* The parent cgroup of the run: the test binary's pid, which is each
 * test's parent. */
static void parent_cgroup(char *out, size_t len, pid_t binary)
{
	snprintf(out, len, "bunker-unit-%d", (int)binary);
}

/* bunker-init of the build under test: $BUNKER_BUILD's, or the one beside
 * this binary's directory. */
static void init_path(char *out, size_t len)
{
	const char *b = getenv("BUNKER_BUILD");
	if (b) {
		snprintf(out, len, "%s/bunker-init", b);
		return;
	}
	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	self[n > 0 ? n : 0] = '\0';
	snprintf(out, len, "%s/../bunker-init", dirname(self));
}

int sbx_fixture_harness_setup(void)
{
	snprintf(base_dir, sizeof(base_dir), "/tmp/bunker-sbx-XXXXXX");
	return mkdtemp(base_dir) ? 0 : 1;
}

/* Detaches every mount under dir, deepest first. */
static void umount_below(const char *dir)
{
	for (int pass = 0; pass < 1000; pass++) {
		FILE *f = fopen("/proc/self/mountinfo", "r");
		char line[2048], found[1024] = "";
		while (f && fgets(line, sizeof(line), f)) {
			char mnt[1024];
			if (sscanf(line, "%*s %*s %*s %*s %1023s", mnt) == 1 &&
			    strncmp(mnt, dir, strlen(dir)) == 0 && strlen(mnt) > strlen(found))
				snprintf(found, sizeof(found), "%s", mnt);
		}
		if (f)
			fclose(f);
		if (found[0] == '\0')
			return;
		umount2(found, MNT_DETACH);
	}
}

void sbx_fixture_harness_teardown(void)
{
	static const char *const controllers[] = {"memory/", "cpu/",	 "cpuacct/",
						  "pids/",   "freezer/", ""};
	char parent[64];
	parent_cgroup(parent, sizeof(parent), getpid());
	const struct cgroup_manager *mgr = sbx__cgroup_detect(NULL);
	for (size_t i = 0; i < sizeof(controllers) / sizeof(controllers[0]); i++) {
		char cg[300];
		snprintf(cg, sizeof(cg), "/sys/fs/cgroup/%s%s", controllers[i], parent);
		DIR *d = opendir(cg);
		struct dirent *de;
		while (d && mgr && (de = readdir(d)) != NULL)
			if (strncmp(de->d_name, "ses_", 4) == 0)
				mgr->session_destroy(parent, de->d_name, NULL);
		if (d)
			closedir(d);
		rmdir(cg);
	}
	umount_below(base_dir);
	rm_rf(base_dir, NULL);
}

struct sbx_backend *sbx_fixture_open(void)
{
	if (geteuid() != 0)
		SKIP("sandboxes need root");
	if (access(SBX_FIXTURE_BUN, X_OK) < 0)
		SKIP("no bun at %s (scripts/install-deps.sh installs it)", SBX_FIXTURE_BUN);
	snprintf(data_dir, sizeof(data_dir), "%s/t%d", base_dir, (int)getpid());
	struct sbx_backend_config cfg = {.slot_first = 0, .slot_count = 0};
	snprintf(cfg.data_dir, sizeof(cfg.data_dir), "%s", data_dir);
	init_path(cfg.init_path, sizeof(cfg.init_path));
	snprintf(cfg.bun_path, sizeof(cfg.bun_path), "%s", SBX_FIXTURE_BUN);
	parent_cgroup(cfg.cgroup_parent, sizeof(cfg.cgroup_parent), getppid());
	struct bk_err err = BK_ERR_INIT;
	CHECK_MSG(sbx_backend_open(&cfg, &backend, &err) == 0, "%s", err.msg);
	return backend;
}

void sbx_fixture_close(void)
{
	backend->ops->close(backend);
	char run[400];
	snprintf(run, sizeof(run), "%s/run", data_dir);
	umount2(run, MNT_DETACH);
	CHECK(rm_rf(data_dir, NULL) == 0);
}

struct sbx *sbx_fixture_start(const char *id, const struct sbx_limits *lim)
{
	const struct sbx_limits def = {.memory_mb = 256, .cpu = 1, .disk_mb = 64, .pids = 128};
	struct sbx *s;
	struct bk_err err = BK_ERR_INIT;
	CHECK_MSG(backend->ops->start(backend, id, lim ? lim : &def, &s, &err) == 0, "%s", err.msg);
	return s;
}

void sbx_fixture_stop(struct sbx *s)
{
	char id[sizeof(s->id)];
	snprintf(id, sizeof(id), "%s", s->id);
	backend->ops->stop(s);
	struct bk_err err = BK_ERR_INIT;
	CHECK_MSG(backend->ops->purge(backend, id, &err) == 0, "%s", err.msg);
}
