/*
 * The SQLite destination (see sqlite.h and dest.h): the same tables and
 * semantics as Postgres, with BEGIN IMMEDIATE as the dataset lock and
 * prepared INSERTs instead of COPY. One connection per object.
 * Not here: SQL text shared with Postgres (sql.c).
 */
#include "core/dest/sqlite.h"
#include "core/dest/common.h"
#include "core/dest/format.h"
#include "core/dest/sql.h"
#include "core/dest/state.h"
#include "core/normalize/rows.h"
#include "core/util/buf.h"
#include "core/util/clock.h"
#include "core/util/err.h"

#include <cjson/cJSON.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SQL_MAX ((size_t)64 << 20)
#define DEST_NAME "sqlite"
#define DEST_TYPE "dlt.destinations.sqlalchemy"

/* A prepared INSERT for one table and column count. */
struct lite_insert {
    char key[2 * KL_IDENT_MAX + 16];
    sqlite3_stmt *st;
};

struct lite {
    sqlite3 *db;
    char *path;
    struct kl_dest_options opt;
    struct kl_dest_ds_list ds;
    struct lite_insert *ins;
    size_t n_ins;
    size_t cap_ins;
    struct kl_buf sql;
};

struct pending {
    bool schema_checked;
    bool catalog_from_schema;
    bool hash_stored;
    struct kl_sql_stmts truncated;
    struct kl_sql_stmts indexes;
};

/* ---- errors and plumbing ---- */

static int lite_fail(struct lite *l, int src, const char *what, struct kl_err *err)
{
    int prim = src & 0xff;
    enum kl_err_code code;

    switch (prim) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        code = KL_ERR_UNAVAILABLE;
        break;
    case SQLITE_NOMEM:
        code = KL_ERR_NOMEM;
        break;
    case SQLITE_IOERR:
    case SQLITE_FULL:
    case SQLITE_CANTOPEN:
    case SQLITE_READONLY:
        code = KL_ERR_IO;
        break;
    default:
        code = KL_ERR_UPSTREAM;
        /* A table or column vanished behind our cache (someone dropped it):
         * forget the cache; the next try re-creates them. */
        if (prim == SQLITE_ERROR && l->db != NULL &&
            (strncmp(sqlite3_errmsg(l->db), "no such table", 13) == 0 ||
             strstr(sqlite3_errmsg(l->db), "has no column named") != NULL))
            code = KL_ERR_UNAVAILABLE;
    }
    if (code == KL_ERR_UNAVAILABLE)
        kl_dest_ds_list_invalidate(&l->ds);
    return kl_err_set(err, code, "sqlite: %s: %s (%d)", what,
                      l->db != NULL ? sqlite3_errmsg(l->db) : sqlite3_errstr(src), src);
}

static int lite_exec(struct lite *l, const char *sql, const char *what, struct kl_err *err)
{
    int src = sqlite3_exec(l->db, sql, NULL, NULL, NULL);
    return src == SQLITE_OK ? KL_OK : lite_fail(l, src, what, err);
}

static int lite_prepare(struct lite *l, const char *sql, sqlite3_stmt **st, const char *what,
                        struct kl_err *err)
{
    int src = sqlite3_prepare_v2(l->db, sql, -1, st, NULL);
    if (src != SQLITE_OK) {
        *st = NULL;
        return lite_fail(l, src, what, err);
    }
    return KL_OK;
}

static int bind_text(struct lite *l, sqlite3_stmt *st, int i, const char *v, struct kl_err *err)
{
    int src =
        v != NULL ? sqlite3_bind_text(st, i, v, -1, SQLITE_TRANSIENT) : sqlite3_bind_null(st, i);
    return src == SQLITE_OK ? KL_OK : lite_fail(l, src, "bind", err);
}

static int bind_i64(struct lite *l, sqlite3_stmt *st, int i, int64_t v, struct kl_err *err)
{
    int src = sqlite3_bind_int64(st, i, v);
    return src == SQLITE_OK ? KL_OK : lite_fail(l, src, "bind", err);
}

/* Steps a statement that returns no rows (or ignores them) to its end. */
static int step_done(struct lite *l, sqlite3_stmt *st, const char *what, struct kl_err *err)
{
    int src;
    while ((src = sqlite3_step(st)) == SQLITE_ROW)
        ;
    if (src != SQLITE_DONE)
        return lite_fail(l, src, what, err);
    return KL_OK;
}

static void now_iso(struct lite *l, char out[KL_FMT_MAX])
{
    const struct kl_clock *c = l->opt.clock != NULL ? l->opt.clock : kl_clock_system();
    kl_fmt_timestamp(out, kl_clock_wall_ms(c) * 1000, KL_TS_ISO);
}

static int64_t iso_ms(const unsigned char *text)
{
    int64_t us;
    if (text == NULL || kl_fmt_parse_timestamp((const char *)text, &us) != 0)
        return -1;
    return us >= 0 ? us / 1000 : -((-us + 999) / 1000);
}

static void lite_rollback(struct lite *l)
{
    if (l->db != NULL && !sqlite3_get_autocommit(l->db))
        sqlite3_exec(l->db, "ROLLBACK", NULL, NULL, NULL);
}

static void finalize_inserts(struct lite *l)
{
    for (size_t i = 0; i < l->n_ins; i++)
        sqlite3_finalize(l->ins[i].st);
    l->n_ins = 0;
}

