/* Runs in a sandbox's persistent interpreters, through bunker-init
 * (init/interp.c): the request, and the line that tells the user what
 * became of a run that timed out or of an interpreter that was lost. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "agent/client.h"
#include "sandbox/agent_ops.h"

static int run_request(const struct sbx_agent_run *x, const struct sbx_run_req *req,
		       struct agent_msg *m)
{
	agent_msg_init(m, AGENT_RUN, 0);
	int r = agent_msg_put_str(m, AGENT_T_INTERP, x->name);
	for (size_t i = 0; x->argv[i]; i++)
		r |= agent_msg_put_str(m, AGENT_T_ARGV, x->argv[i]);
	for (size_t i = 0; x->envp && x->envp[i]; i++)
		r |= agent_msg_put_str(m, AGENT_T_ENV, x->envp[i]);
	r |= agent_msg_put_str(m, AGENT_T_CWD, AGENT_WORKSPACE);
	r |= agent_msg_put_i64(m, AGENT_T_TIMEOUT_MS, req->timeout_ms);
	r |= agent_msg_put_i64(m, AGENT_T_UID, SBX_USER_UID);
	r |= agent_msg_put_i64(m, AGENT_T_GID, SBX_USER_GID);
	r |= agent_msg_put_i64(m, AGENT_T_OUTPUT_MAX, (int64_t)req->output_max);
	r |= agent_msg_put_i64(m, AGENT_T_FRESH, req->fresh);
	r |= agent_msg_put_i64(m, AGENT_T_SELF_FEED, x->self_feed);
	/* Last: the largest. */
	r |= agent_msg_put_str(m, AGENT_T_CODE, req->code);
	return r;
}

/* The last line of stderr for a run that timed out or lost its
 * interpreter ("" for none): what happened and what it means for the
 * state. */
static void run_note(const struct sbx_agent_run *x, const struct sbx_run_req *req,
		     const struct sbx_exec_result *res, char *out, size_t len)
{
	out[0] = '\0';
	const char *lost = "its state is lost and the next execution starts a new one";
	if (res->timed_out && res->interp_lost)
		snprintf(out, len,
			 "bunker: the execution timed out after %g s; the %s interpreter did not "
			 "stop within 1 s of its interrupt and was restarted: its state is lost\n",
			 (double)req->timeout_ms / 1000, x->name);
	else if (res->timed_out)
		snprintf(out, len,
			 "bunker: the execution timed out after %g s and was interrupted; the %s "
			 "interpreter keeps its state\n",
			 (double)req->timeout_ms / 1000, x->name);
	else if (res->interp_lost && res->oom_killed)
		snprintf(
		    out, len,
		    "bunker: the %s interpreter was killed for going over the session's memory "
		    "limit; %s\n",
		    x->name, lost);
	else if (res->interp_lost && res->signal)
		snprintf(out, len, "bunker: the %s interpreter died of signal %d (SIG%s); %s\n",
			 x->name, res->signal,
			 sigabbrev_np(res->signal) ? sigabbrev_np(res->signal) : "?", lost);
}

int sbx__agent_run(struct sbx *s, const struct sbx_agent_run *x, const struct sbx_run_req *req,
		   struct sbx_exec_result *res, struct bk_err *err)
{
	struct agent_msg m;
	if (run_request(x, req, &m) < 0) {
		int e = errno;
		agent_msg_release(&m);
		memset(res, 0, sizeof(*res));
		return e == EMSGSIZE ? bk_err_kind(err, BK_E_TOO_LARGE, "the code is too large")
				     : bk_err_set(err, e, "cannot build run request");
	}
	const struct sbx_exec_req as_exec = {
	    .text = req->code,
	    .cwd = AGENT_WORKSPACE,
	    .timeout_ms = req->timeout_ms,
	    .output_max = req->output_max,
	    .charge = req->charge,
	    .on_output = req->on_output,
	    .cancelled = req->cancelled,
	    .ctx = req->ctx,
	};
	struct sbx_agent_wait w = {.req = &as_exec, .oom_kills = x->oom_kills, .interrupt = true};
	int rc = sbx__agent_call_exec(s, &m, &w, res, err);
	agent_msg_release(&m);
	if (rc < 0)
		return -1;
	char note[512];
	run_note(x, req, res, note, sizeof(note));
	if (note[0] == '\0')
		return 0;
	/* On a line of its own, the last. */
	bool mid_line = res->err.len > 0 && res->err.data[res->err.len - 1] != '\n';
	const char *text = note;
	char joined[sizeof(note) + 1];
	if (mid_line) {
		snprintf(joined, sizeof(joined), "\n%s", note);
		text = joined;
	}
	/* Beyond the output limit if need be: it is the service's line. */
	bool cut = res->err.truncated;
	res->err.max = res->err.len + strlen(text);
	int r = buf_append(&res->err, text, strlen(text));
	res->err.truncated = cut;
	if (r < 0)
		return bk_err_set(err, ENOMEM, "cannot keep execution output");
	if (req->on_output)
		req->on_output(req->ctx, 2, text, strlen(text));
	return 0;
}
