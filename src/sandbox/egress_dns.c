/* The sessions' resolver: one thread of the daemon, a UDP port and a TCP
 * port that the egress table redirects each session's port 53 to. It
 * knows a query's session by its source address, answers only the names that session's
 * policy allows (REFUSED otherwise), forwards them to the host's resolver
 * (the first IPv4 nameserver of /etc/resolv.conf, or --dns-upstream) by
 * the transport they came by, and before it passes an
 * answer on, opens the A addresses it carried to that session for their
 * TTL (DNS pinning): a name's addresses are reachable only after the
 * session asked for the name. AAAA questions get an empty answer: IPv6 is
 * off in sessions. A file of "ADDRESS NAME..." lines (--dns-hosts, for
 * tests) answers its names itself and never asks anyone about them.
 *
 * One function, dns_query(), answers a message whichever way it came; the
 * transports only frame it. Over TCP (RFC 7766: a 2-byte length before
 * each message, several queries on one connection, answers in the order
 * they are ready) every resource a session can hold is bounded: at most
 * DNS_TCP_PER_SESSION connections of one session and DNS_TCP_MAX of all,
 * DNS_TCP_TIMEOUT_MS to send a whole query (or to send the next one), at
 * most DNS_TCP_INFLIGHT of a connection's queries awaiting an answer (it
 * is not read meanwhile), and a query of at most DNS_MSG_MAX bytes, as
 * over UDP: a longer or shorter length closes the connection. A query
 * that came over TCP goes upstream over TCP, on a connection of its own
 * for as long as the query is pending (so within the same caps and
 * DNS_TIMEOUT_MS; SERVFAIL when upstream refuses, closes or is late), and
 * its answer may be up to DNS_TCP_ANSWER_MAX bytes; an answer over UDP is
 * passed on as it came, TC included, so that a client retries over TCP.
 * The thread never blocks on a connection, so one that stalls stalls
 * nobody else. */
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
/* Of one session: the rest stays for the others. */
#define DNS_PENDING_PER_SESSION 32
#define DNS_TIMEOUT_MS 5000
#define DNS_MSG_MAX 4096
#define DNS_ADDRS_MAX 32
#define DNS_TCP_MAX 64
#define DNS_TCP_PER_SESSION 4
#define DNS_TCP_TIMEOUT_MS 10000
#define DNS_TCP_INFLIGHT 4
/* The longest answer passed on over TCP (a longer one is SERVFAIL): some
 * 1,000 A records, where UDP without EDNS carries 512 bytes. */
#define DNS_TCP_ANSWER_MAX 16384
/* What a connection may hold of answers its session has not read. */
#define DNS_TCP_OUT_MAX ((DNS_TCP_INFLIGHT + 1) * (2 + DNS_TCP_ANSWER_MAX))

/* Where an answer goes: a UDP client's address, or a TCP connection by
 * its slot and the generation it had (an answer for a connection that
 * closed meanwhile is dropped, never sent to the slot's next one). */
struct dns_client {
	uint32_t session; /* host order: the session's address */
	int tcp;	  /* -1: udp */
	uint32_t gen;
	struct sockaddr_in udp;
};

struct dns_pending {
	bool used;
	uint16_t up_id, client_id;
	struct dns_client client; /* its network is looked up again */
	bool pin;
	int64_t deadline_ms;
	/* A query that came over TCP goes upstream over TCP, on a
	 * connection of its own (-1: over UDP): up holds the framed query
	 * (its question ends at qend), then from up + up_query_len the framed
	 * answer; up_done counts what was sent, then what was received. */
	int up_fd;
	uint8_t *up;
	size_t up_query_len, up_done, qend;
	bool up_sent;
};

struct dns_tcp {
	int fd; /* -1: the slot is free */
	uint32_t session, gen;
	int64_t deadline_ms; /* closed then, unless a query came whole */
	int inflight;	     /* queries forwarded, their answers owed */
	size_t in_len, out_len;
	uint8_t in[2 + DNS_MSG_MAX];
	/* Answers the session has not read yet (NULL when none): the
	 * connection is not read while there are any, so they are at most
	 * the in-flight ones and the one the last query got at once, never
	 * more than DNS_TCP_OUT_MAX bytes. */
	uint8_t *out;
};

