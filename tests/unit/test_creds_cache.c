/*
 * Unit tests for the credential cache (creds_cache.c): hits, refresh before
 * expiry, keeping valid credentials when a refresh fails, and concurrent
 * callers while one refreshes. Time is a fake clock; the provider is a
 * counting fake that can fail or block on a gate.
 */
#include "tests/support/test_support.h"
#include "core/aws/creds.h"
#include "core/aws/creds_internal.h"
#include "core/util/err.h"
#include "core/util/log.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define T0 1700000000000LL
#define HOUR_MS (60LL * 60 * 1000)
#define MIN_MS (60LL * 1000)

/* A clock several threads may read while the test moves it. */
struct atomic_clock {
    struct kl_clock clock;
    _Atomic int64_t now_ms;
};

static int64_t atomic_wall_ms(void *impl)
{
    return atomic_load(&((struct atomic_clock *)impl)->now_ms);
}

static void atomic_sleep_ms(void *impl, int64_t ms)
{
    atomic_fetch_add(&((struct atomic_clock *)impl)->now_ms, ms);
}

static const struct kl_clock_ops atomic_clock_ops = {atomic_wall_ms, atomic_wall_ms,
                                                     atomic_sleep_ms};

static void atomic_clock_init(struct atomic_clock *c, int64_t now)
{
    c->clock.ops = &atomic_clock_ops;
    c->clock.impl = c;
    atomic_store(&c->now_ms, now);
}

/* The provider behind the cache: counts calls, hands out "AKID-<n>" valid
 * for `lifetime_ms` (0: forever), fails with `fail_code` when set, and when
 * `gated` waits in the call until the test opens the gate. */
struct fake_provider {
    struct kl_cred_provider base;
    const struct kl_clock *clock;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int calls;
    int in_call; /* callers inside resolve right now */
    int fail_code;
    int64_t lifetime_ms;
    int gated;
    int gate_open;
};

static int fake_resolve(void *impl, struct kl_aws_creds *out, struct kl_err *err)
{
    struct fake_provider *f = impl;
    char key[32], secret[32];
    int n, fail, rc;
    int64_t lifetime;

    assert_int_equal(pthread_mutex_lock(&f->lock), 0);
    n = ++f->calls;
    f->in_call++;
    assert_int_equal(pthread_cond_broadcast(&f->cond), 0);
    while (f->gated && !f->gate_open)
        assert_int_equal(pthread_cond_wait(&f->cond, &f->lock), 0);
    fail = f->fail_code;
    lifetime = f->lifetime_ms;
    f->in_call--;
    assert_int_equal(pthread_mutex_unlock(&f->lock), 0);

    if (fail != 0)
        return kl_err_set(err, (enum kl_err_code)fail, "fake provider failure %d", n);
    snprintf(key, sizeof key, "AKID-%d", n);
    snprintf(secret, sizeof secret, "SECRET-%d", n);
    rc = kl_creds_fill(out, key, secret, "TOKEN",
                       lifetime > 0 ? kl_clock_wall_ms(f->clock) + lifetime : 0, "fake", err);
    return rc;
}

static void fake_destroy(void *impl)
{
    (void)impl; /* owned by the test */
}

static const struct kl_cred_provider_ops fake_ops = {fake_resolve, fake_destroy};

static void fake_init(struct fake_provider *f, const struct kl_clock *clock, int64_t lifetime)
{
    memset(f, 0, sizeof *f);
    f->base.ops = &fake_ops;
    f->base.impl = f;
    f->clock = clock;
    f->lifetime_ms = lifetime;
    assert_int_equal(pthread_mutex_init(&f->lock, NULL), 0);
    assert_int_equal(pthread_cond_init(&f->cond, NULL), 0);
}

static void fake_free(struct fake_provider *f)
{
    pthread_cond_destroy(&f->cond);
    pthread_mutex_destroy(&f->lock);
}

static int fake_calls(struct fake_provider *f)
{
    int n;
    assert_int_equal(pthread_mutex_lock(&f->lock), 0);
    n = f->calls;
    assert_int_equal(pthread_mutex_unlock(&f->lock), 0);
    return n;
}

static void fake_set(struct fake_provider *f, int fail_code, int gated, int gate_open)
{
    assert_int_equal(pthread_mutex_lock(&f->lock), 0);
    f->fail_code = fail_code;
    f->gated = gated;
    f->gate_open = gate_open;
    assert_int_equal(pthread_cond_broadcast(&f->cond), 0);
    assert_int_equal(pthread_mutex_unlock(&f->lock), 0);
}

