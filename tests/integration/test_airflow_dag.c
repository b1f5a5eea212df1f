/*
 * examples/airflow/kinesis_load.py's HTTP exchanges against `kinesis-loader
 * serve` for real (PostgreSQL, Redis, kinesalite behind the signature proxy,
 * a bearer token), in the DAG's order and with its headers and checks:
 * start_load (POST with Idempotency-Key {{ run_id }}; a retried task gets the
 * same job), wait_for_job (GET /jobs/{id}?wait=30, job_done's rules as the
 * assertions), row_counts. And what makes ?wait= safe to offer: a job that
 * fails or is cancelled ends the sensor, a wait runs out with the job still
 * running, a waiter past the cap is answered at once, SIGTERM ends a wait
 * and the process within its grace. Not a test of Airflow: it is not here.
 */
#include "tests/support/test_support.h"
#include "core/util/err.h"

#include <cjson/cJSON.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* The DAG's WAIT_S and REQUEST_TIMEOUT_S. */
#define WAIT_S 30
#define REQUEST_TIMEOUT_MS ((WAIT_S + 30) * 1000L)
#define GRACE_S 10

struct service {
    pid_t pid;
    char base[64];
    char log[64];
    char token[64]; /* the connection's password; "" sends none */
};

static char stream[96], table[96], dataset[64], access_key[64], token[64];
static char dag_id[64]; /* unique: the service keeps keys for 24 h */
static pid_t running;   /* a service a failed test left behind */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The port of the "listening" line in the service's log, or 0. */
static int logged_port(const char *log)
{
    char line[4096];
    int port = 0;
    FILE *f = fopen(log, "r");

    while (f != NULL && port == 0 && fgets(line, sizeof line, f) != NULL) {
        const char *p = strstr(line, "\"msg\":\"listening\"");
        if (p != NULL && (p = strstr(line, "\"port\":")) != NULL)
            port = atoi(p + 7);
    }
    if (f != NULL)
        fclose(f);
    return port;
}

/* Starts serve on a free port, its log in a file. With `redis` the state is
 * in Redis (as a deployment with replicas has it), else in the process. */
static void service_start(struct service *s, bool redis, int http_threads)
{
    int port = 0;

    memset(s, 0, sizeof *s);
    snprintf(s->log, sizeof s->log, "/tmp/%s.log", kl_test_unique("kl-airflow"));
    snprintf(s->token, sizeof s->token, "%s", token);
    s->pid = fork();
    assert_true(s->pid >= 0);
    if (s->pid == 0) {
        char threads[16];
        int fd = open(s->log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd < 0 || dup2(fd, 2) < 0)
            _exit(126);
        snprintf(threads, sizeof threads, "%d", http_threads);
        setenv("KL_LISTEN", "127.0.0.1:0", 1);
        setenv("KL_HTTP_THREADS", threads, 1);
        setenv("KL_SHUTDOWN_GRACE_S", "10", 1);
        setenv("KL_API_TOKEN", token, 1);
        unsetenv("KL_API_TOKEN_FILE");
        setenv("DATABASE_URL", kl_test_require_env("KL_TEST_PG_URL"), 1);
        if (redis)
            setenv("REDIS_URL", kl_test_require_env("KL_TEST_REDIS_URL"), 1);
        else
            unsetenv("REDIS_URL");
        setenv("AWS_ENDPOINT_URL_KINESIS", kl_test_require_env("KL_TEST_PROXY_URL"), 1);
        setenv("AWS_ACCESS_KEY_ID", access_key, 1);
        setenv("AWS_SECRET_ACCESS_KEY", kl_test_require_env("KL_TEST_PROXY_SECRET"), 1);
        setenv("AWS_REGION", "us-east-1", 1);
        setenv("KL_WORKERS", "2", 1);
        setenv("KL_LOG_LEVEL", "info", 1); /* the "listening" line */
        execl(KL_BINARY, "kinesis-loader", "serve", (char *)NULL);
        _exit(127);
    }
    running = s->pid;
    for (int i = 0; i < 100 && (port = logged_port(s->log)) == 0; i++)
        usleep(100000);
    if (port == 0)
        fail_msg("the service did not say where it listens (log: %s)", s->log);
    snprintf(s->base, sizeof s->base, "http://127.0.0.1:%d", port);
}

