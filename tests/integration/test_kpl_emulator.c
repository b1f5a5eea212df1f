/*
 * KPL de-aggregation end to end: user records aggregated by aws-kinesis-agg
 * and put with the AWS JS SDK (tests/tools/put-kpl.js) into a real emulator
 * come back through our client and kl_kpl_decode, each exactly once, with its
 * partition key, explicit hash key and data, in order within its aggregate;
 * plain records and records with the KPL magic but a wrong MD5 come through
 * as they are; user records whose hash key lies outside the shard they were
 * read from are kept (the KCL would drop them).
 */
#include "tests/support/test_support.h"
#include "core/kinesis/client.h"
#include "core/kinesis/conn.h"
#include "core/kinesis/kpl.h"
#include "core/util/env.h"
#include "core/util/err.h"

#include <cjson/cJSON.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct target {
    const char *name;
    const char *url_env;
};

static const struct target kinesalite = {"kinesalite", "KL_TEST_KINESALITE_URL"};
static const struct target kinesis_local = {"kinesis-local", "KL_TEST_KINESIS_LOCAL_URL"};

static void session_open(struct kl_test_kinesis *s, const struct target *t)
{
    kl_test_kinesis_open(s, t->url_env, NULL, NULL);
}

/* ---- 128-bit hash keys, to tell whether a user record belongs to a shard ---- */

struct u128 {
    uint32_t limb[4]; /* little-endian 32-bit limbs */
};

static struct u128 u128_from_dec(const char *s, size_t n)
{
    struct u128 v = {{0, 0, 0, 0}};

    for (size_t i = 0; i < n; i++) {
        uint64_t carry = (uint64_t)(s[i] - '0');
        assert_true(s[i] >= '0' && s[i] <= '9');
        for (int k = 0; k < 4; k++) {
            uint64_t x = (uint64_t)v.limb[k] * 10 + carry;
            v.limb[k] = (uint32_t)x;
            carry = x >> 32;
        }
        assert_int_equal(carry, 0); /* below 2^128 */
    }
    return v;
}

/* The hash key Kinesis routes by: the explicit one, else MD5 of the partition key. */
static struct u128 effective_hash_key(const struct kl_kpl_record *r)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    struct u128 v;

    if (r->explicit_hash_key != NULL)
        return u128_from_dec(r->explicit_hash_key, r->explicit_hash_key_len);
    assert_int_equal(
        EVP_Digest(r->partition_key, r->partition_key_len, md, &md_len, EVP_md5(), NULL), 1);
    for (size_t k = 0; k < 4; k++)
        v.limb[3 - k] = (uint32_t)md[4 * k] << 24 | (uint32_t)md[4 * k + 1] << 16 |
                        (uint32_t)md[4 * k + 2] << 8 | md[4 * k + 3];
    return v;
}

static int u128_cmp(const struct u128 *a, const struct u128 *b)
{
    for (int k = 3; k >= 0; k--)
        if (a->limb[k] != b->limb[k])
            return a->limb[k] < b->limb[k] ? -1 : 1;
    return 0;
}

/* ---- what came back ---- */

struct tally {
    int *seen; /* by user record id */
    int count;
    size_t aggregated, plain, decoys, users_in_aggregates;
    size_t kept_outside_shard; /* user records a KCL would have dropped */
};

static bool json_string_is(const cJSON *doc, const char *field, const char *s, size_t n)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(doc, field);
    if (s == NULL)
        return cJSON_IsNull(v);
    return cJSON_IsString(v) && strlen(v->valuestring) == n && memcmp(v->valuestring, s, n) == 0;
}

/* A user record's JSON names its own id and keys: check them, count the id.
 * Returns the id. */
