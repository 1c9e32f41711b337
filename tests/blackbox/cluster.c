/* Three bunkerd nodes on one PostgreSQL (tests/pg_server.h): each its own
 * port, data directory, cgroup parent and host id range, one preview
 * domain and one operator token between them. A session created through
 * any node is served through every node, with the answer its owner gives;
 * creates are placed where there is room; the cap and an Idempotency-Key
 * hold across nodes; a node's restart leaves its peers' sessions and
 * tasks alone; operators read the nodes with their own token; a client
 * cannot pass itself off as a node. SKIPs when PostgreSQL cannot run here.
 */
#include <dirent.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../client.h"
#include "../iv_client.h"
#include "../raw.h"
#include "../pg_server.h"

#define NODES 3
/* CORE_FENCE_MS (core/core.h), in seconds. */
#define CORE_FENCE_S 12
#define OPERATOR_TOKEN "op-token-0123456789abcdef"
#define PREVIEW_DOMAIN "bunker.test"

static char token_file[PATH_MAX];

int harness_setup(void)
{
	if (pg_server_start() < 0)
		fprintf(stderr, "bb_cluster: no PostgreSQL: %s\n", pg.skip);
	snprintf(token_file, sizeof(token_file), "/tmp/bk-cluster-token-%d", (int)getpid());
	FILE *f = fopen(token_file, "w");
	if (f == NULL)
		return -1;
	fprintf(f, "%s\n", OPERATOR_TOKEN);
	fclose(f);
	return 0;
}

void harness_teardown(void)
{
	unlink(token_file);
	pg_server_stop();
}

struct cluster {
	struct client_daemon d[NODES];
	char args[NODES][24][PATH_MAX];
	const char *argv[NODES][25];
};

static const char *const node_names[NODES] = {"node-a", "node-b", "node-c"};

/* The arguments of node i: its name and id range of its own; the token,
 * the preview domain and (without a pool) nothing else in common. */
static void node_args(struct cluster *cl, int i, const char *const *extra)
{
	int n = 0;
	const char *v[] = {"--warm-pool",
			   "0",
			   "--node",
			   node_names[i],
			   "--operator-token-file",
			   token_file,
			   "--preview-domain",
			   PREVIEW_DOMAIN,
			   "--id-slots",
			   i == 0   ? "0:256"
			   : i == 1 ? "256:256"
				    : "512:256",
			   NULL};
	for (; v[n]; n++) {
		snprintf(cl->args[i][n], sizeof(cl->args[i][n]), "%s", v[n]);
		cl->argv[i][n] = cl->args[i][n];
	}
	for (size_t k = 0; extra && extra[k]; k++, n++) {
		snprintf(cl->args[i][n], sizeof(cl->args[i][n]), "%s", extra[k]);
		cl->argv[i][n] = cl->args[i][n];
	}
	cl->argv[i][n] = NULL;
}

/* Three nodes with extra arguments each (NULL: none). */
static void cluster_start_with(struct cluster *cl, const char *const *extra)
{
	PG_REQUIRE();
	if (geteuid() != 0)
		SKIP("not root: cannot run bunkerd");
	memset(cl, 0, sizeof(*cl));
	char msg[512];
	CHECK_MSG(pg_server_database("bbc", cl->d[0].store, sizeof(cl->d[0].store), msg,
				     sizeof(msg)) == 0,
		  "%s", msg);
	for (int i = 0; i < NODES; i++) {
		if (i > 0)
			snprintf(cl->d[i].store, sizeof(cl->d[i].store), "%s", cl->d[0].store);
		node_args(cl, i, extra);
		CHECK_MSG(client_daemon_start(&cl->d[i], cl->argv[i]) == 0, "cannot start %s",
			  node_names[i]);
	}
}

static void cluster_start(struct cluster *cl)
{
	cluster_start_with(cl, NULL);
}

static void cluster_stop(struct cluster *cl)
{
	int bad = 0;
	for (int i = NODES - 1; i >= 0; i--) {
		CHECK_INT_EQ(client_daemon_stop(&cl->d[i]), 0);
		bad += client_daemon_check(&cl->d[i]);
	}
	CHECK_INT_EQ(bad, 0);
}

static char *create_via(const struct client_daemon *d, const char *key)
{
	struct client_resp r = {0};
	client_call(d, "POST", "/sessions/create", key, "{}", &r);
	CHECK_MSG(r.status == 200, "create via %s: %ld %s", d->base_url, r.status, r.body);
	char *id = strdup(client_json_str(r.json, "sessionId"));
	client_resp_free(&r);
	return id;
}

/* GET /v1/cluster/nodes with the operator token: the answer's nodes. */
static json_t *nodes_via(const struct client_daemon *d)
{
	const char *h[] = {"Authorization: Bearer " OPERATOR_TOKEN, NULL};
	struct client_req req = {.method = "GET", .path = "/v1/cluster/nodes", .headers = h};
	struct client_resp r = {0};
	CHECK(client_request(d, &req, &r) == 0);
	CHECK_STATUS(&r, 200);
	json_t *nodes = json_incref(json_object_get(r.json, "nodes"));
	client_resp_free(&r);
	CHECK(json_is_array(nodes));
	return nodes;
}

static long long owned_by(json_t *nodes, const char *name)
{
	size_t i;
	json_t *n;
	json_array_foreach (nodes, i, n) {
		if (strcmp(json_string_value(json_object_get(n, "name")), name) == 0)
			return json_integer_value(json_object_get(n, "sessionsOwned"));
	}
	return -1;
}

/* Runs command in id through d: its stdout (caller frees). */
static char *run_via(const struct client_daemon *d, const char *key, const char *id,
		     const char *command)
{
	json_t *body = json_pack("{s:s,s:s}", "sessionId", id, "command", command);
	struct client_resp r = {0};
	client_call_json(d, "POST", "/execute", key, body, &r);
	json_decref(body);
	CHECK_MSG(r.status == 200, "execute '%s' via %s: %ld %s", command, d->base_url, r.status,
		  r.body);
	char *out = strdup(client_json_str(r.json, "stdout"));
	client_resp_free(&r);
	return out;
}

/* The execute answer without its timings. */
static char *exec_core(const struct client_resp *r)
{
	return json_dumps(json_pack("{s:O,s:O,s:O}", "stdout", json_object_get(r->json, "stdout"),
				    "stderr", json_object_get(r->json, "stderr"), "exitCode",
				    json_object_get(r->json, "exitCode")),
			  JSON_SORT_KEYS | JSON_COMPACT);
}

