/* Black-box tests of the InstaVM dialect's executions: POST /execute in
 * the session's persistent interpreters (Python, bash, JavaScript,
 * TypeScript: state kept from one execution to the next, per language),
 * the session's env, the timeout counted from the request's arrival (a
 * lazy spawn included) and answered 200 with exit_code 124, a kill or a
 * lifetime's end starting afresh, uploaded files seen by the code,
 * /execute_async with polling, results that survive a restart, and usage.
 */
#include "../iv_client.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

CLIENT_FIXTURE(NULL)

/* POST /execute of code in language (NULL: the default, python); the
 * answer in r (200 checked, with the result's fields and types). */
static void run_at(int line, const char *key, const char *id, const char *language,
		   const char *code, int timeout, struct client_resp *r)
{
	json_t *body = json_pack("{s:s,s:s}", "session_id", id, "command", code);
	if (language)
		json_object_set_new(body, "language", json_string(language));
	if (timeout)
		json_object_set_new(body, "timeout", json_integer(timeout));
	iv_take("/execute", key, body, r);
	if (r->status != 200)
		fprintf(stderr, "    (execute at line %d)\n", line);
	CHECK_STATUS(r, 200);
	client_must_str(r->json, "stdout", r->body);
	client_must_str(r->json, "stderr", r->body);
	client_must_int(r->json, "exit_code", r->body);
	CHECK_MSG(json_is_number(json_object_get(r->json, "execution_time")) &&
		      json_is_number(json_object_get(r->json, "cpu_time")),
		  "line %d: execution_time and cpu_time are not numbers in %s", line, r->body);
}
#define run(key, id, language, code, r) run_at(__LINE__, key, id, language, code, 0, r)

/* Runs code, which must succeed, and checks its stdout. */
#define run_out(key, id, language, code, want) run_out_at(__LINE__, key, id, language, code, want)
static void run_out_at(int line, const char *key, const char *id, const char *language,
		       const char *code, const char *want)
{
	struct client_resp r;
	run_at(line, key, id, language, code, 0, &r);
	const char *out = client_json_str(r.json, "stdout");
	CHECK_MSG(json_integer_value(json_object_get(r.json, "exit_code")) == 0 &&
		      strcmp(out, want) == 0,
		  "line %d: want stdout '%s' and exit 0, got %s", line, want, r.body);
	client_resp_free(&r);
}

TEST(python_state_persists)
{
	char *id = iv_create(bk.paid_key, NULL);
	run_out(bk.paid_key, id, NULL, "import json\nx = 41\ndef inc(v):\n    return v + 1\n", "");
	run_out(bk.paid_key, id, "python", "print(inc(x))", "42\n");
	/* The last bare expression prints its repr; None prints nothing. */
	run_out(bk.paid_key, id, NULL, "json.dumps({'a': [1, 2]})", "'{\"a\": [1, 2]}'\n");
	run_out(bk.paid_key, id, NULL, "None", "");
	/* An exception is a result; the state stays. */
	struct client_resp r;
	run(bk.paid_key, id, NULL, "y = 1\nraise ValueError('boom')", &r);
	CHECK_INT_EQ(client_must_int(r.json, "exit_code", r.body), 1);
	CHECK_MSG(strstr(client_json_str(r.json, "stderr"), "ValueError: boom") != NULL, "%s",
		  r.body);
	client_resp_free(&r);
	run_out(bk.paid_key, id, NULL, "print(x, y)", "41 1\n");
	/* `code` is an alias of `command`. */
	iv_take("/execute", bk.paid_key, json_pack("{s:s,s:s}", "session_id", id, "code", "x * 2"),
		&r);
	CHECK_STATUS(&r, 200);
	CHECK_STR_EQ(client_json_str(r.json, "stdout"), "82\n");
	client_resp_free(&r);
	/* Ending the interpreter answers its code, and the next one is new. */
	run(bk.paid_key, id, NULL, "import sys\nsys.exit(3)", &r);
	CHECK_INT_EQ(client_must_int(r.json, "exit_code", r.body), 3);
	client_resp_free(&r);
	run(bk.paid_key, id, NULL, "x", &r);
	CHECK_INT_EQ(client_must_int(r.json, "exit_code", r.body), 1);
	CHECK(strstr(client_json_str(r.json, "stderr"), "NameError") != NULL);
	client_resp_free(&r);
	free(id);
}

