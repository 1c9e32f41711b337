/* http/server.h: how a request's body is taken, decided at its head. A
 * server of the test's own on loopback, with handler ops that answer at
 * the head, buffer up to a limit, or stream the body into a sink that
 * keeps only a count and a checksum; raw sockets send exactly the bytes
 * each case needs. Each test starts its own server (threads do not
 * survive the harness's fork). */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../harness.h"
#include "../raw.h"
#include "http/server.h"

#define MIB ((size_t)1 << 20)

/* ---- the server's side ---- */

struct sink_state {
	uint64_t n;
	uint32_t sum;
	bool refuse_after_mib; /* write() says -1 once past 1 MiB */
	bool slow_first;       /* the first write() blocks 3 s */
	int writes;
};

static pthread_mutex_t rec_lock = PTHREAD_MUTEX_INITIALIZER;
static int heads, dones;
static int last_end = -1; /* the last finish()'s end */

static uint32_t sum_of(uint32_t sum, const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		sum = sum * 31 + (unsigned char)p[i];
	return sum;
}

static int sink_write(void *state, const char *data, size_t len)
{
	struct sink_state *s = state;
	if (s->slow_first && s->writes == 0)
		sleep(3);
	s->writes++;
	s->n += len;
	s->sum = sum_of(s->sum, data, len);
	return s->refuse_after_mib && s->n > MIB ? -1 : 0;
}

static void sink_finish(void *state, enum http_body_end end, const struct http_request *req,
			struct http_response *res)
{
	struct sink_state *s = state;
	pthread_mutex_lock(&rec_lock);
	last_end = (int)end;
	pthread_mutex_unlock(&rec_lock);
	char text[128];
	int n = snprintf(text, sizeof(text), "n=%llu sum=%u end=%d\n", (unsigned long long)s->n,
			 s->sum, (int)end);
	int status = end == HTTP_BODY_COMPLETE	  ? 200
		     : end == HTTP_BODY_TOO_LARGE ? 413
		     : end == HTTP_BODY_REFUSED	  ? 422
						  : 499;
	http_response_set(res, status, "text/plain", text, (size_t)n);
}

static const struct http_body_sink sink = {.write = sink_write, .finish = sink_finish};

static void on_head(void *ctx, const struct http_request *req, struct http_body_plan *plan,
		    struct http_response *res)
{
	pthread_mutex_lock(&rec_lock);
	heads++;
	pthread_mutex_unlock(&rec_lock);
	if (strcmp(req->path, "/answer") == 0) {
		http_response_set(res, 401, "text/plain", "no key\n", 7);
		return;
	}
	if (strcmp(req->path, "/buffer") == 0) {
		plan->mode = HTTP_BODY_BUFFER;
		plan->limit = MIB;
		return;
	}
	struct sink_state *s = calloc(1, sizeof(*s));
	CHECK(s != NULL);
	s->refuse_after_mib = strcmp(req->path, "/stream-refuse") == 0;
	s->slow_first = strcmp(req->path, "/stream-slow") == 0;
	plan->mode = HTTP_BODY_STREAM;
	plan->limit = strcmp(req->path, "/stream-small") == 0 ? MIB : 1024 * MIB;
	plan->sink = &sink;
	plan->state = s;
}

static void on_body(void *ctx, const struct http_request *req, void *state,
		    struct http_response *res)
{
	if (req->body_too_large) {
		http_response_set(res, 413, "text/plain", "too large\n", 10);
		return;
	}
	char text[96];
	int n = snprintf(text, sizeof(text), "len=%zu sum=%u\n", req->body_len,
			 sum_of(0, req->body, req->body_len));
	http_response_set(res, 200, "text/plain", text, (size_t)n);
}

static void on_done(void *ctx, void *state)
{
	free(state);
	pthread_mutex_lock(&rec_lock);
	dones++;
	pthread_mutex_unlock(&rec_lock);
}

static struct http_server *srv;
static int port;

