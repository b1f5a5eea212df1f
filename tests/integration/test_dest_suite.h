/*
 * The destination integration tests, one body for both backends: included
 * by test_dest_pg.c and test_dest_sqlite.c, which define BACKEND (how to
 * open a destination and how to look into the database behind it). Each
 * test uses its own dataset, so the tests can run side by side. Schemas and
 * row batches are built by hand here, the way the normaliser fills them.
 */
#ifndef KL_TEST_DEST_SUITE_H
#define KL_TEST_DEST_SUITE_H

#include "tests/support/test_support.h"
#include "core/dest/common.h"
#include "core/dest/dest.h"
#include "core/dest/format.h"
#include "core/dest/pool.h"
#include "core/dest/sql.h"
#include "core/dest/state.h"
#include "core/kinesis/message.h"
#include "core/kinesis/msgid.h"
#include "core/normalize/coerce.h"
#include "core/normalize/normalizer.h"
#include "core/normalize/rows.h"
#include "core/normalize/schema.h"
#include "core/util/base64.h"
#include "core/util/buf.h"
#include "core/util/err.h"

#include <cjson/cJSON.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* What a test file provides. */
struct backend {
    const char *name;
    enum kl_sql_dialect dialect;
    /* A new connection; fails the test when it cannot open one. */
    struct kl_dest *(*open)(const struct kl_dest_options *o);
    /* A factory for worker threads. */
    struct kl_dest_factory *(*factory)(const struct kl_dest_options *o);
    /* First column of the first row as text (malloc'ed), NULL for SQL NULL or no row. */
    char *(*scalar)(const char *sql);
    void (*exec)(const char *sql);
    /* Drops the dataset behind the destination's back. */
    void (*drop_dataset)(const char *dataset);
    /* The type the database reports for a column ("int8", "BIGINT"), or NULL. */
    char *(*column_type)(const char *dataset, const char *table, const char *column);
    /* SQL that turns a column into text we can compare across backends. */
    const char *(*hex_expr)(const char *column); /* bytes -> lower-case hex */
    const char *(*ts_expr)(const char *column);  /* timestamp -> what ts_us() reads */
    int64_t (*ts_us)(const char *text);
    const char *(*json_path)(const char *column, const char *dollar_path);
    const char *true_text; /* how a true boolean reads back */
    /* Whether a decimal read back equals the normaliser's text. */
    bool (*decimal_equal)(const char *got, const char *want);
};

static const struct backend BACKEND;

/* ---- names ---- */

static const char *unique_dataset(const char *what)
{
    static char name[64];
    static int counter;
    snprintf(name, sizeof name, "t_%s_%ld_%d", what, (long)getpid(), ++counter);
    return name;
}

static const char *ref(const char *dataset, const char *table)
{
    static char out[4][256];
    static int slot;
    struct kl_buf b;
    struct kl_err err = {0};
    char *r = out[slot++ % 4];

    kl_buf_init(&b, 1024);
    assert_int_equal(kl_sql_table_ref(&b, BACKEND.dialect, dataset, table, &err), KL_OK);
    snprintf(r, 256, "%s", b.data);
    kl_buf_free(&b);
    return r;
}