TEST(bash_and_javascript_state_persist_per_language)
{
	char *id = iv_create(bk.paid_key, NULL);
	run_out(bk.paid_key, id, "bash",
		"cd /tmp && export V=7 && f() { echo \"f:$1:$V\"; } && alias ll='echo aliased'",
		"");
	run_out(bk.paid_key, id, "bash", "pwd; f x; ll", "/tmp\nf:x:7\naliased\n");
	struct client_resp r;
	run(bk.paid_key, id, "bash", "false", &r);
	CHECK_INT_EQ(client_must_int(r.json, "exit_code", r.body), 1);
	client_resp_free(&r);
	run_out(bk.paid_key, id, "javascript", "let a = 5; const add = (p) => p + a;", "");
	run_out(bk.paid_key, id, "javascript", "console.log(add(1)); a * 2", "6\n10\n");
	run_out(bk.paid_key, id, "typescript", "const t: number = 3;\nlet s: string = 'ts';", "");
	run_out(bk.paid_key, id, "typescript", "`${s}:${t * 2}`", "\"ts:6\"\n");
	/* TypeScript's globals are not JavaScript's. */
	run(bk.paid_key, id, "javascript", "typeof t", &r);
	CHECK_STR_EQ(client_json_str(r.json, "stdout"), "\"undefined\"\n");
	client_resp_free(&r);
	/* Top-level await. */
	run_out(bk.paid_key, id, "javascript", "await new Promise(r => setTimeout(() => r(9), 10))",
		"9\n");
	/* Python's state is its own too. */
	run(bk.paid_key, id, NULL, "a", &r);
	CHECK_INT_EQ(client_must_int(r.json, "exit_code", r.body), 1);
	client_resp_free(&r);
	free(id);
}

/* The create's env holds for every execution, in every language. */
TEST(env_holds_for_every_execution)
{
	char *id = iv_create(
	    bk.paid_key, json_pack("{s:{s:s,s:s}}", "env", "API_TOKEN", "t0k3n", "MODE", "a b"));
	run_out(bk.paid_key, id, NULL,
		"import os\nprint(os.environ['API_TOKEN'], os.environ['MODE'])", "t0k3n a b\n");
	run_out(bk.paid_key, id, "bash", "echo \"$API_TOKEN\"", "t0k3n\n");
	run_out(bk.paid_key, id, "javascript", "console.log(process.env.MODE)", "a b\n");
	free(id);
}

/* The run is interrupted at timeout - 0.5 s from the request's arrival:
 * 200, exit_code 124, the output so far, a last stderr line; the
 * interpreter keeps its state. */
TEST(timeout_answers_124_before_the_client_gives_up)
{
	char *id = iv_create(bk.paid_key, NULL);
	run_out(bk.paid_key, id, NULL, "kept = 'still here'", "");
	struct client_resp r;
	run_at(__LINE__, bk.paid_key, id, NULL,
	       "import time\nprint('partial', flush=True)\ntime.sleep(30)", 2, &r);
	CHECK_INT_EQ(client_must_int(r.json, "exit_code", r.body), 124);
	CHECK_STR_EQ(client_json_str(r.json, "stdout"), "partial\n");
	CHECK_MSG(strstr(client_json_str(r.json, "stderr"), "timed out") != NULL, "%s", r.body);
	CHECK_MSG(r.seconds >= 1.3 && r.seconds < 2.0, "answered after %.2f s", r.seconds);
	client_resp_free(&r);
	run_out(bk.paid_key, id, NULL, "print(kept)", "still here\n");
	/* bash, and a busy loop in JavaScript. */
	run_at(__LINE__, bk.paid_key, id, "bash", "echo b; sleep 30", 2, &r);
	CHECK_INT_EQ(client_must_int(r.json, "exit_code", r.body), 124);
	CHECK_STR_EQ(client_json_str(r.json, "stdout"), "b\n");
	CHECK_MSG(r.seconds < 2.0, "answered after %.2f s", r.seconds);
	client_resp_free(&r);
	run_at(__LINE__, bk.paid_key, id, "javascript", "while (true) {}", 2, &r);
	CHECK_INT_EQ(client_must_int(r.json, "exit_code", r.body), 124);
	CHECK_MSG(r.seconds < 2.0, "answered after %.2f s", r.seconds);
	client_resp_free(&r);
	free(id);
}

