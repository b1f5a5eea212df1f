/*
 * Unit tests of the COPY text encoder and the value formatting behind it
 * (core/dest/copy.h, core/dest/format.h): what Postgres reads back must be
 * exactly what the cell held. Expected strings follow PostgreSQL's COPY
 * text format documentation (backslash escapes, \N for NULL) and its input
 * syntax for float8, timestamptz and bytea (hex format).
 */
#include "tests/support/test_support.h"
#include "core/dest/copy.h"
#include "core/dest/format.h"
#include "core/normalize/rows.h"
#include "core/util/buf.h"
#include "core/util/err.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* A sink that collects everything into a kl_buf and counts calls. */
struct collect {
    struct kl_buf out;
    int calls;
    int fail_after; /* fail the n-th call (0: never) */
};

static int collect_write(void *ctx, const char *data, size_t len, struct kl_err *err)
{
    struct collect *c = ctx;
    c->calls++;
    if (c->fail_after > 0 && c->calls >= c->fail_after)
        return kl_err_set(err, KL_ERR_UNAVAILABLE, "sink failed");
    return kl_buf_append(&c->out, data, len, err);
}

static void setup_buf(struct kl_copy_buf *b, struct collect *c, size_t cap)
{
    struct kl_err err = {0};
    memset(c, 0, sizeof *c);
    kl_buf_init(&c->out, (size_t)64 << 20);
    assert_int_equal(kl_copy_buf_init(b, cap, &err), KL_OK);
    b->sink.write = collect_write;
    b->sink.ctx = c;
}

static struct kl_value text(const char *s)
{
    struct kl_value v;
    memset(&v, 0, sizeof v);
    v.type = KL_TYPE_TEXT;
    v.v.s.ptr = s;
    v.v.s.len = strlen(s);
    return v;
}

/* Encodes one row and returns the text (static buffer). */
static const char *encode(const struct kl_value *cells, size_t n)
{
    static char out[4096];
    struct kl_copy_buf b;
    struct collect c;
    struct kl_err err = {0};

    setup_buf(&b, &c, 4096);
    assert_int_equal(kl_copy_append_row(&b, cells, n, &err), KL_OK);
    assert_int_equal(kl_copy_flush(&b, &err), KL_OK);
    assert_true(c.out.len < sizeof out);
    memcpy(out, c.out.data, c.out.len);
    out[c.out.len] = '\0';
    kl_copy_buf_free(&b);
    kl_buf_free(&c.out);
    return out;
}

/* COPY text: backslash, tab, newline and carriage return are escaped;
 * everything else (quotes, commas, UTF-8) passes as it is. */
static void test_text_escaping(void **state)
{
    static const struct {
        const char *in;
        const char *out;
    } cases[] = {
        {"plain", "plain\n"},
        {"", "\n"},
        {"tab\there", "tab\\there\n"},
        {"line\nbreak", "line\\nbreak\n"},
        {"cr\rhere", "cr\\rhere\n"},
        {"back\\slash", "back\\\\slash\n"},
        {"\\N", "\\\\N\n"}, /* a text that looks like NULL stays text */
        {"\\.", "\\\\.\n"}, /* and one that looks like end-of-data */
        {"quote\"comma,", "quote\"comma,\n"},
        {"ünïcödé ☃", "ünïcödé ☃\n"},
        {"\t\n\r\\", "\\t\\n\\r\\\\\n"},
    };
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct kl_value v = text(cases[i].in);
        assert_string_equal(encode(&v, 1), cases[i].out);
    }
}

static void test_null_and_separators(void **state)
{
    struct kl_value cells[3];
    (void)state;
    memset(cells, 0, sizeof cells);
    cells[0] = text("a");
    cells[1].type = KL_TYPE_NULL;
    cells[2] = text("");
    assert_string_equal(encode(cells, 3), "a\t\\N\t\n");
}

