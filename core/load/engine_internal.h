/*
 * What the files of the load engine share, and nothing else includes: the
 * engine and its workers, and the functions each file gives the others.
 *   engine.c     threads: workers taking tasks, dispatch, start and stop
 *   job.c        a job's life: submit, prepare, complete, fail, the sweep
 *   plan.c       planning over the shard lineage: the first tasks, children
 *   shard_run.c  one shard task: lease, claim, resume, the task's hooks
 *   lag.c        the lag registry for /metrics
 */
#ifndef KL_LOAD_ENGINE_INTERNAL_H
#define KL_LOAD_ENGINE_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/load/engine.h"
#include "core/load/lag.h"
#include "core/load/params.h"
#include "core/store/store.h"
#include "core/util/histogram.h"

struct kl_dest;
struct kl_normalizer;
struct kl_membudget;

#define KL_ENGINE_PLAN_TASK "@plan" /* the shard id of a job's planning task */
#define KL_ENGINE_MAX_WORKERS 256
#define KL_ENGINE_RETRY_DELAY_MS 1000 /* a failed task's first retry; doubles up to 32 s */

struct kl_engine {
    struct kl_engine_config cfg;
    char owner[KL_STORE_OWNER_MAX];
    pthread_t threads[KL_ENGINE_MAX_WORKERS];
    int n_threads;
    pthread_t sweeper;
    bool sweeping;
    atomic_bool stopping;
    /* counters for kl_engine_stats */
    atomic_uint_least64_t messages, rows, dead_letters, chunks, task_retries, task_failures,
        task_yields;
    struct kl_lag_registry lags; /* per-shard MillisBehindLatest for kl_engine_shard_lags */
    struct kl_membudget *pages;  /* what GetRecords pages hold (memory_max); NULL: no limit */
    size_t rows_target;          /* a worker's normalised rows (0: no target) */
    struct kl_histogram commit_latency; /* a message's arrival to its commit */
    atomic_int_least64_t leases_held;   /* shard leases this process's workers hold now */
};

/* What a worker thread keeps between tasks. */
struct kl_worker {
    struct kl_engine *e;
    char owner[KL_STORE_OWNER_MAX];
    struct kl_dest *dest;
    /* the job whose normaliser is cached */
    char job_id[KL_STORE_JOB_ID_SIZE];
    struct kl_load_params params;
    char load_id[KL_LOAD_ID_MAX];
    int64_t job_created_ms; /* epoch ms: the stop rule's bound on arrival times */
    struct kl_normalizer *norm;
    int64_t schema_written;
    int64_t windows_closed; /* a continuous job_id: its load windows below this are closed */
};

static inline struct kl_store *kl_worker_store(const struct kl_worker *w)
{
    return w->e->cfg.store;
}

/* The engine's clock (the system's unless the config gave one). */
const struct kl_clock *kl_engine_clock(const struct kl_engine *e);

/* ---- job.c ---- */

/* Makes the worker ready for `job`: its parameters, load id, destination
 * connection and a normaliser over the dataset's stored schema (cached
 * while the worker stays on the job). */
int kl_job_prepare(struct kl_worker *w, const struct kl_store_job *job, struct kl_err *err);
/* A continuous load: closes its load windows [from, to) — dlt's
 * `_dlt_loads` row and pipeline state for each, as a batch job's end
 * writes them (idempotent) — and notes how far they are closed. */
int kl_job_close_windows(struct kl_worker *w, int64_t from, int64_t to, struct kl_err *err);
/* Records the job as failed, with `why` (and the shard, may be NULL). */
void kl_job_fail(struct kl_worker *w, const char *job_id, const char *shard,
                 const struct kl_err *why);
/* Acks a task, and completes the job when it was the last one. */
void kl_job_task_done(struct kl_worker *w, const struct kl_store_task *t);
/* A retryable failure: the task again later, or the job failed after
 * cfg.task_attempts deliveries. */
void kl_job_task_retry(struct kl_worker *w, const struct kl_store_task *t,
                       const struct kl_err *why);
/* The sweep thread (kl_engine_start); `arg` is its struct kl_worker, freed at the end. */
void *kl_job_sweep_main(void *arg);

/* ---- plan.c ---- */

/* Runs a planning task: queues every shard whose parents are not listed. */
void kl_plan_job(struct kl_worker *w, const struct kl_store_task *t);
/* A shard of the task drained: queues each child whose listed parents are all done. */
int kl_plan_children(struct kl_worker *w, const struct kl_store_task *t, struct kl_err *err);

/* ---- shard_run.c ---- */

/* Runs a shard task to its end, a yield, a lost lease or an error, and
 * acks, releases or retries it accordingly. */
void kl_shard_run(struct kl_worker *w, const struct kl_store_task *t);

/* ---- engine.c ---- */

/* Frees what a worker holds, and the worker. */
void kl_worker_free(struct kl_worker *w);

#endif
