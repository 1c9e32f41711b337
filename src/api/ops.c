/* The operations endpoints, which need no key: GET /healthz, GET /metrics
 * (Prometheus text) and GET /openapi.json. Also the set-up of struct api. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_int.h"
#include "util/metrics.h"
#include "util/util.h"

#define METRICS_TEXT_MAX (4u << 20)

int api_open(struct api *api, struct core *core, const char *version, struct bk_err *err)
{
	memset(api, 0, sizeof(*api));
	api->core = core;
	api->version = version;
	if (api_ratelimit_new(&api->ratelimit, err) < 0 ||
	    budget_new(API_CLIENT_MEMORY_DEFAULT, API_CLIENT_KEY_MEMORY_DEFAULT, &api->clients,
		       err) < 0 ||
	    budget_new(API_KEYLESS_MEMORY, API_KEYLESS_ADDR_MEMORY, &api->keyless, err) < 0) {
		api_close(api);
		return -1;
	}
	return 0;
}

void api_close(struct api *api)
{
	api_stream_drain();
	api_ratelimit_free(api->ratelimit);
	api->ratelimit = NULL;
	budget_free(api->clients);
	budget_free(api->keyless);
	api->clients = api->keyless = NULL;
	free(api->cluster_secret);
	api->cluster_secret = NULL;
}

int api_client_memory_set(struct api *api, size_t total, size_t share, struct bk_err *err)
{
	struct budget *b = NULL;
	if (budget_new(total, share, &b, err) < 0)
		return -1;
	budget_free(api->clients);
	api->clients = b;
	return 0;
}

static void handle_healthz(struct api_call *c)
{
	char sandbox[256];
	core_sandbox_describe(c->api->core, sandbox, sizeof(sandbox));
	api_json(c, 200,
		 json_pack("{s:s,s:s,s:s}", "status", "ok", "version", c->api->version, "sandbox",
			   sandbox));
}

/* The client memory budgets (api/router.c): what each holds now and its
 * limits, and the requests they refused, by reason. */
static int client_memory_metrics(struct api *api, struct buf *b)
{
	static const char *const budgets[] = {"keys", "keyless"};
	struct budget *of[] = {api->clients, api->keyless};
	double held[2] = {0}, total[2] = {0}, share[2] = {0};
	for (int i = 0; i < 2 && of[i]; i++) {
		size_t t, s;
		budget_limits(of[i], &t, &s);
		held[i] = (double)budget_used(of[i]);
		total[i] = (double)t;
		share[i] = (double)s;
	}
	int rc = metrics_format_gauge_by(
	    b, "bunker_client_memory_held_bytes",
	    "Memory held for clients now (bodies being buffered or uploaded, answers not yet "
	    "read), for requests with a key and without one.",
	    "budget", budgets, held, 2);
	rc |= metrics_format_gauge_by(b, "bunker_client_memory_limit_bytes",
				      "The most memory held for clients in all, with a key and "
				      "without one (--client-memory-mb).",
				      "budget", budgets, total, 2);
	rc |= metrics_format_gauge_by(b, "bunker_client_memory_share_bytes",
				      "The most memory held for one key's requests, and for one "
				      "client address's without a key (--client-key-memory-mb).",
				      "budget", budgets, share, 2);
	static const char *const reasons[API_REFUSED_COUNT] = {
	    [API_REFUSED_TOTAL] = "total",
	    [API_REFUSED_KEY] = "key",
	    [API_REFUSED_KEYLESS_TOTAL] = "keyless_total",
	    [API_REFUSED_ADDRESS] = "address",
	};
	int64_t refused[API_REFUSED_COUNT];
	for (int i = 0; i < API_REFUSED_COUNT; i++)
		refused[i] = __atomic_load_n(&api->budget_refused[i], __ATOMIC_RELAXED);
	rc |= metrics_format_counter_by(
	    b, "bunker_client_memory_refused_total",
	    "Requests refused for the memory their clients hold: all keys' total (503), their "
	    "key's share (429), all keyless requests' total (503), their address's share (429).",
	    "reason", reasons, refused, API_REFUSED_COUNT);
	return rc < 0 ? -1 : 0;
}

static void handle_metrics(struct api_call *c)
{
	struct buf b;
	buf_init(&b, METRICS_TEXT_MAX);
	int rc = metrics_format_gauge(&b, "bunker_sessions",
				      "Sessions the daemon holds now, sleeping ones included.",
				      (double)core_session_total(c->api->core));
	if (rc == 0)
		rc = metrics_format_gauge(
		    &b, "bunker_output_held_bytes",
		    "Executions' output the daemon holds now, until its answers are sent.",
		    (double)core_output_held(c->api->core));
	int64_t net[2];
	core_net_totals(c->api->core, &net[0], &net[1]);
	static const char *const directions[] = {"out", "in"};
	/* Daemon totals only: a series per session would grow without bound
	 * with the sessions (each one's is in its usage). */
	if (rc == 0)
		rc = metrics_format_counter_by(
		    &b, "bunker_egress_bytes_total",
		    "Bytes sessions' outbound networks carried since the daemon started, out of "
		    "sessions and into them.",
		    "direction", directions, net, 2);
	if (rc == 0)
		rc = client_memory_metrics(c->api, &b);
	if (rc == 0)
		rc = metrics_format(&b);
	if (rc == 0)
		rc = api_cluster_metrics(c->api, &b);
	if (rc < 0) {
		buf_free(&b);
		struct bk_err err = BK_ERR_INIT;
		bk_err_set(&err, ENOMEM, "cannot format metrics");
		return api_buntime_error(c, &err);
	}
	size_t len = b.len;
	http_response_take(c->res, 200, "text/plain; version=0.0.4; charset=utf-8", buf_take(&b),
			   len);
}

static void handle_openapi(struct api_call *c)
{
	http_response_set(c->res, 200, "application/json", api_openapi_json,
			  strlen(api_openapi_json));
}

static const struct api_route ops_routes[] = {
    {"GET", "/healthz", handle_healthz, API_ROUTE_PUBLIC},
    {"GET", "/metrics", handle_metrics, API_ROUTE_PUBLIC},
    {"GET", "/openapi.json", handle_openapi, API_ROUTE_PUBLIC},
};

const struct api_route_table api_ops_routes = {
    .name = "operations",
    .routes = ops_routes,
    .n = ARRAY_SIZE(ops_routes),
    .error = api_buntime_error,
};
