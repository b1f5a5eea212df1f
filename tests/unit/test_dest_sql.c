/*
 * Unit tests of the SQL the destinations generate (core/dest/sql.h,
 * common.h, state.h): identifier quoting and validation, dlt's type mapping
 * (dlt/destinations/impl/postgres/factory.py PostgresTypeMapper), the DDL
 * for schema diffs (dlt's _get_column_def_sql: "name" type [UNIQUE]
 * [NOT NULL]), the system tables (dlt/common/schema/utils.py), and the
 * pipeline state document (dlt's compress_state: zlib + base64).
 * No database needed.
 */
#include "tests/support/test_support.h"
#include "core/dest/common.h"
#include "core/dest/dest.h"
#include "core/dest/sql.h"
#include "core/dest/state.h"
#include "core/util/base64.h"
#include "core/util/buf.h"
#include "core/util/err.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *quoted(const char *name)
{
    static char out[256];
    struct kl_buf b;
    struct kl_err err = {0};
    kl_buf_init(&b, 1024);
    assert_int_equal(kl_sql_quote_ident(&b, name, &err), KL_OK);
    snprintf(out, sizeof out, "%s", b.data);
    kl_buf_free(&b);
    return out;
}

static void test_quote_ident(void **state)
{
    (void)state;
    assert_string_equal(quoted("events"), "\"events\"");
    assert_string_equal(quoted("a\"b"), "\"a\"\"b\"");
    assert_string_equal(quoted("\"\""), "\"\"\"\"\"\"");
    assert_string_equal(quoted("Robert'); DROP TABLE x;--"), "\"Robert'); DROP TABLE x;--\"");
    assert_string_equal(quoted("ünï"), "\"ünï\"");
}

/* Dataset and request table names: what dlt's snake_case produces. */
static void test_validate_names(void **state)
{
    static const struct {
        const char *name;
        int dataset_ok;
        int table_ok;
    } cases[] = {
        {"kinesis", 1, 1},
        {"my_stream_2", 1, 1},
        {"_private", 1, 1},
        {"", 0, 0},
        {"9lives", 0, 0},
        {"Upper", 0, 0},
        {"has-dash", 0, 0},
        {"has space", 0, 0},
        {"quote\"d", 0, 0},
        {"dot.ted", 0, 0},
        {"pg_catalog", 0, 1},
        {"pg_temp_1", 0, 1},
        {"sqlite_master", 0, 1},
        {"information_schema", 0, 1},
        {"public", 1, 1},
        {"_dlt_loads", 1, 0},
        {"_kinesis_checkpoints", 1, 0},
        {"a123456789012345678901234567890123456789012345678901234567890ab", 1, 1},  /* 63 */
        {"a123456789012345678901234567890123456789012345678901234567890abc", 0, 0}, /* 64 */
    };
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct kl_err err = {0};
        int rc = kl_dest_validate_dataset(cases[i].name, &err);
        if (cases[i].dataset_ok)
            assert_int_equal(rc, KL_OK);
        else
            assert_int_equal(rc, KL_ERR_INVALID);
        rc = kl_dest_validate_table(cases[i].name, &err);
        if (cases[i].table_ok)
            assert_int_equal(rc, KL_OK);
        else
            assert_int_equal(rc, KL_ERR_INVALID);
    }
    assert_int_equal(kl_dest_validate_dataset(NULL, NULL), KL_ERR_INVALID);
}

static void test_table_ref(void **state)
{
    struct kl_buf b;
    struct kl_err err = {0};
    (void)state;
    kl_buf_init(&b, 1024);
    assert_int_equal(kl_sql_table_ref(&b, KL_SQL_POSTGRES, "kinesis", "events", &err), KL_OK);
    assert_string_equal(b.data, "\"kinesis\".\"events\"");
    kl_buf_reset(&b);
    assert_int_equal(kl_sql_table_ref(&b, KL_SQL_SQLITE, "kinesis", "events", &err), KL_OK);
    assert_string_equal(b.data, "\"kinesis.events\"");
    kl_buf_reset(&b);
    assert_int_equal(kl_sql_table_ref(&b, KL_SQL_POSTGRES, "bad\"name", "events", &err),
                     KL_ERR_INVALID);
    assert_int_equal(kl_sql_table_ref(&b, KL_SQL_POSTGRES, "kinesis", "x\"; DROP", &err),
                     KL_ERR_INVALID);
    kl_buf_free(&b);
}

