/*
 * The system clock behind struct kl_clock.
 */
#include "core/util/clock.h"

#include <errno.h>
#include <time.h>

static int64_t ts_ms(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t system_wall_ms(void *impl)
{
    (void)impl;
    return ts_ms(CLOCK_REALTIME);
}

static int64_t system_monotonic_ms(void *impl)
{
    (void)impl;
    return ts_ms(CLOCK_MONOTONIC);
}

static void system_sleep_ms(void *impl, int64_t ms)
{
    struct timespec ts;
    (void)impl;
    if (ms <= 0)
        return;
    ts.tv_sec = (time_t)(ms / 1000);
    ts.tv_nsec = (long)(ms % 1000) * 1000000L;
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static const struct kl_clock_ops system_clock_ops = {
    .wall_ms = system_wall_ms,
    .monotonic_ms = system_monotonic_ms,
    .sleep_ms = system_sleep_ms,
};

static const struct kl_clock system_clock = {&system_clock_ops, NULL};

const struct kl_clock *kl_clock_system(void)
{
    return &system_clock;
}
