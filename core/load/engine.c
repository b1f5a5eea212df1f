/*
 * The load engine (see engine.h): worker threads over the store's task
 * queue. A worker keeps its own destination connection and, per job, its own
 * normaliser; everything shared goes through the store.
 */
#include "core/load/engine.h"
#include "core/dest/dest.h"
#include "core/kinesis/lineage.h"
#include "core/load/task.h"
#include "core/normalize/naming.h"
#include "core/normalize/normalizer.h"
#include "core/normalize/schema.h"
#include "core/util/clock.h"
#include "core/util/err.h"
#include "core/util/log.h"

#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PLAN_TASK "@plan"
#define MAX_WORKERS 256

#define RETRY_DELAY_MS 1000
#define FINALIZE_TRIES 6        /* 250 ms, 500 ms, ... 4 s between them */
#define WAIT_SHOW_AFTER_MS 5000 /* a Kinesis call slower than this shows in the job */

struct lag {
    struct kl_engine_shard_lag l;
    int64_t seen_ms; /* monotonic */
};

struct kl_engine {
    struct kl_engine_config cfg;
    char owner[KL_STORE_OWNER_MAX];
    pthread_t threads[MAX_WORKERS];
    int n_threads;
    pthread_t sweeper;
    bool sweeping;
    atomic_bool stopping;
    /* counters for kl_engine_stats */
    atomic_uint_least64_t messages, rows, dead_letters, chunks, task_retries, task_failures,
        task_yields;
    /* per-shard MillisBehindLatest for kl_engine_shard_lags */
    pthread_mutex_t lag_lock;
    struct lag *lags; /* grows up to KL_ENGINE_LAGS_MAX */
    size_t n_lags, cap_lags;
};

/* What a worker keeps between tasks. */
struct worker {
    struct kl_engine *e;
    char owner[KL_STORE_OWNER_MAX];
    struct kl_dest *dest;
    /* the job whose normaliser is cached */
    char job_id[KL_STORE_JOB_ID_SIZE];
    struct kl_load_params params;
    char load_id[40];
    int64_t job_created_ms; /* epoch ms: the stop rule's bound on arrival times */
    struct kl_normalizer *norm;
    int64_t schema_written;
};

/* The job and shard one running task works for: the hooks' context. */
struct shard_run {
    struct worker *w;
    const struct kl_store_task *task;
    struct kl_store_shard_key key;
    int64_t token;
    int64_t slice_start_ms; /* monotonic: when the task last took or kept its worker */
    bool committed;         /* a chunk was committed in this delivery */
    /* the job shows the shard waiting on a Kinesis call (set on the task's
     * fetch thread, cleared on its commit path) */
    atomic_bool waiting_shown;
    _Atomic int64_t waiting_shown_ms;
    bool yielded; /* stopped at a chunk boundary to let waiting tasks run */
};

static struct kl_store *store_of(const struct worker *w)
{
    return w->e->cfg.store;
}

static const struct kl_clock *clock_of(const struct kl_engine *e)
{
    return e->cfg.clock != NULL ? e->cfg.clock : kl_clock_system();
}

/* ---- jobs ---- */

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
    rc = kl_store_task_enqueue(e->cfg.store, id_out, PLAN_TASK, NULL, 0, &created, err);

cleanup:
    free(json);
    cJSON_Delete(params);
    return rc;
}

