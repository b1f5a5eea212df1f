/*
 * The REST handlers without HTTP: requests built by hand, routed by the real
 * route table, answered against the fake service. Covers the error table
 * (api/problem.c) and, per endpoint, the statuses, headers and problem
 * bodies a client sees.
 */
#include "tests/support/fake_service.h"
#include "tests/support/test_support.h"
#include "api/api.h"
#include "api/handlers.h"
#include "api/openapi_doc.h"
#include "api/problem.h"
#include "api/routes.h"
#include "server/router.h"
#include "core/util/buf.h"
#include "core/util/err.h"

#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

struct reply {
    struct kl_api_resp resp;
    cJSON *json;
};

static const char *lookup_header(void *arg, const char *name)
{
    const char *const *pairs = arg;
    for (; pairs != NULL && pairs[0] != NULL; pairs += 2) {
        if (strcasecmp(pairs[0], name) == 0)
            return pairs[1];
    }
    return NULL;
}

static int extra_metrics(void *arg, struct kl_buf *out, struct kl_err *err)
{
    (void)arg;
    return kl_buf_append_str(out, "kl_test_server_metric 1\n", err);
}

static atomic_bool stopping;
static atomic_int waits;
static int max_waits = 2;

static struct kl_api_ctx make_ctx(struct kl_fake_service *f)
{
    struct kl_api_ctx ctx = {&f->svc, extra_metrics, NULL, &stopping, &waits, max_waits};
    return ctx;
}

/* Routes and answers `method target` ("path?query", query not decoded).
 * Any thread may call it. */
static void call(struct kl_fake_service *f, const char *method, const char *target,
                 const char *const *headers, const char *body, struct reply *out)
{
    struct kl_api_ctx ctx = make_ctx(f);
    struct kl_router_match m;
    struct kl_api_req req;
    char path[1024], query[1024];
    const char *q = strchr(target, '?');

    memset(&req, 0, sizeof req);
    snprintf(path, sizeof path, "%.*s", (int)(q != NULL ? q - target : (long)strlen(target)),
             target);
    query[0] = '\0';
    if (q != NULL)
        snprintf(query, sizeof query, "%s", q + 1);
    for (char *kv = query[0] != '\0' ? query : NULL, *next; kv != NULL; kv = next) {
        char *eq;
        next = strchr(kv, '&');
        if (next != NULL)
            *next++ = '\0';
        if (req.n_query == KL_API_MAX_QUERY) {
            req.query_overflow = true;
            break;
        }
        eq = strchr(kv, '=');
        if (eq != NULL)
            *eq = '\0';
        req.query[req.n_query].key = kv;
        req.query[req.n_query].value = eq != NULL ? eq + 1 : "";
        req.n_query++;
    }
    if (kl_router_match(kl_api_routes, kl_api_route_count, method, path, &m) != KL_ROUTER_MATCHED)
        fail_msg("%s %s is not routed", method, path);
    req.method = method;
    req.path = path;
    req.request_id = "req-1";
    for (size_t i = 0; i < m.n_params; i++)
        req.params[i] = m.params[i];
    req.n_params = m.n_params;
    req.body = body;
    req.body_len = body != NULL ? strlen(body) : 0;
    req.header = lookup_header;
    req.header_arg = (void *)headers;
    kl_api_resp_init(&out->resp);
    kl_api_dispatch(&ctx, m.route, &req, &out->resp);
    out->json = NULL;
    if (out->resp.content_type != NULL && strstr(out->resp.content_type, "json") != NULL) {
        const char *text = out->resp.body != NULL ? out->resp.body : out->resp.static_body;
        out->json = cJSON_ParseWithLength(text, out->resp.body_len);
        assert_non_null(out->json);
    }
}

static void done(struct reply *r)
{
    cJSON_Delete(r->json);
    kl_api_resp_free(&r->resp);
}

static const char *resp_header(const struct reply *r, const char *name)
{
    for (size_t i = 0; i < r->resp.n_headers; i++) {
        if (strcasecmp(r->resp.headers[i].name, name) == 0)
            return r->resp.headers[i].value;
    }
    return NULL;
}

