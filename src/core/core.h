/* Sessions: the registry, their lifecycle, plans and keys.
 *
 * core/ is what both API dialects translate onto. It never touches a
 * namespace or a SQL string: it calls sandbox/ and store/. Every function
 * is thread safe; errors carry a kind (util/err.h) that api/ maps to HTTP.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/err.h"
#include "util/util.h"

struct core;
struct store;
struct sbx_backend;
struct budget_charge;

struct core_config {
	char preview_scheme[8];	  /* "http" */
	char preview_domain[256]; /* "localhost:8080" */
	int pids_max;		  /* per session */
	int warm_pool;		  /* sandboxes kept started ahead of need */
	int idle_after_s;	  /* inactivity before a session is frozen (300) */
	int deep_sleep_after_s;	  /* inactivity before it is saved and ended (1800) */
	int min_ttl_s;		  /* the shortest ttl a create may ask for (300) */
	/* This node: its name in the store (sessions it owns name it) and the
	 * base URL its peers reach it at. "": a core of its own, no lease. */
	char node[64];
	char advertise[256];
	/* The backend's snapshot directory is one that every node reaches
	 * (--snapshots-shared): a session this node puts to deep sleep is
	 * released, and whichever node a request for it reaches claims it and
	 * wakes it there. */
	bool snapshots_shared;
	/* With snapshots_shared: an awake session with activity since its
	 * last checkpoint is checkpointed to the snapshot directory every
	 * checkpoint_s seconds (0: never), and a node that finds it owned by
	 * a node whose lease has lapsed takes it over from there. */
	int checkpoint_s;
	/* What executions' output may hold of the daemon's memory, from its
	 * first byte until its answer is sent or its client goes: all keys
	 * together, and one key (0: CORE_OUTPUT_MEMORY_DEFAULT and
	 * CORE_OUTPUT_KEY_DEFAULT). */
	size_t output_memory;
	size_t output_key_memory;
};

/* ---- nodes (core/cluster.c) ----
 *
 * Every node sharing a store registers itself with a lease that it
 * renews: a node whose lease lapsed is gone (its sessions are answered
 * 503 by the others until it comes back). A session is owned by one node,
 * the one that runs it; any node finds its owner in the store. */

#define CORE_LEASE_MS 15000
#define CORE_LEASE_RENEW_MS 5000
/* How long a sandbox of a node that takes sessions over from dead peers
 * (core__checkpoints()) runs without word from its daemon: renewed after
 * each renewal of the node's lease, so that a node that can no longer
 * renew it (cut off from the store, stopped, hung) has ended its
 * sessions' processes before its lease lapses and a peer may take them
 * over. Three seconds short of the lease: one renewal may fail. */
#define CORE_FENCE_MS 12000
/* After a renewal that failed (the store unreachable): tried again this
 * soon, so that a lease that lapsed meanwhile is back within a second of
 * the store's return. */
#define CORE_LEASE_RETRY_MS 1000

struct core_node {
	char name[64];
	char advertise[256];
	bool alive; /* its lease runs */
	bool self;  /* this node */
	int64_t started_ms, renewed_ms, lease_ms;
	int64_t free_mb; /* its host's available memory, at its last renewal */
	int64_t awake;	 /* sessions in its registry, at its last renewal */
	int64_t owned;	 /* sessions it owns not expired, now */
};

/* Every registered node into *out (caller frees), by name. */
int core_nodes_list(struct core *core, struct core_node **out, size_t *n, struct bk_err *err);
/* Whether node name holds its lease now (true when the store cannot say). */
bool core_node_alive(struct core *core, const char *name);
/* Where session id (of key_id; NULL: any key) is served: 1 with *owner
 * filled when another node whose lease runs owns it, 0 when this node
 * serves it (or it does not exist: the caller's 404), -1 with
 * BK_E_UNAVAILABLE when its owner's lease has lapsed. */
int core_session_locate(struct core *core, const char *key_id, const char *id,
			struct core_node *owner, struct bk_err *err);
/* The node a new session goes to: the live node with the fewest sessions
 * it owns, then the most free memory, this node first among equals; nodes
 * with less than CORE_PLACE_MIN_FREE_MB free only when all have. 1 with
 * *out filled when it is another node, 0 when this one. */
