/* Black-box tests of POST /execute with "stream": true (Server-Sent
 * Events: stdout/stderr events as output arrives, one exit or error event
 * at the end, ": ping" comments while quiet, the execution killed when the
 * client goes away), and of GET /execution/processes and POST
 * /execution/kill, against one real bunkerd shared by every test.
 *
 * The client's helpers buffer whole answers; streams are read here through
 * an easy handle of our own whose write callback parses the events as they
 * arrive and stamps each with its arrival time.
 */
#include "../client.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

CLIENT_FIXTURE(NULL)

#define NO_SESSION "ses_aaaaaaaaaaaaaaaaaaaa"
#define RAW_MAX ((size_t)64 << 20)

/* ---- a streaming client ---- */

struct sse_event {
	char type[32]; /* "message" when the event had no "event:" line */
	char *data;    /* the data lines joined with "\n" */
	json_t *json;  /* data parsed (NULL when it is not JSON) */
	double t;      /* seconds from the start of the request */
};

struct stream;
typedef void (*stream_hook)(struct stream *s, const struct sse_event *ev);

struct stream {
	/* Options, set before stream_run(). */
	int abort_after;      /* abort the transfer after this many events (0: never) */
	long timeout_ms;      /* whole transfer (0: 120 s) */
	stream_hook on_event; /* called as each event arrives (may be NULL) */
	void *user;

	/* Results. */
	long status;
	char content_type[128];
	char *raw; /* every byte of the body */
	size_t raw_len;
	struct sse_event *ev;
	int n_ev, cap_ev;
	double ping_t[64]; /* arrival of each ": ping" comment */
	int n_ping;
	int n_comments;	   /* every comment, pings included */
	int n_bad_lines;   /* lines that are neither field nor comment */
	bool unterminated; /* the body ended inside an event */
	bool aborted;	   /* we aborted it (abort_after) */
	CURLcode rc;
	char error[CURL_ERROR_SIZE];
	double t_first_byte, t_end;
	json_t *json; /* the body as JSON when it was not a stream */

	/* Parser state. */
	double t0;
	bool is_sse;
	char *line;
	size_t line_len, line_cap;
	bool after_cr;
	char cur_type[32];
	char *cur_data;
	size_t cur_len, cur_cap;
	bool cur_has_data, cur_any;
};

static void grow(char **p, size_t *cap, size_t need)
{
	if (need <= *cap)
		return;
	size_t c = *cap ? *cap : 256;
	while (c < need)
		c *= 2;
	char *q = realloc(*p, c);
	CHECK(q != NULL);
	*p = q;
	*cap = c;
}

static void sse_dispatch(struct stream *s)
{
	bool has = s->cur_has_data;
	s->cur_any = false;
	s->cur_has_data = false;
	char type[32];
	snprintf(type, sizeof(type), "%s", s->cur_type[0] ? s->cur_type : "message");
	s->cur_type[0] = '\0';
	if (!has) {
		s->cur_len = 0;
		return;
	}
	/* The data buffer ends with the "\n" of its last line. */
	if (s->cur_len > 0 && s->cur_data[s->cur_len - 1] == '\n')
		s->cur_len--;
	if (s->n_ev == s->cap_ev) {
		s->cap_ev = s->cap_ev ? s->cap_ev * 2 : 64;
		s->ev = realloc(s->ev, (size_t)s->cap_ev * sizeof(*s->ev));
		CHECK(s->ev != NULL);
	}
	struct sse_event *e = &s->ev[s->n_ev++];
	memset(e, 0, sizeof(*e));
	snprintf(e->type, sizeof(e->type), "%s", type);
	e->data = malloc(s->cur_len + 1);
	CHECK(e->data != NULL);
	memcpy(e->data, s->cur_data, s->cur_len);
	e->data[s->cur_len] = '\0';
	e->json = json_loadb(e->data, s->cur_len, 0, NULL);
	e->t = client_now() - s->t0;
	s->cur_len = 0;
	if (s->on_event)
		s->on_event(s, e);
}

static void sse_line(struct stream *s, const char *line, size_t n)
{
	if (n == 0) {
		sse_dispatch(s);
		return;
	}
	s->cur_any = true;
	if (line[0] == ':') {
		s->n_comments++;
		if (n == 6 && memcmp(line, ": ping", 6) == 0 && s->n_ping < 64)
			s->ping_t[s->n_ping++] = client_now() - s->t0;
		return;
	}
	const char *colon = memchr(line, ':', n);
	size_t flen = colon ? (size_t)(colon - line) : n;
	const char *v = colon ? colon + 1 : line + n;
	size_t vlen = (size_t)(line + n - v);
	if (vlen > 0 && *v == ' ') {
		v++;
		vlen--;
	}
	if (flen == 5 && memcmp(line, "event", 5) == 0) {
		snprintf(s->cur_type, sizeof(s->cur_type), "%.*s", (int)vlen, v);
	} else if (flen == 4 && memcmp(line, "data", 4) == 0) {
		grow(&s->cur_data, &s->cur_cap, s->cur_len + vlen + 2);
		memcpy(s->cur_data + s->cur_len, v, vlen);
		s->cur_len += vlen;
		s->cur_data[s->cur_len++] = '\n';
		s->cur_has_data = true;
	} else if (!((flen == 2 && memcmp(line, "id", 2) == 0) ||
		     (flen == 5 && memcmp(line, "retry", 5) == 0))) {
		s->n_bad_lines++;
	}
}

/* Feeds body bytes to the SSE parser: lines end in "\n", "\r\n" or "\r". */
static void sse_feed(struct stream *s, const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		char c = p[i];
		if (s->after_cr) {
			s->after_cr = false;
			if (c == '\n')
				continue;
		}
		if (c == '\n' || c == '\r') {
			s->after_cr = c == '\r';
			sse_line(s, s->line, s->line_len);
			s->line_len = 0;
			continue;
		}
		grow(&s->line, &s->line_cap, s->line_len + 2);
		s->line[s->line_len++] = c;
	}
}

static size_t stream_on_header(char *data, size_t size, size_t nmemb, void *arg)
{
	struct stream *s = arg;
	size_t n = size * nmemb;
	if (n > 13 && strncasecmp(data, "Content-Type:", 13) == 0) {
		const char *v = data + 13;
		size_t vl = n - 13;
		while (vl > 0 && (*v == ' ' || *v == '\t'))
			v++, vl--;
		while (vl > 0 && (v[vl - 1] == '\r' || v[vl - 1] == '\n' || v[vl - 1] == ' '))
			vl--;
		snprintf(s->content_type, sizeof(s->content_type), "%.*s", (int)vl, v);
		s->is_sse = strncasecmp(s->content_type, "text/event-stream", 17) == 0;
	}
	return n;
}

