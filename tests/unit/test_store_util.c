/*
 * The backend-independent pieces of the state store: job ids (format,
 * order by time, uniqueness), the order of positions, status names.
 */
#include "tests/support/test_support.h"
#include "core/store/internal.h"
#include "core/store/store.h"
#include "core/util/err.h"

#include <stdlib.h>
#include <string.h>

static int cmp_str(const void *a, const void *b)
{
    return strcmp((const char *)a, (const char *)b);
}

static void test_job_ids(void **state)
{
    enum { N = 5000 };
    static char ids[N][KL_STORE_JOB_ID_SIZE];
    struct kl_err err = {0};
    char early[KL_STORE_JOB_ID_SIZE], late[KL_STORE_JOB_ID_SIZE];
    (void)state;

    for (int i = 0; i < N; i++) {
        assert_int_equal(kl_store_new_job_id(1700000000000, ids[i], &err), KL_OK);
        assert_int_equal(strlen(ids[i]), 26);
        assert_true(kl_store_job_id_valid(ids[i]));
        /* openapi.yaml: ^[a-z0-9]{26}$ */
        for (int k = 0; k < 26; k++)
            assert_true((ids[i][k] >= '0' && ids[i][k] <= '9') ||
                        (ids[i][k] >= 'a' && ids[i][k] <= 'z'));
        /* the same millisecond: the same 10-character time part */
        assert_memory_equal(ids[i], ids[0], 10);
    }
    qsort(ids, N, sizeof ids[0], cmp_str);
    for (int i = 1; i < N; i++)
        assert_string_not_equal(ids[i - 1], ids[i]);
    /* later ids sort after earlier ones (lists page by id) */
    assert_int_equal(kl_store_new_job_id(1700000000000, early, &err), KL_OK);
    assert_int_equal(kl_store_new_job_id(1700000000001, late, &err), KL_OK);
    assert_true(strcmp(early, late) < 0);
    assert_int_equal(kl_store_new_job_id(0, early, &err), KL_OK);
    assert_memory_equal(early, "0000000000", 10);
    /* ULID's time encoding: 2^48 - 1 ms is 7zzzzzzzzz */
    assert_int_equal(kl_store_new_job_id((1LL << 48) - 1, late, &err), KL_OK);
    assert_memory_equal(late, "7zzzzzzzzz", 10);
}

static const struct {
    const char *id;
    bool valid;
} id_cases[] = {
    {"01hx5m3k7q8r9s0t1v2w3x4y5z", true},
    {"01HX5M3K7Q8R9S0T1V2W3X4Y5Z", false},
    {"01hx5m3k7q8r9s0t1v2w3x4y5", false},
    {"01hx5m3k7q8r9s0t1v2w3x4y5zz", false},
    {"01hx5m3k7q8r9s0t1v2w3x4y5u", false}, /* u, i, l, o are not in the alphabet */
    {"", false},
};

static void test_job_id_valid(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof id_cases / sizeof id_cases[0]; i++) {
        if (kl_store_job_id_valid(id_cases[i].id) != id_cases[i].valid)
            fail_msg("%s: expected %s", id_cases[i].id, id_cases[i].valid ? "valid" : "invalid");
    }
    assert_false(kl_store_job_id_valid(NULL));
}

static const struct {
    const char *a;
    int64_t sa;
    const char *b;
    int64_t sb;
    int want;
} pos_cases[] = {
    {"1", -1, "2", -1, -1},
    {"10", -1, "9", -1, 1},     /* numeric, not text */
    {"0009", -1, "10", -1, -1}, /* leading zeros do not count */
    {"0", -1, "00", -1, 0},
    {"49543463076548007577105092703039560359975228518395012686", -1,
     "49543463076548007577105092703039560359975228518395012687", -1, -1},
    {"5", 0, "5", -1, 1}, /* a sub-record comes after the record's -1 */
    {"5", 3, "5", 2, 1},
    {"5", 2, "5", 2, 0},
    {"", -1, "0", -1, -1}, /* nothing yet is before everything */
    {"", -1, "", -1, 0},
};

static void test_pos_cmp(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof pos_cases / sizeof pos_cases[0]; i++) {
        int got = kl_position_cmp(pos_cases[i].a, pos_cases[i].sa, pos_cases[i].b, pos_cases[i].sb);
        int back =
            kl_position_cmp(pos_cases[i].b, pos_cases[i].sb, pos_cases[i].a, pos_cases[i].sa);
        if (got != pos_cases[i].want || back != -pos_cases[i].want)
            fail_msg("row %zu: (%s,%lld) vs (%s,%lld): %d/%d, want %d", i, pos_cases[i].a,
                     (long long)pos_cases[i].sa, pos_cases[i].b, (long long)pos_cases[i].sb, got,
                     back, pos_cases[i].want);
    }
}

static void test_status_names(void **state)
{
    static const struct {
        const char *name;
        enum kl_store_job_status s;
        bool final;
    } rows[] = {
        {"queued", KL_STORE_JOB_QUEUED, false},      {"running", KL_STORE_JOB_RUNNING, false},
        {"succeeded", KL_STORE_JOB_SUCCEEDED, true}, {"failed", KL_STORE_JOB_FAILED, true},
        {"cancelled", KL_STORE_JOB_CANCELLED, true},
    };
    enum kl_store_job_status s;
    (void)state;
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        assert_string_equal(kl_store_job_status_name(rows[i].s), rows[i].name);
        assert_int_equal(kl_store_job_status_parse(rows[i].name, &s), 0);
        assert_int_equal(s, rows[i].s);
        assert_int_equal(kl_store_job_status_final(rows[i].s), rows[i].final);
    }
    assert_int_equal(kl_store_job_status_parse("canceled", &s), -1);
    assert_int_equal(kl_store_job_status_parse(NULL, &s), -1);
}

static void test_parse_i64(void **state)
{
    (void)state;
    assert_int_equal(kl_store_parse_i64("123", 3, -7), 123);
    assert_int_equal(kl_store_parse_i64("-5", 2, -7), -5);
    assert_int_equal(kl_store_parse_i64("9223372036854775807", 19, -7), INT64_MAX);
    assert_int_equal(kl_store_parse_i64("9223372036854775808", 19, -7), -7);
    assert_int_equal(kl_store_parse_i64("12x", 3, -7), -7);
    assert_int_equal(kl_store_parse_i64("-", 1, -7), -7);
    assert_int_equal(kl_store_parse_i64(NULL, 0, -7), -7);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_job_ids),   cmocka_unit_test(test_job_id_valid),
        cmocka_unit_test(test_pos_cmp),   cmocka_unit_test(test_status_names),
        cmocka_unit_test(test_parse_i64),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
