/*
 * The Kinesis client against the real emulators (kinesalite and kinesis-local),
 * directly and through the signature-checking proxy: records put with the
 * official AWS JS SDK come back complete and intact; every iterator type
 * starts where it should; a wrong secret is a clear signature error; injected
 * throttling, 500s and connection resets cost retries, not records.
 */
#include "tests/support/test_support.h"
#include "core/aws/http.h"
#include "core/kinesis/client.h"
#include "core/kinesis/conn.h"
#include "core/util/env.h"
#include "core/util/err.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct target {
    const char *name;
    const char *url_env;
    bool proxied;
};

static const struct target kinesalite = {"kinesalite", "KL_TEST_KINESALITE_URL", false};
static const struct target kinesis_local = {"kinesis-local", "KL_TEST_KINESIS_LOCAL_URL", false};
static const struct target proxy_kinesalite = {"proxy-kinesalite", "KL_TEST_PROXY_URL", true};
static const struct target proxy_local = {"proxy-kinesis-local", "KL_TEST_PROXY_LOCAL_URL", true};

static void session_open(struct kl_test_kinesis *s, const struct target *t, const char *secret,
                         const char *token)
{
    kl_test_kinesis_open(s, t->url_env, secret, token);
}

static void put_with_js_sdk(const struct kl_test_kinesis *s, const char *stream, int start,
                            int count)
{
    char *out = NULL;
    int rc = kl_test_run(&out,
                         "node '%s/put-records.js' --endpoint '%s' --stream '%s' --count %d "
                         "--start %d --access-key '%s' --secret-key '%s'",
                         kl_test_require_env("KL_TEST_NODE_TOOLS"), s->url, stream, count, start,
                         s->access_key, s->secret);
    if (rc != 0)
        fail_msg("put-records.js exited %d: %s", rc, out ? out : "");
    free(out);
}

/* Reads every shard from TRIM_HORIZON to its tip; counts how often each id
 * (the "id" field of the JSON body) was seen. */
static size_t read_all(struct kl_kinesis *k, const char *stream, int *seen, int max_id, int limit)
{
    struct kl_shard_list shards = {0};
    struct kl_err err;
    size_t total = 0;

    if (kl_kinesis_list_shards(k, stream, &shards, &err) != KL_OK)
        fail_msg("ListShards: %s", err.msg);
    for (size_t i = 0; i < shards.n; i++) {
        struct kl_iterator_start start = {KL_ITER_TRIM_HORIZON, NULL, 0};
        char last_seq[KL_SEQ_MAX] = "";
        char *it = NULL;
        int empty = 0;

        if (kl_kinesis_get_shard_iterator(k, NULL, stream, shards.shards[i].id, &start, &it, &err))
            fail_msg("GetShardIterator %s: %s", shards.shards[i].id, err.msg);
        while (it != NULL && empty < 2) {
            struct kl_record_batch b;
            kl_record_batch_init(&b);
            if (kl_kinesis_get_records(k, NULL, it, limit, &b, &err) != KL_OK)
                fail_msg("GetRecords %s: %s", shards.shards[i].id, err.msg);
            free(it);
            it = b.next_iterator ? strdup(b.next_iterator) : NULL;
            for (size_t r = 0; r < b.n; r++) {
                cJSON *doc =
                    cJSON_ParseWithLength((const char *)b.records[r].data, b.records[r].data_len);
                const cJSON *id = cJSON_GetObjectItemCaseSensitive(doc, "id");
                assert_true(cJSON_IsNumber(id));
                assert_true(id->valueint >= 0 && id->valueint < max_id);
                seen[id->valueint]++;
                assert_true(b.records[r].arrival_ms > 1600000000000LL);
                assert_true(b.records[r].partition_key[0] != '\0');
                /* sequence numbers rise within a shard */
                assert_true(kl_seq_cmp(last_seq, b.records[r].sequence) < 0);
                snprintf(last_seq, sizeof last_seq, "%s", b.records[r].sequence);
                cJSON_Delete(doc);
            }
            total += b.n;
            /* at the tip: an empty page with nothing behind */
            empty = (b.n == 0 && b.millis_behind <= 0) ? empty + 1 : 0;
            kl_record_batch_free(&b);
        }
        free(it);
    }
    kl_shard_list_free(&shards);
    return total;
}