#define CORE_PLACE_MIN_FREE_MB 512
int core_place(struct core *core, struct core_node *out, struct bk_err *err);
/* This node's name ("" without one). */
const char *core_node_name(const struct core *core);
/* Counts a request of key_id at now_ms in the key's rate-limit window of
 * window_ms in the store every node shares (store_ops.rate_count): 1 with
 * the window's start and the requests counted in it, this one included,
 * in *start_ms and *count; 0 when the store counts none (SQLite, which
 * one node alone uses: the caller counts in memory). */
int core_rate_count(struct core *core, const char *key_id, int64_t now_ms, int64_t window_ms,
		    int64_t *start_ms, int64_t *count, struct bk_err *err);

/* 96 MiB in all keep the daemon well under 256 MB with the rest of what
 * it holds (docs/OPERATIONS.md); a key's 32 MiB hold one execution's
 * whole output (10 MiB a stream) and then some, and three keys must
 * flood at once to reach the total. */
#define CORE_OUTPUT_MEMORY_DEFAULT (96u << 20)
#define CORE_OUTPUT_KEY_DEFAULT (32u << 20)

/* Serves sessions from store and backend (both taken, and closed by
 * core_close(), or here on failure): recovers the sessions of an earlier
 * run (their processes are gone; their files are kept), has the backend
 * remove what belongs to no session, and starts the reaper and the warm
 * pool. */
int core_open(const struct core_config *cfg, struct store *store, struct sbx_backend *backend,
	      struct core **out, struct bk_err *err);
/* A core on store alone (taken), for the command-line tool: only the key
 * functions may be called on the result. */
int core_open_store(struct store *store, struct core **out, struct bk_err *err);
/* Puts every session to deep sleep (files are kept), stops the sandboxes
 * and closes the store and the backend. */
void core_close(struct core *core);
/* What isolates sessions ("namespaces, cgroup v1"), into out. */
void core_sandbox_describe(struct core *core, char *out, size_t len);

/* ---- plans and keys (core/plan.c) ---- */

struct plan_limits {
	int max_sessions;
	int max_ttl_s;
	bool overrides; /* may a create set resourceLimits */
	int memory_max_mb;
	double cpu_max;
	int disk_max_mb;
	int timeout_default_s;
	int timeout_max_s;
	int requests_per_minute;
	int64_t max_file_bytes;
	/* Outbound network (core/network.c): may the key's sessions have any
	 * (0 or 1), what a session gets when its create names no policy (0:
	 * none, 1: the package registries), and the caps of a session that
	 * has it: Mbit/s each way, connections open at once. */
	int egress;
	int egress_default;
	int egress_mbps;
	int egress_connections;
};

/* The defaults of a plan by name, or NULL for an unknown name. */
const struct plan_limits *plan_lookup(const char *name);

/* The numbers of a plan that a key may override. */
enum plan_field {
	PLAN_MAX_SESSIONS = 0,
	PLAN_MAX_TTL,	      /* seconds */
	PLAN_MEMORY_MAX,      /* MB */
	PLAN_CPU_MAX,	      /* cores */
	PLAN_DISK_MAX,	      /* MB */
	PLAN_TIMEOUT_DEFAULT, /* seconds */
	PLAN_TIMEOUT_MAX,     /* seconds */
	PLAN_RPM,	      /* requests per minute */
	PLAN_MAX_FILE_SIZE,   /* bytes */
	PLAN_EGRESS,	      /* 0 or 1 */
	PLAN_EGRESS_DEFAULT,  /* 0 none, 1 package registries */
	PLAN_EGRESS_MBPS,     /* Mbit/s */
	PLAN_EGRESS_CONNECTIONS,
	PLAN_FIELD_COUNT,
};

/* A key's own numbers: field f replaces the plan's when bit (1u << f) of
 * set is on; values holds it at that field's place. */
struct plan_overrides {
	unsigned set;
	struct plan_limits values;
};

/* The name of field f: "max_sessions", "max_ttl", "memory_max", "cpu_max",
 * "disk_max", "timeout_default", "timeout_max", "rpm", "max_file_size" (the
 * JSON member; the CLI flag is the same with '-' for '_'). */
const char *plan_field_name(enum plan_field f);
/* Sets the field called name ('-' and '_' alike) of ov from the decimal text
 * value. BK_E_INVALID naming the field when the name is unknown or the value
 * is not a number in the field's range. */
int plan_overrides_set(struct plan_overrides *ov, const char *name, const char *value,
		       struct bk_err *err);
/* Copies the fields set in ov over limits. */
void plan_overrides_apply(const struct plan_overrides *ov, struct plan_limits *limits);
/* The set fields of ov as a compact JSON object ("{}" when none) into buf. */
int plan_overrides_format(const struct plan_overrides *ov, char *buf, size_t len,
			  struct bk_err *err);
