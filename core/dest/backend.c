/*
 * The kl_dest_ops of both destinations, over a backend's primitives (see
 * backend.h): dataset preparation, ping, schema and state reads, state
 * deletion, and the factory that opens connections for worker threads.
 * Not here: a chunk's transaction (chunk.c), the end of a load (load.c).
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

#define SQL_MAX ((size_t)64 << 20)

/* ---- datasets ---- */

/* The system tables the catalog lacks (or lacks columns of), as DDL. */
static int plan_system_tables(enum kl_sql_dialect dialect, const struct kl_dest_ds *d,
                              bool create_indexes, struct kl_sql_stmts *out, struct kl_err *err)
{
    size_t n;
    const struct kl_sql_table_def *defs = kl_sql_system_tables(&n);
    struct kl_buf b;
    int rc = KL_OK;

    kl_buf_init(&b, SQL_MAX);
    for (size_t i = 0; rc == KL_OK && i < n; i++) {
        if (kl_sql_catalog_find(&d->cat, defs[i].name) == NULL) {
            rc = kl_sql_create_table(&b, dialect, d->name, defs[i].name, defs[i].cols,
                                     defs[i].n_cols, defs[i].pk, defs[i].n_pk, create_indexes, err);
            if (rc == KL_OK)
                rc = kl_sql_stmts_take(out, &b, err);
        } else {
            /* A table from an older dlt may lack later columns: add them. */
            struct kl_table t;
            struct kl_schema s;
            memset(&t, 0, sizeof t);
            memset(&s, 0, sizeof s);
            snprintf(t.name, sizeof t.name, "%s", defs[i].name);
            t.columns = (struct kl_column *)defs[i].cols; /* only read */
            t.n_columns = defs[i].n_cols;
            s.tables = &t;
            s.n_tables = 1;
            rc = kl_sql_plan_ddl(dialect, d->name, &s, &d->cat, create_indexes, out, NULL, err);
        }
    }
    kl_buf_free(&b);
    return rc;
}

/* Creates the dataset and its system tables once per connection and dataset. */
static int ensure_prepared(struct kl_dest_conn *c, struct kl_dest_ds *d, struct kl_err *err)
{
    const struct kl_dest_backend *be = c->be;
    struct kl_sql_stmts ddl;
    int rc;

    if (d->prepared && d->cat_loaded)
        return KL_OK;
    kl_sql_stmts_init(&ddl);
    rc = be->load_catalog(c->impl, d, err);
    if (rc == KL_OK)
        rc = plan_system_tables(be->dialect, d, c->opt.create_indexes, &ddl, err);
    if (rc == KL_OK && ddl.n > 0) {
        /* Something is missing: create it under the dataset lock, after
         * reading the catalog again (another writer may have been first). */
        rc = be->begin(c->impl, err);
        if (rc == KL_OK && be->lock_dataset != NULL)
            rc = be->lock_dataset(c->impl, d, err);
        if (rc == KL_OK)
            rc = be->load_catalog(c->impl, d, err);
        kl_sql_stmts_free(&ddl);
        if (rc == KL_OK)
            rc = plan_system_tables(be->dialect, d, c->opt.create_indexes, &ddl, err);
        /* A dataset without our tables may be new: create it first. */
        if (rc == KL_OK && be->create_dataset != NULL &&
            kl_sql_catalog_find(&d->cat, "_dlt_version") == NULL)
            rc = be->create_dataset(c->impl, d, err);
        for (size_t i = 0; rc == KL_OK && i < ddl.n; i++)
            rc = be->exec(c->impl, ddl.items[i], "create system table", err);
        if (rc == KL_OK)
            rc = be->commit(c->impl, err);
        if (rc != KL_OK)
            be->rollback(c->impl);
        if (rc == KL_OK)
            rc = be->load_catalog(c->impl, d, err);
    }
    if (rc == KL_OK)
        d->prepared = true;
    kl_sql_stmts_free(&ddl);
    return rc;
}