/* The first execute spawns the VM, within the same deadline. */
TEST(first_execute_spawns_the_vm)
{
	char *id = iv_create(bk.paid_key, NULL);
	json_t *st = iv_get("status", id, bk.paid_key);
	CHECK(json_is_null(json_object_get(st, "vm_status")));
	json_decref(st);
	struct client_resp r;
	run_at(__LINE__, bk.paid_key, id, NULL, "print('up')", 5, &r);
	CHECK_STR_EQ(client_json_str(r.json, "stdout"), "up\n");
	client_resp_free(&r);
	st = iv_get("status", id, bk.paid_key);
	CHECK_STR_EQ(json_string_value(json_object_get(st, "vm_status")), "active");
	json_decref(st);
	free(id);
}

/* A kill ends the interpreters with the VM: the next VM starts empty. */
TEST(kill_starts_afresh)
{
	char *id = iv_create(bk.paid_key, NULL);
	run_out(bk.paid_key, id, NULL, "v = 1\nn = open('/workspace/f', 'w').write('x')", "");
	char body[128];
	snprintf(body, sizeof(body), "{\"session_id\":\"%s\"}", id);
	struct client_resp r;
	iv("POST", "/kill", bk.paid_key, body, &r);
	CHECK_STATUS(&r, 200);
	client_resp_free(&r);
	run(bk.paid_key, id, NULL, "import os\nprint(os.path.exists('/workspace/f'))\nv", &r);
	CHECK_STR_EQ(client_json_str(r.json, "stdout"), "False\n");
	CHECK(strstr(client_json_str(r.json, "stderr"), "NameError") != NULL);
	client_resp_free(&r);
	free(id);
}

/* What an upload writes, the code reads at the same path; what the code
 * writes, download reads. */
TEST(upload_execute_download)
{
	char *id = iv_create(bk.paid_key, NULL);
	struct client_resp r;
	iv_upload_file(bk.paid_key, id, "/app/main.py", "def main():\n    return 'from upload'\n",
		       0, &r);
	CHECK_STATUS(&r, 200);
	client_resp_free(&r);
	run_out(bk.paid_key, id, NULL,
		"import sys\nsys.path.insert(0, '/app')\nimport main\nprint(main.main())\n"
		"n = open('/app/out.txt', 'w').write('written by code')",
		"from upload\n");
	size_t len;
	char *back = iv_download_ok(bk.paid_key, id, "/app/out.txt", &len);
	CHECK_STR_EQ(back, "written by code");
	free(back);
	free(id);
}

/* Polls task until it is complete (at most secs); its last state. */
static json_t *task_wait(const char *key, const char *task, double secs)
{
	char path[256];
	snprintf(path, sizeof(path), "/v1/executions/%s", task);
	double t0 = client_now();
	for (;;) {
		struct client_resp r;
		iv("GET", path, key, NULL, &r);
		CHECK_STATUS(&r, 200);
		json_t *o = json_incref(r.json);
		bool done = json_is_true(json_object_get(o, "is_complete"));
		client_resp_free(&r);
		if (done || client_now() - t0 > secs)
			return o;
		json_decref(o);
		usleep(100 * 1000);
	}
}