/* The inverse of plan_overrides_format(); "" reads as "{}". */
int plan_overrides_parse(const char *json, struct plan_overrides *ov, struct bk_err *err);

/* How every API key begins: "bk_" and 40 characters of [a-z0-9]. */
#define CORE_KEY_PREFIX "bk_"

struct core_key {
	char id[32];
	char plan[16];
	struct plan_limits limits; /* the plan's defaults with the key's overrides */
};

/* Creates a key on plan with the numbers of ov (NULL: none) in place of the
 * plan's; secret receives the key to show once (>= 64 bytes). BK_E_INVALID
 * when the plan is unknown or the numbers contradict each other (a default
 * timeout above the maximum). */
int core_key_create(struct core *core, const char *plan, const struct plan_overrides *ov,
		    char *secret, size_t len, struct core_key *out, struct bk_err *err);
/* Finds the key of a secret: BK_E_UNAUTHORIZED when unknown or revoked. */
int core_auth(struct core *core, const char *secret, struct core_key *out, struct bk_err *err);

/* What an administrator may see of a key: never its secret or hash. */
struct core_key_info {
	char id[32];
	char plan[16];
	int64_t created_ms;
	int64_t revoked_ms; /* 0 while valid */
	struct plan_overrides overrides;
};

/* Every key, oldest first; *out is malloc'd (caller frees). */
int core_key_list(struct core *core, struct core_key_info **out, size_t *n, struct bk_err *err);
/* Revokes key id from the next request on (core_auth() reads the store
 * every time). BK_E_NOT_FOUND when there is no such key; revoking twice is
 * not an error. */
int core_key_revoke(struct core *core, const char *id, struct bk_err *err);

/* ---- idempotency (core/idem.c) ---- */

/* A stored answer to a creating request, replayed byte for byte. */
struct core_idem_reply {
	int status;
	char content_type[64];
	char *body; /* owned */
	size_t len;
};

void core_idem_reply_release(struct core_idem_reply *r);

#define CORE_IDEM_TTL_MS (24 * 3600 * 1000LL)
/* What one API key may have kept within CORE_IDEM_TTL_MS, so that no key
 * fills the host's disk or holds the store for long: answers up to
 * CORE_IDEM_ANSWER_MAX bytes each and CORE_IDEM_KEY_BYTES_MAX in all are
 * kept whole; a larger one is recorded by its length only (its request is
 * still not run again); at most CORE_IDEM_KEY_COUNT_MAX keys. */
#define CORE_IDEM_ANSWER_MAX (1u << 20)
#define CORE_IDEM_KEY_BYTES_MAX (64ll << 20)
#define CORE_IDEM_KEY_COUNT_MAX 10000

/* Looks up the answer key stored under idem_key within CORE_IDEM_TTL_MS:
 * returns 1 and fills *out (release it) when it was stored for the same
 * request_hash, 0 when there is none, and -1 with BK_E_IDEMPOTENCY_REUSED
 * when it was stored for another request, BK_E_CONFLICT when it was too
 * large to keep. */
int core_idem_find(struct core *core, const struct core_key *key, const char *idem_key,
		   const uint8_t request_hash[32], struct core_idem_reply *out, struct bk_err *err);
/* Stores reply under (key, idem_key) and, now and then, purges the answers
 * that have expired. A reply without a body (NULL: one that was streamed),
 * over CORE_IDEM_ANSWER_MAX or past what the key may keep is kept by its
 * length only. */
int core_idem_save(struct core *core, const struct core_key *key, const char *idem_key,
		   const uint8_t request_hash[32], const struct core_idem_reply *reply,
		   struct bk_err *err);
/* How long past its plan's longest execution a claim of a request in
 * flight holds, when its node dies before it ends it. */
#define CORE_IDEM_CLAIM_SLACK_MS (5 * 60 * 1000LL)

/* Claims (key, idem_key) in the store for a request about to run, so that
 * no other request with it runs meanwhile on any node: 0 and *claimed_ms
 * (for core_idem_release()), or -1 with BK_E_CONFLICT while another holds
 * it. A claim its node never ended lapses after the key's timeout_max and
 * CORE_IDEM_CLAIM_SLACK_MS. */
int core_idem_claim(struct core *core, const struct core_key *key, const char *idem_key,
		    int64_t *claimed_ms, struct bk_err *err);
