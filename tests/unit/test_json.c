/*
 * The exact JSON parser: JSONTestSuite-style accept (y_) and reject (n_)
 * cases written for this project, the dead-letter rule of
 * kl_json_parse_object, exactness (big integers, U+0000, surrogates,
 * duplicate keys as a Python dict), limits, and a randomized round-trip and
 * garbage run that must never crash under ASan.
 */
#include "tests/support/test_support.h"
#include "core/normalize/json.h"
#include "core/util/buf.h"
#include "core/util/err.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct json_case {
    const char *name;
    const char *text;
    size_t len; /* 0: strlen(text) */
};

/* Inputs every JSON parser must accept (RFC 8259). */
static const struct json_case accept_cases[] = {
    {"y_object_empty", "{}", 0},
    {"y_array_empty", "[]", 0},
    {"y_ws_around", " \t\r\n{ \"a\" : 1 } \n", 0},
    {"y_nested", "{\"a\":{\"b\":[1,[2,[3,{}]]]}}", 0},
    {"y_number_zero", "0", 0},
    {"y_number_minus_zero", "-0", 0},
    {"y_number_frac", "1.5", 0},
    {"y_number_exp", "1E+2", 0},
    {"y_number_exp_minus", "-1e-7", 0},
    {"y_number_huge_exp", "1e999", 0},
    {"y_number_bigint", "123456789012345678901234567890", 0},
    {"y_string_escapes", "\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"", 0},
    {"y_string_u_escape", "\"\\u00e9\\u20AC\"", 0},
    {"y_string_surrogate_pair", "\"\\uD83D\\uDE00\"", 0},
    {"y_string_utf8_raw", "\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"", 0},
    {"y_string_u0000", "\"a\\u0000b\"", 0},
    {"y_literals", "[true,false,null]", 0},
    {"y_bom_object", "\xef\xbb\xbf{}", 0},
    {"y_dup_keys", "{\"a\":1,\"a\":2}", 0},
    {"y_long_string_fast_path", "\"abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJ\"", 0},
};

/* Inputs that are not JSON: each must be refused, never crash. */
static const struct json_case reject_cases[] = {
    {"n_empty", "", 0},
    {"n_ws_only", "   ", 0},
    {"n_trailing_comma_array", "[1,]", 0},
    {"n_trailing_comma_object", "{\"a\":1,}", 0},
    {"n_single_quotes", "{'a':1}", 0},
    {"n_unquoted_key", "{a:1}", 0},
    {"n_missing_colon", "{\"a\" 1}", 0},
    {"n_missing_value", "{\"a\":}", 0},
    {"n_leading_zero", "012", 0},
    {"n_plus_sign", "+1", 0},
    {"n_dot_start", ".5", 0},
    {"n_dot_end", "1.", 0},
    {"n_exp_empty", "1e", 0},
    {"n_hex", "0x10", 0},
    {"n_nan", "NaN", 0},
    {"n_infinity", "Infinity", 0},
    {"n_minus_infinity", "-Infinity", 0},
    {"n_true_caps", "True", 0},
    {"n_trailing_garbage", "{} x", 0},
    {"n_two_values", "{}{}", 0},
    {"n_unterminated_string", "\"abc", 0},
    {"n_unterminated_object", "{\"a\":1", 0},
    {"n_unterminated_array", "[1,2", 0},
    {"n_control_char_in_string", "\"a\tb\"", 0},
    {"n_bad_escape", "\"\\x41\"", 0},
    {"n_short_u_escape", "\"\\u12\"", 0},
    {"n_lone_high_surrogate", "\"\\uD800\"", 0},
    {"n_lone_low_surrogate", "\"\\uDC00\"", 0},
    {"n_high_then_non_low", "\"\\uD800\\u0041\"", 0},
    {"n_invalid_utf8_byte", "\"\xff\"", 0},
    {"n_overlong_utf8", "\"\xc0\xaf\"", 0},
    {"n_utf8_surrogate", "\"\xed\xa0\x80\"", 0},
    {"n_utf8_past_max", "\"\xf4\x90\x80\x80\"", 0},
    {"n_truncated_utf8", "\"\xe2\x82\"", 0},
    {"n_raw_nul", "{\"a\":\"\0\"}", 10},
    {"n_comment", "{} // c", 0},
    {"n_bom_only", "\xef\xbb\xbf", 0},
    {"n_array_missing_comma", "[1 2]", 0},
    {"n_object_in_key", "{{}:1}", 0},
};

static size_t case_len(const struct json_case *c)
{
    return c->len ? c->len : strlen(c->text);
}

static void accepts_valid_json(void **state)
{
    struct kl_json_doc doc;
    char reason[128];
    (void)state;
    kl_json_doc_init(&doc);
    for (size_t i = 0; i < sizeof accept_cases / sizeof accept_cases[0]; i++) {
        const struct json_case *c = &accept_cases[i];
        int rc = kl_json_parse(&doc, c->text, case_len(c), reason, sizeof reason);
        if (rc != KL_OK)
            fail_msg("%s: refused (%s)", c->name, reason);
    }
    kl_json_doc_free(&doc);
}

static void refuses_invalid_json(void **state)
{
    struct kl_json_doc doc;
    char reason[128];
    (void)state;
    kl_json_doc_init(&doc);
    for (size_t i = 0; i < sizeof reject_cases / sizeof reject_cases[0]; i++) {
        const struct json_case *c = &reject_cases[i];
        int rc = kl_json_parse(&doc, c->text, case_len(c), reason, sizeof reason);
        if (rc != KL_ERR_INVALID)
            fail_msg("%s: accepted (rc %d)", c->name, rc);
        if (reason[0] == '\0')
            fail_msg("%s: no reason", c->name);
    }
    kl_json_doc_free(&doc);
}

/* kl_json_parse_object: only objects are messages; the reason says why not. */
static void dead_letter_reasons(void **state)
{
    static const struct {
        const char *text, *reason;
    } cases[] = {
        {"[1,2]", "a JSON array, not an object"},
        {"\"x\"", "a JSON string, not an object"},
        {"42", "a JSON number, not an object"},
        {"true", "a JSON boolean, not an object"},
        {"null", "JSON null, not an object"},
        {"{\"a\":1,}", "not valid JSON (expected a key) at byte 7"},
        {"{\"a\":1} x", "trailing data after the JSON value at byte 8"},
        {"{\"a\":\"\xff\"}", "invalid UTF-8 at byte 6"},
        {"", "empty input at byte 0"},
        {"{\"a\":tru}", "not valid JSON at byte 5"},
    };
    struct kl_json_doc doc;
    const struct kl_json *obj = NULL;
    char reason[128];
    (void)state;
    kl_json_doc_init(&doc);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int rc = kl_json_parse_object(&doc, cases[i].text, strlen(cases[i].text), &obj, reason,
                                      sizeof reason);
        assert_int_equal(rc, KL_ERR_INVALID);
        assert_string_equal(reason, cases[i].reason);
    }
    assert_int_equal(kl_json_parse_object(&doc, "{\"a\":1}", 7, &obj, reason, sizeof reason),
                     KL_OK);
    assert_int_equal(obj->type, KL_JSON_OBJECT);
    kl_json_doc_free(&doc);
}

/* Integers keep every digit: int64 values are exact, larger ones keep text. */
static void numbers_are_exact(void **state)
{
    static const struct {
        const char *text;
        int kind;
        long long i;
    } cases[] = {
        {"0", KL_JSON_INT, 0},
        {"-0", KL_JSON_INT, 0},
        {"9223372036854775807", KL_JSON_INT, 9223372036854775807LL},
        {"-9223372036854775808", KL_JSON_INT, (-9223372036854775807LL - 1)},
        {"9223372036854775808", KL_JSON_BIGINT, 0},
        {"-9223372036854775809", KL_JSON_BIGINT, 0},
        {"18446744073709551616", KL_JSON_BIGINT, 0},
        {"123456789012345678901234567890123", KL_JSON_BIGINT, 0},
        {"1.0", KL_JSON_FLOAT, 0},
        {"1e2", KL_JSON_FLOAT, 0},
    };
    struct kl_json_doc doc;
    (void)state;
    kl_json_doc_init(&doc);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        assert_int_equal(kl_json_parse(&doc, cases[i].text, strlen(cases[i].text), NULL, 0), KL_OK);
        assert_int_equal(doc.root.type, KL_JSON_NUMBER);
        assert_int_equal(doc.root.num, cases[i].kind);
        assert_int_equal(doc.root.len, strlen(cases[i].text));
        assert_memory_equal(doc.root.u.s, cases[i].text, doc.root.len);
        if (cases[i].kind == KL_JSON_INT)
            assert_true(doc.root.i == cases[i].i);
    }
    kl_json_doc_free(&doc);
}

