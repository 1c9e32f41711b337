/* The sessions' resolver: one thread of the daemon, a UDP port that the
 * egress table redirects each session's port 53 to. It knows a query's
 * session by its source address, answers only the names that session's
 * policy allows (REFUSED otherwise), forwards them to the host's resolver
 * (the first IPv4 nameserver of /etc/resolv.conf), and before it passes an
 * answer on, opens the A addresses it carried to that session for their
 * TTL (DNS pinning): a name's addresses are reachable only after the
 * session asked for the name. AAAA questions get an empty answer: IPv6 is
 * off in sessions. A file of "ADDRESS NAME..." lines (--dns-hosts, for
 * tests) answers its names itself and never asks anyone about them. */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sandbox/egress_int.h"
#include "util/util.h"

#define DNS_PENDING_MAX 128
#define DNS_TIMEOUT_MS 5000
#define DNS_MSG_MAX 4096
#define DNS_ADDRS_MAX 32

struct dns_pending {
	bool used;
	uint16_t up_id, client_id;
	struct sockaddr_in client;
	uint32_t session; /* its address: the network is looked up again */
	bool pin;
	int64_t deadline_ms;
};

struct dns_state {
	struct ns_egress *e;
	struct dns_pending pending[DNS_PENDING_MAX];
	uint16_t next_id;
};

/* Reads the name at off of msg (compression followed) into out
 * (lower case, no trailing dot); *next receives where the name ends in
 * place. -1 when malformed. */
static int dns_name(const uint8_t *msg, size_t len, size_t off, char *out, size_t out_len,
		    size_t *next)
{
	size_t o = 0, pos = off;
	int jumps = 0;
	bool jumped = false;
	for (;;) {
		if (pos >= len)
			return -1;
		uint8_t l = msg[pos];
		if ((l & 0xc0) == 0xc0) {
			if (pos + 1 >= len || ++jumps > 16)
				return -1;
			if (!jumped && next)
				*next = pos + 2;
			jumped = true;
			pos = ((size_t)(l & 0x3f) << 8) | msg[pos + 1];
			continue;
		}
		if (l & 0xc0)
			return -1;
		if (l == 0) {
			if (!jumped && next)
				*next = pos + 1;
			break;
		}
		if (pos + 1 + l > len || o + l + 2 > out_len)
			return -1;
		if (o)
			out[o++] = '.';
		for (size_t i = 0; i < l; i++)
			out[o++] = (char)tolower(msg[pos + 1 + i]);
		pos += 1 + l;
	}
	out[o] = '\0';
	return 0;
}

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

/* An answer of our own to the query q (its question ends at qend): rcode,
 * and one A record of addr when addr is not 0. */
static void dns_reply(int fd, const struct sockaddr_in *to, const uint8_t *q, size_t qend,
		      int rcode, uint32_t addr)
{
	uint8_t r[DNS_MSG_MAX];
	if (qend + 16 > sizeof(r))
		return;
	memcpy(r, q, qend);
	r[2] = (uint8_t)(0x80 | (q[2] & 0x79)); /* QR, the opcode and RD kept */
	r[3] = (uint8_t)(0x80 | (rcode & 0xf)); /* RA */
	put16(r + 6, addr ? 1 : 0);
	put16(r + 8, 0);
	put16(r + 10, 0);
	size_t n = qend;
	if (addr) {
		const uint8_t rec[] = {0xc0,
				       0x0c,
				       0,
				       1,
				       0,
				       1,
				       0,
				       0,
				       0,
				       60,
				       0,
				       4,
				       (uint8_t)(addr >> 24),
				       (uint8_t)(addr >> 16),
				       (uint8_t)(addr >> 8),
				       (uint8_t)addr};
		memcpy(r + n, rec, sizeof(rec));
		n += sizeof(rec);
	}
	sendto(fd, r, n, MSG_DONTWAIT, (const struct sockaddr *)to, sizeof(*to));
}

static const struct ns_dns_host *dns_host_find(const struct ns_egress *e, const char *name)
{
	for (size_t i = 0; i < e->n_hosts; i++)
		if (strcmp(e->hosts[i].name, name) == 0)
			return &e->hosts[i];
	return NULL;
}

