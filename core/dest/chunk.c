/*
 * One chunk's transaction, for both destinations (see dest.h and
 * backend.h): the order of its steps, the test crash hook after each, what
 * takes the dataset lock, error handling and rollback, and what the
 * connection's caches may believe once it committed. The statements are the
 * backend's. Not here: the end of a load (load.c).
 */
#include "core/dest/backend.h"
#include "core/dest/sql.h"
#include "core/normalize/rows.h"
#include "core/util/buf.h"
#include "core/util/err.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Changes a chunk makes to the caches, applied only after COMMIT. */
struct pending {
    bool schema_checked;
    bool catalog_from_schema;
    bool hash_stored;
    struct kl_sql_stmts truncated;
    struct kl_sql_stmts indexes;
};

/* A crash simulated by the test hook: the connection goes, uncommitted work
 * with it. */
static bool crash_here(struct kl_dest_conn *c, enum kl_dest_step step, struct kl_err *err)
{
    if (c->opt.crash_after == NULL || !c->opt.crash_after(c->opt.crash_ctx, step))
        return false;
    c->be->drop(c->impl);
    kl_dest_ds_list_invalidate(&c->ds);
    kl_err_set(err, KL_ERR_UNAVAILABLE, "%s: simulated crash after step %s", c->be->name,
               kl_dest_step_name(step));
    return true;
}

#define STEP(c, s, err)                                                                            \
    do {                                                                                           \
        if (crash_here((c), (s), (err))) {                                                         \
            rc = KL_ERR_UNAVAILABLE;                                                               \
            goto cleanup;                                                                          \
        }                                                                                          \
    } while (0)

/* Replace: whether this connection saw root truncated for the load already. */
static bool truncated_before(const struct kl_dest_ds *d, const char *load_id, const char *root)
{
    return strcmp(d->truncated_load, load_id) == 0 && kl_sql_stmts_has(&d->truncated, root);
}

/* For a backend that takes the dataset lock only when a chunk needs it:
 * decides from the caches, before the transaction, whether the chunk
 * changes the schema or needs merge indexes (*need_ddl; *checked when the
 * schema is known applied) and whether it needs the lock at all. */
static int probe(const struct kl_dest_conn *c, const struct kl_dest_ds *d,
                 const struct kl_chunk_write *w, bool unchecked, bool need_version, bool *need_ddl,
                 bool *checked, bool *need_lock, struct kl_err *err)
{
    const struct kl_row_batch *batch = w->batch;
    const struct kl_schema *s = batch != NULL ? batch->schema : NULL;
    int rc = KL_OK;

    *need_ddl = false;
    *checked = false;
    *need_lock = false;
    if (unchecked) {
        struct kl_sql_stmts ddl;
        struct kl_sql_ddl_stats st = {0, 0};
        struct kl_err ignored;
        kl_sql_stmts_init(&ddl);
        /* A stale schema fails here too: the DDL step says so under the lock. */
        if (kl_sql_plan_ddl(c->be->dialect, d->name, s, &d->cat, c->opt.create_indexes, &ddl, &st,
                            &ignored) != KL_OK ||
            ddl.n > 0)
            *need_ddl = true;
        else
            *checked = true;
        kl_sql_stmts_free(&ddl);
    }
    if (batch != NULL && w->disposition == KL_WRITE_MERGE) {
        struct kl_sql_stmts idx, names;
        kl_sql_stmts_init(&idx);
        kl_sql_stmts_init(&names);
        rc = kl_dest_plan_merge_indexes(c->be->dialect, d, batch, &idx, &names, NULL, err);
        if (idx.n > 0)
            *need_ddl = true;
        kl_sql_stmts_free(&idx);
        kl_sql_stmts_free(&names);
    }
    for (size_t i = 0; batch != NULL && w->disposition == KL_WRITE_REPLACE && i < batch->n_tables;
         i++) {
        const struct kl_table *t = &s->tables[batch->tables[i].table];
        if (t->parent[0] == '\0' && !truncated_before(d, w->load_id, t->name))
            *need_lock = true;
    }
    *need_lock = *need_lock || *need_ddl || need_version;
    return rc;
}

/* Under the dataset lock. With `schema`: reads the catalog again and brings
 * the database up to `s` (new tables, columns). With a merge batch: creates
 * the indexes merge needs and the cache lacks (their names go to
 * `index_names`). The backend locks what the statements alter first. */
static int apply_ddl(struct kl_dest_conn *c, struct kl_dest_ds *d, const struct kl_schema *s,
                     bool schema, const struct kl_row_batch *merge_batch,
                     struct kl_chunk_result *res, struct kl_sql_stmts *index_names,
                     struct kl_err *err)
{
    const struct kl_dest_backend *be = c->be;
    struct kl_sql_stmts ddl, idx, idx_tables;
    struct kl_sql_ddl_stats st = {0, 0};
    int rc = KL_OK;

