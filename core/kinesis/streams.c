/*
 * The Kinesis operations on streams and shards: ListStreams,
 * DescribeStreamSummary, CreateStream, DeleteStream and ListShards, each
 * decoded into the plain structs of client.h. The call path is client.c's.
 */
#include "core/kinesis/client.h"
#include "core/kinesis/client_internal.h"
#include "core/util/clock.h"
#include "core/util/err.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define CREATE_WAIT_MS 60000 /* CreateStream: until the stream is ACTIVE */

/* ---- streams ---- */

int kl_kinesis_list_streams(struct kl_kinesis *k, struct kl_string_list *out, struct kl_err *err)
{
    struct kl_string_list list = {NULL, 0};
    cJSON *req = NULL, *answer = NULL;
    char *last = NULL;
    int rc = KL_OK;

    for (;;) {
        const cJSON *names, *name;
        const cJSON *more;

        req = cJSON_CreateObject();
        if (req == NULL || cJSON_AddNumberToObject(req, "Limit", 1000) == NULL ||
            (last != NULL &&
             cJSON_AddStringToObject(req, "ExclusiveStartStreamName", last) == NULL)) {
            rc = kl_kinesis_nomem(err);
            goto cleanup;
        }
        rc = kl_kinesis_call_op(k, NULL, "ListStreams", req, &answer, err);
        if (rc != KL_OK)
            goto cleanup;
        names = cJSON_GetObjectItemCaseSensitive(answer, "StreamNames");
        cJSON_ArrayForEach(name, names)
        {
            char **grown;
            if (!cJSON_IsString(name))
                continue;
            grown = realloc(list.items, (list.n + 1) * sizeof *grown);
            if (grown == NULL) {
                rc = kl_kinesis_nomem(err);
                goto cleanup;
            }
            list.items = grown;
            list.items[list.n] = strdup(name->valuestring);
            if (list.items[list.n] == NULL) {
                rc = kl_kinesis_nomem(err);
                goto cleanup;
            }
            list.n++;
        }
        more = cJSON_GetObjectItemCaseSensitive(answer, "HasMoreStreams");
        if (!cJSON_IsTrue(more) || list.n == 0 || cJSON_GetArraySize(names) == 0)
            break;
        free(last);
        last = strdup(list.items[list.n - 1]);
        if (last == NULL) {
            rc = kl_kinesis_nomem(err);
            goto cleanup;
        }
        cJSON_Delete(req);
        cJSON_Delete(answer);
        req = answer = NULL;
    }
    *out = list;
    list.items = NULL;
    list.n = 0;

cleanup:
    kl_string_list_free(&list);
    free(last);
    cJSON_Delete(req);
    cJSON_Delete(answer);
    return rc;
}

cJSON *kl_kinesis_stream_request(const char *stream)
{
    cJSON *req = cJSON_CreateObject();
    if (req != NULL && cJSON_AddStringToObject(req, "StreamName", stream) == NULL) {
        cJSON_Delete(req);
        return NULL;
    }
    return req;
}

int kl_kinesis_check_stream_name(const char *stream, struct kl_err *err)
{
    if (!kl_stream_name_valid(stream))
        return kl_err_set(err, KL_ERR_INVALID,
                          "invalid stream name '%.140s': 1 to 128 characters of a-z, A-Z, 0-9, "
                          "'_', '.', '-'",
                          stream ? stream : "");
    return KL_OK;
}

int kl_kinesis_describe_stream_summary(struct kl_kinesis *k, const char *stream,
                                       struct kl_stream_summary *out, struct kl_err *err)
{
    struct kl_stream_summary s;
    cJSON *req = NULL, *answer = NULL;
    const cJSON *d, *mode;
    double num;
    int rc = kl_kinesis_check_stream_name(stream, err);

