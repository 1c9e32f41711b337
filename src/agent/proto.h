/* The wire protocol between bunkerd and bunker-init (PID 1 of a sandbox).
 *
 * A frame is a 12-byte header (payload length, message type, protocol
 * version, request id, all in host byte order: both ends run on one
 * machine) followed by the payload: a sequence of fields, each a 2-byte tag,
 * a 4-byte length and that many bytes. Unknown tags are skipped, so a field
 * can be added without a version bump; a changed meaning bumps
 * AGENT_PROTO_VERSION, which init announces in its HELLO.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define AGENT_PROTO_VERSION 1
/* Large enough for one file of the largest plan's size limit plus fields. */
#define AGENT_MAX_PAYLOAD (160u * 1024 * 1024)

enum agent_type {
	AGENT_HELLO = 1,    /* init -> d: VERSION */
	AGENT_EXEC,	    /* d -> init: ARGV*, ENV*, CWD, STDIN, TIMEOUT_MS, UID, GID, WATCH */
	AGENT_EXEC_STARTED, /* init -> d: PID */
	AGENT_OUTPUT,	    /* init -> d: STREAM, DATA */
	AGENT_EXEC_DONE,    /* init -> d: EXIT_CODE, SIGNAL, TIMED_OUT, UTIME_US, STIME_US,
			       MAXRSS_KB, WALL_US, PATH* (files written) */
	AGENT_WRITE_FILE,   /* d -> init: PATH, DATA, MODE, UID, GID */
	AGENT_RESULT,	    /* init -> d: ERRNO, MESSAGE; the answer to any other request */
	AGENT_KILL,	    /* d -> init: PID (0: every user process) */
	AGENT_PS,	    /* d -> init; answered by a RESULT with one PROC per process */
	/* d -> init: PATH, MAX, UID, GID, OFFSET, LENGTH, UTF8, FILE_ID; RESULT with
	 * SIZE, FILE_ID, UTF8 and DATA (one piece: see AGENT_T_LENGTH) */
	AGENT_READ_FILE,
	/* d -> init: PATH, RECURSIVE, UID, GID, LIMIT, OFFSET, CURSOR; RESULT with
	 * ENTRY* (at most LIMIT, in strcmp order of their paths), TOTAL, MORE */
	AGENT_LIST,
	AGENT_DELETE, /* d -> init: PATH, RECURSIVE, UID, GID; RESULT */
	AGENT_STAT,   /* d -> init: PATH, UID, GID; RESULT with MODE */
	/* Files anywhere in the session's own file system, as its root: */
	AGENT_WRITE_PATH, /* d -> init: PATH (absolute), TOKEN, OFFSET, DATA, FINAL, ABORT,
			     UID, GID (the owner of what is created); RESULT */
	AGENT_READ_PATH,  /* d -> init: PATH (absolute), MAX, and the rest as READ_FILE */
	/* d -> init: INTERP, ARGV*, ENV*, CWD, CODE, TIMEOUT_MS, OUTPUT_MAX, UID,
	 * GID, FRESH, SELF_FEED. Answered like an EXEC (EXEC_STARTED when the run reaches its
	 * interpreter, OUTPUT, EXEC_DONE with INTERP_NEW and INTERP_END), or a
	 * RESULT saying why it cannot run. */
	AGENT_RUN,
	AGENT_INTERRUPT, /* d -> init: TARGET (a RUN's request id); RESULT */
	/* d -> init: TIMEOUT_MS; no answer. init ends the sandbox (every
	 * process, itself last) when TIMEOUT_MS pass with no further LEASE;
	 * 0 disarms. A node of a cluster that cannot renew its own lease in
	 * the store stops sending them, so that its sessions end before
	 * another node may take them over. */
	AGENT_LEASE,
};

enum agent_tag {
	AGENT_T_VERSION = 1,
	AGENT_T_ARGV,
	AGENT_T_ENV,
	AGENT_T_CWD,
	AGENT_T_STDIN,
	AGENT_T_TIMEOUT_MS,
	AGENT_T_UID,
	AGENT_T_GID,
	AGENT_T_WATCH, /* directory whose changes during an exec are reported */
	AGENT_T_PID,
	AGENT_T_STREAM, /* 1 stdout, 2 stderr */
	AGENT_T_DATA,
	AGENT_T_EXIT_CODE,
	AGENT_T_SIGNAL,
	AGENT_T_TIMED_OUT,
	AGENT_T_UTIME_US,
	AGENT_T_STIME_US,
	AGENT_T_MAXRSS_KB,
	AGENT_T_WALL_US,
	AGENT_T_PATH,
	AGENT_T_MODE,
	AGENT_T_ERRNO,
	AGENT_T_MESSAGE,
	AGENT_T_STAGE,	    /* where an exec failed before running: "chdir", "exec", ... */
	AGENT_T_OUTPUT_MAX, /* bytes of each stream to forward; the rest is discarded */
	AGENT_T_TRUNCATED,  /* bit 1: stdout was cut, bit 2: stderr */
	AGENT_T_START_NS,   /* CLOCK_REALTIME when the exec started */
	AGENT_T_PROC,	    /* "<pid>\t<start, ms since the epoch>\t<command line>" */
	AGENT_T_MAX,	    /* largest file to read, bytes */
	AGENT_T_RECURSIVE,
	AGENT_T_ENTRY,	    /* "<d|f>\t<size>\t<mtime, ms since the epoch>\t<path>" */
	AGENT_T_GROUP,	    /* with KILL: the pid's whole process group */
	AGENT_T_TOKEN,	    /* with WRITE_PATH: names the transfer's temporary file */
	AGENT_T_OFFSET,	    /* with WRITE_PATH: where DATA goes */
	AGENT_T_FINAL,	    /* with WRITE_PATH: the last chunk; the file takes its name */
	AGENT_T_ABORT,	    /* with WRITE_PATH: the transfer is abandoned */
	AGENT_T_INTERP,	    /* a run's interpreter: one persistent one per name */
	AGENT_T_CODE,	    /* a run's program text */
	AGENT_T_FRESH,	    /* a one-shot interpreter of the run's own */
	AGENT_T_INTERP_NEW, /* the run started its interpreter */
	AGENT_T_INTERP_END, /* enum agent_interp_end */
	AGENT_T_TARGET,	    /* the request an INTERRUPT is for */
	AGENT_T_SELF_FEED,  /* with RUN: the interpreter's stdin is a pipe it holds the write end of
			     */
	/* With READ_FILE, READ_PATH: a file is read a piece at a time, each
	 * piece a request of its own (OFFSET, LENGTH), so that neither end
	 * holds more than a piece of it. */
	AGENT_T_LENGTH,	 /* the piece's bytes; absent: the whole file */
	AGENT_T_SIZE,	 /* the file's size when it was opened */
	AGENT_T_UTF8,	 /* asked: say whether the whole file is UTF-8; answered: 1 or 0 */
	AGENT_T_FILE_ID, /* struct agent_file_id: a piece of another file is ESTALE */
	/* With LIST: */
	AGENT_T_LIMIT,	/* the most ENTRY fields answered */
	AGENT_T_CURSOR, /* only paths that sort after this one (strcmp) */
	AGENT_T_TOTAL,	/* every entry the walk counted */
	AGENT_T_MORE,	/* entries after the last answered */
};

