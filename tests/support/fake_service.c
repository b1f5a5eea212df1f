/*
 * The fake service of fake_service.h. Ids are 26 digits (a counter), which
 * fits the JobId pattern; lists run newest first with the last id of a page
 * as the cursor. A wait polls the job every few milliseconds and fails when
 * a failure is scripted while it waits.
 */
#include "tests/support/fake_service.h"
#include "core/util/buf.h"
#include "core/util/clock.h"
#include "core/util/err.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void lock(struct kl_fake_service *f)
{
    if (pthread_mutex_lock(&f->lock) != 0)
        abort();
}

static void unlock(struct kl_fake_service *f)
{
    if (pthread_mutex_unlock(&f->lock) != 0)
        abort();
}

/* The delay, then the scripted failure. Takes the lock on success. */
static int enter(struct kl_fake_service *f, struct kl_err *err)
{
    lock(f);
    f->started++;
    unlock(f);
    if (f->delay_ms > 0) {
        struct timespec ts = {f->delay_ms / 1000, (f->delay_ms % 1000) * 1000000L};
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
        }
    }
    lock(f);
    f->calls++;
    if (f->fail_code != KL_OK) {
        int rc = kl_err_set(err, (enum kl_err_code)f->fail_code, "%s", f->fail_msg);
        unlock(f);
        return rc;
    }
    return KL_OK;
}

/* The fake job as the store would return it. */
static int job_of(const struct kl_fake_job *fj, struct kl_store_job *out)
{
    struct kl_store_job j;
    cJSON *params = kl_load_params_to_json(&fj->params);

    kl_store_job_init(&j);
    snprintf(j.id, sizeof j.id, "%s", fj->id);
    snprintf(j.stream, sizeof j.stream, "%s", fj->params.stream);
    snprintf(j.pipeline_name, sizeof j.pipeline_name, "%s", fj->params.pipeline_name);
    snprintf(j.dataset_name, sizeof j.dataset_name, "%s", fj->params.dataset_name);
    j.parameters = params != NULL ? cJSON_PrintUnformatted(params) : NULL;
    cJSON_Delete(params);
    j.status = fj->status;
    j.cancel_requested = fj->cancel_requested;
    j.created_ms = fj->created_ms;
    j.started_ms = fj->status == KL_STORE_JOB_QUEUED ? -1 : fj->created_ms + 10;
    j.finished_ms = fj->status >= KL_STORE_JOB_SUCCEEDED ? fj->created_ms + 20 : -1;
    if (fj->status == KL_STORE_JOB_FAILED) {
        j.has_error = true;
        snprintf(j.error_type, sizeof j.error_type, "unavailable");
        snprintf(j.error_detail, sizeof j.error_detail, "the destination went away");
    }
    if (j.parameters == NULL) {
        kl_store_job_free(&j);
        return KL_ERR_NOMEM;
    }
    kl_store_job_free(out);
    *out = j;
    return KL_OK;
}

static struct kl_fake_job *find(struct kl_fake_service *f, const char *id)
{
    for (size_t i = 0; i < f->n_jobs; i++) {
        if (strcmp(f->jobs[i].id, id) == 0)
            return &f->jobs[i];
    }
    return NULL;
}

static bool active(const struct kl_fake_job *j)
{
    return j->status == KL_STORE_JOB_QUEUED || j->status == KL_STORE_JOB_RUNNING;
}

static struct kl_fake_job *active_for(struct kl_fake_service *f, const char *stream,
                                      const char *pipeline)
{
    for (size_t i = 0; i < f->n_jobs; i++) {
        struct kl_fake_job *j = &f->jobs[i];
        if (active(j) && strcmp(j->params.stream, stream) == 0 &&
            strcmp(j->params.pipeline_name, pipeline) == 0)
            return j;
    }
    return NULL;
}

/* Under the lock. */
static struct kl_fake_job *add_locked(struct kl_fake_service *f, const struct kl_load_params *p,
                                      const char *key, enum kl_store_job_status status)
{
    struct kl_fake_job *j;

    if (f->n_jobs >= KL_FAKE_SERVICE_MAX_JOBS)
        return NULL;
    j = &f->jobs[f->n_jobs++];
    memset(j, 0, sizeof *j);
    snprintf(j->id, sizeof j->id, "%026u", ++f->next_id);
    j->params = *p;
    snprintf(j->key, sizeof j->key, "%s", key != NULL ? key : "");
    j->status = status;
    j->created_ms = 1714564800000LL + (long long)f->next_id * 1000;
    return j;
}

