/*
 * The Redis store's job operations and the message budget: the arguments
 * of each script and the translation of its reply into store.h's structs.
 */
#include "core/store/redis_internal.h"
#include "core/store/internal.h"
#include "core/util/clock.h"
#include "core/util/err.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- operations ---- */

static int64_t wall(struct rstore *r)
{
    return kl_clock_wall_ms(r->clock);
}

const char *kl_rs_name(void *impl)
{
    (void)impl;
    return "redis";
}

int kl_rs_ping(void *impl, struct kl_err *err)
{
    struct rstore *r = impl;
    struct args a;
    redisReply *reply = NULL;
    int rc = kl_rs_args_init(&a, 1, err);
    if (rc != KL_OK)
        goto cleanup;
    kl_rs_arg_str(&a, "PING");
    if ((rc = kl_rs_command(r, &a, 0, &reply, err)) != KL_OK)
        goto cleanup;
    if (reply->type == REDIS_REPLY_ERROR)
        rc = kl_rs_map_error_reply("PING", reply->str, err);
    else if (reply->type != REDIS_REPLY_STATUS)
        rc = kl_rs_bad_reply("PING", err);
cleanup:
    freeReplyObject(reply);
    kl_rs_args_free(&a);
    return rc;
}

int kl_rs_job_create(void *impl, const struct kl_store_job_new *n,
                     char id_out[KL_STORE_JOB_ID_SIZE], bool *existing, struct kl_err *err)
{
    struct rstore *r = impl;
    char id[KL_STORE_JOB_ID_SIZE];
    int64_t now = wall(r);
    redisReply *reply = NULL;
    struct args a;
    size_t len;
    const char *got;
    int rc;

    if ((rc = kl_rs_script_args(r, &a, 8, err)) != KL_OK)
        goto cleanup;
    if ((rc = kl_store_new_job_id(now, id, err)) != KL_OK)
        goto cleanup;
    kl_rs_arg_str(&a, id);
    kl_rs_arg_str(&a, n->stream);
    kl_rs_arg_str(&a, n->pipeline_name);
    kl_rs_arg_str(&a, n->dataset_name);
    kl_rs_arg_str(&a, n->parameters_json != NULL ? n->parameters_json : "{}");
    kl_rs_arg_i64(&a, now);
    kl_rs_arg_str(&a, n->idempotency_key);
    kl_rs_arg_i64(&a, r->idem_ttl_ms);
    if ((rc = kl_rs_script(r, KL_RS_JOB_CREATE, &a, &reply, err)) != KL_OK)
        goto cleanup;
    got = kl_rs_el_str(reply, 1, &len);
    if (got == NULL || len != KL_STORE_JOB_ID_LEN) {
        rc = kl_rs_bad_reply("job_create", err);
        goto cleanup;
    }
    memcpy(id_out, got, len);
    id_out[len] = '\0';
    if (kl_rs_el_is(reply, 0, "conflict")) {
        size_t sl;
        const char *st = kl_rs_el_str(reply, 2, &sl);
        rc = KL_STORE_FAIL(err, KL_ERR_CONFLICT, "job %s of stream %s and pipeline %s is %.*s",
                           id_out, n->stream, n->pipeline_name, st != NULL ? (int)sl : 6,
                           st != NULL ? st : "active");
        goto cleanup;
    }
    *existing = kl_rs_el_is(reply, 0, "existing");
cleanup:
    freeReplyObject(reply);
    kl_rs_args_free(&a);
    return rc;
}

/* GET /jobs/{id} is the hottest read: three HGETALLs in one MULTI/EXEC,
 * atomic like a script but without running Lua, which costs Redis more than
 * the reads themselves. */
int kl_rs_job_get(void *impl, const char *id, struct kl_store_job *out, struct kl_err *err)
{
    struct rstore *r = impl;
    static const char *const suffix[3] = {"", ":rows", ":shards"};
    char keys[3][KL_STORE_PREFIX_MAX + KL_STORE_JOB_ID_SIZE + 16];
    const char *argv[3][2];
    size_t len[3][2];
    struct args cmds[3];
    redisReply *reply = NULL;
    int rc;

    for (size_t i = 0; i < 3; i++) {
        int n = snprintf(keys[i], sizeof keys[i], "%sjob:%s%s", r->prefix, id, suffix[i]);
        argv[i][0] = "HGETALL";
        argv[i][1] = keys[i];
        len[i][0] = 7;
        len[i][1] = (size_t)n;
        cmds[i] = (struct args){.n = 2, .cap = 2, .v = argv[i], .len = len[i]};
    }
    rc = kl_rs_transaction(r, cmds, 3, &reply, err);
    if (rc != KL_OK)
        return rc;
    if (reply->element[0]->type == REDIS_REPLY_ARRAY && reply->element[0]->elements == 0)
        rc = KL_STORE_FAIL(err, KL_ERR_NOT_FOUND, "no job %s", id);
    else
        rc = kl_rs_parse_job(reply, out, err);
    if (rc == KL_OK)
        out->read_ms = kl_clock_wall_ms(r->clock);
    freeReplyObject(reply);
    return rc;
}

