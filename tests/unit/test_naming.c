/*
 * dlt's snake_case naming convention. Every expected name was computed with
 * dlt's own algorithm (dlt/common/normalizers/naming/snake_case.py and
 * naming.py: the same regular expressions, translation table, shake_128 tag
 * and trim) run under Python 3.11; each case says which rule it checks.
 */
#include "tests/support/test_support.h"
#include "core/util/digest.h"
#include "core/normalize/naming.h"
#include "core/kinesis/msgid.h"
#include "core/util/err.h"

#include <openssl/evp.h>
#include <string.h>

struct naming_case {
    const char *in;
    size_t in_len;
    const char *out; /* NULL: dlt raises ValueError */
};

static const struct naming_case identifier_cases[] = {
    /* camelCase: _SNAKE_CASE_BREAK_1 "([^_])([A-Z][a-z]+)" then BREAK_2 "([a-z0-9])([A-Z])" */
    {"DealFlow", 8, "deal_flow"},
    {"dealFlow", 8, "deal_flow"},
    {"ABCDef", 6, "abc_def"},
    {"aBcDe", 5, "a_bc_de"}, /* matches do not overlap: "cDe" is split by BREAK_2 */
    {"HTTPResponseCode", 16, "http_response_code"},
    {"getHTTPResponse", 15, "get_http_response"},
    {"a1B2C", 5, "a1_b2_c"},
    {"userID", 6, "user_id"},
    {"MyXMLParser2Go", 14, "my_xml_parser2_go"},
    {"ABC", 3, "abc"},
    {"aB", 2, "a_b"},
    {"Ab", 2, "ab"},
    {"A", 1, "a"},
    {"Value", 5, "value"},
    {"already_snake", 13, "already_snake"},
    /* identifier.strip(): Python whitespace, including U+3000 and U+00A0 */
    {"  padded  ", 10, "padded"},
    {"\xe3\x80\x80ideo\xc2\xa0", 9, "ideo"},
    /* RE_LEADING_DIGITS "^\d+" prefixes "_"; \d is any Unicode Nd digit */
    {"123abc", 6, "_123abc"},
    {"1", 1, "_1"},
    {"\xd9\xa3"
     "abc",
     5,
     "_\xd9\xa3"
     "abc"},
    {"\xef\xbc\x91\xef\xbc\x92", 6, "_\xef\xbc\x91\xef\xbc\x92"}, /* fullwidth digits are kept */
    /* trailing "_" become "x" (one x per underscore); a leading "_" stays */
    {"_leading", 8, "_leading"},
    {"trailing_", 9, "trailingx"},
    {"trailing__", 10, "trailingxx"},
    {"_", 1, "x"},
    {"__", 2, "xx"},
    {"a-", 2, "ax"},
    {"--", 2, "xx"},
    {"!", 1, "x"},
    {"x!", 2, "xx"},
    /* RE_UNDERSCORES "__+" -> "_" keeps "__" free for paths */
    {"a__b", 4, "a_b"},
    {"a___b", 5, "a_b"},
    /* the order of the steps: trailing "_" -> "x" per underscore first, then
     * every run of "_" collapses; a leading digit's "_" comes before both */
    {"__a", 3, "_a"},
    {"_a_", 3, "_ax"},
    {"x__y__", 6, "x_yxx"},
    {"___", 3, "xxx"},
    {"1_", 2, "_1x"},
    {"1__a", 4, "_1_a"},
    {"__1a", 4, "_1a"},
    {"_Foo__Bar_", 10, "_foo_barx"},
    {"HTTP__Code", 10, "http_code"},
    {"a__bC", 5, "a_b_c"},
    {"a-_-b", 5, "a_b"},
    {" a_ ", 4, "ax"},
    /* _TR_REDUCE_ALPHABET: "+-*@|" -> "x_xal" */
    {"a-b", 3, "a_b"},
    {"a+b", 3, "axb"},
    {"a*b", 3, "axb"},
    {"e@mail", 6, "eamail"},
    {"x|y", 3, "xly"},
    {"-a", 2, "_a"},
    /* RE_NON_ALPHANUMERIC "[^a-zA-Z\d_]+": each run becomes one "_" */
    {"a.b.c", 5, "a_b_c"},
    {"a b", 3, "a_b"},
    {"a $ b", 5, "a_b"},
    {"a$_b", 4, "a_b"},
    {"na\xc3\xafve", 6, "na_ve"},
    {"\xc3\x89"
     "cole",
     6, "_cole"},
    {"\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e", 9, "x"},
    {"\xf0\x9f\x98\x80x", 5, "_x"},
    {"a\0b", 3, "a_b"},
    {"_dlt_id", 7, "_dlt_id"},
    {"_kinesis", 8, "_kinesis"},
    /* shorten_identifier: > 63 code points keep 29 + 6-char tag + 28; the tag
     * is shake_128 over the stripped original, 4 bytes, base64 "/+" -> "ab", lower */
    {"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", 64,
     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaafv1mmaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"},
    {"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", 63,
     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"},
    {"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", 70,
     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaarl1pjqaaaaaaaaaaaaaaaaaaaaaaaaaaaa"},
    {"camelCasecamelCasecamelCasecamelCasecamelCasecamelCasecamelCasecamelCasecamelCasecamelCase",
     90, "camel_casecamel_casecamel_caswehbjgmel_casecamel_casecamel_case"},
    /* empty and whitespace-only identifiers raise in dlt */
    {"", 0, NULL},
    {"   ", 3, NULL},
};

static const struct naming_case path_cases[] = {
    /* normalize_path: break on "__", drop blank parts, normalize each, join */
    {"a__b", 4, "a__b"},
    {"a___b", 5, "a___b"}, /* split gives "a", "_b"; "_b" stays "_b" */
    {"a____b", 6, "a__b"}, /* split gives "a", "", "b" */
    {"__x", 3, "x"},
    {"x__", 3, "x"},
    {"__", 2, ""}, /* nothing left: dlt yields an empty name */
    {" __ ", 4, ""},
    {"User__Name", 10, "user__name"},
    {"_kinesis", 8, "_kinesis"},
    {"___", 3, "x"},
    {"a__ __b", 7, "a__b"},
    /* each part is shortened, then the whole path with a tag over the original path */
    {"a__bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", 73,
     "a__bbbbbbbbbbbbbbbbbbbbbbbbbbja6wwgbbbbbbbbbbbbbbbbbbbbbbbbbbbb"},
    {"longlonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglong__tail", 86,
     "longlonglonglonglonglonglongljyjbewnglonglonglonglonglong__tail"},
};

static void normalizes_identifiers_as_dlt(void **state)
{
    char out[KL_NAME_CAP];
    size_t n;
    (void)state;
    for (size_t i = 0; i < sizeof identifier_cases / sizeof identifier_cases[0]; i++) {
        const struct naming_case *c = &identifier_cases[i];
        int rc = kl_naming_normalize_identifier(c->in, c->in_len, KL_NAMING_MAX_LENGTH, out, &n);
        if (c->out == NULL) {
            if (rc != KL_ERR_INVALID)
                fail_msg("case %zu: expected an error, got %d", i, rc);
            continue;
        }
        if (rc != KL_OK)
            fail_msg("case %zu: rc %d", i, rc);
        if (strcmp(out, c->out) != 0)
            fail_msg("case %zu: got '%s', want '%s'", i, out, c->out);
        assert_int_equal(n, strlen(c->out));
    }
}

static void normalizes_paths_as_dlt(void **state)
{
    char out[KL_NAME_CAP];
    size_t n;
    (void)state;
    for (size_t i = 0; i < sizeof path_cases / sizeof path_cases[0]; i++) {
        const struct naming_case *c = &path_cases[i];
        assert_int_equal(kl_naming_normalize_path(c->in, c->in_len, KL_NAMING_MAX_LENGTH, out, &n),
                         KL_OK);
        if (strcmp(out, c->out) != 0)
            fail_msg("case %zu: got '%s', want '%s'", i, out, c->out);
    }
}

/* shorten_fragments: join normalized parts with "__", tag over the joined text. */
static void shortens_fragments_as_dlt(void **state)
{
    static const char a70[] =
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    static const char a40[] = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    static const char b40[] = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
    char out[KL_NAME_CAP];
    size_t n;
    (void)state;
    {
        const char *parts[] = {"stream", a70};
        size_t lens[] = {6, 70};
        assert_int_equal(kl_naming_shorten_fragments(parts, lens, 2, 63, out, &n), KL_OK);
        assert_string_equal(out, "stream__aaaaaaaaaaaaaaaaaaaaankugmqaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
    }
    {
        const char *parts[] = {a40, b40};
        size_t lens[] = {40, 40};
        assert_int_equal(kl_naming_shorten_fragments(parts, lens, 2, 63, out, &n), KL_OK);
        assert_string_equal(out, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaarsjyfqbbbbbbbbbbbbbbbbbbbbbbbbbbbb");
    }
    {
        /* make_path skips blank parts */
        const char *parts[] = {"root", "", "items"};
        size_t lens[] = {4, 0, 5};
        assert_int_equal(kl_naming_shorten_fragments(parts, lens, 3, 63, out, &n), KL_OK);
        assert_string_equal(out, "root__items");
    }
}

/* "_empty" replaces keys that are empty or all whitespace (str.isspace). */
static void blank_keys(void **state)
{
    (void)state;
    assert_true(kl_naming_is_blank("", 0));
    assert_true(kl_naming_is_blank(" \t\n", 3));
    assert_true(kl_naming_is_blank("\xe3\x80\x80", 3));
    assert_false(kl_naming_is_blank("_", 1));
    assert_false(kl_naming_is_blank("__", 2));
}

/* Names of multibyte digits may pass 63 bytes; PostgreSQL keeps whole characters. */
static void clips_to_postgres_bytes(void **state)
{
    char name[80];
    (void)state;
    name[0] = 'x';
    for (int i = 0; i < 35; i++)
        memcpy(name + 1 + 2 * i, "\xd9\xa3", 2);
    assert_int_equal(kl_naming_clip_bytes(name, 71, 63), 63);
    assert_int_equal(kl_naming_clip_bytes(name, 71, 62), 61);
    assert_int_equal(kl_naming_clip_bytes("abc", 3, 63), 3);
}

/* OpenSSL's SHAKE-128 of `len` bytes, `out_len` bytes of output. */
static void openssl_shake128(const unsigned char *in, size_t len, unsigned char *out,
                             size_t out_len)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    assert_non_null(ctx);
    assert_int_equal(EVP_DigestInit_ex(ctx, EVP_shake128(), NULL), 1);
    assert_int_equal(EVP_DigestUpdate(ctx, in, len), 1);
    assert_int_equal(EVP_DigestFinalXOF(ctx, out, out_len), 1);
    EVP_MD_CTX_free(ctx);
}

/* Our SHAKE-128 agrees with OpenSSL's for inputs across the 168-byte rate
 * boundary, given whole or in three parts of any split, and for outputs
 * longer than one squeezed block. */
static void shake128_matches_openssl(void **state)
{
    unsigned char buf[600], ours[400], theirs[400];
    (void)state;
    for (size_t i = 0; i < sizeof buf; i++)
        buf[i] = (unsigned char)(i * 7 + 3);
    for (size_t len = 0; len < sizeof buf; len += 1 + len / 3) {
        size_t out_len = len % 2 ? 15 : sizeof ours;
        const void *parts[3] = {buf, buf + len / 3, buf + len / 2};
        size_t lens[3] = {len / 3, len / 2 - len / 3, len - len / 2};
        openssl_shake128(buf, len, theirs, out_len);
        kl_shake128(parts, lens, 3, ours, out_len);
        if (memcmp(ours, theirs, out_len) != 0)
            fail_msg("len %zu in three parts, %zu bytes out: differs from OpenSSL", len, out_len);
        kl_shake128((const void *const *)parts, &len, 1, ours, out_len);
        if (memcmp(ours, theirs, out_len) != 0)
            fail_msg("len %zu whole, %zu bytes out: differs from OpenSSL", len, out_len);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(normalizes_identifiers_as_dlt), cmocka_unit_test(normalizes_paths_as_dlt),
        cmocka_unit_test(shortens_fragments_as_dlt),     cmocka_unit_test(blank_keys),
        cmocka_unit_test(clips_to_postgres_bytes),       cmocka_unit_test(shake128_matches_openssl),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
