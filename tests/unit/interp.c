/* Persistent interpreters (struct sbx_ops' run): real sandboxes driven
 * directly, as tests/unit/sandbox.c does. Needs root. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../harness.h"
#include "../sbx_fixture.h"
#include "util/util.h"

static struct sbx_backend *backend;

int harness_setup(void)
{
	return sbx_fixture_harness_setup();
}

void harness_teardown(void)
{
	sbx_fixture_harness_teardown();
}

static const char *const lang_names[] = {"python", "bash", "javascript", "typescript"};

static const char *text(const struct buf *b)
{
	return b->data ? b->data : "";
}

/* Runs code in s's interpreter of lang; the result is the caller's. */
static struct sbx_exec_result run_in(struct sbx *s, enum sbx_language lang, const char *code,
				     int64_t timeout_ms, bool fresh)
{
	struct sbx_run_req req = {.language = lang,
				  .code = code,
				  .timeout_ms = timeout_ms,
				  .output_max = 1 << 20,
				  .fresh = fresh};
	struct sbx_exec_result res;
	struct bk_err err = BK_ERR_INIT;
	CHECK_MSG(backend->ops->run(s, &req, &res, &err) == 0, "%s: %s", lang_names[lang], err.msg);
	return res;
}

static struct sbx_exec_result run(struct sbx *s, enum sbx_language lang, const char *code)
{
	return run_in(s, lang, code, 20000, false);
}

/* Runs code and checks that it succeeds, printing want. */
static void expect(struct sbx *s, enum sbx_language lang, const char *code, const char *want)
{
	struct sbx_exec_result r = run(s, lang, code);
	CHECK_MSG(r.exit_code == 0 && strcmp(text(&r.out), want) == 0,
		  "%s: '%s' exited %d printing '%s' (stderr '%s'), not '%s'", lang_names[lang],
		  code, r.exit_code, text(&r.out), text(&r.err), want);
	sbx_exec_result_release(&r);
}

/* Runs a shell command as an execution (not an interpreter): for looking
 * at the sandbox from beside the interpreters. */
static char *sh(struct sbx *s, const char *cmd)
{
	struct sbx_exec_req req = {
	    .program = SBX_PROGRAM_SHELL, .text = cmd, .timeout_ms = 60000, .output_max = 1 << 20};
	struct sbx_exec_result r;
	struct bk_err err = BK_ERR_INIT;
	CHECK_MSG(backend->ops->exec(s, &req, &r, &err) == 0, "%s", err.msg);
	char *out = strdup(text(&r.out));
	sbx_exec_result_release(&r);
	return out;
}

/* Whether some process of s has a command line containing what. */
static bool ps_has(struct sbx *s, const char *what)
{
	struct sbx_proc *procs;
	size_t n;
	struct bk_err err = BK_ERR_INIT;
	CHECK_MSG(backend->ops->ps(s, &procs, &n, &err) == 0, "%s", err.msg);
	bool found = false;
	for (size_t i = 0; i < n; i++)
		found |= strstr(procs[i].command, what) != NULL;
	free(procs);
	return found;
}

/* Whether stderr's last line says what (the service's note). */
static bool last_line_says(const struct sbx_exec_result *r, const char *what)
{
	const char *e = text(&r->err);
	size_t n = strlen(e);
	if (n == 0 || e[n - 1] != '\n')
		return false;
	const char *start = e + n - 1;
	while (start > e && start[-1] != '\n')
		start--;
	return strstr(start, what) != NULL;
}

static struct sbx *open_and_start(const char *id)
{
	backend = sbx_fixture_open();
	return sbx_fixture_start(id, NULL);
}

static void stop_and_close(struct sbx *s)
{
	sbx_fixture_stop(s);
	sbx_fixture_close();
}

/* ---- state ---- */

/* A counter kept across 100 runs of each language, and what each
 * language keeps besides: the run after the first does not start an
 * interpreter. */
