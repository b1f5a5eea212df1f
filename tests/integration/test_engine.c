/*
 * Load jobs end to end through the engine: the in-process store's queue and
 * leases, a pool of workers, kinesalite, and a real destination (SQLite,
 * then PostgreSQL). A job loads every message exactly once and reports dlt's
 * row counts; the next job loads only what is new; a budget stops a job
 * at its size, also raced for by two replicas on one Redis, and the next one
 * continues without loss. A former owner of a shard
 * that wakes up after a new owner took the shard over commits nothing.
 */
#include "tests/support/engine_rig.h"
#include "api/documents.h"
#include "tests/support/test_support.h"
#include "core/dest/pg.h"
#include "core/dest/sqlite.h"
#include "core/load/engine.h"
#include "core/store/memory.h"
#include "core/util/err.h"

#include <cjson/cJSON.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char sqlite_path[256];

/* ---- a stalled former owner ----
 * The engine's destinations, wrapped: once armed, the first chunk a worker
 * writes is first committed by the shard's former owner, on a connection
 * of its own and with its older fencing token, as a worker that stalled
 * after reading the same records would commit them. That is after the new
 * owner took the lease and read its position, and before its first commit:
 * the window the destination's claim closes. */
struct stale_owner {
    struct kl_dest_factory *real;
    pthread_mutex_t lock;
    bool armed, fired;
    int64_t token; /* the former owner's */
    int rc;        /* what its commit returned */
    char msg[256];
};

struct stale_dest {
    struct kl_dest *inner;
    struct stale_owner *o;
};

static const char *sd_name(void *impl)
{
    struct stale_dest *s = impl;
    return kl_dest_name(s->inner);
}

static int sd_ping(void *impl, struct kl_err *err)
{
    struct stale_dest *s = impl;
    return kl_dest_ping(s->inner, err);
}

static int sd_prepare(void *impl, const char *dataset, struct kl_err *err)
{
    struct stale_dest *s = impl;
    return kl_dest_prepare(s->inner, dataset, err);
}

static int sd_load_schema(void *impl, const char *dataset, const char *schema_name, char **json_out,
                          int64_t *version_out, struct kl_err *err)
{
    struct stale_dest *s = impl;
    return kl_dest_load_schema(s->inner, dataset, schema_name, json_out, version_out, err);
}

static int sd_read_state(void *impl, const char *dataset, const char *pipeline, const char *stream,
                         struct kl_dest_state *out, struct kl_err *err)
{
    struct stale_dest *s = impl;
    return kl_dest_read_state(s->inner, dataset, pipeline, stream, out, err);
}

static int sd_claim_shard(void *impl, const char *dataset, const char *pipeline, const char *stream,
                          const char *shard_id, int64_t token, struct kl_err *err)
{
    struct stale_dest *s = impl;
    return kl_dest_claim_shard(s->inner, dataset, pipeline, stream, shard_id, token, err);
}

static int sd_delete_state(void *impl, const char *dataset, const char *pipeline,
                           const char *stream, struct kl_err *err)
{
    struct stale_dest *s = impl;
    return kl_dest_delete_state(s->inner, dataset, pipeline, stream, err);
}

/* The former owner's commit of the chunk `w`, with its own token. */
static void stale_commit(struct stale_owner *o, const char *dataset, const struct kl_chunk_write *w)
{
    struct kl_checkpoint cps[4];
    struct kl_chunk_write mine = *w;
    struct kl_dest *d = NULL;
    struct kl_err err = {0};

    assert_true(w->n_checkpoints >= 1 && w->n_checkpoints <= 4);
    for (size_t i = 0; i < w->n_checkpoints; i++) {
        cps[i] = w->checkpoints[i];
        assert_true(cps[i].fencing_token > o->token); /* the new owner's is newer */
        cps[i].fencing_token = o->token;
    }
    mine.checkpoints = cps;
    o->rc = kl_dest_factory_open(o->real, &d, &err);
    if (o->rc == KL_OK)
        o->rc = kl_dest_write_chunk(d, dataset, &mine, NULL, &err);
    snprintf(o->msg, sizeof o->msg, "%s", o->rc == KL_OK ? "" : err.msg);
    kl_dest_destroy(d);
}

