/*
 * SQL text shared by the destinations (see sql.h): identifiers, types,
 * catalog, DDL plans and the definitions of the system tables.
 */
#include "core/dest/sql.h"
#include "core/dest/dest.h"
#include "core/util/buf.h"
#include "core/util/err.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Statements here are small; the cap only guards against a runaway schema. */
#define SQL_MAX ((size_t)4 << 20)

int kl_sql_validate_column(const char *name, struct kl_err *err)
{
    size_t n;

    if (name == NULL || name[0] == '\0')
        return kl_err_set(err, KL_ERR_INVALID, "empty column name");
    n = strnlen(name, KL_IDENT_MAX);
    if (n >= KL_IDENT_MAX)
        return kl_err_set(err, KL_ERR_INVALID, "column name longer than %d bytes",
                          KL_IDENT_MAX - 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c < 0x20 || c == 0x7f)
            return kl_err_set(err, KL_ERR_INVALID, "column name has a control character");
    }
    return KL_OK;
}

int kl_sql_quote_ident(struct kl_buf *b, const char *name, struct kl_err *err)
{
    const char *p = name;
    int rc = kl_buf_append(b, "\"", 1, err);

    while (rc == KL_OK && *p != '\0') {
        const char *q = strchr(p, '"');
        size_t run = q != NULL ? (size_t)(q - p) : strlen(p);
        rc = kl_buf_append(b, p, run, err);
        if (rc == KL_OK && q != NULL)
            rc = kl_buf_append(b, "\"\"", 2, err);
        p += run + (q != NULL);
    }
    if (rc == KL_OK)
        rc = kl_buf_append(b, "\"", 1, err);
    return rc;
}

/* Names of tables we write: what dlt's naming produces ([a-z0-9_]). */
static int check_table_ident(const char *name, struct kl_err *err)
{
    size_t n;

    if (name == NULL || name[0] == '\0')
        return kl_err_set(err, KL_ERR_INVALID, "empty table name");
    n = strnlen(name, KL_IDENT_MAX);
    if (n >= KL_IDENT_MAX)
        return kl_err_set(err, KL_ERR_INVALID, "table name longer than %d bytes", KL_IDENT_MAX - 1);
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'))
            return kl_err_set(err, KL_ERR_INVALID,
                              "table name \"%.63s\" has a character outside [a-z0-9_]", name);
    }
    return KL_OK;
}

int kl_sql_table_ref(struct kl_buf *b, enum kl_sql_dialect d, const char *dataset,
                     const char *table, struct kl_err *err)
{
    int rc = kl_dest_validate_dataset(dataset, err);

    if (rc == KL_OK)
        rc = check_table_ident(table, err);
    if (rc != KL_OK)
        return rc;
    if (d == KL_SQL_POSTGRES) {
        rc = kl_sql_quote_ident(b, dataset, err);
        if (rc == KL_OK)
            rc = kl_buf_append(b, ".", 1, err);
        if (rc == KL_OK)
            rc = kl_sql_quote_ident(b, table, err);
        return rc;
    }
    /* Both names are [a-z0-9_]: nothing to double. */
    return kl_buf_printf(b, err, "\"%s.%s\"", dataset, table);
}

int kl_sql_on_table(struct kl_buf *b, enum kl_sql_dialect d, const char *prefix,
                    const char *dataset, const char *table, const char *suffix, struct kl_err *err)
{
    int rc;

    kl_buf_reset(b);
    rc = kl_buf_append_str(b, prefix, err);
    if (rc == KL_OK)
        rc = kl_sql_table_ref(b, d, dataset, table, err);
    if (rc == KL_OK)
        rc = kl_buf_append_str(b, suffix, err);
    return rc;
}