TEST_TIMEOUT(interp_state_persists_across_100_runs, 120)
{
	struct sbx *s = open_and_start("ses_interpaaaaaaaaaaaaaa");
	static const char *const init[] = {"n = 0", "n=0", "let n = 0", "let n: number = 0"};
	static const char *const step[] = {"n += 1\nprint(n)", "n=$((n+1)); echo $n",
					   "n += 1; console.log(n)",
					   "n = (n as number) + 1; console.log(n)"};
	for (int lang = 0; lang < SBX_LANG_COUNT; lang++) {
		struct sbx_exec_result r = run(s, lang, init[lang]);
		CHECK_MSG(r.exit_code == 0 && r.interp_started, "%s: first run: exit %d",
			  lang_names[lang], r.exit_code);
		CHECK_STR_EQ(text(&r.out), "");
		sbx_exec_result_release(&r);
		for (int i = 1; i <= 100; i++) {
			char want[32];
			snprintf(want, sizeof(want), "%d\n", i);
			r = run(s, lang, step[lang]);
			CHECK_MSG(r.exit_code == 0 && strcmp(text(&r.out), want) == 0 &&
				      !r.interp_started && !r.interp_lost,
				  "%s run %d: exit %d, '%s' (stderr '%s')", lang_names[lang], i,
				  r.exit_code, text(&r.out), text(&r.err));
			sbx_exec_result_release(&r);
		}
	}
	/* Python: imports, functions, classes; a bare last expression shows
	 * its repr, None shows nothing. */
	expect(s, SBX_LANG_PYTHON,
	       "import json\ndef twice(x):\n    return 2 * x\nclass K:\n    k = 7", "");
	expect(s, SBX_LANG_PYTHON, "print(json.dumps([twice(n)]), K.k)", "[200] 7\n");
	expect(s, SBX_LANG_PYTHON, "'a' + 'b'", "'ab'\n");
	expect(s, SBX_LANG_PYTHON, "None", "");
	expect(s, SBX_LANG_PYTHON, "import asyncio\nawait asyncio.sleep(0)\nn", "100\n");
	/* bash: the working directory, exports, functions, aliases. */
	expect(s, SBX_LANG_BASH,
	       "cd /tmp; export GREETING=hi; f() { echo f$1; }; alias ll='echo LL'", "");
	expect(s, SBX_LANG_BASH, "pwd; sh -c 'echo $GREETING'; f 1; ll", "/tmp\nhi\nf1\nLL\n");
	/* Code is not input to an interactive shell: no history expansion. */
	expect(s, SBX_LANG_BASH, "echo 'a!b' \"c!\"", "a!b c!\n");
	/* set -e in one run does not end the shell. */
	expect(s, SBX_LANG_BASH, "set -e; false; echo after", "after\n");
	expect(s, SBX_LANG_BASH, "echo $n", "100\n");
	/* JavaScript/TypeScript: functions, imports, top-level await; the
	 * value of a last expression, not of a declaration. */
	free(sh(s, "echo 'export const m = 3' > mod.mjs"));
	expect(s, SBX_LANG_JAVASCRIPT,
	       "function g() { return 5 }\nimport path from 'node:path'\nimport { m } from "
	       "'./mod.mjs'",
	       "");
	expect(s, SBX_LANG_JAVASCRIPT, "m", "3\n");
	expect(s, SBX_LANG_JAVASCRIPT, "const v = await Promise.resolve(g()); path.join('a', 'b')",
	       "\"a/b\"\n");
	expect(s, SBX_LANG_JAVASCRIPT, "v + n", "105\n");
	expect(s, SBX_LANG_TYPESCRIPT, "interface P { x: number }\nconst p: P = { x: 2 }", "");
	expect(s, SBX_LANG_TYPESCRIPT, "p.x * n", "200\n");
	/* JavaScript and TypeScript are interpreters of their own. */
	expect(s, SBX_LANG_JAVASCRIPT, "typeof p", "\"undefined\"\n");
	stop_and_close(s);
}