    if (s == NULL)
        return kl_err_set(err, KL_ERR_INTERNAL, "schema change without a schema");
    kl_sql_stmts_init(&ddl);
    kl_sql_stmts_init(&idx);
    kl_sql_stmts_init(&idx_tables);
    if (schema) {
        rc = be->load_catalog(c->impl, d, err);
        if (rc == KL_OK)
            rc = kl_sql_plan_ddl(be->dialect, d->name, s, &d->cat, c->opt.create_indexes, &ddl, &st,
                                 err);
    }
    if (rc == KL_OK && merge_batch != NULL)
        rc = kl_dest_plan_merge_indexes(be->dialect, d, merge_batch, &idx, index_names, &idx_tables,
                                        err);
    if (rc == KL_OK && be->lock_for_ddl != NULL && (ddl.n > 0 || idx.n > 0))
        rc = be->lock_for_ddl(c->impl, d, s, &idx_tables, err);
    for (size_t i = 0; rc == KL_OK && i < ddl.n; i++)
        rc = be->exec(c->impl, ddl.items[i], "schema change", err);
    for (size_t i = 0; rc == KL_OK && i < idx.n; i++)
        rc = be->exec(c->impl, idx.items[i], "merge index", err);
    if (rc == KL_OK) {
        res->tables_created += st.tables_created;
        res->columns_added += st.columns_added;
    }
    kl_sql_stmts_free(&ddl);
    kl_sql_stmts_free(&idx);
    kl_sql_stmts_free(&idx_tables);
    return rc;
}

/* Merge: deletes the stored rows of the messages in root rows `tr`, and
 * their children. */
static int merge_delete(struct kl_dest_conn *c, const struct kl_dest_ds *d,
                        const struct kl_schema *s, const struct kl_table_rows *tr,
                        struct kl_err *err)
{
    const struct kl_table *root = &s->tables[tr->table];
    struct kl_sql_stmts del;
    struct kl_buf ids;
    int rc;

    kl_buf_init(&ids, (size_t)64 << 20);
    kl_sql_stmts_init(&del);
    /* SQLite reads the ids with json_each, Postgres as a text array. */
    rc = kl_dest_msg_ids(root, tr, c->be->dialect == KL_SQL_SQLITE, &ids, err);
    if (rc == KL_OK)
        rc = kl_dest_plan_merge_deletes(c->be->dialect, d, s, root, &del, err);
    for (size_t i = 0; rc == KL_OK && i < del.n; i++)
        rc = c->be->merge_delete(c->impl, del.items[i], ids.data, err);
    kl_sql_stmts_free(&del);
    kl_buf_free(&ids);
    return rc;
}

/* Committed: the caches may now believe it. */
static void remember(struct kl_dest_conn *c, struct kl_dest_ds *d, const struct kl_chunk_write *w,
                     const struct kl_schema *s, const struct pending *p)
{
    if (p->catalog_from_schema)
        kl_sql_catalog_add_schema(&d->cat, c->be->dialect, s, NULL);
    if (p->schema_checked && s != NULL) {
        d->checked_schema = s;
        d->checked_version = s->version;
    }
    if (p->hash_stored)
        snprintf(d->stored_hash, sizeof d->stored_hash, "%s", w->schema_hash);
    for (size_t i = 0; i < p->indexes.n; i++)
        kl_sql_stmts_add(&d->indexes, p->indexes.items[i], NULL);
    if (p->truncated.n > 0) {
        if (strcmp(d->truncated_load, w->load_id) != 0) {
            kl_sql_stmts_free(&d->truncated);
            snprintf(d->truncated_load, sizeof d->truncated_load, "%s", w->load_id);
        }
        for (size_t i = 0; i < p->truncated.n; i++)
            kl_sql_stmts_add(&d->truncated, p->truncated.items[i], NULL);
    }
}

int kl_dest_conn_write_chunk(struct kl_dest_conn *c, const char *dataset,
                             const struct kl_chunk_write *w, struct kl_chunk_result *res_out,
                             struct kl_err *err)
{
    const struct kl_dest_backend *be = c->be;
    struct kl_dest_ds *d = NULL;
    const struct kl_row_batch *batch = w->batch;
    const struct kl_schema *s = batch != NULL ? batch->schema : NULL;
    const bool merge = batch != NULL && w->disposition == KL_WRITE_MERGE;
    const bool replace = batch != NULL && w->disposition == KL_WRITE_REPLACE;
    const struct kl_table_rows **order = NULL;
    struct kl_chunk_result res;
    struct pending p;
    bool in_tx = false, unchecked, need_ddl, need_version, need_lock = false;
    int rc;

