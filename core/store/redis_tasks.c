/*
 * The Redis store's task queue (enqueue, the blocking take with its wake-up
 * list, heartbeat, ack, nack, release, stats) and shard leases.
 */
#include "core/store/redis_internal.h"
#include "core/store/internal.h"
#include "core/util/err.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- tasks ---- */

int kl_rs_task_enqueue(void *impl, const char *job_id, const char *shard_id, const char *meta,
                       int64_t delay_ms, bool *created, struct kl_err *err)
{
    struct rstore *r = impl;
    redisReply *reply = NULL;
    struct args a;
    int rc;

    if ((rc = kl_rs_script_args(r, &a, 4, err)) != KL_OK)
        goto cleanup;
    kl_rs_arg_str(&a, job_id);
    kl_rs_arg_str(&a, shard_id);
    kl_rs_arg_str(&a, meta);
    kl_rs_arg_i64(&a, delay_ms);
    if ((rc = kl_rs_script(r, KL_RS_TASK_ENQUEUE, &a, &reply, err)) != KL_OK)
        goto cleanup;
    if (reply->type != REDIS_REPLY_STRING && reply->type != REDIS_REPLY_STATUS)
        rc = kl_rs_bad_reply("task_enqueue", err);
    else if (strcmp(reply->str, "missing") == 0)
        rc = KL_STORE_FAIL(err, KL_ERR_NOT_FOUND, "no job %s", job_id);
    else if (strcmp(reply->str, "final") == 0)
        rc = KL_STORE_FAIL(err, KL_ERR_CONFLICT, "job %s is finished: no new tasks", job_id);
    else
        *created = strcmp(reply->str, "created") == 0;
cleanup:
    freeReplyObject(reply);
    kl_rs_args_free(&a);
    return rc;
}

/* One non-blocking take (pop = true) or reap (pop = false). */
static int take_once(struct rstore *r, const char *owner, int64_t lease_ms, bool pop,
                     struct kl_store_task *out, bool *got, int64_t *requeued, struct kl_err *err)
{
    redisReply *reply = NULL;
    struct kl_store_task t;
    struct args a;
    size_t n;
    const char *s;
    int rc;

    if ((rc = kl_rs_script_args(r, &a, 3, err)) != KL_OK)
        goto cleanup;
    kl_rs_arg_str(&a, owner);
    kl_rs_arg_i64(&a, lease_ms);
    kl_rs_arg_str(&a, pop ? "1" : "0");
    if ((rc = kl_rs_script(r, KL_RS_TASK_TAKE, &a, &reply, err)) != KL_OK)
        goto cleanup;
    if (!pop) {
        if (reply->type != REDIS_REPLY_INTEGER)
            rc = kl_rs_bad_reply("task_take", err);
        else
            *requeued = reply->integer;
        goto cleanup;
    }
    if (reply->type == REDIS_REPLY_NIL) {
        *got = false;
        goto cleanup;
    }
    memset(&t, 0, sizeof t);
    s = kl_rs_el_str(reply, 0, &n);
    if (!kl_rs_copy_n(t.job_id, sizeof t.job_id, s, n)) {
        rc = kl_rs_bad_reply("task_take", err);
        goto cleanup;
    }
    s = kl_rs_el_str(reply, 1, &n);
    if (!kl_rs_copy_n(t.shard_id, sizeof t.shard_id, s, n)) {
        rc = kl_rs_bad_reply("task_take", err);
        goto cleanup;
    }
    t.attempt = (int)kl_rs_el_i64(reply, 2, 0);
    t.delivery = kl_rs_el_i64(reply, 3, 0);
    s = kl_rs_el_str(reply, 4, &n);
    kl_rs_copy_n(t.meta, sizeof t.meta, s != NULL ? s : "", s != NULL ? n : 0);
    *out = t;
    *got = true;
cleanup:
    freeReplyObject(reply);
    kl_rs_args_free(&a);
    return rc;
}

/* Waits up to ms for an enqueue's wake-up token. */
static int wait_wake(struct rstore *r, int64_t ms, struct kl_err *err)
{
    char key[KEY_BUF], secs[32];
    redisReply *reply = NULL;
    struct args a;
    int rc;

    if ((rc = kl_rs_args_init(&a, 3, err)) != KL_OK)
        goto cleanup;
    snprintf(key, sizeof key, "%sq:wake", r->prefix);
    snprintf(secs, sizeof secs, "%lld.%03lld", (long long)(ms / 1000), (long long)(ms % 1000));
    kl_rs_arg_str(&a, "BLPOP");
    kl_rs_arg_str(&a, key);
    kl_rs_arg_str(&a, secs);
    if ((rc = kl_rs_command(r, &a, ms, &reply, err)) != KL_OK)
        goto cleanup;
    if (reply->type == REDIS_REPLY_ERROR)
        rc = kl_rs_map_error_reply("BLPOP", reply->str, err);
cleanup:
    freeReplyObject(reply);
    kl_rs_args_free(&a);
    return rc;
}