static long long scalar_ll(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static long long scalar_ll(const char *fmt, ...)
{
    char sql[4096];
    va_list ap;
    char *v;
    long long n;

    va_start(ap, fmt);
    vsnprintf(sql, sizeof sql, fmt, ap);
    va_end(ap);
    v = BACKEND.scalar(sql);
    if (v == NULL)
        fail_msg("no value for: %s", sql);
    n = atoll(v);
    free(v);
    return n;
}

static char *scalar_text(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *scalar_text(const char *fmt, ...)
{
    char sql[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(sql, sizeof sql, fmt, ap);
    va_end(ap);
    return BACKEND.scalar(sql);
}

static long long count_rows(const char *ds, const char *table, const char *where)
{
    return scalar_ll("SELECT count(*) FROM %s%s%s", ref(ds, table), where ? " WHERE " : "",
                     where ? where : "");
}

static long long count_distinct(const char *ds, const char *table, const char *col)
{
    return scalar_ll("SELECT count(DISTINCT \"%s\") FROM %s", col, ref(ds, table));
}

/* ---- schemas by hand ---- */

#define TS_MAX_TABLES 8
#define TS_MAX_COLS 48

struct ts {
    struct kl_schema s;
    struct kl_table t[TS_MAX_TABLES];
    struct kl_column c[TS_MAX_TABLES][TS_MAX_COLS];
};

static void ts_init(struct ts *x)
{
    memset(x, 0, sizeof *x);
    snprintf(x->s.name, sizeof x->s.name, "kinesis");
    x->s.tables = x->t;
    x->s.version = 1;
}

static size_t ts_table(struct ts *x, const char *name, const char *parent)
{
    size_t i = x->s.n_tables++;
    assert_true(i < TS_MAX_TABLES);
    snprintf(x->t[i].name, KL_IDENT_MAX, "%s", name);
    snprintf(x->t[i].parent, KL_IDENT_MAX, "%s", parent != NULL ? parent : "");
    x->t[i].columns = x->c[i];
    x->s.version++;
    return i;
}

static size_t ts_col(struct ts *x, size_t t, const char *name, enum kl_data_type type,
                     bool nullable, bool unique)
{
    size_t j = x->t[t].n_columns++;
    struct kl_column *c = &x->c[t][j];
    assert_true(j < TS_MAX_COLS);
    memset(c, 0, sizeof *c);
    snprintf(c->name, KL_IDENT_MAX, "%s", name);
    c->type = type;
    c->nullable = nullable;
    c->unique = unique;
    x->s.version++;
    return j;
}

/* A root table as the normaliser makes it for a Kinesis stream. */
static size_t ts_root(struct ts *x, const char *name)
{
    size_t t = ts_table(x, name, NULL);
    ts_col(x, t, "_kinesis__shard_id", KL_TYPE_TEXT, true, false);
    ts_col(x, t, "_kinesis__seq_no", KL_TYPE_TEXT, true, false);
    ts_col(x, t, "_kinesis_msg_id", KL_TYPE_TEXT, false, false);
    ts_col(x, t, "n", KL_TYPE_BIGINT, true, false);
    ts_col(x, t, "label", KL_TYPE_TEXT, true, false);
    ts_col(x, t, "_dlt_load_id", KL_TYPE_TEXT, false, false);
    ts_col(x, t, "_dlt_id", KL_TYPE_TEXT, false, true);
    return t;
}

/* A child table of a list of strings, in dlt's order for lists of scalars. */
static size_t ts_child(struct ts *x, const char *name, const char *parent)
{
    size_t t = ts_table(x, name, parent);
    ts_col(x, t, "value", KL_TYPE_TEXT, true, false);
    ts_col(x, t, "_dlt_id", KL_TYPE_TEXT, false, true);
    ts_col(x, t, "_dlt_parent_id", KL_TYPE_TEXT, false, false);
    ts_col(x, t, "_dlt_list_idx", KL_TYPE_BIGINT, false, false);
    return t;
}

/* Where the database has a column: its 0-based position among the
 * table's columns and whether it is NOT NULL. False when it is absent. */
static bool column_shape(const char *ds, const char *table, const char *col, int *pos,
                         bool *not_null)
{
    char *v;
    if (BACKEND.dialect == KL_SQL_POSTGRES)
        v = scalar_text("SELECT (SELECT count(*) FROM pg_attribute b WHERE b.attrelid = a.attrelid"
                        " AND b.attnum > 0 AND b.attnum < a.attnum AND NOT b.attisdropped)"
                        " || ':' || CASE WHEN a.attnotnull THEN 1 ELSE 0 END"
                        " FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid"
                        " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = '%s'"
                        " AND c.relname = '%s' AND a.attname = '%s' AND NOT a.attisdropped",
                        ds, table, col);
    else
        v = scalar_text("SELECT cid || ':' || \"notnull\" FROM pragma_table_info('%s.%s')"
                        " WHERE name = '%s'",
                        ds, table, col);
    if (v == NULL)
        return false;
    *pos = atoi(v);
    *not_null = strchr(v, ':') != NULL && strchr(v, ':')[1] == '1';
    free(v);
    return true;
}

static size_t col_of(const struct ts *x, size_t t, const char *name)
{
    int i = kl_dest_column_index(&x->t[t], x->t[t].n_columns, name);
    if (i < 0)
        fail_msg("no column %s in %s", name, x->t[t].name);
    return (size_t)i;
}

/* ---- row batches by hand ---- */

#define TB_ARENA ((size_t)8 << 20)

struct tb {
    struct kl_row_batch b;
    struct kl_table_rows tr[TS_MAX_TABLES];
    size_t cap[TS_MAX_TABLES];
    int slot_of[TS_MAX_TABLES];
    char *arena;
    size_t used;
    struct kl_dead_letter dl[16];
    const struct ts *x;
};

static void tb_init(struct tb *b, const struct ts *x)
{
    memset(b, 0, sizeof *b);
    b->x = x;
    b->b.schema = &x->s;
    b->b.tables = b->tr;
    b->b.dead_letters = b->dl;
    for (int i = 0; i < TS_MAX_TABLES; i++)
        b->slot_of[i] = -1;
    b->arena = malloc(TB_ARENA);
    assert_non_null(b->arena);
}

static void tb_free(struct tb *b)
{
    for (size_t i = 0; i < b->b.n_tables; i++)
        free(b->tr[i].cells);
    free(b->arena);
    memset(b, 0, sizeof *b);
}

static const char *tb_str(struct tb *b, const char *s, size_t n)
{
    char *p = b->arena + b->used;
    assert_true(b->used + n + 1 <= TB_ARENA);
    memcpy(p, s, n);
    p[n] = '\0';
    b->used += n + 1;
    return p;
}

/* A new row of table `t`, every cell NULL. */
static struct kl_value *tb_row(struct tb *b, size_t t)
{
    struct kl_table_rows *tr;
    struct kl_value *row;

    if (b->slot_of[t] < 0) {
        b->slot_of[t] = (int)b->b.n_tables++;
        tr = &b->tr[b->slot_of[t]];
        tr->table = t;
        tr->n_columns = b->x->t[t].n_columns;
    }
    tr = &b->tr[b->slot_of[t]];
    if (tr->n_rows == b->cap[b->slot_of[t]]) {
        size_t cap = b->cap[b->slot_of[t]] ? 2 * b->cap[b->slot_of[t]] : 64;
        tr->cells = realloc(tr->cells, cap * tr->n_columns * sizeof *tr->cells);
        assert_non_null(tr->cells);
        b->cap[b->slot_of[t]] = cap;
    }
    row = &tr->cells[tr->n_rows++ * tr->n_columns];
    memset(row, 0, tr->n_columns * sizeof *row);
    return row;
}

static void v_text(struct tb *b, struct kl_value *v, const char *s)
{
    v->type = KL_TYPE_TEXT;
    v->v.s.ptr = tb_str(b, s, strlen(s));
    v->v.s.len = strlen(s);
}

static void v_typed(struct tb *b, struct kl_value *v, enum kl_data_type t, const void *p, size_t n)
{
    v->type = t;
    v->v.s.ptr = tb_str(b, p, n);
    v->v.s.len = n;
}

static void v_i64(struct kl_value *v, int64_t i)
{
    v->type = KL_TYPE_BIGINT;
    v->v.i = i;
}

#define SEQ_BASE 100000

static void seq_of(long i, char out[32])
{
    snprintf(out, 32, "%ld", (long)SEQ_BASE + i);
}

/* Message i of `shard`: a root row and `n_tags` rows in `child` (when
 * child < TS_MAX_TABLES), and one grandchild row per tag in `grand`. */
static void add_msg(struct tb *b, size_t root, size_t child, size_t grand, const char *load_id,
                    const char *shard, long i, int n_tags, const char *label)
{
    const struct ts *x = b->x;
    struct kl_value *r = tb_row(b, root);
    char id[96], seq[32];
    char rid[96];

    seq_of(i, seq);
    snprintf(id, sizeof id, "m:%s:%ld", shard, i);
    snprintf(rid, sizeof rid, "r:%s:%ld", shard, i);
    v_text(b, &r[col_of(x, root, "_kinesis__shard_id")], shard);
    v_text(b, &r[col_of(x, root, "_kinesis__seq_no")], seq);
    v_text(b, &r[col_of(x, root, "_kinesis_msg_id")], id);
    v_i64(&r[col_of(x, root, "n")], i);
    if (label != NULL)
        v_text(b, &r[col_of(x, root, "label")], label);
    v_text(b, &r[col_of(x, root, "_dlt_load_id")], load_id);
    v_text(b, &r[col_of(x, root, "_dlt_id")], rid);
    b->b.n_messages++;
    for (int k = 0; child < TS_MAX_TABLES && k < n_tags; k++) {
        struct kl_value *c = tb_row(b, child);
        char cid[128], val[96];
        snprintf(cid, sizeof cid, "c:%s:%ld:%d", shard, i, k);
        snprintf(val, sizeof val, "%s-%d", label != NULL ? label : "tag", k);
        v_text(b, &c[col_of(x, child, "value")], val);
        v_text(b, &c[col_of(x, child, "_dlt_parent_id")], rid);
        v_i64(&c[col_of(x, child, "_dlt_list_idx")], k);
        v_text(b, &c[col_of(x, child, "_dlt_id")], cid);
        if (grand < TS_MAX_TABLES) {
            struct kl_value *g = tb_row(b, grand);
            char gid[160];
            snprintf(gid, sizeof gid, "g:%s:%ld:%d", shard, i, k);
            v_text(b, &g[col_of(x, grand, "value")], val);
            v_text(b, &g[col_of(x, grand, "_dlt_parent_id")], cid);
            v_i64(&g[col_of(x, grand, "_dlt_list_idx")], 0);
            v_text(b, &g[col_of(x, grand, "_dlt_id")], gid);
        }
    }
}

static void add_dead_letter(struct tb *b, const char *shard, long i, const char *error)
{
    struct kl_dead_letter *d = &b->dl[b->b.n_dead_letters++];
    char seq[32];
    static const unsigned char junk[] = {'n', 'o', 't', 0x00, 0xff, '\t', '{'};
    seq_of(i, seq);
    d->shard_id = tb_str(b, shard, strlen(shard));
    d->sequence = tb_str(b, seq, strlen(seq));
    d->sub_sequence = -1;
    d->data = (const unsigned char *)tb_str(b, (const char *)junk, sizeof junk);
    d->data_len = sizeof junk;
    d->error = tb_str(b, error, strlen(error));
    d->arrival_ms = 1700000000000LL + i;
}

static void checkpoint_of(struct kl_checkpoint *cp, const char *shard, long last, int64_t token)
{
    memset(cp, 0, sizeof *cp);
    snprintf(cp->position.shard_id, sizeof cp->position.shard_id, "%s", shard);
    seq_of(last, cp->position.sequence);
    cp->position.sub_sequence = -1;
    cp->fencing_token = token;
}

static struct kl_chunk_write chunk_of(const char *load_id, enum kl_write_disposition d,
                                      const struct tb *b, const struct kl_checkpoint *cp)
{
    struct kl_chunk_write w;
    memset(&w, 0, sizeof w);
    w.load_id = load_id;
    w.pipeline_name = "kinesis_pipeline";
    w.stream_name = "stream";
    w.disposition = d;
    w.batch = b != NULL ? &b->b : NULL;
    w.checkpoints = cp;
    w.n_checkpoints = cp != NULL ? 1 : 0;
    return w;
}

/* The end of load `load_id` of pipeline kinesis_pipeline's `stream`. */
static struct kl_load_complete load_end(const char *load_id, const char *stream,
                                        enum kl_write_disposition d, int64_t next_run_ms)
{
    struct kl_load_complete c;
    memset(&c, 0, sizeof c);
    c.load_id = load_id;
    c.schema_name = "kinesis";
    c.pipeline_name = "kinesis_pipeline";
    c.stream_name = stream;
    c.disposition = d;
    c.next_run_ms = next_run_ms;
    return c;
}

/* A stand-in for the schema as dlt stores it, one per schema version. */
struct schema_text {
    char json[64];
    char hash[32];
};

/* Gives the chunk x's schema text and hash (kept in `t`). */
static void with_schema_text(struct kl_chunk_write *w, const struct ts *x, struct schema_text *t)
{
    snprintf(t->json, sizeof t->json, "{\"version\":%lld}", (long long)x->s.version);
    snprintf(t->hash, sizeof t->hash, "h%lld", (long long)x->s.version);
    w->schema_json = t->json;
    w->schema_hash = t->hash;
}

/* The next message to read for `shard`, from the destination's checkpoint. */
static long resume_from(struct kl_dest *d, const char *ds, const char *shard)
{
    struct kl_dest_state st;
    struct kl_err err = {0};
    long next = 0;
    int rc;

    kl_dest_state_init(&st);
    rc = kl_dest_read_state(d, ds, "kinesis_pipeline", "stream", &st, &err);
    if (rc == KL_ERR_UNAVAILABLE) /* the connection was just dropped: once more */
        rc = kl_dest_read_state(d, ds, "kinesis_pipeline", "stream", &st, &err);
    if (rc != KL_OK)
        fail_msg("read_state: %s", err.msg);
    for (size_t i = 0; i < st.n_checkpoints; i++)
        if (strcmp(st.checkpoints[i].position.shard_id, shard) == 0 &&
            st.checkpoints[i].position.sequence[0] != '\0')
            next = atol(st.checkpoints[i].position.sequence) - SEQ_BASE + 1;
    kl_dest_state_free(&st);
    return next;
}

/* Writes messages [from, to) of a shard in chunks, each with its
 * checkpoint, like a reader that resumes from the destination. */
static int write_range(struct kl_dest *d, const char *ds, const struct ts *x, size_t root,
                       size_t child, const char *load_id, enum kl_write_disposition disp,
                       const char *shard, long from, long to, long chunk, int64_t token,
                       struct kl_err *err)
{
    for (long i = from; i < to; i += chunk) {
        long end = i + chunk < to ? i + chunk : to;
        struct tb b;
        struct kl_checkpoint cp;
        struct kl_chunk_write w;
        int rc;

        tb_init(&b, x);
        for (long k = i; k < end; k++)
            add_msg(&b, root, child, TS_MAX_TABLES, load_id, shard, k, 2, "v");
        checkpoint_of(&cp, shard, end - 1, token);
        w = chunk_of(load_id, disp, &b, &cp);
        rc = kl_dest_write_chunk(d, ds, &w, NULL, err);
        tb_free(&b);
        if (rc != KL_OK)
            return rc;
    }
    return KL_OK;
}

static struct kl_dest *open_default(void)
{
    struct kl_dest_options o;
    kl_dest_options_init(&o);
    return BACKEND.open(&o);
}

/* A connection whose write_chunk calls `hook` after each step. */
static struct kl_dest *open_hooked(bool (*hook)(void *ctx, enum kl_dest_step step), void *ctx)
{
    struct kl_dest_options o;
    kl_dest_options_init(&o);
    o.crash_after = hook;
    o.crash_ctx = ctx;
    return BACKEND.open(&o);
}

/* ---- tests ---- */

/* prepare creates dlt's system tables with dlt's types, and ours; twice is fine. */
static void test_prepare_system_tables(void **state)
{
    const char *ds = unique_dataset("prep");
    char dsname[64];
    struct kl_dest *d = open_default(), *d2 = open_default();
    struct kl_err err = {0};
    char *t;
    (void)state;

    snprintf(dsname, sizeof dsname, "%s", ds);
    assert_int_equal(kl_dest_prepare(d, dsname, &err), KL_OK);
    assert_int_equal(kl_dest_prepare(d, dsname, &err), KL_OK);
    assert_int_equal(kl_dest_prepare(d2, dsname, &err), KL_OK);
    assert_int_equal(kl_dest_ping(d, &err), KL_OK);
    {
        static const struct {
            const char *table, *column;
            enum kl_data_type type;
        } checks[] = {
            {"_dlt_loads", "inserted_at", KL_TYPE_TIMESTAMP},
            {"_dlt_loads", "status", KL_TYPE_BIGINT},
            {"_dlt_version", "schema", KL_TYPE_TEXT},
            {"_dlt_pipeline_state", "_dlt_id", KL_TYPE_TEXT},
            {"_kinesis_checkpoints", "fencing_token", KL_TYPE_BIGINT},
            {"_kinesis_dead_letters", "data", KL_TYPE_BINARY},
            {"_kinesis_runs", "last_run_at", KL_TYPE_TIMESTAMP},
        };
        for (size_t i = 0; i < sizeof checks / sizeof checks[0]; i++) {
            t = BACKEND.column_type(dsname, checks[i].table, checks[i].column);
            if (t == NULL)
                fail_msg("%s.%s missing", checks[i].table, checks[i].column);
            assert_string_equal(t, kl_sql_type_tag(BACKEND.dialect, checks[i].type));
            free(t);
        }
    }
    assert_int_equal(count_rows(dsname, "_dlt_loads", NULL), 0);
    /* Names that are not identifiers never reach SQL. */
    assert_int_equal(kl_dest_prepare(d, "bad\"; DROP SCHEMA public; --", &err), KL_ERR_INVALID);
    assert_int_equal(kl_dest_prepare(d, "pg_catalog", &err), KL_ERR_INVALID);
    kl_dest_destroy(d);
    kl_dest_destroy(d2);
}

/* Odd values land exactly: escapes, extremes, bytes, decimals, JSON,
 * variants, NULLs, nested child tables. */
static void test_corpus_odd_rows(void **state)
{
    const char *ds0 = unique_dataset("odd");
    char ds[64];
    struct ts x;
    struct tb b;
    struct kl_dest *d = open_default();
    struct kl_err err = {0};
    struct kl_chunk_result res;
    struct kl_chunk_write w;
    struct kl_checkpoint cp;
    size_t root, items, sub;
    size_t c_txt, c_big, c_dbl, c_flag, c_ts, c_bin, c_dec, c_doc, c_amt, c_var;
    static const char odd_text[] = "tab\there\nnew\\line \"dq\" 'sq' \r ünïcödé ☃ 🎉 \\N \\.";
    static const char json_doc[] = "{\"a\":[1,2,{\"b\":\"x\\ny\\\\z\"}],\"c\":null,\"d\":\"\\t\"}";
    unsigned char bytes[256];
    char *v;
    (void)state;

    snprintf(ds, sizeof ds, "%s", ds0);
    for (int i = 0; i < 256; i++)
        bytes[i] = (unsigned char)i;
    ts_init(&x);
    root = ts_root(&x, "odd");
    c_txt = ts_col(&x, root, "txt", KL_TYPE_TEXT, true, false);
    c_big = ts_col(&x, root, "big", KL_TYPE_BIGINT, true, false);
    c_dbl = ts_col(&x, root, "dbl", KL_TYPE_DOUBLE, true, false);
    c_flag = ts_col(&x, root, "flag", KL_TYPE_BOOL, true, false);
    c_ts = ts_col(&x, root, "ts", KL_TYPE_TIMESTAMP, true, false);
    c_bin = ts_col(&x, root, "bin", KL_TYPE_BINARY, true, false);
    c_dec = ts_col(&x, root, "dec", KL_TYPE_DECIMAL, true, false);
    c_doc = ts_col(&x, root, "doc", KL_TYPE_JSON, true, false);
    c_amt = ts_col(&x, root, "amount", KL_TYPE_DOUBLE, true, false);
    c_var = ts_col(&x, root, "amount__v_text", KL_TYPE_TEXT, true, false);
    x.c[root][c_var].variant = true;
    ts_col(&x, root, "we\"ird col", KL_TYPE_TEXT, true, false);
    items = ts_child(&x, "odd__items", "odd");
    sub = ts_child(&x, "odd__items__sub", "odd__items");

    tb_init(&b, &x);
    add_msg(&b, root, items, sub, "load1", "s0", 0, 3, "r0");
    add_msg(&b, root, items, sub, "load1", "s0", 1, 0, NULL);
    add_msg(&b, root, items, sub, "load1", "s0", 2, 1, "r2");
    {
        struct kl_value *r0 = &b.tr[0].cells[0];
        struct kl_value *r1 = &b.tr[0].cells[b.tr[0].n_columns];
        struct kl_value *r2 = &b.tr[0].cells[2 * b.tr[0].n_columns];
        v_text(&b, &r0[c_txt], odd_text);
        v_i64(&r0[c_big], INT64_MIN);
        r0[c_dbl].type = KL_TYPE_DOUBLE;
        r0[c_dbl].v.d = 0.1;
        r0[c_flag].type = KL_TYPE_BOOL;
        r0[c_flag].v.b = true;
        r0[c_ts].type = KL_TYPE_TIMESTAMP;
        r0[c_ts].v.us = 1700000000123456LL;
        v_typed(&b, &r0[c_bin], KL_TYPE_BINARY, bytes, sizeof bytes);
        v_typed(&b, &r0[c_dec], KL_TYPE_DECIMAL, "123456789012345678901234567890", 30);
        v_typed(&b, &r0[c_doc], KL_TYPE_JSON, json_doc, strlen(json_doc));
        r0[c_amt].type = KL_TYPE_DOUBLE;
        r0[c_amt].v.d = 12.5;
        v_text(&b, &r0[c_var + 1], "odd name");
        /* r1: only what is required; a conflicting amount went to the variant */
        v_text(&b, &r1[c_var], "twelve");
        v_text(&b, &r2[c_txt], "");
        v_i64(&r2[c_big], INT64_MAX);
        r2[c_dbl].type = KL_TYPE_DOUBLE;
        r2[c_dbl].v.d = -1e300;
        r2[c_flag].type = KL_TYPE_BOOL;
        r2[c_flag].v.b = false;
        r2[c_ts].type = KL_TYPE_TIMESTAMP;
        r2[c_ts].v.us = -1;
        v_typed(&b, &r2[c_bin], KL_TYPE_BINARY, "", 0);
        v_typed(&b, &r2[c_dec], KL_TYPE_DECIMAL, "-0.000000001", 12);
        v_typed(&b, &r2[c_doc], KL_TYPE_JSON, "[]", 2);
    }
    checkpoint_of(&cp, "s0", 2, 1);
    w = chunk_of("load1", KL_WRITE_APPEND, &b, &cp);
    w.schema_json = "{\"name\":\"kinesis\",\"version\":1,\"engine_version\":10}";
    w.schema_hash = "hash-v1";
    memset(&res, 0, sizeof res);
    if (kl_dest_write_chunk(d, ds, &w, &res, &err) != KL_OK)
        fail_msg("write_chunk: %s", err.msg);
    assert_int_equal(res.tables_created, 3);
    assert_int_equal(res.rows, 3 + 4 + 4);
    tb_free(&b);

    assert_int_equal(count_rows(ds, "odd", NULL), 3);
    assert_int_equal(count_rows(ds, "odd__items", NULL), 4);
    assert_int_equal(count_rows(ds, "odd__items__sub", NULL), 4);
    /* Every child reaches its parent. */
    assert_int_equal(scalar_ll("SELECT count(*) FROM %s c JOIN %s p ON c._dlt_parent_id = "
                               "p._dlt_id",
                               ref(ds, "odd__items__sub"), ref(ds, "odd__items")),
                     4);

    v = scalar_text("SELECT txt FROM %s WHERE n = 0", ref(ds, "odd"));
    assert_string_equal(v, odd_text);
    free(v);
    v = scalar_text("SELECT txt FROM %s WHERE n = 2", ref(ds, "odd"));
    assert_string_equal(v, "");
    free(v);
    assert_null(scalar_text("SELECT txt FROM %s WHERE n = 1", ref(ds, "odd")));
    v = scalar_text("SELECT big FROM %s WHERE n = 0", ref(ds, "odd"));
    assert_string_equal(v, "-9223372036854775808");
    free(v);
    v = scalar_text("SELECT big FROM %s WHERE n = 2", ref(ds, "odd"));
    assert_string_equal(v, "9223372036854775807");
    free(v);
    v = scalar_text("SELECT dbl FROM %s WHERE n = 0", ref(ds, "odd"));
    assert_true(strtod(v, NULL) == 0.1);
    free(v);
    v = scalar_text("SELECT dbl FROM %s WHERE n = 2", ref(ds, "odd"));
    assert_true(strtod(v, NULL) == -1e300);
    free(v);
    v = scalar_text("SELECT flag FROM %s WHERE n = 0", ref(ds, "odd"));
    assert_string_equal(v, BACKEND.true_text);
    free(v);
    {
        char expr[512];
        snprintf(expr, sizeof expr, "%s", BACKEND.ts_expr("ts"));
        v = scalar_text("SELECT %s FROM %s WHERE n = 0", expr, ref(ds, "odd"));
        assert_int_equal(BACKEND.ts_us(v), 1700000000123456LL);
        free(v);
        v = scalar_text("SELECT %s FROM %s WHERE n = 2", expr, ref(ds, "odd"));
        assert_int_equal(BACKEND.ts_us(v), -1);
        free(v);
        snprintf(expr, sizeof expr, "%s", BACKEND.hex_expr("bin"));
        v = scalar_text("SELECT %s FROM %s WHERE n = 0", expr, ref(ds, "odd"));
        assert_int_equal(strlen(v), 512);
        assert_true(strncmp(v, "000102030405", 12) == 0);
        assert_string_equal(v + 500, "fafbfcfdfeff");
        free(v);
        v = scalar_text("SELECT %s FROM %s WHERE n = 2", expr, ref(ds, "odd"));
        assert_string_equal(v, "");
        free(v);
    }
    v = scalar_text("SELECT dec FROM %s WHERE n = 0", ref(ds, "odd"));
    assert_string_equal(v, "123456789012345678901234567890");
    free(v);
    v = scalar_text("SELECT dec FROM %s WHERE n = 2", ref(ds, "odd"));
    assert_string_equal(v, "-0.000000001");
    free(v);
    v = scalar_text("SELECT %s FROM %s WHERE n = 0", BACKEND.json_path("doc", "$.a[2].b"),
                    ref(ds, "odd"));
    assert_string_equal(v, "x\ny\\z");
    free(v);
    v = scalar_text("SELECT amount__v_text FROM %s WHERE n = 1", ref(ds, "odd"));
    assert_string_equal(v, "twelve");
    free(v);
    v = scalar_text("SELECT \"we\"\"ird col\" FROM %s WHERE n = 0", ref(ds, "odd"));
    assert_string_equal(v, "odd name");
    free(v);

    /* The column types are dlt's. */
    {
        static const char *const names[] = {"txt", "big", "dbl", "flag",   "ts",
                                            "bin", "dec", "doc", "_dlt_id"};
        static const enum kl_data_type types[] = {
            KL_TYPE_TEXT,   KL_TYPE_BIGINT,  KL_TYPE_DOUBLE, KL_TYPE_BOOL, KL_TYPE_TIMESTAMP,
            KL_TYPE_BINARY, KL_TYPE_DECIMAL, KL_TYPE_JSON,   KL_TYPE_TEXT};
        for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
            char *t = BACKEND.column_type(ds, "odd", names[i]);
            assert_non_null(t);
            assert_string_equal(t, kl_sql_type_tag(BACKEND.dialect, types[i]));
            free(t);
        }
    }
    /* The schema row, and loading it back. */
    {
        char *json = NULL;
        int64_t version = 0;
        assert_int_equal(kl_dest_load_schema(d, ds, "kinesis", &json, &version, &err), KL_OK);
        assert_non_null(json);
        assert_string_equal(json, w.schema_json);
        assert_int_equal(version, x.s.version);
        free(json);
        assert_int_equal(kl_dest_load_schema(d, ds, "other", &json, &version, &err), KL_OK);
        assert_null(json);
        assert_int_equal(count_rows(ds, "_dlt_version", NULL), 1);
    }
    /* Text with NUL is refused, and nothing of that chunk lands. */
    {
        struct kl_checkpoint cp2;
        tb_init(&b, &x);
        add_msg(&b, root, items, sub, "load1", "s0", 3, 1, "r3");
        b.tr[0].cells[c_txt].type = KL_TYPE_TEXT;
        b.tr[0].cells[c_txt].v.s.ptr = tb_str(&b, "a\0b", 3);
        b.tr[0].cells[c_txt].v.s.len = 3;
        checkpoint_of(&cp2, "s0", 3, 1);
        w = chunk_of("load1", KL_WRITE_APPEND, &b, &cp2);
        assert_int_equal(kl_dest_write_chunk(d, ds, &w, NULL, &err), KL_ERR_INVALID);
        assert_non_null(strstr(err.msg, "NUL"));
        tb_free(&b);
        assert_int_equal(count_rows(ds, "odd", NULL), 3);
        assert_int_equal(resume_from(d, ds, "s0"), 3);
    }
    kl_dest_destroy(d);
}

/* A column and a child table that appear mid-load; an older batch (without
 * the new column) still loads. */
static void test_new_columns_mid_load(void **state)
{
    const char *ds0 = unique_dataset("evolve");
    char ds[64];
    struct ts x, old;
    struct tb b;
    struct kl_dest *d = open_default();
    struct kl_err err = {0};
    struct kl_chunk_result res;
    struct kl_checkpoint cp;
    struct kl_chunk_write w;
    size_t root, tags, late, late_list;
    (void)state;

    snprintf(ds, sizeof ds, "%s", ds0);
    ts_init(&x);
    root = ts_root(&x, "events");
    tags = ts_child(&x, "events__tags", "events");
    assert_int_equal(
        write_range(d, ds, &x, root, tags, "L", KL_WRITE_APPEND, "s0", 0, 10, 10, 1, &err), KL_OK);
    old = x;
    old.s.tables = old.t;
    for (size_t i = 0; i < TS_MAX_TABLES; i++)
        old.t[i].columns = old.c[i];

    late = ts_col(&x, root, "late", KL_TYPE_TEXT, true, false);
    late_list = ts_child(&x, "events__late_list", "events");
    tb_init(&b, &x);
    for (long i = 10; i < 20; i++) {
        struct kl_value *r;
        char pid[32], cid[32];
        add_msg(&b, root, tags, TS_MAX_TABLES, "L", "s0", i, 1, "v");
        r = &b.tr[b.slot_of[root]].cells[(size_t)(i - 10) * b.tr[b.slot_of[root]].n_columns];
        v_text(&b, &r[late], "late!");
        r = tb_row(&b, late_list);
        snprintf(pid, sizeof pid, "r:s0:%ld", i);
        snprintf(cid, sizeof cid, "l:s0:%ld", i);
        v_text(&b, &r[col_of(&x, late_list, "value")], "x");
        v_text(&b, &r[col_of(&x, late_list, "_dlt_parent_id")], pid);
        v_i64(&r[col_of(&x, late_list, "_dlt_list_idx")], 0);
        v_text(&b, &r[col_of(&x, late_list, "_dlt_id")], cid);
    }
    checkpoint_of(&cp, "s0", 19, 1);
    w = chunk_of("L", KL_WRITE_APPEND, &b, &cp);
    memset(&res, 0, sizeof res);
    if (kl_dest_write_chunk(d, ds, &w, &res, &err) != KL_OK)
        fail_msg("write_chunk: %s", err.msg);
    assert_int_equal(res.tables_created, 1);
    assert_int_equal(res.columns_added, 1);
    tb_free(&b);

    assert_int_equal(count_rows(ds, "events", "late IS NULL"), 10);
    assert_int_equal(count_rows(ds, "events", "late = 'late!'"), 10);
    assert_int_equal(count_rows(ds, "events__late_list", NULL), 10);

    /* A batch closed before the column existed (fewer columns) still loads. */
    assert_int_equal(
        write_range(d, ds, &old, root, tags, "L", KL_WRITE_APPEND, "s0", 20, 25, 5, 1, &err),
        KL_OK);
    assert_int_equal(count_rows(ds, "events", "late IS NULL"), 15);
    /* A second connection that never saw the DDL writes with the new schema. */
    {
        struct kl_dest *d2 = open_default();
        assert_int_equal(
            write_range(d2, ds, &x, root, tags, "L", KL_WRITE_APPEND, "s1", 0, 5, 5, 1, &err),
            KL_OK);
        kl_dest_destroy(d2);
    }
    assert_int_equal(count_rows(ds, "events", NULL), 30);
    assert_int_equal(count_distinct(ds, "events", "_kinesis_msg_id"), 30);
    kl_dest_destroy(d);
}

/* merge: delete-insert on _kinesis_msg_id; children (and grandchildren)
 * of a re-delivered message are replaced; duplicates in a chunk count once. */
static void test_merge(void **state)
{
    const char *ds0 = unique_dataset("merge");
    char ds[64];
    struct ts x;
    struct tb b;
    struct kl_dest *d = open_default();
    struct kl_err err = {0};
    struct kl_checkpoint cp;
    struct kl_chunk_write w;
    size_t root, tags, sub;
    (void)state;

    snprintf(ds, sizeof ds, "%s", ds0);
    ts_init(&x);
    root = ts_root(&x, "events");
    tags = ts_child(&x, "events__tags", "events");
    sub = ts_child(&x, "events__tags__sub", "events__tags");

    tb_init(&b, &x);
    for (long i = 0; i < 10; i++)
        add_msg(&b, root, tags, sub, "L1", "s0", i, 3, "v1");
    checkpoint_of(&cp, "s0", 9, 1);
    w = chunk_of("L1", KL_WRITE_MERGE, &b, &cp);
    if (kl_dest_write_chunk(d, ds, &w, NULL, &err) != KL_OK)
        fail_msg("write_chunk: %s", err.msg);
    tb_free(&b);

    /* 5..14 again (a re-read after a state reset), now with one tag. */
    tb_init(&b, &x);
    for (long i = 5; i < 15; i++)
        add_msg(&b, root, tags, sub, "L2", "s0", i, 1, "v2");
    checkpoint_of(&cp, "s0", 14, 1);
    w = chunk_of("L2", KL_WRITE_MERGE, &b, &cp);
    if (kl_dest_write_chunk(d, ds, &w, NULL, &err) != KL_OK)
        fail_msg("write_chunk: %s", err.msg);
    tb_free(&b);

    assert_int_equal(count_rows(ds, "events", NULL), 15);
    assert_int_equal(count_distinct(ds, "events", "_kinesis_msg_id"), 15);
    assert_int_equal(count_rows(ds, "events", "label = 'v1'"), 5);
    assert_int_equal(count_rows(ds, "events", "label = 'v2'"), 10);
    assert_int_equal(count_rows(ds, "events__tags", NULL), 5 * 3 + 10);
    assert_int_equal(count_rows(ds, "events__tags", "value LIKE 'v2%'"), 10);
    assert_int_equal(count_rows(ds, "events__tags__sub", NULL), 5 * 3 + 10);
    assert_int_equal(scalar_ll("SELECT count(*) FROM %s g LEFT JOIN %s c ON g._dlt_parent_id = "
                               "c._dlt_id WHERE c._dlt_id IS NULL",
                               ref(ds, "events__tags__sub"), ref(ds, "events__tags")),
                     0);

    /* The same message twice in one chunk: one row, its children once. */
    tb_init(&b, &x);
    add_msg(&b, root, tags, sub, "L3", "s0", 20, 2, "v3");
    add_msg(&b, root, tags, sub, "L3", "s0", 20, 2, "v3");
    add_msg(&b, root, tags, sub, "L3", "s0", 21, 2, "v3");
    checkpoint_of(&cp, "s0", 21, 1);
    w = chunk_of("L3", KL_WRITE_MERGE, &b, &cp);
    if (kl_dest_write_chunk(d, ds, &w, NULL, &err) != KL_OK)
        fail_msg("write_chunk: %s", err.msg);
    tb_free(&b);
    assert_int_equal(count_rows(ds, "events", NULL), 17);
    assert_int_equal(count_rows(ds, "events__tags", "value LIKE 'v3%'"), 4);
    assert_int_equal(count_rows(ds, "events__tags__sub", "value LIKE 'v3%'"), 4);

    /* merge twice with the same chunk: no duplicates. */
    assert_int_equal(
        write_range(d, ds, &x, root, tags, "L4", KL_WRITE_MERGE, "s1", 0, 20, 10, 1, &err), KL_OK);
    assert_int_equal(
        write_range(d, ds, &x, root, tags, "L4", KL_WRITE_MERGE, "s1", 0, 20, 10, 1, &err), KL_OK);
    assert_int_equal(count_rows(ds, "events", "_kinesis__shard_id = 's1'"), 20);
    assert_int_equal(count_distinct(ds, "events__tags", "_dlt_id"),
                     count_rows(ds, "events__tags", NULL));
    kl_dest_destroy(d);
}

/* append: plain; replace: the root family is emptied once per load, by
 * whichever writer comes first, and a load without chunks still empties it. */
static void test_append_and_replace(void **state)
{
    const char *ds0 = unique_dataset("replace");
    char ds[64];
    struct ts x;
    struct tb b;
    struct kl_dest *d = open_default(), *d2 = open_default();
    struct kl_err err = {0};
    struct kl_chunk_result res;
    struct kl_checkpoint cp;
    struct kl_chunk_write w;
    struct kl_load_complete c;
    size_t root, tags;
    (void)state;

    snprintf(ds, sizeof ds, "%s", ds0);
    ts_init(&x);
    root = ts_root(&x, "events");
    tags = ts_child(&x, "events__tags", "events");
    ts_root(&x, "other"); /* another stream's table in the same dataset */

    assert_int_equal(
        write_range(d, ds, &x, root, tags, "L1", KL_WRITE_APPEND, "s0", 0, 10, 5, 1, &err), KL_OK);
    assert_int_equal(
        write_range(d, ds, &x, 2, TS_MAX_TABLES, "L1", KL_WRITE_APPEND, "s9", 0, 3, 3, 1, &err),
        KL_OK);
    assert_int_equal(count_rows(ds, "events", NULL), 10);
    assert_int_equal(count_rows(ds, "events__tags", NULL), 20);

    /* L2 replaces: two writers (two shards), each chunk in its own transaction. */
    tb_init(&b, &x);
    for (long i = 100; i < 105; i++)
        add_msg(&b, root, tags, TS_MAX_TABLES, "L2", "s0", i, 1, "L2");
    checkpoint_of(&cp, "s0", 104, 1);
    w = chunk_of("L2", KL_WRITE_REPLACE, &b, &cp);
    memset(&res, 0, sizeof res);
    if (kl_dest_write_chunk(d, ds, &w, &res, &err) != KL_OK)
        fail_msg("write_chunk: %s", err.msg);
    assert_true(res.truncated);
    tb_free(&b);
    tb_init(&b, &x);
    for (long i = 0; i < 5; i++)
        add_msg(&b, root, tags, TS_MAX_TABLES, "L2", "s1", i, 1, "L2");
    checkpoint_of(&cp, "s1", 4, 1);
    w = chunk_of("L2", KL_WRITE_REPLACE, &b, &cp);
    memset(&res, 0, sizeof res);
    if (kl_dest_write_chunk(d2, ds, &w, &res, &err) != KL_OK)
        fail_msg("write_chunk: %s", err.msg);
    assert_false(res.truncated);
    tb_free(&b);
    /* A third chunk of L2 on the first connection: no truncation either. */
    assert_int_equal(
        write_range(d, ds, &x, root, tags, "L2", KL_WRITE_REPLACE, "s0", 105, 110, 5, 1, &err),
        KL_OK);
    assert_int_equal(count_rows(ds, "events", NULL), 15);
    assert_int_equal(count_rows(ds, "events", "_dlt_load_id = 'L2'"), 15);
    assert_int_equal(count_rows(ds, "events__tags", NULL), 5 + 5 + 10);
    assert_int_equal(count_rows(ds, "other", NULL), 3); /* untouched */

    /* L3 replaces and reads nothing: complete_load empties the family. */
    c = load_end("L3", "stream", KL_WRITE_REPLACE, -1);
    c.root_table = "events";
    if (kl_dest_complete_load(d2, ds, &c, &err) != KL_OK)
        fail_msg("complete_load: %s", err.msg);
    assert_int_equal(count_rows(ds, "events", NULL), 0);
    assert_int_equal(count_rows(ds, "events__tags", NULL), 0);
    assert_int_equal(count_rows(ds, "other", NULL), 3);
    kl_dest_destroy(d);
    kl_dest_destroy(d2);
}

static void test_dead_letters(void **state)
{
    const char *ds0 = unique_dataset("dead");
    char ds[64];
    struct ts x;
    struct tb b;
    struct kl_dest *d = open_default();
    struct kl_err err = {0};
    struct kl_chunk_result res;
    struct kl_checkpoint cp;
    struct kl_chunk_write w;
    size_t root;
    char *v, expr[512];
    (void)state;

    snprintf(ds, sizeof ds, "%s", ds0);
    ts_init(&x);
    root = ts_root(&x, "events");
    tb_init(&b, &x);
    add_msg(&b, root, TS_MAX_TABLES, TS_MAX_TABLES, "L", "s0", 0, 0, NULL);
    add_dead_letter(&b, "s0", 1, "not a JSON object:\tarray\nline 2");
    add_dead_letter(&b, "s0", 2, "invalid UTF-8");
    b.dl[1].sub_sequence = 3;
    checkpoint_of(&cp, "s0", 2, 1);
    w = chunk_of("L", KL_WRITE_APPEND, &b, &cp);
    memset(&res, 0, sizeof res);
    if (kl_dest_write_chunk(d, ds, &w, &res, &err) != KL_OK)
        fail_msg("write_chunk: %s", err.msg);
    assert_int_equal(res.dead_letters, 2);
    tb_free(&b);

    assert_int_equal(count_rows(ds, "_kinesis_dead_letters", NULL), 2);
    assert_int_equal(count_rows(ds, "_kinesis_dead_letters",
                                "load_id = 'L' AND stream_name = 'stream' AND shard_id = 's0' AND "
                                "pipeline_name = 'kinesis_pipeline'"),
                     2);
    v = scalar_text("SELECT error FROM %s WHERE sequence = '%d'", ref(ds, "_kinesis_dead_letters"),
                    SEQ_BASE + 1);
    assert_string_equal(v, "not a JSON object:\tarray\nline 2");
    free(v);
    assert_null(scalar_text("SELECT sub_sequence FROM %s WHERE sequence = '%d'",
                            ref(ds, "_kinesis_dead_letters"), SEQ_BASE + 1));
    assert_int_equal(scalar_ll("SELECT sub_sequence FROM %s WHERE sequence = '%d'",
                               ref(ds, "_kinesis_dead_letters"), SEQ_BASE + 2),
                     3);
    snprintf(expr, sizeof expr, "%s", BACKEND.hex_expr("data"));
    v = scalar_text("SELECT %s FROM %s WHERE sequence = '%d'", expr,
                    ref(ds, "_kinesis_dead_letters"), SEQ_BASE + 1);
    assert_string_equal(v, "6e6f7400ff097b");
    free(v);
    snprintf(expr, sizeof expr, "%s", BACKEND.ts_expr("arrival_at"));
    v = scalar_text("SELECT %s FROM %s WHERE sequence = '%d'", expr,
                    ref(ds, "_kinesis_dead_letters"), SEQ_BASE + 2);
    assert_int_equal(BACKEND.ts_us(v), (1700000000000LL + 2) * 1000);
    free(v);
    kl_dest_destroy(d);
}

/* A checkpoint with an older fencing token is refused and nothing of its
 * chunk is visible; equal and newer tokens pass. */
static void test_fencing(void **state)
{
    const char *ds0 = unique_dataset("fence");
    char ds[64];
    struct ts x;
    struct kl_dest *d = open_default(), *zombie = open_default();
    struct kl_err err = {0};
    struct kl_dest_state st;
    size_t root, tags;
    (void)state;

    snprintf(ds, sizeof ds, "%s", ds0);
    ts_init(&x);
    root = ts_root(&x, "events");
    tags = ts_child(&x, "events__tags", "events");
    assert_int_equal(
        write_range(d, ds, &x, root, tags, "L", KL_WRITE_APPEND, "s0", 0, 5, 5, 5, &err), KL_OK);
    /* The stalled worker with token 4 wakes up and writes 5..9. */
    assert_int_equal(
        write_range(zombie, ds, &x, root, tags, "L", KL_WRITE_APPEND, "s0", 5, 10, 5, 4, &err),
        KL_ERR_CONFLICT);
    assert_non_null(strstr(err.msg, "fencing"));
    assert_int_equal(count_rows(ds, "events", NULL), 5);
    assert_int_equal(count_rows(ds, "events__tags", NULL), 10);
    kl_dest_state_init(&st);
    assert_int_equal(kl_dest_read_state(d, ds, "kinesis_pipeline", "stream", &st, &err), KL_OK);
    assert_int_equal(st.n_checkpoints, 1);
    assert_int_equal(st.checkpoints[0].fencing_token, 5);
    assert_int_equal(atol(st.checkpoints[0].position.sequence), SEQ_BASE + 4);
    assert_true(st.checkpoints[0].updated_ms > 1600000000000LL);
    kl_dest_state_free(&st);
    /* Same token (the owner itself) and a newer owner pass; the old one stays out. */
    assert_int_equal(
        write_range(d, ds, &x, root, tags, "L", KL_WRITE_APPEND, "s0", 5, 10, 5, 5, &err), KL_OK);
    assert_int_equal(
        write_range(zombie, ds, &x, root, tags, "L", KL_WRITE_APPEND, "s0", 10, 15, 5, 7, &err),
        KL_OK);
    assert_int_equal(
        write_range(d, ds, &x, root, tags, "L", KL_WRITE_APPEND, "s0", 15, 20, 5, 6, &err),
        KL_ERR_CONFLICT);
    assert_int_equal(count_rows(ds, "events", NULL), 15);
    assert_int_equal(resume_from(d, ds, "s0"), 15);
    /* Another shard has its own token. */
    assert_int_equal(
        write_range(d, ds, &x, root, tags, "L", KL_WRITE_APPEND, "s1", 0, 5, 5, 1, &err), KL_OK);
    kl_dest_destroy(d);
    kl_dest_destroy(zombie);
}

/* ---- crash safety ---- */

struct crash_plan {
    enum kl_dest_step step;
    int occurrence; /* crash at the n-th time the step is reached (1-based) */
    int seen;
    bool fired;
};

static bool crash_hook(void *ctx, enum kl_dest_step step)
{
    struct crash_plan *p = ctx;
    if (p->fired || step != p->step)
        return false;
    if (++p->seen < p->occurrence)
        return false;
    p->fired = true;
    return true;
}

/* One load with a schema change in its second chunk, dead letters, two
 * tables: a crash after any step, then resume from the committed checkpoint. */
static void crash_run(enum kl_dest_step step, int occurrence, enum kl_write_disposition disp)
{
    const char *ds0 = unique_dataset("crash");
    char ds[64];
    struct ts x;
    struct crash_plan plan = {step, occurrence, 0, false};
    struct kl_dest *d;
    struct kl_err err = {0};
    size_t root, tags, extra = 0;
    long next = 0;
    int attempts = 0;
    const long total = 40, chunk = 10;

    snprintf(ds, sizeof ds, "%s", ds0);
    d = open_hooked(crash_hook, &plan);
    ts_init(&x);
    root = ts_root(&x, "events");
    tags = ts_child(&x, "events__tags", "events");
    while (next < total) {
        long end = next + chunk < total ? next + chunk : total;
        struct tb b;
        struct kl_checkpoint cp;
        struct kl_chunk_write w;
        struct schema_text text;
        int rc;

        if (next >= 10 && extra == 0)
            extra = ts_col(&x, root, "extra", KL_TYPE_BIGINT, true, false);
        tb_init(&b, &x);
        for (long i = next; i < end; i++) {
            add_msg(&b, root, tags, TS_MAX_TABLES, "L", "s0", i, 2, "v");
            if (extra != 0)
                v_i64(&b.tr[b.slot_of[root]]
                           .cells[(size_t)(i - next) * b.tr[b.slot_of[root]].n_columns + extra],
                      i);
        }
        add_dead_letter(&b, "s0", end - 1, "bad");
        checkpoint_of(&cp, "s0", end - 1, 1);
        w = chunk_of("L", disp, &b, &cp);
        with_schema_text(&w, &x, &text);
        rc = kl_dest_write_chunk(d, ds, &w, NULL, &err);
        tb_free(&b);
        if (++attempts > 20)
            fail_msg("no progress");
        if (rc == KL_ERR_UNAVAILABLE) {
            /* A new process would start here: resume from the destination. */
            next = resume_from(d, ds, "s0");
            continue;
        }
        if (rc != KL_OK)
            fail_msg("%s after %s: %s", BACKEND.name, kl_dest_step_name(step), err.msg);
        next = end;
    }
    if (!plan.fired)
        fail_msg("the crash after %s #%d never happened", kl_dest_step_name(step), occurrence);
    assert_int_equal(count_rows(ds, "events", NULL), total);
    assert_int_equal(count_distinct(ds, "events", "_kinesis_msg_id"), total);
    assert_int_equal(count_rows(ds, "events__tags", NULL), 2 * total);
    assert_int_equal(count_distinct(ds, "events__tags", "_dlt_id"), 2 * total);
    assert_int_equal(count_rows(ds, "events", "extra IS NOT NULL"), total - 10);
    assert_int_equal(count_rows(ds, "_kinesis_dead_letters", NULL), total / chunk);
    assert_int_equal(resume_from(d, ds, "s0"), total);
    kl_dest_destroy(d);
}

static void test_crash_between_every_step(void **state)
{
    static const struct {
        enum kl_dest_step step;
        int occurrence;
    } points[] = {
        {KL_DEST_STEP_BEGIN, 2},   {KL_DEST_STEP_CHECKPOINT, 2}, {KL_DEST_STEP_DDL, 2},
        {KL_DEST_STEP_VERSION, 2}, {KL_DEST_STEP_REPLACE, 2},    {KL_DEST_STEP_MERGE_DELETE, 2},
        {KL_DEST_STEP_ROWS, 3},    {KL_DEST_STEP_ROWS, 4},       {KL_DEST_STEP_DEAD_LETTERS, 2},
        {KL_DEST_STEP_COMMIT, 2},  {KL_DEST_STEP_COMMIT, 4},
    };
    (void)state;
    for (size_t i = 0; i < sizeof points / sizeof points[0]; i++) {
        crash_run(points[i].step, points[i].occurrence, KL_WRITE_APPEND);
        crash_run(points[i].step, points[i].occurrence, KL_WRITE_MERGE);
    }
}

/* A real crash: a child process writing chunks is SIGKILLed in the middle
 * of one (its rows partly sent); the parent resumes from the checkpoint. */
static bool kill_hook(void *ctx, enum kl_dest_step step)
{
    int *fds = ctx;
    static int rows_seen;
    if (step == KL_DEST_STEP_ROWS && ++rows_seen == 7) {
        char c = 'k';
        if (write(fds[1], &c, 1) != 1)
            _exit(3);
        pause(); /* mid-transaction until the parent kills us */
    }
    return false;
}

static void test_sigkill_mid_chunk(void **state)
{
    const char *ds0 = unique_dataset("kill");
    char ds[64];
    struct ts x;
    struct kl_dest *d;
    struct kl_err err = {0};
    size_t root, tags;
    int fds[2];
    pid_t pid;
    char c;
    int status;
    long next;
    (void)state;

    snprintf(ds, sizeof ds, "%s", ds0);
    ts_init(&x);
    root = ts_root(&x, "events");
    tags = ts_child(&x, "events__tags", "events");
    d = open_default();
    assert_int_equal(kl_dest_prepare(d, ds, &err), KL_OK);
    assert_int_equal(pipe(fds), 0);
    fflush(NULL);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct kl_dest_options o;
        struct kl_dest *cd;
        close(fds[0]);
        kl_dest_options_init(&o);
        o.crash_after = kill_hook;
        o.crash_ctx = fds;
        cd = BACKEND.open(&o);
        /* chunks of 10: the 7th table sent is the 4th chunk's root rows */
        write_range(cd, ds, &x, root, tags, "L", KL_WRITE_APPEND, "s0", 0, 100, 10, 1, &err);
        _exit(2); /* never reached when the kill comes */
    }
    close(fds[1]);
    assert_int_equal(read(fds[0], &c, 1), 1);
    assert_int_equal(kill(pid, SIGKILL), 0);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status));
    close(fds[0]);

    next = resume_from(d, ds, "s0");
    assert_int_equal(next, 30); /* three chunks committed, the fourth gone */
    assert_int_equal(count_rows(ds, "events", NULL), 30);
    assert_int_equal(count_rows(ds, "events__tags", NULL), 60);
    assert_int_equal(
        write_range(d, ds, &x, root, tags, "L", KL_WRITE_APPEND, "s0", next, 100, 10, 2, &err),
        KL_OK);
    assert_int_equal(count_rows(ds, "events", NULL), 100);
    assert_int_equal(count_distinct(ds, "events", "_kinesis_msg_id"), 100);
    assert_int_equal(count_distinct(ds, "events__tags", "_dlt_id"), 200);
    assert_int_equal(count_rows(ds, "events__tags", NULL), 200);
    kl_dest_destroy(d);
}

