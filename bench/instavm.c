/* The InstaVM dialect end to end over HTTP (issue 11's benchmark):
 *
 *  - POST /execute of print(1), echo 1 and console.log(1) in the session's
 *    warm interpreters, against the same program started as a fresh
 *    process in the same session (python3 -c, bash -c, bun -e, run through
 *    the bash interpreter so that both pay the same HTTP and dispatch),
 *    same run: p50, p99 and the ratio of the p50s;
 *  - create -> first answer of a lazily spawned session (POST
 *    /v1/sessions/session, then POST /execute of print(1) in it, timed
 *    from the create's start) with the warm pool, p50 and p99.
 *
 * Usage: bench/instavm [BUILD_DIR]; BENCH_N (default 200) runs per row,
 * BENCH_PAUSE_MS (default 400) between two lazy spawns.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

/* POST /execute of code in language; its time. Dies unless exit 0 with
 * stdout want. */
static double execute(const char *key, const char *id, const char *language, const char *code,
		      const char *want)
{
	json_t *body =
	    json_pack("{s:s,s:s,s:s}", "session_id", id, "language", language, "command", code);
	char *text = json_dumps(body, JSON_COMPACT);
	json_decref(body);
	json_t *res = NULL;
	double ms;
	long st = http("POST", "/execute", key, text, &res, &ms);
	free(text);
	const char *out = json_string_value(json_object_get(res, "stdout"));
	if (st != 200 || json_integer_value(json_object_get(res, "exit_code")) != 0 ||
	    out == NULL || strcmp(out, want) != 0)
		die("an execution did not answer as expected");
	json_decref(res);
	return ms;
}

static char *instavm_create(const char *key, double *ms)
{
	json_t *res = NULL;
	if (http("POST", "/v1/sessions/session", key, "{}", &res, ms) != 200)
		die("POST /v1/sessions/session failed");
	const char *id = json_string_value(json_object_get(res, "session_id"));
	if (id == NULL)
		die("no session_id");
	char *out = strdup(id);
	json_decref(res);
	return out;
}

int main(int argc, char **argv)
{
	bench_init(argc, argv);
	int n = env_int("BENCH_N", 200, 5, 100000);
	start_daemon((const char *const[]){"--warm-pool", "4", NULL}, 60, 30);
	char key[256];
	key_create("enterprise", key, sizeof(key));
	double *warm = calloc((size_t)n, sizeof(double)),
	       *fresh = calloc((size_t)n, sizeof(double));
	if (warm == NULL || fresh == NULL)
		die("out of memory");

	static const struct {
		const char *name, *language, *warm_code, *fresh_cmd;
	} rows[] = {
	    {"python", "python", "print(1)", "python3 -c 'print(1)'"},
	    {"bash", "bash", "echo 1", "bash -c 'echo 1'"},
	    {"javascript", "javascript", "console.log(1)", "bun -e 'console.log(1)'"},
	};
	char *id = instavm_create(key, NULL);
	struct stats_table t = {.name_width = 34, .n_width = 6};
	printf("execute over HTTP, warm interpreter vs a fresh process in the same session\n");
	stats_print_header(&t);
	for (size_t r = 0; r < sizeof(rows) / sizeof(rows[0]); r++) {
		/* The interpreter starts at its first run, outside the timing. */
		execute(key, id, rows[r].language, rows[r].warm_code, "1\n");
		execute(key, id, "bash", rows[r].fresh_cmd, "1\n");
		for (int i = 0; i < n; i++) {
			warm[i] = execute(key, id, rows[r].language, rows[r].warm_code, "1\n");
			fresh[i] = execute(key, id, "bash", rows[r].fresh_cmd, "1\n");
		}
		char wn[64], fn[64], note[64];
		snprintf(wn, sizeof(wn), "%s warm", rows[r].name);
		snprintf(fn, sizeof(fn), "%s fresh (%.12s...)", rows[r].name, rows[r].fresh_cmd);
		struct stats w = summarise(wn, warm, n), f = summarise(fn, fresh, n);
		snprintf(note, sizeof(note), "warm/fresh p50 %.3f", w.p50 / f.p50);
		stats_print_row(&t, &w, note);
		stats_print_row(&t, &f, NULL);
	}
	free(id);

	/* Lazily spawned sessions: create, then the first answer; a pause
	 * between them (outside the timing) lets the pool refill, as it does
	 * between the creates of a client that is not a burst. */
	int pause_ms = env_int("BENCH_PAUSE_MS", 400, 0, 10000);
	for (int i = 0; i < n; i++) {
		sleep_ms(pause_ms);
		double t0 = now_ms();
		char *sid = instavm_create(key, NULL);
		execute(key, sid, "python", "print(1)", "1\n");
		warm[i] = now_ms() - t0;
		json_t *body = json_pack("{s:s}", "session_id", sid);
		char *text = json_dumps(body, JSON_COMPACT);
		json_decref(body);
		if (http("POST", "/kill", key, text, NULL, NULL) != 200)
			die("POST /kill failed");
		free(text);
		free(sid);
	}
	printf("\nlazy spawn (warm pool of 4, %d ms between spawns)\n", pause_ms);
	stats_print_header(&t);
	struct stats s = summarise("create -> first answer of print(1)", warm, n);
	stats_print_row(&t, &s, NULL);
	free(warm);
	free(fresh);
	bench_cleanup();
	return 0;
}
