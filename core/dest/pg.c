/*
 * The PostgreSQL destination (see pg.h and dest.h): the primitives of
 * backend.h in libpq. Per dataset the connection caches what the database
 * has (columns, indexes, truncations done, the stored schema hash) so a
 * steady-state chunk costs BEGIN, one checkpoint upsert, one COPY per table
 * and COMMIT. Not here: the order of the steps (chunk.c, load.c), SQL text
 * shared with SQLite (sql.c), COPY encoding (copy.c).
 */
#include "core/dest/pg.h"
#include "core/dest/backend.h"
#include "core/dest/common.h"
#include "core/dest/copy.h"
#include "core/dest/format.h"
#include "core/dest/sql.h"
#include "core/dest/state.h"
#include "core/normalize/rows.h"
#include "core/normalize/schema.h"
#include "core/util/buf.h"
#include "core/util/clock.h"
#include "core/util/err.h"

#include <libpq-fe.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LOCK_CLASS "1263271937" /* 0x4b4c0001: "KL" + 1 */
#define SQL_MAX ((size_t)64 << 20)
#define NEWEST_SCHEMA " WHERE schema_name = $1 ORDER BY \"version\" DESC, inserted_at DESC LIMIT 1"

struct pg {
    struct kl_dest_conn base; /* base.impl is this object */
    PGconn *conn;
    char *conninfo;
    struct kl_copy_buf copy;
    struct kl_buf sql;
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
        kl_dest_ds_list_invalidate(&pg->base.ds);
    return kl_err_set(err, code, "postgres: %s: SQLSTATE %s: %s", what,
                      state != NULL ? state : (lost ? "08006" : "none"), text);
}

/* ---- connection and transactions ---- */

/* Notices ("relation already exists, skipping") are expected; libpq would
 * print them on stderr, which is for our JSON log lines only. */
static void ignore_notice(void *arg, const char *message)
{
    (void)arg;
    (void)message;
}