/* Ends the claim taken at claimed_ms (errors are logged). */
void core_idem_release(struct core *core, const struct core_key *key, const char *idem_key,
		       int64_t claimed_ms);
/* Whether key may use one more Idempotency-Key: -1 with BK_E_LIMIT when it
 * has CORE_IDEM_KEY_COUNT_MAX of them within CORE_IDEM_TTL_MS. */
int core_idem_admit(struct core *core, const struct core_key *key, struct bk_err *err);

/* ---- sessions (core/session.c) ---- */

enum core_state {
	CORE_STATE_ACTIVE = 0,
	CORE_STATE_IDLE,
	CORE_STATE_DEEP_SLEEP,
};
const char *core_state_name(enum core_state s);

struct core_limits {
	int memory_mb;
	double cpu;
	int timeout_s;
	int disk_mb;
};

/* The longest metadata, in bytes of compact JSON. */
#define CORE_METADATA_MAX 16384
/* The most variables a session's or an execution's env holds. */
#define CORE_ENV_MAX 100

/* Which dialect created a session: how its id looks (buntime's "ses_<20>",
 * InstaVM's UUID) and whether its sandbox waits for its first use. */
enum core_dialect {
	CORE_DIALECT_BUNTIME = 0,
	CORE_DIALECT_INSTAVM,
};

/* A session's sandbox, "VM" in the InstaVM dialect. */
enum core_vm {
	CORE_VM_NONE = 0,   /* not spawned yet: it holds nothing */
	CORE_VM_RUNNING,    /* spawned (active, idle or asleep) */
	CORE_VM_TERMINATED, /* killed or its lifetime over: it holds nothing */
};

struct core_env {
	const char *name;
	const char *value;
};

struct core_session_spec {
	enum core_dialect dialect;
	int64_t ttl_s;	      /* 0: the default (InstaVM: the plan's maximum) */
	const char *metadata; /* compact JSON object text; NULL: {} */
	bool has_limits;      /* resourceLimits was given */
	/* Each field of limits, 0 where it was not given. */
	struct core_limits limits;
	/* Limits above the plan's ceilings are lowered to them rather than
	 * refused (InstaVM's memory_mb and vcpu_count). */
	bool clamp;
	/* InstaVM: the VM waits for its first use (unless env is given), and
	 * lives vm_lifetime_s from its spawn (0: as long as the session). */
	bool lazy;
	int64_t vm_lifetime_s;
	int vcpu; /* the vCPUs asked for, 0 when none */
	/* Variables of every execution of the session. */
	const struct core_env *env;
	size_t n_env;
	/* Its outbound network policy: a JSON object of the dialect's field
	 * names (network_camel: buntime's), fields left out granting nothing;
	 * NULL: the plan's default. Checked as core_session_network_set()
	 * checks it, errors naming network_prefix plus the field. */
	const char *network;
	bool network_camel;
	const char *network_prefix;
};

struct core_session_info {
	char id[32];	    /* the internal id ("ses_<20>"): preview hosts use it */
	char public_id[40]; /* the id callers name it by (id, or a UUID) */
	enum core_dialect dialect;
	int64_t created_ms, expires_ms, last_active_ms;
	enum core_state state;
	char *metadata; /* owned */
	char *env;	/* owned: a JSON object of strings */
	struct core_limits limits;
	int vcpu;
	char preview_url[320];
	int64_t files_count;
	int64_t active_processes;
	int64_t memory_bytes; /* what it uses now (0 when no sandbox runs) */
	enum core_vm vm;
	int64_t vm_lifetime_s, vm_spawned_ms, vm_ends_ms; /* ends 0: no end */
	int64_t exec_count, cpu_ms, vm_runtime_ms;	  /* usage so far */
	char *network; /* owned: its network policy, snake_case JSON */
	/* What its outbound network carried out of and into it, over the
	 * session's whole life (every sandbox it had, sleeps between); as of
	 * the last flush of its usage, which a read of one session makes. */
	int64_t net_tx_bytes, net_rx_bytes;
};

void core_session_info_release(struct core_session_info *info);

/* Creates a session of key with a running sandbox, and fills *out
 * (release it). Checks spec against the key's plan first: a ttl outside
 * min-ttl..max_ttl, metadata that is not a JSON object of at most
 * CORE_METADATA_MAX bytes, or a limit out of range is BK_E_INVALID
 * naming the field; limits on a plan without overrides BK_E_FORBIDDEN;
 * the key's concurrent-session cap BK_E_LIMIT. A create that fails after
 * its record was written leaves no record, sandbox or file behind. */