/* Postgres text cannot hold NUL: refuse clearly instead of truncating. */
static void test_nul_is_refused(void **state)
{
    struct kl_copy_buf b;
    struct collect c;
    struct kl_err err = {0};
    struct kl_value v;
    (void)state;

    memset(&v, 0, sizeof v);
    v.type = KL_TYPE_TEXT;
    v.v.s.ptr = "ab\0cd";
    v.v.s.len = 5;
    setup_buf(&b, &c, 4096);
    assert_int_equal(kl_copy_append_row(&b, &v, 1, &err), KL_ERR_INVALID);
    assert_non_null(strstr(err.msg, "NUL"));
    kl_copy_buf_free(&b);
    kl_buf_free(&c.out);
}

/* jsonb refuses the \u0000 escape; an escaped backslash before "u0000" is
 * ordinary text. */
static void test_json_nul_escape(void **state)
{
    struct kl_copy_buf b;
    struct collect c;
    struct kl_err err = {0};
    struct kl_value v;
    (void)state;

    assert_true(kl_copy_json_has_nul_escape("{\"a\":\"x\\u0000y\"}", 16));
    assert_false(kl_copy_json_has_nul_escape("{\"a\":\"x\\\\u0000y\"}", 17));
    assert_false(kl_copy_json_has_nul_escape("{\"a\":\"\\u00001\"}", 10));
    assert_false(kl_copy_json_has_nul_escape("[\"\\u0001\"]", 10));
    assert_true(kl_copy_json_has_nul_escape("[\"\\\\\\u0000\"]", 12));

    memset(&v, 0, sizeof v);
    v.type = KL_TYPE_JSON;
    v.v.s.ptr = "{\"a\":\"\\u0000\"}";
    v.v.s.len = strlen(v.v.s.ptr);
    setup_buf(&b, &c, 4096);
    assert_int_equal(kl_copy_append_row(&b, &v, 1, &err), KL_ERR_INVALID);
    assert_non_null(strstr(err.msg, "jsonb"));
    kl_copy_buf_free(&b);
    kl_buf_free(&c.out);

    /* JSON text is escaped like any text: its backslashes are doubled. */
    v.v.s.ptr = "{\"a\":\"x\\ny\"}";
    v.v.s.len = strlen(v.v.s.ptr);
    assert_string_equal(encode(&v, 1), "{\"a\":\"x\\\\ny\"}\n");
}

static void test_numbers_and_bools(void **state)
{
    struct kl_value cells[6];
    (void)state;
    memset(cells, 0, sizeof cells);
    cells[0].type = KL_TYPE_BIGINT;
    cells[0].v.i = INT64_MIN;
    cells[1].type = KL_TYPE_BIGINT;
    cells[1].v.i = INT64_MAX;
    cells[2].type = KL_TYPE_BIGINT;
    cells[2].v.i = 0;
    cells[3].type = KL_TYPE_BOOL;
    cells[3].v.b = true;
    cells[4].type = KL_TYPE_BOOL;
    cells[4].v.b = false;
    cells[5].type = KL_TYPE_DECIMAL;
    cells[5].v.s.ptr = "123456789012345678901234567890";
    cells[5].v.s.len = 30;
    assert_string_equal(encode(cells, 6), "-9223372036854775808\t9223372036854775807\t0\tt\tf\t"
                                          "123456789012345678901234567890\n");
}