static int lite_open(struct lite *l, struct kl_err *err)
{
    sqlite3_stmt *st = NULL;
    int src, rc = KL_OK;

    if (l->db != NULL)
        return KL_OK;
    src = sqlite3_open_v2(l->path, &l->db,
                          SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (src != SQLITE_OK) {
        rc = lite_fail(l, src, "open", err);
        goto fail;
    }
    src = sqlite3_busy_timeout(l->db, l->opt.busy_timeout_ms);
    if (src != SQLITE_OK) {
        rc = lite_fail(l, src, "busy timeout", err);
        goto fail;
    }
    /* journal_mode answers with the mode in force; anything but wal is a failure. */
    rc = lite_prepare(l, "PRAGMA journal_mode=WAL", &st, "journal mode", err);
    if (rc != KL_OK)
        goto fail;
    src = sqlite3_step(st);
    if (src != SQLITE_ROW || strcmp((const char *)sqlite3_column_text(st, 0), "wal") != 0) {
        rc = src == SQLITE_ROW
                 ? kl_err_set(err, KL_ERR_IO, "sqlite: %s: cannot use WAL mode", l->path)
                 : lite_fail(l, src, "journal mode", err);
        goto fail;
    }
    sqlite3_finalize(st);
    st = NULL;
    rc = lite_exec(l, "PRAGMA synchronous=NORMAL", "synchronous", err);
    if (rc != KL_OK)
        goto fail;
    return KL_OK;
fail:
    sqlite3_finalize(st);
    sqlite3_close(l->db);
    l->db = NULL;
    return rc;
}

/* Drops the connection as a crash would: uncommitted work is rolled back
 * when the file is next opened (or by the other connections). */
static void lite_drop(struct lite *l)
{
    finalize_inserts(l);
    if (l->db != NULL)
        sqlite3_close(l->db); /* an open transaction is rolled back */
    l->db = NULL;
    kl_dest_ds_list_invalidate(&l->ds);
}

/* ---- dataset ---- */

static int lite_load_catalog(struct lite *l, struct kl_dest_ds *d, struct kl_err *err)
{
    static const char *const COLS_SQL =
        "SELECT m.name, p.name, p.type FROM sqlite_master m JOIN pragma_table_info(m.name) p"
        " WHERE m.type = 'table' AND substr(m.name, 1, length(?1) + 1) = ?1 || '.'"
        " ORDER BY m.name, p.cid";
    static const char *const IDX_SQL = "SELECT name FROM sqlite_master WHERE type = 'index'"
                                       " AND substr(name, 1, length(?1) + 1) = ?1 || '.'";
    size_t prefix = strlen(d->name) + 1;
    sqlite3_stmt *st = NULL;
    int src, rc;

    kl_sql_catalog_free(&d->cat);
    kl_sql_stmts_free(&d->indexes);
    d->cat_loaded = false;
    d->checked_schema = NULL;
    rc = lite_prepare(l, COLS_SQL, &st, "read catalog", err);
    if (rc == KL_OK)
        rc = bind_text(l, st, 1, d->name, err);
    while (rc == KL_OK && (src = sqlite3_step(st)) == SQLITE_ROW) {
        const char *t = (const char *)sqlite3_column_text(st, 0);
        const char *c = (const char *)sqlite3_column_text(st, 1);
        const char *ty = (const char *)sqlite3_column_text(st, 2);
        if (t != NULL && c != NULL && strlen(t) > prefix)
            rc = kl_sql_catalog_add(&d->cat, t + prefix, c, ty != NULL ? ty : "", err);
    }
    if (rc == KL_OK && src != SQLITE_DONE)
        rc = lite_fail(l, src, "read catalog", err);
    sqlite3_finalize(st);
    st = NULL;
    if (rc == KL_OK)
        rc = lite_prepare(l, IDX_SQL, &st, "read indexes", err);
    if (rc == KL_OK)
        rc = bind_text(l, st, 1, d->name, err);
    while (rc == KL_OK && (src = sqlite3_step(st)) == SQLITE_ROW) {
        const char *n = (const char *)sqlite3_column_text(st, 0);
        if (n != NULL && strlen(n) > prefix)
            rc = kl_sql_stmts_add(&d->indexes, n + prefix, err);
    }
    if (rc == KL_OK && src != SQLITE_DONE)
        rc = lite_fail(l, src, "read indexes", err);
    sqlite3_finalize(st);
    if (rc == KL_OK)
        d->cat_loaded = true;
    return rc;
}

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
            rc = kl_sql_create_table(&b, KL_SQL_SQLITE, d->name, defs[i].name, defs[i].cols,
                                     defs[i].n_cols, defs[i].pk, defs[i].n_pk, create_indexes, err);
            if (rc == KL_OK)
                rc = kl_sql_stmts_take(out, &b, err);
        } else {
            struct kl_table t;
            struct kl_schema s;
            memset(&t, 0, sizeof t);
            memset(&s, 0, sizeof s);
            snprintf(t.name, sizeof t.name, "%s", defs[i].name);
            t.columns = (struct kl_column *)defs[i].cols; /* only read */
            t.n_columns = defs[i].n_cols;
            s.tables = &t;
            s.n_tables = 1;
            rc = kl_sql_plan_ddl(KL_SQL_SQLITE, d->name, &s, &d->cat, create_indexes, out, NULL,
                                 err);
        }
    }
    kl_buf_free(&b);
    return rc;
}

static int lite_ensure_prepared(struct lite *l, struct kl_dest_ds *d, struct kl_err *err)
{
    struct kl_sql_stmts ddl;
    int rc;

    if (d->prepared && d->cat_loaded)
        return KL_OK;
    kl_sql_stmts_init(&ddl);
    rc = lite_load_catalog(l, d, err);
    if (rc == KL_OK)
        rc = plan_system_tables(d, l->opt.create_indexes, &ddl, err);
    if (rc == KL_OK && ddl.n > 0) {
        rc = lite_exec(l, "BEGIN IMMEDIATE", "begin", err);
        if (rc == KL_OK)
            rc = lite_load_catalog(l, d, err);
        kl_sql_stmts_free(&ddl);
        if (rc == KL_OK)
            rc = plan_system_tables(d, l->opt.create_indexes, &ddl, err);
        for (size_t i = 0; rc == KL_OK && i < ddl.n; i++)
            rc = lite_exec(l, ddl.items[i], "create system table", err);
        if (rc == KL_OK)
            rc = lite_exec(l, "COMMIT", "commit", err);
        if (rc != KL_OK)
            lite_rollback(l);
        if (rc == KL_OK)
            rc = lite_load_catalog(l, d, err);
    }
    if (rc == KL_OK)
        d->prepared = true;
    kl_sql_stmts_free(&ddl);
    return rc;
}

static int lite_open_dataset(struct lite *l, const char *dataset, struct kl_dest_ds **out,
                             struct kl_err *err)
{
    struct kl_dest_ds *d = NULL;
    int rc = kl_dest_ds_get(&l->ds, dataset, &d, err);

    if (rc != KL_OK)
        return rc;
    rc = lite_open(l, err);
    if (rc == KL_OK)
        rc = lite_ensure_prepared(l, d, err);
    if (rc == KL_OK)
        *out = d;
    return rc;
}

/* Builds "<prefix> <table ref> <suffix>" into l->sql and prepares it. */
static int prep_on(struct lite *l, const char *prefix, const char *dataset, const char *table,
                   const char *suffix, sqlite3_stmt **st, const char *what, struct kl_err *err)
{
    int rc;

    kl_buf_reset(&l->sql);
    rc = kl_buf_append_str(&l->sql, prefix, err);
    if (rc == KL_OK)
        rc = kl_sql_table_ref(&l->sql, KL_SQL_SQLITE, dataset, table, err);
    if (rc == KL_OK)
        rc = kl_buf_append_str(&l->sql, suffix, err);
    if (rc == KL_OK)
        rc = lite_prepare(l, l->sql.data, st, what, err);
    return rc;
}

/* ---- ops: simple ---- */

static const char *lite_name(void *impl)
{
    (void)impl;
    return DEST_NAME;
}

static int lite_ping(void *impl, struct kl_err *err)
{
    struct lite *l = impl;
    int rc = lite_open(l, err);
    if (rc == KL_OK)
        rc = lite_exec(l, "SELECT 1", "ping", err);
    return rc;
}

static int lite_prepare_op(void *impl, const char *dataset, struct kl_err *err)
{
    struct kl_dest_ds *d;
    return lite_open_dataset(impl, dataset, &d, err);
}

static int lite_load_schema(void *impl, const char *dataset, const char *schema_name,
                            char **json_out, int64_t *version_out, struct kl_err *err)
{
    struct lite *l = impl;
    struct kl_dest_ds *d;
    sqlite3_stmt *st = NULL;
    char *json = NULL;
    int src, rc = lite_open_dataset(l, dataset, &d, err);

    if (rc != KL_OK)
        return rc;
    rc = prep_on(l, "SELECT \"schema\", \"version\" FROM", d->name, "_dlt_version",
                 " WHERE schema_name = ?1 ORDER BY \"version\" DESC, inserted_at DESC LIMIT 1", &st,
                 "load schema", err);
    if (rc == KL_OK)
        rc = bind_text(l, st, 1, schema_name, err);
    if (rc == KL_OK) {
        src = sqlite3_step(st);
        if (src == SQLITE_ROW) {
            const char *t = (const char *)sqlite3_column_text(st, 0);
            json = strdup(t != NULL ? t : "");
            if (json == NULL)
                rc = kl_err_set(err, KL_ERR_NOMEM, "schema text");
            else if (version_out != NULL)
                *version_out = sqlite3_column_int64(st, 1);
        } else if (src != SQLITE_DONE) {
            rc = lite_fail(l, src, "load schema", err);
        }
    }
    sqlite3_finalize(st);
    if (rc == KL_OK)
        *json_out = json;
    else
        free(json);
    return rc;
}

