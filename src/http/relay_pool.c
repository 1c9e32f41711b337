/* The relay's workers: threads that move the bytes of relayed
 * connections, each over an epoll set of its own.
 *
 * Why workers and not the connection's own thread: with a thread per
 * relayed connection, every request woke its thread twice (the request
 * came, the answer came), and on these machines those context switches
 * cost more than the relaying itself (perf: a third of the proxy's time in
 * the scheduler and in wake-ups). A few threads with an epoll set each
 * find several connections ready per wake-up under load. No worker ever
 * blocks: the sockets are non-blocking and the hooks they call
 * (on_request, cancelled) are quick, so one connection cannot hold up
 * another. The connection's own thread keeps what may block (the Host
 * peek, opening the upstream, which may wake a session) and the release,
 * which must run on the thread that opened.
 *
 * How many: one per two CPUs. The relay shares its machine with the
 * sessions' apps, whose work the bytes are for; what costs is the kernel's
 * TCP work in send() and recv() (perf: nine tenths of a worker's time), the
 * same for any number of workers, and each worker more is one more thread
 * to wake and switch to, with fewer connections ready per wake-up. On 2
 * CPUs (bench/preview.sh), one worker relayed about 15% more requests a
 * second than two, with a lower p99.
 */

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "http/http_int.h"
#include "http/relay.h"
#include "util/util.h"

#define WORKERS_MAX 8
/* The workers' thread name (at most 15 bytes). */
#define RELAY_WORKER_NAME "bk-relay"
/* How often a worker looks at its relays' deadlines and cancellations. */
#define ROUND_MS 100

/* An epoll tag: the relay pointer with the side in its low bit. */
#define TAG_SIDE 1u

struct relay_worker {
	pthread_t thread;
	int ep;
	int wake;		/* eventfd: incoming relays, or quit */
	pthread_mutex_t lock;	/* guards incoming and quit */
	struct relay *incoming; /* handed over, not yet in the set */
	bool quit;
	struct relay *relays;	/* the worker's own: only it touches the list */
	struct relay *finished; /* ended in this batch, their threads not yet woken */
	int64_t now_us;		/* mono_us() when the batch at hand began */
};

struct relay_pool {
	int n;
	unsigned next; /* round robin, atomic */
	struct relay_worker w[WORKERS_MAX];
};

/* Makes the epoll set's interest for side i of r what want says; a side
 * that wants nothing is taken out (its hang-up would otherwise be
 * reported at every wait), except the client, whose hang-up matters. */
static int interest(struct relay *r, int i, uint32_t want)
{
	int fd = i == 0 ? r->c : r->u;
	bool in = i == 0 || want != 0;
	if (i == 1 && r->u_hup)
		in = false;
	struct epoll_event ev = {.events = want, .data.u64 = (uint64_t)(uintptr_t)r | (uint64_t)i};
	if (in != r->in_set[i]) {
		if (epoll_ctl(r->w->ep, in ? EPOLL_CTL_ADD : EPOLL_CTL_DEL, fd, &ev) < 0)
			return -1;
		r->in_set[i] = in;
		r->ev[i] = want;
	} else if (in && want != r->ev[i]) {
		if (epoll_ctl(r->w->ep, EPOLL_CTL_MOD, fd, &ev) < 0)
			return -1;
		r->ev[i] = want;
	}
	return 0;
}

static void worker_unlink(struct relay_worker *w, struct relay *r)
{
	if (r->prev)
		r->prev->next = r->next;
	else
		w->relays = r->next;
	if (r->next)
		r->next->prev = r->prev;
	r->prev = r->next = NULL;
}

/* Ends r's time with the worker. Its thread is woken by worker_wake_done()
 * after the batch of events at hand: it frees r, which a later event of
 * the same batch may still name. */
static void relay_finish(struct relay_worker *w, struct relay *r, bool refused)
{
	for (int i = 0; i < 2; i++)
		if (r->in_set[i])
			epoll_ctl(w->ep, EPOLL_CTL_DEL, i == 0 ? r->c : r->u, NULL);
	r->in_set[0] = r->in_set[1] = false;
	worker_unlink(w, r);
	r->refused = refused;
	r->queue_next = w->finished;
	w->finished = r;
}

static void worker_wake_done(struct relay_worker *w)
{
	while (w->finished) {
		struct relay *r = w->finished;
		w->finished = r->queue_next;
		pthread_mutex_lock(&r->done_lock);
		r->done = true;
		pthread_cond_signal(&r->done_cond);
		pthread_mutex_unlock(&r->done_lock);
	}
}

/* Runs a step of r with events rev and applies its outcome. */
static void relay_run(struct relay_worker *w, struct relay *r, const uint32_t rev[2])
{
	uint32_t want[2] = {0, 0};
	enum relay_outcome st = http__relay_step(r, rev, want, w->now_us);
	if (st == RELAY_WAIT && (interest(r, 0, want[0]) < 0 || interest(r, 1, want[1]) < 0))
		st = RELAY_END;
	if (st != RELAY_WAIT)
		relay_finish(w, r, st == RELAY_REFUSE);
}

