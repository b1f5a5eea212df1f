/*
 * The service as users drive it: `kinesis-loader serve` started for real,
 * curl-like requests, PostgreSQL underneath. Load and poll until
 * last_normalize_info.row_counts; the rows are in Postgres exactly once; a
 * second job loads only what is new; 409 for a second active job;
 * Idempotency-Key; cancel at a chunk boundary; bearer-token auth.
 */
#include "tests/support/test_support.h"
#include "core/util/err.h"

#include <cjson/cJSON.h>
#include <libpq-fe.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

struct server {
    pid_t pid;
    char base[64];
};

static struct kl_http *http;
static const char *shared_redis; /* REDIS_URL for replicas sharing state, or NULL */
static char stream[96], dataset[64], access_key[64];

static void server_start(struct server *s, int port, const char *token, const char *kinesis_env)
{
    char url[128];
    s->pid = fork();
    assert_true(s->pid >= 0);
    if (s->pid == 0) {
        char listen[32];
        snprintf(listen, sizeof listen, "127.0.0.1:%d", port);
        setenv("KL_LISTEN", listen, 1);
        setenv("DATABASE_URL", kl_test_require_env("KL_TEST_PG_URL"), 1);
        setenv("AWS_ENDPOINT_URL_KINESIS", kl_test_require_env(kinesis_env), 1);
        setenv("AWS_ACCESS_KEY_ID", access_key, 1);
        setenv("AWS_SECRET_ACCESS_KEY", kl_test_require_env("KL_TEST_PROXY_SECRET"), 1);
        setenv("AWS_REGION", "us-east-1", 1);
        setenv("KL_WORKERS", "1", 1);
        if (shared_redis != NULL) {
            setenv("REDIS_URL", shared_redis, 1);
            setenv("KL_LEASE_TTL_S", "5", 1);
        }
        setenv("KL_LOG_LEVEL", "warn", 1);
        if (token != NULL)
            setenv("KL_API_TOKEN", token, 1);
        else
            unsetenv("KL_API_TOKEN");
        execl(KL_BINARY, "kinesis-loader", "serve", (char *)NULL);
        _exit(127);
    }
    snprintf(s->base, sizeof s->base, "http://127.0.0.1:%d", port);
    snprintf(url, sizeof url, "%s/healthz", s->base);
    for (int i = 0; i < 100; i++) {
        struct kl_http_request req = {0};
        struct kl_http_response resp;
        req.method = "GET";
        req.url = url;
        kl_http_response_init(&resp);
        if (kl_http_send(http, &req, &resp, NULL) == KL_OK && resp.status == 200) {
            kl_http_response_free(&resp);
            return;
        }
        usleep(100000);
    }
    fail_msg("the service did not answer on %s", s->base);
}

static void server_stop(struct server *s)
{
    int status;
    kill(s->pid, SIGTERM);
    waitpid(s->pid, &status, 0);
    assert_true(WIFEXITED(status));
}

/* One request; returns the status, the body parsed (may be NULL) and the Location. */
static long call(const struct server *s, const char *method, const char *path, const char *body,
                 const char *extra_header, cJSON **doc, char *location, size_t loc_cap)
{
    struct kl_http_header h[3] = {{"Content-Type", "application/json"}, {NULL, NULL}};
    struct kl_http_request req = {0};
    struct kl_http_response resp;
    char url[512], hname[64], hvalue[256];
    struct kl_err err;
    long status;

    snprintf(url, sizeof url, "%s%s", s->base, path);
    req.method = method;
    req.url = url;
    req.headers = h;
    req.n_headers = 1;
    if (extra_header != NULL) {
        const char *colon = strchr(extra_header, ':');
        snprintf(hname, sizeof hname, "%.*s", (int)(colon - extra_header), extra_header);
        snprintf(hvalue, sizeof hvalue, "%s", colon + 2);
        h[1].name = hname;
        h[1].value = hvalue;
        req.n_headers = 2;
    }
    req.body = body;
    req.body_len = body ? strlen(body) : 0;
    kl_http_response_init(&resp);
    if (kl_http_send(http, &req, &resp, &err) != KL_OK)
        fail_msg("%s %s: %s", method, path, err.msg);
    status = resp.status;
    if (doc != NULL)
        *doc = cJSON_ParseWithLength(resp.body, resp.body_len);
    if (location != NULL) {
        /* the transport keeps no headers: the job id in the body names the same place */
        cJSON *d = cJSON_ParseWithLength(resp.body, resp.body_len);
        const char *id = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(d, "id"));
        snprintf(location, loc_cap, "/jobs/%s", id ? id : "");
        cJSON_Delete(d);
    }
    kl_http_response_free(&resp);
    return status;
}

static const char *status_of(const cJSON *job)
{
    return cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(job, "status"));
}

/* Polls a job until it is final; returns its document. */
static cJSON *poll(const struct server *s, const char *location)
{
    for (int i = 0; i < 600; i++) {
        cJSON *doc = NULL;
        assert_int_equal(call(s, "GET", location, NULL, NULL, &doc, NULL, 0), 200);
        const char *st = status_of(doc);
        if (st != NULL && strcmp(st, "queued") != 0 && strcmp(st, "running") != 0)
            return doc;
        cJSON_Delete(doc);
        usleep(100000);
    }
    fail_msg("job %s did not finish", location);
    return NULL;
}

