/*
 * The service as users drive it: `kinesis-loader serve` started for real,
 * curl-like requests, PostgreSQL underneath. Load and poll until
 * last_normalize_info.row_counts; the rows are in Postgres exactly once; a
 * second job loads only what is new; 409 for a second active job;
 * Idempotency-Key; cancel at a chunk boundary; bearer-token auth; /metrics
 * after a load. A continuous job following a stream while a producer
 * writes, then cancelled; one declared by KL_CONTINUOUS_LOADS, which comes
 * back after Redis lost it. And crashes mid-job: a replica killed with SIGKILL, Redis
 * restarted (its data gone), PostgreSQL restarted: the job finishes, or
 * fails and a new job finishes it; every message is in Postgres once.
 */
#include "tests/support/test_support.h"
#include "core/util/clock.h"
#include "core/util/err.h"

#include <cjson/cJSON.h>
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
static int messages_put;             /* messages in the stream so far */
static const char *workers = "1";    /* KL_WORKERS of the servers a test starts */
static const char *continuous_loads; /* KL_CONTINUOUS_LOADS of them, or NULL */

/* Servers still running, killed by the teardown when a test failed midway. */
static pid_t running[8];

static void server_start(struct server *s, int port, const char *token, const char *kinesis_env)
{
    char url[128];
    s->pid = fork();
    assert_true(s->pid >= 0);
    for (size_t i = 0; s->pid > 0 && i < sizeof running / sizeof running[0]; i++)
        if (running[i] == 0) {
            running[i] = s->pid;
            break;
        }
    if (s->pid == 0) {
        char listen[32];
        snprintf(listen, sizeof listen, "127.0.0.1:%d", port);
        setenv("KL_LISTEN", listen, 1);
        setenv("DATABASE_URL", kl_test_require_env("KL_TEST_PG_URL"), 1);
        setenv("AWS_ENDPOINT_URL_KINESIS", kl_test_require_env(kinesis_env), 1);
        setenv("AWS_ACCESS_KEY_ID", access_key, 1);
        setenv("AWS_SECRET_ACCESS_KEY", kl_test_require_env("KL_TEST_PROXY_SECRET"), 1);
        setenv("AWS_REGION", "us-east-1", 1);
        setenv("KL_WORKERS", workers, 1);
        if (shared_redis != NULL) {
            setenv("REDIS_URL", shared_redis, 1);
            setenv("KL_LEASE_TTL_S", "5", 1);
        }
        setenv("KL_LOG_LEVEL", "warn", 1);
        if (continuous_loads != NULL)
            setenv("KL_CONTINUOUS_LOADS", continuous_loads, 1);
        else
            unsetenv("KL_CONTINUOUS_LOADS");
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

static void forget_server(pid_t pid)
{
    for (size_t i = 0; i < sizeof running / sizeof running[0]; i++)
        if (running[i] == pid)
            running[i] = 0;
}

static void server_stop(struct server *s)
{
    int status;
    kill(s->pid, SIGTERM);
    waitpid(s->pid, &status, 0);
    forget_server(s->pid);
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

/* GET of a text document (the body, malloc'ed). */
static char *get_text(const struct server *s, const char *path)
{
    struct kl_http_request req = {0};
    struct kl_http_response resp;
    char url[256], *text;
    struct kl_err err;

    snprintf(url, sizeof url, "%s%s", s->base, path);
    req.method = "GET";
    req.url = url;
    kl_http_response_init(&resp);
    if (kl_http_send(http, &req, &resp, &err) != KL_OK)
        fail_msg("GET %s: %s", path, err.msg);
    assert_int_equal(resp.status, 200);
    text = strndup(resp.body, resp.body_len);
    kl_http_response_free(&resp);
    assert_non_null(text);
    return text;
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
    return kl_test_pg_scalar("SELECT count(DISTINCT _kinesis_msg_id) FROM \"%s\".\"%s\"", dataset,
                             table);
}

static void put(int start, int count)
{
    if (start + count > messages_put)
        messages_put = start + count;
    assert_int_equal(kl_test_run(NULL,
                                 "cd '%s' && node put-records.js --endpoint '%s' --stream '%s' "
                                 "--start %d --count %d --access-key '%s' >/dev/null",
                                 kl_test_require_env("KL_TEST_NODE_TOOLS"),
                                 kl_test_require_env("KL_TEST_PROXY_URL"), stream, start, count,
                                 access_key),
                     0);
}

/* The root table's name: the stream's, with '-' as '_'. */
static void table_of_stream(char *table, size_t cap)
{
    snprintf(table, cap, "%s", stream);
    for (char *c = table; *c; c++)
        if (*c == '-')
            *c = '_';
}

/* The dataset `dataset``suffix` holds `want` messages in `table`, each once. */
static void assert_exactly_once(const char *suffix, const char *table, int want)
{
    assert_int_equal(
        kl_test_pg_scalar("SELECT count(*) FROM \"%s%s\".\"%s\"", dataset, suffix, table), want);
    assert_int_equal(
        kl_test_pg_scalar("SELECT count(DISTINCT _kinesis_msg_id) FROM \"%s%s\".\"%s\"", dataset,
                          suffix, table),
        want);
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
    table_of_stream(table, sizeof table);
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

    /* /metrics: the job, its messages and rows, each shard's lag */
    {
        char *text = get_text(&s, "/metrics"), want[256];
        assert_non_null(strstr(text, "\nkl_jobs{status=\"succeeded\"} 1\n"));
        assert_non_null(strstr(text, "\nkl_messages_loaded_total 400\n"));
        assert_non_null(strstr(text, "\nkl_rows_loaded_total 400\n"));
        assert_non_null(strstr(text, "\nkl_store_up 1\n"));
        for (int shard = 0; shard < 2; shard++) {
            snprintf(want, sizeof want,
                     "\nkl_shard_millis_behind_latest{pipeline=\"kinesis_pipeline\",stream=\"%s\","
                     "shard=\"shardId-00000000000%d\"} 0\n",
                     stream, shard);
            if (strstr(text, want) == NULL)
                fail_msg("no '%s' in /metrics:\n%s", want + 1, text);
        }
        free(text);
    }

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
    assert_int_equal(call(&s, "POST", path, body, "Idempotency-Key: k-1", NULL, loc2, sizeof loc2),
                     200);
    assert_string_equal(loc, loc2);
    assert_int_equal(call(&s, "POST", path, body, NULL, &job, NULL, 0), 409);
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(job, "type")),
                        "/problems/conflict");
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

    /* the state as the database holds it; readiness; deleting the state */
    char state_path[320];
    snprintf(state_path, sizeof state_path,
             "/streams/%s/state?pipeline_name=kinesis_pipeline&dataset_name=%s", stream, dataset);
    assert_int_equal(call(&s, "GET", state_path, NULL, NULL, &job, NULL, 0), 200);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(job, "shards")), 2);
    assert_true(cJSON_IsString(cJSON_GetObjectItemCaseSensitive(job, "last_run")));
    cJSON_Delete(job);
    assert_int_equal(call(&s, "GET", "/readyz", NULL, NULL, NULL, NULL, 0), 200);
    assert_int_equal(call(&s, "DELETE", state_path, NULL, NULL, NULL, NULL, 0), 204);
    assert_int_equal(call(&s, "GET", state_path, NULL, NULL, &job, NULL, 0), 200);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(job, "shards")), 0);
    assert_true(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(job, "last_run")));
    cJSON_Delete(job);
    server_stop(&s);
}