/* dlt's PostgresTypeMapper.sct_to_unbound_dbt, and our SQLite affinities. */
static void test_type_mapping(void **state)
{
    static const struct {
        enum kl_data_type t;
        const char *pg;
        const char *pg_tag;
        const char *lite;
    } cases[] = {
        {KL_TYPE_TEXT, "varchar", "varchar", "TEXT"},
        {KL_TYPE_BIGINT, "bigint", "int8", "BIGINT"},
        {KL_TYPE_DOUBLE, "double precision", "float8", "DOUBLE"},
        {KL_TYPE_BOOL, "boolean", "bool", "BOOLEAN"},
        {KL_TYPE_TIMESTAMP, "timestamp with time zone", "timestamptz", "TIMESTAMP"},
        {KL_TYPE_BINARY, "bytea", "bytea", "BLOB"},
        {KL_TYPE_DECIMAL, "numeric", "numeric", "TEXT"},
        {KL_TYPE_JSON, "jsonb", "jsonb", "TEXT"},
    };
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        assert_string_equal(kl_sql_type(KL_SQL_POSTGRES, cases[i].t), cases[i].pg);
        assert_string_equal(kl_sql_type_tag(KL_SQL_POSTGRES, cases[i].t), cases[i].pg_tag);
        assert_string_equal(kl_sql_type(KL_SQL_SQLITE, cases[i].t), cases[i].lite);
    }
    assert_null(kl_sql_type(KL_SQL_POSTGRES, KL_TYPE_NULL));
}

/* ---- a schema built by hand ---- */

static struct kl_column col(const char *name, enum kl_data_type t, bool nullable, bool unique)
{
    struct kl_column c;
    memset(&c, 0, sizeof c);
    snprintf(c.name, sizeof c.name, "%s", name);
    c.type = t;
    c.nullable = nullable;
    c.unique = unique;
    return c;
}

struct fixture_schema {
    struct kl_schema s;
    struct kl_table tables[3];
    struct kl_column root_cols[6];
    struct kl_column child_cols[5];
};

static void make_schema(struct fixture_schema *f)
{
    memset(f, 0, sizeof *f);
    snprintf(f->s.name, sizeof f->s.name, "kinesis");
    f->root_cols[0] = col("_kinesis_msg_id", KL_TYPE_TEXT, false, false);
    f->root_cols[1] = col("_dlt_load_id", KL_TYPE_TEXT, false, false);
    f->root_cols[2] = col("_dlt_id", KL_TYPE_TEXT, false, true);
    f->root_cols[3] = col("user__name", KL_TYPE_TEXT, true, false);
    f->root_cols[4] = col("amount", KL_TYPE_DOUBLE, true, false);
    f->root_cols[5] = col("amount__v_text", KL_TYPE_TEXT, true, false);
    f->child_cols[0] = col("value", KL_TYPE_BIGINT, true, false);
    f->child_cols[1] = col("_dlt_parent_id", KL_TYPE_TEXT, false, false);
    f->child_cols[2] = col("_dlt_list_idx", KL_TYPE_BIGINT, false, false);
    f->child_cols[3] = col("_dlt_id", KL_TYPE_TEXT, false, true);
    f->child_cols[4] = col("seen_at", KL_TYPE_TIMESTAMP, true, false);
    snprintf(f->tables[0].name, KL_IDENT_MAX, "events");
    f->tables[0].columns = f->root_cols;
    f->tables[0].n_columns = 5;
    snprintf(f->tables[1].name, KL_IDENT_MAX, "events__tags");
    snprintf(f->tables[1].parent, KL_IDENT_MAX, "events");
    f->tables[1].columns = f->child_cols;
    f->tables[1].n_columns = 4;
    snprintf(f->tables[2].name, KL_IDENT_MAX, "empty_one");
    f->s.tables = f->tables;
    f->s.n_tables = 3;
    f->s.version = 1;
}

/* A new schema against an empty database: CREATE TABLE with dlt's column
 * definitions; a table without columns is not created. */