int kl_engine_wait(struct kl_engine *e, const char *job_id, int64_t timeout_ms,
                   struct kl_store_job *out, struct kl_err *err)
{
    const struct kl_clock *clock = clock_of(e);
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

static void fail_job(struct worker *w, const char *job_id, const char *shard,
                     const struct kl_err *why)
{
    struct kl_store_job_error e = {kl_err_code_name(why->code), why->msg, shard};
    struct kl_log_ctx ctx = {job_id, w->params.stream, shard};
    struct kl_err err;

    KL_ERROR("engine", &ctx, "job failed: %s", why->msg);
    if (kl_store_job_transition(store_of(w), job_id, KL_STORE_JOB_FAILED, &e, NULL, &err) != KL_OK)
        KL_WARN("engine", &ctx, "recording the failure: %s", err.msg);
}

static int ensure_dest(struct worker *w, struct kl_err *err)
{
    if (w->dest != NULL)
        return KL_OK;
    return kl_dest_factory_open(w->e->cfg.dests, &w->dest, err);
}

/* The job's parameters and a normaliser with the dataset's stored schema. */
static int ensure_job(struct worker *w, const struct kl_store_job *job, struct kl_err *err)
{
    struct kl_normalizer_options no;
    struct kl_schema *schema = NULL;
    char *json = NULL;
    int64_t version = -1;
    int rc;

    if (strcmp(w->job_id, job->id) == 0 && w->norm != NULL)
        return KL_OK;
    kl_normalizer_destroy(w->norm);
    w->norm = NULL;
    w->job_id[0] = '\0';
    snprintf(w->params.stream, sizeof w->params.stream, "%s", job->stream);
    rc = kl_load_params_from_json(job->parameters ? job->parameters : "{}", &w->params, err);
    if (rc != KL_OK)
        return rc;
    /* dlt's load id: the job's creation time in seconds with microseconds */
    snprintf(w->load_id, sizeof w->load_id, "%lld.%06lld", (long long)(job->created_ms / 1000),
             (long long)(job->created_ms % 1000) * 1000);
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
    w->norm = kl_normalizer_create(&no, schema, err);
    if (w->norm == NULL)
        return err != NULL ? (int)err->code : KL_ERR_NOMEM;
    w->schema_written = schema != NULL ? version : -1;
    snprintf(w->job_id, sizeof w->job_id, "%s", job->id);
    return KL_OK;
}

/* Completes a job whose tasks are all done: dlt's load and pipeline-state
 * rows and the next run time in the destination, then succeeded (or
 * cancelled when a cancel was asked for). Every step is idempotent, so a
 * retry, or a second replica doing the same, is harmless. */
static int complete_job(struct worker *w, const char *job_id, struct kl_err *err)
{
    struct kl_store_job job;
    struct kl_load_complete c;
    struct kl_log_ctx ctx = {job_id, w->params.stream, NULL};
    char root[KL_NAME_CAP];
    size_t root_len = 0;
    int rc;

    kl_store_job_init(&job);
    rc = kl_store_job_get(store_of(w), job_id, &job, err);
    if (rc != KL_OK || kl_store_job_status_final(job.status))
        goto cleanup;
    if (job.cancel_requested) {
        rc = kl_store_job_transition(store_of(w), job_id, KL_STORE_JOB_CANCELLED, NULL, NULL, err);
        goto cleanup;
    }
    rc = ensure_job(w, &job, err);
    if (rc != KL_OK)
        goto cleanup;
    memset(&c, 0, sizeof c);
    c.load_id = w->load_id;
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
        rc = kl_store_job_transition(store_of(w), job_id, KL_STORE_JOB_SUCCEEDED, NULL, NULL, err);
    if (rc == KL_OK)
        KL_INFO("engine", &ctx, "job succeeded: %lld messages, %lld dead letters",
                (long long)job.messages, (long long)job.dead_letters);
cleanup:
    kl_store_job_free(&job);
    return rc;
}

/* The last task of a job finished: complete it, retrying while the store or
 * the destination is briefly away. A job still running after that is found
 * again by the sweep (sweep_main). */
static void finalize(struct worker *w, const char *job_id)
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
        kl_clock_sleep_ms(clock_of(w->e), (int64_t)250 << (n - 1));
    }
    if (rc == KL_ERR_NOT_FOUND)
        KL_WARN("engine", &ctx, "the job is gone from the state store: %s", err.msg);
    else if (rc != KL_OK && !kl_err_retryable((enum kl_err_code)rc))
        fail_job(w, job_id, NULL, &err);
    else if (rc != KL_OK)
        KL_WARN("engine", &ctx, "completing the job: %s (the sweep tries again)", err.msg);
}

/* Acks a task and completes the job when it was the last one. */
static void finish(struct worker *w, const struct kl_store_task *t)
{
    struct kl_store_task_ack ack;
    struct kl_err err;
    struct kl_log_ctx ctx = {t->job_id, w->params.stream, t->shard_id};

    if (kl_store_task_ack(store_of(w), t, &ack, &err) != KL_OK) {
        KL_WARN("engine", &ctx, "ack: %s", err.msg);
        return;
    }
    if (ack.last)
        finalize(w, t->job_id);
}

