/*
 * The process's own Prometheus metrics: request counts and a latency
 * histogram per route of the HTTP server, and process_* gauges read from
 * /proc. Counters are atomics, so observing costs no lock. The engine's
 * metrics come from the service facade, not from here.
 */
#ifndef KL_SERVER_METRICS_H
#define KL_SERVER_METRICS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "api/routes.h"

struct kl_buf;
struct kl_err;
struct kl_kinesis_stats;
struct kl_store_stats;
struct kl_engine_stats;
struct kl_shard_lag;

#define KL_HTTP_BUCKETS 14
#define KL_HTTP_CODES 16 /* distinct status codes counted; the rest count as "other" */

struct kl_http_route_stats {
    atomic_uint_least64_t buckets[KL_HTTP_BUCKETS + 1]; /* per bucket, not cumulative; last: +Inf */
    atomic_uint_least64_t sum_us;
    atomic_uint_least64_t codes[KL_HTTP_CODES + 1];
};

struct kl_http_metrics {
    const struct kl_api_route *routes;
    size_t n_routes;
    struct kl_http_route_stats *stats; /* n_routes + 1: the last is for unmatched requests */
    atomic_int_least64_t in_flight;
    double start_time_s; /* process start, epoch seconds */
};

int kl_http_metrics_init(struct kl_http_metrics *m, const struct kl_api_route *routes, size_t n,
                         struct kl_err *err);
void kl_http_metrics_free(struct kl_http_metrics *m);

/* Counts one answered request; `route_index` n_routes means unmatched. */
void kl_http_metrics_observe(struct kl_http_metrics *m, size_t route_index, int status,
                             uint64_t duration_us);

/* Appends kl_http_* and process_* metrics in text format 0.0.4. */
int kl_http_metrics_render(struct kl_http_metrics *m, struct kl_buf *out, struct kl_err *err);

/* What the engine's side reports: Kinesis calls, the store's jobs by status
 * and tasks by state, this process's messages, rows and dead letters, and
 * each shard's last MillisBehindLatest. Appends text format 0.0.4. */
struct kl_engine_metrics {
    const struct kl_kinesis_stats *kinesis;
    const struct kl_store_stats *store; /* NULL: the store did not answer */
    const struct kl_engine_stats *engine;
    const struct kl_shard_lag *lags;
    size_t n_lags;
};

int kl_engine_metrics_render(const struct kl_engine_metrics *m, struct kl_buf *out,
                             struct kl_err *err);

#endif
