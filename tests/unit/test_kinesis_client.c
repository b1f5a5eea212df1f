/*
 * Kinesis API client against a scripted transport: request shape, answer
 * decoding (explicit nulls as kinesis-mock sends them), pagination, error
 * mapping, and the bounded retry loop with jitter.
 */
#include "tests/support/test_support.h"
#include "core/aws/creds.h"
#include "core/kinesis/client.h"
#include "core/util/err.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct fixture {
    struct kl_fake_http http;
    struct kl_fake_clock clock;
    struct kl_kinesis *k;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    struct kl_kinesis_config cfg = {0};
    struct kl_err err;

    assert_non_null(f);
    kl_fake_http_init(&f->http);
    kl_fake_clock_init(&f->clock, 1700000000000LL);
    cfg.endpoint = "http://127.0.0.1:4567/";
    cfg.region = "us-east-1";
    cfg.http = &f->http.http;
    cfg.creds = kl_test_fixed_creds();
    cfg.clock = &f->clock.clock;
    cfg.max_attempts = 4;
    cfg.backoff_base_ms = 100;
    cfg.backoff_cap_ms = 1000;
    f->k = kl_kinesis_create(&cfg, &err);
    assert_non_null(f->k);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    kl_kinesis_destroy(f->k);
    kl_fake_http_free(&f->http);
    free(f);
    return 0;
}

static void requests_are_signed_json_posts(void **state)
{
    struct fixture *f = *state;
    struct kl_string_list names = {0};
    struct kl_err err;

    kl_fake_http_push(&f->http, 200, "{\"StreamNames\":[\"a\",\"b\"],\"HasMoreStreams\":false}");
    assert_int_equal(kl_kinesis_list_streams(f->k, &names, &err), KL_OK);
    assert_int_equal(names.n, 2);
    assert_string_equal(names.items[1], "b");
    assert_string_equal(f->http.sent[0].method, "POST");
    assert_string_equal(f->http.sent[0].url, "http://127.0.0.1:4567/");
    assert_string_equal(kl_fake_http_sent_header(&f->http.sent[0], "X-Amz-Target"),
                        "Kinesis_20131202.ListStreams");
    assert_string_equal(kl_fake_http_sent_header(&f->http.sent[0], "Content-Type"),
                        "application/x-amz-json-1.1");
    assert_non_null(strstr(kl_fake_http_sent_header(&f->http.sent[0], "Authorization"),
                           "Credential=AKIDTEST/20231114/us-east-1/kinesis/aws4_request"));
    assert_string_equal(kl_fake_http_sent_header(&f->http.sent[0], "X-Amz-Date"),
                        "20231114T221320Z");
    kl_string_list_free(&names);
}

static void empty_success_bodies_are_not_retried(void **state)
{
    struct fixture *f = *state;
    struct kl_err err;

    /* DeleteStream answers 200 with no body at all. */
    kl_fake_http_push(&f->http, 200, "");
    assert_int_equal(kl_kinesis_delete_stream(f->k, "orders", &err), KL_OK);
    assert_int_equal(f->http.n_sent, 1);
}

static void list_streams_follows_has_more_streams(void **state)
{
    struct fixture *f = *state;
    struct kl_string_list names = {0};
    struct kl_err err;

    kl_fake_http_push(&f->http, 200, "{\"StreamNames\":[\"a\"],\"HasMoreStreams\":true}");
    kl_fake_http_push(&f->http, 200, "{\"StreamNames\":[\"b\"],\"HasMoreStreams\":false}");
    assert_int_equal(kl_kinesis_list_streams(f->k, &names, &err), KL_OK);
    assert_int_equal(names.n, 2);
    assert_non_null(strstr(f->http.sent[1].body, "\"ExclusiveStartStreamName\":\"a\""));
    kl_string_list_free(&names);
}