static void test_ddl_new_tables(void **state)
{
    struct fixture_schema f;
    struct kl_sql_catalog cat;
    struct kl_sql_stmts out;
    struct kl_sql_ddl_stats st = {0, 0};
    struct kl_err err = {0};
    (void)state;

    make_schema(&f);
    kl_sql_catalog_init(&cat);
    kl_sql_stmts_init(&out);
    assert_int_equal(kl_sql_plan_ddl(KL_SQL_POSTGRES, "kinesis", &f.s, &cat, true, &out, &st, &err),
                     KL_OK);
    assert_int_equal(out.n, 2);
    assert_int_equal(st.tables_created, 2);
    assert_string_equal(out.items[0],
                        "CREATE TABLE IF NOT EXISTS \"kinesis\".\"events\" ("
                        "\"_kinesis_msg_id\" varchar NOT NULL, \"_dlt_load_id\" varchar NOT NULL, "
                        "\"_dlt_id\" varchar UNIQUE NOT NULL, \"user__name\" varchar, "
                        "\"amount\" double precision)");
    assert_string_equal(out.items[1],
                        "CREATE TABLE IF NOT EXISTS \"kinesis\".\"events__tags\" ("
                        "\"value\" bigint, \"_dlt_parent_id\" varchar NOT NULL, "
                        "\"_dlt_list_idx\" bigint NOT NULL, \"_dlt_id\" varchar UNIQUE NOT NULL)");
    kl_sql_stmts_free(&out);

    /* create_indexes off: no UNIQUE (dlt's create_indexes=False). SQLite types. */
    kl_sql_stmts_init(&out);
    assert_int_equal(kl_sql_plan_ddl(KL_SQL_SQLITE, "kinesis", &f.s, &cat, false, &out, NULL, &err),
                     KL_OK);
    assert_string_equal(out.items[1],
                        "CREATE TABLE IF NOT EXISTS \"kinesis.events__tags\" ("
                        "\"value\" BIGINT, \"_dlt_parent_id\" TEXT NOT NULL, "
                        "\"_dlt_list_idx\" BIGINT NOT NULL, \"_dlt_id\" TEXT NOT NULL)");
    kl_sql_stmts_free(&out);
    kl_sql_catalog_free(&cat);
}

/* Columns that appeared since: one ALTER TABLE per table in Postgres (with
 * IF NOT EXISTS), one per column in SQLite; added columns are nullable and
 * not UNIQUE; nothing for what exists. */