int kl_rs_task_take(void *impl, const char *owner, int64_t lease_ms, int64_t timeout_ms,
                    struct kl_store_task *out, bool *got, struct kl_err *err)
{
    struct rstore *r = impl;
    int64_t deadline = kl_rs_real_ms() + timeout_ms;
    int rc;

    for (;;) {
        int64_t left;
        bool taken = false;
        int64_t none = 0;
        rc = take_once(r, owner, lease_ms, true, out, &taken, &none, err);
        if (rc != KL_OK || taken) {
            *got = taken;
            return rc;
        }
        left = deadline - kl_rs_real_ms();
        if (left <= 0) {
            *got = false;
            return KL_OK;
        }
        if ((rc = wait_wake(r, left < r->poll_ms ? left : r->poll_ms, err)) != KL_OK)
            return rc;
    }
}

/* Runs a task script that answers 1 (done) or 0 (this delivery is not held). */
static int task_call(struct rstore *r, enum kl_redis_script id, const struct kl_store_task *t,
                     int64_t ms, struct kl_err *err)
{
    redisReply *reply = NULL;
    struct args a;
    int rc;

    if ((rc = kl_rs_script_args(r, &a, 4, err)) != KL_OK)
        goto cleanup;
    kl_rs_arg_str(&a, t->job_id);
    kl_rs_arg_str(&a, t->shard_id);
    kl_rs_arg_i64(&a, t->delivery);
    kl_rs_arg_i64(&a, ms);
    if ((rc = kl_rs_script(r, id, &a, &reply, err)) != KL_OK)
        goto cleanup;
    if (reply->type != REDIS_REPLY_INTEGER)
        rc = kl_rs_bad_reply(kl_redis_script_name[id], err);
    else if (reply->integer != 1)
        rc = KL_STORE_FAIL(err, KL_ERR_CONFLICT,
                           "task %s/%s delivery %lld is no longer held (taken over or finished)",
                           t->job_id, t->shard_id, (long long)t->delivery);
cleanup:
    freeReplyObject(reply);
    kl_rs_args_free(&a);
    return rc;
}

int kl_rs_task_heartbeat(void *impl, const struct kl_store_task *t, int64_t lease_ms,
                         struct kl_err *err)
{
    return task_call(impl, KL_RS_TASK_HEARTBEAT, t, lease_ms, err);
}

int kl_rs_task_release(void *impl, const struct kl_store_task *t, int64_t delay_ms,
                       struct kl_err *err)
{
    return task_call(impl, KL_RS_TASK_RELEASE, t, delay_ms, err);
}

int kl_rs_task_nack(void *impl, const struct kl_store_task *t, int64_t delay_ms, struct kl_err *err)
{
    return task_call(impl, KL_RS_TASK_NACK, t, delay_ms, err);
}

int kl_rs_task_ack(void *impl, const struct kl_store_task *t, struct kl_store_task_ack *out,
                   struct kl_err *err)
{
    struct rstore *r = impl;
    redisReply *reply = NULL;
    struct args a;
    int rc;

    if ((rc = kl_rs_script_args(r, &a, 3, err)) != KL_OK)
        goto cleanup;
    kl_rs_arg_str(&a, t->job_id);
    kl_rs_arg_str(&a, t->shard_id);
    kl_rs_arg_i64(&a, t->delivery);
    if ((rc = kl_rs_script(r, KL_RS_TASK_ACK, &a, &reply, err)) != KL_OK)
        goto cleanup;
    if (reply->type == REDIS_REPLY_NIL) {
        rc = KL_STORE_FAIL(err, KL_ERR_CONFLICT,
                           "task %s/%s delivery %lld is no longer held (taken over or lost)",
                           t->job_id, t->shard_id, (long long)t->delivery);
        goto cleanup;
    }
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2) {
        rc = kl_rs_bad_reply("task_ack", err);
        goto cleanup;
    }
    out->tasks_done = kl_rs_el_i64(reply, 0, 0);
    out->tasks_total = kl_rs_el_i64(reply, 1, 0);
    out->last = out->tasks_done == out->tasks_total;
cleanup:
    freeReplyObject(reply);
    kl_rs_args_free(&a);
    return rc;
}

int kl_rs_stats(void *impl, struct kl_store_stats *out, struct kl_err *err)
{
    struct rstore *r = impl;
    redisReply *reply = NULL;
    struct args a;
    int rc;

    if ((rc = kl_rs_script_args(r, &a, 0, err)) != KL_OK)
        goto cleanup;
    if ((rc = kl_rs_script(r, KL_RS_STATS, &a, &reply, err)) != KL_OK)
        goto cleanup;
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 3 + KL_STORE_JOB_STATUSES) {
        rc = kl_rs_bad_reply("stats", err);
        goto cleanup;
    }
    out->queued = kl_rs_el_i64(reply, 0, 0);
    out->in_flight = kl_rs_el_i64(reply, 1, 0);
    out->delayed = kl_rs_el_i64(reply, 2, 0);
    for (size_t s = 0; s < KL_STORE_JOB_STATUSES; s++)
        out->jobs[s] = kl_rs_el_i64(reply, 3 + s, 0);