int kl_rs_job_list(void *impl, const struct kl_store_job_filter *f, struct kl_store_job_page *out,
                   struct kl_err *err)
{
    struct rstore *r = impl;
    struct kl_store_job_page page = {0};
    redisReply *reply = NULL;
    struct args a;
    size_t len;
    const char *next;
    int rc;

    if ((rc = kl_rs_script_args(r, &a, 5, err)) != KL_OK)
        goto cleanup;
    kl_rs_arg_str(&a, f->stream);
    kl_rs_arg_str(&a, f->has_status ? kl_store_job_status_name(f->status) : "");
    kl_rs_arg_str(&a, f->cursor);
    kl_rs_arg_i64(&a, f->limit);
    kl_rs_arg_i64(&a, LIST_SCAN_CAP);
    if ((rc = kl_rs_script(r, KL_RS_JOB_LIST, &a, &reply, err)) != KL_OK)
        goto cleanup;
    next = kl_rs_el_str(reply, 0, &len);
    if (next == NULL || reply->elements - 1 > (size_t)f->limit ||
        !kl_rs_copy_n(page.next_cursor, sizeof page.next_cursor, next, len)) {
        rc = kl_rs_bad_reply("job_list", err);
        goto cleanup;
    }
    if (reply->elements > 1) {
        page.jobs = calloc(reply->elements - 1, sizeof *page.jobs);
        if (page.jobs == NULL) {
            rc = KL_STORE_FAIL(err, KL_ERR_NOMEM, "redis: out of memory");
            goto cleanup;
        }
    }
    for (size_t i = 1; i < reply->elements; i++) {
        kl_store_job_init(&page.jobs[page.n_jobs]);
        if ((rc = kl_rs_parse_job(reply->element[i], &page.jobs[page.n_jobs], err)) != KL_OK)
            goto cleanup;
        page.jobs[page.n_jobs].read_ms = kl_clock_wall_ms(r->clock);
        page.n_jobs++;
    }
    kl_store_job_page_free(out);
    *out = page;
    memset(&page, 0, sizeof page);
cleanup:
    kl_store_job_page_free(&page);
    freeReplyObject(reply);
    kl_rs_args_free(&a);
    return rc;
}

int kl_rs_job_status(void *impl, const char *id, enum kl_store_job_status *status,
                     bool *cancel_requested, struct kl_err *err)
{
    struct rstore *r = impl;
    char key[KEY_BUF], st[16];
    redisReply *reply = NULL;
    struct args a;
    size_t len;
    const char *v;
    int rc;

    if ((rc = kl_rs_args_init(&a, 4, err)) != KL_OK)
        goto cleanup;
    snprintf(key, sizeof key, "%sjob:%s", r->prefix, id);
    kl_rs_arg_str(&a, "HMGET");
    kl_rs_arg_str(&a, key);
    kl_rs_arg_str(&a, "status");
    kl_rs_arg_str(&a, "cancel");
    if ((rc = kl_rs_command(r, &a, 0, &reply, err)) != KL_OK)
        goto cleanup;
    if (reply->type == REDIS_REPLY_ERROR) {
        rc = kl_rs_map_error_reply("HMGET", reply->str, err);
        goto cleanup;
    }
    v = kl_rs_el_str(reply, 0, &len);
    if (v == NULL) {
        rc = KL_STORE_FAIL(err, KL_ERR_NOT_FOUND, "no job %s", id);
        goto cleanup;
    }
    if (!kl_rs_copy_n(st, sizeof st, v, len) || kl_store_job_status_parse(st, status) != 0) {
        rc = kl_rs_bad_reply("job status", err);
        goto cleanup;
    }
    *cancel_requested = kl_rs_el_is(reply, 1, "1");
cleanup:
    freeReplyObject(reply);
    kl_rs_args_free(&a);
    return rc;
}