static size_t stream_on_body(char *data, size_t size, size_t nmemb, void *arg)
{
	struct stream *s = arg;
	size_t n = size * nmemb;
	if (s->t_first_byte == 0)
		s->t_first_byte = client_now() - s->t0;
	if (s->raw_len + n + 1 > RAW_MAX)
		return 0;
	size_t cap = s->raw_len + 1;
	grow(&s->raw, &cap, s->raw_len + n + 1);
	memcpy(s->raw + s->raw_len, data, n);
	s->raw_len += n;
	s->raw[s->raw_len] = '\0';
	if (s->is_sse) {
		sse_feed(s, data, n);
		if (s->abort_after > 0 && s->n_ev >= s->abort_after) {
			s->aborted = true;
			return 0;
		}
	}
	return n;
}

/* POST /execute with body (taken); "stream": true is added unless the body
 * says otherwise. s holds the options; results land in it. */
static void stream_run(const char *key, json_t *body, struct stream *s)
{
	if (bk.skip_reason[0] != '\0')
		SKIP("%s", bk.skip_reason);
	if (json_object_get(body, "stream") == NULL)
		json_object_set_new(body, "stream", json_true());
	char *text = json_dumps(body, JSON_COMPACT);
	json_decref(body);
	CHECK(text != NULL);

	CURL *c = curl_easy_init();
	CHECK(c != NULL);
	char url[256];
	snprintf(url, sizeof(url), "%s/execute", bk.d.base_url);
	struct curl_slist *h = NULL;
	char auth[CLIENT_KEY_MAX + 32];
	if (key != NULL) {
		snprintf(auth, sizeof(auth), "Authorization: Bearer %s", key);
		h = curl_slist_append(h, auth);
	}
	h = curl_slist_append(h, "Content-Type: application/json");
	h = curl_slist_append(h, "Accept: text/event-stream");
	h = curl_slist_append(h, "Expect:");
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 10L);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, s->timeout_ms > 0 ? s->timeout_ms : 120000L);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(c, CURLOPT_POSTFIELDS, text);
	curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(text));
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, stream_on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, s);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, stream_on_header);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, s);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, s->error);
	/* No buffering on our side either. */
	curl_easy_setopt(c, CURLOPT_BUFFERSIZE, 1024L);

	s->t0 = client_now();
	s->rc = curl_easy_perform(c);
	s->t_end = client_now() - s->t0;
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &s->status);
	curl_easy_cleanup(c);
	curl_slist_free_all(h);
	free(text);
	/* What is left of a last line, then of a last event. */
	if (s->is_sse && !s->aborted) {
		if (s->line_len > 0 || s->cur_any)
			s->unterminated = true;
	}
	if (!s->is_sse && s->raw_len > 0)
		s->json = json_loadb(s->raw, s->raw_len, 0, NULL);
	if (s->raw == NULL)
		s->raw = strdup("");
}

static void stream_free(struct stream *s)
{
	for (int i = 0; i < s->n_ev; i++) {
		free(s->ev[i].data);
		json_decref(s->ev[i].json);
	}
	free(s->ev);
	free(s->raw);
	free(s->line);
	free(s->cur_data);
	json_decref(s->json);
	memset(s, 0, sizeof(*s));
}

/* The body of the stream for a failure message. */
#define RAW(s) (int)((s)->raw_len > 3000 ? 3000 : (s)->raw_len), (s)->raw

/* The concatenated "data" of every event of this type (caller frees). */
static char *stream_text(const struct stream *s, const char *type)
{
	size_t len = 0, cap = 1;
	char *out = NULL;
	grow(&out, &cap, 64);
	out[0] = '\0';
	for (int i = 0; i < s->n_ev; i++) {
		if (strcmp(s->ev[i].type, type) != 0)
			continue;
		json_t *d = json_object_get(s->ev[i].json, "data");
		CHECK_MSG(json_is_string(d), "a %s event without a string 'data': %s", type,
			  s->ev[i].data);
		size_t n = json_string_length(d);
		grow(&out, &cap, len + n + 1);
		memcpy(out + len, json_string_value(d), n);
		len += n;
		out[len] = '\0';
	}
	return out;
}

static int stream_count(const struct stream *s, const char *type)
{
	int n = 0;
	for (int i = 0; i < s->n_ev; i++)
		n += strcmp(s->ev[i].type, type) == 0;
	return n;
}

static const struct sse_event *stream_first(const struct stream *s, const char *type)
{
	for (int i = 0; i < s->n_ev; i++)
		if (strcmp(s->ev[i].type, type) == 0)
			return &s->ev[i];
	return NULL;
}

/* A complete, well-formed stream: 200 text/event-stream, every event a
 * known type whose data is a JSON object, stdout/stderr events carrying a
 * string "data", and exactly one final event (want: "exit" or "error"),
 * the last one, after which the stream ended. Returns the final event. */
static const struct sse_event *check_stream(const struct stream *s, const char *want)
{
	CHECK_MSG(s->rc == CURLE_OK, "transfer failed: %s (%s); body so far: %.*s",
		  curl_easy_strerror(s->rc), s->error, RAW(s));
	CHECK_MSG(s->status == 200, "HTTP %ld: %.*s", s->status, RAW(s));
	CHECK_MSG(s->is_sse, "Content-Type '%s', not text/event-stream: %.*s", s->content_type,
		  RAW(s));
	CHECK_MSG(s->n_bad_lines == 0, "%d lines that are neither a field nor a comment: %.*s",
		  s->n_bad_lines, RAW(s));
	CHECK_MSG(!s->unterminated, "the stream ended inside an event: %.*s", RAW(s));
	CHECK_MSG(s->n_ev > 0, "no events: %.*s", RAW(s));
	int finals = 0;
	for (int i = 0; i < s->n_ev; i++) {
		const struct sse_event *e = &s->ev[i];
		CHECK_MSG(json_is_object(e->json), "event %d (%s): data is not a JSON object: %s",
			  i, e->type, e->data);
		if (strcmp(e->type, "stdout") == 0 || strcmp(e->type, "stderr") == 0) {
			CHECK_MSG(json_is_string(json_object_get(e->json, "data")),
				  "%s event without a string data: %s", e->type, e->data);
		} else if (strcmp(e->type, "exit") == 0 || strcmp(e->type, "error") == 0) {
			finals++;
			CHECK_MSG(i == s->n_ev - 1, "a %s event is not the last: %.*s", e->type,
				  RAW(s));
		} else {
			harness_fail(__FILE__, __LINE__, "unknown event type '%s': %.*s", e->type,
				     RAW(s));
		}
	}
	CHECK_MSG(finals == 1, "%d final events: %.*s", finals, RAW(s));
	const struct sse_event *last = &s->ev[s->n_ev - 1];
	CHECK_MSG(strcmp(last->type, want) == 0, "the stream ended with '%s', want '%s': %.*s",
		  last->type, want, RAW(s));
	if (strcmp(want, "error") == 0) {
		const char *code = client_json_str(last->json, "code");
		const char *msg = client_json_str(last->json, "message");
		CHECK_MSG(code != NULL && *code && msg != NULL && *msg,
			  "an error event without code and message: %s", last->data);
	}
	return last;
}