const char *kl_sql_type(enum kl_sql_dialect d, enum kl_data_type t)
{
    if (d == KL_SQL_POSTGRES) {
        switch (t) {
        case KL_TYPE_TEXT:
            return "varchar";
        case KL_TYPE_BIGINT:
            return "bigint";
        case KL_TYPE_DOUBLE:
            return "double precision";
        case KL_TYPE_BOOL:
            return "boolean";
        case KL_TYPE_TIMESTAMP:
            return "timestamp with time zone";
        case KL_TYPE_BINARY:
            return "bytea";
        case KL_TYPE_DECIMAL:
            /* dlt emits numeric(38,9); unconstrained numeric keeps every
             * integer beyond 64 bits exact instead of refusing it. */
            return "numeric";
        case KL_TYPE_JSON:
            return "jsonb";
        default:
            return NULL;
        }
    }
    /* SQLite: the declared type decides the affinity. TEXT for decimal and
     * JSON keeps them exactly as written; TIMESTAMP (numeric affinity) keeps
     * ISO-8601 text as text. */
    switch (t) {
    case KL_TYPE_TEXT:
        return "TEXT";
    case KL_TYPE_BIGINT:
        return "BIGINT";
    case KL_TYPE_DOUBLE:
        return "DOUBLE";
    case KL_TYPE_BOOL:
        return "BOOLEAN";
    case KL_TYPE_TIMESTAMP:
        return "TIMESTAMP";
    case KL_TYPE_BINARY:
        return "BLOB";
    case KL_TYPE_DECIMAL:
    case KL_TYPE_JSON:
        return "TEXT";
    default:
        return NULL;
    }
}

const char *kl_sql_type_tag(enum kl_sql_dialect d, enum kl_data_type t)
{
    if (d == KL_SQL_SQLITE)
        return kl_sql_type(d, t);
    switch (t) {
    case KL_TYPE_TEXT:
        return "varchar";
    case KL_TYPE_BIGINT:
        return "int8";
    case KL_TYPE_DOUBLE:
        return "float8";
    case KL_TYPE_BOOL:
        return "bool";
    case KL_TYPE_TIMESTAMP:
        return "timestamptz";
    case KL_TYPE_BINARY:
        return "bytea";
    case KL_TYPE_DECIMAL:
        return "numeric";
    case KL_TYPE_JSON:
        return "jsonb";
    default:
        return NULL;
    }
}

/* ---- catalog ---- */

void kl_sql_catalog_init(struct kl_sql_catalog *c)
{
    memset(c, 0, sizeof *c);
}

void kl_sql_catalog_free(struct kl_sql_catalog *c)
{
    for (size_t i = 0; i < c->n_tables; i++)
        free(c->tables[i].cols);
    free(c->tables);
    memset(c, 0, sizeof *c);
}

const struct kl_sql_cat_table *kl_sql_catalog_find(const struct kl_sql_catalog *c,
                                                   const char *table)
{
    for (size_t i = 0; i < c->n_tables; i++)
        if (strcmp(c->tables[i].name, table) == 0)
            return &c->tables[i];
    return NULL;
}

const struct kl_sql_cat_column *kl_sql_cat_table_find(const struct kl_sql_cat_table *t,
                                                      const char *column)
{
    for (size_t i = 0; i < t->n_cols; i++)
        if (strcmp(t->cols[i].name, column) == 0)
            return &t->cols[i];
    return NULL;
}