int kl_dest_conn_open_dataset(struct kl_dest_conn *c, const char *dataset, struct kl_dest_ds **out,
                              struct kl_err *err)
{
    struct kl_dest_ds *d = NULL;
    int rc = kl_dest_ds_get(&c->ds, dataset, &d, err);

    if (rc != KL_OK)
        return rc;
    rc = c->be->connect(c->impl, err);
    if (rc == KL_OK)
        rc = ensure_prepared(c, d, err);
    if (rc == KL_OK)
        *out = d;
    return rc;
}

int kl_dest_conn_commit(struct kl_dest_conn *c, bool *in_tx, struct kl_err *err)
{
    int rc = c->be->commit(c->impl, err);

    if (rc == KL_OK || c->be->failed_commit_ends_tx)
        *in_tx = false;
    return rc;
}

/* ---- ops ---- */

static const char *conn_name(void *impl)
{
    const struct kl_dest_conn *c = impl;
    return c->be->name;
}

static int conn_ping(void *impl, struct kl_err *err)
{
    struct kl_dest_conn *c = impl;
    int rc = c->be->connect(c->impl, err);

    if (rc == KL_OK)
        rc = c->be->exec(c->impl, "SELECT 1", "ping", err);
    return rc;
}

static int conn_prepare(void *impl, const char *dataset, struct kl_err *err)
{
    struct kl_dest_ds *d;
    return kl_dest_conn_open_dataset(impl, dataset, &d, err);
}

static int conn_load_schema(void *impl, const char *dataset, const char *schema_name,
                            char **json_out, int64_t *version_out, struct kl_err *err)
{
    struct kl_dest_conn *c = impl;
    struct kl_dest_ds *d;
    int rc = kl_dest_conn_open_dataset(c, dataset, &d, err);

    if (rc != KL_OK)
        return rc;
    return c->be->read_schema(c->impl, d, schema_name, json_out, version_out, err);
}

/* Our checkpoints and run time of pipeline+stream into `st`. */
static int read_ours(struct kl_dest_conn *c, const struct kl_dest_ds *d, const char *pipeline,
                     const char *stream, struct kl_dest_state *st, struct kl_err *err)
{
    struct kl_dest_stream_row *rows = NULL;
    size_t n = 0, n_cps = 0;
    int rc = c->be->read_stream_rows(c->impl, d, pipeline, stream, true, &rows, &n, err);

    for (size_t i = 0; rc == KL_OK && i < n; i++)
        if (rows[i].cp.position.shard_id[0] != '\0')
            n_cps++;
    if (rc == KL_OK) {
        /* at least one element, so the arrays exist even when empty */
        st->checkpoints = calloc(n_cps > 0 ? n_cps : 1, sizeof *st->checkpoints);
        st->origins = calloc(n_cps > 0 ? n_cps : 1, sizeof *st->origins);
        if (st->checkpoints == NULL || st->origins == NULL) {
            kl_err_set(err, KL_ERR_NOMEM, "checkpoints");
            rc = KL_ERR_NOMEM;
        }
    }
    for (size_t i = 0; rc == KL_OK && i < n; i++) {
        const struct kl_dest_stream_row *r = &rows[i];
        if (r->cp.position.shard_id[0] != '\0' && st->n_checkpoints < n_cps) {
            st->checkpoints[st->n_checkpoints] = r->cp;
            st->origins[st->n_checkpoints++] =
                r->cp.position.sequence[0] != '\0' ? KL_STATE_OURS : KL_STATE_NONE;
        }
        if (r->has_last_run) {
            st->has_last_run = true;
            st->last_run_ms = r->last_run_ms;
            st->last_run_origin = KL_STATE_OURS;
        }
    }
    free(rows);
    return rc;
}

