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
#include "core/util/err.h"
#include "core/util/log.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Destination connections the API and /readyz share (workers keep their own). */
#define POOL_MAX 4
#define POOL_WAIT_MS 5000

struct rig {
    struct kl_backends b;
    struct kl_dest_pool *pool; /* connections for API calls and readiness */
    struct kl_service svc;
};

/* ---- the facade ---- */

static int job_doc(struct rig *r, const char *id, cJSON **out, struct kl_err *err)
{
    struct kl_store_job job;
    int rc;

    kl_store_job_init(&job);
    rc = kl_store_job_get(r->b.store, id, &job, err);
    if (rc == KL_OK) {
        *out = kl_job_document(&job);
        if (*out == NULL)
            rc = kl_err_set(err, KL_ERR_NOMEM, "out of memory");
    }
    kl_store_job_free(&job);
    return rc;
}

static int svc_create_load(void *impl, const struct kl_load_params *p, const char *key, cJSON **job,
                           bool *existing, struct kl_err *err)
{
    struct rig *r = impl;
    char id[KL_STORE_JOB_ID_SIZE];
    struct kl_err sub;
    int rc = kl_engine_submit(r->b.engine, p, key, id, existing, err);

    if (rc == KL_OK || rc == KL_ERR_CONFLICT) {
        int got = job_doc(r, id, job, &sub);
        if (got != KL_OK && rc == KL_OK) {
            if (err != NULL)
                *err = sub;
            rc = got;
        }
    }
    return rc;
}

static int svc_get_job(void *impl, const char *id, cJSON **job, struct kl_err *err)
{
    return job_doc(impl, id, job, err);
}

static int svc_list_jobs(void *impl, const char *stream, const char *status, int limit,
                         const char *cursor, cJSON **page, struct kl_err *err)
{
    struct rig *r = impl;
    struct kl_store_job_filter f;
    struct kl_store_job_page pg = {0};
    cJSON *doc = NULL, *jobs;
    int rc;

    memset(&f, 0, sizeof f);
    f.stream = stream;
    f.limit = limit;
    f.cursor = cursor;
    if (status != NULL) {
        if (kl_store_job_status_parse(status, &f.status) != 0)
            return kl_err_set(err, KL_ERR_INVALID, "status: unknown job status '%.32s'", status);
        f.has_status = true;
    }
    rc = kl_store_job_list(r->b.store, &f, &pg, err);
    if (rc != KL_OK)
        return rc;
    doc = cJSON_CreateObject();
    jobs = doc ? cJSON_AddArrayToObject(doc, "jobs") : NULL;
    for (size_t i = 0; jobs != NULL && i < pg.n_jobs; i++) {
        cJSON *j = kl_job_document(&pg.jobs[i]);
        if (j == NULL || !cJSON_AddItemToArray(jobs, j)) {
            cJSON_Delete(j);
            jobs = NULL;
        }
    }
    if (jobs == NULL ||
        (pg.next_cursor[0] ? cJSON_AddStringToObject(doc, "next_cursor", pg.next_cursor)
                           : cJSON_AddNullToObject(doc, "next_cursor")) == NULL) {
        cJSON_Delete(doc);
        rc = kl_err_set(err, KL_ERR_NOMEM, "out of memory");
    } else {
        *page = doc;
    }
    kl_store_job_page_free(&pg);
    return rc;
}

static int svc_cancel_job(void *impl, const char *id, cJSON **job, struct kl_err *err)
{
    struct rig *r = impl;
    struct kl_err sub;
    int rc = kl_store_job_cancel(r->b.store, id, NULL, err);

    if (rc == KL_OK || rc == KL_ERR_CONFLICT) {
        int got = job_doc(r, id, job, &sub);
        if (got != KL_OK && rc == KL_OK) {
            if (err != NULL)
                *err = sub;
            rc = got;
        }
    }
    return rc;
}

