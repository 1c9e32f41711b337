/* Fuzz target: bunker-init's reading of the daemon's requests
 * (src/init/request.c: an EXEC's spec, a RUN's argv and env, the PATH of
 * file requests), and the protocol's field iteration under them. Input:
 * the payload of one request. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "agent/proto.h"
#include "init/request.h"

static void check(int ok)
{
	if (!ok)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > AGENT_MAX_PAYLOAD)
		return 0;
	struct agent_msg m;
	agent_msg_init(&m, AGENT_EXEC, 9);
	m.len = m.cap = size;
	m.payload = size ? malloc(size) : NULL;
	if (size && m.payload == NULL)
		return 0;
	if (size)
		memcpy(m.payload, data, size);

	/* exec_start()'s allocation: the payload and 256 bytes more. */
	char *strs = malloc(m.len + 256);
	if (strs == NULL)
		abort();
	struct init_exec_spec s;
	init_exec_spec_read(&m, strs, &s);
	for (int i = 0; s.argv[i]; i++)
		check(i < INIT_ARGS_MAX - 1 && strlen(s.argv[i]) <= m.len);
	for (int i = 0; s.envp[i]; i++)
		check(i < INIT_ARGS_MAX - 1);
	check(s.cwd != NULL && strlen(s.cwd) <= m.len + 16);
	/* exec_start() and interp_run(): a deadline from now, any TIMEOUT_MS. */
	int64_t d = init_deadline_us(1700000000000000, s.timeout_ms);
	check(d == 0 || d >= 1700000000000000);
	init_deadline_us(INT64_MAX - 1, agent_msg_get_i64(&m, AGENT_T_TIMEOUT_MS, 0));
	free(strs);

	static const uint16_t tags[] = {AGENT_T_ARGV, AGENT_T_ENV};
	for (size_t t = 0; t < 2; t++) {
		char **list = init_req_strings(&m, tags[t]);
		check(list != NULL);
		for (int i = 0; list[i]; i++)
			check(i < INIT_ARGS_MAX - 1);
		free(list);
	}

	char path[4096], rel[4096];
	if (init_req_path(&m, path, sizeof(path)))
		check(strlen(path) < sizeof(path));
	if (init_req_abs_path(&m, rel, sizeof(rel)))
		check(strlen(rel) < sizeof(rel) - 1 && rel[0] != '\0');
	char tiny[2];
	init_req_path(&m, tiny, sizeof(tiny));
	agent_msg_release(&m);
	return 0;
}
