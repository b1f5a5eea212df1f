/*
 * The destination interface: where a job's rows, dead letters, checkpoints
 * and dlt's system tables are written, one transaction per chunk. Backends:
 * PostgreSQL (core/dest/pg.h) and SQLite (core/dest/sqlite.h). Not here: how
 * messages become rows (core/normalize) or which shard is read (core/load).
 *
 * Threads: a `struct kl_dest` is ONE database connection and is not
 * thread-safe; give every worker its own, from a factory
 * (struct kl_dest_factory) or a pool (core/dest/pool.h). Any number of
 * connections, in any number of processes, may write the same dataset at
 * once: DDL and replace truncations run under a per-dataset lock (a
 * transaction-level advisory lock in Postgres, the database write lock in
 * SQLite), and each shard's checkpoint is fenced.
 *
 * Datasets: in Postgres a dataset is a schema; in SQLite every table of a
 * dataset lives in the one database file as "<dataset>.<table>" (see sqlite.h).
 * Every operation prepares its dataset on first use on a connection (schema
 * and system tables created if missing), so calling kl_dest_prepare first is
 * optional; it is there to fail early.
 *
 * Errors: KL_ERR_UNAVAILABLE is retryable (connection lost, serialization
 * failure 40001, deadlock 40P01, admin shutdown 57P01, SQLite busy); the
 * connection re-establishes itself on the next call. KL_ERR_CONFLICT means a
 * checkpoint carried an older fencing token than the stored one: the whole
 * chunk was rolled back and the caller has lost its lease (from
 * kl_dest_claim_shard: a newer owner claimed the shard). KL_ERR_EXPIRED
 * means the caller's schema is stale (a column exists in the destination with
 * another type): reload it with kl_dest_load_schema and normalise again.
 * Everything else is final; the database's SQLSTATE and message are in
 * err->msg.
 */
#ifndef KL_DEST_DEST_H
#define KL_DEST_DEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct kl_err;
struct kl_clock;
#include "core/kinesis/position.h"
#include "core/normalize/rows.h"

struct kl_row_batch;
struct kl_schema;

#define KL_DEST_NAME_MAX 128 /* pipeline, stream, load id, schema name: at most 127 bytes */

/* enum kl_write_disposition and its names are part of the shared contract,
 * core/normalize/rows.h. */

/* struct kl_checkpoint (core/kinesis/position.h) is a shard's position as
 * `_kinesis_checkpoints` stores it with the rows it covers. A shard claimed
 * (kl_dest_claim_shard) before its first commit has a row with its fencing
 * token and no position; kl_dest_read_state reports such rows too, for
 * their token; never resume from one. */

/* Where a stored position or run time came from. */
enum kl_state_origin {
    KL_STATE_NONE = 0, /* nothing stored: the job's initial_at_timestamp decides */
    KL_STATE_OURS,     /* kinesis-loader's `_kinesis_checkpoints` / `_kinesis_runs` */
    KL_STATE_DLT,      /* dlt's `_dlt_pipeline_state`: the row dlt itself would restore */
};

/* "none", "kinesis-loader", "dlt". */
const char *kl_state_origin_name(enum kl_state_origin o);

/* What the destination holds for one pipeline and stream: our checkpoints
 * and run time, merged with the positions and run time of dlt's pipeline
 * state (its newest completed load, chosen as dlt chooses it), so that a
 * stream dlt loaded continues where dlt stopped. Per shard the further
 * position wins (sequences compared numerically; on a tie ours, with its
 * sub-sequence), and the later run time. */
