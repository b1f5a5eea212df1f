/*
 * What the Postgres and SQLite destinations share beyond SQL text: the
 * per-connection cache of a dataset, walks over a schema's table families,
 * merge index planning, the order tables are written in, and grouping the
 * stored checkpoints into dlt's state. Internal to core/dest.
 */
#ifndef KL_DEST_COMMON_H
#define KL_DEST_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/dest/dest.h"
#include "core/dest/sql.h"
#include "core/dest/state.h"

/* What one connection knows of one dataset. Only committed facts go in. */
struct kl_dest_ds {
    char name[KL_IDENT_MAX];
    bool prepared;   /* schema and system tables exist */
    bool cat_loaded; /* `cat` and `indexes` were read from the database */
    struct kl_sql_catalog cat;
    struct kl_sql_stmts indexes; /* index names (without a dataset prefix) */
    /* The schema (pointer and version) last found fully applied. */
    const struct kl_schema *checked_schema;
    int64_t checked_version;
    char stored_hash[128]; /* a `_dlt_version` hash known to be stored */
    /* Root tables known truncated for load `truncated_load` (replace). */
    char truncated_load[KL_DEST_NAME_MAX];
    struct kl_sql_stmts truncated;
};

struct kl_dest_ds_list {
    struct kl_dest_ds *items;
    size_t n;
    size_t cap;
};

/* Finds or adds the dataset (its name validated); *out points into the list
 * until the next call. */
int kl_dest_ds_get(struct kl_dest_ds_list *l, const char *name, struct kl_dest_ds **out,
                   struct kl_err *err);
void kl_dest_ds_list_free(struct kl_dest_ds_list *l);
/* Forgets what every dataset's cache believes (after a lost connection). */
void kl_dest_ds_list_invalidate(struct kl_dest_ds_list *l);

bool kl_sql_stmts_has(const struct kl_sql_stmts *s, const char *v);
int kl_sql_stmts_add(struct kl_sql_stmts *s, const char *v, struct kl_err *err);

const struct kl_table *kl_dest_table_named(const struct kl_schema *s, const char *name);
/* Index of the column among the first `n`, or -1. */
int kl_dest_column_index(const struct kl_table *t, size_t n, const char *name);
/* Depth below its root (0 for a root); -1 when the parent chain breaks. */
int kl_dest_table_depth(const struct kl_schema *s, const struct kl_table *t);
/* True when `t` is root table `root` or descends from it. */
bool kl_dest_in_family(const struct kl_schema *s, const struct kl_table *t, const char *root);
/* Without a schema: `name` is `root` or one of its children as dlt names
 * them (<root>__<field>..., with a `_dlt_parent_id` column). */
bool kl_dest_in_family_by_name(const struct kl_sql_cat_table *t, const char *root);

/* Index DDL merge needs and the database lacks: `_kinesis_msg_id` on the
 * batch's root tables, `_dlt_parent_id` on their children. Index names go to
 * `names`, the indexed tables to `tables` (may be NULL), both in step with
 * `out`. */
int kl_dest_plan_merge_indexes(enum kl_sql_dialect dialect, const struct kl_dest_ds *d,
                               const struct kl_row_batch *batch, struct kl_sql_stmts *out,
                               struct kl_sql_stmts *names, struct kl_sql_stmts *tables,
                               struct kl_err *err);

/* The batch's tables in schema order (so concurrent writers lock tables in
 * the same order); *out is malloc'ed (NULL for an empty batch). */
int kl_dest_table_order(const struct kl_row_batch *batch, const struct kl_table_rows ***out,
                        struct kl_err *err);

/* The Postgres text-array literal ({"a","b"}) or JSON array (["a","b"]) of
 * the root rows' `_kinesis_msg_id`, for merge deletes. */
int kl_dest_msg_ids(const struct kl_table *root, const struct kl_table_rows *tr, bool json,
                    struct kl_buf *out, struct kl_err *err);

/* Merge: the DELETEs that remove the stored rows of root table `root`'s
 * messages and of their children, deepest level first, each level found
 * through its parent's `_dlt_id`; tables the catalog lacks are skipped.
 * Each statement takes one parameter, the message ids as kl_dest_msg_ids
 * writes them (JSON for SQLite). Appends to `out`. */
int kl_dest_plan_merge_deletes(enum kl_sql_dialect dialect, const struct kl_dest_ds *d,
                               const struct kl_schema *s, const struct kl_table *root,
                               struct kl_sql_stmts *out, struct kl_err *err);

/* One stream's checkpoints and run time, as read for the state document. */
struct kl_dest_stream_row {
    char stream[KL_DEST_NAME_MAX];
    struct kl_checkpoint cp; /* shard_id "" for a run-time row */
    bool has_last_run;
    int64_t last_run_ms;
};

/* Groups checkpoint and run-time rows into state streams. With `sort`, in
 * strcmp order of stream and shard; otherwise in the order the rows come
 * (a stream's checkpoint rows one after another), a run-time row joining
 * its stream wherever it stands. *out is malloc'ed and points into `rows`;
 * the streams' checkpoints point into *cps_out (malloc'ed). */
int kl_dest_group_streams(const struct kl_dest_stream_row *rows, size_t n, bool sort,
                          struct kl_state_stream **out, size_t *n_out,
                          struct kl_checkpoint **cps_out, struct kl_err *err);

/* The `engine_version` of a stored schema document (for its
 * `_dlt_version` row); ours when it names none. */
int64_t kl_dest_schema_engine(const char *json);

/* Wipes a NUL-terminated secret (a connection string may hold a password)
 * and frees it; NULL is a no-op. */
void kl_dest_free_secret(char *s);

#endif