static void dns_query(struct dns_state *st, const uint8_t *q, size_t len,
		      const struct sockaddr_in *from)
{
	struct ns_egress *e = st->e;
	if (len < 12 || (q[2] & 0x80) || ((q[2] >> 3) & 0xf) != 0 || get16(q + 4) != 1)
		return;
	char name[SBX_NET_DOMAIN_MAX + 2];
	size_t qend;
	if (dns_name(q, len, 12, name, sizeof(name), &qend) < 0 || qend + 4 > len)
		return;
	uint16_t qtype = get16(q + qend);
	qend += 4;
	uint32_t src = ntohl(from->sin_addr.s_addr);
	bool pin = false, allowed;
	pthread_mutex_lock(&e->lock);
	struct ns_net *n = ns__egress_find_locked(e, src);
	allowed = n && ns__net_name_allowed_locked(n, name, &pin);
	pthread_mutex_unlock(&e->lock);
	if (n == NULL)
		return; /* not a session's: no answer at all */
	if (!allowed) {
		dns_reply(e->dns_fd, from, q, qend, 5 /* REFUSED */, 0);
		return;
	}
	const struct ns_dns_host *h = dns_host_find(e, name);
	if (h || qtype == 28 /* AAAA */) {
		uint32_t addr = h && qtype == 1 ? h->addr : 0;
		if (addr && pin) {
			pthread_mutex_lock(&e->lock);
			n = ns__egress_find_locked(e, src);
			if (n)
				ns__net_pin_locked(e, n, &addr, 1, 60);
			pthread_mutex_unlock(&e->lock);
		}
		dns_reply(e->dns_fd, from, q, qend, 0, addr);
		return;
	}
	if (e->upstream_fd < 0) {
		dns_reply(e->dns_fd, from, q, qend, 2 /* SERVFAIL */, 0);
		return;
	}
	int64_t now = now_ms();
	struct dns_pending *p = NULL;
	for (int i = 0; i < DNS_PENDING_MAX; i++) {
		struct dns_pending *c = &st->pending[i];
		if (!c->used || c->deadline_ms < now) {
			p = c;
			break;
		}
	}
	if (p == NULL) {
		dns_reply(e->dns_fd, from, q, qend, 2, 0);
		return;
	}
	uint8_t fwd[DNS_MSG_MAX];
	memcpy(fwd, q, len);
	uint16_t rnd;
	if (random_bytes(&rnd, sizeof(rnd), NULL) < 0)
		rnd = 0;
	*p = (struct dns_pending){.used = true,
				  .up_id = (uint16_t)(rnd ^ ++st->next_id),
				  .client_id = get16(q),
				  .client = *from,
				  .session = src,
				  .pin = pin,
				  .deadline_ms = now + DNS_TIMEOUT_MS};
	put16(fwd, p->up_id);
	if (send(e->upstream_fd, fwd, len, MSG_DONTWAIT) < 0)
		p->used = false;
}

static void dns_answer(struct dns_state *st, uint8_t *r, size_t len)
{
	struct ns_egress *e = st->e;
	if (len < 12 || !(r[2] & 0x80))
		return;
	struct dns_pending *p = NULL;
	for (int i = 0; i < DNS_PENDING_MAX; i++)
		if (st->pending[i].used && st->pending[i].up_id == get16(r)) {
			p = &st->pending[i];
			break;
		}
	if (p == NULL)
		return;
	p->used = false;
	uint32_t addrs[DNS_ADDRS_MAX];
	size_t count = 0;
	uint32_t ttl = 86400;
	/* Walk the question and the answers for A records. */
	char name[SBX_NET_DOMAIN_MAX + 2];
	size_t pos = 12;
	bool ok = true;
	for (int i = 0; ok && i < get16(r + 4); i++)
		ok = dns_name(r, len, pos, name, sizeof(name), &pos) == 0 && (pos += 4) <= len;
	for (int i = 0; ok && i < get16(r + 6); i++) {
		ok = dns_name(r, len, pos, name, sizeof(name), &pos) == 0 && pos + 10 <= len;
		if (!ok)
			break;
		uint16_t type = get16(r + pos), klass = get16(r + pos + 2),
			 rdlen = get16(r + pos + 8);
		uint32_t t = get32(r + pos + 4);
		pos += 10;
		if (pos + rdlen > len) {
			ok = false;
			break;
		}
		if (type == 1 && klass == 1 && rdlen == 4 && count < DNS_ADDRS_MAX) {
			addrs[count++] = get32(r + pos);
			if (t < ttl)
				ttl = t;
		}
		pos += rdlen;
	}
	if (!ok)
		return; /* a malformed answer is not passed on */
	if (p->pin && count) {
		pthread_mutex_lock(&e->lock);
		struct ns_net *n = ns__egress_find_locked(e, p->session);
		if (n)
			ns__net_pin_locked(e, n, addrs, count, ttl);
		pthread_mutex_unlock(&e->lock);
	}
	put16(r, p->client_id);
	sendto(e->dns_fd, r, len, MSG_DONTWAIT, (const struct sockaddr *)&p->client,
	       sizeof(p->client));
}

