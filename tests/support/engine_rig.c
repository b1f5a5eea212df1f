/*
 * The engine test rig (see engine_rig.h).
 */
#include "tests/support/engine_rig.h"
#include "api/documents.h"
#include "core/dest/pg.h"
#include "core/dest/sqlite.h"
#include "core/store/memory.h"
#include "core/store/redis.h"
#include "core/util/err.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void kl_test_rig_open(struct kl_test_rig *r, const struct kl_test_rig_options *o)
{
    struct kl_store_options so;
    struct kl_dest_options dopts;
    struct kl_engine_config ec;
    struct kl_err err;

    memset(r, 0, sizeof *r);
    r->postgres = o->postgres;
    if (!o->postgres)
        snprintf(r->sqlite_path, sizeof r->sqlite_path, "%s", o->sqlite_path);
    kl_test_kinesis_open_deadline(&r->k, o->kinesis_env ? o->kinesis_env : "KL_TEST_KINESALITE_URL",
                                  NULL, NULL, o->call_deadline_ms);
    kl_store_options_init(&so);
    so.key_prefix = o->redis_prefix;
    r->store = o->redis_prefix != NULL
                   ? kl_store_redis_create(kl_test_require_env("KL_TEST_REDIS_URL"), &so, &err)
                   : kl_store_memory_create(&so, &err);
    if (r->store == NULL)
        fail_msg("store: %s", err.msg);
    kl_dest_options_init(&dopts);
    r->dests = o->postgres
                   ? kl_dest_pg_factory_create(kl_test_require_env("KL_TEST_PG_URL"), &dopts, &err)
                   : kl_dest_sqlite_factory_create(r->sqlite_path, &dopts, &err);
    if (r->dests == NULL)
        fail_msg("destination: %s", err.msg);
    if (o->wrap_dests != NULL)
        r->dests = o->wrap_dests(r->dests, o->wrap_ctx);
    memset(&ec, 0, sizeof ec);
    ec.store = r->store;
    ec.dests = r->dests;
    ec.client = r->k.conn.client;
    ec.workers = o->workers > 0 ? o->workers : 3;
    ec.task_slice_ms = o->task_slice_ms;
    ec.sweep_interval_ms = o->sweep_interval_ms;
    ec.take_timeout_ms = 100;
    ec.owner = o->redis_prefix != NULL ? "replica-a" : NULL;
    r->engine = kl_engine_create(&ec, &err);
    assert_non_null(r->engine);
    if (o->redis_prefix != NULL) {
        r->store2 = kl_store_redis_create(kl_test_require_env("KL_TEST_REDIS_URL"), &so, &err);
        if (r->store2 == NULL)
            fail_msg("second store: %s", err.msg);
        ec.store = r->store2;
        ec.owner = "replica-b";
        r->engine2 = kl_engine_create(&ec, &err);
        assert_non_null(r->engine2);
    }
    if (!o->no_start) {
        assert_int_equal(kl_engine_start(r->engine, &err), KL_OK);
        if (r->engine2 != NULL)
            assert_int_equal(kl_engine_start(r->engine2, &err), KL_OK);
    }
}

void kl_test_rig_close(struct kl_test_rig *r)
{
    kl_engine_destroy(r->engine);
    kl_engine_destroy(r->engine2);
    kl_dest_factory_destroy(r->dests);
    kl_store_destroy(r->store);
    kl_store_destroy(r->store2);
    kl_test_kinesis_close(&r->k);
}

void kl_test_rig_put(struct kl_test_rig *r, const char *stream, int start, int count,
                     int partition_keys)
{
    char keys[48] = "";
    char *out = NULL;

    if (partition_keys > 0)
        snprintf(keys, sizeof keys, "--partition-keys %d", partition_keys);
    if (kl_test_run(&out,
                    "cd '%s' && node put-records.js --endpoint '%s' --stream '%s' --start %d "
                    "--count %d %s --access-key '%s' --secret-key '%s'",
                    kl_test_require_env("KL_TEST_NODE_TOOLS"), r->k.url, stream, start, count, keys,
                    r->k.access_key, r->k.secret) != 0)
        fail_msg("put-records: %s", out);
    free(out);
}

void kl_test_rig_new_stream(struct kl_test_rig *r, const char *prefix, int shards, int count,
                            const char *dataset, int chunk_size, char stream[96], char table[96],
                            struct kl_load_params *p)
{
    struct kl_err err;

    snprintf(stream, 96, "%s", kl_test_unique(prefix));
    assert_int_equal(kl_kinesis_create_stream(r->k.conn.client, stream, shards, &err), KL_OK);
    if (count > 0)
        kl_test_rig_put(r, stream, 0, count, 0);
    snprintf(table, 96, "%s", stream);
    for (char *c = table; *c; c++)
        if (*c == '-')
            *c = '_';
    kl_load_params_defaults(p, stream);
    snprintf(p->dataset_name, sizeof p->dataset_name, "%s", dataset);
    p->initial.kind = KL_INITIAL_TRIM_HORIZON;
    snprintf(p->initial_text, sizeof p->initial_text, "null");
    p->millis_behind_latest = 0;
    p->chunk_size = chunk_size;
}

cJSON *kl_test_rig_run_job(struct kl_test_rig *r, const struct kl_load_params *p,
                           const char *expect_status, int64_t timeout_ms)
{
    char id[KL_STORE_JOB_ID_SIZE];
    struct kl_store_job job;
    struct kl_err err;
    bool existing = true;
    cJSON *doc;

    if (kl_engine_submit(r->engine, p, NULL, id, &existing, &err) != KL_OK)
        fail_msg("submit: %s", err.msg);
    assert_false(existing);
    kl_store_job_init(&job);
    if (kl_engine_wait(r->engine, id, timeout_ms > 0 ? timeout_ms : 120000, &job, &err) != KL_OK)
        fail_msg("wait for job %s: %s", id, err.msg);
    doc = kl_doc_job(&job);
    assert_non_null(doc);
    if (strcmp(kl_store_job_status_name(job.status), expect_status) != 0) {
        char *text = cJSON_Print(doc);
        fail_msg("job ended %s, expected %s: %s", kl_store_job_status_name(job.status),
                 expect_status, text);
    }
    kl_store_job_free(&job);
    return doc;
}

long long kl_test_job_rows(const cJSON *doc, const char *table)
{
    const cJSON *counts = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(doc, "last_normalize_info"), "row_counts");
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(counts, table);
    return cJSON_IsNumber(n) ? (long long)n->valuedouble : -1;
}

long long kl_test_job_messages(const cJSON *doc)
{
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(doc, "progress"), "messages");
    return cJSON_IsNumber(n) ? (long long)n->valuedouble : -1;
}

long long kl_test_rig_stored_rows(const struct kl_test_rig *r, const char *dataset,
                                  const char *table, bool distinct)
{
    const char *what = distinct ? "count(DISTINCT _dlt_id)" : "count(*)";
    return r->postgres ? kl_test_pg_scalar("SELECT %s FROM \"%s\".\"%s\"", what, dataset, table)
                       : kl_test_sqlite_scalar(r->sqlite_path, "SELECT %s FROM \"%s.%s\"", what,
                                               dataset, table);
}