static void doubles_round_correctly(void **state)
{
    static const struct {
        const char *text;
        double d;
        bool in_range;
    } cases[] = {
        {"1.5", 1.5, true},
        {"0.1", 0.1, true},
        {"-2.5e-3", -2.5e-3, true},
        {"1e22", 1e22, true},
        {"1e23", 1e23, true},
        {"2.2250738585072014e-308", 2.2250738585072014e-308, true},
        {"9007199254740993.0", 9007199254740992.0, true},
        {"0.0", 0.0, true},
        {"1e400", HUGE_VAL, false},
        {"1e-400", 0.0, false},
    };
    struct kl_json_doc doc;
    (void)state;
    kl_json_doc_init(&doc);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        bool in_range;
        assert_int_equal(kl_json_parse(&doc, cases[i].text, strlen(cases[i].text), NULL, 0), KL_OK);
        double d = kl_json_number_double(&doc.root, &in_range);
        if (d != cases[i].d)
            fail_msg("%s: got %.17g", cases[i].text, d);
        assert_int_equal(in_range, cases[i].in_range);
    }
    kl_json_doc_free(&doc);
}

/* Strings carry their length: U+0000 survives; surrogate pairs decode to one
 * code point; escapes decode. */
static void strings_are_exact(void **state)
{
    static const struct {
        const char *text;
        const char *bytes;
        size_t n;
        int has_nul;
    } cases[] = {
        {"\"a\\u0000b\"", "a\0b", 3, 1},
        {"\"\\uD83D\\uDE00\"", "\xf0\x9f\x98\x80", 4, 0},
        {"\"\\u00e9\"", "\xc3\xa9", 2, 0},
        {"\"x\\ny\"", "x\ny", 3, 0},
        {"\"plain ascii text that is long enough for eight\"",
         "plain ascii text that is long enough for eight", 46, 0},
    };
    struct kl_json_doc doc;
    (void)state;
    kl_json_doc_init(&doc);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        assert_int_equal(kl_json_parse(&doc, cases[i].text, strlen(cases[i].text), NULL, 0), KL_OK);
        assert_int_equal(doc.root.type, KL_JSON_STRING);
        assert_int_equal(doc.root.len, cases[i].n);
        assert_memory_equal(doc.root.u.s, cases[i].bytes, cases[i].n);
        assert_int_equal(doc.root.has_nul, cases[i].has_nul);
    }
    kl_json_doc_free(&doc);
}

