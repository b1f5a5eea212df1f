/*
 * The load engine (see engine.h): worker threads over the store's task
 * queue, each delivery dispatched to planning (plan.c) or a shard task
 * (shard_run.c); a job's life is in job.c. A worker keeps its own
 * destination connection and, per job, its own normaliser; everything
 * shared goes through the store.
 */
#include "core/load/engine_internal.h"
#include "core/dest/dest.h"
#include "core/normalize/normalizer.h"
#include "core/util/clock.h"
#include "core/util/err.h"
#include "core/util/log.h"
#include "core/util/membudget.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MIN_ROWS_PER_WORKER ((size_t)1 << 20)

/* kl_record_commit_latency_seconds' buckets: a continuous load's second or
 * so up to a backfill's hours */
static const int64_t commit_latency_bounds_ms[] = {50,    100,   250,    500,    750,  1000,
                                                   1500,  2000,  2500,   3000,   5000, 10000,
                                                   30000, 60000, 300000, 3600000};

const struct kl_clock *kl_engine_clock(const struct kl_engine *e)
{
    return e->cfg.clock != NULL ? e->cfg.clock : kl_clock_system();
}

/* ---- what the process reports ---- */

void kl_engine_stats(struct kl_engine *e, struct kl_engine_stats *out)
{
    out->messages = atomic_load(&e->messages);
    out->rows = atomic_load(&e->rows);
    out->dead_letters = atomic_load(&e->dead_letters);
    out->chunks = atomic_load(&e->chunks);
    out->task_retries = atomic_load(&e->task_retries);
    out->task_failures = atomic_load(&e->task_failures);
    out->task_yields = atomic_load(&e->task_yields);
    struct kl_membudget_stats m;
    kl_membudget_stats(e->pages, &m);
    out->page_memory_limit = m.limit;
    out->page_memory_held = m.held;
    out->page_memory_peak = m.peak;
    out->page_memory_waits = m.waits;
    out->page_memory_wait_ms = m.wait_ms;
    kl_histogram_snapshot(&e->commit_latency, &out->commit_latency);
    out->leases_held = atomic_load(&e->leases_held);
}

size_t kl_engine_shard_lags(struct kl_engine *e, struct kl_shard_lag **out)
{
    return kl_lag_snapshot(&e->lags, out);
}

/* ---- workers ---- */

static void run_delivery(struct kl_worker *w, const struct kl_store_task *t)
{
    struct kl_store_job job;
    struct kl_err err;
    int rc;

    kl_store_job_init(&job);
    rc = kl_store_job_get(kl_worker_store(w), t->job_id, &job, &err);
    if (rc == KL_ERR_NOT_FOUND || (rc == KL_OK && kl_store_job_status_final(job.status))) {
        kl_job_task_done(w, t); /* nothing left to do for it */
        goto cleanup;
    }
    if (rc != KL_OK) {
        kl_store_task_nack(kl_worker_store(w), t, KL_ENGINE_RETRY_DELAY_MS, NULL);
        goto cleanup;
    }
    if (job.cancel_requested) {
        kl_job_task_done(w, t);
        goto cleanup;
    }
    rc = kl_job_prepare(w, &job, &err);
    if (rc == KL_OK)
        rc = kl_store_job_transition(kl_worker_store(w), t->job_id, KL_STORE_JOB_RUNNING, NULL,
                                     NULL, &err);
    if (rc == KL_ERR_CONFLICT) {
        /* cancelled (or failed) since we read it: nothing left to do */
        kl_job_task_done(w, t);
        goto cleanup;
    }
    if (rc != KL_OK) {
        if (kl_err_retryable((enum kl_err_code)rc))
            kl_job_task_retry(w, t, &err);
        else {
            kl_job_fail(w, t->job_id, NULL, &err);
            kl_job_task_done(w, t);
        }
        goto cleanup;
    }
    if (strcmp(t->shard_id, KL_ENGINE_PLAN_TASK) == 0)
        kl_plan_job(w, t);
    else
        kl_shard_run(w, t);
cleanup:
    kl_store_job_free(&job);
}

void kl_worker_free(struct kl_worker *w)
{
    kl_normalizer_destroy(w->norm);
    kl_dest_destroy(w->dest);
    free(w);
}

static struct kl_worker *worker_new(struct kl_engine *e, const char *name)
{
    struct kl_worker *w = calloc(1, sizeof *w);
    if (w == NULL)
        return NULL;
    w->e = e;
    w->schema_written = -1;
    snprintf(w->owner, sizeof w->owner, "%.100s-%s", e->owner, name);
    return w;
}

static void *worker_main(void *arg)
{
    struct kl_worker *w = arg;
    const struct kl_engine_config *cfg = &w->e->cfg;

    while (!atomic_load(&w->e->stopping)) {
        struct kl_store_task t;
        struct kl_err err;
        bool got = false;

        if (kl_store_task_take(cfg->store, w->owner, cfg->task_lease_ms, cfg->take_timeout_ms, &t,
                               &got, &err) != KL_OK) {
            KL_WARN("engine", NULL, "taking a task: %s", err.msg);
            kl_clock_sleep_ms(kl_engine_clock(w->e), 500);
            continue;
        }
        if (got)
            run_delivery(w, &t);
    }
    kl_worker_free(w);
    return NULL;
}