/* Errors are results: the interpreter and its state stay. */
TEST(interp_errors_keep_the_interpreter)
{
	struct sbx *s = open_and_start("ses_interpbbbbbbbbbbbbbb");
	expect(s, SBX_LANG_PYTHON, "x = 1", "");
	struct sbx_exec_result r = run(s, SBX_LANG_PYTHON, "print('before')\n1 / 0");
	CHECK_INT_EQ(r.exit_code, 1);
	CHECK_STR_EQ(text(&r.out), "before\n");
	CHECK_MSG(strstr(text(&r.err), "ZeroDivisionError") && strstr(text(&r.err), "line 2") &&
		      !strstr(text(&r.err), "python.py"),
		  "traceback: %s", text(&r.err));
	CHECK(!r.interp_lost);
	sbx_exec_result_release(&r);
	r = run(s, SBX_LANG_PYTHON, "def (");
	CHECK_INT_EQ(r.exit_code, 1);
	CHECK(strstr(text(&r.err), "SyntaxError") != NULL);
	sbx_exec_result_release(&r);
	expect(s, SBX_LANG_PYTHON, "x", "1\n");
	r = run(s, SBX_LANG_JAVASCRIPT, "let q = 2; throw new Error('boom')");
	CHECK_INT_EQ(r.exit_code, 1);
	CHECK(strstr(text(&r.err), "boom") != NULL);
	sbx_exec_result_release(&r);
	expect(s, SBX_LANG_JAVASCRIPT, "q", "2\n");
	r = run(s, SBX_LANG_BASH, "false");
	CHECK_INT_EQ(r.exit_code, 1);
	sbx_exec_result_release(&r);
	stop_and_close(s);
}

/* Code far larger than a pipe holds reaches each driver whole, without
 * init ever waiting on it. */
TEST(interp_large_code_arrives_whole)
{
	struct sbx *s = open_and_start("ses_interpmmmmmmmmmmmmmm");
	static const char *const head[] = {"x = '", "x='", "const x = '", "const x: string = '"};
	static const char *const tail[] = {"'\nprint(len(x))", "'; echo ${#x}",
					   "'; console.log(x.length)", "'; console.log(x.length)"};
	size_t n = 1 << 20;
	char *big = malloc(n + 1);
	memset(big, 'a', n);
	big[n] = '\0';
	char *code = malloc(n + 64);
	for (int lang = 0; lang < SBX_LANG_COUNT; lang++) {
		snprintf(code, n + 64, "%s%s%s", head[lang], big, tail[lang]);
		int64_t t0 = mono_us();
		expect(s, lang, code, "1048576\n");
		printf("    %s: 1 MiB of code in %lld ms\n", lang_names[lang],
		       (long long)(mono_us() - t0) / 1000);
	}
	free(code);
	free(big);
	stop_and_close(s);
}

/* ---- exits and crashes ---- */

/* A run that ends its interpreter is answered with the exit code (128 +
 * the signal) and the next run gets a new interpreter. */
TEST(interp_exit_and_crash_are_answered_and_replaced)
{
	struct sbx *s = open_and_start("ses_interpcccccccccccccc");
	static const struct {
		enum sbx_language lang;
		const char *set, *end, *probe, *want;
		int code;
	} cases[] = {
	    {SBX_LANG_PYTHON, "x = 1", "print('bye')\nimport sys; sys.exit(3)",
	     "print('x' in globals())", "False\n", 3},
	    {SBX_LANG_PYTHON, "x = 1", "import os; os.kill(os.getpid(), 11)",
	     "print('x' in globals())", "False\n", 139},
	    {SBX_LANG_JAVASCRIPT, "var x = 1", "console.log('bye'); process.exit(2)", "typeof x",
	     "\"undefined\"\n", 2},
	    {SBX_LANG_TYPESCRIPT, "var x: number = 1", "process.exit(5)", "typeof x",
	     "\"undefined\"\n", 5},
	    {SBX_LANG_BASH, "x=1", "echo bye; exit 4", "echo \"[$x]\"", "[]\n", 4},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		expect(s, cases[i].lang, cases[i].set, "");
		struct sbx_exec_result r = run(s, cases[i].lang, cases[i].end);
		CHECK_MSG(r.exit_code == cases[i].code && r.interp_lost,
			  "%s '%s': exit %d (lost %d), stderr '%s'", lang_names[cases[i].lang],
			  cases[i].end, r.exit_code, r.interp_lost, text(&r.err));
		if (strstr(cases[i].end, "bye"))
			CHECK_STR_EQ(text(&r.out), "bye\n");
		if (cases[i].code > 128)
			CHECK_MSG(r.signal == cases[i].code - 128 &&
				      last_line_says(&r, "died of signal 11"),
				  "stderr '%s'", text(&r.err));
		sbx_exec_result_release(&r);
		r = run(s, cases[i].lang, cases[i].probe);
		CHECK_MSG(r.exit_code == 0 && r.interp_started && !r.interp_lost &&
			      strcmp(text(&r.out), cases[i].want) == 0,
			  "%s after the end: exit %d, '%s' (stderr '%s')",
			  lang_names[cases[i].lang], r.exit_code, text(&r.out), text(&r.err));
		sbx_exec_result_release(&r);
	}
	stop_and_close(s);
}

