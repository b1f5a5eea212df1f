/*
 * `kinesis-loader load` as a cron job or Kubernetes Job runs it: loads a
 * stream into PostgreSQL (DATABASE_URL) or SQLite (KL_SQLITE_PATH), prints
 * the job document, exits 0; a second run loads only what is new; bad
 * options exit 2 with the option named; serve's KL_* settings apply;
 * --follow follows the stream until SIGTERM.
 */
#include "tests/support/test_support.h"

#include <cjson/cJSON.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static char env_prefix[1024];
static char stream[96];

static int load_cmd(char **out, const char *dest_env, const char *args)
{
    return kl_test_run(out, "%s %s '%s' load '%s' %s", env_prefix, dest_env, KL_BINARY, stream,
                       args);
}

static void put(int start, int count)
{
    assert_int_equal(kl_test_run(NULL,
                                 "cd '%s' && node put-records.js --endpoint '%s' --stream '%s' "
                                 "--start %d --count %d --access-key AKIDLOAD >/dev/null",
                                 kl_test_require_env("KL_TEST_NODE_TOOLS"),
                                 kl_test_require_env("KL_TEST_KINESALITE_URL"), stream, start,
                                 count),
                     0);
}

static long long messages_of(const char *out)
{
    cJSON *doc = cJSON_Parse(out);
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(doc, "progress"), "messages");
    long long v = cJSON_IsNumber(n) ? (long long)n->valuedouble : -1;
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(doc, "status")),
                        "succeeded");
    cJSON_Delete(doc);
    return v;
}

static void loads_into(const char *dest_env)
{
    char *out = NULL;
    const char *args = "--initial-at-timestamp null --milliseconds-behind-latest 0 "
                       "--chunk-size 50 2>/dev/null";

    assert_int_equal(load_cmd(&out, dest_env, args), 0);
    assert_int_equal(messages_of(out), 200);
    free(out);
    put(200, 30);
    assert_int_equal(load_cmd(&out, dest_env, args), 0);
    assert_int_equal(messages_of(out), 30);
    free(out);
}

static void loads_into_sqlite(void **state)
{
    char dest[512];
    (void)state;
    snprintf(dest, sizeof dest, "KL_SQLITE_PATH=/tmp/%s.db", stream);
    loads_into(dest);
    snprintf(dest, sizeof dest, "/tmp/%s.db", stream);
    unlink(dest);
}

static void loads_into_postgres(void **state)
{
    char dest[512];
    (void)state;
    /* the same stream again: another dataset, so it starts from scratch */
    snprintf(dest, sizeof dest, "DATABASE_URL='%s'", kl_test_require_env("KL_TEST_PG_URL"));
    put(230, 1);
    {
        char *out = NULL;
        char args[256];
        snprintf(args, sizeof args,
                 "--dataset-name cli_%d --initial-at-timestamp null --milliseconds-behind-latest 0 "
                 "2>/dev/null",
                 (int)getpid());
        assert_int_equal(load_cmd(&out, dest, args), 0);
        assert_int_equal(messages_of(out), 231);
        free(out);
    }
}

static void bad_options_exit_2(void **state)
{
    char *out = NULL;
    (void)state;
    assert_int_equal(load_cmd(&out, "", "--chunk-size 0 2>&1"), 2);
    assert_non_null(strstr(out, "--chunk-size must be an integer from 1 to 10000"));
    free(out);
    assert_int_equal(load_cmd(&out, "", "--write-disposition upsert 2>&1"), 2);
    assert_non_null(strstr(out, "append, merge or replace"));
    free(out);
    assert_int_equal(load_cmd(&out, "", "--dataset-name 9lives 2>&1"), 2);
    assert_non_null(strstr(out, "dataset_name"));
    free(out);
    assert_int_equal(load_cmd(&out, "", "--initial-at-timestamp soon 2>&1"), 2);
    free(out);
}

/* --follow: a continuous load in the foreground. It follows both shards
 * while records arrive, and SIGTERM ends it with exit 0, everything read
 * committed and the job cancelled; the options of a batch load are
 * refused with it, and its own without it. */
static long long distinct_messages(const char *dataset, const char *table)
{
    return kl_test_pg_scalar("SELECT count(DISTINCT _kinesis_msg_id) FROM \"%s\".\"%s\"", dataset,
                             table);
}