static const char *str(const cJSON *doc, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(doc, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* The reply is a problem of `status` and `type`, naming `field` when given. */
static void expect_problem(const struct reply *r, int status, const char *type, const char *field)
{
    const cJSON *errors;
    bool named = false;

    if (r->resp.status != status)
        fail_msg("status %d, expected %d (%.*s)", r->resp.status, status, (int)r->resp.body_len,
                 r->resp.body != NULL ? r->resp.body : "");
    assert_string_equal(r->resp.content_type, "application/problem+json");
    assert_string_equal(str(r->json, "type"), type);
    assert_int_equal(cJSON_GetObjectItem(r->json, "status")->valueint, status);
    assert_non_null(str(r->json, "title"));
    assert_string_equal(str(r->json, "request_id"), "req-1");
    assert_non_null(str(r->json, "instance"));
    if (field == NULL)
        return;
    errors = cJSON_GetObjectItem(r->json, "errors");
    for (const cJSON *e = errors != NULL ? errors->child : NULL; e != NULL; e = e->next)
        named |= strcmp(str(e, "field"), field) == 0 && str(e, "message") != NULL;
    if (!named)
        fail_msg("no errors[] entry for '%s': %.*s", field, (int)r->resp.body_len, r->resp.body);
}

/* ---- the error table ---- */

static void every_error_code_maps_to_a_problem(void **state)
{
    static const struct {
        enum kl_err_code code;
        int status;
        const char *type;
    } want[] = {
        {KL_ERR_INVALID, 400, "/problems/invalid-request"},
        {KL_ERR_NOT_FOUND, 404, "/problems/not-found"},
        {KL_ERR_CONFLICT, 409, "/problems/conflict"},
        {KL_ERR_AUTH, 502, "/problems/upstream"},
        {KL_ERR_UNAVAILABLE, 503, "/problems/unavailable"},
        {KL_ERR_EXPIRED, 503, "/problems/unavailable"},
        {KL_ERR_LIMIT, 413, "/problems/payload-too-large"},
        {KL_ERR_UPSTREAM, 502, "/problems/upstream"},
        {KL_ERR_NOMEM, 500, "/problems/internal"},
        {KL_ERR_IO, 500, "/problems/internal"},
        {KL_ERR_CANCELLED, 503, "/problems/unavailable"},
        {KL_ERR_INTERNAL, 500, "/problems/internal"},
        {KL_OK, 500, "/problems/internal"},
        {(enum kl_err_code)999, 500, "/problems/internal"},
    };
    static const char *const types[] = {
        "/problems/invalid-request",    "/problems/unauthorized",
        "/problems/not-found",          "/problems/conflict",
        "/problems/payload-too-large",  "/problems/unsupported-media-type",
        "/problems/method-not-allowed", "/problems/upstream",
        "/problems/unavailable",        "/problems/internal"};
    size_t n;
    const struct kl_problem_def *table = kl_problem_table(&n);
    (void)state;

    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        const struct kl_problem_def *d = kl_problem_for_code(want[i].code);
        assert_int_equal(d->status, want[i].status);
        assert_string_equal(d->type, want[i].type);
        assert_true((d->retry_after_s > 0) == (d->status == 503));
    }
    /* every row's type is one openapi.yaml lists; every kind has a row */
    for (size_t i = 0; i < n; i++) {
        bool listed = false;
        for (size_t t = 0; t < sizeof types / sizeof types[0]; t++)
            listed |= strcmp(table[i].type, types[t]) == 0;
        assert_true(listed);
        assert_true(table[i].title[0] != '\0');
    }
    assert_int_equal(kl_problem_for_kind(KL_PROBLEM_UNAUTHORIZED)->status, 401);
    assert_int_equal(kl_problem_for_kind(KL_PROBLEM_METHOD_NOT_ALLOWED)->status, 405);
    assert_int_equal(kl_problem_for_kind(KL_PROBLEM_UNSUPPORTED_MEDIA_TYPE)->status, 415);
    assert_int_equal(kl_problem_for_kind(KL_PROBLEM_TOO_LARGE)->status, 413);
    assert_int_equal(kl_problem_for_kind(KL_PROBLEM_NOT_FOUND)->status, 404);
}

/* ---- loads ---- */

static void a_load_is_accepted_with_its_location(void **state)
{
    static const char *const json[] = {"Content-Type", "application/json; charset=utf-8", NULL};
    struct kl_fake_service f;
    struct reply r;
    char location[64];
    (void)state;

    kl_fake_service_init(&f);
    call(&f, "POST", "/streams/orders/loads", json,
         "{\"chunk_size\":50,\"initial_at_timestamp\":null}", &r);
    assert_int_equal(r.resp.status, 202);
    assert_string_equal(r.resp.content_type, "application/json");
    snprintf(location, sizeof location, "/jobs/%s", str(r.json, "id"));
    assert_string_equal(resp_header(&r, "Location"), location);
    assert_string_equal(str(r.json, "status"), "queued");
    assert_string_equal(str(r.json, "stream"), "orders");
    assert_true(f.have_last);
    assert_int_equal(f.last_params.chunk_size, 50);
    assert_int_equal(f.last_params.initial.kind, KL_INITIAL_TRIM_HORIZON);
    assert_string_equal(f.last_key, "");
    done(&r);
    /* a second job for the same stream and pipeline: 409 with the active job */
    call(&f, "POST", "/streams/orders/loads", NULL, NULL, &r);
    expect_problem(&r, 409, "/problems/conflict", NULL);
    assert_non_null(str(cJSON_GetObjectItem(r.json, "job"), "id"));
    assert_string_equal(str(cJSON_GetObjectItem(r.json, "job"), "status"), "queued");
    assert_non_null(strstr(str(r.json, "detail"), "is queued"));
    done(&r);
    /* another pipeline is another job */
    call(&f, "POST", "/streams/orders/loads", json, "{\"pipeline_name\":\"p2\"}", &r);
    assert_int_equal(r.resp.status, 202);
    done(&r);
    kl_fake_service_free(&f);
}

static void idempotency_keys_answer_the_same_job(void **state)
{
    static const char *const keyed[] = {"Content-Type", "application/json", "Idempotency-Key",
                                        "order-2024-05-01 #1", NULL};
    static const char *const bad_key[] = {"Idempotency-Key", "caf\xc3\xa9", NULL};
    struct kl_fake_service f;
    struct reply r;
    char id[32];
    (void)state;

    kl_fake_service_init(&f);
    call(&f, "POST", "/streams/orders/loads", keyed, "{}", &r);
    assert_int_equal(r.resp.status, 202);
    snprintf(id, sizeof id, "%s", str(r.json, "id"));
    assert_string_equal(f.last_key, "order-2024-05-01 #1");
    done(&r);
    call(&f, "POST", "/streams/orders/loads", keyed, "{}", &r);
    assert_int_equal(r.resp.status, 200);
    assert_string_equal(str(r.json, "id"), id);
    assert_non_null(resp_header(&r, "Location"));
    done(&r);
    /* the same key for another stream or dataset is not that job */
    call(&f, "POST", "/streams/clicks/loads", keyed, "{}", &r);
    expect_problem(&r, 409, "/problems/conflict", NULL);
    assert_non_null(strstr(str(r.json, "detail"), id));
    done(&r);
    call(&f, "POST", "/streams/orders/loads", keyed, "{\"dataset_name\":\"other\"}", &r);
    expect_problem(&r, 409, "/problems/conflict", NULL);
    done(&r);
    call(&f, "POST", "/streams/orders/loads", bad_key, NULL, &r);
    expect_problem(&r, 400, "/problems/invalid-request", "Idempotency-Key");
    done(&r);
    {
        char long_key[300];
        const char *headers[] = {"Idempotency-Key", long_key, NULL};
        memset(long_key, 'k', 256);
        long_key[256] = '\0';
        call(&f, "POST", "/streams/orders/loads", headers, NULL, &r);
        expect_problem(&r, 400, "/problems/invalid-request", "Idempotency-Key");
        done(&r);
        long_key[255] = '\0';
        call(&f, "POST", "/streams/orders/loads", headers, NULL, &r);
        assert_int_equal(r.resp.status, 409); /* valid key, but orders has an active job */
        done(&r);
    }
    kl_fake_service_free(&f);
}

static void load_bodies_must_be_json(void **state)
{
    static const char *const cases[] = {"text/plain",
                                        "application/x-www-form-urlencoded",
                                        "application/json; charset=latin1",
                                        "application/jsonx",
                                        "application/json; charset",
                                        "application/json; =utf-8",
                                        NULL};
    /* RFC 9110 §5.6.6 allows empty parameters: "application/json;" is JSON */
    static const char *const ok[] = {"application/json",
                                     "Application/JSON",
                                     "application/json ; charset=\"UTF-8\"",
                                     "application/json;charset=utf8",
                                     "application/json;",
                                     "application/json; ",
                                     "application/json;;charset=utf-8;"};
    struct kl_fake_service f;
    struct reply r;
    (void)state;

    kl_fake_service_init(&f);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *headers[] = {"Content-Type", cases[i], NULL};
        call(&f, "POST", "/streams/orders/loads", cases[i] != NULL ? headers : NULL, "{}", &r);
        expect_problem(&r, 415, "/problems/unsupported-media-type", NULL);
        done(&r);
    }
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
        assert_true(kl_api_media_type_is_json(ok[i]));
    assert_int_equal(f.calls, 0);
    {
        const char *headers[] = {"Content-Type", "application/json;", NULL};
        call(&f, "POST", "/streams/orders2/loads", headers, "{}", &r);
        assert_int_equal(r.resp.status, 202);
        done(&r);
    }
    /* no body, no content type needed: the defaults */
    call(&f, "POST", "/streams/orders/loads", NULL, NULL, &r);
    assert_int_equal(r.resp.status, 202);
    done(&r);
    kl_fake_service_free(&f);
}

