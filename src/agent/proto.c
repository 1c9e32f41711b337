#include "agent/proto.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include "util/util.h"

void agent_msg_init(struct agent_msg *m, uint16_t type, uint32_t req_id)
{
	memset(m, 0, sizeof(*m));
	m->type = type;
	m->version = AGENT_PROTO_VERSION;
	m->req_id = req_id;
}

void agent_msg_release(struct agent_msg *m)
{
	free(m->payload);
	m->payload = NULL;
	m->len = m->cap = 0;
}

int agent_msg_put(struct agent_msg *m, uint16_t tag, const void *data, size_t len)
{
	size_t need = m->len + 6 + len;
	if (len > AGENT_MAX_PAYLOAD || need > AGENT_MAX_PAYLOAD) {
		errno = EMSGSIZE;
		return -1;
	}
	if (need > m->cap) {
		size_t cap = m->cap ? m->cap : 256;
		while (cap < need)
			cap *= 2;
		uint8_t *p = realloc(m->payload, cap);
		if (p == NULL)
			return -1;
		m->payload = p;
		m->cap = cap;
	}
	uint32_t l = (uint32_t)len;
	memcpy(m->payload + m->len, &tag, 2);
	memcpy(m->payload + m->len + 2, &l, 4);
	if (len > 0)
		memcpy(m->payload + m->len + 6, data, len);
	m->len = need;
	return 0;
}

int agent_msg_put_str(struct agent_msg *m, uint16_t tag, const char *s)
{
	return agent_msg_put(m, tag, s, strlen(s));
}

int agent_msg_put_i64(struct agent_msg *m, uint16_t tag, int64_t v)
{
	return agent_msg_put(m, tag, &v, sizeof(v));
}

int agent_msg_send(int fd, const struct agent_msg *m)
{
	struct agent_hdr h = {
	    .len = (uint32_t)m->len, .type = m->type, .version = m->version, .req_id = m->req_id};
	struct iovec iov[2] = {{&h, sizeof(h)}, {m->payload, m->len}};
	size_t total = sizeof(h) + m->len;
	size_t done = 0;
	while (done < total) {
		ssize_t n = writev(fd, iov, m->len ? 2 : 1);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		done += (size_t)n;
		/* Advance the iovecs past what was written. */
		size_t adv = (size_t)n;
		for (int i = 0; i < 2 && adv > 0; i++) {
			size_t take = adv < iov[i].iov_len ? adv : iov[i].iov_len;
			iov[i].iov_base = (char *)iov[i].iov_base + take;
			iov[i].iov_len -= take;
			adv -= take;
		}
		if (iov[0].iov_len == 0) {
			iov[0] = iov[1];
			iov[1].iov_len = 0;
		}
	}
	return 0;
}

int agent_msg_recv(int fd, struct agent_msg *m)
{
	struct agent_hdr h;
	memset(m, 0, sizeof(*m));
	int r = read_full(fd, &h, sizeof(h));
	if (r <= 0)
		return r;
	if (h.len > AGENT_MAX_PAYLOAD) {
		errno = EPROTO;
		return -1;
	}
	m->type = h.type;
	m->version = h.version;
	m->req_id = h.req_id;
	if (h.len == 0)
		return 1;
	m->payload = malloc(h.len);
	if (m->payload == NULL)
		return -1;
	m->len = m->cap = h.len;
	if (read_full(fd, m->payload, h.len) != 1) {
		agent_msg_release(m);
		errno = EPROTO;
		return -1;
	}
	return 1;
}

bool agent_msg_next(const struct agent_msg *m, size_t *off, struct agent_field *f)
{
	if (*off + 6 > m->len)
		return false;
	memcpy(&f->tag, m->payload + *off, 2);
	memcpy(&f->len, m->payload + *off + 2, 4);
	if (f->len > m->len - *off - 6)
		return false;
	f->data = m->payload + *off + 6;
	*off += 6 + f->len;
	return true;
}

bool agent_msg_find(const struct agent_msg *m, uint16_t tag, struct agent_field *f)
{
	size_t off = 0;
	struct agent_field cur;
	while (agent_msg_next(m, &off, &cur)) {
		if (cur.tag == tag) {
			*f = cur;
			return true;
		}
	}
	return false;
}

int64_t agent_field_i64(const struct agent_field *f)
{
	int64_t v = 0;
	if (f->len == sizeof(v))
		memcpy(&v, f->data, sizeof(v));
	return v;
}

int64_t agent_msg_get_i64(const struct agent_msg *m, uint16_t tag, int64_t def)
{
	struct agent_field f;
	return agent_msg_find(m, tag, &f) ? agent_field_i64(&f) : def;
}
