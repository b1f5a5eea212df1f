/*
 * The streaming GetRecords parser (core/kinesis/page.h): the same page
 * whether the body comes whole, byte by byte or in random pieces; escapes,
 * padding, members it does not know, child shards; broken and wrong
 * answers; what it charges to a memory budget; a 10 MiB record and a
 * 10000-record page. And the memory budget itself (core/util/membudget.h).
 */
#include "tests/support/test_support.h"
#include "core/kinesis/page.h"
#include "core/util/base64.h"
#include "core/util/buf.h"
#include "core/util/err.h"
#include "core/util/membudget.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char PAGE[] =
    "{\"Records\":[{\"SequenceNumber\":\"4959\",\"ApproximateArrivalTimestamp\":1.7e9,"
    "\"Data\":\"eyJhIjoxfQ==\",\"PartitionKey\":\"k\\u00e9\\ud83d\\ude00\",\"EncryptionType\":"
    "null},"
    " {\"Data\":\"YWJj\\/w\",\"SequenceNumber\":\"4960\",\"Extra\":{\"x\":[1,2,{\"y\":[]}],"
    "\"t\":true,\"f\":false},\"ApproximateArrivalTimestamp\":1700000000.123},"
    "{\"SequenceNumber\":\"4961\",\"Data\":\"\",\"PartitionKey\":\"a\\\"b\\\\c\"}],"
    "\"NextShardIterator\":\"AAAA/it==\",\"MillisBehindLatest\":250,"
    "\"ChildShards\":[{\"ShardId\":\"shardId-000000000002\",\"ParentShards\":"
    "[\"shardId-000000000000\",\"shardId-000000000001\"],\"HashKeyRange\":{\"StartingHashKey\":"
    "\"0\",\"EndingHashKey\":\"9\"}}]}";

/* Parses `text` fed in pieces of `piece` bytes (0: random sizes). */
static int parse(const char *text, size_t len, size_t piece, struct kl_membudget *budget,
                 size_t *charged, struct kl_record_batch *out, struct kl_err *err)
{
    struct kl_page_parser p;
    int rc = KL_OK;
    size_t at = 0;

    kl_page_parser_init(&p, budget, charged, 0);
    while (rc == KL_OK && at < len) {
        size_t n = piece ? piece : 1 + (size_t)rand() % 97;
        if (n > len - at)
            n = len - at;
        rc = kl_page_parser_feed(&p, text + at, n, err);
        at += n;
    }
    if (rc == KL_OK)
        rc = kl_page_parser_finish(&p, out, err);
    kl_page_parser_free(&p);
    return rc;
}

static void check_page(const struct kl_record_batch *b)
{
    assert_int_equal(b->n, 3);
    assert_string_equal(b->records[0].sequence, "4959");
    assert_int_equal(b->records[0].data_len, 7);
    assert_memory_equal(b->records[0].data, "{\"a\":1}", 7);
    assert_int_equal(b->records[0].data[7], '\0');
    assert_string_equal(b->records[0].partition_key, "k\xc3\xa9\xf0\x9f\x98\x80");
    assert_int_equal(b->records[0].arrival_ms, 1700000000000LL);
    assert_string_equal(b->records[1].sequence, "4960");
    assert_int_equal(b->records[1].data_len, 4);
    assert_memory_equal(b->records[1].data, "abc\xff", 4);
    assert_string_equal(b->records[1].partition_key, "");
    assert_int_equal(b->records[1].arrival_ms, 1700000000123LL);
    assert_int_equal(b->records[2].data_len, 0);
    assert_string_equal(b->records[2].partition_key, "a\"b\\c");
    assert_int_equal(b->data_bytes, 11);
    assert_string_equal(b->next_iterator, "AAAA/it==");
    assert_int_equal(b->millis_behind, 250);
    assert_int_equal(b->n_children, 1);
    assert_string_equal(b->children[0].id, "shardId-000000000002");
    assert_int_equal(b->children[0].n_parents, 2);
    assert_string_equal(b->children[0].parents[1], "shardId-000000000001");
}

