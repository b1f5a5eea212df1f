/*
 * Shared destination helpers (see common.h).
 */
#include "core/dest/common.h"
#include "core/normalize/schema.h"
#include "core/util/buf.h"
#include "core/util/err.h"

#include <cjson/cJSON.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int kl_dest_ds_get(struct kl_dest_ds_list *l, const char *name, struct kl_dest_ds **out,
                   struct kl_err *err)
{
    struct kl_dest_ds *d;
    int rc = kl_dest_validate_dataset(name, err);

    if (rc != KL_OK)
        return rc;
    for (size_t i = 0; i < l->n; i++) {
        if (strcmp(l->items[i].name, name) == 0) {
            *out = &l->items[i];
            return KL_OK;
        }
    }
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 4;
        struct kl_dest_ds *items = realloc(l->items, cap * sizeof *items);
        if (items == NULL)
            return kl_err_set(err, KL_ERR_NOMEM, "dataset cache");
        l->items = items;
        l->cap = cap;
    }
    d = &l->items[l->n++];
    memset(d, 0, sizeof *d);
    snprintf(d->name, sizeof d->name, "%s", name);
    kl_sql_catalog_init(&d->cat);
    kl_sql_stmts_init(&d->indexes);
    kl_sql_stmts_init(&d->truncated);
    *out = d;
    return KL_OK;
}

void kl_dest_ds_list_free(struct kl_dest_ds_list *l)
{
    for (size_t i = 0; i < l->n; i++) {
        kl_sql_catalog_free(&l->items[i].cat);
        kl_sql_stmts_free(&l->items[i].indexes);
        kl_sql_stmts_free(&l->items[i].truncated);
    }
    free(l->items);
    memset(l, 0, sizeof *l);
}

void kl_dest_ds_list_invalidate(struct kl_dest_ds_list *l)
{
    for (size_t i = 0; i < l->n; i++) {
        l->items[i].prepared = false;
        l->items[i].cat_loaded = false;
        l->items[i].checked_schema = NULL;
    }
}

bool kl_sql_stmts_has(const struct kl_sql_stmts *s, const char *v)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->items[i], v) == 0)
            return true;
    return false;
}

int kl_sql_stmts_add(struct kl_sql_stmts *s, const char *v, struct kl_err *err)
{
    struct kl_buf b;
    int rc;

    kl_buf_init(&b, (size_t)1 << 20);
    rc = kl_buf_append_str(&b, v, err);
    if (rc == KL_OK)
        rc = kl_sql_stmts_take(s, &b, err);
    kl_buf_free(&b);
    return rc;
}

const struct kl_table *kl_dest_table_named(const struct kl_schema *s, const char *name)
{
    for (size_t i = 0; name != NULL && i < s->n_tables; i++)
        if (strcmp(s->tables[i].name, name) == 0)
            return &s->tables[i];
    return NULL;
}

int kl_dest_column_index(const struct kl_table *t, size_t n, const char *name)
{
    for (size_t i = 0; i < n && i < t->n_columns; i++)
        if (strcmp(t->columns[i].name, name) == 0)
            return (int)i;
    return -1;
}

/* Parent chains are short; the bound stops a cycle in a broken schema. */
#define MAX_DEPTH 64

int kl_dest_table_depth(const struct kl_schema *s, const struct kl_table *t)
{
    int depth = 0;
    while (t != NULL && t->parent[0] != '\0' && depth < MAX_DEPTH) {
        t = kl_dest_table_named(s, t->parent);
        depth++;
    }
    return t == NULL || depth >= MAX_DEPTH ? -1 : depth;
}

bool kl_dest_in_family(const struct kl_schema *s, const struct kl_table *t, const char *root)
{
    int guard = 0;
    while (t != NULL && guard++ < MAX_DEPTH) {
        if (t->parent[0] == '\0')
            return strcmp(t->name, root) == 0;
        t = kl_dest_table_named(s, t->parent);
    }
    return false;
}

bool kl_dest_in_family_by_name(const struct kl_sql_cat_table *t, const char *root)
{
    size_t rl = strlen(root);
    if (strcmp(t->name, root) == 0)
        return true;
    return strncmp(t->name, root, rl) == 0 && strncmp(t->name + rl, "__", 2) == 0 &&
           kl_sql_cat_table_find(t, "_dlt_parent_id") != NULL;
}

int kl_dest_plan_merge_indexes(enum kl_sql_dialect dialect, const struct kl_dest_ds *d,
                               const struct kl_row_batch *batch, struct kl_sql_stmts *out,
                               struct kl_sql_stmts *names, struct kl_sql_stmts *tables,
                               struct kl_err *err)
{
    const struct kl_schema *s = batch->schema;
    struct kl_buf b;
    int rc = KL_OK;