struct kl_dest_state {
    struct kl_checkpoint *checkpoints; /* malloc'ed array, ordered by shard_id */
    size_t n_checkpoints;
    /* Per checkpoint (malloc'ed, same order): where its position came from.
     * A dlt position of a shard we have no row for has fencing token 0 and
     * dlt's row's created_at as updated_ms; one of a shard we claimed keeps
     * the stored token. KL_STATE_NONE for a claim without a position. */
    enum kl_state_origin *origins;
    bool has_last_run;
    int64_t last_run_ms; /* the run time the previous successful job recorded (epoch ms) */
    enum kl_state_origin last_run_origin;
    /* KL_STATE_DLT when any position or the run time is dlt's; else
     * KL_STATE_OURS when anything is stored; else KL_STATE_NONE. */
    enum kl_state_origin origin;
    /* dlt's state row that was read: its `_dlt_load_id` ("" when there is
     * none) and `version`, whether or not it gave anything. */
    char dlt_load_id[KL_DEST_NAME_MAX];
    int64_t dlt_version;
};

void kl_dest_state_init(struct kl_dest_state *s);
void kl_dest_state_free(struct kl_dest_state *s);

/* Everything one chunk writes, in one transaction. */
struct kl_chunk_write {
    const char *load_id;       /* dlt load id of the job; stored in `_kinesis_dead_letters` */
    const char *pipeline_name; /* checkpoint key */
    const char *stream_name;   /* checkpoint key */
    enum kl_write_disposition disposition;
    /* The rows, their schema (batch->schema) and dead letters; NULL for a
     * checkpoint-only chunk. The schema must not change during the call. */
    const struct kl_row_batch *batch;
    /* The schema as dlt stores it in `_dlt_version`, with its version hash.
     * Give both whenever the schema changed since this connection last wrote
     * it; a row is inserted when no row has this hash yet. May be NULL. */
    const char *schema_json;
    const char *schema_hash;
    /* Checkpoints covered by this chunk (usually one); each is refused, and
     * the whole chunk rolled back, when its fencing token is older than the
     * stored one. */
    const struct kl_checkpoint *checkpoints;
    size_t n_checkpoints;
};

/* What one chunk wrote (counts are of this call only). */
struct kl_chunk_result {
    size_t rows;           /* rows written, all tables */
    size_t dead_letters;   /* dead letters written */
    size_t tables_created; /* CREATE TABLE statements that created a table */
    size_t columns_added;  /* ADD COLUMN statements issued */
    bool truncated;        /* replace: this chunk truncated the root table family */
};

/* The end of a job: `_dlt_loads`, `_dlt_pipeline_state`, `_kinesis_runs`.
 * The state row continues the one dlt would restore: every stream of the
 * pipeline with checkpoints of ours gets, per shard, the further of the
 * restored position and ours, and the later run time; everything else in
 * it (other sources, resources, keys) stays as it was; `_state_version` is
 * the restored one + 1. Its `_dlt_load_id` is the job's load id when that
 * sorts after every `_dlt_loads.load_id`, else a new one that does (with
 * its own `_dlt_loads` row), so that dlt restores this row next. When the
 * newest stored schema is of a newer engine than ours (kinesis-loader
 * before wrote 10), it is stored again in our engine's shape. */
struct kl_load_complete {
    const char *load_id;
    const char *schema_name; /* dlt schema name (the source name, "kinesis") */
    const char *schema_hash; /* the schema version hash; NULL: the newest in `_dlt_version` */
    const char *pipeline_name;
    const char *stream_name;
    /* With replace, the job's root table: truncated now if no chunk did (a job
     * that read nothing still empties it, as dlt does). NULL otherwise. */
    const char *root_table;
    enum kl_write_disposition disposition;
    int64_t next_run_ms; /* the run time the next job starts from (job start - 1 s); < 0: keep */
};