static void the_page_is_the_same_however_it_is_cut(void **state)
{
    static const size_t pieces[] = {sizeof PAGE, 1, 2, 3, 7, 64, 0, 0, 0, 0};
    (void)state;
    srand(7);
    for (size_t i = 0; i < sizeof pieces / sizeof pieces[0]; i++) {
        struct kl_record_batch b;
        struct kl_err err;
        kl_record_batch_init(&b);
        assert_int_equal(parse(PAGE, sizeof PAGE - 1, pieces[i], NULL, NULL, &b, &err), KL_OK);
        check_page(&b);
        kl_record_batch_free(&b);
    }
}

static void a_closed_shard_has_no_iterator(void **state)
{
    static const char text[] = " {\"Records\" : [ ], \"NextShardIterator\": null,"
                               "\"ChildShards\":[]} \n";
    struct kl_record_batch b;
    struct kl_err err;
    (void)state;
    kl_record_batch_init(&b);
    assert_int_equal(parse(text, sizeof text - 1, 5, NULL, NULL, &b, &err), KL_OK);
    assert_int_equal(b.n, 0);
    assert_null(b.next_iterator);
    assert_int_equal(b.millis_behind, -1);
    assert_int_equal(b.n_children, 0);
    kl_record_batch_free(&b);
}

static void expect_error(const char *text, int code, const char *words)
{
    struct kl_record_batch b;
    struct kl_err err;
    kl_record_batch_init(&b);
    kl_err_clear(&err);
    assert_int_equal(parse(text, strlen(text), 3, NULL, NULL, &b, &err), code);
    if (strstr(err.msg, words) == NULL)
        fail_msg("\"%s\" does not say \"%s\"", err.msg, words);
    kl_record_batch_free(&b);
}

static void wrong_answers_are_told_apart_from_broken_ones(void **state)
{
    (void)state;
    /* an answer Kinesis should not give: not worth another try */
    expect_error("{\"Records\":[{\"Data\":\"YQ==\"}]}", KL_ERR_UPSTREAM,
                 "a record without SequenceNumber");
    expect_error("{\"Records\":[{\"SequenceNumber\":\"1\"}]}", KL_ERR_UPSTREAM,
                 "a record without Data");
    expect_error("{\"Records\":[{\"SequenceNumber\":\"1\",\"Data\":\"Y\"}]}", KL_ERR_UPSTREAM,
                 "record 1 has invalid base64");
    expect_error("{\"Records\":[{\"SequenceNumber\":\"1\",\"Data\":\"YQ=a\"}]}", KL_ERR_UPSTREAM,
                 "invalid base64");
    expect_error("{\"Records\":[{\"SequenceNumber\":\"1\",\"Data\":\"Y*Q=\"}]}", KL_ERR_UPSTREAM,
                 "invalid base64");
    expect_error("{\"Records\":[{\"SequenceNumber\":\"1\",\"Data\":\"YQ===\"}]}", KL_ERR_UPSTREAM,
                 "invalid base64");
    /* a broken transfer: another attempt may pass */
    expect_error("{\"Records\":[{\"SequenceNumber\":\"1\"", KL_ERR_UNAVAILABLE, "ended early");
    expect_error("", KL_ERR_UNAVAILABLE, "ended early");
    expect_error("[1,2]", KL_ERR_UNAVAILABLE, "not an object");
    expect_error("{\"a\":1} x", KL_ERR_UNAVAILABLE, "text after");
    expect_error("{\"a\":1,}", KL_ERR_UNAVAILABLE, "without a key");
    expect_error("{\"a\" 1}", KL_ERR_UNAVAILABLE, "without ':'");
    expect_error("{\"a\":[1}", KL_ERR_UNAVAILABLE, "mismatched");
    expect_error("{\"a\":tru}", KL_ERR_UNAVAILABLE, "bad literal");
    expect_error("{\"a\":\"\\x\"}", KL_ERR_UNAVAILABLE, "bad escape");
    expect_error("{\"a\":\"\\u12g4\"}", KL_ERR_UNAVAILABLE, "bad \\u");
    expect_error("{\"a\":\"x\ny\"}", KL_ERR_UNAVAILABLE, "control character");
    expect_error("{\"a\":1 2}", KL_ERR_UNAVAILABLE, "missing ','");
}