static void start(int head_timeout_s, size_t min_rate)
{
	struct http_limits lim = HTTP_LIMITS_DEFAULT;
	lim.head_timeout_s = head_timeout_s;
	lim.idle_timeout_s = 20;
	lim.body_min_rate = min_rate;
	struct http_handler_ops ops = {
	    .head = on_head, .handle = on_body, .done = on_done, .ctx = NULL};
	for (int tries = 0; tries < 20; tries++) {
		int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		struct sockaddr_in sa = {.sin_family = AF_INET};
		sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		socklen_t sl = sizeof(sa);
		CHECK(bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
		CHECK(getsockname(fd, (struct sockaddr *)&sa, &sl) == 0);
		close(fd);
		port = ntohs(sa.sin_port);
		struct bk_err err = BK_ERR_INIT;
		if (http_server_start("127.0.0.1", port, &lim, &ops, NULL, &srv, &err) == 0)
			return;
	}
	CHECK_MSG(0, "cannot start a server");
}

/* Stops the server; every request whose head was seen was done. */
static void stop(void)
{
	http_server_stop(srv);
	srv = NULL;
	pthread_mutex_lock(&rec_lock);
	CHECK_MSG(heads == dones, "%d heads, %d requests done", heads, dones);
	pthread_mutex_unlock(&rec_lock);
}

static int end_seen(void)
{
	pthread_mutex_lock(&rec_lock);
	int e = last_end;
	pthread_mutex_unlock(&rec_lock);
	return e;
}

/* ---- the client's side ---- */

static char resp[8192];

/* Sends head (a printf format), then body_len bytes of a pattern, and
 * reads the answer: its status, with the bytes read in resp. */
static int request(const char *head, size_t body_len, bool chunked, uint32_t *sum)
{
	int fd = raw_dial(port, NULL, 0);
	CHECK(fd >= 0);
	CHECK(raw_send(fd, head, strlen(head), 2000) == strlen(head));
	static char piece[64 * 1024];
	for (size_t i = 0; i < sizeof(piece); i++)
		piece[i] = (char)('a' + i % 26);
	*sum = 0;
	for (size_t sent = 0; sent < body_len;) {
		size_t n = body_len - sent < sizeof(piece) ? body_len - sent : sizeof(piece);
		char chunk_head[32];
		int hl = snprintf(chunk_head, sizeof(chunk_head), "%zx\r\n", n);
		if (chunked && raw_send(fd, chunk_head, (size_t)hl, 5000) != (size_t)hl)
			break;
		if (raw_send(fd, piece, n, 5000) != n)
			break;
		if (chunked && raw_send(fd, "\r\n", 2, 5000) != 2)
			break;
		*sum = sum_of(*sum, piece, n);
		sent += n;
	}
	if (chunked)
		raw_send(fd, "0\r\n\r\n", 5, 2000);
	enum raw_end end;
	raw_read(fd, resp, sizeof(resp), "\n\n", 10000, &end);
	close(fd);
	return raw_status(resp);
}

/* Sends a head that declares a body of len bytes with Expect:
 * 100-continue, no body: the answer must come at once, without 100
 * Continue, with want's status, and the connection close after it. */
static void refused_at_head(const char *path, const char *len, int want)
{
	int fd = raw_dial(port, NULL, 0);
	CHECK(fd >= 0);
	char h[256];
	snprintf(h, sizeof(h),
		 "POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %s\r\n"
		 "Expect: 100-continue\r\n\r\n",
		 path, len);
	raw_send(fd, h, strlen(h), 2000);
	enum raw_end end;
	raw_read(fd, resp, sizeof(resp), NULL, 3000, &end);
	CHECK_MSG(raw_status(resp) == want, "want %d: %s", want, resp);
	CHECK_MSG(strstr(resp, "100 Continue") == NULL, "a 100 Continue came: %s", resp);
	CHECK_MSG(end == RAW_EOF, "the connection stayed open (%d)", (int)end);
	close(fd);
}

TEST(answer_at_head_reads_no_body)
{
	start(10, 0);
	refused_at_head("/answer", "10737418240", 401);
	stop();
}

TEST(buffer_whole_and_over_the_limit)
{
	start(10, 0);
	uint32_t sum;
	CHECK_INT_EQ(request("POST /buffer HTTP/1.1\r\nHost: x\r\nConnection: "
			     "close\r\nContent-Length: 100000\r\n\r\n",
			     100000, false, &sum),
		     200);
	char want[64];
	snprintf(want, sizeof(want), "len=100000 sum=%u", sum);
	CHECK_MSG(strstr(resp, want), "want %s: %s", want, resp);
	/* A declared length over the limit: 413 at once, nothing read. */
	refused_at_head("/buffer", "2097152", 413);
	/* Chunked past the limit: read on and dropped, then 413. */
	CHECK_INT_EQ(request("POST /buffer HTTP/1.1\r\nHost: x\r\nConnection: "
			     "close\r\nTransfer-Encoding: chunked\r\n\r\n",
			     2 * MIB, true, &sum),
		     413);
	stop();
}

TEST_TIMEOUT(stream_passes_through_in_pieces, 120)
{
	start(10, 0);
	/* The sender is a child: what it holds is not the server's. */
	size_t total = 128 * MIB;
	int p[2];
	CHECK(pipe(p) == 0);
	int wfd = open("/proc/self/clear_refs", O_WRONLY | O_CLOEXEC);
	if (wfd >= 0) {
		CHECK(write(wfd, "5", 1) == 1);
		close(wfd);
	}
	long before = raw_proc_kb(getpid(), "VmHWM");
	pid_t child = fork();
	if (child == 0) {
		char head[256];
		snprintf(head, sizeof(head),
			 "POST /stream HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: "
			 "%zu\r\n\r\n",
			 total);
		uint32_t sum;
		int st = request(head, total, false, &sum);
		char line[256];
		int n = snprintf(line, sizeof(line), "%d %u %s", st, sum, resp);
		if (write(p[1], line, (size_t)n) != n)
			_exit(1);
		_exit(0);
	}
	close(p[1]);
	char line[256] = "";
	size_t got = 0;
	ssize_t r;
	while (got < sizeof(line) - 1 && (r = read(p[0], line + got, sizeof(line) - 1 - got)) > 0)
		got += (size_t)r;
	line[got] = '\0';
	close(p[0]);
	waitpid(child, NULL, 0);
	long grown = raw_proc_kb(getpid(), "VmHWM") - before;
	int st = 0;
	unsigned sum = 0;
	sscanf(line, "%d %u", &st, &sum);
	CHECK_MSG(st == 200, "answer: %s", line);
	char want[96];
	snprintf(want, sizeof(want), "n=%zu sum=%u end=0", total, sum);
	CHECK_MSG(strstr(line, want), "want %s: %s", want, line);
	fprintf(stderr, "    128 MiB streamed; the server's peak RSS grew by %ld kB\n", grown);
	CHECK_MSG(grown < 32 * 1024, "the server's peak RSS grew by %ld kB for a streamed body",
		  grown);
	stop();
}

TEST(stream_over_the_limit_refused_or_cut)
{
	start(10, 0);
	uint32_t sum;
	/* Declared over the limit: finish() at the head, 413 at once. */
	refused_at_head("/stream-small", "2097152", 413);
	CHECK_MSG(strstr(resp, "end=1"), "%s", resp);
	/* Chunked: the pieces within the limit, then 413. */
	CHECK_INT_EQ(request("POST /stream-small HTTP/1.1\r\nHost: x\r\nConnection: "
			     "close\r\nTransfer-Encoding: chunked\r\n\r\n",
			     2 * MIB, true, &sum),
		     413);
	CHECK_MSG(strstr(resp, "end=1"), "%s", resp);
	/* The sink refuses: the rest is dropped, finish() says so. */
	CHECK_INT_EQ(
	    request(
		"POST /stream-refuse HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: "
		"4194304\r\n\r\n",
		4 * MIB, false, &sum),
	    422);
	CHECK_MSG(strstr(resp, "end=2"), "%s", resp);
	stop();
}

TEST(stream_told_when_the_client_leaves)
{
	start(10, 0);
	int fd = raw_dial(port, NULL, 0);
	const char *h = "POST /stream HTTP/1.1\r\nHost: x\r\nContent-Length: 16777216\r\n\r\n";
	raw_send(fd, h, strlen(h), 2000);
	static char piece[MIB];
	raw_send(fd, piece, sizeof(piece), 2000);
	usleep(200 * 1000);
	close(fd);
	for (int i = 0; i < 100 && end_seen() != HTTP_BODY_CLIENT_GONE; i++)
		usleep(20 * 1000);
	CHECK_INT_EQ(end_seen(), HTTP_BODY_CLIENT_GONE);
	stop();
}

TEST(stream_slow_sink_is_not_the_clients_fault)
{
	/* A head timeout of 1 s and 1 MiB/s at least: a client that stalls
	 * is cut within seconds, one whose sink is slow is not. */
	start(1, MIB);
	uint32_t sum;
	CHECK_INT_EQ(
	    request("POST /stream-slow HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: "
		    "4194304\r\n\r\n",
		    4 * MIB, false, &sum),
	    200);
	int fd = raw_dial(port, NULL, 0);
	const char *h = "POST /stream HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n";
	raw_send(fd, h, strlen(h), 2000);
	double t0 = (double)time(NULL);
	enum raw_end end = RAW_TIMEOUT;
	for (int i = 0; i < 10 && end == RAW_TIMEOUT; i++) {
		raw_send(fd, "x", 1, 1000);
		raw_read(fd, resp, sizeof(resp), NULL, 1000, &end);
	}
	CHECK_MSG(end == RAW_EOF || end == RAW_RESET, "a body of 1 byte a second was not cut");
	CHECK_MSG((double)time(NULL) - t0 <= 6, "cut only after %.0f s", (double)time(NULL) - t0);
	close(fd);
	for (int i = 0; i < 100 && end_seen() != HTTP_BODY_CLIENT_GONE; i++)
		usleep(20 * 1000);
	CHECK_INT_EQ(end_seen(), HTTP_BODY_CLIENT_GONE);
	stop();
}
