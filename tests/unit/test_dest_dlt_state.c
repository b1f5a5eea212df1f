/*
 * dlt's pipeline state document (core/dest/state.h) against the golden
 * fixtures of dlt 0.5.4 (tests/fixtures/dlt-0.5.4, see its README): every
 * stored row decodes to dlt's exact bytes, encodes back to the stored
 * column, hashes to the stored version hash (dlt's insertion-order rule),
 * and holds the positions records.jsonl says it must; the next state
 * written from a restored one changes only what is ours and follows the
 * README's verified recipe.
 */
#include "tests/support/test_support.h"
#include "tests/support/dlt_fixture.h"
#include "core/dest/state.h"
#include "core/kinesis/msgid.h"
#include "core/kinesis/position.h"
#include "core/normalize/coerce.h"
#include "core/util/base64.h"
#include "core/util/err.h"

#include <cjson/cJSON.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#define MAX_ROWS 16
#define MAX_RECORDS 96

/* One `_dlt_pipeline_state` row and dlt's decoding of it. */
struct row {
    long long version;
    char load_id[40];
    char version_hash[64];
    char *state;   /* the column */
    char *decoded; /* state_decoded.jsonl's line: the exact bytes */
};

struct fixture {
    struct row rows[MAX_ROWS];
    size_t n_rows;
    struct kl_dlt_record recs[MAX_RECORDS];
    size_t n_recs;
};

static const char *str_of(const cJSON *o, const char *k)
{
    const char *v = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, k));
    return v != NULL ? v : "";
}

/* Splits a fixture file into lines (the buffer is kept in *text). */
static size_t lines_of(const char *rel, char **text, char **lines, size_t cap)
{
    char *save = NULL, *l;
    size_t n = 0;

    *text = kl_test_read_fixture(rel, NULL);
    for (l = strtok_r(*text, "\n", &save); l != NULL && n < cap; l = strtok_r(NULL, "\n", &save))
        lines[n++] = l;
    return n;
}

static void load_fixture(struct fixture *f, const char *dir)
{
    char path[128], *text, *dtext, *lines[MAX_ROWS], *dlines[MAX_ROWS];
    size_t n, nd;

    memset(f, 0, sizeof *f);
    snprintf(path, sizeof path, "%s/state_rows.jsonl", dir);
    n = lines_of(path, &text, lines, MAX_ROWS);
    snprintf(path, sizeof path, "%s/state_decoded.jsonl", dir);
    nd = lines_of(path, &dtext, dlines, MAX_ROWS);
    assert_int_equal(n, nd);
    for (size_t i = 0; i < n; i++) {
        cJSON *r = cJSON_Parse(lines[i]);
        struct row *w = &f->rows[f->n_rows++];
        assert_non_null(r);
        w->version = (long long)cJSON_GetObjectItem(r, "version")->valuedouble;
        snprintf(w->load_id, sizeof w->load_id, "%s", str_of(r, "_dlt_load_id"));
        snprintf(w->version_hash, sizeof w->version_hash, "%s", str_of(r, "version_hash"));
        w->state = strdup(str_of(r, "state"));
        w->decoded = strdup(dlines[i]);
        assert_int_equal(cJSON_GetObjectItem(r, "engine_version")->valueint, 4);
        cJSON_Delete(r);
    }
    free(text);
    free(dtext);

    f->n_recs = kl_dlt_records_read(dir, f->recs, MAX_RECORDS);
}

static void free_fixture(struct fixture *f)
{
    for (size_t i = 0; i < f->n_rows; i++) {
        free(f->rows[i].state);
        free(f->rows[i].decoded);
    }
    kl_dlt_records_free(f->recs, f->n_recs);
}

/* Decoding, encoding and hashing every row, dlt's runs and the foreign
 * writes of the recipe's verification alike. */