/* The last step a chunk's transaction finished, for the test crash hook. */
enum kl_dest_step {
    KL_DEST_STEP_BEGIN = 0,    /* transaction open */
    KL_DEST_STEP_CHECKPOINT,   /* checkpoints upserted (fencing checked) */
    KL_DEST_STEP_DDL,          /* tables/columns created */
    KL_DEST_STEP_VERSION,      /* `_dlt_version` row inserted */
    KL_DEST_STEP_REPLACE,      /* replace: tables truncated */
    KL_DEST_STEP_MERGE_DELETE, /* merge: re-delivered rows deleted */
    KL_DEST_STEP_ROWS,         /* one table's rows sent (may repeat) */
    KL_DEST_STEP_DEAD_LETTERS, /* dead letters sent */
    KL_DEST_STEP_COMMIT,       /* committed, before the call returns */
    KL_DEST_STEP_COUNT
};

const char *kl_dest_step_name(enum kl_dest_step s);

struct kl_dest_options {
    /* dlt's `create_indexes`: UNIQUE on `_dlt_id` (and indexes for merge). Default true. */
    bool create_indexes;
    /* SQLite: how long to wait for the write lock before KL_ERR_UNAVAILABLE. Default 30000. */
    int busy_timeout_ms;
    /* Postgres: size of the COPY send buffer. Default 1 MiB. */
    size_t copy_buffer;
    /* Wall clock for timestamps written by SQLite (Postgres uses now()). NULL: system. */
    const struct kl_clock *clock;
    /* Tests only: called after each step of write_chunk; returning true
     * simulates a crash there (the connection is dropped without commit, or
     * after it for KL_DEST_STEP_COMMIT) and the call fails with
     * KL_ERR_UNAVAILABLE. */
    bool (*crash_after)(void *ctx, enum kl_dest_step step);
    void *crash_ctx;
};

/* Fills the defaults above. */
void kl_dest_options_init(struct kl_dest_options *o);

struct kl_dest_ops {
    const char *(*name)(void *impl); /* "postgres", "sqlite" */
    int (*ping)(void *impl, struct kl_err *err);
    int (*prepare)(void *impl, const char *dataset, struct kl_err *err);
    /* Sets *json_out (malloc'ed, caller frees) to the newest schema stored
     * under `schema_name`, or NULL when none; *version_out to its version. */
    int (*load_schema)(void *impl, const char *dataset, const char *schema_name, char **json_out,
                       int64_t *version_out, struct kl_err *err);
    int (*read_state)(void *impl, const char *dataset, const char *pipeline, const char *stream,
                      struct kl_dest_state *out, struct kl_err *err);
    /* Raises the shard's stored fencing token to `fencing_token`. */
    int (*claim_shard)(void *impl, const char *dataset, const char *pipeline, const char *stream,
                       const char *shard_id, int64_t fencing_token, struct kl_err *err);
    /* Forgets checkpoints and the run time of pipeline+stream (the rows
     * stay), and the stream's resource state in dlt's pipeline state (a
     * new state row without it), so neither tool resumes it. */
    int (*delete_state)(void *impl, const char *dataset, const char *pipeline, const char *stream,
                        struct kl_err *err);
    int (*write_chunk)(void *impl, const char *dataset, const struct kl_chunk_write *w,
                       struct kl_chunk_result *res, struct kl_err *err);
    /* Idempotent: a second call with the same load id writes nothing more. */
    int (*complete_load)(void *impl, const char *dataset, const struct kl_load_complete *c,
                         struct kl_err *err);
    void (*destroy)(void *impl);
};

struct kl_dest {
    const struct kl_dest_ops *ops;
    void *impl;
};

/* Closes the connection and frees the destination; NULL is a no-op. */
void kl_dest_destroy(struct kl_dest *d);

static inline const char *kl_dest_name(struct kl_dest *d)
{
    return d->ops->name(d->impl);
}

/* Checks that the database answers (for /readyz). */
static inline int kl_dest_ping(struct kl_dest *d, struct kl_err *err)
{
    return d->ops->ping(d->impl, err);
}

/* Creates the dataset and the system tables if missing. */
static inline int kl_dest_prepare(struct kl_dest *d, const char *dataset, struct kl_err *err)
{
    return d->ops->prepare(d->impl, dataset, err);
}