static char *task_submit(const char *key, const char *id, const char *language, const char *code)
{
	json_t *body = json_pack("{s:s,s:s}", "session_id", id, "command", code);
	if (language)
		json_object_set_new(body, "language", json_string(language));
	struct client_resp r;
	iv_take("/execute_async", key, body, &r);
	CHECK_STATUS(&r, 200);
	char *task = strdup(client_must_str(r.json, "task_id", r.body));
	client_resp_free(&r);
	return task;
}

TEST(execute_async_polls_to_a_result)
{
	char *id = iv_create(bk.paid_key, NULL);
	char *task = task_submit(bk.paid_key, id, NULL,
				 "import time, sys\nprint('out')\nprint('err', file=sys.stderr)\n"
				 "time.sleep(0.5)\n6 * 7");
	json_t *t = task_wait(bk.paid_key, task, 30);
	char *text = json_dumps(t, 0);
	CHECK_MSG(json_is_true(json_object_get(t, "is_complete")), "%s", text);
	CHECK_STR_EQ(client_must_str(t, "status", text), "completed");
	CHECK_STR_EQ(client_must_str(t, "serialized_stdout", text), "out\n42\n");
	CHECK_STR_EQ(client_must_str(t, "serialized_stderr", text), "err\n");
	CHECK_INT_EQ(client_must_int(t, "exit_code", text), 0);
	CHECK(client_must_num(t, "execution_time", text) >= 0.5);
	CHECK_STR_EQ(client_must_str(t, "task_id", text), task);
	client_must_str(t, "created_at", text);
	free(text);
	json_decref(t);
	/* A task runs in a fresh interpreter: it neither sees nor leaves
	 * state in the session's. */
	run_out(bk.paid_key, id, NULL, "shared = 1", "");
	free(task);
	task = task_submit(bk.paid_key, id, NULL, "print('shared' in globals())\nleft = 2");
	t = task_wait(bk.paid_key, task, 30);
	CHECK_STR_EQ(json_string_value(json_object_get(t, "serialized_stdout")), "False\n");
	json_decref(t);
	run_out(bk.paid_key, id, NULL, "print('left' in globals())", "False\n");
	/* A task past its timeout. */
	free(task);
	json_t *body = json_pack("{s:s,s:s,s:s,s:i}", "session_id", id, "command", "sleep 30",
				 "language", "bash", "timeout", 1);
	struct client_resp r;
	iv_take("/execute_async", bk.paid_key, body, &r);
	CHECK_STATUS(&r, 200);
	task = strdup(client_must_str(r.json, "task_id", r.body));
	client_resp_free(&r);
	t = task_wait(bk.paid_key, task, 30);
	CHECK_STR_EQ(json_string_value(json_object_get(t, "status")), "timeout");
	CHECK(json_is_true(json_object_get(t, "is_complete")));
	CHECK_INT_EQ(json_integer_value(json_object_get(t, "exit_code")), 124);
	json_decref(t);
	/* Another key's task is 404. */
	char other[CLIENT_KEY_MAX];
	client_must_key("paid", other, sizeof(other));
	char path[256];
	snprintf(path, sizeof(path), "/v1/executions/%s", task);
	iv("GET", path, other, NULL, &r);
	CHECK_DETAIL(&r, 404);
	client_resp_free(&r);
	free(task);
	free(id);
}

/* Results are kept across a restart; a task the restart interrupted is
 * failed, and says so. */