/* ---- concurrency ---- */

#define N_WRITERS 4
#define W_CHUNKS 6

struct writer {
    struct kl_dest_factory *factory;
    const char *ds;
    enum kl_write_disposition disp;
    int id;
    int rc;
    char msg[256];
    int retries;
};

/* Each writer has its own copy of the schema (as separate replicas would);
 * all grow the same shared columns and child table, and their own. */
static void *writer_main(void *arg)
{
    struct writer *wr = arg;
    struct kl_dest *d = NULL;
    struct kl_err err = {0};
    struct ts x;
    size_t root, tags;
    char shard[16];

    snprintf(shard, sizeof shard, "w%d", wr->id);
    wr->rc = kl_dest_factory_open(wr->factory, &d, &err);
    if (wr->rc != KL_OK) {
        snprintf(wr->msg, sizeof wr->msg, "%s", err.msg);
        return NULL;
    }
    ts_init(&x);
    root = ts_root(&x, "events");
    tags = ts_child(&x, "events__tags", "events");
    for (int k = 0; k < W_CHUNKS; k++) {
        char name[32];
        struct tb b;
        struct kl_checkpoint cp;
        struct kl_chunk_write w;
        size_t shared, own;
        int rc;

        snprintf(name, sizeof name, "shared_%d", k);
        shared = ts_col(&x, root, name, KL_TYPE_BIGINT, true, false);
        snprintf(name, sizeof name, "own_%d_%d", wr->id, k);
        own = ts_col(&x, root, name, KL_TYPE_TEXT, true, false);
        if (k == 2) {
            size_t t = ts_child(&x, "events__late", "events");
            (void)t;
        }
        do {
            tb_init(&b, &x);
            for (long i = k * 10; i < k * 10 + 10; i++) {
                struct kl_value *r;
                add_msg(&b, root, tags, TS_MAX_TABLES, "L", shard, i, 1, "c");
                r = &b.tr[b.slot_of[root]]
                         .cells[(size_t)(i - k * 10) * b.tr[b.slot_of[root]].n_columns];
                v_i64(&r[shared], i);
                v_text(&b, &r[own], shard);
            }
            checkpoint_of(&cp, shard, k * 10 + 9, 1);
            w = chunk_of("L", wr->disp, &b, &cp);
            rc = kl_dest_write_chunk(d, wr->ds, &w, NULL, &err);
            tb_free(&b);
            /* A deadlock between concurrent DDL is retryable; a retry after
             * it must not double anything. */
            if (rc == KL_ERR_UNAVAILABLE)
                wr->retries++;
        } while (rc == KL_ERR_UNAVAILABLE && wr->retries < 50);
        if (rc != KL_OK) {
            wr->rc = rc;
            snprintf(wr->msg, sizeof wr->msg, "%s", err.msg);
            break;
        }
    }
    kl_dest_destroy(d);
    return NULL;
}

