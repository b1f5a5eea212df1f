/*
 * Schema bookkeeping and dlt's stored-schema document. The document is built
 * with cJSON (no big numbers here); the version hash sorts a copy of it as
 * Python's json.dumps(sort_keys=True) would before hashing.
 */
#include "core/normalize/schema.h"
#include "core/normalize/internal.h"
#include "core/util/base64.h"
#include "core/util/buf.h"
#include "core/util/err.h"

#include <cjson/cJSON.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

static const char *const type_names[] = {
    [KL_TYPE_NULL] = "null",     [KL_TYPE_TEXT] = "text",       [KL_TYPE_BIGINT] = "bigint",
    [KL_TYPE_DOUBLE] = "double", [KL_TYPE_BOOL] = "bool",       [KL_TYPE_TIMESTAMP] = "timestamp",
    [KL_TYPE_BINARY] = "binary", [KL_TYPE_DECIMAL] = "decimal", [KL_TYPE_JSON] = "json",
};

const char *kl_data_type_name(enum kl_data_type t)
{
    if ((size_t)t < sizeof type_names / sizeof type_names[0] && type_names[t] != NULL)
        return type_names[t];
    return "unknown";
}

int kl_data_type_from_name(const char *name, enum kl_data_type *out)
{
    for (size_t i = KL_TYPE_TEXT; i < sizeof type_names / sizeof type_names[0]; i++) {
        if (strcmp(name, type_names[i]) == 0) {
            *out = (enum kl_data_type)i;
            return KL_OK;
        }
    }
    if (strcmp(name, "complex") == 0) {
        *out = KL_TYPE_JSON;
        return KL_OK;
    }
    if (strcmp(name, "wei") == 0) {
        *out = KL_TYPE_DECIMAL;
        return KL_OK;
    }
    return KL_ERR_INVALID;
}

static bool copy_name(char dst[KL_IDENT_MAX], const char *src)
{
    size_t n = strlen(src);
    if (n >= KL_IDENT_MAX)
        return false;
    memcpy(dst, src, n + 1);
    return true;
}

struct kl_schema *kl_schema_create(const char *name)
{
    struct kl_schema *s = calloc(1, sizeof *s);
    if (s == NULL)
        return NULL;
    if (!copy_name(s->name, name) || kl_schema_bump_version(s, NULL, NULL) != KL_OK) {
        free(s);
        return NULL;
    }
    return s;
}

void kl_schema_destroy(struct kl_schema *s)
{
    if (s == NULL)
        return;
    for (size_t i = 0; i < s->n_tables; i++)
        free(s->tables[i].columns);
    free(s->tables);
    free(s);
}

struct kl_schema *kl_schema_clone(const struct kl_schema *s)
{
    struct kl_schema *c = malloc(sizeof *c);
    if (c == NULL)
        return NULL;
    *c = *s;
    c->tables = NULL;
    c->cap_tables = c->n_tables = 0;
    if (s->n_tables) {
        c->tables = calloc(s->n_tables, sizeof *c->tables);
        if (c->tables == NULL)
            goto fail;
        c->cap_tables = s->n_tables;
    }
    for (size_t i = 0; i < s->n_tables; i++) {
        struct kl_table *t = &c->tables[i];
        *t = s->tables[i];
        t->columns = NULL;
        t->cap_columns = t->n_columns;
        if (t->n_columns) {
            t->columns = malloc(t->n_columns * sizeof *t->columns);
            if (t->columns == NULL)
                goto fail;
            memcpy(t->columns, s->tables[i].columns, t->n_columns * sizeof *t->columns);
        }
        c->n_tables = i + 1;
    }
    return c;
fail:
    kl_schema_destroy(c);
    return NULL;
}

bool kl_schema_find_table(const struct kl_schema *s, const char *name, size_t *idx)
{
    for (size_t i = 0; i < s->n_tables; i++) {
        if (strcmp(s->tables[i].name, name) == 0) {
            if (idx)
                *idx = i;
            return true;
        }
    }
    return false;
}

