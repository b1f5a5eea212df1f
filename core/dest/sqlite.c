/*
 * The SQLite destination (see sqlite.h and dest.h): the primitives of
 * backend.h over the sqlite3 API, with the same tables and semantics as
 * Postgres: BEGIN IMMEDIATE takes the database write lock for a whole
 * transaction (the dataset lock), prepared INSERTs stand in for COPY, and
 * rows are stamped with the options' clock. One connection per object.
 * Not here: the order of the steps (chunk.c, load.c), SQL text shared with
 * Postgres (sql.c).
 */
#include "core/dest/sqlite.h"
#include "core/dest/backend.h"
#include "core/dest/common.h"
#include "core/dest/format.h"
#include "core/dest/sql.h"
#include "core/dest/state.h"
#include "core/normalize/rows.h"
#include "core/normalize/schema.h"
#include "core/util/buf.h"
#include "core/util/clock.h"
#include "core/util/err.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SQL_MAX ((size_t)64 << 20)

/* A prepared INSERT for one table and column count. */
struct lite_insert {
    char key[2 * KL_IDENT_MAX + 16];
    sqlite3_stmt *st;
};

struct lite {
    struct kl_dest_conn base; /* base.impl is this object */
    sqlite3 *db;
    char *path;
    struct lite_insert *ins;
    size_t n_ins;
    size_t cap_ins;
    struct kl_buf sql;
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
        kl_dest_ds_list_invalidate(&l->base.ds);
    return kl_err_set(err, code, "sqlite: %s: %s (%d)", what,
                      l->db != NULL ? sqlite3_errmsg(l->db) : sqlite3_errstr(src), src);
}

