/*
 * The sequences both destinations run, written once over a table of backend
 * primitives: dataset preparation, state reads and the kl_dest_ops
 * (backend.c), one chunk's transaction (chunk.c), the end of a load
 * (load.c). pg.c and sqlite.c implement the primitives, each a statement or
 * a few in the backend's SQL and client API. Internal to core/dest. Not
 * here: SQL text both backends share (sql.h), cache and schema helpers
 * (common.h).
 */
#ifndef KL_DEST_BACKEND_H
#define KL_DEST_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/dest/common.h"
#include "core/dest/dest.h"
#include "core/dest/state.h"

/*
 * What a backend implements. `impl` is its connection object. Every
 * primitive returns KL_OK or an error code with `err` filled as dest.h
 * describes (a lost connection, a busy database or a table dropped behind
 * the cache is KL_ERR_UNAVAILABLE, and the backend then forgets its dataset
 * caches). `d` is a prepared dataset. The chunk and load primitives run
 * inside a transaction the caller opened with begin; the reads run inside
 * one or on their own.
 */
struct kl_dest_backend {
    const char *name;             /* "postgres", "sqlite" */
    const char *destination_type; /* dlt's destination type, in the pipeline state */
    enum kl_sql_dialect dialect;
    /* A failed COMMIT has ended the transaction (Postgres), rather than left
     * it open to be rolled back (SQLite, when busy). */
    bool failed_commit_ends_tx;
    /* The pipeline state lists streams sorted by name (SQLite) rather than
     * in the order read_stream_rows returns them (Postgres). */
    bool sort_streams;

    /* ---- connection and transactions ---- */
    /* Connects when not connected (after a drop, or a lost connection). */
    int (*connect)(void *impl, struct kl_err *err);
    /* One statement without parameters; rows it returns are ignored. */
    int (*exec)(void *impl, const char *sql, const char *what, struct kl_err *err);
    /* Closes the connection as a crash would: what is not committed is lost. */
    void (*drop)(void *impl);
    /* Closes the connection and frees `impl`; NULL is a no-op. */
    void (*destroy)(void *impl);
    int (*begin)(void *impl, struct kl_err *err);
    /* Takes the dataset's lock until the transaction ends. NULL: begin
     * already took the database's write lock for the whole transaction
     * (SQLite's BEGIN IMMEDIATE), which serves as the dataset lock. */
    int (*lock_dataset)(void *impl, const struct kl_dest_ds *d, struct kl_err *err);
    int (*commit)(void *impl, struct kl_err *err);
    /* Ends the transaction (and a COPY in progress) without writing; a no-op
     * without a connection. */
    void (*rollback)(void *impl);

    /* ---- dataset and DDL ---- */
    /* Reads the dataset's tables, columns and indexes into d->cat and
     * d->indexes, and forgets d->checked_schema. `d` may be unprepared. */
    int (*load_catalog)(void *impl, struct kl_dest_ds *d, struct kl_err *err);
    /* Creates the dataset itself before its system tables. NULL: a dataset
     * is only its tables. */
    int (*create_dataset)(void *impl, const struct kl_dest_ds *d, struct kl_err *err);
    /* Before DDL that brings the dataset up to `s`: locks, in schema order,
     * the tables it alters and those in `index_tables`, so that DDL and
     * writers (which lock in schema order too) cannot deadlock. NULL: the
     * transaction holds every lock it needs already. */
    int (*lock_for_ddl)(void *impl, const struct kl_dest_ds *d, const struct kl_schema *s,
                        const struct kl_sql_stmts *index_tables, struct kl_err *err);