bool kl_schema_find_column(const struct kl_table *t, const char *name, size_t *idx)
{
    for (size_t i = 0; i < t->n_columns; i++) {
        if (strcmp(t->columns[i].name, name) == 0) {
            if (idx)
                *idx = i;
            return true;
        }
    }
    return false;
}

int kl_schema_add_table(struct kl_schema *s, const char *name, const char *parent,
                        enum kl_write_disposition wd, size_t *idx, struct kl_err *err)
{
    struct kl_table t;
    memset(&t, 0, sizeof t);
    if (!copy_name(t.name, name) || !copy_name(t.parent, parent ? parent : ""))
        return kl_err_set(err, KL_ERR_INVALID, "table name too long: %.80s", name);
    if (kl_schema_find_table(s, name, NULL))
        return kl_err_set(err, KL_ERR_CONFLICT, "table %s exists", name);
    if (s->n_tables == s->cap_tables) {
        size_t cap = s->cap_tables ? s->cap_tables * 2 : 8;
        struct kl_table *nt = realloc(s->tables, cap * sizeof *nt);
        if (nt == NULL)
            return kl_err_set(err, KL_ERR_NOMEM, "out of memory");
        s->tables = nt;
        s->cap_tables = cap;
    }
    t.write_disposition = wd;
    s->tables[s->n_tables] = t;
    if (idx)
        *idx = s->n_tables;
    s->n_tables++;
    return KL_OK;
}

int kl_schema_add_column(struct kl_schema *s, size_t table, const struct kl_column *col,
                         size_t *idx, struct kl_err *err)
{
    struct kl_table *t;
    if (table >= s->n_tables)
        return kl_err_set(err, KL_ERR_INVALID, "no table %zu", table);
    t = &s->tables[table];
    if (memchr(col->name, '\0', KL_IDENT_MAX) == NULL || col->name[0] == '\0')
        return kl_err_set(err, KL_ERR_INVALID, "bad column name in %s", t->name);
    if (kl_schema_find_column(t, col->name, NULL))
        return kl_err_set(err, KL_ERR_CONFLICT, "column %s.%s exists", t->name, col->name);
    if (t->n_columns == t->cap_columns) {
        size_t cap = t->cap_columns ? t->cap_columns * 2 : 16;
        struct kl_column *nc = realloc(t->columns, cap * sizeof *nc);
        if (nc == NULL)
            return kl_err_set(err, KL_ERR_NOMEM, "out of memory");
        t->columns = nc;
        t->cap_columns = cap;
    }
    t->columns[t->n_columns] = *col;
    if (idx)
        *idx = t->n_columns;
    t->n_columns++;
    return KL_OK;
}

/* dlt's default not_null hints: the columns it makes non-nullable. */
static const char *const not_null[] = {"_dlt_id", "_dlt_root_id", "_dlt_parent_id", "_dlt_list_idx",
                                       "_dlt_load_id"};
#define N_NOT_NULL (sizeof not_null / sizeof not_null[0])

bool kl_norm_not_null_hint(const char *name)
{
    for (size_t i = 0; i < N_NOT_NULL; i++) {
        if (strcmp(name, not_null[i]) == 0)
            return true;
    }
    return false;
}

/* One column as dlt stores it: hints only when set. */
static cJSON *column_doc(const char *name, const char *type, bool nullable)
{
    cJSON *c = cJSON_CreateObject();
    cJSON_AddStringToObject(c, "name", name);
    cJSON_AddStringToObject(c, "data_type", type);
    cJSON_AddBoolToObject(c, "nullable", nullable);
    return c;
}

/* dlt 0.5.4's name of a type: engine 9 calls json "complex". */
static const char *stored_type_name(enum kl_data_type t)
{
    return t == KL_TYPE_JSON ? "complex" : kl_data_type_name(t);
}

/* The columns of dlt's system tables: name, type, nullable, unique. */
struct sys_col {
    const char *name;
    const char *type;
    bool nullable;
    bool unique;
};