static void follows_until_sigterm(void **state)
{
    char outfile[256], dataset[64], table[96], *out = NULL;
    long long n = -1;
    int status;
    pid_t pid;
    (void)state;

    assert_int_equal(load_cmd(&out, "", "--follow --max-number-of-messages 5 2>&1"), 2);
    assert_non_null(strstr(out, "does not apply with --follow"));
    free(out);
    assert_int_equal(load_cmd(&out, "", "--poll-interval-ms 500 2>&1"), 2);
    assert_non_null(strstr(out, "applies with --follow only"));
    free(out);

    snprintf(outfile, sizeof outfile, "/tmp/%s-follow.json", stream);
    snprintf(dataset, sizeof dataset, "follow_%d", (int)getpid());
    snprintf(table, sizeof table, "%s", stream);
    for (char *c = table; *c; c++)
        if (*c == '-')
            *c = '_';
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        char cmd[2048];
        snprintf(cmd, sizeof cmd,
                 "exec env %s DATABASE_URL='%s' '%s' load '%s' --follow --workers 2 "
                 "--dataset-name %s --initial-at-timestamp null --poll-interval-ms 200 "
                 ">'%s' 2>/dev/null",
                 env_prefix, kl_test_require_env("KL_TEST_PG_URL"), KL_BINARY, stream, dataset,
                 outfile);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    /* the backlog (231 records), then what arrives while it follows */
    for (int i = 0; i < 300 && n != 231; i++) {
        usleep(100000);
        if (kl_test_pg_scalar("SELECT count(*) FROM pg_tables WHERE schemaname = '%s' AND "
                              "tablename = '%s'",
                              dataset, table) == 1)
            n = distinct_messages(dataset, table);
    }
    assert_int_equal(n, 231);
    put(231, 40);
    for (int i = 0; i < 300 && n != 271; i++) {
        usleep(100000);
        n = distinct_messages(dataset, table);
    }
    assert_int_equal(n, 271);
    kill(pid, SIGTERM);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_int_equal(kl_test_run(&out, "cat '%s'", outfile), 0);
    {
        cJSON *doc = cJSON_Parse(out);
        assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(doc, "status")),
                            "cancelled");
        cJSON_Delete(doc);
    }
    free(out);
    assert_int_equal(
        kl_test_pg_scalar("SELECT count(*) FROM \"%s\"._dlt_loads WHERE status = 0", dataset), 1);
    assert_int_equal(kl_test_pg_scalar("SELECT count(*) FROM \"%s\".\"%s\"", dataset, table), 271);
    unlink(outfile);
}

/* `load` reads serve's configuration table: every KL_* setting applies
 * (the engine says what it was built with), and a bad one exits 2. */
static void honours_the_settings_serve_does(void **state)
{
    char *out = NULL, dest[512], args[256];
    (void)state;

    snprintf(dest, sizeof dest,
             "KL_SQLITE_PATH=/tmp/%s-cfg.db KL_LOG_LEVEL=info KL_WORKERS=3 KL_LEASE_TTL_S=45 "
             "KL_TASK_SLICE_S=7 KL_KINESIS_PACING=on KL_KINESIS_CALL_TIMEOUT_S=33 "
             "KL_JOB_RETENTION_HOURS=5 KL_MEMORY_MAX=24MiB",
             stream);
    snprintf(args, sizeof args, "--initial-at-timestamp null 2>&1 >/dev/null");
    assert_int_equal(load_cmd(&out, dest, args), 0);
    if (strstr(
            out,
            "engine started: 3 workers, memory 24 MiB, lease 45 s, task slice 7 s, pacing on (on), "
            "Kinesis call deadline 33 s, job retention 5 h, state memory, "
            "destination sqlite") == NULL)
        fail_msg("the engine was not built from the settings: %s", out);
    free(out);
    /* --workers wins over KL_WORKERS */
    assert_int_equal(load_cmd(&out, dest, "--workers 2 2>&1 >/dev/null"), 0);
    assert_non_null(strstr(out, "engine started: 2 workers"));
    free(out);
    snprintf(dest, sizeof dest, "/tmp/%s-cfg.db", stream);
    unlink(dest);
    assert_int_equal(load_cmd(&out, "KL_LEASE_TTL_S=1", "2>&1"), 2);
    assert_non_null(strstr(out, "KL_LEASE_TTL_S"));
    free(out);
    assert_int_equal(load_cmd(&out, "KL_KINESIS_CALL_TIMEOUT_S=0", "2>&1"), 2);
    assert_non_null(strstr(out, "KL_KINESIS_CALL_TIMEOUT_S"));
    free(out);
}

static int setup(void **state)
{
    (void)state;
    snprintf(env_prefix, sizeof env_prefix,
             "AWS_ENDPOINT_URL_KINESIS='%s' AWS_ACCESS_KEY_ID=AKIDLOAD AWS_SECRET_ACCESS_KEY=x "
             "AWS_REGION=us-east-1",
             kl_test_require_env("KL_TEST_KINESALITE_URL"));
    snprintf(stream, sizeof stream, "%s", kl_test_unique("kl-cli-load"));
    assert_int_equal(kl_test_run(NULL,
                                 "cd '%s' && node create-stream.js --endpoint '%s' --stream '%s' "
                                 "--shards 2 --access-key AKIDLOAD >/dev/null",
                                 kl_test_require_env("KL_TEST_NODE_TOOLS"),
                                 kl_test_require_env("KL_TEST_KINESALITE_URL"), stream),
                     0);
    put(0, 200);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(loads_into_sqlite),     cmocka_unit_test(loads_into_postgres),
        cmocka_unit_test(bad_options_exit_2),    cmocka_unit_test(honours_the_settings_serve_does),
        cmocka_unit_test(follows_until_sigterm),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
