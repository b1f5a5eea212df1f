/*
 * Integration: the PostgreSQL destination against the local server
 * (KL_TEST_PG_URL from scripts/services.sh). The test bodies are shared
 * with SQLite (test_dest_suite.h); this file says how to open the
 * destination and how to look into the database. Datasets are schemas
 * named t_<test>_<pid>_<n>, dropped at the end unless KL_KEEP_TEST_DATA=1.
 */
#include "tests/integration/test_dest_suite.h"
#include "core/dest/pg.h"

#include <arpa/inet.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

static PGconn *check_conn;

static PGconn *conn(void)
{
    if (check_conn == NULL) {
        check_conn = PQconnectdb(kl_test_require_env("KL_TEST_PG_URL"));
        if (check_conn == NULL || PQstatus(check_conn) != CONNECTION_OK)
            fail_msg("cannot connect to %s: %s", getenv("KL_TEST_PG_URL"),
                     check_conn != NULL ? PQerrorMessage(check_conn) : "no memory");
        PQclear(PQexec(check_conn, "SET client_min_messages = warning"));
    }
    return check_conn;
}

static struct kl_dest *pg_open(const struct kl_dest_options *o)
{
    struct kl_err err = {0};
    struct kl_dest *d = kl_dest_pg_create(kl_test_require_env("KL_TEST_PG_URL"), o, &err);
    if (d == NULL)
        fail_msg("kl_dest_pg_create: %s", err.msg);
    return d;
}

static struct kl_dest_factory *pg_factory(const struct kl_dest_options *o)
{
    struct kl_err err = {0};
    struct kl_dest_factory *f =
        kl_dest_pg_factory_create(kl_test_require_env("KL_TEST_PG_URL"), o, &err);
    if (f == NULL)
        fail_msg("kl_dest_pg_factory_create: %s", err.msg);
    return f;
}

static char *pg_scalar(const char *sql)
{
    PGresult *res = PQexec(conn(), sql);
    char *v = NULL;
    if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK)
        fail_msg("%s: %s", sql, PQerrorMessage(conn()));
    if (PQntuples(res) > 0 && !PQgetisnull(res, 0, 0))
        v = strdup(PQgetvalue(res, 0, 0));
    PQclear(res);
    return v;
}

static void pg_exec(const char *sql)
{
    PGresult *res = PQexec(conn(), sql);
    if (res == NULL || PQresultStatus(res) != PGRES_COMMAND_OK)
        fail_msg("%s: %s", sql, PQerrorMessage(conn()));
    PQclear(res);
}

static void pg_drop_dataset(const char *ds)
{
    char sql[256];
    snprintf(sql, sizeof sql, "DROP SCHEMA \"%s\" CASCADE", ds);
    pg_exec(sql);
}

static char *pg_column_type(const char *ds, const char *table, const char *column)
{
    const char *vals[3] = {ds, table, column};
    PGresult *res = PQexecParams(
        conn(),
        "SELECT t.typname FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid"
        " JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_type t ON t.oid = a.atttypid"
        " WHERE n.nspname = $1 AND c.relname = $2 AND a.attname = $3 AND NOT a.attisdropped",
        3, NULL, vals, NULL, NULL, 0);
    char *v = NULL;
    if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK)
        fail_msg("column type: %s", PQerrorMessage(conn()));
    if (PQntuples(res) == 1)
        v = strdup(PQgetvalue(res, 0, 0));
    PQclear(res);
    return v;
}

static int64_t pg_ts_us(const char *text)
{
    return text != NULL ? atoll(text) : INT64_MIN;
}

/* $.a[2].b -> col->'a'->2->>'b' */
static const char *pg_json_path(const char *column, const char *path)
{
    static char out[256];
    char steps[8][32];
    int n = 0;
    const char *p = path + 1;
    size_t len;

    while (*p != '\0' && n < 8) {
        size_t k = 0;
        if (*p == '.')
            p++;
        else if (*p == '[')
            p++;
        while (*p != '\0' && *p != '.' && *p != '[' && *p != ']' && k < 31)
            steps[n][k++] = *p++;
        steps[n][k] = '\0';
        if (*p == ']')
            p++;
        n++;
    }
    snprintf(out, sizeof out, "%s", column);
    for (int i = 0; i < n; i++) {
        bool num = steps[i][0] >= '0' && steps[i][0] <= '9';
        len = strlen(out);
        snprintf(out + len, sizeof out - len, num ? "%s%s" : "%s'%s'", i == n - 1 ? "->>" : "->",
                 steps[i]);
    }
    return out;
}

static const char *hex_expr(const char *column)
{
    static char out[512]; /* a quoted 63-byte name with every quote doubled fits */
    snprintf(out, sizeof out, "encode(%.200s, 'hex')", column);
    return out;
}

static const char *ts_expr(const char *column)
{
    static char out[512];
    snprintf(out, sizeof out, "(extract(epoch from %.200s) * 1000000)::bigint", column);
    return out;
}

/* numeric prints its value, not its input: 1e400 comes back in full. */
static bool pg_decimal_equal(const char *got, const char *want)
{
    const char *vals[2] = {got, want};
    PGresult *res = PQexecParams(conn(), "SELECT ($1::numeric = $2::numeric)::text", 2, NULL, vals,
                                 NULL, NULL, 0);
    bool eq;
    if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK)
        fail_msg("numeric compare: %s", PQerrorMessage(conn()));
    eq = strcmp(PQgetvalue(res, 0, 0), "true") == 0;
    PQclear(res);
    return eq;
}

