/*
 * A job's life in the engine: submitting it, preparing a worker for it,
 * completing it when its last task is done (dlt's load and pipeline-state
 * rows), failing it, retrying its tasks, and the sweep that completes a job
 * whose last worker died in between.
 */
#include "core/load/engine_internal.h"
#include "core/dest/dest.h"
#include "core/normalize/naming.h"
#include "core/normalize/normalizer.h"
#include "core/normalize/schema.h"
#include "core/util/clock.h"
#include "core/util/err.h"
#include "core/util/log.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FINALIZE_TRIES 6 /* 250 ms, 500 ms, ... 4 s between them */

int kl_engine_submit(struct kl_engine *e, const struct kl_load_params *p,
                     const char *idempotency_key, char id_out[KL_STORE_JOB_ID_SIZE], bool *existing,
                     struct kl_err *err)
{
    struct kl_store_job_new j;
    cJSON *params = NULL;
    char *json = NULL;
    bool created = false;
    int rc = kl_load_params_validate(p, err);

    if (rc != KL_OK)
        return rc;
    params = kl_load_params_to_json(p);
    json = params != NULL ? cJSON_PrintUnformatted(params) : NULL;
    if (json == NULL) {
        rc = kl_err_set(err, KL_ERR_NOMEM, "out of memory");
        goto cleanup;
    }
    memset(&j, 0, sizeof j);
    j.stream = p->stream;
    j.pipeline_name = p->pipeline_name;
    j.dataset_name = p->dataset_name;
    j.parameters_json = json;
    j.idempotency_key = idempotency_key;
    rc = kl_store_job_create(e->cfg.store, &j, id_out, existing, err);
    if (rc != KL_OK || *existing)
        goto cleanup;
    rc = kl_store_task_enqueue(e->cfg.store, id_out, KL_ENGINE_PLAN_TASK, NULL, 0, &created, err);

cleanup:
    free(json);
    cJSON_Delete(params);
    return rc;
}

int kl_engine_wait(struct kl_engine *e, const char *job_id, int64_t timeout_ms,
                   struct kl_store_job *out, struct kl_err *err)
{
    const struct kl_clock *clock = kl_engine_clock(e);
    int64_t deadline = kl_clock_monotonic_ms(clock) + timeout_ms;

    for (;;) {
        int rc = kl_store_job_get(e->cfg.store, job_id, out, err);
        if (rc != KL_OK && rc != KL_ERR_UNAVAILABLE)
            return rc;
        if (rc == KL_OK && kl_store_job_status_final(out->status))
            return KL_OK;
        if (kl_clock_monotonic_ms(clock) > deadline)
            return kl_err_set(err, KL_ERR_UNAVAILABLE, "job %s is not finished after %lld ms",
                              job_id, (long long)timeout_ms);
        kl_clock_sleep_ms(clock, 100);
    }
}

void kl_job_fail(struct kl_worker *w, const char *job_id, const char *shard,
                 const struct kl_err *why)
{
    struct kl_store_job_error e = {kl_err_code_name(why->code), why->msg, shard};
    struct kl_log_ctx ctx = {job_id, w->params.stream, shard};
    struct kl_err err;

    KL_ERROR("engine", &ctx, "job failed: %s", why->msg);
    if (kl_store_job_transition(kl_worker_store(w), job_id, KL_STORE_JOB_FAILED, &e, NULL, &err) !=
        KL_OK)
        KL_WARN("engine", &ctx, "recording the failure: %s", err.msg);
}

static int ensure_dest(struct kl_worker *w, struct kl_err *err)
{
    if (w->dest != NULL)
        return KL_OK;
    return kl_dest_factory_open(w->e->cfg.dests, &w->dest, err);
}