int core_session_create(struct core *core, const struct core_key *key,
			const struct core_session_spec *spec, struct core_session_info *out,
			struct bk_err *err);
/* Reads a session without waking it. BK_E_NOT_FOUND for a missing session
 * and for another key's. */
int core_session_get(struct core *core, const struct core_key *key, const char *id,
		     struct core_session_info *out, struct bk_err *err);
/* Reads session id whatever its key: for the one endpoint whose caller
 * sends no key (InstaVM's usage, where the UUID is the capability). */
int core_session_get_any(struct core *core, const char *id, struct core_session_info *out,
			 struct bk_err *err);
/* A page of the key's sessions (metadata_filter: JSON containment, may be
 * NULL; vm_only: only those holding a VM); the caller releases each
 * element and frees *out. */
int core_session_list(struct core *core, const struct core_key *key, const char *metadata_filter,
		      bool vm_only, int limit, int offset, struct core_session_info **out,
		      size_t *n, int64_t *total, struct bk_err *err);
/* Kills session id's VM at once (its processes and files gone; the
 * session stays, and its next use spawns a fresh VM), filling *out with
 * the session as it was. BK_E_NOT_FOUND when there is no such session or
 * it has no VM; BK_E_FORBIDDEN when it is another key's. */
int core_vm_kill(struct core *core, const struct core_key *key, const char *id,
		 struct core_session_info *out, struct bk_err *err);
/* Spawns session id's VM if it has none (its first use), as any request
 * that needs it would. */
int core_vm_ensure(struct core *core, const struct core_key *key, const char *id,
		   struct bk_err *err);
/* Ends every process, removes files, mounts, cgroups and the record. */
int core_session_delete(struct core *core, const struct core_key *key, const char *id,
			struct bk_err *err);

/* ---- outbound network (core/network.c) ---- */

/* Session id's network policy as a JSON object in the dialect's field
 * names (camel: buntime's): the five fields of InstaVM's egress object,
 * and the caps it runs under (bandwidth_mbps, max_connections). *out is
 * malloc'd. */
int core_session_network_get(struct core *core, const struct core_key *key, const char *id,
			     bool camel, char **out, struct bk_err *err);
/* Changes session id's policy: the fields patch (a JSON object) names
 * replace the session's, the others stay. A running sandbox follows at
 * once (new connections; open ones the policy no longer allows are cut),
 * a sleeping one when it wakes. Bad fields are BK_E_INVALID naming prefix
 * plus the field, each of them; a grant on a plan without egress
 * BK_E_FORBIDDEN; a host that cannot give sessions a network
 * BK_E_UNAVAILABLE. *out is the policy now, as core_session_network_get()
 * answers it. */
int core_session_network_set(struct core *core, const struct core_key *key, const char *id,
			     const char *patch, bool camel, const char *prefix, char **out,
			     struct bk_err *err);
/* The policy stored text reads as, for answers (camel: buntime's names);
 * malloc'd. */
char *core_network_view(const char *stored, bool camel);

/* ---- executions (core/exec.c) ---- */

struct core_file {
	const char *path; /* as the caller gave it */
	const char *content;
	size_t len;
};

/* What runs code (InstaVM's language); CORE_LANG_NONE is the buntime
 * dialect's code (Bun) or command (/bin/sh). */
enum core_language {
	CORE_LANG_NONE = 0,
	CORE_LANG_PYTHON,
	CORE_LANG_BASH,
	CORE_LANG_JAVASCRIPT,
	CORE_LANG_TYPESCRIPT,
};

struct core_exec_req {
	enum core_language language;
	const char *code;    /* the program: JavaScript/TypeScript for Bun, or the
			      * language's, or NULL */
	const char *command; /* /bin/sh -c, or NULL (CORE_LANG_NONE only) */
	const struct core_file *files;
	size_t n_files;
	const struct core_env *env;
	size_t n_env;
	int64_t timeout_s;  /* 0: the session's default */
	bool clamp_timeout; /* above the plan's maximum: lowered to it, not refused */
	/* With a language: stop at this monotonic time (mono_us()) if it comes
	 * before the timeout; 0: none. */
	int64_t deadline_us;
	/* With a language: a one-shot interpreter of its own, not the
	 * session's persistent one (asynchronous executions). */
	bool fresh;
	const char *working_dir; /* NULL: /workspace */
	/* Streaming: called from the request's thread as output arrives. */
	void (*on_output)(void *ctx, int stream, const char *data, size_t len);
	/* The output's charge (borrowed; the caller releases it after the
	 * result): for a caller that holds more of the output than the result
	 * (a stream's queued events) under the same charge. NULL: the result
	 * gets a charge of its own. */
	struct budget_charge *charge;
	/* Polled while the execution runs: true kills it (the client left). */
	bool (*cancelled)(void *ctx);
	void *ctx;
};

