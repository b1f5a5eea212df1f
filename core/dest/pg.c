/*
 * The PostgreSQL destination (see pg.h and dest.h). One connection per
 * object; per dataset it caches what the database has (columns, indexes,
 * truncations done, the stored schema hash) so a steady-state chunk costs
 * BEGIN, one checkpoint upsert, one COPY per table and COMMIT.
 * Not here: SQL text shared with SQLite (sql.c), COPY encoding (copy.c).
 */
#include "core/dest/pg.h"
#include "core/dest/common.h"
#include "core/dest/copy.h"
#include "core/dest/format.h"
#include "core/dest/sql.h"
#include "core/dest/state.h"
#include "core/normalize/rows.h"
#include "core/util/buf.h"
#include "core/util/clock.h"
#include "core/util/err.h"

#include <cjson/cJSON.h>
#include <libpq-fe.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LOCK_CLASS "1263271937" /* 0x4b4c0001: "KL" + 1 */
#define SQL_MAX ((size_t)64 << 20)
#define DEST_NAME "postgres"
#define DEST_TYPE "dlt.destinations.postgres"

struct pg {
    PGconn *conn;
    char *conninfo;
    struct kl_dest_options opt;
    struct kl_dest_ds_list ds;
    struct kl_copy_buf copy;
    struct kl_buf sql;
};

/* Changes a chunk makes to the caches, applied only after COMMIT. */
struct pending {
    bool schema_checked;
    bool catalog_from_schema;
    bool hash_stored;
    struct kl_sql_stmts truncated;
    struct kl_sql_stmts indexes;
};

/* ---- errors ---- */

static bool sqlstate_retryable(const char *s)
{
    static const char *const codes[] = {"40001", "40P01", "57P01", "57P02",
                                        "57P03", "53300", "55P03"};
    if (s == NULL)
        return false;
    if (strncmp(s, "08", 2) == 0) /* connection exceptions */
        return true;
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++)
        if (strcmp(s, codes[i]) == 0)
            return true;
    return false;
}

/* Fills `err` from a failed result or connection and returns the code. */
static int pg_fail(struct pg *pg, const PGresult *res, const char *what, struct kl_err *err)
{
    const char *state = res != NULL ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    const char *msg = res != NULL ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    bool lost = pg->conn == NULL || PQstatus(pg->conn) != CONNECTION_OK;
    enum kl_err_code code;
    char text[200];

    if (msg == NULL)
        msg = pg->conn != NULL ? PQerrorMessage(pg->conn) : "no connection";
    snprintf(text, sizeof text, "%s", msg);
    text[strcspn(text, "\n")] = '\0';
    /* Besides lost connections and the retryable SQLSTATEs: a table, schema
     * or column that vanished behind our cache (someone dropped it). The
     * cache is forgotten below, so the next try creates them again. */
    if (lost || sqlstate_retryable(state) ||
        (state != NULL && (strcmp(state, "42P01") == 0 || strcmp(state, "3F000") == 0 ||
                           strcmp(state, "42703") == 0)))
        code = KL_ERR_UNAVAILABLE;
    else
        code = KL_ERR_UPSTREAM;
    if (code == KL_ERR_UNAVAILABLE)
        kl_dest_ds_list_invalidate(&pg->ds);
    return kl_err_set(err, code, "postgres: %s: SQLSTATE %s: %s", what,
                      state != NULL ? state : (lost ? "08006" : "none"), text);
}

/* ---- connection ---- */

/* Notices ("relation already exists, skipping") are expected; libpq would
 * print them on stderr, which is for our JSON log lines only. */
static void ignore_notice(void *arg, const char *message)
{
    (void)arg;
    (void)message;
}

static int pg_connect(struct pg *pg, struct kl_err *err)
{
    const char *keys[] = {"dbname", "fallback_application_name", "client_encoding", NULL};
    const char *vals[] = {pg->conninfo, "kinesis-loader", "UTF8", NULL};

    if (pg->conn != NULL && PQstatus(pg->conn) == CONNECTION_OK)
        return KL_OK;
    if (pg->conn != NULL)
        PQfinish(pg->conn);
    pg->conn = PQconnectdbParams(keys, vals, 1);
    if (pg->conn == NULL)
        return kl_err_set(err, KL_ERR_NOMEM, "postgres: cannot allocate a connection");
    if (PQstatus(pg->conn) != CONNECTION_OK) {
        char text[200];
        snprintf(text, sizeof text, "%s", PQerrorMessage(pg->conn));
        text[strcspn(text, "\n")] = '\0';
        PQfinish(pg->conn);
        pg->conn = NULL;
        return kl_err_set(err, KL_ERR_UNAVAILABLE, "postgres: connect: %s", text);
    }
    PQsetNoticeProcessor(pg->conn, ignore_notice, NULL);
    return KL_OK;
}

/* Drops the connection as a crash would: the server rolls back. */
static void pg_drop(struct pg *pg)
{
    if (pg->conn != NULL)
        PQfinish(pg->conn);
    pg->conn = NULL;
}

/* Runs a statement with text parameters; *out (when not NULL) receives the
 * result on success, which the caller clears. */
static int pg_query(struct pg *pg, const char *sql, int n, const char *const *vals, PGresult **out,
                    const char *what, struct kl_err *err)
{
    PGresult *res;
    ExecStatusType st;

    if (out != NULL)
        *out = NULL;
    res = n > 0 ? PQexecParams(pg->conn, sql, n, NULL, vals, NULL, NULL, 0) : PQexec(pg->conn, sql);
    if (res == NULL)
        return pg_fail(pg, NULL, what, err);
    st = PQresultStatus(res);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        int rc = pg_fail(pg, res, what, err);
        PQclear(res);
        return rc;
    }
    if (out != NULL)
        *out = res;
    else
        PQclear(res);
    return KL_OK;
}

static void pg_rollback(struct pg *pg)
{
    PGresult *res;

    if (pg->conn == NULL || PQstatus(pg->conn) != CONNECTION_OK)
        return;
    /* A COPY still in progress is ended with an error first. */
    if (PQtransactionStatus(pg->conn) == PQTRANS_ACTIVE) {
        if (PQputCopyEnd(pg->conn, "aborted by kinesis-loader") == 1) {
            while ((res = PQgetResult(pg->conn)) != NULL)
                PQclear(res);
        }
    }
    res = PQexec(pg->conn, "ROLLBACK");
    PQclear(res);
}

static int pg_lock_dataset(struct pg *pg, const char *dataset, struct kl_err *err)
{
    char key[16];
    const char *vals[1] = {key};

    snprintf(key, sizeof key, "%d", (int)(unsigned)(kl_sql_hash64(dataset) & 0x7fffffff));
    return pg_query(pg, "SELECT pg_advisory_xact_lock(" LOCK_CLASS ", $1::int4)", 1, vals, NULL,
                    "advisory lock", err);
}

/* ---- dataset cache ---- */

/* Reads the dataset's tables, columns and indexes from pg_catalog. */
static int pg_load_catalog(struct pg *pg, struct kl_dest_ds *d, struct kl_err *err)
{
    static const char *const COLS_SQL =
        "SELECT c.relname, a.attname, t.typname FROM pg_catalog.pg_class c"
        " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
        " JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid"
        " JOIN pg_catalog.pg_type t ON t.oid = a.atttypid"
        " WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND a.attnum > 0"
        " AND NOT a.attisdropped ORDER BY c.relname, a.attnum";
    static const char *const IDX_SQL =
        "SELECT indexname FROM pg_catalog.pg_indexes WHERE schemaname = $1";
    const char *vals[1] = {d->name};
    PGresult *res = NULL;
    int rc;

    kl_sql_catalog_free(&d->cat);
    kl_sql_stmts_free(&d->indexes);
    d->cat_loaded = false;
    d->checked_schema = NULL;
    rc = pg_query(pg, COLS_SQL, 1, vals, &res, "read catalog", err);
    for (int i = 0; rc == KL_OK && i < PQntuples(res); i++)
        rc = kl_sql_catalog_add(&d->cat, PQgetvalue(res, i, 0), PQgetvalue(res, i, 1),
                                PQgetvalue(res, i, 2), err);
    PQclear(res);
    res = NULL;
    if (rc == KL_OK)
        rc = pg_query(pg, IDX_SQL, 1, vals, &res, "read indexes", err);
    for (int i = 0; rc == KL_OK && i < PQntuples(res); i++)
        rc = kl_sql_stmts_add(&d->indexes, PQgetvalue(res, i, 0), err);
    PQclear(res);
    if (rc == KL_OK)
        d->cat_loaded = true;
    return rc;
}

