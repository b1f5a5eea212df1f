/*
 * What `serve` runs: the Kinesis connection, the state store (Redis or
 * in-process), the destination (PostgreSQL or SQLite), the load engine, and
 * the service facade of api/service.h over them. With main.c, the one place
 * that names concrete backends. HTTP itself is in http.c and api/.
 */
#include "server/engine_service.h"
#include "api/service.h"
#include "server/backends.h"
#include "server/cli.h"
#include "server/config.h"
#include "server/metrics.h"
#include "core/aws/creds.h"
#include "core/dest/dest.h"
#include "core/dest/pool.h"
#include "core/kinesis/conn.h"
#include "core/load/engine.h"
#include "core/util/buf.h"
#include "core/util/clock.h"
#include "core/util/err.h"
#include "core/util/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Destination connections the API and /readyz share (workers keep their own). */
#define POOL_MAX 4
#define POOL_WAIT_MS 5000
/* GET /jobs/{id}?wait= asks the store for the job's status this often: one
 * HMGET per waiting request and interval, against thousands a second the
 * store answers. */
#define JOB_WAIT_POLL_MS 150

struct rig {
    struct kl_backends b;
    struct kl_dest_pool *pool; /* connections for API calls and readiness */
    struct kl_service svc;
};

/* ---- the facade ---- */

static int svc_create_load(void *impl, const struct kl_load_params *p, const char *key,
                           struct kl_store_job *job, bool *existing, struct kl_err *err)
{
    struct rig *r = impl;
    char id[KL_STORE_JOB_ID_SIZE];
    struct kl_err sub;
    int rc = kl_engine_submit(r->b.engine, p, key, id, existing, err);

    if (rc == KL_OK || rc == KL_ERR_CONFLICT) {
        int got = kl_store_job_get(r->b.store, id, job, &sub);
        if (got != KL_OK && rc == KL_OK) {
            if (err != NULL)
                *err = sub;
            rc = got;
        }
    }
    return rc;
}

static int svc_get_job(void *impl, const char *id, struct kl_store_job *job, struct kl_err *err)
{
    struct rig *r = impl;
    return kl_store_job_get(r->b.store, id, job, err);
}

struct job_poll {
    struct kl_store *store;
    const char *id;
};

static int job_final(void *arg, bool *final, struct kl_err *err)
{
    const struct job_poll *p = arg;
    enum kl_store_job_status status;
    bool cancel_requested;
    int rc = kl_store_job_status(p->store, p->id, &status, &cancel_requested, err);

    if (rc == KL_OK)
        *final = kl_store_job_status_final(status);
    return rc;
}

static int svc_wait_job(void *impl, const char *id, int64_t timeout_ms, const atomic_bool *stop,
                        struct kl_store_job *job, struct kl_err *err)
{
    struct rig *r = impl;
    struct job_poll p = {r->b.store, id};
    int rc = kl_service_wait_final(kl_clock_system(), timeout_ms, JOB_WAIT_POLL_MS, stop, job_final,
                                   &p, err);

    if (rc == KL_OK)
        rc = kl_store_job_get(r->b.store, id, job, err);
    return rc;
}

static int svc_list_jobs(void *impl, const struct kl_store_job_filter *f,
                         struct kl_store_job_page *page, struct kl_err *err)
{
    struct rig *r = impl;
    return kl_store_job_list(r->b.store, f, page, err);
}

static int svc_cancel_job(void *impl, const char *id, struct kl_store_job *job, struct kl_err *err)
{
    struct rig *r = impl;
    struct kl_err sub;
    int rc = kl_store_job_cancel(r->b.store, id, NULL, err);

    if (rc == KL_OK || rc == KL_ERR_CONFLICT) {
        int got = kl_store_job_get(r->b.store, id, job, &sub);
        if (got != KL_OK && rc == KL_OK) {
            if (err != NULL)
                *err = sub;
            rc = got;
        }
    }
    return rc;
}

static int svc_list_streams(void *impl, struct kl_string_list *names, struct kl_err *err)
{
    struct rig *r = impl;
    return kl_kinesis_list_streams(r->b.conn.client, names, err);
}

static int svc_get_stream(void *impl, const char *stream, struct kl_stream_summary *summary,
                          struct kl_shard_list *shards, struct kl_err *err)
{
    struct rig *r = impl;
    int rc = kl_kinesis_describe_stream_summary(r->b.conn.client, stream, summary, err);
    if (rc == KL_OK)
        rc = kl_kinesis_list_shards(r->b.conn.client, stream, shards, err);
    return rc;
}

static int svc_get_state(void *impl, const char *stream, const char *pipeline, const char *dataset,
                         struct kl_dest_state *state, struct kl_err *err)
{
    struct rig *r = impl;
    struct kl_dest *d = NULL;
    int rc = kl_dest_pool_acquire(r->pool, POOL_WAIT_MS, &d, err);

