/* Black-box tests of the buntime dialect's POST /execute: shell commands,
 * code run by Bun, files[], env, workingDir, timeouts, process lifetime,
 * output limits and bad input, against one real bunkerd shared by every
 * test. Each test uses fresh sessions of the fixture's paid key and
 * deletes them when it passes.
 */
#include "../client.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

CLIENT_FIXTURE(NULL)

/* ---- helpers ---- */

static char *new_session(void)
{
	return client_must_create(bk.paid_key, NULL);
}

/* POST /execute with a body given as (possibly binary) text. */
static void exec_raw(const char *key, const char *body, size_t len, struct client_resp *r)
{
	struct client_req req = {.method = "POST",
				 .path = "/execute",
				 .key = key,
				 .body = body,
				 .body_len = len,
				 .raw_len = len > 0,
				 .timeout_s = 300};
	client_request(&bk.d, &req, r);
}

/* POST /execute with body (a new reference, taken). */
static void exec_take(json_t *body, struct client_resp *r)
{
	char *text = json_dumps(body, JSON_COMPACT);
	json_decref(body);
	CHECK(text != NULL);
	exec_raw(bk.paid_key, text, strlen(text), r);
	free(text);
}

static const char *res_str(const struct client_resp *r, const char *name)
{
	return client_must_str(r->json, name, r->body);
}

static long long res_int(const struct client_resp *r, const char *name)
{
	return client_must_int(r->json, name, r->body);
}

static double res_num(const struct client_resp *r, const char *name)
{
	return client_must_num(r->json, name, r->body);
}

static bool res_bool(const struct client_resp *r, const char *name)
{
	return client_must_bool(r->json, name, r->body);
}

/* A truncation flag: absent means false. */
static bool res_flag(const struct client_resp *r, const char *name)
{
	json_t *v = json_object_get(r->json, name);
	if (v == NULL)
		return false;
	CHECK_MSG(json_is_boolean(v), "'%s' is not a boolean in %.2000s", name, r->body);
	return json_is_true(v);
}

/* filesWritten holds rel ("a/b.txt"; "/workspace/a/b.txt" is the same). */
static bool written_has(const struct client_resp *r, const char *rel)
{
	json_t *arr = json_object_get(r->json, "filesWritten");
	CHECK_MSG(json_is_array(arr), "filesWritten is not an array in %.2000s", r->body);
	char abs[512];
	snprintf(abs, sizeof(abs), "/workspace/%s", rel);
	size_t i;
	json_t *v;
	json_array_foreach (arr, i, v) {
		const char *s = json_string_value(v);
		CHECK_MSG(s != NULL, "filesWritten holds a non-string: %.2000s", r->body);
		if (strcmp(s, rel) == 0 || strcmp(s, abs) == 0)
			return true;
	}
	return false;
}

/* Runs a code snippet with extra (taken, may be NULL) merged into the
 * body; the answer must be 200. */
static void run_code(const char *id, const char *code, json_t *extra, struct client_resp *r)
{
	json_t *body = extra ? extra : json_object();
	json_object_set_new(body, "sessionId", json_string(id));
	json_object_set_new(body, "code", json_string(code));
	exec_take(body, r);
	CHECK_STATUS(r, 200);
}

/* Expects 400 invalid_request naming field (NULL: any) for body. */
static void exec_rejected(json_t *body, const char *field)
{
	char *text = json_dumps(body, JSON_COMPACT);
	struct client_resp r;
	exec_take(body, &r);
	if (r.status != 400)
		fprintf(stderr, "    body: %.300s\n", text);
	free(text);
	if (field != NULL)
		CHECK_ERROR_FIELD(&r, 400, "invalid_request", field);
	else
		CHECK_ERROR(&r, 400, "invalid_request");
	client_resp_free(&r);
}

static void check_healthy(void)
{
	struct client_resp r;
	client_call(&bk.d, "GET", "/healthz", NULL, NULL, &r);
	CHECK_STATUS(&r, 200);
	client_resp_free(&r);
}

/* ---- commands ---- */

TEST(exec_echo)
{
	char *id = new_session();
	struct client_resp r;
	client_must_exec(bk.paid_key, id, "echo hello", NULL, &r);
	char ct[128];
	CHECK(client_resp_header(&r, "Content-Type", ct, sizeof(ct)) != NULL);
	CHECK_MSG(strncmp(ct, "application/json", 16) == 0, "Content-Type '%s'", ct);
	CHECK_STR_EQ(res_str(&r, "stdout"), "hello\n");
	CHECK_STR_EQ(res_str(&r, "stderr"), "");
	CHECK_INT_EQ(res_int(&r, "exitCode"), 0);
	CHECK(!res_bool(&r, "timedOut"));
	double ms = res_num(&r, "executionTime");
	CHECK_MSG(ms >= 0 && ms <= r.seconds * 1000 + 50, "executionTime %g ms, request took %g s",
		  ms, r.seconds);
	CHECK_MSG(res_num(&r, "cpuTime") >= 0, "cpuTime < 0");
	CHECK_MSG(res_num(&r, "memoryUsed") > 0, "memoryUsed %g", res_num(&r, "memoryUsed"));
	CHECK(json_is_array(json_object_get(r.json, "filesWritten")));
	CHECK_INT_EQ(json_array_size(json_object_get(r.json, "filesWritten")), 0);
	CHECK(!res_flag(&r, "stdoutTruncated"));
	CHECK(!res_flag(&r, "stderrTruncated"));
	client_resp_free(&r);
	client_must_delete(bk.paid_key, id);
	free(id);
}