/* The names of the events of an SSE body, in order, one a line. */
static char *event_names(const char *body)
{
	size_t cap = strlen(body) + 1, len = 0;
	char *out = calloc(1, cap);
	for (const char *p = body; (p = strstr(p, "event: ")) != NULL;) {
		p += 7;
		size_t n = strcspn(p, "\r\n");
		memcpy(out + len, p, n);
		len += n;
		out[len++] = '\n';
		p += n;
	}
	out[len] = '\0';
	return out;
}

TEST_TIMEOUT(any_node_serves_a_session_with_the_owners_answer, 300)
{
	struct cluster cl;
	cluster_start(&cl);
	char key[CLIENT_KEY_MAX];
	CHECK(client_key_create(&cl.d[0], "paid", key, sizeof(key)) == 0);
	char *id = create_via(&cl.d[0], key);

	/* A file of 300 KB written through A, read through every node. */
	size_t big = 300 * 1024;
	char *content = malloc(big + 1);
	for (size_t i = 0; i < big; i++)
		content[i] = (char)('a' + i % 26);
	content[big] = '\0';
	json_t *w = json_pack("{s:s,s:s,s:s}", "sessionId", id, "path", "/workspace/big.txt",
			      "content", content);
	struct client_resp r = {0};
	client_call_json(&cl.d[0], "POST", "/files/write", key, w, &r);
	json_decref(w);
	CHECK_STATUS(&r, 200);
	client_resp_free(&r);

	char *first_exec = NULL, *first_events = NULL, *first_info = NULL;
	/* The session (in the path), asked of each node back to back: the
	 * same record and the same live figures, the owner's. */
	for (int i = 0; i < NODES; i++) {
		const struct client_daemon *d = &cl.d[i];
		char path[256];
		snprintf(path, sizeof(path), "/sessions/%s", id);
		client_call(d, "GET", path, key, NULL, &r);
		CHECK_STATUS(&r, 200);
		json_object_del(r.json, "lastActive");
		char *info = json_dumps(r.json, JSON_SORT_KEYS);
		client_resp_free(&r);
		if (first_info == NULL)
			first_info = info;
		else {
			CHECK_STR_EQ(info, first_info);
			free(info);
		}
	}

	for (int i = 0; i < NODES; i++) {
		const struct client_daemon *d = &cl.d[i];
		/* buntime: execute (the session in the body) */
		json_t *e = json_pack("{s:s,s:s}", "sessionId", id, "command",
				      "echo through; wc -c < /workspace/big.txt");
		client_call_json(d, "POST", "/execute", key, e, &r);
		json_decref(e);
		CHECK_STATUS(&r, 200);
		char *x = exec_core(&r);
		client_resp_free(&r);
		if (first_exec == NULL)
			first_exec = x;
		else {
			CHECK_STR_EQ(x, first_exec);
			free(x);
		}
		CHECK(strstr(first_exec, "through\\n307200\\n") != NULL);

		/* the file (the session in the query) */
		char path[256];
		snprintf(path, sizeof(path), "/files/read?sessionId=%s&path=/workspace/big.txt",
			 id);
		client_call(d, "GET", path, key, NULL, &r);
		CHECK_STATUS(&r, 200);
		CHECK_STR_EQ(client_json_str(r.json, "content"), content);
		client_resp_free(&r);

		/* a stream of events */
		e = json_pack("{s:s,s:s,s:b}", "sessionId", id, "command",
			      "echo one; sleep 0.2; echo two >&2", "stream", 1);
		client_call_json(d, "POST", "/execute", key, e, &r);
		json_decref(e);
		CHECK_MSG(r.status == 200, "stream via %s: %ld %s", node_names[i], r.status,
			  r.body);
		char ct[128];
		CHECK(client_resp_header(&r, "Content-Type", ct, sizeof(ct)) != NULL);
		CHECK(strncmp(ct, "text/event-stream", 17) == 0);
		CHECK(strstr(r.body, "one") != NULL && strstr(r.body, "two") != NULL);
		char *ev = event_names(r.body);
		client_resp_free(&r);
		if (first_events == NULL)
			first_events = ev;
		else {
			CHECK_STR_EQ(ev, first_events);
			free(ev);
		}

		/* the InstaVM dialect: the session in its body, the key in
		 * X-API-Key */
		char kh[CLIENT_KEY_MAX + 16];
		snprintf(kh, sizeof(kh), "X-API-Key: %s", key);
		const char *hs[] = {kh, NULL};
		char body[256];
		snprintf(
		    body, sizeof(body),
		    "{\"session_id\":\"%s\",\"command\":\"print(6*7)\",\"language\":\"python\"}",
		    id);
		struct client_req iv = {
		    .method = "POST", .path = "/execute", .body = body, .headers = hs};
		CHECK(client_request(d, &iv, &r) == 0);
		CHECK_STATUS(&r, 200);
		CHECK(strstr(r.body, "42") != NULL);
		client_resp_free(&r);
	}

	/* InstaVM's multipart upload through each node (the session named by
	 * a form part, the file streamed after it), read back through the
	 * next one. */
	for (int i = 0; i < NODES; i++) {
		char remote[64], data[64];
		snprintf(remote, sizeof(remote), "/workspace/up-%d.txt", i);
		snprintf(data, sizeof(data), "uploaded through %s\n", node_names[i]);
		iv_daemon = &cl.d[i];
		iv_upload_file(key, id, remote, data, 0, &r);
		CHECK_MSG(r.status == 200, "upload via %s: %ld %s", node_names[i], r.status,
			  r.body);
		client_resp_free(&r);
		iv_daemon = &cl.d[(i + 1) % NODES];
		size_t got = 0;
		char *back = iv_download_ok(key, id, remote, &got);
		CHECK_STR_EQ(back, data);
		free(back);
	}
	iv_daemon = NULL;

	/* The preview, through every node: the owner relays it into the
	 * session, a peer to the owner first. */
	json_t *srv = json_pack(
	    "{s:s,s:s}", "sessionId", id, "command",
	    "nohup bun -e 'Bun.serve({port: 8080, fetch(req, s) { if (s.upgrade(req)) return; "
	    "return new Response(\"pv-ok \" + (req.headers.get(\"x-bunker-relay\") ?? \"none\")); "
	    "}, websocket: {message(ws, m) { ws.send(m); }}})' "
	    "> /dev/null 2>&1 & sleep 1");
	client_call_json(&cl.d[0], "POST", "/execute", key, srv, &r);
	json_decref(srv);
	CHECK_STATUS(&r, 200);
	client_resp_free(&r);
	char host[160];
	snprintf(host, sizeof(host), "Host: ses-%s." PREVIEW_DOMAIN, id + 4);
	for (int i = 0; i < NODES; i++) {
		/* A connection of its own: a preview's connection is the
		 * preview's (a later API request on it would get a 307). */
		const char *hs[] = {host, "Connection: close", NULL};
		struct client_req pv = {.method = "GET", .path = "/", .headers = hs};
		double t0 = client_now();
		for (;;) {
			CHECK(client_request(&cl.d[i], &pv, &r) == 0);
			if (r.status == 200 || client_now() - t0 > 10)
				break;
			client_resp_free(&r);
			usleep(200 * 1000);
		}
		/* The hop's header (the cluster's secret) never reaches the
		 * app. */
		CHECK_MSG(r.status == 200 && strcmp(r.body, "pv-ok none") == 0,
			  "preview via %s: %ld %s", node_names[i], r.status, r.body);
		client_resp_free(&r);
		/* A client's own is refused. */
		const char *forged[] = {host, "Connection: close", "X-Bunker-Relay: 1", NULL};
		struct client_req fr = {.method = "GET", .path = "/", .headers = forged};
		CHECK(client_request(&cl.d[i], &fr, &r) == 0);
		CHECK_MSG(r.status == 403, "forged preview hop via %s: %ld %s", node_names[i],
			  r.status, r.body);
		client_resp_free(&r);
	}

	/* A WebSocket through every node: the upgrade and an echo. */
	for (int i = 0; i < NODES; i++) {
		int fd = raw_dial(cl.d[i].port, NULL, 0);
		CHECK(fd >= 0);
		char hs[512];
		int n = snprintf(
		    hs, sizeof(hs),
		    "GET /ws HTTP/1.1\r\n%s\r\nUpgrade: websocket\r\n"
		    "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
		    "Sec-WebSocket-Version: 13\r\n\r\n",
		    host);
		CHECK(raw_send(fd, hs, (size_t)n, 3000) == (size_t)n);
		char buf[1024];
		enum raw_end end;
		size_t got = raw_read(fd, buf, sizeof(buf), "\r\n\r\n", 5000, &end);
		CHECK_MSG(got > 0 && raw_status(buf) == 101, "upgrade via %s: %.*s", node_names[i],
			  (int)got, buf);
		/* A masked text frame "hi" (RFC 6455 5.2); the echo comes unmasked. */
		const unsigned char mask[4] = {1, 2, 3, 4};
		unsigned char frame[8] = {0x81,	   0x82,    mask[0],	   mask[1],
					  mask[2], mask[3], 'h' ^ mask[0], 'i' ^ mask[1]};
		CHECK(raw_send(fd, frame, sizeof(frame), 3000) == sizeof(frame));
		got = raw_read(fd, buf, sizeof(buf), "hi", 5000, &end);
		CHECK_MSG(got >= 4 && (unsigned char)buf[0] == 0x81 && buf[1] == 2 &&
			      memcmp(buf + 2, "hi", 2) == 0,
			  "echo via %s: %zu bytes", node_names[i], got);
		close(fd);
	}

	/* The client's connections that carried a preview answer the next
	 * API request with a 307 to a connection of its own (the front door
	 * binds a connection to its first destination): let them. */
	for (int i = 0; i < NODES; i++) {
		client_call(&cl.d[i], "GET", "/healthz", NULL, NULL, &r);
		client_resp_free(&r);
	}
	/* A delete through one node; gone through every node. */
	char path[96];
	snprintf(path, sizeof(path), "/sessions/%s", id);
	client_call(&cl.d[2], "DELETE", path, key, NULL, &r);
	CHECK_STATUS(&r, 200);
	client_resp_free(&r);
	for (int i = 0; i < NODES; i++) {
		client_call(&cl.d[i], "GET", path, key, NULL, &r);
		CHECK_STATUS(&r, 404);
		client_resp_free(&r);
	}
	free(first_exec);
	free(first_events);
	free(first_info);
	free(content);
	free(id);
	cluster_stop(&cl);
}

