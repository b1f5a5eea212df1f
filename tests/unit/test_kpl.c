/*
 * KPL de-aggregation: known answers produced by the reference aggregator
 * (npm aws-kinesis-agg, via tests/tools/kpl-fixtures.js), hand-built protobuf
 * for every way a record can be broken or merely unusual, the hard caps, and
 * a seeded mutation run over the fixtures that must never crash or read out
 * of bounds (run it in the sanitizer build). KL_KPL_BENCH=1 adds a throughput
 * figure.
 */
#include "tests/support/test_support.h"
#include "core/kinesis/kpl.h"
#include "core/util/base64.h"
#include "core/util/err.h"

#include <cjson/cJSON.h>
#include <openssl/evp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const unsigned char magic[4] = {0xF3, 0x89, 0x9A, 0xC2};

/* ---- helpers ---- */

/* A heap copy of exactly `len` bytes, so that the sanitizer catches any read
 * past the end. */
static unsigned char *exact_copy(const void *src, size_t len)
{
    unsigned char *p = malloc(len > 0 ? len : 1);
    assert_non_null(p);
    if (len > 0)
        memcpy(p, src, len);
    return p;
}

static unsigned char *b64_decode(const char *s, size_t *len)
{
    unsigned char *out = malloc(kl_base64_decoded_max(strlen(s)) + 1);
    assert_non_null(out);
    assert_int_equal(kl_base64_decode(s, strlen(s), out, len), 0);
    return out;
}

/* Magic + protobuf + MD5 of the protobuf, in a buffer of exactly the right size. */
static unsigned char *wrap(const unsigned char *pb, size_t pb_len, size_t *len)
{
    unsigned char *out = malloc(4 + pb_len + 16);
    unsigned int md_len = 0;

    assert_non_null(out);
    memcpy(out, magic, 4);
    if (pb_len > 0)
        memcpy(out + 4, pb, pb_len);
    assert_int_equal(EVP_Digest(pb, pb_len, out + 4 + pb_len, &md_len, EVP_md5(), NULL), 1);
    assert_int_equal(md_len, 16);
    *len = 4 + pb_len + 16;
    return out;
}

/* "0a 01 70" -> bytes. */
static unsigned char *from_hex(const char *hex, size_t *len)
{
    unsigned char *out = malloc(strlen(hex) / 2 + 1);
    size_t n = 0;
    int hi = -1;

    assert_non_null(out);
    for (const char *p = hex; *p != '\0'; p++) {
        int v = 0;
        if (*p == ' ')
            continue;
        if (*p >= '0' && *p <= '9')
            v = *p - '0';
        else if (*p >= 'a' && *p <= 'f')
            v = *p - 'a' + 10;
        else
            fail_msg("bad hex digit '%c' in %s", *p, hex);
        if (hi < 0) {
            hi = v;
        } else {
            out[n++] = (unsigned char)(hi << 4 | v);
            hi = -1;
        }
    }
    assert_true(hi < 0);
    *len = n;
    return out;
}

/* Everything a decoded record points at lies inside the input; reading it
 * all lets the sanitizer check that too. */
static unsigned long check_inside(const struct kl_kpl_records *r, const unsigned char *buf,
                                  size_t len)
{
    const unsigned char *end = buf + len;
    unsigned long sum = 0;

    assert_true(r->n >= 1);
    for (size_t i = 0; i < r->n; i++) {
        const struct kl_kpl_record *k = &r->items[i];
        const unsigned char *pk = (const unsigned char *)k->partition_key;
        const unsigned char *ehk = (const unsigned char *)k->explicit_hash_key;

        assert_non_null(k->data);
        assert_true(k->data >= buf && k->data_len <= (size_t)(end - k->data));
        assert_non_null(pk);
        assert_true(pk >= buf && k->partition_key_len <= (size_t)(end - pk));
        if (ehk != NULL)
            assert_true(ehk >= buf && k->explicit_hash_key_len <= (size_t)(end - ehk));
        else
            assert_int_equal(k->explicit_hash_key_len, 0);
        for (size_t j = 0; j < k->data_len; j++)
            sum += k->data[j];
        for (size_t j = 0; j < k->partition_key_len; j++)
            sum += pk[j];
        for (size_t j = 0; ehk != NULL && j < k->explicit_hash_key_len; j++)
            sum += ehk[j];
    }
    return sum;
}