TEST(exec_exit_code)
{
	char *id = new_session();
	struct client_resp r;
	client_must_exec(bk.paid_key, id, "echo before; exit 3", NULL, &r);
	CHECK_INT_EQ(res_int(&r, "exitCode"), 3);
	CHECK_STR_EQ(res_str(&r, "stdout"), "before\n");
	CHECK(!res_bool(&r, "timedOut"));
	client_resp_free(&r);
	client_must_exec(bk.paid_key, id, "false", NULL, &r);
	CHECK_INT_EQ(res_int(&r, "exitCode"), 1);
	client_resp_free(&r);
	client_must_exec(bk.paid_key, id, "no-such-command-xyz", NULL, &r);
	CHECK_INT_EQ(res_int(&r, "exitCode"), 127);
	CHECK_MSG(strstr(res_str(&r, "stderr"), "no-such-command-xyz") != NULL, "stderr: %s",
		  res_str(&r, "stderr"));
	client_resp_free(&r);
	client_must_delete(bk.paid_key, id);
	free(id);
}

TEST(exec_stderr)
{
	char *id = new_session();
	struct client_resp r;
	client_must_exec(bk.paid_key, id, "echo out; echo oops >&2; printf 'no newline' >&2", NULL,
			 &r);
	CHECK_STR_EQ(res_str(&r, "stdout"), "out\n");
	CHECK_STR_EQ(res_str(&r, "stderr"), "oops\nno newline");
	CHECK_INT_EQ(res_int(&r, "exitCode"), 0);
	client_resp_free(&r);
	client_must_delete(bk.paid_key, id);
	free(id);
}

TEST(exec_env_not_persisting)
{
	char *id = new_session();
	struct client_resp r;
	json_t *extra = json_pack("{s:{s:s,s:s}}", "env", "FOO", "bar", "WITH_SPACE", "a b");
	client_must_exec(bk.paid_key, id, "echo \"$FOO|$WITH_SPACE\"", extra, &r);
	json_decref(extra);
	CHECK_STR_EQ(res_str(&r, "stdout"), "bar|a b\n");
	client_resp_free(&r);

	char *out = client_must_run(bk.paid_key, id, "echo \"${FOO-unset}\"");
	CHECK_STR_EQ(out, "unset\n");
	free(out);
	client_must_delete(bk.paid_key, id);
	free(id);
}

TEST(exec_working_dir)
{
	char *id = new_session();
	char *out = client_must_run(bk.paid_key, id, "pwd");
	CHECK_STR_EQ(out, "/workspace\n");
	free(out);
	out = client_must_run(bk.paid_key, id, "mkdir -p sub/deeper && echo ok");
	free(out);

	struct client_resp r;
	json_t *extra = json_pack("{s:s}", "workingDir", "sub");
	client_must_exec(bk.paid_key, id, "pwd", extra, &r);
	json_decref(extra);
	CHECK_STR_EQ(res_str(&r, "stdout"), "/workspace/sub\n");
	client_resp_free(&r);

	extra = json_pack("{s:s}", "workingDir", "/workspace/sub/deeper");
	client_must_exec(bk.paid_key, id, "pwd", extra, &r);
	json_decref(extra);
	CHECK_STR_EQ(res_str(&r, "stdout"), "/workspace/sub/deeper\n");
	client_resp_free(&r);
	client_must_delete(bk.paid_key, id);
	free(id);
}

TEST(exec_working_dir_invalid)
{
	char *id = new_session();
	exec_rejected(
	    json_pack("{s:s,s:s,s:s}", "sessionId", id, "command", "pwd", "workingDir", "nope"),
	    "workingDir");
	exec_rejected(json_pack("{s:s,s:s,s:s}", "sessionId", id, "command", "pwd", "workingDir",
				"/workspace/nope/deeper"),
		      "workingDir");
	exec_rejected(
	    json_pack("{s:s,s:s,s:i}", "sessionId", id, "command", "pwd", "workingDir", 5),
	    "workingDir");
	client_must_delete(bk.paid_key, id);
	free(id);
}

TEST(exec_files_written)
{
	char *id = new_session();
	struct client_resp r;
	json_t *extra =
	    json_pack("{s:[{s:s,s:s},{s:s,s:s}]}", "files", "path", "a/b.txt", "content", "x",
		      "path", "/workspace/abs.txt", "content", "line1\nline2\n");
	client_must_exec(bk.paid_key, id, "cat a/b.txt; echo; cat abs.txt; echo y > c.txt", extra,
			 &r);
	json_decref(extra);
	CHECK_STR_EQ(res_str(&r, "stdout"), "x\nline1\nline2\n");
	CHECK_INT_EQ(res_int(&r, "exitCode"), 0);
	CHECK_MSG(written_has(&r, "a/b.txt"), "a/b.txt not in filesWritten: %s", r.body);
	CHECK_MSG(written_has(&r, "abs.txt"), "abs.txt not in filesWritten: %s", r.body);
	CHECK_MSG(written_has(&r, "c.txt"), "c.txt (made by the command) not in filesWritten: %s",
		  r.body);
	client_resp_free(&r);

	/* Reading changes nothing. */
	client_must_exec(bk.paid_key, id, "cat a/b.txt c.txt > /dev/null", NULL, &r);
	CHECK_MSG(json_array_size(json_object_get(r.json, "filesWritten")) == 0,
		  "a command that only reads wrote files: %s", r.body);
	client_resp_free(&r);
	client_must_delete(bk.paid_key, id);
	free(id);
}