/* A load of every message of the stream into the pipeline and dataset
 * named by `suffix`, in small chunks. */
static void load_body(const char *suffix, char *body, size_t cap)
{
    snprintf(body, cap,
             "{\"dataset_name\":\"%s%s\",\"pipeline_name\":\"p%s\","
             "\"initial_at_timestamp\":null,\"milliseconds_behind_latest\":0,\"chunk_size\":40}",
             dataset, suffix, suffix);
}

/* Starts a slow job of a fresh pipeline and dataset over every message of the
 * stream (with `more` new ones) and returns once it has committed some. */
static void start_slow_job(const struct server *s, const char *suffix, int more, char *loc,
                           size_t loc_cap)
{
    char body[512], path[160], rule[256];
    cJSON *job = NULL;

    snprintf(rule, sizeof rule,
             "{\"access_key\":\"%s\",\"fault\":\"slow\",\"every\":1,\"delay_ms\":150,"
             "\"target\":\"GetRecords\"}",
             access_key);
    proxy_faults(rule);
    put(messages_put, more);
    load_body(suffix, body, sizeof body);
    snprintf(path, sizeof path, "/streams/%s/loads", stream);
    assert_int_equal(call(s, "POST", path, body, NULL, NULL, loc, loc_cap), 202);
    for (int i = 0; i < 300; i++) {
        const cJSON *m;
        assert_int_equal(call(s, "GET", loc, NULL, NULL, &job, NULL, 0), 200);
        m = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(job, "progress"),
                                             "messages");
        if (cJSON_IsNumber(m) && m->valuedouble > 0) {
            assert_string_equal(status_of(job), "running");
            cJSON_Delete(job);
            return;
        }
        cJSON_Delete(job);
        usleep(50000);
    }
    fail_msg("job %s committed nothing", loc);
}

/* After a crash: the job finished, or it failed (or vanished with the state
 * store) and a new job of the same pipeline finishes what is left. */