static int conn_read_state(void *impl, const char *dataset, const char *pipeline,
                           const char *stream, struct kl_dest_state *out, struct kl_err *err)
{
    struct kl_dest_conn *c = impl;
    struct kl_dest_ds *d;
    struct kl_dest_state st;
    struct kl_dlt_state_row row;
    char *json = NULL;
    size_t len = 0;
    int rc = kl_dest_conn_open_dataset(c, dataset, &d, err);

    if (rc != KL_OK)
        return rc;
    kl_dest_state_init(&st);
    memset(&row, 0, sizeof row);
    rc = read_ours(c, d, pipeline, stream, &st, err);
    if (rc == KL_OK)
        rc = kl_dest_dlt_restore(c, d, pipeline, &row, &json, &len, err);
    if (rc == KL_OK && json != NULL)
        rc = kl_dest_dlt_merge(&row, json, len, stream, &st, err);
    if (rc == KL_OK) {
        st.origin = st.last_run_origin;
        for (size_t i = 0; i < st.n_checkpoints; i++)
            if (st.origins[i] > st.origin)
                st.origin = st.origins[i]; /* NONE < OURS < DLT */
    }
    kl_dlt_state_row_free(&row);
    free(json);
    if (rc != KL_OK) {
        kl_dest_state_free(&st);
        return rc;
    }
    kl_dest_state_free(out);
    *out = st;
    return KL_OK;
}

static int conn_claim_shard(void *impl, const char *dataset, const char *pipeline,
                            const char *stream, const char *shard_id, int64_t fencing_token,
                            struct kl_err *err)
{
    struct kl_dest_conn *c = impl;
    struct kl_dest_ds *d;
    int rc;

    if (pipeline == NULL || stream == NULL || shard_id == NULL || shard_id[0] == '\0')
        return kl_err_set(err, KL_ERR_INVALID, "claim without pipeline, stream or shard");
    rc = kl_dest_conn_open_dataset(c, dataset, &d, err);
    if (rc != KL_OK)
        return rc;
    /* A transaction of its own: in SQLite BEGIN IMMEDIATE waits for the
     * write lock (a chunk in progress) rather than failing on a stale
     * snapshot; in Postgres the upsert waits for the row lock of a chunk
     * in progress and then sees its token. */
    rc = c->be->begin(c->impl, err);
    if (rc == KL_OK)
        rc = c->be->claim_shard(c->impl, d, pipeline, stream, shard_id, fencing_token, err);
    if (rc == KL_OK)
        rc = c->be->commit(c->impl, err);
    if (rc != KL_OK)
        c->be->rollback(c->impl);
    return rc;
}

/* Forgets our checkpoints and run time, and, when dlt's state has the
 * stream, writes the next state row without it: otherwise the next read
 * would take the positions back from dlt's state (our own last one). */
static int conn_delete_state(void *impl, const char *dataset, const char *pipeline,
                             const char *stream, struct kl_err *err)
{
    static const char *const tables[] = {"_kinesis_checkpoints", "_kinesis_runs"};
    struct kl_dest_conn *c = impl;
    const struct kl_clock *clock = c->opt.clock != NULL ? c->opt.clock : kl_clock_system();
    struct kl_dest_ds *d;
    struct kl_dlt_state_row row;
    char *json = NULL;
    size_t len = 0;
    int64_t now_ms = kl_clock_wall_ms(clock);
    int rc = kl_dest_conn_open_dataset(c, dataset, &d, err);

    if (rc != KL_OK)
        return rc;
    memset(&row, 0, sizeof row);
    rc = c->be->begin(c->impl, err);
    if (rc == KL_OK && c->be->lock_dataset != NULL)
        rc = c->be->lock_dataset(c->impl, d, err);
    for (size_t i = 0; rc == KL_OK && i < sizeof tables / sizeof tables[0]; i++)
        rc = c->be->delete_stream_rows(c->impl, d, tables[i], pipeline, stream, err);
    if (rc == KL_OK)
        rc = kl_dest_dlt_restore(c, d, pipeline, &row, &json, &len, err);
    if (rc == KL_OK && json != NULL) {
        struct kl_dest_dlt_next next;
        memset(&next, 0, sizeof next);
        next.pipeline = pipeline;
        next.schema_name = KL_SCHEMA_NAME;
        next.restored = &row;
        next.restored_json = json;
        next.restored_len = len;
        next.doc.forget = stream;
        rc = kl_dest_dlt_write_next(c, d, &next, now_ms, err);
    }
    if (rc == KL_OK)
        rc = c->be->commit(c->impl, err);
    if (rc != KL_OK)
        c->be->rollback(c->impl);
    kl_dlt_state_row_free(&row);
    free(json);
    return rc;
}