/* The job's parameters and a normaliser with the dataset's stored schema. */
int kl_job_prepare(struct kl_worker *w, const struct kl_store_job *job, struct kl_err *err)
{
    struct kl_normalizer_options no;
    struct kl_schema *schema = NULL;
    char *json = NULL;
    int64_t version = -1;
    int rc;

    if (strcmp(w->job_id, job->id) == 0 && w->norm != NULL)
        return KL_OK;
    w->windows_closed = 0;
    kl_normalizer_destroy(w->norm);
    w->norm = NULL;
    w->job_id[0] = '\0';
    snprintf(w->params.stream, sizeof w->params.stream, "%s", job->stream);
    rc = kl_load_params_from_json(job->parameters ? job->parameters : "{}", &w->params, err);
    if (rc != KL_OK)
        return rc;
    /* dlt's load id: the job's creation time in seconds with microseconds */
    kl_load_window_id(&w->params, job->created_ms, 0, w->load_id);
    /* the same bound for every shard and worker: the job's created_at */
    w->job_created_ms = job->created_ms;
    rc = ensure_dest(w, err);
    if (rc != KL_OK)
        return rc;
    rc = kl_dest_load_schema(w->dest, w->params.dataset_name, KL_SCHEMA_NAME, &json, &version, err);
    if (rc != KL_OK)
        return rc;
    if (json != NULL) {
        rc = kl_schema_from_json(json, strlen(json), &schema, err);
        free(json);
        if (rc != KL_OK)
            return rc;
    }
    memset(&no, 0, sizeof no);
    no.stream_name = w->params.stream;
    no.table_name = w->params.table_name[0] ? w->params.table_name : NULL;
    no.parse_json = w->params.parse_json;
    no.load_id = w->load_id;
    no.write_disposition = w->params.write_disposition;
    no.chunk_bytes_target = w->e->rows_target;
    w->norm = kl_normalizer_create(&no, schema, err);
    if (w->norm == NULL)
        return err != NULL ? (int)err->code : KL_ERR_NOMEM;
    w->schema_written = schema != NULL ? version : -1;
    snprintf(w->job_id, sizeof w->job_id, "%s", job->id);
    return KL_OK;
}

int kl_job_close_windows(struct kl_worker *w, int64_t from, int64_t to, struct kl_err *err)
{
    struct kl_load_complete c;
    char id[KL_LOAD_ID_MAX];
    int rc = KL_OK;

    if (from < w->windows_closed)
        from = w->windows_closed;
    for (int64_t k = from; k < to && rc == KL_OK; k++) {
        kl_load_window_id(&w->params, w->job_created_ms, k, id);
        memset(&c, 0, sizeof c);
        c.load_id = id;
        c.schema_name = KL_SCHEMA_NAME;
        c.pipeline_name = w->params.pipeline_name;
        c.stream_name = w->params.stream;
        c.disposition = w->params.write_disposition;
        c.next_run_ms = -1;
        rc = kl_dest_complete_load(w->dest, w->params.dataset_name, &c, err);
        if (rc == KL_OK) {
            struct kl_log_ctx ctx = {w->job_id, w->params.stream, NULL};
            KL_INFO("engine", &ctx, "load window %lld closed: load %s", (long long)k, id);
            w->windows_closed = k + 1;
        }
    }
    return rc;
}

/* Completes a job whose tasks are all done: dlt's load and pipeline-state
 * rows and the next run time in the destination, then succeeded (or
 * cancelled when a cancel was asked for). Every step is idempotent, so a
 * retry, or a second replica doing the same, is harmless. */
/* The job's parameters say it follows the stream (they were checked at
 * submit; unreadable ones are a batch job's). */
static bool continuous_job(const struct kl_store_job *job)
{
    struct kl_load_params p;
    struct kl_err err;
    memset(&p, 0, sizeof p);
    snprintf(p.stream, sizeof p.stream, "%s", job->stream);
    return job->parameters != NULL &&
           kl_load_params_from_json(job->parameters, &p, &err) == KL_OK && p.continuous;
}

