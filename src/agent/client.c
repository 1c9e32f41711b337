#include "agent/client.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "util/util.h"

struct msg_node {
	struct agent_msg msg;
	struct msg_node *next;
};

struct agent_call {
	struct agent_conn *conn;
	uint32_t id;
	struct msg_node *head, *tail;
	pthread_cond_t cond;
	struct agent_call *next;
};

struct agent_conn {
	int fd;
	pthread_mutex_t lock;  /* refs, dead, calls, next_id */
	pthread_mutex_t wlock; /* one writer at a time */
	pthread_t reader;
	int refs;
	bool dead;
	uint32_t next_id;
	struct agent_call *calls;
};

static void conn_unref_locked(struct agent_conn *c, bool *freed)
{
	*freed = --c->refs == 0;
}

static void conn_free(struct agent_conn *c)
{
	pthread_mutex_destroy(&c->lock);
	pthread_mutex_destroy(&c->wlock);
	if (c->fd >= 0)
		close(c->fd);
	free(c);
}

static void *reader_main(void *arg)
{
	struct agent_conn *c = arg;
	for (;;) {
		struct agent_msg m;
		int r = agent_msg_recv(c->fd, &m);
		pthread_mutex_lock(&c->lock);
		if (r <= 0) {
			c->dead = true;
			for (struct agent_call *k = c->calls; k; k = k->next)
				pthread_cond_broadcast(&k->cond);
			pthread_mutex_unlock(&c->lock);
			return NULL;
		}
		struct agent_call *k = c->calls;
		while (k && k->id != m.req_id)
			k = k->next;
		struct msg_node *n = k ? malloc(sizeof(*n)) : NULL;
		if (n == NULL) {
			/* An answer nobody waits for any more (or no memory). */
			agent_msg_release(&m);
		} else {
			n->msg = m;
			n->next = NULL;
			if (k->tail)
				k->tail->next = n;
			else
				k->head = n;
			k->tail = n;
			pthread_cond_signal(&k->cond);
		}
		pthread_mutex_unlock(&c->lock);
	}
}

int agent_conn_open_take(int fd, int timeout_ms, struct agent_conn **out, struct bk_err *err)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};
	int r;
	do
		r = poll(&p, 1, timeout_ms);
	while (r < 0 && errno == EINTR);
	if (r <= 0) {
		close(fd);
		return bk_err_set(err, r == 0 ? ETIMEDOUT : errno,
				  "no hello from the sandbox's init");
	}
	struct agent_msg hello;
	r = agent_msg_recv(fd, &hello);
	if (r <= 0) {
		close(fd);
		return bk_err_set(err, r == 0 ? EPIPE : errno, "no hello from the sandbox's init");
	}
	int64_t version = agent_msg_get_i64(&hello, AGENT_T_VERSION, 0);
	uint16_t type = hello.type;
	agent_msg_release(&hello);
	if (type != AGENT_HELLO || version != AGENT_PROTO_VERSION) {
		close(fd);
		return bk_err_kind(err, BK_E_INTERNAL,
				   "sandbox init speaks protocol %lld, bunkerd speaks %d",
				   (long long)version, AGENT_PROTO_VERSION);
	}
	struct agent_conn *c = calloc(1, sizeof(*c));
	if (c == NULL) {
		close(fd);
		return bk_err_set(err, ENOMEM, "cannot open agent connection");
	}
	c->fd = fd;
	c->refs = 1;
	c->next_id = 1;
	pthread_mutex_init(&c->lock, NULL);
	pthread_mutex_init(&c->wlock, NULL);
	int e = pthread_create(&c->reader, NULL, reader_main, c);
	if (e != 0) {
		conn_free(c);
		return bk_err_set(err, e, "cannot start agent reader");
	}
	*out = c;
	return 0;
}

void agent_conn_shutdown(struct agent_conn *c)
{
	shutdown(c->fd, SHUT_RDWR);
}

void agent_conn_close(struct agent_conn *c)
{
	if (c == NULL)
		return;
	agent_conn_shutdown(c);
	pthread_join(c->reader, NULL);
	pthread_mutex_lock(&c->lock);
	bool freed;
	conn_unref_locked(c, &freed);
	pthread_mutex_unlock(&c->lock);
	if (freed)
		conn_free(c);
}

bool agent_conn_alive(struct agent_conn *c)
{
	pthread_mutex_lock(&c->lock);
	bool alive = !c->dead;
	pthread_mutex_unlock(&c->lock);
	return alive;
}