/* Creates a stream, puts `count` records with the AWS JS SDK, reads them all back. */
static void round_trip(const struct target *t, int shards, int count)
{
    struct kl_test_kinesis s;
    struct kl_stream_summary sum;
    struct kl_string_list names = {0};
    struct kl_err err;
    char stream[128];
    int *seen = calloc((size_t)count, sizeof *seen);
    bool listed = false;

    assert_non_null(seen);
    session_open(&s, t, NULL, NULL);
    snprintf(stream, sizeof stream, "%s", kl_test_unique("kl-it-roundtrip"));
    if (kl_kinesis_create_stream(s.conn.client, stream, shards, &err) != KL_OK)
        fail_msg("CreateStream on %s: %s", t->name, err.msg);
    assert_int_equal(kl_kinesis_describe_stream_summary(s.conn.client, stream, &sum, &err), KL_OK);
    assert_string_equal(sum.status, "ACTIVE");
    assert_string_equal(sum.name, stream);
    assert_int_equal(sum.open_shard_count, shards);
    assert_int_equal(kl_kinesis_list_streams(s.conn.client, &names, &err), KL_OK);
    for (size_t i = 0; i < names.n; i++)
        listed = listed || strcmp(names.items[i], stream) == 0;
    assert_true(listed);
    kl_string_list_free(&names);

    put_with_js_sdk(&s, stream, 0, count);
    assert_int_equal(read_all(s.conn.client, stream, seen, count, 200), count);
    for (int i = 0; i < count; i++)
        if (seen[i] != 1)
            fail_msg("%s: record %d seen %d times", t->name, i, seen[i]);

    assert_int_equal(kl_kinesis_delete_stream(s.conn.client, stream, &err), KL_OK);
    free(seen);
    kl_test_kinesis_close(&s);
}

static void kinesalite_round_trip(void **state)
{
    (void)state;
    round_trip(&kinesalite, 4, 2000);
}

static void kinesis_local_round_trip(void **state)
{
    (void)state;
    round_trip(&kinesis_local, 2, 300);
}

static void proxy_kinesalite_round_trip(void **state)
{
    (void)state;
    round_trip(&proxy_kinesalite, 3, 1000);
}

static void proxy_kinesis_local_round_trip(void **state)
{
    (void)state;
    round_trip(&proxy_local, 2, 200);
}

/* Admin call to the proxy (unsigned). */
static void proxy_admin(const char *method, const char *path, const char *body, char **answer)
{
    struct kl_http *h;
    struct kl_http_request req = {0};
    struct kl_http_response resp;
    struct kl_http_header json = {"Content-Type", "application/json"};
    struct kl_err err;
    char url[512];

    snprintf(url, sizeof url, "%s%s", kl_test_require_env("KL_TEST_PROXY_URL"), path);
    h = kl_http_curl_create(NULL, &err);
    assert_non_null(h);
    req.method = method;
    req.url = url;
    req.headers = &json;
    req.n_headers = 1;
    req.body = body;
    req.body_len = body ? strlen(body) : 0;
    kl_http_response_init(&resp);
    if (kl_http_send(h, &req, &resp, &err) != KL_OK)
        fail_msg("proxy admin %s %s: %s", method, path, err.msg);
    if (resp.status != 200)
        fail_msg("proxy admin %s %s: HTTP %ld %s", method, path, resp.status, resp.body);
    if (answer != NULL)
        *answer = strdup(resp.body);
    kl_http_response_free(&resp);
    kl_http_destroy(h);
}