static const struct sys_col VERSION_COLS[] = {
    {"version", "bigint", false, false},        {"engine_version", "bigint", false, false},
    {"inserted_at", "timestamp", false, false}, {"schema_name", "text", false, false},
    {"version_hash", "text", false, false},     {"schema", "text", false, false},
};
static const struct sys_col LOADS_COLS[] = {
    {"load_id", "text", false, false},
    {"schema_name", "text", true, false},
    {"status", "bigint", false, false},
    {"inserted_at", "timestamp", false, false},
    {"schema_version_hash", "text", true, false},
};
static const struct sys_col STATE_COLS[] = {
    {"version", "bigint", false, false},       {"engine_version", "bigint", false, false},
    {"pipeline_name", "text", false, false},   {"state", "text", false, false},
    {"created_at", "timestamp", false, false}, {"version_hash", "text", true, false},
    {"_dlt_load_id", "text", false, false},    {"_dlt_id", "text", false, true},
};

/* dlt's system tables as its schema lists them: the version and loads
 * tables (write disposition skip), and the pipeline state table, which
 * dlt adds as the resource `_dlt_pipeline_state` when it first stores the
 * state (kinesis-loader stores it at the end of every load). */
static const struct sys_table {
    const char *name;
    const struct sys_col *cols;
    size_t n_cols;
    const char *description; /* NULL: the pipeline state table */
} SYS_TABLES[] = {
    {"_dlt_version", VERSION_COLS, sizeof VERSION_COLS / sizeof VERSION_COLS[0],
     "Created by DLT. Tracks schema updates"},
    {"_dlt_loads", LOADS_COLS, sizeof LOADS_COLS / sizeof LOADS_COLS[0],
     "Created by DLT. Tracks completed loads"},
    {"_dlt_pipeline_state", STATE_COLS, sizeof STATE_COLS / sizeof STATE_COLS[0], NULL},
};
#define N_SYS_TABLES (sizeof SYS_TABLES / sizeof SYS_TABLES[0])

/* dlt's normaliser marks a table that received rows; every table of ours has. */
static void add_seen_data(cJSON *t)
{
    cJSON *x = cJSON_AddObjectToObject(t, "x-normalizer");
    if (x != NULL)
        cJSON_AddBoolToObject(x, "seen-data", true);
}

static void add_system_table(cJSON *tables, const struct sys_table *st)
{
    cJSON *t = cJSON_CreateObject(), *cols;
    if (st->description != NULL)
        cJSON_AddStringToObject(t, "name", st->name);
    cols = cJSON_AddObjectToObject(t, "columns");
    for (size_t i = 0; i < st->n_cols; i++) {
        cJSON *c = column_doc(st->cols[i].name, st->cols[i].type, st->cols[i].nullable);
        if (st->cols[i].unique)
            cJSON_AddBoolToObject(c, "unique", true);
        cJSON_AddItemToObject(cols, st->cols[i].name, c);
    }
    if (st->description != NULL) {
        cJSON_AddStringToObject(t, "write_disposition", "skip");
        cJSON_AddStringToObject(t, "resource", st->name);
        cJSON_AddStringToObject(t, "description", st->description);
    } else {
        cJSON_AddStringToObject(t, "write_disposition", "append");
        cJSON_AddStringToObject(t, "file_format", "preferred");
        cJSON_AddStringToObject(t, "name", st->name);
        cJSON_AddStringToObject(t, "resource", st->name);
        add_seen_data(t);
    }
    cJSON_AddItemToObject(tables, st->name, t);
}

/* A column of ours with the hints dlt 0.5.4 gives it (engine 9: the row id
 * is `unique`, the parent id a `foreign_key`; no row_key or parent_key). */
static cJSON *user_column(const struct kl_table *t, const struct kl_column *col)
{
    cJSON *cj = column_doc(col->name, stored_type_name(col->type), col->nullable);
    if (col->unique)
        cJSON_AddBoolToObject(cj, "unique", true);
    if (col->primary_key)
        cJSON_AddBoolToObject(cj, "primary_key", true);
    if (t->parent[0] && strcmp(col->name, "_dlt_parent_id") == 0)
        cJSON_AddBoolToObject(cj, "foreign_key", true);
    if (t->parent[0] && strcmp(col->name, "_dlt_root_id") == 0)
        cJSON_AddBoolToObject(cj, "root_key", true);
    if (col->variant)
        cJSON_AddBoolToObject(cj, "variant", true);
    return cj;
}

