/* Test client of the black-box tests: starts a real bunkerd on a free
 * loopback port with a fresh data directory, creates API keys through the
 * CLI and speaks HTTP to the daemon through libcurl.
 *
 * A test binary starts one daemon in harness_setup() (in the parent, before
 * any test forks) with client_fixture_start(); every forked test then uses
 * the shared `bk` fixture. Each process keeps its own curl handle, so a test
 * never shares a connection with its parent or a sibling.
 *
 * The helpers named client_must_*() and the CHECK_*() macros below end the
 * test through harness_fail() when something is wrong, printing the status
 * and body of the answer that did not match.
 */
#pragma once

#include <jansson.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>
#include <sys/types.h>

#include "harness.h"

#define CLIENT_KEY_MAX 256

struct client_daemon {
	pid_t pid; /* 0 when not running */
	int port;
	char build[PATH_MAX];	 /* holds bunkerd, bunker, bunker-init */
	char data_dir[PATH_MAX]; /* fresh mkdtemp() dir, removed by stop */
	char log_dir[PATH_MAX];	 /* kept when the binary fails */
	char log_path[PATH_MAX]; /* the daemon's (and the CLI's) stderr */
	char base_url[64];	 /* "http://127.0.0.1:<port>" */
	char cgroup_parent[64];	 /* "bunker-<hash of data_dir>", as sandbox/ns.c names it */
	char store[256];	 /* --store of the daemon and the CLI; "": DATA/bunker.db */
	/* What client_daemon_stop() found of it on the host after it stopped
	 * (and removed): */
	int left_processes; /* processes */
	int left_cgroups;   /* cgroup directories (its parent and what is in it) */
	int left_mounts;    /* mounts under its data directory */
	int left_net;	    /* its egress table and interfaces */
	bool left_data_dir; /* a data directory that could not be removed */
};

/* The shared fixture of a test binary: one daemon and a key of each plan
 * that every test may use. When this machine cannot run a daemon at all
 * (not root), skip_reason says why, and every test SKIPs with it at its
 * first request. */
struct client_fixture {
	struct client_daemon d;
	char free_key[CLIENT_KEY_MAX];
	char paid_key[CLIENT_KEY_MAX];
	char skip_reason[128];
};
extern struct client_fixture bk;

/* Finds the build directory: $BUNKER_BUILD, else the parent of the
 * directory of this executable (build/asan/tests/bb_x -> build/asan).
 * Returns 0, or -1 with a message on stderr. */
int client_build_dir(char *out, size_t len);

/* Starts bunkerd (extra_args: NULL-terminated list of more arguments, or
 * NULL) and waits up to 30 s for /healthz. Returns 0, or -1 after printing
 * why and the daemon's log. */
int client_daemon_start(struct client_daemon *d, const char *const *extra_args);

/* SIGTERM, up to 10 s, then SIGKILL (printing where its threads wait);
 * then removes, counting and printing each as left behind, whatever of
 * the daemon is still on the host: every process that names the data
 * directory in its command line or its mounts (sandboxes, a stuck fork of
 * the daemon), its cgroups (its parent and all in it, under every
 * controller), the mounts under the data directory, here or in the
 * daemon's own mount namespace, and that namespace's pin (a clean stop
 * puts every session to deep sleep, which releases them all), and the
 * data directory itself. Returns the daemon's wait status, or -1. */
int client_daemon_stop(struct client_daemon *d);

/* Notes, for the check at the end of a run of scripts/test.sh, something
 * of the host a test binary makes and must leave as it found it: kind
 * "daemon" (what is a data directory, extra its cgroup parent), "cgroup"
 * (a cgroup parent), "dir" (a directory that must be gone). One line of
 * $BUNKER_TEST_MANIFEST; nothing when it is not set. */
void client_manifest_note(const char *kind, const char *what, const char *extra);

/* Detaches every mount under dir (dir included), deepest first; returns
 * how many are left (-1 if unknown). */
int client_detach_mounts_under(const char *dir);

/* The mount table of the daemon's own mount namespace (bunkerd keeps its
 * session mounts there, not in the namespace it was started from): its
 * /proc/<pid>/mountinfo while it runs; once stopped, the namespace's as
 * it kept it on /run/bunker/<instance>/mnt, or "" when it kept none.
 * Caller frees; NULL when it cannot be read. */
char *client_daemon_mountinfo(const struct client_daemon *d);

