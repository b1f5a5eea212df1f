/*
 * `kinesis-loader read` as a user runs it: JSON lines with dlt's envelope,
 * state written and taken back for incremental reads, dead letters for Data
 * that is not a JSON object, --raw, --max, --shard, and clear errors with
 * the documented exit status for an unknown stream, a bad timestamp and
 * bad credentials.
 */
#include "tests/support/test_support.h"
#include "core/kinesis/msgid.h"
#include "core/util/err.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char env_prefix[1024];
static char stream[128];
static char state_path[256];

static int read_cmd(char **out, const char *args)
{
    return kl_test_run(out, "%s '%s' read %s", env_prefix, KL_BINARY, args);
}

static int setup(void **state)
{
    char *out = NULL;
    (void)state;
    snprintf(env_prefix, sizeof env_prefix,
             "AWS_ENDPOINT_URL_KINESIS='%s' AWS_ACCESS_KEY_ID=AKIDCLI AWS_SECRET_ACCESS_KEY='%s' "
             "AWS_REGION=us-east-1",
             kl_test_require_env("KL_TEST_PROXY_URL"), kl_test_require_env("KL_TEST_PROXY_SECRET"));
    snprintf(stream, sizeof stream, "%s", kl_test_unique("kl-cli"));
    snprintf(state_path, sizeof state_path, "/tmp/%s.state.json", stream);
    if (kl_test_run(&out,
                    "cd '%s' && node create-stream.js --stream '%s' --shards 2 --endpoint '%s' "
                    "--access-key AKIDCLI && node put-records.js --stream '%s' --count 300 "
                    "--endpoint '%s' --access-key AKIDCLI",
                    kl_test_require_env("KL_TEST_NODE_TOOLS"), stream,
                    kl_test_require_env("KL_TEST_PROXY_URL"), stream,
                    kl_test_require_env("KL_TEST_PROXY_URL")) != 0)
        fail_msg("setting up %s: %s", stream, out);
    free(out);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    unlink(state_path);
    return 0;
}

static size_t count_lines(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

static void prints_dlt_messages_and_reads_incrementally(void **state)
{
    char args[1024], *out = NULL, *line, *save = NULL;
    int seen[400] = {0};
    size_t n = 0;
    (void)state;

    snprintf(args, sizeof args, "'%s' --state-out '%s'", stream, state_path);
    assert_int_equal(read_cmd(&out, args), 0);
    for (line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        cJSON *doc = cJSON_Parse(line);
        const cJSON *env = cJSON_GetObjectItemCaseSensitive(doc, "_kinesis");
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(doc, "id");
        const char *shard = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(env, "shard_id"));
        const char *seq = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(env, "seq_no"));
        char want[KL_MSG_ID_LEN + 1];

        assert_non_null(doc);
        assert_string_equal(
            cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(env, "stream_name")), stream);
        assert_non_null(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(env, "ts")));
        assert_non_null(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(env, "partition")));
        assert_int_equal(kl_msg_id(shard, seq, -1, want, NULL), KL_OK);
        assert_string_equal(
            cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(doc, "_kinesis_msg_id")), want);
        assert_true(cJSON_IsNumber(id) && id->valueint >= 0 && id->valueint < 300);
        seen[id->valueint]++;
        n++;
        cJSON_Delete(doc);
    }
    free(out);
    assert_int_equal(n, 300);
    for (int i = 0; i < 300; i++)
        assert_int_equal(seen[i], 1);

    /* nothing new yet */
    snprintf(args, sizeof args, "'%s' --state-in '%s' --state-out '%s'", stream, state_path,
             state_path);
    assert_int_equal(read_cmd(&out, args), 0);
    assert_int_equal(count_lines(out), 0);
    free(out);
    /* new records: only those come */
    assert_int_equal(kl_test_run(NULL,
                                 "cd '%s' && node put-records.js --stream '%s' --start 300 --count "
                                 "20 --endpoint '%s' --access-key AKIDCLI >/dev/null",
                                 kl_test_require_env("KL_TEST_NODE_TOOLS"), stream,
                                 kl_test_require_env("KL_TEST_PROXY_URL")),
                     0);
    assert_int_equal(read_cmd(&out, args), 0);
    assert_int_equal(count_lines(out), 20);
    assert_null(strstr(out, "\"id\":299,"));
    free(out);
}

static void options_and_errors(void **state)
{
    char args[1024], *out = NULL;
    (void)state;

    /* --max stops early (at most one chunk over) */
    snprintf(args, sizeof args, "'%s' --max 50 --chunk-size 25 2>/dev/null", stream);
    assert_int_equal(read_cmd(&out, args), 0);
    assert_true(count_lines(out) >= 50 && count_lines(out) <= 75);
    free(out);
    /* one shard only */
    snprintf(args, sizeof args, "'%s' --shard shardId-000000000001 2>/dev/null", stream);
    assert_int_equal(read_cmd(&out, args), 0);
    assert_null(strstr(out, "shardId-000000000000"));
    assert_true(count_lines(out) > 0);
    free(out);
    /* --raw: Data base64 in `data`, no parsing */
    snprintf(args, sizeof args, "'%s' --raw --max 1 --chunk-size 1 2>/dev/null", stream);
    assert_int_equal(read_cmd(&out, args), 0);
    assert_non_null(strstr(out, "\"data\":\"eyJpZCI6"));
    free(out);
    /* errors: unknown stream (1), bad timestamp (2), bad credentials (1), bad flag (2) */
    assert_int_equal(read_cmd(&out, "kl-no-such-stream 2>&1"), 1);
    assert_non_null(strstr(out, "ResourceNotFoundException"));
    free(out);
    snprintf(args, sizeof args, "'%s' --from yesterday 2>&1", stream);
    assert_int_equal(read_cmd(&out, args), 2);
    assert_non_null(strstr(out, "'yesterday' is not a start position"));
    free(out);
    assert_int_equal(kl_test_run(&out, "%s AWS_SECRET_ACCESS_KEY=wrong '%s' read '%s' 2>&1",
                                 env_prefix, KL_BINARY, stream),
                     1);
    assert_non_null(strstr(out, "InvalidSignatureException"));
    free(out);
    snprintf(args, sizeof args, "'%s' --chunk-size 0 2>&1", stream);
    assert_int_equal(read_cmd(&out, args), 2);
    assert_non_null(strstr(out, "--chunk-size must be an integer from 1 to 10000"));
    free(out);
    assert_int_equal(read_cmd(&out, "'bad name!' 2>&1"), 2);
    free(out);
}