static int complete_job(struct kl_worker *w, const char *job_id, struct kl_err *err)
{
    struct kl_store_job job;
    struct kl_load_complete c;
    struct kl_log_ctx ctx = {job_id, w->params.stream, NULL};
    char root[KL_NAME_CAP];
    size_t root_len = 0;
    int rc;

    kl_store_job_init(&job);
    rc = kl_store_job_get(kl_worker_store(w), job_id, &job, err);
    if (rc != KL_OK || kl_store_job_status_final(job.status))
        goto cleanup;
    if (job.cancel_requested && !continuous_job(&job)) {
        rc = kl_store_job_transition(kl_worker_store(w), job_id, KL_STORE_JOB_CANCELLED, NULL, NULL,
                                     err);
        goto cleanup;
    }
    /* A continuous load ends by cancel: what it committed is a whole dlt
     * load all the same, so its _dlt_loads row is written before it ends. */
    rc = kl_job_prepare(w, &job, err);
    if (rc != KL_OK)
        goto cleanup;
    memset(&c, 0, sizeof c);
    c.load_id = w->load_id;
    if (w->params.continuous) {
        /* every window before the one it ends in; that one is the load below */
        int64_t k =
            kl_load_window_at(&w->params, job.created_ms, kl_clock_wall_ms(kl_engine_clock(w->e)));
        rc = kl_job_close_windows(w, 0, k, err);
        if (rc != KL_OK)
            goto cleanup;
        kl_load_window_id(&w->params, job.created_ms, k, w->load_id);
    }
    c.schema_name = KL_SCHEMA_NAME;
    c.pipeline_name = w->params.pipeline_name;
    c.stream_name = w->params.stream;
    c.disposition = w->params.write_disposition;
    /* dlt: the next run starts new shards at this run's start minus 1 s */
    c.next_run_ms = (job.started_ms >= 0 ? job.started_ms : job.created_ms) - 1000;
    if (w->params.write_disposition == KL_WRITE_REPLACE) {
        const char *name = w->params.table_name[0] ? w->params.table_name : w->params.stream;
        rc = kl_naming_normalize_identifier(name, strlen(name), KL_NAMING_MAX_LENGTH, root,
                                            &root_len);
        if (rc != KL_OK) {
            kl_err_set(err, (enum kl_err_code)rc, "the root table name of '%s'", name);
            goto cleanup;
        }
        c.root_table = root;
    }
    rc = kl_dest_complete_load(w->dest, w->params.dataset_name, &c, err);
    if (rc == KL_OK)
        rc = kl_store_job_transition(kl_worker_store(w), job_id,
                                     job.cancel_requested ? KL_STORE_JOB_CANCELLED
                                                          : KL_STORE_JOB_SUCCEEDED,
                                     NULL, NULL, err);
    if (rc == KL_OK)
        KL_INFO("engine", &ctx, "job %s: %lld messages, %lld dead letters",
                job.cancel_requested ? "cancelled" : "succeeded", (long long)job.messages,
                (long long)job.dead_letters);
cleanup:
    kl_store_job_free(&job);
    return rc;
}

/* The last task of a job finished: complete it, retrying while the store or
 * the destination is briefly away. A job still running after that is found
 * again by the sweep (sweep_main). */
static void finalize(struct kl_worker *w, const char *job_id)
{
    struct kl_log_ctx ctx = {job_id, w->params.stream, NULL};
    struct kl_err err;
    int rc;

    for (int n = 1;; n++) {
        rc = complete_job(w, job_id, &err);
        if (rc == KL_OK || !kl_err_retryable((enum kl_err_code)rc) || n >= FINALIZE_TRIES ||
            atomic_load(&w->e->stopping))
            break;
        KL_WARN("engine", &ctx, "completing the job (try %d of %d), retrying: %s", n,
                FINALIZE_TRIES, err.msg);
        kl_clock_sleep_ms(kl_engine_clock(w->e), (int64_t)250 << (n - 1));
    }
    if (rc == KL_ERR_NOT_FOUND)
        KL_WARN("engine", &ctx, "the job is gone from the state store: %s", err.msg);
    else if (rc != KL_OK && !kl_err_retryable((enum kl_err_code)rc))
        kl_job_fail(w, job_id, NULL, &err);
    else if (rc != KL_OK)
        KL_WARN("engine", &ctx, "completing the job: %s (the sweep tries again)", err.msg);
}

/* Acks a task and completes the job when it was the last one. */
void kl_job_task_done(struct kl_worker *w, const struct kl_store_task *t)
{
    struct kl_store_task_ack ack;
    struct kl_err err;
    struct kl_log_ctx ctx = {t->job_id, w->params.stream, t->shard_id};

    if (kl_store_task_ack(kl_worker_store(w), t, &ack, &err) != KL_OK) {
        KL_WARN("engine", &ctx, "ack: %s", err.msg);
        return;
    }
    if (ack.last)
        finalize(w, t->job_id);
}

/* A retryable failure: try again later, or fail the job after enough tries. */
void kl_job_task_retry(struct kl_worker *w, const struct kl_store_task *t, const struct kl_err *why)
{
    struct kl_log_ctx ctx = {t->job_id, w->params.stream, t->shard_id};
    struct kl_err err;
    int attempts = w->e->cfg.task_attempts;

    if (t->attempt + 1 >= attempts) {
        atomic_fetch_add(&w->e->task_failures, 1);
        kl_job_fail(w, t->job_id, t->shard_id, why);
        kl_job_task_done(w, t);
        return;
    }
    atomic_fetch_add(&w->e->task_retries, 1);
    KL_WARN("engine", &ctx, "task attempt %d failed, retrying: %s", t->attempt + 1, why->msg);
    if (kl_store_task_nack(kl_worker_store(w), t,
                           KL_ENGINE_RETRY_DELAY_MS << (t->attempt < 5 ? t->attempt : 5),
                           &err) != KL_OK)
        KL_WARN("engine", &ctx, "nack: %s", err.msg);
}

/* ---- the sweep ---- */

#define SWEEP_SEEN_MAX 1024