/* A Python dict: a repeated key keeps the place of its first occurrence and
 * takes the value of its last, in small and in large objects. */
static void duplicate_keys_as_python_dict(void **state)
{
    struct kl_json_doc doc;
    struct kl_buf out;
    (void)state;
    kl_json_doc_init(&doc);
    kl_buf_init(&out, 1 << 20);
    const char *small = "{\"a\":1,\"b\":2,\"a\":{\"x\":3},\"c\":4,\"b\":null}";
    assert_int_equal(kl_json_parse(&doc, small, strlen(small), NULL, 0), KL_OK);
    assert_int_equal(kl_json_write(&doc.root, &out, NULL), KL_OK);
    assert_string_equal(out.data, "{\"a\":{\"x\":3},\"b\":null,\"c\":4}");

    /* 40 distinct keys then the first 5 again: hash-based path */
    kl_buf_reset(&out);
    struct kl_buf in;
    kl_buf_init(&in, 1 << 20);
    kl_buf_append_str(&in, "{", NULL);
    for (int i = 0; i < 40; i++)
        kl_buf_printf(&in, NULL, "%s\"k%d\":%d", i ? "," : "", i, i);
    for (int i = 0; i < 5; i++)
        kl_buf_printf(&in, NULL, ",\"k%d\":%d", i, 100 + i);
    kl_buf_append_str(&in, "}", NULL);
    assert_int_equal(kl_json_parse(&doc, in.data, in.len, NULL, 0), KL_OK);
    assert_int_equal(doc.root.len, 40);
    assert_memory_equal(doc.root.u.members[0].key, "k0", 2);
    assert_true(doc.root.u.members[0].value.i == 100);
    assert_true(doc.root.u.members[4].value.i == 104);
    assert_true(doc.root.u.members[5].value.i == 5);
    assert_non_null(kl_json_get(&doc.root, "k39", 3));
    kl_buf_free(&in);
    kl_buf_free(&out);
    kl_json_doc_free(&doc);
}

