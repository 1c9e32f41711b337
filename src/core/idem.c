/* Idempotency: the stored answers to creating requests that carried an
 * Idempotency-Key, kept CORE_IDEM_TTL_MS in the store so that a replay
 * survives a restart. Which requests are "the same" (request_hash) and which
 * are in flight is api/'s business (api/idem.c); this file keeps the
 * answers and purges the expired ones. */
#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core_int.h"

/* Expired answers are purged at most this often, by the request that
 * stores an answer. */
#define IDEM_PURGE_EVERY_MS (60 * 1000LL)

void core_idem_reply_release(struct core_idem_reply *r)
{
	if (r == NULL)
		return;
	free(r->body);
	r->body = NULL;
	r->len = 0;
}

int core_idem_find(struct core *core, const struct core_key *key, const char *idem_key,
		   const uint8_t request_hash[32], struct core_idem_reply *out, struct bk_err *err)
{
	memset(out, 0, sizeof(*out));
	struct store_idem rec;
	int r = core->store->ops->idem_get(core->store, key->id, idem_key,
					   now_ms() - CORE_IDEM_TTL_MS, &rec, err);
	if (r <= 0)
		return r;
	if (sodium_memcmp(rec.request_hash, request_hash, 32) != 0) {
		store_idem_release(&rec);
		return bk_err_kind(err, BK_E_IDEMPOTENCY_REUSED,
				   "Idempotency-Key '%s' was used with another request in the "
				   "last 24 hours",
				   idem_key);
	}
	if (rec.dropped_len > 0) {
		store_idem_release(&rec);
		return bk_err_kind(
		    err, BK_E_CONFLICT,
		    "the request with Idempotency-Key '%s' ran already; its answer "
		    "(%lld bytes) was too large for the server to keep, so it cannot "
		    "be replayed, and the request is not run again",
		    idem_key, (long long)rec.dropped_len);
	}
	out->status = rec.status;
	snprintf(out->content_type, sizeof(out->content_type), "%s", rec.content_type);
	out->body = rec.body;
	out->len = rec.body_len;
	return 1;
}

int core_idem_save(struct core *core, const struct core_key *key, const char *idem_key,
		   const uint8_t request_hash[32], const struct core_idem_reply *reply,
		   struct bk_err *err)
{
	struct store_idem rec = {
	    .status = reply->status,
	    .body = reply->body,
	    .body_len = reply->len,
	    .created_ms = now_ms(),
	};
	if (strlen(idem_key) >= sizeof(rec.idem_key) ||
	    strlen(reply->content_type) >= sizeof(rec.content_type))
		return bk_err_kind(err, BK_E_INTERNAL, "cannot store idempotency key: too long");
	snprintf(rec.key_id, sizeof(rec.key_id), "%s", key->id);
	snprintf(rec.idem_key, sizeof(rec.idem_key), "%s", idem_key);
	snprintf(rec.content_type, sizeof(rec.content_type), "%s", reply->content_type);
	memcpy(rec.request_hash, request_hash, 32);
	int64_t count = 0, bytes = 0;
	if (core->store->ops->idem_usage(core->store, key->id, rec.created_ms - CORE_IDEM_TTL_MS,
					 &count, &bytes, err) < 0)
		return -1;
	/* Over what a key may keep, or a body not at hand (streamed): its
	 * length only. */
	if (reply->body == NULL || reply->len > CORE_IDEM_ANSWER_MAX ||
	    bytes + (int64_t)reply->len > CORE_IDEM_KEY_BYTES_MAX) {
		rec.dropped_len = (int64_t)reply->len;
		rec.body = NULL;
		rec.body_len = 0;
	}
	if (core->store->ops->idem_put(core->store, &rec, err) < 0)
		return -1;

	/* Lazily: one store per minute at most pays for the purge. */
	static int64_t last_purge_ms;
	int64_t last = __atomic_load_n(&last_purge_ms, __ATOMIC_RELAXED);
	if (rec.created_ms - last >= IDEM_PURGE_EVERY_MS &&
	    __atomic_compare_exchange_n(&last_purge_ms, &last, rec.created_ms, false,
					__ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
		struct bk_err perr = BK_ERR_INIT;
		if (core->store->ops->idem_purge(core->store, rec.created_ms - CORE_IDEM_TTL_MS,
						 NULL, &perr) < 0)
			fprintf(stderr, "bunkerd: %s\n", perr.msg);
	}
	return 0;
}

int core_idem_claim(struct core *core, const struct core_key *key, const char *idem_key,
		    int64_t *claimed_ms, struct bk_err *err)
{
	int64_t now = now_ms();
	int64_t expires = now + key->limits.timeout_max_s * 1000LL + CORE_IDEM_CLAIM_SLACK_MS;
	int r = core->store->ops->idem_claim(core->store, key->id, idem_key, now, expires, err);
	if (r < 0)
		return -1;
	if (r == 0)
		return bk_err_kind(err, BK_E_CONFLICT,
				   "a request with Idempotency-Key '%s' is still in flight",
				   idem_key);
	*claimed_ms = now;
	return 0;
}

void core_idem_release(struct core *core, const struct core_key *key, const char *idem_key,
		       int64_t claimed_ms)
{
	struct bk_err err = BK_ERR_INIT;
	if (core->store->ops->idem_release(core->store, key->id, idem_key, claimed_ms, &err) < 0)
		fprintf(stderr,
			"bunkerd: cannot end the claim of an Idempotency-Key of key %s: %s\n",
			key->id, err.msg);
}

int core_idem_admit(struct core *core, const struct core_key *key, struct bk_err *err)
{
	int64_t count = 0, bytes = 0;
	if (core->store->ops->idem_usage(core->store, key->id, now_ms() - CORE_IDEM_TTL_MS, &count,
					 &bytes, err) < 0)
		return -1;
	if (count >= CORE_IDEM_KEY_COUNT_MAX)
		return bk_err_kind(
		    err, BK_E_LIMIT,
		    "this API key has used %d Idempotency-Keys in the last 24 hours, "
		    "the most it may: send the request without one, or later",
		    CORE_IDEM_KEY_COUNT_MAX);
	return 0;
}