static void list_shards_paginates_with_next_token_only(void **state)
{
    struct fixture *f = *state;
    struct kl_shard_list shards = {0};
    struct kl_err err;

    kl_fake_http_push(&f->http, 200,
                      "{\"Shards\":[{\"ShardId\":\"shardId-000000000000\",\"ParentShardId\":null,"
                      "\"AdjacentParentShardId\":null,\"HashKeyRange\":{\"StartingHashKey\":\"0\","
                      "\"EndingHashKey\":\"170141183460469231731687303715884105727\"},"
                      "\"SequenceNumberRange\":{\"StartingSequenceNumber\":\"4959\","
                      "\"EndingSequenceNumber\":\"4970\"}}],\"NextToken\":\"tok-1\"}");
    kl_fake_http_push(&f->http, 200,
                      "{\"Shards\":[{\"ShardId\":\"shardId-000000000002\",\"ParentShardId\":"
                      "\"shardId-000000000000\",\"AdjacentParentShardId\":\"shardId-000000000001\","
                      "\"SequenceNumberRange\":{\"StartingSequenceNumber\":\"4980\","
                      "\"EndingSequenceNumber\":null}}],\"NextToken\":null}");
    assert_int_equal(kl_kinesis_list_shards(f->k, "orders", &shards, &err), KL_OK);
    assert_int_equal(shards.n, 2);
    assert_string_equal(shards.shards[0].ending_hash_key,
                        "170141183460469231731687303715884105727");
    assert_string_equal(shards.shards[0].parent_id, "");
    assert_string_equal(shards.shards[0].ending_seq, "4970");
    assert_string_equal(shards.shards[1].parent_id, "shardId-000000000000");
    assert_string_equal(shards.shards[1].adjacent_parent_id, "shardId-000000000001");
    assert_string_equal(shards.shards[1].ending_seq, "");
    assert_string_equal(f->http.sent[0].body, "{\"StreamName\":\"orders\"}");
    /* AWS refuses StreamName together with NextToken. */
    assert_string_equal(f->http.sent[1].body, "{\"NextToken\":\"tok-1\"}");
    assert_int_equal(f->http.n_sent, 2);
    kl_shard_list_free(&shards);
}

static void list_shards_without_token_sends_one_request(void **state)
{
    struct fixture *f = *state;
    struct kl_shard_list shards = {0};
    struct kl_err err;

    /* kinesalite never returns NextToken. */
    kl_fake_http_push(&f->http, 200, "{\"Shards\":[{\"ShardId\":\"shardId-000000000000\"}]}");
    assert_int_equal(kl_kinesis_list_shards(f->k, "orders", &shards, &err), KL_OK);
    assert_int_equal(shards.n, 1);
    assert_int_equal(f->http.n_sent, 1);
    kl_shard_list_free(&shards);
}

static void list_shards_resumes_after_expired_token(void **state)
{
    struct fixture *f = *state;
    struct kl_shard_list shards = {0};
    struct kl_err err;

    kl_fake_http_push(&f->http, 200,
                      "{\"Shards\":[{\"ShardId\":\"shardId-000000000000\"}],\"NextToken\":\"t\"}");
    kl_fake_http_push(&f->http, 400,
                      "{\"__type\":\"ExpiredNextTokenException\",\"message\":\"expired\"}");
    kl_fake_http_push(&f->http, 200, "{\"Shards\":[{\"ShardId\":\"shardId-000000000001\"}]}");
    assert_int_equal(kl_kinesis_list_shards(f->k, "orders", &shards, &err), KL_OK);
    assert_int_equal(shards.n, 2);
    assert_string_equal(f->http.sent[2].body,
                        "{\"StreamName\":\"orders\","
                        "\"ExclusiveStartShardId\":\"shardId-000000000000\"}");
    kl_shard_list_free(&shards);
}

static void get_records_decodes_data_and_envelope(void **state)
{
    struct fixture *f = *state;
    struct kl_record_batch b;
    struct kl_err err;

    kl_record_batch_init(&b);
    kl_fake_http_push(
        &f->http, 200,
        "{\"Records\":[{\"SequenceNumber\":\"49543463076548007577105092703039560359975228518395"
        "012686\",\"ApproximateArrivalTimestamp\":1.700000000123E9,\"Data\":"
        "\"eyJpZCI6MX0=\",\"PartitionKey\":\"pk-1\",\"EncryptionType\":null},"
        "{\"SequenceNumber\":\"2\",\"ApproximateArrivalTimestamp\":1700000001,\"Data\":\"AAEC\","
        "\"PartitionKey\":\"pk-2\"}],\"NextShardIterator\":\"it-2\",\"MillisBehindLatest\":1500,"
        "\"ChildShards\":null}");
    assert_int_equal(kl_kinesis_get_records(f->k, NULL, "it-1", 100, &b, &err), KL_OK);
    assert_int_equal(b.n, 2);
    assert_string_equal(b.records[0].sequence,
                        "49543463076548007577105092703039560359975228518395012686");
    assert_string_equal((const char *)b.records[0].data, "{\"id\":1}");
    assert_int_equal(b.records[0].data_len, 8);
    assert_int_equal(b.records[0].arrival_ms, 1700000000123LL);
    assert_string_equal(b.records[0].partition_key, "pk-1");
    assert_int_equal(b.records[1].data_len, 3);
    assert_memory_equal(b.records[1].data, "\x00\x01\x02", 3);
    assert_int_equal(b.data_bytes, 11);
    assert_string_equal(b.next_iterator, "it-2");
    assert_int_equal(b.millis_behind, 1500);
    assert_int_equal(b.n_children, 0);
    assert_string_equal(f->http.sent[0].body, "{\"ShardIterator\":\"it-1\",\"Limit\":100}");
    kl_record_batch_free(&b);
}