static void test_ddl_new_columns(void **state)
{
    struct fixture_schema f;
    struct kl_sql_catalog cat;
    struct kl_sql_stmts out;
    struct kl_sql_ddl_stats st = {0, 0};
    struct kl_err err = {0};
    (void)state;

    make_schema(&f);
    kl_sql_catalog_init(&cat);
    /* The database has the first three root columns and the child table. */
    for (size_t i = 0; i < 3; i++)
        assert_int_equal(kl_sql_catalog_add(&cat, "events", f.root_cols[i].name,
                                            kl_sql_type_tag(KL_SQL_POSTGRES, f.root_cols[i].type),
                                            &err),
                         KL_OK);
    for (size_t i = 0; i < 4; i++)
        assert_int_equal(kl_sql_catalog_add(&cat, "events__tags", f.child_cols[i].name,
                                            kl_sql_type_tag(KL_SQL_POSTGRES, f.child_cols[i].type),
                                            &err),
                         KL_OK);
    f.tables[0].n_columns = 6;
    f.tables[1].n_columns = 5;
    f.root_cols[4].nullable = false; /* even a non-nullable new column is added nullable */
    kl_sql_stmts_init(&out);
    assert_int_equal(kl_sql_plan_ddl(KL_SQL_POSTGRES, "kinesis", &f.s, &cat, true, &out, &st, &err),
                     KL_OK);
    assert_int_equal(st.tables_created, 0);
    assert_int_equal(st.columns_added, 4);
    assert_int_equal(out.n, 2);
    assert_string_equal(out.items[0],
                        "ALTER TABLE \"kinesis\".\"events\" ADD COLUMN IF NOT EXISTS "
                        "\"user__name\" varchar, ADD COLUMN IF NOT EXISTS \"amount\" double "
                        "precision, ADD COLUMN IF NOT EXISTS \"amount__v_text\" varchar");
    assert_string_equal(out.items[1], "ALTER TABLE \"kinesis\".\"events__tags\" ADD COLUMN IF "
                                      "NOT EXISTS \"seen_at\" timestamp with time zone");
    kl_sql_stmts_free(&out);

    /* SQLite: one statement per column. (Its catalog spells types its way.) */
    kl_sql_catalog_free(&cat);
    kl_sql_catalog_init(&cat);
    for (size_t i = 0; i < 5; i++)
        kl_sql_catalog_add(&cat, "events", f.root_cols[i].name,
                           kl_sql_type_tag(KL_SQL_SQLITE, f.root_cols[i].type), &err);
    for (size_t i = 0; i < 5; i++)
        kl_sql_catalog_add(&cat, "events__tags", f.child_cols[i].name,
                           kl_sql_type_tag(KL_SQL_SQLITE, f.child_cols[i].type), &err);
    kl_sql_stmts_init(&out);
    assert_int_equal(kl_sql_plan_ddl(KL_SQL_SQLITE, "kinesis", &f.s, &cat, true, &out, NULL, &err),
                     KL_OK);
    assert_int_equal(out.n, 1);
    assert_string_equal(out.items[0],
                        "ALTER TABLE \"kinesis.events\" ADD COLUMN \"amount__v_text\" TEXT");
    kl_sql_stmts_free(&out);

    /* Everything there: nothing to do. */
    kl_sql_catalog_add_schema(&cat, KL_SQL_SQLITE, &f.s, &err);
    kl_sql_stmts_init(&out);
    assert_int_equal(kl_sql_plan_ddl(KL_SQL_SQLITE, "kinesis", &f.s, &cat, true, &out, NULL, &err),
                     KL_OK);
    assert_int_equal(out.n, 0);
    kl_sql_stmts_free(&out);
    kl_sql_catalog_free(&cat);
}

/* A column the database holds with another type: the caller's schema is
 * stale (another writer typed it first). */
static void test_ddl_stale_schema(void **state)
{
    struct fixture_schema f;
    struct kl_sql_catalog cat;
    struct kl_sql_stmts out;
    struct kl_err err = {0};
    (void)state;

    make_schema(&f);
    kl_sql_catalog_init(&cat);
    kl_sql_stmts_init(&out);
    kl_sql_catalog_add(&cat, "events", "amount", "varchar", &err);
    assert_int_equal(
        kl_sql_plan_ddl(KL_SQL_POSTGRES, "kinesis", &f.s, &cat, true, &out, NULL, &err),
        KL_ERR_EXPIRED);
    assert_non_null(strstr(err.msg, "events.amount"));
    assert_non_null(strstr(err.msg, "float8"));
    kl_sql_stmts_free(&out);
    kl_sql_catalog_free(&cat);
}

/* Odd column names are quoted, never refused; control characters are. */
static void test_ddl_odd_columns(void **state)
{
    struct kl_column cols[2];
    struct kl_buf b;
    struct kl_err err = {0};
    (void)state;

    cols[0] = col("we\"ird name", KL_TYPE_TEXT, true, false);
    cols[1] = col("select", KL_TYPE_BOOL, true, false);
    kl_buf_init(&b, 4096);
    assert_int_equal(
        kl_sql_create_table(&b, KL_SQL_POSTGRES, "ds", "t", cols, 2, NULL, 0, true, &err), KL_OK);
    assert_string_equal(b.data, "CREATE TABLE IF NOT EXISTS \"ds\".\"t\" (\"we\"\"ird name\" "
                                "varchar, \"select\" boolean)");
    kl_buf_reset(&b);
    cols[1] = col("bad\nname", KL_TYPE_BOOL, true, false);
    assert_int_equal(
        kl_sql_create_table(&b, KL_SQL_POSTGRES, "ds", "t", cols, 2, NULL, 0, true, &err),
        KL_ERR_INVALID);
    kl_buf_free(&b);
}

