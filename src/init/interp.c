/* bunker-init's persistent interpreters: one per session and name
 * ("python", "bash", ...), started on its first RUN, kept between runs, fed
 * one run at a time in the order the runs came (a FIFO per interpreter);
 * and one-shot ("fresh") interpreters, one per run, which run in parallel.
 *
 * A run's answer is the EXEC_DONE its driver's "done" brings (output
 * drained first), or, when the interpreter ends during the run, the one its
 * exit brings. Past its deadline a run's interpreter gets SIGINT (its
 * process group), and when it has not answered within a second the whole
 * group is killed: the run is answered, the state is lost, and the next
 * run starts a new interpreter in the same slot.
 *
 * The channel and the processes are init/interp_chan.c's; slots and runs
 * are init's own (single-threaded: no lock).
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "init/interp_int.h"
#include "init/request.h"
#include "util/util.h"

static struct interp interps[INIT_INTERPS_MAX];
static struct run runs[INIT_RUNS_MAX];

static bool run_is_user(const struct run *r)
{
	return r != NULL && r->req_id != 0;
}

static void run_free(struct run *r)
{
	agent_msg_release(&r->req);
	memset(r, 0, sizeof(*r));
}

/* ---- answers ---- */

/* Answers r with EXEC_DONE: exit_code unless it timed out (124) or was
 * cancelled (130); sig when a signal ended its interpreter. Frees r. */
static void run_answer(struct run *r, int exit_code, int sig, enum agent_interp_end end,
		       int64_t cpu_ns, int64_t maxrss_kb)
{
	struct agent_msg m;
	agent_msg_init(&m, AGENT_EXEC_DONE, r->req_id);
	agent_msg_put_i64(&m, AGENT_T_EXIT_CODE,
			  r->timed_out	 ? 124
			  : r->cancelled ? 130
					 : exit_code);
	if (sig)
		agent_msg_put_i64(&m, AGENT_T_SIGNAL, sig);
	agent_msg_put_i64(&m, AGENT_T_TIMED_OUT, r->timed_out);
	agent_msg_put_i64(&m, AGENT_T_INTERP_END, end);
	agent_msg_put_i64(&m, AGENT_T_INTERP_NEW, r->interp_new);
	/* One figure for the interpreter's CPU and its children's. */
	agent_msg_put_i64(&m, AGENT_T_UTIME_US, cpu_ns > 0 ? cpu_ns / 1000 : 0);
	agent_msg_put_i64(&m, AGENT_T_STIME_US, 0);
	agent_msg_put_i64(&m, AGENT_T_MAXRSS_KB, maxrss_kb);
	agent_msg_put_i64(&m, AGENT_T_WALL_US, mono_us() - r->arrived_us);
	int64_t trunc = (r->sent[0] > r->output_max ? 1 : 0) | (r->sent[1] > r->output_max ? 2 : 0);
	agent_msg_put_i64(&m, AGENT_T_TRUNCATED, trunc);
	init_send(&m);
	agent_msg_release(&m);
	run_free(r);
}

/* Takes r out of its interpreter's queue. */
static void queue_remove(struct interp *in, struct run *r)
{
	struct run *prev = NULL;
	for (struct run *k = in->head; k; prev = k, k = k->next) {
		if (k != r)
			continue;
		if (prev)
			prev->next = k->next;
		else
			in->head = k->next;
		if (in->tail == k)
			in->tail = prev;
		k->next = NULL;
		return;
	}
}

static struct run *queue_pop(struct interp *in)
{
	struct run *r = in->head;
	if (r)
		queue_remove(in, r);
	return r;
}

/* ---- feeding an interpreter ---- */

static void interp_kill(struct interp *in, enum agent_interp_end why)
{
	kill(-in->pid, SIGKILL);
	kill(in->pid, SIGKILL);
	in->state = INTERP_ENDING;
	in->end = why;
}

/* Gives in its next request when it waits for one: the sync run after an
 * interrupt, else the first queued run. */
