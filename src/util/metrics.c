/* The metrics registry: see metrics.h. */
#include "util/metrics.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#define BUCKETS_MAX 16
/* Series of bunker_http_requests_total and of the duration histogram: both
 * are bounded by routes x methods x statuses, a few hundred at most. */
#define REQUEST_SERIES_MAX 512
#define DURATION_SERIES_MAX 256

struct hist {
	const char *name;
	const char *help;
	const double bounds[BUCKETS_MAX]; /* ascending; +Inf is implicit */
	int n_bounds;
	uint64_t counts[BUCKETS_MAX + 1]; /* counts[i]: observations in bucket i alone */
	uint64_t sum_ns;
};

static struct {
	const char *name;
	const char *help;
	uint64_t value;
} counters[METRICS_COUNTER_COUNT] = {
    [METRICS_SESSIONS_CREATED] = {"bunker_sessions_created_total",
				  "Sessions created since the daemon started."},
    [METRICS_RATE_LIMITED] = {"bunker_rate_limited_total",
			      "Requests refused by a key's per-minute rate limit."},
    [METRICS_IDEM_REPLAYS] = {"bunker_idempotent_replays_total",
			      "Answers replayed for a repeated Idempotency-Key."},
    [METRICS_DEEP_SLEEP_FAILURES] = {"bunker_deep_sleep_failures_total",
				     "Deep sleeps abandoned with the session left awake."},
    [METRICS_CHECKPOINT_FAILURES] = {"bunker_checkpoint_failures_total",
				     "Checkpoints of awake sessions that failed."},
    [METRICS_TAKEOVERS] = {"bunker_session_takeovers_total",
			   "Sessions taken over from a node whose lease had lapsed."},
};

static struct hist hists[METRICS_HIST_COUNT] = {
    [METRICS_EXEC_SECONDS] = {"bunker_execution_duration_seconds",
			      "Time to answer a successful execution request.",
			      {0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300},
			      13},
    [METRICS_SANDBOX_START_SECONDS] = {"bunker_sandbox_start_duration_seconds",
				       "Time to start a sandbox (warm pool included).",
				       {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
					2.5},
				       11},
    [METRICS_WAKE_IDLE_SECONDS] = {"bunker_wake_idle_duration_seconds",
				   "Time to thaw an idle session.",
				   {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
				    0.05, 0.1},
				   10},
    [METRICS_WAKE_DEEP_SECONDS] = {"bunker_wake_deep_sleep_duration_seconds",
				   "Time to restore a deep-sleeping session and start it.",
				   {0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30},
				   11},
    [METRICS_CHECKPOINT_SECONDS] = {"bunker_checkpoint_duration_seconds",
				    "Time an awake session is frozen for its checkpoint.",
				    {0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30},
				    11},
};

static const double request_bounds[] = {0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
					0.5,   1,     2.5,  5,	   10,	 30,  60};
#define REQUEST_BOUNDS ARRAY_SIZE(request_bounds)

struct request_series {
	const char *method, *route;
	int status;
	uint64_t count;
};

struct duration_series {
	const char *method, *route;
	uint64_t counts[REQUEST_BOUNDS + 1];
	double sum;
	uint64_t count;
};

static pthread_mutex_t requests_lock = PTHREAD_MUTEX_INITIALIZER;
static struct request_series requests[REQUEST_SERIES_MAX];
static size_t n_requests;
static struct duration_series durations[DURATION_SERIES_MAX];
static size_t n_durations;
static uint64_t requests_dropped; /* past the series maximum */

void metrics_inc(enum metrics_counter c)
{
	if (c < METRICS_COUNTER_COUNT)
		__atomic_add_fetch(&counters[c].value, 1, __ATOMIC_RELAXED);
}

static int bucket_of(const double *bounds, int n, double v)
{
	int i = 0;
	while (i < n && v > bounds[i])
		i++;
	return i;
}

void metrics_observe(enum metrics_hist h, double seconds)
{
	if (h >= METRICS_HIST_COUNT)
		return;
	if (!(seconds >= 0))
		seconds = 0;
	struct hist *x = &hists[h];
	__atomic_add_fetch(&x->counts[bucket_of(x->bounds, x->n_bounds, seconds)], 1,
			   __ATOMIC_RELAXED);
	__atomic_add_fetch(&x->sum_ns, (uint64_t)(seconds * 1e9), __ATOMIC_RELAXED);
}

void metrics_request(const char *method, const char *route, int status, double seconds)
{
	if (!(seconds >= 0))
		seconds = 0;
	pthread_mutex_lock(&requests_lock);
	size_t i = 0;
	while (i < n_requests && !(requests[i].status == status && requests[i].route == route &&
				   requests[i].method == method))
		i++;
	if (i == n_requests && n_requests < REQUEST_SERIES_MAX)
		requests[n_requests++] = (struct request_series){method, route, status, 0};
	if (i < n_requests)
		requests[i].count++;
	else
		requests_dropped++;
	size_t j = 0;
	while (j < n_durations && !(durations[j].route == route && durations[j].method == method))
		j++;
	if (j == n_durations && n_durations < DURATION_SERIES_MAX)
		durations[n_durations++] =
		    (struct duration_series){.method = method, .route = route};
	if (j < n_durations) {
		struct duration_series *d = &durations[j];
		d->counts[bucket_of(request_bounds, REQUEST_BOUNDS, seconds)]++;
		d->sum += seconds;
		d->count++;
	}
	pthread_mutex_unlock(&requests_lock);
}

/* ---- the text format ---- */