/* Stops the daemon with sig (SIGTERM: a clean stop; SIGKILL: a crash) and
 * keeps its data directory, so that client_daemon_start() brings it back
 * on the same data. Returns the wait status, or -1. */
int client_daemon_halt(struct client_daemon *d, int sig);

/* Scans the daemon's log for sanitizer reports ("AddressSanitizer",
 * "runtime error:", "LeakSanitizer") and counts what client_daemon_stop()
 * found left behind on the host. Returns the number of problems
 * (printed). For a stopped daemon other than the fixture's, it then
 * removes the log directory when there are none (and $BUNKER_KEEP_LOGS is
 * not set), or says where the log is kept. */
/* The hash that names a daemon's instance (libbunker's, sandbox/sandbox.h,
 * which the tests' own headers cannot include beside theirs). */
uint32_t sbx_instance_hash(const char *data_dir);
/* The egress table and interfaces of a daemon on data_dir that exist on
 * the host (removed, and said so, with remove). */
int client_egress_state(const char *data_dir, bool remove);
int client_daemon_check(const struct client_daemon *d);

/* Lines of the daemon's log that contain both a and b (b may be NULL), or
 * -1 when it cannot be read. */
int client_log_count(const struct client_daemon *d, const char *a, const char *b);

/* Runs `bunker --data-dir DIR keys create --plan PLAN` and copies the key it
 * printed into out. Returns 0, or -1 with a message on stderr. */
int client_key_create(const struct client_daemon *d, const char *plan, char *out, size_t len);
/* The same with the plan's numbers overridden (overrides: NULL-terminated
 * CLI arguments, {"--max-sessions", "2", NULL}; may be NULL). */
int client_key_create_with(const struct client_daemon *d, const char *plan,
			   const char *const *overrides, char *out, size_t len);

/* Fixture for harness_setup/harness_teardown/harness_final_check: starts
 * the daemon into `bk`, creates bk.free_key and bk.paid_key, and arranges
 * for the log directory to be removed when the binary exits 0 (and kept,
 * with its path printed, otherwise). */
int client_fixture_start(void);
/* The same with more bunkerd arguments (NULL-terminated list). */
/* client_fixture_start() for tests that measure the daemon's memory: its
 * AddressSanitizer quarantine (256 MB by default) held to 8 MB, so that
 * what a peak shows is the daemon's, not freed blocks kept for checking. */
int client_fixture_start_measured(void);
int client_fixture_start_args(const char *const *extra_args);
void client_fixture_stop(void);
int client_fixture_check(void);

struct client_req {
	const char *method;	    /* "GET", "POST", "DELETE", ... */
	const char *path;	    /* "/sessions/create?x=y" */
	const char *key;	    /* Bearer key, or NULL for none */
	const char *body;	    /* NULL: no body at all */
	size_t body_len;	    /* 0: strlen(body) */
	bool raw_len;		    /* body_len is exact even when 0 */
	const char *const *headers; /* NULL-terminated "Name: value" list */
	long timeout_s;		    /* 0: 120 s */
};

struct client_resp {
	long status; /* 0 when the request failed at transport level */
	char *body;  /* NUL-terminated, malloc'd (never NULL after a request) */
	size_t body_len;
	char *headers;	 /* raw header lines of the final response */
	json_t *json;	 /* the parsed body (new reference) or NULL */
	double seconds;	 /* wall time of the request */
	char error[256]; /* curl's error when status is 0 */
};

/* Performs one request (a test SKIPs here when bk.skip_reason is set and d
 * is the fixture's daemon). Returns 0 when an HTTP answer arrived (whatever its
 * status), -1 on a transport error (resp->error says which). resp must be
 * released with client_resp_free(). */
int client_request(const struct client_daemon *d, const struct client_req *req,
		   struct client_resp *resp);

/* Shorthands: body is JSON text or NULL. */
int client_call(const struct client_daemon *d, const char *method, const char *path,
		const char *key, const char *body, struct client_resp *resp);
/* body is serialised compactly; borrowed. */
int client_call_json(const struct client_daemon *d, const char *method, const char *path,
		     const char *key, const json_t *body, struct client_resp *resp);

void client_resp_free(struct client_resp *resp);

/* Value of the response header name (case-insensitive), copied into buf
 * without surrounding blanks; NULL when absent. */
const char *client_resp_header(const struct client_resp *resp, const char *name, char *buf,
			       size_t len);