static void finish_after_crash(const struct server *s, const char *suffix, const char *loc)
{
    char body[512], path[160], loc2[128];
    cJSON *job = NULL;
    long status = 503;

    /* 503 while the service reconnects to the store */
    for (int i = 0; i < 100 && status == 503; i++) {
        cJSON_Delete(job);
        job = NULL;
        status = call(s, "GET", loc, NULL, NULL, &job, NULL, 0);
        if (status == 503)
            usleep(100000);
    }
    if (status == 200) {
        cJSON_Delete(job);
        job = poll(s, loc);
        printf("# the job after the crash: %s\n", status_of(job));
        if (strcmp(status_of(job), "succeeded") == 0) {
            cJSON_Delete(job);
            return;
        }
        assert_string_equal(status_of(job), "failed");
    } else {
        printf("# the job after the crash: %ld (the state store lost it)\n", status);
        assert_int_equal(status, 404);
    }
    cJSON_Delete(job);
    load_body(suffix, body, sizeof body); /* the same parameters */
    snprintf(path, sizeof path, "/streams/%s/loads", stream);
    assert_int_equal(call(s, "POST", path, body, NULL, NULL, loc2, sizeof loc2), 202);
    job = poll(s, loc2);
    if (strcmp(status_of(job), "succeeded") != 0) {
        char *text = cJSON_Print(job);
        fail_msg("the job after the crash did not succeed: %s", text);
    }
    cJSON_Delete(job);
}

/* Two replicas share Redis and Postgres; replica A gets `sig` while it
 * loads. After SIGKILL the other takes A's work over once the lease has
 * expired; after SIGTERM A finishes its chunk, gives its shards back and
 * exits 0, and B goes on at once. Either way B finishes the job and
 * Postgres holds every message exactly once. */
static void replica_stops_mid_job(int sig, const char *suffix, int port_a, int port_b)
{
    struct server a, b;
    char loc[128], table[96];
    cJSON *job;
    int status;

    shared_redis = kl_test_require_env("KL_TEST_REDIS_URL");
    server_start(&a, port_a, NULL, "KL_TEST_PROXY_URL");
    server_start(&b, port_b, NULL, "KL_TEST_PROXY_URL");
    table_of_stream(table, sizeof table);
    /* slow reads, so the job is still running when replica A stops */
    start_slow_job(&a, suffix, 600, loc, sizeof loc);
    /* both replicas answer for the job */
    assert_int_equal(call(&b, "GET", loc, NULL, NULL, NULL, NULL, 0), 200);
    kill(a.pid, sig);
    waitpid(a.pid, &status, 0);
    forget_server(a.pid);
    if (sig == SIGTERM)
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    job = poll(&b, loc);
    if (strcmp(status_of(job), "succeeded") != 0) {
        char *text = cJSON_Print(job);
        fail_msg("the job did not survive replica A's signal %d: %s", sig, text);
    }
    cJSON_Delete(job);
    proxy_faults(NULL);
    server_stop(&b);
    shared_redis = NULL;
    /* a fresh pipeline and dataset: all messages of the stream, each once */
    assert_exactly_once(suffix, table, messages_put);
}

static void a_killed_replica_loses_and_repeats_nothing(void **state)
{
    (void)state;
    replica_stops_mid_job(SIGKILL, "_r", 20000 + getpid() % 1000, 21000 + getpid() % 1000);
}

static void a_stopped_replica_hands_its_work_over(void **state)
{
    (void)state;
    replica_stops_mid_job(SIGTERM, "_t", 24000 + getpid() % 1000, 25000 + getpid() % 1000);
}

static void restart_service(const char *name)
{
    char *out = NULL;
    int rc = kl_test_run(&out, "'%s/scripts/services.sh' restart %s 2>&1", KL_SOURCE_DIR, name);
    if (rc != 0)
        fail_msg("services.sh restart %s failed (%d): %s", name, rc, out != NULL ? out : "");
    free(out);
}

/* A load with Redis and Postgres; `service` is restarted while it runs. */
static void restart_mid_job(const char *service, const char *suffix, int port)
{
    struct server s;
    char loc[128], table[96];

    shared_redis = kl_test_require_env("KL_TEST_REDIS_URL");
    server_start(&s, port, NULL, "KL_TEST_PROXY_URL");
    start_slow_job(&s, suffix, 300, loc, sizeof loc);
    restart_service(service);
    proxy_faults(NULL);
    finish_after_crash(&s, suffix, loc);
    server_stop(&s);
    shared_redis = NULL;
    table_of_stream(table, sizeof table);
    assert_exactly_once(suffix, table, messages_put);
}

/* Redis restarted mid-job (it keeps no data: jobs, queue, leases, fencing
 * counters are gone). The destination's checkpoints and fencing tokens keep
 * the rows exactly once. */
static void a_restarted_redis_loses_and_repeats_nothing(void **state)
{
    (void)state;
    restart_mid_job("redis", "_redis", 22000 + getpid() % 1000);
}

