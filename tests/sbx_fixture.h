/* Real sandboxes for tests that drive the namespaces backend directly (no
 * daemon): one base directory and one parent cgroup per test binary, a
 * data directory and a backend per test (each test is a process of its
 * own). Needs root, and Bun where scripts/install-deps.sh puts it. */
#pragma once

#include "sandbox/sandbox.h"

#define SBX_FIXTURE_BUN "/opt/bunker/bun/bin/bun"

/* For harness_setup() (in the parent, before every test): makes the base
 * directory. Returns 0, or 1 when it cannot. */
int sbx_fixture_harness_setup(void);
/* For harness_teardown(): removes the parent cgroup, every mount and every
 * file a failed test may have left. */
void sbx_fixture_harness_teardown(void);
/* At a test's start: SKIPs unless root with Bun; opens the backend on the
 * test's own data directory. Returns it (the fixture's). */
struct sbx_backend *sbx_fixture_open(void);
/* At a test's end: closes the backend and removes its data directory. */
void sbx_fixture_close(void);
/* Starts session id with lim (NULL: 256 MB, one core, 64 MB of disk, 128
 * processes); fails the test when it cannot. */
struct sbx *sbx_fixture_start(const char *id, const struct sbx_limits *lim);
/* Stops s and purges its session's files. */
void sbx_fixture_stop(struct sbx *s);