TEST(exec_files_escape_rejected)
{
	char *id = new_session();
	static const char *const bad[] = {"../x.txt",		"a/../../x.txt",       "..",
					  "/etc/bk-escape.txt", "/workspace/../x.txt", ""};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		exec_rejected(json_pack("{s:s,s:s,s:[{s:s,s:s}]}", "sessionId", id, "command",
					"echo ran", "files", "path", bad[i], "content", "x"),
			      NULL);
	/* A good file before a bad one is not written either. */
	exec_rejected(json_pack("{s:s,s:s,s:[{s:s,s:s},{s:s,s:s}]}", "sessionId", id, "command",
				"echo ran > ran.txt", "files", "path", "ok.txt", "content", "x",
				"path", "../bad.txt", "content", "x"),
		      NULL);
	char *out = client_must_run(bk.paid_key, id,
				    "find /workspace -mindepth 1; ls / | grep -c x.txt; "
				    "test -e /etc/bk-escape.txt && echo escaped; true");
	CHECK_STR_EQ(out, "0\n");
	free(out);

	/* Through a symlink that leaves the workspace. */
	out = client_must_run(bk.paid_key, id, "ln -s /tmp tlink && echo ok");
	free(out);
	char name[128], host[192];
	snprintf(name, sizeof(name), "tlink/bk-escape-%s.txt", id);
	snprintf(host, sizeof(host), "/tmp/bk-escape-%s.txt", id);
	json_t *body = json_pack("{s:s,s:s,s:[{s:s,s:s}]}", "sessionId", id, "command", "true",
				 "files", "path", name, "content", "x");
	struct client_resp r;
	exec_take(body, &r);
	struct stat st;
	bool on_host = stat(host, &st) == 0;
	if (on_host)
		unlink(host);
	CHECK_MSG(!on_host, "files[] followed a symlink out of the sandbox onto the host: %s",
		  host);
	CHECK_ERROR(&r, 400, "invalid_request");
	client_resp_free(&r);
	char cmd[256];
	snprintf(cmd, sizeof(cmd), "test -e /tmp/bk-escape-%s.txt && echo escaped; true", id);
	out = client_must_run(bk.paid_key, id, cmd);
	CHECK_STR_EQ(out, "");
	free(out);
	client_must_delete(bk.paid_key, id);
	free(id);
}

TEST(exec_files_persist)
{
	char *id = new_session();
	char *out =
	    client_must_run(bk.paid_key, id, "echo data > f.txt && mkdir -p d && echo z > d/g");
	free(out);
	out = client_must_run(bk.paid_key, id, "cat f.txt d/g");
	CHECK_STR_EQ(out, "data\nz\n");
	free(out);
	client_must_delete(bk.paid_key, id);
	free(id);
}

/* ---- timeouts and process lifetime ---- */

TEST(exec_timeout)
{
	char *id = new_session();
	struct client_resp r;
	json_t *extra = json_pack("{s:i}", "timeout", 1);
	client_must_exec(bk.paid_key, id, "echo started; sleep 10", extra, &r);
	json_decref(extra);
	CHECK_MSG(r.seconds < 3, "a 1 s timeout answered after %.2f s", r.seconds);
	CHECK(res_bool(&r, "timedOut"));
	CHECK_INT_EQ(res_int(&r, "exitCode"), 124);
	CHECK_STR_EQ(res_str(&r, "stdout"), "started\n");
	double ms = res_num(&r, "executionTime");
	CHECK_MSG(ms >= 900 && ms < 3000, "executionTime %g ms for a 1 s timeout", ms);
	client_resp_free(&r);

	/* The session still works. */
	char *out = client_must_run(bk.paid_key, id, "echo alive");
	CHECK_STR_EQ(out, "alive\n");
	free(out);
	client_must_delete(bk.paid_key, id);
	free(id);
}

TEST(exec_timeout_kills_tree)
{
	char *id = new_session();
	struct client_resp r;
	json_t *extra = json_pack("{s:i}", "timeout", 1);
	client_must_exec(bk.paid_key, id, "sh -c 'sleep 100 & sleep 100'", extra, &r);
	json_decref(extra);
	CHECK_MSG(r.seconds < 3, "a 1 s timeout answered after %.2f s", r.seconds);
	CHECK(res_bool(&r, "timedOut"));
	CHECK_INT_EQ(res_int(&r, "exitCode"), 124);
	client_resp_free(&r);

	char *out = client_must_run(bk.paid_key, id, "pgrep -x sleep || echo none");
	CHECK_STR_EQ(out, "none\n");
	free(out);
	client_must_delete(bk.paid_key, id);
	free(id);
}

