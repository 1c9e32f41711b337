/* The isolation backend: the seam between core/ and whatever runs a
 * session's processes.
 *
 * A backend is a table of operations (struct sbx_ops, after crun's struct
 * libcrun_cgroup_manager) over its own state (struct sbx_backend), chosen
 * once at start-up by sbx_backend_open(). core/ calls a backend only
 * through its table; everything a backend needs to do its work (host id
 * ranges, cgroup names, mount points, where a session's files go while it
 * sleeps) lives below it. Today there is one backend, "namespaces"
 * (sandbox/ns.c): bunker-init as PID 1 in new user, mount, PID, network,
 * UTS, IPC and cgroup namespaces, its root an overlay of the read-only
 * image and the session's own disk. A microVM backend would be one more
 * table.
 *
 * Two things of a session belong to a backend:
 *   - its sandbox (struct sbx): processes, started, frozen and stopped;
 *   - its files: on a disk while it may run ("the disk"), or saved to
 *     storage while it sleeps ("the snapshot"). The disk outlives the
 *     sandbox: stop() ends every process but keeps the files, so a new
 *     sandbox started for the same id finds them again. Going to deep
 *     sleep is freeze(), files_save() (which keeps the disk), stop(),
 *     drop_disk(): the processes end only once their files are saved, so
 *     a save that fails leaves the session as it was.
 *
 * Every operation is safe to call from several threads for different
 * sessions; for one session, core/ serialises what changes it (start,
 * stop, adopt, freeze, the files_* operations) and may run the operations
 * that reach inside (exec, the file operations, dial, kill, ps) at the
 * same time as each other.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "util/budget.h"
#include "util/err.h"
#include "util/util.h"

/* The ids a session's processes run as: root is its PID 1, the user runs
 * executions and file operations. */
#define SBX_USER_UID 1000
#define SBX_USER_GID 1000
/* The working directory of every session; all request paths live in it. */
#define SBX_WORKSPACE "/workspace"
/* The longest shell command a sandbox can run as one argument (the
 * kernel's MAX_ARG_STRLEN); longer ones belong in a file. */
#define SBX_SHELL_COMMAND_MAX 131071

/* The longest data or snapshot directory: every path the backend builds
 * below one (sessions' layers, the image's files) then fits. */
#define SBX_DIR_MAX 256

struct sbx_backend_config {
	char data_dir[512];	/* the backend keeps its state below it */
	char snapshot_dir[512]; /* sessions' files at rest; "": <data_dir>/snapshots */
	char init_path[512];	/* the bunker-init binary */
	char bun_path[512];	/* the Bun binary that the image carries */
	/* The cgroup that holds every session's; "": derived from data_dir
	 * ("bunker" for /var/lib/bunker, "bunker-<hash>" for any other). */
	char cgroup_parent[64];
	/* Host id ranges of this backend: sessions map their ids to one of
	 * slot_count ranges from slot_first on (0 and 0: all of them). Two
	 * daemons on one host need ranges that do not overlap. */
	int slot_first, slot_count;
	/* What the pids limits of running sandboxes may add up to (0: half
	 * of the kernel's pid_max or threads-max, whichever is lower). */
	int64_t pids_budget;
	/* What the snapshots together may take (0: half of the file system
	 * that holds them), and what a save leaves free there (0: 5%). */
	int64_t snapshot_max_bytes, snapshot_min_free_bytes;
	/* Deep sleep saves a tar of the session's files rather than an image
	 * that the wake mounts: for a daemon with checkpoints, whose first
	 * checkpoint after a wake is the snapshot it woke from. */
	bool tar_snapshots;
	/* Outbound network (sandbox/egress.c): the IPv4 range of sessions'
	 * interfaces ("": 10.213.0.0/16; a /16../22, each session a /30 of
	 * it), and a file of "ADDRESS NAME" lines the sessions' resolver
	 * answers from before it asks anyone (for tests; "": none), and the
	 * "ADDRESS[:PORT]" it forwards other names to ("": the first IPv4
	 * nameserver of /etc/resolv.conf). */
	char egress_net[32];
	char dns_hosts[512];
	char dns_upstream[32];
};

/* A session's outbound network, as the backend enforces it. Every
 * destination that is the host itself, another session, link-local (the
 * cloud metadata address among them), multicast or broadcast is refused
 * whatever this says; private ranges (RFC 1918, CGNAT) only open through
 * a CIDR inside them (0.0.0.0/0 opens none). IPv6 is off in sessions. */