static void invalid_loads_get_400_with_the_fields(void **state)
{
    static const char *const json[] = {"Content-Type", "application/json", NULL};
    struct kl_fake_service f;
    struct reply r;
    const cJSON *errors;
    (void)state;

    kl_fake_service_init(&f);
    call(&f, "POST", "/streams/orders/loads", json, "{\"chunk_size\":0,\"colour\":\"red\"}", &r);
    expect_problem(&r, 400, "/problems/invalid-request", "chunk_size");
    expect_problem(&r, 400, "/problems/invalid-request", "colour");
    errors = cJSON_GetObjectItem(r.json, "errors");
    assert_int_equal(cJSON_GetArraySize(errors), 2);
    assert_string_equal(str(r.json, "detail"), "2 invalid fields");
    done(&r);
    call(&f, "POST", "/streams/orders/loads", json, "{\"chunk_size\":", &r);
    expect_problem(&r, 400, "/problems/invalid-request", NULL);
    assert_non_null(strstr(str(r.json, "detail"), "not valid JSON"));
    assert_null(cJSON_GetObjectItem(r.json, "errors"));
    done(&r);
    call(&f, "POST", "/streams/bad%20name/loads", json, "{}", &r);
    expect_problem(&r, 400, "/problems/invalid-request", "stream");
    assert_string_equal(str(r.json, "instance"), "/streams/bad%20name/loads");
    done(&r);
    /* what the job would fail on at its first worker, refused here */
    call(&f, "POST", "/streams/orders/loads", json,
         "{\"dataset_name\":\"pg_stats\",\"table_name\":\"_dlt_loads\"}", &r);
    expect_problem(&r, 400, "/problems/invalid-request", "dataset_name");
    expect_problem(&r, 400, "/problems/invalid-request", "table_name");
    done(&r);
    call(&f, "POST", "/streams/_DLT_Loads/loads", json, "{}", &r); /* the root table */
    expect_problem(&r, 400, "/problems/invalid-request", "table_name");
    done(&r);
    call(&f, "POST", "/streams/orders/loads", json,
         "{\"initial_at_timestamp\":\"1969-07-20T20:17:40Z\"}", &r);
    expect_problem(&r, 400, "/problems/invalid-request", "initial_at_timestamp");
    done(&r);
    assert_int_equal(f.calls, 0); /* nothing invalid reached the service */
    /* issue 9: "Sales" was queued as is and the job failed on it; the
     * destination's name is dlt's normalisation, "sales" */
    call(&f, "POST", "/streams/demo/loads", json, "{\"dataset_name\": \"Sales\"}", &r);
    assert_int_equal(r.resp.status, 202);
    assert_string_equal(f.last_params.dataset_name, "sales");
    assert_string_equal(str(cJSON_GetObjectItem(r.json, "parameters"), "dataset_name"), "sales");
    done(&r);
    kl_fake_service_free(&f);
}