    /* ---- one chunk, in the order chunk.c calls them ---- */
    /* Upserts w's checkpoints; KL_ERR_CONFLICT when the stored fencing token
     * of one is newer. */
    int (*write_checkpoints)(void *impl, const struct kl_dest_ds *d, const struct kl_chunk_write *w,
                             struct kl_err *err);
    /* Inserts the `_dlt_version` row of schema `s` (its document `json`,
     * hash `hash`) unless a row of the schema has that hash. */
    int (*store_version)(void *impl, const struct kl_dest_ds *d, const struct kl_schema *s,
                         const char *json, const char *hash, struct kl_err *err);
    /* Replace: the first call for (load_id, root) records it in
     * `_kinesis_truncations` and empties root and its children, then sets
     * *done; later calls change nothing. Without a schema (s NULL) the
     * children are found by their names. */
    int (*truncate_family)(void *impl, const struct kl_dest_ds *d, const char *load_id,
                           const char *root, const struct kl_schema *s, bool *done,
                           struct kl_err *err);
    /* Merge: locks the batch's root table families before the deletes.
     * NULL: the transaction holds the lock it needs already. */
    int (*lock_families)(void *impl, const struct kl_dest_ds *d, const struct kl_row_batch *batch,
                         struct kl_err *err);
    /* Merge: runs one DELETE of kl_dest_plan_merge_deletes, `ids` its parameter. */
    int (*merge_delete)(void *impl, const char *sql, const char *ids, struct kl_err *err);
    /* Sends one table's rows (with `dedup`, each `_dlt_id` once) and adds
     * the number sent to *written. */
    int (*write_rows)(void *impl, const struct kl_dest_ds *d, const struct kl_schema *s,
                      const struct kl_table_rows *tr, bool dedup, size_t *written,
                      struct kl_err *err);
    int (*write_dead_letters)(void *impl, const struct kl_dest_ds *d,
                              const struct kl_chunk_write *w, struct kl_err *err);

    /* ---- state and the end of a load ---- */
    /* The newest schema stored under `name`: *json_out (malloc'ed; NULL
     * when there is none) and *version_out (when found). */
    int (*read_schema)(void *impl, const struct kl_dest_ds *d, const char *name, char **json_out,
                       int64_t *version_out, struct kl_err *err);
    /* The checkpoints of the pipeline's `stream` (NULL: of every stream),
     * ordered by stream and shard, then with `with_runs` the run times of
     * the same streams. *out is malloc'ed (NULL when there are none). */
    int (*read_stream_rows)(void *impl, const struct kl_dest_ds *d, const char *pipeline,
                            const char *stream, bool with_runs, struct kl_dest_stream_row **out,
                            size_t *n_out, struct kl_err *err);
    /* Raises the stored fencing token of the shard's checkpoint to `token`
     * (equal: nothing changes), or inserts a row with the token and no
     * position (sequence '', sub_sequence NULL); KL_ERR_CONFLICT when the
     * stored token is newer. One statement, in a transaction. */
    int (*claim_shard)(void *impl, const struct kl_dest_ds *d, const char *pipeline,
                       const char *stream, const char *shard_id, int64_t token, struct kl_err *err);
    /* Deletes pipeline+stream's row(s) from one of our state tables. */
    int (*delete_stream_rows)(void *impl, const struct kl_dest_ds *d, const char *table,
                              const char *pipeline, const char *stream, struct kl_err *err);
    /* Whether `_dlt_loads` holds the load. */
    int (*load_done)(void *impl, const struct kl_dest_ds *d, const char *load_id, bool *done,
                     struct kl_err *err);
    /* The writes of complete_load. `now_ms` is the job's end time for a
     * backend that stamps rows itself (SQLite); Postgres uses now(). */
    int (*write_run_time)(void *impl, const struct kl_dest_ds *d, const struct kl_load_complete *c,
                          int64_t now_ms, struct kl_err *err);
    /* The pipeline's `_dlt_pipeline_state` row dlt restores (its
     * get_stored_state): joined with `_dlt_loads` on the load id, status 0,
     * the greatest load_id first (ties: the greater version). out->found
     * false when there is none. */
    int (*read_dlt_state)(void *impl, const struct kl_dest_ds *d, const char *pipeline,
                          struct kl_dlt_state_row *out, struct kl_err *err);
    /* The greatest `_dlt_loads.load_id` in the database's order; "" when none. */
    int (*newest_load_id)(void *impl, const struct kl_dest_ds *d, char *out, size_t cap,
                          struct kl_err *err);
    /* Inserts a `_dlt_pipeline_state` row for `load_id`. */
    int (*write_state)(void *impl, const struct kl_dest_ds *d, const char *pipeline,
                       const char *load_id, const struct kl_state_doc *doc, int64_t version,
                       int64_t now_ms, struct kl_err *err);
    /* The newest `_dlt_version` hash of schema `name`; "" when none. */
    int (*newest_hash)(void *impl, const struct kl_dest_ds *d, const char *name, char *out,
                       size_t cap, struct kl_err *err);
    /* Inserts a `_dlt_loads` row (status 0); `hash` NULL stores NULL. */
    int (*write_load)(void *impl, const struct kl_dest_ds *d, const char *load_id,
                      const char *schema_name, const char *hash, int64_t now_ms,
                      struct kl_err *err);
};