#define SBX_NET_DOMAINS_MAX 64 /* of a policy */
/* The names allow_package_managers adds (core/network.c), at most. */
#define SBX_NET_REGISTRIES_MAX 8
#define SBX_NET_CIDRS_MAX 64
#define SBX_NET_DOMAIN_MAX 254
struct sbx_net_cidr {
	uint32_t addr; /* host order, host bits zero */
	int prefix;    /* 0..32 */
};
struct sbx_net {
	bool enabled;	  /* false: loopback only, nothing else below counts */
	bool http, https; /* TCP 80 / 443 to any public address, any name resolves */
	int mbps;	  /* bandwidth each way */
	int connections;  /* connections open at once */
	/* Names the session's resolver answers, each opening every port of
	 * the addresses its answers carried, for their TTL (DNS pinning):
	 * "example.com" that name, "*.example.com" the names below it. */
	size_t n_domains;
	char domains[SBX_NET_REGISTRIES_MAX + SBX_NET_DOMAINS_MAX][SBX_NET_DOMAIN_MAX];
	/* Destinations open on every port. */
	size_t n_cidrs;
	struct sbx_net_cidr cidrs[SBX_NET_CIDRS_MAX];
};

struct sbx_limits {
	int memory_mb;
	double cpu; /* cores; 0.25 is a quarter of one */
	int disk_mb;
	int pids;
};

/* The base of every backend's state and of every sandbox: a backend's own
 * structs begin with these. */
struct sbx_backend {
	const struct sbx_ops *ops;
};

struct agent_conn;

struct sbx {
	struct sbx_backend *backend;
	char id[32]; /* the session it belongs to now (adopt() changes it) */
	/* The channel to the sandbox's bunker-init, for backends whose
	 * sandboxes run one (sandbox/agent_ops.h); NULL otherwise. */
	struct agent_conn *agent;
	/* The last lease() given, ms; 0: none. */
	int lease_ms;
};

/* What runs in an execution. */
enum sbx_program {
	SBX_PROGRAM_SHELL, /* text is a command for /bin/sh -c */
	SBX_PROGRAM_BUN,   /* text is JavaScript or TypeScript, run by Bun from stdin */
};

struct sbx_exec_req {
	enum sbx_program program;
	const char *text; /* NUL-terminated */
	/* "NAME=value" entries on top of the image's base environment (PATH,
	 * HOME, LANG...), replacing those of the same name; NULL-terminated,
	 * may be NULL. */
	const char *const *envp;
	const char *cwd;     /* absolute, inside the sandbox; NULL: the workspace */
	int64_t timeout_ms;  /* 0: none */
	size_t output_max;   /* per stream; beyond it output is cut */
	bool report_written; /* list the workspace files the exec changed */
	/* What the output kept may take of the daemon's memory (borrowed;
	 * NULL: no bound but output_max): a stream is cut where the charge
	 * grants no more, as at output_max, and stays cut. */
	struct budget_charge *charge;
	/* Called (from the calling thread) as output arrives (what is kept
	 * of it); may be NULL. */
	void (*on_output)(void *ctx, int stream, const char *data, size_t len);
	/* Polled a few times a second when set: true kills the execution's
	 * process group. */
	bool (*cancelled)(void *ctx);
	void *ctx;
};

struct sbx_exec_result {
	int exit_code;
	int signal; /* the signal that ended it, 0 if it exited */
	bool timed_out;
	bool oom_killed;     /* the memory cgroup killed a process meanwhile */
	struct buf out, err; /* stdout and stderr as forwarded */
	bool out_truncated, err_truncated;
	int64_t wall_us, cpu_us, maxrss_kb;
	char **written; /* workspace-relative paths; NULL-terminated, owned */
	size_t n_written;
	pid_t pid; /* of a run: its interpreter's */
	/* Runs only (struct sbx_ops' run): */
	bool interp_started; /* a new interpreter was started for it (none ran, or one was lost) */
	bool interp_lost;    /* its interpreter ended during it: the state is gone */
};

void sbx_exec_result_release(struct sbx_exec_result *r);

/* The languages of persistent interpreters (struct sbx_ops' run). */
enum sbx_language {
	SBX_LANG_PYTHON,
	SBX_LANG_BASH,
	SBX_LANG_JAVASCRIPT,
	SBX_LANG_TYPESCRIPT,
};
#define SBX_LANG_COUNT 4

