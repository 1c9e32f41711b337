/* Shared by the api/ files. */
#pragma once

#include <jansson.h>

#include "api/api.h"

static inline void cleanup_jsonp(json_t **j)
{
	json_decref(*j);
}
/* Only on new references. */
#define _cleanup_json_ __attribute__((cleanup(cleanup_jsonp)))

/* What a handler knows of its request once routed and authenticated. */
struct api_call {
	struct api *api;
	const struct http_request *req;
	struct http_response *res;
	struct core_key key;
	bool authed;
	char session_id[64]; /* for the log line */
};

/* Answers with obj (the reference is stolen) as JSON. */
void api_json(struct api_call *c, int status, json_t *obj);
/* The buntime error envelope for err. */
void api_buntime_error(struct api_call *c, const struct bk_err *err);
/* Parses the request body as a JSON object: an empty body is {} when
 * empty_ok. Returns a new reference, or NULL with err set (BK_E_INVALID,
 * BK_E_TOO_LARGE). */
json_t *api_body_object(const struct http_request *req, bool empty_ok, struct bk_err *err);
/* A JSON string of arbitrary bytes: invalid UTF-8 becomes U+FFFD. */
json_t *api_json_bytes(const char *data, size_t len);
/* Authenticates the Bearer key into c->key. */
int api_auth(struct api_call *c, struct bk_err *err);

void api_buntime_route(struct api_call *c, const char *method, const char *path);
