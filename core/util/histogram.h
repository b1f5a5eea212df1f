/*
 * A fixed-bucket histogram of milliseconds, counted with atomics so that
 * observing takes no lock (for /metrics: Prometheus buckets are cumulative
 * when rendered, not here). Thread-safe; no allocation.
 */
#ifndef KL_UTIL_HISTOGRAM_H
#define KL_UTIL_HISTOGRAM_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define KL_HISTOGRAM_MAX_BUCKETS 16

struct kl_histogram {
    const int64_t *bounds_ms; /* ascending upper bounds, borrowed */
    size_t n_bounds;          /* at most KL_HISTOGRAM_MAX_BUCKETS */
    atomic_uint_least64_t counts[KL_HISTOGRAM_MAX_BUCKETS + 1]; /* per bucket; last: +Inf */
    atomic_int_least64_t sum_ms;
};

/* A copy at one moment, for rendering. */
struct kl_histogram_snapshot {
    const int64_t *bounds_ms;
    size_t n_bounds;
    uint64_t counts[KL_HISTOGRAM_MAX_BUCKETS + 1]; /* per bucket, not cumulative */
    uint64_t count;
    int64_t sum_ms;
};

/* `bounds_ms` must outlive the histogram; n_bounds is cut to the maximum. */
void kl_histogram_init(struct kl_histogram *h, const int64_t *bounds_ms, size_t n_bounds);
/* Counts one value (negative values count as 0: clocks apart). */
void kl_histogram_observe(struct kl_histogram *h, int64_t ms);
void kl_histogram_snapshot(const struct kl_histogram *h, struct kl_histogram_snapshot *out);

#endif