/* dlt's system tables with dlt's columns, and ours with primary keys. */
static void test_system_tables(void **state)
{
    static const char *const expect[][10] = {
        {"_dlt_version", "version", "engine_version", "inserted_at", "schema_name", "version_hash",
         "schema", NULL},
        {"_dlt_loads", "load_id", "schema_name", "status", "inserted_at", "schema_version_hash",
         NULL},
        {"_dlt_pipeline_state", "version", "engine_version", "pipeline_name", "state", "created_at",
         "version_hash", "_dlt_load_id", "_dlt_id", NULL},
    };
    size_t n;
    const struct kl_sql_table_def *defs = kl_sql_system_tables(&n);
    struct kl_buf b;
    struct kl_err err = {0};
    (void)state;

    assert_int_equal(n, 7);
    for (size_t t = 0; t < 3; t++) {
        size_t c = 0;
        assert_string_equal(defs[t].name, expect[t][0]);
        while (expect[t][c + 1] != NULL) {
            assert_string_equal(defs[t].cols[c].name, expect[t][c + 1]);
            c++;
        }
        assert_int_equal(defs[t].n_cols, c);
    }
    kl_buf_init(&b, 4096);
    assert_int_equal(kl_sql_create_table(&b, KL_SQL_POSTGRES, "ds", defs[1].name, defs[1].cols,
                                         defs[1].n_cols, defs[1].pk, defs[1].n_pk, true, &err),
                     KL_OK);
    assert_string_equal(b.data, "CREATE TABLE IF NOT EXISTS \"ds\".\"_dlt_loads\" (\"load_id\" "
                                "varchar NOT NULL, \"schema_name\" varchar, \"status\" bigint NOT "
                                "NULL, \"inserted_at\" timestamp with time zone NOT NULL, "
                                "\"schema_version_hash\" varchar)");
    kl_buf_reset(&b);
    assert_string_equal(defs[3].name, "_kinesis_checkpoints");
    assert_int_equal(kl_sql_create_table(&b, KL_SQL_POSTGRES, "ds", defs[3].name, defs[3].cols,
                                         defs[3].n_cols, defs[3].pk, defs[3].n_pk, true, &err),
                     KL_OK);
    assert_non_null(strstr(b.data, "PRIMARY KEY (\"pipeline_name\", \"stream_name\", "
                                   "\"shard_id\")"));
    assert_non_null(strstr(b.data, "\"fencing_token\" bigint NOT NULL"));
    kl_buf_free(&b);
}

static void test_index_and_ids(void **state)
{
    struct kl_buf b;
    struct kl_err err = {0};
    struct fixture_schema f;
    struct kl_value cells[2 * 5];
    struct kl_table_rows tr;
    static const char *const ids[] = {"jiVgiJWjVZOZnsScC7O3", "+9NqWR5Lj\"X\\C"};
    (void)state;

    kl_buf_init(&b, 4096);
    assert_int_equal(
        kl_sql_create_index(&b, KL_SQL_POSTGRES, "ds", "events", "_kinesis_msg_id", &err), KL_OK);
    assert_true(strncmp(b.data, "CREATE INDEX IF NOT EXISTS \"kl_", 31) == 0);
    assert_non_null(strstr(b.data, "\" ON \"ds\".\"events\" (\"_kinesis_msg_id\")"));
    kl_buf_reset(&b);
    assert_int_equal(
        kl_sql_create_index(&b, KL_SQL_SQLITE, "ds", "events", "_kinesis_msg_id", &err), KL_OK);
    assert_true(strncmp(b.data, "CREATE INDEX IF NOT EXISTS \"ds.kl_", 34) == 0);
    kl_buf_reset(&b);

    make_schema(&f);
    memset(cells, 0, sizeof cells);
    for (int r = 0; r < 2; r++) {
        cells[r * 5].type = KL_TYPE_TEXT;
        cells[r * 5].v.s.ptr = ids[r];
        cells[r * 5].v.s.len = strlen(ids[r]);
    }
    memset(&tr, 0, sizeof tr);
    tr.n_columns = 5;
    tr.n_rows = 2;
    tr.cells = cells;
    assert_int_equal(kl_dest_msg_ids(&f.tables[0], &tr, false, &b, &err), KL_OK);
    assert_string_equal(b.data, "{\"jiVgiJWjVZOZnsScC7O3\",\"+9NqWR5Lj\\\"X\\\\C\"}");
    kl_buf_reset(&b);
    assert_int_equal(kl_dest_msg_ids(&f.tables[0], &tr, true, &b, &err), KL_OK);
    assert_string_equal(b.data, "[\"jiVgiJWjVZOZnsScC7O3\",\"+9NqWR5Lj\\\"X\\\\C\"]");
    kl_buf_reset(&b);
    /* A root without _kinesis_msg_id cannot be merged. */
    assert_int_equal(kl_dest_msg_ids(&f.tables[1], &tr, false, &b, &err), KL_ERR_INVALID);
    kl_buf_free(&b);
}