/* A retryable failure: try again later, or fail the job after enough tries. */
static void retry_or_fail(struct worker *w, const struct kl_store_task *t, const struct kl_err *why)
{
    struct kl_log_ctx ctx = {t->job_id, w->params.stream, t->shard_id};
    struct kl_err err;
    int attempts = w->e->cfg.task_attempts;

    if (t->attempt + 1 >= attempts) {
        atomic_fetch_add(&w->e->task_failures, 1);
        fail_job(w, t->job_id, t->shard_id, why);
        finish(w, t);
        return;
    }
    atomic_fetch_add(&w->e->task_retries, 1);
    KL_WARN("engine", &ctx, "task attempt %d failed, retrying: %s", t->attempt + 1, why->msg);
    if (kl_store_task_nack(store_of(w), t, RETRY_DELAY_MS << (t->attempt < 5 ? t->attempt : 5),
                           &err) != KL_OK)
        KL_WARN("engine", &ctx, "nack: %s", err.msg);
}

static char *shard_meta(const struct kl_shard *s, char *buf, size_t cap)
{
    snprintf(buf, cap, "%d|%s|%s", kl_shard_is_closed(s) ? 1 : 0, s->parent_id,
             s->adjacent_parent_id);
    return buf;
}

/* The planning task: queue every shard whose parents are not listed (the
 * others follow their parents). */
static void plan(struct worker *w, const struct kl_store_task *t)
{
    struct kl_shard_list shards = {0};
    struct kl_err err;
    int rc;

    rc = kl_kinesis_list_shards(w->e->cfg.client, w->params.stream, &shards, &err);
    for (size_t i = 0; rc == KL_OK && i < shards.n; i++) {
        const struct kl_shard *s = &shards.shards[i];
        char meta[KL_SHARD_ID_MAX * 2 + 8];
        bool created;
        if ((s->parent_id[0] && kl_shard_index(&shards, s->parent_id) >= 0) ||
            (s->adjacent_parent_id[0] && kl_shard_index(&shards, s->adjacent_parent_id) >= 0))
            continue;
        rc = kl_store_task_enqueue(store_of(w), t->job_id, s->id, shard_meta(s, meta, sizeof meta),
                                   0, &created, &err);
    }
    kl_shard_list_free(&shards);
    if (rc == KL_OK)
        finish(w, t);
    else if (kl_err_retryable((enum kl_err_code)rc))
        retry_or_fail(w, t, &err);
    else {
        fail_job(w, t->job_id, NULL, &err);
        finish(w, t);
    }
}

/* A drained shard: queue each child whose listed parents are all done. */
static int queue_children(struct worker *w, const struct kl_store_task *t, struct kl_err *err)
{
    struct kl_shard_list shards = {0};
    struct kl_store_job job;
    int rc;

    kl_store_job_init(&job);
    rc = kl_kinesis_list_shards(w->e->cfg.client, w->params.stream, &shards, err);
    if (rc == KL_OK)
        rc = kl_store_job_get(store_of(w), t->job_id, &job, err);
    for (size_t i = 0; rc == KL_OK && i < shards.n; i++) {
        const struct kl_shard *s = &shards.shards[i];
        const char *parents[2] = {s->parent_id, s->adjacent_parent_id};
        char meta[KL_SHARD_ID_MAX * 2 + 8];
        bool mine = false, ready = true, created;

        for (int p = 0; p < 2; p++) {
            bool done = strcmp(parents[p], t->shard_id) == 0;
            mine = mine || done;
            if (parents[p][0] == '\0' || done || kl_shard_index(&shards, parents[p]) < 0)
                continue;
            for (size_t k = 0; k < job.n_shards; k++)
                done = done || (strcmp(job.shards[k].position.shard_id, parents[p]) == 0 &&
                                job.shards[k].done);
            ready = ready && done;
        }
        if (mine && ready)
            rc = kl_store_task_enqueue(store_of(w), t->job_id, s->id,
                                       shard_meta(s, meta, sizeof meta), 0, &created, err);
    }
    kl_store_job_free(&job);
    kl_shard_list_free(&shards);
    return rc;
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
}

