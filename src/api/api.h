/* The HTTP API: routing, authentication, and the two dialects' translations
 * onto core/. Only this layer maps an error kind to an HTTP status. */
#pragma once

#include "core/core.h"
#include "http/server.h"

struct api_ratelimit;
struct api_idem;

struct api {
	struct core *core;
	const char *version;
	struct api_ratelimit *ratelimit; /* owned; per-key request budgets */
	struct api_idem *idem;		 /* owned; Idempotency-Keys in flight */
};

/* Sets api up to serve core (borrowed, as is version): call before the
 * first api_handle(), and api_close() after the last. */
int api_open(struct api *api, struct core *core, const char *version, struct bk_err *err);
void api_close(struct api *api);

/* The http_handler of bunkerd: ctx is a struct api. */
void api_handle(void *ctx, const struct http_request *req, struct http_response *res);
/* The host hooks of bunkerd (api/preview.c): preview hosts and the path
 * proxy are relayed to a port of their session, every other request is
 * api_handle()'s. */
struct http_host_hooks api_preview_hooks(struct api *api);
