/*
 * A job loads the whole backlog and always ends: with the emulators' own
 * answers (kinesalite reports MillisBehindLatest 0 on every page, so dlt's
 * rule alone ends a shard after its first page; kinesis-local reports the
 * real lag), with a producer writing while the job runs, and on quiet
 * shards (kinesalite never answers GetShardIterator AT_TIMESTAMP when no
 * record is at or after the timestamp). Every message lands exactly once.
 */
#include "tests/support/engine_rig.h"
#include "api/documents.h"
#include "tests/support/test_support.h"
#include "core/util/clock.h"
#include "core/util/err.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char sqlite_path[256];

static void open_rig(struct kl_test_rig *r, bool postgres, const char *kinesis_env)
{
    struct kl_test_rig_options o = {0};
    o.postgres = postgres;
    o.sqlite_path = sqlite_path;
    o.kinesis_env = kinesis_env;
    kl_test_rig_open(r, &o);
}

/* Load parameters as a user posts `{}` after the first run: the defaults
 * (milliseconds_behind_latest 1000, chunk_size 1000, LATEST), into `dataset`. */
static void default_params(struct kl_load_params *p, const char *stream, const char *dataset)
{
    kl_load_params_defaults(p, stream);
    snprintf(p->dataset_name, sizeof p->dataset_name, "%s", dataset);
}

static void assert_loaded_once(const struct kl_test_rig *r, const char *dataset, const char *table,
                               long long want)
{
    assert_int_equal(kl_test_rig_stored_rows(r, dataset, table, false), want);
    assert_int_equal(kl_test_rig_stored_rows(r, dataset, table, true), want);
}

/* `count` messages in 2 shards with the default parameters but chunk_size:
 * one job loads them all; half as many more, and the next job loads those. */
static void one_job_loads_the_backlog(bool postgres, const char *kinesis_env, int count,
                                      int chunk_size)
{
    struct kl_test_rig r;
    struct kl_load_params p;
    char stream[96], table[96], dataset[64];
    cJSON *doc;

    open_rig(&r, postgres, kinesis_env);
    snprintf(dataset, sizeof dataset, "backlog_%d_%s_%s", (int)getpid(), postgres ? "pg" : "lite",
             strstr(kinesis_env, "LOCAL") ? "local" : "lite");
    kl_test_rig_new_stream(&r, "kl-backlog", 2, count, dataset, chunk_size, stream, table, &p);
    default_params(&p, stream, dataset);
    p.chunk_size = chunk_size;
    p.initial.kind = KL_INITIAL_TRIM_HORIZON; /* the first run reads the stream from its start */
    snprintf(p.initial_text, sizeof p.initial_text, "null");

    doc = kl_test_rig_run_job(&r, &p, "succeeded", 0);
    assert_int_equal(kl_test_job_messages(doc), count);
    assert_int_equal(kl_test_job_rows(doc, table), count);
    cJSON_Delete(doc);
    assert_loaded_once(&r, dataset, table, count);

    kl_test_rig_put(&r, stream, count, count / 2, 0);
    default_params(&p, stream, dataset);
    p.chunk_size = chunk_size;
    doc = kl_test_rig_run_job(&r, &p, "succeeded", 0);
    assert_int_equal(kl_test_job_messages(doc), count / 2);
    cJSON_Delete(doc);
    assert_loaded_once(&r, dataset, table, count + count / 2);
    kl_kinesis_delete_stream(r.k.conn.client, stream, NULL);
    kl_test_rig_close(&r);
}

/* kinesalite: MillisBehindLatest 0 on every page; 20,000 messages with the
 * default chunk_size of 1000 are ten full pages per shard. */
static void kinesalite_sqlite_backlog(void **state)
{
    (void)state;
    one_job_loads_the_backlog(false, "KL_TEST_KINESALITE_URL", 20000, 1000);
}

static void kinesalite_postgres_backlog(void **state)
{
    (void)state;
    one_job_loads_the_backlog(true, "KL_TEST_KINESALITE_URL", 20000, 1000);
}

/* kinesis-local reports the real lag; it takes records in at about 100 a
 * second, so fewer of them, in pages of 250 (four full pages per shard). */
static void kinesis_local_postgres_backlog(void **state)
{
    (void)state;
    one_job_loads_the_backlog(true, "KL_TEST_KINESIS_LOCAL_URL", 2000, 250);
}

