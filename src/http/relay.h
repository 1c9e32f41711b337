/* The relay of previews, as the http/ files share it: one relayed
 * connection (http/relay.c) and the workers that move its bytes
 * (http/relay_pool.c). Nothing outside http/ includes it.
 *
 * A relay is touched by one thread at a time: its connection's thread
 * until it is handed over, then its worker until the relay ends, then its
 * connection's thread again; the hand-overs go through the worker's lock
 * and the relay's done_lock, never both held at once.
 */
#pragma once

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "http/http_int.h"
#include "http/proxy.h"

/* Buffers: client bytes not yet parsed (holds a whole head), bytes for the
 * upstream, bytes for the client. */
#define RELAY_IN_CAP PROXY_HEAD_MAX
#define RELAY_OUT_CAP PROXY_OUT_MIN
#define RELAY_DOWN_CAP (64 * 1024)

/* Where a relayed connection stands, seen from its requests' side; each
 * phase's rule is in relay_advance() (http/relay.c). Whatever the phase,
 * the upstream closing (u_eof) ends the connection once what it sent has
 * been delivered. */
enum relay_phase {
	/* The client's bytes are read, parsed and sent up; answers go down. */
	RELAY_OPEN = 0,
	/* Nothing more is read from the client: it half-closed, or one of
	 * its requests was refused (the parser stopped). What was parsed
	 * still goes up; the connection ends between two answers once every
	 * answer asked for has been delivered, never inside one. */
	RELAY_CLIENT_DONE,
	/* The upstream was told that nothing more comes (a half-close),
	 * because where its answers end cannot be told (a tunnel, framing
	 * lost): it ends the connection by closing. */
	RELAY_UP_SHUT,
	/* The same after a request cut short, whose answer will never be
	 * whole: the app has until drain_until_us to finish writing. */
	RELAY_DRAINING,
};

struct relay_worker;

/* One relayed connection. Its thread (http_proxy_serve()) opens the
 * upstream and waits; a worker moves its bytes; its thread then releases
 * the upstream and closes. */
struct relay {
	struct http_conn *conn;
	struct http_upstream up;
	struct proxy_parser parser;
	int c, u;
	char in[RELAY_IN_CAP];
	size_t in_len;
	char out[RELAY_OUT_CAP];
	size_t out_off, out_len;
	char down[RELAY_DOWN_CAP];
	size_t down_off, down_len;
	enum relay_phase phase;
	bool u_eof; /* the upstream closed (or failed): nothing more comes down */
	bool u_hup; /* the upstream hung up while down still held bytes */
	int refuse; /* a status to answer with once the answers before are out, or 0 */
	int64_t last_io_us;
	struct proxy_answers answers; /* where the upstream's answers end */
	int64_t drain_until_us;	      /* RELAY_DRAINING: the end of the app's time to finish */
	int64_t deadline_us;	      /* when the worker must look again unasked, or 0 */

	/* The worker's, while it runs the relay. */
	struct relay_worker *w;
	bool in_set[2];		   /* c, u: in the worker's epoll set */
	uint32_t ev[2];		   /* c, u: their events there */
	struct relay *prev, *next; /* in w->relays */

	/* Handing over and back: under done_lock. */
	pthread_mutex_t done_lock;
	pthread_cond_t done_cond;
	bool done;
	bool refused;		  /* the relay ended with r->refuse to send */
	struct relay *queue_next; /* in w->incoming */
};

/* What a round of a relay ended with. */
enum relay_outcome {
	RELAY_WAIT = 0, /* wants the events in want[] (or its deadline) */
	RELAY_END,	/* done: close */
	RELAY_REFUSE,	/* done: send the refusal in r->refuse, then close */
};

/* One round of the relay (http/relay.c): takes what rev[] (the client's,
 * the upstream's epoll events) says is ready, moves every byte it can, and
 * says what it waits for next in want[] (0 for a side it does not watch)
 * and r->deadline_us. Never blocks. now is the worker's time, read once per
 * batch of events rather than at every read and write: a batch takes
 * microseconds, the limits it is held to a second and more. */
enum relay_outcome http__relay_step(struct relay *r, const uint32_t rev[2], uint32_t want[2],
				    int64_t now);
/* Hands r to one of pool's workers (http/relay_pool.c) and waits until its
 * relay has ended: true when it ended with r->refuse to send. */
bool http__relay_hand_over(struct relay_pool *pool, struct relay *r);