static inline int kl_dest_load_schema(struct kl_dest *d, const char *dataset,
                                      const char *schema_name, char **json_out,
                                      int64_t *version_out, struct kl_err *err)
{
    return d->ops->load_schema(d->impl, dataset, schema_name, json_out, version_out, err);
}

/* Fills `out` (initialised by the caller; free it with kl_dest_state_free).
 * Claimed shards without a position are among the checkpoints, with
 * sequence "" (see struct kl_checkpoint). dlt's state is merged in as
 * struct kl_dest_state says; a state row that cannot be decoded is an
 * error (KL_ERR_UPSTREAM), not an empty state. */
static inline int kl_dest_read_state(struct kl_dest *d, const char *dataset, const char *pipeline,
                                     const char *stream, struct kl_dest_state *out,
                                     struct kl_err *err)
{
    return d->ops->read_state(d->impl, dataset, pipeline, stream, out, err);
}

/* Claims the shard for `fencing_token` before its new owner reads the
 * position to resume from, so that a former owner (an older token) can
 * never commit again: without the claim a stalled owner could still write
 * until the new one's first commit raised the stored token, and both would
 * continue from the same position. In one transaction: the stored token is
 * raised to `fencing_token` (the position stays); a shard without a row
 * gets one with the token and no position. An equal token is fine (a
 * retried claim); KL_ERR_CONFLICT when the stored token is newer: the
 * shard has a newer owner. */
static inline int kl_dest_claim_shard(struct kl_dest *d, const char *dataset, const char *pipeline,
                                      const char *stream, const char *shard_id,
                                      int64_t fencing_token, struct kl_err *err)
{
    return d->ops->claim_shard(d->impl, dataset, pipeline, stream, shard_id, fencing_token, err);
}

static inline int kl_dest_delete_state(struct kl_dest *d, const char *dataset, const char *pipeline,
                                       const char *stream, struct kl_err *err)
{
    return d->ops->delete_state(d->impl, dataset, pipeline, stream, err);
}

/* One transaction: checkpoints (fenced), DDL for what the destination lacks,
 * the `_dlt_version` row, replace truncation, the rows (merge: re-delivered
 * rows replaced), the dead letters. `res` may be NULL. */
static inline int kl_dest_write_chunk(struct kl_dest *d, const char *dataset,
                                      const struct kl_chunk_write *w, struct kl_chunk_result *res,
                                      struct kl_err *err)
{
    return d->ops->write_chunk(d->impl, dataset, w, res, err);
}

static inline int kl_dest_complete_load(struct kl_dest *d, const char *dataset,
                                        const struct kl_load_complete *c, struct kl_err *err)
{
    return d->ops->complete_load(d->impl, dataset, c, err);
}

/* Opens connections to one database, one per call, for worker threads.
 * open() and destroy() are thread-safe. */
struct kl_dest_factory_ops {
    int (*open)(void *impl, struct kl_dest **out, struct kl_err *err);
    const char *(*name)(void *impl);
    void (*destroy)(void *impl);
};

struct kl_dest_factory {
    const struct kl_dest_factory_ops *ops;
    void *impl;
};

/* The caller destroys the returned destination with kl_dest_destroy. */
static inline int kl_dest_factory_open(struct kl_dest_factory *f, struct kl_dest **out,
                                       struct kl_err *err)
{
    return f->ops->open(f->impl, out, err);
}

/* Destinations opened from it stay valid. NULL is a no-op. */
void kl_dest_factory_destroy(struct kl_dest_factory *f);

/* Dataset names (and table names from requests) are identifiers we create:
 * 1..63 bytes of [a-z0-9_], not starting with a digit — exactly what dlt's
 * snake_case naming produces. Returns 0 or KL_ERR_INVALID with a message. */
int kl_dest_validate_dataset(const char *name, struct kl_err *err);
int kl_dest_validate_table(const char *name, struct kl_err *err);

#endif