/* An interpreter that dies before it is ready answers the run that
 * started it with what it said; the next run starts another. The env is
 * an interpreter's from its start. */
TEST(interp_start_failure_is_answered)
{
	struct sbx *s = open_and_start("ses_interpnnnnnnnnnnnnnn");
	const char *const broken[] = {"PYTHONHOME=/nonexistent", NULL};
	struct sbx_run_req req = {.language = SBX_LANG_PYTHON,
				  .code = "print(1)",
				  .envp = broken,
				  .timeout_ms = 20000,
				  .output_max = 1 << 20};
	struct sbx_exec_result r;
	struct bk_err err = BK_ERR_INIT;
	CHECK_MSG(backend->ops->run(s, &req, &r, &err) == 0, "%s", err.msg);
	CHECK_MSG(r.exit_code != 0 && r.interp_lost && r.interp_started &&
		      strstr(text(&r.err), "encodings"),
		  "exit %d, stderr '%s'", r.exit_code, text(&r.err));
	sbx_exec_result_release(&r);
	const char *const mine[] = {"GREETING=hello", NULL};
	req.envp = mine;
	req.code = "import os\nprint(os.environ['GREETING'])";
	CHECK_MSG(backend->ops->run(s, &req, &r, &err) == 0, "%s", err.msg);
	CHECK_STR_EQ(text(&r.out), "hello\n");
	sbx_exec_result_release(&r);
	/* A later run's env does not reach an interpreter that runs. */
	const char *const other[] = {"GREETING=bye", NULL};
	req.envp = other;
	CHECK_MSG(backend->ops->run(s, &req, &r, &err) == 0, "%s", err.msg);
	CHECK_STR_EQ(text(&r.out), "hello\n");
	sbx_exec_result_release(&r);
	stop_and_close(s);
}

/* ---- timeouts ---- */

/* An endless loop is interrupted at the timeout: 124, the output so far,
 * the service's line last, and the state from before it kept. */