    if (rc == KL_OK) {
        rc = kl_dest_read_state(d, dataset, pipeline, stream, state, err);
        kl_dest_pool_release(r->pool, d, rc == KL_ERR_UNAVAILABLE);
    }
    return rc;
}

static int svc_delete_state(void *impl, const char *stream, const char *pipeline,
                            const char *dataset, struct kl_err *err)
{
    struct rig *r = impl;
    struct kl_dest *d = NULL;
    char id[KL_STORE_JOB_ID_SIZE];
    bool active = false;
    int rc = kl_store_job_active(r->b.store, pipeline, stream, id, &active, err);

    if (rc != KL_OK)
        return rc;
    /* the checkpoints carry the fencing tokens: never while a job writes */
    if (active)
        return kl_err_set(err, KL_ERR_CONFLICT, "job %s of stream %s and pipeline %s is active", id,
                          stream, pipeline);
    rc = kl_dest_pool_acquire(r->pool, POOL_WAIT_MS, &d, err);
    if (rc == KL_OK) {
        rc = kl_dest_delete_state(d, dataset, pipeline, stream, err);
        kl_dest_pool_release(r->pool, d, rc == KL_ERR_UNAVAILABLE);
    }
    return rc;
}

static void svc_readiness(void *impl, struct kl_readiness *out)
{
    struct rig *r = impl;
    struct kl_aws_creds creds;
    struct kl_dest *d = NULL;
    struct kl_err err;
    int rc;

    rc = kl_store_ping(r->b.store, &err);
    kl_readiness_add(out, "store", rc == KL_OK, rc == KL_OK ? NULL : err.msg);
    rc = kl_dest_pool_acquire(r->pool, POOL_WAIT_MS, &d, &err);
    if (rc == KL_OK) {
        rc = kl_dest_ping(d, &err);
        kl_dest_pool_release(r->pool, d, rc != KL_OK);
    }
    kl_readiness_add(out, "destination", rc == KL_OK, rc == KL_OK ? NULL : err.msg);
    kl_aws_creds_init(&creds);
    rc = kl_cred_provider_resolve(r->b.conn.creds, &creds, &err);
    kl_aws_creds_free(&creds);
    kl_readiness_add(out, "credentials", rc == KL_OK, rc == KL_OK ? NULL : err.msg);
}

static int svc_metrics(void *impl, struct kl_buf *out, struct kl_err *err)
{
    struct rig *r = impl;
    struct kl_kinesis_stats ks;
    struct kl_store_stats ss = {0};
    struct kl_engine_stats es;
    struct kl_shard_lag *lags = NULL;
    struct kl_engine_metrics m = {&ks, &ss, &es, NULL, 0};
    struct kl_err store_err;
    int rc;

    kl_kinesis_stats(r->b.conn.client, &ks);
    if (kl_store_stats(r->b.store, &ss, &store_err) != KL_OK) {
        KL_WARN("metrics", NULL, "the state store did not answer: %s", store_err.msg);
        m.store = NULL;
    }
    kl_engine_stats(r->b.engine, &es);
    m.n_lags = kl_engine_shard_lags(r->b.engine, &lags);
    m.lags = lags;
    rc = kl_engine_metrics_render(&m, out, err);
    free(lags);
    return rc;
}

static const struct kl_service_ops engine_service_ops = {
    .create_load = svc_create_load,
    .get_job = svc_get_job,
    .wait_job = svc_wait_job,
    .list_jobs = svc_list_jobs,
    .cancel_job = svc_cancel_job,
    .list_streams = svc_list_streams,
    .get_stream = svc_get_stream,
    .get_state = svc_get_state,
    .delete_state = svc_delete_state,
    .readiness = svc_readiness,
    .metrics = svc_metrics,
};

/* ---- building it from the configuration ---- */

static void rig_free(struct rig *r)
{
    kl_dest_pool_destroy(r->pool);
    kl_backends_close(&r->b);
    memset(r, 0, sizeof *r);
}

static struct kl_service *rig_start(void *arg, const struct kl_config *cfg, struct kl_err *err)
{
    struct rig *r = arg;

    memset(r, 0, sizeof *r);
    if (kl_backends_open(&r->b, cfg, err) != KL_OK)
        goto fail;
    r->pool = kl_dest_pool_create(r->b.dests, POOL_MAX, err);
    if (r->pool == NULL)
        goto fail;
    r->svc.ops = &engine_service_ops;
    r->svc.impl = r;
    return &r->svc;

fail:
    rig_free(r);
    return NULL;
}

static void rig_drain(void *arg, int64_t budget_ms)
{
    struct rig *r = arg;
    (void)budget_ms; /* running tasks stop at their next chunk, well within it */
    kl_engine_stop(r->b.engine);
}

static void rig_destroy(void *arg)
{
    rig_free(arg);
}

const struct kl_serve_engine *kl_engine_serve_hooks(void)
{
    static struct rig rig;
    static const struct kl_serve_engine hooks = {rig_start, rig_drain, rig_destroy, &rig};
    return &hooks;
}