static void concurrent_writers(enum kl_write_disposition disp)
{
    const char *ds0 = unique_dataset("conc");
    char ds[64];
    struct kl_dest_options o;
    struct kl_dest_factory *f;
    struct writer wr[N_WRITERS];
    pthread_t th[N_WRITERS];

    snprintf(ds, sizeof ds, "%s", ds0);
    kl_dest_options_init(&o);
    o.busy_timeout_ms = 60000;
    f = BACKEND.factory(&o);
    for (int i = 0; i < N_WRITERS; i++) {
        memset(&wr[i], 0, sizeof wr[i]);
        wr[i].factory = f;
        wr[i].ds = ds;
        wr[i].disp = disp;
        wr[i].id = i;
        assert_int_equal(pthread_create(&th[i], NULL, writer_main, &wr[i]), 0);
    }
    for (int i = 0; i < N_WRITERS; i++)
        assert_int_equal(pthread_join(th[i], NULL), 0);
    for (int i = 0; i < N_WRITERS; i++) {
        if (wr[i].rc != KL_OK)
            fail_msg("writer %d: %s", i, wr[i].msg);
        if (wr[i].retries > 0)
            fprintf(stderr, "note: %s writer %d retried %d time(s) after a retryable failure\n",
                    kl_write_disposition_name(disp), i, wr[i].retries);
    }
    assert_int_equal(count_rows(ds, "events", NULL), N_WRITERS * W_CHUNKS * 10);
    assert_int_equal(count_distinct(ds, "events", "_kinesis_msg_id"), N_WRITERS * W_CHUNKS * 10);
    assert_int_equal(count_rows(ds, "events__tags", NULL), N_WRITERS * W_CHUNKS * 10);
    for (int k = 0; k < W_CHUNKS; k++) {
        char col[32], where[64];
        snprintf(col, sizeof col, "shared_%d", k);
        snprintf(where, sizeof where, "shared_%d IS NOT NULL", k);
        assert_int_equal(count_rows(ds, "events", where), N_WRITERS * 10);
        for (int i = 0; i < N_WRITERS; i++) {
            char *t;
            snprintf(col, sizeof col, "own_%d_%d", i, k);
            t = BACKEND.column_type(ds, "events", col);
            assert_non_null(t);
            free(t);
        }
    }
    {
        char *t = BACKEND.column_type(ds, "events__late", "_dlt_id");
        assert_non_null(t);
        free(t);
    }
    kl_dest_factory_destroy(f);
}