/* ---- known answers from the reference aggregator ---- */

static void decodes_reference_aggregates(void **state)
{
    char *text = kl_test_read_fixture("kpl/expected.json", NULL);
    cJSON *doc = cJSON_Parse(text);
    const cJSON *cases = cJSON_GetObjectItemCaseSensitive(doc, "cases");
    const cJSON *c;
    struct kl_kpl_records out;
    size_t n_cases = 0, n_records = 0;
    (void)state;

    assert_non_null(doc);
    kl_kpl_records_init(&out);
    cJSON_ArrayForEach(c, cases)
    {
        const char *name = cJSON_GetObjectItemCaseSensitive(c, "name")->valuestring;
        const cJSON *records = cJSON_GetObjectItemCaseSensitive(c, "records");
        char rel[256];
        size_t raw_len, i = 0;
        char *raw;
        unsigned char *buf;
        const cJSON *want;
        struct kl_err err;

        snprintf(rel, sizeof rel, "kpl/%s",
                 cJSON_GetObjectItemCaseSensitive(c, "file")->valuestring);
        raw = kl_test_read_fixture(rel, &raw_len);
        buf = exact_copy(raw, raw_len);
        free(raw);

        assert_true(kl_kpl_is_aggregated(buf, raw_len));
        if (kl_kpl_decode(buf, raw_len, &out, &err) != KL_OK)
            fail_msg("%s: %s", name, err.msg);
        if (out.n != (size_t)cJSON_GetArraySize(records))
            fail_msg("%s: %zu records, want %d", name, out.n, cJSON_GetArraySize(records));
        check_inside(&out, buf, raw_len);
        cJSON_ArrayForEach(want, records)
        {
            const struct kl_kpl_record *got = &out.items[i];
            const cJSON *ehk = cJSON_GetObjectItemCaseSensitive(want, "explicit_hash_key");
            size_t pk_len, data_len;
            unsigned char *pk = b64_decode(
                cJSON_GetObjectItemCaseSensitive(want, "partition_key_b64")->valuestring, &pk_len);
            unsigned char *data = b64_decode(
                cJSON_GetObjectItemCaseSensitive(want, "data_b64")->valuestring, &data_len);

            if (got->partition_key_len != pk_len || memcmp(got->partition_key, pk, pk_len) != 0)
                fail_msg("%s[%zu]: partition key differs", name, i);
            if (got->data_len != data_len ||
                (data_len > 0 && memcmp(got->data, data, data_len) != 0))
                fail_msg("%s[%zu]: data differs (%zu bytes, want %zu)", name, i, got->data_len,
                         data_len);
            if (cJSON_IsNull(ehk)) {
                if (got->explicit_hash_key != NULL)
                    fail_msg("%s[%zu]: explicit hash key where there is none", name, i);
            } else if (got->explicit_hash_key == NULL ||
                       got->explicit_hash_key_len != strlen(ehk->valuestring) ||
                       memcmp(got->explicit_hash_key, ehk->valuestring,
                              got->explicit_hash_key_len) != 0) {
                fail_msg("%s[%zu]: explicit hash key differs", name, i);
            }
            free(pk);
            free(data);
            i++;
        }
        /* a user record that is itself an aggregated record stays one piece */
        if (strcmp(name, "nested") == 0)
            assert_true(kl_kpl_is_aggregated(out.items[0].data, out.items[0].data_len));
        n_records += out.n;
        n_cases++;
        free(buf);
    }
    assert_true(n_cases >= 8);
    assert_true(n_records >= 400);
    kl_kpl_records_free(&out);
    kl_kpl_records_free(&out); /* freeing twice is harmless */
    cJSON_Delete(doc);
    free(text);
}