/* Doubles read back to the same bits (float8 input parses them exactly). */
static void test_double_round_trip(void **state)
{
    static const double values[] = {0.1,
                                    -0.5,
                                    1.0 / 3.0,
                                    1e300,
                                    -1e-300,
                                    5e-324,
                                    1.5e15,
                                    123.0,
                                    -42.0,
                                    1e22,
                                    DBL_MAX,
                                    2.5e-8,
                                    9007199254740993.0,
                                    4503599627370497.5};
    char buf[KL_FMT_MAX];
    (void)state;
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
        kl_fmt_double(buf, values[i]);
        assert_true(strtod(buf, NULL) == values[i]);
    }
    kl_fmt_double(buf, 42.0);
    assert_string_equal(buf, "42");
    kl_fmt_double(buf, 12.34);
    assert_string_equal(buf, "12.34");
    kl_fmt_double(buf, 0.1);
    assert_string_equal(buf, "0.1");
    kl_fmt_double(buf, -0.5);
    assert_string_equal(buf, "-0.5");
    kl_fmt_double(buf, 0.000001);
    assert_string_equal(buf, "0.000001");
    kl_fmt_double(buf, 999999999.25);
    assert_string_equal(buf, "999999999.25");
    /* Short decimals of every size read back exactly, and stay short. */
    for (long v = -200000; v <= 200000; v += 7) {
        static const double scale[] = {10.0, 100.0, 1000.0, 1e6};
        for (size_t k = 0; k < 4; k++) {
            double d = (double)v / scale[k];
            kl_fmt_double(buf, d);
            assert_true(strtod(buf, NULL) == d);
            assert_null(strchr(buf, 'e'));
            assert_true(strlen(buf) <= 16);
        }
    }
    kl_fmt_double(buf, -7.0);
    assert_string_equal(buf, "-7");
    kl_fmt_double(buf, -0.0);
    assert_string_equal(buf, "-0");
    kl_fmt_double(buf, NAN);
    assert_string_equal(buf, "NaN");
    kl_fmt_double(buf, INFINITY);
    assert_string_equal(buf, "Infinity");
    kl_fmt_double(buf, -INFINITY);
    assert_string_equal(buf, "-Infinity");
}

/* UTC timestamps from epoch microseconds; known dates from the proleptic
 * Gregorian calendar (as Postgres and Python's datetime count them). */
static void test_timestamps(void **state)
{
    static const struct {
        int64_t us;
        const char *pg;
        const char *iso;
    } cases[] = {
        {0, "1970-01-01 00:00:00.000000+00", "1970-01-01T00:00:00.000000+00:00"},
        {1, "1970-01-01 00:00:00.000001+00", "1970-01-01T00:00:00.000001+00:00"},
        {-1, "1969-12-31 23:59:59.999999+00", "1969-12-31T23:59:59.999999+00:00"},
        {951782400000000LL, "2000-02-29 00:00:00.000000+00", "2000-02-29T00:00:00.000000+00:00"},
        {1700000000123456LL, "2023-11-14 22:13:20.123456+00", "2023-11-14T22:13:20.123456+00:00"},
        {4102444799999999LL, "2099-12-31 23:59:59.999999+00", "2099-12-31T23:59:59.999999+00:00"},
        {-62135596800000000LL, "0001-01-01 00:00:00.000000+00", "0001-01-01T00:00:00.000000+00:00"},
        /* 1 BC is year 0 in ISO-8601 and "0001 BC" for Postgres. */
        {-62135596800000000LL - 86400000000LL, "0001-12-31 00:00:00.000000+00 BC",
         "0000-12-31T00:00:00.000000+00:00"},
    };
    char buf[KL_FMT_MAX];
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int64_t back = 0;
        kl_fmt_timestamp(buf, cases[i].us, KL_TS_PG);
        assert_string_equal(buf, cases[i].pg);
        kl_fmt_timestamp(buf, cases[i].us, KL_TS_ISO);
        assert_string_equal(buf, cases[i].iso);
        assert_int_equal(kl_fmt_parse_timestamp(buf, &back), 0);
        assert_int_equal(back, cases[i].us);
    }
    /* Other spellings of UTC the parser accepts, and what it refuses. */
    {
        int64_t us = 0;
        assert_int_equal(kl_fmt_parse_timestamp("2023-11-14 22:13:20Z", &us), 0);
        assert_int_equal(us, 1699999999LL * 1000000 + 1000000);
        assert_int_equal(kl_fmt_parse_timestamp("2023-11-14T22:13:20.5+00", &us), 0);
        assert_int_equal(us, 1700000000500000LL);
        assert_int_equal(kl_fmt_parse_timestamp("2023-11-14T22:13:20+02:00", &us), -1);
        assert_int_equal(kl_fmt_parse_timestamp("2023-13-14T22:13:20", &us), -1);
        assert_int_equal(kl_fmt_parse_timestamp("yesterday", &us), -1);
    }
}

