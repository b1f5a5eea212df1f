/*
 * The fixture corpus (tests/fixtures/normalize/corpus.jsonl: nested,
 * conflicting and odd messages, with envelopes) normalised in one chunk must
 * give exactly tests/fixtures/normalize/corpus.expected.json: per table the
 * parent, the columns with dlt types and hints, the row count and every
 * row's cells. The destination tests load the same corpus and compare with
 * the same file. KL_CORPUS_WRITE=1 rewrites the expected file (review the
 * diff against dlt's rules before committing it).
 */
#include "tests/support/test_support.h"
#include "core/kinesis/message.h"
#include "core/kinesis/msgid.h"
#include "core/normalize/coerce.h"
#include "core/normalize/normalizer.h"
#include "core/normalize/schema.h"
#include "core/util/base64.h"
#include "core/util/err.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STREAM "corpus-stream"
#define LOAD_ID "1714557600.000001"

static cJSON *cell_json(const struct kl_value *v)
{
    char buf[64];
    switch (v->type) {
    case KL_TYPE_NULL:
        return cJSON_CreateNull();
    case KL_TYPE_BIGINT:
        /* as a string: a JSON double cannot hold every int64 */
        snprintf(buf, sizeof buf, "%lld", (long long)v->v.i);
        return cJSON_CreateString(buf);
    case KL_TYPE_DOUBLE:
        return cJSON_CreateNumber(v->v.d);
    case KL_TYPE_BOOL:
        return cJSON_CreateBool(v->v.b);
    case KL_TYPE_TIMESTAMP:
        kl_timestamp_iso(v->v.us, buf);
        return cJSON_CreateString(buf);
    case KL_TYPE_BINARY: {
        char *hex = malloc(v->v.s.len * 2 + 3);
        size_t o = 0;
        hex[o++] = '\\';
        hex[o++] = 'x';
        for (size_t i = 0; i < v->v.s.len; i++)
            o += (size_t)sprintf(hex + o, "%02x", (unsigned char)v->v.s.ptr[i]);
        hex[o] = '\0';
        cJSON *s = cJSON_CreateString(hex);
        free(hex);
        return s;
    }
    default: {
        char *t = malloc(v->v.s.len + 1);
        memcpy(t, v->v.s.ptr, v->v.s.len);
        t[v->v.s.len] = '\0';
        cJSON *s = cJSON_CreateString(t);
        free(t);
        return s;
    }
    }
}

