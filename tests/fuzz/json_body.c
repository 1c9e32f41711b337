/* Fuzz target: what every JSON body and metadata goes through before a
 * handler sees it: api_json_check() and api_body_object()
 * (src/api/common.c), the idempotency hash's canonical form
 * (src/api/idem.c), session metadata's check and the listing filter
 * (src/core/metadata.c), and the UTF-8 helpers of JSON answers. Input: a
 * body; after a 0x01 byte, when there is one, a metadata record for the
 * body used as a filter. Checks that api_json_check()'s bounds hold of
 * what jansson then parses. */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_int.h"
#include "core/core_int.h"

static void check(int ok)
{
	if (!ok)
		abort();
}

/* Depth and count of values, as api_json_check() counts them. */
static void measure(json_t *j, int depth, int *max_depth, size_t *values)
{
	(*values)++;
	if (json_is_object(j) || json_is_array(j)) {
		depth++;
		if (depth > *max_depth)
			*max_depth = depth;
	}
	if (json_is_object(j)) {
		const char *k;
		json_t *v;
		json_object_foreach (j, k, v)
			measure(v, depth, max_depth, values);
	} else if (json_is_array(j)) {
		size_t i;
		json_t *v;
		json_array_foreach (j, i, v)
			measure(v, depth, max_depth, values);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *sep = memchr(data, 0x01, size);
	size_t blen = sep ? (size_t)(sep - data) : size;
	/* A buffered body as http/ leaves it: NUL-terminated after body_len. */
	char *body = malloc(blen + 1);
	if (body == NULL)
		return 0;
	memcpy(body, data, blen);
	body[blen] = '\0';
	struct http_request req = {.method = "POST", .path = "/x", .body = body, .body_len = blen};
	struct bk_err err = BK_ERR_INIT;
	json_t *j = api_body_object(&req, true, &err);
	check((j == NULL) == bk_err_is_set(&err));
	if (j) {
		int depth = 0;
		size_t values = 0;
		measure(j, 0, &depth, &values);
		check(depth <= API_JSON_DEPTH_MAX);
		check(values <= API_JSON_VALUES_MAX);
	}
	uint8_t hash[32];
	api_idem_request_hash("POST", "/execute", body, blen, hash);

	/* Metadata: the body's text as a record, and as a filter of the rest. */
	if (strlen(body) == blen) {
		struct bk_err e2 = BK_ERR_INIT;
		core__metadata_check(body, "metadata", &e2);
		struct core_metadata_filter *f = NULL;
		struct bk_err e3 = BK_ERR_INIT;
		if (core__metadata_filter_new(body, &f, &e3) == 0) {
			char *rec = sep ? strndup((const char *)sep + 1, size - blen - 1)
					: strdup("{\"a\":1}");
			if (rec == NULL)
				abort();
			core__metadata_match(f, rec);
			core__metadata_match(f, body);
			free(rec);
			core__metadata_filter_free(f);
		}
		api_utf8_valid(body);
	}
	json_t *s = api_json_bytes(body, blen);
	check(s != NULL && json_is_string(s));
	json_decref(s);
	json_decref(j);
	free(body);
	return 0;
}