static int check_user_record(struct tally *t, const unsigned char *data, size_t len, const char *pk,
                             size_t pk_len, const char *ehk, size_t ehk_len, bool aggregated)
{
    cJSON *doc = cJSON_ParseWithLength((const char *)data, len);
    const cJSON *id, *agg;
    int v;

    if (doc == NULL)
        fail_msg("user record is not JSON: %.*s", (int)len, (const char *)data);
    id = cJSON_GetObjectItemCaseSensitive(doc, "id");
    agg = cJSON_GetObjectItemCaseSensitive(doc, "agg");
    assert_true(cJSON_IsNumber(id));
    v = id->valueint;
    assert_true(v >= 0 && v < t->count);
    t->seen[v]++;
    if (!json_string_is(doc, "pk", pk, pk_len))
        fail_msg("record %d: partition key %.*s differs from its body", v, (int)pk_len, pk);
    /* a plain record's explicit hash key is not returned by GetRecords */
    if (aggregated && !json_string_is(doc, "ehk", ehk, ehk_len))
        fail_msg("record %d: explicit hash key differs from its body", v);
    assert_true(cJSON_IsBool(agg));
    assert_int_equal(cJSON_IsTrue(agg), aggregated);
    cJSON_Delete(doc);
    return v;
}

static void take_record(struct tally *t, const struct kl_record *r, const struct kl_shard *shard,
                        struct kl_kpl_records *users)
{
    struct u128 lo = u128_from_dec(shard->starting_hash_key, strlen(shard->starting_hash_key));
    struct u128 hi = u128_from_dec(shard->ending_hash_key, strlen(shard->ending_hash_key));
    struct kl_err err;
    int rc, last_id = -1;

    if (!kl_kpl_is_aggregated(r->data, r->data_len)) {
        check_user_record(t, r->data, r->data_len, r->partition_key, strlen(r->partition_key), NULL,
                          0, false);
        t->plain++;
        return;
    }
    rc = kl_kpl_decode(r->data, r->data_len, users, &err);
    if (rc == KL_ERR_INVALID) {
        /* delivered as it is: the decoy's own bytes */
        assert_non_null(strstr(err.msg, "MD5"));
        assert_memory_equal(r->data + 4, "{\"decoy\":", 9);
        t->decoys++;
        return;
    }
    if (rc != KL_OK)
        fail_msg("kl_kpl_decode: %s", err.msg);
    for (size_t i = 0; i < users->n; i++) {
        const struct kl_kpl_record *u = &users->items[i];
        struct u128 key = effective_hash_key(u);
        int id;

        /* zero-copy: everything points into the record's own data */
        assert_true(u->data >= r->data && u->data + u->data_len <= r->data + r->data_len);
        id = check_user_record(t, u->data, u->data_len, u->partition_key, u->partition_key_len,
                               u->explicit_hash_key, u->explicit_hash_key_len, true);
        assert_true(id > last_id); /* sub-sequence order is the order they were put in */
        last_id = id;
        if (u128_cmp(&key, &lo) < 0 || u128_cmp(&key, &hi) > 0)
            t->kept_outside_shard++;
    }
    t->aggregated++;
    t->users_in_aggregates += users->n;
}

/* Reads every shard from TRIM_HORIZON to its tip. */
static void read_all(struct kl_kinesis *k, const char *stream, struct tally *t)
{
    struct kl_shard_list shards = {0};
    struct kl_kpl_records users;
    struct kl_err err;

    kl_kpl_records_init(&users);
    if (kl_kinesis_list_shards(k, stream, &shards, &err) != KL_OK)
        fail_msg("ListShards: %s", err.msg);
    for (size_t i = 0; i < shards.n; i++) {
        struct kl_iterator_start start = {KL_ITER_TRIM_HORIZON, NULL, 0};
        char *it = NULL;
        int empty = 0;

        if (kl_kinesis_get_shard_iterator(k, NULL, stream, shards.shards[i].id, &start, &it, &err))
            fail_msg("GetShardIterator %s: %s", shards.shards[i].id, err.msg);
        while (it != NULL && empty < 2) {
            struct kl_record_batch b;
            kl_record_batch_init(&b);
            if (kl_kinesis_get_records(k, NULL, it, 100, &b, &err) != KL_OK)
                fail_msg("GetRecords %s: %s", shards.shards[i].id, err.msg);
            free(it);
            it = b.next_iterator ? strdup(b.next_iterator) : NULL;
            for (size_t r = 0; r < b.n; r++)
                take_record(t, &b.records[r], &shards.shards[i], &users);
            empty = (b.n == 0 && b.millis_behind <= 0) ? empty + 1 : 0;
            kl_record_batch_free(&b);
        }
        free(it);
    }
    kl_shard_list_free(&shards);
    kl_kpl_records_free(&users);
}