/* Reads checkpoint rows (one stream, or all when stream is NULL) and, when
 * with_runs, run-time rows of the pipeline. *out is malloc'ed. */
static int read_stream_rows(struct lite *l, struct kl_dest_ds *d, const char *pipeline,
                            const char *stream, bool with_runs, struct kl_dest_stream_row **out,
                            size_t *n_out, struct kl_err *err)
{
    struct kl_dest_stream_row *rows = NULL;
    size_t n = 0, cap = 0;
    sqlite3_stmt *st = NULL;
    int src = SQLITE_DONE, rc;

    rc = prep_on(l,
                 "SELECT stream_name, shard_id, sequence, sub_sequence, fencing_token,"
                 " updated_at FROM",
                 d->name, "_kinesis_checkpoints",
                 stream != NULL ? " WHERE pipeline_name = ?1 AND stream_name = ?2 ORDER BY shard_id"
                                : " WHERE pipeline_name = ?1 ORDER BY stream_name, shard_id",
                 &st, "read checkpoints", err);
    if (rc == KL_OK)
        rc = bind_text(l, st, 1, pipeline, err);
    if (rc == KL_OK && stream != NULL)
        rc = bind_text(l, st, 2, stream, err);
    for (int pass = 0; rc == KL_OK && pass < (with_runs ? 2 : 1); pass++) {
        if (pass == 1) {
            sqlite3_finalize(st);
            st = NULL;
            rc = prep_on(l, "SELECT stream_name, last_run_at FROM", d->name, "_kinesis_runs",
                         " WHERE pipeline_name = ?1", &st, "read run times", err);
            if (rc == KL_OK)
                rc = bind_text(l, st, 1, pipeline, err);
        }
        while (rc == KL_OK && (src = sqlite3_step(st)) == SQLITE_ROW) {
            struct kl_dest_stream_row *r;
            const char *sname = (const char *)sqlite3_column_text(st, 0);
            if (n == cap) {
                size_t nc = cap ? cap * 2 : 16;
                struct kl_dest_stream_row *nr = realloc(rows, nc * sizeof *nr);
                if (nr == NULL) {
                    rc = kl_err_set(err, KL_ERR_NOMEM, "checkpoints");
                    break;
                }
                rows = nr;
                cap = nc;
            }
            r = &rows[n++];
            memset(r, 0, sizeof *r);
            snprintf(r->stream, sizeof r->stream, "%s", sname != NULL ? sname : "");
            if (pass == 0) {
                const char *shard = (const char *)sqlite3_column_text(st, 1);
                const char *seq = (const char *)sqlite3_column_text(st, 2);
                if (shard == NULL || seq == NULL || strlen(shard) >= KL_DEST_SHARD_ID_MAX ||
                    strlen(seq) >= KL_DEST_SEQ_MAX) {
                    rc = kl_err_set(err, KL_ERR_UPSTREAM, "sqlite: a stored checkpoint is bad");
                    break;
                }
                snprintf(r->cp.shard_id, sizeof r->cp.shard_id, "%s", shard);
                snprintf(r->cp.sequence, sizeof r->cp.sequence, "%s", seq);
                r->cp.sub_sequence =
                    sqlite3_column_type(st, 3) == SQLITE_NULL ? -1 : sqlite3_column_int64(st, 3);
                r->cp.fencing_token = sqlite3_column_int64(st, 4);
                r->cp.updated_ms = iso_ms(sqlite3_column_text(st, 5));
            } else {
                r->has_last_run = true;
                r->last_run_ms = iso_ms(sqlite3_column_text(st, 1));
            }
        }
        if (rc == KL_OK && src != SQLITE_DONE)
            rc = lite_fail(l, src, "read checkpoints", err);
    }
    sqlite3_finalize(st);
    if (rc != KL_OK) {
        free(rows);
        return rc;
    }
    *out = rows;
    *n_out = n;
    return KL_OK;
}

static int lite_read_state(void *impl, const char *dataset, const char *pipeline,
                           const char *stream, struct kl_dest_state *out, struct kl_err *err)
{
    struct lite *l = impl;
    struct kl_dest_ds *d;
    struct kl_dest_stream_row *rows = NULL;
    size_t n = 0;
    struct kl_dest_state st;
    sqlite3_stmt *q = NULL;
    int src, rc = lite_open_dataset(l, dataset, &d, err);

    if (rc != KL_OK)
        return rc;
    kl_dest_state_init(&st);
    rc = read_stream_rows(l, d, pipeline, stream, false, &rows, &n, err);
    if (rc == KL_OK && n > 0) {
        st.checkpoints = calloc(n, sizeof *st.checkpoints);
        if (st.checkpoints == NULL)
            rc = kl_err_set(err, KL_ERR_NOMEM, "checkpoints");
        for (size_t i = 0; rc == KL_OK && st.checkpoints != NULL && i < n; i++)
            st.checkpoints[st.n_checkpoints++] = rows[i].cp;
    }
    if (rc == KL_OK)
        rc = prep_on(l, "SELECT last_run_at FROM", d->name, "_kinesis_runs",
                     " WHERE pipeline_name = ?1 AND stream_name = ?2", &q, "read run time", err);
    if (rc == KL_OK)
        rc = bind_text(l, q, 1, pipeline, err);
    if (rc == KL_OK)
        rc = bind_text(l, q, 2, stream, err);
    if (rc == KL_OK) {
        src = sqlite3_step(q);
        if (src == SQLITE_ROW) {
            st.has_last_run = true;
            st.last_run_ms = iso_ms(sqlite3_column_text(q, 0));
        } else if (src != SQLITE_DONE) {
            rc = lite_fail(l, src, "read run time", err);
        }
    }
    sqlite3_finalize(q);
    free(rows);
    if (rc != KL_OK) {
        kl_dest_state_free(&st);
        return rc;
    }
    kl_dest_state_free(out);
    *out = st;
    return KL_OK;
}

static int lite_delete_state(void *impl, const char *dataset, const char *pipeline,
                             const char *stream, struct kl_err *err)
{
    static const char *const tables[] = {"_kinesis_checkpoints", "_kinesis_runs"};
    struct lite *l = impl;
    struct kl_dest_ds *d;
    int rc = lite_open_dataset(l, dataset, &d, err);

    if (rc != KL_OK)
        return rc;
    rc = lite_exec(l, "BEGIN IMMEDIATE", "begin", err);
    for (size_t i = 0; rc == KL_OK && i < 2; i++) {
        sqlite3_stmt *st = NULL;
        rc = prep_on(l, "DELETE FROM", d->name, tables[i],
                     " WHERE pipeline_name = ?1 AND stream_name = ?2", &st, "delete state", err);
        if (rc == KL_OK)
            rc = bind_text(l, st, 1, pipeline, err);
        if (rc == KL_OK)
            rc = bind_text(l, st, 2, stream, err);
        if (rc == KL_OK)
            rc = step_done(l, st, "delete state", err);
        sqlite3_finalize(st);
    }
    if (rc == KL_OK)
        rc = lite_exec(l, "COMMIT", "commit", err);
    if (rc != KL_OK)
        lite_rollback(l);
    return rc;
}

/* ---- write_chunk ---- */