static int sd_write_chunk(void *impl, const char *dataset, const struct kl_chunk_write *w,
                          struct kl_chunk_result *res, struct kl_err *err)
{
    struct stale_dest *s = impl;
    struct stale_owner *o = s->o;

    pthread_mutex_lock(&o->lock);
    if (o->armed && !o->fired && w->n_checkpoints > 0) {
        o->fired = true;
        stale_commit(o, dataset, w);
    }
    pthread_mutex_unlock(&o->lock);
    return kl_dest_write_chunk(s->inner, dataset, w, res, err);
}

static int sd_complete_load(void *impl, const char *dataset, const struct kl_load_complete *c,
                            struct kl_err *err)
{
    struct stale_dest *s = impl;
    return kl_dest_complete_load(s->inner, dataset, c, err);
}

static void sd_destroy(void *impl)
{
    struct stale_dest *s = impl;
    kl_dest_destroy(s->inner);
    free(s);
}

static const struct kl_dest_ops STALE_DEST_OPS = {
    .name = sd_name,
    .ping = sd_ping,
    .prepare = sd_prepare,
    .load_schema = sd_load_schema,
    .read_state = sd_read_state,
    .claim_shard = sd_claim_shard,
    .delete_state = sd_delete_state,
    .write_chunk = sd_write_chunk,
    .complete_load = sd_complete_load,
    .destroy = sd_destroy,
};

static int sf_open(void *impl, struct kl_dest **out, struct kl_err *err)
{
    struct stale_owner *o = impl;
    struct stale_dest *s = calloc(1, sizeof *s);
    struct kl_dest *d = calloc(1, sizeof *d);
    int rc;

    assert_non_null(s);
    assert_non_null(d);
    rc = kl_dest_factory_open(o->real, &s->inner, err);
    if (rc != KL_OK) {
        free(s);
        free(d);
        return rc;
    }
    s->o = o;
    d->ops = &STALE_DEST_OPS;
    d->impl = s;
    *out = d;
    return KL_OK;
}

static const char *sf_name(void *impl)
{
    struct stale_owner *o = impl;
    return o->real->ops->name(o->real->impl);
}

static void sf_destroy(void *impl)
{
    struct stale_owner *o = impl;
    kl_dest_factory_destroy(o->real);
    o->real = NULL;
}

static const struct kl_dest_factory_ops STALE_FACTORY_OPS = {
    .open = sf_open,
    .name = sf_name,
    .destroy = sf_destroy,
};

/* Wraps the real destinations in the stalled former owner's. */
static struct kl_dest_factory *wrap_stale(struct kl_dest_factory *real, void *ctx)
{
    struct stale_owner *stale = ctx;
    struct kl_dest_factory *f = calloc(1, sizeof *f);
    assert_non_null(f);
    stale->real = real;
    f->ops = &STALE_FACTORY_OPS;
    f->impl = stale;
    return f;
}

static void rig_open(struct kl_test_rig *r, bool postgres, struct kl_test_rig_options *o)
{
    struct kl_test_rig_options defaults = {0};
    if (o == NULL)
        o = &defaults;
    o->postgres = postgres;
    o->sqlite_path = sqlite_path;
    kl_test_rig_open(r, o);
}

/* Every shard of the job document resumed from `origin`. */
static void expect_resumed_from(const cJSON *doc, const char *origin)
{
    const cJSON *sh;
    int n = 0;
    cJSON_ArrayForEach(sh, cJSON_GetObjectItem(cJSON_GetObjectItem(doc, "progress"), "shards"))
    {
        const cJSON *from = cJSON_GetObjectItem(sh, "resumed_from");
        assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(from, "origin")), origin);
        assert_true(cJSON_IsNull(cJSON_GetObjectItem(from, "load_id")));
        n++;
    }
    assert_true(n > 0);
}