static void padding_is_optional(void **state)
{
    static const char *const forms[][2] = {
        {"YQ==", "a"},
        {"YQ", "a"},
        {"YWI=", "ab"},
        {"YWI", "ab"},
        {"YWJj", "abc"},
        {"YWJjZA==", "abcd"},
        {"YWJjZGVmZ2g=", "abcdefgh"},
    };
    (void)state;
    for (size_t i = 0; i < sizeof forms / sizeof forms[0]; i++) {
        char text[256];
        struct kl_record_batch b;
        struct kl_err err;
        snprintf(text, sizeof text, "{\"Records\":[{\"SequenceNumber\":\"1\",\"Data\":\"%s\"}]}",
                 forms[i][0]);
        for (size_t piece = 1; piece <= 5; piece++) {
            kl_record_batch_init(&b);
            assert_int_equal(parse(text, strlen(text), piece, NULL, NULL, &b, &err), KL_OK);
            assert_int_equal(b.records[0].data_len, strlen(forms[i][1]));
            assert_memory_equal(b.records[0].data, forms[i][1], strlen(forms[i][1]));
            kl_record_batch_free(&b);
        }
    }
}

/* A page of `n` records of `size` data bytes each, as JSON. */
static char *make_page(size_t n, size_t size, size_t *len)
{
    struct kl_buf out;
    unsigned char *data = malloc(size + 1);
    char *b64 = malloc(kl_base64_encoded_size(size));
    char head[128];

    assert_non_null(data);
    assert_non_null(b64);
    kl_buf_init(&out, (size_t)64 << 20);
    for (size_t i = 0; i < size; i++)
        data[i] = (unsigned char)('a' + i % 26);
    kl_base64_encode(data, size, b64, true);
    assert_int_equal(kl_buf_append(&out, "{\"Records\":[", 12, NULL), KL_OK);
    for (size_t i = 0; i < n; i++) {
        int h = snprintf(head, sizeof head,
                         "%s{\"SequenceNumber\":\"%020zu\",\"PartitionKey\":\"pk-%zu\",\"Data\":\"",
                         i ? "," : "", i, i % 32);
        assert_int_equal(kl_buf_append(&out, head, (size_t)h, NULL), KL_OK);
        assert_int_equal(kl_buf_append(&out, b64, strlen(b64), NULL), KL_OK);
        assert_int_equal(kl_buf_append(&out, "\"}", 2, NULL), KL_OK);
    }
    assert_int_equal(kl_buf_append(&out, "],\"NextShardIterator\":\"it\"}", 27, NULL), KL_OK);
    free(data);
    free(b64);
    return kl_buf_steal(&out, len);
}

/* What a page holds in the end is charged; nothing near the JSON text's
 * size is held on top of the decoded bytes. */
static void check_memory(size_t n, size_t size)
{
    struct kl_membudget *budget = kl_membudget_create((size_t)64 << 20, NULL);
    struct kl_membudget_stats st;
    struct kl_record_batch b;
    struct kl_err err;
    size_t len, charged = 0;
    char *text = make_page(n, size, &len);

    assert_non_null(budget);
    kl_record_batch_init(&b);
    assert_int_equal(parse(text, len, 16384, budget, &charged, &b, &err), KL_OK);
    assert_int_equal(b.n, n);
    assert_int_equal(b.data_bytes, n * size);
    assert_int_equal(b.records[n - 1].data_len, size);
    assert_int_equal(b.records[n - 1].data[size - 1], 'a' + (size - 1) % 26);
    kl_membudget_stats(budget, &st);
    /* every byte the parser allocated was charged as it grew */
    assert_true(charged >= b.held);
    assert_int_equal(st.held, charged);
    /* the decoded page, not the base64 text: the data, the strings and
     * the records, and no more than 64 KiB to spare */
    assert_true(b.held <= n * (size + 128) + ((size_t)128 << 10));
    /* and while it grew, at most twice the data (the block doubles) */
    assert_true(st.peak <= 2 * n * (size + 128) + ((size_t)1 << 20));
    kl_membudget_release(budget, charged);
    kl_record_batch_free(&b);
    free(text);
    kl_membudget_destroy(budget);
}