/* 1024 levels parse (orjson's limit); 1025 are refused, without recursion. */
static void nesting_limit(void **state)
{
    struct kl_json_doc doc;
    char reason[128];
    (void)state;
    kl_json_doc_init(&doc);
    for (int depth = 1024; depth <= 1025; depth++) {
        char *s = malloc((size_t)depth * 2 + 1);
        for (int i = 0; i < depth; i++) {
            s[i] = '[';
            s[depth * 2 - 1 - i] = ']';
        }
        s[depth * 2] = '\0';
        int rc = kl_json_parse(&doc, s, (size_t)depth * 2, reason, sizeof reason);
        assert_int_equal(rc, depth == 1024 ? KL_OK : KL_ERR_INVALID);
        free(s);
    }
    assert_string_equal(reason, "nesting deeper than 1024 at byte 1024");
    kl_json_doc_free(&doc);
}

/* Tiny deterministic generator so failures reproduce. */
static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint32_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 11);
}

static void gen_value(struct kl_buf *b, int depth)
{
    static const char *const strs[] = {"\"\"",
                                       "\"a\"",
                                       "\"\\u0000\"",
                                       "\"\\uD834\\uDD1E\"",
                                       "\"\xc3\xa9t\xc3\xa9\"",
                                       "\"tab\\tnl\\n\"",
                                       "\"q\\\"\""};
    static const char *const nums[] = {
        "0",    "-1",   "42",  "9223372036854775808", "-123456789012345678901234",
        "3.25", "1e-5", "-0.0"};
    uint32_t r = rnd() % (depth > 6 ? 4 : 6);
    switch (r) {
    case 0:
        kl_buf_append_str(b, strs[rnd() % 7], NULL);
        break;
    case 1:
        kl_buf_append_str(b, nums[rnd() % 8], NULL);
        break;
    case 2:
        kl_buf_append_str(b, (rnd() & 1) ? "true" : "null", NULL);
        break;
    case 3:
        kl_buf_append_str(b, "false", NULL);
        break;
    case 4: {
        int n = (int)(rnd() % 4);
        kl_buf_append_str(b, "[", NULL);
        for (int i = 0; i < n; i++) {
            if (i)
                kl_buf_append_str(b, ",", NULL);
            gen_value(b, depth + 1);
        }
        kl_buf_append_str(b, "]", NULL);
        break;
    }
    default: {
        int n = (int)(rnd() % 5);
        kl_buf_append_str(b, "{", NULL);
        for (int i = 0; i < n; i++) {
            kl_buf_printf(b, NULL, "%s\"k%u\":", i ? "," : "", rnd() % 6);
            gen_value(b, depth + 1);
        }
        kl_buf_append_str(b, "}", NULL);
    }
    }
}