/* Members of the exit event's result. */
static const char *ev_str(const struct sse_event *e, const char *name)
{
	const char *v = client_json_str(e->json, name);
	CHECK_MSG(v != NULL, "'%s' is not a string in %s", name, e->data);
	return v;
}

static long long ev_int(const struct sse_event *e, const char *name)
{
	json_t *v = json_object_get(e->json, name);
	CHECK_MSG(json_is_integer(v), "'%s' is not an integer in %s", name, e->data);
	return json_integer_value(v);
}

static double ev_num(const struct sse_event *e, const char *name)
{
	json_t *v = json_object_get(e->json, name);
	CHECK_MSG(json_is_number(v), "'%s' is not a number in %s", name, e->data);
	return json_number_value(v);
}

static bool ev_bool(const struct sse_event *e, const char *name)
{
	json_t *v = json_object_get(e->json, name);
	CHECK_MSG(json_is_boolean(v), "'%s' is not a boolean in %s", name, e->data);
	return json_is_true(v);
}

/* The full result object of the non-streaming answer. */
static void check_result_shape(const struct sse_event *e)
{
	ev_str(e, "stdout");
	ev_str(e, "stderr");
	ev_int(e, "exitCode");
	CHECK_MSG(ev_num(e, "executionTime") >= 0, "executionTime < 0: %s", e->data);
	CHECK_MSG(ev_num(e, "memoryUsed") >= 0, "memoryUsed < 0: %s", e->data);
	CHECK_MSG(ev_num(e, "cpuTime") >= 0, "cpuTime < 0: %s", e->data);
	ev_bool(e, "timedOut");
	CHECK_MSG(json_is_array(json_object_get(e->json, "filesWritten")),
		  "filesWritten is not an array: %s", e->data);
	ev_bool(e, "stdoutTruncated");
	ev_bool(e, "stderrTruncated");
}

/* ---- other helpers ---- */

static char *new_session(void)
{
	return client_must_create(bk.paid_key, NULL);
}

static void end_session(char *id)
{
	client_must_delete(bk.paid_key, id);
	free(id);
}

static json_t *cmd_body(const char *id, const char *command)
{
	return json_pack("{s:s,s:s}", "sessionId", id, "command", command);
}

/* Runs command in a stream that must end with an exit event. */
static const struct sse_event *stream_cmd(const char *id, const char *command, json_t *extra,
					  struct stream *s)
{
	json_t *body = extra ? extra : json_object();
	json_object_set_new(body, "sessionId", json_string(id));
	json_object_set_new(body, "command", json_string(command));
	stream_run(bk.paid_key, body, s);
	return check_stream(s, "exit");
}

/* GET /execution/processes: the pids whose command contains needle (all
 * when NULL; "=sleep 2" for a command that is exactly "sleep 2"), after
 * checking every entry's shape; returns how many. */
static int procs_matching(const char *key, const char *id, const char *needle, long *pids, int max)
{
	char path[128];
	snprintf(path, sizeof(path), "/execution/processes?sessionId=%s", id);
	struct client_resp r;
	client_call(&bk.d, "GET", path, key, NULL, &r);
	CHECK_STATUS(&r, 200);
	json_t *arr = json_object_get(r.json, "processes");
	CHECK_MSG(json_is_array(arr), "no processes array: %s", r.body);
	int n = 0;
	size_t i;
	json_t *p;
	json_array_foreach (arr, i, p) {
		json_t *pid = json_object_get(p, "pid");
		const char *cmd = client_json_str(p, "command");
		const char *started = client_json_str(p, "startedAt");
		CHECK_MSG(json_is_integer(pid) && cmd != NULL && started != NULL,
			  "a process without pid, command, startedAt: %s", r.body);
		CHECK_MSG(json_integer_value(pid) > 1, "the list shows pid %lld: %s",
			  (long long)json_integer_value(pid), r.body);
		double t;
		CHECK_MSG(client_parse_time(started, &t), "startedAt '%s' is not ISO 8601 with Z",
			  started);
		CHECK_MSG(t > (double)time(NULL) - 600 && t < (double)time(NULL) + 60,
			  "startedAt %s is not about now", started);
		bool hit = needle == NULL || (needle[0] == '=' ? strcmp(cmd, needle + 1) == 0
							       : strstr(cmd, needle) != NULL);
		if (hit) {
			if (n < max)
				pids[n] = (long)json_integer_value(pid);
			n++;
		}
	}
	client_resp_free(&r);
	return n;
}

/* Waits up to secs for no process matching needle; returns the seconds it
 * took, or -1 when some are still there. */
static double wait_no_procs(const char *id, const char *needle, double secs)
{
	double t0 = client_now();
	long pids[16];
	for (;;) {
		if (procs_matching(bk.paid_key, id, needle, pids, 16) == 0)
			return client_now() - t0;
		if (client_now() - t0 > secs)
			return -1;
		usleep(50 * 1000);
	}
}

static void kill_call(const char *key, const char *id, long pid, struct client_resp *r)
{
	json_t *body = json_pack("{s:s}", "sessionId", id);
	if (pid > 0)
		json_object_set_new(body, "pid", json_integer(pid));
	CHECK(client_call_json(&bk.d, "POST", "/execution/kill", key, body, r) == 0);
	json_decref(body);
}

static long long active_processes(const char *id)
{
	char path[128];
	snprintf(path, sizeof(path), "/sessions/%s", id);
	struct client_resp r;
	client_call(&bk.d, "GET", path, bk.paid_key, NULL, &r);
	CHECK_STATUS(&r, 200);
	json_t *v = json_object_get(r.json, "activeProcesses");
	CHECK_MSG(json_is_integer(v), "activeProcesses is not an integer: %s", r.body);
	long long n = json_integer_value(v);
	client_resp_free(&r);
	return n;
}

static void check_alive(const char *id)
{
	char *out = client_must_run(bk.paid_key, id, "echo alive");
	CHECK_STR_EQ(out, "alive\n");
	free(out);
}

/* ---- streams ---- */