/* SIGTERM; returns how long the service took to exit, which it must do
 * with 0 (then its log is removed). */
static int64_t service_stop(struct service *s)
{
    int64_t start = now_ms();
    int status;

    assert_int_equal(kill(s->pid, SIGTERM), 0);
    assert_int_equal(waitpid(s->pid, &status, 0), s->pid);
    running = 0;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fail_msg("the service stopped with status %d (log: %s)", status, s->log);
    unlink(s->log);
    return now_ms() - start;
}

/* One request as the DAG's HttpHook sends it: on a new connection (a new
 * requests session each time), with Content-Type: application/json,
 * Authorization: Bearer <the connection's password>, the Idempotency-Key
 * when given, the DAG's request timeout. Returns the status (-1 when no
 * answer came: `why` says why) and the body parsed (`*doc`, may be NULL).
 * No assertions: any thread may call it. */
static long dag_request(const struct service *s, const char *method, const char *path,
                        const char *idempotency_key, const char *body, cJSON **doc, char why[256])
{
    struct kl_http_header h[3];
    struct kl_http_request req = {0};
    struct kl_http_response resp;
    char url[512], auth[96];
    struct kl_err err;
    struct kl_http *client = kl_http_curl_create(NULL, &err);
    long status = -1;

    if (doc != NULL)
        *doc = NULL;
    if (client == NULL) {
        snprintf(why, 256, "%s", err.msg);
        goto cleanup;
    }

    snprintf(url, sizeof url, "%s%s", s->base, path);
    snprintf(auth, sizeof auth, "Bearer %s", s->token);
    h[req.n_headers++] = (struct kl_http_header){"Content-Type", "application/json"};
    if (s->token[0] != '\0')
        h[req.n_headers++] = (struct kl_http_header){"Authorization", auth};
    if (idempotency_key != NULL)
        h[req.n_headers++] = (struct kl_http_header){"Idempotency-Key", idempotency_key};
    req.method = method;
    req.url = url;
    req.headers = h;
    req.body = body;
    req.body_len = body != NULL ? strlen(body) : 0;
    req.timeout_ms = REQUEST_TIMEOUT_MS;
    kl_http_response_init(&resp);
    if (kl_http_send(client, &req, &resp, &err) != KL_OK) {
        snprintf(why, 256, "%s %.80s: %.160s", method, path, err.msg);
    } else {
        status = resp.status;
        if (doc != NULL)
            *doc = cJSON_ParseWithLength(resp.body, resp.body_len);
        kl_http_response_free(&resp);
    }
cleanup:
    kl_http_destroy(client);
    return status;
}

/* dag_request that must get an answer. */
static long must_request(const struct service *s, const char *method, const char *path,
                         const char *idempotency_key, const char *body, cJSON **doc)
{
    char why[256];
    long status = dag_request(s, method, path, idempotency_key, body, doc, why);
    if (status < 0)
        fail_msg("%s", why);
    return status;
}

static const char *str(const cJSON *doc, const char *key)
{
    return cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(doc, key));
}

/* ---- the DAG, task by task ---- */

/* start_load: Idempotency-Key IDEMPOTENCY_KEY (dag id, task id, run id);
 * HttpHook fails the task at a status of 400 or more, and
 * response_filter=job_id pushes the Job's id. Returns the status (202, or
 * 200 for a key used before); `*job` the Job. */
