/*
 * The REST server over real HTTP: the libmicrohttpd daemon (server/http.c)
 * on 127.0.0.1 with a free port and the fake service, driven by libcurl.
 * Statuses, headers (Location, X-Request-Id, WWW-Authenticate, Retry-After,
 * Allow, Content-Type), body limits, auth on and off, /openapi.yaml,
 * /metrics, the access log, stopping on SIGTERM; and at the end every
 * response seen is checked against openapi.yaml (tests/tools/check-contract.js).
 */
#include "tests/support/fake_service.h"
#include "tests/support/test_support.h"
#include "server/config.h"
#include "server/http.h"
#include "server/serve.h"
#include "core/util/env.h"
#include "core/util/err.h"

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <pthread.h>
#include <regex.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define TOKEN "s3cr3t-t0ken"

struct server {
    struct kl_fake_service f;
    struct kl_httpd *h;
    FILE *log;
    char base[64];
};

struct reply {
    long status;
    char *body;
    size_t len;
    char headers[8192];
    size_t hlen;
    cJSON *json;
};

/* Every exchange, for the contract check at the end. */
static cJSON *exchanges;

static void record(const char *method, const char *url, const struct reply *r);

static void start(struct server *s, const char *token)
{
    struct kl_httpd_opts o;
    struct kl_err err = {0};

    kl_fake_service_init(&s->f);
    s->log = tmpfile();
    assert_non_null(s->log);
    memset(&o, 0, sizeof o);
    o.host = "127.0.0.1";
    o.port = 0;
    o.threads = 2;
    o.max_connections = 64;
    o.idle_timeout_s = 10;
    o.max_body = (size_t)1 << 20;
    o.api_token = token;
    o.svc = &s->f.svc;
    o.log = s->log;
    s->h = kl_httpd_start(&o, &err);
    if (s->h == NULL)
        fail_msg("kl_httpd_start: %s", err.msg);
    snprintf(s->base, sizeof s->base, "http://127.0.0.1:%u", kl_httpd_port(s->h));
}

static void stop(struct server *s)
{
    kl_httpd_destroy(s->h);
    fclose(s->log);
    kl_fake_service_free(&s->f);
}

static size_t on_body(char *data, size_t size, size_t n, void *arg)
{
    struct reply *r = arg;
    char *grown = realloc(r->body, r->len + size * n + 1);
    assert_non_null(grown);
    r->body = grown;
    memcpy(r->body + r->len, data, size * n);
    r->len += size * n;
    r->body[r->len] = '\0';
    return size * n;
}

static size_t on_header(char *data, size_t size, size_t n, void *arg)
{
    struct reply *r = arg;
    size_t len = size * n;
    /* a new response (after 100 Continue) starts with its status line */
    if (len > 5 && strncmp(data, "HTTP/", 5) == 0)
        r->hlen = 0;
    if (r->hlen + len < sizeof r->headers) {
        memcpy(r->headers + r->hlen, data, len);
        r->hlen += len;
        r->headers[r->hlen] = '\0';
    }
    return len;
}

/* A response header's value (static buffer), or NULL. */
static const char *hdr(const struct reply *r, const char *name)
{
    static char value[1024];
    size_t nl = strlen(name);
    for (const char *line = r->headers; *line != '\0';) {
        const char *end = strstr(line, "\r\n");
        if (end == NULL)
            break;
        if ((size_t)(end - line) > nl && strncasecmp(line, name, nl) == 0 && line[nl] == ':') {
            const char *v = line + nl + 1;
            while (*v == ' ')
                v++;
            snprintf(value, sizeof value, "%.*s", (int)(end - v), v);
            return value;
        }
        line = end + 2;
    }
    return NULL;
}

struct request {
    const char *method;
    const char *url;
    const char *const *headers; /* "Name: value" strings, NULL-terminated */
    const char *body;
    size_t body_len;
    bool chunked;
    CURL *handle; /* reuse a connection; NULL: a fresh handle */
};

/* Sends `q`; CURLcode of the transfer. */
static CURLcode send_req(const struct request *q, struct reply *r)
{
    CURL *c = q->handle != NULL ? q->handle : curl_easy_init();
    struct curl_slist *list = NULL;
    CURLcode rc;

    memset(r, 0, sizeof *r);
    assert_non_null(c);
    for (const char *const *h = q->headers; h != NULL && *h != NULL; h++)
        list = curl_slist_append(list, *h);
    if (q->chunked)
        list = curl_slist_append(list, "Transfer-Encoding: chunked");
    curl_easy_setopt(c, CURLOPT_URL, q->url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, q->method);
    curl_easy_setopt(c, CURLOPT_NOBODY, strcmp(q->method, "HEAD") == 0 ? 1L : 0L);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, list);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
    if (q->body != NULL) {
        curl_easy_setopt(c, CURLOPT_POST, 1L);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, q->body);
        if (!q->chunked)
            curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)q->body_len);
        else
            curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)-1);
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, q->method);
    } else {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, NULL);
        curl_easy_setopt(c, CURLOPT_POST, 0L);
        if (strcmp(q->method, "GET") == 0)
            curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, q->method);
    }
    rc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    curl_slist_free_all(list);
    if (q->handle == NULL)
        curl_easy_cleanup(c);
    if (r->body != NULL && hdr(r, "Content-Type") != NULL &&
        strstr(hdr(r, "Content-Type"), "json") != NULL)
        r->json = cJSON_Parse(r->body);
    if (rc == CURLE_OK)
        record(q->method, q->url, r);
    return rc;
}