static void engine_errors_map_through_the_table(void **state)
{
    struct kl_fake_service f;
    struct reply r;
    (void)state;

    kl_fake_service_init(&f);
    f.fail_code = KL_ERR_UNAVAILABLE;
    snprintf(f.fail_msg, sizeof f.fail_msg, "Redis: connection refused");
    call(&f, "POST", "/streams/orders/loads", NULL, NULL, &r);
    expect_problem(&r, 503, "/problems/unavailable", NULL);
    assert_string_equal(resp_header(&r, "Retry-After"), "5");
    assert_string_equal(str(r.json, "detail"), "Redis: connection refused");
    assert_non_null(strstr(r.resp.error, "unavailable: Redis"));
    done(&r);
    f.fail_code = KL_ERR_AUTH;
    snprintf(f.fail_msg, sizeof f.fail_msg, "UnrecognizedClientException");
    call(&f, "GET", "/streams", NULL, NULL, &r);
    expect_problem(&r, 502, "/problems/upstream", NULL);
    done(&r);
    f.fail_code = KL_ERR_INTERNAL;
    snprintf(f.fail_msg, sizeof f.fail_msg, "invariant broken at engine.c:42");
    call(&f, "GET", "/jobs/00000000000000000000000001", NULL, NULL, &r);
    expect_problem(&r, 500, "/problems/internal", NULL);
    /* internals go to the log, not to the client */
    assert_null(strstr(str(r.json, "detail"), "engine.c"));
    assert_non_null(strstr(str(r.json, "detail"), "req-1"));
    assert_non_null(strstr(r.resp.error, "engine.c:42"));
    done(&r);
    kl_fake_service_free(&f);
}

/* ---- jobs ---- */

static void jobs_by_id(void **state)
{
    struct kl_fake_service f;
    struct reply r;
    char path[64];
    const char *id;
    (void)state;

    kl_fake_service_init(&f);
    id = kl_fake_service_add(&f, "orders", KL_STORE_JOB_SUCCEEDED);
    snprintf(path, sizeof path, "/jobs/%s", id);
    call(&f, "GET", path, NULL, NULL, &r);
    assert_int_equal(r.resp.status, 200);
    assert_string_equal(str(r.json, "id"), id);
    assert_string_equal(str(r.json, "status"), "succeeded");
    done(&r);
    call(&f, "GET", "/jobs/zzzzzzzzzzzzzzzzzzzzzzzzzz", NULL, NULL, &r);
    expect_problem(&r, 404, "/problems/not-found", NULL);
    done(&r);
    {
        static const char *const bad[] = {"/jobs/short", "/jobs/ABCDEFGHIJKLMNOPQRSTUVWXYZ",
                                          "/jobs/0000000000000000000000000-",
                                          "/jobs/000000000000000000000000001"};
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
            call(&f, "GET", bad[i], NULL, NULL, &r);
            expect_problem(&r, 400, "/problems/invalid-request", "id");
            done(&r);
        }
    }
    kl_fake_service_free(&f);
}

static void cancelling(void **state)
{
    struct kl_fake_service f;
    struct reply r;
    char path[64];
    const char *queued, *running, *succeeded;
    (void)state;

    kl_fake_service_init(&f);
    queued = kl_fake_service_add(&f, "a", KL_STORE_JOB_QUEUED);
    running = kl_fake_service_add(&f, "b", KL_STORE_JOB_RUNNING);
    succeeded = kl_fake_service_add(&f, "c", KL_STORE_JOB_SUCCEEDED);
    snprintf(path, sizeof path, "/jobs/%s/cancel", queued);
    call(&f, "POST", path, NULL, NULL, &r);
    assert_int_equal(r.resp.status, 202);
    assert_string_equal(str(r.json, "status"), "cancelled");
    done(&r);
    call(&f, "POST", path, NULL, NULL, &r); /* cancelling a cancelled job is fine */
    assert_int_equal(r.resp.status, 202);
    done(&r);
    snprintf(path, sizeof path, "/jobs/%s/cancel", running);
    call(&f, "POST", path, NULL, NULL, &r);
    assert_int_equal(r.resp.status, 202);
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(r.json, "cancel_requested")));
    done(&r);
    snprintf(path, sizeof path, "/jobs/%s/cancel", succeeded);
    call(&f, "POST", path, NULL, NULL, &r);
    expect_problem(&r, 409, "/problems/conflict", NULL);
    assert_string_equal(str(cJSON_GetObjectItem(r.json, "job"), "id"), succeeded);
    done(&r);
    call(&f, "POST", "/jobs/nope/cancel", NULL, NULL, &r);
    expect_problem(&r, 400, "/problems/invalid-request", "id");
    done(&r);
    kl_fake_service_free(&f);
}