static int svc_list_streams(void *impl, cJSON **doc, struct kl_err *err)
{
    struct rig *r = impl;
    struct kl_string_list names = {0};
    cJSON *o, *arr;
    int rc = kl_kinesis_list_streams(r->b.conn.client, &names, err);

    if (rc != KL_OK)
        return rc;
    o = cJSON_CreateObject();
    arr = o ? cJSON_AddArrayToObject(o, "streams") : NULL;
    for (size_t i = 0; arr != NULL && i < names.n; i++) {
        cJSON *s = cJSON_CreateString(names.items[i]);
        if (s == NULL || !cJSON_AddItemToArray(arr, s)) {
            cJSON_Delete(s);
            arr = NULL;
        }
    }
    kl_string_list_free(&names);
    if (arr == NULL) {
        cJSON_Delete(o);
        return kl_err_set(err, KL_ERR_NOMEM, "out of memory");
    }
    *doc = o;
    return KL_OK;
}

static cJSON *str_or_null(const char *s)
{
    return s[0] ? cJSON_CreateString(s) : cJSON_CreateNull();
}

static bool put(cJSON *o, const char *key, cJSON *v)
{
    if (v == NULL || !cJSON_AddItemToObject(o, key, v)) {
        cJSON_Delete(v);
        return false;
    }
    return true;
}

static int svc_get_stream(void *impl, const char *stream, cJSON **doc, struct kl_err *err)
{
    struct rig *r = impl;
    struct kl_stream_summary sum;
    struct kl_shard_list shards = {0};
    cJSON *o = NULL, *arr;
    bool ok;
    int rc = kl_kinesis_describe_stream_summary(r->b.conn.client, stream, &sum, err);

    if (rc == KL_OK)
        rc = kl_kinesis_list_shards(r->b.conn.client, stream, &shards, err);
    if (rc != KL_OK)
        goto cleanup;
    o = cJSON_CreateObject();
    ok = o != NULL && cJSON_AddStringToObject(o, "name", sum.name) != NULL &&
         cJSON_AddStringToObject(o, "arn", sum.arn) != NULL &&
         cJSON_AddStringToObject(o, "status", sum.status) != NULL &&
         cJSON_AddNumberToObject(o, "retention_period_hours", sum.retention_hours) != NULL &&
         cJSON_AddNumberToObject(o, "open_shard_count", sum.open_shard_count) != NULL;
    arr = ok ? cJSON_AddArrayToObject(o, "shards") : NULL;
    for (size_t i = 0; arr != NULL && i < shards.n; i++) {
        const struct kl_shard *s = &shards.shards[i];
        cJSON *x = cJSON_CreateObject();
        if (x == NULL || !cJSON_AddItemToArray(arr, x) ||
            cJSON_AddStringToObject(x, "shard_id", s->id) == NULL ||
            !put(x, "parent_shard_id", str_or_null(s->parent_id)) ||
            !put(x, "adjacent_parent_shard_id", str_or_null(s->adjacent_parent_id)) ||
            cJSON_AddStringToObject(x, "starting_hash_key", s->starting_hash_key) == NULL ||
            cJSON_AddStringToObject(x, "ending_hash_key", s->ending_hash_key) == NULL ||
            cJSON_AddStringToObject(x, "starting_sequence_number", s->starting_seq) == NULL ||
            !put(x, "ending_sequence_number", str_or_null(s->ending_seq)) ||
            cJSON_AddBoolToObject(x, "closed", s->ending_seq[0] != '\0') == NULL)
            arr = NULL;
    }
    if (arr == NULL) {
        rc = kl_err_set(err, KL_ERR_NOMEM, "out of memory");
        goto cleanup;
    }
    *doc = o;
    o = NULL;

cleanup:
    cJSON_Delete(o);
    kl_shard_list_free(&shards);
    return rc;
}