/* Waits (really, up to 5 s) until `n` callers are inside the provider. */
static void fake_wait_in_call(struct fake_provider *f, int n)
{
    struct timespec deadline;
    int rc = 0;

    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += 5;
    assert_int_equal(pthread_mutex_lock(&f->lock), 0);
    while (f->in_call < n && rc == 0)
        rc = pthread_cond_timedwait(&f->cond, &f->lock, &deadline);
    assert_int_equal(pthread_mutex_unlock(&f->lock), 0);
    if (rc != 0)
        fail_msg("the provider was not called in time");
}

/* The cache around a fake provider. The wrapper object owns nothing of the
 * test's; destroying the cache leaves `f` alone (fake_destroy is a no-op). */
static struct kl_cred_provider *cache_of(struct fake_provider *f, const struct kl_clock *clock,
                                         int64_t refresh_before)
{
    struct kl_err err = {0};
    struct kl_cred_provider *c = kl_cred_cache_create(&f->base, clock, refresh_before, &err);
    assert_non_null(c);
    return c;
}

/* Resolves and returns the access key id's number, or -rc on failure. */
static int resolve_n(struct kl_cred_provider *c, struct kl_err *err)
{
    struct kl_aws_creds out;
    int rc, n = 0;

    kl_aws_creds_init(&out);
    rc = kl_cred_provider_resolve(c, &out, err);
    if (rc != KL_OK)
        return -rc;
    assert_non_null(out.access_key_id);
    assert_int_equal(sscanf(out.access_key_id, "AKID-%d", &n), 1);
    kl_aws_creds_free(&out);
    return n;
}

static void hits_do_not_call_the_provider(void **state)
{
    struct kl_fake_clock clock;
    struct fake_provider f;
    struct kl_cred_provider *c;
    struct kl_err err = {0};
    (void)state;

    kl_fake_clock_init(&clock, T0);
    fake_init(&f, &clock.clock, HOUR_MS);
    c = cache_of(&f, &clock.clock, 0);
    assert_int_equal(resolve_n(c, &err), 1);
    for (int i = 0; i < 5; i++)
        assert_int_equal(resolve_n(c, &err), 1);
    clock.wall_ms += HOUR_MS - 6 * MIN_MS; /* outside the default 5-minute window */
    assert_int_equal(resolve_n(c, &err), 1);
    assert_int_equal(fake_calls(&f), 1);
    kl_cred_provider_destroy(c);
    fake_free(&f);

    /* Long-term keys never expire: one call, whatever the time. */
    fake_init(&f, &clock.clock, 0);
    c = cache_of(&f, &clock.clock, 0);
    assert_int_equal(resolve_n(c, &err), 1);
    clock.wall_ms += 1000 * HOUR_MS;
    assert_int_equal(resolve_n(c, &err), 1);
    assert_int_equal(fake_calls(&f), 1);
    kl_cred_provider_destroy(c);
    fake_free(&f);
}

static void refresh_before_expiry(void **state)
{
    struct kl_fake_clock clock;
    struct fake_provider f;
    struct kl_cred_provider *c;
    struct kl_err err = {0};
    (void)state;

    kl_fake_clock_init(&clock, T0);
    fake_init(&f, &clock.clock, HOUR_MS);
    c = cache_of(&f, &clock.clock, 0);
    assert_int_equal(resolve_n(c, &err), 1);
    clock.wall_ms += HOUR_MS - 4 * MIN_MS; /* inside the window: refresh */
    assert_int_equal(resolve_n(c, &err), 2);
    assert_int_equal(resolve_n(c, &err), 2);
    assert_int_equal(fake_calls(&f), 2);
    kl_cred_provider_destroy(c);
    fake_free(&f);

    /* A custom window. */
    kl_fake_clock_init(&clock, T0);
    fake_init(&f, &clock.clock, HOUR_MS);
    c = cache_of(&f, &clock.clock, MIN_MS);
    assert_int_equal(resolve_n(c, &err), 1);
    clock.wall_ms += HOUR_MS - 2 * MIN_MS;
    assert_int_equal(resolve_n(c, &err), 1);
    clock.wall_ms += MIN_MS + 1;
    assert_int_equal(resolve_n(c, &err), 2);
    kl_cred_provider_destroy(c);
    fake_free(&f);
}