static void test_families(void **state)
{
    struct fixture_schema f;
    struct kl_table grand;
    struct kl_table tables[4];
    struct kl_sql_cat_table ct;
    struct kl_sql_cat_column cc[1];
    (void)state;

    make_schema(&f);
    memcpy(tables, f.tables, sizeof f.tables);
    memset(&grand, 0, sizeof grand);
    snprintf(grand.name, KL_IDENT_MAX, "events__tags__more");
    snprintf(grand.parent, KL_IDENT_MAX, "events__tags");
    tables[3] = grand;
    f.s.tables = tables;
    f.s.n_tables = 4;
    assert_int_equal(kl_dest_table_depth(&f.s, &tables[0]), 0);
    assert_int_equal(kl_dest_table_depth(&f.s, &tables[1]), 1);
    assert_int_equal(kl_dest_table_depth(&f.s, &tables[3]), 2);
    assert_true(kl_dest_in_family(&f.s, &tables[3], "events"));
    assert_false(kl_dest_in_family(&f.s, &tables[2], "events"));
    assert_false(kl_dest_in_family(&f.s, NULL, "events"));

    memset(&ct, 0, sizeof ct);
    memset(cc, 0, sizeof cc);
    snprintf(cc[0].name, KL_IDENT_MAX, "_dlt_parent_id");
    ct.cols = cc;
    ct.n_cols = 1;
    snprintf(ct.name, KL_IDENT_MAX, "events__tags");
    assert_true(kl_dest_in_family_by_name(&ct, "events"));
    snprintf(ct.name, KL_IDENT_MAX, "events_other");
    assert_false(kl_dest_in_family_by_name(&ct, "events"));
    ct.n_cols = 0;
    snprintf(ct.name, KL_IDENT_MAX, "events__x"); /* a root that only looks like a child */
    assert_false(kl_dest_in_family_by_name(&ct, "events"));
}

/* Merge deletes go deepest first, each level through its parent's _dlt_id;
 * a table the database lacks is skipped. */