TEST_TIMEOUT(tasks_survive_a_restart, 150)
{
	if (bk.skip_reason[0] != '\0')
		SKIP("%s", bk.skip_reason);
	struct client_daemon d = {0};
	CHECK(client_daemon_start(&d, NULL) == 0);
	iv_daemon = &d;
	char key[CLIENT_KEY_MAX];
	CHECK(client_key_create(&d, "paid", key, sizeof(key)) == 0);
	char *id = iv_create(key, NULL);
	char *done = task_submit(key, id, "bash", "echo finished");
	json_t *t = task_wait(key, done, 30);
	CHECK_STR_EQ(json_string_value(json_object_get(t, "status")), "completed");
	json_decref(t);
	char *cut = task_submit(key, id, "bash", "sleep 60");
	usleep(500 * 1000);
	int status = client_daemon_halt(&d, SIGTERM);
	CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0, "bunkerd stopped with 0x%x",
		  status);
	CHECK(client_daemon_start(&d, NULL) == 0);
	t = task_wait(key, done, 1);
	CHECK_STR_EQ(json_string_value(json_object_get(t, "status")), "completed");
	CHECK_STR_EQ(json_string_value(json_object_get(t, "serialized_stdout")), "finished\n");
	json_decref(t);
	t = task_wait(key, cut, 1);
	char *text = json_dumps(t, 0);
	CHECK_MSG(json_is_true(json_object_get(t, "is_complete")), "%s", text);
	const char *st = json_string_value(json_object_get(t, "status"));
	CHECK_MSG(st && (strcmp(st, "failed") == 0 || strcmp(st, "killed") == 0), "%s", text);
	CHECK_MSG(strlen(json_string_value(json_object_get(t, "serialized_stderr"))) > 0,
		  "no reason in %s", text);
	free(text);
	json_decref(t);
	free(done);
	free(cut);
	free(id);
	iv_daemon = NULL;
	CHECK_INT_EQ(client_daemon_stop(&d), 0);
	CHECK_INT_EQ(client_daemon_check(&d), 0);
	unlink(d.log_path);
	rmdir(d.log_dir);
}

/* usage counts every execution and its CPU (the sum takes some 0.25 s of
 * CPU on this project's machines: 2,000,000 terms took 0.048, too close to
 * the bound below, which it once missed). */
TEST(usage_counts_executions)
{
	char *id = iv_create(bk.paid_key, NULL);
	run_out(bk.paid_key, id, NULL, "s = sum(i * i for i in range(10000000))", "");
	run_out(bk.paid_key, id, "bash", "true", "");
	char *task = task_submit(bk.paid_key, id, "bash", "true");
	json_decref(task_wait(bk.paid_key, task, 30));
	free(task);
	json_t *u = iv_get("usage", id, NULL);
	char *text = json_dumps(u, 0);
	CHECK_INT_EQ(client_must_int(u, "execution_count", text), 3);
	CHECK_MSG(client_must_num(u, "cpu_time", text) > 0.1, "%s", text);
	CHECK_MSG(client_must_num(u, "vm_runtime_seconds", text) > 0, "%s", text);
	free(text);
	json_decref(u);
	free(id);
}

/* State kept across 100 calls, in each language. */
TEST_TIMEOUT(state_kept_across_100_calls, 240)
{
	char *id = iv_create(bk.paid_key, NULL);
	static const struct {
		const char *language, *init, *step, *show;
	} langs[] = {
	    {"python", "n = 0", "n += 1", "print(n)"},
	    {"bash", "n=0", "n=$((n + 1))", "echo $n"},
	    {"javascript", "var n = 0", "n += 1", "console.log(n)"},
	};
	for (size_t l = 0; l < 3; l++) {
		run_out(bk.paid_key, id, langs[l].language, langs[l].init, "");
		for (int i = 0; i < 100; i++) {
			struct client_resp r;
			run(bk.paid_key, id, langs[l].language, langs[l].step, &r);
			CHECK_INT_EQ(client_must_int(r.json, "exit_code", r.body), 0);
			client_resp_free(&r);
		}
		run_out(bk.paid_key, id, langs[l].language, langs[l].show, "100\n");
	}
	free(id);
}

/* A crash ends the interpreter: the answer says so, the next run gets a
 * new one. */
TEST(crashed_interpreter_is_replaced)
{
	char *id = iv_create(bk.paid_key, NULL);
	run_out(bk.paid_key, id, NULL, "before = 1", "");
	struct client_resp r;
	run(bk.paid_key, id, NULL, "import ctypes\nctypes.string_at(0)", &r);
	CHECK_INT_EQ(client_must_int(r.json, "exit_code", r.body), 128 + 11);
	CHECK_MSG(strstr(client_json_str(r.json, "stderr"), "signal 11") != NULL, "%s", r.body);
	client_resp_free(&r);
	run(bk.paid_key, id, NULL, "print('alive')\nprint('before' in globals())", &r);
	CHECK_STR_EQ(client_json_str(r.json, "stdout"), "alive\nFalse\n");
	client_resp_free(&r);
	free(id);
}