static void jobs_load_exactly_once(bool postgres)
{
    struct kl_test_rig r;
    struct kl_load_params p;
    char stream[96], table[96], dataset[64];
    cJSON *doc;

    rig_open(&r, postgres, NULL);
    snprintf(dataset, sizeof dataset, "eng_%d_%s", (int)getpid(), postgres ? "pg" : "lite");
    kl_test_rig_new_stream(&r, "kl-engine", 3, 600, dataset, 100, stream, table, &p);

    doc = kl_test_rig_run_job(&r, &p, "succeeded", 0);
    assert_int_equal(kl_test_job_messages(doc), 600);
    expect_resumed_from(doc, "none");
    assert_int_equal(kl_test_job_rows(doc, table), 600);
    assert_int_equal(kl_test_job_rows(doc, "_dlt_pipeline_state"), 1);
    cJSON_Delete(doc);

    /* the next job loads only what is new */
    kl_test_rig_put(&r, stream, 600, 90, 0);
    doc = kl_test_rig_run_job(&r, &p, "succeeded", 0);
    assert_int_equal(kl_test_job_messages(doc), 90);
    expect_resumed_from(doc, "kinesis-loader");
    assert_int_equal(kl_test_job_rows(doc, table), 90);
    cJSON_Delete(doc);

    /* a budget stops the job at exactly its size (the store grants it
     * atomically, page by page); the next job continues */
    kl_test_rig_put(&r, stream, 690, 600, 0);
    p.max_messages = 150;
    doc = kl_test_rig_run_job(&r, &p, "succeeded", 0);
    assert_int_equal(kl_test_job_messages(doc), 150);
    long long first = kl_test_job_messages(doc);
    cJSON_Delete(doc);
    p.max_messages = -1;
    doc = kl_test_rig_run_job(&r, &p, "succeeded", 0);
    assert_int_equal(first + kl_test_job_messages(doc), 600);
    cJSON_Delete(doc);

    /* nothing new: a job that loads nothing still succeeds */
    doc = kl_test_rig_run_job(&r, &p, "succeeded", 0);
    assert_int_equal(kl_test_job_messages(doc), 0);
    cJSON_Delete(doc);
    kl_kinesis_delete_stream(r.k.conn.client, stream, NULL);
    kl_test_rig_close(&r);
}

/* Worker A owns the shard (token T) and has committed up to X; it stalls,
 * its lease expires, and a worker of the next job takes the shard over
 * (T + 1) and reads X. A wakes up before the new owner's first commit and
 * commits the records after X with T: refused, because the new owner
 * claimed the shard in the destination before it read X. The new owner's
 * rows land once. */
