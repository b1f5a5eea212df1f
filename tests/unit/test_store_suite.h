/*
 * The state store's behaviour, one body for both backends: included by
 * tests/unit/test_store_memory.c (in-process, fake clock) and
 * tests/integration/test_store_redis.c (real Redis, real time). The file
 * that includes it defines BACKEND: how to open a fresh store with its own
 * namespace and how to let time pass. Every test opens its own store.
 */
#ifndef KL_TEST_STORE_SUITE_H
#define KL_TEST_STORE_SUITE_H

#include "tests/support/test_support.h"
#include "core/store/store.h"
#include "core/util/err.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct store_backend {
    const char *name;
    /* A fresh, empty store; `o` carries the test's TTLs (prefix and clock are the backend's). */
    struct kl_store *(*open)(struct kl_store_options *o);
    /* Lets `ms` of store time pass (a fake clock moves, or the test sleeps). */
    void (*advance)(int64_t ms);
    /* A TTL short enough to wait out, long enough to act within. */
    int64_t ttl_ms;
};

static const struct store_backend BACKEND;

#define JOB_ID_BUF KL_STORE_JOB_ID_SIZE

static struct kl_store *open_with(int64_t retention_ms, int64_t idem_ttl_ms)
{
    struct kl_store_options o;
    kl_store_options_init(&o);
    if (retention_ms > 0)
        o.job_retention_ms = retention_ms;
    if (idem_ttl_ms > 0)
        o.idempotency_ttl_ms = idem_ttl_ms;
    /* the store copies its options */
    // cppcheck-suppress returnDanglingLifetime
    return BACKEND.open(&o);
}

static struct kl_store *open_store(void)
{
    return open_with(0, 0);
}

#define ASSERT_RC(call, want)                                                                      \
    do {                                                                                           \
        int rc_ = (call);                                                                          \
        if (rc_ != (int)(want))                                                                    \
            fail_msg("%s: got %s, want %s", #call, kl_err_code_name((enum kl_err_code)rc_),        \
                     kl_err_code_name((enum kl_err_code)(want)));                                  \
    } while (0)