static int create_load(void *impl, const struct kl_load_params *p, const char *key,
                       struct kl_store_job *job, bool *existing, struct kl_err *err)
{
    struct kl_fake_service *f = impl;
    struct kl_fake_job *j;
    int rc = enter(f, err);

    if (rc != KL_OK)
        return rc;
    f->have_last = true;
    f->last_params = *p;
    snprintf(f->last_key, sizeof f->last_key, "%s", key != NULL ? key : "");
    for (size_t i = 0; key != NULL && i < f->n_jobs; i++) {
        if (strcmp(f->jobs[i].key, key) == 0) {
            rc = job_of(&f->jobs[i], job);
            *existing = true;
            goto out;
        }
    }
    j = active_for(f, p->stream, p->pipeline_name);
    if (j != NULL) {
        job_of(j, job);
        rc = kl_err_set(err, KL_ERR_CONFLICT, "job %s for stream %s and pipeline %s is %s", j->id,
                        p->stream, p->pipeline_name, kl_store_job_status_name(j->status));
        goto out;
    }
    j = add_locked(f, p, key, KL_STORE_JOB_QUEUED);
    if (j == NULL) {
        rc = kl_err_set(err, KL_ERR_UNAVAILABLE, "too many jobs in the fake");
        goto out;
    }
    rc = job_of(j, job);
    *existing = false;
out:
    unlock(f);
    if (rc == KL_ERR_NOMEM)
        rc = kl_err_set(err, KL_ERR_NOMEM, "out of memory");
    return rc;
}

static int get_job(void *impl, const char *id, struct kl_store_job *job, struct kl_err *err)
{
    struct kl_fake_service *f = impl;
    struct kl_fake_job *j;
    int rc = enter(f, err);

    if (rc != KL_OK)
        return rc;
    j = find(f, id);
    if (j == NULL)
        rc = kl_err_set(err, KL_ERR_NOT_FOUND, "no job %s", id);
    else
        rc = job_of(j, job);
    unlock(f);
    return rc;
}

#define WAIT_POLL_MS 5

struct job_poll {
    struct kl_fake_service *f;
    const char *id;
};

static int job_final(void *arg, bool *final, struct kl_err *err)
{
    const struct job_poll *p = arg;
    struct kl_fake_job *j;
    int rc = KL_OK;

    lock(p->f);
    j = find(p->f, p->id);
    if (p->f->fail_code != KL_OK)
        rc = kl_err_set(err, (enum kl_err_code)p->f->fail_code, "%s", p->f->fail_msg);
    else if (j == NULL)
        rc = kl_err_set(err, KL_ERR_NOT_FOUND, "no job %s", p->id);
    else
        *final = kl_store_job_status_final(j->status);
    unlock(p->f);
    return rc;
}

static int wait_job(void *impl, const char *id, int64_t timeout_ms, const atomic_bool *stop,
                    struct kl_store_job *job, struct kl_err *err)
{
    struct kl_fake_service *f = impl;
    struct job_poll p = {f, id};
    int rc;

    lock(f);
    f->waits++;
    f->last_wait_ms = timeout_ms;
    unlock(f);
    rc = kl_service_wait_final(kl_clock_system(), timeout_ms, WAIT_POLL_MS, stop, job_final, &p,
                               err);
    if (rc == KL_OK)
        rc = get_job(impl, id, job, err);
    return rc;
}

static int list_jobs(void *impl, const struct kl_store_job_filter *flt,
                     struct kl_store_job_page *page, struct kl_err *err)
{
    struct kl_fake_service *f = impl;
    int rc = enter(f, err), n = 0;
    int limit = flt->limit > 0 ? flt->limit : 50;
    const char *cursor = flt->cursor != NULL && flt->cursor[0] ? flt->cursor : NULL;
    bool started = cursor == NULL;
    size_t i;