static long start_load(const struct service *s, const char *run_id, const char *load, char id[32],
                       cJSON **job)
{
    char path[160], key[256];
    long status;

    snprintf(path, sizeof path, "/streams/%s/loads", stream);
    snprintf(key, sizeof key, "%s.start_load.%s", dag_id, run_id);
    status = must_request(s, "POST", path, key, load, job);
    if (status >= 400 || *job == NULL || str(*job, "id") == NULL)
        fail_msg("start_load: %ld", status);
    snprintf(id, 32, "%s", str(*job, "id"));
    return status;
}

enum check { CHECK_FALSE, CHECK_TRUE, CHECK_RAISES };

/* job_done, field for field: True once succeeded; raises (AirflowFailException,
 * its message in `why`) for failed or cancelled; False otherwise. */
static enum check job_done(const cJSON *job, char *why, size_t cap)
{
    const char *status = str(job, "status");
    const cJSON *error = cJSON_GetObjectItemCaseSensitive(job, "error");

    assert_non_null(status);
    if (strcmp(status, "succeeded") == 0)
        return CHECK_TRUE;
    if (strcmp(status, "failed") == 0 || strcmp(status, "cancelled") == 0) {
        snprintf(why, cap, "kinesis-loader job %s %s: %s: %s", str(job, "id"), status,
                 str(error, "type") != NULL ? str(error, "type") : "-",
                 str(error, "detail") != NULL ? str(error, "detail") : "-");
        return CHECK_RAISES;
    }
    return CHECK_FALSE;
}

/* wait_for_job: pokes GET /jobs/{id}?wait=30 until job_done is not False,
 * at most `max_pokes` times (Airflow sleeps poke_interval between them; the
 * test does not). A 503 is a False poke (response_error_codes_allowlist);
 * any other status of 400 or more fails the task. Returns job_done's
 * verdict, the last Job (`*job`) and the pokes it took. */
static enum check wait_for_job(const struct service *s, const char *id, int max_pokes, cJSON **job,
                               int *pokes, char *why, size_t cap)
{
    char path[96];
    enum check verdict = CHECK_FALSE;

    snprintf(path, sizeof path, "/jobs/%s?wait=%d", id, WAIT_S);
    *job = NULL;
    for (*pokes = 0; verdict == CHECK_FALSE && *pokes < max_pokes;) {
        long status;
        cJSON_Delete(*job);
        status = must_request(s, "GET", path, NULL, NULL, job);
        ++*pokes;
        if (status == 503)
            continue;
        if (status >= 400)
            fail_msg("wait_for_job: %ld", status);
        verdict = job_done(*job, why, cap);
    }
    return verdict;
}

/* row_counts: response_filter on GET /jobs/{id}; the table's count, -1 when absent. */
static long long row_counts(const struct service *s, const char *id, const char *tbl)
{
    char path[96];
    cJSON *job = NULL;
    const cJSON *n;
    long long rows;

    snprintf(path, sizeof path, "/jobs/%s", id);
    assert_int_equal(must_request(s, "GET", path, NULL, NULL, &job), 200);
    n = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(
            cJSON_GetObjectItemCaseSensitive(job, "last_normalize_info"), "row_counts"),
        tbl);
    rows = cJSON_IsNumber(n) ? (long long)n->valuedouble : -1;
    cJSON_Delete(job);
    return rows;
}

/* ---- the streams and the proxy ---- */

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

/* Every GetRecords of this test's key answered after `delay_ms`; 0 clears it. */
static void slow_reads(int delay_ms)
{
    char rule[256];

    snprintf(rule, sizeof rule,
             "{\"access_key\":\"%s\",\"fault\":\"slow\",\"every\":1,\"delay_ms\":%d,"
             "\"target\":\"GetRecords\"}",
             access_key, delay_ms);
    if (delay_ms > 0)
        assert_int_equal(kl_test_run(NULL,
                                     "curl -sf -X POST -H 'Content-Type: application/json' -d '%s' "
                                     "'%s/__faults' >/dev/null",
                                     rule, kl_test_require_env("KL_TEST_PROXY_URL")),
                         0);
    else
        assert_int_equal(kl_test_run(NULL,
                                     "curl -sf -X DELETE '%s/__faults?access_key=%s' >/dev/null",
                                     kl_test_require_env("KL_TEST_PROXY_URL"), access_key),
                         0);
}

