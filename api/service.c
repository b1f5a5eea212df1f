/*
 * What implementations of api/service.h share: the wait of wait_job, a poll
 * loop over a cheap "is it final yet" question. No store or engine here; the
 * question is the implementation's (the store's job status, the fake's).
 */
#include "api/service.h"
#include "core/util/clock.h"
#include "core/util/err.h"

int kl_service_wait_final(const struct kl_clock *clock, int64_t timeout_ms, int64_t interval_ms,
                          const atomic_bool *stop, kl_service_final_fn is_final, void *arg,
                          struct kl_err *err)
{
    int64_t deadline = kl_clock_monotonic_ms(clock) + timeout_ms, left;
    bool final = false;
    int rc;

    for (;;) {
        rc = is_final(arg, &final, err);
        if (rc != KL_OK || final || (stop != NULL && atomic_load(stop)))
            break;
        left = deadline - kl_clock_monotonic_ms(clock);
        if (left <= 0)
            break;
        kl_clock_sleep_ms(clock, left < interval_ms ? left : interval_ms);
    }
    return rc;
}
