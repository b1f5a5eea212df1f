/*
 * One shard task end to end: kinesalite -> cursor -> normaliser -> a real
 * destination (PostgreSQL, then SQLite), one transaction per chunk with the
 * fenced checkpoint. Checks: every message lands exactly once; a second run
 * resumes from the destination's checkpoints; a stale fencing token writes
 * nothing; a crash between any two steps of a chunk's transaction, and a
 * crash right after a commit, neither lose nor repeat a row on resume; the
 * budget and cancel hooks stop at chunk boundaries.
 */
#include "tests/support/test_support.h"
#include "core/dest/pg.h"
#include "core/dest/sqlite.h"
#include "core/kinesis/conn.h"
#include "core/load/task.h"
#include "core/normalize/normalizer.h"
#include "core/normalize/schema.h"
#include "core/util/env.h"
#include "core/util/err.h"

#include <libpq-fe.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct target {
    const char *name;
    struct kl_dest *(*open)(const struct kl_dest_options *o);
    long long (*count)(const char *dataset, const char *table, bool distinct_ids);
};

static char sqlite_path[256];

static struct kl_dest *open_pg(const struct kl_dest_options *o)
{
    struct kl_err err;
    struct kl_dest *d = kl_dest_pg_create(kl_test_require_env("KL_TEST_PG_URL"), o, &err);
    if (d == NULL)
        fail_msg("postgres: %s", err.msg);
    return d;
}

static long long count_pg(const char *dataset, const char *table, bool distinct_ids)
{
    return kl_test_pg_scalar("SELECT %s FROM \"%s\".\"%s\"",
                             distinct_ids ? "count(DISTINCT _kinesis_msg_id)" : "count(*)", dataset,
                             table);
}

static struct kl_dest *open_sqlite(const struct kl_dest_options *o)
{
    struct kl_err err;
    struct kl_dest *d = kl_dest_sqlite_create(sqlite_path, o, &err);
    if (d == NULL)
        fail_msg("sqlite: %s", err.msg);
    return d;
}

static long long count_sqlite(const char *dataset, const char *table, bool distinct_ids)
{
    return kl_test_sqlite_scalar(sqlite_path, "SELECT %s FROM \"%s.%s\"",
                                 distinct_ids ? "count(DISTINCT _kinesis_msg_id)" : "count(*)",
                                 dataset, table);
}

static const struct target pg = {"postgres", open_pg, count_pg};
static const struct target lite = {"sqlite", open_sqlite, count_sqlite};

/* The pieces a worker holds. */
struct worker {
    char url[256];
    const char *pairs[9];
    struct kl_env_table env;
    struct kl_kinesis_conn conn;
    struct kl_dest *dest;
    struct kl_normalizer *norm;
    int64_t schema_written;
    int write_attempts; /* 0: the task's default */
    struct kl_load_params params;
    char load_id[48];
};

static void worker_open(struct worker *w, const struct target *t, const char *stream,
                        const char *dataset, const struct kl_dest_options *dopts)
{
    struct kl_kinesis_conn_options o = {0};
    struct kl_normalizer_options no = {0};
    struct kl_err err;

    memset(w, 0, sizeof *w);
    snprintf(w->url, sizeof w->url, "%s", kl_test_require_env("KL_TEST_KINESALITE_URL"));
    w->pairs[0] = "AWS_ACCESS_KEY_ID";
    w->pairs[1] = "AKIDTASK";
    w->pairs[2] = "AWS_SECRET_ACCESS_KEY";
    w->pairs[3] = "x";
    w->pairs[4] = "AWS_ENDPOINT_URL_KINESIS";
    w->pairs[5] = w->url;
    w->pairs[6] = "AWS_REGION";
    w->pairs[7] = "us-east-1";
    kl_env_table_init(&w->env, w->pairs);
    o.env = &w->env.env;
    if (kl_kinesis_conn_init(&w->conn, &o, &err) != KL_OK)
        fail_msg("kinesis: %s", err.msg);
    if (dopts != NULL) {
        w->dest = t->open(dopts);
    } else {
        struct kl_dest_options d;
        kl_dest_options_init(&d);
        w->dest = t->open(&d);
    }
    kl_load_params_defaults(&w->params, stream);
    snprintf(w->params.dataset_name, sizeof w->params.dataset_name, "%s", dataset);
    w->params.chunk_size = 100;
    w->params.millis_behind_latest = 0;
    snprintf(w->load_id, sizeof w->load_id, "1700000000.%06d", (int)(getpid() % 1000000));
    no.stream_name = stream;
    no.parse_json = true;
    no.load_id = w->load_id;
    no.write_disposition = KL_WRITE_APPEND;
    w->norm = kl_normalizer_create(&no, NULL, &err);
    if (w->norm == NULL)
        fail_msg("normaliser: %s", err.msg);
    w->schema_written = -1;
}