static bool crash_here(struct lite *l, enum kl_dest_step step, struct kl_err *err)
{
    if (l->opt.crash_after == NULL || !l->opt.crash_after(l->opt.crash_ctx, step))
        return false;
    lite_drop(l);
    kl_err_set(err, KL_ERR_UNAVAILABLE, "sqlite: simulated crash after step %s",
               kl_dest_step_name(step));
    return true;
}

#define STEP(l, s, err)                                                                            \
    do {                                                                                           \
        if (crash_here((l), (s), (err))) {                                                         \
            rc = KL_ERR_UNAVAILABLE;                                                               \
            goto cleanup;                                                                          \
        }                                                                                          \
    } while (0)

static int write_checkpoints(struct lite *l, struct kl_dest_ds *d, const struct kl_chunk_write *w,
                             struct kl_err *err)
{
    sqlite3_stmt *st = NULL;
    char now[KL_FMT_MAX];
    int rc;

    if (w->n_checkpoints == 0)
        return KL_OK;
    now_iso(l, now);
    rc = prep_on(l, "INSERT INTO", d->name, "_kinesis_checkpoints",
                 " AS c (pipeline_name, stream_name, shard_id, sequence, sub_sequence,"
                 " fencing_token, load_id, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
                 " ON CONFLICT (pipeline_name, stream_name, shard_id) DO UPDATE SET"
                 " sequence = excluded.sequence, sub_sequence = excluded.sub_sequence,"
                 " fencing_token = excluded.fencing_token, load_id = excluded.load_id,"
                 " updated_at = excluded.updated_at"
                 " WHERE c.fencing_token <= excluded.fencing_token RETURNING 1",
                 &st, "write checkpoint", err);
    for (size_t i = 0; rc == KL_OK && i < w->n_checkpoints; i++) {
        const struct kl_checkpoint *cp = &w->checkpoints[i];
        int src;

        if (cp->shard_id[0] == '\0' || cp->sequence[0] == '\0') {
            rc = kl_err_set(err, KL_ERR_INVALID, "checkpoint without shard or sequence");
            break;
        }
        sqlite3_reset(st);
        rc = bind_text(l, st, 1, w->pipeline_name, err);
        if (rc == KL_OK)
            rc = bind_text(l, st, 2, w->stream_name, err);
        if (rc == KL_OK)
            rc = bind_text(l, st, 3, cp->shard_id, err);
        if (rc == KL_OK)
            rc = bind_text(l, st, 4, cp->sequence, err);
        if (rc == KL_OK)
            rc = cp->sub_sequence >= 0 ? bind_i64(l, st, 5, cp->sub_sequence, err)
                                       : bind_text(l, st, 5, NULL, err);
        if (rc == KL_OK)
            rc = bind_i64(l, st, 6, cp->fencing_token, err);
        if (rc == KL_OK)
            rc = bind_text(l, st, 7, w->load_id, err);
        if (rc == KL_OK)
            rc = bind_text(l, st, 8, now, err);
        if (rc != KL_OK)
            break;
        src = sqlite3_step(st);
        if (src == SQLITE_DONE) {
            rc = kl_err_set(err, KL_ERR_CONFLICT,
                            "checkpoint of shard %s refused: fencing token %lld is older than "
                            "the stored one",
                            cp->shard_id, (long long)cp->fencing_token);
        } else if (src != SQLITE_ROW) {
            rc = lite_fail(l, src, "write checkpoint", err);
        } else {
            rc = step_done(l, st, "write checkpoint", err);
        }
    }
    sqlite3_finalize(st);
    return rc;
}

static int apply_ddl(struct lite *l, struct kl_dest_ds *d, const struct kl_schema *s,
                     struct kl_chunk_result *res, struct kl_err *err)
{
    struct kl_sql_stmts ddl;
    struct kl_sql_ddl_stats st = {0, 0};
    int rc = lite_load_catalog(l, d, err);

    kl_sql_stmts_init(&ddl);
    if (rc == KL_OK)
        rc = kl_sql_plan_ddl(KL_SQL_SQLITE, d->name, s, &d->cat, l->opt.create_indexes, &ddl, &st,
                             err);
    for (size_t i = 0; rc == KL_OK && i < ddl.n; i++)
        rc = lite_exec(l, ddl.items[i], "schema change", err);
    if (rc == KL_OK) {
        res->tables_created += st.tables_created;
        res->columns_added += st.columns_added;
    }
    kl_sql_stmts_free(&ddl);
    return rc;
}

static int store_version(struct lite *l, struct kl_dest_ds *d, const struct kl_chunk_write *w,
                         struct kl_err *err)
{
    const struct kl_schema *s = w->batch->schema;
    cJSON *doc = cJSON_Parse(w->schema_json);
    const cJSON *ev = cJSON_GetObjectItemCaseSensitive(doc, "engine_version");
    int64_t engine = cJSON_IsNumber(ev) ? (int64_t)ev->valuedouble : 10;
    char now[KL_FMT_MAX];
    sqlite3_stmt *st = NULL;
    struct kl_buf tail;
    int rc;

    cJSON_Delete(doc);
    now_iso(l, now);
    kl_buf_init(&tail, 4096);
    rc = kl_buf_append_str(&tail,
                           " (\"version\", engine_version, inserted_at, schema_name,"
                           " version_hash, \"schema\") SELECT ?1, ?2, ?3, ?4, ?5, ?6"
                           " WHERE NOT EXISTS (SELECT 1 FROM ",
                           err);
    if (rc == KL_OK)
        rc = kl_sql_table_ref(&tail, KL_SQL_SQLITE, d->name, "_dlt_version", err);
    if (rc == KL_OK)
        rc = kl_buf_append_str(&tail, " WHERE schema_name = ?4 AND version_hash = ?5)", err);
    if (rc == KL_OK)
        rc = prep_on(l, "INSERT INTO", d->name, "_dlt_version", tail.data, &st,
                     "store schema version", err);
    if (rc == KL_OK)
        rc = bind_i64(l, st, 1, s->version, err);
    if (rc == KL_OK)
        rc = bind_i64(l, st, 2, engine, err);
    if (rc == KL_OK)
        rc = bind_text(l, st, 3, now, err);
    if (rc == KL_OK)
        rc = bind_text(l, st, 4, s->name, err);
    if (rc == KL_OK)
        rc = bind_text(l, st, 5, w->schema_hash, err);
    if (rc == KL_OK)
        rc = bind_text(l, st, 6, w->schema_json, err);
    if (rc == KL_OK)
        rc = step_done(l, st, "store schema version", err);
    sqlite3_finalize(st);
    kl_buf_free(&tail);
    return rc;
}

static int truncate_family(struct lite *l, struct kl_dest_ds *d, const char *load_id,
                           const char *root, const struct kl_schema *s, bool *done,
                           struct kl_err *err)
{
    sqlite3_stmt *st = NULL;
    char now[KL_FMT_MAX];
    int src, rc;

