/*
 * What the REST handlers ask of the engine. An ops table, so handlers are
 * tested against a fake and the process (server/main.c) plugs in the real
 * engine. Documents come back as cJSON trees already shaped as openapi.yaml
 * says (Job, JobList, Stream, StreamState, Readiness): the same job document
 * is printed by `kinesis-loader load`, so its shape belongs to the engine,
 * not to HTTP. Error codes map to HTTP statuses in api/problem.c.
 */
#ifndef KL_API_SERVICE_H
#define KL_API_SERVICE_H

#include <stdbool.h>

#include "core/load/params.h"

struct cJSON;
struct kl_buf;
struct kl_err;

struct kl_service_ops {
    /* Queues a load job. On KL_OK `*job` is the new job, or the earlier job of
     * the same Idempotency-Key (then `*existing` is true). KL_ERR_CONFLICT: a
     * job for the stream and pipeline is queued or running; `*job` is that job. */
    int (*create_load)(void *impl, const struct kl_load_params *p, const char *idempotency_key,
                       struct cJSON **job, bool *existing, struct kl_err *err);
    /* KL_ERR_NOT_FOUND for an unknown id. */
    int (*get_job)(void *impl, const char *id, struct cJSON **job, struct kl_err *err);
    /* `stream`, `status` and `cursor` may be NULL; `*page` is a JobList. */
    int (*list_jobs)(void *impl, const char *stream, const char *status, int limit,
                     const char *cursor, struct cJSON **page, struct kl_err *err);
    /* KL_ERR_CONFLICT when the job already succeeded or failed (`*job` is set). */
    int (*cancel_job)(void *impl, const char *id, struct cJSON **job, struct kl_err *err);
    /* `*doc` is {"streams": [names]}. */
    int (*list_streams)(void *impl, struct cJSON **doc, struct kl_err *err);
    /* `*doc` is a Stream; KL_ERR_NOT_FOUND for an unknown stream. */
    int (*get_stream)(void *impl, const char *stream, struct cJSON **doc, struct kl_err *err);
    /* `*doc` is a StreamState. */
    int (*get_state)(void *impl, const char *stream, const char *pipeline, const char *dataset,
                     struct cJSON **doc, struct kl_err *err);
    /* KL_ERR_CONFLICT while a job for the stream and pipeline is active. */
    int (*delete_state)(void *impl, const char *stream, const char *pipeline,
                        const char *dataset, struct kl_err *err);
    /* Checks store, destination and credentials; `*doc` is a Readiness.
     * Returns true when everything is ready. */
    bool (*readiness)(void *impl, struct cJSON **doc);
    /* Appends the engine's metrics in Prometheus text format (jobs by
     * status, messages and rows loaded, dead letters, per-shard
     * MillisBehindLatest, Kinesis requests/retries/throttles). */
    int (*metrics)(void *impl, struct kl_buf *out, struct kl_err *err);
};

struct kl_service {
    const struct kl_service_ops *ops;
    void *impl;
};

#endif