static void get_records_reports_children_of_a_closed_shard(void **state)
{
    struct fixture *f = *state;
    struct kl_record_batch b;
    struct kl_err err;

    kl_record_batch_init(&b);
    kl_fake_http_push(&f->http, 200,
                      "{\"Records\":[],\"NextShardIterator\":null,\"MillisBehindLatest\":0,"
                      "\"ChildShards\":[{\"ShardId\":\"shardId-000000000002\",\"ParentShards\":"
                      "[\"shardId-000000000000\",\"shardId-000000000001\"],\"HashKeyRange\":"
                      "{\"StartingHashKey\":\"0\",\"EndingHashKey\":\"1\"}}]}");
    assert_int_equal(kl_kinesis_get_records(f->k, NULL, "it", 10, &b, &err), KL_OK);
    assert_int_equal(b.n, 0);
    assert_null(b.next_iterator);
    assert_int_equal(b.n_children, 1);
    assert_string_equal(b.children[0].id, "shardId-000000000002");
    assert_int_equal(b.children[0].n_parents, 2);
    assert_string_equal(b.children[0].parents[1], "shardId-000000000001");
    kl_record_batch_free(&b);
}

static void get_records_rejects_bad_limit_and_bad_data(void **state)
{
    struct fixture *f = *state;
    struct kl_record_batch b;
    struct kl_err err;

    kl_record_batch_init(&b);
    assert_int_equal(kl_kinesis_get_records(f->k, NULL, "it", 0, &b, &err), KL_ERR_INVALID);
    assert_int_equal(kl_kinesis_get_records(f->k, NULL, "it", 10001, &b, &err), KL_ERR_INVALID);
    kl_fake_http_push(&f->http, 200,
                      "{\"Records\":[{\"SequenceNumber\":\"1\",\"Data\":\"!!\"}],"
                      "\"NextShardIterator\":\"x\"}");
    assert_int_equal(kl_kinesis_get_records(f->k, NULL, "it", 10, &b, &err), KL_ERR_UPSTREAM);
    assert_non_null(strstr(err.msg, "invalid base64"));
    assert_int_equal(f->http.n_sent, 1);
}

static void throttling_is_retried_with_bounded_jitter(void **state)
{
    struct fixture *f = *state;
    struct kl_record_batch b;
    struct kl_kinesis_stats st;
    struct kl_err err;

    kl_record_batch_init(&b);
    kl_fake_http_push(&f->http, 400,
                      "{\"__type\":\"ProvisionedThroughputExceededException\","
                      "\"message\":\"Rate exceeded for shard shardId-000000000000\"}");
    kl_fake_http_push_failure(&f->http, KL_ERR_UNAVAILABLE); /* connection reset */
    kl_fake_http_push(&f->http, 503, "Service Unavailable");
    kl_fake_http_push(&f->http, 200, "{\"Records\":[],\"NextShardIterator\":\"n\"}");
    assert_int_equal(kl_kinesis_get_records(f->k, NULL, "it", 10, &b, &err), KL_OK);
    assert_int_equal(f->http.n_sent, 4);
    kl_kinesis_stats(f->k, &st);
    assert_int_equal(st.requests, 4);
    assert_int_equal(st.retries, 3);
    assert_int_equal(st.throttles, 1);
    assert_int_equal(st.failures, 0);
    /* full jitter: at most 100 + 200 + 400 ms */
    assert_true(f->clock.slept_ms <= 700);
    kl_record_batch_free(&b);
}