int kl_sql_catalog_add(struct kl_sql_catalog *c, const char *table, const char *column,
                       const char *type, struct kl_err *err)
{
    struct kl_sql_cat_table *t = (struct kl_sql_cat_table *)kl_sql_catalog_find(c, table);

    if (strlen(table) >= KL_IDENT_MAX || strlen(column) >= KL_IDENT_MAX)
        return kl_err_set(err, KL_ERR_INVALID, "catalog name longer than %d bytes",
                          KL_IDENT_MAX - 1);
    if (t == NULL) {
        if (c->n_tables == c->cap_tables) {
            size_t cap = c->cap_tables ? c->cap_tables * 2 : 16;
            struct kl_sql_cat_table *nt = realloc(c->tables, cap * sizeof *nt);
            if (nt == NULL)
                return kl_err_set(err, KL_ERR_NOMEM, "catalog");
            c->tables = nt;
            c->cap_tables = cap;
        }
        t = &c->tables[c->n_tables++];
        memset(t, 0, sizeof *t);
        snprintf(t->name, sizeof t->name, "%s", table);
    }
    if (kl_sql_cat_table_find(t, column) != NULL)
        return KL_OK;
    if (t->n_cols == t->cap_cols) {
        size_t cap = t->cap_cols ? t->cap_cols * 2 : 16;
        struct kl_sql_cat_column *ncols = realloc(t->cols, cap * sizeof *ncols);
        if (ncols == NULL)
            return kl_err_set(err, KL_ERR_NOMEM, "catalog");
        t->cols = ncols;
        t->cap_cols = cap;
    }
    snprintf(t->cols[t->n_cols].name, sizeof t->cols[t->n_cols].name, "%s", column);
    snprintf(t->cols[t->n_cols].type, sizeof t->cols[t->n_cols].type, "%s", type);
    t->n_cols++;
    return KL_OK;
}

int kl_sql_catalog_add_schema(struct kl_sql_catalog *c, enum kl_sql_dialect d,
                              const struct kl_schema *s, struct kl_err *err)
{
    for (size_t i = 0; i < s->n_tables; i++) {
        const struct kl_table *t = &s->tables[i];
        for (size_t j = 0; j < t->n_columns; j++) {
            const char *tag = kl_sql_type_tag(d, t->columns[j].type);
            int rc;
            if (tag == NULL)
                continue;
            rc = kl_sql_catalog_add(c, t->name, t->columns[j].name, tag, err);
            if (rc != KL_OK)
                return rc;
        }
    }
    return KL_OK;
}

/* ---- statements ---- */

void kl_sql_stmts_init(struct kl_sql_stmts *s)
{
    memset(s, 0, sizeof *s);
}

void kl_sql_stmts_free(struct kl_sql_stmts *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->items[i]);
    free(s->items);
    memset(s, 0, sizeof *s);
}

int kl_sql_stmts_take(struct kl_sql_stmts *s, struct kl_buf *b, struct kl_err *err)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 8;
        char **items = realloc(s->items, cap * sizeof *items);
        if (items == NULL)
            return kl_err_set(err, KL_ERR_NOMEM, "statement list");
        s->items = items;
        s->cap = cap;
    }
    s->items[s->n++] = kl_buf_steal(b, NULL);
    if (s->items[s->n - 1] == NULL) {
        s->n--;
        return kl_err_set(err, KL_ERR_NOMEM, "statement");
    }
    return KL_OK;
}

static int column_def(struct kl_buf *b, enum kl_sql_dialect d, const struct kl_column *col,
                      bool in_create, bool create_indexes, struct kl_err *err)
{
    const char *type = kl_sql_type(d, col->type);
    int rc = kl_sql_validate_column(col->name, err);

    if (rc != KL_OK)
        return rc;
    if (type == NULL)
        return kl_err_set(err, KL_ERR_INVALID, "column \"%s\" has no data type", col->name);
    rc = kl_sql_quote_ident(b, col->name, err);
    if (rc == KL_OK)
        rc = kl_buf_printf(b, err, " %s", type);
    if (rc == KL_OK && in_create && create_indexes && col->unique)
        rc = kl_buf_append_str(b, " UNIQUE", err);
    if (rc == KL_OK && in_create && !col->nullable)
        rc = kl_buf_append_str(b, " NOT NULL", err);
    return rc;
}

