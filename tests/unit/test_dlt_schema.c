/*
 * The stored schema document against dlt 0.5.4's own (the `_dlt_version`
 * row of tests/fixtures/dlt-0.5.4/kinesis_dataset.sql): read back, written
 * again and hashed it is dlt's, byte for byte in content and hash; the
 * schema our normaliser builds from the fixture's records hashes to dlt's
 * too; a document of ours from before (engine 10) and one of dlt 1.5+
 * (engine 11) still load and are stored again as engine 9.
 */
#include "tests/support/test_support.h"
#include "tests/support/dlt_fixture.h"
#include "core/kinesis/message.h"
#include "core/kinesis/msgid.h"
#include "core/normalize/normalizer.h"
#include "core/normalize/schema.h"
#include "core/util/buf.h"
#include "core/util/err.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DLT_HASH "KnImSorOvZHaeT+h8JkRZsJeyKzb9uSiDvyZQ5kM5kc="

/* The `schema` column of the dump's one `_dlt_version` row (malloc'ed). */
static char *dlt_schema_doc(void)
{
    char *sql = kl_test_read_fixture("dlt-0.5.4/kinesis_dataset.sql", NULL);
    const char *line = strstr(sql, "INSERT INTO kinesis._dlt_version VALUES");
    const char *start, *end;
    char *doc, *o;

    assert_non_null(line);
    start = strstr(line, ", '{");
    end = strstr(line, "}');\n");
    assert_non_null(start);
    assert_non_null(end);
    start += 3;
    end += 1;
    doc = malloc((size_t)(end - start) + 1);
    assert_non_null(doc);
    /* SQL string literal: '' is one quote */
    for (o = doc; start < end; start++) {
        *o++ = *start;
        if (start[0] == '\'' && start[1] == '\'')
            start++;
    }
    *o = '\0';
    free(sql);
    return doc;
}

static char *to_json(const struct kl_schema *s)
{
    struct kl_buf b;
    struct kl_err err = {0};
    char *out;

    kl_buf_init(&b, (size_t)16 << 20);
    if (kl_schema_to_json(s, &b, &err) != KL_OK)
        fail_msg("to_json: %s", err.msg);
    out = strdup(b.data);
    kl_buf_free(&b);
    return out;
}

/* dlt's document read, written again: the same document (keys in any
 * order), the same hash, which we compute as dlt does. */
static void test_dlt_document_round_trips(void **state)
{
    char *doc = dlt_schema_doc(), *again;
    struct kl_schema *s = NULL;
    struct kl_err err = {0};
    char hash[KL_SCHEMA_HASH_CAP];
    cJSON *want, *got;
    (void)state;

    if (kl_schema_from_json(doc, strlen(doc), &s, &err) != KL_OK)
        fail_msg("from_json: %s", err.msg);
    assert_int_equal(s->n_tables, 3); /* orders, orders__user__tags, orders__items */
    assert_int_equal(s->version, 2);
    assert_string_equal(s->version_hash, DLT_HASH);
    assert_int_equal(kl_schema_version_hash(s, hash, &err), KL_OK);
    assert_string_equal(hash, DLT_HASH);

    again = to_json(s);
    want = cJSON_Parse(doc);
    got = cJSON_Parse(again);
    assert_non_null(want);
    assert_non_null(got);
    if (!cJSON_Compare(want, got, true))
        fail_msg("our document differs from dlt's:\n%s\n%s", again, doc);
    cJSON_Delete(want);
    cJSON_Delete(got);
    free(again);
    kl_schema_destroy(s);
    free(doc);
}

/* The fixture's 55 messages through our normaliser: the schema dlt
 * stored, to the hash. */
