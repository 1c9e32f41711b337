/* bunkerd: the daemon. Parses flags, opens core/, serves api/ over http/,
 * and on SIGTERM or SIGINT stops serving and ends every sandbox (files are
 * kept for the next start). */
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "api/api.h"
#include "core/core.h"
#include "http/server.h"
#include "sandbox/sandbox.h"
#include "store/store.h"
#include "util/util.h"
#include "version.h"

static void usage(FILE *f)
{
	fputs("usage: bunkerd [options]\n"
	      "  --listen ADDR          address to listen on (127.0.0.1)\n"
	      "  --port N               port (8080)\n"
	      "  --data-dir DIR         store, sessions and images (/var/lib/bunker)\n"
	      "  --store URI            sqlite:PATH (DATA/bunker.db) or a PostgreSQL\n"
	      "                         connection URI, postgres://... (shared by nodes)\n"
	      "  --preview-domain D     host suffix of preview URLs (localhost:<port>)\n"
	      "  --preview-scheme S     scheme of preview URLs (http)\n"
	      "  --max-body BYTES       largest request body held in memory (104857600)\n"
	      "  --max-conns-per-client N  connections open at once from one address\n"
	      "                         (an IPv6 /64) (256)\n"
	      "  --head-timeout S       seconds a request head may take to arrive (10)\n"
	      "  --idle-timeout S       seconds a connection may stay idle, between\n"
	      "                         requests or with a stalled body or reader (60)\n"
	      "  --body-min-rate BYTES  slowest body accepted, bytes a second after the\n"
	      "                         head timeout (16384; 0: any)\n"
	      "  --pids-max N           processes per session (512)\n"
	      "  --output-memory-mb MB  executions' output the daemon holds at once, from\n"
	      "                         its first byte until its answer is sent (96)\n"
	      "  --output-key-memory-mb MB  what of it one API key may hold (32)\n"
	      "  --client-memory-mb MB  bodies being buffered and answers not yet read\n"
	      "                         the daemon holds for keys at once (128)\n"
	      "  --client-key-memory-mb MB  what of it one API key may hold (32)\n"
	      "  --warm-pool N          sandboxes kept started ahead of need (2; 0: none)\n"
	      "  --idle-after S         seconds without a request before a session is\n"
	      "                         frozen (300)\n"
	      "  --deep-sleep-after S   seconds without a request before its files are\n"
	      "                         saved and its processes ended (1800)\n"
	      "  --min-ttl S            shortest ttl a create may ask for (300)\n"
	      "  --init PATH            bunker-init binary (beside bunkerd)\n"
	      "  --bun PATH             Bun binary for the image (/opt/bunker/bun/bin/bun)\n"
	      "  --pids-budget N        processes the pids limits of running sessions may\n"
	      "                         add up to (half the kernel's pid_max/threads-max)\n"
	      "  --snapshot-dir DIR     where sleeping sessions' files go (DATA/snapshots)\n"
	      "  --snapshot-max-mb MB   what all snapshots may take (half their file system)\n"
	      "  --snapshot-min-free-mb MB  free space a save leaves on it (5% of it)\n"
	      "  --egress-net CIDR      IPv4 range of sessions' interfaces, a /16../22\n"
	      "                         (10.213.0.0/16)\n"
	      "  --dns-hosts FILE       for tests: \"ADDRESS NAME...\" lines the sessions'\n"
	      "                         resolver answers itself, asking no one (none)\n"
	      "  --dns-upstream A[:P]   the IPv4 nameserver the sessions' resolver asks,\n"
	      "                         over UDP and, for queries that came over TCP,\n"
	      "                         TCP (the first of /etc/resolv.conf, port 53)\n"
	      "  --node NAME            this node's name in the store (the host name)\n"
	      "  --advertise URL        how the other nodes reach this one\n"
	      "                         (http://<listen>:<port>)\n"
	      "  --operator-token-file F  operators' token for /v1/cluster/nodes (none)\n"
	      "  --cluster-secret-file F  the secret nodes show each other when they relay\n"
	      "                         a request (the operator token; without either,\n"
	      "                         nothing is relayed)\n"
	      "  --snapshots-shared     --snapshot-dir is one directory every node reaches:\n"
	      "                         sleeping sessions are released, and woken by any\n"
	      "                         node\n"
	      "  --checkpoint-every S   with --snapshots-shared: an awake session active\n"
	      "                         since its last checkpoint is checkpointed there\n"
	      "                         every S seconds, and taken over from it when its\n"
	      "                         node's lease lapses (30; 0: never)\n"
	      "  --id-slots FIRST:COUNT host id ranges of this node's sessions (all;\n"
	      "                         nodes on one host need ranges of their own)\n"
	      "  --version              print the version and cgroup mode\n",
	      f);
}