/* Typed members of a JSON object: fail the test, quoting context (the
 * answer's body, say), when name is missing or of another type. */
const char *client_must_str(const json_t *obj, const char *name, const char *context);
long long client_must_int(const json_t *obj, const char *name, const char *context);
double client_must_num(const json_t *obj, const char *name, const char *context);
bool client_must_bool(const json_t *obj, const char *name, const char *context);

/* Defines the harness hooks of a black-box test binary: one bunkerd for all
 * its tests, started with extra_args (a NULL-terminated list, or NULL). */
#define CLIENT_FIXTURE(extra_args)                                                                 \
	int harness_setup(void)                                                                    \
	{                                                                                          \
		return client_fixture_start_args(extra_args);                                      \
	}                                                                                          \
	void harness_teardown(void)                                                                \
	{                                                                                          \
		client_fixture_stop();                                                             \
	}                                                                                          \
	int harness_final_check(void)                                                              \
	{                                                                                          \
		return client_fixture_check();                                                     \
	}

/* Members of resp->json (borrowed), NULL when missing or of another type. */
const char *client_json_str(const json_t *obj, const char *name);

/* %-encodes s for a query string into a new string (caller frees). */
char *client_urlencode(const char *s);

/* Assertions on an answer, with its status and body in the failure. */
#define CHECK_STATUS(resp, want) client_check_status(__FILE__, __LINE__, (resp), (want))
#define CHECK_ERROR(resp, want_status, want_code)                                                  \
	client_check_error(__FILE__, __LINE__, (resp), (want_status), (want_code))
/* CHECK_ERROR, and the field's name appears in error.message or
 * error.details ("a clear error naming the field"). */
#define CHECK_ERROR_FIELD(resp, want_status, want_code, field)                                     \
	client_check_error_field(__FILE__, __LINE__, (resp), (want_status), (want_code), (field))
void client_check_status(const char *file, int line, const struct client_resp *resp, long want);
void client_check_error(const char *file, int line, const struct client_resp *resp, long want,
			const char *code);
void client_check_error_field(const char *file, int line, const struct client_resp *resp, long want,
			      const char *code, const char *field);

/* The client_must_*() helpers report failures at the caller's line. */

/* Creates a key in a test (fails the test on error). */
#define client_must_key(plan, out, len) client_must_key_at(__FILE__, __LINE__, plan, out, len)
void client_must_key_at(const char *file, int line, const char *plan, char *out, size_t len);

/* POST /sessions/create with body (NULL for "{}"); fails the test unless
 * 200 with a sessionId. Returns the id (caller frees). */
#define client_must_create(key, body) client_must_create_at(__FILE__, __LINE__, key, body)
char *client_must_create_at(const char *file, int line, const char *key, const char *body);

/* DELETE /sessions/{id}; fails the test unless 200. */
#define client_must_delete(key, id) client_must_delete_at(__FILE__, __LINE__, key, id)
void client_must_delete_at(const char *file, int line, const char *key, const char *id);

/* POST /execute of {"sessionId":id, "command":command} (command may be NULL)
 * merged with extra (borrowed, may be NULL); fails the test unless 200.
 * Returns the answer in out (release with client_resp_free). */
#define client_must_exec(key, id, command, extra, out)                                             \
	client_must_exec_at(__FILE__, __LINE__, key, id, command, extra, out)
void client_must_exec_at(const char *file, int line, const char *key, const char *id,
			 const char *command, const json_t *extra, struct client_resp *out);

/* Runs command and returns its stdout (caller frees); fails the test unless
 * the answer is 200 with exitCode 0. */
#define client_must_run(key, id, command) client_must_run_at(__FILE__, __LINE__, key, id, command)
char *client_must_run_at(const char *file, int line, const char *key, const char *id,
			 const char *command);
/* The same in a session of daemon d. */
#define client_must_run_on(d, key, id, command)                                                    \
	client_must_run_on_at(__FILE__, __LINE__, d, key, id, command)
char *client_must_run_on_at(const char *file, int line, const struct client_daemon *d,
			    const char *key, const char *id, const char *command);

/* Parses an ISO 8601 UTC timestamp "YYYY-MM-DDTHH:MM:SS[.fff]Z"; returns
 * false when s is not one. */
bool client_parse_time(const char *s, double *out);

/* The bytes of the SQLite store in dir: bunker.db and its WAL. */
long long client_store_bytes(const char *dir);

/* Seconds on the monotonic clock. */
double client_now(void);
