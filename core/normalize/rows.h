/*
 * The contract between the normaliser and the destinations: the relational
 * schema (tables, columns, dlt data types) and a chunk's rows, already
 * named, typed and coerced. The normaliser fills these; a destination only
 * reads them. Neither side's internals are here.
 */
#ifndef KL_NORMALIZE_ROWS_H
#define KL_NORMALIZE_ROWS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* 63 characters + NUL: PostgreSQL's identifier limit, which dlt's naming honours. */
#define KL_IDENT_MAX 64

/* dlt's data types (dlt/common/schema/typing.py), as they reach a destination. */
enum kl_data_type {
    KL_TYPE_NULL = 0,  /* a missing or null cell; never a column's type */
    KL_TYPE_TEXT,      /* Postgres varchar / SQLite TEXT */
    KL_TYPE_BIGINT,    /* bigint / INTEGER */
    KL_TYPE_DOUBLE,    /* double precision / REAL */
    KL_TYPE_BOOL,      /* boolean / INTEGER 0,1 */
    KL_TYPE_TIMESTAMP, /* timestamp with time zone / TEXT ISO-8601; cell holds UTC microseconds */
    KL_TYPE_BINARY,    /* bytea / BLOB */
    KL_TYPE_DECIMAL,   /* numeric / TEXT; cell holds the exact decimal digits as text */
    KL_TYPE_JSON,      /* jsonb / TEXT; cell holds serialized JSON text */
};

/* dlt's name of a type ("text", "bigint", "double", "bool", "timestamp",
 * "binary", "decimal", "json"). */
const char *kl_data_type_name(enum kl_data_type t);

struct kl_column {
    char name[KL_IDENT_MAX]; /* normalised, at most 63 characters */
    enum kl_data_type type;
    bool nullable;
    bool unique;      /* _dlt_id */
    bool primary_key; /* _kinesis_msg_id of a root table under merge */
    bool variant;     /* a `<col>__v_<type>` column */
};

/* dlt's write dispositions. Under merge the root's `_kinesis_msg_id` is its
 * primary key and child tables carry `_dlt_root_id` (dlt's root key). */
enum kl_write_disposition {
    KL_WRITE_APPEND = 0, /* plain COPY: rows past the committed checkpoint cannot be there yet */
    KL_WRITE_MERGE,   /* delete-insert on `_kinesis_msg_id`, child rows replaced with their root */
    KL_WRITE_REPLACE, /* the job's root table and its children are truncated once per load */
};

/* "append", "merge", "replace" (dlt's spelling). */
const char *kl_write_disposition_name(enum kl_write_disposition d);
/* Parses the name; returns 0, or -1 for an unknown name. */
int kl_write_disposition_parse(const char *name, enum kl_write_disposition *out);

struct kl_table {
    char name[KL_IDENT_MAX];
    char parent[KL_IDENT_MAX]; /* "" for a root table; the parent table for child tables */
    struct kl_column *columns; /* in creation order; columns are only ever appended */
    size_t n_columns;
    size_t cap_columns;
    enum kl_write_disposition write_disposition; /* of the root; child tables copy it */
};

#define KL_SCHEMA_HASH_CAP 48 /* dlt's version_hash: base64 of SHA3-256, 44 characters */
#define KL_SCHEMA_PREVIOUS_HASHES 10

/* One dataset's schema. Tables and columns are only ever added, so a
 * destination can tell what is new by comparing counts with what it applied. */
struct kl_schema {
    char name[KL_IDENT_MAX]; /* dlt schema name (the pipeline's source name) */
    struct kl_table *tables;
    size_t n_tables;
    size_t cap_tables;
    int64_t version;                       /* dlt's stored version: 1 when created, then +1 at each
                                            * kl_schema_bump_version that finds the content changed
                                            * (the normaliser bumps once per chunk that changed it) */
    char version_hash[KL_SCHEMA_HASH_CAP]; /* hash of the content at the last bump */
    char previous_hashes[KL_SCHEMA_PREVIOUS_HASHES][KL_SCHEMA_HASH_CAP]; /* newest first */
    size_t n_previous_hashes;
};

/* One cell. Strings and bytes point into the batch's storage. */
struct kl_value {
    enum kl_data_type type; /* KL_TYPE_NULL for a null cell */
    union {
        int64_t i;  /* BIGINT */
        double d;   /* DOUBLE */
        bool b;     /* BOOL */
        int64_t us; /* TIMESTAMP: microseconds since the epoch, UTC */
        struct {
            const char *ptr; /* TEXT, DECIMAL, JSON: UTF-8, not NUL-terminated; BINARY: bytes */
            size_t len;
        } s;
    } v;
};

/* The rows one chunk produced for one table. Row-major: the cell of row r,
 * column c is cells[r * n_columns + c]; column c is the table's column c in
 * the schema. Columns added by later chunks are absent (n_columns is the
 * count when the batch was closed). A cell's type is the column's type or
 * KL_TYPE_NULL. */
struct kl_table_rows {
    size_t table; /* index into kl_schema.tables */
    size_t n_columns;
    size_t n_rows;
    struct kl_value *cells;
};

/* A message that could not become rows (not a JSON object, say). */
struct kl_dead_letter {
    const char *shard_id;
    const char *sequence;
    int64_t sub_sequence; /* -1 when not a KPL sub-record */
    const unsigned char *data;
    size_t data_len;
    const char *error;
    int64_t arrival_ms;
};

/* Everything one chunk of messages becomes. */
struct kl_row_batch {
    const struct kl_schema *schema; /* the schema after this chunk; borrowed */
    struct kl_table_rows *tables;   /* only tables that received rows */
    size_t n_tables;
    struct kl_dead_letter *dead_letters;
    size_t n_dead_letters;
    size_t n_messages; /* messages that became root rows */
};

#endif
