/* What the benchmarks share: a bunkerd of their own on a free loopback port
 * with a fresh data directory, keys made with the CLI, HTTP requests timed
 * with libcurl, and tables of median, p99 and mean.
 *
 * One daemon per process: its state lives in the globals below, which the
 * programs read (and must not write). Every helper that fails dies (see
 * die()): a benchmark that cannot measure has nothing to report.
 */
#ifndef BENCH_COMMON_H
#define BENCH_COMMON_H

#include <jansson.h>
#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* The build directory, absolute: its bunkerd, bunker and bunker-init. */
extern char build[PATH_MAX];
/* The daemon's data directory; empty before start_daemon() and once
 * stop_daemon() has removed it. */
extern char data_dir[64];
/* The daemon's log (its stderr and the CLI's); kept when a run dies. */
extern char log_path[128];
/* The daemon, 0 when none runs, and the loopback port it listens on. */
extern pid_t daemon_pid;
extern int daemon_port;
/* When true, http() opens a new connection for each request and closes it
 * after, as an SDK that makes a client per call does (default false:
 * one kept-alive connection). */
extern bool http_fresh_connection;
/* Answers 429 that http() waited out (not timed). */
extern int rate_limited;

/* Milliseconds on the monotonic clock. */
double now_ms(void);

/* Sleeps ms milliseconds, through signals. */
void sleep_ms(double ms);

/* Prints "bench: <what>", stops the daemon, says where its log is kept and
 * exits 1. */
void die(const char *what) __attribute__((noreturn));

/* Makes stdout line-buffered and sets build to argv[1] when given, else to
 * the parent of this binary's directory. Exits 1 when it cannot. */
void bench_init(int argc, char **argv);

/* The environment variable name as an integer, def when unset or empty.
 * Exits 1 with a message when it lies outside min..max. */
int env_int(const char *name, int def, int min, int max);

/* Starts bunkerd of build on a free loopback port with a fresh data
 * directory and waits (30 s at most) until it answers GET /healthz.
 * extra_args: more bunkerd arguments, NULL-terminated (borrowed; NULL for
 * none). request_timeout_s bounds each http() request; stop_timeout_s is
 * how long stop_daemon() waits after SIGTERM before SIGKILL. Exits 1 unless
 * root; ignores SIGPIPE. */
void start_daemon(const char *const extra_args[], long request_timeout_s, long stop_timeout_s);

/* Stops the daemon (SIGTERM, then SIGKILL after the stop timeout), detaches
 * what it left mounted under its data directory and removes that. Safe to
 * call again, and when no daemon was started; start_daemon() may follow
 * (a new daemon, on a new port and data directory, logging to the same
 * log). */
void stop_daemon(void);

/* Stops the daemon if it still runs, frees the curl handle and removes the
 * log. The last call of a run that succeeded. */
void bench_cleanup(void);

/* One request to the daemon: method on path (with its query), key as the
 * bearer token when not NULL, body as JSON when not NULL. Returns the
 * status, 0 on a transport error, which is logged on stderr as is any
 * status but 200. With json, *json is the body parsed (a new reference;
 * NULL when it is not JSON); with ms, *ms the request's duration. Waits out
 * a 429 (once a second, outside the timing) and repeats. */
long http(const char *method, const char *path, const char *key, const char *body, json_t **json,
	  double *ms);

/* Mount points under data_dir, -1 when the mount table cannot be read; with
 * detach, detaches each (MNT_DETACH of a parent takes its children along). */
int data_dir_mounts(bool detach);

/* A new key of plan ("free", "paid", "enterprise") from `bunker keys create`
 * into out (len bytes). Dies when the CLI fails or the key does not fit. */
void key_create(const char *plan, char *out, size_t len);

/* The same with overrides: more `bunker keys create` arguments
 * (NULL-terminated; borrowed), e.g. {"--max-sessions", "2500", NULL}. */
void key_create_with(const char *plan, const char *const overrides[], char *out, size_t len);

/* POST /sessions/create with body (NULL for none); returns the session's id
 * (caller frees) and, with ms, the request's duration. Dies unless 200. */
char *create_session(const char *key, const char *body, double *ms);

/* DELETE /sessions/{id}; with ms, the request's duration. Dies unless
 * 200. */
void delete_session(const char *key, const char *id, double *ms);

/* POST /execute of command in session id (timeout_s, files: an array of
 * {path, content} or NULL, taken); returns its stdout (caller frees). Dies
 * unless it exits 0. */
char *session_run(const char *key, const char *id, const char *command, int timeout_s,
		  json_t *files);

/* Runs command on the host (sh -c); returns its stdout (caller frees).
 * Dies unless it exits 0. */
char *host_run(const char *command);

/* Median, p99 (nearest rank) and mean of n values; ok is false when n is
 * 0. */
struct stats {
	const char *name; /* borrowed */
	int n;
	double p50, p99, mean;
	bool ok;
};

/* Sorts v[0..n) ascending. */
void sort_values(double *v, int n);

/* The q-quantile (0 < q <= 1) of the sorted v[0..n) by nearest rank. */
double nearest_rank(const double *v, int n, double q);

/* The stats of v[0..n) under name (borrowed); sorts v in place. */
struct stats summarise(const char *name, double *v, int n);

/* The layout of a table of stats: the widths of its first two columns. */
struct stats_table {
	int name_width;
	int n_width;
};

/* The table's header line: operation, n, p50 ms, p99 ms, mean ms. */
void stats_print_header(const struct stats_table *t);

/* One row of s ("-" and "n/a" when it has no values), then note after two
 * spaces when not NULL. */
void stats_print_row(const struct stats_table *t, const struct stats *s, const char *note);

#endif