static void a_stalled_former_owner_commits_nothing(bool postgres)
{
    struct kl_test_rig r;
    struct stale_owner stale;
    struct kl_load_params p;
    struct kl_dest *d = NULL;
    struct kl_dest_state st;
    struct kl_err err;
    char stream[96], table[96], dataset[64];
    cJSON *doc;

    memset(&stale, 0, sizeof stale);
    pthread_mutex_init(&stale.lock, NULL);
    struct kl_test_rig_options o = {.wrap_dests = wrap_stale, .wrap_ctx = &stale};
    rig_open(&r, postgres, &o);
    snprintf(dataset, sizeof dataset, "stale_%d_%s", (int)getpid(), postgres ? "pg" : "lite");
    kl_test_rig_new_stream(&r, "kl-stale", 1, 300, dataset, 100, stream, table, &p);

    /* A's job: everything up to X, with token T. */
    doc = kl_test_rig_run_job(&r, &p, "succeeded", 0);
    assert_int_equal(kl_test_job_messages(doc), 300);
    cJSON_Delete(doc);
    kl_dest_state_init(&st);
    assert_int_equal(kl_dest_factory_open(stale.real, &d, &err), KL_OK);
    assert_int_equal(kl_dest_read_state(d, p.dataset_name, p.pipeline_name, stream, &st, &err),
                     KL_OK);
    assert_int_equal(st.n_checkpoints, 1);
    stale.token = st.checkpoints[0].fencing_token;
    assert_true(stale.token > 0);
    kl_dest_state_free(&st);

    /* The next job's owner; A commits right before its first chunk. */
    kl_test_rig_put(&r, stream, 300, 150, 0);
    pthread_mutex_lock(&stale.lock);
    stale.armed = true;
    pthread_mutex_unlock(&stale.lock);
    doc = kl_test_rig_run_job(&r, &p, "succeeded", 0);
    pthread_mutex_lock(&stale.lock);
    assert_true(stale.fired);
    if (stale.rc != KL_ERR_CONFLICT)
        fail_msg("the former owner's commit returned %d (%s), not a conflict", stale.rc, stale.msg);
    pthread_mutex_unlock(&stale.lock);
    assert_non_null(strstr(stale.msg, "fencing"));
    assert_int_equal(kl_test_job_messages(doc), 150);
    assert_int_equal(kl_test_job_rows(doc, table), 150);
    cJSON_Delete(doc);
    assert_int_equal(kl_test_rig_stored_rows(&r, p.dataset_name, table, false), 450);
    assert_int_equal(kl_test_rig_stored_rows(&r, p.dataset_name, table, true), 450);

    /* the state: the new owner's token and position */
    kl_dest_state_init(&st);
    assert_int_equal(kl_dest_read_state(d, p.dataset_name, p.pipeline_name, stream, &st, &err),
                     KL_OK);
    assert_int_equal(st.n_checkpoints, 1);
    assert_true(st.checkpoints[0].fencing_token > stale.token);
    assert_true(st.checkpoints[0].position.sequence[0] != '\0');
    kl_dest_state_free(&st);
    kl_dest_destroy(d);
    kl_kinesis_delete_stream(r.k.conn.client, stream, NULL);
    kl_test_rig_close(&r);
    pthread_mutex_destroy(&stale.lock);
}

/* One worker, two shards, a slice of 1 ms: after each chunk the running
 * task gives the worker to the waiting one, so both shards advance in
 * turns; every message lands once. */
static void postgres_tasks_take_turns(void **state)
{
    struct kl_test_rig r;
    struct kl_load_params p;
    struct kl_engine_stats st;
    char stream[96], table[96], dataset[64];
    cJSON *doc;
    (void)state;

    struct kl_test_rig_options o = {.workers = 1, .task_slice_ms = 1};
    rig_open(&r, true, &o);
    snprintf(dataset, sizeof dataset, "turns_%d", (int)getpid());
    kl_test_rig_new_stream(&r, "kl-turns", 2, 400, dataset, 50, stream, table, &p);

    doc = kl_test_rig_run_job(&r, &p, "succeeded", 0);
    assert_int_equal(kl_test_job_messages(doc), 400);
    assert_int_equal(kl_test_job_rows(doc, table), 400);
    cJSON_Delete(doc);
    kl_engine_stats(r.engine, &st);
    printf("# %llu yields\n", (unsigned long long)st.task_yields);
    assert_true(st.task_yields > 0);
    assert_int_equal(st.task_failures, 0);
    assert_int_equal(kl_test_rig_stored_rows(&r, p.dataset_name, table, false), 400);
    assert_int_equal(kl_test_rig_stored_rows(&r, p.dataset_name, table, true), 400);
    kl_kinesis_delete_stream(r.k.conn.client, stream, NULL);
    kl_test_rig_close(&r);
}

/* The worker that acked a job's last task dies before completing the job:
 * the job stays running with every task done. The sweep of another engine
 * finds it on two checks in a row and completes it. */