static void failed_refresh_keeps_valid_credentials(void **state)
{
    struct kl_fake_clock clock;
    struct fake_provider f;
    struct kl_cred_provider *c;
    struct kl_err err = {0};
    char line[2048] = "";
    FILE *log = tmpfile();
    (void)state;

    assert_non_null(log);
    kl_log_set_sink(log);
    kl_log_set_level_name("warn");
    kl_fake_clock_init(&clock, T0);
    fake_init(&f, &clock.clock, HOUR_MS);
    c = cache_of(&f, &clock.clock, 0);
    assert_int_equal(resolve_n(c, &err), 1);

    fake_set(&f, KL_ERR_UNAVAILABLE, 0, 0);
    clock.wall_ms += HOUR_MS - 4 * MIN_MS;
    assert_int_equal(resolve_n(c, &err), 1); /* the old ones, still valid */
    assert_int_equal(fake_calls(&f), 2);
    /* Not asked again at once... */
    assert_int_equal(resolve_n(c, &err), 1);
    assert_int_equal(fake_calls(&f), 2);
    /* ...but after the retry interval. */
    clock.wall_ms += KL_CRED_REFRESH_RETRY_MS;
    assert_int_equal(resolve_n(c, &err), 1);
    assert_int_equal(fake_calls(&f), 3);
    fake_set(&f, 0, 0, 0);
    clock.wall_ms += KL_CRED_REFRESH_RETRY_MS;
    assert_int_equal(resolve_n(c, &err), 4);

    /* The warning says what happened, without any secret. */
    rewind(log);
    assert_non_null(fgets(line, sizeof line, log));
    assert_non_null(strstr(line, "\"level\":\"warn\""));
    assert_non_null(strstr(line, "keeping the ones from fake"));
    assert_non_null(strstr(line, "fake provider failure 2"));
    assert_null(strstr(line, "SECRET"));
    assert_null(strstr(line, "TOKEN"));
    kl_log_set_sink(NULL);
    kl_log_set_level_name("off");
    fclose(log);
    kl_cred_provider_destroy(c);
    fake_free(&f);
}

static void expired_credentials_and_failed_refresh_fail(void **state)
{
    struct kl_fake_clock clock;
    struct fake_provider f;
    struct kl_cred_provider *c;
    struct kl_err err = {0};
    (void)state;

    kl_fake_clock_init(&clock, T0);
    fake_init(&f, &clock.clock, HOUR_MS);
    c = cache_of(&f, &clock.clock, 0);
    assert_int_equal(resolve_n(c, &err), 1);
    fake_set(&f, KL_ERR_AUTH, 0, 0);
    clock.wall_ms += HOUR_MS; /* exactly at expiry: no longer usable */
    assert_int_equal(resolve_n(c, &err), -KL_ERR_AUTH);
    assert_int_equal(err.code, KL_ERR_AUTH);
    assert_string_equal(err.msg, "fake provider failure 2");
    /* No throttling when nothing valid is cached: each caller tries. */
    assert_int_equal(resolve_n(c, &err), -KL_ERR_AUTH);
    assert_int_equal(fake_calls(&f), 3);
    fake_set(&f, 0, 0, 0);
    assert_int_equal(resolve_n(c, &err), 4);
    kl_cred_provider_destroy(c);
    fake_free(&f);

    /* The very first resolve failing is reported as is. */
    kl_fake_clock_init(&clock, T0);
    fake_init(&f, &clock.clock, HOUR_MS);
    f.fail_code = KL_ERR_NOT_FOUND;
    c = cache_of(&f, &clock.clock, 0);
    assert_int_equal(resolve_n(c, &err), -KL_ERR_NOT_FOUND);
    kl_cred_provider_destroy(c);
    fake_free(&f);
}