TEST_TIMEOUT(creates_are_placed_on_the_node_with_room, 240)
{
	struct cluster cl;
	cluster_start(&cl);
	char key[CLIENT_KEY_MAX];
	CHECK(client_key_create(&cl.d[0], "paid", key, sizeof(key)) == 0);
	/* Three creates through A: each goes to the node that owns the
	 * fewest, so each node gets one. */
	char *ids[NODES];
	for (int i = 0; i < NODES; i++)
		ids[i] = create_via(&cl.d[0], key);
	json_t *nodes = nodes_via(&cl.d[1]);
	for (int i = 0; i < NODES; i++)
		CHECK_MSG(owned_by(nodes, node_names[i]) == 1, "%s owns %lld", node_names[i],
			  owned_by(nodes, node_names[i]));
	json_decref(nodes);
	for (int i = 0; i < NODES; i++) {
		char *out = run_via(&cl.d[(i + 1) % NODES], key, ids[i], "echo x");
		CHECK_STR_EQ(out, "x\n");
		free(out);
	}
	for (int i = 0; i < NODES; i++)
		free(ids[i]);
	cluster_stop(&cl);
}

TEST_TIMEOUT(cap_and_idempotency_hold_across_nodes, 240)
{
	struct cluster cl;
	cluster_start(&cl);
	char key[CLIENT_KEY_MAX];
	CHECK(client_key_create_with(&cl.d[0], "paid",
				     (const char *const[]){"--max-sessions", "2", NULL}, key,
				     sizeof(key)) == 0);
	/* One Idempotency-Key sent through the three nodes at once: one
	 * session, and every answer that is a 200 is the same one. */
	const char *h[] = {"Idempotency-Key: cluster-1", NULL};
	int fds[NODES][2];
	pid_t kids[NODES];
	for (int i = 0; i < NODES; i++) {
		CHECK(pipe(fds[i]) == 0);
		kids[i] = fork();
		CHECK(kids[i] >= 0);
		if (kids[i] == 0) {
			struct client_req req = {.method = "POST",
						 .path = "/sessions/create",
						 .key = key,
						 .body = "{}",
						 .headers = h};
			struct client_resp r = {0};
			client_request(&cl.d[i], &req, &r);
			dprintf(fds[i][1], "%ld %s", r.status,
				r.status == 200 ? client_json_str(r.json, "sessionId") : "-");
			_exit(0);
		}
		close(fds[i][1]);
	}
	char first[64] = "";
	int ok = 0;
	for (int i = 0; i < NODES; i++) {
		char buf[128] = "";
		ssize_t n = read(fds[i][0], buf, sizeof(buf) - 1);
		close(fds[i][0]);
		waitpid(kids[i], NULL, 0);
		CHECK(n > 0);
		buf[n] = '\0';
		long status = strtol(buf, NULL, 10);
		CHECK_MSG(status == 200 || status == 409, "create via %s: %s", node_names[i], buf);
		if (status == 200) {
			ok++;
			const char *sid = strchr(buf, ' ') + 1;
			if (first[0] == '\0')
				snprintf(first, sizeof(first), "%s", sid);
			CHECK_STR_EQ(sid, first);
		}
	}
	CHECK(ok >= 1);
	struct client_resp r = {0};
	for (int i = 0; i < NODES; i++) {
		client_call(&cl.d[i], "GET", "/sessions", key, NULL, &r);
		CHECK_MSG(r.status == 200 &&
			      json_integer_value(json_object_get(r.json, "total")) == 1,
			  "list via %s: %ld %s", node_names[i], r.status, r.body);
		client_resp_free(&r);
	}
	/* The cap of 2: a second session through B, then C is refused. */
	char *second = create_via(&cl.d[1], key);
	client_call(&cl.d[2], "POST", "/sessions/create", key, "{}", &r);
	CHECK_MSG(r.status == 429 && strstr(r.body, "concurrent session limit") != NULL,
		  "third create via C: %ld %s", r.status, r.body);
	client_resp_free(&r);
	free(second);
	cluster_stop(&cl);
}