static void worker_close(struct worker *w)
{
    kl_normalizer_destroy(w->norm);
    kl_dest_destroy(w->dest);
    kl_kinesis_conn_free(&w->conn);
}

/* Runs every shard of the stream once, resuming from the destination. */
static int run_shards(struct worker *w, int64_t token, const struct kl_task_hooks *hooks,
                      uint64_t *messages, struct kl_err *err)
{
    struct kl_shard_list shards = {0};
    struct kl_dest_state state;
    int rc;

    *messages = 0;
    kl_dest_state_init(&state);
    rc = kl_kinesis_list_shards(w->conn.client, w->params.stream, &shards, err);
    if (rc == KL_OK)
        rc = kl_dest_read_state(w->dest, w->params.dataset_name, w->params.pipeline_name,
                                w->params.stream, &state, err);
    for (size_t i = 0; rc == KL_OK && i < shards.n; i++) {
        struct kl_task_env env = {0};
        struct kl_task_spec spec = {0};
        struct kl_task_result result;
        struct kl_shard_position resume;
        bool have = false;

        for (size_t k = 0; k < state.n_checkpoints; k++) {
            if (strcmp(state.checkpoints[k].position.shard_id, shards.shards[i].id) == 0) {
                snprintf(resume.shard_id, sizeof resume.shard_id, "%s", shards.shards[i].id);
                snprintf(resume.sequence, sizeof resume.sequence, "%s",
                         state.checkpoints[k].position.sequence);
                resume.sub_sequence = state.checkpoints[k].position.sub_sequence;
                have = true;
            }
        }
        env.client = w->conn.client;
        env.dest = w->dest;
        env.normalizer = w->norm;
        env.schema_version_written = &w->schema_written;
        env.write_attempts = w->write_attempts;
        spec.params = &w->params;
        spec.load_id = w->load_id;
        spec.shard_id = shards.shards[i].id;
        spec.start.type = KL_ITER_TRIM_HORIZON;
        spec.resume = have ? &resume : NULL;
        spec.fencing_token = token;
        rc = kl_task_run(&env, &spec, hooks, &result, err);
        *messages += result.messages;
    }
    kl_dest_state_free(&state);
    kl_shard_list_free(&shards);
    return rc;
}

static void put(const char *stream, int start, int count)
{
    char *out = NULL;
    if (kl_test_run(&out,
                    "cd '%s' && node put-records.js --endpoint '%s' --stream '%s' --start %d "
                    "--count %d --access-key AKIDTASK --secret-key x",
                    kl_test_require_env("KL_TEST_NODE_TOOLS"),
                    kl_test_require_env("KL_TEST_KINESALITE_URL"), stream, start, count) != 0)
        fail_msg("put-records: %s", out);
    free(out);
}

static const char *root_table(struct worker *w)
{
    return kl_normalizer_schema(w->norm)->tables[0].name;
}

static void create_stream(struct worker *w, const char *stream)
{
    struct kl_err err;
    if (kl_kinesis_create_stream(w->conn.client, stream, 2, &err) != KL_OK)
        fail_msg("CreateStream: %s", err.msg);
}

static void loads_exactly_once_and_resumes(const struct target *t)
{
    char stream[96], dataset[64];
    struct worker w;
    struct kl_err err;
    uint64_t n;

    snprintf(stream, sizeof stream, "%s", kl_test_unique("kl-task"));
    snprintf(dataset, sizeof dataset, "task_%s_%d", t->name, (int)getpid());
    worker_open(&w, t, stream, dataset, NULL);
    create_stream(&w, stream);
    put(stream, 0, 500);
    if (run_shards(&w, 1, NULL, &n, &err) != KL_OK)
        fail_msg("%s: %s", t->name, err.msg);
    assert_int_equal(n, 500);
    assert_int_equal(t->count(dataset, root_table(&w), false), 500);
    assert_int_equal(t->count(dataset, root_table(&w), true), 500);

    /* incremental: only the new ones */
    put(stream, 500, 120);
    assert_int_equal(run_shards(&w, 1, NULL, &n, &err), KL_OK);
    assert_int_equal(n, 120);
    assert_int_equal(t->count(dataset, root_table(&w), false), 620);

    /* a stale fencing token: the chunk is refused and nothing is written */
    put(stream, 620, 10);
    assert_int_equal(run_shards(&w, 2, NULL, &n, &err), KL_OK); /* a newer owner took over */
    put(stream, 630, 10);
    assert_int_equal(run_shards(&w, 1, NULL, &n, &err), KL_ERR_CONFLICT);
    assert_int_equal(t->count(dataset, root_table(&w), false), 630);
    assert_int_equal(run_shards(&w, 3, NULL, &n, &err), KL_OK);
    assert_int_equal(t->count(dataset, root_table(&w), false), 640);
    assert_int_equal(t->count(dataset, root_table(&w), true), 640);
    worker_close(&w);
}