/* Writers of several shards at once, each growing the schema (shared and
 * own columns, a new child table): DDL under the lock does not collide, and
 * under merge the index creation and deletes do not deadlock. */
static void test_concurrent_writers(void **state)
{
    (void)state;
    concurrent_writers(KL_WRITE_APPEND);
    concurrent_writers(KL_WRITE_MERGE);
}

/* Two writers disagree on a column's type: the later one learns its schema
 * is stale and writes nothing. */
static void test_stale_schema(void **state)
{
    const char *ds0 = unique_dataset("stale");
    char ds[64];
    struct ts a, b;
    struct kl_dest *da = open_default(), *db = open_default();
    struct kl_err err = {0};
    size_t ra, rb;
    (void)state;

    snprintf(ds, sizeof ds, "%s", ds0);
    ts_init(&a);
    ra = ts_root(&a, "events");
    ts_col(&a, ra, "x", KL_TYPE_BIGINT, true, false);
    ts_init(&b);
    rb = ts_root(&b, "events");
    ts_col(&b, rb, "x", KL_TYPE_TEXT, true, false);
    assert_int_equal(
        write_range(da, ds, &a, ra, TS_MAX_TABLES, "L", KL_WRITE_APPEND, "s0", 0, 5, 5, 1, &err),
        KL_OK);
    if (BACKEND.dialect == KL_SQL_POSTGRES) {
        assert_int_equal(write_range(db, ds, &b, rb, TS_MAX_TABLES, "L", KL_WRITE_APPEND, "s1", 0,
                                     5, 5, 1, &err),
                         KL_ERR_EXPIRED);
        assert_non_null(strstr(err.msg, "stale schema"));
        assert_int_equal(count_rows(ds, "events", NULL), 5);
        assert_int_equal(resume_from(db, ds, "s1"), 0);
    } else {
        /* SQLite's BIGINT and TEXT declared types differ as well. */
        assert_int_equal(write_range(db, ds, &b, rb, TS_MAX_TABLES, "L", KL_WRITE_APPEND, "s1", 0,
                                     5, 5, 1, &err),
                         KL_ERR_EXPIRED);
    }
    kl_dest_destroy(da);
    kl_dest_destroy(db);
}

/* State: checkpoints and the run time round-trip; complete_load writes
 * dlt's _dlt_loads and _dlt_pipeline_state rows once; delete forgets. */
static void test_state_and_complete_load(void **state)
{
    const char *ds0 = unique_dataset("state");
    char ds[64];
    struct ts x;
    struct kl_dest *d = open_default();
    struct kl_err err = {0};
    struct kl_dest_state st;
    struct kl_load_complete c;
    size_t root;
    char *v;
    (void)state;

    snprintf(ds, sizeof ds, "%s", ds0);
    ts_init(&x);
    root = ts_root(&x, "events");
    kl_dest_state_init(&st);
    assert_int_equal(kl_dest_read_state(d, ds, "kinesis_pipeline", "stream", &st, &err), KL_OK);
    assert_int_equal(st.n_checkpoints, 0);
    assert_false(st.has_last_run);

    assert_int_equal(
        write_range(d, ds, &x, root, TS_MAX_TABLES, "L1", KL_WRITE_APPEND, "s1", 0, 3, 3, 9, &err),
        KL_OK);
    assert_int_equal(
        write_range(d, ds, &x, root, TS_MAX_TABLES, "L1", KL_WRITE_APPEND, "s0", 0, 7, 7, 2, &err),
        KL_OK);
    /* A KPL sub-record position. */
    {
        struct kl_checkpoint cp;
        struct kl_chunk_write w;
        checkpoint_of(&cp, "s2", 4, 1);
        cp.position.sub_sequence = 3;
        w = chunk_of("L1", KL_WRITE_APPEND, NULL, &cp);
        assert_int_equal(kl_dest_write_chunk(d, ds, &w, NULL, &err), KL_OK);
    }
    c = load_end("L1", "stream", KL_WRITE_APPEND, 1700000000500LL);
    if (kl_dest_complete_load(d, ds, &c, &err) != KL_OK)
        fail_msg("complete_load: %s", err.msg);
    assert_int_equal(kl_dest_complete_load(d, ds, &c, &err), KL_OK); /* idempotent */

    assert_int_equal(kl_dest_read_state(d, ds, "kinesis_pipeline", "stream", &st, &err), KL_OK);
    assert_int_equal(st.n_checkpoints, 3);
    assert_string_equal(st.checkpoints[0].position.shard_id, "s0");
    assert_int_equal(atol(st.checkpoints[0].position.sequence), SEQ_BASE + 6);
    assert_int_equal(st.checkpoints[0].fencing_token, 2);
    assert_int_equal(st.checkpoints[0].position.sub_sequence, -1);
    assert_string_equal(st.checkpoints[1].position.shard_id, "s1");
    assert_int_equal(st.checkpoints[1].fencing_token, 9);
    assert_int_equal(st.checkpoints[2].position.sub_sequence, 3);
    assert_true(st.has_last_run);
    assert_int_equal(st.last_run_ms, 1700000000500LL);

    assert_int_equal(count_rows(ds, "_dlt_loads", NULL), 1);
    assert_int_equal(
        count_rows(ds, "_dlt_loads", "load_id = 'L1' AND status = 0 AND schema_name = 'kinesis'"),
        1);
    assert_int_equal(count_rows(ds, "_dlt_pipeline_state", NULL), 1);
    assert_int_equal(count_rows(ds, "_dlt_pipeline_state",
                                "version = 1 AND engine_version = 4 AND pipeline_name = "
                                "'kinesis_pipeline' AND _dlt_load_id = 'L1'"),
                     1);
    v = scalar_text("SELECT state FROM %s", ref(ds, "_dlt_pipeline_state"));
    assert_non_null(v);
    assert_true(strncmp(v, "eN", 2) == 0); /* base64 of the zlib header 78 DA (level 9) */
    free(v);

    /* A second load bumps the state version; another stream keeps its own run time. */
    c.load_id = "L2";
    c.next_run_ms = 1700000100000LL;
    assert_int_equal(kl_dest_complete_load(d, ds, &c, &err), KL_OK);
    c.load_id = "L3";
    c.stream_name = "stream_b";
    c.next_run_ms = 5;
    assert_int_equal(kl_dest_complete_load(d, ds, &c, &err), KL_OK);
    assert_int_equal(scalar_ll("SELECT max(version) FROM %s", ref(ds, "_dlt_pipeline_state")), 3);
    assert_int_equal(kl_dest_read_state(d, ds, "kinesis_pipeline", "stream", &st, &err), KL_OK);
    assert_int_equal(st.last_run_ms, 1700000100000LL);

    assert_int_equal(kl_dest_delete_state(d, ds, "kinesis_pipeline", "stream", &err), KL_OK);
    assert_int_equal(kl_dest_read_state(d, ds, "kinesis_pipeline", "stream", &st, &err), KL_OK);
    assert_int_equal(st.n_checkpoints, 0);
    assert_false(st.has_last_run);
    assert_int_equal(kl_dest_read_state(d, ds, "kinesis_pipeline", "stream_b", &st, &err), KL_OK);
    assert_true(st.has_last_run);
    kl_dest_state_free(&st);
    assert_int_equal(count_rows(ds, "events", NULL), 10); /* rows stay */
    kl_dest_destroy(d);
}

/* The steps of one chunk's transaction, in order, as the crash hook sees them. */
struct step_log {
    char text[256];
};

static bool log_hook(void *ctx, enum kl_dest_step step)
{
    struct step_log *l = ctx;
    size_t n = strlen(l->text);
    snprintf(l->text + n, sizeof l->text - n, "%s%s", n > 0 ? " " : "", kl_dest_step_name(step));
    return false;
}

/* Writes messages [from, to) of shard s0 as one chunk (with a dead letter
 * when `dead`) and checks the steps it went through. */
static struct kl_chunk_result logged_chunk(struct kl_dest *d, struct step_log *log, const char *ds,
                                           const struct ts *x, size_t root, size_t tags,
                                           const char *load_id, enum kl_write_disposition disp,
                                           long from, long to, bool dead, const char *want)
{
    struct tb b;
    struct kl_checkpoint cp;
    struct kl_chunk_write w;
    struct kl_chunk_result res;
    struct kl_err err = {0};
    struct schema_text text;

    tb_init(&b, x);
    for (long i = from; i < to; i++)
        add_msg(&b, root, tags, TS_MAX_TABLES, load_id, "s0", i, 2, "v");
    if (dead)
        add_dead_letter(&b, "s0", to - 1, "bad");
    checkpoint_of(&cp, "s0", to - 1, 1);
    w = chunk_of(load_id, disp, from < to ? &b : NULL, &cp);
    with_schema_text(&w, x, &text);
    memset(&res, 0xff, sizeof res);
    log->text[0] = '\0';
    if (kl_dest_write_chunk(d, ds, &w, &res, &err) != KL_OK)
        fail_msg("write_chunk: %s", err.msg);
    tb_free(&b);
    assert_string_equal(log->text, want);
    return res;
}

/* Every chunk reports the same steps in the same order, whatever it had to
 * do in them; the result counts what this call did. */
static void test_step_order(void **state)
{
    static const char *const with_rows = "begin checkpoint ddl version replace merge_delete rows "
                                         "rows dead_letters commit";
    static const char *const no_rows = "begin checkpoint ddl version replace merge_delete "
                                       "dead_letters commit";
    const char *ds0 = unique_dataset("steps");
    char ds[64];
    struct ts x;
    struct step_log log = {""};
    struct kl_dest *d;
    struct kl_chunk_result r;
    size_t root, tags;
    (void)state;

    snprintf(ds, sizeof ds, "%s", ds0);
    d = open_hooked(log_hook, &log);
    ts_init(&x);
    root = ts_root(&x, "events");
    tags = ts_child(&x, "events__tags", "events");

    r = logged_chunk(d, &log, ds, &x, root, tags, "L1", KL_WRITE_APPEND, 0, 3, true, with_rows);
    assert_int_equal(r.rows, 3 + 6);
    assert_int_equal(r.dead_letters, 1);
    assert_int_equal(r.tables_created, 2);
    assert_int_equal(r.columns_added, 0);
    assert_false(r.truncated);
    r = logged_chunk(d, &log, ds, &x, root, tags, "L1", KL_WRITE_APPEND, 3, 5, false, with_rows);
    assert_int_equal(r.rows, 2 + 4);
    assert_int_equal(r.dead_letters, 0);
    assert_int_equal(r.tables_created, 0);
    ts_col(&x, root, "extra", KL_TYPE_BIGINT, true, false);
    r = logged_chunk(d, &log, ds, &x, root, tags, "L1", KL_WRITE_APPEND, 5, 6, false, with_rows);
    assert_int_equal(r.tables_created, 0);
    assert_int_equal(r.columns_added, 1);

    r = logged_chunk(d, &log, ds, &x, root, tags, "L2", KL_WRITE_REPLACE, 6, 8, false, with_rows);
    assert_true(r.truncated);
    assert_int_equal(r.rows, 2 + 4);
    r = logged_chunk(d, &log, ds, &x, root, tags, "L2", KL_WRITE_REPLACE, 8, 9, true, with_rows);
    assert_false(r.truncated);
    assert_int_equal(count_rows(ds, "events", NULL), 3);

    /* Merge: messages 7 and 8 again, and a new one. */
    r = logged_chunk(d, &log, ds, &x, root, tags, "L3", KL_WRITE_MERGE, 7, 10, false, with_rows);
    assert_int_equal(r.rows, 3 + 6);
    assert_int_equal(count_rows(ds, "events", NULL), 4);
    assert_int_equal(count_rows(ds, "events__tags", NULL), 8);

    /* A checkpoint-only chunk. */
    r = logged_chunk(d, &log, ds, &x, root, tags, "L3", KL_WRITE_APPEND, 10, 10, false, no_rows);
    assert_int_equal(r.rows, 0);
    assert_int_equal(r.dead_letters, 0);
    assert_int_equal(resume_from(d, ds, "s0"), 10);
    kl_dest_destroy(d);
}

/* A state column decoded (malloc'ed JSON); frees `b64`. */
static char *decoded_state(char *b64)
{
    char *json = NULL;
    size_t len = 0;
    struct kl_err err = {0};

    assert_non_null(b64);
    if (kl_dlt_state_decode(b64, &json, &len, &err) != KL_OK)
        fail_msg("stored state: %s", err.msg);
    free(b64);
    return json;
}

/* The newest `_dlt_pipeline_state` row's state, decoded (malloc'ed JSON). */
static char *stored_state(const char *ds)
{
    return decoded_state(scalar_text("SELECT state FROM %s ORDER BY version DESC LIMIT 1",
                                     ref(ds, "_dlt_pipeline_state")));
}

/* The state document lists every stream of the pipeline with its shards
 * and run time. Postgres lists them as read (streams with checkpoints,
 * then streams with only a run time); SQLite sorts them by name. */
static void test_state_document(void **state)
{
    const char *ds0 = unique_dataset("statedoc");
    char ds[64];
    struct ts x;
    struct kl_dest *d = open_default();
    struct kl_err err = {0};
    struct kl_load_complete c;
    size_t root;
    char *json;
    cJSON *doc, *res, *kin;
    const char *first;
    (void)state;

    snprintf(ds, sizeof ds, "%s", ds0);
    ts_init(&x);
    root = ts_root(&x, "events");
    assert_int_equal(
        write_range(d, ds, &x, root, TS_MAX_TABLES, "L1", KL_WRITE_APPEND, "s1", 0, 3, 3, 1, &err),
        KL_OK);
    assert_int_equal(
        write_range(d, ds, &x, root, TS_MAX_TABLES, "L1", KL_WRITE_APPEND, "s0", 0, 2, 2, 1, &err),
        KL_OK);
    /* a run time only, and a name before "stream" */
    c = load_end("L1", "a_stream", KL_WRITE_APPEND, 1700000000500LL);
    if (kl_dest_complete_load(d, ds, &c, &err) != KL_OK)
        fail_msg("complete_load: %s", err.msg);

    json = stored_state(ds);
    doc = cJSON_Parse(json);
    assert_non_null(doc);
    assert_string_equal(cJSON_GetObjectItem(doc, "pipeline_name")->valuestring, "kinesis_pipeline");
    assert_string_equal(cJSON_GetObjectItem(doc, "dataset_name")->valuestring, ds);
    assert_int_equal(cJSON_GetObjectItem(doc, "_state_version")->valueint, 1);
    res = cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetObjectItem(doc, "sources"), "kinesis"),
                              "resources");
    assert_int_equal(cJSON_GetArraySize(res), 2);
    first = strcmp(BACKEND.name, "postgres") == 0 ? "stream" : "a_stream";
    assert_string_equal(cJSON_GetArrayItem(res, 0)->string, first);
    assert_string_equal(
        cJSON_GetObjectItem(cJSON_GetObjectItem(res, "a_stream"), "initial_at_timestamp")
            ->valuestring,
        KL_STATE_DATETIME_MARKER "2023-11-14T22:13:20.500000+00:00");
    assert_null(cJSON_GetObjectItem(cJSON_GetObjectItem(res, "stream"), "initial_at_timestamp"));
    kin = cJSON_GetObjectItem(
        cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetObjectItem(res, "stream"), "incremental"),
                            "_kinesis"),
        "last_value");
    assert_int_equal(cJSON_GetArraySize(kin), 2);
    assert_string_equal(cJSON_GetArrayItem(kin, 0)->string, "s0");
    assert_string_equal(cJSON_GetObjectItem(kin, "s0")->valuestring, "100001");
    assert_string_equal(cJSON_GetObjectItem(kin, "s1")->valuestring, "100002");
    assert_int_equal(
        cJSON_GetArraySize(cJSON_GetObjectItem(
            cJSON_GetObjectItem(cJSON_GetObjectItem(res, "a_stream"), "incremental"), "_kinesis")),
        3);
    cJSON_Delete(doc);
    free(json);

    /* The load row names the newest stored schema hash when none is given. */
    assert_int_equal(count_rows(ds, "_dlt_loads", "load_id = 'L1' AND schema_version_hash IS NULL"),
                     1);
    kl_dest_destroy(d);
}