int kl_rs_job_active(void *impl, const char *pipeline, const char *stream,
                     char id_out[KL_STORE_JOB_ID_SIZE], bool *found, struct kl_err *err)
{
    struct rstore *r = impl;
    redisReply *reply = NULL;
    struct args a;
    int rc;

    if ((rc = kl_rs_script_args(r, &a, 2, err)) != KL_OK)
        goto cleanup;
    kl_rs_arg_str(&a, pipeline);
    kl_rs_arg_str(&a, stream);
    if ((rc = kl_rs_script(r, KL_RS_JOB_ACTIVE, &a, &reply, err)) != KL_OK)
        goto cleanup;
    if (reply->type == REDIS_REPLY_NIL) {
        *found = false;
    } else if (reply->type == REDIS_REPLY_STRING && reply->len == KL_STORE_JOB_ID_LEN) {
        memcpy(id_out, reply->str, reply->len);
        id_out[reply->len] = '\0';
        *found = true;
    } else {
        rc = kl_rs_bad_reply("job_active", err);
    }
cleanup:
    freeReplyObject(reply);
    kl_rs_args_free(&a);
    return rc;
}

/* A transition or, with to = NULL, a cancel. */
static int transition(struct rstore *r, const char *id, const char *to,
                      const struct kl_store_job_error *e, enum kl_store_job_status *now,
                      struct kl_err *err)
{
    redisReply *reply = NULL;
    struct args a;
    char st[16];
    size_t len;
    const char *v;
    enum kl_store_job_status status;
    int rc;

    if ((rc = kl_rs_script_args(r, &a, 7, err)) != KL_OK)
        goto cleanup;
    kl_rs_arg_str(&a, id);
    kl_rs_arg_str(&a, to != NULL ? to : "cancel");
    kl_rs_arg_i64(&a, wall(r));
    kl_rs_arg_i64(&a, r->retention_ms);
    if (e != NULL) {
        size_t dn = e->detail != NULL ? strnlen(e->detail, KL_STORE_ERROR_MAX - 1) : 0;
        kl_rs_arg_str(&a, e->type != NULL ? e->type : "internal");
        kl_rs_arg_mem(&a, e->detail != NULL ? e->detail : "", dn);
        kl_rs_arg_str(&a, e->shard_id);
    } else {
        kl_rs_arg_str(&a, "");
        kl_rs_arg_str(&a, "");
        kl_rs_arg_str(&a, "");
    }
    if ((rc = kl_rs_script(r, KL_RS_JOB_TRANSITION, &a, &reply, err)) != KL_OK)
        goto cleanup;
    if (kl_rs_el_is(reply, 0, "missing")) {
        rc = KL_STORE_FAIL(err, KL_ERR_NOT_FOUND, "no job %s", id);
        goto cleanup;
    }
    v = kl_rs_el_str(reply, 1, &len);
    if (v == NULL || !kl_rs_copy_n(st, sizeof st, v, len) ||
        kl_store_job_status_parse(st, &status) != 0) {
        rc = kl_rs_bad_reply("job_transition", err);
        goto cleanup;
    }
    *now = status;
    if (kl_rs_el_is(reply, 0, "conflict")) {
        if (to != NULL)
            rc = KL_STORE_FAIL(err, KL_ERR_CONFLICT, "job %s is %s: it cannot become %s", id, st,
                               to);
        else
            rc = KL_STORE_FAIL(err, KL_ERR_CONFLICT, "job %s already %s", id, st);
    }
cleanup:
    freeReplyObject(reply);
    kl_rs_args_free(&a);
    return rc;
}

int kl_rs_job_transition(void *impl, const char *id, enum kl_store_job_status to,
                         const struct kl_store_job_error *e, enum kl_store_job_status *now,
                         struct kl_err *err)
{
    return transition(impl, id, kl_store_job_status_name(to), e, now, err);
}

int kl_rs_job_cancel(void *impl, const char *id, enum kl_store_job_status *now, struct kl_err *err)
{
    return transition(impl, id, NULL, NULL, now, err);
}

int kl_rs_job_progress(void *impl, const char *id, const struct kl_store_progress *p, bool *applied,
                       struct kl_err *err)
{
    struct rstore *r = impl;
    redisReply *reply = NULL;
    struct args a;
    int rc;