static void faults_cost_retries_not_records(void **state)
{
    struct kl_test_kinesis s;
    struct kl_kinesis_stats st;
    struct kl_err err;
    char stream[128], rule[512], path[256];
    char *stats = NULL;
    const int count = 1500;
    int *seen = calloc(count, sizeof *seen);
    static const char *const faults[] = {
        "\"fault\":\"throttle\",\"every\":3,\"target\":\"GetRecords\"",
        "\"fault\":\"http500\",\"every\":7",
        "\"fault\":\"reset\",\"every\":11,\"target\":\"GetRecords\"",
        "\"fault\":\"slow\",\"every\":13,\"delay_ms\":50",
        "\"fault\":\"throttle\",\"every\":2,\"target\":\"ListShards\"",
    };
    (void)state;

    assert_non_null(seen);
    session_open(&s, &proxy_kinesalite, NULL, NULL);
    snprintf(stream, sizeof stream, "%s", kl_test_unique("kl-it-faults"));
    if (kl_kinesis_create_stream(s.conn.client, stream, 2, &err) != KL_OK)
        fail_msg("CreateStream: %s", err.msg);
    put_with_js_sdk(&s, stream, 0, count);
    for (size_t i = 0; i < sizeof faults / sizeof faults[0]; i++) {
        snprintf(rule, sizeof rule, "{\"access_key\":\"%s\",%s}", s.access_key, faults[i]);
        proxy_admin("POST", "/__faults", rule, NULL);
    }
    /* small pages: many GetRecords calls, so every rule fires several times */
    assert_int_equal(read_all(s.conn.client, stream, seen, count, 40), count);
    for (int i = 0; i < count; i++)
        assert_int_equal(seen[i], 1);

    kl_kinesis_stats(s.conn.client, &st);
    snprintf(path, sizeof path, "/__stats?access_key=%s", s.access_key);
    proxy_admin("GET", path, NULL, &stats);
    assert_non_null(strstr(stats, "\"throttle\""));
    assert_non_null(strstr(stats, "\"http500\""));
    assert_non_null(strstr(stats, "\"reset\""));
    assert_true(st.throttles >= 1);
    assert_true(st.retries >= 3);
    assert_int_equal(st.failures, 0);
    free(stats);
    snprintf(path, sizeof path, "/__faults?access_key=%s", s.access_key);
    proxy_admin("DELETE", path, NULL, NULL);
    kl_kinesis_delete_stream(s.conn.client, stream, &err);
    free(seen);
    kl_test_kinesis_close(&s);
}

static void wrong_secret_is_a_clear_signature_error(void **state)
{
    struct kl_test_kinesis s;
    struct kl_string_list names = {0};
    struct kl_kinesis_stats st;
    struct kl_err err;
    (void)state;

    session_open(&s, &proxy_kinesalite, "not-the-secret", NULL);
    assert_int_equal(kl_kinesis_list_streams(s.conn.client, &names, &err), KL_ERR_AUTH);
    assert_non_null(strstr(err.msg, "InvalidSignatureException"));
    assert_non_null(strstr(err.msg, "signature we calculated does not match"));
    kl_kinesis_stats(s.conn.client, &st);
    assert_int_equal(st.requests, 1); /* not retried */
    kl_test_kinesis_close(&s);
}

static void session_token_is_signed(void **state)
{
    struct kl_test_kinesis s;
    struct kl_string_list names = {0};
    struct kl_err err;
    (void)state;

    session_open(&s, &proxy_local, NULL, "FwoGZXIvYXdzEJr//////////wEaDLongSessionToken+/=");
    if (kl_kinesis_list_streams(s.conn.client, &names, &err) != KL_OK)
        fail_msg("ListStreams with a session token: %s", err.msg);
    kl_string_list_free(&names);
    kl_test_kinesis_close(&s);
}