/* The system tables the catalog lacks (or lacks columns of), as DDL. */
static int plan_system_tables(const struct kl_dest_ds *d, bool create_indexes,
                              struct kl_sql_stmts *out, struct kl_err *err)
{
    size_t n;
    const struct kl_sql_table_def *defs = kl_sql_system_tables(&n);
    struct kl_buf b;
    int rc = KL_OK;

    kl_buf_init(&b, SQL_MAX);
    for (size_t i = 0; rc == KL_OK && i < n; i++) {
        if (kl_sql_catalog_find(&d->cat, defs[i].name) == NULL) {
            rc = kl_sql_create_table(&b, KL_SQL_POSTGRES, d->name, defs[i].name, defs[i].cols,
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
            rc = kl_sql_plan_ddl(KL_SQL_POSTGRES, d->name, &s, &d->cat, create_indexes, out, NULL,
                                 err);
        }
    }
    kl_buf_free(&b);
    return rc;
}

/* Creates the schema and system tables once per connection and dataset. */
static int pg_ensure_prepared(struct pg *pg, struct kl_dest_ds *d, struct kl_err *err)
{
    struct kl_sql_stmts ddl;
    struct kl_buf b;
    int rc;

    if (d->prepared && d->cat_loaded)
        return KL_OK;
    rc = pg_connect(pg, err);
    if (rc != KL_OK)
        return rc;
    kl_sql_stmts_init(&ddl);
    kl_buf_init(&b, 4096);
    rc = pg_load_catalog(pg, d, err);
    if (rc == KL_OK)
        rc = plan_system_tables(d, pg->opt.create_indexes, &ddl, err);
    if (rc == KL_OK && ddl.n > 0) {
        /* Something is missing: create it under the dataset lock, after
         * reading the catalog again (another writer may have been first). */
        rc = pg_query(pg, "BEGIN", 0, NULL, NULL, "begin", err);
        if (rc == KL_OK)
            rc = pg_lock_dataset(pg, d->name, err);
        if (rc == KL_OK)
            rc = pg_load_catalog(pg, d, err);
        kl_sql_stmts_free(&ddl);
        if (rc == KL_OK)
            rc = plan_system_tables(d, pg->opt.create_indexes, &ddl, err);
        if (rc == KL_OK && kl_sql_catalog_find(&d->cat, "_dlt_version") == NULL) {
            /* A schema without our tables may be new: create it first. */
            rc = kl_buf_append_str(&b, "CREATE SCHEMA IF NOT EXISTS ", err);
            if (rc == KL_OK)
                rc = kl_sql_quote_ident(&b, d->name, err);
            if (rc == KL_OK)
                rc = pg_query(pg, b.data, 0, NULL, NULL, "create schema", err);
        }
        for (size_t i = 0; rc == KL_OK && i < ddl.n; i++)
            rc = pg_query(pg, ddl.items[i], 0, NULL, NULL, "create system table", err);
        if (rc == KL_OK)
            rc = pg_query(pg, "COMMIT", 0, NULL, NULL, "commit", err);
        if (rc != KL_OK)
            pg_rollback(pg);
        if (rc == KL_OK)
            rc = pg_load_catalog(pg, d, err);
    }
    if (rc == KL_OK)
        d->prepared = true;
    kl_sql_stmts_free(&ddl);
    kl_buf_free(&b);
    return rc;
}

static int pg_open_dataset(struct pg *pg, const char *dataset, struct kl_dest_ds **out,
                           struct kl_err *err)
{
    struct kl_dest_ds *d = NULL;
    int rc = kl_dest_ds_get(&pg->ds, dataset, &d, err);

    if (rc != KL_OK)
        return rc;
    rc = pg_connect(pg, err);
    if (rc == KL_OK)
        rc = pg_ensure_prepared(pg, d, err);
    if (rc == KL_OK)
        *out = d;
    return rc;
}

/* ---- ops: simple ---- */

static const char *pg_name(void *impl)
{
    (void)impl;
    return DEST_NAME;
}

static int pg_ping(void *impl, struct kl_err *err)
{
    struct pg *pg = impl;
    int rc = pg_connect(pg, err);

    if (rc == KL_OK)
        rc = pg_query(pg, "SELECT 1", 0, NULL, NULL, "ping", err);
    return rc;
}

static int pg_prepare(void *impl, const char *dataset, struct kl_err *err)
{
    struct kl_dest_ds *d;
    return pg_open_dataset(impl, dataset, &d, err);
}

static int pg_load_schema(void *impl, const char *dataset, const char *schema_name, char **json_out,
                          int64_t *version_out, struct kl_err *err)
{
    struct pg *pg = impl;
    struct kl_dest_ds *d;
    PGresult *res = NULL;
    const char *vals[1] = {schema_name};
    char *json = NULL;
    int rc = pg_open_dataset(pg, dataset, &d, err);

    if (rc != KL_OK)
        return rc;
    kl_buf_reset(&pg->sql);
    rc = kl_buf_append_str(&pg->sql, "SELECT \"schema\", \"version\" FROM ", err);
    if (rc == KL_OK)
        rc = kl_sql_table_ref(&pg->sql, KL_SQL_POSTGRES, d->name, "_dlt_version", err);
    if (rc == KL_OK)
        rc = kl_buf_append_str(&pg->sql,
                               " WHERE schema_name = $1 ORDER BY \"version\" DESC,"
                               " inserted_at DESC LIMIT 1",
                               err);
    if (rc == KL_OK)
        rc = pg_query(pg, pg->sql.data, 1, vals, &res, "load schema", err);
    if (rc == KL_OK && PQntuples(res) == 1) {
        json = strdup(PQgetvalue(res, 0, 0));
        if (json == NULL)
            rc = kl_err_set(err, KL_ERR_NOMEM, "schema text");
        else if (version_out != NULL)
            *version_out = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
    }
    PQclear(res);
    if (rc == KL_OK)
        *json_out = json;
    else
        free(json);
    return rc;
}

static int64_t parse_i64(const char *s)
{
    return s != NULL && s[0] != '\0' ? strtoll(s, NULL, 10) : -1;
}

/* Reads the checkpoints (of one stream, or of all when stream is NULL). */
static int pg_read_checkpoints(struct pg *pg, struct kl_dest_ds *d, const char *pipeline,
                               const char *stream, struct kl_checkpoint **out, size_t *n_out,
                               char (**streams_out)[KL_DEST_NAME_MAX], struct kl_err *err)
{
    const char *vals[2] = {pipeline, stream};
    PGresult *res = NULL;
    struct kl_checkpoint *cps = NULL;
    char(*streams)[KL_DEST_NAME_MAX] = NULL;
    int n = 0;
    int rc;

    kl_buf_reset(&pg->sql);
    rc = kl_buf_append_str(&pg->sql,
                           "SELECT shard_id, sequence, sub_sequence, fencing_token,"
                           " floor(extract(epoch from updated_at) * 1000)::bigint, stream_name"
                           " FROM ",
                           err);
    if (rc == KL_OK)
        rc = kl_sql_table_ref(&pg->sql, KL_SQL_POSTGRES, d->name, "_kinesis_checkpoints", err);
    if (rc == KL_OK)
        rc = kl_buf_append_str(&pg->sql,
                               stream != NULL
                                   ? " WHERE pipeline_name = $1 AND stream_name = $2 ORDER BY "
                                     "shard_id"
                                   : " WHERE pipeline_name = $1 ORDER BY stream_name, shard_id",
                               err);
    if (rc == KL_OK)
        rc =
            pg_query(pg, pg->sql.data, stream != NULL ? 2 : 1, vals, &res, "read checkpoints", err);
    if (rc == KL_OK && (n = PQntuples(res)) > 0) {
        cps = calloc((size_t)n, sizeof *cps);
        streams = streams_out != NULL ? calloc((size_t)n, sizeof *streams) : NULL;
        if (cps == NULL || (streams_out != NULL && streams == NULL))
            rc = kl_err_set(err, KL_ERR_NOMEM, "checkpoints");
    }
    for (int i = 0; rc == KL_OK && cps != NULL && i < n; i++) {
        if (strlen(PQgetvalue(res, i, 0)) >= KL_DEST_SHARD_ID_MAX ||
            strlen(PQgetvalue(res, i, 1)) >= KL_DEST_SEQ_MAX) {
            rc = kl_err_set(err, KL_ERR_UPSTREAM, "postgres: a stored checkpoint is too long");
            break;
        }
        snprintf(cps[i].shard_id, sizeof cps[i].shard_id, "%s", PQgetvalue(res, i, 0));
        snprintf(cps[i].sequence, sizeof cps[i].sequence, "%s", PQgetvalue(res, i, 1));
        cps[i].sub_sequence = PQgetisnull(res, i, 2) ? -1 : parse_i64(PQgetvalue(res, i, 2));
        cps[i].fencing_token = parse_i64(PQgetvalue(res, i, 3));
        cps[i].updated_ms = parse_i64(PQgetvalue(res, i, 4));
        if (streams != NULL)
            snprintf(streams[i], sizeof streams[i], "%s", PQgetvalue(res, i, 5));
    }
    PQclear(res);
    if (rc != KL_OK) {
        free(cps);
        free(streams);
        return rc;
    }
    *out = cps;
    *n_out = (size_t)n;
    if (streams_out != NULL)
        *streams_out = streams;
    return KL_OK;
}

static int pg_read_state(void *impl, const char *dataset, const char *pipeline, const char *stream,
                         struct kl_dest_state *out, struct kl_err *err)
{
    struct pg *pg = impl;
    struct kl_dest_ds *d;
    struct kl_dest_state st;
    PGresult *res = NULL;
    const char *vals[2] = {pipeline, stream};
    int rc = pg_open_dataset(pg, dataset, &d, err);