    kl_buf_init(&b, (size_t)1 << 20);
    for (size_t i = 0; rc == KL_OK && i < batch->n_tables; i++) {
        const struct kl_table *root = &s->tables[batch->tables[i].table];
        if (root->parent[0] != '\0')
            continue;
        for (size_t j = 0; rc == KL_OK && j < s->n_tables; j++) {
            const struct kl_table *t = &s->tables[j];
            const char *col = t == root ? "_kinesis_msg_id" : "_dlt_parent_id";
            char key[3 * KL_IDENT_MAX], name[KL_IDENT_MAX];

            if (t->n_columns == 0 || !kl_dest_in_family(s, t, root->name))
                continue;
            if (kl_dest_column_index(t, t->n_columns, col) < 0)
                continue;
            snprintf(key, sizeof key, "%s.%s", t->name, col);
            snprintf(name, sizeof name, "kl_%016llx", kl_sql_hash64(key));
            if (kl_sql_stmts_has(&d->indexes, name) || kl_sql_stmts_has(names, name))
                continue;
            rc = kl_sql_create_index(&b, dialect, d->name, t->name, col, err);
            if (rc == KL_OK)
                rc = kl_sql_stmts_take(out, &b, err);
            if (rc == KL_OK)
                rc = kl_sql_stmts_add(names, name, err);
            if (rc == KL_OK && tables != NULL)
                rc = kl_sql_stmts_add(tables, t->name, err);
        }
    }
    kl_buf_free(&b);
    return rc;
}

static int cmp_table_rows(const void *a, const void *b)
{
    const struct kl_table_rows *x = *(const struct kl_table_rows *const *)a;
    const struct kl_table_rows *y = *(const struct kl_table_rows *const *)b;
    return x->table < y->table ? -1 : x->table > y->table;
}

int kl_dest_table_order(const struct kl_row_batch *batch, const struct kl_table_rows ***out,
                        struct kl_err *err)
{
    const struct kl_table_rows **order;

    *out = NULL;
    if (batch == NULL || batch->n_tables == 0)
        return KL_OK;
    order = malloc(batch->n_tables * sizeof(const struct kl_table_rows *));
    if (order == NULL)
        return kl_err_set(err, KL_ERR_NOMEM, "table order");
    for (size_t i = 0; i < batch->n_tables; i++) {
        const struct kl_table_rows *tr = &batch->tables[i];
        if (tr->table >= batch->schema->n_tables ||
            tr->n_columns > batch->schema->tables[tr->table].n_columns) {
            free(order);
            return kl_err_set(err, KL_ERR_INVALID,
                              "batch table %zu does not match the schema (%zu tables)", tr->table,
                              batch->schema->n_tables);
        }
        order[i] = tr;
    }
    qsort(order, batch->n_tables, sizeof(const struct kl_table_rows *), cmp_table_rows);
    *out = order;
    return KL_OK;
}

int kl_dest_msg_ids(const struct kl_table *root, const struct kl_table_rows *tr, bool json,
                    struct kl_buf *out, struct kl_err *err)
{
    int key = kl_dest_column_index(root, tr->n_columns, "_kinesis_msg_id");
    size_t n = 0;
    int rc;

    if (key < 0)
        return kl_err_set(err, KL_ERR_INVALID, "merge: root table %s has no _kinesis_msg_id column",
                          root->name);
    rc = kl_buf_append(out, json ? "[" : "{", 1, err);
    for (size_t r = 0; rc == KL_OK && r < tr->n_rows; r++) {
        const struct kl_value *v = &tr->cells[r * tr->n_columns + (size_t)key];
        if (v->type != KL_TYPE_TEXT)
            continue;
        rc = n > 0 ? kl_buf_append(out, ",\"", 2, err) : kl_buf_append(out, "\"", 1, err);
        n++;
        for (size_t i = 0; rc == KL_OK && i < v->v.s.len; i++) {
            unsigned char c = (unsigned char)v->v.s.ptr[i];
            if (json && c < 0x20)
                rc = kl_buf_printf(out, err, "\\u%04x", c);
            else if (c == '"' || c == '\\')
                rc = kl_buf_printf(out, err, "\\%c", c);
            else
                rc = kl_buf_append(out, (const char *)&c, 1, err);
        }
        if (rc == KL_OK)
            rc = kl_buf_append(out, "\"", 1, err);
    }
    if (rc == KL_OK)
        rc = kl_buf_append(out, json ? "]" : "}", 1, err);
    return rc;
}

int kl_dest_plan_merge_deletes(enum kl_sql_dialect dialect, const struct kl_dest_ds *d,
                               const struct kl_schema *s, const struct kl_table *root,
                               struct kl_sql_stmts *out, struct kl_err *err)
{
    const char *match = dialect == KL_SQL_POSTGRES
                            ? " WHERE \"_kinesis_msg_id\" = ANY($1::varchar[])"
                            : " WHERE \"_kinesis_msg_id\" IN (SELECT value FROM json_each(?1))";
    struct kl_buf b;
    int max_depth = 0;
    int rc = KL_OK;