/* Every iterator type starts where Kinesis says it does. */
static void iterator_types_start_where_they_should(const struct target *t)
{
    struct kl_test_kinesis s;
    struct kl_put_entry e[10];
    struct kl_put_result_entry r[10];
    struct kl_record_batch b;
    struct kl_err err;
    char stream[128], bodies[10][32];
    char *it = NULL;
    (void)t;

    session_open(&s, t, NULL, NULL);
    snprintf(stream, sizeof stream, "%s", kl_test_unique("kl-it-iter"));
    if (kl_kinesis_create_stream(s.conn.client, stream, 1, &err) != KL_OK)
        fail_msg("CreateStream: %s", err.msg);
    for (int i = 0; i < 10; i++) {
        snprintf(bodies[i], sizeof bodies[i], "{\"id\":%d}", i);
        e[i].data = bodies[i];
        e[i].data_len = strlen(bodies[i]);
        e[i].partition_key = "same-key";
        e[i].explicit_hash_key = NULL;
    }
    assert_int_equal(kl_kinesis_put_records(s.conn.client, stream, e, 10, r, &err), KL_OK);

    struct {
        struct kl_iterator_start start;
        int first_id; /* -1: no records */
    } cases[] = {
        {{KL_ITER_TRIM_HORIZON, NULL, 0}, 0},
        {{KL_ITER_AT_SEQUENCE_NUMBER, r[4].sequence, 0}, 4},
        {{KL_ITER_AFTER_SEQUENCE_NUMBER, r[4].sequence, 0}, 5},
        {{KL_ITER_AFTER_SEQUENCE_NUMBER, r[9].sequence, 0}, -1},
        {{KL_ITER_LATEST, NULL, 0}, -1},
        {{KL_ITER_AT_TIMESTAMP, NULL, 1000}, 0}, /* long before the stream existed */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        kl_record_batch_init(&b);
        if (kl_kinesis_get_shard_iterator(s.conn.client, NULL, stream, r[0].shard_id,
                                          &cases[i].start, &it, &err) != KL_OK)
            fail_msg("%s: %s", kl_iterator_type_name(cases[i].start.type), err.msg);
        assert_int_equal(kl_kinesis_get_records(s.conn.client, NULL, it, 100, &b, &err), KL_OK);
        if (cases[i].first_id < 0) {
            assert_int_equal(b.n, 0);
        } else {
            char want[32];
            snprintf(want, sizeof want, "{\"id\":%d}", cases[i].first_id);
            assert_true(b.n > 0);
            assert_string_equal((const char *)b.records[0].data, want);
            assert_int_equal(b.n, 10 - (size_t)cases[i].first_id);
        }
        free(it);
        it = NULL;
        kl_record_batch_free(&b);
    }
    /* a sequence number that is not in the shard is an invalid argument */
    {
        struct kl_iterator_start bogus = {KL_ITER_AT_SEQUENCE_NUMBER, "12345", 0};
        assert_int_not_equal(kl_kinesis_get_shard_iterator(s.conn.client, NULL, stream,
                                                           r[0].shard_id, &bogus, &it, &err),
                             KL_OK);
        assert_null(it);
    }
    /* an unknown stream is not found */
    {
        struct kl_iterator_start th = {KL_ITER_TRIM_HORIZON, NULL, 0};
        assert_int_equal(kl_kinesis_get_shard_iterator(s.conn.client, NULL, "kl-no-such-stream",
                                                       "shardId-000000000000", &th, &it, &err),
                         KL_ERR_NOT_FOUND);
        assert_non_null(strstr(err.msg, "ResourceNotFoundException"));
    }
    kl_kinesis_delete_stream(s.conn.client, stream, &err);
    kl_test_kinesis_close(&s);
}

static void kinesalite_iterator_types(void **state)
{
    (void)state;
    iterator_types_start_where_they_should(&proxy_kinesalite);
}

static void kinesis_local_iterator_types(void **state)
{
    (void)state;
    iterator_types_start_where_they_should(&proxy_local);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(kinesalite_round_trip),
        cmocka_unit_test(kinesis_local_round_trip),
        cmocka_unit_test(proxy_kinesalite_round_trip),
        cmocka_unit_test(proxy_kinesis_local_round_trip),
        cmocka_unit_test(faults_cost_retries_not_records),
        cmocka_unit_test(wrong_secret_is_a_clear_signature_error),
        cmocka_unit_test(session_token_is_signed),
        cmocka_unit_test(kinesalite_iterator_types),
        cmocka_unit_test(kinesis_local_iterator_types),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
