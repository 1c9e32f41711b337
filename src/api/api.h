/* The HTTP API: routing, authentication, and the two dialects' translations
 * onto core/. Only this layer maps an error kind to an HTTP status. */
#pragma once

#include "core/core.h"
#include "http/server.h"

struct api {
	struct core *core;
	const char *version;
};

/* The http_handler of bunkerd: ctx is a struct api. */
void api_handle(void *ctx, const struct http_request *req, struct http_response *res);