/* Calls that must succeed; the error message is shown when they do not. */
#define MUST(call)                                                                                 \
    do {                                                                                           \
        int rc_ = (call);                                                                          \
        if (rc_ != KL_OK)                                                                          \
            fail_msg("%s: %s: %s", #call, kl_err_code_name((enum kl_err_code)rc_), err.msg);       \
    } while (0)

static void new_job(struct kl_store *s, const char *stream, const char *pipeline, const char *key,
                    char id[JOB_ID_BUF])
{
    struct kl_err err = {0};
    struct kl_store_job_new j = {stream, pipeline, "kinesis", "{\"chunk_size\":1000}", key};
    bool existing = true;
    MUST(kl_store_job_create(s, &j, id, &existing, &err));
    assert_false(existing);
}

static void set_status(struct kl_store *s, const char *id, enum kl_store_job_status to)
{
    struct kl_err err = {0};
    MUST(kl_store_job_transition(s, id, to, NULL, NULL, &err));
}

static void get_job(struct kl_store *s, const char *id, struct kl_store_job *j)
{
    struct kl_err err = {0};
    MUST(kl_store_job_get(s, id, j, &err));
}

/* ---- jobs ---- */

static void test_job_create_get(void **state)
{
    struct kl_store *s = open_store();
    struct kl_err err = {0};
    struct kl_store_job j;
    char id[JOB_ID_BUF];
    (void)state;

    new_job(s, "orders", "pipe", NULL, id);
    assert_int_equal(strlen(id), KL_STORE_JOB_ID_LEN);
    kl_store_job_init(&j);
    get_job(s, id, &j);
    assert_string_equal(j.id, id);
    assert_string_equal(j.stream, "orders");
    assert_string_equal(j.pipeline_name, "pipe");
    assert_string_equal(j.dataset_name, "kinesis");
    assert_string_equal(j.parameters, "{\"chunk_size\":1000}");
    assert_int_equal(j.status, KL_STORE_JOB_QUEUED);
    assert_false(j.cancel_requested);
    assert_true(j.created_ms > 0);
    assert_int_equal(j.started_ms, -1);
    assert_int_equal(j.finished_ms, -1);
    assert_false(j.has_error);
    assert_int_equal(j.messages, 0);
    assert_int_equal(j.tasks_total, 0);
    assert_int_equal(j.n_shards, 0);
    assert_int_equal(j.n_tables, 0);

    set_status(s, id, KL_STORE_JOB_RUNNING);
    {
        struct kl_store_job_error e = {"unavailable", "GetRecords: throttled", "shardId-1"};
        MUST(kl_store_job_transition(s, id, KL_STORE_JOB_FAILED, &e, NULL, &err));
    }
    get_job(s, id, &j);
    assert_int_equal(j.status, KL_STORE_JOB_FAILED);
    assert_true(j.started_ms >= j.created_ms);
    assert_true(j.finished_ms >= j.started_ms);
    assert_true(j.has_error);
    assert_string_equal(j.error_type, "unavailable");
    assert_string_equal(j.error_detail, "GetRecords: throttled");
    assert_string_equal(j.error_shard, "shardId-1");

    ASSERT_RC(kl_store_job_get(s, "0000000000000000000000000z", &j, &err), KL_ERR_NOT_FOUND);
    ASSERT_RC(kl_store_job_get(s, "not-an-id", &j, &err), KL_ERR_NOT_FOUND);
    kl_store_job_free(&j);
    kl_store_destroy(s);
}

static void test_job_conflict(void **state)
{
    struct kl_store *s = open_store();
    struct kl_err err = {0};
    struct kl_store_job_new j = {"orders", "pipe", "kinesis", NULL, NULL};
    char a[JOB_ID_BUF], b[JOB_ID_BUF], other[JOB_ID_BUF];
    bool existing = false, found = false;
    (void)state;

    new_job(s, "orders", "pipe", NULL, a);
    /* queued: a second job of the same stream and pipeline is refused, naming the first */
    assert_int_equal(kl_store_job_create(s, &j, b, &existing, &err), KL_ERR_CONFLICT);
    assert_string_equal(b, a);
    MUST(kl_store_job_active(s, "pipe", "orders", other, &found, &err));
    assert_true(found);
    assert_string_equal(other, a);
    /* other pipelines and streams are independent */
    new_job(s, "orders", "pipe2", NULL, other);
    new_job(s, "payments", "pipe", NULL, other);
    /* running: still refused */
    set_status(s, a, KL_STORE_JOB_RUNNING);
    memset(b, 0, sizeof b);
    assert_int_equal(kl_store_job_create(s, &j, b, &existing, &err), KL_ERR_CONFLICT);
    assert_string_equal(b, a);
    /* finished: free again */
    set_status(s, a, KL_STORE_JOB_SUCCEEDED);
    MUST(kl_store_job_active(s, "pipe", "orders", other, &found, &err));
    assert_false(found);
    new_job(s, "orders", "pipe", NULL, b);
    assert_string_not_equal(a, b);
    kl_store_destroy(s);
}

static void test_job_idempotency(void **state)
{
    int64_t ttl = BACKEND.ttl_ms;
    struct kl_store *s = open_with(0, ttl);
    struct kl_err err = {0};
    struct kl_store_job_new j = {"orders", "pipe", "kinesis", "{}", "key-1"};
    char a[JOB_ID_BUF], b[JOB_ID_BUF];
    bool existing = false;
    (void)state;

    new_job(s, "orders", "pipe", "key-1", a);
    /* the same key answers the first job, even while it is active */
    MUST(kl_store_job_create(s, &j, b, &existing, &err));
    assert_true(existing);
    assert_string_equal(a, b);
    /* ... and after it finished */
    set_status(s, a, KL_STORE_JOB_CANCELLED);
    MUST(kl_store_job_create(s, &j, b, &existing, &err));
    assert_true(existing);
    assert_string_equal(a, b);
    /* a different key is a different job */
    j.idempotency_key = "key-2";
    MUST(kl_store_job_create(s, &j, b, &existing, &err));
    assert_false(existing);
    assert_string_not_equal(a, b);
    /* a key that conflicts is not remembered */
    j.idempotency_key = "key-3";
    assert_int_equal(kl_store_job_create(s, &j, a, &existing, &err), KL_ERR_CONFLICT);
    assert_string_equal(a, b);
    set_status(s, b, KL_STORE_JOB_CANCELLED);
    MUST(kl_store_job_create(s, &j, a, &existing, &err));
    assert_false(existing);
    set_status(s, a, KL_STORE_JOB_CANCELLED);
    /* keys expire */
    BACKEND.advance(ttl + ttl / 2);
    j.idempotency_key = "key-1";
    MUST(kl_store_job_create(s, &j, b, &existing, &err));
    assert_false(existing);
    kl_store_destroy(s);
}

static const struct {
    enum kl_store_job_status path[2];
    int n_path;
    enum kl_store_job_status to;
    int rc;
    enum kl_store_job_status after;
} transitions[] = {
    {{0}, 0, KL_STORE_JOB_RUNNING, KL_OK, KL_STORE_JOB_RUNNING},
    {{0}, 0, KL_STORE_JOB_QUEUED, KL_OK, KL_STORE_JOB_QUEUED},
    {{0}, 0, KL_STORE_JOB_FAILED, KL_OK, KL_STORE_JOB_FAILED},
    {{0}, 0, KL_STORE_JOB_CANCELLED, KL_OK, KL_STORE_JOB_CANCELLED},
    {{0}, 0, KL_STORE_JOB_SUCCEEDED, KL_ERR_CONFLICT, KL_STORE_JOB_QUEUED},
    {{KL_STORE_JOB_RUNNING}, 1, KL_STORE_JOB_RUNNING, KL_OK, KL_STORE_JOB_RUNNING},
    {{KL_STORE_JOB_RUNNING}, 1, KL_STORE_JOB_SUCCEEDED, KL_OK, KL_STORE_JOB_SUCCEEDED},
    {{KL_STORE_JOB_RUNNING}, 1, KL_STORE_JOB_FAILED, KL_OK, KL_STORE_JOB_FAILED},
    {{KL_STORE_JOB_RUNNING}, 1, KL_STORE_JOB_CANCELLED, KL_OK, KL_STORE_JOB_CANCELLED},
    {{KL_STORE_JOB_RUNNING}, 1, KL_STORE_JOB_QUEUED, KL_ERR_CONFLICT, KL_STORE_JOB_RUNNING},
    {{KL_STORE_JOB_RUNNING, KL_STORE_JOB_SUCCEEDED},
     2,
     KL_STORE_JOB_SUCCEEDED,
     KL_OK,
     KL_STORE_JOB_SUCCEEDED},
    {{KL_STORE_JOB_RUNNING, KL_STORE_JOB_SUCCEEDED},
     2,
     KL_STORE_JOB_FAILED,
     KL_ERR_CONFLICT,
     KL_STORE_JOB_SUCCEEDED},
    {{KL_STORE_JOB_RUNNING, KL_STORE_JOB_FAILED},
     2,
     KL_STORE_JOB_RUNNING,
     KL_ERR_CONFLICT,
     KL_STORE_JOB_FAILED},
    {{KL_STORE_JOB_CANCELLED}, 1, KL_STORE_JOB_RUNNING, KL_ERR_CONFLICT, KL_STORE_JOB_CANCELLED},
    {{KL_STORE_JOB_FAILED}, 1, KL_STORE_JOB_CANCELLED, KL_ERR_CONFLICT, KL_STORE_JOB_FAILED},
};

static void test_job_transitions(void **state)
{
    struct kl_store *s = open_store();
    (void)state;

    for (size_t i = 0; i < sizeof transitions / sizeof transitions[0]; i++) {
        struct kl_err err = {0};
        enum kl_store_job_status now = KL_STORE_JOB_QUEUED, got;
        char stream[16], id[JOB_ID_BUF];
        bool cancel;
        int rc;

        snprintf(stream, sizeof stream, "s%zu", i);
        new_job(s, stream, "pipe", NULL, id);
        for (int k = 0; k < transitions[i].n_path; k++)
            set_status(s, id, transitions[i].path[k]);
        rc = kl_store_job_transition(s, id, transitions[i].to, NULL, &now, &err);
        if (rc != transitions[i].rc)
            fail_msg("row %zu: %s -> %s: got %s (%s)", i,
                     kl_store_job_status_name(transitions[i].path[0]),
                     kl_store_job_status_name(transitions[i].to), kl_err_code_name(rc), err.msg);
        assert_int_equal(now, transitions[i].after);
        MUST(kl_store_job_status(s, id, &got, &cancel, &err));
        assert_int_equal(got, transitions[i].after);
    }
    kl_store_destroy(s);
}

static void test_job_cancel(void **state)
{
    struct kl_store *s = open_store();
    struct kl_err err = {0};
    enum kl_store_job_status now, st;
    char q[JOB_ID_BUF], r[JOB_ID_BUF], d[JOB_ID_BUF];
    bool cancel = false;
    (void)state;

    new_job(s, "a", "pipe", NULL, q);
    new_job(s, "b", "pipe", NULL, r);
    new_job(s, "c", "pipe", NULL, d);
    /* a queued job is cancelled at once */
    MUST(kl_store_job_cancel(s, q, &now, &err));
    assert_int_equal(now, KL_STORE_JOB_CANCELLED);
    MUST(kl_store_job_status(s, q, &st, &cancel, &err));
    assert_int_equal(st, KL_STORE_JOB_CANCELLED);
    /* twice is fine */
    MUST(kl_store_job_cancel(s, q, &now, &err));
    assert_int_equal(now, KL_STORE_JOB_CANCELLED);
    /* a running one is asked to stop; its workers end it */
    set_status(s, r, KL_STORE_JOB_RUNNING);
    MUST(kl_store_job_cancel(s, r, &now, &err));
    assert_int_equal(now, KL_STORE_JOB_RUNNING);
    MUST(kl_store_job_status(s, r, &st, &cancel, &err));
    assert_int_equal(st, KL_STORE_JOB_RUNNING);
    assert_true(cancel);
    set_status(s, r, KL_STORE_JOB_CANCELLED);
    /* a finished one cannot be */
    set_status(s, d, KL_STORE_JOB_RUNNING);
    set_status(s, d, KL_STORE_JOB_SUCCEEDED);
    assert_int_equal(kl_store_job_cancel(s, d, &now, &err), KL_ERR_CONFLICT);
    assert_int_equal(now, KL_STORE_JOB_SUCCEEDED);
    ASSERT_RC(kl_store_job_cancel(s, "0000000000000000000000000z", &now, &err), KL_ERR_NOT_FOUND);
    kl_store_destroy(s);
}

static void test_job_progress(void **state)
{
    struct kl_store *s = open_store();
    struct kl_err err = {0};
    struct kl_store_table_rows t1[] = {{"orders", 10}, {"orders__items", 25}};
    struct kl_store_table_rows t2[] = {{"orders", 5}, {"_dlt_pipeline_state", 1}};
    struct kl_gap gap = {"100", "", "trimmed by retention"};
    struct kl_store_progress p;
    struct kl_store_job j;
    char id[JOB_ID_BUF];
    bool applied = false;
    (void)state;

    new_job(s, "orders", "pipe", NULL, id);
    set_status(s, id, KL_STORE_JOB_RUNNING);
    /* registering a shard shows it before its first commit */
    memset(&p, 0, sizeof p);
    p.shard_id = "shard-b";
    p.millis_behind_latest = -1;
    MUST(kl_store_job_progress(s, id, &p, &applied, &err));
    assert_true(applied);

    memset(&p, 0, sizeof p);
    p.shard_id = "shard-a";
    p.sequence = "200";
    p.sub_sequence = -1;
    p.millis_behind_latest = 5000;
    p.messages = 11;
    p.dead_letters = 1;
    p.tables = t1;
    p.n_tables = 2;
    p.gap = &gap;
    MUST(kl_store_job_progress(s, id, &p, &applied, &err));
    assert_true(applied);
    /* the same report again (a retry, a re-delivered chunk) is not counted */
    MUST(kl_store_job_progress(s, id, &p, &applied, &err));
    assert_false(applied);
    /* numerically later ("1000" > "200"), and a KPL sub-record after it */
    p.sequence = "1000";
    p.sub_sequence = 0;
    p.millis_behind_latest = 0;
    p.messages = 5;
    p.dead_letters = 0;
    p.tables = t2;
    p.gap = NULL;
    p.done = true;
    MUST(kl_store_job_progress(s, id, &p, &applied, &err));
    assert_true(applied);
    p.sub_sequence = -1; /* behind (1000, 0) */
    p.done = false;
    MUST(kl_store_job_progress(s, id, &p, &applied, &err));
    assert_false(applied);

    kl_store_job_init(&j);
    get_job(s, id, &j);
    assert_int_equal(j.messages, 16);
    assert_int_equal(j.dead_letters, 1);
    assert_int_equal(j.n_tables, 3); /* ordered by name */
    assert_string_equal(j.tables[0].table, "_dlt_pipeline_state");
    assert_int_equal(j.tables[0].rows, 1);
    assert_string_equal(j.tables[1].table, "orders");
    assert_int_equal(j.tables[1].rows, 15);
    assert_string_equal(j.tables[2].table, "orders__items");
    assert_int_equal(j.tables[2].rows, 25);
    assert_int_equal(j.n_shards, 2);
    assert_string_equal(j.shards[0].position.shard_id, "shard-a");
    assert_string_equal(j.shards[0].position.sequence, "1000");
    assert_int_equal(j.shards[0].position.sub_sequence, 0);
    assert_int_equal(j.shards[0].millis_behind_latest, 0);
    assert_int_equal(j.shards[0].messages, 16);
    assert_true(j.shards[0].done);
    assert_true(j.shards[0].has_gap);
    assert_string_equal(j.shards[0].gap.from_sequence, "100");
    assert_string_equal(j.shards[0].gap.to_sequence, "");
    assert_string_equal(j.shards[0].gap.reason, "trimmed by retention");
    assert_string_equal(j.shards[1].position.shard_id, "shard-b");
    assert_string_equal(j.shards[1].position.sequence, "");
    assert_int_equal(j.shards[1].position.sub_sequence, -1);
    assert_int_equal(j.shards[1].millis_behind_latest, -1);
    assert_int_equal(j.shards[1].messages, 0);
    assert_false(j.shards[1].done);
    assert_false(j.shards[1].has_gap);
    assert_string_equal(j.shards[1].waiting_on, "");
    kl_store_job_free(&j);

    /* a shard waiting on a Kinesis call shows it, whatever the position
     * part does; "" clears it, NULL leaves it */
    memset(&p, 0, sizeof p);
    p.shard_id = "shard-b";
    p.millis_behind_latest = -1;
    p.waiting_on = "GetShardIterator";
    p.waiting_since_ms = 1700000000000LL;
    p.waiting_until_ms = 1700000060000LL;
    p.waiting_why = "GetShardIterator: no answer within 30000 ms";
    MUST(kl_store_job_progress(s, id, &p, &applied, &err));
    p.waiting_on = NULL;
    p.messages = 0;
    MUST(kl_store_job_progress(s, id, &p, &applied, &err));
    kl_store_job_init(&j);
    get_job(s, id, &j);
    assert_string_equal(j.shards[1].waiting_on, "GetShardIterator");
    assert_int_equal(j.shards[1].waiting_since_ms, 1700000000000LL);
    assert_int_equal(j.shards[1].waiting_until_ms, 1700000060000LL);
    assert_string_equal(j.shards[1].waiting_why, "GetShardIterator: no answer within 30000 ms");
    assert_string_equal(j.shards[0].waiting_on, "");
    kl_store_job_free(&j);
    p.waiting_on = "";
    MUST(kl_store_job_progress(s, id, &p, &applied, &err));
    kl_store_job_init(&j);
    get_job(s, id, &j);
    assert_string_equal(j.shards[1].waiting_on, "");
    assert_int_equal(j.shards[1].waiting_since_ms, 0);
    assert_string_equal(j.shards[1].waiting_why, "");
    kl_store_job_free(&j);

    ASSERT_RC(kl_store_job_progress(s, "0000000000000000000000000z", &p, &applied, &err),
              KL_ERR_NOT_FOUND);
    kl_store_destroy(s);
}

/* A shard's owner, newest arrival and rate: the owner is set by any report
 * that names one, the arrival only rises, the rate counts committed
 * messages with a one-minute time constant (and decays to the read time). */
static void test_job_shard_owner_arrival_rate(void **state)
{
    struct kl_store *s = open_store();
    struct kl_err err = {0};
    struct kl_store_progress p;
    struct kl_store_job j;
    char id[JOB_ID_BUF];
    bool applied = false;
    double rate;
    (void)state;

    new_job(s, "orders", "pipe", NULL, id);
    set_status(s, id, KL_STORE_JOB_RUNNING);
    memset(&p, 0, sizeof p);
    p.shard_id = "shard-a";
    p.millis_behind_latest = -1;
    p.owner = "host-a-12";
    MUST(kl_store_job_progress(s, id, &p, &applied, &err));
    p.owner = NULL;
    p.sequence = "100";
    p.sub_sequence = -1;
    p.messages = 60;
    p.last_arrival_ms = 1700000000000LL;
    p.committed_at_ms = 1700000001000LL;
    MUST(kl_store_job_progress(s, id, &p, &applied, &err));
    assert_true(applied);
    /* a later chunk 60 s on, its records older than the first's newest */
    p.sequence = "200";
    p.messages = 60;
    p.last_arrival_ms = 1699999999000LL;
    p.committed_at_ms = 1700000061000LL;
    p.owner = "host-b-7";
    MUST(kl_store_job_progress(s, id, &p, &applied, &err));

    kl_store_job_init(&j);
    get_job(s, id, &j);
    assert_string_equal(j.shards[0].owner, "host-b-7");
    assert_int_equal(j.shards[0].last_arrival_ms, 1700000000000LL);
    assert_int_equal(j.shards[0].rate_at_ms, 1700000061000LL);
    /* 60 messages, then 60 s later 60 more: 1 * e^-1 + 1 messages/s */
    rate = j.shards[0].messages_per_s;
    assert_true(rate > 1.367 && rate < 1.368);
    assert_true(kl_store_rate_at(&j.shards[0], 1700000121000LL) > 0.502 &&
                kl_store_rate_at(&j.shards[0], 1700000121000LL) < 0.504);
    assert_true(j.read_ms > 0);
    assert_int_equal(j.shards[0].window, -1);
    kl_store_job_free(&j);

    /* the load window only rises, and a report without one leaves it */
    memset(&p, 0, sizeof p);
    p.shard_id = "shard-a";
    p.millis_behind_latest = -1;
    p.has_window = true;
    p.window = 3;
    MUST(kl_store_job_progress(s, id, &p, &applied, &err));
    p.window = 2;
    MUST(kl_store_job_progress(s, id, &p, &applied, &err));
    p.has_window = false;
    p.window = 0;
    MUST(kl_store_job_progress(s, id, &p, &applied, &err));
    kl_store_job_init(&j);
    get_job(s, id, &j);
    assert_int_equal(j.shards[0].window, 3);
    kl_store_job_free(&j);
    kl_store_destroy(s);
}

static void test_job_list(void **state)
{
    struct kl_store *s = open_store();
    struct kl_err err = {0};
    char ids[12][JOB_ID_BUF], pipe[16], cursor[JOB_ID_BUF];
    struct kl_store_job_filter f;
    struct kl_store_job_page page = {0};
    size_t seen;
    (void)state;

    /* 12 jobs: streams alternate a/b; every third one is running */
    for (int i = 0; i < 12; i++) {
        snprintf(pipe, sizeof pipe, "p%d", i);
        new_job(s, i % 2 == 0 ? "a" : "b", pipe, NULL, ids[i]);
        if (i % 3 == 0)
            set_status(s, ids[i], KL_STORE_JOB_RUNNING);
        BACKEND.advance(2); /* ids are ordered by creation time */
    }
    /* all, newest first, pages of 5 */
    memset(&f, 0, sizeof f);
    f.limit = 5;
    seen = 0;
    cursor[0] = '\0';
    do {
        f.cursor = cursor[0] != '\0' ? cursor : NULL;
        MUST(kl_store_job_list(s, &f, &page, &err));
        for (size_t k = 0; k < page.n_jobs; k++, seen++) {
            assert_true(seen < 12);
            assert_string_equal(page.jobs[k].id, ids[11 - seen]);
        }
        memcpy(cursor, page.next_cursor, sizeof cursor);
    } while (cursor[0] != '\0');
    assert_int_equal(seen, 12);

    /* by stream */
    memset(&f, 0, sizeof f);
    f.stream = "b";
    f.limit = 100;
    MUST(kl_store_job_list(s, &f, &page, &err));
    assert_int_equal(page.n_jobs, 6);
    assert_string_equal(page.next_cursor, "");
    for (size_t k = 0; k < page.n_jobs; k++)
        assert_string_equal(page.jobs[k].id, ids[11 - 2 * k]);
    /* by status */
    memset(&f, 0, sizeof f);
    f.has_status = true;
    f.status = KL_STORE_JOB_RUNNING;
    f.limit = 3;
    MUST(kl_store_job_list(s, &f, &page, &err));
    assert_int_equal(page.n_jobs, 3);
    assert_string_equal(page.jobs[0].id, ids[9]);
    assert_string_equal(page.jobs[2].id, ids[3]);
    assert_string_equal(page.next_cursor, ids[3]);
    f.cursor = ids[3];
    MUST(kl_store_job_list(s, &f, &page, &err));
    assert_int_equal(page.n_jobs, 1);
    assert_string_equal(page.jobs[0].id, ids[0]);
    /* both */
    memset(&f, 0, sizeof f);
    f.stream = "a";
    f.has_status = true;
    f.status = KL_STORE_JOB_QUEUED;
    MUST(kl_store_job_list(s, &f, &page, &err));
    assert_int_equal(page.n_jobs, 4); /* 2, 4, 8, 10 */
    assert_string_equal(page.jobs[0].id, ids[10]);
    assert_string_equal(page.jobs[3].id, ids[2]);
    /* limits */
    f.limit = 501;
    ASSERT_RC(kl_store_job_list(s, &f, &page, &err), KL_ERR_INVALID);
    f.limit = 10;
    f.cursor = "bogus";
    ASSERT_RC(kl_store_job_list(s, &f, &page, &err), KL_ERR_INVALID);
    kl_store_job_page_free(&page);
    kl_store_destroy(s);
}

/* Jobs by status as kl_store_stats counts them. */
static void assert_job_counts(struct kl_store *s, int64_t queued, int64_t running,
                              int64_t succeeded)
{
    struct kl_store_stats st;
    struct kl_err err = {0};
    MUST(kl_store_stats(s, &st, &err));
    assert_int_equal(st.jobs[KL_STORE_JOB_QUEUED], queued);
    assert_int_equal(st.jobs[KL_STORE_JOB_RUNNING], running);
    assert_int_equal(st.jobs[KL_STORE_JOB_SUCCEEDED], succeeded);
    assert_int_equal(st.jobs[KL_STORE_JOB_FAILED], 0);
    assert_int_equal(st.jobs[KL_STORE_JOB_CANCELLED], 0);
}

static void test_job_retention(void **state)
{
    int64_t keep = BACKEND.ttl_ms;
    struct kl_store *s = open_with(keep, 0);
    struct kl_err err = {0};
    struct kl_store_job_filter f;
    struct kl_store_job_page page = {0};
    struct kl_store_job j;
    char done[JOB_ID_BUF], active[JOB_ID_BUF];
    (void)state;

    new_job(s, "a", "pipe", NULL, done);
    new_job(s, "b", "pipe", NULL, active);
    set_status(s, done, KL_STORE_JOB_RUNNING);
    set_status(s, active, KL_STORE_JOB_RUNNING);
    {
        struct kl_store_progress p = {.shard_id = "s1", .messages = 3, .millis_behind_latest = -1};
        MUST(kl_store_job_progress(s, done, &p, NULL, &err));
    }
    set_status(s, done, KL_STORE_JOB_SUCCEEDED);
    kl_store_job_init(&j);
    get_job(s, done, &j);
    assert_job_counts(s, 0, 1, 1);
    BACKEND.advance(keep + keep / 2);
    /* the finished job no longer counts, the running one does */
    assert_job_counts(s, 0, 1, 0);
    /* the finished job is gone, the running one is kept however old */
    ASSERT_RC(kl_store_job_get(s, done, &j, &err), KL_ERR_NOT_FOUND);
    get_job(s, active, &j);
    memset(&f, 0, sizeof f);
    MUST(kl_store_job_list(s, &f, &page, &err));
    assert_int_equal(page.n_jobs, 1);
    assert_string_equal(page.jobs[0].id, active);
    kl_store_job_page_free(&page);
    kl_store_job_free(&j);
    kl_store_destroy(s);
}

/* ---- tasks ---- */

static void take(struct kl_store *s, const char *owner, int64_t lease_ms, struct kl_store_task *t)
{
    struct kl_err err = {0};
    bool got = false;
    MUST(kl_store_task_take(s, owner, lease_ms, 0, t, &got, &err));
    if (!got)
        fail_msg("%s: no task to take", owner);
}

static void assert_empty(struct kl_store *s)
{
    struct kl_err err = {0};
    struct kl_store_task t;
    bool got = true;
    MUST(kl_store_task_take(s, "w-check", 60000, 0, &t, &got, &err));
    if (got)
        fail_msg("unexpected task %s/%s", t.job_id, t.shard_id);
}

static void test_queue_fifo_ack(void **state)
{
    struct kl_store *s = open_store();
    struct kl_err err = {0};
    struct kl_store_task t[3];
    struct kl_store_task_ack ack;
    struct kl_store_job j;
    char id[JOB_ID_BUF], done[JOB_ID_BUF];
    bool created = false;
    (void)state;

    new_job(s, "orders", "pipe", NULL, id);
    MUST(kl_store_task_enqueue(s, id, "shard-1", "{\"closed\":false}", 0, &created, &err));
    assert_true(created);
    MUST(kl_store_task_enqueue(s, id, "shard-2", NULL, 0, &created, &err));
    MUST(kl_store_task_enqueue(s, id, "shard-3", NULL, 0, &created, &err));
    /* enqueueing a shard the job has is a no-op */
    MUST(kl_store_task_enqueue(s, id, "shard-2", NULL, 0, &created, &err));
    assert_false(created);
    kl_store_job_init(&j);
    get_job(s, id, &j);
    assert_int_equal(j.tasks_total, 3);

    take(s, "w1", 60000, &t[0]);
    take(s, "w2", 60000, &t[1]);
    take(s, "w1", 60000, &t[2]);
    assert_empty(s);
    assert_string_equal(t[0].job_id, id);
    assert_string_equal(t[0].shard_id, "shard-1");
    assert_string_equal(t[0].meta, "{\"closed\":false}");
    assert_int_equal(t[0].attempt, 0);
    assert_int_equal(t[0].delivery, 1);
    assert_string_equal(t[1].shard_id, "shard-2");
    assert_string_equal(t[1].meta, "");
    assert_string_equal(t[2].shard_id, "shard-3");
    {
        struct kl_store_stats st;
        MUST(kl_store_stats(s, &st, &err));
        assert_int_equal(st.in_flight, 3);
        assert_int_equal(st.delayed, 0);
    }
    MUST(kl_store_task_heartbeat(s, &t[1], 60000, &err));
    MUST(kl_store_task_ack(s, &t[1], &ack, &err));
    assert_int_equal(ack.tasks_done, 1);
    assert_int_equal(ack.tasks_total, 3);
    assert_false(ack.last);
    /* a repeated ack answers the same */
    MUST(kl_store_task_ack(s, &t[1], &ack, &err));
    assert_int_equal(ack.tasks_done, 1);
    assert_false(ack.last);
    /* heartbeats of an acked task fail */
    ASSERT_RC(kl_store_task_heartbeat(s, &t[1], 60000, &err), KL_ERR_CONFLICT);
    /* a child queued before its parent is acked keeps the job unfinished */
    MUST(kl_store_task_enqueue(s, id, "shard-4", NULL, 0, &created, &err));
    MUST(kl_store_task_ack(s, &t[0], &ack, &err));
    MUST(kl_store_task_ack(s, &t[2], &ack, &err));
    assert_int_equal(ack.tasks_done, 3);
    assert_int_equal(ack.tasks_total, 4);
    assert_false(ack.last);
    take(s, "w3", 60000, &t[0]);
    assert_string_equal(t[0].shard_id, "shard-4");
    MUST(kl_store_task_ack(s, &t[0], &ack, &err));
    assert_true(ack.last);
    get_job(s, id, &j);
    assert_int_equal(j.tasks_done, 4);
    assert_int_equal(j.tasks_total, 4);
    kl_store_job_free(&j);

    ASSERT_RC(kl_store_task_enqueue(s, "0000000000000000000000000z", "x", NULL, 0, &created, &err),
              KL_ERR_NOT_FOUND);
    new_job(s, "other", "pipe", NULL, done);
    set_status(s, done, KL_STORE_JOB_CANCELLED);
    ASSERT_RC(kl_store_task_enqueue(s, done, "x", NULL, 0, &created, &err), KL_ERR_CONFLICT);
    kl_store_destroy(s);
}

static void test_queue_nack_delay(void **state)
{
    struct kl_store *s = open_store();
    struct kl_err err = {0};
    struct kl_store_task t, u, v;
    struct kl_store_task_ack ack;
    char id[JOB_ID_BUF];
    (void)state;

    new_job(s, "orders", "pipe", NULL, id);
    MUST(kl_store_task_enqueue(s, id, "shard-1", "m", 0, NULL, &err));
    MUST(kl_store_task_enqueue(s, id, "shard-2", NULL, 0, NULL, &err));
    take(s, "w1", 60000, &t);
    assert_string_equal(t.shard_id, "shard-1");
    /* given back: behind shard-2, one more attempt, a new delivery */
    MUST(kl_store_task_nack(s, &t, 0, &err));
    ASSERT_RC(kl_store_task_nack(s, &t, 0, &err), KL_ERR_CONFLICT);
    take(s, "w1", 60000, &u);
    assert_string_equal(u.shard_id, "shard-2");
    take(s, "w2", 60000, &v);
    assert_string_equal(v.shard_id, "shard-1");
    assert_int_equal(v.attempt, 1);
    assert_int_equal(v.delivery, 2);
    assert_string_equal(v.meta, "m");
    /* the old delivery cannot ack */
    ASSERT_RC(kl_store_task_ack(s, &t, &ack, &err), KL_ERR_CONFLICT);
    /* a delayed nack hides the task until it is due */
    MUST(kl_store_task_nack(s, &v, BACKEND.ttl_ms, &err));
    assert_empty(s);
    {
        struct kl_store_stats st;
        MUST(kl_store_stats(s, &st, &err));
        assert_int_equal(st.delayed, 1);
    }
    BACKEND.advance(BACKEND.ttl_ms + BACKEND.ttl_ms / 2);
    take(s, "w3", 60000, &v);
    assert_string_equal(v.shard_id, "shard-1");
    assert_int_equal(v.attempt, 2);
    assert_int_equal(v.delivery, 3);
    MUST(kl_store_task_ack(s, &v, &ack, &err));
    MUST(kl_store_task_ack(s, &u, &ack, &err));
    assert_true(ack.last);
    kl_store_destroy(s);
}

/* A release gives the task back like a nack but counts no attempt. */
static void test_queue_release(void **state)
{
    struct kl_store *s = open_store();
    struct kl_err err = {0};
    struct kl_store_task t, u, v;
    struct kl_store_task_ack ack;
    char id[JOB_ID_BUF];
    (void)state;

    new_job(s, "orders", "pipe", NULL, id);
    MUST(kl_store_task_enqueue(s, id, "shard-1", NULL, 0, NULL, &err));
    MUST(kl_store_task_enqueue(s, id, "shard-2", NULL, 0, NULL, &err));
    take(s, "w1", 60000, &t);
    assert_string_equal(t.shard_id, "shard-1");
    MUST(kl_store_task_release(s, &t, 0, &err));
    ASSERT_RC(kl_store_task_release(s, &t, 0, &err), KL_ERR_CONFLICT);
    /* behind what waited, the same attempt, a new delivery */
    take(s, "w1", 60000, &u);
    assert_string_equal(u.shard_id, "shard-2");
    take(s, "w2", 60000, &v);
    assert_string_equal(v.shard_id, "shard-1");
    assert_int_equal(v.attempt, 0);
    assert_int_equal(v.delivery, 2);
    /* a delayed release hides it until due, still without an attempt */
    MUST(kl_store_task_release(s, &v, BACKEND.ttl_ms, &err));
    assert_empty(s);
    BACKEND.advance(BACKEND.ttl_ms + BACKEND.ttl_ms / 2);
    take(s, "w3", 60000, &v);
    assert_int_equal(v.attempt, 0);
    assert_int_equal(v.delivery, 3);
    MUST(kl_store_task_ack(s, &v, &ack, &err));
    MUST(kl_store_task_ack(s, &u, &ack, &err));
    assert_true(ack.last);
    kl_store_destroy(s);
}

static void test_queue_expiry_takeover(void **state)
{
    int64_t lease = BACKEND.ttl_ms;
    struct kl_store *s = open_store();
    struct kl_err err = {0};
    struct kl_store_task dead, alive, again;
    struct kl_store_task_ack ack;
    char id[JOB_ID_BUF];
    (void)state;

    new_job(s, "orders", "pipe", NULL, id);
    MUST(kl_store_task_enqueue(s, id, "shard-1", NULL, 0, NULL, &err));
    MUST(kl_store_task_enqueue(s, id, "shard-2", NULL, 0, NULL, &err));
    MUST(kl_store_task_enqueue(s, id, "shard-3", NULL, 0, NULL, &err));
    take(s, "dying", lease, &dead);  /* shard-1: its worker stops heartbeating */
    take(s, "alive", lease, &alive); /* shard-2: heartbeats */
    BACKEND.advance(lease / 2);
    MUST(kl_store_task_heartbeat(s, &alive, lease * 4, &err));
    BACKEND.advance(lease);
    /* the next take puts the expired task back, in front of shard-3 */
    take(s, "rescuer", lease * 4, &again);
    assert_string_equal(again.shard_id, "shard-1");
    assert_int_equal(again.attempt, 1);
    assert_int_equal(again.delivery, 2);
    /* the dead worker, should it wake, has lost it */
    ASSERT_RC(kl_store_task_heartbeat(s, &dead, lease, &err), KL_ERR_CONFLICT);
    ASSERT_RC(kl_store_task_ack(s, &dead, &ack, &err), KL_ERR_CONFLICT);
    ASSERT_RC(kl_store_task_nack(s, &dead, 0, &err), KL_ERR_CONFLICT);
    MUST(kl_store_task_heartbeat(s, &alive, lease * 4, &err));
    MUST(kl_store_task_ack(s, &again, &ack, &err));
    MUST(kl_store_task_ack(s, &alive, &ack, &err));
    take(s, "alive", lease, &again);
    assert_string_equal(again.shard_id, "shard-3");
    /* a take reaps too */
    BACKEND.advance(lease + lease / 2);
    take(s, "rescuer", lease * 4, &alive);
    assert_string_equal(alive.shard_id, "shard-3");
    assert_int_equal(alive.attempt, 1);
    MUST(kl_store_task_ack(s, &alive, &ack, &err));
    assert_true(ack.last);
    assert_int_equal(ack.tasks_done, 3);
    kl_store_destroy(s);
}

static void test_queue_take_timeout(void **state)
{
    struct kl_store *s = open_store();
    struct kl_err err = {0};
    struct kl_store_task t;
    int64_t t0;
    bool got = true;
    (void)state;

    t0 = kl_clock_monotonic_ms(kl_clock_system());
    MUST(kl_store_task_take(s, "w1", 1000, 150, &t, &got, &err));
    assert_false(got);
    assert_true(kl_clock_monotonic_ms(kl_clock_system()) - t0 >= 140);
    kl_store_destroy(s);
}

/* ---- leases ---- */

static void test_lease_fencing(void **state)
{
    int64_t ttl = BACKEND.ttl_ms;
    struct kl_store *s = open_store();
    struct kl_err err = {0};
    struct kl_store_shard_key k = {"pipe", "orders", "shardId-000000000001"};
    struct kl_store_shard_key k2 = {"pipe", "orders", "shardId-000000000002"};
    int64_t t1 = 0, t2 = 0, t3 = 0, t = 0;
    (void)state;

    /* nobody holds it: releasing it is fine, renewing it is not */
    MUST(kl_store_lease_release(s, &k, "worker-a", 1, &err));
    ASSERT_RC(kl_store_lease_renew(s, &k, "worker-a", 1, ttl, &err), KL_ERR_CONFLICT);
    MUST(kl_store_lease_take(s, &k, "worker-a", ttl, 0, &t1, &err));
    assert_true(t1 >= 1);
    /* a live lease is not taken by another owner */
    assert_int_equal(kl_store_lease_take(s, &k, "worker-b", ttl, 0, &t, &err), KL_ERR_CONFLICT);
    /* its owner may take it again: same token */
    MUST(kl_store_lease_take(s, &k, "worker-a", ttl, 0, &t, &err));
    assert_int_equal(t, t1);
    /* renew keeps it */
    BACKEND.advance(ttl * 2 / 3);
    MUST(kl_store_lease_renew(s, &k, "worker-a", t1, ttl, &err));
    BACKEND.advance(ttl * 2 / 3);
    assert_int_equal(kl_store_lease_take(s, &k, "worker-b", ttl, 0, &t, &err), KL_ERR_CONFLICT);
    /* wrong owner or token cannot renew or release */
    ASSERT_RC(kl_store_lease_renew(s, &k, "worker-b", t1, ttl, &err), KL_ERR_CONFLICT);
    ASSERT_RC(kl_store_lease_renew(s, &k, "worker-a", t1 + 1, ttl, &err), KL_ERR_CONFLICT);
    ASSERT_RC(kl_store_lease_release(s, &k, "worker-b", t1, &err), KL_ERR_CONFLICT);
    /* expired: another owner gets it with a higher token */
    BACKEND.advance(ttl + ttl / 2);
    MUST(kl_store_lease_take(s, &k, "worker-b", ttl * 4, 0, &t2, &err));
    assert_true(t2 > t1);
    /* the stale owner cannot renew (or re-establish) it */
    ASSERT_RC(kl_store_lease_renew(s, &k, "worker-a", t1, ttl, &err), KL_ERR_CONFLICT);
    ASSERT_RC(kl_store_lease_release(s, &k, "worker-a", t1, &err), KL_ERR_CONFLICT);
    /* released: free for the next owner, again with a higher token */
    MUST(kl_store_lease_release(s, &k, "worker-b", t2, &err));
    MUST(kl_store_lease_release(s, &k, "worker-b", t2, &err)); /* twice is fine */
    MUST(kl_store_lease_take(s, &k, "worker-c", ttl, 0, &t3, &err));
    assert_true(t3 > t2);
    /* a lapsed lease nobody took since may be renewed: its token is still the newest */
    BACKEND.advance(ttl + ttl / 2);
    MUST(kl_store_lease_renew(s, &k, "worker-c", t3, ttl, &err));
    assert_int_equal(kl_store_lease_take(s, &k, "worker-d", ttl, 0, &t, &err), KL_ERR_CONFLICT);
    /* the floor: tokens stay above what the destination has seen (after a lost counter) */
    MUST(kl_store_lease_take(s, &k2, "worker-a", ttl, 41, &t, &err));
    assert_int_equal(t, 42);
    MUST(kl_store_lease_release(s, &k2, "worker-a", 42, &err));
    MUST(kl_store_lease_take(s, &k2, "worker-b", ttl, 0, &t, &err));
    assert_int_equal(t, 43);
    /* shards are independent: k is still worker-c's, with its token */
    MUST(kl_store_lease_take(s, &k, "worker-c", ttl, 0, &t, &err));
    assert_int_equal(t, t3);
    kl_store_destroy(s);
}

/* ---- the message budget ---- */

static int64_t reserve(struct kl_store *s, const char *id, const char *shard, int64_t max,
                       int64_t want)
{
    struct kl_err err = {0};
    int64_t g = -1;
    MUST(kl_store_budget_reserve(s, id, shard, max, want, &g, &err));
    return g;
}

/* A committed chunk of `shard` up to sequence `seq`: `n` messages, `n` released. */
static bool commit_chunk(struct kl_store *s, const char *id, const char *shard, const char *seq,
                         int64_t n)
{
    struct kl_store_progress p;
    struct kl_err err = {0};
    bool applied = false;
    memset(&p, 0, sizeof p);
    p.shard_id = shard;
    p.sequence = seq;
    p.sub_sequence = -1;
    p.millis_behind_latest = -1;
    p.messages = n;
    p.released = n;
    MUST(kl_store_job_progress(s, id, &p, &applied, &err));
    return applied;
}

static void test_budget_grants_and_releases(void **state)
{
    struct kl_store *s = open_store();
    struct kl_err err = {0};
    char id[JOB_ID_BUF];
    int64_t g;
    (void)state;

    new_job(s, "orders", "pipe", NULL, id);
    assert_int_equal(reserve(s, id, "s1", 100, 30), 30);
    assert_int_equal(reserve(s, id, "s2", 100, 80), 70);  /* what is left */
    assert_int_equal(reserve(s, id, "s3", 100, 5), 0);    /* spent */
    MUST(kl_store_budget_release(s, id, "s2", 20, &err)); /* a short page */
    assert_int_equal(reserve(s, id, "s3", 100, 50), 20);
    /* a commit moves its messages from reserved to committed: no room appears */
    assert_true(commit_chunk(s, id, "s1", "10", 30));
    assert_int_equal(reserve(s, id, "s4", 100, 10), 0);
    /* a delivery's leftovers go back in one call */
    MUST(kl_store_budget_release(s, id, "s3", -1, &err));
    /* a duplicate report releases nothing (s1 holds nothing now anyway, s2 does) */
    assert_false(commit_chunk(s, id, "s1", "10", 30));
    assert_int_equal(reserve(s, id, "s4", 100, 100), 20);
    /* a release larger than the shard's reservation gives back what it holds */
    MUST(kl_store_budget_release(s, id, "s2", 1000, &err));
    assert_int_equal(reserve(s, id, "s5", 100, 100), 50);
    MUST(kl_store_budget_release(s, id, "nobody", 5, &err)); /* holds nothing: no-op */
    assert_int_equal(reserve(s, id, "s6", 100, 1), 0);
    assert_int_equal(reserve(s, id, "s6", 1000, 0), 0); /* asking for nothing */
    /* a final job grants nothing; an unknown one is not found */
    set_status(s, id, KL_STORE_JOB_CANCELLED);
    MUST(kl_store_budget_release(s, id, "s5", -1, &err));
    assert_int_equal(reserve(s, id, "s5", 1000, 10), 0);
    ASSERT_RC(kl_store_budget_reserve(s, "0000000000000000000000000z", "s1", 10, 1, &g, &err),
              KL_ERR_NOT_FOUND);
    ASSERT_RC(kl_store_budget_release(s, "0000000000000000000000000z", "s1", 1, &err),
              KL_ERR_NOT_FOUND);
    ASSERT_RC(kl_store_budget_reserve(s, id, "s/1", 10, 1, &g, &err), KL_ERR_INVALID);
    ASSERT_RC(kl_store_budget_reserve(s, id, "s1", 10, -1, &g, &err), KL_ERR_INVALID);
    kl_store_destroy(s);
}

#define BUDGET_THREADS 8
#define BUDGET_MAX 1000

struct budget_race {
    struct kl_store *s;
    char id[JOB_ID_BUF];
    int64_t granted[BUDGET_THREADS];
    int errors;
};

struct budget_worker {
    struct budget_race *race;
    int n;
};

/* One worker of the race: small pages of its own shard until the budget is
 * spent, each committed with its release. */
static void *budget_main(void *arg)
{
    struct budget_worker *w = arg;
    struct budget_race *race = w->race;
    char shard[16], seq[24];
    struct kl_store_progress p;
    struct kl_err err = {0};
    bool applied;

    snprintf(shard, sizeof shard, "shard-%d", w->n);
    for (int page = 1;; page++) {
        int64_t g = 0;
        if (kl_store_budget_reserve(race->s, race->id, shard, BUDGET_MAX, 7, &g, &err) != KL_OK) {
            race->errors++;
            break;
        }
        if (g == 0)
            break;
        race->granted[w->n] += g;
        snprintf(seq, sizeof seq, "%d", page);
        memset(&p, 0, sizeof p);
        p.shard_id = shard;
        p.sequence = seq;
        p.sub_sequence = -1;
        p.millis_behind_latest = -1;
        p.messages = g;
        p.released = g;
        if (kl_store_job_progress(race->s, race->id, &p, &applied, &err) != KL_OK || !applied) {
            race->errors++;
            break;
        }
    }
    return NULL;
}

/* Workers racing for the last of one budget take exactly all of it. */
static void test_budget_race(void **state)
{
    struct budget_race race;
    struct budget_worker workers[BUDGET_THREADS];
    pthread_t threads[BUDGET_THREADS];
    struct kl_store_job job;
    struct kl_err err = {0};
    int64_t total = 0;
    (void)state;

    memset(&race, 0, sizeof race);
    race.s = open_store();
    new_job(race.s, "orders", "pipe", NULL, race.id);
    for (int i = 0; i < BUDGET_THREADS; i++) {
        workers[i].race = &race;
        workers[i].n = i;
        assert_int_equal(pthread_create(&threads[i], NULL, budget_main, &workers[i]), 0);
    }
    for (int i = 0; i < BUDGET_THREADS; i++)
        pthread_join(threads[i], NULL);
    assert_int_equal(race.errors, 0);
    for (int i = 0; i < BUDGET_THREADS; i++)
        total += race.granted[i];
    assert_int_equal(total, BUDGET_MAX);
    kl_store_job_init(&job);
    MUST(kl_store_job_get(race.s, race.id, &job, &err));
    assert_int_equal(job.messages, BUDGET_MAX);
    kl_store_job_free(&job);
    kl_store_destroy(race.s);
}

/* ---- several workers at once ---- */

#define CONC_TASKS 120
#define CONC_THREADS 8
#define CONC_CHUNKS 3

struct conc {
    struct kl_store *s;
    pthread_mutex_t mu;
    int taken[CONC_TASKS];
    int lasts;
    int64_t last_at_ms; /* when the ack that finished the job came back */
    int errors;
    char first_error[256];
};

static void conc_fail(struct conc *c, const struct kl_err *err)
{
    if (pthread_mutex_lock(&c->mu) != 0)
        abort();
    if (c->errors++ == 0)
        snprintf(c->first_error, sizeof c->first_error, "%s", err->msg);
    if (pthread_mutex_unlock(&c->mu) != 0)
        abort();
}

static void *conc_worker(void *arg)
{
    struct conc *c = arg;
    char owner[32];
    static int next_worker;
    snprintf(owner, sizeof owner, "worker-%d", __atomic_fetch_add(&next_worker, 1, 0));
    for (;;) {
        struct kl_err err = {0};
        struct kl_store_task t;
        struct kl_store_task_ack ack;
        bool got = false;
        int idx;
        if (kl_store_task_take(c->s, owner, 60000, 300, &t, &got, &err) != KL_OK) {
            conc_fail(c, &err);
            break;
        }
        if (!got)
            break;
        idx = atoi(t.shard_id + 6);
        for (int k = 1; k <= CONC_CHUNKS; k++) {
            struct kl_store_table_rows rows[] = {{"events", 2}, {"events__tags", 1}};
            struct kl_store_progress p;
            char seq[16];
            snprintf(seq, sizeof seq, "%d", k * 1000);
            memset(&p, 0, sizeof p);
            p.shard_id = t.shard_id;
            p.sequence = seq;
            p.sub_sequence = -1;
            p.millis_behind_latest = 0;
            p.messages = 1;
            p.tables = rows;
            p.n_tables = 2;
            p.done = k == CONC_CHUNKS;
            if (kl_store_job_progress(c->s, t.job_id, &p, NULL, &err) != KL_OK ||
                kl_store_task_heartbeat(c->s, &t, 60000, &err) != KL_OK)
                conc_fail(c, &err);
        }
        if (kl_store_task_ack(c->s, &t, &ack, &err) != KL_OK) {
            conc_fail(c, &err);
            continue;
        }
        if (pthread_mutex_lock(&c->mu) != 0)
            abort();
        if (idx >= 0 && idx < CONC_TASKS)
            c->taken[idx]++;
        c->lasts += ack.last;
        if (ack.last)
            c->last_at_ms = kl_clock_monotonic_ms(kl_clock_system());
        if (pthread_mutex_unlock(&c->mu) != 0)
            abort();
    }
    return NULL;
}

static void test_concurrent_workers(void **state)
{
    struct kl_store *s = open_store();
    struct kl_err err = {0};
    pthread_t th[CONC_THREADS];
    struct kl_store_job j;
    struct conc c;
    char id[JOB_ID_BUF];
    (void)state;

    memset(&c, 0, sizeof c);
    c.s = s;
    assert_int_equal(pthread_mutex_init(&c.mu, NULL), 0);
    new_job(s, "events", "pipe", NULL, id);
    set_status(s, id, KL_STORE_JOB_RUNNING);
    for (int i = 0; i < CONC_TASKS; i++) {
        char shard[32];
        snprintf(shard, sizeof shard, "shard-%03d", i);
        MUST(kl_store_task_enqueue(s, id, shard, NULL, 0, NULL, &err));
    }
    for (int i = 0; i < CONC_THREADS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, conc_worker, &c), 0);
    for (int i = 0; i < CONC_THREADS; i++)
        assert_int_equal(pthread_join(th[i], NULL), 0);
    if (c.errors > 0)
        fail_msg("%d worker errors, first: %s", c.errors, c.first_error);
    for (int i = 0; i < CONC_TASKS; i++) {
        if (c.taken[i] != 1)
            fail_msg("task %d was finished %d times", i, c.taken[i]);
    }
    assert_int_equal(c.lasts, 1);
    kl_store_job_init(&j);
    get_job(s, id, &j);
    assert_int_equal(j.tasks_total, CONC_TASKS);
    assert_int_equal(j.tasks_done, CONC_TASKS);
    assert_int_equal(j.messages, CONC_TASKS * CONC_CHUNKS);
    assert_int_equal(j.n_tables, 2);
    assert_int_equal(j.tables[0].rows, 2 * CONC_TASKS * CONC_CHUNKS);
    assert_int_equal(j.tables[1].rows, CONC_TASKS * CONC_CHUNKS);
    assert_int_equal(j.n_shards, CONC_TASKS);
    for (size_t i = 0; i < j.n_shards; i++) {
        assert_int_equal(j.shards[i].messages, CONC_CHUNKS);
        assert_true(j.shards[i].done);
    }
    kl_store_job_free(&j);
    assert_int_equal(pthread_mutex_destroy(&c.mu), 0);
    kl_store_destroy(s);
}

