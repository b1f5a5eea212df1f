/*
 * The load engine: a pool of worker threads that take tasks from the state
 * store's queue and run them. A job is planned by one "@plan" task (list the
 * shards, queue the ones whose parents are not listed); each shard task
 * holds the shard's lease, runs the shard (task.h) and, when a closed shard
 * is drained, queues its children. The last task to finish completes the
 * job in the destination (dlt's load and pipeline-state rows, the next run
 * time). Every replica runs an engine on the same store; the store's queue,
 * leases and the destination's fenced checkpoints keep data exactly once.
 * HTTP is elsewhere (api/, server/).
 */
#ifndef KL_LOAD_ENGINE_H
#define KL_LOAD_ENGINE_H

#include <stdbool.h>
#include <stdint.h>

#include "core/load/lag.h"
#include "core/load/params.h"
#include "core/store/store.h"
#include "core/util/histogram.h"

struct kl_err;
struct kl_clock;
struct kl_kinesis;
struct kl_dest_factory;

struct kl_engine_config {
    struct kl_store *store;        /* borrowed; thread-safe */
    struct kl_dest_factory *dests; /* borrowed; each worker opens its own connection */
    struct kl_kinesis *client;     /* borrowed; thread-safe */
    const struct kl_clock *clock;  /* NULL: system */
    int workers;                   /* worker threads, 1..256; default 4 */
    const char *owner;             /* this replica's name in leases; default host:pid */
    int64_t task_lease_ms;         /* a task's in-flight lease; default 30000 */
    int64_t shard_lease_ms;        /* a shard lease; default 30000 */
    int64_t take_timeout_ms;       /* how long a worker waits for a task; default 500 */
    int task_attempts;             /* deliveries of a task before its job fails; default 5 */
    /* A shard task that ran this long yields its worker at the next chunk
     * boundary when other tasks wait (it is queued again behind them);
     * 0: default 60000; < 0: never. */
    int64_t task_slice_ms;
    /* How often running jobs are checked for one whose tasks are all done
     * but that nobody completed (its last worker died in between): found
     * on two checks in a row, it is completed. 0: default 30000; < 0: never. */
    int64_t sweep_interval_ms;
    int64_t min_call_interval_ms; /* Kinesis pacing per shard (see cursor.h) */
    int64_t max_bytes_per_s;
    /* What GetRecords pages and normalised rows may hold at once, all
     * workers together (KL_MEMORY_MAX): each worker's rows get a quarter
     * divided by the workers (1 MiB at least; a chunk is committed in parts
     * past it) and pages the rest, which readers wait for (cursor.h). 0: no
     * limit. */
    size_t memory_max;
    /* Continuous loads to keep running (borrowed; KL_CONTINUOUS_LOADS): the
     * sweep submits each at start and at every sweep; one whose stream and
     * pipeline have an active job is left as it is. */
    const struct kl_load_params *continuous_loads;
    size_t n_continuous_loads;
};

/* How KL_MEMORY_MAX divides: the target of one worker's rows, and what
 * pages share. */
void kl_engine_memory_split(size_t memory_max, int workers, size_t *rows_per_worker, size_t *pages);

struct kl_engine;

struct kl_engine *kl_engine_create(const struct kl_engine_config *cfg, struct kl_err *err);
/* Starts the worker threads. */
int kl_engine_start(struct kl_engine *e, struct kl_err *err);
/* Stops taking tasks; running tasks stop at their next chunk boundary, give
 * their shard back (lease released, task requeued for another replica) and
 * the threads are joined. Safe to call twice. */
void kl_engine_stop(struct kl_engine *e);
/* Stops if needed and frees; NULL is a no-op. */
void kl_engine_destroy(struct kl_engine *e);

/* Creates a job and queues its planning task. KL_ERR_CONFLICT: a job for
 * the stream and pipeline is active (`id_out` is that job). `*existing`:
 * the Idempotency-Key named an earlier job (nothing new was queued). */
int kl_engine_submit(struct kl_engine *e, const struct kl_load_params *p,
                     const char *idempotency_key, char id_out[KL_STORE_JOB_ID_SIZE], bool *existing,
                     struct kl_err *err);

/* Waits until the job is final (or timeout_ms passes: KL_ERR_UNAVAILABLE). */
int kl_engine_wait(struct kl_engine *e, const char *job_id, int64_t timeout_ms,
                   struct kl_store_job *out, struct kl_err *err);

/* What this process's engine did since it started (for /metrics; every
 * replica counts its own, so sums across replicas are totals). */
struct kl_engine_stats {
    uint64_t messages;      /* messages committed to the destination */
    uint64_t rows;          /* rows committed, all tables */
    uint64_t dead_letters;  /* dead letters committed */
    uint64_t chunks;        /* chunk transactions committed */
    uint64_t task_retries;  /* task attempts that failed and were queued again */
    uint64_t task_failures; /* tasks that failed their job */
    uint64_t task_yields;   /* tasks that gave their worker to waiting tasks */
    /* the pages' share of KL_MEMORY_MAX (all 0 without a limit) */
    uint64_t page_memory_limit;   /* bytes */
    uint64_t page_memory_held;    /* bytes reserved or held by pages now */
    uint64_t page_memory_peak;    /* the most held at once */
    uint64_t page_memory_waits;   /* GetRecords calls that waited for memory */
    uint64_t page_memory_wait_ms; /* and how long, in all */
    /* a committed message's ApproximateArrivalTimestamp to its commit */
    struct kl_histogram_snapshot commit_latency;
    int64_t leases_held; /* shard leases this process's workers hold now */
};

void kl_engine_stats(struct kl_engine *e, struct kl_engine_stats *out);

/* Copies the shards this process read within KL_LAG_KEEP_MS, ordered by
 * pipeline, stream and shard, into `*out` (malloc'ed; the caller frees it).
 * Returns how many; 0 with `*out` NULL when none (or out of memory). */
size_t kl_engine_shard_lags(struct kl_engine *e, struct kl_shard_lag **out);

#endif