/* ---- hand-built records, good and bad ---- */

/* Field keys used below: 0a = field 1 LEN, 12 = field 2 LEN, 1a = field 3 LEN,
 * 08 = field 1 VARINT, 10 = field 2 VARINT, 22 = field 4 LEN. A minimal
 * Record is "1a 04 08 00 1a 00": partition key index 0, empty data. Each hex
 * string is a protobuf that the test wraps in magic and a correct MD5. */
struct good_case {
    const char *name;
    const char *hex;
    size_t n;          /* user records */
    const char *pk0;   /* the first record's partition key */
    const char *data0; /* its data */
    const char *ehk0;  /* its explicit hash key (NULL: none) */
};

static const struct good_case good_cases[] = {
    {"minimal", "0a 01 70 1a 04 08 00 1a 00", 1, "p", "", NULL},
    {"records before the tables", "1a 07 08 01 10 00 1a 01 78 0a 01 61 0a 01 62 12 01 39", 1, "b",
     "x", "9"},
    {"unknown fields of every wire type are skipped",
     "20 96 01 29 01 02 03 04 05 06 07 08 32 02 aa bb 3d 01 02 03 04 0a 01 70"
     " 1a 1a 08 00 28 ff ff ff ff ff ff ff ff ff 01 31 00 00 00 00 00 00 00 00 1a 02 68 69"
     " 45 00 00 00 00",
     1, "p", "hi", NULL},
    {"tags are checked and ignored",
     "0a 01 70 1a 12 08 00 1a 01 64 22 06 0a 01 6b 12 01 76 22 03 0a 01 6b", 1, "p", "d", NULL},
    {"unknown field in a tag", "0a 01 70 1a 0b 08 00 1a 00 22 05 0a 01 6b 18 07", 1, "p", "", NULL},
    {"a repeated scalar: the last value wins",
     "0a 01 61 0a 01 62 1a 0a 08 00 08 01 1a 01 31 1a 01 32", 1, "b", "2", NULL},
    {"non-minimal varints", "0a 01 70 1a 07 08 80 80 00 1a 80 00", 1, "p", "", NULL},
    {"empty partition key", "0a 00 1a 04 08 00 1a 00", 1, "", "", NULL},
    {"empty explicit hash key", "0a 01 70 12 00 1a 06 08 00 10 00 1a 00", 1, "p", "", ""},
    {"unused table entries", "0a 01 61 0a 01 62 12 01 30 1a 04 08 01 1a 00", 1, "b", "", NULL},
    {"two records share a key", "0a 01 70 1a 05 08 00 1a 01 61 1a 05 08 00 1a 01 62", 2, "p", "a",
     NULL},
    {"four-byte UTF-8 key", "0a 04 f0 9f 8e 89 1a 04 08 00 1a 00", 1, "\xf0\x9f\x8e\x89", "", NULL},
};

struct bad_case {
    const char *name;
    const char *hex;
    const char *why; /* a part of the error message */
    int rc;          /* expected code */
    bool raw;        /* hex is the whole Kinesis Data, not a protobuf to wrap */
};

