/* Benchmark of hostile traffic (issue 12): what each attack costs bunkerd in
 * memory and an honest client in latency, all in one run.
 *
 *   hostile [BUILD_DIR]    (default: the parent of this binary's directory)
 *   BENCH_SECONDS=10       how long the honest client measures each phase
 *   BENCH_READERS_HOLD=70  how long the stalled readers are held (seconds;
 *                          the daemon's --idle-timeout is 60 by default)
 *   BENCH_PHASES=a,b       only these phases (default: all)
 *
 * Starts bunkerd (release build, default settings) on a free loopback port,
 * an enterprise key for the honest client and a paid key for the bomb, a
 * session, and a 10 MB file in it. Then, phase by phase, an attacker runs
 * in a child process of its own while the honest client sends GET
 * /sessions/{id} every 10 ms from 127.0.0.1, each on a new connection (a
 * client kept alive from before an attack would not see what a new one
 * does):
 *
 *   none          no attack
 *   bodies        8 unauthenticated POST /execute declaring 100 MiB, sent
 *                 one byte short, then held
 *   readers       16 GET /files/read of the 10 MB file that never read
 *                 their answer (4 KiB receive buffers)
 *   outputs       16 POST /execute of another key, each printing 10 MiB
 *                 of \x01 (60 MiB of JSON), that never read their answer
 *   bomb          99 MB of JSON to POST /execute with a paid key
 *                 ({"files":[{},{},...]}), sent again as soon as answered
 *   bomb-ent      the same with an enterprise key, whose file size limit
 *                 (100 MB) lets so large a body in
 *   key-bodies    8 POST /files/write of the bomb's paid key declaring
 *                 20 MiB, sent one byte short, then held
 *   answers       96 POST /execute of the bomb's key, each answered 900 kB
 *                 of JSON (built whole, under 1 MiB), never read (4 KiB
 *                 receive buffers); also the bytes the daemon's send
 *                 queues hold
 *   trickle       8 POST /execute of the bomb's key answering 20 MiB of
 *                 output, read at 1 KiB/s each
 *   idle-1addr    4,000 idle connections (no byte sent) from 127.0.0.2,
 *                 each reopened when the daemon closes it
 *   idle-16addr   4,000 idle connections from 127.0.0.10-25 (250 each)
 *   idle-4200     4,200 from 127.0.0.10-30 (200 each): past the 4,096
 *                 connections libmicrohttpd serves (last: a daemon that
 *                 cannot shed them stays locked up)
 *
 * Each phase has a daemon of its own (started afresh, left to settle), so
 * that no attack's leftovers are counted in the next.
 *
 * For each phase: the honest requests' p50, p99 and worst latency and
 * failures (not 200 or no answer within 10 s), the daemon's RSS at the
 * start, its peak during the phase (VmHWM, reset through
 * /proc/PID/clear_refs at the start) and its RSS at the end of the phase;
 * for the readers also the RSS once they have been held
 * BENCH_READERS_HOLD seconds.
 */
#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common.h"

#define IDLE_MAX 4200
#define BODY_CONNS 8
#define BODY_DECLARED (100u << 20)
#define KEY_BODY_DECLARED (20u << 20)
#define BOMB_BYTES (99u * 1000 * 1000)
#define READERS 16
#define OUTPUTS 16
#define FILE_BYTES (10u * 1000 * 1000)

static char honest_key[256], bomb_key[256], ent_key[256], session[64];

/* ---- raw connections ---- */

/* A blocking TCP connection to the daemon from src (an address of
 * 127.0.0.0/8), with rcvbuf bytes of receive buffer when > 0; -1 when it
 * cannot be made within 2 s. */
static int dial(const char *src, int rcvbuf)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	struct timeval tv = {.tv_sec = 2};
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (rcvbuf > 0)
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
	struct sockaddr_in sa = {.sin_family = AF_INET};
	if (src) {
		inet_pton(AF_INET, src, &sa.sin_addr);
		if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
			close(fd);
			return -1;
		}
	}
	sa.sin_port = htons((uint16_t)daemon_port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static void send_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return;
		p += w;
		n -= (size_t)w;
	}
}

/* ---- the attackers: each runs in a child until SIGTERM ---- */