/* Drops shards not read for KL_ENGINE_LAG_KEEP_MS (lag_lock held). */
static void forget_old_lags(struct kl_engine *e, int64_t now)
{
    size_t w = 0;
    for (size_t i = 0; i < e->n_lags; i++)
        if (now - e->lags[i].seen_ms < KL_ENGINE_LAG_KEEP_MS)
            e->lags[w++] = e->lags[i];
    e->n_lags = w;
}

static void note_lag(struct kl_engine *e, const struct kl_store_shard_key *k, int64_t millis_behind)
{
    int64_t now = kl_clock_monotonic_ms(clock_of(e));
    struct lag *slot = NULL;

    if (millis_behind < 0)
        return;
    pthread_mutex_lock(&e->lag_lock);
    for (size_t i = 0; i < e->n_lags && slot == NULL; i++) {
        const struct kl_engine_shard_lag *l = &e->lags[i].l;
        if (strcmp(l->shard_id, k->shard_id) == 0 && strcmp(l->stream, k->stream) == 0 &&
            strcmp(l->pipeline, k->pipeline) == 0)
            slot = &e->lags[i];
    }
    if (slot == NULL) {
        forget_old_lags(e, now);
        if (e->n_lags == e->cap_lags && e->cap_lags < KL_ENGINE_LAGS_MAX) {
            size_t cap = e->cap_lags ? e->cap_lags * 2 : 16;
            struct lag *more = realloc(e->lags, cap * sizeof *more);
            if (more != NULL) {
                e->lags = more;
                e->cap_lags = cap;
            }
        }
        if (e->n_lags == e->cap_lags && e->n_lags == 0) {
            pthread_mutex_unlock(&e->lag_lock); /* out of memory: report nothing */
            return;
        }
        if (e->n_lags == e->cap_lags) {
            slot = &e->lags[0];
            for (size_t i = 1; i < e->n_lags; i++)
                if (e->lags[i].seen_ms < slot->seen_ms)
                    slot = &e->lags[i];
        } else {
            slot = &e->lags[e->n_lags++];
        }
        snprintf(slot->l.pipeline, sizeof slot->l.pipeline, "%s", k->pipeline);
        snprintf(slot->l.stream, sizeof slot->l.stream, "%s", k->stream);
        snprintf(slot->l.shard_id, sizeof slot->l.shard_id, "%s", k->shard_id);
    }
    slot->l.millis_behind = millis_behind;
    slot->seen_ms = now;
    pthread_mutex_unlock(&e->lag_lock);
}

static int lag_cmp(const void *a, const void *b)
{
    const struct kl_engine_shard_lag *x = a, *y = b;
    int c = strcmp(x->pipeline, y->pipeline);
    if (c == 0)
        c = strcmp(x->stream, y->stream);
    return c != 0 ? c : strcmp(x->shard_id, y->shard_id);
}

size_t kl_engine_shard_lags(struct kl_engine *e, struct kl_engine_shard_lag **out)
{
    size_t n = 0;

    *out = NULL;
    pthread_mutex_lock(&e->lag_lock);
    forget_old_lags(e, kl_clock_monotonic_ms(clock_of(e)));
    if (e->n_lags > 0 && (*out = malloc(e->n_lags * sizeof **out)) != NULL) {
        for (n = 0; n < e->n_lags; n++)
            (*out)[n] = e->lags[n].l;
    }
    pthread_mutex_unlock(&e->lag_lock);
    if (n > 1)
        qsort(*out, n, sizeof **out, lag_cmp);
    return n;
}

/* ---- task hooks ---- */

static int hook_reserve(void *ctx, int want, int *granted, struct kl_err *err)
{
    struct shard_run *r = ctx;
    struct kl_store_job job;
    int rc;

    *granted = want;
    if (r->w->params.max_messages < 0)
        return KL_OK;
    kl_store_job_init(&job);
    rc = kl_store_job_get(store_of(r->w), r->task->job_id, &job, err);
    if (rc == KL_OK) {
        int64_t left = r->w->params.max_messages - job.messages;
        *granted = left <= 0 ? 0 : (left < want ? (int)left : want);
    }
    kl_store_job_free(&job);
    return rc;
}