TEST(stream_basic)
{
	char *id = new_session();
	struct stream s = {0};
	const struct sse_event *ex = stream_cmd(
	    id, "echo out; echo err >&2; printf 'q\"b\\\\t\\t<>&\\001'; exit 3", NULL, &s);
	char *out = stream_text(&s, "stdout");
	char *err = stream_text(&s, "stderr");
	CHECK_STR_EQ(out, "out\nq\"b\\t\t<>&\001");
	CHECK_STR_EQ(err, "err\n");
	CHECK_MSG(stream_count(&s, "stdout") >= 1 && stream_count(&s, "stderr") >= 1,
		  "events: %.*s", RAW(&s));
	check_result_shape(ex);
	CHECK_STR_EQ(ev_str(ex, "stdout"), out);
	CHECK_STR_EQ(ev_str(ex, "stderr"), err);
	CHECK_INT_EQ(ev_int(ex, "exitCode"), 3);
	CHECK(!ev_bool(ex, "timedOut"));
	CHECK(!ev_bool(ex, "stdoutTruncated"));
	CHECK(!ev_bool(ex, "stderrTruncated"));
	CHECK_INT_EQ(json_array_size(json_object_get(ex->json, "filesWritten")), 0);
	CHECK_MSG(ev_num(ex, "executionTime") <= s.t_end * 1000 + 50,
		  "executionTime %g ms, the stream took %.3f s", ev_num(ex, "executionTime"),
		  s.t_end);
	free(out);
	free(err);
	stream_free(&s);

	/* No output at all: just the exit event. */
	ex = stream_cmd(id, "true", NULL, &s);
	CHECK_INT_EQ(s.n_ev, 1);
	CHECK_STR_EQ(ev_str(ex, "stdout"), "");
	CHECK_INT_EQ(ev_int(ex, "exitCode"), 0);
	stream_free(&s);

	/* "stream": false is the plain JSON answer. */
	json_t *body = cmd_body(id, "echo plain");
	json_object_set_new(body, "stream", json_false());
	stream_run(bk.paid_key, body, &s);
	CHECK_MSG(s.status == 200 && !s.is_sse && json_is_object(s.json),
		  "stream:false: HTTP %ld '%s' %.*s", s.status, s.content_type, RAW(&s));
	CHECK_STR_EQ(client_json_str(s.json, "stdout"), "plain\n");
	stream_free(&s);
	end_session(id);
}

TEST(stream_output_arrives_as_it_is_written)
{
	char *id = new_session();
	struct stream s = {0};
	const struct sse_event *ex = stream_cmd(id, "echo first; sleep 3; echo second", NULL, &s);
	const struct sse_event *first = stream_first(&s, "stdout");
	CHECK(first != NULL);
	const char *d = client_json_str(first->json, "data");
	CHECK_MSG(d != NULL && strncmp(d, "first", 5) == 0, "first stdout event: %s", first->data);
	fprintf(stderr, "    first byte %.3f s, first event %.3f s, exit %.3f s\n", s.t_first_byte,
		first->t, ex->t);
	CHECK_MSG(first->t < 1.5, "'first' arrived after %.3f s (the program sleeps 3 s after it)",
		  first->t);
	CHECK_MSG(ex->t >= 2.9, "the exit event came after %.3f s", ex->t);
	/* "second" came in an event of its own, at the end. */
	bool late = false;
	for (int i = 0; i < s.n_ev; i++) {
		const char *x = client_json_str(s.ev[i].json, "data");
		if (strcmp(s.ev[i].type, "stdout") == 0 && x && strstr(x, "second"))
			late = s.ev[i].t >= 2.9 && strstr(x, "first") == NULL;
	}
	CHECK_MSG(late, "'second' did not arrive on its own after 3 s: %.*s", RAW(&s));
	char *out = stream_text(&s, "stdout");
	CHECK_STR_EQ(out, "first\nsecond\n");
	CHECK_STR_EQ(ev_str(ex, "stdout"), "first\nsecond\n");
	free(out);
	stream_free(&s);

	/* The same for stderr. */
	ex = stream_cmd(id, "echo early >&2; sleep 2; echo late >&2", NULL, &s);
	first = stream_first(&s, "stderr");
	CHECK(first != NULL);
	CHECK_MSG(first->t < 1.2, "stderr 'early' arrived after %.3f s", first->t);
	CHECK_STR_EQ(ev_str(ex, "stderr"), "early\nlate\n");
	stream_free(&s);
	end_session(id);
}

TEST(stream_utf8_split_across_writes)
{
	char *id = new_session();
	struct stream s = {0};
	/* "€" = e2 82 ac, written as two pieces 0.2 s apart, on both streams;
	 * "😀" = f0 9f 98 80 as 1 + 3. */
	const struct sse_event *ex =
	    stream_cmd(id,
		       "printf '\\342\\202'; sleep 0.2; printf '\\254\\n'; "
		       "printf '\\342' >&2; sleep 0.2; printf '\\202\\254' >&2; "
		       "printf '\\360'; sleep 0.2; printf '\\237\\230\\200!'",
		       NULL, &s);
	char *out = stream_text(&s, "stdout");
	char *err = stream_text(&s, "stderr");
	CHECK_MSG(strstr(s.raw, "\\ufffd") == NULL && strstr(s.raw, "\xef\xbf\xbd") == NULL,
		  "replacement characters in the stream: %.*s", RAW(&s));
	CHECK_STR_EQ(out, "\xe2\x82\xac\n\xf0\x9f\x98\x80!");
	CHECK_STR_EQ(err, "\xe2\x82\xac");
	CHECK_STR_EQ(ev_str(ex, "stdout"), "\xe2\x82\xac\n\xf0\x9f\x98\x80!");
	CHECK_STR_EQ(ev_str(ex, "stderr"), "\xe2\x82\xac");
	/* The pieces did travel separately: the newline after the euro sign
	 * came in an event of its own (or with the character completed). */
	fprintf(stderr, "    %d stdout events, %d stderr events\n", stream_count(&s, "stdout"),
		stream_count(&s, "stderr"));
	free(out);
	free(err);
	stream_free(&s);

	/* Bytes that never become UTF-8 still give a well-formed stream. */
	ex = stream_cmd(id, "printf 'a\\377b\\n'; printf '\\342'", NULL, &s);
	out = stream_text(&s, "stdout");
	CHECK_MSG(out[0] == 'a' && strstr(out, "b\n") != NULL, "stdout: %s", out);
	free(out);
	stream_free(&s);
	end_session(id);
}