TEST(interp_timeout_interrupts_and_keeps_state)
{
	struct sbx *s = open_and_start("ses_interpdddddddddddddd");
	static const struct {
		enum sbx_language lang;
		const char *set, *loop, *probe, *want;
	} cases[] = {
	    {SBX_LANG_PYTHON, "x = 41", "print('looping', flush=True)\nwhile True: pass",
	     "print(x + 1)", "42\n"},
	    {SBX_LANG_PYTHON, "x = 41", "import time\ntime.sleep(100)", "print(x + 1)", "42\n"},
	    {SBX_LANG_BASH, "y=7", "echo looping; while :; do :; done", "echo $y", "7\n"},
	    {SBX_LANG_BASH, "y=7", "sleep 100", "echo $y", "7\n"},
	    {SBX_LANG_JAVASCRIPT, "let z = 3", "console.log('looping'); while (true) {}",
	     "console.log(z)", "3\n"},
	    {SBX_LANG_JAVASCRIPT, "let z = 3", "await new Promise((r) => setTimeout(r, 100000))",
	     "console.log(z)", "3\n"},
	    {SBX_LANG_TYPESCRIPT, "let t: number = 9", "for (;;) {}", "console.log(t)", "9\n"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		expect(s, cases[i].lang, cases[i].set, "");
		int64_t t0 = mono_us();
		struct sbx_exec_result r = run_in(s, cases[i].lang, cases[i].loop, 500, false);
		int64_t took_ms = (mono_us() - t0) / 1000;
		CHECK_MSG(r.exit_code == 124 && r.timed_out && !r.interp_lost &&
			      last_line_says(&r, "timed out after 0.5 s and was interrupted"),
			  "%s '%s': exit %d (lost %d) in %lld ms, stderr '%s'",
			  lang_names[cases[i].lang], cases[i].loop, r.exit_code, r.interp_lost,
			  (long long)took_ms, text(&r.err));
		CHECK_MSG(took_ms >= 450 && took_ms < 1400, "interrupted after %lld ms",
			  (long long)took_ms);
		if (strstr(cases[i].loop, "looping"))
			CHECK_STR_EQ(text(&r.out), "looping\n");
		sbx_exec_result_release(&r);
		expect(s, cases[i].lang, cases[i].probe, cases[i].want);
	}
	stop_and_close(s);
}

/* A run that ends just as its timeout fires: the SIGINT may reach the
 * driver after its answer, between two runs; it must not interrupt the
 * next one. */
TEST_TIMEOUT(interp_late_interrupt_spares_the_next_run, 120)
{
	struct sbx *s = open_and_start("ses_interpoooooooooooooo");
	static const char *const racer[] = {"import time\ntime.sleep(0.1)", "sleep 0.1",
					    "await Bun.sleep(100)", "await Bun.sleep(100)"};
	static const char *const next[] = {"print('ok')", "echo ok", "console.log('ok')",
					   "console.log('ok')"};
	for (int lang = 0; lang < SBX_LANG_COUNT; lang++) {
		for (int i = 0; i < 40; i++) {
			struct sbx_exec_result r = run_in(s, lang, racer[lang], 100 + i % 5, false);
			sbx_exec_result_release(&r);
			r = run(s, lang, next[lang]);
			CHECK_MSG(r.exit_code == 0 && strcmp(text(&r.out), "ok\n") == 0,
				  "%s, round %d: exit %d, '%s' (stderr '%s')", lang_names[lang], i,
				  r.exit_code, text(&r.out), text(&r.err));
			sbx_exec_result_release(&r);
		}
	}
	stop_and_close(s);
}

/* An interpreter that ignores SIGINT is killed a second after it, its
 * state lost and said so; the next run gets a new one. */
TEST(interp_ignoring_the_interrupt_is_killed_after_a_second)
{
	struct sbx *s = open_and_start("ses_interpeeeeeeeeeeeeee");
	expect(s, SBX_LANG_PYTHON,
	       "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nx = 1", "");
	int64_t t0 = mono_us();
	struct sbx_exec_result r = run_in(s, SBX_LANG_PYTHON, "while True: pass", 300, false);
	int64_t took_ms = (mono_us() - t0) / 1000;
	CHECK_MSG(r.exit_code == 124 && r.timed_out && r.interp_lost &&
		      last_line_says(&r, "did not stop within 1 s") &&
		      last_line_says(&r, "state is lost"),
		  "exit %d (lost %d), stderr '%s'", r.exit_code, r.interp_lost, text(&r.err));
	CHECK_MSG(took_ms >= 1250 && took_ms < 2500, "answered after %lld ms", (long long)took_ms);
	sbx_exec_result_release(&r);
	r = run(s, SBX_LANG_PYTHON, "print('x' in globals())");
	CHECK_STR_EQ(text(&r.out), "False\n");
	CHECK(r.interp_started);
	sbx_exec_result_release(&r);
	/* bash, trapping it. */
	expect(s, SBX_LANG_BASH, "trap '' INT; v=1", "");
	r = run_in(s, SBX_LANG_BASH, "while :; do :; done", 300, false);
	CHECK(r.timed_out && r.interp_lost);
	sbx_exec_result_release(&r);
	expect(s, SBX_LANG_BASH, "echo \"[$v]\"", "[]\n");
	stop_and_close(s);
}

static bool cancel_after_300ms(void *ctx)
{
	return mono_us() - *(int64_t *)ctx > 300000;
}

/* A caller that goes away interrupts its run as a timeout would, without
 * the timeout's answer: 130, the state kept. */
TEST(interp_cancel_interrupts_the_run)
{
	struct sbx *s = open_and_start("ses_interpllllllllllllll");
	expect(s, SBX_LANG_PYTHON, "x = 5", "");
	int64_t t0 = mono_us();
	struct sbx_run_req req = {.language = SBX_LANG_PYTHON,
				  .code = "import time\ntime.sleep(100)",
				  .timeout_ms = 20000,
				  .output_max = 1 << 20,
				  .cancelled = cancel_after_300ms,
				  .ctx = &t0};
	struct sbx_exec_result r;
	struct bk_err err = BK_ERR_INIT;
	CHECK_MSG(backend->ops->run(s, &req, &r, &err) == 0, "%s", err.msg);
	CHECK_MSG(r.exit_code == 130 && !r.timed_out && !r.interp_lost, "exit %d, stderr '%s'",
		  r.exit_code, text(&r.err));
	CHECK_MSG(mono_us() - t0 < 2000000, "answered after %lld ms",
		  (long long)(mono_us() - t0) / 1000);
	sbx_exec_result_release(&r);
	expect(s, SBX_LANG_PYTHON, "x", "5\n");
	stop_and_close(s);
}

/* ---- concurrency ---- */

struct fresh_job {
	struct sbx *s;
	const char *code;
	bool fresh;
	struct sbx_exec_result r;
};

static void *fresh_job_main(void *arg)
{
	struct fresh_job *j = arg;
	j->r = run_in(j->s, SBX_LANG_PYTHON, j->code, 30000, j->fresh);
	return NULL;
}

/* Runs the jobs at once and waits for them; returns how long it took, ms. */
static int64_t run_together(struct fresh_job *jobs, int n)
{
	pthread_t th[8];
	int64_t t0 = mono_us();
	for (int i = 0; i < n; i++)
		CHECK(pthread_create(&th[i], NULL, fresh_job_main, &jobs[i]) == 0);
	for (int i = 0; i < n; i++)
		pthread_join(th[i], NULL);
	return (mono_us() - t0) / 1000;
}

/* Fresh runs run in parallel in interpreters of their own; their output
 * never mixes; runs of the persistent interpreter queue. */
TEST(interp_fresh_runs_are_parallel_and_apart)
{
	struct sbx *s = open_and_start("ses_interpffffffffffffff");
	expect(s, SBX_LANG_PYTHON, "secret = 1", "");
	const char *code_a = "import sys, time\nfor i in range(300):\n"
			     "    print('A' * 50); print('a' * 50, file=sys.stderr)\n"
			     "    time.sleep(0.002)\nprint('secret' in globals())";
	const char *code_b = "import sys, time\nfor i in range(300):\n"
			     "    print('B' * 50); print('b' * 50, file=sys.stderr)\n"
			     "    time.sleep(0.002)\nprint('secret' in globals())";
	struct fresh_job jobs[2] = {{s, code_a, true, {0}}, {s, code_b, true, {0}}};
	run_together(jobs, 2);
	for (int i = 0; i < 2; i++) {
		char up = i ? 'B' : 'A', low = i ? 'b' : 'a';
		const char *o = text(&jobs[i].r.out), *e = text(&jobs[i].r.err);
		CHECK_MSG(jobs[i].r.exit_code == 0 && jobs[i].r.interp_started, "exit %d: %s",
			  jobs[i].r.exit_code, e);
		CHECK_INT_EQ(strlen(o), 300 * 51 + 6);
		CHECK_INT_EQ(strlen(e), 300 * 51);
		CHECK(strcmp(o + 300 * 51, "False\n") == 0);
		for (size_t k = 0; k < 300 * 51; k++)
			CHECK_MSG(o[k] == up || o[k] == '\n', "run %c's stdout has '%c'", up, o[k]);
		for (size_t k = 0; k < 300 * 51; k++)
			CHECK_MSG(e[k] == low || e[k] == '\n', "run %c's stderr has '%c'", up,
				  e[k]);
		sbx_exec_result_release(&jobs[i].r);
	}
	/* In parallel: two one-second runs take about a second; on the
	 * persistent interpreter they queue, one after the other, in order. */
	const char *sleeper = "import time\ntime.sleep(1)";
	struct fresh_job two[2] = {{s, sleeper, true, {0}}, {s, sleeper, true, {0}}};
	int64_t ms = run_together(two, 2);
	CHECK_MSG(ms < 1900, "two fresh one-second runs took %lld ms", (long long)ms);
	for (int i = 0; i < 2; i++)
		sbx_exec_result_release(&two[i].r);
	expect(s, SBX_LANG_PYTHON, "order = []", "");
	const char *queued = "import time\ntime.sleep(0.5)\norder.append(1)";
	struct fresh_job serial[2] = {{s, queued, false, {0}}, {s, queued, false, {0}}};
	ms = run_together(serial, 2);
	CHECK_MSG(ms >= 1000, "two queued half-second runs took %lld ms", (long long)ms);
	for (int i = 0; i < 2; i++) {
		CHECK_INT_EQ(serial[i].r.exit_code, 0);
		sbx_exec_result_release(&serial[i].r);
	}
	expect(s, SBX_LANG_PYTHON, "order", "[1, 1]\n");
	stop_and_close(s);
}

/* At most 8 fresh interpreters at once: the ninth is refused as a limit. */
TEST(interp_fresh_interpreters_are_bounded)
{
	struct sbx *s = open_and_start("ses_interpgggggggggggggg");
	struct fresh_job jobs[8];
	for (int i = 0; i < 8; i++)
		jobs[i] = (struct fresh_job){s, "import time\ntime.sleep(3)", true, {0}};
	pthread_t th[8];
	for (int i = 0; i < 8; i++)
		CHECK(pthread_create(&th[i], NULL, fresh_job_main, &jobs[i]) == 0);
	/* Until all eight run. */
	for (int tries = 0; tries < 100; tries++) {
		char *n = sh(s, "pgrep -c -f drivers/python.py");
		bool all = atoi(n) >= 8;
		free(n);
		if (all)
			break;
		usleep(50000);
	}
	struct sbx_run_req req = {.language = SBX_LANG_PYTHON,
				  .code = "1",
				  .timeout_ms = 5000,
				  .output_max = 1024,
				  .fresh = true};
	struct sbx_exec_result r;
	struct bk_err err = BK_ERR_INIT;
	CHECK(backend->ops->run(s, &req, &r, &err) < 0);
	CHECK_INT_EQ(err.kind, BK_E_LIMIT);
	sbx_exec_result_release(&r);
	for (int i = 0; i < 8; i++) {
		pthread_join(th[i], NULL);
		CHECK_INT_EQ(jobs[i].r.exit_code, 0);
		sbx_exec_result_release(&jobs[i].r);
	}
	stop_and_close(s);
}

/* ---- the session's processes ---- */

/* Interpreters are processes of the session: listed, and ended by kill
 * of every process, a run in flight included; the next run gets a new
 * one. */
TEST(interp_kill_all_ends_interpreters)
{
	struct sbx *s = open_and_start("ses_interphhhhhhhhhhhhhh");
	expect(s, SBX_LANG_PYTHON, "x = 1", "");
	expect(s, SBX_LANG_BASH, "x=1", "");
	CHECK(ps_has(s, "python3 /opt/bunker/drivers/python.py"));
	CHECK(ps_has(s, "bash --noprofile --noediting --rcfile /opt/bunker/drivers/bash.sh -i"));
	struct fresh_job job = {s, "import time\ntime.sleep(30)", false, {0}};
	pthread_t th;
	CHECK(pthread_create(&th, NULL, fresh_job_main, &job) == 0);
	usleep(500000);
	struct bk_err err = BK_ERR_INIT;
	CHECK_MSG(backend->ops->kill(s, 0, &err) == 0, "%s", err.msg);
	pthread_join(th, NULL);
	CHECK_MSG(job.r.exit_code == 137 && job.r.interp_lost &&
		      last_line_says(&job.r, "died of signal 9"),
		  "exit %d, stderr '%s'", job.r.exit_code, text(&job.r.err));
	sbx_exec_result_release(&job.r);
	usleep(100000);
	CHECK(!ps_has(s, "drivers/python.py"));
	CHECK(!ps_has(s, "drivers/bash.sh"));
	struct sbx_exec_result r = run(s, SBX_LANG_PYTHON, "print('x' in globals())");
	CHECK_STR_EQ(text(&r.out), "False\n");
	CHECK(r.interp_started);
	sbx_exec_result_release(&r);
	expect(s, SBX_LANG_BASH, "echo \"[$x]\"", "[]\n");
	stop_and_close(s);
}

/* What a run starts in the background keeps running, and does not keep
 * the run from its answer, even holding the interpreter's output. */
TEST(interp_background_processes_outlive_the_run)
{
	struct sbx *s = open_and_start("ses_interpiiiiiiiiiiiiii");
	int64_t t0 = mono_us();
	expect(s, SBX_LANG_BASH, "nohup sleep 101 >/dev/null 2>&1 &", "");
	expect(s, SBX_LANG_BASH, "sleep 102 & echo started", "started\n");
	expect(s, SBX_LANG_PYTHON, "import subprocess\np = subprocess.Popen(['sleep', '103'])", "");
	expect(s, SBX_LANG_JAVASCRIPT, "Bun.spawn(['sleep', '104']); 0", "0\n");
	CHECK_MSG(mono_us() - t0 < 5000000, "the runs took %lld ms",
		  (long long)(mono_us() - t0) / 1000);
	expect(s, SBX_LANG_BASH, "echo next", "next\n");
	char *left = sh(s, "pgrep -a -x sleep | sed 's/^[0-9]* //' | sort | tr '\\n' ' '");
	CHECK_STR_EQ(left, "sleep 101 sleep 102 sleep 103 sleep 104 ");
	free(left);
	stop_and_close(s);
}

/* An interpreter killed by the memory limit: the answer says so, and the
 * next run works. */
TEST(interp_memory_limit_kill_is_said)
{
	backend = sbx_fixture_open();
	struct sbx_limits lim = {.memory_mb = 96, .cpu = 1, .disk_mb = 16, .pids = 128};
	struct sbx *s = sbx_fixture_start("ses_interpjjjjjjjjjjjjjj", &lim);
	expect(s, SBX_LANG_PYTHON, "x = 1", "");
	struct sbx_exec_result r = run(s, SBX_LANG_PYTHON, "b = b'x' * (1024 << 20)");
	CHECK_MSG(r.exit_code == 137 && r.oom_killed && r.interp_lost &&
		      last_line_says(&r, "memory limit"),
		  "exit %d (oom %d, lost %d), stderr '%s'", r.exit_code, r.oom_killed,
		  r.interp_lost, text(&r.err));
	sbx_exec_result_release(&r);
	expect(s, SBX_LANG_PYTHON, "print(1 + 1)", "2\n");
	stop_and_close(s);
}

/* ---- Python's packages ---- */

/* A user site that appears after the interpreter started (what pip
 * creates) imports in it; pip without a network fails at once. */
TEST(interp_python_user_site_and_pip)
{
	struct sbx *s = open_and_start("ses_interpkkkkkkkkkkkkkk");
	expect(s, SBX_LANG_PYTHON, "import site\nsite.getusersitepackages()",
	       "'/home/user/.local/lib/python3.11/site-packages'\n");
	/* A wheel made on the spot, installed as users type it: the user site
	 * appears, and the running interpreter imports from it. */
	expect(s, SBX_LANG_PYTHON,
	       "import zipfile\n"
	       "with zipfile.ZipFile('late-1.0-py3-none-any.whl', 'w') as z:\n"
	       "    z.writestr('late.py', 'X = 5\\n')\n"
	       "    info = 'late-1.0.dist-info/'\n"
	       "    z.writestr(info + 'METADATA', 'Metadata-Version: 2.1\\nName: late\\n"
	       "Version: 1.0\\n')\n"
	       "    z.writestr(info + 'WHEEL', 'Wheel-Version: 1.0\\nRoot-Is-Purelib: true\\n"
	       "Tag: py3-none-any\\n')\n"
	       "    z.writestr(info + 'RECORD', '')",
	       "");
	expect(s, SBX_LANG_BASH,
	       "pip install -q --no-index ./late-1.0-py3-none-any.whl 2>&1 | grep -v Defaulting; "
	       "ls ~/.local/lib/python3.11/site-packages/late.py",
	       "/home/user/.local/lib/python3.11/site-packages/late.py\n");
	expect(s, SBX_LANG_PYTHON, "import late\nlate.X", "5\n");
	/* Debian's marker does not refuse it (six is one of Debian's); with
	 * no network pip says so, at once. */
	struct sbx_exec_result r = run_in(s, SBX_LANG_BASH, "pip install six", 60000, false);
	CHECK_MSG(r.exit_code == 0 && strstr(text(&r.out), "already satisfied"), "exit %d: %s%s",
		  r.exit_code, text(&r.out), text(&r.err));
	sbx_exec_result_release(&r);
	int64_t t0 = mono_us();
	r = run_in(s, SBX_LANG_BASH, "pip install tqdm", 60000, false);
	int64_t took_ms = (mono_us() - t0) / 1000;
	CHECK_MSG(r.exit_code != 0 && took_ms < 20000 && strstr(text(&r.err), "tqdm") &&
		      strstr(text(&r.err), "Failed to establish a new connection"),
		  "exit %d in %lld ms: %s", r.exit_code, (long long)took_ms, text(&r.err));
	printf("    pip install tqdm without network: exit %d in %lld ms\n%s", r.exit_code,
	       (long long)took_ms, text(&r.err));
	sbx_exec_result_release(&r);
	stop_and_close(s);
}