/* A run: program text for the session's interpreter of a language. */
struct sbx_run_req {
	enum sbx_language language;
	const char *code; /* NUL-terminated program text */
	/* "NAME=value" entries on top of the image's environment, given to an
	 * interpreter when a run starts it (the session's env): a persistent
	 * interpreter keeps the environment it started with. NULL-terminated,
	 * may be NULL. */
	const char *const *envp;
	/* Interrupt the run this long after the sandbox receives it (time
	 * queued behind other runs and an interpreter's start count); 0:
	 * none. */
	int64_t timeout_ms;
	size_t output_max;	      /* per stream; beyond it output is cut */
	struct budget_charge *charge; /* as in struct sbx_exec_req */
	/* A one-shot interpreter of this run's own, started for it and ended
	 * after it (its state never seen by another run), that runs in
	 * parallel with every other run; never the session's persistent one. */
	bool fresh;
	/* As in struct sbx_exec_req: output as it arrives (may be NULL), and
	 * a poll that, when true, interrupts the run as its timeout would. */
	void (*on_output)(void *ctx, int stream, const char *data, size_t len);
	bool (*cancelled)(void *ctx);
	void *ctx;
};

struct sbx_proc {
	pid_t pid;	    /* as the session sees it */
	int64_t started_ms; /* since the epoch */
	char command[256];
};

struct sbx_entry {
	char *path; /* workspace-relative; owned */
	int64_t size;
	int64_t mtime_ms;
	bool is_dir;
};

void sbx_entries_free(struct sbx_entry *es, size_t n);

/* A page of a listing: at most limit entries, in strcmp order of their
 * paths, after cursor (NULL: from the start) and offset more. */
struct sbx_list_req {
	const char *path;
	bool recursive;
	int limit;
	int64_t offset;
	const char *cursor;
	/* out: the entries of the whole listing (a lower bound past
	 * AGENT_MAX_ENTRIES), and whether some follow the page */
	int64_t total;
	bool more;
};

/* Which file a read's pieces come from (struct agent_file_id's fields). */
struct sbx_file_id {
	int64_t v[5];
};

/* One piece of a file being read (sbx_ops.read_piece). */
struct sbx_read {
	const char *path; /* workspace-relative; absolute when anywhere */
	bool anywhere;
	int64_t max;	 /* the largest file read */
	int64_t offset;	 /* of the piece */
	bool check_utf8; /* say whether the whole file is UTF-8 (utf8) */
	/* In for every piece but the first: the file must still be this one
	 * (BK_E_INTERNAL otherwise). Out from the first. */
	bool have_id;
	struct sbx_file_id id;
	/* out */
	int64_t size; /* when it was first opened */
	bool utf8;
};

/* One chunk of a transfer into a file anywhere in the session's own file
 * system (struct sbx_ops' write_path). */
struct sbx_transfer {
	const char *path;  /* absolute, as the session sees it */
	const char *token; /* names the transfer: 1..32 of [A-Za-z0-9] */
	int64_t offset;	   /* where this chunk goes: 0 first, then what came before */
	bool final;	   /* the last chunk: the file takes path's name */
	bool abort;	   /* the transfer is abandoned: what it wrote goes */
};

/* A session's figures, read without waking it. */
struct sbx_stats {
	int64_t files;	      /* regular files in its workspace, awake or asleep */
	int64_t processes;    /* its processes but PID 1 (0 when none runs) */
	int64_t memory_bytes; /* what its processes and files use now (0 when none runs) */
};

/* Where a session's files are. */
struct sbx_files_state {
	bool disk;     /* on a disk of the host, ready for a sandbox */
	bool snapshot; /* saved to storage */
	/* A checkpoint of an awake session's files on storage: what a node
	 * that takes the session over continues from. */
	bool checkpoint;
};

struct sbx_save_stats {
	int64_t files;	   /* entries saved */
	int64_t bytes_in;  /* bytes of file content read */
	int64_t bytes_out; /* size of the snapshot */
	int64_t skipped;   /* sockets, which a snapshot cannot hold, left out */
};

struct sbx_ops {
	const char *name;

	/* ---- the backend ---- */