/* The shard's checkpoint row as read_state reports it; fails when there is none. */
static struct kl_checkpoint stored_checkpoint(struct kl_dest *d, const char *ds, const char *shard)
{
    struct kl_dest_state st;
    struct kl_checkpoint cp;
    struct kl_err err = {0};
    bool found = false;

    kl_dest_state_init(&st);
    if (kl_dest_read_state(d, ds, "kinesis_pipeline", "stream", &st, &err) != KL_OK)
        fail_msg("read_state: %s", err.msg);
    memset(&cp, 0, sizeof cp);
    for (size_t i = 0; i < st.n_checkpoints; i++) {
        if (strcmp(st.checkpoints[i].position.shard_id, shard) == 0) {
            cp = st.checkpoints[i];
            found = true;
        }
    }
    kl_dest_state_free(&st);
    if (!found)
        fail_msg("no checkpoint row for shard %s", shard);
    return cp;
}

/* The last value dlt's pipeline state holds for `stream`'s shards. */
static cJSON *state_last_values(cJSON *doc, const char *stream)
{
    static const char *const path[] = {"sources",     "kinesis",  "resources", NULL,
                                       "incremental", "_kinesis", "last_value"};
    cJSON *o = doc;
    for (size_t i = 0; o != NULL && i < sizeof path / sizeof path[0]; i++)
        o = cJSON_GetObjectItem(o, path[i] != NULL ? path[i] : stream);
    if (o == NULL)
        fail_msg("no last_value for stream %s in the pipeline state", stream);
    return o;
}

/* A claim on a shard without a row leaves one that holds only the token:
 * read_state reports it without a position, tokens only rise, and dlt's
 * pipeline state leaves it out. */
static void test_claim_new_shard(void **state)
{
    const char *ds0 = unique_dataset("claim");
    char ds[64];
    struct ts x;
    struct kl_dest *owner = open_default(), *zombie = open_default();
    struct kl_err err = {0};
    struct kl_checkpoint cp;
    struct kl_load_complete c;
    size_t root, tags;
    char *json;
    cJSON *doc, *last;
    (void)state;

    snprintf(ds, sizeof ds, "%s", ds0);
    ts_init(&x);
    root = ts_root(&x, "events");
    tags = ts_child(&x, "events__tags", "events");

    assert_int_equal(kl_dest_claim_shard(owner, ds, "kinesis_pipeline", "stream", "s0", 3, &err),
                     KL_OK);
    cp = stored_checkpoint(owner, ds, "s0");
    assert_string_equal(cp.position.sequence, "");
    assert_int_equal(cp.position.sub_sequence, -1);
    assert_int_equal(cp.fencing_token, 3);
    assert_int_equal(resume_from(owner, ds, "s0"), 0);
    /* Twice with the same token is fine; an older token is refused. */
    assert_int_equal(kl_dest_claim_shard(owner, ds, "kinesis_pipeline", "stream", "s0", 3, &err),
                     KL_OK);
    assert_int_equal(kl_dest_claim_shard(zombie, ds, "kinesis_pipeline", "stream", "s0", 2, &err),
                     KL_ERR_CONFLICT);
    assert_non_null(strstr(err.msg, "fencing"));
    assert_int_equal(stored_checkpoint(owner, ds, "s0").fencing_token, 3);
    /* A writer with an older token never commits to it; the claimer does. */
    assert_int_equal(
        write_range(zombie, ds, &x, root, tags, "L", KL_WRITE_APPEND, "s0", 0, 5, 5, 2, &err),
        KL_ERR_CONFLICT);
    assert_int_equal(resume_from(owner, ds, "s0"), 0); /* (its tables were rolled back too) */
    assert_int_equal(
        write_range(owner, ds, &x, root, tags, "L", KL_WRITE_APPEND, "s0", 0, 5, 5, 3, &err),
        KL_OK);
    assert_int_equal(count_rows(ds, "events", NULL), 5);
    assert_int_equal(resume_from(owner, ds, "s0"), 5);

    /* dlt's pipeline state knows positions only: a claimed shard is not in it. */
    assert_int_equal(kl_dest_claim_shard(owner, ds, "kinesis_pipeline", "stream", "s1", 1, &err),
                     KL_OK);
    c = load_end("L", "stream", KL_WRITE_APPEND, 1700000000500LL);
    if (kl_dest_complete_load(owner, ds, &c, &err) != KL_OK)
        fail_msg("complete_load: %s", err.msg);
    json = stored_state(ds);
    doc = cJSON_Parse(json);
    assert_non_null(doc);
    last = state_last_values(doc, "stream");
    assert_int_equal(cJSON_GetArraySize(last), 1);
    assert_string_equal(cJSON_GetObjectItem(last, "s0")->valuestring, "100004");
    cJSON_Delete(doc);
    free(json);

    /* Deleting the state forgets claimed shards too. */
    assert_int_equal(kl_dest_delete_state(owner, ds, "kinesis_pipeline", "stream", &err), KL_OK);
    assert_int_equal(count_rows(ds, "_kinesis_checkpoints", NULL), 0);
    kl_dest_destroy(owner);
    kl_dest_destroy(zombie);
}

/* The stale writer race: the former owner (token 5) committed up to
 * message 4 and stalls; the new owner claims the shard with 6 and reads
 * position 4; the former owner wakes up and commits 5..9 before the new
 * owner's first commit. Refused, and nothing of its chunk is written; the
 * new owner continues from position 4. A claim moves only the token. */
static void test_claim_fences_stale_writer(void **state)
{
    const char *ds0 = unique_dataset("claimrace");
    char ds[64];
    struct ts x;
    struct kl_dest *owner = open_default(), *zombie = open_default();
    struct kl_err err = {0};
    struct kl_checkpoint cp;
    size_t root, tags;
    (void)state;

    snprintf(ds, sizeof ds, "%s", ds0);
    ts_init(&x);
    root = ts_root(&x, "events");
    tags = ts_child(&x, "events__tags", "events");
    assert_int_equal(
        write_range(zombie, ds, &x, root, tags, "L", KL_WRITE_APPEND, "s0", 0, 5, 5, 5, &err),
        KL_OK);
    assert_int_equal(kl_dest_claim_shard(owner, ds, "kinesis_pipeline", "stream", "s0", 6, &err),
                     KL_OK);
    assert_int_equal(resume_from(owner, ds, "s0"), 5);
    {
        struct tb b;
        struct kl_checkpoint stale;
        struct kl_chunk_write w;
        tb_init(&b, &x);
        for (long k = 5; k < 10; k++)
            add_msg(&b, root, tags, TS_MAX_TABLES, "L", "s0", k, 2, "v");
        add_dead_letter(&b, "s0", 7, "not JSON");
        checkpoint_of(&stale, "s0", 9, 5);
        w = chunk_of("L", KL_WRITE_APPEND, &b, &stale);
        assert_int_equal(kl_dest_write_chunk(zombie, ds, &w, NULL, &err), KL_ERR_CONFLICT);
        assert_non_null(strstr(err.msg, "fencing"));
        tb_free(&b);
    }
    assert_int_equal(count_rows(ds, "events", NULL), 5);
    assert_int_equal(count_rows(ds, "events__tags", NULL), 10);
    assert_int_equal(count_rows(ds, "_kinesis_dead_letters", NULL), 0);
    cp = stored_checkpoint(owner, ds, "s0");
    assert_int_equal(atol(cp.position.sequence), SEQ_BASE + 4);
    assert_int_equal(cp.fencing_token, 6);

    /* The new owner continues from the old position. */
    assert_int_equal(
        write_range(owner, ds, &x, root, tags, "L", KL_WRITE_APPEND, "s0", 5, 10, 5, 6, &err),
        KL_OK);
    assert_int_equal(count_rows(ds, "events", NULL), 10);
    assert_int_equal(count_distinct(ds, "events", "_dlt_id"), 10);
    assert_int_equal(resume_from(owner, ds, "s0"), 10);

    /* A claim keeps the position (a KPL sub-record here); an older one is refused. */
    {
        struct kl_checkpoint sub;
        struct kl_chunk_write w;
        checkpoint_of(&sub, "s0", 12, 6);
        sub.position.sub_sequence = 3;
        w = chunk_of("L", KL_WRITE_APPEND, NULL, &sub);
        assert_int_equal(kl_dest_write_chunk(owner, ds, &w, NULL, &err), KL_OK);
    }
    assert_int_equal(kl_dest_claim_shard(zombie, ds, "kinesis_pipeline", "stream", "s0", 5, &err),
                     KL_ERR_CONFLICT);
    assert_int_equal(kl_dest_claim_shard(owner, ds, "kinesis_pipeline", "stream", "s0", 8, &err),
                     KL_OK);
    cp = stored_checkpoint(owner, ds, "s0");
    assert_int_equal(atol(cp.position.sequence), SEQ_BASE + 12);
    assert_int_equal(cp.position.sub_sequence, 3);
    assert_int_equal(cp.fencing_token, 8);
    kl_dest_destroy(owner);
    kl_dest_destroy(zombie);
}

/* Someone drops the dataset behind a connection's back: one retryable
 * failure, then the next call creates everything again. */
static void test_dropped_dataset_recovers(void **state)
{
    const char *ds0 = unique_dataset("drop");
    char ds[64];
    struct ts x;
    struct kl_dest *d = open_default();
    struct kl_err err = {0};
    size_t root, tags;
    int rc;
    (void)state;

    snprintf(ds, sizeof ds, "%s", ds0);
    ts_init(&x);
    root = ts_root(&x, "events");
    tags = ts_child(&x, "events__tags", "events");
    assert_int_equal(
        write_range(d, ds, &x, root, tags, "L", KL_WRITE_APPEND, "s0", 0, 5, 5, 1, &err), KL_OK);
    BACKEND.drop_dataset(ds);
    rc = write_range(d, ds, &x, root, tags, "L", KL_WRITE_APPEND, "s0", 5, 10, 5, 1, &err);
    if (rc != KL_OK) {
        assert_int_equal(rc, KL_ERR_UNAVAILABLE);
        rc = write_range(d, ds, &x, root, tags, "L", KL_WRITE_APPEND, "s0", 5, 10, 5, 1, &err);
    }
    if (rc != KL_OK)
        fail_msg("after the drop: %s", err.msg);
    assert_int_equal(count_rows(ds, "events", NULL), 5);
    kl_dest_destroy(d);
}

/* The pool hands connections to threads and bounds them. */
static void test_pool(void **state)
{
    struct kl_dest_options o;
    struct kl_dest_factory *f;
    struct kl_dest_pool *p;
    struct kl_dest *a = NULL, *b = NULL, *c = NULL;
    struct kl_err err = {0};
    (void)state;

    kl_dest_options_init(&o);
    f = BACKEND.factory(&o);
    p = kl_dest_pool_create(f, 2, &err);
    assert_non_null(p);
    assert_int_equal(kl_dest_pool_acquire(p, 1000, &a, &err), KL_OK);
    assert_int_equal(kl_dest_pool_acquire(p, 1000, &b, &err), KL_OK);
    assert_int_equal(kl_dest_pool_acquire(p, 50, &c, &err), KL_ERR_UNAVAILABLE);
    assert_int_equal(kl_dest_ping(a, &err), KL_OK);
    kl_dest_pool_release(p, a, false);
    assert_int_equal(kl_dest_pool_acquire(p, 50, &c, &err), KL_OK);
    assert_ptr_equal(c, a);
    kl_dest_pool_release(p, c, true); /* closed */
    assert_int_equal(kl_dest_pool_acquire(p, 50, &c, &err), KL_OK);
    assert_ptr_not_equal(c, NULL);
    kl_dest_pool_release(p, c, false);
    kl_dest_pool_release(p, b, false);
    kl_dest_pool_destroy(p);
    kl_dest_factory_destroy(f);
}

/* ---- the normaliser's corpus, end to end ---- */

#define CORPUS_STREAM "corpus-stream"
#define CORPUS_LOAD "1714557600.000001"

/* Normalises tests/fixtures/normalize/corpus.jsonl in one chunk and writes
 * it, with the schema row and a checkpoint per shard. */
static int corpus_load(struct kl_dest *d, const char *ds, enum kl_write_disposition wd,
                       struct kl_chunk_result *res, struct kl_err *err)
{
    size_t len;
    char *text = kl_test_read_fixture("normalize/corpus.jsonl", &len);
    struct kl_normalizer_options o;
    struct kl_normalizer *n;
    struct kl_row_batch b;
    struct kl_checkpoint cps[8];
    size_t n_cps = 0;
    struct kl_buf json;
    struct kl_chunk_write w;
    int rc;

    memset(&o, 0, sizeof o);
    o.stream_name = CORPUS_STREAM;
    o.parse_json = true;
    o.load_id = CORPUS_LOAD;
    o.write_disposition = wd;
    n = kl_normalizer_create(&o, kl_schema_create("kinesis"), err);
    assert_non_null(n);
    memset(cps, 0, sizeof cps);
    for (char *line = strtok(text, "\n"); line != NULL; line = strtok(NULL, "\n")) {
        cJSON *j = cJSON_Parse(line);
        struct kl_message m;
        unsigned char *data;
        size_t dlen, k;
        const char *b64;

        assert_non_null(j);
        b64 = cJSON_GetObjectItem(j, "data_b64")->valuestring;
        data = malloc(kl_base64_decoded_max(strlen(b64)) + 1);
        assert_int_equal(kl_base64_decode(b64, strlen(b64), data, &dlen), 0);
        memset(&m, 0, sizeof m);
        m.stream_name = CORPUS_STREAM;
        m.shard_id = cJSON_GetObjectItem(j, "shard_id")->valuestring;
        m.sequence = cJSON_GetObjectItem(j, "sequence")->valuestring;
        m.partition_key = cJSON_GetObjectItem(j, "partition_key")->valuestring;
        m.arrival_ms = (int64_t)cJSON_GetObjectItem(j, "arrival_ms")->valuedouble;
        m.sub_sequence = -1;
        m.data = data;
        m.data_len = dlen;
        assert_int_equal(kl_msg_id(m.shard_id, m.sequence, -1, m.msg_id, NULL), KL_OK);
        assert_int_equal(kl_normalizer_add(n, &m, err), KL_OK);
        for (k = 0; k < n_cps && strcmp(cps[k].position.shard_id, m.shard_id) != 0; k++)
            ;
        if (k == n_cps) {
            assert_true(n_cps < 8);
            n_cps++;
        }
        checkpoint_of(&cps[k], m.shard_id, 0, 1);
        snprintf(cps[k].position.sequence, sizeof cps[k].position.sequence, "%s", m.sequence);
        free(data);
        cJSON_Delete(j);
    }
    assert_int_equal(kl_normalizer_close(n, &b, err), KL_OK);
    kl_buf_init(&json, (size_t)16 << 20);
    assert_int_equal(kl_schema_to_json(b.schema, &json, err), KL_OK);
    memset(&w, 0, sizeof w);
    w.load_id = CORPUS_LOAD;
    w.pipeline_name = "kinesis_pipeline";
    w.stream_name = CORPUS_STREAM;
    w.disposition = wd;
    w.batch = &b;
    w.schema_json = json.data;
    w.schema_hash = b.schema->version_hash;
    w.checkpoints = cps;
    w.n_checkpoints = n_cps;
    rc = kl_dest_write_chunk(d, ds, &w, res, err);
    kl_normalizer_reset(n, rc == KL_OK);
    kl_normalizer_destroy(n);
    kl_buf_free(&json);
    free(text);
    return rc;
}

