/*
 * Integration, PostgreSQL: a dataset dlt 0.5.4 wrote (the pg_dump of
 * tests/fixtures/dlt-0.5.4/kinesis_dataset.sql, loaded into a database of
 * its own) is read and continued. read_state reports dlt's positions, the
 * ones records.jsonl says it loaded up to; its schema loads. Then end to
 * end: the fixture's records go into a kinesalite stream, dlt's state is
 * pointed at that stream's sequences, more records arrive, and
 * `kinesis-loader load` loads exactly those, no row twice; the state row
 * it leaves is one dlt restores, continuing dlt's (version + 1, dlt's
 * hash, dlt's other resource state untouched).
 */
#include "tests/support/test_support.h"
#include "tests/support/dlt_fixture.h"
#include "core/dest/dest.h"
#include "core/dest/pg.h"
#include "core/kinesis/client.h"
#include "core/kinesis/position.h"
#include "core/normalize/schema.h"
#include "core/util/base64.h"
#include "core/util/err.h"

#include <cjson/cJSON.h>
#include <libpq-fe.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#define MARKER "\xef\x80\xa7"
#define ROW3_LOAD "1796299267.7698898"

static char db_name[64];
static char db_url[1024];
static PGconn *db;

/* KL_TEST_PG_URL with another database. */
static void url_for(const char *name, char *out, size_t cap)
{
    const char *url = kl_test_require_env("KL_TEST_PG_URL");
    const char *q = strchr(url, '?'), *slash = NULL;
    for (const char *p = url; *p != '\0' && (q == NULL || p < q); p++)
        if (*p == '/')
            slash = p;
    assert_non_null(slash);
    snprintf(out, cap, "%.*s/%s%s", (int)(slash - url), url, name, q != NULL ? q : "");
}

static PGconn *connect_to(const char *url)
{
    PGconn *c = PQconnectdb(url);
    if (c == NULL || PQstatus(c) != CONNECTION_OK)
        fail_msg("cannot connect to %s: %s", url, c != NULL ? PQerrorMessage(c) : "no memory");
    PQclear(PQexec(c, "SET client_min_messages = warning"));
    return c;
}

static void exec_ok(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    if (r == NULL ||
        (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK))
        fail_msg("%.200s: %s", sql, PQerrorMessage(c));
    PQclear(r);
}

