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
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/api_int.h"
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
	struct buf queue; /* events not yet sent */
	size_t sent;	  /* bytes of queue already handed to the server */
	bool done;	  /* the final event is queued */
	int client_fd;	  /* polled for the client hanging up */
	bool cancelled;	  /* the client went away */
	char carry[2][4]; /* an incomplete UTF-8 sequence per stream */
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
	buf_free(&s->queue);
	pthread_mutex_destroy(&s->mu);
	pthread_cond_destroy(&s->cond);
	free(s);
}

/* With s->mu held: queues one event (data's reference is stolen). */
static void stream_event(struct api_stream *s, const char *event, json_t *data)
{
	char *text = json_dumps(data, JSON_COMPACT);
	json_decref(data);
	if (text == NULL)
		return;
	buf_append(&s->queue, "event: ", 7);
	buf_append(&s->queue, event, strlen(event));
	buf_append(&s->queue, "\ndata: ", 7);
	buf_append(&s->queue, text, strlen(text));
	buf_append(&s->queue, "\n\n", 2);
	free(text);
	pthread_cond_broadcast(&s->cond);
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
	json_t *chunk = api_json_bytes(b.data, b.len - tail);
	buf_free(&b);
	pthread_mutex_lock(&s->mu);
	stream_event(s, i ? "stderr" : "stdout", json_pack("{s:o}", "data", chunk));
	pthread_mutex_unlock(&s->mu);
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
	json_t *data = s->ops->final_event(s->ctx, r, &res, &err, &event);
	if (r == 0)
		core_exec_result_release(&res);
	pthread_mutex_lock(&s->mu);
	stream_event(s, event, data);
	s->done = true;
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->mu);
	stream_unref(s);
	workers_add(-1);
	return NULL;
}

/* The server's read callback: hands over queued events, waiting for some
 * (and pinging through long silences) until the final one is out; -1
 * ends the answer when the client has hung up. */
static ssize_t stream_read(void *ctx, char *out, size_t max)
{
	struct api_stream *s = ctx;
	pthread_mutex_lock(&s->mu);
	int64_t ping_at = mono_us() + SSE_PING_S * 1000000LL;
	while (s->sent == s->queue.len && !s->done) {
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
		if (s->sent != s->queue.len || s->done)
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
	size_t n = s->queue.len - s->sent;
	if (n > max)
		n = max;
	memcpy(out, s->queue.data + s->sent, n);
	s->sent += n;
	if (s->sent == s->queue.len) {
		/* Everything handed over: start the buffer afresh. */
		s->queue.len = 0;
		s->sent = 0;
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