static void listing_jobs(void **state)
{
    struct kl_fake_service f;
    struct reply r;
    const char *next;
    (void)state;

    kl_fake_service_init(&f);
    for (int i = 0; i < 5; i++)
        kl_fake_service_add(&f, i % 2 ? "a" : "b", KL_STORE_JOB_SUCCEEDED);
    call(&f, "GET", "/jobs", NULL, NULL, &r);
    assert_int_equal(r.resp.status, 200);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(r.json, "jobs")), 5);
    assert_int_equal(f.last_limit, 50);
    done(&r);
    call(&f, "GET", "/jobs?stream=b&status=succeeded&limit=2", NULL, NULL, &r);
    assert_int_equal(r.resp.status, 200);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(r.json, "jobs")), 2);
    next = str(r.json, "next_cursor");
    assert_non_null(next);
    {
        char target[128];
        snprintf(target, sizeof target, "/jobs?stream=b&limit=2&cursor=%s", next);
        done(&r);
        call(&f, "GET", target, NULL, NULL, &r);
        assert_int_equal(r.resp.status, 200);
        assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(r.json, "jobs")), 1);
        assert_true(cJSON_IsNull(cJSON_GetObjectItem(r.json, "next_cursor")));
        done(&r);
    }
    {
        static const struct {
            const char *target;
            const char *field;
        } bad[] = {
            {"/jobs?limit=0", "limit"},         {"/jobs?limit=501", "limit"},
            {"/jobs?limit=ten", "limit"},       {"/jobs?limit=", "limit"},
            {"/jobs?limit=010", "limit"},       {"/jobs?limit=-1", "limit"},
            {"/jobs?status=done", "status"},    {"/jobs?stream=a/b", "stream"},
            {"/jobs?stream=", "stream"},        {"/jobs?cursor=", "cursor"},
            {"/jobs?cursor=a b", "cursor"},     {"/jobs?statuss=queued", "statuss"},
            {"/jobs?limit=1&limit=2", "limit"},
        };
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
            call(&f, "GET", bad[i].target, NULL, NULL, &r);
            expect_problem(&r, 400, "/problems/invalid-request", bad[i].field);
            done(&r);
        }
    }
    call(&f, "GET",
         "/jobs?a=1&b=2&c=3&d=4&e=5&f=6&g=7&h=8&i=9&j=10&k=11&l=12&m=13&n=14&o=15&p=16&q=17", NULL,
         NULL, &r);
    expect_problem(&r, 400, "/problems/invalid-request", NULL);
    assert_string_equal(str(r.json, "detail"), "too many query parameters");
    done(&r);
    call(&f, "GET", "/jobs/00000000000000000000000001?verbose=1", NULL, NULL, &r);
    expect_problem(&r, 400, "/problems/invalid-request", "verbose");
    done(&r);
    kl_fake_service_free(&f);
}

/* ---- waiting for a job: GET /jobs/{id}?wait= ---- */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* What a worker, a signal or a failing store does to a waiting request,
 * `after_ms` into the wait, from another thread. */
struct later {
    pthread_t thread;
    long after_ms;
    void (*act)(struct later *);
    struct kl_fake_service *f;
    const char *id;
};

static void *later_thread(void *arg)
{
    struct later *l = arg;
    usleep((useconds_t)l->after_ms * 1000);
    l->act(l);
    return NULL;
}

static void later_start(struct later *l, long after_ms, void (*act)(struct later *),
                        struct kl_fake_service *f, const char *id)
{
    l->after_ms = after_ms;
    l->act = act;
    l->f = f;
    l->id = id;
    assert_int_equal(pthread_create(&l->thread, NULL, later_thread, l), 0);
}

static void later_join(struct later *l)
{
    assert_int_equal(pthread_join(l->thread, NULL), 0);
}

static void job_succeeds(struct later *l)
{
    (void)kl_fake_service_set_status(l->f, l->id, KL_STORE_JOB_SUCCEEDED);
}

static void service_stops(struct later *l)
{
    (void)l;
    atomic_store(&stopping, true);
}

static void store_fails(struct later *l)
{
    pthread_mutex_lock(&l->f->lock);
    l->f->fail_code = KL_ERR_UNAVAILABLE;
    snprintf(l->f->fail_msg, sizeof l->f->fail_msg, "Redis: connection reset");
    pthread_mutex_unlock(&l->f->lock);
}

/* GET `path` answered 200 with the job in `status`, after `min_ms` to
 * `max_ms` milliseconds. */