    if (rc != KL_OK)
        return rc;
    kl_dest_state_init(&st);
    rc =
        pg_read_checkpoints(pg, d, pipeline, stream, &st.checkpoints, &st.n_checkpoints, NULL, err);
    kl_buf_reset(&pg->sql);
    if (rc == KL_OK)
        rc = kl_buf_append_str(
            &pg->sql, "SELECT floor(extract(epoch from last_run_at) * 1000)::bigint FROM ", err);
    if (rc == KL_OK)
        rc = kl_sql_table_ref(&pg->sql, KL_SQL_POSTGRES, d->name, "_kinesis_runs", err);
    if (rc == KL_OK)
        rc = kl_buf_append_str(&pg->sql, " WHERE pipeline_name = $1 AND stream_name = $2", err);
    if (rc == KL_OK)
        rc = pg_query(pg, pg->sql.data, 2, vals, &res, "read run time", err);
    if (rc == KL_OK && PQntuples(res) == 1) {
        st.has_last_run = true;
        st.last_run_ms = parse_i64(PQgetvalue(res, 0, 0));
    }
    PQclear(res);
    if (rc != KL_OK) {
        kl_dest_state_free(&st);
        return rc;
    }
    kl_dest_state_free(out);
    *out = st;
    return KL_OK;
}

static int pg_delete_state(void *impl, const char *dataset, const char *pipeline,
                           const char *stream, struct kl_err *err)
{
    static const char *const tables[] = {"_kinesis_checkpoints", "_kinesis_runs"};
    struct pg *pg = impl;
    struct kl_dest_ds *d;
    const char *vals[2] = {pipeline, stream};
    int rc = pg_open_dataset(pg, dataset, &d, err);

    if (rc != KL_OK)
        return rc;
    rc = pg_query(pg, "BEGIN", 0, NULL, NULL, "begin", err);
    for (size_t i = 0; rc == KL_OK && i < 2; i++) {
        kl_buf_reset(&pg->sql);
        rc = kl_buf_append_str(&pg->sql, "DELETE FROM ", err);
        if (rc == KL_OK)
            rc = kl_sql_table_ref(&pg->sql, KL_SQL_POSTGRES, d->name, tables[i], err);
        if (rc == KL_OK)
            rc = kl_buf_append_str(&pg->sql, " WHERE pipeline_name = $1 AND stream_name = $2", err);
        if (rc == KL_OK)
            rc = pg_query(pg, pg->sql.data, 2, vals, NULL, "delete state", err);
    }
    if (rc == KL_OK)
        rc = pg_query(pg, "COMMIT", 0, NULL, NULL, "commit", err);
    if (rc != KL_OK)
        pg_rollback(pg);
    return rc;
}

/* ---- write_chunk ---- */

/* A crash simulated by the test hook: the connection goes, uncommitted work
 * with it. */
static bool crash_here(struct pg *pg, enum kl_dest_step step, struct kl_err *err)
{
    if (pg->opt.crash_after == NULL || !pg->opt.crash_after(pg->opt.crash_ctx, step))
        return false;
    pg_drop(pg);
    kl_dest_ds_list_invalidate(&pg->ds);
    kl_err_set(err, KL_ERR_UNAVAILABLE, "postgres: simulated crash after step %s",
               kl_dest_step_name(step));
    return true;
}

#define STEP(pg, s, err)                                                                           \
    do {                                                                                           \
        if (crash_here((pg), (s), (err))) {                                                        \
            rc = KL_ERR_UNAVAILABLE;                                                               \
            goto cleanup;                                                                          \
        }                                                                                          \
    } while (0)

static int write_checkpoints(struct pg *pg, struct kl_dest_ds *d, const struct kl_chunk_write *w,
                             struct kl_err *err)
{
    int rc;

    kl_buf_reset(&pg->sql);
    rc = kl_buf_append_str(&pg->sql, "INSERT INTO ", err);
    if (rc == KL_OK)
        rc = kl_sql_table_ref(&pg->sql, KL_SQL_POSTGRES, d->name, "_kinesis_checkpoints", err);
    if (rc == KL_OK)
        rc = kl_buf_append_str(
            &pg->sql,
            " AS c (pipeline_name, stream_name, shard_id, sequence, sub_sequence, fencing_token,"
            " load_id, updated_at) VALUES ($1, $2, $3, $4, $5::bigint, $6::bigint, $7, now())"
            " ON CONFLICT (pipeline_name, stream_name, shard_id) DO UPDATE SET"
            " sequence = EXCLUDED.sequence, sub_sequence = EXCLUDED.sub_sequence,"
            " fencing_token = EXCLUDED.fencing_token, load_id = EXCLUDED.load_id,"
            " updated_at = EXCLUDED.updated_at"
            " WHERE c.fencing_token <= EXCLUDED.fencing_token RETURNING 1",
            err);
    for (size_t i = 0; rc == KL_OK && i < w->n_checkpoints; i++) {
        const struct kl_checkpoint *cp = &w->checkpoints[i];
        char sub[24], tok[24];
        const char *vals[7] = {w->pipeline_name,
                               w->stream_name,
                               cp->shard_id,
                               cp->sequence,
                               cp->sub_sequence >= 0 ? sub : NULL,
                               tok,
                               w->load_id};
        PGresult *res = NULL;

        if (cp->shard_id[0] == '\0' || cp->sequence[0] == '\0')
            return kl_err_set(err, KL_ERR_INVALID, "checkpoint without shard or sequence");
        snprintf(sub, sizeof sub, "%lld", (long long)cp->sub_sequence);
        snprintf(tok, sizeof tok, "%lld", (long long)cp->fencing_token);
        rc = pg_query(pg, pg->sql.data, 7, vals, &res, "write checkpoint", err);
        if (rc == KL_OK && PQntuples(res) != 1)
            rc = kl_err_set(err, KL_ERR_CONFLICT,
                            "checkpoint of shard %s refused: fencing token %lld is older than "
                            "the stored one",
                            cp->shard_id, (long long)cp->fencing_token);
        PQclear(res);
    }
    return rc;
}

/* Whether the database lacks columns of a table it has. */
static bool lacks_columns(const struct kl_dest_ds *d, const struct kl_table *t)
{
    const struct kl_sql_cat_table *ct = kl_sql_catalog_find(&d->cat, t->name);
    if (ct == NULL)
        return false; /* created, not altered */
    for (size_t j = 0; j < t->n_columns; j++)
        if (kl_sql_cat_table_find(ct, t->columns[j].name) == NULL)
            return true;
    return false;
}

/* Under the dataset lock: reads the catalog again, then brings the database
 * up to the schema (new tables, columns) and, under merge, creates the
 * indexes merge needs. Every table lock these statements take is taken
 * first, in schema order (the order writers lock tables in too), so DDL and
 * concurrent writers cannot deadlock. */
static int apply_ddl(struct pg *pg, struct kl_dest_ds *d, const struct kl_schema *s,
                     const struct kl_row_batch *merge_batch, struct kl_chunk_result *res,
                     struct kl_sql_stmts *index_names, struct kl_err *err)
{
    struct kl_sql_stmts ddl, idx, idx_tables;
    struct kl_sql_ddl_stats st = {0, 0};
    int rc;

    if (s == NULL)
        return kl_err_set(err, KL_ERR_INTERNAL, "schema change without a schema");
    rc = pg_load_catalog(pg, d, err);