/* Normalises the corpus and describes the outcome. */
static cJSON *run_corpus(enum kl_write_disposition wd)
{
    size_t len;
    char *text = kl_test_read_fixture("normalize/corpus.jsonl", &len);
    struct kl_normalizer_options o = {
        .stream_name = STREAM, .parse_json = true, .load_id = LOAD_ID, .write_disposition = wd};
    struct kl_err err;
    struct kl_normalizer *n = kl_normalizer_create(&o, kl_schema_create("kinesis"), &err);
    struct kl_row_batch b;
    size_t n_msgs = 0;
    assert_non_null(n);
    for (char *line = strtok(text, "\n"); line != NULL; line = strtok(NULL, "\n")) {
        cJSON *j = cJSON_Parse(line);
        struct kl_message m;
        unsigned char *data;
        size_t dlen;
        const char *b64 = cJSON_GetObjectItem(j, "data_b64")->valuestring;
        assert_non_null(j);
        data = malloc(kl_base64_decoded_max(strlen(b64)) + 1);
        assert_int_equal(kl_base64_decode(b64, strlen(b64), data, &dlen), 0);
        memset(&m, 0, sizeof m);
        m.stream_name = STREAM;
        m.shard_id = cJSON_GetObjectItem(j, "shard_id")->valuestring;
        m.sequence = cJSON_GetObjectItem(j, "sequence")->valuestring;
        m.partition_key = cJSON_GetObjectItem(j, "partition_key")->valuestring;
        m.arrival_ms = (int64_t)cJSON_GetObjectItem(j, "arrival_ms")->valuedouble;
        m.sub_sequence = -1;
        m.data = data;
        m.data_len = dlen;
        assert_int_equal(kl_msg_id(m.shard_id, m.sequence, -1, m.msg_id, NULL), KL_OK);
        if (kl_normalizer_add(n, &m, &err) != KL_OK)
            fail_msg("message %zu: %s", n_msgs, err.msg);
        free(data);
        cJSON_Delete(j);
        n_msgs++;
    }
    assert_int_equal(kl_normalizer_close(n, &b, &err), KL_OK);

    cJSON *doc = cJSON_CreateObject();
    cJSON_AddStringToObject(doc, "stream_name", STREAM);
    cJSON_AddStringToObject(doc, "load_id", LOAD_ID);
    cJSON_AddStringToObject(doc, "write_disposition", wd == KL_WRITE_MERGE ? "merge" : "append");
    cJSON_AddNumberToObject(doc, "messages", (double)n_msgs);
    cJSON_AddNumberToObject(doc, "root_rows", (double)b.n_messages);
    cJSON *dead = cJSON_AddArrayToObject(doc, "dead_letters");
    for (size_t i = 0; i < b.n_dead_letters; i++) {
        cJSON *d = cJSON_CreateObject();
        cJSON_AddStringToObject(d, "sequence", b.dead_letters[i].sequence);
        cJSON_AddStringToObject(d, "error", b.dead_letters[i].error);
        cJSON_AddItemToArray(dead, d);
    }
    cJSON *tables = cJSON_AddObjectToObject(doc, "tables");
    cJSON *counts = cJSON_AddObjectToObject(doc, "row_counts");
    for (size_t t = 0; t < b.n_tables; t++) {
        const struct kl_table_rows *tr = &b.tables[t];
        const struct kl_table *tb = &b.schema->tables[tr->table];
        cJSON *tj = cJSON_CreateObject(), *cols, *rows;
        cJSON_AddStringToObject(tj, "parent", tb->parent);
        cJSON_AddNumberToObject(tj, "rows", (double)tr->n_rows);
        cols = cJSON_AddArrayToObject(tj, "columns");
        for (size_t c = 0; c < tr->n_columns; c++) {
            const struct kl_column *col = &tb->columns[c];
            cJSON *cj = cJSON_CreateObject();
            cJSON_AddStringToObject(cj, "name", col->name);
            cJSON_AddStringToObject(cj, "data_type", kl_data_type_name(col->type));
            cJSON_AddBoolToObject(cj, "nullable", col->nullable);
            if (col->unique)
                cJSON_AddBoolToObject(cj, "unique", true);
            if (col->primary_key)
                cJSON_AddBoolToObject(cj, "primary_key", true);
            if (col->variant)
                cJSON_AddBoolToObject(cj, "variant", true);
            cJSON_AddItemToArray(cols, cj);
        }
        rows = cJSON_AddArrayToObject(tj, "data");
        for (size_t r = 0; r < tr->n_rows; r++) {
            cJSON *row = cJSON_CreateArray();
            for (size_t c = 0; c < tr->n_columns; c++)
                cJSON_AddItemToArray(row, cell_json(&tr->cells[r * tr->n_columns + c]));
            cJSON_AddItemToArray(rows, row);
        }
        cJSON_AddItemToObject(tables, tb->name, tj);
        cJSON_AddNumberToObject(counts, tb->name, (double)tr->n_rows);
    }
    kl_normalizer_destroy(n);
    free(text);
    return doc;
}

static void corpus_matches_expected(void **state)
{
    (void)state;
    cJSON *doc = run_corpus(KL_WRITE_APPEND);
    char *got = cJSON_Print(doc);
    const char *w = getenv("KL_CORPUS_WRITE");
    if (w != NULL && strcmp(w, "1") == 0) {
        FILE *f = fopen(KL_SOURCE_DIR "/tests/fixtures/normalize/corpus.expected.json", "w");
        assert_non_null(f);
        fputs(got, f);
        fputc('\n', f);
        fclose(f);
    } else {
        size_t len;
        char *want_text = kl_test_read_fixture("normalize/corpus.expected.json", &len);
        cJSON *want = cJSON_Parse(want_text);
        assert_non_null(want);
        char *a = cJSON_PrintUnformatted(doc), *b = cJSON_PrintUnformatted(want);
        if (strcmp(a, b) != 0) {
            size_t i = 0;
            while (a[i] && a[i] == b[i])
                i++;
            fail_msg("corpus differs at %zu: got ...%.120s... want ...%.120s...", i,
                     a + (i > 40 ? i - 40 : 0), b + (i > 40 ? i - 40 : 0));
        }
        free(a);
        free(b);
        cJSON_Delete(want);
        free(want_text);
    }
    free(got);
    cJSON_Delete(doc);
}

/* Normalising the same corpus twice gives the same ids: replays are idempotent. */
static void corpus_is_deterministic(void **state)
{
    (void)state;
    cJSON *a = run_corpus(KL_WRITE_MERGE), *b = run_corpus(KL_WRITE_MERGE);
    char *sa = cJSON_PrintUnformatted(a), *sb = cJSON_PrintUnformatted(b);
    assert_string_equal(sa, sb);
    free(sa);
    free(sb);
    cJSON_Delete(a);
    cJSON_Delete(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(corpus_matches_expected),
        cmocka_unit_test(corpus_is_deterministic),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