static void interp_advance(struct interp *in)
{
	if (in->state != INTERP_READY || in->cur != NULL || in->exited)
		return;
	int64_t now = mono_us();
	if (in->need_sync) {
		in->need_sync = false;
		memset(&in->sync, 0, sizeof(in->sync));
		in->sync.in = in;
		in->sync.arrived_us = now;
		in->sync.deadline_us = now + INTERP_GRACE_US;
		in->cur = &in->sync;
		interp__frame_begin(in, in->cur, 0);
		return;
	}
	struct run *r = queue_pop(in);
	if (r == NULL)
		return;
	in->cur = r;
	r->interp_new = in->unused;
	in->unused = false;
	r->cpu_start_ns = interp__cpu_ns(in);
	struct agent_msg m;
	agent_msg_init(&m, AGENT_EXEC_STARTED, r->req_id);
	agent_msg_put_i64(&m, AGENT_T_PID, in->pid);
	init_send(&m);
	agent_msg_release(&m);
	int64_t left_ms = r->deadline_us ? (r->deadline_us - now + 999) / 1000 : 0;
	interp__frame_begin(in, r, left_ms > 0 ? left_ms : r->deadline_us ? 1 : 0);
}

/* The driver has run cur: its output is in the pipes, drain it. */
static void interp_done(struct interp *in, int status)
{
	struct run *r = in->cur;
	interp__output_pump(in, r, 1024);
	in->cur = NULL;
	if (run_is_user(r)) {
		if (r->interrupted_us)
			in->need_sync = true;
		run_answer(r, status, 0, AGENT_INTERP_KEPT, interp__cpu_ns(in) - r->cpu_start_ns,
			   interp__maxrss_kb(in));
	}
	if (in->fresh) {
		/* Its one run is over: the end of its requests ends it. */
		close(in->req);
		in->req = -1;
		in->state = INTERP_ENDING;
		in->started_us = mono_us();
		return;
	}
	interp_advance(in);
}

static void on_answer(struct interp *in, const char *line)
{
	unsigned long long seq;
	int status;
	if (strcmp(line, "R") == 0 && in->state == INTERP_STARTING) {
		/* What it said while starting is nobody's output. */
		interp__output_pump(in, NULL, 1024);
		in->state = INTERP_READY;
		interp_advance(in);
	} else if (sscanf(line, "D %llu %d", &seq, &status) == 2) {
		/* A "done" for an earlier request comes after a SIGINT that
		 * reached the driver between two runs: it is nobody's. */
		if (in->cur && in->cur->seq == seq && in->state == INTERP_READY)
			interp_done(in, status);
	} else {
		interp_kill(in, AGENT_INTERP_BROKEN);
	}
}

/* ---- an interpreter's end ---- */

/* Its answer pipe ended: at its exit, whose SIGCHLD is on its way, or
 * because the code closed the driver's end, after which no run of it can
 * end. */
static void interp_answers_ended(struct interp *in)
{
	siginfo_t si = {0};
	close(in->ans);
	in->ans = -1;
	if (waitid(P_PID, (id_t)in->pid, &si, WEXITED | WNOHANG | WNOWAIT) == 0 && si.si_pid == 0)
		interp_kill(in, AGENT_INTERP_BROKEN);
}

static void interp_free(struct interp *in)
{
	memset(in, 0, sizeof(*in));
	in->out[0] = in->out[1] = in->ans = in->req = -1;
}

/* Starts in's next process for the runs still queued, answering those it
 * cannot start for; frees the slot when none is left. */
static void interp_restart(struct interp *in)
{
	while (in->head) {
		struct run *r = in->head;
		if (interp__spawn(in, r) == 0)
			return;
		queue_remove(in, r);
		run_free(r);
	}
	interp_free(in);
}

/* What a starting interpreter wrote to stderr goes to the run it was
 * started for, as the reason it is gone. */