    *done = false;
    now_iso(l, now);
    rc = prep_on(l, "INSERT INTO", d->name, "_kinesis_truncations",
                 " (load_id, table_name, truncated_at) VALUES (?1, ?2, ?3)"
                 " ON CONFLICT DO NOTHING RETURNING 1",
                 &st, "replace marker", err);
    if (rc == KL_OK)
        rc = bind_text(l, st, 1, load_id, err);
    if (rc == KL_OK)
        rc = bind_text(l, st, 2, root, err);
    if (rc == KL_OK)
        rc = bind_text(l, st, 3, now, err);
    if (rc == KL_OK) {
        src = sqlite3_step(st);
        if (src == SQLITE_ROW) {
            *done = true;
            rc = step_done(l, st, "replace marker", err);
        } else if (src != SQLITE_DONE) {
            rc = lite_fail(l, src, "replace marker", err);
        }
    }
    sqlite3_finalize(st);
    for (size_t i = 0; rc == KL_OK && *done && i < d->cat.n_tables; i++) {
        const char *name = d->cat.tables[i].name;
        bool member = s != NULL ? kl_dest_in_family(s, kl_dest_table_named(s, name), root)
                                : kl_dest_in_family_by_name(&d->cat.tables[i], root);
        if (!member)
            continue;
        kl_buf_reset(&l->sql);
        rc = kl_buf_append_str(&l->sql, "DELETE FROM ", err);
        if (rc == KL_OK)
            rc = kl_sql_table_ref(&l->sql, KL_SQL_SQLITE, d->name, name, err);
        if (rc == KL_OK)
            rc = lite_exec(l, l->sql.data, "truncate", err);
    }
    if (rc != KL_OK)
        *done = false;
    return rc;
}

static int merge_delete(struct lite *l, struct kl_dest_ds *d, const struct kl_schema *s,
                        const struct kl_table_rows *tr, struct kl_err *err)
{
    const struct kl_table *root = &s->tables[tr->table];
    struct kl_buf ids;
    int max_depth = 0;
    int rc;

    kl_buf_init(&ids, SQL_MAX);
    rc = kl_dest_msg_ids(root, tr, true, &ids, err);
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
            const struct kl_sql_cat_table *ct;
            sqlite3_stmt *st = NULL;

            if (!kl_dest_in_family(s, t, root->name) || kl_dest_table_depth(s, t) != depth)
                continue;
            ct = kl_sql_catalog_find(&d->cat, t->name);
            if (ct == NULL || (depth > 0 && kl_sql_cat_table_find(ct, "_dlt_parent_id") == NULL))
                continue;
            chain[0] = t;
            for (int k = 1; k <= depth; k++)
                chain[k] = kl_dest_table_named(s, chain[k - 1]->parent);
            kl_buf_reset(&l->sql);
            rc = kl_buf_append_str(&l->sql, "DELETE FROM ", err);
            if (rc == KL_OK)
                rc = kl_sql_table_ref(&l->sql, KL_SQL_SQLITE, d->name, t->name, err);
            for (int k = 1; rc == KL_OK && k <= depth; k++) {
                rc = kl_buf_append_str(
                    &l->sql, " WHERE \"_dlt_parent_id\" IN (SELECT \"_dlt_id\" FROM ", err);
                if (rc == KL_OK)
                    rc = kl_sql_table_ref(&l->sql, KL_SQL_SQLITE, d->name, chain[k]->name, err);
            }
            if (rc == KL_OK)
                rc = kl_buf_append_str(
                    &l->sql, " WHERE \"_kinesis_msg_id\" IN (SELECT value FROM json_each(?1))",
                    err);
            for (int k = 1; rc == KL_OK && k <= depth; k++)
                rc = kl_buf_append_str(&l->sql, ")", err);
            if (rc == KL_OK)
                rc = lite_prepare(l, l->sql.data, &st, "merge delete", err);
            if (rc == KL_OK)
                rc = bind_text(l, st, 1, ids.data, err);
            if (rc == KL_OK)
                rc = step_done(l, st, "merge delete", err);
            sqlite3_finalize(st);
        }
    }
    kl_buf_free(&ids);
    return rc;
}

/* The cached INSERT for (table, n columns), prepared on first use. */
static int insert_stmt(struct lite *l, struct kl_dest_ds *d, const struct kl_table *t, size_t n,
                       sqlite3_stmt **out, struct kl_err *err)
{
    char key[sizeof l->ins[0].key];
    int rc;

    snprintf(key, sizeof key, "%s.%s#%zu", d->name, t->name, n);
    for (size_t i = 0; i < l->n_ins; i++) {
        if (strcmp(l->ins[i].key, key) == 0) {
            *out = l->ins[i].st;
            return KL_OK;
        }
    }
    if (l->n_ins == l->cap_ins) {
        size_t cap = l->cap_ins ? l->cap_ins * 2 : 16;
        struct lite_insert *ni = realloc(l->ins, cap * sizeof *ni);
        if (ni == NULL)
            return kl_err_set(err, KL_ERR_NOMEM, "statement cache");
        l->ins = ni;
        l->cap_ins = cap;
    }
    kl_buf_reset(&l->sql);
    rc = kl_buf_append_str(&l->sql, "INSERT INTO ", err);
    if (rc == KL_OK)
        rc = kl_sql_table_ref(&l->sql, KL_SQL_SQLITE, d->name, t->name, err);
    if (rc == KL_OK)
        rc = kl_buf_append_str(&l->sql, " (", err);
    for (size_t i = 0; rc == KL_OK && i < n; i++) {
        if (i > 0)
            rc = kl_buf_append_str(&l->sql, ", ", err);
        if (rc == KL_OK)
            rc = kl_sql_quote_ident(&l->sql, t->columns[i].name, err);
    }
    if (rc == KL_OK)
        rc = kl_buf_append_str(&l->sql, ") VALUES (", err);
    for (size_t i = 0; rc == KL_OK && i < n; i++)
        rc = kl_buf_printf(&l->sql, err, i > 0 ? ", ?%zu" : "?%zu", i + 1);
    if (rc == KL_OK)
        rc = kl_buf_append_str(&l->sql, ")", err);
    if (rc == KL_OK)
        rc = lite_prepare(l, l->sql.data, out, "insert", err);
    if (rc != KL_OK)
        return rc;
    snprintf(l->ins[l->n_ins].key, sizeof l->ins[l->n_ins].key, "%s", key);
    l->ins[l->n_ins++].st = *out;
    return KL_OK;
}

static int bind_cell(struct lite *l, sqlite3_stmt *st, int i, const struct kl_value *v,
                     struct kl_err *err)
{
    char ts[KL_FMT_MAX];
    int src;

    switch (v->type) {
    case KL_TYPE_NULL:
        src = sqlite3_bind_null(st, i);
        break;
    case KL_TYPE_BIGINT:
        src = sqlite3_bind_int64(st, i, v->v.i);
        break;
    case KL_TYPE_DOUBLE:
        src = sqlite3_bind_double(st, i, v->v.d);
        break;
    case KL_TYPE_BOOL:
        src = sqlite3_bind_int(st, i, v->v.b ? 1 : 0);
        break;
    case KL_TYPE_TIMESTAMP: {
        size_t n = kl_fmt_timestamp(ts, v->v.us, KL_TS_ISO);
        src = sqlite3_bind_text(st, i, ts, (int)n, SQLITE_TRANSIENT);
        break;
    }
    case KL_TYPE_TEXT:
    case KL_TYPE_DECIMAL:
    case KL_TYPE_JSON:
        /* Same rule as Postgres: text never carries NUL. */
        if (memchr(v->v.s.ptr, '\0', v->v.s.len) != NULL)
            return kl_err_set(err, KL_ERR_INVALID, "column %d: text holds a NUL byte", i - 1);
        if (v->v.s.len > (size_t)0x7fffffff)
            return kl_err_set(err, KL_ERR_LIMIT, "column %d: text too long", i - 1);
        src = sqlite3_bind_text(st, i, v->v.s.len > 0 ? v->v.s.ptr : "", (int)v->v.s.len,
                                SQLITE_STATIC);
        break;
    case KL_TYPE_BINARY:
        if (v->v.s.len > (size_t)0x7fffffff)
            return kl_err_set(err, KL_ERR_LIMIT, "column %d: bytes too long", i - 1);
        src = sqlite3_bind_blob(st, i, v->v.s.len > 0 ? v->v.s.ptr : "", (int)v->v.s.len,
                                SQLITE_STATIC);
        break;
    default:
        return kl_err_set(err, KL_ERR_INTERNAL, "column %d: unknown cell type %d", i - 1,
                          (int)v->type);
    }
    return src == SQLITE_OK ? KL_OK : lite_fail(l, src, "bind", err);
}