static void sqlite_a_job_left_running_is_completed(void **state)
{
    struct kl_test_rig r;
    struct kl_load_params p;
    struct kl_store_task t;
    struct kl_store_task_ack ack;
    struct kl_store_job job;
    struct kl_err err;
    char id[KL_STORE_JOB_ID_SIZE], stream[96], table[96], dataset[64];
    bool existing, got = false;
    cJSON *doc;
    (void)state;

    struct kl_test_rig_options o = {.no_start = true, .sweep_interval_ms = 100};
    rig_open(&r, false, &o);
    snprintf(dataset, sizeof dataset, "left_%d", (int)getpid());
    kl_test_rig_new_stream(&r, "kl-left", 1, 10, dataset, 100, stream, table, &p);
    /* the job's planning task is taken and acked by a worker that then dies */
    assert_int_equal(kl_engine_submit(r.engine, &p, NULL, id, &existing, &err), KL_OK);
    assert_int_equal(kl_store_job_transition(r.store, id, KL_STORE_JOB_RUNNING, NULL, NULL, &err),
                     KL_OK);
    assert_int_equal(kl_store_task_take(r.store, "dead", 60000, 0, &t, &got, &err), KL_OK);
    assert_true(got);
    assert_int_equal(kl_store_task_ack(r.store, &t, &ack, &err), KL_OK);
    assert_true(ack.last);

    assert_int_equal(kl_engine_start(r.engine, &err), KL_OK);
    kl_store_job_init(&job);
    if (kl_engine_wait(r.engine, id, 60000, &job, &err) != KL_OK)
        fail_msg("the job was not completed: %s", err.msg);
    assert_int_equal(job.status, KL_STORE_JOB_SUCCEEDED);
    doc = kl_doc_job(&job);
    assert_int_equal(kl_test_job_rows(doc, "_dlt_pipeline_state"), 1);
    cJSON_Delete(doc);
    kl_store_job_free(&job);
    kl_kinesis_delete_stream(r.k.conn.client, stream, NULL);
    kl_test_rig_close(&r);
}

static void sqlite_stalled_former_owner(void **state)
{
    (void)state;
    a_stalled_former_owner_commits_nothing(false);
}

static void postgres_stalled_former_owner(void **state)
{
    (void)state;
    a_stalled_former_owner_commits_nothing(true);
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

/* Two replicas on one Redis, 4 workers each, race for the last of one
 * job's budget over 6 shards in small pages: the job loads exactly its
 * budget, not a page per worker more (a budget read, decided and written
 * back outside the store lets two workers both take the last of it). */
static void two_replicas_share_one_budget(void **state)
{
    struct kl_test_rig_options o = {0};
    struct kl_test_rig r;
    struct kl_load_params p;
    char stream[96], table[96], dataset[64], prefix[64];
    cJSON *doc;
    (void)state;

    snprintf(prefix, sizeof prefix, "kl-test-budget-%d:", (int)getpid());
    o.redis_prefix = prefix;
    o.workers = 4;
    rig_open(&r, true, &o);
    snprintf(dataset, sizeof dataset, "eng_budget_%d", (int)getpid());
    kl_test_rig_new_stream(&r, "kl-budget", 6, 1200, dataset, 20, stream, table, &p);
    p.max_messages = 333;
    doc = kl_test_rig_run_job(&r, &p, "succeeded", 0);
    assert_int_equal(kl_test_job_messages(doc), 333);
    assert_int_equal(kl_test_job_rows(doc, table), 333);
    cJSON_Delete(doc);
    assert_int_equal(kl_test_rig_stored_rows(&r, dataset, table, true), 333);
    /* the rest, once: nothing lost to the budget */
    p.max_messages = -1;
    doc = kl_test_rig_run_job(&r, &p, "succeeded", 0);
    assert_int_equal(kl_test_job_messages(doc), 1200 - 333);
    cJSON_Delete(doc);
    assert_int_equal(kl_test_rig_stored_rows(&r, dataset, table, true), 1200);
    assert_int_equal(kl_test_rig_stored_rows(&r, dataset, table, false), 1200);
    kl_kinesis_delete_stream(r.k.conn.client, stream, NULL);
    kl_test_rig_close(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(sqlite_jobs_load_exactly_once),
        cmocka_unit_test(postgres_jobs_load_exactly_once),
        cmocka_unit_test(two_replicas_share_one_budget),
        cmocka_unit_test(sqlite_stalled_former_owner),
        cmocka_unit_test(postgres_stalled_former_owner),
        cmocka_unit_test(postgres_tasks_take_turns),
        cmocka_unit_test(sqlite_a_job_left_running_is_completed),
    };
    int rc;
    snprintf(sqlite_path, sizeof sqlite_path, "/tmp/kl-test-engine-%d.db", (int)getpid());
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    unlink(sqlite_path);
    return rc;
}
