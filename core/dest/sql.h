/*
 * SQL text the destinations share: identifier quoting and validation, dlt's
 * type mapping per dialect, the catalog of what a database already has, and
 * the DDL that brings it up to a schema. Internal to core/dest. Values never
 * pass through here: they go by COPY or bound parameters.
 */
#ifndef KL_DEST_SQL_H
#define KL_DEST_SQL_H

#include <stdbool.h>
#include <stddef.h>

#include "core/normalize/rows.h"

struct kl_buf;
struct kl_err;

enum kl_sql_dialect {
    KL_SQL_POSTGRES = 0,
    KL_SQL_SQLITE,
};

/* Column names: 1..63 bytes, no control characters (quoting handles the rest). */
int kl_sql_validate_column(const char *name, struct kl_err *err);

/* Appends "name" with embedded quotes doubled. */
int kl_sql_quote_ident(struct kl_buf *b, const char *name, struct kl_err *err);
/* Appends the qualified table name: Postgres "dataset"."table",
 * SQLite "dataset.table". Both names are validated first. */
int kl_sql_table_ref(struct kl_buf *b, enum kl_sql_dialect d, const char *dataset,
                     const char *table, struct kl_err *err);

/* Empties `b` and builds "<prefix><table ref><suffix>" in it: a statement
 * on one table of a dataset. */
int kl_sql_on_table(struct kl_buf *b, enum kl_sql_dialect d, const char *prefix,
                    const char *dataset, const char *table, const char *suffix, struct kl_err *err);

/* The column type in DDL: Postgres as dlt's postgres destination maps it
 * (varchar, bigint, double precision, boolean, timestamp with time zone,
 * bytea, numeric, jsonb); SQLite a declared type with the right affinity. */
const char *kl_sql_type(enum kl_sql_dialect d, enum kl_data_type t);
/* How the catalog spells that type: Postgres pg_type.typname (varchar,
 * int8, ...), SQLite the declared type as above. */
const char *kl_sql_type_tag(enum kl_sql_dialect d, enum kl_data_type t);

/* ---- what a database has ---- */

struct kl_sql_cat_column {
    char name[KL_IDENT_MAX];
    char type[32];
};

struct kl_sql_cat_table {
    char name[KL_IDENT_MAX];
    struct kl_sql_cat_column *cols;
    size_t n_cols;
    size_t cap_cols;
};

struct kl_sql_catalog {
    struct kl_sql_cat_table *tables;
    size_t n_tables;
    size_t cap_tables;
};

void kl_sql_catalog_init(struct kl_sql_catalog *c);
void kl_sql_catalog_free(struct kl_sql_catalog *c);
/* Adds a column (and its table when new); a column already there is kept. */
int kl_sql_catalog_add(struct kl_sql_catalog *c, const char *table, const char *column,
                       const char *type, struct kl_err *err);
/* Adds every column of the schema the catalog lacks (after DDL committed). */
int kl_sql_catalog_add_schema(struct kl_sql_catalog *c, enum kl_sql_dialect d,
                              const struct kl_schema *s, struct kl_err *err);
const struct kl_sql_cat_table *kl_sql_catalog_find(const struct kl_sql_catalog *c,
                                                   const char *table);
const struct kl_sql_cat_column *kl_sql_cat_table_find(const struct kl_sql_cat_table *t,
                                                      const char *column);

/* ---- statements ---- */

struct kl_sql_stmts {
    char **items; /* each malloc'ed, NUL-terminated, no trailing ';' */
    size_t n;
    size_t cap;
};

void kl_sql_stmts_init(struct kl_sql_stmts *s);
void kl_sql_stmts_free(struct kl_sql_stmts *s);
/* Takes the text of `b` (which is emptied). */
int kl_sql_stmts_take(struct kl_sql_stmts *s, struct kl_buf *b, struct kl_err *err);

/* CREATE TABLE IF NOT EXISTS with the columns as dlt defines them:
 * "name" type [UNIQUE] [NOT NULL], UNIQUE only with create_indexes, and an
 * optional PRIMARY KEY over `pk` (our own tables). */
int kl_sql_create_table(struct kl_buf *b, enum kl_sql_dialect d, const char *dataset,
                        const char *table, const struct kl_column *cols, size_t n_cols,
                        const char *const *pk, size_t n_pk, bool create_indexes,
                        struct kl_err *err);

struct kl_sql_ddl_stats {
    size_t tables_created;
    size_t columns_added;
};

/* The DDL that brings `have` up to the schema: CREATE TABLE for tables it
 * lacks (tables without columns are not created, as in dlt), ADD COLUMN for
 * columns it lacks. An added column is always nullable and never UNIQUE:
 * rows already in the table have no value for it. Fails with KL_ERR_EXPIRED
 * when `have` holds a schema column with another type (the schema is
 * stale). Appends to `out`. */
int kl_sql_plan_ddl(enum kl_sql_dialect d, const char *dataset, const struct kl_schema *s,
                    const struct kl_sql_catalog *have, bool create_indexes,
                    struct kl_sql_stmts *out, struct kl_sql_ddl_stats *stats, struct kl_err *err);

/* CREATE INDEX IF NOT EXISTS on table(column), named kl_<hash> (short, stable). */
int kl_sql_create_index(struct kl_buf *b, enum kl_sql_dialect d, const char *dataset,
                        const char *table, const char *column, struct kl_err *err);

/* ---- our system tables ---- */

struct kl_sql_table_def {
    const char *name;
    const struct kl_column *cols;
    size_t n_cols;
    const char *const *pk;
    size_t n_pk;
};

/* dlt's _dlt_version, _dlt_loads, _dlt_pipeline_state and our _kinesis_*
 * tables, in creation order. */
const struct kl_sql_table_def *kl_sql_system_tables(size_t *n);

/* Text cells seen in one chunk (merge sends each `_dlt_id` once). The
 * cells are borrowed from the batch. */
struct kl_sql_idset {
    const struct kl_value **slots;
    size_t cap; /* a power of two, at least twice the rows */
};

int kl_sql_idset_init(struct kl_sql_idset *s, size_t rows, struct kl_err *err);
void kl_sql_idset_free(struct kl_sql_idset *s);
/* Returns true when the text was new (and is now in the set). */
bool kl_sql_idset_add(struct kl_sql_idset *s, const struct kl_value *v);

/* 64-bit FNV-1a, for advisory lock keys and index names. */
unsigned long long kl_sql_hash64(const char *s);

#endif