static void check_rows(const char *dir)
{
    struct fixture f;
    struct kl_err err = {0};

    load_fixture(&f, dir);
    assert_true(f.n_rows >= 3);
    for (size_t i = 0; i < f.n_rows; i++) {
        const struct row *r = &f.rows[i];
        char *json = NULL, *column = NULL, hash[KL_STATE_HASH_CAP];
        size_t len = 0;

        if (kl_dlt_state_decode(r->state, &json, &len, &err) != KL_OK)
            fail_msg("row %s: %s", r->load_id, err.msg);
        assert_int_equal(len, strlen(r->decoded));
        assert_memory_equal(json, r->decoded, len);

        /* zlib level 9 of the same bytes: the stored column itself with
         * the zlib dlt used (1.2.13); any zlib decodes to the same JSON */
        assert_int_equal(kl_dlt_state_encode(json, len, &column, &err), KL_OK);
        if (strcmp(zlibVersion(), "1.2.13") == 0) {
            assert_string_equal(column, r->state);
        } else {
            char *back = NULL;
            size_t blen = 0;
            assert_int_equal(kl_dlt_state_decode(column, &back, &blen, &err), KL_OK);
            assert_memory_equal(back, json, len);
            free(back);
        }

        /* dlt's hash; the one foreign write that used dlt under orjson
         * (sorted keys) differs, as the fixture's README says */
        assert_int_equal(kl_dlt_state_hash(json, len, hash, &err), KL_OK);
        if (strcmp(r->load_id, "1796299278.5979602") == 0)
            assert_string_not_equal(hash, r->version_hash);
        else
            assert_string_equal(hash, r->version_hash);
        free(column);
        free(json);
    }
    free_fixture(&f);
}

static void test_decode_encode_hash(void **state)
{
    (void)state;
    check_rows("dlt-0.5.4");
    check_rows("dlt-0.5.4/foreign_write");
}

/* The last record of each shard that was loaded (or consumed by the
 * foreign tool) up to load `load_id`. */
static const struct kl_dlt_record *last_until(const struct fixture *f, const char *shard,
                                              const char *load_id)
{
    const struct kl_dlt_record *best = NULL;
    for (size_t i = 0; i < f->n_recs; i++) {
        const struct kl_dlt_record *c = &f->recs[i];
        bool in = (c->loaded_in[0] && strcmp(c->loaded_in, load_id) <= 0) ||
                  (c->consumed_by[0] && strcmp(c->consumed_by, load_id) <= 0);
        if (in && strcmp(c->shard_id, shard) == 0 &&
            (best == NULL || kl_seq_cmp(c->sequence, best->sequence) > 0))
            best = c;
    }
    return best;
}

static void check_positions(const char *dir, const char *const *want_pks)
{
    struct fixture f;
    struct kl_err err = {0};

    load_fixture(&f, dir);
    for (size_t i = 0; i < f.n_rows; i++) {
        const struct row *r = &f.rows[i];
        struct kl_dlt_stream s;
        char *json = NULL;
        size_t len = 0;

        assert_int_equal(kl_dlt_state_decode(r->state, &json, &len, &err), KL_OK);
        assert_int_equal(kl_dlt_state_stream(json, len, "kinesis", "orders", &s, &err), KL_OK);
        assert_true(s.found);
        assert_int_equal(s.n_positions, 2);
        for (size_t k = 0; k < s.n_positions; k++) {
            const struct kl_dlt_record *last = last_until(&f, s.positions[k].shard_id, r->load_id);
            char pks[40];
            assert_non_null(last);
            if (strcmp(last->sequence, s.positions[k].sequence) != 0)
                fail_msg("row %s shard %s: %s, records say %s (%s)", r->load_id,
                         s.positions[k].shard_id, s.positions[k].sequence, last->sequence,
                         last->partition_key);
            /* and the README's table of where each row points */
            snprintf(pks, sizeof pks, "%s", want_pks[i * 2 + k]);
            assert_string_equal(last->partition_key, pks);
        }
        assert_true(s.has_run);
        assert_true(s.run_ms > 1796299200000LL && s.run_ms < 1796299300000LL);
        kl_dlt_stream_free(&s);
        assert_int_equal(kl_dlt_state_stream(json, len, "kinesis", "clicks", &s, &err), KL_OK);
        assert_false(s.found);
        assert_int_equal(s.n_positions, 0);
        kl_dlt_stream_free(&s);
        free(json);
    }
    free_fixture(&f);
}

