/* Benchmark of a session's outbound network (issue 13): what the routed
 * veth, the nftables chain and the masquerade cost a session against a
 * process on the host reaching the same server, and what a grant adds to
 * POST /sessions/create.
 *
 *   egress [BUILD_DIR]           (default: the parent of this binary's directory)
 *   BENCH_MB=200                 size of one download
 *   BENCH_ROUNDS=3               downloads each way, interleaved
 *   BENCH_GETS=300               small GETs each way
 *   BENCH_N=30                   creates of each kind at each level
 *   BENCH_GAP_MS=400             pause after each measured create and delete
 *   BENCH_EGRESS_SESSIONS=1000   sessions that exist at the second level
 *                                (granted egress, as the first is; 0: the
 *                                first level only)
 *
 * The server: a network namespace of the bench's own ("bkb<pid>") with
 * 198.51.100.2 on the inside of a veth whose host end has 198.51.100.1/24;
 * no default route in it, and a Python server bound to the address
 * literal, which looks nothing up (raw sockets, no http.server). It
 * answers GET /big with BENCH_MB megabytes and GET /small with two bytes,
 * each on a connection of its own. The bench refuses to run when anything
 * of this machine routes 198.51.100.0/24 or the sessions' range
 * (10.216.0.0/16), and removes the namespace and the veth at its end.
 *
 * (a) Throughput: curl -o /dev/null of /big inside a session with 2 cores
 *     granted 198.51.100.2, and by curl on the host, alternately; the
 *     medians and their ratio (target >= 0.8). The key's bandwidth cap is
 *     raised to its maximum (100,000 Mbit/s) so that the path is measured,
 *     not the plan; one more download at the enterprise plan's cap (1,000
 *     Mbit/s) shows the cap at work.
 * (b) Latency: BENCH_GETS sequential GET /small, each a new TCP connection,
 *     by one Python process (/usr/bin/python3 both ways, the same code)
 *     inside the session and on the host; p50 and p99 of each.
 * (c) Create: BENCH_N creates of each of three kinds, interleaved, each
 *     deleted again outside the timing, at 1 existing session and at
 *     BENCH_EGRESS_SESSIONS: without a network, with the policy of the
 *     grant before ({"network":{"allowedCidrs":[...]}}, which the warm
 *     pool's prepared network holds already), and with another policy than
 *     the grant before (another CIDR and allowHttps, in turn with the
 *     first: two of the prepared network's sets are rewritten); the
 *     differences of the p50s (target <= 2 ms). The warm pool is the
 *     default's; the pause lets it refill, as a real create rate would.
 *
 * 1,000 sessions at the kernel's usual pid_max (32768) need a small
 * processes limit: sessions get --pids-max 16 and the daemon a budget of
 * what the level needs. Idle and deep sleep are pushed past the run, so
 * nothing sleeps under the measurement.
 */
#include <jansson.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common.h"

#define SRV "198.51.100.2"
#define SRV_HOST_SIDE "198.51.100.1"
#define SRV_PORT 8080
#define SESSIONS_RANGE "10.216.0.0/16"
#define TARGET_RATIO 0.8
#define TARGET_CREATE_MS 2.0

#define STR(x) #x
#define XSTR(x) STR(x)
#define GRANT "{\"network\":{\"allowedCidrs\":[\"" SRV "/32\"]}}"

static char netns[32], host_if[16];
static pid_t server_pid;

static const struct stats_table table = {.name_width = 40, .n_width = 5};

/* The server: /big sends the size given as its argument in MB, /small
 * "hi"; one thread per connection, closed after each answer. */