cleanup:
    freeReplyObject(reply);
    kl_rs_args_free(&a);
    return rc;
}

/* ---- leases ---- */

static int lease_args(struct rstore *r, struct args *a, const struct kl_store_shard_key *k,
                      size_t extra, struct kl_err *err)
{
    int rc = kl_rs_script_args(r, a, 3 + extra, err);
    if (rc != KL_OK)
        return rc;
    kl_rs_arg_str(a, k->pipeline);
    kl_rs_arg_str(a, k->stream);
    kl_rs_arg_str(a, k->shard_id);
    return KL_OK;
}

int kl_rs_lease_take(void *impl, const struct kl_store_shard_key *k, const char *owner,
                     int64_t ttl_ms, int64_t min_token, int64_t *token, struct kl_err *err)
{
    struct rstore *r = impl;
    redisReply *reply = NULL;
    struct args a;
    int64_t t;
    int rc;

    if ((rc = lease_args(r, &a, k, 3, err)) != KL_OK)
        goto cleanup;
    kl_rs_arg_str(&a, owner);
    kl_rs_arg_i64(&a, ttl_ms);
    kl_rs_arg_i64(&a, min_token);
    if ((rc = kl_rs_script(r, KL_RS_LEASE_TAKE, &a, &reply, err)) != KL_OK)
        goto cleanup;
    if (kl_rs_el_is(reply, 0, "held")) {
        size_t n;
        const char *who = kl_rs_el_str(reply, 1, &n);
        rc = KL_STORE_FAIL(err, KL_ERR_CONFLICT, "shard %s is leased by %.*s for %lld ms more",
                           k->shard_id, who != NULL ? (int)(n > 128 ? 128 : n) : 1,
                           who != NULL ? who : "?", (long long)kl_rs_el_i64(reply, 2, 0));
        goto cleanup;
    }
    t = kl_rs_el_i64(reply, 1, -1);
    if (!kl_rs_el_is(reply, 0, "ok") || t < 1) {
        rc = kl_rs_bad_reply("lease_take", err);
        goto cleanup;
    }
    *token = t;
cleanup:
    freeReplyObject(reply);
    kl_rs_args_free(&a);
    return rc;
}

int kl_rs_lease_renew(void *impl, const struct kl_store_shard_key *k, const char *owner,
                      int64_t token, int64_t ttl_ms, struct kl_err *err)
{
    struct rstore *r = impl;
    redisReply *reply = NULL;
    struct args a;
    int rc;

    if ((rc = lease_args(r, &a, k, 3, err)) != KL_OK)
        goto cleanup;
    kl_rs_arg_str(&a, owner);
    kl_rs_arg_i64(&a, token);
    kl_rs_arg_i64(&a, ttl_ms);
    if ((rc = kl_rs_script(r, KL_RS_LEASE_RENEW, &a, &reply, err)) != KL_OK)
        goto cleanup;
    if (reply->type != REDIS_REPLY_INTEGER)
        rc = kl_rs_bad_reply("lease_renew", err);
    else if (reply->integer != 1)
        rc = KL_STORE_FAIL(err, KL_ERR_CONFLICT, "lease of shard %s with token %lld is lost",
                           k->shard_id, (long long)token);
cleanup:
    freeReplyObject(reply);
    kl_rs_args_free(&a);
    return rc;
}

int kl_rs_lease_release(void *impl, const struct kl_store_shard_key *k, const char *owner,
                        int64_t token, struct kl_err *err)
{
    struct rstore *r = impl;
    redisReply *reply = NULL;
    struct args a;
    int rc;

    if ((rc = lease_args(r, &a, k, 2, err)) != KL_OK)
        goto cleanup;
    kl_rs_arg_str(&a, owner);
    kl_rs_arg_i64(&a, token);
    if ((rc = kl_rs_script(r, KL_RS_LEASE_RELEASE, &a, &reply, err)) != KL_OK)
        goto cleanup;
    if (reply->type == REDIS_REPLY_ARRAY) {
        size_t n;
        const char *holder = kl_rs_el_str(reply, 0, &n);
        rc = KL_STORE_FAIL(err, KL_ERR_CONFLICT, "shard %s is leased by %.*s (token owner)",
                           k->shard_id, holder != NULL ? (int)(n > 160 ? 160 : n) : 1,
                           holder != NULL ? holder : "?");
    } else if (reply->type != REDIS_REPLY_INTEGER) {
        rc = kl_rs_bad_reply("lease_release", err);
    }
cleanup:
    freeReplyObject(reply);
    kl_rs_args_free(&a);
    return rc;
}
