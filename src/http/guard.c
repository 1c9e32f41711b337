/* What one client, and a slow one, may hold of the server: connections per
 * client address, and a guard thread that cuts libmicrohttpd's connections
 * whose request head or body comes too slowly.
 *
 * Why a thread of ours: libmicrohttpd's only timeout is an idle one (no
 * byte for N seconds), which a client defeats by sending a byte now and
 * then; it has no deadline for a head and no minimum rate for a body. The
 * guard looks at every connection once a second: its phase (written by the
 * connection's thread as the request goes on), the body bytes it has
 * taken, and the kernel's count of bytes received (TCP_INFO), which shows
 * a head that has begun but not ended. A connection it cuts is shut down
 * under libmicrohttpd, which then ends it as if the client had gone: the
 * socket stays open until MHD_CONNECTION_NOTIFY_CLOSED has taken it off
 * the list under the lock, so the guard never touches a reused descriptor.
 *
 * Stalled readers: libmicrohttpd's idle timeout (limits.idle_timeout_s)
 * also runs while an answer waits for room to be sent, and ends the
 * connection when the client has read nothing for that long; a client that
 * reads a byte now and then defeats it, and kept its answer (and what the
 * answer holds of a budget) for as long as it liked. So the guard also
 * watches answers: while the socket's send queue is not empty (the daemon
 * waits for the client, not the other way round), the client must
 * acknowledge body_min_rate bytes a second over each idle_timeout_s
 * window (TCP_INFO's bytes_acked), or it is cut. A client that keeps up
 * (an empty queue, as with a stream waiting for output) starts a new
 * window each time.
 */
#include <errno.h>
#include <linux/tcp.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>

#include "http/http_int.h"
#include "util/util.h"

#define GUARD_TICK_MS 1000
/* Cuts are summed up in the log at most this often. */
#define GUARD_LOG_EVERY_US (10 * 1000 * 1000)

/* ---- per-client counts ---- */

struct http_client_count {
	struct http_client client;
	int n;
	struct http_client_count *next;
};

void http_client_of(const struct sockaddr *addr, struct http_client *out)
{
	memset(out, 0, sizeof(*out));
	if (addr->sa_family == AF_INET) {
		/* As IPv4 mapped into IPv6, so that both forms count alike. */
		out->b[10] = out->b[11] = 0xff;
		memcpy(out->b + 12, &((const struct sockaddr_in *)addr)->sin_addr, 4);
	} else if (addr->sa_family == AF_INET6) {
		const uint8_t *a = ((const struct sockaddr_in6 *)addr)->sin6_addr.s6_addr;
		static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
		/* One subscriber gets a /64: its addresses are one client. */
		memcpy(out->b, a, memcmp(a, mapped, 12) == 0 ? 16 : 8);
	}
}

static unsigned client_hash(const struct http_client *c)
{
	uint32_t h = 2166136261u;
	for (size_t i = 0; i < sizeof(c->b); i++)
		h = (h ^ c->b[i]) * 16777619u;
	return h % HTTP_CLIENT_BUCKETS;
}

bool http__client_take(struct http_server *srv, const struct http_client *client, bool force)
{
	struct http_client_count **slot = &srv->clients[client_hash(client)];
	struct http_client_count *c = *slot;
	while (c && memcmp(&c->client, client, sizeof(*client)) != 0)
		c = c->next;
	if (c == NULL) {
		c = calloc(1, sizeof(*c));
		if (c == NULL)
			return force;
		c->client = *client;
		c->next = *slot;
		*slot = c;
	}
	if (!force && c->n >= srv->limits.max_conns_per_client)
		return false;
	c->n++;
	return true;
}

void http__client_release(struct http_server *srv, const struct http_client *client)
{
	struct http_client_count **p = &srv->clients[client_hash(client)];
	while (*p && memcmp(&(*p)->client, client, sizeof(*client)) != 0)
		p = &(*p)->next;
	struct http_client_count *c = *p;
	if (c == NULL || --c->n > 0)
		return;
	*p = c->next;
	free(c);
}

void http_client_release(struct http_server *srv, const struct http_client *client)
{
	pthread_mutex_lock(&srv->lock);
	http__client_release(srv, client);
	pthread_mutex_unlock(&srv->lock);
}

void http_clients_clear(struct http_server *srv)
{
	for (size_t i = 0; i < HTTP_CLIENT_BUCKETS; i++) {
		while (srv->clients[i]) {
			struct http_client_count *c = srv->clients[i];
			srv->clients[i] = c->next;
			free(c);
		}
	}
}

/* ---- libmicrohttpd's connections ---- */