	/* Ends what the backend runs (sandboxes must be stopped first) and
	 * frees it; files stay. */
	void (*close)(struct sbx_backend *b);
	/* A line that says what isolates sessions here ("namespaces, cgroup
	 * v1"), for logs and /healthz. */
	void (*describe)(struct sbx_backend *b, char *out, size_t len);
	/* At start-up, once core/ knows its sessions: removes whatever the
	 * backend holds on the host for an id that known() does not claim
	 * (sandboxes of an earlier run, files of a session whose record is
	 * gone) and ends every leftover process of a known one (its files
	 * stay). known(ctx, id, true) asks whether id runs on this host (its
	 * disk stays), known(ctx, id, false) whether it exists at all (its
	 * snapshot and checkpoint stay: they may be another node's). */
	void (*reconcile)(struct sbx_backend *b,
			  bool (*known)(void *ctx, const char *id, bool here), void *ctx);

	/* ---- a sandbox's life ---- */

	/* Starts a sandbox for session id, creating its disk when it has none
	 * and keeping it when it has. *out is new; end it with stop().
	 * BK_E_UNAVAILABLE when the host has no room for one more (its
	 * processes budget or its id ranges are taken). */
	int (*start)(struct sbx_backend *b, const char *id, const struct sbx_limits *limits,
		     struct sbx **out, struct bk_err *err);
	/* Hands a running sandbox (started ahead of need under a placeholder
	 * id) to session id with new limits, the disk's size included. On
	 * failure the sandbox keeps its old id and should be stopped. */
	int (*adopt)(struct sbx *s, const char *id, const struct sbx_limits *limits,
		     struct bk_err *err);
	/* Kills every process of s and wakes every call waiting on it, freeing
	 * nothing: safe while other threads are inside s. */
	void (*terminate)(struct sbx *s);
	/* Ends every process of s, keeps its files, and frees s. */
	void (*stop)(struct sbx *s);
	/* Freezes every process of s (memory kept, no CPU), or thaws it. */
	int (*freeze)(struct sbx *s, bool frozen, struct bk_err *err);
	/* False once s's PID 1 has gone (killed, or its channel broke). */
	bool (*alive)(struct sbx *s);
	/* Arms (or, with 0, disarms) s's dead man's switch: every process of
	 * s ends when timeout_ms pass without another lease() (a thaw
	 * renews it). Never blocks for long: a frozen sandbox's lease waits
	 * in its channel. May be NULL (nothing of s outlives its daemon). */
	void (*lease)(struct sbx *s, int timeout_ms);

	/* ---- reaching in (several at once on one sandbox) ---- */