/* The execution of a stream whose client went away is killed. */
static void check_gone_kills(const char *id, const char *command, int abort_after, long timeout_ms)
{
	struct stream s = {.abort_after = abort_after, .timeout_ms = timeout_ms};
	stream_run(bk.paid_key,
		   json_pack("{s:s,s:s,s:i}", "sessionId", id, "command", command, "timeout", 60),
		   &s);
	double gone_at = client_now();
	if (abort_after > 0)
		CHECK_MSG(s.aborted && s.n_ev == abort_after, "not aborted after %d events: %.*s",
			  abort_after, RAW(&s));
	else
		CHECK_MSG(s.rc == CURLE_OPERATION_TIMEDOUT, "want a client time-out, got %s",
			  curl_easy_strerror(s.rc));
	CHECK_MSG(s.status == 200 && s.is_sse, "HTTP %ld '%s'", s.status, s.content_type);
	stream_free(&s);
	double took = wait_no_procs(id, "sleep 30", 5);
	fprintf(stderr, "    '%s': gone %.3f s after the client left\n", command,
		took < 0 ? -1 : client_now() - gone_at);
	CHECK_MSG(took >= 0, "'sleep 30' still runs 5 s after the client went away");
	CHECK_MSG(took < 1.5, "'sleep 30' ran on for %.3f s after the client went away", took);
	CHECK_INT_EQ(active_processes(id), 0);
	check_alive(id);
}

TEST(stream_client_gone_kills_execution)
{
	char *id = new_session();
	/* Away after the first event. */
	check_gone_kills(id, "echo started; sleep 30", 1, 0);
	/* Away while nothing was written at all. */
	check_gone_kills(id, "sleep 30", 0, 1500);
	/* Away in the middle of a child's output. */
	check_gone_kills(id, "sh -c 'echo a; sleep 30; echo b'; echo c", 1, 0);
	end_session(id);
}

TEST(stream_timeout)
{
	char *id = new_session();
	struct stream s = {0};
	const struct sse_event *ex =
	    stream_cmd(id, "echo started; sleep 10", json_pack("{s:i}", "timeout", 1), &s);
	CHECK_MSG(s.t_end < 3, "a 1 s timeout ended the stream after %.2f s", s.t_end);
	check_result_shape(ex);
	CHECK(ev_bool(ex, "timedOut"));
	CHECK_INT_EQ(ev_int(ex, "exitCode"), 124);
	CHECK_STR_EQ(ev_str(ex, "stdout"), "started\n");
	char *out = stream_text(&s, "stdout");
	CHECK_STR_EQ(out, "started\n");
	free(out);
	double ms = ev_num(ex, "executionTime");
	CHECK_MSG(ms >= 900 && ms < 3000, "executionTime %g ms for a 1 s timeout", ms);
	stream_free(&s);
	CHECK_MSG(wait_no_procs(id, "sleep 10", 2) >= 0, "sleep 10 outlived the timeout");
	check_alive(id);
	end_session(id);
}

TEST(stream_unknown_session_is_plain_404)
{
	char *id = new_session();
	char other[CLIENT_KEY_MAX];
	client_must_key("paid", other, sizeof(other));
	struct stream s = {0};
	const char *ids[] = {NO_SESSION, "../../etc", id};
	const char *keys[] = {bk.paid_key, bk.paid_key, other};
	for (int i = 0; i < 3; i++) {
		stream_run(keys[i], cmd_body(ids[i], "echo never"), &s);
		CHECK_MSG(s.status == 404 && !s.is_sse && s.n_ev == 0,
			  "unknown session: HTTP %ld '%s' %.*s", s.status, s.content_type, RAW(&s));
		CHECK_MSG(strncmp(s.content_type, "application/json", 16) == 0, "Content-Type '%s'",
			  s.content_type);
		json_t *e = json_object_get(s.json, "error");
		CHECK_MSG(json_is_object(e) &&
			      strcmp(client_json_str(e, "code") ? client_json_str(e, "code") : "",
				     "session_not_found") == 0,
			  "want session_not_found: %.*s", RAW(&s));
		stream_free(&s);
	}
	/* No key: 401 JSON. */
	stream_run(NULL, cmd_body(id, "echo never"), &s);
	CHECK_MSG(s.status == 401 && !s.is_sse, "no key: HTTP %ld %.*s", s.status, RAW(&s));
	stream_free(&s);
	check_alive(id);
	end_session(id);
}

/* Input the request alone shows to be wrong is refused before any stream
 * starts, as without "stream" (API.md: a timeout above the plan's maximum
 * is 400). */
