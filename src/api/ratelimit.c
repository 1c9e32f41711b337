/* Per-key rate limits: requests per minute.
 *
 * A fixed window per key that opens with the key's first request and lasts
 * 60 s: exact under concurrency, and the reset time it announces is the
 * moment the budget really comes back. A burst at the end of one window and
 * the start of the next can reach twice the limit within a minute; that is
 * the usual price of fixed windows and bounded by it.
 *
 * Several nodes on one store count in the store (core_rate_count(): one
 * row per key, one atomic statement per request), so the limit holds
 * across the cluster as on one node; the windows open on the clock of the
 * node that counts first, so clocks apart by d move a window's edges by d
 * at most. A request relayed from another node was counted there. One node
 * on SQLite counts here, in memory (one lock around the count).
 *
 * The table holds one entry per key that made a request; it can only hold
 * keys that passed authentication, and entries idle for a while are
 * dropped as their bucket is walked, so it stays as small as the set of
 * active keys.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_int.h"
#include "util/metrics.h"
#include "util/util.h"

#define WINDOW_MS 60000
#define BUCKETS 256
/* An entry whose window closed this long ago is forgotten. */
#define IDLE_MS (10 * WINDOW_MS)

struct rl_entry {
	char key_id[32];
	int64_t window_start_ms;
	int count;
	struct rl_entry *next;
};

struct api_ratelimit {
	pthread_mutex_t lock;
	struct rl_entry *buckets[BUCKETS];
};

int api_ratelimit_new(struct api_ratelimit **out, struct bk_err *err)
{
	struct api_ratelimit *rl = calloc(1, sizeof(*rl));
	if (rl == NULL)
		return bk_err_set(err, errno, "cannot set up rate limits");
	pthread_mutex_init(&rl->lock, NULL);
	*out = rl;
	return 0;
}

void api_ratelimit_free(struct api_ratelimit *rl)
{
	if (rl == NULL)
		return;
	for (size_t i = 0; i < BUCKETS; i++) {
		struct rl_entry *e = rl->buckets[i];
		while (e) {
			struct rl_entry *next = e->next;
			free(e);
			e = next;
		}
	}
	pthread_mutex_destroy(&rl->lock);
	free(rl);
}

static size_t bucket_of(const char *key_id)
{
	/* FNV-1a: key ids are random, any spread will do. */
	uint32_t h = 2166136261u;
	for (const unsigned char *p = (const unsigned char *)key_id; *p; p++)
		h = (h ^ *p) * 16777619u;
	return h % BUCKETS;
}

/* With rl->lock held: the entry of key_id, created when missing (NULL when
 * out of memory); idle entries met on the way are dropped. */
static struct rl_entry *entry_get(struct api_ratelimit *rl, const char *key_id, int64_t now_ms)
{
	struct rl_entry **pp = &rl->buckets[bucket_of(key_id)];
	while (*pp) {
		struct rl_entry *e = *pp;
		if (strcmp(e->key_id, key_id) == 0)
			return e;
		if (now_ms - e->window_start_ms > WINDOW_MS + IDLE_MS) {
			*pp = e->next;
			free(e);
			continue;
		}
		pp = &e->next;
	}
	struct rl_entry *e = calloc(1, sizeof(*e));
	if (e == NULL)
		return NULL;
	snprintf(e->key_id, sizeof(e->key_id), "%s", key_id);
	e->window_start_ms = now_ms;
	*pp = e;
	return e;
}

bool api_ratelimit_take(struct api_ratelimit *rl, const char *key_id, int limit, int64_t now_ms,
			struct api_ratelimit_state *out)
{
	pthread_mutex_lock(&rl->lock);
	struct rl_entry *e = entry_get(rl, key_id, now_ms);
	if (e == NULL) {
		pthread_mutex_unlock(&rl->lock);
		/* Out of memory: refusing every request would be worse. */
		*out = (struct api_ratelimit_state){limit, limit, (now_ms + WINDOW_MS + 999) / 1000,
						    0};
		return true;
	}
	if (now_ms - e->window_start_ms >= WINDOW_MS || now_ms < e->window_start_ms) {
		e->window_start_ms = now_ms;
		e->count = 0;
	}
	bool ok = e->count < limit;
	if (ok)
		e->count++;
	int64_t end_ms = e->window_start_ms + WINDOW_MS;
	out->limit = limit;
	out->remaining = limit - e->count;
	out->reset_s = (end_ms + 999) / 1000;
	out->retry_after_s = ok ? 0 : (int)((end_ms - now_ms + 999) / 1000);
	if (!ok && out->retry_after_s < 1)
		out->retry_after_s = 1;
	pthread_mutex_unlock(&rl->lock);
	return ok;
}

bool api_ratelimit_counted(int limit, int64_t start_ms, int64_t count, int64_t now_ms,
			   struct api_ratelimit_state *out)
{
	bool ok = count <= limit;
	int64_t end_ms = start_ms + WINDOW_MS;
	out->limit = limit;
	out->remaining = ok ? (int)(limit - count) : 0;
	out->reset_s = (end_ms + 999) / 1000;
	out->retry_after_s = ok ? 0 : (int)((end_ms - now_ms + 999) / 1000);
	if (!ok && out->retry_after_s < 1)
		out->retry_after_s = 1;
	return ok;
}

int api_ratelimit_check(struct api_call *c, struct bk_err *err)
{
	struct api_ratelimit_state st;
	int limit = c->key.limits.requests_per_minute;
	int64_t now = now_ms(), start, count;
	int shared = core_rate_count(c->api->core, c->key.id, now, WINDOW_MS, &start, &count, err);
	if (shared < 0)
		return -1;
	bool ok = shared ? api_ratelimit_counted(limit, start, count, now, &st)
			 : api_ratelimit_take(c->api->ratelimit, c->key.id, limit, now, &st);
	http_response_header(c->res, "X-RateLimit-Limit", "%d", st.limit);
	http_response_header(c->res, "X-RateLimit-Remaining", "%d", st.remaining);
	http_response_header(c->res, "X-RateLimit-Reset", "%lld", (long long)st.reset_s);
	if (ok)
		return 0;
	metrics_inc(METRICS_RATE_LIMITED);
	http_response_header(c->res, "Retry-After", "%d", st.retry_after_s);
	return bk_err_kind(err, BK_E_LIMIT,
			   "rate limit of %d requests per minute reached for key %s; retry in %d s",
			   limit, c->key.id, st.retry_after_s);
}
