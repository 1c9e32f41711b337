/* What the http/ files share; nothing outside http/ includes it.
 *
 * Locks: srv->lock guards the per-client counts, the list of relayed
 * connections (conns), the registry of libmicrohttpd's connections
 * (mhd_conns) and the lingering sockets handed to the front door
 * (linger_new). Nothing is called with it held but system calls that do
 * not block (shutdown, getsockopt, write to an eventfd).
 */
#pragma once

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "http/server.h"

struct MHD_Daemon;
struct relay_pool;

/* Connections libmicrohttpd serves at once; when full, the one kept alive
 * idle for longest makes room (MHD's own limit is a little higher, for
 * those on their way out). */
#define HTTP_MHD_CONN_MAX 4096
/* Connections waiting at the front door for their first head; when full,
 * the oldest is closed. They cost a descriptor and this much memory each,
 * no thread. */
#define HTTP_DOOR_WAIT_MAX 4096
/* Relayed connections (a thread each). */
#define HTTP_RELAY_CONN_MAX 4096

/* A client as the per-client limit counts it: an IPv4 address, or the /64
 * of an IPv6 one (one subscriber's share; an IPv4 address mapped into
 * IPv6 counts as IPv4). */
struct http_client {
	uint8_t b[16];
};

/* What a front door epoll event points at. */
enum http_door_kind {
	HTTP_DOOR_DEAD = 0,    /* closed, not yet freed */
	HTTP_DOOR_WAITING = 1, /* a struct http_conn, before its first head */
	HTTP_DOOR_LINGER,      /* a struct http_linger */
};

/* One accepted connection while its socket is ours: from accept() until it
 * is handed to libmicrohttpd, or until the relay closes it. */
struct http_conn {
	enum http_door_kind kind; /* first: HTTP_DOOR_WAITING */
	struct http_server *srv;
	int fd;
	struct sockaddr_storage addr;
	socklen_t addrlen;
	struct http_client client;
	char ip[64];	   /* the client's address, as text */
	char host[320];	   /* the Host of its first request ("" when none) */
	char target[1024]; /* its request-target, cut short if longer */
	char hop[256];	   /* its hosts.hop_name header's value ("" when none) */
	bool has_hop;
	char method[16];     /* the method of its first request */
	int64_t deadline_us; /* its first head must be in by then */
	int have;	     /* bytes of head seen at the last look */
	/* At the door: the waiting list, oldest first (door thread only). */
	struct http_conn *wprev, *wnext;
	/* Relayed: srv->conns, which http_server_stop() shuts down (lock). */
	bool listed;
	struct http_conn *prev, *next;
};

/* A socket closed after an answer that left its body unread: read and
 * dropped at the door for a moment, so that the close does not reset the
 * connection under the answer. */
struct http_linger {
	enum http_door_kind kind; /* first: HTTP_DOOR_LINGER */
	int fd;
	struct http_client client;
	int64_t deadline_us;
	size_t dropped;
	struct http_linger *prev, *next;
};

/* Where a connection of libmicrohttpd's is in its request (the guard's
 * rules differ by phase). */
enum http_phase {
	HTTP_PHASE_WAIT_HEAD = 0, /* between requests, or reading a head */
	HTTP_PHASE_BODY,	  /* reading a body */
	HTTP_PHASE_HANDLER,	  /* the server's turn: nothing is timed */
	HTTP_PHASE_ANSWER,	  /* sending the answer */
};

/* One connection of libmicrohttpd's, from MHD_CONNECTION_NOTIFY_STARTED to
 * _CLOSED (its socket context); on srv->mhd_conns while its socket is
 * open, which is what lets the guard shut it down. */
struct http_mhd_conn {
	struct http_server *srv;
	int fd;
	struct http_client client;
	unsigned requests; /* begun so far (connection thread only) */
	/* Written by the connection's thread, read by the guard. */
	_Atomic unsigned answered; /* requests ended */
	_Atomic int phase;	   /* enum http_phase */
	_Atomic int64_t phase_us;
	_Atomic uint64_t body_bytes;
	/* Of the body's time: spent in the sink's write() so far, and since
	 * when the write() under way runs (0: none). */
	_Atomic int64_t paused_us;
	_Atomic int64_t sink_since_us;
	_Atomic bool linger;	/* closed after an early answer: linger */
	_Atomic bool timed_out; /* libmicrohttpd ended a request at its timeout */
	/* The last request's charge while the socket's send queue holds some
	 * of its answer (struct http_body_plan): what it holds follows the
	 * queue, given back as it drains (the guard), all of it on close.
	 * Under srv->lock. */
	struct budget_charge *queued;
	/* The guard's own (under srv->lock). */
	int64_t wait_of_us;   /* the wait (its phase_us) that rx_mark is of */
	uint64_t rx_mark;     /* bytes the kernel had received when it began */
	int64_t head_from_us; /* when its head began; 0: not yet */
	/* An answer waiting for its client: the answer (its phase_us) and
	 * the window that acked_mark is of (0: the client keeps up). */
	int64_t send_of_us, send_from_us;
	uint64_t acked_mark; /* bytes the client had acknowledged then */
	bool cut;
	struct http_mhd_conn *prev, *next;
};

struct http_client_count;

#define HTTP_CLIENT_BUCKETS 1024

struct http_server {
	struct MHD_Daemon *mhd;
	struct http_handler_ops ops;
	struct http_limits limits;
	struct http_host_hooks hosts;
	bool has_hosts;