static long summary_int(const cJSON *doc, const char *field)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(doc, field);
    if (!cJSON_IsNumber(v))
        fail_msg("put-kpl.js summary lacks %s", field);
    return (long)v->valuedouble;
}

static void kpl_round_trip(const struct target *target, int shards, int count, int per,
                           int plain_every, int decoys)
{
    struct kl_test_kinesis s;
    struct tally t = {0};
    struct kl_err err;
    char stream[128];
    char *out = NULL;
    cJSON *summary;
    int rc;

    t.count = count;
    t.seen = calloc((size_t)count, sizeof *t.seen);
    assert_non_null(t.seen);
    session_open(&s, target);
    snprintf(stream, sizeof stream, "%s", kl_test_unique("kl-it-kpl"));
    if (kl_kinesis_create_stream(s.conn.client, stream, shards, &err) != KL_OK)
        fail_msg("CreateStream on %s: %s", target->name, err.msg);

    rc = kl_test_run(&out,
                     "node '%s/put-kpl.js' --endpoint '%s' --stream '%s' --count %d --per %d "
                     "--plain-every %d --decoys %d --access-key '%s'",
                     kl_test_require_env("KL_TEST_NODE_TOOLS"), s.url, stream, count, per,
                     plain_every, decoys, s.access_key);
    if (rc != 0)
        fail_msg("put-kpl.js exited %d: %s", rc, out ? out : "");
    summary = cJSON_Parse(out);
    assert_non_null(summary);

    read_all(s.conn.client, stream, &t);
    for (int i = 0; i < count; i++)
        if (t.seen[i] != 1)
            fail_msg("%s: user record %d seen %d times", target->name, i, t.seen[i]);
    assert_int_equal(t.aggregated, summary_int(summary, "aggregated_records"));
    assert_int_equal(t.users_in_aggregates, summary_int(summary, "users_in_aggregates"));
    assert_int_equal(t.plain, summary_int(summary, "plain_records"));
    assert_int_equal(t.decoys, (size_t)decoys);
    assert_int_equal(t.users_in_aggregates + t.plain, (size_t)count);
    print_message("%s: %zu aggregated records -> %zu user records, %zu plain, %zu decoys; "
                  "%zu user records kept outside their shard's hash range\n",
                  target->name, t.aggregated, t.users_in_aggregates, t.plain, t.decoys,
                  t.kept_outside_shard);
    if (shards > 1)
        assert_true(t.kept_outside_shard > 0);

    kl_kinesis_delete_stream(s.conn.client, stream, &err);
    cJSON_Delete(summary);
    free(out);
    free(t.seen);
    kl_test_kinesis_close(&s);
}

static void kinesalite_kpl_round_trip(void **state)
{
    (void)state;
    kpl_round_trip(&kinesalite, 4, 3000, 25, 10, 3);
}

static void kinesalite_large_aggregates(void **state)
{
    (void)state;
    /* 1000 user records to an aggregate: hash key indexes above 127 take
     * two-byte varints, and pages carry few, big records */
    kpl_round_trip(&kinesalite, 2, 4000, 1000, 0, 1);
}

static void kinesis_local_kpl_round_trip(void **state)
{
    (void)state;
    kpl_round_trip(&kinesis_local, 2, 600, 20, 7, 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(kinesalite_kpl_round_trip),
        cmocka_unit_test(kinesalite_large_aggregates),
        cmocka_unit_test(kinesis_local_kpl_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