static void each_resolve_is_a_deep_copy(void **state)
{
    struct kl_fake_clock clock;
    struct fake_provider f;
    struct kl_cred_provider *c;
    struct kl_aws_creds a, b;
    struct kl_err err = {0};
    (void)state;

    kl_fake_clock_init(&clock, T0);
    fake_init(&f, &clock.clock, HOUR_MS);
    c = cache_of(&f, &clock.clock, 0);
    kl_aws_creds_init(&a);
    kl_aws_creds_init(&b);
    assert_int_equal(kl_cred_provider_resolve(c, &a, &err), KL_OK);
    assert_int_equal(kl_cred_provider_resolve(c, &b, &err), KL_OK);
    assert_ptr_not_equal(a.secret_access_key, b.secret_access_key);
    kl_aws_creds_free(&a); /* the caller's copy is the caller's */
    assert_string_equal(b.secret_access_key, "SECRET-1");
    assert_int_equal(b.expires_at_ms, T0 + HOUR_MS);
    kl_aws_creds_free(&b);
    kl_cred_provider_destroy(c);
    fake_free(&f);
}

/* ---- concurrency ---- */

struct caller {
    pthread_t thread;
    struct kl_cred_provider *cache;
    int result; /* key number or -rc */
    atomic_int done;
};

static void *caller_main(void *arg)
{
    struct caller *c = arg;
    struct kl_err err = {0};
    c->result = resolve_n(c->cache, &err);
    atomic_store(&c->done, 1);
    return NULL;
}

static void start_caller(struct caller *c, struct kl_cred_provider *cache)
{
    c->cache = cache;
    c->result = 0;
    atomic_store(&c->done, 0);
    assert_int_equal(pthread_create(&c->thread, NULL, caller_main, c), 0);
}

/* Waits (really, up to 5 s) for callers that must not block. */
static void join_promptly(struct caller *c, size_t n)
{
    for (int waited = 0; waited < 5000; waited++) {
        size_t done = 0;
        for (size_t i = 0; i < n; i++)
            done += (size_t)atomic_load(&c[i].done);
        if (done == n)
            break;
        {
            struct timespec ts = {0, 1000000L};
            nanosleep(&ts, NULL);
        }
    }
    for (size_t i = 0; i < n; i++) {
        if (!atomic_load(&c[i].done))
            fail_msg("caller %zu is blocked behind the refresh", i);
        assert_int_equal(pthread_join(c[i].thread, NULL), 0);
    }
}

#define N_CALLERS 8

static void callers_keep_valid_credentials_during_a_refresh(void **state)
{
    struct atomic_clock clock;
    struct fake_provider f;
    struct kl_cred_provider *c;
    struct kl_err err = {0};
    struct caller refresher, others[N_CALLERS];
    (void)state;

    atomic_clock_init(&clock, T0);
    fake_init(&f, &clock.clock, HOUR_MS);
    c = cache_of(&f, &clock.clock, 0);
    assert_int_equal(resolve_n(c, &err), 1);

    /* Into the refresh window; the provider now blocks until released. */
    atomic_store(&clock.now_ms, T0 + HOUR_MS - 4 * MIN_MS);
    fake_set(&f, 0, 1, 0);
    start_caller(&refresher, c);
    fake_wait_in_call(&f, 1);
    for (size_t i = 0; i < N_CALLERS; i++)
        start_caller(&others[i], c);
    join_promptly(others, N_CALLERS); /* they must not wait for the refresh */
    for (size_t i = 0; i < N_CALLERS; i++)
        assert_int_equal(others[i].result, 1);
    assert_int_equal(fake_calls(&f), 2); /* exactly one refresh in flight */

    fake_set(&f, 0, 1, 1);
    assert_int_equal(pthread_join(refresher.thread, NULL), 0);
    assert_int_equal(refresher.result, 2);
    assert_int_equal(resolve_n(c, &err), 2);
    assert_int_equal(fake_calls(&f), 2);
    kl_cred_provider_destroy(c);
    fake_free(&f);
}

