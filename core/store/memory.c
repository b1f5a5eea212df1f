/*
 * The in-process state store (memory.h): its helpers, the leases, the life
 * cycle and the ops table; jobs and the budget are in memory_jobs.c, the
 * task queue in memory_tasks.c. One mutex guards everything; one condition
 * variable wakes blocked takers. Collections are plain arrays
 * searched linearly: one process runs a handful of jobs with at most a few
 * thousand shards, so clarity beats indexes here. The semantics mirror the
 * Redis backend's Lua scripts (redis_scripts.c) one for one.
 */
#include "core/store/memory.h"
#include "core/store/memory_internal.h"
#include "core/store/internal.h"
#include "core/util/clock.h"
#include "core/util/err.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- small helpers ---- */

int kl_ms_lock(struct memory *m, struct kl_err *err)
{
    if (pthread_mutex_lock(&m->mu) != 0)
        return KL_STORE_FAIL(err, KL_ERR_INTERNAL, "memory store: mutex lock failed");
    return KL_OK;
}

void kl_ms_unlock(struct memory *m)
{
    /* Fails only for a mutex this thread does not hold: a bug we must not run past. */
    if (pthread_mutex_unlock(&m->mu) != 0)
        abort();
}

int64_t kl_ms_wall(struct memory *m)
{
    return kl_clock_wall_ms(m->clock);
}

int64_t kl_ms_mono(struct memory *m)
{
    return kl_clock_monotonic_ms(m->clock);
}

/* Grows an array so it holds one more element. */
int kl_ms_grow(void **arr, size_t *cap, size_t n, size_t elem, struct kl_err *err)
{
    void *p;
    size_t c;
    if (n < *cap)
        return KL_OK;
    c = *cap != 0 ? *cap * 2 : 8;
    p = realloc(*arr, c * elem);
    if (p == NULL)
        return KL_STORE_FAIL(err, KL_ERR_NOMEM, "memory store: out of memory");
    *arr = p;
    *cap = c;
    return KL_OK;
}

static void join_key(char out[KEY_MAX], const char *a, const char *b, const char *c)
{
    snprintf(out, KEY_MAX, "%s:%s%s%s", a, b, c != NULL ? ":" : "", c != NULL ? c : "");
}

struct mjob *kl_ms_find_job(struct memory *m, const char *id)
{
    for (size_t i = 0; i < m->n_jobs; i++) {
        if (strcmp(m->jobs[i]->s.id, id) == 0)
            return m->jobs[i];
    }
    return NULL;
}

void kl_ms_free_job(struct mjob *j)
{
    if (j == NULL)
        return;
    kl_store_job_free(&j->s);
    free(j->tasks);
    free(j->reserved);
    free(j);
}

/* Forgets finished jobs past retention and expired Idempotency-Keys. */
void kl_ms_purge(struct memory *m)
{
    int64_t now = kl_ms_wall(m);
    size_t w = 0;
    for (size_t i = 0; i < m->n_jobs; i++) {
        struct mjob *j = m->jobs[i];
        if (kl_store_job_status_final(j->s.status) && j->s.finished_ms + m->retention_ms <= now)
            kl_ms_free_job(j);
        else
            m->jobs[w++] = j;
    }
    m->n_jobs = w;
    w = 0;
    for (size_t i = 0; i < m->n_idem; i++) {
        if (m->idem[i].expires_ms > now)
            m->idem[w++] = m->idem[i];
    }
    m->n_idem = w;
}

int kl_ms_copy_job(const struct kl_store_job *src, struct kl_store_job *dst, struct kl_err *err)
{
    struct kl_store_job j = *src;
    int rc = KL_OK;

    j.parameters = NULL;
    j.tables = NULL;
    j.shards = NULL;
    j.parameters = strdup(src->parameters != NULL ? src->parameters : "{}");
    if (src->n_tables > 0)
        j.tables = malloc(src->n_tables * sizeof *j.tables);
    if (src->n_shards > 0)
        j.shards = malloc(src->n_shards * sizeof *j.shards);
    if (j.parameters == NULL || (src->n_tables > 0 && j.tables == NULL) ||
        (src->n_shards > 0 && j.shards == NULL)) {
        rc = KL_STORE_FAIL(err, KL_ERR_NOMEM, "memory store: out of memory");
        goto cleanup;
    }
    if (src->n_tables > 0)
        memcpy(j.tables, src->tables, src->n_tables * sizeof *j.tables);
    if (src->n_shards > 0)
        memcpy(j.shards, src->shards, src->n_shards * sizeof *j.shards);
    kl_store_job_sort(&j);
    kl_store_job_free(dst);
    *dst = j;
    j.parameters = NULL;
    j.tables = NULL;
    j.shards = NULL;
cleanup:
    kl_store_job_free(&j);
    return rc;
}