	/* Runs one execution as the session's user and waits for its main
	 * process to end. The user's program failing is a result, not an
	 * error; an error is the sandbox failing (BK_E_INTERNAL), a request
	 * it cannot start (BK_E_INVALID: no such working directory), or a
	 * limit (BK_E_LIMIT, BK_E_NO_MEMORY). */
	int (*exec)(struct sbx *s, const struct sbx_exec_req *req, struct sbx_exec_result *res,
		    struct bk_err *err);
	/* Runs req's code in the session's persistent interpreter of its
	 * language (one per language, started as the session's user on first
	 * use with the hardening of an execution, in a process group of its
	 * own; listed by ps, ended by kill of every process) and waits for it.
	 * Runs of one language queue and run one at a time in the order they
	 * came; fresh ones get interpreters of their own. State persists from
	 * run to run: Python globals and imports, bash's working directory,
	 * exports, functions and aliases, JavaScript/TypeScript top-level
	 * declarations (JavaScript and TypeScript are two interpreters). A
	 * bare last expression prints its value (Python: repr unless None;
	 * JS/TS: Bun.inspect unless undefined).
	 *
	 * res: stdout and stderr are this run's; exit_code is the code's
	 * status (0, 1 after an exception, bash's $?), the interpreter's exit
	 * code when the code ended it (sys.exit(3), exit 4, process.exit(2);
	 * 128 + the signal when one killed it), 124 past the timeout (with
	 * timed_out, the output so far and a last stderr line saying so),
	 * 130 when cancelled. An interpreter that does not stop within a
	 * second of its interrupt is killed. interp_lost says the state is
	 * gone (and a last stderr line says why: an exit, a crash, the memory
	 * limit with oom_killed, an interrupt not answered); the next run
	 * starts a new interpreter. cpu_us is what this run used, wall_us
	 * its time from arrival to answer, maxrss_kb the interpreter's peak.
	 *
	 * Errors as for exec; BK_E_LIMIT also when the session has as many
	 * interpreters (one per language and 8 fresh ones) or runs (64)
	 * under way as it may, BK_E_TOO_LARGE for code over the channel's
	 * frame. */
	int (*run)(struct sbx *s, const struct sbx_run_req *req, struct sbx_exec_result *res,
		   struct bk_err *err);
	/* Writes data to path (relative to the workspace) as the session's
	 * user, creating parents; a path that resolves outside the workspace
	 * is BK_E_INVALID, a full disk BK_E_NO_SPACE. */
	int (*write_file)(struct sbx *s, const char *path, const void *data, size_t len,
			  struct bk_err *err);
	/* Writes one chunk of a transfer (t) anywhere in the session's own
	 * file system as its root, creating missing parents; what it creates
	 * belongs to the session's user. The image is read-only
	 * (BK_E_FORBIDDEN), a full disk BK_E_NO_SPACE. */
	int (*write_path)(struct sbx *s, const struct sbx_transfer *t, const void *data, size_t len,
			  struct bk_err *err);
	/* Reads one piece of a file (see struct sbx_read) into buf (cap bytes
	 * at most): the piece's bytes in *got, fewer than asked only at the
	 * file's end. A workspace file is read as the session's user; one
	 * anywhere (rd->anywhere) as the session's root, /proc, /sys and /dev
	 * not reached (BK_E_FORBIDDEN). Over rd->max: BK_E_TOO_LARGE. */
	int (*read_piece)(struct sbx *s, struct sbx_read *rd, void *buf, size_t cap, size_t *got,
			  struct bk_err *err);
	/* One page of a workspace directory's listing (see struct
	 * sbx_list_req; "" is the workspace), recursively or not; symlinks are
	 * listed, never followed. Free *out with sbx_entries_free(). */
	int (*list)(struct sbx *s, struct sbx_list_req *req, struct sbx_entry **out, size_t *n,
		    struct bk_err *err);
	/* The mode of a workspace path as the session's user sees it. */
	int (*stat)(struct sbx *s, const char *path, mode_t *mode, struct bk_err *err);
	/* Deletes a workspace file or directory; a non-empty directory needs
	 * recursive (BK_E_CONFLICT otherwise). */
	int (*remove)(struct sbx *s, const char *path, bool recursive, struct bk_err *err);
	/* SIGKILLs pid inside the sandbox, or every process but PID 1 when pid
	 * is 0 (BK_E_PROCESS_NOT_FOUND: no such process). */
	int (*kill)(struct sbx *s, pid_t pid, struct bk_err *err);
	/* The sandbox's processes but PID 1; *out is malloc'd (caller frees). */
	int (*ps)(struct sbx *s, struct sbx_proc **out, size_t *n, struct bk_err *err);
	/* A TCP connection to 127.0.0.1:port inside the sandbox, made from the
	 * calling thread: the connected fd (blocking, CLOEXEC), or -1 with
	 * BK_E_UNAVAILABLE when nothing listens there. */
	int (*dial)(struct sbx *s, int port, int timeout_ms, struct bk_err *err);

	/* Sets s's outbound network to net, at once and without a restart:
	 * the first grant gives it an interface, net->enabled false takes it
	 * away; new connections follow net from now on and open ones to a
	 * destination it no longer allows are cut. BK_E_UNAVAILABLE when
	 * this host cannot give sessions a network. */
	int (*net_set)(struct sbx *s, const struct sbx_net *net, struct bk_err *err);
	/* Gives s an interface that passes nothing yet, so that a later
	 * net_set that grants has only its policy to write (the warm pool
	 * prepares some sandboxes so). May be NULL; BK_E_UNAVAILABLE when
	 * this host cannot give sessions a network. */
	int (*net_prepare)(struct sbx *s, struct bk_err *err);
	/* The bytes s's outbound networks carried out of (*tx) and into (*rx)
	 * the sandbox since it started, those of a network since taken away
	 * included: an answer is never less than an earlier one for s. 0 and
	 * 0 for a sandbox that never had one. */
	void (*net_bytes)(struct sbx *s, int64_t *tx, int64_t *rx);

	/* ---- figures ---- */