static int insert_rows(struct lite *l, struct kl_dest_ds *d, const struct kl_schema *s,
                       const struct kl_table_rows *tr, bool dedup, size_t *written,
                       struct kl_err *err)
{
    const struct kl_table *t = &s->tables[tr->table];
    struct kl_sql_idset ids = {NULL, 0};
    int id_col = dedup ? kl_dest_column_index(t, tr->n_columns, "_dlt_id") : -1;
    sqlite3_stmt *st = NULL;
    size_t n = 0;
    int rc;

    if (tr->n_rows == 0 || tr->n_columns == 0)
        return KL_OK;
    if (id_col >= 0 && kl_sql_idset_init(&ids, tr->n_rows, err) != KL_OK)
        return KL_ERR_NOMEM;
    rc = insert_stmt(l, d, t, tr->n_columns, &st, err);
    for (size_t r = 0; rc == KL_OK && r < tr->n_rows; r++) {
        const struct kl_value *row = &tr->cells[r * tr->n_columns];
        int src;
        if (id_col >= 0 && row[id_col].type == KL_TYPE_TEXT &&
            !kl_sql_idset_add(&ids, &row[id_col]))
            continue;
        for (size_t c = 0; rc == KL_OK && c < tr->n_columns; c++)
            rc = bind_cell(l, st, (int)c + 1, &row[c], err);
        if (rc != KL_OK) {
            kl_err_prefix(err, "table %s row %zu", t->name, r);
            break;
        }
        src = sqlite3_step(st);
        if (src != SQLITE_DONE)
            rc = lite_fail(l, src, "insert", err);
        sqlite3_reset(st);
        n++;
    }
    if (st != NULL)
        sqlite3_clear_bindings(st);
    kl_sql_idset_free(&ids);
    if (rc == KL_OK)
        *written += n;
    return rc;
}

static int insert_dead_letters(struct lite *l, struct kl_dest_ds *d, const struct kl_chunk_write *w,
                               struct kl_err *err)
{
    const struct kl_row_batch *b = w->batch;
    sqlite3_stmt *st = NULL;
    char now[KL_FMT_MAX], arrival[KL_FMT_MAX];
    int rc;

    now_iso(l, now);
    rc =
        prep_on(l, "INSERT INTO", d->name, "_kinesis_dead_letters",
                " (load_id, pipeline_name, stream_name, shard_id, sequence, sub_sequence, data,"
                " error, arrival_at, inserted_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                &st, "dead letters", err);
    for (size_t i = 0; rc == KL_OK && i < b->n_dead_letters; i++) {
        const struct kl_dead_letter *dl = &b->dead_letters[i];
        int src;
        sqlite3_reset(st);
        rc = bind_text(l, st, 1, w->load_id, err);
        if (rc == KL_OK)
            rc = bind_text(l, st, 2, w->pipeline_name, err);
        if (rc == KL_OK)
            rc = bind_text(l, st, 3, w->stream_name, err);
        if (rc == KL_OK)
            rc = bind_text(l, st, 4, dl->shard_id != NULL ? dl->shard_id : "", err);
        if (rc == KL_OK)
            rc = bind_text(l, st, 5, dl->sequence != NULL ? dl->sequence : "", err);
        if (rc == KL_OK)
            rc = dl->sub_sequence >= 0 ? bind_i64(l, st, 6, dl->sub_sequence, err)
                                       : bind_text(l, st, 6, NULL, err);
        if (rc == KL_OK) {
            src = dl->data != NULL && dl->data_len <= (size_t)0x7fffffff
                      ? sqlite3_bind_blob(st, 7, dl->data_len > 0 ? (const void *)dl->data : "",
                                          (int)dl->data_len, SQLITE_STATIC)
                      : sqlite3_bind_null(st, 7);
            if (src != SQLITE_OK)
                rc = lite_fail(l, src, "bind", err);
        }
        if (rc == KL_OK)
            rc = bind_text(l, st, 8, dl->error != NULL ? dl->error : "", err);
        kl_fmt_timestamp(arrival, dl->arrival_ms * 1000, KL_TS_ISO);
        if (rc == KL_OK)
            rc = bind_text(l, st, 9, arrival, err);
        if (rc == KL_OK)
            rc = bind_text(l, st, 10, now, err);
        if (rc == KL_OK)
            rc = step_done(l, st, "dead letters", err);
    }
    sqlite3_finalize(st);
    return rc;
}

static int lite_write_chunk(void *impl, const char *dataset, const struct kl_chunk_write *w,
                            struct kl_chunk_result *res_out, struct kl_err *err)
{
    struct lite *l = impl;
    struct kl_dest_ds *d = NULL;
    const struct kl_row_batch *batch = w->batch;
    const struct kl_schema *s = batch != NULL ? batch->schema : NULL;
    const struct kl_table_rows **order = NULL;
    struct kl_chunk_result res;
    struct pending p;
    struct kl_sql_stmts idx_sql;
    bool in_tx = false;
    int rc;

    memset(&res, 0, sizeof res);
    memset(&p, 0, sizeof p);
    kl_sql_stmts_init(&idx_sql);
    if (w->load_id == NULL || w->pipeline_name == NULL || w->stream_name == NULL)
        return kl_err_set(err, KL_ERR_INVALID, "chunk without load id, pipeline or stream");
    if (batch != NULL && s == NULL)
        return kl_err_set(err, KL_ERR_INVALID, "row batch without a schema");
    if (w->n_checkpoints > 0 && w->checkpoints == NULL)
        return kl_err_set(err, KL_ERR_INVALID, "checkpoint count without checkpoints");
    rc = kl_dest_table_order(batch, &order, err);
    if (rc != KL_OK)
        return rc;
    rc = lite_open_dataset(l, dataset, &d, err);
    if (rc != KL_OK)
        goto cleanup;

    /* The write lock for the whole chunk: DDL cannot collide. */
    rc = lite_exec(l, "BEGIN IMMEDIATE", "begin", err);
    if (rc != KL_OK)
        goto cleanup;
    in_tx = true;
    STEP(l, KL_DEST_STEP_BEGIN, err);

    rc = write_checkpoints(l, d, w, err);
    if (rc != KL_OK)
        goto cleanup;
    STEP(l, KL_DEST_STEP_CHECKPOINT, err);

    if (s != NULL && (d->checked_schema != s || d->checked_version != s->version)) {
        /* Another connection may have changed the file: read it again now
         * that nobody else can. */
        rc = apply_ddl(l, d, s, &res, err);
        if (rc != KL_OK)
            goto cleanup;
        p.schema_checked = true;
        p.catalog_from_schema = true;
    }
    if (batch != NULL && w->disposition == KL_WRITE_MERGE) {
        rc = kl_dest_plan_merge_indexes(KL_SQL_SQLITE, d, batch, &idx_sql, &p.indexes, NULL, err);
        for (size_t i = 0; rc == KL_OK && i < idx_sql.n; i++)
            rc = lite_exec(l, idx_sql.items[i], "merge index", err);
        if (rc != KL_OK)
            goto cleanup;
    }
    STEP(l, KL_DEST_STEP_DDL, err);