static const char *impl_name(void *impl)
{
    (void)impl;
    return "memory";
}

static int impl_ping(void *impl, struct kl_err *err)
{
    (void)impl;
    (void)err;
    return KL_OK;
}

/* ---- leases ---- */

static struct mlease *find_lease(struct memory *m, const struct kl_store_shard_key *k, bool create,
                                 struct kl_err *err, int *rc)
{
    char key[KEY_MAX];
    struct mlease *l;
    join_key(key, k->pipeline, k->stream, k->shard_id);
    for (size_t i = 0; i < m->n_leases; i++) {
        if (strcmp(m->leases[i].key, key) == 0)
            return &m->leases[i];
    }
    if (!create)
        return NULL;
    if ((*rc = kl_ms_grow((void **)&m->leases, &m->cap_leases, m->n_leases, sizeof *m->leases,
                          err)) != KL_OK)
        return NULL;
    l = &m->leases[m->n_leases++];
    memset(l, 0, sizeof *l);
    memcpy(l->key, key, sizeof l->key);
    return l;
}

static bool live(struct memory *m, const struct mlease *l)
{
    return l->owner[0] != '\0' && l->expires_ms > kl_ms_mono(m);
}

static int impl_lease_take(void *impl, const struct kl_store_shard_key *k, const char *owner,
                           int64_t ttl_ms, int64_t min_token, int64_t *token, struct kl_err *err)
{
    struct memory *m = impl;
    struct mlease *l;
    int rc;

    if ((rc = kl_ms_lock(m, err)) != KL_OK)
        return rc;
    l = find_lease(m, k, true, err, &rc);
    if (l == NULL)
        goto cleanup;
    if (live(m, l)) {
        if (strcmp(l->owner, owner) != 0) {
            rc = KL_STORE_FAIL(err, KL_ERR_CONFLICT, "shard %s is leased by %s for %lld ms more",
                               k->shard_id, l->owner, (long long)(l->expires_ms - kl_ms_mono(m)));
            goto cleanup;
        }
    } else {
        l->fence = l->fence + 1 > min_token ? l->fence + 1 : min_token + 1;
        l->token = l->fence;
        kl_store_copy(l->owner, sizeof l->owner, owner);
    }
    l->expires_ms = kl_ms_mono(m) + ttl_ms;
    *token = l->token;
cleanup:
    kl_ms_unlock(m);
    return rc;
}

static int impl_lease_renew(void *impl, const struct kl_store_shard_key *k, const char *owner,
                            int64_t token, int64_t ttl_ms, struct kl_err *err)
{
    struct memory *m = impl;
    struct mlease *l;
    bool ours;
    int rc;

    if ((rc = kl_ms_lock(m, err)) != KL_OK)
        return rc;
    l = find_lease(m, k, false, err, &rc);
    ours = l != NULL && l->token == token && strcmp(l->owner, owner) == 0;
    /* A lapsed lease may be re-established while its token is still the newest. */
    if (ours && (live(m, l) || l->fence == token))
        l->expires_ms = kl_ms_mono(m) + ttl_ms;
    else
        rc = KL_STORE_FAIL(err, KL_ERR_CONFLICT, "lease of shard %s with token %lld is lost",
                           k->shard_id, (long long)token);
    kl_ms_unlock(m);
    return rc;
}