static const struct backend BACKEND = {
    .name = "postgres",
    .dialect = KL_SQL_POSTGRES,
    .open = pg_open,
    .factory = pg_factory,
    .scalar = pg_scalar,
    .exec = pg_exec,
    .drop_dataset = pg_drop_dataset,
    .column_type = pg_column_type,
    .hex_expr = hex_expr,
    .ts_expr = ts_expr,
    .ts_us = pg_ts_us,
    .json_path = pg_json_path,
    .true_text = "t",
    .decimal_equal = pg_decimal_equal,
};

/* Drops the schemas this process made. */
static int teardown_group(void **state)
{
    char like[64];
    const char *vals[1] = {like};
    PGresult *res;
    (void)state;

    if (check_conn == NULL)
        return 0;
    if (getenv("KL_KEEP_TEST_DATA") == NULL || strcmp(getenv("KL_KEEP_TEST_DATA"), "1") != 0) {
        snprintf(like, sizeof like, "t\\_%%\\_%ld\\_%%", (long)getpid());
        res = PQexecParams(check_conn, "SELECT nspname FROM pg_namespace WHERE nspname LIKE $1", 1,
                           NULL, vals, NULL, NULL, 0);
        if (res != NULL && PQresultStatus(res) == PGRES_TUPLES_OK) {
            for (int i = 0; i < PQntuples(res); i++) {
                char sql[256];
                PGresult *r;
                snprintf(sql, sizeof sql, "DROP SCHEMA \"%s\" CASCADE", PQgetvalue(res, i, 0));
                r = PQexec(check_conn, sql);
                PQclear(r);
            }
        }
        PQclear(res);
    }
    PQfinish(check_conn);
    check_conn = NULL;
    return 0;
}

/* Postgres only: the connection drops under a chunk (the server ends it):
 * the call fails as retryable and the next one reconnects. */
static void test_pg_connection_killed(void **state)
{
    const char *ds0 = unique_dataset("killed");
    const char *url = kl_test_require_env("KL_TEST_PG_URL");
    char ds[64], app[64], conninfo[512], sql[256];
    struct ts x;
    struct kl_dest *d;
    struct kl_err err = {0};
    size_t root;
    int rc;
    (void)state;

    /* Our own application name, so only this connection is terminated. */
    snprintf(ds, sizeof ds, "%s", ds0);
    snprintf(app, sizeof app, "kl_killed_%ld", (long)getpid());
    snprintf(conninfo, sizeof conninfo, "%s%sapplication_name=%s", url,
             strchr(url, '?') != NULL ? "&" : "?", app);
    d = kl_dest_pg_create(conninfo, NULL, &err);
    if (d == NULL)
        fail_msg("%s", err.msg);
    ts_init(&x);
    root = ts_root(&x, "events");
    assert_int_equal(
        write_range(d, ds, &x, root, TS_MAX_TABLES, "L", KL_WRITE_APPEND, "s0", 0, 5, 5, 1, &err),
        KL_OK);
    snprintf(sql, sizeof sql,
             "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
             " WHERE application_name = '%s'",
             app);
    assert_int_equal(scalar_ll("%s", sql), 1);
    rc = write_range(d, ds, &x, root, TS_MAX_TABLES, "L", KL_WRITE_APPEND, "s0", 5, 10, 5, 1, &err);
    assert_int_equal(rc, KL_ERR_UNAVAILABLE);
    assert_non_null(strstr(err.msg, "SQLSTATE"));
    rc = write_range(d, ds, &x, root, TS_MAX_TABLES, "L", KL_WRITE_APPEND, "s0", 5, 10, 5, 1, &err);
    if (rc != KL_OK)
        fail_msg("after reconnecting: %s", err.msg);
    assert_int_equal(count_rows(ds, "events", NULL), 10);
    assert_int_equal(resume_from(d, ds, "s0"), 10);
    kl_dest_destroy(d);
}

/* A server that accepts the connection and never answers: the call fails
 * as retryable after the default connect_timeout instead of hanging. */
static void test_pg_silent_server(void **state)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    char conninfo[128];
    struct kl_dest *d;
    struct kl_err err = {0};
    (void)state;

    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(fd, 8), 0); /* the kernel accepts; nobody speaks */
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    snprintf(conninfo, sizeof conninfo, "postgresql://loader@127.0.0.1:%d/db?sslmode=disable",
             ntohs(a.sin_port));
    /* creating connects at once; a later call would reconnect the same way */
    d = kl_dest_pg_create(conninfo, NULL, &err);
    if (d != NULL) {
        assert_int_equal(kl_dest_ping(d, &err), KL_ERR_UNAVAILABLE);
        kl_dest_destroy(d);
    }
    assert_int_equal(err.code, KL_ERR_UNAVAILABLE);
    assert_non_null(strstr(err.msg, "timeout"));
    printf("# %s\n", err.msg);
    close(fd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        KL_DEST_SUITE_TESTS,
        cmocka_unit_test(test_pg_connection_killed),
        cmocka_unit_test(test_pg_silent_server),
    };
    return cmocka_run_group_tests(tests, NULL, teardown_group);
}