    if (rc != KL_OK)
        return rc;
    req = kl_kinesis_stream_request(stream);
    if (req == NULL) {
        rc = kl_kinesis_nomem(err);
        goto cleanup;
    }
    rc = kl_kinesis_call_op(k, NULL, "DescribeStreamSummary", req, &answer, err);
    if (rc != KL_OK)
        goto cleanup;
    memset(&s, 0, sizeof s);
    d = cJSON_GetObjectItemCaseSensitive(answer, "StreamDescriptionSummary");
    if (!cJSON_IsObject(d)) {
        rc = kl_err_set(err, KL_ERR_UPSTREAM, "DescribeStreamSummary: no StreamDescriptionSummary");
        goto cleanup;
    }
    if ((rc = kl_kinesis_copy_field(s.name, sizeof s.name, kl_kinesis_jstr(d, "StreamName"),
                                    "StreamName", err)) ||
        (rc = kl_kinesis_copy_field(s.arn, sizeof s.arn, kl_kinesis_jstr(d, "StreamARN"),
                                    "StreamARN", err)) ||
        (rc = kl_kinesis_copy_field(s.status, sizeof s.status, kl_kinesis_jstr(d, "StreamStatus"),
                                    "StreamStatus", err)))
        goto cleanup;
    if (kl_kinesis_jnum(d, "RetentionPeriodHours", &num))
        s.retention_hours = (int)num;
    if (kl_kinesis_jnum(d, "OpenShardCount", &num))
        s.open_shard_count = (int)num;
    if (kl_kinesis_jnum(d, "StreamCreationTimestamp", &num))
        s.created_ms = llround(num * 1000.0);
    mode = cJSON_GetObjectItemCaseSensitive(d, "StreamModeDetails");
    if (cJSON_IsObject(mode) &&
        (rc = kl_kinesis_copy_field(s.mode, sizeof s.mode, kl_kinesis_jstr(mode, "StreamMode"),
                                    "StreamMode", err)))
        goto cleanup;
    *out = s;

cleanup:
    cJSON_Delete(req);
    cJSON_Delete(answer);
    return rc;
}

/* Counts the retries of one call. */
struct retry_count {
    struct kl_kinesis_call call;
    int retries;
};

static void count_retry(void *ctx, const char *operation, int64_t since_ms, int64_t deadline_ms,
                        const struct kl_err *why)
{
    struct retry_count *c = ctx;
    (void)operation, (void)since_ms, (void)deadline_ms, (void)why;
    c->retries++;
}

int kl_kinesis_create_stream(struct kl_kinesis *k, const char *stream, int shard_count,
                             struct kl_err *err)
{
    struct retry_count retried = {{0, count_retry, NULL, false, NULL, 0, false, false}, 0};
    struct kl_stream_summary s;
    cJSON *req = NULL, *answer = NULL;
    int64_t deadline;
    int rc = kl_kinesis_check_stream_name(stream, err);

    retried.call.ctx = &retried;
    if (rc != KL_OK)
        return rc;
    req = kl_kinesis_stream_request(stream);
    if (req == NULL || cJSON_AddNumberToObject(req, "ShardCount", shard_count) == NULL) {
        rc = kl_kinesis_nomem(err);
        goto cleanup;
    }
    rc = kl_kinesis_call_op(k, &retried.call, "CreateStream", req, &answer, err);
    /* An attempt that timed out or failed in transit may still have created
     * the stream: "in use" after a retry is our own creation. */
    if (rc == KL_ERR_CONFLICT && retried.retries > 0)
        rc = KL_OK;
    if (rc != KL_OK)
        goto cleanup;
    /* Wait for ACTIVE: emulators and AWS both create asynchronously. */
    deadline = kl_clock_monotonic_ms(k->clock) + CREATE_WAIT_MS;
    for (;;) {
        rc = kl_kinesis_describe_stream_summary(k, stream, &s, err);
        if (rc != KL_OK && rc != KL_ERR_NOT_FOUND)
            goto cleanup;
        if (rc == KL_OK && strcmp(s.status, "ACTIVE") == 0)
            break;
        if (kl_clock_monotonic_ms(k->clock) > deadline) {
            rc = kl_err_set(err, KL_ERR_UNAVAILABLE, "stream %s is not ACTIVE after %d ms", stream,
                            CREATE_WAIT_MS);
            goto cleanup;
        }
        kl_clock_sleep_ms(k->clock, 50);
    }
    rc = KL_OK;

cleanup:
    cJSON_Delete(req);
    cJSON_Delete(answer);
    return rc;
}

int kl_kinesis_delete_stream(struct kl_kinesis *k, const char *stream, struct kl_err *err)
{
    cJSON *req = NULL, *answer = NULL;
    int rc = kl_kinesis_check_stream_name(stream, err);

    if (rc != KL_OK)
        return rc;
    req = kl_kinesis_stream_request(stream);
    if (req == NULL) {
        rc = kl_kinesis_nomem(err);
        goto cleanup;
    }
    rc = kl_kinesis_call_op(k, NULL, "DeleteStream", req, &answer, err);

cleanup:
    cJSON_Delete(req);
    cJSON_Delete(answer);
    return rc;
}

/* ---- shards ---- */