    for (size_t j = 0; j < s->n_tables; j++) {
        int dep = kl_dest_in_family(s, &s->tables[j], root->name)
                      ? kl_dest_table_depth(s, &s->tables[j])
                      : -1;
        if (dep > max_depth)
            max_depth = dep;
    }
    kl_buf_init(&b, (size_t)1 << 20);
    for (int depth = max_depth; rc == KL_OK && depth >= 0; depth--) {
        for (size_t j = 0; rc == KL_OK && j < s->n_tables; j++) {
            const struct kl_table *t = &s->tables[j];
            const struct kl_table *chain[MAX_DEPTH + 1];
            const struct kl_sql_cat_table *ct;

            if (!kl_dest_in_family(s, t, root->name) || kl_dest_table_depth(s, t) != depth)
                continue;
            ct = kl_sql_catalog_find(&d->cat, t->name);
            if (ct == NULL || (depth > 0 && kl_sql_cat_table_find(ct, "_dlt_parent_id") == NULL))
                continue; /* not created yet: nothing to delete */
            /* chain[0] = t, chain[depth] = root */
            chain[0] = t;
            for (int k = 1; k <= depth; k++)
                chain[k] = kl_dest_table_named(s, chain[k - 1]->parent);
            rc = kl_sql_on_table(&b, dialect, "DELETE FROM ", d->name, t->name, "", err);
            for (int k = 1; rc == KL_OK && k <= depth; k++) {
                rc = kl_buf_append_str(&b, " WHERE \"_dlt_parent_id\" IN (SELECT \"_dlt_id\" FROM ",
                                       err);
                if (rc == KL_OK)
                    rc = kl_sql_table_ref(&b, dialect, d->name, chain[k]->name, err);
            }
            if (rc == KL_OK)
                rc = kl_buf_append_str(&b, match, err);
            for (int k = 1; rc == KL_OK && k <= depth; k++)
                rc = kl_buf_append_str(&b, ")", err);
            if (rc == KL_OK)
                rc = kl_sql_stmts_take(out, &b, err);
        }
    }
    kl_buf_free(&b);
    return rc;
}

static int cmp_stream_rows(const void *a, const void *b)
{
    const struct kl_dest_stream_row *x = a, *y = b;
    int c = strcmp(x->stream, y->stream);
    return c != 0 ? c : strcmp(x->cp.position.shard_id, y->cp.position.shard_id);
}

int kl_dest_group_streams(const struct kl_dest_stream_row *rows, size_t n, bool sort,
                          struct kl_state_stream **out, size_t *n_out,
                          struct kl_checkpoint **cps_out, struct kl_err *err)
{
    struct kl_dest_stream_row *sorted = NULL;
    struct kl_state_stream *streams = NULL;
    struct kl_checkpoint *cps = NULL;
    size_t ns = 0, nc = 0;

    *out = NULL;
    *n_out = 0;
    *cps_out = NULL;
    if (n == 0)
        return KL_OK;
    sorted = sort ? malloc(n * sizeof *sorted) : NULL;
    streams = calloc(n, sizeof *streams);
    cps = calloc(n, sizeof *cps);
    if ((sort && sorted == NULL) || streams == NULL || cps == NULL) {
        free(sorted);
        free(streams);
        free(cps);
        return kl_err_set(err, KL_ERR_NOMEM, "state streams");
    }
    if (sort) {
        memcpy(sorted, rows, n * sizeof *sorted);
        qsort(sorted, n, sizeof *sorted, cmp_stream_rows);
    }
    for (size_t i = 0; i < n; i++) {
        const struct kl_dest_stream_row *r = sort ? &sorted[i] : &rows[i];
        bool cp = r->cp.position.shard_id[0] != '\0';
        size_t k = ns;

        if (ns > 0 && strcmp(streams[ns - 1].stream_name, r->stream) == 0)
            k = ns - 1;
        for (size_t j = 0; !cp && k == ns && j < ns; j++)
            if (strcmp(streams[j].stream_name, r->stream) == 0)
                k = j;
        if (k == ns) {
            /* Names point into `rows`, which outlives the result. */
            const struct kl_dest_stream_row *orig = rows;
            while (strcmp(orig->stream, r->stream) != 0)
                orig++;
            streams[ns].stream_name = orig->stream;
            streams[ns].checkpoints = &cps[nc];
            ns++;
        }
        if (cp) {
            cps[nc++] = r->cp;
            streams[k].n_checkpoints++;
        }
        if (r->has_last_run) {
            streams[k].has_last_run = true;
            streams[k].last_run_ms = r->last_run_ms;
        }
    }
    free(sorted);
    *out = streams;
    *n_out = ns;
    *cps_out = cps;
    return KL_OK;
}

int64_t kl_dest_schema_engine(const char *json)
{
    cJSON *doc = cJSON_Parse(json);
    const cJSON *ev = cJSON_GetObjectItemCaseSensitive(doc, "engine_version");
    int64_t engine = cJSON_IsNumber(ev) ? (int64_t)ev->valuedouble : KL_SCHEMA_ENGINE_VERSION;

    cJSON_Delete(doc);
    return engine;
}

void kl_dest_free_secret(char *s)
{
    if (s == NULL)
        return;
    OPENSSL_cleanse(s, strlen(s));
    free(s);
}