static void *worker_main(void *arg)
{
	struct relay_worker *w = arg;
	struct epoll_event evs[64];
	int64_t last_round = mono_us();
	for (;;) {
		int n = epoll_wait(w->ep, evs, (int)ARRAY_SIZE(evs), ROUND_MS);
		if (n < 0 && errno != EINTR)
			n = 0;
		w->now_us = mono_us();
		for (int k = 0; k < n; k++) {
			uint64_t tag = evs[k].data.u64;
			if (tag == 0) {
				/* The eventfd: relays handed over, or quit. */
				uint64_t v;
				if (read(w->wake, &v, sizeof(v)) < 0) {
					/* nothing to take: a spurious wake-up */
				}
				pthread_mutex_lock(&w->lock);
				struct relay *in = w->incoming;
				w->incoming = NULL;
				bool quit = w->quit;
				pthread_mutex_unlock(&w->lock);
				while (in) {
					struct relay *r = in;
					in = in->queue_next;
					r->w = w;
					r->next = w->relays;
					if (w->relays)
						w->relays->prev = r;
					w->relays = r;
					uint32_t none[2] = {0, 0};
					relay_run(w, r, none);
				}
				if (quit) {
					worker_wake_done(w);
					return NULL;
				}
				continue;
			}
			struct relay *r = (struct relay *)(uintptr_t)(tag & ~(uint64_t)TAG_SIDE);
			uint32_t rev[2] = {0, 0};
			rev[tag & TAG_SIDE] = evs[k].events;
			/* Both sides ready at once come as two events: the first
			 * step may finish r, so the second must know. */
			if (!r->in_set[tag & TAG_SIDE])
				continue;
			relay_run(w, r, rev);
		}
		worker_wake_done(w);
		int64_t now = w->now_us;
		if (now - last_round < (int64_t)ROUND_MS * 1000)
			continue;
		last_round = now;
		/* Deadlines, and upstreams that hung up under a slow client
		 * (a delete shuts them down: cancelled() says so). */
		for (struct relay *r = w->relays, *next; r; r = next) {
			next = r->next;
			if (r->u_hup || (r->deadline_us && now >= r->deadline_us) ||
			    (r->up.cancelled && r->up.cancelled(r->up.ctx))) {
				uint32_t none[2] = {0, 0};
				relay_run(w, r, none);
			}
		}
		worker_wake_done(w);
	}
}

void http_relay_stop(struct http_server *srv)
{
	struct relay_pool *pool = srv->relays;
	if (pool == NULL)
		return;
	for (int i = 0; i < pool->n; i++) {
		struct relay_worker *w = &pool->w[i];
		pthread_mutex_lock(&w->lock);
		w->quit = true;
		pthread_mutex_unlock(&w->lock);
		uint64_t one = 1;
		if (write(w->wake, &one, sizeof(one)) < 0)
			fprintf(stderr, "bunkerd: cannot stop a relay worker: %s\n",
				strerror(errno));
		pthread_join(w->thread, NULL);
		close(w->wake);
		close(w->ep);
		pthread_mutex_destroy(&w->lock);
	}
	free(pool);
	srv->relays = NULL;
}

int http_relay_start(struct http_server *srv, struct bk_err *err)
{
	struct relay_pool *pool = calloc(1, sizeof(*pool));
	if (pool == NULL)
		return bk_err_set(err, ENOMEM, "cannot start the relay");
	srv->relays = pool;
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	int want = cpus < 2 ? 1 : cpus / 2 > WORKERS_MAX ? WORKERS_MAX : (int)(cpus / 2);
	for (int i = 0; i < want; i++) {
		struct relay_worker *w = &pool->w[i];
		w->ep = epoll_create1(EPOLL_CLOEXEC);
		w->wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 0};
		if (w->ep < 0 || w->wake < 0 || epoll_ctl(w->ep, EPOLL_CTL_ADD, w->wake, &ev) < 0) {
			int e = errno;
			if (w->ep >= 0)
				close(w->ep);
			if (w->wake >= 0)
				close(w->wake);
			http_relay_stop(srv);
			return bk_err_set(err, e, "cannot start the relay");
		}
		pthread_mutex_init(&w->lock, NULL);
		int e = pthread_create(&w->thread, NULL, worker_main, w);
		if (e != 0) {
			close(w->ep);
			close(w->wake);
			pthread_mutex_destroy(&w->lock);
			http_relay_stop(srv);
			return bk_err_set(err, e, "cannot start the relay");
		}
		/* Named for perf and top, and for bench/preview, which gives
		 * nginx as many worker processes as it counts of these. */
		pthread_setname_np(w->thread, RELAY_WORKER_NAME);
		pool->n++;
	}
	return 0;
}

bool http__relay_hand_over(struct relay_pool *pool, struct relay *r)
{
	unsigned i = __atomic_fetch_add(&pool->next, 1, __ATOMIC_RELAXED) % (unsigned)pool->n;
	struct relay_worker *w = &pool->w[i];
	pthread_mutex_lock(&w->lock);
	r->queue_next = w->incoming;
	w->incoming = r;
	pthread_mutex_unlock(&w->lock);
	uint64_t one = 1;
	if (write(w->wake, &one, sizeof(one)) < 0 && errno != EAGAIN) {
		/* The eventfd cannot fail short of a bug; the relay waits for
		 * the worker's next wake-up if it does. */
		fprintf(stderr, "bunkerd: cannot wake a relay worker: %s\n", strerror(errno));
	}
	pthread_mutex_lock(&r->done_lock);
	while (!r->done)
		pthread_cond_wait(&r->done_cond, &r->done_lock);
	bool refused = r->refused;
	pthread_mutex_unlock(&r->done_lock);
	return refused;
}