static void src_of(int i, int addrs, char *out, size_t len)
{
	if (addrs == 1)
		snprintf(out, len, "127.0.0.2");
	else
		snprintf(out, len, "127.0.0.%d", 10 + i % addrs);
}

/* n connections from addrs addresses that send nothing; one the daemon
 * closes is opened again (at most 200 every 100 ms, so the attacker does
 * not just burn the CPUs the daemon needs). */
static void attack_idle(int n, int addrs)
{
	static struct pollfd p[IDLE_MAX];
	char src[32];
	for (int i = 0; i < n; i++) {
		src_of(i, addrs, src, sizeof(src));
		p[i] = (struct pollfd){.fd = dial(src, 0), .events = POLLIN};
	}
	for (;;) {
		poll(p, (nfds_t)n, 100);
		int redialled = 0;
		for (int i = 0; i < n && redialled < 200; i++) {
			if (p[i].fd >= 0 && p[i].revents == 0)
				continue;
			if (p[i].fd >= 0)
				close(p[i].fd);
			src_of(i, addrs, src, sizeof(src));
			p[i].fd = dial(src, 0);
			p[i].revents = 0;
			redialled++;
		}
	}
}

static void attack_bodies(void)
{
	int fds[BODY_CONNS];
	size_t left[BODY_CONNS];
	char head[256];
	int hl = snprintf(head, sizeof(head),
			  "POST /execute HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
			  "application/json\r\nContent-Length: %u\r\n\r\n",
			  BODY_DECLARED);
	for (int i = 0; i < BODY_CONNS; i++) {
		fds[i] = dial("127.0.0.3", 0);
		if (fds[i] >= 0) {
			send_all(fds[i], head, (size_t)hl);
			fcntl(fds[i], F_SETFL, O_NONBLOCK);
		}
		left[i] = BODY_DECLARED - 1;
	}
	static char chunk[1 << 16];
	memset(chunk, 'a', sizeof(chunk));
	for (int busy = 1; busy;) {
		busy = 0;
		struct pollfd p[BODY_CONNS];
		for (int i = 0; i < BODY_CONNS; i++)
			p[i] = (struct pollfd){.fd = left[i] ? fds[i] : -1, .events = POLLOUT};
		if (poll(p, BODY_CONNS, 1000) <= 0)
			break;
		for (int i = 0; i < BODY_CONNS; i++) {
			if (fds[i] < 0 || left[i] == 0)
				continue;
			busy = 1;
			if (!(p[i].revents & POLLOUT))
				continue;
			size_t n = left[i] < sizeof(chunk) ? left[i] : sizeof(chunk);
			ssize_t w = send(fds[i], chunk, n, MSG_NOSIGNAL);
			if (w > 0)
				left[i] -= (size_t)w;
			else if (w < 0 && errno != EAGAIN)
				left[i] = 0;
		}
	}
	for (;;)
		pause();
}

static void attack_bomb(const char *key)
{
	char head[512];
	static char *body;
	const char *pre = "{\"sessionId\":\"ses_00000000000000000000\",\"command\":\"true\","
			  "\"files\":[";
	size_t pl = strlen(pre);
	body = malloc(BOMB_BYTES);
	if (body == NULL)
		_exit(1);
	memcpy(body, pre, pl);
	size_t i = pl;
	while (i + 3 + 2 < BOMB_BYTES) {
		memcpy(body + i, "{},", 3);
		i += 3;
	}
	memcpy(body + i - 1, "]}", 2);
	size_t len = i + 1;
	int hl = snprintf(head, sizeof(head),
			  "POST /execute HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer "
			  "%s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
			  key, len);
	for (;;) {
		int fd = dial("127.0.0.4", 0);
		if (fd < 0) {
			sleep(1);
			continue;
		}
		send_all(fd, head, (size_t)hl);
		send_all(fd, body, len);
		char buf[4096];
		while (read(fd, buf, sizeof(buf)) > 0)
			if (memmem(buf, sizeof(buf), "\r\n\r\n", 4))
				break;
		close(fd);
	}
}