static const struct bad_case bad_cases[] = {
    /* not aggregated at all */
    {"a JSON record", "7b 22 69 64 22 3a 31 7d", "magic", KL_ERR_INVALID, true},
    {"empty data", "", "magic", KL_ERR_INVALID, true},
    {"magic only", "f3 89 9a c2", "magic", KL_ERR_INVALID, true},
    {"magic and digest, no protobuf", "f3 89 9a c2 d4 1d 8c d9 8f 00 b2 04 e9 80 09 98 ec f8 42 7e",
     "too short", KL_ERR_INVALID, true},
    {"wrong magic",
     "f3 89 9a c3 0a 01 70 1a 04 08 00 1a 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00",
     "magic", KL_ERR_INVALID, true},
    {"bad MD5",
     "f3 89 9a c2 0a 01 70 1a 04 08 00 1a 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00",
     "MD5", KL_ERR_INVALID, true},

    /* broken protobuf behind a correct digest */
    {"truncated record", "0a 01 70 1a 04 08 00 1a", "length beyond", KL_ERR_INVALID, false},
    {"truncated inside a record", "0a 01 70 1a 03 08 00 1a", "truncated varint", KL_ERR_INVALID,
     false},
    {"truncated key", "0a 05 70", "length beyond", KL_ERR_INVALID, false},
    {"truncated tag", "0a 01 70 1a 04 08 00 1a 00 80", "truncated varint", KL_ERR_INVALID, false},
    {"varint of eleven bytes", "0a 01 70 1a 0e 08 80 80 80 80 80 80 80 80 80 80 00 1a 00",
     "longer than 64 bits", KL_ERR_INVALID, false},
    {"varint over 64 bits in ten bytes", "0a 01 70 1a 0d 08 ff ff ff ff ff ff ff ff ff 02 1a 00",
     "longer than 64 bits", KL_ERR_INVALID, false},
    {"largest index: parsed, then out of range",
     "0a 01 70 1a 0d 08 ff ff ff ff ff ff ff ff ff 01 1a 00", "partition_key_index outside",
     KL_ERR_INVALID, false},
    {"data length beyond the record", "0a 01 70 1a 06 08 00 1a 64 61 62", "length beyond",
     KL_ERR_INVALID, false},
    {"length of 2^63", "0a 01 70 1a 0d 08 00 1a 80 80 80 80 80 80 80 80 80 01", "length beyond",
     KL_ERR_INVALID, false},
    {"record length beyond the message", "0a 01 70 1a 7f 08 00 1a 00", "length beyond",
     KL_ERR_INVALID, false},
    {"partition key index out of range", "0a 01 70 1a 04 08 01 1a 00",
     "partition_key_index outside", KL_ERR_INVALID, false},
    {"no partition key table", "1a 04 08 00 1a 00", "partition_key_index outside", KL_ERR_INVALID,
     false},
    {"explicit hash key index out of range", "0a 01 70 12 01 30 1a 06 08 00 10 01 1a 00",
     "explicit_hash_key_index outside", KL_ERR_INVALID, false},
    {"explicit hash key index, no table", "0a 01 70 1a 06 08 00 10 00 1a 00",
     "explicit_hash_key_index outside", KL_ERR_INVALID, false},
    {"bad index in the last of many records",
     "0a 01 70 1a 04 08 00 1a 00 1a 04 08 00 1a 00 1a 04 08 05 1a 00",
     "partition_key_index outside", KL_ERR_INVALID, false},
    {"record without partition key index", "0a 01 70 1a 02 1a 00", "required partition_key_index",
     KL_ERR_INVALID, false},
    {"record without data", "0a 01 70 1a 02 08 00", "required data", KL_ERR_INVALID, false},
    {"tag without key", "0a 01 70 1a 09 08 00 1a 00 22 03 12 01 76", "Tag without", KL_ERR_INVALID,
     false},
    {"no user records", "0a 01 70 12 01 30", "no user records", KL_ERR_INVALID, false},
    {"group at the top level", "0a 01 70 2b 2c 1a 04 08 00 1a 00", "group", KL_ERR_INVALID, false},
    {"end group", "0a 01 70 1a 05 08 00 1a 00 2c", "group", KL_ERR_INVALID, false},
    {"wire type 6", "0a 01 70 36 1a 04 08 00 1a 00", "undefined wire", KL_ERR_INVALID, false},
    {"wire type 7", "0a 01 70 1a 05 08 00 1a 00 2f", "undefined wire", KL_ERR_INVALID, false},
    {"field number 0", "02 00 0a 01 70 1a 04 08 00 1a 00", "field number 0", KL_ERR_INVALID, false},
    {"field key over 32 bits", "0a 01 70 1a 09 08 00 1a 00 82 80 80 80 10", "longer than 32 bits",
     KL_ERR_INVALID, false},
    {"records field as a varint", "0a 01 70 18 00", "wrong wire type", KL_ERR_INVALID, false},
    {"partition key index as bytes", "0a 01 70 1a 05 0a 01 00 1a 00", "wrong wire type",
     KL_ERR_INVALID, false},
    {"data as a varint", "0a 01 70 1a 04 08 00 18 00", "wrong wire type", KL_ERR_INVALID, false},
    {"key table entry as fixed32", "0d 00 00 00 00 1a 04 08 00 1a 00", "wrong wire type",
     KL_ERR_INVALID, false},
    {"truncated fixed64", "0a 01 70 1a 04 08 00 1a 00 31 00 00", "fixed-size", KL_ERR_INVALID,
     false},
    {"truncated fixed32", "0a 01 70 1a 04 08 00 1a 00 3d 00", "fixed-size", KL_ERR_INVALID, false},
    {"overlong UTF-8 in a key", "0a 02 c0 80 1a 04 08 00 1a 00", "UTF-8", KL_ERR_INVALID, false},
    {"surrogate in a key", "0a 03 ed a0 80 1a 04 08 00 1a 00", "UTF-8", KL_ERR_INVALID, false},
    {"byte ff in a key", "0a 01 ff 1a 04 08 00 1a 00", "UTF-8", KL_ERR_INVALID, false},
    {"cut UTF-8 sequence in a key", "0a 02 e6 97 1a 04 08 00 1a 00", "UTF-8", KL_ERR_INVALID,
     false},
    {"above U+10FFFF in a hash key", "0a 01 70 12 04 f4 90 80 80 1a 04 08 00 1a 00", "UTF-8",
     KL_ERR_INVALID, false},
};