int kl_sql_create_table(struct kl_buf *b, enum kl_sql_dialect d, const char *dataset,
                        const char *table, const struct kl_column *cols, size_t n_cols,
                        const char *const *pk, size_t n_pk, bool create_indexes, struct kl_err *err)
{
    int rc = kl_buf_append_str(b, "CREATE TABLE IF NOT EXISTS ", err);

    if (rc == KL_OK)
        rc = kl_sql_table_ref(b, d, dataset, table, err);
    if (rc == KL_OK)
        rc = kl_buf_append_str(b, " (", err);
    for (size_t i = 0; rc == KL_OK && i < n_cols; i++) {
        if (i > 0)
            rc = kl_buf_append_str(b, ", ", err);
        if (rc == KL_OK)
            rc = column_def(b, d, &cols[i], true, create_indexes, err);
    }
    if (rc == KL_OK && n_pk > 0) {
        rc = kl_buf_append_str(b, ", PRIMARY KEY (", err);
        for (size_t i = 0; rc == KL_OK && i < n_pk; i++) {
            if (i > 0)
                rc = kl_buf_append_str(b, ", ", err);
            if (rc == KL_OK)
                rc = kl_sql_quote_ident(b, pk[i], err);
        }
        if (rc == KL_OK)
            rc = kl_buf_append_str(b, ")", err);
    }
    if (rc == KL_OK)
        rc = kl_buf_append_str(b, ")", err);
    return rc;
}

int kl_sql_plan_ddl(enum kl_sql_dialect d, const char *dataset, const struct kl_schema *s,
                    const struct kl_sql_catalog *have, bool create_indexes,
                    struct kl_sql_stmts *out, struct kl_sql_ddl_stats *stats, struct kl_err *err)
{
    struct kl_buf b;
    int rc = KL_OK;

    kl_buf_init(&b, SQL_MAX);
    for (size_t i = 0; rc == KL_OK && i < s->n_tables; i++) {
        const struct kl_table *t = &s->tables[i];
        const struct kl_sql_cat_table *ct;
        size_t added = 0;

        if (t->n_columns == 0)
            continue;
        ct = kl_sql_catalog_find(have, t->name);
        if (ct == NULL) {
            rc = kl_sql_create_table(&b, d, dataset, t->name, t->columns, t->n_columns, NULL, 0,
                                     create_indexes, err);
            if (rc == KL_OK)
                rc = kl_sql_stmts_take(out, &b, err);
            if (rc == KL_OK && stats != NULL)
                stats->tables_created++;
            continue;
        }
        for (size_t j = 0; rc == KL_OK && j < t->n_columns; j++) {
            const struct kl_column *col = &t->columns[j];
            const struct kl_sql_cat_column *cc = kl_sql_cat_table_find(ct, col->name);
            const char *tag = kl_sql_type_tag(d, col->type);

            if (cc != NULL) {
                if (tag == NULL || strcmp(cc->type, tag) != 0) {
                    rc = kl_err_set(err, KL_ERR_EXPIRED,
                                    "stale schema: column %s.%s is %s in the destination, the "
                                    "schema says %s",
                                    t->name, col->name, cc->type, tag != NULL ? tag : "?");
                }
                continue;
            }
            if (d == KL_SQL_SQLITE || added == 0) {
                /* SQLite takes one column per ALTER TABLE. */
                rc = kl_buf_append_str(&b, "ALTER TABLE ", err);
                if (rc == KL_OK)
                    rc = kl_sql_table_ref(&b, d, dataset, t->name, err);
            } else {
                rc = kl_buf_append_str(&b, ",", err);
            }
            if (rc == KL_OK)
                rc = kl_buf_append_str(
                    &b, d == KL_SQL_POSTGRES ? " ADD COLUMN IF NOT EXISTS " : " ADD COLUMN ", err);
            if (rc == KL_OK)
                rc = column_def(&b, d, col, false, create_indexes, err);
            if (rc == KL_OK && d == KL_SQL_SQLITE)
                rc = kl_sql_stmts_take(out, &b, err);
            added++;
            if (rc == KL_OK && stats != NULL)
                stats->columns_added++;
        }
        if (rc == KL_OK && d == KL_SQL_POSTGRES && added > 0)
            rc = kl_sql_stmts_take(out, &b, err);
    }
    kl_buf_free(&b);
    return rc;
}