static void callers_wait_when_nothing_valid_is_cached(void **state)
{
    struct atomic_clock clock;
    struct fake_provider f;
    struct kl_cred_provider *c;
    struct caller callers[N_CALLERS];
    (void)state;

    atomic_clock_init(&clock, T0);
    fake_init(&f, &clock.clock, HOUR_MS);
    c = cache_of(&f, &clock.clock, 0);
    fake_set(&f, 0, 1, 0);
    for (size_t i = 0; i < N_CALLERS; i++)
        start_caller(&callers[i], c);
    fake_wait_in_call(&f, 1);
    {
        struct timespec ts = {0, 50000000L}; /* give the others time to pile up */
        nanosleep(&ts, NULL);
    }
    for (size_t i = 0; i < N_CALLERS; i++) /* all of them wait: nothing valid to hand out */
        assert_int_equal(atomic_load(&callers[i].done), 0);
    fake_set(&f, 0, 1, 1);
    for (size_t i = 0; i < N_CALLERS; i++) {
        assert_int_equal(pthread_join(callers[i].thread, NULL), 0);
        assert_int_equal(callers[i].result, 1);
    }
    assert_int_equal(fake_calls(&f), 1); /* one call served everyone */
    kl_cred_provider_destroy(c);
    fake_free(&f);

    /* The same when the failure is shared: waiters get the refresher's error. */
    atomic_clock_init(&clock, T0);
    fake_init(&f, &clock.clock, HOUR_MS);
    c = cache_of(&f, &clock.clock, 0);
    fake_set(&f, KL_ERR_UNAVAILABLE, 1, 0);
    for (size_t i = 0; i < N_CALLERS; i++)
        start_caller(&callers[i], c);
    fake_wait_in_call(&f, 1);
    {
        struct timespec ts = {0, 50000000L};
        nanosleep(&ts, NULL);
    }
    fake_set(&f, KL_ERR_UNAVAILABLE, 1, 1);
    for (size_t i = 0; i < N_CALLERS; i++) {
        assert_int_equal(pthread_join(callers[i].thread, NULL), 0);
        assert_int_equal(callers[i].result, -KL_ERR_UNAVAILABLE);
    }
    /* Callers that arrived while the failing call ran share its error; only
     * one that came after it finished may have tried again. */
    assert_true(fake_calls(&f) < N_CALLERS);
    kl_cred_provider_destroy(c);
    fake_free(&f);
}

struct stress_arg {
    struct kl_cred_provider *cache;
    struct atomic_clock *clock;
    atomic_int failures;
};

static void *stress_main(void *arg)
{
    struct stress_arg *a = arg;
    for (int i = 0; i < 2000; i++) {
        struct kl_aws_creds out;
        struct kl_err err = {0};
        int64_t before = kl_clock_wall_ms(&a->clock->clock);
        kl_aws_creds_init(&out);
        /* Whatever happens concurrently, what comes back was valid when we asked. */
        if (kl_cred_provider_resolve(a->cache, &out, &err) != KL_OK || out.expires_at_ms <= before)
            atomic_fetch_add(&a->failures, 1);
        kl_aws_creds_free(&out);
        if (i % 50 == 0) /* let time run past several expiries */
            atomic_fetch_add(&a->clock->now_ms, 3 * MIN_MS);
    }
    return NULL;
}

static void many_threads_across_many_refreshes(void **state)
{
    struct atomic_clock clock;
    struct fake_provider f;
    struct stress_arg arg;
    pthread_t threads[N_CALLERS];
    int calls;
    (void)state;

    atomic_clock_init(&clock, T0);
    fake_init(&f, &clock.clock, 30 * MIN_MS);
    arg.cache = cache_of(&f, &clock.clock, 0);
    arg.clock = &clock;
    atomic_store(&arg.failures, 0);
    for (size_t i = 0; i < N_CALLERS; i++)
        assert_int_equal(pthread_create(&threads[i], NULL, stress_main, &arg), 0);
    for (size_t i = 0; i < N_CALLERS; i++)
        assert_int_equal(pthread_join(threads[i], NULL), 0);
    assert_int_equal(atomic_load(&arg.failures), 0);
    calls = fake_calls(&f);
    /* 8 x 40 clock steps of 3 min over 30-min credentials: a few dozen
     * refreshes, far fewer than the 16000 resolves. */
    assert_true(calls > 1);
    assert_true(calls < 1000);
    kl_cred_provider_destroy(arg.cache);
    fake_free(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(hits_do_not_call_the_provider),
        cmocka_unit_test(refresh_before_expiry),
        cmocka_unit_test(failed_refresh_keeps_valid_credentials),
        cmocka_unit_test(expired_credentials_and_failed_refresh_fail),
        cmocka_unit_test(each_resolve_is_a_deep_copy),
        cmocka_unit_test(callers_keep_valid_credentials_during_a_refresh),
        cmocka_unit_test(callers_wait_when_nothing_valid_is_cached),
        cmocka_unit_test(many_threads_across_many_refreshes),
    };
    kl_log_set_level_name("off");
    return cmocka_run_group_tests(tests, NULL, NULL);
}