/* A key's requests are counted wherever they come: its budget of a
 * minute taken through the three nodes, the next request is refused
 * through each of them, and a request relayed to a session's owner is
 * counted once, at the node that took it. */
TEST_TIMEOUT(a_keys_rate_limit_holds_across_nodes, 240)
{
	struct cluster cl;
	cluster_start(&cl);
	char key[CLIENT_KEY_MAX];
	CHECK(client_key_create_with(&cl.d[0], "paid", (const char *const[]){"--rpm", "6", NULL},
				     key, sizeof(key)) == 0);
	/* A session of A's, asked through B: one request of the six. */
	char *id = create_via(&cl.d[0], key);
	char path[96];
	snprintf(path, sizeof(path), "/sessions/%s", id);
	struct client_resp r = {0};
	client_call(&cl.d[1], "GET", path, key, NULL, &r);
	CHECK_STATUS(&r, 200);
	client_resp_free(&r);
	for (int i = 0; i < 4; i++) {
		client_call(&cl.d[i % NODES], "GET", "/sessions", key, NULL, &r);
		CHECK_MSG(r.status == 200, "request %d via %s: %ld %s", i + 3,
			  node_names[i % NODES], r.status, r.body);
		char left[16];
		CHECK(client_resp_header(&r, "X-RateLimit-Remaining", left, sizeof(left)) != NULL);
		CHECK_INT_EQ(atoi(left), 3 - i);
		client_resp_free(&r);
	}
	for (int i = 0; i < NODES; i++) {
		client_call(&cl.d[i], "GET", "/sessions", key, NULL, &r);
		CHECK_MSG(r.status == 429 && strstr(r.body, "rate limit of 6 requests") != NULL,
			  "over the limit via %s: %ld %s", node_names[i], r.status, r.body);
		char retry[16];
		CHECK(client_resp_header(&r, "Retry-After", retry, sizeof(retry)) != NULL);
		CHECK(atoi(retry) >= 1);
		client_resp_free(&r);
	}
	free(id);
	cluster_stop(&cl);
}

TEST_TIMEOUT(a_restarted_node_leaves_its_peers_sessions_alone, 300)
{
	struct cluster cl;
	cluster_start(&cl);
	char key[CLIENT_KEY_MAX];
	CHECK(client_key_create(&cl.d[0], "paid", key, sizeof(key)) == 0);
	/* Created through B, which owns none yet: B's. */
	char *id = create_via(&cl.d[1], key);
	json_t *nodes = nodes_via(&cl.d[0]);
	CHECK_INT_EQ(owned_by(nodes, "node-b"), 1);
	json_decref(nodes);
	char *out = run_via(&cl.d[1], key, id,
			    "echo kept > /workspace/f; nohup sleep 600 "
			    "> /dev/null 2>&1 & echo started");
	CHECK_STR_EQ(out, "started\n");
	free(out);
	/* An asynchronous execution of B's runs while A restarts. */
	char kh[CLIENT_KEY_MAX + 16];
	snprintf(kh, sizeof(kh), "X-API-Key: %s", key);
	const char *hs[] = {kh, NULL};
	char body[256];
	snprintf(body, sizeof(body),
		 "{\"session_id\":\"%s\",\"command\":\"sleep 6; echo late\","
		 "\"language\":\"bash\"}",
		 id);
	struct client_req sub = {
	    .method = "POST", .path = "/execute_async", .body = body, .headers = hs};
	struct client_resp r = {0};
	CHECK(client_request(&cl.d[1], &sub, &r) == 0);
	CHECK_STATUS(&r, 200);
	char task[64];
	snprintf(task, sizeof(task), "%s", client_must_str(r.json, "task_id", r.body));
	client_resp_free(&r);

	int status = client_daemon_halt(&cl.d[0], SIGTERM);
	CHECK_MSG(status == 0, "node-a exited with status 0x%x", status);
	CHECK(client_daemon_start(&cl.d[0], cl.argv[0]) == 0);

	/* B's session is still B's, awake, its process running and its
	 * task finishing, whichever node is asked. */
	nodes = nodes_via(&cl.d[0]);
	CHECK_INT_EQ(owned_by(nodes, "node-b"), 1);
	CHECK_INT_EQ(owned_by(nodes, "node-a"), 0);
	json_decref(nodes);
	char path[128];
	snprintf(path, sizeof(path), "/v1/executions/%s", task);
	double t0 = client_now();
	json_t *t = NULL;
	for (;;) {
		struct client_req get = {.method = "GET", .path = path, .headers = hs};
		CHECK(client_request(&cl.d[0], &get, &r) == 0);
		CHECK_STATUS(&r, 200);
		bool done = json_is_true(json_object_get(r.json, "is_complete"));
		if (done || client_now() - t0 > 30) {
			t = json_incref(r.json);
			client_resp_free(&r);
			break;
		}
		client_resp_free(&r);
		usleep(200 * 1000);
	}
	char *text = json_dumps(t, 0);
	CHECK_MSG(strcmp(client_must_str(t, "status", text), "completed") == 0, "task: %s", text);
	CHECK_MSG(strstr(client_must_str(t, "serialized_stdout", text), "late") != NULL, "task: %s",
		  text);
	free(text);
	json_decref(t);
	for (int i = 0; i < NODES; i++) {
		out = run_via(&cl.d[i], key, id, "cat /workspace/f; pgrep -x sleep | wc -l");
		CHECK_STR_EQ(out, "kept\n1\n");
		free(out);
	}
	free(id);
	cluster_stop(&cl);
}