/* An interpreter the memory limit kills gets an answer that says so; the
 * next run works. */
TEST_TIMEOUT(memory_limit_kill_is_said, 120)
{
	char *id = iv_create(bk.paid_key, json_pack("{s:i}", "memory_mb", 128));
	run_out(bk.paid_key, id, NULL, "kept = 1", "");
	struct client_resp r;
	run(bk.paid_key, id, NULL,
	    "x = bytearray(600 * 1024 * 1024)\nx[::4096] = b'x' * len(x[::4096])", &r);
	long long code = client_must_int(r.json, "exit_code", r.body);
	CHECK_MSG(code == 137, "exit_code %lld: %s", code, r.body);
	CHECK_MSG(strstr(client_json_str(r.json, "stderr"), "memory") != NULL,
		  "stderr does not say memory: %s", r.body);
	client_resp_free(&r);
	run_out(bk.paid_key, id, NULL, "print('next')", "next\n");
	free(id);
}

/* Two tasks at once in one session: each one's output is its own. */
TEST(concurrent_tasks_do_not_mix)
{
	char *id = iv_create(bk.paid_key, NULL);
	char *a =
	    task_submit(bk.paid_key, id, NULL,
			"import sys, time\nfor i in range(50):\n    print('A', i, flush=True)\n"
			"    print('a', i, file=sys.stderr, flush=True)\n    time.sleep(0.01)");
	char *b =
	    task_submit(bk.paid_key, id, "bash",
			"for i in $(seq 0 49); do echo B $i; echo b $i >&2; sleep 0.01; done");
	json_t *ta = task_wait(bk.paid_key, a, 60), *tb = task_wait(bk.paid_key, b, 60);
	char want_out[2048] = "", want_err[2048] = "";
	for (int i = 0; i < 50; i++) {
		size_t o = strlen(want_out), e = strlen(want_err);
		snprintf(want_out + o, sizeof(want_out) - o, "A %d\n", i);
		snprintf(want_err + e, sizeof(want_err) - e, "a %d\n", i);
	}
	CHECK_STR_EQ(json_string_value(json_object_get(ta, "serialized_stdout")), want_out);
	CHECK_STR_EQ(json_string_value(json_object_get(ta, "serialized_stderr")), want_err);
	want_out[0] = want_err[0] = '\0';
	for (int i = 0; i < 50; i++) {
		size_t o = strlen(want_out), e = strlen(want_err);
		snprintf(want_out + o, sizeof(want_out) - o, "B %d\n", i);
		snprintf(want_err + e, sizeof(want_err) - e, "b %d\n", i);
	}
	CHECK_STR_EQ(json_string_value(json_object_get(tb, "serialized_stdout")), want_out);
	CHECK_STR_EQ(json_string_value(json_object_get(tb, "serialized_stderr")), want_err);
	json_decref(ta);
	json_decref(tb);
	free(a);
	free(b);
	free(id);
}

/* How many mounts and cgroups of sessions (named by a ses_ id) the host
 * holds. */
static int host_session_things(void)
{
	int n = 0;
	char line[4096];
	FILE *f = fopen("/proc/self/mountinfo", "re");
	while (f && fgets(line, sizeof(line), f))
		n += strstr(line, "/ses_") != NULL;
	if (f)
		fclose(f);
	FILE *p = popen("find /sys/fs/cgroup -maxdepth 4 -name 'ses_*' 2>/dev/null", "r");
	while (p && fgets(line, sizeof(line), p))
		n++;
	if (p)
		pclose(p);
	return n;
}

/* A session without a VM holds nothing on the host (no mount, no cgroup);
 * its first execute makes them, and a kill takes them away. */