/* A load of every message of the stream into `dataset``suffix` for pipeline p`suffix`. */
static void load_body(const char *suffix, int chunk_size, char *body, size_t cap)
{
    snprintf(body, cap,
             "{\"dataset_name\":\"%s%s\",\"pipeline_name\":\"p%s\","
             "\"initial_at_timestamp\":null,\"milliseconds_behind_latest\":0,\"chunk_size\":%d}",
             dataset, suffix, suffix, chunk_size);
}

/* ---- the tests ---- */

/* Two DAG runs: each one job, a retried start_load the same job, one poke
 * each thanks to ?wait=, the rows in Postgres once. */
static void two_runs_load_the_stream_once(void **state)
{
    struct service s, anonymous;
    char body[512], id[32], id2[32], why[512];
    cJSON *job = NULL;
    enum check verdict;
    int pokes;
    (void)state;

    service_start(&s, true, 4);
    anonymous = s;
    anonymous.token[0] = '\0';
    assert_int_equal(must_request(&anonymous, "GET", "/jobs", NULL, NULL, NULL), 401);
    load_body("", 50, body, sizeof body);
    slow_reads(150); /* the job is still running when the sensor asks */

    assert_int_equal(start_load(&s, "scheduled__2024-05-01T00:00:00+00:00", body, id, &job), 202);
    assert_int_equal(job_done(job, why, sizeof why), CHECK_FALSE);
    cJSON_Delete(job);
    /* the task retried (a lost answer, a worker gone): the same job */
    assert_int_equal(start_load(&s, "scheduled__2024-05-01T00:00:00+00:00", body, id2, &job), 200);
    assert_string_equal(id2, id);
    cJSON_Delete(job);
    verdict = wait_for_job(&s, id, 3, &job, &pokes, why, sizeof why);
    if (verdict != CHECK_TRUE)
        fail_msg("after %d pokes the job is %s: %s", pokes, str(job, "status"),
                 verdict == CHECK_RAISES ? why : "");
    assert_int_equal(pokes, 1);
    cJSON_Delete(job);
    assert_int_equal(row_counts(&s, id, table), 300);
    assert_int_equal(row_counts(&s, id, "_dlt_pipeline_state"), 1);
    assert_int_equal(kl_test_pg_scalar("SELECT count(*) FROM \"%s\".\"%s\"", dataset, table), 300);

    /* the next run: a new key, a new job, only what is new */
    put(300, 40);
    assert_int_equal(start_load(&s, "scheduled__2024-05-01T01:00:00+00:00", body, id2, &job), 202);
    assert_string_not_equal(id2, id);
    cJSON_Delete(job);
    assert_int_equal(wait_for_job(&s, id2, 3, &job, &pokes, why, sizeof why), CHECK_TRUE);
    assert_int_equal(pokes, 1);
    cJSON_Delete(job);
    assert_int_equal(row_counts(&s, id2, table), 40);
    assert_int_equal(kl_test_pg_scalar("SELECT count(*) FROM \"%s\".\"%s\"", dataset, table), 340);
    slow_reads(0);
    (void)service_stop(&s);
}

/* A job that fails (its stream does not exist) fails the sensor with the
 * job's error; a retry of the run gets the same failed job back. */
