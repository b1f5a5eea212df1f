/*
 * The normaliser object: its options, its lifetime, and a message's way in:
 * the `_kinesis` envelope dlt's kinesis source builds around the payload,
 * or a dead letter when Data is not a JSON object. The work is split by
 * concept: flatten.c (a message into rows), evolve.c and coerce_value.c
 * (columns, variants, cells), paths.c and kmap.c (the name caches), batch.c
 * (the chunk and its output).
 */
#include "core/normalize/normalizer.h"
#include "core/kinesis/message.h"
#include "core/normalize/internal.h"
#include "core/normalize/json.h"
#include "core/normalize/naming.h"
#include "core/normalize/schema.h"
#include "core/util/arena.h"
#include "core/util/buf.h"
#include "core/util/digest.h"
#include "core/util/err.h"

#include <stdlib.h>
#include <string.h>

struct kl_normalizer *kl_normalizer_create(const struct kl_normalizer_options *opt,
                                           struct kl_schema *schema, struct kl_err *err)
{
    struct kl_normalizer *n = calloc(1, sizeof *n);
    if (n == NULL) {
        kl_schema_destroy(schema);
        kl_err_set(err, KL_ERR_NOMEM, "out of memory");
        return NULL;
    }
    n->opt = *opt;
    n->stream_name = kl_norm_dupn(opt->stream_name ? opt->stream_name : "",
                                  opt->stream_name ? strlen(opt->stream_name) : 0);
    n->table_name = opt->table_name ? kl_norm_dupn(opt->table_name, strlen(opt->table_name)) : NULL;
    n->load_id =
        kl_norm_dupn(opt->load_id ? opt->load_id : "", opt->load_id ? strlen(opt->load_id) : 0);
    n->opt.stream_name = n->stream_name;
    n->opt.table_name = n->table_name;
    n->opt.load_id = n->load_id;
    if (n->opt.max_chunk_bytes == 0)
        n->opt.max_chunk_bytes = (size_t)512 * 1024 * 1024;
    n->schema = schema ? schema : kl_schema_create(KL_SCHEMA_NAME);
    n->root_tctx = NONE;
    kl_json_doc_init(&n->doc);
    kl_json_doc_init(&n->scratch_doc);
    kl_arena_init(&n->msg, (size_t)16 * 1024, 0);
    kl_arena_init(&n->batch, (size_t)256 * 1024, n->opt.max_chunk_bytes);
    kl_buf_init(&n->scratch, (size_t)64 * 1024 * 1024);
    if (n->stream_name == NULL || n->load_id == NULL || n->schema == NULL ||
        (opt->table_name && n->table_name == NULL)) {
        kl_normalizer_destroy(n);
        kl_err_set(err, KL_ERR_NOMEM, "out of memory");
        return NULL;
    }
    const char *root = n->table_name ? n->table_name : n->stream_name;
    if (kl_naming_is_blank(root, strlen(root))) {
        kl_normalizer_destroy(n);
        kl_err_set(err, KL_ERR_INVALID, "no table name: give a stream name or a table name");
        return NULL;
    }
    return n;
}

void kl_normalizer_destroy(struct kl_normalizer *n)
{
    if (n == NULL)
        return;
    kl_norm_drop_caches(n);
    free(n->nodes);
    free(n->tctxs);
    free(n->nts);
    free(n->nt_of_table);
    free(n->row);
    free(n->lists);
    free(n->dead);
    free(n->count_names);
    free(n->count_rows);
    free(n->chunk_rows);
    kl_json_doc_free(&n->doc);
    kl_json_doc_free(&n->scratch_doc);
    kl_arena_free(&n->msg);
    kl_arena_free(&n->batch);
    kl_buf_free(&n->scratch);
    kl_schema_destroy(n->schema);
    free(n->stream_name);
    free(n->table_name);
    free(n->load_id);
    free(n);
}

/* What the open chunk's rows take: the strings and dead letters in the
 * arena, the sparse cells, and the dense rows closing will make. */
static size_t footprint(const struct kl_normalizer *n)
{
    size_t bytes = kl_arena_used(&n->batch);
    for (size_t i = 0; i < n->n_nts; i++) {
        const struct ntable *nt = &n->nts[i];
        bytes += nt->n_cells * sizeof *nt->cells + nt->n_rows * sizeof *nt->row_start +
                 nt->n_rows * n->schema->tables[nt->table].n_columns * sizeof(struct kl_value);
    }
    return bytes;
}