int agent_call_begin(struct agent_conn *c, struct agent_msg *req, struct agent_call **out,
		     struct bk_err *err)
{
	struct agent_call *k = calloc(1, sizeof(*k));
	if (k == NULL)
		return bk_err_set(err, ENOMEM, "cannot start agent call");
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&k->cond, &ca);
	pthread_condattr_destroy(&ca);
	k->conn = c;
	pthread_mutex_lock(&c->lock);
	if (c->dead) {
		pthread_mutex_unlock(&c->lock);
		pthread_cond_destroy(&k->cond);
		free(k);
		return bk_err_kind(err, BK_E_INTERNAL, "the sandbox's init is gone");
	}
	k->id = c->next_id++;
	if (c->next_id == 0)
		c->next_id = 1;
	k->next = c->calls;
	c->calls = k;
	c->refs++;
	pthread_mutex_unlock(&c->lock);
	req->req_id = k->id;
	pthread_mutex_lock(&c->wlock);
	int r = agent_msg_send(c->fd, req);
	int e = errno;
	pthread_mutex_unlock(&c->wlock);
	if (r < 0) {
		agent_call_end(k);
		return bk_err_set(err, e, "cannot send to the sandbox's init");
	}
	*out = k;
	return 0;
}

int agent_call_next(struct agent_call *k, struct agent_msg *out, int timeout_ms)
{
	struct agent_conn *c = k->conn;
	struct timespec deadline;
	clock_gettime(CLOCK_MONOTONIC, &deadline);
	if (timeout_ms >= 0) {
		deadline.tv_sec += timeout_ms / 1000;
		deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
		if (deadline.tv_nsec >= 1000000000) {
			deadline.tv_sec++;
			deadline.tv_nsec -= 1000000000;
		}
	}
	pthread_mutex_lock(&c->lock);
	while (k->head == NULL && !c->dead) {
		if (timeout_ms < 0) {
			pthread_cond_wait(&k->cond, &c->lock);
		} else if (pthread_cond_timedwait(&k->cond, &c->lock, &deadline) == ETIMEDOUT) {
			pthread_mutex_unlock(&c->lock);
			return -1;
		}
	}
	struct msg_node *n = k->head;
	if (n == NULL) {
		pthread_mutex_unlock(&c->lock);
		return 0;
	}
	k->head = n->next;
	if (k->head == NULL)
		k->tail = NULL;
	pthread_mutex_unlock(&c->lock);
	*out = n->msg;
	free(n);
	return 1;
}

void agent_call_end(struct agent_call *k)
{
	struct agent_conn *c = k->conn;
	pthread_mutex_lock(&c->lock);
	for (struct agent_call **pp = &c->calls; *pp; pp = &(*pp)->next) {
		if (*pp == k) {
			*pp = k->next;
			break;
		}
	}
	while (k->head) {
		struct msg_node *n = k->head;
		k->head = n->next;
		agent_msg_release(&n->msg);
		free(n);
	}
	bool freed;
	conn_unref_locked(c, &freed);
	pthread_mutex_unlock(&c->lock);
	pthread_cond_destroy(&k->cond);
	free(k);
	if (freed)
		conn_free(c);
}

uint32_t agent_call_id(const struct agent_call *k)
{
	return k->id;
}

int agent_call_answer(struct agent_conn *c, struct agent_msg *req, struct agent_msg *ans,
		      struct bk_err *err)
{
	struct agent_call *k;
	if (agent_call_begin(c, req, &k, err) < 0)
		return -1;
	struct agent_msg a;
	int r = agent_call_next(k, &a, AGENT_CALL_TIMEOUT_MS);
	agent_call_end(k);
	if (r < 0)
		return bk_err_kind(err, BK_E_UNAVAILABLE,
				   "the sandbox's init did not answer in %d s",
				   AGENT_CALL_TIMEOUT_MS / 1000);
	if (r == 0)
		return bk_err_kind(err, BK_E_INTERNAL, "the sandbox's init went away");
	if (a.type != AGENT_RESULT) {
		agent_msg_release(&a);
		return bk_err_kind(err, BK_E_INTERNAL, "unexpected answer %d from init", a.type);
	}
	int e = (int)agent_msg_get_i64(&a, AGENT_T_ERRNO, EPROTO);
	if (e == 0 && ans != NULL)
		*ans = a;
	else
		agent_msg_release(&a);
	return e;
}
