/*
 * One shard task of a load job: read the shard chunk by chunk, normalise
 * each chunk, and write it to the destination in ONE transaction together
 * with the shard's fenced checkpoint. What the task shares with the rest of
 * the job (message budget, counters, cancel, lease renewal) goes through
 * hooks, so the same runner serves the service's worker pool and the
 * `load` command, and is tested without a state store.
 */
#ifndef KL_LOAD_TASK_H
#define KL_LOAD_TASK_H

#include <stdbool.h>
#include <stdint.h>

#include "core/dest/dest.h"
#include "core/kinesis/cursor.h"
#include "core/load/params.h"

struct kl_err;
struct kl_clock;
struct kl_normalizer;
struct kl_membudget;
struct kl_histogram;

/* The worker's tools; all borrowed, none shared with another thread. */
struct kl_task_env {
    struct kl_kinesis *client;
    struct kl_dest *dest;
    /* A normaliser for this job's dataset and root table. Its schema is
     * reloaded from the destination when a write finds it stale. */
    struct kl_normalizer *normalizer;
    const struct kl_clock *clock; /* NULL: system */
    int64_t min_call_interval_ms; /* pacing per shard, see cursor.h */
    int64_t max_bytes_per_s;
    struct kl_membudget *memory; /* pages are held under it (cursor.h); may be NULL */
    size_t rows_allowance;       /* the normaliser's chunk_bytes_target (cursor.h) */
    int write_attempts;          /* tries per chunk on retryable destination errors; default 5 */
    /* Each committed message's arrival (ApproximateArrivalTimestamp) to its
     * commit, in ms; may be NULL. */
    struct kl_histogram *commit_latency;
    /* Schema version this destination connection last stored (the task
     * updates it); -1 when unknown. */
    int64_t *schema_version_written;
};

/* What the task shares with its job. Every hook is optional. */
struct kl_task_hooks {
    void *ctx;
    /* Grants up to `want` messages of the job's budget; 0 means spent. */
    int (*reserve)(void *ctx, int want, int *granted, struct kl_err *err);
    /* Gives back what a fetch did not use (may be negative: KPL expansion). */
    void (*settle)(void *ctx, int granted, int used);
    /* Messages up to `pos` were committed (rows and checkpoint are in the
     * destination): `messages` of them, as `batch` (rows per table, dead
     * letters), the newest arrived at `last_arrival_ms` (epoch ms; 0
     * unknown). `millis_behind` is the page's MillisBehindLatest (-1
     * unknown). */
    int (*committed)(void *ctx, const struct kl_shard_position *pos, size_t messages,
                     int64_t last_arrival_ms, int64_t millis_behind,
                     const struct kl_row_batch *batch, const struct kl_chunk_result *res,
                     struct kl_err *err);
    /* The job was cancelled: stop at this chunk boundary. */
    bool (*cancelled)(void *ctx);
    /* A continuous load's shard reached its tip: true ends the task there
     * (KL_TASK_AT_TIP, the page loaded, no further page asked for), so that
     * its worker serves other shards until this one's next poll is due. */
    bool (*yield_at_tip)(void *ctx);
    /* A continuous load's shard writes into load window `k` from now on
     * (called before its first chunk of each window, and once when the
     * task starts): its earlier windows' chunks are all committed. */
    int (*window)(void *ctx, int64_t k, struct kl_err *err);
    /* Keeps the shard lease alive; KL_ERR_CONFLICT when it was lost. */
    int (*renew)(void *ctx, struct kl_err *err);
    /* A Kinesis call of the shard is being retried: `operation`, since when
     * (epoch ms), until when at most (epoch ms), and the last error. Runs on
     * the task's thread between attempts. */
    void (*waiting)(void *ctx, const char *operation, int64_t since_ms, int64_t deadline_ms,
                    const struct kl_err *why);
};

struct kl_task_spec {
    const struct kl_load_params *params;
    const char *job_id; /* for log lines; NULL: the load id */
    const char *load_id;
    const char *shard_id;
    bool shard_closed; /* read to its end, ignoring milliseconds_behind_latest */
    /* The job's creation (epoch ms): an open shard is done once it delivered a
     * record that arrived at or after it (kl_cursor_options); <= 0: none. */
    int64_t job_created_ms;
    /* where to start without a checkpoint (kl_choose_start) */
    struct kl_iterator_start start;
    /* the destination's checkpoint of the shard, or NULL */
    const struct kl_shard_position *resume;
    int64_t fencing_token; /* the lease token; written with every checkpoint */
};

enum kl_task_end {
    KL_TASK_CAUGHT_UP, /* the stop rule ended the shard */
    KL_TASK_DRAINED,   /* closed and read to its end: children may start */
    KL_TASK_BUDGET,    /* the job's message budget is spent */
    KL_TASK_CANCELLED, /* the job was cancelled */
    KL_TASK_AT_TIP,    /* a continuous load's shard at its tip gave its worker back */
};

struct kl_task_result {
    enum kl_task_end end;
    uint64_t messages; /* committed by this task */
    uint64_t chunks;
    struct kl_shard_position position; /* the last committed position ("" if none) */
    int64_t millis_behind;
    bool has_gap;
    struct kl_gap gap;
};

/* Runs the task until one of the ends above or an error. Errors: those of
 * the cursor (AWS), of the destination (KL_ERR_CONFLICT: the lease was lost
 * to a newer owner, nothing of that chunk was written), and of the hooks.
 * Everything committed before an error stays committed with its checkpoint,
 * so running the task again later neither loses nor repeats a message. */
int kl_task_run(const struct kl_task_env *env, const struct kl_task_spec *spec,
                const struct kl_task_hooks *hooks, struct kl_task_result *result,
                struct kl_err *err);

#endif