    if (s != NULL && w->schema_json != NULL && w->schema_hash != NULL &&
        strcmp(d->stored_hash, w->schema_hash) != 0) {
        rc = store_version(l, d, w, err);
        if (rc != KL_OK)
            goto cleanup;
        p.hash_stored = true;
    }
    STEP(l, KL_DEST_STEP_VERSION, err);

    if (batch != NULL && w->disposition == KL_WRITE_REPLACE) {
        for (size_t i = 0; i < batch->n_tables; i++) {
            const struct kl_table *t = &s->tables[order[i]->table];
            bool done = false;
            if (t->parent[0] != '\0' || (strcmp(d->truncated_load, w->load_id) == 0 &&
                                         kl_sql_stmts_has(&d->truncated, t->name)))
                continue;
            rc = truncate_family(l, d, w->load_id, t->name, s, &done, err);
            if (rc == KL_OK)
                rc = kl_sql_stmts_add(&p.truncated, t->name, err);
            if (rc != KL_OK)
                goto cleanup;
            res.truncated = res.truncated || done;
        }
    }
    STEP(l, KL_DEST_STEP_REPLACE, err);

    if (batch != NULL && w->disposition == KL_WRITE_MERGE) {
        for (size_t i = 0; i < batch->n_tables; i++) {
            if (s->tables[order[i]->table].parent[0] != '\0')
                continue;
            rc = merge_delete(l, d, s, order[i], err);
            if (rc != KL_OK)
                goto cleanup;
        }
    }
    STEP(l, KL_DEST_STEP_MERGE_DELETE, err);

    for (size_t i = 0; batch != NULL && i < batch->n_tables; i++) {
        rc = insert_rows(l, d, s, order[i], w->disposition == KL_WRITE_MERGE, &res.rows, err);
        if (rc != KL_OK)
            goto cleanup;
        STEP(l, KL_DEST_STEP_ROWS, err);
    }

    if (batch != NULL && batch->n_dead_letters > 0) {
        rc = insert_dead_letters(l, d, w, err);
        if (rc != KL_OK)
            goto cleanup;
        res.dead_letters = batch->n_dead_letters;
    }
    STEP(l, KL_DEST_STEP_DEAD_LETTERS, err);

    rc = lite_exec(l, "COMMIT", "commit", err);
    if (rc != KL_OK)
        goto cleanup;
    in_tx = false;