/* PostgreSQL restarted mid-job: connections drop, chunks in flight roll
 * back, writers reconnect. */
static void a_restarted_postgres_loses_and_repeats_nothing(void **state)
{
    (void)state;
    restart_mid_job("postgres", "_pg", 23000 + getpid() % 1000);
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

/* Starts a producer in the background: `count` messages from `start`, 20
 * a call, 50 ms apart (about 400 a second). */
static pid_t producer_start(int start, int count)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        char cmd[1024];
        snprintf(cmd, sizeof cmd,
                 "cd '%s' && exec node put-records.js --endpoint '%s' --stream '%s' --start %d "
                 "--count %d --batch 20 --interval-ms 50 --access-key '%s' >/dev/null",
                 kl_test_require_env("KL_TEST_NODE_TOOLS"),
                 kl_test_require_env("KL_TEST_PROXY_URL"), stream, start, count, access_key);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    if (start + count > messages_put)
        messages_put = start + count;
    return pid;
}

static long long job_messages(const cJSON *job)
{
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(job, "progress"), "messages");
    return cJSON_IsNumber(m) ? (long long)m->valuedouble : -1;
}

/* Polls a running job until it has committed `want` messages. */
static void wait_committed(const struct server *s, const char *loc, long long want)
{
    long long got = -1;
    for (int i = 0; i < 300; i++) {
        cJSON *job = NULL;
        assert_int_equal(call(s, "GET", loc, NULL, NULL, &job, NULL, 0), 200);
        if (strcmp(status_of(job), "queued") != 0)
            assert_string_equal(status_of(job), "running");
        got = job_messages(job);
        cJSON_Delete(job);
        if (got == want)
            return;
        assert_true(got < want);
        usleep(100000);
    }
    fail_msg("job %s committed %lld messages, not %lld", loc, got, want);
}

/* POSTs a continuous load of the test's stream into dataset `dataset``suffix`
 * and pipeline p`suffix` (from TRIM_HORIZON, 200 ms polls, and `extra`
 * fields); its location into `loc`. */
static void post_continuous(const struct server *s, const char *suffix, const char *extra,
                            char *loc, size_t loc_cap)
{
    char body[512], path[160];
    snprintf(path, sizeof path, "/streams/%s/loads", stream);
    snprintf(body, sizeof body,
             "{\"dataset_name\":\"%s%s\",\"pipeline_name\":\"p%s\",\"initial_at_timestamp\":null,"
             "\"continuous\":true,\"poll_interval_ms\":200,%s}",
             dataset, suffix, suffix, extra);
    assert_int_equal(call(s, "POST", path, body, NULL, NULL, loc, loc_cap), 202);
}

/* A continuous job follows both shards while a producer writes: it stays
 * running, what is produced lands, cancel ends it within 5 s with
 * everything read committed and its dlt load closed; exactly once. */
static void a_continuous_job_follows_the_stream(void **state)
{
    struct server s;
    char body[512], path[160], loc[128], table[96];
    cJSON *job = NULL;
    int status, first;
    pid_t producer;
    (void)state;

    workers = "2"; /* a worker per shard */
    server_start(&s, 18000 + (getpid() + 600) % 1000, NULL, "KL_TEST_PROXY_URL");
    workers = "1";
    table_of_stream(table, sizeof table);
    snprintf(path, sizeof path, "/streams/%s/loads", stream);

    /* refused at POST: what ends a batch load */
    snprintf(body, sizeof body, "{\"continuous\":true,\"max_number_of_messages\":10}");
    assert_int_equal(call(&s, "POST", path, body, NULL, &job, NULL, 0), 400);
    cJSON_Delete(job);

    post_continuous(&s, "_c", "\"chunk_size\":100", loc, sizeof loc);
    /* the backlog first; the job stays running at the tip */
    wait_committed(&s, loc, messages_put);
    sleep(1);
    assert_int_equal(call(&s, "GET", loc, NULL, NULL, &job, NULL, 0), 200);
    assert_string_equal(status_of(job), "running");
    assert_true(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(job, "parameters"), "continuous")));
    cJSON_Delete(job);

    /* a producer writes the whole time: the job keeps up */
    first = messages_put;
    producer = producer_start(first, 600);
    assert_int_equal(waitpid(producer, &status, 0), producer);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    wait_committed(&s, loc, messages_put);
    assert_exactly_once("_c", table, messages_put);
    /* per shard: who read it, how old its newest committed record is, its rate */
    assert_int_equal(call(&s, "GET", loc, NULL, NULL, &job, NULL, 0), 200);
    {
        const cJSON *sh;
        int n = 0;
        cJSON_ArrayForEach(sh, cJSON_GetObjectItemCaseSensitive(
                                   cJSON_GetObjectItemCaseSensitive(job, "progress"), "shards"))
        {
            const cJSON *age = cJSON_GetObjectItemCaseSensitive(sh, "last_committed_age_ms");
            const cJSON *rate = cJSON_GetObjectItemCaseSensitive(sh, "messages_per_second");
            assert_non_null(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(sh, "owner")));
            assert_non_null(cJSON_GetStringValue(
                cJSON_GetObjectItemCaseSensitive(sh, "last_committed_arrival_at")));
            assert_true(cJSON_IsNumber(age) && age->valuedouble >= 0);
            assert_true(cJSON_IsNumber(rate) && rate->valuedouble > 0);
            n++;
        }
        assert_int_equal(n, 2);
    }
    cJSON_Delete(job);

    /* cancel: everything read is committed, the load closed, within 5 s */
    put(messages_put, 30);
    wait_committed(&s, loc, messages_put);
    {
        char cancel[160];
        int64_t t0 = kl_clock_monotonic_ms(kl_clock_system()), took;
        snprintf(cancel, sizeof cancel, "%s/cancel", loc);
        assert_int_equal(call(&s, "POST", cancel, NULL, NULL, NULL, NULL, 0), 202);
        job = poll(&s, loc);
        took = kl_clock_monotonic_ms(kl_clock_system()) - t0;
        printf("# cancel to cancelled: %lld ms\n", (long long)took);
        assert_true(took <= 5000);
    }
    assert_string_equal(status_of(job), "cancelled");
    assert_int_equal(row_count(job, table), messages_put);
    cJSON_Delete(job);
    assert_exactly_once("_c", table, messages_put);
    assert_int_equal(
        kl_test_pg_scalar("SELECT count(*) FROM \"%s_c\"._dlt_loads WHERE status = 0", dataset), 1);
    server_stop(&s);
}