TEST(exec_timeout_spares_setsid)
{
	char *id = new_session();
	struct client_resp r;
	json_t *extra = json_pack("{s:i}", "timeout", 1);
	client_must_exec(bk.paid_key, id, "setsid sleep 100 > /dev/null 2>&1 & sleep 99 & sleep 10",
			 extra, &r);
	json_decref(extra);
	CHECK(res_bool(&r, "timedOut"));
	CHECK_INT_EQ(res_int(&r, "exitCode"), 124);
	client_resp_free(&r);

	char *out =
	    client_must_run(bk.paid_key, id,
			    "for p in $(pgrep -x sleep); do tr '\\0' ' ' < /proc/$p/cmdline; "
			    "echo; done");
	CHECK_STR_EQ(out, "sleep 100 \n");
	free(out);
	client_must_delete(bk.paid_key, id);
	free(id);
}

TEST(exec_background_survives)
{
	char *id = new_session();
	struct client_resp r;
	client_must_exec(bk.paid_key, id,
			 "setsid sleep 300 > /dev/null 2>&1 & "
			 "nohup sleep 301 > /dev/null 2>&1 & "
			 "sleep 302 > /dev/null 2>&1 & echo $!",
			 NULL, &r);
	CHECK_MSG(r.seconds < 5, "the answer waited %.2f s for background processes", r.seconds);
	CHECK_INT_EQ(res_int(&r, "exitCode"), 0);
	long pid = strtol(res_str(&r, "stdout"), NULL, 10);
	CHECK_MSG(pid > 1, "no pid printed: %s", r.body);
	client_resp_free(&r);

	char cmd[128];
	snprintf(cmd, sizeof(cmd), "kill -0 %ld && echo alive", pid);
	char *out = client_must_run(bk.paid_key, id, cmd);
	CHECK_STR_EQ(out, "alive\n");
	free(out);
	/* The answer can come before the background shells have exec'd sleep. */
	out =
	    client_must_run(bk.paid_key, id,
			    "for i in $(seq 100); do [ $(pgrep -x sleep | wc -l) -ge 3 ] && break; "
			    "sleep 0.02; done; "
			    "for p in $(pgrep -x sleep); do tr '\\0' ' ' < /proc/$p/cmdline; "
			    "echo; done | sort");
	CHECK_STR_EQ(out, "sleep 300 \nsleep 301 \nsleep 302 \n");
	free(out);
	client_must_delete(bk.paid_key, id);
	free(id);
}

TEST(exec_background_output_not_waited_for)
{
	char *id = new_session();
	struct client_resp r;
	/* The background sleep holds the execution's stdout open. */
	client_must_exec(bk.paid_key, id, "sleep 303 & echo started", NULL, &r);
	CHECK_MSG(r.seconds < 5, "the answer waited %.2f s for a background process", r.seconds);
	CHECK_STR_EQ(res_str(&r, "stdout"), "started\n");
	CHECK(!res_bool(&r, "timedOut"));
	client_resp_free(&r);

	client_must_exec(bk.paid_key, id, "(sleep 1; echo late; echo late >&2) & echo early", NULL,
			 &r);
	CHECK_STR_EQ(res_str(&r, "stdout"), "early\n");
	CHECK_STR_EQ(res_str(&r, "stderr"), "");
	client_resp_free(&r);
	usleep(1500 * 1000);
	/* The late output is not part of a later answer either. */
	client_must_exec(bk.paid_key, id, "echo next", NULL, &r);
	CHECK_STR_EQ(res_str(&r, "stdout"), "next\n");
	CHECK_STR_EQ(res_str(&r, "stderr"), "");
	client_resp_free(&r);
	client_must_delete(bk.paid_key, id);
	free(id);
}

TEST(exec_timeout_above_plan)
{
	char key[CLIENT_KEY_MAX];
	client_must_key("free", key, sizeof(key));
	char *id = client_must_create(key, NULL);
	json_t *body =
	    json_pack("{s:s,s:s,s:i}", "sessionId", id, "command", "true", "timeout", 31);
	char *text = json_dumps(body, JSON_COMPACT);
	json_decref(body);
	struct client_resp r;
	exec_raw(key, text, strlen(text), &r);
	free(text);
	CHECK_ERROR_FIELD(&r, 400, "invalid_request", "timeout");
	client_resp_free(&r);

	body = json_pack("{s:s,s:s,s:i}", "sessionId", id, "command", "echo ok", "timeout", 30);
	text = json_dumps(body, JSON_COMPACT);
	json_decref(body);
	exec_raw(key, text, strlen(text), &r);
	free(text);
	CHECK_STATUS(&r, 200);
	CHECK_STR_EQ(res_str(&r, "stdout"), "ok\n");
	client_resp_free(&r);

	/* Paid: 300 is the maximum. */
	char *pid = new_session();
	exec_rejected(
	    json_pack("{s:s,s:s,s:i}", "sessionId", pid, "command", "true", "timeout", 301),
	    "timeout");
	client_must_delete(key, id);
	client_must_delete(bk.paid_key, pid);
	free(id);
	free(pid);
}

/* ---- identity and isolation ---- */