static unsigned long long hash_bytes(const char *p, size_t n)
{
    unsigned long long h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)p[i];
        h *= 1099511628211ULL;
    }
    return h;
}

int kl_sql_idset_init(struct kl_sql_idset *s, size_t rows, struct kl_err *err)
{
    s->cap = 16;
    while (s->cap < 2 * rows)
        s->cap *= 2;
    s->slots = calloc(s->cap, sizeof(const struct kl_value *));
    if (s->slots == NULL)
        return kl_err_set(err, KL_ERR_NOMEM, "id set of %zu rows", rows);
    return KL_OK;
}

void kl_sql_idset_free(struct kl_sql_idset *s)
{
    free(s->slots);
    s->slots = NULL;
    s->cap = 0;
}

bool kl_sql_idset_add(struct kl_sql_idset *s, const struct kl_value *v)
{
    size_t i = (size_t)hash_bytes(v->v.s.ptr, v->v.s.len) & (s->cap - 1);

    while (s->slots[i] != NULL) {
        const struct kl_value *o = s->slots[i];
        if (o->v.s.len == v->v.s.len && memcmp(o->v.s.ptr, v->v.s.ptr, v->v.s.len) == 0)
            return false;
        i = (i + 1) & (s->cap - 1);
    }
    s->slots[i] = v;
    return true;
}

unsigned long long kl_sql_hash64(const char *s)
{
    unsigned long long h = 1469598103934665603ULL;
    for (; *s != '\0'; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ULL;
    }
    return h;
}

int kl_sql_create_index(struct kl_buf *b, enum kl_sql_dialect d, const char *dataset,
                        const char *table, const char *column, struct kl_err *err)
{
    char key[3 * KL_IDENT_MAX];
    char name[KL_IDENT_MAX];
    int rc;

    snprintf(key, sizeof key, "%s.%s", table, column);
    snprintf(name, sizeof name, "kl_%016llx", kl_sql_hash64(key));
    rc = kl_buf_append_str(b, "CREATE INDEX IF NOT EXISTS ", err);
    if (rc == KL_OK) {
        /* Postgres puts an index in its table's schema; SQLite names are global. */
        if (d == KL_SQL_POSTGRES)
            rc = kl_sql_quote_ident(b, name, err);
        else
            rc = kl_sql_table_ref(b, d, dataset, name, err);
    }
    if (rc == KL_OK)
        rc = kl_buf_append_str(b, " ON ", err);
    if (rc == KL_OK)
        rc = kl_sql_table_ref(b, d, dataset, table, err);
    if (rc == KL_OK)
        rc = kl_buf_append_str(b, " (", err);
    if (rc == KL_OK)
        rc = kl_sql_quote_ident(b, column, err);
    if (rc == KL_OK)
        rc = kl_buf_append_str(b, ")", err);
    return rc;
}

/* ---- system tables ---- */

#define COL(n, t, nullable)                                                                        \
    {                                                                                              \
        n, t, nullable, false, false, false                                                        \
    }

/* dlt/common/schema/utils.py version_table() */
static const struct kl_column VERSION_COLS[] = {
    COL("version", KL_TYPE_BIGINT, false),        COL("engine_version", KL_TYPE_BIGINT, false),
    COL("inserted_at", KL_TYPE_TIMESTAMP, false), COL("schema_name", KL_TYPE_TEXT, false),
    COL("version_hash", KL_TYPE_TEXT, false),     COL("schema", KL_TYPE_TEXT, false),
};

/* loads_table() */
static const struct kl_column LOADS_COLS[] = {
    COL("load_id", KL_TYPE_TEXT, false),
    COL("schema_name", KL_TYPE_TEXT, true),
    COL("status", KL_TYPE_BIGINT, false),
    COL("inserted_at", KL_TYPE_TIMESTAMP, false),
    COL("schema_version_hash", KL_TYPE_TEXT, true),
};

