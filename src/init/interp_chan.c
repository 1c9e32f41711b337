/* An interpreter's process and its channel (see init/interp_int.h for the
 * protocol): starting it as the session's user, writing its requests
 * without ever blocking init, reading its answers and output, and what it
 * has used.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "init/interp_int.h"
#include "init/request.h"
#include "util/cleanup.h"
#include "util/util.h"

/* Strings of a RUN request's argv, and of its environment, at most. */

static void close_pair(int p[2])
{
	for (int i = 0; i < 2; i++)
		if (p[i] >= 0)
			close(p[i]), p[i] = -1;
}

/* The pipes of a start: stdout, stderr, requests, answers and the
 * driver's own stdin; [0] read ends, [1] write ends. */
struct chan_pipes {
	int p[5][2];
};

static void chan_pipes_close(struct chan_pipes *c)
{
	for (int i = 0; i < 5; i++)
		close_pair(c->p[i]);
}

int interp__spawn(struct interp *in, struct run *r)
{
	const struct agent_msg *req = &r->req;
	_cleanup_free_ char **argv = init_req_strings(req, AGENT_T_ARGV);
	_cleanup_free_ char **envp = init_req_strings(req, AGENT_T_ENV);
	if (argv == NULL || envp == NULL) {
		init_result(r->req_id, ENOMEM, "setup", "out of memory");
		return -1;
	}
	if (argv[0] == NULL) {
		init_result(r->req_id, EINVAL, "setup", "no argv");
		return -1;
	}
	bool self_feed = agent_msg_get_i64(req, AGENT_T_SELF_FEED, 0) != 0;
	__attribute__((cleanup(chan_pipes_close))) struct chan_pipes c;
	memset(&c, -1, sizeof(c));
	for (int i = 0; i < 5; i++) {
		if (pipe2(c.p[i], O_CLOEXEC) < 0) {
			init_result(r->req_id, errno, "pipe", "cannot create pipe");
			return -1;
		}
	}
	_cleanup_close_ int null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	char cwd[512];
	struct agent_field f;
	snprintf(cwd, sizeof(cwd), "%s", AGENT_WORKSPACE);
	if (agent_msg_find(req, AGENT_T_CWD, &f))
		snprintf(cwd, sizeof(cwd), "%.*s", (int)f.len, f.data);
	struct proc_spec spec = {
	    .fds = {{self_feed ? c.p[4][0] : null_fd, 0},
		    {c.p[0][1], 1},
		    {c.p[1][1], 2},
		    {c.p[2][0], INTERP_FD_REQ},
		    {c.p[3][1], INTERP_FD_ANS},
		    {c.p[4][1], INTERP_FD_SELF}},
	    .nfds = self_feed ? 6 : 5,
	    .cwd = cwd,
	    .uid = (uid_t)agent_msg_get_i64(req, AGENT_T_UID, 1000),
	    .gid = (gid_t)agent_msg_get_i64(req, AGENT_T_GID, 1000),
	    .argv = argv,
	    .envp = envp,
	};
	struct proc_fail fail;
	if (proc_spawn(&spec, &in->pid, &fail) < 0) {
		proc_fail_answer(r->req_id, &fail);
		return -1;
	}
	in->out[0] = steal_fd(&c.p[0][0]);
	in->out[1] = steal_fd(&c.p[1][0]);
	in->req = steal_fd(&c.p[2][1]);
	in->ans = steal_fd(&c.p[3][0]);
	int fds[] = {in->out[0], in->out[1], in->req, in->ans};
	for (size_t i = 0; i < ARRAY_SIZE(fds); i++)
		fcntl(fds[i], F_SETFL, O_NONBLOCK);
	in->state = INTERP_STARTING;
	in->started_us = mono_us();
	in->line_len = 0;
	in->boot_err_len = 0;
	in->end = AGENT_INTERP_KEPT;
	in->need_sync = false;
	in->unused = true;
	in->exited = false;
	return 0;
}

void interp__frame_begin(struct interp *in, struct run *r, int64_t timeout_ms)
{
	r->seq = ++in->next_seq;
	r->hdr_len =
	    (size_t)snprintf(r->hdr, sizeof(r->hdr), "%llu %zu %lld\n", (unsigned long long)r->seq,
			     r->code_len, (long long)timeout_ms);
	r->off = 0;
	interp__frame_write(in, r);
}