static void postgres_loads_exactly_once_and_resumes(void **state)
{
    (void)state;
    loads_exactly_once_and_resumes(&pg);
}

static void sqlite_loads_exactly_once_and_resumes(void **state)
{
    (void)state;
    loads_exactly_once_and_resumes(&lite);
}

/* A crash after step `crash_step` of the `crash_chunk`-th chunk. */
struct crash_plan {
    int crash_chunk;
    enum kl_dest_step crash_step;
    int chunks;
};

static bool crash_hook(void *ctx, enum kl_dest_step step)
{
    struct crash_plan *p = ctx;
    if (step == KL_DEST_STEP_BEGIN)
        p->chunks++;
    return p->chunks == p->crash_chunk && step == p->crash_step;
}

static void a_crash_at_any_step_loses_and_repeats_nothing(const struct target *t)
{
    char stream[96], dataset[64];
    struct worker setup;
    struct kl_err err;
    uint64_t n;

    snprintf(stream, sizeof stream, "%s", kl_test_unique("kl-crash"));
    snprintf(dataset, sizeof dataset, "crash_%s_%d", t->name, (int)getpid());
    worker_open(&setup, t, stream, dataset, NULL);
    create_stream(&setup, stream);
    put(stream, 0, 1000);
    worker_close(&setup);

    for (int round = 0; round < 2 * KL_DEST_STEP_COUNT; round++) {
        int step = round % KL_DEST_STEP_COUNT;
        bool dies = round < KL_DEST_STEP_COUNT; /* first as a dying process, then retried */
        struct crash_plan plan = {2, (enum kl_dest_step)step, 0};
        struct kl_dest_options o;
        struct worker w;
        char ds[80], table[64];
        int rc;

        /* each crash gets its own dataset: fresh tables and checkpoints */
        snprintf(ds, sizeof ds, "%s_%d", dataset, round);
        kl_dest_options_init(&o);
        o.crash_after = crash_hook;
        o.crash_ctx = &plan;
        worker_open(&w, t, stream, ds, &o);
        w.write_attempts = dies ? 1 : 0;
        rc = run_shards(&w, 7, NULL, &n, &err);
        if (dies && rc == KL_OK)
            fail_msg("no crash at %s", kl_dest_step_name(step));
        if (!dies && rc != KL_OK)
            fail_msg("the task did not retry past a crash at %s: %s", kl_dest_step_name(step),
                     err.msg);
        /* the first chunk committed before the crash, so the root table exists */
        snprintf(table, sizeof table, "%s", root_table(&w));
        worker_close(&w);
        /* a fresh worker resumes from the destination's checkpoints */
        worker_open(&w, t, stream, ds, NULL);
        if (run_shards(&w, 7, NULL, &n, &err) != KL_OK)
            fail_msg("resume after a crash at %s: %s", kl_dest_step_name(step), err.msg);
        if (t->count(ds, table, false) != 1000 || t->count(ds, table, true) != 1000)
            fail_msg("%s: crash at %s (%s): %lld rows, %lld distinct", t->name,
                     kl_dest_step_name(step), dies ? "process died" : "retried",
                     t->count(ds, table, false), t->count(ds, table, true));
        worker_close(&w);
    }
}

static void postgres_crash_at_any_step(void **state)
{
    (void)state;
    a_crash_at_any_step_loses_and_repeats_nothing(&pg);
}

static void sqlite_crash_at_any_step(void **state)
{
    (void)state;
    a_crash_at_any_step_loses_and_repeats_nothing(&lite);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(postgres_loads_exactly_once_and_resumes),
        cmocka_unit_test(sqlite_loads_exactly_once_and_resumes),
        cmocka_unit_test(postgres_crash_at_any_step),
        cmocka_unit_test(sqlite_crash_at_any_step),
    };
    snprintf(sqlite_path, sizeof sqlite_path, "/tmp/kl-test-task-%d.db", (int)getpid());
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    unlink(sqlite_path);
    return rc;
}