/* write(parse(x)) is a fixed point, and mutated or random bytes never crash. */
static void randomized_round_trip_and_garbage(void **state)
{
    struct kl_json_doc doc;
    struct kl_buf in, out1, out2;
    (void)state;
    kl_json_doc_init(&doc);
    kl_buf_init(&in, 1 << 22);
    kl_buf_init(&out1, 1 << 22);
    kl_buf_init(&out2, 1 << 22);
    for (int iter = 0; iter < 3000; iter++) {
        kl_buf_reset(&in);
        kl_buf_reset(&out1);
        kl_buf_reset(&out2);
        gen_value(&in, 0);
        assert_int_equal(kl_json_parse(&doc, in.data, in.len, NULL, 0), KL_OK);
        assert_int_equal(kl_json_write(&doc.root, &out1, NULL), KL_OK);
        assert_int_equal(kl_json_parse(&doc, out1.data, out1.len, NULL, 0), KL_OK);
        assert_int_equal(kl_json_write(&doc.root, &out2, NULL), KL_OK);
        assert_int_equal(out1.len, out2.len);
        assert_memory_equal(out1.data, out2.data, out1.len);
        /* mutate: flip, drop or insert bytes; the parser must answer either way */
        for (int m = 0; m < 8 && in.len > 0; m++) {
            size_t at = rnd() % in.len;
            switch (rnd() % 3) {
            case 0:
                in.data[at] = (char)(rnd() & 0xFF);
                break;
            case 1:
                memmove(in.data + at, in.data + at + 1, in.len - at - 1);
                in.len--;
                break;
            default:
                in.data[at] = "{}[]\",:\\0e-"[rnd() % 11];
                break;
            }
            int rc = kl_json_parse(&doc, in.data, in.len, NULL, 0);
            assert_true(rc == KL_OK || rc == KL_ERR_INVALID);
        }
    }
    for (int iter = 0; iter < 3000; iter++) {
        unsigned char junk[64];
        size_t n = rnd() % sizeof junk;
        for (size_t i = 0; i < n; i++)
            junk[i] = (unsigned char)rnd();
        int rc = kl_json_parse(&doc, junk, n, NULL, 0);
        assert_true(rc == KL_OK || rc == KL_ERR_INVALID);
    }
    kl_buf_free(&in);
    kl_buf_free(&out1);
    kl_buf_free(&out2);
    kl_json_doc_free(&doc);
}

/* Writing follows orjson's compact spelling. */
static void writes_compact_json(void **state)
{
    static const struct {
        const char *in, *out;
    } cases[] = {
        {" { \"a\" : [ 1 , 2.50 , true ] , \"b\" : \"\\u00e9\\u0001\" } ",
         "{\"a\":[1,2.50,true],\"b\":\"\xc3\xa9\\u0001\"}"},
        {"\"\\/\"", "\"/\""},
        {"[]", "[]"},
    };
    struct kl_json_doc doc;
    struct kl_buf out;
    (void)state;
    kl_json_doc_init(&doc);
    kl_buf_init(&out, 1 << 16);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        kl_buf_reset(&out);
        assert_int_equal(kl_json_parse(&doc, cases[i].in, strlen(cases[i].in), NULL, 0), KL_OK);
        assert_int_equal(kl_json_write(&doc.root, &out, NULL), KL_OK);
        assert_string_equal(out.data, cases[i].out);
    }
    kl_buf_free(&out);
    kl_json_doc_free(&doc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(accepts_valid_json),
        cmocka_unit_test(refuses_invalid_json),
        cmocka_unit_test(dead_letter_reasons),
        cmocka_unit_test(numbers_are_exact),
        cmocka_unit_test(doubles_round_correctly),
        cmocka_unit_test(strings_are_exact),
        cmocka_unit_test(duplicate_keys_as_python_dict),
        cmocka_unit_test(nesting_limit),
        cmocka_unit_test(randomized_round_trip_and_garbage),
        cmocka_unit_test(writes_compact_json),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