static long long row_count(const cJSON *job, const char *table)
{
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(
            cJSON_GetObjectItemCaseSensitive(job, "last_normalize_info"), "row_counts"),
        table);
    return cJSON_IsNumber(n) ? (long long)n->valuedouble : -1;
}

static long long pg_rows(const char *table)
{
    char sql[256];
    PGconn *c = PQconnectdb(kl_test_require_env("KL_TEST_PG_URL"));
    PGresult *r;
    long long n;
    snprintf(sql, sizeof sql, "SELECT count(DISTINCT _kinesis_msg_id) FROM \"%s\".\"%s\"",
             dataset, table);
    r = PQexec(c, sql);
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        fail_msg("%s: %s", sql, PQerrorMessage(c));
    n = atoll(PQgetvalue(r, 0, 0));
    PQclear(r);
    PQfinish(c);
    return n;
}

static void put(int start, int count)
{
    assert_int_equal(kl_test_run(NULL,
                                 "cd '%s' && node put-records.js --endpoint '%s' --stream '%s' "
                                 "--start %d --count %d --access-key '%s' >/dev/null",
                                 kl_test_require_env("KL_TEST_NODE_TOOLS"),
                                 kl_test_require_env("KL_TEST_PROXY_URL"), stream, start, count,
                                 access_key),
                     0);
}

static void proxy_faults(const char *rule)
{
    assert_int_equal(kl_test_run(NULL,
                                 "curl -sf -X %s -H 'Content-Type: application/json' %s%s%s "
                                 "'%s/__faults%s%s' >/dev/null",
                                 rule ? "POST" : "DELETE", rule ? "-d '" : "", rule ? rule : "",
                                 rule ? "'" : "", kl_test_require_env("KL_TEST_PROXY_URL"),
                                 rule ? "" : "?access_key=", rule ? "" : access_key),
                     0);
}

static void loads_over_http(void **state)
{
    struct server s;
    char body[512], loc[128], loc2[128], table[96], rule[256];
    cJSON *job = NULL;
    (void)state;

    server_start(&s, 18000 + getpid() % 1000, NULL, "KL_TEST_PROXY_URL");
    snprintf(table, sizeof table, "%s", stream);
    for (char *c = table; *c; c++)
        if (*c == '-')
            *c = '_';
    snprintf(body, sizeof body,
             "{\"dataset_name\":\"%s\",\"initial_at_timestamp\":null,"
             "\"milliseconds_behind_latest\":0,\"chunk_size\":100}",
             dataset);

    /* load and poll until row_counts */
    char path[160];
    snprintf(path, sizeof path, "/streams/%s/loads", stream);
    assert_int_equal(call(&s, "POST", path, body, NULL, NULL, loc, sizeof loc), 202);
    job = poll(&s, loc);
    assert_string_equal(status_of(job), "succeeded");
    assert_int_equal(row_count(job, table), 400);
    assert_int_equal(row_count(job, "_dlt_pipeline_state"), 1);
    cJSON_Delete(job);
    assert_int_equal(pg_rows(table), 400);

    /* the next job loads only what is new */
    put(400, 50);
    assert_int_equal(call(&s, "POST", path, body, NULL, NULL, loc, sizeof loc), 202);
    job = poll(&s, loc);
    assert_int_equal(row_count(job, table), 50);
    cJSON_Delete(job);
    assert_int_equal(pg_rows(table), 450);

    /* a slow job: 409 for a second one, the same job for the same Idempotency-Key */
    put(450, 300);
    snprintf(rule, sizeof rule,
             "{\"access_key\":\"%s\",\"fault\":\"slow\",\"every\":1,\"delay_ms\":300,"
             "\"target\":\"GetRecords\"}",
             access_key);
    proxy_faults(rule);
    assert_int_equal(call(&s, "POST", path, body, "Idempotency-Key: k-1", NULL, loc, sizeof loc),
                     202);
    assert_int_equal(call(&s, "POST", path, body, "Idempotency-Key: k-1", NULL, loc2,
                          sizeof loc2),
                     200);
    assert_string_equal(loc, loc2);
    assert_int_equal(call(&s, "POST", path, body, NULL, &job, NULL, 0), 409);
    assert_string_equal(
        cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(job, "type")), "/problems/conflict");
    cJSON_Delete(job);

    /* cancel stops at a chunk boundary; what was committed stays */
    snprintf(path, sizeof path, "%s/cancel", loc);
    assert_int_equal(call(&s, "POST", path, NULL, NULL, NULL, NULL, 0), 202);
    job = poll(&s, loc);
    assert_string_equal(status_of(job), "cancelled");
    cJSON_Delete(job);
    proxy_faults(NULL);

    /* and the next job picks up the rest: every message exactly once */
    snprintf(path, sizeof path, "/streams/%s/loads", stream);
    assert_int_equal(call(&s, "POST", path, body, NULL, NULL, loc, sizeof loc), 202);
    job = poll(&s, loc);
    assert_string_equal(status_of(job), "succeeded");
    cJSON_Delete(job);
    assert_int_equal(pg_rows(table), 750);
    server_stop(&s);
}