TEST_TIMEOUT(operators_read_the_nodes_and_tenants_cannot, 240)
{
	struct cluster cl;
	cluster_start(&cl);
	char key[CLIENT_KEY_MAX];
	CHECK(client_key_create(&cl.d[0], "paid", key, sizeof(key)) == 0);
	struct client_resp r = {0};
	client_call(&cl.d[1], "GET", "/v1/cluster/nodes", NULL, NULL, &r);
	CHECK_STATUS(&r, 401);
	client_resp_free(&r);
	client_call(&cl.d[1], "GET", "/v1/cluster/nodes", key, NULL, &r);
	CHECK_ERROR(&r, 403, "forbidden");
	client_resp_free(&r);
	json_t *nodes = nodes_via(&cl.d[2]);
	CHECK_INT_EQ((long long)json_array_size(nodes), NODES);
	size_t i;
	json_t *n;
	json_array_foreach (nodes, i, n) {
		CHECK(json_is_true(json_object_get(n, "alive")));
		CHECK(json_integer_value(json_object_get(n, "freeMemoryMb")) > 0);
		char want[64];
		snprintf(want, sizeof(want), "http://127.0.0.1:%d", cl.d[i].port);
		CHECK_STR_EQ(json_string_value(json_object_get(n, "advertise")), want);
	}
	json_decref(nodes);
	client_call(&cl.d[0], "GET", "/metrics", NULL, NULL, &r);
	CHECK_MSG(r.status == 200 &&
		      strstr(r.body, "bunker_cluster_node_up{node=\"node-c\"} 1") != NULL,
		  "%s", r.body);
	client_resp_free(&r);
	cluster_stop(&cl);
}

TEST_TIMEOUT(a_client_cannot_pass_for_a_node, 240)
{
	struct cluster cl;
	cluster_start(&cl);
	char key[CLIENT_KEY_MAX];
	CHECK(client_key_create(&cl.d[0], "paid", key, sizeof(key)) == 0);
	char *id = create_via(&cl.d[0], key);
	/* With a made-up relay header, every node refuses the request, the
	 * owner included. */
	char path[96];
	snprintf(path, sizeof(path), "/sessions/%s", id);
	const char *forged[] = {"X-Bunker-Relay: 1", NULL};
	const char *guessed[] = {"X-Bunker-Relay: " OPERATOR_TOKEN "x", NULL};
	for (int i = 0; i < NODES; i++) {
		for (int k = 0; k < 2; k++) {
			struct client_req req = {.method = "GET",
						 .path = path,
						 .key = key,
						 .headers = k ? guessed : forged};
			struct client_resp r = {0};
			CHECK(client_request(&cl.d[i], &req, &r) == 0);
			CHECK_ERROR(&r, 403, "forbidden");
			client_resp_free(&r);
		}
	}
	free(id);
	cluster_stop(&cl);
}

/* Waits (at most secs) until no node owns a session: every one asleep and
 * released. */
static void wait_all_released(struct cluster *cl, double secs)
{
	double t0 = client_now();
	for (;;) {
		json_t *nodes = nodes_via(&cl->d[0]);
		long long owned = 0;
		for (int i = 0; i < NODES; i++)
			owned +=
			    owned_by(nodes, node_names[i]) > 0 ? owned_by(nodes, node_names[i]) : 0;
		json_decref(nodes);
		if (owned == 0)
			return;
		CHECK_MSG(client_now() - t0 < secs, "sessions still owned after %.0f s", secs);
		usleep(250 * 1000);
	}
}

/* Removes a test's shared snapshot directory, once its nodes stopped. */
static void snap_dir_remove(const char *snap)
{
	char cmd[PATH_MAX + 16];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", snap);
	CHECK(system(cmd) == 0);
}

TEST_TIMEOUT(sleeping_sessions_wake_on_any_node_and_outlive_theirs, 300)
{
	char snap[] = "/tmp/bk-cluster-snap-XXXXXX";
	CHECK(mkdtemp(snap) != NULL);
	const char *extra[] = {"--snapshot-dir",
			       snap,
			       "--snapshots-shared",
			       "--idle-after",
			       "1",
			       "--deep-sleep-after",
			       "2",
			       NULL};
	struct cluster cl;
	cluster_start_with(&cl, extra);
	char key[CLIENT_KEY_MAX];
	CHECK(client_key_create(&cl.d[0], "paid", key, sizeof(key)) == 0);
	char *id = create_via(&cl.d[0], key);
	char *out = run_via(&cl.d[1], key, id, "echo kept > /workspace/f; echo ok");
	CHECK_STR_EQ(out, "ok\n");
	free(out);

	/* Asleep on the shared directory, released by A: woken by C, which
	 * owns it from then on. */
	wait_all_released(&cl, 30);
	out = run_via(&cl.d[2], key, id, "cat /workspace/f");
	CHECK_STR_EQ(out, "kept\n");
	free(out);
	json_t *nodes = nodes_via(&cl.d[1]);
	CHECK_INT_EQ(owned_by(nodes, "node-c"), 1);
	CHECK_INT_EQ(owned_by(nodes, "node-a"), 0);
	json_decref(nodes);

	/* Asleep again, then C dies: B wakes it, with its files. */
	wait_all_released(&cl, 30);
	client_daemon_halt(&cl.d[2], SIGKILL);
	out = run_via(&cl.d[1], key, id, "cat /workspace/f; echo more >> /workspace/f");
	CHECK_STR_EQ(out, "kept\n");
	free(out);
	/* C back: it takes nothing that B runs, and relays to B. */
	CHECK(client_daemon_start(&cl.d[2], cl.argv[2]) == 0);
	nodes = nodes_via(&cl.d[2]);
	CHECK_INT_EQ(owned_by(nodes, "node-b"), 1);
	CHECK_INT_EQ(owned_by(nodes, "node-c"), 0);
	json_decref(nodes);
	out = run_via(&cl.d[2], key, id, "cat /workspace/f");
	CHECK_STR_EQ(out, "kept\nmore\n");
	free(out);

	/* An awake session of a node that dies is that node's while its
	 * lease holds: 503 through the others, then, back in time, there
	 * with its files (a takeover after the lease is the next test's). */
	char *awake = create_via(&cl.d[2], key); /* C owns none: C's */
	out = run_via(&cl.d[2], key, awake, "echo mine > /workspace/g; echo ok");
	CHECK_STR_EQ(out, "ok\n");
	free(out);
	nodes = nodes_via(&cl.d[0]);
	CHECK_INT_EQ(owned_by(nodes, "node-c"), 1);
	json_decref(nodes);
	client_daemon_halt(&cl.d[2], SIGKILL);
	json_t *e = json_pack("{s:s,s:s}", "sessionId", awake, "command", "cat /workspace/g");
	struct client_resp r = {0};
	client_call_json(&cl.d[0], "POST", "/execute", key, e, &r);
	CHECK_MSG(r.status == 503, "execute on a dead node's awake session: %ld %s", r.status,
		  r.body);
	client_resp_free(&r);
	CHECK(client_daemon_start(&cl.d[2], cl.argv[2]) == 0);
	client_call_json(&cl.d[0], "POST", "/execute", key, e, &r);
	json_decref(e);
	CHECK_MSG(r.status == 200 && strcmp(client_json_str(r.json, "stdout"), "mine\n") == 0,
		  "after its node came back: %ld %s", r.status, r.body);
	client_resp_free(&r);
	free(awake);
	free(id);
	cluster_stop(&cl);
	snap_dir_remove(snap);
}

