/* Streamed executions as Server-Sent Events, for any dialect.
 *
 * A dialect says how to run its execution and how to render its end
 * (struct api_stream_ops); the engine runs it on a worker thread of its own
 * and answers the request, as they come, with
 *
 *   event: stdout or stderr, data: {"data":"..."}   for each piece of output
 *   event and data of the dialect's choosing         once, last
 *   ": ping"                                         after SSE_PING_S of silence
 *
 * Output is cut only between whole UTF-8 sequences (a sequence split by the
 * pipe waits for its end); the client hanging up cancels the execution.
 * Shutdown waits for every worker (api_stream_drain()).
 *
 * What waits to be sent is kept raw and escaped as the socket drains
 * (api_json_escape_some()), the last event's result too (api_answer_new()):
 * a control byte is six bytes of JSON, and jansson made them all at once.
 * The events' copy of the output is charged to the key with the output
 * itself, and given back as it is sent: a stream whose client does not
 * keep up stops sending that stream's events where the key's share is
 * spent (its last event still carries the result).
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/api_int.h"
#include "util/budget.h"
#include "util/util.h"

#define SSE_PING_S 15

bool api_client_hung_up(int fd)
{
	struct pollfd p = {.fd = fd, .events = POLLRDHUP};
	return fd >= 0 && poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

/* Shared by the execution's worker thread and the connection's thread,
 * each holding a reference; every field but the constant ones (ops, ctx,
 * client_fd) under mu. */
struct api_stream {
	pthread_mutex_t mu;
	pthread_cond_t cond;
	int refs;
	/* Events not yet sent, as records: a type (REC_*), a length (4 bytes)
	 * and that many bytes. */
	struct buf queue;
	size_t rec_at;	      /* the record being sent */
	int rec_part;	      /* 0: its start, 1: its bytes, 2: its end */
	size_t rec_byte;      /* in its bytes */
	struct api_pend pend; /* a unit of an escape that did not fit */
	bool cut[2];	      /* a stream's events stopped (its share was spent) */
	bool done;	      /* the final event is queued */
	/* The final event's result, sent after the queue (NULL: none), then
	 * "\n\n". */
	struct api_answer *final;
	int final_part;		      /* 0: the answer, 1: its end, 2: sent */
	struct budget_charge *charge; /* the output's and the queue's; owned */
	int client_fd;		      /* polled for the client hanging up */
	bool cancelled;		      /* the client went away */
	char carry[2][4];	      /* an incomplete UTF-8 sequence per stream */
	size_t carry_len[2];
	const struct api_stream_ops *ops;
	void *ctx; /* the dialect's, released with the stream */
};

static void stream_unref(struct api_stream *s)
{
	pthread_mutex_lock(&s->mu);
	bool last = --s->refs == 0;
	pthread_mutex_unlock(&s->mu);
	if (!last)
		return;
	s->ops->release(s->ctx);
	api_answer_free(s->final);
	budget_charge_release(s->charge);
	buf_free(&s->queue);
	pthread_mutex_destroy(&s->mu);
	pthread_cond_destroy(&s->cond);
	free(s);
}

enum { REC_TEXT = 'T', REC_STDOUT = 'O', REC_STDERR = 'E' };
#define REC_HEAD 5

/* With s->mu held: queues a record. */
static void stream_record(struct api_stream *s, char type, const char *data, size_t len)
{
	unsigned char head[REC_HEAD] = {(unsigned char)type};
	uint32_t n = (uint32_t)len;
	memcpy(head + 1, &n, 4);
	buf_append(&s->queue, head, REC_HEAD);
	buf_append(&s->queue, data, len);
	pthread_cond_broadcast(&s->cond);
}

/* With s->mu held: queues one event whose data is JSON (data's reference
 * is stolen). */
static void stream_event(struct api_stream *s, const char *event, json_t *data)
{
	char *text = json_dumps(data, JSON_COMPACT);
	json_decref(data);
	char *ev = NULL;
	int n = text ? asprintf(&ev, "event: %s\ndata: %s\n\n", event, text) : -1;
	free(text);
	if (n < 0)
		return;
	stream_record(s, REC_TEXT, ev, (size_t)n);
	free(ev);
}

/* How many bytes at the end of p[0..n) start a UTF-8 sequence that the
 * next chunk completes. */
static size_t utf8_tail(const unsigned char *p, size_t n)
{
	for (size_t back = 1; back <= 3 && back <= n; back++) {
		unsigned char c = p[n - back];
		if ((c & 0xC0) == 0x80)
			continue;
		size_t need = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
		return need > back ? back : 0;
	}
	return 0;
}