    kl_sql_stmts_init(&ddl);
    kl_sql_stmts_init(&idx);
    kl_sql_stmts_init(&idx_tables);
    if (rc == KL_OK)
        rc = kl_sql_plan_ddl(KL_SQL_POSTGRES, d->name, s, &d->cat, pg->opt.create_indexes, &ddl,
                             &st, err);
    if (rc == KL_OK && merge_batch != NULL)
        rc = kl_dest_plan_merge_indexes(KL_SQL_POSTGRES, d, merge_batch, &idx, index_names,
                                        &idx_tables, err);
    for (size_t j = 0; rc == KL_OK && j < s->n_tables; j++) {
        const struct kl_table *t = &s->tables[j];
        const char *mode = lacks_columns(d, t)                      ? "ACCESS EXCLUSIVE"
                           : kl_sql_stmts_has(&idx_tables, t->name) ? "SHARE"
                                                                    : NULL;
        /* Tables this transaction creates need no lock. */
        if (mode == NULL || kl_sql_catalog_find(&d->cat, t->name) == NULL)
            continue;
        kl_buf_reset(&pg->sql);
        rc = kl_buf_append_str(&pg->sql, "LOCK TABLE ", err);
        if (rc == KL_OK)
            rc = kl_sql_table_ref(&pg->sql, KL_SQL_POSTGRES, d->name, t->name, err);
        if (rc == KL_OK)
            rc = kl_buf_printf(&pg->sql, err, " IN %s MODE", mode);
        if (rc == KL_OK)
            rc = pg_query(pg, pg->sql.data, 0, NULL, NULL, "lock for schema change", err);
    }
    for (size_t i = 0; rc == KL_OK && i < ddl.n; i++)
        rc = pg_query(pg, ddl.items[i], 0, NULL, NULL, "schema change", err);
    for (size_t i = 0; rc == KL_OK && i < idx.n; i++)
        rc = pg_query(pg, idx.items[i], 0, NULL, NULL, "merge index", err);
    if (rc == KL_OK) {
        res->tables_created += st.tables_created;
        res->columns_added += st.columns_added;
    }
    kl_sql_stmts_free(&ddl);
    kl_sql_stmts_free(&idx);
    kl_sql_stmts_free(&idx_tables);
    return rc;
}

/* Merge: ROW EXCLUSIVE on the batch's root families in schema order before
 * the deletes (which go deepest first), so the lock order matches DDL's. */
static int lock_families(struct pg *pg, struct kl_dest_ds *d, const struct kl_row_batch *batch,
                         struct kl_err *err)
{
    const struct kl_schema *s = batch->schema;
    size_t n = 0;
    int rc;

    kl_buf_reset(&pg->sql);
    rc = kl_buf_append_str(&pg->sql, "LOCK TABLE ", err);
    for (size_t j = 0; rc == KL_OK && j < s->n_tables; j++) {
        bool member = false;
        for (size_t i = 0; !member && i < batch->n_tables; i++) {
            const struct kl_table *root = &s->tables[batch->tables[i].table];
            member = root->parent[0] == '\0' && kl_dest_in_family(s, &s->tables[j], root->name);
        }
        if (!member || kl_sql_catalog_find(&d->cat, s->tables[j].name) == NULL)
            continue;
        if (n++ > 0)
            rc = kl_buf_append_str(&pg->sql, ", ", err);
        if (rc == KL_OK)
            rc = kl_sql_table_ref(&pg->sql, KL_SQL_POSTGRES, d->name, s->tables[j].name, err);
    }
    if (rc == KL_OK && n > 0)
        rc = kl_buf_append_str(&pg->sql, " IN ROW EXCLUSIVE MODE", err);
    if (rc == KL_OK && n > 0)
        rc = pg_query(pg, pg->sql.data, 0, NULL, NULL, "lock for merge", err);
    return rc;
}

/* Replace: the first chunk of a load truncates the root table and its
 * children, once, recorded in `_kinesis_truncations` in the same transaction. */
static int truncate_family(struct pg *pg, struct kl_dest_ds *d, const char *load_id,
                           const char *root, const struct kl_schema *s, bool *done,
                           struct kl_err *err)
{
    const char *vals[2] = {load_id, root};
    PGresult *res = NULL;
    size_t n = 0;
    int rc;

    *done = false;
    kl_buf_reset(&pg->sql);
    rc = kl_buf_append_str(&pg->sql, "INSERT INTO ", err);
    if (rc == KL_OK)
        rc = kl_sql_table_ref(&pg->sql, KL_SQL_POSTGRES, d->name, "_kinesis_truncations", err);
    if (rc == KL_OK)
        rc = kl_buf_append_str(&pg->sql,
                               " (load_id, table_name, truncated_at) VALUES ($1, $2, now())"
                               " ON CONFLICT DO NOTHING RETURNING 1",
                               err);
    if (rc == KL_OK)
        rc = pg_query(pg, pg->sql.data, 2, vals, &res, "replace marker", err);
    if (rc != KL_OK || PQntuples(res) == 0) {
        PQclear(res);
        return rc;
    }
    PQclear(res);

    kl_buf_reset(&pg->sql);
    rc = kl_buf_append_str(&pg->sql, "TRUNCATE ", err);
    /* In schema order when there is a schema (the order writers lock in). */
    for (size_t i = 0; rc == KL_OK && i < (s != NULL ? s->n_tables : d->cat.n_tables); i++) {
        const char *name = s != NULL ? s->tables[i].name : d->cat.tables[i].name;
        const struct kl_sql_cat_table *ct = kl_sql_catalog_find(&d->cat, name);
        bool member = ct != NULL && (s != NULL ? kl_dest_in_family(s, &s->tables[i], root)
                                               : kl_dest_in_family_by_name(ct, root));
        if (!member)
            continue;
        if (n++ > 0)
            rc = kl_buf_append_str(&pg->sql, ", ", err);
        if (rc == KL_OK)
            rc = kl_sql_table_ref(&pg->sql, KL_SQL_POSTGRES, d->name, name, err);
    }
    if (rc == KL_OK && n > 0)
        rc = pg_query(pg, pg->sql.data, 0, NULL, NULL, "truncate", err);
    if (rc == KL_OK)
        *done = true;
    return rc;
}

/* Merge: deletes the rows of re-delivered messages, children first (deepest
 * first), each level found through its parent's `_dlt_id`. */
static int merge_delete(struct pg *pg, struct kl_dest_ds *d, const struct kl_schema *s,
                        const struct kl_table_rows *tr, struct kl_err *err)
{
    const struct kl_table *root = &s->tables[tr->table];
    struct kl_buf ids;
    int max_depth = 0;
    int rc;

    kl_buf_init(&ids, SQL_MAX);
    rc = kl_dest_msg_ids(root, tr, false, &ids, err);
    for (size_t j = 0; j < s->n_tables; j++) {
        int dep = kl_dest_in_family(s, &s->tables[j], root->name)
                      ? kl_dest_table_depth(s, &s->tables[j])
                      : -1;
        if (dep > max_depth)
            max_depth = dep;
    }
    for (int depth = max_depth; rc == KL_OK && depth >= 0; depth--) {
        for (size_t j = 0; rc == KL_OK && j < s->n_tables; j++) {
            const struct kl_table *t = &s->tables[j];
            const struct kl_table *chain[64];
            const char *vals[1] = {ids.data};
            if (!kl_dest_in_family(s, t, root->name) || kl_dest_table_depth(s, t) != depth)
                continue;
            if (kl_sql_catalog_find(&d->cat, t->name) == NULL)
                continue; /* not created yet: nothing to delete */
            if (depth > 0 && kl_sql_cat_table_find(kl_sql_catalog_find(&d->cat, t->name),
                                                   "_dlt_parent_id") == NULL)
                continue;
            /* chain[0] = t, chain[depth] = root */
            chain[0] = t;
            for (int k = 1; k <= depth; k++)
                chain[k] = kl_dest_table_named(s, chain[k - 1]->parent);
            kl_buf_reset(&pg->sql);
            rc = kl_buf_append_str(&pg->sql, "DELETE FROM ", err);
            if (rc == KL_OK)
                rc = kl_sql_table_ref(&pg->sql, KL_SQL_POSTGRES, d->name, t->name, err);
            for (int k = 1; rc == KL_OK && k <= depth; k++) {
                rc = kl_buf_append_str(
                    &pg->sql, " WHERE \"_dlt_parent_id\" IN (SELECT \"_dlt_id\" FROM ", err);
                if (rc == KL_OK)
                    rc = kl_sql_table_ref(&pg->sql, KL_SQL_POSTGRES, d->name, chain[k]->name, err);
            }
            if (rc == KL_OK)
                rc = kl_buf_append_str(&pg->sql, " WHERE \"_kinesis_msg_id\" = ANY($1::varchar[])",
                                       err);
            for (int k = 1; rc == KL_OK && k <= depth; k++)
                rc = kl_buf_append_str(&pg->sql, ")", err);
            if (rc == KL_OK)
                rc = pg_query(pg, pg->sql.data, 1, vals, NULL, "merge delete", err);
        }
    }
    kl_buf_free(&ids);
    return rc;
}

static int pg_copy_sink(void *ctx, const char *data, size_t len, struct kl_err *err)
{
    struct pg *pg = ctx;
    if (PQputCopyData(pg->conn, data, (int)len) != 1)
        return pg_fail(pg, NULL, "COPY data", err);
    return KL_OK;
}

/* Ends a COPY started with PQexec; `abort_msg` non-NULL aborts it. */
static int copy_end(struct pg *pg, const char *abort_msg, const char *what, struct kl_err *err)
{
    PGresult *res;
    int rc = KL_OK;

    if (PQputCopyEnd(pg->conn, abort_msg) != 1)
        return pg_fail(pg, NULL, what, err);
    while ((res = PQgetResult(pg->conn)) != NULL) {
        if (rc == KL_OK && abort_msg == NULL && PQresultStatus(res) != PGRES_COMMAND_OK)
            rc = pg_fail(pg, res, what, err);
        PQclear(res);
    }
    return rc;
}

/* Starts `COPY <table> (<cols>) FROM STDIN`. */
static int copy_begin(struct pg *pg, const char *dataset, const char *table,
                      const struct kl_column *cols, size_t n, const char *const *names,
                      struct kl_err *err)
{
    PGresult *res;
    int rc;