bool interp__frame_write(struct interp *in, struct run *r)
{
	size_t total = r->hdr_len + r->code_len;
	while (r->off < total) {
		const void *p;
		size_t len;
		if (r->off < r->hdr_len)
			p = r->hdr + r->off, len = r->hdr_len - r->off;
		else
			p = r->code + (r->off - r->hdr_len), len = total - r->off;
		ssize_t n = write(in->req, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return errno == EAGAIN;
		}
		r->off += (size_t)n;
	}
	return true;
}

bool interp__answers_read(struct interp *in, void (*on_line)(struct interp *in, const char *line))
{
	for (;;) {
		char buf[256];
		ssize_t n = read(in->ans, buf, sizeof(buf));
		if (n < 0)
			return errno == EAGAIN || errno == EINTR;
		if (n == 0)
			return false;
		for (ssize_t i = 0; i < n; i++) {
			if (buf[i] != '\n') {
				if (in->line_len == sizeof(in->line) - 1)
					return false;
				in->line[in->line_len++] = buf[i];
				continue;
			}
			in->line[in->line_len] = '\0';
			in->line_len = 0;
			on_line(in, in->line);
			/* The line may have ended it (a broken one). */
			if (in->ans < 0 || in->state == INTERP_ENDING)
				return true;
		}
	}
}

/* Keeps the last bytes a starting interpreter wrote to stderr, to say why
 * it did not start; max_reads chunks at most, and false at EOF, as
 * proc_pump(). */
static bool boot_err_keep(struct interp *in, int max_reads)
{
	char buf[PROC_CHUNK];
	for (int i = 0; i < max_reads; i++) {
		ssize_t n = read(in->out[1], buf, sizeof(buf));
		if (n <= 0)
			return n < 0 && (errno == EAGAIN || errno == EINTR);
		size_t room = sizeof(in->boot_err) - 1;
		size_t take = (size_t)n < room ? (size_t)n : room;
		if (in->boot_err_len + take > room) {
			size_t drop = in->boot_err_len + take - room;
			memmove(in->boot_err, in->boot_err + drop, in->boot_err_len - drop);
			in->boot_err_len -= drop;
		}
		memcpy(in->boot_err + in->boot_err_len, buf + (size_t)n - take, take);
		in->boot_err_len += take;
		in->boot_err[in->boot_err_len] = '\0';
	}
	return true;
}

void interp__output_pump(struct interp *in, struct run *r, int max_reads)
{
	for (int s = 0; s < 2; s++) {
		if (in->out[s] < 0)
			continue;
		size_t dropped = 0;
		bool open;
		if (s == 1 && r == NULL && in->state == INTERP_STARTING)
			open = boot_err_keep(in, max_reads);
		else if (r)
			open = proc_pump(in->out[s], r->req_id, s + 1, &r->sent[s], r->output_max,
					 max_reads);
		else
			open = proc_pump(in->out[s], 0, s + 1, &dropped, 0, max_reads);
		if (!open) {
			close(in->out[s]);
			in->out[s] = -1;
		}
	}
}

void interp__close(struct interp *in)
{
	for (int s = 0; s < 2; s++) {
		exec_drain_add(in->out[s]);
		in->out[s] = -1;
	}
	if (in->ans >= 0)
		close(in->ans);
	if (in->req >= 0)
		close(in->req);
	in->ans = in->req = -1;
}

int64_t interp__cpu_ns(const struct interp *in)
{
	int64_t ns = 0;
	clockid_t cid;
	struct timespec ts;
	if (clock_getcpuclockid(in->pid, &cid) == 0 && clock_gettime(cid, &ts) == 0)
		ns = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
	/* The children it waited for: only /proc has them, in clock ticks
	 * (fields 16 and 17, counted after the ")" that ends the name). */
	char path[64], text[1024];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)in->pid);
	if (read_file_small(path, text, sizeof(text), NULL) <= 0)
		return ns;
	const char *p = strrchr(text, ')');
	for (int field = 2; p && *p && field < 16;)
		if (*p++ == ' ')
			field++;
	if (p == NULL)
		return ns;
	char *end;
	long long cutime = strtoll(p, &end, 10);
	long long cstime = strtoll(end, NULL, 10);
	long hz = sysconf(_SC_CLK_TCK);
	return ns + (cutime + cstime) * (1000000000 / (hz > 0 ? hz : 100));
}

int64_t interp__maxrss_kb(const struct interp *in)
{
	char path[64], text[4096];
	snprintf(path, sizeof(path), "/proc/%d/status", (int)in->pid);
	if (read_file_small(path, text, sizeof(text), NULL) <= 0)
		return 0;
	const char *p = strstr(text, "VmHWM:");
	return p ? strtoll(p + 6, NULL, 10) : 0;
}