    if (rc != KL_OK)
        return rc;
    f->last_limit = limit;
    snprintf(f->last_cursor, sizeof f->last_cursor, "%s", cursor != NULL ? cursor : "");
    kl_store_job_page_free(page);
    page->jobs = calloc((size_t)limit, sizeof *page->jobs);
    if (page->jobs == NULL) {
        rc = kl_err_set(err, KL_ERR_NOMEM, "out of memory");
        goto out;
    }
    for (i = f->n_jobs; i-- > 0;) {
        struct kl_fake_job *j = &f->jobs[i];
        if (!started) {
            started = strcmp(j->id, cursor) == 0;
            continue;
        }
        if ((flt->stream != NULL && strcmp(j->params.stream, flt->stream) != 0) ||
            (flt->has_status && j->status != flt->status))
            continue;
        if (n == limit) {
            snprintf(page->next_cursor, sizeof page->next_cursor, "%s", f->jobs[i + 1].id);
            break;
        }
        kl_store_job_init(&page->jobs[n]);
        if (job_of(j, &page->jobs[n]) != KL_OK) {
            rc = kl_err_set(err, KL_ERR_NOMEM, "out of memory");
            break;
        }
        page->n_jobs = (size_t)++n;
    }
out:
    unlock(f);
    return rc;
}

static int cancel_job(void *impl, const char *id, struct kl_store_job *job, struct kl_err *err)
{
    struct kl_fake_service *f = impl;
    struct kl_fake_job *j;
    int rc = enter(f, err);

    if (rc != KL_OK)
        return rc;
    j = find(f, id);
    if (j == NULL) {
        rc = kl_err_set(err, KL_ERR_NOT_FOUND, "no job %s", id);
    } else if (j->status == KL_STORE_JOB_SUCCEEDED || j->status == KL_STORE_JOB_FAILED) {
        rc = kl_err_set(err, KL_ERR_CONFLICT, "job %s already %s", id,
                        kl_store_job_status_name(j->status));
        job_of(j, job);
    } else {
        if (j->status == KL_STORE_JOB_QUEUED)
            j->status = KL_STORE_JOB_CANCELLED;
        else if (j->status == KL_STORE_JOB_RUNNING)
            j->cancel_requested = true;
        rc = job_of(j, job);
    }
    unlock(f);
    return rc;
}

static int list_streams(void *impl, struct kl_string_list *names, struct kl_err *err)
{
    static const char *const streams[] = {"clicks", "orders"};
    struct kl_fake_service *f = impl;
    int rc = enter(f, err);

    if (rc != KL_OK)
        return rc;
    unlock(f);
    names->items = calloc(2, sizeof *names->items);
    for (size_t i = 0; names->items != NULL && i < 2; i++)
        if ((names->items[i] = strdup(streams[i])) != NULL)
            names->n = i + 1;
    return names->n == 2 ? KL_OK : kl_err_set(err, KL_ERR_NOMEM, "out of memory");
}

static int get_stream(void *impl, const char *stream, struct kl_stream_summary *sum,
                      struct kl_shard_list *shards, struct kl_err *err)
{
    struct kl_fake_service *f = impl;
    struct kl_shard *s;
    int rc = enter(f, err);

    if (rc != KL_OK)
        return rc;
    unlock(f);
    if (strcmp(stream, "orders") != 0 && strcmp(stream, "clicks") != 0)
        return kl_err_set(err, KL_ERR_NOT_FOUND, "Stream %s under account 000000000000 not found.",
                          stream);
    snprintf(sum->name, sizeof sum->name, "%s", stream);
    snprintf(sum->arn, sizeof sum->arn, "arn:aws:kinesis:us-east-1:000000000000:stream/%s", stream);
    snprintf(sum->status, sizeof sum->status, "ACTIVE");
    sum->retention_hours = 24;
    sum->open_shard_count = 1;
    shards->shards = calloc(1, sizeof *shards->shards);
    if (shards->shards == NULL)
        return kl_err_set(err, KL_ERR_NOMEM, "out of memory");
    shards->n = 1;
    s = &shards->shards[0];
    snprintf(s->id, sizeof s->id, "shardId-000000000000");
    snprintf(s->starting_hash_key, sizeof s->starting_hash_key, "0");
    snprintf(s->ending_hash_key, sizeof s->ending_hash_key,
             "340282366920938463463374607431768211455");
    snprintf(s->starting_seq, sizeof s->starting_seq,
             "49543463076548007577105092703039560359975228518395012686");
    return KL_OK;
}

static int get_state(void *impl, const char *stream, const char *pipeline, const char *dataset,
                     struct kl_dest_state *state, struct kl_err *err)
{
    struct kl_fake_service *f = impl;
    int rc = enter(f, err);