static enum kl_data_type type_named(const char *name)
{
    enum kl_data_type t = KL_TYPE_NULL;
    assert_int_equal(kl_data_type_from_name(name, &t), KL_OK);
    return t;
}

/* One cell read back, compared with the normaliser's expected value. */
static void check_cell(const char *ds, const char *table, const char *col, enum kl_data_type t,
                       const char *id, const cJSON *want)
{
    char expr[512], qcol[160];
    char *got;
    struct kl_buf b;
    struct kl_err err = {0};

    kl_buf_init(&b, 1024);
    assert_int_equal(kl_sql_quote_ident(&b, col, &err), KL_OK);
    snprintf(qcol, sizeof qcol, "%s", b.data);
    kl_buf_free(&b);
    if (t == KL_TYPE_TIMESTAMP)
        snprintf(expr, sizeof expr, "%s", BACKEND.ts_expr(qcol));
    else if (t == KL_TYPE_BINARY)
        snprintf(expr, sizeof expr, "%s", BACKEND.hex_expr(qcol));
    else
        snprintf(expr, sizeof expr, "%s", qcol);
    got = scalar_text("SELECT %s FROM %s WHERE \"_dlt_id\" = '%s'", expr, ref(ds, table), id);
    if (cJSON_IsNull(want)) {
        if (got != NULL)
            fail_msg("%s.%s of %s: want NULL, got %s", table, col, id, got);
        return;
    }
    if (got == NULL)
        fail_msg("%s.%s of %s: got NULL", table, col, id);
    switch (t) {
    case KL_TYPE_DOUBLE:
        if (strtod(got, NULL) != want->valuedouble)
            fail_msg("%s.%s of %s: want %.17g, got %s", table, col, id, want->valuedouble, got);
        break;
    case KL_TYPE_BOOL:
        if (strcmp(got, cJSON_IsTrue(want) ? BACKEND.true_text
                                           : (BACKEND.true_text[0] == 't' ? "f" : "0")) != 0)
            fail_msg("%s.%s of %s: bool %s", table, col, id, got);
        break;
    case KL_TYPE_TIMESTAMP: {
        int64_t us = 0;
        assert_int_equal(kl_fmt_parse_timestamp(want->valuestring, &us), 0);
        if (BACKEND.ts_us(got) != us)
            fail_msg("%s.%s of %s: want %s, got %s", table, col, id, want->valuestring, got);
        break;
    }
    case KL_TYPE_BINARY:
        if (strcmp(got, want->valuestring + 2) != 0) /* past "\x" */
            fail_msg("%s.%s of %s: want %s, got %s", table, col, id, want->valuestring, got);
        break;
    case KL_TYPE_DECIMAL:
        if (!BACKEND.decimal_equal(got, want->valuestring))
            fail_msg("%s.%s of %s: want %s, got %s", table, col, id, want->valuestring, got);
        break;
    case KL_TYPE_JSON: {
        cJSON *a = cJSON_Parse(got), *e = cJSON_Parse(want->valuestring);
        if (a == NULL || e == NULL || !cJSON_Compare(a, e, true))
            fail_msg("%s.%s of %s: want %s, got %s", table, col, id, want->valuestring, got);
        cJSON_Delete(a);
        cJSON_Delete(e);
        break;
    }
    default:
        if (strcmp(got, want->valuestring) != 0)
            fail_msg("%s.%s of %s: want \"%s\", got \"%s\"", table, col, id, want->valuestring,
                     got);
    }
    free(got);
}

/* The normaliser's corpus (nested, conflicting, odd messages) lands in the
 * tables, columns, types and cells corpus.expected.json lists; loaded twice
 * under merge it holds each row once. */
static void test_corpus_end_to_end(void **state)
{
    const char *ds0 = unique_dataset("corpus");
    char ds[64], ds_merge[64];
    struct kl_dest *d = open_default();
    struct kl_err err = {0};
    struct kl_chunk_result res;
    char *text = kl_test_read_fixture("normalize/corpus.expected.json", NULL);
    cJSON *exp = cJSON_Parse(text);
    const cJSON *tables, *t, *dead;
    size_t cells = 0;
    (void)state;

    assert_non_null(exp);
    snprintf(ds, sizeof ds, "%s", ds0);
    snprintf(ds_merge, sizeof ds_merge, "%s", unique_dataset("corpus_merge"));
    memset(&res, 0, sizeof res);
    if (corpus_load(d, ds, KL_WRITE_APPEND, &res, &err) != KL_OK)
        fail_msg("corpus: %s", err.msg);
    tables = cJSON_GetObjectItem(exp, "tables");
    assert_int_equal(res.tables_created, (size_t)cJSON_GetArraySize(tables));
    cJSON_ArrayForEach(t, tables)
    {
        const cJSON *cols = cJSON_GetObjectItem(t, "columns"), *row, *c;
        int id_col = -1, i = 0;
        assert_int_equal(count_rows(ds, t->string, NULL),
                         (long long)cJSON_GetObjectItem(t, "rows")->valuedouble);
        cJSON_ArrayForEach(c, cols)
        {
            const char *name = cJSON_GetObjectItem(c, "name")->valuestring;
            char *type = BACKEND.column_type(ds, t->string, name);
            if (type == NULL)
                fail_msg("column %s.%s missing", t->string, name);
            assert_string_equal(
                type,
                kl_sql_type_tag(BACKEND.dialect,
                                type_named(cJSON_GetObjectItem(c, "data_type")->valuestring)));
            free(type);
            {
                /* dlt's column order and NOT NULL (_kinesis_msg_id, the _dlt_ columns) */
                int pos = -1;
                bool not_null = false;
                assert_true(column_shape(ds, t->string, name, &pos, &not_null));
                if (pos != i)
                    fail_msg("%s.%s is column %d, want %d", t->string, name, pos, i);
                if (not_null != !cJSON_IsTrue(cJSON_GetObjectItem(c, "nullable")))
                    fail_msg("%s.%s: NOT NULL is %d", t->string, name, (int)not_null);
            }
            if (strcmp(name, "_dlt_id") == 0)
                id_col = i;
            i++;
        }
        assert_true(id_col >= 0);
        cJSON_ArrayForEach(row, cJSON_GetObjectItem(t, "data"))
        {
            const char *id = cJSON_GetArrayItem(row, id_col)->valuestring;
            i = 0;
            cJSON_ArrayForEach(c, cols)
            {
                check_cell(ds, t->string, cJSON_GetObjectItem(c, "name")->valuestring,
                           type_named(cJSON_GetObjectItem(c, "data_type")->valuestring), id,
                           cJSON_GetArrayItem(row, i));
                cells++;
                i++;
            }
        }
    }
    assert_true(cells > 800);
    dead = cJSON_GetObjectItem(exp, "dead_letters");
    assert_int_equal(count_rows(ds, "_kinesis_dead_letters", NULL), cJSON_GetArraySize(dead));
    assert_int_equal(count_rows(ds, "_dlt_version", NULL), 1);
    {
        char *json = NULL;
        struct kl_schema *back = NULL;
        int64_t version = 0;
        assert_int_equal(kl_dest_load_schema(d, ds, "kinesis", &json, &version, &err), KL_OK);
        assert_non_null(json);
        assert_int_equal(kl_schema_from_json(json, strlen(json), &back, &err), KL_OK);
        assert_int_equal(back->n_tables, (size_t)cJSON_GetArraySize(tables));
        kl_schema_destroy(back);
        free(json);
    }

    /* merge, twice: every table holds each row once */
    if (corpus_load(d, ds_merge, KL_WRITE_MERGE, NULL, &err) != KL_OK)
        fail_msg("corpus merge: %s", err.msg);
    if (corpus_load(d, ds_merge, KL_WRITE_MERGE, NULL, &err) != KL_OK)
        fail_msg("corpus merge again: %s", err.msg);
    cJSON_ArrayForEach(t, cJSON_GetObjectItem(exp, "row_counts"))
    {
        assert_int_equal(count_rows(ds_merge, t->string, NULL), (long long)t->valuedouble);
        assert_int_equal(count_distinct(ds_merge, t->string, "_dlt_id"), (long long)t->valuedouble);
    }
    cJSON_Delete(exp);
    free(text);
    kl_dest_destroy(d);
}

/* Tables the previous version created (a nullable `_kinesis_msg_id`, a
 * list-of-scalars table ordered value, _dlt_parent_id, _dlt_list_idx,
 * _dlt_id) take the normaliser's rows, NOT NULL and dlt's order in its
 * schema: no DDL fails, the tables keep their shape, rows land by name. */
static void test_previous_version_tables(void **state)
{
    const char *ds0 = unique_dataset("oldshape");
    char ds[64];
    struct kl_dest *d = open_default();
    struct kl_err err = {0};
    struct ts x;
    size_t root, child;
    int pos = -1;
    bool not_null = true;
    (void)state;

    snprintf(ds, sizeof ds, "%s", ds0);
    ts_init(&x);
    root = ts_root(&x, "events");
    x.c[root][col_of(&x, root, "_kinesis_msg_id")].nullable = true;
    child = ts_table(&x, "events__tags", "events");
    ts_col(&x, child, "value", KL_TYPE_TEXT, true, false);
    ts_col(&x, child, "_dlt_parent_id", KL_TYPE_TEXT, false, false);
    ts_col(&x, child, "_dlt_list_idx", KL_TYPE_BIGINT, false, false);
    ts_col(&x, child, "_dlt_id", KL_TYPE_TEXT, false, true);
    if (write_range(d, ds, &x, root, child, "1700000000.1", KL_WRITE_APPEND, "shard-old", 0, 3, 3,
                    1, &err) != KL_OK)
        fail_msg("old shape: %s", err.msg);

    /* the normaliser, from an empty schema, for the same stream */
    struct kl_normalizer_options o;
    struct kl_normalizer *n;
    struct kl_row_batch b;
    struct kl_message m;
    struct kl_checkpoint cp;
    struct kl_buf json;
    struct kl_chunk_write w;
    const char *data = "{\"n\":7,\"label\":\"new\",\"tags\":[\"p\",\"q\"]}";
    char *got;
    memset(&o, 0, sizeof o);
    o.stream_name = "events";
    o.parse_json = true;
    o.load_id = "1700000000.2";
    n = kl_normalizer_create(&o, kl_schema_create("kinesis"), &err);
    assert_non_null(n);
    memset(&m, 0, sizeof m);
    m.stream_name = "events";
    m.shard_id = "shard-new";
    m.sequence = "100000";
    m.sub_sequence = -1;
    m.partition_key = "pk";
    m.arrival_ms = 1700000000000LL;
    m.data = (const unsigned char *)data;
    m.data_len = strlen(data);
    assert_int_equal(kl_msg_id(m.shard_id, m.sequence, -1, m.msg_id, NULL), KL_OK);
    assert_int_equal(kl_normalizer_add(n, &m, &err), KL_OK);
    assert_int_equal(kl_normalizer_close(n, &b, &err), KL_OK);
    kl_buf_init(&json, (size_t)1 << 20);
    assert_int_equal(kl_schema_to_json(b.schema, &json, &err), KL_OK);
    checkpoint_of(&cp, "shard-new", 0, 1);
    w = chunk_of("1700000000.2", KL_WRITE_APPEND, NULL, &cp);
    w.batch = &b;
    w.stream_name = "events";
    w.schema_json = json.data;
    w.schema_hash = b.schema->version_hash;
    /* a new process: its own connection */
    kl_dest_destroy(d);
    d = open_default();
    if (kl_dest_write_chunk(d, ds, &w, NULL, &err) != KL_OK)
        fail_msg("normaliser rows into old tables: %s", err.msg);
    kl_normalizer_reset(n, true);
    kl_normalizer_destroy(n);
    kl_buf_free(&json);

    assert_int_equal(count_rows(ds, "events", NULL), 4);
    assert_int_equal(count_rows(ds, "events", "\"label\" = 'new' AND \"n\" = 7"), 1);
    assert_int_equal(count_rows(ds, "events__tags", NULL), 8);
    got = scalar_text("SELECT t.\"value\" FROM %s t JOIN %s r ON r.\"_dlt_id\" ="
                      " t.\"_dlt_parent_id\" WHERE r.\"label\" = 'new' AND t.\"_dlt_list_idx\" = 1",
                      ref(ds, "events__tags"), ref(ds, "events"));
    assert_non_null(got);
    assert_string_equal(got, "q");
    free(got);
    /* the old shape stays: no ALTER of nullability, no reordering */
    assert_true(column_shape(ds, "events", "_kinesis_msg_id", &pos, &not_null));
    assert_false(not_null);
    assert_true(column_shape(ds, "events__tags", "_dlt_id", &pos, &not_null));
    assert_int_equal(pos, 3);
    kl_dest_destroy(d);
}

/* ---- dlt's pipeline state (tests/fixtures/dlt-0.5.4) ---- */

#define DLT_ROW3_LOAD "1796299267.7698898"
#define DLT_SHARD0 "shardId-000000000000"
#define DLT_SHARD1 "shardId-000000000001"
/* row 3's positions (pk-50 / pk-54) and row 2's shard 0 (pk-49) */
#define DLT_R3_SEQ0 "49680798300199113480921306734029089196626947863167893506"
#define DLT_R3_SEQ1 "49680798300221414226119837357169415989079981595499167762"

/* dlt's three `_dlt_loads` and `_dlt_pipeline_state` rows into the dataset,
 * as dlt 0.5.4 wrote them (loads.jsonl, state_rows.jsonl). */
static void insert_dlt_rows(const char *ds)
{
    char *text = kl_test_read_fixture("dlt-0.5.4/loads.jsonl", NULL), *save = NULL, *l;
    char sql[4096];

    for (l = strtok_r(text, "\n", &save); l != NULL; l = strtok_r(NULL, "\n", &save)) {
        cJSON *r = cJSON_Parse(l);
        assert_non_null(r);
        snprintf(sql, sizeof sql, "INSERT INTO %s VALUES ('%s', '%s', %d, '%s', '%s')",
                 ref(ds, "_dlt_loads"), cJSON_GetObjectItem(r, "load_id")->valuestring,
                 cJSON_GetObjectItem(r, "schema_name")->valuestring,
                 cJSON_GetObjectItem(r, "status")->valueint,
                 cJSON_GetObjectItem(r, "inserted_at")->valuestring,
                 cJSON_GetObjectItem(r, "schema_version_hash")->valuestring);
        BACKEND.exec(sql);
        cJSON_Delete(r);
    }
    free(text);
    text = kl_test_read_fixture("dlt-0.5.4/state_rows.jsonl", NULL);
    for (l = strtok_r(text, "\n", &save); l != NULL; l = strtok_r(NULL, "\n", &save)) {
        cJSON *r = cJSON_Parse(l);
        assert_non_null(r);
        snprintf(sql, sizeof sql,
                 "INSERT INTO %s (\"version\", engine_version, pipeline_name, state, created_at,"
                 " version_hash, _dlt_load_id, _dlt_id) VALUES (%d, %d, '%s', '%s', '%s', '%s',"
                 " '%s', '%s')",
                 ref(ds, "_dlt_pipeline_state"), cJSON_GetObjectItem(r, "version")->valueint,
                 cJSON_GetObjectItem(r, "engine_version")->valueint,
                 cJSON_GetObjectItem(r, "pipeline_name")->valuestring,
                 cJSON_GetObjectItem(r, "state")->valuestring,
                 cJSON_GetObjectItem(r, "created_at")->valuestring,
                 cJSON_GetObjectItem(r, "version_hash")->valuestring,
                 cJSON_GetObjectItem(r, "_dlt_load_id")->valuestring,
                 cJSON_GetObjectItem(r, "_dlt_id")->valuestring);
        BACKEND.exec(sql);
        cJSON_Delete(r);
    }
    free(text);
}