static int conn_write_chunk(void *impl, const char *dataset, const struct kl_chunk_write *w,
                            struct kl_chunk_result *res, struct kl_err *err)
{
    return kl_dest_conn_write_chunk(impl, dataset, w, res, err);
}

static int conn_complete_load(void *impl, const char *dataset, const struct kl_load_complete *lc,
                              struct kl_err *err)
{
    return kl_dest_conn_complete_load(impl, dataset, lc, err);
}

static void conn_destroy(void *impl)
{
    struct kl_dest_conn *c = impl;
    c->be->destroy(c->impl);
}

static const struct kl_dest_ops CONN_OPS = {
    .name = conn_name,
    .ping = conn_ping,
    .prepare = conn_prepare,
    .load_schema = conn_load_schema,
    .read_state = conn_read_state,
    .claim_shard = conn_claim_shard,
    .delete_state = conn_delete_state,
    .write_chunk = conn_write_chunk,
    .complete_load = conn_complete_load,
    .destroy = conn_destroy,
};

struct kl_dest *kl_dest_conn_wrap(struct kl_dest_conn *c, struct kl_err *err)
{
    struct kl_dest *dest = calloc(1, sizeof *dest);

    if (dest == NULL) {
        kl_err_set(err, KL_ERR_NOMEM, "%s destination", c->be->name);
        return NULL;
    }
    dest->ops = &CONN_OPS;
    dest->impl = c;
    return dest;
}

/* ---- factory ---- */

struct conn_factory {
    const char *name;
    char *target;
    bool secret;
    struct kl_dest_options opt;
    struct kl_dest *(*create)(const char *target, const struct kl_dest_options *opts,
                              struct kl_err *err);
};

static int factory_open(void *impl, struct kl_dest **out, struct kl_err *err)
{
    struct conn_factory *f = impl;
    struct kl_err local = {0};
    struct kl_dest *d = f->create(f->target, &f->opt, err != NULL ? err : &local);

    if (d == NULL)
        return err != NULL ? (int)err->code : (int)local.code;
    *out = d;
    return KL_OK;
}

static const char *factory_name(void *impl)
{
    const struct conn_factory *f = impl;
    return f->name;
}

static void factory_destroy(void *impl)
{
    struct conn_factory *f = impl;

    if (f == NULL)
        return;
    if (f->secret)
        kl_dest_free_secret(f->target);
    else
        free(f->target);
    free(f);
}

static const struct kl_dest_factory_ops FACTORY_OPS = {
    .open = factory_open,
    .name = factory_name,
    .destroy = factory_destroy,
};

struct kl_dest_factory *kl_dest_conn_factory_create(
    const char *name, const char *target, const struct kl_dest_options *opts,
    struct kl_dest *(*create)(const char *target, const struct kl_dest_options *opts,
                              struct kl_err *err),
    bool secret, struct kl_err *err)
{
    struct kl_dest_factory *fac = calloc(1, sizeof *fac);
    struct conn_factory *f = calloc(1, sizeof *f);

    if (fac == NULL || f == NULL || (f->target = strdup(target)) == NULL) {
        kl_err_set(err, KL_ERR_NOMEM, "%s factory", name);
        factory_destroy(f);
        free(fac);
        return NULL;
    }
    f->name = name;
    f->secret = secret;
    f->create = create;
    if (opts != NULL)
        f->opt = *opts;
    else
        kl_dest_options_init(&f->opt);
    fac->ops = &FACTORY_OPS;
    fac->impl = f;
    return fac;
}