static void a_10_mib_record_and_a_10000_record_page(void **state)
{
    (void)state;
    check_memory(1, (size_t)10 << 20);
    check_memory(10000, 200);
}

/* ---- the budget ---- */

struct waiter_arg {
    struct kl_membudget *b;
    size_t n;
    atomic_bool cancel;
    int rc;
    atomic_bool done;
};

static void *waiter_main(void *arg)
{
    struct waiter_arg *w = arg;
    struct kl_err err;
    w->rc = kl_membudget_reserve(w->b, w->n, &w->cancel, &err);
    atomic_store(&w->done, true);
    return NULL;
}

static void wait_a_little(void)
{
    usleep(150 * 1000);
}

static void readers_wait_for_room_in_order(void **state)
{
    struct kl_membudget *b = kl_membudget_create(100, NULL);
    struct waiter_arg big = {b, 80, false, -1, false}, small = {b, 10, false, -1, false};
    struct kl_membudget_stats st;
    pthread_t t1, t2;
    struct kl_err err;

    (void)state;
    assert_int_equal(kl_membudget_reserve(b, 60, NULL, &err), KL_OK);
    assert_int_equal(pthread_create(&t1, NULL, waiter_main, &big), 0);
    wait_a_little();
    /* the small one would fit, but the big one is first in line */
    assert_int_equal(pthread_create(&t2, NULL, waiter_main, &small), 0);
    wait_a_little();
    assert_false(atomic_load(&big.done));
    assert_false(atomic_load(&small.done));
    kl_membudget_release(b, 60);
    pthread_join(t1, NULL);
    pthread_join(t2, NULL);
    assert_int_equal(big.rc, KL_OK);
    assert_int_equal(small.rc, KL_OK);
    kl_membudget_stats(b, &st);
    assert_int_equal(st.held, 90);
    assert_int_equal(st.waits, 2);
    kl_membudget_release(b, 90);
    kl_membudget_destroy(b);
}

static void one_reservation_larger_than_all_goes_alone(void **state)
{
    struct kl_membudget *b = kl_membudget_create(100, NULL);
    struct waiter_arg huge = {b, 500, false, -1, false};
    struct kl_membudget_stats st;
    pthread_t t;
    struct kl_err err;

    (void)state;
    assert_int_equal(kl_membudget_reserve(b, 1, NULL, &err), KL_OK);
    assert_int_equal(pthread_create(&t, NULL, waiter_main, &huge), 0);
    wait_a_little();
    assert_false(atomic_load(&huge.done));
    kl_membudget_release(b, 1);
    pthread_join(t, NULL);
    assert_int_equal(huge.rc, KL_OK);
    /* a page larger than its reservation is charged anyway */
    kl_membudget_charge(b, 20);
    kl_membudget_stats(b, &st);
    assert_int_equal(st.held, 520);
    assert_int_equal(st.peak, 520);
    assert_int_equal(st.over, 20);
    kl_membudget_release(b, 520);
    kl_membudget_destroy(b);
}