static void test_normaliser_schema_is_dlts(void **state)
{
    static struct kl_dlt_record recs[64];
    size_t n = kl_dlt_records_read("dlt-0.5.4", recs, 64);
    struct kl_normalizer_options o;
    struct kl_normalizer *norm;
    struct kl_row_batch b;
    struct kl_err err = {0};
    (void)state;

    assert_int_equal(n, 55);
    memset(&o, 0, sizeof o);
    o.stream_name = "orders";
    o.parse_json = true;
    o.load_id = "1796299261.149694";
    norm = kl_normalizer_create(&o, kl_schema_create(KL_SCHEMA_NAME), &err);
    assert_non_null(norm);
    for (size_t i = 0; i < n; i++) {
        struct kl_message m;
        memset(&m, 0, sizeof m);
        m.stream_name = "orders";
        m.shard_id = recs[i].shard_id;
        m.sequence = recs[i].sequence;
        m.sub_sequence = -1;
        m.partition_key = recs[i].partition_key;
        m.arrival_ms = recs[i].arrival_ms;
        m.data = (const unsigned char *)recs[i].data;
        m.data_len = strlen(recs[i].data);
        assert_int_equal(kl_msg_id(m.shard_id, m.sequence, -1, m.msg_id, &err), KL_OK);
        assert_int_equal(kl_normalizer_add(norm, &m, &err), KL_OK);
    }
    assert_int_equal(kl_normalizer_close(norm, &b, &err), KL_OK);
    assert_string_equal(b.schema->version_hash, DLT_HASH);
    kl_normalizer_reset(norm, true);
    kl_normalizer_destroy(norm);
    kl_dlt_records_free(recs, n);
}

/* What kinesis-loader stored before (schema engine 10: "json", row_key,
 * parent_key, and dlt 1.x's default hints). */
static const char OURS_ENGINE_10[] =
    "{\"name\":\"kinesis\",\"engine_version\":10,\"tables\":{"
    "\"_dlt_version\":{\"name\":\"_dlt_version\",\"columns\":{},\"write_disposition\":\"skip\"},"
    "\"_dlt_loads\":{\"name\":\"_dlt_loads\",\"columns\":{},\"write_disposition\":\"skip\"},"
    "\"ev\":{\"name\":\"ev\",\"columns\":{"
    "\"_kinesis_msg_id\":{\"name\":\"_kinesis_msg_id\",\"data_type\":\"text\",\"nullable\":false,"
    "\"primary_key\":true},"
    "\"doc\":{\"name\":\"doc\",\"data_type\":\"json\",\"nullable\":true},"
    "\"_dlt_load_id\":{\"name\":\"_dlt_load_id\",\"data_type\":\"text\",\"nullable\":false},"
    "\"_dlt_id\":{\"name\":\"_dlt_id\",\"data_type\":\"text\",\"nullable\":false,\"unique\":true,"
    "\"row_key\":true}},\"write_disposition\":\"append\",\"resource\":\"ev\"},"
    "\"ev__l\":{\"name\":\"ev__l\",\"columns\":{"
    "\"value\":{\"name\":\"value\",\"data_type\":\"bigint\",\"nullable\":true},"
    "\"_dlt_parent_id\":{\"name\":\"_dlt_parent_id\",\"data_type\":\"text\",\"nullable\":false,"
    "\"parent_key\":true},"
    "\"_dlt_list_idx\":{\"name\":\"_dlt_list_idx\",\"data_type\":\"bigint\",\"nullable\":false},"
    "\"_dlt_id\":{\"name\":\"_dlt_id\",\"data_type\":\"text\",\"nullable\":false,\"unique\":true,"
    "\"row_key\":true}},\"parent\":\"ev\"}},"
    "\"settings\":{\"detections\":[\"iso_timestamp\"],\"default_hints\":{\"not_null\":[\"_dlt_id\"]"
    ","
    "\"parent_key\":[\"_dlt_parent_id\"],\"row_key\":[\"_dlt_id\"]}},"
    "\"normalizers\":{\"names\":\"snake_case\",\"json\":{\"module\":"
    "\"dlt.common.normalizers.json.relational\"}},"
    "\"version\":4,\"version_hash\":\"b2xkLWhhc2g=\",\"previous_hashes\":[\"b2xkZXI=\"]}";

static const cJSON *path(const cJSON *o, const char *const *keys)
{
    for (; o != NULL && *keys != NULL; keys++)
        o = cJSON_GetObjectItemCaseSensitive(o, *keys);
    return o;
}

/* An older or newer engine loads, and is stored again as engine 9 under
 * the next version (so the next chunk writes it). */
