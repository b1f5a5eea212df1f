/*
 * Injectable time: wall clock (for signatures, timestamps), monotonic clock
 * (for timeouts, backoff) and sleeping. Tests pass a fake to control time.
 */
#ifndef KL_UTIL_CLOCK_H
#define KL_UTIL_CLOCK_H

#include <stdint.h>

struct kl_clock_ops {
    int64_t (*wall_ms)(void *impl);      /* milliseconds since the Unix epoch */
    int64_t (*monotonic_ms)(void *impl); /* milliseconds from an arbitrary origin */
    void (*sleep_ms)(void *impl, int64_t ms);
};

struct kl_clock {
    const struct kl_clock_ops *ops;
    void *impl;
};

/* The process clock (CLOCK_REALTIME, CLOCK_MONOTONIC, nanosleep). Static; never freed. */
const struct kl_clock *kl_clock_system(void);

static inline int64_t kl_clock_wall_ms(const struct kl_clock *c)
{
    return c->ops->wall_ms(c->impl);
}

static inline int64_t kl_clock_monotonic_ms(const struct kl_clock *c)
{
    return c->ops->monotonic_ms(c->impl);
}

static inline void kl_clock_sleep_ms(const struct kl_clock *c, int64_t ms)
{
    c->ops->sleep_ms(c->impl, ms);
}

#endif