    kl_buf_reset(&pg->sql);
    rc = kl_buf_append_str(&pg->sql, "COPY ", err);
    if (rc == KL_OK)
        rc = kl_sql_table_ref(&pg->sql, KL_SQL_POSTGRES, dataset, table, err);
    if (rc == KL_OK)
        rc = kl_buf_append_str(&pg->sql, " (", err);
    for (size_t i = 0; rc == KL_OK && i < n; i++) {
        if (i > 0)
            rc = kl_buf_append_str(&pg->sql, ", ", err);
        if (rc == KL_OK)
            rc = kl_sql_quote_ident(&pg->sql, cols != NULL ? cols[i].name : names[i], err);
    }
    if (rc == KL_OK)
        rc = kl_buf_append_str(&pg->sql, ") FROM STDIN", err);
    if (rc != KL_OK)
        return rc;
    res = PQexec(pg->conn, pg->sql.data);
    if (res == NULL)
        return pg_fail(pg, NULL, "COPY", err);
    if (PQresultStatus(res) != PGRES_COPY_IN) {
        rc = pg_fail(pg, res, "COPY", err);
        PQclear(res);
        return rc;
    }
    PQclear(res);
    pg->copy.len = 0;
    pg->copy.sink.write = pg_copy_sink;
    pg->copy.sink.ctx = pg;
    return KL_OK;
}

static int copy_rows(struct pg *pg, struct kl_dest_ds *d, const struct kl_schema *s,
                     const struct kl_table_rows *tr, bool dedup, size_t *written,
                     struct kl_err *err)
{
    const struct kl_table *t = &s->tables[tr->table];
    struct kl_sql_idset ids = {NULL, 0};
    int id_col = dedup ? kl_dest_column_index(t, tr->n_columns, "_dlt_id") : -1;
    size_t n = 0;
    int rc;

    if (tr->n_rows == 0 || tr->n_columns == 0)
        return KL_OK;
    if (tr->n_columns > t->n_columns)
        return kl_err_set(err, KL_ERR_INVALID, "table %s: batch has %zu columns, schema %zu",
                          t->name, tr->n_columns, t->n_columns);
    if (id_col >= 0 && kl_sql_idset_init(&ids, tr->n_rows, err) != KL_OK)
        return KL_ERR_NOMEM;
    rc = copy_begin(pg, d->name, t->name, t->columns, tr->n_columns, NULL, err);
    if (rc != KL_OK)
        goto cleanup;
    for (size_t r = 0; rc == KL_OK && r < tr->n_rows; r++) {
        const struct kl_value *row = &tr->cells[r * tr->n_columns];
        if (id_col >= 0 && row[id_col].type == KL_TYPE_TEXT &&
            !kl_sql_idset_add(&ids, &row[id_col]))
            continue;
        rc = kl_copy_append_row(&pg->copy, row, tr->n_columns, err);
        if (rc != KL_OK)
            kl_err_prefix(err, "table %s row %zu", t->name, r);
        n++;
    }
    if (rc == KL_OK)
        rc = kl_copy_flush(&pg->copy, err);
    if (rc == KL_OK) {
        rc = copy_end(pg, NULL, "COPY", err);
    } else if (pg->conn != NULL && PQstatus(pg->conn) == CONNECTION_OK) {
        struct kl_err ignored;
        copy_end(pg, "kinesis-loader: encoding failed", "COPY", &ignored);
    }
    if (rc == KL_OK)
        *written += n;
cleanup:
    kl_sql_idset_free(&ids);
    return rc;
}

static int copy_dead_letters(struct pg *pg, struct kl_dest_ds *d, const struct kl_chunk_write *w,
                             struct kl_err *err)
{
    static const char *const names[] = {"load_id",    "pipeline_name", "stream_name", "shard_id",
                                        "sequence",   "sub_sequence",  "data",        "error",
                                        "arrival_at", "inserted_at"};
    const struct kl_row_batch *b = w->batch;
    const struct kl_clock *clock = pg->opt.clock != NULL ? pg->opt.clock : kl_clock_system();
    char now[KL_FMT_MAX], num[KL_FMT_MAX];
    size_t nowlen = kl_fmt_timestamp(now, kl_clock_wall_ms(clock) * 1000, KL_TS_PG);
    int rc = copy_begin(pg, d->name, "_kinesis_dead_letters", NULL, 10, names, err);

    for (size_t i = 0; rc == KL_OK && i < b->n_dead_letters; i++) {
        const struct kl_dead_letter *dl = &b->dead_letters[i];
        const char *texts[5] = {w->load_id, w->pipeline_name, w->stream_name, dl->shard_id,
                                dl->sequence};
        for (size_t k = 0; rc == KL_OK && k < 5; k++) {
            if (k > 0)
                rc = kl_copy_append_raw(&pg->copy, "\t", 1, err);
            if (rc == KL_OK)
                rc = kl_copy_append_text(&pg->copy, texts[k] != NULL ? texts[k] : "",
                                         texts[k] != NULL ? strlen(texts[k]) : 0, err);
        }
        if (rc == KL_OK && dl->sub_sequence >= 0) {
            size_t l = kl_fmt_i64(num, dl->sub_sequence);
            rc = kl_copy_append_raw(&pg->copy, "\t", 1, err);
            if (rc == KL_OK)
                rc = kl_copy_append_raw(&pg->copy, num, l, err);
        } else if (rc == KL_OK) {
            rc = kl_copy_append_raw(&pg->copy, "\t\\N", 3, err);
        }
        if (rc == KL_OK)
            rc = kl_copy_append_raw(&pg->copy, "\t", 1, err);
        if (rc == KL_OK)
            rc = dl->data != NULL ? kl_copy_append_bytea(&pg->copy, dl->data, dl->data_len, err)
                                  : kl_copy_append_raw(&pg->copy, "\\N", 2, err);
        if (rc == KL_OK)
            rc = kl_copy_append_raw(&pg->copy, "\t", 1, err);
        if (rc == KL_OK)
            rc = kl_copy_append_text(&pg->copy, dl->error != NULL ? dl->error : "",
                                     dl->error != NULL ? strlen(dl->error) : 0, err);
        if (rc == KL_OK)
            rc = kl_copy_append_raw(&pg->copy, "\t", 1, err);
        if (rc == KL_OK) {
            size_t l = kl_fmt_timestamp(num, dl->arrival_ms * 1000, KL_TS_PG);
            rc = kl_copy_append_raw(&pg->copy, num, l, err);
        }
        if (rc == KL_OK)
            rc = kl_copy_append_raw(&pg->copy, "\t", 1, err);
        if (rc == KL_OK)
            rc = kl_copy_append_raw(&pg->copy, now, nowlen, err);
        if (rc == KL_OK)
            rc = kl_copy_append_raw(&pg->copy, "\n", 1, err);
    }
    if (rc == KL_OK)
        rc = kl_copy_flush(&pg->copy, err);
    if (rc == KL_OK) {
        rc = copy_end(pg, NULL, "COPY dead letters", err);
    } else if (pg->conn != NULL && PQstatus(pg->conn) == CONNECTION_OK &&
               PQtransactionStatus(pg->conn) == PQTRANS_ACTIVE) {
        struct kl_err ignored;
        copy_end(pg, "kinesis-loader: encoding failed", "COPY", &ignored);
    }
    return rc;
}

static int store_version(struct pg *pg, struct kl_dest_ds *d, const struct kl_chunk_write *w,
                         struct kl_err *err)
{
    const struct kl_schema *s = w->batch->schema;
    char version[24], engine[24];
    const char *vals[5] = {version, engine, s->name, w->schema_hash, w->schema_json};
    cJSON *doc = cJSON_Parse(w->schema_json);
    const cJSON *ev = cJSON_GetObjectItemCaseSensitive(doc, "engine_version");
    int rc;