static int pg_connect(void *impl, struct kl_err *err)
{
    struct pg *pg = impl;
    /* Defaults before dbname, so the user's connection string overrides them:
     * a server that does not answer, or a network that drops packets, fails
     * a call within seconds instead of holding a worker or an HTTP thread
     * for the kernel's TCP timeouts (minutes). */
    const char *keys[] = {"connect_timeout",  "keepalives",
                          "keepalives_idle",  "keepalives_interval",
                          "keepalives_count", "tcp_user_timeout",
                          "dbname",           "fallback_application_name",
                          "client_encoding",  NULL};
    const char *vals[] = {"10",   "1", "30", "10", "3", "60000", pg->conninfo, "kinesis-loader",
                          "UTF8", NULL};

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
static void pg_drop(void *impl)
{
    struct pg *pg = impl;
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

/* pg_query of "<prefix><dataset.table><suffix>" (built in pg->sql). */
static int query_on(struct pg *pg, const char *prefix, const struct kl_dest_ds *d,
                    const char *table, const char *suffix, int n, const char *const *vals,
                    PGresult **out, const char *what, struct kl_err *err)
{
    int rc = kl_sql_on_table(&pg->sql, KL_SQL_POSTGRES, prefix, d->name, table, suffix, err);

    if (rc == KL_OK)
        rc = pg_query(pg, pg->sql.data, n, vals, out, what, err);
    return rc;
}

static int pg_exec(void *impl, const char *sql, const char *what, struct kl_err *err)
{
    return pg_query(impl, sql, 0, NULL, NULL, what, err);
}

static int pg_begin(void *impl, struct kl_err *err)
{
    return pg_query(impl, "BEGIN", 0, NULL, NULL, "begin", err);
}

static int pg_commit(void *impl, struct kl_err *err)
{
    return pg_query(impl, "COMMIT", 0, NULL, NULL, "commit", err);
}

static void pg_rollback(void *impl)
{
    struct pg *pg = impl;
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

static int pg_lock_dataset(void *impl, const struct kl_dest_ds *d, struct kl_err *err)
{
    char key[16];
    const char *vals[1] = {key};

    snprintf(key, sizeof key, "%d", (int)(unsigned)(kl_sql_hash64(d->name) & 0x7fffffff));
    return pg_query(impl, "SELECT pg_advisory_xact_lock(" LOCK_CLASS ", $1::int4)", 1, vals, NULL,
                    "advisory lock", err);
}

/* ---- dataset and DDL ---- */

/* Reads the dataset's tables, columns and indexes from pg_catalog. */
static int pg_load_catalog(void *impl, struct kl_dest_ds *d, struct kl_err *err)
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
    struct pg *pg = impl;
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

static int pg_create_dataset(void *impl, const struct kl_dest_ds *d, struct kl_err *err)
{
    struct pg *pg = impl;
    int rc;

    kl_buf_reset(&pg->sql);
    rc = kl_buf_append_str(&pg->sql, "CREATE SCHEMA IF NOT EXISTS ", err);
    if (rc == KL_OK)
        rc = kl_sql_quote_ident(&pg->sql, d->name, err);
    if (rc == KL_OK)
        rc = pg_query(pg, pg->sql.data, 0, NULL, NULL, "create schema", err);
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

/* ACCESS EXCLUSIVE on tables that get columns, SHARE on tables that get an
 * index, in schema order (the order writers lock tables in too). */
static int pg_lock_for_ddl(void *impl, const struct kl_dest_ds *d, const struct kl_schema *s,
                           const struct kl_sql_stmts *index_tables, struct kl_err *err)
{
    struct pg *pg = impl;
    int rc = KL_OK;

    for (size_t j = 0; rc == KL_OK && j < s->n_tables; j++) {
        const struct kl_table *t = &s->tables[j];
        const char *mode = lacks_columns(d, t)                       ? "ACCESS EXCLUSIVE"
                           : kl_sql_stmts_has(index_tables, t->name) ? "SHARE"
                                                                     : NULL;
        /* Tables this transaction creates need no lock. */
        if (mode == NULL || kl_sql_catalog_find(&d->cat, t->name) == NULL)
            continue;
        rc = kl_sql_on_table(&pg->sql, KL_SQL_POSTGRES, "LOCK TABLE ", d->name, t->name, "", err);
        if (rc == KL_OK)
            rc = kl_buf_printf(&pg->sql, err, " IN %s MODE", mode);
        if (rc == KL_OK)
            rc = pg_query(pg, pg->sql.data, 0, NULL, NULL, "lock for schema change", err);
    }
    return rc;
}

/* ---- a chunk ---- */

static int pg_write_checkpoints(void *impl, const struct kl_dest_ds *d,
                                const struct kl_chunk_write *w, struct kl_err *err)
{
    struct pg *pg = impl;
    int rc = kl_sql_on_table(
        &pg->sql, KL_SQL_POSTGRES, "INSERT INTO ", d->name, "_kinesis_checkpoints",
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
                               cp->position.shard_id,
                               cp->position.sequence,
                               cp->position.sub_sequence >= 0 ? sub : NULL,
                               tok,
                               w->load_id};
        PGresult *res = NULL;

        if (cp->position.shard_id[0] == '\0' || cp->position.sequence[0] == '\0')
            return kl_err_set(err, KL_ERR_INVALID, "checkpoint without shard or sequence");
        snprintf(sub, sizeof sub, "%lld", (long long)cp->position.sub_sequence);
        snprintf(tok, sizeof tok, "%lld", (long long)cp->fencing_token);
        rc = pg_query(pg, pg->sql.data, 7, vals, &res, "write checkpoint", err);
        if (rc == KL_OK && PQntuples(res) != 1)
            rc = kl_err_set(err, KL_ERR_CONFLICT,
                            "checkpoint of shard %s refused: fencing token %lld is older than "
                            "the stored one",
                            cp->position.shard_id, (long long)cp->fencing_token);
        PQclear(res);
    }
    return rc;
}

static int pg_store_version(void *impl, const struct kl_dest_ds *d, const struct kl_schema *s,
                            const char *json, const char *hash, struct kl_err *err)
{
    struct pg *pg = impl;
    char version[24], engine[24];
    const char *vals[5] = {version, engine, s->name, hash, json};
    int rc;

    snprintf(version, sizeof version, "%lld", (long long)s->version);
    snprintf(engine, sizeof engine, "%lld", (long long)kl_dest_schema_engine(json));
    rc = kl_sql_on_table(&pg->sql, KL_SQL_POSTGRES, "INSERT INTO ", d->name, "_dlt_version",
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

/* Replace: the marker in `_kinesis_truncations` and the truncation go in the
 * same transaction, so a load truncates a family once. */
static int pg_truncate_family(void *impl, const struct kl_dest_ds *d, const char *load_id,
                              const char *root, const struct kl_schema *s, bool *done,
                              struct kl_err *err)
{
    struct pg *pg = impl;
    const char *vals[2] = {load_id, root};
    PGresult *res = NULL;
    size_t n = 0;
    int rc;

    *done = false;
    rc = query_on(pg, "INSERT INTO ", d, "_kinesis_truncations",
                  " (load_id, table_name, truncated_at) VALUES ($1, $2, now())"
                  " ON CONFLICT DO NOTHING RETURNING 1",
                  2, vals, &res, "replace marker", err);
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

/* Merge: ROW EXCLUSIVE on the batch's root families in schema order before
 * the deletes (which go deepest first), so the lock order matches DDL's. */
static int pg_lock_families(void *impl, const struct kl_dest_ds *d,
                            const struct kl_row_batch *batch, struct kl_err *err)
{
    struct pg *pg = impl;
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

static int pg_merge_delete(void *impl, const char *sql, const char *ids, struct kl_err *err)
{
    const char *vals[1] = {ids};
    return pg_query(impl, sql, 1, vals, NULL, "merge delete", err);
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
    int rc = kl_sql_on_table(&pg->sql, KL_SQL_POSTGRES, "COPY ", dataset, table, " (", err);

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

static int pg_copy_rows(void *impl, const struct kl_dest_ds *d, const struct kl_schema *s,
                        const struct kl_table_rows *tr, bool dedup, size_t *written,
                        struct kl_err *err)
{
    struct pg *pg = impl;
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

static int pg_copy_dead_letters(void *impl, const struct kl_dest_ds *d,
                                const struct kl_chunk_write *w, struct kl_err *err)
{
    static const char *const names[] = {"load_id",    "pipeline_name", "stream_name", "shard_id",
                                        "sequence",   "sub_sequence",  "data",        "error",
                                        "arrival_at", "inserted_at"};
    struct pg *pg = impl;
    const struct kl_row_batch *b = w->batch;
    const struct kl_clock *clock =
        pg->base.opt.clock != NULL ? pg->base.opt.clock : kl_clock_system();
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

/* ---- state and the end of a load ---- */

static int64_t parse_i64(const char *s)
{
    return s != NULL && s[0] != '\0' ? strtoll(s, NULL, 10) : -1;
}

static int pg_read_schema(void *impl, const struct kl_dest_ds *d, const char *name, char **json_out,
                          int64_t *version_out, struct kl_err *err)
{
    const char *vals[1] = {name};
    PGresult *res = NULL;
    char *json = NULL;
    int rc = query_on(impl, "SELECT \"schema\", \"version\" FROM ", d, "_dlt_version",
                      NEWEST_SCHEMA, 1, vals, &res, "load schema", err);

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

static int pg_read_stream_rows(void *impl, const struct kl_dest_ds *d, const char *pipeline,
                               const char *stream, bool with_runs, struct kl_dest_stream_row **out,
                               size_t *n_out, struct kl_err *err)
{
    struct pg *pg = impl;
    const char *vals[2] = {pipeline, stream};
    int nv = stream != NULL ? 2 : 1;
    PGresult *res = NULL;
    struct kl_dest_stream_row *rows = NULL;
    size_t n = 0;
    int rc;

    rc =
        query_on(pg,
                 "SELECT shard_id, sequence, sub_sequence, fencing_token,"
                 " floor(extract(epoch from updated_at) * 1000)::bigint, stream_name"
                 " FROM ",
                 d, "_kinesis_checkpoints",
                 stream != NULL ? " WHERE pipeline_name = $1 AND stream_name = $2 ORDER BY shard_id"
                                : " WHERE pipeline_name = $1 ORDER BY stream_name, shard_id",
                 nv, vals, &res, "read checkpoints", err);
    if (rc == KL_OK && PQntuples(res) > 0) {
        rows = calloc((size_t)PQntuples(res), sizeof *rows);
        if (rows == NULL)
            rc = kl_err_set(err, KL_ERR_NOMEM, "checkpoints");
    }
    for (int i = 0; rc == KL_OK && rows != NULL && i < PQntuples(res); i++) {
        struct kl_dest_stream_row *r = &rows[n++];
        if (strlen(PQgetvalue(res, i, 0)) >= KL_SHARD_ID_MAX ||
            strlen(PQgetvalue(res, i, 1)) >= KL_SEQ_MAX) {
            rc = kl_err_set(err, KL_ERR_UPSTREAM, "postgres: a stored checkpoint is too long");
            break;
        }
        snprintf(r->cp.position.shard_id, sizeof r->cp.position.shard_id, "%s",
                 PQgetvalue(res, i, 0));
        snprintf(r->cp.position.sequence, sizeof r->cp.position.sequence, "%s",
                 PQgetvalue(res, i, 1));
        r->cp.position.sub_sequence =
            PQgetisnull(res, i, 2) ? -1 : parse_i64(PQgetvalue(res, i, 2));
        r->cp.fencing_token = parse_i64(PQgetvalue(res, i, 3));
        r->cp.updated_ms = parse_i64(PQgetvalue(res, i, 4));
        snprintf(r->stream, sizeof r->stream, "%s", PQgetvalue(res, i, 5));
    }
    PQclear(res);
    res = NULL;
    if (rc == KL_OK && with_runs)
        rc = query_on(pg,
                      "SELECT stream_name, floor(extract(epoch from last_run_at) * 1000)::bigint"
                      " FROM ",
                      d, "_kinesis_runs",
                      stream != NULL ? " WHERE pipeline_name = $1 AND stream_name = $2"
                                     : " WHERE pipeline_name = $1 ORDER BY stream_name",
                      nv, vals, &res, stream != NULL ? "read run time" : "read run times", err);
    if (rc == KL_OK && PQntuples(res) > 0) {
        struct kl_dest_stream_row *more =
            realloc(rows, (n + (size_t)PQntuples(res)) * sizeof *rows);
        if (more == NULL)
            rc = kl_err_set(err, KL_ERR_NOMEM, "run times");
        else
            rows = more;
    }
    for (int i = 0; rc == KL_OK && rows != NULL && i < PQntuples(res); i++) {
        struct kl_dest_stream_row *r = &rows[n++];
        memset(r, 0, sizeof *r);
        snprintf(r->stream, sizeof r->stream, "%s", PQgetvalue(res, i, 0));
        r->has_last_run = true;
        r->last_run_ms = parse_i64(PQgetvalue(res, i, 1));
    }
    PQclear(res);
    if (rc != KL_OK) {
        free(rows);
        return rc;
    }
    *out = rows;
    *n_out = n;
    return KL_OK;
}

static int pg_claim_shard(void *impl, const struct kl_dest_ds *d, const char *pipeline,
                          const char *stream, const char *shard_id, int64_t token,
                          struct kl_err *err)
{
    char tok[24];
    const char *vals[4] = {pipeline, stream, shard_id, tok};
    PGresult *res = NULL;
    int rc;

    snprintf(tok, sizeof tok, "%lld", (long long)token);
    /* The position stays as it is; only the token moves, and never down. */
    rc = query_on(impl, "INSERT INTO ", d, "_kinesis_checkpoints",
                  " AS c (pipeline_name, stream_name, shard_id, sequence, sub_sequence,"
                  " fencing_token, load_id, updated_at)"
                  " VALUES ($1, $2, $3, '', NULL, $4::bigint, NULL, now())"
                  " ON CONFLICT (pipeline_name, stream_name, shard_id) DO UPDATE SET"
                  " fencing_token = EXCLUDED.fencing_token"
                  " WHERE c.fencing_token <= EXCLUDED.fencing_token RETURNING 1",
                  4, vals, &res, "claim shard", err);
    if (rc == KL_OK && PQntuples(res) != 1)
        rc = kl_err_set(err, KL_ERR_CONFLICT,
                        "claim of shard %s refused: fencing token %lld is older than the stored "
                        "one",
                        shard_id, (long long)token);
    PQclear(res);
    return rc;
}

static int pg_delete_stream_rows(void *impl, const struct kl_dest_ds *d, const char *table,
                                 const char *pipeline, const char *stream, struct kl_err *err)
{
    const char *vals[2] = {pipeline, stream};
    return query_on(impl, "DELETE FROM ", d, table,
                    " WHERE pipeline_name = $1 AND stream_name = $2", 2, vals, NULL, "delete state",
                    err);
}

static int pg_load_done(void *impl, const struct kl_dest_ds *d, const char *load_id, bool *done,
                        struct kl_err *err)
{
    const char *vals[1] = {load_id};
    PGresult *res = NULL;
    int rc = query_on(impl, "SELECT 1 FROM ", d, "_dlt_loads", " WHERE load_id = $1", 1, vals, &res,
                      "check load", err);

    if (rc == KL_OK)
        *done = PQntuples(res) > 0;
    PQclear(res);
    return rc;
}

static int pg_write_run_time(void *impl, const struct kl_dest_ds *d,
                             const struct kl_load_complete *c, int64_t now_ms, struct kl_err *err)
{
    char ts[KL_FMT_MAX];
    const char *vals[4] = {c->pipeline_name, c->stream_name, ts, c->load_id};

    (void)now_ms; /* now() */
    kl_fmt_timestamp(ts, c->next_run_ms * 1000, KL_TS_PG);
    return query_on(impl, "INSERT INTO ", d, "_kinesis_runs",
                    " (pipeline_name, stream_name, last_run_at, load_id, updated_at)"
                    " VALUES ($1, $2, $3::timestamptz, $4, now())"
                    " ON CONFLICT (pipeline_name, stream_name) DO UPDATE SET"
                    " last_run_at = EXCLUDED.last_run_at,"
                    " load_id = EXCLUDED.load_id, updated_at = EXCLUDED.updated_at",
                    4, vals, NULL, "write run time", err);
}

/* dlt's get_stored_state: the state row of the pipeline's newest completed load. */
static int pg_read_dlt_state(void *impl, const struct kl_dest_ds *d, const char *pipeline,
                             struct kl_dlt_state_row *out, struct kl_err *err)
{
    struct pg *pg = impl;
    const char *vals[1] = {pipeline};
    PGresult *res = NULL;
    int rc = kl_sql_on_table(&pg->sql, KL_SQL_POSTGRES,
                             "SELECT s.\"version\", s.state, s._dlt_load_id,"
                             " floor(extract(epoch from s.created_at) * 1000)::bigint FROM ",
                             d->name, "_dlt_pipeline_state", " AS s JOIN ", err);

    memset(out, 0, sizeof *out);
    if (rc == KL_OK)
        rc = kl_sql_table_ref(&pg->sql, KL_SQL_POSTGRES, d->name, "_dlt_loads", err);
    if (rc == KL_OK)
        rc = kl_buf_append_str(&pg->sql,
                               " AS l ON l.load_id = s._dlt_load_id WHERE s.pipeline_name = $1"
                               " AND l.status = 0 ORDER BY l.load_id DESC, s.\"version\" DESC"
                               " LIMIT 1",
                               err);
    if (rc == KL_OK)
        rc = pg_query(pg, pg->sql.data, 1, vals, &res, "read dlt state", err);
    if (rc == KL_OK && PQntuples(res) == 1) {
        out->found = true;
        out->version = parse_i64(PQgetvalue(res, 0, 0));
        out->state = strdup(PQgetvalue(res, 0, 1));
        snprintf(out->load_id, sizeof out->load_id, "%s", PQgetvalue(res, 0, 2));
        out->created_ms = parse_i64(PQgetvalue(res, 0, 3));
        if (out->state == NULL)
            rc = kl_err_set(err, KL_ERR_NOMEM, "pipeline state");
    }
    PQclear(res);
    if (rc != KL_OK)
        kl_dlt_state_row_free(out);
    return rc;
}

static int pg_newest_load_id(void *impl, const struct kl_dest_ds *d, char *out, size_t cap,
                             struct kl_err *err)
{
    PGresult *res = NULL;
    int rc = query_on(impl, "SELECT load_id FROM ", d, "_dlt_loads",
                      " ORDER BY load_id DESC LIMIT 1", 0, NULL, &res, "newest load", err);

    if (rc == KL_OK)
        snprintf(out, cap, "%s", PQntuples(res) == 1 ? PQgetvalue(res, 0, 0) : "");
    PQclear(res);
    return rc;
}

static int pg_write_state(void *impl, const struct kl_dest_ds *d, const char *pipeline,
                          const char *load_id, const struct kl_state_doc *doc, int64_t version,
                          int64_t now_ms, struct kl_err *err)
{
    char v[24], engine[24];
    const char *vals[7] = {v,       engine,     pipeline, doc->state, doc->version_hash,
                           load_id, doc->row_id};

    (void)now_ms; /* now() */
    snprintf(v, sizeof v, "%lld", (long long)version);
    snprintf(engine, sizeof engine, "%d", KL_STATE_ENGINE_VERSION);
    return query_on(impl, "INSERT INTO ", d, "_dlt_pipeline_state",
                    " (\"version\", engine_version, pipeline_name, state, created_at,"
                    " version_hash, _dlt_load_id, _dlt_id) VALUES ($1::bigint,"
                    " $2::bigint, $3, $4, now(), $5, $6, $7)",
                    7, vals, NULL, "write pipeline state", err);
}

static int pg_newest_hash(void *impl, const struct kl_dest_ds *d, const char *name, char *out,
                          size_t cap, struct kl_err *err)
{
    const char *vals[1] = {name};
    PGresult *res = NULL;
    int rc = query_on(impl, "SELECT version_hash FROM ", d, "_dlt_version", NEWEST_SCHEMA, 1, vals,
                      &res, "read schema hash", err);

    if (rc == KL_OK)
        snprintf(out, cap, "%s", PQntuples(res) == 1 ? PQgetvalue(res, 0, 0) : "");
    PQclear(res);
    return rc;
}

static int pg_write_load(void *impl, const struct kl_dest_ds *d, const char *load_id,
                         const char *schema_name, const char *hash, int64_t now_ms,
                         struct kl_err *err)
{
    const char *vals[3] = {load_id, schema_name, hash};

    (void)now_ms; /* now() */
    return query_on(impl, "INSERT INTO ", d, "_dlt_loads",
                    " (load_id, schema_name, status, inserted_at,"
                    " schema_version_hash) VALUES ($1, $2, 0, now(), $3)",
                    3, vals, NULL, "write load", err);
}

/* ---- lifecycle ---- */

static void pg_destroy(void *impl)
{
    struct pg *pg = impl;

    if (pg == NULL)
        return;
    if (pg->conn != NULL)
        PQfinish(pg->conn);
    kl_dest_ds_list_free(&pg->base.ds);
    kl_copy_buf_free(&pg->copy);
    kl_buf_free(&pg->sql);
    kl_dest_free_secret(pg->conninfo); /* it may hold a password */
    free(pg);
}

static const struct kl_dest_backend PG_BACKEND = {
    .name = "postgres",
    .destination_type = "dlt.destinations.postgres",
    .dialect = KL_SQL_POSTGRES,
    .failed_commit_ends_tx = true,
    .sort_streams = false,
    .connect = pg_connect,
    .exec = pg_exec,
    .drop = pg_drop,
    .destroy = pg_destroy,
    .begin = pg_begin,
    .lock_dataset = pg_lock_dataset,
    .commit = pg_commit,
    .rollback = pg_rollback,
    .load_catalog = pg_load_catalog,
    .create_dataset = pg_create_dataset,
    .lock_for_ddl = pg_lock_for_ddl,
    .write_checkpoints = pg_write_checkpoints,
    .store_version = pg_store_version,
    .truncate_family = pg_truncate_family,
    .lock_families = pg_lock_families,
    .merge_delete = pg_merge_delete,
    .write_rows = pg_copy_rows,
    .write_dead_letters = pg_copy_dead_letters,
    .read_schema = pg_read_schema,
    .read_stream_rows = pg_read_stream_rows,
    .claim_shard = pg_claim_shard,
    .delete_stream_rows = pg_delete_stream_rows,
    .load_done = pg_load_done,
    .write_run_time = pg_write_run_time,
    .read_dlt_state = pg_read_dlt_state,
    .newest_load_id = pg_newest_load_id,
    .write_state = pg_write_state,
    .newest_hash = pg_newest_hash,
    .write_load = pg_write_load,
};

struct kl_dest *kl_dest_pg_create(const char *conninfo, const struct kl_dest_options *opts,
                                  struct kl_err *err)
{
    struct kl_dest *dest = NULL;
    struct pg *pg = NULL;

    if (conninfo == NULL) {
        kl_err_set(err, KL_ERR_INVALID, "postgres: no connection string");
        return NULL;
    }
    pg = calloc(1, sizeof *pg);
    if (pg == NULL || (pg->conninfo = strdup(conninfo)) == NULL) {
        kl_err_set(err, KL_ERR_NOMEM, "postgres destination");
        goto fail;
    }
    pg->base.be = &PG_BACKEND;
    pg->base.impl = pg;
    if (opts != NULL)
        pg->base.opt = *opts;
    else
        kl_dest_options_init(&pg->base.opt);
    if (pg->base.opt.copy_buffer == 0)
        pg->base.opt.copy_buffer = (size_t)1 << 20;
    if (pg->base.opt.copy_buffer > (size_t)INT_MAX / 2)
        pg->base.opt.copy_buffer = (size_t)INT_MAX / 2;
    kl_buf_init(&pg->sql, SQL_MAX);
    if (kl_copy_buf_init(&pg->copy, pg->base.opt.copy_buffer, err) != KL_OK)
        goto fail;
    if (pg_connect(pg, err) != KL_OK)
        goto fail;
    dest = kl_dest_conn_wrap(&pg->base, err);
    if (dest != NULL)
        return dest;
fail:
    pg_destroy(pg);
    return NULL;
}

struct kl_dest_factory *kl_dest_pg_factory_create(const char *conninfo,
                                                  const struct kl_dest_options *opts,
                                                  struct kl_err *err)
{
    if (conninfo == NULL) {
        kl_err_set(err, KL_ERR_INVALID, "postgres: no connection string");
        return NULL;
    }
    return kl_dest_conn_factory_create(PG_BACKEND.name, conninfo, opts, kl_dest_pg_create, true,
                                       err);
}