static void add_user_table(cJSON *tables, const struct kl_table *t)
{
    cJSON *tj = cJSON_CreateObject(), *cols;
    if (t->parent[0])
        cJSON_AddStringToObject(tj, "name", t->name);
    cols = cJSON_AddObjectToObject(tj, "columns");
    for (size_t c = 0; c < t->n_columns; c++)
        cJSON_AddItemToObject(cols, t->columns[c].name, user_column(t, &t->columns[c]));
    if (t->parent[0]) {
        cJSON_AddStringToObject(tj, "parent", t->parent);
    } else {
        cJSON_AddStringToObject(tj, "write_disposition",
                                kl_write_disposition_name(t->write_disposition));
        cJSON_AddStringToObject(tj, "name", t->name);
        cJSON_AddStringToObject(tj, "resource", t->name);
    }
    add_seen_data(tj);
    cJSON_AddItemToObject(tables, t->name, tj);
}

static void add_strings(cJSON *obj, const char *key, const char *const *v, size_t n)
{
    cJSON *arr = cJSON_AddArrayToObject(obj, key);
    for (size_t i = 0; arr != NULL && i < n; i++)
        cJSON_AddItemToArray(arr, cJSON_CreateString(v[i]));
}

/* The relational normaliser's settings; under merge dlt propagates each
 * merge root's `_dlt_id` to its children as `_dlt_root_id`. */
static void add_normalizers(cJSON *doc, const struct kl_schema *s)
{
    cJSON *norm = cJSON_AddObjectToObject(doc, "normalizers"), *json, *tables = NULL;
    cJSON_AddStringToObject(norm, "names", "snake_case");
    json = cJSON_AddObjectToObject(norm, "json");
    cJSON_AddStringToObject(json, "module", "dlt.common.normalizers.json.relational");
    for (size_t i = 0; i < s->n_tables; i++) {
        const struct kl_table *t = &s->tables[i];
        cJSON *p;
        if (t->parent[0] || t->write_disposition != KL_WRITE_MERGE)
            continue;
        if (tables == NULL) {
            cJSON *config = cJSON_AddObjectToObject(json, "config");
            cJSON *prop = cJSON_AddObjectToObject(config, "propagation");
            tables = cJSON_AddObjectToObject(prop, "tables");
        }
        p = cJSON_AddObjectToObject(tables, t->name);
        cJSON_AddStringToObject(p, "_dlt_id", "_dlt_root_id");
    }
}

/* The document without version bookkeeping: what the hash covers. Its
 * shape is dlt 0.5.4's (schema engine 9), which dlt 0.5.4 reads as it is
 * and dlt 1.x migrates. */
static cJSON *content_doc(const struct kl_schema *s)
{
    static const char *const detections[] = {"iso_timestamp"};
    static const char *const parent_id[] = {"_dlt_parent_id"};
    static const char *const root_id[] = {"_dlt_root_id"};
    static const char *const row_id[] = {"_dlt_id"};
    cJSON *doc = cJSON_CreateObject(), *tables, *settings, *hints;
    if (doc == NULL)
        return NULL;
    cJSON_AddNumberToObject(doc, "engine_version", KL_SCHEMA_ENGINE_VERSION);
    cJSON_AddStringToObject(doc, "name", s->name);
    tables = cJSON_AddObjectToObject(doc, "tables");
    for (size_t i = 0; i < 2; i++)
        add_system_table(tables, &SYS_TABLES[i]);
    for (size_t i = 0; i < s->n_tables; i++)
        add_user_table(tables, &s->tables[i]);
    add_system_table(tables, &SYS_TABLES[2]);

    settings = cJSON_AddObjectToObject(doc, "settings");
    add_strings(settings, "detections", detections, 1);
    hints = cJSON_AddObjectToObject(settings, "default_hints");
    add_strings(hints, "not_null", not_null, N_NOT_NULL);
    add_strings(hints, "foreign_key", parent_id, 1);
    add_strings(hints, "root_key", root_id, 1);
    add_strings(hints, "unique", row_id, 1);
    add_normalizers(doc, s);
    return doc;
}

