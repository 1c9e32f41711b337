/* Black-box tests of what executions' output costs the daemon: an answer
 * of 10 MiB of control bytes (60 MiB of JSON) is encoded as the socket
 * drains and arrives byte-exact, in both dialects; the output the daemon
 * holds is bounded host-wide and per API key, so that many executions at
 * once, and answers nobody reads, stay within the budget, and one key's
 * flood does not cut another key's output; an idempotent execution
 * replays as before. One real bunkerd for every test, with the default
 * budget (96 MiB in all, 32 MiB a key).
 */
#include "../client.h"
#include "../iv_client.h"
#include "../raw.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* As in files_stream.c: AddressSanitizer's quarantine (256 MB by default)
 * would otherwise fill the peak that these tests measure, not the
 * daemon. */
int harness_setup(void)
{
	return client_fixture_start_measured();
}

void harness_teardown(void)
{
	client_fixture_stop();
}

int harness_final_check(void)
{
	return client_fixture_check();
}

#define MIB ((size_t)1 << 20)
/* The default per-key share of output held (docs/OPERATIONS.md). */
#define KEY_SHARE (32 * MIB)

/* The command that prints n bytes of \x01 to stdout, then does more. */
static void ones_command(char *out, size_t len, size_t n, const char *then)
{
	snprintf(out, len, "head -c %zu /dev/zero | tr '\\0' '\\1'%s%s", n, then ? "; " : "",
		 then ? then : "");
}

static bool all_ones(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (s[i] != '\x01')
			return false;
	return true;
}

/* Resets the daemon's VmHWM to its current RSS; false when the kernel
 * does not let it. */
static bool hwm_reset(void)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/clear_refs", (int)bk.d.pid);
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	bool ok = write(fd, "5", 1) == 1;
	close(fd);
	return ok;
}

/* Sends POST /execute of command in session id under key on a new raw
 * connection (rcvbuf as raw_dial's; Connection: close): the fd, or -1. */
static int raw_execute(const char *key, const char *id, const char *command, int rcvbuf)
{
	json_t *b = json_pack("{s:s,s:s,s:i}", "sessionId", id, "command", command, "timeout", 120);
	char *body = json_dumps(b, JSON_COMPACT);
	json_decref(b);
	int fd = raw_dial(bk.d.port, NULL, rcvbuf);
	if (fd >= 0) {
		char head[1024];
		int n = snprintf(head, sizeof(head),
				 "POST /execute HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
				 "Content-Type: application/json\r\nContent-Length: %zu\r\n"
				 "Connection: close\r\n\r\n",
				 key, strlen(body));
		raw_send(fd, head, (size_t)n, 2000);
		raw_send(fd, body, strlen(body), 2000);
	}
	free(body);
	return fd;
}

/* POST /execute of command under key: the answer, 200 required. */
static void exec_ok(const char *key, const char *id, const char *command, struct client_resp *r)
{
	json_t *extra = json_pack("{s:i}", "timeout", 120);
	client_must_exec(key, id, command, extra, r);
	json_decref(extra);
}