/* A producer writes while a job runs: the job ends all the same (at the
 * latest once each shard delivered a record that arrived after the job
 * began), and the next job, after the producer stopped, loads the rest:
 * every message once. */
static void a_producer_writing_during_the_job(bool postgres)
{
    struct kl_test_rig r;
    struct kl_load_params p;
    char stream[96], table[96], dataset[64], done_file[256];
    long long first, second;
    cJSON *doc;
    char *out = NULL;

    open_rig(&r, postgres, NULL);
    snprintf(dataset, sizeof dataset, "producer_%d_%s", (int)getpid(), postgres ? "pg" : "lite");
    kl_test_rig_new_stream(&r, "kl-producer", 2, 4000, dataset, 200, stream, table, &p);
    p.millis_behind_latest = 1000;
    snprintf(done_file, sizeof done_file, "/tmp/kl-test-producer-%d.rc", (int)getpid());
    unlink(done_file);
    /* 30 batches of 500, one after another, while the job reads */
    assert_int_equal(kl_test_run(&out,
                                 "cd '%s' && (for i in $(seq 0 29); do node put-records.js "
                                 "--endpoint '%s' --stream '%s' --start $((4000 + i * 500)) "
                                 "--count 500 --access-key '%s' --secret-key '%s' >/dev/null || "
                                 "exit 1; done; echo done > '%s') >/dev/null 2>&1 &",
                                 kl_test_require_env("KL_TEST_NODE_TOOLS"), r.k.url, stream,
                                 r.k.access_key, r.k.secret, done_file),
                     0);
    free(out);
    doc = kl_test_rig_run_job(&r, &p, "succeeded", 0);
    first = kl_test_job_messages(doc);
    cJSON_Delete(doc);
    printf("# the first job loaded %lld of 19000 while the producer wrote\n", first);
    assert_true(first >= 4000);
    for (int i = 0; i < 600 && access(done_file, F_OK) != 0; i++)
        usleep(100 * 1000);
    if (access(done_file, F_OK) != 0)
        fail_msg("the producer did not finish");
    unlink(done_file);
    doc = kl_test_rig_run_job(&r, &p, "succeeded", 0);
    second = kl_test_job_messages(doc);
    cJSON_Delete(doc);
    assert_int_equal(first + second, 19000);
    assert_loaded_once(&r, dataset, table, 19000);
    kl_kinesis_delete_stream(r.k.conn.client, stream, NULL);
    kl_test_rig_close(&r);
}

static void sqlite_producer_during_the_job(void **state)
{
    (void)state;
    a_producer_writing_during_the_job(false);
}

static void postgres_producer_during_the_job(void **state)
{
    (void)state;
    a_producer_writing_during_the_job(true);
}

/* A stream whose shards (all, or one of two) got no record since the last
 * run: the next job opens them AT_TIMESTAMP at the stored run time, which
 * kinesalite never answers there. The job still succeeds, within seconds;
 * records put later are loaded by the job after, once. */
static void quiet_shards_do_not_hold_a_job(bool postgres, int shards, int busy_records)
{
    struct kl_test_rig r;
    struct kl_load_params p;
    char stream[96], table[96], dataset[64];
    cJSON *doc;

    open_rig(&r, postgres, NULL);
    snprintf(dataset, sizeof dataset, "quiet_%d_%s_%d", (int)getpid(), postgres ? "pg" : "lite",
             shards);
    kl_test_rig_new_stream(&r, "kl-quiet", shards, 0, dataset, 1000, stream, table, &p);
    /* one partition key: every record in one shard, the others stay quiet */
    if (busy_records > 0)
        kl_test_rig_put(&r, stream, 0, busy_records, 1);
    p.millis_behind_latest = 1000;
    doc = kl_test_rig_run_job(&r, &p, "succeeded", 60000);
    assert_int_equal(kl_test_job_messages(doc), busy_records);
    cJSON_Delete(doc);

    /* POST {}: the stored run time wins, AT_TIMESTAMP for shards without a position */
    sleep(2);
    default_params(&p, stream, dataset);
    doc = kl_test_rig_run_job(&r, &p, "succeeded", 60000);
    assert_int_equal(kl_test_job_messages(doc), 0);
    cJSON_Delete(doc);

    kl_test_rig_put(&r, stream, busy_records, 300, 0);
    doc = kl_test_rig_run_job(&r, &p, "succeeded", 60000);
    assert_int_equal(kl_test_job_messages(doc), 300);
    cJSON_Delete(doc);
    if (busy_records + 300 > 0)
        assert_loaded_once(&r, dataset, table, busy_records + 300);
    doc = kl_test_rig_run_job(&r, &p, "succeeded", 60000);
    assert_int_equal(kl_test_job_messages(doc), 0);
    cJSON_Delete(doc);
    kl_kinesis_delete_stream(r.k.conn.client, stream, NULL);
    kl_test_rig_close(&r);
}