static void test_positions_match_records(void **state)
{
    static const char *const runs[] = {"pk-39", "pk-32", "pk-49", "pk-47", "pk-50", "pk-54"};
    static const char *const foreign[] = {"pk-39", "pk-32", "pk-49", "pk-47", "pk-50", "pk-54",
                                          "pk-55", "pk-59", "pk-64", "pk-63", "pk-68", "pk-69",
                                          "pk-74", "pk-72", "pk-79", "pk-77", "pk-83", "pk-84"};
    (void)state;
    check_positions("dlt-0.5.4", runs);
    check_positions("dlt-0.5.4/foreign_write", foreign);
}

/* Row 3's run time exactly: 2026-12-03T12:01:06.820782+00:00. */
static void test_run_time(void **state)
{
    struct fixture f;
    struct kl_dlt_stream s;
    struct kl_err err = {0};
    char *json;
    size_t len;
    int64_t us = 0;
    (void)state;

    load_fixture(&f, "dlt-0.5.4");
    assert_int_equal(kl_dlt_state_decode(f.rows[2].state, &json, &len, &err), KL_OK);
    assert_int_equal(kl_dlt_state_stream(json, len, "kinesis", "orders", &s, &err), KL_OK);
    assert_int_equal(kl_iso_parse("2026-12-03T12:01:06.820782+00:00", 32, &us), KL_ISO_DATETIME);
    assert_int_equal(s.run_ms, us / 1000);
    kl_dlt_stream_free(&s);
    free(json);
    free_fixture(&f);
}

/* Restoring a state and writing it again with nothing of ours in it gives
 * back dlt's bytes: untouched content is written exactly as it was. */
static void test_untouched_round_trip(void **state)
{
    struct fixture f;
    struct kl_err err = {0};
    (void)state;

    load_fixture(&f, "dlt-0.5.4/foreign_write");
    for (size_t i = 0; i < f.n_rows; i++) {
        struct kl_state_doc_in in;
        struct kl_state_doc doc;
        if (strcmp(f.rows[i].load_id, "1796299278.5979602") == 0)
            continue; /* its stored hash is not dlt 0.5.4's */
        memset(&in, 0, sizeof in);
        in.restored = f.rows[i].decoded;
        in.restored_len = strlen(f.rows[i].decoded);
        in.schema_name = "kinesis";
        in.version = f.rows[i].version;
        assert_int_equal(kl_state_doc_build(&in, &doc, &err), KL_OK);
        assert_string_equal(doc.json, f.rows[i].decoded);
        assert_false(doc.changed);
        assert_int_equal(strlen(doc.row_id), 14);
        kl_state_doc_free(&doc);
    }
    free_fixture(&f);
}

static void checkpoint(struct kl_checkpoint *cp, const char *shard, const char *seq,
                       int64_t updated_ms)
{
    memset(cp, 0, sizeof *cp);
    kl_position_set(&cp->position, shard, seq, -1);
    cp->fencing_token = 7;
    cp->updated_ms = updated_ms;
}

/* The independent check of dlt's hash for this document shape: sha3-256
 * of the text without its three version members (which lead, as dlt
 * writes them: _state_version, _state_engine_version first,
 * _version_hash before sources). */
static void independent_hash(const char *json, char out[64])
{
    char *copy = strdup(json), *p, *q;
    unsigned char md[32];
    unsigned int mdlen = 0;

    p = strstr(copy, "\"dataset_name\"");
    assert_non_null(p);
    memmove(copy + 1, p, strlen(p) + 1); /* "{" then the rest */
    p = strstr(copy, ",\"_version_hash\":\"");
    assert_non_null(p);
    q = strchr(p + 18, '"');
    assert_non_null(q);
    memmove(p, q + 1, strlen(q + 1) + 1);
    assert_int_equal(EVP_Digest(copy, strlen(copy), md, &mdlen, EVP_sha3_256(), NULL), 1);
    kl_base64_encode(md, 32, out, true);
    free(copy);
}

/* Row 2 restored, our positions being row 3's (shard 0 at pk-50, shard 1
 * at pk-54, the latter written last) and row 3's run time: the document
 * dlt wrote as row 3, up to the microseconds of the run time we do not
 * keep, with dlt's unique hash of the last record. */
