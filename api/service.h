/*
 * What the REST handlers ask of the engine. An ops table, so handlers are
 * tested against a fake and the process (server/engine_service.c) plugs in
 * the real engine. Results come back typed (the store's jobs, Kinesis'
 * stream and shards, the destination's state); api/documents.c shapes them
 * as openapi.yaml says. Error codes map to HTTP statuses in api/problem.c.
 * Every out-parameter is initialised by the caller (kl_store_job_init, {0}
 * for the lists, kl_dest_state_init) and freed by the caller, also on error.
 */
#ifndef KL_API_SERVICE_H
#define KL_API_SERVICE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "api/documents.h"
#include "core/load/params.h"

struct kl_buf;
struct kl_clock;
struct kl_err;

struct kl_service_ops {
    /* Queues a load job. On KL_OK `*job` is the new job, or the earlier job of
     * the same Idempotency-Key (then `*existing` is true). KL_ERR_CONFLICT: a
     * job for the stream and pipeline is queued or running; `*job` is that
     * job when it could be read (its id is "" otherwise). */
    int (*create_load)(void *impl, const struct kl_load_params *p, const char *idempotency_key,
                       struct kl_store_job *job, bool *existing, struct kl_err *err);
    /* KL_ERR_NOT_FOUND for an unknown id. */
    int (*get_job)(void *impl, const char *id, struct kl_store_job *job, struct kl_err *err);
    /* get_job once the job is final, `timeout_ms` (> 0) has passed or `*stop`
     * (NULL: never) is set, whichever comes first: a job that is final or
     * unknown (KL_ERR_NOT_FOUND) is answered at once. An error while waiting
     * ends the wait with that error. Blocks the calling thread. */
    int (*wait_job)(void *impl, const char *id, int64_t timeout_ms, const atomic_bool *stop,
                    struct kl_store_job *job, struct kl_err *err);
    /* A page of jobs, newest first. */
    int (*list_jobs)(void *impl, const struct kl_store_job_filter *f,
                     struct kl_store_job_page *page, struct kl_err *err);
    /* KL_ERR_CONFLICT when the job already succeeded or failed (`*job` is set). */
    int (*cancel_job)(void *impl, const char *id, struct kl_store_job *job, struct kl_err *err);
    int (*list_streams)(void *impl, struct kl_string_list *names, struct kl_err *err);
    /* KL_ERR_NOT_FOUND for an unknown stream. */
    int (*get_stream)(void *impl, const char *stream, struct kl_stream_summary *summary,
                      struct kl_shard_list *shards, struct kl_err *err);
    /* The checkpoints and last run the destination holds. */
    int (*get_state)(void *impl, const char *stream, const char *pipeline, const char *dataset,
                     struct kl_dest_state *state, struct kl_err *err);
    /* KL_ERR_CONFLICT while a job for the stream and pipeline is active. */
    int (*delete_state)(void *impl, const char *stream, const char *pipeline, const char *dataset,
                        struct kl_err *err);
    /* Checks store, destination and credentials into `*out` (empty on entry). */
    void (*readiness)(void *impl, struct kl_readiness *out);
    /* Appends the engine's metrics in Prometheus text format (jobs by
     * status, messages and rows loaded, dead letters, per-shard
     * MillisBehindLatest, Kinesis requests/retries/throttles). */
    int (*metrics)(void *impl, struct kl_buf *out, struct kl_err *err);
};

struct kl_service {
    const struct kl_service_ops *ops;
    void *impl;
};

/* Asks whether the job is final; an error ends the wait (KL_ERR_NOT_FOUND too). */
typedef int (*kl_service_final_fn)(void *arg, bool *final, struct kl_err *err);

/* The wait of wait_job, for its implementations: calls `is_final` at once,
 * then every `interval_ms` until it says final, `timeout_ms` has passed or
 * `*stop` (NULL: never) is set. KL_OK then; else the first error of
 * `is_final`. The caller reads the job afterwards. */
int kl_service_wait_final(const struct kl_clock *clock, int64_t timeout_ms, int64_t interval_ms,
                          const atomic_bool *stop, kl_service_final_fn is_final, void *arg,
                          struct kl_err *err);

#endif