static void boot_err_forward(struct interp *in, struct run *r)
{
	if (in->boot_err_len == 0)
		return;
	struct agent_msg m;
	agent_msg_init(&m, AGENT_OUTPUT, r->req_id);
	agent_msg_put_i64(&m, AGENT_T_STREAM, 2);
	agent_msg_put(&m, AGENT_T_DATA, in->boot_err, in->boot_err_len);
	init_send(&m);
	agent_msg_release(&m);
	r->sent[1] += in->boot_err_len;
}

bool interp_reaped(pid_t pid, int status, const struct rusage *ru)
{
	struct interp *in = NULL;
	for (int i = 0; i < INIT_INTERPS_MAX && in == NULL; i++)
		if (interps[i].state != INTERP_FREE && interps[i].pid == pid)
			in = &interps[i];
	if (in == NULL)
		return false;
	/* A "done" it wrote before it ended still counts; nothing new goes
	 * to it. */
	in->exited = true;
	if (in->ans >= 0 && in->state != INTERP_ENDING)
		interp__answers_read(in, on_answer);
	struct run *r = in->cur;
	bool starting = in->state == INTERP_STARTING;
	if (r == NULL && starting && in->head) {
		/* It died before it was ready: the first run waiting for it
		 * hears why. */
		r = queue_pop(in);
		r->interp_new = true;
		boot_err_forward(in, r);
	}
	if (r)
		interp__output_pump(in, r, 1024);
	in->cur = NULL;
	if (run_is_user(r)) {
		int sig = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
		enum agent_interp_end end =
		    in->state == INTERP_ENDING && in->end != AGENT_INTERP_KEPT ? in->end
		    : sig						       ? AGENT_INTERP_DIED
			  : AGENT_INTERP_EXITED;
		int64_t used_ns =
		    ((int64_t)ru->ru_utime.tv_sec + ru->ru_stime.tv_sec) * 1000000000 +
		    ((int64_t)ru->ru_utime.tv_usec + ru->ru_stime.tv_usec) * 1000;
		run_answer(r, sig ? 128 + sig : WEXITSTATUS(status), sig, end,
			   used_ns - r->cpu_start_ns, ru->ru_maxrss);
	}
	interp__close(in);
	in->state = INTERP_FREE;
	interp_restart(in);
	return true;
}

/* ---- requests ---- */

/* The slot for a run of name: the persistent interpreter of that name, or
 * a free slot for a new one; NULL with *why set when the session has as
 * many as it may. */
static struct interp *interp_slot_for(const char *name, bool fresh, const char **why)
{
	int fresh_n = 0, persistent_n = 0;
	struct interp *free_slot = NULL;
	for (int i = 0; i < INIT_INTERPS_MAX; i++) {
		struct interp *in = &interps[i];
		if (in->state == INTERP_FREE) {
			free_slot = free_slot ? free_slot : in;
			continue;
		}
		if (in->fresh) {
			fresh_n++;
		} else {
			persistent_n++;
			if (!fresh && strcmp(in->name, name) == 0)
				return in;
		}
	}
	*why = fresh ? "too many one-shot interpreters at once"
		     : "too many kinds of interpreters in the session";
	if (fresh ? fresh_n >= INIT_INTERP_FRESH_MAX : persistent_n >= INIT_INTERP_PERSISTENT_MAX)
		return NULL;
	if (free_slot) {
		interp_free(free_slot);
		snprintf(free_slot->name, sizeof(free_slot->name), "%s", name);
		free_slot->fresh = fresh;
	}
	return free_slot;
}

static struct run *run_slot_get(void)
{
	for (int i = 0; i < INIT_RUNS_MAX; i++)
		if (!runs[i].used)
			return &runs[i];
	return NULL;
}