static int svc_get_state(void *impl, const char *stream, const char *pipeline, const char *dataset,
                         cJSON **doc, struct kl_err *err)
{
    struct rig *r = impl;
    struct kl_dest *d = NULL;
    struct kl_dest_state st;
    cJSON *o = NULL, *arr;
    char ts[32];
    int rc;

    kl_dest_state_init(&st);
    rc = kl_dest_pool_acquire(r->pool, POOL_WAIT_MS, &d, err);
    if (rc == KL_OK) {
        rc = kl_dest_read_state(d, dataset, pipeline, stream, &st, err);
        kl_dest_pool_release(r->pool, d, rc == KL_ERR_UNAVAILABLE);
    }
    if (rc != KL_OK)
        goto cleanup;
    o = cJSON_CreateObject();
    arr = o != NULL && cJSON_AddStringToObject(o, "stream", stream) != NULL &&
                  cJSON_AddStringToObject(o, "pipeline_name", pipeline) != NULL &&
                  cJSON_AddStringToObject(o, "dataset_name", dataset) != NULL
              ? cJSON_AddArrayToObject(o, "shards")
              : NULL;
    if (arr != NULL) {
        if (st.has_last_run) {
            kl_format_timestamp(st.last_run_ms, ts);
            if (cJSON_AddStringToObject(o, "last_run", ts) == NULL)
                arr = NULL;
        } else if (cJSON_AddNullToObject(o, "last_run") == NULL) {
            arr = NULL;
        }
    }
    for (size_t i = 0; arr != NULL && i < st.n_checkpoints; i++) {
        const struct kl_checkpoint *c = &st.checkpoints[i];
        cJSON *x;
        /* left out: a shard claimed by a worker that committed nothing yet
         * has only a token, and the document lists positions */
        if (c->position.sequence[0] == '\0')
            continue;
        x = cJSON_CreateObject();
        kl_format_timestamp(c->updated_ms, ts);
        if (x == NULL || !cJSON_AddItemToArray(arr, x) ||
            cJSON_AddStringToObject(x, "shard_id", c->position.shard_id) == NULL ||
            cJSON_AddStringToObject(x, "sequence", c->position.sequence) == NULL ||
            !put(x, "sub_sequence",
                 c->position.sub_sequence >= 0
                     ? cJSON_CreateNumber((double)c->position.sub_sequence)
                     : cJSON_CreateNull()) ||
            cJSON_AddNumberToObject(x, "fencing_token", (double)c->fencing_token) == NULL ||
            cJSON_AddStringToObject(x, "updated_at", ts) == NULL)
            arr = NULL;
    }
    if (arr == NULL) {
        rc = kl_err_set(err, KL_ERR_NOMEM, "out of memory");
        goto cleanup;
    }
    *doc = o;
    o = NULL;

cleanup:
    cJSON_Delete(o);
    kl_dest_state_free(&st);
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

static bool check(cJSON *checks, const char *name, int rc, const struct kl_err *err)
{
    cJSON *c = cJSON_AddObjectToObject(checks, name);
    if (c == NULL)
        return false;
    cJSON_AddBoolToObject(c, "ok", rc == KL_OK);
    if (rc != KL_OK)
        cJSON_AddStringToObject(c, "detail", err->msg);
    return rc == KL_OK;
}

static bool svc_readiness(void *impl, cJSON **doc)
{
    struct rig *r = impl;
    struct kl_aws_creds creds;
    struct kl_dest *d = NULL;
    struct kl_err err;
    cJSON *o = cJSON_CreateObject(), *checks;
    bool ready = true;
    int rc;

    checks = o ? cJSON_AddObjectToObject(o, "checks") : NULL;
    if (checks == NULL) {
        cJSON_Delete(o);
        *doc = NULL;
        return false;
    }
    rc = kl_store_ping(r->b.store, &err);
    ready = check(checks, "store", rc, &err) && ready;
    rc = kl_dest_pool_acquire(r->pool, POOL_WAIT_MS, &d, &err);
    if (rc == KL_OK) {
        rc = kl_dest_ping(d, &err);
        kl_dest_pool_release(r->pool, d, rc != KL_OK);
    }
    ready = check(checks, "destination", rc, &err) && ready;
    kl_aws_creds_init(&creds);
    rc = kl_cred_provider_resolve(r->b.conn.creds, &creds, &err);
    kl_aws_creds_free(&creds);
    ready = check(checks, "credentials", rc, &err) && ready;
    cJSON_AddStringToObject(o, "status", ready ? "ready" : "not_ready");
    *doc = o;
    return ready;
}

static int svc_metrics(void *impl, struct kl_buf *out, struct kl_err *err)
{
    struct rig *r = impl;
    struct kl_kinesis_stats ks;
    struct kl_store_stats ss = {0};
    struct kl_engine_stats es;
    struct kl_engine_shard_lag *lags = NULL;
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