/* Which file a read's pieces come from: a piece is refused (ESTALE) when
 * the file at the path is no longer the one the first piece came from, or
 * was changed since (its size, mtime or ctime). */
struct agent_file_id {
	int64_t dev, ino, size, mtime_ns, ctime_ns;
};

/* The largest piece of a file one READ_FILE/READ_PATH answers. */
#define AGENT_READ_PIECE_MAX (1u << 20)
/* What a listing's walk may hold of directory names at once, over every
 * level it is down (a directory past it: E2BIG). */
#define AGENT_LIST_NAMES_MAX (8u << 20)

/* What became of a run's interpreter (AGENT_T_INTERP_END). */
enum agent_interp_end {
	AGENT_INTERP_KEPT = 0, /* it runs on, its state kept */
	AGENT_INTERP_EXITED,   /* the run ended it (exit(), sys.exit()): EXIT_CODE */
	AGENT_INTERP_DIED,     /* a signal ended it (a crash, a kill, the OOM killer): SIGNAL */
	AGENT_INTERP_KILLED,   /* it ignored its interrupt and init killed it */
	AGENT_INTERP_BROKEN,   /* it broke the channel's protocol and init killed it */
};

/* A listing counts its entries for TOTAL up to this many; past it, once
 * its page is full, the walk stops (TOTAL is then a lower bound). */
#define AGENT_MAX_ENTRIES 100000
/* At most this many entries are answered per LIST request. */
#define AGENT_LIST_LIMIT_MAX 1000
/* At most this many processes are read of a PS answer (the kernel's
 * default pid_max: more than any session's pids limit). */
#define AGENT_MAX_PROCS 32768

/* Every exec writes, the daemon's side included, inside this directory. */
#define AGENT_WORKSPACE "/workspace"
/* At most this many changed paths are reported per exec. */
#define AGENT_MAX_WRITTEN 1000

struct agent_hdr {
	uint32_t len;
	uint16_t type;
	uint16_t version;
	uint32_t req_id;
};

/* A message being built or one received. Owns payload. */
struct agent_msg {
	uint16_t type;
	uint16_t version;
	uint32_t req_id;
	uint8_t *payload;
	size_t len, cap;
};

struct agent_field {
	uint16_t tag;
	uint32_t len;
	const uint8_t *data;
};

void agent_msg_init(struct agent_msg *m, uint16_t type, uint32_t req_id);
void agent_msg_release(struct agent_msg *m);

/* Appenders return 0, or -1 with errno ENOMEM or EMSGSIZE. */
int agent_msg_put(struct agent_msg *m, uint16_t tag, const void *data, size_t len);
int agent_msg_put_str(struct agent_msg *m, uint16_t tag, const char *s);
int agent_msg_put_i64(struct agent_msg *m, uint16_t tag, int64_t v);

/* Sends the whole frame, blocking. Not thread safe: callers serialise. */
int agent_msg_send(int fd, const struct agent_msg *m);
/* Receives one whole frame into m (which it initialises), blocking.
 * Returns 1 with a frame, 0 at EOF before a header, -1 on error (errno;
 * EPROTO for a frame that breaks the limits). */
int agent_msg_recv(int fd, struct agent_msg *m);

/* Iterates the fields: start with *off = 0; returns false at the end or at a
 * malformed field. */
bool agent_msg_next(const struct agent_msg *m, size_t *off, struct agent_field *f);
/* The first field with tag into *f, or false (and *f untouched). */
bool agent_msg_find(const struct agent_msg *m, uint16_t tag, struct agent_field *f);
int64_t agent_field_i64(const struct agent_field *f);
/* The first field with tag as an integer, or def when absent. */
int64_t agent_msg_get_i64(const struct agent_msg *m, uint16_t tag, int64_t def);