static int out(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int out(struct buf *b, const char *fmt, ...)
{
	char line[512];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n < 0)
		return -1;
	return buf_append(b, line, (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1);
}

static int header(struct buf *b, const char *name, const char *help, const char *type)
{
	return out(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A label value: our own strings, but escaped all the same. */
static void label(char *dst, size_t len, const char *s)
{
	size_t o = 0;
	for (; *s && o + 3 < len; s++) {
		if (*s == '\\' || *s == '"') {
			dst[o++] = '\\';
			dst[o++] = *s;
		} else if (*s == '\n') {
			dst[o++] = '\\';
			dst[o++] = 'n';
		} else {
			dst[o++] = *s;
		}
	}
	dst[o] = '\0';
}

/* One histogram's bucket, sum and count lines; labels is "" or `a="b",`. */
static int hist_lines(struct buf *b, const char *name, const char *labels, const double *bounds,
		      int n_bounds, const uint64_t *counts, double sum)
{
	uint64_t cum = 0;
	int rc = 0;
	for (int i = 0; i < n_bounds; i++) {
		cum += counts[i];
		rc |= out(b, "%s_bucket{%sle=\"%g\"} %llu\n", name, labels, bounds[i],
			  (unsigned long long)cum);
	}
	cum += counts[n_bounds];
	rc |= out(b, "%s_bucket{%sle=\"+Inf\"} %llu\n", name, labels, (unsigned long long)cum);
	/* The labels without their trailing comma, for _sum and _count. */
	char plain[256];
	snprintf(plain, sizeof(plain), "%s", labels);
	size_t pl = strlen(plain);
	if (pl > 0)
		plain[pl - 1] = '\0';
	const char *open = pl ? "{" : "", *close = pl ? "}" : "";
	rc |= out(b, "%s_sum%s%s%s %.9g\n", name, open, plain, close, sum);
	rc |= out(b, "%s_count%s%s%s %llu\n", name, open, plain, close, (unsigned long long)cum);
	return rc < 0 ? -1 : 0;
}

int metrics_format_gauge(struct buf *b, const char *name, const char *help, double value)
{
	if (header(b, name, help, "gauge") < 0 || out(b, "%s %.17g\n", name, value) < 0)
		return -1;
	return 0;
}

int metrics_format_counter_by(struct buf *b, const char *name, const char *help,
			      const char *label_name, const char *const *values,
			      const int64_t *counts, size_t n)
{
	int rc = header(b, name, help, "counter");
	for (size_t i = 0; i < n; i++) {
		char v[128];
		label(v, sizeof(v), values[i]);
		rc |= out(b, "%s{%s=\"%s\"} %lld\n", name, label_name, v, (long long)counts[i]);
	}
	return rc < 0 ? -1 : 0;
}

int metrics_format_gauge_by(struct buf *b, const char *name, const char *help,
			    const char *label_name, const char *const *values,
			    const double *values_of, size_t n)
{
	int rc = header(b, name, help, "gauge");
	for (size_t i = 0; i < n; i++) {
		char v[128];
		label(v, sizeof(v), values[i]);
		rc |= out(b, "%s{%s=\"%s\"} %.17g\n", name, label_name, v, values_of[i]);
	}
	return rc < 0 ? -1 : 0;
}

int metrics_format(struct buf *b)
{
	int rc = 0;
	for (int c = 0; c < METRICS_COUNTER_COUNT; c++) {
		rc |= header(b, counters[c].name, counters[c].help, "counter");
		rc |=
		    out(b, "%s %llu\n", counters[c].name,
			(unsigned long long)__atomic_load_n(&counters[c].value, __ATOMIC_RELAXED));
	}
	for (int h = 0; h < METRICS_HIST_COUNT; h++) {
		struct hist *x = &hists[h];
		uint64_t counts[BUCKETS_MAX + 1];
		for (int i = 0; i <= x->n_bounds; i++)
			counts[i] = __atomic_load_n(&x->counts[i], __ATOMIC_RELAXED);
		double sum = (double)__atomic_load_n(&x->sum_ns, __ATOMIC_RELAXED) / 1e9;
		rc |= header(b, x->name, x->help, "histogram");
		rc |= hist_lines(b, x->name, "", x->bounds, x->n_bounds, counts, sum);
	}

	pthread_mutex_lock(&requests_lock);
	rc |= header(b, "bunker_http_requests_total",
		     "HTTP requests answered, by method, route pattern and status.", "counter");
	for (size_t i = 0; i < n_requests; i++) {
		char m[32], r[256];
		label(m, sizeof(m), requests[i].method);
		label(r, sizeof(r), requests[i].route);
		rc |= out(
		    b,
		    "bunker_http_requests_total{method=\"%s\",route=\"%s\",status=\"%d\"} %llu\n",
		    m, r, requests[i].status, (unsigned long long)requests[i].count);
	}
	rc |= header(b, "bunker_http_requests_unrecorded_total",
		     "HTTP requests not recorded by route because the series table was full.",
		     "counter");
	rc |= out(b, "bunker_http_requests_unrecorded_total %llu\n",
		  (unsigned long long)requests_dropped);
	rc |= header(b, "bunker_http_request_duration_seconds",
		     "Time from a request's arrival to its answer, by method and route pattern.",
		     "histogram");
	for (size_t i = 0; i < n_durations; i++) {
		char m[32], r[256], labels[320];
		label(m, sizeof(m), durations[i].method);
		label(r, sizeof(r), durations[i].route);
		snprintf(labels, sizeof(labels), "method=\"%s\",route=\"%s\",", m, r);
		rc |= hist_lines(b, "bunker_http_request_duration_seconds", labels, request_bounds,
				 REQUEST_BOUNDS, durations[i].counts, durations[i].sum);
	}
	pthread_mutex_unlock(&requests_lock);
	return rc < 0 ? -1 : 0;
}
