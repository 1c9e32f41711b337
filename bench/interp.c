/* Latency of the persistent interpreters, at the sandbox level (the
 * namespaces backend driven directly, no daemon or HTTP), against a fresh
 * process of the same language in the same sandbox, measured in the same
 * run.
 *
 *   interp [BUILD_DIR]     (default: the parent of this binary's directory)
 *   BENCH_N=200            iterations of each measurement
 *
 * For Python `print(1)`, bash `echo 1` and JavaScript `console.log(1)`:
 * p50 and p99 of a run in the warm interpreter (struct sbx_ops' run, after
 * warm-ups), of an execution of `python3 -c`, `bash -c` or `bun -e` with
 * the same code (struct sbx_ops' exec of a shell command that execs it),
 * and the ratio of the two medians. Issue 11's targets: a warm run at most
 * 2 ms at p50, and at most 0.2 of the fresh process. Needs root.
 */
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <unistd.h>

#include "sandbox/sandbox.h"
#include "util/util.h"

#define BUN_PATH "/opt/bunker/bun/bin/bun"
#define SESSION "ses_benchinterpaaaaaaaa"

static struct sbx_backend *backend;
static char bench_dir[64];
static char build[PATH_MAX];

static void fail(const char *what)
{
	fprintf(stderr, "bench: %s\n", what);
	exit(1);
}

