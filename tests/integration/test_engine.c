/*
 * Load jobs end to end through the engine: the in-process store's queue and
 * leases, a pool of workers, kinesalite, and a real destination (SQLite,
 * then PostgreSQL). A job loads every message exactly once and reports dlt's
 * row counts; the next job loads only what is new; a budget stops a job
 * early and the next one continues without loss.
 */
#include "tests/support/test_support.h"
#include "core/dest/pg.h"
#include "core/dest/sqlite.h"
#include "core/load/engine.h"
#include "core/store/memory.h"
#include "core/util/err.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char sqlite_path[256];

struct rig {
    struct kl_test_kinesis k;
    struct kl_store *store;
    struct kl_dest_factory *dests;
    struct kl_engine *engine;
};

static void rig_open(struct rig *r, bool postgres)
{
    struct kl_store_options so;
    struct kl_dest_options dopts;
    struct kl_engine_config ec;
    struct kl_err err;

    kl_test_kinesis_open(&r->k, "KL_TEST_KINESALITE_URL", NULL, NULL);
    kl_store_options_init(&so);
    r->store = kl_store_memory_create(&so, &err);
    assert_non_null(r->store);
    kl_dest_options_init(&dopts);
    r->dests = postgres ? kl_dest_pg_factory_create(kl_test_require_env("KL_TEST_PG_URL"), &dopts,
                                                    &err)
                        : kl_dest_sqlite_factory_create(sqlite_path, &dopts, &err);
    if (r->dests == NULL)
        fail_msg("destination: %s", err.msg);
    memset(&ec, 0, sizeof ec);
    ec.store = r->store;
    ec.dests = r->dests;
    ec.client = r->k.conn.client;
    ec.workers = 3;
    ec.take_timeout_ms = 100;
    r->engine = kl_engine_create(&ec, &err);
    assert_non_null(r->engine);
    assert_int_equal(kl_engine_start(r->engine, &err), KL_OK);
}

static void rig_close(struct rig *r)
{
    kl_engine_destroy(r->engine);
    kl_dest_factory_destroy(r->dests);
    kl_store_destroy(r->store);
    kl_test_kinesis_close(&r->k);
}

static void put(struct rig *r, const char *stream, int start, int count)
{
    char *out = NULL;
    if (kl_test_run(&out,
                    "cd '%s' && node put-records.js --endpoint '%s' --stream '%s' --start %d "
                    "--count %d --access-key '%s' --secret-key '%s'",
                    kl_test_require_env("KL_TEST_NODE_TOOLS"), r->k.url, stream, start, count,
                    r->k.access_key, r->k.secret) != 0)
        fail_msg("put-records: %s", out);
    free(out);
}

/* Runs one job to its end and returns its document. */
static cJSON *run_job(struct rig *r, const struct kl_load_params *p, const char *expect_status)
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
    if (kl_engine_wait(r->engine, id, 120000, &job, &err) != KL_OK)
        fail_msg("wait: %s", err.msg);
    doc = kl_job_document(&job);
    assert_non_null(doc);
    if (strcmp(kl_store_job_status_name(job.status), expect_status) != 0) {
        char *text = cJSON_Print(doc);
        fail_msg("job ended %s, expected %s: %s", kl_store_job_status_name(job.status),
                 expect_status, text);
    }
    kl_store_job_free(&job);
    return doc;
}

static long long row_count(const cJSON *doc, const char *table)
{
    const cJSON *counts = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(doc, "last_normalize_info"), "row_counts");
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(counts, table);
    return cJSON_IsNumber(n) ? (long long)n->valuedouble : -1;
}

static long long messages(const cJSON *doc)
{
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(doc, "progress"), "messages");
    return cJSON_IsNumber(n) ? (long long)n->valuedouble : -1;
}

static void jobs_load_exactly_once(bool postgres)
{
    struct rig r;
    struct kl_load_params p;
    struct kl_err err;
    char stream[96], table[96];
    cJSON *doc;

    rig_open(&r, postgres);
    snprintf(stream, sizeof stream, "%s", kl_test_unique("kl-engine"));
    assert_int_equal(kl_kinesis_create_stream(r.k.conn.client, stream, 3, &err), KL_OK);
    put(&r, stream, 0, 600);
    /* the root table: the stream name in dlt's snake_case */
    snprintf(table, sizeof table, "%s", stream);
    for (char *c = table; *c; c++)
        if (*c == '-')
            *c = '_';

    kl_load_params_defaults(&p, stream);
    snprintf(p.dataset_name, sizeof p.dataset_name, "eng_%d_%s", (int)getpid(),
             postgres ? "pg" : "lite");
    p.initial.kind = KL_INITIAL_TRIM_HORIZON;
    snprintf(p.initial_text, sizeof p.initial_text, "null");
    p.millis_behind_latest = 0;
    p.chunk_size = 100;

    doc = run_job(&r, &p, "succeeded");
    assert_int_equal(messages(doc), 600);
    assert_int_equal(row_count(doc, table), 600);
    assert_int_equal(row_count(doc, "_dlt_pipeline_state"), 1);
    cJSON_Delete(doc);

    /* the next job loads only what is new */
    put(&r, stream, 600, 90);
    doc = run_job(&r, &p, "succeeded");
    assert_int_equal(messages(doc), 90);
    assert_int_equal(row_count(doc, table), 90);
    cJSON_Delete(doc);

    /* a budget stops early (at most a chunk per worker more); the next job continues */
    put(&r, stream, 690, 600);
    p.max_messages = 150;
    doc = run_job(&r, &p, "succeeded");
    assert_true(messages(doc) >= 150 && messages(doc) < 600);
    long long first = messages(doc);
    cJSON_Delete(doc);
    p.max_messages = -1;
    doc = run_job(&r, &p, "succeeded");
    assert_int_equal(first + messages(doc), 600);
    cJSON_Delete(doc);

    /* nothing new: a job that loads nothing still succeeds */
    doc = run_job(&r, &p, "succeeded");
    assert_int_equal(messages(doc), 0);
    cJSON_Delete(doc);
    kl_kinesis_delete_stream(r.k.conn.client, stream, NULL);
    rig_close(&r);
}

static void sqlite_jobs_load_exactly_once(void **state)
{
    (void)state;
    jobs_load_exactly_once(false);
}

static void postgres_jobs_load_exactly_once(void **state)
{
    (void)state;
    jobs_load_exactly_once(true);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(sqlite_jobs_load_exactly_once),
        cmocka_unit_test(postgres_jobs_load_exactly_once),
    };
    int rc;
    snprintf(sqlite_path, sizeof sqlite_path, "/tmp/kl-test-engine-%d.db", (int)getpid());
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    unlink(sqlite_path);
    return rc;
}