    if ((rc = kl_rs_script_args(r, &a, 22 + 2 * p->n_tables, err)) != KL_OK)
        goto cleanup;
    kl_rs_arg_str(&a, id);
    kl_rs_arg_str(&a, p->shard_id);
    kl_rs_arg_str(&a, p->sequence);
    kl_rs_arg_i64(&a, p->sequence != NULL ? p->sub_sequence : -1);
    kl_rs_arg_i64(&a, p->millis_behind_latest >= 0 ? p->millis_behind_latest : -1);
    kl_rs_arg_i64(&a, p->messages);
    kl_rs_arg_i64(&a, p->dead_letters);
    kl_rs_arg_str(&a, p->done ? "1" : "0");
    if (p->gap != NULL) {
        kl_rs_arg_str(&a, p->gap->from_sequence);
        kl_rs_arg_str(&a, p->gap->to_sequence);
        kl_rs_arg_mem(&a, p->gap->reason, strnlen(p->gap->reason, sizeof p->gap->reason));
    } else {
        kl_rs_arg_str(&a, "");
        kl_rs_arg_str(&a, "");
        kl_rs_arg_str(&a, "");
    }
    /* waiting: "" unchanged, "-" cleared, else the operation */
    kl_rs_arg_str(&a, p->waiting_on == NULL ? "" : p->waiting_on[0] ? p->waiting_on : "-");
    kl_rs_arg_i64(&a, p->waiting_since_ms);
    kl_rs_arg_i64(&a, p->waiting_until_ms);
    kl_rs_arg_mem(&a, p->waiting_why ? p->waiting_why : "",
                  p->waiting_why ? strnlen(p->waiting_why, KL_STORE_WAIT_WHY_MAX - 1) : 0);
    kl_rs_arg_i64(&a, p->released);
    kl_rs_arg_str(&a, p->resumed_from != NULL ? p->resumed_from : "");
    kl_rs_arg_str(&a, p->resumed_from_load_id != NULL ? p->resumed_from_load_id : "");
    kl_rs_arg_str(&a, p->owner != NULL ? p->owner : "");
    kl_rs_arg_i64(&a, p->sequence != NULL && p->last_arrival_ms > 0 ? p->last_arrival_ms : 0);
    kl_rs_arg_i64(&a, p->sequence != NULL && p->committed_at_ms > 0 ? p->committed_at_ms : 0);
    if (p->has_window && p->window >= 0)
        kl_rs_arg_i64(&a, p->window);
    else
        kl_rs_arg_str(&a, "");
    for (size_t i = 0; i < p->n_tables; i++) {
        kl_rs_arg_str(&a, p->tables[i].table);
        kl_rs_arg_i64(&a, p->tables[i].rows);
    }
    if ((rc = kl_rs_script(r, KL_RS_JOB_PROGRESS, &a, &reply, err)) != KL_OK)
        goto cleanup;
    if (reply->type != REDIS_REPLY_INTEGER)
        rc = kl_rs_bad_reply("job_progress", err);
    else if (reply->integer < 0)
        rc = KL_STORE_FAIL(err, KL_ERR_NOT_FOUND, "no job %s", id);
    else
        *applied = reply->integer == 1;
cleanup:
    freeReplyObject(reply);
    kl_rs_args_free(&a);
    return rc;
}

/* ---- the message budget ---- */

int kl_rs_budget_reserve(void *impl, const char *job_id, const char *shard_id, int64_t max_messages,
                         int64_t want, int64_t *granted, struct kl_err *err)
{
    struct rstore *r = impl;
    redisReply *reply = NULL;
    struct args a;
    int rc;

    if ((rc = kl_rs_script_args(r, &a, 4, err)) != KL_OK)
        goto cleanup;
    kl_rs_arg_str(&a, job_id);
    kl_rs_arg_str(&a, shard_id);
    kl_rs_arg_i64(&a, max_messages);
    kl_rs_arg_i64(&a, want);
    if ((rc = kl_rs_script(r, KL_RS_BUDGET_RESERVE, &a, &reply, err)) != KL_OK)
        goto cleanup;
    if (reply->type != REDIS_REPLY_INTEGER)
        rc = kl_rs_bad_reply("budget_reserve", err);
    else if (reply->integer < 0)
        rc = KL_STORE_FAIL(err, KL_ERR_NOT_FOUND, "no job %s", job_id);
    else
        *granted = reply->integer;
cleanup:
    freeReplyObject(reply);
    kl_rs_args_free(&a);
    return rc;
}

int kl_rs_budget_release(void *impl, const char *job_id, const char *shard_id, int64_t n,
                         struct kl_err *err)
{
    struct rstore *r = impl;
    redisReply *reply = NULL;
    struct args a;
    int rc;

    if ((rc = kl_rs_script_args(r, &a, 3, err)) != KL_OK)
        goto cleanup;
    kl_rs_arg_str(&a, job_id);
    kl_rs_arg_str(&a, shard_id);
    kl_rs_arg_i64(&a, n);
    if ((rc = kl_rs_script(r, KL_RS_BUDGET_RELEASE, &a, &reply, err)) != KL_OK)
        goto cleanup;
    if (reply->type != REDIS_REPLY_INTEGER)
        rc = kl_rs_bad_reply("budget_release", err);
    else if (reply->integer < 0)
        rc = KL_STORE_FAIL(err, KL_ERR_NOT_FOUND, "no job %s", job_id);
cleanup:
    freeReplyObject(reply);
    kl_rs_args_free(&a);
    return rc;
}