static int parse_shard(const cJSON *j, struct kl_shard *s, struct kl_err *err)
{
    const cJSON *hash = cJSON_GetObjectItemCaseSensitive(j, "HashKeyRange");
    const cJSON *seq = cJSON_GetObjectItemCaseSensitive(j, "SequenceNumberRange");
    int rc;

    memset(s, 0, sizeof *s);
    if (kl_kinesis_jstr(j, "ShardId") == NULL)
        return kl_err_set(err, KL_ERR_UPSTREAM, "ListShards: a shard without ShardId");
    if ((rc = kl_kinesis_copy_field(s->id, sizeof s->id, kl_kinesis_jstr(j, "ShardId"), "ShardId",
                                    err)) ||
        (rc = kl_kinesis_copy_field(s->parent_id, sizeof s->parent_id,
                                    kl_kinesis_jstr(j, "ParentShardId"), "ParentShardId", err)) ||
        (rc = kl_kinesis_copy_field(s->adjacent_parent_id, sizeof s->adjacent_parent_id,
                                    kl_kinesis_jstr(j, "AdjacentParentShardId"),
                                    "AdjacentParentShardId", err)))
        return rc;
    if (cJSON_IsObject(hash) &&
        ((rc = kl_kinesis_copy_field(s->starting_hash_key, sizeof s->starting_hash_key,
                                     kl_kinesis_jstr(hash, "StartingHashKey"), "StartingHashKey",
                                     err)) ||
         (rc =
              kl_kinesis_copy_field(s->ending_hash_key, sizeof s->ending_hash_key,
                                    kl_kinesis_jstr(hash, "EndingHashKey"), "EndingHashKey", err))))
        return rc;
    if (cJSON_IsObject(seq) &&
        ((rc = kl_kinesis_copy_field(s->starting_seq, sizeof s->starting_seq,
                                     kl_kinesis_jstr(seq, "StartingSequenceNumber"),
                                     "StartingSequenceNumber", err)) ||
         (rc = kl_kinesis_copy_field(s->ending_seq, sizeof s->ending_seq,
                                     kl_kinesis_jstr(seq, "EndingSequenceNumber"),
                                     "EndingSequenceNumber", err))))
        return rc;
    return KL_OK;
}

int kl_kinesis_list_shards(struct kl_kinesis *k, const char *stream, struct kl_shard_list *out,
                           struct kl_err *err)
{
    struct kl_shard_list list = {NULL, 0};
    cJSON *req = NULL, *answer = NULL;
    char *token = NULL;
    int rc = kl_kinesis_check_stream_name(stream, err);

    if (rc != KL_OK)
        return rc;
    for (;;) {
        const cJSON *shards, *item;
        const char *next;

        /* A NextToken request must not name the stream (and kinesalite never
         * sends a token); a fresh page or a restart after an expired token
         * names the stream and the last shard seen. */
        req = cJSON_CreateObject();
        if (req == NULL) {
            rc = kl_kinesis_nomem(err);
            goto cleanup;
        }
        if (token != NULL) {
            if (cJSON_AddStringToObject(req, "NextToken", token) == NULL) {
                rc = kl_kinesis_nomem(err);
                goto cleanup;
            }
        } else if (cJSON_AddStringToObject(req, "StreamName", stream) == NULL ||
                   (list.n > 0 && cJSON_AddStringToObject(req, "ExclusiveStartShardId",
                                                          list.shards[list.n - 1].id) == NULL)) {
            rc = kl_kinesis_nomem(err);
            goto cleanup;
        }
        rc = kl_kinesis_call_op(k, NULL, "ListShards", req, &answer, err);
        if (rc == KL_ERR_EXPIRED && token != NULL) {
            /* The token aged out (300 s): continue after the last shard we have. */
            free(token);
            token = NULL;
            cJSON_Delete(req);
            req = NULL;
            continue;
        }
        if (rc != KL_OK)
            goto cleanup;
        shards = cJSON_GetObjectItemCaseSensitive(answer, "Shards");
        cJSON_ArrayForEach(item, shards)
        {
            struct kl_shard *grown = realloc(list.shards, (list.n + 1) * sizeof *grown);
            if (grown == NULL) {
                rc = kl_kinesis_nomem(err);
                goto cleanup;
            }
            list.shards = grown;
            rc = parse_shard(item, &list.shards[list.n], err);
            if (rc != KL_OK)
                goto cleanup;
            list.n++;
        }
        next = kl_kinesis_jstr(answer, "NextToken");
        free(token);
        token = NULL;
        if (next == NULL || cJSON_GetArraySize(shards) == 0)
            break;
        token = strdup(next);
        if (token == NULL) {
            rc = kl_kinesis_nomem(err);
            goto cleanup;
        }
        cJSON_Delete(req);
        cJSON_Delete(answer);
        req = answer = NULL;
    }
    *out = list;
    list.shards = NULL;
    list.n = 0;

cleanup:
    kl_shard_list_free(&list);
    free(token);
    cJSON_Delete(req);
    cJSON_Delete(answer);
    return rc;
}