int kl_normalizer_add(struct kl_normalizer *n, const struct kl_message *m, struct kl_err *err)
{
    char reason[160];
    const struct kl_json *payload = NULL;
    int rc;

    if ((rc = kl_norm_root_context(n, err)))
        return rc;
    kl_arena_reset(&n->msg);
    if (n->opt.parse_json) {
        rc = kl_json_parse_object(&n->doc, m->data, m->data_len, &payload, reason, sizeof reason);
        if (rc == KL_ERR_INVALID)
            return kl_norm_dead_letter(n, m, reason, err);
        if (rc != KL_OK)
            return kl_err_set(err, rc, "%s", reason);
    }

    /* the envelope dlt's kinesis source builds, then message.update(payload) */
    struct kl_json_member *env = kl_arena_alloc(&n->msg, 6 * sizeof *env);
    struct kl_json_member *root;
    uint32_t n_root = 0, n_env = 0, cap_root = 3 + (payload ? payload->len : 0);
    root = kl_arena_alloc(&n->msg, cap_root * sizeof *root);
    if (env == NULL || root == NULL)
        return kl_norm_oom(n, err);
    memset(env, 0, 6 * sizeof *env);
    memset(root, 0, cap_root * sizeof *root);
#define ENV_STR(k, str)                                                                            \
    do {                                                                                           \
        env[n_env].key = k;                                                                        \
        env[n_env].key_len = (uint32_t)strlen(k);                                                  \
        env[n_env].value.type = KL_JSON_STRING;                                                    \
        env[n_env].value.u.s = (str) ? (str) : "";                                                 \
        env[n_env].value.len = (uint32_t)strlen(env[n_env].value.u.s);                             \
        n_env++;                                                                                   \
    } while (0)
    ENV_STR("shard_id", m->shard_id);
    ENV_STR("seq_no", m->sequence);
    env[n_env].key = "ts";
    env[n_env].key_len = 2;
    env[n_env].value.type = KL_JSON_TIMESTAMP;
    env[n_env].value.i = m->arrival_ms * 1000;
    n_env++;
    ENV_STR("partition", m->partition_key);
    ENV_STR("stream_name", n->stream_name[0] ? n->stream_name : m->stream_name);
    if (m->sub_sequence >= 0) {
        env[n_env].key = "sub_seq_no";
        env[n_env].key_len = 10;
        env[n_env].value.type = KL_JSON_NUMBER;
        env[n_env].value.num = KL_JSON_INT;
        env[n_env].value.i = m->sub_sequence;
        env[n_env].value.u.s = "";
        n_env++;
    }
#undef ENV_STR
    root[0].key = "_kinesis";
    root[0].key_len = 8;
    root[0].value.type = KL_JSON_OBJECT;
    root[0].value.len = n_env;
    root[0].value.u.members = env;
    root[1].key = "_kinesis_msg_id";
    root[1].key_len = 15;
    root[1].value.type = KL_JSON_STRING;
    root[1].value.u.s = m->msg_id;
    root[1].value.len = (uint32_t)strlen(m->msg_id);
    n_root = 2;
    if (payload != NULL) {
        for (uint32_t i = 0; i < payload->len; i++) {
            const struct kl_json_member *pm = &payload->u.members[i];
            if (pm->key_len == 8 && memcmp(pm->key, "_kinesis", 8) == 0)
                root[0].value = pm->value;
            else if (pm->key_len == 15 && memcmp(pm->key, "_kinesis_msg_id", 15) == 0)
                root[1].value = pm->value;
            else
                root[n_root++] = *pm;
        }
    } else {
        root[2].key = "data";
        root[2].key_len = 4;
        root[2].value.type = KL_JSON_BYTES;
        root[2].value.u.s = (const char *)m->data;
        root[2].value.len = (uint32_t)m->data_len;
        n_root = 3;
    }

    /* the root row id: digest of the record's own `_kinesis_msg_id` */
    kl_digest_b64(m->msg_id, strlen(m->msg_id), KL_DLT_ID_BYTES, n->root_id);
    n->n_row = 0;
    n->n_lists = 0;
    rc = kl_norm_normalize_row(n, n->root_tctx, root, n_root, NULL, NULL, 0,
                               KL_NORMALIZER_MAX_NESTING, true, err);
    if (rc != KL_OK)
        return rc;
    n->n_messages++;
    return KL_OK;
}

int kl_normalizer_set_load_id(struct kl_normalizer *n, const char *load_id, struct kl_err *err)
{
    char *copy;
    if (strcmp(n->load_id, load_id) == 0)
        return KL_OK;
    copy = kl_norm_dupn(load_id, strlen(load_id));
    if (copy == NULL)
        return kl_err_set(err, KL_ERR_NOMEM, "out of memory");
    free(n->load_id);
    n->load_id = copy;
    n->opt.load_id = n->load_id;
    return KL_OK;
}

bool kl_normalizer_full(const struct kl_normalizer *n)
{
    return n->opt.chunk_bytes_target > 0 && footprint(n) > n->opt.chunk_bytes_target;
}

const struct kl_schema *kl_normalizer_schema(const struct kl_normalizer *n)
{
    return n->schema;
}

int kl_normalizer_replace_schema(struct kl_normalizer *n, struct kl_schema *schema,
                                 struct kl_err *err)
{
    if (schema == NULL)
        return kl_err_set(err, KL_ERR_INVALID, "no schema");
    kl_normalizer_reset(n, false);
    kl_norm_drop_caches(n);
    /* counts keep table names: re-point them at the new schema's names */
    for (size_t k = 0; k < n->n_counts; k++) {
        size_t ti;
        if (kl_schema_find_table(schema, n->count_names[k], &ti))
            n->count_names[k] = schema->tables[ti].name;
    }
    kl_schema_destroy(n->schema);
    n->schema = schema;
    n->schema_dirty = false;
    return KL_OK;
}