TEST(exec_identity)
{
	char *id = new_session();
	char *out = client_must_run(bk.paid_key, id, "whoami; id -u; uname -n; hostname");
	CHECK_STR_EQ(out, "user\n1000\nbunker\nbunker\n");
	free(out);
	client_must_delete(bk.paid_key, id);
	free(id);
}

static void add_path(char *cmd, size_t len, const char *path)
{
	if (strchr(path, '\'') != NULL)
		return;
	size_t n = strlen(cmd);
	snprintf(cmd + n, len - n, " '%s'", path);
}

/* Adds every entry of a host directory to cmd (except skip). */
static int add_entries(char *cmd, size_t len, const char *dir, const char *skip)
{
	DIR *d = opendir(dir);
	if (d == NULL)
		return 0;
	int n = 0;
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0 ||
		    (skip && strcmp(de->d_name, skip) == 0))
			continue;
		char p[512];
		snprintf(p, sizeof(p), "%s/%s", dir, de->d_name);
		add_path(cmd, len, p);
		n++;
	}
	closedir(d);
	return n;
}

TEST(exec_host_hidden)
{
	char marker[] = "/tmp/bk-host-marker-XXXXXX";
	int fd = mkstemp(marker);
	CHECK(fd >= 0);
	close(fd);

	char cmd[16384] = "for p in";
	add_path(cmd, sizeof(cmd), marker);
	add_path(cmd, sizeof(cmd), bk.d.data_dir);
	struct stat st;
	if (stat("/work", &st) == 0)
		add_path(cmd, sizeof(cmd), "/work");
	add_entries(cmd, sizeof(cmd), "/root", NULL);
	add_entries(cmd, sizeof(cmd), "/home", "user");
	size_t n = strlen(cmd);
	snprintf(cmd + n, sizeof(cmd) - n,
		 "; do if test -e \"$p\"; then echo \"visible: $p\"; fi; done; "
		 "ls -A /root 2>/dev/null; echo done");

	char *id = new_session();
	char *out = client_must_run(bk.paid_key, id, cmd);
	unlink(marker);
	CHECK_MSG(strcmp(out, "done\n") == 0, "host paths visible in the sandbox:\n%s", out);
	free(out);
	client_must_delete(bk.paid_key, id);
	free(id);
}

/* ---- code run by Bun ---- */

TEST(code_console_log)
{
	char *id = new_session();
	struct client_resp r;
	run_code(id, "console.log(1+1)", NULL, &r);
	CHECK_STR_EQ(res_str(&r, "stdout"), "2\n");
	CHECK_INT_EQ(res_int(&r, "exitCode"), 0);
	CHECK(!res_bool(&r, "timedOut"));
	CHECK(res_num(&r, "executionTime") >= 0);
	client_resp_free(&r);

	json_t *extra = json_pack("{s:{s:s}}", "env", "FOO", "bar");
	run_code(id, "console.log(process.env.FOO); console.error('to stderr')", extra, &r);
	CHECK_STR_EQ(res_str(&r, "stdout"), "bar\n");
	CHECK_STR_EQ(res_str(&r, "stderr"), "to stderr\n");
	client_resp_free(&r);
	client_must_delete(bk.paid_key, id);
	free(id);
}

TEST(code_typescript_top_level_await)
{
	char *id = new_session();
	struct client_resp r;
	run_code(id,
		 "interface P { n: number }\n"
		 "const x: number = await Promise.resolve(41);\n"
		 "const p: P = { n: x + 1 };\n"
		 "console.log(p.n)",
		 NULL, &r);
	CHECK_STR_EQ(res_str(&r, "stdout"), "42\n");
	CHECK_INT_EQ(res_int(&r, "exitCode"), 0);
	client_resp_free(&r);
	client_must_delete(bk.paid_key, id);
	free(id);
}

TEST(code_relative_import)
{
	char *id = new_session();
	struct client_resp r;
	json_t *extra = json_pack("{s:[{s:s,s:s}]}", "files", "path", "lib.ts", "content",
				  "export const v: number = 7;\n");
	run_code(id, "import {v} from \"./lib.ts\"; console.log(v * 6)", extra, &r);
	CHECK_STR_EQ(res_str(&r, "stdout"), "42\n");
	CHECK_INT_EQ(res_int(&r, "exitCode"), 0);
	client_resp_free(&r);

	/* From workingDir, not from the workspace root. */
	extra = json_pack("{s:[{s:s,s:s}],s:s}", "files", "path", "sub/lib.ts", "content",
			  "export const v = 'from sub';\n", "workingDir", "sub");
	run_code(id, "import {v} from './lib.ts'; console.log(v, process.cwd())", extra, &r);
	CHECK_STR_EQ(res_str(&r, "stdout"), "from sub /workspace/sub\n");
	client_resp_free(&r);
	client_must_delete(bk.paid_key, id);
	free(id);
}

