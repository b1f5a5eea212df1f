/*
 * The end of a load, for both destinations (see dest.h and backend.h): in
 * one transaction under the dataset lock, unless the load is recorded as
 * done already, a replace that read nothing empties its table family, and
 * the run time, dlt's pipeline state document and the `_dlt_loads` row are
 * written. The statements are the backend's. Not here: chunks (chunk.c).
 */
#include "core/dest/backend.h"
#include "core/dest/state.h"
#include "core/util/clock.h"
#include "core/util/err.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The state document of every stream of the pipeline, as stored now. */
static int build_state(struct kl_dest_conn *c, const struct kl_dest_ds *d,
                       const struct kl_load_complete *lc, int64_t *version,
                       struct kl_state_doc *doc, struct kl_err *err)
{
    struct kl_dest_stream_row *rows = NULL;
    struct kl_state_stream *streams = NULL;
    struct kl_checkpoint *cps = NULL;
    size_t n_rows = 0, n_streams = 0;
    int rc;

    rc = c->be->read_stream_rows(c->impl, d, lc->pipeline_name, NULL, true, &rows, &n_rows, err);
    /* dlt's state holds positions: a claimed shard without one is left out. */
    if (rc == KL_OK) {
        size_t kept = 0;
        for (size_t i = 0; i < n_rows; i++) {
            if (rows[i].cp.position.shard_id[0] != '\0' && rows[i].cp.position.sequence[0] == '\0')
                continue;
            if (kept != i)
                rows[kept] = rows[i];
            kept++;
        }
        n_rows = kept;
    }
    if (rc == KL_OK)
        rc = kl_dest_group_streams(rows, n_rows, c->be->sort_streams, &streams, &n_streams, &cps,
                                   err);
    if (rc == KL_OK)
        rc = c->be->next_state_version(c->impl, d, lc->pipeline_name, version, err);
    if (rc == KL_OK) {
        struct kl_state_doc_in in;
        memset(&in, 0, sizeof in);
        in.pipeline_name = lc->pipeline_name;
        in.dataset_name = d->name;
        in.schema_name = lc->schema_name;
        in.destination_type = c->be->destination_type;
        in.version = *version;
        in.streams = streams;
        in.n_streams = n_streams;
        rc = kl_state_doc_build(&in, doc, err);
    }
    free(streams);
    free(cps);
    free(rows);
    return rc;
}

int kl_dest_conn_complete_load(struct kl_dest_conn *c, const char *dataset,
                               const struct kl_load_complete *lc, struct kl_err *err)
{
    const struct kl_dest_backend *be = c->be;
    const struct kl_clock *clock = c->opt.clock != NULL ? c->opt.clock : kl_clock_system();
    struct kl_dest_ds *d;
    struct kl_state_doc doc;
    char hash[128] = "";
    int64_t now_ms, version = 1;
    bool in_tx = false, done = false;
    int rc;

    memset(&doc, 0, sizeof doc);
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
    rc = build_state(c, d, lc, &version, &doc, err);
    if (rc == KL_OK)
        rc = be->write_state(c->impl, d, lc, &doc, version, now_ms, err);
    if (rc != KL_OK)
        goto cleanup;

    if (lc->schema_hash != NULL)
        snprintf(hash, sizeof hash, "%s", lc->schema_hash);
    else
        rc = be->newest_hash(c->impl, d, lc->schema_name, hash, sizeof hash, err);
    if (rc == KL_OK)
        rc = be->write_load(c->impl, d, lc, hash[0] != '\0' ? hash : NULL, now_ms, err);
    if (rc == KL_OK)
        rc = kl_dest_conn_commit(c, &in_tx, err);

cleanup:
    if (rc != KL_OK && in_tx)
        be->rollback(c->impl);
    kl_state_doc_free(&doc);
    return rc;
}
