/*
 * The Kinesis operations on records: GetShardIterator, GetRecords (its
 * answer parsed as it arrives, see page.h) and PutRecords. The call path is
 * client.c's.
 */
#include "core/kinesis/client.h"
#include "core/kinesis/client_internal.h"
#include "core/kinesis/page.h"
#include "core/util/base64.h"
#include "core/util/clock.h"
#include "core/util/err.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PUT_MAX_ENTRIES 500 /* PutRecords: entries per call */

/* ---- reading ---- */

int kl_kinesis_get_shard_iterator(struct kl_kinesis *k, struct kl_kinesis_call *opts,
                                  const char *stream, const char *shard_id,
                                  const struct kl_iterator_start *start, char **iterator_out,
                                  struct kl_err *err)
{
    cJSON *req = NULL, *answer = NULL;
    const char *it;
    char *copy;
    int rc = kl_kinesis_check_stream_name(stream, err);

    if (rc != KL_OK)
        return rc;
    req = kl_kinesis_stream_request(stream);
    if (req == NULL || cJSON_AddStringToObject(req, "ShardId", shard_id) == NULL ||
        cJSON_AddStringToObject(req, "ShardIteratorType", kl_iterator_type_name(start->type)) ==
            NULL) {
        rc = kl_kinesis_nomem(err);
        goto cleanup;
    }
    if (start->type == KL_ITER_AT_SEQUENCE_NUMBER || start->type == KL_ITER_AFTER_SEQUENCE_NUMBER) {
        if (start->sequence == NULL || start->sequence[0] == '\0') {
            rc = kl_err_set(err, KL_ERR_INVALID, "%s needs a sequence number",
                            kl_iterator_type_name(start->type));
            goto cleanup;
        }
        if (cJSON_AddStringToObject(req, "StartingSequenceNumber", start->sequence) == NULL) {
            rc = kl_kinesis_nomem(err);
            goto cleanup;
        }
    } else if (start->type == KL_ITER_AT_TIMESTAMP) {
        if (cJSON_AddNumberToObject(req, "Timestamp", (double)start->timestamp_ms / 1000.0) ==
            NULL) {
            rc = kl_kinesis_nomem(err);
            goto cleanup;
        }
    }
    rc = kl_kinesis_call_op(k, opts, "GetShardIterator", req, &answer, err);
    if (rc != KL_OK)
        goto cleanup;
    it = kl_kinesis_jstr(answer, "ShardIterator");
    if (it == NULL) {
        rc =
            kl_err_set(err, KL_ERR_UPSTREAM, "GetShardIterator: no ShardIterator for %s", shard_id);
        goto cleanup;
    }
    copy = strdup(it);
    if (copy == NULL) {
        rc = kl_kinesis_nomem(err);
        goto cleanup;
    }
    *iterator_out = copy;

cleanup:
    cJSON_Delete(req);
    cJSON_Delete(answer);
    return rc;
}

/* ---- GetRecords: the answer streamed into a page (page.h) ---- */

#define MAX_PAGE_BYTES ((size_t)48 << 20) /* a page holds 10 MiB of data on AWS */

static void page_begin(void *ctx)
{
    kl_page_parser_restart(ctx);
}

static int page_feed(void *ctx, const char *data, size_t n, struct kl_err *err)
{
    return kl_page_parser_feed(ctx, data, n, err);
}

static int page_end(void *ctx, struct kl_err *err)
{
    return kl_page_parser_end(ctx, err);
}

int kl_kinesis_get_records(struct kl_kinesis *k, struct kl_kinesis_call *opts, const char *iterator,
                           int limit, struct kl_record_batch *out, struct kl_err *err)
{
    static const struct kl_kinesis_sink page_sink = {NULL, page_begin, page_feed, page_end};
    struct kl_kinesis_sink sink = page_sink;
    struct kl_page_parser page;
    cJSON *req = NULL;
    int rc;

    if (limit < 1 || limit > 10000)
        return kl_err_set(err, KL_ERR_INVALID, "GetRecords limit must be 1..10000, not %d", limit);
    if (iterator == NULL || iterator[0] == '\0')
        return kl_err_set(err, KL_ERR_INVALID, "GetRecords needs a shard iterator");
    req = cJSON_CreateObject();
    if (req == NULL || cJSON_AddStringToObject(req, "ShardIterator", iterator) == NULL ||
        cJSON_AddNumberToObject(req, "Limit", limit) == NULL) {
        rc = kl_kinesis_nomem(err);
        goto cleanup;
    }
    kl_page_parser_init(&page, opts != NULL ? opts->memory : NULL,
                        opts != NULL ? &opts->charged : NULL, MAX_PAGE_BYTES);
    if (opts != NULL && opts->bounded)
        kl_page_parser_bound(&page);
    sink.ctx = &page;
    rc = kl_kinesis_call_stream(k, opts, "GetRecords", req, &sink, err);
    if (opts != NULL)
        opts->outgrown = page.outgrown;
    if (rc == KL_OK)
        rc = kl_page_parser_finish(&page, out, err);
    kl_page_parser_free(&page);

cleanup:
    cJSON_Delete(req);
    return rc;
}