static void a_failed_job_fails_the_sensor(void **state)
{
    struct service s;
    char body[512], id[32], id2[32], why[512], path[160], missing[96], key[256];
    cJSON *job = NULL;
    int pokes;
    (void)state;

    service_start(&s, true, 4);
    snprintf(missing, sizeof missing, "%s", kl_test_unique("kl-af-missing"));
    snprintf(body, sizeof body, "{\"dataset_name\":\"%s\"}", dataset);
    snprintf(path, sizeof path, "/streams/%s/loads", missing);
    snprintf(key, sizeof key, "%s.start_load.manual__1", dag_id);
    assert_int_equal(must_request(&s, "POST", path, key, body, &job), 202);
    snprintf(id, sizeof id, "%s", str(job, "id"));
    cJSON_Delete(job);
    assert_int_equal(wait_for_job(&s, id, 3, &job, &pokes, why, sizeof why), CHECK_RAISES);
    assert_int_equal(pokes, 1);
    assert_string_equal(str(job, "status"), "failed");
    assert_string_equal(str(cJSON_GetObjectItemCaseSensitive(job, "error"), "type"), "not_found");
    assert_non_null(strstr(why, " failed: not_found: "));
    assert_non_null(strstr(why, missing));
    cJSON_Delete(job);
    assert_int_equal(must_request(&s, "POST", path, key, body, &job), 200);
    snprintf(id2, sizeof id2, "%s", str(job, "id"));
    assert_string_equal(id2, id);
    assert_string_equal(str(job, "status"), "failed");
    cJSON_Delete(job);
    (void)service_stop(&s);
}

/* A sensor's poke on another thread. */
struct poke {
    pthread_t thread;
    const struct service *s;
    char path[96];
    long status;
    cJSON *job;
    int64_t took_ms;
    char why[256];
};

static void *poke_thread(void *arg)
{
    struct poke *p = arg;
    int64_t start = now_ms();

    p->status = dag_request(p->s, "GET", p->path, NULL, NULL, &p->job, p->why);
    p->took_ms = now_ms() - start;
    return NULL;
}

static void poke_start(struct poke *p, const struct service *s, const char *id, int wait_s)
{
    memset(p, 0, sizeof *p);
    p->s = s;
    snprintf(p->path, sizeof p->path, "/jobs/%s?wait=%d", id, wait_s);
    assert_int_equal(pthread_create(&p->thread, NULL, poke_thread, p), 0);
}

static void poke_join(struct poke *p)
{
    assert_int_equal(pthread_join(p->thread, NULL), 0);
    if (p->status != 200)
        fail_msg("GET %s: %ld %s", p->path, p->status, p->why);
}

/* A slow job of pipeline p`suffix` that has begun to read. */
static void start_slow_job(const struct service *s, const char *suffix, char id[32])
{
    char body[512], path[96];
    cJSON *job = NULL;

    load_body(suffix, 5, body, sizeof body);
    assert_int_equal(start_load(s, suffix, body, id, &job), 202);
    cJSON_Delete(job);
    snprintf(path, sizeof path, "/jobs/%s", id);
    for (int i = 0; i < 100; i++) {
        assert_int_equal(must_request(s, "GET", path, NULL, NULL, &job), 200);
        if (strcmp(str(job, "status"), "running") == 0) {
            cJSON_Delete(job);
            return;
        }
        cJSON_Delete(job);
        usleep(100000);
    }
    fail_msg("job %s did not start", id);
}

/* With 2 HTTP threads one request may wait: a wait runs out with the job
 * running; a second waiter is answered at once; a cancel wakes the first,
 * and job_done raises for the cancelled job. */