static void expect_job_after(struct kl_fake_service *f, const char *path, const char *status,
                             int64_t min_ms, int64_t max_ms)
{
    struct reply r;
    int64_t start = now_ms(), took;

    call(f, "GET", path, NULL, NULL, &r);
    took = now_ms() - start;
    if (r.resp.status != 200)
        fail_msg("GET %s: %d %.*s", path, r.resp.status, (int)r.resp.body_len, r.resp.body);
    assert_string_equal(str(r.json, "status"), status);
    if (took < min_ms || took > max_ms)
        fail_msg("GET %s took %lld ms, expected %lld to %lld", path, (long long)took,
                 (long long)min_ms, (long long)max_ms);
    done(&r);
}

static void job_waits_are_checked(void **state)
{
    static const char *const bad[] = {"61", "-1", "", "1.5", "05", "ten", " 1", "1000000000"};
    struct kl_fake_service f;
    struct reply r;
    char path[128];
    const char *id;
    (void)state;

    kl_fake_service_init(&f);
    id = kl_fake_service_add(&f, "orders", KL_STORE_JOB_RUNNING);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(path, sizeof path, "/jobs/%s?wait=%s", id, bad[i]);
        call(&f, "GET", path, NULL, NULL, &r);
        expect_problem(&r, 400, "/problems/invalid-request", "wait");
        done(&r);
    }
    /* both fields at once */
    call(&f, "GET", "/jobs/nope?wait=x", NULL, NULL, &r);
    expect_problem(&r, 400, "/problems/invalid-request", "id");
    expect_problem(&r, 400, "/problems/invalid-request", "wait");
    done(&r);
    snprintf(path, sizeof path, "/jobs/%s?wait=1&wait=2", id);
    call(&f, "GET", path, NULL, NULL, &r);
    expect_problem(&r, 400, "/problems/invalid-request", "wait");
    done(&r);
    assert_int_equal(f.calls, 0);
    /* 0 is no wait at all, like no parameter */
    snprintf(path, sizeof path, "/jobs/%s?wait=0", id);
    expect_job_after(&f, path, "running", 0, 500);
    assert_int_equal(f.waits, 0);
    kl_fake_service_free(&f);
}

static void a_final_or_unknown_job_is_answered_at_once(void **state)
{
    static const enum kl_store_job_status final[] = {KL_STORE_JOB_SUCCEEDED, KL_STORE_JOB_FAILED,
                                                     KL_STORE_JOB_CANCELLED};
    static const char *const names[] = {"succeeded", "failed", "cancelled"};
    struct kl_fake_service f;
    struct reply r;
    char path[128];
    (void)state;

    kl_fake_service_init(&f);
    for (size_t i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "/jobs/%s?wait=60", kl_fake_service_add(&f, "o", final[i]));
        expect_job_after(&f, path, names[i], 0, 500);
    }
    assert_int_equal(f.waits, 3);
    assert_int_equal(f.last_wait_ms, 60000);
    call(&f, "GET", "/jobs/zzzzzzzzzzzzzzzzzzzzzzzzzz?wait=60", NULL, NULL, &r);
    expect_problem(&r, 404, "/problems/not-found", NULL);
    done(&r);
    kl_fake_service_free(&f);
}

/* GET ?wait=`wait_s` of a new running job, with `act` done 300 ms into the
 * wait by another thread: the reply comes then (in `r`), not at the end of
 * the wait. Returns the job's path with the query. */
static const char *act_while_waiting(struct kl_fake_service *f, int wait_s,
                                     void (*act)(struct later *), struct reply *r)
{
    static char path[128];
    const char *id = kl_fake_service_add(f, "orders", KL_STORE_JOB_RUNNING);
    struct later l;
    int64_t start, took;

    snprintf(path, sizeof path, "/jobs/%s?wait=%d", id, wait_s);
    later_start(&l, 300, act, f, id);
    start = now_ms();
    call(f, "GET", path, NULL, NULL, r);
    took = now_ms() - start;
    later_join(&l);
    if (took < 250 || took > 5000)
        fail_msg("GET %s took %lld ms, expected about 300", path, (long long)took);
    assert_int_equal(atomic_load(&waits), 0);
    return path;
}

static void a_wait_ends_when_the_job_does(void **state)
{
    struct kl_fake_service f;
    struct reply r;
    char path[128];
    (void)state;

    kl_fake_service_init(&f);
    (void)act_while_waiting(&f, 30, job_succeeds, &r);
    assert_int_equal(r.resp.status, 200);
    assert_string_equal(str(r.json, "status"), "succeeded");
    done(&r);
    /* time up: the job as it is, still queued */
    snprintf(path, sizeof path, "/jobs/%s?wait=1",
             kl_fake_service_add(&f, "clicks", KL_STORE_JOB_QUEUED));
    expect_job_after(&f, path, "queued", 950, 5000);
    assert_int_equal(f.last_wait_ms, 1000);
    kl_fake_service_free(&f);
}

static void stopping_ends_a_wait(void **state)
{
    struct kl_fake_service f;
    struct reply r;
    const char *path;
    (void)state;

    kl_fake_service_init(&f);
    path = act_while_waiting(&f, 60, service_stops, &r);
    assert_int_equal(r.resp.status, 200);
    assert_string_equal(str(r.json, "status"), "running");
    done(&r);
    /* once stopping, nothing starts to wait */
    expect_job_after(&f, path, "running", 0, 500);
    assert_int_equal(f.waits, 1);
    atomic_store(&stopping, false);
    kl_fake_service_free(&f);
}