TEST(stream_bad_input_is_plain_400)
{
	char *id = new_session();
	struct stream s = {0};
	/* Bad input found before the stream starts: 400 JSON naming the field. */
	struct {
		json_t *body;
		const char *field;
	} bad[] = {
	    {json_pack("{s:s,s:b}", "sessionId", id, "stream", 1), NULL},
	    {json_pack("{s:s,s:s,s:s,s:b}", "sessionId", id, "command", "true", "code", "1",
		       "stream", 1),
	     NULL},
	    {json_pack("{s:s,s:s,s:s,s:b}", "sessionId", id, "command", "true", "timeout", "1",
		       "stream", 1),
	     "timeout"},
	    {json_pack("{s:s,s:s,s:i}", "sessionId", id, "command", "true", "stream", 1), "stream"},
	    {json_pack("{s:s,s:s,s:i,s:b}", "sessionId", id, "command", "true", "timeout", 301,
		       "stream", 1),
	     "timeout"},
	    {json_pack("{s:s,s:s,s:[{s:s,s:s}],s:b}", "sessionId", id, "command", "true", "files",
		       "path", "../x.txt", "content", "x", "stream", 1),
	     "path"},
	    {json_pack("{s:s,s:s,s:{s:s},s:b}", "sessionId", id, "command", "true", "env", "A=B",
		       "x", "stream", 1),
	     "env"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char *text = json_dumps(bad[i].body, JSON_COMPACT);
		stream_run(bk.paid_key, bad[i].body, &s);
		if (s.status != 400)
			fprintf(stderr,
				"    (the non-streaming answer to the same body is a 400)\n");
		CHECK_MSG(s.status == 400 && !s.is_sse, "%s: HTTP %ld '%s' %.*s", text, s.status,
			  s.content_type, RAW(&s));
		json_t *e = json_object_get(s.json, "error");
		const char *code = client_json_str(e, "code");
		CHECK_MSG(code && strcmp(code, "invalid_request") == 0, "%s: %.*s", text, RAW(&s));
		if (bad[i].field) {
			char *all = json_dumps(e, JSON_COMPACT);
			CHECK_MSG(strstr(all, bad[i].field) != NULL,
				  "%s: the error does not name %s: %s", text, bad[i].field, all);
			free(all);
		}
		free(text);
		stream_free(&s);
	}
	check_alive(id);
	end_session(id);
}

/* The implementation checks workingDir's existence inside the execution,
 * so on a stream the error comes as an error event (invalid_request naming
 * workingDir) after a 200; the non-streaming answer is a plain 400. */
TEST(stream_working_dir_missing)
{
	char *id = new_session();
	struct stream s = {0};
	stream_run(bk.paid_key,
		   json_pack("{s:s,s:s,s:s}", "sessionId", id, "command", "echo ran > ran.txt",
			     "workingDir", "nope"),
		   &s);
	if (s.status == 400) {
		/* Also acceptable: refused before the stream. */
		json_t *e = json_object_get(s.json, "error");
		CHECK_MSG(json_is_object(e), "400 without an error envelope: %.*s", RAW(&s));
		fprintf(stderr, "    a missing workingDir is a 400 before the stream\n");
	} else {
		const struct sse_event *e = check_stream(&s, "error");
		CHECK_INT_EQ(s.n_ev, 1);
		CHECK_STR_EQ(client_json_str(e->json, "code"), "invalid_request");
		char *all = json_dumps(e->json, JSON_COMPACT);
		CHECK_MSG(strstr(all, "workingDir") != NULL,
			  "the error does not name workingDir: %s", all);
		free(all);
	}
	stream_free(&s);
	/* Escaping ones likewise, and nothing ran. */
	stream_run(bk.paid_key,
		   json_pack("{s:s,s:s,s:s}", "sessionId", id, "command", "echo ran > ran.txt",
			     "workingDir", "../etc"),
		   &s);
	if (s.status != 400) {
		const struct sse_event *e = check_stream(&s, "error");
		CHECK_STR_EQ(client_json_str(e->json, "code"), "invalid_request");
	}
	stream_free(&s);
	char *out = client_must_run(bk.paid_key, id, "ls -A");
	CHECK_STR_EQ(out, "");
	free(out);
	end_session(id);
}

/* API.md: bad input never half-creates anything. A workingDir that does
 * not exist is refused (400, or an error event on a stream), so the files[]
 * of that request must not be left behind either. */
TEST(working_dir_missing_leaves_no_files)
{
	char *id = new_session();
	json_t *body = json_pack("{s:s,s:s,s:[{s:s,s:s}],s:s}", "sessionId", id, "command",
				 "echo ran > ran.txt", "files", "path", "left.txt", "content", "x",
				 "workingDir", "nope");
	struct client_resp r;
	client_call_json(&bk.d, "POST", "/execute", bk.paid_key, body, &r);
	CHECK_ERROR_FIELD(&r, 400, "invalid_request", "workingDir");
	client_resp_free(&r);
	char *out = client_must_run(bk.paid_key, id, "ls -A");
	CHECK_MSG(strcmp(out, "") == 0, "a refused execute left files behind:\n%s", out);
	free(out);

	struct stream s = {0};
	json_object_set_new(body, "stream", json_true());
	stream_run(bk.paid_key, body, &s);
	if (s.status != 400)
		check_stream(&s, "error");
	stream_free(&s);
	out = client_must_run(bk.paid_key, id, "ls -A");
	CHECK_MSG(strcmp(out, "") == 0, "a refused streamed execute left files behind:\n%s", out);
	free(out);
	end_session(id);
}

TEST_TIMEOUT(stream_ping_while_quiet, 60)
{
	char *id = new_session();
	struct stream s = {0};
	const struct sse_event *ex =
	    stream_cmd(id, "echo a; sleep 16.5; echo done", json_pack("{s:i}", "timeout", 40), &s);
	fprintf(stderr, "    %d pings, the first at %.3f s\n", s.n_ping,
		s.n_ping ? s.ping_t[0] : -1);
	CHECK_MSG(s.n_ping >= 1, "no ': ping' comment in 16 s of quiet: %.*s", RAW(&s));
	/* Every 15 s of quiet: the first comes between 14 and 16.5 s. */
	CHECK_MSG(s.ping_t[0] > 14 && s.ping_t[0] < 16.5, "the first ping came at %.3f s",
		  s.ping_t[0]);
	CHECK_MSG(s.n_ping == 1, "%d pings in 16.5 s", s.n_ping);
	CHECK_INT_EQ(s.n_comments, s.n_ping);
	CHECK_STR_EQ(ev_str(ex, "stdout"), "a\ndone\n");
	CHECK_INT_EQ(ev_int(ex, "exitCode"), 0);
	stream_free(&s);
	end_session(id);
}

TEST(stream_code)
{
	char *id = new_session();
	struct stream s = {0};
	json_t *body = json_pack("{s:s,s:s}", "sessionId", id, "code",
				 "console.log('a'); await Bun.sleep(500); console.error('b'); "
				 "console.log('\\u20ac')");
	stream_run(bk.paid_key, body, &s);
	const struct sse_event *ex = check_stream(&s, "exit");
	char *out = stream_text(&s, "stdout");
	char *err = stream_text(&s, "stderr");
	CHECK_STR_EQ(out, "a\n\xe2\x82\xac\n");
	CHECK_STR_EQ(err, "b\n");
	const struct sse_event *o = stream_first(&s, "stdout"), *e = stream_first(&s, "stderr");
	CHECK_MSG(o->t + 0.3 < e->t, "stdout 'a' at %.3f s, stderr 'b' at %.3f s", o->t, e->t);
	CHECK_INT_EQ(ev_int(ex, "exitCode"), 0);
	CHECK_STR_EQ(ev_str(ex, "stdout"), out);
	free(out);
	free(err);
	stream_free(&s);
	end_session(id);
}

TEST(stream_large_output)
{
	char *id = new_session();
	struct stream s = {0};
	const struct sse_event *ex = stream_cmd(id, "seq 1 100000; seq 1 1000 >&2", NULL, &s);
	size_t cap = 1 << 20, len = 0;
	char *want = malloc(cap);
	for (int i = 1; i <= 100000; i++)
		len += (size_t)snprintf(want + len, cap - len, "%d\n", i);
	char *out = stream_text(&s, "stdout");
	CHECK_INT_EQ(strlen(out), len);
	CHECK_MSG(strcmp(out, want) == 0, "the streamed stdout differs from seq's");
	CHECK_MSG(strcmp(ev_str(ex, "stdout"), want) == 0, "the exit event's stdout differs");
	char *err = stream_text(&s, "stderr");
	CHECK_INT_EQ(strlen(err), 3893);
	free(err);
	fprintf(stderr, "    %d stdout events\n", stream_count(&s, "stdout"));
	free(out);
	free(want);
	stream_free(&s);
	end_session(id);
}

TEST(stream_files_env_working_dir)
{
	char *id = new_session();
	struct stream s = {0};
	json_t *extra = json_pack("{s:[{s:s,s:s}],s:{s:s},s:s}", "files", "path", "sub/in.txt",
				  "content", "hi", "env", "FOO", "bar", "workingDir", "sub");
	const struct sse_event *ex =
	    stream_cmd(id, "cat in.txt; echo \" $FOO\"; pwd; echo n > new.txt", extra, &s);
	char *out = stream_text(&s, "stdout");
	CHECK_STR_EQ(out, "hi bar\n/workspace/sub\n");
	free(out);
	json_t *fw = json_object_get(ex->json, "filesWritten");
	bool in = false, made = false;
	size_t i;
	json_t *v;
	json_array_foreach (fw, i, v) {
		const char *p = json_string_value(v);
		in |=
		    p && (strcmp(p, "sub/in.txt") == 0 || strcmp(p, "/workspace/sub/in.txt") == 0);
		made |= p &&
			(strcmp(p, "sub/new.txt") == 0 || strcmp(p, "/workspace/sub/new.txt") == 0);
	}
	CHECK_MSG(in && made, "filesWritten: %s", ex->data);
	stream_free(&s);
	end_session(id);
}

TEST_TIMEOUT(stream_memory_limit_error_event, 90)
{
	char *id = client_must_create(bk.paid_key, "{\"resourceLimits\":{\"memory\":128}}");
	struct stream s = {0};
	stream_run(
	    bk.paid_key,
	    json_pack("{s:s,s:s,s:i}", "sessionId", id, "command",
		      "echo before; python3 -c \"b=bytearray(512*1024*1024); print(len(b))\"",
		      "timeout", 60),
	    &s);
	const struct sse_event *e = check_stream(&s, "error");
	CHECK_STR_EQ(client_json_str(e->json, "code"), "memory_limit_exceeded");
	char *out = stream_text(&s, "stdout");
	CHECK_STR_EQ(out, "before\n");
	free(out);
	CHECK_INT_EQ(stream_count(&s, "exit"), 0);
	stream_free(&s);
	check_alive(id);
	end_session(id);
}

/* ---- a stream and the process endpoints together ---- */

struct kill_ctx {
	const char *id;
	int listed;
	long pid;
	double killed_at;
	int killed_status;
	char killed_body[512];
};

static void kill_on_first(struct stream *s, const struct sse_event *ev)
{
	struct kill_ctx *k = s->user;
	if (k->killed_at > 0 || strcmp(ev->type, "stdout") != 0)
		return;
	long pids[8];
	/* "go" arrives as the shell is about to start sleep: give it a moment. */
	for (int i = 0; i < 50; i++) {
		k->listed = procs_matching(bk.paid_key, k->id, "=sleep 30", pids, 8);
		if (k->listed > 0)
			break;
		usleep(20000);
	}
	k->pid = k->listed > 0 ? pids[0] : 0;
	struct client_resp r;
	kill_call(bk.paid_key, k->id, 0, &r);
	k->killed_status = (int)r.status;
	snprintf(k->killed_body, sizeof(k->killed_body), "%s", r.body);
	client_resp_free(&r);
	k->killed_at = ev->t;
}

TEST(stream_ended_by_execution_kill)
{
	char *id = new_session();
	struct kill_ctx k = {.id = id};
	struct stream s = {.on_event = kill_on_first, .user = &k};
	stream_run(bk.paid_key,
		   json_pack("{s:s,s:s,s:i}", "sessionId", id, "command", "echo go; sleep 30",
			     "timeout", 60),
		   &s);
	const struct sse_event *ex = check_stream(&s, "exit");
	CHECK_MSG(k.listed == 1, "'sleep 30' listed %d times while it ran", k.listed);
	CHECK_MSG(k.killed_status == 200, "kill: HTTP %d %s", k.killed_status, k.killed_body);
	CHECK_MSG(ex->t - k.killed_at < 2, "the exit event came %.3f s after the kill",
		  ex->t - k.killed_at);
	CHECK_MSG(ev_int(ex, "exitCode") != 0, "a killed execution exited 0: %s", ex->data);
	CHECK(!ev_bool(ex, "timedOut"));
	CHECK_STR_EQ(ev_str(ex, "stdout"), "go\n");
	stream_free(&s);
	CHECK_MSG(wait_no_procs(id, NULL, 2) >= 0, "processes left after killing all");
	check_alive(id);
	end_session(id);
}

/* ---- GET /execution/processes, POST /execution/kill ---- */

TEST(processes_list_and_kill)
{
	char *id = new_session();
	long pids[16];
	/* A new session: nothing of the user's, PID 1 left out. */
	CHECK_INT_EQ(procs_matching(bk.paid_key, id, NULL, pids, 16), 0);
	CHECK_INT_EQ(active_processes(id), 0);

	char *out = client_must_run(bk.paid_key, id,
				    "for i in 1 2 3; do setsid sleep 30$i >/dev/null 2>&1 "
				    "</dev/null & done; echo ok");
	free(out);
	/* "ok" can come before the background shells have exec'd setsid,
	 * and setsid sleep. */
	for (int i = 0; i < 100 && (procs_matching(bk.paid_key, id, "sleep 30", pids, 16) < 3 ||
				    procs_matching(bk.paid_key, id, "setsid", pids, 16) > 0);
	     i++)
		usleep(20000);
	CHECK_INT_EQ(procs_matching(bk.paid_key, id, NULL, pids, 16), 3);
	CHECK_INT_EQ(active_processes(id), 3);
	long p301;
	CHECK_INT_EQ(procs_matching(bk.paid_key, id, "sleep 301", &p301, 1), 1);
	/* The pid is the one inside the session. */
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "tr '\\0' ' ' < /proc/%ld/cmdline", p301);
	out = client_must_run(bk.paid_key, id, cmd);
	CHECK_STR_EQ(out, "sleep 301 ");
	free(out);

	/* Kill one by pid. */
	struct client_resp r;
	kill_call(bk.paid_key, id, p301, &r);
	CHECK_STATUS(&r, 200);
	/* A count, as in buntime's docs ({"killed":1,"pids":[1234]}). */
	CHECK_MSG(json_is_integer(json_object_get(r.json, "killed")) &&
		      json_integer_value(json_object_get(r.json, "killed")) == 1,
		  "killed: %s", r.body);
	json_t *killed = json_object_get(r.json, "pids");
	CHECK_MSG(json_is_array(killed) && json_array_size(killed) == 1 &&
		      json_integer_value(json_array_get(killed, 0)) == p301,
		  "pids: %s", r.body);
	client_resp_free(&r);
	CHECK_MSG(wait_no_procs(id, "sleep 301", 3) >= 0, "sleep 301 survived its kill");
	CHECK_INT_EQ(procs_matching(bk.paid_key, id, NULL, pids, 16), 2);
	CHECK_INT_EQ(active_processes(id), 2);

	/* Gone already, PID 1, never there: 404 process_not_found. */
	long bad[] = {p301, 1, 99999};
	for (int i = 0; i < 3; i++) {
		kill_call(bk.paid_key, id, bad[i], &r);
		CHECK_ERROR(&r, 404, "process_not_found");
		client_resp_free(&r);
	}

	/* Without pid: every process. */
	kill_call(bk.paid_key, id, 0, &r);
	CHECK_STATUS(&r, 200);
	CHECK_MSG(json_is_integer(json_object_get(r.json, "killed")) &&
		      json_integer_value(json_object_get(r.json, "killed")) == 2,
		  "killed: %s", r.body);
	killed = json_object_get(r.json, "pids");
	CHECK_MSG(json_is_array(killed) && json_array_size(killed) == 2, "pids: %s", r.body);
	client_resp_free(&r);
	CHECK_MSG(wait_no_procs(id, NULL, 3) >= 0, "processes survived a kill of all");
	CHECK_INT_EQ(active_processes(id), 0);
	/* Nothing left: not an error, nothing killed. */
	kill_call(bk.paid_key, id, 0, &r);
	CHECK_STATUS(&r, 200);
	CHECK_MSG(json_is_integer(json_object_get(r.json, "killed")) &&
		      json_integer_value(json_object_get(r.json, "killed")) == 0,
		  "killed: %s", r.body);
	CHECK_MSG(json_is_array(json_object_get(r.json, "pids")) &&
		      json_array_size(json_object_get(r.json, "pids")) == 0,
		  "pids: %s", r.body);
	client_resp_free(&r);
	check_alive(id);
	end_session(id);
}