	/* Session id's figures, whether a sandbox runs or not. */
	void (*stats)(struct sbx_backend *b, const char *id, struct sbx_stats *out);
	/* The bytes every sandbox's outbound networks carried out of (*tx)
	 * and into (*rx) their sandboxes since the backend opened, those gone
	 * included: an answer is never less than an earlier one. */
	void (*net_totals)(struct sbx_backend *b, int64_t *tx, int64_t *rx);

	/* ---- a session's files at rest (no sandbox may run for id, but
	 * one may be frozen for files_save) ---- */

	struct sbx_files_state (*files_state)(struct sbx_backend *b, const char *id);
	/* Saves the disk to a snapshot (which appears whole or not at all),
	 * replacing any snapshot there, and keeps the disk: release it with
	 * drop_disk() once the sandbox is stopped. The sandbox of id, if
	 * one runs, must be frozen: nothing may change the files meanwhile.
	 * Sockets are left out (stats->skipped). BK_E_NO_SPACE when the
	 * snapshot storage has no room for it (its cap, or the free space it
	 * must keep), BK_E_TOO_LARGE for a tree a snapshot cannot hold. On
	 * failure there is no new snapshot and the disk is as it was. */
	int (*files_save)(struct sbx_backend *b, const char *id, struct sbx_save_stats *stats,
			  struct bk_err *err);
	/* Fills a new disk of disk_mb from the snapshot (a disk already there
	 * is dropped first); without a snapshot, does nothing. On failure no
	 * disk is left. */
	int (*files_restore)(struct sbx_backend *b, const char *id, int disk_mb,
			     struct bk_err *err);
	/* Releases the disk (the files on it are gone unless saved). */
	int (*drop_disk)(struct sbx_backend *b, const char *id, struct bk_err *err);
	/* Removes the snapshot. */
	void (*drop_snapshot)(struct sbx_backend *b, const char *id);
	/* Saves the disk to a checkpoint, as files_save() does to a snapshot
	 * (the sandbox must be frozen), replacing any checkpoint there: what
	 * the session continues from if its node dies awake. May be NULL. */
	int (*files_checkpoint)(struct sbx_backend *b, const char *id, struct sbx_save_stats *stats,
				struct bk_err *err);
	/* Renames the checkpoint to the snapshot (to_snapshot: the session
	 * sleeps in it now) or the snapshot to the checkpoint (it woke from
	 * it, and its files are those until the next checkpoint), replacing
	 * what was there: 1 when moved, 0 when there was none, -1 with err. */
	int (*checkpoint_move)(struct sbx_backend *b, const char *id, bool to_snapshot,
			       struct bk_err *err);
	/* Removes the checkpoint. */
	void (*drop_checkpoint)(struct sbx_backend *b, const char *id);
	/* Regular workspace files the snapshot holds. */
	int64_t (*snapshot_files)(struct sbx_backend *b, const char *id);
	/* Removes everything of id: disk, snapshot, leftovers on the host. */
	int (*purge)(struct sbx_backend *b, const char *id, struct bk_err *err);
};

/* Opens the backend for this host ("namespaces"): detects the cgroup
 * version, prepares its directories and builds the default image when it
 * is missing. *out is new; close it with (*out)->ops->close(). */
int sbx_backend_open(const struct sbx_backend_config *cfg, struct sbx_backend **out,
		     struct bk_err *err);
/* What sbx_backend_open() would find here, without setting anything up
 * ("namespaces, cgroup v2"), or why it cannot run. */
void sbx_backend_probe(char *out, size_t len);

/* Moves the process into the daemon's own mount namespace for data_dir
 * (sandbox/mntns.c): the one an earlier run left on
 * /run/bunker/<instance>/mnt, with the session disks it kept
 * (*reentered true), else a new slave of the current one, kept there. The
 * session mounts the backend makes then stay out of the host's table. To
 * be called before any thread exists (refused otherwise), with data_dir
 * absolute; the backend's close releases the namespace when no disk is
 * left in it. */
int sbx_mount_ns_enter(const char *data_dir, bool *reentered, struct bk_err *err);
/* The name of data_dir's daemon on the host: "bunker" for
 * /var/lib/bunker, "bunker-<FNV-1a of the path, hex>" for any other. It
 * names the parent cgroup (unless configured) and /run/bunker/<name>/. */
void sbx_instance_name(const char *data_dir, char *out, size_t len);
/* That hash (of any data directory): it also names the daemon's egress
 * table and interfaces. */
uint32_t sbx_instance_hash(const char *data_dir);