static int impl_lease_release(void *impl, const struct kl_store_shard_key *k, const char *owner,
                              int64_t token, struct kl_err *err)
{
    struct memory *m = impl;
    struct mlease *l;
    int rc;

    if ((rc = kl_ms_lock(m, err)) != KL_OK)
        return rc;
    l = find_lease(m, k, false, err, &rc);
    if (l != NULL && live(m, l)) {
        if (l->token == token && strcmp(l->owner, owner) == 0)
            l->owner[0] = '\0';
        else
            rc = KL_STORE_FAIL(err, KL_ERR_CONFLICT, "shard %s is leased by %s (token %lld)",
                               k->shard_id, l->owner, (long long)l->token);
    }
    kl_ms_unlock(m);
    return rc;
}

/* ---- lifecycle ---- */

static void impl_destroy(void *impl)
{
    struct memory *m = impl;
    if (m == NULL)
        return;
    for (size_t i = 0; i < m->n_jobs; i++)
        kl_ms_free_job(m->jobs[i]);
    free(m->jobs);
    free(m->idem);
    free(m->leases);
    /* Destroying an unlocked, unwaited mutex and condition cannot fail. */
    (void)pthread_cond_destroy(&m->cv);
    (void)pthread_mutex_destroy(&m->mu);
    free(m);
}

static const struct kl_store_ops memory_ops = {
    .name = impl_name,
    .ping = impl_ping,
    .job_create = kl_ms_job_create,
    .job_get = kl_ms_job_get,
    .job_list = kl_ms_job_list,
    .job_status = kl_ms_job_status,
    .job_active = kl_ms_job_active,
    .job_transition = kl_ms_job_transition,
    .job_cancel = kl_ms_job_cancel,
    .job_progress = kl_ms_job_progress,
    .budget_reserve = kl_ms_budget_reserve,
    .budget_release = kl_ms_budget_release,
    .task_enqueue = kl_ms_task_enqueue,
    .task_take = kl_ms_task_take,
    .task_heartbeat = kl_ms_task_heartbeat,
    .task_ack = kl_ms_task_ack,
    .task_nack = kl_ms_task_nack,
    .task_release = kl_ms_task_release,
    .stats = kl_ms_stats,
    .lease_take = impl_lease_take,
    .lease_renew = impl_lease_renew,
    .lease_release = impl_lease_release,
    .destroy = impl_destroy,
};

struct kl_store *kl_store_memory_create(const struct kl_store_options *o, struct kl_err *err)
{
    struct kl_store_options defaults;
    struct kl_store *s = NULL;
    struct memory *m = NULL;
    pthread_condattr_t attr;
    bool mutex_ok = false, attr_ok = false;

    if (o == NULL) {
        kl_store_options_init(&defaults);
        o = &defaults;
    }
    if (o->job_retention_ms <= 0 || o->idempotency_ttl_ms <= 0) {
        kl_err_set(err, KL_ERR_INVALID, "memory store: retention and TTLs must be positive");
        goto fail;
    }
    s = calloc(1, sizeof *s);
    m = calloc(1, sizeof *m);
    if (s == NULL || m == NULL) {
        kl_err_set(err, KL_ERR_NOMEM, "memory store: out of memory");
        goto fail;
    }
    if (pthread_mutex_init(&m->mu, NULL) != 0) {
        kl_err_set(err, KL_ERR_INTERNAL, "memory store: mutex init failed");
        goto fail;
    }
    mutex_ok = true;
    if (pthread_condattr_init(&attr) != 0) {
        kl_err_set(err, KL_ERR_INTERNAL, "memory store: condattr init failed");
        goto fail;
    }
    attr_ok = true;
    if (pthread_condattr_setclock(&attr, CLOCK_MONOTONIC) != 0 ||
        pthread_cond_init(&m->cv, &attr) != 0) {
        kl_err_set(err, KL_ERR_INTERNAL, "memory store: condition variable init failed");
        goto fail;
    }
    (void)pthread_condattr_destroy(&attr);
    m->clock = o->clock != NULL ? o->clock : kl_clock_system();
    m->retention_ms = o->job_retention_ms;
    m->idem_ttl_ms = o->idempotency_ttl_ms;
    s->ops = &memory_ops;
    s->impl = m;
    return s;
fail:
    if (attr_ok)
        (void)pthread_condattr_destroy(&attr);
    if (mutex_ok)
        (void)pthread_mutex_destroy(&m->mu);
    free(m);
    free(s);
    return NULL;
}