static void test_recipe_reproduces_dlts_next_row(void **state)
{
    struct fixture f;
    struct kl_dlt_stream r3;
    struct kl_checkpoint cps[2];
    struct kl_state_stream st;
    struct kl_state_doc_in in;
    struct kl_state_doc doc;
    struct kl_err err = {0};
    char *want, *p, hash[64];
    (void)state;

    load_fixture(&f, "dlt-0.5.4");
    assert_int_equal(kl_dlt_state_stream(f.rows[2].decoded, strlen(f.rows[2].decoded), "kinesis",
                                         "orders", &r3, &err),
                     KL_OK);
    checkpoint(&cps[0], r3.positions[0].shard_id, r3.positions[0].sequence, 1000);
    checkpoint(&cps[1], r3.positions[1].shard_id, r3.positions[1].sequence, 2000);
    memset(&st, 0, sizeof st);
    st.stream_name = "orders";
    st.checkpoints = cps;
    st.n_checkpoints = 2;
    st.has_last_run = true;
    st.last_run_ms = r3.run_ms;
    memset(&in, 0, sizeof in);
    in.restored = f.rows[1].decoded;
    in.restored_len = strlen(f.rows[1].decoded);
    in.schema_name = "kinesis";
    in.version = f.rows[1].version + 1;
    in.streams = &st;
    in.n_streams = 1;
    assert_int_equal(kl_state_doc_build(&in, &doc, &err), KL_OK);
    assert_true(doc.changed);

    /* row 3 with the run time to the millisecond and our hash */
    want = strdup(f.rows[2].decoded);
    p = strstr(want, "06.820782+00:00");
    assert_non_null(p);
    memcpy(p, "06.820000", 9);
    p = strstr(want, f.rows[2].version_hash);
    assert_non_null(p);
    memcpy(p, doc.version_hash, 44);
    assert_string_equal(doc.json, want);
    independent_hash(doc.json, hash);
    assert_string_equal(doc.version_hash, hash);
    {
        char *back = NULL;
        size_t blen = 0;
        assert_int_equal(kl_dlt_state_decode(doc.state, &back, &blen, &err), KL_OK);
        assert_string_equal(back, doc.json);
        free(back);
    }
    free(want);
    kl_state_doc_free(&doc);
    kl_dlt_stream_free(&r3);
    free_fixture(&f);
}

/* What merging does with a restored state: further positions only, a new
 * shard added, the later run time with dlt's marker, the version; another
 * source's state (numbers dlt wrote) stays byte for byte. */
