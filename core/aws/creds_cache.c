/*
 * The caching layer in front of a credential provider: hands out copies of
 * the cached credentials, refreshes them shortly before they expire in
 * exactly one caller, and keeps still-valid credentials when a refresh fails.
 * It knows nothing about where credentials come from.
 */
#include "core/aws/creds.h"
#include "core/util/clock.h"
#include "core/util/err.h"
#include "core/util/log.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

struct cache {
    struct kl_cred_provider base;
    struct kl_cred_provider *inner;
    const struct kl_clock *clock;
    int64_t refresh_before_ms;

    pthread_mutex_t lock; /* guards everything below */
    pthread_cond_t refreshed;
    struct kl_aws_creds creds;
    bool have;
    bool refreshing;   /* one caller is asking `inner` right now */
    uint64_t attempts; /* finished refresh attempts */
    int last_rc;       /* result of the last attempt, for callers that waited on it */
    struct kl_err last_err;
    int64_t next_try_ms; /* while the creds are valid, no new attempt before this */
};

/* The mutex and condition variable fail only on misuse (a bug here), and a
 * cache whose lock state is unknown cannot go on safely. */
static void unlock_or_abort(pthread_mutex_t *m)
{
    if (pthread_mutex_unlock(m) != 0)
        abort();
}

static void lock_or_abort(pthread_mutex_t *m)
{
    if (pthread_mutex_lock(m) != 0)
        abort();
}

static bool expired(const struct cache *c, int64_t now)
{
    return c->creds.expires_at_ms != 0 && now >= c->creds.expires_at_ms;
}

static bool usable(const struct cache *c, int64_t now)
{
    return c->have && !expired(c, now);
}

static bool due(const struct cache *c, int64_t now)
{
    return c->creds.expires_at_ms != 0 && now >= c->creds.expires_at_ms - c->refresh_before_ms;
}

/* Runs `inner` without the lock held, then publishes the outcome. Called with
 * the lock held and `refreshing` just set; returns with the lock held. */
static int refresh_locked(struct cache *c, struct kl_aws_creds *out, struct kl_err *err)
{
    struct kl_aws_creds fresh;
    struct kl_err e = {KL_OK, ""};
    int rc, result;
    int64_t now;

    kl_aws_creds_init(&fresh);
    unlock_or_abort(&c->lock);
    rc = kl_cred_provider_resolve(c->inner, &fresh, &e);
    lock_or_abort(&c->lock);
    now = kl_clock_wall_ms(c->clock);
    if (rc == KL_OK) {
        bool changed = !c->have || strcmp(c->creds.source, fresh.source) != 0;
        kl_aws_creds_free(&c->creds);
        c->creds = fresh;
        c->have = true;
        c->next_try_ms = now + KL_CRED_REFRESH_RETRY_MS;
        if (changed)
            KL_INFO("aws", NULL, "using AWS credentials from %s", c->creds.source);
        else
            KL_DEBUG("aws", NULL, "refreshed AWS credentials from %s", c->creds.source);
        result = kl_aws_creds_copy(out, &c->creds, err);
    } else if (usable(c, now)) {
        c->next_try_ms = now + KL_CRED_REFRESH_RETRY_MS;
        KL_WARN("aws", NULL,
                "refreshing AWS credentials failed (%s: %s); keeping the ones from %s, "
                "valid for %lld more seconds",
                kl_err_code_name((enum kl_err_code)rc), e.msg, c->creds.source,
                (long long)((c->creds.expires_at_ms - now) / 1000));
        result = kl_aws_creds_copy(out, &c->creds, err);
    } else {
        if (c->have) {
            kl_aws_creds_free(&c->creds); /* expired: wipe it now */
            c->have = false;
        }
        if (err != NULL)
            *err = e;
        result = rc;
    }
    c->last_rc = rc;
    c->last_err = e;
    c->attempts++;
    c->refreshing = false;
    if (pthread_cond_broadcast(&c->refreshed) != 0)
        abort();
    return result;
}

static int cache_resolve(void *impl, struct kl_aws_creds *out, struct kl_err *err)
{
    struct cache *c = impl;
    int rc;

    if (pthread_mutex_lock(&c->lock) != 0)
        return kl_err_set(err, KL_ERR_INTERNAL, "credential cache: pthread_mutex_lock failed");
    for (;;) {
        int64_t now = kl_clock_wall_ms(c->clock);
        uint64_t seen;

        if (usable(c, now) && (!due(c, now) || c->refreshing || now < c->next_try_ms)) {
            rc = kl_aws_creds_copy(out, &c->creds, err);
            goto cleanup;
        }
        if (!c->refreshing) {
            c->refreshing = true;
            rc = refresh_locked(c, out, err);
            goto cleanup;
        }
        /* Nothing valid cached and another caller is refreshing: wait for it. */
        seen = c->attempts;
        while (c->refreshing && c->attempts == seen) {
            if (pthread_cond_wait(&c->refreshed, &c->lock) != 0) {
                rc = kl_err_set(err, KL_ERR_INTERNAL, "credential cache: pthread_cond_wait failed");
                goto cleanup;
            }
        }
        now = kl_clock_wall_ms(c->clock);
        if (c->attempts != seen && c->last_rc != KL_OK && !usable(c, now)) {
            /* Share the failure we waited for instead of asking again at once. */
            if (err != NULL)
                *err = c->last_err;
            rc = c->last_rc;
            goto cleanup;
        }
    }
cleanup:
    unlock_or_abort(&c->lock);
    return rc;
}

static void cache_destroy(void *impl)
{
    struct cache *c = impl;
    /* Contract: no resolve is running. */
    kl_cred_provider_destroy(c->inner);
    kl_aws_creds_free(&c->creds);
    (void)pthread_cond_destroy(&c->refreshed);
    (void)pthread_mutex_destroy(&c->lock);
    free(c);
}

static const struct kl_cred_provider_ops cache_ops = {cache_resolve, cache_destroy};

struct kl_cred_provider *kl_cred_cache_create(struct kl_cred_provider *inner,
                                              const struct kl_clock *clock,
                                              int64_t refresh_before_ms, struct kl_err *err)
{
    struct cache *c = NULL;

    if (inner == NULL || clock == NULL) {
        kl_err_set(err, KL_ERR_INVALID, "credential cache: inner provider and clock are required");
        goto fail;
    }
    c = calloc(1, sizeof *c);
    if (c == NULL) {
        kl_err_set(err, KL_ERR_NOMEM, "out of memory creating the credential cache");
        goto fail;
    }
    if (pthread_mutex_init(&c->lock, NULL) != 0) {
        kl_err_set(err, KL_ERR_INTERNAL, "credential cache: pthread_mutex_init failed");
        goto fail;
    }
    if (pthread_cond_init(&c->refreshed, NULL) != 0) {
        (void)pthread_mutex_destroy(&c->lock);
        kl_err_set(err, KL_ERR_INTERNAL, "credential cache: pthread_cond_init failed");
        goto fail;
    }
    c->inner = inner;
    c->clock = clock;
    c->refresh_before_ms =
        refresh_before_ms > 0 ? refresh_before_ms : KL_CRED_REFRESH_BEFORE_MS_DEFAULT;
    kl_aws_creds_init(&c->creds);
    c->base.ops = &cache_ops;
    c->base.impl = c;
    return &c->base;
fail:
    free(c);
    kl_cred_provider_destroy(inner);
    return NULL;
}