/* Sorts object members by key, recursively: json.dumps(sort_keys=True). */
static void sort_keys(cJSON *node)
{
    if (node == NULL)
        return;
    for (cJSON *c = node->child; c != NULL; c = c->next)
        sort_keys(c);
    if (!cJSON_IsObject(node) || node->child == NULL)
        return;
    /* insertion sort on the linked list (documents are small); the first
     * member starts the sorted list */
    cJSON *sorted = node->child, *c = sorted->next;
    sorted->prev = sorted->next = NULL;
    while (c != NULL) {
        cJSON *next = c->next;
        c->prev = c->next = NULL;
        if (strcmp(c->string, sorted->string) < 0) {
            c->next = sorted;
            sorted = c;
        } else {
            cJSON *p = sorted;
            while (p->next != NULL && strcmp(p->next->string, c->string) <= 0)
                p = p->next;
            c->next = p->next;
            p->next = c;
        }
        c = next;
    }
    /* restore cJSON's links: prev of the head is the tail */
    cJSON *tail = sorted;
    for (cJSON *p = sorted; p != NULL; p = p->next) {
        if (p->next)
            p->next->prev = p;
        tail = p;
    }
    sorted->prev = tail;
    node->child = sorted;
}

static int cmp_table_names(const void *a, const void *b)
{
    const cJSON *const *x = a, *const *y = b;
    return strcmp((*x)->string, (*y)->string);
}

/* dlt's second pass over the document: every table name (sorted), each
 * followed by its column names in their order, appended to `out`. */
static int table_column_names(const cJSON *doc, struct kl_buf *out, struct kl_err *err)
{
    const cJSON *tables = cJSON_GetObjectItemCaseSensitive(doc, "tables"), *t;
    size_t n = (size_t)cJSON_GetArraySize(tables), i = 0;
    const cJSON **order;
    int rc = KL_OK;

    if (n == 0)
        return KL_OK;
    order = malloc(n * sizeof(const cJSON *));
    if (order == NULL)
        return kl_err_set(err, KL_ERR_NOMEM, "out of memory");
    cJSON_ArrayForEach(t, tables)
    {
        if (i < n)
            order[i++] = t;
    }
    qsort(order, i, sizeof(const cJSON *), cmp_table_names);
    n = i;
    for (i = 0; i < n && rc == KL_OK; i++) {
        const cJSON *c;
        rc = kl_buf_append_str(out, order[i]->string, err);
        cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(order[i], "columns"))
        {
            if (rc == KL_OK)
                rc = kl_buf_append_str(out, c->string, err);
        }
    }
    free(order);
    return rc;
}

int kl_schema_version_hash(const struct kl_schema *s, char out[KL_SCHEMA_HASH_CAP],
                           struct kl_err *err)
{
    cJSON *doc = content_doc(s);
    char *text = NULL;
    struct kl_buf names;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned char md[32];
    unsigned int mdlen = 0;
    int rc = KL_OK;

    kl_buf_init(&names, (size_t)64 << 20);
    if (doc == NULL || ctx == NULL) {
        rc = kl_err_set(err, KL_ERR_NOMEM, "out of memory");
        goto cleanup;
    }
    /* the names first: sorting the keys loses the column order */
    rc = table_column_names(doc, &names, err);
    if (rc != KL_OK)
        goto cleanup;
    sort_keys(doc);
    text = cJSON_PrintUnformatted(doc);
    if (text == NULL) {
        rc = kl_err_set(err, KL_ERR_NOMEM, "out of memory");
        goto cleanup;
    }
    if (EVP_DigestInit_ex(ctx, EVP_sha3_256(), NULL) != 1 ||
        EVP_DigestUpdate(ctx, text, strlen(text)) != 1 ||
        EVP_DigestUpdate(ctx, names.data != NULL ? names.data : "", names.len) != 1 ||
        EVP_DigestFinal_ex(ctx, md, &mdlen) != 1 || mdlen != 32) {
        rc = kl_err_set(err, KL_ERR_INTERNAL, "SHA3-256 failed");
        goto cleanup;
    }
    kl_base64_encode(md, 32, out, true);
cleanup:
    kl_buf_free(&names);
    EVP_MD_CTX_free(ctx);
    free(text);
    cJSON_Delete(doc);
    return rc;
}

