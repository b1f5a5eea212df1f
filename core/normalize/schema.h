/*
 * The relational schema of one dataset (struct kl_schema in rows.h): tables
 * and columns that are only ever added, dlt's version and version_hash, and
 * the JSON document dlt stores in `_dlt_version.schema`, so a restart or
 * another replica continues from it. No row data and no SQL here.
 */
#ifndef KL_NORMALIZE_SCHEMA_H
#define KL_NORMALIZE_SCHEMA_H

#include <stdbool.h>
#include <stddef.h>

#include "core/normalize/rows.h"

struct kl_buf;
struct kl_err;

#define KL_SCHEMA_ENGINE_VERSION 9 /* dlt 0.5.4's SCHEMA_ENGINE_VERSION; dlt 1.x migrates it */
#define KL_SCHEMA_NAME "kinesis"   /* the schema (dlt source) name of every dataset */

/* Accepts dlt's names, and "complex" (dlt before 1.0) for json and "wei"
 * for decimal. KL_ERR_INVALID for an unknown name. */
int kl_data_type_from_name(const char *name, enum kl_data_type *out);

/* A new empty schema at version 1, its hash computed. Freed with
 * kl_schema_destroy. NULL when out of memory. */
struct kl_schema *kl_schema_create(const char *name);
void kl_schema_destroy(struct kl_schema *s);
/* A deep copy, or NULL. */
struct kl_schema *kl_schema_clone(const struct kl_schema *s);

/* Index of the named table or column; false when absent. */
bool kl_schema_find_table(const struct kl_schema *s, const char *name, size_t *idx);
bool kl_schema_find_column(const struct kl_table *t, const char *name, size_t *idx);

/* Appends a table ("" parent for a root table). KL_ERR_CONFLICT when the
 * name exists, KL_ERR_INVALID when it does not fit KL_IDENT_MAX. Pointers
 * into s->tables are invalid after the call; indices stay. */
int kl_schema_add_table(struct kl_schema *s, const char *name, const char *parent,
                        enum kl_write_disposition wd, size_t *idx, struct kl_err *err);
/* Appends a column to table `table`. Same rules as for tables. */
int kl_schema_add_column(struct kl_schema *s, size_t table, const struct kl_column *col,
                         size_t *idx, struct kl_err *err);

/* dlt's generate_version_hash over the stored document: SHA3-256 of the
 * document without version, version_hash and previous_hashes, keys sorted,
 * compact; then every table name (sorted) followed by its column names in
 * order; base64 with padding. */
int kl_schema_version_hash(const struct kl_schema *s, char out[KL_SCHEMA_HASH_CAP],
                           struct kl_err *err);
/* dlt's bump_version_if_modified: when the hash differs from the stored
 * one, version + 1 and the old hash goes first in previous_hashes (at most
 * 10). Sets *changed (may be NULL). */
int kl_schema_bump_version(struct kl_schema *s, bool *changed, struct kl_err *err);

/* The stored-schema document (name, version, version_hash, engine_version,
 * tables with dlt's system tables, settings, normalizers, previous_hashes),
 * as compact JSON appended to `out`, in dlt 0.5.4's shape (schema engine 9:
 * json is "complex", `_dlt_id` is `unique`, `_dlt_parent_id` a
 * `foreign_key`, tables carry x-normalizer seen-data, `_dlt_pipeline_state`
 * is listed), which dlt 0.5.4 reads and dlt 1.x migrates. The fixture
 * schema of dlt 0.5.4 comes out identical, hash included. The version
 * fields are written as they are: bump first to store a changed schema. */
int kl_schema_to_json(const struct kl_schema *s, struct kl_buf *out, struct kl_err *err);
/* Reads a document written by kl_schema_to_json, or by dlt for this kind of
 * pipeline; dlt's system tables (`_dlt_*` without a parent) are skipped.
 * Tables and columns keep the document's order. A document of another
 * engine (ours before was engine 10; dlt 1.x writes 10 and 11) is rehashed
 * as engine 9, so it comes back one version up when its content hash
 * changed, and is stored again in the engine-9 shape by the next write. */
int kl_schema_from_json(const char *json, size_t len, struct kl_schema **out, struct kl_err *err);

#endif
