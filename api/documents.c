/*
 * The REST documents (see documents.h): openapi.yaml's schemas, field by
 * field, from the store's, the destination's and Kinesis' typed results.
 */
#include "api/documents.h"
#include "core/kinesis/start.h"
#include "core/load/params.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

static cJSON *iso_or_null(int64_t ms)
{
    char ts[32];
    if (ms < 0)
        return cJSON_CreateNull();
    kl_format_timestamp(ms, ts);
    return cJSON_CreateString(ts);
}

/* Adds `v` (NULL: out of memory) to `obj`; false, with `v` freed, on failure. */
static bool add(cJSON *obj, const char *key, cJSON *v)
{
    if (v == NULL)
        return false;
    if (!cJSON_AddItemToObject(obj, key, v)) {
        cJSON_Delete(v);
        return false;
    }
    return true;
}

static cJSON *str_or_null(const char *s)
{
    return s[0] ? cJSON_CreateString(s) : cJSON_CreateNull();
}

/* Where a shard resumed ({origin, load_id}), or null before it is known. */
static cJSON *origin_document(const struct kl_store_shard_progress *s)
{
    cJSON *o;
    if (s->resumed_from[0] == '\0')
        return cJSON_CreateNull();
    o = cJSON_CreateObject();
    if (o == NULL || cJSON_AddStringToObject(o, "origin", s->resumed_from) == NULL ||
        !add(o, "load_id", str_or_null(s->resumed_from_load_id))) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

/* What a shard waits on ({operation, since, until, error}), or null. */
static cJSON *waiting_document(const struct kl_store_shard_progress *s)
{
    cJSON *w;
    if (s->waiting_on[0] == '\0')
        return cJSON_CreateNull();
    w = cJSON_CreateObject();
    if (w == NULL || cJSON_AddStringToObject(w, "operation", s->waiting_on) == NULL ||
        !add(w, "since", iso_or_null(s->waiting_since_ms)) ||
        !add(w, "until", iso_or_null(s->waiting_until_ms)) ||
        cJSON_AddStringToObject(w, "error", s->waiting_why) == NULL) {
        cJSON_Delete(w);
        return NULL;
    }
    return w;
}

/* A running continuous load's current load window ({index, load_id,
 * started_at, seconds}), or null. */
static cJSON *window_document(const struct kl_store_job *j, const cJSON *params)
{
    struct kl_load_params p;
    const cJSON *v;
    char id[KL_LOAD_ID_MAX];
    int64_t k;
    cJSON *o;

    if (params == NULL || !cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(params, "continuous")) ||
        kl_store_job_status_final(j->status))
        return cJSON_CreateNull();
    memset(&p, 0, sizeof p);
    v = cJSON_GetObjectItemCaseSensitive(params, "load_window_s");
    p.load_window_s = cJSON_IsNumber(v) ? (int64_t)v->valuedouble : KL_LOAD_WINDOW_DEFAULT_S;
    k = kl_load_window_at(&p, j->created_ms, j->read_ms);
    kl_load_window_id(&p, j->created_ms, k, id);
    o = cJSON_CreateObject();
    if (o == NULL || cJSON_AddNumberToObject(o, "index", (double)k) == NULL ||
        cJSON_AddStringToObject(o, "load_id", id) == NULL ||
        !add(o, "started_at", iso_or_null(j->created_ms + k * p.load_window_s * 1000)) ||
        cJSON_AddNumberToObject(o, "seconds", (double)p.load_window_s) == NULL) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

cJSON *kl_doc_job(const struct kl_store_job *j)
{
    cJSON *doc = cJSON_CreateObject(), *progress, *shards, *info, *counts, *gaps, *params;
    bool ok = doc != NULL;

    params = j->parameters ? cJSON_Parse(j->parameters) : NULL;
    ok = ok && cJSON_AddStringToObject(doc, "id", j->id) != NULL &&
         cJSON_AddStringToObject(doc, "status", kl_store_job_status_name(j->status)) != NULL &&
         cJSON_AddStringToObject(doc, "stream", j->stream) != NULL &&
         add(doc, "parameters", params != NULL ? params : cJSON_CreateObject()) &&
         add(doc, "created_at", iso_or_null(j->created_ms)) &&
         add(doc, "started_at", iso_or_null(j->started_ms)) &&
         add(doc, "finished_at", iso_or_null(j->finished_ms)) &&
         cJSON_AddBoolToObject(doc, "cancel_requested", j->cancel_requested) != NULL;
    progress = ok ? cJSON_AddObjectToObject(doc, "progress") : NULL;
    ok = progress != NULL &&
         cJSON_AddNumberToObject(progress, "messages", (double)j->messages) != NULL &&
         cJSON_AddNumberToObject(progress, "tasks_total", (double)j->tasks_total) != NULL &&
         cJSON_AddNumberToObject(progress, "tasks_done", (double)j->tasks_done) != NULL;
    shards = ok ? cJSON_AddArrayToObject(progress, "shards") : NULL;
    gaps = ok ? cJSON_CreateArray() : NULL;
    for (size_t i = 0; ok && shards != NULL && i < j->n_shards; i++) {
        const struct kl_store_shard_progress *s = &j->shards[i];
        cJSON *o = cJSON_CreateObject();
        ok = o != NULL && cJSON_AddItemToArray(shards, o) &&
             cJSON_AddStringToObject(o, "shard_id", s->position.shard_id) != NULL &&
             add(o, "sequence",
                 s->position.sequence[0] ? cJSON_CreateString(s->position.sequence)
                                         : cJSON_CreateNull()) &&
             add(o, "sub_sequence",
                 s->position.sequence[0] && s->position.sub_sequence >= 0
                     ? cJSON_CreateNumber((double)s->position.sub_sequence)
                     : cJSON_CreateNull()) &&
             add(o, "millis_behind_latest",
                 s->millis_behind_latest >= 0 ? cJSON_CreateNumber((double)s->millis_behind_latest)
                                              : cJSON_CreateNull()) &&
             cJSON_AddNumberToObject(o, "messages", (double)s->messages) != NULL &&
             cJSON_AddBoolToObject(o, "done", s->done) != NULL &&
             add(o, "waiting", waiting_document(s)) && add(o, "resumed_from", origin_document(s)) &&
             add(o, "owner", str_or_null(s->owner)) &&
             add(o, "last_committed_arrival_at",
                 iso_or_null(s->last_arrival_ms > 0 ? s->last_arrival_ms : -1)) &&
             add(o, "last_committed_age_ms",
                 s->last_arrival_ms > 0 && j->read_ms > 0
                     ? cJSON_CreateNumber((double)(j->read_ms > s->last_arrival_ms
                                                       ? j->read_ms - s->last_arrival_ms
                                                       : 0))
                     : cJSON_CreateNull()) &&
             cJSON_AddNumberToObject(o, "messages_per_second",
                                     round(kl_store_rate_at(s, j->read_ms) * 10) / 10) != NULL &&
             add(o, "load_window",
                 s->window >= 0 ? cJSON_CreateNumber((double)s->window) : cJSON_CreateNull());
        if (ok && s->has_gap) {
            cJSON *g = cJSON_CreateObject();
            ok = g != NULL && cJSON_AddItemToArray(gaps, g) &&
                 cJSON_AddStringToObject(g, "shard_id", s->position.shard_id) != NULL &&
                 cJSON_AddStringToObject(g, "from_sequence", s->gap.from_sequence) != NULL &&
                 add(g, "to_sequence",
                     s->gap.to_sequence[0] ? cJSON_CreateString(s->gap.to_sequence)
                                           : cJSON_CreateNull()) &&
                 cJSON_AddStringToObject(g, "reason", s->gap.reason) != NULL;
        }
    }
    if (ok)
        ok = add(doc, "load_window", window_document(j, params));
    info = ok ? cJSON_AddObjectToObject(doc, "last_normalize_info") : NULL;
    counts = info != NULL ? cJSON_AddObjectToObject(info, "row_counts") : NULL;
    ok = ok && counts != NULL;
    for (size_t i = 0; ok && i < j->n_tables; i++)
        ok = cJSON_AddNumberToObject(counts, j->tables[i].table, (double)j->tables[i].rows) != NULL;
    /* dlt counts the pipeline state row it writes with every load */
    if (ok && j->status == KL_STORE_JOB_SUCCEEDED)
        ok = cJSON_AddNumberToObject(counts, "_dlt_pipeline_state", 1) != NULL;
    ok = ok && cJSON_AddNumberToObject(doc, "dead_letters", (double)j->dead_letters) != NULL &&
         add(doc, "gaps", gaps);
    gaps = NULL;
    if (ok && j->has_error) {
        cJSON *e = cJSON_AddObjectToObject(doc, "error");
        ok = e != NULL && cJSON_AddStringToObject(e, "type", j->error_type) != NULL &&
             cJSON_AddStringToObject(e, "detail", j->error_detail) != NULL &&
             add(e, "shard_id",
                 j->error_shard[0] ? cJSON_CreateString(j->error_shard) : cJSON_CreateNull());
    } else if (ok) {
        ok = cJSON_AddNullToObject(doc, "error") != NULL;
    }
    cJSON_Delete(gaps);
    if (!ok) {
        cJSON_Delete(doc);
        return NULL;
    }
    return doc;
}

cJSON *kl_doc_job_list(const struct kl_store_job_page *page)
{
    cJSON *doc = cJSON_CreateObject();
    cJSON *jobs = doc != NULL ? cJSON_AddArrayToObject(doc, "jobs") : NULL;

    for (size_t i = 0; jobs != NULL && i < page->n_jobs; i++) {
        cJSON *j = kl_doc_job(&page->jobs[i]);
        if (j == NULL || !cJSON_AddItemToArray(jobs, j)) {
            cJSON_Delete(j);
            jobs = NULL;
        }
    }
    if (jobs == NULL || !add(doc, "next_cursor", str_or_null(page->next_cursor))) {
        cJSON_Delete(doc);
        return NULL;
    }
    return doc;
}

cJSON *kl_doc_stream_list(const struct kl_string_list *names)
{
    cJSON *doc = cJSON_CreateObject();
    cJSON *arr = doc != NULL ? cJSON_AddArrayToObject(doc, "streams") : NULL;

    for (size_t i = 0; arr != NULL && i < names->n; i++) {
        cJSON *s = cJSON_CreateString(names->items[i]);
        if (s == NULL || !cJSON_AddItemToArray(arr, s)) {
            cJSON_Delete(s);
            arr = NULL;
        }
    }
    if (arr == NULL) {
        cJSON_Delete(doc);
        return NULL;
    }
    return doc;
}

cJSON *kl_doc_stream(const struct kl_stream_summary *sum, const struct kl_shard_list *shards)
{
    cJSON *doc = cJSON_CreateObject(), *arr;
    bool ok =
        doc != NULL && cJSON_AddStringToObject(doc, "name", sum->name) != NULL &&
        cJSON_AddStringToObject(doc, "arn", sum->arn) != NULL &&
        cJSON_AddStringToObject(doc, "status", sum->status) != NULL &&
        cJSON_AddNumberToObject(doc, "retention_period_hours", sum->retention_hours) != NULL &&
        cJSON_AddNumberToObject(doc, "open_shard_count", sum->open_shard_count) != NULL;

    arr = ok ? cJSON_AddArrayToObject(doc, "shards") : NULL;
    ok = arr != NULL;
    for (size_t i = 0; ok && i < shards->n; i++) {
        const struct kl_shard *s = &shards->shards[i];
        cJSON *x = cJSON_CreateObject();
        ok = x != NULL && cJSON_AddItemToArray(arr, x) &&
             cJSON_AddStringToObject(x, "shard_id", s->id) != NULL &&
             add(x, "parent_shard_id", str_or_null(s->parent_id)) &&
             add(x, "adjacent_parent_shard_id", str_or_null(s->adjacent_parent_id)) &&
             cJSON_AddStringToObject(x, "starting_hash_key", s->starting_hash_key) != NULL &&
             cJSON_AddStringToObject(x, "ending_hash_key", s->ending_hash_key) != NULL &&
             cJSON_AddStringToObject(x, "starting_sequence_number", s->starting_seq) != NULL &&
             add(x, "ending_sequence_number", str_or_null(s->ending_seq)) &&
             cJSON_AddBoolToObject(x, "closed", s->ending_seq[0] != '\0') != NULL;
    }
    if (!ok) {
        cJSON_Delete(doc);
        return NULL;
    }
    return doc;
}

cJSON *kl_doc_stream_state(const char *stream, const char *pipeline, const char *dataset,
                           const struct kl_dest_state *st)
{
    cJSON *doc = cJSON_CreateObject(), *arr;
    bool ok = doc != NULL && cJSON_AddStringToObject(doc, "stream", stream) != NULL &&
              cJSON_AddStringToObject(doc, "pipeline_name", pipeline) != NULL &&
              cJSON_AddStringToObject(doc, "dataset_name", dataset) != NULL &&
              add(doc, "last_run", iso_or_null(st->has_last_run ? st->last_run_ms : -1));

    arr = ok ? cJSON_AddArrayToObject(doc, "shards") : NULL;
    ok = arr != NULL;
    for (size_t i = 0; ok && i < st->n_checkpoints; i++) {
        const struct kl_checkpoint *c = &st->checkpoints[i];
        cJSON *x;
        /* left out: a shard claimed by a worker that committed nothing yet
         * has only a token, and the document lists positions */
        if (c->position.sequence[0] == '\0')
            continue;
        x = cJSON_CreateObject();
        ok =
            x != NULL && cJSON_AddItemToArray(arr, x) &&
            cJSON_AddStringToObject(x, "shard_id", c->position.shard_id) != NULL &&
            cJSON_AddStringToObject(x, "sequence", c->position.sequence) != NULL &&
            add(x, "sub_sequence",
                c->position.sub_sequence >= 0 ? cJSON_CreateNumber((double)c->position.sub_sequence)
                                              : cJSON_CreateNull()) &&
            cJSON_AddNumberToObject(x, "fencing_token", (double)c->fencing_token) != NULL &&
            add(x, "updated_at", iso_or_null(c->updated_ms));
    }
    if (!ok) {
        cJSON_Delete(doc);
        return NULL;
    }
    return doc;
}

bool kl_readiness_ok(const struct kl_readiness *r)
{
    for (size_t i = 0; i < r->n; i++)
        if (!r->checks[i].ok)
            return false;
    return true;
}

void kl_readiness_add(struct kl_readiness *r, const char *name, bool ok, const char *detail)
{
    struct kl_readiness_check *c;
    if (r->n >= KL_READINESS_CHECKS_MAX)
        return;
    c = &r->checks[r->n++];
    c->name = name;
    c->ok = ok;
    snprintf(c->detail, sizeof c->detail, "%s", detail != NULL ? detail : "");
}

cJSON *kl_doc_readiness(const struct kl_readiness *r)
{
    cJSON *doc = cJSON_CreateObject();
    cJSON *checks = doc != NULL ? cJSON_AddObjectToObject(doc, "checks") : NULL;
    bool ok = checks != NULL;

    for (size_t i = 0; ok && i < r->n; i++) {
        cJSON *c = cJSON_AddObjectToObject(checks, r->checks[i].name);
        ok = c != NULL && cJSON_AddBoolToObject(c, "ok", r->checks[i].ok) != NULL &&
             (r->checks[i].ok || cJSON_AddStringToObject(c, "detail", r->checks[i].detail) != NULL);
    }
    ok = ok &&
         cJSON_AddStringToObject(doc, "status", kl_readiness_ok(r) ? "ready" : "not_ready") != NULL;
    if (!ok) {
        cJSON_Delete(doc);
        return NULL;
    }
    return doc;
}