static void a_cancelled_wait_leaves_the_line(void **state)
{
    struct kl_membudget *b = kl_membudget_create(100, NULL);
    struct waiter_arg first = {b, 90, false, -1, false}, second = {b, 50, false, -1, false};
    pthread_t t1, t2;
    struct kl_err err;

    (void)state;
    assert_int_equal(kl_membudget_reserve(b, 50, NULL, &err), KL_OK);
    assert_int_equal(pthread_create(&t1, NULL, waiter_main, &first), 0);
    wait_a_little();
    assert_int_equal(pthread_create(&t2, NULL, waiter_main, &second), 0);
    wait_a_little();
    atomic_store(&first.cancel, true);
    pthread_join(t1, NULL);
    assert_int_equal(first.rc, KL_ERR_CANCELLED);
    /* the one behind it is now first, and fits */
    pthread_join(t2, NULL);
    assert_int_equal(second.rc, KL_OK);
    kl_membudget_release(b, 100);
    kl_membudget_destroy(b);
}

/* A bounded page grows past its reservation while the budget has room,
 * and fails with KL_ERR_LIMIT, `outgrown` set, once it has not; try-charges
 * never wait and never pass the limit. */
static void a_bounded_page_grows_only_while_the_budget_has_room(void **state)
{
    struct kl_membudget *b = kl_membudget_create(300 * 1024, NULL);
    struct kl_membudget_stats st;
    struct kl_page_parser p;
    struct kl_buf text;
    struct kl_err err;
    size_t charged = 1024;
    int rc = KL_OK;

    (void)state;
    assert_true(kl_membudget_try_charge(b, 1024));
    assert_false(kl_membudget_try_charge(b, 300 * 1024));
    /* a page of 400 KiB of Data: more than the budget */
    kl_buf_init(&text, (size_t)4 << 20);
    assert_int_equal(
        kl_buf_append_str(&text, "{\"Records\":[{\"SequenceNumber\":\"1\",\"Data\":\"", &err),
        KL_OK);
    for (int i = 0; i < 400 * 1024 / 3; i++)
        assert_int_equal(kl_buf_append_str(&text, "YWJj", &err), KL_OK);
    assert_int_equal(kl_buf_append_str(&text, "\"}],\"MillisBehindLatest\":0}", &err), KL_OK);

    kl_page_parser_init(&p, b, &charged, 0);
    kl_page_parser_bound(&p);
    for (size_t at = 0; rc == KL_OK && at < text.len; at += 4096)
        rc = kl_page_parser_feed(&p, text.data + at, text.len - at < 4096 ? text.len - at : 4096,
                                 &err);
    assert_int_equal(rc, KL_ERR_LIMIT);
    assert_true(p.outgrown);
    kl_membudget_stats(b, &st);
    assert_true(st.held <= 300 * 1024);
    assert_true(st.refused >= 2);
    assert_int_equal(st.held, charged);
    kl_page_parser_free(&p);
    kl_membudget_release(b, charged);

    /* unbounded, the same page takes what it needs */
    charged = 1024;
    assert_true(kl_membudget_try_charge(b, charged));
    {
        struct kl_record_batch out;
        assert_int_equal(parse(text.data, text.len, 4096, b, &charged, &out, &err), KL_OK);
        assert_int_equal(out.n, 1);
        assert_int_equal(out.records[0].data_len, 400 * 1024 / 3 * 3);
        kl_record_batch_free(&out);
    }
    kl_membudget_stats(b, &st);
    assert_true(st.held > 300 * 1024);
    kl_membudget_release(b, charged);
    kl_buf_free(&text);
    kl_membudget_destroy(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(the_page_is_the_same_however_it_is_cut),
        cmocka_unit_test(a_closed_shard_has_no_iterator),
        cmocka_unit_test(wrong_answers_are_told_apart_from_broken_ones),
        cmocka_unit_test(padding_is_optional),
        cmocka_unit_test(a_10_mib_record_and_a_10000_record_page),
        cmocka_unit_test(readers_wait_for_room_in_order),
        cmocka_unit_test(one_reservation_larger_than_all_goes_alone),
        cmocka_unit_test(a_cancelled_wait_leaves_the_line),
        cmocka_unit_test(a_bounded_page_grows_only_while_the_budget_has_room),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