static void test_other_engines_load_and_move_to_9(void **state)
{
    struct kl_schema *s = NULL;
    struct kl_err err = {0};
    char *json;
    cJSON *doc;
    size_t ti, ci;
    (void)state;

    if (kl_schema_from_json(OURS_ENGINE_10, strlen(OURS_ENGINE_10), &s, &err) != KL_OK)
        fail_msg("engine 10: %s", err.msg);
    assert_int_equal(s->version, 5);
    assert_string_equal(s->previous_hashes[0], "b2xkLWhhc2g=");
    assert_string_equal(s->previous_hashes[1], "b2xkZXI=");
    assert_true(kl_schema_find_table(s, "ev", &ti));
    assert_true(kl_schema_find_column(&s->tables[ti], "doc", &ci));
    assert_int_equal(s->tables[ti].columns[ci].type, KL_TYPE_JSON);
    assert_true(s->tables[ti].columns[ci].nullable);

    json = to_json(s);
    doc = cJSON_Parse(json);
    assert_non_null(doc);
    assert_int_equal(cJSON_GetObjectItem(doc, "engine_version")->valueint, 9);
    {
        static const char *const doc_type[] = {"tables", "ev", "columns", "doc", "data_type", NULL};
        static const char *const row_id[] = {"tables", "ev__l", "columns", "_dlt_id", NULL};
        static const char *const parent[] = {"tables", "ev__l", "columns", "_dlt_parent_id", NULL};
        static const char *const hints[] = {"settings", "default_hints", NULL};
        assert_string_equal(cJSON_GetStringValue(path(doc, doc_type)), "complex");
        assert_true(cJSON_IsTrue(cJSON_GetObjectItem(path(doc, row_id), "unique")));
        assert_null(cJSON_GetObjectItem(path(doc, row_id), "row_key"));
        assert_true(cJSON_IsTrue(cJSON_GetObjectItem(path(doc, parent), "foreign_key")));
        assert_null(cJSON_GetObjectItem(path(doc, parent), "parent_key"));
        assert_non_null(cJSON_GetObjectItem(path(doc, hints), "foreign_key"));
        assert_null(cJSON_GetObjectItem(path(doc, hints), "row_key"));
        assert_null(cJSON_GetObjectItem(path(doc, hints), "parent_key"));
    }
    cJSON_Delete(doc);
    free(json);
    kl_schema_destroy(s);

    /* An engine-9 document keeps its version and hash as stored. */
    json = dlt_schema_doc();
    assert_int_equal(kl_schema_from_json(json, strlen(json), &s, &err), KL_OK);
    assert_int_equal(s->version, 2);
    kl_schema_destroy(s);
    free(json);
}

/* Under merge, dlt 0.5.4 propagates the root's `_dlt_id` to the children's
 * `_dlt_root_id` (a root_key) in the normaliser's config. */
static void test_merge_propagation(void **state)
{
    struct kl_schema *s = kl_schema_create(KL_SCHEMA_NAME);
    struct kl_column c;
    struct kl_err err = {0};
    size_t root, child;
    char *json;
    cJSON *doc;
    static const char *const prop[] = {"normalizers", "json",   "config",  "propagation",
                                       "tables",      "clicks", "_dlt_id", NULL};
    static const char *const rk[] = {"tables",       "clicks__l", "columns",
                                     "_dlt_root_id", "root_key",  NULL};
    (void)state;

    assert_int_equal(kl_schema_add_table(s, "clicks", "", KL_WRITE_MERGE, &root, &err), KL_OK);
    assert_int_equal(kl_schema_add_table(s, "clicks__l", "clicks", KL_WRITE_MERGE, &child, &err),
                     KL_OK);
    memset(&c, 0, sizeof c);
    snprintf(c.name, sizeof c.name, "_dlt_root_id");
    c.type = KL_TYPE_TEXT;
    assert_int_equal(kl_schema_add_column(s, child, &c, NULL, &err), KL_OK);
    json = to_json(s);
    doc = cJSON_Parse(json);
    assert_string_equal(cJSON_GetStringValue(path(doc, prop)), "_dlt_root_id");
    assert_true(cJSON_IsTrue(path(doc, rk)));
    cJSON_Delete(doc);
    free(json);
    kl_schema_destroy(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dlt_document_round_trips),
        cmocka_unit_test(test_normaliser_schema_is_dlts),
        cmocka_unit_test(test_other_engines_load_and_move_to_9),
        cmocka_unit_test(test_merge_propagation),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