static void test_merge_keeps_the_rest(void **state)
{
    struct fixture f;
    struct kl_checkpoint cps[3];
    struct kl_state_stream st;
    struct kl_state_doc_in in;
    struct kl_state_doc doc;
    struct kl_dlt_stream got;
    struct kl_err err = {0};
    /* as dlt writes them: non-ASCII raw, control characters escaped */
    const char *other = "\"other\":{\"resources\":{\"x\":{\"n\":1.0,\"big\":"
                        "123456789012345678901234567890,\"s\":\"\xc3\xa9\\n\xf0\x9f\x98\x80\"}}},";
    char *restored, *p;
    size_t at;
    (void)state;

    load_fixture(&f, "dlt-0.5.4");
    /* row 3 with another source before kinesis */
    p = strstr(f.rows[2].decoded, "\"sources\":{");
    assert_non_null(p);
    at = (size_t)(p - f.rows[2].decoded) + strlen("\"sources\":{");
    restored = malloc(strlen(f.rows[2].decoded) + strlen(other) + 1);
    memcpy(restored, f.rows[2].decoded, at);
    strcpy(restored + at, other);
    strcat(restored, f.rows[2].decoded + at);

    checkpoint(&cps[0], "shardId-000000000000",
               "49680798300199113480921306734029089196626947863167893507", 5);         /* further */
    checkpoint(&cps[1], "shardId-000000000001", "4968079830022141422611983735716", 9); /* behind */
    checkpoint(&cps[2], "shardId-000000000002", "49680798300243714971318367980309682762753015", 1);
    memset(&st, 0, sizeof st);
    st.stream_name = "orders";
    st.checkpoints = cps;
    st.n_checkpoints = 3;
    st.has_last_run = true;
    st.last_run_ms = 1796300000500LL;
    memset(&in, 0, sizeof in);
    in.restored = restored;
    in.restored_len = strlen(restored);
    in.schema_name = "kinesis";
    in.version = 4;
    in.streams = &st;
    in.n_streams = 1;
    assert_int_equal(kl_state_doc_build(&in, &doc, &err), KL_OK);

    assert_non_null(strstr(doc.json, other));
    assert_non_null(strstr(doc.json, "\"_state_version\":4,"));
    assert_non_null(strstr(doc.json, "\"initial_at_timestamp\":\"" KL_STATE_DATETIME_MARKER
                                     "2026-12-03T12:13:20.500000+00:00\""));
    assert_int_equal(
        kl_dlt_state_stream(doc.json, strlen(doc.json), "kinesis", "orders", &got, &err), KL_OK);
    assert_int_equal(got.n_positions, 3);
    assert_string_equal(got.positions[0].sequence, cps[0].position.sequence);
    assert_string_equal(got.positions[1].sequence,
                        "49680798300221414226119837357169415989079981595499167762");
    assert_string_equal(got.positions[2].shard_id, "shardId-000000000002");
    assert_int_equal(got.run_ms, 1796300000500LL);
    kl_dlt_stream_free(&got);
    {
        /* the unique hash is the most recently written advanced checkpoint's */
        char id[KL_MSG_ID_LEN + 1], q[32], h[KL_MSG_ID_LEN + 1], want[64];
        assert_int_equal(
            kl_msg_id(cps[0].position.shard_id, cps[0].position.sequence, -1, id, &err), KL_OK);
        snprintf(q, sizeof q, "\"%s\"", id);
        assert_int_equal(kl_digest128(q, strlen(q), h, &err), KL_OK);
        snprintf(want, sizeof want, "\"unique_hashes\":[\"%s\"]", h);
        assert_non_null(strstr(doc.json, want));
    }
    {
        char hash[KL_STATE_HASH_CAP];
        assert_int_equal(kl_dlt_state_hash(doc.json, strlen(doc.json), hash, &err), KL_OK);
        assert_string_equal(hash, doc.version_hash);
    }
    kl_state_doc_free(&doc);

    /* an earlier run time of ours does not move dlt's back */
    st.last_run_ms = 1000;
    st.n_checkpoints = 0;
    assert_int_equal(kl_state_doc_build(&in, &doc, &err), KL_OK);
    assert_non_null(strstr(doc.json, "\"initial_at_timestamp\":\"" KL_STATE_DATETIME_MARKER
                                     "2026-12-03T12:01:06.820782+00:00\""));
    assert_non_null(strstr(doc.json, "\"unique_hashes\":[\"ePtwy/tRspVqF8Fl8S9s\"]"));
    kl_state_doc_free(&doc);

    /* forgetting the stream removes its resource state and nothing else */
    in.forget = "orders";
    assert_int_equal(kl_state_doc_build(&in, &doc, &err), KL_OK);
    assert_true(doc.changed);
    assert_non_null(strstr(doc.json, "\"kinesis\":{\"resources\":{}}"));
    assert_non_null(strstr(doc.json, other));
    kl_state_doc_free(&doc);
    in.forget = "clicks";
    assert_int_equal(kl_state_doc_build(&in, &doc, &err), KL_OK);
    assert_false(doc.changed);
    kl_state_doc_free(&doc);
    free(restored);
    free_fixture(&f);
}