/* Which node owns the test's only session, as node ask sees the nodes'
 * counts: its index, or -1. */
static int owner_of(const struct cluster *cl, int ask)
{
	json_t *nodes = nodes_via(&cl->d[ask]);
	int who = -1;
	for (int i = 0; i < NODES; i++)
		if (owned_by(nodes, node_names[i]) == 1)
			who = i;
	json_decref(nodes);
	return who;
}

/* What node d holds for requests with a key (GET /metrics). */
static double held_for_keys(const struct client_daemon *d)
{
	static const char series[] = "\nbunker_client_memory_held_bytes{budget=\"keys\"} ";
	struct client_resp r = {0};
	client_call(d, "GET", "/metrics", NULL, NULL, &r);
	CHECK_MSG(r.status == 200, "GET /metrics: %ld", r.status);
	const char *at = strstr(r.body, series);
	CHECK_MSG(at != NULL, "no held bytes in /metrics");
	double v = strtod(at + strlen(series), NULL);
	client_resp_free(&r);
	return v;
}

/* A request relayed to the owner holds a read and a replay buffer on the
 * node the client reached (128 KiB), charged to the key from the hop's
 * opening: stalled relays count toward the key's share as its own
 * bodies do (at least 100 KiB each is asked here, 0 before). */
TEST_TIMEOUT(a_stalled_relay_is_charged_to_its_key, 240)
{
	enum { N = 8, HOP = 100 * 1024 };
	struct cluster cl;
	cluster_start(&cl);
	char key[CLIENT_KEY_MAX];
	CHECK(client_key_create(&cl.d[0], "paid", key, sizeof(key)) == 0);
	char *id = create_via(&cl.d[0], key);
	int owner = owner_of(&cl, 0);
	CHECK_MSG(owner >= 0, "no node owns the new session");
	const struct client_daemon *via = &cl.d[(owner + 1) % NODES];
	char head[512];
	snprintf(head, sizeof(head),
		 "POST /sessions/%s/network HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
		 "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{",
		 id, key);
	double before = held_for_keys(via), held = before;
	int fds[N];
	for (int i = 0; i < N; i++) {
		fds[i] = raw_dial(via->port, "127.0.0.1", 0);
		CHECK(fds[i] >= 0);
		CHECK(raw_send(fds[i], head, strlen(head), 2000) == strlen(head));
	}
	double t0 = client_now();
	while ((held = held_for_keys(via)) < before + (double)N * HOP && client_now() - t0 < 10)
		usleep(100 * 1000);
	for (int i = 0; i < N; i++)
		close(fds[i]);
	fprintf(stderr, "    %d relays stalled in their bodies: held for keys %.0f -> %.0f kB\n", N,
		before / 1024, held / 1024);
	CHECK_MSG(held >= before + (double)N * HOP, "%d stalled relays held %.0f kB, not %d kB", N,
		  (held - before) / 1024, N * HOP / 1024);
	/* Closed, they hold nothing. */
	t0 = client_now();
	while (held_for_keys(via) > before + 64 * 1024 && client_now() - t0 < 10)
		usleep(100 * 1000);
	CHECK(held_for_keys(via) <= before + 64 * 1024);
	free(id);
	cluster_stop(&cl);
}

/* A cluster whose nodes checkpoint every second into snap (a fresh
 * directory), with extra flags more (may be NULL), a key of plan paid in
 * key, and one session (returned, caller frees) holding
 * /workspace/f = "kept", checkpointed since, with first_cmd run in it
 * too (its stdout must be "ok"); *owner owns it, *other is another node. */
static char *checkpointed_session(struct cluster *cl, char *snap, const char *more,
				  const char *first_cmd, char *key, int *owner, int *other)
{
	CHECK(mkdtemp(snap) != NULL);
	const char *extra[] = {
	    "--snapshot-dir", snap, "--snapshots-shared", "--checkpoint-every", "1", more, NULL};
	cluster_start_with(cl, extra);
	CHECK(client_key_create(&cl->d[0], "paid", key, CLIENT_KEY_MAX) == 0);
	char *id = create_via(&cl->d[0], key);
	*owner = owner_of(cl, 0);
	CHECK_MSG(*owner >= 0, "no node owns the new session");
	*other = (*owner + 1) % NODES;
	char cmd[256];
	snprintf(cmd, sizeof(cmd), "echo kept > /workspace/f; %s", first_cmd);
	char *out = run_via(&cl->d[*other], key, id, cmd);
	CHECK_STR_EQ(out, "ok\n");
	free(out);
	/* A checkpoint that began after the write's answer. */
	struct timespec acked;
	clock_gettime(CLOCK_REALTIME, &acked);
	char ckpt[PATH_MAX];
	snprintf(ckpt, sizeof(ckpt), "%s/%s.ckpt.tar.zst", snap, id);
	bool after = false;
	for (int i = 0; i < 200 && !after; i++) {
		struct stat st;
		after = stat(ckpt, &st) == 0 &&
			(st.st_mtim.tv_sec > acked.tv_sec ||
			 (st.st_mtim.tv_sec == acked.tv_sec && st.st_mtim.tv_nsec > acked.tv_nsec));
		if (!after)
			usleep(50 * 1000);
	}
	CHECK_MSG(after, "no checkpoint of %s after the write in 10 s", id);
	return id;
}

/* Polls id through d until it answers other than 503 (its owner's lease
 * lapsed, d took it over): the answer must be its checkpoint's file. */
static void taken_over_via(const struct client_daemon *d, const char *key, const char *id,
			   double t0)
{
	json_t *e = json_pack("{s:s,s:s}", "sessionId", id, "command", "cat /workspace/f");
	struct client_resp r = {0};
	for (;;) {
		client_call_json(d, "POST", "/execute", key, e, &r);
		if (r.status != 503)
			break;
		CHECK_MSG(client_now() - t0 < 60, "still 503 %.0f s after the owner went: %s",
			  client_now() - t0, r.body);
		client_resp_free(&r);
		usleep(250 * 1000);
	}
	CHECK_MSG(r.status == 200 && strcmp(client_json_str(r.json, "stdout"), "kept\n") == 0,
		  "taken over: %ld %s", r.status, r.body);
	client_resp_free(&r);
	json_decref(e);
}