static void dead_letters_are_printed_not_fatal(void **state)
{
    char *out = NULL, args[256];
    (void)state;
    /* put Data that is not a JSON object with the AWS CLI-equivalent tool */
    assert_int_equal(kl_test_run(NULL,
                                 "cd '%s' && node -e \"const {KinesisClient,PutRecordCommand}="
                                 "require('@aws-sdk/client-kinesis');const {NodeHttpHandler}="
                                 "require('@smithy/node-http-handler');new KinesisClient({endpoint:"
                                 "'%s',region:'us-east-1',credentials:{accessKeyId:'AKIDCLI',"
                                 "secretAccessKey:'%s'},requestHandler:new NodeHttpHandler()})"
                                 ".send(new PutRecordCommand({StreamName:'%s',PartitionKey:'x',"
                                 "Data:Buffer.from('[1,2,3]')})).then(()=>process.exit(0),e=>{"
                                 "console.error(e);process.exit(1)})\" 2>/dev/null",
                                 kl_test_require_env("KL_TEST_NODE_TOOLS"),
                                 kl_test_require_env("KL_TEST_PROXY_URL"),
                                 kl_test_require_env("KL_TEST_PROXY_SECRET"), stream),
                     0);
    snprintf(args, sizeof args, "'%s' 2>/dev/null", stream);
    assert_int_equal(read_cmd(&out, args), 0);
    assert_non_null(strstr(out, "\"_kinesis_dead_letter\":{\"error\":\"a JSON array, not an "
                                "object\",\"data\":\"WzEsMiwzXQ==\"}"));
    free(out);
}

static void kpl_aggregates_come_out_as_user_records(void **state)
{
    char *out = NULL, *line, *save = NULL, args[1024], kpl_stream[128];
    int seen[200] = {0};
    size_t n = 0, subs = 0;
    (void)state;

    snprintf(kpl_stream, sizeof kpl_stream, "%s", kl_test_unique("kl-cli-kpl"));
    assert_int_equal(kl_test_run(&out,
                                 "cd '%s' && node create-stream.js --stream '%s' --shards 2 "
                                 "--endpoint '%s' --access-key AKIDCLI >/dev/null && node "
                                 "put-kpl.js --stream '%s' --count 200 --per 25 --plain-every 7 "
                                 "--endpoint '%s' --access-key AKIDCLI >/dev/null",
                                 kl_test_require_env("KL_TEST_NODE_TOOLS"), kpl_stream,
                                 kl_test_require_env("KL_TEST_PROXY_URL"), kpl_stream,
                                 kl_test_require_env("KL_TEST_PROXY_URL")),
                     0);
    free(out);
    snprintf(args, sizeof args, "'%s' 2>/dev/null", kpl_stream);
    assert_int_equal(read_cmd(&out, args), 0);
    for (line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        cJSON *doc = cJSON_Parse(line);
        const cJSON *env = cJSON_GetObjectItemCaseSensitive(doc, "_kinesis");
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(doc, "id");
        const cJSON *sub = cJSON_GetObjectItemCaseSensitive(env, "sub_seq_no");
        const cJSON *agg = cJSON_GetObjectItemCaseSensitive(doc, "agg");
        const char *shard = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(env, "shard_id"));
        const char *seq = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(env, "seq_no"));
        char want[KL_MSG_ID_LEN + 1];

        assert_true(cJSON_IsNumber(id) && id->valueint >= 0 && id->valueint < 200);
        seen[id->valueint]++;
        /* aggregated user records carry their index; plain ones do not */
        assert_int_equal(cJSON_IsNumber(sub), cJSON_IsTrue(agg));
        assert_int_equal(
            kl_msg_id(shard, seq, cJSON_IsNumber(sub) ? sub->valueint : -1, want, NULL), KL_OK);
        assert_string_equal(
            cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(doc, "_kinesis_msg_id")), want);
        subs += cJSON_IsNumber(sub);
        n++;
        cJSON_Delete(doc);
    }
    free(out);
    assert_int_equal(n, 200);
    assert_true(subs > 100);
    for (int i = 0; i < 200; i++)
        assert_int_equal(seen[i], 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(prints_dlt_messages_and_reads_incrementally),
        cmocka_unit_test(options_and_errors),
        cmocka_unit_test(dead_letters_are_printed_not_fatal),
        cmocka_unit_test(kpl_aggregates_come_out_as_user_records),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