int kl_schema_bump_version(struct kl_schema *s, bool *changed, struct kl_err *err)
{
    char h[KL_SCHEMA_HASH_CAP];
    int rc = kl_schema_version_hash(s, h, err);
    if (rc != KL_OK)
        return rc;
    if (changed)
        *changed = false;
    if (s->version_hash[0] == '\0') {
        if (s->version == 0)
            s->version = 1;
    } else if (strcmp(h, s->version_hash) != 0) {
        s->version++;
        bool known = false;
        for (size_t i = 0; i < s->n_previous_hashes; i++)
            known = known || strcmp(s->previous_hashes[i], s->version_hash) == 0;
        if (!known) {
            size_t n = s->n_previous_hashes < KL_SCHEMA_PREVIOUS_HASHES
                           ? s->n_previous_hashes
                           : KL_SCHEMA_PREVIOUS_HASHES - 1;
            memmove(s->previous_hashes[1], s->previous_hashes[0], n * KL_SCHEMA_HASH_CAP);
            memcpy(s->previous_hashes[0], s->version_hash, KL_SCHEMA_HASH_CAP);
            s->n_previous_hashes = n + 1;
        }
        if (changed)
            *changed = true;
    }
    memcpy(s->version_hash, h, sizeof h);
    return KL_OK;
}

int kl_schema_to_json(const struct kl_schema *s, struct kl_buf *out, struct kl_err *err)
{
    cJSON *content = content_doc(s), *doc = cJSON_CreateObject(), *prev;
    char *text = NULL;
    int rc = KL_OK;
    if (content == NULL || doc == NULL) {
        rc = kl_err_set(err, KL_ERR_NOMEM, "out of memory");
        goto cleanup;
    }
    /* dlt's key order: version, version_hash, engine_version, name, tables, ... */
    cJSON_AddItemToObject(doc, "version", cJSON_CreateNumber((double)s->version));
    cJSON_AddStringToObject(doc, "version_hash", s->version_hash);
    while (content->child != NULL) {
        cJSON *item = cJSON_DetachItemViaPointer(content, content->child);
        cJSON_AddItemToObject(doc, item->string, item);
    }
    prev = cJSON_AddArrayToObject(doc, "previous_hashes");
    for (size_t i = 0; i < s->n_previous_hashes; i++)
        cJSON_AddItemToArray(prev, cJSON_CreateString(s->previous_hashes[i]));
    text = cJSON_PrintUnformatted(doc);
    if (text == NULL)
        rc = kl_err_set(err, KL_ERR_NOMEM, "out of memory");
    else
        rc = kl_buf_append(out, text, strlen(text), err);
cleanup:
    free(text);
    cJSON_Delete(content);
    cJSON_Delete(doc);
    return rc;
}

static bool jbool(const cJSON *o, const char *k)
{
    return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, k));
}