static double ms_now(void)
{
	return (double)mono_us() / 1000;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* The nearest-rank percentile p of v[0..n), which it sorts. */
static double percentile(double *v, int n, double p)
{
	qsort(v, (size_t)n, sizeof(double), cmp_double);
	int k = (int)(p / 100 * n + 0.999999) - 1;
	return v[k < 0 ? 0 : k >= n ? n - 1 : k];
}

static void backend_open(void)
{
	snprintf(bench_dir, sizeof(bench_dir), "/tmp/bunker-bench-interp-XXXXXX");
	if (mkdtemp(bench_dir) == NULL)
		fail("cannot make a data directory");
	struct sbx_backend_config cfg = {0};
	snprintf(cfg.data_dir, sizeof(cfg.data_dir), "%s", bench_dir);
	snprintf(cfg.init_path, sizeof(cfg.init_path), "%s/bunker-init", build);
	snprintf(cfg.bun_path, sizeof(cfg.bun_path), "%s", BUN_PATH);
	struct bk_err err = BK_ERR_INIT;
	if (sbx_backend_open(&cfg, &backend, &err) < 0) {
		fprintf(stderr, "bench: %s\n", err.msg);
		fail("cannot open the sandbox backend");
	}
}

static void backend_close(void)
{
	backend->ops->close(backend);
	char run[128];
	snprintf(run, sizeof(run), "%s/run", bench_dir);
	umount2(run, MNT_DETACH);
	rm_rf(bench_dir, NULL);
}

/* Checks one answer: exit 0, stdout "1\n". */
static void check(const char *what, const struct sbx_exec_result *r)
{
	if (r->exit_code == 0 && r->out.data && strcmp(r->out.data, "1\n") == 0)
		return;
	fprintf(stderr, "bench: %s: exit %d, stdout '%s', stderr '%s'\n", what, r->exit_code,
		r->out.data ? r->out.data : "", r->err.data ? r->err.data : "");
	fail("a wrong answer");
}

/* n runs of code in the warm interpreter of lang (after warm-ups). */
static void bench_warm(struct sbx *s, enum sbx_language lang, const char *code, int n, double *ms)
{
	struct sbx_run_req req = {
	    .language = lang, .code = code, .timeout_ms = 30000, .output_max = 1 << 20};
	for (int i = -5; i < n; i++) {
		struct sbx_exec_result r;
		struct bk_err err = BK_ERR_INIT;
		double t0 = ms_now();
		if (backend->ops->run(s, &req, &r, &err) < 0) {
			fprintf(stderr, "bench: %s\n", err.msg);
			fail("a run failed");
		}
		if (i >= 0)
			ms[i] = ms_now() - t0;
		check(code, &r);
		sbx_exec_result_release(&r);
	}
}

/* n executions of the shell command cmd (after warm-ups). */
static void bench_fresh(struct sbx *s, const char *cmd, int n, double *ms)
{
	struct sbx_exec_req req = {
	    .program = SBX_PROGRAM_SHELL, .text = cmd, .timeout_ms = 30000, .output_max = 1 << 20};
	for (int i = -2; i < n; i++) {
		struct sbx_exec_result r;
		struct bk_err err = BK_ERR_INIT;
		double t0 = ms_now();
		if (backend->ops->exec(s, &req, &r, &err) < 0) {
			fprintf(stderr, "bench: %s\n", err.msg);
			fail("an execution failed");
		}
		if (i >= 0)
			ms[i] = ms_now() - t0;
		check(cmd, &r);
		sbx_exec_result_release(&r);
	}
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc > 1) {
		if (realpath(argv[1], build) == NULL)
			fail("no such build directory");
	} else {
		char exe[PATH_MAX];
		ssize_t l = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
		exe[l > 0 ? l : 0] = '\0';
		snprintf(build, sizeof(build), "%s", dirname(dirname(exe)));
	}
	if (geteuid() != 0)
		fail("sandboxes need root");
	const char *nv = getenv("BENCH_N");
	int n = nv && atoi(nv) > 0 ? atoi(nv) : 200;
	printf("interpreters of %s, N=%d\n", build, n);
	backend_open();
	/* One whole core, as bench.c gives its executions. */
	struct sbx_limits lim = {.memory_mb = 1024, .cpu = 1, .disk_mb = 256, .pids = 256};
	struct sbx *s;
	struct bk_err err = BK_ERR_INIT;
	if (backend->ops->start(backend, SESSION, &lim, &s, &err) < 0) {
		fprintf(stderr, "bench: %s\n", err.msg);
		fail("cannot start a sandbox");
	}

	static const struct {
		const char *name, *fresh_name;
		enum sbx_language lang;
		const char *code, *fresh;
	} cases[] = {
	    {"python: warm print(1)", "python: python3 -c 'print(1)'", SBX_LANG_PYTHON, "print(1)",
	     "exec python3 -c 'print(1)'"},
	    {"bash: warm echo 1", "bash: bash -c 'echo 1'", SBX_LANG_BASH, "echo 1",
	     "exec bash -c 'echo 1'"},
	    {"javascript: warm console.log(1)", "javascript: bun -e 'console.log(1)'",
	     SBX_LANG_JAVASCRIPT, "console.log(1)", "exec bun -e 'console.log(1)'"},
	};
	enum { N_CASES = sizeof(cases) / sizeof(cases[0]) };
	double p50[2 * N_CASES], p99[2 * N_CASES];
	double *v = calloc((size_t)n, sizeof(double));
	for (int c = 0; c < N_CASES; c++) {
		bench_warm(s, cases[c].lang, cases[c].code, n, v);
		p50[2 * c] = percentile(v, n, 50), p99[2 * c] = percentile(v, n, 99);
		bench_fresh(s, cases[c].fresh, n, v);
		p50[2 * c + 1] = percentile(v, n, 50), p99[2 * c + 1] = percentile(v, n, 99);
	}
	free(v);
	backend->ops->stop(s);
	backend->ops->purge(backend, SESSION, NULL);
	backend_close();

	printf("\n%-40s %9s %9s\n", "operation", "p50 ms", "p99 ms");
	for (int c = 0; c < N_CASES; c++) {
		printf("%-40s %9.3f %9.3f\n", cases[c].name, p50[2 * c], p99[2 * c]);
		printf("%-40s %9.3f %9.3f\n", cases[c].fresh_name, p50[2 * c + 1], p99[2 * c + 1]);
	}
	printf("\nwarm p50 / fresh p50 (issue 11: warm p50 <= 2 ms and <= 0.2x):\n");
	for (int c = 0; c < N_CASES; c++) {
		double w = p50[2 * c], f = p50[2 * c + 1];
		printf("  %-32s %.3f / %.3f ms = %.3fx  %s\n", cases[c].name, w, f, w / f,
		       w <= 2 && w / f <= 0.2 ? "met" : "NOT met");
	}
	return 0;
}