static void a_store_error_ends_a_wait_with_its_problem(void **state)
{
    struct kl_fake_service f;
    struct reply r;
    (void)state;

    kl_fake_service_init(&f);
    (void)act_while_waiting(&f, 30, store_fails, &r);
    expect_problem(&r, 503, "/problems/unavailable", NULL);
    assert_string_equal(str(r.json, "detail"), "Redis: connection reset");
    assert_string_equal(resp_header(&r, "Retry-After"), "5");
    done(&r);
    kl_fake_service_free(&f);
}

/* A request that waits on another thread. */
struct waiter {
    pthread_t thread;
    struct kl_fake_service *f;
    char path[128];
    struct reply r;
};

static void *waiter_thread(void *arg)
{
    struct waiter *w = arg;
    call(w->f, "GET", w->path, NULL, NULL, &w->r);
    return NULL;
}

static void waits_are_capped(void **state)
{
    struct kl_fake_service f;
    struct waiter w;
    char path[128];
    const char *id;
    (void)state;

    max_waits = 1;
    kl_fake_service_init(&f);
    id = kl_fake_service_add(&f, "orders", KL_STORE_JOB_RUNNING);
    w.f = &f;
    snprintf(w.path, sizeof w.path, "/jobs/%s?wait=30", id);
    assert_int_equal(pthread_create(&w.thread, NULL, waiter_thread, &w), 0);
    for (int i = 0; i < 200 && atomic_load(&waits) == 0; i++)
        usleep(10000);
    assert_int_equal(atomic_load(&waits), 1);
    /* the one slot is taken: answered at once, and correct */
    snprintf(path, sizeof path, "/jobs/%s?wait=30", id);
    expect_job_after(&f, path, "running", 0, 500);
    assert_int_equal(f.waits, 1);
    assert_true(kl_fake_service_set_status(&f, id, KL_STORE_JOB_FAILED));
    assert_int_equal(pthread_join(w.thread, NULL), 0);
    assert_int_equal(w.r.resp.status, 200);
    assert_string_equal(str(w.r.json, "status"), "failed");
    assert_string_equal(str(cJSON_GetObjectItem(w.r.json, "error"), "type"), "unavailable");
    done(&w.r);
    /* the slot is free again */
    assert_int_equal(atomic_load(&waits), 0);
    snprintf(path, sizeof path, "/jobs/%s?wait=30",
             kl_fake_service_add(&f, "orders", KL_STORE_JOB_SUCCEEDED));
    expect_job_after(&f, path, "succeeded", 0, 500);
    assert_int_equal(f.waits, 2);
    /* no slots at all (one HTTP thread): never waits */
    max_waits = 0;
    snprintf(path, sizeof path, "/jobs/%s?wait=30",
             kl_fake_service_add(&f, "clicks", KL_STORE_JOB_RUNNING));
    expect_job_after(&f, path, "running", 0, 500);
    assert_int_equal(f.waits, 2);
    max_waits = 2;
    kl_fake_service_free(&f);
}

/* ---- streams and state ---- */

static void streams(void **state)
{
    struct kl_fake_service f;
    struct reply r;
    (void)state;

    kl_fake_service_init(&f);
    call(&f, "GET", "/streams", NULL, NULL, &r);
    assert_int_equal(r.resp.status, 200);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(r.json, "streams")), 2);
    done(&r);
    call(&f, "GET", "/streams/orders", NULL, NULL, &r);
    assert_int_equal(r.resp.status, 200);
    assert_string_equal(str(r.json, "name"), "orders");
    done(&r);
    call(&f, "GET", "/streams/missing", NULL, NULL, &r);
    expect_problem(&r, 404, "/problems/not-found", NULL);
    assert_non_null(strstr(str(r.json, "detail"), "not found"));
    done(&r);
    call(&f, "GET", "/streams/bad!name", NULL, NULL, &r);
    expect_problem(&r, 400, "/problems/invalid-request", "stream");
    done(&r);
    kl_fake_service_free(&f);
}