static void retries_stop_after_max_attempts(void **state)
{
    struct fixture *f = *state;
    struct kl_shard_list shards = {0};
    struct kl_kinesis_stats st;
    struct kl_err err;

    for (int i = 0; i < 4; i++)
        kl_fake_http_push(&f->http, 500, "{\"__type\":\"InternalFailure\",\"message\":\"boom\"}");
    assert_int_equal(kl_kinesis_list_shards(f->k, "orders", &shards, &err), KL_ERR_UNAVAILABLE);
    assert_int_equal(f->http.n_sent, 4);
    assert_string_equal(err.msg, "ListShards: InternalFailure: boom");
    kl_kinesis_stats(f->k, &st);
    assert_int_equal(st.failures, 1);
}

static void final_errors_keep_type_and_message(void **state)
{
    static const struct {
        long status;
        const char *body;
        int code;
        const char *msg;
    } cases[] = {
        {400,
         "{\"__type\":\"com.amazonaws.kinesis.v20131202#ResourceNotFoundException\","
         "\"message\":\"Stream nope under account 000000000000 not found.\"}",
         KL_ERR_NOT_FOUND,
         "GetShardIterator: ResourceNotFoundException: Stream nope under account 000000000000 not "
         "found."},
        {400, "{\"__type\":\"ExpiredIteratorException\",\"message\":\"Iterator expired.\"}",
         KL_ERR_EXPIRED, "GetShardIterator: ExpiredIteratorException: Iterator expired."},
        {400,
         "{\"__type\":\"InvalidSignatureException\",\"Message\":\"The request signature we "
         "calculated does not match\"}",
         KL_ERR_AUTH,
         "GetShardIterator: InvalidSignatureException: The request signature we calculated does "
         "not match"},
        {400, "{\"__type\":\"InvalidArgumentException\",\"message\":\"bad seq\"}", KL_ERR_INVALID,
         "GetShardIterator: InvalidArgumentException: bad seq"},
        {400, "{\"__type\":\"SomethingNewException\",\"message\":\"new\"}", KL_ERR_UPSTREAM,
         "GetShardIterator: SomethingNewException: new"},
        {403, "<html>forbidden</html>", KL_ERR_UPSTREAM,
         "GetShardIterator: HTTP 403 from http://127.0.0.1:4567/: <html>forbidden</html>"},
    };
    struct fixture *f = *state;
    struct kl_iterator_start start = {KL_ITER_TRIM_HORIZON, NULL, 0};

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct kl_err err;
        char *it = NULL;
        size_t before = f->http.n_sent;
        kl_fake_http_push(&f->http, cases[i].status, cases[i].body);
        assert_int_equal(kl_kinesis_get_shard_iterator(f->k, NULL, "nope", "shardId-000000000000",
                                                       &start, &it, &err),
                         cases[i].code);
        assert_string_equal(err.msg, cases[i].msg);
        assert_null(it);
        /* final errors are not retried */
        assert_int_equal(f->http.n_sent, before + 1);
    }
}

static void shard_iterator_requests_carry_their_start(void **state)
{
    struct fixture *f = *state;
    struct kl_iterator_start at = {KL_ITER_AT_TIMESTAMP, NULL, 1700000000500LL};
    struct kl_iterator_start after = {KL_ITER_AFTER_SEQUENCE_NUMBER, "4959", 0};
    struct kl_iterator_start missing = {KL_ITER_AT_SEQUENCE_NUMBER, NULL, 0};
    struct kl_err err;
    char *it = NULL;

    kl_fake_http_push(&f->http, 200, "{\"ShardIterator\":\"AAA\"}");
    assert_int_equal(kl_kinesis_get_shard_iterator(f->k, NULL, "s", "shardId-1", &at, &it, &err),
                     KL_OK);
    assert_string_equal(it, "AAA");
    free(it);
    assert_non_null(strstr(f->http.sent[0].body, "\"ShardIteratorType\":\"AT_TIMESTAMP\""));
    assert_non_null(strstr(f->http.sent[0].body, "\"Timestamp\":1700000000.5"));
    kl_fake_http_push(&f->http, 200, "{\"ShardIterator\":\"BBB\"}");
    assert_int_equal(kl_kinesis_get_shard_iterator(f->k, NULL, "s", "shardId-1", &after, &it, &err),
                     KL_OK);
    free(it);
    assert_non_null(strstr(f->http.sent[1].body, "\"StartingSequenceNumber\":\"4959\""));
    assert_int_equal(
        kl_kinesis_get_shard_iterator(f->k, NULL, "s", "shardId-1", &missing, &it, &err),
        KL_ERR_INVALID);
    assert_int_equal(
        kl_kinesis_get_shard_iterator(f->k, NULL, "bad name!", "shardId-1", &after, &it, &err),
        KL_ERR_INVALID);
    assert_int_equal(f->http.n_sent, 2);
}

