/*
 * dlt's relational normaliser for Kinesis messages: each message becomes a
 * root row (the `_kinesis` envelope, `_kinesis_msg_id`, the payload's keys
 * flattened) and child-table rows for its lists, typed and coerced against
 * an evolving schema. Messages whose Data is not a JSON object become dead
 * letters. No I/O: a destination loads the batch.
 */
#ifndef KL_NORMALIZE_NORMALIZER_H
#define KL_NORMALIZE_NORMALIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/normalize/rows.h"

struct kl_err;
struct kl_message;

#define KL_NORMALIZER_MAX_NESTING 1000 /* dlt's default max_nesting */

struct kl_normalizer_options {
    const char *stream_name; /* `_kinesis.stream_name`; the root table when table_name is NULL */
    const char *table_name;  /* explicit root table (normalised as dlt does); NULL: stream name */
    bool parse_json;         /* false: Data goes to column `data` as binary */
    const char *load_id;     /* `_dlt_load_id` of every root row (dlt's load id text) */
    enum kl_write_disposition write_disposition;
    size_t max_chunk_bytes; /* cap on a chunk's cell storage; 0: 512 MiB */
    /* A chunk's rows should take about this much at most (cells, strings
     * and the dense form closing makes): kl_normalizer_full says when the
     * last message added passed it. 0: no target. */
    size_t chunk_bytes_target;
};

struct kl_normalizer;

/* Takes ownership of `schema` (create one with kl_schema_create, or load it
 * with kl_schema_from_json); NULL starts a schema named "kinesis". Options
 * are copied. */
struct kl_normalizer *kl_normalizer_create(const struct kl_normalizer_options *opt,
                                           struct kl_schema *schema, struct kl_err *err);
void kl_normalizer_destroy(struct kl_normalizer *n);

/* Normalises one message into the open chunk. A message whose Data is not a
 * JSON object (with parse_json on) becomes a dead letter and is not an
 * error. Errors: KL_ERR_NOMEM, KL_ERR_LIMIT (the chunk passed
 * max_chunk_bytes; close and load what is there, then add again). After an
 * error the chunk may hold part of the message: reset it. */
int kl_normalizer_add(struct kl_normalizer *n, const struct kl_message *m, struct kl_err *err);

/* The `_dlt_load_id` of the root rows added from now on (a continuous
 * load's window); the chunk must be empty (after reset). */
int kl_normalizer_set_load_id(struct kl_normalizer *n, const char *load_id, struct kl_err *err);

/* True once the open chunk's rows passed chunk_bytes_target: close and load
 * it (the message that passed it included) before adding more. */
bool kl_normalizer_full(const struct kl_normalizer *n);

/* Closes the chunk: bumps the schema version when the chunk changed the
 * schema, and fills `out` with the rows per table (dense, row-major, typed
 * as the schema's columns) and the dead letters. Everything in `out` stays
 * valid until kl_normalizer_reset; the schema it points to until the next
 * add or replace. */
int kl_normalizer_close(struct kl_normalizer *n, struct kl_row_batch *out, struct kl_err *err);

/* Starts a new chunk, keeping the schema and caches. `committed` adds the
 * closed chunk's rows to the job's row counts; false drops them (the chunk
 * is being normalised again, for instance after kl_normalizer_replace_schema). */
void kl_normalizer_reset(struct kl_normalizer *n, bool committed);

/* The live schema (borrowed). */
const struct kl_schema *kl_normalizer_schema(const struct kl_normalizer *n);
/* Replaces the schema (ownership taken; the old one is destroyed), between
 * chunks: for a replica that found a newer stored schema. Resets the chunk. */
int kl_normalizer_replace_schema(struct kl_normalizer *n, struct kl_schema *schema,
                                 struct kl_err *err);

/* dlt's last_normalize_info.row_counts for the job so far: rows per table of
 * committed chunks, child tables included (the job adds
 * `_dlt_pipeline_state: 1`). `names[i]` and `rows[i]` stay valid until the
 * next call that changes the normaliser. Returns the number of tables. */
size_t kl_normalizer_row_counts(const struct kl_normalizer *n, const char *const **names,
                                const uint64_t **rows);

#endif