static void accepts_unusual_but_valid_records(void **state)
{
    struct kl_kpl_records out;
    (void)state;

    kl_kpl_records_init(&out);
    for (size_t i = 0; i < sizeof good_cases / sizeof good_cases[0]; i++) {
        const struct good_case *c = &good_cases[i];
        struct kl_err err;
        size_t pb_len, len;
        unsigned char *pb = from_hex(c->hex, &pb_len);
        unsigned char *buf = wrap(pb, pb_len, &len);
        const struct kl_kpl_record *r0;

        if (kl_kpl_decode(buf, len, &out, &err) != KL_OK)
            fail_msg("%s: %s", c->name, err.msg);
        check_inside(&out, buf, len);
        if (out.n != c->n)
            fail_msg("%s: %zu records, want %zu", c->name, out.n, c->n);
        r0 = &out.items[0];
        assert_int_equal(r0->partition_key_len, strlen(c->pk0));
        assert_memory_equal(r0->partition_key, c->pk0, r0->partition_key_len);
        assert_int_equal(r0->data_len, strlen(c->data0));
        assert_memory_equal(r0->data, c->data0, r0->data_len);
        if (c->ehk0 == NULL) {
            assert_null(r0->explicit_hash_key);
        } else {
            assert_non_null(r0->explicit_hash_key);
            assert_int_equal(r0->explicit_hash_key_len, strlen(c->ehk0));
            assert_memory_equal(r0->explicit_hash_key, c->ehk0, strlen(c->ehk0));
        }
        free(pb);
        free(buf);
    }
    kl_kpl_records_free(&out);
}