static void put_records_resends_only_failed_entries(void **state)
{
    struct fixture *f = *state;
    struct kl_put_entry e[3] = {{"a", 1, "k1", NULL}, {"b", 1, "k2", NULL}, {"c", 1, "k3", "7"}};
    struct kl_put_result_entry r[3];
    struct kl_err err;

    kl_fake_http_push(&f->http, 200,
                      "{\"FailedRecordCount\":1,\"Records\":[{\"SequenceNumber\":\"1\",\"ShardId\":"
                      "\"s0\"},{\"ErrorCode\":\"ProvisionedThroughputExceededException\","
                      "\"ErrorMessage\":\"slow down\"},{\"SequenceNumber\":\"3\",\"ShardId\":"
                      "\"s1\"}]}");
    kl_fake_http_push(&f->http, 200,
                      "{\"FailedRecordCount\":0,\"Records\":[{\"SequenceNumber\":\"2\",\"ShardId\":"
                      "\"s0\"}]}");
    assert_int_equal(kl_kinesis_put_records(f->k, "s", e, 3, r, &err), KL_OK);
    assert_string_equal(r[0].sequence, "1");
    assert_string_equal(r[1].sequence, "2");
    assert_string_equal(r[1].error_code, "");
    assert_string_equal(r[2].shard_id, "s1");
    assert_non_null(strstr(f->http.sent[0].body, "\"ExplicitHashKey\":\"7\""));
    assert_non_null(strstr(f->http.sent[1].body, "\"Data\":\"Yg==\",\"PartitionKey\":\"k2\""));
    assert_null(strstr(f->http.sent[1].body, "\"k1\""));
}

static void sequence_numbers_compare_numerically(void **state)
{
    static const struct {
        const char *a, *b;
        int sign;
    } cases[] = {
        {"9", "10", -1}, /* as strings "9" > "10"; as numbers it is smaller */
        {"49543463076548007577105092703039560359975228518395012686",
         "49543463076548007577105092703039560359975228518395012687", -1},
        {"100", "100", 0},
        {"0001234", "1234", 0},
        {"1000000000000000000000", "999999999999999999999", 1},
        {"0", "1", -1},
    };
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int c = kl_seq_cmp(cases[i].a, cases[i].b);
        assert_int_equal((c > 0) - (c < 0), cases[i].sign);
        c = kl_seq_cmp(cases[i].b, cases[i].a);
        assert_int_equal((c > 0) - (c < 0), -cases[i].sign);
    }
}

static void stream_names_follow_aws_rules(void **state)
{
    char long_name[200];
    (void)state;
    assert_true(kl_stream_name_valid("orders"));
    assert_true(kl_stream_name_valid("a.b-c_D9"));
    assert_false(kl_stream_name_valid(""));
    assert_false(kl_stream_name_valid("has space"));
    assert_false(kl_stream_name_valid("slash/name"));
    assert_false(kl_stream_name_valid(NULL));
    memset(long_name, 'x', 128);
    long_name[128] = '\0';
    assert_true(kl_stream_name_valid(long_name));
    long_name[128] = 'x';
    long_name[129] = '\0';
    assert_false(kl_stream_name_valid(long_name));
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(requests_are_signed_json_posts),
        T(empty_success_bodies_are_not_retried),
        T(list_streams_follows_has_more_streams),
        T(list_shards_paginates_with_next_token_only),
        T(list_shards_without_token_sends_one_request),
        T(list_shards_resumes_after_expired_token),
        T(get_records_decodes_data_and_envelope),
        T(get_records_reports_children_of_a_closed_shard),
        T(get_records_rejects_bad_limit_and_bad_data),
        T(throttling_is_retried_with_bounded_jitter),
        T(retries_stop_after_max_attempts),
        T(final_errors_keep_type_and_message),
        T(shard_iterator_requests_carry_their_start),
        T(put_records_resends_only_failed_entries),
        cmocka_unit_test(sequence_numbers_compare_numerically),
        cmocka_unit_test(stream_names_follow_aws_rules),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