/* The running job of the stream and pipeline `pipeline`: its location, or
 * "" when there is none. */
static void running_job_of(const struct server *s, const char *pipeline, char *loc, size_t cap)
{
    char path[256];
    cJSON *page = NULL;
    const cJSON *j;

    loc[0] = '\0';
    snprintf(path, sizeof path, "/jobs?stream=%s&status=running", stream);
    if (call(s, "GET", path, NULL, NULL, &page, NULL, 0) != 200) {
        cJSON_Delete(page);
        return;
    }
    cJSON_ArrayForEach(j, cJSON_GetObjectItemCaseSensitive(page, "jobs"))
    {
        const cJSON *p = cJSON_GetObjectItemCaseSensitive(j, "parameters");
        const char *name =
            cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(p, "pipeline_name"));
        if (name != NULL && strcmp(name, pipeline) == 0)
            snprintf(loc, cap, "/jobs/%s",
                     cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "id")));
    }
    cJSON_Delete(page);
}

/* Polls until the dataset `dataset``suffix` holds `want` messages. */
static void wait_rows(const char *suffix, const char *table, int want, int seconds)
{
    long long got = -1;
    for (int i = 0; i < seconds * 10; i++) {
        if (kl_test_pg_scalar("SELECT count(*) FROM pg_tables WHERE schemaname = '%s%s' AND "
                              "tablename = '%s'",
                              dataset, suffix, table) == 1 &&
            (got = kl_test_pg_scalar("SELECT count(DISTINCT _kinesis_msg_id) FROM \"%s%s\".\"%s\"",
                                     dataset, suffix, table)) == want)
            return;
        usleep(100000);
    }
    fail_msg("%s%s.%s holds %lld messages, not %d", dataset, suffix, table, got, want);
}

/* KL_CONTINUOUS_LOADS: the replica starts the declared continuous load
 * itself; Redis restarted without its data loses the job, and the replica
 * starts it again (its sweep), from the destination's checkpoints: every
 * message once. */
static void a_declared_continuous_load_comes_back_after_redis_lost_it(void **state)
{
    struct server s;
    char loads[512], loc[128], loc2[128], table[96], path[160];
    cJSON *job = NULL;
    (void)state;

    table_of_stream(table, sizeof table);
    snprintf(loads, sizeof loads,
             "[{\"stream\":\"%s\",\"pipeline_name\":\"p_d\",\"dataset_name\":\"%s_d\","
             "\"initial_at_timestamp\":null,\"poll_interval_ms\":200,\"chunk_size\":100}]",
             stream, dataset);
    shared_redis = kl_test_require_env("KL_TEST_REDIS_URL");
    continuous_loads = loads;
    workers = "2";
    server_start(&s, 18000 + (getpid() + 700) % 1000, NULL, "KL_TEST_PROXY_URL");
    workers = "1";
    continuous_loads = NULL;

    wait_rows("_d", table, messages_put, 60);
    running_job_of(&s, "p_d", loc, sizeof loc);
    assert_true(loc[0] != '\0');
    put(messages_put, 50);
    wait_rows("_d", table, messages_put, 30);

    restart_service("redis");
    put(messages_put, 50);
    /* the next sweep (30 s) submits the load again */
    wait_rows("_d", table, messages_put, 90);
    running_job_of(&s, "p_d", loc2, sizeof loc2);
    assert_true(loc2[0] != '\0');
    assert_string_not_equal(loc, loc2);
    assert_exactly_once("_d", table, messages_put);

    /* cancelled, it ends; the replica leaves no job behind in the shared store */
    snprintf(path, sizeof path, "%s/cancel", loc2);
    assert_int_equal(call(&s, "POST", path, NULL, NULL, NULL, NULL, 0), 202);
    job = poll(&s, loc2);
    assert_string_equal(status_of(job), "cancelled");
    cJSON_Delete(job);
    server_stop(&s);
    shared_redis = NULL;
    restart_service("redis");
    assert_exactly_once("_d", table, messages_put);
}