static void refuses_broken_records(void **state)
{
    static const unsigned char earlier_pb[] = {0x0a, 0x01, 0x73, 0x1a, 0x05,
                                               0x08, 0x00, 0x1a, 0x01, 0x73};
    size_t earlier_len;
    unsigned char *earlier = wrap(earlier_pb, sizeof earlier_pb, &earlier_len);
    struct kl_kpl_records out;
    (void)state;

    kl_kpl_records_init(&out);
    for (size_t i = 0; i < sizeof bad_cases / sizeof bad_cases[0]; i++) {
        const struct bad_case *c = &bad_cases[i];
        struct kl_err err = {0};
        size_t pb_len, len;
        unsigned char *pb = from_hex(c->hex, &pb_len);
        unsigned char *buf = c->raw ? exact_copy(pb, pb_len) : wrap(pb, pb_len, &len);
        const struct kl_kpl_record *before;
        int rc;

        if (c->raw)
            len = pb_len;
        /* `out` holds an earlier result: a failure must leave it alone */
        assert_int_equal(kl_kpl_decode(earlier, earlier_len, &out, NULL), KL_OK);
        before = out.items;
        rc = kl_kpl_decode(buf, len, &out, &err);
        if (rc != c->rc)
            fail_msg("%s: rc %d (%s), want %d", c->name, rc, rc ? err.msg : "ok", c->rc);
        assert_int_equal(err.code, c->rc);
        if (strstr(err.msg, c->why) == NULL)
            fail_msg("%s: message \"%s\" lacks \"%s\"", c->name, err.msg, c->why);
        assert_int_equal(out.n, 1);
        assert_ptr_equal(out.items, before);
        assert_memory_equal(out.items[0].data, "s", 1);
        /* the code alone, without a detail record */
        assert_int_equal(kl_kpl_decode(buf, len, &out, NULL), c->rc);
        free(pb);
        free(buf);
    }
    kl_kpl_records_free(&out);
    free(earlier);
}

static void recognises_the_magic_and_length(void **state)
{
    unsigned char buf[32] = {0xF3, 0x89, 0x9A, 0xC2};
    (void)state;

    assert_false(kl_kpl_is_aggregated(NULL, 0));
    for (size_t len = 0; len <= 20; len++)
        assert_false(kl_kpl_is_aggregated(buf, len));
    assert_true(kl_kpl_is_aggregated(buf, 21));
    assert_true(kl_kpl_is_aggregated(buf, sizeof buf));
    for (size_t i = 0; i < 4; i++) {
        buf[i] ^= 0x01;
        assert_false(kl_kpl_is_aggregated(buf, sizeof buf));
        buf[i] ^= 0x01;
    }
    assert_false(kl_kpl_is_aggregated((const unsigned char *)"{\"id\":1,\"name\":\"msg-1\"}", 24));
}

/* ---- caps ---- */

struct grow {
    unsigned char *p;
    size_t n, cap;
};

static void put(struct grow *g, const void *bytes, size_t n)
{
    if (g->n + n > g->cap) {
        g->cap = (g->n + n) * 2;
        g->p = realloc(g->p, g->cap);
        assert_non_null(g->p);
    }
    memcpy(g->p + g->n, bytes, n);
    g->n += n;
}

static int decode_pb(const struct grow *g, struct kl_kpl_records *out, struct kl_err *err)
{
    size_t len;
    unsigned char *buf = wrap(g->p, g->n, &len);
    int rc = kl_kpl_decode(buf, len, out, err);
    free(buf);
    return rc;
}