/* A state of our own from scratch: dlt's keys, the marker, dlt's order. */
static void test_new_state(void **state)
{
    struct kl_checkpoint cp;
    struct kl_state_stream st;
    struct kl_state_doc_in in;
    struct kl_state_doc doc;
    struct kl_err err = {0};
    char hash[64];
    (void)state;

    checkpoint(&cp, "shardId-000000000000", "4954346307654800757710", 1);
    memset(&st, 0, sizeof st);
    st.stream_name = "clicks";
    st.checkpoints = &cp;
    st.n_checkpoints = 1;
    st.has_last_run = true;
    st.last_run_ms = 1700000000000LL;
    memset(&in, 0, sizeof in);
    in.pipeline_name = "kinesis_pipeline";
    in.dataset_name = "kinesis";
    in.schema_name = "kinesis";
    in.destination_type = "dlt.destinations.postgres";
    in.destination_name = "postgres";
    in.version = 1;
    in.streams = &st;
    in.n_streams = 1;
    assert_int_equal(kl_state_doc_build(&in, &doc, &err), KL_OK);
    {
        static const char prefix[] =
            "{\"_state_version\":1,\"_state_engine_version\":4,\"dataset_name\":"
            "\"kinesis\",\"default_schema_name\":\"kinesis\",\"schema_names\":["
            "\"kinesis\"],\"pipeline_name\":\"kinesis_pipeline\","
            "\"destination_type\":\"dlt.destinations.postgres\","
            "\"destination_name\":\"postgres\",\"_version_hash\":\"";
        assert_true(strncmp(doc.json, prefix, sizeof prefix - 1) == 0);
    }
    assert_non_null(strstr(doc.json, "\"sources\":{\"kinesis\":{\"resources\":{\"clicks\":{"
                                     "\"incremental\":{\"_kinesis\":{\"initial_value\":null,"
                                     "\"last_value\":{\"shardId-000000000000\":"
                                     "\"4954346307654800757710\"},\"unique_hashes\":[\""));
    assert_non_null(strstr(doc.json, "\"initial_at_timestamp\":\"" KL_STATE_DATETIME_MARKER
                                     "2023-11-14T22:13:20+00:00\"}}}}}"));
    independent_hash(doc.json, hash);
    assert_string_equal(doc.version_hash, hash);
    {
        unsigned char z[8];
        size_t zlen = 0;
        assert_int_equal(kl_base64_decode(doc.state, 8, z, &zlen), 0);
        assert_int_equal(z[0], 0x78); /* zlib, */
        assert_int_equal(z[1], 0xda); /* level 9 */
    }
    kl_state_doc_free(&doc);
}

/* A row kinesis-loader wrote before (plain ISO run time, destination_name
 * null) reads, and the next row gives the run time dlt's marker. */
static void test_previous_version_row(void **state)
{
    const char *old = "{\"_state_engine_version\":4,\"pipeline_name\":\"kinesis_pipeline\","
                      "\"dataset_name\":\"kinesis\",\"default_schema_name\":\"kinesis\","
                      "\"schema_names\":[\"kinesis\"],\"destination_type\":"
                      "\"dlt.destinations.postgres\",\"destination_name\":null,\"sources\":{"
                      "\"kinesis\":{\"resources\":{\"clicks\":{\"initial_at_timestamp\":"
                      "\"2023-11-14T22:13:20.500000+00:00\",\"incremental\":{\"_kinesis\":{"
                      "\"initial_value\":null,\"last_value\":{\"s0\":\"100\"},\"unique_hashes\":"
                      "[]}}}}}},\"_state_version\":3,\"_version_hash\":\"x\"}";
    struct kl_dlt_stream s;
    struct kl_state_stream st;
    struct kl_state_doc_in in;
    struct kl_state_doc doc;
    struct kl_err err = {0};
    (void)state;

    assert_int_equal(kl_dlt_state_stream(old, strlen(old), "kinesis", "clicks", &s, &err), KL_OK);
    assert_int_equal(s.n_positions, 1);
    assert_true(s.has_run);
    assert_int_equal(s.run_ms, 1700000000500LL);
    kl_dlt_stream_free(&s);
    memset(&st, 0, sizeof st);
    st.stream_name = "clicks";
    memset(&in, 0, sizeof in);
    in.restored = old;
    in.restored_len = strlen(old);
    in.schema_name = "kinesis";
    in.version = 4;
    in.streams = &st;
    in.n_streams = 1;
    assert_int_equal(kl_state_doc_build(&in, &doc, &err), KL_OK);
    assert_non_null(strstr(doc.json,
                           "{\"clicks\":{\"initial_at_timestamp\":\"" KL_STATE_DATETIME_MARKER
                           "2023-11-14T22:13:20.500000+00:00\",\"incremental\""));
    assert_non_null(strstr(doc.json, "\"_state_version\":4,\"_version_hash\":\""));
    kl_state_doc_free(&doc);
}