/* The old owner relays to the new one, whose files are whole. */
static void old_owner_relays(struct cluster *cl, const char *key, const char *id, int owner,
			     int other)
{
	CHECK_INT_EQ(owner_of(cl, other), other);
	char *out = run_via(&cl->d[owner], key, id, "cat /workspace/f; echo more >> /workspace/f");
	CHECK_STR_EQ(out, "kept\n");
	free(out);
	out = run_via(&cl->d[other], key, id, "cat /workspace/f");
	CHECK_STR_EQ(out, "kept\nmore\n");
	free(out);
	CHECK_INT_EQ(owner_of(cl, other), other);
}

/* The stated guarantee (docs/ARCHITECTURE.md, "Several nodes"): a write
 * acknowledged before a checkpoint of its session began survives the
 * death of the session's node awake. Its node killed, the session answers
 * 503 through the others while the dead node's lease holds, then a
 * survivor takes it over from its checkpoint, with that write; the dead
 * node, back, owns nothing, removes nothing the survivor reads, and
 * relays to it. */
TEST_TIMEOUT(awake_sessions_of_a_dead_node_continue_from_their_checkpoint, 300)
{
	char snap[] = "/tmp/bk-cluster-snap-XXXXXX";
	struct cluster cl;
	char key[CLIENT_KEY_MAX];
	int owner, other;
	char *id = checkpointed_session(&cl, snap, NULL, "echo ok", key, &owner, &other);

	client_daemon_halt(&cl.d[owner], SIGKILL);
	double t0 = client_now();
	json_t *e = json_pack("{s:s,s:s}", "sessionId", id, "command", "cat /workspace/f");
	struct client_resp r = {0};
	client_call_json(&cl.d[other], "POST", "/execute", key, e, &r);
	CHECK_MSG(r.status == 503, "while the dead node's lease holds: %ld %s", r.status, r.body);
	client_resp_free(&r);
	json_decref(e);
	taken_over_via(&cl.d[other], key, id, t0);
	fprintf(stderr, "taken over %.1f s after its node's kill -9\n", client_now() - t0);
	CHECK_INT_EQ(owner_of(&cl, other), other);

	/* The dead node back: it owns nothing, and relays to the survivor,
	 * whose files are whole (its restart removed only its own disk). */
	CHECK(client_daemon_start(&cl.d[owner], cl.argv[owner]) == 0);
	old_owner_relays(&cl, key, id, owner, other);
	free(id);
	cluster_stop(&cl);
	snap_dir_remove(snap);
}

/* The host pid of a process whose command line is "sleep <arg>", or 0. */
static pid_t sleeper_pid(const char *arg)
{
	DIR *d = opendir("/proc");
	pid_t found = 0;
	struct dirent *de;
	while (d && found == 0 && (de = readdir(d)) != NULL) {
		char path[300], cmd[256] = {0};
		snprintf(path, sizeof(path), "/proc/%s/cmdline", de->d_name);
		FILE *f = fopen(path, "re");
		if (f == NULL)
			continue;
		size_t n = fread(cmd, 1, sizeof(cmd) - 1, f);
		fclose(f);
		if (n > 6 && strcmp(cmd, "sleep") == 0 && strcmp(cmd + 6, arg) == 0)
			found = (pid_t)atoi(de->d_name);
	}
	if (d)
		closedir(d);
	return found;
}

/* Whether pid runs (exists and is no zombie). */
static bool runs(pid_t pid)
{
	char path[64], st[512] = {0};
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	FILE *f = fopen(path, "re");
	if (f == NULL)
		return false;
	size_t n = fread(st, 1, sizeof(st) - 1, f);
	fclose(f);
	const char *close_paren = strrchr(st, ')');
	return n > 0 && close_paren && close_paren[1] == ' ' && close_paren[2] != 'Z';
}

/* Two nodes never run one session: a node that stops (SIGSTOP: alive,
 * its sandboxes too, but it renews no lease) has its session's processes
 * ended by the session's own init before its lease lapses, so that when
 * a peer takes the session over from its checkpoint the old processes are
 * gone; back (SIGCONT), the node drops what was taken over (its sandbox,
 * its disk, its registry entry) and relays to the peer. */
TEST_TIMEOUT(a_stopped_node_ends_its_sessions_before_a_peer_takes_them_over, 300)
{
	char snap[] = "/tmp/bk-cluster-snap-XXXXXX";
	struct cluster cl;
	char key[CLIENT_KEY_MAX];
	int owner, other;
	char arg[32], cmd[160];
	snprintf(arg, sizeof(arg), "3600.%d", (int)getpid());
	snprintf(cmd, sizeof(cmd), "nohup sleep %s >/dev/null 2>&1 & echo ok", arg);
	char *id = checkpointed_session(&cl, snap, NULL, cmd, key, &owner, &other);
	pid_t sleeper = sleeper_pid(arg);
	CHECK_MSG(sleeper > 0, "the session's background process is not to be found");

	CHECK(kill(cl.d[owner].pid, SIGSTOP) == 0);
	taken_over_via(&cl.d[other], key, id, client_now());
	/* Taken over, and the old sandbox ended before. */
	CHECK_MSG(!runs(sleeper), "the stopped node's sandbox still runs after the takeover");
	CHECK_INT_EQ(owner_of(&cl, other), other);

	/* Back: it drops what it held of the session and relays to the peer. */
	CHECK(kill(cl.d[owner].pid, SIGCONT) == 0);
	long long awake = -1;
	for (int i = 0; i < 120; i++) {
		json_t *nodes = nodes_via(&cl.d[other]);
		size_t k;
		json_t *n;
		json_array_foreach (nodes, k, n) {
			if (strcmp(json_string_value(json_object_get(n, "name")),
				   node_names[owner]) == 0)
				awake = json_integer_value(json_object_get(n, "sessionsAwake"));
		}
		json_decref(nodes);
		if (awake == 0)
			break;
		usleep(250 * 1000);
	}
	CHECK_MSG(awake == 0, "the node back still holds %lld sessions awake", awake);
	old_owner_relays(&cl, key, id, owner, other);
	free(id);
	cluster_stop(&cl);
	snap_dir_remove(snap);
}

/* The lease of a frozen sandbox runs out while it is frozen: the thaw
 * brings a fresh one first, so an idle session of a node that takes
 * sessions over wakes with its processes, however long it slept. */
TEST_TIMEOUT(an_idle_session_keeps_its_processes_past_its_lease, 240)
{
	char snap[] = "/tmp/bk-cluster-snap-XXXXXX";
	struct cluster cl;
	char key[CLIENT_KEY_MAX];
	int owner, other;
	char arg[32], cmd[160];
	snprintf(arg, sizeof(arg), "3601.%d", (int)getpid());
	snprintf(cmd, sizeof(cmd), "nohup sleep %s >/dev/null 2>&1 & echo ok", arg);
	/* Idle (frozen) after a second, then for longer than a lease. */
	const char *more = "--idle-after=1";
	char *id = checkpointed_session(&cl, snap, more, cmd, key, &owner, &other);
	sleep(CORE_FENCE_S + 4);
	snprintf(cmd, sizeof(cmd), "ps -eo args | grep -c '^sleep %s'", arg);
	char *out = run_via(&cl.d[other], key, id, cmd);
	CHECK_STR_EQ(out, "1\n");
	free(out);
	free(id);
	cluster_stop(&cl);
	snap_dir_remove(snap);
}