static void caps_on_records_and_keys(void **state)
{
    static const unsigned char key[] = {0x0a, 0x01, 0x70};
    static const unsigned char empty_key[] = {0x0a, 0x00};
    static const unsigned char record[] = {0x1a, 0x04, 0x08, 0x00, 0x1a, 0x00};
    struct grow g = {0};
    struct kl_kpl_records out;
    struct kl_err err;
    (void)state;

    kl_kpl_records_init(&out);
    put(&g, key, sizeof key);
    for (size_t i = 0; i < KL_KPL_MAX_RECORDS; i++)
        put(&g, record, sizeof record);
    assert_int_equal(decode_pb(&g, &out, &err), KL_OK);
    assert_int_equal(out.n, KL_KPL_MAX_RECORDS);
    put(&g, record, sizeof record);
    assert_int_equal(decode_pb(&g, &out, &err), KL_ERR_LIMIT);
    assert_non_null(strstr(err.msg, "KL_KPL_MAX_RECORDS"));
    assert_int_equal(out.n, KL_KPL_MAX_RECORDS); /* untouched */

    g.n = 0;
    for (size_t i = 0; i < KL_KPL_MAX_KEYS; i++)
        put(&g, empty_key, sizeof empty_key);
    put(&g, record, sizeof record);
    assert_int_equal(decode_pb(&g, &out, &err), KL_OK);
    assert_int_equal(out.n, 1);
    put(&g, empty_key, sizeof empty_key);
    assert_int_equal(decode_pb(&g, &out, &err), KL_ERR_LIMIT);
    assert_non_null(strstr(err.msg, "KL_KPL_MAX_KEYS"));

    kl_kpl_records_free(&out);
    free(g.p);
}

/* ---- mutations ---- */

struct fixture {
    unsigned char *data;
    size_t len;
};

static uint64_t rng_state = 0x9E3779B97F4A7C15ULL;

static uint64_t rng(void)
{
    /* xorshift64*: a fixed seed, so a failure reproduces */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1DULL;
}

static size_t load_fixtures(struct fixture *f, size_t max)
{
    static const char *const names[] = {"ascii", "binary", "empty",  "explicit-hash-keys",
                                        "many",  "single", "nested", "unicode"};
    size_t n = 0;

    for (size_t i = 0; i < sizeof names / sizeof names[0] && n < max; i++) {
        char rel[128];
        snprintf(rel, sizeof rel, "kpl/%s.bin", names[i]);
        f[n].data = (unsigned char *)kl_test_read_fixture(rel, &f[n].len);
        n++;
    }
    return n;
}

/* One random edit of `b` (length *len, capacity cap). */
static void mutate(unsigned char *b, size_t *len, size_t cap)
{
    static const unsigned char interesting[] = {0x00, 0x01, 0x7f, 0x80, 0xff, 0x08,
                                                0x0a, 0x12, 0x1a, 0x22, 0x2b, 0x2c};
    size_t n = *len;
    size_t at = n > 0 ? (size_t)(rng() % n) : 0;

    switch (rng() % 7) {
    case 0: /* flip a bit */
        if (n > 0)
            b[at] ^= (unsigned char)(1u << (rng() % 8));
        break;
    case 1: /* a random byte */
        if (n > 0)
            b[at] = (unsigned char)rng();
        break;
    case 2: /* a byte that means something to a protobuf parser */
        if (n > 0)
            b[at] = interesting[rng() % sizeof interesting];
        break;
    case 3: /* truncate */
        *len = at;
        break;
    case 4: /* delete a byte */
        if (n > 0) {
            memmove(b + at, b + at + 1, n - at - 1);
            *len = n - 1;
        }
        break;
    case 5: /* insert a byte */
        if (n < cap) {
            memmove(b + at + 1, b + at, n - at);
            b[at] = (unsigned char)rng();
            *len = n + 1;
        }
        break;
    default: /* copy a span over another place */
        if (n > 1) {
            size_t from = (size_t)(rng() % n), span = 1 + (size_t)(rng() % 16);
            if (span > n - from)
                span = n - from;
            if (span > n - at)
                span = n - at;
            memmove(b + at, b + from, span);
        }
        break;
    }
}

/* `digest`: re-compute the MD5 after mutating, so the edit reaches the
 * protobuf decoder instead of stopping at the digest check. */
