/*
 * Fixed-bucket histogram (see histogram.h).
 */
#include "core/util/histogram.h"

#include <string.h>

void kl_histogram_init(struct kl_histogram *h, const int64_t *bounds_ms, size_t n_bounds)
{
    h->bounds_ms = bounds_ms;
    h->n_bounds = n_bounds < KL_HISTOGRAM_MAX_BUCKETS ? n_bounds : KL_HISTOGRAM_MAX_BUCKETS;
    for (size_t i = 0; i <= KL_HISTOGRAM_MAX_BUCKETS; i++)
        atomic_init(&h->counts[i], 0);
    atomic_init(&h->sum_ms, 0);
}

void kl_histogram_observe(struct kl_histogram *h, int64_t ms)
{
    size_t b = 0;
    if (ms < 0)
        ms = 0;
    while (b < h->n_bounds && ms > h->bounds_ms[b])
        b++;
    atomic_fetch_add_explicit(&h->counts[b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->sum_ms, ms, memory_order_relaxed);
}

void kl_histogram_snapshot(const struct kl_histogram *h, struct kl_histogram_snapshot *out)
{
    memset(out, 0, sizeof *out);
    out->bounds_ms = h->bounds_ms;
    out->n_bounds = h->n_bounds;
    for (size_t i = 0; i <= h->n_bounds; i++) {
        out->counts[i] = atomic_load_explicit(&h->counts[i], memory_order_relaxed);
        out->count += out->counts[i];
    }
    out->sum_ms = atomic_load_explicit(&h->sum_ms, memory_order_relaxed);
}