TEST(processes_bad_input)
{
	char *id = new_session();
	char other[CLIENT_KEY_MAX];
	client_must_key("paid", other, sizeof(other));
	struct client_resp r;
	char path[128];

	client_call(&bk.d, "GET", "/execution/processes", bk.paid_key, NULL, &r);
	CHECK_ERROR_FIELD(&r, 400, "invalid_request", "sessionId");
	client_resp_free(&r);
	client_call(&bk.d, "GET", "/execution/processes?sessionId=" NO_SESSION, bk.paid_key, NULL,
		    &r);
	CHECK_ERROR(&r, 404, "session_not_found");
	client_resp_free(&r);
	snprintf(path, sizeof(path), "/execution/processes?sessionId=%s", id);
	client_call(&bk.d, "GET", path, other, NULL, &r);
	CHECK_ERROR(&r, 404, "session_not_found");
	client_resp_free(&r);
	client_call(&bk.d, "GET", path, NULL, NULL, &r);
	CHECK_ERROR(&r, 401, "unauthorized");
	client_resp_free(&r);

	kill_call(bk.paid_key, NO_SESSION, 0, &r);
	CHECK_ERROR(&r, 404, "session_not_found");
	client_resp_free(&r);
	kill_call(other, id, 0, &r);
	CHECK_ERROR(&r, 404, "session_not_found");
	client_resp_free(&r);

	struct {
		const char *body;
		const char *field;
	} bad[] = {
	    {"{", NULL},
	    {"[]", NULL},
	    {"{}", "sessionId"},
	    {"{\"sessionId\":5}", "sessionId"},
	    {"{\"sessionId\":\"@\",\"pid\":\"5\"}", "pid"},
	    {"{\"sessionId\":\"@\",\"pid\":1.5}", "pid"},
	    {"{\"sessionId\":\"@\",\"pid\":-3}", "pid"},
	    {"{\"sessionId\":\"@\",\"pid\":true}", "pid"},
	    {"{\"sessionId\":\"@\",\"pid\":99999999999999}", "pid"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		/* "@" stands for the session's id. */
		char body[256];
		const char *at = strchr(bad[i].body, '@');
		if (at)
			snprintf(body, sizeof(body), "%.*s%s%s", (int)(at - bad[i].body),
				 bad[i].body, id, at + 1);
		else
			snprintf(body, sizeof(body), "%s", bad[i].body);
		client_call(&bk.d, "POST", "/execution/kill", bk.paid_key, body, &r);
		if (r.status != 400)
			fprintf(stderr, "    %s\n", body);
		if (bad[i].field)
			CHECK_ERROR_FIELD(&r, 400, "invalid_request", bad[i].field);
		else
			CHECK_ERROR(&r, 400, "invalid_request");
		client_resp_free(&r);
	}
	check_alive(id);
	end_session(id);
}

struct peek_ctx {
	const char *id;
	int sleeps;
	long long active;
	bool done;
};

static void peek_on_first(struct stream *s, const struct sse_event *ev)
{
	struct peek_ctx *p = s->user;
	if (p->done || strcmp(ev->type, "stdout") != 0)
		return;
	long pids[16];
	/* "go" arrives as the shell is about to start sleep: give it a moment. */
	for (int i = 0; i < 50; i++) {
		p->sleeps = procs_matching(bk.paid_key, p->id, "=sleep 2", pids, 16);
		if (p->sleeps > 0)
			break;
		usleep(20000);
	}
	p->active = active_processes(p->id);
	p->done = true;
}

TEST(processes_during_execution)
{
	char *id = new_session();
	/* A running execution's processes are listed and counted. */
	struct peek_ctx p = {.id = id};
	struct stream s = {.on_event = peek_on_first, .user = &p};
	const struct sse_event *ex = stream_cmd(id, "echo go; sleep 2", NULL, &s);
	CHECK_INT_EQ(ev_int(ex, "exitCode"), 0);
	CHECK_MSG(p.done, "no stdout event");
	CHECK_MSG(p.sleeps == 1, "'sleep 2' listed %d times while it ran", p.sleeps);
	CHECK_MSG(p.active >= 2, "activeProcesses %lld while sh and sleep ran", p.active);
	stream_free(&s);
	/* And are gone when it ended. */
	CHECK_MSG(wait_no_procs(id, NULL, 2) >= 0, "processes left after the execution");
	CHECK_INT_EQ(active_processes(id), 0);

	/* A background process stays listed; another session's list is its own. */
	char *out = client_must_run(bk.paid_key, id,
				    "setsid sleep 305 >/dev/null 2>&1 </dev/null & echo ok");
	free(out);
	long pids[16];
	/* "ok" can come before the background shell has exec'd sleep. */
	for (int i = 0; i < 100 && procs_matching(bk.paid_key, id, "sleep 305", pids, 16) < 1; i++)
		usleep(20000);
	CHECK_INT_EQ(procs_matching(bk.paid_key, id, "sleep 305", pids, 16), 1);
	CHECK_INT_EQ(active_processes(id), 1);
	char *other = new_session();
	CHECK_INT_EQ(procs_matching(bk.paid_key, other, NULL, pids, 16), 0);
	CHECK_INT_EQ(active_processes(other), 0);
	end_session(other);
	end_session(id);
}
