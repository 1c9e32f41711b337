/* What bunker-init reads of the daemon's requests: see init/request.h. */
#include "init/request.h"

#include <stdlib.h>
#include <string.h>

void init_exec_spec_read(const struct agent_msg *req, char *strs, struct init_exec_spec *s)
{
	int argc = 0, envc = 0;
	struct agent_field f;
	size_t off = 0;
	char *sp = strs;
	memset(s, 0, sizeof(*s));
	s->cwd = AGENT_WORKSPACE;
	while (agent_msg_next(req, &off, &f)) {
		char *str = NULL;
		if (f.tag == AGENT_T_ARGV || f.tag == AGENT_T_ENV || f.tag == AGENT_T_CWD) {
			str = sp;
			memcpy(sp, f.data, f.len);
			sp[f.len] = '\0';
			sp += f.len + 1;
		}
		if (f.tag == AGENT_T_ARGV && argc < INIT_ARGS_MAX - 1)
			s->argv[argc++] = str;
		else if (f.tag == AGENT_T_ENV && envc < INIT_ARGS_MAX - 1)
			s->envp[envc++] = str;
		else if (f.tag == AGENT_T_CWD)
			s->cwd = str;
		else if (f.tag == AGENT_T_STDIN) {
			s->stdin_data = f;
			s->has_stdin = true;
		} else if (f.tag == AGENT_T_WATCH) {
			s->watch = f;
			s->has_watch = true;
		}
	}
	s->argv[argc] = NULL;
	s->envp[envc] = NULL;
	s->uid = (uid_t)agent_msg_get_i64(req, AGENT_T_UID, 1000);
	s->gid = (gid_t)agent_msg_get_i64(req, AGENT_T_GID, 1000);
	s->timeout_ms = agent_msg_get_i64(req, AGENT_T_TIMEOUT_MS, 0);
}

char **init_req_strings(const struct agent_msg *req, uint16_t tag)
{
	size_t off = 0, n = 0, bytes = 0;
	struct agent_field f;
	while (agent_msg_next(req, &off, &f))
		if (f.tag == tag && n < INIT_ARGS_MAX - 1)
			n++, bytes += f.len + 1;
	char **list = malloc((n + 1) * sizeof(char *) + bytes);
	if (list == NULL)
		return NULL;
	char *sp = (char *)(list + n + 1);
	size_t k = 0;
	off = 0;
	while (agent_msg_next(req, &off, &f) && k < n) {
		if (f.tag != tag)
			continue;
		memcpy(sp, f.data, f.len);
		sp[f.len] = '\0';
		list[k++] = sp;
		sp += f.len + 1;
	}
	list[k] = NULL;
	return list;
}

bool init_req_path(const struct agent_msg *req, char *out, size_t len)
{
	struct agent_field f;
	if (!agent_msg_find(req, AGENT_T_PATH, &f) || f.len >= len || memchr(f.data, 0, f.len))
		return false;
	memcpy(out, f.data, f.len);
	out[f.len] = '\0';
	return true;
}

bool init_req_abs_path(const struct agent_msg *req, char *rel, size_t len)
{
	struct agent_field f;
	if (!agent_msg_find(req, AGENT_T_PATH, &f) || f.len < 2 || f.len >= len ||
	    f.data[0] != '/' || memchr(f.data, 0, f.len))
		return false;
	memcpy(rel, f.data + 1, f.len - 1);
	rel[f.len - 1] = '\0';
	return true;
}

int64_t init_deadline_us(int64_t from_us, int64_t timeout_ms)
{
	if (timeout_ms <= 0)
		return 0;
	int64_t us, at;
	if (__builtin_mul_overflow(timeout_ms, 1000, &us) ||
	    __builtin_add_overflow(from_us, us, &at))
		return INT64_MAX;
	return at;
}