/* A section other than `kinesis` is read and written where it is. */
static void test_other_section(void **state)
{
    const char *doc_text = "{\"sources\":{\"my_kinesis\":{\"resources\":{\"orders\":{"
                           "\"incremental\":{\"_kinesis\":{\"last_value\":{\"s0\":\"5\"}}}}}}}}";
    struct kl_dlt_stream s;
    struct kl_checkpoint cp;
    struct kl_state_stream st;
    struct kl_state_doc_in in;
    struct kl_state_doc doc;
    struct kl_err err = {0};
    (void)state;

    assert_int_equal(kl_dlt_state_stream(doc_text, strlen(doc_text), "kinesis", "orders", &s, &err),
                     KL_OK);
    assert_int_equal(s.n_positions, 1);
    assert_string_equal(s.positions[0].sequence, "5");
    kl_dlt_stream_free(&s);
    checkpoint(&cp, "s0", "6", 1);
    memset(&st, 0, sizeof st);
    st.stream_name = "orders";
    st.checkpoints = &cp;
    st.n_checkpoints = 1;
    memset(&in, 0, sizeof in);
    in.restored = doc_text;
    in.restored_len = strlen(doc_text);
    in.schema_name = "kinesis";
    in.version = 2;
    in.streams = &st;
    in.n_streams = 1;
    assert_int_equal(kl_state_doc_build(&in, &doc, &err), KL_OK);
    assert_non_null(strstr(doc.json, "\"my_kinesis\":{\"resources\":{\"orders\":{\"incremental\":{"
                                     "\"_kinesis\":{\"last_value\":{\"s0\":\"6\"}"));
    assert_null(strstr(doc.json, "\"kinesis\":"));
    kl_state_doc_free(&doc);
}

/* What cannot be a state is refused with a reason; dlt's older plain-JSON
 * format is read. */
static void test_bad_and_plain_columns(void **state)
{
    struct kl_err err = {0};
    char *json = NULL;
    size_t len = 0;
    struct kl_dlt_stream s;
    (void)state;

    assert_int_equal(kl_dlt_state_decode("eNo=", &json, &len, &err), KL_ERR_UPSTREAM);
    assert_int_equal(kl_dlt_state_decode("{\"sources\":{}}", &json, &len, &err), KL_OK);
    assert_string_equal(json, "{\"sources\":{}}");
    free(json);
    assert_int_equal(kl_dlt_state_stream("[1]", 3, "kinesis", "orders", &s, &err), KL_ERR_UPSTREAM);
    /* values dlt's source never writes are left out */
    {
        const char *t = "{\"sources\":{\"kinesis\":{\"resources\":{\"o\":{\"initial_at_timestamp\":"
                        "null,\"incremental\":{\"_kinesis\":{\"last_value\":{\"a\":\"12x\","
                        "\"b\":7,\"c\":\"42\"}}}}}}}}";
        assert_int_equal(kl_dlt_state_stream(t, strlen(t), "kinesis", "o", &s, &err), KL_OK);
        assert_int_equal(s.n_positions, 1);
        assert_string_equal(s.positions[0].shard_id, "c");
        assert_false(s.has_run);
        kl_dlt_stream_free(&s);
    }
}

/* Load ids that sort after the newest: now, or the newest and a digit. */
static void test_load_id_after(void **state)
{
    char id[128];
    struct kl_err err = {0};
    (void)state;

    assert_int_equal(
        kl_dlt_load_id_after(1796299300123LL, "1796299267.7698898", id, sizeof id, &err), KL_OK);
    assert_string_equal(id, "1796299300.123000");
    assert_int_equal(
        kl_dlt_load_id_after(1796299000000LL, "1796299267.7698898", id, sizeof id, &err), KL_OK);
    assert_string_equal(id, "1796299267.76988981");
    assert_true(strcmp(id, "1796299267.7698898") > 0);
    assert_int_equal(kl_dlt_load_id_after(5, "", id, sizeof id, &err), KL_OK);
    assert_string_equal(id, "0.005000");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decode_encode_hash),
        cmocka_unit_test(test_positions_match_records),
        cmocka_unit_test(test_run_time),
        cmocka_unit_test(test_untouched_round_trip),
        cmocka_unit_test(test_recipe_reproduces_dlts_next_row),
        cmocka_unit_test(test_merge_keeps_the_rest),
        cmocka_unit_test(test_new_state),
        cmocka_unit_test(test_previous_version_row),
        cmocka_unit_test(test_other_section),
        cmocka_unit_test(test_bad_and_plain_columns),
        cmocka_unit_test(test_load_id_after),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
