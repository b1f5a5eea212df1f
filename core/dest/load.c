/*
 * The end of a load, for both destinations (see dest.h and backend.h): in
 * one transaction under the dataset lock, unless the load is recorded as
 * done already, a replace that read nothing empties its table family, and
 * the run time, dlt's pipeline state row continuing the one dlt restores
 * (restore.c) and the `_dlt_loads` row are written. The statements are
 * the backend's. Not here: chunks (chunk.c).
 */
#include "core/dest/backend.h"
#include "core/dest/state.h"
#include "core/normalize/schema.h"
#include "core/util/buf.h"
#include "core/util/clock.h"
#include "core/util/err.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Every stream of the pipeline with checkpoints or a run time of ours,
 * claims without a position left out (dlt's state holds positions). *out
 * and *cps_out are malloc'ed; the streams point into *rows_out. */
static int our_streams(struct kl_dest_conn *c, const struct kl_dest_ds *d, const char *pipeline,
                       struct kl_dest_stream_row **rows_out, struct kl_state_stream **out,
                       size_t *n_out, struct kl_checkpoint **cps_out, struct kl_err *err)
{
    struct kl_dest_stream_row *rows = NULL;
    size_t n_rows = 0, kept = 0;
    int rc = c->be->read_stream_rows(c->impl, d, pipeline, NULL, true, &rows, &n_rows, err);

    for (size_t i = 0; rc == KL_OK && i < n_rows; i++) {
        if (rows[i].cp.position.shard_id[0] != '\0' && rows[i].cp.position.sequence[0] == '\0')
            continue;
        if (kept != i)
            rows[kept] = rows[i];
        kept++;
    }
    if (rc == KL_OK)
        rc = kl_dest_group_streams(rows, kept, c->be->sort_streams, out, n_out, cps_out, err);
    if (rc != KL_OK) {
        free(rows);
        rows = NULL;
    }
    *rows_out = rows;
    return rc;
}

/* A newest stored schema of a newer engine than ours (kinesis-loader
 * before wrote 10) is stored again in our engine's shape, so dlt 0.5.4 can
 * read the dataset even when no chunk has written the schema since. */
static int restore_schema_engine(struct kl_dest_conn *c, const struct kl_dest_ds *d,
                                 const char *name, struct kl_err *err)
{
    char *json = NULL;
    int64_t version = 0;
    struct kl_schema *s = NULL;
    struct kl_buf doc;
    int rc = c->be->read_schema(c->impl, d, name, &json, &version, err);

    kl_buf_init(&doc, (size_t)64 << 20);
    if (rc == KL_OK && json != NULL && kl_dest_schema_engine(json) > KL_SCHEMA_ENGINE_VERSION) {
        rc = kl_schema_from_json(json, strlen(json), &s, err);
        if (rc == KL_OK)
            rc = kl_schema_to_json(s, &doc, err);
        if (rc == KL_OK)
            rc = c->be->store_version(c->impl, d, s, doc.data, s->version_hash, err);
    }
    kl_schema_destroy(s);
    kl_buf_free(&doc);
    free(json);
    return rc;
}

int kl_dest_conn_complete_load(struct kl_dest_conn *c, const char *dataset,
                               const struct kl_load_complete *lc, struct kl_err *err)
{
    const struct kl_dest_backend *be = c->be;
    const struct kl_clock *clock = c->opt.clock != NULL ? c->opt.clock : kl_clock_system();
    struct kl_dest_ds *d;
    struct kl_dlt_state_row restored;
    struct kl_dest_stream_row *rows = NULL;
    struct kl_state_stream *streams = NULL;
    struct kl_checkpoint *cps = NULL;
    struct kl_dest_dlt_next next;
    char *json = NULL;
    size_t json_len = 0, n_streams = 0;
    int64_t now_ms;
    bool in_tx = false, done = false;
    int rc;

    memset(&restored, 0, sizeof restored);
    if (lc->load_id == NULL || lc->schema_name == NULL || lc->pipeline_name == NULL ||
        lc->stream_name == NULL)
        return kl_err_set(err, KL_ERR_INVALID,
                          "complete_load without load id, schema, pipeline or stream");
    rc = kl_dest_conn_open_dataset(c, dataset, &d, err);
    if (rc != KL_OK)
        return rc;
    /* One time for every row this writes, taken before waiting for the lock. */
    now_ms = kl_clock_wall_ms(clock);
    rc = be->begin(c->impl, err);
    if (rc != KL_OK)
        return rc;
    in_tx = true;
    if (be->lock_dataset != NULL) {
        rc = be->lock_dataset(c->impl, d, err);
        if (rc != KL_OK)
            goto cleanup;
    }

    rc = be->load_done(c->impl, d, lc->load_id, &done, err);
    if (rc != KL_OK)
        goto cleanup;
    if (done) { /* completed before: nothing more to write */
        rc = kl_dest_conn_commit(c, &in_tx, err);
        goto cleanup;
    }

    if (lc->disposition == KL_WRITE_REPLACE && lc->root_table != NULL) {
        bool truncated = false;
        rc = kl_dest_validate_table(lc->root_table, err);
        if (rc == KL_OK && kl_sql_catalog_find(&d->cat, lc->root_table) != NULL)
            rc =
                be->truncate_family(c->impl, d, lc->load_id, lc->root_table, NULL, &truncated, err);
        if (rc != KL_OK)
            goto cleanup;
    }
    if (lc->next_run_ms >= 0) {
        rc = be->write_run_time(c->impl, d, lc, now_ms, err);
        if (rc != KL_OK)
            goto cleanup;
    }
    if (lc->schema_hash == NULL)
        rc = restore_schema_engine(c, d, lc->schema_name, err);
    if (rc == KL_OK)
        rc = kl_dest_dlt_restore(c, d, lc->pipeline_name, &restored, &json, &json_len, err);
    if (rc == KL_OK)
        rc = our_streams(c, d, lc->pipeline_name, &rows, &streams, &n_streams, &cps, err);
    if (rc == KL_OK) {
        memset(&next, 0, sizeof next);
        next.pipeline = lc->pipeline_name;
        next.schema_name = lc->schema_name;
        next.schema_hash = lc->schema_hash;
        next.job_load_id = lc->load_id;
        next.restored = &restored;
        next.restored_json = json;
        next.restored_len = json_len;
        next.doc.streams = streams;
        next.doc.n_streams = n_streams;
        rc = kl_dest_dlt_write_next(c, d, &next, now_ms, err);
    }
    if (rc == KL_OK)
        rc = kl_dest_conn_commit(c, &in_tx, err);

cleanup:
    if (rc != KL_OK && in_tx)
        be->rollback(c->impl);
    kl_dlt_state_row_free(&restored);
    free(json);
    free(streams);
    free(cps);
    free(rows);
    return rc;
}