static void stream_on_output(void *ctx, int stream, const char *data, size_t len)
{
	struct api_stream *s = ctx;
	int i = stream == 2 ? 1 : 0;
	struct buf b;
	buf_init(&b, len + 4);
	buf_append(&b, s->carry[i], s->carry_len[i]);
	buf_append(&b, data, len);
	size_t tail = utf8_tail((const unsigned char *)b.data, b.len);
	memcpy(s->carry[i], b.data + b.len - tail, tail);
	s->carry_len[i] = tail;
	size_t n = b.len - tail;
	/* The copy the event keeps until it is sent, charged with the
	 * output: past the key's share this stream's events stop. */
	pthread_mutex_lock(&s->mu);
	if (!s->cut[i] && n > 0) {
		size_t got = budget_charge_take(s->charge, n);
		if (got == n) {
			stream_record(s, i ? REC_STDERR : REC_STDOUT, b.data, n);
		} else {
			budget_charge_give(s->charge, got);
			s->cut[i] = true;
		}
	}
	pthread_mutex_unlock(&s->mu);
	buf_free(&b);
}

static bool stream_cancelled(void *ctx)
{
	struct api_stream *s = ctx;
	pthread_mutex_lock(&s->mu);
	bool c = s->cancelled;
	pthread_mutex_unlock(&s->mu);
	return c;
}

void api_stream_hook(struct api_stream *s, struct core_exec_req *req)
{
	req->on_output = stream_on_output;
	req->cancelled = stream_cancelled;
	req->ctx = s;
	req->charge = s->charge;
}

/* The worker threads are detached; shutdown waits for them
 * (api_stream_drain()) before core/ is closed under their feet. */
static pthread_mutex_t workers_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t workers_done = PTHREAD_COND_INITIALIZER;
static int workers; /* under workers_lock */

void api_stream_drain(void)
{
	pthread_mutex_lock(&workers_lock);
	while (workers > 0)
		pthread_cond_wait(&workers_done, &workers_lock);
	pthread_mutex_unlock(&workers_lock);
}

static void workers_add(int n)
{
	pthread_mutex_lock(&workers_lock);
	workers += n;
	if (workers == 0)
		pthread_cond_broadcast(&workers_done);
	pthread_mutex_unlock(&workers_lock);
}

static void *stream_worker(void *arg)
{
	struct api_stream *s = arg;
	struct core_exec_result res = {0};
	struct bk_err err = BK_ERR_INIT;
	const char *event = "error";
	int r = s->ops->run(s->ctx, s, &res, &err);
	struct api_answer *answer = NULL;
	json_t *data = s->ops->final_event(s->ctx, r, &res, &err, &event, &answer);
	if (r == 0 && answer == NULL)
		core_exec_result_release(&res);
	pthread_mutex_lock(&s->mu);
	if (answer) {
		char head[64];
		int n = snprintf(head, sizeof(head), "event: %s\ndata: ", event);
		stream_record(s, REC_TEXT, head, (size_t)n);
		s->final = answer;
	} else {
		stream_event(s, event, data);
	}
	s->done = true;
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->mu);
	stream_unref(s);
	workers_add(-1);
	return NULL;
}

/* With s->mu held: whether anything is left to hand over now. */
static bool stream_pending(const struct api_stream *s)
{
	return s->pend.at < s->pend.len || s->rec_at < s->queue.len;
}

/* With s->mu held: hands over what fits out[0..max) of the queued
 * records, escaping output as it goes; the bytes put. */