    snprintf(version, sizeof version, "%lld", (long long)s->version);
    snprintf(engine, sizeof engine, "%lld", cJSON_IsNumber(ev) ? (long long)ev->valuedouble : 10LL);
    cJSON_Delete(doc);
    kl_buf_reset(&pg->sql);
    rc = kl_buf_append_str(&pg->sql, "INSERT INTO ", err);
    if (rc == KL_OK)
        rc = kl_sql_table_ref(&pg->sql, KL_SQL_POSTGRES, d->name, "_dlt_version", err);
    if (rc == KL_OK)
        rc = kl_buf_append_str(&pg->sql,
                               " (\"version\", engine_version, inserted_at, schema_name,"
                               " version_hash, \"schema\") SELECT $1::bigint,"
                               " $2::bigint, now(), $3::varchar, $4::varchar, $5::varchar"
                               " WHERE NOT EXISTS"
                               " (SELECT 1 FROM ",
                               err);
    if (rc == KL_OK)
        rc = kl_sql_table_ref(&pg->sql, KL_SQL_POSTGRES, d->name, "_dlt_version", err);
    if (rc == KL_OK)
        rc = kl_buf_append_str(&pg->sql, " WHERE schema_name = $3 AND version_hash = $4)", err);
    if (rc == KL_OK)
        rc = pg_query(pg, pg->sql.data, 5, vals, NULL, "store schema version", err);
    return rc;
}

static int pg_write_chunk(void *impl, const char *dataset, const struct kl_chunk_write *w,
                          struct kl_chunk_result *res_out, struct kl_err *err)
{
    struct pg *pg = impl;
    struct kl_dest_ds *d = NULL;
    const struct kl_row_batch *batch = w->batch;
    const struct kl_schema *s = batch != NULL ? batch->schema : NULL;
    struct kl_chunk_result res;
    struct pending p;
    struct kl_sql_stmts idx_sql;
    const struct kl_table_rows **order = NULL;
    bool in_tx = false, need_ddl = false, need_version = false, need_lock = false;
    int rc;

    memset(&res, 0, sizeof res);
    memset(&p, 0, sizeof p);
    kl_sql_stmts_init(&idx_sql);
    if (w->load_id == NULL || w->pipeline_name == NULL || w->stream_name == NULL)
        return kl_err_set(err, KL_ERR_INVALID, "chunk without load id, pipeline or stream");
    if (batch != NULL && s == NULL)
        return kl_err_set(err, KL_ERR_INVALID, "row batch without a schema");
    rc = kl_dest_table_order(batch, &order, err);
    if (rc != KL_OK)
        return rc;
    rc = pg_open_dataset(pg, dataset, &d, err);
    if (rc != KL_OK)
        goto cleanup;

    /* Decide what needs the dataset lock before opening the transaction. */
    if (s != NULL && (d->checked_schema != s || d->checked_version != s->version)) {
        struct kl_sql_stmts ddl;
        struct kl_sql_ddl_stats st = {0, 0};
        struct kl_err probe;
        kl_sql_stmts_init(&ddl);
        if (kl_sql_plan_ddl(KL_SQL_POSTGRES, d->name, s, &d->cat, pg->opt.create_indexes, &ddl, &st,
                            &probe) != KL_OK ||
            ddl.n > 0)
            need_ddl = true;
        else
            p.schema_checked = true;
        kl_sql_stmts_free(&ddl);
    }
    if (s != NULL && w->schema_json != NULL && w->schema_hash != NULL &&
        strcmp(d->stored_hash, w->schema_hash) != 0)
        need_version = true;
    if (batch != NULL && w->disposition == KL_WRITE_MERGE) {
        struct kl_sql_stmts probe_names;
        kl_sql_stmts_init(&probe_names);
        rc = kl_dest_plan_merge_indexes(KL_SQL_POSTGRES, d, batch, &idx_sql, &probe_names, NULL,
                                        err);
        kl_sql_stmts_free(&probe_names);
        if (rc != KL_OK)
            goto cleanup;
    }
    if (batch != NULL && w->disposition == KL_WRITE_REPLACE) {
        for (size_t i = 0; i < batch->n_tables; i++) {
            const struct kl_table *t = &s->tables[batch->tables[i].table];
            if (t->parent[0] == '\0' && (strcmp(d->truncated_load, w->load_id) != 0 ||
                                         !kl_sql_stmts_has(&d->truncated, t->name)))
                need_lock = true;
        }
    }
    need_lock = need_lock || need_ddl || need_version || idx_sql.n > 0;

    rc = pg_query(pg, "BEGIN", 0, NULL, NULL, "begin", err);
    if (rc != KL_OK)
        goto cleanup;
    in_tx = true;
    STEP(pg, KL_DEST_STEP_BEGIN, err);

    /* Checkpoints first: a writer that lost its lease stops before sending rows. */
    rc = write_checkpoints(pg, d, w, err);
    if (rc != KL_OK)
        goto cleanup;
    STEP(pg, KL_DEST_STEP_CHECKPOINT, err);

    if (need_lock) {
        rc = pg_lock_dataset(pg, d->name, err);
        if (rc != KL_OK)
            goto cleanup;
    }
    if (need_ddl || idx_sql.n > 0) {
        rc = apply_ddl(pg, d, s, w->disposition == KL_WRITE_MERGE ? batch : NULL, &res, &p.indexes,
                       err);
        if (rc != KL_OK)
            goto cleanup;
        p.schema_checked = true;
        p.catalog_from_schema = true;
    }
    STEP(pg, KL_DEST_STEP_DDL, err);

    if (need_version) {
        rc = store_version(pg, d, w, err);
        if (rc != KL_OK)
            goto cleanup;
        p.hash_stored = true;
    }
    STEP(pg, KL_DEST_STEP_VERSION, err);

    if (batch != NULL && w->disposition == KL_WRITE_REPLACE) {
        for (size_t i = 0; i < batch->n_tables; i++) {
            const struct kl_table *t = &s->tables[order[i]->table];
            bool done = false;
            if (t->parent[0] != '\0' || (strcmp(d->truncated_load, w->load_id) == 0 &&
                                         kl_sql_stmts_has(&d->truncated, t->name)))
                continue;
            rc = truncate_family(pg, d, w->load_id, t->name, s, &done, err);
            if (rc != KL_OK)
                goto cleanup;
            res.truncated = res.truncated || done;
            rc = kl_sql_stmts_add(&p.truncated, t->name, err);
            if (rc != KL_OK)
                goto cleanup;
        }
    }
    STEP(pg, KL_DEST_STEP_REPLACE, err);

    if (batch != NULL && w->disposition == KL_WRITE_MERGE) {
        rc = lock_families(pg, d, batch, err);
        if (rc != KL_OK)
            goto cleanup;
        for (size_t i = 0; i < batch->n_tables; i++) {
            if (s->tables[order[i]->table].parent[0] != '\0')
                continue;
            rc = merge_delete(pg, d, s, order[i], err);
            if (rc != KL_OK)
                goto cleanup;
        }
    }
    STEP(pg, KL_DEST_STEP_MERGE_DELETE, err);

    for (size_t i = 0; batch != NULL && i < batch->n_tables; i++) {
        rc = copy_rows(pg, d, s, order[i], w->disposition == KL_WRITE_MERGE, &res.rows, err);
        if (rc != KL_OK)
            goto cleanup;
        STEP(pg, KL_DEST_STEP_ROWS, err);
    }

    if (batch != NULL && batch->n_dead_letters > 0) {
        rc = copy_dead_letters(pg, d, w, err);
        if (rc != KL_OK)
            goto cleanup;
        res.dead_letters = batch->n_dead_letters;
    }
    STEP(pg, KL_DEST_STEP_DEAD_LETTERS, err);