int kl_schema_from_json(const char *json, size_t len, struct kl_schema **out, struct kl_err *err)
{
    cJSON *doc = cJSON_ParseWithLength(json, len);
    struct kl_schema *s = NULL;
    const cJSON *name, *tables, *t;
    int rc = KL_OK;

    if (doc == NULL || !cJSON_IsObject(doc)) {
        rc = kl_err_set(err, KL_ERR_INVALID, "stored schema is not a JSON object");
        goto cleanup;
    }
    name = cJSON_GetObjectItemCaseSensitive(doc, "name");
    if (!cJSON_IsString(name)) {
        rc = kl_err_set(err, KL_ERR_INVALID, "stored schema has no name");
        goto cleanup;
    }
    s = calloc(1, sizeof *s);
    if (s == NULL) {
        rc = kl_err_set(err, KL_ERR_NOMEM, "out of memory");
        goto cleanup;
    }
    if (!copy_name(s->name, name->valuestring)) {
        rc = kl_err_set(err, KL_ERR_INVALID, "schema name too long");
        goto cleanup;
    }
    {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(doc, "version");
        const cJSON *h = cJSON_GetObjectItemCaseSensitive(doc, "version_hash");
        const cJSON *ph = cJSON_GetObjectItemCaseSensitive(doc, "previous_hashes"), *e;
        s->version = cJSON_IsNumber(v) ? (int64_t)v->valuedouble : 1;
        if (cJSON_IsString(h) && strlen(h->valuestring) < KL_SCHEMA_HASH_CAP)
            strcpy(s->version_hash, h->valuestring);
        cJSON_ArrayForEach(e, ph)
        {
            if (cJSON_IsString(e) && strlen(e->valuestring) < KL_SCHEMA_HASH_CAP &&
                s->n_previous_hashes < KL_SCHEMA_PREVIOUS_HASHES)
                strcpy(s->previous_hashes[s->n_previous_hashes++], e->valuestring);
        }
    }
    tables = cJSON_GetObjectItemCaseSensitive(doc, "tables");
    cJSON_ArrayForEach(t, tables)
    {
        const cJSON *parent = cJSON_GetObjectItemCaseSensitive(t, "parent");
        const cJSON *wd = cJSON_GetObjectItemCaseSensitive(t, "write_disposition");
        const cJSON *cols = cJSON_GetObjectItemCaseSensitive(t, "columns"), *c;
        const char *pname = cJSON_IsString(parent) ? parent->valuestring : "";
        enum kl_write_disposition w = KL_WRITE_APPEND;
        size_t ti = 0;
        if (t->string == NULL || (pname[0] == '\0' && strncmp(t->string, "_dlt_", 5) == 0))
            continue;
        if (cJSON_IsString(wd) && strcmp(wd->valuestring, "merge") == 0)
            w = KL_WRITE_MERGE;
        else if (cJSON_IsString(wd) && strcmp(wd->valuestring, "replace") == 0)
            w = KL_WRITE_REPLACE;
        if ((rc = kl_schema_add_table(s, t->string, pname, w, &ti, err)) != KL_OK)
            goto cleanup;
        cJSON_ArrayForEach(c, cols)
        {
            struct kl_column col;
            const cJSON *dt = cJSON_GetObjectItemCaseSensitive(c, "data_type");
            const cJSON *nl = cJSON_GetObjectItemCaseSensitive(c, "nullable");
            memset(&col, 0, sizeof col);
            if (c->string == NULL || !copy_name(col.name, c->string)) {
                rc = kl_err_set(err, KL_ERR_INVALID, "bad column in table %s", t->string);
                goto cleanup;
            }
            if (!cJSON_IsString(dt))
                continue; /* an incomplete column (hints only): not materialized */
            if (kl_data_type_from_name(dt->valuestring, &col.type) != KL_OK) {
                rc = kl_err_set(err, KL_ERR_INVALID, "unknown data type %s of %s.%s",
                                dt->valuestring, t->string, c->string);
                goto cleanup;
            }
            col.nullable = !cJSON_IsFalse(nl);
            col.unique = jbool(c, "unique");
            col.primary_key = jbool(c, "primary_key");
            col.variant = jbool(c, "variant");
            if ((rc = kl_schema_add_column(s, ti, &col, NULL, err)) != KL_OK)
                goto cleanup;
        }
    }
    /* A document of another engine (ours before engine 9 was 10) is stored
     * again in our shape: its hash is recomputed, and a changed one bumps
     * the version, so the next chunk writes the engine-9 document. */
    {
        const cJSON *ev = cJSON_GetObjectItemCaseSensitive(doc, "engine_version");
        bool other_engine = !cJSON_IsNumber(ev) || ev->valuedouble != KL_SCHEMA_ENGINE_VERSION;
        if ((s->version_hash[0] == '\0' || other_engine) &&
            (rc = kl_schema_bump_version(s, NULL, err)) != KL_OK)
            goto cleanup;
    }
    *out = s;
    s = NULL;
cleanup:
    kl_schema_destroy(s);
    cJSON_Delete(doc);
    return rc;
}