void http_guard_add(struct http_server *srv, struct http_mhd_conn *mc)
{
	pthread_mutex_lock(&srv->lock);
	http__client_take(srv, &mc->client, true);
	mc->next = srv->mhd_conns;
	mc->prev = NULL;
	if (srv->mhd_conns)
		srv->mhd_conns->prev = mc;
	srv->mhd_conns = mc;
	srv->n_mhd++;
	pthread_mutex_unlock(&srv->lock);
}

void http_guard_remove(struct http_server *srv, struct http_mhd_conn *mc)
{
	pthread_mutex_lock(&srv->lock);
	if (mc->prev)
		mc->prev->next = mc->next;
	else
		srv->mhd_conns = mc->next;
	if (mc->next)
		mc->next->prev = mc->prev;
	srv->n_mhd--;
	srv->n_cut -= mc->cut;
	http__client_release(srv, &mc->client);
	pthread_mutex_unlock(&srv->lock);
}

void http_guard_phase(struct http_mhd_conn *mc, enum http_phase phase)
{
	atomic_store(&mc->phase_us, mono_us());
	atomic_store(&mc->phase, (int)phase);
}

/* Lock held. */
static void cut(struct http_server *srv, struct http_mhd_conn *mc)
{
	shutdown(mc->fd, SHUT_RDWR);
	mc->cut = true;
	srv->n_cut++;
}

bool http_guard_make_room(struct http_server *srv)
{
	pthread_mutex_lock(&srv->lock);
	/* Those cut are on their way out. */
	bool room = srv->n_mhd - srv->n_cut < HTTP_MHD_CONN_MAX;
	struct http_mhd_conn *oldest = NULL;
	for (struct http_mhd_conn *mc = srv->mhd_conns; !room && mc; mc = mc->next)
		if (!mc->cut && atomic_load(&mc->phase) == HTTP_PHASE_WAIT_HEAD &&
		    (oldest == NULL || atomic_load(&mc->phase_us) < atomic_load(&oldest->phase_us)))
			oldest = mc;
	if (oldest) {
		cut(srv, oldest);
		room = true;
	}
	pthread_mutex_unlock(&srv->lock);
	return room;
}

/* The kernel's counts of fd (zeroed when it cannot say). */
static struct tcp_info tcp_counts(int fd)
{
	struct tcp_info ti;
	socklen_t len = sizeof(ti);
	memset(&ti, 0, sizeof(ti));
	if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) < 0)
		memset(&ti, 0, sizeof(ti));
	return ti;
}

/* The bytes the kernel has received on fd, or 0 when it cannot say. */
static uint64_t bytes_received(int fd)
{
	return tcp_counts(fd).tcpi_bytes_received;
}

/* The bytes fd's send queue holds (not yet sent, or not yet acknowledged),
 * or 0 when it cannot say. */
static size_t queued_bytes(int fd)
{
	int n = 0;
	return ioctl(fd, SIOCOUTQ, &n) < 0 || n < 0 ? 0 : (size_t)n;
}

/* Lock held. Gives back what of mc->queued its socket holds no more. */
static void queued_drain(struct http_mhd_conn *mc)
{
	if (mc->queued == NULL)
		return;
	size_t held = budget_charge_held(mc->queued), q = mc->cut ? 0 : queued_bytes(mc->fd);
	if (q < held)
		budget_charge_give(mc->queued, held - q);
	if (q == 0) {
		budget_charge_release(mc->queued);
		mc->queued = NULL;
	}
}