TEST(code_leaves_nothing_behind)
{
	char *id = new_session();
	const char *list = "find /workspace -mindepth 1 | sort";
	char *out = client_must_run(bk.paid_key, id, "mkdir sub && echo k > keep.txt && echo ok");
	free(out);
	char *before = client_must_run(bk.paid_key, id, list);

	struct client_resp r;
	run_code(id, "await Bun.sleep(10); console.log('ran')", NULL, &r);
	CHECK_STR_EQ(res_str(&r, "stdout"), "ran\n");
	CHECK_MSG(json_array_size(json_object_get(r.json, "filesWritten")) == 0,
		  "running code wrote files: %s", r.body);
	client_resp_free(&r);
	run_code(id, "console.log('in sub')", json_pack("{s:s}", "workingDir", "sub"), &r);
	CHECK_STR_EQ(res_str(&r, "stdout"), "in sub\n");
	client_resp_free(&r);
	run_code(id, "throw new Error('fails')", NULL, &r);
	client_resp_free(&r);

	char *after = client_must_run(bk.paid_key, id, list);
	CHECK_MSG(strcmp(before, after) == 0, "workspace before:\n%safter:\n%s", before, after);
	free(before);
	free(after);
	client_must_delete(bk.paid_key, id);
	free(id);
}

TEST(code_error)
{
	char *id = new_session();
	struct client_resp r;
	run_code(id, "throw new Error('boom-7f3a')", NULL, &r);
	CHECK_MSG(res_int(&r, "exitCode") != 0, "a thrown error exited 0");
	CHECK_MSG(strstr(res_str(&r, "stderr"), "boom-7f3a") != NULL, "stderr: %s",
		  res_str(&r, "stderr"));
	CHECK(!res_bool(&r, "timedOut"));
	client_resp_free(&r);

	run_code(id, "console.log('x'); process.exit(5)", NULL, &r);
	CHECK_INT_EQ(res_int(&r, "exitCode"), 5);
	CHECK_STR_EQ(res_str(&r, "stdout"), "x\n");
	client_resp_free(&r);

	/* A syntax error is the program's failure, not the server's. */
	run_code(id, "const = ;", NULL, &r);
	CHECK_MSG(res_int(&r, "exitCode") != 0, "a syntax error exited 0");
	client_resp_free(&r);

	json_t *extra = json_pack("{s:i}", "timeout", 1);
	run_code(id, "await new Promise(() => setInterval(() => {}, 1000))", extra, &r);
	CHECK(res_bool(&r, "timedOut"));
	CHECK_INT_EQ(res_int(&r, "exitCode"), 124);
	client_resp_free(&r);
	client_must_delete(bk.paid_key, id);
	free(id);
}

/* ---- output limits ---- */

static void check_truncated(const char *stream)
{
	char *id = new_session();
	char cmd[256];
	/* 11 MiB of 'a'. */
	snprintf(cmd, sizeof(cmd), "head -c 11534336 /dev/zero | tr '\\0' a%s",
		 strcmp(stream, "stderr") == 0 ? " >&2" : "");
	struct client_resp r;
	json_t *extra = json_pack("{s:i}", "timeout", 120);
	client_must_exec(bk.paid_key, id, cmd, extra, &r);
	json_decref(extra);
	CHECK_INT_EQ(res_int(&r, "exitCode"), 0);
	CHECK(!res_bool(&r, "timedOut"));
	const char *other = strcmp(stream, "stdout") == 0 ? "stderr" : "stdout";
	json_t *s = json_object_get(r.json, stream);
	CHECK_MSG(json_is_string(s), "no %s", stream);
	CHECK_INT_EQ(json_string_length(s), 10485760);
	const char *v = json_string_value(s);
	for (size_t i = 0; i < 10485760; i++)
		CHECK_MSG(v[i] == 'a', "%s[%zu] is 0x%02x", stream, i, (unsigned char)v[i]);
	CHECK_STR_EQ(res_str(&r, other), "");
	char flag[32];
	snprintf(flag, sizeof(flag), "%sTruncated", stream);
	CHECK_MSG(res_bool(&r, flag), "%s is not true", flag);
	snprintf(flag, sizeof(flag), "%sTruncated", other);
	CHECK_MSG(!res_flag(&r, flag), "%s is true", flag);
	client_resp_free(&r);

	/* Exactly 10 MiB is not truncated. */
	snprintf(cmd, sizeof(cmd), "head -c 10485760 /dev/zero | tr '\\0' b%s",
		 strcmp(stream, "stderr") == 0 ? " >&2" : "");
	extra = json_pack("{s:i}", "timeout", 120);
	client_must_exec(bk.paid_key, id, cmd, extra, &r);
	json_decref(extra);
	CHECK_INT_EQ(json_string_length(json_object_get(r.json, stream)), 10485760);
	snprintf(flag, sizeof(flag), "%sTruncated", stream);
	CHECK_MSG(!res_flag(&r, flag), "%s true for exactly 10 MiB", flag);
	client_resp_free(&r);
	client_must_delete(bk.paid_key, id);
	free(id);
}

TEST_TIMEOUT(output_stdout_truncated, 180)
{
	check_truncated("stdout");
}

TEST_TIMEOUT(output_stderr_truncated, 180)
{
	check_truncated("stderr");
}

/* ---- bad input ---- */