static void stream_state(void **state)
{
    struct kl_fake_service f;
    struct reply r;
    (void)state;

    kl_fake_service_init(&f);
    call(&f, "GET", "/streams/orders/state", NULL, NULL, &r);
    assert_int_equal(r.resp.status, 200);
    assert_string_equal(f.last_pipeline, "kinesis_pipeline");
    assert_string_equal(f.last_dataset, "kinesis");
    done(&r);
    call(&f, "GET", "/streams/orders/state?pipeline_name=p.1&dataset_name=raw", NULL, NULL, &r);
    assert_int_equal(r.resp.status, 200);
    assert_string_equal(str(r.json, "pipeline_name"), "p.1");
    assert_string_equal(f.last_dataset, "raw");
    done(&r);
    call(&f, "DELETE", "/streams/orders/state", NULL, NULL, &r);
    assert_int_equal(r.resp.status, 204);
    assert_null(r.resp.content_type);
    assert_int_equal(r.resp.body_len, 0);
    done(&r);
    kl_fake_service_add(&f, "orders", KL_STORE_JOB_RUNNING);
    call(&f, "DELETE", "/streams/orders/state", NULL, NULL, &r);
    expect_problem(&r, 409, "/problems/conflict", NULL);
    done(&r);
    call(&f, "DELETE", "/streams/orders/state?pipeline_name=a%20b&dataset_name=9x", NULL, NULL, &r);
    expect_problem(&r, 400, "/problems/invalid-request", "pipeline_name");
    expect_problem(&r, 400, "/problems/invalid-request", "dataset_name");
    done(&r);
    /* the dataset is normalised as a load job's is: its state is where the job put it */
    call(&f, "GET", "/streams/orders/state?dataset_name=MySales", NULL, NULL, &r);
    assert_int_equal(r.resp.status, 200);
    assert_string_equal(f.last_dataset, "my_sales");
    done(&r);
    call(&f, "GET", "/streams/orders/state?dataset_name=PG_toast", NULL, NULL, &r);
    expect_problem(&r, 400, "/problems/invalid-request", "dataset_name");
    done(&r);
    kl_fake_service_free(&f);
}

/* ---- operations ---- */

static void health_readiness_metrics_openapi(void **state)
{
    struct kl_fake_service f;
    struct reply r;
    char *file = NULL;
    (void)state;

    kl_fake_service_init(&f);
    call(&f, "GET", "/healthz", NULL, NULL, &r);
    assert_int_equal(r.resp.status, 200);
    assert_string_equal(str(r.json, "status"), "ok");
    done(&r);
    call(&f, "GET", "/readyz", NULL, NULL, &r);
    assert_int_equal(r.resp.status, 200);
    assert_string_equal(str(r.json, "status"), "ready");
    done(&r);
    f.ready = false;
    call(&f, "GET", "/readyz", NULL, NULL, &r);
    assert_int_equal(r.resp.status, 503);
    assert_string_equal(r.resp.content_type, "application/json");
    assert_string_equal(str(r.json, "status"), "not_ready");
    done(&r);
    f.ready = true;
    atomic_store(&stopping, true);
    call(&f, "GET", "/readyz", NULL, NULL, &r);
    assert_int_equal(r.resp.status, 503);
    assert_false(cJSON_IsTrue(cJSON_GetObjectItem(
        cJSON_GetObjectItem(cJSON_GetObjectItem(r.json, "checks"), "shutdown"), "ok")));
    done(&r);
    atomic_store(&stopping, false);

    kl_fake_service_add(&f, "orders", KL_STORE_JOB_RUNNING);
    call(&f, "GET", "/metrics", NULL, NULL, &r);
    assert_int_equal(r.resp.status, 200);
    assert_string_equal(r.resp.content_type, "text/plain; version=0.0.4; charset=utf-8");
    assert_non_null(strstr(r.resp.body, "kl_jobs{status=\"running\"} 1\n"));
    assert_non_null(strstr(r.resp.body, "kl_engine_metrics_ok 1\n"));
    assert_non_null(strstr(r.resp.body, "kl_test_server_metric 1\n"));
    done(&r);
    f.metrics_fail = true;
    call(&f, "GET", "/metrics", NULL, NULL, &r);
    assert_int_equal(r.resp.status, 200);
    assert_null(strstr(r.resp.body, "kl_jobs"));
    assert_non_null(strstr(r.resp.body, "kl_engine_metrics_ok 0\n"));
    assert_non_null(strstr(r.resp.body, "kl_test_server_metric 1\n"));
    assert_non_null(strstr(r.resp.error, "store unreachable"));
    done(&r);

    call(&f, "GET", "/openapi.yaml", NULL, NULL, &r);
    assert_int_equal(r.resp.status, 200);
    assert_string_equal(r.resp.content_type, "application/yaml");
    assert_int_equal(kl_test_run(&file, "cat %s/openapi.yaml", KL_SOURCE_DIR), 0);
    assert_int_equal(r.resp.body_len, strlen(file));
    assert_memory_equal(r.resp.static_body, file, r.resp.body_len);
    assert_int_equal(kl_openapi_yaml_len, strlen(file));
    free(file);
    done(&r);
    kl_fake_service_free(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_error_code_maps_to_a_problem),
        cmocka_unit_test(a_load_is_accepted_with_its_location),
        cmocka_unit_test(idempotency_keys_answer_the_same_job),
        cmocka_unit_test(load_bodies_must_be_json),
        cmocka_unit_test(invalid_loads_get_400_with_the_fields),
        cmocka_unit_test(engine_errors_map_through_the_table),
        cmocka_unit_test(jobs_by_id),
        cmocka_unit_test(cancelling),
        cmocka_unit_test(listing_jobs),
        cmocka_unit_test(job_waits_are_checked),
        cmocka_unit_test(a_final_or_unknown_job_is_answered_at_once),
        cmocka_unit_test(a_wait_ends_when_the_job_does),
        cmocka_unit_test(stopping_ends_a_wait),
        cmocka_unit_test(a_store_error_ends_a_wait_with_its_problem),
        cmocka_unit_test(waits_are_capped),
        cmocka_unit_test(streams),
        cmocka_unit_test(stream_state),
        cmocka_unit_test(health_readiness_metrics_openapi),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