void interp_run(const struct agent_msg *req)
{
	struct agent_field name, code;
	if (!agent_msg_find(req, AGENT_T_INTERP, &name) || name.len == 0 || name.len >= 32 ||
	    !agent_msg_find(req, AGENT_T_CODE, &code)) {
		init_result(req->req_id, EINVAL, "setup", "a run needs an interpreter and code");
		return;
	}
	char nm[32];
	snprintf(nm, sizeof(nm), "%.*s", (int)name.len, name.data);
	bool fresh = agent_msg_get_i64(req, AGENT_T_FRESH, 0) != 0;
	struct run *r = run_slot_get();
	if (r == NULL) {
		init_result(req->req_id, EAGAIN, "run", "too many runs at once");
		return;
	}
	const char *why = NULL;
	struct interp *in = interp_slot_for(nm, fresh, &why);
	if (in == NULL) {
		init_result(req->req_id, EAGAIN, "run", why);
		return;
	}
	r->req = (struct agent_msg){.type = req->type, .req_id = req->req_id, .len = req->len};
	r->req.payload = malloc(req->len ? req->len : 1);
	if (r->req.payload == NULL) {
		init_result(req->req_id, ENOMEM, "setup", "out of memory");
		if (in->state == INTERP_FREE)
			interp_free(in);
		return;
	}
	memcpy(r->req.payload, req->payload, req->len);
	r->req.cap = req->len;
	r->used = true;
	r->req_id = req->req_id;
	r->in = in;
	agent_msg_find(&r->req, AGENT_T_CODE, &code);
	r->code = code.data;
	r->code_len = code.len;
	r->output_max = (size_t)agent_msg_get_i64(req, AGENT_T_OUTPUT_MAX, 10 << 20);
	r->arrived_us = mono_us();
	int64_t timeout_ms = agent_msg_get_i64(req, AGENT_T_TIMEOUT_MS, 0);
	r->deadline_us = init_deadline_us(r->arrived_us, timeout_ms);
	if (in->tail)
		in->tail->next = r;
	else
		in->head = r;
	in->tail = r;
	if (in->state == INTERP_FREE) {
		if (interp__spawn(in, r) < 0) {
			run_free(r);
			interp_free(in);
			return;
		}
	}
	interp_advance(in);
}

/* The run whose request id is req_id, or NULL. */
static struct run *run_of(uint32_t req_id)
{
	for (int i = 0; i < INIT_RUNS_MAX; i++)
		if (runs[i].used && runs[i].req_id == req_id)
			return &runs[i];
	return NULL;
}

/* Interrupts r: a queued one is answered at once, one under way gets
 * SIGINT (its deadline handling does the rest). */
static void run_interrupt(struct run *r)
{
	struct interp *in = r->in;
	if (in->cur != r) {
		queue_remove(in, r);
		run_answer(r, 0, 0, AGENT_INTERP_KEPT, 0, 0);
		return;
	}
	if (r->interrupted_us == 0) {
		kill(-in->pid, SIGINT);
		r->interrupted_us = mono_us();
	}
}

void interp_interrupt(const struct agent_msg *req)
{
	struct run *r = run_of((uint32_t)agent_msg_get_i64(req, AGENT_T_TARGET, 0));
	if (r)
		r->cancelled = !r->timed_out;
	init_result(req->req_id, r ? 0 : ESRCH, "interrupt", NULL);
	if (r)
		run_interrupt(r);
}

/* ---- deadlines ---- */

/* When in next needs looking at (0: not for time), and what is due now
 * is done when act. */