struct core_exec_result {
	char *stdout_text, *stderr_text; /* owned, NUL-terminated */
	size_t stdout_len, stderr_len;
	bool stdout_truncated, stderr_truncated;
	int exit_code;
	bool timed_out;
	bool oom_killed;
	int64_t execution_time_ms, cpu_time_ms, memory_used_bytes;
	char **files_written; /* owned, workspace-relative */
	size_t n_files_written;
	/* What stdout and stderr hold of the output budget (owned): released
	 * with the result, so a result is released once its answer is sent
	 * (or its client has gone), not before. */
	struct budget_charge *charge;
};

/* Frees r's memory and gives its output's charge back. */
void core_exec_result_release(struct core_exec_result *r);

/* Output kept per stream of an execution; less when the output budget
 * (struct core_config) is spent: the stream is cut, and says so, either
 * way. */
#define CORE_OUTPUT_MAX (10u << 20)

/* Runs code or command in the session (waking it if needed). The user's
 * program failing is a result; an error means the request was wrong
 * (BK_E_INVALID with the field) or the sandbox failed. */
int core_execute(struct core *core, const struct core_key *key, const char *id,
		 const struct core_exec_req *req, struct core_exec_result *out, struct bk_err *err);

/* What core_execute() checks before it needs the session: for answering
 * bad input before a stream starts. */
int core_exec_check(const struct core_key *key, const struct core_exec_req *req,
		    struct bk_err *err);

/* Turns a request path into one relative to /workspace, or fails with
 * BK_E_INVALID naming field: absolute paths must lie inside /workspace, and
 * no component may be "..". out receives at least len bytes. */
int core_path_normalize(const char *path, const char *field, char *out, size_t len,
			struct bk_err *err);

/* ---- asynchronous executions (core/tasks.c) ---- */

enum core_task_status {
	CORE_TASK_QUEUED = 0,
	CORE_TASK_RUNNING,
	CORE_TASK_COMPLETED,
	CORE_TASK_FAILED,
	CORE_TASK_TIMEOUT,
	CORE_TASK_KILLED,
};
const char *core_task_status_name(enum core_task_status s);

struct core_task_info {
	char id[40]; /* a UUID */
	enum core_task_status status;
	char *stdout_text, *stderr_text; /* owned, NUL-terminated */
	size_t stdout_len, stderr_len;
	int exit_code;
	int64_t execution_ms, cpu_ms, created_ms, finished_ms;
};

void core_task_info_release(struct core_task_info *t);

/* Queues req (a language run; its strings are copied) to run in the
 * background in session id, each task in an interpreter of its own: the
 * session's VM is spawned now if it has none. task_id (>= 40 bytes)
 * receives its id. Results are kept CORE_TASK_KEEP_MS and survive a
 * restart; a task that a restart interrupted reads as failed. BK_E_LIMIT
 * when the session has CORE_TASKS_PER_SESSION unfinished tasks, or the key
 * CORE_TASKS_PER_KEY kept ones. */
int core_task_submit(struct core *core, const struct core_key *key, const char *id,
		     const struct core_exec_req *req, char *task_id, struct bk_err *err);
/* Task id of key: BK_E_NOT_FOUND when unknown, another key's, or purged. */
int core_task_get(struct core *core, const struct core_key *key, const char *task_id,
		  struct core_task_info *out, struct bk_err *err);

#define CORE_TASK_KEEP_MS (24 * 3600 * 1000LL)
#define CORE_TASKS_PER_SESSION 8
#define CORE_TASKS_PER_KEY 1000
/* What a task's result keeps of each stream; the rest is cut. */
#define CORE_TASK_OUTPUT_MAX (1u << 20)

/* ---- processes (core/exec.c) ---- */

struct core_proc {
	int pid;
	int64_t started_ms;
	char command[256];
};

/* The session's processes (PID 1 left out). A session whose sandbox is not
 * running has none; listing does not start it. *out is malloc'd. */
int core_process_list(struct core *core, const struct core_key *key, const char *id,
		      struct core_proc **out, size_t *n, struct bk_err *err);