    (void)stream;
    if (rc != KL_OK)
        return rc;
    snprintf(f->last_pipeline, sizeof f->last_pipeline, "%s", pipeline);
    snprintf(f->last_dataset, sizeof f->last_dataset, "%s", dataset);
    unlock(f);
    state->checkpoints = calloc(1, sizeof *state->checkpoints);
    if (state->checkpoints == NULL)
        return kl_err_set(err, KL_ERR_NOMEM, "out of memory");
    state->n_checkpoints = 1;
    kl_position_set(&state->checkpoints[0].position, "shardId-000000000000",
                    "49543463076548007577105092703039560359975228518395012686", -1);
    state->checkpoints[0].fencing_token = 3;
    state->checkpoints[0].updated_ms = 1714564800000LL; /* 2024-05-01T12:00:00Z */
    state->has_last_run = true;
    state->last_run_ms = 1714564800000LL;
    return KL_OK;
}

static int delete_state(void *impl, const char *stream, const char *pipeline, const char *dataset,
                        struct kl_err *err)
{
    struct kl_fake_service *f = impl;
    int rc = enter(f, err);

    if (rc != KL_OK)
        return rc;
    snprintf(f->last_pipeline, sizeof f->last_pipeline, "%s", pipeline);
    snprintf(f->last_dataset, sizeof f->last_dataset, "%s", dataset);
    if (active_for(f, stream, pipeline) != NULL)
        rc = kl_err_set(err, KL_ERR_CONFLICT, "a job for %s and %s is active", stream, pipeline);
    unlock(f);
    return rc;
}

static void readiness(void *impl, struct kl_readiness *out)
{
    struct kl_fake_service *f = impl;
    bool ready;

    lock(f);
    ready = f->ready;
    unlock(f);
    kl_readiness_add(out, "store", true, NULL);
    kl_readiness_add(out, "destination", ready, ready ? NULL : "connection refused");
}

static int metrics(void *impl, struct kl_buf *out, struct kl_err *err)
{
    struct kl_fake_service *f = impl;
    size_t counts[5] = {0};
    bool fail;

    lock(f);
    fail = f->metrics_fail;
    for (size_t i = 0; i < f->n_jobs; i++)
        counts[f->jobs[i].status]++;
    unlock(f);
    if (fail)
        return kl_err_set(err, KL_ERR_UNAVAILABLE, "store unreachable");
    return kl_buf_printf(out, err,
                         "# HELP kl_jobs Jobs by status.\n"
                         "# TYPE kl_jobs gauge\n"
                         "kl_jobs{status=\"queued\"} %zu\n"
                         "kl_jobs{status=\"running\"} %zu\n"
                         "kl_jobs{status=\"succeeded\"} %zu\n"
                         "kl_jobs{status=\"failed\"} %zu\n"
                         "kl_jobs{status=\"cancelled\"} %zu\n",
                         counts[0], counts[1], counts[2], counts[3], counts[4]);
}

static const struct kl_service_ops fake_ops = {
    .create_load = create_load,
    .get_job = get_job,
    .wait_job = wait_job,
    .list_jobs = list_jobs,
    .cancel_job = cancel_job,
    .list_streams = list_streams,
    .get_stream = get_stream,
    .get_state = get_state,
    .delete_state = delete_state,
    .readiness = readiness,
    .metrics = metrics,
};

void kl_fake_service_init(struct kl_fake_service *f)
{
    memset(f, 0, sizeof *f);
    if (pthread_mutex_init(&f->lock, NULL) != 0)
        abort();
    f->jobs = calloc(KL_FAKE_SERVICE_MAX_JOBS, sizeof *f->jobs);
    if (f->jobs == NULL)
        abort();
    f->ready = true;
    f->svc.ops = &fake_ops;
    f->svc.impl = f;
}

void kl_fake_service_free(struct kl_fake_service *f)
{
    free(f->jobs);
    f->jobs = NULL;
    (void)pthread_mutex_destroy(&f->lock);
}

const char *kl_fake_service_add(struct kl_fake_service *f, const char *stream,
                                enum kl_store_job_status status)
{
    struct kl_load_params p;
    struct kl_fake_job *j;

    kl_load_params_defaults(&p, stream);
    lock(f);
    j = add_locked(f, &p, NULL, status);
    unlock(f);
    return j != NULL ? j->id : NULL;
}

bool kl_fake_service_set_status(struct kl_fake_service *f, const char *id,
                                enum kl_store_job_status status)
{
    struct kl_fake_job *j;

    lock(f);
    j = find(f, id);
    if (j != NULL)
        j->status = status;
    unlock(f);
    return j != NULL;
}