    memset(&res, 0, sizeof res);
    memset(&p, 0, sizeof p);
    if (w->load_id == NULL || w->pipeline_name == NULL || w->stream_name == NULL)
        return kl_err_set(err, KL_ERR_INVALID, "chunk without load id, pipeline or stream");
    if (batch != NULL && s == NULL)
        return kl_err_set(err, KL_ERR_INVALID, "row batch without a schema");
    if (w->n_checkpoints > 0 && w->checkpoints == NULL)
        return kl_err_set(err, KL_ERR_INVALID, "checkpoint count without checkpoints");
    rc = kl_dest_table_order(batch, &order, err);
    if (rc != KL_OK)
        return rc;
    rc = kl_dest_conn_open_dataset(c, dataset, &d, err);
    if (rc != KL_OK)
        goto cleanup;

    unchecked = s != NULL && (d->checked_schema != s || d->checked_version != s->version);
    need_version = s != NULL && w->schema_json != NULL && w->schema_hash != NULL &&
                   strcmp(d->stored_hash, w->schema_hash) != 0;
    if (be->lock_dataset != NULL) {
        rc = probe(c, d, w, unchecked, need_version, &need_ddl, &p.schema_checked, &need_lock, err);
        if (rc != KL_OK)
            goto cleanup;
    } else {
        /* The whole transaction holds the write lock: another connection may
         * have changed the database, so read it again now that nobody can. */
        need_ddl = unchecked;
    }

    rc = be->begin(c->impl, err);
    if (rc != KL_OK)
        goto cleanup;
    in_tx = true;
    STEP(c, KL_DEST_STEP_BEGIN, err);

    /* Checkpoints first: a writer that lost its lease stops before sending rows. */
    rc = be->write_checkpoints(c->impl, d, w, err);
    if (rc != KL_OK)
        goto cleanup;
    STEP(c, KL_DEST_STEP_CHECKPOINT, err);

    if (need_lock) {
        rc = be->lock_dataset(c->impl, d, err);
        if (rc != KL_OK)
            goto cleanup;
    }
    if (need_ddl || merge) {
        rc = apply_ddl(c, d, s, need_ddl, merge ? batch : NULL, &res, &p.indexes, err);
        if (rc != KL_OK)
            goto cleanup;
        if (need_ddl) {
            p.schema_checked = true;
            p.catalog_from_schema = true;
        }
    }
    STEP(c, KL_DEST_STEP_DDL, err);

    if (need_version) {
        rc = be->store_version(c->impl, d, s, w->schema_json, w->schema_hash, err);
        if (rc != KL_OK)
            goto cleanup;
        p.hash_stored = true;
    }
    STEP(c, KL_DEST_STEP_VERSION, err);

    for (size_t i = 0; replace && i < batch->n_tables; i++) {
        const struct kl_table *t = &s->tables[order[i]->table];
        bool done = false;
        if (t->parent[0] != '\0' || truncated_before(d, w->load_id, t->name))
            continue;
        rc = be->truncate_family(c->impl, d, w->load_id, t->name, s, &done, err);
        if (rc == KL_OK)
            rc = kl_sql_stmts_add(&p.truncated, t->name, err);
        if (rc != KL_OK)
            goto cleanup;
        res.truncated = res.truncated || done;
    }
    STEP(c, KL_DEST_STEP_REPLACE, err);

    if (merge && be->lock_families != NULL) {
        rc = be->lock_families(c->impl, d, batch, err);
        if (rc != KL_OK)
            goto cleanup;
    }
    for (size_t i = 0; merge && i < batch->n_tables; i++) {
        if (s->tables[order[i]->table].parent[0] != '\0')
            continue;
        rc = merge_delete(c, d, s, order[i], err);
        if (rc != KL_OK)
            goto cleanup;
    }
    STEP(c, KL_DEST_STEP_MERGE_DELETE, err);

    for (size_t i = 0; batch != NULL && i < batch->n_tables; i++) {
        rc = be->write_rows(c->impl, d, s, order[i], merge, &res.rows, err);
        if (rc != KL_OK)
            goto cleanup;
        STEP(c, KL_DEST_STEP_ROWS, err);
    }

    if (batch != NULL && batch->n_dead_letters > 0) {
        rc = be->write_dead_letters(c->impl, d, w, err);
        if (rc != KL_OK)
            goto cleanup;
        res.dead_letters = batch->n_dead_letters;
    }
    STEP(c, KL_DEST_STEP_DEAD_LETTERS, err);

    rc = kl_dest_conn_commit(c, &in_tx, err);
    if (rc != KL_OK)
        goto cleanup;
    remember(c, d, w, s, &p);
    if (crash_here(c, KL_DEST_STEP_COMMIT, err)) {
        rc = KL_ERR_UNAVAILABLE;
        goto cleanup;
    }
    if (res_out != NULL)
        *res_out = res;

cleanup:
    if (rc != KL_OK && in_tx) {
        be->rollback(c->impl);
        /* What we learnt under the lock may be gone with the rollback. */
        if (d != NULL) {
            d->cat_loaded = false;
            d->prepared = false;
        }
    }
    free(order);
    kl_sql_stmts_free(&p.truncated);
    kl_sql_stmts_free(&p.indexes);
    return rc;
}