static void test_merge_deletes(void **state)
{
    static const struct {
        enum kl_sql_dialect dialect;
        const char *want[3];
    } cases[] = {
        {KL_SQL_POSTGRES,
         {"DELETE FROM \"ds\".\"events__tags__more\" WHERE \"_dlt_parent_id\" IN (SELECT "
          "\"_dlt_id\" FROM \"ds\".\"events__tags\" WHERE \"_dlt_parent_id\" IN (SELECT "
          "\"_dlt_id\" FROM \"ds\".\"events\" WHERE \"_kinesis_msg_id\" = ANY($1::varchar[])))",
          "DELETE FROM \"ds\".\"events__tags\" WHERE \"_dlt_parent_id\" IN (SELECT \"_dlt_id\" "
          "FROM \"ds\".\"events\" WHERE \"_kinesis_msg_id\" = ANY($1::varchar[]))",
          "DELETE FROM \"ds\".\"events\" WHERE \"_kinesis_msg_id\" = ANY($1::varchar[])"}},
        {KL_SQL_SQLITE,
         {"DELETE FROM \"ds.events__tags__more\" WHERE \"_dlt_parent_id\" IN (SELECT \"_dlt_id\" "
          "FROM \"ds.events__tags\" WHERE \"_dlt_parent_id\" IN (SELECT \"_dlt_id\" FROM "
          "\"ds.events\" WHERE \"_kinesis_msg_id\" IN (SELECT value FROM json_each(?1))))",
          "DELETE FROM \"ds.events__tags\" WHERE \"_dlt_parent_id\" IN (SELECT \"_dlt_id\" FROM "
          "\"ds.events\" WHERE \"_kinesis_msg_id\" IN (SELECT value FROM json_each(?1)))",
          "DELETE FROM \"ds.events\" WHERE \"_kinesis_msg_id\" IN (SELECT value FROM "
          "json_each(?1))"}},
    };
    struct fixture_schema f;
    struct kl_table tables[4];
    struct kl_dest_ds_list l = {NULL, 0, 0};
    struct kl_dest_ds *d = NULL;
    struct kl_sql_stmts out;
    struct kl_err err = {0};
    (void)state;

    make_schema(&f);
    memcpy(tables, f.tables, sizeof f.tables);
    memset(&tables[3], 0, sizeof tables[3]);
    snprintf(tables[3].name, KL_IDENT_MAX, "events__tags__more");
    snprintf(tables[3].parent, KL_IDENT_MAX, "events__tags");
    tables[3].columns = f.child_cols;
    tables[3].n_columns = 4;
    f.s.tables = tables;
    f.s.n_tables = 4;
    assert_int_equal(kl_dest_ds_get(&l, "ds", &d, &err), KL_OK);
    assert_int_equal(kl_sql_catalog_add(&d->cat, "events", "_kinesis_msg_id", "varchar", &err),
                     KL_OK);
    assert_int_equal(kl_sql_catalog_add(&d->cat, "events__tags", "_dlt_parent_id", "varchar", &err),
                     KL_OK);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        /* Not created yet: only two levels to delete. */
        kl_sql_stmts_init(&out);
        assert_int_equal(
            kl_dest_plan_merge_deletes(cases[i].dialect, d, &f.s, &tables[0], &out, &err), KL_OK);
        assert_int_equal(out.n, 2);
        assert_string_equal(out.items[0], cases[i].want[1]);
        assert_string_equal(out.items[1], cases[i].want[2]);
        kl_sql_stmts_free(&out);
    }
    assert_int_equal(
        kl_sql_catalog_add(&d->cat, "events__tags__more", "_dlt_parent_id", "varchar", &err),
        KL_OK);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        kl_sql_stmts_init(&out);
        assert_int_equal(
            kl_dest_plan_merge_deletes(cases[i].dialect, d, &f.s, &tables[0], &out, &err), KL_OK);
        assert_int_equal(out.n, 3);
        for (size_t k = 0; k < 3; k++)
            assert_string_equal(out.items[k], cases[i].want[k]);
        kl_sql_stmts_free(&out);
    }
    /* The other root's family is not touched. */
    kl_sql_stmts_init(&out);
    assert_int_equal(kl_dest_plan_merge_deletes(KL_SQL_POSTGRES, d, &f.s, &tables[2], &out, &err),
                     KL_OK);
    assert_int_equal(out.n, 0);
    kl_sql_stmts_free(&out);
    kl_dest_ds_list_free(&l);
}

static void test_idset(void **state)
{
    struct kl_sql_idset s;
    struct kl_value v[3];
    struct kl_err err = {0};
    (void)state;
    memset(v, 0, sizeof v);
    v[0].v.s.ptr = "abc";
    v[0].v.s.len = 3;
    v[1].v.s.ptr = "abcd";
    v[1].v.s.len = 3; /* same text as v[0] */
    v[2].v.s.ptr = "abd";
    v[2].v.s.len = 3;
    assert_int_equal(kl_sql_idset_init(&s, 3, &err), KL_OK);
    assert_true(kl_sql_idset_add(&s, &v[0]));
    assert_false(kl_sql_idset_add(&s, &v[1]));
    assert_true(kl_sql_idset_add(&s, &v[2]));
    kl_sql_idset_free(&s);
}

/* A checkpoint row (shard given) or a run-time row (shard NULL). */
static void stream_row(struct kl_dest_stream_row *r, const char *stream, const char *shard,
                       int64_t last_run_ms)
{
    memset(r, 0, sizeof *r);
    snprintf(r->stream, sizeof r->stream, "%s", stream);
    if (shard != NULL) {
        snprintf(r->cp.position.shard_id, sizeof r->cp.position.shard_id, "%s", shard);
    } else {
        r->has_last_run = true;
        r->last_run_ms = last_run_ms;
    }
}

