/* What init/interp.c (runs and their interpreters' lives) and
 * init/interp_chan.c (an interpreter's process and its channel) share.
 *
 * The channel between init and a driver (src/init/drivers/) is two pipes
 * at fixed numbers in the driver:
 *   fd 60, requests, init -> driver: "<seq> <length> <timeout ms>\n" and
 *     then length bytes of program text (UTF-8). The timeout is what is
 *     left of the run's (0: none), for drivers that can bound code
 *     themselves (Bun's vm timeout).
 *   fd 61, answers, driver -> init, one line each: "R" once it is ready,
 *     "D <seq> <status>" once request seq has run and the driver has
 *     flushed its stdout and stderr.
 * A bash driver also gets fd 62, the write end of its own stdin (it feeds
 * itself one empty line per run; see drivers/bash.sh). stdin is /dev/null
 * for the others; stdout and stderr are pipes that init reads all the
 * time, forwarding to the run under way and dropping what comes between
 * runs.
 *
 * init is single-threaded: no lock.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "agent/proto.h"
#include "init/init.h"

#define INTERP_FD_REQ 60
#define INTERP_FD_ANS 61
#define INTERP_FD_SELF 62
/* An interrupted run's interpreter has this long to answer before its
 * process group is killed. */
#define INTERP_GRACE_US 1000000
/* And a new interpreter this long to say it is ready. */
#define INTERP_START_US 30000000

/* A run: from its RUN request until its answer. A free one is all zero. */
struct run {
	bool used;
	uint32_t req_id;
	struct agent_msg req; /* the request, owned: argv, env and code point into it */
	struct interp *in;
	struct run *next; /* in its interpreter's queue */
	/* The frame being written to the interpreter: hdr, then code. */
	char hdr[64];
	size_t hdr_len, off;
	const uint8_t *code;
	size_t code_len;
	uint64_t seq;
	size_t output_max, sent[2];
	int64_t arrived_us, deadline_us; /* monotonic; deadline 0: none */
	int64_t cpu_start_ns, maxrss_kb;
	int64_t interrupted_us; /* when SIGINT went to its interpreter; 0: not */
	bool timed_out, cancelled, interp_new;
};

enum interp_state {
	INTERP_FREE = 0,
	INTERP_STARTING, /* spawned, not yet ready */
	INTERP_READY,	 /* waiting for a request, or running cur */
	INTERP_ENDING,	 /* killed or told to end; gone once reaped */
};

/* An interpreter: the session's persistent one of a name, or a fresh one
 * of one run. The slot of a persistent one outlives its process: runs
 * queued when it ends start the next one in the same slot. */
struct interp {
	enum interp_state state;
	char name[32];
	bool fresh;
	pid_t pid;
	int out[2]; /* stdout, stderr (read ends, non-blocking); -1 once closed */
	int ans;    /* answers (read end) */
	int req;    /* requests (write end, non-blocking) */
	char line[128];
	size_t line_len;
	int64_t started_us;
	struct run *cur;	 /* the run it has been given */
	struct run *head, *tail; /* runs waiting for it */
	uint64_t next_seq;
	/* After an interrupted run, a run of empty code that nobody waits
	 * for goes first, so that a SIGINT that arrived late lands on it and
	 * not on the next user's run. */
	struct run sync;
	bool need_sync;
	bool unused;		   /* no run has reached its current process yet */
	bool exited;		   /* its process has ended (being reaped) */
	enum agent_interp_end end; /* why it is ENDING */
	char boot_err[512];	   /* the end of what it wrote to stderr before it was ready */
	size_t boot_err_len;
};

/* ---- init/interp_chan.c ---- */

/* Starts in's process for run r (whose request holds argv, env and the
 * user's ids) with its channel, STARTING. -1, r answered with what
 * failed, when it could not start. */
int interp__spawn(struct interp *in, struct run *r);
/* Queues r's frame as in's next request (seq assigned); writes what the
 * pipe takes. */
void interp__frame_begin(struct interp *in, struct run *r, int64_t timeout_ms);
/* Writes more of cur's frame; false when the interpreter is gone. */
bool interp__frame_write(struct interp *in, struct run *r);
/* Reads what in's answer pipe has, calling on_line for each whole line;
 * returns false at EOF or a line too long. */
bool interp__answers_read(struct interp *in, void (*on_line)(struct interp *in, const char *line));
/* Reads in's stdout and stderr: forwarded to r when not NULL, else
 * dropped (what a STARTING one writes to stderr is kept in boot_err).
 * max_reads as for proc_pump(). */
void interp__output_pump(struct interp *in, struct run *r, int max_reads);
/* Closes in's channel; its output pipes go to the drain list, where
 * processes it left running may keep writing to them. */
void interp__close(struct interp *in);
/* CPU time in's process and the children it waited for have used, ns. */
int64_t interp__cpu_ns(const struct interp *in);
/* The peak resident memory of in's process, kB. */
int64_t interp__maxrss_kb(const struct interp *in);