/* A connection as the shared sequences see it. Each backend object embeds
 * one and points `impl` at itself. */
struct kl_dest_conn {
    const struct kl_dest_backend *be;
    void *impl;
    struct kl_dest_options opt;
    struct kl_dest_ds_list ds; /* what this connection knows of each dataset */
};

/* A destination whose ops run the sequences over `c`. kl_dest_destroy on
 * it calls be->destroy(impl). NULL (err filled) when out of memory; `c`
 * then stays the caller's. */
struct kl_dest *kl_dest_conn_wrap(struct kl_dest_conn *c, struct kl_err *err);

/* Finds the dataset in the cache (its name validated), connects, and
 * creates the dataset and its system tables once. *out as kl_dest_ds_get. */
int kl_dest_conn_open_dataset(struct kl_dest_conn *c, const char *dataset, struct kl_dest_ds **out,
                              struct kl_err *err);

/* Commits. *in_tx is cleared when no transaction is open any more: after
 * success, and after a failure the backend does not leave open. */
int kl_dest_conn_commit(struct kl_dest_conn *c, bool *in_tx, struct kl_err *err);

/* The write_chunk of dest.h (chunk.c). */
int kl_dest_conn_write_chunk(struct kl_dest_conn *c, const char *dataset,
                             const struct kl_chunk_write *w, struct kl_chunk_result *res,
                             struct kl_err *err);

/* The complete_load of dest.h (load.c). */
int kl_dest_conn_complete_load(struct kl_dest_conn *c, const char *dataset,
                               const struct kl_load_complete *lc, struct kl_err *err);

/* ---- dlt's pipeline state (restore.c) ---- */

/* The row dlt restores for `pipeline`, and its decoded state (*json
 * malloc'ed; NULL when there is no row). KL_ERR_UPSTREAM, naming the load,
 * when the row cannot be decoded. */
int kl_dest_dlt_restore(struct kl_dest_conn *c, const struct kl_dest_ds *d, const char *pipeline,
                        struct kl_dlt_state_row *row, char **json, size_t *len, struct kl_err *err);

/* Merges `stream`'s positions and run time from the decoded state into
 * `st` (ours), as struct kl_dest_state describes, and names the row. */
int kl_dest_dlt_merge(const struct kl_dlt_state_row *row, const char *json, size_t len,
                      const char *stream, struct kl_dest_state *st, struct kl_err *err);

/* The next state row, continuing the restored one. */
struct kl_dest_dlt_next {
    const char *pipeline;
    const char *schema_name; /* the source section and `_dlt_loads.schema_name` */
    const char *schema_hash; /* for `_dlt_loads`; NULL: the newest in `_dlt_version` */
    /* The job whose `_dlt_loads` row is written too; NULL: none, and then
     * nothing is written unless the state changes. */
    const char *job_load_id;
    const struct kl_dlt_state_row *restored; /* NULL or not found: a new state */
    const char *restored_json;
    size_t restored_len;
    /* The streams to merge or the stream to forget (the rest is filled in). */
    struct kl_state_doc_in doc;
};

/* Writes it, in the caller's transaction under the dataset lock: the state
 * row under the job's load id when that sorts after every load id, else
 * under a new one (kl_dlt_load_id_after) with its own `_dlt_loads` row;
 * and the job's `_dlt_loads` row. */
int kl_dest_dlt_write_next(struct kl_dest_conn *c, const struct kl_dest_ds *d,
                           const struct kl_dest_dlt_next *next, int64_t now_ms, struct kl_err *err);

/* A factory whose open() returns create(target, opts): `name` is static,
 * `target` (a connection string or a path) is copied, and wiped when freed
 * if `secret`. */
struct kl_dest_factory *kl_dest_conn_factory_create(
    const char *name, const char *target, const struct kl_dest_options *opts,
    struct kl_dest *(*create)(const char *target, const struct kl_dest_options *opts,
                              struct kl_err *err),
    bool secret, struct kl_err *err);

#endif