static void sqlite_a_quiet_stream(void **state)
{
    (void)state;
    quiet_shards_do_not_hold_a_job(false, 1, 0);
}

static void postgres_one_quiet_shard_of_two(void **state)
{
    (void)state;
    quiet_shards_do_not_hold_a_job(true, 2, 500);
}

static void sqlite_one_quiet_shard_of_two(void **state)
{
    (void)state;
    quiet_shards_do_not_hold_a_job(false, 2, 500);
}

static void proxy_faults(const char *method, const char *query, const char *body)
{
    char *out = NULL;
    if (kl_test_run(&out,
                    "curl -sf -X %s -H 'Content-Type: application/json' %s%s%s '%s/__faults%s'",
                    method, body ? "-d '" : "", body ? body : "", body ? "'" : "",
                    kl_test_require_env("KL_TEST_PROXY_URL"), query) != 0)
        fail_msg("proxy faults: %s", out ? out : "");
    free(out);
}

/* A GetRecords that gets no answer: past the call's deadline the shard
 * shows in the job as waiting on GetRecords, since when and until when; the
 * task is retried, and once Kinesis answers again the job succeeds with
 * every message and nothing left waiting. */
static void a_call_past_its_deadline_shows_in_the_job(void **state)
{
    struct kl_test_rig_options o = {0};
    struct kl_test_rig r;
    struct kl_load_params p;
    struct kl_store_job job;
    char stream[96], table[96], rule[256], query[200], id[KL_STORE_JOB_ID_SIZE];
    const cJSON *shard, *waiting;
    bool existing = true, seen = false;
    struct kl_err err;
    cJSON *doc = NULL;
    (void)state;

    o.sqlite_path = sqlite_path;
    o.kinesis_env = "KL_TEST_PROXY_URL";
    o.call_deadline_ms = 6000;
    kl_test_rig_open(&r, &o);
    kl_test_rig_new_stream(&r, "kl-deadline", 1, 50, "deadline", 100, stream, table, &p);
    snprintf(rule, sizeof rule,
             "{\"access_key\":\"%s\",\"fault\":\"slow\",\"target\":\"GetRecords\","
             "\"delay_ms\":20000}",
             r.k.access_key);
    proxy_faults("POST", "", rule);
    assert_int_equal(kl_engine_submit(r.engine, &p, NULL, id, &existing, &err), KL_OK);
    for (int i = 0; i < 300 && !seen; i++) {
        usleep(100 * 1000);
        kl_store_job_init(&job);
        assert_int_equal(kl_store_job_get(r.store, id, &job, &err), KL_OK);
        seen = job.n_shards == 1 && strcmp(job.shards[0].waiting_on, "GetRecords") == 0;
        if (seen)
            doc = kl_doc_job(&job);
        kl_store_job_free(&job);
    }
    if (!seen)
        fail_msg("the shard never showed as waiting on GetRecords");
    shard = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(
                                   cJSON_GetObjectItemCaseSensitive(doc, "progress"), "shards"),
                               0);
    waiting = cJSON_GetObjectItemCaseSensitive(shard, "waiting");
    assert_string_equal(
        cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(waiting, "operation")), "GetRecords");
    assert_non_null(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(waiting, "since")));
    assert_non_null(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(waiting, "until")));
    assert_non_null(strstr(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(waiting, "error")),
                           "deadline"));
    cJSON_Delete(doc);

    snprintf(query, sizeof query, "?access_key=%s", r.k.access_key);
    proxy_faults("DELETE", query, NULL);
    kl_store_job_init(&job);
    assert_int_equal(kl_engine_wait(r.engine, id, 120000, &job, &err), KL_OK);
    assert_int_equal(job.status, KL_STORE_JOB_SUCCEEDED);
    assert_int_equal(job.messages, 50);
    assert_string_equal(job.shards[0].waiting_on, "");
    kl_store_job_free(&job);
    assert_loaded_once(&r, "deadline", table, 50);
    kl_kinesis_delete_stream(r.k.conn.client, stream, NULL);
    kl_test_rig_close(&r);
}