static int64_t interp_due(struct interp *in, int64_t now, bool act)
{
	int64_t next = 0;
#define DUE(t)                                                                                     \
	do {                                                                                       \
		if ((t) && (next == 0 || (t) < next))                                              \
			next = (t);                                                                \
	} while (0)
	if (in->state == INTERP_STARTING) {
		if (act && now >= in->started_us + INTERP_START_US)
			interp_kill(in, AGENT_INTERP_KILLED);
		DUE(in->started_us + INTERP_START_US);
	} else if (in->state == INTERP_ENDING && in->fresh && in->end == AGENT_INTERP_KEPT) {
		/* A one-shot one that does not end when told: its process goes,
		 * what it started stays. */
		if (act && now >= in->started_us + INTERP_GRACE_US) {
			kill(in->pid, SIGKILL);
			in->end = AGENT_INTERP_KILLED;
		}
		DUE(in->started_us + INTERP_GRACE_US);
	}
	struct run *c = in->cur;
	if (c == &in->sync && in->state == INTERP_READY) {
		if (act && now >= c->deadline_us)
			interp_kill(in, AGENT_INTERP_KILLED);
		DUE(c->deadline_us);
	} else if (c && in->state == INTERP_READY) {
		if (act && c->deadline_us && !c->interrupted_us && now >= c->deadline_us) {
			c->timed_out = true;
			run_interrupt(c);
		}
		if (act && c->interrupted_us && now >= c->interrupted_us + INTERP_GRACE_US)
			interp_kill(in, AGENT_INTERP_KILLED);
		DUE(c->interrupted_us ? c->interrupted_us + INTERP_GRACE_US : c->deadline_us);
	}
	for (struct run *r = in->head, *nx; r; r = nx) {
		nx = r->next;
		if (act && r->deadline_us && now >= r->deadline_us) {
			r->timed_out = true;
			run_interrupt(r);
			continue;
		}
		DUE(r->deadline_us);
	}
#undef DUE
	return next;
}

void interp_deadlines_check(void)
{
	int64_t now = mono_us();
	for (int i = 0; i < INIT_INTERPS_MAX; i++)
		if (interps[i].state != INTERP_FREE)
			interp_due(&interps[i], now, true);
}

int interp_timeout_ms(void)
{
	int64_t now = mono_us(), next = 0;
	for (int i = 0; i < INIT_INTERPS_MAX; i++) {
		if (interps[i].state == INTERP_FREE)
			continue;
		int64_t t = interp_due(&interps[i], now, false);
		if (t && (next == 0 || t < next))
			next = t;
	}
	if (next == 0)
		return -1;
	int64_t ms = (next - now + 999) / 1000;
	return ms < 0 ? 0 : (int)(ms > 60000 ? 60000 : ms);
}

/* ---- the poll loop's share ---- */

enum { PFD_OUT, PFD_ERR, PFD_ANS, PFD_REQ };

static struct {
	int interp, what;
} poll_map[INIT_INTERP_POLL_MAX];

int interp_poll_fill(struct pollfd *pfd)
{
	int n = 0;
	for (int i = 0; i < INIT_INTERPS_MAX; i++) {
		struct interp *in = &interps[i];
		if (in->state == INTERP_FREE)
			continue;
		int fds[] = {in->out[0], in->out[1], in->state == INTERP_ENDING ? -1 : in->ans,
			     in->req};
		for (int w = PFD_OUT; w <= PFD_REQ; w++) {
			struct run *c = in->cur;
			if (fds[w] < 0 ||
			    (w == PFD_REQ && (c == NULL || c->off >= c->hdr_len + c->code_len)))
				continue;
			poll_map[n].interp = i, poll_map[n].what = w;
			pfd[n++] = (struct pollfd){.fd = fds[w],
						   .events = w == PFD_REQ ? POLLOUT : POLLIN};
		}
	}
	return n;
}

void interp_poll_ready(const struct pollfd *pfd, int n)
{
	for (int i = 0; i < n; i++) {
		struct interp *in = &interps[poll_map[i].interp];
		if (!pfd[i].revents || in->state == INTERP_FREE)
			continue;
		switch (poll_map[i].what) {
		case PFD_OUT:
		case PFD_ERR:
			interp__output_pump(in, in->state == INTERP_STARTING ? NULL : in->cur, 16);
			break;
		case PFD_ANS:
			if (in->ans == pfd[i].fd && in->state != INTERP_ENDING &&
			    !interp__answers_read(in, on_answer))
				interp_answers_ended(in);
			break;
		case PFD_REQ:
			if (in->req == pfd[i].fd && in->cur && !interp__frame_write(in, in->cur)) {
				/* Its end comes with SIGCHLD. */
				close(in->req);
				in->req = -1;
			}
			break;
		}
	}
}
