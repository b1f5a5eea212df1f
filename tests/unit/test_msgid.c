/*
 * `_kinesis_msg_id`: the project's published check values (computed with Python's
 * hashlib.shake_128 as dlt does), and the KPL sub-record form.
 */
#include "tests/support/test_support.h"
#include "core/kinesis/msgid.h"
#include "core/util/err.h"

#include <string.h>

static void matches_dlt_check_values(void **state)
{
    static const struct {
        const char *shard, *seq;
        long long sub;
        const char *id;
    } cases[] = {
        {"shardId-000000000000", "49543463076548007577105092703039560359975228518395012686", -1,
         "jiVgiJWjVZOZnsScC7O3"},
        {"shard-0001", "0001234", -1, "+9NqWR5LjzX+CscJ+yju"},
    };
    char out[KL_MSG_ID_LEN + 1];
    struct kl_err err;
    (void)state;

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        assert_int_equal(kl_msg_id(cases[i].shard, cases[i].seq, cases[i].sub, out, &err), KL_OK);
        assert_string_equal(out, cases[i].id);
        assert_int_equal(strlen(out), KL_MSG_ID_LEN);
    }
}

static void sub_records_hash_with_their_index(void **state)
{
    char plain[KL_MSG_ID_LEN + 1], sub0[KL_MSG_ID_LEN + 1], sub1[KL_MSG_ID_LEN + 1];
    char direct[KL_MSG_ID_LEN + 1];
    const char *input =
        "shardId-00000000000049590338271490256608559692538361571095921575989136588898:1";
    (void)state;

    assert_int_equal(kl_msg_id("shardId-000000000000",
                               "49590338271490256608559692538361571095921575989136588898", -1,
                               plain, NULL),
                     KL_OK);
    assert_int_equal(kl_msg_id("shardId-000000000000",
                               "49590338271490256608559692538361571095921575989136588898", 0, sub0,
                               NULL),
                     KL_OK);
    assert_int_equal(kl_msg_id("shardId-000000000000",
                               "49590338271490256608559692538361571095921575989136588898", 1, sub1,
                               NULL),
                     KL_OK);
    assert_string_not_equal(plain, sub0);
    assert_string_not_equal(sub0, sub1);
    /* the suffix is hashed as part of the same string */
    assert_int_equal(kl_digest128(input, strlen(input), direct, NULL), KL_OK);
    assert_string_equal(sub1, direct);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(matches_dlt_check_values),
        cmocka_unit_test(sub_records_hash_with_their_index),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