    rc = pg_query(pg, "COMMIT", 0, NULL, NULL, "commit", err);
    in_tx = false;
    if (rc != KL_OK)
        goto cleanup;

    /* Committed: the caches may now believe it. */
    if (p.catalog_from_schema)
        kl_sql_catalog_add_schema(&d->cat, KL_SQL_POSTGRES, s, NULL);
    if (p.schema_checked && s != NULL) {
        d->checked_schema = s;
        d->checked_version = s->version;
    }
    if (p.hash_stored)
        snprintf(d->stored_hash, sizeof d->stored_hash, "%s", w->schema_hash);
    for (size_t i = 0; i < p.indexes.n; i++)
        kl_sql_stmts_add(&d->indexes, p.indexes.items[i], NULL);
    if (p.truncated.n > 0) {
        if (strcmp(d->truncated_load, w->load_id) != 0) {
            kl_sql_stmts_free(&d->truncated);
            snprintf(d->truncated_load, sizeof d->truncated_load, "%s", w->load_id);
        }
        for (size_t i = 0; i < p.truncated.n; i++)
            kl_sql_stmts_add(&d->truncated, p.truncated.items[i], NULL);
    }
    if (crash_here(pg, KL_DEST_STEP_COMMIT, err)) {
        rc = KL_ERR_UNAVAILABLE;
        goto cleanup;
    }
    if (res_out != NULL)
        *res_out = res;

cleanup:
    if (rc != KL_OK && in_tx) {
        pg_rollback(pg);
        /* What we learnt under the lock may be gone with the rollback. */
        if (d != NULL) {
            d->cat_loaded = false;
            d->prepared = false;
        }
    }
    free(order);
    kl_sql_stmts_free(&idx_sql);
    kl_sql_stmts_free(&p.truncated);
    kl_sql_stmts_free(&p.indexes);
    return rc;
}

/* ---- complete_load ---- */

static int pg_complete_load(void *impl, const char *dataset, const struct kl_load_complete *c,
                            struct kl_err *err)
{
    struct pg *pg = impl;
    struct kl_dest_ds *d;
    PGresult *res = NULL;
    struct kl_checkpoint *cps = NULL;
    char(*cp_streams)[KL_DEST_NAME_MAX] = NULL;
    size_t n_cps = 0;
    struct kl_state_stream *streams = NULL;
    size_t n_streams = 0;
    struct kl_state_doc doc;
    char hash[128] = "", version[24], engine[24];
    int64_t state_version = 1;
    bool in_tx = false;
    int rc;

    memset(&doc, 0, sizeof doc);
    if (c->load_id == NULL || c->schema_name == NULL || c->pipeline_name == NULL ||
        c->stream_name == NULL)
        return kl_err_set(err, KL_ERR_INVALID,
                          "complete_load without load id, schema, pipeline "
                          "or stream");
    rc = pg_open_dataset(pg, dataset, &d, err);
    if (rc != KL_OK)
        return rc;
    rc = pg_query(pg, "BEGIN", 0, NULL, NULL, "begin", err);
    if (rc != KL_OK)
        return rc;
    in_tx = true;
    rc = pg_lock_dataset(pg, d->name, err);
    if (rc != KL_OK)
        goto cleanup;

    {
        const char *vals[1] = {c->load_id};
        kl_buf_reset(&pg->sql);
        rc = kl_buf_append_str(&pg->sql, "SELECT 1 FROM ", err);
        if (rc == KL_OK)
            rc = kl_sql_table_ref(&pg->sql, KL_SQL_POSTGRES, d->name, "_dlt_loads", err);
        if (rc == KL_OK)
            rc = kl_buf_append_str(&pg->sql, " WHERE load_id = $1", err);
        if (rc == KL_OK)
            rc = pg_query(pg, pg->sql.data, 1, vals, &res, "check load", err);
        if (rc != KL_OK)
            goto cleanup;
        if (PQntuples(res) > 0) { /* completed before: nothing more to write */
            PQclear(res);
            res = NULL;
            rc = pg_query(pg, "COMMIT", 0, NULL, NULL, "commit", err);
            in_tx = false;
            goto cleanup;
        }
        PQclear(res);
        res = NULL;
    }

    if (c->disposition == KL_WRITE_REPLACE && c->root_table != NULL) {
        bool done = false;
        rc = kl_dest_validate_table(c->root_table, err);
        if (rc == KL_OK && kl_sql_catalog_find(&d->cat, c->root_table) != NULL)
            rc = truncate_family(pg, d, c->load_id, c->root_table, NULL, &done, err);
        if (rc != KL_OK)
            goto cleanup;
    }

    if (c->next_run_ms >= 0) {
        char ts[KL_FMT_MAX];
        const char *vals[4] = {c->pipeline_name, c->stream_name, ts, c->load_id};
        kl_fmt_timestamp(ts, c->next_run_ms * 1000, KL_TS_PG);
        kl_buf_reset(&pg->sql);
        rc = kl_buf_append_str(&pg->sql, "INSERT INTO ", err);
        if (rc == KL_OK)
            rc = kl_sql_table_ref(&pg->sql, KL_SQL_POSTGRES, d->name, "_kinesis_runs", err);
        if (rc == KL_OK)
            rc = kl_buf_append_str(&pg->sql,
                                   " (pipeline_name, stream_name, last_run_at, load_id, updated_at)"
                                   " VALUES ($1, $2, $3::timestamptz, $4, now())"
                                   " ON CONFLICT (pipeline_name, stream_name) DO UPDATE SET"
                                   " last_run_at = EXCLUDED.last_run_at,"
                                   " load_id = EXCLUDED.load_id, updated_at = EXCLUDED.updated_at",
                                   err);
        if (rc == KL_OK)
            rc = pg_query(pg, pg->sql.data, 4, vals, NULL, "write run time", err);
        if (rc != KL_OK)
            goto cleanup;
    }

    /* The state document: every stream of the pipeline, as stored now. */
    rc = pg_read_checkpoints(pg, d, c->pipeline_name, NULL, &cps, &n_cps, &cp_streams, err);
    if (rc != KL_OK)
        goto cleanup;
    {
        const char *vals[1] = {c->pipeline_name};
        kl_buf_reset(&pg->sql);
        rc = kl_buf_append_str(&pg->sql,
                               "SELECT stream_name,"
                               " floor(extract(epoch from last_run_at) * 1000)::bigint"
                               " FROM ",
                               err);
        if (rc == KL_OK)
            rc = kl_sql_table_ref(&pg->sql, KL_SQL_POSTGRES, d->name, "_kinesis_runs", err);
        if (rc == KL_OK)
            rc = kl_buf_append_str(&pg->sql, " WHERE pipeline_name = $1 ORDER BY stream_name", err);
        if (rc == KL_OK)
            rc = pg_query(pg, pg->sql.data, 1, vals, &res, "read run times", err);
        if (rc != KL_OK)
            goto cleanup;
        streams = calloc(n_cps + (size_t)PQntuples(res) + 1, sizeof *streams);
        if (streams == NULL) {
            rc = kl_err_set(err, KL_ERR_NOMEM, "state streams");
            goto cleanup;
        }
        /* Checkpoints come ordered by stream: one entry per stream. */
        for (size_t i = 0; cp_streams != NULL && i < n_cps; i++) {
            if (n_streams == 0 || strcmp(streams[n_streams - 1].stream_name, cp_streams[i]) != 0) {
                streams[n_streams].stream_name = cp_streams[i];
                streams[n_streams].checkpoints = &cps[i];
                n_streams++;
            }
            streams[n_streams - 1].n_checkpoints++;
        }
        for (int r = 0; r < PQntuples(res); r++) {
            const char *name = PQgetvalue(res, r, 0);
            size_t k = 0;
            while (k < n_streams && strcmp(streams[k].stream_name, name) != 0)
                k++;
            if (k == n_streams)
                streams[n_streams++].stream_name = name;
            streams[k].has_last_run = true;
            streams[k].last_run_ms = parse_i64(PQgetvalue(res, r, 1));
        }
    }
    {
        PGresult *vres = NULL;
        const char *vals[1] = {c->pipeline_name};
        struct kl_state_doc_in in;
        kl_buf_reset(&pg->sql);
        rc = kl_buf_append_str(&pg->sql, "SELECT coalesce(max(\"version\"), 0) + 1 FROM ", err);
        if (rc == KL_OK)
            rc = kl_sql_table_ref(&pg->sql, KL_SQL_POSTGRES, d->name, "_dlt_pipeline_state", err);
        if (rc == KL_OK)
            rc = kl_buf_append_str(&pg->sql, " WHERE pipeline_name = $1", err);
        if (rc == KL_OK)
            rc = pg_query(pg, pg->sql.data, 1, vals, &vres, "state version", err);
        if (rc != KL_OK)
            goto cleanup;
        state_version = parse_i64(PQgetvalue(vres, 0, 0));
        PQclear(vres);
        memset(&in, 0, sizeof in);
        in.pipeline_name = c->pipeline_name;
        in.dataset_name = d->name;
        in.schema_name = c->schema_name;
        in.destination_type = DEST_TYPE;
        in.version = state_version;
        in.streams = streams;
        in.n_streams = n_streams;
        rc = kl_state_doc_build(&in, &doc, err);
        if (rc != KL_OK)
            goto cleanup;
    }
    PQclear(res);
    res = NULL;
    {
        const char *vals[7] = {version,          engine,     c->pipeline_name, doc.state,
                               doc.version_hash, c->load_id, doc.row_id};
        snprintf(version, sizeof version, "%lld", (long long)state_version);
        snprintf(engine, sizeof engine, "%d", KL_STATE_ENGINE_VERSION);
        kl_buf_reset(&pg->sql);
        rc = kl_buf_append_str(&pg->sql, "INSERT INTO ", err);
        if (rc == KL_OK)
            rc = kl_sql_table_ref(&pg->sql, KL_SQL_POSTGRES, d->name, "_dlt_pipeline_state", err);
        if (rc == KL_OK)
            rc =
                kl_buf_append_str(&pg->sql,
                                  " (\"version\", engine_version, pipeline_name, state, created_at,"
                                  " version_hash, _dlt_load_id, _dlt_id) VALUES ($1::bigint,"
                                  " $2::bigint, $3, $4, now(), $5, $6, $7)",
                                  err);
        if (rc == KL_OK)
            rc = pg_query(pg, pg->sql.data, 7, vals, NULL, "write pipeline state", err);
        if (rc != KL_OK)
            goto cleanup;
    }