TEST_TIMEOUT(exec_10mb_of_control_bytes_exact, 300)
{
	char *id = client_must_create(bk.paid_key, NULL);
	char cmd[512];
	/* stderr: valid UTF-8, a byte that is not, quotes and a newline. */
	ones_command(cmd, sizeof(cmd), 10 * MIB,
		     "printf 'caf\\303\\251 \\377 \"q\" \\\\ end\\n' >&2");
	struct client_resp r;
	exec_ok(bk.paid_key, id, cmd, &r);
	CHECK_MSG(r.json != NULL, "the answer of %zu bytes is not JSON", r.body_len);
	/* Every field, with today's values and in today's order. */
	static const char *const order[] = {
	    "stdout",  "stderr",   "exitCode",	   "executionTime",   "memoryUsed",
	    "cpuTime", "timedOut", "filesWritten", "stdoutTruncated", "stderrTruncated"};
	CHECK_INT_EQ(json_object_size(r.json), sizeof(order) / sizeof(order[0]));
	const char *at = r.body;
	for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++) {
		char name[64];
		snprintf(name, sizeof(name), "\"%s\":", order[i]);
		const char *p = strstr(at, name);
		CHECK_MSG(p != NULL, "%s missing or out of order", order[i]);
		at = p;
	}
	json_t *out = json_object_get(r.json, "stdout");
	CHECK(json_is_string(out));
	CHECK_MSG(json_string_length(out) == 10 * MIB, "stdout of %zu bytes",
		  json_string_length(out));
	CHECK(all_ones(json_string_value(out), 10 * MIB));
	CHECK_STR_EQ(client_json_str(r.json, "stderr"), "caf\xc3\xa9 \xef\xbf\xbd \"q\" \\ end\n");
	CHECK_INT_EQ(client_must_int(r.json, "exitCode", "answer"), 0);
	CHECK(!client_must_bool(r.json, "timedOut", "answer"));
	CHECK(!client_must_bool(r.json, "stdoutTruncated", "answer"));
	CHECK(!client_must_bool(r.json, "stderrTruncated", "answer"));
	CHECK(json_is_array(json_object_get(r.json, "filesWritten")));
	/* Each \x01 is the six bytes \u0001, in jansson's spelling. */
	CHECK(strstr(r.body, "{\"stdout\":\"\\u0001\\u0001") == r.body);
	char len[32];
	CHECK_MSG(client_resp_header(&r, "Content-Length", len, sizeof(len)) != NULL,
		  "no Content-Length");
	CHECK_INT_EQ(atoll(len), (long long)r.body_len);
	client_resp_free(&r);
	client_must_delete(bk.paid_key, id);
	free(id);
}

TEST_TIMEOUT(instavm_exec_10mb_of_control_bytes_exact, 300)
{
	char *id = iv_create(bk.paid_key, NULL);
	char cmd[512];
	ones_command(cmd, sizeof(cmd), 10 * MIB, "printf 'err\\001\\n' >&2");
	struct client_resp r;
	iv_take("/execute", bk.paid_key,
		json_pack("{s:s,s:s,s:s,s:i}", "session_id", id, "command", cmd, "language", "bash",
			  "timeout", 120),
		&r);
	CHECK_STATUS(&r, 200);
	CHECK_MSG(r.json != NULL, "the answer of %zu bytes is not JSON", r.body_len);
	CHECK_INT_EQ(json_object_size(r.json), 5);
	json_t *out = json_object_get(r.json, "stdout");
	CHECK(json_is_string(out));
	CHECK_MSG(json_string_length(out) == 10 * MIB, "stdout of %zu bytes",
		  json_string_length(out));
	CHECK(all_ones(json_string_value(out), 10 * MIB));
	CHECK_STR_EQ(client_json_str(r.json, "stderr"), "err\x01\n");
	CHECK_INT_EQ(client_must_int(r.json, "exit_code", r.body), 0);
	CHECK(json_is_real(json_object_get(r.json, "execution_time")));
	CHECK(json_is_real(json_object_get(r.json, "cpu_time")));
	CHECK(strstr(r.body, "{\"stdout\":\"\\u0001") == r.body);
	client_resp_free(&r);
	free(id);
}