static const char server_py[] =
    "import socket,sys,threading\n"
    "size=int(sys.argv[1])<<20\n"
    "chunk=b'\\0'*(1<<20)\n"
    "def h(c):\n"
    "  try:\n"
    "    req=b''\n"
    "    while b'\\r\\n\\r\\n' not in req:\n"
    "      d=c.recv(4096)\n"
    "      if not d: return\n"
    "      req+=d\n"
    "    if req.startswith(b'GET /big'):\n"
    "      c.sendall(b'HTTP/1.1 200 OK\\r\\nContent-Length: %d\\r\\nConnection: close\\r\\n\\r\\n'"
    " % size)\n"
    "      for i in range(size>>20): c.sendall(chunk)\n"
    "    else:\n"
    "      c.sendall(b'HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\nConnection: "
    "close\\r\\n\\r\\nhi')\n"
    "  except Exception: pass\n"
    "  finally: c.close()\n"
    "s=socket.socket(); s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n"
    "s.bind(('" SRV "'," XSTR(
	SRV_PORT) ")); s.listen(128)\n"
		  "while True:\n"
		  "  c,_=s.accept(); threading.Thread(target=h,args=(c,),daemon=True).start()\n";

/* The latency client: argv[1] GETs of /small, one connection each; prints
 * each one's milliseconds. */
static const char gets_py[] =
    "import socket,sys,time\n"
    "out=[]\n"
    "for i in range(int(sys.argv[1])):\n"
    "  t=time.perf_counter()\n"
    "  s=socket.create_connection(('" SRV
    "'," XSTR(SRV_PORT) "),timeout=5)\n"
			"  s.sendall(b'GET /small HTTP/1.1\\r\\nHost: " SRV "\\r\\n\\r\\n')\n"
			"  while s.recv(4096): pass\n"
			"  s.close()\n"
			"  out.append((time.perf_counter()-t)*1000)\n"
			"print('\\n'.join('%.4f' % x for x in out))\n";

