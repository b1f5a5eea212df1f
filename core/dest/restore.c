/*
 * dlt's pipeline state on the destination side, for both backends: the row
 * dlt restores, read and merged into what read_state reports, and the next
 * row written so that dlt restores it (its load id sorting after every
 * other). The document itself is state.c's; the statements the backend's.
 * Not here: when these run (backend.c, load.c).
 */
#include "core/dest/backend.h"
#include "core/dest/state.h"
#include "core/normalize/schema.h"
#include "core/util/err.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int kl_dest_dlt_restore(struct kl_dest_conn *c, const struct kl_dest_ds *d, const char *pipeline,
                        struct kl_dlt_state_row *row, char **json, size_t *len, struct kl_err *err)
{
    int rc = c->be->read_dlt_state(c->impl, d, pipeline, row, err);

    *json = NULL;
    *len = 0;
    if (rc == KL_OK && row->found) {
        struct kl_err e = {0};
        rc = kl_dlt_state_decode(row->state, json, len, &e);
        if (rc != KL_OK)
            kl_err_set(err, rc, "dlt's pipeline state of load %s cannot be read: %s", row->load_id,
                       e.msg);
    }
    if (rc != KL_OK)
        kl_dlt_state_row_free(row);
    return rc;
}

/* A checkpoint with where its position came from, to sort them together. */
struct sourced {
    struct kl_checkpoint cp;
    enum kl_state_origin origin;
};

static int cmp_sourced(const void *a, const void *b)
{
    const struct sourced *x = a, *y = b;
    return strcmp(x->cp.position.shard_id, y->cp.position.shard_id);
}

int kl_dest_dlt_merge(const struct kl_dlt_state_row *row, const char *json, size_t len,
                      const char *stream, struct kl_dest_state *st, struct kl_err *err)
{
    struct kl_dlt_stream ds;
    struct sourced *all = NULL;
    size_t n = st->n_checkpoints;
    int rc;

    snprintf(st->dlt_load_id, sizeof st->dlt_load_id, "%s", row->load_id);
    st->dlt_version = row->version;
    rc = kl_dlt_state_stream(json, len, KL_SCHEMA_NAME, stream, &ds, err);
    if (rc != KL_OK)
        return rc;
    if (ds.n_positions > 0 && (all = calloc(n + ds.n_positions, sizeof *all)) == NULL) {
        kl_dlt_stream_free(&ds);
        return kl_err_set(err, KL_ERR_NOMEM, "checkpoints");
    }
    for (size_t k = 0; all != NULL && k < n; k++) {
        all[k].cp = st->checkpoints[k];
        all[k].origin = st->origins[k];
    }
    for (size_t i = 0; all != NULL && i < ds.n_positions; i++) {
        const struct kl_shard_position *p = &ds.positions[i];
        size_t k = 0;
        while (k < n && strcmp(all[k].cp.position.shard_id, p->shard_id) != 0)
            k++;
        if (k == n) { /* a shard only dlt has read: no token of ours */
            all[n].cp.position = *p;
            all[n].cp.fencing_token = 0;
            all[n].cp.updated_ms = row->created_ms;
            all[n++].origin = KL_STATE_DLT;
        } else if (kl_seq_cmp(p->sequence, all[k].cp.position.sequence) > 0) {
            /* dlt is further, or the shard is only claimed: dlt's
             * position, the stored token */
            all[k].cp.position = *p;
            all[k].cp.updated_ms = row->created_ms;
            all[k].origin = KL_STATE_DLT;
        }
    }
    if (all != NULL) {
        struct kl_checkpoint *cps = calloc(n, sizeof *cps);
        enum kl_state_origin *origins = calloc(n, sizeof *origins);
        if (cps == NULL || origins == NULL) {
            free(cps);
            free(origins);
            free(all);
            kl_dlt_stream_free(&ds);
            return kl_err_set(err, KL_ERR_NOMEM, "checkpoints");
        }
        qsort(all, n, sizeof *all, cmp_sourced);
        for (size_t k = 0; k < n; k++) {
            cps[k] = all[k].cp;
            origins[k] = all[k].origin;
        }
        free(st->checkpoints);
        free(st->origins);
        st->checkpoints = cps;
        st->origins = origins;
        st->n_checkpoints = n;
    }
    if (ds.has_run && (!st->has_last_run || ds.run_ms > st->last_run_ms)) {
        st->has_last_run = true;
        st->last_run_ms = ds.run_ms;
        st->last_run_origin = KL_STATE_DLT;
    }
    free(all);
    kl_dlt_stream_free(&ds);
    return KL_OK;
}

/* dlt's destination name: the last part of its type ("postgres"). */
static const char *destination_name(const char *type)
{
    const char *dot = strrchr(type, '.');
    return dot != NULL ? dot + 1 : type;
}

int kl_dest_dlt_write_next(struct kl_dest_conn *c, const struct kl_dest_ds *d,
                           const struct kl_dest_dlt_next *next, int64_t now_ms, struct kl_err *err)
{
    const struct kl_dest_backend *be = c->be;
    struct kl_state_doc_in in = next->doc;
    struct kl_state_doc doc;
    char newest[KL_DEST_NAME_MAX], state_load[KL_DEST_NAME_MAX], hash[128] = "";
    int rc;

    in.restored = next->restored_json;
    in.restored_len = next->restored_len;
    in.pipeline_name = next->pipeline;
    in.dataset_name = d->name;
    in.schema_name = next->schema_name;
    in.destination_type = be->destination_type;
    in.destination_name = destination_name(be->destination_type);
    in.version = next->restored != NULL && next->restored->found ? next->restored->version + 1 : 1;
    rc = kl_state_doc_build(&in, &doc, err);
    if (rc != KL_OK)
        return rc;
    if (next->job_load_id == NULL && !doc.changed)
        goto cleanup; /* nothing to say to dlt */

    if (next->schema_hash != NULL)
        snprintf(hash, sizeof hash, "%s", next->schema_hash);
    else
        rc = be->newest_hash(c->impl, d, next->schema_name, hash, sizeof hash, err);
    /* dlt restores the row of the greatest load id: the job's, when it is
     * that, else one of our own after it */
    if (rc == KL_OK)
        rc = be->newest_load_id(c->impl, d, newest, sizeof newest, err);
    if (rc == KL_OK && next->job_load_id != NULL && strcmp(next->job_load_id, newest) > 0)
        snprintf(state_load, sizeof state_load, "%s", next->job_load_id);
    else if (rc == KL_OK)
        rc = kl_dlt_load_id_after(now_ms, newest, state_load, sizeof state_load, err);
    if (rc == KL_OK)
        rc = be->write_state(c->impl, d, next->pipeline, state_load, &doc, in.version, now_ms, err);
    if (rc == KL_OK && next->job_load_id != NULL)
        rc = be->write_load(c->impl, d, next->job_load_id, next->schema_name,
                            hash[0] != '\0' ? hash : NULL, now_ms, err);
    if (rc == KL_OK && (next->job_load_id == NULL || strcmp(state_load, next->job_load_id) != 0))
        rc = be->write_load(c->impl, d, state_load, next->schema_name,
                            hash[0] != '\0' ? hash : NULL, now_ms, err);
cleanup:
    kl_state_doc_free(&doc);
    return rc;
}
