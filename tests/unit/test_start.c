/*
 * Where reading starts: dlt's iterator choice (stored position, previous run
 * time, initial_at_timestamp) and the timestamps users type. Expected epoch
 * values come from Python's datetime.fromisoformat (UTC when no offset).
 */
#include "tests/support/test_support.h"
#include "core/kinesis/start.h"
#include "core/util/err.h"

#include <string.h>

static void parses_epoch_and_iso8601(void **state)
{
    static const struct {
        const char *text;
        long long ms;
    } ok[] = {
        {"1700000000", 1700000000000LL},
        {"1700000000.25", 1700000000250LL},
        {"1700000000.123456", 1700000000123LL},
        {"0", 0},
        {"2024-05-01T12:00:00Z", 1714564800000LL},
        {"2024-05-01T14:00:00.5+02:00", 1714564800500LL},
        {"2024-05-01 12:00:00", 1714564800000LL},
        {"2024-05-01", 1714521600000LL},
        {"2024-02-29T23:59:59.999-00:30", 1709252999999LL},
        {"2024-05-01T12:00Z", 1714564800000LL},
        {"2024-05-01T14:00:00+0200", 1714564800000LL},
    };
    static const char *const bad[] = {
        "",
        "yesterday",
        "2024-13-01",
        "2023-02-29",
        "2024-05-01T25:00:00Z",
        "1700000000x",
        "2024-05-01T12:00:00+25:00",
        "-5",
        "2024-05-01T",
        "1e9",
    };
    struct kl_err err;
    int64_t ms;
    (void)state;

    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        if (kl_parse_timestamp(ok[i].text, &ms, &err) != KL_OK)
            fail_msg("%s: %s", ok[i].text, err.msg);
        assert_int_equal(ms, ok[i].ms);
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(kl_parse_timestamp(bad[i], &ms, &err), KL_ERR_INVALID);
        assert_non_null(strstr(err.msg, "is not a timestamp"));
    }
}

static void initial_positions_follow_dlt(void **state)
{
    struct kl_initial_position p;
    struct kl_err err;
    (void)state;

    assert_int_equal(kl_parse_initial_position("trim-horizon", &p, &err), KL_OK);
    assert_int_equal(p.kind, KL_INITIAL_TRIM_HORIZON);
    assert_int_equal(kl_parse_initial_position("LATEST", &p, &err), KL_OK);
    assert_int_equal(p.kind, KL_INITIAL_LATEST);
    /* dlt: initial_at_timestamp 0 reads only new messages */
    assert_int_equal(kl_parse_initial_position("0", &p, &err), KL_OK);
    assert_int_equal(p.kind, KL_INITIAL_LATEST);
    assert_int_equal(kl_parse_initial_position("2024-05-01T12:00:00Z", &p, &err), KL_OK);
    assert_int_equal(p.kind, KL_INITIAL_AT_TIMESTAMP);
    assert_int_equal(p.at_ms, 1714564800000LL);
    assert_int_equal(kl_parse_initial_position("soon", &p, &err), KL_ERR_INVALID);
    assert_non_null(strstr(err.msg, "trim-horizon, latest"));
}

static void formats_iso_utc(void **state)
{
    char out[32];
    (void)state;
    kl_format_timestamp(1714564800500LL, out);
    assert_string_equal(out, "2024-05-01T12:00:00.500Z");
    kl_format_timestamp(0, out);
    assert_string_equal(out, "1970-01-01T00:00:00.000Z");
}

static void iterator_choice_table(void **state)
{
    static const struct kl_shard_position stored = {"shardId-000000000000", "4959", -1};
    static const struct kl_shard_position empty = {"shardId-000000000000", "", -1};
    const struct kl_initial_position th = {KL_INITIAL_TRIM_HORIZON, 0};
    const struct kl_initial_position latest = {KL_INITIAL_LATEST, 0};
    const struct kl_initial_position at = {KL_INITIAL_AT_TIMESTAMP, 1714564800000LL};
    const struct {
        const struct kl_shard_position *stored;
        int64_t last_run;
        bool from_parent;
        const struct kl_initial_position *initial;
        enum kl_iterator_type type;
        int64_t ts;
        const char *why;
    } cases[] = {
        {&stored, 1000, true, &latest, KL_ITER_AT_SEQUENCE_NUMBER, 0,
         "a stored sequence wins over everything (dlt: AFTER_SEQUENCE_NUMBER; we check it first)"},
        {&empty, 5000, false, &th, KL_ITER_AT_TIMESTAMP, 5000,
         "no sequence for the shard: the previous run time (dlt's stored initial_at_timestamp)"},
        {NULL, 5000, true, &th, KL_ITER_TRIM_HORIZON, 0,
         "a child of a shard we have read continues its history from the start"},
        {NULL, -1, false, &th, KL_ITER_TRIM_HORIZON, 0, "first run, initial null"},
        {NULL, -1, false, &latest, KL_ITER_LATEST, 0, "first run, initial 0"},
        {NULL, -1, false, &at, KL_ITER_AT_TIMESTAMP, 1714564800000LL, "first run, a timestamp"},
    };
    (void)state;

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct kl_iterator_start s;
        kl_choose_start(cases[i].stored, cases[i].last_run, cases[i].from_parent, cases[i].initial,
                        &s);
        if (s.type != cases[i].type || s.timestamp_ms != cases[i].ts)
            fail_msg("case %zu (%s): got %s %lld", i, cases[i].why, kl_iterator_type_name(s.type),
                     (long long)s.timestamp_ms);
        if (s.type == KL_ITER_AT_SEQUENCE_NUMBER)
            assert_string_equal(s.sequence, "4959");
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(parses_epoch_and_iso8601),
        cmocka_unit_test(initial_positions_follow_dlt),
        cmocka_unit_test(formats_iso_utc),
        cmocka_unit_test(iterator_choice_table),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