static int sh(const char *cmd)
{
	int st = system(cmd);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void net_teardown(void)
{
	if (server_pid > 0) {
		kill(server_pid, SIGKILL);
		waitpid(server_pid, NULL, 0);
		server_pid = 0;
	}
	char cmd[128];
	if (host_if[0]) {
		snprintf(cmd, sizeof(cmd), "ip link del %s 2>/dev/null", host_if);
		sh(cmd);
		host_if[0] = '\0';
	}
	if (netns[0]) {
		snprintf(cmd, sizeof(cmd), "ip netns del %s 2>/dev/null", netns);
		sh(cmd);
		netns[0] = '\0';
	}
}

static void on_signal(int sig)
{
	stop_daemon();
	net_teardown();
	signal(sig, SIG_DFL);
	raise(sig);
}

static void net_setup(int mb)
{
	if (sh("ip route | grep -qE '(^|[^0-9])(198\\.51\\.100\\.|10\\.216\\.)' || "
	       "ip -4 addr | grep -qE 'inet (198\\.51\\.100\\.|10\\.216\\.)'") == 0)
		die("198.51.100.0/24 or " SESSIONS_RANGE " is in use on this machine");
	snprintf(netns, sizeof(netns), "bkb%d", (int)getpid());
	snprintf(host_if, sizeof(host_if), "bkbh%d", (int)getpid() % 100000);
	atexit(net_teardown);
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	char cmd[1024];
	snprintf(cmd, sizeof(cmd),
		 "ip netns add %s && ip link add %s type veth peer name eth0 netns %s && "
		 "ip addr add " SRV_HOST_SIDE "/24 dev %s && ip link set %s up && "
		 "ip -n %s link set lo up && ip -n %s addr add " SRV "/24 dev eth0 && "
		 "ip -n %s link set eth0 up",
		 netns, host_if, netns, host_if, host_if, netns, netns, netns);
	if (sh(cmd) != 0)
		die("cannot make the server's network namespace");
	/* Reached through the veth, and the namespace has no way out. */
	snprintf(cmd, sizeof(cmd),
		 "ip route get " SRV " | grep -q 'dev %s' && "
		 "! ip -n %s route | grep -q default",
		 host_if, netns);
	if (sh(cmd) != 0)
		die("the server's address is not reached through the bench's veth");
	char size[16];
	snprintf(size, sizeof(size), "%d", mb);
	server_pid = fork();
	if (server_pid == 0) {
		execlp("ip", "ip", "netns", "exec", netns, "/usr/bin/python3", "-c", server_py,
		       size, (char *)NULL);
		_exit(127);
	}
	for (int i = 0; i < 50; i++) {
		snprintf(cmd, sizeof(cmd),
			 "curl -s -m 2 -o /dev/null http://" SRV ":" XSTR(SRV_PORT) "/small");
		if (sh(cmd) == 0)
			return;
		sleep_ms(100);
	}
	die("the server in the namespace does not answer");
}

/* curl's "<seconds> <bytes/s> <bytes>" of one download of /big. */
static const char curl_big[] = "curl -s -o /dev/null -w '%{time_total} %{speed_download} "
			       "%{size_download}' http://" SRV ":" XSTR(SRV_PORT) "/big";

/* MB/s of one download (out: curl's line); dies unless it was whole. */
static double download_mbs(const char *out, int mb)
{
	double secs = 0, speed = 0, bytes = 0;
	if (sscanf(out, "%lf %lf %lf", &secs, &speed, &bytes) != 3 ||
	    bytes != (double)mb * 1048576.0 || secs <= 0) {
		fprintf(stderr, "bench: curl said '%s'\n", out);
		die("a download was not whole");
	}
	return bytes / secs / 1e6;
}

static double median(double *v, int n)
{
	sort_values(v, n);
	return nearest_rank(v, n, 0.5);
}

/* The milliseconds gets_py printed into v (n of them). */
static void parse_gets(const char *out, double *v, int n)
{
	const char *p = out;
	for (int i = 0; i < n; i++) {
		char *end;
		v[i] = strtod(p, &end);
		if (end == p)
			die("cannot read the latency client's output");
		p = end;
	}
}

static json_t *gets_file(void)
{
	return json_pack("[{s:s,s:s}]", "path", "gets.py", "content", gets_py);
}

/* ---- (c) create ---- */

struct create_level {
	int sessions;
	struct stats same, other, without;
};

/* Creates of three kinds in turn, the order rotating each round: without
 * a grant; with the policy of the grant before (what the warm pool's
 * prepared network holds already: the create writes nothing into
 * nftables); and with the other of two policies (the create rewrites the
 * prepared network's sets). */
static void measure_creates(const char *key, int n, int gap_ms, struct create_level *out)
{
	static const char *const policies[2] = {GRANT, "{\"network\":{\"allowedCidrs\":[\"" SRV
						       "/31\"],\"allowHttps\":true}}"};
	double *ms[3];
	for (int k = 0; k < 3; k++)
		if ((ms[k] = calloc((size_t)n, sizeof(double))) == NULL)
			die("out of memory");
	int cur = 0;
	for (int i = 0; i < 3 * n; i++) {
		int kind = (i + i / 3) % 3;
		if (kind == 2)
			cur = !cur;
		double t;
		char *id = create_session(key, kind == 0 ? NULL : policies[cur], &t);
		ms[kind][i / 3] = t;
		sleep_ms(gap_ms);
		delete_session(key, id, NULL);
		free(id);
		sleep_ms(gap_ms);
	}
	out->without = summarise("create without", ms[0], n);
	out->same = summarise("create with the last grant's policy", ms[1], n);
	out->other = summarise("create with another policy", ms[2], n);
	for (int k = 0; k < 3; k++)
		free(ms[k]);
}

static void print_level(const struct create_level *l)
{
	printf("\n== create at %d existing session%s ==\n", l->sessions,
	       l->sessions == 1 ? "" : "s");
	stats_print_header(&table);
	stats_print_row(&table, &l->without, NULL);
	stats_print_row(&table, &l->same, NULL);
	stats_print_row(&table, &l->other, NULL);
	double d = l->same.p50 - l->without.p50, o = l->other.p50 - l->without.p50;
	printf("egress adds %.2f ms to the p50 with the last grant's policy, %.2f ms with another "
	       "(target <= %.1f ms: %s)\n",
	       d, o, TARGET_CREATE_MS,
	       d <= TARGET_CREATE_MS && o <= TARGET_CREATE_MS ? "met"
	       : d <= TARGET_CREATE_MS ? "met with the last grant's policy only"
				       : "NOT met");
}

int main(int argc, char **argv)
{
	bench_init(argc, argv);
	int mb = env_int("BENCH_MB", 200, 1, 4096);
	int rounds = env_int("BENCH_ROUNDS", 3, 1, 50);
	int gets = env_int("BENCH_GETS", 300, 10, 100000);
	int n = env_int("BENCH_N", 30, 3, 10000);
	int gap = env_int("BENCH_GAP_MS", 400, 0, 10000);
	int many = env_int("BENCH_EGRESS_SESSIONS", 1000, 0, 10000);

	net_setup(mb);
	/* Processes: 16 a session, for the level's sessions, the warm pool
	 * and the measured ones. */
	long need = (long)(many + 32) * 16, pid_max = 32768;
	FILE *f = fopen("/proc/sys/kernel/pid_max", "r");
	if (f == NULL || fscanf(f, "%ld", &pid_max) != 1)
		pid_max = 32768;
	if (f)
		fclose(f);
	if (need > pid_max / 10 * 9)
		die("BENCH_EGRESS_SESSIONS needs more processes than this kernel's pid_max leaves");
	char budget[24];
	snprintf(budget, sizeof(budget), "%ld", need > 4096 ? need : 4096);
	const char *const daemon_args[] = {"--egress-net",
					   SESSIONS_RANGE,
					   "--pids-max",
					   "16",
					   "--pids-budget",
					   budget,
					   "--idle-after",
					   "86400",
					   "--deep-sleep-after",
					   "172800",
					   NULL};
	start_daemon(daemon_args, 300, 120);
	char key[256], capped[256];
	char max_s[16];
	snprintf(max_s, sizeof(max_s), "%d", many + 64);
	const char *const overrides[] = {"--max-sessions", max_s,    "--rpm", "100000000",
					 "--egress-mbps",  "100000", NULL};
	key_create_with("enterprise", overrides, key, sizeof(key));
	key_create("enterprise", capped, sizeof(capped));
	printf("bunkerd %s; server %s in namespace %s; %d MB downloads, %d rounds\n", build, SRV,
	       netns, mb, rounds);

	/* (a) and (b): one session with 2 cores, granted the server. */
	char *id = create_session(
	    key,
	    "{\"resourceLimits\":{\"cpu\":2,\"memory\":2048},\"network\":{\"allowedCidrs\":[\"" SRV
	    "/32\"]}}",
	    NULL);
	free(session_run(key, id, "true", 30, gets_file()));
	double *in_mbs = calloc((size_t)rounds, sizeof(double)),
	       *host_mbs = calloc((size_t)rounds, sizeof(double));
	if (in_mbs == NULL || host_mbs == NULL)
		die("out of memory");
	printf("\n== (a) download of %d MB ==\n%-9s %5s %10s\n", mb, "where", "round", "MB/s");
	for (int r = 0; r < rounds; r++) {
		char *out = session_run(key, id, curl_big, 300, NULL);
		in_mbs[r] = download_mbs(out, mb);
		free(out);
		printf("%-9s %5d %10.1f\n", "session", r + 1, in_mbs[r]);
		out = host_run(curl_big);
		host_mbs[r] = download_mbs(out, mb);
		free(out);
		printf("%-9s %5d %10.1f\n", "host", r + 1, host_mbs[r]);
	}
	double in_med = median(in_mbs, rounds), host_med = median(host_mbs, rounds);
	double ratio = host_med > 0 ? in_med / host_med : 0;
	printf("median: session %.1f MB/s, host %.1f MB/s; session/host %.2f (target >= %.1f: "
	       "%s)\n",
	       in_med, host_med, ratio, TARGET_RATIO, ratio >= TARGET_RATIO ? "met" : "NOT met");
	free(in_mbs);
	free(host_mbs);

	/* The plan's own cap, once. */
	char *cid = create_session(capped, GRANT, NULL);
	char *out = session_run(capped, cid, curl_big, 300, NULL);
	printf("at the enterprise plan's cap (1000 Mbit/s = 125 MB/s): %.1f MB/s\n",
	       download_mbs(out, mb));
	free(out);
	delete_session(capped, cid, NULL);
	free(cid);

	/* (b) */
	double *lat_in = calloc((size_t)gets, sizeof(double)),
	       *lat_host = calloc((size_t)gets, sizeof(double));
	if (lat_in == NULL || lat_host == NULL)
		die("out of memory");
	char cmd[256];
	snprintf(cmd, sizeof(cmd), "/usr/bin/python3 /workspace/gets.py %d", gets);
	out = session_run(key, id, cmd, 300, NULL);
	parse_gets(out, lat_in, gets);
	free(out);
	char script[] = "/tmp/bk-egress-bench-XXXXXX";
	int fd = mkstemp(script);
	if (fd < 0 || write(fd, gets_py, strlen(gets_py)) != (ssize_t)strlen(gets_py))
		die("cannot write the latency client");
	close(fd);
	snprintf(cmd, sizeof(cmd), "/usr/bin/python3 %s %d", script, gets);
	out = host_run(cmd);
	unlink(script);
	parse_gets(out, lat_host, gets);
	free(out);
	struct stats s_in = summarise("GET /small from the session", lat_in, gets);
	struct stats s_host = summarise("GET /small from the host", lat_host, gets);
	printf("\n== (b) small GET, a new connection each ==\n");
	stats_print_header(&table);
	stats_print_row(&table, &s_host, NULL);
	stats_print_row(&table, &s_in, NULL);
	printf("the session adds %.3f ms to the p50, %.3f ms to the p99\n", s_in.p50 - s_host.p50,
	       s_in.p99 - s_host.p99);
	free(lat_in);
	free(lat_host);

	/* (c): the measuring session is the one that exists. */
	struct create_level levels[2] = {{.sessions = 1}, {.sessions = many}};
	measure_creates(key, n, gap, &levels[0]);
	print_level(&levels[0]);
	char **ids = NULL;
	if (many > 1) {
		ids = calloc((size_t)many, sizeof(char *));
		if (ids == NULL)
			die("out of memory");
		double t0 = now_ms();
		for (int i = 1; i < many; i++)
			ids[i] = create_session(key, GRANT, NULL);
		printf("\n(%d sessions granted egress made in %.1f s)\n", many - 1,
		       (now_ms() - t0) / 1000);
		measure_creates(key, n, gap, &levels[1]);
		print_level(&levels[1]);
		printf(
		    "\n== summary ==\ncreate p50 without -> with the last grant's policy / "
		    "another: %.2f -> %.2f / %.2f ms at 1 session, %.2f -> %.2f / %.2f ms at %d\n",
		    levels[0].without.p50, levels[0].same.p50, levels[0].other.p50,
		    levels[1].without.p50, levels[1].same.p50, levels[1].other.p50, many);
		for (int i = 1; i < many; i++) {
			delete_session(key, ids[i], NULL);
			free(ids[i]);
		}
		free(ids);
	}
	if (rate_limited > 0)
		printf("(%d answers were 429 and were retried outside the timing)\n", rate_limited);
	delete_session(key, id, NULL);
	free(id);
	bench_cleanup();
	net_teardown();
	return 0;
}