static int lite_exec(void *impl, const char *sql, const char *what, struct kl_err *err)
{
    struct lite *l = impl;
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

/* A statement parameter: text (copied when bound), an integer, or bytes
 * (bound in place: they must outlive the statement's step). NULL text or
 * bytes bind SQL NULL. */
struct lite_param {
    enum { LP_TEXT, LP_INT, LP_BYTES } kind;
    const char *text;
    int64_t i;
    const void *bytes;
    size_t len;
};

static struct lite_param p_text(const char *text)
{
    struct lite_param p = {LP_TEXT, text, 0, NULL, 0};
    return p;
}

static struct lite_param p_int(int64_t i)
{
    struct lite_param p = {LP_INT, NULL, i, NULL, 0};
    return p;
}

/* A sub-sequence number: NULL when negative (the whole record). */
static struct lite_param p_sub_sequence(int64_t i)
{
    return i >= 0 ? p_int(i) : p_text(NULL);
}

static struct lite_param p_bytes(const void *bytes, size_t len)
{
    struct lite_param p = {LP_BYTES, NULL, 0, bytes, len};
    return p;
}

/* Binds p[0..n) to ?1..?n. */
static int bind_all(struct lite *l, sqlite3_stmt *st, const struct lite_param *p, int n,
                    struct kl_err *err)
{
    int rc = KL_OK;

    for (int i = 0; rc == KL_OK && i < n; i++) {
        int src;
        switch (p[i].kind) {
        case LP_INT:
            rc = bind_i64(l, st, i + 1, p[i].i, err);
            break;
        case LP_BYTES:
            src = p[i].bytes != NULL && p[i].len <= (size_t)0x7fffffff
                      ? sqlite3_bind_blob(st, i + 1, p[i].len > 0 ? p[i].bytes : "", (int)p[i].len,
                                          SQLITE_STATIC)
                      : sqlite3_bind_null(st, i + 1);
            rc = src == SQLITE_OK ? KL_OK : lite_fail(l, src, "bind", err);
            break;
        default:
            rc = bind_text(l, st, i + 1, p[i].text, err);
        }
    }
    return rc;
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

/* A timestamp as SQLite stores them: ISO-8601 text. */
static void iso_of(int64_t ms, char out[KL_FMT_MAX])
{
    kl_fmt_timestamp(out, ms * 1000, KL_TS_ISO);
}

static void now_iso(struct lite *l, char out[KL_FMT_MAX])
{
    const struct kl_clock *c = l->base.opt.clock != NULL ? l->base.opt.clock : kl_clock_system();
    iso_of(kl_clock_wall_ms(c), out);
}

static int64_t iso_ms(const unsigned char *text)
{
    int64_t us;
    if (text == NULL || kl_fmt_parse_timestamp((const char *)text, &us) != 0)
        return -1;
    return us >= 0 ? us / 1000 : -((-us + 999) / 1000);
}

static void lite_rollback(void *impl)
{
    struct lite *l = impl;
    if (l->db != NULL && !sqlite3_get_autocommit(l->db))
        sqlite3_exec(l->db, "ROLLBACK", NULL, NULL, NULL);
}

static void finalize_inserts(struct lite *l)
{
    for (size_t i = 0; i < l->n_ins; i++)
        sqlite3_finalize(l->ins[i].st);
    l->n_ins = 0;
}

static int lite_open(void *impl, struct kl_err *err)
{
    struct lite *l = impl;
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
    src = sqlite3_busy_timeout(l->db, l->base.opt.busy_timeout_ms);
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
static void lite_drop(void *impl)
{
    struct lite *l = impl;
    finalize_inserts(l);
    if (l->db != NULL)
        sqlite3_close(l->db); /* an open transaction is rolled back */
    l->db = NULL;
}

static int lite_begin(void *impl, struct kl_err *err)
{
    return lite_exec(impl, "BEGIN IMMEDIATE", "begin", err);
}

static int lite_commit(void *impl, struct kl_err *err)
{
    return lite_exec(impl, "COMMIT", "commit", err);
}

/* ---- dataset ---- */

static int lite_load_catalog(void *impl, struct kl_dest_ds *d, struct kl_err *err)
{
    static const char *const COLS_SQL =
        "SELECT m.name, p.name, p.type FROM sqlite_master m JOIN pragma_table_info(m.name) p"
        " WHERE m.type = 'table' AND substr(m.name, 1, length(?1) + 1) = ?1 || '.'"
        " ORDER BY m.name, p.cid";
    static const char *const IDX_SQL = "SELECT name FROM sqlite_master WHERE type = 'index'"
                                       " AND substr(name, 1, length(?1) + 1) = ?1 || '.'";
    struct lite *l = impl;
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

/* Builds "<prefix><dataset.table><suffix>" into l->sql and prepares it. */
static int prep_on(struct lite *l, const char *prefix, const char *dataset, const char *table,
                   const char *suffix, sqlite3_stmt **st, const char *what, struct kl_err *err)
{
    int rc = kl_sql_on_table(&l->sql, KL_SQL_SQLITE, prefix, dataset, table, suffix, err);

    if (rc == KL_OK)
        rc = lite_prepare(l, l->sql.data, st, what, err);
    return rc;
}

/* Prepares "<prefix><dataset.table><suffix>", binds p[0..n) and steps the
 * statement to its end. */
static int run_on(struct lite *l, const char *prefix, const struct kl_dest_ds *d, const char *table,
                  const char *suffix, int n, const struct lite_param *p, const char *what,
                  struct kl_err *err)
{
    sqlite3_stmt *st = NULL;
    int rc = prep_on(l, prefix, d->name, table, suffix, &st, what, err);

    if (rc == KL_OK)
        rc = bind_all(l, st, p, n, err);
    if (rc == KL_OK)
        rc = step_done(l, st, what, err);
    sqlite3_finalize(st);
    return rc;
}

/* ---- a chunk ---- */

static int lite_write_checkpoints(void *impl, const struct kl_dest_ds *d,
                                  const struct kl_chunk_write *w, struct kl_err *err)
{
    struct lite *l = impl;
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

        if (cp->position.shard_id[0] == '\0' || cp->position.sequence[0] == '\0') {
            rc = kl_err_set(err, KL_ERR_INVALID, "checkpoint without shard or sequence");
            break;
        }
        sqlite3_reset(st);
        {
            const struct lite_param p[8] = {p_text(w->pipeline_name),
                                            p_text(w->stream_name),
                                            p_text(cp->position.shard_id),
                                            p_text(cp->position.sequence),
                                            p_sub_sequence(cp->position.sub_sequence),
                                            p_int(cp->fencing_token),
                                            p_text(w->load_id),
                                            p_text(now)};
            rc = bind_all(l, st, p, 8, err);
        }
        if (rc != KL_OK)
            break;
        src = sqlite3_step(st);
        if (src == SQLITE_DONE) {
            rc = kl_err_set(err, KL_ERR_CONFLICT,
                            "checkpoint of shard %s refused: fencing token %lld is older than "
                            "the stored one",
                            cp->position.shard_id, (long long)cp->fencing_token);
        } else if (src != SQLITE_ROW) {
            rc = lite_fail(l, src, "write checkpoint", err);
        } else {
            rc = step_done(l, st, "write checkpoint", err);
        }
    }
    sqlite3_finalize(st);
    return rc;
}

static int lite_store_version(void *impl, const struct kl_dest_ds *d, const struct kl_schema *s,
                              const char *json, const char *hash, struct kl_err *err)
{
    struct lite *l = impl;
    int64_t engine = kl_dest_schema_engine(json);
    char now[KL_FMT_MAX];
    struct kl_buf tail;
    int rc;

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
    if (rc == KL_OK) {
        const struct lite_param p[6] = {p_int(s->version), p_int(engine), p_text(now),
                                        p_text(s->name),   p_text(hash),  p_text(json)};
        rc = run_on(l, "INSERT INTO", d, "_dlt_version", tail.data, 6, p, "store schema version",
                    err);
    }
    kl_buf_free(&tail);
    return rc;
}

/* Replace, as in Postgres; SQLite has no TRUNCATE, so every member table gets a DELETE. */
static int lite_truncate_family(void *impl, const struct kl_dest_ds *d, const char *load_id,
                                const char *root, const struct kl_schema *s, bool *done,
                                struct kl_err *err)
{
    struct lite *l = impl;
    sqlite3_stmt *st = NULL;
    char now[KL_FMT_MAX];
    int src, rc;

    *done = false;
    now_iso(l, now);
    rc = prep_on(l, "INSERT INTO", d->name, "_kinesis_truncations",
                 " (load_id, table_name, truncated_at) VALUES (?1, ?2, ?3)"
                 " ON CONFLICT DO NOTHING RETURNING 1",
                 &st, "replace marker", err);
    if (rc == KL_OK) {
        const struct lite_param p[3] = {p_text(load_id), p_text(root), p_text(now)};
        rc = bind_all(l, st, p, 3, err);
    }
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
        rc = kl_sql_on_table(&l->sql, KL_SQL_SQLITE, "DELETE FROM ", d->name, name, "", err);
        if (rc == KL_OK)
            rc = lite_exec(l, l->sql.data, "truncate", err);
    }
    if (rc != KL_OK)
        *done = false;
    return rc;
}

static int lite_merge_delete(void *impl, const char *sql, const char *ids, struct kl_err *err)
{
    struct lite *l = impl;
    sqlite3_stmt *st = NULL;
    int rc = lite_prepare(l, sql, &st, "merge delete", err);

    if (rc == KL_OK)
        rc = bind_text(l, st, 1, ids, err);
    if (rc == KL_OK)
        rc = step_done(l, st, "merge delete", err);
    sqlite3_finalize(st);
    return rc;
}

/* The cached INSERT for (table, n columns), prepared on first use. */
static int insert_stmt(struct lite *l, const struct kl_dest_ds *d, const struct kl_table *t,
                       size_t n, sqlite3_stmt **out, struct kl_err *err)
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
    rc = kl_sql_on_table(&l->sql, KL_SQL_SQLITE, "INSERT INTO ", d->name, t->name, " (", err);
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

static int lite_insert_rows(void *impl, const struct kl_dest_ds *d, const struct kl_schema *s,
                            const struct kl_table_rows *tr, bool dedup, size_t *written,
                            struct kl_err *err)
{
    struct lite *l = impl;
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

static int lite_insert_dead_letters(void *impl, const struct kl_dest_ds *d,
                                    const struct kl_chunk_write *w, struct kl_err *err)
{
    struct lite *l = impl;
    const struct kl_row_batch *b = w->batch;
    sqlite3_stmt *st = NULL;
    char now[KL_FMT_MAX];
    int rc;

    now_iso(l, now);
    rc =
        prep_on(l, "INSERT INTO", d->name, "_kinesis_dead_letters",
                " (load_id, pipeline_name, stream_name, shard_id, sequence, sub_sequence, data,"
                " error, arrival_at, inserted_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                &st, "dead letters", err);
    for (size_t i = 0; rc == KL_OK && i < b->n_dead_letters; i++) {
        const struct kl_dead_letter *dl = &b->dead_letters[i];
        char arrival[KL_FMT_MAX];
        iso_of(dl->arrival_ms, arrival);
        const struct lite_param p[10] = {p_text(w->load_id),
                                         p_text(w->pipeline_name),
                                         p_text(w->stream_name),
                                         p_text(dl->shard_id != NULL ? dl->shard_id : ""),
                                         p_text(dl->sequence != NULL ? dl->sequence : ""),
                                         p_sub_sequence(dl->sub_sequence),
                                         p_bytes(dl->data, dl->data_len),
                                         p_text(dl->error != NULL ? dl->error : ""),
                                         p_text(arrival),
                                         p_text(now)};

        sqlite3_reset(st);
        rc = bind_all(l, st, p, 10, err);
        if (rc == KL_OK)
            rc = step_done(l, st, "dead letters", err);
    }
    sqlite3_finalize(st);
    return rc;
}

/* ---- state and the end of a load ---- */

#define NEWEST_SCHEMA " WHERE schema_name = ?1 ORDER BY \"version\" DESC, inserted_at DESC LIMIT 1"

/* Prepares "<prefix><dataset.table><suffix>" with ?1 = `arg` and steps it
 * once. On success *row tells whether it returned a row, which the caller
 * reads before finalizing *st (always). */
static int first_row(struct lite *l, const char *prefix, const struct kl_dest_ds *d,
                     const char *table, const char *suffix, const char *arg, sqlite3_stmt **st,
                     bool *row, const char *what, struct kl_err *err)
{
    int src, rc = prep_on(l, prefix, d->name, table, suffix, st, what, err);

    if (rc == KL_OK)
        rc = bind_text(l, *st, 1, arg, err);
    if (rc == KL_OK) {
        src = sqlite3_step(*st);
        if (src == SQLITE_ROW || src == SQLITE_DONE)
            *row = src == SQLITE_ROW;
        else
            rc = lite_fail(l, src, what, err);
    }
    return rc;
}

static int lite_read_schema(void *impl, const struct kl_dest_ds *d, const char *name,
                            char **json_out, int64_t *version_out, struct kl_err *err)
{
    sqlite3_stmt *st = NULL;
    char *json = NULL;
    bool row = false;
    int rc = first_row(impl, "SELECT \"schema\", \"version\" FROM", d, "_dlt_version",
                       NEWEST_SCHEMA, name, &st, &row, "load schema", err);

    if (rc == KL_OK && row) {
        const char *t = (const char *)sqlite3_column_text(st, 0);
        json = strdup(t != NULL ? t : "");
        if (json == NULL)
            rc = kl_err_set(err, KL_ERR_NOMEM, "schema text");
        else if (version_out != NULL)
            *version_out = sqlite3_column_int64(st, 1);
    }
    sqlite3_finalize(st);
    if (rc == KL_OK)
        *json_out = json;
    else
        free(json);
    return rc;
}

static int lite_read_stream_rows(void *impl, const struct kl_dest_ds *d, const char *pipeline,
                                 const char *stream, bool with_runs,
                                 struct kl_dest_stream_row **out, size_t *n_out, struct kl_err *err)
{
    struct lite *l = impl;
    const struct lite_param keys[2] = {p_text(pipeline), p_text(stream)};
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
        rc = bind_all(l, st, keys, stream != NULL ? 2 : 1, err);
    for (int pass = 0; rc == KL_OK && pass < (with_runs ? 2 : 1); pass++) {
        if (pass == 1) {
            sqlite3_finalize(st);
            st = NULL;
            rc = prep_on(l, "SELECT stream_name, last_run_at FROM", d->name, "_kinesis_runs",
                         stream != NULL ? " WHERE pipeline_name = ?1 AND stream_name = ?2"
                                        : " WHERE pipeline_name = ?1",
                         &st, "read run times", err);
            if (rc == KL_OK)
                rc = bind_all(l, st, keys, stream != NULL ? 2 : 1, err);
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
                if (shard == NULL || seq == NULL || strlen(shard) >= KL_SHARD_ID_MAX ||
                    strlen(seq) >= KL_SEQ_MAX) {
                    rc = kl_err_set(err, KL_ERR_UPSTREAM, "sqlite: a stored checkpoint is bad");
                    break;
                }
                snprintf(r->cp.position.shard_id, sizeof r->cp.position.shard_id, "%s", shard);
                snprintf(r->cp.position.sequence, sizeof r->cp.position.sequence, "%s", seq);
                r->cp.position.sub_sequence =
                    sqlite3_column_type(st, 3) == SQLITE_NULL ? -1 : sqlite3_column_int64(st, 3);
                r->cp.fencing_token = sqlite3_column_int64(st, 4);
                r->cp.updated_ms = iso_ms(sqlite3_column_text(st, 5));
            } else {
                r->has_last_run = true;
                r->last_run_ms = iso_ms(sqlite3_column_text(st, 1));
            }
        }
        if (rc == KL_OK && src != SQLITE_DONE)
            rc = lite_fail(l, src, pass == 0 ? "read checkpoints" : "read run times", err);
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

static int lite_claim_shard(void *impl, const struct kl_dest_ds *d, const char *pipeline,
                            const char *stream, const char *shard_id, int64_t token,
                            struct kl_err *err)
{
    struct lite *l = impl;
    sqlite3_stmt *st = NULL;
    char now[KL_FMT_MAX];
    int src, rc;

    now_iso(l, now);
    /* The position stays as it is; only the token moves, and never down. */
    rc = prep_on(l, "INSERT INTO", d->name, "_kinesis_checkpoints",
                 " AS c (pipeline_name, stream_name, shard_id, sequence, sub_sequence,"
                 " fencing_token, load_id, updated_at) VALUES (?1, ?2, ?3, '', NULL, ?4, NULL, ?5)"
                 " ON CONFLICT (pipeline_name, stream_name, shard_id) DO UPDATE SET"
                 " fencing_token = excluded.fencing_token"
                 " WHERE c.fencing_token <= excluded.fencing_token RETURNING 1",
                 &st, "claim shard", err);
    if (rc == KL_OK) {
        const struct lite_param p[5] = {p_text(pipeline), p_text(stream), p_text(shard_id),
                                        p_int(token), p_text(now)};
        rc = bind_all(l, st, p, 5, err);
    }
    if (rc == KL_OK) {
        src = sqlite3_step(st);
        if (src == SQLITE_DONE)
            rc = kl_err_set(err, KL_ERR_CONFLICT,
                            "claim of shard %s refused: fencing token %lld is older than the "
                            "stored one",
                            shard_id, (long long)token);
        else if (src != SQLITE_ROW)
            rc = lite_fail(l, src, "claim shard", err);
        else
            rc = step_done(l, st, "claim shard", err);
    }
    sqlite3_finalize(st);
    return rc;
}

static int lite_delete_stream_rows(void *impl, const struct kl_dest_ds *d, const char *table,
                                   const char *pipeline, const char *stream, struct kl_err *err)
{
    const struct lite_param p[2] = {p_text(pipeline), p_text(stream)};
    return run_on(impl, "DELETE FROM", d, table, " WHERE pipeline_name = ?1 AND stream_name = ?2",
                  2, p, "delete state", err);
}

static int lite_load_done(void *impl, const struct kl_dest_ds *d, const char *load_id, bool *done,
                          struct kl_err *err)
{
    sqlite3_stmt *st = NULL;
    int rc = first_row(impl, "SELECT 1 FROM", d, "_dlt_loads", " WHERE load_id = ?1", load_id, &st,
                       done, "check load", err);

    sqlite3_finalize(st);
    return rc;
}

static int lite_write_run_time(void *impl, const struct kl_dest_ds *d,
                               const struct kl_load_complete *c, int64_t now_ms, struct kl_err *err)
{
    char ts[KL_FMT_MAX], now[KL_FMT_MAX];
    const struct lite_param p[5] = {p_text(c->pipeline_name), p_text(c->stream_name), p_text(ts),
                                    p_text(c->load_id), p_text(now)};

    iso_of(c->next_run_ms, ts);
    iso_of(now_ms, now);
    return run_on(impl, "INSERT INTO", d, "_kinesis_runs",
                  " (pipeline_name, stream_name, last_run_at, load_id, updated_at)"
                  " VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (pipeline_name, stream_name)"
                  " DO UPDATE SET last_run_at = excluded.last_run_at,"
                  " load_id = excluded.load_id, updated_at = excluded.updated_at",
                  5, p, "write run time", err);
}

/* dlt's get_stored_state: the state row of the pipeline's newest completed load. */
static int lite_read_dlt_state(void *impl, const struct kl_dest_ds *d, const char *pipeline,
                               struct kl_dlt_state_row *out, struct kl_err *err)
{
    struct lite *l = impl;
    sqlite3_stmt *st = NULL;
    struct kl_buf tail;
    bool row = false;
    int rc;

    memset(out, 0, sizeof *out);
    kl_buf_init(&tail, 4096);
    rc = kl_buf_append_str(&tail, " AS s JOIN ", err);
    if (rc == KL_OK)
        rc = kl_sql_table_ref(&tail, KL_SQL_SQLITE, d->name, "_dlt_loads", err);
    if (rc == KL_OK)
        rc = kl_buf_append_str(&tail,
                               " AS l ON l.load_id = s._dlt_load_id WHERE s.pipeline_name = ?1"
                               " AND l.status = 0 ORDER BY l.load_id DESC, s.\"version\" DESC"
                               " LIMIT 1",
                               err);
    if (rc == KL_OK)
        rc =
            first_row(l, "SELECT s.\"version\", s.state, s._dlt_load_id, s.created_at FROM", d,
                      "_dlt_pipeline_state", tail.data, pipeline, &st, &row, "read dlt state", err);
    if (rc == KL_OK && row) {
        const char *state = (const char *)sqlite3_column_text(st, 1);
        const char *load = (const char *)sqlite3_column_text(st, 2);
        out->found = true;
        out->version = sqlite3_column_int64(st, 0);
        out->state = strdup(state != NULL ? state : "");
        snprintf(out->load_id, sizeof out->load_id, "%s", load != NULL ? load : "");
        out->created_ms = iso_ms(sqlite3_column_text(st, 3));
        if (out->state == NULL)
            rc = kl_err_set(err, KL_ERR_NOMEM, "pipeline state");
    }
    sqlite3_finalize(st);
    kl_buf_free(&tail);
    if (rc != KL_OK)
        kl_dlt_state_row_free(out);
    return rc;
}

static int lite_newest_load_id(void *impl, const struct kl_dest_ds *d, char *out, size_t cap,
                               struct kl_err *err)
{
    struct lite *l = impl;
    sqlite3_stmt *st = NULL;
    int src, rc = prep_on(l, "SELECT load_id FROM", d->name, "_dlt_loads",
                          " ORDER BY load_id DESC LIMIT 1", &st, "newest load", err);

    if (rc == KL_OK) {
        src = sqlite3_step(st);
        if (src == SQLITE_ROW || src == SQLITE_DONE) {
            const char *v = src == SQLITE_ROW ? (const char *)sqlite3_column_text(st, 0) : NULL;
            snprintf(out, cap, "%s", v != NULL ? v : "");
        } else {
            rc = lite_fail(l, src, "newest load", err);
        }
    }
    sqlite3_finalize(st);
    return rc;
}

static int lite_write_state(void *impl, const struct kl_dest_ds *d, const char *pipeline,
                            const char *load_id, const struct kl_state_doc *doc, int64_t version,
                            int64_t now_ms, struct kl_err *err)
{
    char now[KL_FMT_MAX];
    const struct lite_param p[8] = {
        p_int(version), p_int(KL_STATE_ENGINE_VERSION), p_text(pipeline), p_text(doc->state),
        p_text(now),    p_text(doc->version_hash),      p_text(load_id),  p_text(doc->row_id)};

    iso_of(now_ms, now);
    return run_on(impl, "INSERT INTO", d, "_dlt_pipeline_state",
                  " (\"version\", engine_version, pipeline_name, state, created_at,"
                  " version_hash, _dlt_load_id, _dlt_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7,"
                  " ?8)",
                  8, p, "write pipeline state", err);
}

static int lite_newest_hash(void *impl, const struct kl_dest_ds *d, const char *name, char *out,
                            size_t cap, struct kl_err *err)
{
    sqlite3_stmt *st = NULL;
    bool row = false;
    int rc = first_row(impl, "SELECT version_hash FROM", d, "_dlt_version", NEWEST_SCHEMA, name,
                       &st, &row, "read schema hash", err);

    if (rc == KL_OK) {
        const char *h = row ? (const char *)sqlite3_column_text(st, 0) : NULL;
        snprintf(out, cap, "%s", h != NULL ? h : "");
    }
    sqlite3_finalize(st);
    return rc;
}

static int lite_write_load(void *impl, const struct kl_dest_ds *d, const char *load_id,
                           const char *schema_name, const char *hash, int64_t now_ms,
                           struct kl_err *err)
{
    char now[KL_FMT_MAX];
    const struct lite_param p[4] = {p_text(load_id), p_text(schema_name), p_text(now),
                                    p_text(hash)};

    iso_of(now_ms, now);
    return run_on(impl, "INSERT INTO", d, "_dlt_loads",
                  " (load_id, schema_name, status, inserted_at, schema_version_hash)"
                  " VALUES (?1, ?2, 0, ?3, ?4)",
                  4, p, "write load", err);
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
    kl_dest_ds_list_free(&l->base.ds);
    kl_buf_free(&l->sql);
    free(l->path);
    free(l);
}

static const struct kl_dest_backend LITE_BACKEND = {
    .name = "sqlite",
    .destination_type = "dlt.destinations.sqlalchemy",
    .dialect = KL_SQL_SQLITE,
    .failed_commit_ends_tx = false,
    .sort_streams = true,
    .connect = lite_open,
    .exec = lite_exec,
    .drop = lite_drop,
    .destroy = lite_destroy,
    .begin = lite_begin,
    .lock_dataset = NULL, /* BEGIN IMMEDIATE */
    .commit = lite_commit,
    .rollback = lite_rollback,
    .load_catalog = lite_load_catalog,
    .create_dataset = NULL,
    .lock_for_ddl = NULL,
    .write_checkpoints = lite_write_checkpoints,
    .store_version = lite_store_version,
    .truncate_family = lite_truncate_family,
    .lock_families = NULL,
    .merge_delete = lite_merge_delete,
    .write_rows = lite_insert_rows,
    .write_dead_letters = lite_insert_dead_letters,
    .read_schema = lite_read_schema,
    .read_stream_rows = lite_read_stream_rows,
    .claim_shard = lite_claim_shard,
    .delete_stream_rows = lite_delete_stream_rows,
    .load_done = lite_load_done,
    .write_run_time = lite_write_run_time,
    .read_dlt_state = lite_read_dlt_state,
    .newest_load_id = lite_newest_load_id,
    .write_state = lite_write_state,
    .newest_hash = lite_newest_hash,
    .write_load = lite_write_load,
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
    if (l == NULL || (l->path = strdup(path)) == NULL) {
        kl_err_set(err, KL_ERR_NOMEM, "sqlite destination");
        goto fail;
    }
    l->base.be = &LITE_BACKEND;
    l->base.impl = l;
    if (opts != NULL)
        l->base.opt = *opts;
    else
        kl_dest_options_init(&l->base.opt);
    if (l->base.opt.busy_timeout_ms <= 0)
        l->base.opt.busy_timeout_ms = 30000;
    kl_buf_init(&l->sql, SQL_MAX);
    if (lite_open(l, err) != KL_OK)
        goto fail;
    dest = kl_dest_conn_wrap(&l->base, err);
    if (dest != NULL)
        return dest;
fail:
    lite_destroy(l);
    return NULL;
}

struct kl_dest_factory *kl_dest_sqlite_factory_create(const char *path,
                                                      const struct kl_dest_options *opts,
                                                      struct kl_err *err)
{
    if (path == NULL || path[0] == '\0') {
        kl_err_set(err, KL_ERR_INVALID, "sqlite: no database path");
        return NULL;
    }
    return kl_dest_conn_factory_create(LITE_BACKEND.name, path, opts, kl_dest_sqlite_create, false,
                                       err);
}