struct waiter {
    struct kl_store *s;
    struct kl_store_task t;
    bool got;
    int rc;
    int64_t waited_ms;
};

static void *wait_for_task(void *arg)
{
    struct waiter *w = arg;
    struct kl_err err = {0};
    int64_t t0 = kl_clock_monotonic_ms(kl_clock_system());
    w->rc = kl_store_task_take(w->s, "sleeper", 60000, 5000, &w->t, &w->got, &err);
    w->waited_ms = kl_clock_monotonic_ms(kl_clock_system()) - t0;
    return NULL;
}

static void test_queue_wakeup(void **state)
{
    struct kl_store *s = open_store();
    struct kl_err err = {0};
    struct waiter w;
    pthread_t th;
    char id[JOB_ID_BUF];
    int64_t t0;
    (void)state;

    memset(&w, 0, sizeof w);
    w.s = s;
    new_job(s, "orders", "pipe", NULL, id);
    assert_int_equal(pthread_create(&th, NULL, wait_for_task, &w), 0);
    /* meanwhile, other calls go through */
    t0 = kl_clock_monotonic_ms(kl_clock_system());
    for (int i = 0; i < 20; i++)
        MUST(kl_store_ping(s, &err));
    usleep(300 * 1000);
    MUST(kl_store_task_enqueue(s, id, "shard-1", NULL, 0, NULL, &err));
    assert_int_equal(pthread_join(th, NULL), 0);
    assert_int_equal(w.rc, KL_OK);
    assert_true(w.got);
    assert_string_equal(w.t.shard_id, "shard-1");
    /* woken by the enqueue (about 300 ms in), not by a poll or the 5 s timeout */
    if (w.waited_ms > kl_clock_monotonic_ms(kl_clock_system()) - t0 + 150 || w.waited_ms > 450)
        fail_msg("the blocked take waited %lld ms", (long long)w.waited_ms);
    kl_store_destroy(s);
}

