/* What bunker-init reads of the daemon's requests (init/request.c): the
 * fields, copied out of the payload (which is not NUL-terminated) and
 * checked, before any handler acts on them. Kept apart from the handlers'
 * system calls so that tests/fuzz/agent_init.c can feed them any bytes. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "agent/proto.h"

/* Strings of an EXEC (ARGV, ENV) and of a RUN, at most, the NULL included. */
#define INIT_ARGS_MAX 256

/* What an EXEC request asks for, its strings copied out into strs. */
struct init_exec_spec {
	char *argv[INIT_ARGS_MAX], *envp[INIT_ARGS_MAX]; /* NULL-terminated */
	const char *cwd;
	struct agent_field stdin_data, watch; /* borrowed from the request */
	bool has_stdin, has_watch;
	uid_t uid;
	gid_t gid;
	int64_t timeout_ms;
};

/* Reads req into s; strs has room for its payload and 256 bytes more. */
void init_exec_spec_read(const struct agent_msg *req, char *strs, struct init_exec_spec *s);
/* The NULL-terminated list of req's fields with tag (at most
 * INIT_ARGS_MAX - 1 of them), copied out into one allocation that the
 * caller frees; NULL when there is no memory. */
char **init_req_strings(const struct agent_msg *req, uint16_t tag);
/* The request's PATH field as a string into out[0..len): false when it is
 * absent, too long or holds a NUL; "" is the workspace itself. */
bool init_req_path(const struct agent_msg *req, char *out, size_t len);
/* The request's PATH: absolute, without NUL, and relative to "/" in rel
 * (false otherwise). */
bool init_req_abs_path(const struct agent_msg *req, char *rel, size_t len);
/* When a request that arrived at from_us with TIMEOUT_MS timeout_ms must
 * end: 0 for none (timeout_ms <= 0), and never past INT64_MAX, whatever
 * timeout_ms says. */
int64_t init_deadline_us(int64_t from_us, int64_t timeout_ms);