void http_guard_closing(struct http_server *srv, struct http_mhd_conn *mc)
{
	pthread_mutex_lock(&srv->lock);
	budget_charge_release(mc->queued);
	mc->queued = NULL;
	/* A client that stopped reading: closed, its socket would keep the
	 * unsent answer (and send the FIN behind it) for as long as the
	 * client keeps its window shut. A reset frees it at once. Not after
	 * an answer that closes the connection: its client reads it. */
	int64_t idle_us = (int64_t)srv->limits.idle_timeout_s * 1000000 - GUARD_TICK_MS * 1000;
	bool stalled = mc->cut || atomic_load(&mc->timed_out) ||
		       (atomic_load(&mc->phase) == HTTP_PHASE_WAIT_HEAD &&
			mono_us() - atomic_load(&mc->phase_us) >= idle_us);
	pthread_mutex_unlock(&srv->lock);
	if (stalled && mc->fd >= 0 && queued_bytes(mc->fd) > 0) {
		struct linger lg = {.l_onoff = 1, .l_linger = 0};
		setsockopt(mc->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	}
}

void http_guard_queued(struct http_server *srv, struct http_mhd_conn *mc, struct budget_charge *c)
{
	pthread_mutex_lock(&srv->lock);
	budget_charge_release(mc->queued);
	mc->queued = c;
	queued_drain(mc);
	pthread_mutex_unlock(&srv->lock);
}

/* Whether the client of mc, answered since since, takes its answer too
 * slowly at now (see the top of this file). */
static bool answer_too_slow(struct http_server *srv, struct http_mhd_conn *mc, int64_t since,
			    int64_t now)
{
	const struct http_limits *lim = &srv->limits;
	if (lim->body_min_rate == 0)
		return false;
	if (queued_bytes(mc->fd) == 0 || mc->send_of_us != since) {
		mc->send_of_us = since;
		mc->send_from_us = 0;
		return false;
	}
	uint64_t acked = tcp_counts(mc->fd).tcpi_bytes_acked;
	int64_t window_us = (int64_t)lim->idle_timeout_s * 1000000;
	if (mc->send_from_us == 0 || now - mc->send_from_us >= window_us) {
		if (mc->send_from_us != 0 &&
		    (double)(acked - mc->acked_mark) <
			(double)lim->body_min_rate * (double)(now - mc->send_from_us) / 1e6)
			return true;
		mc->send_from_us = now;
		mc->acked_mark = acked;
	}
	return false;
}

/* Whether mc, in its phase since since_us, has been too slow at now. */
static bool too_slow(struct http_server *srv, struct http_mhd_conn *mc, int64_t now)
{
	const struct http_limits *lim = &srv->limits;
	int64_t grace_us = (int64_t)lim->head_timeout_s * 1000000;
	int64_t since = atomic_load(&mc->phase_us);
	switch (atomic_load(&mc->phase)) {
	case HTTP_PHASE_WAIT_HEAD: {
		/* Idle between requests is libmicrohttpd's to time out; once a
		 * head has begun (the kernel has received bytes since the wait
		 * began), the rest of it has grace_us. A connection's first head
		 * began before it was handed over. */
		uint64_t rx = bytes_received(mc->fd);
		if (mc->wait_of_us != since) {
			mc->wait_of_us = since;
			mc->rx_mark = rx;
			mc->head_from_us = atomic_load(&mc->answered) == 0 ? since : 0;
		} else if (mc->head_from_us == 0 && rx != mc->rx_mark) {
			mc->head_from_us = now;
		}
		return mc->head_from_us != 0 && now - mc->head_from_us > grace_us;
	}
	case HTTP_PHASE_BODY: {
		/* Time the sink took to pass pieces on is not the client's. */
		int64_t in_sink = atomic_load(&mc->sink_since_us);
		int64_t elapsed =
		    now - since - atomic_load(&mc->paused_us) - (in_sink ? now - in_sink : 0);
		if (lim->body_min_rate == 0 || elapsed <= grace_us)
			return false;
		double need = (double)lim->body_min_rate * (double)(elapsed - grace_us) / 1e6;
		return (double)atomic_load(&mc->body_bytes) < need;
	}
	case HTTP_PHASE_ANSWER:
		return answer_too_slow(srv, mc, since, now);
	default:
		return false;
	}
}

static void *guard_main(void *arg)
{
	struct http_server *srv = arg;
	int64_t logged_us = mono_us();
	long cuts = 0;
	pthread_mutex_lock(&srv->lock);
	while (!srv->stopping) {
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_sec += GUARD_TICK_MS / 1000;
		pthread_cond_timedwait(&srv->guard_wake, &srv->lock, &ts);
		if (srv->stopping)
			break;
		int64_t now = mono_us();
		for (struct http_mhd_conn *mc = srv->mhd_conns; mc; mc = mc->next) {
			queued_drain(mc);
			if (!mc->cut && too_slow(srv, mc, now)) {
				cut(srv, mc);
				cuts++;
			}
		}
		if (cuts > 0 && now - logged_us >= GUARD_LOG_EVERY_US) {
			fprintf(stderr,
				"bunkerd: cut %ld connection(s) whose request head or body came, "
				"or whose answer was taken, too slowly\n",
				cuts);
			cuts = 0;
			logged_us = now;
		}
	}
	pthread_mutex_unlock(&srv->lock);
	return NULL;
}

int http_guard_start(struct http_server *srv, struct bk_err *err)
{
	int e = pthread_create(&srv->guard_thread, NULL, guard_main, srv);
	if (e != 0)
		return bk_err_set(err, e, "cannot start the connection guard");
	srv->guard_running = true;
	return 0;
}

void http_guard_stop(struct http_server *srv)
{
	if (!srv->guard_running)
		return;
	pthread_mutex_lock(&srv->lock);
	srv->stopping = true;
	pthread_cond_broadcast(&srv->guard_wake);
	pthread_mutex_unlock(&srv->lock);
	pthread_join(srv->guard_thread, NULL);
	srv->guard_running = false;
}