static void attack_readers(void)
{
	char req[512];
	int rl = snprintf(req, sizeof(req),
			  "GET /files/read?sessionId=%s&path=big.txt HTTP/1.1\r\nHost: "
			  "127.0.0.1\r\nAuthorization: Bearer %s\r\n\r\n",
			  session, honest_key);
	for (int i = 0; i < READERS; i++) {
		int fd = dial("127.0.0.5", 4096);
		if (fd >= 0)
			send_all(fd, req, (size_t)rl);
	}
	for (;;)
		pause();
}

/* 16 executions of another key, each printing 10 MiB of \x01 (60 MiB of
 * JSON), whose answers are never read (4 KiB receive buffers). */
static void attack_outputs(void)
{
	char *id = create_session(bomb_key, NULL, NULL);
	json_t *bj = json_pack("{s:s,s:s,s:i}", "sessionId", id, "command",
			       "head -c 10485760 /dev/zero | tr '\\0' '\\1'", "timeout", 120);
	char *body = json_dumps(bj, JSON_COMPACT);
	json_decref(bj);
	free(id);
	char head[512];
	int hl = snprintf(head, sizeof(head),
			  "POST /execute HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer "
			  "%s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
			  bomb_key, strlen(body));
	for (int i = 0; i < OUTPUTS; i++) {
		int fd = dial("127.0.0.6", 4096);
		if (fd >= 0) {
			send_all(fd, head, (size_t)hl);
			send_all(fd, body, strlen(body));
		}
	}
	free(body);
	for (;;)
		pause();
}

static void attack_key_bodies(void)
{
	char head[512];
	int hl = snprintf(head, sizeof(head),
			  "POST /files/write HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer "
			  "%s\r\nContent-Type: application/json\r\nContent-Length: %u\r\n\r\n",
			  bomb_key, KEY_BODY_DECLARED);
	int fds[BODY_CONNS];
	static char chunk[1 << 16];
	memset(chunk, 'a', sizeof(chunk));
	for (int i = 0; i < BODY_CONNS; i++) {
		fds[i] = dial("127.0.0.7", 0);
		if (fds[i] < 0)
			continue;
		send_all(fds[i], head, (size_t)hl);
		/* SO_SNDTIMEO (2 s) ends a send the daemon no longer takes. */
		for (size_t left = KEY_BODY_DECLARED - 1; left > 0;) {
			size_t n = left < sizeof(chunk) ? left : sizeof(chunk);
			ssize_t w = send(fds[i], chunk, n, MSG_NOSIGNAL);
			if (w <= 0)
				break;
			left -= (size_t)w;
		}
	}
	for (;;)
		pause();
}

/* n executions of the bomb's key running command, whose answers are read
 * at rate bytes a second each (0: never), on 4 KiB receive buffers. */
static void attack_answers(int n, const char *command, int rate)
{
	char *id = create_session(bomb_key, NULL, NULL);
	json_t *bj =
	    json_pack("{s:s,s:s,s:i}", "sessionId", id, "command", command, "timeout", 120);
	char *body = json_dumps(bj, JSON_COMPACT);
	json_decref(bj);
	free(id);
	char head[512];
	int hl = snprintf(head, sizeof(head),
			  "POST /execute HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer "
			  "%s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
			  bomb_key, strlen(body));
	static int fds[128];
	for (int i = 0; i < n && i < 128; i++) {
		fds[i] = dial("127.0.0.8", 4096);
		if (fds[i] < 0)
			continue;
		send_all(fds[i], head, (size_t)hl);
		send_all(fds[i], body, strlen(body));
		struct pollfd p = {.fd = fds[i], .events = POLLIN};
		poll(&p, 1, 30000); /* answered: the next does not wait on it */
	}
	free(body);
	for (;;) {
		sleep_ms(1000);
		char buf[16384];
		for (int i = 0; i < n && i < 128 && rate > 0; i++)
			if (fds[i] >= 0 && recv(fds[i], buf, (size_t)rate, MSG_DONTWAIT) == 0)
				fds[i] = -1;
	}
}

/* ---- measuring ---- */

/* The bytes the send queues of the daemon's connections hold
 * (/proc/net/tcp). */