TEST_TIMEOUT(exec_concurrent_peak_rss, 600)
{
	enum { N = 16 };
	char *id = client_must_create(bk.paid_key, NULL);
	char cmd[256];
	ones_command(cmd, sizeof(cmd), 10 * MIB, NULL);
	CHECK(hwm_reset());
	long before = raw_proc_kb(bk.d.pid, "VmRSS");
	double t0 = client_now();
	pid_t kids[N];
	for (int i = 0; i < N; i++) {
		kids[i] = fork();
		CHECK(kids[i] >= 0);
		if (kids[i] == 0) {
			int fd = raw_execute(bk.paid_key, id, cmd, 0);
			char head[8192];
			enum raw_end end;
			raw_read(fd, head, sizeof(head), "\r\n\r\n", 300000, &end);
			int status = raw_status(head);
			raw_drain(fd, 300000, &end);
			_exit(status == 200 && end == RAW_EOF ? 0 : 1);
		}
	}
	int failed = 0;
	for (int i = 0; i < N; i++) {
		int st;
		waitpid(kids[i], &st, 0);
		failed += !(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	}
	long peak = raw_proc_kb(bk.d.pid, "VmHWM");
	fprintf(
	    stderr,
	    "    16 executions of 10 MiB of \\x01 at once: %.1f s, the daemon's peak RSS %ld MB "
	    "over %ld MB\n",
	    client_now() - t0, (peak - before) / 1024, before / 1024);
	CHECK_MSG(failed == 0, "%d of the 16 executions did not get a whole 200", failed);
	CHECK_MSG(peak - before < 128 * 1024,
		  "16 executions of 10 MiB took the daemon %ld MB further", (peak - before) / 1024);
	client_must_delete(bk.paid_key, id);
	free(id);
}

/* bunker_output_held_bytes of GET /metrics. */
static long long output_held(void)
{
	struct client_resp r;
	client_call(&bk.d, "GET", "/metrics", NULL, NULL, &r);
	const char *p = r.body ? strstr(r.body, "\nbunker_output_held_bytes ") : NULL;
	long long n = p ? atoll(p + strlen("\nbunker_output_held_bytes ")) : -1;
	client_resp_free(&r);
	return n;
}

/* Until the output held is steady (the flood's executions have ended) and
 * at least min: what it is. */
static long long output_held_steady(long long min)
{
	long long last = -1, now = output_held();
	double t0 = client_now();
	while ((now != last || now < min) && client_now() - t0 < 60) {
		usleep(1000000);
		last = now;
		now = output_held();
	}
	return now;
}

/* Runs command under key and returns its stdout's length and whether it
 * was cut. */
static size_t exec_stdout(const char *key, const char *id, const char *command, bool *cut)
{
	struct client_resp r;
	exec_ok(key, id, command, &r);
	json_t *out = json_object_get(r.json, "stdout");
	CHECK_MSG(json_is_string(out), "%.200s", r.body);
	size_t n = json_string_length(out);
	CHECK(all_ones(json_string_value(out), n));
	*cut = client_must_bool(r.json, "stdoutTruncated", "answer");
	client_resp_free(&r);
	return n;
}

TEST_TIMEOUT(exec_unread_answers_hold_one_share, 300)
{
	enum { N = 6 };
	char flooder[CLIENT_KEY_MAX];
	client_must_key("paid", flooder, sizeof(flooder));
	char *fid = client_must_create(flooder, NULL);
	char *id = client_must_create(bk.paid_key, NULL);
	char cmd[256];
	ones_command(cmd, sizeof(cmd), 10 * MIB, NULL);
	long before = raw_proc_kb(bk.d.pid, "VmRSS");
	int fds[N];
	for (int i = 0; i < N; i++) {
		/* A small window: what the kernel holds for the client is small. */
		fds[i] = raw_execute(flooder, fid, cmd, 4096);
		CHECK(fds[i] >= 0);
	}
	/* Once the flood's executions have ended, its unread answers hold the
	 * whole share: the flooder's next output is cut. */
	double t0 = client_now();
	long long kept = output_held_steady(KEY_SHARE / 2);
	char one[256];
	ones_command(one, sizeof(one), 4 * MIB, NULL);
	bool cut = false;
	size_t more = exec_stdout(flooder, fid, one, &cut);
	long held = raw_proc_kb(bk.d.pid, "VmRSS");
	fprintf(stderr,
		"    %d answers of 60 MB nobody reads: they hold %lld MB of output after %.1f s, "
		"the daemon grew %ld MB\n",
		N, kept / (long long)MIB, client_now() - t0, (held - before) / 1024);
	CHECK_MSG(kept <= (long long)KEY_SHARE, "the unread answers hold %lld bytes", kept);
	CHECK_MSG(cut && more < MIB, "the flooder's next output was not cut (%zu bytes kept)",
		  more);
	/* The share, and what the sanitizer's allocator keeps of the buffers
	 * as they grew (some 25 MB; 3 MB in the release build): 369 MB on
	 * main. */
	CHECK_MSG(held - before < 96 * 1024, "%d unread answers held %ld MB of the daemon", N,
		  (held - before) / 1024);
	/* Another key's output is whole meanwhile. */
	char four[256];
	ones_command(four, sizeof(four), 4 * MIB, NULL);
	bool other_cut = true;
	CHECK_INT_EQ(exec_stdout(bk.paid_key, id, four, &other_cut), 4 * MIB);
	CHECK_MSG(!other_cut, "another key's 4 MiB was cut");
	/* The clients go: their answers give the share back. */
	for (int i = 0; i < N; i++)
		close(fds[i]);
	size_t got = 0;
	t0 = client_now();
	do {
		usleep(500000);
		got = exec_stdout(flooder, fid, one, &cut);
	} while (cut && client_now() - t0 < 30);
	CHECK_MSG(!cut && got == 4 * MIB,
		  "the share was not given back %.1f s after the clients left", client_now() - t0);
	client_must_delete(flooder, fid);
	client_must_delete(bk.paid_key, id);
	free(fid);
	free(id);
}

TEST_TIMEOUT(exec_flood_of_one_key_leaves_another_whole, 300)
{
	enum { N = 16 };
	char flooder[CLIENT_KEY_MAX];
	client_must_key("paid", flooder, sizeof(flooder));
	char *fid = client_must_create(flooder, NULL);
	char *id = client_must_create(bk.paid_key, NULL);
	char cmd[256];
	/* Each holds what it printed until it ends, 15 s later. */
	ones_command(cmd, sizeof(cmd), 10 * MIB, "sleep 15");
	int results[2];
	CHECK(pipe(results) == 0);
	pid_t kids[N];
	for (int i = 0; i < N; i++) {
		kids[i] = fork();
		CHECK(kids[i] >= 0);
		if (kids[i] == 0) {
			close(results[0]);
			bool cut = false;
			size_t n = exec_stdout(flooder, fid, cmd, &cut);
			char line[64];
			int k = snprintf(line, sizeof(line), "%zu %d\n", n, cut);
			_exit(write(results[1], line, (size_t)k) == k ? 0 : 1);
		}
	}
	close(results[1]);
	sleep(5);
	/* Meanwhile another key prints 8 MiB: all of it. */
	char eight[256];
	ones_command(eight, sizeof(eight), 8 * MIB, NULL);
	bool cut = true;
	CHECK_INT_EQ(exec_stdout(bk.paid_key, id, eight, &cut), 8 * MIB);
	CHECK_MSG(!cut, "another key's 8 MiB was cut while the flood ran");
	int failed = 0;
	for (int i = 0; i < N; i++) {
		int st;
		waitpid(kids[i], &st, 0);
		failed += !(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	}
	CHECK_MSG(failed == 0, "%d of the flooder's executions failed", failed);
	FILE *f = fdopen(results[0], "r");
	size_t total = 0, n;
	int c, ncut = 0;
	while (fscanf(f, "%zu %d", &n, &c) == 2) {
		total += n;
		ncut += c;
	}
	fclose(f);
	fprintf(stderr, "    the flooder's 16 executions kept %zu MB of 160 MiB, %d cut\n",
		total / MIB, ncut);
	/* They all held what they printed at once: no more than the share. */
	CHECK_MSG(total <= KEY_SHARE, "the flooder kept %zu bytes at once, over its share", total);
	CHECK(ncut > 0);
	client_must_delete(flooder, fid);
	client_must_delete(bk.paid_key, id);
	free(fid);
	free(id);
}

/* An execution whose answer is over what Idempotency-Key keeps (1 MiB)
 * is streamed and remembered by its length, as before; a small one
 * replays byte for byte. */
TEST_TIMEOUT(exec_idempotent_answers_replay_as_before, 120)
{
	char *id = client_must_create(bk.paid_key, NULL);
	char cmd[256], body[512];
	const char *hdr[3] = {NULL, "Content-Type: application/json", NULL};
	char idem[64];
	struct client_resp a, b;
	/* Small: replayed byte for byte. */
	ones_command(cmd, sizeof(cmd), 1000, "echo run >> runs");
	json_t *j = json_pack("{s:s,s:s}", "sessionId", id, "command", cmd);
	char *text = json_dumps(j, JSON_COMPACT);
	json_decref(j);
	snprintf(body, sizeof(body), "%s", text);
	free(text);
	snprintf(idem, sizeof(idem), "Idempotency-Key: small-%d", (int)getpid());
	hdr[0] = idem;
	struct client_req req = {
	    .method = "POST", .path = "/execute", .key = bk.paid_key, .body = body, .headers = hdr};
	client_request(&bk.d, &req, &a);
	CHECK_STATUS(&a, 200);
	client_request(&bk.d, &req, &b);
	CHECK_STATUS(&b, 200);
	char buf[32];
	CHECK_STR_EQ(client_resp_header(&b, "Idempotent-Replayed", buf, sizeof(buf)), "true");
	CHECK(a.body_len == b.body_len && memcmp(a.body, b.body, a.body_len) == 0);
	client_resp_free(&a);
	client_resp_free(&b);
	/* 2 MiB of \x01: 12 MiB of JSON, streamed; the replay is 409. */
	ones_command(cmd, sizeof(cmd), 2 * MIB, "echo run >> runs");
	j = json_pack("{s:s,s:s}", "sessionId", id, "command", cmd);
	text = json_dumps(j, JSON_COMPACT);
	json_decref(j);
	snprintf(body, sizeof(body), "%s", text);
	free(text);
	snprintf(idem, sizeof(idem), "Idempotency-Key: large-%d", (int)getpid());
	client_request(&bk.d, &req, &a);
	CHECK_STATUS(&a, 200);
	CHECK_INT_EQ(json_string_length(json_object_get(a.json, "stdout")), 2 * MIB);
	client_request(&bk.d, &req, &b);
	CHECK_ERROR(&b, 409, "conflict");
	CHECK_MSG(strstr(b.body, "too large") != NULL, "%s", b.body);
	char want[96];
	snprintf(want, sizeof(want), "(%zu bytes)", a.body_len);
	CHECK_MSG(strstr(b.body, want) != NULL, "%s does not say %s", b.body, want);
	client_resp_free(&a);
	client_resp_free(&b);
	char *runs = client_must_run(bk.paid_key, id, "wc -l < runs");
	CHECK_STR_EQ(runs, "2\n");
	free(runs);
	client_must_delete(bk.paid_key, id);
	free(id);
}

/* ---- stream:true ---- */

/* The events of an SSE body: each "event: T\ndata: D\n\n", T and D into
 * types[i] and datas[i] (pointers into body, NUL-terminated in place). */
static int sse_split(char *body, char **types, char **datas, int max)
{
	int n = 0;
	char *p = body;
	while (n < max && *p) {
		char *end = strstr(p, "\n\n");
		if (end == NULL)
			break;
		*end = '\0';
		if (p[0] != ':') {
			char *nl = strchr(p, '\n');
			CHECK_MSG(nl != NULL && strncmp(p, "event: ", 7) == 0 &&
				      strncmp(nl + 1, "data: ", 6) == 0,
				  "not an event: %.80s", p);
			*nl = '\0';
			types[n] = p + 7;
			datas[n] = nl + 7;
			n++;
		}
		p = end + 2;
	}
	return n;
}

TEST_TIMEOUT(exec_stream_10mb_of_control_bytes_exact, 300)
{
	enum { MAX_EV = 100000 };
	char *id = client_must_create(bk.paid_key, NULL);
	char cmd[256];
	ones_command(cmd, sizeof(cmd), 10 * MIB, "printf 'e\\001' >&2");
	json_t *b = json_pack("{s:s,s:s,s:i,s:b}", "sessionId", id, "command", cmd, "timeout", 120,
			      "stream", 1);
	char *body = json_dumps(b, JSON_COMPACT);
	json_decref(b);
	struct client_req req = {.method = "POST",
				 .path = "/execute",
				 .key = bk.paid_key,
				 .body = body,
				 .headers =
				     (const char *const[]){"Content-Type: application/json", NULL},
				 .timeout_s = 300};
	struct client_resp r;
	client_request(&bk.d, &req, &r);
	free(body);
	CHECK_MSG(r.status == 200, "HTTP %ld", r.status);
	char **types = calloc(MAX_EV, sizeof(char *)), **datas = calloc(MAX_EV, sizeof(char *));
	int n = sse_split(r.body, types, datas, MAX_EV);
	CHECK(n >= 2);
	size_t events_out = 0;
	bool ones = true;
	for (int i = 0; i < n - 1; i++) {
		json_t *d = json_loads(datas[i], 0, NULL);
		CHECK_MSG(d != NULL, "event %d's data is not JSON: %.80s", i, datas[i]);
		const char *s = json_string_value(json_object_get(d, "data"));
		size_t len = json_string_length(json_object_get(d, "data"));
		if (strcmp(types[i], "stdout") == 0) {
			ones = ones && all_ones(s, len);
			events_out += len;
		} else {
			CHECK_STR_EQ(types[i], "stderr");
			CHECK_STR_EQ(s, "e\x01");
		}
		json_decref(d);
	}
	CHECK_MSG(events_out == 10 * MIB && ones, "stdout events carried %zu bytes", events_out);
	CHECK_STR_EQ(types[n - 1], "exit");
	json_t *exit = json_loads(datas[n - 1], 0, NULL);
	CHECK(exit != NULL);
	json_t *out = json_object_get(exit, "stdout");
	CHECK_MSG(json_string_length(out) == 10 * MIB, "exit's stdout of %zu bytes",
		  json_string_length(out));
	CHECK(all_ones(json_string_value(out), 10 * MIB));
	CHECK_STR_EQ(client_json_str(exit, "stderr"), "e\x01");
	CHECK(!client_must_bool(exit, "stdoutTruncated", "exit"));
	CHECK_INT_EQ(client_must_int(exit, "exitCode", "exit"), 0);
	CHECK_INT_EQ(json_object_size(exit), 10);
	json_decref(exit);
	free(types);
	free(datas);
	client_resp_free(&r);
	client_must_delete(bk.paid_key, id);
	free(id);
}

TEST_TIMEOUT(exec_unread_streams_hold_one_share, 300)
{
	enum { N = 6 };
	char flooder[CLIENT_KEY_MAX];
	client_must_key("paid", flooder, sizeof(flooder));
	char *fid = client_must_create(flooder, NULL);
	char *id = client_must_create(bk.paid_key, NULL);
	char cmd[256];
	ones_command(cmd, sizeof(cmd), 10 * MIB, NULL);
	json_t *b = json_pack("{s:s,s:s,s:i,s:b}", "sessionId", fid, "command", cmd, "timeout", 120,
			      "stream", 1);
	char *body = json_dumps(b, JSON_COMPACT);
	json_decref(b);
	long before = raw_proc_kb(bk.d.pid, "VmRSS");
	CHECK(hwm_reset());
	int fds[N];
	for (int i = 0; i < N; i++) {
		fds[i] = raw_dial(bk.d.port, NULL, 4096);
		CHECK(fds[i] >= 0);
		char head[1024];
		int k = snprintf(head, sizeof(head),
				 "POST /execute HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
				 "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
				 flooder, strlen(body));
		raw_send(fds[i], head, (size_t)k, 2000);
		raw_send(fds[i], body, strlen(body), 2000);
	}
	free(body);
	/* Once the flood's executions have ended, its streams hold its share
	 * but what the kernel took of their events (some MB of JSON, given
	 * back as it was sent): a probe larger than that is cut. */
	double t0 = client_now();
	long long kept = output_held_steady(KEY_SHARE / 2);
	char probe[256], one[256];
	ones_command(probe, sizeof(probe), 10 * MIB, NULL);
	ones_command(one, sizeof(one), 4 * MIB, NULL);
	bool cut = false;
	exec_stdout(flooder, fid, probe, &cut);
	long peak = raw_proc_kb(bk.d.pid, "VmHWM");
	fprintf(stderr,
		"    %d streams of 10 MiB nobody reads: they hold %lld MB of output after %.1f s, "
		"the daemon's peak grew %ld MB\n",
		N, kept / (long long)MIB, client_now() - t0, (peak - before) / 1024);
	CHECK_MSG(kept <= (long long)KEY_SHARE, "the unread streams hold %lld bytes", kept);
	CHECK_MSG(cut, "the flooder's output was not cut");
	CHECK_MSG(peak - before < 96 * 1024, "%d unread streams took the daemon %ld MB further", N,
		  (peak - before) / 1024);
	char four[256];
	ones_command(four, sizeof(four), 4 * MIB, NULL);
	bool other_cut = true;
	CHECK_INT_EQ(exec_stdout(bk.paid_key, id, four, &other_cut), 4 * MIB);
	CHECK_MSG(!other_cut, "another key's 4 MiB was cut");
	for (int i = 0; i < N; i++)
		close(fds[i]);
	size_t got = 0;
	t0 = client_now();
	do {
		usleep(500000);
		got = exec_stdout(flooder, fid, one, &cut);
	} while (cut && client_now() - t0 < 30);
	CHECK_MSG(!cut && got == 4 * MIB,
		  "the share was not given back %.1f s after the clients left", client_now() - t0);
	client_must_delete(flooder, fid);
	client_must_delete(bk.paid_key, id);
	free(fid);
	free(id);
}