static void *dns_main(void *arg)
{
	struct dns_state *st = arg;
	struct ns_egress *e = st->e;
	uint8_t msg[DNS_MSG_MAX];
	struct pollfd fds[3] = {{.fd = e->dns_fd, .events = POLLIN},
				{.fd = e->upstream_fd, .events = POLLIN},
				{.fd = e->wake_fd[0], .events = POLLIN}};
	for (;;) {
		if (poll(fds, 3, 1000) < 0 && errno != EINTR)
			break;
		if (fds[2].revents)
			break;
		if (fds[0].revents & POLLIN) {
			struct sockaddr_in from;
			socklen_t fl = sizeof(from);
			ssize_t n = recvfrom(e->dns_fd, msg, sizeof(msg), MSG_DONTWAIT,
					     (struct sockaddr *)&from, &fl);
			if (n > 0 && from.sin_family == AF_INET)
				dns_query(st, msg, (size_t)n, &from);
		}
		if (fds[1].fd >= 0 && (fds[1].revents & POLLIN)) {
			ssize_t n = recv(e->upstream_fd, msg, sizeof(msg), MSG_DONTWAIT);
			if (n > 0)
				dns_answer(st, msg, (size_t)n);
		}
	}
	free(st);
	return NULL;
}

/* The first IPv4 nameserver of /etc/resolv.conf, host order; 0: none. */
static uint32_t upstream_find(void)
{
	FILE *f = fopen("/etc/resolv.conf", "re");
	char line[256];
	uint32_t found = 0;
	while (f && !found && fgets(line, sizeof(line), f)) {
		char addr[64];
		struct in_addr in;
		if (sscanf(line, " nameserver %63s", addr) == 1 &&
		    inet_pton(AF_INET, addr, &in) == 1)
			found = ntohl(in.s_addr);
	}
	if (f)
		fclose(f);
	return found;
}

static int hosts_load(struct ns_egress *e, const char *path, char *why, size_t len)
{
	FILE *f = fopen(path, "re");
	if (f == NULL) {
		snprintf(why, len, "cannot open '%s': %s", path, strerror(errno));
		return -1;
	}
	char line[512];
	while (fgets(line, sizeof(line), f)) {
		char *save = NULL, *tok = strtok_r(line, " \t\r\n", &save);
		struct in_addr in;
		if (tok == NULL || *tok == '#' || inet_pton(AF_INET, tok, &in) != 1)
			continue;
		while ((tok = strtok_r(NULL, " \t\r\n", &save)) != NULL) {
			if (strlen(tok) >= SBX_NET_DOMAIN_MAX)
				continue;
			void *m = realloc(e->hosts, (e->n_hosts + 1) * sizeof(*e->hosts));
			if (m == NULL)
				break;
			e->hosts = m;
			struct ns_dns_host *h = &e->hosts[e->n_hosts++];
			h->addr = ntohl(in.s_addr);
			for (size_t i = 0; tok[i]; i++)
				tok[i] = (char)tolower((unsigned char)tok[i]);
			snprintf(h->name, sizeof(h->name), "%s", tok);
		}
	}
	fclose(f);
	return 0;
}

int ns__dns_start(struct ns_egress *e, const char *hosts_file, char *why, size_t len)
{
	if (hosts_file && hosts_file[0] && hosts_load(e, hosts_file, why, len) < 0)
		return -1;
	e->dns_fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET};
	socklen_t sl = sizeof(sa);
	if (e->dns_fd < 0 || bind(e->dns_fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    getsockname(e->dns_fd, (struct sockaddr *)&sa, &sl) < 0 ||
	    pipe2(e->wake_fd, O_CLOEXEC) < 0) {
		snprintf(why, len, "cannot open the resolver's socket: %s", strerror(errno));
		return -1;
	}
	e->dns_port = ntohs(sa.sin_port);
	e->upstream = upstream_find();
	if (e->upstream) {
		struct sockaddr_in up = {.sin_family = AF_INET,
					 .sin_port = htons(53),
					 .sin_addr.s_addr = htonl(e->upstream)};
		e->upstream_fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
		if (e->upstream_fd >= 0 &&
		    connect(e->upstream_fd, (struct sockaddr *)&up, sizeof(up)) < 0) {
			close(e->upstream_fd);
			e->upstream_fd = -1;
		}
	}
	struct dns_state *st = calloc(1, sizeof(*st));
	if (st == NULL) {
		snprintf(why, len, "cannot start the resolver");
		return -1;
	}
	st->e = e;
	int r = pthread_create(&e->dns_thread, NULL, dns_main, st);
	if (r != 0) {
		free(st);
		snprintf(why, len, "cannot start the resolver: %s", strerror(r));
		return -1;
	}
	e->dns_running = true;
	return 0;
}

void ns__dns_stop(struct ns_egress *e)
{
	if (e->dns_running) {
		if (write(e->wake_fd[1], "x", 1) < 0) {
			/* The pipe is ours and empty: it cannot fail. */
		}
		pthread_join(e->dns_thread, NULL);
		e->dns_running = false;
	}
	int *fds[] = {&e->dns_fd, &e->upstream_fd, &e->wake_fd[0], &e->wake_fd[1]};
	for (size_t i = 0; i < 4; i++)
		if (*fds[i] >= 0) {
			close(*fds[i]);
			*fds[i] = -1;
		}
}