/* Running jobs whose tasks are all done, in ids[]. */
struct sweep_seen {
    char ids[SWEEP_SEEN_MAX][KL_STORE_JOB_ID_SIZE];
    size_t n;
};

static bool seen_has(const struct sweep_seen *s, const char *id)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->ids[i], id) == 0)
            return true;
    return false;
}

/* One sweep: a running job whose tasks were all done at the last sweep too
 * was left behind (its last worker died between the ack and completing it,
 * or the store or the destination stayed away longer than finalize's
 * retries): complete it. Two sweeps apart, so a finalize in progress is
 * not raced. */
static void sweep_once(struct kl_worker *w, struct sweep_seen *prev, struct sweep_seen *now)
{
    struct kl_store_job_filter f;
    struct kl_store_job_page page = {0};
    char cursor[KL_STORE_JOB_ID_SIZE] = "";
    struct kl_err err;

    now->n = 0;
    memset(&f, 0, sizeof f);
    f.has_status = true;
    f.status = KL_STORE_JOB_RUNNING;
    f.limit = KL_STORE_LIST_MAX;
    do {
        f.cursor = cursor[0] ? cursor : NULL;
        if (kl_store_job_list(kl_worker_store(w), &f, &page, &err) != KL_OK) {
            KL_WARN("engine", NULL, "sweep: listing running jobs: %s", err.msg);
            break;
        }
        for (size_t i = 0; i < page.n_jobs && !atomic_load(&w->e->stopping); i++) {
            const struct kl_store_job *j = &page.jobs[i];
            if (j->tasks_total == 0 || j->tasks_done < j->tasks_total)
                continue;
            if (seen_has(prev, j->id)) {
                struct kl_log_ctx ctx = {j->id, j->stream, NULL};
                KL_WARN("engine", &ctx,
                        "sweep: every task is done but the job is still "
                        "running: completing it");
                finalize(w, j->id);
            } else if (now->n < SWEEP_SEEN_MAX) {
                snprintf(now->ids[now->n++], KL_STORE_JOB_ID_SIZE, "%s", j->id);
            }
        }
        snprintf(cursor, sizeof cursor, "%s", page.next_cursor);
    } while (cursor[0] != '\0' && !atomic_load(&w->e->stopping));
    kl_store_job_page_free(&page);
}

/* Every declared continuous load has an active job: submitted when its
 * stream and pipeline have none (after the state store lost it, or a
 * cancel), left alone when they have one. Idempotent across replicas: the
 * store admits one active job per stream and pipeline. */
static void ensure_continuous(struct kl_worker *w)
{
    const struct kl_engine_config *cfg = &w->e->cfg;

    for (size_t i = 0; i < cfg->n_continuous_loads && !atomic_load(&w->e->stopping); i++) {
        const struct kl_load_params *p = &cfg->continuous_loads[i];
        struct kl_log_ctx ctx = {NULL, p->stream, NULL};
        char id[KL_STORE_JOB_ID_SIZE];
        bool existing = false;
        struct kl_err err;
        int rc = kl_engine_submit(w->e, p, NULL, id, &existing, &err);

        if (rc == KL_OK && !existing) {
            ctx.job_id = id;
            KL_INFO("engine", &ctx, "continuous load of pipeline %s into dataset %s started",
                    p->pipeline_name, p->dataset_name);
        } else if (rc != KL_OK && rc != KL_ERR_CONFLICT) {
            KL_WARN("engine", &ctx,
                    "continuous load of pipeline %s: cannot submit it (trying again at the "
                    "next sweep): %s",
                    p->pipeline_name, err.msg);
        }
    }
}

void *kl_job_sweep_main(void *arg)
{
    struct kl_worker *w = arg;
    struct kl_engine *e = w->e;
    struct sweep_seen *seen = calloc(2, sizeof *seen);
    int64_t next = kl_clock_monotonic_ms(kl_engine_clock(e)) + e->cfg.sweep_interval_ms;
    int cur = 0;

    if (seen != NULL)
        ensure_continuous(w);
    while (seen != NULL && !atomic_load(&e->stopping)) {
        if (kl_clock_monotonic_ms(kl_engine_clock(e)) < next) {
            kl_clock_sleep_ms(kl_engine_clock(e), 100);
            continue;
        }
        ensure_continuous(w);
        sweep_once(w, &seen[cur], &seen[1 - cur]);
        cur = 1 - cur;
        next = kl_clock_monotonic_ms(kl_engine_clock(e)) + e->cfg.sweep_interval_ms;
    }
    free(seen);
    kl_worker_free(w);
    return NULL;
}