/* ---- arguments ---- */

static void test_invalid_arguments(void **state)
{
    struct kl_store *s = open_store();
    struct kl_err err = {0};
    struct kl_store_shard_key bad_key = {"pi:pe", "orders", "shard-1"};
    struct kl_store_shard_key key = {"pipe", "orders", "shard-1"};
    struct kl_store_job_new jobs[] = {
        {"or:ders", "pipe", "kinesis", NULL, NULL},
        {"orders", "", "kinesis", NULL, NULL},
        {"orders", "pipe", "kine sis", NULL, NULL},
        {"orders", "pipe", "kinesis", "{not json", NULL},
        {"orders", "pipe", "kinesis", NULL, "bad\nkey"},
        {NULL, "pipe", "kinesis", NULL, NULL},
    };
    struct kl_store_task t;
    char id[JOB_ID_BUF];
    bool flag;
    int64_t tok;
    (void)state;

    for (size_t i = 0; i < sizeof jobs / sizeof jobs[0]; i++) {
        if (kl_store_job_create(s, &jobs[i], id, &flag, &err) != KL_ERR_INVALID)
            fail_msg("job row %zu was accepted", i);
    }
    ASSERT_RC(kl_store_lease_take(s, &bad_key, "w", 1000, 0, &tok, &err), KL_ERR_INVALID);
    ASSERT_RC(kl_store_lease_take(s, &key, "", 1000, 0, &tok, &err), KL_ERR_INVALID);
    ASSERT_RC(kl_store_lease_take(s, &key, "w", 0, 0, &tok, &err), KL_ERR_INVALID);
    ASSERT_RC(kl_store_lease_renew(s, &key, "w", 0, 1000, &err), KL_ERR_INVALID);
    memset(&t, 0, sizeof t);
    snprintf(t.job_id, sizeof t.job_id, "0000000000000000000000000z");
    snprintf(t.shard_id, sizeof t.shard_id, "shard/1");
    t.delivery = 1;
    ASSERT_RC(kl_store_task_ack(s, &t, NULL, &err), KL_ERR_INVALID);
    ASSERT_RC(kl_store_task_take(s, "w", 0, 0, &t, &flag, &err), KL_ERR_INVALID);
    kl_store_destroy(s);
}

#define STORE_SUITE_TESTS                                                                          \
    cmocka_unit_test(test_job_create_get), cmocka_unit_test(test_job_conflict),                    \
        cmocka_unit_test(test_job_idempotency), cmocka_unit_test(test_job_transitions),            \
        cmocka_unit_test(test_job_cancel), cmocka_unit_test(test_job_progress),                    \
        cmocka_unit_test(test_job_shard_owner_arrival_rate), cmocka_unit_test(test_job_list),      \
        cmocka_unit_test(test_job_retention), cmocka_unit_test(test_queue_fifo_ack),               \
        cmocka_unit_test(test_queue_nack_delay), cmocka_unit_test(test_queue_release),             \
        cmocka_unit_test(test_queue_expiry_takeover), cmocka_unit_test(test_queue_take_timeout),   \
        cmocka_unit_test(test_lease_fencing), cmocka_unit_test(test_budget_grants_and_releases),   \
        cmocka_unit_test(test_budget_race), cmocka_unit_test(test_concurrent_workers),             \
        cmocka_unit_test(test_queue_wakeup), cmocka_unit_test(test_invalid_arguments)

#endif