TEST(lazy_session_holds_nothing)
{
	int before = host_session_things();
	char *id = iv_create(bk.paid_key, NULL);
	CHECK_INT_EQ(host_session_things(), before);
	run_out(bk.paid_key, id, "bash", "true", "");
	CHECK_MSG(host_session_things() > before, "no mount or cgroup appeared with the VM");
	char body[128];
	snprintf(body, sizeof(body), "{\"session_id\":\"%s\"}", id);
	struct client_resp r;
	iv("POST", "/kill", bk.paid_key, body, &r);
	CHECK_STATUS(&r, 200);
	client_resp_free(&r);
	CHECK_INT_EQ(host_session_things(), before);
	free(id);
}

/* The dialect driven as InstaVM's SDK drives it, call by call. */
TEST_TIMEOUT(sdk_flow, 120)
{
	char key[CLIENT_KEY_MAX];
	client_must_key("paid", key, sizeof(key));
	/* InstaVM(api_key=...): the key in the create body, no header. */
	struct client_resp r;
	iv("POST", "/v1/sessions/session", NULL,
	   "{\"api_key\":\"KEY\",\"vm_lifetime_seconds\":300,\"metadata\":{\"sdk\":\"py\"}}", &r);
	CHECK_DETAIL(&r, 401); /* "KEY" is no key: the real one next */
	client_resp_free(&r);
	char *id = iv_create(
	    key, json_pack("{s:i,s:{s:s}}", "vm_lifetime_seconds", 300, "metadata", "sdk", "py"));
	/* execute(): X-API-Key from here on. */
	run_out(key, id, NULL, "print('hello from the sdk')", "hello from the sdk\n");
	/* is_session_active(): vm_status compared to "active". */
	json_t *st = iv_get("status", id, key);
	CHECK_STR_EQ(json_string_value(json_object_get(st, "vm_status")), "active");
	json_decref(st);
	/* upload_file(local, remote): the part's filename is the local path. */
	iv_upload_file(key, id, "/app/data.csv", "a,b\n1,2\n", 0, &r);
	CHECK_STATUS(&r, 200);
	client_resp_free(&r);
	run_out(key, id, NULL, "print(open('/app/data.csv').read().splitlines()[1])", "1,2\n");
	/* download_file(): a form body. */
	size_t len;
	char *back = iv_download_ok(key, id, "/app/data.csv", &len);
	CHECK_STR_EQ(back, "a,b\n1,2\n");
	free(back);
	/* execute_async() and polling get_task_result(). */
	char *task = task_submit(key, id, NULL, "print(sum(range(10)))");
	json_t *t = task_wait(key, task, 30);
	CHECK(json_is_true(json_object_get(t, "is_complete")));
	CHECK_STR_EQ(json_string_value(json_object_get(t, "serialized_stdout")), "45\n");
	json_decref(t);
	free(task);
	/* get_usage(): no credentials at all. */
	json_t *u = iv_get("usage", id, NULL);
	CHECK_INT_EQ(json_integer_value(json_object_get(u, "execution_count")), 3);
	json_decref(u);
	/* list_sandboxes(metadata=...), then kill(). */
	char *q = client_urlencode("{\"sdk\":\"py\"}");
	char path[256];
	snprintf(path, sizeof(path), "//v1/sessions/sandboxes?metadata=%s", q);
	free(q);
	iv("GET", path, key, NULL, &r);
	CHECK_MSG(r.status == 200 && json_array_size(r.json) == 1, "%ld %s", r.status, r.body);
	client_resp_free(&r);
	char body[128];
	snprintf(body, sizeof(body), "{\"session_id\":\"%s\"}", id);
	iv("POST", "/kill", key, body, &r);
	CHECK_STATUS(&r, 200);
	client_resp_free(&r);
	st = iv_get("status", id, key);
	CHECK_STR_EQ(json_string_value(json_object_get(st, "vm_status")), "terminated");
	json_decref(st);
	free(id);
}