/* Kills pid (0: every process) and reports which pids were ended in *pids
 * (malloc'd). A pid not in the session is BK_E_PROCESS_NOT_FOUND. */
int core_process_kill(struct core *core, const struct core_key *key, const char *id, int pid,
		      int **pids, size_t *n, struct bk_err *err);

/* ---- files (core/files.c) ---- */

/* Paths are relative to /workspace, or absolute inside it; anything that
 * leaves it is BK_E_INVALID (field "path"). Sizes are capped by the key's
 * plan (BK_E_TOO_LARGE). A missing file is BK_E_FILE_NOT_FOUND. */
int core_file_write(struct core *core, const struct core_key *key, const char *id, const char *path,
		    const void *data, size_t len, struct bk_err *err);
/* The whole file at once: *data is malloc'd and NUL-terminated (binary
 * content may hold NULs). For small files; answers stream with
 * core_read_open(). */
int core_file_read(struct core *core, const struct core_key *key, const char *id, const char *path,
		   char **data, size_t *len, struct bk_err *err);

/* A file being read a piece at a time (CORE_READ_PIECE bytes each), so
 * that what the daemon holds of it does not grow with its size. */
struct core_read;

/* The size of a piece: a multiple of 3, so that pieces encode to base64
 * one after the other without padding but at the end. */
#define CORE_READ_PIECE (192u << 10)

/* Opens path (a workspace path as above; with anywhere, a path of the
 * session's own file system, as for the transfers below) and reads its
 * first piece, so that every error a read can meet before its first byte
 * is met here: not found, leaving the workspace, a directory, over the
 * key's max file size. A workspace read also learns whether the whole
 * file is UTF-8 (core_read_utf8()). *out holds a reference on the session
 * but none of its locks: between pieces it may be deleted or its sandbox
 * restarted, and the next piece then fails. Close with core_read_close(). */
int core_read_open(struct core *core, const struct core_key *key, const char *id, const char *path,
		   bool anywhere, struct core_read **out, struct bk_err *err);
/* The file's size when it was opened: the pieces add up to it exactly. */
int64_t core_read_size(const struct core_read *r);
bool core_read_utf8(const struct core_read *r);
/* The next piece: 1 with *data (borrowed until the next call) and *len,
 * 0 after the last one, -1 with err when the file changed meanwhile (its
 * pieces would not make one file) or the session went. */
int core_read_next(struct core_read *r, const char **data, size_t *len, struct bk_err *err);
void core_read_close(struct core_read *r);

struct core_entry {
	char *path; /* workspace-relative; owned */
	int64_t size;
	int64_t mtime_ms;
	bool is_dir;
};

/* Which page of a listing, and what came of it. */
struct core_list_page {
	int limit;	    /* 1..AGENT_LIST_LIMIT_MAX */
	int64_t offset;	    /* entries passed over (after cursor) */
	const char *cursor; /* the last path of the previous page, or NULL */
	/* out */
	int64_t total; /* entries of the whole listing (a lower bound past 100,000) */
	bool more;     /* entries follow the page: the next one is after its last path */
};

/* A page of a directory's entries ("" or NULL: the workspace), in strcmp
 * order of their paths, walked in the sandbox so that only the page comes
 * to the daemon. Free *out with core_entries_free(). */
int core_file_list(struct core *core, const struct core_key *key, const char *id, const char *path,
		   bool recursive, struct core_list_page *page, struct core_entry **out, size_t *n,
		   struct bk_err *err);
void core_entries_free(struct core_entry *es, size_t n);
/* A non-empty directory needs recursive (BK_E_CONFLICT otherwise). */
int core_file_delete(struct core *core, const struct core_key *key, const char *id,
		     const char *path, bool recursive, struct bk_err *err);

/* Files anywhere in the session's own file system (InstaVM's download and
 * upload): an absolute path is that path as the session sees it, reached
 * as its root (its VM spawned if it has none); a relative one is under
 * /workspace. /proc, /sys and /dev are not reached, the read-only image
 * refuses (BK_E_FORBIDDEN), and what is written belongs to the session's
 * user. Sizes are capped by the key's plan (BK_E_TOO_LARGE). Reads are
 * core_read_open() with anywhere. */

/* An upload in progress: begun, written as its bytes come, ended. */
struct core_upload;

int core_upload_begin(struct core *core, const struct core_key *key, const char *id,
		      const char *path, struct core_upload **out, struct bk_err *err);