/* bytea in COPY text: the hex form's backslash is itself escaped. */
static void test_bytea(void **state)
{
    struct kl_value v;
    static const unsigned char bytes[] = {0x00, 0x01, 0x7f, 0x80, 0xff, '\t', '\\'};
    (void)state;
    memset(&v, 0, sizeof v);
    v.type = KL_TYPE_BINARY;
    v.v.s.ptr = (const char *)bytes;
    v.v.s.len = sizeof bytes;
    assert_string_equal(encode(&v, 1), "\\\\x00017f80ff095c\n");
    v.v.s.len = 0;
    assert_string_equal(encode(&v, 1), "\\\\x\n");
}

/* A buffer smaller than a row: the row is split across sink calls and the
 * concatenation equals what a big buffer produces. */
static void test_small_buffer_splits_rows(void **state)
{
    struct kl_copy_buf small, big;
    struct collect cs, cb;
    struct kl_err err = {0};
    size_t n = 100000;
    char *long_text = malloc(n + 1);
    unsigned char *bytes = malloc(n);
    struct kl_value cells[3];
    (void)state;

    assert_non_null(long_text);
    assert_non_null(bytes);
    for (size_t i = 0; i < n; i++) {
        long_text[i] = "ab\tc\\d\n"[i % 7];
        bytes[i] = (unsigned char)i;
    }
    long_text[n] = '\0';
    memset(cells, 0, sizeof cells);
    cells[0] = text(long_text);
    cells[1].type = KL_TYPE_BINARY;
    cells[1].v.s.ptr = (const char *)bytes;
    cells[1].v.s.len = n;
    cells[2].type = KL_TYPE_TIMESTAMP;
    cells[2].v.us = 1700000000123456LL;

    setup_buf(&small, &cs, 4096);
    setup_buf(&big, &cb, (size_t)8 << 20);
    for (int r = 0; r < 3; r++) {
        assert_int_equal(kl_copy_append_row(&small, cells, 3, &err), KL_OK);
        assert_int_equal(kl_copy_append_row(&big, cells, 3, &err), KL_OK);
    }
    assert_int_equal(kl_copy_flush(&small, &err), KL_OK);
    assert_int_equal(kl_copy_flush(&big, &err), KL_OK);
    assert_true(cs.calls > 50);
    assert_int_equal(cb.calls, 1);
    assert_int_equal(cs.out.len, cb.out.len);
    assert_memory_equal(cs.out.data, cb.out.data, cb.out.len);
    assert_int_equal(small.sent, cs.out.len);
    kl_copy_buf_free(&small);
    kl_copy_buf_free(&big);
    kl_buf_free(&cs.out);
    kl_buf_free(&cb.out);
    free(long_text);
    free(bytes);
}

/* A sink failure surfaces with the sink's code. */
static void test_sink_failure(void **state)
{
    struct kl_copy_buf b;
    struct collect c;
    struct kl_err err = {0};
    struct kl_value v = text("0123456789");
    int rc = KL_OK;
    (void)state;

    setup_buf(&b, &c, 4096);
    c.fail_after = 1;
    for (int i = 0; i < 1000 && rc == KL_OK; i++)
        rc = kl_copy_append_row(&b, &v, 1, &err);
    assert_int_equal(rc, KL_ERR_UNAVAILABLE);
    kl_copy_buf_free(&b);
    kl_buf_free(&c.out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_text_escaping),
        cmocka_unit_test(test_null_and_separators),
        cmocka_unit_test(test_nul_is_refused),
        cmocka_unit_test(test_json_nul_escape),
        cmocka_unit_test(test_numbers_and_bools),
        cmocka_unit_test(test_double_round_trip),
        cmocka_unit_test(test_timestamps),
        cmocka_unit_test(test_bytea),
        cmocka_unit_test(test_small_buffer_splits_rows),
        cmocka_unit_test(test_sink_failure),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