/* The stream of the setup, kept while a test works on a stream of its own. */
static char setup_stream[96];
static int setup_messages_put;

/* Switches the test to a new stream of `shards` shards named after
 * `prefix`, made through `endpoint_env` (NULL: the proxy, with the test's
 * key); restore_stream goes back to the setup's. */
static void use_own_stream(const char *prefix, int shards, const char *endpoint_env)
{
    snprintf(setup_stream, sizeof setup_stream, "%s", stream);
    setup_messages_put = messages_put;
    snprintf(stream, sizeof stream, "%s", kl_test_unique(prefix));
    messages_put = 0;
    assert_int_equal(
        kl_test_run(NULL,
                    "cd '%s' && node create-stream.js --endpoint '%s' --stream '%s' "
                    "--shards %d --access-key '%s'%s >/dev/null",
                    kl_test_require_env("KL_TEST_NODE_TOOLS"),
                    kl_test_require_env(endpoint_env ? endpoint_env : "KL_TEST_PROXY_URL"), stream,
                    shards, endpoint_env ? "x" : access_key, endpoint_env ? " --secret-key y" : ""),
        0);
}

static void restore_stream(void)
{
    snprintf(stream, sizeof stream, "%s", setup_stream);
    messages_put = setup_messages_put;
}

/* Cancels the job at `loc` and waits until it is cancelled. */
static void cancel_job(const struct server *s, const char *loc)
{
    char path[192];
    cJSON *job;
    snprintf(path, sizeof path, "%s/cancel", loc);
    assert_int_equal(call(s, "POST", path, NULL, NULL, NULL, NULL, 0), 202);
    job = poll(s, loc);
    assert_string_equal(status_of(job), "cancelled");
    cJSON_Delete(job);
}

/* The value of an unlabelled counter or gauge in the server's /metrics. */
static long long metric(const struct server *s, const char *name)
{
    char *text = get_text(s, "/metrics"), want[128];
    const char *m;
    long long v;
    snprintf(want, sizeof want, "\n%s ", name);
    m = strstr(text, want);
    assert_non_null(m);
    v = atoll(m + strlen(want));
    free(text);
    return v;
}

/* One replica with 2 workers follows an 8-shard stream: a shard at its tip
 * gives its worker back while other shards wait (its next poll is a task
 * of its own), so every shard keeps up; exactly once. */
static void a_replica_follows_more_shards_than_workers(void **state)
{
    struct server s;
    char loc[128], table[96];
    int status;
    pid_t producer;
    (void)state;

    use_own_stream("kl-e2e-wide", 8, NULL);
    put(0, 400);
    workers = "2";
    server_start(&s, 18000 + (getpid() + 800) % 1000, NULL, "KL_TEST_PROXY_URL");
    workers = "1";
    table_of_stream(table, sizeof table);
    post_continuous(&s, "_w", "\"chunk_size\":100", loc, sizeof loc);
    wait_committed(&s, loc, messages_put);
    producer = producer_start(messages_put, 600);
    assert_int_equal(waitpid(producer, &status, 0), producer);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    wait_committed(&s, loc, messages_put);
    assert_exactly_once("_w", table, messages_put);
    assert_true(metric(&s, "kl_task_yields_total") > 0);
    cancel_job(&s, loc);
    server_stop(&s);
    assert_exactly_once("_w", table, messages_put);
    restore_stream();
}

/* On kinesis-local (kinesalite does not reshard), a continuous job keeps
 * following while shard 0 is split and its children merged: a closed
 * parent is read to its end and its children are queued after it (as in
 * a batch job); every message once, the children's too. */