static size_t stream_fill(struct api_stream *s, char *out, size_t max)
{
	size_t put = 0;
	while (put < max) {
		if (s->pend.at < s->pend.len) {
			put += api_pend_drain(&s->pend, out + put, max - put);
			continue;
		}
		if (s->rec_at >= s->queue.len) {
			/* Everything handed over: start the buffer afresh. */
			s->queue.len = 0;
			s->rec_at = 0;
			break;
		}
		const unsigned char *rec = (const unsigned char *)s->queue.data + s->rec_at;
		uint32_t len;
		memcpy(&len, rec + 1, 4);
		const unsigned char *data = rec + REC_HEAD;
		bool text = rec[0] == REC_TEXT;
		if (s->rec_part == 0) {
			/* {"data":"…"} around output, as json_dumps() wrote it. */
			const char *start = rec[0] == REC_STDERR
						? "event: stderr\ndata: {\"data\":\""
						: "event: stdout\ndata: {\"data\":\"";
			size_t all = text ? 0 : strlen(start);
			size_t n = all - s->rec_byte < max - put ? all - s->rec_byte : max - put;
			memcpy(out + put, start + s->rec_byte, n);
			put += n;
			s->rec_byte += n;
			if (s->rec_byte == all) {
				s->rec_part = 1;
				s->rec_byte = 0;
			}
			continue;
		}
		if (s->rec_part == 1) {
			size_t left = len - s->rec_byte;
			if (left > 0) {
				size_t used, n;
				if (text) {
					n = left < max - put ? left : max - put;
					memcpy(out + put, data + s->rec_byte, n);
					used = n;
				} else {
					n = api_json_escape_some(data + s->rec_byte, left, &used,
								 out + put, max - put, s->pend.b,
								 &s->pend.len);
					s->pend.at = 0;
				}
				put += n;
				s->rec_byte += used;
				continue;
			}
			s->rec_part = 2;
			s->rec_byte = 0;
			if (!text) {
				memcpy(s->pend.b, "\"}\n\n", 4);
				s->pend.len = 4;
				s->pend.at = 0;
				/* The event's copy of the output is sent: its charge
				 * goes back. */
				budget_charge_give(s->charge, len);
			}
			continue;
		}
		s->rec_at += REC_HEAD + len;
		s->rec_part = 0;
		s->rec_byte = 0;
	}
	return put;
}

/* The server's read callback: hands over queued events, waiting for some
 * (and pinging through long silences) until the final one is out; -1
 * ends the answer when the client has hung up. */
static ssize_t stream_read(void *ctx, char *out, size_t max)
{
	struct api_stream *s = ctx;
	pthread_mutex_lock(&s->mu);
	int64_t ping_at = mono_us() + SSE_PING_S * 1000000LL;
	while (!stream_pending(s) && !s->done) {
		/* Wake four times a second: the server writes nothing while we
		 * wait, so only a look at the socket tells that the client left. */
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 250 * 1000 * 1000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		pthread_cond_timedwait(&s->cond, &s->mu, &ts);
		if (stream_pending(s) || s->done)
			break;
		if (api_client_hung_up(s->client_fd)) {
			pthread_mutex_unlock(&s->mu);
			return -1;
		}
		if (mono_us() >= ping_at) {
			pthread_mutex_unlock(&s->mu);
			static const char ping[] = ": ping\n\n";
			memcpy(out, ping, sizeof(ping) - 1);
			return (ssize_t)sizeof(ping) - 1;
		}
	}
	size_t n = stream_fill(s, out, max);
	/* Once the queue is out: the final event's result, then its end. */
	while (n < max && s->done && !stream_pending(s) && s->final && s->final_part < 2) {
		if (s->final_part == 0) {
			ssize_t r = api_answer_read(s->final, out + n, max - n);
			if (r > 0) {
				n += (size_t)r;
				continue;
			}
			memcpy(s->pend.b, "\n\n", 2);
			s->pend.len = 2;
			s->pend.at = 0;
			s->final_part = 1;
		} else {
			s->final_part = 2;
		}
		n += stream_fill(s, out + n, max - n);
	}
	pthread_mutex_unlock(&s->mu);
	return (ssize_t)n;
}

/* The server is done with the answer: an execution still running is
 * cancelled. */
static void stream_free(void *ctx)
{
	struct api_stream *s = ctx;
	pthread_mutex_lock(&s->mu);
	s->cancelled = !s->done;
	pthread_mutex_unlock(&s->mu);
	stream_unref(s);
}

int api_stream_start(struct api_call *c, const struct api_stream_ops *ops, void *ctx,
		     struct bk_err *err)
{
	struct api_stream *s = calloc(1, sizeof(*s));
	if (s == NULL) {
		ops->release(ctx);
		return bk_err_set(err, ENOMEM, "cannot start a stream");
	}
	pthread_mutex_init(&s->mu, NULL);
	pthread_cond_init(&s->cond, NULL);
	buf_init(&s->queue, SIZE_MAX / 2);
	s->charge = core_output_charge_new(c->api->core, &c->key);
	s->refs = 2;
	s->client_fd = c->req->client_fd;
	s->ops = ops;
	s->ctx = ctx;
	pthread_t t;
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	workers_add(1);
	int e = pthread_create(&t, &attr, stream_worker, s);
	pthread_attr_destroy(&attr);
	if (e != 0) {
		workers_add(-1);
		s->refs = 1;
		stream_unref(s);
		return bk_err_set(err, e, "cannot start a stream");
	}
	http_response_stream(c->res, 200, "text/event-stream", stream_read, stream_free, s);
	http_response_header(c->res, "Cache-Control", "no-cache");
	http_response_header(c->res, "X-Accel-Buffering", "no");
	return 0;
}
