/* The HTTP API: routing, authentication, and the two dialects' translations
 * onto core/. Only this layer maps an error kind to an HTTP status. */
#pragma once

#include "core/core.h"
#include "http/server.h"

struct api_ratelimit;
struct budget;

/* What the server holds for clients (buffered bodies, answers waiting to
 * be sent) by default: in all, and for one key. */
#define API_CLIENT_MEMORY_DEFAULT ((size_t)128 << 20)
#define API_CLIENT_KEY_MEMORY_DEFAULT ((size_t)32 << 20)
/* The same for requests without a key, apart: in all, and for one client
 * address. */
#define API_KEYLESS_MEMORY ((size_t)8 << 20)
#define API_KEYLESS_ADDR_MEMORY ((size_t)1 << 20)

/* Why a request was refused for the memory its client holds (the label
 * reason of bunker_client_memory_refused_total). */
enum api_budget_refusal {
	API_REFUSED_TOTAL = 0,	   /* all keys hold the clients' total: 503 */
	API_REFUSED_KEY,	   /* its key holds its share: 429 */
	API_REFUSED_KEYLESS_TOTAL, /* all requests without a key hold theirs: 503 */
	API_REFUSED_ADDRESS,	   /* its address (no key) holds its share: 429 */
	API_REFUSED_COUNT,
};

struct api {
	struct core *core;
	const char *version;
	struct api_ratelimit *ratelimit; /* owned; per-key request budgets */
	/* Memory held for clients (owned): a key's requests are charged to
	 * clients by its id, requests without a key to keyless by their
	 * address (api/router.c), so that no address without a key takes
	 * what keys need. */
	struct budget *clients, *keyless;
	/* Requests those budgets refused, by enum api_budget_refusal (atomic
	 * adds), for GET /metrics. */
	int64_t budget_refused[API_REFUSED_COUNT];
	/* Operators' token (GET /v1/cluster/nodes) and the secret that one
	 * node shows another on a relayed request, as hashes; the cluster
	 * secret also in the clear (owned), as it is sent on. */
	bool has_operator, has_cluster;
	uint8_t operator_hash[32], cluster_hash[32];
	char *cluster_secret;
};

/* Reads the operator token from operator_file and the cluster secret from
 * cluster_file (either may be NULL; without cluster_file the operator
 * token is the cluster secret too): one line of at least 16 printable
 * characters. Call after api_open(). */
int api_secrets_load(struct api *api, const char *operator_file, const char *cluster_file,
		     struct bk_err *err);

/* Sets api up to serve core (borrowed, as is version): call before the
 * server starts with api_handler_ops(), and api_close() once it stopped. */
int api_open(struct api *api, struct core *core, const char *version, struct bk_err *err);
/* Replaces the client memory budget's sizes (total, and a key's share):
 * call after api_open(), before the server starts. */
int api_client_memory_set(struct api *api, size_t total, size_t share, struct bk_err *err);
void api_close(struct api *api);

/* The request handler of bunkerd over api (borrowed): at each request's
 * head it routes, checks the key and the rate limit and answers at once
 * when any fails, before the body is read; a route's body is then
 * buffered up to its limit (or streamed) and the route answers. */
struct http_handler_ops api_handler_ops(struct api *api);
/* The host hooks of bunkerd (api/preview.c): preview hosts and the path
 * proxy are relayed to a port of their session, every other request is
 * api_handler_ops()'s. */
struct http_host_hooks api_preview_hooks(struct api *api);
