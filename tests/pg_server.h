/* A throwaway PostgreSQL 15 for tests: initdb and pg_ctl from
 * PG_SERVER_BIN, run as the `postgres` user, with its data directory in a
 * fresh mkdtemp() directory under /tmp and listening only on a unix socket
 * in that directory (listen_addresses=''), trust authentication for the
 * role `bunker` on that socket alone.
 *
 * Start it in harness_setup() (the parent, before any test forks) and stop
 * it in harness_teardown(). A watchdog process of its own session (so a
 * `timeout` that kills the test's process group spares it) waits for the
 * starter to end, however it ends, and then stops the server and removes
 * the directory: a crashed test leaves no server running.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "harness.h"

#define PG_SERVER_BIN "/usr/lib/postgresql/15/bin"

struct pg_server {
	bool running;
	char dir[64];	   /* the mkdtemp() directory: data/ and the socket */
	char skip[256];	   /* why it could not start, for SKIP (or FAIL, when broken) */
	bool broken;	   /* it should have started here and did not */
	int watchdog_pipe; /* write end; closing it tells the watchdog to clean up */
	int watchdog_pid;
};

extern struct pg_server pg;

/* Starts the server into `pg`. Returns 0; on failure pg.skip says why
 * (binaries missing, no postgres user, /tmp not reachable) and every PG
 * test SKIPs with it. */
int pg_server_start(void);
/* Stops it and removes its directory (through the watchdog). */
void pg_server_stop(void);

/* Stops the server (pg_ctl stop -m mode: "fast" or "immediate") without
 * removing anything, and starts it again on the same data directory, as
 * an operator's restart would: 0, or -1 (pg_ctl.log in pg.dir says why).
 * For a test that forks (every test does): the server is the parent's,
 * shared by every test, so only one test of a binary may do this. */
int pg_server_halt(const char *mode);
int pg_server_resume(void);

/* In a test: SKIPs when no server can run here, FAILs when it should have
 * and did not. */
#define PG_REQUIRE()                                                                               \
	do {                                                                                       \
		if (!pg.running && pg.broken)                                                      \
			harness_fail(__FILE__, __LINE__, "no PostgreSQL: %s", pg.skip);            \
		if (!pg.running)                                                                   \
			harness_skip("%s", pg.skip);                                               \
	} while (0)

/* A new empty database of the server, named after prefix and a counter;
 * its libpq URI into uri. Returns 0, or -1 with a message in msg. */
int pg_server_database(const char *prefix, char *uri, size_t len, char *msg, size_t msg_len);