/* Sorted: streams and their shards in strcmp order (SQLite). As read:
 * streams in the order rows come (Postgres reads them ordered by its
 * collation), a run time joining its stream wherever that stands. */
static void test_group_streams(void **state)
{
    struct kl_dest_stream_row rows[5];
    struct kl_state_stream *streams = NULL;
    struct kl_checkpoint *cps = NULL;
    size_t n = 0;
    struct kl_err err = {0};
    (void)state;

    stream_row(&rows[0], "b", "s2", 0);
    stream_row(&rows[1], "a", "s1", 0);
    stream_row(&rows[2], "b", "s1", 0);
    stream_row(&rows[3], "c", NULL, 5); /* a run time only */
    assert_int_equal(kl_dest_group_streams(rows, 4, true, &streams, &n, &cps, &err), KL_OK);
    assert_int_equal(n, 3);
    assert_string_equal(streams[0].stream_name, "a");
    assert_int_equal(streams[0].n_checkpoints, 1);
    assert_string_equal(streams[1].stream_name, "b");
    assert_int_equal(streams[1].n_checkpoints, 2);
    assert_string_equal(streams[1].checkpoints[0].position.shard_id, "s1");
    assert_string_equal(streams[1].checkpoints[1].position.shard_id, "s2");
    assert_string_equal(streams[2].stream_name, "c");
    assert_int_equal(streams[2].n_checkpoints, 0);
    assert_true(streams[2].has_last_run);
    free(streams);
    free(cps);

    stream_row(&rows[0], "b", "s2", 0);
    stream_row(&rows[1], "b", "s1", 0);
    stream_row(&rows[2], "c", "s1", 0);
    stream_row(&rows[3], "a", NULL, 5);
    stream_row(&rows[4], "b", NULL, 7);
    assert_int_equal(kl_dest_group_streams(rows, 5, false, &streams, &n, &cps, &err), KL_OK);
    assert_int_equal(n, 3);
    assert_string_equal(streams[0].stream_name, "b");
    assert_int_equal(streams[0].n_checkpoints, 2);
    assert_string_equal(streams[0].checkpoints[0].position.shard_id, "s2");
    assert_string_equal(streams[0].checkpoints[1].position.shard_id, "s1");
    assert_true(streams[0].has_last_run);
    assert_int_equal(streams[0].last_run_ms, 7);
    assert_string_equal(streams[1].stream_name, "c");
    assert_int_equal(streams[1].n_checkpoints, 1);
    assert_string_equal(streams[1].checkpoints[0].position.shard_id, "s1");
    assert_false(streams[1].has_last_run);
    assert_string_equal(streams[2].stream_name, "a");
    assert_int_equal(streams[2].n_checkpoints, 0);
    assert_true(streams[2].has_last_run);
    free(streams);
    free(cps);
}

static void test_dispositions(void **state)
{
    enum kl_write_disposition d = KL_WRITE_APPEND;
    (void)state;
    assert_int_equal(kl_write_disposition_parse("merge", &d), 0);
    assert_int_equal(d, KL_WRITE_MERGE);
    assert_int_equal(kl_write_disposition_parse("replace", &d), 0);
    assert_string_equal(kl_write_disposition_name(d), "replace");
    assert_int_equal(kl_write_disposition_parse("upsert", &d), -1);
    assert_string_equal(kl_dest_step_name(KL_DEST_STEP_COMMIT), "commit");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_quote_ident),
        cmocka_unit_test(test_validate_names),
        cmocka_unit_test(test_table_ref),
        cmocka_unit_test(test_type_mapping),
        cmocka_unit_test(test_ddl_new_tables),
        cmocka_unit_test(test_ddl_new_columns),
        cmocka_unit_test(test_ddl_stale_schema),
        cmocka_unit_test(test_ddl_odd_columns),
        cmocka_unit_test(test_system_tables),
        cmocka_unit_test(test_index_and_ids),
        cmocka_unit_test(test_families),
        cmocka_unit_test(test_merge_deletes),
        cmocka_unit_test(test_idset),
        cmocka_unit_test(test_group_streams),

        cmocka_unit_test(test_dispositions),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