struct kl_engine *kl_engine_create(const struct kl_engine_config *cfg, struct kl_err *err)
{
    struct kl_engine *e;
    char host[64] = "host";

    if (cfg->store == NULL || cfg->dests == NULL || cfg->client == NULL) {
        kl_err_set(err, KL_ERR_INVALID, "the engine needs a store, a destination and a client");
        return NULL;
    }
    e = calloc(1, sizeof *e);
    if (e == NULL) {
        kl_err_set(err, KL_ERR_NOMEM, "out of memory creating the engine");
        return NULL;
    }
    e->cfg = *cfg;
    if (e->cfg.workers <= 0)
        e->cfg.workers = 4;
    if (e->cfg.workers > KL_ENGINE_MAX_WORKERS)
        e->cfg.workers = KL_ENGINE_MAX_WORKERS;
    if (e->cfg.task_lease_ms <= 0)
        e->cfg.task_lease_ms = 30000;
    if (e->cfg.shard_lease_ms <= 0)
        e->cfg.shard_lease_ms = 30000;
    if (e->cfg.take_timeout_ms <= 0)
        e->cfg.take_timeout_ms = 500;
    if (e->cfg.task_attempts <= 0)
        e->cfg.task_attempts = 5;
    if (e->cfg.task_slice_ms == 0)
        e->cfg.task_slice_ms = 60000;
    if (e->cfg.sweep_interval_ms == 0)
        e->cfg.sweep_interval_ms = 30000;
    if (cfg->owner != NULL) {
        snprintf(e->owner, sizeof e->owner, "%.100s", cfg->owner);
    } else {
        gethostname(host, sizeof host - 1);
        host[sizeof host - 1] = '\0';
        snprintf(e->owner, sizeof e->owner, "%.63s-%ld", host, (long)getpid());
    }
    e->cfg.owner = e->owner;
    atomic_store(&e->stopping, false);
    if (e->cfg.memory_max > 0) {
        size_t pages;
        kl_engine_memory_split(e->cfg.memory_max, e->cfg.workers, &e->rows_target, &pages);
        e->pages = kl_membudget_create(pages, err);
        if (e->pages == NULL) {
            free(e);
            return NULL;
        }
    }
    kl_lag_registry_init(&e->lags, e->cfg.clock);
    kl_histogram_init(&e->commit_latency, commit_latency_bounds_ms,
                      sizeof commit_latency_bounds_ms / sizeof commit_latency_bounds_ms[0]);
    atomic_init(&e->leases_held, 0);
    return e;
}

void kl_engine_memory_split(size_t memory_max, int workers, size_t *rows_per_worker, size_t *pages)
{
    size_t rows = memory_max / 4 / (size_t)(workers > 0 ? workers : 1);
    if (rows < MIN_ROWS_PER_WORKER)
        rows = MIN_ROWS_PER_WORKER;
    *rows_per_worker = rows;
    *pages =
        memory_max > rows * (size_t)workers ? memory_max - rows * (size_t)workers : memory_max / 2;
}

int kl_engine_start(struct kl_engine *e, struct kl_err *err)
{
    if (e->cfg.sweep_interval_ms > 0 && !e->sweeping) {
        struct kl_worker *w = worker_new(e, "sweep");
        if (w == NULL)
            return kl_err_set(err, KL_ERR_NOMEM, "out of memory starting the sweep");
        if (pthread_create(&e->sweeper, NULL, kl_job_sweep_main, w) != 0) {
            free(w);
            return kl_err_set(err, KL_ERR_INTERNAL, "cannot start the sweep");
        }
        e->sweeping = true;
    }
    for (int i = 0; i < e->cfg.workers; i++) {
        char name[16];
        struct kl_worker *w;
        snprintf(name, sizeof name, "w%d", i);
        w = worker_new(e, name);
        if (w == NULL)
            return kl_err_set(err, KL_ERR_NOMEM, "out of memory starting worker %d", i);
        if (pthread_create(&e->threads[e->n_threads], NULL, worker_main, w) != 0) {
            free(w);
            return kl_err_set(err, KL_ERR_INTERNAL, "cannot start worker %d", i);
        }
        e->n_threads++;
    }
    return KL_OK;
}

void kl_engine_stop(struct kl_engine *e)
{
    if (e == NULL)
        return;
    atomic_store(&e->stopping, true);
    for (int i = 0; i < e->n_threads; i++)
        pthread_join(e->threads[i], NULL);
    e->n_threads = 0;
    if (e->sweeping)
        pthread_join(e->sweeper, NULL);
    e->sweeping = false;
}

void kl_engine_destroy(struct kl_engine *e)
{
    if (e == NULL)
        return;
    kl_engine_stop(e);
    kl_lag_registry_destroy(&e->lags);
    kl_membudget_destroy(e->pages);
    free(e);
}