static int hook_committed(void *ctx, const struct kl_shard_position *pos, size_t messages,
                          int64_t millis_behind, const struct kl_row_batch *batch,
                          const struct kl_chunk_result *res, struct kl_err *err)
{
    struct shard_run *r = ctx;
    struct kl_store_table_rows rows[64];
    struct kl_store_progress p;
    size_t n = 0;

    atomic_fetch_add(&r->w->e->messages, (uint64_t)messages);
    atomic_fetch_add(&r->w->e->rows, (uint64_t)res->rows);
    atomic_fetch_add(&r->w->e->dead_letters, (uint64_t)res->dead_letters);
    atomic_fetch_add(&r->w->e->chunks, 1);
    r->committed = true;
    note_lag(r->w->e, &r->key, millis_behind);
    for (size_t i = 0; batch != NULL && i < batch->n_tables && n < 64; i++) {
        snprintf(rows[n].table, sizeof rows[n].table, "%s",
                 batch->schema->tables[batch->tables[i].table].name);
        rows[n++].rows = (int64_t)batch->tables[i].n_rows;
    }
    memset(&p, 0, sizeof p);
    if (atomic_exchange(&r->waiting_shown, false))
        p.waiting_on = ""; /* the call it waited on answered */
    p.shard_id = r->task->shard_id;
    p.sequence = pos->sequence;
    p.sub_sequence = pos->sub_sequence;
    p.millis_behind_latest = millis_behind;
    p.messages = (int64_t)messages;
    p.dead_letters = batch != NULL ? (int64_t)batch->n_dead_letters : 0;
    p.tables = rows;
    p.n_tables = n;
    return kl_store_job_progress(store_of(r->w), r->task->job_id, &p, NULL, err);
}

/* A Kinesis call of the shard is being retried, or passed its deadline.
 * Calls that answer within WAIT_SHOW_AFTER_MS (a throttled read, say) are
 * not worth a store write; a longer wait shows in the job's progress (at
 * most once per WAIT_SHOW_AFTER_MS) and in the log, with the operation. */
static void hook_waiting(void *ctx, const char *operation, int64_t since_ms, int64_t until_ms,
                         const struct kl_err *why)
{
    struct shard_run *r = ctx;
    struct kl_store_progress p;
    struct kl_log_ctx log = {r->task->job_id, r->key.stream, r->key.shard_id};
    int64_t now = kl_clock_wall_ms(clock_of(r->w->e));

    if (now - since_ms < WAIT_SHOW_AFTER_MS ||
        (atomic_load(&r->waiting_shown) &&
         now - atomic_load(&r->waiting_shown_ms) < WAIT_SHOW_AFTER_MS && now < until_ms))
        return;
    KL_WARN("load", &log,
            "%s still without an answer after %lld ms (gives up %lld ms from now): %s", operation,
            (long long)(now - since_ms), (long long)(until_ms > now ? until_ms - now : 0),
            why != NULL ? why->msg : "");
    memset(&p, 0, sizeof p);
    p.shard_id = r->task->shard_id;
    p.millis_behind_latest = -1;
    p.waiting_on = operation;
    p.waiting_since_ms = since_ms;
    p.waiting_until_ms = until_ms;
    p.waiting_why = why != NULL ? why->msg : "";
    if (kl_store_job_progress(store_of(r->w), r->task->job_id, &p, NULL, NULL) == KL_OK) {
        atomic_store(&r->waiting_shown_ms, now);
        atomic_store(&r->waiting_shown, true);
    }
}

/* After a slice of work, a task yields its worker when other tasks wait,
 * so one wide stream's open shards cannot hold every worker until they
 * reach the tip while other jobs wait. */
static bool time_to_yield(struct shard_run *r)
{
    const struct kl_engine_config *cfg = &r->w->e->cfg;
    int64_t now = kl_clock_monotonic_ms(clock_of(r->w->e));
    struct kl_store_stats st;
    struct kl_err err;

    /* a task that committed nothing yet keeps going: yielding then would
     * hand the worker around without progress */
    if (cfg->task_slice_ms < 0 || !r->committed || now - r->slice_start_ms < cfg->task_slice_ms)
        return false;
    r->slice_start_ms = now; /* nobody waits: look again after another slice */
    if (kl_store_stats(cfg->store, &st, &err) != KL_OK || st.queued == 0)
        return false;
    r->yielded = true;
    return true;
}

