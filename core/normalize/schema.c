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

static cJSON *system_table(cJSON *tables, const char *name, const char *wd, const char *desc)
{
    cJSON *t = cJSON_CreateObject();
    cJSON_AddStringToObject(t, "name", name);
    cJSON_AddItemToObject(t, "columns", cJSON_CreateObject());
    cJSON_AddStringToObject(t, "write_disposition", wd);
    cJSON_AddStringToObject(t, "resource", name);
    cJSON_AddStringToObject(t, "description", desc);
    cJSON_AddItemToObject(tables, name, t);
    return cJSON_GetObjectItemCaseSensitive(t, "columns");
}

static void add_col(cJSON *cols, const char *name, const char *type, bool nullable)
{
    cJSON_AddItemToObject(cols, name, column_doc(name, type, nullable));
}

/* The document without version bookkeeping: what the hash covers. */
static cJSON *content_doc(const struct kl_schema *s)
{
    cJSON *doc = cJSON_CreateObject(), *tables, *cols, *settings, *hints, *norm, *arr;
    if (doc == NULL)
        return NULL;
    cJSON_AddStringToObject(doc, "name", s->name);
    cJSON_AddNumberToObject(doc, "engine_version", KL_SCHEMA_ENGINE_VERSION);
    tables = cJSON_AddObjectToObject(doc, "tables");

    cols = system_table(tables, "_dlt_version", "skip", "Created by DLT. Tracks schema updates");
    add_col(cols, "version", "bigint", false);
    add_col(cols, "engine_version", "bigint", false);
    add_col(cols, "inserted_at", "timestamp", false);
    add_col(cols, "schema_name", "text", false);
    add_col(cols, "version_hash", "text", false);
    add_col(cols, "schema", "text", false);
    cols = system_table(tables, "_dlt_loads", "skip", "Created by DLT. Tracks completed loads");
    add_col(cols, "load_id", "text", false);
    add_col(cols, "schema_name", "text", true);
    add_col(cols, "status", "bigint", false);
    add_col(cols, "inserted_at", "timestamp", false);
    add_col(cols, "schema_version_hash", "text", true);

    for (size_t i = 0; i < s->n_tables; i++) {
        const struct kl_table *t = &s->tables[i];
        cJSON *tj = cJSON_CreateObject();
        cJSON_AddStringToObject(tj, "name", t->name);
        cols = cJSON_AddObjectToObject(tj, "columns");
        for (size_t c = 0; c < t->n_columns; c++) {
            const struct kl_column *col = &t->columns[c];
            cJSON *cj = column_doc(col->name, kl_data_type_name(col->type), col->nullable);
            if (col->unique)
                cJSON_AddBoolToObject(cj, "unique", true);
            if (col->primary_key)
                cJSON_AddBoolToObject(cj, "primary_key", true);
            if (strcmp(col->name, "_dlt_id") == 0)
                cJSON_AddBoolToObject(cj, "row_key", true);
            if (t->parent[0] && strcmp(col->name, "_dlt_parent_id") == 0)
                cJSON_AddBoolToObject(cj, "parent_key", true);
            if (t->parent[0] && strcmp(col->name, "_dlt_root_id") == 0)
                cJSON_AddBoolToObject(cj, "root_key", true);
            if (col->variant)
                cJSON_AddBoolToObject(cj, "variant", true);
            cJSON_AddItemToObject(cols, col->name, cj);
        }
        if (t->parent[0]) {
            cJSON_AddStringToObject(tj, "parent", t->parent);
        } else {
            cJSON_AddStringToObject(tj, "write_disposition",
                                    kl_write_disposition_name(t->write_disposition));
            cJSON_AddStringToObject(tj, "resource", t->name);
        }
        cJSON_AddItemToObject(tables, t->name, tj);
    }

    settings = cJSON_AddObjectToObject(doc, "settings");
    arr = cJSON_AddArrayToObject(settings, "detections");
    cJSON_AddItemToArray(arr, cJSON_CreateString("iso_timestamp"));
    hints = cJSON_AddObjectToObject(settings, "default_hints");
    {
        arr = cJSON_AddArrayToObject(hints, "not_null");
        for (size_t i = 0; i < N_NOT_NULL; i++)
            cJSON_AddItemToArray(arr, cJSON_CreateString(not_null[i]));
        arr = cJSON_AddArrayToObject(hints, "parent_key");
        cJSON_AddItemToArray(arr, cJSON_CreateString("_dlt_parent_id"));
        arr = cJSON_AddArrayToObject(hints, "root_key");
        cJSON_AddItemToArray(arr, cJSON_CreateString("_dlt_root_id"));
        arr = cJSON_AddArrayToObject(hints, "unique");
        cJSON_AddItemToArray(arr, cJSON_CreateString("_dlt_id"));
        arr = cJSON_AddArrayToObject(hints, "row_key");
        cJSON_AddItemToArray(arr, cJSON_CreateString("_dlt_id"));
    }
    norm = cJSON_AddObjectToObject(doc, "normalizers");
    cJSON_AddStringToObject(norm, "names", "snake_case");
    cJSON_AddItemToObject(norm, "json", cJSON_CreateObject());
    cJSON_AddStringToObject(cJSON_GetObjectItemCaseSensitive(norm, "json"), "module",
                            "dlt.common.normalizers.json.relational");
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

int kl_schema_version_hash(const struct kl_schema *s, char out[KL_SCHEMA_HASH_CAP],
                           struct kl_err *err)
{
    int rc = KL_OK;
    cJSON *doc = content_doc(s);
    char *text = NULL;
    EVP_MD_CTX *ctx = NULL;
    unsigned char md[32];
    unsigned int mdlen = 0;
    size_t *order = NULL;

    if (doc == NULL) {
        rc = kl_err_set(err, KL_ERR_NOMEM, "out of memory");
        goto cleanup;
    }
    sort_keys(doc);
    text = cJSON_PrintUnformatted(doc);
    ctx = EVP_MD_CTX_new();
    if (text == NULL || ctx == NULL) {
        rc = kl_err_set(err, KL_ERR_NOMEM, "out of memory");
        goto cleanup;
    }
    if (EVP_DigestInit_ex(ctx, EVP_sha3_256(), NULL) != 1 ||
        EVP_DigestUpdate(ctx, text, strlen(text)) != 1) {
        rc = kl_err_set(err, KL_ERR_INTERNAL, "SHA3-256 failed");
        goto cleanup;
    }
    /* table names sorted (system tables included), each followed by its
     * column names in order */
    {
        static const char *const sys[][7] = {
            {"_dlt_loads", "load_id", "schema_name", "status", "inserted_at", "schema_version_hash",
             NULL},
            {"_dlt_version", "version", "engine_version", "inserted_at", "schema_name",
             "version_hash", "schema"},
        };
        size_t n = s->n_tables + 2;
        order = malloc(n * sizeof *order);
        if (order == NULL) {
            rc = kl_err_set(err, KL_ERR_NOMEM, "out of memory");
            goto cleanup;
        }
        for (size_t i = 0; i < n; i++)
            order[i] = i; /* 0..n_tables-1 user tables, then the two system tables */
        for (size_t i = 1; i < n; i++) {
            size_t k = order[i], j = i;
            const char *kn = k < s->n_tables ? s->tables[k].name : sys[k - s->n_tables][0];
            while (j > 0) {
                size_t p = order[j - 1];
                const char *pn = p < s->n_tables ? s->tables[p].name : sys[p - s->n_tables][0];
                if (strcmp(pn, kn) <= 0)
                    break;
                order[j] = p;
                j--;
            }
            order[j] = k;
        }
        for (size_t i = 0; i < n && rc == KL_OK; i++) {
            size_t k = order[i];
            if (k < s->n_tables) {
                const struct kl_table *t = &s->tables[k];
                EVP_DigestUpdate(ctx, t->name, strlen(t->name));
                for (size_t c = 0; c < t->n_columns; c++)
                    EVP_DigestUpdate(ctx, t->columns[c].name, strlen(t->columns[c].name));
            } else {
                for (size_t c = 0; c < 7 && sys[k - s->n_tables][c]; c++)
                    EVP_DigestUpdate(ctx, sys[k - s->n_tables][c], strlen(sys[k - s->n_tables][c]));
            }
        }
    }
    if (EVP_DigestFinal_ex(ctx, md, &mdlen) != 1 || mdlen != 32) {
        rc = kl_err_set(err, KL_ERR_INTERNAL, "SHA3-256 failed");
        goto cleanup;
    }
    kl_base64_encode(md, 32, out, true);
cleanup:
    free(order);
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
    cJSON *doc = content_doc(s), *prev;
    char *text = NULL;
    int rc = KL_OK;
    if (doc == NULL)
        return kl_err_set(err, KL_ERR_NOMEM, "out of memory");
    /* dlt's key order: version, version_hash, engine_version, name, tables, ... */
    cJSON_AddItemToObject(doc, "version", cJSON_CreateNumber((double)s->version));
    cJSON_AddStringToObject(doc, "version_hash", s->version_hash);
    prev = cJSON_AddArrayToObject(doc, "previous_hashes");
    for (size_t i = 0; i < s->n_previous_hashes; i++)
        cJSON_AddItemToArray(prev, cJSON_CreateString(s->previous_hashes[i]));
    text = cJSON_PrintUnformatted(doc);
    if (text == NULL)
        rc = kl_err_set(err, KL_ERR_NOMEM, "out of memory");
    else
        rc = kl_buf_append(out, text, strlen(text), err);
    free(text);
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
    if (s->version_hash[0] == '\0' && (rc = kl_schema_bump_version(s, NULL, err)) != KL_OK)
        goto cleanup;
    *out = s;
    s = NULL;
cleanup:
    kl_schema_destroy(s);
    cJSON_Delete(doc);
    return rc;
}