struct dns_state {
	struct ns_egress *e;
	struct dns_pending pending[DNS_PENDING_MAX];
	uint16_t next_id;
	struct dns_tcp tcp[DNS_TCP_MAX];
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

/* A FIN, not a reset (SO_LINGER 0): after a reset of ours conntrack holds
 * the connection as closed by us, and the session's next SYN from the same
 * port, which its kernel may reuse at once, would be invalid to it and
 * refused. */
static void tcp_close(struct dns_state *st, struct dns_tcp *c)
{
	close(c->fd);
	c->fd = -1;
	c->gen++;
	c->inflight = 0;
	c->in_len = c->out_len = 0;
	free(c->out);
	c->out = NULL;
	(void)st;
}

/* Writes what c's session has not been sent yet, as far as it takes it
 * now. */
static void tcp_flush(struct dns_state *st, struct dns_tcp *c)
{
	size_t off = 0;
	while (off < c->out_len) {
		ssize_t n =
		    send(c->fd, c->out + off, c->out_len - off, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		if (n <= 0) {
			tcp_close(st, c);
			return;
		}
		off += (size_t)n;
	}
	memmove(c->out, c->out + off, c->out_len - off);
	c->out_len -= off;
	if (c->out_len == 0) {
		free(c->out);
		c->out = NULL;
	}
	if (off)
		c->deadline_ms = now_ms() + DNS_TCP_TIMEOUT_MS;
}

/* Sends the message msg to its client: a datagram, or a framed message on
 * the connection if it is still the one that asked. */
static void dns_send(struct dns_state *st, const struct dns_client *to, const uint8_t *msg,
		     size_t len)
{
	if (to->tcp < 0) {
		sendto(st->e->dns_fd, msg, len, MSG_DONTWAIT, (const struct sockaddr *)&to->udp,
		       sizeof(to->udp));
		return;
	}
	struct dns_tcp *c = &st->tcp[to->tcp];
	if (c->fd < 0 || c->gen != to->gen)
		return;
	size_t need = c->out_len + 2 + len;
	uint8_t *out = need <= DNS_TCP_OUT_MAX ? realloc(c->out, need) : NULL;
	if (out == NULL) {
		tcp_close(st, c); /* past the cap cannot happen: the reads stop first */
		return;
	}
	c->out = out;
	put16(c->out + c->out_len, (uint16_t)len);
	memcpy(c->out + c->out_len + 2, msg, len);
	c->out_len += 2 + len;
	tcp_flush(st, c);
}

/* An answer of our own to the query q (its question ends at qend): rcode,
 * and one A record of addr when addr is not 0. */
static void dns_reply(struct dns_state *st, const struct dns_client *to, const uint8_t *q,
		      size_t qend, int rcode, uint32_t addr)
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
	dns_send(st, to, r, n);
}

static const struct ns_dns_host *dns_host_find(const struct ns_egress *e, const char *name)
{
	for (size_t i = 0; i < e->n_hosts; i++)
		if (strcmp(e->hosts[i].name, name) == 0)
			return &e->hosts[i];
	return NULL;
}

/* Opens p's connection upstream (it completes in the poll loop) with the
 * query q of len bytes, framed, to send once it does. */
static int up_tcp_start(struct ns_egress *e, struct dns_pending *p, const uint8_t *q, size_t len)
{
	p->up = malloc(2 + DNS_MSG_MAX + 2 + DNS_TCP_ANSWER_MAX);
	if (p->up == NULL)
		return -1;
	put16(p->up, (uint16_t)len);
	memcpy(p->up + 2, q, len);
	p->up_query_len = 2 + len;
	p->up_done = 0;
	p->up_sent = false;
	const struct sockaddr_in up = {.sin_family = AF_INET,
				       .sin_port = htons(e->upstream_port),
				       .sin_addr.s_addr = htonl(e->upstream)};
	p->up_fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (p->up_fd < 0 || (connect(p->up_fd, (const struct sockaddr *)&up, sizeof(up)) < 0 &&
			     errno != EINPROGRESS)) {
		if (p->up_fd >= 0)
			close(p->up_fd);
		p->up_fd = -1;
		free(p->up);
		p->up = NULL;
		return -1;
	}
	return 0;
}

/* Answers the query q of len bytes (at most DNS_MSG_MAX) from the client
 * to, however it came: at once from the policy or the hosts file, or by
 * forwarding it upstream (dns_answer() passes the answer on). -1: q is
 * not a query, or not a session's, and gets no answer at all. */
static int dns_query(struct dns_state *st, const uint8_t *q, size_t len,
		     const struct dns_client *to)
{
	struct ns_egress *e = st->e;
	if (len < 12 || (q[2] & 0x80) || ((q[2] >> 3) & 0xf) != 0 || get16(q + 4) != 1)
		return -1;
	char name[SBX_NET_DOMAIN_MAX + 2];
	size_t qend;
	if (dns_name(q, len, 12, name, sizeof(name), &qend) < 0 || qend + 4 > len)
		return -1;
	uint16_t qtype = get16(q + qend);
	qend += 4;
	uint32_t src = to->session;
	bool pin = false, allowed;
	pthread_mutex_lock(&e->lock);
	struct ns_net *n = ns__egress_find_locked(e, src);
	allowed = n && ns__net_name_allowed_locked(n, name, &pin);
	pthread_mutex_unlock(&e->lock);
	if (n == NULL)
		return -1; /* not a session's: no answer at all */
	if (!allowed) {
		dns_reply(st, to, q, qend, 5 /* REFUSED */, 0);
		return 0;
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
		dns_reply(st, to, q, qend, 0, addr);
		return 0;
	}
	int64_t now = now_ms();
	struct dns_pending *p = NULL;
	int of_session = 0;
	for (int i = 0; i < DNS_PENDING_MAX; i++) {
		struct dns_pending *c = &st->pending[i];
		if (!c->used)
			p = p ? p : c;
		else if (c->client.session == src)
			of_session++;
	}
	if (e->upstream_fd < 0 || p == NULL || of_session >= DNS_PENDING_PER_SESSION) {
		dns_reply(st, to, q, qend, 2 /* SERVFAIL */, 0);
		return 0;
	}
	uint8_t fwd[DNS_MSG_MAX];
	memcpy(fwd, q, len);
	uint16_t rnd;
	if (random_bytes(&rnd, sizeof(rnd), NULL) < 0)
		rnd = 0;
	*p = (struct dns_pending){.used = true,
				  .up_id = (uint16_t)(rnd ^ ++st->next_id),
				  .client_id = get16(q),
				  .client = *to,
				  .pin = pin,
				  .deadline_ms = now + DNS_TIMEOUT_MS,
				  .up_fd = -1,
				  .qend = qend};
	put16(fwd, p->up_id);
	/* Over TCP as it came: an answer too large for UDP would come back
	 * truncated, and the client has nowhere else to ask. */
	if (to->tcp >= 0 ? up_tcp_start(e, p, fwd, len) < 0
			 : send(e->upstream_fd, fwd, len, MSG_DONTWAIT) < 0) {
		p->used = false;
		dns_reply(st, to, q, qend, 2, 0);
		return 0;
	}
	if (to->tcp >= 0)
		st->tcp[to->tcp].inflight++;
	return 0;
}

/* A pending query is answered or given up: its connection may be read
 * again. */
static void dns_pending_done(struct dns_state *st, struct dns_pending *p)
{
	p->used = false;
	if (p->up_fd >= 0)
		close(p->up_fd);
	p->up_fd = -1;
	free(p->up);
	p->up = NULL;
	if (p->client.tcp < 0)
		return;
	struct dns_tcp *c = &st->tcp[p->client.tcp];
	if (c->fd >= 0 && c->gen == p->client.gen && c->inflight > 0)
		c->inflight--;
}

/* Passes upstream's answer r of len bytes to p's client, its A addresses
 * pinned first, and is done with p. A malformed answer is not passed on. */
static void dns_deliver(struct dns_state *st, struct dns_pending *p, uint8_t *r, size_t len)
{
	struct ns_egress *e = st->e;
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
	if (ok && p->pin && count) {
		pthread_mutex_lock(&e->lock);
		struct ns_net *n = ns__egress_find_locked(e, p->client.session);
		if (n)
			ns__net_pin_locked(e, n, addrs, count, ttl);
		pthread_mutex_unlock(&e->lock);
	}
	if (ok) {
		/* As it came, TC included: a UDP client told the answer did not
		 * fit asks again over TCP, which goes upstream over TCP. */
		put16(r, p->client_id);
		dns_send(st, &p->client, r, len);
	}
	dns_pending_done(st, p);
}

/* An answer from upstream over UDP: for the query forwarded over UDP
 * that it names. */
static void dns_answer(struct dns_state *st, uint8_t *r, size_t len)
{
	if (len < 12 || !(r[2] & 0x80))
		return;
	for (int i = 0; i < DNS_PENDING_MAX; i++) {
		struct dns_pending *p = &st->pending[i];
		if (p->used && p->up_fd < 0 && p->up_id == get16(r)) {
			dns_deliver(st, p, r, len);
			return;
		}
	}
}

/* p's query forwarded over TCP got no answer: SERVFAIL to its client. */
static void up_tcp_fail(struct dns_state *st, struct dns_pending *p)
{
	put16(p->up + 2, p->client_id);
	dns_reply(st, &p->client, p->up + 2, p->qend, 2 /* SERVFAIL */, 0);
	dns_pending_done(st, p);
}

/* Sends what is left of p's query upstream, or reads what came of its
 * answer; passes the answer on once it is whole. */
static void up_tcp_io(struct dns_state *st, struct dns_pending *p)
{
	if (!p->up_sent) {
		ssize_t n = send(p->up_fd, p->up + p->up_done, p->up_query_len - p->up_done,
				 MSG_DONTWAIT | MSG_NOSIGNAL);
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
			return;
		if (n <= 0) {
			up_tcp_fail(st, p); /* refused, reset, unreachable */
			return;
		}
		p->up_done += (size_t)n;
		if (p->up_done == p->up_query_len) {
			p->up_sent = true;
			p->up_done = 0;
		}
		return;
	}
	uint8_t *a = p->up + p->up_query_len;
	size_t need = p->up_done < 2 ? 2 : 2 + (size_t)get16(a);
	ssize_t n = recv(p->up_fd, a + p->up_done, need - p->up_done, MSG_DONTWAIT);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return;
	if (n <= 0) {
		up_tcp_fail(st, p);
		return;
	}
	p->up_done += (size_t)n;
	if (p->up_done == 2 && (get16(a) < 12 || get16(a) > DNS_TCP_ANSWER_MAX)) {
		up_tcp_fail(st, p); /* no answer's length, or longer than we pass on */
		return;
	}
	if (p->up_done < 2 || p->up_done < 2 + (size_t)get16(a))
		return;
	if (get16(a + 2) != p->up_id || !(a[4] & 0x80)) {
		up_tcp_fail(st, p);
		return;
	}
	dns_deliver(st, p, a + 2, p->up_done - 2);
}

/* Takes the connections waiting, as far as the caps let them in: a
 * session's own, to its gateway, at most DNS_TCP_PER_SESSION of it and
 * DNS_TCP_MAX in all; the others are closed at once. */
static void tcp_accept(struct dns_state *st)
{
	struct ns_egress *e = st->e;
	for (int k = 0; k < DNS_TCP_MAX; k++) {
		struct sockaddr_in from, local;
		socklen_t fl = sizeof(from), ll = sizeof(local);
		int fd = accept4(e->dns_tcp_fd, (struct sockaddr *)&from, &fl,
				 SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0)
			return;
		uint32_t session = 0;
		bool ours = false;
		if (from.sin_family == AF_INET &&
		    getsockname(fd, (struct sockaddr *)&local, &ll) == 0) {
			session = ntohl(from.sin_addr.s_addr);
			pthread_mutex_lock(&e->lock);
			const struct ns_net *n = ns__egress_find_locked(e, session);
			/* The table redirects to the address of the interface
			 * the connection came in on: its session's gateway. */
			ours = n && n->gw == ntohl(local.sin_addr.s_addr);
			pthread_mutex_unlock(&e->lock);
		}
		int free_slot = -1, of_session = 0;
		for (int i = 0; i < DNS_TCP_MAX; i++) {
			if (st->tcp[i].fd < 0)
				free_slot = free_slot < 0 ? i : free_slot;
			else if (st->tcp[i].session == session)
				of_session++;
		}
		if (!ours || free_slot < 0 || of_session >= DNS_TCP_PER_SESSION) {
			close(fd);
			continue;
		}
		struct dns_tcp *slot = &st->tcp[free_slot];
		slot->fd = fd;
		slot->session = session;
		slot->deadline_ms = now_ms() + DNS_TCP_TIMEOUT_MS;
	}
}

/* Reads what c's session sent, query by query, while it is owed fewer
 * than DNS_TCP_INFLIGHT answers and has read every answer it was sent. */
static void tcp_read(struct dns_state *st, int slot)
{
	struct dns_tcp *c = &st->tcp[slot];
	for (int k = 0; k < 2 * DNS_TCP_INFLIGHT; k++) {
		if (c->fd < 0 || c->out_len > 0 || c->inflight >= DNS_TCP_INFLIGHT)
			return;
		size_t need = c->in_len < 2 ? 2 : 2 + (size_t)get16(c->in);
		ssize_t n = recv(c->fd, c->in + c->in_len, need - c->in_len, MSG_DONTWAIT);
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
			return;
		if (n <= 0) {
			tcp_close(st, c);
			return;
		}
		c->in_len += (size_t)n;
		if (c->in_len == 2) {
			size_t qlen = get16(c->in);
			if (qlen < 12 || qlen > DNS_MSG_MAX) {
				tcp_close(st, c); /* not a query's length */
				return;
			}
			continue;
		}
		if (c->in_len < need)
			continue;
		c->in_len = 0;
		c->deadline_ms = now_ms() + DNS_TCP_TIMEOUT_MS;
		const struct dns_client to = {.session = c->session, .tcp = slot, .gen = c->gen};
		if (dns_query(st, c->in + 2, need - 2, &to) < 0) {
			tcp_close(st, c);
			return;
		}
	}
}

/* Gives up the queries upstream did not answer in time and closes the
 * connections that sent no whole query in time. */
static void dns_expire(struct dns_state *st)
{
	int64_t now = now_ms();
	for (int i = 0; i < DNS_PENDING_MAX; i++) {
		struct dns_pending *p = &st->pending[i];
		if (p->used && p->deadline_ms < now) {
			if (p->up_fd >= 0)
				up_tcp_fail(st, p);
			else
				dns_pending_done(st, p);
		}
	}
	for (int i = 0; i < DNS_TCP_MAX; i++)
		if (st->tcp[i].fd >= 0 && st->tcp[i].inflight == 0 && st->tcp[i].deadline_ms < now)
			tcp_close(st, &st->tcp[i]);
}

static void *dns_main(void *arg)
{
	struct dns_state *st = arg;
	struct ns_egress *e = st->e;
	uint8_t msg[DNS_MSG_MAX];
	enum { FD_UDP, FD_UPSTREAM, FD_WAKE, FD_TCP, FD_CONN };
	/* The sessions' connections, then the queries' upstream. */
	struct pollfd fds[FD_CONN + DNS_TCP_MAX + DNS_PENDING_MAX];
	int slot_of[DNS_TCP_MAX + DNS_PENDING_MAX];
	for (;;) {
		fds[FD_UDP] = (struct pollfd){.fd = e->dns_fd, .events = POLLIN};
		fds[FD_UPSTREAM] = (struct pollfd){.fd = e->upstream_fd, .events = POLLIN};
		fds[FD_WAKE] = (struct pollfd){.fd = e->wake_fd[0], .events = POLLIN};
		fds[FD_TCP] = (struct pollfd){.fd = e->dns_tcp_fd, .events = POLLIN};
		nfds_t nfds = FD_CONN;
		for (int i = 0; i < DNS_TCP_MAX; i++) {
			struct dns_tcp *c = &st->tcp[i];
			if (c->fd < 0)
				continue;
			short ev = c->out_len ? POLLOUT : 0;
			if (c->out_len == 0 && c->inflight < DNS_TCP_INFLIGHT)
				ev |= POLLIN;
			slot_of[nfds - FD_CONN] = i;
			fds[nfds++] = (struct pollfd){.fd = c->fd, .events = ev};
		}
		nfds_t conns = nfds;
		for (int i = 0; i < DNS_PENDING_MAX; i++) {
			const struct dns_pending *p = &st->pending[i];
			if (!p->used || p->up_fd < 0)
				continue;
			slot_of[nfds - FD_CONN] = i;
			fds[nfds++] = (struct pollfd){.fd = p->up_fd,
						      .events = p->up_sent ? POLLIN : POLLOUT};
		}
		if (poll(fds, nfds, 1000) < 0 && errno != EINTR)
			break;
		if (fds[FD_WAKE].revents)
			break;
		if (fds[FD_UDP].revents & POLLIN) {
			struct sockaddr_in from;
			socklen_t fl = sizeof(from);
			ssize_t n = recvfrom(e->dns_fd, msg, sizeof(msg), MSG_DONTWAIT,
					     (struct sockaddr *)&from, &fl);
			if (n > 0 && from.sin_family == AF_INET) {
				const struct dns_client to = {
				    .session = ntohl(from.sin_addr.s_addr), .tcp = -1, .udp = from};
				dns_query(st, msg, (size_t)n, &to);
			}
		}
		if (fds[FD_UPSTREAM].fd >= 0 && (fds[FD_UPSTREAM].revents & POLLIN)) {
			ssize_t n = recv(e->upstream_fd, msg, sizeof(msg), MSG_DONTWAIT);
			if (n > 0)
				dns_answer(st, msg, (size_t)n);
		}
		/* Upstream first: an answer frees room on its connection. */
		for (nfds_t i = conns; i < nfds; i++) {
			struct dns_pending *p = &st->pending[slot_of[i - FD_CONN]];
			if (p->used && p->up_fd == fds[i].fd && fds[i].revents)
				up_tcp_io(st, p); /* an error shows in its send or recv */
		}
		for (nfds_t i = FD_CONN; i < conns; i++) {
			struct dns_tcp *c = &st->tcp[slot_of[i - FD_CONN]];
			if (c->fd != fds[i].fd || fds[i].revents == 0)
				continue; /* closed (and perhaps taken again) meanwhile */
			if (fds[i].revents & POLLOUT)
				tcp_flush(st, c);
			if (c->fd >= 0 && (fds[i].revents & POLLIN))
				tcp_read(st, slot_of[i - FD_CONN]);
			else if (c->fd >= 0 && (fds[i].revents & (POLLERR | POLLHUP | POLLNVAL)))
				tcp_close(st, c);
		}
		if (fds[FD_TCP].revents & POLLIN)
			tcp_accept(st);
		dns_expire(st);
	}
	for (int i = 0; i < DNS_PENDING_MAX; i++)
		if (st->pending[i].used)
			dns_pending_done(st, &st->pending[i]);
	for (int i = 0; i < DNS_TCP_MAX; i++)
		if (st->tcp[i].fd >= 0)
			tcp_close(st, &st->tcp[i]);
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

/* "ADDRESS" or "ADDRESS:PORT" (IPv4) into e's upstream. */
static int upstream_parse(struct ns_egress *e, const char *text, char *why, size_t len)
{
	char addr[INET_ADDRSTRLEN];
	const char *colon = strchr(text, ':');
	size_t al = colon ? (size_t)(colon - text) : strlen(text);
	struct in_addr in;
	char *end = NULL;
	long port = colon ? strtol(colon + 1, &end, 10) : 53;
	if (al >= sizeof(addr) ||
	    (colon && (end == colon + 1 || *end || port < 1 || port > 65535))) {
		snprintf(why, len, "--dns-upstream '%s' is not ADDRESS or ADDRESS:PORT", text);
		return -1;
	}
	memcpy(addr, text, al);
	addr[al] = '\0';
	if (inet_pton(AF_INET, addr, &in) != 1 || in.s_addr == 0) {
		snprintf(why, len, "--dns-upstream '%s' is not an IPv4 address", text);
		return -1;
	}
	e->upstream = ntohl(in.s_addr);
	e->upstream_port = (int)port;
	return 0;
}

int ns__dns_start(struct ns_egress *e, const char *hosts_file, const char *upstream, char *why,
		  size_t len)
{
	if (hosts_file && hosts_file[0] && hosts_load(e, hosts_file, why, len) < 0)
		return -1;
	e->upstream_port = 53;
	if (upstream && upstream[0] && upstream_parse(e, upstream, why, len) < 0)
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
	struct sockaddr_in ta = {.sin_family = AF_INET};
	socklen_t tl = sizeof(ta);
	e->dns_tcp_fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (e->dns_tcp_fd < 0 || bind(e->dns_tcp_fd, (struct sockaddr *)&ta, sizeof(ta)) < 0 ||
	    listen(e->dns_tcp_fd, DNS_TCP_MAX) < 0 ||
	    getsockname(e->dns_tcp_fd, (struct sockaddr *)&ta, &tl) < 0) {
		snprintf(why, len, "cannot open the resolver's TCP socket: %s", strerror(errno));
		return -1;
	}
	e->dns_tcp_port = ntohs(ta.sin_port);
	if (e->upstream == 0)
		e->upstream = upstream_find();
	if (e->upstream) {
		struct sockaddr_in up = {.sin_family = AF_INET,
					 .sin_port = htons(e->upstream_port),
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
	for (int i = 0; i < DNS_TCP_MAX; i++)
		st->tcp[i].fd = -1;
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
	int *fds[] = {&e->dns_fd, &e->dns_tcp_fd, &e->upstream_fd, &e->wake_fd[0], &e->wake_fd[1]};
	for (size_t i = 0; i < ARRAY_SIZE(fds); i++)
		if (*fds[i] >= 0) {
			close(*fds[i]);
			*fds[i] = -1;
		}
}