static long parse_num(const char *flag, const char *s, long min, long max)
{
	char *end;
	long v = strtol(s, &end, 10);
	if (*s == '\0' || *end != '\0' || v < min || v > max)
		die("%s takes a number %ld..%ld, not '%s'", flag, min, max, s);
	return v;
}

/* A path option into dst: refused when longer than max bytes, never cut
 * (a data directory cut short would put the state somewhere else). */
static void path_opt(const char *flag, const char *s, char *dst, size_t len, size_t max)
{
	if (*s == '\0' || strlen(s) > max || strlen(s) >= len)
		die("%s takes a path of 1..%zu bytes, not '%s'", flag, max < len ? max : len - 1,
		    s);
	memcpy(dst, s, strlen(s) + 1);
}

int main(int argc, char **argv)
{
	struct core_config cfg = {
	    .preview_scheme = "http",
	    .warm_pool = 2,
	    .checkpoint_s = 30,
	};
	struct sbx_backend_config sbx_cfg = {
	    .data_dir = "/var/lib/bunker",
	    .bun_path = "/opt/bunker/bun/bin/bun",
	};
	const char *listen_addr = "127.0.0.1";
	const char *preview_domain = NULL;
	const char *store_uri = NULL; /* NULL: DATA/bunker.db */
	const char *node = NULL, *advertise = NULL, *operator_file = NULL, *cluster_file = NULL;
	int port = 8080;
	struct http_limits limits = HTTP_LIMITS_DEFAULT;
	size_t client_memory = API_CLIENT_MEMORY_DEFAULT,
	       client_key_memory = API_CLIENT_KEY_MEMORY_DEFAULT;
	enum {
		O_LISTEN = 1,
		O_PORT,
		O_DATA,
		O_STORE,
		O_DOMAIN,
		O_SCHEME,
		O_BODY,
		O_PER_CLIENT,
		O_HEAD_TIMEOUT,
		O_IDLE_TIMEOUT,
		O_BODY_RATE,
		O_PIDS,
		O_OUT_MEM,
		O_CLIENT_MEM,
		O_CLIENT_KEY,
		O_OUT_KEY,
		O_POOL,
		O_IDLE,
		O_DEEP,
		O_MINTTL,
		O_INIT,
		O_BUN,
		O_PIDS_BUDGET,
		O_SNAP_DIR,
		O_SNAP_MAX,
		O_SNAP_FREE,
		O_EGRESS_NET,
		O_DNS_HOSTS,
		O_DNS_UPSTREAM,
		O_NODE,
		O_ADVERTISE,
		O_OPERATOR,
		O_CLUSTER_SECRET,
		O_SLOTS,
		O_SNAP_SHARED,
		O_CHECKPOINT,
		O_VERSION,
		O_HELP
	};
	static const struct option opts[] = {
	    {"listen", required_argument, NULL, O_LISTEN},
	    {"port", required_argument, NULL, O_PORT},
	    {"data-dir", required_argument, NULL, O_DATA},
	    {"store", required_argument, NULL, O_STORE},
	    {"preview-domain", required_argument, NULL, O_DOMAIN},
	    {"preview-scheme", required_argument, NULL, O_SCHEME},
	    {"max-body", required_argument, NULL, O_BODY},
	    {"max-conns-per-client", required_argument, NULL, O_PER_CLIENT},
	    {"head-timeout", required_argument, NULL, O_HEAD_TIMEOUT},
	    {"idle-timeout", required_argument, NULL, O_IDLE_TIMEOUT},
	    {"body-min-rate", required_argument, NULL, O_BODY_RATE},
	    {"pids-max", required_argument, NULL, O_PIDS},
	    {"output-memory-mb", required_argument, NULL, O_OUT_MEM},
	    {"client-memory-mb", required_argument, NULL, O_CLIENT_MEM},
	    {"client-key-memory-mb", required_argument, NULL, O_CLIENT_KEY},
	    {"output-key-memory-mb", required_argument, NULL, O_OUT_KEY},
	    {"warm-pool", required_argument, NULL, O_POOL},
	    {"idle-after", required_argument, NULL, O_IDLE},
	    {"deep-sleep-after", required_argument, NULL, O_DEEP},
	    {"min-ttl", required_argument, NULL, O_MINTTL},
	    {"init", required_argument, NULL, O_INIT},
	    {"bun", required_argument, NULL, O_BUN},
	    {"pids-budget", required_argument, NULL, O_PIDS_BUDGET},
	    {"snapshot-dir", required_argument, NULL, O_SNAP_DIR},
	    {"snapshot-max-mb", required_argument, NULL, O_SNAP_MAX},
	    {"snapshot-min-free-mb", required_argument, NULL, O_SNAP_FREE},
	    {"egress-net", required_argument, NULL, O_EGRESS_NET},
	    {"dns-hosts", required_argument, NULL, O_DNS_HOSTS},
	    {"dns-upstream", required_argument, NULL, O_DNS_UPSTREAM},
	    {"node", required_argument, NULL, O_NODE},
	    {"advertise", required_argument, NULL, O_ADVERTISE},
	    {"operator-token-file", required_argument, NULL, O_OPERATOR},
	    {"cluster-secret-file", required_argument, NULL, O_CLUSTER_SECRET},
	    {"id-slots", required_argument, NULL, O_SLOTS},
	    {"snapshots-shared", no_argument, NULL, O_SNAP_SHARED},
	    {"checkpoint-every", required_argument, NULL, O_CHECKPOINT},
	    {"version", no_argument, NULL, O_VERSION},
	    {"help", no_argument, NULL, O_HELP},
	    {0},
	};
	int o;
	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (o) {
		case O_LISTEN:
			listen_addr = optarg;
			break;
		case O_PORT:
			port = (int)parse_num("--port", optarg, 1, 65535);
			break;
		case O_DATA:
			path_opt("--data-dir", optarg, sbx_cfg.data_dir, sizeof(sbx_cfg.data_dir),
				 SBX_DIR_MAX);
			break;
		case O_STORE:
			store_uri = optarg;
			break;
		case O_DOMAIN:
			preview_domain = optarg;
			break;
		case O_SCHEME:
			snprintf(cfg.preview_scheme, sizeof(cfg.preview_scheme), "%s", optarg);
			break;
		case O_BODY:
			limits.max_body = (size_t)parse_num("--max-body", optarg, 1024, 1L << 34);
			break;
		case O_PER_CLIENT:
			limits.max_conns_per_client =
			    (int)parse_num("--max-conns-per-client", optarg, 1, 1 << 20);
			break;
		case O_HEAD_TIMEOUT:
			limits.head_timeout_s = (int)parse_num("--head-timeout", optarg, 1, 3600);
			break;
		case O_IDLE_TIMEOUT:
			/* At least 20 s: a streamed answer pings every 15 s. */
			limits.idle_timeout_s = (int)parse_num("--idle-timeout", optarg, 20, 86400);
			break;
		case O_BODY_RATE:
			limits.body_min_rate =
			    (size_t)parse_num("--body-min-rate", optarg, 0, 1L << 30);
			break;
		case O_PIDS:
			cfg.pids_max = (int)parse_num("--pids-max", optarg, 16, 1 << 22);
			break;
		case O_OUT_MEM:
			cfg.output_memory =
			    (size_t)parse_num("--output-memory-mb", optarg, 1, 1 << 20) << 20;
			break;
		case O_CLIENT_MEM:
			client_memory = (size_t)parse_num("--client-memory-mb", optarg, 1, 1 << 20)
					<< 20;
			break;
		case O_CLIENT_KEY:
			client_key_memory =
			    (size_t)parse_num("--client-key-memory-mb", optarg, 1, 1 << 20) << 20;
			break;
		case O_OUT_KEY:
			cfg.output_key_memory =
			    (size_t)parse_num("--output-key-memory-mb", optarg, 1, 1 << 20) << 20;
			break;
		case O_POOL:
			cfg.warm_pool = (int)parse_num("--warm-pool", optarg, 0, 64);
			break;
		case O_IDLE:
			cfg.idle_after_s = (int)parse_num("--idle-after", optarg, 1, 1 << 30);
			break;
		case O_DEEP:
			cfg.deep_sleep_after_s =
			    (int)parse_num("--deep-sleep-after", optarg, 1, 1 << 30);
			break;
		case O_MINTTL:
			cfg.min_ttl_s = (int)parse_num("--min-ttl", optarg, 1, 1 << 30);
			break;
		case O_INIT:
			path_opt("--init", optarg, sbx_cfg.init_path, sizeof(sbx_cfg.init_path),
				 SIZE_MAX);
			break;
		case O_BUN:
			path_opt("--bun", optarg, sbx_cfg.bun_path, sizeof(sbx_cfg.bun_path),
				 SIZE_MAX);
			break;
		case O_PIDS_BUDGET:
			sbx_cfg.pids_budget = parse_num("--pids-budget", optarg, 16, 1L << 30);
			break;
		case O_SNAP_DIR:
			path_opt("--snapshot-dir", optarg, sbx_cfg.snapshot_dir,
				 sizeof(sbx_cfg.snapshot_dir), SBX_DIR_MAX);
			break;
		case O_SNAP_MAX:
			sbx_cfg.snapshot_max_bytes =
			    parse_num("--snapshot-max-mb", optarg, 1, 1L << 40) << 20;
			break;
		case O_EGRESS_NET:
			path_opt("--egress-net", optarg, sbx_cfg.egress_net,
				 sizeof(sbx_cfg.egress_net), SIZE_MAX);
			break;
		case O_DNS_HOSTS:
			path_opt("--dns-hosts", optarg, sbx_cfg.dns_hosts,
				 sizeof(sbx_cfg.dns_hosts), SIZE_MAX);
			break;
		case O_DNS_UPSTREAM:
			path_opt("--dns-upstream", optarg, sbx_cfg.dns_upstream,
				 sizeof(sbx_cfg.dns_upstream), SIZE_MAX);
			break;
		case O_SNAP_FREE:
			sbx_cfg.snapshot_min_free_bytes =
			    parse_num("--snapshot-min-free-mb", optarg, 1, 1L << 40) << 20;
			break;
		case O_NODE:
			node = optarg;
			if (*node == '\0' || strlen(node) >= sizeof(cfg.node) ||
			    strpbrk(node, "\"\\ \t\r\n"))
				die("--node takes a name of 1..%zu characters without quotes, "
				    "backslashes or blanks, not '%s'",
				    sizeof(cfg.node) - 1, node);
			break;
		case O_ADVERTISE:
			advertise = optarg;
			if (strncmp(advertise, "http://", 7) != 0 ||
			    strlen(advertise) >= sizeof(cfg.advertise))
				die("--advertise takes an http:// URL, not '%s'", advertise);
			break;
		case O_OPERATOR:
			operator_file = optarg;
			break;
		case O_CLUSTER_SECRET:
			cluster_file = optarg;
			break;
		case O_SNAP_SHARED:
			cfg.snapshots_shared = true;
			break;
		case O_CHECKPOINT:
			cfg.checkpoint_s = (int)parse_num("--checkpoint-every", optarg, 0, 86400);
			break;
		case O_SLOTS: {
			char *colon = strchr(optarg, ':');
			if (colon == NULL)
				die("--id-slots takes FIRST:COUNT, not '%s'", optarg);
			/* die() does not return: colon is not NULL below */
			/* cppcheck-suppress nullPointerRedundantCheck */
			*colon = '\0';
			sbx_cfg.slot_first = (int)parse_num("--id-slots", optarg, 0, 16383);
			/* cppcheck-suppress nullPointerArithmeticRedundantCheck */
			sbx_cfg.slot_count = (int)parse_num("--id-slots", colon + 1, 1, 16384);
			break;
		}
		case O_VERSION: {
			char sandbox[256];
			sbx_backend_probe(sandbox, sizeof(sandbox));
			printf("bunkerd %s (sandbox: %s)\n", BUNKER_VERSION, sandbox);
			return 0;
		}
		case O_HELP:
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}
	if (node)
		snprintf(cfg.node, sizeof(cfg.node), "%s", node);
	else if (gethostname(cfg.node, sizeof(cfg.node)) < 0 || cfg.node[0] == '\0')
		snprintf(cfg.node, sizeof(cfg.node), "bunkerd");
	if (advertise)
		snprintf(cfg.advertise, sizeof(cfg.advertise), "%s", advertise);
	else
		snprintf(cfg.advertise, sizeof(cfg.advertise),
			 strchr(listen_addr, ':') ? "http://[%s]:%d" : "http://%s:%d", listen_addr,
			 port);
	if (preview_domain)
		snprintf(cfg.preview_domain, sizeof(cfg.preview_domain), "%s", preview_domain);
	else
		snprintf(cfg.preview_domain, sizeof(cfg.preview_domain), "localhost:%d", port);
	if (sbx_cfg.init_path[0] == '\0') {
		char self[PATH_MAX];
		ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
		if (n < 0)
			die("cannot find my own binary");
		/* die() does not return */
		/* cppcheck-suppress negativeIndex */
		self[n] = '\0';
		snprintf(sbx_cfg.init_path, sizeof(sbx_cfg.init_path), "%s/bunker-init",
			 dirname(self));
	}
	if (geteuid() != 0)
		die("bunkerd must run as root (it creates namespaces, cgroups and mounts)");
	/* Thousands of connections, each a descriptor (the front door holds
	 * up to 4096 waiting and libmicrohttpd serves up to 4096): as many as
	 * the hard limit allows. */
	struct rlimit nofile;
	if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
		nofile.rlim_cur = nofile.rlim_max;
		setrlimit(RLIMIT_NOFILE, &nofile);
	}
	if (sbx_cfg.pids_budget > 0 && sbx_cfg.pids_budget < (cfg.pids_max ? cfg.pids_max : 512))
		die("--pids-budget %lld leaves no room for one session of --pids-max %d",
		    (long long)sbx_cfg.pids_budget, cfg.pids_max ? cfg.pids_max : 512);

	/* A key's share of the output budget is at most all of it. */
	if (cfg.output_memory == 0)
		cfg.output_memory = CORE_OUTPUT_MEMORY_DEFAULT;
	if (cfg.output_key_memory == 0)
		cfg.output_key_memory = cfg.output_memory < CORE_OUTPUT_KEY_DEFAULT
					    ? cfg.output_memory
					    : CORE_OUTPUT_KEY_DEFAULT;
	if (cfg.output_key_memory > cfg.output_memory)
		die("--output-key-memory-mb %zu is more than the %zu of --output-memory-mb",
		    cfg.output_key_memory >> 20, cfg.output_memory >> 20);
	if (client_key_memory > client_memory)
		die("--client-key-memory-mb %zu is more than the %zu of --client-memory-mb",
		    client_key_memory >> 20, client_memory >> 20);

	/* Large buffers (executions' output, answers' pieces, bodies) from
	 * mmap always: glibc raises its mmap threshold to the size of each
	 * large block freed (up to 32 MiB), after which such buffers grow in
	 * the threads' arenas by copying and leave their old pages resident.
	 * 16 unread answers holding the 32 MiB output share grew the daemon
	 * by 69 MB that way, by 35 MB with the threshold fixed (bench/hostile,
	 * "outputs"). */
	mallopt(M_MMAP_THRESHOLD, 128 * 1024);

	/* Signals are taken synchronously by this thread: block them before
	 * any other thread exists so that every thread inherits the mask. */
	sigset_t stop;
	sigemptyset(&stop);
	sigaddset(&stop, SIGTERM);
	sigaddset(&stop, SIGINT);
	pthread_sigmask(SIG_BLOCK, &stop, NULL);
	signal(SIGPIPE, SIG_IGN);

	struct bk_err err = BK_ERR_INIT;
	/* The data directory is named by its absolute path: it names the
	 * daemon's instance (cgroups, its mount namespace). */
	if (sbx_cfg.data_dir[0] != '/') {
		char cwd[PATH_MAX], abs_dir[PATH_MAX + sizeof(sbx_cfg.data_dir)];
		if (getcwd(cwd, sizeof(cwd)) == NULL)
			die("cannot find the working directory");
		snprintf(abs_dir, sizeof(abs_dir), "%s/%s", cwd, sbx_cfg.data_dir);
		path_opt("--data-dir", abs_dir, sbx_cfg.data_dir, sizeof(sbx_cfg.data_dir),
			 SBX_DIR_MAX);
	}
	if (mkdir_p(sbx_cfg.data_dir, 0711, &err) < 0)
		die("%s", err.msg);
	/* Session mounts live in a mount namespace of the daemon's own, not
	 * in the host's table; entered while this is the only thread. */
	bool reentered = false;
	if (sbx_mount_ns_enter(sbx_cfg.data_dir, &reentered, &err) < 0)
		die("%s", err.msg);
	if (reentered)
		fprintf(stderr, "bunkerd: back in the mount namespace an earlier run left\n");
	char db[600];
	snprintf(db, sizeof(db), "%s/bunker.db", sbx_cfg.data_dir);
	struct store *store;
	struct sbx_backend *backend;
	if (store_open(store_uri ? store_uri : db, &store, &err) < 0)
		die("%s", err.msg);
	/* A checkpoint and the snapshot it becomes are one tar file
	 * (core/lifecycle.c): with checkpoints, sessions sleep in tars. */
	sbx_cfg.tar_snapshots = cfg.snapshots_shared && cfg.node[0] && cfg.checkpoint_s > 0;
	if (sbx_backend_open(&sbx_cfg, &backend, &err) < 0) {
		store->ops->close(store);
		die("%s", err.msg);
	}
	struct core *core;
	if (core_open(&cfg, store, backend, &core, &err) < 0)
		die("%s", err.msg);
	struct api api;
	if (api_open(&api, core, BUNKER_VERSION, &err) < 0 ||
	    api_client_memory_set(&api, client_memory, client_key_memory, &err) < 0 ||
	    api_secrets_load(&api, operator_file, cluster_file, &err) < 0) {
		api_close(&api);
		core_close(core);
		die("%s", err.msg);
	}
	struct http_server *srv;
	struct http_host_hooks hosts = api_preview_hooks(&api);
	struct http_handler_ops ops = api_handler_ops(&api);
	if (http_server_start(listen_addr, port, &limits, &ops, &hosts, &srv, &err) < 0) {
		api_close(&api);
		core_close(core);
		die("%s", err.msg);
	}
	char sandbox[256];
	core_sandbox_describe(core, sandbox, sizeof(sandbox));
	fprintf(stderr, "bunkerd %s listening on %s:%d (node %s at %s, data %s, sandbox: %s)\n",
		BUNKER_VERSION, listen_addr, port, cfg.node, cfg.advertise, sbx_cfg.data_dir,
		sandbox);
	int sig;
	sigwait(&stop, &sig);
	fprintf(stderr, "bunkerd: signal %d, stopping\n", sig);
	http_server_stop(srv);
	api_close(&api);
	core_close(core);
	return 0;
}