	/* The front door (http/accept.c). */
	int listen_fd;
	int epoll_fd;
	int wake_fd; /* an eventfd: stop, or lingering sockets handed over */
	pthread_t door_thread;
	bool door_running;
	struct http_conn *wait_head, *wait_tail; /* door thread only */
	int n_waiting;
	struct http_linger *linger_head, *linger_tail; /* door thread only */

	pthread_mutex_t lock;	 /* guards what follows */
	pthread_cond_t drained;	 /* n_threads reached 0 */
	struct http_conn *conns; /* relayed sockets that http_server_stop() shuts down */
	int n_threads;		 /* relay connection threads alive */
	bool stopping;
	struct http_linger *linger_new; /* handed to the door, not yet taken */
	struct http_client_count *clients[HTTP_CLIENT_BUCKETS];
	struct http_mhd_conn *mhd_conns;
	int n_mhd, n_cut; /* registered; of them shut down by the guard */

	/* The guard (http/guard.c). */
	pthread_t guard_thread;
	bool guard_running;
	pthread_cond_t guard_wake;

	/* The relay's workers (http/relay_pool.c), when there are hosts hooks. */
	struct relay_pool *relays;

	/* Whether a connection's thread may run bulk work (http/server.c) at
	 * a lower priority: only when it can be given its own back. */
	bool bulk_nice;
};

/* ---- the front door (http/accept.c) ---- */

/* Starts listening on addr:port and the door's thread. */
int http_accept_start(struct http_server *srv, const char *addr, int port, struct bk_err *err);
/* Stops accepting, closes what waits at the door, shuts every relayed
 * connection down and waits for their threads to end. */
void http_accept_stop(struct http_server *srv);
/* The first request head at the door, in buf[0..len) (not NUL-terminated:
 * what recv() peeked): 1 when it is whole and has a Host (host, method and
 * target filled, the target cut short to fit), 0 when it is whole without
 * a usable one (or is no HTTP/1.x head), -1 when more bytes are needed to
 * tell; host is filled as soon as its line is in. With hop_name (a header
 * name, or NULL), *has_hop says whether the head has that header, and hop
 * holds its value. Non-static for tests/fuzz/http_head.c. */
int http__head_scan(const char *buf, size_t len, char *host, size_t hostlen, char *method,
		    size_t methodlen, char *target, size_t targetlen, const char *hop_name,
		    char *hop, size_t hoplen, bool *has_hop);
/* Takes conn off the list that stop shuts down, before its socket closes. */
void http_conn_unlist(struct http_conn *conn);
/* Hands fd (taken), a socket libmicrohttpd has finished with, to the door
 * to linger on; the client's slot goes with it. Any thread. */
void http_door_linger(struct http_server *srv, int fd, const struct http_client *client);

/* ---- libmicrohttpd's side (http/server.c) ---- */

/* Hands conn's socket to libmicrohttpd (conn is freed). */
void http_mhd_adopt(struct http_server *srv, struct http_conn *conn);

/* ---- the guard (http/guard.c): per-client counts, slow clients ---- */

/* The client of addr. */
void http_client_of(const struct sockaddr *addr, struct http_client *out);
/* Takes one of client's slots: false when it holds max_conns_per_client
 * already (force: take one anyway). Lock held. */
bool http__client_take(struct http_server *srv, const struct http_client *client, bool force);
/* Gives one back. Lock held. */
void http__client_release(struct http_server *srv, const struct http_client *client);
/* The same, taking the lock. */
void http_client_release(struct http_server *srv, const struct http_client *client);
/* Forgets every count (the server has stopped: none should be left). */
void http_clients_clear(struct http_server *srv);
/* Registers and forgets a libmicrohttpd connection (its slot included). */
void http_guard_add(struct http_server *srv, struct http_mhd_conn *mc);
void http_guard_remove(struct http_server *srv, struct http_mhd_conn *mc);
/* Sets mc's phase (connection thread). */
/* mc is closing: gives back what its send queue held, and makes the close
 * a reset when its client had stopped reading (cut, or timed out). */
void http_guard_closing(struct http_server *srv, struct http_mhd_conn *mc);
/* Takes c (NULL is fine), the charge of mc's request that has ended: keeps
 * what of it the socket's send queue holds in place of mc's earlier one,
 * gives back the rest. */
void http_guard_queued(struct http_server *srv, struct http_mhd_conn *mc, struct budget_charge *c);
void http_guard_phase(struct http_mhd_conn *mc, enum http_phase phase);
/* Whether libmicrohttpd can take one more connection: when it is full,
 * shuts down the one that has waited for a request longest (it leaves
 * within moments) and says true; false when none is waiting. */
bool http_guard_make_room(struct http_server *srv);
/* Starts and stops the guard's thread, which cuts connections whose head
 * or body comes too slowly. */
int http_guard_start(struct http_server *srv, struct bk_err *err);
void http_guard_stop(struct http_server *srv);

/* ---- the relay ---- */

/* Starts and stops the threads that move relayed bytes; stop only once
 * no connection thread is left. */
int http_relay_start(struct http_server *srv, struct bk_err *err);
void http_relay_stop(struct http_server *srv);
/* Serves conn (a relayed host) to its end: opens the upstream, relays every
 * request and answer, closes and frees conn (http/relay.c). */
void http_proxy_serve(struct http_conn *conn);
