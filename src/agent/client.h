/* The daemon's end of one sandbox's agent connection.
 *
 * One reader thread per connection sorts incoming frames by request id into
 * the calls waiting for them, so that several executions and file
 * operations can be under way in one sandbox at once. All functions are
 * thread safe.
 */
#pragma once

#include <stdbool.h>

#include "agent/proto.h"
#include "util/err.h"

struct agent_conn;
struct agent_call;

/* Takes ownership of fd (a connected stream socket), waits up to timeout_ms
 * for init's HELLO, checks its protocol version and starts the reader.
 * On failure fd is closed. */
int agent_conn_open_take(int fd, int timeout_ms, struct agent_conn **out, struct bk_err *err);
/* Shuts the connection down (every waiting call sees its end), joins the
 * reader and drops the caller's reference; the memory goes with the last
 * call that still holds one. */
void agent_conn_close(struct agent_conn *c);
/* Shuts the socket down without freeing: wakes every waiting call. */
void agent_conn_shutdown(struct agent_conn *c);
bool agent_conn_alive(struct agent_conn *c);

/* Assigns req a request id, registers the call and sends req. */
int agent_call_begin(struct agent_conn *c, struct agent_msg *req, struct agent_call **out,
		     struct bk_err *err);
/* Waits for the call's next frame: 1 with *out filled (release it), 0 when
 * the connection ended, -1 on timeout (timeout_ms < 0 waits for ever). */
int agent_call_next(struct agent_call *call, struct agent_msg *out, int timeout_ms);
void agent_call_end(struct agent_call *call);
/* The request id the call's frames carry (to name it in another request). */
uint32_t agent_call_id(const struct agent_call *call);

/* How long a request other than an execution may wait for its answer:
 * init answers at once unless something is badly wrong (a frozen
 * sandbox); a caller must never hang on it for ever. */
#define AGENT_CALL_TIMEOUT_MS 60000

/* Sends req and waits (AGENT_CALL_TIMEOUT_MS at most) for its one
 * AGENT_RESULT. Returns the answer's errno (0: success, in which case the
 * answer is kept in *ans when ans is not NULL; release it), or -1 with err
 * set when the connection failed or init did not answer. */
int agent_call_answer(struct agent_conn *c, struct agent_msg *req, struct agent_msg *ans,
		      struct bk_err *err);