static void waits_run_out_are_capped_and_wake(void **state)
{
    struct service s;
    struct poke first, second;
    char id[32], why[512];
    (void)state;

    service_start(&s, true, 2);
    slow_reads(400);
    start_slow_job(&s, "_wait", id);

    poke_start(&first, &s, id, 1);
    poke_join(&first);
    assert_string_equal(str(first.job, "status"), "running");
    assert_int_equal(job_done(first.job, why, sizeof why), CHECK_FALSE);
    if (first.took_ms < 900 || first.took_ms > 5000)
        fail_msg("?wait=1 took %lld ms", (long long)first.took_ms);
    cJSON_Delete(first.job);

    poke_start(&first, &s, id, WAIT_S);
    usleep(500000);
    poke_start(&second, &s, id, WAIT_S);
    poke_join(&second);
    assert_string_equal(str(second.job, "status"), "running");
    if (second.took_ms > 2000)
        fail_msg("the waiter past the cap took %lld ms", (long long)second.took_ms);
    cJSON_Delete(second.job);

    {
        char path[96];
        snprintf(path, sizeof path, "/jobs/%s/cancel", id);
        assert_int_equal(must_request(&s, "POST", path, NULL, NULL, NULL), 202);
    }
    poke_join(&first);
    if (first.took_ms > 20000)
        fail_msg("the cancelled job's waiter took %lld ms", (long long)first.took_ms);
    assert_int_equal(job_done(first.job, why, sizeof why), CHECK_RAISES);
    assert_string_equal(str(first.job, "status"), "cancelled");
    assert_non_null(strstr(why, " cancelled: -: -"));
    cJSON_Delete(first.job);
    slow_reads(0);
    (void)service_stop(&s);
}

/* SIGTERM while a sensor waits: the wait ends with the job as it is, and
 * the service exits well within KL_SHUTDOWN_GRACE_S. The state is the
 * process's own here, so the unfinished job goes with it. */
static void sigterm_ends_a_wait(void **state)
{
    struct service s;
    struct poke p;
    char id[32];
    int64_t stop_ms;
    (void)state;

    service_start(&s, false, 4);
    slow_reads(400);
    start_slow_job(&s, "_stop", id);
    poke_start(&p, &s, id, 60);
    usleep(500000);
    stop_ms = service_stop(&s);
    poke_join(&p);
    assert_string_equal(str(p.job, "status"), "running");
    if (p.took_ms > 5000)
        fail_msg("the wait took %lld ms after SIGTERM", (long long)p.took_ms);
    if (stop_ms >= GRACE_S * 1000)
        fail_msg("the service took %lld ms to stop", (long long)stop_ms);
    cJSON_Delete(p.job);
    slow_reads(0);
}

static int setup(void **state)
{
    struct kl_err err;
    (void)state;
    assert_int_equal(kl_http_global_init(&err), KL_OK);
    snprintf(dag_id, sizeof dag_id, "%s", kl_test_unique("kinesis_load"));
    snprintf(access_key, sizeof access_key, "%s", kl_test_unique("AKIDAIRFLOW"));
    snprintf(token, sizeof token, "%s", kl_test_unique("af-token"));
    snprintf(stream, sizeof stream, "%s", kl_test_unique("kl-af"));
    snprintf(table, sizeof table, "%s", stream);
    for (char *c = table; *c != '\0'; c++)
        if (*c == '-')
            *c = '_';
    snprintf(dataset, sizeof dataset, "airflow_%d", (int)getpid());
    assert_int_equal(kl_test_run(NULL,
                                 "cd '%s' && node create-stream.js --endpoint '%s' --stream '%s' "
                                 "--shards 2 --access-key '%s' >/dev/null",
                                 kl_test_require_env("KL_TEST_NODE_TOOLS"),
                                 kl_test_require_env("KL_TEST_PROXY_URL"), stream, access_key),
                     0);
    put(0, 300);
    return 0;
}

/* After each test: a service a failed test left behind is killed (its log
 * is kept for a look), the proxy's rules of this test's key cleared. */
static int stop_leftovers(void **state)
{
    (void)state;
    if (running != 0) {
        kill(running, SIGKILL);
        waitpid(running, NULL, 0);
        running = 0;
    }
    (void)kl_test_run(NULL, "curl -sf -X DELETE '%s/__faults?access_key=%s' >/dev/null",
                      kl_test_require_env("KL_TEST_PROXY_URL"), access_key);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(two_runs_load_the_stream_once, stop_leftovers),
        cmocka_unit_test_teardown(a_failed_job_fails_the_sensor, stop_leftovers),
        cmocka_unit_test_teardown(waits_run_out_are_capped_and_wake, stop_leftovers),
        cmocka_unit_test_teardown(sigterm_ends_a_wait, stop_leftovers),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