TEST(exec_code_xor_command)
{
	char *id = new_session();
	exec_rejected(json_pack("{s:s,s:s,s:s}", "sessionId", id, "command", "echo a", "code",
				"console.log(1)"),
		      NULL);
	exec_rejected(json_pack("{s:s}", "sessionId", id), NULL);
	exec_rejected(json_pack("{s:s,s:s}", "sessionId", id, "workingDir", "/workspace"), NULL);
	char *out = client_must_run(bk.paid_key, id, "echo still fine");
	CHECK_STR_EQ(out, "still fine\n");
	free(out);
	client_must_delete(bk.paid_key, id);
	free(id);
}

TEST(exec_unknown_session)
{
	struct client_resp r;
	exec_take(
	    json_pack("{s:s,s:s}", "sessionId", "ses_aaaaaaaaaaaaaaaaaaaa", "command", "true"), &r);
	CHECK_ERROR(&r, 404, "session_not_found");
	client_resp_free(&r);
	exec_take(json_pack("{s:s,s:s}", "sessionId", "ses_aaaaaaaaaaaaaaaaaaaa", "code", "1"), &r);
	CHECK_ERROR(&r, 404, "session_not_found");
	client_resp_free(&r);
	exec_take(json_pack("{s:s,s:s}", "sessionId", "../../etc", "command", "true"), &r);
	CHECK_ERROR(&r, 404, "session_not_found");
	client_resp_free(&r);
}

TEST(exec_unauthorized)
{
	char *id = new_session();
	json_t *body = json_pack("{s:s,s:s}", "sessionId", id, "command", "true");
	char *text = json_dumps(body, JSON_COMPACT);
	json_decref(body);
	struct client_resp r;
	exec_raw(NULL, text, strlen(text), &r);
	CHECK_ERROR(&r, 401, "unauthorized");
	client_resp_free(&r);
	exec_raw("bk_nope", text, strlen(text), &r);
	CHECK_ERROR(&r, 401, "unauthorized");
	client_resp_free(&r);
	free(text);
	client_must_delete(bk.paid_key, id);
	free(id);
}

TEST(exec_bad_types)
{
	char *id = new_session();
	struct client_resp r;
	exec_raw(bk.paid_key, "[]", 2, &r);
	CHECK_ERROR(&r, 400, "invalid_request");
	client_resp_free(&r);
	exec_raw(bk.paid_key, "{", 1, &r);
	CHECK_ERROR(&r, 400, "invalid_request");
	client_resp_free(&r);

	exec_rejected(json_pack("{s:i,s:s}", "sessionId", 5, "command", "true"), "sessionId");
	exec_rejected(json_pack("{s:s,s:i}", "sessionId", id, "command", 5), "command");
	exec_rejected(json_pack("{s:s,s:[s]}", "sessionId", id, "code", "1"), "code");
	exec_rejected(
	    json_pack("{s:s,s:s,s:s}", "sessionId", id, "command", "true", "timeout", "5"),
	    "timeout");
	exec_rejected(
	    json_pack("{s:s,s:s,s:f}", "sessionId", id, "command", "true", "timeout", 1.5),
	    "timeout");
	exec_rejected(json_pack("{s:s,s:s,s:i}", "sessionId", id, "command", "true", "timeout", -1),
		      "timeout");
	exec_rejected(json_pack("{s:s,s:s,s:s}", "sessionId", id, "command", "true", "env", "A=1"),
		      "env");
	exec_rejected(
	    json_pack("{s:s,s:s,s:{s:i}}", "sessionId", id, "command", "true", "env", "A", 1),
	    "env");
	exec_rejected(json_pack("{s:s,s:s,s:s}", "sessionId", id, "command", "true", "files", "x"),
		      "files");
	exec_rejected(json_pack("{s:s,s:s,s:[{s:s}]}", "sessionId", id, "command", "true", "files",
				"path", "a.txt"),
		      "content");
	exec_rejected(json_pack("{s:s,s:s,s:[{s:i,s:s}]}", "sessionId", id, "command", "true",
				"files", "path", 5, "content", "x"),
		      "path");
	exec_rejected(
	    json_pack("{s:s,s:s,s:s}", "sessionId", id, "command", "true", "stream", "yes"),
	    "stream");
	/* Both dialects' id: 400 (in whichever dialect's shape). */
	exec_take(json_pack("{s:s,s:s,s:s}", "sessionId", id, "session_id", id, "command", "true"),
		  &r);
	CHECK_MSG(r.status == 400, "sessionId and session_id: HTTP %ld %s", r.status, r.body);
	client_resp_free(&r);

	/* More than 100 env entries. */
	json_t *env = json_object();
	for (int i = 0; i < 101; i++) {
		char k[16];
		snprintf(k, sizeof(k), "V%d", i);
		json_object_set_new(env, k, json_string("x"));
	}
	exec_rejected(json_pack("{s:s,s:s,s:o}", "sessionId", id, "command", "true", "env", env),
		      "env");

	/* Nothing of it ran or was written. */
	char *out = client_must_run(bk.paid_key, id, "find /workspace -mindepth 1");
	CHECK_STR_EQ(out, "");
	free(out);
	client_must_delete(bk.paid_key, id);
	free(id);
}