/* Passes len more bytes on (held in the daemon a MiB at most). */
int core_upload_write(struct core_upload *u, const void *data, size_t len, struct bk_err *err);
/* The most memory u holds in the daemon from now on, for the client
 * budget: the chunk it gathers before it sends it on, as far as it ever
 * came (its pages stay until u ends), and as much again for the chunk's
 * copy in the message that sends it. */
size_t core_upload_held(const struct core_upload *u);
/* Ends u (freed): with commit, the file takes its name and *size its
 * length; without (the client left, the request was refused), what was
 * written goes and the old file stays. */
int core_upload_end(struct core_upload *u, bool commit, int64_t *size, struct bk_err *err);

/* ---- previews (core/preview.c) ---- */

/* An open preview connection: it holds its session awake (see
 * core_preview_dial()). */
struct core_preview;

/* The port of a session's web app in the buntime dialect: every execution
 * has PORT=8080 in its environment (core/exec.c). */
#define CORE_PREVIEW_PORT 8080

/* Whether host (a request's Host header, NUL-terminated) names a port of a
 * session's preview, compared without regard to case:
 *   "ses-<20>.<preview domain>"        port CORE_PREVIEW_PORT (buntime),
 *   "vm-<20>-<port>.<preview domain>"  that port (InstaVM's direct_url),
 * where <20> is the 20 characters of [a-z0-9] of the session's id and
 * <port> is 1..65535 without leading zeros. When the preview domain has a
 * port, host must have the same; when it has none, host may have any. On a
 * match, id (>= 32 bytes) receives the session id ("ses_<20 characters>",
 * lower case) and *port the port. Only the form is checked, not that the
 * session exists. */
bool core_preview_host(const struct core *core, const char *host, char *id, size_t len, int *port);
/* Whether s[0..n) has the form of a session id ("ses_" and 20 of [a-z0-9]). */
bool core_session_id_form(const char *s, size_t n);
/* The name of a session's sandbox in the InstaVM dialect ("vm-<20>"): it
 * is fixed for the session's life, as a session of the buntime dialect has
 * one sandbox from creation to deletion. len >= 32. */
void core_vm_id(const char *id, char *out, size_t len);
/* The URL of port of session id's preview host ("<scheme>://vm-<20>-<port>.
 * <preview domain>/"). */
void core_preview_port_url(const struct core *core, const char *id, int port, char *out,
			   size_t len);
/* The scheme of preview URLs ("http" or "https"), and their domain. */
const char *core_preview_scheme(const struct core *core);
const char *core_preview_domain(const struct core *core);

/* Connects to 127.0.0.1:port inside session id (any key's: a preview URL is
 * its own capability), waking the session first if it sleeps, and holds
 * the session active until core_preview_release(): the reaper neither
 * freezes nor saves it meanwhile, and a DELETE or expiry shuts the
 * connection down. *fd receives the connected socket (blocking, CLOEXEC),
 * which belongs to *out. BK_E_NOT_FOUND for a missing, deleted or expired
 * session; BK_E_UNAVAILABLE when nothing listens on port. */
int core_preview_dial(struct core *core, const char *id, int port, int *fd,
		      struct core_preview **out, struct bk_err *err);
/* Records activity on p's session (one request relayed). The store is
 * written at most once a second per session. Thread safe. */
void core_preview_touch(struct core_preview *p);
/* Whether p's session was deleted or expired under it: its socket is shut
 * down then, and whatever it holds is of no use any more. */
bool core_preview_cancelled(const struct core_preview *p);
/* Closes p's socket and lets its session sleep again when it is due. Call
 * it from the thread that dialed (it drops a read lock that thread took). */
void core_preview_release(struct core_preview *p);

/* ---- statistics (core/stats.c) ---- */

/* How many sessions the daemon holds now, of every key, sleeping or not. */
int64_t core_session_total(struct core *core);
/* The bytes sessions' outbound networks carried out of (*tx) and into
 * (*rx) their sandboxes since the daemon started, every session's
 * together (0 and 0 on a backend without networks); never less than an
 * earlier answer. */
void core_net_totals(struct core *core, int64_t *tx, int64_t *rx);
/* Bytes of executions' output the daemon holds now (struct core_config's
 * output budget). */
int64_t core_output_held(struct core *core);
/* A new charge of key against the output budget (release it with
 * budget_charge_release()); NULL when out of memory, or when core has no
 * budget (a NULL charge grants everything). */
struct budget_charge *core_output_charge_new(struct core *core, const struct core_key *key);