    if (c->schema_hash != NULL) {
        snprintf(hash, sizeof hash, "%s", c->schema_hash);
    } else {
        const char *vals[1] = {c->schema_name};
        kl_buf_reset(&pg->sql);
        rc = kl_buf_append_str(&pg->sql, "SELECT version_hash FROM ", err);
        if (rc == KL_OK)
            rc = kl_sql_table_ref(&pg->sql, KL_SQL_POSTGRES, d->name, "_dlt_version", err);
        if (rc == KL_OK)
            rc = kl_buf_append_str(&pg->sql,
                                   " WHERE schema_name = $1 ORDER BY \"version\" DESC,"
                                   " inserted_at DESC LIMIT 1",
                                   err);
        if (rc == KL_OK)
            rc = pg_query(pg, pg->sql.data, 1, vals, &res, "read schema hash", err);
        if (rc != KL_OK)
            goto cleanup;
        if (PQntuples(res) == 1)
            snprintf(hash, sizeof hash, "%s", PQgetvalue(res, 0, 0));
        PQclear(res);
        res = NULL;
    }
    {
        const char *vals[3] = {c->load_id, c->schema_name, hash[0] != '\0' ? hash : NULL};
        kl_buf_reset(&pg->sql);
        rc = kl_buf_append_str(&pg->sql, "INSERT INTO ", err);
        if (rc == KL_OK)
            rc = kl_sql_table_ref(&pg->sql, KL_SQL_POSTGRES, d->name, "_dlt_loads", err);
        if (rc == KL_OK)
            rc = kl_buf_append_str(&pg->sql,
                                   " (load_id, schema_name, status, inserted_at,"
                                   " schema_version_hash) VALUES ($1, $2, 0, now(), $3)",
                                   err);
        if (rc == KL_OK)
            rc = pg_query(pg, pg->sql.data, 3, vals, NULL, "write load", err);
        if (rc != KL_OK)
            goto cleanup;
    }
    rc = pg_query(pg, "COMMIT", 0, NULL, NULL, "commit", err);
    in_tx = false;

cleanup:
    if (rc != KL_OK && in_tx)
        pg_rollback(pg);
    PQclear(res);
    kl_state_doc_free(&doc);
    free(streams);
    free(cps);
    free(cp_streams);
    return rc;
}

/* ---- lifecycle ---- */

static void pg_destroy(void *impl)
{
    struct pg *pg = impl;

    if (pg == NULL)
        return;
    if (pg->conn != NULL)
        PQfinish(pg->conn);
    kl_dest_ds_list_free(&pg->ds);
    kl_copy_buf_free(&pg->copy);
    kl_buf_free(&pg->sql);
    if (pg->conninfo != NULL) {
        /* The connection string may hold a password. */
        volatile char *p = pg->conninfo;
        while (*p != '\0')
            *p++ = '\0';
        free(pg->conninfo);
    }
    free(pg);
}

static const struct kl_dest_ops PG_OPS = {
    .name = pg_name,
    .ping = pg_ping,
    .prepare = pg_prepare,
    .load_schema = pg_load_schema,
    .read_state = pg_read_state,
    .delete_state = pg_delete_state,
    .write_chunk = pg_write_chunk,
    .complete_load = pg_complete_load,
    .destroy = pg_destroy,
};

struct kl_dest *kl_dest_pg_create(const char *conninfo, const struct kl_dest_options *opts,
                                  struct kl_err *err)
{
    struct kl_dest *dest = NULL;
    struct pg *pg = NULL;
    int rc;

    if (conninfo == NULL) {
        kl_err_set(err, KL_ERR_INVALID, "postgres: no connection string");
        return NULL;
    }
    pg = calloc(1, sizeof *pg);
    dest = calloc(1, sizeof *dest);
    if (pg == NULL || dest == NULL || (pg->conninfo = strdup(conninfo)) == NULL) {
        kl_err_set(err, KL_ERR_NOMEM, "postgres destination");
        goto fail;
    }
    if (opts != NULL)
        pg->opt = *opts;
    else
        kl_dest_options_init(&pg->opt);
    if (pg->opt.copy_buffer == 0)
        pg->opt.copy_buffer = (size_t)1 << 20;
    if (pg->opt.copy_buffer > (size_t)INT_MAX / 2)
        pg->opt.copy_buffer = (size_t)INT_MAX / 2;
    kl_buf_init(&pg->sql, SQL_MAX);
    if (kl_copy_buf_init(&pg->copy, pg->opt.copy_buffer, err) != KL_OK)
        goto fail;
    rc = pg_connect(pg, err);
    if (rc != KL_OK)
        goto fail;
    dest->ops = &PG_OPS;
    dest->impl = pg;
    return dest;
fail:
    pg_destroy(pg);
    free(dest);
    return NULL;
}

/* ---- factory ---- */

struct pg_factory {
    char *conninfo;
    struct kl_dest_options opt;
};

static int pgf_open(void *impl, struct kl_dest **out, struct kl_err *err)
{
    struct pg_factory *f = impl;
    struct kl_dest *d = kl_dest_pg_create(f->conninfo, &f->opt, err);
    if (d == NULL)
        return err != NULL ? (int)err->code : KL_ERR_UNAVAILABLE;
    *out = d;
    return KL_OK;
}

static const char *pgf_name(void *impl)
{
    (void)impl;
    return DEST_NAME;
}

static void pgf_destroy(void *impl)
{
    struct pg_factory *f = impl;
    if (f == NULL)
        return;
    if (f->conninfo != NULL) {
        volatile char *p = f->conninfo;
        while (*p != '\0')
            *p++ = '\0';
        free(f->conninfo);
    }
    free(f);
}

static const struct kl_dest_factory_ops PG_FACTORY_OPS = {
    .open = pgf_open,
    .name = pgf_name,
    .destroy = pgf_destroy,
};

struct kl_dest_factory *kl_dest_pg_factory_create(const char *conninfo,
                                                  const struct kl_dest_options *opts,
                                                  struct kl_err *err)
{
    struct kl_dest_factory *fac = calloc(1, sizeof *fac);
    struct pg_factory *f = calloc(1, sizeof *f);

    if (conninfo == NULL) {
        kl_err_set(err, KL_ERR_INVALID, "postgres: no connection string");
        goto fail;
    }
    if (fac == NULL || f == NULL || (f->conninfo = strdup(conninfo)) == NULL) {
        kl_err_set(err, KL_ERR_NOMEM, "postgres factory");
        goto fail;
    }
    if (opts != NULL)
        f->opt = *opts;
    else
        kl_dest_options_init(&f->opt);
    fac->ops = &PG_FACTORY_OPS;
    fac->impl = f;
    return fac;
fail:
    pgf_destroy(f);
    free(fac);
    return NULL;
}
