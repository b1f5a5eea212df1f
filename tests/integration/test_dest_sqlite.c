/*
 * Integration: the SQLite destination on a database file in a fresh
 * temporary directory. The test bodies are shared with Postgres
 * (test_dest_suite.h); this file says how to open the destination and how
 * to look into the file. Every dataset of the run lives in the one file, as
 * in production.
 */
#include "tests/integration/test_dest_suite.h"
#include "core/dest/sqlite.h"

#include <sqlite3.h>

static char dir[64];
static char path[128];
static sqlite3 *check_db;

static sqlite3 *db(void)
{
    if (check_db == NULL) {
        if (sqlite3_open_v2(path, &check_db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) !=
            SQLITE_OK)
            fail_msg("cannot open %s", path);
        sqlite3_busy_timeout(check_db, 60000);
    }
    return check_db;
}

static struct kl_dest *lite_open_dest(const struct kl_dest_options *o)
{
    struct kl_err err = {0};
    struct kl_dest *d = kl_dest_sqlite_create(path, o, &err);
    if (d == NULL)
        fail_msg("kl_dest_sqlite_create: %s", err.msg);
    return d;
}

static struct kl_dest_factory *lite_factory(const struct kl_dest_options *o)
{
    struct kl_err err = {0};
    struct kl_dest_factory *f = kl_dest_sqlite_factory_create(path, o, &err);
    if (f == NULL)
        fail_msg("kl_dest_sqlite_factory_create: %s", err.msg);
    return f;
}

static char *lite_scalar(const char *sql)
{
    sqlite3_stmt *st = NULL;
    char *v = NULL;
    int rc;

    if (sqlite3_prepare_v2(db(), sql, -1, &st, NULL) != SQLITE_OK)
        fail_msg("%s: %s", sql, sqlite3_errmsg(db()));
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL) {
        if (sqlite3_column_type(st, 0) == SQLITE_FLOAT) {
            char buf[64];
            snprintf(buf, sizeof buf, "%.17g", sqlite3_column_double(st, 0));
            v = strdup(buf);
        } else {
            v = strdup((const char *)sqlite3_column_text(st, 0));
        }
    } else if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        fail_msg("%s: %s", sql, sqlite3_errmsg(db()));
    }
    sqlite3_finalize(st);
    return v;
}

static void lite_exec_sql(const char *sql)
{
    char *msg = NULL;
    if (sqlite3_exec(db(), sql, NULL, NULL, &msg) != SQLITE_OK)
        fail_msg("%s: %s", sql, msg != NULL ? msg : "?");
}

static void lite_drop_dataset(const char *ds)
{
    sqlite3_stmt *st = NULL;
    char names[64][160];
    int n = 0;

    if (sqlite3_prepare_v2(db(),
                           "SELECT name FROM sqlite_master WHERE type = 'table' AND "
                           "substr(name, 1, length(?1) + 1) = ?1 || '.'",
                           -1, &st, NULL) != SQLITE_OK)
        fail_msg("%s", sqlite3_errmsg(db()));
    sqlite3_bind_text(st, 1, ds, -1, SQLITE_TRANSIENT);
    while (sqlite3_step(st) == SQLITE_ROW && n < 64)
        snprintf(names[n++], sizeof names[0], "%s", (const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    for (int i = 0; i < n; i++) {
        char sql[256];
        snprintf(sql, sizeof sql, "DROP TABLE \"%.200s\"", names[i]);
        lite_exec_sql(sql);
    }
}

static char *lite_column_type(const char *ds, const char *table, const char *column)
{
    sqlite3_stmt *st = NULL;
    char full[160];
    char *v = NULL;

    snprintf(full, sizeof full, "%s.%s", ds, table);
    if (sqlite3_prepare_v2(db(), "SELECT type FROM pragma_table_info(?1) WHERE name = ?2", -1, &st,
                           NULL) != SQLITE_OK)
        fail_msg("%s", sqlite3_errmsg(db()));
    sqlite3_bind_text(st, 1, full, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, column, -1, SQLITE_TRANSIENT);
    if (sqlite3_step(st) == SQLITE_ROW)
        v = strdup((const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    return v;
}

static int64_t lite_ts_us(const char *text)
{
    int64_t us = INT64_MIN;
    if (text == NULL || kl_fmt_parse_timestamp(text, &us) != 0)
        return INT64_MIN;
    return us;
}

static const char *lite_json_path(const char *column, const char *p)
{
    static char out[256];
    snprintf(out, sizeof out, "json_extract(%s, '%s')", column, p);
    return out;
}

static const char *hex_expr(const char *column)
{
    static char out[512]; /* a quoted 63-byte name with every quote doubled fits */
    snprintf(out, sizeof out, "CASE WHEN %.200s IS NULL THEN NULL ELSE lower(hex(%.200s)) END",
             column, column);
    return out;
}

static const char *ts_expr(const char *column)
{
    static char out[512];
    snprintf(out, sizeof out, "%.200s", column);
    return out;
}

static bool lite_decimal_equal(const char *got, const char *want)
{
    return strcmp(got, want) == 0;
}

static const struct backend BACKEND = {
    .name = "sqlite",
    .dialect = KL_SQL_SQLITE,
    .open = lite_open_dest,
    .factory = lite_factory,
    .scalar = lite_scalar,
    .exec = lite_exec_sql,
    .drop_dataset = lite_drop_dataset,
    .column_type = lite_column_type,
    .hex_expr = hex_expr,
    .ts_expr = ts_expr,
    .ts_us = lite_ts_us,
    .json_path = lite_json_path,
    .true_text = "1",
    .decimal_equal = lite_decimal_equal,
};

static int setup_group(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/kl-dest-sqlite-XXXXXX");
    if (mkdtemp(dir) == NULL)
        return -1;
    snprintf(path, sizeof path, "%s/kinesis-loader.db", dir);
    return 0;
}

static int teardown_group(void **state)
{
    static const char *const suffixes[] = {"", "-wal", "-shm"};
    (void)state;
    if (check_db != NULL)
        sqlite3_close(check_db);
    check_db = NULL;
    if (getenv("KL_KEEP_TEST_DATA") != NULL && strcmp(getenv("KL_KEEP_TEST_DATA"), "1") == 0) {
        fprintf(stderr, "kept %s\n", path);
        return 0;
    }
    for (size_t i = 0; i < 3; i++) {
        char f[160];
        snprintf(f, sizeof f, "%s%s", path, suffixes[i]);
        unlink(f);
    }
    rmdir(dir);
    return 0;
}

/* SQLite only: WAL mode is in force on the file. */
static void test_sqlite_wal(void **state)
{
    struct kl_dest *d = open_default();
    struct kl_err err = {0};
    char *v;
    (void)state;
    assert_int_equal(kl_dest_prepare(d, "walcheck", &err), KL_OK);
    v = lite_scalar("PRAGMA journal_mode");
    assert_string_equal(v, "wal");
    free(v);
    kl_dest_destroy(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        KL_DEST_SUITE_TESTS,
        cmocka_unit_test(test_sqlite_wal),
    };
    return cmocka_run_group_tests(tests, setup_group, teardown_group);
}