static size_t queued_bytes(void)
{
	FILE *f = fopen("/proc/net/tcp", "re");
	char line[512];
	size_t total = 0;
	while (f && fgets(line, sizeof(line), f)) {
		unsigned local, lport, remote, rport, state;
		unsigned long tx, rx;
		if (sscanf(line, " %*d: %x:%x %x:%x %x %lx:%lx", &local, &lport, &remote, &rport,
			   &state, &tx, &rx) == 7 &&
		    lport == (unsigned)daemon_port)
			total += tx;
	}
	if (f)
		fclose(f);
	return total;
}

static long proc_kb(const char *field)
{
	char path[64], line[256];
	snprintf(path, sizeof(path), "/proc/%d/status", (int)daemon_pid);
	FILE *f = fopen(path, "re");
	long v = -1;
	size_t fl = strlen(field);
	while (f && fgets(line, sizeof(line), f))
		if (strncmp(line, field, fl) == 0 && line[fl] == ':')
			v = atol(line + fl + 1);
	if (f)
		fclose(f);
	return v;
}

static void reset_peak(void)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/clear_refs", (int)daemon_pid);
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd >= 0) {
		if (write(fd, "5", 1) != 1)
			fprintf(stderr, "bench: cannot reset the peak RSS\n");
		close(fd);
	}
}

/* Waits until the daemon's RSS moves by less than 1 MB in a second (60 s
 * at most): its warm pool may still be starting. */
static void settle(void)
{
	long last = proc_kb("VmRSS");
	for (int i = 0; i < 60; i++) {
		sleep_ms(1000);
		long now = proc_kb("VmRSS");
		if (labs(now - last) < 1024)
			return;
		last = now;
	}
}

struct phase {
	const char *name;
	void (*attack)(int arg);
	int arg;
};

static void run_idle(int arg)
{
	attack_idle(arg / 100, arg % 100);
}
static void run_bodies(int arg)
{
	attack_bodies();
}
static void run_bomb(int arg)
{
	attack_bomb(arg ? ent_key : bomb_key);
}
static void run_key_bodies(int arg)
{
	attack_key_bodies();
}
static void run_answers(int arg)
{
	if (arg == 0)
		attack_answers(96, "head -c 900000 /dev/zero | tr '\\0' a", 0);
	else
		attack_answers(8,
			       "head -c 10485760 /dev/zero | tr '\\0' a; "
			       "head -c 10485760 /dev/zero | tr '\\0' a >&2",
			       1024);
}
static void run_readers(int arg)
{
	attack_readers();
}
static void run_outputs(int arg)
{
	attack_outputs();
}

static size_t drop(char *d, size_t size, size_t n, void *arg)
{
	return size * n;
}

/* The honest client's requests for seconds, each on a new connection:
 * latencies into v (at most max), failures (not 200, or nothing within
 * 10 s) counted. */
static int honest(double seconds, double *v, int max, int *failed)
{
	char url[256], auth[320];
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/sessions/%s", daemon_port, session);
	snprintf(auth, sizeof(auth), "Authorization: Bearer %s", honest_key);
	CURL *h = curl_easy_init();
	struct curl_slist *hl = curl_slist_append(NULL, auth);
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hl);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_TIMEOUT, 10L);
	curl_easy_setopt(h, CURLOPT_FORBID_REUSE, 1L);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, drop);
	int n = 0;
	double end = now_ms() + seconds * 1000;
	while (now_ms() < end && n < max) {
		double t0 = now_ms();
		long st = 0;
		if (curl_easy_perform(h) == CURLE_OK)
			curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &st);
		*failed += st != 200;
		v[n++] = now_ms() - t0;
		sleep_ms(10);
	}
	curl_slist_free_all(hl);
	curl_easy_cleanup(h);
	return n;
}

/* A daemon of its own for a phase, so that no attack's leftovers (memory
 * glibc keeps, connections a daemon could not shed) are counted in the
 * next: its keys, the session and the 10 MB file. */