/* ---- writing ---- */

/* Builds a PutRecords request for the entries whose index is in `todo`. */
static cJSON *put_request(const char *stream, const struct kl_put_entry *entries,
                          const size_t *todo, size_t n_todo)
{
    cJSON *req = kl_kinesis_stream_request(stream), *arr;
    if (req == NULL)
        return NULL;
    arr = cJSON_AddArrayToObject(req, "Records");
    if (arr == NULL)
        goto fail;
    for (size_t i = 0; i < n_todo; i++) {
        const struct kl_put_entry *e = &entries[todo[i]];
        cJSON *item = cJSON_CreateObject();
        char *b64 = malloc(kl_base64_encoded_size(e->data_len));
        bool ok = item != NULL && b64 != NULL;
        if (ok) {
            kl_base64_encode(e->data, e->data_len, b64, true);
            ok = cJSON_AddStringToObject(item, "Data", b64) != NULL &&
                 cJSON_AddStringToObject(item, "PartitionKey", e->partition_key) != NULL &&
                 (e->explicit_hash_key == NULL ||
                  cJSON_AddStringToObject(item, "ExplicitHashKey", e->explicit_hash_key) != NULL);
        }
        free(b64);
        if (!ok || !cJSON_AddItemToArray(arr, item)) {
            cJSON_Delete(item);
            goto fail;
        }
    }
    return req;
fail:
    cJSON_Delete(req);
    return NULL;
}

int kl_kinesis_put_records(struct kl_kinesis *k, const char *stream,
                           const struct kl_put_entry *entries, size_t n,
                           struct kl_put_result_entry *results, struct kl_err *err)
{
    size_t todo[PUT_MAX_ENTRIES], n_todo = n;
    cJSON *req = NULL, *answer = NULL;
    int rc = kl_kinesis_check_stream_name(stream, err);

    if (rc != KL_OK)
        return rc;
    if (n == 0 || n > PUT_MAX_ENTRIES)
        return kl_err_set(err, KL_ERR_INVALID, "PutRecords takes 1..500 entries, not %zu", n);
    for (size_t i = 0; i < n; i++) {
        if (entries[i].partition_key == NULL || entries[i].partition_key[0] == '\0')
            return kl_err_set(err, KL_ERR_INVALID, "PutRecords entry %zu has no partition key", i);
        todo[i] = i;
        if (results != NULL)
            memset(&results[i], 0, sizeof results[i]);
    }
    for (int round = 1;; round++) {
        const cJSON *items, *item;
        size_t still = 0, idx = 0;

        req = put_request(stream, entries, todo, n_todo);
        if (req == NULL) {
            rc = kl_kinesis_nomem(err);
            goto cleanup;
        }
        rc = kl_kinesis_call_op(k, NULL, "PutRecords", req, &answer, err);
        if (rc != KL_OK)
            goto cleanup;
        items = cJSON_GetObjectItemCaseSensitive(answer, "Records");
        if (cJSON_GetArraySize(items) != (int)n_todo) {
            rc = kl_err_set(err, KL_ERR_UPSTREAM, "PutRecords: %d results for %zu entries",
                            cJSON_GetArraySize(items), n_todo);
            goto cleanup;
        }
        cJSON_ArrayForEach(item, items)
        {
            size_t e;
            if (idx >= n_todo)
                break;
            e = todo[idx++];
            const char *code = kl_kinesis_jstr(item, "ErrorCode");
            if (code != NULL) {
                if (results != NULL)
                    snprintf(results[e].error_code, sizeof results[e].error_code, "%s", code);
                todo[still++] = e;
            } else if (results != NULL) {
                snprintf(results[e].sequence, sizeof results[e].sequence, "%s",
                         kl_kinesis_jstr(item, "SequenceNumber")
                             ? kl_kinesis_jstr(item, "SequenceNumber")
                             : "");
                snprintf(results[e].shard_id, sizeof results[e].shard_id, "%s",
                         kl_kinesis_jstr(item, "ShardId") ? kl_kinesis_jstr(item, "ShardId") : "");
                results[e].error_code[0] = '\0';
            }
        }
        cJSON_Delete(req);
        cJSON_Delete(answer);
        req = answer = NULL;
        n_todo = still;
        if (n_todo == 0)
            break;
        if (round >= k->max_attempts || kl_kinesis_cancelled(k)) {
            rc = kl_err_set(err, KL_ERR_UNAVAILABLE,
                            "PutRecords: %zu of %zu entries still failing after %d rounds", n_todo,
                            n, round);
            goto cleanup;
        }
        atomic_fetch_add(&k->retries, 1);
        kl_clock_sleep_ms(k->clock, kl_kinesis_backoff_ms(k, round));
    }
    rc = KL_OK;

cleanup:
    cJSON_Delete(req);
    cJSON_Delete(answer);
    return rc;
}
