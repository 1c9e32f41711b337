/* Idempotency-Key on creating requests (a route opts in with
 * API_ROUTE_IDEMPOTENT).
 *
 * Same key, same request within 24 h: the first 2xx answer again, byte for
 * byte, with Idempotent-Replayed: true, and the handler does not run. Same
 * key, another request: 422 idempotency_key_reused. Same key while the
 * first is still running: 409 conflict. Keys are scoped per API key. Only
 * 2xx answers are kept (core/idem.c stores them, so they survive a
 * restart); any other first answer leaves the key unused, to be tried
 * again. An answer too large to keep (core.h's CORE_IDEM_* bounds) is
 * remembered by its length: the same request again is 409, never run
 * twice. Which requests are running is claimed in the store
 * (core_idem_claim()), so that two nodes sharing it never run one
 * Idempotency-Key's request twice at once.
 */
#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_int.h"
#include "util/metrics.h"

#define IDEM_KEY_MAX 255

void api_idem_request_hash(const char *method, const char *path, const char *body, size_t len,
			   uint8_t out[32])
{
	crypto_generichash_state st;
	crypto_generichash_init(&st, NULL, 0, 32);
	/* Each part with its NUL, so that the boundaries cannot shift. */
	crypto_generichash_update(&st, (const unsigned char *)method, strlen(method) + 1);
	crypto_generichash_update(&st, (const unsigned char *)path, strlen(path) + 1);
	json_error_t je;
	/* A body over the JSON limits is hashed as bytes: the handler refuses it. */
	json_t *j = len && api_json_check(body, len, NULL) == 0
			? json_loadb(body, len, JSON_REJECT_DUPLICATES, &je)
			: NULL;
	char *canon = j ? json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY) : NULL;
	json_decref(j);
	if (canon) {
		crypto_generichash_update(&st, (const unsigned char *)"j", 1);
		crypto_generichash_update(&st, (const unsigned char *)canon, strlen(canon));
		free(canon);
	} else {
		/* Not JSON (or empty): the bytes as they came. */
		crypto_generichash_update(&st, (const unsigned char *)"b", 1);
		crypto_generichash_update(&st, (const unsigned char *)body, len);
	}
	crypto_generichash_final(&st, out, 32);
}

/* Printable ASCII, 1..IDEM_KEY_MAX bytes. */
static int idem_key_check(const char *k, struct bk_err *err)
{
	size_t n = strlen(k);
	if (n == 0 || n > IDEM_KEY_MAX)
		return bk_err_field(err, "Idempotency-Key",
				    "Idempotency-Key must be 1..%d characters", IDEM_KEY_MAX);
	for (const unsigned char *p = (const unsigned char *)k; *p; p++)
		if (*p < 0x20 || *p > 0x7e)
			return bk_err_field(err, "Idempotency-Key",
					    "Idempotency-Key must be printable ASCII");
	return 0;
}

/* Answers with the stored reply (taking its body). */
static void replay(struct api_call *c, struct core_idem_reply *r)
{
	/* The content type must outlive this call: the server reads it after
	 * the handler returns, so it is matched to a constant. */
	const char *ctype = strcmp(r->content_type, "application/json") == 0
				? "application/json"
				: "application/octet-stream";
	http_response_take(c->res, r->status, ctype, r->body, r->len);
	r->body = NULL;
	http_response_header(c->res, "Idempotent-Replayed", "true");
	c->replayed = true;
	metrics_inc(METRICS_IDEM_REPLAYS);
}

/* Stores c's answer when it is one to keep: a 2xx with a whole body, or
 * the length of a streamed one whose length is known (an execution's
 * answer too large to keep, api/exec_answer.c: a retry is then refused,
 * never run twice). */
static void store_answer(struct api_call *c, const char *idem_key, const uint8_t hash[32])
{
	const struct http_response *res = c->res;
	if (res->status / 100 != 2 || res->content_type == NULL ||
	    (res->stream_read != NULL && !res->stream_sized))
		return;
	struct core_idem_reply r = {.status = res->status, .body = res->body, .len = res->len};
	if (res->stream_read != NULL)
		r = (struct core_idem_reply){.status = res->status,
					     .len = (size_t)res->stream_size};
	snprintf(r.content_type, sizeof(r.content_type), "%s", res->content_type);
	struct bk_err err = BK_ERR_INIT;
	if (core_idem_save(c->api->core, &c->key, idem_key, hash, &r, &err) < 0)
		/* The answer still goes out; a retry will run again. */
		fprintf(stderr,
			"bunkerd: cannot keep the answer to Idempotency-Key of key %s: %s\n",
			c->key.id, err.msg);
}

void api_idem_run(struct api_call *c, const struct api_route_table *table)
{
	const char *idem_key = http_header(c->req, "Idempotency-Key");
	if (idem_key == NULL)
		return c->route->handler(c);
	struct bk_err err = BK_ERR_INIT;
	if (idem_key_check(idem_key, &err) < 0)
		return table->error(c, &err);
	uint8_t hash[32];
	api_idem_request_hash(c->req->method, c->req->path, c->req->body, c->req->body_len, hash);

	/* Looked up before and after marking it in flight: the first look
	 * serves concurrent replays of a finished request, the second closes
	 * the gap in which the first request could finish in between. */
	struct core_idem_reply stored;
	int r = core_idem_find(c->api->core, &c->key, idem_key, hash, &stored, &err);
	if (r < 0)
		return table->error(c, &err);
	if (r > 0)
		return replay(c, &stored);
	int64_t claimed_ms;
	if (core_idem_claim(c->api->core, &c->key, idem_key, &claimed_ms, &err) < 0)
		return table->error(c, &err);
	r = core_idem_find(c->api->core, &c->key, idem_key, hash, &stored, &err);
	if (r < 0)
		table->error(c, &err);
	else if (r > 0)
		replay(c, &stored);
	else if (core_idem_admit(c->api->core, &c->key, &err) < 0)
		table->error(c, &err);
	else {
		c->route->handler(c);
		store_answer(c, idem_key, hash);
	}
	core_idem_release(c->api->core, &c->key, idem_key, claimed_ms);
}