/* The same through the commands: `kinesis-loader load` twice on a quiet
 * stream, `read --from` a time after the last record; then records put
 * later are loaded and read once. */
static int cli(char **out, const char *command, const char *stream, const char *args)
{
    return kl_test_run(out,
                       "AWS_ENDPOINT_URL_KINESIS='%s' AWS_ACCESS_KEY_ID=AKIDQUIET "
                       "AWS_SECRET_ACCESS_KEY=x AWS_REGION=us-east-1 KL_SQLITE_PATH='%s' '%s' %s "
                       "'%s' %s 2>/dev/null",
                       kl_test_require_env("KL_TEST_KINESALITE_URL"), sqlite_path, KL_BINARY,
                       command, stream, args);
}

static long long cli_messages(const char *out)
{
    cJSON *doc = cJSON_Parse(out);
    long long n;
    if (doc == NULL)
        fail_msg("not a job document: %s", out);
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(doc, "status")),
                        "succeeded");
    n = kl_test_job_messages(doc);
    cJSON_Delete(doc);
    return n;
}

static int lines(const char *out)
{
    int n = 0;
    for (const char *c = out; *c; c++)
        n += *c == '\n';
    return n;
}

static void commands_on_a_quiet_stream(void **state)
{
    struct kl_test_rig r;
    struct kl_load_params p;
    char stream[96], table[96], args[256], when[32];
    char *out = NULL;
    (void)state;

    open_rig(&r, false, NULL);
    kl_test_rig_new_stream(&r, "kl-quiet-cli", 1, 0, "kinesis", 1000, stream, table, &p);
    assert_int_equal(cli(&out, "load", stream, "--initial-at-timestamp null"), 0);
    assert_int_equal(cli_messages(out), 0);
    free(out);
    sleep(2);
    /* the stored run time: AT_TIMESTAMP, which kinesalite does not answer here */
    assert_int_equal(cli(&out, "load", stream, ""), 0);
    assert_int_equal(cli_messages(out), 0);
    free(out);
    kl_format_timestamp(kl_clock_wall_ms(kl_clock_system()) - 1000, when);
    snprintf(args, sizeof args, "--from %s", when);
    assert_int_equal(cli(&out, "read", stream, args), 0);
    assert_int_equal(lines(out), 0);
    free(out);

    sleep(1);
    kl_test_rig_put(&r, stream, 0, 40, 0);
    assert_int_equal(cli(&out, "load", stream, ""), 0);
    assert_int_equal(cli_messages(out), 40);
    free(out);
    assert_int_equal(cli(&out, "load", stream, ""), 0);
    assert_int_equal(cli_messages(out), 0);
    free(out);
    assert_int_equal(cli(&out, "read", stream, args), 0);
    assert_int_equal(lines(out), 40);
    free(out);
    kl_kinesis_delete_stream(r.k.conn.client, stream, NULL);
    kl_test_rig_close(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(kinesalite_sqlite_backlog),
        cmocka_unit_test(kinesalite_postgres_backlog),
        cmocka_unit_test(kinesis_local_postgres_backlog),
        cmocka_unit_test(sqlite_producer_during_the_job),
        cmocka_unit_test(postgres_producer_during_the_job),
        cmocka_unit_test(sqlite_a_quiet_stream),
        cmocka_unit_test(postgres_one_quiet_shard_of_two),
        cmocka_unit_test(sqlite_one_quiet_shard_of_two),
        cmocka_unit_test(commands_on_a_quiet_stream),
        cmocka_unit_test(a_call_past_its_deadline_shows_in_the_job),
    };
    int rc;
    snprintf(sqlite_path, sizeof sqlite_path, "/tmp/kl-test-backlog-%d.db", (int)getpid());
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    unlink(sqlite_path);
    return rc;
}