    if (p.catalog_from_schema)
        kl_sql_catalog_add_schema(&d->cat, KL_SQL_SQLITE, s, NULL);
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
    if (crash_here(l, KL_DEST_STEP_COMMIT, err)) {
        rc = KL_ERR_UNAVAILABLE;
        goto cleanup;
    }
    if (res_out != NULL)
        *res_out = res;

cleanup:
    if (rc != KL_OK && in_tx) {
        lite_rollback(l);
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

static int lite_complete_load(void *impl, const char *dataset, const struct kl_load_complete *c,
                              struct kl_err *err)
{
    struct lite *l = impl;
    struct kl_dest_ds *d;
    sqlite3_stmt *st = NULL;
    struct kl_dest_stream_row *rows = NULL;
    size_t n_rows = 0, n_streams = 0;
    struct kl_state_stream *streams = NULL;
    struct kl_checkpoint *cps = NULL;
    struct kl_state_doc doc;
    char now[KL_FMT_MAX], hash[128] = "";
    int64_t state_version = 1;
    bool in_tx = false;
    int src, rc;

    memset(&doc, 0, sizeof doc);
    if (c->load_id == NULL || c->schema_name == NULL || c->pipeline_name == NULL ||
        c->stream_name == NULL)
        return kl_err_set(err, KL_ERR_INVALID,
                          "complete_load without load id, schema, pipeline or stream");
    rc = lite_open_dataset(l, dataset, &d, err);
    if (rc != KL_OK)
        return rc;
    now_iso(l, now);
    rc = lite_exec(l, "BEGIN IMMEDIATE", "begin", err);
    if (rc != KL_OK)
        return rc;
    in_tx = true;

    rc = prep_on(l, "SELECT 1 FROM", d->name, "_dlt_loads", " WHERE load_id = ?1", &st,
                 "check load", err);
    if (rc == KL_OK)
        rc = bind_text(l, st, 1, c->load_id, err);
    if (rc == KL_OK) {
        src = sqlite3_step(st);
        if (src == SQLITE_ROW) { /* completed before */
            sqlite3_finalize(st);
            st = NULL;
            rc = lite_exec(l, "COMMIT", "commit", err);
            if (rc == KL_OK)
                in_tx = false;
            goto cleanup;
        }
        if (src != SQLITE_DONE)
            rc = lite_fail(l, src, "check load", err);
    }
    sqlite3_finalize(st);
    st = NULL;
    if (rc != KL_OK)
        goto cleanup;

    if (c->disposition == KL_WRITE_REPLACE && c->root_table != NULL) {
        bool done = false;
        rc = kl_dest_validate_table(c->root_table, err);
        if (rc == KL_OK && kl_sql_catalog_find(&d->cat, c->root_table) != NULL)
            rc = truncate_family(l, d, c->load_id, c->root_table, NULL, &done, err);
        if (rc != KL_OK)
            goto cleanup;
    }

    if (c->next_run_ms >= 0) {
        char ts[KL_FMT_MAX];
        kl_fmt_timestamp(ts, c->next_run_ms * 1000, KL_TS_ISO);
        rc = prep_on(l, "INSERT INTO", d->name, "_kinesis_runs",
                     " (pipeline_name, stream_name, last_run_at, load_id, updated_at)"
                     " VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (pipeline_name, stream_name)"
                     " DO UPDATE SET last_run_at = excluded.last_run_at,"
                     " load_id = excluded.load_id, updated_at = excluded.updated_at",
                     &st, "write run time", err);
        if (rc == KL_OK)
            rc = bind_text(l, st, 1, c->pipeline_name, err);
        if (rc == KL_OK)
            rc = bind_text(l, st, 2, c->stream_name, err);
        if (rc == KL_OK)
            rc = bind_text(l, st, 3, ts, err);
        if (rc == KL_OK)
            rc = bind_text(l, st, 4, c->load_id, err);
        if (rc == KL_OK)
            rc = bind_text(l, st, 5, now, err);
        if (rc == KL_OK)
            rc = step_done(l, st, "write run time", err);
        sqlite3_finalize(st);
        st = NULL;
        if (rc != KL_OK)
            goto cleanup;
    }

    rc = read_stream_rows(l, d, c->pipeline_name, NULL, true, &rows, &n_rows, err);
    if (rc == KL_OK)
        rc = kl_dest_group_streams(rows, n_rows, true, &streams, &n_streams, &cps, err);
    if (rc == KL_OK)
        rc = prep_on(l, "SELECT coalesce(max(\"version\"), 0) + 1 FROM", d->name,
                     "_dlt_pipeline_state", " WHERE pipeline_name = ?1", &st, "state version", err);
    if (rc == KL_OK)
        rc = bind_text(l, st, 1, c->pipeline_name, err);
    if (rc == KL_OK) {
        src = sqlite3_step(st);
        if (src == SQLITE_ROW)
            state_version = sqlite3_column_int64(st, 0);
        else
            rc = lite_fail(l, src, "state version", err);
    }
    sqlite3_finalize(st);
    st = NULL;
    if (rc == KL_OK) {
        struct kl_state_doc_in in;
        memset(&in, 0, sizeof in);
        in.pipeline_name = c->pipeline_name;
        in.dataset_name = d->name;
        in.schema_name = c->schema_name;
        in.destination_type = DEST_TYPE;
        in.version = state_version;
        in.streams = streams;
        in.n_streams = n_streams;
        rc = kl_state_doc_build(&in, &doc, err);
    }
    if (rc == KL_OK)
        rc = prep_on(l, "INSERT INTO", d->name, "_dlt_pipeline_state",
                     " (\"version\", engine_version, pipeline_name, state, created_at,"
                     " version_hash, _dlt_load_id, _dlt_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7,"
                     " ?8)",
                     &st, "write pipeline state", err);
    if (rc == KL_OK)
        rc = bind_i64(l, st, 1, state_version, err);
    if (rc == KL_OK)
        rc = bind_i64(l, st, 2, KL_STATE_ENGINE_VERSION, err);
    if (rc == KL_OK)
        rc = bind_text(l, st, 3, c->pipeline_name, err);
    if (rc == KL_OK)
        rc = bind_text(l, st, 4, doc.state, err);
    if (rc == KL_OK)
        rc = bind_text(l, st, 5, now, err);
    if (rc == KL_OK)
        rc = bind_text(l, st, 6, doc.version_hash, err);
    if (rc == KL_OK)
        rc = bind_text(l, st, 7, c->load_id, err);
    if (rc == KL_OK)
        rc = bind_text(l, st, 8, doc.row_id, err);
    if (rc == KL_OK)
        rc = step_done(l, st, "write pipeline state", err);
    sqlite3_finalize(st);
    st = NULL;
    if (rc != KL_OK)
        goto cleanup;

    if (c->schema_hash != NULL) {
        snprintf(hash, sizeof hash, "%s", c->schema_hash);
    } else {
        rc = prep_on(l, "SELECT version_hash FROM", d->name, "_dlt_version",
                     " WHERE schema_name = ?1 ORDER BY \"version\" DESC, inserted_at DESC LIMIT 1",
                     &st, "read schema hash", err);
        if (rc == KL_OK)
            rc = bind_text(l, st, 1, c->schema_name, err);
        if (rc == KL_OK) {
            src = sqlite3_step(st);
            if (src == SQLITE_ROW && sqlite3_column_text(st, 0) != NULL)
                snprintf(hash, sizeof hash, "%s", (const char *)sqlite3_column_text(st, 0));
            else if (src != SQLITE_ROW && src != SQLITE_DONE)
                rc = lite_fail(l, src, "read schema hash", err);
        }
        sqlite3_finalize(st);
        st = NULL;
        if (rc != KL_OK)
            goto cleanup;
    }
    rc = prep_on(l, "INSERT INTO", d->name, "_dlt_loads",
                 " (load_id, schema_name, status, inserted_at, schema_version_hash)"
                 " VALUES (?1, ?2, 0, ?3, ?4)",
                 &st, "write load", err);
    if (rc == KL_OK)
        rc = bind_text(l, st, 1, c->load_id, err);
    if (rc == KL_OK)
        rc = bind_text(l, st, 2, c->schema_name, err);
    if (rc == KL_OK)
        rc = bind_text(l, st, 3, now, err);
    if (rc == KL_OK)
        rc = bind_text(l, st, 4, hash[0] != '\0' ? hash : NULL, err);
    if (rc == KL_OK)
        rc = step_done(l, st, "write load", err);
    sqlite3_finalize(st);
    st = NULL;
    if (rc == KL_OK)
        rc = lite_exec(l, "COMMIT", "commit", err);
    if (rc == KL_OK)
        in_tx = false;

cleanup:
    sqlite3_finalize(st);
    if (rc != KL_OK && in_tx)
        lite_rollback(l);
    kl_state_doc_free(&doc);
    free(streams);
    free(cps);
    free(rows);
    return rc;
}

/* ---- lifecycle ---- */

static void lite_destroy(void *impl)
{
    struct lite *l = impl;

    if (l == NULL)
        return;
    finalize_inserts(l);
    free(l->ins);
    if (l->db != NULL)
        sqlite3_close(l->db);
    kl_dest_ds_list_free(&l->ds);
    kl_buf_free(&l->sql);
    free(l->path);
    free(l);
}

static const struct kl_dest_ops LITE_OPS = {
    .name = lite_name,
    .ping = lite_ping,
    .prepare = lite_prepare_op,
    .load_schema = lite_load_schema,
    .read_state = lite_read_state,
    .delete_state = lite_delete_state,
    .write_chunk = lite_write_chunk,
    .complete_load = lite_complete_load,
    .destroy = lite_destroy,
};

struct kl_dest *kl_dest_sqlite_create(const char *path, const struct kl_dest_options *opts,
                                      struct kl_err *err)
{
    struct kl_dest *dest = NULL;
    struct lite *l = NULL;

    if (path == NULL || path[0] == '\0') {
        kl_err_set(err, KL_ERR_INVALID, "sqlite: no database path");
        return NULL;
    }
    if (sqlite3_threadsafe() == 0) {
        kl_err_set(err, KL_ERR_INTERNAL, "sqlite: the library is built without thread support");
        return NULL;
    }
    l = calloc(1, sizeof *l);
    dest = calloc(1, sizeof *dest);
    if (l == NULL || dest == NULL || (l->path = strdup(path)) == NULL) {
        kl_err_set(err, KL_ERR_NOMEM, "sqlite destination");
        goto fail;
    }
    if (opts != NULL)
        l->opt = *opts;
    else
        kl_dest_options_init(&l->opt);
    if (l->opt.busy_timeout_ms <= 0)
        l->opt.busy_timeout_ms = 30000;
    kl_buf_init(&l->sql, SQL_MAX);
    if (lite_open(l, err) != KL_OK)
        goto fail;
    dest->ops = &LITE_OPS;
    dest->impl = l;
    return dest;
fail:
    lite_destroy(l);
    free(dest);
    return NULL;
}

struct lite_factory {
    char *path;
    struct kl_dest_options opt;
};

static int litef_open(void *impl, struct kl_dest **out, struct kl_err *err)
{
    struct lite_factory *f = impl;
    struct kl_dest *d = kl_dest_sqlite_create(f->path, &f->opt, err);
    if (d == NULL)
        return err != NULL ? (int)err->code : KL_ERR_IO;
    *out = d;
    return KL_OK;
}

static const char *litef_name(void *impl)
{
    (void)impl;
    return DEST_NAME;
}

static void litef_destroy(void *impl)
{
    struct lite_factory *f = impl;
    if (f == NULL)
        return;
    free(f->path);
    free(f);
}

static const struct kl_dest_factory_ops LITE_FACTORY_OPS = {
    .open = litef_open,
    .name = litef_name,
    .destroy = litef_destroy,
};

struct kl_dest_factory *kl_dest_sqlite_factory_create(const char *path,
                                                      const struct kl_dest_options *opts,
                                                      struct kl_err *err)
{
    struct kl_dest_factory *fac = calloc(1, sizeof *fac);
    struct lite_factory *f = calloc(1, sizeof *f);

    if (path == NULL || path[0] == '\0') {
        kl_err_set(err, KL_ERR_INVALID, "sqlite: no database path");
        goto fail;
    }
    if (fac == NULL || f == NULL || (f->path = strdup(path)) == NULL) {
        kl_err_set(err, KL_ERR_NOMEM, "sqlite factory");
        goto fail;
    }
    if (opts != NULL)
        f->opt = *opts;
    else
        kl_dest_options_init(&f->opt);
    fac->ops = &LITE_FACTORY_OPS;
    fac->impl = f;
    return fac;
fail:
    litef_destroy(f);
    free(fac);
    return NULL;
}