static void http(const char *method, const char *url, const char *const *headers, const char *body,
                 struct reply *r)
{
    struct request q = {method, url, headers, body, body != NULL ? strlen(body) : 0, false, NULL};
    CURLcode rc = send_req(&q, r);
    if (rc != CURLE_OK)
        fail_msg("%s %s: %s", method, url, curl_easy_strerror(rc));
}

static void done(struct reply *r)
{
    cJSON_Delete(r->json);
    free(r->body);
    memset(r, 0, sizeof *r);
}

static const char *str(const cJSON *doc, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(doc, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static void expect_problem(const struct reply *r, long status, const char *type)
{
    if (r->status != status)
        fail_msg("status %ld, expected %ld: %s", r->status, status, r->body ? r->body : "");
    assert_string_equal(hdr(r, "Content-Type"), "application/problem+json");
    assert_non_null(r->json);
    assert_string_equal(str(r->json, "type"), type);
    assert_int_equal(cJSON_GetObjectItem(r->json, "status")->valueint, status);
    assert_string_equal(str(r->json, "request_id"), hdr(r, "X-Request-Id"));
}

static bool is_hex_id(const char *s)
{
    size_t n = 0;
    for (; s != NULL && s[n] != '\0'; n++) {
        if (!((s[n] >= '0' && s[n] <= '9') || (s[n] >= 'a' && s[n] <= 'f')))
            return false;
    }
    return n == 32;
}

/* ---- recording for the contract check ---- */

static pthread_mutex_t record_lock = PTHREAD_MUTEX_INITIALIZER;

/* Called from concurrent request threads too: the array is shared. */
static void record(const char *method, const char *url, const struct reply *r)
{
    cJSON *e, *h;
    const char *path = strstr(url, "://");
    static const char *const names[] = {"Content-Type",     "Location", "Retry-After",
                                        "WWW-Authenticate", "Allow",    "X-Request-Id"};

    path = path != NULL ? strchr(path + 3, '/') : url;
    e = cJSON_CreateObject();
    cJSON_AddStringToObject(e, "method", method);
    cJSON_AddStringToObject(e, "url", path != NULL ? path : "/");
    cJSON_AddNumberToObject(e, "status", (double)r->status);
    h = cJSON_AddObjectToObject(e, "headers");
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        const char *v = hdr(r, names[i]);
        if (v != NULL)
            cJSON_AddStringToObject(h, names[i], v);
    }
    if (r->json != NULL)
        cJSON_AddItemToObject(e, "json", cJSON_Duplicate(r->json, true));
    cJSON_AddNumberToObject(e, "body_length", (double)r->len);
    pthread_mutex_lock(&record_lock);
    if (exchanges == NULL)
        exchanges = cJSON_CreateArray();
    cJSON_AddItemToArray(exchanges, e);
    pthread_mutex_unlock(&record_lock);
}

/* ---- tests ---- */

static void request_ids(void **state)
{
    struct server s;
    struct reply r;
    char url[128];
    static const char *const given[] = {"X-Request-Id: trace-4bf92f3577b34da6:a3ce929d", NULL};
    static const char *const insane[] = {"X-Request-Id: has spaces <script>", NULL};
    char first[64];
    (void)state;

    start(&s, NULL);
    snprintf(url, sizeof url, "%s/healthz", s.base);
    http("GET", url, NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(hdr(&r, "Content-Type"), "application/json");
    assert_string_equal(r.body, "{\"status\":\"ok\"}\n");
    assert_true(is_hex_id(hdr(&r, "X-Request-Id")));
    snprintf(first, sizeof first, "%s", hdr(&r, "X-Request-Id"));
    done(&r);
    http("GET", url, NULL, NULL, &r);
    assert_string_not_equal(hdr(&r, "X-Request-Id"), first);
    done(&r);
    http("GET", url, given, NULL, &r);
    assert_string_equal(hdr(&r, "X-Request-Id"), "trace-4bf92f3577b34da6:a3ce929d");
    done(&r);
    http("GET", url, insane, NULL, &r);
    assert_true(is_hex_id(hdr(&r, "X-Request-Id")));
    done(&r);
    /* HEAD answers like GET without a body */
    http("HEAD", url, NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.len, 0);
    done(&r);
    stop(&s);
}

static void a_load_from_start_to_finish(void **state)
{
    static const char *const json[] = {"Content-Type: application/json", NULL};
    static const char *const keyed[] = {"Content-Type: application/json",
                                        "Idempotency-Key: nightly-2024-05-01", NULL};
    struct server s;
    struct reply r;
    char url[256], id[32], location[64];
    (void)state;

    start(&s, NULL);
    snprintf(url, sizeof url, "%s/streams/orders/loads", s.base);
    http("POST", url, json, "{\"max_number_of_messages\":100,\"write_disposition\":\"merge\"}", &r);
    assert_int_equal(r.status, 202);
    assert_string_equal(hdr(&r, "Content-Type"), "application/json");
    snprintf(id, sizeof id, "%s", str(r.json, "id"));
    snprintf(location, sizeof location, "/jobs/%s", id);
    assert_string_equal(hdr(&r, "Location"), location);
    assert_int_equal(s.f.last_params.max_messages, 100);
    assert_int_equal(s.f.last_params.write_disposition, KL_WRITE_MERGE);
    done(&r);

    snprintf(url, sizeof url, "%s%s", s.base, location);
    http("GET", url, NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(str(r.json, "id"), id);
    assert_string_equal(str(cJSON_GetObjectItem(r.json, "parameters"), "write_disposition"),
                        "merge");
    done(&r);

    snprintf(url, sizeof url, "%s/streams/orders/loads", s.base);
    http("POST", url, NULL, NULL, &r);
    expect_problem(&r, 409, "/problems/conflict");
    assert_string_equal(str(cJSON_GetObjectItem(r.json, "job"), "id"), id);
    done(&r);

    snprintf(url, sizeof url, "%s/streams/clicks/loads", s.base);
    http("POST", url, keyed, "{}", &r);
    assert_int_equal(r.status, 202);
    snprintf(id, sizeof id, "%s", str(r.json, "id"));
    done(&r);
    http("POST", url, keyed, "{}", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(str(r.json, "id"), id);
    done(&r);

    snprintf(url, sizeof url, "%s/jobs/%s/cancel", s.base, id);
    http("POST", url, NULL, NULL, &r);
    assert_int_equal(r.status, 202);
    assert_string_equal(str(r.json, "status"), "cancelled");
    done(&r);

    snprintf(url, sizeof url, "%s/jobs?stream=clicks&status=cancelled&limit=10", s.base);
    http("GET", url, NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(r.json, "jobs")), 1);
    done(&r);
    snprintf(url, sizeof url, "%s/jobs?limit=1", s.base);
    http("GET", url, NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(str(r.json, "next_cursor"));
    done(&r);
    snprintf(url, sizeof url, "%s/jobs?status=finished", s.base);
    http("GET", url, NULL, NULL, &r);
    expect_problem(&r, 400, "/problems/invalid-request");
    assert_string_equal(str(cJSON_GetArrayItem(cJSON_GetObjectItem(r.json, "errors"), 0), "field"),
                        "status");
    done(&r);

    snprintf(url, sizeof url, "%s/jobs/%s", s.base, "0123456789abcdefghijklmnop");
    http("GET", url, NULL, NULL, &r);
    expect_problem(&r, 404, "/problems/not-found");
    done(&r);
    snprintf(url, sizeof url, "%s/jobs/NOT-AN-ID", s.base);
    http("GET", url, NULL, NULL, &r);
    expect_problem(&r, 400, "/problems/invalid-request");
    done(&r);
    stop(&s);
}

static void streams_and_state(void **state)
{
    struct server s;
    struct reply r;
    char url[256];
    (void)state;

    start(&s, NULL);
    snprintf(url, sizeof url, "%s/streams", s.base);
    http("GET", url, NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    done(&r);
    snprintf(url, sizeof url, "%s/streams/orders", s.base);
    http("GET", url, NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    done(&r);
    snprintf(url, sizeof url, "%s/streams/absent", s.base);
    http("GET", url, NULL, NULL, &r);
    expect_problem(&r, 404, "/problems/not-found");
    done(&r);
    snprintf(url, sizeof url, "%s/streams/orders/state?pipeline_name=nightly", s.base);
    http("GET", url, NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(str(r.json, "pipeline_name"), "nightly");
    done(&r);
    http("DELETE", url, NULL, NULL, &r);
    assert_int_equal(r.status, 204);
    assert_int_equal(r.len, 0);
    assert_null(hdr(&r, "Content-Type"));
    done(&r);
    /* decoded query values are validated: "a b" is no pipeline name */
    snprintf(url, sizeof url, "%s/streams/orders/state?pipeline_name=a%%20b", s.base);
    http("DELETE", url, NULL, NULL, &r);
    expect_problem(&r, 400, "/problems/invalid-request");
    done(&r);
    stop(&s);
}

static void http_level_errors(void **state)
{
    struct server s;
    struct reply r;
    char url[256];
    static const char *const text[] = {"Content-Type: text/plain", NULL};
    (void)state;

    start(&s, NULL);
    snprintf(url, sizeof url, "%s/nope", s.base);
    http("GET", url, NULL, NULL, &r);
    expect_problem(&r, 404, "/problems/not-found");
    assert_string_equal(str(r.json, "instance"), "/nope");
    done(&r);
    /* what the client put in the path comes back printable */
    snprintf(url, sizeof url, "%s/streams/%%ff%%0a%%22", s.base);
    http("GET", url, NULL, NULL, &r);
    expect_problem(&r, 400, "/problems/invalid-request");
    assert_string_equal(str(r.json, "instance"), "/streams/??\"");
    done(&r);
    snprintf(url, sizeof url, "%s/jobs", s.base);
    http("DELETE", url, NULL, NULL, &r);
    expect_problem(&r, 405, "/problems/method-not-allowed");
    assert_string_equal(hdr(&r, "Allow"), "GET, HEAD");
    done(&r);
    snprintf(url, sizeof url, "%s/streams/orders/state", s.base);
    http("PUT", url, NULL, NULL, &r);
    expect_problem(&r, 405, "/problems/method-not-allowed");
    assert_string_equal(hdr(&r, "Allow"), "GET, HEAD, DELETE");
    done(&r);
    snprintf(url, sizeof url, "%s/streams/orders/loads", s.base);
    http("POST", url, text, "{}", &r);
    expect_problem(&r, 415, "/problems/unsupported-media-type");
    done(&r);
    s.f.fail_code = KL_ERR_UNAVAILABLE;
    snprintf(s.f.fail_msg, sizeof s.f.fail_msg, "the state store is unreachable");
    http("POST", url, NULL, NULL, &r);
    expect_problem(&r, 503, "/problems/unavailable");
    assert_string_equal(hdr(&r, "Retry-After"), "5");
    done(&r);
    s.f.fail_code = KL_OK;
    stop(&s);
}

static char *json_body_of(size_t size)
{
    char *b = malloc(size + 1);
    assert_non_null(b);
    memset(b, ' ', size);
    memcpy(b, "{\"chunk_size\":5}", 16);
    b[size] = '\0';
    return b;
}

static void bodies_are_bounded(void **state)
{
    static const char *const json[] = {"Content-Type: application/json", NULL};
    struct server s;
    struct reply r;
    struct request q;
    char url[256];
    char *big = json_body_of((size_t)2 << 20), *fits = json_body_of((size_t)1 << 20);
    unsigned calls;
    (void)state;

    start(&s, NULL);
    snprintf(url, sizeof url, "%s/streams/orders/loads", s.base);
    /* declared too large: answered before the body is sent (curl waits for 100 Continue) */
    q = (struct request){"POST", url, json, big, (size_t)2 << 20, false, NULL};
    assert_int_equal(send_req(&q, &r), CURLE_OK);
    expect_problem(&r, 413, "/problems/payload-too-large");
    assert_non_null(strstr(str(r.json, "detail"), "1048576"));
    done(&r);
    /* streamed without a length: read up to the limit, the rest dropped, then 413 */
    q.chunked = true;
    assert_int_equal(send_req(&q, &r), CURLE_OK);
    expect_problem(&r, 413, "/problems/payload-too-large");
    done(&r);
    calls = s.f.calls;
    assert_int_equal(calls, 0);
    /* exactly the limit is fine, with a length or chunked */
    q = (struct request){"POST", url, json, fits, (size_t)1 << 20, false, NULL};
    assert_int_equal(send_req(&q, &r), CURLE_OK);
    assert_int_equal(r.status, 202);
    assert_int_equal(s.f.last_params.chunk_size, 5);
    done(&r);
    snprintf(url, sizeof url, "%s/streams/clicks/loads", s.base);
    q.url = url;
    q.chunked = true;
    assert_int_equal(send_req(&q, &r), CURLE_OK);
    assert_int_equal(r.status, 202);
    done(&r);
    free(big);
    free(fits);
    stop(&s);
}

static void bearer_tokens(void **state)
{
    static const char *const none[] = {NULL};
    static const char *const wrong[] = {"Authorization: Bearer s3cr3t-t0keN", NULL};
    static const char *const prefix[] = {"Authorization: Bearer s3cr3t", NULL};
    static const char *const basic[] = {"Authorization: Basic czNjcjN0LXQwa2Vu", NULL};
    static const char *const right[] = {"Authorization: Bearer " TOKEN, NULL};
    static const char *const lower[] = {"Authorization: bearer   " TOKEN, NULL};
    static const char *const open_paths[] = {"/healthz", "/readyz", "/metrics", "/openapi.yaml"};
    struct server s;
    struct reply r;
    char url[256];
    (void)state;

    start(&s, TOKEN);
    snprintf(url, sizeof url, "%s/jobs", s.base);
    http("GET", url, none, NULL, &r);
    expect_problem(&r, 401, "/problems/unauthorized");
    assert_string_equal(hdr(&r, "WWW-Authenticate"), "Bearer realm=\"kinesis-loader\"");
    done(&r);
    {
        const char *const *bad[] = {wrong, prefix, basic};
        for (size_t i = 0; i < 3; i++) {
            http("GET", url, bad[i], NULL, &r);
            expect_problem(&r, 401, "/problems/unauthorized");
            assert_string_equal(hdr(&r, "WWW-Authenticate"),
                                "Bearer realm=\"kinesis-loader\", error=\"invalid_token\"");
            assert_null(strstr(r.body, TOKEN));
            done(&r);
        }
    }
    http("GET", url, right, NULL, &r);
    assert_int_equal(r.status, 200);
    done(&r);
    http("GET", url, lower, NULL, &r);
    assert_int_equal(r.status, 200);
    done(&r);
    /* unknown paths need the token too: no probing without it */
    snprintf(url, sizeof url, "%s/admin", s.base);
    http("GET", url, none, NULL, &r);
    expect_problem(&r, 401, "/problems/unauthorized");
    done(&r);
    /* a body without a token is refused before it is read */
    snprintf(url, sizeof url, "%s/streams/orders/loads", s.base);
    http("POST", url, none, "{}", &r);
    expect_problem(&r, 401, "/problems/unauthorized");
    done(&r);
    for (size_t i = 0; i < sizeof open_paths / sizeof open_paths[0]; i++) {
        snprintf(url, sizeof url, "%s%s", s.base, open_paths[i]);
        http("GET", url, none, NULL, &r);
        assert_int_equal(r.status, 200);
        done(&r);
    }
    assert_int_equal(s.f.calls, 2); /* the two authorised GET /jobs */
    stop(&s);
}

static void openapi_is_the_file(void **state)
{
    struct server s;
    struct reply r;
    char url[256];
    char *file = NULL;
    (void)state;

    start(&s, NULL);
    snprintf(url, sizeof url, "%s/openapi.yaml", s.base);
    http("GET", url, NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(hdr(&r, "Content-Type"), "application/yaml");
    assert_int_equal(kl_test_run(&file, "cat %s/openapi.yaml", KL_SOURCE_DIR), 0);
    assert_int_equal(r.len, strlen(file));
    assert_memory_equal(r.body, file, r.len);
    free(file);
    done(&r);
    stop(&s);
}

static void metrics_are_prometheus_text(void **state)
{
    struct server s;
    struct reply r;
    char url[256];
    regex_t sample, help, type;
    long long inf = -1, count = -1, last = -1;
    (void)state;

    assert_int_equal(regcomp(&sample,
                             "^[a-zA-Z_:][a-zA-Z0-9_:]*(\\{[a-zA-Z_][a-zA-Z0-9_]*=\"[^\"]*\""
                             "(,[a-zA-Z_][a-zA-Z0-9_]*=\"[^\"]*\")*\\})? "
                             "(-?[0-9]+(\\.[0-9]+)?(e[+-]?[0-9]+)?|[+-]Inf|NaN)$",
                             REG_EXTENDED | REG_NOSUB),
                     0);
    assert_int_equal(
        regcomp(&help, "^# HELP [a-zA-Z_:][a-zA-Z0-9_:]* .+$", REG_EXTENDED | REG_NOSUB), 0);
    assert_int_equal(regcomp(&type, "^# TYPE [a-zA-Z_:][a-zA-Z0-9_:]* (counter|gauge|histogram)$",
                             REG_EXTENDED | REG_NOSUB),
                     0);
    start(&s, NULL);
    kl_fake_service_add(&s.f, "orders", KL_STORE_JOB_RUNNING);
    snprintf(url, sizeof url, "%s/healthz", s.base);
    for (int i = 0; i < 5; i++) {
        http("GET", url, NULL, NULL, &r);
        done(&r);
    }
    snprintf(url, sizeof url, "%s/nowhere", s.base);
    http("GET", url, NULL, NULL, &r);
    done(&r);
    snprintf(url, sizeof url, "%s/metrics", s.base);
    http("GET", url, NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(hdr(&r, "Content-Type"), "text/plain; version=0.0.4; charset=utf-8");
    assert_true(r.len > 0 && r.body[r.len - 1] == '\n');
    for (char *line = r.body, *nl; *line != '\0'; line = nl + 1) {
        nl = strchr(line, '\n');
        *nl = '\0';
        if (regexec(line[0] == '#' ? (line[2] == 'H' ? &help : &type) : &sample, line, 0, NULL,
                    0) != 0)
            fail_msg("not Prometheus text: '%s'", line);
        if (strncmp(line, "kl_http_request_duration_seconds_bucket{route=\"/healthz\"", 56) == 0) {
            long long v = atoll(strrchr(line, ' ') + 1);
            assert_true(v >= last); /* cumulative */
            last = v;
            if (strstr(line, "le=\"+Inf\"") != NULL)
                inf = v;
        }
        if (strncmp(line, "kl_http_request_duration_seconds_count{route=\"/healthz\"", 55) == 0)
            count = atoll(strrchr(line, ' ') + 1);
    }
    assert_int_equal(inf, 5);
    assert_int_equal(count, 5);
    done(&r);
    http("GET", url, NULL, NULL, &r);
    assert_non_null(strstr(r.body, "kl_jobs{status=\"running\"} 1\n"));
    assert_non_null(strstr(
        r.body, "kl_http_requests_total{route=\"/healthz\",method=\"GET\",code=\"200\"} 5\n"));
    assert_non_null(strstr(
        r.body, "kl_http_requests_total{route=\"unmatched\",method=\"any\",code=\"404\"} 1\n"));
    assert_non_null(strstr(r.body, "\nprocess_resident_memory_bytes "));
    assert_non_null(strstr(r.body, "\nprocess_cpu_seconds_total "));
    assert_non_null(strstr(r.body, "\nprocess_open_fds "));
    assert_non_null(strstr(r.body, "\nprocess_start_time_seconds "));
    /* this one, and perhaps the previous request: its completion is counted
     * after the client has its answer */
    {
        const char *g = strstr(r.body, "\nkl_http_requests_in_flight ");
        assert_non_null(g);
        assert_true(atoll(g + strlen("\nkl_http_requests_in_flight ")) >= 1);
    }
    assert_non_null(strstr(r.body, "kl_build_info{version=\"" KL_VERSION "\"} 1\n"));
    done(&r);
    regfree(&sample);
    regfree(&help);
    regfree(&type);
    stop(&s);
}

static void one_access_log_line_per_request(void **state)
{
    static const char *const rid[] = {"X-Request-Id: log-line-check-1", NULL};
    struct server s;
    struct reply r;
    char url[256], line[4096];
    cJSON *found = NULL;
    (void)state;

    start(&s, NULL);
    snprintf(url, sizeof url, "%s/jobs/00000000000000000000000042?x=1", s.base);
    http("GET", url, rid, NULL, &r);
    expect_problem(&r, 400, "/problems/invalid-request");
    done(&r);
    /* the line is written when the request completes: give the pool a moment */
    for (int tries = 0; found == NULL && tries < 3000; tries++) {
        fflush(s.log);
        rewind(s.log);
        while (found == NULL && fgets(line, sizeof line, s.log) != NULL) {
            cJSON *j = cJSON_Parse(line);
            assert_non_null(j);
            if (str(j, "request_id") != NULL &&
                strcmp(str(j, "request_id"), "log-line-check-1") == 0)
                found = j;
            else
                cJSON_Delete(j);
        }
        if (found == NULL)
            usleep(10000);
    }
    assert_non_null(found);
    assert_string_equal(str(found, "level"), "info");
    assert_string_equal(str(found, "component"), "http");
    assert_string_equal(str(found, "method"), "GET");
    assert_string_equal(str(found, "path"), "/jobs/00000000000000000000000042");
    assert_int_equal(cJSON_GetObjectItem(found, "status")->valueint, 400);
    assert_true(cJSON_IsNumber(cJSON_GetObjectItem(found, "duration_ms")));
    assert_string_equal(str(found, "remote"), "127.0.0.1");
    assert_non_null(str(found, "ts"));
    cJSON_Delete(found);
    stop(&s);
}

struct hammer {
    const char *url;
    int n;
    int ok;
};

static void *hammer_thread(void *arg)
{
    struct hammer *h = arg;
    CURL *c = curl_easy_init();
    for (int i = 0; i < h->n; i++) {
        struct reply r;
        struct request q = {"GET", h->url, NULL, NULL, 0, false, c};
        if (send_req(&q, &r) == CURLE_OK && r.status == 200)
            h->ok++;
        done(&r);
    }
    curl_easy_cleanup(c);
    return NULL;
}

static void concurrent_requests_on_kept_alive_connections(void **state)
{
    struct server s;
    struct hammer hs[8];
    pthread_t t[8];
    char url[256];
    const char *id;
    cJSON *saved = exchanges;
    (void)state;

    start(&s, NULL);
    id = kl_fake_service_add(&s.f, "orders", KL_STORE_JOB_RUNNING);
    snprintf(url, sizeof url, "%s/jobs/%s", s.base, id);
    exchanges = cJSON_CreateArray(); /* not recorded: thousands of the same */
    for (int i = 0; i < 8; i++) {
        hs[i] = (struct hammer){url, 200, 0};
        assert_int_equal(pthread_create(&t[i], NULL, hammer_thread, &hs[i]), 0);
    }
    for (int i = 0; i < 8; i++) {
        assert_int_equal(pthread_join(t[i], NULL), 0);
        assert_int_equal(hs[i].ok, 200);
    }
    cJSON_Delete(exchanges);
    exchanges = saved;
    stop(&s);
}

static void quiescing_refuses_new_work(void **state)
{
    struct server s;
    struct reply r;
    struct request q;
    char url[256];
    CURL *c = curl_easy_init();
    (void)state;

    start(&s, NULL);
    snprintf(url, sizeof url, "%s/jobs", s.base);
    q = (struct request){"GET", url, NULL, NULL, 0, false, c};
    assert_int_equal(send_req(&q, &r), CURLE_OK);
    assert_int_equal(r.status, 200);
    done(&r);
    kl_httpd_quiesce(s.h);
    /* the kept-alive connection still gets an answer: 503, and it is closed */
    assert_int_equal(send_req(&q, &r), CURLE_OK);
    expect_problem(&r, 503, "/problems/unavailable");
    assert_non_null(hdr(&r, "Retry-After"));
    assert_string_equal(hdr(&r, "Connection"), "close");
    done(&r);
    /* new connections are refused */
    snprintf(url, sizeof url, "%s/healthz", s.base);
    q = (struct request){"GET", url, NULL, NULL, 0, false, NULL};
    assert_int_equal(send_req(&q, &r), CURLE_COULDNT_CONNECT);
    done(&r);
    assert_true(kl_httpd_drain(s.h, 1000));
    curl_easy_cleanup(c);
    stop(&s);
}

/* ---- kl_serve and SIGTERM ---- */

struct serve_run {
    struct kl_config cfg;
    struct kl_fake_service f;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    uint16_t port;
    int64_t drain_budget;
    bool drained;
    int rc;
    bool finished;
    FILE *log;
};

static void on_listening(void *arg, uint16_t port)
{
    struct serve_run *run = arg;
    pthread_mutex_lock(&run->lock);
    run->port = port;
    pthread_cond_broadcast(&run->cond);
    pthread_mutex_unlock(&run->lock);
}

static void on_drain(void *arg, int64_t budget_ms)
{
    struct serve_run *run = arg;
    run->drain_budget = budget_ms;
    run->drained = true;
}

static void *serve_thread(void *arg)
{
    struct serve_run *run = arg;
    struct kl_serve_hooks hooks = {on_listening, on_drain, run, run->log};
    struct kl_err err = {0};
    int rc = kl_serve(&run->cfg, &run->f.svc, &hooks, &err);
    pthread_mutex_lock(&run->lock);
    run->rc = rc;
    run->finished = true;
    pthread_cond_broadcast(&run->cond);
    pthread_mutex_unlock(&run->lock);
    return NULL;
}

struct slow_call {
    char url[128];
    long status;
};

static void *slow_thread(void *arg)
{
    struct slow_call *c = arg;
    struct reply r;
    struct request q = {"GET", c->url, NULL, NULL, 0, false, NULL};
    if (send_req(&q, &r) == CURLE_OK)
        c->status = r.status;
    done(&r);
    return NULL;
}

static void serve_stops_on_sigterm_after_in_flight_requests(void **state)
{
    static const char *const env[] = {
        "KL_LISTEN", "127.0.0.1:0", "KL_SHUTDOWN_GRACE_S", "5", "KL_HTTP_THREADS", "2", NULL};
    struct kl_env_table t;
    struct kl_err err = {0};
    struct serve_run *run = calloc(1, sizeof *run);
    struct slow_call slow = {{0}, 0};
    pthread_t serve_t, slow_t;
    struct reply r;
    struct request q;
    char url[128];
    (void)state;

    assert_non_null(run);
    kl_env_table_init(&t, env);
    assert_int_equal(kl_config_load(&run->cfg, &t.env, &err), KL_OK);
    kl_fake_service_init(&run->f);
    run->log = tmpfile();
    pthread_mutex_init(&run->lock, NULL);
    pthread_cond_init(&run->cond, NULL);
    assert_int_equal(pthread_create(&serve_t, NULL, serve_thread, run), 0);
    pthread_mutex_lock(&run->lock);
    while (run->port == 0 && !run->finished)
        pthread_cond_wait(&run->cond, &run->lock);
    pthread_mutex_unlock(&run->lock);
    assert_int_not_equal(run->port, 0);

    /* one request in flight when the signal comes */
    kl_fake_service_add(&run->f, "orders", KL_STORE_JOB_RUNNING);
    run->f.delay_ms = 400;
    snprintf(slow.url, sizeof slow.url, "http://127.0.0.1:%u/jobs", run->port);
    assert_int_equal(pthread_create(&slow_t, NULL, slow_thread, &slow), 0);
    for (bool begun = false; !begun; usleep(5000)) {
        pthread_mutex_lock(&run->f.lock);
        begun = run->f.started > 0;
        pthread_mutex_unlock(&run->f.lock);
    }
    assert_int_equal(raise(SIGTERM), 0);
    assert_int_equal(pthread_join(slow_t, NULL), 0);
    assert_int_equal(slow.status, 200); /* finished, not cut */
    assert_int_equal(pthread_join(serve_t, NULL), 0);
    assert_true(run->finished);
    assert_int_equal(run->rc, KL_OK);
    assert_true(run->drained);
    assert_true(run->drain_budget > 0 && run->drain_budget <= 5000); /* what is left of the grace */
    /* and nothing listens any more */
    snprintf(url, sizeof url, "http://127.0.0.1:%u/healthz", run->port);
    q = (struct request){"GET", url, NULL, NULL, 0, false, NULL};
    assert_int_equal(send_req(&q, &r), CURLE_COULDNT_CONNECT);
    done(&r);
    /* the process's signal handling is back as it was */
    {
        struct sigaction sa;
        assert_int_equal(sigaction(SIGTERM, NULL, &sa), 0);
        assert_ptr_equal(sa.sa_handler, SIG_DFL);
    }
    fclose(run->log);
    kl_config_free(&run->cfg);
    kl_fake_service_free(&run->f);
    pthread_mutex_destroy(&run->lock);
    pthread_cond_destroy(&run->cond);
    free(run);
}

static void serve_reports_a_port_in_use(void **state)
{
    static const char *const env1[] = {"KL_LISTEN", "127.0.0.1:0", NULL};
    struct kl_env_table t;
    struct kl_config cfg;
    struct kl_fake_service f;
    struct kl_err err = {0};
    struct kl_httpd_opts o;
    struct kl_httpd *h;
    char listen[32];
    const char *env2[] = {"KL_LISTEN", listen, NULL};
    (void)state;

    kl_fake_service_init(&f);
    kl_env_table_init(&t, env1);
    assert_int_equal(kl_config_load(&cfg, &t.env, &err), KL_OK);
    memset(&o, 0, sizeof o);
    o = (struct kl_httpd_opts){"127.0.0.1", 0, 1, 8, 5, 1024, NULL, &f.svc, NULL};
    h = kl_httpd_start(&o, &err);
    assert_non_null(h);
    snprintf(listen, sizeof listen, "127.0.0.1:%u", kl_httpd_port(h));
    kl_env_table_init(&t, env2);
    assert_int_equal(kl_config_load(&cfg, &t.env, &err), KL_OK);
    assert_int_equal(kl_serve(&cfg, &f.svc, NULL, &err), KL_ERR_IO);
    assert_non_null(strstr(err.msg, "KL_LISTEN: cannot listen on 127.0.0.1"));
    assert_non_null(strstr(err.msg, "in use"));
    kl_httpd_destroy(h);
    kl_config_free(&cfg);
    kl_fake_service_free(&f);
}

/* ---- the contract ---- */

static void responses_match_openapi(void **state)
{
    char path[] = "/tmp/kl-contract-XXXXXX";
    char *text, *out = NULL;
    int fd, rc;
    (void)state;

    if (access(KL_SOURCE_DIR "/tests/node_modules/@redocly/cli/bin/cli.js", R_OK) != 0 ||
        kl_test_run(NULL, "node --version >/dev/null 2>&1") != 0)
        skip(); /* scripts/install-deps.sh installs node and the test tools */
    assert_non_null(exchanges);
    assert_true(cJSON_GetArraySize(exchanges) > 50);
    text = cJSON_Print(exchanges);
    fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    free(text);
    rc = kl_test_run(&out, "node %s/tests/tools/check-contract.js %s/openapi.yaml %s 2>&1",
                     KL_SOURCE_DIR, KL_SOURCE_DIR, path);
    if (rc != 0)
        fail_msg("contract check failed:\n%s", out);
    print_message("%s", out);
    unlink(path);
    free(out);
}

static int teardown_all(void **state)
{
    (void)state;
    cJSON_Delete(exchanges);
    exchanges = NULL;
    curl_global_cleanup();
    return 0;
}

static int setup_all(void **state)
{
    (void)state;
    return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(request_ids),
        cmocka_unit_test(a_load_from_start_to_finish),
        cmocka_unit_test(streams_and_state),
        cmocka_unit_test(http_level_errors),
        cmocka_unit_test(bodies_are_bounded),
        cmocka_unit_test(bearer_tokens),
        cmocka_unit_test(openapi_is_the_file),
        cmocka_unit_test(metrics_are_prometheus_text),
        cmocka_unit_test(one_access_log_line_per_request),
        cmocka_unit_test(concurrent_requests_on_kept_alive_connections),
        cmocka_unit_test(quiescing_refuses_new_work),
        cmocka_unit_test(serve_stops_on_sigterm_after_in_flight_requests),
        cmocka_unit_test(serve_reports_a_port_in_use),
        cmocka_unit_test(responses_match_openapi),
    };
    return cmocka_run_group_tests(tests, setup_all, teardown_all);
}
