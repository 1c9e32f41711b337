/* Fuzz target: the daemon's reading of bunker-init's messages
 * (src/agent/proto.c's field iteration, and what src/sandbox/agent_ops.c
 * makes of EXEC_STARTED, OUTPUT, EXEC_DONE, a RESULT's error, LIST's
 * entries and PS's processes). init runs inside the sandbox, as root of
 * the tenant's user namespace: a tenant that takes it over writes these
 * bytes. Input: 2 bytes of message type, then the payload; the same bytes
 * are also read as a stream of frames (agent_msg_recv()). */
#include <errno.h>
#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>

#include "agent/proto.h"
#include "sandbox/agent_ops.h"
#include "util/util.h"

static void check(int ok)
{
	if (!ok)
		abort();
}

/* The whole input as what init wrote on its channel: frames until the
 * end or the first one that breaks the limits. */
static void recv_all(const uint8_t *data, size_t size)
{
	static int fd = -1;
	if (fd < 0)
		fd = memfd_create("agent", MFD_CLOEXEC);
	if (fd < 0 || ftruncate(fd, 0) < 0 || pwrite(fd, data, size, 0) != (ssize_t)size ||
	    lseek(fd, 0, SEEK_SET) != 0)
		abort();
	for (int frames = 0;; frames++) {
		check(frames <= (int)size / 12 + 1);
		struct agent_msg m;
		int r = agent_msg_recv(fd, &m);
		if (r <= 0) {
			check(m.payload == NULL);
			break;
		}
		check(m.len <= AGENT_MAX_PAYLOAD && (m.len == 0) == (m.payload == NULL));
		agent_msg_release(&m);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	recv_all(data, size);
	if (size < 2 || size - 2 > AGENT_MAX_PAYLOAD)
		return 0;
	struct agent_msg m;
	agent_msg_init(&m, 0, 7);
	memcpy(&m.type, data, 2);
	/* As agent_msg_recv() leaves it: exactly the payload, no more. */
	m.len = m.cap = size - 2;
	m.payload = m.len ? malloc(m.len) : NULL;
	if (m.len && m.payload == NULL)
		return 0;
	if (m.len)
		memcpy(m.payload, data + 2, m.len);

	size_t off = 0, fields = 0;
	struct agent_field f;
	while (agent_msg_next(&m, &off, &f)) {
		check(f.data >= m.payload && f.data + f.len <= m.payload + m.len);
		check(off <= m.len);
		fields++;
	}
	agent_msg_get_i64(&m, AGENT_T_VERSION, 0);

	/* EXEC_STARTED and OUTPUT, as sbx__agent_call_exec() reads them. */
	struct buf out;
	buf_init(&out, 1 << 16);
	agent_msg_get_i64(&m, AGENT_T_PID, 0);
	(void)(int)agent_msg_get_i64(&m, AGENT_T_STREAM, 1);
	if (agent_msg_find(&m, AGENT_T_DATA, &f))
		buf_append(&out, f.data, f.len);
	buf_free(&out);

	struct sbx_exec_result res;
	memset(&res, 0, sizeof(res));
	res.exit_code = -1;
	if (sbx__agent_exec_done(&m, &res) == 0) {
		/* core/exec.c rounds the times to ms and scales the size to bytes. */
		check(res.cpu_us >= 0 && res.cpu_us <= INT64_MAX - 500);
		check(res.wall_us >= 0 && res.wall_us <= INT64_MAX - 500);
		check(res.maxrss_kb >= 0 && res.maxrss_kb <= INT64_MAX / 1024);
		check(res.n_written <= fields && res.n_written <= AGENT_MAX_WRITTEN);
		for (size_t i = 0; i < res.n_written; i++)
			check(res.written[i] != NULL);
	}
	sbx_exec_result_release(&res);

	struct sbx_exec_req req = {.cwd = "/workspace"};
	struct bk_err err = BK_ERR_INIT;
	check(sbx__agent_start_error(&m, &req, &err) < 0);

	struct sbx_entry *es = NULL;
	size_t n = 0;
	if (sbx__agent_entries_of(&m, AGENT_LIST_LIMIT_MAX, &es, &n) == 0) {
		check(n <= fields && n <= AGENT_LIST_LIMIT_MAX);
		for (size_t i = 0; i < n; i++)
			check(es[i].path != NULL);
	}
	sbx_entries_free(es, n);

	struct sbx_proc *ps = NULL;
	n = 0;
	if (sbx__agent_procs_of(&m, &ps, &n) == 0)
		check(n <= fields && n <= AGENT_MAX_PROCS);
	free(ps);
	agent_msg_release(&m);
	return 0;
}