static void mutation_run(int iterations, bool digest, size_t *ok_out, size_t *invalid_out)
{
    struct fixture fx[8];
    size_t n_fx = load_fixtures(fx, 8);
    struct kl_kpl_records out;
    size_t ok = 0, invalid = 0;
    unsigned long sink = 0;

    kl_kpl_records_init(&out);
    for (int it = 0; it < iterations; it++) {
        const struct fixture *f = &fx[rng() % n_fx];
        size_t cap = f->len + 64, len, pb_len;
        unsigned char *work = malloc(cap);
        unsigned char *buf;
        struct kl_err err;
        int rc, edits = 1 + (int)(rng() % 4);

        assert_non_null(work);
        if (digest) {
            /* mutate the protobuf only, then wrap it again */
            pb_len = f->len - 20;
            memcpy(work, f->data + 4, pb_len);
            for (int e = 0; e < edits; e++)
                mutate(work, &pb_len, cap);
            buf = wrap(work, pb_len, &len);
        } else {
            len = f->len;
            memcpy(work, f->data, len);
            for (int e = 0; e < edits; e++)
                mutate(work, &len, cap);
            buf = exact_copy(work, len);
        }
        rc = kl_kpl_decode(buf, len, &out, &err);
        if (rc == KL_OK) {
            sink += check_inside(&out, buf, len);
            ok++;
        } else if (rc == KL_ERR_INVALID) {
            invalid++;
        } else {
            fail_msg("iteration %d: unexpected code %d: %s", it, rc, err.msg);
        }
        free(buf);
        free(work);
    }
    kl_kpl_records_free(&out);
    for (size_t i = 0; i < n_fx; i++)
        free(fx[i].data);
    (void)sink;
    *ok_out = ok;
    *invalid_out = invalid;
}

static void mutations_never_crash(void **state)
{
    size_t ok, invalid;
    (void)state;

    /* raw mutations: nearly all end at the digest, some edits miss it */
    mutation_run(4000, false, &ok, &invalid);
    print_message("raw mutations: %zu decoded, %zu refused\n", ok, invalid);
    assert_int_equal(ok + invalid, 4000);
    assert_true(invalid > 3000);

    /* digest fixed up: the protobuf decoder sees every edit */
    mutation_run(20000, true, &ok, &invalid);
    print_message("re-digested mutations: %zu decoded, %zu refused\n", ok, invalid);
    assert_int_equal(ok + invalid, 20000);
    /* both outcomes are common, so the run explores past the first byte */
    assert_true(ok > 1000);
    assert_true(invalid > 1000);
}

/* ---- throughput (KL_KPL_BENCH=1) ---- */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void throughput(void **state)
{
    static const char *const names[] = {"many", "ascii", "single"};
    (void)state;

    if (getenv("KL_KPL_BENCH") == NULL)
        skip();
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char rel[64];
        size_t len, user = 0, calls = 0;
        char *raw;
        struct kl_kpl_records out;
        double t0, dt;

        snprintf(rel, sizeof rel, "kpl/%s.bin", names[i]);
        raw = kl_test_read_fixture(rel, &len);
        kl_kpl_records_init(&out);
        t0 = now_s();
        do {
            for (int k = 0; k < 1000; k++) {
                assert_int_equal(kl_kpl_decode((unsigned char *)raw, len, &out, NULL), KL_OK);
                user += out.n;
                calls++;
            }
            dt = now_s() - t0;
        } while (dt < 1.0);
        printf("kpl throughput %-7s %6zu bytes %4zu records/aggregate: %.0f aggregates/s, "
               "%.0f user records/s, %.0f MB/s\n",
               names[i], len, out.n, (double)calls / dt, (double)user / dt,
               (double)calls * (double)len / dt / 1e6);
        kl_kpl_records_free(&out);
        free(raw);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(decodes_reference_aggregates),
        cmocka_unit_test(accepts_unusual_but_valid_records),
        cmocka_unit_test(refuses_broken_records),
        cmocka_unit_test(recognises_the_magic_and_length),
        cmocka_unit_test(caps_on_records_and_keys),
        cmocka_unit_test(mutations_never_crash),
        cmocka_unit_test(throughput),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