/* pipeline_state_table(add_dlt_id=True), as the normaliser stores it */
static const struct kl_column STATE_COLS[] = {
    COL("version", KL_TYPE_BIGINT, false),
    COL("engine_version", KL_TYPE_BIGINT, false),
    COL("pipeline_name", KL_TYPE_TEXT, false),
    COL("state", KL_TYPE_TEXT, false),
    COL("created_at", KL_TYPE_TIMESTAMP, false),
    COL("version_hash", KL_TYPE_TEXT, true),
    COL("_dlt_load_id", KL_TYPE_TEXT, false),
    {"_dlt_id", KL_TYPE_TEXT, false, true, false, false},
};

static const struct kl_column CHECKPOINT_COLS[] = {
    COL("pipeline_name", KL_TYPE_TEXT, false), COL("stream_name", KL_TYPE_TEXT, false),
    COL("shard_id", KL_TYPE_TEXT, false),      COL("sequence", KL_TYPE_TEXT, false),
    COL("sub_sequence", KL_TYPE_BIGINT, true), COL("fencing_token", KL_TYPE_BIGINT, false),
    COL("load_id", KL_TYPE_TEXT, true),        COL("updated_at", KL_TYPE_TIMESTAMP, false),
};
static const char *const CHECKPOINT_PK[] = {"pipeline_name", "stream_name", "shard_id"};

static const struct kl_column RUNS_COLS[] = {
    COL("pipeline_name", KL_TYPE_TEXT, false),    COL("stream_name", KL_TYPE_TEXT, false),
    COL("last_run_at", KL_TYPE_TIMESTAMP, false), COL("load_id", KL_TYPE_TEXT, true),
    COL("updated_at", KL_TYPE_TIMESTAMP, false),
};
static const char *const RUNS_PK[] = {"pipeline_name", "stream_name"};

static const struct kl_column DEAD_COLS[] = {
    COL("load_id", KL_TYPE_TEXT, false),        COL("pipeline_name", KL_TYPE_TEXT, false),
    COL("stream_name", KL_TYPE_TEXT, false),    COL("shard_id", KL_TYPE_TEXT, false),
    COL("sequence", KL_TYPE_TEXT, false),       COL("sub_sequence", KL_TYPE_BIGINT, true),
    COL("data", KL_TYPE_BINARY, true),          COL("error", KL_TYPE_TEXT, false),
    COL("arrival_at", KL_TYPE_TIMESTAMP, true), COL("inserted_at", KL_TYPE_TIMESTAMP, false),
};

static const struct kl_column TRUNC_COLS[] = {
    COL("load_id", KL_TYPE_TEXT, false),
    COL("table_name", KL_TYPE_TEXT, false),
    COL("truncated_at", KL_TYPE_TIMESTAMP, false),
};
static const char *const TRUNC_PK[] = {"load_id", "table_name"};

#define N(a) (sizeof(a) / sizeof((a)[0]))

static const struct kl_sql_table_def SYSTEM_TABLES[] = {
    {"_dlt_version", VERSION_COLS, N(VERSION_COLS), NULL, 0},
    {"_dlt_loads", LOADS_COLS, N(LOADS_COLS), NULL, 0},
    {"_dlt_pipeline_state", STATE_COLS, N(STATE_COLS), NULL, 0},
    {"_kinesis_checkpoints", CHECKPOINT_COLS, N(CHECKPOINT_COLS), CHECKPOINT_PK, N(CHECKPOINT_PK)},
    {"_kinesis_runs", RUNS_COLS, N(RUNS_COLS), RUNS_PK, N(RUNS_PK)},
    {"_kinesis_dead_letters", DEAD_COLS, N(DEAD_COLS), NULL, 0},
    {"_kinesis_truncations", TRUNC_COLS, N(TRUNC_COLS), TRUNC_PK, N(TRUNC_PK)},
};

const struct kl_sql_table_def *kl_sql_system_tables(size_t *n)
{
    *n = N(SYSTEM_TABLES);
    return SYSTEM_TABLES;
}