static void a_continuous_job_follows_splits_and_merges(void **state)
{
    struct server s;
    char loc[128], table[96];
    const char *url = kl_test_require_env("KL_TEST_KINESIS_LOCAL_URL");
    const char *tools = kl_test_require_env("KL_TEST_NODE_TOOLS");
    int n = 0;
    (void)state;

    use_own_stream("kl-e2e-reshard", 2, "KL_TEST_KINESIS_LOCAL_URL");
#define PUT_LOCAL(count)                                                                           \
    do {                                                                                           \
        assert_int_equal(kl_test_run(NULL,                                                         \
                                     "cd '%s' && node put-records.js --endpoint '%s' --stream "    \
                                     "'%s' --start %d --count %d --access-key x --secret-key y "   \
                                     ">/dev/null",                                                 \
                                     tools, url, stream, n, (count)),                              \
                         0);                                                                       \
        n += (count);                                                                              \
    } while (0)
    PUT_LOCAL(150);
    workers = "4";
    server_start(&s, 18000 + (getpid() + 900) % 1000, NULL, "KL_TEST_KINESIS_LOCAL_URL");
    workers = "1";
    table_of_stream(table, sizeof table);
    post_continuous(&s, "_r", "\"chunk_size\":50", loc, sizeof loc);
    wait_committed(&s, loc, n);

    assert_int_equal(kl_test_run(NULL,
                                 "cd '%s' && node reshard.js --endpoint '%s' --stream '%s' --split "
                                 "shardId-000000000000 --access-key x --secret-key y >/dev/null",
                                 tools, url, stream),
                     0);
    PUT_LOCAL(200);
    wait_committed(&s, loc, n);
    assert_int_equal(kl_test_run(NULL,
                                 "cd '%s' && node reshard.js --endpoint '%s' --stream '%s' --merge "
                                 "shardId-000000000002,shardId-000000000003 --access-key x "
                                 "--secret-key y >/dev/null",
                                 tools, url, stream),
                     0);
    PUT_LOCAL(150);
    wait_committed(&s, loc, n);
#undef PUT_LOCAL
    assert_exactly_once("_r", table, n);
    /* the merged child was read, after its parents were drained */
    assert_true(kl_test_pg_scalar("SELECT count(*) FROM \"%s_r\".\"%s\" WHERE "
                                  "_kinesis__shard_id = 'shardId-000000000004'",
                                  dataset, table) > 0);
    cancel_job(&s, loc);
    server_stop(&s);
    assert_exactly_once("_r", table, n);
    restore_stream();
}

/* The whole-life test of a continuous load: declared by the replicas
 * (KL_CONTINUOUS_LOADS), a producer writing the whole time, and meanwhile
 * a replica SIGKILLed, another stopped with SIGTERM, two more joining,
 * Redis restarted without its data and PostgreSQL restarted. Once the
 * producer stops and the job catches up, every message is in PostgreSQL
 * exactly once, and the replicas that joined both loaded some of it. */
static void a_continuous_load_survives_replicas_and_services_going_away(void **state)
{
    struct server a, b, c, d;
    char loads[512], table[96];
    int status, base = 18000 + (getpid() + 100) % 1000;
    pid_t producer;
    (void)state;

    use_own_stream("kl-e2e-chaos", 4, NULL);
    table_of_stream(table, sizeof table);
    snprintf(loads, sizeof loads,
             "[{\"stream\":\"%s\",\"pipeline_name\":\"p_x\",\"dataset_name\":\"%s_x\","
             "\"initial_at_timestamp\":null,\"poll_interval_ms\":200,\"chunk_size\":100}]",
             stream, dataset);
    shared_redis = kl_test_require_env("KL_TEST_REDIS_URL");
    continuous_loads = loads;
    workers = "2";
    server_start(&a, base, NULL, "KL_TEST_PROXY_URL");
    server_start(&b, base + 1, NULL, "KL_TEST_PROXY_URL");

    producer = producer_start(0, 4000); /* about 10 s */
    sleep(2);
    kill(a.pid, SIGKILL);
    waitpid(a.pid, NULL, 0);
    forget_server(a.pid);
    server_start(&c, base + 2, NULL, "KL_TEST_PROXY_URL");
    sleep(1);
    server_stop(&b);
    restart_service("redis");
    server_start(&d, base + 3, NULL, "KL_TEST_PROXY_URL");
    sleep(1);
    restart_service("postgres");
    assert_int_equal(waitpid(producer, &status, 0), producer);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    /* the declared load comes back at a sweep (30 s) after Redis lost it */
    wait_rows("_x", table, messages_put, 150);
    assert_exactly_once("_x", table, messages_put);
    {
        long long by_c = metric(&c, "kl_messages_loaded_total");
        long long by_d = metric(&d, "kl_messages_loaded_total");
        printf("# the replicas that joined loaded %lld and %lld messages\n", by_c, by_d);
        assert_true(by_c > 0 && by_d > 0);
    }
    workers = "1";
    continuous_loads = NULL;
    server_stop(&c);
    server_stop(&d);
    shared_redis = NULL;
    restart_service("redis"); /* no job of this load left behind for later tests */
    assert_exactly_once("_x", table, messages_put);
    restore_stream();
}