static bool hook_cancelled(void *ctx)
{
    struct shard_run *r = ctx;
    enum kl_store_job_status status;
    bool cancel = false;
    struct kl_err err;

    if (atomic_load(&r->w->e->stopping) || time_to_yield(r))
        return true;
    if (kl_store_job_status(store_of(r->w), r->task->job_id, &status, &cancel, &err) != KL_OK)
        return false; /* the store is away: go on, the commit path will tell */
    return cancel || kl_store_job_status_final(status);
}

static int hook_renew(void *ctx, struct kl_err *err)
{
    struct shard_run *r = ctx;
    const struct kl_engine_config *cfg = &r->w->e->cfg;
    int rc =
        kl_store_lease_renew(cfg->store, &r->key, r->w->owner, r->token, cfg->shard_lease_ms, err);
    if (rc == KL_OK)
        rc = kl_store_task_heartbeat(cfg->store, r->task, cfg->task_lease_ms, err);
    return rc;
}

/* ---- a shard task ---- */

static void run_shard(struct worker *w, const struct kl_store_task *t)
{
    const struct kl_engine_config *cfg = &w->e->cfg;
    struct kl_dest_state state;
    struct kl_shard_position resume;
    struct kl_task_env env;
    struct kl_task_spec spec;
    struct kl_task_hooks hooks;
    struct kl_task_result result;
    struct kl_store_progress done;
    struct shard_run r;
    char parents[2][KL_SHARD_ID_MAX] = {"", ""};
    bool have_resume = false, from_parent = false, closed = false;
    int64_t min_token = 0;
    struct kl_err err;
    int rc;

    /* meta: "<closed>|<parent>|<adjacent parent>" */
    closed = t->meta[0] == '1';
    sscanf(t->meta, "%*d|%128[^|]|%128s", parents[0], parents[1]);
    kl_dest_state_init(&state);
    /* Only the stored fencing token, so that the lease's token is above it
     * even when the store lost its counters. The position is read after the
     * claim below: read now, it could move before the lease is ours. */
    rc = kl_dest_read_state(w->dest, w->params.dataset_name, w->params.pipeline_name,
                            w->params.stream, &state, &err);
    if (rc != KL_OK)
        goto failed;
    for (size_t i = 0; i < state.n_checkpoints; i++)
        if (strcmp(state.checkpoints[i].position.shard_id, t->shard_id) == 0)
            min_token = state.checkpoints[i].fencing_token;
    kl_dest_state_free(&state);

    memset(&r, 0, sizeof r);
    r.w = w;
    r.task = t;
    r.key.pipeline = w->params.pipeline_name;
    r.key.stream = w->params.stream;
    r.key.shard_id = t->shard_id;
    r.slice_start_ms = kl_clock_monotonic_ms(clock_of(w->e));
    rc = kl_store_lease_take(cfg->store, &r.key, w->owner, cfg->shard_lease_ms, min_token, &r.token,
                             &err);
    if (rc == KL_ERR_CONFLICT) {
        /* a worker that vanished still holds it: try again after its lease */
        kl_store_task_release(cfg->store, t, cfg->shard_lease_ms, NULL);
        goto cleanup;
    }
    if (rc != KL_OK)
        goto failed;

    /* Claim the shard in the destination with the lease's token before
     * reading where to resume: from then on a former owner (a stalled
     * worker, or one whose lease the store forgot) can commit nothing, so
     * nobody but us moves the position read next. A newer token stored
     * there (KL_ERR_CONFLICT) means a newer owner: as a lost lease, below. */
    rc = kl_dest_claim_shard(w->dest, w->params.dataset_name, w->params.pipeline_name,
                             w->params.stream, t->shard_id, r.token, &err);
    if (rc == KL_OK)
        rc = kl_dest_read_state(w->dest, w->params.dataset_name, w->params.pipeline_name,
                                w->params.stream, &state, &err);
    if (rc != KL_OK) {
        kl_store_lease_release(cfg->store, &r.key, w->owner, r.token, NULL);
        goto failed;
    }
    for (size_t i = 0; i < state.n_checkpoints; i++) {
        const struct kl_checkpoint *c = &state.checkpoints[i];
        /* a claimed shard that nobody committed to yet has no position */
        if (c->position.sequence[0] == '\0')
            continue;
        if (strcmp(c->position.shard_id, t->shard_id) == 0) {
            resume = c->position;
            have_resume = true;
        }
        from_parent = from_parent ||
                      (parents[0][0] && strcmp(c->position.shard_id, parents[0]) == 0) ||
                      (parents[1][0] && strcmp(c->position.shard_id, parents[1]) == 0);
    }

    memset(&env, 0, sizeof env);
    env.client = cfg->client;
    env.dest = w->dest;
    env.normalizer = w->norm;
    env.clock = cfg->clock;
    env.min_call_interval_ms = cfg->min_call_interval_ms;
    env.max_bytes_per_s = cfg->max_bytes_per_s;
    env.schema_version_written = &w->schema_written;
    memset(&spec, 0, sizeof spec);
    spec.params = &w->params;
    spec.job_id = t->job_id;
    spec.load_id = w->load_id;
    spec.job_created_ms = w->job_created_ms;
    spec.shard_id = t->shard_id;
    spec.shard_closed = closed;
    spec.resume = have_resume ? &resume : NULL;
    spec.fencing_token = r.token;
    kl_choose_start(spec.resume, state.has_last_run ? state.last_run_ms : -1, from_parent,
                    &w->params.initial, &spec.start);
    memset(&hooks, 0, sizeof hooks);
    hooks.ctx = &r;
    hooks.reserve = hook_reserve;
    hooks.committed = hook_committed;
    hooks.cancelled = hook_cancelled;
    hooks.renew = hook_renew;
    hooks.waiting = hook_waiting;

    rc = kl_task_run(&env, &spec, &hooks, &result, &err);
    kl_store_lease_release(cfg->store, &r.key, w->owner, r.token, NULL);
    if (rc != KL_OK)
        goto failed;
    if (result.end == KL_TASK_CANCELLED && (atomic_load(&w->e->stopping) || r.yielded)) {
        /* this replica is stopping, or the task yields: not the job. Queued
         * behind the waiting tasks, it continues from its checkpoint. */
        if (r.yielded)
            atomic_fetch_add(&w->e->task_yields, 1);
        kl_store_task_release(cfg->store, t, 0, NULL);
        goto cleanup;
    }
    note_lag(w->e, &r.key, result.millis_behind);
    memset(&done, 0, sizeof done);
    done.shard_id = t->shard_id;
    done.millis_behind_latest = result.millis_behind;
    done.done = true;
    done.waiting_on = ""; /* whatever it waited on answered */
    if (result.has_gap)
        done.gap = &result.gap;
    rc = kl_store_job_progress(cfg->store, t->job_id, &done, NULL, &err);
    /* children are queued before the parent's ack, so the job cannot look finished between */
    if (rc == KL_OK && result.end == KL_TASK_DRAINED)
        rc = queue_children(w, t, &err);
    if (rc != KL_OK)
        goto failed;
    finish(w, t);
    goto cleanup;

failed:
    if (rc == KL_ERR_CONFLICT) {
        /* the lease went to a newer owner: its delivery finishes the task */
        kl_store_task_release(cfg->store, t, cfg->shard_lease_ms, NULL);
    } else if (kl_err_retryable((enum kl_err_code)rc) || rc == KL_ERR_EXPIRED) {
        retry_or_fail(w, t, &err);
    } else {
        atomic_fetch_add(&w->e->task_failures, 1);
        fail_job(w, t->job_id, t->shard_id, &err);
        finish(w, t);
    }
cleanup:
    kl_dest_state_free(&state);
}