/* First column of the first row (malloc'ed), NULL for none. */
static char *scalar(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *scalar(const char *fmt, ...)
{
    char sql[4096];
    va_list ap;
    PGresult *r;
    char *v = NULL;

    va_start(ap, fmt);
    vsnprintf(sql, sizeof sql, fmt, ap);
    va_end(ap);
    r = PQexec(db, sql);
    if (r == NULL || PQresultStatus(r) != PGRES_TUPLES_OK)
        fail_msg("%s: %s", sql, PQerrorMessage(db));
    if (PQntuples(r) > 0 && !PQgetisnull(r, 0, 0))
        v = strdup(PQgetvalue(r, 0, 0));
    PQclear(r);
    return v;
}

static long long scalar_ll(const char *sql)
{
    char *v = scalar("%s", sql);
    long long n;
    assert_non_null(v);
    n = atoll(v);
    free(v);
    return n;
}

/* A fresh database holding dlt's dataset, for each test. */
static int setup(void **state)
{
    PGconn *admin = connect_to(kl_test_require_env("KL_TEST_PG_URL"));
    char sql[256], *dump;
    (void)state;

    snprintf(db_name, sizeof db_name, "kl_dlt_%ld_%d", (long)getpid(), rand() % 100000);
    snprintf(sql, sizeof sql, "CREATE DATABASE %s", db_name);
    exec_ok(admin, sql);
    PQfinish(admin);
    url_for(db_name, db_url, sizeof db_url);
    db = connect_to(db_url);
    dump = kl_test_read_fixture("dlt-0.5.4/kinesis_dataset.sql", NULL);
    exec_ok(db, dump);
    free(dump);
    return 0;
}

static int teardown(void **state)
{
    PGconn *admin;
    char sql[256];
    (void)state;

    if (db != NULL)
        PQfinish(db);
    db = NULL;
    if (getenv("KL_KEEP_TEST_DATA") != NULL && strcmp(getenv("KL_KEEP_TEST_DATA"), "1") == 0)
        return 0;
    admin = connect_to(kl_test_require_env("KL_TEST_PG_URL"));
    snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s WITH (FORCE)", db_name);
    exec_ok(admin, sql);
    PQfinish(admin);
    return 0;
}

static int pk_index(const char *pk)
{
    return atoi(pk + 3);
}

/* read_state on dlt's dataset: the positions of its newest completed load,
 * which are the last records it loaded per shard; its schema loads. */
static void test_reads_dlts_dataset(void **state)
{
    static struct kl_dlt_record recs[64];
    size_t n = kl_dlt_records_read("dlt-0.5.4", recs, 64);
    struct kl_err err = {0};
    struct kl_dest *d = kl_dest_pg_create(db_url, NULL, &err);
    struct kl_dest_state st;
    struct kl_schema *s = NULL;
    char *json = NULL;
    int64_t version = 0;
    (void)state;

    if (d == NULL)
        fail_msg("%s", err.msg);
    kl_dest_state_init(&st);
    if (kl_dest_read_state(d, "kinesis", "kinesis_pipeline", "orders", &st, &err) != KL_OK)
        fail_msg("read_state: %s", err.msg);
    assert_int_equal(st.origin, KL_STATE_DLT);
    assert_string_equal(st.dlt_load_id, ROW3_LOAD);
    assert_int_equal(st.dlt_version, 3);
    assert_int_equal(st.n_checkpoints, 2);
    for (size_t k = 0; k < st.n_checkpoints; k++) {
        const struct kl_dlt_record *last = NULL;
        for (size_t i = 0; i < n; i++)
            if (strcmp(recs[i].shard_id, st.checkpoints[k].position.shard_id) == 0 &&
                (last == NULL || kl_seq_cmp(recs[i].sequence, last->sequence) > 0))
                last = &recs[i];
        assert_non_null(last);
        assert_string_equal(st.checkpoints[k].position.sequence, last->sequence);
        assert_int_equal(st.checkpoints[k].fencing_token, 0);
        assert_int_equal(st.origins[k], KL_STATE_DLT);
    }
    assert_true(st.has_last_run);
    assert_int_equal(st.last_run_origin, KL_STATE_DLT);

    assert_int_equal(kl_dest_load_schema(d, "kinesis", KL_SCHEMA_NAME, &json, &version, &err),
                     KL_OK);
    assert_non_null(json);
    assert_int_equal(version, 2);
    assert_int_equal(kl_schema_from_json(json, strlen(json), &s, &err), KL_OK);
    assert_int_equal(s->n_tables, 3);
    kl_schema_destroy(s);
    free(json);
    kl_dest_state_free(&st);
    kl_dest_destroy(d);
    kl_dlt_records_free(recs, n);
}

/* ---- the state column, decoded and encoded here with zlib itself ---- */

static char *inflate_column(const char *b64)
{
    size_t n = strlen(b64), zlen = 0;
    unsigned char *z = malloc(kl_base64_decoded_max(n));
    uLongf cap = 1 << 20;
    char *out = malloc(cap + 1);

    assert_int_equal(kl_base64_decode(b64, n, z, &zlen), 0);
    assert_int_equal(uncompress((Bytef *)out, &cap, z, zlen), Z_OK);
    out[cap] = '\0';
    free(z);
    return out;
}

static char *deflate_column(const char *json)
{
    uLongf zlen = compressBound(strlen(json));
    unsigned char *z = malloc(zlen);
    char *out;

    assert_int_equal(compress2(z, &zlen, (const Bytef *)json, strlen(json), 9), Z_OK);
    out = malloc(kl_base64_encoded_size(zlen));
    kl_base64_encode(z, zlen, out, true);
    free(z);
    return out;
}

/* Replaces the first `from` in `s` by `to` (the result malloc'ed). */
static char *replace(const char *s, const char *from, const char *to)
{
    const char *p = strstr(s, from);
    char *out;
    assert_non_null(p);
    out = malloc(strlen(s) - strlen(from) + strlen(to) + 1);
    memcpy(out, s, (size_t)(p - s));
    strcpy(out + (p - s), to);
    strcat(out, p + strlen(from));
    return out;
}

/* dlt's version hash, computed here: sha3-256 of the compact JSON without
 * the version members (cJSON prints it as dlt does: compact, raw UTF-8,
 * keys in order). */
static void dlt_hash(const char *json, char out[64])
{
    cJSON *doc = cJSON_Parse(json);
    char *text;
    unsigned char md[32];
    unsigned int len = 0;

    assert_non_null(doc);
    cJSON_DeleteItemFromObjectCaseSensitive(doc, "_state_version");
    cJSON_DeleteItemFromObjectCaseSensitive(doc, "_state_engine_version");
    cJSON_DeleteItemFromObjectCaseSensitive(doc, "_version_hash");
    cJSON_DeleteItemFromObjectCaseSensitive(doc, "_local");
    text = cJSON_PrintUnformatted(doc);
    assert_int_equal(EVP_Digest(text, strlen(text), md, &len, EVP_sha3_256(), NULL), 1);
    kl_base64_encode(md, 32, out, true);
    free(text);
    cJSON_Delete(doc);
}

/* A column of the state row dlt restores now (its own query). */
static char *restorable(const char *column)
{
    char *v = scalar("SELECT s.%s FROM kinesis._dlt_pipeline_state AS s JOIN kinesis._dlt_loads"
                     " AS l ON l.load_id = s._dlt_load_id WHERE s.pipeline_name ="
                     " 'kinesis_pipeline' AND l.status = 0 ORDER BY l.load_id DESC LIMIT 1",
                     column);
    assert_non_null(v);
    return v;
}

/* The put records' positions, by partition key index. */
struct put {
    char shard_id[KL_SHARD_ID_MAX];
    char sequence[KL_SEQ_MAX];
};

static void put_all(struct kl_kinesis *k, const char *stream, struct kl_put_entry *e, size_t n,
                    struct put *out)
{
    struct kl_put_result_entry *r = calloc(n, sizeof *r);
    struct kl_err err = {0};

    if (kl_kinesis_put_records(k, stream, e, n, r, &err) != KL_OK)
        fail_msg("PutRecords: %s", err.msg);
    for (size_t i = 0; i < n; i++) {
        snprintf(out[i].shard_id, sizeof out[i].shard_id, "%s", r[i].shard_id);
        snprintf(out[i].sequence, sizeof out[i].sequence, "%s", r[i].sequence);
    }
    free(r);
}

/* The last of `puts[0..n)` in a shard. */
static const struct put *last_in(const struct put *puts, size_t n, const char *shard)
{
    const struct put *last = NULL;
    for (size_t i = 0; i < n; i++)
        if (strcmp(puts[i].shard_id, shard) == 0 &&
            (last == NULL || kl_seq_cmp(puts[i].sequence, last->sequence) > 0))
            last = &puts[i];
    assert_non_null(last);
    return last;
}

static void test_continues_dlt_end_to_end(void **state)
{
    static struct kl_dlt_record recs[64];
    static struct put puts[65];
    static char bodies[10][160];
    size_t n = kl_dlt_records_read("dlt-0.5.4", recs, 64);
    struct kl_test_kinesis ks;
    struct kl_put_entry e[55];
    struct kl_err err = {0};
    char stream[96], env[2048], *out = NULL, *json, *dlt_orders, *res, *sql;
    char key_buf[65][16];
    (void)state;

    assert_int_equal(n, 55);
    kl_test_kinesis_open(&ks, "KL_TEST_KINESALITE_URL", NULL, NULL);
    snprintf(stream, sizeof stream, "%s", kl_test_unique("kl-dlt-orders"));
    if (kl_kinesis_create_stream(ks.conn.client, stream, 2, &err) != KL_OK)
        fail_msg("CreateStream: %s", err.msg);

    /* dlt's 55 records, in the order they were put (pk-0 .. pk-54) */
    for (size_t i = 0; i < n; i++) {
        int k = pk_index(recs[i].partition_key);
        e[k].data = recs[i].data;
        e[k].data_len = strlen(recs[i].data);
        e[k].partition_key = recs[i].partition_key;
        e[k].explicit_hash_key = NULL;
    }
    put_all(ks.conn.client, stream, e, 55, puts);
    for (size_t i = 0; i < n; i++) /* the same key lands in the same shard */
        assert_string_equal(puts[pk_index(recs[i].partition_key)].shard_id, recs[i].shard_id);

    /* dlt's state row 3, pointed at this stream: its `orders` resource
     * stays, a copy for our stream holds this stream's sequences of the
     * same records (pk-50 in shard 0, pk-54 in shard 1) */
    {
        char *b64 = scalar(
            "SELECT state FROM kinesis._dlt_pipeline_state WHERE _dlt_load_id = '%s'", ROW3_LOAD);
        char *doc = inflate_column(b64), *ours, *mapped, *tmp, *col;
        const char *start = strstr(doc, "\"resources\":{\"orders\":");
        size_t len = strlen(doc), head;
        assert_non_null(start);
        head = (size_t)(start - doc) + strlen("\"resources\":{\"orders\":");
        assert_string_equal(doc + len - 4, "}}}}");
        dlt_orders = strndup(doc + head, len - 4 - head); /* the resource object */
        tmp = replace(dlt_orders, "49680798300199113480921306734029089196626947863167893506",
                      puts[50].sequence);
        mapped = replace(tmp, "49680798300221414226119837357169415989079981595499167762",
                         puts[54].sequence);
        free(tmp);
        ours = malloc(len + strlen(mapped) + strlen(stream) + 16);
        sprintf(ours, "%.*s%s,\"%s\":%s}}}}", (int)head, doc, dlt_orders, stream, mapped);
        col = deflate_column(ours);
        sql = malloc(strlen(col) + 256);
        sprintf(sql,
                "UPDATE kinesis._dlt_pipeline_state SET state = '%s' WHERE _dlt_load_id = '%s'",
                col, ROW3_LOAD);
        exec_ok(db, sql);
        free(sql);
        free(col);
        free(ours);
        free(mapped);
        free(doc);
        free(b64);
    }

    /* ten more records after dlt's run */
    for (int i = 0; i < 10; i++) {
        int id = 55 + i;
        snprintf(key_buf[id], sizeof key_buf[id], "pk-%d", id);
        snprintf(bodies[i], sizeof bodies[i],
                 "{\"id\":%d,\"user\":{\"name\":\"user%d\",\"tags\":[\"a\"]},\"amount\":%d.5,"
                 "\"ts\":\"2024-01-01T00:01:%02dZ\",\"items\":[{\"sku\":\"x%d\",\"qty\":1}]}",
                 id, id, id, i, i);
        e[i].data = bodies[i];
        e[i].data_len = strlen(bodies[i]);
        e[i].partition_key = key_buf[id];
        e[i].explicit_hash_key = NULL;
    }
    put_all(ks.conn.client, stream, e, 10, puts + 55);

    /* kinesis-loader, without initial_at_timestamp (LATEST for shards
     * without a position), into dlt's dataset and table */
    snprintf(env, sizeof env,
             "AWS_ENDPOINT_URL_KINESIS='%s' AWS_ACCESS_KEY_ID=AKIDDLT AWS_SECRET_ACCESS_KEY=x "
             "AWS_REGION=us-east-1 DATABASE_URL='%s'",
             kl_test_require_env("KL_TEST_KINESALITE_URL"), db_url);
    assert_int_equal(kl_test_run(&out, "%s '%s' load '%s' --table-name orders 2>/dev/null", env,
                                 KL_BINARY, stream),
                     0);
    {
        cJSON *job = cJSON_Parse(out);
        const cJSON *m = cJSON_GetObjectItem(cJSON_GetObjectItem(job, "progress"), "messages");
        assert_non_null(job);
        assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(job, "status")), "succeeded");
        const cJSON *sh;
        if (!cJSON_IsNumber(m) || m->valuedouble != 10)
            fail_msg("loaded other than the 10 new messages: %s", out);
        /* every shard says it resumed from dlt's state, and from which load */
        cJSON_ArrayForEach(sh, cJSON_GetObjectItem(cJSON_GetObjectItem(job, "progress"), "shards"))
        {
            const cJSON *from = cJSON_GetObjectItem(sh, "resumed_from");
            assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(from, "origin")), "dlt");
            assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(from, "load_id")),
                                ROW3_LOAD);
        }
        cJSON_Delete(job);
    }
    free(out);
    assert_int_equal(scalar_ll("SELECT count(*) FROM kinesis.orders"), 65);
    assert_int_equal(scalar_ll("SELECT count(DISTINCT _kinesis__partition) FROM kinesis.orders"),
                     65);
    assert_int_equal(scalar_ll("SELECT count(*) FROM kinesis.orders WHERE _dlt_load_id NOT LIKE"
                               " '17962992%' AND substr(_kinesis__partition, 4)::int >= 55"),
                     10);
    assert_int_equal(scalar_ll("SELECT count(*) FROM kinesis.orders__items"), 109 + 10);

    /* the state row dlt restores now is ours: version 3 + 1, this stream's
     * last records, dlt's `orders` resource as it was, dlt's hash */
    {
        char *b64 = restorable("state"), *hash_col = restorable("version_hash");
        char *version = restorable("\"version\""), *load = restorable("_dlt_load_id"), hash[64];
        cJSON *doc, *kin, *last, *v;
        assert_string_equal(version, "4");
        assert_true(strcmp(load, ROW3_LOAD) > 0);
        json = inflate_column(b64);
        doc = cJSON_Parse(json);
        assert_non_null(doc);
        assert_int_equal(cJSON_GetObjectItem(doc, "_state_version")->valueint, 4);
        assert_string_equal(cJSON_GetObjectItem(doc, "_version_hash")->valuestring, hash_col);
        dlt_hash(json, hash);
        assert_string_equal(hash, hash_col);
        res = cJSON_PrintUnformatted(cJSON_GetObjectItem(
            cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetObjectItem(doc, "sources"), "kinesis"),
                                "resources"),
            "orders"));
        assert_string_equal(res, dlt_orders); /* untouched */
        kin = cJSON_GetObjectItem(
            cJSON_GetObjectItem(
                cJSON_GetObjectItem(
                    cJSON_GetObjectItem(
                        cJSON_GetObjectItem(cJSON_GetObjectItem(doc, "sources"), "kinesis"),
                        "resources"),
                    stream),
                "incremental"),
            "_kinesis");
        last = cJSON_GetObjectItem(kin, "last_value");
        assert_int_equal(cJSON_GetArraySize(last), 2);
        for (v = last->child; v != NULL; v = v->next)
            assert_string_equal(v->valuestring, last_in(puts, 65, v->string)->sequence);
        assert_true(cJSON_IsNull(cJSON_GetObjectItem(kin, "initial_value")));
        assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(kin, "unique_hashes")), 1);
        v = cJSON_GetObjectItem(
            cJSON_GetObjectItem(
                cJSON_GetObjectItem(
                    cJSON_GetObjectItem(cJSON_GetObjectItem(doc, "sources"), "kinesis"),
                    "resources"),
                stream),
            "initial_at_timestamp");
        assert_true(strncmp(v->valuestring, MARKER "2026-", 6) == 0);
        /* the load row our job wrote, with the newest schema hash */
        assert_int_equal(scalar_ll("SELECT count(*) FROM kinesis._dlt_loads l WHERE status = 0"
                                   " AND schema_name = 'kinesis' AND schema_version_hash = (SELECT"
                                   " version_hash FROM kinesis._dlt_version ORDER BY inserted_at"
                                   " DESC LIMIT 1) AND load_id > '" ROW3_LOAD "'"),
                         1);
        assert_int_equal(scalar_ll("SELECT engine_version FROM kinesis._dlt_version ORDER BY"
                                   " inserted_at DESC LIMIT 1"),
                         9);
        free(res);
        cJSON_Delete(doc);
        free(json);
        free(b64);
        free(hash_col);
        free(version);
        free(load);
    }

    /* a second run has nothing new */
    assert_int_equal(kl_test_run(&out, "%s '%s' load '%s' --table-name orders 2>/dev/null", env,
                                 KL_BINARY, stream),
                     0);
    assert_non_null(strstr(out, "\"succeeded\""));
    {
        cJSON *job = cJSON_Parse(out);
        const cJSON *m = cJSON_GetObjectItem(cJSON_GetObjectItem(job, "progress"), "messages");
        assert_true(cJSON_IsNumber(m) && m->valuedouble == 0);
        cJSON_Delete(job);
    }
    free(out);
    assert_int_equal(scalar_ll("SELECT count(*) FROM kinesis.orders"), 65);

    free(dlt_orders);
    kl_kinesis_delete_stream(ks.conn.client, stream, NULL);
    kl_test_kinesis_close(&ks);
    kl_dlt_records_free(recs, n);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_reads_dlts_dataset, setup, teardown),
        cmocka_unit_test_setup_teardown(test_continues_dlt_end_to_end, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