TEST(exec_invalid_utf8_and_nul)
{
	char *id = new_session();
	char body[512];
	struct client_resp r;
	static const char *const bad[] = {"echo \xff", "echo \xc3", "echo \xed\xa0\x80",
					  "echo \xc0\xaf"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int n = snprintf(body, sizeof(body), "{\"sessionId\":\"%s\",\"command\":\"%s\"}",
				 id, bad[i]);
		exec_raw(bk.paid_key, body, (size_t)n, &r);
		CHECK_ERROR(&r, 400, "invalid_request");
		client_resp_free(&r);
	}
	/* An escaped NUL in the command, and a raw one in the body. */
	int n = snprintf(body, sizeof(body),
			 "{\"sessionId\":\"%s\",\"command\":\"echo a\\u0000b\"}", id);
	exec_raw(bk.paid_key, body, (size_t)n, &r);
	CHECK_ERROR(&r, 400, "invalid_request");
	client_resp_free(&r);
	n = snprintf(body, sizeof(body), "{\"sessionId\":\"%s\",\"command\":\"echo aXb\"}", id);
	*strchr(body + 20, 'X') = '\0';
	exec_raw(bk.paid_key, body, (size_t)n, &r);
	CHECK_ERROR(&r, 400, "invalid_request");
	client_resp_free(&r);
	n = snprintf(body, sizeof(body),
		     "{\"sessionId\":\"%s\",\"code\":\"console.log(1)\\u0000\"}", id);
	exec_raw(bk.paid_key, body, (size_t)n, &r);
	CHECK_ERROR(&r, 400, "invalid_request");
	client_resp_free(&r);

	/* Valid UTF-8 goes through intact. */
	char *out = client_must_run(bk.paid_key, id, "echo 'h\xc3\xa9llo \xe2\x9c\x93'");
	CHECK_STR_EQ(out, "h\xc3\xa9llo \xe2\x9c\x93\n");
	free(out);
	client_must_delete(bk.paid_key, id);
	free(id);
}

TEST_TIMEOUT(exec_big_bodies, 120)
{
	char *id = new_session();
	size_t big = 2u << 20;
	char *filler = malloc(big + 1);
	memset(filler, 'a', big);
	filler[big] = '\0';

	/* 2 MB of code, nearly all of it a comment. */
	size_t len = big + 64;
	char *code = malloc(len);
	snprintf(code, len, "// %s\nconsole.log(3)", filler);
	struct client_resp r;
	run_code(id, code, NULL, &r);
	CHECK_STR_EQ(res_str(&r, "stdout"), "3\n");
	CHECK_INT_EQ(res_int(&r, "exitCode"), 0);
	client_resp_free(&r);
	free(code);

	/* 2 MB of command: beyond what exec() takes in one argument, so a
	 * failure of the program (200, exit code not 0) or a clean 400/413. */
	char *cmd = malloc(len);
	snprintf(cmd, len, "echo ok # %s", filler);
	exec_take(json_pack("{s:s,s:s}", "sessionId", id, "command", cmd), &r);
	CHECK_MSG(
	    r.status == 200 || r.status == 400 || r.status == 413,
	    "a 2 MB command: want 200 (the program fails) or a clean 400/413, got HTTP %ld %.300s",
	    r.status, r.body);
	if (r.status == 200) {
		if (res_int(&r, "exitCode") == 0)
			CHECK_STR_EQ(res_str(&r, "stdout"), "ok\n");
	} else if (r.status == 413) {
		CHECK_ERROR(&r, 413, "payload_too_large");
	} else {
		CHECK_ERROR(&r, 400, "invalid_request");
	}
	client_resp_free(&r);
	free(cmd);

	/* 2 MB file through files[]. */
	json_t *extra = json_pack("{s:[{s:s,s:s}]}", "files", "path", "big.txt", "content", filler);
	client_must_exec(bk.paid_key, id, "wc -c < big.txt", extra, &r);
	json_decref(extra);
	char want[32];
	snprintf(want, sizeof(want), "%zu\n", big);
	CHECK_STR_EQ(res_str(&r, "stdout"), want);
	client_resp_free(&r);
	free(filler);

	check_healthy();
	char *out = client_must_run(bk.paid_key, id, "echo fine");
	CHECK_STR_EQ(out, "fine\n");
	free(out);
	client_must_delete(bk.paid_key, id);
	free(id);
}

TEST_TIMEOUT(exec_body_over_limit, 120)
{
	char *id = new_session();
	/* The default limit is 100 MiB; one byte more. */
	size_t total = (100u << 20) + 1;
	char *body = malloc(total + 1);
	int head = snprintf(body, total, "{\"sessionId\":\"%s\",\"code\":\"//", id);
	memset(body + head, 'a', total - (size_t)head - 2);
	memcpy(body + total - 2, "\"}", 2);
	body[total] = '\0';
	const char *headers[] = {"Expect: 100-continue", NULL};
	struct client_req req = {.method = "POST",
				 .path = "/execute",
				 .key = bk.paid_key,
				 .body = body,
				 .body_len = total,
				 .headers = headers,
				 .timeout_s = 100};
	struct client_resp r;
	client_request(&bk.d, &req, &r);
	free(body);
	CHECK_ERROR(&r, 413, "payload_too_large");
	client_resp_free(&r);

	check_healthy();
	char *out = client_must_run(bk.paid_key, id, "echo fine");
	CHECK_STR_EQ(out, "fine\n");
	free(out);
	client_must_delete(bk.paid_key, id);
	free(id);
}