/* ---- workers ---- */

static void run_delivery(struct worker *w, const struct kl_store_task *t)
{
    struct kl_store_job job;
    struct kl_err err;
    int rc;

    kl_store_job_init(&job);
    rc = kl_store_job_get(store_of(w), t->job_id, &job, &err);
    if (rc == KL_ERR_NOT_FOUND || (rc == KL_OK && kl_store_job_status_final(job.status))) {
        finish(w, t); /* nothing left to do for it */
        goto cleanup;
    }
    if (rc != KL_OK) {
        kl_store_task_nack(store_of(w), t, RETRY_DELAY_MS, NULL);
        goto cleanup;
    }
    if (job.cancel_requested) {
        finish(w, t);
        goto cleanup;
    }
    rc = ensure_job(w, &job, &err);
    if (rc == KL_OK)
        rc =
            kl_store_job_transition(store_of(w), t->job_id, KL_STORE_JOB_RUNNING, NULL, NULL, &err);
    if (rc == KL_ERR_CONFLICT) {
        /* cancelled (or failed) since we read it: nothing left to do */
        finish(w, t);
        goto cleanup;
    }
    if (rc != KL_OK) {
        if (kl_err_retryable((enum kl_err_code)rc))
            retry_or_fail(w, t, &err);
        else {
            fail_job(w, t->job_id, NULL, &err);
            finish(w, t);
        }
        goto cleanup;
    }
    if (strcmp(t->shard_id, PLAN_TASK) == 0)
        plan(w, t);
    else
        run_shard(w, t);
cleanup:
    kl_store_job_free(&job);
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
static void sweep_once(struct worker *w, struct sweep_seen *prev, struct sweep_seen *now)
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
        if (kl_store_job_list(store_of(w), &f, &page, &err) != KL_OK) {
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

static void *sweep_main(void *arg)
{
    struct worker *w = arg;
    struct kl_engine *e = w->e;
    struct sweep_seen *seen = calloc(2, sizeof *seen);
    int64_t next = kl_clock_monotonic_ms(clock_of(e)) + e->cfg.sweep_interval_ms;
    int cur = 0;

    while (seen != NULL && !atomic_load(&e->stopping)) {
        if (kl_clock_monotonic_ms(clock_of(e)) < next) {
            kl_clock_sleep_ms(clock_of(e), 100);
            continue;
        }
        sweep_once(w, &seen[cur], &seen[1 - cur]);
        cur = 1 - cur;
        next = kl_clock_monotonic_ms(clock_of(e)) + e->cfg.sweep_interval_ms;
    }
    free(seen);
    kl_normalizer_destroy(w->norm);
    kl_dest_destroy(w->dest);
    free(w);
    return NULL;
}

static struct worker *worker_new(struct kl_engine *e, const char *name)
{
    struct worker *w = calloc(1, sizeof *w);
    if (w == NULL)
        return NULL;
    w->e = e;
    w->schema_written = -1;
    snprintf(w->owner, sizeof w->owner, "%.100s-%s", e->owner, name);
    return w;
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    const struct kl_engine_config *cfg = &w->e->cfg;

    while (!atomic_load(&w->e->stopping)) {
        struct kl_store_task t;
        struct kl_err err;
        bool got = false;

        if (kl_store_task_take(cfg->store, w->owner, cfg->task_lease_ms, cfg->take_timeout_ms, &t,
                               &got, &err) != KL_OK) {
            KL_WARN("engine", NULL, "taking a task: %s", err.msg);
            kl_clock_sleep_ms(clock_of(w->e), 500);
            continue;
        }
        if (got)
            run_delivery(w, &t);
    }
    kl_normalizer_destroy(w->norm);
    kl_dest_destroy(w->dest);
    free(w);
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
    if (e->cfg.workers > MAX_WORKERS)
        e->cfg.workers = MAX_WORKERS;
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
    pthread_mutex_init(&e->lag_lock, NULL);
    return e;
}

int kl_engine_start(struct kl_engine *e, struct kl_err *err)
{
    if (e->cfg.sweep_interval_ms > 0 && !e->sweeping) {
        struct worker *w = worker_new(e, "sweep");
        if (w == NULL)
            return kl_err_set(err, KL_ERR_NOMEM, "out of memory starting the sweep");
        if (pthread_create(&e->sweeper, NULL, sweep_main, w) != 0) {
            free(w);
            return kl_err_set(err, KL_ERR_INTERNAL, "cannot start the sweep");
        }
        e->sweeping = true;
    }
    for (int i = 0; i < e->cfg.workers; i++) {
        char name[16];
        struct worker *w;
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
    pthread_mutex_destroy(&e->lag_lock);
    free(e->lags);
    free(e);
}
