/* Process-wide metrics for GET /metrics, in the Prometheus text format
 * (version 0.0.4).
 *
 * A small fixed registry rather than a general one: the families are
 * known at build time, so each is an array slot, and any layer may count
 * into it without plumbing (the way a Prometheus client's default registry
 * is used). Every function is safe from any thread; a counter or histogram
 * update is a few atomic adds, a request is one short lock.
 */
#pragma once

#include <stdint.h>

#include "util/util.h"

enum metrics_counter {
	METRICS_SESSIONS_CREATED = 0, /* bunker_sessions_created_total */
	METRICS_RATE_LIMITED,	      /* bunker_rate_limited_total */
	METRICS_IDEM_REPLAYS,	      /* bunker_idempotent_replays_total */
	METRICS_DEEP_SLEEP_FAILURES,  /* bunker_deep_sleep_failures_total */
	METRICS_CHECKPOINT_FAILURES,  /* bunker_checkpoint_failures_total */
	METRICS_TAKEOVERS,	      /* bunker_session_takeovers_total */
	METRICS_COUNTER_COUNT,
};

enum metrics_hist {
	METRICS_EXEC_SECONDS = 0,      /* bunker_execution_duration_seconds */
	METRICS_SANDBOX_START_SECONDS, /* bunker_sandbox_start_duration_seconds */
	METRICS_WAKE_IDLE_SECONDS,     /* bunker_wake_idle_duration_seconds */
	METRICS_WAKE_DEEP_SECONDS,     /* bunker_wake_deep_sleep_duration_seconds */
	METRICS_CHECKPOINT_SECONDS,    /* bunker_checkpoint_duration_seconds */
	METRICS_HIST_COUNT,
};

void metrics_inc(enum metrics_counter c);
/* Adds one observation of seconds to histogram h. */
void metrics_observe(enum metrics_hist h, double seconds);
/* Counts one answered HTTP request in bunker_http_requests_total and
 * bunker_http_request_duration_seconds. method and route (a route pattern
 * such as "/sessions/{id}", or "unmatched") are borrowed for the life of the
 * process: pass string literals or a route table's strings, never request
 * data, so that the number of series stays bounded. */
void metrics_request(const char *method, const char *route, int status, double seconds);

/* Appends a gauge family of one sample to b. */
int metrics_format_gauge(struct buf *b, const char *name, const char *help, double value);
/* Appends a counter family of n samples to b, one for each value of one
 * label: name{label="values[i]"} counts[i]. The strings are borrowed. */
int metrics_format_counter_by(struct buf *b, const char *name, const char *help, const char *label,
			      const char *const *values, const int64_t *counts, size_t n);
/* The same for a gauge family: name{label="values[i]"} values_of[i]. */
int metrics_format_gauge_by(struct buf *b, const char *name, const char *help, const char *label,
			    const char *const *values, const double *values_of, size_t n);
/* Appends every family of the registry to b. Returns -1 when out of memory. */
int metrics_format(struct buf *b);