/* Two replicas share Redis and Postgres; one is killed with SIGKILL while it
 * loads; the other takes its work over after the lease and finishes the job;
 * Postgres holds every message exactly once. */
static void a_killed_replica_loses_and_repeats_nothing(void **state)
{
    struct server a, b;
    char body[512], path[160], loc[128], rule[256], table[96], prefix[64];
    cJSON *job;
    int status;
    (void)state;

    snprintf(prefix, sizeof prefix, "%s", kl_test_require_env("KL_TEST_REDIS_URL"));
    shared_redis = prefix;
    server_start(&a, 20000 + getpid() % 1000, NULL, "KL_TEST_PROXY_URL");
    server_start(&b, 21000 + getpid() % 1000, NULL, "KL_TEST_PROXY_URL");
    snprintf(table, sizeof table, "%s", stream);
    for (char *c = table; *c; c++)
        if (*c == '-')
            *c = '_';
    /* slow reads, so the job is still running when replica A dies */
    snprintf(rule, sizeof rule,
             "{\"access_key\":\"%s\",\"fault\":\"slow\",\"every\":1,\"delay_ms\":150,"
             "\"target\":\"GetRecords\"}",
             access_key);
    proxy_faults(rule);
    put(750, 600);
    snprintf(body, sizeof body,
             "{\"dataset_name\":\"%s_r\",\"pipeline_name\":\"replicas\","
             "\"initial_at_timestamp\":null,\"milliseconds_behind_latest\":0,\"chunk_size\":40}",
             dataset);
    snprintf(path, sizeof path, "/streams/%s/loads", stream);
    assert_int_equal(call(&a, "POST", path, body, NULL, NULL, loc, sizeof loc), 202);
    /* both replicas answer for the job */
    usleep(1500000);
    assert_int_equal(call(&b, "GET", loc, NULL, NULL, NULL, NULL, 0), 200);
    kill(a.pid, SIGKILL);
    waitpid(a.pid, &status, 0);
    job = poll(&b, loc);
    if (strcmp(status_of(job), "succeeded") != 0) {
        char *text = cJSON_Print(job);
        fail_msg("the job did not survive a killed replica: %s", text);
    }
    cJSON_Delete(job);
    proxy_faults(NULL);
    server_stop(&b);
    shared_redis = NULL;
    {
        char sql[256];
        PGconn *c = PQconnectdb(kl_test_require_env("KL_TEST_PG_URL"));
        PGresult *r;
        snprintf(sql, sizeof sql,
                 "SELECT count(*), count(DISTINCT _kinesis_msg_id) FROM \"%s_r\".\"%s\"",
                 dataset, table);
        r = PQexec(c, sql);
        assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
        /* a fresh pipeline and dataset: all 1350 messages of the stream, each once */
        assert_int_equal(atoll(PQgetvalue(r, 0, 1)), 1350);
        assert_int_equal(atoll(PQgetvalue(r, 0, 0)), 1350);
        PQclear(r);
        PQfinish(c);
    }
}

static void bearer_token_auth(void **state)
{
    struct server s;
    (void)state;
    server_start(&s, 19000 + getpid() % 1000, "s3cret-token", "KL_TEST_PROXY_URL");
    assert_int_equal(call(&s, "GET", "/jobs", NULL, NULL, NULL, NULL, 0), 401);
    assert_int_equal(call(&s, "GET", "/jobs", NULL, "Authorization: Bearer wrong", NULL, NULL, 0),
                     401);
    assert_int_equal(
        call(&s, "GET", "/jobs", NULL, "Authorization: Bearer s3cret-token", NULL, NULL, 0), 200);
    assert_int_equal(call(&s, "GET", "/healthz", NULL, NULL, NULL, NULL, 0), 200);
    server_stop(&s);
}

static int setup(void **state)
{
    struct kl_err err;
    (void)state;
    http = kl_http_curl_create(NULL, &err);
    assert_non_null(http);
    snprintf(access_key, sizeof access_key, "%s", kl_test_unique("AKIDE2E"));
    snprintf(stream, sizeof stream, "%s", kl_test_unique("kl-e2e"));
    snprintf(dataset, sizeof dataset, "e2e_%d", (int)getpid());
    assert_int_equal(kl_test_run(NULL,
                                 "cd '%s' && node create-stream.js --endpoint '%s' --stream '%s' "
                                 "--shards 2 --access-key '%s' >/dev/null",
                                 kl_test_require_env("KL_TEST_NODE_TOOLS"),
                                 kl_test_require_env("KL_TEST_PROXY_URL"), stream, access_key),
                     0);
    put(0, 400);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    kl_http_destroy(http);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(loads_over_http),
        cmocka_unit_test(a_killed_replica_loses_and_repeats_nothing),
        cmocka_unit_test(bearer_token_auth),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