static void phase_daemon(void)
{
	start_daemon(NULL, 10, 30);
	key_create("enterprise", honest_key, sizeof(honest_key));
	key_create("paid", bomb_key, sizeof(bomb_key));
	key_create("enterprise", ent_key, sizeof(ent_key));
	char *id = create_session(honest_key, NULL, NULL);
	snprintf(session, sizeof(session), "%s", id);
	free(id);
	char *content = malloc(FILE_BYTES + 1);
	memset(content, 'x', FILE_BYTES);
	content[FILE_BYTES] = '\0';
	json_t *wj =
	    json_pack("{s:s,s:s,s:s}", "sessionId", session, "path", "big.txt", "content", content);
	char *wbody = json_dumps(wj, JSON_COMPACT);
	json_decref(wj);
	free(content);
	if (http("POST", "/files/write", honest_key, wbody, NULL, NULL) != 200)
		die("cannot write the 10 MB file");
	free(wbody);
}

/* Whether BENCH_PHASES (a comma-separated list; unset: all) names name. */
static bool phase_wanted(const char *name)
{
	const char *only = getenv("BENCH_PHASES");
	if (only == NULL || *only == '\0')
		return true;
	size_t n = strlen(name);
	for (const char *p = only; *p;) {
		size_t k = strcspn(p, ",");
		if (k == n && strncmp(p, name, n) == 0)
			return true;
		p += k + (p[k] == ',');
	}
	return false;
}

int main(int argc, char **argv)
{
	bench_init(argc, argv);
	int seconds = env_int("BENCH_SECONDS", 10, 1, 600);
	int hold = env_int("BENCH_READERS_HOLD", 70, 0, 3600);
	/* Thousands of connections: as many descriptors as the hard limit. */
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	static const struct phase phases[] = {
	    {"none", NULL, 0},
	    {"bodies", run_bodies, 0},
	    {"readers", run_readers, 0},
	    {"outputs", run_outputs, 0},
	    {"key-bodies", run_key_bodies, 0},
	    {"answers", run_answers, 0},
	    {"trickle", run_answers, 1},
	    {"bomb", run_bomb, 0},
	    {"bomb-ent", run_bomb, 1},
	    {"idle-1addr", run_idle, 4000 * 100 + 1},
	    {"idle-16addr", run_idle, 4000 * 100 + 16},
	    {"idle-4200", run_idle, 4200 * 100 + 21},
	};
	int max = seconds * 200;
	double *v = malloc(sizeof(double) * (size_t)max);
	printf("%-12s %6s %9s %9s %9s %7s %9s %9s %9s\n", "phase", "n", "p50 ms", "p99 ms",
	       "max ms", "failed", "start MB", "peak MB", "end MB");
	for (size_t i = 0; i < sizeof(phases) / sizeof(phases[0]); i++) {
		const struct phase *ph = &phases[i];
		if (!phase_wanted(ph->name))
			continue;
		phase_daemon();
		settle();
		long start = proc_kb("VmRSS");
		reset_peak();
		pid_t child = 0;
		if (ph->attack) {
			child = fork();
			if (child == 0) {
				ph->attack(ph->arg);
				_exit(0);
			}
			sleep_ms(2000); /* let it set up */
		}
		int failed = 0;
		int n = honest(seconds, v, max, &failed);
		long peak = proc_kb("VmHWM"), end = proc_kb("VmRSS");
		double worst = 0;
		for (int k = 0; k < n; k++)
			worst = v[k] > worst ? v[k] : worst;
		struct stats s = summarise(ph->name, v, n);
		printf("%-12s %6d %9.2f %9.2f %9.1f %7d %9.1f %9.1f %9.1f\n", ph->name, n, s.p50,
		       s.p99, worst, failed, start / 1024.0, peak / 1024.0, end / 1024.0);
		if (ph->attack == run_answers)
			printf("%-12s the daemon's send queues hold %.1f MB\n", "",
			       (double)queued_bytes() / (1 << 20));
		if ((ph->attack == run_readers || (ph->attack == run_answers && ph->arg)) &&
		    hold > seconds + 2) {
			sleep_ms((hold - seconds - 2) * 1000.0);
			printf("%-12s RSS after %d s of stalled readers: %.1f MB\n", "", hold,
			       proc_kb("VmRSS") / 1024.0);
		}
		if (child > 0) {
			kill(child, SIGKILL);
			waitpid(child, NULL, 0);
		}
		stop_daemon();
	}
	free(v);
	bench_cleanup();
	return 0;
}