/* A continuous load closes one dlt load per window: with load_window_s 10
 * and a producer writing for about 25 s, windows close while the job runs
 * (their _dlt_loads rows appear), the job shows its current window, and
 * after cancel every _dlt_load_id of the rows is a completed load, the
 * rows of each window under their own id; every message once. */
static void a_continuous_load_closes_a_dlt_load_per_window(void **state)
{
    struct server s;
    char loc[128], table[96];
    cJSON *job = NULL;
    int status;
    long long closed_while_running = 0;
    pid_t producer;
    (void)state;

    use_own_stream("kl-e2e-window", 2, NULL);
    workers = "2";
    server_start(&s, 18000 + (getpid() + 200) % 1000, NULL, "KL_TEST_PROXY_URL");
    workers = "1";
    table_of_stream(table, sizeof table);
    post_continuous(&s, "_l", "\"load_window_s\":10", loc, sizeof loc);
    producer = fork();
    assert_true(producer >= 0);
    if (producer == 0) {
        char cmd[1024];
        snprintf(cmd, sizeof cmd,
                 "cd '%s' && exec node put-records.js --endpoint '%s' --stream '%s' --count 500 "
                 "--batch 2 --interval-ms 100 --access-key '%s' >/dev/null",
                 kl_test_require_env("KL_TEST_NODE_TOOLS"),
                 kl_test_require_env("KL_TEST_PROXY_URL"), stream, access_key);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    messages_put = 500;
    assert_int_equal(waitpid(producer, &status, 0), producer);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    wait_committed(&s, loc, messages_put);
    closed_while_running =
        kl_test_pg_scalar("SELECT count(*) FROM \"%s_l\"._dlt_loads WHERE status = 0", dataset);
    printf("# load windows closed while the job ran: %lld\n", closed_while_running);
    assert_true(closed_while_running >= 1);
    assert_int_equal(call(&s, "GET", loc, NULL, NULL, &job, NULL, 0), 200);
    {
        const cJSON *w = cJSON_GetObjectItemCaseSensitive(job, "load_window");
        const cJSON *k = cJSON_GetObjectItemCaseSensitive(w, "index");
        assert_true(cJSON_IsNumber(k) && k->valuedouble >= 2);
        assert_non_null(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(w, "load_id")));
    }
    cJSON_Delete(job);
    cancel_job(&s, loc);
    server_stop(&s);
    assert_exactly_once("_l", table, messages_put);
    /* every load id of the rows is a completed load; at least two windows had rows */
    assert_int_equal(kl_test_pg_scalar("SELECT count(DISTINCT _dlt_load_id) FROM \"%s_l\".\"%s\" "
                                       "WHERE _dlt_load_id NOT IN (SELECT load_id FROM "
                                       "\"%s_l\"._dlt_loads WHERE status = 0)",
                                       dataset, table, dataset),
                     0);
    assert_true(kl_test_pg_scalar("SELECT count(DISTINCT _dlt_load_id) FROM \"%s_l\".\"%s\"",
                                  dataset, table) >= 2);
    restore_stream();
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

/* After each test: a server a failed test left behind is killed. */
static int stop_leftovers(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof running / sizeof running[0]; i++)
        if (running[i] != 0) {
            kill(running[i], SIGKILL);
            waitpid(running[i], NULL, 0);
            running[i] = 0;
        }
    shared_redis = NULL;
    workers = "1";
    continuous_loads = NULL;
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
        cmocka_unit_test_teardown(loads_over_http, stop_leftovers),
        cmocka_unit_test_teardown(a_killed_replica_loses_and_repeats_nothing, stop_leftovers),
        cmocka_unit_test_teardown(a_stopped_replica_hands_its_work_over, stop_leftovers),
        cmocka_unit_test_teardown(a_restarted_redis_loses_and_repeats_nothing, stop_leftovers),
        cmocka_unit_test_teardown(a_restarted_postgres_loses_and_repeats_nothing, stop_leftovers),
        cmocka_unit_test_teardown(bearer_token_auth, stop_leftovers),
        cmocka_unit_test_teardown(a_continuous_job_follows_the_stream, stop_leftovers),
        cmocka_unit_test_teardown(a_declared_continuous_load_comes_back_after_redis_lost_it,
                                  stop_leftovers),
        cmocka_unit_test_teardown(a_replica_follows_more_shards_than_workers, stop_leftovers),
        cmocka_unit_test_teardown(a_continuous_job_follows_splits_and_merges, stop_leftovers),
        cmocka_unit_test_teardown(a_continuous_load_survives_replicas_and_services_going_away,
                                  stop_leftovers),
        cmocka_unit_test_teardown(a_continuous_load_closes_a_dlt_load_per_window, stop_leftovers),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