/* A child that executes `true` in ids (n of them) through the nodes of
 * via (nvia), round robin, every 20 ms until killed, and writes one byte per answer
 * on fd: 'o' for 200, 'u' for 503 (unavailable while a lease holds or a
 * takeover is under way), 'x' for anything else. */
static pid_t load_start(struct cluster *cl, const int *via, int nvia, char **ids, int n,
			const char *key, int fd)
{
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid > 0)
		return pid;
	for (unsigned i = 0;; i++) {
		json_t *e =
		    json_pack("{s:s,s:s}", "sessionId", ids[i % (unsigned)n], "command", "true");
		struct client_resp r = {0};
		client_call_json(&cl->d[via[i % (unsigned)nvia]], "POST", "/execute", key, e, &r);
		char c = r.status == 200 ? 'o' : r.status == 503 ? 'u' : 'x';
		if (c == 'x')
			fprintf(stderr, "load: %ld %s\n", r.status, r.body);
		client_resp_free(&r);
		json_decref(e);
		if (write(fd, &c, 1) != 1)
			_exit(0);
		/* About 50 a second: well under the plan's rate limit. */
		usleep(20 * 1000);
	}
}

/* The guarantee under load: sessions on three nodes, executions going
 * to all of them through the two that will survive, the third killed
 * (-9) meanwhile. Every request answers 200 or 503, none fails
 * otherwise or hangs; once the dead node's lease lapsed, every session
 * answers through each survivor, the dead node's with the file written
 * before their checkpoints; the dead node, back, serves them all by
 * relay. */
TEST_TIMEOUT(kill_9_under_load_loses_no_acknowledged_checkpointed_write, 300)
{
	enum { SESSIONS = 6 };
	char snap[] = "/tmp/bk-cluster-snap-XXXXXX";
	CHECK(mkdtemp(snap) != NULL);
	const char *extra[] = {"--snapshot-dir",     snap, "--snapshots-shared",
			       "--checkpoint-every", "1",  NULL};
	struct cluster cl;
	cluster_start_with(&cl, extra);
	char key[CLIENT_KEY_MAX];
	CHECK(client_key_create(&cl.d[0], "enterprise", key, sizeof(key)) == 0);
	char *ids[SESSIONS];
	int owners[SESSIONS];
	long long before[NODES] = {0};
	for (int i = 0; i < SESSIONS; i++) {
		ids[i] = create_via(&cl.d[i % NODES], key);
		json_t *nodes = nodes_via(&cl.d[0]);
		owners[i] = -1;
		for (int k = 0; k < NODES; k++) {
			long long now = owned_by(nodes, node_names[k]);
			if (now == before[k] + 1)
				owners[i] = k;
			before[k] = now;
		}
		json_decref(nodes);
		CHECK_MSG(owners[i] >= 0, "no node owns session %s", ids[i]);
		char cmd[64];
		snprintf(cmd, sizeof(cmd), "echo kept-%d > /workspace/f; echo ok", i);
		char *out = run_via(&cl.d[(i + 1) % NODES], key, ids[i], cmd);
		CHECK_STR_EQ(out, "ok\n");
		free(out);
	}
	int victim = owners[0];
	int via[2] = {(victim + 1) % NODES, (victim + 2) % NODES};
	/* Every write above is in a checkpoint that began after it. */
	sleep(3);

	int p[2];
	CHECK(pipe(p) == 0);
	pid_t load = load_start(&cl, via, 2, ids, SESSIONS, key, p[1]);
	close(p[1]);
	usleep(500 * 1000);
	client_daemon_halt(&cl.d[victim], SIGKILL);
	double t0 = client_now();
	for (int i = 0; i < SESSIONS; i++) {
		if (owners[i] != victim)
			continue;
		char want[32];
		snprintf(want, sizeof(want), "kept-%d\n", i);
		json_t *e =
		    json_pack("{s:s,s:s}", "sessionId", ids[i], "command", "cat /workspace/f");
		struct client_resp r = {0};
		for (;;) {
			client_call_json(&cl.d[via[i % 2]], "POST", "/execute", key, e, &r);
			if (r.status != 503)
				break;
			CHECK_MSG(client_now() - t0 < 60,
				  "%s still 503 %.0f s after its node died: %s", ids[i],
				  client_now() - t0, r.body);
			client_resp_free(&r);
			usleep(250 * 1000);
		}
		CHECK_MSG(r.status == 200 && strcmp(client_json_str(r.json, "stdout"), want) == 0,
			  "%s taken over: %ld %s", ids[i], r.status, r.body);
		client_resp_free(&r);
		json_decref(e);
	}
	fprintf(stderr, "every session of the dead node answered %.1f s after its kill -9\n",
		client_now() - t0);
	/* A second more of load on the sessions as they are now. */
	usleep(1000 * 1000);
	kill(load, SIGKILL);
	waitpid(load, NULL, 0);
	int ok = 0, unavailable = 0, other = 0;
	char c;
	while (read(p[0], &c, 1) == 1)
		c == 'o' ? ok++ : c == 'u' ? unavailable++ : other++;
	close(p[0]);
	fprintf(stderr, "load: %d answered, %d unavailable meanwhile, %d otherwise\n", ok,
		unavailable, other);
	CHECK_INT_EQ(other, 0);
	CHECK(ok > 0);
	for (int i = 0; i < SESSIONS; i++) {
		char want[32];
		snprintf(want, sizeof(want), "kept-%d\n", i);
		for (int k = 0; k < 2; k++) {
			char *out = run_via(&cl.d[via[k]], key, ids[i], "cat /workspace/f");
			CHECK_STR_EQ(out, want);
			free(out);
		}
	}
	/* The dead node back removes what it held of the sessions taken over
	 * (their disks, cgroups) and relays to their new owners. */
	CHECK(client_daemon_start(&cl.d[victim], cl.argv[victim]) == 0);
	for (int i = 0; i < SESSIONS; i++) {
		char want[32];
		snprintf(want, sizeof(want), "kept-%d\n", i);
		char *out = run_via(&cl.d[victim], key, ids[i], "cat /workspace/f");
		CHECK_STR_EQ(out, want);
		free(out);
		free(ids[i]);
	}
	cluster_stop(&cl);
	snap_dir_remove(snap);
}