static const struct kl_checkpoint *state_shard(const struct kl_dest_state *st, const char *shard,
                                               enum kl_state_origin *origin)
{
    for (size_t i = 0; i < st->n_checkpoints; i++) {
        if (strcmp(st->checkpoints[i].position.shard_id, shard) == 0) {
            if (origin != NULL)
                *origin = st->origins[i];
            return &st->checkpoints[i];
        }
    }
    fail_msg("no checkpoint of shard %s", shard);
    return NULL;
}

/* A column of the row dlt would restore now (its own query; malloc'ed). */
static char *restorable(const char *ds, const char *column)
{
    char *v = scalar_text("SELECT s.%s FROM %s AS s JOIN %s AS l ON l.load_id = s._dlt_load_id"
                          " WHERE s.pipeline_name = 'kinesis_pipeline' AND l.status = 0"
                          " ORDER BY l.load_id DESC LIMIT 1",
                          column, ref(ds, "_dlt_pipeline_state"), ref(ds, "_dlt_loads"));
    assert_non_null(v);
    return v;
}

/* That row's state decoded, its load id and version. */
static char *restorable_state(const char *ds, char *load_id, size_t cap, long long *version)
{
    char *v = restorable(ds, "_dlt_load_id");

    snprintf(load_id, cap, "%s", v);
    free(v);
    v = restorable(ds, "\"version\"");
    *version = atoll(v);
    free(v);
    return decoded_state(restorable(ds, "state"));
}

/* dlt ran first: read_state takes dlt's positions and run time from the
 * row dlt restores (not one whose load did not complete), merged per shard
 * with ours; the next state row continues dlt's and is the one dlt
 * restores next, also when the job's load id sorts before dlt's; forgetting
 * the stream drops it from dlt's state too. */
static void test_dlt_state_handoff(void **state)
{
    const char *ds0 = unique_dataset("dlthand");
    char ds[64], load[64], sql[512], *json;
    struct kl_dest *d = open_default();
    struct kl_err err = {0};
    struct kl_dest_state st;
    struct kl_dlt_stream got;
    struct kl_load_complete c;
    struct kl_checkpoint cp;
    enum kl_state_origin o;
    long long version;
    int64_t us = 0;
    (void)state;

    snprintf(ds, sizeof ds, "%s", ds0);
    assert_int_equal(kl_dest_prepare(d, ds, &err), KL_OK);
    insert_dlt_rows(ds);
    kl_dest_state_init(&st);
    if (kl_dest_read_state(d, ds, "kinesis_pipeline", "orders", &st, &err) != KL_OK)
        fail_msg("read_state: %s", err.msg);
    assert_int_equal(st.origin, KL_STATE_DLT);
    assert_string_equal(st.dlt_load_id, DLT_ROW3_LOAD);
    assert_int_equal(st.dlt_version, 3);
    assert_int_equal(st.n_checkpoints, 2);
    assert_string_equal(st.checkpoints[0].position.shard_id, DLT_SHARD0);
    assert_string_equal(st.checkpoints[0].position.sequence, DLT_R3_SEQ0);
    assert_int_equal(st.checkpoints[0].position.sub_sequence, -1);
    assert_int_equal(st.checkpoints[0].fencing_token, 0);
    assert_int_equal(st.origins[0], KL_STATE_DLT);
    assert_string_equal(st.checkpoints[1].position.sequence, DLT_R3_SEQ1);
    assert_true(st.has_last_run);
    assert_int_equal(st.last_run_origin, KL_STATE_DLT);
    assert_int_equal(kl_iso_parse("2026-12-03T12:01:06.820782Z", 27, &us), KL_ISO_DATETIME);
    assert_int_equal(st.last_run_ms, us / 1000);
    assert_string_equal(kl_state_origin_name(st.origin), "dlt");

    /* another stream of the pipeline: nothing, though the row was read */
    assert_int_equal(kl_dest_read_state(d, ds, "kinesis_pipeline", "clicks", &st, &err), KL_OK);
    assert_int_equal(st.origin, KL_STATE_NONE);
    assert_int_equal(st.n_checkpoints, 0);
    assert_false(st.has_last_run);
    assert_string_equal(st.dlt_load_id, DLT_ROW3_LOAD);
    /* another pipeline: not even the row */
    assert_int_equal(kl_dest_read_state(d, ds, "other_pipeline", "orders", &st, &err), KL_OK);
    assert_int_equal(st.origin, KL_STATE_NONE);
    assert_string_equal(st.dlt_load_id, "");

    /* a load that did not complete is not restored: row 2 is */
    snprintf(sql, sizeof sql, "UPDATE %s SET status = 1 WHERE load_id = '%s'",
             ref(ds, "_dlt_loads"), DLT_ROW3_LOAD);
    BACKEND.exec(sql);
    assert_int_equal(kl_dest_read_state(d, ds, "kinesis_pipeline", "orders", &st, &err), KL_OK);
    assert_string_equal(st.dlt_load_id, "1796299264.502293");
    assert_int_equal(st.dlt_version, 2);
    assert_string_equal(state_shard(&st, DLT_SHARD0, NULL)->position.sequence,
                        "49680798300199113480921306734023044567528874511135932418");
    snprintf(sql, sizeof sql, "UPDATE %s SET status = 0 WHERE load_id = '%s'",
             ref(ds, "_dlt_loads"), DLT_ROW3_LOAD);
    BACKEND.exec(sql);

    /* claimed: dlt's position with our token */
    assert_int_equal(kl_dest_claim_shard(d, ds, "kinesis_pipeline", "orders", DLT_SHARD0, 5, &err),
                     KL_OK);
    assert_int_equal(kl_dest_read_state(d, ds, "kinesis_pipeline", "orders", &st, &err), KL_OK);
    assert_string_equal(state_shard(&st, DLT_SHARD0, &o)->position.sequence, DLT_R3_SEQ0);
    assert_int_equal(state_shard(&st, DLT_SHARD0, NULL)->fencing_token, 5);
    assert_int_equal(o, KL_STATE_DLT);

    /* we go further on shard 0: ours there, dlt's on shard 1 */
    memset(&cp, 0, sizeof cp);
    kl_position_set(&cp.position, DLT_SHARD0,
                    "49680798300199113480921306734029089196626947863167893507", -1);
    cp.fencing_token = 5;
    {
        struct kl_chunk_write w = chunk_of("1796300000.000001", KL_WRITE_APPEND, NULL, &cp);
        w.stream_name = "orders";
        if (kl_dest_write_chunk(d, ds, &w, NULL, &err) != KL_OK)
            fail_msg("write_chunk: %s", err.msg);
    }
    assert_int_equal(kl_dest_read_state(d, ds, "kinesis_pipeline", "orders", &st, &err), KL_OK);
    assert_string_equal(state_shard(&st, DLT_SHARD0, &o)->position.sequence, cp.position.sequence);
    assert_int_equal(o, KL_STATE_OURS);
    assert_string_equal(state_shard(&st, DLT_SHARD1, &o)->position.sequence, DLT_R3_SEQ1);
    assert_int_equal(o, KL_STATE_DLT);
    assert_int_equal(st.origin, KL_STATE_DLT);

    /* the job ends: the next row continues dlt's and is the one dlt restores */
    c = load_end("1796300000.000001", "orders", KL_WRITE_APPEND, 1796299999000LL);
    if (kl_dest_complete_load(d, ds, &c, &err) != KL_OK)
        fail_msg("complete_load: %s", err.msg);
    json = restorable_state(ds, load, sizeof load, &version);
    assert_string_equal(load, c.load_id);
    assert_int_equal(version, 4);
    assert_int_equal(kl_dlt_state_stream(json, strlen(json), "kinesis", "orders", &got, &err),
                     KL_OK);
    assert_int_equal(got.n_positions, 2);
    assert_string_equal(got.positions[0].sequence, cp.position.sequence);
    assert_string_equal(got.positions[1].sequence, DLT_R3_SEQ1);
    assert_int_equal(got.run_ms, c.next_run_ms);
    assert_true(got.run_marked);
    kl_dlt_stream_free(&got);
    {
        char hash[KL_STATE_HASH_CAP], *stored;
        assert_int_equal(kl_dlt_state_hash(json, strlen(json), hash, &err), KL_OK);
        stored = scalar_text("SELECT version_hash FROM %s WHERE _dlt_load_id = '%s'",
                             ref(ds, "_dlt_pipeline_state"), c.load_id);
        assert_string_equal(stored, hash);
        free(stored);
    }
    free(json);
    assert_int_equal(count_rows(ds, "_dlt_loads", NULL), 4);

    /* a job whose load id sorts before the newest: its state row gets one
     * after it, with its own load row */
    c.load_id = "1700000000.000000";
    c.next_run_ms = -1;
    assert_int_equal(kl_dest_complete_load(d, ds, &c, &err), KL_OK);
    json = restorable_state(ds, load, sizeof load, &version);
    assert_true(strcmp(load, "1796300000.000001") > 0);
    assert_int_equal(version, 5);
    free(json);
    assert_int_equal(count_rows(ds, "_dlt_loads", NULL), 6);
    assert_int_equal(count_rows(ds, "_dlt_loads", "load_id = '1700000000.000000'"), 1);

    /* forgetting the stream: neither tool resumes it */
    assert_int_equal(kl_dest_delete_state(d, ds, "kinesis_pipeline", "orders", &err), KL_OK);
    assert_int_equal(kl_dest_read_state(d, ds, "kinesis_pipeline", "orders", &st, &err), KL_OK);
    assert_int_equal(st.origin, KL_STATE_NONE);
    assert_int_equal(st.n_checkpoints, 0);
    assert_false(st.has_last_run);
    json = restorable_state(ds, load, sizeof load, &version);
    assert_int_equal(version, 6);
    assert_int_equal(kl_dlt_state_stream(json, strlen(json), "kinesis", "orders", &got, &err),
                     KL_OK);
    assert_false(got.found);
    free(json);
    assert_int_equal(kl_dest_delete_state(d, ds, "kinesis_pipeline", "orders", &err), KL_OK);
    assert_int_equal(count_rows(ds, "_dlt_pipeline_state", NULL), 6); /* nothing more to say */
    kl_dest_state_free(&st);
    kl_dest_destroy(d);
}

/* The schema kinesis-loader stored before (engine 10, which dlt 0.5.4
 * refuses) is stored again as engine 9 when a load completes, even one
 * that wrote no chunk since; the load row names the new hash. */
static void test_schema_engine_moves_to_9(void **state)
{
    static const char old[] =
        "{\"version\":3,\"version_hash\":\"b2xk\",\"engine_version\":10,\"name\":\"kinesis\","
        "\"tables\":{\"events\":{\"name\":\"events\",\"columns\":{\"doc\":{\"name\":\"doc\","
        "\"data_type\":\"json\",\"nullable\":true},\"_dlt_id\":{\"name\":\"_dlt_id\","
        "\"data_type\":\"text\",\"nullable\":false,\"unique\":true,\"row_key\":true}},"
        "\"write_disposition\":\"append\"}},\"previous_hashes\":[]}";
    const char *ds0 = unique_dataset("engine9");
    char ds[64], *json, *hash;
    struct kl_dest *d = open_default();
    struct kl_err err = {0};
    struct ts x;
    struct tb b;
    struct kl_checkpoint cp;
    struct kl_chunk_write w;
    struct kl_load_complete c;
    size_t root;
    cJSON *doc;
    (void)state;

    snprintf(ds, sizeof ds, "%s", ds0);
    ts_init(&x);
    root = ts_root(&x, "events");
    x.s.version = 3;
    tb_init(&b, &x);
    add_msg(&b, root, TS_MAX_TABLES, TS_MAX_TABLES, "L1", "s0", 0, 1, "v");
    checkpoint_of(&cp, "s0", 0, 1);
    w = chunk_of("L1", KL_WRITE_APPEND, &b, &cp);
    w.schema_json = old;
    w.schema_hash = "b2xk";
    if (kl_dest_write_chunk(d, ds, &w, NULL, &err) != KL_OK)
        fail_msg("write_chunk: %s", err.msg);
    tb_free(&b);
    c = load_end("L1", "stream", KL_WRITE_APPEND, -1);
    if (kl_dest_complete_load(d, ds, &c, &err) != KL_OK)
        fail_msg("complete_load: %s", err.msg);
    assert_int_equal(count_rows(ds, "_dlt_version", NULL), 2);
    assert_int_equal(count_rows(ds, "_dlt_version", "engine_version = 9 AND \"version\" = 4"), 1);
    json =
        scalar_text("SELECT \"schema\" FROM %s WHERE engine_version = 9", ref(ds, "_dlt_version"));
    doc = cJSON_Parse(json);
    assert_non_null(doc);
    assert_int_equal(cJSON_GetObjectItem(doc, "engine_version")->valueint, 9);
    assert_string_equal(
        cJSON_GetArrayItem(cJSON_GetObjectItem(doc, "previous_hashes"), 0)->valuestring, "b2xk");
    hash = scalar_text("SELECT schema_version_hash FROM %s WHERE load_id = 'L1'",
                       ref(ds, "_dlt_loads"));
    assert_string_equal(hash, cJSON_GetObjectItem(doc, "version_hash")->valuestring);
    free(hash);
    cJSON_Delete(doc);
    free(json);
    kl_dest_destroy(d);
}

#define KL_DEST_SUITE_TESTS                                                                        \
    cmocka_unit_test(test_prepare_system_tables), cmocka_unit_test(test_corpus_odd_rows),          \
        cmocka_unit_test(test_new_columns_mid_load), cmocka_unit_test(test_merge),                 \
        cmocka_unit_test(test_append_and_replace), cmocka_unit_test(test_dead_letters),            \
        cmocka_unit_test(test_fencing), cmocka_unit_test(test_crash_between_every_step),           \
        cmocka_unit_test(test_sigkill_mid_chunk), cmocka_unit_test(test_concurrent_writers),       \
        cmocka_unit_test(test_stale_schema), cmocka_unit_test(test_state_and_complete_load),       \
        cmocka_unit_test(test_dropped_dataset_recovers), cmocka_unit_test(test_pool),              \
        cmocka_unit_test(test_corpus_end_to_end), cmocka_unit_test(test_step_order),               \
        cmocka_unit_test(test_state_document), cmocka_unit_test(test_claim_new_shard),             \
        cmocka_unit_test(test_claim_fences_stale_writer),                                          \
        cmocka_unit_test(test_previous_version_tables), cmocka_unit_test(test_dlt_state_handoff),  \
        cmocka_unit_test(test_schema_engine_moves_to_9)

#endif
